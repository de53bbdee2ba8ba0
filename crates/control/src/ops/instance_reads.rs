//! What tools read of one instance beside DescribeInstances (API reference:
//! DescribeInstanceAttribute, DescribeUserData, GetInstanceConsoleOutput,
//! DescribeInstanceMaintenanceAttributes, DescribeInstanceAttachmentAttributes).

use super::R;
use super::listing::{Listing, Scope};
use crate::Env;
use crate::model::Instance;
use ecs_api::params::Paging;
use ecs_api::{Code, Node};
use rusqlite::{Connection, OptionalExtension};

/// DescribeInstanceAttribute: one instance, its fields at the top of the answer as the API
/// reference shows them (DescribeInstances' item, plus NetworkOptions and its two flags).
pub(crate) fn describe_instance_attribute(conn: &Connection, env: &Env, id: &str) -> R<Node> {
    // The `_now` view, so a due transition shows completed exactly as DescribeInstances shows it.
    let sql = format!("SELECT {} FROM instances_now WHERE id=?1 AND account_id=?2 AND released=0", Instance::COLUMNS);
    let inst = conn
        .query_row(&sql, [id, env.account_id], Instance::from_row)
        .optional()?
        .filter(|i| env.region_id.is_none_or(|r| r == i.region_id))
        .ok_or(Code::InvalidInstanceIdNotFound)?;
    let mut out = crate::shapes::instance_node(&inst);
    out.push("EnableJumboFrame", false);
    out.push("EnableNetworkEncryption", false);
    out.push(
        "NetworkOptions",
        ecs_api::obj! {"BandwidthWeighting" => "", "EnableJumboFrame" => false, "EnableNetworkEncryption" => false},
    );
    Ok(out)
}

