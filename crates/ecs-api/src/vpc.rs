//! The network family: VPCs, vSwitches and route tables of the VPC API (version 2016-04-28,
//! served on the same endpoint and chosen by `Version`), and the older ECS-endpoint forms
//! (2014-05-26) of the same actions that tools such as Packer still call. Parsed here into
//! [`Action`] variants; CIDR blocks are parsed into [`Ipv4Cidr`].
//!
//! API reference: CreateVpc, DescribeVpcs, DescribeVpcAttribute, ModifyVpcAttribute,
//! DeleteVpc, CreateVSwitch, DescribeVSwitches, DescribeVSwitchAttributes,
//! ModifyVSwitchAttribute, DeleteVSwitch,
//! DescribeRouteTableList (VPC 2016-04-28); CreateVpc, DescribeVpcs, ModifyVpcAttribute,
//! DeleteVpc, CreateVSwitch, DescribeVSwitches, ModifyVSwitchAttribute, DeleteVSwitch,
//! DescribeVRouters, DescribeRouteTables (ECS 2014-05-26).

use crate::action::{Action, Family};
use crate::error::{ApiError, Code};
use crate::params::{Paging, Params};
use std::fmt;
use std::net::Ipv4Addr;

/// The VPC API's version string.
pub const VPC_API_VERSION: &str = "2016-04-28";

/// CreateVpc without `CidrBlock`: the documented default.
pub const DEFAULT_VPC_CIDR: &str = "172.16.0.0/12";

/// An IPv4 CIDR block in canonical form (no host bits set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// The network address, as a host-order integer.
    pub base: u32,
    /// Prefix length, 0–32.
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// `a.b.c.d/n` with no host bits set; `None` otherwise.
    pub fn parse(s: &str) -> Option<Ipv4Cidr> {
        let (addr, len) = s.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix: u8 = len.parse().ok()?;
        if prefix > 32 {
            return None;
        }
        let c = Ipv4Cidr { base: u32::from(addr), prefix };
        (c.base & !c.mask() == 0).then_some(c)
    }

    /// The network mask as an integer.
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) }
    }

    /// The last address of the block.
    pub fn last(&self) -> u32 {
        self.base | !self.mask()
    }

    /// Addresses in the block.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    /// Whether `other` lies wholly inside this block.
    pub fn contains(&self, other: &Ipv4Cidr) -> bool {
        other.prefix >= self.prefix && other.base & self.mask() == self.base
    }

    /// Whether `ip` lies inside this block.
    pub fn contains_ip(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == self.base
    }

    /// Whether the two blocks share any address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// The addresses a vSwitch hands out: all but the first and the last three (API
    /// reference, CreateVSwitch).
    pub fn usable(&self) -> std::ops::RangeInclusive<u32> {
        self.base + 1..=self.last().saturating_sub(3)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// Whether a VPC may use `c` (API reference, CreateVpc and ModifyVpcAttribute): a mask of /8
/// to /28, and no address of 100.64.0.0/10, 224.0.0.0/4, 127.0.0.0/8 or 169.254.0.0/16.
pub fn valid_vpc_cidr(c: &Ipv4Cidr) -> bool {
    let reserved = ["100.64.0.0/10", "224.0.0.0/4", "127.0.0.0/8", "169.254.0.0/16"];
    (8..=28).contains(&c.prefix) && !reserved.iter().filter_map(|p| Ipv4Cidr::parse(p)).any(|p| p.overlaps(c))
}

/// CreateVpc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateVpc {
    pub cidr_block: Ipv4Cidr,
    pub name: Option<String>,
    pub description: Option<String>,
    pub resource_group_id: Option<String>,
    pub tags: Vec<(String, String)>,
    pub dry_run: bool,
}

/// DescribeVpcs: filters and PageNumber/PageSize (at most 50).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeVpcs {
    /// `VpcId`: comma-separated, at most 20.
    pub vpc_ids: Option<Vec<String>>,
    pub name: Option<String>,
    pub is_default: Option<bool>,
    pub resource_group_id: Option<String>,
    pub tags: Vec<(String, Option<String>)>,
    pub paging: Paging,
}

