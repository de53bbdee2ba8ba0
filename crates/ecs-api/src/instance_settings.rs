//! What tools read and change on an instance beside its lifecycle (API reference:
//! ModifyInstanceAttribute, DescribeInstanceStatus, DescribeInstanceRamRole,
//! DescribeNetworkInterfaces, JoinResourceGroup), parsed into [`Action`] variants.

use crate::action::{Action, Family};
use crate::error::{ApiError, Code};
use crate::params::{Paging, Params};

/// This family's actions, for [`crate::action::Action::parse`].
pub(crate) const FAMILY: Family = Family {
    names: &[
        "ModifyInstanceAttribute",
        "DescribeInstanceStatus",
        "DescribeInstanceRamRole",
        "DescribeNetworkInterfaces",
        "JoinResourceGroup",
    ],
    region_optional: &["ModifyInstanceAttribute", "JoinResourceGroup"],
    parse,
};

/// ModifyInstanceAttribute: every attribute optional; the changes to HostName, Password and
/// UserData take effect at the next start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModifyInstanceAttribute {
    pub instance_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub host_name: Option<String>,
    /// Checked against the documented rules only: there is no guest agent to set it.
    pub password_given: bool,
    /// Base64, as given (at most 32 KiB decoded).
    pub user_data: Option<String>,
    pub deletion_protection: Option<bool>,
}

/// DescribeNetworkInterfaces: each instance's primary ENI, filtered; PageNumber/PageSize
/// (≤ 1000) or NextToken/MaxResults (10–500).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeNetworkInterfaces {
    pub network_interface_ids: Vec<String>,
    pub instance_id: Option<String>,
    pub vswitch_id: Option<String>,
    pub vpc_id: Option<String>,
    pub private_ips: Vec<String>,
    pub primary_ip: Option<String>,
    /// `Type`: `Primary` or `Secondary` (none exist).
    pub kind: Option<String>,
    pub status: Option<String>,
    pub paging: Paging,
}

/// JoinResourceGroup's resource types (API reference; case-sensitive).
pub const RESOURCE_TYPES: [&str; 10] =
    ["instance", "disk", "snapshot", "image", "securitygroup", "ddh", "ddhcluster", "eni", "keypair", "launchtemplate"];

fn parse(name: &str, p: &Params) -> Option<Result<Action, ApiError>> {
    action(name, p).transpose()
}

fn action(name: &str, p: &Params) -> Result<Option<Action>, ApiError> {
    Ok(Some(match name {
        "ModifyInstanceAttribute" => Action::ModifyInstanceAttribute(modify(p)?),
        "DescribeInstanceStatus" => {
            let ids = p.repeat_list("InstanceId")?;
            if ids.len() > 100 {
                return Err(ApiError::invalid("InstanceId"));
            }
            Action::DescribeInstanceStatus {
                instance_ids: (!ids.is_empty()).then_some(ids),
                zone_id: p.opt_str("ZoneId"),
                paging: pages(p, 50)?,
            }
        }
        "DescribeInstanceRamRole" => Action::DescribeInstanceRamRole {
            instance_ids: p.json_list("InstanceIds", 100)?,
            ram_role_name: p.opt_str("RamRoleName"),
            paging: pages(p, 50)?,
        },
        "DescribeNetworkInterfaces" => Action::DescribeNetworkInterfaces(describe_enis(p)?),
        "JoinResourceGroup" => {
            let group = p.req_str("ResourceGroupId")?;
            if !valid_group_id(&group) {
                return Err(Code::InvalidResourceGroupIdNotFound.into());
            }
            let resource_type = p.req_str("ResourceType")?;
            if !RESOURCE_TYPES.contains(&resource_type.as_str()) {
                return Err(Code::InvalidResourceTypeNotFound.into());
            }
            Action::JoinResourceGroup { resource_group_id: group, resource_type, resource_id: p.req_str("ResourceId")? }
        }
        _ => return Ok(None),
    }))
}

