//! The typed actions. Every request is parsed into one variant of [`Action`] before any
//! handler runs, so handlers never touch raw parameters and MissingParameter/InvalidParameter
//! come from one place.
//!
//! Each resource family parses its own actions in a module of its own ([`crate::disks`],
//! [`crate::snapshots`], [`crate::instances`], [`crate::images`], [`crate::regions`],
//! [`crate::groups`], [`crate::policies`], [`crate::tasks`], [`crate::tagging`],
//! [`crate::keypairs`], [`crate::secgroups`]), which
//! declares them in a [`Family`]; this module holds the enum, the request around it, the
//! families' list and the helpers they share.

use crate::error::{ApiError, Code};
use crate::params::Params;

/// What a family module declares: the actions it parses, those of them whose API reference
/// has no RegionId (for every other one RegionId is required), and its parser, which answers
/// `None` for a name that is not its own.
pub(crate) struct Family {
    pub names: &'static [&'static str],
    pub region_optional: &'static [&'static str],
    pub parse: fn(&str, &Params) -> Option<Result<Action, ApiError>>,
}

/// Every family, in no particular order (their names are disjoint; a test checks).
const FAMILIES: &[&Family] = &[
    &crate::disks::FAMILY,
    &crate::snapshots::FAMILY,
    &crate::instances::FAMILY,
    &crate::images::FAMILY,
    &crate::regions::FAMILY,
    &crate::groups::FAMILY,
    &crate::policies::FAMILY,
    &crate::tasks::FAMILY,
    &crate::tagging::FAMILY,
    &crate::vpc::ECS_FAMILY,
    &crate::instance_settings::FAMILY,
    &crate::capacity::FAMILY,
    &crate::keypairs::FAMILY,
    &crate::secgroups::FAMILY,
];

/// The VPC API's (version 2016-04-28) families: the network family alone.
const VPC_FAMILIES: &[&Family] = &[&crate::vpc::FAMILY];

/// Every action name [`Action::parse`] knows (a test checks each parses to an action), for
/// tools that exercise them all, such as the fuzz targets.
pub fn action_names() -> impl Iterator<Item = &'static str> {
    FAMILIES.iter().flat_map(|f| f.names.iter().copied())
}

/// A parsed request: its action and the RegionId it named, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// RegionId as sent; operations without a RegionId parameter still get one from the legacy
    /// SDK, which adds it everywhere, and it must name a region when present.
    pub region_id: Option<String>,
    pub action: Action,
    /// `ClientToken` of an action that creates something (ECS idempotence): at most 64 ASCII
    /// characters; `None` for actions that take none.
    pub client_token: Option<String>,
    /// What "the same parameters" means for a retried ClientToken: the action name and every
    /// parameter except those that change per attempt (signature, nonce, timestamp, key,
    /// format, version, the token itself), hex SHA-256 of their canonical form. Empty when
    /// there is no token.
    pub fingerprint: String,
}

