//! DescribeRegions, DescribeZones, DescribeImages, CreateImage, DeleteImage.

use super::{R, begin, page};
use crate::model::{Image, fmt_time};
use crate::{Env, config, guards, new_id};
use ecs_api::Code;
use ecs_api::action::DescribeImages;
use rusqlite::{Connection, params};
use serde_json::{Map, Value, json};

pub(crate) fn describe_regions(env: &Env) -> R<Value> {
    let regions: Vec<Value> = env
        .config
        .regions
        .iter()
        .map(|r| json!({"RegionId": r.id, "LocalName": r.local_name, "RegionEndpoint": format!("ecs.{}.aliyuncs.com", r.id), "Status": "available"}))
        .collect();
    Ok(json!({"Regions": {"Region": regions}}))
}

pub(crate) fn describe_zones(env: &Env) -> R<Value> {
    let region = env.config.region(env.region_id.unwrap_or_default()).ok_or(Code::InvalidRegionIdMalFormed)?;
    let categories: Vec<&str> = config::DISK_CATEGORIES.iter().filter(|c| !c.3).map(|c| c.0).collect();
    let types: Vec<&str> = config::INSTANCE_TYPES.iter().map(|t| t.0).collect();
    let zones: Vec<Value> = region
        .zones
        .iter()
        .map(|z| {
            json!({
                "ZoneId": z.id,
                "LocalName": z.local_name,
                "ZoneType": "AvailabilityZone",
                "AvailableResourceCreation": {"ResourceTypes": ["Instance", "Disk", "VSwitch"]},
                "AvailableDiskCategories": {"DiskCategories": categories},
                "AvailableVolumeCategories": {"VolumeCategories": categories},
                "AvailableInstanceTypes": {"InstanceTypes": types},
            })
        })
        .collect();
    Ok(json!({"Zones": {"Zone": zones}}))
}

fn own_images(conn: &Connection, env: &Env) -> R<Vec<Image>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, account_id, name, description, snapshot_id, size_gib, created_ms FROM images
         WHERE account_id=?1 AND region_id=?2 AND released=0 ORDER BY created_ms, id",
    )?;
    let rows = stmt
        .query_map([env.account_id, env.region_id.unwrap_or_default()], |r| {
            Ok(Image {
                id: r.get(0)?,
                account_id: r.get(1)?,
                name: r.get(2)?,
                description: r.get(3)?,
                snapshot_id: r.get(4)?,
                size_gib: r.get(5)?,
                created_ms: r.get(6)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(crate) fn describe_images(conn: &mut Connection, env: &Env, d: DescribeImages) -> R<Value> {
    let mut all: Vec<Image> = config::PUBLIC_IMAGES
        .iter()
        .map(|(id, name, size, _)| Image {
            id: id.to_string(),
            account_id: None,
            name: name.to_string(),
            description: "An empty disk image: the system disk starts all zeros.".into(),
            snapshot_id: None,
            size_gib: *size,
            created_ms: 1_672_531_200_000,
        })
        .collect();
    all.extend(own_images(conn, env)?);
    let region = env.region_id.unwrap_or_default();
    let items: Vec<Value> = all
        .iter()
        .filter(|i| d.image_ids.as_ref().is_none_or(|ids| ids.contains(&i.id)))
        .filter(|i| d.image_name.as_ref().is_none_or(|n| *n == i.name))
        .filter(|i| d.snapshot_id.as_ref().is_none_or(|s| i.snapshot_id.as_ref() == Some(s)))
        .filter(|i| match d.owner_alias.as_deref() {
            Some("system") => i.account_id.is_none(),
            Some("self") => i.account_id.is_some(),
            Some(_) => false,
            None => true,
        })
        .map(|i| i.to_json(region))
        .collect();
    let mut out = Map::new();
    out.insert("RegionId".into(), json!(region));
    page(items, &d.paging, ("Images", "Image"), &mut out)?;
    Ok(Value::Object(out))
}

/// An image backed by a snapshot: new instances' system disks are clones of it.
pub(crate) fn create_image(
    conn: &mut Connection,
    env: &Env,
    snapshot_id: &str,
    name: Option<String>,
    description: Option<String>,
) -> R<Value> {
    let tx = begin(conn)?;
    let acct = guards::account(&tx, env.account_id)?;
    guards::snapshot_service(&acct)?;
    let snap = guards::snapshot(&tx, env, snapshot_id)?;
    if snap.status != "accomplished" {
        return Err(Code::InvalidSnapshotIdNotReady.into());
    }
    let id = new_id("m-");
    let name = name.unwrap_or_else(|| format!("image-{}", fmt_time(env.now).replace([':', '-'], "")));
    tx.execute(
        "INSERT INTO images(id, account_id, region_id, name, description, snapshot_id, size_gib, created_ms)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            id,
            env.account_id,
            snap.region_id,
            name,
            description.unwrap_or_default(),
            snap.id,
            snap.disk_size_gib,
            env.now
        ],
    )?;
    tx.commit()?;
    Ok(json!({"ImageId": id}))
}

pub(crate) fn delete_image(conn: &mut Connection, env: &Env, image_id: &str, force: bool) -> R<Value> {
    let tx = begin(conn)?;
    // As documented: an image that instances still run from is deleted only with Force.
    let users: i64 = tx.query_row(
        "SELECT COUNT(*) FROM instances i JOIN images m ON m.id = i.image_id
         WHERE i.image_id=?1 AND i.released=0 AND m.account_id=?2 AND m.released=0",
        [image_id, env.account_id],
        |r| r.get(0),
    )?;
    if users > 0 && !force {
        return Err(Code::ImageIsUsedByInstance.into());
    }
    let n = tx.execute(
        "UPDATE images SET released=1 WHERE id=?1 AND account_id=?2 AND released=0",
        [image_id, env.account_id],
    )?;
    if n == 0 {
        return Err(Code::InvalidImageIdNotFound.into());
    }
    tx.commit()?;
    Ok(json!({}))
}
