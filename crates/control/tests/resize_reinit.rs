#![allow(clippy::unwrap_used, clippy::expect_used)]
//! ResizeDisk and ReInitDisk through the control plane: states, response fields, and the
//! error rows of docs/api-compat.md §2.2 in their check order.

mod common;
use common::Harness;
use ecs_api::Code;

#[test]
fn resize_grows_and_refuses_what_the_reference_refuses() {
    let h = Harness::new(40);
    let d = h.create_disk();
    assert_eq!(h.err("ResizeDisk", &[("DiskId", &d), ("NewSize", "60")]), Code::OperationDeniedDiskStatus);
    h.wait("Available", || h.disk(&d));
    assert_eq!(h.err("ResizeDisk", &[("DiskId", &d), ("NewSize", "40")]), Code::ResizeDiskSizeTooSmall);
    assert_eq!(h.err("ResizeDisk", &[("DiskId", &d), ("NewSize", "39")]), Code::ResizeDiskSizeTooSmall);
    assert_eq!(h.err("ResizeDisk", &[("DiskId", &d), ("NewSize", "32769")]), Code::InvalidDiskSizeTooLarge);
    assert_eq!(h.err("ResizeDisk", &[("DiskId", "d-nope"), ("NewSize", "60")]), Code::InvalidDiskIdNotFound);
    // Online needs the disk on a Running instance.
    let online = [("DiskId", d.as_str()), ("NewSize", "60"), ("Type", "online")];
    assert_eq!(h.err("ResizeDisk", &online), Code::IncorrectDiskStatusOnlineResize);
    // Offline on an unattached disk: the state stays, the size changes; no OrderId (PostPaid).
    let v = h.ok("ResizeDisk", &[("DiskId", &d), ("NewSize", "60")]);
    assert!(v.get("OrderId").is_none(), "{v}");
    let v = h.disk(&d);
    assert_eq!((v["Size"].as_i64(), v["Status"].as_str()), (Some(60), Some("Available")));
    // A ClientToken replays the first answer instead of failing as TooSmall.
    let t = [("DiskId", d.as_str()), ("NewSize", "80"), ("ClientToken", "grow-80")];
    h.ok("ResizeDisk", &t);
    h.ok("ResizeDisk", &t);
    assert_eq!(h.disk(&d)["Size"], 80);
    let other = [("DiskId", d.as_str()), ("NewSize", "90"), ("ClientToken", "grow-80")];
    assert_eq!(h.err("ResizeDisk", &other), Code::IdempotentParameterMismatch);

    // Attached to a Running instance: online works; a snapshot in progress blocks.
    let i = h.run_instance(&[]);
    h.wait("Running", || h.instance(&i));
    h.ok("AttachDisk", &[("DiskId", &d), ("InstanceId", &i)]);
    h.wait("In_use", || h.disk(&d));
    h.ok("ResizeDisk", &[("DiskId", &d), ("NewSize", "100"), ("Type", "online")]);
    assert_eq!(h.disk(&d)["Size"], 100);
    h.timings(100_000);
    h.ok("CreateSnapshot", &[("DiskId", &d)]);
    assert_eq!(h.err("ResizeDisk", &[("DiskId", &d), ("NewSize", "120")]), Code::DiskCreatingSnapshotNotCompleted);
    h.timings(40);

    // Stopped: offline works, online does not.
    let h2 = Harness::new(0);
    let i = h2.run_instance(&[("DataDisk.1.Size", "20")]);
    h2.wait("Running", || h2.instance(&i));
    h2.ok("StopInstance", &[("InstanceId", &i)]);
    h2.wait("Stopped", || h2.instance(&i));
    let disks = h2.ok("DescribeDisks", &[("RegionId", "cn-hangzhou"), ("InstanceId", &i), ("DiskType", "data")]);
    let dd = disks["Disks"]["Disk"][0]["DiskId"].as_str().unwrap().to_string();
    let online = [("DiskId", dd.as_str()), ("NewSize", "30"), ("Type", "online")];
    assert_eq!(h2.err("ResizeDisk", &online), Code::IncorrectInstanceStatusOnlineResize);
    h2.ok("ResizeDisk", &[("DiskId", &dd), ("NewSize", "30")]);
    // A local disk's category does not support it.
    let i = h2.run_instance(&[("DataDisk.1.Size", "20"), ("DataDisk.1.Category", "ephemeral_ssd")]);
    let disks = h2.ok("DescribeDisks", &[("RegionId", "cn-hangzhou"), ("InstanceId", &i), ("DiskType", "data")]);
    let local = disks["Disks"]["Disk"][0]["DiskId"].as_str().unwrap().to_string();
    assert_eq!(h2.err("ResizeDisk", &[("DiskId", &local), ("NewSize", "30")]), Code::OperationDeniedDiskType);
    // A store failure leaves the old size.
    h2.admin("fault-inject", serde_json::json!({"Operation": "resize"}));
    assert_eq!(h2.err("ResizeDisk", &[("DiskId", &dd), ("NewSize", "50")]), Code::InternalError);
    assert_eq!(h2.disk(&dd)["Size"], 30);
    h2.ok("ResizeDisk", &[("DiskId", &dd), ("NewSize", "50")]);
    assert_eq!(h2.disk(&dd)["Size"], 50);
}