/// ModifyVpcAttribute: name, description, or a larger CIDR block that keeps every vSwitch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModifyVpcAttribute {
    pub vpc_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub cidr_block: Option<Ipv4Cidr>,
}

/// CreateVSwitch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateVSwitch {
    pub vpc_id: String,
    pub zone_id: String,
    pub cidr_block: Ipv4Cidr,
    pub name: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// DescribeVSwitches: filters and PageNumber/PageSize (at most 50).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeVSwitches {
    pub vpc_id: Option<String>,
    pub vswitch_id: Option<String>,
    pub zone_id: Option<String>,
    pub name: Option<String>,
    pub is_default: Option<bool>,
    pub resource_group_id: Option<String>,
    pub tags: Vec<(String, Option<String>)>,
    pub paging: Paging,
}

/// DescribeRouteTableList: every VPC's system route table, filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeRouteTableList {
    pub vpc_id: Option<String>,
    pub route_table_id: Option<String>,
    pub route_table_type: Option<String>,
    pub router_id: Option<String>,
    pub paging: Paging,
}

/// The network family as the VPC API (2016-04-28) answers it. RegionId is required where the
/// reference requires it; the others find their resource by id.
pub(crate) const FAMILY: Family = Family {
    names: &[
        "CreateVpc",
        "DescribeVpcs",
        "DescribeVpcAttribute",
        "ModifyVpcAttribute",
        "DeleteVpc",
        "CreateVSwitch",
        "DescribeVSwitches",
        "DescribeVSwitchAttributes",
        "ModifyVSwitchAttribute",
        "DeleteVSwitch",
        "DescribeRouteTableList",
    ],
    region_optional: &[
        "DescribeVpcAttribute",
        "ModifyVpcAttribute",
        "DeleteVpc",
        "CreateVSwitch",
        "DescribeVSwitches",
        "DescribeVSwitchAttributes",
        "ModifyVSwitchAttribute",
        "DeleteVSwitch",
    ],
    parse,
};

/// The ECS-endpoint (2014-05-26) forms of the network actions, which tools such as Packer
/// still call: the same parameters and answers.
pub(crate) const ECS_FAMILY: Family = Family {
    names: &[
        "CreateVpc",
        "DescribeVpcs",
        "ModifyVpcAttribute",
        "DeleteVpc",
        "CreateVSwitch",
        "DescribeVSwitches",
        "ModifyVSwitchAttribute",
        "DeleteVSwitch",
        "DescribeVRouters",
        "DescribeRouteTables",
    ],
    region_optional: &[
        "ModifyVpcAttribute",
        "DeleteVpc",
        "CreateVSwitch",
        "DescribeVSwitches",
        "ModifyVSwitchAttribute",
        "DeleteVSwitch",
    ],
    parse,
};

