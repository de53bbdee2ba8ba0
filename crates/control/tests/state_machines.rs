#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every transition of the disk, instance and snapshot state machines (notes §4).

mod common;
use common::Harness;
use ecs_api::Code;

#[test]
fn disk_create_attach_detach_delete() {
    let h = Harness::new(40);
    let d = h.create_disk();
    assert_eq!(h.disk(&d)["Status"], "Creating");
    h.wait("Available", || h.disk(&d));
    let i = h.run_instance(&[]);
    h.wait("Running", || h.instance(&i));
    h.ok("AttachDisk", &[("DiskId", &d), ("InstanceId", &i)]);
    let v = h.disk(&d);
    assert_eq!(v["Status"], "Attaching");
    let v = h.wait("In_use", || h.disk(&d));
    assert_eq!(v["InstanceId"], i.as_str());
    assert_eq!(v["Device"], "/dev/xvdb");
    assert_eq!(h.err("DeleteDisk", &[("DiskId", &d)]), Code::DiskStillAttached);
    h.ok("DetachDisk", &[("DiskId", &d), ("InstanceId", &i)]);
    assert_eq!(h.disk(&d)["Status"], "Detaching");
    let v = h.wait("Available", || h.disk(&d));
    assert_eq!(v["InstanceId"], "");
    assert_eq!(v["DeleteWithInstance"], false);
    h.ok("DeleteDisk", &[("DiskId", &d)]);
    assert!(h.disk(&d).is_null());
    // Deleting again is ignored, as documented; describing it finds nothing; using it says so.
    h.ok("DeleteDisk", &[("DiskId", &d)]);
    assert_eq!(h.err("ResetDisk", &[("DiskId", &d), ("SnapshotId", "s-x")]), Code::DiskNotFound);
}

#[test]
fn instance_run_stop_start_and_create() {
    let h = Harness::new(40);
    let i = h.run_instance(&[("DataDisk.1.Size", "20")]);
    assert_eq!(h.instance(&i)["Status"], "Pending");
    h.wait("Starting", || h.instance(&i));
    let v = h.wait("Running", || h.instance(&i));
    assert_eq!(v["Cpu"], 2);
    assert_eq!(v["Memory"], 8192);
    let disks = h.ok("DescribeDisks", &[("RegionId", "cn-hangzhou"), ("InstanceId", &i)]);
    let disks = disks["Disks"]["Disk"].as_array().unwrap().clone();
    assert_eq!(disks.len(), 2);
    for d in &disks {
        let id = d["DiskId"].as_str().unwrap().to_string();
        h.wait("In_use", || h.disk(&id));
    }
    assert_eq!(h.err("StartInstance", &[("InstanceId", &i)]), Code::IncorrectInstanceStatus);
    h.ok("StopInstance", &[("InstanceId", &i)]);
    assert_eq!(h.instance(&i)["Status"], "Stopping");
    h.wait("Stopped", || h.instance(&i));
    h.ok("StartInstance", &[("InstanceId", &i)]);
    assert_eq!(h.instance(&i)["Status"], "Starting");
    h.wait("Running", || h.instance(&i));

    let c = h.ok(
        "CreateInstance",
        &[("RegionId", "cn-hangzhou"), ("ImageId", "blank_x64_20G.vhd"), ("InstanceType", "ecs.c7.large")],
    );
    let c = c["InstanceId"].as_str().unwrap().to_string();
    assert_eq!(h.instance(&c)["Status"], "Pending");
    h.wait("Stopped", || h.instance(&c));
}

#[test]
fn batch_start_stop_reports_each_instance() {
    let h = Harness::new(10);
    let a = h.run_instance(&[]);
    h.wait("Running", || h.instance(&a));
    let v = h.ok("StopInstances", &[("RegionId", "cn-hangzhou"), ("InstanceId.1", &a), ("InstanceId.2", "i-nope")]);
    let r = &v["InstanceResponses"]["InstanceResponse"];
    assert_eq!(r[0]["Code"], "200");
    assert_eq!(r[0]["PreviousStatus"], "Running");
    assert_eq!(r[0]["CurrentStatus"], "Stopping");
    assert_eq!(r[1]["Code"], "InvalidInstanceId.NotFound");
    h.wait("Stopped", || h.instance(&a));
    let v = h.ok("StartInstances", &[("RegionId", "cn-hangzhou"), ("InstanceId.1", &a)]);
    assert_eq!(v["InstanceResponses"]["InstanceResponse"][0]["CurrentStatus"], "Starting");
}

