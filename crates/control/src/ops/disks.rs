//! CreateDisk, DescribeDisks, DeleteDisk, AttachDisk, DetachDisk.

use super::listing::{Listing, Scope};
use super::storage::{self, Intent};
use super::{Fail, R, begin, dry_run_ok, idempotency};
use crate::fairness::{self, Quota};
use crate::model::{Disk, Instance, Text, tags_json};
use crate::{Env, config, guards, new_id, transitions};
use ecs_api::Node;
use ecs_api::disks::{CreateDisk, DescribeDisks, ModifyDiskAttribute};
use ecs_api::{ApiError, Code};
use rusqlite::{Connection, Transaction, params};
use serde_json::{Value, json};

/// A disk about to be inserted, before its storage exists.
pub(crate) struct NewDisk<'a> {
    pub region_id: &'a str,
    pub zone_id: &'a str,
    pub name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub category: &'a str,
    pub size_gib: i64,
    pub disk_type: &'a str,
    pub instance: Option<(&'a str, String)>,
    pub image_id: Option<&'a str>,
    pub source_snapshot_id: Option<&'a str>,
    pub encrypted: bool,
    pub kms_key_id: Option<&'a str>,
    pub performance_level: Option<&'a str>,
    pub delete_with_instance: bool,
    pub charge_type: &'a str,
    pub tags: &'a [(String, String)],
}

/// Validate a category and size for a new disk; local categories only come with instances.
pub(crate) fn check_category(category: &str, size: i64, allow_local: bool, bad_category: Code) -> R<()> {
    let (lo, hi, local) = config::category(category).ok_or(bad_category)?;
    if local && !allow_local {
        return Err(bad_category.into());
    }
    if size < lo || size > hi {
        return Err(Code::InvalidDiskSizeValueNotSupported.into());
    }
    Ok(())
}

/// Insert the disk in state Creating with its transition and storage intent; the caller runs
/// the intent after committing.
pub(crate) fn insert(tx: &Transaction, env: &Env, d: &NewDisk) -> R<(String, i64, Intent)> {
    let id = new_id("d-");
    let (instance_id, device) = match &d.instance {
        Some((i, dev)) => (Some(*i), Some(dev.as_str())),
        None => (None, None),
    };
    let pl = d.performance_level.or((d.category == "cloud_essd").then_some("PL1"));
    tx.execute(
        "INSERT INTO disks(id, account_id, region_id, zone_id, name, description, category, size_gib, disk_type,
          status, instance_id, device, image_id, source_snapshot_id, encrypted, kms_key_id, performance_level,
          delete_with_instance, charge_type, created_ms, tags, serial)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'Creating', ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
        params![
            id, env.account_id, d.region_id, d.zone_id, d.name.unwrap_or_default(),
            d.description.unwrap_or_default(), d.category, d.size_gib, d.disk_type, instance_id, device,
            d.image_id, d.source_snapshot_id, d.encrypted, d.kms_key_id, pl, d.delete_with_instance,
            d.charge_type, env.now, tags_json(d.tags), uuid_like(&id)
        ],
    )?;
    transitions::schedule(tx, "disk", &id, env.now + env.timings.disk_ms as i64)?;
    let intent = Intent::Create {
        disk: id.clone(),
        size_bytes: (d.size_gib as u64) << 30,
        source: d.source_snapshot_id.map(String::from),
    };
    let iid = storage::record(tx, &intent)?;
    Ok((id, iid, intent))
}

fn uuid_like(id: &str) -> String {
    let t = id.trim_start_matches("d-");
    format!("{}-{}-{}", &t[..8.min(t.len())], &t[8.min(t.len())..12.min(t.len())], &t[12.min(t.len())..])
}

/// A snapshot a new disk may start from: ready, and no larger than the disk.
pub(crate) fn source_snapshot(tx: &Transaction, env: &Env, id: &str, size: Option<i64>) -> R<crate::model::Snapshot> {
    let snap = guards::snapshot(tx, env, id)?;
    if snap.status != "accomplished" {
        return Err(Code::InvalidSnapshotIdNotReady.into());
    }
    if size.is_some_and(|s| s < snap.disk_size_gib) {
        return Err(Code::InvalidDiskSizeTooSmall.into());
    }
    Ok(snap)
}

