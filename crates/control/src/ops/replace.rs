//! ReplaceSystemDisk (issue 9): a Stopped instance gets a new system disk, a clone of another
//! image's snapshot (O(1)), and the old system disk is released with its bytes; its snapshots
//! stay, as snapshots outlive their disks. The instance's ImageId becomes the new image, and
//! with VMs the next start boots it.

use super::disks::{self, NewDisk};
use super::storage::Intent;
use super::{Fail, R, begin, idempotency, instances, storage};
use crate::{Env, config, guards};
use ecs_api::{ApiError, Code};
use rusqlite::{Connection, params};
use serde_json::{Value, json};

/// What ReplaceSystemDisk was asked (see `ecs_api::action::Action::ReplaceSystemDisk`).
pub(crate) struct Replace {
    pub instance_id: String,
    pub image_id: String,
    pub size_gib: Option<i64>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
}

pub(crate) fn replace_system_disk(conn: &mut Connection, env: &Env, r: Replace) -> R<Value> {
    let tx = begin(conn)?;
    let acct = guards::account(&tx, env.account_id)?;
    let inst = guards::instance(&tx, env, &r.instance_id)?;
    guards::instance_usable(&inst, &acct, env.now)?;
    if inst.status != "Stopped" {
        return Err(Code::IncorrectInstanceStatus.into());
    }
    let old = guards::instance_disks(&tx, &inst.id)?.into_iter().find(|d| d.disk_type == "system");
    if let Some(d) = &old
        && d.status != "In_use"
    {
        return Err(Code::IncorrectDiskStatus.into());
    }
    let (image_size, image_snapshot) = instances::image(&tx, env, &r.image_id, &inst.region_id)?;
    let size = r.size_gib.unwrap_or(image_size.max(20));
    if size < image_size {
        return Err(Code::InvalidDiskSizeTooSmall.into());
    }
    let category = old.as_ref().map_or(config::DEFAULT_SYSTEM_DISK_CATEGORY.to_string(), |d| d.category.clone());
    disks::check_category(&category, size, false, Code::InvalidSystemDiskCategoryValueNotSupported)?;
    let encrypted = r.encrypted || r.kms_key_id.is_some();
    if encrypted {
        guards::kms(&tx, env, &acct, r.kms_key_id.as_deref())?;
    }
    guards::balance(&acct)?;
    let new = NewDisk {
        region_id: &inst.region_id,
        zone_id: &inst.zone_id,
        name: None,
        description: None,
        category: &category,
        size_gib: size,
        disk_type: "system",
        instance: Some((&inst.id, "/dev/xvda".into())),
        image_id: Some(&r.image_id),
        source_snapshot_id: image_snapshot.as_deref(),
        encrypted,
        kms_key_id: r.kms_key_id.as_deref(),
        performance_level: old.as_ref().and_then(|d| d.performance_level.as_deref()),
        delete_with_instance: old.as_ref().is_none_or(|d| d.delete_with_instance),
        charge_type: &inst.charge_type,
        tags: &[],
    };
    let (disk_id, create_id, create) = disks::insert(&tx, env, &new)?;
    let mut intents = vec![(create_id, create)];
    if let Some(d) = &old {
        tx.execute("UPDATE disks SET released=1 WHERE id=?1", [&d.id])?;
        tx.execute("DELETE FROM transitions WHERE kind='disk' AND id=?1", [&d.id])?;
        let intent = Intent::DeleteVolume { disk: d.id.clone() };
        intents.push((storage::record(&tx, &intent)?, intent));
    }
    tx.execute("UPDATE instances SET image_id=?2 WHERE id=?1", params![inst.id, r.image_id])?;
    let response = json!({"DiskId": disk_id});
    idempotency::remember(&tx, env, &response)?;
    tx.commit()?;
    if let Some(d) = &old {
        env.revoke(std::slice::from_ref(&d.id));
    }
    if !storage::run(conn, env.volumes, &intents)?.is_empty() {
        return Err(Fail::Api(ApiError::new(Code::InternalError)));
    }
    Ok(response)
}
