#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]
//! A control plane on a temp dir, called the way the server calls it.

use control::Control;
use control::config::Config;
use ecs_api::action::Action;
use ecs_api::params::Params;
use ecs_api::{ApiError, Code};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub struct Harness {
    pub control: Control,
    pub account: String,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub fn new(transition_ms: u64) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let control = open(dir.path());
        let boot = control.bootstrap(Some(("ak".into(), "secret".into()))).unwrap();
        let h = Harness { control, account: boot.account_id, dir };
        h.timings(transition_ms);
        h
    }

    pub fn reopen(self) -> Harness {
        let Harness { control, account, dir } = self;
        drop(control);
        Harness { control: open(dir.path()), account, dir }
    }

    pub fn timings(&self, ms: u64) {
        self.admin("timings", json!({"DiskMs": ms, "InstanceMs": ms, "SnapshotMs": ms}));
    }

    pub fn admin(&self, cmd: &str, body: Value) -> Value {
        self.control.admin(cmd, body).unwrap()
    }

    pub fn call_as(&self, account: &str, action: &str, params: &[(&str, &str)]) -> Result<Value, ApiError> {
        let p = Params::from_pairs(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let req = Action::parse(action, &p)?;
        self.control.handle(account, req)
    }

    pub fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<Value, ApiError> {
        self.call_as(&self.account, action, params)
    }

    pub fn ok(&self, action: &str, params: &[(&str, &str)]) -> Value {
        self.call(action, params).unwrap_or_else(|e| panic!("{action}: {e}"))
    }

    pub fn err(&self, action: &str, params: &[(&str, &str)]) -> Code {
        match self.call(action, params) {
            Ok(v) => panic!("{action} succeeded: {v}"),
            Err(e) => e.code,
        }
    }

    pub fn disk(&self, id: &str) -> Value {
        let ids = format!("[\"{id}\"]");
        let v = self.ok("DescribeDisks", &[("RegionId", "cn-hangzhou"), ("DiskIds", &ids)]);
        v["Disks"]["Disk"][0].clone()
    }

    pub fn instance(&self, id: &str) -> Value {
        let ids = format!("[\"{id}\"]");
        let v = self.ok("DescribeInstances", &[("RegionId", "cn-hangzhou"), ("InstanceIds", &ids)]);
        v["Instances"]["Instance"][0].clone()
    }

    pub fn snapshot(&self, id: &str) -> Value {
        let ids = format!("[\"{id}\"]");
        let v = self.ok("DescribeSnapshots", &[("RegionId", "cn-hangzhou"), ("SnapshotIds", &ids)]);
        v["Snapshots"]["Snapshot"][0].clone()
    }

    /// Poll `get` until its Status is `want` (ticking transitions), or fail after 5 s.
    pub fn wait(&self, want: &str, get: impl Fn() -> Value) -> Value {
        let start = Instant::now();
        loop {
            self.control.tick().unwrap();
            let v = get();
            if v["Status"] == want {
                return v;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "still {} waiting for {want}", v["Status"]);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn run_instance(&self, extra: &[(&str, &str)]) -> String {
        let mut p =
            vec![("RegionId", "cn-hangzhou"), ("ImageId", "blank_x64_20G.vhd"), ("InstanceType", "ecs.g7.large")];
        p.extend_from_slice(extra);
        let v = self.ok("RunInstances", &p);
        v["InstanceIdSets"]["InstanceIdSet"][0].as_str().unwrap().to_string()
    }

    pub fn run_instance_with_image(&self, image: &str) -> String {
        let p = [("RegionId", "cn-hangzhou"), ("ImageId", image), ("InstanceType", "ecs.g7.large")];
        let v = self.ok("RunInstances", &p);
        v["InstanceIdSets"]["InstanceIdSet"][0].as_str().unwrap().to_string()
    }

    pub fn create_disk(&self) -> String {
        let v = self.ok("CreateDisk", &[("RegionId", "cn-hangzhou"), ("ZoneId", "cn-hangzhou-h"), ("Size", "40")]);
        v["DiskId"].as_str().unwrap().to_string()
    }

    pub fn snapshot_of(&self, disk: &str) -> String {
        let v = self.ok("CreateSnapshot", &[("DiskId", disk)]);
        let id = v["SnapshotId"].as_str().unwrap().to_string();
        self.wait("accomplished", || self.snapshot(&id));
        id
    }

    /// A Stopped instance with a data disk attached and one accomplished snapshot of it.
    pub fn stopped_with_snapshot(&self) -> (String, String, String) {
        let i = self.run_instance(&[]);
        self.wait("Running", || self.instance(&i));
        let d = self.create_disk();
        self.wait("Available", || self.disk(&d));
        self.ok("AttachDisk", &[("DiskId", &d), ("InstanceId", &i)]);
        self.wait("In_use", || self.disk(&d));
        let s = self.snapshot_of(&d);
        self.ok("StopInstance", &[("InstanceId", &i)]);
        self.wait("Stopped", || self.instance(&i));
        (i, d, s)
    }
}

fn open(dir: &std::path::Path) -> Control {
    let engine = store::Engine::open(&dir.join("store")).unwrap();
    Control::open(dir, Config::default(), Box::new(engine)).unwrap()
}
