//! Security groups (API reference: CreateSecurityGroup, DescribeSecurityGroups,
//! ModifySecurityGroupAttribute, DeleteSecurityGroup, JoinSecurityGroup, LeaveSecurityGroup)
//! and the groups of new instances (RunInstances, CreateInstance: `SecurityGroupId`,
//! `SecurityGroupIds.N`). Rules are in [`super::secrules`]. A group belongs to one account in
//! one region; its `VpcId` is stored as given. An instance is always in 1 to
//! [`MAX_GROUPS_PER_INSTANCE`] groups: one made without a group joins the account's default
//! group of the region, made on first need.
//!
//! Membership is kept twice in one transaction by [`set_members`]: the instance's ordered
//! `security_groups` list (what DescribeInstances shows) and `instance_security_groups` (what
//! the counts and the dependency checks read through an index).

use super::listing::{Listing, Scope};
use super::{R, begin, idempotency};
use crate::model::tags_json;
use crate::shapes::TimeText;
use crate::{Env, guards, new_id};
use ecs_api::Code;
use ecs_api::Node;
use ecs_api::secgroups::{CreateSecurityGroup, DescribeSecurityGroups, Membership};
use ecs_api::write::{Emit, Out};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::{Value, json};

/// Groups one account may hold in one region (API reference CreateSecurityGroup: 100;
/// more is `QuotaExceed.SecurityGroup`).
pub(crate) const MAX_PER_REGION: i64 = 100;
/// Groups one instance may be in (API reference JoinSecurityGroup: 5;
/// `InstanceSecurityGroupLimitExceeded`).
pub(crate) const MAX_GROUPS_PER_INSTANCE: usize = 5;
/// Instances one group may hold (API reference JoinSecurityGroup: 1000;
/// `SecurityGroupInstanceLimitExceeded`).
pub(crate) const MAX_INSTANCES_PER_GROUP: i64 = 1000;

/// One live group of the caller's.
pub(crate) struct Group {
    pub id: String,
    pub region_id: String,
    pub vpc_id: String,
    pub group_type: String,
}

/// The caller's live group `id`, in `region` (or in the request's region, or any when the
/// request names none), else `missing`.
pub(crate) fn group(conn: &Connection, env: &Env, id: &str, region: Option<&str>, missing: Code) -> R<Group> {
    let g = conn
        .query_row(
            "SELECT id, region_id, vpc_id, group_type FROM security_groups WHERE id=?1 AND account_id=?2 AND released=0",
            params![id, env.account_id],
            |r| Ok(Group { id: r.get(0)?, region_id: r.get(1)?, vpc_id: r.get(2)?, group_type: r.get(3)? }),
        )
        .optional()?;
    let want = region.or(env.region_id);
    g.filter(|g| want.is_none_or(|w| w == g.region_id)).ok_or_else(|| missing.into())
}

/// Live instances in group `id`.
fn members(conn: &Connection, id: &str) -> R<i64> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM instance_security_groups m JOIN instances i ON i.id = m.instance_id
         WHERE m.group_id = ?1 AND i.released = 0",
        [id],
        |r| r.get(0),
    )?)
}

fn insert(tx: &Transaction, env: &Env, region: &str, c: &CreateSecurityGroup, system_default: bool) -> R<String> {
    let id = new_id("sg-");
    tx.execute(
        "INSERT INTO security_groups(id, account_id, region_id, name, description, vpc_id, group_type, created_ms,
           tags, system_default, resource_group_id) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            id,
            env.account_id,
            region,
            c.name.clone().unwrap_or_default(),
            c.description.clone().unwrap_or_default(),
            c.vpc_id.clone().unwrap_or_default(),
            c.group_type,
            env.now,
            tags_json(&c.tags),
            system_default,
            c.resource_group_id.clone().unwrap_or_default()
        ],
    )?;
    Ok(id)
}

