//! Where the API's nonce cache lives on disk, so that no request is accepted twice within its
//! 30-minute window, across restarts and crashes alike:
//!
//! - `nonces.journal`: every admitted nonce, appended (24 bytes, one `write`) before its
//!   request is answered. A `kill -9` cannot lose what `write` returned; a power loss can lose
//!   what the kernel had not written back.
//! - `nonces.bin`: a checkpoint, every live nonce sorted by digest (written to a temporary
//!   file, synced, renamed). Taken at start, when the journal passes [`CHECKPOINT_BYTES`],
//!   and at shutdown. A checkpoint first moves the journal aside (`nonces.journal.old`, kept
//!   until `nonces.bin` is in place) and goes on in a fresh one, so requests wait only for
//!   the cache to be copied.
//! - `nonces.json`: what versions before the journal saved; read once.

use anyhow::Context;
use ecs_api::auth::{NONCE_RECORD, NonceCache, NonceJournal};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Journal size that triggers a checkpoint, in bytes (about 2.8 million nonces).
pub const CHECKPOINT_BYTES: u64 = 64 << 20;

/// The append-only journal file, and the one a checkpoint in progress set aside.
pub struct FileJournal {
    path: PathBuf,
    old: PathBuf,
    file: Mutex<File>,
    /// Bytes of whole records in `file`.
    len: AtomicU64,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).read(true).mode(0o600).open(path)
}

impl FileJournal {
    fn lock(&self) -> std::io::Result<std::sync::MutexGuard<'_, File>> {
        self.file.lock().map_err(|_| std::io::Error::other("nonce journal lock poisoned"))
    }
}

impl NonceJournal for FileJournal {
    fn append(&self, record: &[u8; NONCE_RECORD]) -> std::io::Result<()> {
        let mut f = self.lock()?;
        if let Err(e) = f.write_all(record) {
            // A short write would shift every later record: cut it off.
            let _ = f.set_len(self.len.load(Ordering::Relaxed));
            return Err(e);
        }
        self.len.fetch_add(record.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn rotate(&self) -> std::io::Result<()> {
        let mut f = self.lock()?;
        if self.old.exists() {
            // An earlier checkpoint did not finish: keep what it set aside, add this.
            let mut current = Vec::new();
            std::io::Read::read_to_end(&mut File::open(&self.path)?, &mut current)?;
            open_append(&self.old)?.write_all(&current)?;
        } else {
            std::fs::rename(&self.path, &self.old)?;
        }
        let fresh = OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&self.path)?;
        drop(fresh);
        *f = open_append(&self.path)?;
        self.len.store(0, Ordering::Relaxed);
        Ok(())
    }

    fn retire(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.old) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The nonce files of one data directory.
pub struct NonceFiles {
    dir: PathBuf,
    journal: std::sync::Arc<FileJournal>,
    /// One checkpoint at a time.
    checkpointing: Mutex<()>,
}

struct Shared(std::sync::Arc<FileJournal>);

impl NonceJournal for Shared {
    fn append(&self, record: &[u8; NONCE_RECORD]) -> std::io::Result<()> {
        self.0.append(record)
    }

    fn rotate(&self) -> std::io::Result<()> {
        self.0.rotate()
    }

    fn retire(&self) -> std::io::Result<()> {
        self.0.retire()
    }
}

impl NonceFiles {
    /// Load every nonce the directory holds (checkpoint, journals, legacy file) into a new
    /// cache that journals into `nonces.journal`, then checkpoint it at once.
    pub fn open(dir: &Path, now_secs: i64) -> anyhow::Result<(NonceFiles, NonceCache)> {
        let path = dir.join("nonces.journal");
        let old = dir.join("nonces.journal.old");
        let file = open_append(&path).with_context(|| format!("opening {}", path.display()))?;
        let len = file.metadata().map(|m| m.len() - m.len() % NONCE_RECORD as u64).unwrap_or(0);
        // A torn last record (a crash mid-write) is cut so that appends stay aligned.
        file.set_len(len).with_context(|| format!("trimming {}", path.display()))?;
        let journal = std::sync::Arc::new(FileJournal {
            path: path.clone(),
            old: old.clone(),
            file: Mutex::new(file),
            len: AtomicU64::new(len),
        });
        let cache = NonceCache::with_journal(Box::new(Shared(journal.clone())));
        let mut loaded = 0;
        for f in [dir.join("nonces.bin"), old, path] {
            if let Ok(raw) = std::fs::read(&f) {
                loaded += cache.import_bytes(&raw);
            }
        }
        let legacy = dir.join("nonces.json");
        if let Ok(raw) = std::fs::read(&legacy)
            && let Ok(saved) = serde_json::from_slice(&raw)
        {
            cache.import_pairs(saved);
        }
        let files = NonceFiles { dir: dir.to_path_buf(), journal, checkpointing: Mutex::new(()) };
        let kept = files.checkpoint(&cache, now_secs)?;
        let _ = std::fs::remove_file(&legacy);
        tracing::debug!(loaded, kept, "nonces carried over");
        Ok((files, cache))
    }

    /// Write `nonces.bin` from the cache and retire the journal it replaces; returns how
    /// many nonces were kept.
    pub fn checkpoint(&self, cache: &NonceCache, now_secs: i64) -> anyhow::Result<usize> {
        let _one = self.checkpointing.lock().map_err(|_| anyhow::anyhow!("nonce checkpoint lock poisoned"))?;
        let path = self.dir.join("nonces.bin");
        Ok(cache.checkpoint(now_secs, &|bytes| write_atomically(&path, bytes))?)
    }

    /// Whether the journal has grown past [`CHECKPOINT_BYTES`].
    pub fn due(&self) -> bool {
        self.journal.len.load(Ordering::Relaxed) > CHECKPOINT_BYTES
    }
}

/// `bytes` into `path` through a synced temporary file and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent()
        && let Ok(d) = File::open(parent)
    {
        d.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn journal_survives_a_crash_a_torn_record_and_an_unfinished_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (files, cache) = NonceFiles::open(dir.path(), 1000).unwrap();
        assert!(cache.check_and_insert("ak", "n1", 1000));
        drop((files, cache)); // a crash: no checkpoint
        // A record torn by the crash, half written.
        open_append(&dir.path().join("nonces.journal")).unwrap().write_all(&[7u8; 10]).unwrap();
        let (files, cache) = NonceFiles::open(dir.path(), 1010).unwrap();
        assert!(!cache.check_and_insert("ak", "n1", 1010), "journaled before the crash");
        assert_eq!(std::fs::metadata(dir.path().join("nonces.journal")).unwrap().len(), 0, "checkpointed at start");
        assert!(cache.check_and_insert("ak", "n2", 1020));
        assert_eq!(std::fs::metadata(dir.path().join("nonces.journal")).unwrap().len(), NONCE_RECORD as u64);
        // A checkpoint that set the journal aside and then died before writing nonces.bin.
        files.journal.rotate().unwrap();
        assert!(cache.check_and_insert("ak", "n3", 1030));
        drop((files, cache));
        let (_files, cache) = NonceFiles::open(dir.path(), 1040).unwrap();
        for n in ["n1", "n2", "n3"] {
            assert!(!cache.check_and_insert("ak", n, 1040), "{n} lost");
        }
        assert!(!dir.path().join("nonces.journal.old").exists(), "retired once nonces.bin was written");
    }
}
