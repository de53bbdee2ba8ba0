#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Listing at the page's cost: paging at its boundaries, NextToken round trips and refusals,
//! combined filters, reads that see due transitions without the ticker, ClientToken
//! idempotence (including two concurrent calls with one token) and the AccessKey cache.

mod common;

use common::Harness;
use ecs_api::Code;
use ecs_api::auth::KeyStore;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

const R: (&str, &str) = ("RegionId", "cn-hangzhou");

fn disk_ids(v: &Value) -> Vec<String> {
    v["Disks"]["Disk"].as_array().unwrap().iter().map(|d| d["DiskId"].as_str().unwrap().to_string()).collect()
}

fn make_disks(h: &Harness, n: usize) -> Vec<String> {
    (0..n).map(|_| h.create_disk()).collect()
}

#[test]
fn page_numbers_at_the_boundaries() {
    let h = Harness::new(0);
    let made = make_disks(&h, 23);
    let page = |n: &str, size: &str| h.ok("DescribeDisks", &[R, ("PageNumber", n), ("PageSize", size)]);
    // The listing order: creation time, then id (disks made in one millisecond sort by id).
    let all = disk_ids(&page("1", "100"));
    assert_eq!(all.iter().collect::<BTreeSet<_>>(), made.iter().collect::<BTreeSet<_>>());
    let first = page("1", "10");
    assert_eq!(disk_ids(&first), all[..10]);
    assert_eq!(first["TotalCount"], 23);
    assert_eq!(first["NextToken"], "");
    // The last page is short, the one after it empty, TotalCount the same throughout.
    let last = page("3", "10");
    assert_eq!(disk_ids(&last), all[20..]);
    assert_eq!(last["TotalCount"], 23);
    let beyond = page("4", "10");
    assert!(disk_ids(&beyond).is_empty());
    assert_eq!(beyond["TotalCount"], 23);
    assert_eq!(beyond["PageNumber"], 4);
    // PageSize limits: 1..=100.
    assert_eq!(disk_ids(&page("23", "1")), all[22..]);
    assert_eq!(h.err("DescribeDisks", &[R, ("PageSize", "101")]), Code::InvalidParameter);
    assert_eq!(h.err("DescribeDisks", &[R, ("PageSize", "0")]), Code::InvalidParameter);
    assert_eq!(h.err("DescribeDisks", &[R, ("PageNumber", "0")]), Code::InvalidParameter);
    // MaxResults up to 500 for DescribeDisks, 100 for DescribeSnapshots.
    assert_eq!(h.err("DescribeDisks", &[R, ("MaxResults", "501")]), Code::InvalidParameter);
    assert_eq!(h.err("DescribeSnapshots", &[R, ("MaxResults", "101")]), Code::InvalidParameter);
}

#[test]
fn an_empty_account_lists_nothing() {
    let h = Harness::new(0);
    for (action, list) in
        [("DescribeDisks", "Disks"), ("DescribeSnapshots", "Snapshots"), ("DescribeInstances", "Instances")]
    {
        let v = h.ok(action, &[R]);
        assert_eq!(v["TotalCount"], 0, "{action}");
        assert_eq!(v[list].as_object().unwrap().values().next().unwrap(), &json!([]), "{action}");
        let v = h.ok(action, &[R, ("MaxResults", "10")]);
        assert_eq!(v["NextToken"], "", "{action}");
    }
    // Public images are listed for every account.
    assert_eq!(h.ok("DescribeImages", &[R])["TotalCount"], 1);
}

#[test]
fn next_token_walks_everything_once_even_while_disks_are_created() {
    let h = Harness::new(0);
    let before = make_disks(&h, 25);
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let mut p = vec![R, ("MaxResults", "10")];
        if !token.is_empty() {
            p.push(("NextToken", &token));
        }
        let v = h.ok("DescribeDisks", &p);
        seen.extend(disk_ids(&v));
        token = v["NextToken"].as_str().unwrap().to_string();
        pages += 1;
        // Creating more in the middle of the walk neither repeats nor skips anything.
        if pages == 1 {
            make_disks(&h, 3);
        }
        if token.is_empty() {
            break;
        }
    }
    // Every disk that existed before the walk is seen exactly once; disks created during it
    // sort after the key already passed (or, created in the same millisecond with a smaller
    // id, before it) and are seen at most once.
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no disk twice");
    assert!(before.iter().all(|d| unique.contains(d)), "no disk skipped");
    assert!(seen.len() <= 28 && pages >= 3);
}

