//! The two files behind the engine: `data` (4 KiB blocks, append-allocated, freed by punching
//! holes) and `meta.log` (the record log, appended in batches and synced on flush).

use crate::BLOCK_SIZE;
use crate::error::{Result, StoreError};
use crate::format::{Phys, Record};
use crate::uring::{Buf, Run};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The data file grows by this many blocks (64 MiB) when the allocator nears its end.
const EXTEND_BLOCKS: u64 = 1 << 14;

/// Free space, in bytes, that data writes leave on the store's file system. A write that
/// needs the data file to grow while less than this (plus the growth) is free fails with
/// ENOSPC, which NBD passes on as ENOSPC (qemu then pauses the guest): the metadata log, the
/// catalog and the nonce journal, all small, keep room to record what happened, and writes
/// resume by themselves once space is freed. The data file grows in steps of 64 MiB.
pub const RESERVE_BYTES: u64 = 64 << 20;

/// Records are written to the file once this many bytes are buffered, or on sync.
const SPILL_BYTES: usize = 1 << 20;

pub(crate) struct Io {
    pub data: File,
    /// The same file opened with `O_DIRECT`, when the engine bypasses the page cache.
    direct: Option<File>,
    pub next_phys: AtomicU64,
    log: Mutex<Log>,
    /// Blocks whose release is durable, waiting to be punched out of the data file. Punching
    /// is slow (a syscall per run), so it happens off the flush path, on the GC thread.
    punchable: Mutex<Vec<(Phys, u64)>>,
    write_gate: Mutex<()>,
    /// The data file's size in blocks, kept ahead of `next_phys`.
    extended: AtomicU64,
    extend_lock: Mutex<()>,
    /// Wakes the GC thread, when there is one.
    pub kick: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    /// Set when a write to the log failed: the state in memory is ahead of the disk, so
    /// nothing more may be acknowledged.
    broken: std::sync::atomic::AtomicBool,
}

pub(crate) struct Log {
    pub file: File,
    pub path: PathBuf,
    pub buf: Vec<u8>,
    pub len: u64,
    /// Blocks whose last reference is gone; punched once that is durable.
    pub pending_free: Vec<(Phys, u64)>,
}

impl Io {
    pub fn new(data: File, direct: Option<File>, next_phys: u64, log: Log) -> Io {
        // Everything past `next_phys` is unreferenced (the open-time sweep frees it), so the
        // next allocation extends or preallocates from there.
        let size = next_phys;
        Io {
            data,
            direct,
            next_phys: AtomicU64::new(next_phys),
            log: Mutex::new(log),
            punchable: Mutex::default(),
            write_gate: Mutex::default(),
            extended: AtomicU64::new(size),
            extend_lock: Mutex::default(),
            kick: Mutex::default(),
            broken: Default::default(),
        }
    }

