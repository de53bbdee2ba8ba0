//! Automatic snapshot policies (issue 9): Create, ModifyEx, DescribeEx, Delete, Apply and
//! Cancel. The schedule itself runs in `autosnap` (`Control::run_auto_snapshots`).

use super::listing::{Listing, Scope};
use super::{R, begin};
use crate::model::tags_json;
use crate::shapes::TimeText;
use crate::{Env, guards, new_id};
use ecs_api::policies::{DescribeAutoSnapshotPolicies, Schedule};
use ecs_api::write::{Emit, Out};
use ecs_api::{Code, Node};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

/// Hours or weekdays as the catalog keeps them and the API shows them: `["0","12"]`.
fn list_text(v: &[u8]) -> String {
    serde_json::to_string(&v.iter().map(u8::to_string).collect::<Vec<_>>()).unwrap_or_else(|_| "[]".into())
}

fn owned(conn: &Connection, env: &Env, id: &str) -> R<()> {
    conn.query_row(
        "SELECT 1 FROM auto_snapshot_policies WHERE id=?1 AND account_id=?2 AND region_id=?3 AND released=0",
        params![id, env.account_id, env.region_id.unwrap_or_default()],
        |_| Ok(()),
    )
    .optional()?
    .ok_or_else(|| ecs_api::policies::not_found().into())
}

pub(crate) fn create(conn: &mut Connection, env: &Env, s: Schedule, tags: Vec<(String, String)>) -> R<Value> {
    let tx = begin(conn)?;
    let acct = guards::account(&tx, env.account_id)?;
    guards::snapshot_service(&acct)?;
    let id = new_id("sp-");
    tx.execute(
        "INSERT INTO auto_snapshot_policies(id, account_id, region_id, name, time_points, repeat_weekdays,
           retention_days, created_ms, tags) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            id,
            env.account_id,
            env.region_id.unwrap_or_default(),
            s.name.unwrap_or_default(),
            list_text(s.time_points.as_deref().unwrap_or_default()),
            list_text(s.repeat_weekdays.as_deref().unwrap_or_default()),
            s.retention_days.unwrap_or(-1),
            env.now,
            tags_json(&tags)
        ],
    )?;
    tx.commit()?;
    Ok(json!({"AutoSnapshotPolicyId": id}))
}

pub(crate) fn modify(conn: &mut Connection, env: &Env, id: &str, s: Schedule) -> R<Value> {
    let tx = begin(conn)?;
    owned(&tx, env, id)?;
    tx.execute(
        "UPDATE auto_snapshot_policies SET name=COALESCE(?2, name), time_points=COALESCE(?3, time_points),
           repeat_weekdays=COALESCE(?4, repeat_weekdays), retention_days=COALESCE(?5, retention_days) WHERE id=?1",
        params![
            id,
            s.name,
            s.time_points.as_deref().map(list_text),
            s.repeat_weekdays.as_deref().map(list_text),
            s.retention_days
        ],
    )?;
    tx.commit()?;
    Ok(json!({}))
}

pub(crate) fn delete(conn: &mut Connection, env: &Env, id: &str) -> R<Value> {
    let tx = begin(conn)?;
    owned(&tx, env, id)?;
    tx.execute("UPDATE auto_snapshot_policies SET released=1 WHERE id=?1", [id])?;
    // Its disks keep their automatic snapshots; no new ones are taken.
    tx.execute(
        "UPDATE disks SET auto_snapshot_policy_id=NULL, auto_snapshot_last_ms=NULL WHERE auto_snapshot_policy_id=?1",
        [id],
    )?;
    tx.commit()?;
    Ok(json!({}))
}