#[test]
fn malformed_altered_and_foreign_tokens_are_refused() {
    let h = Harness::new(0);
    make_disks(&h, 3);
    let v = h.ok("DescribeDisks", &[R, ("MaxResults", "1")]);
    let token = v["NextToken"].as_str().unwrap().to_string();
    assert!(!token.is_empty());
    let invalid = |p: &[(&str, &str)], who: &str| {
        let e = h.call_as(who, "DescribeDisks", p).unwrap_err();
        assert_eq!(e.code, Code::InvalidParameter, "{p:?}");
        assert_eq!(e.message, "The specified parameter \"NextToken\" is not valid.");
    };
    let me = h.account.clone();
    invalid(&[R, ("NextToken", "garbage")], &me);
    invalid(&[R, ("NextToken", "nt5")], &me);
    // The same key with a forged MAC.
    let (body, _) = token.split_once('.').unwrap();
    invalid(&[R, ("NextToken", &format!("{body}.00000000000000000000000000000000"))], &me);
    // Another account, another filter, another resource kind, another region.
    let other = h.admin("account-create", json!({"Name": "other"}))["AccountId"].as_str().unwrap().to_string();
    invalid(&[R, ("NextToken", &token)], &other);
    invalid(&[R, ("NextToken", &token), ("Status", "Available")], &me);
    let e = h.call("DescribeSnapshots", &[R, ("NextToken", &token)]).unwrap_err();
    assert_eq!(e.code, Code::InvalidParameter);
    let e = h.call("DescribeDisks", &[("RegionId", "cn-shanghai"), ("NextToken", &token)]).unwrap_err();
    assert_eq!(e.code, Code::InvalidParameter);
    // The genuine token still works.
    assert_eq!(disk_ids(&h.ok("DescribeDisks", &[R, ("MaxResults", "1"), ("NextToken", &token)])).len(), 1);
}

#[test]
fn combined_filters_are_anded_and_counted() {
    let h = Harness::new(0);
    let i = h.run_instance(&[("DataDisk.1.Size", "20"), ("DataDisk.2.Size", "30")]);
    h.wait("Running", || h.instance(&i));
    let free = make_disks(&h, 2);
    h.ok("CreateDisk", &[R, ("ZoneId", "cn-hangzhou-i"), ("Size", "40"), ("DiskName", "named")]);
    let count = |p: &[(&str, &str)]| {
        let mut all = vec![R];
        all.extend_from_slice(p);
        let v = h.ok("DescribeDisks", &all);
        assert_eq!(v["TotalCount"].as_u64().unwrap() as usize, disk_ids(&v).len());
        v["TotalCount"].as_u64().unwrap()
    };
    assert_eq!(count(&[]), 6);
    assert_eq!(count(&[("InstanceId", &i)]), 3);
    assert_eq!(count(&[("InstanceId", &i), ("DiskType", "data")]), 2);
    assert_eq!(count(&[("InstanceId", &i), ("DiskType", "system")]), 1);
    assert_eq!(count(&[("DiskType", "data"), ("Status", "Available")]), 3);
    assert_eq!(count(&[("DiskType", "data"), ("Status", "Available"), ("ZoneId", "cn-hangzhou-i")]), 1);
    assert_eq!(count(&[("DiskName", "named"), ("ZoneId", "cn-hangzhou-h")]), 0);
    let ids = format!("[\"{}\",\"{}\"]", free[0], free[1]);
    assert_eq!(count(&[("DiskIds", &ids), ("Status", "Available")]), 2);
    assert_eq!(count(&[("DiskIds", &ids), ("Status", "In_use")]), 0);
    assert_eq!(count(&[("DiskIds", "[]")]), 0, "an empty DiskIds list is a filter that matches nothing");
    assert_eq!(count(&[("Category", "cloud_essd"), ("Encrypted", "false")]), 6);
    // Snapshots by disk and by instance.
    let d = h.disk(&free[0])["DiskId"].as_str().unwrap().to_string();
    let s1 = h.snapshot_of(&d);
    let _s2 = h.snapshot_of(&d);
    let sys = h.ok("DescribeDisks", &[R, ("InstanceId", &i), ("DiskType", "system")]);
    let sys = sys["Disks"]["Disk"][0]["DiskId"].as_str().unwrap().to_string();
    h.snapshot_of(&sys);
    let snaps = |p: &[(&str, &str)]| {
        let mut all = vec![R];
        all.extend_from_slice(p);
        h.ok("DescribeSnapshots", &all)["TotalCount"].as_u64().unwrap()
    };
    assert_eq!(snaps(&[]), 3);
    assert_eq!(snaps(&[("DiskId", &d)]), 2);
    assert_eq!(snaps(&[("InstanceId", &i)]), 1);
    assert_eq!(snaps(&[("DiskId", &d), ("Status", "accomplished")]), 2);
    let one = format!("[\"{s1}\"]");
    assert_eq!(snaps(&[("DiskId", &d), ("SnapshotIds", &one)]), 1);
    assert_eq!(snaps(&[("DiskId", &sys), ("SnapshotIds", &one)]), 0);
    // Instances and images.
    let it = |p: &[(&str, &str)]| {
        let mut all = vec![R];
        all.extend_from_slice(p);
        h.ok("DescribeInstances", &all)["TotalCount"].as_u64().unwrap()
    };
    assert_eq!(it(&[("Status", "Running"), ("InstanceType", "ecs.g7.large")]), 1);
    assert_eq!(it(&[("Status", "Stopped")]), 0);
    let img =
        h.ok("CreateImage", &[R, ("SnapshotId", &s1), ("ImageName", "mine")])["ImageId"].as_str().unwrap().to_string();
    let images = |p: &[(&str, &str)]| {
        let mut all = vec![R];
        all.extend_from_slice(p);
        h.ok("DescribeImages", &all)["TotalCount"].as_u64().unwrap()
    };
    assert_eq!(images(&[]), 2);
    assert_eq!(images(&[("ImageOwnerAlias", "self")]), 1);
    assert_eq!(images(&[("ImageOwnerAlias", "system")]), 1);
    assert_eq!(images(&[("ImageOwnerAlias", "self"), ("ImageId", &img)]), 1);
    assert_eq!(images(&[("ImageOwnerAlias", "system"), ("ImageId", &img)]), 0);
}

