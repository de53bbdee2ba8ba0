//! Timed state changes (Creating → Available, Stopping → Stopped, ReIniting → In_use, ...).
//! A transition is a persisted row with a due time, so a restart finishes what was under way.
//! The target state is derived from the resource itself when the transition completes, and
//! times it sets (AttachedTime, StartTime, ...) are the due time, not the moment the ticker got
//! to it: that is what the catalog's `*_now` views show before completion (see `db.rs`), so a
//! reader sees the same thing whether or not the ticker has run.

use rusqlite::{Connection, Transaction, params};

pub(crate) fn schedule(tx: &Transaction, kind: &str, id: &str, due_ms: i64) -> rusqlite::Result<()> {
    tx.execute("INSERT OR REPLACE INTO transitions(kind, id, due_ms) VALUES(?1, ?2, ?3)", params![kind, id, due_ms])?;
    Ok(())
}

/// Complete every transition due at `now`; some start the next one (Pending → Starting).
pub(crate) fn complete_due(conn: &mut Connection, now: i64) -> rusqlite::Result<()> {
    complete_due_conn(conn, now)
}

/// The same on a shared connection (the caller holds the catalog lock).
pub(crate) fn complete_due_conn(conn: &Connection, now: i64) -> rusqlite::Result<()> {
    // The common case is nothing due: answer it without a write transaction.
    let due: bool =
        conn.query_row("SELECT EXISTS(SELECT 1 FROM transitions WHERE due_ms <= ?1)", [now], |r| r.get(0))?;
    if !due {
        return Ok(());
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let rows: Vec<(String, String, i64)> = {
        let mut stmt = tx.prepare("SELECT kind, id, due_ms FROM transitions WHERE due_ms <= ?1 ORDER BY due_ms")?;
        stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?
    };
    for (kind, id, due) in rows {
        tx.execute("DELETE FROM transitions WHERE kind=?1 AND id=?2", [&kind, &id])?;
        match kind.as_str() {
            "disk" => complete_disk(&tx, &id, due)?,
            "instance" => complete_instance(&tx, &id, due)?,
            "snapshot" => {
                tx.execute("UPDATE snapshots SET status='accomplished' WHERE id=?1 AND status='progressing'", [&id])?;
            }
            // CopyImage: the copy is Available once its snapshot is.
            "image" => {
                tx.execute(
                    "UPDATE images SET status='Available', progress=100 WHERE id=?1 AND status='Creating'",
                    [&id],
                )?;
            }
            other => tracing::warn!(kind = other, "unknown transition kind"),
        }
    }
    tx.commit()
}

fn complete_disk(tx: &Transaction, id: &str, at: i64) -> rusqlite::Result<()> {
    let status: Option<String> =
        rusqlite::OptionalExtension::optional(
            tx.query_row("SELECT status FROM disks WHERE id=?1", [id], |r| r.get(0)),
        )?;
    match status.as_deref() {
        Some("Creating") | Some("ReIniting") => {
            tx.execute(
                "UPDATE disks SET status=CASE WHEN instance_id IS NULL THEN 'Available' ELSE 'In_use' END,
                 attached_ms=CASE WHEN instance_id IS NULL OR status='ReIniting' THEN attached_ms ELSE ?2 END
                 WHERE id=?1",
                params![id, at],
            )?;
        }
        Some("Attaching") => {
            tx.execute("UPDATE disks SET status='In_use', attached_ms=?2 WHERE id=?1", params![id, at])?;
        }
        Some("Detaching") => {
            tx.execute(
                "UPDATE disks SET status='Available', instance_id=NULL, device=NULL, detached_ms=?2 WHERE id=?1",
                params![id, at],
            )?;
        }
        _ => {}
    }
    Ok(())
}

/// `InstanceMs` as the catalog holds it, for a state that leads to the next one.
fn instance_step(tx: &Transaction) -> i64 {
    tx.query_row("SELECT value FROM settings WHERE key='timings'", [], |r| r.get::<_, String>(0))
        .ok()
        .and_then(|v| serde_json::from_str::<crate::config::Timings>(&v).ok())
        .map(|t| t.instance_ms as i64)
        .unwrap_or(0)
}

/// Whether instances run VMs in this server (`Control::set_machines`).
pub(crate) fn machines_on(conn: &Connection) -> bool {
    conn.query_row("SELECT 1 FROM settings WHERE key='machines'", [], |_| Ok(())).is_ok()
}

fn complete_instance(tx: &Transaction, id: &str, at: i64) -> rusqlite::Result<()> {
    let row: Option<(String, Option<String>)> = rusqlite::OptionalExtension::optional(tx.query_row(
        "SELECT status, pending_target FROM instances WHERE id=?1 AND released=0",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    ))?;
    let Some((status, target)) = row else {
        return Ok(());
    };
    match status.as_str() {
        "Pending" if target.as_deref() == Some("Starting") => {
            tx.execute("UPDATE instances SET status='Starting', pending_target=NULL WHERE id=?1", [id])?;
            // With VMs, Starting lasts until the VM runs (`machines`), not for a set time.
            if !machines_on(tx) {
                schedule(tx, "instance", id, at + instance_step(tx))?;
            }
        }
        "Pending" => {
            tx.execute("UPDATE instances SET status='Stopped', pending_target=NULL WHERE id=?1", [id])?;
        }
        "Starting" => {
            tx.execute("UPDATE instances SET status='Running', start_ms=?2 WHERE id=?1", params![id, at])?;
        }
        // RebootInstance: Stopping with a pending Starting goes on to Starting, then Running.
        "Stopping" if target.as_deref() == Some("Starting") => {
            tx.execute("UPDATE instances SET status='Starting', pending_target=NULL WHERE id=?1", [id])?;
            schedule(tx, "instance", id, at + instance_step(tx))?;
        }
        "Stopping" => {
            tx.execute("UPDATE instances SET status='Stopped' WHERE id=?1", [id])?;
        }
        _ => {}
    }
    Ok(())
}
