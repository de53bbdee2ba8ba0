//! What the NBD data plane may serve, and the hook through which the control plane closes it.
//! A disk is served read-write only while it is attached to a Running instance (the instance
//! is its writer); a snapshot is served read-only once it is accomplished.

use crate::Control;
use rusqlite::OptionalExtension;

/// How an export may be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    ReadWrite,
    ReadOnly,
}

/// Why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    Unknown,
    Policy(String),
}

/// Called after a change that takes exports away (instance stopping or released, disk
/// detached, snapshot deleted), before the API answers: the data plane closes every
/// connection to them, draining and flushing first.
pub trait Events: Send + Sync {
    fn revoke(&self, exports: &[String]);
}

impl Control {
    pub fn set_events(&self, events: std::sync::Arc<dyn Events>) {
        if let Ok(mut e) = self.events.write() {
            *e = Some(events);
        }
    }

    pub fn export_grant(&self, name: &str) -> Result<Grant, Denied> {
        let conn = self.lock();
        let now = crate::model::now_ms();
        if let Err(e) = crate::transitions::complete_due_conn(&conn, now) {
            tracing::warn!(error = %e, "completing transitions before an export check");
        }
        let disk: Option<(Option<String>, String)> = conn
            .query_row("SELECT instance_id, status FROM disks WHERE id=?1 AND released=0", [name], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(|e| Denied::Policy(e.to_string()))?;
        if let Some((instance, status)) = disk {
            let Some(instance) = instance.filter(|_| status == "In_use") else {
                return Err(Denied::Policy(format!("disk {name} is {status}, not attached to an instance")));
            };
            type Row = (String, Option<String>, String, Option<i64>, bool);
            let inst: Option<Row> = conn
                .query_row(
                    "SELECT i.status, i.lock_reason, i.charge_type, i.expired_ms, a.in_arrears
                     FROM instances i JOIN accounts a ON a.id = i.account_id WHERE i.id=?1 AND i.released=0",
                    [&instance],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()
                .map_err(|e| Denied::Policy(e.to_string()))?;
            return match inst {
                Some((_, Some(lock), ..)) if lock == "security" => {
                    Err(Denied::Policy(format!("instance {instance} of disk {name} is locked for security")))
                }
                Some((_, _, charge, expired, arrears))
                    if (charge == "PrePaid" && expired.is_some_and(|e| e <= now))
                        || (charge == "PostPaid" && arrears) =>
                {
                    Err(Denied::Policy(format!("instance {instance} of disk {name} is expired or in arrears")))
                }
                Some((s, ..)) if s == "Running" => Ok(Grant::ReadWrite),
                // With VMs, the instance's VM is its disks' writer from the moment it starts
                // until it has ended (the guest flushes while powering off).
                Some((s, ..))
                    if (s == "Starting" || s == "Stopping")
                        && self.machines().is_some_and(|m| {
                            matches!(
                                m.state(&instance),
                                crate::machines::MachineState::Launching
                                    | crate::machines::MachineState::Running { .. }
                            )
                        }) =>
                {
                    Ok(Grant::ReadWrite)
                }
                Some((s, ..)) => Err(Denied::Policy(format!("instance {instance} of disk {name} is {s}, not Running"))),
                None => Err(Denied::Policy(format!("instance {instance} of disk {name} is gone"))),
            };
        }
        let snap: Option<String> = conn
            .query_row("SELECT status FROM snapshots WHERE id=?1 AND released=0", [name], |r| r.get(0))
            .optional()
            .map_err(|e| Denied::Policy(e.to_string()))?;
        match snap.as_deref() {
            Some("accomplished") => Ok(Grant::ReadOnly),
            Some(s) => Err(Denied::Policy(format!("snapshot {name} is {s}"))),
            None => Err(Denied::Unknown),
        }
    }

    /// Whether account `id` exists.
    pub fn account_exists(&self, id: &str) -> bool {
        let conn = self.lock();
        conn.query_row("SELECT 1 FROM accounts WHERE id=?1", [id], |_| Ok(())).optional().ok().flatten().is_some()
    }

    /// The account that owns export `name` (a disk or a snapshot, released or not), if any.
    pub fn export_account(&self, name: &str) -> Option<String> {
        let conn = self.lock();
        conn.query_row(
            "SELECT account_id FROM disks WHERE id=?1 UNION ALL SELECT account_id FROM snapshots WHERE id=?1",
            [name],
            |r| r.get(0),
        )
        .optional()
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "finding an export's account");
            None
        })
    }

    /// Every export that could be opened now; with `account`, only that account's.
    pub fn export_names(&self, account: Option<&str>) -> Vec<String> {
        let conn = self.lock();
        let mut out = Vec::new();
        let q =
            "SELECT d.id FROM disks d JOIN instances i ON i.id = d.instance_id JOIN accounts a ON a.id = i.account_id
                 WHERE d.released=0 AND d.status='In_use' AND i.released=0 AND i.status='Running'
                   AND (i.lock_reason IS NULL OR i.lock_reason <> 'security')
                   AND NOT (i.charge_type='PrePaid' AND i.expired_ms IS NOT NULL AND i.expired_ms <= ?1)
                   AND NOT (i.charge_type='PostPaid' AND a.in_arrears)
                   AND (?2 IS NULL OR d.account_id = ?2)
                 UNION ALL SELECT id FROM snapshots WHERE released=0 AND status='accomplished'
                   AND (?2 IS NULL OR account_id = ?2) ORDER BY 1";
        let now = crate::model::now_ms();
        let rows = |s: &mut rusqlite::Statement| -> rusqlite::Result<Vec<String>> {
            s.query_map(rusqlite::params![now, account], |r| r.get::<_, String>(0))?.collect()
        };
        match conn.prepare(q).and_then(|mut s| rows(&mut s)) {
            Ok(v) => out = v,
            Err(e) => tracing::warn!(error = %e, "listing exports"),
        }
        out
    }
}
