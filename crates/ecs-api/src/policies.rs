//! The automatic snapshot policy family (API reference: CreateAutoSnapshotPolicy,
//! ModifyAutoSnapshotPolicyEx, DescribeAutoSnapshotPolicyEx, DeleteAutoSnapshotPolicy,
//! ApplyAutoSnapshotPolicy, CancelAutoSnapshotPolicy). These actions spell most parameters in
//! lower camel case (`regionId`, `timePoints`, `repeatWeekdays`, `retentionDays`,
//! `autoSnapshotPolicyName`, `autoSnapshotPolicyId`, `diskIds`), as the reference does.

use crate::action::{Action, Family};
use crate::error::{ApiError, Code};
use crate::params::{Paging, Params};

/// A policy's schedule and retention, as Create and Modify take them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schedule {
    /// Hours of the day (0–23, UTC+8 as documented), ascending, distinct.
    pub time_points: Option<Vec<u8>>,
    /// Days of the week, 1 = Monday … 7 = Sunday, ascending, distinct.
    pub repeat_weekdays: Option<Vec<u8>>,
    /// Days an automatic snapshot is kept: -1 forever, else 1–65536.
    pub retention_days: Option<i64>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeAutoSnapshotPolicies {
    pub policy_id: Option<String>,
    pub name: Option<String>,
    pub tags: Vec<(String, Option<String>)>,
    pub paging: Paging,
}

