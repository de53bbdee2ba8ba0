//! The network family (VPC API 2016-04-28, and the ECS-endpoint forms of its actions): VPCs
//! here; their vSwitches in `vswitches`, their routers and route tables in `routes`, and where
//! instances are placed in `placement`.
//!
//! Rules (API reference, CreateVpc and CreateVSwitch): a VPC's block has a /8–/28 mask and
//! avoids the reserved ranges (`ecs_api::vpc::valid_vpc_cidr`); a vSwitch's block lies inside its
//! VPC's, has a /16–/29 mask and overlaps no other vSwitch of the VPC; at most
//! [`MAX_VSWITCHES_PER_VPC`] vSwitches per VPC. A new VPC or vSwitch is `Pending` for the
//! disk transition time, then `Available`; a vSwitch is made only in an Available VPC. A VPC
//! with vSwitches, or a vSwitch with instances, is not deleted (`DependencyViolation`).
//! Instances take the lowest free address of their vSwitch, leaving out the first and last
//! three; without a VSwitchId they go to the account's default VPC and the zone's default
//! vSwitch, made on first use as ECS does for accounts that have them.

use super::idempotency;
use super::listing::{Listing, Scope};
use super::{R, begin, dry_run_ok};
use crate::model::tags_json;
use crate::shapes::TimeText;
use crate::{Env, guards, new_id};
use ecs_api::vpc::{CreateVpc, DescribeVpcs, Ipv4Cidr, ModifyVpcAttribute};
use ecs_api::write::{Emit, Out};
use ecs_api::{Code, Node};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

/// vSwitches per VPC (API reference, CreateVSwitch).
pub const MAX_VSWITCHES_PER_VPC: i64 = 150;
/// VPCs per account and region (the default quota).
pub const MAX_VPCS_PER_REGION: i64 = 10;
/// Each zone's default vSwitch is a /20 of the default VPC (172.16.0.0/12 holds 256).
pub(super) const DEFAULT_VSWITCH_PREFIX: u8 = 20;

/// One VPC row.
pub(super) struct Vpc {
    pub(super) id: String,
    pub(super) region_id: String,
    pub(super) name: String,
    pub(super) description: String,
    pub(super) cidr_block: String,
    pub(super) is_default: bool,
    pub(super) vrouter_id: String,
    pub(super) route_table_id: String,
    pub(super) resource_group_id: String,
    pub(super) created_ms: i64,
    pub(super) tags: String,
    /// Its live vSwitches, oldest first.
    pub(super) vswitch_ids: Vec<String>,
    /// "Pending" or "Available" at the request's time.
    pub(super) status: &'static str,
}

pub(super) const VPC_COLUMNS: &str = "id, region_id, name, description, cidr_block, is_default, vrouter_id, route_table_id, \
                           resource_group_id, created_ms, ready_ms, tags";

pub(super) fn status(env: &Env, ready_ms: i64) -> &'static str {
    if env.now < ready_ms { "Pending" } else { "Available" }
}

pub(super) fn vswitch_ids(conn: &Connection, vpc_id: &str) -> rusqlite::Result<Vec<String>> {
    let mut st =
        conn.prepare_cached("SELECT id FROM vswitches WHERE vpc_id=?1 AND released=0 ORDER BY created_ms, id")?;
    st.query_map([vpc_id], |r| r.get(0))?.collect()
}

pub(super) fn vpc_row(conn: &Connection, env: &Env, r: &rusqlite::Row) -> rusqlite::Result<Vpc> {
    let id: String = r.get(0)?;
    let ready_ms = r.get(10)?;
    Ok(Vpc {
        vswitch_ids: vswitch_ids(conn, &id)?,
        id,
        region_id: r.get(1)?,
        name: r.get(2)?,
        description: r.get(3)?,
        cidr_block: r.get(4)?,
        is_default: r.get(5)?,
        vrouter_id: r.get(6)?,
        route_table_id: r.get(7)?,
        resource_group_id: r.get(8)?,
        created_ms: r.get(9)?,
        tags: r.get(11)?,
        status: status(env, ready_ms),
    })
}

