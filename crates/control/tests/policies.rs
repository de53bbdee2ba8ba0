#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Automatic snapshot policies with a test clock (issue 9): the scheduler takes one snapshot
//! per schedule point, catches a missed stretch up once, survives a restart, marks its
//! snapshots `auto` and deletes them after RetentionDays.

mod common;

use common::Harness;
use ecs_api::Code;
use serde_json::Value;

const R: (&str, &str) = ("regionId", "cn-hangzhou");
const DAY: i64 = 86_400_000;

fn policy(h: &Harness, id: &str) -> Value {
    let v = h.ok("DescribeAutoSnapshotPolicyEx", &[("RegionId", "cn-hangzhou"), ("AutoSnapshotPolicyId", id)]);
    v["AutoSnapshotPolicies"]["AutoSnapshotPolicy"][0].clone()
}

/// DescribeSnapshots SnapshotType=auto (every one it lists must be automatic).
fn autos(h: &Harness, disk: &str) -> Vec<Value> {
    let p = [("RegionId", "cn-hangzhou"), ("DiskId", disk), ("PageSize", "100"), ("SnapshotType", "auto")];
    let v = h.ok("DescribeSnapshots", &p);
    let all = v["Snapshots"]["Snapshot"].as_array().unwrap().clone();
    assert!(all.iter().all(|s| s["SnapshotType"] == "auto"));
    all
}

#[test]
fn the_schedule_takes_snapshots_catches_up_once_and_expires_them() {
    let h = Harness::new(0);
    let d = h.create_disk();
    h.wait("Available", || h.disk(&d));
    let every_day = "[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\"]";
    let v = h.ok(
        "CreateAutoSnapshotPolicy",
        &[
            R,
            ("timePoints", "[\"2\"]"),
            ("repeatWeekdays", every_day),
            ("retentionDays", "3"),
            ("autoSnapshotPolicyName", "nightly"),
        ],
    );
    let sp = v["AutoSnapshotPolicyId"].as_str().unwrap().to_string();
    let p = policy(&h, &sp);
    assert_eq!(
        (p["TimePoints"].as_str(), p["RetentionDays"].as_i64(), p["DiskNums"].as_i64()),
        (Some("[\"2\"]"), Some(3), Some(0))
    );
    h.ok("ApplyAutoSnapshotPolicy", &[R, ("autoSnapshotPolicyId", &sp), ("diskIds", &format!("[\"{d}\"]"))]);
    assert_eq!(policy(&h, &sp)["DiskNums"], 1);
    let disk = h.disk(&d);
    assert_eq!(
        (disk["AutoSnapshotPolicyId"].as_str(), disk["EnableAutomatedSnapshotPolicy"].as_bool()),
        (Some(sp.as_str()), Some(true))
    );

    let t0 = control::model::now_ms();
    // Nothing is due before the next 02:00 (UTC+8) after the policy was applied.
    assert!(h.control.run_auto_snapshots(t0).unwrap().taken.is_empty());
    // A user snapshot is not listed as automatic.
    h.snapshot_of(&d);
    assert!(autos(&h, &d).is_empty());
    // Ten days later: ten points were missed; exactly one snapshot catches them up.
    let t1 = t0 + 10 * DAY;
    assert_eq!(h.control.run_auto_snapshots(t1).unwrap().taken.len(), 1);
    assert!(h.control.run_auto_snapshots(t1).unwrap().taken.is_empty(), "one point, one snapshot");
    let a = autos(&h, &d);
    assert_eq!(a.len(), 1);
    assert!(a[0]["SnapshotName"].as_str().unwrap().starts_with("auto_"), "{}", a[0]);
    // The schedule survives a restart.
    let h = h.reopen();
    assert!(h.control.run_auto_snapshots(t1 + 1000).unwrap().taken.is_empty());
    // The next day's point: another; four days on, the first has expired (RetentionDays 3).
    assert_eq!(h.control.run_auto_snapshots(t1 + DAY).unwrap().taken.len(), 1);
    let run = h.control.run_auto_snapshots(t1 + 4 * DAY - 1000).unwrap();
    assert_eq!((run.taken.len(), run.deleted.len()), (1, 1));
    assert_eq!(run.deleted[0], a[0]["SnapshotId"].as_str().unwrap());
    assert_eq!(autos(&h, &d).len(), 2);

    // Modify, Cancel, Delete.
    h.ok(
        "ModifyAutoSnapshotPolicyEx",
        &[R, ("autoSnapshotPolicyId", &sp), ("retentionDays", "-1"), ("timePoints", "[\"3\",\"15\"]")],
    );
    let p = policy(&h, &sp);
    assert_eq!((p["TimePoints"].as_str(), p["RetentionDays"].as_i64()), (Some("[\"3\",\"15\"]"), Some(-1)));
    h.ok("CancelAutoSnapshotPolicy", &[R, ("diskIds", &format!("[\"{d}\"]"))]);
    assert_eq!(h.disk(&d)["AutoSnapshotPolicyId"], "");
    assert!(h.control.run_auto_snapshots(t1 + 9 * DAY).unwrap().taken.is_empty());
    h.ok("DeleteAutoSnapshotPolicy", &[R, ("autoSnapshotPolicyId", &sp)]);
    let e = h.err("ApplyAutoSnapshotPolicy", &[R, ("autoSnapshotPolicyId", &sp), ("diskIds", &format!("[\"{d}\"]"))]);
    assert_eq!(e, Code::ParameterInvalidAutoSnapshotPolicyId);
    let e = h.err("ApplyAutoSnapshotPolicy", &[R, ("autoSnapshotPolicyId", "sp-nope"), ("diskIds", "[\"d-x\"]")]);
    assert_eq!(e, Code::ParameterInvalidAutoSnapshotPolicyId);
    let listed = h.ok("DescribeAutoSnapshotPolicyEx", &[("RegionId", "cn-hangzhou")]);
    assert_eq!(listed["TotalCount"], 0);
}
