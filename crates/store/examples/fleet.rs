#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The store at fleet scale: build a store with many volumes and snapshots through the public
//! `Engine` API (the calls the server makes for CreateDisk and CreateSnapshot), then restart it
//! from the log alone and from a checkpoint, each restart in a fresh process, and report open
//! time (min/median/max), resident memory and metadata sizes per volume and per snapshot.
//!
//! ```text
//! cargo run --release -p store --example fleet                       # quick: 200 volumes
//! cargo run --release -p store --example fleet -- volumes=10000 snaps=10 blocks=8
//! ```
//!
//! Arguments (`key=value`, or the environment variable `FLEET_<KEY>`): `volumes` (200),
//! `snaps` per volume (10), `blocks` written per volume before its first snapshot (8; one more
//! is written before every snapshot, so each snapshot's layer owns a block), `reopens` (3),
//! `cache` (`none` = O_DIRECT like the server's default, or `writeback`), `dir` (a fresh
//! directory under the system temp dir; removed afterwards unless given), `size_gib` per
//! volume (40, sparse), `delete` (1: finally delete every other snapshot and time the GC
//! pass that folds their layers away), `log_mib` (0: after the checkpoint, write scattered
//! 4 KiB blocks until `meta.log` holds this many MiB, just under the 64 MiB at which the
//! engine checkpoints, and time the open that replays it on top of the checkpoint: the
//! longest replay a restart can meet).
//!
//! Internally the same binary is run as `fleet open <dir> <cache> [checkpoint]` for each
//! restart, so that memory is that of a process that did nothing but open the store.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use store::{BlockWrite, Engine, Options};

const KIB: u64 = 1024;
const GIB: u64 = 1 << 30;

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn mem_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Child mode: open the store, time it, optionally checkpoint, time one GC pass, print
/// `key=value` pairs on one line.
fn child(dir: &Path, direct_io: bool, checkpoint: bool) {
    let (base, _) = mem_kib();
    let t = Instant::now();
    let engine = Engine::open_with(dir, Options { direct_io }).unwrap();
    let open = t.elapsed();
    let (rss, hwm) = mem_kib();
    // One GC pass with nothing to collect: what the GC thread costs every time it wakes,
    // holding the engine lock.
    let t = Instant::now();
    engine.gc().unwrap();
    let gc = t.elapsed();
    let mut line = format!("open_ms={:.1} rss_kib={rss} hwm_kib={hwm} base_kib={base} gc_ms={:.1}", ms(open), ms(gc));
    if checkpoint {
        let t = Instant::now();
        engine.checkpoint().unwrap();
        line += &format!(" checkpoint_ms={:.1}", ms(t.elapsed()));
    }
    println!("{line}");
}

fn parse(line: &str) -> HashMap<String, f64> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_string(), v)))
        .collect()
}