    pub fn log(&self) -> Result<MutexGuard<'_, Log>> {
        if self.broken.load(Ordering::Acquire) {
            return Err(StoreError::new(crate::ErrorKind::Io, "the metadata log failed earlier; restart to recover"));
        }
        self.log.lock().map_err(|_| StoreError::new(crate::ErrorKind::Io, "metadata log lock poisoned"))
    }

    /// Reserve `n` fresh blocks past every block any record has ever named, so no stale
    /// reference can ever see someone else's data. The file's size is kept ahead of the
    /// allocator: writes inside the file's size are not size-changing writes, which the
    /// kernel serializes (and which `O_DIRECT` would make synchronous).
    pub fn alloc(&self, n: u64) -> Result<Phys> {
        let p = self.next_phys.fetch_add(n, Ordering::Relaxed);
        if p + n > self.extended.load(Ordering::Acquire) {
            let mut g = self.extend_lock.lock().map_err(|_| StoreError::new(crate::ErrorKind::Io, "lock poisoned"))?;
            let cur = self.extended.load(Ordering::Acquire);
            if p + n > cur {
                let new = (p + n).max(cur) + EXTEND_BLOCKS;
                let growth = (new - cur) * BLOCK_SIZE;
                let free = nix::sys::statvfs::fstatvfs(&self.data)
                    .map(|v| v.blocks_available() * v.fragment_size())
                    .map_err(|e| StoreError::io("reading the file system's free space", std::io::Error::from(e)))?;
                if free < growth + RESERVE_BYTES {
                    // Give the blocks back when nothing was allocated after them, so that
                    // writes refused while the disk is full do not grow the next extension.
                    let _ = self.next_phys.compare_exchange(p + n, p, Ordering::AcqRel, Ordering::Relaxed);
                    return Err(StoreError::io(
                        format!(
                            "the file system is nearly full: {} MiB free, {} MiB kept in reserve",
                            free >> 20,
                            RESERVE_BYTES >> 20
                        ),
                        std::io::Error::from_raw_os_error(nix::libc::ENOSPC),
                    ));
                }
                if self.direct.is_some() {
                    // O_DIRECT writes into allocated (unwritten) extents are overwrites, which
                    // the kernel lets run in parallel; writes into holes it serializes. So
                    // direct mode preallocates ahead (a bounded 64 MiB, shared by all volumes).
                    use nix::fcntl::{FallocateFlags, fallocate};
                    use std::os::fd::AsRawFd;
                    let (off, len) = ((cur * BLOCK_SIZE) as i64, ((new - cur) * BLOCK_SIZE) as i64);
                    fallocate(self.data.as_raw_fd(), FallocateFlags::empty(), off, len)
                        .map_err(|e| StoreError::io("preallocating the data file", std::io::Error::from(e)))?;
                } else {
                    self.data.set_len(new * BLOCK_SIZE).map_err(|e| StoreError::io("extending the data file", e))?;
                }
                self.extended.store(new, Ordering::Release);
            }
            *g = ();
        }
        Ok(p)
    }

    pub fn write_blocks(&self, data: &[u8], phys: Phys) -> Result<()> {
        let err = |e| StoreError::io(format!("writing data block {phys}"), e);
        if let Some(direct) = &self.direct {
            return if crate::buf::is_aligned(data) {
                direct.write_all_at(data, phys * BLOCK_SIZE).map_err(err)
            } else {
                let mut b = crate::buf::AlignedBuf::zeroed(data.len());
                b.as_mut_slice().copy_from_slice(data);
                direct.write_all_at(b.as_slice(), phys * BLOCK_SIZE).map_err(err)
            };
        }
        // Buffered writes to one file serialize on its inode lock anyway, and the kernel spins
        // waiting for it; queueing here instead leaves the CPU to the writer that holds it.
        let _one = self.write_gate.lock();
        self.data
            .write_all_at(data, phys * BLOCK_SIZE)
            .map_err(|e| StoreError::io(format!("writing data block {phys}"), e))
    }

    /// Whether data blocks bypass the page cache (`O_DIRECT`).
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Read many runs of data blocks, each `(buf, phys)` filling `buf` from block `phys`;
    /// one result per run, in order. With `O_DIRECT` and page-aligned buffers they all go to
    /// the disk together (io_uring, see `uring`); otherwise one after another.
    pub fn read_runs(&self, runs: &mut [(&mut [u8], Phys)]) -> Vec<Result<()>> {
        if let Some(direct) = &self.direct
            && runs.iter().all(|(b, _)| crate::buf::is_aligned(b))
        {
            return together(direct, runs.iter_mut().map(|(b, p)| (Buf::Read(b), *p)).collect());
        }
        runs.iter_mut().map(|(b, p)| self.read_blocks(b, *p)).collect()
    }

    /// Write many runs of data blocks in place, each `(data, phys)` over blocks from `phys`;
    /// one result per run, in order. Like [`Io::read_runs`]: together through io_uring with
    /// `O_DIRECT` and page-aligned data, otherwise one after another. The caller ensures the
    /// runs do not overlap.
    pub fn write_runs(&self, runs: &[(&[u8], Phys)]) -> Vec<Result<()>> {
        if let Some(direct) = &self.direct
            && runs.iter().all(|(b, _)| crate::buf::is_aligned(b))
        {
            return together(direct, runs.iter().map(|(b, p)| (Buf::Write(b), *p)).collect());
        }
        runs.iter().map(|(b, p)| self.write_blocks(b, *p)).collect()
    }

    pub fn read_blocks(&self, buf: &mut [u8], phys: Phys) -> Result<()> {
        if let Some(direct) = &self.direct {
            let err = |e| StoreError::io(format!("reading data block {phys}"), e);
            if crate::buf::is_aligned(buf) {
                return direct.read_exact_at(buf, phys * BLOCK_SIZE).map_err(err);
            }
            let mut b = crate::buf::AlignedBuf::zeroed(buf.len());
            direct.read_exact_at(b.as_mut_slice(), phys * BLOCK_SIZE).map_err(err)?;
            buf.copy_from_slice(b.as_slice());
            return Ok(());
        }
        self.data
            .read_exact_at(buf, phys * BLOCK_SIZE)
            .map_err(|e| StoreError::io(format!("reading data block {phys}"), e))
    }

    /// Append records; spill to the file when the buffer is large.
    pub fn append(&self, records: &[Record], freed: Vec<(Phys, u64)>) -> Result<()> {
        let mut log = self.log()?;
        for r in records {
            r.encode(&mut log.buf);
        }
        log.pending_free.extend(freed);
        if log.buf.len() >= SPILL_BYTES {
            self.guard(log.spill())?;
        }
        Ok(())
    }

    /// Append records and make them, and every write before them, durable.
    pub fn append_sync(&self, records: &[Record], freed: Vec<(Phys, u64)>) -> Result<()> {
        let mut log = self.log()?;
        for r in records {
            r.encode(&mut log.buf);
        }
        log.pending_free.extend(freed);
        self.guard(log.sync(&self.data))?;
        let released = std::mem::take(&mut log.pending_free);
        // A long log is due a checkpoint, which the GC thread writes.
        let long = log.len > crate::engine::CHECKPOINT_BYTES;
        drop(log);
        if !released.is_empty()
            && let Ok(mut p) = self.punchable.lock()
        {
            p.extend(released);
        }
        if long || self.has_punchable() {
            self.kick();
        }
        Ok(())
    }

    pub fn sync(&self) -> Result<()> {
        self.append_sync(&[], Vec::new())
    }

    fn has_punchable(&self) -> bool {
        self.punchable.lock().is_ok_and(|p| !p.is_empty())
    }

    /// Wake the GC thread (it punches what flushes released).
    pub fn kick(&self) {
        if let Ok(k) = self.kick.lock()
            && let Some(tx) = k.as_ref()
        {
            let _ = tx.send(());
        }
    }

    /// Queue runs whose release is already durable (or that were never referenced).
    pub fn release_now(&self, runs: Vec<(Phys, u64)>) -> Result<()> {
        if let Ok(mut p) = self.punchable.lock() {
            p.extend(runs);
        }
        self.punch_released()
    }

    /// Punch out every block whose release is durable.
    pub fn punch_released(&self) -> Result<()> {
        let runs = match self.punchable.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return Err(StoreError::new(crate::ErrorKind::Io, "punch list lock poisoned")),
        };
        let mut blocks: Vec<(Phys, u64)> = runs;
        blocks.sort_unstable();
        let mut merged: Vec<(Phys, u64)> = Vec::new();
        for (p, n) in blocks {
            match merged.last_mut() {
                Some((s, m)) if *s + *m >= p => *m = (*m).max(p + n - *s),
                _ => merged.push((p, n)),
            }
        }
        for (p, n) in merged {
            punch(&self.data, p, n)?;
        }
        Ok(())
    }

    /// Refuse every further acknowledgement: the files no longer match what is in memory.
    pub fn mark_broken(&self) {
        self.broken.store(true, Ordering::Release);
    }

    fn guard(&self, r: Result<()>) -> Result<()> {
        if r.is_err() {
            self.broken.store(true, Ordering::Release);
        }
        r
    }

    pub fn log_len(&self) -> Result<u64> {
        let log = self.log()?;
        Ok(log.len + log.buf.len() as u64)
    }

    /// Swap in a new log file (after a checkpoint); the caller holds every lock.
    pub fn replace_log(&self, new: Log) -> Result<()> {
        let mut log = self.log()?;
        let pending = std::mem::take(&mut log.pending_free);
        *log = new;
        log.pending_free = pending;
        Ok(())
    }
}

