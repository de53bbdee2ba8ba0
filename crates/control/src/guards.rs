//! Lookups and checks shared by the actions. A resource of another account is reported exactly
//! like one that never existed: to the caller it does not.

use crate::Env;
use crate::model::{Disk, Instance, Snapshot};
use crate::ops::{Fail, R};
use ecs_api::Code;
use rusqlite::{Connection, OptionalExtension};

pub struct Account {
    pub balance: f64,
    pub in_arrears: bool,
    pub snapshot_service: bool,
    pub kms_access: bool,
}

pub fn account(conn: &Connection, id: &str) -> R<Account> {
    conn.query_row("SELECT balance, in_arrears, snapshot_service, kms_access FROM accounts WHERE id=?1", [id], |r| {
        Ok(Account { balance: r.get(0)?, in_arrears: r.get(1)?, snapshot_service: r.get(2)?, kms_access: r.get(3)? })
    })
    .map_err(Fail::from)
}

/// A request that names a region sees only that region's resources, as a regional endpoint does.
fn in_region(env: &Env, region: &str) -> bool {
    env.region_id.is_none_or(|r| r == region)
}

pub fn disk(conn: &Connection, env: &Env, id: &str) -> R<Disk> {
    let sql = format!("SELECT {} FROM disks WHERE id=?1 AND account_id=?2", Disk::COLUMNS);
    match conn.query_row(&sql, [id, env.account_id], Disk::from_row).optional()? {
        None => Err(Code::InvalidDiskIdNotFound.into()),
        Some(d) if !in_region(env, &d.region_id) => Err(Code::InvalidDiskIdNotFound.into()),
        Some(d) if d.released => Err(Code::DiskNotFound.into()),
        Some(d) => Ok(d),
    }
}

pub fn instance(conn: &Connection, env: &Env, id: &str) -> R<Instance> {
    let sql = format!("SELECT {} FROM instances WHERE id=?1 AND account_id=?2 AND released=0", Instance::COLUMNS);
    conn.query_row(&sql, [id, env.account_id], Instance::from_row)
        .optional()?
        .filter(|i| in_region(env, &i.region_id))
        .ok_or_else(|| Code::InvalidInstanceIdNotFound.into())
}

pub fn snapshot(conn: &Connection, env: &Env, id: &str) -> R<Snapshot> {
    let sql = format!("SELECT {} FROM snapshots WHERE id=?1 AND account_id=?2 AND released=0", Snapshot::COLUMNS);
    conn.query_row(&sql, [id, env.account_id], Snapshot::from_row)
        .optional()?
        .filter(|s| in_region(env, &s.region_id))
        .ok_or_else(|| Code::InvalidSnapshotIdNotFound.into())
}

/// The instance a disk is on, if any, when the account may operate it (not locked for
/// security, not expired or in arrears).
pub fn usable_instance_of(conn: &Connection, env: &Env, acct: &Account, disk: &Disk) -> R<Option<Instance>> {
    match &disk.instance_id {
        Some(id) => {
            let inst = instance(conn, env, id)?;
            instance_usable(&inst, acct, env.now)?;
            Ok(Some(inst))
        }
        None => Ok(None),
    }
}

/// Disks of an instance that still point at it (attached, attaching or detaching).
pub fn instance_disks(conn: &Connection, instance_id: &str) -> R<Vec<Disk>> {
    let sql = format!("SELECT {} FROM disks WHERE instance_id=?1 AND released=0 ORDER BY device", Disk::COLUMNS);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([instance_id], Disk::from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// While the operator enforces the disk white list, only listed accounts manage disks.
pub fn whitelist(conn: &Connection, env: &Env) -> R<()> {
    let enforced: bool = conn
        .query_row("SELECT value FROM settings WHERE key='whitelist_enforced'", [], |r| r.get::<_, String>(0))
        .optional()?
        .is_some_and(|v| v == "true");
    if enforced {
        let listed: Option<String> = conn
            .query_row("SELECT account_id FROM whitelist WHERE account_id=?1", [env.account_id], |r| r.get(0))
            .optional()?;
        if listed.is_none() {
            return Err(Code::UserNotInTheWhiteList.into());
        }
    }
    Ok(())
}

pub fn snapshot_service(acct: &Account) -> R<()> {
    if !acct.snapshot_service {
        return Err(Code::SnapshotServiceUnavailable.into());
    }
    Ok(())
}

/// Operations that cost money need a balance that is not negative.
pub fn balance(acct: &Account) -> R<()> {
    if acct.balance < 0.0 {
        return Err(Code::NotEnoughBalance.into());
    }
    Ok(())
}

/// A security lock refuses everything; an expired prepaid instance, or a pay-as-you-go one
/// while the account is in arrears, refuses changes.
pub fn instance_usable(inst: &Instance, acct: &Account, now: i64) -> R<()> {
    if inst.lock_reason.as_deref() == Some("security") {
        return Err(Code::InstanceLockedForSecurity.into());
    }
    if inst.is_expired(now) || (inst.charge_type == "PostPaid" && acct.in_arrears) {
        return Err(Code::InstanceExpiredOrInArrears.into());
    }
    Ok(())
}

/// An encrypted resource with a customer key needs that key to exist, be enabled, and be
/// reachable by ECS.
pub fn kms(conn: &Connection, env: &Env, acct: &Account, key_id: Option<&str>) -> R<()> {
    let Some(key_id) = key_id.filter(|k| !k.is_empty()) else {
        return Ok(());
    };
    let state: Option<String> = conn
        .query_row("SELECT state FROM kms_keys WHERE id=?1 AND account_id=?2", [key_id, env.account_id], |r| r.get(0))
        .optional()?;
    match state.as_deref() {
        None => Err(Code::KmsNotFound.into()),
        Some("Enabled") if !acct.kms_access => Err(Code::KmsUnauthorized.into()),
        Some("Enabled") => Ok(()),
        Some(_) => Err(Code::KmsCmkNotEnabled.into()),
    }
}

/// The zone must be one of the request's region.
pub fn zone(env: &Env, zone_id: &str) -> R<()> {
    let region = env.region_id.unwrap_or_default();
    if env.config.zone(region, zone_id).is_none() {
        return Err(Code::InvalidZoneIdNotFound.into());
    }
    Ok(())
}
