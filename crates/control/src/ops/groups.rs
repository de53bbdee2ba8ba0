//! Snapshot groups and ResetDisks (issue 9).
//!
//! CreateSnapshotGroup freezes up to 16 ESSD disks (of one instance, or named by DiskId.N in
//! one zone) at one point in time: the store
//! locks every member's head before it freezes any (`Volumes::snapshot_group`), so no write
//! acknowledged after the group's point is in any member, and one log record keeps a crash
//! from leaving part of a group. Each member is an ordinary snapshot (`group_id` set) that is
//! `progressing` for `SnapshotMs`, like CreateSnapshot's; the group's status is derived from
//! its members (failed if any failed, else progressing while any is, else accomplished).
//! DeleteSnapshotGroup deletes the group and its snapshots but those custom images were made
//! from. ResetDisks runs every ResetDisk
//! check on every pair first, then resets all of them in one transaction (all or nothing for
//! every check), O(1) per disk; a store failure on one disk leaves that disk as it was.

use super::listing::{Listing, Scope};
use super::storage::{self, Intent};
use super::{Fail, R, begin, dry_run_ok, idempotency, reset};
use crate::fairness::{self, Quota};
use crate::model::tags_json;
use crate::shapes::TimeText;
use crate::{Env, guards, new_id, transitions};
use ecs_api::groups::{CreateSnapshotGroup, DescribeSnapshotGroups, MAX_GROUP_DISKS, ResetDisks};
use ecs_api::params::Paging;
use ecs_api::write::{Emit, Out};
use ecs_api::{ApiError, Code, Node};
use rusqlite::{Connection, params};
use serde_json::{Value, json};

pub(crate) fn create_snapshot_group(conn: &mut Connection, env: &Env, c: CreateSnapshotGroup) -> R<Value> {
    let tx = begin(conn)?;
    let acct = guards::account(&tx, env.account_id)?;
    guards::snapshot_service(&acct)?;
    guards::balance(&acct)?;
    let (instance_id, region_id, members) = match &c.instance_id {
        Some(id) => {
            let inst = guards::instance(&tx, env, id)?;
            guards::instance_usable(&inst, &acct, env.now)?;
            if inst.status != "Running" && inst.status != "Stopped" {
                return Err(Code::IncorrectInstanceStatus.into());
            }
            let on_instance = guards::instance_disks(&tx, &inst.id)?;
            for id in c.disk_ids.iter().chain(&c.exclude_disk_ids) {
                if !on_instance.iter().any(|d| d.id == *id) {
                    return Err(Code::InvalidDiskIdNotFound.into());
                }
            }
            let members: Vec<_> = on_instance
                .into_iter()
                .filter(|d| !d.is_local())
                .filter(|d| c.disk_ids.is_empty() || c.disk_ids.contains(&d.id))
                .filter(|d| !c.exclude_disk_ids.contains(&d.id))
                .collect();
            (inst.id, inst.region_id, members)
        }
        // DiskId.N alone: disks of one zone, on any instances (or none).
        None => {
            let mut members = Vec::new();
            for id in &c.disk_ids {
                let d = guards::disk(&tx, env, id)?;
                if let Some(i) = &d.instance_id {
                    let inst = guards::instance(&tx, env, i)?;
                    guards::instance_usable(&inst, &acct, env.now)?;
                    if inst.status != "Running" && inst.status != "Stopped" {
                        return Err(Code::IncorrectInstanceStatus.into());
                    }
                }
                members.push(d);
            }
            if members.windows(2).any(|w| w[0].zone_id != w[1].zone_id) {
                return Err(ApiError::invalid("DiskId").into());
            }
            let region = members.first().map(|d| d.region_id.clone()).unwrap_or_default();
            (String::new(), region, members)
        }
    };
    if members.is_empty() || members.len() > MAX_GROUP_DISKS {
        return Err(ApiError::invalid("DiskId").into());
    }
    // Documented: ESSD disks only, at most 32 TiB together.
    if members.iter().any(|d| d.category != "cloud_essd") {
        return Err(Code::DiskCategoryOperationNotSupported.into());
    }
    if members.iter().map(|d| d.size_gib).sum::<i64>() > 32 * 1024 {
        return Err(ApiError::invalid("DiskId").into());
    }
    for d in &members {
        if d.status != "In_use" && d.status != "Available" {
            return Err(Code::IncorrectDiskStatus.into());
        }
        super::snapshots::room_for_snapshot(&tx, &d.id)?;
    }
    fairness::quota(&tx, env.account_id, &env.config.limits, Quota::Snapshots, members.len() as i64)?;
    let group = new_id("ssg-");
    tx.execute(
        "INSERT INTO snapshot_groups(id, account_id, region_id, instance_id, name, description, created_ms, tags)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            group,
            env.account_id,
            region_id,
            instance_id,
            c.name.clone().unwrap_or_default(),
            c.description.clone().unwrap_or_default(),
            env.now,
            tags_json(&c.tags)
        ],
    )?;
    let due = env.now + env.timings.snapshot_ms as i64;
    let mut pairs = Vec::new();
    for d in &members {
        let id = new_id("s-");
        tx.execute(
            "INSERT INTO snapshots(id, account_id, region_id, disk_id, disk_size_gib, disk_type, disk_category, name,
               description, status, created_ms, due_ms, encrypted, kms_key_id, tags, group_id)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'progressing', ?10, ?11, ?12, ?13, '[]', ?14)",
            params![
                id,
                env.account_id,
                d.region_id,
                d.id,
                d.size_gib,
                d.disk_type,
                d.category,
                c.name.clone().unwrap_or_default(),
                c.description.clone().unwrap_or_default(),
                env.now,
                due,
                d.encrypted,
                d.kms_key_id,
                group
            ],
        )?;
        transitions::schedule(&tx, "snapshot", &id, due)?;
        pairs.push((d.id.clone(), id));
    }
    let intent = Intent::SnapshotGroup { members: pairs };
    let iid = storage::record(&tx, &intent)?;
    let response = json!({"SnapshotGroupId": group});
    idempotency::remember(&tx, env, &response)?;
    tx.commit()?;
    // As with CreateSnapshot: a store failure leaves the accepted group's snapshots `failed`.
    storage::run(conn, env.volumes, &[(iid, intent)])?;
    Ok(response)
}

