//! The seam between the control plane and the bytes. The control plane records an intent,
//! calls one of these operations, then completes the intent; every operation is idempotent
//! so that replaying an intent after a crash is harmless.
//!
//! The storage engine (`store`) implements it; [`FaultInjector`] wraps any implementation so the
//! operator can make storage fail on demand.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VolumeError {
    /// The store refused before changing anything (unknown volume or snapshot, bad request).
    #[error("storage refused: {0}")]
    Refused(String),
    /// The store failed part way (I/O error): the change may or may not have happened.
    #[error("storage failed: {0}")]
    Failed(String),
    /// The store could not be opened; nothing can be done until it is repaired.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage lock poisoned")]
    Poisoned,
    #[error("injected {0} failure")]
    Injected(&'static str),
}

impl VolumeError {
    /// Whether the store certainly left everything as it was, so the catalog may be undone.
    pub fn is_definite(&self) -> bool {
        !matches!(self, VolumeError::Failed(_) | VolumeError::Poisoned)
    }
}

pub type VolumeResult = Result<(), VolumeError>;

/// The storage operations the control plane needs; every one is idempotent.
pub trait Volumes: Send + Sync {
    /// Create an empty volume, or a copy-on-write clone of `source` snapshot.
    fn create(&self, volume: &str, size_bytes: u64, source: Option<&str>) -> VolumeResult;
    /// Freeze the volume's current contents as `snapshot`.
    fn snapshot(&self, volume: &str, snapshot: &str) -> VolumeResult;
    /// Freeze several volumes at one point in time: (volume, snapshot) pairs, all or none.
    fn snapshot_group(&self, members: &[(&str, &str)]) -> VolumeResult;
    /// Make `to` a copy of snapshot `from` (CopySnapshot), in O(1).
    fn copy_snapshot(&self, from: &str, to: &str) -> VolumeResult;
    /// Make the volume's contents those of `snapshot`, one of its own snapshots.
    fn reset(&self, volume: &str, snapshot: &str) -> VolumeResult;
    /// Grow the volume to `size_bytes` (ResizeDisk). The same size again is a success; a
    /// smaller one is refused.
    fn resize(&self, volume: &str, size_bytes: u64) -> VolumeResult;
    /// Put the volume back as it was created (ReInitDisk): a fresh head on `source`, any
    /// volume's snapshot, or all zeros when `None`. Keeps the volume's size.
    fn reinit(&self, volume: &str, source: Option<&str>) -> VolumeResult;
    fn delete_volume(&self, volume: &str) -> VolumeResult;
    fn delete_snapshot(&self, snapshot: &str) -> VolumeResult;
    /// Write `source` into a new, empty volume from offset 0 and flush (ImportImage). Pieces
    /// of all zeros are skipped: they read as zeros already. `progress` is told the bytes
    /// consumed so far. A source longer than the volume is refused.
    fn fill(&self, volume: &str, source: &mut dyn std::io::Read, progress: &mut dyn FnMut(u64)) -> VolumeResult;
}

/// Bytes [`Volumes::fill`] reads and writes at a time.
const FILL_PIECE: usize = 1 << 20;

/// The storage engine behind the seam.
impl Volumes for std::sync::Arc<store::Engine> {
    fn create(&self, volume: &str, size_bytes: u64, source: Option<&str>) -> VolumeResult {
        self.create_volume(volume, size_bytes, source).map_err(VolumeError::from)
    }
    fn snapshot(&self, volume: &str, snapshot: &str) -> VolumeResult {
        store::Engine::snapshot(self, volume, snapshot).map_err(VolumeError::from)
    }
    fn snapshot_group(&self, members: &[(&str, &str)]) -> VolumeResult {
        store::Engine::snapshot_group(self, members).map_err(VolumeError::from)
    }
    fn copy_snapshot(&self, from: &str, to: &str) -> VolumeResult {
        store::Engine::copy_snapshot(self, from, to).map_err(VolumeError::from)
    }
    fn reset(&self, volume: &str, snapshot: &str) -> VolumeResult {
        store::Engine::reset(self, volume, snapshot).map_err(VolumeError::from)
    }
    fn resize(&self, volume: &str, size_bytes: u64) -> VolumeResult {
        store::Engine::resize(self, volume, size_bytes).map_err(VolumeError::from)
    }
    fn reinit(&self, volume: &str, source: Option<&str>) -> VolumeResult {
        store::Engine::rebase(self, volume, source).map_err(VolumeError::from)
    }
    fn delete_volume(&self, volume: &str) -> VolumeResult {
        store::Engine::delete_volume(self, volume).map_err(VolumeError::from)
    }
    fn delete_snapshot(&self, snapshot: &str) -> VolumeResult {
        store::Engine::delete_snapshot(self, snapshot).map_err(VolumeError::from)
    }
    fn fill(&self, volume: &str, source: &mut dyn std::io::Read, progress: &mut dyn FnMut(u64)) -> VolumeResult {
        use store::{BlockRead, BlockWrite};
        let v = self.volume(volume).map_err(VolumeError::from)?;
        let mut buf = vec![0u8; FILL_PIECE];
        let mut offset = 0u64;
        loop {
            let mut n = 0;
            while n < buf.len() {
                match source.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(VolumeError::Failed(format!("reading the image: {e}"))),
                }
            }
            if n == 0 {
                break;
            }
            if offset + n as u64 > v.size() {
                return Err(VolumeError::Refused(format!("the image is larger than the volume ({} bytes)", v.size())));
            }
            if buf[..n].iter().any(|b| *b != 0) {
                v.write_at(&buf[..n], offset, false).map_err(VolumeError::from)?;
            }
            offset += n as u64;
            progress(offset);
        }
        v.flush().map_err(VolumeError::from)
    }
}

