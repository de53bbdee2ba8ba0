//! The catalog's SQLite schema. One writer connection, WAL, and every mutation in one
//! transaction, so no partial state is ever visible and racing operations serialize. Readers
//! use connections of their own ([`open_reader`]): WAL gives each read a consistent snapshot
//! without waiting for the writer.

use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Bumped when the schema changes; stored in `meta.schema_version`. Version 2 added the
/// paging indexes, the `counts` table kept by triggers, and `client_tokens`; version 3 the
/// disks' DeleteAutoSnapshot and EnableAutoSnapshot (ModifyDiskAttribute) and the instances'
/// UserData.
pub const SCHEMA_VERSION: i64 = 17;

/// Version 17: an instance keeps its InternetChargeType and InternetMaxBandwidthIn/Out (Mbit/s)
/// as RunInstances was given them (there is no public network; they are shown, not applied).
const SCHEMA_V17: &str = r#"
ALTER TABLE instances ADD COLUMN internet_charge_type TEXT NOT NULL DEFAULT 'PayByTraffic';
ALTER TABLE instances ADD COLUMN bandwidth_out INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN bandwidth_in INTEGER NOT NULL DEFAULT 0;
"#;

/// Version 16: indexes that keep DescribeVpcAttribute's and DeleteVpc's counts of a VPC's
/// instances and groups proportional to that VPC.
const SCHEMA_V16: &str = r#"
CREATE INDEX IF NOT EXISTS instances_vpc ON instances(vpc_id, released);
CREATE INDEX IF NOT EXISTS security_groups_vpc ON security_groups(vpc_id, released, system_default);
"#;

/// Version 15: the resource group of security groups, key pairs and images
/// (JoinResourceGroup, and ResourceGroupId on CreateSecurityGroup, CreateKeyPair, ImportKeyPair).
const SCHEMA_V15: &str = r#"
ALTER TABLE security_groups ADD COLUMN resource_group_id TEXT NOT NULL DEFAULT '';
ALTER TABLE key_pairs ADD COLUMN resource_group_id TEXT NOT NULL DEFAULT '';
ALTER TABLE images ADD COLUMN resource_group_id TEXT NOT NULL DEFAULT '';
"#;

