//! ResetDisk: restore a disk in place from one of its own snapshots.
//!
//! Checks run in this order (docs/api-compat.md explains each): account (white list, snapshot
//! service), disk, category, snapshot (exists, of this disk, not too old, usable, ready), KMS,
//! balance, the instance the disk is attached to (exists, lock, billing), the disk's own state,
//! the instance's state, DryRun. Then the reset itself: the disk goes ReIniting, the store
//! resets the volume (constant time), and the disk returns to In_use or Available when the
//! transition completes. A store failure leaves the disk exactly as it was.

use super::storage::{self, Intent};
use super::{R, begin, dry_run_ok};
use crate::model::{Disk, Snapshot};
use crate::{Env, guards};
use ecs_api::Code;
use ecs_api::disks::ResetDisk;
use rusqlite::{Connection, Transaction};
use serde_json::{Value, json};

/// Snapshots made before this instant (2013-07-15T00:00:00Z) cannot restore a disk.
const TOO_OLD_MS: i64 = 1_373_846_400_000;

pub(crate) fn reset_disk(conn: &mut Connection, env: &Env, r: ResetDisk) -> R<Value> {
    let tx = begin(conn)?;
    let (disk, snap) = checked(&tx, env, &r.disk_id, &r.snapshot_id)?;
    if r.dry_run {
        return Err(dry_run_ok());
    }

    let intent = Intent::Reset { disk: disk.id.clone(), snapshot: snap.id.clone() };
    let id = storage::begin_reiniting(&tx, env, &disk.id, &intent)?;
    tx.commit()?;
    storage::run_one(conn, env, id, intent)?;
    Ok(json!({}))
}

/// Every check of ResetDisk but DryRun, in the documented order: the disk and the snapshot
/// it would be reset to.
pub(crate) fn checked(tx: &Transaction, env: &Env, disk_id: &str, snapshot_id: &str) -> R<(Disk, Snapshot)> {
    let acct = guards::account(tx, env.account_id)?;
    guards::whitelist(tx, env)?;
    guards::snapshot_service(&acct)?;
    let disk = guards::disk(tx, env, disk_id)?;
    if disk.is_local() {
        return Err(Code::DiskCategoryOperationNotSupported.into());
    }
    let snap = guards::snapshot(tx, env, snapshot_id)?;
    if snap.disk_id != disk.id {
        return Err(Code::InvalidParameterMismatch.into());
    }
    if snap.created_ms < TOO_OLD_MS {
        return Err(Code::InvalidSnapshotTooOld.into());
    }
    if snap.status == "failed" {
        return Err(Code::OperationDenied.into());
    }
    if snap.status != "accomplished" {
        return Err(Code::InvalidSnapshotIdNotReady.into());
    }
    if disk.encrypted {
        guards::kms(tx, env, &acct, disk.kms_key_id.as_deref())?;
    }
    guards::balance(&acct)?;
    let instance = guards::usable_instance_of(tx, env, &acct, &disk)?;
    match disk.status.as_str() {
        // Another reset of this disk is under way.
        "ReIniting" => return Err(Code::OperationConflict.into()),
        "In_use" | "Available" => {}
        _ => return Err(Code::IncorrectDiskStatus.into()),
    }
    // An unattached pay-as-you-go disk of an account in arrears is not usable.
    if instance.is_none() && acct.in_arrears && disk.charge_type == "PostPaid" {
        return Err(Code::IncorrectDiskStatus.into());
    }
    let snapshotting: i64 = tx.query_row(
        "SELECT COUNT(*) FROM snapshots
         WHERE disk_id=?1 AND status='progressing' AND released=0 AND source_snapshot_id IS NULL",
        [&disk.id],
        |row| row.get(0),
    )?;
    if snapshotting > 0 {
        return Err(Code::IncorrectDiskStatus.into());
    }
    if let Some(inst) = &instance
        && inst.status != "Stopped"
    {
        return Err(Code::IncorrectInstanceStatus.into());
    }
    Ok((disk, snap))
}
