#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Random sequences of operations against a plain in-memory model, checking every byte of
//! every volume and snapshot, across GC, checkpoints and reopening.

use proptest::prelude::*;
use std::collections::BTreeMap;
use store::{BlockRead, BlockWrite, Engine};

const SIZE: u64 = 64 * 1024;

#[derive(Debug, Clone)]
enum Op {
    Write {
        vol: usize,
        off: u64,
        len: u64,
        seed: u8,
    },
    /// Several writes in one `write_many` (overlapping ones included), data page-aligned so
    /// that `O_DIRECT` can take it as it is.
    WriteBatch {
        vol: usize,
        writes: Vec<(u64, u64, u8)>,
    },
    Trim {
        vol: usize,
        off: u64,
        len: u64,
    },
    Zero {
        vol: usize,
        off: u64,
        len: u64,
        may_trim: bool,
    },
    Flush,
    Snapshot {
        vol: usize,
    },
    Reset {
        vol: usize,
        snap: usize,
    },
    /// Grow by this many blocks.
    Resize {
        vol: usize,
        blocks: u64,
    },
    /// Back to any snapshot (of any volume) no larger than the volume, or to zeros.
    Rebase {
        vol: usize,
        snap: Option<usize>,
    },
    Clone {
        snap: usize,
    },
    DeleteVolume {
        vol: usize,
    },
    DeleteSnapshot {
        snap: usize,
    },
    Gc,
    Checkpoint,
    Reopen,
}

fn range() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        // Block-aligned.
        (0..16u64, 1..5u64).prop_map(|(b, n)| (b * 4096, (n * 4096).min(SIZE - b * 4096))),
        // Anything.
        (0..SIZE).prop_flat_map(|o| (Just(o), 1..=(SIZE - o).min(20000))),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..4usize, range(), any::<u8>()).prop_map(|(vol, (off, len), seed)| Op::Write { vol, off, len, seed }),
        3 => (0..4usize, proptest::collection::vec((range(), any::<u8>()), 1..8))
            .prop_map(|(vol, w)| Op::WriteBatch { vol, writes: w.into_iter().map(|((o, n), s)| (o, n, s)).collect() }),
        2 => (0..4usize, range()).prop_map(|(vol, (off, len))| Op::Trim { vol, off, len }),
        1 => (0..4usize, range(), any::<bool>()).prop_map(|(vol, (off, len), may_trim)| Op::Zero { vol, off, len, may_trim }),
        1 => Just(Op::Flush),
        3 => (0..4usize).prop_map(|vol| Op::Snapshot { vol }),
        3 => (0..4usize, 0..8usize).prop_map(|(vol, snap)| Op::Reset { vol, snap }),
        1 => (0..8usize).prop_map(|snap| Op::Clone { snap }),
        1 => (0..4usize, 1..4u64).prop_map(|(vol, blocks)| Op::Resize { vol, blocks }),
        1 => (0..4usize, proptest::option::of(0..8usize)).prop_map(|(vol, snap)| Op::Rebase { vol, snap }),
        1 => (0..4usize).prop_map(|vol| Op::DeleteVolume { vol }),
        2 => (0..8usize).prop_map(|snap| Op::DeleteSnapshot { snap }),
        1 => Just(Op::Gc),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Reopen),
    ]
}

struct Model {
    vols: BTreeMap<String, Vec<u8>>,
    snaps: BTreeMap<String, (String, Vec<u8>)>,
    next: u32,
}

fn pick<T>(m: &BTreeMap<String, T>, i: usize) -> Option<String> {
    (!m.is_empty()).then(|| m.keys().nth(i % m.len()).cloned()).flatten()
}