/// DescribeUserData: the UserData the instance was made with (base64, as given; "" if none).
pub(crate) fn describe_user_data(conn: &Connection, env: &Env, id: &str) -> R<Node> {
    let row: Option<(String, Option<String>)> = conn
        .query_row(
            "SELECT region_id, user_data FROM instances WHERE id=?1 AND account_id=?2 AND released=0",
            [id, env.account_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (region, data) =
        row.filter(|(r, _)| env.region_id.is_none_or(|want| want == r)).ok_or(Code::InvalidInstanceIdNotFound)?;
    Ok(ecs_api::obj! {"InstanceId" => id.to_string(), "RegionId" => region, "UserData" => data.unwrap_or_default()})
}

/// How much of a console GetInstanceConsoleOutput returns: its last 64 KiB.
const CONSOLE_BYTES: u64 = 64 * 1024;

/// GetInstanceConsoleOutput: the last [`CONSOLE_BYTES`] of the serial console of the
/// instance's VM (its latest start: each start begins an empty log; a reset keeps it), base64
/// encoded; RemoveSymbols strips terminal escape sequences. Without VMs, or before the first
/// start, the output is empty and LastUpdateTime too.
pub(crate) fn get_instance_console_output(conn: &Connection, env: &Env, id: &str, remove_symbols: bool) -> R<Node> {
    let region: Option<String> = conn
        .query_row(
            "SELECT region_id FROM instances WHERE id=?1 AND account_id=?2 AND released=0",
            [id, env.account_id],
            |r| r.get(0),
        )
        .optional()?;
    region.filter(|r| env.region_id.is_none_or(|want| want == r)).ok_or(Code::InvalidInstanceIdNotFound)?;
    let (bytes, at) = env.machines.as_ref().and_then(|m| m.console(id, CONSOLE_BYTES)).unwrap_or_default();
    let bytes = if remove_symbols { strip_symbols(&bytes) } else { bytes };
    use base64::Engine as _;
    let when = if bytes.is_empty() && at == 0 {
        String::new()
    } else {
        crate::shapes::TimeText::secs(at).as_str().to_string()
    };
    Ok(ecs_api::obj! {
        "InstanceId" => id.to_string(),
        "ConsoleOutput" => base64::engine::general_purpose::STANDARD.encode(&bytes),
        "LastUpdateTime" => when
    })
}

/// Console text without terminal escape sequences (ESC `[` ... final byte, ESC + one byte)
/// and without control bytes other than tab, line feed and carriage return.
fn strip_symbols(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            0x1b if b.get(i + 1) == Some(&b'[') => {
                i += 2;
                while i < b.len() && !(0x40..=0x7e).contains(&b[i]) {
                    i += 1;
                }
                i += 1;
            }
            0x1b => i += 2,
            c if c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r') => i += 1,
            0x7f => i += 1,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// One page of the caller's live instances in the region among `ids`, in the order given
/// (unknown ones are left out, as the list actions of the API reference do), with how many
/// there are; with no ids, a page of all of them, oldest first, read as every Describe* reads
/// its page (`Listing`), so the work is the page's, not the account's.
fn page_of(conn: &Connection, env: &Env, ids: &[String], (number, size): (u32, u32)) -> R<(Vec<String>, i64)> {
    if ids.is_empty() {
        let q = Listing::new("instance", "instances", "id", env, Scope::Own);
        let page = q.fetch(conn, &Paging::Pages { number, size }, |r| r.get(0))?;
        return Ok((page.items, page.total));
    }
    // At most 100 named (the parser's limit): each looked up by its key.
    let mut known = Vec::new();
    for id in ids {
        let found: Option<String> = conn
            .query_row(
                "SELECT region_id FROM instances WHERE id=?1 AND account_id=?2 AND released=0",
                [id, env.account_id],
                |r| r.get(0),
            )
            .optional()?;
        if found.is_some_and(|r| env.region_id.is_none_or(|want| want == r)) {
            known.push(id.clone());
        }
    }
    let start = (number.saturating_sub(1) as usize).saturating_mul(size as usize);
    let total = known.len() as i64;
    Ok((known.into_iter().skip(start).take(size as usize).collect(), total))
}

/// One page of instances as `{outer: {inner: [...]}}` with TotalCount, PageNumber and PageSize.
fn id_page(
    (ids, total): (Vec<String>, i64),
    (number, size): (u32, u32),
    (outer, inner): (&'static str, &'static str),
    item: impl Fn(&String) -> Node,
) -> Node {
    let page: Vec<Node> = ids.iter().map(item).collect();
    let mut out = Node::obj();
    out.push(outer, Node::wrapped(inner, page));
    out.push("TotalCount", total);
    out.push("PageNumber", number);
    out.push("PageSize", size);
    out
}

/// DescribeInstanceMaintenanceAttributes: every instance keeps ECS's defaults (no
/// maintenance notification, AutoRecover, no maintenance window), one page of the named ones.
pub(crate) fn describe_instance_maintenance_attributes(
    conn: &Connection,
    env: &Env,
    ids: &[String],
    page: (u32, u32),
) -> R<Node> {
    let ids = page_of(conn, env, ids, page)?;
    Ok(id_page(ids, page, ("MaintenanceAttributes", "MaintenanceAttribute"), |id| {
        ecs_api::obj! {
            "InstanceId" => id.clone(),
            "NotifyOnMaintenance" => false,
            "ActionOnMaintenance" => ecs_api::obj! {
                "Value" => "AutoRecover",
                "DefaultValue" => "AutoRecover",
                "SupportedValues" => Node::wrapped("SupportedValue", vec!["Stop".into(), "AutoRecover".into(), "AutoRedeploy".into()]),
            },
            "MaintenanceWindows" => Node::wrapped("MaintenanceWindow", vec![]),
        }
    }))
}

/// DescribeInstanceAttachmentAttributes: no instance here is matched to a private pool.
pub(crate) fn describe_instance_attachment_attributes(
    conn: &Connection,
    env: &Env,
    ids: &[String],
    page: (u32, u32),
) -> R<Node> {
    let ids = page_of(conn, env, ids, page)?;
    Ok(id_page(ids, page, ("Instances", "Instance"), |id| {
        ecs_api::obj! {"InstanceId" => id.clone(), "PrivatePoolOptionsId" => "", "PrivatePoolOptionsMatchCriteria" => "None"}
    }))
}

#[cfg(test)]
mod tests {
    use super::strip_symbols;

    #[test]
    fn remove_symbols_strips_escape_sequences_and_controls_only() {
        let raw = b"\x1b[0;32mOK\x1b[0m boot=1\r\n\x1bc\x07tab\there\x1b[";
        assert_eq!(strip_symbols(raw), b"OK boot=1\r\ntab\there".to_vec());
        assert_eq!(strip_symbols(b"plain\n"), b"plain\n".to_vec());
    }
}
