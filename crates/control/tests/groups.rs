#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Snapshot groups and ResetDisks through the control plane (issue 9): members, derived
//! status, filters and NextToken paging, include/exclude lists, the all-or-nothing reset and
//! deletion. (The one-point-in-time property is the store's: crates/store/tests/group.rs.)

mod common;

use common::Harness;
use ecs_api::Code;
use serde_json::Value;

const R: (&str, &str) = ("RegionId", "cn-hangzhou");

fn groups(h: &Harness, extra: &[(&str, &str)]) -> Value {
    let mut p = vec![R];
    p.extend_from_slice(extra);
    h.ok("DescribeSnapshotGroups", &p)
}

fn group(h: &Harness, id: &str) -> Value {
    groups(h, &[("SnapshotGroupId.1", id)])["SnapshotGroups"]["SnapshotGroup"][0].clone()
}

fn disks_of(h: &Harness, i: &str) -> Vec<String> {
    let v = h.ok("DescribeDisks", &[R, ("InstanceId", i)]);
    v["Disks"]["Disk"].as_array().unwrap().iter().map(|d| d["DiskId"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_group_holds_one_snapshot_per_disk_and_is_accomplished_when_they_are() {
    let h = Harness::new(30);
    let i = h.run_instance(&[("DataDisk.1.Size", "20"), ("DataDisk.2.Size", "20")]);
    h.wait("Running", || h.instance(&i));
    let disks = disks_of(&h, &i);
    for d in &disks {
        h.wait("In_use", || h.disk(d));
    }
    let g = h.ok("CreateSnapshotGroup", &[R, ("InstanceId", &i), ("Name", "golden")])["SnapshotGroupId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(g.starts_with("ssg-"));
    let v = group(&h, &g);
    assert_eq!(v["InstanceId"], i.as_str());
    assert_eq!(v["Name"], "golden");
    let members = v["Snapshots"]["Snapshot"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    let mut sources: Vec<String> = members.iter().map(|m| m["SourceDiskId"].as_str().unwrap().to_string()).collect();
    sources.sort();
    let mut want = disks.clone();
    want.sort();
    assert_eq!(sources, want);
    h.wait("accomplished", || group(&h, &g));
    let v = group(&h, &g);
    assert!(
        v["Snapshots"]["Snapshot"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["Available"] == true && m["Progress"] == "100%")
    );
    // Each member is an ordinary snapshot of its disk.
    let s = v["Snapshots"]["Snapshot"][0]["SnapshotId"].as_str().unwrap();
    assert_eq!(h.snapshot(s)["Status"], "accomplished");
    // A second group while none is progressing; include and exclude lists.
    let only = h.ok("CreateSnapshotGroup", &[R, ("InstanceId", &i), ("DiskId.1", &disks[1]), ("DiskId.2", &disks[2])]);
    let only = only["SnapshotGroupId"].as_str().unwrap().to_string();
    assert_eq!(group(&h, &only)["Snapshots"]["Snapshot"].as_array().unwrap().len(), 2);
    // Another snapshot of those disks is under way: refused until it is done.
    let e = h.err("CreateSnapshotGroup", &[R, ("InstanceId", &i), ("ExcludeDiskId.1", &disks[0])]);
    assert_eq!(e, Code::IncorrectDiskStatusCreatingSnapshot);
    h.wait("accomplished", || group(&h, &only));
    let ex = h.ok("CreateSnapshotGroup", &[R, ("InstanceId", &i), ("ExcludeDiskId.1", &disks[0])]);
    let ex = ex["SnapshotGroupId"].as_str().unwrap().to_string();
    assert!(
        !group(&h, &ex)["Snapshots"]["Snapshot"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["SourceDiskId"] == disks[0].as_str())
    );

    // Refusals.
    assert_eq!(h.err("CreateSnapshotGroup", &[R, ("InstanceId", "i-nope")]), Code::InvalidInstanceIdNotFound);
    assert_eq!(
        h.err("CreateSnapshotGroup", &[R, ("InstanceId", &i), ("DiskId.1", "d-nope")]),
        Code::InvalidDiskIdNotFound
    );
    let other = h.create_disk();
    assert_eq!(
        h.err("CreateSnapshotGroup", &[R, ("InstanceId", &i), ("DiskId.1", &other)]),
        Code::InvalidDiskIdNotFound
    );

    // Filters: by instance and by status.
    let by_inst = groups(&h, &[("InstanceId", &i)]);
    assert_eq!(by_inst["SnapshotGroups"]["SnapshotGroup"].as_array().unwrap().len(), 3);
    let none = groups(&h, &[("InstanceId", &i), ("Status.1", "failed")]);
    assert!(none["SnapshotGroups"]["SnapshotGroup"].as_array().unwrap().is_empty());

    // DeleteSnapshotGroup takes its snapshots with it.
    let v = h.ok("DeleteSnapshotGroup", &[R, ("SnapshotGroupId", &g)]);
    assert_eq!(v["OperationProgressSet"]["OperationProgress"][0]["OperationStatus"], "Success");
    assert!(groups(&h, &[("SnapshotGroupId.1", &g)])["SnapshotGroups"]["SnapshotGroup"].as_array().unwrap().is_empty());
    let gone = h.ok("DescribeSnapshots", &[R, ("SnapshotIds", &format!("[\"{s}\"]"))]);
    assert!(gone["Snapshots"]["Snapshot"].as_array().unwrap().is_empty());
    assert_eq!(h.err("DeleteSnapshotGroup", &[R, ("SnapshotGroupId", &g)]), Code::InvalidSnapshotGroupIdNotFound);
}

#[test]
fn next_token_pages_through_groups() {
    let h = Harness::new(0);
    let i = h.run_instance(&[]);
    h.wait("Running", || h.instance(&i));
    let mut made = Vec::new();
    for _ in 0..12 {
        let g = h.ok("CreateSnapshotGroup", &[R, ("InstanceId", &i)])["SnapshotGroupId"].as_str().unwrap().to_string();
        h.wait("accomplished", || group(&h, &g));
        made.push(g);
    }
    let first = groups(&h, &[("MaxResults", "10")]);
    let token = first["NextToken"].as_str().unwrap().to_string();
    assert!(!token.is_empty());
    let second = groups(&h, &[("MaxResults", "10"), ("NextToken", &token)]);
    assert_eq!(second["NextToken"], "");
    let seen: Vec<String> = [first, second]
        .iter()
        .flat_map(|p| p["SnapshotGroups"]["SnapshotGroup"].as_array().unwrap().clone())
        .map(|g| g["SnapshotGroupId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, made);
    assert_eq!(h.err("DescribeSnapshotGroups", &[R, ("NextToken", "garbage")]), Code::InvalidParameter);
}

#[test]
fn reset_disks_is_all_or_nothing() {
    let h = Harness::new(0);
    let i = h.run_instance(&[("DataDisk.1.Size", "20")]);
    h.wait("Running", || h.instance(&i));
    let disks = disks_of(&h, &i);
    for d in &disks {
        h.wait("In_use", || h.disk(d));
    }
    let g = h.ok("CreateSnapshotGroup", &[R, ("InstanceId", &i)])["SnapshotGroupId"].as_str().unwrap().to_string();
    h.wait("accomplished", || group(&h, &g));
    let members: Vec<(String, String)> = group(&h, &g)["Snapshots"]["Snapshot"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["SourceDiskId"].as_str().unwrap().to_string(), m["SnapshotId"].as_str().unwrap().to_string()))
        .collect();
    let params = |pairs: &[(String, String)]| -> Vec<(String, String)> {
        let mut p = vec![("RegionId".to_string(), "cn-hangzhou".to_string())];
        for (n, (d, s)) in pairs.iter().enumerate() {
            p.push((format!("Disk.{}.DiskId", n + 1), d.clone()));
            p.push((format!("Disk.{}.SnapshotId", n + 1), s.clone()));
        }
        p
    };
    let call = |pairs: &[(String, String)], extra: &[(&str, &str)]| {
        let mut p = params(pairs);
        p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let refs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        h.call("ResetDisks", &refs)
    };
    // The instance runs: refused, nothing changes.
    assert_eq!(call(&members, &[]).unwrap_err().code, Code::IncorrectInstanceStatus);
    h.ok("StopInstance", &[("InstanceId", &i)]);
    h.wait("Stopped", || h.instance(&i));
    // One bad pair (a snapshot of another disk) refuses the whole request.
    let crossed = vec![members[0].clone(), (members[1].0.clone(), members[0].1.clone())];
    assert_eq!(call(&crossed, &[]).unwrap_err().code, Code::InvalidParameterMismatch);
    for d in &disks {
        assert_eq!(h.disk(d)["Status"], "In_use", "a refused ResetDisks touches no disk");
    }
    assert_eq!(call(&members, &[("DryRun", "true")]).unwrap_err().code, Code::DryRunOperation);
    let v = call(&members, &[]).unwrap();
    let ops = v["OperationProgressSet"]["OperationProgress"].as_array().unwrap();
    assert_eq!(ops.len(), 2);
    assert!(ops.iter().all(|o| o["OperationStatus"] == "Success"));
    for d in &disks {
        h.wait("In_use", || h.disk(d));
    }
}

#[test]
fn disk_ids_alone_span_instances_in_a_zone_and_delete_keeps_what_images_use() {
    let h = Harness::new(0);
    let i1 = h.run_instance(&[("DataDisk.1.Size", "20")]);
    let i2 = h.run_instance(&[("DataDisk.1.Size", "20")]);
    h.wait("Running", || h.instance(&i1));
    h.wait("Running", || h.instance(&i2));
    let d1 = disks_of(&h, &i1).into_iter().find(|d| h.disk(d)["Type"] == "data").unwrap();
    let d2 = disks_of(&h, &i2).into_iter().find(|d| h.disk(d)["Type"] == "data").unwrap();
    for d in [&d1, &d2] {
        h.wait("In_use", || h.disk(d));
    }
    let g = h.ok("CreateSnapshotGroup", &[R, ("DiskId.1", &d1), ("DiskId.2", &d2)])["SnapshotGroupId"]
        .as_str()
        .unwrap()
        .to_string();
    h.wait("accomplished", || group(&h, &g));
    let v = group(&h, &g);
    assert_eq!(v["InstanceId"], "");
    assert_eq!(v["Snapshots"]["Snapshot"].as_array().unwrap().len(), 2);
    // Not both lists; neither InstanceId nor DiskId; ESSD only.
    let both = [R, ("InstanceId", i1.as_str()), ("DiskId.1", d1.as_str()), ("ExcludeDiskId.1", d1.as_str())];
    assert_eq!(h.err("CreateSnapshotGroup", &both), Code::InvalidParameter);
    assert_eq!(h.err("CreateSnapshotGroup", &[R]), Code::MissingParameter);
    let ssd = h.ok("CreateDisk", &[R, ("ZoneId", "cn-hangzhou-h"), ("Size", "20"), ("DiskCategory", "cloud_ssd")]);
    let ssd = ssd["DiskId"].as_str().unwrap().to_string();
    h.wait("Available", || h.disk(&ssd));
    assert_eq!(h.err("CreateSnapshotGroup", &[R, ("DiskId.1", &ssd)]), Code::DiskCategoryOperationNotSupported);
    // A member an image was made from outlives DeleteSnapshotGroup.
    let kept = v["Snapshots"]["Snapshot"][0]["SnapshotId"].as_str().unwrap().to_string();
    h.ok("CreateImage", &[R, ("SnapshotId", &kept)]);
    h.ok("DeleteSnapshotGroup", &[R, ("SnapshotGroupId", &g)]);
    assert_eq!(h.snapshot(&kept)["Status"], "accomplished");
}
