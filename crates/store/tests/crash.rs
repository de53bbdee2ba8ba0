#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Crash safety: a child process runs a random workload against one volume and journals
//! every acknowledged operation; the parent kills it with SIGKILL at a random moment, reopens
//! the store and checks that flushed writes survived, that every block holds a value some
//! acknowledged or in-flight write could have left, that snapshots are exact, and that a
//! reset cut short left the disk entirely old or entirely new. 200 cycles on one store.
//! `CRASH_CYCLES=N` runs more (scripts/crash-soak.sh).

use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use store::{BlockRead, BlockWrite, Engine};

const BLOCKS: u64 = 1024;
const BS: usize = 4096;
const VOL: &str = "d-crash";

/// Each write targets a block derived from its step, so the checker knows where an
/// unjournaled (in-flight) write could have landed.
fn block_of(step: u64) -> u64 {
    step.wrapping_mul(0x9E37_79B9_7F4A_7C15) % BLOCKS
}

fn content(step: u64, block: u64) -> Vec<u8> {
    let mut b = vec![(step.wrapping_mul(31).wrapping_add(block)) as u8 | 1; BS];
    b[..8].copy_from_slice(&step.to_le_bytes());
    b
}

/// The step a block holds (0 for zeros), or None if its bytes match no write at all.
fn decode(block: u64, bytes: &[u8]) -> Option<u64> {
    if bytes.iter().all(|b| *b == 0) {
        return Some(0);
    }
    let step = u64::from_le_bytes(bytes[..8].try_into().ok()?);
    (content(step, block) == bytes).then_some(step)
}

fn read_all(dev: &dyn BlockRead) -> Vec<u64> {
    let mut buf = vec![0u8; BLOCKS as usize * BS];
    dev.read_at(&mut buf, 0).unwrap();
    (0..BLOCKS)
        .map(|b| decode(b, &buf[b as usize * BS..(b as usize + 1) * BS]).unwrap_or_else(|| panic!("block {b} is torn")))
        .collect()
}

/// The child: runs until killed, journaling each operation after it is acknowledged
/// (and resets, snapshots and deletes also before they start).
#[test]
#[ignore = "run by crash_cycles as a child process"]
fn crash_child() {
    let Ok(dir) = std::env::var("CRASH_DIR") else {
        return;
    };
    let mut step: u64 = std::env::var("CRASH_STEP").unwrap().parse().unwrap();
    let seed: u64 = std::env::var("CRASH_SEED").unwrap().parse().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Half the children bypass the page cache, half do not.
    let engine = Engine::open_with(Path::new(&dir), store::Options { direct_io: seed % 2 == 1 }).unwrap();
    engine.start_gc_thread();
    engine.create_volume(VOL, BLOCKS * BS as u64, None).unwrap();
    let mut j = std::fs::OpenOptions::new().create(true).append(true).open(Path::new(&dir).join("journal")).unwrap();
    let mut log = |line: String| {
        j.write_all(format!("{line}\n").as_bytes()).unwrap();
    };
    let vol = engine.volume(VOL).unwrap();
    loop {
        // Few snapshots at a time keep each check quick; deletes exercise GC under crashes.
        let many = engine.snapshots().unwrap().len() > 6;
        let roll: u32 = if many { 95 } else { rng.random_range(0..100) };
        if roll < 65 {
            step += 1;
            let b = block_of(step);
            vol.write_at(&content(step, b), b * BS as u64, roll < 5).unwrap();
            log(format!("W {step}"));
            if roll < 5 {
                log(format!("F {step}"));
            }
        } else if roll < 72 {
            step += 1;
            let b = block_of(step);
            vol.trim(b * BS as u64, BS as u64).unwrap();
            log(format!("T {step}"));
        } else if roll < 82 {
            vol.flush().unwrap();
            log(format!("F {step}"));
        } else if roll < 89 {
            // Snapshot ids are unique like the control plane's; a repeated id is a no-op.
            step += 1;
            let name = format!("s{step}");
            log(format!("s {name}"));
            engine.snapshot(VOL, &name).unwrap();
            log(format!("S {name}"));
        } else if roll < 94 {
            let snaps = engine.snapshots().unwrap();
            if snaps.is_empty() {
                continue;
            }
            let name = snaps[rng.random_range(0..snaps.len())].clone();
            log(format!("r {name}"));
            engine.reset(VOL, &name).unwrap();
            log(format!("R {name}"));
        } else if roll < 97 {
            let snaps = engine.snapshots().unwrap();
            if snaps.len() < 2 {
                continue;
            }
            let name = snaps[rng.random_range(0..snaps.len())].clone();
            log(format!("d {name}"));
            engine.delete_snapshot(&name).unwrap();
            log(format!("D {name}"));
        } else {
            engine.checkpoint().unwrap();
        }
    }
}

#[derive(Clone, Default)]
struct Model {
    /// Block → step durably there (0: zeros).
    disk: Vec<u64>,
    /// Block → steps acknowledged but not flushed, in order.
    pending: HashMap<u64, Vec<u64>>,
    snaps: BTreeMap<String, Vec<u64>>,
}

impl Model {
    fn settle(&mut self) {
        for (b, steps) in self.pending.drain() {
            if let Some(s) = steps.last() {
                self.disk[b as usize] = *s;
            }
        }
    }