/// The family's parse: `None` when `name` is not one of its actions.
fn parse(action: &str, p: &Params) -> Option<Result<Action, ApiError>> {
    Some(match action {
        "CreateVpc" => create_vpc(p).map(Action::CreateVpc),
        "DescribeVpcs" => describe_vpcs(p).map(Action::DescribeVpcs),
        "DescribeVpcAttribute" => {
            (|| Ok(Action::DescribeVpcAttribute { vpc_id: p.req_str("VpcId")?, is_default: p.opt_bool("IsDefault")? }))(
            )
        }
        "ModifyVpcAttribute" => modify_vpc(p).map(Action::ModifyVpcAttribute),
        "DeleteVpc" => (|| {
            Ok(Action::DeleteVpc {
                vpc_id: p.req_str("VpcId")?,
                force: p.bool_or("ForceDelete", false)?,
                dry_run: p.bool_or("DryRun", false)?,
            })
        })(),
        "CreateVSwitch" => create_vswitch(p).map(Action::CreateVSwitch),
        "DescribeVSwitches" => describe_vswitches(p).map(Action::DescribeVSwitches),
        "DescribeVSwitchAttributes" => {
            p.req_str("VSwitchId").map(|vswitch_id| Action::DescribeVSwitchAttributes { vswitch_id })
        }
        "DeleteVSwitch" => p.req_str("VSwitchId").map(|vswitch_id| Action::DeleteVSwitch { vswitch_id }),
        "ModifyVSwitchAttribute" => (|| {
            Ok(Action::ModifyVSwitchAttribute {
                vswitch_id: p.req_str("VSwitchId")?,
                name: name(p, "VSwitchName", Code::InvalidVSwitchNameMalformed)?,
                description: description(p, Code::InvalidVSwitchDescriptionMalformed)?,
            })
        })(),
        "DescribeVRouters" => {
            (|| Ok(Action::DescribeVRouters { vrouter_id: p.opt_str("VRouterId"), paging: pages(p, 50)? }))()
        }
        "DescribeRouteTables" => (|| {
            Ok(Action::DescribeRouteTables {
                vrouter_id: p.opt_str("VRouterId").or_else(|| p.opt_str("RouterId")),
                route_table_id: p.opt_str("RouteTableId"),
                paging: pages(p, 50)?,
            })
        })(),
        "DescribeRouteTableList" => (|| {
            Ok(Action::DescribeRouteTableList(DescribeRouteTableList {
                vpc_id: p.opt_str("VpcId"),
                route_table_id: p.opt_str("RouteTableId"),
                route_table_type: p.opt_str("RouteTableType"),
                router_id: p.opt_str("RouterId"),
                paging: pages(p, 50)?,
            }))
        })(),
        _ => return None,
    })
}

/// PageNumber/PageSize as the VPC API takes them: PageSize 1–`max`, default 10.
fn pages(p: &Params, max: i64) -> Result<Paging, ApiError> {
    let number = p.opt_range("PageNumber", 1, i64::from(u32::MAX))?.unwrap_or(1) as u32;
    let size = p.opt_range("PageSize", 1, max)?.unwrap_or(10) as u32;
    Ok(Paging::Pages { number, size })
}

/// Names: 1–128 characters, not starting with `http://` or `https://` (API reference,
/// CreateVpc VpcName and CreateVSwitch VSwitchName).
fn valid_name(s: &str) -> bool {
    let n = s.chars().count();
    (1..=128).contains(&n) && !s.starts_with("http://") && !s.starts_with("https://")
}

/// Descriptions: 1–256 characters, not starting with `http://` or `https://`.
fn valid_description(s: &str) -> bool {
    let n = s.chars().count();
    (1..=256).contains(&n) && !s.starts_with("http://") && !s.starts_with("https://")
}

fn name(p: &Params, param: &str, code: Code) -> Result<Option<String>, ApiError> {
    match p.opt_str(param) {
        Some(n) if !valid_name(&n) => Err(code.into()),
        n => Ok(n),
    }
}

fn description(p: &Params, code: Code) -> Result<Option<String>, ApiError> {
    match p.opt_str("Description") {
        Some(d) if !valid_description(&d) => Err(code.into()),
        d => Ok(d),
    }
}

fn cidr(p: &Params, code: Code) -> Result<Option<Ipv4Cidr>, ApiError> {
    match p.opt_str("CidrBlock") {
        None => Ok(None),
        Some(s) => Ipv4Cidr::parse(s.trim()).map(Some).ok_or_else(|| code.into()),
    }
}

fn create_vpc(p: &Params) -> Result<CreateVpc, ApiError> {
    let cidr_block = match cidr(p, Code::InvalidCidrBlockMalformed)? {
        Some(c) if !valid_vpc_cidr(&c) => return Err(Code::InvalidCidrBlockMalformed.into()),
        Some(c) => c,
        None => Ipv4Cidr::parse(DEFAULT_VPC_CIDR).ok_or_else(|| ApiError::new(Code::InternalError))?,
    };
    Ok(CreateVpc {
        cidr_block,
        name: name(p, "VpcName", Code::InvalidVpcNameMalformed)?,
        description: description(p, Code::InvalidVpcDescriptionMalformed)?,
        resource_group_id: p.opt_str("ResourceGroupId"),
        tags: p.tags()?,
        dry_run: p.bool_or("DryRun", false)?,
    })
}

