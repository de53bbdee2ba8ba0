//! The typed actions. Every request is parsed into one variant of [`Action`] before any
//! handler runs, so handlers never touch raw parameters and MissingParameter/InvalidParameter
//! come from one place.

use crate::error::{ApiError, Code};
use crate::params::{Paging, Params};
use crate::vpc::Product;

/// Every action name [`Action::parse`] knows (a test checks each parses to an action), for
/// tools that exercise them all, such as the fuzz targets.
pub const ACTION_NAMES: &[&str] = &[
    "ResetDisk",
    "ResetDisks",
    "ModifyDiskSpec",
    "DescribeTasks",
    "DescribeTaskAttribute",
    "CreateAutoSnapshotPolicy",
    "ModifyAutoSnapshotPolicyEx",
    "DescribeAutoSnapshotPolicyEx",
    "DeleteAutoSnapshotPolicy",
    "ApplyAutoSnapshotPolicy",
    "CancelAutoSnapshotPolicy",
    "CreateSnapshotGroup",
    "DescribeSnapshotGroups",
    "DeleteSnapshotGroup",
    "CreateDisk",
    "DescribeDisks",
    "DeleteDisk",
    "ModifyDiskAttribute",
    "ResizeDisk",
    "ReInitDisk",
    "AttachDisk",
    "DetachDisk",
    "CreateSnapshot",
    "DescribeSnapshots",
    "CopySnapshot",
    "ModifySnapshotAttribute",
    "DeleteSnapshot",
    "RunInstances",
    "CreateInstance",
    "StartInstance",
    "StopInstance",
    "RebootInstance",
    "ReplaceSystemDisk",
    "StartInstances",
    "StopInstances",
    "DescribeInstances",
    "DescribeInstanceAttribute",
    "DescribeUserData",
    "GetInstanceConsoleOutput",
    "DescribeInstanceMaintenanceAttributes",
    "DescribeInstanceAttachmentAttributes",
    "DescribeInstanceTypes",
    "DescribeInstanceTypeFamilies",
    "DeleteInstance",
    "DescribeRegions",
    "DescribeZones",
    "DescribeImages",
    "CreateImage",
    "ImportImage",
    "DeleteImage",
    "TagResources",
    "UntagResources",
    "ListTagResources",
    "AddTags",
    "RemoveTags",
    "DescribeTags",
];

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
    ResetDisk(ResetDisk),
    CreateDisk(CreateDisk),
    DescribeDisks(DescribeDisks),
    DeleteDisk {
        disk_id: String,
        dry_run: bool,
    },
    ModifyDiskAttribute(ModifyDiskAttribute),
    ResizeDisk(ResizeDisk),
    ReInitDisk(ReInitDisk),
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
    CreateSnapshot(CreateSnapshot),
    DescribeSnapshots(DescribeSnapshots),
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
        spec: InstanceSpec,
        amount: u32,
        min_amount: Option<u32>,
        dry_run: bool,
    },
    CreateInstance {
        spec: InstanceSpec,
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
    DescribeInstances(DescribeInstances),
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
    DescribeInstanceTypes(DescribeInstanceTypes),
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
    DescribeImages(DescribeImages),
    /// ImportImage: a raw, qcow2 or VHD file in an OSS bucket becomes an image.
    ImportImage(ImportImage),
    CreateImage {
        snapshot_id: String,
        image_name: Option<String>,
        description: Option<String>,
    },
    DeleteImage {
        image_id: String,
        force: bool,
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
    DescribeRouteTableList(crate::vpc::DescribeRouteTableList),
}

/// DescribeInstanceTypes: the filters the catalog answers, and NextToken paging.
#[derive(Debug, Clone, PartialEq)]
pub struct DescribeInstanceTypes {
    /// `InstanceTypes.N`: only these (empty: all).
    pub types: Vec<String>,
    pub family: Option<String>,
    pub min_cpu: Option<i64>,
    pub max_cpu: Option<i64>,
    /// GiB.
    pub min_memory_gib: Option<f64>,
    /// GiB.
    pub max_memory_gib: Option<f64>,
    pub next_token: Option<String>,
    /// 1–1600, default 1600.
    pub max_results: u32,
}

/// ModifyDiskAttribute: one disk (`DiskId`) or several (`DiskIds`, a JSON list of up to
/// 100); every attribute optional, at least one required.
#[derive(Debug, Clone, PartialEq)]
pub struct ModifyDiskAttribute {
    pub disk_ids: Vec<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub delete_with_instance: Option<bool>,
    pub delete_auto_snapshot: Option<bool>,
    pub enable_auto_snapshot: Option<bool>,
}

/// ResizeDisk: grow a disk to `new_size_gib` GiB. `ClientToken` is honoured (the answer of
/// the first call is replayed).
#[derive(Debug, Clone, PartialEq)]
pub struct ResizeDisk {
    pub disk_id: String,
    /// `NewSize`, in GiB (required; range checked per category by the handler).
    pub new_size_gib: i64,
    /// `Type`: `online` (the disk on a Running instance, new size usable at once) or `offline`
    /// (the default; new size seen when NBD clients reconnect).
    pub online: bool,
}

/// ReInitDisk: put a disk back as it was created (its image, its source snapshot, or zeros).
/// `Password` is checked against the documented rules and then ignored, like `KeyPairName`,
/// `AutoStartInstance` and `SecurityEnhancementStrategy` (Snapdisk has no guest OS).
#[derive(Debug, Clone, PartialEq)]
pub struct ReInitDisk {
    pub disk_id: String,
}

/// The documented password rule (ReInitDisk, RunInstances): 8 to 30 characters, at least
/// three of upper case, lower case, digits and the listed special characters, nothing else.
pub fn valid_password(p: &str) -> bool {
    const SPECIAL: &str = "()`~!@#$%^&*-_+=|{}[]:;'<>,.?/";
    let classes = [
        p.chars().any(|c| c.is_ascii_uppercase()),
        p.chars().any(|c| c.is_ascii_lowercase()),
        p.chars().any(|c| c.is_ascii_digit()),
        p.chars().any(|c| SPECIAL.contains(c)),
    ];
    (8..=30).contains(&p.chars().count())
        && p.chars().all(|c| c.is_ascii_alphanumeric() || SPECIAL.contains(c))
        && classes.iter().filter(|x| **x).count() >= 3
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResetDisk {
    pub disk_id: String,
    pub snapshot_id: String,
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CreateDisk {
    pub zone_id: Option<String>,
    pub size_gib: Option<i64>,
    pub snapshot_id: Option<String>,
    pub category: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub performance_level: Option<String>,
    pub tags: Vec<(String, String)>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeDisks {
    pub zone_id: Option<String>,
    pub disk_ids: Option<Vec<String>>,
    pub instance_id: Option<String>,
    pub disk_type: Option<String>,
    pub category: Option<String>,
    pub status: Option<String>,
    pub snapshot_id: Option<String>,
    pub disk_name: Option<String>,
    pub encrypted: Option<bool>,
    /// `Tag.N.Key`/`Tag.N.Value`: every pair must match; a key alone matches any value.
    pub tags: Vec<(String, Option<String>)>,
    pub paging: Paging,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateSnapshot {
    pub disk_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub retention_days: Option<i64>,
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeSnapshots {
    pub disk_id: Option<String>,
    pub instance_id: Option<String>,
    pub snapshot_ids: Option<Vec<String>>,
    pub name: Option<String>,
    pub status: Option<String>,
    /// `SnapshotType`: `Some(true)` automatic only, `Some(false)` user only, `None` all.
    pub auto: Option<bool>,
    /// `Tag.N.Key`/`Tag.N.Value`: every pair must match; a key alone matches any value.
    pub tags: Vec<(String, Option<String>)>,
    pub paging: Paging,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DiskSpec {
    pub size_gib: Option<i64>,
    pub category: Option<String>,
    pub snapshot_id: Option<String>,
    pub delete_with_instance: bool,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub performance_level: Option<String>,
    pub name: Option<String>,
    /// `SystemDisk.Description` / `DataDisk.N.Description`: kept on the disk.
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSpec {
    pub image_id: String,
    pub instance_type: String,
    pub zone_id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub host_name: Option<String>,
    pub security_group_ids: Vec<String>,
    pub vswitch_id: Option<String>,
    /// `PrivateIpAddress`: inside the vSwitch's block (needs VSwitchId, one instance).
    pub private_ip_address: Option<String>,
    pub charge_type: String,
    pub system_disk: DiskSpec,
    pub data_disks: Vec<DiskSpec>,
    pub deletion_protection: bool,
    pub tags: Vec<(String, String)>,
    /// Base64, as given (at most 32 KiB once decoded).
    pub user_data: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeInstances {
    pub instance_ids: Option<Vec<String>>,
    pub status: Option<String>,
    pub zone_id: Option<String>,
    pub instance_name: Option<String>,
    pub instance_type: Option<String>,
    pub image_id: Option<String>,
    pub lock_reason: Option<String>,
    pub vpc_id: Option<String>,
    pub vswitch_id: Option<String>,
    /// `PrivateIpAddresses`: a JSON list of up to 100.
    pub private_ips: Option<Vec<String>>,
    /// `Tag.N.Key`/`Tag.N.Value`: every pair must match; a key alone matches any value.
    pub tags: Vec<(String, Option<String>)>,
    pub paging: Paging,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeImages {
    pub image_ids: Option<Vec<String>>,
    pub image_name: Option<String>,
    pub owner_alias: Option<String>,
    pub snapshot_id: Option<String>,
    /// `Status`: comma-separated image states; the API's default is `Available` only.
    pub status: Vec<String>,
    /// `Tag.N.Key`/`Tag.N.Value`: every pair must match; a key alone matches any value.
    pub tags: Vec<(String, Option<String>)>,
    pub paging: Paging,
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
                | Action::CreateSnapshotGroup(_)
                | Action::ReplaceSystemDisk { .. }
                | Action::CopySnapshot { .. }
                | Action::CreateVpc(_)
                | Action::CreateVSwitch(_)
        )
    }

    /// Parse an ECS 2014-05-26 action `name` with its parameters; unknown names are
    /// `InvalidAction.NotFound`.
    pub fn parse(name: &str, p: &Params) -> Result<Request, ApiError> {
        Action::parse_in(Product::Ecs, name, p)
    }

    /// Parse a request sent under `version`: ECS 2014-05-26 (every ECS action, and the
    /// ECS-endpoint forms of the network actions) or VPC 2016-04-28 (the network family
    /// only). Any other version is `InvalidVersion`; an action its product lacks is
    /// `InvalidAction.NotFound`.
    pub fn parse_versioned(version: &str, name: &str, p: &Params) -> Result<Request, ApiError> {
        match version {
            crate::API_VERSION => Action::parse_in(Product::Ecs, name, p),
            crate::vpc::VPC_API_VERSION => Action::parse_in(Product::Vpc, name, p),
            _ => Err(Code::InvalidVersion.into()),
        }
    }

    fn parse_in(product: Product, name: &str, p: &Params) -> Result<Request, ApiError> {
        if p.opt_str("OwnerId").is_some() && p.opt_str("OwnerAccount").is_some() {
            return Err(Code::InvalidOwner.into());
        }
        let dry = || p.bool_or("DryRun", false);
        let mut region_required = false;
        let action = match name {
            // The VPC API answers its own family only.
            other if product == Product::Vpc => match crate::vpc::parse(other, p, product) {
                Some(action) => {
                    let action = action?;
                    region_required = crate::vpc::region_required(&action);
                    action
                }
                None => return Err(Code::InvalidActionNotFound.into()),
            },
            "ResetDisk" => Action::ResetDisk(ResetDisk {
                disk_id: p.req_str("DiskId")?,
                snapshot_id: p.req_str("SnapshotId")?,
                dry_run: dry()?,
            }),
            "CreateDisk" => {
                region_required = true;
                let c = CreateDisk {
                    zone_id: p.opt_str("ZoneId"),
                    size_gib: p.opt_i64("Size")?,
                    snapshot_id: p.opt_str("SnapshotId"),
                    category: p.opt_str("DiskCategory"),
                    name: p.opt_str("DiskName"),
                    description: p.opt_str("Description"),
                    encrypted: p.bool_or("Encrypted", false)?,
                    kms_key_id: p.opt_str("KMSKeyId"),
                    performance_level: p.opt_str("PerformanceLevel"),
                    tags: p.tags()?,
                    dry_run: dry()?,
                };
                if c.name.as_deref().is_some_and(|n| !crate::params::valid_name(n, 128)) {
                    return Err(Code::InvalidDiskNameMalformed.into());
                }
                if c.description.as_deref().is_some_and(|d| !crate::params::valid_description(d)) {
                    return Err(Code::InvalidDescriptionMalformed.into());
                }
                if c.size_gib.is_none() && c.snapshot_id.is_none() {
                    return Err(Code::MissingSizeOrSnapshot.into());
                }
                if c.zone_id.is_none() {
                    return Err(ApiError::missing("ZoneId"));
                }
                Action::CreateDisk(c)
            }
            "DescribeDisks" => {
                region_required = true;
                let disk_ids = p.json_list("DiskIds", 100).map_err(|e| match e.code {
                    Code::InvalidParameter => ApiError::new(Code::InvalidDiskIdsMalformed),
                    _ => e,
                })?;
                Action::DescribeDisks(DescribeDisks {
                    zone_id: p.opt_str("ZoneId"),
                    disk_ids,
                    instance_id: p.opt_str("InstanceId"),
                    disk_type: p.opt_str("DiskType").filter(|t| t != "all"),
                    category: p.opt_str("Category").filter(|c| c != "all"),
                    status: p.opt_str("Status").filter(|s| s != "All"),
                    snapshot_id: p.opt_str("SnapshotId"),
                    disk_name: p.opt_str("DiskName"),
                    encrypted: p.opt_bool("Encrypted")?,
                    tags: p.tag_filter()?,
                    paging: Paging::parse(p, 500)?,
                })
            }
            "DeleteDisk" => Action::DeleteDisk { disk_id: p.req_str("DiskId")?, dry_run: dry()? },
            "ModifyDiskAttribute" => {
                // DiskIds.N as the reference and the SDKs send it; a JSON list is taken too.
                let mut listed = p.repeat_list("DiskIds")?;
                if listed.is_empty() {
                    listed = p.json_list("DiskIds", 100)?.unwrap_or_default();
                }
                if listed.len() > 100 {
                    return Err(ApiError::invalid("DiskIds"));
                }
                let disk_ids = match (p.opt_str("DiskId"), listed.is_empty()) {
                    (Some(_), false) => return Err(ApiError::invalid("DiskIds")),
                    (Some(id), true) => vec![id],
                    (None, false) => listed,
                    (None, true) => return Err(ApiError::missing("DiskId")),
                };
                let m = ModifyDiskAttribute {
                    disk_ids,
                    name: p.opt_str("DiskName"),
                    description: p.opt_str("Description"),
                    delete_with_instance: p.opt_bool("DeleteWithInstance")?,
                    delete_auto_snapshot: p.opt_bool("DeleteAutoSnapshot")?,
                    enable_auto_snapshot: p.opt_bool("EnableAutoSnapshot")?,
                };
                if m.name.as_deref().is_some_and(|n| !crate::params::valid_name(n, 128)) {
                    return Err(Code::InvalidDiskNameMalformed.into());
                }
                if m.description.as_deref().is_some_and(|d| !crate::params::valid_description(d)) {
                    return Err(Code::InvalidDescriptionMalformed.into());
                }
                if m.name.is_none()
                    && m.description.is_none()
                    && m.delete_with_instance.is_none()
                    && m.delete_auto_snapshot.is_none()
                    && m.enable_auto_snapshot.is_none()
                {
                    return Err(Code::NoAttributeToModify.into());
                }
                Action::ModifyDiskAttribute(m)
            }
            "ResizeDisk" => {
                let disk_id = p.req_str("DiskId")?;
                let new_size_gib = p.opt_i64("NewSize")?.ok_or_else(|| ApiError::missing("NewSize"))?;
                let online = match p.opt_str("Type").as_deref() {
                    None | Some("offline") => false,
                    Some("online") => true,
                    Some(_) => return Err(Code::InvalidParamType.into()),
                };
                Action::ResizeDisk(ResizeDisk { disk_id, new_size_gib, online })
            }
            "ReInitDisk" => {
                let disk_id = p.req_str("DiskId")?;
                if p.opt_str("Password").is_some_and(|pw| !valid_password(&pw)) {
                    return Err(Code::InvalidPasswordMalformed.into());
                }
                p.opt_bool("AutoStartInstance")?;
                Action::ReInitDisk(ReInitDisk { disk_id })
            }
            "AttachDisk" => Action::AttachDisk {
                disk_id: p.req_str("DiskId")?,
                instance_id: p.req_str("InstanceId")?,
                delete_with_instance: p.opt_bool("DeleteWithInstance")?,
                dry_run: dry()?,
            },
            "DetachDisk" => Action::DetachDisk {
                disk_id: p.req_str("DiskId")?,
                instance_id: p.req_str("InstanceId")?,
                delete_with_instance: p.opt_bool("DeleteWithInstance")?,
                dry_run: dry()?,
            },
            "CreateSnapshot" => {
                let name = p.opt_str("SnapshotName");
                if name.as_deref().is_some_and(|n| !snapshot_name_ok(n)) {
                    return Err(ApiError::invalid("SnapshotName"));
                }
                Action::CreateSnapshot(CreateSnapshot {
                    disk_id: p.req_str("DiskId")?,
                    name,
                    description: p.opt_str("Description"),
                    retention_days: p.opt_range("RetentionDays", 1, 65536)?,
                    tags: p.tags()?,
                })
            }
            "CopySnapshot" => {
                region_required = true;
                let name = p.opt_str("DestinationSnapshotName");
                if name.as_deref().is_some_and(|n| !snapshot_name_ok(n)) {
                    return Err(ApiError::invalid("DestinationSnapshotName"));
                }
                let description = p.opt_str("DestinationSnapshotDescription");
                if description.as_deref().is_some_and(|d| !crate::params::valid_description(d)) {
                    return Err(Code::InvalidDescriptionMalformed.into());
                }
                Action::CopySnapshot {
                    snapshot_id: p.req_str("SnapshotId")?,
                    destination_region_id: p.req_str("DestinationRegionId")?,
                    name,
                    description,
                    retention_days: p.opt_range("RetentionDays", 1, 65536)?,
                    tags: p.tags()?,
                }
            }
            "DescribeSnapshots" => {
                region_required = true;
                Action::DescribeSnapshots(DescribeSnapshots {
                    disk_id: p.opt_str("DiskId"),
                    instance_id: p.opt_str("InstanceId"),
                    snapshot_ids: p.json_list("SnapshotIds", 100)?,
                    name: p.opt_str("SnapshotName"),
                    status: p.opt_str("Status").filter(|s| s != "all"),
                    auto: match p.opt_str("SnapshotType").as_deref() {
                        None | Some("all") => None,
                        Some("auto") => Some(true),
                        Some("user") => Some(false),
                        Some(_) => return Err(ApiError::invalid("SnapshotType")),
                    },
                    tags: p.tag_filter()?,
                    paging: Paging::parse(p, 100)?,
                })
            }
            "ModifySnapshotAttribute" => {
                let name = p.opt_str("SnapshotName");
                if name.as_deref().is_some_and(|n| !snapshot_name_ok(n)) {
                    return Err(ApiError::invalid("SnapshotName"));
                }
                let description = p.opt_str("Description");
                if description.as_deref().is_some_and(|d| !crate::params::valid_description(d)) {
                    return Err(Code::InvalidDescriptionMalformed.into());
                }
                // DisableInstantAccess is accepted: snapshots here are always readable at once.
                p.opt_bool("DisableInstantAccess")?;
                Action::ModifySnapshotAttribute {
                    snapshot_id: p.req_str("SnapshotId")?,
                    name,
                    description,
                    retention_days: p.opt_range("RetentionDays", 1, 65536)?,
                }
            }
            "DeleteSnapshot" => {
                Action::DeleteSnapshot { snapshot_id: p.req_str("SnapshotId")?, force: p.bool_or("Force", false)? }
            }
            "RunInstances" => {
                region_required = true;
                let amount = p.opt_range("Amount", 1, 100)?.unwrap_or(1) as u32;
                let min_amount = p.opt_range("MinAmount", 1, 100)?.map(|m| m as u32);
                if amount > 1 && p.opt_str("PrivateIpAddress").is_some() {
                    // One address names one instance.
                    return Err(ApiError::invalid("PrivateIpAddress"));
                }
                Action::RunInstances { spec: instance_spec(p)?, amount, min_amount, dry_run: dry()? }
            }
            "CreateInstance" => {
                region_required = true;
                Action::CreateInstance { spec: instance_spec(p)?, dry_run: dry()? }
            }
            "StartInstance" => Action::StartInstance { instance_id: p.req_str("InstanceId")?, dry_run: dry()? },
            "StopInstance" => Action::StopInstance {
                instance_id: p.req_str("InstanceId")?,
                force_stop: p.bool_or("ForceStop", false)?,
                dry_run: dry()?,
            },
            "StartInstances" | "StopInstances" => {
                region_required = true;
                let ids = p.repeat_list("InstanceId")?;
                if ids.is_empty() {
                    return Err(ApiError::missing("InstanceId.1"));
                }
                if ids.len() > 100 {
                    return Err(ApiError::invalid("InstanceId"));
                }
                if name == "StartInstances" {
                    Action::StartInstances { instance_ids: ids, dry_run: dry()? }
                } else {
                    Action::StopInstances {
                        instance_ids: ids,
                        force_stop: p.bool_or("ForceStop", false)?,
                        dry_run: dry()?,
                    }
                }
            }
            "RebootInstance" => Action::RebootInstance {
                instance_id: p.req_str("InstanceId")?,
                force_stop: p.bool_or("ForceStop", false)?,
                dry_run: dry()?,
            },
            "ReplaceSystemDisk" => Action::ReplaceSystemDisk {
                instance_id: p.req_str("InstanceId")?,
                image_id: p.req_str("ImageId")?,
                size_gib: p.opt_range("SystemDisk.Size", 1, 2048)?,
                encrypted: p.bool_or("Encrypted", false)?,
                kms_key_id: p.opt_str("KMSKeyId"),
            },
            "DescribeInstanceTypes" => {
                let float = |name: &str| -> Result<Option<f64>, ApiError> {
                    p.opt_str(name)
                        .map(|v| v.parse::<f64>().ok().filter(|f| f.is_finite()).ok_or_else(|| ApiError::invalid(name)))
                        .transpose()
                };
                Action::DescribeInstanceTypes(DescribeInstanceTypes {
                    types: p.repeat_list("InstanceTypes")?,
                    family: p.opt_str("InstanceTypeFamily"),
                    min_cpu: p.opt_i64("MinimumCpuCoreCount")?,
                    max_cpu: p.opt_i64("MaximumCpuCoreCount")?,
                    min_memory_gib: float("MinimumMemorySize")?,
                    max_memory_gib: float("MaximumMemorySize")?,
                    next_token: p.opt_str("NextToken"),
                    max_results: p.opt_range("MaxResults", 1, 1600)?.unwrap_or(1600) as u32,
                })
            }
            "DescribeInstanceTypeFamilies" => {
                region_required = true;
                Action::DescribeInstanceTypeFamilies { generation: p.opt_str("Generation") }
            }
            "DescribeUserData" => {
                region_required = true;
                Action::DescribeUserData { instance_id: p.req_str("InstanceId")? }
            }
            "GetInstanceConsoleOutput" => {
                region_required = true;
                Action::GetInstanceConsoleOutput {
                    instance_id: p.req_str("InstanceId")?,
                    remove_symbols: p.bool_or("RemoveSymbols", false)?,
                }
            }
            "DescribeInstanceMaintenanceAttributes" => {
                region_required = true;
                let (instance_ids, page) = instance_list(p)?;
                Action::DescribeInstanceMaintenanceAttributes { instance_ids, page }
            }
            "DescribeInstanceAttachmentAttributes" => {
                region_required = true;
                let (instance_ids, page) = instance_list(p)?;
                Action::DescribeInstanceAttachmentAttributes { instance_ids, page }
            }
            "DescribeInstanceAttribute" => Action::DescribeInstanceAttribute { instance_id: p.req_str("InstanceId")? },
            "DescribeInstances" => {
                region_required = true;
                Action::DescribeInstances(DescribeInstances {
                    instance_ids: p.json_list("InstanceIds", 100)?,
                    status: p.opt_str("Status"),
                    zone_id: p.opt_str("ZoneId"),
                    instance_name: p.opt_str("InstanceName"),
                    instance_type: p.opt_str("InstanceType"),
                    image_id: p.opt_str("ImageId"),
                    lock_reason: p.opt_str("LockReason"),
                    vpc_id: p.opt_str("VpcId"),
                    vswitch_id: p.opt_str("VSwitchId"),
                    private_ips: p.json_list("PrivateIpAddresses", 100)?,
                    tags: p.tag_filter()?,
                    paging: Paging::parse(p, 100)?,
                })
            }
            "DeleteInstance" => Action::DeleteInstance {
                instance_id: p.req_str("InstanceId")?,
                force: p.bool_or("Force", false)?,
                dry_run: dry()?,
            },
            "DescribeRegions" => Action::DescribeRegions,
            "DescribeZones" => {
                region_required = true;
                Action::DescribeZones
            }
            "DescribeImages" => {
                region_required = true;
                Action::DescribeImages(DescribeImages {
                    image_ids: p.opt_str("ImageId").map(|s| s.split(',').map(|x| x.trim().to_string()).collect()),
                    image_name: p.opt_str("ImageName"),
                    owner_alias: p.opt_str("ImageOwnerAlias"),
                    snapshot_id: p.opt_str("SnapshotId"),
                    status: {
                        let raw = p.opt_str("Status").unwrap_or_else(|| "Available".into());
                        let v: Vec<String> =
                            raw.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect();
                        const STATES: [&str; 6] =
                            ["Creating", "Waiting", "Available", "UnAvailable", "CreateFailed", "Deprecated"];
                        if v.is_empty() || v.iter().any(|x| !STATES.contains(&x.as_str())) {
                            return Err(ApiError::invalid("Status"));
                        }
                        v
                    },
                    tags: p.tag_filter()?,
                    paging: Paging::parse(p, 100)?,
                })
            }
            "CreateImage" => {
                region_required = true;
                Action::CreateImage {
                    snapshot_id: p.req_str("SnapshotId")?,
                    image_name: p.opt_str("ImageName"),
                    description: p.opt_str("Description"),
                }
            }
            "ImportImage" => {
                region_required = true;
                Action::ImportImage(import_image(p)?)
            }
            "DeleteImage" => {
                region_required = true;
                Action::DeleteImage { image_id: p.req_str("ImageId")?, force: p.bool_or("Force", false)? }
            }
            other => match crate::tagging::parse(other, p)
                .or_else(|| crate::groups::parse(other, p))
                .or_else(|| crate::policies::parse(other, p))
                .or_else(|| crate::tasks::parse(other, p))
            {
                Some(action) => {
                    let action = action?;
                    // ModifyDiskSpec names its disk only (no RegionId in the reference).
                    region_required = !matches!(action, Action::ModifyDiskSpec(_));
                    action
                }
                None => match crate::vpc::parse(other, p, product) {
                    Some(action) => {
                        let action = action?;
                        region_required = crate::vpc::region_required(&action);
                        action
                    }
                    None => return Err(Code::InvalidActionNotFound.into()),
                },
            },
        };
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

/// UserData: base64 (`InvalidUserData.Base64FormatInvalid`) of at most 32 KiB
/// (`InvalidUserData.SizeExceeded`).
fn user_data(p: &Params) -> Result<Option<String>, ApiError> {
    use base64::Engine as _;
    let Some(raw) = p.opt_str("UserData") else {
        return Ok(None);
    };
    if raw.len() > 4 * (MAX_USER_DATA + 2) / 3 + 4 {
        return Err(Code::InvalidUserDataSizeExceeded.into());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .map_err(|_| ApiError::new(Code::InvalidUserDataBase64FormatInvalid))?;
    if decoded.len() > MAX_USER_DATA {
        return Err(Code::InvalidUserDataSizeExceeded.into());
    }
    Ok(Some(raw))
}

/// The most UserData an instance takes, in bytes before base64 (the RunInstances reference).
pub const MAX_USER_DATA: usize = 32 * 1024;

/// InstanceId.N (or a JSON `InstanceIds` list), 1–100, with PageNumber/PageSize (≤ 100).
fn instance_list(p: &Params) -> Result<(Vec<String>, (u32, u32)), ApiError> {
    let mut ids = p.repeat_list("InstanceId")?;
    if let Some(more) = p.json_list("InstanceIds", 100)? {
        ids.extend(more);
    }
    if ids.len() > 100 {
        return Err(ApiError::invalid("InstanceId"));
    }
    let number = p.opt_range("PageNumber", 1, i64::from(u32::MAX))?.unwrap_or(1) as u32;
    let size = p.opt_range("PageSize", 1, 100)?.unwrap_or(10) as u32;
    Ok((ids, (number, size)))
}

/// SnapshotName: 2–128 characters, not starting with `auto` (kept for automatic snapshots).
fn snapshot_name_ok(n: &str) -> bool {
    (2..=128).contains(&n.chars().count()) && !n.starts_with("auto")
}

fn disk_spec(fields: &std::collections::BTreeMap<String, String>, prefix: &str) -> Result<DiskSpec, ApiError> {
    let sub = Params::from_pairs(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
    let wrap = |e: ApiError| ApiError::invalid(&format!("{prefix}{}", e.message.split('"').nth(1).unwrap_or("")));
    Ok(DiskSpec {
        size_gib: sub.opt_i64("Size").map_err(wrap)?,
        category: sub.opt_str("Category"),
        snapshot_id: sub.opt_str("SnapshotId"),
        delete_with_instance: sub.bool_or("DeleteWithInstance", true).map_err(wrap)?,
        encrypted: sub.bool_or("Encrypted", false).map_err(wrap)?,
        kms_key_id: sub.opt_str("KMSKeyId"),
        performance_level: sub.opt_str("PerformanceLevel"),
        name: sub.opt_str("DiskName"),
        description: match sub.opt_str("Description") {
            Some(d) if !crate::params::valid_description(&d) => {
                return Err(Code::InvalidDescriptionMalformed.into());
            }
            d => d,
        },
    })
}

/// ImportImage's parameters (API reference ImportImage). Only the system disk's mapping
/// (`DiskDeviceMapping.1`) is imported; more mappings (data disk images) are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportImage {
    pub image_name: Option<String>,
    pub description: Option<String>,
    /// `x86_64` (default), `i386` or `arm64`.
    pub architecture: String,
    /// `linux` (default) or `windows`.
    pub os_type: String,
    pub platform: Option<String>,
    /// `BIOS` (default) or `UEFI`.
    pub boot_mode: String,
    pub oss_bucket: String,
    pub oss_object: String,
    /// `RAW`, `QCOW2` or `VHD`, upper case; `None`: found from the file.
    pub format: Option<String>,
    /// GiB the image's system disk has at least (1–2048); `None`: the file's virtual size.
    pub disk_image_size: Option<i64>,
}

fn import_image(p: &Params) -> Result<ImportImage, ApiError> {
    let maps = p.repeat_struct("DiskDeviceMapping")?;
    if maps.len() > 1 {
        return Err(ApiError::invalid("DiskDeviceMapping.2"));
    }
    let m = maps.into_iter().next().unwrap_or_default();
    let get = |f: &str| m.get(f).filter(|v| !v.is_empty()).cloned();
    let need = |f: &str| get(f).ok_or_else(|| ApiError::missing(&format!("DiskDeviceMapping.1.{f}")));
    let format = match get("Format").map(|f| f.to_ascii_uppercase()) {
        None => None,
        Some(f) if ["RAW", "QCOW2", "VHD"].contains(&f.as_str()) => Some(f),
        Some(_) => return Err(ApiError::invalid("DiskDeviceMapping.1.Format")),
    };
    let size = get("DiskImageSize").or_else(|| get("DiskImSize"));
    let disk_image_size = match size {
        None => None,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=2048).contains(&n) => Some(n),
            _ => return Err(ApiError::invalid("DiskDeviceMapping.1.DiskImageSize")),
        },
    };
    let one_of = |name: &str, allowed: &[&str], default: &str| -> Result<String, ApiError> {
        match p.opt_str(name) {
            None => Ok(default.to_string()),
            Some(v) if allowed.contains(&v.as_str()) => Ok(v),
            Some(_) => Err(ApiError::invalid(name)),
        }
    };
    let image_name = p.opt_str("ImageName");
    if image_name.as_deref().is_some_and(|n| !crate::params::valid_name(n, 128)) {
        return Err(Code::InvalidImageNameMalformed.into());
    }
    let description = p.opt_str("Description");
    if description.as_deref().is_some_and(|d| !crate::params::valid_description(d)) {
        return Err(Code::InvalidDescriptionMalformed.into());
    }
    Ok(ImportImage {
        image_name,
        description,
        architecture: one_of("Architecture", &["x86_64", "i386", "arm64"], "x86_64")?,
        os_type: one_of("OSType", &["linux", "windows"], "linux")?,
        platform: p.opt_str("Platform"),
        boot_mode: one_of("BootMode", &["BIOS", "UEFI"], "BIOS")?,
        oss_bucket: need("OSSBucket")?,
        oss_object: need("OSSObject")?,
        format,
        disk_image_size,
    })
}

fn instance_spec(p: &Params) -> Result<InstanceSpec, ApiError> {
    let system =
        p.iter().filter_map(|(k, v)| k.strip_prefix("SystemDisk.").map(|f| (f.to_string(), v.to_string()))).collect();
    let data_disks = p
        .repeat_struct("DataDisk")?
        .iter()
        .enumerate()
        .map(|(i, d)| disk_spec(d, &format!("DataDisk.{}.", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    if data_disks.len() > 16 {
        return Err(ApiError::invalid("DataDisk"));
    }
    let mut security_group_ids = p.repeat_list("SecurityGroupIds")?;
    if let Some(sg) = p.opt_str("SecurityGroupId") {
        security_group_ids.insert(0, sg);
    }
    if p.opt_str("InstanceName").is_some_and(|n| !crate::params::valid_name(&n, 128)) {
        return Err(Code::InvalidInstanceNameMalformed.into());
    }
    if p.opt_str("Description").is_some_and(|d| !crate::params::valid_description(&d)) {
        return Err(Code::InvalidInstanceDescriptionMalformed.into());
    }
    let system_disk = disk_spec(&system, "SystemDisk.")?;
    if std::iter::once(&system_disk)
        .chain(&data_disks)
        .any(|d| d.name.as_deref().is_some_and(|n| !crate::params::valid_name(n, 128)))
    {
        return Err(Code::InvalidSpecDiskNameMalformed.into());
    }
    let charge_type = p.opt_str("InstanceChargeType").unwrap_or_else(|| "PostPaid".into());
    if charge_type != "PostPaid" && charge_type != "PrePaid" {
        return Err(ApiError::invalid("InstanceChargeType"));
    }
    Ok(InstanceSpec {
        image_id: p.req_str("ImageId")?,
        instance_type: p.req_str("InstanceType")?,
        zone_id: p.opt_str("ZoneId"),
        name: p.opt_str("InstanceName"),
        description: p.opt_str("Description"),
        host_name: p.opt_str("HostName"),
        security_group_ids,
        vswitch_id: p.opt_str("VSwitchId"),
        private_ip_address: match p.opt_str("PrivateIpAddress") {
            Some(_) if p.opt_str("VSwitchId").is_none() => return Err(ApiError::missing("VSwitchId")),
            ip => ip,
        },
        charge_type,
        system_disk,
        data_disks,
        deletion_protection: p.bool_or("DeletionProtection", false)?,
        tags: p.tags()?,
        user_data: user_data(p)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_action_is_known_and_unknown_ones_are_not() {
        let empty = Params::from_pairs(Vec::<(String, String)>::new());
        for name in ACTION_NAMES {
            if let Err(e) = Action::parse(name, &empty) {
                assert_ne!(e.code, Code::InvalidActionNotFound, "{name}");
            }
        }
        assert_eq!(Action::parse("NoSuchAction", &empty).unwrap_err().code, Code::InvalidActionNotFound);
    }

    #[test]
    fn resize_and_reinit_parse_their_documented_parameters() {
        let p = Params::from_pairs([("DiskId", "d-1"), ("NewSize", "40"), ("Type", "online"), ("ClientToken", "t")]);
        let r = Action::parse("ResizeDisk", &p).unwrap();
        assert_eq!(r.action, Action::ResizeDisk(ResizeDisk { disk_id: "d-1".into(), new_size_gib: 40, online: true }));
        assert_eq!(r.client_token.as_deref(), Some("t"));
        let p = Params::from_pairs([("DiskId", "d-1"), ("NewSize", "40")]);
        assert!(matches!(
            Action::parse("ResizeDisk", &p).unwrap().action,
            Action::ResizeDisk(ResizeDisk { online: false, .. })
        ));
        let e = Action::parse("ResizeDisk", &Params::from_pairs([("DiskId", "d-1")])).unwrap_err();
        assert_eq!(e.code, Code::MissingParameter);
        let p = Params::from_pairs([("DiskId", "d-1"), ("NewSize", "x")]);
        assert_eq!(Action::parse("ResizeDisk", &p).unwrap_err().code, Code::InvalidParameter);
        let p = Params::from_pairs([("DiskId", "d-1"), ("NewSize", "40"), ("Type", "hot")]);
        assert_eq!(Action::parse("ResizeDisk", &p).unwrap_err().code, Code::InvalidParamType);

        let p = Params::from_pairs([("DiskId", "d-1"), ("Password", "EcsV587!"), ("KeyPairName", "k")]);
        assert_eq!(
            Action::parse("ReInitDisk", &p).unwrap().action,
            Action::ReInitDisk(ReInitDisk { disk_id: "d-1".into() })
        );
        for bad in ["short1A", "alllowercase1", "Has Space1!", &"Aa1!".repeat(8)] {
            let p = Params::from_pairs([("DiskId", "d-1"), ("Password", bad)]);
            assert_eq!(Action::parse("ReInitDisk", &p).unwrap_err().code, Code::InvalidPasswordMalformed, "{bad}");
        }
        let p = Params::from_pairs([("DiskId", "d-1"), ("AutoStartInstance", "perhaps")]);
        assert_eq!(Action::parse("ReInitDisk", &p).unwrap_err().code, Code::InvalidParameter);
        assert_eq!(
            Action::parse("ReInitDisk", &Params::from_pairs([("X", "y")])).unwrap_err().code,
            Code::MissingParameter
        );
    }

    #[test]
    fn reset_disk_parses_and_reports_missing_parameters() {
        let p = Params::from_pairs([("DiskId", "d-1"), ("SnapshotId", "s-1"), ("DryRun", "True")]);
        let r = Action::parse("ResetDisk", &p).unwrap();
        assert_eq!(
            r.action,
            Action::ResetDisk(ResetDisk { disk_id: "d-1".into(), snapshot_id: "s-1".into(), dry_run: true })
        );
        assert_eq!(r.region_id, None);
        let e = Action::parse("ResetDisk", &Params::from_pairs([("SnapshotId", "s-1")])).unwrap_err();
        assert_eq!(
            e.message,
            "The input parameter \"DiskId\" that is mandatory for processing this request is not supplied."
        );
        let e = Action::parse("ResetDisk", &Params::from_pairs([("DiskId", "d-1")])).unwrap_err();
        assert_eq!(
            e.message,
            "The input parameter \"SnapshotId\" that is mandatory for processing this request is not supplied."
        );
        let e = Action::parse(
            "ResetDisk",
            &Params::from_pairs([("DiskId", "d"), ("SnapshotId", "s"), ("DryRun", "maybe")]),
        )
        .unwrap_err();
        assert_eq!(e.code, Code::InvalidParameter);
    }

    #[test]
    fn legacy_region_is_kept_and_required_where_documented() {
        let p = Params::from_pairs([("DiskId", "d"), ("SnapshotId", "s"), ("RegionId", "cn-x")]);
        assert_eq!(Action::parse("ResetDisk", &p).unwrap().region_id.as_deref(), Some("cn-x"));
        let e = Action::parse("DescribeDisks", &Params::default()).unwrap_err();
        assert_eq!(e, ApiError::missing("RegionId"));
    }

    #[test]
    fn unknown_action_and_owner_conflict() {
        assert_eq!(Action::parse("Nope", &Params::default()).unwrap_err().code, Code::InvalidActionNotFound);
        let p = Params::from_pairs([("OwnerId", "1"), ("OwnerAccount", "a")]);
        assert_eq!(Action::parse("DescribeRegions", &p).unwrap_err().code, Code::InvalidOwner);
    }

    #[test]
    fn run_instances_data_disks() {
        let p = Params::from_pairs([
            ("RegionId", "cn-hangzhou"),
            ("ImageId", "img"),
            ("InstanceType", "ecs.g7.large"),
            ("DataDisk.1.Size", "20"),
            ("DataDisk.1.Category", "ephemeral_ssd"),
            ("DataDisk.2.Size", "40"),
            ("DataDisk.2.DeleteWithInstance", "false"),
            ("SystemDisk.Size", "40"),
            ("Amount", "2"),
        ]);
        let Action::RunInstances { spec, amount, .. } = Action::parse("RunInstances", &p).unwrap().action else {
            panic!("wrong variant")
        };
        assert_eq!(amount, 2);
        assert_eq!(spec.system_disk.size_gib, Some(40));
        assert_eq!(spec.data_disks.len(), 2);
        assert_eq!(spec.data_disks[0].category.as_deref(), Some("ephemeral_ssd"));
        assert!(!spec.data_disks[1].delete_with_instance);
        let bad =
            Params::from_pairs([("RegionId", "r"), ("ImageId", "i"), ("InstanceType", "t"), ("DataDisk.1.Size", "x")]);
        assert_eq!(Action::parse("RunInstances", &bad).unwrap_err(), ApiError::invalid("DataDisk.1.Size"));
    }

    #[test]
    fn create_disk_needs_size_or_snapshot() {
        let p = Params::from_pairs([("RegionId", "r"), ("ZoneId", "z")]);
        assert_eq!(Action::parse("CreateDisk", &p).unwrap_err().code, Code::MissingSizeOrSnapshot);
    }
}