impl From<store::StoreError> for VolumeError {
    fn from(e: store::StoreError) -> Self {
        match e.kind {
            store::ErrorKind::NotFound
            | store::ErrorKind::Invalid
            | store::ErrorKind::AlreadyExists
            | store::ErrorKind::OutOfBounds => VolumeError::Refused(e.to_string()),
            _ => VolumeError::Failed(e.to_string()),
        }
    }
}

impl<T: Volumes + ?Sized> Volumes for Box<T> {
    fn create(&self, volume: &str, size_bytes: u64, source: Option<&str>) -> VolumeResult {
        (**self).create(volume, size_bytes, source)
    }
    fn snapshot(&self, volume: &str, snapshot: &str) -> VolumeResult {
        (**self).snapshot(volume, snapshot)
    }
    fn snapshot_group(&self, members: &[(&str, &str)]) -> VolumeResult {
        (**self).snapshot_group(members)
    }
    fn copy_snapshot(&self, from: &str, to: &str) -> VolumeResult {
        (**self).copy_snapshot(from, to)
    }
    fn reset(&self, volume: &str, snapshot: &str) -> VolumeResult {
        (**self).reset(volume, snapshot)
    }
    fn resize(&self, volume: &str, size_bytes: u64) -> VolumeResult {
        (**self).resize(volume, size_bytes)
    }
    fn reinit(&self, volume: &str, source: Option<&str>) -> VolumeResult {
        (**self).reinit(volume, source)
    }
    fn delete_volume(&self, volume: &str) -> VolumeResult {
        (**self).delete_volume(volume)
    }
    fn delete_snapshot(&self, snapshot: &str) -> VolumeResult {
        (**self).delete_snapshot(snapshot)
    }
    fn fill(&self, volume: &str, source: &mut dyn std::io::Read, progress: &mut dyn FnMut(u64)) -> VolumeResult {
        (**self).fill(volume, source, progress)
    }
}

/// A store that could not be opened (its metadata failed its checksums): every operation
/// fails with the reason, so the API answers InternalError and nothing is served as data.
pub struct Unavailable(pub String);

impl Volumes for Unavailable {
    fn create(&self, _: &str, _: u64, _: Option<&str>) -> VolumeResult {
        Err(VolumeError::Unavailable(self.0.clone()))
    }
    fn snapshot(&self, _: &str, _: &str) -> VolumeResult {
        Err(VolumeError::Unavailable(self.0.clone()))
    }
    fn snapshot_group(&self, _: &[(&str, &str)]) -> VolumeResult {
        Err(VolumeError::Unavailable(self.0.clone()))
    }
    fn copy_snapshot(&self, _: &str, _: &str) -> VolumeResult {
        Err(VolumeError::Unavailable(self.0.clone()))
    }
    fn reset(&self, _: &str, _: &str) -> VolumeResult {
        Err(VolumeError::Unavailable(self.0.clone()))
    }
    fn resize(&self, _: &str, _: u64) -> VolumeResult {
        Err(VolumeError::Unavailable(self.0.clone()))
    }
    fn reinit(&self, _: &str, _: Option<&str>) -> VolumeResult {
        Err(VolumeError::Unavailable(self.0.clone()))
    }
    fn delete_volume(&self, _: &str) -> VolumeResult {
        Err(VolumeError::Unavailable(self.0.clone()))
    }
    fn delete_snapshot(&self, _: &str) -> VolumeResult {
        Err(VolumeError::Unavailable(self.0.clone()))
    }
    fn fill(&self, _: &str, _: &mut dyn std::io::Read, _: &mut dyn FnMut(u64)) -> VolumeResult {
        Err(VolumeError::Unavailable(self.0.clone()))
    }
}

