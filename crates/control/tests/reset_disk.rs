#![allow(clippy::unwrap_used, clippy::expect_used)]
//! ResetDisk: every row of the documented error table from a real condition, in check order.

mod common;
use common::Harness;
use ecs_api::Code;
use serde_json::json;

fn reset(h: &Harness, d: &str, s: &str) -> Code {
    h.err("ResetDisk", &[("DiskId", d), ("SnapshotId", s)])
}

#[test]
fn parameters_region_and_existence() {
    let h = Harness::new(5);
    let (_, d, s) = h.stopped_with_snapshot();
    let e = h.call("ResetDisk", &[("SnapshotId", &s)]).unwrap_err();
    assert_eq!(
        e.message,
        "The input parameter \"DiskId\" that is mandatory for processing this request is not supplied."
    );
    assert_eq!(
        h.err("ResetDisk", &[("DiskId", &d), ("SnapshotId", &s), ("RegionId", "xx-nowhere-1")]),
        Code::InvalidRegionIdMalFormed
    );
    // A request that names another (valid) region does not see this region's disk.
    assert_eq!(
        h.err("ResetDisk", &[("DiskId", &d), ("SnapshotId", &s), ("RegionId", "cn-shanghai")]),
        Code::InvalidDiskIdNotFound
    );
    assert_eq!(reset(&h, "d-doesnotexist", &s), Code::InvalidDiskIdNotFound);
    assert_eq!(reset(&h, &d, "s-doesnotexist"), Code::InvalidSnapshotIdNotFound);
    // Another account sees nothing of ours.
    let other = h.admin("account-create", json!({}))["AccountId"].as_str().unwrap().to_string();
    let e = h.call_as(&other, "ResetDisk", &[("DiskId", &d), ("SnapshotId", &s)]).unwrap_err();
    assert_eq!(e.code, Code::InvalidDiskIdNotFound);
}

#[test]
fn account_conditions() {
    let h = Harness::new(5);
    let (_, d, s) = h.stopped_with_snapshot();
    h.admin("whitelist", json!({"Enforced": true}));
    assert_eq!(reset(&h, &d, &s), Code::UserNotInTheWhiteList);
    h.admin("whitelist", json!({"Add": [h.account]}));
    h.admin("snapshot-service", json!({"AccountId": h.account, "Open": false}));
    assert_eq!(reset(&h, &d, &s), Code::SnapshotServiceUnavailable);
    h.admin("snapshot-service", json!({"AccountId": h.account, "Open": true}));
    h.admin("account-billing", json!({"AccountId": h.account, "Balance": -1.0}));
    assert_eq!(reset(&h, &d, &s), Code::NotEnoughBalance);
    h.admin("account-billing", json!({"AccountId": h.account, "Balance": 0.0, "InArrears": true}));
    assert_eq!(reset(&h, &d, &s), Code::InstanceExpiredOrInArrears);
    h.admin("account-billing", json!({"AccountId": h.account, "InArrears": false}));
    h.ok("ResetDisk", &[("DiskId", &d), ("SnapshotId", &s)]);
}

#[test]
fn snapshot_conditions() {
    let h = Harness::new(5);
    let (i, d, s) = h.stopped_with_snapshot();
    // A snapshot of another disk of ours.
    let d2 = h.create_disk();
    h.wait("Available", || h.disk(&d2));
    let s2 = h.snapshot_of(&d2);
    assert_eq!(reset(&h, &d, &s2), Code::InvalidParameterMismatch);
    // A legacy snapshot from before 2013-07-15.
    let old = h
        .admin("snapshot-import", json!({"AccountId": h.account, "DiskId": d, "CreationTime": "2013-01-01T00:00:00Z"}));
    assert_eq!(reset(&h, &d, old["SnapshotId"].as_str().unwrap()), Code::InvalidSnapshotTooOld);
    // A snapshot whose storage failed.
    h.admin("fault-inject", json!({"Operation": "snapshot"}));
    let failed = h.ok("CreateSnapshot", &[("DiskId", &d)])["SnapshotId"].as_str().unwrap().to_string();
    assert_eq!(h.snapshot(&failed)["Status"], "failed");
    assert_eq!(reset(&h, &d, &failed), Code::OperationDenied);
    // A snapshot still progressing: NotReady for it, IncorrectDiskStatus for the disk's others.
    h.timings(60_000);
    let slow = h.ok("CreateSnapshot", &[("DiskId", &d)])["SnapshotId"].as_str().unwrap().to_string();
    assert_eq!(reset(&h, &d, &slow), Code::InvalidSnapshotIdNotReady);
    assert_eq!(reset(&h, &d, &s), Code::IncorrectDiskStatus);
    h.ok("DeleteSnapshot", &[("SnapshotId", &slow)]);
    h.timings(5);
    h.ok("ResetDisk", &[("DiskId", &d), ("SnapshotId", &s)]);
    let _ = i;
}

#[test]
fn local_disks_are_refused() {
    let h = Harness::new(5);
    let i = h.run_instance(&[("DataDisk.1.Size", "100"), ("DataDisk.1.Category", "ephemeral_ssd")]);
    h.wait("Running", || h.instance(&i));
    let disks = h.ok("DescribeDisks", &[("RegionId", "cn-hangzhou"), ("Category", "ephemeral_ssd")]);
    let local = disks["Disks"]["Disk"][0]["DiskId"].as_str().unwrap().to_string();
    assert_eq!(reset(&h, &local, "s-any"), Code::DiskCategoryOperationNotSupported);
    assert_eq!(h.err("CreateSnapshot", &[("DiskId", &local)]), Code::DiskCategoryOperationNotSupported);
}

