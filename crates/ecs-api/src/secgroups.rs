//! The security group family (API reference: CreateSecurityGroup, DescribeSecurityGroups,
//! DescribeSecurityGroupAttribute, ModifySecurityGroupAttribute, DeleteSecurityGroup,
//! AuthorizeSecurityGroup, AuthorizeSecurityGroupEgress, RevokeSecurityGroup,
//! RevokeSecurityGroupEgress, JoinSecurityGroup, LeaveSecurityGroup), parsed into [`Action`]
//! variants. The rules' own parameters are [`crate::secrules`]'.

use crate::action::{Action, Family};
use crate::error::{ApiError, Code};
use crate::params::{Paging, Params};
pub use crate::secrules::{Direction, Permission};

/// This family's actions, for [`crate::action::Action::parse`]. Join and Leave name an
/// instance, which is found in any region (their reference makes RegionId optional).
pub(crate) const FAMILY: Family = Family {
    names: &[
        "CreateSecurityGroup",
        "DescribeSecurityGroups",
        "DescribeSecurityGroupAttribute",
        "ModifySecurityGroupAttribute",
        "DeleteSecurityGroup",
        "AuthorizeSecurityGroup",
        "AuthorizeSecurityGroupEgress",
        "RevokeSecurityGroup",
        "RevokeSecurityGroupEgress",
        "JoinSecurityGroup",
        "LeaveSecurityGroup",
    ],
    region_optional: &["JoinSecurityGroup", "LeaveSecurityGroup"],
    parse,
};

/// CreateSecurityGroup (API reference CreateSecurityGroup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSecurityGroup {
    pub name: Option<String>,
    pub description: Option<String>,
    /// One of the caller's VPCs in the region (checked by the handler).
    pub vpc_id: Option<String>,
    /// `normal` (default) or `enterprise`.
    pub group_type: String,
    pub tags: Vec<(String, String)>,
    /// `ResourceGroupId`: the group it joins (`rg-…`).
    pub resource_group_id: Option<String>,
}

/// DescribeSecurityGroups (API reference DescribeSecurityGroups): filters, and NextToken /
/// MaxResults (1–100) or PageNumber / PageSize (1–50) paging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeSecurityGroups {
    /// `SecurityGroupId` and `SecurityGroupIds` (a JSON array of up to 100) together.
    pub group_ids: Option<Vec<String>>,
    pub name: Option<String>,
    /// `FuzzyQuery`: the name filter matches names containing it.
    pub fuzzy: bool,
    pub vpc_id: Option<String>,
    pub group_type: Option<String>,
    /// `NetworkType`: `vpc` (groups with a VpcId) or `classic` (without).
    pub network_type: Option<String>,
    pub resource_group_id: Option<String>,
    pub tags: Vec<(String, Option<String>)>,
    pub paging: Paging,
}

/// DescribeSecurityGroupAttribute (API reference): a group's rules, `Direction` (`ingress`,
/// `egress`, default all) and `NicType` filtered, MaxResults (10–1000, default 500) a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeSecurityGroupAttribute {
    pub group_id: String,
    pub direction: Option<Direction>,
    pub nic_type: Option<String>,
    pub max_results: u32,
    /// Rules to skip (the NextToken this action answered).
    pub offset: u32,
}

/// AuthorizeSecurityGroup(Egress) or RevokeSecurityGroup(Egress) (API reference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleChange {
    pub group_id: String,
    pub direction: Direction,
    pub permissions: Vec<Permission>,
    /// Revoke only: `SecurityGroupRuleId.N`.
    pub rule_ids: Vec<String>,
}

/// JoinSecurityGroup or LeaveSecurityGroup (API reference): one instance, one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub instance_id: String,
    pub group_id: String,
}

/// A SecurityGroupName as CreateSecurityGroup documents it (2–128 characters, a letter first,
/// then letters, digits, `.`, `_`, `-`, `:`; not `http(s)://`), else
/// `InvalidSecurityGroupName.Malformed`.
fn name(p: &Params) -> Result<Option<String>, ApiError> {
    let n = p.opt_str("SecurityGroupName");
    if n.as_deref().is_some_and(|n| !crate::params::valid_name(n, 128)) {
        return Err(Code::InvalidSecurityGroupNameMalformed.into());
    }
    Ok(n)
}

/// A Description: 2–256 characters, not `http(s)://` (`InvalidDescription.Malformed`).
fn description(p: &Params) -> Result<Option<String>, ApiError> {
    let d = p.opt_str("Description");
    if d.as_deref().is_some_and(|d| !crate::params::valid_description(d)) {
        return Err(Code::InvalidInstanceDescriptionMalformed.into());
    }
    Ok(d)
}

fn group_type(p: &Params, default: Option<&str>) -> Result<Option<String>, ApiError> {
    match p.opt_str("SecurityGroupType").or_else(|| default.map(str::to_string)) {
        Some(t) if t != "normal" && t != "enterprise" => Err(Code::InvalidParamsGroupType.into()),
        t => Ok(t),
    }
}

