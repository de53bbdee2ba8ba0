//! The instance family (API reference: RunInstances, CreateInstance, StartInstance(s),
//! StopInstance(s), RebootInstance, ReplaceSystemDisk, DeleteInstance, DescribeInstances,
//! DescribeInstanceAttribute, DescribeUserData, GetInstanceConsoleOutput,
//! DescribeInstanceMaintenanceAttributes, DescribeInstanceAttachmentAttributes) and the
//! instance-type catalog (DescribeInstanceTypes, DescribeInstanceTypeFamilies), parsed into
//! [`Action`] variants.

use crate::action::{Action, Family};
use crate::error::{ApiError, Code};
use crate::params::{Paging, Params};

/// This family's actions, for [`crate::action::Action::parse`].
pub(crate) const FAMILY: Family = Family {
    names: &[
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
    ],
    region_optional: &[
        "StartInstance",
        "StopInstance",
        "RebootInstance",
        "ReplaceSystemDisk",
        "DescribeInstanceTypes",
        "DescribeInstanceAttribute",
        "DeleteInstance",
    ],
    parse,
};

fn parse(name: &str, p: &Params) -> Option<Result<Action, ApiError>> {
    action(name, p).transpose()
}

fn action(name: &str, p: &Params) -> Result<Option<Action>, ApiError> {
    Ok(Some(match name {
        "RunInstances" => {
            let amount = p.opt_range("Amount", 1, 100)?.unwrap_or(1) as u32;
            let min_amount = p.opt_range("MinAmount", 1, 100)?.map(|m| m as u32);
            if amount > 1 && p.opt_str("PrivateIpAddress").is_some() {
                // One address names one instance.
                return Err(ApiError::invalid("PrivateIpAddress"));
            }
            Action::RunInstances { spec: instance_spec(p)?, amount, min_amount, dry_run: p.bool_or("DryRun", false)? }
        }
        "CreateInstance" => Action::CreateInstance { spec: instance_spec(p)?, dry_run: p.bool_or("DryRun", false)? },
        "StartInstance" => {
            Action::StartInstance { instance_id: p.req_str("InstanceId")?, dry_run: p.bool_or("DryRun", false)? }
        }
        "StopInstance" => Action::StopInstance {
            instance_id: p.req_str("InstanceId")?,
            force_stop: p.bool_or("ForceStop", false)?,
            dry_run: p.bool_or("DryRun", false)?,
        },
        "StartInstances" | "StopInstances" => {
            let ids = p.repeat_list("InstanceId")?;
            if ids.is_empty() {
                return Err(ApiError::missing("InstanceId.1"));
            }
            if ids.len() > 100 {
                return Err(ApiError::invalid("InstanceId"));
            }
            if name == "StartInstances" {
                Action::StartInstances { instance_ids: ids, dry_run: p.bool_or("DryRun", false)? }
            } else {
                Action::StopInstances {
                    instance_ids: ids,
                    force_stop: p.bool_or("ForceStop", false)?,
                    dry_run: p.bool_or("DryRun", false)?,
                }
            }
        }
        "RebootInstance" => Action::RebootInstance {
            instance_id: p.req_str("InstanceId")?,
            force_stop: p.bool_or("ForceStop", false)?,
            dry_run: p.bool_or("DryRun", false)?,
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
        "DescribeInstanceTypeFamilies" => Action::DescribeInstanceTypeFamilies { generation: p.opt_str("Generation") },
        "DescribeUserData" => Action::DescribeUserData { instance_id: p.req_str("InstanceId")? },
        "GetInstanceConsoleOutput" => Action::GetInstanceConsoleOutput {
            instance_id: p.req_str("InstanceId")?,
            remove_symbols: p.bool_or("RemoveSymbols", false)?,
        },
        "DescribeInstanceMaintenanceAttributes" => {
            let (instance_ids, page) = instance_list(p)?;
            Action::DescribeInstanceMaintenanceAttributes { instance_ids, page }
        }
        "DescribeInstanceAttachmentAttributes" => {
            let (instance_ids, page) = instance_list(p)?;
            Action::DescribeInstanceAttachmentAttributes { instance_ids, page }
        }
        "DescribeInstanceAttribute" => Action::DescribeInstanceAttribute { instance_id: p.req_str("InstanceId")? },
        "DescribeInstances" => Action::DescribeInstances(DescribeInstances {
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
            security_group_id: p.opt_str("SecurityGroupId"),
            key_pair_name: p.opt_str("KeyPairName"),
            tags: p.tag_filter()?,
            paging: Paging::parse(p, 100)?,
        }),
        "DeleteInstance" => Action::DeleteInstance {
            instance_id: p.req_str("InstanceId")?,
            force: p.bool_or("Force", false)?,
            dry_run: p.bool_or("DryRun", false)?,
        },
        _ => return Ok(None),
    }))
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
    /// `ResourceGroupId`: the group the instance joins (`rg-…`).
    pub resource_group_id: Option<String>,
    /// `InternetChargeType`: `PayByTraffic` (default) or `PayByBandwidth`.
    pub internet_charge_type: String,
    /// `InternetMaxBandwidthOut` (0–100) and `InternetMaxBandwidthIn` (1–200, 0 when not given),
    /// Mbit/s.
    pub bandwidth_out: i64,
    pub bandwidth_in: i64,
    pub charge_type: String,
    pub system_disk: DiskSpec,
    pub data_disks: Vec<DiskSpec>,
    pub deletion_protection: bool,
    pub tags: Vec<(String, String)>,
    /// Base64, as given (at most 32 KiB once decoded).
    pub user_data: Option<String>,
    /// `KeyPairName`: a key pair of the caller's in the region (checked by the handler).
    pub key_pair_name: Option<String>,
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
    /// `SecurityGroupId`: instances in that group.
    pub security_group_id: Option<String>,
    /// `KeyPairName`: instances that key pair is bound to.
    pub key_pair_name: Option<String>,
    /// `Tag.N.Key`/`Tag.N.Value`: every pair must match; a key alone matches any value.
    pub tags: Vec<(String, Option<String>)>,
    pub paging: Paging,
}

/// UserData: base64 (`InvalidUserData.Base64FormatInvalid`) of at most 32 KiB
/// (`InvalidUserData.SizeExceeded`).
pub(crate) fn user_data(p: &Params) -> Result<Option<String>, ApiError> {
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
    if p.opt_str("HostName").is_some_and(|h| !crate::instance_settings::valid_host_name(&h)) {
        return Err(Code::InvalidHostNameMalformed.into());
    }
    // Checked like ModifyInstanceAttribute's; there is no guest agent to set it.
    if p.opt_str("Password").is_some_and(|pw| !crate::instance_settings::valid_password(&pw)) {
        return Err(Code::InvalidPasswordMalformed.into());
    }
    // There are no launch templates here, so none can be found.
    if p.opt_str("LaunchTemplateId").is_some() || p.opt_str("LaunchTemplateName").is_some() {
        return Err(Code::InvalidLaunchTemplateNotFound.into());
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
        resource_group_id: crate::instance_settings::group_param(p)?,
        internet_charge_type: match p.opt_str("InternetChargeType") {
            None => "PayByTraffic".into(),
            Some(t) if t == "PayByTraffic" || t == "PayByBandwidth" => t,
            Some(_) => return Err(Code::InvalidInternetChargeTypeValueNotSupported.into()),
        },
        bandwidth_out: p.opt_range("InternetMaxBandwidthOut", 0, 100)?.unwrap_or(0),
        bandwidth_in: p.opt_range("InternetMaxBandwidthIn", 1, 200)?.unwrap_or(0),
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
        key_pair_name: p.opt_str("KeyPairName"),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
}
