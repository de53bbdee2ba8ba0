#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Crash safety of `resize`: a child process grows one volume again and again, writing (with
//! FUA) a marker block at each new end, and journals each step after it is acknowledged (and
//! each resize also before it starts); the parent kills it with SIGKILL at a random moment,
//! reopens the store and checks that the size is the last acknowledged one (or the in-flight
//! one, never anything else, never smaller) and that every acknowledged marker is intact.
//! 40 cycles on one store; `RESIZE_CRASH_CYCLES=N` runs more.

use rand::{Rng, SeedableRng};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use store::{BlockRead, BlockWrite, Engine};

const VOL: &str = "d-grow";
const BS: u64 = 4096;
const START: u64 = 256 * BS;

/// The block written at the end of a volume of `size` bytes.
fn marker(size: u64) -> Vec<u8> {
    let mut b = vec![(size / BS) as u8 | 1; BS as usize];
    b[..8].copy_from_slice(&size.to_le_bytes());
    b
}

#[test]
#[ignore = "run by resize_crash_cycles as a child process"]
fn resize_crash_child() {
    let Ok(dir) = std::env::var("CRASH_DIR") else {
        return;
    };
    let seed: u64 = std::env::var("CRASH_SEED").unwrap().parse().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let engine = Engine::open(Path::new(&dir)).unwrap();
    engine.start_gc_thread();
    engine.create_volume(VOL, START, None).unwrap();
    let mut j = std::fs::OpenOptions::new().create(true).append(true).open(Path::new(&dir).join("journal")).unwrap();
    let mut log = |line: String| j.write_all(format!("{line}\n").as_bytes()).unwrap();
    let vol = engine.volume(VOL).unwrap();
    loop {
        let new = vol.size() + BS * rng.random_range(1..4u64);
        log(format!("g {new}"));
        engine.resize(VOL, new).unwrap();
        log(format!("G {new}"));
        vol.write_at(&marker(new), new - BS, true).unwrap();
        log(format!("W {new}"));
        if rng.random_range(0..40) == 0 {
            engine.checkpoint().unwrap();
        }
    }
}

#[test]
fn resize_crash_cycles() {
    let cycles: u32 = std::env::var("RESIZE_CRASH_CYCLES").ok().and_then(|c| c.parse().ok()).unwrap_or(40);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut size = START;
    let mut markers: Vec<u64> = Vec::new();
    let mut grew = 0;
    for cycle in 0..cycles {
        let seed: u64 = rng.random();
        let _ = std::fs::remove_file(dir.path().join("journal"));
        let mut child = Command::new(&exe)
            .args(["--exact", "resize_crash_child", "--ignored", "--nocapture", "--test-threads=1"])
            .env("CRASH_DIR", dir.path())
            .env("CRASH_SEED", seed.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(5..60)));
        child.kill().unwrap();
        assert!(child.wait().unwrap().code().is_none(), "cycle {cycle}: the child exited by itself");
        let journal = std::fs::read_to_string(dir.path().join("journal")).unwrap_or_default();
        let mut in_flight = None;
        for line in journal.lines() {
            let Some((op, arg)) = line.split_once(' ') else { continue };
            let n: u64 = arg.parse().unwrap();
            match op {
                "g" => in_flight = Some(n),
                "G" => {
                    in_flight = None;
                    size = n;
                }
                "W" => markers.push(n),
                _ => panic!("bad journal line {line}"),
            }
        }
        let engine = Engine::open(dir.path()).unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
        let vol = engine.volume(VOL).unwrap();
        let got = vol.size();
        assert!(
            got == size || Some(got) == in_flight,
            "cycle {cycle}: size {got}, acknowledged {size}, in flight {in_flight:?}"
        );
        if got > START {
            grew += 1;
        }
        size = got;
        let mut buf = vec![0u8; BS as usize];
        for m in &markers {
            vol.read_at(&mut buf, m - BS).unwrap();
            assert!(buf == marker(*m), "cycle {cycle}: the marker at the end of size {m} is gone");
        }
        // Past the last acknowledged marker the new range reads as zeros (an unacknowledged
        // write may have landed only on the in-flight block).
        let last = markers.last().copied().unwrap_or(START);
        if got > last + BS {
            vol.read_at(&mut buf, last).unwrap();
            assert!(buf.iter().all(|b| *b == 0), "cycle {cycle}: bytes past the acknowledged end");
        }
    }
    assert!(grew > 0, "no child ever resized: the test proves nothing");
}