/// Version 14: image copies and sharing (CopyImage, ModifyImageSharePermission). A share is
/// one row per (image, account it is shared with) with the time it was shared; a copy names
/// its source image (IsCopied) and images carry tags (CopyImage's Tag.N).
const SCHEMA_V14: &str = r#"
CREATE TABLE IF NOT EXISTS image_shares(
  image_id TEXT NOT NULL, account_id TEXT NOT NULL, created_ms INTEGER NOT NULL,
  PRIMARY KEY(image_id, account_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS image_shares_account ON image_shares(account_id, image_id);
ALTER TABLE images ADD COLUMN source_image_id TEXT;
ALTER TABLE images ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
"#;

/// Version 13: security groups, their rules, and which groups each instance is in
/// (`instance_security_groups`, kept together with the instance's ordered `security_groups`
/// list by `ops::secgroups::set_members`). Instances of older catalogs keep the group ids they
/// were made with, as memberships.
const SCHEMA_V13: &str = r#"
CREATE TABLE IF NOT EXISTS security_groups(
  id TEXT PRIMARY KEY, account_id TEXT NOT NULL, region_id TEXT NOT NULL, name TEXT NOT NULL,
  description TEXT NOT NULL, vpc_id TEXT NOT NULL, group_type TEXT NOT NULL, created_ms INTEGER NOT NULL,
  tags TEXT NOT NULL, system_default INTEGER NOT NULL DEFAULT 0, released INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS security_groups_page ON security_groups(account_id, region_id, released, created_ms, id);
CREATE TABLE IF NOT EXISTS security_group_rules(
  id TEXT PRIMARY KEY, group_id TEXT NOT NULL, direction TEXT NOT NULL, ip_protocol TEXT NOT NULL,
  port_range TEXT NOT NULL, source_port_range TEXT NOT NULL, source_cidr_ip TEXT NOT NULL,
  dest_cidr_ip TEXT NOT NULL, ipv6_source_cidr_ip TEXT NOT NULL, ipv6_dest_cidr_ip TEXT NOT NULL,
  source_group_id TEXT NOT NULL, dest_group_id TEXT NOT NULL, policy TEXT NOT NULL, priority INTEGER NOT NULL,
  nic_type TEXT NOT NULL, description TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS security_group_rules_group ON security_group_rules(group_id, direction, created_ms, id);
CREATE INDEX IF NOT EXISTS security_group_rules_source ON security_group_rules(source_group_id);
CREATE INDEX IF NOT EXISTS security_group_rules_dest ON security_group_rules(dest_group_id);
CREATE TABLE IF NOT EXISTS instance_security_groups(
  instance_id TEXT NOT NULL, group_id TEXT NOT NULL, PRIMARY KEY(instance_id, group_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS instance_security_groups_group ON instance_security_groups(group_id, instance_id);
INSERT OR IGNORE INTO instance_security_groups(instance_id, group_id)
  SELECT i.id, j.value FROM instances i, json_each(i.security_groups) j WHERE i.released = 0;
"#;

/// Version 12: SSH key pairs (CreateKeyPair, ImportKeyPair), unique by name among an
/// account's pairs in a region, and the key pair each instance is bound to. Deleting a pair
/// deletes its row; `released` is there for `Listing`.
const SCHEMA_V12: &str = r#"
CREATE TABLE IF NOT EXISTS key_pairs(
  id TEXT PRIMARY KEY, account_id TEXT NOT NULL, region_id TEXT NOT NULL, name TEXT NOT NULL,
  fingerprint TEXT NOT NULL, public_key TEXT NOT NULL, created_ms INTEGER NOT NULL, tags TEXT NOT NULL,
  released INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX IF NOT EXISTS key_pairs_name ON key_pairs(account_id, region_id, name);
CREATE INDEX IF NOT EXISTS key_pairs_page ON key_pairs(account_id, region_id, released, created_ms, id);
ALTER TABLE instances ADD COLUMN key_pair_name TEXT;
CREATE INDEX IF NOT EXISTS instances_key_pair ON instances(account_id, region_id, key_pair_name);
"#;

/// Version 11: an instance records its vCPUs and memory (MiB) when it is made, as the offer
/// is now configurable; existing rows are filled from the types earlier builds offered.
const SCHEMA_V11: &str = r#"
ALTER TABLE instances ADD COLUMN cpu INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN memory_mib INTEGER NOT NULL DEFAULT 0;
"#;

/// Version 10: the resource group of instances, disks and snapshots (JoinResourceGroup, and
/// ResourceGroupId on their creates).
const SCHEMA_V10: &str = r#"
ALTER TABLE instances ADD COLUMN resource_group_id TEXT NOT NULL DEFAULT '';
ALTER TABLE disks ADD COLUMN resource_group_id TEXT NOT NULL DEFAULT '';
ALTER TABLE snapshots ADD COLUMN resource_group_id TEXT NOT NULL DEFAULT '';
"#;

/// Version 9: networks (the VPC API): VPCs and vSwitches, and the VPC of each instance
/// (for instances made before, the `vpc-` id that was shown for their stored VSwitchId).
/// A row is `Pending` until `ready_ms`, then `Available`; a deleted one is `released`.
const SCHEMA_V9: &str = r#"
CREATE TABLE IF NOT EXISTS vpcs(
  id TEXT PRIMARY KEY, account_id TEXT NOT NULL, region_id TEXT NOT NULL, name TEXT NOT NULL,
  description TEXT NOT NULL, cidr_block TEXT NOT NULL, is_default INTEGER NOT NULL DEFAULT 0,
  vrouter_id TEXT NOT NULL, route_table_id TEXT NOT NULL, resource_group_id TEXT NOT NULL,
  created_ms INTEGER NOT NULL, ready_ms INTEGER NOT NULL, tags TEXT NOT NULL,
  released INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS vpcs_page ON vpcs(account_id, region_id, released, created_ms, id);
CREATE TABLE IF NOT EXISTS vswitches(
  id TEXT PRIMARY KEY, account_id TEXT NOT NULL, region_id TEXT NOT NULL, vpc_id TEXT NOT NULL,
  zone_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL, cidr_block TEXT NOT NULL,
  is_default INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL, ready_ms INTEGER NOT NULL,
  tags TEXT NOT NULL, released INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS vswitches_page ON vswitches(account_id, region_id, released, created_ms, id);
CREATE INDEX IF NOT EXISTS vswitches_vpc ON vswitches(vpc_id, released);
ALTER TABLE instances ADD COLUMN vpc_id TEXT NOT NULL DEFAULT '';
UPDATE instances SET vpc_id = 'vpc-' || substr(vswitch_id, 5) WHERE vswitch_id LIKE 'vsw-%';
CREATE INDEX IF NOT EXISTS instances_vswitch ON instances(vswitch_id, released);
"#;

/// Version 8: a snapshot made by CopySnapshot names its source snapshot and region.
const SCHEMA_V8: &str = r#"
ALTER TABLE snapshots ADD COLUMN source_snapshot_id TEXT;
ALTER TABLE snapshots ADD COLUMN source_region_id TEXT;
"#;

/// Version 7: tasks (DescribeTasks): ImportImage's and ModifyDiskSpec's.
const SCHEMA_V7: &str = r#"
CREATE TABLE IF NOT EXISTS tasks(
  id TEXT PRIMARY KEY, account_id TEXT NOT NULL, region_id TEXT NOT NULL, action TEXT NOT NULL,
  resource_id TEXT NOT NULL, status TEXT NOT NULL, created_ms INTEGER NOT NULL, finished_ms INTEGER,
  released INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS tasks_page ON tasks(account_id, region_id, released, created_ms, id);
"#;

/// Version 6: automatic snapshot policies, the policy of each disk with the schedule point of
/// its last automatic snapshot, and which snapshots a policy took.
const SCHEMA_V6: &str = r#"
CREATE TABLE IF NOT EXISTS auto_snapshot_policies(
  id TEXT PRIMARY KEY, account_id TEXT NOT NULL, region_id TEXT NOT NULL, name TEXT NOT NULL,
  time_points TEXT NOT NULL, repeat_weekdays TEXT NOT NULL, retention_days INTEGER NOT NULL,
  created_ms INTEGER NOT NULL, tags TEXT NOT NULL, released INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS auto_snapshot_policies_page
  ON auto_snapshot_policies(account_id, region_id, released, created_ms, id);
ALTER TABLE disks ADD COLUMN auto_snapshot_policy_id TEXT;
ALTER TABLE disks ADD COLUMN auto_snapshot_last_ms INTEGER;
CREATE INDEX IF NOT EXISTS disks_policy ON disks(auto_snapshot_policy_id);
ALTER TABLE snapshots ADD COLUMN auto INTEGER NOT NULL DEFAULT 0;
"#;

/// Version 5: snapshot groups (CreateSnapshotGroup); a group's snapshots name it.
const SCHEMA_V5: &str = r#"
CREATE TABLE IF NOT EXISTS snapshot_groups(
  id TEXT PRIMARY KEY, account_id TEXT NOT NULL, region_id TEXT NOT NULL, instance_id TEXT NOT NULL,
  name TEXT NOT NULL, description TEXT NOT NULL, created_ms INTEGER NOT NULL, tags TEXT NOT NULL,
  released INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS snapshot_groups_page ON snapshot_groups(account_id, region_id, released, created_ms, id);
ALTER TABLE snapshots ADD COLUMN group_id TEXT;
CREATE INDEX IF NOT EXISTS snapshots_group ON snapshots(group_id);
"#;

/// Version 4: images have states (ImportImage converts in the background: Creating with a
/// Progress, then Available or CreateFailed) and, while importing, what to import.
const SCHEMA_V4: &str = r#"
ALTER TABLE images ADD COLUMN status TEXT NOT NULL DEFAULT 'Available';
ALTER TABLE images ADD COLUMN progress INTEGER NOT NULL DEFAULT 100;
ALTER TABLE images ADD COLUMN import_json TEXT;
"#;

/// Version 3: a disk's auto-snapshot attributes. `enable_auto_snapshot` NULL means the
/// category's default (on for cloud disks, off for local ones).
const SCHEMA_V3: &str = r#"
ALTER TABLE disks ADD COLUMN delete_auto_snapshot INTEGER NOT NULL DEFAULT 1;
ALTER TABLE disks ADD COLUMN enable_auto_snapshot INTEGER;
ALTER TABLE instances ADD COLUMN user_data TEXT;
"#;

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
CREATE TABLE IF NOT EXISTS disks(
  id TEXT PRIMARY KEY, account_id TEXT NOT NULL, region_id TEXT NOT NULL, zone_id TEXT NOT NULL,
  name TEXT NOT NULL, description TEXT NOT NULL, category TEXT NOT NULL, size_gib INTEGER NOT NULL,
  disk_type TEXT NOT NULL, status TEXT NOT NULL, instance_id TEXT, device TEXT, image_id TEXT,
  source_snapshot_id TEXT, encrypted INTEGER NOT NULL, kms_key_id TEXT, performance_level TEXT,
  delete_with_instance INTEGER NOT NULL, charge_type TEXT NOT NULL, created_ms INTEGER NOT NULL,
  attached_ms INTEGER, detached_ms INTEGER, tags TEXT NOT NULL, serial TEXT NOT NULL,
  released INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS disks_instance ON disks(instance_id);
CREATE TABLE IF NOT EXISTS snapshots(
  id TEXT PRIMARY KEY, account_id TEXT NOT NULL, region_id TEXT NOT NULL, disk_id TEXT NOT NULL,
  disk_size_gib INTEGER NOT NULL, disk_type TEXT NOT NULL, disk_category TEXT NOT NULL,
  name TEXT NOT NULL, description TEXT NOT NULL, status TEXT NOT NULL, created_ms INTEGER NOT NULL,
  due_ms INTEGER NOT NULL, encrypted INTEGER NOT NULL, kms_key_id TEXT, retention_days INTEGER,
  legacy INTEGER NOT NULL DEFAULT 0, tags TEXT NOT NULL, released INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS images(
  id TEXT PRIMARY KEY, account_id TEXT NOT NULL, region_id TEXT NOT NULL, name TEXT NOT NULL,
  description TEXT NOT NULL, snapshot_id TEXT NOT NULL, size_gib INTEGER NOT NULL,
  created_ms INTEGER NOT NULL, released INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS kms_keys(
  id TEXT PRIMARY KEY, account_id TEXT NOT NULL, state TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS whitelist(account_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS account_limits(
  account_id TEXT PRIMARY KEY REFERENCES accounts(id), requests_per_second INTEGER, burst INTEGER,
  disks INTEGER, snapshots INTEGER, instances INTEGER);
CREATE TABLE IF NOT EXISTS transitions(
  kind TEXT NOT NULL, id TEXT NOT NULL, due_ms INTEGER NOT NULL, PRIMARY KEY(kind, id));
CREATE TABLE IF NOT EXISTS intents(
  id INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL, volume TEXT NOT NULL,
  snapshot TEXT, size_bytes INTEGER);
"#;

/// Version 2: every Describe* pages by (created_ms, id) inside one account and region, so each
/// listed table has an index in that order; TotalCount of an unfiltered listing comes from
/// `counts`, which triggers keep exact; ClientTokens remember the first call's answer.
const SCHEMA_V2: &str = r#"
DROP INDEX IF EXISTS disks_account;
DROP INDEX IF EXISTS snapshots_account;
DROP INDEX IF EXISTS instances_account;
DROP INDEX IF EXISTS snapshots_disk;
CREATE INDEX IF NOT EXISTS disks_page ON disks(account_id, region_id, released, created_ms, id);
CREATE INDEX IF NOT EXISTS disks_source ON disks(source_snapshot_id);
CREATE INDEX IF NOT EXISTS snapshots_page ON snapshots(account_id, region_id, released, created_ms, id);
CREATE INDEX IF NOT EXISTS snapshots_disk_page
  ON snapshots(disk_id, account_id, region_id, released, created_ms, id);
CREATE INDEX IF NOT EXISTS instances_page ON instances(account_id, region_id, released, created_ms, id);
CREATE INDEX IF NOT EXISTS images_page ON images(account_id, region_id, released, created_ms, id);
CREATE INDEX IF NOT EXISTS images_snapshot ON images(snapshot_id);
CREATE INDEX IF NOT EXISTS transitions_due ON transitions(due_ms);
CREATE TABLE IF NOT EXISTS client_tokens(
  account_id TEXT NOT NULL, token TEXT NOT NULL, fingerprint TEXT NOT NULL, response TEXT NOT NULL,
  created_ms INTEGER NOT NULL, PRIMARY KEY(account_id, token)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counts(
  kind TEXT NOT NULL, account_id TEXT NOT NULL, region_id TEXT NOT NULL, n INTEGER NOT NULL,
  PRIMARY KEY(kind, account_id, region_id)) WITHOUT ROWID;
"#;

/// The tables whose live (unreleased) rows `counts` tracks, with their `kind`.
pub(crate) const COUNTED: &[(&str, &str)] =
    &[("disks", "disk"), ("snapshots", "snapshot"), ("instances", "instance"), ("images", "image")];

/// Triggers that keep `counts` equal to the number of unreleased rows per account and region.
fn count_triggers() -> String {
    let mut sql = String::new();
    for (table, kind) in COUNTED {
        let bump = |row: &str, delta: &str| {
            format!(
                "INSERT INTO counts(kind, account_id, region_id, n) VALUES('{kind}', {row}.account_id, {row}.region_id, {delta})
                 ON CONFLICT(kind, account_id, region_id) DO UPDATE SET n = n + ({delta});"
            )
        };
        sql.push_str(&format!(
            "CREATE TRIGGER IF NOT EXISTS {table}_count_ins AFTER INSERT ON {table} WHEN NEW.released=0 BEGIN {} END;
             CREATE TRIGGER IF NOT EXISTS {table}_count_del AFTER DELETE ON {table} WHEN OLD.released=0 BEGIN {} END;
             CREATE TRIGGER IF NOT EXISTS {table}_count_upd AFTER UPDATE OF released ON {table}
               WHEN NEW.released != OLD.released BEGIN {} END;\n",
            bump("NEW", "1"),
            bump("OLD", "-1"),
            bump("NEW", "CASE WHEN NEW.released=0 THEN 1 ELSE -1 END"),
        ));
    }
    sql
}

/// Recount every tracked table (after a migration, when `counts` is new).
fn recount(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM counts", [])?;
    for (table, kind) in COUNTED {
        conn.execute(
            &format!(
                "INSERT INTO counts(kind, account_id, region_id, n)
                 SELECT '{kind}', account_id, region_id, COUNT(*) FROM {table} WHERE released=0 GROUP BY account_id, region_id"
            ),
            [],
        )?;
    }
    Ok(())
}

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
    // A new catalog is made at version 1 (SCHEMA) and migrated up like an old one, in one
    // transaction.
    let version = found.and_then(|v| v.parse::<i64>().ok()).unwrap_or(1);
    if version > SCHEMA_VERSION {
        return Err(OpenError::Version { found: version });
    }
    if version < SCHEMA_VERSION {
        let tx = conn.unchecked_transaction().map_err(wrap)?;
        if version < 2 {
            // Version 1 catalogs gain the version 2 indexes and tables, counted once.
            tx.execute_batch(SCHEMA_V2).map_err(wrap)?;
            tx.execute_batch(&count_triggers()).map_err(wrap)?;
            recount(&tx).map_err(wrap)?;
        }
        if version < 3 {
            tx.execute_batch(SCHEMA_V3).map_err(wrap)?;
        }
        if version < 4 {
            tx.execute_batch(SCHEMA_V4).map_err(wrap)?;
        }
        if version < 5 {
            tx.execute_batch(SCHEMA_V5).map_err(wrap)?;
        }
        if version < 6 {
            tx.execute_batch(SCHEMA_V6).map_err(wrap)?;
        }
        if version < 7 {
            tx.execute_batch(SCHEMA_V7).map_err(wrap)?;
        }
        if version < 8 {
            tx.execute_batch(SCHEMA_V8).map_err(wrap)?;
        }
        if version < 9 {
            tx.execute_batch(SCHEMA_V9).map_err(wrap)?;
        }
        if version < 10 {
            tx.execute_batch(SCHEMA_V10).map_err(wrap)?;
        }
        if version < 11 {
            tx.execute_batch(SCHEMA_V11).map_err(wrap)?;
            for (id, cpu, mem) in crate::config::DEFAULT_INSTANCE_TYPES {
                tx.execute(
                    "UPDATE instances SET cpu=?2, memory_mib=?3 WHERE instance_type=?1",
                    rusqlite::params![id, cpu, mem],
                )
                .map_err(wrap)?;
            }
        }
        if version < 12 {
            tx.execute_batch(SCHEMA_V12).map_err(wrap)?;
        }
        if version < 13 {
            tx.execute_batch(SCHEMA_V13).map_err(wrap)?;
        }
        if version < 14 {
            tx.execute_batch(SCHEMA_V14).map_err(wrap)?;
        }
        if version < 15 {
            tx.execute_batch(SCHEMA_V15).map_err(wrap)?;
        }
        if version < 16 {
            tx.execute_batch(SCHEMA_V16).map_err(wrap)?;
        }
        if version < 17 {
            tx.execute_batch(SCHEMA_V17).map_err(wrap)?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', ?1)",
            [SCHEMA_VERSION.to_string()],
        )
        .map_err(wrap)?;
        tx.commit().map_err(wrap)?;
    }
    install_views(&conn, Arc::new(AtomicI64::new(0))).map_err(wrap)?;
    Ok(conn)
}

/// The server's secret for NextToken MACs (32 bytes), made on first open and kept in
/// `settings` as a JSON string of hex.
pub fn paging_key(conn: &Connection) -> Result<Vec<u8>, OpenError> {
    let wrap = |source| OpenError::Sqlite { path: "catalog".into(), source };
    let stored: Option<String> = rusqlite::OptionalExtension::optional(conn.query_row(
        "SELECT value FROM settings WHERE key='paging_key'",
        [],
        |r| r.get(0),
    ))
    .map_err(wrap)?;
    if let Some(key) = stored.and_then(|s| serde_json::from_str::<String>(&s).ok()).and_then(|h| hex::decode(h).ok()) {
        return Ok(key);
    }
    let key: [u8; 32] = rand::random();
    conn.execute(
        "INSERT OR REPLACE INTO settings(key, value) VALUES('paging_key', ?1)",
        [serde_json::Value::String(hex::encode(key)).to_string()],
    )
    .map_err(wrap)?;
    Ok(key.to_vec())
}

/// A reading connection: `query_only`, with the `*_now` views. `now` is the clock those views
/// read (ms since the epoch); the caller sets it before each request.
pub fn open_reader(path: &Path, now: Arc<AtomicI64>) -> Result<Connection, OpenError> {
    let wrap = |source| OpenError::Sqlite { path: path.display().to_string(), source };
    let conn = Connection::open(path).map_err(wrap)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(wrap)?;
    install_views(&conn, now).map_err(wrap)?;
    conn.pragma_update(None, "query_only", "ON").map_err(wrap)?;
    Ok(conn)
}

/// Temporary views that show each resource as it is at `snapdisk_now()`: a transition that is
/// due but not yet completed by the ticker is shown completed, exactly as
/// `transitions::complete_due` would complete it (times taken from the due time). Reads so
/// never need the writer to finish transitions first.
fn install_views(conn: &Connection, now: Arc<AtomicI64>) -> rusqlite::Result<()> {
    conn.create_scalar_function("snapdisk_now", 0, FunctionFlags::SQLITE_UTF8, move |_| {
        Ok(now.load(Ordering::Relaxed))
    })?;
    conn.execute_batch(VIEWS)?;
    conn.execute_batch(&images_view())
}

/// When the public images appeared (they sort before every image an account makes).
pub const PUBLIC_IMAGE_CREATED_MS: i64 = 1_672_531_200_000;

/// Description shown for the public images.
pub const PUBLIC_IMAGE_DESCRIPTION: &str = "An empty disk image: the system disk starts all zeros.";

/// `images_now`: the accounts' images and the public ones (`account_id = ''`, every region).
fn images_view() -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let public: Vec<String> = crate::config::PUBLIC_IMAGES
        .iter()
        .map(|(id, name, size, _)| {
            format!(
                "SELECT {}, '', '', {}, {}, NULL, {size}, {PUBLIC_IMAGE_CREATED_MS}, 0, 'Available', 100, NULL, NULL,
                   '[]', 0, ''",
                quote(id),
                quote(name),
                quote(PUBLIC_IMAGE_DESCRIPTION)
            )
        })
        .collect();
    // A copy (CopyImage) is Creating until its transition is due, with a Progress from the
    // time gone by; then Available, as `transitions::complete_due` makes it.
    format!(
        "CREATE TEMP VIEW IF NOT EXISTS images_now AS
         SELECT m.id, m.account_id, m.region_id, m.name, m.description, m.snapshot_id, m.size_gib, m.created_ms,
           m.released,
           CASE WHEN t.id IS NOT NULL AND t.due_ms <= snapdisk_now() AND m.status = 'Creating' THEN 'Available'
                ELSE m.status END AS status,
           CASE WHEN t.id IS NULL OR m.status != 'Creating' THEN m.progress
                WHEN t.due_ms <= snapdisk_now() THEN 100
                WHEN t.due_ms <= m.created_ms THEN 99
                ELSE MIN(99, MAX(0, (snapdisk_now() - m.created_ms) * 100 / (t.due_ms - m.created_ms))) END
             AS progress,
           m.import_json, m.source_image_id, m.tags,
           EXISTS(SELECT 1 FROM image_shares s WHERE s.image_id = m.id) AS shared, m.resource_group_id
         FROM images m LEFT JOIN transitions t ON t.kind = 'image' AND t.id = m.id
         UNION ALL {};",
        public.join(" UNION ALL ")
    )
}

const VIEWS: &str = r#"
CREATE TEMP VIEW IF NOT EXISTS disks_now AS
SELECT d.id, d.account_id, d.region_id, d.zone_id, d.name, d.description, d.category, d.size_gib, d.disk_type,
  CASE WHEN t.id IS NULL THEN d.status
       WHEN d.status IN ('Creating', 'ReIniting') THEN CASE WHEN d.instance_id IS NULL THEN 'Available' ELSE 'In_use' END
       WHEN d.status = 'Attaching' THEN 'In_use'
       WHEN d.status = 'Detaching' THEN 'Available'
       ELSE d.status END AS status,
  CASE WHEN t.id IS NOT NULL AND d.status = 'Detaching' THEN NULL ELSE d.instance_id END AS instance_id,
  CASE WHEN t.id IS NOT NULL AND d.status = 'Detaching' THEN NULL ELSE d.device END AS device,
  d.image_id, d.source_snapshot_id, d.encrypted, d.kms_key_id, d.performance_level, d.delete_with_instance,
  d.charge_type, d.created_ms,
  CASE WHEN t.id IS NOT NULL AND (d.status = 'Attaching' OR (d.status = 'Creating' AND d.instance_id IS NOT NULL))
       THEN t.due_ms ELSE d.attached_ms END AS attached_ms,
  CASE WHEN t.id IS NOT NULL AND d.status = 'Detaching' THEN t.due_ms ELSE d.detached_ms END AS detached_ms,
  d.tags, d.serial, d.released, d.delete_auto_snapshot, d.enable_auto_snapshot, d.auto_snapshot_policy_id,
  d.resource_group_id
FROM disks d LEFT JOIN transitions t ON t.kind = 'disk' AND t.id = d.id AND t.due_ms <= snapdisk_now();

CREATE TEMP VIEW IF NOT EXISTS instances_now AS
SELECT i.id, i.account_id, i.region_id, i.zone_id, i.name, i.description, i.host_name, i.instance_type, i.image_id,
  CASE WHEN t.id IS NULL THEN i.status
       WHEN i.status = 'Pending' AND i.pending_target = 'Starting' THEN 'Starting'
       WHEN i.status = 'Pending' THEN 'Stopped'
       WHEN i.status = 'Starting' THEN 'Running'
       WHEN i.status = 'Stopping' AND i.pending_target = 'Starting' THEN 'Starting'
       WHEN i.status = 'Stopping' THEN 'Stopped'
       ELSE i.status END AS status,
  CASE WHEN t.id IS NOT NULL AND i.status IN ('Pending', 'Stopping') THEN NULL ELSE i.pending_target END AS pending_target,
  i.charge_type, i.expired_ms, i.created_ms,
  CASE WHEN t.id IS NOT NULL AND i.status = 'Starting' THEN t.due_ms ELSE i.start_ms END AS start_ms,
  i.vswitch_id, i.security_groups, i.private_ip, i.lock_reason, i.lock_msg, i.deletion_protection, i.tags,
  i.serial, i.released, i.vpc_id, i.resource_group_id, i.cpu, i.memory_mib, i.key_pair_name,
  i.internet_charge_type, i.bandwidth_out, i.bandwidth_in
FROM instances i LEFT JOIN transitions t ON t.kind = 'instance' AND t.id = i.id AND t.due_ms <= snapdisk_now();

CREATE TEMP VIEW IF NOT EXISTS snapshots_now AS
SELECT s.id, s.account_id, s.region_id, s.disk_id, s.disk_size_gib, s.disk_type, s.disk_category, s.name,
  s.description,
  CASE WHEN t.id IS NOT NULL AND s.status = 'progressing' THEN 'accomplished' ELSE s.status END AS status,
  s.created_ms, s.due_ms, s.encrypted, s.kms_key_id, s.retention_days, s.legacy, s.tags, s.released, s.group_id, s.auto,
  s.source_snapshot_id, s.source_region_id, s.resource_group_id
FROM snapshots s LEFT JOIN transitions t ON t.kind = 'snapshot' AND t.id = s.id AND t.due_ms <= snapdisk_now();

CREATE TEMP VIEW IF NOT EXISTS security_groups_now AS
SELECT g.*,
  (SELECT COUNT(*) FROM instance_security_groups m JOIN instances i ON i.id = m.instance_id
   WHERE m.group_id = g.id AND i.released = 0) AS ecs_count,
  (SELECT COUNT(*) FROM security_group_rules r WHERE r.group_id = g.id) AS rule_count,
  (SELECT COUNT(*) FROM security_group_rules r WHERE r.group_id = g.id
   AND (r.source_group_id != '' OR r.dest_group_id != '')) AS group_rule_count
FROM security_groups g;

CREATE TEMP VIEW IF NOT EXISTS auto_snapshot_policies_now AS
SELECT p.*, (SELECT COUNT(*) FROM disks d WHERE d.auto_snapshot_policy_id = p.id AND d.released = 0) AS disk_nums
FROM auto_snapshot_policies p;

CREATE TEMP VIEW IF NOT EXISTS snapshot_groups_now AS
SELECT g.id, g.account_id, g.region_id, g.instance_id, g.name, g.description, g.created_ms, g.tags, g.released,
  (SELECT CASE WHEN SUM(m.status = 'failed') > 0 THEN 'failed'
               WHEN SUM(m.status = 'progressing') > 0 THEN 'progressing'
               ELSE 'accomplished' END
   FROM snapshots_now m WHERE m.group_id = g.id AND m.released = 0) AS status
FROM snapshot_groups g;
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Disk;

    const DISK: &str = "INSERT INTO disks(id, account_id, region_id, zone_id, name, description, category, size_gib,
        disk_type, status, encrypted, delete_with_instance, charge_type, created_ms, tags, serial)
        VALUES('d-old', 'a', 'cn-hangzhou', 'cn-hangzhou-h', 'n', '', 'cloud_essd', 20, 'data', 'Available', 0, 0,
        'PostPaid', 1, '[]', 's')";

    const INSTANCE: &str = "INSERT INTO instances(id, account_id, region_id, zone_id, name, description, host_name,
        instance_type, image_id, status, charge_type, created_ms, vswitch_id, security_groups, private_ip,
        deletion_protection, tags, serial)
        VALUES('i-old', 'a', 'cn-hangzhou', 'cn-hangzhou-h', 'n', '', 'h', 'ecs.g7.large', 'img', 'Stopped',
        'PostPaid', 1, '', '[\"sg-old\"]', '172.16.0.2', 0, '[]', 's')";

    #[test]
    fn version_12_adds_key_pairs_unique_by_name_per_account_and_region() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        old_catalog(&path, 2);
        Connection::open(&path).unwrap().execute(INSTANCE, []).unwrap();
        let c = open(&path).unwrap();
        let bound: Option<String> =
            c.query_row("SELECT key_pair_name FROM instances_now WHERE id='i-old'", [], |r| r.get(0)).unwrap();
        assert_eq!(bound, None, "an older instance has no key pair");
        let add = |id: &str, account: &str, region: &str| {
            c.execute(
                "INSERT INTO key_pairs(id, account_id, region_id, name, fingerprint, public_key, created_ms, tags)
                 VALUES(?1, ?2, ?3, 'k', 'f', 'p', 1, '[]')",
                [id, account, region],
            )
        };
        add("skp-1", "a", "cn-hangzhou").unwrap();
        assert!(add("skp-2", "a", "cn-hangzhou").is_err(), "one name per account and region");
        add("skp-3", "b", "cn-hangzhou").unwrap();
        add("skp-4", "a", "cn-shanghai").unwrap();
    }

    #[test]
    fn version_10_keeps_the_groups_instances_were_made_with() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        old_catalog(&path, 2);
        Connection::open(&path).unwrap().execute(INSTANCE, []).unwrap();
        let c = open(&path).unwrap();
        let member: String = c
            .query_row("SELECT group_id FROM instance_security_groups WHERE instance_id='i-old'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(member, "sg-old");
        c.execute(
            "INSERT INTO security_groups(id, account_id, region_id, name, description, vpc_id, group_type, created_ms, tags)
             VALUES('sg-old', 'a', 'cn-hangzhou', 'n', '', '', 'normal', 1, '[]')",
            [],
        )
        .unwrap();
        let n: i64 =
            c.query_row("SELECT ecs_count FROM security_groups_now WHERE id='sg-old'", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1, "the older instance counts as a member");
    }

    /// A catalog as an older build left it: `version` 1 (no version row) or 2.
    fn old_catalog(path: &Path, version: i64) {
        let c = Connection::open(path).unwrap();
        c.execute_batch(SCHEMA).unwrap();
        if version >= 2 {
            c.execute_batch(SCHEMA_V2).unwrap();
            c.execute_batch(&count_triggers()).unwrap();
            c.execute("INSERT INTO meta(key, value) VALUES('schema_version', '2')", []).unwrap();
        }
        c.execute(DISK, []).unwrap();
        c.execute(SIZED_INSTANCE, []).unwrap();
    }

    const SIZED_INSTANCE: &str = "INSERT INTO instances(id, account_id, region_id, zone_id, name, description,
        host_name, instance_type, image_id, status, charge_type, created_ms, vswitch_id, security_groups, private_ip,
        deletion_protection, tags, serial) VALUES('i-sized', 'a', 'cn-hangzhou', 'cn-hangzhou-h', 'n', '', 'h',
        'ecs.g7.xlarge', 'blank_x64_20G.vhd', 'Stopped', 'PostPaid', 1, '', '[]', '172.16.0.9', 0, '[]', 's')";

    #[test]
    fn older_catalogs_migrate_to_the_current_schema() {
        for version in [1, 2] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("catalog.sqlite");
            old_catalog(&path, version);
            let c = open(&path).unwrap();
            let v: String = c.query_row("SELECT value FROM meta WHERE key='schema_version'", [], |r| r.get(0)).unwrap();
            assert_eq!(v, SCHEMA_VERSION.to_string());
            let d = c
                .query_row(&format!("SELECT {} FROM disks_now WHERE id='d-old'", Disk::COLUMNS), [], Disk::from_row)
                .unwrap();
            assert!(d.delete_auto_snapshot && d.enable_auto_snapshot.is_none(), "version {version}");
            let n: i64 =
                c.query_row("SELECT n FROM counts WHERE kind='disk' AND account_id='a'", [], |r| r.get(0)).unwrap();
            assert_eq!(n, 1, "version {version}: counted once");
            let i = c
                .query_row(
                    &format!("SELECT {} FROM instances_now WHERE id='i-sized'", crate::model::Instance::COLUMNS),
                    [],
                    crate::model::Instance::from_row,
                )
                .unwrap();
            assert_eq!((i.cpu, i.memory_mib), (4, 16384), "version {version}: sized from the types it had");
            assert_eq!((i.vpc_id.as_str(), i.resource_group_id.as_str()), ("", ""));
            drop(c);
            assert!(open(&path).is_ok(), "reopening a current catalog changes nothing");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        old_catalog(&path, 2);
        Connection::open(&path).unwrap().execute("UPDATE meta SET value='99' WHERE key='schema_version'", []).unwrap();
        assert!(matches!(open(&path), Err(OpenError::Version { found: 99 })));
    }

    #[test]
    fn version_14_adds_image_shares_and_copies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        // An older catalog with one image, migrated through every version since.
        old_catalog(&path, 2);
        Connection::open(&path)
            .unwrap()
            .execute(
                "INSERT INTO images(id, account_id, region_id, name, description, snapshot_id, size_gib, created_ms)
                 VALUES('m-old', 'a', 'cn-hangzhou', 'n', '', 's-1', 20, 1)",
                [],
            )
            .unwrap();
        let c = open(&path).unwrap();
        let v: String = c.query_row("SELECT value FROM meta WHERE key='schema_version'", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION.to_string());
        c.execute("INSERT INTO image_shares(image_id, account_id, created_ms) VALUES('m-old', 'b', 2)", []).unwrap();
        let (tags, copied, shared): (String, Option<String>, bool) = c
            .query_row("SELECT tags, source_image_id, shared FROM images_now WHERE id='m-old'", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((tags.as_str(), copied, shared), ("[]", None, true));
        let dup = c.execute("INSERT INTO image_shares(image_id, account_id, created_ms) VALUES('m-old', 'b', 3)", []);
        assert!(dup.is_err(), "one share per image and account");
    }
}