fn describe_vpcs(p: &Params) -> Result<DescribeVpcs, ApiError> {
    let vpc_ids = match p.opt_str("VpcId") {
        None => None,
        Some(s) => {
            let ids: Vec<String> = s.split(',').map(|i| i.trim().to_string()).filter(|i| !i.is_empty()).collect();
            if ids.len() > 20 {
                return Err(Code::InvalidVpcIdNumberNotSupported.into());
            }
            Some(ids)
        }
    };
    Ok(DescribeVpcs {
        vpc_ids,
        name: p.opt_str("VpcName"),
        is_default: p.opt_bool("IsDefault")?,
        resource_group_id: p.opt_str("ResourceGroupId"),
        tags: p.tag_filter()?,
        paging: pages(p, 50)?,
    })
}

fn modify_vpc(p: &Params) -> Result<ModifyVpcAttribute, ApiError> {
    let cidr_block = match cidr(p, Code::InvalidCidrBlockMalformed)? {
        Some(c) if !valid_vpc_cidr(&c) => return Err(Code::InvalidCidrBlockMalformed.into()),
        c => c,
    };
    Ok(ModifyVpcAttribute {
        vpc_id: p.req_str("VpcId")?,
        name: name(p, "VpcName", Code::InvalidVpcNameMalformed)?,
        description: description(p, Code::InvalidVpcDescriptionMalformed)?,
        cidr_block,
    })
}

fn create_vswitch(p: &Params) -> Result<CreateVSwitch, ApiError> {
    let zone_id = p.req_str("ZoneId")?;
    let cidr_block = cidr(p, Code::InvalidCidrBlockMalformed)?.ok_or_else(|| ApiError::missing("CidrBlock"))?;
    let vpc_id = p.req_str("VpcId")?;
    // A vSwitch's mask is /16 to /29 (API reference, CreateVSwitch CidrBlock).
    if !(16..=29).contains(&cidr_block.prefix) {
        return Err(Code::InvalidVSwitchMaskLength.into());
    }
    Ok(CreateVSwitch {
        vpc_id,
        zone_id,
        cidr_block,
        name: name(p, "VSwitchName", Code::InvalidVSwitchNameMalformed)?,
        description: description(p, Code::InvalidVSwitchDescriptionMalformed)?,
        tags: p.tags()?,
    })
}

