//! The disk family (API reference: CreateDisk, DescribeDisks, DeleteDisk, ModifyDiskAttribute,
//! ResizeDisk, ReInitDisk, AttachDisk, DetachDisk, ResetDisk), parsed into [`Action`] variants.
//! ResetDisks (several disks at once) is with the snapshot groups in `crate::groups`, and
//! ModifyDiskSpec (which makes a task) with the tasks in `crate::tasks`.

use crate::action::{Action, Family};
use crate::error::{ApiError, Code};
use crate::params::{Paging, Params};

/// This family's actions, for [`crate::action::Action::parse`].
pub(crate) const FAMILY: Family = Family {
    names: &[
        "ResetDisk",
        "CreateDisk",
        "DescribeDisks",
        "DeleteDisk",
        "ModifyDiskAttribute",
        "ResizeDisk",
        "ReInitDisk",
        "AttachDisk",
        "DetachDisk",
    ],
    region_optional: &[
        "ResetDisk",
        "DeleteDisk",
        "ModifyDiskAttribute",
        "ResizeDisk",
        "ReInitDisk",
        "AttachDisk",
        "DetachDisk",
    ],
    parse,
};

fn parse(name: &str, p: &Params) -> Option<Result<Action, ApiError>> {
    action(name, p).transpose()
}

fn action(name: &str, p: &Params) -> Result<Option<Action>, ApiError> {
    Ok(Some(match name {
        "ResetDisk" => Action::ResetDisk(ResetDisk {
            disk_id: p.req_str("DiskId")?,
            snapshot_id: p.req_str("SnapshotId")?,
            dry_run: p.bool_or("DryRun", false)?,
        }),
        "CreateDisk" => {
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
                resource_group_id: crate::instance_settings::group_param(p)?,
                dry_run: p.bool_or("DryRun", false)?,
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
        "DeleteDisk" => Action::DeleteDisk { disk_id: p.req_str("DiskId")?, dry_run: p.bool_or("DryRun", false)? },
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
            dry_run: p.bool_or("DryRun", false)?,
        },
        "DetachDisk" => Action::DetachDisk {
            disk_id: p.req_str("DiskId")?,
            instance_id: p.req_str("InstanceId")?,
            delete_with_instance: p.opt_bool("DeleteWithInstance")?,
            dry_run: p.bool_or("DryRun", false)?,
        },
        _ => return Ok(None),
    }))
}

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
    /// `ResourceGroupId`: the group the disk joins (`rg-…`).
    pub resource_group_id: Option<String>,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
    fn create_disk_needs_size_or_snapshot() {
        let p = Params::from_pairs([("RegionId", "r"), ("ZoneId", "z")]);
        assert_eq!(Action::parse("CreateDisk", &p).unwrap_err().code, Code::MissingSizeOrSnapshot);
    }
}
