#![allow(clippy::unwrap_used, clippy::expect_used)]
//! CopySnapshot (issue 9): within the region and across regions, O(1) in the store; the copy
//! outlives its source and can restore the source disk.

mod common;

use common::Harness;
use ecs_api::Code;
use serde_json::Value;

fn snap_in(h: &Harness, region: &str, id: &str) -> Value {
    let v = h.ok("DescribeSnapshots", &[("RegionId", region), ("SnapshotIds", &format!("[\"{id}\"]"))]);
    v["Snapshots"]["Snapshot"][0].clone()
}

#[test]
fn copies_land_in_their_region_outlive_the_source_and_restore_the_disk() {
    let h = Harness::new(20);
    let (i, d, s) = h.stopped_with_snapshot();
    let r = ("RegionId", "cn-hangzhou");
    // Across regions.
    let far = h.ok(
        "CopySnapshot",
        &[r, ("SnapshotId", &s), ("DestinationRegionId", "cn-shanghai"), ("DestinationSnapshotName", "far-copy")],
    )["SnapshotId"]
        .as_str()
        .unwrap()
        .to_string();
    // A copy under way is not a snapshot of the source disk: the disk may take one meanwhile.
    let own = h.ok("CreateSnapshot", &[("DiskId", &d)])["SnapshotId"].as_str().unwrap().to_string();
    h.wait("accomplished", || h.snapshot(&own));
    h.wait("accomplished", || snap_in(&h, "cn-shanghai", &far));
    let c = snap_in(&h, "cn-shanghai", &far);
    assert_eq!((c["SourceSnapshotId"].as_str(), c["SourceRegionId"].as_str()), (Some(s.as_str()), Some("cn-hangzhou")));
    assert_eq!((c["SnapshotName"].as_str(), c["SourceDiskId"].as_str()), (Some("far-copy"), Some(d.as_str())));
    assert!(snap_in(&h, "cn-hangzhou", &far).is_null(), "the copy is in the destination region only");
    // Within the region; the source goes, the copy stays and restores the disk.
    let near = h.ok("CopySnapshot", &[r, ("SnapshotId", &s), ("DestinationRegionId", "cn-hangzhou")])["SnapshotId"]
        .as_str()
        .unwrap()
        .to_string();
    h.wait("accomplished", || h.snapshot(&near));
    h.ok("DeleteSnapshot", &[("SnapshotId", &s)]);
    h.ok("ResetDisk", &[("DiskId", &d), ("SnapshotId", &near)]);
    h.wait("In_use", || h.disk(&d));
    let _ = i;
    // Refusals.
    let code = |p: &[(&str, &str)]| h.err("CopySnapshot", p);
    assert_eq!(code(&[r, ("SnapshotId", &s), ("DestinationRegionId", "cn-hangzhou")]), Code::InvalidSnapshotIdNotFound);
    assert_eq!(code(&[r, ("SnapshotId", &near), ("DestinationRegionId", "mars-1")]), Code::InvalidParameter);
    assert_eq!(code(&[r, ("SnapshotId", &near)]), Code::MissingParameter);
    let busy = h.ok("CreateSnapshot", &[("DiskId", &d)])["SnapshotId"].as_str().unwrap().to_string();
    assert_eq!(
        code(&[r, ("SnapshotId", &busy), ("DestinationRegionId", "cn-hangzhou")]),
        Code::InvalidSnapshotIdNotReady
    );
}
