//! CreateSnapshot, DescribeSnapshots, DeleteSnapshot, CopySnapshot. A snapshot is taken at once (the store
//! freezes the volume's head) and then reports `progressing` for the configured time, as the
//! cloud does while it uploads.

use super::listing::{Listing, Scope};
use super::storage::{self, Intent};
use super::{Fail, R, begin, idempotency};
use crate::fairness::{self, Quota};
use crate::model::{Snapshot, tags_json};
use crate::shapes::SnapshotView;
use crate::{Env, config, guards, new_id, transitions};
use ecs_api::Node;
use ecs_api::snapshots::{CreateSnapshot, DescribeSnapshots};
use ecs_api::{ApiError, Code};
use rusqlite::{Connection, Transaction, params};
use serde_json::{Value, json};

pub(crate) fn create_snapshot(conn: &mut Connection, env: &Env, c: CreateSnapshot) -> R<Value> {
    let tx = begin(conn)?;
    let acct = guards::account(&tx, env.account_id)?;
    guards::snapshot_service(&acct)?;
    let disk = guards::disk(&tx, env, &c.disk_id)?;
    if disk.is_local() {
        return Err(Code::DiskCategoryOperationNotSupported.into());
    }
    guards::balance(&acct)?;
    if let Some(i) = &disk.instance_id {
        let inst = guards::instance(&tx, env, i)?;
        guards::instance_usable(&inst, &acct, env.now)?;
        if inst.status != "Running" && inst.status != "Stopped" {
            return Err(Code::IncorrectInstanceStatus.into());
        }
    }
    if disk.status != "In_use" && disk.status != "Available" {
        return Err(Code::IncorrectDiskStatus.into());
    }
    room_for_snapshot(&tx, &disk.id)?;
    fairness::quota(&tx, env.account_id, &env.config.limits, Quota::Snapshots, 1)?;
    let id = new_id("s-");
    let due = env.now + env.timings.snapshot_ms as i64;
    tx.execute(
        "INSERT INTO snapshots(id, account_id, region_id, disk_id, disk_size_gib, disk_type, disk_category, name,
           description, status, created_ms, due_ms, encrypted, kms_key_id, retention_days, tags)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'progressing', ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            id,
            env.account_id,
            disk.region_id,
            disk.id,
            disk.size_gib,
            disk.disk_type,
            disk.category,
            c.name.unwrap_or_default(),
            c.description.unwrap_or_default(),
            env.now,
            due,
            disk.encrypted,
            disk.kms_key_id,
            c.retention_days,
            tags_json(&c.tags)
        ],
    )?;
    let intent = Intent::Snapshot { disk: disk.id.clone(), snapshot: id.clone() };
    let (run, response) = accept(tx, env, &id, due, intent)?;
    storage::run(conn, env.volumes, &[run])?;
    Ok(response)
}

/// Whether disk `disk_id` may take another snapshot: none under way, fewer than the quota.
/// Copies (CopySnapshot) name the disk they came from but are not its snapshots.
pub(crate) fn room_for_snapshot(tx: &Transaction, disk_id: &str) -> R<()> {
    let (progressing, total): (i64, i64) = tx.query_row(
        "SELECT COALESCE(SUM(status='progressing'), 0), COUNT(*) FROM snapshots
         WHERE disk_id=?1 AND released=0 AND source_snapshot_id IS NULL",
        [disk_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if progressing > 0 {
        return Err(Code::IncorrectDiskStatusCreatingSnapshot.into());
    }
    if total >= config::SNAPSHOT_QUOTA {
        return Err(Code::QuotaExceedSnapshot.into());
    }
    Ok(())
}

/// A new snapshot row `id` is in `tx`: it is `progressing` until `due`, its store `intent` is
/// recorded and the answer kept for its ClientToken; commits. The caller then runs the
/// intent: a store failure turns the snapshot `failed`, which is how the cloud reports it
/// (the request was accepted, the snapshot did not complete).
fn accept(tx: Transaction, env: &Env, id: &str, due: i64, intent: Intent) -> R<((i64, Intent), Value)> {
    transitions::schedule(&tx, "snapshot", id, due)?;
    let iid = storage::record(&tx, &intent)?;
    let response = json!({"SnapshotId": id});
    idempotency::remember(&tx, env, &response)?;
    tx.commit()?;
    Ok(((iid, intent), response))
}

/// How a snapshot is used: by images, by disks created from it, both, or neither.
fn usage(conn: &Connection, id: &str) -> R<&'static str> {
    let (images, disks): (i64, i64) = conn.query_row(
        "SELECT (SELECT COUNT(*) FROM images WHERE snapshot_id=?1 AND released=0),
                (SELECT COUNT(*) FROM disks WHERE source_snapshot_id=?1 AND released=0)",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(match (images > 0, disks > 0) {
        (true, true) => "image_disk",
        (true, false) => "image",
        (false, true) => "disk",
        (false, false) => "none",
    })
}