pub(crate) fn create_disk(conn: &mut Connection, env: &Env, c: CreateDisk) -> R<Value> {
    let tx = begin(conn)?;
    let acct = guards::account(&tx, env.account_id)?;
    guards::whitelist(&tx, env)?;
    fairness::quota(&tx, env.account_id, &env.config.limits, Quota::Disks, 1)?;
    let zone = c.zone_id.as_deref().unwrap_or_default();
    guards::zone(env, zone)?;
    let category = c.category.as_deref().unwrap_or(config::DEFAULT_DISK_CATEGORY);
    let snap = match &c.snapshot_id {
        Some(s) => {
            guards::snapshot_service(&acct)?;
            Some(source_snapshot(&tx, env, s, c.size_gib)?)
        }
        None => None,
    };
    let size = c.size_gib.or(snap.as_ref().map(|s| s.disk_size_gib)).unwrap_or(0);
    check_category(category, size, false, Code::InvalidDiskCategoryValueNotSupported)?;
    let encrypted = c.encrypted || c.kms_key_id.is_some() || snap.as_ref().is_some_and(|s| s.encrypted);
    let kms_key = c.kms_key_id.clone().or(snap.as_ref().and_then(|s| s.kms_key_id.clone()));
    if encrypted {
        guards::kms(&tx, env, &acct, kms_key.as_deref())?;
    }
    guards::balance(&acct)?;
    if c.dry_run {
        return Err(dry_run_ok());
    }
    let (id, iid, intent) = insert(
        &tx,
        env,
        &NewDisk {
            region_id: env.region_id.unwrap_or_default(),
            zone_id: zone,
            name: c.name.as_deref(),
            description: c.description.as_deref(),
            category,
            size_gib: size,
            disk_type: "data",
            instance: None,
            image_id: None,
            source_snapshot_id: c.snapshot_id.as_deref(),
            encrypted,
            kms_key_id: kms_key.as_deref(),
            performance_level: c.performance_level.as_deref(),
            delete_with_instance: false,
            charge_type: "PostPaid",
            tags: &c.tags,
        },
    )?;
    if let Some(g) = &c.resource_group_id {
        tx.execute("UPDATE disks SET resource_group_id=?2 WHERE id=?1", [&id, g])?;
    }
    let response = json!({"DiskId": id, "OrderId": ""});
    idempotency::remember(&tx, env, &response)?;
    tx.commit()?;
    let failed = storage::run(conn, env.volumes, &[(iid, intent)])?;
    if !failed.is_empty() {
        // A definite refusal removed the disk, so its token is free again; after an uncertain
        // failure the disk stays (its intent is replayed), and so does the token.
        if failed.iter().all(|(_, e)| e.is_definite()) {
            idempotency::forget(conn, env)?;
        }
        return Err(Fail::Api(ApiError::new(Code::InternalError)));
    }
    Ok(response)
}

/// DescribeDisks: every documented filter this catalog holds, in SQL, one page read.
pub(crate) fn describe_disks(conn: &Connection, env: &Env, d: DescribeDisks) -> R<Node> {
    let mut q = Listing::new("disk", "disks_now", Disk::COLUMNS, env, Scope::Own);
    q.any_of("id", d.disk_ids.as_deref())
        .eq("zone_id", d.zone_id)
        .eq("instance_id", d.instance_id)
        .eq("disk_type", d.disk_type)
        .eq("category", d.category)
        .eq("status", d.status)
        .eq("source_snapshot_id", d.snapshot_id)
        .eq("name", d.disk_name)
        .eq("encrypted", d.encrypted)
        .tags(&d.tags);
    let page = q.fetch(conn, &d.paging, Disk::<Text>::read)?;
    let mut out = Node::obj();
    page.render(&d.paging, ("Disks", "Disk"), &mut out);
    Ok(out)
}

pub(crate) fn delete_disk(conn: &mut Connection, env: &Env, disk_id: &str, dry_run: bool) -> R<Value> {
    let tx = begin(conn)?;
    let disk = match guards::disk(&tx, env, disk_id) {
        // The documented behaviour: deleting a disk that does not exist is ignored.
        Err(Fail::Api(e)) if matches!(e.code, Code::InvalidDiskIdNotFound | Code::DiskNotFound) => {
            return if dry_run { Err(dry_run_ok()) } else { Ok(json!({})) };
        }
        other => other?,
    };
    if disk.instance_id.is_some() && disk.status != "Available" {
        return Err(if disk.status == "In_use" { Code::DiskStillAttached } else { Code::IncorrectDiskStatus }.into());
    }
    if disk.status != "Available" {
        return Err(Code::IncorrectDiskStatus.into());
    }
    let snapshotting: i64 = tx.query_row(
        "SELECT COUNT(*) FROM snapshots
         WHERE disk_id=?1 AND status='progressing' AND released=0 AND source_snapshot_id IS NULL",
        [disk_id],
        |r| r.get(0),
    )?;
    if snapshotting > 0 {
        return Err(Code::DiskCreatingSnapshot.into());
    }
    if dry_run {
        return Err(dry_run_ok());
    }
    tx.execute("UPDATE disks SET released=1 WHERE id=?1", [disk_id])?;
    let intent = Intent::DeleteVolume { disk: disk_id.to_string() };
    let iid = storage::record(&tx, &intent)?;
    tx.commit()?;
    if !storage::run(conn, env.volumes, &[(iid, intent)])?.is_empty() {
        return Err(Fail::Api(ApiError::new(Code::InternalError)));
    }
    Ok(json!({}))
}