/// The caller's live VPC `id` (in the request's region when it names one).
pub(super) fn vpc(conn: &Connection, env: &Env, id: &str) -> R<Vpc> {
    let sql = format!("SELECT {VPC_COLUMNS} FROM vpcs WHERE id=?1 AND account_id=?2 AND released=0");
    conn.query_row(&sql, [id, env.account_id], |r| vpc_row(conn, env, r))
        .optional()?
        .filter(|v| env.region_id.is_none_or(|r| r == v.region_id))
        .ok_or_else(|| Code::InvalidVpcIdNotFound.into())
}

/// The caller's live VPC `id` exists (in the request's region when it names one), else
/// `InvalidVpcId.NotFound`.
pub(crate) fn check_vpc(conn: &Connection, env: &Env, id: &str) -> R<()> {
    vpc(conn, env, id).map(drop)
}

/// Tags as the VPC API shapes them: `{"Tags": {"Tag": [{"Key", "Value"}]}}`.
pub(super) fn emit_tags(o: &mut dyn Out, raw: &str) {
    let tags: Vec<(String, String)> = serde_json::from_str(raw).unwrap_or_default();
    o.wrapped("Tags", "Tag", |o| {
        for (k, v) in &tags {
            o.begin_obj();
            o.field("Key", k);
            o.field("Value", v);
            o.end_obj();
        }
    });
}

pub(super) fn empty_list(o: &mut dyn Out, outer: &'static str, inner: &'static str) {
    o.wrapped(outer, inner, |_| {});
}

impl Vpc {
    /// The fields DescribeVpcs and DescribeVpcAttribute share, every documented one present.
    fn fields(&self, owner: i64, o: &mut dyn Out) {
        o.field("VpcId", &self.id);
        o.field("RegionId", &self.region_id);
        o.field("Status", self.status);
        o.field("VpcName", &self.name);
        o.field("Description", &self.description);
        o.field("CidrBlock", &self.cidr_block);
        o.field("IsDefault", &self.is_default);
        o.field("VRouterId", &self.vrouter_id);
        o.field("CreationTime", TimeText::secs(self.created_ms).as_str());
        o.field("ResourceGroupId", &self.resource_group_id);
        o.field("OwnerId", &owner);
        o.field("Ipv6CidrBlock", "");
        o.field("EnabledIpv6", &false);
        o.field("DhcpOptionsSetId", "");
        o.field("DhcpOptionsSetStatus", "");
        o.field("DnsHostnameStatus", "DISABLED");
        o.field("CenStatus", "");
        o.wrapped("VSwitchIds", "VSwitchId", |o| {
            for id in &self.vswitch_ids {
                o.str(id);
            }
        });
        empty_list(o, "UserCidrs", "UserCidr");
        empty_list(o, "SecondaryCidrBlocks", "SecondaryCidrBlock");
        empty_list(o, "Ipv6CidrBlocks", "Ipv6CidrBlock");
        emit_tags(o, &self.tags);
    }
}

/// The caller's `OwnerId`, as images show their owner's (`shapes::owner_number`).
pub(crate) fn owner_id(env: &Env) -> i64 {
    crate::shapes::owner_number(Some(env.account_id))
}

/// One VPC as DescribeVpcs lists it.
struct VpcItem(Vpc, i64);

impl Emit for VpcItem {
    fn emit(&self, o: &mut dyn Out) {
        o.begin_obj();
        self.0.fields(self.1, o);
        o.wrapped("RouterTableIds", "RouterTableIds", |o| o.str(&self.0.route_table_id));
        empty_list(o, "NatGatewayIds", "NatGatewayIds");
        o.end_obj();
    }
}

/// A value that writes itself through a closure over `Out` (attribute answers).
struct Flat<F: Fn(&mut dyn Out) + Send + Sync>(F);

impl<F: Fn(&mut dyn Out) + Send + Sync> Emit for Flat<F> {
    fn emit(&self, o: &mut dyn Out) {
        o.begin_obj();
        (self.0)(o);
        o.end_obj();
    }
}

