//! Where a new instance goes (RunInstances, CreateInstance): its VSwitchId's VPC and zone, or
//! the account's default VPC and the zone's default vSwitch, made on first use as ECS does for
//! accounts that have them; and its address, the lowest free one of the vSwitch (the first and
//! last three are reserved) or the PrivateIpAddress asked for.

use super::R;
use super::vpc::{DEFAULT_VSWITCH_PREFIX, insert_vpc, vpc, vswitch_blocks};
use super::vswitches::{insert_vswitch, vswitch};
use crate::Env;
use ecs_api::Code;
use ecs_api::vpc::{CreateVSwitch, CreateVpc, DEFAULT_VPC_CIDR, Ipv4Cidr};
use rusqlite::{Connection, OptionalExtension};
use std::net::Ipv4Addr;

/// Where a new instance goes: its VPC, vSwitch and zone.
pub(crate) struct Placement {
    pub vpc_id: String,
    pub vswitch_id: String,
    pub zone_id: String,
    block: Ipv4Cidr,
}

/// The vSwitch `id` for a new instance (RunInstances, CreateInstance): the caller's, live and
/// Available, in `zone` when one was given.
pub(crate) fn place_in(conn: &Connection, env: &Env, id: &str, zone: Option<&str>) -> R<Placement> {
    let v = vswitch(conn, env, id)?;
    if v.status != "Available" {
        return Err(Code::IncorrectVSwitchStatus.into());
    }
    if zone.is_some_and(|z| z != v.zone_id) {
        return Err(Code::InvalidVSwitchIdZoneMismatch.into());
    }
    let block = Ipv4Cidr::parse(&v.cidr_block).ok_or(Code::InternalError)?;
    Ok(Placement { vpc_id: v.vpc_id, vswitch_id: v.id, zone_id: v.zone_id, block })
}

/// The account's default VPC in the request's region and its default vSwitch in `zone`,
/// made (Available at once) when missing.
pub(crate) fn place_default(conn: &Connection, env: &Env, zone: &str) -> R<Placement> {
    let region = env.region_id.unwrap_or_default();
    let found: Option<String> = conn
        .query_row(
            "SELECT id FROM vpcs WHERE account_id=?1 AND region_id=?2 AND is_default=1 AND released=0",
            [env.account_id, region],
            |r| r.get(0),
        )
        .optional()?;
    let vpc_id = match found {
        Some(id) => id,
        None => {
            let c = CreateVpc {
                cidr_block: Ipv4Cidr::parse(DEFAULT_VPC_CIDR).ok_or(Code::InternalError)?,
                name: None,
                description: None,
                resource_group_id: None,
                tags: Vec::new(),
                dry_run: false,
            };
            insert_vpc(conn, env, &c, true, env.now)?.0
        }
    };
    let v = vpc(conn, env, &vpc_id)?;
    let found: Option<(String, String)> = conn
        .query_row(
            "SELECT id, cidr_block FROM vswitches WHERE vpc_id=?1 AND zone_id=?2 AND is_default=1 AND released=0",
            [&vpc_id, zone],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((id, block)) = found {
        let block = Ipv4Cidr::parse(&block).ok_or(Code::InternalError)?;
        return Ok(Placement { vpc_id, vswitch_id: id, zone_id: zone.to_string(), block });
    }
    // The first /20 of the VPC that no vSwitch overlaps.
    let vpc_block = Ipv4Cidr::parse(&v.cidr_block).ok_or(Code::InternalError)?;
    let taken = vswitch_blocks(conn, &vpc_id)?;
    let step = 1u32 << (32 - DEFAULT_VSWITCH_PREFIX);
    let block = (0..(vpc_block.size() / u64::from(step)))
        .map(|k| Ipv4Cidr { base: vpc_block.base + (k as u32) * step, prefix: DEFAULT_VSWITCH_PREFIX })
        .find(|b| !taken.iter().any(|(_, t)| t.overlaps(b)))
        .ok_or(Code::QuotaExceededVSwitch)?;
    let c = CreateVSwitch {
        vpc_id: vpc_id.clone(),
        zone_id: zone.to_string(),
        cidr_block: block,
        name: None,
        description: None,
        tags: Vec::new(),
    };
    let id = insert_vswitch(conn, env, &v, &c, true, env.now)?;
    Ok(Placement { vpc_id, vswitch_id: id, zone_id: zone.to_string(), block })
}

impl Placement {
    /// `count` addresses for new instances: `wanted` (which must be inside the vSwitch,
    /// usable and free; only with one instance) or the lowest free ones.
    pub(crate) fn addresses(&self, conn: &Connection, wanted: Option<&str>, count: u32) -> R<Vec<String>> {
        let mut st = conn.prepare_cached("SELECT private_ip FROM instances WHERE vswitch_id=?1 AND released=0")?;
        let used: std::collections::HashSet<u32> = st
            .query_map([&self.vswitch_id], |r| r.get::<_, String>(0))?
            .filter_map(|ip| ip.ok()?.parse::<Ipv4Addr>().ok().map(u32::from))
            .collect();
        if let Some(w) = wanted {
            let ip: Ipv4Addr = w.parse().map_err(|_| super::Fail::from(Code::InvalidPrivateIpAddressMalformed))?;
            if !self.block.contains_ip(ip) || !self.block.usable().contains(&u32::from(ip)) {
                return Err(Code::InvalidPrivateIpAddress.into());
            }
            if used.contains(&u32::from(ip)) {
                return Err(Code::InvalidPrivateIpAddressDuplicated.into());
            }
            return Ok(vec![ip.to_string()]);
        }
        let free: Vec<String> = self
            .block
            .usable()
            .filter(|ip| !used.contains(ip))
            .take(count as usize)
            .map(|ip| Ipv4Addr::from(ip).to_string())
            .collect();
        if free.len() < count as usize {
            return Err(Code::InvalidVSwitchIpNotEnough.into());
        }
        Ok(free)
    }
}