/// CreateSecurityGroup: a group without rules (`ClientToken` honoured).
pub(crate) fn create(conn: &mut Connection, env: &Env, c: CreateSecurityGroup) -> R<Value> {
    let tx = begin(conn)?;
    let region = env.region_id.unwrap_or_default();
    let held: i64 = tx.query_row(
        "SELECT COUNT(*) FROM security_groups WHERE account_id=?1 AND region_id=?2 AND released=0 AND system_default=0",
        params![env.account_id, region],
        |r| r.get(0),
    )?;
    if held >= MAX_PER_REGION {
        return Err(Code::QuotaExceedSecurityGroup.into());
    }
    // A VpcId names one of the caller's VPCs in the region (InvalidVpcId.NotFound).
    if let Some(vpc) = &c.vpc_id {
        super::vpc::check_vpc(&tx, env, vpc)?;
    }
    let id = insert(&tx, env, region, &c, false)?;
    let response = json!({"SecurityGroupId": id});
    idempotency::remember(&tx, env, &response)?;
    tx.commit()?;
    Ok(response)
}

/// One group as DescribeSecurityGroups shows it.
struct GroupView {
    id: String,
    name: String,
    description: String,
    vpc_id: String,
    group_type: String,
    tags: String,
    ecs_count: i64,
    rule_count: i64,
    group_rule_count: i64,
    resource_group_id: String,
    created_ms: i64,
}

impl Emit for GroupView {
    fn emit(&self, o: &mut dyn Out) {
        o.begin_obj();
        o.field("SecurityGroupId", &self.id);
        o.field("SecurityGroupName", &self.name);
        o.field("Description", &self.description);
        o.field("SecurityGroupType", &self.group_type);
        o.field("VpcId", &self.vpc_id);
        o.field("CreationTime", TimeText::secs(self.created_ms).as_str());
        o.field("EcsCount", &self.ecs_count);
        o.field("AvailableInstanceAmount", &(MAX_INSTANCES_PER_GROUP - self.ecs_count).max(0));
        o.field("RuleCount", &self.rule_count);
        o.field("GroupToGroupRuleCount", &self.group_rule_count);
        o.field("ResourceGroupId", &self.resource_group_id);
        o.field("ServiceManaged", &false);
        crate::shapes::tags(o, &self.tags);
        o.end_obj();
    }
}

/// DescribeSecurityGroups: the caller's groups in the region, oldest first, filtered in SQL
/// and read a page at a time.
pub(crate) fn describe(conn: &Connection, env: &Env, d: DescribeSecurityGroups) -> R<Node> {
    let mut q = Listing::new(
        "security_group",
        "security_groups_now",
        "id, name, description, vpc_id, group_type, tags, ecs_count, rule_count, group_rule_count, resource_group_id",
        env,
        Scope::Own,
    );
    q.any_of("id", d.group_ids.as_deref())
        .eq("vpc_id", d.vpc_id)
        .eq("group_type", d.group_type)
        .eq("resource_group_id", d.resource_group_id)
        .tags(&d.tags);
    match (d.name, d.fuzzy) {
        (Some(n), true) => {
            q.clause("instr(name, ?) > 0", [SqlValue::Text(n)]);
        }
        (n, _) => {
            q.eq("name", n);
        }
    }
    match d.network_type.as_deref() {
        Some("vpc") => {
            q.clause("vpc_id != ''", []);
        }
        Some(_) => {
            q.clause("vpc_id = ''", []);
        }
        None => {}
    }
    let page = q.fetch(conn, &d.paging, |r| {
        Ok(GroupView {
            id: r.get(0)?,
            name: r.get(1)?,
            description: r.get(2)?,
            vpc_id: r.get(3)?,
            group_type: r.get(4)?,
            tags: r.get(5)?,
            ecs_count: r.get(6)?,
            rule_count: r.get(7)?,
            group_rule_count: r.get(8)?,
            resource_group_id: r.get(9)?,
            created_ms: r.get(10)?,
        })
    })?;
    let mut out = Node::obj();
    out.push("RegionId", env.region_id.unwrap_or_default().to_string());
    page.render(&d.paging, ("SecurityGroups", "SecurityGroup"), &mut out);
    Ok(out)
}

/// ModifySecurityGroupAttribute: the name and the description; what is not given stays.
pub(crate) fn modify(
    conn: &mut Connection,
    env: &Env,
    id: &str,
    name: Option<String>,
    description: Option<String>,
) -> R<Value> {
    let tx = begin(conn)?;
    group(&tx, env, id, None, Code::InvalidSecurityGroupIdNotFound)?;
    tx.execute(
        "UPDATE security_groups SET name=COALESCE(?2, name), description=COALESCE(?3, description) WHERE id=?1",
        params![id, name, description],
    )?;
    tx.commit()?;
    Ok(json!({}))
}

