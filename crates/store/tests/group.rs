#![allow(clippy::unwrap_used)]
//! Snapshot groups: one point in time across volumes, kept whole across a reopen.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use store::{BlockRead, BlockWrite, Engine};

fn read_u64(r: &dyn BlockRead) -> u64 {
    let mut b = [0u8; 4096];
    r.read_at(&mut b, 0).unwrap();
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

fn write_u64(w: &dyn BlockWrite, v: u64) {
    let mut b = [0u8; 4096];
    b[..8].copy_from_slice(&v.to_le_bytes());
    w.write_at(&b, 0, false).unwrap();
}

#[test]
fn a_group_is_one_point_in_time_across_its_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path()).unwrap();
    for v in ["d-a", "d-b", "d-c"] {
        e.create_volume(v, 1 << 20, None).unwrap();
    }
    // A writer counts up on d-a, then the same count on d-b: at any instant d-b ≤ d-a ≤ d-b + 1.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (e, stop) = (e.clone(), stop.clone());
        std::thread::spawn(move || {
            let (a, b) = (e.volume("d-a").unwrap(), e.volume("d-b").unwrap());
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                write_u64(&*a, k);
                write_u64(&*b, k);
            }
            k
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(20));
    for g in 0..50 {
        let (sa, sb) = (format!("s-a{g}"), format!("s-b{g}"));
        e.snapshot_group(&[("d-b", &sb), ("d-a", &sa)]).unwrap();
        let (a, b) = (read_u64(&e.snapshot_view(&sa).unwrap()), read_u64(&e.snapshot_view(&sb).unwrap()));
        assert!(b <= a && a <= b + 1, "group {g}: d-a {a}, d-b {b}");
    }
    stop.store(true, Ordering::Relaxed);
    let last = writer.join().unwrap();
    assert!(last > 0);
    // Writes after the last group are durable once flushed (the groups were durable at once).
    e.volume("d-a").unwrap().flush().unwrap();
    let (a, b) = (read_u64(&e.snapshot_view("s-a49").unwrap()), read_u64(&e.snapshot_view("s-b49").unwrap()));

    // Idempotent when all exist; refused when some do, for repeats and for unknown volumes.
    e.snapshot_group(&[("d-a", "s-a49"), ("d-b", "s-b49")]).unwrap();
    assert!(e.snapshot_group(&[("d-a", "s-a49"), ("d-c", "s-new")]).is_err());
    assert!(e.snapshot_group(&[("d-c", "s-x"), ("d-c", "s-y")]).is_err());
    assert!(e.snapshot_group(&[("d-c", "s-z"), ("d-nope", "s-w")]).is_err());
    assert!(e.snapshot_view("s-z").is_err(), "a refused group leaves nothing behind");

    // Replayed from the log after a reopen, with the heads going on after the group.
    drop(e);
    let e = Engine::open(dir.path()).unwrap();
    assert_eq!(read_u64(&e.snapshot_view("s-a49").unwrap()), a);
    assert_eq!(read_u64(&e.snapshot_view("s-b49").unwrap()), b);
    assert_eq!(read_u64(&*e.volume("d-a").unwrap()), last);
    e.reset("d-a", "s-a0").unwrap();
    assert!(read_u64(&*e.volume("d-a").unwrap()) <= a);
}
