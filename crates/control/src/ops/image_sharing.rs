//! CopyImage, ModifyImageSharePermission, DescribeImageSharePermission (API reference of each).
//!
//! A copy is a new image of the caller backed by a copy of the source image's snapshot: the
//! store's CopySnapshot, which shares the frozen layer (O(1), no bytes copied) and outlives its
//! source. A share is a row in `image_shares`; an account an image is shared with sees it in
//! DescribeImages (`others`) and boots from it (RunInstances, CreateInstance,
//! ReplaceSystemDisk: clones of the owner's snapshot, again O(1)), but cannot delete, share or
//! copy it to another region. Accounts are named by their ids, which are what ECS shows as
//! `OwnerId` (16 digits, `account-create`) and what `AliyunId` lists.

use super::storage::{self, Intent};
use super::{R, begin, dry_run_ok, idempotency};
use crate::fairness::{self, Quota};
use crate::model::tags_json;
use crate::shapes::TimeText;
use crate::{Env, guards, new_id, transitions};
use ecs_api::images::{CopyImage, ModifyImageSharePermission};
use ecs_api::{ApiError, Code, Node};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::{Value, json};

/// Accounts one image may be shared with (API reference ModifyImageSharePermission: "You can
/// share a custom image with up to 50 Alibaba Cloud accounts").
pub(crate) const MAX_IMAGE_SHARES: i64 = 50;

/// The SQL condition (on `images`) for an image the account `?n` may use: its own, or one
/// shared with it.
fn usable_by(n: u8) -> String {
    format!("(account_id=?{n} OR id IN (SELECT image_id FROM image_shares WHERE account_id=?{n}))")
}

/// Whether `image_id` is one `account` may boot from or re-initialize to: its own image or
/// one shared with it, live. (Public images are not in `images`.)
pub(crate) fn usable(tx: &Transaction, account: &str, image_id: &str) -> R<bool> {
    let sql = format!("SELECT 1 FROM images WHERE id=?1 AND released=0 AND {}", usable_by(2));
    Ok(tx.query_row(&sql, [image_id, account], |_| Ok(())).optional()?.is_some())
}

/// The source snapshot of a copy: what the new snapshot row repeats.
struct SourceSnapshot {
    disk_id: String,
    disk_size_gib: i64,
    disk_type: String,
    disk_category: String,
    encrypted: bool,
    kms_key_id: Option<String>,
}

