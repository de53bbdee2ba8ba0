//! The seam between the control plane and the bytes. The control plane records an intent,
//! calls one of these operations, then completes the intent; every operation is idempotent
//! so that replaying an intent after a crash is harmless.
//!
//! [`LineageVolumes`] keeps only the lineage (which volume exists, which snapshots it has, what
//! its current head is based on), durably in one JSON file. The storage engine replaces it with
//! the same trait.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VolumeError {
    #[error("volume {0} does not exist")]
    NoVolume(String),
    #[error("snapshot {0} does not exist")]
    NoSnapshot(String),
    #[error("snapshot {snapshot} does not belong to volume {volume}")]
    NotOwnSnapshot { volume: String, snapshot: String },
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("injected {0} failure")]
    Injected(&'static str),
}

pub type VolumeResult = Result<(), VolumeError>;

/// The storage operations the control plane needs; every one is idempotent.
pub trait Volumes: Send + Sync {
    /// Create an empty volume, or a copy-on-write clone of `source` snapshot.
    fn create(&self, volume: &str, size_bytes: u64, source: Option<&str>) -> VolumeResult;
    /// Freeze the volume's current contents as `snapshot`.
    fn snapshot(&self, volume: &str, snapshot: &str) -> VolumeResult;
    /// Make the volume's contents those of `snapshot`, one of its own snapshots.
    fn reset(&self, volume: &str, snapshot: &str) -> VolumeResult;
    fn delete_volume(&self, volume: &str) -> VolumeResult;
    fn delete_snapshot(&self, snapshot: &str) -> VolumeResult;
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
struct Lineage {
    volumes: BTreeMap<String, VolumeRec>,
    snapshots: BTreeMap<String, SnapshotRec>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct VolumeRec {
    size_bytes: u64,
    /// The snapshot the current head starts from, if any.
    base: Option<String>,
    /// Bumped by every reset: a new, empty head.
    generation: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct SnapshotRec {
    volume: String,
    size_bytes: u64,
}

/// Lineage only, persisted atomically (write, fsync, rename) on every change.
pub struct LineageVolumes {
    path: PathBuf,
    state: Mutex<Lineage>,
}

impl LineageVolumes {
    pub fn open(dir: &Path) -> Result<Self, VolumeError> {
        std::fs::create_dir_all(dir).map_err(|e| VolumeError::Io(e.to_string()))?;
        let path = dir.join("lineage.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| VolumeError::Io(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Lineage::default(),
            Err(e) => return Err(VolumeError::Io(e.to_string())),
        };
        Ok(LineageVolumes {
            path,
            state: Mutex::new(state),
        })
    }

    fn change(&self, f: impl FnOnce(&mut Lineage) -> VolumeResult) -> VolumeResult {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| VolumeError::Io("lineage lock poisoned".into()))?;
        let mut next = guard.clone();
        f(&mut next)?;
        if next != *guard {
            self.persist(&next)?;
            *guard = next;
        }
        Ok(())
    }

    fn persist(&self, l: &Lineage) -> VolumeResult {
        let io = |e: std::io::Error| VolumeError::Io(e.to_string());
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&serde_json::to_vec(l).map_err(|e| VolumeError::Io(e.to_string()))?)
            .map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        Ok(())
    }

    /// What the volume's head is based on, and how many resets it has seen.
    pub fn head(&self, volume: &str) -> Option<(Option<String>, u64)> {
        let g = self.state.lock().ok()?;
        g.volumes
            .get(volume)
            .map(|v| (v.base.clone(), v.generation))
    }
}

impl Volumes for LineageVolumes {
    fn create(&self, volume: &str, size_bytes: u64, source: Option<&str>) -> VolumeResult {
        self.change(|l| {
            if l.volumes.contains_key(volume) {
                return Ok(());
            }
            if let Some(s) = source
                && !l.snapshots.contains_key(s)
            {
                return Err(VolumeError::NoSnapshot(s.into()));
            }
            l.volumes.insert(
                volume.into(),
                VolumeRec {
                    size_bytes,
                    base: source.map(String::from),
                    generation: 0,
                },
            );
            Ok(())
        })
    }

    fn snapshot(&self, volume: &str, snapshot: &str) -> VolumeResult {
        self.change(|l| {
            let v = l
                .volumes
                .get(volume)
                .ok_or_else(|| VolumeError::NoVolume(volume.into()))?;
            let rec = SnapshotRec {
                volume: volume.into(),
                size_bytes: v.size_bytes,
            };
            l.snapshots.entry(snapshot.into()).or_insert(rec);
            Ok(())
        })
    }

