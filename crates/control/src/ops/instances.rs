//! RunInstances, CreateInstance, Start/StopInstance(s), RebootInstance, DescribeInstances,
//! DeleteInstance; what else tools read of one instance is in `instance_reads`.

use super::disks::{self, NewDisk};
use super::listing::{Listing, Scope};
use super::storage::{self, Intent};
use super::{Fail, R, begin, dry_run_ok, idempotency};
use crate::fairness::{self, Quota};
use crate::model::{Instance, tags_json};
use crate::volumes::Volumes;
use crate::{Env, config, guards, new_id, transitions};
use ecs_api::Node;
use ecs_api::instances::{DescribeInstances, DiskSpec, InstanceSpec};
use ecs_api::{ApiError, Code};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::{Value, json};

/// Prepaid instances are bought for a month unless the operator expires them sooner.
const PREPAID_PERIOD_MS: i64 = 30 * 24 * 3600 * 1000;

/// An image an instance can boot from, in `region`: (size GiB, backing snapshot). Besides the
/// public images, the caller's own and those shared with it (ModifyImageSharePermission): the
/// system disk is a clone of the owner's snapshot either way.
pub(crate) fn image(tx: &Transaction, env: &Env, id: &str, region: &str) -> R<(i64, Option<String>)> {
    if let Some((_, _, size, _)) = config::PUBLIC_IMAGES.iter().find(|(i, ..)| *i == id) {
        return Ok((*size, None));
    }
    let row: Option<(i64, String, String)> = tx
        .query_row(
            "SELECT size_gib, snapshot_id, status FROM images
             WHERE id=?1 AND region_id=?3 AND released=0
               AND (account_id=?2 OR id IN (SELECT image_id FROM image_shares WHERE account_id=?2))",
            [id, env.account_id, region],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let (size, snap, status) = row.ok_or(Code::InvalidImageIdNotFound)?;
    if status != "Available" {
        return Err(Code::ImageNotAvailable.into());
    }
    Ok((size, Some(snap)))
}

/// Validated data disk: (spec, category, size).
fn data_disk<'a>(
    tx: &Transaction,
    env: &Env,
    acct: &guards::Account,
    d: &'a DiskSpec,
) -> R<(&'a DiskSpec, String, i64)> {
    let category = d.category.clone().unwrap_or_else(|| config::DEFAULT_DISK_CATEGORY.to_string());
    let snap = match &d.snapshot_id {
        Some(s) => {
            guards::snapshot_service(acct)?;
            Some(disks::source_snapshot(tx, env, s, d.size_gib)?)
        }
        None => None,
    };
    let size =
        d.size_gib.or(snap.as_ref().map(|s| s.disk_size_gib)).ok_or_else(|| ApiError::missing("DataDisk.n.Size"))?;
    disks::check_category(&category, size, true, Code::InvalidDataDiskCategoryValueNotSupported)?;
    if d.encrypted || d.kms_key_id.is_some() {
        guards::kms(tx, env, acct, d.kms_key_id.as_deref())?;
    }
    Ok((d, category, size))
}