/// DescribeSnapshots: filters in SQL, one page read; Usage is looked up for the page only.
pub(crate) fn describe_snapshots(conn: &Connection, env: &Env, d: DescribeSnapshots) -> R<Node> {
    let mut q = Listing::new("snapshot", "snapshots_now", Snapshot::COLUMNS, env, Scope::Own);
    q.any_of("id", d.snapshot_ids.as_deref())
        .eq("disk_id", d.disk_id)
        .eq("name", d.name)
        .eq("status", d.status)
        .eq("auto", d.auto)
        .tags(&d.tags);
    if let Some(i) = d.instance_id {
        q.clause(
            "disk_id IN (SELECT id FROM disks_now WHERE instance_id = ? AND released = 0)",
            [rusqlite::types::Value::Text(i)],
        );
    }
    let page = q.fetch(conn, &d.paging, Snapshot::from_row)?;
    let mut items = Vec::with_capacity(page.items.len());
    for snapshot in page.items {
        let usage = usage(conn, &snapshot.id)?;
        items.push(SnapshotView { snapshot, now: env.now, usage });
    }
    let page = super::listing::Page { items, total: page.total, next_token: page.next_token };
    let mut out = Node::obj();
    page.render(&d.paging, ("Snapshots", "Snapshot"), &mut out);
    Ok(out)
}

pub(crate) fn delete_snapshot(conn: &mut Connection, env: &Env, snapshot_id: &str, force: bool) -> R<Value> {
    let tx = begin(conn)?;
    let snap = guards::snapshot(&tx, env, snapshot_id)?;
    match usage(&tx, &snap.id)? {
        "image" | "image_disk" => return Err(Code::SnapshotCreatedImage.into()),
        "disk" if !force => return Err(Code::SnapshotCreatedDisk.into()),
        _ => {}
    }
    tx.execute("UPDATE snapshots SET released=1 WHERE id=?1", [snapshot_id])?;
    let intent = Intent::DeleteSnapshot { snapshot: snapshot_id.to_string() };
    let iid = storage::record(&tx, &intent)?;
    tx.commit()?;
    env.revoke(&[snapshot_id.to_string()]);
    if !storage::run(conn, env.volumes, &[(iid, intent)])?.is_empty() {
        return Err(Fail::Api(ApiError::new(Code::InternalError)));
    }
    Ok(json!({}))
}

/// ModifySnapshotAttribute: name, description and RetentionDays of one of the caller's
/// snapshots (what is not given stays).
pub(crate) fn modify_snapshot_attribute(
    conn: &mut Connection,
    env: &Env,
    snapshot_id: &str,
    name: Option<String>,
    description: Option<String>,
    retention_days: Option<i64>,
) -> R<Value> {
    let tx = begin(conn)?;
    guards::snapshot(&tx, env, snapshot_id)?;
    tx.execute(
        "UPDATE snapshots SET name=COALESCE(?2, name), description=COALESCE(?3, description),
           retention_days=COALESCE(?4, retention_days) WHERE id=?1",
        rusqlite::params![snapshot_id, name, description, retention_days],
    )?;
    tx.commit()?;
    Ok(json!({}))
}