#[test]
fn reads_see_due_transitions_without_the_ticker() {
    let h = Harness::new(30);
    let d = h.create_disk();
    assert_eq!(h.disk(&d)["Status"], "Creating");
    std::thread::sleep(std::time::Duration::from_millis(40));
    // Nobody ticked: the catalog row still says Creating, the listing says Available.
    assert_eq!(h.disk(&d)["Status"], "Available");
    let filtered = h.ok("DescribeDisks", &[R, ("Status", "Available")]);
    assert_eq!(disk_ids(&filtered), vec![d.clone()]);
    assert_eq!(filtered["TotalCount"], 1);
    // And a write completes it for real, so what a poller sees never goes back.
    h.control.tick().unwrap();
    assert_eq!(h.disk(&d)["Status"], "Available");
}

fn create_disk_with_token(h: &Harness, token: &str, size: &str) -> Result<Value, ecs_api::ApiError> {
    h.call("CreateDisk", &[R, ("ZoneId", "cn-hangzhou-h"), ("Size", size), ("ClientToken", token)])
}

#[test]
fn client_token_returns_the_first_result_and_creates_nothing() {
    let h = Harness::new(0);
    let first = create_disk_with_token(&h, "tok-1", "40").unwrap();
    let again = create_disk_with_token(&h, "tok-1", "40").unwrap();
    assert_eq!(first, again);
    assert_eq!(h.ok("DescribeDisks", &[R])["TotalCount"], 1);
    // The same token with other parameters.
    let e = create_disk_with_token(&h, "tok-1", "50").unwrap_err();
    assert_eq!(e.code, Code::IdempotentParameterMismatch);
    assert_eq!(e.code.status(), 400);
    assert_eq!(e.message, "The request is retried with updated parameters.");
    // Another token creates another disk; another account may use the same token.
    create_disk_with_token(&h, "tok-2", "40").unwrap();
    assert_eq!(h.ok("DescribeDisks", &[R])["TotalCount"], 2);
    let other = h.admin("account-create", json!({"Name": "other"}))["AccountId"].as_str().unwrap().to_string();
    let theirs = h
        .call_as(&other, "CreateDisk", &[R, ("ZoneId", "cn-hangzhou-h"), ("Size", "40"), ("ClientToken", "tok-1")])
        .unwrap();
    assert_ne!(theirs["DiskId"], first["DiskId"]);
    // Too long or not ASCII.
    let long = "x".repeat(65);
    assert_eq!(create_disk_with_token(&h, &long, "40").unwrap_err(), ecs_api::ApiError::invalid("ClientToken"));
    assert_eq!(create_disk_with_token(&h, "tök", "40").unwrap_err(), ecs_api::ApiError::invalid("ClientToken"));
    // A DryRun remembers nothing.
    let dry = h.call(
        "CreateDisk",
        &[R, ("ZoneId", "cn-hangzhou-h"), ("Size", "40"), ("ClientToken", "tok-3"), ("DryRun", "true")],
    );
    assert_eq!(dry.unwrap_err().code, Code::DryRunOperation);
    create_disk_with_token(&h, "tok-3", "40").unwrap();
}

