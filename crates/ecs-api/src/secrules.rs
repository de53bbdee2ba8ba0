//! Security group rules as AuthorizeSecurityGroup, AuthorizeSecurityGroupEgress,
//! RevokeSecurityGroup and RevokeSecurityGroupEgress take them (API reference): one rule from
//! the deprecated top-level parameters, or 1–100 from `Permissions.N.*`, each checked against
//! the documented forms (protocol, port ranges, CIDR blocks, policy, priority, NIC type,
//! description). Used by [`crate::secgroups`].

use crate::error::{ApiError, Code};
use crate::params::Params;
use std::collections::BTreeMap;

/// Most rules one request carries (API reference: Permissions, 1 to 100).
pub const MAX_PERMISSIONS: usize = 100;

/// Which way a rule points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    /// The name DescribeSecurityGroupAttribute shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// One rule, checked. Text fields are as they will be stored and shown: the protocol upper
/// case (`TCP`, `UDP`, `ICMP`, `GRE`, `ALL`), the policy and NIC type lower case.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Permission {
    pub ip_protocol: String,
    /// `a/b`; `-1/-1` for ICMP, GRE and ALL.
    pub port_range: String,
    pub source_port_range: String,
    pub source_cidr_ip: String,
    pub dest_cidr_ip: String,
    pub ipv6_source_cidr_ip: String,
    pub ipv6_dest_cidr_ip: String,
    pub source_group_id: String,
    pub dest_group_id: String,
    /// `accept` (default) or `drop`.
    pub policy: String,
    /// Whether `Policy` was given (advanced security groups refuse it).
    pub policy_given: bool,
    /// 1 (default, the highest) to 100.
    pub priority: i64,
    /// `intranet` (the default here: every instance is in a VPC) or `internet`.
    pub nic_type: String,
    pub description: String,
}

/// The deprecated top-level rule parameters; with `Permissions.N.*` none may be given.
const FIELDS: &[&str] = &[
    "IpProtocol",
    "PortRange",
    "SourcePortRange",
    "SourceCidrIp",
    "DestCidrIp",
    "Ipv6SourceCidrIp",
    "Ipv6DestCidrIp",
    "SourceGroupId",
    "DestGroupId",
    "SourcePrefixListId",
    "DestPrefixListId",
    "PortRangeListId",
    "Policy",
    "Priority",
    "NicType",
    "Description",
];

/// An IPv4 address or CIDR block: four decimal octets 0–255, optionally `/0`–`/32`.
pub fn valid_ipv4_cidr(s: &str) -> bool {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let octets: Vec<&str> = addr.split('.').collect();
    let digits = |t: &str, max: u32| {
        !t.is_empty()
            && t.len() <= 3
            && t.bytes().all(|b| b.is_ascii_digit())
            && t.parse::<u32>().is_ok_and(|v| v <= max)
    };
    octets.len() == 4 && octets.iter().all(|o| digits(o, 255)) && prefix.is_none_or(|p| digits(p, 32))
}

/// An IPv6 address or CIDR block (`/0`–`/128`).
pub fn valid_ipv6_cidr(s: &str) -> bool {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    addr.parse::<std::net::Ipv6Addr>().is_ok()
        && prefix.is_none_or(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|v| v <= 128)
        })
}

/// Why a port range was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortError {
    /// Not `a/b` with integers, or TCP/UDP ports outside 1–65535 or reversed:
    /// `InvalidIpPortRange.Malformed`.
    Malformed,
    /// Well formed but not what the protocol takes (TCP/UDP `-1/-1`, or ICMP, GRE, ALL with
    /// ports): `OperationDenied`.
    Mismatch,
}

/// `range` for `protocol` (upper case) by the documented rules: TCP and UDP take `a/b` with
/// 1 ≤ a ≤ b ≤ 65535; ICMP, GRE and ALL take `-1/-1` only.
pub fn check_port_range(protocol: &str, range: &str) -> Result<(), PortError> {
    let (a, b) = range.split_once('/').ok_or(PortError::Malformed)?;
    let num = |t: &str| t.trim().parse::<i64>().map_err(|_| PortError::Malformed);
    let (a, b) = (num(a)?, num(b)?);
    match protocol {
        "TCP" | "UDP" if (a, b) == (-1, -1) => Err(PortError::Mismatch),
        "TCP" | "UDP" if (1..=65535).contains(&a) && (1..=65535).contains(&b) && a <= b => Ok(()),
        "TCP" | "UDP" => Err(PortError::Malformed),
        _ if (a, b) == (-1, -1) => Ok(()),
        _ if (-1..=65535).contains(&a) && (-1..=65535).contains(&b) => Err(PortError::Mismatch),
        _ => Err(PortError::Malformed),
    }
}