/// CopySnapshot: a copy of one of the caller's accomplished snapshots in `destination` (this
/// region or another configured one). The copy shares the source's frozen layer in the store
/// (O(1)); it is `progressing` for `SnapshotMs`, names its source (SourceSnapshotId,
/// SourceRegionId) and keeps the source disk as its SourceDiskId, so ResetDisk may use it.
/// What CopySnapshot was asked (see `ecs_api::action::Action::CopySnapshot`).
pub(crate) struct CopyRequest {
    pub snapshot_id: String,
    pub destination: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub retention_days: Option<i64>,
    pub tags: Vec<(String, String)>,
}

/// A snapshot row that copies a frozen layer (CopySnapshot, and CopyImage's system disk): the
/// source's disk fields, `progressing` from now until `due` (ms), naming its source.
pub(crate) struct CopyRow<'a> {
    pub id: &'a str,
    pub destination: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub due: i64,
    pub encrypted: bool,
    pub kms_key_id: Option<&'a str>,
    pub retention_days: Option<i64>,
    /// Tags as the catalog keeps them (JSON).
    pub tags: &'a str,
    /// The source snapshot: its id, region, disk id, size (GiB), type and category.
    pub source: (&'a str, &'a str, &'a str, i64, &'a str, &'a str),
}

pub(crate) fn insert_copy(tx: &Connection, env: &Env, row: &CopyRow) -> R<()> {
    let (source_id, source_region, disk_id, size_gib, disk_type, category) = row.source;
    tx.execute(
        "INSERT INTO snapshots(id, account_id, region_id, disk_id, disk_size_gib, disk_type, disk_category, name,
           description, status, created_ms, due_ms, encrypted, kms_key_id, retention_days, tags,
           source_snapshot_id, source_region_id)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'progressing', ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        params![
            row.id,
            env.account_id,
            row.destination,
            disk_id,
            size_gib,
            disk_type,
            category,
            row.name,
            row.description,
            env.now,
            row.due,
            row.encrypted,
            row.kms_key_id,
            row.retention_days,
            row.tags,
            source_id,
            source_region
        ],
    )?;
    Ok(())
}

pub(crate) fn copy_snapshot(conn: &mut Connection, env: &Env, c: CopyRequest) -> R<Value> {
    let CopyRequest { snapshot_id, destination, name, description, retention_days, tags } = c;
    let (snapshot_id, destination) = (snapshot_id.as_str(), destination.as_str());
    let tx = begin(conn)?;
    let acct = guards::account(&tx, env.account_id)?;
    guards::snapshot_service(&acct)?;
    let src = guards::snapshot(&tx, env, snapshot_id)?;
    env.config.region(destination).ok_or_else(|| ApiError::invalid("DestinationRegionId"))?;
    if src.status != "accomplished" {
        return Err(Code::InvalidSnapshotIdNotReady.into());
    }
    guards::balance(&acct)?;
    fairness::quota(&tx, env.account_id, &env.config.limits, Quota::Snapshots, 1)?;
    let id = new_id("s-");
    let due = env.now + env.timings.snapshot_ms as i64;
    let row = CopyRow {
        id: &id,
        destination,
        name: name.as_deref().unwrap_or_default(),
        description: description.as_deref().unwrap_or_default(),
        due,
        encrypted: src.encrypted,
        kms_key_id: src.kms_key_id.as_deref(),
        retention_days,
        tags: &tags_json(&tags),
        source: (&src.id, &src.region_id, &src.disk_id, src.disk_size_gib, &src.disk_type, &src.disk_category),
    };
    insert_copy(&tx, env, &row)?;
    let intent = Intent::CopySnapshot { from: src.id.clone(), to: id.clone() };
    let (run, response) = accept(tx, env, &id, due, intent)?;
    storage::run(conn, env.volumes, &[run])?;
    Ok(response)
}
