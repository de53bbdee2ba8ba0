//! Catalog rows as structs, and how each renders in ECS responses.

use crate::config;
use chrono::{DateTime, Utc};
use ecs_api::{Node, obj};
use rusqlite::Row;

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `2019-11-11T08:35:29Z`, the disk and snapshot time format (RFC 3339, whole seconds, UTC).
pub fn fmt_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// `2017-12-10T04:04Z`, the instance time format: [`fmt_time`] without its seconds.
pub fn fmt_minute(ms: i64) -> String {
    let mut t = fmt_time(ms);
    if t.len() == "2017-12-10T04:04:05Z".len() {
        t.truncate("2017-12-10T04:04".len());
        t.push('Z');
    }
    t
}

pub fn tags_json(tags: &[(String, String)]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".into())
}

fn tags_value(raw: &str) -> Node {
    let tags: Vec<(String, String)> = serde_json::from_str(raw).unwrap_or_default();
    Node::wrapped("Tag", tags.into_iter().map(|(k, v)| obj! {"TagKey" => k, "TagValue" => v}).collect())
}

#[derive(Debug, Clone)]
pub struct Disk {
    pub id: String,
    pub account_id: String,
    pub region_id: String,
    pub zone_id: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub size_gib: i64,
    pub disk_type: String,
    pub status: String,
    pub instance_id: Option<String>,
    pub device: Option<String>,
    pub image_id: Option<String>,
    pub source_snapshot_id: Option<String>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub performance_level: Option<String>,
    pub delete_with_instance: bool,
    pub charge_type: String,
    pub created_ms: i64,
    pub attached_ms: Option<i64>,
    pub detached_ms: Option<i64>,
    pub tags: String,
    pub serial: String,
    pub released: bool,
}

impl Disk {
    pub const COLUMNS: &'static str = "id, account_id, region_id, zone_id, name, description, category, size_gib, disk_type, status, instance_id, device, image_id, source_snapshot_id, encrypted, kms_key_id, performance_level, delete_with_instance, charge_type, created_ms, attached_ms, detached_ms, tags, serial, released";

    pub fn from_row(r: &Row) -> rusqlite::Result<Disk> {
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
        })
    }

    pub fn is_local(&self) -> bool {
        config::is_local_category(&self.category)
    }

    /// The disk as DescribeDisks shows it (consumes the row: its strings move into the answer).
    pub fn into_node(self) -> Node {
        let attached = self.status == "In_use" || (self.instance_id.is_some() && self.status != "Available");
        let (instance_id, device) = if attached {
            (self.instance_id.unwrap_or_default(), self.device.unwrap_or_default())
        } else {
            Default::default()
        };
        let attached_time = self.attached_ms.map(fmt_time).unwrap_or_default();
        let attachments: Vec<Node> = if attached && !instance_id.is_empty() {
            vec![obj! {
                "InstanceId" => &instance_id,
                "Device" => &device,
                "AttachedTime" => &attached_time,
            }]
        } else {
            vec![]
        };
        let local = config::is_local_category(&self.category);
        let iops = if self.category == "cloud_essd" { 1800 + 50 * self.size_gib.min(1000) } else { 0 };
        let portable = !local && self.disk_type == "data";
        obj! {
            "DiskId" => self.id,
            "DiskName" => self.name,
            "Description" => self.description,
            "RegionId" => self.region_id,
            "ZoneId" => self.zone_id,
            "Status" => self.status,
            "Type" => self.disk_type,
            "Category" => self.category,
            "Size" => self.size_gib,
            "Encrypted" => self.encrypted,
            "KMSKeyId" => self.kms_key_id.unwrap_or_default(),
            "InstanceId" => instance_id,
            "Device" => device,
            "ImageId" => self.image_id.unwrap_or_default(),
            "SourceSnapshotId" => self.source_snapshot_id.unwrap_or_default(),
            "CreationTime" => fmt_time(self.created_ms),
            "AttachedTime" => attached_time,
            "DetachedTime" => self.detached_ms.map(fmt_time).unwrap_or_default(),
            "ExpiredTime" => "2999-09-08T16:00Z",
            "DiskChargeType" => self.charge_type,
            "Portable" => portable,
            "DeleteWithInstance" => self.delete_with_instance,
            "DeleteAutoSnapshot" => true,
            "EnableAutoSnapshot" => !local,
            "EnableAutomatedSnapshotPolicy" => false,
            "AutoSnapshotPolicyId" => "",
            "PerformanceLevel" => self.performance_level.unwrap_or_default(),
            "IOPS" => iops,
            "MultiAttach" => "Disabled",
            "MountInstanceNum" => attachments.len(),
            "Attachments" => Node::wrapped("Attachment", attachments),
            "OperationLocks" => Node::wrapped("OperationLock", vec![]),
            "Tags" => tags_value(&self.tags),
            "ResourceGroupId" => "",
            "SerialNumber" => &self.serial,
            "ProductCode" => "",
            "StorageSetId" => "",
            "BdfId" => "",
            "BurstingEnabled" => false,
        }
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
}

