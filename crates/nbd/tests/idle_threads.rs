#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A connection's threads grow with its queue and retire when idle. Its own test binary, so
//! that counting the process's NBD threads counts only this test's.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn nbd_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "nbd-io")
        .count()
}

#[test]
fn threads_grow_under_load_and_retire_when_idle() {
    let disk = MemDisk::new(|_| Duration::from_millis(30));
    let srv = start(disk);
    let mut s = connect(srv.addr);
    read_burst(&mut s, 48);
    let busy = nbd_threads();
    assert!((8..=64).contains(&busy), "{busy} threads under a queue of 48");
    let t = Instant::now();
    while nbd_threads() > 2 && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(nbd_threads(), 2, "idle threads retire down to a reader and one spare");
    // The connection still works, and grows again.
    read_burst(&mut s, 32);
    assert!(nbd_threads() > 2);
}