/// Hex SHA-256 over `action` and the sorted parameters, leaving out those that differ
/// between two attempts of the same call: the signature's own (`PROTOCOL_PARAMS`) and the
/// token itself.
fn fingerprint(action: &str, p: &Params) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(action.as_bytes());
    for (k, v) in p.iter().filter(|(k, _)| *k != "ClientToken" && !crate::auth::PROTOCOL_PARAMS.contains(k)) {
        h.update([0u8]);
        h.update(k.as_bytes());
        h.update([b'=']);
        h.update(v.as_bytes());
    }
    hex::encode(h.finalize())
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    ResetDisk(crate::disks::ResetDisk),
    CreateDisk(crate::disks::CreateDisk),
    DescribeDisks(crate::disks::DescribeDisks),
    DeleteDisk {
        disk_id: String,
        dry_run: bool,
    },
    ModifyDiskAttribute(crate::disks::ModifyDiskAttribute),
    ResizeDisk(crate::disks::ResizeDisk),
    ReInitDisk(crate::disks::ReInitDisk),
    AttachDisk {
        disk_id: String,
        instance_id: String,
        delete_with_instance: Option<bool>,
        dry_run: bool,
    },
    DetachDisk {
        disk_id: String,
        instance_id: String,
        delete_with_instance: Option<bool>,
        dry_run: bool,
    },
    CreateSnapshot(crate::snapshots::CreateSnapshot),
    DescribeSnapshots(crate::snapshots::DescribeSnapshots),
    /// CopySnapshot: a copy of an accomplished snapshot, in this or another region.
    CopySnapshot {
        snapshot_id: String,
        destination_region_id: String,
        name: Option<String>,
        description: Option<String>,
        retention_days: Option<i64>,
        tags: Vec<(String, String)>,
    },
    DeleteSnapshot {
        snapshot_id: String,
        force: bool,
    },
    RunInstances {
        spec: crate::instances::InstanceSpec,
        amount: u32,
        min_amount: Option<u32>,
        dry_run: bool,
    },
    CreateInstance {
        spec: crate::instances::InstanceSpec,
        dry_run: bool,
    },
    StartInstance {
        instance_id: String,
        dry_run: bool,
    },
    StopInstance {
        instance_id: String,
        force_stop: bool,
        dry_run: bool,
    },
    RebootInstance {
        instance_id: String,
        force_stop: bool,
        dry_run: bool,
    },
    /// ReplaceSystemDisk: a new system disk from `image_id`; the old one is released.
    ReplaceSystemDisk {
        instance_id: String,
        image_id: String,
        /// `SystemDisk.Size`, GiB.
        size_gib: Option<i64>,
        encrypted: bool,
        kms_key_id: Option<String>,
    },
    StartInstances {
        instance_ids: Vec<String>,
        dry_run: bool,
    },
    StopInstances {
        instance_ids: Vec<String>,
        force_stop: bool,
        dry_run: bool,
    },
    DescribeInstances(crate::instances::DescribeInstances),
    DescribeInstanceAttribute {
        instance_id: String,
    },
    DescribeUserData {
        instance_id: String,
    },
    /// GetInstanceConsoleOutput: the serial console of the instance's VM, base64.
    GetInstanceConsoleOutput {
        instance_id: String,
        /// Strip terminal escape sequences (colours, cursor moves) from the output.
        remove_symbols: bool,
    },
    DescribeInstanceTypes(crate::instances::DescribeInstanceTypes),
    DescribeInstanceTypeFamilies {
        generation: Option<String>,
    },
    DescribeInstanceMaintenanceAttributes {
        instance_ids: Vec<String>,
        page: (u32, u32),
    },
    DescribeInstanceAttachmentAttributes {
        instance_ids: Vec<String>,
        page: (u32, u32),
    },
    DeleteInstance {
        instance_id: String,
        force: bool,
        dry_run: bool,
    },
    DescribeRegions,
    DescribeZones,
    DescribeImages(crate::images::DescribeImages),
    /// ImportImage: a raw, qcow2 or VHD file in an OSS bucket becomes an image.
    ImportImage(crate::images::ImportImage),
    CreateImage {
        snapshot_id: String,
        image_name: Option<String>,
        description: Option<String>,
    },
    DeleteImage {
        image_id: String,
        force: bool,
    },
    /// CopyImage: a custom image copied to a region (its bytes shared, not copied).
    CopyImage(crate::images::CopyImage),
    /// ModifyImageSharePermission: share an image with accounts, or stop sharing it.
    ModifyImageSharePermission(crate::images::ModifyImageSharePermission),
    /// DescribeImageSharePermission: the accounts an image is shared with, a page of them.
    DescribeImageSharePermission {
        image_id: String,
        page_number: u32,
        page_size: u32,
    },
    TagResources(crate::tagging::TagResources),
    UntagResources(crate::tagging::UntagResources),
    ListTagResources(crate::tagging::ListTagResources),
    /// RemoveTags: the named keys (with a value, only where it matches) from one resource.
    RemoveTags {
        resource_type: crate::tagging::TagResourceType,
        resource_id: String,
        tags: Vec<(String, Option<String>)>,
    },
    DescribeTags(crate::tagging::DescribeTags),
    /// The snapshot-group family and ResetDisks (`crate::groups`).
    CreateSnapshotGroup(crate::groups::CreateSnapshotGroup),
    DescribeSnapshotGroups(crate::groups::DescribeSnapshotGroups),
    DeleteSnapshotGroup {
        id: String,
    },
    ResetDisks(crate::groups::ResetDisks),
    /// Tasks and ModifyDiskSpec (`crate::tasks`).
    ModifyDiskSpec(crate::tasks::ModifyDiskSpec),
    DescribeTasks(crate::tasks::DescribeTasks),
    DescribeTaskAttribute {
        task_id: String,
    },
    /// The automatic snapshot policy family (`crate::policies`).
    CreateAutoSnapshotPolicy {
        schedule: crate::policies::Schedule,
        tags: Vec<(String, String)>,
    },
    ModifyAutoSnapshotPolicy {
        policy_id: String,
        schedule: crate::policies::Schedule,
    },
    DescribeAutoSnapshotPolicies(crate::policies::DescribeAutoSnapshotPolicies),
    DeleteAutoSnapshotPolicy {
        policy_id: String,
    },
    ApplyAutoSnapshotPolicy {
        policy_id: String,
        disk_ids: Vec<String>,
    },
    CancelAutoSnapshotPolicy {
        disk_ids: Vec<String>,
    },
    ModifySnapshotAttribute {
        snapshot_id: String,
        name: Option<String>,
        description: Option<String>,
        retention_days: Option<i64>,
    },
    /// The network family: VPCs, vSwitches, route tables (`crate::vpc`).
    CreateVpc(crate::vpc::CreateVpc),
    DescribeVpcs(crate::vpc::DescribeVpcs),
    DescribeVpcAttribute {
        vpc_id: String,
        is_default: Option<bool>,
    },
    ModifyVpcAttribute(crate::vpc::ModifyVpcAttribute),
    DeleteVpc {
        vpc_id: String,
        force: bool,
        dry_run: bool,
    },
    CreateVSwitch(crate::vpc::CreateVSwitch),
    DescribeVSwitches(crate::vpc::DescribeVSwitches),
    DescribeVSwitchAttributes {
        vswitch_id: String,
    },
    DeleteVSwitch {
        vswitch_id: String,
    },
    ModifyVSwitchAttribute {
        vswitch_id: String,
        name: Option<String>,
        description: Option<String>,
    },
    DescribeRouteTableList(crate::vpc::DescribeRouteTableList),
    /// The ECS-endpoint forms: each VPC's router and its system route table.
    DescribeVRouters {
        vrouter_id: Option<String>,
        paging: crate::params::Paging,
    },
    DescribeRouteTables {
        vrouter_id: Option<String>,
        route_table_id: Option<String>,
        paging: crate::params::Paging,
    },
    /// Instance settings, ENIs and resource groups (`crate::instance_settings`).
    ModifyInstanceAttribute(crate::instance_settings::ModifyInstanceAttribute),
    DescribeInstanceStatus {
        instance_ids: Option<Vec<String>>,
        zone_id: Option<String>,
        paging: crate::params::Paging,
    },
    DescribeInstanceRamRole {
        instance_ids: Option<Vec<String>>,
        ram_role_name: Option<String>,
        paging: crate::params::Paging,
    },
    DescribeNetworkInterfaces(crate::instance_settings::DescribeNetworkInterfaces),
    JoinResourceGroup {
        resource_group_id: String,
        resource_type: String,
        resource_id: String,
    },
    /// What a zone offers (`crate::capacity`).
    DescribeAvailableResource(crate::capacity::DescribeAvailableResource),
    DescribeResourcesModification(crate::capacity::DescribeResourcesModification),
    /// The SSH key pair family (`crate::keypairs`).
    CreateKeyPair(crate::keypairs::CreateKeyPair),
    ImportKeyPair(crate::keypairs::ImportKeyPair),
    DescribeKeyPairs(crate::keypairs::DescribeKeyPairs),
    AttachKeyPair(crate::keypairs::KeyPairInstances),
    DetachKeyPair(crate::keypairs::KeyPairInstances),
    DeleteKeyPairs {
        names: Vec<String>,
    },
    /// The security group family (`crate::secgroups`). Authorize and Revoke carry their
    /// direction (the `…Egress` actions are egress).
    CreateSecurityGroup(crate::secgroups::CreateSecurityGroup),
    DescribeSecurityGroups(crate::secgroups::DescribeSecurityGroups),
    DescribeSecurityGroupAttribute(crate::secgroups::DescribeSecurityGroupAttribute),
    ModifySecurityGroupAttribute {
        group_id: String,
        name: Option<String>,
        description: Option<String>,
    },
    DeleteSecurityGroup {
        group_id: String,
    },
    AuthorizeSecurityGroup(crate::secgroups::RuleChange),
    RevokeSecurityGroup(crate::secgroups::RuleChange),
    JoinSecurityGroup(crate::secgroups::Membership),
    LeaveSecurityGroup(crate::secgroups::Membership),
}

