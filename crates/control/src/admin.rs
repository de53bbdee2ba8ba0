//! The operator interface (docs/operator.md): conditions a real cloud's back office sets,
//! so that every documented ECS error can be reached. The transport authenticates the
//! operator; here each command is validated and applied in one transaction.

use crate::config::Timings;
use crate::model::now_ms;
use crate::volumes::Volumes;
use crate::{Control, new_key_pair};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdminError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("catalog failure: {0}")]
    Internal(String),
}

impl AdminError {
    pub fn status(&self) -> u16 {
        match self {
            AdminError::BadRequest(_) => 400,
            AdminError::NotFound(_) => 404,
            AdminError::Internal(_) => 500,
        }
    }
}

impl From<rusqlite::Error> for AdminError {
    fn from(e: rusqlite::Error) -> Self {
        AdminError::Internal(e.to_string())
    }
}

type AResult = Result<Value, AdminError>;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct AccountCreate {
    name: Option<String>,
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct AccountRef {
    account_id: String,
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct KeyRef {
    access_key_id: String,
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct InstanceLock {
    instance_id: String,
    lock_reason: Option<String>,
    lock_msg: Option<String>,
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct InstanceRef {
    instance_id: String,
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Billing {
    account_id: String,
    balance: Option<f64>,
    in_arrears: Option<bool>,
}
/// `account-limits`: override the server's defaults for one account; an omitted field keeps
/// what was set before (or the default). Answers the limits now in force.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct AccountLimits {
    account_id: String,
    requests_per_second: Option<u32>,
    burst: Option<u32>,
    disks: Option<i64>,
    snapshots: Option<i64>,
    instances: Option<i64>,
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SnapshotService {
    account_id: String,
    open: bool,
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Whitelist {
    enforced: Option<bool>,
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct KmsRef {
    key_id: String,
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct KmsAccess {
    account_id: String,
    granted: bool,
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SnapshotImport {
    account_id: String,
    disk_id: String,
    creation_time: String,
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct FaultInject {
    operation: String,
    count: Option<u32>,
}
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct TimingsPatch {
    disk_ms: Option<u64>,
    instance_ms: Option<u64>,
    snapshot_ms: Option<u64>,
}

/// The commands, for `--help` and for the CLI.
pub const COMMANDS: &[&str] = &[
    "account-create",
    "key-create",
    "key-disable",
    "key-enable",
    "instance-lock",
    "instance-unlock",
    "instance-expire",
    "account-billing",
    "snapshot-service",
    "whitelist",
    "kms-create",
    "kms-enable",
    "kms-disable",
    "kms-delete",
    "kms-ecs-access",
    "snapshot-import",
    "fault-inject",
    "timings",
];

fn parse<T: for<'de> Deserialize<'de>>(body: Value) -> Result<T, AdminError> {
    let body = if body.is_null() { json!({}) } else { body };
    serde_json::from_value(body).map_err(|e| AdminError::BadRequest(format!("bad body: {e}")))
}

pub(crate) fn insert_account(conn: &Connection, name: &str) -> rusqlite::Result<String> {
    use rand::Rng;
    let id: String = {
        let mut rng = rand::rng();
        format!("{}", rng.random_range(1_000_000_000_000_000u64..9_999_999_999_999_999))
    };
    conn.execute("INSERT INTO accounts(id, name, created_ms) VALUES(?1, ?2, ?3)", params![id, name, now_ms()])?;
    Ok(id)
}

fn changed(n: usize, what: &str, id: &str) -> AResult {
    if n == 0 {
        return Err(AdminError::NotFound(format!("no {what} {id}")));
    }
    Ok(json!({}))
}

fn require_account(conn: &Connection, id: &str) -> Result<(), AdminError> {
    let found: Option<String> = conn.query_row("SELECT id FROM accounts WHERE id=?1", [id], |r| r.get(0)).optional()?;
    found.map(|_| ()).ok_or_else(|| AdminError::NotFound(format!("no account {id}")))
}

impl Control {
    /// Run one operator command with its JSON body.
    pub fn admin(&self, command: &str, body: Value) -> AResult {
        // Keys and accounts may change: the next request reads them afresh.
        self.forget_keys();
        let out = self.admin_inner(command, body);
        self.forget_keys();
        out
    }

    fn admin_inner(&self, command: &str, body: Value) -> AResult {
        match command {
            "fault-inject" => {
                let f: FaultInject = parse(body)?;
                if !self.volumes.arm(&f.operation, f.count.unwrap_or(1)) {
                    return Err(AdminError::BadRequest(format!(
                        "unknown Operation {}; one of {:?}",
                        f.operation,
                        crate::volumes::FAULT_OPERATIONS
                    )));
                }
                return Ok(json!({}));
            }
            "auto-snapshot-run" => {
                // The scheduler at a given moment (a test clock): {"Now": RFC 3339}, else now.
                let now = match body.get("Now").and_then(Value::as_str) {
                    None => crate::model::now_ms(),
                    Some(t) => chrono::DateTime::parse_from_rfc3339(t)
                        .map_err(|e| AdminError::BadRequest(format!("Now: {e}")))?
                        .timestamp_millis(),
                };
                let run = self.run_auto_snapshots(now).map_err(|e| AdminError::Internal(e.to_string()))?;
                return Ok(json!({"Taken": run.taken, "Deleted": run.deleted}));
            }
            "timings" => {
                let p: TimingsPatch = parse(body)?;
                let mut t: Timings = self.timings();
                t.disk_ms = p.disk_ms.unwrap_or(t.disk_ms);
                t.instance_ms = p.instance_ms.unwrap_or(t.instance_ms);
                t.snapshot_ms = p.snapshot_ms.unwrap_or(t.snapshot_ms);
                self.set_setting("timings", &t).map_err(|e| AdminError::Internal(e.to_string()))?;
                self.cache_timings(t);
                return serde_json::to_value(t).map_err(|e| AdminError::Internal(e.to_string()));
            }
            "account-limits" => {
                let l: AccountLimits = parse(body)?;
                let conn = self.lock();
                require_account(&conn, &l.account_id)?;
                conn.execute(
                    "INSERT INTO account_limits(account_id, requests_per_second, burst, disks, snapshots, instances)
                     VALUES(?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(account_id) DO UPDATE SET
                       requests_per_second = COALESCE(?2, requests_per_second), burst = COALESCE(?3, burst),
                       disks = COALESCE(?4, disks), snapshots = COALESCE(?5, snapshots),
                       instances = COALESCE(?6, instances)",
                    params![l.account_id, l.requests_per_second, l.burst, l.disks, l.snapshots, l.instances],
                )?;
                let now = crate::fairness::limits(&conn, &l.account_id, &self.config.limits)?;
                return serde_json::to_value(now).map_err(|e| AdminError::Internal(e.to_string()));
            }
            _ => {}
        }
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let out = admin_tx(&tx, command, body)?;
        // An imported snapshot is a real one: the store freezes the disk's current bytes
        // under its id before the record becomes visible.
        if command == "snapshot-import" {
            let (Some(disk), Some(snap)) = (out["DiskId"].as_str(), out["SnapshotId"].as_str()) else {
                return Err(AdminError::Internal("snapshot-import lost its ids".into()));
            };
            self.volumes.snapshot(disk, snap).map_err(|e| AdminError::Internal(e.to_string()))?;
        }
        // A security lock stops the instance being a writer at once: close its disks' exports.
        let revoke: Vec<String> = match (command, out.get("Revoke")) {
            ("instance-lock" | "instance-expire", Some(serde_json::Value::Array(ids))) => {
                ids.iter().filter_map(|v| v.as_str().map(String::from)).collect()
            }
            _ => Vec::new(),
        };
        if let Err(e) = tx.commit() {
            // The record did not land: do not leave a snapshot nothing refers to.
            if command == "snapshot-import"
                && let Some(snap) = out["SnapshotId"].as_str()
                && let Err(e) = self.volumes.delete_snapshot(snap)
            {
                tracing::warn!(snapshot = snap, error = %e, "could not remove an orphaned imported snapshot");
            }
            return Err(e.into());
        }
        drop(conn);
        if !revoke.is_empty()
            && let Ok(events) = self.events.read()
            && let Some(e) = events.as_ref()
        {
            e.revoke(&revoke);
        }
        let mut out = out;
        if let Some(o) = out.as_object_mut() {
            o.remove("Revoke");
        }
        Ok(out)
    }
}

fn admin_tx(conn: &Connection, command: &str, body: Value) -> AResult {
    match command {
        "account-create" => {
            let a: AccountCreate = parse(body)?;
            let id = insert_account(conn, a.name.as_deref().unwrap_or("tenant"))?;
            let (ak, secret) = new_key_pair();
            conn.execute(
                "INSERT INTO access_keys(id, secret, account_id, created_ms) VALUES(?1, ?2, ?3, ?4)",
                params![ak, secret, id, now_ms()],
            )?;
            Ok(json!({"AccountId": id, "AccessKeyId": ak, "AccessKeySecret": secret}))
        }
        "key-create" => {
            let a: AccountRef = parse(body)?;
            require_account(conn, &a.account_id)?;
            let (ak, secret) = new_key_pair();
            conn.execute(
                "INSERT INTO access_keys(id, secret, account_id, created_ms) VALUES(?1, ?2, ?3, ?4)",
                params![ak, secret, a.account_id, now_ms()],
            )?;
            Ok(json!({"AccessKeyId": ak, "AccessKeySecret": secret}))
        }
        "key-disable" | "key-enable" => {
            let k: KeyRef = parse(body)?;
            let n = conn.execute(
                "UPDATE access_keys SET enabled=?2 WHERE id=?1",
                params![k.access_key_id, command == "key-enable"],
            )?;
            changed(n, "AccessKey", &k.access_key_id)
        }
        "instance-lock" => {
            let l: InstanceLock = parse(body)?;
            let reason = l.lock_reason.unwrap_or_else(|| "security".into());
            const REASONS: &[&str] = &["financial", "security", "recycling", "dedicatedhostfinancial", "refunded"];
            if !REASONS.contains(&reason.as_str()) {
                return Err(AdminError::BadRequest(format!("LockReason must be one of {REASONS:?}")));
            }
            let n = conn.execute(
                "UPDATE instances SET lock_reason=?2, lock_msg=?3 WHERE id=?1 AND released=0",
                params![l.instance_id, reason, l.lock_msg.unwrap_or_default()],
            )?;
            changed(n, "instance", &l.instance_id)?;
            let disks: Vec<String> = if reason == "security" {
                let mut stmt = conn.prepare("SELECT id FROM disks WHERE instance_id=?1 AND released=0")?;
                stmt.query_map([&l.instance_id], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?
            } else {
                Vec::new()
            };
            Ok(json!({ "Revoke": disks }))
        }
        "instance-unlock" => {
            let i: InstanceRef = parse(body)?;
            let n = conn.execute(
                "UPDATE instances SET lock_reason=NULL, lock_msg=NULL WHERE id=?1 AND released=0",
                [&i.instance_id],
            )?;
            changed(n, "instance", &i.instance_id)
        }
        "instance-expire" => {
            let i: InstanceRef = parse(body)?;
            let charge: Option<String> = conn
                .query_row("SELECT charge_type FROM instances WHERE id=?1 AND released=0", [&i.instance_id], |r| {
                    r.get(0)
                })
                .optional()?;
            match charge.as_deref() {
                None => Err(AdminError::NotFound(format!("no instance {}", i.instance_id))),
                Some("PrePaid") => {
                    conn.execute(
                        "UPDATE instances SET expired_ms=?2 WHERE id=?1",
                        params![i.instance_id, now_ms() - 1000],
                    )?;
                    // An expired instance is no longer its disks' writer.
                    let mut stmt = conn.prepare("SELECT id FROM disks WHERE instance_id=?1 AND released=0")?;
                    let disks: Vec<String> =
                        stmt.query_map([&i.instance_id], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?;
                    Ok(json!({ "Revoke": disks }))
                }
                Some(_) => Err(AdminError::BadRequest("only PrePaid instances expire".into())),
            }
        }
        "account-billing" => {
            let b: Billing = parse(body)?;
            require_account(conn, &b.account_id)?;
            if let Some(bal) = b.balance {
                conn.execute("UPDATE accounts SET balance=?2 WHERE id=?1", params![b.account_id, bal])?;
            }
            if let Some(a) = b.in_arrears {
                conn.execute("UPDATE accounts SET in_arrears=?2 WHERE id=?1", params![b.account_id, a])?;
            }
            let (balance, arrears): (f64, bool) =
                conn.query_row("SELECT balance, in_arrears FROM accounts WHERE id=?1", [&b.account_id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            Ok(json!({"Balance": balance, "InArrears": arrears}))
        }
        "snapshot-service" => {
            let s: SnapshotService = parse(body)?;
            let n =
                conn.execute("UPDATE accounts SET snapshot_service=?2 WHERE id=?1", params![s.account_id, s.open])?;
            changed(n, "account", &s.account_id)
        }
        "kms-ecs-access" => {
            let k: KmsAccess = parse(body)?;
            let n = conn.execute("UPDATE accounts SET kms_access=?2 WHERE id=?1", params![k.account_id, k.granted])?;
            changed(n, "account", &k.account_id)
        }
        "whitelist" => {
            let w: Whitelist = parse(body)?;
            for a in &w.add {
                require_account(conn, a)?;
                conn.execute("INSERT OR IGNORE INTO whitelist(account_id) VALUES(?1)", [a])?;
            }
            for a in &w.remove {
                conn.execute("DELETE FROM whitelist WHERE account_id=?1", [a])?;
            }
            if let Some(e) = w.enforced {
                conn.execute(
                    "INSERT OR REPLACE INTO settings(key, value) VALUES('whitelist_enforced', ?1)",
                    [if e { "true" } else { "false" }],
                )?;
            }
            let enforced: bool = conn
                .query_row("SELECT value FROM settings WHERE key='whitelist_enforced'", [], |r| r.get::<_, String>(0))
                .optional()?
                .is_some_and(|v| v == "true");
            let mut stmt = conn.prepare("SELECT account_id FROM whitelist ORDER BY account_id")?;
            let accounts = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
            Ok(json!({"Enforced": enforced, "Accounts": accounts}))
        }
        "kms-create" => {
            let a: AccountRef = parse(body)?;
            require_account(conn, &a.account_id)?;
            let id = uuid::Uuid::new_v4().to_string();
            conn.execute(
                "INSERT INTO kms_keys(id, account_id, state, created_ms) VALUES(?1, ?2, 'Enabled', ?3)",
                params![id, a.account_id, now_ms()],
            )?;
            Ok(json!({"KeyId": id}))
        }
        "kms-enable" | "kms-disable" => {
            let k: KmsRef = parse(body)?;
            let state = if command == "kms-enable" { "Enabled" } else { "Disabled" };
            let n = conn.execute("UPDATE kms_keys SET state=?2 WHERE id=?1", params![k.key_id, state])?;
            changed(n, "KMS key", &k.key_id)
        }
        "kms-delete" => {
            let k: KmsRef = parse(body)?;
            let n = conn.execute("DELETE FROM kms_keys WHERE id=?1", [&k.key_id])?;
            changed(n, "KMS key", &k.key_id)
        }
        "snapshot-import" => {
            let s: SnapshotImport = parse(body)?;
            let created = chrono::DateTime::parse_from_rfc3339(&s.creation_time)
                .map(|t| t.timestamp_millis())
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(&s.creation_time, "%Y-%m-%dT%H:%M:%SZ")
                        .map(|t| t.and_utc().timestamp_millis())
                })
                .map_err(|_| AdminError::BadRequest("CreationTime must look like 2013-01-01T00:00:00Z".into()))?;
            type DiskRow = (String, i64, String, String, bool, Option<String>);
            let disk: Option<DiskRow> = conn
                .query_row(
                    "SELECT region_id, size_gib, disk_type, category, encrypted, kms_key_id FROM disks
                     WHERE id=?1 AND account_id=?2 AND released=0",
                    [&s.disk_id, &s.account_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
                )
                .optional()?;
            let (region, size, dtype, category, encrypted, kms) =
                disk.ok_or_else(|| AdminError::NotFound(format!("no disk {} in account {}", s.disk_id, s.account_id)))?;
            let id = crate::new_id("s-");
            conn.execute(
                "INSERT INTO snapshots(id, account_id, region_id, disk_id, disk_size_gib, disk_type, disk_category, name,
                   description, status, created_ms, due_ms, encrypted, kms_key_id, legacy, tags)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, '', 'imported legacy snapshot', 'accomplished', ?8, ?8, ?9, ?10, 1, '[]')",
                params![id, s.account_id, region, s.disk_id, size, dtype, category, created, encrypted, kms],
            )?;
            Ok(json!({"SnapshotId": id, "DiskId": s.disk_id}))
        }
        other => Err(AdminError::NotFound(format!("unknown command {other}; one of {COMMANDS:?}"))),
    }
}