pub(super) fn flat(f: impl Fn(&mut dyn Out) + Send + Sync + 'static) -> Node {
    ecs_api::node::Emitted(std::sync::Arc::new(Flat(f))).to_node()
}

pub(crate) fn create_vpc(conn: &mut Connection, env: &Env, c: CreateVpc) -> R<Value> {
    let tx = begin(conn)?;
    guards::account(&tx, env.account_id)?;
    let region = env.region_id.unwrap_or_default();
    let count: i64 = tx.query_row(
        "SELECT COUNT(*) FROM vpcs WHERE account_id=?1 AND region_id=?2 AND released=0 AND is_default=0",
        [env.account_id, region],
        |r| r.get(0),
    )?;
    if count >= MAX_VPCS_PER_REGION {
        return Err(Code::QuotaExceededVpc.into());
    }
    if c.dry_run {
        return Err(dry_run_ok());
    }
    let ready = env.now + env.timings.disk_ms as i64;
    let (id, vrouter, table) = insert_vpc(&tx, env, &c, false, ready)?;
    let answer = json!({"VpcId": id, "VRouterId": vrouter, "RouteTableId": table,
                        "ResourceGroupId": c.resource_group_id.unwrap_or_default()});
    idempotency::remember(&tx, env, &answer)?;
    tx.commit()?;
    Ok(answer)
}

pub(super) fn insert_vpc(
    tx: &Connection,
    env: &Env,
    c: &CreateVpc,
    is_default: bool,
    ready_ms: i64,
) -> R<(String, String, String)> {
    let (id, vrouter, table) = (new_id("vpc-"), new_id("vrt-"), new_id("vtb-"));
    tx.execute(
        "INSERT INTO vpcs(id, account_id, region_id, name, description, cidr_block, is_default, vrouter_id,
           route_table_id, resource_group_id, created_ms, ready_ms, tags)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            id,
            env.account_id,
            env.region_id.unwrap_or_default(),
            c.name.clone().unwrap_or_default(),
            c.description.clone().unwrap_or_default(),
            c.cidr_block.to_string(),
            is_default,
            vrouter,
            table,
            c.resource_group_id.clone().unwrap_or_default(),
            env.now,
            ready_ms,
            tags_json(&c.tags)
        ],
    )?;
    Ok((id, vrouter, table))
}

pub(crate) fn describe_vpcs(conn: &Connection, env: &Env, d: DescribeVpcs) -> R<Node> {
    let mut q = Listing::new("vpc", "vpcs", VPC_COLUMNS, env, Scope::Own);
    q.any_of("id", d.vpc_ids.as_deref())
        .eq("name", d.name)
        .eq("is_default", d.is_default)
        .eq("resource_group_id", d.resource_group_id)
        .tags(&d.tags);
    let owner = owner_id(env);
    let page = q.fetch(conn, &d.paging, |r| Ok(VpcItem(vpc_row(conn, env, r)?, owner)))?;
    let mut out = Node::obj();
    page.render(&d.paging, ("Vpcs", "Vpc"), &mut out);
    Ok(out)
}

pub(crate) fn describe_vpc_attribute(conn: &Connection, env: &Env, id: &str, is_default: Option<bool>) -> R<Node> {
    let v = vpc(conn, env, id)?;
    if is_default.is_some_and(|d| d != v.is_default) {
        return Err(Code::InvalidVpcIdNotFound.into());
    }
    let owner = owner_id(env);
    let vswitches = v.vswitch_ids.len() as i64;
    let instances: i64 =
        conn.query_row("SELECT COUNT(*) FROM instances WHERE vpc_id=?1 AND released=0", [&v.id], |r| r.get(0))?;
    Ok(flat(move |o| {
        v.fields(owner, o);
        o.field("ClassicLinkEnabled", &false);
        o.field("Ipv4GatewayId", "");
        o.field("SupportIpv4Gateway", &false);
        empty_list(o, "AssociatedCens", "AssociatedCen");
        empty_list(o, "AssociatedPropagationSources", "AssociatedPropagationSources");
        o.wrapped("CloudResources", "CloudResourceSetType", |o| {
            for (kind, n) in [("VSwitch", vswitches), ("VRouter", 1), ("RouteTable", 1), ("ECS", instances)] {
                o.begin_obj();
                o.field("ResourceType", kind);
                o.field("ResourceCount", &n);
                o.end_obj();
            }
        });
    }))
}