impl Instance {
    pub const COLUMNS: &'static str = "id, account_id, region_id, zone_id, name, description, host_name, instance_type, image_id, status, pending_target, charge_type, expired_ms, created_ms, start_ms, vswitch_id, security_groups, private_ip, lock_reason, lock_msg, deletion_protection, tags, serial, released";

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
        })
    }

    /// A prepaid instance past its expiry time.
    pub fn is_expired(&self, now: i64) -> bool {
        self.charge_type == "PrePaid" && self.expired_ms.is_some_and(|e| e <= now)
    }

    pub fn to_node(&self) -> Node {
        let (cpu, mem) = config::instance_type(&self.instance_type).unwrap_or((0, 0));
        let family = self.instance_type.rsplit_once('.').map(|(f, _)| f.to_string()).unwrap_or_default();
        let sgs: Vec<String> = serde_json::from_str(&self.security_groups).unwrap_or_default();
        let locks: Vec<Node> = self
            .lock_reason
            .iter()
            .map(|r| obj! {"LockReason" => r, "LockMsg" => self.lock_msg.clone().unwrap_or_default()})
            .collect();
        obj! {
            "InstanceId" => &self.id,
            "InstanceName" => &self.name,
            "Description" => &self.description,
            "HostName" => &self.host_name,
            "Status" => &self.status,
            "RegionId" => &self.region_id,
            "ZoneId" => &self.zone_id,
            "InstanceType" => &self.instance_type,
            "InstanceTypeFamily" => family,
            "ImageId" => &self.image_id,
            "Cpu" => cpu,
            "Memory" => mem,
            "OSType" => "linux",
            "OSName" => "Linux",
            "CreationTime" => fmt_minute(self.created_ms),
            "StartTime" => self.start_ms.map(fmt_minute).unwrap_or_default(),
            "ExpiredTime" => self.expired_ms.map(fmt_minute).unwrap_or_else(|| "2099-12-31T15:59Z".into()),
            "InstanceChargeType" => &self.charge_type,
            "InternetChargeType" => "PayByTraffic",
            "StoppedMode" => if self.status == "Stopped" { "KeepCharging" } else { "Not-applicable" },
            "InstanceNetworkType" => "vpc",
            "IoOptimized" => true,
            "SerialNumber" => &self.serial,
            "DeletionProtection" => self.deletion_protection,
            "OperationLocks" => Node::wrapped("LockReason", locks),
            "VpcAttributes" => obj! {
                "VpcId" => if self.vswitch_id.is_empty() { String::new() } else { format!("vpc-{}", &self.vswitch_id.trim_start_matches("vsw-")) },
                "VSwitchId" => &self.vswitch_id,
                "PrivateIpAddress" => Node::wrapped("IpAddress", vec![Node::from(&self.private_ip)]),
                "NatIpAddress" => "",
            },
            "PublicIpAddress" => Node::wrapped("IpAddress", vec![]),
            "InnerIpAddress" => Node::wrapped("IpAddress", vec![]),
            "SecurityGroupIds" => Node::wrapped("SecurityGroupId", sgs.into_iter().map(Node::from).collect()),
            "Tags" => tags_value(&self.tags),
            "ResourceGroupId" => "",
        }
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
}

