//! Load generator (not a test): signed ECS requests from loopback threads, reporting requests
//! per second and latency percentiles. `scripts/load.sh` starts a server and runs it.
//!
//! snapdisk-load --endpoint http://127.0.0.1:8470 --ak ID --secret S --action describe-disks

use anyhow::{Context, bail};
use clap::Parser;
use ecs_api::auth::v1;
use ecs_api::params::Params;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8470")]
    endpoint: String,
    #[arg(long, env = "SNAPDISK_ACCESS_KEY_ID")]
    ak: String,
    #[arg(long, env = "SNAPDISK_ACCESS_KEY_SECRET")]
    secret: String,
    /// describe-disks, reset-dry-run, or running-disk (prints a writable NBD export and exits)
    #[arg(long, default_value = "describe-disks")]
    action: String,
    #[arg(long, default_value_t = 8)]
    threads: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

struct Client {
    agent: ureq::Agent,
    endpoint: String,
    ak: String,
    secret: String,
    nonce: Arc<AtomicU64>,
}

impl Client {
    /// One HMAC-SHA1 signed POST with every parameter in the query, as the Tea SDK's `v2` mode sends it.
    fn call(&self, action: &str, params: &[(&str, &str)]) -> anyhow::Result<(u16, Value)> {
        let nonce = format!("load-{}-{}", std::process::id(), self.nonce.fetch_add(1, Ordering::Relaxed));
        let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut all: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        for (k, v) in [
            ("Action", action),
            ("Version", "2014-05-26"),
            ("Format", "JSON"),
            ("AccessKeyId", &self.ak),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", &nonce),
            ("Timestamp", &ts),
        ] {
            all.push((k.to_string(), v.to_string()));
        }
        let sig = v1::sign(&self.secret, &v1::string_to_sign("POST", &Params::from_pairs(all.clone())));
        let mut q = form_urlencoded_pairs(&all);
        q.push_str("&Signature=");
        q.push_str(&ecs_api::params::percent_encode(&sig));
        let url = format!("{}/?{q}", self.endpoint);
        match self.agent.post(&url).call() {
            Ok(r) => Ok((r.status(), r.into_json()?)),
            Err(ureq::Error::Status(code, r)) => Ok((code, r.into_json()?)),
            Err(e) => Err(e.into()),
        }
    }
}

fn form_urlencoded_pairs(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", ecs_api::params::percent_encode(k), ecs_api::params::percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn wait_status(
    c: &Client,
    action: &str,
    params: &[(&str, &str)],
    path: (&str, &str),
    want: &str,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let (_, v) = c.call(action, params)?;
        if v[path.0][path.1][0]["Status"] == want {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("{action} never reached {want}: {v}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Stopped instance with an attached disk and an accomplished snapshot, for ResetDisk DryRun.
/// A Running instance with a 40 GiB data disk In_use: (instance, disk).
fn running_with_data_disk(c: &Client) -> anyhow::Result<(String, String)> {
    let r = |v: &Value, k: &str| v[k].as_str().map(String::from).with_context(|| format!("no {k} in {v}"));
    let (_, v) = c.call(
        "RunInstances",
        &[
            ("RegionId", "cn-hangzhou"),
            ("ImageId", "blank_x64_20G.vhd"),
            ("InstanceType", "ecs.g7.large"),
            ("DataDisk.1.Size", "40"),
        ],
    )?;
    let i = v["InstanceIdSets"]["InstanceIdSet"][0].as_str().map(String::from).with_context(|| format!("{v}"))?;
    let ids = format!("[\"{i}\"]");
    let running = ("Instances", "Instance");
    wait_status(c, "DescribeInstances", &[("RegionId", "cn-hangzhou"), ("InstanceIds", &ids)], running, "Running")?;
    let (_, v) = c.call("DescribeDisks", &[("RegionId", "cn-hangzhou"), ("InstanceId", &i), ("DiskType", "data")])?;
    let d = r(&v["Disks"]["Disk"][0], "DiskId")?;
    let dids = format!("[\"{d}\"]");
    wait_status(c, "DescribeDisks", &[("RegionId", "cn-hangzhou"), ("DiskIds", &dids)], ("Disks", "Disk"), "In_use")?;
    Ok((i, d))
}

/// A Stopped instance with an attached disk and an accomplished snapshot, for ResetDisk DryRun.
fn setup(c: &Client) -> anyhow::Result<(String, String)> {
    let r = |v: &Value, k: &str| v[k].as_str().map(String::from).with_context(|| format!("no {k} in {v}"));
    let (i, d) = running_with_data_disk(c)?;
    let ids = format!("[\"{i}\"]");
    let (_, v) = c.call("CreateSnapshot", &[("DiskId", &d)])?;
    let s = r(&v, "SnapshotId")?;
    let sids = format!("[\"{s}\"]");
    wait_status(
        c,
        "DescribeSnapshots",
        &[("RegionId", "cn-hangzhou"), ("SnapshotIds", &sids)],
        ("Snapshots", "Snapshot"),
        "accomplished",
    )?;
    c.call("StopInstance", &[("InstanceId", &i)])?;
    wait_status(
        c,
        "DescribeInstances",
        &[("RegionId", "cn-hangzhou"), ("InstanceIds", &ids)],
        ("Instances", "Instance"),
        "Stopped",
    )?;
    Ok((d, s))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let nonce = Arc::new(AtomicU64::new(0));
    let client = |_: usize| Client {
        agent: ureq::AgentBuilder::new().max_idle_connections_per_host(1).build(),
        endpoint: a.endpoint.trim_end_matches('/').to_string(),
        ak: a.ak.clone(),
        secret: a.secret.clone(),
        nonce: nonce.clone(),
    };
    let (params, action, expect): (Vec<(String, String)>, &str, u16) = match a.action.as_str() {
        "describe-disks" => (vec![("RegionId".into(), "cn-hangzhou".into())], "DescribeDisks", 200),
        "reset-dry-run" => {
            let (d, s) = setup(&client(0))?;
            (vec![("DiskId".into(), d), ("SnapshotId".into(), s), ("DryRun".into(), "true".into())], "ResetDisk", 400)
        }
        "running-disk" => {
            // For the NBD benchmark: a data disk of a Running instance, i.e. a writable export.
            let (_, d) = running_with_data_disk(&client(0))?;
            println!("{d}");
            return Ok(());
        }
        other => bail!("unknown --action {other}"),
    };
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let workers: Vec<_> = (0..a.threads)
        .map(|n| {
            let c = client(n);
            let params = params.clone();
            std::thread::spawn(move || -> anyhow::Result<Vec<u32>> {
                let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let (status, body) = c.call(action, &p)?;
                    lat.push(t.elapsed().as_micros() as u32);
                    if status != expect {
                        bail!("unexpected {status}: {body}");
                    }
                }
                Ok(lat)
            })
        })
        .collect();
    let mut lat = Vec::new();
    for w in workers {
        lat.extend(w.join().map_err(|_| anyhow::anyhow!("worker panicked"))??);
    }
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "{action}{}: {} requests in {}s, {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} threads)",
        if expect == 400 { " DryRun" } else { "" },
        lat.len(),
        a.seconds,
        lat.len() as f64 / a.seconds as f64,
        pct(0.50),
        pct(0.99),
        pct(1.0),
        a.threads
    );
    Ok(())
}