/// CopyImage: the caller's Available custom image, or one shared with it (then in its own
/// region only, `OperationDenied.SameRegionOnly`), becomes a new image of the caller in the
/// destination region. Its snapshot is a CopySnapshot of the source's (the same frozen bytes,
/// O(1)), listed in the destination region; the image is `Creating` with a Progress for
/// `SnapshotMs`, then `Available`, and is independent of its source from the start.
pub(crate) fn copy_image(conn: &mut Connection, env: &Env, c: CopyImage) -> R<Value> {
    let tx = begin(conn)?;
    let acct = guards::account(&tx, env.account_id)?;
    let source_region = env.region_id.unwrap_or_default().to_string();
    let destination = c.destination_region_id.clone().unwrap_or_else(|| source_region.clone());
    env.config.region(&destination).ok_or(Code::DestinationRegionNotFound)?;
    let sql = format!(
        "SELECT account_id, status, snapshot_id, size_gib, import_json FROM images
         WHERE id=?1 AND region_id=?3 AND released=0 AND {}",
        usable_by(2)
    );
    type Row = (String, String, String, i64, Option<String>);
    let row: Option<Row> = tx
        .query_row(&sql, [c.image_id.as_str(), env.account_id, source_region.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    // Public images are not in `images`: not found, as the reference has it for any image
    // that is not a custom image of (or shared with) the caller.
    let (owner, status, source_snapshot, size_gib, import_json) = row.ok_or(Code::InvalidImageIdNotFound)?;
    if owner != env.account_id && destination != source_region {
        return Err(Code::OperationDeniedSameRegionOnly.into());
    }
    if status != "Available" {
        return Err(Code::IncorrectImageStatusCopy.into());
    }
    let src: SourceSnapshot = tx
        .query_row(
            "SELECT disk_id, disk_size_gib, disk_type, disk_category, encrypted, kms_key_id FROM snapshots
             WHERE id=?1 AND released=0",
            [&source_snapshot],
            |r| {
                Ok(SourceSnapshot {
                    disk_id: r.get(0)?,
                    disk_size_gib: r.get(1)?,
                    disk_type: r.get(2)?,
                    disk_category: r.get(3)?,
                    encrypted: r.get(4)?,
                    kms_key_id: r.get(5)?,
                })
            },
        )
        .optional()?
        .ok_or(Code::InvalidSnapshotIdNotFound)?;
    if c.encrypted {
        guards::kms(&tx, env, &acct, c.kms_key_id.as_deref())?;
    }
    guards::balance(&acct)?;
    fairness::quota(&tx, env.account_id, &env.config.limits, Quota::Snapshots, 1)?;
    if c.dry_run {
        return Err(dry_run_ok());
    }
    let id = new_id("m-");
    let snapshot = new_id("s-");
    let due = env.now + env.timings.snapshot_ms as i64;
    let (encrypted, kms_key_id) =
        if c.encrypted { (true, c.kms_key_id.clone()) } else { (src.encrypted, src.kms_key_id) };
    let row = super::snapshots::CopyRow {
        id: &snapshot,
        destination: &destination,
        name: &format!("copyimage-{id}"),
        description: &format!("The system disk of image {id}, copied by CopyImage from {}", c.image_id),
        due,
        encrypted,
        kms_key_id: kms_key_id.as_deref(),
        retention_days: None,
        tags: "[]",
        source: (&source_snapshot, &source_region, &src.disk_id, src.disk_size_gib, &src.disk_type, &src.disk_category),
    };
    super::snapshots::insert_copy(&tx, env, &row)?;
    tx.execute(
        "INSERT INTO images(id, account_id, region_id, name, description, snapshot_id, size_gib, created_ms,
           status, progress, import_json, source_image_id, tags)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'Creating', 0, ?9, ?10, ?11)",
        params![
            id,
            env.account_id,
            destination,
            c.name.unwrap_or_default(),
            c.description.unwrap_or_default(),
            snapshot,
            size_gib,
            env.now,
            import_json,
            c.image_id,
            tags_json(&c.tags)
        ],
    )?;
    transitions::schedule(&tx, "snapshot", &snapshot, due)?;
    transitions::schedule(&tx, "image", &id, due)?;
    let intent = Intent::CopySnapshot { from: source_snapshot, to: snapshot };
    let iid = storage::record(&tx, &intent)?;
    let response = json!({"ImageId": id});
    idempotency::remember(&tx, env, &response)?;
    tx.commit()?;
    if !storage::run(conn, env.volumes, &[(iid, intent)])?.is_empty() {
        // The request was accepted; the copy did not complete (its snapshot is `failed`).
        let tx = begin(conn)?;
        tx.execute("UPDATE images SET status='CreateFailed', progress=0 WHERE id=?1", [&id])?;
        tx.execute("DELETE FROM transitions WHERE kind='image' AND id=?1", [&id])?;
        tx.commit()?;
    }
    Ok(response)
}

