//! The engine: volumes, snapshots and the layers between them, kept in memory and made
//! durable as a record log (plus a checkpoint that restates it compactly).
//!
//! A volume is a writable head layer on a chain of frozen layers. `snapshot` freezes the head
//! and starts a new empty one; `reset` starts a new empty head on the chosen snapshot's layer;
//! `create` from a snapshot starts a head on it too. All three are O(1): the complete block
//! map of the new head is a clone of a persistent map. What the old head wrote is freed later
//! by the GC thread, as are frozen layers nothing needs any more (see `gc.rs`).

use crate::error::{ErrorKind, Result, StoreError};
use crate::format::{self, FORMAT_VERSION, LayerId, Phys, Record};
use crate::io::{Io, Log, write_file_atomically};
use crate::volume::{BlockMap, Head, OwnMap, SnapshotView, Volume};
use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLockWriteGuard, mpsc};

/// A frozen layer: its own changes over its parent.
#[derive(Clone)]
pub(crate) struct Frozen {
    pub parent: Option<LayerId>,
    pub own: OwnMap,
}

#[derive(Clone)]
pub(crate) struct Snap {
    pub volume: String,
    pub layer: LayerId,
    pub size: u64,
    pub map: BlockMap,
}

pub(crate) struct Meta {
    pub layers: HashMap<LayerId, Frozen>,
    pub snapshots: BTreeMap<String, Snap>,
    pub volumes: BTreeMap<String, Arc<Volume>>,
    pub next_layer: LayerId,
    /// Heads dropped by reset or delete: everything they own is freed by the GC thread, so
    /// that those operations stay O(1).
    pub garbage: Vec<OwnMap>,
    pub generation: u64,
    /// Set by what can leave a frozen layer for GC to drop or fold (deleting a snapshot or a
    /// volume, a reset, an open); a GC pass walks the layers only when it is set.
    pub gc_due: bool,
}

pub struct Engine {
    pub(crate) dir: PathBuf,
    pub(crate) io: Arc<Io>,
    pub(crate) meta: Mutex<Meta>,
}

/// How the engine reaches its data file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Bypass the page cache for data blocks (`O_DIRECT`), like qemu's `cache=none`: no double
    /// caching under a guest, no copy into the page cache, and writes reach the device at
    /// once. Metadata stays buffered and is synced on flush either way.
    pub direct_io: bool,
}

fn open_direct(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_DIRECT.bits())
        .open(path)
        .map_err(|e| StoreError::io(format!("opening {} with O_DIRECT", path.display()), e))
}

/// Checkpoint when the log has grown past this many bytes (16 MiB). It bounds replay on a
/// restart: a full log of scattered 4 KiB writes (about 400,000 `Write` records) replays in
/// about 0.6 s on top of the checkpoint; at 64 MiB a fleet-size store took 2.3–3.2 s to open.
pub(crate) const CHECKPOINT_BYTES: u64 = 16 << 20;

impl Engine {
    /// Open (or create) the store in `dir`, replaying its log. Corrupt metadata refuses to open.
    pub fn open(dir: &Path) -> Result<Arc<Engine>> {
        Self::open_with(dir, Options::default())
    }

