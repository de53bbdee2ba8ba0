//! Catalog rows as structs (how each is shown in responses is in `shapes`).

use crate::config;
use crate::shapes::TimeText;
use chrono::Utc;
use rusqlite::Row;
use rusqlite::types::{FromSql, FromSqlResult, ValueRef};

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `2019-11-11T08:35:29Z`, the disk and snapshot time format (RFC 3339, whole seconds, UTC).
pub fn fmt_time(ms: i64) -> String {
    TimeText::secs(ms).as_str().to_string()
}

/// `2017-12-10T04:04Z`, the instance time format: [`fmt_time`] without its seconds.
pub fn fmt_minute(ms: i64) -> String {
    TimeText::minutes(ms).as_str().to_string()
}

pub fn tags_json(tags: &[(String, String)]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".into())
}

#[derive(Debug, Clone)]
/// A disk row. `S` is the text type: `String` where the row is kept and changed, [`Text`]
/// (inline up to 24 bytes, no allocation) where a page is only shown.
pub struct Disk<S = String> {
    pub id: S,
    pub account_id: S,
    pub region_id: S,
    pub zone_id: S,
    pub name: S,
    pub description: S,
    pub category: S,
    pub size_gib: i64,
    pub disk_type: S,
    pub status: S,
    pub instance_id: Option<S>,
    pub device: Option<S>,
    pub image_id: Option<S>,
    pub source_snapshot_id: Option<S>,
    pub encrypted: bool,
    pub kms_key_id: Option<S>,
    pub performance_level: Option<S>,
    pub delete_with_instance: bool,
    pub charge_type: S,
    pub created_ms: i64,
    pub attached_ms: Option<i64>,
    pub detached_ms: Option<i64>,
    pub tags: S,
    pub serial: S,
    pub released: bool,
    /// ModifyDiskAttribute's DeleteAutoSnapshot.
    pub delete_auto_snapshot: bool,
    /// ModifyDiskAttribute's EnableAutoSnapshot; `None`: the category's default.
    pub enable_auto_snapshot: Option<bool>,
    /// The automatic snapshot policy applied to the disk (ApplyAutoSnapshotPolicy).
    pub auto_snapshot_policy_id: Option<S>,
    /// JoinResourceGroup's group ("" for none).
    pub resource_group_id: S,
}

impl Disk {
    pub const COLUMNS: &'static str = "id, account_id, region_id, zone_id, name, description, category, size_gib, disk_type, status, instance_id, device, image_id, source_snapshot_id, encrypted, kms_key_id, performance_level, delete_with_instance, charge_type, created_ms, attached_ms, detached_ms, tags, serial, released, delete_auto_snapshot, enable_auto_snapshot, auto_snapshot_policy_id, resource_group_id";

    pub fn from_row(r: &Row) -> rusqlite::Result<Disk> {
        Disk::read(r)
    }
}

impl<S: FromSql> Disk<S> {
    /// Read a row of [`Disk::COLUMNS`].
    pub fn read(r: &Row) -> rusqlite::Result<Disk<S>> {
        Ok(Disk {
            id: r.get(0)?,
            account_id: r.get(1)?,
            region_id: r.get(2)?,
            zone_id: r.get(3)?,
            name: r.get(4)?,
            description: r.get(5)?,
            category: r.get(6)?,
            size_gib: r.get(7)?,
            disk_type: r.get(8)?,
            status: r.get(9)?,
            instance_id: r.get(10)?,
            device: r.get(11)?,
            image_id: r.get(12)?,
            source_snapshot_id: r.get(13)?,
            encrypted: r.get(14)?,
            kms_key_id: r.get(15)?,
            performance_level: r.get(16)?,
            delete_with_instance: r.get(17)?,
            charge_type: r.get(18)?,
            created_ms: r.get(19)?,
            attached_ms: r.get(20)?,
            detached_ms: r.get(21)?,
            tags: r.get(22)?,
            serial: r.get(23)?,
            released: r.get(24)?,
            delete_auto_snapshot: r.get(25)?,
            enable_auto_snapshot: r.get(26)?,
            auto_snapshot_policy_id: r.get(27)?,
            resource_group_id: r.get(28)?,
        })
    }
}