fn port_error(e: PortError) -> ApiError {
    match e {
        PortError::Malformed => Code::InvalidIpPortRangeMalformed.into(),
        PortError::Mismatch => Code::OperationDeniedProtocolPort.into(),
    }
}

/// One rule from its fields (`get` by field name), `name` giving the parameter name for
/// MissingParameter (`IpProtocol` or `Permissions.N.IpProtocol`).
fn permission(
    direction: Direction,
    get: &dyn Fn(&str) -> Option<String>,
    name: &dyn Fn(&str) -> String,
) -> Result<Permission, ApiError> {
    let ip_protocol = get("IpProtocol").ok_or_else(|| ApiError::missing(&name("IpProtocol")))?.to_ascii_uppercase();
    if !["TCP", "UDP", "ICMP", "GRE", "ALL"].contains(&ip_protocol.as_str()) {
        return Err(Code::InvalidIpProtocolValueNotSupported.into());
    }
    let port_range = match get("PortRange") {
        Some(r) => r,
        None if matches!(ip_protocol.as_str(), "TCP" | "UDP") => return Err(ApiError::missing(&name("PortRange"))),
        None => "-1/-1".to_string(),
    };
    check_port_range(&ip_protocol, &port_range).map_err(port_error)?;
    let source_port_range = get("SourcePortRange").unwrap_or_default();
    if !source_port_range.is_empty() {
        check_port_range(&ip_protocol, &source_port_range).map_err(port_error)?;
    }
    let v4 = |field: &str, code: Code| -> Result<String, ApiError> {
        match get(field) {
            Some(c) if !valid_ipv4_cidr(&c) => Err(code.into()),
            c => Ok(c.unwrap_or_default()),
        }
    };
    let v6 = |field: &str| -> Result<String, ApiError> {
        match get(field) {
            Some(c) if !valid_ipv6_cidr(&c) => Err(Code::InvalidParameterIpv6CidrIp.into()),
            c => Ok(c.unwrap_or_default()),
        }
    };
    if get("SourcePrefixListId").is_some() || get("DestPrefixListId").is_some() {
        return Err(Code::InvalidPrefixListIdNotFound.into());
    }
    if get("PortRangeListId").is_some() {
        return Err(Code::InvalidPortRangeListIdNotFound.into());
    }
    let policy = get("Policy").map(|p| p.to_ascii_lowercase());
    if policy.as_deref().is_some_and(|p| p != "accept" && p != "drop") {
        return Err(Code::InvalidPolicyMalformed.into());
    }
    let priority = match get("Priority") {
        None => 1,
        Some(p) => {
            p.trim().parse::<i64>().ok().filter(|v| (1..=100).contains(v)).ok_or(Code::InvalidPriorityMalformed)?
        }
    };
    let nic_type = get("NicType").map(|n| n.to_ascii_lowercase()).unwrap_or_else(|| "intranet".into());
    if nic_type != "intranet" && nic_type != "internet" {
        return Err(Code::InvalidNicTypeValueNotSupported.into());
    }
    let description = get("Description").unwrap_or_default();
    let links = description.starts_with("http://") || description.starts_with("https://");
    if description.chars().count() > 512 || links {
        return Err(Code::InvalidSecurityGroupDiscriptionMalformed.into());
    }
    let p = Permission {
        source_cidr_ip: v4("SourceCidrIp", Code::InvalidSourceCidrIpMalformed)?,
        dest_cidr_ip: v4("DestCidrIp", Code::InvalidDestCidrIpMalformed)?,
        ipv6_source_cidr_ip: v6("Ipv6SourceCidrIp")?,
        ipv6_dest_cidr_ip: v6("Ipv6DestCidrIp")?,
        source_group_id: get("SourceGroupId").unwrap_or_default(),
        dest_group_id: get("DestGroupId").unwrap_or_default(),
        ip_protocol,
        port_range,
        source_port_range,
        policy_given: policy.is_some(),
        policy: policy.unwrap_or_else(|| "accept".into()),
        priority,
        nic_type,
        description,
    };
    let peer_missing = match direction {
        Direction::Ingress => {
            p.source_cidr_ip.is_empty() && p.ipv6_source_cidr_ip.is_empty() && p.source_group_id.is_empty()
        }
        Direction::Egress => p.dest_cidr_ip.is_empty() && p.ipv6_dest_cidr_ip.is_empty() && p.dest_group_id.is_empty(),
    };
    if peer_missing {
        return Err(match direction {
            Direction::Ingress => Code::MissingSourceGroupOrCidr,
            Direction::Egress => Code::MissingDestGroupOrCidr,
        }
        .into());
    }
    Ok(p)
}

