//! Asynchronous tasks (API reference: DescribeTasks, DescribeTaskAttribute) and the action
//! that makes one of its own, ModifyDiskSpec. ImportImage's TaskId is a task too.

use crate::action::{Action, Family};
use crate::error::ApiError;
use crate::params::{Paging, Params};

/// Task states as the reference names them.
pub const TASK_STATUSES: [&str; 4] = ["Waiting", "Processing", "Finished", "Failed"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeTasks {
    /// `TaskIds`: comma-separated, at most 100.
    pub task_ids: Vec<String>,
    /// `ResourceIds`: comma-separated, at most 100.
    pub resource_ids: Vec<String>,
    pub task_action: Option<String>,
    pub task_status: Option<String>,
    pub paging: Paging,
}

/// ModifyDiskSpec: a cloud disk's category or ESSD performance level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModifyDiskSpec {
    pub disk_id: String,
    pub category: Option<String>,
    /// PL0–PL3 (ESSD).
    pub performance_level: Option<String>,
    pub dry_run: bool,
}

fn comma_list(p: &Params, name: &str) -> Result<Vec<String>, ApiError> {
    let v: Vec<String> = p
        .opt_str(name)
        .map(|s| s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    if v.len() > 100 {
        return Err(ApiError::invalid(name));
    }
    Ok(v)
}

/// This family's actions, for [`crate::action::Action::parse`]. ModifyDiskSpec names its disk only (no RegionId in its reference).
pub(crate) const FAMILY: Family = Family {
    names: &["ModifyDiskSpec", "DescribeTasks", "DescribeTaskAttribute"],
    region_optional: &["ModifyDiskSpec"],
    parse,
};

fn parse(name: &str, p: &Params) -> Option<Result<Action, ApiError>> {
    Some(match name {
        "DescribeTasks" => (|| {
            let task_status = p.opt_str("TaskStatus");
            if task_status.as_deref().is_some_and(|s| !TASK_STATUSES.contains(&s)) {
                return Err(ApiError::invalid("TaskStatus"));
            }
            Ok(Action::DescribeTasks(DescribeTasks {
                task_ids: comma_list(p, "TaskIds")?,
                resource_ids: comma_list(p, "ResourceIds")?,
                task_action: p.opt_str("TaskAction"),
                task_status,
                paging: Paging::parse(p, 100)?,
            }))
        })(),
        "DescribeTaskAttribute" => p.req_str("TaskId").map(|task_id| Action::DescribeTaskAttribute { task_id }),
        "ModifyDiskSpec" => (|| {
            let category = p.opt_str("DiskCategory");
            let performance_level = p.opt_str("PerformanceLevel");
            if performance_level.as_deref().is_some_and(|l| !["PL0", "PL1", "PL2", "PL3"].contains(&l)) {
                return Err(ApiError::invalid("PerformanceLevel"));
            }
            if category.is_none() && performance_level.is_none() {
                return Err(ApiError::missing("DiskCategory"));
            }
            Ok(Action::ModifyDiskSpec(ModifyDiskSpec {
                disk_id: p.req_str("DiskId")?,
                category,
                performance_level,
                dry_run: p.bool_or("DryRun", false)?,
            }))
        })(),
        _ => return None,
    })
}
