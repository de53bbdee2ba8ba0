//! Storage-engine benchmarks (not tests): `cargo bench -p store --bench engine [-- quick]`.
//! Every figure is measured beside its reference in the same run: snapshot/reset latency at
//! two amounts of data written, throughput against a raw file on the same filesystem, and
//! reads at chain depth 100 against depth 1. Page cache is warm for both sides alike.

#![allow(clippy::unwrap_used)]

use rand::{Rng, SeedableRng};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};
use store::{BlockRead, BlockWrite, Engine};

const TIB: u64 = 1 << 40;
const MIB: u64 = 1 << 20;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Write `bytes` in 1 MiB pieces spread over the 1 TiB disk, then flush.
fn fill(vol: &dyn BlockWrite, bytes: u64, rng: &mut impl Rng) {
    let buf: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8 | 1).collect();
    for _ in 0..bytes / MIB {
        let at = rng.random_range(0..TIB / MIB) * MIB;
        vol.write_at(&buf, at, false).unwrap();
    }
    vol.flush().unwrap();
}

fn snapshot_reset(label: &str, bytes: u64) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine.create_volume("d", TIB, None).unwrap();
    let vol = engine.volume("d").unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    fill(&*vol, bytes, &mut rng);
    engine.snapshot("d", "base").unwrap();
    let (mut snaps, mut resets) = (Vec::new(), Vec::new());
    for i in 0..9 {
        // Some new writes each round, so every snapshot has something to freeze.
        fill(&*vol, 4 * MIB, &mut rng);
        let t = Instant::now();
        engine.snapshot("d", &format!("s{i}")).unwrap();
        snaps.push(t.elapsed());
        fill(&*vol, 4 * MIB, &mut rng);
        let t = Instant::now();
        engine.reset("d", "base").unwrap();
        resets.push(t.elapsed());
    }
    println!(
        "| snapshot / reset, 1 TiB disk, {label} written | {:.3} ms | {:.3} ms |",
        ms(median(snaps)),
        ms(median(resets))
    );
}

struct Tput {
    seq_write: f64,
    seq_read: f64,
    rand_write: f64,
    rand_read: f64,
}

/// Sequential 1 MiB and random 4 KiB I/O through `write`/`read` over `size` bytes.
fn throughput(size: u64, write: &dyn Fn(&[u8], u64), read: &dyn Fn(&mut [u8], u64), flush: &dyn Fn()) -> Tput {
    let buf: Vec<u8> = (0..MIB).map(|i| (i % 253) as u8 | 1).collect();
    let t = Instant::now();
    for i in 0..size / MIB {
        write(&buf, i * MIB);
    }
    flush();
    let seq_write = size as f64 / MIB as f64 / t.elapsed().as_secs_f64();
    let mut rbuf = vec![0u8; MIB as usize];
    let t = Instant::now();
    for i in 0..size / MIB {
        read(&mut rbuf, i * MIB);
    }
    let seq_read = size as f64 / MIB as f64 / t.elapsed().as_secs_f64();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let small = [7u8; 4096];
    let n = 50_000;
    let t = Instant::now();
    for _ in 0..n {
        write(&small, rng.random_range(0..size / 4096) * 4096);
    }
    flush();
    let rand_write = n as f64 / t.elapsed().as_secs_f64();
    let mut sbuf = [0u8; 4096];
    let t = Instant::now();
    for _ in 0..n {
        read(&mut sbuf, rng.random_range(0..size / 4096) * 4096);
    }
    let rand_read = n as f64 / t.elapsed().as_secs_f64();
    Tput { seq_write, seq_read, rand_write, rand_read }
}

fn engine_vs_raw(size: u64) {
    let dir = tempfile::tempdir().unwrap();
    // Alternate the two, twice, and keep each side's best: the page cache and writeback
    // state then favour neither.
    let mut best_raw: Option<Tput> = None;
    let mut best_eng: Option<Tput> = None;
    let keep = |best: &mut Option<Tput>, t: Tput| {
        *best = Some(match best.take() {
            None => t,
            Some(b) => Tput {
                seq_write: b.seq_write.max(t.seq_write),
                seq_read: b.seq_read.max(t.seq_read),
                rand_write: b.rand_write.max(t.rand_write),
                rand_read: b.rand_read.max(t.rand_read),
            },
        })
    };
    for round in 0..2 {
        let path = dir.path().join(format!("raw{round}"));
        let raw = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
        let r = throughput(
            size,
            &|b, o| raw.write_all_at(b, o).unwrap(),
            &|b, o| raw.read_exact_at(b, o).unwrap(),
            &|| raw.sync_data().unwrap(),
        );
        keep(&mut best_raw, r);
        drop(raw);
        std::fs::remove_file(&path).unwrap();
        let sdir = dir.path().join(format!("store{round}"));
        let engine = Engine::open(&sdir).unwrap();
        engine.create_volume("d", size, None).unwrap();
        let v = engine.volume("d").unwrap();
        let e = throughput(size, &|b, o| v.write_at(b, o, false).unwrap(), &|b, o| v.read_at(b, o).unwrap(), &|| {
            v.flush().unwrap()
        });
        keep(&mut best_eng, e);
        drop(v);
        drop(engine);
        std::fs::remove_dir_all(&sdir).unwrap();
    }
    let (e, r) = (best_eng.unwrap(), best_raw.unwrap());
    let row = |name: &str, unit: &str, e: f64, r: f64| {
        println!("| {name} | {e:.0} {unit} | {r:.0} {unit} | {:.0}% |", 100.0 * e / r);
    };
    row("sequential write, 1 MiB", "MiB/s", e.seq_write, r.seq_write);
    row("sequential read, 1 MiB", "MiB/s", e.seq_read, r.seq_read);
    row("random write, 4 KiB, QD1", "IOPS", e.rand_write, r.rand_write);
    row("random read, 4 KiB, QD1", "IOPS", e.rand_read, r.rand_read);
}