impl Log {
    pub fn open(path: &Path) -> Result<Log> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
        let len = file.metadata().map_err(|e| StoreError::io("stat of the metadata log", e))?.len();
        Ok(Log { file, path: path.to_path_buf(), buf: Vec::new(), len, pending_free: Vec::new() })
    }

    fn spill(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(&self.buf)
            .map_err(|e| StoreError::io(format!("appending to {}", self.path.display()), e))?;
        self.len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Data first, then the records that point at it; after this, what they released may go.
    fn sync(&mut self, data: &File) -> Result<()> {
        data.sync_data().map_err(|e| StoreError::io("syncing the data file", e))?;
        self.spill()?;
        self.file.sync_data().map_err(|e| StoreError::io("syncing the metadata log", e))
    }
}

fn punch(data: &File, phys: Phys, n: u64) -> Result<()> {
    use nix::fcntl::{FallocateFlags, fallocate};
    use std::os::fd::AsRawFd;
    let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
    let (off, len) = ((phys * BLOCK_SIZE) as i64, (n * BLOCK_SIZE) as i64);
    fallocate(data.as_raw_fd(), flags, off, len)
        .map_err(|e| StoreError::io(format!("freeing data blocks {phys}+{n}"), std::io::Error::from(e)))
}

/// Allocated ranges of the data file, in blocks `[start, end)`, found with SEEK_DATA/SEEK_HOLE.
pub(crate) fn data_extents(data: &File) -> Result<Vec<(Phys, Phys)>> {
    use nix::unistd::{Whence, lseek};
    use std::os::fd::AsRawFd;
    let fd = data.as_raw_fd();
    let len = data.metadata().map_err(|e| StoreError::io("stat of the data file", e))?.len() as i64;
    let mut out = Vec::new();
    let mut pos = 0i64;
    while pos < len {
        let start = match lseek(fd, pos, Whence::SeekData) {
            Ok(s) => s,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(StoreError::io("seeking data in the data file", e.into())),
        };
        let end = lseek(fd, start, Whence::SeekHole).map_err(|e| StoreError::io("seeking a hole", e.into()))?;
        out.push((start as u64 / BLOCK_SIZE, (end as u64).div_ceil(BLOCK_SIZE)));
        pos = end;
    }
    Ok(out)
}