impl Disk {
    pub fn is_local(&self) -> bool {
        config::is_local_category(&self.category)
    }
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub account_id: String,
    pub region_id: String,
    pub zone_id: String,
    pub name: String,
    pub description: String,
    pub host_name: String,
    pub instance_type: String,
    pub image_id: String,
    pub status: String,
    pub pending_target: Option<String>,
    pub charge_type: String,
    pub expired_ms: Option<i64>,
    pub created_ms: i64,
    pub start_ms: Option<i64>,
    pub vswitch_id: String,
    pub security_groups: String,
    pub private_ip: String,
    pub lock_reason: Option<String>,
    pub lock_msg: Option<String>,
    pub deletion_protection: bool,
    pub tags: String,
    pub serial: String,
    pub released: bool,
    /// The VPC of its vSwitch ("" for instances made before networks existed).
    pub vpc_id: String,
    /// JoinResourceGroup's group ("" for none).
    pub resource_group_id: String,
    /// vCPUs and memory (MiB) of its type when it was made.
    pub cpu: u32,
    pub memory_mib: u32,
    /// The SSH key pair bound to the instance (RunInstances, AttachKeyPair).
    pub key_pair_name: Option<String>,
    /// `PayByTraffic` or `PayByBandwidth` (RunInstances' InternetChargeType).
    pub internet_charge_type: String,
    /// InternetMaxBandwidthOut / In, Mbit/s, as given.
    pub bandwidth_out: i64,
    pub bandwidth_in: i64,
}

impl Instance {
    pub const COLUMNS: &'static str = "id, account_id, region_id, zone_id, name, description, host_name, instance_type, image_id, status, pending_target, charge_type, expired_ms, created_ms, start_ms, vswitch_id, security_groups, private_ip, lock_reason, lock_msg, deletion_protection, tags, serial, released, vpc_id, resource_group_id, cpu, memory_mib, key_pair_name, internet_charge_type, bandwidth_out, bandwidth_in";

    pub fn from_row(r: &Row) -> rusqlite::Result<Instance> {
        Ok(Instance {
            id: r.get(0)?,
            account_id: r.get(1)?,
            region_id: r.get(2)?,
            zone_id: r.get(3)?,
            name: r.get(4)?,
            description: r.get(5)?,
            host_name: r.get(6)?,
            instance_type: r.get(7)?,
            image_id: r.get(8)?,
            status: r.get(9)?,
            pending_target: r.get(10)?,
            charge_type: r.get(11)?,
            expired_ms: r.get(12)?,
            created_ms: r.get(13)?,
            start_ms: r.get(14)?,
            vswitch_id: r.get(15)?,
            security_groups: r.get(16)?,
            private_ip: r.get(17)?,
            lock_reason: r.get(18)?,
            lock_msg: r.get(19)?,
            deletion_protection: r.get(20)?,
            tags: r.get(21)?,
            serial: r.get(22)?,
            released: r.get(23)?,
            vpc_id: r.get(24)?,
            resource_group_id: r.get(25)?,
            cpu: r.get(26)?,
            memory_mib: r.get(27)?,
            key_pair_name: r.get(28)?,
            internet_charge_type: r.get(29)?,
            bandwidth_out: r.get(30)?,
            bandwidth_in: r.get(31)?,
        })
    }

    /// A prepaid instance past its expiry time.
    pub fn is_expired(&self, now: i64) -> bool {
        self.charge_type == "PrePaid" && self.expired_ms.is_some_and(|e| e <= now)
    }
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub id: String,
    pub account_id: String,
    pub region_id: String,
    pub disk_id: String,
    pub disk_size_gib: i64,
    pub disk_type: String,
    pub disk_category: String,
    pub name: String,
    pub description: String,
    pub status: String,
    pub created_ms: i64,
    pub due_ms: i64,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub retention_days: Option<i64>,
    pub legacy: bool,
    pub tags: String,
    pub released: bool,
    /// Taken by an automatic snapshot policy (SnapshotType `auto`).
    pub auto: bool,
    /// CopySnapshot's source snapshot and its region, for a copy.
    pub source_snapshot_id: Option<String>,
    pub source_region_id: Option<String>,
    /// JoinResourceGroup's group ("" for none).
    pub resource_group_id: String,
}

