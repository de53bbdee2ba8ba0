//! The catalog's SQLite schema. One writer connection, WAL, and every mutation in one
//! transaction, so no partial state is ever visible and racing operations serialize.

use rusqlite::Connection;
use std::path::Path;

/// Bumped when the schema changes; stored in `meta.schema_version`.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts(
  id TEXT PRIMARY KEY, name TEXT NOT NULL, balance REAL NOT NULL DEFAULT 0,
  in_arrears INTEGER NOT NULL DEFAULT 0, snapshot_service INTEGER NOT NULL DEFAULT 1,
  kms_access INTEGER NOT NULL DEFAULT 1,
  created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS access_keys(
  id TEXT PRIMARY KEY, secret TEXT NOT NULL, account_id TEXT NOT NULL REFERENCES accounts(id),
  enabled INTEGER NOT NULL DEFAULT 1, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS instances(
  id TEXT PRIMARY KEY, account_id TEXT NOT NULL, region_id TEXT NOT NULL, zone_id TEXT NOT NULL,
  name TEXT NOT NULL, description TEXT NOT NULL, host_name TEXT NOT NULL, instance_type TEXT NOT NULL,
  image_id TEXT NOT NULL, status TEXT NOT NULL, pending_target TEXT, charge_type TEXT NOT NULL,
  expired_ms INTEGER, created_ms INTEGER NOT NULL, start_ms INTEGER, vswitch_id TEXT NOT NULL,
  security_groups TEXT NOT NULL, private_ip TEXT NOT NULL, lock_reason TEXT, lock_msg TEXT,
  deletion_protection INTEGER NOT NULL, tags TEXT NOT NULL, serial TEXT NOT NULL,
  released INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS instances_account ON instances(account_id, released);
CREATE TABLE IF NOT EXISTS disks(
  id TEXT PRIMARY KEY, account_id TEXT NOT NULL, region_id TEXT NOT NULL, zone_id TEXT NOT NULL,
  name TEXT NOT NULL, description TEXT NOT NULL, category TEXT NOT NULL, size_gib INTEGER NOT NULL,
  disk_type TEXT NOT NULL, status TEXT NOT NULL, instance_id TEXT, device TEXT, image_id TEXT,
  source_snapshot_id TEXT, encrypted INTEGER NOT NULL, kms_key_id TEXT, performance_level TEXT,
  delete_with_instance INTEGER NOT NULL, charge_type TEXT NOT NULL, created_ms INTEGER NOT NULL,
  attached_ms INTEGER, detached_ms INTEGER, tags TEXT NOT NULL, serial TEXT NOT NULL,
  released INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS disks_account ON disks(account_id, released);
CREATE INDEX IF NOT EXISTS disks_instance ON disks(instance_id);
CREATE TABLE IF NOT EXISTS snapshots(
  id TEXT PRIMARY KEY, account_id TEXT NOT NULL, region_id TEXT NOT NULL, disk_id TEXT NOT NULL,
  disk_size_gib INTEGER NOT NULL, disk_type TEXT NOT NULL, disk_category TEXT NOT NULL,
  name TEXT NOT NULL, description TEXT NOT NULL, status TEXT NOT NULL, created_ms INTEGER NOT NULL,
  due_ms INTEGER NOT NULL, encrypted INTEGER NOT NULL, kms_key_id TEXT, retention_days INTEGER,
  legacy INTEGER NOT NULL DEFAULT 0, tags TEXT NOT NULL, released INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS snapshots_account ON snapshots(account_id, released);
CREATE INDEX IF NOT EXISTS snapshots_disk ON snapshots(disk_id);
CREATE TABLE IF NOT EXISTS images(
  id TEXT PRIMARY KEY, account_id TEXT NOT NULL, region_id TEXT NOT NULL, name TEXT NOT NULL,
  description TEXT NOT NULL, snapshot_id TEXT NOT NULL, size_gib INTEGER NOT NULL,
  created_ms INTEGER NOT NULL, released INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS kms_keys(
  id TEXT PRIMARY KEY, account_id TEXT NOT NULL, state TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS whitelist(account_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS transitions(
  kind TEXT NOT NULL, id TEXT NOT NULL, due_ms INTEGER NOT NULL, PRIMARY KEY(kind, id));
CREATE TABLE IF NOT EXISTS intents(
  id INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL, volume TEXT NOT NULL,
  snapshot TEXT, size_bytes INTEGER);
"#;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the catalog at {path}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("the catalog has schema version {found}, this build knows {SCHEMA_VERSION}")]
    Version { found: i64 },
}

pub fn open(path: &Path) -> Result<Connection, OpenError> {
    let wrap = |source| OpenError::Sqlite { path: path.display().to_string(), source };
    let conn = Connection::open(path).map_err(wrap)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(wrap)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(wrap)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(wrap)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(wrap)?;
    conn.execute_batch(SCHEMA).map_err(wrap)?;
    let found: Option<String> =
        conn.query_row("SELECT value FROM meta WHERE key='schema_version'", [], |r| r.get(0)).ok();
    match found.and_then(|v| v.parse::<i64>().ok()) {
        Some(v) if v != SCHEMA_VERSION => return Err(OpenError::Version { found: v }),
        Some(_) => {}
        None => {
            conn.execute("INSERT INTO meta(key, value) VALUES('schema_version', ?1)", [SCHEMA_VERSION.to_string()])
                .map_err(wrap)?;
        }
    }
    Ok(conn)
}