#[test]
fn client_token_on_every_creating_action() {
    let h = Harness::new(0);
    let run = |token: &str| {
        h.ok(
            "RunInstances",
            &[
                R,
                ("ImageId", "blank_x64_20G.vhd"),
                ("InstanceType", "ecs.g7.large"),
                ("Amount", "2"),
                ("ClientToken", token),
            ],
        )
    };
    let a = run("run-1");
    assert_eq!(run("run-1"), a);
    assert_eq!(h.ok("DescribeInstances", &[R])["TotalCount"], 2);
    let create = |token: &str| {
        h.ok(
            "CreateInstance",
            &[R, ("ImageId", "blank_x64_20G.vhd"), ("InstanceType", "ecs.g7.large"), ("ClientToken", token)],
        )
    };
    let c = create("ci-1");
    assert_eq!(create("ci-1"), c);
    assert_eq!(h.ok("DescribeInstances", &[R])["TotalCount"], 3);
    // A token used by RunInstances is not CreateInstance's.
    let e = h
        .call(
            "CreateInstance",
            &[R, ("ImageId", "blank_x64_20G.vhd"), ("InstanceType", "ecs.g7.large"), ("ClientToken", "run-1")],
        )
        .unwrap_err();
    assert_eq!(e.code, Code::IdempotentParameterMismatch);
    let d = h.create_disk();
    h.wait("Available", || h.disk(&d));
    let snap = h.ok("CreateSnapshot", &[("DiskId", &d), ("ClientToken", "s-1")]);
    assert_eq!(h.ok("CreateSnapshot", &[("DiskId", &d), ("ClientToken", "s-1")]), snap);
    let s = snap["SnapshotId"].as_str().unwrap().to_string();
    h.wait("accomplished", || h.snapshot(&s));
    assert_eq!(h.ok("DescribeSnapshots", &[R])["TotalCount"], 1);
    let img = h.ok("CreateImage", &[R, ("SnapshotId", &s), ("ClientToken", "m-1")]);
    assert_eq!(h.ok("CreateImage", &[R, ("SnapshotId", &s), ("ClientToken", "m-1")]), img);
    assert_eq!(h.ok("DescribeImages", &[R, ("ImageOwnerAlias", "self")])["TotalCount"], 1);
}

#[test]
fn a_failed_create_leaves_its_token_free() {
    let h = Harness::new(0);
    h.admin("fault-inject", json!({"Operation": "create", "Count": 1}));
    let e = create_disk_with_token(&h, "tok-f", "40").unwrap_err();
    assert_eq!(e.code, Code::InternalError);
    assert_eq!(h.ok("DescribeDisks", &[R])["TotalCount"], 0);
    let ok = create_disk_with_token(&h, "tok-f", "40").unwrap();
    assert_eq!(h.ok("DescribeDisks", &[R])["TotalCount"], 1);
    assert_eq!(h.disk(ok["DiskId"].as_str().unwrap())["DiskId"], ok["DiskId"]);
}

