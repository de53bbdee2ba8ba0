//! The snapshot-group family (API reference: CreateSnapshotGroup, DescribeSnapshotGroups,
//! DeleteSnapshotGroup) and ResetDisks, which rolls several disks back together (to a group's
//! snapshots or to any list of disk/snapshot pairs). Parsed here into [`Action`] variants.

use crate::action::{Action, Family};
use crate::error::{ApiError, Code};
use crate::params::Params;

/// At most this many disks in one group (API reference: CreateSnapshotGroup, DiskId.N).
pub const MAX_GROUP_DISKS: usize = 16;

/// CreateSnapshotGroup: one crash-consistent point across disks of one instance, or across
/// the disks `DiskId.N` names in one zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSnapshotGroup {
    pub instance_id: Option<String>,
    /// `DiskId.N`: the disks to include; empty means every cloud disk of the instance.
    pub disk_ids: Vec<String>,
    /// `ExcludeDiskId.N`: disks left out.
    pub exclude_disk_ids: Vec<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// DescribeSnapshotGroups: filters and NextToken paging (MaxResults 10–100, default 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeSnapshotGroups {
    pub instance_id: Option<String>,
    pub snapshot_group_ids: Vec<String>,
    pub name: Option<String>,
    /// `Status.N`: progressing, accomplished, failed.
    pub status: Vec<String>,
    pub tags: Vec<(String, Option<String>)>,
    pub max_results: u32,
    pub next_token: Option<String>,
}

/// ResetDisks: `Disk.N.DiskId` with `Disk.N.SnapshotId`, all or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetDisks {
    pub disks: Vec<(String, String)>,
    pub dry_run: bool,
}

/// This family's actions, for [`crate::action::Action::parse`].
pub(crate) const FAMILY: Family = Family {
    names: &["CreateSnapshotGroup", "DescribeSnapshotGroups", "DeleteSnapshotGroup", "ResetDisks"],
    region_optional: &[],
    parse,
};

fn parse(name: &str, p: &Params) -> Option<Result<Action, ApiError>> {
    Some(match name {
        "CreateSnapshotGroup" => create(p).map(Action::CreateSnapshotGroup),
        "DescribeSnapshotGroups" => describe(p).map(Action::DescribeSnapshotGroups),
        "DeleteSnapshotGroup" => p.req_str("SnapshotGroupId").map(|id| Action::DeleteSnapshotGroup { id }),
        "ResetDisks" => reset(p).map(Action::ResetDisks),
        _ => return None,
    })
}

fn create(p: &Params) -> Result<CreateSnapshotGroup, ApiError> {
    let disk_ids = p.repeat_list("DiskId")?;
    let exclude_disk_ids = p.repeat_list("ExcludeDiskId")?;
    if disk_ids.len() > MAX_GROUP_DISKS {
        return Err(ApiError::invalid("DiskId"));
    }
    let mut seen = std::collections::BTreeSet::new();
    if !disk_ids.iter().chain(&exclude_disk_ids).all(|d| seen.insert(d)) {
        return Err(ApiError::invalid("DiskId"));
    }
    // Documented: not both lists; without InstanceId, DiskId.N names the disks.
    if !disk_ids.is_empty() && !exclude_disk_ids.is_empty() {
        return Err(ApiError::invalid("ExcludeDiskId"));
    }
    let instance_id = p.opt_str("InstanceId");
    if instance_id.is_none() && disk_ids.is_empty() {
        return Err(ApiError::missing("InstanceId"));
    }
    let name = p.opt_str("Name");
    // Names follow the naming rules, and may not start with auto (API reference).
    if name.as_deref().is_some_and(|n| !crate::params::valid_name(n, 128) || n.starts_with("auto")) {
        return Err(ApiError::invalid("Name"));
    }
    let description = p.opt_str("Description");
    if description.as_deref().is_some_and(|d| !crate::params::valid_description(d)) {
        return Err(Code::InvalidDescriptionMalformed.into());
    }
    Ok(CreateSnapshotGroup { instance_id, disk_ids, exclude_disk_ids, name, description, tags: p.tags()? })
}

fn describe(p: &Params) -> Result<DescribeSnapshotGroups, ApiError> {
    let ids = p.repeat_list("SnapshotGroupId")?;
    if ids.len() > 10 {
        return Err(ApiError::invalid("SnapshotGroupId"));
    }
    let status = p.repeat_list("Status")?;
    if status.len() > 3 || status.iter().any(|s| !["progressing", "accomplished", "failed"].contains(&s.as_str())) {
        return Err(ApiError::invalid("Status"));
    }
    let max_results = p.opt_range("MaxResults", 10, 100)?.unwrap_or(10) as u32;
    Ok(DescribeSnapshotGroups {
        instance_id: p.opt_str("InstanceId"),
        snapshot_group_ids: ids,
        name: p.opt_str("Name"),
        status,
        tags: p.tag_filter()?,
        max_results,
        next_token: p.opt_str("NextToken").filter(|t| !t.is_empty()),
    })
}

