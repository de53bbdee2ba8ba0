//! Instance settings beside the lifecycle (API reference: ModifyInstanceAttribute,
//! DescribeInstanceStatus, DescribeInstanceRamRole, DescribeNetworkInterfaces) and
//! JoinResourceGroup.
//!
//! Each instance has one network interface, its primary ENI (`eni-` and the instance id's
//! tail), which DescribeNetworkInterfaces lists from the instance rows; there are no secondary
//! ENIs. There are no RAM roles, so DescribeInstanceRamRole lists none.

use super::listing::{Listing, Scope};
use super::{Fail, R, begin};
use crate::model::Instance;
use crate::shapes::TimeText;
use crate::{Env, guards};
use ecs_api::instance_settings::{DescribeNetworkInterfaces, ModifyInstanceAttribute};
use ecs_api::params::Paging;
use ecs_api::write::{Emit, Out};
use ecs_api::{Code, Node};
use rusqlite::{Connection, params};
use serde_json::{Value, json};

/// ModifyInstanceAttribute: on a Running or Stopped instance; UserData only while Stopped
/// (API reference). HostName and UserData reach the guest at its next start; a Password is
/// checked against the rules, but there is no guest agent to set it.
pub(crate) fn modify_instance_attribute(conn: &mut Connection, env: &Env, m: ModifyInstanceAttribute) -> R<Value> {
    let tx = begin(conn)?;
    let inst = guards::instance(&tx, env, &m.instance_id)?;
    if inst.lock_reason.as_deref() == Some("security") {
        return Err(Code::InstanceLockedForSecurity.into());
    }
    if inst.status != "Running" && inst.status != "Stopped" {
        return Err(Code::IncorrectInstanceStatus.into());
    }
    if m.user_data.is_some() && inst.status != "Stopped" {
        return Err(Code::IncorrectInstanceStatus.into());
    }
    tx.execute(
        "UPDATE instances SET name=COALESCE(?2, name), description=COALESCE(?3, description),
           host_name=COALESCE(?4, host_name), user_data=COALESCE(?5, user_data),
           deletion_protection=COALESCE(?6, deletion_protection) WHERE id=?1",
        params![inst.id, m.name, m.description, m.host_name, m.user_data, m.deletion_protection],
    )?;
    tx.commit()?;
    Ok(json!({}))
}

/// One instance's state, as DescribeInstanceStatus lists it.
struct Status(String, String);

impl Emit for Status {
    fn emit(&self, o: &mut dyn Out) {
        o.begin_obj();
        o.field("InstanceId", &self.0);
        o.field("Status", &self.1);
        o.end_obj();
    }
}

pub(crate) fn describe_instance_status(
    conn: &Connection,
    env: &Env,
    ids: Option<Vec<String>>,
    zone: Option<String>,
    paging: Paging,
) -> R<Node> {
    let mut q = Listing::new("instance", "instances_now", "id, status", env, Scope::Own);
    q.any_of("id", ids.as_deref()).eq("zone_id", zone);
    let page = q.fetch(conn, &paging, |r| Ok(Status(r.get(0)?, r.get(1)?)))?;
    let mut out = Node::obj();
    page.render(&paging, ("InstanceStatuses", "InstanceStatus"), &mut out);
    Ok(out)
}

/// DescribeInstanceRamRole: no instance has a RAM role here, so the list is empty; the
/// instances named must still be the caller's.
pub(crate) fn describe_instance_ram_role(
    conn: &Connection,
    env: &Env,
    ids: Option<Vec<String>>,
    paging: Paging,
) -> R<Node> {
    for id in ids.iter().flatten() {
        guards::instance(conn, env, id)?;
    }
    let (number, size) = match paging {
        Paging::Pages { number, size } => (number, size),
        Paging::Token { max_results, .. } => (1, max_results),
    };
    Ok(ecs_api::obj! {
        "RegionId" => env.region_id.unwrap_or_default().to_string(),
        "InstanceRamRoleSets" => ecs_api::obj! {"InstanceRamRoleSet" => Node::List(Vec::new())},
        "TotalCount" => 0i64,
        "PageNumber" => i64::from(number),
        "PageSize" => i64::from(size)
    })
}

/// An instance's primary ENI as DescribeNetworkInterfaces lists it.
struct Eni(Instance, i64);

