#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `resize` and `rebase` on real bytes: what was written stays, the new range reads as zeros
//! and takes writes, and both survive a reopen from the log and from a checkpoint.

use store::{BlockRead, BlockWrite, Engine, ErrorKind};

const MIB: u64 = 1 << 20;

fn read(engine: &Engine, vol: &str, off: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    engine.volume(vol).unwrap().read_at(&mut buf, off).unwrap();
    buf
}

#[test]
fn resize_keeps_bytes_zeroes_the_new_range_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine.create_volume("d-1", MIB, None).unwrap();
    let v = engine.volume("d-1").unwrap();
    v.write_at(&[7u8; 4096], MIB - 4096, true).unwrap();
    assert_eq!(v.write_at(&[1u8; 4096], MIB, true).unwrap_err().kind, ErrorKind::OutOfBounds);

    engine.resize("d-1", 4 * MIB).unwrap();
    engine.resize("d-1", 4 * MIB).unwrap(); // idempotent
    // A handle opened before the resize sees the new size too.
    assert_eq!(v.size(), 4 * MIB);
    assert_eq!(read(&engine, "d-1", MIB - 4096, 4096), vec![7u8; 4096], "old bytes intact");
    assert_eq!(read(&engine, "d-1", MIB, 3 * MIB as usize), vec![0u8; 3 * MIB as usize], "new range is zeros");
    v.write_at(&[9u8; 4096], 4 * MIB - 4096, true).unwrap();

    assert_eq!(engine.resize("d-1", 2 * MIB).unwrap_err().kind, ErrorKind::Invalid, "no shrinking");
    assert_eq!(engine.resize("d-1", 4 * MIB + 1).unwrap_err().kind, ErrorKind::Invalid, "whole blocks");
    assert_eq!(engine.resize("d-9", 4 * MIB).unwrap_err().kind, ErrorKind::NotFound);

    // A snapshot taken after the resize has the new size.
    engine.snapshot("d-1", "s-1").unwrap();
    assert_eq!(engine.snapshot_view("s-1").unwrap().size(), 4 * MIB);
    drop(v);
    drop(engine);

    // Replayed from the log.
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(engine.volume("d-1").unwrap().size(), 4 * MIB);
    assert_eq!(read(&engine, "d-1", MIB - 4096, 4096), vec![7u8; 4096]);
    assert_eq!(read(&engine, "d-1", 4 * MIB - 4096, 4096), vec![9u8; 4096]);
    // Restated by a checkpoint.
    engine.resize("d-1", 8 * MIB).unwrap();
    engine.checkpoint().unwrap();
    drop(engine);
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(engine.volume("d-1").unwrap().size(), 8 * MIB);
    assert_eq!(read(&engine, "d-1", 4 * MIB - 4096, 4096), vec![9u8; 4096]);
    assert_eq!(read(&engine, "d-1", 4 * MIB, 4096), vec![0u8; 4096]);
}

#[test]
fn rebase_returns_to_a_source_snapshot_or_to_zeros_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();
    engine.create_volume("src", MIB, None).unwrap();
    engine.volume("src").unwrap().write_at(&[5u8; 4096], 0, true).unwrap();
    engine.snapshot("src", "s-src").unwrap();
    // A clone of another volume's snapshot, grown and then overwritten.
    engine.create_volume("d-clone", MIB, Some("s-src")).unwrap();
    engine.resize("d-clone", 2 * MIB).unwrap();
    let c = engine.volume("d-clone").unwrap();
    c.write_at(&[6u8; 4096], 0, true).unwrap();
    c.write_at(&[6u8; 4096], MIB, true).unwrap();
    // An empty volume, written.
    engine.create_volume("d-empty", MIB, None).unwrap();
    engine.volume("d-empty").unwrap().write_at(&[8u8; 8192], 4096, true).unwrap();

    engine.rebase("d-clone", Some("s-src")).unwrap();
    engine.rebase("d-empty", None).unwrap();
    assert_eq!(read(&engine, "d-clone", 0, 4096), vec![5u8; 4096], "the source snapshot's bytes");
    assert_eq!(read(&engine, "d-clone", MIB, 4096), vec![0u8; 4096], "past the snapshot: zeros");
    assert_eq!(engine.volume("d-clone").unwrap().size(), 2 * MIB, "the size is kept");
    assert_eq!(read(&engine, "d-empty", 0, 3 * 4096), vec![0u8; 3 * 4096]);
    assert_eq!(engine.rebase("d-empty", Some("s-none")).unwrap_err().kind, ErrorKind::NotFound);
    // A snapshot larger than the volume is refused.
    engine.resize("src", 4 * MIB).unwrap();
    engine.snapshot("src", "s-big").unwrap();
    assert_eq!(engine.rebase("d-empty", Some("s-big")).unwrap_err().kind, ErrorKind::Invalid);
    // Writes after a rebase land on the new head; the source snapshot is untouched.
    c.write_at(&[4u8; 4096], 4096, true).unwrap();
    let mut buf = vec![0u8; 4096];
    engine.snapshot_view("s-src").unwrap().read_at(&mut buf, 4096).unwrap();
    assert_eq!(buf, vec![0u8; 4096]);
    engine.gc().unwrap();
    drop(c);
    drop(engine);

    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(read(&engine, "d-clone", 0, 4096), vec![5u8; 4096]);
    assert_eq!(read(&engine, "d-clone", 4096, 4096), vec![4u8; 4096]);
    assert_eq!(read(&engine, "d-clone", MIB, 4096), vec![0u8; 4096]);
    assert_eq!(read(&engine, "d-empty", 0, 3 * 4096), vec![0u8; 3 * 4096]);
    engine.checkpoint().unwrap();
    drop(engine);
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(read(&engine, "d-clone", 0, 8192), [vec![5u8; 4096], vec![4u8; 4096]].concat());
    // Everything the dropped heads wrote is freed once nothing needs it.
    for s in ["s-src", "s-big"] {
        engine.delete_snapshot(s).unwrap();
    }
    for v in ["src", "d-clone", "d-empty"] {
        engine.delete_volume(v).unwrap();
    }
    engine.gc().unwrap();
    assert_eq!(engine.physical_bytes().unwrap(), 0);
}