fn check(engine: &Engine, m: &Model) {
    assert_eq!(engine.volumes().unwrap(), m.vols.keys().cloned().collect::<Vec<_>>());
    assert_eq!(engine.snapshots().unwrap(), m.snaps.keys().cloned().collect::<Vec<_>>());
    for (name, bytes) in &m.vols {
        let v = engine.volume(name).unwrap();
        assert_eq!(v.size(), bytes.len() as u64, "volume {name} has the model's size");
        let mut buf = vec![0u8; bytes.len()];
        v.read_at(&mut buf, 0).unwrap();
        assert!(buf == *bytes, "volume {name} differs from the model");
        check_batch(&*v, bytes, name);
        let allocated: u64 =
            v.block_status(0, bytes.len() as u64).unwrap().iter().filter(|e| e.allocated).map(|e| e.len).sum();
        let nonzero_blocks = bytes.chunks(4096).filter(|c| c.iter().any(|b| *b != 0)).count() as u64;
        assert!(allocated >= nonzero_blocks * 4096, "data outside allocated extents");
    }
    for (name, (_, bytes)) in &m.snaps {
        let s = engine.snapshot_view(name).unwrap();
        let mut buf = vec![0u8; bytes.len()];
        s.read_at(&mut buf, 0).unwrap();
        assert!(buf == *bytes, "snapshot {name} differs from the model");
        check_batch(&s, bytes, name);
    }
}

/// Batched reads (`read_many`, io_uring under `O_DIRECT`) see what the model holds: whole
/// blocks and partial ones, holes and data, and a read past the end that fails alone.
fn check_batch(dev: &dyn BlockRead, bytes: &[u8], name: &str) {
    let len = bytes.len() as u64;
    let mut wanted: Vec<(u64, usize)> =
        (0..len / 4096).step_by(3).map(|b| (b * 4096, 4096 * (1 + b as usize % 4))).collect();
    wanted.retain(|(o, n)| o + *n as u64 <= len);
    wanted.push((100, 5000)); // not on block boundaries
    wanted.push((len - 4096, 8192)); // past the end
    let mut bufs: Vec<store::AlignedBuf> = wanted.iter().map(|(_, n)| store::AlignedBuf::zeroed(*n)).collect();
    let mut reads: Vec<(u64, &mut [u8])> =
        wanted.iter().zip(bufs.iter_mut()).map(|((o, _), b)| (*o, b.as_mut_slice())).collect();
    let results = dev.read_many(&mut reads);
    drop(reads);
    let last = wanted.len() - 1;
    for (i, ((o, n), r)) in wanted.iter().zip(&results).enumerate() {
        if i == last {
            assert!(r.is_err(), "{name}: a read past the end fails");
            continue;
        }
        assert!(r.is_ok(), "{name}: batched read {i} failed: {r:?}");
        assert!(bufs[i].as_slice() == &bytes[*o as usize..*o as usize + n], "{name}: batched read at {o} differs");
    }
}

