//! The automatic snapshot scheduler (issue 9). A policy names hours of the day and days of the
//! week, in UTC+8 as the API reference documents them. For each disk under a policy, the
//! catalog keeps the schedule point of its last automatic snapshot (`auto_snapshot_last_ms`,
//! set to the moment of ApplyAutoSnapshotPolicy). When the latest point at or before now is
//! later than that, one snapshot is taken and the mark moves to that point: after a stop or a
//! restart, missed points are caught up once, not once each. Automatic snapshots are
//! `SnapshotType` `auto`, named `auto_<yyyymmdd>_<n>`, and are deleted once older than their
//! policy's RetentionDays (-1 keeps them); one used by an image or a disk stays.
//!
//! [`Control::run_auto_snapshots`] takes the time as a parameter: the server's ticker passes
//! the clock, tests and the operator's `auto-snapshot-run` pass the moment to act at.

use crate::model::now_ms;
use crate::ops::storage::{self, Intent};
use crate::{Control, ControlError, new_id};
use rusqlite::params;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// UTC+8, the zone of TimePoints.
const ZONE_MS: i64 = 8 * HOUR_MS;

/// The latest schedule point at or before `now` (Unix ms), for `hours` (0–23) on `weekdays`
/// (1 = Monday … 7 = Sunday), or `None` when the schedule is empty.
pub(crate) fn latest_point(now: i64, hours: &[u8], weekdays: &[u8]) -> Option<i64> {
    let local = now + ZONE_MS;
    let today = local.div_euclid(DAY_MS);
    for back in 0..8 {
        let day = today - back;
        // 1970-01-01 was a Thursday (4).
        let weekday = ((day + 3).rem_euclid(7) + 1) as u8;
        if !weekdays.contains(&weekday) {
            continue;
        }
        let mut hs: Vec<u8> = hours.to_vec();
        hs.sort_unstable_by(|a, b| b.cmp(a));
        for h in hs {
            let at = day * DAY_MS + i64::from(h) * HOUR_MS;
            if at <= local {
                return Some(at - ZONE_MS);
            }
        }
    }
    None
}

fn fail(e: crate::ops::Fail) -> ControlError {
    match e {
        crate::ops::Fail::Sql(e) => ControlError::Sql(e),
        crate::ops::Fail::Api(e) => ControlError::Invalid(e.to_string()),
    }
}

fn parse_list(s: &str) -> Vec<u8> {
    serde_json::from_str::<Vec<String>>(s).unwrap_or_default().iter().filter_map(|x| x.parse().ok()).collect()
}

/// The disk an automatic snapshot is taken of, as the snapshot row records it.
struct Source {
    account: String,
    region: String,
    size: i64,
    disk_type: String,
    category: String,
    encrypted: bool,
    kms: Option<String>,
}

/// What one pass did: snapshots taken and automatic snapshots deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AutoSnapshotRun {
    pub taken: Vec<String>,
    pub deleted: Vec<String>,
}

impl Control {
    /// CreateSnapshot's limits, for an automatic snapshot of `disk` owned by `account`:
    /// snapshot service open, balance, room on the disk, the account's quota.
    fn may_snapshot(&self, tx: &rusqlite::Transaction, account: &str, disk: &str) -> Result<(), crate::ops::Fail> {
        let acct = crate::guards::account(tx, account)?;
        crate::guards::snapshot_service(&acct)?;
        crate::guards::balance(&acct)?;
        crate::ops::room_for_snapshot(tx, disk)?;
        crate::fairness::quota(tx, account, &self.config.limits, crate::fairness::Quota::Snapshots, 1)
    }