/// DeleteSecurityGroup: refused while a live instance is in the group or another group's
/// rule names it (the two documented `DependencyViolation` rows); its rules go with it.
pub(crate) fn delete(conn: &mut Connection, env: &Env, id: &str) -> R<Value> {
    let tx = begin(conn)?;
    group(&tx, env, id, None, Code::InvalidSecurityGroupIdNotFound)?;
    if members(&tx, id)? > 0 {
        return Err(Code::DependencyViolationInstances.into());
    }
    release(&tx, id)?;
    tx.commit()?;
    Ok(json!({}))
}

/// Release group `id` with its rules and memberships, unless a rule of another live group
/// names it (`DependencyViolation`, "authorized in another one"). Shared by DeleteSecurityGroup
/// and DeleteVpc, which takes the VPC's default group with it.
pub(crate) fn release(tx: &Connection, id: &str) -> R<()> {
    let referenced = tx
        .query_row(
            "SELECT 1 FROM security_group_rules r JOIN security_groups g ON g.id = r.group_id
             WHERE (r.source_group_id=?1 OR r.dest_group_id=?1) AND r.group_id != ?1 AND g.released = 0 LIMIT 1",
            [id],
            |_| Ok(()),
        )
        .optional()?;
    if referenced.is_some() {
        return Err(Code::DependencyViolationReferenced.into());
    }
    tx.execute("UPDATE security_groups SET released=1 WHERE id=?1", [id])?;
    tx.execute("DELETE FROM security_group_rules WHERE group_id=?1", [id])?;
    tx.execute("DELETE FROM instance_security_groups WHERE group_id=?1", [id])?;
    Ok(())
}

/// Put `instance` in exactly `groups` (in this order): its shown list and the membership rows.
pub(crate) fn set_members(tx: &Transaction, instance: &str, groups: &[String]) -> R<()> {
    let list = serde_json::to_string(groups).unwrap_or_else(|_| "[]".into());
    tx.execute("UPDATE instances SET security_groups=?2 WHERE id=?1", params![instance, list])?;
    tx.execute("DELETE FROM instance_security_groups WHERE instance_id=?1", [instance])?;
    for g in groups {
        tx.execute(
            "INSERT OR IGNORE INTO instance_security_groups(instance_id, group_id) VALUES(?1, ?2)",
            [instance, g],
        )?;
    }
    Ok(())
}

