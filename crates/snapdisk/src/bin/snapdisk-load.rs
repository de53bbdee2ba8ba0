//! Load generator (not a test): signed ECS requests from loopback threads, reporting requests
//! per second and latency percentiles. `scripts/load.sh` and `scripts/bench-fleet.sh` start a
//! server and run it.
//!
//! snapdisk-load --endpoint http://127.0.0.1:8470 --ak ID --secret S --action describe-disks
//! snapdisk-load ... --action call --call DescribeSnapshots --param RegionId=cn-hangzhou --param DiskId=d-x
//! snapdisk-load ... --action seed --disks 10000 --instances 1000 --snapshots-per-disk 10
//! snapdisk-load ... --action describe-disks --threads 1 --rate 20 --tally   (scripts/soak.py)

use anyhow::{Context, bail};
use clap::Parser;
use ecs_api::auth::v1;
use ecs_api::params::Params;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8470")]
    endpoint: String,
    #[arg(long, env = "SNAPDISK_ACCESS_KEY_ID")]
    ak: String,
    #[arg(long, env = "SNAPDISK_ACCESS_KEY_SECRET")]
    secret: String,
    /// describe-disks, reset-dry-run, running-disk (prints a writable NBD export and exits),
    /// call (`--call` with `--param`s), create-snapshots (each thread snapshots a disk of its
    /// own `--count` times; disks from `--disks-file` or made), seed (creates a fleet through
    /// the API and prints its ids as JSON), or fixture (prints a Stopped disk and snapshot for
    /// ResetDisk DryRun).
    #[arg(long, default_value = "describe-disks")]
    action: String,
    #[arg(long, default_value_t = 8)]
    threads: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The action `--action call` sends.
    #[arg(long)]
    call: Option<String>,
    /// A parameter of `--action call`, `Name=Value`; repeatable.
    #[arg(long = "param")]
    params: Vec<String>,
    /// The HTTP status `--action call` expects (400 for DryRun).
    #[arg(long, default_value_t = 200)]
    expect: u16,
    /// Seeding: disks, instances, and snapshots per disk.
    #[arg(long, default_value_t = 0)]
    disks: usize,
    #[arg(long, default_value_t = 0)]
    instances: usize,
    #[arg(long, default_value_t = 0)]
    snapshots_per_disk: usize,
    /// create-snapshots: snapshots per thread.
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// create-snapshots: a file of disk ids, one a line (else each thread makes a disk).
    #[arg(long)]
    disks_file: Option<std::path::PathBuf>,
    /// Print one JSON line per measurement (for scripts).
    #[arg(long)]
    json: bool,
    /// With `--action call`: send the call once and print the response body as received.
    #[arg(long)]
    dump: bool,
    /// Requests a second across all threads, sent on a fixed schedule (0: as fast as each
    /// thread can).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Keep going whatever the answer: count answers by error `Code` (`OK` for the expected
    /// status, `transport` for a failed connection) instead of stopping at the first
    /// unexpected one. Latency covers every answer.
    #[arg(long)]
    tally: bool,
}

struct Client {
    agent: ureq::Agent,
    endpoint: String,
    ak: String,
    secret: String,
    nonce: Arc<AtomicU64>,
}

impl Client {
    /// One HMAC-SHA1 signed POST with every parameter in the query, as the Tea SDK's `v2` mode
    /// sends it; the answer parsed.
    fn call(&self, action: &str, params: &[(&str, &str)]) -> anyhow::Result<(u16, Value)> {
        let (status, body) = self.call_raw(action, params)?;
        Ok((status, serde_json::from_str(&body)?))
    }