fn reset(p: &Params) -> Result<ResetDisks, ApiError> {
    let items = p.repeat_struct("Disk")?;
    if items.is_empty() {
        return Err(ApiError::missing("Disk.1.DiskId"));
    }
    if items.len() > 10 {
        return Err(ApiError::invalid("Disk"));
    }
    let mut disks = Vec::with_capacity(items.len());
    for (i, d) in items.iter().enumerate() {
        let get = |f: &str| {
            d.get(f).filter(|v| !v.is_empty()).cloned().ok_or_else(|| ApiError::missing(&format!("Disk.{}.{f}", i + 1)))
        };
        let pair = (get("DiskId")?, get("SnapshotId")?);
        if disks.iter().any(|(d, _)| *d == pair.0) {
            return Err(ApiError::invalid(&format!("Disk.{}.DiskId", i + 1)));
        }
        disks.push(pair);
    }
    Ok(ResetDisks { disks, dry_run: p.bool_or("DryRun", false)? })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse_ok(name: &str, pairs: &[(&str, &str)]) -> Action {
        Action::parse(name, &Params::from_pairs(pairs.iter().copied())).unwrap().action
    }

    fn parse_err(name: &str, pairs: &[(&str, &str)]) -> Code {
        Action::parse(name, &Params::from_pairs(pairs.iter().copied())).unwrap_err().code
    }

    #[test]
    fn groups_and_reset_disks_parse_as_documented() {
        let r = ("RegionId", "cn-hangzhou");
        match parse_ok("CreateSnapshotGroup", &[r, ("InstanceId", "i-1"), ("ExcludeDiskId.1", "d-2")]) {
            Action::CreateSnapshotGroup(c) => assert_eq!(c.exclude_disk_ids, vec!["d-2".to_string()]),
            other => panic!("{other:?}"),
        }
        match parse_ok("CreateSnapshotGroup", &[r, ("DiskId.1", "d-1")]) {
            Action::CreateSnapshotGroup(c) => assert_eq!((c.instance_id, c.disk_ids), (None, vec!["d-1".to_string()])),
            other => panic!("{other:?}"),
        }
        let twice = [r, ("DiskId.1", "d-1"), ("DiskId.2", "d-1")];
        assert_eq!(parse_err("CreateSnapshotGroup", &twice), Code::InvalidParameter);
        let both = [r, ("InstanceId", "i-1"), ("DiskId.1", "d-1"), ("ExcludeDiskId.1", "d-2")];
        assert_eq!(parse_err("CreateSnapshotGroup", &both), Code::InvalidParameter);
        assert_eq!(parse_err("CreateSnapshotGroup", &[r]), Code::MissingParameter);
        assert_eq!(
            parse_err("CreateSnapshotGroup", &[r, ("InstanceId", "i"), ("Name", "auto-x")]),
            Code::InvalidParameter
        );
        match parse_ok(
            "ResetDisks",
            &[
                r,
                ("Disk.1.DiskId", "d-1"),
                ("Disk.1.SnapshotId", "s-1"),
                ("Disk.2.DiskId", "d-2"),
                ("Disk.2.SnapshotId", "s-2"),
            ],
        ) {
            Action::ResetDisks(x) => assert_eq!(x.disks.len(), 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_err("ResetDisks", &[r]), Code::MissingParameter);
        assert_eq!(parse_err("ResetDisks", &[r, ("Disk.1.DiskId", "d-1")]), Code::MissingParameter);
        let twice = [
            r,
            ("Disk.1.DiskId", "d-1"),
            ("Disk.1.SnapshotId", "s-1"),
            ("Disk.2.DiskId", "d-1"),
            ("Disk.2.SnapshotId", "s-2"),
        ];
        assert_eq!(parse_err("ResetDisks", &twice), Code::InvalidParameter);
        assert_eq!(parse_err("DescribeSnapshotGroups", &[r, ("Status.1", "done")]), Code::InvalidParameter);
        assert_eq!(parse_err("DescribeSnapshotGroups", &[r, ("MaxResults", "5")]), Code::InvalidParameter);
        assert_eq!(parse_err("DeleteSnapshotGroup", &[r]), Code::MissingParameter);
    }
}