fn run_child(dir: &Path, cache: &str, checkpoint: bool) -> HashMap<String, f64> {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.arg("open").arg(dir).arg(cache);
    if checkpoint {
        cmd.arg("checkpoint");
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    parse(stdout.lines().last().unwrap_or_default())
}

struct Args(HashMap<String, String>);

impl Args {
    fn get<T: std::str::FromStr>(&self, key: &str, default: T) -> T {
        self.0
            .get(key)
            .cloned()
            .or_else(|| std::env::var(format!("FLEET_{}", key.to_uppercase())).ok())
            .map(|v| v.parse().unwrap_or_else(|_| panic!("bad value for {key}: {v}")))
            .unwrap_or(default)
    }
}

fn stats(xs: &mut [f64]) -> String {
    xs.sort_by(f64::total_cmp);
    format!("{:.0} / {:.0} / {:.0} ms", xs[0], xs[xs.len() / 2], xs[xs.len() - 1])
}

fn reopen(dir: &Path, cache: &str, n: usize, what: &str, volumes: u64, snaps: u64) {
    let runs: Vec<_> = (0..n).map(|_| run_child(dir, cache, false)).collect();
    let mut open: Vec<f64> = runs.iter().map(|r| r["open_ms"]).collect();
    let mut gc: Vec<f64> = runs.iter().map(|r| r["gc_ms"]).collect();
    // Growth over the process before it opened the store (the binary itself, about 2 MiB).
    let grown = |key: &str| runs.iter().map(|r| r[key] - r["base_kib"]).fold(0.0, f64::max) * KIB as f64;
    let (rss, hwm) = (grown("rss_kib"), grown("hwm_kib"));
    println!("| open {what} ({n} runs), min / median / max | {} |", stats(&mut open));
    println!("| one idle GC pass after that open, min / median / max | {} |", stats(&mut gc));
    println!(
        "| RSS growth by open {what}: VmRSS / VmHWM | {:.0} MiB / {:.0} MiB |",
        rss / (1 << 20) as f64,
        hwm / (1 << 20) as f64
    );
    println!(
        "| RSS growth by open {what}, per volume / per snapshot (VmRSS) | {:.0} B / {:.0} B |",
        rss / volumes as f64,
        rss / (volumes * snaps).max(1) as f64
    );
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("open") {
        let dir = PathBuf::from(&argv[1]);
        child(&dir, argv[2] == "none", argv.get(3).map(String::as_str) == Some("checkpoint"));
        return;
    }
    let args = Args(argv.iter().filter_map(|a| a.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect());
    let volumes: u64 = args.get("volumes", 200);
    let snaps: u64 = args.get("snaps", 10);
    let blocks: u64 = args.get("blocks", 8);
    let reopens: usize = args.get("reopens", 3);
    let cache: String = args.get("cache", "none".to_string());
    let size = args.get("size_gib", 40u64) * GIB;
    let delete: u64 = args.get("delete", 1);
    let log_mib: u64 = args.get("log_mib", 0);
    let direct_io = cache == "none";
    let (_tmp, root) = match args.0.get("dir") {
        Some(d) => (None, PathBuf::from(d)),
        None => {
            let t = tempfile::Builder::new().prefix("fleet").tempdir().unwrap();
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    let dir = root.join("store");
    let total_snaps = volumes * snaps;
    println!(
        "fleet: {volumes} volumes of {} GiB, {snaps} snapshots each ({total_snaps}), {blocks}+{snaps} blocks written per volume, cache={cache}, {}",
        size / GIB,
        dir.display()
    );

    // Build, with the GC thread running as in the server.
    let engine = Engine::open_with(&dir, Options { direct_io }).unwrap();
    engine.start_gc_thread();
    let block = vec![0x5au8; 4096];
    let size_blocks = size / 4096;
    // Spread blocks over the disk, different for every volume, so maps are not one run.
    let at =
        |v: u64, i: u64| (v.wrapping_mul(0x9E37_79B9) + i.wrapping_mul(0x2545_F491_4F6C_DD1D)) % size_blocks * 4096;
    let (mut t_create, mut t_write, mut t_snap) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut worst_create, mut worst_snap) = (Duration::ZERO, Duration::ZERO);
    let started = Instant::now();
    for v in 0..volumes {
        let name = format!("d-{v:05}");
        let t = Instant::now();
        engine.create_volume(&name, size, None).unwrap();
        let d = t.elapsed();
        t_create += d;
        worst_create = worst_create.max(d);
        let vol = engine.volume(&name).unwrap();
        let t = Instant::now();
        for i in 0..blocks {
            vol.write_at(&block, at(v, i), false).unwrap();
        }
        t_write += t.elapsed();
        for s in 0..snaps {
            let t = Instant::now();
            vol.write_at(&block, at(v, blocks + s), false).unwrap();
            t_write += t.elapsed();
            let t = Instant::now();
            engine.snapshot(&name, &format!("s-{v:05}-{s:02}")).unwrap();
            let d = t.elapsed();
            t_snap += d;
            worst_snap = worst_snap.max(d);
        }
        if (v + 1) % (volumes / 10).max(1) == 0 {
            eprintln!("  {} volumes, {:.1} s", v + 1, started.elapsed().as_secs_f64());
        }
    }
    engine.sync().unwrap();
    let build = started.elapsed();
    let (rss_built, _) = mem_kib();
    drop(engine);
    std::thread::sleep(Duration::from_millis(200)); // let the GC thread see the engine go

    let log = file_len(&dir.join("meta.log"));
    let ckpt = file_len(&dir.join("meta.ckpt"));
    println!("\n| measure | value |\n|---|---|");
    println!(
        "| build: total (create, write, snapshot) | {:.1} s ({:.1} / {:.1} / {:.1} s) |",
        build.as_secs_f64(),
        t_create.as_secs_f64(),
        t_write.as_secs_f64(),
        t_snap.as_secs_f64()
    );
    println!(
        "| create_volume rate, mean / worst latency | {:.0}/s, {:.2} / {:.2} ms |",
        volumes as f64 / t_create.as_secs_f64(),
        ms(t_create) / volumes as f64,
        ms(worst_create)
    );
    println!(
        "| snapshot rate, mean / worst latency | {:.0}/s, {:.2} / {:.2} ms |",
        total_snaps as f64 / t_snap.as_secs_f64(),
        ms(t_snap) / total_snaps.max(1) as f64,
        ms(worst_snap)
    );
    println!("| RSS of the building process at the end | {:.0} MiB |", rss_built as f64 / 1024.0);
    println!(
        "| meta.log after the build (checkpoint: {ckpt} B) | {:.1} MiB: {:.0} B per volume, {:.0} B per snapshot |",
        log as f64 / (1 << 20) as f64,
        log as f64 / volumes as f64,
        log as f64 / total_snaps.max(1) as f64
    );

    if ckpt == 0 {
        reopen(&dir, &cache, reopens, "from the log alone", volumes, snaps);
    } else {
        println!("| (the log passed the checkpoint threshold during the build: no log-only open) | |");
    }
    let c = run_child(&dir, &cache, true);
    println!("| checkpoint (forced) | {:.0} ms |", c["checkpoint_ms"]);
    let ckpt = file_len(&dir.join("meta.ckpt"));
    println!(
        "| meta.ckpt | {:.1} MiB: {:.0} B per volume, {:.0} B per snapshot |",
        ckpt as f64 / (1 << 20) as f64,
        ckpt as f64 / volumes as f64,
        ckpt as f64 / total_snaps.max(1) as f64
    );
    reopen(&dir, &cache, reopens, "from the checkpoint", volumes, snaps);

    if log_mib > 0 {
        // Page cache for the fill whatever the mode: replay does not depend on it, and
        // O_DIRECT would take minutes to write the gigabytes behind such a log.
        let engine = Engine::open_with(&dir, Options { direct_io: false }).unwrap();
        let vols: Vec<_> = (0..volumes).map(|v| engine.volume(&format!("d-{v:05}")).unwrap()).collect();
        let t = Instant::now();
        let mut n = 0u64;
        'fill: for round in 0.. {
            for (v, vol) in vols.iter().enumerate() {
                vol.write_at(&block, at(v as u64, blocks + snaps + round), false).unwrap();
                n += 1;
                // Up to 1 MiB of records is buffered before it reaches the file.
                if n.is_multiple_of(10_000) && file_len(&dir.join("meta.log")) + (1 << 20) >= log_mib << 20 {
                    break 'fill;
                }
            }
        }
        engine.sync().unwrap();
        drop(vols);
        drop(engine);
        let log = file_len(&dir.join("meta.log"));
        println!(
            "| long log: {n} scattered 4 KiB writes after the checkpoint ({:.0} s) | meta.log {:.1} MiB |",
            t.elapsed().as_secs_f64(),
            log as f64 / (1 << 20) as f64
        );
        reopen(&dir, &cache, reopens, "from the checkpoint + long log", volumes, snaps);
        assert_eq!(file_len(&dir.join("meta.log")), log, "the opens must not have checkpointed");
    }

    if delete == 1 && snaps >= 2 {
        // Deleting every other snapshot unpins half the layers, each with one child: the
        // GC pass folds them all.
        let engine = Engine::open_with(&dir, Options { direct_io }).unwrap();
        let t = Instant::now();
        for v in 0..volumes {
            for s in (0..snaps).step_by(2) {
                engine.delete_snapshot(&format!("s-{v:05}-{s:02}")).unwrap();
            }
        }
        let del = t.elapsed();
        let layers = engine.layer_count().unwrap();
        let t = Instant::now();
        engine.gc().unwrap();
        let gc = t.elapsed();
        println!(
            "| delete every other snapshot ({}): total / GC pass folding {} layers | {:.1} s / {:.0} ms |",
            volumes * snaps.div_ceil(2),
            layers - engine.layer_count().unwrap(),
            del.as_secs_f64(),
            ms(gc)
        );
    }
}
