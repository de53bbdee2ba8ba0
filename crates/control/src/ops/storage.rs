//! Storage changes, made crash-safe with intents. An action records its intent and its new
//! catalog state in one transaction, commits, calls the store, then clears the intent in a
//! second transaction (undoing the catalog change if the store refused). A crash between the
//! two commits leaves the intent behind; `recover_intents` replays it on start, and since every
//! store operation is idempotent the replay is harmless.

use super::R;
use crate::ControlError;
use crate::config::Timings;
use crate::volumes::{FaultInjector, VolumeError, Volumes};
use rusqlite::{Connection, Transaction, params};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Intent {
    Create {
        disk: String,
        size_bytes: u64,
        source: Option<String>,
    },
    Snapshot {
        disk: String,
        snapshot: String,
    },
    Reset {
        disk: String,
        snapshot: String,
    },
    /// ResizeDisk: grow to `size_bytes`; `old_gib` is the catalog size to restore if the
    /// store refuses (kept in the intent's `snapshot` column, as text).
    Resize {
        disk: String,
        size_bytes: u64,
        old_gib: i64,
    },
    /// ReInitDisk: back to `source` (a snapshot) or to zeros.
    ReInit {
        disk: String,
        source: Option<String>,
    },
    DeleteVolume {
        disk: String,
    },
    DeleteSnapshot {
        snapshot: String,
    },
    /// CopySnapshot: `to` becomes a copy of `from`.
    CopySnapshot {
        from: String,
        to: String,
    },
    /// CreateSnapshotGroup: (disk, snapshot) pairs frozen at one point.
    SnapshotGroup {
        members: Vec<(String, String)>,
    },
}

impl Intent {
    fn columns(&self) -> (&'static str, &str, Option<String>, Option<i64>) {
        match self {
            Intent::Resize { disk, size_bytes, old_gib } => {
                ("resize", disk, Some(old_gib.to_string()), Some(*size_bytes as i64))
            }
            Intent::ReInit { disk, source } => ("reinit", disk, source.clone(), None),
            Intent::Create { disk, size_bytes, source } => ("create", disk, source.clone(), Some(*size_bytes as i64)),
            Intent::Snapshot { disk, snapshot } => ("snapshot", disk, Some(snapshot.clone()), None),
            Intent::Reset { disk, snapshot } => ("reset", disk, Some(snapshot.clone()), None),
            Intent::DeleteVolume { disk } => ("delete_volume", disk, None, None),
            Intent::DeleteSnapshot { snapshot } => ("delete_snapshot", snapshot, None, None),
            Intent::CopySnapshot { from, to } => ("copy_snapshot", from, Some(to.clone()), None),
            Intent::SnapshotGroup { members } => (
                "snapshot_group",
                members.first().map(|m| m.0.as_str()).unwrap_or_default(),
                serde_json::to_string(members).ok(),
                None,
            ),
        }
    }

    fn from_columns(op: &str, volume: String, snapshot: Option<String>, size: Option<i64>) -> Option<Intent> {
        Some(match op {
            "create" => Intent::Create { disk: volume, size_bytes: size.unwrap_or(0) as u64, source: snapshot },
            "snapshot" => Intent::Snapshot { disk: volume, snapshot: snapshot? },
            "reset" => Intent::Reset { disk: volume, snapshot: snapshot? },
            "resize" => Intent::Resize {
                disk: volume,
                size_bytes: size? as u64,
                old_gib: snapshot.and_then(|s| s.parse().ok())?,
            },
            "reinit" => Intent::ReInit { disk: volume, source: snapshot },
            "delete_volume" => Intent::DeleteVolume { disk: volume },
            "delete_snapshot" => Intent::DeleteSnapshot { snapshot: volume },
            "copy_snapshot" => Intent::CopySnapshot { from: volume, to: snapshot? },
            "snapshot_group" => Intent::SnapshotGroup { members: serde_json::from_str(&snapshot?).ok()? },
            _ => return None,
        })
    }

