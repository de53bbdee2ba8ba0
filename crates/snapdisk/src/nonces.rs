//! Where the API's nonce cache lives on disk, so that no request is accepted twice within its
//! 30-minute window, across restarts and crashes alike:
//!
//! - `nonces.journal`: every admitted nonce, appended (24 bytes, one `write`) before its
//!   request is answered. A `kill -9` cannot lose what `write` returned; a power loss can lose
//!   what the kernel had not written back.
//! - `nonces.bin`: a checkpoint, every live nonce sorted by digest (written to a temporary
//!   file, synced, renamed), after which the journal is emptied. Taken at start, when the
//!   journal passes [`CHECKPOINT_BYTES`], and at shutdown.
//! - `nonces.json`: what versions before the journal saved; read once.

use anyhow::Context;
use ecs_api::auth::{NonceCache, NonceJournal};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Journal size that triggers a checkpoint, in bytes (about 2.8 million nonces).
pub const CHECKPOINT_BYTES: u64 = 64 << 20;

/// The append-only journal file.
pub struct FileJournal {
    file: Mutex<File>,
    len: AtomicU64,
}

impl NonceJournal for FileJournal {
    fn append(&self, record: &[u8; ecs_api::auth::NONCE_RECORD]) -> std::io::Result<()> {
        let mut f = self.file.lock().map_err(|_| std::io::Error::other("nonce journal lock poisoned"))?;
        f.write_all(record)?;
        self.len.fetch_add(record.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn reset(&self) -> std::io::Result<()> {
        let f = self.file.lock().map_err(|_| std::io::Error::other("nonce journal lock poisoned"))?;
        f.set_len(0)?;
        self.len.store(0, Ordering::Relaxed);
        Ok(())
    }
}

/// The nonce files of one data directory.
pub struct NonceFiles {
    dir: PathBuf,
    journal: std::sync::Arc<FileJournal>,
}

struct Shared(std::sync::Arc<FileJournal>);

impl NonceJournal for Shared {
    fn append(&self, record: &[u8; ecs_api::auth::NONCE_RECORD]) -> std::io::Result<()> {
        self.0.append(record)
    }

    fn reset(&self) -> std::io::Result<()> {
        self.0.reset()
    }
}

impl NonceFiles {
    /// Load every nonce the directory holds (checkpoint, journal, legacy file) into a new
    /// cache that journals into `nonces.journal`, then checkpoint it at once.
    pub fn open(dir: &Path, now_secs: i64) -> anyhow::Result<(NonceFiles, NonceCache)> {
        let journal_path = dir.join("nonces.journal");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(&journal_path)
            .with_context(|| format!("opening {}", journal_path.display()))?;
        let journal = std::sync::Arc::new(FileJournal { file: Mutex::new(file), len: AtomicU64::new(0) });
        let cache = NonceCache::with_journal(Box::new(Shared(journal.clone())));
        let mut loaded = 0;
        if let Ok(raw) = std::fs::read(dir.join("nonces.bin")) {
            loaded += cache.import_bytes(&raw);
        }
        if let Ok(raw) = std::fs::read(&journal_path) {
            loaded += cache.import_bytes(&raw);
        }
        let legacy = dir.join("nonces.json");
        if let Ok(raw) = std::fs::read(&legacy) {
            if let Ok(saved) = serde_json::from_slice(&raw) {
                cache.import(saved);
            } else if let Ok(saved) = serde_json::from_slice(&raw) {
                cache.import_pairs(saved);
            }
        }
        let files = NonceFiles { dir: dir.to_path_buf(), journal };
        let kept = files.checkpoint(&cache, now_secs)?;
        let _ = std::fs::remove_file(&legacy);
        tracing::debug!(loaded, kept, "nonces carried over");
        Ok((files, cache))
    }

    /// Write `nonces.bin` from the cache and empty the journal; returns how many were kept.
    pub fn checkpoint(&self, cache: &NonceCache, now_secs: i64) -> anyhow::Result<usize> {
        let path = self.dir.join("nonces.bin");
        let n = cache.checkpoint(now_secs, &|bytes| write_atomically(&path, bytes))?;
        Ok(n)
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
