//! ResizeDisk and ReInitDisk: the two actions that change a disk's volume in place without a
//! snapshot of its own (API reference "ResizeDisk" and "ReInitDisk"; docs/api-compat.md §2.2
//! lists the check order and each error row).
//!
//! ResizeDisk grows the volume in the store (one metadata record, O(1)); the disk keeps its
//! state. ReInitDisk puts the volume back on what the disk was created from (its image's
//! snapshot, its source snapshot, or nothing: zeros) in O(1); the disk goes `ReIniting` and
//! back to `In_use`. Both record a storage intent, like ResetDisk, so a crash replays them and
//! a store refusal undoes the catalog change.

use super::storage::{self, Intent};
use super::{Fail, R, begin, idempotency};
use crate::model::Disk;
use crate::{Env, config, guards};
use ecs_api::disks::{ReInitDisk, ResizeDisk};
use ecs_api::{ApiError, Code};
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Value, json};

/// Source snapshots made before this instant (2013-07-15T00:00:00Z) cannot re-initialize a
/// disk (ReInitDisk's `InvalidSnapshot.TooOld`).
const TOO_OLD_MS: i64 = 1_373_846_400_000;

const GIB: u64 = 1 << 30;

/// Whether a snapshot of the disk is still being taken.
fn snapshotting(conn: &Connection, disk: &Disk) -> R<bool> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM snapshots WHERE disk_id=?1 AND status='progressing' AND released=0",
        [&disk.id],
        |row| row.get(0),
    )?;
    Ok(n > 0)
}

/// ResizeDisk. Checks, in order: white list, disk (404), local category →
/// `OperationDenied` (type), `NewSize` ≤ current → `InvalidDiskSize.TooSmall`, above the
/// category's maximum → `InvalidDiskSize.TooLarge`, the instance the disk is on (404, lock,
/// expiry/arrears), disk `ReIniting` → `Operation.Conflict`, disk in another transitional
/// state → `OperationDenied` (status) or, online, `IncorrectDiskStatus`; an unattached
/// pay-as-you-go disk of an account in arrears → `DiskInArrears`; a snapshot in progress →
/// `DiskCreatingSnapshot`; online: the disk must be attached (`IncorrectDiskStatus`) to a
/// `Running` instance (`IncorrectInstanceStatus`); offline: the instance must be `Running` or
/// `Stopped` (`IncorrectInstanceStatus`). Then the catalog's size changes, the store grows the
/// volume, and the answer is `{RequestId}` (plus `OrderId` "" for a subscription disk).
pub(crate) fn resize_disk(conn: &mut Connection, env: &Env, r: ResizeDisk) -> R<Value> {
    let tx = begin(conn)?;
    let acct = guards::account(&tx, env.account_id)?;
    guards::whitelist(&tx, env)?;
    let disk = guards::disk(&tx, env, &r.disk_id)?;
    let Some((_, max_gib, false)) = config::category(&disk.category) else {
        return Err(Code::OperationDeniedDiskType.into());
    };
    if r.new_size_gib <= disk.size_gib {
        return Err(Code::ResizeDiskSizeTooSmall.into());
    }
    if r.new_size_gib > max_gib {
        return Err(Code::InvalidDiskSizeTooLarge.into());
    }
    let instance = guards::usable_instance_of(&tx, env, &acct, &disk)?;
    match disk.status.as_str() {
        "In_use" | "Available" => {}
        "ReIniting" => return Err(Code::OperationConflict.into()),
        _ if r.online => return Err(Code::IncorrectDiskStatusOnlineResize.into()),
        _ => return Err(Code::OperationDeniedDiskStatus.into()),
    }
    if instance.is_none() && acct.in_arrears && disk.charge_type == "PostPaid" {
        return Err(Code::DiskInArrears.into());
    }
    if snapshotting(&tx, &disk)? {
        return Err(Code::DiskCreatingSnapshotNotCompleted.into());
    }
    match (&instance, r.online) {
        (None, true) => return Err(Code::IncorrectDiskStatusOnlineResize.into()),
        (Some(i), true) if i.status != "Running" => return Err(Code::IncorrectInstanceStatusOnlineResize.into()),
        (Some(i), false) if i.status != "Running" && i.status != "Stopped" => {
            return Err(Code::IncorrectInstanceStatus.into());
        }
        _ => {}
    }

    let intent =
        Intent::Resize { disk: disk.id.clone(), size_bytes: r.new_size_gib as u64 * GIB, old_gib: disk.size_gib };
    tx.execute("UPDATE disks SET size_gib=?2 WHERE id=?1", rusqlite::params![disk.id, r.new_size_gib])?;
    let id = storage::record(&tx, &intent)?;
    let response = if disk.charge_type == "PrePaid" { json!({"OrderId": ""}) } else { json!({}) };
    idempotency::remember(&tx, env, &response)?;
    tx.commit()?;
    let failed = storage::run(conn, env.volumes, &[(id, intent)])?;
    if !failed.is_empty() {
        if failed.iter().all(|(_, e)| e.is_definite()) {
            idempotency::forget(conn, env)?;
        }
        return Err(Fail::Api(ApiError::new(Code::InternalError)));
    }
    Ok(response)
}