/// The rules of one Authorize*/Revoke* request: `Permissions.N.*`, else the top-level
/// parameters (at least IpProtocol). `allow_none`: Revoke by `SecurityGroupRuleId.N` needs no
/// rule.
pub fn permissions(p: &Params, direction: Direction, allow_none: bool) -> Result<Vec<Permission>, ApiError> {
    let listed = p.repeat_struct("Permissions")?;
    let top_level = FIELDS.iter().any(|f| p.opt_str(f).is_some());
    if listed.is_empty() {
        if allow_none && !top_level {
            return Ok(Vec::new());
        }
        let get = |f: &str| p.opt_str(f);
        return Ok(vec![permission(direction, &get, &|f: &str| f.to_string())?]);
    }
    if top_level {
        return Err(Code::InvalidParamPermissions.into());
    }
    if listed.len() > MAX_PERMISSIONS {
        return Err(ApiError::invalid("Permissions"));
    }
    let mut out: Vec<Permission> = Vec::with_capacity(listed.len());
    for (i, fields) in listed.iter().enumerate() {
        let get = |f: &str| fields.get(f).filter(|v| !v.is_empty()).cloned();
        let n = i + 1;
        let perm = permission(direction, &get, &|f: &str| format!("Permissions.{n}.{f}"))?;
        if out.iter().any(|q| same_rule(q, &perm)) {
            return Err(Code::InvalidParamDuplicatePermissions.into());
        }
        out.push(perm);
    }
    Ok(out)
}

/// Two rules are the same rule when every field but the description and the priority
/// matches (Authorize of the same rule again changes nothing; Revoke finds it so).
pub fn same_rule(a: &Permission, b: &Permission) -> bool {
    let key = |p: &Permission| {
        (
            p.ip_protocol.clone(),
            p.port_range.clone(),
            p.source_port_range.clone(),
            p.source_cidr_ip.clone(),
            p.dest_cidr_ip.clone(),
            p.ipv6_source_cidr_ip.clone(),
            p.ipv6_dest_cidr_ip.clone(),
            p.source_group_id.clone(),
            p.dest_group_id.clone(),
            p.policy.clone(),
            p.nic_type.clone(),
        )
    };
    key(a) == key(b)
}

