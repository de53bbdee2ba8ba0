#![allow(clippy::unwrap_used)]
//! CopySnapshot in the store: O(1), the copy keeps the bytes when the source goes, across a
//! reopen, and a volume can be reset to it.

use store::{BlockRead, BlockWrite, Engine};

#[test]
fn a_copy_outlives_its_source_and_serves_resets() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path()).unwrap();
    e.create_volume("d-1", 1 << 20, None).unwrap();
    let v = e.volume("d-1").unwrap();
    v.write_at(&[0xa1; 4096], 0, true).unwrap();
    e.snapshot("d-1", "s-1").unwrap();
    e.copy_snapshot("s-1", "s-2").unwrap();
    e.copy_snapshot("s-1", "s-2").unwrap();
    assert!(e.copy_snapshot("s-nope", "s-3").is_err());
    v.write_at(&[0xb2; 4096], 0, true).unwrap();
    e.delete_snapshot("s-1").unwrap();
    e.gc().unwrap();
    drop(v);
    drop(e);
    let e = Engine::open(dir.path()).unwrap();
    let mut buf = [0u8; 4096];
    e.snapshot_view("s-2").unwrap().read_at(&mut buf, 0).unwrap();
    assert_eq!(buf, [0xa1; 4096]);
    e.reset("d-1", "s-2").unwrap();
    e.volume("d-1").unwrap().read_at(&mut buf, 0).unwrap();
    assert_eq!(buf, [0xa1; 4096]);
}