/// ReInitDisk. Checks, in order: white list, disk (404), local category →
/// `DiskCategory.OperationNotSupported`, disk not `In_use` (unattached, or in a transitional
/// state such as `ReIniting`) → `IncorrectDiskStatus`, its instance (404, lock,
/// expiry/arrears), instance not `Stopped` or never started → `IncorrectInstanceStatus`, a
/// snapshot in progress → `DiskCreatingSnapshot`, what to return to: a system disk's image
/// released → `InvalidDiskId.OperationNotSupported` 404; a data disk's source snapshot
/// deleted → `InvalidSourceSnapshot`, made before 2013-07-15 → `InvalidSnapshot.TooOld`;
/// then KMS for an encrypted disk. The disk goes `ReIniting` (back to `In_use` after
/// `DiskMs`) and the store puts the volume on its source in O(1) before the answer.
pub(crate) fn reinit_disk(conn: &mut Connection, env: &Env, r: ReInitDisk) -> R<Value> {
    let tx = begin(conn)?;
    let acct = guards::account(&tx, env.account_id)?;
    guards::whitelist(&tx, env)?;
    let disk = guards::disk(&tx, env, &r.disk_id)?;
    if disk.is_local() {
        return Err(Code::DiskCategoryOperationNotSupported.into());
    }
    let (Some(instance_id), "In_use") = (&disk.instance_id, disk.status.as_str()) else {
        return Err(Code::IncorrectDiskStatus.into());
    };
    let inst = guards::instance(&tx, env, instance_id)?;
    guards::instance_usable(&inst, &acct, env.now)?;
    if inst.status != "Stopped" || inst.start_ms.is_none() {
        return Err(Code::IncorrectInstanceStatus.into());
    }
    if snapshotting(&tx, &disk)? {
        return Err(Code::DiskCreatingSnapshotNotCompleted.into());
    }
    let source = if disk.disk_type == "system" {
        let image = disk.image_id.as_deref().unwrap_or_default();
        if !config::PUBLIC_IMAGES.iter().any(|(id, ..)| *id == image) {
            // Its own image, or one still shared with it: after the owner deletes or unshares
            // an image, the disks made from it cannot return to it (API reference
            // ModifyImageSharePermission).
            if !super::image_usable(&tx, env.account_id, image)? {
                return Err(Code::InvalidDiskIdOperationNotSupported.into());
            }
        }
        // The disk was made from the image's snapshot (none for a public, empty image).
        disk.source_snapshot_id.clone()
    } else {
        match &disk.source_snapshot_id {
            None => None,
            Some(s) => {
                let row: Option<(i64, bool)> = tx
                    .query_row("SELECT created_ms, released FROM snapshots WHERE id=?1", [s], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()?;
                match row {
                    None | Some((_, true)) => return Err(Code::InvalidSourceSnapshot.into()),
                    Some((created, _)) if created < TOO_OLD_MS => return Err(Code::ReInitSnapshotTooOld.into()),
                    Some(_) => Some(s.clone()),
                }
            }
        }
    };
    if disk.encrypted {
        guards::kms(&tx, env, &acct, disk.kms_key_id.as_deref())?;
    }

    let intent = Intent::ReInit { disk: disk.id.clone(), source };
    let id = storage::begin_reiniting(&tx, env, &disk.id, &intent)?;
    tx.commit()?;
    storage::run_one(conn, env, id, intent)?;
    Ok(json!({}))
}
