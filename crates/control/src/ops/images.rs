//! DescribeRegions, DescribeZones, DescribeImages, CreateImage, ImportImage, DeleteImage.
//! Copies and sharing are in `image_sharing`.

use super::listing::{Listing, Scope};
use super::{R, begin, idempotency};
use crate::model::{Image, fmt_time};
use crate::shapes::ImageView;
use crate::{Env, config, guards, new_id};
use ecs_api::Code;
use ecs_api::Node;
use ecs_api::images::DescribeImages;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

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
    let types: Vec<&str> = env.config.instance_types.iter().map(|t| t.id.as_str()).collect();
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

/// DescribeImages: the public images, the account's own and those shared with it (API
/// reference DescribeImages: no ImageOwnerAlias lists system, self and others), filtered in
/// SQL, one page read.
pub(crate) fn describe_images(conn: &Connection, env: &Env, d: DescribeImages) -> R<Node> {
    use rusqlite::types::Value as V;
    let mut q = Listing::new("image", "images_now", Image::COLUMNS, env, Scope::OwnSharedAndPublic);
    q.any_of("id", d.image_ids.as_deref())
        .eq("name", d.image_name)
        .eq("snapshot_id", d.snapshot_id)
        .any_of("status", Some(&d.status))
        .tags(&d.tags);
    let me = || V::Text(env.account_id.to_string());
    match d.owner_alias.as_deref() {
        Some("system") => q.clause("account_id = ''", []),
        Some("self") => q.clause("account_id = ?", [me()]),
        Some("others") => q.clause("account_id NOT IN ('', ?)", [me()]),
        Some(_) => q.any_of("id", Some(&[])),
        None => &mut q,
    };
    if let Some(owner) = d.owner_id {
        // Documented to apply to shared images only: the others are kept as they are.
        q.clause("(account_id IN ('', ?) OR account_id = ?)", [me(), V::Text(owner)]);
    }
    let page = q.fetch(conn, &d.paging, Image::from_row)?;
    let region = env.region_id.unwrap_or_default();
    let mut out = Node::obj();
    out.push("RegionId", region.to_string());
    let viewer = env.account_id.to_string();
    let items = page
        .items
        .into_iter()
        .map(|image| ImageView { image, region: region.to_string(), viewer: viewer.clone() })
        .collect();
    let page = super::listing::Page { items, total: page.total, next_token: page.next_token };
    page.render(&d.paging, ("Images", "Image"), &mut out);
    Ok(out)
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
    let response = json!({"ImageId": id});
    idempotency::remember(&tx, env, &response)?;
    tx.commit()?;
    Ok(response)
}

/// DeleteImage: one of the caller's images. As documented, an image that instances still
/// run from (any account's, shared images included) or that is shared with other accounts
/// (`ImageUseShared`) is deleted only with Force, which also ends its shares; a copy still
/// being made is refused (`OperationDenied.ImageCopying`). Instances already made keep their
/// disks: those are clones of their own.
pub(crate) fn delete_image(conn: &mut Connection, env: &Env, image_id: &str, force: bool) -> R<Value> {
    let tx = begin(conn)?;
    let row: Option<(String, bool, i64)> = tx
        .query_row(
            "SELECT status, source_image_id IS NOT NULL,
               (SELECT COUNT(*) FROM image_shares s WHERE s.image_id = images.id)
             FROM images WHERE id=?1 AND account_id=?2 AND released=0",
            [image_id, env.account_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let (status, copied, shares) = row.ok_or(Code::InvalidImageIdNotFound)?;
    if copied && status == "Creating" {
        return Err(Code::OperationDeniedImageCopying.into());
    }
    if shares > 0 && !force {
        return Err(Code::ImageUseShared.into());
    }
    tx.execute("DELETE FROM image_shares WHERE image_id=?1", [image_id])?;
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

/// ImportImage: the object `OSSObject` of bucket `OSSBucket` (a local directory the operator
/// maps to the bucket name) becomes an image. The image is Creating, with a Progress, while
/// `imports` converts it in the background (qemu-img) into a snapshot; then Available, or
/// CreateFailed with the reason logged.
pub(crate) fn import_image(conn: &mut Connection, env: &Env, req: ecs_api::images::ImportImage) -> R<Value> {
    let dir = env.config.oss_buckets.get(&req.oss_bucket).ok_or(Code::InvalidOssBucketNotFound)?;
    crate::imports::object_path(dir, &req.oss_object).ok_or(Code::InvalidOssObjectNotFound)?;
    let tx = begin(conn)?;
    let acct = guards::account(&tx, env.account_id)?;
    guards::snapshot_service(&acct)?;
    let region = env.config.region(env.region_id.unwrap_or_default()).ok_or(Code::InvalidRegionIdMalFormed)?;
    let id = new_id("m-");
    let source = crate::model::ImportSource {
        bucket: req.oss_bucket,
        object: req.oss_object,
        format: req.format,
        min_gib: req.disk_image_size,
        architecture: req.architecture,
        os_type: req.os_type,
        platform: req.platform.unwrap_or_default(),
        boot_mode: req.boot_mode,
    };
    let name = req.image_name.unwrap_or_else(|| format!("image-{}", fmt_time(env.now).replace([':', '-'], "")));
    tx.execute(
        "INSERT INTO images(id, account_id, region_id, name, description, snapshot_id, size_gib, created_ms,
           status, progress, import_json)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'Creating', 0, ?9)",
        params![
            id,
            env.account_id,
            region.id,
            name,
            req.description.unwrap_or_default(),
            new_id("s-"),
            source.min_gib.unwrap_or(0),
            env.now,
            serde_json::to_string(&source).unwrap_or_default(),
        ],
    )?;
    let task = format!("t-{}", id.trim_start_matches("m-"));
    super::tasks::record(&tx, env, &region.id, &task, "ImportImage", &id, false)?;
    let response = json!({"ImageId": id, "RegionId": region.id, "TaskId": task});
    idempotency::remember(&tx, env, &response)?;
    tx.commit()?;
    Ok(response)
}