/// A resource group id as Resource Manager makes them: `rg-` and 1–64 lower-case letters or
/// digits. (Groups themselves belong to Resource Manager, which Snapdisk does not serve.)
pub fn valid_group_id(id: &str) -> bool {
    id.strip_prefix("rg-")
        .is_some_and(|t| (1..=64).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

/// `ResourceGroupId` on a create (RunInstances, CreateInstance, CreateDisk): a group id of the
/// documented form, else `InvalidResourceGroupId.NotFound`.
pub(crate) fn group_param(p: &Params) -> Result<Option<String>, ApiError> {
    match p.opt_str("ResourceGroupId") {
        Some(g) if !valid_group_id(&g) => Err(Code::InvalidResourceGroupIdNotFound.into()),
        g => Ok(g),
    }
}

fn pages(p: &Params, max: i64) -> Result<Paging, ApiError> {
    let number = p.opt_range("PageNumber", 1, i64::from(u32::MAX))?.unwrap_or(1) as u32;
    let size = p.opt_range("PageSize", 1, max)?.unwrap_or(10) as u32;
    Ok(Paging::Pages { number, size })
}

/// Host names (API reference, RunInstances HostName, Linux): 2–64 characters; letters, digits
/// and hyphens in segments joined by single periods; no period or hyphen first or last.
pub fn valid_host_name(s: &str) -> bool {
    let ok_chars = s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let ends = |b: u8| b == b'.' || b == b'-';
    (2..=64).contains(&s.len())
        && ok_chars
        && !s.bytes().next().is_some_and(ends)
        && !s.bytes().last().is_some_and(ends)
        && !s.contains("..")
        && !s.contains(".-")
        && !s.contains("-.")
}

/// Passwords (API reference, ModifyInstanceAttribute Password): 8–30 characters with at least
/// three of upper case, lower case, digits and the documented special characters.
pub fn valid_password(s: &str) -> bool {
    const SPECIAL: &str = "()`~!@#$%^&*-_+=|{}[]:;'<>,.?/";
    let classes = [
        s.chars().any(|c| c.is_ascii_uppercase()),
        s.chars().any(|c| c.is_ascii_lowercase()),
        s.chars().any(|c| c.is_ascii_digit()),
        s.chars().any(|c| SPECIAL.contains(c)),
    ];
    (8..=30).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || SPECIAL.contains(c))
        && classes.iter().filter(|c| **c).count() >= 3
}

fn modify(p: &Params) -> Result<ModifyInstanceAttribute, ApiError> {
    let name = p.opt_str("InstanceName");
    if name.as_deref().is_some_and(|n| !crate::params::valid_name(n, 128)) {
        return Err(Code::InvalidInstanceNameMalformed.into());
    }
    let description = p.opt_str("Description");
    if description.as_deref().is_some_and(|d| !crate::params::valid_description(d)) {
        return Err(Code::InvalidInstanceDescriptionMalformed.into());
    }
    let host_name = p.opt_str("HostName");
    if host_name.as_deref().is_some_and(|h| !valid_host_name(h)) {
        return Err(Code::InvalidHostNameMalformed.into());
    }
    let password = p.opt_str("Password");
    if password.as_deref().is_some_and(|pw| !valid_password(pw)) {
        return Err(Code::InvalidPasswordMalformed.into());
    }
    Ok(ModifyInstanceAttribute {
        instance_id: p.req_str("InstanceId")?,
        name,
        description,
        host_name,
        password_given: password.is_some(),
        user_data: crate::instances::user_data(p)?,
        deletion_protection: p.opt_bool("DeletionProtection")?,
    })
}

fn describe_enis(p: &Params) -> Result<DescribeNetworkInterfaces, ApiError> {
    let ids = p.repeat_list("NetworkInterfaceId")?;
    let ips = p.repeat_list("PrivateIpAddress")?;
    if ids.len() > 100 || ips.len() > 100 {
        return Err(ApiError::invalid(if ids.len() > 100 { "NetworkInterfaceId" } else { "PrivateIpAddress" }));
    }
    let token = p.opt_str("NextToken");
    let max = p.opt_range("MaxResults", 10, 500)?;
    let paging = if token.is_some() || max.is_some() {
        Paging::Token { next_token: token, max_results: max.unwrap_or(10) as u32 }
    } else {
        pages(p, 1000)?
    };
    Ok(DescribeNetworkInterfaces {
        network_interface_ids: ids,
        instance_id: p.opt_str("InstanceId"),
        vswitch_id: p.opt_str("VSwitchId"),
        vpc_id: p.opt_str("VpcId"),
        private_ips: ips,
        primary_ip: p.opt_str("PrimaryIpAddress"),
        kind: p.opt_str("Type"),
        status: p.opt_str("Status"),
        paging,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_and_passwords_follow_the_documented_rules() {
        for ok in ["ab", "web-1", "a.b.c", "node01.lab"] {
            assert!(valid_host_name(ok), "{ok}");
        }
        for bad in ["a", "-ab", "ab-", ".ab", "ab.", "a..b", "a.-b", "a_b", &"a".repeat(65)] {
            assert!(!valid_host_name(bad), "{bad}");
        }
        for ok in ["Passw0rd", "abc123!@#", "ABCdef12"] {
            assert!(valid_password(ok), "{ok}");
        }
        for bad in ["Pw0!", "password", "PASSWORD12", "Passw0rd\u{e9}", &format!("Aa1{}", "x".repeat(28))] {
            assert!(!valid_password(bad), "{bad}");
        }
    }

    #[test]
    fn resource_groups_and_types() {
        let p = |pairs: &[(&str, &str)]| action("JoinResourceGroup", &Params::from_pairs(pairs.iter().copied()));
        let code = |pairs: &[(&str, &str)]| p(pairs).unwrap_err().code;
        assert!(p(&[("ResourceGroupId", "rg-abc1"), ("ResourceType", "disk"), ("ResourceId", "d-1")]).is_ok());
        assert_eq!(
            code(&[("ResourceGroupId", "abc"), ("ResourceType", "disk"), ("ResourceId", "d")]),
            Code::InvalidResourceGroupIdNotFound
        );
        assert_eq!(
            code(&[("ResourceGroupId", "rg-a"), ("ResourceType", "Disk"), ("ResourceId", "d")]),
            Code::InvalidResourceTypeNotFound
        );
        assert_eq!(code(&[("ResourceGroupId", "rg-a"), ("ResourceType", "disk")]), Code::MissingParameter);
    }
}