/// One group as DescribeSnapshotGroups shows it, with its member snapshots.
struct GroupView {
    id: String,
    name: String,
    description: String,
    instance_id: String,
    created_ms: i64,
    tags: String,
    status: String,
    members: Vec<(String, String, String, String)>,
}

impl Emit for GroupView {
    fn emit(&self, o: &mut dyn Out) {
        o.begin_obj();
        o.field("SnapshotGroupId", &self.id);
        o.field("Name", &self.name);
        o.field("Description", &self.description);
        o.field("InstanceId", &self.instance_id);
        o.field("Status", &self.status);
        o.field("ProgressStatus", "");
        o.field("CreationTime", TimeText::secs(self.created_ms).as_str());
        o.field("ResourceGroupId", "");
        crate::shapes::tags(o, &self.tags);
        o.wrapped("Snapshots", "Snapshot", |o| {
            for (id, disk, disk_type, status) in &self.members {
                o.begin_obj();
                o.field("SnapshotId", id);
                o.field("SourceDiskId", disk);
                o.field("SourceDiskType", disk_type.as_str());
                o.field("Progress", if status == "accomplished" { "100%" } else { "0%" });
                o.field("Available", &(status == "accomplished"));
                o.field("InstantAccess", &true);
                o.field("InstantAccessRetentionDays", &0i64);
                o.wrapped("Tags", "Tag", |_| {});
                o.end_obj();
            }
        });
        o.end_obj();
    }
}