    /// The request's URL, signed with a fresh nonce and timestamp.
    fn signed_url(&self, action: &str, params: &[(&str, &str)]) -> String {
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
            // A parameter the caller gives (Format=XML) replaces the default.
            if !params.iter().any(|(p, _)| *p == k) {
                all.push((k.to_string(), v.to_string()));
            }
        }
        let sig = v1::sign(&self.secret, &v1::string_to_sign("POST", &Params::from_pairs(all.clone())));
        let mut q = form_urlencoded_pairs(&all);
        q.push_str("&Signature=");
        q.push_str(&ecs_api::params::percent_encode(&sig));
        format!("{}/?{q}", self.endpoint)
    }

    /// The same request, its body left unparsed: what the measurement loop sends, so that the
    /// client's cost does not grow with the response's size.
    fn call_raw(&self, action: &str, params: &[(&str, &str)]) -> anyhow::Result<(u16, String)> {
        let url = self.signed_url(action, params);
        self.raw(&url)
    }

    fn raw(&self, url: &str) -> anyhow::Result<(u16, String)> {
        match self.agent.post(url).call() {
            Ok(r) => Ok((r.status(), r.into_string()?)),
            Err(ureq::Error::Status(code, r)) => Ok((code, r.into_string()?)),
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
    let (params, action, expect): (Vec<(String, String)>, String, u16) = match a.action.as_str() {
        "describe-disks" => (vec![("RegionId".into(), "cn-hangzhou".into())], "DescribeDisks".into(), 200),
        "reset-dry-run" => {
            let (d, s) = setup(&client(0))?;
            (
                vec![("DiskId".into(), d), ("SnapshotId".into(), s), ("DryRun".into(), "true".into())],
                "ResetDisk".into(),
                400,
            )
        }
        "running-disk" => {
            // For the NBD benchmark: a data disk of a Running instance, i.e. a writable export.
            let (_, d) = running_with_data_disk(&client(0))?;
            println!("{d}");
            return Ok(());
        }
        "fixture" => {
            let (d, s) = setup(&client(0))?;
            println!("{}", serde_json::json!({"DiskId": d, "SnapshotId": s}));
            return Ok(());
        }
        "seed" => return seed::run(&a, &client),
        "create-snapshots" => return seed::create_snapshots(&a, &client),
        "call" => {
            let params = a
                .params
                .iter()
                .map(|p| p.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                .collect::<Option<Vec<_>>>()
                .context("--param takes Name=Value")?;
            (params, a.call.clone().context("--action call needs --call")?, a.expect)
        }
        other => bail!("unknown --action {other}"),
    };
    if a.dump {
        let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        print!("{}", client(0).call_raw(&action, &p)?.1);
        return Ok(());
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(a.seconds);
    let threads = a.threads.max(1);
    // Each thread's gap between requests, so that together they send `--rate` a second.
    let pace = (a.rate > 0.0).then(|| Duration::from_secs_f64(threads as f64 / a.rate));
    let tally_mode = a.tally;
    let workers: Vec<_> = (0..threads)
        .map(|n| {
            let c = client(n);
            let params = params.clone();
            let action = action.clone();
            std::thread::spawn(move || -> anyhow::Result<(Vec<u32>, Tally)> {
                let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let mut lat = Vec::new();
                let mut tally = Tally::new();
                let mut next = pace.map(|gap| start + gap.mul_f64(n as f64 / threads as f64));
                while Instant::now() < deadline {
                    if let (Some(at), Some(gap)) = (next, pace) {
                        // A fixed schedule: a late request goes at once, and the next one keeps
                        // its own time (no drift, no catching up in a burst beyond one).
                        if let Some(wait) = at.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        next = Some((at + gap).max(Instant::now()));
                    }
                    let t = Instant::now();
                    let answer = c.call_raw(&action, &p);
                    lat.push(t.elapsed().as_micros() as u32);
                    match answer {
                        Ok((status, _)) if status == expect => *tally.entry("OK".into()).or_default() += 1,
                        Ok((status, body)) if tally_mode => *tally.entry(error_code(status, &body)).or_default() += 1,
                        Ok((status, body)) => bail!("unexpected {status}: {body}"),
                        Err(e) if tally_mode => {
                            note_first_failure(&e);
                            *tally.entry("transport".into()).or_default() += 1
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok((lat, tally))
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut tally = Tally::new();
    for w in workers {
        let (l, t) = w.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
        lat.extend(l);
        for (code, n) in t {
            *tally.entry(code).or_default() += n;
        }
    }
    let what = format!("{action}{}", if expect == 400 { " DryRun" } else { "" });
    report(&a, &what, lat, a.seconds as f64, a.tally.then_some(&tally));
    Ok(())
}

/// Answers by error code (`OK` for the expected status).
type Tally = std::collections::BTreeMap<String, u64>;

/// The `Code` of an error answer (JSON or XML), else its HTTP status.
fn error_code(status: u16, body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body)
        && let Some(code) = v["Code"].as_str()
    {
        return code.to_string();
    }
    match body.split_once("<Code>").and_then(|(_, rest)| rest.split_once("</Code>")) {
        Some((code, _)) => code.to_string(),
        None => format!("HTTP {status}"),
    }
}

/// The first transport failure of a `--tally` run is worth seeing; the rest are counted.
fn note_first_failure(e: &anyhow::Error) {
    static SHOWN: std::sync::Once = std::sync::Once::new();
    SHOWN.call_once(|| eprintln!("snapdisk-load: request failed (counted as `transport`): {e:#}"));
}

/// Print requests per second and latency percentiles of one measurement (µs samples).
fn report(a: &Args, what: &str, mut lat: Vec<u32>, seconds: f64, tally: Option<&Tally>) {
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0) as f64
            / 1000.0
    };
    let rate = lat.len() as f64 / seconds;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"what": what, "requests": lat.len(), "seconds": seconds, "rps": rate,
                "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0), "threads": a.threads,
                "answers": tally})
        );
    } else {
        println!(
            "{what}: {} requests in {seconds:.1}s, {rate:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} threads)",
            lat.len(),
            pct(0.50),
            pct(0.99),
            pct(1.0),
            a.threads
        );
        if let Some(t) = tally {
            println!("answers: {t:?}");
        }
    }
}

mod seed {
    //! Building a fleet through the real API: the same requests a user sends, many at a time.

    use super::{Args, Client, report};
    use anyhow::{Context, bail};
    use serde_json::{Value, json};
    use std::sync::Mutex;
    use std::time::Instant;

    fn must(c: &Client, action: &str, p: &[(&str, &str)]) -> anyhow::Result<Value> {
        let (status, v) = c.call(action, p)?;
        if status != 200 {
            bail!("{action}: {status} {v}");
        }
        Ok(v)
    }

    /// Run `work(thread, client, item)` over `items` split across the threads; returns the results in order.
    fn spread<T: Send>(
        a: &Args,
        client: &(dyn Fn(usize) -> Client + Sync),
        items: usize,
        work: &(dyn Fn(&Client, usize) -> anyhow::Result<T> + Sync),
    ) -> anyhow::Result<Vec<T>> {
        let out: Mutex<Vec<Option<T>>> = Mutex::new((0..items).map(|_| None).collect());
        std::thread::scope(|s| -> anyhow::Result<()> {
            let handles: Vec<_> = (0..a.threads)
                .map(|t| {
                    let out = &out;
                    s.spawn(move || -> anyhow::Result<()> {
                        let c = client(t);
                        for i in (t..items).step_by(a.threads) {
                            let r = work(&c, i)?;
                            out.lock().map_err(|_| anyhow::anyhow!("poisoned"))?[i] = Some(r);
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join().map_err(|_| anyhow::anyhow!("seed worker panicked"))??;
            }
            Ok(())
        })?;
        out.into_inner().map_err(|_| anyhow::anyhow!("poisoned"))?.into_iter().map(|o| o.context("missing")).collect()
    }

    /// Instances (RunInstances, 100 at a time), then disks, then snapshots of every disk.
    pub fn run(a: &Args, client: &(dyn Fn(usize) -> Client + Sync)) -> anyhow::Result<()> {
        let r = ("RegionId", "cn-hangzhou");
        let t0 = Instant::now();
        let batches = a.instances.div_ceil(100);
        let instances: Vec<Vec<String>> = spread(a, client, batches, &|c, b| {
            let n = (a.instances - b * 100).min(100).to_string();
            let v = must(
                c,
                "RunInstances",
                &[r, ("ImageId", "blank_x64_20G.vhd"), ("InstanceType", "ecs.g7.large"), ("Amount", &n)],
            )?;
            Ok(v["InstanceIdSets"]["InstanceIdSet"]
                .as_array()
                .map(|a| a.iter().filter_map(|i| i.as_str().map(String::from)).collect())
                .unwrap_or_default())
        })?;
        let t1 = Instant::now();
        let disks: Vec<String> = spread(a, client, a.disks, &|c, _| {
            let v = must(c, "CreateDisk", &[r, ("ZoneId", "cn-hangzhou-h"), ("Size", "40")])?;
            v["DiskId"].as_str().map(String::from).context("no DiskId")
        })?;
        let t2 = Instant::now();
        // Snapshots of one disk are taken one after another (one may be in progress at a time).
        let snaps: Vec<Vec<String>> = spread(a, client, a.disks, &|c, i| {
            let mut ids = Vec::new();
            for _ in 0..a.snapshots_per_disk {
                let v = must(c, "CreateSnapshot", &[("DiskId", disks[i].as_str())])?;
                ids.push(v["SnapshotId"].as_str().map(String::from).context("no SnapshotId")?);
            }
            Ok(ids)
        })?;
        let t3 = Instant::now();
        let rate = |n: usize, from: Instant, to: Instant| n as f64 / (to - from).as_secs_f64().max(1e-9);
        let nsnaps: usize = snaps.iter().map(Vec::len).sum();
        println!(
            "{}",
            json!({
                "instances": instances.concat(), "disks": disks,
                "snapshot_of_first_disk": snaps.first().cloned().unwrap_or_default(),
                "rates": {"RunInstances_instances_per_s": rate(a.instances, t0, t1),
                          "CreateDisk_per_s": rate(a.disks, t1, t2),
                          "CreateSnapshot_per_s": rate(nsnaps, t2, t3)},
                "snapshots": nsnaps,
            })
        );
        Ok(())
    }

    /// CreateSnapshot throughput: each thread snapshots its own disk `--count` times.
    pub fn create_snapshots(a: &Args, client: &(dyn Fn(usize) -> Client + Sync)) -> anyhow::Result<()> {
        let r = ("RegionId", "cn-hangzhou");
        let mut disks: Vec<String> = match &a.disks_file {
            Some(f) => {
                std::fs::read_to_string(f)?.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
            }
            None => Vec::new(),
        };
        if disks.len() < a.threads {
            let made = spread(a, client, a.threads - disks.len(), &|c, _| {
                let v = must(c, "CreateDisk", &[r, ("ZoneId", "cn-hangzhou-h"), ("Size", "40")])?;
                v["DiskId"].as_str().map(String::from).context("no DiskId")
            })?;
            disks.extend(made);
        }
        let start = Instant::now();
        let lat: Vec<Vec<u32>> = spread(a, client, a.threads, &|c, t| {
            let mut lat = Vec::with_capacity(a.count);
            for _ in 0..a.count {
                let t0 = Instant::now();
                must(c, "CreateSnapshot", &[("DiskId", disks[t].as_str())])?;
                lat.push(t0.elapsed().as_micros() as u32);
            }
            Ok(lat)
        })?;
        report(a, "CreateSnapshot", lat.concat(), start.elapsed().as_secs_f64(), None);
        Ok(())
    }
}