impl Snapshot {
    pub const COLUMNS: &'static str = "id, account_id, region_id, disk_id, disk_size_gib, disk_type, disk_category, name, description, status, created_ms, due_ms, encrypted, kms_key_id, retention_days, legacy, tags, released";

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

    pub fn to_node(&self, now: i64, usage: &'static str) -> Node {
        let progress = self.progress(now);
        obj! {
            "SnapshotId" => &self.id,
            "SnapshotName" => &self.name,
            "Description" => &self.description,
            "Status" => &self.status,
            "Progress" => format!("{progress}%"),
            "RemainTime" => if self.status == "progressing" { ((self.due_ms - now).max(0) + 999) / 1000 } else { 0 },
            "Available" => self.status == "accomplished",
            "CreationTime" => fmt_time(self.created_ms),
            "LastModifiedTime" => fmt_time(self.created_ms),
            "SourceDiskId" => &self.disk_id,
            "SourceDiskSize" => self.disk_size_gib.to_string(),
            "SourceDiskType" => &self.disk_type,
            "SourceStorageType" => "disk",
            "SnapshotType" => "user",
            "Usage" => usage,
            "Category" => "standard",
            "Encrypted" => self.encrypted,
            "KMSKeyId" => self.kms_key_id.clone().unwrap_or_default(),
            "InstantAccess" => false,
            "RetentionDays" => self.retention_days.unwrap_or(0),
            "RegionId" => &self.region_id,
            "SourceRegionId" => "",
            "SourceSnapshotId" => "",
            "SnapshotSN" => format!("64472-{}", &self.id.trim_start_matches("s-")),
            "ProductCode" => "",
            "ResourceGroupId" => "",
            "FullSnapshotSizeInBytes" => self.disk_size_gib << 30,
            "Tags" => tags_value(&self.tags),
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
}

impl Image {
    /// Columns of `images_now` in [`Image::from_row`] order.
    pub const COLUMNS: &'static str = "id, account_id, name, description, snapshot_id, size_gib, created_ms";

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
        })
    }

    pub fn to_node(&self, region: &str) -> Node {
        let public = self.account_id.is_none();
        obj! {
            "ImageId" => &self.id,
            "ImageName" => &self.name,
            "Description" => &self.description,
            "ImageVersion" => "",
            "ImageFamily" => "",
            "Size" => self.size_gib,
            "Status" => "Available",
            "Progress" => "100%",
            "OSType" => "linux",
            "OSName" => if public { "Blank x64" } else { "Linux" },
            "OSNameEn" => if public { "Blank x64" } else { "Linux" },
            "Platform" => "Others Linux",
            "Architecture" => "x86_64",
            "ImageOwnerAlias" => if public { "system" } else { "self" },
            "IsSelfShared" => "",
            "IsSupportCloudinit" => true,
            "IsSupportIoOptimized" => true,
            "Usage" => "instance",
            "CreationTime" => fmt_time(self.created_ms),
            "BootMode" => "BIOS",
            "RegionId" => region.to_string(),
            "DiskDeviceMappings" => Node::wrapped("DiskDeviceMapping", match &self.snapshot_id {
                Some(s) => vec![obj! {"SnapshotId" => s, "Size" => self.size_gib.to_string(), "Device" => "/dev/xvda", "Type" => "system", "Format" => "", "ImportOSSBucket" => "", "ImportOSSObject" => ""}],
                None => vec![],
            }),
            "Tags" => Node::wrapped("Tag", vec![]),
        }
    }
}