/// Storage failures on demand, for the operator's `fault-inject`: the next N calls of an
/// operation fail before reaching the inner store, which is what a failing disk looks like.
pub struct FaultInjector<V> {
    inner: V,
    pending: Mutex<BTreeMap<&'static str, u32>>,
}

/// Operations `fault-inject` can fail. `reset` covers ResetDisk and ReInitDisk (both put a
/// volume on another base); `resize` covers ResizeDisk.
pub const FAULT_OPERATIONS: &[&str] = &["create", "snapshot", "reset", "resize", "delete"];

impl<V: Volumes> FaultInjector<V> {
    pub fn new(inner: V) -> Self {
        FaultInjector { inner, pending: Mutex::new(BTreeMap::new()) }
    }

    pub fn inner(&self) -> &V {
        &self.inner
    }

    /// Arm `count` failures of `op`; false if `op` is not a known operation.
    pub fn arm(&self, op: &str, count: u32) -> bool {
        let Some(op) = FAULT_OPERATIONS.iter().find(|o| **o == op) else {
            return false;
        };
        if let Ok(mut p) = self.pending.lock() {
            p.insert(op, count);
        }
        true
    }

    fn trip(&self, op: &'static str) -> VolumeResult {
        let mut p = self.pending.lock().map_err(|_| VolumeError::Poisoned)?;
        match p.get_mut(op) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Err(VolumeError::Injected(op))
            }
            _ => Ok(()),
        }
    }
}

impl<V: Volumes> Volumes for FaultInjector<V> {
    fn create(&self, volume: &str, size_bytes: u64, source: Option<&str>) -> VolumeResult {
        self.trip("create")?;
        self.inner.create(volume, size_bytes, source)
    }
    fn snapshot(&self, volume: &str, snapshot: &str) -> VolumeResult {
        self.trip("snapshot")?;
        self.inner.snapshot(volume, snapshot)
    }
    fn snapshot_group(&self, members: &[(&str, &str)]) -> VolumeResult {
        self.trip("snapshot")?;
        self.inner.snapshot_group(members)
    }
    fn copy_snapshot(&self, from: &str, to: &str) -> VolumeResult {
        self.trip("snapshot")?;
        self.inner.copy_snapshot(from, to)
    }
    fn reset(&self, volume: &str, snapshot: &str) -> VolumeResult {
        self.trip("reset")?;
        self.inner.reset(volume, snapshot)
    }
    fn resize(&self, volume: &str, size_bytes: u64) -> VolumeResult {
        self.trip("resize")?;
        self.inner.resize(volume, size_bytes)
    }
    fn reinit(&self, volume: &str, source: Option<&str>) -> VolumeResult {
        self.trip("reset")?;
        self.inner.reinit(volume, source)
    }
    fn delete_volume(&self, volume: &str) -> VolumeResult {
        self.trip("delete")?;
        self.inner.delete_volume(volume)
    }
    fn delete_snapshot(&self, snapshot: &str) -> VolumeResult {
        self.trip("delete")?;
        self.inner.delete_snapshot(snapshot)
    }
    fn fill(&self, volume: &str, source: &mut dyn std::io::Read, progress: &mut dyn FnMut(u64)) -> VolumeResult {
        self.trip("create")?;
        self.inner.fill(volume, source, progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use store::BlockRead;

    #[test]
    fn injected_faults_fail_then_clear_and_leave_the_volume_alone() {
        let dir = tempfile::tempdir().unwrap();
        let engine = store::Engine::open(dir.path()).unwrap();
        let v = FaultInjector::new(engine.clone());
        v.create("d-1", 1 << 20, None).unwrap();
        v.snapshot("d-1", "s-1").unwrap();
        store::BlockWrite::write_at(&*engine.volume("d-1").unwrap(), &[7u8; 4096], 0, true).unwrap();
        assert!(v.arm("reset", 1));
        assert!(!v.arm("bogus", 1));
        assert_eq!(v.reset("d-1", "s-1"), Err(VolumeError::Injected("reset")));
        let mut buf = [0u8; 4096];
        engine.volume("d-1").unwrap().read_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [7u8; 4096], "a failed reset leaves the bytes alone");
        v.reset("d-1", "s-1").unwrap();
        engine.volume("d-1").unwrap().read_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [0u8; 4096]);
        assert!(matches!(v.reset("d-1", "s-9"), Err(VolumeError::Refused(_))));
        let _: Arc<store::Engine> = engine;
    }
}