pub(crate) fn run_instances(
    conn: &mut Connection,
    env: &Env,
    spec: &InstanceSpec,
    amount: u32,
    _min_amount: Option<u32>,
    dry_run: bool,
    auto_start: bool,
) -> R<Value> {
    let tx = begin(conn)?;
    let acct = guards::account(&tx, env.account_id)?;
    let itype = env.config.instance_type(&spec.instance_type).ok_or(Code::InvalidInstanceTypeValueNotSupported)?;
    let region = env.config.region(env.region_id.unwrap_or_default()).ok_or(Code::InvalidRegionIdMalFormed)?;
    // A vSwitch names the zone; without one the instance joins the default vSwitch of its zone.
    let placement = match &spec.vswitch_id {
        Some(id) => Some(super::placement::place_in(&tx, env, id, spec.zone_id.as_deref())?),
        None => None,
    };
    let zone = match (&placement, &spec.zone_id) {
        (Some(p), _) => p.zone_id.clone(),
        (None, Some(z)) => z.clone(),
        (None, None) => region.zones.first().map(|z| z.id.clone()).ok_or(Code::InvalidZoneIdNotFound)?,
    };
    guards::zone(env, &zone)?;
    let (image_size, image_snapshot) = image(&tx, env, &spec.image_id, env.region_id.unwrap_or_default())?;
    super::keypairs::check_for_new_instance(&tx, env, spec.key_pair_name.as_deref())?;
    let sys_category = spec.system_disk.category.clone().unwrap_or_else(|| config::DEFAULT_SYSTEM_DISK_CATEGORY.into());
    let sys_size = spec.system_disk.size_gib.unwrap_or(image_size.max(20));
    if sys_size < image_size {
        return Err(Code::InvalidDiskSizeTooSmall.into());
    }
    disks::check_category(&sys_category, sys_size, false, Code::InvalidSystemDiskCategoryValueNotSupported)?;
    let data: Vec<(&DiskSpec, String, i64)> =
        spec.data_disks.iter().map(|d| data_disk(&tx, env, &acct, d)).collect::<R<_>>()?;
    let sys_encrypted = spec.system_disk.encrypted || spec.system_disk.kms_key_id.is_some();
    if sys_encrypted {
        guards::kms(&tx, env, &acct, spec.system_disk.kms_key_id.as_deref())?;
    }
    guards::balance(&acct)?;
    if spec.charge_type == "PostPaid" && acct.in_arrears {
        return Err(Code::InstanceExpiredOrInArrears.into());
    }
    let limits = &env.config.limits;
    fairness::quota(&tx, env.account_id, limits, Quota::Instances, i64::from(amount))?;
    fairness::quota(&tx, env.account_id, limits, Quota::Disks, i64::from(amount) * (1 + data.len() as i64))?;
    let placement = match placement {
        Some(p) => p,
        None => super::placement::place_default(&tx, env, &zone)?,
    };
    let groups =
        super::secgroups::for_new_instances(&tx, env, &spec.security_group_ids, &region.id, &placement.vpc_id, amount)?;
    let ips = placement.addresses(&tx, spec.private_ip_address.as_deref(), amount)?;
    if dry_run {
        return Err(dry_run_ok());
    }

    let mut ids = Vec::new();
    let mut intents = Vec::new();
    for ip in ips {
        let id = new_id("i-");
        let host = format!("iZ{}Z", id.trim_start_matches("i-"));
        let expired = (spec.charge_type == "PrePaid").then_some(env.now + PREPAID_PERIOD_MS);
        tx.execute(
            "INSERT INTO instances(id, account_id, region_id, zone_id, name, description, host_name, instance_type,
               image_id, status, pending_target, charge_type, expired_ms, created_ms, vswitch_id, security_groups,
               private_ip, deletion_protection, tags, serial, user_data, vpc_id, resource_group_id, cpu, memory_mib, key_pair_name,
               internet_charge_type, bandwidth_out, bandwidth_in)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'Pending', ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,
               ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)",
            params![
                id,
                env.account_id,
                region.id,
                zone,
                spec.name.clone().unwrap_or_else(|| id.clone()),
                spec.description.clone().unwrap_or_default(),
                spec.host_name.clone().unwrap_or(host),
                spec.instance_type,
                spec.image_id,
                if auto_start { "Starting" } else { "Stopped" },
                spec.charge_type,
                expired,
                env.now,
                placement.vswitch_id,
                serde_json::to_string(&groups).unwrap_or_else(|_| "[]".into()),
                ip,
                spec.deletion_protection,
                tags_json(&spec.tags),
                uuid::Uuid::new_v4().to_string(),
                spec.user_data,
                placement.vpc_id,
                spec.resource_group_id.clone().unwrap_or_default(),
                itype.cpus,
                itype.memory_mib,
                spec.key_pair_name,
                spec.internet_charge_type,
                spec.bandwidth_out,
                spec.bandwidth_in
            ],
        )?;
        super::secgroups::set_members(&tx, &id, &groups)?;
        transitions::schedule(&tx, "instance", &id, env.now + env.timings.instance_ms as i64)?;
        let sys = NewDisk {
            region_id: env.region_id.unwrap_or_default(),
            zone_id: &zone,
            name: spec.system_disk.name.as_deref(),
            description: spec.system_disk.description.as_deref(),
            category: &sys_category,
            size_gib: sys_size,
            disk_type: "system",
            instance: Some((&id, "/dev/xvda".into())),
            image_id: Some(&spec.image_id),
            source_snapshot_id: image_snapshot.as_deref(),
            encrypted: sys_encrypted,
            kms_key_id: spec.system_disk.kms_key_id.as_deref(),
            performance_level: spec.system_disk.performance_level.as_deref(),
            delete_with_instance: true,
            charge_type: &spec.charge_type,
            tags: &[],
        };
        let (_, iid, intent) = disks::insert(&tx, env, &sys)?;
        intents.push((iid, intent));
        for (n, (d, category, size)) in data.iter().enumerate() {
            let device = format!("/dev/xvd{}", char::from(b'b' + n as u8));
            let nd = NewDisk {
                region_id: env.region_id.unwrap_or_default(),
                zone_id: &zone,
                name: d.name.as_deref(),
                description: d.description.as_deref(),
                category,
                size_gib: *size,
                disk_type: "data",
                instance: Some((&id, device)),
                image_id: None,
                source_snapshot_id: d.snapshot_id.as_deref(),
                encrypted: d.encrypted || d.kms_key_id.is_some(),
                kms_key_id: d.kms_key_id.as_deref(),
                performance_level: d.performance_level.as_deref(),
                delete_with_instance: d.delete_with_instance || config::is_local_category(category),
                charge_type: &spec.charge_type,
                tags: &[],
            };
            let (_, iid, intent) = disks::insert(&tx, env, &nd)?;
            intents.push((iid, intent));
        }
        if let Some(g) = &spec.resource_group_id {
            // The disks made with the instance join its group (API reference, RunInstances).
            tx.execute("UPDATE disks SET resource_group_id=?2 WHERE instance_id=?1", [&id, g])?;
        }
        ids.push(id);
    }
    let response = if auto_start {
        json!({"InstanceIdSets": {"InstanceIdSet": ids}, "OrderId": "", "TradePrice": 0.0})
    } else {
        json!({"InstanceId": ids.first().cloned().unwrap_or_default(), "OrderId": "", "TradePrice": 0.0})
    };
    idempotency::remember(&tx, env, &response)?;
    tx.commit()?;
    let failed = storage::run(conn, env.volumes, &intents)?;
    if !failed.is_empty() {
        // Undo the whole request: no instance without its disks.
        let tx = begin(conn)?;
        for id in &ids {
            tx.execute("DELETE FROM transitions WHERE kind='instance' AND id=?1", [id])?;
            tx.execute("DELETE FROM instances WHERE id=?1", [id])?;
            tx.execute("DELETE FROM instance_security_groups WHERE instance_id=?1", [id])?;
            tx.execute("UPDATE disks SET released=1 WHERE instance_id=?1", [id])?;
        }
        tx.commit()?;
        // Nothing of the request is left, so its ClientToken is free again.
        idempotency::forget(conn, env)?;
        for (_, intent) in &intents {
            if let Intent::Create { disk, .. } = intent
                && let Err(e) = env.volumes.delete_volume(disk)
            {
                tracing::warn!(disk, error = %e, "could not remove the volume of a failed RunInstances");
            }
        }
        return Err(Fail::Api(ApiError::new(Code::InternalError)));
    }
    Ok(response)
}