impl Action {
    /// Actions that only read: they run on their own catalog connections and never wait for
    /// writes.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Action::DescribeDisks(_)
                | Action::DescribeSnapshots(_)
                | Action::DescribeInstances(_)
                | Action::DescribeImages(_)
                | Action::DescribeImageSharePermission { .. }
                | Action::DescribeRegions
                | Action::DescribeZones
                | Action::ListTagResources(_)
                | Action::DescribeTags(_)
                | Action::DescribeSnapshotGroups(_)
                | Action::DescribeAutoSnapshotPolicies(_)
                | Action::DescribeTasks(_)
                | Action::DescribeTaskAttribute { .. }
                | Action::DescribeInstanceAttribute { .. }
                | Action::DescribeUserData { .. }
                | Action::GetInstanceConsoleOutput { .. }
                | Action::DescribeInstanceTypes(_)
                | Action::DescribeInstanceTypeFamilies { .. }
                | Action::DescribeInstanceMaintenanceAttributes { .. }
                | Action::DescribeInstanceAttachmentAttributes { .. }
                | Action::DescribeVpcs(_)
                | Action::DescribeVpcAttribute { .. }
                | Action::DescribeVSwitches(_)
                | Action::DescribeVSwitchAttributes { .. }
                | Action::DescribeRouteTableList(_)
                | Action::DescribeVRouters { .. }
                | Action::DescribeRouteTables { .. }
                | Action::DescribeInstanceStatus { .. }
                | Action::DescribeInstanceRamRole { .. }
                | Action::DescribeNetworkInterfaces(_)
                | Action::DescribeAvailableResource(_)
                | Action::DescribeResourcesModification(_)
                | Action::DescribeKeyPairs(_)
                | Action::DescribeSecurityGroups(_)
                | Action::DescribeSecurityGroupAttribute(_)
        )
    }

    /// Actions that create something and so honour `ClientToken` (ECS idempotence).
    pub fn takes_client_token(&self) -> bool {
        matches!(
            self,
            Action::CreateDisk(_)
                | Action::ResizeDisk(_)
                | Action::CreateSnapshot(_)
                | Action::RunInstances { .. }
                | Action::CreateInstance { .. }
                | Action::CreateImage { .. }
                | Action::ImportImage(_)
                | Action::CopyImage(_)
                | Action::CreateSnapshotGroup(_)
                | Action::ReplaceSystemDisk { .. }
                | Action::CopySnapshot { .. }
                | Action::CreateVpc(_)
                | Action::CreateVSwitch(_)
                | Action::CreateSecurityGroup(_)
        )
    }

    /// Parse an ECS 2014-05-26 action `name` with its parameters; unknown names are
    /// `InvalidAction.NotFound`.
    pub fn parse(name: &str, p: &Params) -> Result<Request, ApiError> {
        Action::parse_in(FAMILIES, name, p)
    }

    /// Parse a request sent under `version`: ECS 2014-05-26 (every ECS action, and the
    /// ECS-endpoint forms of the network actions) or VPC 2016-04-28 (the network family
    /// only). Any other version is `InvalidVersion`; an action its product lacks is
    /// `InvalidAction.NotFound`.
    pub fn parse_versioned(version: &str, name: &str, p: &Params) -> Result<Request, ApiError> {
        match version {
            crate::API_VERSION => Action::parse_in(FAMILIES, name, p),
            crate::vpc::VPC_API_VERSION => Action::parse_in(VPC_FAMILIES, name, p),
            _ => Err(Code::InvalidVersion.into()),
        }
    }

    fn parse_in(families: &[&Family], name: &str, p: &Params) -> Result<Request, ApiError> {
        if p.opt_str("OwnerId").is_some() && p.opt_str("OwnerAccount").is_some() {
            return Err(Code::InvalidOwner.into());
        }
        let family = families.iter().find(|f| f.names.contains(&name)).ok_or(Code::InvalidActionNotFound)?;
        let action = (family.parse)(name, p).unwrap_or_else(|| Err(Code::InvalidActionNotFound.into()))?;
        let region_required = !family.region_optional.contains(&name);
        // The automatic snapshot policy actions spell it `regionId` (API reference).
        let region = p.opt_str("RegionId").or_else(|| p.opt_str("regionId"));
        let region_id = match region {
            None if region_required => return Err(ApiError::missing("RegionId")),
            r => r,
        };
        let client_token = match p.opt_str("ClientToken") {
            Some(_) if !action.takes_client_token() => None,
            // Documented: ASCII only, at most 64 characters.
            Some(t) if t.len() > 64 || !t.is_ascii() => return Err(ApiError::invalid("ClientToken")),
            t => t,
        };
        // Only a request that carries a token is ever compared with another.
        let fingerprint = if client_token.is_some() { fingerprint(name, p) } else { String::new() };
        Ok(Request { region_id, action, client_token, fingerprint })
    }
}