fn run(ops: Vec<Op>, direct_io: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Engine::open_with(dir.path(), store::Options { direct_io }).unwrap();
    let mut m = Model { vols: BTreeMap::new(), snaps: BTreeMap::new(), next: 0 };
    engine.create_volume("v0", SIZE, None).unwrap();
    m.vols.insert("v0".into(), vec![0; SIZE as usize]);
    for op in ops {
        match op {
            Op::Write { vol, off, len, seed } => {
                let Some(v) = pick(&m.vols, vol) else {
                    continue;
                };
                let data: Vec<u8> = (0..len).map(|i| seed.wrapping_add(i as u8) | 1).collect();
                engine.volume(&v).unwrap().write_at(&data, off, seed % 7 == 0).unwrap();
                m.vols.get_mut(&v).unwrap()[off as usize..(off + len) as usize].copy_from_slice(&data);
            }
            Op::WriteBatch { vol, writes } => {
                let Some(v) = pick(&m.vols, vol) else {
                    continue;
                };
                let datas: Vec<store::AlignedBuf> = writes
                    .iter()
                    .map(|(_, len, seed)| {
                        let mut b = store::AlignedBuf::zeroed(*len as usize);
                        for (i, x) in b.as_mut_slice().iter_mut().enumerate() {
                            *x = seed.wrapping_add(i as u8) | 1;
                        }
                        b
                    })
                    .collect();
                let batch: Vec<(u64, &[u8], bool)> =
                    writes.iter().zip(&datas).map(|((off, _, seed), d)| (*off, d.as_slice(), seed % 11 == 0)).collect();
                let results = engine.volume(&v).unwrap().write_many(&batch);
                assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
                for ((off, len, _), d) in writes.iter().zip(&datas) {
                    m.vols.get_mut(&v).unwrap()[*off as usize..(off + len) as usize].copy_from_slice(d.as_slice());
                }
            }
            Op::Trim { vol, off, len } | Op::Zero { vol, off, len, .. } => {
                let Some(v) = pick(&m.vols, vol) else {
                    continue;
                };
                let dev = engine.volume(&v).unwrap();
                match op {
                    Op::Zero { may_trim, .. } => dev.write_zeroes(off, len, may_trim).unwrap(),
                    _ => dev.trim(off, len).unwrap(),
                }
                m.vols.get_mut(&v).unwrap()[off as usize..(off + len) as usize].fill(0);
            }
            Op::Flush => engine.sync().unwrap(),
            Op::Snapshot { vol } => {
                let Some(v) = pick(&m.vols, vol) else {
                    continue;
                };
                m.next += 1;
                let s = format!("s{:03}", m.next);
                engine.snapshot(&v, &s).unwrap();
                engine.snapshot(&v, &s).unwrap(); // idempotent
                let bytes = m.vols[&v].clone();
                m.snaps.insert(s, (v, bytes));
            }
            Op::Reset { vol, snap } => {
                let Some(v) = pick(&m.vols, vol) else {
                    continue;
                };
                let own: BTreeMap<String, Vec<u8>> =
                    m.snaps.iter().filter(|(_, (sv, _))| *sv == v).map(|(k, (_, b))| (k.clone(), b.clone())).collect();
                let Some(s) = pick(&own, snap) else { continue };
                engine.reset(&v, &s).unwrap();
                let mut bytes = own[&s].clone();
                bytes.resize(m.vols[&v].len(), 0);
                m.vols.insert(v, bytes);
            }
            Op::Resize { vol, blocks } => {
                let Some(v) = pick(&m.vols, vol) else {
                    continue;
                };
                let new = m.vols[&v].len() as u64 + blocks * 4096;
                engine.resize(&v, new).unwrap();
                engine.resize(&v, new).unwrap(); // idempotent
                assert!(engine.resize(&v, new - 4096).is_err(), "shrinking is refused");
                m.vols.get_mut(&v).unwrap().resize(new as usize, 0);
            }
            Op::Rebase { vol, snap } => {
                let Some(v) = pick(&m.vols, vol) else {
                    continue;
                };
                let len = m.vols[&v].len();
                let mut bytes = match snap {
                    Some(i) => {
                        let Some(s) = pick(&m.snaps, i) else { continue };
                        if m.snaps[&s].1.len() > len {
                            assert!(engine.rebase(&v, Some(&s)).is_err(), "a larger snapshot is refused");
                            continue;
                        }
                        engine.rebase(&v, Some(&s)).unwrap();
                        m.snaps[&s].1.clone()
                    }
                    None => {
                        engine.rebase(&v, None).unwrap();
                        Vec::new()
                    }
                };
                bytes.resize(len, 0);
                m.vols.insert(v, bytes);
            }
            Op::Clone { snap } => {
                let Some(s) = pick(&m.snaps, snap) else {
                    continue;
                };
                m.next += 1;
                let v = format!("v{:03}", m.next);
                engine.create_volume(&v, m.snaps[&s].1.len() as u64, Some(&s)).unwrap();
                m.vols.insert(v, m.snaps[&s].1.clone());
            }
            Op::DeleteVolume { vol } => {
                let Some(v) = pick(&m.vols, vol) else {
                    continue;
                };
                engine.delete_volume(&v).unwrap();
                m.vols.remove(&v);
            }
            Op::DeleteSnapshot { snap } => {
                let Some(s) = pick(&m.snaps, snap) else {
                    continue;
                };
                engine.delete_snapshot(&s).unwrap();
                m.snaps.remove(&s);
            }
            Op::Gc => engine.gc().unwrap(),
            Op::Checkpoint => engine.checkpoint().unwrap(),
            Op::Reopen => {
                engine.sync().unwrap();
                drop(engine);
                engine = Engine::open_with(dir.path(), store::Options { direct_io }).unwrap();
            }
        }
        check(&engine, &m);
    }
    // With every snapshot and volume gone, GC frees all data.
    for s in m.snaps.keys() {
        engine.delete_snapshot(s).unwrap();
    }
    for v in m.vols.keys() {
        engine.delete_volume(v).unwrap();
    }
    engine.gc().unwrap();
    assert_eq!(engine.layer_count().unwrap(), 0);
    assert_eq!(engine.physical_bytes().unwrap(), 0, "space left behind");
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

proptest! {
    // PROPTEST_CASES runs more for a soak; the test run keeps 64.
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]
    #[test]
    fn engine_matches_model(ops in proptest::collection::vec(op(), 1..60), direct_io: bool) {
        run(ops, direct_io);
    }
}