/// Group a list of freed blocks into runs.
pub(crate) fn runs(mut blocks: Vec<Phys>) -> Vec<(Phys, u64)> {
    blocks.sort_unstable();
    let mut out: Vec<(Phys, u64)> = Vec::new();
    for p in blocks {
        match out.last_mut() {
            Some((start, n)) if *start + *n == p => *n += 1,
            _ => out.push((p, 1)),
        }
    }
    out
}

/// Write `records` to `path` durably: temp file, fsync, rename, fsync the directory.
/// Run transfers of data blocks `(buffer, phys)` on the `O_DIRECT` data file through
/// `uring::transfer`; each error names its block.
fn together(direct: &File, runs: Vec<(Buf<'_>, Phys)>) -> Vec<Result<()>> {
    let what: Vec<(&str, Phys)> =
        runs.iter().map(|(b, p)| (if matches!(b, Buf::Read(_)) { "reading" } else { "writing" }, *p)).collect();
    let mut batch: Vec<Run> = runs.into_iter().map(|(buf, p)| Run { buf, offset: p * BLOCK_SIZE }).collect();
    crate::uring::transfer(direct, &mut batch)
        .into_iter()
        .zip(what)
        .map(|(r, (verb, p))| r.map_err(|e| StoreError::io(format!("{verb} data block {p}"), e)))
        .collect()
}

pub(crate) fn write_file_atomically(path: &Path, records: &[Record]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut buf = Vec::new();
    for r in records {
        r.encode(&mut buf);
    }
    let io = |what: &str, e| StoreError::io(format!("{what} {}", tmp.display()), e);
    let mut f = File::create(&tmp).map_err(|e| io("creating", e))?;
    f.write_all(&buf).map_err(|e| io("writing", e))?;
    f.sync_all().map_err(|e| io("syncing", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("renaming", e))?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("syncing the directory of", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_coalesce() {
        assert_eq!(super::runs(vec![5, 3, 4, 9, 10, 1]), vec![(1, 1), (3, 3), (9, 2)]);
    }
}