    /// The disk as it must be if everything acknowledged is in.
    fn settled(&self) -> Vec<u64> {
        let mut m = self.clone();
        m.settle();
        m.disk
    }

    fn allowed(&self, block: u64, value: u64, inflight: u64) -> bool {
        value == self.disk[block as usize]
            || self.pending.get(&block).is_some_and(|v| v.contains(&value))
            || (value == inflight && block_of(inflight) == block)
            || (value == 0 && block_of(inflight) == block)
    }
}

fn check_cycle(dir: &Path, model: &mut Model, journal: &str, seed: u64, first_step: u64) -> u64 {
    // The child's counter starts at `first_step` and only grows.
    let mut last_step = first_step;
    let mut open_op: Option<(char, String)> = None;
    for line in journal.lines() {
        let (op, arg) = line.split_once(' ').unwrap();
        let op = op.chars().next().unwrap();
        open_op = None;
        match op {
            's' => {
                last_step = arg[1..].parse().unwrap();
                open_op = Some((op, arg.to_string()));
            }
            'W' | 'T' => {
                let step: u64 = arg.parse().unwrap();
                last_step = step;
                let v = if op == 'W' { step } else { 0 };
                model.pending.entry(block_of(step)).or_default().push(v);
            }
            'F' => model.settle(),
            'r' | 'd' => open_op = Some((op, arg.to_string())),
            'S' => {
                model.settle();
                let d = model.disk.clone();
                model.snaps.insert(arg.into(), d);
            }
            'R' => {
                model.pending.clear();
                model.disk = model.snaps[arg].clone();
            }
            'D' => {
                model.snaps.remove(arg);
            }
            _ => panic!("bad journal line {line}"),
        }
    }
    let inflight = last_step + 1;
    let engine = Engine::open(dir).unwrap_or_else(|e| panic!("seed {seed}: reopen failed: {e}"));
    let vol = engine.volume(VOL).unwrap();
    let actual = read_all(&*vol);
    let snaps = engine.snapshots().unwrap();
    // Snapshots: every acknowledged one exists and is exact; an in-flight one, if it exists,
    // holds everything acknowledged before it.
    for (name, want) in &model.snaps {
        let deleting = matches!(&open_op, Some(('d', n)) if n == name);
        if deleting && !snaps.contains(name) {
            continue;
        }
        assert!(snaps.contains(name), "seed {seed}: snapshot {name} lost");
        let got = read_all(&engine.snapshot_view(name).unwrap());
        let diff: Vec<(usize, u64, u64)> =
            (0..BLOCKS as usize).filter(|b| got[*b] != want[*b]).map(|b| (b, want[b], got[b])).take(5).collect();
        assert!(
            diff.is_empty(),
            "seed {seed}: snapshot {name} changed (block, want, got): {diff:?}; journal tail {:?}",
            journal.lines().rev().take(8).collect::<Vec<_>>()
        );
    }
    if let Some(('s', name)) = &open_op
        && snaps.contains(name)
    {
        let got = read_all(&engine.snapshot_view(name).unwrap());
        assert_eq!(got, model.settled(), "seed {seed}: in-flight snapshot {name} is not the acknowledged state");
        model.settle();
        model.snaps.insert(name.clone(), got);
    }
    if let Some(('d', name)) = &open_op
        && !snaps.contains(name)
    {
        model.snaps.remove(name);
    }
    // The disk: a reset cut short leaves it entirely the snapshot or entirely as before.
    let reset_to = match &open_op {
        Some(('r', name)) if actual == model.snaps[name] => Some(name.clone()),
        _ => None,
    };
    if reset_to.is_none() {
        for b in 0..BLOCKS {
            assert!(
                model.allowed(b, actual[b as usize], inflight),
                "seed {seed}: block {b} holds step {} (durable {}, pending {:?}, in flight {inflight}, open op {open_op:?})",
                actual[b as usize],
                model.disk[b as usize],
                model.pending.get(&b)
            );
        }
    }
    model.pending.clear();
    model.disk = actual;
    assert_eq!(snaps, model.snaps.keys().cloned().collect::<Vec<_>>(), "seed {seed}: snapshot set");
    inflight + 1
}

#[test]
fn crash_cycles() {
    let cycles: u32 = std::env::var("CRASH_CYCLES").ok().and_then(|c| c.parse().ok()).unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut model = Model { disk: vec![0; BLOCKS as usize], ..Model::default() };
    let mut step = 1u64;
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7));
    let mut worked = 0;
    for cycle in 0..cycles {
        let seed: u64 = rng.random();
        let _ = std::fs::remove_file(dir.path().join("journal"));
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--ignored", "--nocapture", "--test-threads=1"])
            .env("CRASH_DIR", dir.path())
            .env("CRASH_STEP", step.to_string())
            .env("CRASH_SEED", seed.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(5..60)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "cycle {cycle}: the child exited by itself ({status}); it should run until killed"
        );
        let journal = std::fs::read_to_string(dir.path().join("journal")).unwrap_or_default();
        worked += u32::from(journal.lines().count() > 10);
        step = check_cycle(dir.path(), &mut model, &journal, seed, step) + 10;
    }
    assert!(worked >= cycles / 2, "only {worked} of {cycles} cycles got work done before the kill");
}