#[test]
fn snapshot_progress_then_accomplished() {
    let h = Harness::new(300);
    let d = h.create_disk();
    h.wait("Available", || h.disk(&d));
    let s = h.ok("CreateSnapshot", &[("DiskId", &d)])["SnapshotId"].as_str().unwrap().to_string();
    let v = h.snapshot(&s);
    assert_eq!(v["Status"], "progressing");
    assert_eq!(v["Available"], false);
    assert_eq!(h.err("CreateSnapshot", &[("DiskId", &d)]), Code::IncorrectDiskStatusCreatingSnapshot);
    let v = h.wait("accomplished", || h.snapshot(&s));
    assert_eq!(v["Progress"], "100%");
    assert_eq!(v["SourceDiskId"], d.as_str());
}

#[test]
fn reset_goes_reiniting_and_back_to_the_previous_state() {
    let h = Harness::new(60);
    let (i, d, s) = h.stopped_with_snapshot();
    h.ok("ResetDisk", &[("DiskId", &d), ("SnapshotId", &s)]);
    assert_eq!(h.disk(&d)["Status"], "ReIniting");
    assert_eq!(h.err("StartInstance", &[("InstanceId", &i)]), Code::DiskError);
    h.wait("In_use", || h.disk(&d));
    // Unattached disks come back Available.
    h.ok("DetachDisk", &[("DiskId", &d), ("InstanceId", &i)]);
    h.wait("Available", || h.disk(&d));
    h.ok("ResetDisk", &[("DiskId", &d), ("SnapshotId", &s)]);
    assert_eq!(h.disk(&d)["Status"], "ReIniting");
    h.wait("Available", || h.disk(&d));
}

#[test]
fn delete_instance_detaches_kept_disks_and_releases_the_rest() {
    let h = Harness::new(200);
    let i = h.run_instance(&[
        ("DataDisk.1.Size", "20"),
        ("DataDisk.1.DeleteWithInstance", "false"),
        ("DataDisk.2.Size", "20"),
    ]);
    h.wait("Running", || h.instance(&i));
    let disks = h.ok("DescribeDisks", &[("RegionId", "cn-hangzhou"), ("InstanceId", &i)])["Disks"]["Disk"].clone();
    let disks: Vec<(String, bool)> = disks
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["DiskId"].as_str().unwrap().to_string(), d["DeleteWithInstance"].as_bool().unwrap()))
        .collect();
    for (d, _) in &disks {
        h.wait("In_use", || h.disk(d));
    }
    assert_eq!(h.err("DeleteInstance", &[("InstanceId", &i)]), Code::IncorrectInstanceStatus);
    h.ok("DeleteInstance", &[("InstanceId", &i), ("Force", "true")]);
    assert!(h.instance(&i).is_null());
    for (d, goes) in &disks {
        if *goes {
            assert!(h.disk(d).is_null());
        } else {
            assert_eq!(h.disk(d)["Status"], "Detaching");
            // The instance is gone while the disk still points at it.
            let s = h.call("ResetDisk", &[("DiskId", d), ("SnapshotId", "s-none")]).unwrap_err();
            assert_eq!(s.code, Code::InvalidSnapshotIdNotFound);
            h.wait("Available", || h.disk(d));
        }
    }
}

#[test]
fn transitions_survive_a_restart() {
    let h = Harness::new(400);
    let d = h.create_disk();
    assert_eq!(h.disk(&d)["Status"], "Creating");
    let h = h.reopen();
    assert_eq!(h.disk(&d)["Status"], "Creating");
    h.wait("Available", || h.disk(&d));
}

#[test]
fn images_from_snapshots_boot_instances_and_are_deleted_with_force_only() {
    let h = Harness::new(5);
    let (_, d, s) = h.stopped_with_snapshot();
    let m = h.ok("CreateImage", &[("RegionId", "cn-hangzhou"), ("SnapshotId", &s), ("ImageName", "golden")]);
    let m = m["ImageId"].as_str().unwrap().to_string();
    let i = h.run_instance_with_image(&m);
    h.wait("Running", || h.instance(&i));
    let sys = h.ok("DescribeDisks", &[("RegionId", "cn-hangzhou"), ("InstanceId", &i), ("DiskType", "system")]);
    assert_eq!(sys["Disks"]["Disk"][0]["SourceSnapshotId"], s.as_str());
    assert_eq!(h.err("DeleteSnapshot", &[("SnapshotId", &s)]), Code::SnapshotCreatedImage);
    assert_eq!(h.err("DeleteImage", &[("RegionId", "cn-hangzhou"), ("ImageId", &m)]), Code::ImageIsUsedByInstance);
    h.ok("DeleteImage", &[("RegionId", "cn-hangzhou"), ("ImageId", &m), ("Force", "true")]);
    let _ = d;
}