/// `Name.N` values with N in order, for the `SecurityGroupRuleId.N` list.
pub fn rule_ids(p: &Params) -> Result<Vec<String>, ApiError> {
    let ids = p.repeat_list("SecurityGroupRuleId")?;
    if ids.len() > MAX_PERMISSIONS {
        return Err(ApiError::invalid("SecurityGroupRuleId"));
    }
    let mut seen = BTreeMap::new();
    for id in &ids {
        if seen.insert(id.clone(), ()).is_some() {
            return Err(Code::InvalidParamSecurityGroupRuleIdRepeated.into());
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ipv4_blocks_follow_the_dotted_quad_form() {
        for ok in ["0.0.0.0/0", "10.0.0.0/8", "192.168.1.10", "255.255.255.255/32", "172.16.0.0/12"] {
            assert!(valid_ipv4_cidr(ok), "{ok}");
        }
        for bad in [
            "",
            "10.0.0/8",
            "10.0.0.0/33",
            "256.0.0.0/8",
            "10.0.0.0/",
            "a.b.c.d",
            "10.0.0.0/8/1",
            " 10.0.0.0",
            "1.2.3.4.5",
            "+1.2.3.4",
            "10.0.0.0/-1",
            "1234.0.0.1",
        ] {
            assert!(!valid_ipv4_cidr(bad), "{bad}");
        }
        assert!(valid_ipv6_cidr("2001:db8::/32") && valid_ipv6_cidr("::/0") && valid_ipv6_cidr("fe80::1"));
        assert!(!valid_ipv6_cidr("2001:db8::/129") && !valid_ipv6_cidr("10.0.0.0/8") && !valid_ipv6_cidr("::/"));
    }

    #[test]
    fn port_ranges_follow_the_protocol() {
        assert_eq!(check_port_range("TCP", "22/22"), Ok(()));
        assert_eq!(check_port_range("UDP", "1/65535"), Ok(()));
        for (proto, bad, why) in [
            ("TCP", "0/22", PortError::Malformed),
            ("TCP", "22/65536", PortError::Malformed),
            ("TCP", "80/22", PortError::Malformed),
            ("TCP", "22", PortError::Malformed),
            ("TCP", "a/b", PortError::Malformed),
            ("TCP", "-1/-1", PortError::Mismatch),
            ("ICMP", "22/22", PortError::Mismatch),
            ("ALL", "1/65535", PortError::Mismatch),
            ("GRE", "-1/99999", PortError::Malformed),
        ] {
            assert_eq!(check_port_range(proto, bad), Err(why), "{proto} {bad}");
        }
        for proto in ["ICMP", "GRE", "ALL"] {
            assert_eq!(check_port_range(proto, "-1/-1"), Ok(()));
        }
    }

    fn perms(pairs: &[(&str, &str)], d: Direction) -> Result<Vec<Permission>, ApiError> {
        permissions(&Params::from_pairs(pairs.iter().copied()), d, false)
    }

    #[test]
    fn permissions_parse_from_either_form() {
        let one =
            perms(&[("IpProtocol", "tcp"), ("PortRange", "22/22"), ("SourceCidrIp", "10.0.0.0/8")], Direction::Ingress)
                .unwrap();
        assert_eq!(one.len(), 1);
        let p = &one[0];
        assert_eq!(
            (p.ip_protocol.as_str(), p.policy.as_str(), p.priority, p.nic_type.as_str()),
            ("TCP", "accept", 1, "intranet")
        );
        let two = perms(
            &[
                ("Permissions.1.IpProtocol", "ALL"),
                ("Permissions.1.SourceGroupId", "sg-1"),
                ("Permissions.2.IpProtocol", "icmp"),
                ("Permissions.2.SourceCidrIp", "0.0.0.0/0"),
                ("Permissions.2.Policy", "Drop"),
                ("Permissions.2.Priority", "100"),
            ],
            Direction::Ingress,
        )
        .unwrap();
        assert_eq!((two[1].port_range.as_str(), two[1].policy.as_str(), two[1].priority), ("-1/-1", "drop", 100));
    }

    #[test]
    fn permissions_refuse_as_documented() {
        let code = |pairs: &[(&str, &str)], d| perms(pairs, d).unwrap_err();
        let ing = Direction::Ingress;
        assert_eq!(code(&[], ing), ApiError::missing("IpProtocol"));
        assert_eq!(code(&[("Permissions.2.PortRange", "1/2")], ing), ApiError::missing("Permissions.1.IpProtocol"));
        let base = [("IpProtocol", "tcp"), ("PortRange", "22/22")];
        assert_eq!(code(&base, ing).code, Code::MissingSourceGroupOrCidr);
        assert_eq!(
            code(&[base[0], base[1], ("SourceCidrIp", "1.2.3.4")], Direction::Egress).code,
            Code::MissingDestGroupOrCidr
        );
        assert!(perms(&[base[0], base[1], ("DestCidrIp", "1.2.3.4")], Direction::Egress).is_ok());
        let with = |extra: (&str, &str)| code(&[base[0], base[1], ("SourceCidrIp", "10.0.0.0/8"), extra], ing).code;
        assert_eq!(with(("Policy", "allow")), Code::InvalidPolicyMalformed);
        assert_eq!(with(("Priority", "0")), Code::InvalidPriorityMalformed);
        assert_eq!(with(("Priority", "101")), Code::InvalidPriorityMalformed);
        assert_eq!(with(("NicType", "public")), Code::InvalidNicTypeValueNotSupported);
        assert_eq!(with(("DestCidrIp", "10.0.0.0/40")), Code::InvalidDestCidrIpMalformed);
        assert_eq!(with(("Description", "http://x")), Code::InvalidSecurityGroupDiscriptionMalformed);
        assert_eq!(with(("SourcePrefixListId", "pl-1")), Code::InvalidPrefixListIdNotFound);
        assert_eq!(
            code(&[("IpProtocol", "sctp"), ("SourceCidrIp", "1.2.3.4")], ing).code,
            Code::InvalidIpProtocolValueNotSupported
        );
        assert_eq!(code(&[("IpProtocol", "tcp"), ("SourceCidrIp", "1.2.3.4")], ing), ApiError::missing("PortRange"));
        assert_eq!(
            code(&[("IpProtocol", "tcp"), ("PortRange", "22/22"), ("SourceCidrIp", "1.2.3")], ing).code,
            Code::InvalidSourceCidrIpMalformed
        );
        assert_eq!(
            code(&[("IpProtocol", "icmp"), ("PortRange", "22/22"), ("SourceCidrIp", "1.2.3.4")], ing).code,
            Code::OperationDeniedProtocolPort
        );
        let mixed = [("IpProtocol", "tcp"), ("Permissions.1.IpProtocol", "tcp")];
        assert_eq!(code(&mixed, ing).code, Code::InvalidParamPermissions);
        let twice = [
            ("Permissions.1.IpProtocol", "tcp"),
            ("Permissions.1.PortRange", "22/22"),
            ("Permissions.1.SourceCidrIp", "1.2.3.4"),
            ("Permissions.2.IpProtocol", "TCP"),
            ("Permissions.2.PortRange", "22/22"),
            ("Permissions.2.SourceCidrIp", "1.2.3.4"),
            ("Permissions.2.Priority", "5"),
        ];
        assert_eq!(code(&twice, ing).code, Code::InvalidParamDuplicatePermissions);
    }
}