impl Snapshot {
    pub const COLUMNS: &'static str = "id, account_id, region_id, disk_id, disk_size_gib, disk_type, disk_category, name, description, status, created_ms, due_ms, encrypted, kms_key_id, retention_days, legacy, tags, released, auto, source_snapshot_id, source_region_id, resource_group_id";

    pub fn from_row(r: &Row) -> rusqlite::Result<Snapshot> {
        Ok(Snapshot {
            id: r.get(0)?,
            account_id: r.get(1)?,
            region_id: r.get(2)?,
            disk_id: r.get(3)?,
            disk_size_gib: r.get(4)?,
            disk_type: r.get(5)?,
            disk_category: r.get(6)?,
            name: r.get(7)?,
            description: r.get(8)?,
            status: r.get(9)?,
            created_ms: r.get(10)?,
            due_ms: r.get(11)?,
            encrypted: r.get(12)?,
            kms_key_id: r.get(13)?,
            retention_days: r.get(14)?,
            legacy: r.get(15)?,
            tags: r.get(16)?,
            released: r.get(17)?,
            auto: r.get(18)?,
            source_snapshot_id: r.get(19)?,
            source_region_id: r.get(20)?,
            resource_group_id: r.get(21)?,
        })
    }

    /// Percent done, from the time elapsed against the time the work is due to finish.
    pub fn progress(&self, now: i64) -> i64 {
        match self.status.as_str() {
            "accomplished" => 100,
            "failed" => 0,
            _ if self.due_ms <= self.created_ms => 99,
            _ => ((now - self.created_ms) * 100 / (self.due_ms - self.created_ms)).clamp(0, 99),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Image {
    pub id: String,
    pub account_id: Option<String>,
    pub name: String,
    pub description: String,
    pub snapshot_id: Option<String>,
    pub size_gib: i64,
    pub created_ms: i64,
    /// Creating, Available or CreateFailed.
    pub status: String,
    /// Percent done while Creating.
    pub progress: i64,
    /// ImportImage's source while importing, else `None`.
    pub import: Option<ImportSource>,
    /// Made by CopyImage (IsCopied).
    pub copied: bool,
    /// The image's tags, JSON as `tags_json` writes them.
    pub tags: String,
    /// Shared with at least one account (ModifyImageSharePermission).
    pub shared: bool,
    /// JoinResourceGroup's group ("" for none).
    pub resource_group_id: String,
}

/// Where an imported image comes from (kept on the image while it is Creating).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportSource {
    pub bucket: String,
    pub object: String,
    /// RAW, QCOW2 or VHD; `None`: found from the file.
    pub format: Option<String>,
    pub min_gib: Option<i64>,
    pub architecture: String,
    pub os_type: String,
    pub platform: String,
    pub boot_mode: String,
}

impl Image {
    /// Columns of `images_now` in [`Image::from_row`] order.
    pub const COLUMNS: &'static str = "id, account_id, name, description, snapshot_id, size_gib, created_ms, status, progress, import_json, source_image_id, tags, shared, resource_group_id";

    /// A public image has `account_id = ''` in `images_now`.
    pub fn from_row(r: &Row) -> rusqlite::Result<Image> {
        let owner: String = r.get(1)?;
        Ok(Image {
            id: r.get(0)?,
            account_id: (!owner.is_empty()).then_some(owner),
            name: r.get(2)?,
            description: r.get(3)?,
            snapshot_id: r.get(4)?,
            size_gib: r.get(5)?,
            created_ms: r.get(6)?,
            status: r.get(7)?,
            progress: r.get(8)?,
            import: r.get::<_, Option<String>>(9)?.and_then(|j| serde_json::from_str(&j).ok()),
            copied: r.get::<_, Option<String>>(10)?.is_some(),
            tags: r.get(11)?,
            shared: r.get(12)?,
            resource_group_id: r.get(13)?,
        })
    }
}

/// Text read from the catalog into an inline string (no allocation up to 24 bytes, which
/// covers ids, regions, zones, states and most names), for rows that are only shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub compact_str::CompactString);

impl FromSql for Text {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        Ok(Text(compact_str::CompactString::from(v.as_str()?)))
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}
