//! What the cloud offers: regions and zones, instance types, disk categories, public images,
//! and how long transitional states last. Regions come from a file when given.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub id: String,
    pub local_name: String,
    pub zones: Vec<Zone>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub id: String,
    pub local_name: String,
}

/// The extra time each transitional state lasts, on top of the work itself.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Timings {
    pub disk_ms: u64,
    pub instance_ms: u64,
    pub snapshot_ms: u64,
}

impl Default for Timings {
    fn default() -> Self {
        Timings { disk_ms: 100, instance_ms: 100, snapshot_ms: 100 }
    }
}

/// Per-account limits: the server's defaults (its flags), overridden per account by the
/// operator (`account-limits`). Counts are of live resources in all regions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Limits {
    /// Signed API requests a second, sustained (0: no limit).
    pub requests_per_second: u32,
    /// Requests allowed at once above the rate, after a quiet spell.
    pub burst: u32,
    /// Disks (system and data).
    pub disks: i64,
    pub snapshots: i64,
    pub instances: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { requests_per_second: 500, burst: 1000, disks: 50_000, snapshots: 500_000, instances: 5_000 }
    }
}

/// One offered instance type (`serve --instance-types FILE` lists them; the default is
/// [`DEFAULT_INSTANCE_TYPES`]). An instance records its vCPUs and memory when it is made, so
/// dropping a type from the list leaves existing instances as they are.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InstanceType {
    /// `ecs.<family>.<size>`, e.g. `ecs.g7.large`.
    pub id: String,
    pub cpus: u32,
    pub memory_mib: u32,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub regions: Vec<Region>,
    /// The instance types on offer, in the order DescribeInstanceTypes lists them.
    pub instance_types: Vec<InstanceType>,
    pub timings: Timings,
    pub limits: Limits,
    /// ImportImage's OSS buckets: bucket name → the local directory that holds its objects
    /// (until the object-store tier exists).
    pub oss_buckets: std::collections::BTreeMap<String, std::path::PathBuf>,
    /// The image converter ImportImage runs (`qemu-img`).
    pub qemu_img: std::path::PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        let region = |id: &str, name: &str, zones: &[&str]| Region {
            id: id.into(),
            local_name: name.into(),
            zones: zones
                .iter()
                .map(|z| Zone { id: format!("{id}-{z}"), local_name: format!("{name} {}", z.to_uppercase()) })
                .collect(),
        };
        Config {
            regions: vec![
                region("cn-hangzhou", "China (Hangzhou)", &["h", "i"]),
                region("cn-shanghai", "China (Shanghai)", &["e", "f"]),
                region("cn-beijing", "China (Beijing)", &["h", "i"]),
            ],
            instance_types: DEFAULT_INSTANCE_TYPES
                .iter()
                .map(|(id, cpus, memory_mib)| InstanceType { id: id.to_string(), cpus: *cpus, memory_mib: *memory_mib })
                .collect(),
            timings: Timings::default(),
            limits: Limits::default(),
            oss_buckets: Default::default(),
            qemu_img: "qemu-img".into(),
        }
    }
}

impl Config {
    pub fn region(&self, id: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.id == id)
    }

    pub fn zone(&self, region: &str, zone: &str) -> Option<&Zone> {
        self.region(region)?.zones.iter().find(|z| z.id == zone)
    }

    /// The offered type `id`.
    pub fn instance_type(&self, id: &str) -> Option<&InstanceType> {
        self.instance_types.iter().find(|t| t.id == id)
    }

    /// Refuse a type list that cannot be served: empty, a duplicate, a name not of the form
    /// `ecs.<family>.<size>`, or no vCPU or memory.
    pub fn check_instance_types(types: &[InstanceType]) -> Result<(), String> {
        if types.is_empty() {
            return Err("the list of instance types is empty".into());
        }
        for (i, t) in types.iter().enumerate() {
            let parts: Vec<&str> = t.id.split('.').collect();
            if parts.len() != 3 || parts[0] != "ecs" || parts[1].is_empty() || parts[2].is_empty() {
                return Err(format!("instance type {:?} is not of the form ecs.<family>.<size>", t.id));
            }
            if t.cpus == 0 || t.memory_mib == 0 {
                return Err(format!("instance type {} has no vCPU or no memory", t.id));
            }
            if types[..i].iter().any(|o| o.id == t.id) {
                return Err(format!("instance type {} is listed twice", t.id));
            }
        }
        Ok(())
    }
}