pub(crate) fn describe_snapshot_groups(conn: &Connection, env: &Env, d: DescribeSnapshotGroups) -> R<Node> {
    let mut q = Listing::new(
        "snapshot_group",
        "snapshot_groups_now",
        "id, name, description, instance_id, tags, status",
        env,
        Scope::Own,
    );
    let ids = (!d.snapshot_group_ids.is_empty()).then_some(&d.snapshot_group_ids[..]);
    let status = (!d.status.is_empty()).then_some(&d.status[..]);
    q.any_of("id", ids).any_of("status", status).eq("instance_id", d.instance_id).eq("name", d.name).tags(&d.tags);
    let paging = Paging::Token { next_token: d.next_token, max_results: d.max_results };
    let page = q.fetch(conn, &paging, |r| {
        Ok(GroupView {
            id: r.get(0)?,
            name: r.get(1)?,
            description: r.get(2)?,
            instance_id: r.get(3)?,
            tags: r.get(4)?,
            status: r.get(5)?,
            created_ms: r.get(6)?,
            members: Vec::new(),
        })
    })?;
    let mut items = page.items;
    let mut stmt = conn.prepare_cached(
        "SELECT id, disk_id, disk_type, status FROM snapshots_now WHERE group_id=?1 AND released=0 ORDER BY disk_id",
    )?;
    for g in &mut items {
        g.members =
            stmt.query_map([&g.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<Result<_, _>>()?;
    }
    let mut out = Node::obj();
    out.push("SnapshotGroups", Node::emit(Groups(items)));
    out.push("NextToken", page.next_token.unwrap_or_default());
    Ok(out)
}

/// `{SnapshotGroup: [...]}`.
struct Groups(Vec<GroupView>);

impl Emit for Groups {
    fn emit(&self, o: &mut dyn Out) {
        o.begin_obj();
        o.name("SnapshotGroup");
        o.begin_list();
        for g in &self.0 {
            g.emit(o);
        }
        o.end_list();
        o.end_obj();
    }
}

/// The `OperationProgressSet` DeleteSnapshotGroup and ResetDisks answer: one success per item.
fn progress(items: &[(&str, &str)]) -> Value {
    let ops: Vec<Value> = items
        .iter()
        .map(|(name, value)| {
            json!({"OperationStatus": "Success", "ErrorCode": "", "ErrorMsg": "",
                   "RelatedItemSet": {"RelatedItem": [{"Name": name, "Value": value}]}})
        })
        .collect();
    json!({"OperationProgressSet": {"OperationProgress": ops}})
}

pub(crate) fn delete_snapshot_group(conn: &mut Connection, env: &Env, id: &str) -> R<Value> {
    let tx = begin(conn)?;
    let n = tx.execute(
        "UPDATE snapshot_groups SET released=1 WHERE id=?1 AND account_id=?2 AND released=0
           AND (?3 IS NULL OR region_id=?3)",
        params![id, env.account_id, env.region_id],
    )?;
    if n == 0 {
        return Err(Code::InvalidSnapshotGroupIdNotFound.into());
    }
    // Documented: a member a custom image was made from stays (DeleteImage, then
    // DeleteSnapshot, remove it).
    let members: Vec<String> = {
        let mut stmt = tx.prepare(
            "SELECT s.id FROM snapshots s WHERE s.group_id=?1 AND s.released=0
               AND NOT EXISTS (SELECT 1 FROM images m WHERE m.snapshot_id = s.id AND m.released = 0)",
        )?;
        stmt.query_map([id], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    let mut intents = Vec::new();
    for s in &members {
        tx.execute("UPDATE snapshots SET released=1 WHERE id=?1", [s])?;
        tx.execute("DELETE FROM transitions WHERE kind='snapshot' AND id=?1", [s])?;
        let intent = Intent::DeleteSnapshot { snapshot: s.clone() };
        intents.push((storage::record(&tx, &intent)?, intent));
    }
    tx.commit()?;
    env.revoke(&members);
    if !storage::run(conn, env.volumes, &intents)?.is_empty() {
        return Err(Fail::Api(ApiError::new(Code::InternalError)));
    }
    Ok(progress(&[("SnapshotGroupId", id)]))
}

pub(crate) fn reset_disks(conn: &mut Connection, env: &Env, r: ResetDisks) -> R<Value> {
    let tx = begin(conn)?;
    let mut checked = Vec::new();
    for (disk, snapshot) in &r.disks {
        checked.push(reset::checked(&tx, env, disk, snapshot)?);
    }
    if r.dry_run {
        return Err(dry_run_ok());
    }
    let mut intents = Vec::new();
    for (disk, snap) in &checked {
        let intent = Intent::Reset { disk: disk.id.clone(), snapshot: snap.id.clone() };
        intents.push((storage::begin_reiniting(&tx, env, &disk.id, &intent)?, intent));
    }
    tx.commit()?;
    if !storage::run(conn, env.volumes, &intents)?.is_empty() {
        return Err(Fail::Api(ApiError::new(Code::InternalError)));
    }
    let items: Vec<(&str, &str)> = r.disks.iter().map(|(d, _)| ("DiskId", d.as_str())).collect();
    Ok(progress(&items))
}