fn describe(p: &Params) -> Result<DescribeSecurityGroups, ApiError> {
    let mut ids: Option<Vec<String>> = p.json_list("SecurityGroupIds", 100)?;
    if let Some(one) = p.opt_str("SecurityGroupId") {
        ids.get_or_insert_with(Vec::new).push(one);
    }
    let network_type = p.opt_str("NetworkType");
    if network_type.as_deref().is_some_and(|n| n != "vpc" && n != "classic") {
        return Err(ApiError::invalid("NetworkType"));
    }
    let token = p.opt_str("NextToken");
    let max = p.opt_range("MaxResults", 1, 100)?;
    let paging = if token.is_some() || max.is_some() {
        Paging::Token { next_token: token, max_results: max.unwrap_or(10) as u32 }
    } else {
        let number = p.opt_range("PageNumber", 1, i64::from(u32::MAX))?.unwrap_or(1) as u32;
        Paging::Pages { number, size: p.opt_range("PageSize", 1, 50)?.unwrap_or(10) as u32 }
    };
    Ok(DescribeSecurityGroups {
        group_ids: ids,
        name: p.opt_str("SecurityGroupName"),
        fuzzy: p.bool_or("FuzzyQuery", false)?,
        vpc_id: p.opt_str("VpcId"),
        group_type: group_type(p, None)?,
        network_type,
        resource_group_id: p.opt_str("ResourceGroupId"),
        tags: p.tag_filter()?,
        paging,
    })
}

fn attribute(p: &Params) -> Result<DescribeSecurityGroupAttribute, ApiError> {
    let direction = match p.opt_str("Direction").as_deref() {
        None | Some("all") => None,
        Some("ingress") => Some(Direction::Ingress),
        Some("egress") => Some(Direction::Egress),
        Some(_) => return Err(ApiError::invalid("Direction")),
    };
    let nic_type = p.opt_str("NicType");
    if nic_type.as_deref().is_some_and(|n| n != "internet" && n != "intranet") {
        return Err(Code::InvalidNicTypeValueNotSupported.into());
    }
    let offset = match p.opt_str("NextToken") {
        None => 0,
        Some(t) => t.parse::<u32>().map_err(|_| ApiError::invalid("NextToken"))?,
    };
    Ok(DescribeSecurityGroupAttribute {
        group_id: p.req_str("SecurityGroupId")?,
        direction,
        nic_type,
        max_results: p.opt_range("MaxResults", 10, 1000)?.unwrap_or(500) as u32,
        offset,
    })
}

fn rule_change(p: &Params, direction: Direction, revoke: bool) -> Result<RuleChange, ApiError> {
    let group_id = p.req_str("SecurityGroupId")?;
    let rule_ids = if revoke { crate::secrules::rule_ids(p)? } else { Vec::new() };
    let permissions = crate::secrules::permissions(p, direction, revoke && !rule_ids.is_empty())?;
    if !rule_ids.is_empty() && !permissions.is_empty() {
        return Err(Code::InvalidParamPermissions.into());
    }
    let peer = |perm: &Permission| match direction {
        Direction::Ingress => perm.source_group_id == group_id,
        Direction::Egress => perm.dest_group_id == group_id,
    };
    if permissions.iter().any(peer) {
        return Err(Code::InvalidParamterConflict.into());
    }
    Ok(RuleChange { group_id, direction, permissions, rule_ids })
}

fn membership(p: &Params) -> Result<Membership, ApiError> {
    Ok(Membership { instance_id: p.req_str("InstanceId")?, group_id: p.req_str("SecurityGroupId")? })
}

fn parse(name_: &str, p: &Params) -> Option<Result<Action, ApiError>> {
    action(name_, p).transpose()
}

