//! TagResources, UntagResources and ListTagResources (and the older AddTags, RemoveTags and
//! DescribeTags): tags on disks, instances and snapshots, per account and region, at most
//! [`MAX_TAGS`] a resource. A resource's tags are
//! the JSON list of [key, value] pairs on its row, the same list that Describe* shows and
//! filters by (`Listing::tags`).

use super::listing::{Listing, Scope};
use super::{R, begin};
use crate::Env;
use crate::model::tags_json;
use ecs_api::params::{MAX_TAGS, Paging};
use ecs_api::tagging::{DescribeTags, ListTagResources, TagResourceType, TagResources, UntagResources};
use ecs_api::{Code, Node};
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Value, json};

/// The catalog table of a taggable type (images carry no tags here).
fn table(t: TagResourceType) -> R<&'static str> {
    match t {
        TagResourceType::Disk => Ok("disks"),
        TagResourceType::Instance => Ok("instances"),
        TagResourceType::Snapshot => Ok("snapshots"),
        TagResourceType::Image => Err(Code::InvalidResourceIdNotSupported.into()),
    }
}

/// The tags of one live resource of the caller, in the request's region.
fn current(conn: &Connection, env: &Env, table: &str, id: &str) -> R<Vec<(String, String)>> {
    let sql = format!("SELECT tags FROM {table} WHERE id=?1 AND account_id=?2 AND region_id=?3 AND released=0");
    let raw: Option<String> =
        conn.query_row(&sql, [id, env.account_id, env.region_id.unwrap_or_default()], |r| r.get(0)).optional()?;
    let raw = raw.ok_or(Code::InvalidResourceIdNotFound)?;
    Ok(serde_json::from_str(&raw).unwrap_or_default())
}

fn store(conn: &Connection, table: &str, id: &str, tags: &[(String, String)]) -> R<()> {
    conn.execute(&format!("UPDATE {table} SET tags=?2 WHERE id=?1"), [id, &tags_json(tags)])?;
    Ok(())
}

/// Add or overwrite tags on every named resource, all or none.
pub(crate) fn tag_resources(conn: &mut Connection, env: &Env, t: TagResources) -> R<Value> {
    let table = table(t.resource_type)?;
    let tx = begin(conn)?;
    for id in &t.resource_ids {
        let mut tags = current(&tx, env, table, id)?;
        for (k, v) in &t.tags {
            match tags.iter_mut().find(|(have, _)| have == k) {
                Some(slot) => slot.1 = v.clone(),
                None => tags.push((k.clone(), v.clone())),
            }
        }
        if tags.len() > MAX_TAGS as usize {
            return Err(Code::InvalidTagCount.into());
        }
        store(&tx, table, id, &tags)?;
    }
    tx.commit()?;
    Ok(json!({}))
}

/// Remove the named keys (or, with `All`, every tag) from every named resource.
pub(crate) fn untag_resources(conn: &mut Connection, env: &Env, u: UntagResources) -> R<Value> {
    let table = table(u.resource_type)?;
    let tx = begin(conn)?;
    for id in &u.resource_ids {
        let mut tags = current(&tx, env, table, id)?;
        if u.tag_keys.is_empty() {
            if u.all {
                tags.clear();
            }
        } else {
            tags.retain(|(k, _)| !u.tag_keys.contains(k));
        }
        store(&tx, table, id, &tags)?;
    }
    tx.commit()?;
    Ok(json!({}))
}

/// Resources per ListTagResources page (each answers all its tags).
const PAGE_RESOURCES: u32 = 50;