/// The next free device name on an instance: /dev/xvdb, /dev/xvdc, ...
pub(crate) fn next_device(tx: &Transaction, instance_id: &str) -> R<String> {
    let used: Vec<String> = guards::instance_disks(tx, instance_id)?.into_iter().filter_map(|d| d.device).collect();
    ('b'..='z')
        .map(|c| format!("/dev/xvd{c}"))
        .find(|d| !used.contains(d))
        .ok_or_else(|| Code::InstanceDiskLimitExceeded.into())
}

/// The disk and the instance of an attach or detach, both found and the instance usable.
fn disk_on_instance(tx: &Transaction, env: &Env, disk_id: &str, instance_id: &str) -> R<(Disk, Instance)> {
    let acct = guards::account(tx, env.account_id)?;
    let disk = guards::disk(tx, env, disk_id)?;
    let inst = guards::instance(tx, env, instance_id)?;
    guards::instance_usable(&inst, &acct, env.now)?;
    Ok((disk, inst))
}

pub(crate) fn attach_disk(
    conn: &mut Connection,
    env: &Env,
    disk_id: &str,
    instance_id: &str,
    delete_with_instance: Option<bool>,
    dry_run: bool,
) -> R<Value> {
    let tx = begin(conn)?;
    let (disk, inst) = disk_on_instance(&tx, env, disk_id, instance_id)?;
    if disk.is_local() {
        return Err(Code::DiskCategoryOperationNotSupported.into());
    }
    if disk.status != "Available" || disk.instance_id.is_some() {
        return Err(Code::IncorrectDiskStatus.into());
    }
    if disk.zone_id != inst.zone_id {
        return Err(ApiError::invalid("ZoneId").into());
    }
    if inst.status != "Running" && inst.status != "Stopped" {
        return Err(Code::IncorrectInstanceStatus.into());
    }
    let attached = guards::instance_disks(&tx, instance_id)?.iter().filter(|d| d.disk_type == "data").count() as i64;
    if attached >= config::MAX_DATA_DISKS {
        return Err(Code::InstanceDiskLimitExceeded.into());
    }
    let device = next_device(&tx, instance_id)?;
    if dry_run {
        return Err(dry_run_ok());
    }
    tx.execute(
        "UPDATE disks SET status='Attaching', instance_id=?2, device=?3,
           delete_with_instance=COALESCE(?4, delete_with_instance) WHERE id=?1",
        params![disk_id, instance_id, device, delete_with_instance],
    )?;
    transitions::schedule(&tx, "disk", disk_id, env.now + env.timings.disk_ms as i64)?;
    tx.commit()?;
    Ok(json!({}))
}

pub(crate) fn detach_disk(
    conn: &mut Connection,
    env: &Env,
    disk_id: &str,
    instance_id: &str,
    _delete_with_instance: Option<bool>,
    dry_run: bool,
) -> R<Value> {
    let tx = begin(conn)?;
    let (disk, inst) = disk_on_instance(&tx, env, disk_id, instance_id)?;
    if disk.instance_id.as_deref() != Some(instance_id) {
        return Err(Code::IncorrectDiskStatus.into());
    }
    if disk.is_local() || disk.disk_type == "system" && inst.status != "Stopped" {
        return Err(Code::DiskCategoryOperationNotSupported.into());
    }
    if disk.status != "In_use" {
        return Err(Code::IncorrectDiskStatus.into());
    }
    if inst.status != "Running" && inst.status != "Stopped" {
        return Err(Code::IncorrectInstanceStatus.into());
    }
    if dry_run {
        return Err(dry_run_ok());
    }
    // DetachDisk always clears DeleteWithInstance (documented).
    tx.execute("UPDATE disks SET status='Detaching', delete_with_instance=0 WHERE id=?1", [disk_id])?;
    transitions::schedule(&tx, "disk", disk_id, env.now + env.timings.disk_ms as i64)?;
    tx.commit()?;
    // The instance stops being the disk's writer: close its data-plane connections.
    env.revoke(&[disk_id.to_string()]);
    Ok(json!({}))
}

/// ModifyDiskAttribute: the named attributes of every named disk, all or none. A local disk
/// cannot outlive its instance (`DiskNotPortable` for DeleteWithInstance=false).
pub(crate) fn modify_disk_attribute(conn: &mut Connection, env: &Env, m: ModifyDiskAttribute) -> R<Value> {
    let tx = begin(conn)?;
    for id in &m.disk_ids {
        let disk = guards::disk(&tx, env, id)?;
        if m.delete_with_instance == Some(false) && disk.is_local() {
            return Err(Code::DiskNotPortable.into());
        }
        tx.execute(
            "UPDATE disks SET name=COALESCE(?2, name), description=COALESCE(?3, description),
               delete_with_instance=COALESCE(?4, delete_with_instance),
               delete_auto_snapshot=COALESCE(?5, delete_auto_snapshot),
               enable_auto_snapshot=COALESCE(?6, enable_auto_snapshot)
             WHERE id=?1",
            params![id, m.name, m.description, m.delete_with_instance, m.delete_auto_snapshot, m.enable_auto_snapshot],
        )?;
    }
    tx.commit()?;
    Ok(json!({}))
}