fn action(action_name: &str, p: &Params) -> Result<Option<Action>, ApiError> {
    Ok(Some(match action_name {
        "CreateSecurityGroup" => Action::CreateSecurityGroup(CreateSecurityGroup {
            name: name(p)?,
            description: description(p)?,
            vpc_id: p.opt_str("VpcId"),
            group_type: group_type(p, Some("normal"))?.unwrap_or_else(|| "normal".into()),
            tags: p.tags()?,
            resource_group_id: crate::instance_settings::group_param(p)?,
        }),
        "DescribeSecurityGroups" => Action::DescribeSecurityGroups(describe(p)?),
        "DescribeSecurityGroupAttribute" => Action::DescribeSecurityGroupAttribute(attribute(p)?),
        "ModifySecurityGroupAttribute" => Action::ModifySecurityGroupAttribute {
            group_id: p.req_str("SecurityGroupId")?,
            name: name(p)?,
            description: description(p)?,
        },
        "DeleteSecurityGroup" => Action::DeleteSecurityGroup { group_id: p.req_str("SecurityGroupId")? },
        "AuthorizeSecurityGroup" => Action::AuthorizeSecurityGroup(rule_change(p, Direction::Ingress, false)?),
        "AuthorizeSecurityGroupEgress" => Action::AuthorizeSecurityGroup(rule_change(p, Direction::Egress, false)?),
        "RevokeSecurityGroup" => Action::RevokeSecurityGroup(rule_change(p, Direction::Ingress, true)?),
        "RevokeSecurityGroupEgress" => Action::RevokeSecurityGroup(rule_change(p, Direction::Egress, true)?),
        "JoinSecurityGroup" => Action::JoinSecurityGroup(membership(p)?),
        "LeaveSecurityGroup" => Action::LeaveSecurityGroup(membership(p)?),
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use crate::action::parse_pairs as parse;

    const R: (&str, &str) = ("RegionId", "cn-hangzhou");

    #[test]
    fn groups_parse_with_their_documented_rules() {
        let c = parse("CreateSecurityGroup", &[R, ("SecurityGroupName", "web"), ("VpcId", "vpc-1")]).unwrap();
        assert!(
            matches!(c, Action::CreateSecurityGroup(CreateSecurityGroup { ref group_type, .. }) if group_type == "normal")
        );
        let code = |n: &str, pairs: &[(&str, &str)]| parse(n, pairs).unwrap_err().code;
        assert_eq!(
            code("CreateSecurityGroup", &[R, ("SecurityGroupName", "1web")]),
            Code::InvalidSecurityGroupNameMalformed
        );
        assert_eq!(code("CreateSecurityGroup", &[R, ("Description", "x")]), Code::InvalidInstanceDescriptionMalformed);
        assert_eq!(code("CreateSecurityGroup", &[R, ("SecurityGroupType", "vip")]), Code::InvalidParamsGroupType);
        assert_eq!(code("CreateSecurityGroup", &[]), Code::MissingParameter);
        assert_eq!(code("DeleteSecurityGroup", &[R]), Code::MissingParameter);
        assert_eq!(code("DescribeSecurityGroups", &[R, ("PageSize", "51")]), Code::InvalidParameter);
        assert_eq!(
            code("DescribeSecurityGroupAttribute", &[R, ("SecurityGroupId", "sg"), ("Direction", "up")]),
            Code::InvalidParameter
        );
        assert_eq!(
            code("DescribeSecurityGroupAttribute", &[R, ("SecurityGroupId", "sg"), ("MaxResults", "5")]),
            Code::InvalidParameter
        );
        match parse(
            "DescribeSecurityGroups",
            &[R, ("SecurityGroupIds", "[\"sg-1\"]"), ("SecurityGroupId", "sg-2"), ("MaxResults", "100")],
        )
        .unwrap()
        {
            Action::DescribeSecurityGroups(d) => {
                assert_eq!(d.group_ids, Some(vec!["sg-1".to_string(), "sg-2".to_string()]));
                assert_eq!(d.paging, Paging::Token { next_token: None, max_results: 100 });
            }
            other => panic!("{other:?}"),
        }
        // Join and Leave find the instance without a RegionId.
        assert!(parse("JoinSecurityGroup", &[("InstanceId", "i-1"), ("SecurityGroupId", "sg-1")]).is_ok());
        assert_eq!(code("LeaveSecurityGroup", &[("InstanceId", "i-1")]), Code::MissingParameter);
    }

    #[test]
    fn rule_changes_parse_and_refuse_self_reference() {
        let sg = ("SecurityGroupId", "sg-1");
        let a = parse("AuthorizeSecurityGroupEgress", &[R, sg, ("IpProtocol", "all"), ("DestCidrIp", "0.0.0.0/0")])
            .unwrap();
        assert!(matches!(a, Action::AuthorizeSecurityGroup(RuleChange { direction: Direction::Egress, .. })));
        let e =
            parse("AuthorizeSecurityGroup", &[R, sg, ("IpProtocol", "all"), ("SourceGroupId", "sg-1")]).unwrap_err();
        assert_eq!(e.code, Code::InvalidParamterConflict);
        let r = parse("RevokeSecurityGroup", &[R, sg, ("SecurityGroupRuleId.1", "sgr-1")]).unwrap();
        assert!(
            matches!(r, Action::RevokeSecurityGroup(RuleChange { ref rule_ids, ref permissions, .. }) if rule_ids.len() == 1 && permissions.is_empty())
        );
        let e = parse(
            "RevokeSecurityGroup",
            &[R, sg, ("SecurityGroupRuleId.1", "sgr-1"), ("SecurityGroupRuleId.2", "sgr-1")],
        )
        .unwrap_err();
        assert_eq!(e.code, Code::InvalidParamSecurityGroupRuleIdRepeated);
        assert_eq!(parse("RevokeSecurityGroup", &[R, sg]).unwrap_err(), ApiError::missing("IpProtocol"));
        assert_eq!(
            parse("AuthorizeSecurityGroup", &[R, ("IpProtocol", "all")]).unwrap_err(),
            ApiError::missing("SecurityGroupId")
        );
    }
}