/// Parse `name` with these parameters, as the family tests do.
#[cfg(test)]
pub(crate) fn parse_pairs(name: &str, pairs: &[(&str, &str)]) -> Result<Action, ApiError> {
    Action::parse(name, &Params::from_pairs(pairs.iter().copied())).map(|r| r.action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_action_is_known_and_unknown_ones_are_not() {
        let empty = Params::from_pairs(Vec::<(String, String)>::new());
        for name in action_names() {
            if let Err(e) = Action::parse(name, &empty) {
                assert_ne!(e.code, Code::InvalidActionNotFound, "{name}");
            }
            let owners = FAMILIES.iter().filter(|f| f.names.contains(&name)).count();
            assert_eq!(owners, 1, "{name} belongs to exactly one family");
            for f in FAMILIES {
                if !f.names.contains(&name) {
                    assert!((f.parse)(name, &empty).is_none(), "{name} parsed by another family");
                }
                assert!(f.region_optional.iter().all(|r| f.names.contains(r)));
            }
        }
        assert_eq!(Action::parse("NoSuchAction", &empty).unwrap_err().code, Code::InvalidActionNotFound);
    }

    #[test]
    fn legacy_region_is_kept_and_required_where_documented() {
        let p = Params::from_pairs([("DiskId", "d"), ("SnapshotId", "s"), ("RegionId", "cn-x")]);
        assert_eq!(Action::parse("ResetDisk", &p).unwrap().region_id.as_deref(), Some("cn-x"));
        let e = Action::parse("DescribeDisks", &Params::default()).unwrap_err();
        assert_eq!(e, ApiError::missing("RegionId"));
        let p = Params::from_pairs([("DiskId", "d"), ("DiskCategory", "cloud_essd")]);
        assert_eq!(Action::parse("ModifyDiskSpec", &p).unwrap().region_id, None);
    }

    #[test]
    fn unknown_action_and_owner_conflict() {
        assert_eq!(Action::parse("Nope", &Params::default()).unwrap_err().code, Code::InvalidActionNotFound);
        let p = Params::from_pairs([("OwnerId", "1"), ("OwnerAccount", "a")]);
        assert_eq!(Action::parse("DescribeRegions", &p).unwrap_err().code, Code::InvalidOwner);
    }
}