    /// Take every automatic snapshot due at `now` (Unix ms) and delete the expired ones.
    pub fn run_auto_snapshots(&self, now: i64) -> Result<AutoSnapshotRun, ControlError> {
        let mut run = AutoSnapshotRun::default();
        let mut conn = self.lock();
        // A test clock ahead of the real one completes what is due by then, too.
        crate::transitions::complete_due_conn(&conn, now.max(now_ms()))?;
        let due: Vec<(String, Option<i64>, String, String, i64)> = {
            let mut stmt = conn.prepare_cached(
                "SELECT d.id, d.auto_snapshot_last_ms, p.time_points, p.repeat_weekdays, p.retention_days
                 FROM disks d JOIN auto_snapshot_policies p ON p.id = d.auto_snapshot_policy_id
                 WHERE d.released = 0 AND p.released = 0 AND (d.enable_auto_snapshot IS NULL OR d.enable_auto_snapshot)",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
                .collect::<Result<_, _>>()?
        };
        let timings = self.timings();
        let mut intents = Vec::new();
        let tx = conn.unchecked_transaction()?;
        for (disk, last, hours, weekdays, retention) in due {
            let Some(point) = latest_point(now, &parse_list(&hours), &parse_list(&weekdays)) else { continue };
            if last.is_some_and(|l| point <= l) {
                continue;
            }
            tx.execute("UPDATE disks SET auto_snapshot_last_ms=?2 WHERE id=?1", params![disk, point])?;
            // A disk that cannot be snapshotted now (busy, or a snapshot under way) misses
            // this point, as the cloud's would.
            let ok: Option<Source> = rusqlite::OptionalExtension::optional(tx.query_row(
                "SELECT d.account_id, d.region_id, d.size_gib, d.disk_type, d.category, d.encrypted, d.kms_key_id
                 FROM disks d WHERE d.id=?1 AND d.status IN ('In_use', 'Available')
                   AND NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.disk_id = d.id AND s.released = 0
                                   AND s.status = 'progressing' AND s.source_snapshot_id IS NULL)",
                [&disk],
                |r| {
                    Ok(Source {
                        account: r.get(0)?,
                        region: r.get(1)?,
                        size: r.get(2)?,
                        disk_type: r.get(3)?,
                        category: r.get(4)?,
                        encrypted: r.get(5)?,
                        kms: r.get(6)?,
                    })
                },
            ))?;
            let Some(Source { account, region, size, disk_type, category, encrypted, kms }) = ok else {
                tracing::warn!(disk = %disk, "automatic snapshot skipped: the disk is busy");
                continue;
            };
            // The limits of CreateSnapshot hold for automatic snapshots too: the point is missed.
            if let Err(e) = self.may_snapshot(&tx, &account, &disk) {
                tracing::warn!(disk = %disk, reason = ?e, "automatic snapshot skipped");
                continue;
            }
            let id = new_id("s-");
            // auto_<yyyymmdd>_<hour>, the point's day and hour in UTC+8.
            let local = crate::model::fmt_time(point + ZONE_MS);
            let name =
                format!("auto_{}_{}", local[..10].replace('-', ""), local[11..13].trim_start_matches('0').max("0"));
            // Taken as of `now` (its CreationTime, which RetentionDays counts from); it completes
            // SnapshotMs later by the real clock, whatever clock the schedule ran on.
            let due_ms = now_ms() + timings.snapshot_ms as i64;
            tx.execute(
                "INSERT INTO snapshots(id, account_id, region_id, disk_id, disk_size_gib, disk_type, disk_category,
                   name, description, status, created_ms, due_ms, encrypted, kms_key_id, retention_days, tags, auto)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, '', 'progressing', ?9, ?10, ?11, ?12, ?13, '[]', 1)",
                params![
                    id,
                    account,
                    region,
                    disk,
                    size,
                    disk_type,
                    category,
                    name,
                    now,
                    due_ms,
                    encrypted,
                    kms,
                    (retention > 0).then_some(retention)
                ],
            )?;
            crate::transitions::schedule(&tx, "snapshot", &id, due_ms)?;
            let intent = Intent::Snapshot { disk: disk.clone(), snapshot: id.clone() };
            intents.push((storage::record(&tx, &intent).map_err(fail)?, intent));
            run.taken.push(id);
        }
        // Retention: automatic snapshots older than their RetentionDays, unless in use.
        let expired: Vec<String> = {
            let mut stmt = tx.prepare_cached(
                "SELECT s.id FROM snapshots s WHERE s.auto = 1 AND s.released = 0 AND s.retention_days IS NOT NULL
                   AND s.created_ms + s.retention_days * 86400000 <= ?1
                   AND NOT EXISTS (SELECT 1 FROM images m WHERE m.snapshot_id = s.id AND m.released = 0)
                   AND NOT EXISTS (SELECT 1 FROM disks d WHERE d.source_snapshot_id = s.id AND d.released = 0)",
            )?;
            stmt.query_map([now], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        for s in &expired {
            tx.execute("UPDATE snapshots SET released=1 WHERE id=?1", [s])?;
            tx.execute("DELETE FROM transitions WHERE kind='snapshot' AND id=?1", [s])?;
            let intent = Intent::DeleteSnapshot { snapshot: s.clone() };
            intents.push((storage::record(&tx, &intent).map_err(fail)?, intent));
        }
        tx.commit()?;
        run.deleted = expired;
        if !intents.is_empty() {
            if let Some(e) = self.events.read().ok().and_then(|e| e.clone())
                && !run.deleted.is_empty()
            {
                e.revoke(&run.deleted);
            }
            storage::run(&mut conn, &self.volumes, &intents).map_err(fail)?;
        }
        if !run.taken.is_empty() || !run.deleted.is_empty() {
            tracing::info!(taken = run.taken.len(), deleted = run.deleted.len(), "automatic snapshots");
        }
        Ok(run)
    }
}

#[cfg(test)]
mod tests {
    use super::latest_point;

    #[test]
    fn points_are_hours_of_weekdays_in_utc_plus_8() {
        // 2026-11-30 is a Monday.
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_millis()).unwrap_or(0);
        let p = latest_point(at("2026-11-30T00:30:00+08:00"), &[2], &[1]);
        // Before 02:00 on Monday: the previous Monday's 02:00.
        assert_eq!(p, Some(at("2026-11-23T02:00:00+08:00")));
        assert_eq!(latest_point(at("2026-11-30T02:00:00+08:00"), &[2], &[1]), Some(at("2026-11-30T02:00:00+08:00")));
        assert_eq!(
            latest_point(at("2026-12-01T09:15:00+08:00"), &[2, 9], &[1, 2]),
            Some(at("2026-12-01T09:00:00+08:00"))
        );
        assert_eq!(
            latest_point(at("2026-12-01T08:59:00+08:00"), &[2, 9], &[1, 2]),
            Some(at("2026-12-01T02:00:00+08:00"))
        );
        assert_eq!(latest_point(at("2026-12-01T08:59:00+08:00"), &[], &[1]), None);
    }
}