/// The groups `amount` new instances in `region` and VPC `vpc` join: those named (each the
/// caller's, in the region and of that VPC or of none; at most [`MAX_GROUPS_PER_INSTANCE`];
/// room for the instances), or, when none is named, the account's default group of that VPC,
/// made now if it does not exist yet.
pub(crate) fn for_new_instances(
    tx: &Transaction,
    env: &Env,
    named: &[String],
    region: &str,
    vpc: &str,
    amount: u32,
) -> R<Vec<String>> {
    let mut ids: Vec<String> = Vec::with_capacity(named.len());
    for id in named {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    if ids.len() > MAX_GROUPS_PER_INSTANCE {
        return Err(Code::InstanceSecurityGroupLimitExceeded.into());
    }
    for id in &ids {
        let g = group(tx, env, id, Some(region), Code::InvalidSecurityGroupIdNotFound)?;
        if !g.vpc_id.is_empty() && g.vpc_id != vpc {
            return Err(Code::InvalidSecurityGroupIdVpcMismatch.into());
        }
        if members(tx, id)? + i64::from(amount) > MAX_INSTANCES_PER_GROUP {
            return Err(Code::SecurityGroupInstanceLimitExceeded.into());
        }
    }
    if ids.is_empty() {
        let existing: Option<String> = tx
            .query_row(
                "SELECT id FROM security_groups
                 WHERE account_id=?1 AND region_id=?2 AND vpc_id=?3 AND system_default=1 AND released=0",
                params![env.account_id, region, vpc],
                |r| r.get(0),
            )
            .optional()?;
        let id = match existing {
            Some(id) => id,
            None => {
                let c = CreateSecurityGroup {
                    name: Some("default".into()),
                    description: Some("System created security group.".into()),
                    vpc_id: Some(vpc.to_string()),
                    resource_group_id: None,
                    group_type: "normal".into(),
                    tags: Vec::new(),
                };
                insert(tx, env, region, &c, true)?
            }
        };
        ids.push(id);
    }
    Ok(ids)
}

/// The instance Join and Leave act on, with its groups: the caller's, not locked for security
/// (`InstanceLockedForSecurity`), `Running` or `Stopped` (`IncorrectInstanceStatus`).
fn member_instance(tx: &Transaction, env: &Env, m: &Membership) -> R<(crate::model::Instance, Vec<String>)> {
    let inst = guards::instance(tx, env, &m.instance_id)?;
    if inst.lock_reason.as_deref() == Some("security") {
        return Err(Code::InstanceLockedForSecurityReasons.into());
    }
    if inst.status != "Running" && inst.status != "Stopped" {
        return Err(Code::IncorrectInstanceStatus.into());
    }
    let groups: Vec<String> = serde_json::from_str(&inst.security_groups).unwrap_or_default();
    Ok((inst, groups))
}

/// JoinSecurityGroup: the instance joins one more group of its region.
pub(crate) fn join(conn: &mut Connection, env: &Env, m: Membership) -> R<Value> {
    let tx = begin(conn)?;
    let (inst, mut groups) = member_instance(&tx, env, &m)?;
    let g = group(&tx, env, &m.group_id, Some(&inst.region_id), Code::InvalidSecurityGroupIdNotFound)?;
    if !g.vpc_id.is_empty() && !inst.vpc_id.is_empty() && g.vpc_id != inst.vpc_id {
        return Err(Code::InvalidInstanceIdMismatch.into());
    }
    if groups.contains(&m.group_id) {
        return Err(Code::InvalidInstanceIdAlreadyExists.into());
    }
    if groups.len() >= MAX_GROUPS_PER_INSTANCE {
        return Err(Code::InstanceSecurityGroupLimitExceeded.into());
    }
    if members(&tx, &m.group_id)? >= MAX_INSTANCES_PER_GROUP {
        return Err(Code::SecurityGroupInstanceLimitExceeded.into());
    }
    groups.push(m.group_id);
    set_members(&tx, &inst.id, &groups)?;
    tx.commit()?;
    Ok(json!({}))
}

/// LeaveSecurityGroup: the instance leaves one of its groups, never its last.
pub(crate) fn leave(conn: &mut Connection, env: &Env, m: Membership) -> R<Value> {
    let tx = begin(conn)?;
    let (inst, mut groups) = member_instance(&tx, env, &m)?;
    group(&tx, env, &m.group_id, Some(&inst.region_id), Code::InvalidSecurityGroupIdNotFound)?;
    if !groups.contains(&m.group_id) {
        return Err(Code::InstanceNotInSecurityGroup.into());
    }
    if groups.len() == 1 {
        return Err(Code::InstanceLastSecurityGroup.into());
    }
    groups.retain(|g| *g != m.group_id);
    set_members(&tx, &inst.id, &groups)?;
    tx.commit()?;
    Ok(json!({}))
}

/// What DescribeSecurityGroupAttribute shows of the group itself.
pub(crate) fn attribute_head(conn: &Connection, env: &Env, id: &str) -> R<Node> {
    let row = conn
        .query_row(
            "SELECT region_id, name, description, vpc_id, group_type FROM security_groups
             WHERE id=?1 AND account_id=?2 AND released=0",
            params![id, env.account_id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            },
        )
        .optional()?
        .filter(|(region, ..)| env.region_id.is_none_or(|w| w == region));
    let (region, name, description, vpc, group_type) = row.ok_or(Code::InvalidSecurityGroupIdNotFound)?;
    // Basic groups let their members reach each other; advanced ones isolate them.
    let inner = if group_type == "enterprise" { "Drop" } else { "Accept" };
    Ok(ecs_api::obj! {
        "SecurityGroupId" => id.to_string(),
        "SecurityGroupName" => name,
        "Description" => description,
        "VpcId" => vpc,
        "RegionId" => region,
        "InnerAccessPolicy" => inner,
    })
}
