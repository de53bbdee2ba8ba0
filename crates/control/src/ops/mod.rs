//! One module per group of actions. Each handler runs its checks and its changes inside one
//! catalog transaction while holding the catalog lock, so racing requests serialize and no
//! partial state is visible. Storage changes go through intents (see [`storage`]).

mod catalog;
mod disks;
mod groups;
mod idempotency;
mod image_sharing;
mod images;
mod instance_reads;
mod instance_settings;
mod instances;
mod keypairs;
mod listing;
mod placement;
mod policies;
mod replace;
mod reset;
mod resize;
mod routes;
mod secgroups;
mod secrules;
mod snapshots;
pub(crate) mod storage;
mod tasks;
pub(crate) mod vpc;
mod vswitches;

pub(crate) use image_sharing::usable as image_usable;
pub(crate) use instances::has_os;
pub(crate) use snapshots::room_for_snapshot;
mod tags;

pub(crate) use storage::recover_intents;

use crate::Env;
use ecs_api::action::Action;
use ecs_api::{ApiError, Code, Node};
use rusqlite::{Connection, Transaction, TransactionBehavior};

/// A handler's failure: an answer for the client, or a catalog fault (answered InternalError).
#[derive(Debug)]
pub(crate) enum Fail {
    Api(ApiError),
    Sql(rusqlite::Error),
}

pub(crate) type R<T> = Result<T, Fail>;

impl From<ApiError> for Fail {
    fn from(e: ApiError) -> Self {
        Fail::Api(e)
    }
}

impl From<Code> for Fail {
    fn from(c: Code) -> Self {
        Fail::Api(ApiError::new(c))
    }
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<Fail> for ApiError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Api(e) => e,
            Fail::Sql(e) => {
                tracing::error!(error = %e, "catalog error");
                ApiError::new(Code::InternalFailure)
            }
        }
    }
}

pub(crate) fn begin(conn: &mut Connection) -> R<Transaction<'_>> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

pub(crate) fn dry_run_ok() -> Fail {
    Code::DryRunOperation.into()
}

/// Read-only actions, on a reader connection (inside one read transaction).
pub(crate) fn dispatch_read(conn: &Connection, env: &Env, action: Action) -> Result<Node, ApiError> {
    let r = match action {
        Action::DescribeDisks(d) => disks::describe_disks(conn, env, d),
        Action::DescribeSnapshots(d) => snapshots::describe_snapshots(conn, env, d),
        Action::DescribeInstances(d) => instances::describe_instances(conn, env, d),
        Action::DescribeRegions => images::describe_regions(env).map(Node::from),
        Action::DescribeZones => images::describe_zones(env).map(Node::from),
        Action::DescribeImages(d) => images::describe_images(conn, env, d),
        Action::DescribeImageSharePermission { image_id, page_number, page_size } => {
            image_sharing::describe_image_share_permission(conn, env, &image_id, page_number, page_size)
        }
        Action::ListTagResources(l) => tags::list_tag_resources(conn, env, l),
        Action::DescribeTags(d) => tags::describe_tags(conn, env, d),
        Action::DescribeInstanceAttribute { instance_id } => {
            instance_reads::describe_instance_attribute(conn, env, &instance_id)
        }
        Action::DescribeInstanceTypes(d) => catalog::describe_instance_types(env.config, d),
        Action::DescribeInstanceTypeFamilies { generation } => {
            catalog::describe_instance_type_families(env.config, generation.as_deref())
        }
        Action::DescribeUserData { instance_id } => instance_reads::describe_user_data(conn, env, &instance_id),
        Action::DescribeSnapshotGroups(d) => groups::describe_snapshot_groups(conn, env, d),
        Action::DescribeAutoSnapshotPolicies(d) => policies::describe(conn, env, d),
        Action::DescribeTasks(d) => tasks::describe_tasks(conn, env, d),
        Action::DescribeTaskAttribute { task_id } => tasks::describe_task_attribute(conn, env, &task_id),
        Action::GetInstanceConsoleOutput { instance_id, remove_symbols } => {
            instance_reads::get_instance_console_output(conn, env, &instance_id, remove_symbols)
        }
        Action::DescribeInstanceMaintenanceAttributes { instance_ids, page } => {
            instance_reads::describe_instance_maintenance_attributes(conn, env, &instance_ids, page)
        }
        Action::DescribeInstanceAttachmentAttributes { instance_ids, page } => {
            instance_reads::describe_instance_attachment_attributes(conn, env, &instance_ids, page)
        }
        Action::DescribeVpcs(d) => vpc::describe_vpcs(conn, env, d),
        Action::DescribeVpcAttribute { vpc_id, is_default } => {
            vpc::describe_vpc_attribute(conn, env, &vpc_id, is_default)
        }
        Action::DescribeVSwitches(d) => vswitches::describe_vswitches(conn, env, d),
        Action::DescribeVSwitchAttributes { vswitch_id } => {
            vswitches::describe_vswitch_attributes(conn, env, &vswitch_id)
        }
        Action::DescribeRouteTableList(d) => routes::describe_route_table_list(conn, env, d),
        Action::DescribeVRouters { vrouter_id, paging } => routes::describe_vrouters(conn, env, vrouter_id, paging),
        Action::DescribeRouteTables { vrouter_id, route_table_id, paging } => {
            routes::describe_route_tables(conn, env, vrouter_id, route_table_id, paging)
        }
        Action::DescribeInstanceStatus { instance_ids, zone_id, paging } => {
            instance_settings::describe_instance_status(conn, env, instance_ids, zone_id, paging)
        }
        Action::DescribeInstanceRamRole { instance_ids, paging, .. } => {
            instance_settings::describe_instance_ram_role(conn, env, instance_ids, paging)
        }
        Action::DescribeNetworkInterfaces(d) => instance_settings::describe_network_interfaces(conn, env, d),
        Action::DescribeAvailableResource(d) => catalog::describe_available_resource(env, d),
        Action::DescribeResourcesModification(d) => catalog::describe_resources_modification(conn, env, d),
        Action::DescribeKeyPairs(d) => keypairs::describe(conn, env, d),
        Action::DescribeSecurityGroups(d) => secgroups::describe(conn, env, d),
        Action::DescribeSecurityGroupAttribute(d) => secrules::attribute(conn, env, d),
        other => {
            tracing::error!(?other, "a write action reached the read path");
            Err(Code::InternalFailure.into())
        }
    };
    r.map_err(ApiError::from)
}

