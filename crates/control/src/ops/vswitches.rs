//! vSwitches of the network family (VPC API CreateVSwitch, DescribeVSwitches,
//! DescribeVSwitchAttributes, ModifyVSwitchAttribute, DeleteVSwitch, and their ECS-endpoint
//! forms); the rules are in `vpc`'s module documentation.

use super::idempotency;
use super::listing::{Listing, Scope};
use super::vpc::{MAX_VSWITCHES_PER_VPC, Vpc, emit_tags, flat, owner_id, status, vpc, vswitch_blocks};
use super::{R, begin};
use crate::model::tags_json;
use crate::shapes::TimeText;
use crate::{Env, guards, new_id};
use ecs_api::vpc::{CreateVSwitch, DescribeVSwitches, Ipv4Cidr};
use ecs_api::write::{Emit, Out};
use ecs_api::{Code, Node};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

pub(crate) fn create_vswitch(conn: &mut Connection, env: &Env, c: CreateVSwitch) -> R<Value> {
    let tx = begin(conn)?;
    guards::account(&tx, env.account_id)?;
    let v = vpc(&tx, env, &c.vpc_id)?;
    if env.config.zone(&v.region_id, &c.zone_id).is_none() {
        return Err(Code::InvalidZoneIdNotFound.into());
    }
    if v.status != "Available" {
        return Err(Code::IncorrectVpcStatus.into());
    }
    let block = Ipv4Cidr::parse(&v.cidr_block).ok_or(Code::InternalError)?;
    if !block.contains(&c.cidr_block) {
        return Err(Code::InvalidVSwitchCidrNotInVpc.into());
    }
    let others = vswitch_blocks(&tx, &v.id)?;
    if others.len() as i64 >= MAX_VSWITCHES_PER_VPC {
        return Err(Code::QuotaExceededVSwitch.into());
    }
    if others.iter().any(|(_, o)| o.overlaps(&c.cidr_block)) {
        return Err(Code::InvalidCidrBlockOverlapped.into());
    }
    let id = insert_vswitch(&tx, env, &v, &c, false, env.now + env.timings.disk_ms as i64)?;
    let answer = json!({"VSwitchId": id});
    idempotency::remember(&tx, env, &answer)?;
    tx.commit()?;
    Ok(answer)
}

pub(super) fn insert_vswitch(
    tx: &Connection,
    env: &Env,
    v: &Vpc,
    c: &CreateVSwitch,
    is_default: bool,
    ready: i64,
) -> R<String> {
    let id = new_id("vsw-");
    tx.execute(
        "INSERT INTO vswitches(id, account_id, region_id, vpc_id, zone_id, name, description, cidr_block,
           is_default, created_ms, ready_ms, tags) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            id,
            env.account_id,
            v.region_id,
            v.id,
            c.zone_id,
            c.name.clone().unwrap_or_default(),
            c.description.clone().unwrap_or_default(),
            c.cidr_block.to_string(),
            is_default,
            env.now,
            ready,
            tags_json(&c.tags)
        ],
    )?;
    Ok(id)
}

/// One vSwitch row, with its VPC's route table and the addresses it has left.
pub(super) struct VSwitch {
    pub(super) id: String,
    pub(super) vpc_id: String,
    pub(super) zone_id: String,
    pub(super) name: String,
    pub(super) description: String,
    pub(super) cidr_block: String,
    pub(super) is_default: bool,
    pub(super) created_ms: i64,
    pub(super) status: &'static str,
    pub(super) tags: String,
    pub(super) route_table_id: String,
    pub(super) available_ips: i64,
    pub(super) owner: i64,
}

const VSWITCH_COLUMNS: &str =
    "id, vpc_id, zone_id, name, description, cidr_block, is_default, created_ms, ready_ms, tags, region_id";

fn vswitch_row(conn: &Connection, env: &Env, r: &rusqlite::Row) -> rusqlite::Result<VSwitch> {
    let id: String = r.get(0)?;
    let vpc_id: String = r.get(1)?;
    let cidr_block: String = r.get(5)?;
    let used: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM instances WHERE vswitch_id=?1 AND released=0")?
        .query_row([&id], |r| r.get(0))?;
    let total = Ipv4Cidr::parse(&cidr_block).map(|c| c.usable().count() as i64).unwrap_or(0);
    let route_table_id: String = conn
        .prepare_cached("SELECT route_table_id FROM vpcs WHERE id=?1")?
        .query_row([&vpc_id], |r| r.get(0))
        .optional()?
        .unwrap_or_default();
    Ok(VSwitch {
        id,
        vpc_id,
        zone_id: r.get(2)?,
        name: r.get(3)?,
        description: r.get(4)?,
        cidr_block,
        is_default: r.get(6)?,
        created_ms: r.get(7)?,
        status: status(env, r.get(8)?),
        tags: r.get(9)?,
        route_table_id,
        available_ips: (total - used).max(0),
        owner: owner_id(env),
    })
}