/// Random and sequential reads of the same 64 MiB at chain depth 1 and depth 100.
fn depth() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    let size = 64 * MIB;
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let buf: Vec<u8> = (0..MIB).map(|i| (i % 241) as u8).collect();
    for name in ["shallow", "deep"] {
        engine.create_volume(name, size, None).unwrap();
        let v = engine.volume(name).unwrap();
        for i in 0..size / MIB {
            v.write_at(&buf, i * MIB, false).unwrap();
        }
    }
    let (deep, shallow) = (engine.volume("deep").unwrap(), engine.volume("shallow").unwrap());
    for i in 0..100 {
        // Each layer overwrites a few scattered blocks, so reads draw from many layers. The
        // shallow volume gets the same writes and snapshots, which are then deleted and
        // folded into its head: both are laid out alike (every write copied, none in place)
        // and only the chain differs.
        for _ in 0..64 {
            let at = rng.random_range(0..size / 4096) * 4096;
            deep.write_at(&[i as u8; 4096], at, false).unwrap();
            shallow.write_at(&[i as u8; 4096], at, false).unwrap();
        }
        engine.snapshot("deep", &format!("s{i}")).unwrap();
        engine.snapshot("shallow", &format!("t{i}")).unwrap();
    }
    for i in 0..100 {
        engine.delete_snapshot(&format!("t{i}")).unwrap();
    }
    engine.sync().unwrap();
    engine.gc().unwrap();
    assert_eq!(engine.layer_count().unwrap(), 100, "the shallow chain folded away, the deep one kept");
    let measure = |v: &dyn BlockRead| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let mut b = [0u8; 4096];
        let t = Instant::now();
        for _ in 0..100_000 {
            v.read_at(&mut b, rng.random_range(0..size / 4096) * 4096).unwrap();
        }
        let iops = 100_000.0 / t.elapsed().as_secs_f64();
        let mut m = vec![0u8; MIB as usize];
        let t = Instant::now();
        for _ in 0..4 {
            for i in 0..size / MIB {
                v.read_at(&mut m, i * MIB).unwrap();
            }
        }
        (iops, 4.0 * size as f64 / MIB as f64 / t.elapsed().as_secs_f64())
    };
    let (s_iops, s_seq) = measure(&*engine.volume("shallow").unwrap());
    let (d_iops, d_seq) = measure(&*deep);
    println!(
        "| random read 4 KiB, depth 100 vs depth 1 | {d_iops:.0} IOPS | {s_iops:.0} IOPS | {:.0}% |",
        100.0 * d_iops / s_iops
    );
    println!(
        "| sequential read 1 MiB, depth 100 vs depth 1 | {d_seq:.0} MiB/s | {s_seq:.0} MiB/s | {:.0}% |",
        100.0 * d_seq / s_seq
    );
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(String::from))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|k| k.parse::<u64>().ok()))
        .unwrap_or(0)
        * 1024
}

/// Memory the block maps take: resident growth per written block, 4 KiB blocks written in
/// 1 MiB pieces scattered over a 1 TiB disk, with and without a snapshot sharing the map.
fn memory(bytes: u64) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine.create_volume("d", TIB, None).unwrap();
    let vol = engine.volume("d").unwrap();
    let before = rss_bytes();
    fill(&*vol, bytes, &mut rand::rngs::StdRng::seed_from_u64(5));
    let after = rss_bytes();
    let blocks = bytes / 4096;
    println!(
        "| resident memory per written 4 KiB block ({} MiB written) | {:.0} bytes |",
        bytes / MIB,
        (after.saturating_sub(before)) as f64 / blocks as f64
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let big = if quick { 256 * MIB } else { 4096 * MIB };
    // First, while the allocator holds nothing freed that would hide the growth.
    println!("| memory | |\n|---|---|");
    memory(if quick { 256 * MIB } else { 1024 * MIB });
    println!();
    println!("| latency (median of 9) | snapshot | reset |\n|---|---|---|");
    snapshot_reset("64 MiB", 64 * MIB);
    snapshot_reset(if quick { "256 MiB" } else { "4 GiB" }, big);
    println!("\n| throughput | engine | raw file | ratio |\n|---|---|---|---|");
    engine_vs_raw(if quick { 256 * MIB } else { 1024 * MIB });
    println!("\n| chain depth | depth 100 | depth 1 | ratio |\n|---|---|---|---|");
    depth();
}
