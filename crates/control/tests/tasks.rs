#![allow(clippy::unwrap_used, clippy::expect_used)]
//! ModifyDiskSpec and its task; DescribeTasks and DescribeTaskAttribute (issue 9).

mod common;

use common::Harness;
use ecs_api::Code;

const R: (&str, &str) = ("RegionId", "cn-hangzhou");

#[test]
fn modify_disk_spec_changes_the_spec_and_leaves_a_finished_task() {
    let h = Harness::new(0);
    let d = h.create_disk();
    h.wait("Available", || h.disk(&d));
    assert_eq!(h.disk(&d)["PerformanceLevel"], "PL1");
    // PL2 needs 461 GiB: this disk has 40.
    assert_eq!(h.err("ModifyDiskSpec", &[("DiskId", &d), ("PerformanceLevel", "PL2")]), Code::InvalidParameter);
    assert_eq!(h.err("ModifyDiskSpec", &[("DiskId", &d), ("PerformanceLevel", "PL9")]), Code::InvalidParameter);
    assert_eq!(
        h.err("ModifyDiskSpec", &[("DiskId", &d), ("DiskCategory", "ephemeral_ssd")]),
        Code::InvalidDiskCategoryValueNotSupported
    );
    assert_eq!(
        h.err("ModifyDiskSpec", &[("DiskId", "d-nope"), ("PerformanceLevel", "PL0")]),
        Code::InvalidDiskIdNotFound
    );
    assert_eq!(
        h.err("ModifyDiskSpec", &[("DiskId", &d), ("PerformanceLevel", "PL0"), ("DryRun", "true")]),
        Code::DryRunOperation
    );
    assert_eq!(h.disk(&d)["PerformanceLevel"], "PL1", "DryRun changes nothing");
    let t =
        h.ok("ModifyDiskSpec", &[("DiskId", &d), ("PerformanceLevel", "PL0")])["TaskId"].as_str().unwrap().to_string();
    assert_eq!(h.disk(&d)["PerformanceLevel"], "PL0");
    h.ok("ModifyDiskSpec", &[("DiskId", &d), ("DiskCategory", "cloud_ssd")]);
    let disk = h.disk(&d);
    assert_eq!((disk["Category"].as_str(), disk["PerformanceLevel"].as_str()), (Some("cloud_ssd"), Some("")));
    // A performance level is ESSD's only.
    assert_eq!(h.err("ModifyDiskSpec", &[("DiskId", &d), ("PerformanceLevel", "PL1")]), Code::InvalidParameter);

    let v = h.ok("DescribeTasks", &[R, ("TaskIds", &t)]);
    let task = &v["TaskSet"]["Task"][0];
    assert_eq!(
        (task["TaskAction"].as_str(), task["TaskStatus"].as_str(), task["ResourceId"].as_str()),
        (Some("ModifyDiskSpec"), Some("Finished"), Some(d.as_str()))
    );
    let all = h.ok("DescribeTasks", &[R, ("TaskAction", "ModifyDiskSpec")]);
    assert_eq!(all["TotalCount"], 2);
    let unfiltered = h.ok("DescribeTasks", &[R]);
    assert_eq!(unfiltered["TotalCount"], 2);
    let a = h.ok("DescribeTaskAttribute", &[R, ("TaskId", &t)]);
    assert_eq!(
        (a["TaskStatus"].as_str(), a["SuccessCount"].as_i64(), a["TaskProcess"].as_str()),
        (Some("Finished"), Some(1), Some("100%"))
    );
    assert_eq!(h.err("DescribeTaskAttribute", &[R, ("TaskId", "t-nope")]), Code::InvalidTaskIdNotFound);
    assert_eq!(h.err("DescribeTasks", &[R, ("TaskStatus", "Done")]), Code::InvalidParameter);
}