fn start_checks(tx: &Transaction, env: &Env, id: &str) -> R<Instance> {
    let acct = guards::account(tx, env.account_id)?;
    let inst = guards::instance(tx, env, id)?;
    guards::instance_usable(&inst, &acct, env.now)?;
    guards::balance(&acct)?;
    if inst.status != "Stopped" {
        return Err(Code::IncorrectInstanceStatus.into());
    }
    if guards::instance_disks(tx, id)?.iter().any(|d| d.status == "ReIniting" || d.status == "Creating") {
        return Err(Code::DiskError.into());
    }
    Ok(inst)
}

fn stop_checks(tx: &Transaction, env: &Env, id: &str) -> R<Instance> {
    let inst = guards::instance(tx, env, id)?;
    if inst.lock_reason.as_deref() == Some("security") {
        return Err(Code::InstanceLockedForSecurity.into());
    }
    if inst.status != "Running" {
        return Err(Code::IncorrectInstanceStatus.into());
    }
    Ok(inst)
}

fn disk_ids(tx: &Transaction, instance_id: &str) -> R<Vec<String>> {
    Ok(guards::instance_disks(tx, instance_id)?.into_iter().map(|d| d.id).collect())
}

fn set_status(tx: &Transaction, env: &Env, id: &str, status: &str) -> R<()> {
    tx.execute("UPDATE instances SET status=?2 WHERE id=?1", [id, status])?;
    // With VMs, Starting and Stopping last until the VM runs or is gone (`machines`).
    if env.machines.is_none() {
        transitions::schedule(tx, "instance", id, env.now + env.timings.instance_ms as i64)?;
    }
    Ok(())
}

