//! Security group rules (API reference: AuthorizeSecurityGroup, AuthorizeSecurityGroupEgress,
//! RevokeSecurityGroup, RevokeSecurityGroupEgress, DescribeSecurityGroupAttribute). Rules are
//! catalog rows of their group; a rule naming another group (`SourceGroupId`, `DestGroupId`)
//! keeps that group from being deleted. Snapdisk has no network to filter: rules are kept and
//! shown as ECS keeps and shows them.

use super::secgroups::{Group, group};
use super::{R, begin};
use crate::shapes::TimeText;
use crate::{Env, new_id};
use ecs_api::secgroups::{DescribeSecurityGroupAttribute, Direction, Permission, RuleChange};
use ecs_api::secrules::same_rule;
use ecs_api::{Code, Node};
use rusqlite::{Connection, Row, Transaction, params};
use serde_json::{Value, json};

/// Rules one group may hold, both directions together (API reference AuthorizeSecurityGroup:
/// 100; more is `AuthorizationLimitExceed`).
pub(crate) const MAX_RULES: i64 = 100;

const COLUMNS: &str = "id, direction, ip_protocol, port_range, source_port_range, source_cidr_ip, dest_cidr_ip,
  ipv6_source_cidr_ip, ipv6_dest_cidr_ip, source_group_id, dest_group_id, policy, priority, nic_type, description,
  created_ms";

/// A stored rule: its id, direction, creation time and fields.
struct Rule {
    id: String,
    direction: String,
    created_ms: i64,
    p: Permission,
}

fn rule(r: &Row) -> rusqlite::Result<Rule> {
    Ok(Rule {
        id: r.get(0)?,
        direction: r.get(1)?,
        p: Permission {
            ip_protocol: r.get(2)?,
            port_range: r.get(3)?,
            source_port_range: r.get(4)?,
            source_cidr_ip: r.get(5)?,
            dest_cidr_ip: r.get(6)?,
            ipv6_source_cidr_ip: r.get(7)?,
            ipv6_dest_cidr_ip: r.get(8)?,
            source_group_id: r.get(9)?,
            dest_group_id: r.get(10)?,
            policy: r.get(11)?,
            policy_given: true,
            priority: r.get(12)?,
            nic_type: r.get(13)?,
            description: r.get(14)?,
        },
        created_ms: r.get(15)?,
    })
}

fn rules(conn: &Connection, group_id: &str, direction: Direction) -> R<Vec<Rule>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM security_group_rules WHERE group_id=?1 AND direction=?2 ORDER BY created_ms, rowid"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![group_id, direction.as_str()], rule)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The documented checks of a rule naming another group: it is the caller's in the same
/// region (`InvalidSourceGroupId.NotFound` / `InvalidDestGroupId.NotFound`), in the same VPC
/// when both have one (`…Mismatch`); advanced groups take neither group peers nor a Policy
/// (`InvalidGroupParameter.OperationDenied`).
fn check_peers(tx: &Transaction, env: &Env, g: &Group, p: &Permission) -> R<()> {
    if g.group_type == "enterprise" && (p.policy_given || !p.source_group_id.is_empty() || !p.dest_group_id.is_empty())
    {
        return Err(Code::InvalidGroupParameterOperationDenied.into());
    }
    for (peer, missing, mismatch) in [
        (&p.source_group_id, Code::InvalidSourceGroupIdNotFound, Code::InvalidSourceGroupIdMismatch),
        (&p.dest_group_id, Code::InvalidDestGroupIdNotFound, Code::InvalidDestGroupIdMismatch),
    ] {
        if peer.is_empty() {
            continue;
        }
        let other = group(tx, env, peer, Some(&g.region_id), missing)?;
        if !g.vpc_id.is_empty() && !other.vpc_id.is_empty() && g.vpc_id != other.vpc_id {
            return Err(mismatch.into());
        }
    }
    Ok(())
}

/// AuthorizeSecurityGroup(Egress): every rule or none; a rule the group already has (every
/// field but priority and description equal) is left as it is.
pub(crate) fn authorize(conn: &mut Connection, env: &Env, rc: RuleChange) -> R<Value> {
    let tx = begin(conn)?;
    let g = group(&tx, env, &rc.group_id, None, Code::InvalidSecurityGroupIdNotFound)?;
    let existing = rules(&tx, &g.id, rc.direction)?;
    let mut added: Vec<&Permission> = Vec::new();
    for p in &rc.permissions {
        check_peers(&tx, env, &g, p)?;
        if !existing.iter().any(|r| same_rule(&r.p, p)) {
            added.push(p);
        }
    }
    let held: i64 =
        tx.query_row("SELECT COUNT(*) FROM security_group_rules WHERE group_id=?1", [&g.id], |r| r.get(0))?;
    if held + added.len() as i64 > MAX_RULES {
        return Err(Code::AuthorizationLimitExceed.into());
    }
    for p in added {
        tx.execute(
            "INSERT INTO security_group_rules(id, group_id, direction, ip_protocol, port_range, source_port_range,
               source_cidr_ip, dest_cidr_ip, ipv6_source_cidr_ip, ipv6_dest_cidr_ip, source_group_id, dest_group_id,
               policy, priority, nic_type, description, created_ms)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            params![
                new_id("sgr-"),
                g.id,
                rc.direction.as_str(),
                p.ip_protocol,
                p.port_range,
                p.source_port_range,
                p.source_cidr_ip,
                p.dest_cidr_ip,
                p.ipv6_source_cidr_ip,
                p.ipv6_dest_cidr_ip,
                p.source_group_id,
                p.dest_group_id,
                p.policy,
                p.priority,
                p.nic_type,
                p.description,
                env.now
            ],
        )?;
    }
    tx.commit()?;
    Ok(json!({}))
}