impl Emit for Eni {
    fn emit(&self, o: &mut dyn Out) {
        let i = &self.0;
        let sgs: Vec<String> = serde_json::from_str(&i.security_groups).unwrap_or_default();
        o.begin_obj();
        o.field("NetworkInterfaceId", &eni_id(&i.id));
        o.field("NetworkInterfaceName", "");
        o.field("Description", "");
        o.field("Status", "InUse");
        o.field("Type", "Primary");
        o.field("InstanceId", &i.id);
        o.field("VpcId", &i.vpc_id);
        o.field("VSwitchId", &i.vswitch_id);
        o.field("ZoneId", &i.zone_id);
        o.field("PrivateIpAddress", &i.private_ip);
        o.field("MacAddress", &crate::shapes::mac(&i.id));
        o.field("CreationTime", TimeText::secs(i.created_ms).as_str());
        o.field("ResourceGroupId", &i.resource_group_id);
        o.field("OwnerId", &self.1.to_string());
        o.field("ServiceManaged", &false);
        o.field("ServiceID", &0i64);
        o.field("QueueNumber", &1i64);
        o.field("QueuePairNumber", &0i64);
        o.field("NetworkInterfaceTrafficMode", "Standard");
        o.field("DeleteOnRelease", &true);
        o.field("SourceDestCheck", &false);
        o.wrapped("SecurityGroupIds", "SecurityGroupId", |o| {
            for g in &sgs {
                o.str(g);
            }
        });
        o.wrapped("PrivateIpSets", "PrivateIpSet", |o| {
            o.begin_obj();
            o.field("PrivateIpAddress", &i.private_ip);
            o.field("Primary", &true);
            o.field("PrivateDnsName", "");
            o.name("AssociatedPublicIp");
            o.begin_obj();
            o.field("PublicIpAddress", "");
            o.field("AllocationId", "");
            o.end_obj();
            o.end_obj();
        });
        o.wrapped("Ipv6Sets", "Ipv6Set", |_| {});
        o.wrapped("Ipv4PrefixSets", "Ipv4PrefixSet", |_| {});
        o.wrapped("Ipv6PrefixSets", "Ipv6PrefixSet", |_| {});
        o.name("AssociatedPublicIp");
        o.begin_obj();
        o.field("PublicIpAddress", "");
        o.field("AllocationId", "");
        o.end_obj();
        o.name("Attachment");
        o.begin_obj();
        o.field("InstanceId", &i.id);
        o.field("DeviceIndex", &0i64);
        o.field("NetworkCardIndex", &0i64);
        o.field("TrunkNetworkInterfaceId", "");
        o.end_obj();
        crate::shapes::tags(o, "[]");
        o.end_obj();
    }
}

/// The primary ENI of instance `id`.
pub(crate) fn eni_id(id: &str) -> String {
    format!("eni-{}", id.trim_start_matches("i-"))
}

pub(crate) fn describe_network_interfaces(conn: &Connection, env: &Env, d: DescribeNetworkInterfaces) -> R<Node> {
    let mut q = Listing::new("network_interface", "instances_now", Instance::COLUMNS, env, Scope::Own);
    // ENI ids name their instance; an id of another form matches nothing.
    let owners: Vec<String> = d
        .network_interface_ids
        .iter()
        .map(|e| e.strip_prefix("eni-").map(|t| format!("i-{t}")).unwrap_or_default())
        .collect();
    q.any_of("id", (!owners.is_empty()).then_some(owners.as_slice()))
        .eq("id", d.instance_id)
        .eq("vswitch_id", d.vswitch_id)
        .eq("vpc_id", d.vpc_id)
        .any_of("private_ip", (!d.private_ips.is_empty()).then_some(d.private_ips.as_slice()))
        .eq("private_ip", d.primary_ip);
    if d.kind.as_deref().is_some_and(|k| k != "Primary") || d.status.as_deref().is_some_and(|s| s != "InUse") {
        q.clause("0", []);
    }
    let owner = crate::ops::vpc::owner_id(env);
    let page = q.fetch(conn, &d.paging, |r| Ok(Eni(Instance::from_row(r)?, owner)))?;
    let mut out = Node::obj();
    page.render(&d.paging, ("NetworkInterfaceSets", "NetworkInterfaceSet"), &mut out);
    Ok(out)
}

/// JoinResourceGroup: instances, disks, snapshots, security groups, key pairs (by name) and
/// the caller's own images carry a group; the other documented types (ddh, ddhcluster, eni,
/// launchtemplate) have no resource of that id here.
pub(crate) fn join_resource_group(
    conn: &mut Connection,
    env: &Env,
    group: &str,
    resource_type: &str,
    id: &str,
) -> R<Value> {
    let tx = begin(conn)?;
    // Any lookup that fails for the caller is the one documented not-found.
    let found = |r: R<()>| {
        r.map_err(|f| match f {
            Fail::Api(_) => Fail::from(Code::InvalidResourceIdNotFound),
            sql => sql,
        })
    };
    let table = match resource_type {
        "instance" => {
            found(guards::instance(&tx, env, id).map(drop))?;
            "instances"
        }
        "disk" => {
            found(guards::disk(&tx, env, id).map(drop))?;
            "disks"
        }
        "snapshot" => {
            found(guards::snapshot(&tx, env, id).map(drop))?;
            "snapshots"
        }
        "securitygroup" => {
            found(super::secgroups::group(&tx, env, id, None, Code::InvalidResourceIdNotFound).map(drop))?;
            "security_groups"
        }
        "image" => "images",
        // A key pair is named by its name (API reference, JoinResourceGroup ResourceId).
        "keypair" => {
            // Key pair names are unique per region only, so the region must be named.
            let region = env.region_id.ok_or_else(|| ecs_api::ApiError::missing("RegionId"))?;
            let changed = tx.execute(
                "UPDATE key_pairs SET resource_group_id=?4 WHERE name=?1 AND account_id=?2 AND region_id=?3",
                params![id, env.account_id, region, group],
            )?;
            if changed == 0 {
                return Err(Code::InvalidResourceIdNotFound.into());
            }
            tx.commit()?;
            return Ok(json!({}));
        }
        _ => return Err(Code::InvalidResourceIdNotFound.into()),
    };
    // Images: only the caller's own (not public, not shared with it), in the request's region
    // when it names one; the other kinds were looked up above.
    let changed = if table == "images" {
        tx.execute(
            "UPDATE images SET resource_group_id=?2 WHERE id=?1 AND account_id=?3 AND released=0
               AND (?4 = '' OR region_id = ?4)",
            params![id, group, env.account_id, env.region_id.unwrap_or_default()],
        )?
    } else {
        tx.execute(&format!("UPDATE {table} SET resource_group_id=?2 WHERE id=?1"), [id, group])?
    };
    if changed == 0 {
        return Err(Code::InvalidResourceIdNotFound.into());
    }
    tx.commit()?;
    Ok(json!({}))
}