    pub(crate) fn apply(&self, v: &dyn Volumes) -> Result<(), VolumeError> {
        match self {
            Intent::Create { disk, size_bytes, source } => v.create(disk, *size_bytes, source.as_deref()),
            Intent::Snapshot { disk, snapshot } => v.snapshot(disk, snapshot),
            Intent::Reset { disk, snapshot } => v.reset(disk, snapshot),
            Intent::Resize { disk, size_bytes, .. } => v.resize(disk, *size_bytes),
            Intent::ReInit { disk, source } => v.reinit(disk, source.as_deref()),
            Intent::DeleteVolume { disk } => v.delete_volume(disk),
            Intent::DeleteSnapshot { snapshot } => v.delete_snapshot(snapshot),
            Intent::CopySnapshot { from, to } => v.copy_snapshot(from, to),
            Intent::SnapshotGroup { members } => {
                let pairs: Vec<(&str, &str)> = members.iter().map(|(d, s)| (d.as_str(), s.as_str())).collect();
                v.snapshot_group(&pairs)
            }
        }
    }

    /// Undo the catalog side of an intent the store refused.
    pub(crate) fn undo(&self, tx: &Transaction) -> rusqlite::Result<()> {
        match self {
            Intent::Create { disk, .. } => {
                tx.execute("DELETE FROM disks WHERE id=?1", [disk])?;
                tx.execute("DELETE FROM transitions WHERE kind='disk' AND id=?1", [disk])?;
            }
            Intent::Snapshot { snapshot, .. } => {
                tx.execute("UPDATE snapshots SET status='failed' WHERE id=?1", [snapshot])?;
                tx.execute("DELETE FROM transitions WHERE kind='snapshot' AND id=?1", [snapshot])?;
            }
            Intent::Resize { disk, old_gib, .. } => {
                tx.execute("UPDATE disks SET size_gib=?2 WHERE id=?1", params![disk, old_gib])?;
            }
            Intent::Reset { disk, .. } | Intent::ReInit { disk, .. } => {
                tx.execute(
                    "UPDATE disks SET status=CASE WHEN instance_id IS NULL THEN 'Available' ELSE 'In_use' END WHERE id=?1",
                    [disk],
                )?;
                tx.execute("DELETE FROM transitions WHERE kind='disk' AND id=?1", [disk])?;
            }
            Intent::DeleteVolume { disk } => {
                tx.execute("UPDATE disks SET released=0 WHERE id=?1", [disk])?;
            }
            Intent::DeleteSnapshot { snapshot } => {
                tx.execute("UPDATE snapshots SET released=0 WHERE id=?1", [snapshot])?;
            }
            Intent::CopySnapshot { to, .. } => {
                tx.execute("UPDATE snapshots SET status='failed' WHERE id=?1", [to])?;
                tx.execute("DELETE FROM transitions WHERE kind='snapshot' AND id=?1", [to])?;
            }
            Intent::SnapshotGroup { members } => {
                for (_, snapshot) in members {
                    tx.execute("UPDATE snapshots SET status='failed' WHERE id=?1", [snapshot])?;
                    tx.execute("DELETE FROM transitions WHERE kind='snapshot' AND id=?1", [snapshot])?;
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn record(tx: &Transaction, intent: &Intent) -> R<i64> {
    let (op, volume, snapshot, size) = intent.columns();
    tx.execute(
        "INSERT INTO intents(op, volume, snapshot, size_bytes) VALUES(?1, ?2, ?3, ?4)",
        params![op, volume, snapshot, size],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Runs recorded intents against the store and settles them: failures are undone in the
/// catalog. Returns which intents failed.
/// A disk's reset to other bytes (ResetDisk, ReInitDisk) in the transaction `tx`: the disk
/// goes `ReIniting` for `DiskMs` and `intent` is recorded; returns the intent's id, for
/// [`run_one`] once `tx` has committed.
pub(crate) fn begin_reiniting(tx: &Transaction, env: &crate::Env, disk_id: &str, intent: &Intent) -> R<i64> {
    tx.execute("UPDATE disks SET status='ReIniting' WHERE id=?1", [disk_id])?;
    crate::transitions::schedule(tx, "disk", disk_id, env.now + env.timings.disk_ms as i64)?;
    record(tx, intent)
}

/// [`run`] for one intent: any store failure is the action's `InternalError`.
pub(crate) fn run_one(conn: &mut Connection, env: &crate::Env, id: i64, intent: Intent) -> R<()> {
    if !run(conn, env.volumes, &[(id, intent)])?.is_empty() {
        return Err(super::Fail::Api(ecs_api::ApiError::new(ecs_api::Code::InternalError)));
    }
    Ok(())
}

///
/// Only a definite refusal is undone. A failure part way (an I/O error: the store may have
/// recorded the change) keeps its intent, to be replayed when the store works again; so does
/// any failure while recovering with an unavailable store.
pub(crate) fn run(
    conn: &mut Connection,
    volumes: &dyn Volumes,
    intents: &[(i64, Intent)],
) -> R<Vec<(Intent, VolumeError)>> {
    run_inner(conn, volumes, intents, false)
}

fn run_inner(
    conn: &mut Connection,
    volumes: &dyn Volumes,
    intents: &[(i64, Intent)],
    recovering: bool,
) -> R<Vec<(Intent, VolumeError)>> {
    let mut failed = Vec::new();
    let mut results = Vec::new();
    for (id, intent) in intents {
        results.push((*id, intent, intent.apply(volumes)));
    }
    let tx = super::begin(conn)?;
    for (id, intent, result) in results {
        match result {
            Ok(()) => {
                tx.execute("DELETE FROM intents WHERE id=?1", [id])?;
            }
            Err(e) => {
                let unavailable = matches!(e, VolumeError::Unavailable(_));
                if e.is_definite() && !(recovering && unavailable) {
                    tracing::warn!(?intent, error = %e, "storage refused; undoing the catalog change");
                    tx.execute("DELETE FROM intents WHERE id=?1", [id])?;
                    intent.undo(&tx)?;
                } else {
                    tracing::error!(?intent, error = %e, "storage failed; the intent is kept for replay");
                }
                failed.push((intent.clone(), e));
            }
        }
    }
    tx.commit()?;
    Ok(failed)
}

pub(crate) fn recover_intents(
    conn: &mut Connection,
    volumes: &FaultInjector<Box<dyn Volumes>>,
    _timings: Timings,
) -> Result<(), ControlError> {
    let pending: Vec<(i64, Intent)> = {
        let mut stmt = conn.prepare("SELECT id, op, volume, snapshot, size_bytes FROM intents ORDER BY id")?;
        let rows =
            stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, op, volume, snapshot, size) = row?;
            match Intent::from_columns(&op, volume, snapshot, size) {
                Some(i) => out.push((id, i)),
                None => {
                    return Err(ControlError::Invalid(format!("unknown intent {op} in the catalog")));
                }
            }
        }
        out
    };
    if pending.is_empty() {
        return Ok(());
    }
    tracing::info!(count = pending.len(), "replaying storage intents left by an interrupted run");
    run_inner(conn, volumes, &pending, true).map_err(|f| match f {
        super::Fail::Sql(e) => ControlError::Sql(e),
        super::Fail::Api(e) => ControlError::Invalid(e.message),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Control;
    use crate::config::Config;
    use ecs_api::action::Action;
    use ecs_api::params::Params;
    use std::sync::Arc;
    use store::{BlockRead, BlockWrite};

    fn open(dir: &std::path::Path) -> (Control, Arc<store::Engine>) {
        let engine = store::Engine::open(&dir.join("store")).unwrap();
        let c = Control::open(dir, Config::default(), Box::new(engine.clone())).unwrap();
        (c, engine)
    }

    fn call(c: &Control, acct: &str, action: &str, p: &[(&str, &str)]) -> serde_json::Value {
        let pairs = p.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let req = Action::parse(action, &Params::from_pairs(pairs)).unwrap();
        c.handle(acct, req).unwrap()
    }

    fn first_block(engine: &store::Engine, disk: &str) -> u8 {
        let mut buf = [0u8; 4096];
        engine.volume(disk).unwrap().read_at(&mut buf, 0).unwrap();
        buf[0]
    }

    #[test]
    fn an_interrupted_reset_is_replayed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let (c, engine) = open(dir.path());
        let acct = c.bootstrap(None).unwrap().account_id;
        c.admin("timings", serde_json::json!({"DiskMs": 0, "SnapshotMs": 0})).unwrap();
        let zone = [("RegionId", "cn-hangzhou"), ("ZoneId", "cn-hangzhou-h"), ("Size", "20")];
        let d = call(&c, &acct, "CreateDisk", &zone)["DiskId"].as_str().unwrap().to_string();
        c.tick().unwrap();
        let s = call(&c, &acct, "CreateSnapshot", &[("DiskId", &d)])["SnapshotId"].as_str().unwrap().to_string();
        c.tick().unwrap();
        engine.volume(&d).unwrap().write_at(&[9u8; 4096], 0, true).unwrap();
        // What the first commit of a reset leaves if the process dies before the store runs.
        {
            let mut conn = c.lock();
            let tx = conn.transaction().unwrap();
            tx.execute("UPDATE disks SET status='ReIniting' WHERE id=?1", [&d]).unwrap();
            record(&tx, &Intent::Reset { disk: d.clone(), snapshot: s.clone() }).unwrap();
            tx.commit().unwrap();
        }
        drop(c);
        drop(engine);
        let (c, engine) = open(dir.path());
        let left: i64 = c.lock().query_row("SELECT COUNT(*) FROM intents", [], |r| r.get(0)).unwrap();
        assert_eq!(left, 0);
        assert_eq!(first_block(&engine, &d), 0, "the reset was replayed: the snapshot's bytes are back");
    }

    #[test]
    fn an_interrupted_resize_is_replayed_and_a_refused_one_undone() {
        use store::BlockRead;
        let dir = tempfile::tempdir().unwrap();
        let (c, engine) = open(dir.path());
        let acct = c.bootstrap(None).unwrap().account_id;
        let zone = [("RegionId", "cn-hangzhou"), ("ZoneId", "cn-hangzhou-h"), ("Size", "20")];
        let d = call(&c, &acct, "CreateDisk", &zone)["DiskId"].as_str().unwrap().to_string();
        let e = call(&c, &acct, "CreateDisk", &zone)["DiskId"].as_str().unwrap().to_string();
        // What the first commit of ResizeDisk leaves if the process dies before the store runs;
        // and one the store will refuse (a shrink).
        {
            let mut conn = c.lock();
            let tx = conn.transaction().unwrap();
            tx.execute("UPDATE disks SET size_gib=30 WHERE id=?1", [&d]).unwrap();
            record(&tx, &Intent::Resize { disk: d.clone(), size_bytes: 30 << 30, old_gib: 20 }).unwrap();
            tx.execute("UPDATE disks SET size_gib=10 WHERE id=?1", [&e]).unwrap();
            record(&tx, &Intent::Resize { disk: e.clone(), size_bytes: 10 << 30, old_gib: 20 }).unwrap();
            tx.commit().unwrap();
        }
        drop(c);
        drop(engine);
        let (c, engine) = open(dir.path());
        assert_eq!(engine.volume(&d).unwrap().size(), 30 << 30, "the resize was replayed");
        assert_eq!(engine.volume(&e).unwrap().size(), 20 << 30, "the store refused the shrink");
        let size = |id: &str| -> i64 {
            c.lock().query_row("SELECT size_gib FROM disks WHERE id=?1", [id], |r| r.get(0)).unwrap()
        };
        assert_eq!((size(&d), size(&e)), (30, 20), "the refused intent's catalog change was undone");
    }

    #[test]
    fn an_intent_the_store_refuses_on_replay_is_undone() {
        let dir = tempfile::tempdir().unwrap();
        let (c, engine) = open(dir.path());
        let acct = c.bootstrap(None).unwrap().account_id;
        let zone = [("RegionId", "cn-hangzhou"), ("ZoneId", "cn-hangzhou-h"), ("Size", "20")];
        let d = call(&c, &acct, "CreateDisk", &zone)["DiskId"].as_str().unwrap().to_string();
        engine.volume(&d).unwrap().write_at(&[9u8; 4096], 0, true).unwrap();
        {
            let mut conn = c.lock();
            let tx = conn.transaction().unwrap();
            tx.execute("UPDATE disks SET status='ReIniting' WHERE id=?1", [&d]).unwrap();
            record(&tx, &Intent::Reset { disk: d.clone(), snapshot: "s-never-taken".into() }).unwrap();
            tx.commit().unwrap();
        }
        drop(c);
        drop(engine);
        let (c, engine) = open(dir.path());
        let status: String = c.lock().query_row("SELECT status FROM disks WHERE id=?1", [&d], |r| r.get(0)).unwrap();
        assert_eq!(status, "Available");
        assert_eq!(first_block(&engine, &d), 9, "the disk kept its bytes");
    }
}
