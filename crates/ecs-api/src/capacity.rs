//! What a zone offers (API reference: DescribeAvailableResource, DescribeResourcesModification),
//! parsed into [`Action`] variants.

use crate::action::{Action, Family};
use crate::error::ApiError;
use crate::params::Params;

/// This family's actions, for [`crate::action::Action::parse`].
pub(crate) const FAMILY: Family =
    Family { names: &["DescribeAvailableResource", "DescribeResourcesModification"], region_optional: &[], parse };

/// DescribeAvailableResource's `DestinationResource` values (API reference), in the order
/// "Zone > IoOptimized > InstanceType = Network = ddh > SystemDisk > DataDisk".
pub const DESTINATIONS: [&str; 7] = ["Zone", "IoOptimized", "InstanceType", "Network", "ddh", "SystemDisk", "DataDisk"];

/// DescribeAvailableResource: what can be created in each zone of the region.
#[derive(Debug, Clone, PartialEq)]
pub struct DescribeAvailableResource {
    pub destination: String,
    /// `instance` (default), `disk`, `reservedinstance` or `ddh`.
    pub resource_type: String,
    pub zone_id: Option<String>,
    pub instance_type: Option<String>,
    pub system_disk_category: Option<String>,
    pub data_disk_category: Option<String>,
    pub network_category: Option<String>,
    pub io_optimized: Option<String>,
    pub cores: Option<i64>,
    /// GiB.
    pub memory_gib: Option<f64>,
}

/// DescribeResourcesModification: what an instance may change to.
#[derive(Debug, Clone, PartialEq)]
pub struct DescribeResourcesModification {
    pub resource_id: String,
    /// `InstanceType` or `SystemDisk`.
    pub destination: String,
    /// `Upgrade` (default), `Downgrade`, `RenewDowngrade` or `RenewModify`.
    pub operation: String,
    pub instance_type: Option<String>,
    pub cores: Option<i64>,
    /// GiB.
    pub memory_gib: Option<f64>,
    pub zone_id: Option<String>,
}

fn parse(name: &str, p: &Params) -> Option<Result<Action, ApiError>> {
    action(name, p).transpose()
}

fn memory(p: &Params) -> Result<Option<f64>, ApiError> {
    p.opt_str("Memory")
        .map(|v| {
            v.parse::<f64>().ok().filter(|f| f.is_finite() && *f >= 0.0).ok_or_else(|| ApiError::invalid("Memory"))
        })
        .transpose()
}

fn one_of(p: &Params, name: &str, allowed: &[&str], default: Option<&str>) -> Result<String, ApiError> {
    let v = match (p.opt_str(name), default) {
        (Some(v), _) => v,
        (None, Some(d)) => d.to_string(),
        (None, None) => return Err(ApiError::missing(name)),
    };
    if !allowed.contains(&v.as_str()) {
        return Err(ApiError::invalid(name));
    }
    Ok(v)
}

fn action(name: &str, p: &Params) -> Result<Option<Action>, ApiError> {
    Ok(Some(match name {
        "DescribeAvailableResource" => Action::DescribeAvailableResource(DescribeAvailableResource {
            destination: one_of(p, "DestinationResource", &DESTINATIONS, None)?,
            resource_type: one_of(
                p,
                "ResourceType",
                &["instance", "disk", "reservedinstance", "ddh"],
                Some("instance"),
            )?,
            zone_id: p.opt_str("ZoneId"),
            instance_type: p.opt_str("InstanceType"),
            system_disk_category: p.opt_str("SystemDiskCategory"),
            data_disk_category: p.opt_str("DataDiskCategory"),
            network_category: p.opt_str("NetworkCategory"),
            io_optimized: p.opt_str("IoOptimized"),
            cores: p.opt_i64("Cores")?,
            memory_gib: memory(p)?,
        }),
        "DescribeResourcesModification" => Action::DescribeResourcesModification(DescribeResourcesModification {
            resource_id: p.req_str("ResourceId")?,
            destination: one_of(p, "DestinationResource", &["InstanceType", "SystemDisk"], None)?,
            operation: one_of(
                p,
                "OperationType",
                &["Upgrade", "Downgrade", "RenewDowngrade", "RenewModify"],
                Some("Upgrade"),
            )?,
            instance_type: p.opt_str("InstanceType"),
            cores: p.opt_i64("Cores")?,
            memory_gib: memory(p)?,
            zone_id: p.opt_str("ZoneId"),
        }),
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    #[test]
    fn destinations_and_types_are_checked() {
        let parse =
            |pairs: &[(&str, &str)]| action("DescribeAvailableResource", &Params::from_pairs(pairs.iter().copied()));
        assert!(parse(&[("DestinationResource", "SystemDisk")]).is_ok());
        assert_eq!(parse(&[]).unwrap_err().code, Code::MissingParameter);
        assert_eq!(parse(&[("DestinationResource", "zone")]).unwrap_err().code, Code::InvalidParameter);
        let e = parse(&[("DestinationResource", "Zone"), ("ResourceType", "vm")]).unwrap_err();
        assert_eq!(e.code, Code::InvalidParameter);
        assert_eq!(
            parse(&[("DestinationResource", "Zone"), ("Memory", "x")]).unwrap_err().code,
            Code::InvalidParameter
        );
        let m = action("DescribeResourcesModification", &Params::from_pairs([("ResourceId", "i-1")]));
        assert_eq!(m.unwrap_err().code, Code::MissingParameter);
    }
}