/// ModifyImageSharePermission: the owner shares one of its custom images with accounts
/// (`AddAccount.N`) or stops sharing it (`RemoveAccount.N`), removals first. Only the owner
/// may (anyone else: `InvalidImageId.NotFound`); not with itself (`InvalidAccount.Forbbiden`);
/// only with accounts that exist (`InvalidAccount.NotFound`); at most [`MAX_IMAGE_SHARES`]
/// accounts (`QuotaExceed.ShareImageUser`); an image must be Available to be shared
/// (`IncorrectImageStatus`) and not encrypted with the service key
/// (`OperationDeined.EncryptedSnapshot`). Community images (`IsPublic=true`) are not offered.
pub(crate) fn modify_image_share_permission(
    conn: &mut Connection,
    env: &Env,
    m: ModifyImageSharePermission,
) -> R<Value> {
    let tx = begin(conn)?;
    let region = env.region_id.unwrap_or_default();
    let row: Option<(String, String)> = tx
        .query_row(
            "SELECT status, snapshot_id FROM images WHERE id=?1 AND account_id=?2 AND region_id=?3 AND released=0",
            [m.image_id.as_str(), env.account_id, region],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (status, snapshot) = row.ok_or(Code::InvalidImageIdNotFound)?;
    if m.is_public == Some(true) {
        return Err(ApiError::invalid("IsPublic").into());
    }
    if !m.add_accounts.is_empty() {
        if status != "Available" {
            return Err(Code::IncorrectImageStatusShare.into());
        }
        let key: Option<(bool, Option<String>)> = tx
            .query_row("SELECT encrypted, kms_key_id FROM snapshots WHERE id=?1", [&snapshot], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        if matches!(key, Some((true, None))) {
            return Err(Code::OperationDeinedEncryptedSnapshot.into());
        }
    }
    for a in &m.add_accounts {
        if a == env.account_id {
            return Err(Code::InvalidAccountForbbiden.into());
        }
    }
    for a in m.add_accounts.iter().chain(&m.remove_accounts) {
        let exists = tx.query_row("SELECT 1 FROM accounts WHERE id=?1", [a], |_| Ok(())).optional()?.is_some();
        if !exists {
            return Err(Code::InvalidAccountNotFound.into());
        }
    }
    if m.dry_run {
        return Err(dry_run_ok());
    }
    for a in &m.remove_accounts {
        tx.execute("DELETE FROM image_shares WHERE image_id=?1 AND account_id=?2", [m.image_id.as_str(), a])?;
    }
    for a in &m.add_accounts {
        tx.execute(
            "INSERT OR IGNORE INTO image_shares(image_id, account_id, created_ms) VALUES(?1, ?2, ?3)",
            params![m.image_id, a, env.now],
        )?;
    }
    let shares: i64 =
        tx.query_row("SELECT COUNT(*) FROM image_shares WHERE image_id=?1", [&m.image_id], |r| r.get(0))?;
    if shares > MAX_IMAGE_SHARES {
        return Err(Code::QuotaExceedShareImageUser.into());
    }
    tx.commit()?;
    Ok(json!({}))
}

/// DescribeImageSharePermission: the accounts one of the caller's images is shared with, in
/// the order they were added, one page (PageNumber from 1, PageSize 1–100, default 10).
/// `ShareGroups` is empty: no image here is shared with the group `all` (community images).
pub(crate) fn describe_image_share_permission(
    conn: &Connection,
    env: &Env,
    image_id: &str,
    page_number: u32,
    page_size: u32,
) -> R<Node> {
    let region = env.region_id.unwrap_or_default();
    let own = conn
        .query_row(
            "SELECT 1 FROM images WHERE id=?1 AND account_id=?2 AND region_id=?3 AND released=0",
            [image_id, env.account_id, region],
            |_| Ok(()),
        )
        .optional()?;
    own.ok_or(Code::InvalidImageIdNotFound)?;
    let total: i64 = conn.query_row("SELECT COUNT(*) FROM image_shares WHERE image_id=?1", [image_id], |r| r.get(0))?;
    let offset = i64::from(page_number.saturating_sub(1)).saturating_mul(i64::from(page_size));
    let mut stmt = conn.prepare_cached(
        "SELECT account_id, created_ms FROM image_shares WHERE image_id=?1
         ORDER BY created_ms, account_id LIMIT ?2 OFFSET ?3",
    )?;
    let accounts: Vec<Value> = stmt
        .query_map(params![image_id, i64::from(page_size), offset], |r| {
            let (id, ms): (String, i64) = (r.get(0)?, r.get(1)?);
            Ok(json!({"AliyunId": id, "SharedTime": TimeText::secs(ms).as_str()}))
        })?
        .collect::<Result<_, _>>()?;
    Ok(Node::from(json!({
        "RegionId": region,
        "ImageId": image_id,
        "TotalCount": total,
        "PageNumber": page_number,
        "PageSize": page_size,
        "ShareGroups": {"ShareGroup": []},
        "Accounts": {"Account": accounts},
    })))
}