#[test]
fn concurrent_calls_with_one_token_create_one_resource() {
    let h = Arc::new(Harness::new(0));
    for round in 0..5 {
        let token = format!("race-{round}");
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let answers: Vec<Value> = (0..8)
            .map(|_| {
                let (h, token, barrier) = (h.clone(), token.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    create_disk_with_token(&h, &token, "40").unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
        assert_eq!(h.ok("DescribeDisks", &[R])["TotalCount"], round + 1);
    }
}

#[test]
fn disabled_and_new_keys_take_effect_at_once() {
    let h = Harness::new(0);
    let k = h.control.lookup("ak").unwrap();
    assert!(k.enabled);
    h.admin("key-disable", json!({"AccessKeyId": "ak"}));
    assert!(!h.control.lookup("ak").unwrap().enabled, "the cache must not outlive the change");
    h.admin("key-enable", json!({"AccessKeyId": "ak"}));
    assert!(h.control.lookup("ak").unwrap().enabled);
    assert!(h.control.lookup("nope").is_none());
}

#[test]
fn counts_survive_release_and_reopen() {
    let h = Harness::new(0);
    let ds = make_disks(&h, 4);
    for d in &ds {
        h.wait("Available", || h.disk(d));
    }
    h.ok("DeleteDisk", &[("DiskId", &ds[0])]);
    assert_eq!(h.ok("DescribeDisks", &[R])["TotalCount"], 3);
    let h = h.reopen();
    assert_eq!(h.ok("DescribeDisks", &[R])["TotalCount"], 3);
    assert_eq!(h.ok("DescribeDisks", &[("RegionId", "cn-shanghai")])["TotalCount"], 0);
}

/// A store whose next create fails part way (`Failed`: it may have happened).
struct Uncertain {
    inner: Arc<store::Engine>,
    fail_next_create: std::sync::atomic::AtomicBool,
}

impl control::volumes::Volumes for Uncertain {
    fn create(&self, volume: &str, size_bytes: u64, source: Option<&str>) -> control::volumes::VolumeResult {
        if self.fail_next_create.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(control::volumes::VolumeError::Failed("I/O error".into()));
        }
        self.inner.create(volume, size_bytes, source)
    }
    fn snapshot(&self, volume: &str, snapshot: &str) -> control::volumes::VolumeResult {
        self.inner.snapshot(volume, snapshot)
    }
    fn snapshot_group(&self, members: &[(&str, &str)]) -> control::volumes::VolumeResult {
        self.inner.snapshot_group(members)
    }
    fn copy_snapshot(&self, from: &str, to: &str) -> control::volumes::VolumeResult {
        self.inner.copy_snapshot(from, to)
    }
    fn reset(&self, volume: &str, snapshot: &str) -> control::volumes::VolumeResult {
        self.inner.reset(volume, snapshot)
    }
    fn resize(&self, volume: &str, size_bytes: u64) -> control::volumes::VolumeResult {
        self.inner.resize(volume, size_bytes)
    }
    fn reinit(&self, volume: &str, source: Option<&str>) -> control::volumes::VolumeResult {
        self.inner.reinit(volume, source)
    }
    fn delete_volume(&self, volume: &str) -> control::volumes::VolumeResult {
        self.inner.delete_volume(volume)
    }
    fn delete_snapshot(&self, snapshot: &str) -> control::volumes::VolumeResult {
        self.inner.delete_snapshot(snapshot)
    }
    fn fill(
        &self,
        volume: &str,
        source: &mut dyn std::io::Read,
        progress: &mut dyn FnMut(u64),
    ) -> control::volumes::VolumeResult {
        self.inner.fill(volume, source, progress)
    }
}

#[test]
fn after_an_uncertain_failure_the_token_still_names_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store::Engine::open(&dir.path().join("store")).unwrap();
    let flaky = Uncertain { inner: engine, fail_next_create: true.into() };
    let c = control::Control::open(dir.path(), control::config::Config::default(), Box::new(flaky)).unwrap();
    let acct = c.bootstrap(Some(("ak".into(), "secret".into()))).unwrap().account_id;
    let call = |p: &[(&str, &str)]| {
        let p = ecs_api::params::Params::from_pairs(p.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        c.handle(&acct, ecs_api::Action::parse("CreateDisk", &p).unwrap())
    };
    let p = [R, ("ZoneId", "cn-hangzhou-h"), ("Size", "40"), ("ClientToken", "uncertain")];
    assert_eq!(call(&p).unwrap_err().code, Code::InternalError);
    // The disk stays (its intent is kept for replay), so the retry names it and makes no other.
    let retry = call(&p).unwrap();
    let listed = |c: &control::Control| {
        let q = ecs_api::params::Params::from_pairs([R]);
        c.handle(&acct, ecs_api::Action::parse("DescribeDisks", &q).unwrap()).unwrap()
    };
    let v = listed(&c);
    assert_eq!(v["TotalCount"], 1);
    assert_eq!(v["Disks"]["Disk"][0]["DiskId"], retry["DiskId"]);
}