fn describe_vswitches(p: &Params) -> Result<DescribeVSwitches, ApiError> {
    // "You must set at least one of RegionId and VpcId" (API reference).
    if p.opt_str("RegionId").is_none() && p.opt_str("VpcId").is_none() {
        return Err(ApiError::missing("RegionId"));
    }
    Ok(DescribeVSwitches {
        vpc_id: p.opt_str("VpcId"),
        vswitch_id: p.opt_str("VSwitchId"),
        zone_id: p.opt_str("ZoneId"),
        name: p.opt_str("VSwitchName"),
        is_default: p.opt_bool("IsDefault")?,
        resource_group_id: p.opt_str("ResourceGroupId"),
        tags: p.tag_filter()?,
        paging: pages(p, 50)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Ipv4Cidr {
        Ipv4Cidr::parse(s).unwrap()
    }

    #[test]
    fn cidr_blocks_parse_only_in_canonical_form() {
        assert_eq!(c("192.168.0.0/16").to_string(), "192.168.0.0/16");
        assert_eq!(c("0.0.0.0/0").size(), 1 << 32);
        for bad in [
            "192.168.1.0/16",
            "192.168.0.0/33",
            "192.168.0.0",
            "192.168.0.0/",
            "192.168.0/16",
            "a/8",
            "10.0.0.0/+8",
            "10.0.0.0/008",
        ] {
            assert_eq!(Ipv4Cidr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn containment_overlap_and_usable_addresses() {
        let vpc = c("172.16.0.0/12");
        assert!(vpc.contains(&c("172.16.1.0/24")) && vpc.contains(&vpc));
        assert!(!vpc.contains(&c("172.32.0.0/24")) && !c("172.16.1.0/24").contains(&vpc));
        assert!(c("10.0.0.0/24").overlaps(&c("10.0.0.128/25")));
        assert!(!c("10.0.0.0/25").overlaps(&c("10.0.0.128/25")));
        let sw = c("192.168.1.0/24");
        assert_eq!(sw.usable(), u32::from(Ipv4Addr::new(192, 168, 1, 1))..=u32::from(Ipv4Addr::new(192, 168, 1, 252)));
        assert!(sw.contains_ip(Ipv4Addr::new(192, 168, 1, 200)) && !sw.contains_ip(Ipv4Addr::new(192, 168, 2, 1)));
    }

    #[test]
    fn vpc_blocks_are_private_with_masks_8_to_28() {
        for ok in ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "192.168.10.0/24", "10.1.0.0/28", "11.0.0.0/8"] {
            assert!(valid_vpc_cidr(&c(ok)), "{ok}");
        }
        for bad in ["127.0.0.0/8", "96.0.0.0/4", "192.168.0.0/29", "100.64.0.0/10", "169.254.1.0/24", "0.0.0.0/0"] {
            assert!(!valid_vpc_cidr(&c(bad)), "{bad}");
        }
    }

    #[test]
    fn vswitch_masks_and_required_parameters() {
        let parse = |pairs: &[(&str, &str)]| create_vswitch(&Params::from_pairs(pairs.iter().copied()));
        let base = [("VpcId", "vpc-1"), ("ZoneId", "cn-hangzhou-h")];
        let with = |cidr: &'static str| {
            let mut v = base.to_vec();
            v.push(("CidrBlock", cidr));
            v
        };
        assert!(parse(&with("172.16.0.0/16")).is_ok() && parse(&with("172.16.0.0/29")).is_ok());
        assert_eq!(parse(&with("172.16.0.0/15")).unwrap_err().code, Code::InvalidVSwitchMaskLength);
        assert_eq!(parse(&with("172.16.0.0/30")).unwrap_err().code, Code::InvalidVSwitchMaskLength);
        assert_eq!(parse(&with("172.16.0.1/24")).unwrap_err().code, Code::InvalidCidrBlockMalformed);
        assert_eq!(parse(&base).unwrap_err().code, Code::MissingParameter);
    }

    #[test]
    fn names_and_the_ecs_endpoint_subset() {
        let p = Params::from_pairs([("VpcName", "https://x")]);
        assert_eq!(create_vpc(&p).unwrap_err().code, Code::InvalidVpcNameMalformed);
        let p = Params::from_pairs([("VpcId", "vpc-1"), ("RegionId", "cn-hangzhou")]);
        let code = |v, n| Action::parse_versioned(v, n, &p).map(|_| ()).map_err(|e| e.code);
        assert_eq!(code("2014-05-26", "DescribeVpcAttribute"), Err(Code::InvalidActionNotFound));
        assert_eq!(code(VPC_API_VERSION, "DescribeVpcAttribute"), Ok(()));
        assert_eq!(code("2014-05-26", "DescribeVpcs"), Ok(()));
        assert_eq!(code(VPC_API_VERSION, "DescribeDisks"), Err(Code::InvalidActionNotFound));
        assert_eq!(code("2099-01-01", "DescribeVpcs"), Err(Code::InvalidVersion));
        let no_region = Params::from_pairs([("VpcId", "vpc-1")]);
        let missing = Action::parse_versioned(VPC_API_VERSION, "DescribeVpcs", &no_region).unwrap_err();
        assert_eq!(missing.code, Code::MissingParameter);
        assert!(Action::parse_versioned(VPC_API_VERSION, "DescribeVpcAttribute", &no_region).is_ok());
        let many = (0..21).map(|i| format!("vpc-{i}")).collect::<Vec<_>>().join(",");
        let p = Params::from_pairs([("VpcId", many.as_str())]);
        assert_eq!(describe_vpcs(&p).unwrap_err().code, Code::InvalidVpcIdNumberNotSupported);
    }
}