/// Whether a guest booted from `image_id` can answer the ACPI power button: the public blank
/// images hold no operating system (their system disks start all zeros), so their VMs are
/// killed at once on StopInstance instead of waiting out the stop timeout.
pub(crate) fn has_os(image_id: &str) -> bool {
    !config::PUBLIC_IMAGES.iter().any(|(i, ..)| *i == image_id)
}

/// After StopInstance committed: without VMs the instance's disks lose their writers now
/// (drained and flushed) so it cannot reach Stopped with a writer left; with VMs the guest is
/// asked to power off (or killed with ForceStop, or when it has no OS) and the writers go
/// when the VM has ended.
fn after_stop(env: &Env, id: &str, disks: &[String], force: bool) {
    match &env.machines {
        None => env.revoke(disks),
        // The reconciler presses the button (again until it reaches qemu) or kills, outside
        // the catalog lock, within 100 ms.
        Some(_) if force => crate::machines::VmRequests::ask(&env.vm_requests.force_stop, id),
        Some(_) => {}
    }
}

pub(crate) fn start_instance(conn: &mut Connection, env: &Env, id: &str, dry_run: bool) -> R<Value> {
    let tx = begin(conn)?;
    start_checks(&tx, env, id)?;
    if dry_run {
        return Err(dry_run_ok());
    }
    set_status(&tx, env, id, "Starting")?;
    tx.commit()?;
    Ok(json!({}))
}

pub(crate) fn stop_instance(conn: &mut Connection, env: &Env, id: &str, force: bool, dry_run: bool) -> R<Value> {
    let tx = begin(conn)?;
    let inst = stop_checks(&tx, env, id)?;
    let force = force || !has_os(&inst.image_id);
    if dry_run {
        return Err(dry_run_ok());
    }
    set_status(&tx, env, id, "Stopping")?;
    let disks = disk_ids(&tx, id)?;
    tx.commit()?;
    after_stop(env, id, &disks, force);
    Ok(json!({}))
}

/// RebootInstance: Running → Stopping → Starting → Running, each step `InstanceMs` long (with
/// `ForceStop` the same here: no guest runs yet to shut down gracefully).
pub(crate) fn reboot_instance(conn: &mut Connection, env: &Env, id: &str, dry_run: bool) -> R<Value> {
    let tx = begin(conn)?;
    stop_checks(&tx, env, id)?;
    if dry_run {
        return Err(dry_run_ok());
    }
    if env.machines.is_some() {
        // With a VM: Starting until the reconciler has reset the guest (it starts the VM if
        // it is gone), then Running.
        tx.execute("UPDATE instances SET status='Starting', pending_target=NULL WHERE id=?1", [id])?;
        tx.commit()?;
        crate::machines::VmRequests::ask(&env.vm_requests.reset, id);
        return Ok(json!({}));
    }
    tx.execute("UPDATE instances SET status='Stopping', pending_target='Starting' WHERE id=?1", [id])?;
    transitions::schedule(&tx, "instance", id, env.now + env.timings.instance_ms as i64)?;
    tx.commit()?;
    Ok(json!({}))
}

/// StartInstances / StopInstances: one result per instance, errors inline.
pub(crate) fn batch(
    conn: &mut Connection,
    env: &Env,
    ids: &[String],
    dry_run: bool,
    start: bool,
    force: bool,
) -> R<Value> {
    let tx = begin(conn)?;
    let mut results = Vec::new();
    let mut revoked = Vec::new();
    let mut stopped = Vec::new();
    for id in ids {
        let checked = if start { start_checks(&tx, env, id) } else { stop_checks(&tx, env, id) };
        match checked {
            Ok(inst) => {
                let next = if start { "Starting" } else { "Stopping" };
                if !dry_run {
                    set_status(&tx, env, id, next)?;
                    if !start {
                        let disks = disk_ids(&tx, id)?;
                        revoked.extend(disks.iter().cloned());
                        stopped.push((id.clone(), disks, force || !has_os(&inst.image_id)));
                    }
                }
                results.push(json!({"InstanceId": id, "Code": "200", "Message": "success",
                    "PreviousStatus": inst.status, "CurrentStatus": next}));
            }
            Err(Fail::Api(e)) if dry_run => return Err(Fail::Api(e)),
            Err(Fail::Api(e)) => {
                let current: Option<String> = tx
                    .query_row(
                        "SELECT status FROM instances WHERE id=?1 AND account_id=?2 AND released=0",
                        [id, env.account_id],
                        |r| r.get(0),
                    )
                    .optional()?;
                let current = current.unwrap_or_default();
                results.push(json!({"InstanceId": id, "Code": e.code.as_str(), "Message": e.message,
                    "PreviousStatus": current, "CurrentStatus": current}));
            }
            Err(other) => return Err(other),
        }
    }
    if dry_run {
        return Err(dry_run_ok());
    }
    tx.commit()?;
    if env.machines.is_none() {
        env.revoke(&revoked);
    } else {
        for (id, disks, force) in &stopped {
            after_stop(env, id, disks, *force);
        }
    }
    Ok(json!({"InstanceResponses": {"InstanceResponse": results}}))
}