#[test]
fn kms_conditions() {
    let h = Harness::new(5);
    let key = h.admin("kms-create", json!({"AccountId": h.account}))["KeyId"].as_str().unwrap().to_string();
    let d = h.ok(
        "CreateDisk",
        &[
            ("RegionId", "cn-hangzhou"),
            ("ZoneId", "cn-hangzhou-h"),
            ("Size", "40"),
            ("Encrypted", "true"),
            ("KMSKeyId", &key),
        ],
    );
    let d = d["DiskId"].as_str().unwrap().to_string();
    h.wait("Available", || h.disk(&d));
    assert_eq!(h.disk(&d)["Encrypted"], true);
    let s = h.snapshot_of(&d);
    assert_eq!(h.snapshot(&s)["Encrypted"], true);
    h.admin("kms-disable", json!({"KeyId": key}));
    assert_eq!(reset(&h, &d, &s), Code::KmsCmkNotEnabled);
    h.admin("kms-enable", json!({"KeyId": key}));
    h.admin("kms-ecs-access", json!({"AccountId": h.account, "Granted": false}));
    assert_eq!(reset(&h, &d, &s), Code::KmsUnauthorized);
    h.admin("kms-ecs-access", json!({"AccountId": h.account, "Granted": true}));
    h.ok("ResetDisk", &[("DiskId", &d), ("SnapshotId", &s)]);
    h.wait("Available", || h.disk(&d));
    h.admin("kms-delete", json!({"KeyId": key}));
    assert_eq!(reset(&h, &d, &s), Code::KmsNotFound);
}

#[test]
fn instance_conditions() {
    let h = Harness::new(5);
    let (i, d, s) = h.stopped_with_snapshot();
    h.admin("instance-lock", json!({"InstanceId": i}));
    assert_eq!(h.instance(&i)["OperationLocks"]["LockReason"][0]["LockReason"], "security");
    assert_eq!(reset(&h, &d, &s), Code::InstanceLockedForSecurity);
    h.admin("instance-unlock", json!({"InstanceId": i}));
    h.ok("StartInstance", &[("InstanceId", &i)]);
    h.wait("Running", || h.instance(&i));
    assert_eq!(reset(&h, &d, &s), Code::IncorrectInstanceStatus);
    h.ok("StopInstance", &[("InstanceId", &i)]);
    assert_eq!(reset(&h, &d, &s), Code::IncorrectInstanceStatus);
    h.wait("Stopped", || h.instance(&i));

    let p = h.run_instance(&[("InstanceChargeType", "PrePaid"), ("DataDisk.1.Size", "20")]);
    h.wait("Running", || h.instance(&p));
    let pd = h.ok("DescribeDisks", &[("RegionId", "cn-hangzhou"), ("InstanceId", &p), ("DiskType", "data")]);
    let pd = pd["Disks"]["Disk"][0]["DiskId"].as_str().unwrap().to_string();
    h.wait("In_use", || h.disk(&pd));
    let ps = h.snapshot_of(&pd);
    h.ok("StopInstance", &[("InstanceId", &p)]);
    h.wait("Stopped", || h.instance(&p));
    h.admin("instance-expire", json!({"InstanceId": p}));
    assert_eq!(reset(&h, &pd, &ps), Code::InstanceExpiredOrInArrears);
}

#[test]
fn disk_state_conflict_dry_run_and_storage_failure() {
    let h = Harness::new(5);
    let (_, d, s) = h.stopped_with_snapshot();
    let e = h.call("ResetDisk", &[("DiskId", &d), ("SnapshotId", &s), ("DryRun", "true")]).unwrap_err();
    assert_eq!((e.code, e.status()), (Code::DryRunOperation, 400));
    assert_eq!(h.disk(&d)["Status"], "In_use", "DryRun changes nothing");
    h.admin("fault-inject", json!({"Operation": "reset"}));
    let e = h.call("ResetDisk", &[("DiskId", &d), ("SnapshotId", &s)]).unwrap_err();
    assert_eq!((e.code.as_str(), e.status()), ("InternalError", 500));
    assert_eq!(h.disk(&d)["Status"], "In_use", "a failed reset leaves the disk as it was");
    h.timings(60_000);
    h.ok("ResetDisk", &[("DiskId", &d), ("SnapshotId", &s)]);
    assert_eq!(reset(&h, &d, &s), Code::OperationConflict);
    let d2 = h.create_disk();
    assert_eq!(h.disk(&d2)["Status"], "Creating");
    h.timings(5);
}

#[test]
fn attaching_disk_is_in_the_wrong_state() {
    let h = Harness::new(5);
    let (i, d, s) = h.stopped_with_snapshot();
    h.ok("DetachDisk", &[("DiskId", &d), ("InstanceId", &i)]);
    h.wait("Available", || h.disk(&d));
    h.timings(60_000);
    h.ok("AttachDisk", &[("DiskId", &d), ("InstanceId", &i)]);
    assert_eq!(reset(&h, &d, &s), Code::IncorrectDiskStatus);
}