#[test]
fn rewrites_since_the_last_snapshot_stay_in_place_and_snapshots_keep_their_bytes() {
    for direct_io in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open_with(dir.path(), store::Options { direct_io }).unwrap();
        engine.create_volume("v", SIZE, None).unwrap();
        let v = engine.volume("v").unwrap();
        v.write_at(&[1; 16 * 4096], 0, false).unwrap();
        let used = engine.allocated_bytes();
        for i in 0..40u64 {
            v.write_at(&[i as u8 + 2; 4096], (i % 16) * 4096, false).unwrap();
        }
        v.write_at(&[9; 16 * 4096], 0, true).unwrap();
        assert_eq!(engine.allocated_bytes(), used, "rewrites of the head's own blocks allocate nothing");
        engine.snapshot("v", "s").unwrap();
        v.write_at(&[7; 4096], 4096, false).unwrap();
        assert_eq!(engine.allocated_bytes(), used + 4096, "a block the snapshot holds is copied on write");
        v.write_at(&[8; 4096], 4096, false).unwrap();
        v.write_at(&[6; 2 * 4096], 0, false).unwrap(); // one block shared, one owned: copied whole
        assert_eq!(engine.allocated_bytes(), used + 3 * 4096);
        let check = |engine: &Engine| {
            let mut snap = vec![0u8; 16 * 4096];
            engine.snapshot_view("s").unwrap().read_at(&mut snap, 0).unwrap();
            assert!(snap.iter().all(|b| *b == 9), "the snapshot kept its bytes (direct_io={direct_io})");
            let mut now = vec![0u8; 16 * 4096];
            engine.volume("v").unwrap().read_at(&mut now, 0).unwrap();
            assert!(now[..2 * 4096].iter().all(|b| *b == 6));
            assert!(now[2 * 4096..].iter().all(|b| *b == 9));
        };
        check(&engine);
        engine.sync().unwrap();
        engine.gc().unwrap();
        drop(v);
        drop(engine);
        let engine = Engine::open_with(dir.path(), store::Options { direct_io }).unwrap();
        check(&engine);
    }
}

#[test]
fn large_writes_cross_pieces_in_place_and_copied() {
    for direct_io in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open_with(dir.path(), store::Options { direct_io }).unwrap();
        let size = 8u64 << 20;
        engine.create_volume("v", size, None).unwrap();
        let v = engine.volume("v").unwrap();
        let mut model = vec![0u8; size as usize];
        // Fresh, then rewritten in place, then half over a snapshot; aligned and not.
        for (i, (off, len)) in
            [(0u64, 3u64 << 20), (4096, 5 << 20), (1000, (3 << 20) + 77), (6 << 20, 2 << 20)].into_iter().enumerate()
        {
            if i == 2 {
                engine.snapshot("v", "s").unwrap();
            }
            let data: Vec<u8> = (0..len).map(|j| (j as u8).wrapping_mul(7).wrapping_add(i as u8 * 50 + 1)).collect();
            v.write_at(&data, off, false).unwrap();
            model[off as usize..(off + len) as usize].copy_from_slice(&data);
            let mut got = vec![0u8; size as usize];
            v.read_at(&mut got, 0).unwrap();
            assert!(got == model, "write {i} (direct_io={direct_io})");
        }
    }
}

#[test]
fn a_log_newer_than_its_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine.create_volume("v", SIZE, None).unwrap();
    engine.checkpoint().unwrap();
    engine.checkpoint().unwrap();
    drop(engine);
    // The checkpoint goes missing (or an old one is restored) while the log moved on.
    std::fs::remove_file(dir.path().join("meta.ckpt")).unwrap();
    let err = Engine::open(dir.path()).err().expect("opening must fail");
    assert_eq!(err.kind, store::ErrorKind::Corrupt, "{err}");
}
