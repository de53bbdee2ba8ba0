//! Tasks (DescribeTasks, DescribeTaskAttribute) and ModifyDiskSpec (issue 9). A task is a row
//! an asynchronous action leaves: ImportImage's (Processing until the image is Available or
//! CreateFailed) and ModifyDiskSpec's (the spec changes at once: Finished when answered).

use super::listing::{Listing, Scope};
use super::{R, begin, dry_run_ok};
use crate::shapes::TimeText;
use crate::{Env, guards, new_id};
use ecs_api::Code;
use ecs_api::tasks::{DescribeTasks, ModifyDiskSpec};
use ecs_api::write::{Emit, Out};
use ecs_api::{ApiError, Node};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::{Value, json};

/// Record a task in `region` for `resource` (`status` Processing, or Finished at once).
pub(crate) fn record(
    tx: &Transaction,
    env: &Env,
    region: &str,
    id: &str,
    action: &str,
    resource: &str,
    finished: bool,
) -> R<()> {
    tx.execute(
        "INSERT INTO tasks(id, account_id, region_id, action, resource_id, status, created_ms, finished_ms)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            id,
            env.account_id,
            region,
            action,
            resource,
            if finished { "Finished" } else { "Processing" },
            env.now,
            finished.then_some(env.now)
        ],
    )?;
    Ok(())
}

/// ESSD performance levels and the smallest disk each needs, GiB (API reference).
const LEVELS: [(&str, i64); 4] = [("PL0", 1), ("PL1", 20), ("PL2", 461), ("PL3", 1261)];

pub(crate) fn modify_disk_spec(conn: &mut Connection, env: &Env, m: ModifyDiskSpec) -> R<Value> {
    let tx = begin(conn)?;
    let disk = guards::disk(&tx, env, &m.disk_id)?;
    if disk.is_local() || disk.category == "cloud" {
        return Err(Code::OperationDeniedDiskType.into());
    }
    if disk.status != "In_use" && disk.status != "Available" {
        return Err(Code::OperationDeniedDiskStatus.into());
    }
    let category = m.category.clone().unwrap_or_else(|| disk.category.clone());
    if !["cloud_efficiency", "cloud_ssd", "cloud_essd"].contains(&category.as_str()) {
        return Err(Code::InvalidDiskCategoryValueNotSupported.into());
    }
    let level = match (&m.performance_level, category.as_str()) {
        (Some(_), c) if c != "cloud_essd" => return Err(ApiError::invalid("PerformanceLevel").into()),
        (Some(l), _) => Some(l.clone()),
        (None, "cloud_essd") => Some(disk.performance_level.clone().unwrap_or_else(|| "PL1".into())),
        (None, _) => None,
    };
    if let Some(l) = &level
        && LEVELS.iter().any(|(n, min)| n == l && disk.size_gib < *min)
    {
        return Err(ApiError::invalid("PerformanceLevel").into());
    }
    if m.dry_run {
        return Err(dry_run_ok());
    }
    tx.execute("UPDATE disks SET category=?2, performance_level=?3 WHERE id=?1", params![disk.id, category, level])?;
    let task = new_id("t-");
    record(&tx, env, &disk.region_id, &task, "ModifyDiskSpec", &disk.id, true)?;
    tx.commit()?;
    Ok(json!({"TaskId": task, "OrderId": ""}))
}

struct TaskView {
    id: String,
    action: String,
    resource: String,
    status: String,
    created_ms: i64,
    finished_ms: Option<i64>,
}

impl Emit for TaskView {
    fn emit(&self, o: &mut dyn Out) {
        o.begin_obj();
        o.field("TaskId", &self.id);
        o.field("TaskAction", &self.action);
        o.field("TaskStatus", &self.status);
        o.field("ResourceId", &self.resource);
        o.field("SupportCancel", "false");
        o.field("CreationTime", TimeText::secs(self.created_ms).as_str());
        o.field(
            "FinishedTime",
            self.finished_ms.map(TimeText::secs).as_ref().map(TimeText::as_str).unwrap_or_default(),
        );
        o.end_obj();
    }
}

fn row(r: &rusqlite::Row) -> rusqlite::Result<TaskView> {
    Ok(TaskView {
        id: r.get(0)?,
        action: r.get(1)?,
        resource: r.get(2)?,
        status: r.get(3)?,
        finished_ms: r.get(4)?,
        created_ms: r.get(5)?,
    })
}

pub(crate) fn describe_tasks(conn: &Connection, env: &Env, d: DescribeTasks) -> R<Node> {
    let mut q = Listing::new("task", "tasks", "id, action, resource_id, status, finished_ms", env, Scope::Own);
    q.any_of("id", (!d.task_ids.is_empty()).then_some(&d.task_ids[..]))
        .any_of("resource_id", (!d.resource_ids.is_empty()).then_some(&d.resource_ids[..]))
        .eq("action", d.task_action)
        .eq("status", d.task_status);
    let page = q.fetch(conn, &d.paging, row)?;
    let mut out = Node::obj();
    out.push("RegionId", env.region_id.unwrap_or_default().to_string());
    page.render(&d.paging, ("TaskSet", "Task"), &mut out);
    Ok(out)
}

pub(crate) fn describe_task_attribute(conn: &Connection, env: &Env, id: &str) -> R<Node> {
    let t = conn
        .query_row(
            "SELECT id, action, resource_id, status, finished_ms, created_ms FROM tasks
             WHERE id=?1 AND account_id=?2 AND released=0 AND (?3 IS NULL OR region_id=?3)",
            params![id, env.account_id, env.region_id],
            row,
        )
        .optional()?
        .ok_or(Code::InvalidTaskIdNotFound)?;
    let (done, failed) = (t.status == "Finished", t.status == "Failed");
    let finished = t.finished_ms.map(TimeText::secs);
    Ok(Node::from(json!({
        "TaskId": t.id,
        "RegionId": env.region_id.unwrap_or_default(),
        "TaskAction": t.action,
        "TaskStatus": t.status,
        "TaskProcess": if done || failed { "100%" } else { "0%" },
        "SupportCancel": "false",
        "TotalCount": 1,
        "SuccessCount": i64::from(done),
        "FailedCount": i64::from(failed),
        "CreationTime": TimeText::secs(t.created_ms).as_str(),
        "FinishedTime": finished.as_ref().map(TimeText::as_str).unwrap_or_default(),
        "OperationProgressSet": {"OperationProgress": [{
            "OperationStatus": if failed { "Failed" } else if done { "Success" } else { "Processing" },
            "ErrorCode": "", "ErrorMsg": "",
            "RelatedItemSet": {"RelatedItem": [{"Name": "ResourceId", "Value": t.resource}]}
        }]}
    })))
}
