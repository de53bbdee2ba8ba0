//! How each catalog row is shown in ECS responses: the fields, in the order and with the
//! empty values of the API reference's examples (DescribeDisks, DescribeSnapshots,
//! DescribeInstances, DescribeImages). Each resource writes itself to an [`Out`], so a page
//! goes from rows to JSON or XML with no tree built in between.

use crate::config;
use crate::model::{Disk, Image, Instance, Snapshot};
use ecs_api::write::{Emit, Out};

/// A UTC time as ECS writes it, `2019-11-11T08:35:29Z` (whole seconds) or `2017-12-10T04:04Z`
/// (instance times, whole minutes), formatted without allocating. Years outside 0–9999 give
/// the empty string.
#[derive(Clone, Copy)]
pub struct TimeText {
    buf: [u8; 20],
    len: usize,
}

impl TimeText {
    /// `ms` (milliseconds since the Unix epoch) to whole seconds.
    pub fn secs(ms: i64) -> TimeText {
        TimeText::new(ms, true)
    }

    /// `ms` (milliseconds since the Unix epoch) to whole minutes.
    pub fn minutes(ms: i64) -> TimeText {
        TimeText::new(ms, false)
    }

    fn new(ms: i64, with_secs: bool) -> TimeText {
        let mut t = TimeText { buf: [0; 20], len: 0 };
        let secs = ms.div_euclid(1000);
        let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil(days);
        if !(0..=9999).contains(&y) {
            return t;
        }
        let mut put = |v: i64, width: usize, sep: u8| {
            let mut v = v;
            for i in (0..width).rev() {
                t.buf[t.len + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
            t.len += width;
            t.buf[t.len] = sep;
            t.len += 1;
        };
        put(y, 4, b'-');
        put(m, 2, b'-');
        put(d, 2, b'T');
        put(sod / 3600, 2, b':');
        if with_secs {
            put(sod / 60 % 60, 2, b':');
            put(sod % 60, 2, b'Z');
        } else {
            put(sod / 60 % 60, 2, b'Z');
        }
        t
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// (year, month 1–12, day 1–31) of the proleptic Gregorian calendar for `days` since
/// 1970-01-01: count in 400-year eras from 0000-03-01, so that the leap day ends each year.
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of the era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of the era
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March = 0
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `{"Tag": [{"TagKey", "TagValue"}...]}` from the stored JSON list of pairs.
pub(crate) fn tags(o: &mut dyn Out, raw: &str) {
    let tags: Vec<(String, String)> =
        if raw == "[]" { Vec::new() } else { serde_json::from_str(raw).unwrap_or_default() };
    o.wrapped("Tags", "Tag", |o| {
        for (k, v) in &tags {
            o.begin_obj();
            o.field("TagKey", k);
            o.field("TagValue", v);
            o.end_obj();
        }
    });
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or_default()
}

fn opts<S: AsRef<str>>(v: &Option<S>) -> &str {
    v.as_ref().map(AsRef::as_ref).unwrap_or_default()
}

/// The disk as DescribeDisks shows it.
impl<S: AsRef<str> + Send + Sync> Emit for Disk<S> {
    fn emit(&self, o: &mut dyn Out) {
        let attached =
            self.status.as_ref() == "In_use" || (self.instance_id.is_some() && self.status.as_ref() != "Available");
        let (instance_id, device) = if attached { (opts(&self.instance_id), opts(&self.device)) } else { ("", "") };
        let attached_time = self.attached_ms.map(TimeText::secs);
        let attached_time = attached_time.as_ref().map(TimeText::as_str).unwrap_or_default();
        let attachment = attached && !instance_id.is_empty();
        let local = config::is_local_category(self.category.as_ref());
        let iops = if self.category.as_ref() == "cloud_essd" { 1800 + 50 * self.size_gib.min(1000) } else { 0 };
        o.begin_obj();
        o.field("DiskId", self.id.as_ref());
        o.field("DiskName", self.name.as_ref());
        o.field("Description", self.description.as_ref());
        o.field("RegionId", self.region_id.as_ref());
        o.field("ZoneId", self.zone_id.as_ref());
        o.field("Status", self.status.as_ref());
        o.field("Type", self.disk_type.as_ref());
        o.field("Category", self.category.as_ref());
        o.field("Size", &self.size_gib);
        o.field("Encrypted", &self.encrypted);
        o.field("KMSKeyId", opts(&self.kms_key_id));
        o.field("InstanceId", instance_id);
        o.field("Device", device);
        o.field("ImageId", opts(&self.image_id));
        o.field("SourceSnapshotId", opts(&self.source_snapshot_id));
        o.field("CreationTime", TimeText::secs(self.created_ms).as_str());
        o.field("AttachedTime", attached_time);
        o.field(
            "DetachedTime",
            self.detached_ms.map(TimeText::secs).as_ref().map(TimeText::as_str).unwrap_or_default(),
        );
        o.field("ExpiredTime", "2999-09-08T16:00Z");
        o.field("DiskChargeType", self.charge_type.as_ref());
        o.field("Portable", &(!local && self.disk_type.as_ref() == "data"));
        o.field("DeleteWithInstance", &self.delete_with_instance);
        o.field("DeleteAutoSnapshot", &self.delete_auto_snapshot);
        o.field("EnableAutoSnapshot", &self.enable_auto_snapshot.unwrap_or(!local));
        o.field("EnableAutomatedSnapshotPolicy", &self.auto_snapshot_policy_id.is_some());
        o.field("AutoSnapshotPolicyId", opts(&self.auto_snapshot_policy_id));
        o.field("PerformanceLevel", opts(&self.performance_level));
        o.field("IOPS", &iops);
        o.field("MultiAttach", "Disabled");
        o.field("MountInstanceNum", &usize::from(attachment));
        o.wrapped("Attachments", "Attachment", |o| {
            if attachment {
                o.begin_obj();
                o.field("InstanceId", instance_id);
                o.field("Device", device);
                o.field("AttachedTime", attached_time);
                o.end_obj();
            }
        });
        o.wrapped("OperationLocks", "OperationLock", |_| {});
        tags(o, self.tags.as_ref());
        o.field("ResourceGroupId", self.resource_group_id.as_ref());
        o.field("SerialNumber", self.serial.as_ref());
        o.field("ProductCode", "");
        o.field("StorageSetId", "");
        o.field("StorageSetPartitionNumber", &0i64);
        o.field("StorageClusterId", "");
        o.field("ProvisionedIops", &0i64);
        o.field("BdfId", "");
        o.field("BurstingEnabled", &false);
        o.end_obj();
    }
}

/// The instance as DescribeInstances shows it.
impl Emit for Instance {
    fn emit(&self, o: &mut dyn Out) {
        let (cpu, mem) = (self.cpu, self.memory_mib);
        let family = self.instance_type.rsplit_once('.').map(|(f, _)| f).unwrap_or_default();
        let sgs: Vec<String> = serde_json::from_str(&self.security_groups).unwrap_or_default();
        let start = self.start_ms.map(TimeText::minutes);
        let expired = self.expired_ms.map(TimeText::minutes);
        o.begin_obj();
        o.field("InstanceId", &self.id);
        o.field("InstanceName", &self.name);
        o.field("Description", &self.description);
        o.field("HostName", &self.host_name);
        o.field("Status", &self.status);
        o.field("RegionId", &self.region_id);
        o.field("ZoneId", &self.zone_id);
        o.field("InstanceType", &self.instance_type);
        o.field("InstanceTypeFamily", family);
        o.field("ImageId", &self.image_id);
        o.field("Cpu", &cpu);
        o.field("Memory", &mem);
        o.field("OSType", "linux");
        o.field("OSName", "Linux");
        o.field("CreationTime", TimeText::minutes(self.created_ms).as_str());
        o.field("StartTime", start.as_ref().map(TimeText::as_str).unwrap_or_default());
        o.field("ExpiredTime", expired.as_ref().map(TimeText::as_str).unwrap_or("2099-12-31T15:59Z"));
        o.field("InstanceChargeType", &self.charge_type);
        o.field("InternetChargeType", &self.internet_charge_type);
        o.field("StoppedMode", if self.status == "Stopped" { "KeepCharging" } else { "Not-applicable" });
        o.field("InstanceNetworkType", "vpc");
        o.field("IoOptimized", &true);
        o.field("SerialNumber", &self.serial);
        o.field("DeletionProtection", &self.deletion_protection);
        o.wrapped("OperationLocks", "LockReason", |o| {
            if let Some(r) = &self.lock_reason {
                o.begin_obj();
                o.field("LockReason", r);
                o.field("LockMsg", opt(&self.lock_msg));
                o.end_obj();
            }
        });
        o.key("VpcAttributes");
        o.begin_obj();
        o.field("VpcId", &self.vpc_id);
        o.field("VSwitchId", &self.vswitch_id);
        o.wrapped("PrivateIpAddress", "IpAddress", |o| o.str(&self.private_ip));
        o.field("NatIpAddress", "");
        o.end_obj();
        // EipAddress before PublicIpAddress: footmark's instance model reads them in the order
        // they come and needs EipAddress first (every other documented field is shaped as ECS
        // shapes it when there is nothing to say).
        obj(o, "EipAddress", |o| {
            o.field("AllocationId", "");
            o.field("Bandwidth", &0i64);
            o.field("InternetChargeType", "");
            o.field("IpAddress", "");
            o.field("IsSupportUnassociate", &false);
        });
        o.wrapped("PublicIpAddress", "IpAddress", |_| {});
        o.wrapped("InnerIpAddress", "IpAddress", |_| {});
        o.wrapped("SecurityGroupIds", "SecurityGroupId", |o| sgs.iter().for_each(|s| o.str(s)));
        tags(o, &self.tags);
        o.field("ResourceGroupId", &self.resource_group_id);
        o.wrapped("NetworkInterfaces", "NetworkInterface", |o| {
            o.begin_obj();
            o.field("NetworkInterfaceId", &format!("eni-{}", self.id.trim_start_matches("i-")));
            o.field("MacAddress", &mac(&self.id));
            o.field("PrimaryIpAddress", &self.private_ip);
            o.field("Type", "Primary");
            o.wrapped("PrivateIpSets", "PrivateIpSet", |o| {
                o.begin_obj();
                o.field("PrivateIpAddress", &self.private_ip);
                o.field("Primary", &true);
                o.field("PrivateDnsName", "");
                o.end_obj();
            });
            o.wrapped("Ipv6Sets", "Ipv6Set", |_| {});
            o.wrapped("Ipv4PrefixSets", "Ipv4PrefixSet", |_| {});
            o.wrapped("Ipv6PrefixSets", "Ipv6PrefixSet", |_| {});
            o.end_obj();
        });
        o.wrapped("RdmaIpAddress", "IpAddress", |_| {});
        obj(o, "CpuOptions", |o| {
            o.field("CoreCount", &(i64::from(cpu) / 2).max(1));
            o.field("ThreadsPerCore", &if cpu > 1 { 2i64 } else { 1 });
            o.field("Numa", "");
            o.field("TopologyType", "");
            o.field("EnableVISST", &false);
            o.field("EnableVRDT", &false);
            o.field("NestedVirtualization", &false);
            o.field("TurboMode", "");
        });
        obj(o, "DedicatedHostAttribute", |o| {
            o.field("DedicatedHostClusterId", "");
            o.field("DedicatedHostId", "");
            o.field("DedicatedHostName", "");
        });
        obj(o, "DedicatedInstanceAttribute", |o| {
            o.field("Affinity", "");
            o.field("Tenancy", "");
        });
        obj(o, "EcsCapacityReservationAttr", |o| {
            o.field("CapacityReservationId", "");
            o.field("CapacityReservationPreference", "");
        });
        obj(o, "HibernationOptions", |o| o.field("Configured", &false));
        obj(o, "MetadataOptions", |o| {
            o.field("HttpEndpoint", "enabled");
            o.field("HttpPutResponseHopLimit", &0i64);
            o.field("HttpTokens", "optional");
            o.field("InstanceMetadataTags", "disabled");
        });
        obj(o, "ImageOptions", |o| {
            o.field("CurrentOSNVMeSupported", &false);
            o.field("LoginAsNonRoot", &false);
        });
        obj(o, "PrivateDnsNameOptions", |o| {
            o.field("EnableInstanceIdDnsAAAARecord", &false);
            o.field("EnableInstanceIdDnsARecord", &false);
            o.field("EnableIpDnsARecord", &false);
            o.field("EnableIpDnsPtrRecord", &false);
            o.field("HostnameType", "Custom");
        });
        obj(o, "SecurityOptions", |o| o.field("EnableSecureBoot", &false));
        obj(o, "ClockOptions", |o| o.field("PtpStatus", "disabled"));
        obj(o, "AdditionalInfo", |o| {
            o.field("EnableHighDensityMode", &false);
            o.field("ManagedHostId", "");
            o.field("NodeSerialNumber", "");
        });
        o.field("AutoReleaseTime", "");
        o.field("ClusterId", "");
        o.field("CreditSpecification", "");
        o.field("DeploymentSetGroupNo", &0i64);
        o.field("DeploymentSetId", "");
        o.field("DeviceAvailable", &true);
        o.field("EnableNVS", &false);
        o.field("GPUAmount", &0i64);
        o.field("GPUSpec", "");
        o.field("HpcClusterId", "");
        o.field("ISP", "");
        o.field("InternetMaxBandwidthIn", &self.bandwidth_in);
        o.field("InternetMaxBandwidthOut", &self.bandwidth_out);
        o.field("KeyPairName", self.key_pair_name.as_deref().unwrap_or_default());
        o.field("LocalStorageAmount", &0i64);
        o.field("LocalStorageCapacity", &0i64);
        o.field("OSNameEn", "Linux");
        o.field("Recyclable", &false);
        o.field("SaleCycle", "");
        o.field("SpotDuration", &0i64);
        o.field("SpotInterruptionBehavior", "Terminate");
        o.field("SpotPriceLimit", &0i64);
        o.field("SpotStrategy", "NoSpot");
        o.field("VlanId", "");
        o.end_obj();
    }
}

/// An instance as a tree (for answers that show one instance's fields at their top).
pub fn instance_node(i: &Instance) -> ecs_api::Node {
    let mut o = ecs_api::write::NodeOut::default();
    i.emit(&mut o);
    o.finish()
}

/// `k: { ... }` with `fields` writing the object's fields.
fn obj(o: &mut dyn Out, k: &'static str, fields: impl FnOnce(&mut dyn Out)) {
    o.name(k);
    o.begin_obj();
    fields(o);
    o.end_obj();
}

/// A stable locally administered MAC address for an instance's primary interface.
/// (Alibaba's 00:16:3e prefix, then three bytes of SHA-256 of the id.)
pub(crate) fn mac(id: &str) -> String {
    use sha2::{Digest, Sha256};
    let b = Sha256::digest(id.as_bytes());
    format!("00:16:3e:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// A snapshot as DescribeSnapshots shows it at `now` (ms), with its Usage.
pub struct SnapshotView {
    pub snapshot: Snapshot,
    pub now: i64,
    pub usage: &'static str,
}

impl Emit for SnapshotView {
    fn emit(&self, o: &mut dyn Out) {
        let (s, now) = (&self.snapshot, self.now);
        let created = TimeText::secs(s.created_ms);
        o.begin_obj();
        o.field("SnapshotId", &s.id);
        o.field("SnapshotName", &s.name);
        o.field("Description", &s.description);
        o.field("Status", &s.status);
        o.field("Progress", &format!("{}%", s.progress(now)));
        let remain = if s.status == "progressing" { ((s.due_ms - now).max(0) + 999) / 1000 } else { 0 };
        o.field("RemainTime", &remain);
        o.field("Available", &(s.status == "accomplished"));
        o.field("CreationTime", created.as_str());
        o.field("LastModifiedTime", created.as_str());
        o.field("SourceDiskId", &s.disk_id);
        o.field("SourceDiskSize", &s.disk_size_gib.to_string());
        o.field("SourceDiskType", &s.disk_type);
        o.field("SourceStorageType", "disk");
        o.field("SnapshotType", if s.auto { "auto" } else { "user" });
        o.field("Usage", self.usage);
        o.field("Category", "standard");
        o.field("Encrypted", &s.encrypted);
        o.field("KMSKeyId", opt(&s.kms_key_id));
        o.field("InstantAccess", &false);
        o.field("RetentionDays", &s.retention_days.unwrap_or(0));
        o.field("RegionId", &s.region_id);
        o.field("SourceRegionId", opt(&s.source_region_id));
        o.field("SourceSnapshotId", opt(&s.source_snapshot_id));
        o.field("SnapshotSN", &format!("64472-{}", s.id.trim_start_matches("s-")));
        o.field("ProductCode", "");
        o.field("ResourceGroupId", &s.resource_group_id);
        o.field("FullSnapshotSizeInBytes", &(s.disk_size_gib << 30));
        tags(o, &s.tags);
        o.end_obj();
    }
}

/// An image as DescribeImages shows it in `region` to the account `viewer`: its own images
/// are `self`, those shared with it `others` (API reference DescribeImages, ImageOwnerAlias).
pub struct ImageView {
    pub image: Image,
    pub region: String,
    pub viewer: String,
}

/// An account id as ECS shows `OwnerId` / `ImageOwnerId`: accounts are numbered (16 digits,
/// `account-create`), so the id itself; 0 for what no account owns.
pub fn owner_number(account_id: Option<&str>) -> i64 {
    account_id.and_then(|a| a.parse().ok()).unwrap_or(0)
}

impl Emit for ImageView {
    fn emit(&self, o: &mut dyn Out) {
        let i = &self.image;
        let public = i.account_id.is_none();
        let imported = i.import.as_ref();
        let os_type = imported.map_or("linux", |m| m.os_type.as_str());
        let os = if public {
            "Blank x64"
        } else if os_type == "windows" {
            "Windows"
        } else {
            "Linux"
        };
        let platform = imported.map(|m| m.platform.as_str()).filter(|p| !p.is_empty()).unwrap_or("Others Linux");
        o.begin_obj();
        o.field("ImageId", &i.id);
        o.field("ImageName", &i.name);
        o.field("Description", &i.description);
        o.field("ImageVersion", "");
        o.field("ImageFamily", "");
        o.field("Size", &i.size_gib);
        o.field("Status", &i.status);
        o.field("Progress", &format!("{}%", i.progress));
        o.field("OSType", os_type);
        o.field("OSName", os);
        o.field("OSNameEn", os);
        o.field("Platform", platform);
        o.field("Architecture", imported.map_or("x86_64", |m| m.architecture.as_str()));
        let own = i.account_id.as_deref() == Some(self.viewer.as_str());
        let alias = match (public, own) {
            (true, _) => "system",
            (false, true) => "self",
            (false, false) => "others",
        };
        o.field("ImageOwnerAlias", alias);
        o.field("ImageOwnerId", &owner_number(i.account_id.as_deref()));
        // The reference's example writes "True"/"False" (a string); it says whether the
        // caller's own image is shared with other accounts.
        o.field(
            "IsSelfShared",
            if public {
                ""
            } else if own && i.shared {
                "True"
            } else {
                "False"
            },
        );
        o.field("IsCopied", &i.copied);
        o.field("ResourceGroupId", &i.resource_group_id);
        o.field("IsPublic", &false);
        o.field("IsSupportCloudinit", &true);
        o.field("IsSupportIoOptimized", &true);
        o.field("Usage", "instance");
        o.field("CreationTime", TimeText::secs(i.created_ms).as_str());
        o.field("BootMode", imported.map_or("BIOS", |m| m.boot_mode.as_str()));
        o.field("RegionId", &self.region);
        o.wrapped("DiskDeviceMappings", "DiskDeviceMapping", |o| {
            if let Some(s) = &i.snapshot_id {
                o.begin_obj();
                o.field("SnapshotId", s);
                o.field("Size", &i.size_gib.to_string());
                o.field("Device", "/dev/xvda");
                o.field("Type", "system");
                o.field("Format", imported.and_then(|m| m.format.as_deref()).unwrap_or_default());
                o.field("ImportOSSBucket", imported.map(|m| m.bucket.as_str()).unwrap_or_default());
                o.field("ImportOSSObject", imported.map(|m| m.object.as_str()).unwrap_or_default());
                o.end_obj();
            }
        });
        tags(o, &i.tags);
        o.end_obj();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, SecondsFormat, Utc};
    use proptest::prelude::*;

    #[test]
    fn known_times() {
        assert_eq!(TimeText::secs(0).as_str(), "1970-01-01T00:00:00Z");
        assert_eq!(TimeText::secs(1_573_461_329_999).as_str(), "2019-11-11T08:35:29Z");
        assert_eq!(TimeText::minutes(1_512_878_645_000).as_str(), "2017-12-10T04:04Z");
        assert_eq!(TimeText::secs(951_782_400_000).as_str(), "2000-02-29T00:00:00Z");
        assert_eq!(TimeText::secs(-1).as_str(), "1969-12-31T23:59:59Z");
        assert_eq!(TimeText::secs(i64::MAX).as_str(), "");
    }

    proptest! {
        #[test]
        fn times_match_chrono(ms in -62_167_219_200_000i64..253_402_300_799_999) {
            let want = DateTime::<Utc>::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(SecondsFormat::Secs, true);
            let (secs, minutes) = (TimeText::secs(ms), TimeText::minutes(ms));
            prop_assert_eq!(secs.as_str(), want.as_str());
            prop_assert_eq!(minutes.as_str(), format!("{}Z", &want[..16]));
        }
    }
}
