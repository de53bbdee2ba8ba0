//! One module per group of actions. Each handler runs its checks and its changes inside one
//! catalog transaction while holding the catalog lock, so racing requests serialize and no
//! partial state is visible. Storage changes go through intents (see [`storage`]).

mod disks;
mod images;
mod instances;
mod reset;
mod snapshots;
mod storage;

pub(crate) use storage::recover_intents;

use crate::Env;
use ecs_api::action::Action;
use ecs_api::params::Paging;
use ecs_api::{ApiError, Code};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use serde_json::{Map, Value, json};

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

pub(crate) fn dispatch(conn: &mut Connection, env: &Env, action: Action) -> Result<Value, ApiError> {
    crate::transitions::complete_due(conn, env.now).map_err(Fail::from)?;
    let r = match action {
        Action::ResetDisk(r) => reset::reset_disk(conn, env, r),
        Action::CreateDisk(c) => disks::create_disk(conn, env, c),
        Action::DescribeDisks(d) => disks::describe_disks(conn, env, d),
        Action::DeleteDisk { disk_id, dry_run } => disks::delete_disk(conn, env, &disk_id, dry_run),
        Action::AttachDisk { disk_id, instance_id, delete_with_instance, dry_run } => {
            disks::attach_disk(conn, env, &disk_id, &instance_id, delete_with_instance, dry_run)
        }
        Action::DetachDisk { disk_id, instance_id, delete_with_instance, dry_run } => {
            disks::detach_disk(conn, env, &disk_id, &instance_id, delete_with_instance, dry_run)
        }
        Action::CreateSnapshot(c) => snapshots::create_snapshot(conn, env, c),
        Action::DescribeSnapshots(d) => snapshots::describe_snapshots(conn, env, d),
        Action::DeleteSnapshot { snapshot_id, force } => snapshots::delete_snapshot(conn, env, &snapshot_id, force),
        Action::RunInstances { spec, amount, min_amount, dry_run } => {
            instances::run_instances(conn, env, &spec, amount, min_amount, dry_run, true)
        }
        Action::CreateInstance { spec, dry_run } => instances::run_instances(conn, env, &spec, 1, None, dry_run, false),
        Action::StartInstance { instance_id, dry_run } => instances::start_instance(conn, env, &instance_id, dry_run),
        Action::StopInstance { instance_id, dry_run, .. } => instances::stop_instance(conn, env, &instance_id, dry_run),
        Action::StartInstances { instance_ids, dry_run } => instances::batch(conn, env, &instance_ids, dry_run, true),
        Action::StopInstances { instance_ids, dry_run, .. } => {
            instances::batch(conn, env, &instance_ids, dry_run, false)
        }
        Action::DescribeInstances(d) => instances::describe_instances(conn, env, d),
        Action::DeleteInstance { instance_id, force, dry_run } => {
            instances::delete_instance(conn, env, &instance_id, force, dry_run)
        }
        Action::DescribeRegions => images::describe_regions(env),
        Action::DescribeZones => images::describe_zones(env),
        Action::DescribeImages(d) => images::describe_images(conn, env, d),
        Action::CreateImage { snapshot_id, image_name, description } => {
            images::create_image(conn, env, &snapshot_id, image_name, description)
        }
        Action::DeleteImage { image_id, force } => images::delete_image(conn, env, &image_id, force),
    };
    r.map_err(ApiError::from)
}

/// Apply NextToken/MaxResults or PageNumber/PageSize to a filtered list and add the paging
/// fields to `out`. Tokens are opaque to clients; here they encode the next offset.
pub(crate) fn page(items: Vec<Value>, paging: &Paging, list: (&str, &str), out: &mut Map<String, Value>) -> R<()> {
    let total = items.len();
    let (offset, size) = match paging {
        Paging::Token { next_token, max_results } => {
            let offset = match next_token {
                None => 0,
                Some(t) => t
                    .strip_prefix("nt")
                    .and_then(|h| usize::from_str_radix(h, 16).ok())
                    .ok_or_else(|| ApiError::invalid("NextToken"))?,
            };
            (offset, *max_results as usize)
        }
        Paging::Pages { number, size } => ((*number as usize - 1).saturating_mul(*size as usize), *size as usize),
    };
    let end = offset.saturating_add(size).min(total);
    let slice: Vec<Value> = items.into_iter().skip(offset).take(end.saturating_sub(offset)).collect();
    out.insert(list.0.into(), json!({ list.1: slice }));
    out.insert("TotalCount".into(), json!(total));
    match paging {
        Paging::Token { max_results, .. } => {
            let next = if end < total { format!("nt{end:x}") } else { String::new() };
            out.insert("NextToken".into(), json!(next));
            out.insert("PageNumber".into(), json!(1));
            out.insert("PageSize".into(), json!(max_results));
        }
        Paging::Pages { number, size } => {
            out.insert("NextToken".into(), json!(""));
            out.insert("PageNumber".into(), json!(number));
            out.insert("PageSize".into(), json!(size));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Value> {
        (0..n).map(|i| json!(i)).collect()
    }

    #[test]
    fn token_paging_walks_everything_once() {
        let mut seen = vec![];
        let mut token = None;
        loop {
            let mut out = Map::new();
            page(ids(23), &Paging::Token { next_token: token.clone(), max_results: 10 }, ("Disks", "Disk"), &mut out)
                .unwrap();
            seen.extend(out["Disks"]["Disk"].as_array().unwrap().iter().cloned());
            let next = out["NextToken"].as_str().unwrap().to_string();
            if next.is_empty() {
                break;
            }
            token = Some(next);
        }
        assert_eq!(seen, ids(23));
    }

    #[test]
    fn page_numbers_and_bad_tokens() {
        let mut out = Map::new();
        page(ids(23), &Paging::Pages { number: 3, size: 10 }, ("Disks", "Disk"), &mut out).unwrap();
        assert_eq!(out["Disks"]["Disk"], json!([20, 21, 22]));
        assert_eq!(out["TotalCount"], json!(23));
        let bad = page(
            ids(3),
            &Paging::Token { next_token: Some("zz".into()), max_results: 10 },
            ("D", "d"),
            &mut Map::new(),
        );
        assert!(matches!(bad, Err(Fail::Api(e)) if e.code == Code::InvalidParameter));
    }
}