impl VSwitch {
    fn fields(&self, o: &mut dyn Out) {
        o.field("VSwitchId", &self.id);
        o.field("VpcId", &self.vpc_id);
        o.field("Status", self.status);
        o.field("CidrBlock", &self.cidr_block);
        o.field("ZoneId", &self.zone_id);
        o.field("AvailableIpAddressCount", &self.available_ips);
        o.field("Description", &self.description);
        o.field("VSwitchName", &self.name);
        o.field("CreationTime", TimeText::secs(self.created_ms).as_str());
        o.field("IsDefault", &self.is_default);
        o.field("ResourceGroupId", "");
        o.field("NetworkAclId", "");
        o.field("OwnerId", &self.owner);
        o.field("ShareType", "");
        o.field("Ipv6CidrBlock", "");
        o.field("EnabledIpv6", &false);
        o.name("RouteTable");
        o.begin_obj();
        o.field("RouteTableId", &self.route_table_id);
        o.field("RouteTableType", "System");
        o.end_obj();
        emit_tags(o, &self.tags);
    }
}

impl Emit for VSwitch {
    fn emit(&self, o: &mut dyn Out) {
        o.begin_obj();
        self.fields(o);
        o.end_obj();
    }
}

pub(super) fn vswitch(conn: &Connection, env: &Env, id: &str) -> R<VSwitch> {
    let sql = format!("SELECT {VSWITCH_COLUMNS} FROM vswitches WHERE id=?1 AND account_id=?2 AND released=0");
    conn.query_row(&sql, [id, env.account_id], |r| Ok((vswitch_row(conn, env, r)?, r.get::<_, String>(10)?)))
        .optional()?
        .filter(|(_, region)| env.region_id.is_none_or(|r| r == region))
        .map(|(v, _)| v)
        .ok_or_else(|| Code::InvalidVSwitchIdNotFound.into())
}

pub(crate) fn describe_vswitches(conn: &Connection, env: &Env, d: DescribeVSwitches) -> R<Node> {
    let mut q = Listing::new("vswitch", "vswitches", VSWITCH_COLUMNS, env, Scope::Own);
    if env.region_id.is_none() {
        // Named by VpcId alone (the parser requires one of the two): that VPC's region.
        let vpc_id = d.vpc_id.as_deref().ok_or_else(|| ecs_api::ApiError::missing("RegionId"))?;
        let region = vpc(conn, env, vpc_id)?.region_id;
        q.in_region(&region);
    }
    q.eq("vpc_id", d.vpc_id)
        .eq("id", d.vswitch_id)
        .eq("zone_id", d.zone_id)
        .eq("name", d.name)
        .eq("is_default", d.is_default)
        .tags(&d.tags);
    if d.resource_group_id.is_some_and(|g| !g.is_empty()) {
        // vSwitches carry no resource group here: a group filter matches none.
        q.clause("0", []);
    }
    let page = q.fetch(conn, &d.paging, |r| vswitch_row(conn, env, r))?;
    let mut out = Node::obj();
    page.render(&d.paging, ("VSwitches", "VSwitch"), &mut out);
    Ok(out)
}

pub(crate) fn describe_vswitch_attributes(conn: &Connection, env: &Env, id: &str) -> R<Node> {
    let v = vswitch(conn, env, id)?;
    Ok(flat(move |o| v.fields(o)))
}

pub(crate) fn modify_vswitch_attribute(
    conn: &mut Connection,
    env: &Env,
    id: &str,
    name: Option<String>,
    description: Option<String>,
) -> R<Value> {
    let tx = begin(conn)?;
    let v = vswitch(&tx, env, id)?;
    if v.status != "Available" {
        return Err(Code::IncorrectVSwitchStatus.into());
    }
    tx.execute(
        "UPDATE vswitches SET name=COALESCE(?2, name), description=COALESCE(?3, description) WHERE id=?1",
        params![id, name, description],
    )?;
    tx.commit()?;
    Ok(json!({}))
}

pub(crate) fn delete_vswitch(conn: &mut Connection, env: &Env, id: &str) -> R<Value> {
    let tx = begin(conn)?;
    let v = vswitch(&tx, env, id)?;
    if v.status != "Available" {
        return Err(Code::IncorrectVSwitchStatus.into());
    }
    let used: i64 =
        tx.query_row("SELECT COUNT(*) FROM instances WHERE vswitch_id=?1 AND released=0", [id], |r| r.get(0))?;
    if used > 0 {
        return Err(Code::DependencyViolationVSwitch.into());
    }
    tx.execute("UPDATE vswitches SET released=1 WHERE id=?1", [id])?;
    tx.commit()?;
    Ok(json!({}))
}