#[test]
fn reinit_needs_a_stopped_instance_and_goes_reiniting() {
    let h = Harness::new(60);
    let i = h.run_instance(&[("DataDisk.1.Size", "20")]);
    h.wait("Running", || h.instance(&i));
    let disks = h.ok("DescribeDisks", &[("RegionId", "cn-hangzhou"), ("InstanceId", &i), ("DiskType", "data")]);
    let d = disks["Disks"]["Disk"][0]["DiskId"].as_str().unwrap().to_string();
    h.wait("In_use", || h.disk(&d));
    assert_eq!(h.err("ReInitDisk", &[("DiskId", &d)]), Code::IncorrectInstanceStatus);
    assert_eq!(h.err("ReInitDisk", &[("DiskId", "d-nope")]), Code::InvalidDiskIdNotFound);
    assert_eq!(h.err("ReInitDisk", &[("DiskId", &d), ("Password", "weak")]), Code::InvalidPasswordMalformed);
    h.ok("StopInstance", &[("InstanceId", &i)]);
    h.wait("Stopped", || h.instance(&i));
    let v = h.ok("ReInitDisk", &[("DiskId", &d), ("Password", "EcsV587!"), ("AutoStartInstance", "false")]);
    assert_eq!(v, serde_json::json!({}));
    assert_eq!(h.disk(&d)["Status"], "ReIniting");
    assert_eq!(h.err("ReInitDisk", &[("DiskId", &d)]), Code::IncorrectDiskStatus);
    assert_eq!(h.err("StartInstance", &[("InstanceId", &i)]), Code::DiskError);
    h.wait("In_use", || h.disk(&d));
    // The system disk of a public image returns to it (empty).
    let sys = h.ok("DescribeDisks", &[("RegionId", "cn-hangzhou"), ("InstanceId", &i), ("DiskType", "system")]);
    let sys = sys["Disks"]["Disk"][0]["DiskId"].as_str().unwrap().to_string();
    h.ok("ReInitDisk", &[("DiskId", &sys)]);
    h.wait("In_use", || h.disk(&sys));
    // Unattached: IncorrectDiskStatus.
    h.ok("DetachDisk", &[("DiskId", &d), ("InstanceId", &i)]);
    h.wait("Available", || h.disk(&d));
    assert_eq!(h.err("ReInitDisk", &[("DiskId", &d)]), Code::IncorrectDiskStatus);

    // Never started (CreateInstance leaves it Stopped).
    let c = h.ok(
        "CreateInstance",
        &[("RegionId", "cn-hangzhou"), ("ImageId", "blank_x64_20G.vhd"), ("InstanceType", "ecs.g7.large")],
    );
    let ci = c["InstanceId"].as_str().unwrap().to_string();
    h.wait("Stopped", || h.instance(&ci));
    let sys = h.ok("DescribeDisks", &[("RegionId", "cn-hangzhou"), ("InstanceId", &ci), ("DiskType", "system")]);
    let sys = sys["Disks"]["Disk"][0]["DiskId"].as_str().unwrap().to_string();
    h.wait("In_use", || h.disk(&sys));
    assert_eq!(h.err("ReInitDisk", &[("DiskId", &sys)]), Code::IncorrectInstanceStatus);
}

#[test]
fn reinit_of_a_disk_whose_source_is_gone_is_refused() {
    let h = Harness::new(0);
    let (i, d, s) = h.stopped_with_snapshot();
    // A disk made from the snapshot, on the same instance.
    let v = h.ok("CreateDisk", &[("RegionId", "cn-hangzhou"), ("ZoneId", "cn-hangzhou-h"), ("SnapshotId", &s)]);
    let clone = v["DiskId"].as_str().unwrap().to_string();
    h.wait("Available", || h.disk(&clone));
    h.ok("AttachDisk", &[("DiskId", &clone), ("InstanceId", &i)]);
    h.wait("In_use", || h.disk(&clone));
    h.ok("ReInitDisk", &[("DiskId", &clone)]);
    h.wait("In_use", || h.disk(&clone));
    h.ok("DeleteSnapshot", &[("SnapshotId", &s), ("Force", "true")]);
    assert_eq!(h.err("ReInitDisk", &[("DiskId", &clone)]), Code::InvalidSourceSnapshot);
    // A store failure leaves the disk as it was.
    h.admin("fault-inject", serde_json::json!({"Operation": "reset"}));
    assert_eq!(h.err("ReInitDisk", &[("DiskId", &d)]), Code::InternalError);
    assert_eq!(h.disk(&d)["Status"], "In_use");
    h.ok("ReInitDisk", &[("DiskId", &d)]);
}