/// One row per (resource, tag) of the caller's tagged resources of the type, optionally only
/// the named ones and those carrying the filter tags; paged by NextToken over resources.
pub(crate) fn list_tag_resources(conn: &Connection, env: &Env, l: ListTagResources) -> R<Node> {
    let (kind, source) = match l.resource_type {
        TagResourceType::Disk => ("disk-tags", "disks"),
        TagResourceType::Instance => ("instance-tags", "instances"),
        TagResourceType::Snapshot => ("snapshot-tags", "snapshots"),
        TagResourceType::Image => return Err(Code::InvalidResourceIdNotSupported.into()),
    };
    let mut q = Listing::new(kind, source, "id, tags", env, Scope::Own);
    if !l.resource_ids.is_empty() {
        q.any_of("id", Some(&l.resource_ids));
    }
    q.clause("tags != '[]'", []).tags(&l.tags);
    let paging = Paging::Token { next_token: l.next_token, max_results: PAGE_RESOURCES };
    let page = q.fetch(conn, &paging, |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut rows = Vec::new();
    for (id, raw) in page.items {
        let tags: Vec<(String, String)> = serde_json::from_str(&raw).unwrap_or_default();
        for (k, v) in tags {
            rows.push(ecs_api::obj! {
                "ResourceType" => l.resource_type.as_str(),
                "ResourceId" => id.clone(),
                "TagKey" => k,
                "TagValue" => v,
            });
        }
    }
    let mut out = Node::obj();
    out.push("NextToken", page.next_token.unwrap_or_default());
    out.push("TagResources", Node::wrapped("TagResource", rows));
    Ok(out)
}

/// RemoveTags: the named keys leave one resource (a key given with a value only where the
/// value matches).
pub(crate) fn remove_tags(
    conn: &mut Connection,
    env: &Env,
    resource_type: TagResourceType,
    id: &str,
    remove: &[(String, Option<String>)],
) -> R<Value> {
    let table = table(resource_type)?;
    let tx = begin(conn)?;
    let mut tags = current(&tx, env, table, id)?;
    tags.retain(|(k, v)| !remove.iter().any(|(rk, rv)| rk == k && rv.as_ref().is_none_or(|rv| rv == v)));
    store(&tx, table, id, &tags)?;
    tx.commit()?;
    Ok(json!({}))
}

/// DescribeTags: each distinct (key, value) on the caller's live tagged resources in the
/// region, with how many resources of each type carry it, sorted by key and value and paged
/// by PageNumber/PageSize. An aggregate: its work grows with the account's tagged resources.
pub(crate) fn describe_tags(conn: &Connection, env: &Env, d: DescribeTags) -> R<Node> {
    let types: Vec<(TagResourceType, &str)> = [
        (TagResourceType::Instance, "instances"),
        (TagResourceType::Disk, "disks"),
        (TagResourceType::Snapshot, "snapshots"),
    ]
    .into_iter()
    .filter(|(t, _)| d.resource_type.is_none_or(|want| want == *t))
    .collect();
    if d.resource_type == Some(TagResourceType::Image) {
        return Err(Code::InvalidResourceIdNotSupported.into());
    }
    let mut params: Vec<rusqlite::types::Value> = Vec::new();
    let mut parts = Vec::new();
    for (t, table) in &types {
        let mut part = format!(
            "SELECT '{}' AS kind, json_extract(j.value, '$[0]') AS k, json_extract(j.value, '$[1]') AS v
             FROM {table} r, json_each(r.tags) j
             WHERE r.account_id = ? AND r.region_id = ? AND r.released = 0",
            t.as_str()
        );
        params.push(env.account_id.to_string().into());
        params.push(env.region_id.unwrap_or_default().to_string().into());
        if let Some(id) = &d.resource_id {
            part.push_str(" AND r.id = ?");
            params.push(id.clone().into());
        }
        parts.push(part);
    }
    let mut filter = Vec::new();
    for (k, v) in &d.tags {
        match v {
            Some(v) => {
                filter.push("(k = ? AND v = ?)".to_string());
                params.push(k.clone().into());
                params.push(v.clone().into());
            }
            None => {
                filter.push("k = ?".to_string());
                params.push(k.clone().into());
            }
        }
    }
    let filter = if filter.is_empty() { String::new() } else { format!("WHERE {}", filter.join(" OR ")) };
    let all = format!("SELECT kind, k, v FROM ({}) {filter}", parts.join(" UNION ALL "));
    let total: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM (SELECT 1 FROM ({all}) GROUP BY k, v)"),
        rusqlite::params_from_iter(params.iter()),
        |r| r.get(0),
    )?;
    let (number, size) = d.page;
    let mut page_params = params.clone();
    page_params.push(i64::from(size).into());
    page_params.push((i64::from(number) - 1).saturating_mul(i64::from(size)).into());
    let sql = format!(
        "SELECT k, v, SUM(kind = 'instance'), SUM(kind = 'disk'), SUM(kind = 'snapshot')
         FROM ({all}) GROUP BY k, v ORDER BY k, v LIMIT ? OFFSET ?"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(page_params.iter()), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    let mut tags = Vec::new();
    for row in rows {
        let (k, v, instances, disks, snapshots) = row?;
        tags.push(ecs_api::obj! {
            "TagKey" => k,
            "TagValue" => v.unwrap_or_default(),
            "ResourceTypeCount" => ecs_api::obj! {
                "Instance" => instances, "Disk" => disks, "Snapshot" => snapshots, "Image" => 0i64,
                "Securitygroup" => 0i64, "Volume" => 0i64, "Eni" => 0i64, "Ddh" => 0i64,
                "KeyPair" => 0i64, "LaunchTemplate" => 0i64, "ReservedInstance" => 0i64,
                "SnapshotPolicy" => 0i64,
            },
        });
    }
    let mut out = Node::obj();
    out.push("Tags", Node::wrapped("Tag", tags));
    out.push("TotalCount", total);
    out.push("PageNumber", number);
    out.push("PageSize", size);
    Ok(out)
}