    fn reset(&self, volume: &str, snapshot: &str) -> VolumeResult {
        self.change(|l| {
            let s = l
                .snapshots
                .get(snapshot)
                .ok_or_else(|| VolumeError::NoSnapshot(snapshot.into()))?;
            if s.volume != volume {
                return Err(VolumeError::NotOwnSnapshot {
                    volume: volume.into(),
                    snapshot: snapshot.into(),
                });
            }
            let v = l
                .volumes
                .get_mut(volume)
                .ok_or_else(|| VolumeError::NoVolume(volume.into()))?;
            v.base = Some(snapshot.into());
            v.generation += 1;
            Ok(())
        })
    }

    fn delete_volume(&self, volume: &str) -> VolumeResult {
        self.change(|l| {
            l.volumes.remove(volume);
            Ok(())
        })
    }

    fn delete_snapshot(&self, snapshot: &str) -> VolumeResult {
        self.change(|l| {
            l.snapshots.remove(snapshot);
            Ok(())
        })
    }
}

impl<T: Volumes + ?Sized> Volumes for Box<T> {
    fn create(&self, volume: &str, size_bytes: u64, source: Option<&str>) -> VolumeResult {
        (**self).create(volume, size_bytes, source)
    }
    fn snapshot(&self, volume: &str, snapshot: &str) -> VolumeResult {
        (**self).snapshot(volume, snapshot)
    }
    fn reset(&self, volume: &str, snapshot: &str) -> VolumeResult {
        (**self).reset(volume, snapshot)
    }
    fn delete_volume(&self, volume: &str) -> VolumeResult {
        (**self).delete_volume(volume)
    }
    fn delete_snapshot(&self, snapshot: &str) -> VolumeResult {
        (**self).delete_snapshot(snapshot)
    }
}

/// Storage failures on demand, for the operator's `fault-inject`: the next N calls of an
/// operation fail before reaching the inner store, which is what a failing disk looks like.
pub struct FaultInjector<V> {
    inner: V,
    pending: Mutex<BTreeMap<&'static str, u32>>,
}

pub const FAULT_OPERATIONS: &[&str] = &["create", "snapshot", "reset", "delete"];

impl<V: Volumes> FaultInjector<V> {
    pub fn new(inner: V) -> Self {
        FaultInjector {
            inner,
            pending: Mutex::new(BTreeMap::new()),
        }
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
        let mut p = self
            .pending
            .lock()
            .map_err(|_| VolumeError::Io("fault lock poisoned".into()))?;
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
    fn reset(&self, volume: &str, snapshot: &str) -> VolumeResult {
        self.trip("reset")?;
        self.inner.reset(volume, snapshot)
    }
    fn delete_volume(&self, volume: &str) -> VolumeResult {
        self.trip("delete")?;
        self.inner.delete_volume(volume)
    }
    fn delete_snapshot(&self, snapshot: &str) -> VolumeResult {
        self.trip("delete")?;
        self.inner.delete_snapshot(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lineage_survives_reopen_and_checks_ownership() {
        let dir = tempfile::tempdir().unwrap();
        let v = LineageVolumes::open(dir.path()).unwrap();
        v.create("d-1", 1 << 30, None).unwrap();
        v.create("d-1", 1 << 30, None).unwrap();
        v.snapshot("d-1", "s-1").unwrap();
        v.snapshot("d-1", "s-2").unwrap();
        v.create("d-2", 1 << 30, Some("s-1")).unwrap();
        assert_eq!(
            v.reset("d-2", "s-1"),
            Err(VolumeError::NotOwnSnapshot {
                volume: "d-2".into(),
                snapshot: "s-1".into()
            })
        );
        v.reset("d-1", "s-1").unwrap();
        v.reset("d-1", "s-2").unwrap();
        drop(v);
        let v = LineageVolumes::open(dir.path()).unwrap();
        assert_eq!(v.head("d-1"), Some((Some("s-2".into()), 2)));
        assert_eq!(v.head("d-2"), Some((Some("s-1".into()), 0)));
        assert!(matches!(
            v.create("d-3", 1, Some("s-9")),
            Err(VolumeError::NoSnapshot(_))
        ));
    }

    #[test]
    fn injected_faults_fail_then_clear() {
        let dir = tempfile::tempdir().unwrap();
        let v = FaultInjector::new(LineageVolumes::open(dir.path()).unwrap());
        v.create("d-1", 1, None).unwrap();
        v.snapshot("d-1", "s-1").unwrap();
        assert!(v.arm("reset", 1));
        assert!(!v.arm("bogus", 1));
        assert_eq!(v.reset("d-1", "s-1"), Err(VolumeError::Injected("reset")));
        assert_eq!(
            v.inner().head("d-1"),
            Some((None, 0)),
            "a failed reset leaves the volume untouched"
        );
        v.reset("d-1", "s-1").unwrap();
    }
}
