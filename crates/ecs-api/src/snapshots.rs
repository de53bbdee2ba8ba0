//! The snapshot family (API reference: CreateSnapshot, DescribeSnapshots, CopySnapshot,
//! ModifySnapshotAttribute, DeleteSnapshot), parsed into [`Action`] variants. Snapshot groups
//! are in `crate::groups`, automatic snapshot policies in `crate::policies`.

use crate::action::{Action, Family};
use crate::error::{ApiError, Code};
use crate::params::{Paging, Params};

/// This family's actions, for [`crate::action::Action::parse`].
pub(crate) const FAMILY: Family = Family {
    names: &["CreateSnapshot", "DescribeSnapshots", "CopySnapshot", "ModifySnapshotAttribute", "DeleteSnapshot"],
    region_optional: &["CreateSnapshot", "ModifySnapshotAttribute", "DeleteSnapshot"],
    parse,
};

fn parse(name: &str, p: &Params) -> Option<Result<Action, ApiError>> {
    action(name, p).transpose()
}

fn action(name: &str, p: &Params) -> Result<Option<Action>, ApiError> {
    Ok(Some(match name {
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
        "DescribeSnapshots" => Action::DescribeSnapshots(DescribeSnapshots {
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
        }),
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
        _ => return Ok(None),
    }))
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

/// SnapshotName: 2–128 characters, not starting with `auto` (kept for automatic snapshots).
fn snapshot_name_ok(n: &str) -> bool {
    (2..=128).contains(&n.chars().count()) && !n.starts_with("auto")
}
