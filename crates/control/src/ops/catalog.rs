//! DescribeInstanceTypes and DescribeInstanceTypeFamilies: the instance types this server
//! offers (`config::INSTANCE_TYPES`), every field the API reference documents, with values
//! that follow from the type (vCPUs, memory, family) and ECS's usual figures for the rest.

use super::R;
use crate::config;
use ecs_api::instances::DescribeInstanceTypes;
use ecs_api::{ApiError, Node, obj};

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
pub(crate) fn describe_instance_types(d: DescribeInstanceTypes) -> R<Node> {
    let matches = |(name, cpu, mem): &&(&str, u32, u32)| {
        let gib = f64::from(*mem) / 1024.0;
        (d.types.is_empty() || d.types.iter().any(|t| t == name))
            && d.family.as_deref().is_none_or(|f| f == family(name))
            && d.min_cpu.is_none_or(|c| i64::from(*cpu) >= c)
            && d.max_cpu.is_none_or(|c| i64::from(*cpu) <= c)
            && d.min_memory_gib.is_none_or(|m| gib >= m)
            && d.max_memory_gib.is_none_or(|m| gib <= m)
    };
    let all: Vec<&(&str, u32, u32)> = config::INSTANCE_TYPES.iter().filter(matches).collect();
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
pub(crate) fn describe_instance_type_families(gen_filter: Option<&str>) -> R<Node> {
    let mut families: Vec<&str> = config::INSTANCE_TYPES.iter().map(|(n, _, _)| family(n)).collect();
    families.dedup();
    let items = families
        .into_iter()
        .filter(|f| gen_filter.is_none_or(|g| g == generation(f)))
        .map(|f| obj! {"InstanceTypeFamilyId" => f.to_string(), "Generation" => generation(f)})
        .collect();
    let mut out = Node::obj();
    out.push("InstanceTypeFamilies", Node::wrapped("InstanceTypeFamily", items));
    Ok(out)
}