pub(crate) fn modify_vpc_attribute(conn: &mut Connection, env: &Env, m: ModifyVpcAttribute) -> R<Value> {
    let tx = begin(conn)?;
    let v = vpc(&tx, env, &m.vpc_id)?;
    if v.status != "Available" {
        return Err(Code::IncorrectVpcStatus.into());
    }
    if let Some(new) = m.cidr_block {
        // A VPC's block may only grow to a block that still holds every vSwitch.
        let old = Ipv4Cidr::parse(&v.cidr_block).ok_or(Code::InternalError)?;
        let keeps_all = vswitch_blocks(&tx, &v.id)?.iter().all(|(_, c)| new.contains(c));
        if !new.contains(&old) || !keeps_all {
            return Err(Code::InvalidVpcCidrShrink.into());
        }
    }
    tx.execute(
        "UPDATE vpcs SET name=COALESCE(?2, name), description=COALESCE(?3, description),
           cidr_block=COALESCE(?4, cidr_block) WHERE id=?1",
        params![v.id, m.name, m.description, m.cidr_block.map(|c| c.to_string())],
    )?;
    tx.commit()?;
    Ok(json!({}))
}

pub(crate) fn delete_vpc(conn: &mut Connection, env: &Env, id: &str, force: bool, dry_run: bool) -> R<Value> {
    let tx = begin(conn)?;
    let v = vpc(&tx, env, id)?;
    if v.status != "Available" {
        return Err(Code::IncorrectVpcStatus.into());
    }
    let instances: i64 =
        tx.query_row("SELECT COUNT(*) FROM instances WHERE vpc_id=?1 AND released=0", [id], |r| r.get(0))?;
    if instances > 0 {
        return Err(Code::DependencyViolationVpcInstance.into());
    }
    // ForceDelete removes the VPC's (empty) vSwitches with it; otherwise they must go first.
    if !v.vswitch_ids.is_empty() && !force {
        return Err(Code::DependencyViolationVpc.into());
    }
    // The caller's own security groups must go first; the default group the VPC was given
    // goes with it.
    let groups: i64 = tx.query_row(
        "SELECT COUNT(*) FROM security_groups WHERE vpc_id=?1 AND released=0 AND system_default=0",
        [id],
        |r| r.get(0),
    )?;
    if groups > 0 {
        return Err(Code::DependencyViolationSecurityGroup.into());
    }
    // The default group goes with the VPC (refused while another group's rule names it);
    // a DryRun checks that too, and its transaction is dropped.
    let defaults: Vec<String> = tx
        .prepare("SELECT id FROM security_groups WHERE vpc_id=?1 AND released=0 AND system_default=1")?
        .query_map([id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for group in &defaults {
        super::secgroups::release(&tx, group)?;
    }
    if dry_run {
        return Err(dry_run_ok());
    }
    tx.execute("UPDATE vswitches SET released=1 WHERE vpc_id=?1", [id])?;
    tx.execute("UPDATE vpcs SET released=1 WHERE id=?1", [id])?;
    tx.commit()?;
    Ok(json!({}))
}

/// The live vSwitches of a VPC with their blocks.
pub(super) fn vswitch_blocks(conn: &Connection, vpc_id: &str) -> R<Vec<(String, Ipv4Cidr)>> {
    let mut st = conn.prepare_cached("SELECT id, cidr_block FROM vswitches WHERE vpc_id=?1 AND released=0")?;
    let rows: Vec<(String, String)> =
        st.query_map([vpc_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    Ok(rows.into_iter().filter_map(|(id, c)| Ipv4Cidr::parse(&c).map(|c| (id, c))).collect())
}
