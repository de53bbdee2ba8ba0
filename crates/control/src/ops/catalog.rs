//! DescribeInstanceTypes and DescribeInstanceTypeFamilies: the instance types this server
//! offers (`Config::instance_types`), every field the API reference documents, with values
//! that follow from the type (vCPUs, memory, family) and ECS's usual figures for the rest.
//! DescribeAvailableResource and DescribeResourcesModification: what a zone offers, from the
//! same list and the disk categories.

use super::R;
use ecs_api::capacity::{DescribeAvailableResource, DescribeResourcesModification};
use ecs_api::instances::DescribeInstanceTypes;
use ecs_api::{ApiError, Code, Node, obj};

/// The family of a type name (`ecs.g7.large` → `ecs.g7`).
pub(crate) fn family(name: &str) -> &str {
    name.rsplit_once('.').map(|(f, _)| f).unwrap_or(name)
}

/// The generation ECS lists a family under (DescribeInstanceTypeFamilies' `Generation`).
pub(crate) fn generation(family: &str) -> &'static str {
    match family {
        "ecs.c6" | "ecs.g6" | "ecs.t6-c1m1" | "ecs.t6-c1m2" | "ecs.s6-c1m1" => "ecs-4",
        "ecs.g8i" => "ecs-6",
        _ => "ecs-5",
    }
}

fn level(family: &str) -> &'static str {
    match family {
        f if f.starts_with("ecs.t6") || f.starts_with("ecs.s6") => "CreditEntryLevel",
        f if f.starts_with("ecs.e-") || f.starts_with("ecs.u1") => "EntryLevel",
        _ => "EnterpriseLevel",
    }
}

fn category(family: &str) -> &'static str {
    match family {
        "ecs.c6" | "ecs.c7" => "Compute-optimized",
        "ecs.r7" => "Memory-optimized",
        "ecs.i3" => "Local SSD",
        f if f.starts_with("ecs.t6") => "Shared",
        _ => "General-purpose",
    }
}

fn item(name: &str, cpu: u32, mem_mib: u32) -> Node {
    let fam = family(name);
    let local = fam == "ecs.i3";
    let enis = i64::from(cpu.clamp(2, 8));
    let queues = i64::from(cpu.clamp(1, 8));
    obj! {
        "InstanceTypeId" => name.to_string(),
        "InstanceTypeFamily" => fam.to_string(),
        "CpuCoreCount" => cpu,
        "MemorySize" => Node::Float(f64::from(mem_mib) / 1024.0),
        "CpuArchitecture" => "X86",
        "InstanceCategory" => category(fam),
        "InstanceFamilyLevel" => level(fam),
        "PhysicalProcessorModel" => "",
        "CpuSpeedFrequency" => Node::Float(2.5),
        "CpuTurboFrequency" => Node::Float(3.2),
        "GPUAmount" => 0i64,
        "GPUSpec" => "",
        "GPUMemorySize" => Node::Float(0.0),
        "LocalStorageCategory" => if local { "local_nvme_ssd" } else { "" },
        "LocalStorageAmount" => i64::from(local),
        "LocalStorageCapacity" => if local { 1788i64 } else { 0 },
        "DiskQuantity" => 17i64,
        "NvmeSupport" => "unsupported",
        "EniQuantity" => enis,
        "EniTotalQuantity" => enis,
        "EniPrivateIpAddressQuantity" => 6i64,
        "EniIpv6AddressQuantity" => 1i64,
        "EniTrunkSupported" => true,
        "EriQuantity" => 0i64,
        "InstanceBandwidthRx" => i64::from(cpu) * 1_024_000,
        "InstanceBandwidthTx" => i64::from(cpu) * 1_024_000,
        "InstancePpsRx" => i64::from(cpu) * 150_000,
        "InstancePpsTx" => i64::from(cpu) * 150_000,
        "MaximumQueueNumberPerEni" => queues,
        "PrimaryEniQueueNumber" => queues,
        "SecondaryEniQueueNumber" => queues,
        "QueuePairNumber" => queues,
        "TotalEniQueueQuantity" => queues * enis,
        "BaselineCredit" => 0i64,
        "InitialCredit" => 0i64,
        "JumboFrameSupport" => false,
        "NetworkEncryptionSupport" => false,
        "NetworkCardQuantity" => 1i64,
        "NetworkCards" => Node::wrapped("NetworkCardInfo", vec![obj! {"NetworkCardIndex" => 0i64}]),
        "CpuOptions" => obj! {
            "Core" => (cpu / 2).max(1),
            "CoreFactor" => 1i64,
            "ThreadsPerCore" => if cpu > 1 { 2i64 } else { 1 },
            "HyperThreadingAdjustable" => false,
            "NestedVirtualizationSupport" => false,
            "SupportedTopologyTypes" => Node::wrapped("SupportedTopologyType", vec![]),
        },
        "EnhancedNetwork" => obj! {
            "ExpressSupport" => false, "RssSupport" => true, "SriovSupport" => false, "VfQueueNumberPerEni" => 0i64,
        },
        "Clock" => obj! {"PtpSupport" => "unsupported"},
        "Attributes" => Node::wrapped("Attribute", vec![]),
        "SecurityOptions" => obj! {"SecureBootSupport" => false},
        "SupportedBootModes" => Node::wrapped("SupportedBootMode", vec!["BIOS".into()]),
        "NetworkInfo" => obj! {"BandwidthWeighting" => obj! {"WeightingInfos" => Node::wrapped("WeightingInfo", vec![])}},
    }
}