/// `["0","1"]` (strings or numbers): each in `lo..=hi`, made ascending and distinct.
fn numbers(p: &Params, name: &str, lo: u8, hi: u8, max: usize) -> Result<Option<Vec<u8>>, ApiError> {
    let Some(raw) = p.opt_str(name) else { return Ok(None) };
    let v: serde_json::Value = serde_json::from_str(&raw.replace('\'', "\"")).map_err(|_| ApiError::invalid(name))?;
    let items = v.as_array().ok_or_else(|| ApiError::invalid(name))?;
    if items.is_empty() || items.len() > max {
        return Err(ApiError::invalid(name));
    }
    let mut out = Vec::with_capacity(items.len());
    for i in items {
        let n = match i {
            serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
            serde_json::Value::Number(n) => n.as_i64(),
            _ => None,
        };
        match n {
            Some(n) if (i64::from(lo)..=i64::from(hi)).contains(&n) => out.push(n as u8),
            _ => return Err(ApiError::invalid(name)),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(Some(out))
}

fn schedule(p: &Params) -> Result<Schedule, ApiError> {
    let retention_days = p.opt_i64("retentionDays")?;
    if retention_days.is_some_and(|d| d != -1 && !(1..=65536).contains(&d)) {
        return Err(ApiError::invalid("retentionDays"));
    }
    let name = p.opt_str("autoSnapshotPolicyName");
    if name.as_deref().is_some_and(|n| !crate::params::valid_name(n, 128) || n.starts_with("auto")) {
        return Err(ApiError::invalid("autoSnapshotPolicyName"));
    }
    Ok(Schedule {
        time_points: numbers(p, "timePoints", 0, 23, 24)?,
        repeat_weekdays: numbers(p, "repeatWeekdays", 1, 7, 7)?,
        retention_days,
        name,
    })
}

/// `diskIds`: a JSON array of 1–1000 disk ids.
fn disk_ids(p: &Params) -> Result<Vec<String>, ApiError> {
    let ids = p.json_list("diskIds", 1000)?.ok_or_else(|| ApiError::missing("diskIds"))?;
    if ids.is_empty() {
        return Err(ApiError::invalid("diskIds"));
    }
    Ok(ids)
}

fn policy_id(p: &Params) -> Result<String, ApiError> {
    p.req_str("autoSnapshotPolicyId")
}

/// This family's actions, for [`crate::action::Action::parse`].
pub(crate) const FAMILY: Family = Family {
    names: &[
        "CreateAutoSnapshotPolicy",
        "ModifyAutoSnapshotPolicyEx",
        "DescribeAutoSnapshotPolicyEx",
        "DeleteAutoSnapshotPolicy",
        "ApplyAutoSnapshotPolicy",
        "CancelAutoSnapshotPolicy",
    ],
    region_optional: &[],
    parse,
};

fn parse(name: &str, p: &Params) -> Option<Result<Action, ApiError>> {
    Some(match name {
        "CreateAutoSnapshotPolicy" => (|| {
            let s = schedule(p)?;
            if s.time_points.is_none() {
                return Err(ApiError::missing("timePoints"));
            }
            if s.repeat_weekdays.is_none() {
                return Err(ApiError::missing("repeatWeekdays"));
            }
            if s.retention_days.is_none() {
                return Err(ApiError::missing("retentionDays"));
            }
            Ok(Action::CreateAutoSnapshotPolicy { schedule: s, tags: p.tags()? })
        })(),
        "ModifyAutoSnapshotPolicyEx" => {
            (|| Ok(Action::ModifyAutoSnapshotPolicy { policy_id: policy_id(p)?, schedule: schedule(p)? }))()
        }
        "DescribeAutoSnapshotPolicyEx" => (|| {
            Ok(Action::DescribeAutoSnapshotPolicies(DescribeAutoSnapshotPolicies {
                policy_id: p.opt_str("AutoSnapshotPolicyId"),
                name: p.opt_str("AutoSnapshotPolicyName"),
                tags: p.tag_filter()?,
                paging: Paging::parse(p, 100)?,
            }))
        })(),
        "DeleteAutoSnapshotPolicy" => policy_id(p).map(|policy_id| Action::DeleteAutoSnapshotPolicy { policy_id }),
        "ApplyAutoSnapshotPolicy" => {
            (|| Ok(Action::ApplyAutoSnapshotPolicy { policy_id: policy_id(p)?, disk_ids: disk_ids(p)? }))()
        }
        "CancelAutoSnapshotPolicy" => (|| Ok(Action::CancelAutoSnapshotPolicy { disk_ids: disk_ids(p)? }))(),
        _ => return None,
    })
}

/// Refused when a policy id is not the caller's (API reference: 403 ParameterInvalid).
pub fn not_found() -> ApiError {
    Code::ParameterInvalidAutoSnapshotPolicyId.into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use crate::action::parse_pairs as parse;

    #[test]
    fn schedules_parse_and_refuse_as_documented() {
        let r = ("regionId", "cn-hangzhou");
        let ok =
            [r, ("timePoints", "[\"23\", \"1\", \"1\"]"), ("repeatWeekdays", "['7','1']"), ("retentionDays", "-1")];
        match parse("CreateAutoSnapshotPolicy", &ok).unwrap() {
            Action::CreateAutoSnapshotPolicy { schedule, .. } => {
                assert_eq!(schedule.time_points, Some(vec![1, 23]));
                assert_eq!(schedule.repeat_weekdays, Some(vec![1, 7]));
                assert_eq!(schedule.retention_days, Some(-1));
            }
            other => panic!("{other:?}"),
        }
        let code = |pairs: &[(&str, &str)]| parse("CreateAutoSnapshotPolicy", pairs).unwrap_err().code;
        assert_eq!(
            code(&[r, ("timePoints", "[\"24\"]"), ("repeatWeekdays", "[\"1\"]"), ("retentionDays", "1")]),
            Code::InvalidParameter
        );
        assert_eq!(
            code(&[r, ("timePoints", "[\"1\"]"), ("repeatWeekdays", "[\"0\"]"), ("retentionDays", "1")]),
            Code::InvalidParameter
        );
        assert_eq!(
            code(&[r, ("timePoints", "[\"1\"]"), ("repeatWeekdays", "[\"1\"]"), ("retentionDays", "0")]),
            Code::InvalidParameter
        );
        assert_eq!(
            code(&[r, ("timePoints", "[]"), ("repeatWeekdays", "[\"1\"]"), ("retentionDays", "1")]),
            Code::InvalidParameter
        );
        assert_eq!(code(&[r, ("repeatWeekdays", "[\"1\"]"), ("retentionDays", "1")]), Code::MissingParameter);
        assert_eq!(
            code(&[("timePoints", "[\"1\"]"), ("repeatWeekdays", "[\"1\"]"), ("retentionDays", "1")]),
            Code::MissingParameter
        );
        let apply = parse("ApplyAutoSnapshotPolicy", &[r, ("autoSnapshotPolicyId", "sp-1"), ("diskIds", "[\"d-1\"]")]);
        assert!(matches!(apply, Ok(Action::ApplyAutoSnapshotPolicy { .. })));
        assert_eq!(parse("CancelAutoSnapshotPolicy", &[r]).unwrap_err().code, Code::MissingParameter);
    }
}
