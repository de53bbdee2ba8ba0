//! Fair sharing between accounts: a request rate per account (token buckets, answered with
//! `Throttling.User` and the `x-acs-retry-after` header the SDKs wait on), and quotas on the
//! disks, snapshots and instances an account holds (the documented QuotaExceed codes). The
//! server's flags set the defaults; the operator's `account-limits` command overrides them
//! per account (table `account_limits`, a NULL column keeps the default).

use crate::config::Limits;
use crate::ops::R;
use ecs_api::{ApiError, Code};
use rusqlite::{Connection, OptionalExtension};
use std::collections::HashMap;
use std::sync::Mutex;

/// One account's bucket: `tokens` refill at `rate` a second up to `burst`.
struct Bucket {
    tokens: f64,
    last_ms: i64,
    rate: f64,
    burst: f64,
}

/// Request-rate limits per account. Holds one bucket per account that has made a request
/// (accounts are made by the operator, so the map is bounded by them).
#[derive(Default)]
pub(crate) struct Throttle {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Throttle {
    /// Take one request of `account` at `now_ms`. `limits` gives (requests a second, burst)
    /// the first time an account is seen (and after [`Throttle::forget`]); a rate of 0 means
    /// no limit. Errors with `Throttling.User` and the milliseconds until a token is back.
    pub fn take(&self, account: &str, now_ms: i64, limits: impl FnOnce() -> (u32, u32)) -> Result<(), ApiError> {
        let mut map = match self.buckets.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let b = match map.get_mut(account) {
            Some(b) => b,
            None => {
                let (rate, burst) = limits();
                let burst = f64::from(burst.max(rate).max(1));
                map.entry(account.to_string()).or_insert(Bucket {
                    tokens: burst,
                    last_ms: now_ms,
                    rate: f64::from(rate),
                    burst,
                })
            }
        };
        if b.rate <= 0.0 {
            return Ok(());
        }
        let elapsed = (now_ms - b.last_ms).max(0) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * b.rate).min(b.burst);
        b.last_ms = now_ms.max(b.last_ms);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait_ms = ((1.0 - b.tokens) / b.rate * 1000.0).ceil() as u64;
        Err(ApiError::throttled(Code::ThrottlingUser, wait_ms))
    }

    /// Drop every bucket, so that changed limits apply from the next request.
    pub fn forget(&self) {
        if let Ok(mut m) = self.buckets.lock() {
            m.clear();
        }
    }
}

/// `defaults` with the account's own overrides applied.
pub(crate) fn limits(conn: &Connection, account_id: &str, defaults: &Limits) -> rusqlite::Result<Limits> {
    let row = conn
        .query_row(
            "SELECT requests_per_second, burst, disks, snapshots, instances FROM account_limits WHERE account_id=?1",
            [account_id],
            |r| {
                Ok(Limits {
                    requests_per_second: r.get::<_, Option<u32>>(0)?.unwrap_or(defaults.requests_per_second),
                    burst: r.get::<_, Option<u32>>(1)?.unwrap_or(defaults.burst),
                    disks: r.get::<_, Option<i64>>(2)?.unwrap_or(defaults.disks),
                    snapshots: r.get::<_, Option<i64>>(3)?.unwrap_or(defaults.snapshots),
                    instances: r.get::<_, Option<i64>>(4)?.unwrap_or(defaults.instances),
                })
            },
        )
        .optional()?;
    Ok(row.unwrap_or_else(|| defaults.clone()))
}

/// What a quota counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Quota {
    Disks,
    Snapshots,
    Instances,
}

/// Refuse when `adding` more of `kind` would take the account past its quota (all regions;
/// released resources do not count). Run inside the creating transaction, so two creates
/// never both pass on the last unit.
pub(crate) fn quota(conn: &Connection, account_id: &str, defaults: &Limits, kind: Quota, adding: i64) -> R<()> {
    let l = limits(conn, account_id, defaults)?;
    let (counted, limit, code) = match kind {
        Quota::Disks => ("disk", l.disks, Code::QuotaExceedPortableCloudDisk),
        Quota::Snapshots => ("snapshot", l.snapshots, Code::QuotaExceedAccountSnapshot),
        Quota::Instances => ("instance", l.instances, Code::QuotaExceedElasticQuota),
    };
    let held: i64 = conn.query_row(
        "SELECT COALESCE(SUM(n), 0) FROM counts WHERE kind=?1 AND account_id=?2",
        [counted, account_id],
        |r| r.get(0),
    )?;
    if held.saturating_add(adding) > limit {
        return Err(code.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t = Throttle::default();
        for _ in 0..5 {
            assert!(t.take("a", 0, || (2, 5)).is_ok());
        }
        let e = t.take("a", 0, || (2, 5)).unwrap_err();
        assert_eq!(e.code, Code::ThrottlingUser);
        assert_eq!(e.retry_after_ms, Some(500), "one token at 2 a second");
        assert!(t.take("b", 0, || (2, 5)).is_ok(), "another account has its own bucket");
        assert!(t.take("a", 499, || (2, 5)).is_err());
        assert!(t.take("a", 1000, || (2, 5)).is_ok());
        // No limit at rate 0; forgetting re-reads the limits.
        t.forget();
        for _ in 0..100 {
            assert!(t.take("a", 1000, || (0, 0)).is_ok());
        }
    }
}