/// DescribeInstanceTypes: the filters this catalog can answer (InstanceTypes.N,
/// InstanceTypeFamily, Minimum/MaximumCpuCoreCount, Minimum/MaximumMemorySize), paged by
/// NextToken over the list's order (the token is the next type's name).
pub(crate) fn describe_instance_types(config: &crate::config::Config, d: DescribeInstanceTypes) -> R<Node> {
    let offered: Vec<(&str, u32, u32)> =
        config.instance_types.iter().map(|t| (t.id.as_str(), t.cpus, t.memory_mib)).collect();
    let matches = |(name, cpu, mem): &&(&str, u32, u32)| {
        let gib = f64::from(*mem) / 1024.0;
        (d.types.is_empty() || d.types.iter().any(|t| t == name))
            && d.family.as_deref().is_none_or(|f| f == family(name))
            && d.min_cpu.is_none_or(|c| i64::from(*cpu) >= c)
            && d.max_cpu.is_none_or(|c| i64::from(*cpu) <= c)
            && d.min_memory_gib.is_none_or(|m| gib >= m)
            && d.max_memory_gib.is_none_or(|m| gib <= m)
    };
    let all: Vec<&(&str, u32, u32)> = offered.iter().filter(matches).collect();
    let start = match &d.next_token {
        None => 0,
        Some(t) => all.iter().position(|(n, _, _)| n == t).ok_or_else(|| ApiError::invalid("NextToken"))?,
    };
    let page: Vec<Node> =
        all.iter().skip(start).take(d.max_results as usize).map(|(n, c, m)| item(n, *c, *m)).collect();
    let next = all.get(start + d.max_results as usize).map(|(n, _, _)| n.to_string()).unwrap_or_default();
    let mut out = Node::obj();
    out.push("InstanceTypes", Node::wrapped("InstanceType", page));
    out.push("NextToken", next);
    Ok(out)
}

/// DescribeInstanceTypeFamilies: the families of the offered types, optionally of one
/// generation.
pub(crate) fn describe_instance_type_families(config: &crate::config::Config, gen_filter: Option<&str>) -> R<Node> {
    // In the order the types are offered, each family once.
    let mut families: Vec<&str> = Vec::new();
    for t in &config.instance_types {
        if !families.contains(&family(&t.id)) {
            families.push(family(&t.id));
        }
    }
    let items = families
        .into_iter()
        .filter(|f| gen_filter.is_none_or(|g| g == generation(f)))
        .map(|f| obj! {"InstanceTypeFamilyId" => f.to_string(), "Generation" => generation(f)})
        .collect();
    let mut out = Node::obj();
    out.push("InstanceTypeFamilies", Node::wrapped("InstanceTypeFamily", items));
    Ok(out)
}

/// One `SupportedResource`: a value on offer, with a size range for disks (GiB).
fn supported(value: &str, range: Option<(i64, i64)>) -> Node {
    let mut o = obj! {"Value" => value.to_string(), "Status" => "Available", "StatusCategory" => "WithStock"};
    if let Some((min, max)) = range {
        o.push("Min", min);
        o.push("Max", max);
        o.push("Unit", "GiB");
    }
    o
}

/// Disk categories as `SupportedResource`s: the non-local ones, and the local ones too when
/// `local` (data disks bought with an instance); `only` keeps one category.
fn disk_categories(local: bool, only: Option<&str>) -> Vec<Node> {
    crate::config::DISK_CATEGORIES
        .iter()
        .filter(|(name, _, _, is_local)| (local || !is_local) && only.is_none_or(|o| o == *name))
        .map(|(name, min, max, _)| supported(name, Some((*min, *max))))
        .collect()
}

/// The offered types that match the type, vCPU and memory (GiB) filters.
fn types_matching<'a>(
    config: &'a crate::config::Config,
    id: Option<&str>,
    cores: Option<i64>,
    memory_gib: Option<f64>,
) -> Vec<&'a crate::config::InstanceType> {
    config
        .instance_types
        .iter()
        .filter(|t| id.is_none_or(|i| i == t.id))
        .filter(|t| cores.is_none_or(|c| c == i64::from(t.cpus)))
        .filter(|t| memory_gib.is_none_or(|m| (m - f64::from(t.memory_mib) / 1024.0).abs() < 1e-9))
        .collect()
}