/// RevokeSecurityGroup(Egress): the named rules (`SecurityGroupRuleId.N`, else
/// `InvalidSecurityGroupRuleId.NotFound`) or the rules equal to those given (else
/// `InvalidGroupAuthItem.NotFound`); all or none.
pub(crate) fn revoke(conn: &mut Connection, env: &Env, rc: RuleChange) -> R<Value> {
    let tx = begin(conn)?;
    let g = group(&tx, env, &rc.group_id, None, Code::InvalidSecurityGroupIdNotFound)?;
    let existing = rules(&tx, &g.id, rc.direction)?;
    let mut gone: Vec<&str> = Vec::new();
    for id in &rc.rule_ids {
        let r = existing.iter().find(|r| r.id == *id).ok_or(Code::InvalidSecurityGroupRuleIdNotFound)?;
        gone.push(&r.id);
    }
    for p in &rc.permissions {
        let r = existing.iter().find(|r| same_rule(&r.p, p)).ok_or(Code::InvalidGroupAuthItemNotFound)?;
        gone.push(&r.id);
    }
    for id in gone {
        tx.execute("DELETE FROM security_group_rules WHERE id=?1", [id])?;
    }
    tx.commit()?;
    Ok(json!({}))
}

/// The name of each group a rule names, for SourceGroupName and DestGroupName.
fn group_name(conn: &Connection, id: &str) -> R<String> {
    if id.is_empty() {
        return Ok(String::new());
    }
    use rusqlite::OptionalExtension;
    let name: Option<String> =
        conn.query_row("SELECT name FROM security_groups WHERE id=?1", [id], |r| r.get(0)).optional()?;
    Ok(name.unwrap_or_default())
}

/// A rule as DescribeSecurityGroupAttribute shows it (Policy `Accept`/`Drop`, Priority a
/// string, as the reference's example and the SDK models have them).
fn shown(conn: &Connection, r: &Rule) -> R<Value> {
    let p = &r.p;
    let policy = if p.policy == "drop" { "Drop" } else { "Accept" };
    Ok(json!({
        "SecurityGroupRuleId": r.id,
        "Direction": r.direction,
        "IpProtocol": p.ip_protocol,
        "PortRange": p.port_range,
        "SourcePortRange": p.source_port_range,
        "SourceCidrIp": p.source_cidr_ip,
        "DestCidrIp": p.dest_cidr_ip,
        "Ipv6SourceCidrIp": p.ipv6_source_cidr_ip,
        "Ipv6DestCidrIp": p.ipv6_dest_cidr_ip,
        "SourceGroupId": p.source_group_id,
        "SourceGroupName": group_name(conn, &p.source_group_id)?,
        "SourceGroupOwnerAccount": "",
        "DestGroupId": p.dest_group_id,
        "DestGroupName": group_name(conn, &p.dest_group_id)?,
        "DestGroupOwnerAccount": "",
        "SourcePrefixListId": "",
        "SourcePrefixListName": "",
        "DestPrefixListId": "",
        "DestPrefixListName": "",
        "PortRangeListId": "",
        "PortRangeListName": "",
        "Policy": policy,
        "Priority": p.priority.to_string(),
        "NicType": p.nic_type,
        "Description": p.description,
        "CreateTime": TimeText::secs(r.created_ms).as_str(),
    }))
}

/// DescribeSecurityGroupAttribute: the group and its rules (ingress, then egress, oldest
/// first), filtered by Direction and NicType, MaxResults a page; NextToken is where the next
/// page starts ("" after the last).
pub(crate) fn attribute(conn: &Connection, env: &Env, d: DescribeSecurityGroupAttribute) -> R<Node> {
    let mut out = super::secgroups::attribute_head(conn, env, &d.group_id)?;
    let directions: &[Direction] = match d.direction {
        Some(Direction::Ingress) => &[Direction::Ingress],
        Some(Direction::Egress) => &[Direction::Egress],
        None => &[Direction::Ingress, Direction::Egress],
    };
    let mut all = Vec::new();
    for dir in directions {
        all.extend(
            rules(conn, &d.group_id, *dir)?
                .into_iter()
                .filter(|r| d.nic_type.as_ref().is_none_or(|n| *n == r.p.nic_type)),
        );
    }
    let start = (d.offset as usize).min(all.len());
    let end = start.saturating_add(d.max_results as usize).min(all.len());
    let page = all[start..end].iter().map(|r| shown(conn, r)).collect::<R<Vec<_>>>()?;
    let next = if end < all.len() { end.to_string() } else { String::new() };
    out.push("Permissions", Node::from(json!({"Permission": page})));
    out.push("NextToken", next);
    Ok(out)
}