    /// Open with explicit options (see [`Options`]).
    pub fn open_with(dir: &Path, options: Options) -> Result<Arc<Engine>> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
        let data = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join("data"))
            .map_err(|e| StoreError::io("opening the data file", e))?;

        let mut st = State::default();
        let ckpt = read_records(&dir.join("meta.ckpt"))?;
        let ckpt_gen = match ckpt.first() {
            Some(Record::Header { generation, .. }) => *generation,
            _ => 0,
        };
        st.load_checkpoint(&ckpt)?;
        let log_path = dir.join("meta.log");
        let raw = std::fs::read(&log_path).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(Vec::new()),
            _ => Err(StoreError::io("reading the metadata log", e)),
        })?;
        let scan = format::scan(&raw)?;
        let log_gen = match scan.records.first() {
            Some(Record::Header { generation, .. }) => Some(*generation),
            _ => None,
        };
        // A log older than the checkpoint is already contained in it (a crash between the
        // two renames of a checkpoint).
        if log_gen.is_some_and(|g| g > ckpt_gen) {
            return Err(StoreError::corrupt(format!(
                "meta.log (generation {}) is newer than meta.ckpt (generation {ckpt_gen}): the checkpoint is missing or old",
                log_gen.unwrap_or_default()
            )));
        }
        let replay_log = log_gen == Some(ckpt_gen);
        if replay_log {
            for r in &scan.records[1..] {
                st.apply(r)?;
            }
        }
        // Blocks past the last one any record names were never recorded (lost in a crash) and
        // are swept below; their addresses may be handed out again.
        let next_phys = st.next_phys;
        let mut log = if replay_log {
            // Cut a torn tail so that new records follow the last good one.
            if scan.valid_len < raw.len() {
                let f =
                    OpenOptions::new().write(true).open(&log_path).map_err(|e| StoreError::io("opening the log", e))?;
                f.set_len(scan.valid_len as u64).map_err(|e| StoreError::io("cutting the log's torn tail", e))?;
                f.sync_all().map_err(|e| StoreError::io("syncing the log", e))?;
                tracing::warn!(
                    kept = scan.valid_len,
                    dropped = raw.len() - scan.valid_len,
                    "cut a torn metadata log tail"
                );
            }
            Log::open(&log_path)?
        } else {
            write_file_atomically(&log_path, &[Record::Header { version: FORMAT_VERSION, generation: ckpt_gen }])?;
            Log::open(&log_path)?
        };
        log.pending_free = std::mem::take(&mut st.freed);
        let direct = if options.direct_io { Some(open_direct(&dir.join("data"))?) } else { None };
        let io = Arc::new(Io::new(data, direct, next_phys, log));
        let volumes = st
            .heads
            .into_iter()
            .map(|(name, (size, head))| {
                let v = Volume {
                    name: name.clone(),
                    size: AtomicU64::new(size),
                    io: io.clone(),
                    head: std::sync::RwLock::new(head),
                    deleted: AtomicBool::new(false),
                };
                (name, Arc::new(v))
            })
            .collect();
        let meta = Meta {
            layers: st.layers,
            snapshots: st.snapshots,
            volumes,
            next_layer: st.next_layer,
            garbage: st.garbage,
            generation: ckpt_gen,
            gc_due: true,
        };
        let engine = Arc::new(Engine { dir: dir.to_path_buf(), io, meta: Mutex::new(meta) });
        engine.gc()?;
        engine.sweep()?;
        if engine.io.log_len()? > CHECKPOINT_BYTES {
            engine.checkpoint()?;
        }
        Ok(engine)
    }

    /// Punch out every data block nothing references: blocks written but never recorded
    /// (a crash before the flush), or released but not yet punched when the process stopped.
    /// Runs on open, when nothing else touches the store.
    fn sweep(&self) -> Result<()> {
        let meta = self.meta()?;
        let mut referenced: Vec<Phys> = Vec::new();
        for l in meta.layers.values() {
            referenced.extend(l.own.values().filter_map(|v| *v));
        }
        for v in meta.volumes.values() {
            referenced.extend(v.head_read()?.own.values().filter_map(|v| *v));
        }
        drop(meta);
        referenced.sort_unstable();
        let mut unreferenced = Vec::new();
        for (start, end) in crate::io::data_extents(&self.io.data)? {
            let mut b = start;
            while b < end {
                let i = referenced.partition_point(|p| *p < b);
                match referenced.get(i) {
                    Some(&p) if p == b => b += 1,
                    Some(&p) if p < end => {
                        unreferenced.push((b, p - b));
                        b = p;
                    }
                    _ => {
                        unreferenced.push((b, end - b));
                        b = end;
                    }
                }
            }
        }
        if !unreferenced.is_empty() {
            let blocks: u64 = unreferenced.iter().map(|(_, n)| n).sum();
            tracing::info!(blocks, "freeing data blocks nothing references");
            self.io.release_now(unreferenced)?;
        }
        Ok(())
    }

    /// Run GC in a background thread, woken after deletes and resets.
    pub fn start_gc_thread(self: &Arc<Self>) {
        let (tx, rx) = mpsc::channel::<()>();
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new().name("store-gc".into()).spawn(move || {
            while rx.recv().is_ok() {
                while rx.try_recv().is_ok() {}
                let Some(engine) = weak.upgrade() else { break };
                if let Err(e) = engine.gc().and_then(|_| engine.maybe_checkpoint()) {
                    tracing::error!(error = %e, "storage GC failed");
                }
            }
        });
        match spawned {
            Ok(_) => {
                if let Ok(mut k) = self.io.kick.lock() {
                    *k = Some(tx);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start the GC thread; space is freed on restart")
            }
        }
    }

    fn kick_gc(&self) {
        self.io.kick();
    }

    pub(crate) fn meta(&self) -> Result<MutexGuard<'_, Meta>> {
        self.meta.lock().map_err(|_| StoreError::new(ErrorKind::Io, "engine lock poisoned"))
    }

    fn new_layer(meta: &mut Meta) -> LayerId {
        let l = meta.next_layer;
        meta.next_layer += 1;
        l
    }

    /// Create an empty volume, or one that starts as a copy-on-write clone of `from`.
    /// Idempotent: creating an existing volume again succeeds.
    pub fn create_volume(&self, name: &str, size: u64, from: Option<&str>) -> Result<()> {
        let mut meta = self.meta()?;
        if meta.volumes.contains_key(name) {
            return Ok(());
        }
        let (parent, map) = match from {
            Some(s) => {
                let snap = meta.snapshots.get(s).ok_or_else(|| StoreError::not_found("snapshot", s))?;
                (Some(snap.layer), snap.map.clone())
            }
            None => (None, BlockMap::new()),
        };
        let layer = Self::new_layer(&mut meta);
        let head = Head { layer, parent, own: OwnMap::new(), map };
        let rec = Record::CreateVolume { volume: name.into(), size, layer, from: from.map(String::from) };
        self.io.append_sync(&[rec], Vec::new())?;
        let v = Volume {
            name: name.into(),
            size: AtomicU64::new(size),
            io: self.io.clone(),
            head: std::sync::RwLock::new(head),
            deleted: AtomicBool::new(false),
        };
        meta.volumes.insert(name.into(), Arc::new(v));
        Ok(())
    }

    /// Freeze the volume's current contents as `snapshot` (flushing first, so the snapshot
    /// holds every write completed before it and none after). Idempotent for the same volume.
    pub fn snapshot(&self, volume: &str, snapshot: &str) -> Result<()> {
        let mut meta = self.meta()?;
        if let Some(s) = meta.snapshots.get(snapshot) {
            return if s.volume == volume {
                Ok(())
            } else {
                Err(StoreError::new(ErrorKind::AlreadyExists, format!("snapshot {snapshot} belongs to {}", s.volume)))
            };
        }
        let vol = meta.volumes.get(volume).cloned().ok_or_else(|| StoreError::not_found("volume", volume))?;
        let new_layer = Self::new_layer(&mut meta);
        let mut head = vol.head_write()?;
        self.io.append_sync(
            &[Record::Snapshot { volume: volume.into(), snapshot: snapshot.into(), new_layer }],
            Vec::new(),
        )?;
        freeze(&mut meta, &mut head, &vol, volume, snapshot, new_layer);
        Ok(())
    }

    /// Freeze several volumes at one point in time (a snapshot group): every head is locked
    /// before any is frozen, so a write completed before this call is in every member and a
    /// write that completes after it in none. One log record: after a crash all the members
    /// exist or none does. O(1) per volume. Idempotent when every member exists already (for
    /// the same volume); `members` holds distinct volumes and distinct snapshot names.
    ///
    /// Errors: `NotFound` for an unknown volume; `Invalid` for a repeated volume or name, or
    /// when only some of the snapshots exist; `AlreadyExists` when one names another volume's.
    pub fn snapshot_group(&self, members: &[(&str, &str)]) -> Result<()> {
        let mut meta = self.meta()?;
        let mut existing = 0;
        for (volume, snapshot) in members {
            if let Some(s) = meta.snapshots.get(*snapshot) {
                if s.volume != *volume {
                    return Err(StoreError::new(
                        ErrorKind::AlreadyExists,
                        format!("snapshot {snapshot} belongs to {}", s.volume),
                    ));
                }
                existing += 1;
            }
        }
        if existing == members.len() {
            return Ok(());
        }
        if existing > 0 {
            return Err(StoreError::new(ErrorKind::Invalid, "some of the group's snapshots exist already".to_string()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (volume, snapshot) in members {
            if !seen.insert(("v", *volume)) || !seen.insert(("s", *snapshot)) {
                return Err(StoreError::new(ErrorKind::Invalid, format!("{volume} or {snapshot} is named twice")));
            }
        }
        let mut vols = Vec::with_capacity(members.len());
        for (volume, snapshot) in members {
            let v = meta.volumes.get(*volume).cloned().ok_or_else(|| StoreError::not_found("volume", volume))?;
            vols.push((*volume, *snapshot, v));
        }
        // Locks in name order: two groups never wait on each other.
        vols.sort_by(|a, b| a.0.cmp(b.0));
        let mut heads = Vec::with_capacity(vols.len());
        for (_, _, v) in &vols {
            heads.push(v.head_write()?);
        }
        let mut record = Vec::with_capacity(vols.len());
        for (volume, snapshot, _) in &vols {
            record.push((volume.to_string(), snapshot.to_string(), Self::new_layer(&mut meta)));
        }
        self.io.append_sync(&[Record::SnapshotGroup { members: record.clone() }], Vec::new())?;
        for ((head, (_, _, vol)), (volume, snapshot, new_layer)) in heads.iter_mut().zip(&vols).zip(record) {
            freeze(&mut meta, head, vol, &volume, &snapshot, new_layer);
        }
        Ok(())
    }

    /// Give a volume the fresh head `fresh` (reset, rebase): the old head's own blocks go to
    /// GC, which is woken once the locks are released.
    fn swap_head(&self, mut meta: MutexGuard<'_, Meta>, mut head: RwLockWriteGuard<'_, Head>, fresh: Head) {
        let old = std::mem::replace(&mut *head, fresh);
        meta.garbage.push(old.own);
        meta.gc_due = true;
        drop(head);
        drop(meta);
        self.kick_gc();
    }

    /// Make `to` a copy of snapshot `from` (CopySnapshot): the same frozen layer and block
    /// map, bound to the same volume, so either can go first and the other keeps the bytes.
    /// O(1); idempotent. Errors: `NotFound` for an unknown `from`; `AlreadyExists` when `to`
    /// names another snapshot's contents.
    pub fn copy_snapshot(&self, from: &str, to: &str) -> Result<()> {
        let mut meta = self.meta()?;
        let src = meta.snapshots.get(from).cloned().ok_or_else(|| StoreError::not_found("snapshot", from))?;
        if let Some(existing) = meta.snapshots.get(to) {
            return if existing.layer == src.layer {
                Ok(())
            } else {
                Err(StoreError::new(ErrorKind::AlreadyExists, format!("snapshot {to} exists")))
            };
        }
        self.io.append_sync(&[Record::CopySnapshot { from: from.into(), to: to.into() }], Vec::new())?;
        meta.snapshots.insert(to.to_string(), src);
        Ok(())
    }

    /// Make the volume's contents those of one of its snapshots, any of them; newer snapshots
    /// stay. O(1): the old head is handed to GC.
    pub fn reset(&self, volume: &str, snapshot: &str) -> Result<()> {
        let mut meta = self.meta()?;
        let snap = meta.snapshots.get(snapshot).cloned().ok_or_else(|| StoreError::not_found("snapshot", snapshot))?;
        if snap.volume != volume {
            return Err(StoreError::new(ErrorKind::Invalid, format!("snapshot {snapshot} is not of volume {volume}")));
        }
        let vol = meta.volumes.get(volume).cloned().ok_or_else(|| StoreError::not_found("volume", volume))?;
        let new_layer = Self::new_layer(&mut meta);
        let head = vol.head_write()?;
        self.io.append_sync(
            &[Record::Reset { volume: volume.into(), snapshot: snapshot.into(), new_layer }],
            Vec::new(),
        )?;
        let fresh = Head { layer: new_layer, parent: Some(snap.layer), own: OwnMap::new(), map: snap.map };
        self.swap_head(meta, head, fresh);
        Ok(())
    }

    /// Grow the volume to `size` bytes. O(1): one log record; no block is written, so the new
    /// range reads as zeros until written. Open handles see the new size at once (their range
    /// checks read it); an NBD client learns it when it reconnects, since the size is sent at
    /// negotiation.
    ///
    /// Idempotent: the same size again succeeds and changes nothing. Errors: `NotFound` for an
    /// unknown volume, `Invalid` for a smaller size (shrinking would lose data) or one that is
    /// not a whole number of blocks.
    pub fn resize(&self, volume: &str, size: u64) -> Result<()> {
        let meta = self.meta()?;
        let vol = meta.volumes.get(volume).cloned().ok_or_else(|| StoreError::not_found("volume", volume))?;
        // The head's write lock orders the change after every write that checked the old size.
        let head = vol.head_write()?;
        let old = vol.size.load(Ordering::Acquire);
        if size == old {
            return Ok(());
        }
        if size < old || !size.is_multiple_of(crate::BLOCK_SIZE) {
            return Err(StoreError::new(
                ErrorKind::Invalid,
                format!("volume {volume} cannot go from {old} to {size} bytes: it only grows, in whole blocks"),
            ));
        }
        self.io.append_sync(&[Record::Resize { volume: volume.into(), size }], Vec::new())?;
        vol.size.store(size, Ordering::Release);
        drop(head);
        Ok(())
    }

    /// Give the volume a fresh empty head on `from` (a snapshot of any volume), or on nothing
    /// so that it reads as zeros: what ReInitDisk needs to put a disk back as it was created.
    /// O(1) like `reset`: the old head is handed to GC; every snapshot stays. The volume keeps
    /// its size (a snapshot is never larger than a volume made from it, and volumes only grow).
    ///
    /// Not idempotent by itself (each call drops what was written since), but replaying it
    /// leaves the same bytes. Errors: `NotFound` for an unknown volume or snapshot, `Invalid`
    /// when the snapshot is larger than the volume.
    pub fn rebase(&self, volume: &str, from: Option<&str>) -> Result<()> {
        let mut meta = self.meta()?;
        let base = match from {
            Some(s) => Some(meta.snapshots.get(s).cloned().ok_or_else(|| StoreError::not_found("snapshot", s))?),
            None => None,
        };
        let vol = meta.volumes.get(volume).cloned().ok_or_else(|| StoreError::not_found("volume", volume))?;
        if let Some(snap) = &base
            && snap.size > vol.size.load(Ordering::Acquire)
        {
            return Err(StoreError::new(
                ErrorKind::Invalid,
                format!("snapshot {} is larger than volume {volume}", from.unwrap_or_default()),
            ));
        }
        let new_layer = Self::new_layer(&mut meta);
        let head = vol.head_write()?;
        self.io.append_sync(
            &[Record::Rebase { volume: volume.into(), from: from.map(String::from), new_layer }],
            Vec::new(),
        )?;
        let (parent, map) = match base {
            Some(s) => (Some(s.layer), s.map),
            None => (None, BlockMap::new()),
        };
        self.swap_head(meta, head, Head { layer: new_layer, parent, own: OwnMap::new(), map });
        Ok(())
    }

    /// Idempotent: deleting a missing volume succeeds.
    pub fn delete_volume(&self, volume: &str) -> Result<()> {
        let mut meta = self.meta()?;
        let Some(vol) = meta.volumes.get(volume).cloned() else {
            return Ok(());
        };
        let mut head = vol.head_write()?;
        self.io.append_sync(&[Record::DeleteVolume { volume: volume.into() }], Vec::new())?;
        vol.deleted.store(true, Ordering::Release);
        meta.garbage.push(std::mem::take(&mut head.own));
        head.map = BlockMap::new();
        meta.volumes.remove(volume);
        meta.gc_due = true;
        drop(head);
        drop(meta);
        self.kick_gc();
        Ok(())
    }

    /// Idempotent: deleting a missing snapshot succeeds.
    pub fn delete_snapshot(&self, snapshot: &str) -> Result<()> {
        let mut meta = self.meta()?;
        if !meta.snapshots.contains_key(snapshot) {
            return Ok(());
        }
        self.io.append_sync(&[Record::DeleteSnapshot { snapshot: snapshot.into() }], Vec::new())?;
        meta.snapshots.remove(snapshot);
        meta.gc_due = true;
        drop(meta);
        self.kick_gc();
        Ok(())
    }

    pub fn volume(&self, name: &str) -> Result<Arc<Volume>> {
        self.meta()?.volumes.get(name).cloned().ok_or_else(|| StoreError::not_found("volume", name))
    }

    pub fn snapshot_view(&self, name: &str) -> Result<SnapshotView> {
        let meta = self.meta()?;
        let s = meta.snapshots.get(name).ok_or_else(|| StoreError::not_found("snapshot", name))?;
        Ok(SnapshotView { name: name.into(), size: s.size, io: self.io.clone(), map: s.map.clone() })
    }

    pub fn volumes(&self) -> Result<Vec<String>> {
        Ok(self.meta()?.volumes.keys().cloned().collect())
    }

    pub fn snapshots(&self) -> Result<Vec<String>> {
        Ok(self.meta()?.snapshots.keys().cloned().collect())
    }

    /// Bytes of data the data file holds: its allocated extents below the allocator, so the
    /// space preallocated ahead of it (direct mode, at most 64 MiB) does not count.
    pub fn physical_bytes(&self) -> Result<u64> {
        let end = self.io.next_phys.load(Ordering::Relaxed);
        let blocks: u64 = crate::io::data_extents(&self.io.data)?
            .into_iter()
            .map(|(s, e)| e.min(end).saturating_sub(s.min(end)))
            .sum();
        Ok(blocks * crate::BLOCK_SIZE)
    }

    /// How far into the data file the allocator has reached: it moves only when a write
    /// needs fresh blocks (for tests and metrics).
    pub fn allocated_bytes(&self) -> u64 {
        self.io.next_phys.load(Ordering::Relaxed) * crate::BLOCK_SIZE
    }

    /// Number of frozen layers kept (for tests and metrics).
    pub fn layer_count(&self) -> Result<usize> {
        Ok(self.meta()?.layers.len())
    }

    pub fn sync(&self) -> Result<()> {
        self.io.sync()
    }

    fn maybe_checkpoint(&self) -> Result<()> {
        if self.io.log_len()? > CHECKPOINT_BYTES {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Restate the whole state compactly in `meta.ckpt` and start an empty log after it.
    pub fn checkpoint(&self) -> Result<()> {
        let mut meta = self.meta()?;
        let vols: Vec<Arc<Volume>> = meta.volumes.values().cloned().collect();
        let heads = vols.iter().map(|v| v.head_write()).collect::<Result<Vec<_>>>()?;
        // Everything in the old log must be durable before it stops counting, and what dropped
        // heads held is freed now, since the checkpoint will not mention it.
        let freed: Vec<Phys> =
            meta.garbage.drain(..).flat_map(|g| g.values().filter_map(|v| *v).collect::<Vec<_>>()).collect();
        self.io.append_sync(&[], crate::io::runs(freed))?;
        let generation = meta.generation + 1;
        let mut recs = vec![Record::Header { version: FORMAT_VERSION, generation }];
        recs.push(Record::NextIds { layer: meta.next_layer, phys: self.io.next_phys.load(Ordering::Relaxed) });
        let mut ids: Vec<&LayerId> = meta.layers.keys().collect();
        ids.sort();
        // Parents are written before children: layer ids only grow along a chain.
        for id in ids {
            let l = &meta.layers[id];
            recs.push(Record::Layer { layer: *id, parent: l.parent });
            own_records(*id, &l.own, &mut recs);
        }
        for (name, s) in &meta.snapshots {
            recs.push(Record::BindSnapshot {
                snapshot: name.clone(),
                volume: s.volume.clone(),
                layer: s.layer,
                size: s.size,
            });
        }
        for (v, h) in vols.iter().zip(&heads) {
            recs.push(Record::Volume {
                volume: v.name.clone(),
                size: v.size.load(Ordering::Acquire),
                layer: h.layer,
                parent: h.parent,
            });
            own_records(h.layer, &h.own, &mut recs);
        }
        write_file_atomically(&self.dir.join("meta.ckpt"), &recs)?;
        // From here the old log no longer counts: if the new one cannot be put in place,
        // nothing more may be acknowledged (it would be appended to a log a restart ignores).
        let log_path = self.dir.join("meta.log");
        let swapped = write_file_atomically(&log_path, &[Record::Header { version: FORMAT_VERSION, generation }])
            .and_then(|_| Log::open(&log_path))
            .and_then(|log| self.io.replace_log(log));
        if let Err(e) = swapped {
            self.io.mark_broken();
            return Err(e);
        }
        meta.generation = generation;
        drop(heads);
        Ok(())
    }
}

/// A layer's own map as runs: consecutive written blocks with consecutive data blocks, and
/// consecutive trimmed blocks.
fn own_records(layer: LayerId, own: &OwnMap, out: &mut Vec<Record>) {
    let mut run: Option<(u64, u64, Option<Phys>)> = None; // (block, count, first phys)
    let flush = |run: Option<(u64, u64, Option<Phys>)>, out: &mut Vec<Record>| match run {
        Some((block, count, Some(phys))) => out.push(Record::Write { layer, block, count: count as u32, phys }),
        Some((block, count, None)) => out.push(Record::Trim { layer, block, count: count as u32 }),
        None => {}
    };
    for (&b, &v) in own.iter() {
        run = match run {
            Some((s, n, Some(p))) if b == s + n && v == Some(p + n) && n < u32::MAX as u64 => Some((s, n + 1, Some(p))),
            Some((s, n, None)) if b == s + n && v.is_none() && n < u32::MAX as u64 => Some((s, n + 1, None)),
            other => {
                flush(other, out);
                Some((b, 1, v))
            }
        };
    }
    flush(run, out);
}

fn read_records(path: &Path) -> Result<Vec<Record>> {
    match std::fs::read(path) {
        Ok(raw) => {
            let scan = format::scan(&raw)?;
            if scan.valid_len != raw.len() {
                return Err(StoreError::corrupt(format!("{} is truncated", path.display())));
            }
            Ok(scan.records)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::io(format!("reading {}", path.display()), e)),
    }
}

/// Which layer the entries of a checkpoint belong to.
enum Target {
    None,
    Frozen(LayerId),
    Head(String),
}

/// The state being rebuilt from a checkpoint and a log: the same transitions as the live
/// operations, without I/O.
#[derive(Default)]
struct State {
    layers: HashMap<LayerId, Frozen>,
    snapshots: BTreeMap<String, Snap>,
    heads: HashMap<String, (u64, Head)>,
    /// Which volume each head layer belongs to, so that a record naming a layer finds its
    /// head without a walk over every volume (which made replay quadratic in volumes).
    /// Entries may be stale; every lookup checks the head's layer.
    head_by_layer: HashMap<LayerId, String>,
    next_layer: LayerId,
    next_phys: Phys,
    garbage: Vec<OwnMap>,
    freed: Vec<(Phys, u64)>,
}

/// Freeze `volume`'s head as `snapshot` (its log record written): the head becomes a frozen
/// layer and a new head `new_layer` continues on it with the same block map.
fn freeze(meta: &mut Meta, head: &mut Head, vol: &Volume, volume: &str, snapshot: &str, new_layer: LayerId) {
    let old =
        std::mem::replace(head, Head { layer: new_layer, parent: None, own: OwnMap::new(), map: BlockMap::new() });
    head.parent = Some(old.layer);
    head.map = old.map.clone();
    meta.layers.insert(old.layer, Frozen { parent: old.parent, own: old.own });
    let size = vol.size.load(Ordering::Acquire);
    meta.snapshots
        .insert(snapshot.to_string(), Snap { volume: volume.to_string(), layer: old.layer, size, map: old.map });
}

impl State {
    /// Replay of a snapshot (alone or in a group): `volume`'s head is frozen as `snapshot` and
    /// a new head `new_layer` continues on it.
    fn snapshot(&mut self, volume: &str, snapshot: &str, new_layer: LayerId) -> Result<()> {
        self.see(new_layer, 0);
        let (size, head) =
            self.heads.get_mut(volume).ok_or_else(|| Self::bad(format!("snapshot of missing {volume}")))?;
        let size = *size;
        let old =
            std::mem::replace(head, Head { layer: new_layer, parent: None, own: OwnMap::new(), map: BlockMap::new() });
        head.parent = Some(old.layer);
        head.map = old.map.clone();
        self.head_by_layer.remove(&old.layer);
        self.head_by_layer.insert(new_layer, volume.to_string());
        self.layers.insert(old.layer, Frozen { parent: old.parent, own: old.own });
        self.snapshots
            .insert(snapshot.to_string(), Snap { volume: volume.to_string(), layer: old.layer, size, map: old.map });
        Ok(())
    }

    /// The parent layer and block map of a head made on snapshot `from`, or on nothing.
    fn base(&self, from: Option<&str>, what: &str) -> Result<(Option<LayerId>, BlockMap)> {
        match from {
            Some(s) => {
                let snap = self.snapshots.get(s).ok_or_else(|| Self::bad(format!("{what} missing {s}")))?;
                Ok((Some(snap.layer), snap.map.clone()))
            }
            None => Ok((None, BlockMap::new())),
        }
    }

    /// Give `volume` a fresh head `layer` on (`parent`, `map`); the old head's own blocks go
    /// to GC.
    fn replace_head(
        &mut self,
        volume: &str,
        layer: LayerId,
        parent: Option<LayerId>,
        map: BlockMap,
        what: &str,
    ) -> Result<()> {
        let (_, head) = self.heads.get_mut(volume).ok_or_else(|| Self::bad(format!("{what} of missing {volume}")))?;
        let old = std::mem::replace(head, Head { layer, parent, own: OwnMap::new(), map });
        self.head_by_layer.remove(&old.layer);
        self.head_by_layer.insert(layer, volume.to_string());
        self.garbage.push(old.own);
        Ok(())
    }

    fn bad(what: String) -> StoreError {
        StoreError::corrupt(format!("metadata is inconsistent: {what}"))
    }

    fn see(&mut self, layer: LayerId, phys_end: Phys) {
        self.next_layer = self.next_layer.max(layer + 1);
        self.next_phys = self.next_phys.max(phys_end);
    }

    fn head_of(&mut self, layer: LayerId) -> Result<&mut Head> {
        self.find_head(layer).ok_or_else(|| Self::bad(format!("write to layer {layer}, which is no volume's head")))
    }

    /// The head whose layer is `layer`, if any: O(1) through `head_by_layer`.
    fn find_head(&mut self, layer: LayerId) -> Option<&mut Head> {
        let name = self.head_by_layer.get(&layer)?;
        self.heads.get_mut(name).map(|(_, h)| h).filter(|h| h.layer == layer)
    }

    /// Put a volume's head in place and index its layer.
    fn set_head(&mut self, volume: &str, size: u64, head: Head) {
        let layer = head.layer;
        if let Some((_, old)) = self.heads.insert(volume.to_string(), (size, head)) {
            self.head_by_layer.remove(&old.layer);
        }
        self.head_by_layer.insert(layer, volume.to_string());
    }

    fn load_checkpoint(&mut self, recs: &[Record]) -> Result<()> {
        let mut target = Target::None;
        for r in recs.iter().skip(1) {
            match r {
                Record::NextIds { layer, phys } => {
                    self.next_layer = *layer;
                    self.next_phys = *phys;
                }
                Record::Layer { layer, parent } => {
                    self.layers.insert(*layer, Frozen { parent: *parent, own: OwnMap::new() });
                    target = Target::Frozen(*layer);
                }
                Record::BindSnapshot { snapshot, volume, layer, size } => {
                    let snap = Snap { volume: volume.clone(), layer: *layer, size: *size, map: BlockMap::new() };
                    self.snapshots.insert(snapshot.clone(), snap);
                }
                Record::Volume { volume, size, layer, parent } => {
                    let head = Head { layer: *layer, parent: *parent, own: OwnMap::new(), map: BlockMap::new() };
                    self.set_head(volume, *size, head);
                    target = Target::Head(volume.clone());
                }
                Record::Write { block, count, phys, .. } => {
                    let own = self.target_own(&target)?;
                    for i in 0..*count as u64 {
                        own.insert(block + i, Some(phys + i));
                    }
                }
                Record::Trim { block, count, .. } => {
                    let own = self.target_own(&target)?;
                    for i in 0..*count as u64 {
                        own.insert(block + i, None);
                    }
                }
                other => return Err(Self::bad(format!("unexpected {other:?} in the checkpoint"))),
            }
        }
        // Complete maps, parents first (ids grow along every chain).
        let mut ids: Vec<LayerId> = self.layers.keys().copied().collect();
        ids.sort_unstable();
        let mut full: HashMap<LayerId, BlockMap> = HashMap::new();
        for id in ids {
            let l = &self.layers[&id];
            let mut map = match l.parent {
                Some(p) => {
                    full.get(&p).cloned().ok_or_else(|| Self::bad(format!("layer {id} has a missing parent {p}")))?
                }
                None => BlockMap::new(),
            };
            overlay(&mut map, &l.own);
            full.insert(id, map);
        }
        for (name, s) in self.snapshots.iter_mut() {
            s.map = full.get(&s.layer).cloned().ok_or_else(|| Self::bad(format!("snapshot {name} has no layer")))?;
        }
        for (name, (_, h)) in self.heads.iter_mut() {
            let mut map = match h.parent {
                Some(p) => {
                    full.get(&p).cloned().ok_or_else(|| Self::bad(format!("volume {name} has a missing parent")))?
                }
                None => BlockMap::new(),
            };
            overlay(&mut map, &h.own);
            h.map = map;
        }
        Ok(())
    }

    fn target_own(&mut self, t: &Target) -> Result<&mut OwnMap> {
        match t {
            Target::Frozen(l) => self.layers.get_mut(l).map(|x| &mut x.own),
            Target::Head(v) => self.heads.get_mut(v).map(|x| &mut x.1.own),
            Target::None => None,
        }
        .ok_or_else(|| Self::bad("checkpoint entries before any layer".into()))
    }

    /// Apply one log record, exactly as the live operation changed the state.
    fn apply(&mut self, r: &Record) -> Result<()> {
        match r {
            Record::Write { layer, block, count, phys } => {
                self.see(*layer, phys + *count as u64);
                let freed = self.head_of(*layer)?.apply_write(*block, *count as u64, *phys);
                self.freed.extend(crate::io::runs(freed));
            }
            Record::Trim { layer, block, count } => {
                self.see(*layer, 0);
                let freed = self.head_of(*layer)?.apply_trim(*block, *count as u64);
                self.freed.extend(crate::io::runs(freed));
            }
            Record::CreateVolume { volume, size, layer, from } => {
                self.see(*layer, 0);
                let (parent, map) = self.base(from.as_deref(), "clone")?;
                self.set_head(volume, *size, Head { layer: *layer, parent, own: OwnMap::new(), map });
            }
            Record::Snapshot { volume, snapshot, new_layer } => self.snapshot(volume, snapshot, *new_layer)?,
            Record::CopySnapshot { from, to } => {
                let src =
                    self.snapshots.get(from).cloned().ok_or_else(|| Self::bad(format!("copy of missing {from}")))?;
                self.snapshots.insert(to.clone(), src);
            }
            Record::SnapshotGroup { members } => {
                for (volume, snapshot, new_layer) in members {
                    self.snapshot(volume, snapshot, *new_layer)?;
                }
            }
            Record::Reset { volume, snapshot, new_layer } => {
                self.see(*new_layer, 0);
                let (parent, map) = self.base(Some(snapshot), "reset to")?;
                self.replace_head(volume, *new_layer, parent, map, "reset")?;
            }
            Record::Resize { volume, size } => {
                let (s, _) =
                    self.heads.get_mut(volume).ok_or_else(|| Self::bad(format!("resize of missing {volume}")))?;
                *s = *size;
            }
            Record::Rebase { volume, from, new_layer } => {
                self.see(*new_layer, 0);
                let (parent, map) = self.base(from.as_deref(), "rebase on")?;
                self.replace_head(volume, *new_layer, parent, map, "rebase")?;
            }
            Record::DeleteVolume { volume } => {
                if let Some((_, h)) = self.heads.remove(volume) {
                    self.head_by_layer.remove(&h.layer);
                    self.garbage.push(h.own);
                }
            }
            Record::DeleteSnapshot { snapshot } => {
                self.snapshots.remove(snapshot);
            }
            Record::Merge { parent, child } => {
                // The child is a frozen layer or a head; only the head with that layer can be it.
                let head = match self.head_by_layer.get(child) {
                    Some(name) => self.heads.get_mut(name).map(|(_, h)| h),
                    None => None,
                };
                let freed =
                    crate::gc::merge_state(&mut self.layers, head.into_iter(), *parent, *child).map_err(Self::bad)?;
                self.freed.extend(crate::io::runs(freed));
            }
            Record::Drop { layer } => {
                let l = self.layers.remove(layer).ok_or_else(|| Self::bad(format!("drop of missing layer {layer}")))?;
                let freed: Vec<Phys> = l.own.values().filter_map(|v| *v).collect();
                self.freed.extend(crate::io::runs(freed));
            }
            other => return Err(Self::bad(format!("{other:?} in the log"))),
        }
        Ok(())
    }
}

/// Apply a layer's own changes over a complete map.
pub(crate) fn overlay(map: &mut BlockMap, own: &OwnMap) {
    for (&b, &v) in own.iter() {
        match v {
            Some(p) => {
                map.insert(b, p);
            }
            None => {
                map.remove(&b);
            }
        }
    }
}