/// `AvailableZones.AvailableZone[]`, one per zone with something on offer.
fn zones_answer(region: &str, zones: Vec<(String, &'static str, Vec<Node>)>, conditions: bool) -> Node {
    let items = zones
        .into_iter()
        .filter(|(_, _, offered)| !offered.is_empty())
        .map(|(zone, kind, offered)| {
            let mut resource =
                obj! {"Type" => kind, "SupportedResources" => Node::wrapped("SupportedResource", offered)};
            if conditions {
                resource.push("ConditionSupportedResources", Node::wrapped("ConditionSupportedResource", vec![]));
            }
            obj! {
                "RegionId" => region.to_string(),
                "ZoneId" => zone,
                "Status" => "Available",
                "StatusCategory" => "WithStock",
                "AvailableResources" => Node::wrapped("AvailableResource", vec![resource]),
            }
        })
        .collect();
    obj! {"AvailableZones" => Node::wrapped("AvailableZone", items)}
}

/// DescribeAvailableResource: for each zone of the region (or `ZoneId`), what of
/// `DestinationResource` can be created there, narrowed by the filters given. Every offered
/// type and category is in stock in every zone; a filter that matches nothing leaves the zone
/// out.
pub(crate) fn describe_available_resource(env: &crate::Env, d: DescribeAvailableResource) -> R<Node> {
    let region_id = env.region_id.unwrap_or_default();
    let region = env.config.region(region_id).ok_or(Code::InvalidRegionIdMalFormed)?;
    let types = types_matching(env.config, d.instance_type.as_deref(), d.cores, d.memory_gib);
    // Filters that rule everything out: a type not offered, classic network, non-optimized
    // I/O, dedicated hosts.
    let narrowed = d.instance_type.is_some() || d.cores.is_some() || d.memory_gib.is_some();
    let none = (narrowed && types.is_empty())
        || d.network_category.as_deref().is_some_and(|n| n != "vpc")
        || d.io_optimized.as_deref().is_some_and(|i| i != "optimized")
        || d.resource_type == "ddh";
    let system_ok = d
        .system_disk_category
        .as_deref()
        .is_none_or(|c| crate::config::category(c).is_some_and(|(_, _, local)| !local));
    let mut zones = Vec::new();
    for z in region.zones.iter().filter(|z| d.zone_id.as_deref().is_none_or(|want| want == z.id)) {
        let offered = if none {
            Vec::new()
        } else {
            match d.destination.as_str() {
                "Zone" => vec![supported(&z.id, None)],
                "IoOptimized" => vec![supported("optimized", None)],
                "Network" => vec![supported("vpc", None)],
                "InstanceType" => types.iter().map(|t| supported(&t.id, None)).collect(),
                "SystemDisk" if d.resource_type == "disk" => Vec::new(),
                "SystemDisk" => disk_categories(false, d.system_disk_category.as_deref()),
                "DataDisk" if system_ok => {
                    disk_categories(d.resource_type == "instance", d.data_disk_category.as_deref())
                }
                _ => Vec::new(),
            }
        };
        let kind = ecs_api::capacity::DESTINATIONS.iter().find(|n| **n == d.destination).copied().unwrap_or_default();
        zones.push((z.id.clone(), kind, offered));
    }
    Ok(zones_answer(region_id, zones, false))
}

/// DescribeResourcesModification: what instance `ResourceId` may change to in its zone: other
/// offered types, larger (Upgrade) or smaller (Downgrade, RenewDowngrade) in both vCPUs and
/// memory, or any (RenewModify); or the system disk categories.
pub(crate) fn describe_resources_modification(
    conn: &rusqlite::Connection,
    env: &crate::Env,
    d: DescribeResourcesModification,
) -> R<Node> {
    let inst = crate::guards::instance(conn, env, &d.resource_id).map_err(|f| match f {
        super::Fail::Api(_) => super::Fail::from(Code::InvalidResourceIdNotFound),
        sql => sql,
    })?;
    let region_id = env.region_id.unwrap_or(&inst.region_id).to_string();
    let offered = if d.zone_id.as_deref().is_some_and(|z| z != inst.zone_id) {
        Vec::new()
    } else if d.destination == "SystemDisk" {
        let t = d.instance_type.as_deref().ok_or_else(|| ApiError::missing("InstanceType"))?;
        if env.config.instance_type(t).is_none() { Vec::new() } else { disk_categories(false, None) }
    } else {
        let (cpu, mem) = (inst.cpu, inst.memory_mib);
        types_matching(env.config, d.instance_type.as_deref(), d.cores, d.memory_gib)
            .into_iter()
            .filter(|t| t.id != inst.instance_type)
            .filter(|t| match d.operation.as_str() {
                "Upgrade" => t.cpus >= cpu && t.memory_mib >= mem,
                "Downgrade" | "RenewDowngrade" => t.cpus <= cpu && t.memory_mib <= mem,
                _ => true,
            })
            .map(|t| supported(&t.id, None))
            .collect()
    };
    let kind = if d.destination == "SystemDisk" { "SystemDisk" } else { "InstanceType" };
    Ok(zones_answer(&region_id, vec![(inst.zone_id.clone(), kind, offered)], true))
}