/// The default offer: (name, vCPUs, memory MiB).
pub const DEFAULT_INSTANCE_TYPES: &[(&str, u32, u32)] = &[
    ("ecs.t6-c1m1.large", 2, 2048),
    ("ecs.t6-c1m2.large", 2, 4096),
    ("ecs.s6-c1m1.small", 1, 1024),
    ("ecs.e-c1m1.large", 2, 2048),
    ("ecs.u1-c1m2.large", 2, 4096),
    ("ecs.c6.large", 2, 4096),
    ("ecs.g6.large", 2, 8192),
    ("ecs.c7.large", 2, 4096),
    ("ecs.c7.xlarge", 4, 8192),
    ("ecs.g7.large", 2, 8192),
    ("ecs.g7.xlarge", 4, 16384),
    ("ecs.g7.2xlarge", 8, 32768),
    ("ecs.r7.large", 2, 16384),
    ("ecs.g8i.large", 2, 8192),
    ("ecs.g8i.xlarge", 4, 16384),
    ("ecs.i3.xlarge", 4, 32768),
];

/// Disk categories: (name, min GiB, max GiB, local). Local disks live and die with their
/// instance and support neither snapshots nor ResetDisk.
pub const DISK_CATEGORIES: &[(&str, i64, i64, bool)] = &[
    ("cloud", 5, 2000, false),
    ("cloud_efficiency", 20, 32768, false),
    ("cloud_ssd", 20, 32768, false),
    ("cloud_essd", 20, 32768, false),
    ("cloud_auto", 1, 65536, false),
    ("cloud_essd_entry", 10, 32768, false),
    ("ephemeral_ssd", 5, 800, true),
    ("local_ssd_pro", 5, 7000, true),
    ("local_hdd_pro", 5, 32768, true),
    ("elastic_ephemeral_disk_standard", 64, 8192, true),
    ("elastic_ephemeral_disk_premium", 64, 8192, true),
];

pub fn category(name: &str) -> Option<(i64, i64, bool)> {
    DISK_CATEGORIES.iter().find(|(n, ..)| *n == name).map(|(_, lo, hi, local)| (*lo, *hi, *local))
}

pub fn is_local_category(name: &str) -> bool {
    category(name).is_some_and(|(_, _, local)| local)
}

/// Public images: (id, name, size GiB, OSName). They carry no bytes: a system disk made from
/// one starts empty (all zeros), a blank machine to install onto.
pub const PUBLIC_IMAGES: &[(&str, &str, i64, &str)] = &[("blank_x64_20G.vhd", "blank-x64", 20, "Blank x64")];

pub const DEFAULT_DISK_CATEGORY: &str = "cloud_essd";
pub const DEFAULT_SYSTEM_DISK_CATEGORY: &str = "cloud_essd";
/// A disk may carry this many manual snapshots.
pub const SNAPSHOT_QUOTA: i64 = 256;
/// Data disks one instance may hold (plus its system disk).
pub const MAX_DATA_DISKS: i64 = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_type_lists_are_checked() {
        let t = |id: &str, cpus, memory_mib| InstanceType { id: id.into(), cpus, memory_mib };
        assert!(Config::check_instance_types(&Config::default().instance_types).is_ok());
        assert!(Config::check_instance_types(&[t("ecs.lab.small", 1, 512)]).is_ok());
        assert!(Config::check_instance_types(&[]).is_err());
        for bad in ["lab.small", "ecs.small", "ecs..small", "ecs.lab.", "ecs.a.b.c"] {
            assert!(Config::check_instance_types(&[t(bad, 1, 512)]).is_err(), "{bad}");
        }
        assert!(Config::check_instance_types(&[t("ecs.a.b", 0, 512)]).is_err());
        assert!(Config::check_instance_types(&[t("ecs.a.b", 1, 0)]).is_err());
        assert!(Config::check_instance_types(&[t("ecs.a.b", 1, 1), t("ecs.a.b", 2, 2)]).is_err());
    }
}
