#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Instances driven by VMs (issue 11), against a fake runner: Starting lasts until the VM
//! runs, Stopping until it is gone (power button, then the kill after the stop timeout, or
//! ForceStop at once), a VM that dies leaves the instance Stopped, a restart starts the VMs
//! of Running instances again, DeleteInstance ends the VM first, RebootInstance resets it,
//! and disks lose their NBD writers only once the VM has ended. Also ImportImage (qemu-img).

use control::Control;
use control::config::Config;
use control::exports::{Events, Grant};
use control::machines::{Machine, MachineState, Machines};
use ecs_api::Code;
use ecs_api::action::Action;
use ecs_api::params::Params;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Fake {
    vms: Mutex<HashMap<String, MachineState>>,
    calls: Mutex<Vec<String>>,
    fail_start: Mutex<bool>,
    started: Mutex<Vec<Machine>>,
    stop_timeout_ms: u64,
}

impl Fake {
    fn log(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    /// The guest powers off, or the process dies.
    fn exit(&self, id: &str, orderly: bool) {
        self.vms.lock().unwrap().insert(id.into(), MachineState::Exited { orderly, reason: "test".into() });
    }
}

impl Machines for Fake {
    fn start(&self, m: &Machine) -> Result<(), String> {
        self.log(format!("start {}", m.id));
        if *self.fail_start.lock().unwrap() {
            self.vms.lock().unwrap().insert(m.id.clone(), MachineState::Exited { orderly: false, reason: "no".into() });
            return Err("qemu: could not open disk".into());
        }
        self.started.lock().unwrap().push(m.clone());
        self.vms.lock().unwrap().insert(m.id.clone(), MachineState::Running { powering_off_ms: None });
        Ok(())
    }
    fn power_off(&self, id: &str) -> Result<(), String> {
        self.log(format!("power_off {id}"));
        let mut v = self.vms.lock().unwrap();
        match v.get_mut(id) {
            Some(MachineState::Running { powering_off_ms }) => {
                *powering_off_ms = Some(0);
                Ok(())
            }
            _ => Err("not running".into()),
        }
    }
    fn reset(&self, id: &str) -> Result<(), String> {
        self.log(format!("reset {id}"));
        Ok(())
    }
    fn remove(&self, id: &str) -> Result<(), String> {
        self.log(format!("remove {id}"));
        self.vms.lock().unwrap().remove(id);
        Ok(())
    }
    fn kill(&self, id: &str) -> Result<(), String> {
        self.log(format!("kill {id}"));
        let mut v = self.vms.lock().unwrap();
        if matches!(v.get(id), Some(MachineState::Running { .. })) {
            v.insert(id.into(), MachineState::Exited { orderly: true, reason: "killed".into() });
        }
        Ok(())
    }
    fn state(&self, id: &str) -> MachineState {
        let mut v = self.vms.lock().unwrap();
        match v.get_mut(id) {
            // Time passes for a guest asked to power off: past the timeout on the next look.
            Some(MachineState::Running { powering_off_ms: Some(ms) }) => {
                *ms += self.stop_timeout_ms / 2 + 1;
                MachineState::Running { powering_off_ms: Some(*ms) }
            }
            Some(s) => s.clone(),
            None => MachineState::Unknown,
        }
    }
    fn forget(&self, id: &str) {
        self.vms.lock().unwrap().remove(id);
    }
    fn running(&self) -> Vec<String> {
        let v = self.vms.lock().unwrap();
        v.iter().filter(|(_, s)| matches!(s, MachineState::Running { .. })).map(|(k, _)| k.clone()).collect()
    }
    fn console(&self, id: &str, _: u64) -> Option<(Vec<u8>, i64)> {
        Some((format!("\x1b[1mSNAPDISK-GUEST boot=1 {id}\x1b[0m\n").into_bytes(), 1_700_000_000_000))
    }
    fn stop_timeout_ms(&self) -> u64 {
        self.stop_timeout_ms
    }
}

#[derive(Default)]
struct Revoked(Mutex<Vec<String>>);

impl Events for Revoked {
    fn revoke(&self, exports: &[String]) {
        self.0.lock().unwrap().extend(exports.iter().cloned());
    }
}

struct H {
    c: Arc<Control>,
    fake: Arc<Fake>,
    revoked: Arc<Revoked>,
    account: String,
    engine: Arc<store::Engine>,
    /// An image with an "operating system" (made by CreateImage): its guests answer the power
    /// button, unlike the public blank image's.
    image: String,
    dir: tempfile::TempDir,
}

const R: (&str, &str) = ("RegionId", "cn-hangzhou");

fn open(dir: &std::path::Path, config: Config) -> (Control, Arc<store::Engine>) {
    let engine = store::Engine::open(&dir.join("store")).unwrap();
    (Control::open(dir, config, Box::new(engine.clone())).unwrap(), engine)
}

impl H {
    fn new() -> H {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        std::fs::create_dir_all(dir.path().join("bucket")).unwrap();
        config.oss_buckets.insert("images".into(), dir.path().join("bucket"));
        let (c, engine) = open(dir.path(), config);
        let c = Arc::new(c);
        let account = c.bootstrap(Some(("ak".into(), "secret".into()))).unwrap().account_id;
        c.admin("timings", json!({"DiskMs": 0, "InstanceMs": 0, "SnapshotMs": 0})).unwrap();
        let fake = Arc::new(Fake { stop_timeout_ms: 1000, ..Default::default() });
        c.set_machines(fake.clone()).unwrap();
        let revoked = Arc::new(Revoked::default());
        c.set_events(revoked.clone());
        let mut h = H { c, fake, revoked, account, engine, image: String::new(), dir };
        let d = h.ok("CreateDisk", &[R, ("ZoneId", "cn-hangzhou-h"), ("Size", "20")])["DiskId"]
            .as_str()
            .unwrap()
            .to_string();
        let s = h.ok("CreateSnapshot", &[("DiskId", &d)])["SnapshotId"].as_str().unwrap().to_string();
        for _ in 0..100 {
            h.c.tick().unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        h.image = h.ok("CreateImage", &[R, ("SnapshotId", &s)])["ImageId"].as_str().unwrap().to_string();
        h
    }

    fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<Value, ecs_api::ApiError> {
        let p = Params::from_pairs(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.c.handle(&self.account, Action::parse(action, &p)?)
    }

    fn ok(&self, action: &str, params: &[(&str, &str)]) -> Value {
        self.call(action, params).unwrap_or_else(|e| panic!("{action}: {e}"))
    }

    fn status(&self, id: &str) -> String {
        let v = self.ok("DescribeInstances", &[R, ("InstanceIds", &format!("[\"{id}\"]"))]);
        v["Instances"]["Instance"][0]["Status"].as_str().unwrap().to_string()
    }

    /// Tick and reconcile until the instance is `want` (5 s at most).
    fn wait(&self, id: &str, want: &str) {
        let start = Instant::now();
        loop {
            self.c.tick().unwrap();
            self.c.reconcile_machines().unwrap();
            if self.status(id) == want {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "{id} still {} waiting for {want}", self.status(id));
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn running_instance(&self, extra: &[(&str, &str)]) -> String {
        let mut p = vec![R, ("InstanceType", "ecs.g7.large")];
        if !extra.iter().any(|(k, _)| *k == "ImageId") {
            p.push(("ImageId", self.image.as_str()));
        }
        p.extend_from_slice(extra);
        let id = self.ok("RunInstances", &p)["InstanceIdSets"]["InstanceIdSet"][0].as_str().unwrap().to_string();
        self.wait(&id, "Running");
        id
    }

    fn disks_of(&self, id: &str) -> Vec<String> {
        let v = self.ok("DescribeDisks", &[R, ("InstanceId", id)]);
        v["Disks"]["Disk"].as_array().unwrap().iter().map(|d| d["DiskId"].as_str().unwrap().to_string()).collect()
    }
}

#[test]
fn starting_lasts_until_the_vm_runs_and_it_gets_the_instances_disks() {
    let h = H::new();
    let id = h.running_instance(&[("DataDisk.1.Size", "20"), ("UserData", "cGF0dGVybj1oZWxsbw==")]);
    let started = h.fake.started.lock().unwrap().clone();
    assert_eq!(started.len(), 1);
    let m = &started[0];
    assert_eq!((m.id.as_str(), m.vcpus, m.memory_mib), (id.as_str(), 2, 8192));
    assert_eq!(m.user_data.as_deref(), Some(&b"pattern=hello"[..]));
    // The system disk boots: it comes first.
    let disks = h.ok("DescribeDisks", &[R, ("InstanceId", &id)]);
    let system = disks["Disks"]["Disk"].as_array().unwrap().iter().find(|d| d["Type"] == "system").unwrap();
    assert_eq!(m.disks.len(), 2);
    assert_eq!(m.disks[0], system["DiskId"].as_str().unwrap());
    // Before the runner says it runs, a Starting instance stays Starting, whatever the timers.
    h.ok("StopInstance", &[("InstanceId", &id)]);
    h.fake.exit(&id, true);
    h.wait(&id, "Stopped");
    *h.fake.fail_start.lock().unwrap() = true;
    h.ok("StartInstance", &[("InstanceId", &id)]);
    for _ in 0..10 {
        h.c.tick().unwrap();
        assert_eq!(h.status(&id), "Starting");
    }
    // A VM that cannot start leaves the instance Stopped.
    h.wait(&id, "Stopped");
    assert!(h.fake.calls().iter().filter(|c| c.starts_with("start")).count() >= 2);
}

#[test]
fn stopping_powers_off_and_revokes_writers_only_once_the_vm_is_gone() {
    let h = H::new();
    let id = h.running_instance(&[]);
    let disks = h.disks_of(&id);
    h.ok("StopInstance", &[("InstanceId", &id)]);
    // The reconciler presses the button, outside the catalog lock.
    assert!(!h.fake.calls().contains(&format!("power_off {id}")));
    h.c.reconcile_machines().unwrap();
    assert!(h.fake.calls().contains(&format!("power_off {id}")));
    assert_eq!(h.status(&id), "Stopping");
    // The guest still flushes while it powers off: its disks keep their writer.
    assert!(h.revoked.0.lock().unwrap().is_empty());
    assert_eq!(h.c.export_grant(&disks[0]).unwrap(), Grant::ReadWrite);
    h.fake.exit(&id, true);
    h.wait(&id, "Stopped");
    assert_eq!(*h.revoked.0.lock().unwrap(), disks);
    assert!(h.c.export_grant(&disks[0]).is_err());
}

#[test]
fn a_guest_that_ignores_the_power_button_is_killed_after_the_timeout_and_force_stop_kills_at_once() {
    let h = H::new();
    let id = h.running_instance(&[]);
    h.ok("StopInstance", &[("InstanceId", &id)]);
    // Each look at the fake adds half the timeout: the reconciler kills on the second.
    h.wait(&id, "Stopped");
    let calls = h.fake.calls();
    let off = calls.iter().position(|c| *c == format!("power_off {id}")).unwrap();
    let kill = calls.iter().position(|c| *c == format!("kill {id}")).unwrap();
    assert!(off < kill, "{calls:?}");

    let id2 = h.running_instance(&[]);
    h.ok("StopInstance", &[("InstanceId", &id2), ("ForceStop", "true")]);
    h.c.reconcile_machines().unwrap();
    let calls = h.fake.calls();
    assert!(calls.contains(&format!("kill {id2}")) && !calls.contains(&format!("power_off {id2}")), "{calls:?}");
    h.wait(&id2, "Stopped");

    // The public blank image has no OS to answer the button: its VM is killed at once.
    let blank = h.running_instance(&[("ImageId", "blank_x64_20G.vhd")]);
    h.ok("StopInstance", &[("InstanceId", &blank)]);
    h.c.reconcile_machines().unwrap();
    let calls = h.fake.calls();
    assert!(calls.contains(&format!("kill {blank}")) && !calls.contains(&format!("power_off {blank}")), "{calls:?}");
    h.wait(&blank, "Stopped");
}

#[test]
fn a_vm_that_dies_leaves_the_instance_stopped_and_a_restart_starts_running_ones_again() {
    let h = H::new();
    let crashed = h.running_instance(&[]);
    let survivor = h.running_instance(&[]);
    h.fake.exit(&crashed, false);
    h.wait(&crashed, "Stopped");
    assert_eq!(h.status(&survivor), "Running");
    // A new server process knows no VM: the Running instance gets one again.
    h.fake.forget(&survivor);
    h.fake.vms.lock().unwrap().remove(&survivor);
    let before = h.fake.calls().iter().filter(|c| **c == format!("start {survivor}")).count();
    h.c.reconcile_machines().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.fake.calls().iter().filter(|c| **c == format!("start {survivor}")).count() == before {
        assert!(Instant::now() < deadline, "the VM was not started again");
        std::thread::sleep(Duration::from_millis(5));
    }
    h.wait(&survivor, "Running");
    // A VM whose instance should not run is killed.
    h.fake.vms.lock().unwrap().insert("i-stray".into(), MachineState::Running { powering_off_ms: None });
    h.c.reconcile_machines().unwrap();
    assert!(h.fake.calls().contains(&"kill i-stray".to_string()));
}

#[test]
fn reboot_resets_the_guest_and_delete_ends_the_vm_first() {
    let h = H::new();
    let id = h.running_instance(&[]);
    h.ok("RebootInstance", &[("InstanceId", &id)]);
    assert_eq!(h.status(&id), "Starting");
    h.wait(&id, "Running");
    assert!(h.fake.calls().contains(&format!("reset {id}")));
    h.ok("DeleteInstance", &[("InstanceId", &id), ("Force", "true")]);
    assert!(h.fake.calls().contains(&format!("remove {id}")));
    h.c.reconcile_machines().unwrap();
    assert!(h.fake.running().is_empty());
}

#[test]
fn console_output_is_base64_with_symbols_removable_and_refused_for_other_accounts() {
    let h = H::new();
    let id = h.running_instance(&[]);
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let v = h.ok("GetInstanceConsoleOutput", &[R, ("InstanceId", &id)]);
    assert_eq!(v["InstanceId"], id.as_str());
    assert_eq!(v["LastUpdateTime"], "2023-11-14T22:13:20Z");
    let raw = b64.decode(v["ConsoleOutput"].as_str().unwrap()).unwrap();
    assert!(raw.starts_with(b"\x1b[1m"));
    let v = h.ok("GetInstanceConsoleOutput", &[R, ("InstanceId", &id), ("RemoveSymbols", "true")]);
    let clean = b64.decode(v["ConsoleOutput"].as_str().unwrap()).unwrap();
    assert_eq!(clean, format!("SNAPDISK-GUEST boot=1 {id}\n").into_bytes());
    let e = h.call("GetInstanceConsoleOutput", &[R, ("InstanceId", "i-nope")]).unwrap_err();
    assert_eq!(e.code, Code::InvalidInstanceIdNotFound);
    let e = h.call("GetInstanceConsoleOutput", &[R]).unwrap_err();
    assert_eq!(e.code, Code::MissingParameter);
}

fn qemu_img() -> bool {
    std::process::Command::new("qemu-img").arg("--version").output().is_ok_and(|o| o.status.success())
}

fn wait_image(h: &H, id: &str) -> Value {
    let start = Instant::now();
    loop {
        h.c.run_imports().unwrap();
        let v = h.ok("DescribeImages", &[R, ("ImageId", id), ("Status", "Creating,Available,CreateFailed")]);
        let img = v["Images"]["Image"][0].clone();
        if img["Status"] != "Creating" {
            return img;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "image still Creating: {img}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn import_image_converts_qcow2_into_a_bootable_snapshot_and_refuses_what_it_cannot_read() {
    if !qemu_img() {
        panic!("qemu-img is required (apt-get install qemu-utils)");
    }
    let h = H::new();
    let bucket = h.dir.path().join("bucket");
    // A 3 MiB raw file with a marker at 2 MiB, converted to qcow2 by qemu-img.
    let mut raw = vec![0u8; 3 << 20];
    raw[2 << 20..(2 << 20) + 6].copy_from_slice(b"MARKER");
    std::fs::write(bucket.join("disk.raw"), &raw).unwrap();
    for (ext, fmt) in [("qcow2", "qcow2"), ("vhd", "vpc")] {
        let out = std::process::Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", fmt])
            .arg(bucket.join("disk.raw"))
            .arg(bucket.join(format!("disk.{ext}")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let map = |obj: &'static str, fmt: &'static str| {
        vec![
            R,
            ("ImageName", "golden"),
            ("DiskDeviceMapping.1.OSSBucket", "images"),
            ("DiskDeviceMapping.1.OSSObject", obj),
            ("DiskDeviceMapping.1.Format", fmt),
        ]
    };
    let v = h.ok("ImportImage", &map("disk.qcow2", "QCOW2"));
    let image = v["ImageId"].as_str().unwrap().to_string();
    assert!(v["TaskId"].as_str().unwrap().starts_with("t-"));
    // Creating images are not in the default listing (Status defaults to Available).
    let listed = h.ok("DescribeImages", &[R, ("ImageId", &image)]);
    assert!(
        listed["Images"]["Image"].as_array().unwrap().is_empty()
            || listed["Images"]["Image"][0]["Status"] == "Available"
    );
    let img = wait_image(&h, &image);
    assert_eq!(img["Status"], "Available", "{img}");
    assert_eq!(img["Progress"], "100%");
    assert_eq!(img["Size"], 1);
    let task = v["TaskId"].as_str().unwrap();
    let t = h.ok("DescribeTasks", &[R, ("TaskIds", task)]);
    assert_eq!(
        (t["TaskSet"]["Task"][0]["TaskAction"].as_str(), t["TaskSet"]["Task"][0]["TaskStatus"].as_str()),
        (Some("ImportImage"), Some("Finished"))
    );
    let mapping = &img["DiskDeviceMappings"]["DiskDeviceMapping"][0];
    assert_eq!(mapping["ImportOSSBucket"], "images");
    assert_eq!(mapping["Format"], "QCOW2");
    // An instance from it boots a clone of those bytes.
    let id = h.running_instance(&[("ImageId", &image)]);
    let disks = h.ok("DescribeDisks", &[R, ("InstanceId", &id)]);
    let sys = disks["Disks"]["Disk"][0]["DiskId"].as_str().unwrap().to_string();
    assert_eq!(disks["Disks"]["Disk"][0]["ImageId"], image.as_str());
    let mut buf = vec![0u8; 4096];
    store::BlockRead::read_at(&*h.engine.volume(&sys).unwrap(), &mut buf, 2 << 20).unwrap();
    assert_eq!(&buf[..6], b"MARKER");
    store::BlockRead::read_at(&*h.engine.volume(&sys).unwrap(), &mut buf, 0).unwrap();
    assert!(buf.iter().all(|b| *b == 0));
    let snap = mapping["SnapshotId"].as_str().unwrap();
    let s = h.ok("DescribeSnapshots", &[R, ("SnapshotIds", &format!("[\"{snap}\"]"))]);
    assert_eq!(s["Snapshots"]["Snapshot"][0]["Status"], "accomplished");

    // VHD too, its format found from the file when Format is not given.
    let mut p = map("disk.vhd", "VHD");
    p.pop();
    let vhd = h.ok("ImportImage", &p)["ImageId"].as_str().unwrap().to_string();
    let img = wait_image(&h, &vhd);
    assert_eq!(img["Status"], "Available", "{img}");
    let id = h.running_instance(&[("ImageId", &vhd)]);
    let disks = h.ok("DescribeDisks", &[R, ("InstanceId", &id)]);
    let sys = disks["Disks"]["Disk"][0]["DiskId"].as_str().unwrap().to_string();
    store::BlockRead::read_at(&*h.engine.volume(&sys).unwrap(), &mut buf, 2 << 20).unwrap();
    assert_eq!(&buf[..6], b"MARKER");

    // ReplaceSystemDisk: a Stopped instance from the blank image gets the imported image's
    // bytes on a new system disk; the old one is released.
    let blank = h.running_instance(&[("ImageId", "blank_x64_20G.vhd")]);
    let sys_disk = |i: &str| -> Value {
        let d = h.ok("DescribeDisks", &[R, ("InstanceId", i), ("DiskType", "system")]);
        d["Disks"]["Disk"][0].clone()
    };
    let old = sys_disk(&blank)["DiskId"].as_str().unwrap().to_string();
    let e = h.call("ReplaceSystemDisk", &[("InstanceId", &blank), ("ImageId", &image)]).unwrap_err();
    assert_eq!(e.code, Code::IncorrectInstanceStatus);
    h.ok("StopInstance", &[("InstanceId", &blank)]);
    h.wait(&blank, "Stopped");
    let e = h.call("ReplaceSystemDisk", &[("InstanceId", &blank), ("ImageId", "m-nope")]).unwrap_err();
    assert_eq!(e.code, Code::InvalidImageIdNotFound);
    let v = h.ok("ReplaceSystemDisk", &[("InstanceId", &blank), ("ImageId", &image), ("SystemDisk.Size", "30")]);
    let new = v["DiskId"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    let d = sys_disk(&blank);
    assert_eq!(
        (d["DiskId"].as_str().unwrap(), d["ImageId"].as_str().unwrap(), d["Size"].as_i64().unwrap()),
        (new.as_str(), image.as_str(), 30)
    );
    assert_eq!(d["Device"], "/dev/xvda");
    let gone = h.ok("DescribeDisks", &[R, ("DiskIds", &format!("[\"{old}\"]"))]);
    assert!(gone["Disks"]["Disk"].as_array().unwrap().is_empty(), "the old system disk is released");
    store::BlockRead::read_at(&*h.engine.volume(&new).unwrap(), &mut buf, 2 << 20).unwrap();
    assert_eq!(&buf[..6], b"MARKER");
    let inst = h.ok("DescribeInstances", &[R, ("InstanceIds", &format!("[\"{blank}\"]"))]);
    assert_eq!(inst["Instances"]["Instance"][0]["ImageId"], image.as_str());

    // Refusals: unknown bucket or object, a path out of the bucket, a bad format.
    let code = |p: Vec<(&str, &str)>| h.call("ImportImage", &p).unwrap_err().code;
    let mut p = map("disk.qcow2", "QCOW2");
    p[2] = ("DiskDeviceMapping.1.OSSBucket", "nope");
    assert_eq!(code(p), Code::InvalidOssBucketNotFound);
    assert_eq!(code(map("missing.qcow2", "QCOW2")), Code::InvalidOssObjectNotFound);
    assert_eq!(code(map("../store/meta.log", "RAW")), Code::InvalidOssObjectNotFound);
    assert_eq!(code(map("disk.qcow2", "VMDK")), Code::InvalidParameter);
    assert_eq!(code(vec![R, ("DiskDeviceMapping.1.OSSBucket", "images")]), Code::MissingParameter);
    // A link out of the bucket is not an object of it.
    std::os::unix::fs::symlink(h.dir.path().join("catalog.sqlite"), bucket.join("catalog.raw")).unwrap();
    assert_eq!(code(map("catalog.raw", "RAW")), Code::InvalidOssObjectNotFound);
    // An image backed by another file of the host would read that file in: CreateFailed.
    let out = std::process::Command::new("qemu-img")
        .args(["create", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(h.dir.path().join("catalog.sqlite"))
        .arg(bucket.join("backed.qcow2"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let backed = h.ok("ImportImage", &map("backed.qcow2", "QCOW2"))["ImageId"].as_str().unwrap().to_string();
    assert_eq!(wait_image(&h, &backed)["Status"], "CreateFailed");
    // A file that is not what its Format says fails in the background: CreateFailed.
    std::fs::write(bucket.join("junk.qcow2"), b"not a qcow2 image at all").unwrap();
    let bad = h.ok("ImportImage", &map("junk.qcow2", "QCOW2"))["ImageId"].as_str().unwrap().to_string();
    assert_eq!(wait_image(&h, &bad)["Status"], "CreateFailed");
    let t = h.ok("DescribeTaskAttribute", &[R, ("TaskId", &format!("t-{}", bad.trim_start_matches("m-")))]);
    assert_eq!(t["TaskStatus"], "Failed");
    let e = h.call("RunInstances", &[R, ("ImageId", &bad), ("InstanceType", "ecs.g7.large")]).unwrap_err();
    assert_eq!(e.code, Code::ImageNotAvailable);
}

#[test]
fn a_server_without_vms_finishes_what_a_vm_was_starting_or_stopping() {
    let h = H::new();
    let stopping = h.running_instance(&[]);
    h.ok("StopInstance", &[("InstanceId", &stopping)]);
    assert_eq!(h.status(&stopping), "Stopping");
    let H { c, dir, account, engine, fake, revoked, image } = h;
    drop((c, engine, fake, revoked, image));
    // The next server runs no VMs (--vms none, or no qemu): the instance gets its timer back.
    let (c, _engine) = open(dir.path(), Config::default());
    c.tick().unwrap();
    let p = Params::from_pairs([
        ("RegionId".to_string(), "cn-hangzhou".to_string()),
        ("InstanceIds".to_string(), format!("[\"{stopping}\"]")),
    ]);
    let v = c.handle(&account, Action::parse("DescribeInstances", &p).unwrap()).unwrap();
    assert_eq!(v["Instances"]["Instance"][0]["Status"], "Stopped");
}