/// Actions that change something, under the catalog lock. Due transitions complete first, so
/// checks see the states a poller sees. A ClientToken already used answers the first call's
/// result (or IdempotentParameterMismatch) without running the action again.
pub(crate) fn dispatch(conn: &mut Connection, env: &Env, action: Action) -> Result<Node, ApiError> {
    crate::transitions::complete_due(conn, env.now).map_err(Fail::from)?;
    if let Some(earlier) = idempotency::replay(conn, env)? {
        return Ok(earlier.into());
    }
    let r = match action {
        Action::ResetDisk(r) => reset::reset_disk(conn, env, r),
        Action::CreateDisk(c) => disks::create_disk(conn, env, c),
        Action::DeleteDisk { disk_id, dry_run } => disks::delete_disk(conn, env, &disk_id, dry_run),
        Action::ModifyDiskAttribute(m) => disks::modify_disk_attribute(conn, env, m),
        Action::ResizeDisk(r) => resize::resize_disk(conn, env, r),
        Action::ReInitDisk(r) => resize::reinit_disk(conn, env, r),
        Action::AttachDisk { disk_id, instance_id, delete_with_instance, dry_run } => {
            disks::attach_disk(conn, env, &disk_id, &instance_id, delete_with_instance, dry_run)
        }
        Action::DetachDisk { disk_id, instance_id, delete_with_instance, dry_run } => {
            disks::detach_disk(conn, env, &disk_id, &instance_id, delete_with_instance, dry_run)
        }
        Action::CreateSnapshot(c) => snapshots::create_snapshot(conn, env, c),
        Action::DeleteSnapshot { snapshot_id, force } => snapshots::delete_snapshot(conn, env, &snapshot_id, force),
        Action::RunInstances { spec, amount, min_amount, dry_run } => {
            instances::run_instances(conn, env, &spec, amount, min_amount, dry_run, true)
        }
        Action::CreateInstance { spec, dry_run } => instances::run_instances(conn, env, &spec, 1, None, dry_run, false),
        Action::StartInstance { instance_id, dry_run } => instances::start_instance(conn, env, &instance_id, dry_run),
        Action::StopInstance { instance_id, force_stop, dry_run } => {
            instances::stop_instance(conn, env, &instance_id, force_stop, dry_run)
        }
        Action::RebootInstance { instance_id, dry_run, .. } => {
            instances::reboot_instance(conn, env, &instance_id, dry_run)
        }
        Action::StartInstances { instance_ids, dry_run } => {
            instances::batch(conn, env, &instance_ids, dry_run, true, false)
        }
        Action::StopInstances { instance_ids, force_stop, dry_run, .. } => {
            instances::batch(conn, env, &instance_ids, dry_run, false, force_stop)
        }
        Action::DeleteInstance { instance_id, force, dry_run } => {
            instances::delete_instance(conn, env, &instance_id, force, dry_run)
        }
        Action::CreateImage { snapshot_id, image_name, description } => {
            images::create_image(conn, env, &snapshot_id, image_name, description)
        }
        Action::ImportImage(req) => images::import_image(conn, env, req),
        Action::CreateSnapshotGroup(c) => groups::create_snapshot_group(conn, env, c),
        Action::CopySnapshot { snapshot_id, destination_region_id, name, description, retention_days, tags } => {
            let c = snapshots::CopyRequest {
                snapshot_id,
                destination: destination_region_id,
                name,
                description,
                retention_days,
                tags,
            };
            snapshots::copy_snapshot(conn, env, c)
        }
        Action::ModifyDiskSpec(m) => tasks::modify_disk_spec(conn, env, m),
        Action::CreateAutoSnapshotPolicy { schedule, tags } => policies::create(conn, env, schedule, tags),
        Action::ModifyAutoSnapshotPolicy { policy_id, schedule } => policies::modify(conn, env, &policy_id, schedule),
        Action::DeleteAutoSnapshotPolicy { policy_id } => policies::delete(conn, env, &policy_id),
        Action::ApplyAutoSnapshotPolicy { policy_id, disk_ids } => policies::apply(conn, env, &policy_id, &disk_ids),
        Action::CancelAutoSnapshotPolicy { disk_ids } => policies::cancel(conn, env, &disk_ids),
        Action::ReplaceSystemDisk { instance_id, image_id, size_gib, encrypted, kms_key_id } => {
            replace::replace_system_disk(
                conn,
                env,
                replace::Replace { instance_id, image_id, size_gib, encrypted, kms_key_id },
            )
        }
        Action::DeleteSnapshotGroup { id } => groups::delete_snapshot_group(conn, env, &id),
        Action::ResetDisks(r) => groups::reset_disks(conn, env, r),
        Action::DeleteImage { image_id, force } => images::delete_image(conn, env, &image_id, force),
        Action::CopyImage(c) => image_sharing::copy_image(conn, env, c),
        Action::ModifyImageSharePermission(m) => image_sharing::modify_image_share_permission(conn, env, m),
        Action::TagResources(t) => tags::tag_resources(conn, env, t),
        Action::UntagResources(u) => tags::untag_resources(conn, env, u),
        Action::RemoveTags { resource_type, resource_id, tags: remove } => {
            tags::remove_tags(conn, env, resource_type, &resource_id, &remove)
        }
        Action::ModifySnapshotAttribute { snapshot_id, name, description, retention_days } => {
            snapshots::modify_snapshot_attribute(conn, env, &snapshot_id, name, description, retention_days)
        }
        Action::CreateVpc(c) => vpc::create_vpc(conn, env, c),
        Action::ModifyVpcAttribute(m) => vpc::modify_vpc_attribute(conn, env, m),
        Action::DeleteVpc { vpc_id, force, dry_run } => vpc::delete_vpc(conn, env, &vpc_id, force, dry_run),
        Action::CreateVSwitch(c) => vswitches::create_vswitch(conn, env, c),
        Action::DeleteVSwitch { vswitch_id } => vswitches::delete_vswitch(conn, env, &vswitch_id),
        Action::ModifyVSwitchAttribute { vswitch_id, name, description } => {
            vswitches::modify_vswitch_attribute(conn, env, &vswitch_id, name, description)
        }
        Action::ModifyInstanceAttribute(m) => instance_settings::modify_instance_attribute(conn, env, m),
        Action::JoinResourceGroup { resource_group_id, resource_type, resource_id } => {
            instance_settings::join_resource_group(conn, env, &resource_group_id, &resource_type, &resource_id)
        }
        Action::CreateKeyPair(c) => keypairs::create(conn, env, c),
        Action::ImportKeyPair(i) => keypairs::import(conn, env, i),
        Action::AttachKeyPair(k) => keypairs::bind(conn, env, k, true),
        Action::DetachKeyPair(k) => keypairs::bind(conn, env, k, false),
        Action::DeleteKeyPairs { names } => keypairs::delete(conn, env, &names),
        Action::CreateSecurityGroup(c) => secgroups::create(conn, env, c),
        Action::ModifySecurityGroupAttribute { group_id, name, description } => {
            secgroups::modify(conn, env, &group_id, name, description)
        }
        Action::DeleteSecurityGroup { group_id } => secgroups::delete(conn, env, &group_id),
        Action::AuthorizeSecurityGroup(rc) => secrules::authorize(conn, env, rc),
        Action::RevokeSecurityGroup(rc) => secrules::revoke(conn, env, rc),
        Action::JoinSecurityGroup(m) => secgroups::join(conn, env, m),
        Action::LeaveSecurityGroup(m) => secgroups::leave(conn, env, m),
        // Every other action is read-only (`Action::is_read_only`).
        read => return dispatch_read(conn, env, read),
    };
    r.map(Node::from).map_err(ApiError::from)
}