/// The caller's live, non-local disks among `ids` in the region, or the documented refusal
/// (API reference, ApplyAutoSnapshotPolicy): an unknown disk is 403 ParameterInvalid; a local
/// one is DiskCategory.OperationNotSupported alone, PartofDiskCategory.OperationNotSupported
/// in a list.
fn disks(conn: &Connection, env: &Env, ids: &[String]) -> R<()> {
    for id in ids {
        let d = guards::disk(conn, env, id).map_err(|_| super::Fail::from(Code::ParameterInvalidDiskIds))?;
        if d.is_local() {
            return Err(if ids.len() == 1 {
                Code::DiskCategoryOperationNotSupported
            } else {
                Code::PartofDiskCategoryOperationNotSupported
            }
            .into());
        }
    }
    Ok(())
}

pub(crate) fn apply(conn: &mut Connection, env: &Env, id: &str, ids: &[String]) -> R<Value> {
    let tx = begin(conn)?;
    let acct = guards::account(&tx, env.account_id)?;
    guards::snapshot_service(&acct)?;
    guards::balance(&acct)?;
    owned(&tx, env, id)?;
    disks(&tx, env, ids)?;
    // The schedule starts from now: points already past are not caught up on.
    for d in ids {
        tx.execute(
            "UPDATE disks SET auto_snapshot_policy_id=?2, auto_snapshot_last_ms=?3 WHERE id=?1",
            params![d, id, env.now],
        )?;
    }
    tx.commit()?;
    Ok(json!({}))
}

pub(crate) fn cancel(conn: &mut Connection, env: &Env, ids: &[String]) -> R<Value> {
    let tx = begin(conn)?;
    disks(&tx, env, ids)?;
    for d in ids {
        tx.execute("UPDATE disks SET auto_snapshot_policy_id=NULL, auto_snapshot_last_ms=NULL WHERE id=?1", [d])?;
    }
    tx.commit()?;
    Ok(json!({}))
}

/// One policy as DescribeAutoSnapshotPolicyEx shows it.
struct PolicyView {
    id: String,
    region_id: String,
    name: String,
    time_points: String,
    repeat_weekdays: String,
    retention_days: i64,
    tags: String,
    disk_nums: i64,
    created_ms: i64,
}

impl Emit for PolicyView {
    fn emit(&self, o: &mut dyn Out) {
        o.begin_obj();
        o.field("AutoSnapshotPolicyId", &self.id);
        o.field("AutoSnapshotPolicyName", &self.name);
        o.field("RegionId", &self.region_id);
        o.field("TimePoints", &self.time_points);
        o.field("RepeatWeekdays", &self.repeat_weekdays);
        o.field("RetentionDays", &self.retention_days);
        o.field("DiskNums", &self.disk_nums);
        o.field("VolumeNums", &0i64);
        o.field("CreationTime", TimeText::secs(self.created_ms).as_str());
        o.field("Status", "Normal");
        o.field("Type", "Custom");
        o.field("EnableCrossRegionCopy", &false);
        o.field("TargetCopyRegions", "");
        o.field("CopiedSnapshotsRetentionDays", &-1i64);
        o.field("ResourceGroupId", "");
        crate::shapes::tags(o, &self.tags);
        o.end_obj();
    }
}

pub(crate) fn describe(conn: &Connection, env: &Env, d: DescribeAutoSnapshotPolicies) -> R<Node> {
    let mut q = Listing::new(
        "auto_snapshot_policy",
        "auto_snapshot_policies_now",
        "id, region_id, name, time_points, repeat_weekdays, retention_days, tags, disk_nums",
        env,
        Scope::Own,
    );
    q.eq("id", d.policy_id).eq("name", d.name).tags(&d.tags);
    let page = q.fetch(conn, &d.paging, |r| {
        Ok(PolicyView {
            id: r.get(0)?,
            region_id: r.get(1)?,
            name: r.get(2)?,
            time_points: r.get(3)?,
            repeat_weekdays: r.get(4)?,
            retention_days: r.get(5)?,
            tags: r.get(6)?,
            disk_nums: r.get(7)?,
            created_ms: r.get(8)?,
        })
    })?;
    let mut out = Node::obj();
    page.render(&d.paging, ("AutoSnapshotPolicies", "AutoSnapshotPolicy"), &mut out);
    Ok(out)
}