/// DescribeInstances: filters in SQL, one page read.
pub(crate) fn describe_instances(conn: &Connection, env: &Env, d: DescribeInstances) -> R<Node> {
    let mut q = Listing::new("instance", "instances_now", Instance::COLUMNS, env, Scope::Own);
    q.any_of("id", d.instance_ids.as_deref())
        .eq("status", d.status)
        .eq("zone_id", d.zone_id)
        .eq("name", d.instance_name)
        .eq("instance_type", d.instance_type)
        .eq("image_id", d.image_id)
        .eq("lock_reason", d.lock_reason)
        .eq("vpc_id", d.vpc_id)
        .eq("vswitch_id", d.vswitch_id)
        .any_of("private_ip", d.private_ips.as_deref())
        .eq("key_pair_name", d.key_pair_name)
        .tags(&d.tags);
    if let Some(g) = d.security_group_id {
        q.clause(
            "EXISTS (SELECT 1 FROM instance_security_groups m WHERE m.instance_id = instances_now.id AND m.group_id = ?)",
            [g.into()],
        );
    }
    let page = q.fetch(conn, &d.paging, Instance::from_row)?;
    let mut out = Node::obj();
    page.render(&d.paging, ("Instances", "Instance"), &mut out);
    Ok(out)
}

/// Release an instance. Disks that go with it are deleted; the others detach, and until that
/// completes they still point at an instance that no longer exists.
pub(crate) fn delete_instance(conn: &mut Connection, env: &Env, id: &str, force: bool, dry_run: bool) -> R<Value> {
    let tx = begin(conn)?;
    let inst = guards::instance(&tx, env, id)?;
    if inst.lock_reason.as_deref() == Some("security") {
        return Err(Code::InstanceLockedForSecurity.into());
    }
    if inst.deletion_protection {
        return Err(Code::InvalidOperationDeletionProtection.into());
    }
    if inst.status != "Stopped" && !(force && inst.status == "Running") {
        return Err(Code::IncorrectInstanceStatus.into());
    }
    if dry_run {
        return Err(dry_run_ok());
    }
    // The VM ends before anything is released (its writes were flushed as they were answered).
    if let Some(m) = &env.machines
        && let Err(e) = m.remove(id)
    {
        tracing::error!(instance = id, error = %e, "ending the VM of a deleted instance");
        return Err(Fail::Api(ApiError::new(Code::InternalError)));
    }
    tx.execute("UPDATE instances SET released=1 WHERE id=?1", [id])?;
    tx.execute("DELETE FROM transitions WHERE kind='instance' AND id=?1", [id])?;
    let mut intents = Vec::new();
    let disks = disk_ids(&tx, id)?;
    for d in guards::instance_disks(&tx, id)? {
        if d.delete_with_instance || d.is_local() {
            tx.execute("UPDATE disks SET released=1 WHERE id=?1", [&d.id])?;
            let intent = Intent::DeleteVolume { disk: d.id.clone() };
            intents.push((storage::record(&tx, &intent)?, intent));
        } else {
            tx.execute("UPDATE disks SET status='Detaching', delete_with_instance=0 WHERE id=?1", [&d.id])?;
            transitions::schedule(&tx, "disk", &d.id, env.now + env.timings.disk_ms as i64)?;
        }
    }
    tx.commit()?;
    env.revoke(&disks);
    let failed = storage::run(conn, env.volumes, &intents)?;
    if !failed.is_empty() {
        // The instance is gone; a disk whose storage could not be freed stays, detached.
        let tx = begin(conn)?;
        for (intent, _) in &failed {
            if let Intent::DeleteVolume { disk } = intent {
                tx.execute(
                    "UPDATE disks SET status='Available', instance_id=NULL, device=NULL, delete_with_instance=0
                     WHERE id=?1",
                    [disk],
                )?;
            }
        }
        tx.commit()?;
    }
    Ok(json!({}))
}
