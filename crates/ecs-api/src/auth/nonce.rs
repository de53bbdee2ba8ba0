//! The SignatureNonce replay cache (notes §2: a nonce may be used once within the 15-minute
//! validity window of its timestamp, per AccessKey).

use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

/// A request is valid for 15 minutes either side of its timestamp, so a nonce must be
/// remembered for the whole 30 minutes in which its request could still be accepted.
const WINDOW_SECS: i64 = 2 * super::MAX_SKEW_SECS;

/// Bytes of one entry in [`NonceCache::export_bytes`]: a 16-byte digest and an 8-byte time.
pub const RECORD: usize = 24;

fn record(digest: u128, time: i64) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[..16].copy_from_slice(&digest.to_be_bytes());
    r[16..].copy_from_slice(&time.to_be_bytes());
    r
}

/// Sort by digest and keep one entry per digest, the newest: a nonce reused after its window
/// and saved with its expired first use must be found by its latest time.
fn newest_per_digest(entries: &mut Vec<(u128, i64)>) {
    entries.sort_unstable();
    entries.dedup_by(|later, earlier| {
        let same = later.0 == earlier.0;
        if same {
            earlier.1 = later.1;
        }
        same
    });
}

/// Parse records in [`NonceCache::export_bytes`] layout; a torn last one is skipped.
fn parse(raw: &[u8]) -> Vec<(u128, i64)> {
    raw.chunks_exact(RECORD)
        .filter_map(|rec| {
            let (d, t) = rec.split_at(16);
            Some((u128::from_be_bytes(d.try_into().ok()?), i64::from_be_bytes(t.try_into().ok()?)))
        })
        .collect()
}

/// SignatureNonces seen inside the window, per AccessKey. Each is kept as a 128-bit digest of
/// (AccessKeyId, nonce), 40 bytes an entry whatever the nonce's length, with no allocation per
/// request; two different pairs share a digest with probability 2^-128. Entries expire in
/// arrival order, so eviction is a pop from the front of a queue. Nonces carried over a
/// restart stay in the sorted array they were saved as (looked up by binary search, dropped
/// whole once the newest has expired), so a restart after millions of requests loads in
/// the time it takes to read the file.
pub struct NonceCache {
    inner: Mutex<Inner>,
    journal: Option<Box<dyn NonceJournal>>,
    /// The most nonces remembered at once ([`DEFAULT_CAPACITY`] unless set).
    capacity: usize,
}

/// Nonces remembered at once unless [`NonceCache::set_capacity`] says otherwise: about 60 bytes
/// each, so at most about 120 MiB, which is 1,100 signed requests a second held for the whole
/// 30-minute window.
pub const DEFAULT_CAPACITY: usize = 2_000_000;

impl Default for NonceCache {
    fn default() -> Self {
        NonceCache { inner: Mutex::default(), journal: None, capacity: DEFAULT_CAPACITY }
    }
}

/// Where each accepted nonce is recorded before its request is answered, so that a crash
/// (kill -9) loses none: the binary appends the 24-byte record to a file. This crate does no
/// I/O itself.
pub trait NonceJournal: Send + Sync {
    /// Record one entry ([`NonceCache::export_bytes`] layout), whole or not at all.
    fn append(&self, record: &[u8; RECORD]) -> std::io::Result<()>;
    /// Go on in a new, empty journal; what was recorded so far is kept aside until
    /// [`NonceJournal::retire`].
    fn rotate(&self) -> std::io::Result<()>;
    /// What was set aside by [`NonceJournal::rotate`] is in a saved checkpoint now: drop it.
    fn retire(&self) -> std::io::Result<()>;
}

/// Why a nonce was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Seen inside the window.
    Used,
    /// It could not be recorded durably, so it is not accepted either.
    Unrecorded,
    /// The cache holds its capacity of nonces still inside their window: the request is
    /// refused (a nonce is never forgotten early), to be retried after this many seconds,
    /// when the oldest expires.
    Full { retry_after_secs: i64 },
}

#[derive(Default)]
struct Inner {
    seen: HashMap<u128, i64, BuildHasherDefault<DigestHasher>>,
    order: VecDeque<(i64, u128)>,
    /// From the previous run, sorted by digest.
    carried: Vec<(u128, i64)>,
    /// The newest time in `carried`.
    carried_newest: i64,
}

/// Keys are SHA-256 digests already, uniform and not steerable by a client without a
/// preimage, so their low 64 bits serve as the hash.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, i: u128) {
        self.0 = i as u64;
    }
}

/// The first 128 bits of SHA-256 over the key id, a NUL, and the nonce.
fn digest(access_key_id: &str, nonce: &str) -> u128 {
    let mut h = Sha256::new();
    h.update(access_key_id.as_bytes());
    h.update([0u8]);
    h.update(nonce.as_bytes());
    let out = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&out[..16]);
    u128::from_be_bytes(first)
}

impl Inner {
    /// Whether `key` was seen inside the window ending at `now`.
    fn used(&mut self, key: u128, now: i64) -> bool {
        if self.seen.contains_key(&key) {
            return true;
        }
        if self.carried.is_empty() {
            return false;
        }
        if now - self.carried_newest > WINDOW_SECS {
            self.carried = Vec::new();
            return false;
        }
        match self.carried.binary_search_by_key(&key, |(d, _)| *d) {
            Ok(i) => now - self.carried[i].1 <= WINDOW_SECS,
            Err(_) => false,
        }
    }
}

impl NonceCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache that records every nonce it admits in `journal` first.
    pub fn with_journal(journal: Box<dyn NonceJournal>) -> Self {
        NonceCache { journal: Some(journal), ..NonceCache::default() }
    }

    /// Remember at most `entries` nonces at once (at least 1); past that, requests are
    /// refused with [`Refused::Full`] until the oldest leave their window.
    pub fn set_capacity(&mut self, entries: usize) {
        self.capacity = entries.max(1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Records the nonce; false when it was already used inside the window (or could not be
    /// recorded).
    pub fn check_and_insert(&self, access_key_id: &str, nonce: &str, now_secs: i64) -> bool {
        self.admit(access_key_id, nonce, now_secs, true).is_ok()
    }

    /// Admit the nonce once inside the window: recorded in the journal (if any), then
    /// remembered. When the journal cannot take it, a request that changes something
    /// (`durable`) is refused; one that only reads is admitted from memory alone (a replay
    /// after a crash would only read again), so reads keep working on a full disk.
    pub fn admit(&self, access_key_id: &str, nonce: &str, now_secs: i64, durable: bool) -> Result<(), Refused> {
        let key = digest(access_key_id, nonce);
        let mut g = self.lock();
        while let Some(&(t, old)) = g.order.front() {
            if now_secs - t <= WINDOW_SECS {
                break;
            }
            g.order.pop_front();
            if g.seen.get(&old) == Some(&t) {
                g.seen.remove(&old);
            }
        }
        if g.used(key, now_secs) {
            return Err(Refused::Used);
        }
        if g.seen.len() + g.carried.len() >= self.capacity {
            let oldest = g.order.front().map(|(t, _)| *t).unwrap_or(g.carried_newest);
            return Err(Refused::Full { retry_after_secs: (oldest + WINDOW_SECS + 1 - now_secs).max(1) });
        }
        if let Some(j) = &self.journal
            && j.append(&record(key, now_secs)).is_err()
            && durable
        {
            return Err(Refused::Unrecorded);
        }
        g.seen.insert(key, now_secs);
        g.order.push_back((now_secs, key));
        Ok(())
    }

    /// Save every nonce still inside the window ending at `now_secs` with `save` (sorted,
    /// [`NonceCache::export_bytes`] layout) and retire the journal it replaces. Only the copy
    /// and the journal's rotation happen under the lock (requests wait for a copy, not for
    /// the sort or the write); a nonce admitted meanwhile is in the new journal, and until
    /// `save` returns the old journal still holds the rest. Returns how many were saved.
    pub fn checkpoint(&self, now_secs: i64, save: &dyn Fn(&[u8]) -> std::io::Result<()>) -> std::io::Result<usize> {
        let mut live: Vec<(u128, i64)> = {
            let g = self.lock();
            let copy = g
                .carried
                .iter()
                .copied()
                .chain(g.order.iter().map(|(t, d)| (*d, *t)))
                .filter(|(_, t)| now_secs - t <= WINDOW_SECS)
                .collect();
            if let Some(j) = &self.journal {
                j.rotate()?;
            }
            copy
        };
        newest_per_digest(&mut live);
        let bytes: Vec<u8> = live.into_iter().flat_map(|(d, t)| record(d, t)).collect();
        save(&bytes)?;
        if let Some(j) = &self.journal {
            j.retire()?;
        }
        Ok(bytes.len() / RECORD)
    }

    /// Every digest still remembered, with its time, sorted by digest.
    fn entries(&self) -> Vec<(u128, i64)> {
        let g = self.lock();
        let mut all: Vec<(u128, i64)> =
            g.carried.iter().copied().chain(g.order.iter().map(|(t, d)| (*d, *t))).collect();
        all.sort_unstable_by_key(|(d, _)| *d);
        all
    }

    /// Every digest remembered as 24-byte records (digest, then time in seconds, both
    /// big-endian), sorted by digest: what a restart loads with [`NonceCache::import_bytes`].
    pub fn export_bytes(&self) -> Vec<u8> {
        self.entries().into_iter().flat_map(|(d, t)| record(d, t)).collect()
    }

    /// Load what [`NonceCache::export_bytes`] wrote; a torn last record is ignored. Returns
    /// how many entries were loaded.
    pub fn import_bytes(&self, raw: &[u8]) -> usize {
        let items = parse(raw);
        let n = items.len();
        self.carry(items);
        n
    }

    /// Load nonces saved by earlier versions, as (AccessKeyId, nonce, time).
    pub fn import_pairs(&self, items: Vec<(String, String, i64)>) {
        self.carry(items.into_iter().map(|(ak, n, t)| (digest(&ak, &n), t)).collect());
    }

    /// Add `items` to the carried set (sorting is linear when they come sorted, as saved).
    fn carry(&self, items: Vec<(u128, i64)>) {
        let mut g = self.lock();
        let mut all = std::mem::take(&mut g.carried);
        all.extend(items);
        newest_per_digest(&mut all);
        g.carried_newest = all.iter().map(|(_, t)| *t).max().unwrap_or(0);
        g.carried = all;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_reuse_inside_window_only() {
        let c = NonceCache::new();
        assert!(c.check_and_insert("ak", "n1", 1000));
        assert!(!c.check_and_insert("ak", "n1", 1500));
        assert!(c.check_and_insert("other", "n1", 1500), "per AccessKey");
        let carried = NonceCache::new();
        carried.import_bytes(&c.export_bytes());
        assert!(!carried.check_and_insert("ak", "n1", 1600), "carried across a restart");
        let bin = NonceCache::new();
        assert_eq!(bin.import_bytes(&c.export_bytes()), 2);
        assert!(!bin.check_and_insert("ak", "n1", 1600), "carried in the binary file");
        assert_eq!(NonceCache::new().import_bytes(&c.export_bytes()[..30]), 1, "a torn record is skipped");
        let legacy = NonceCache::new();
        legacy.import_pairs(vec![("ak".into(), "n1".into(), 1000)]);
        assert!(!legacy.check_and_insert("ak", "n1", 1600), "carried from the older file format");
        assert!(legacy.check_and_insert("ak", "n2", 1600));
        assert!(c.check_and_insert("ak", "n1", 1000 + WINDOW_SECS + 1), "expired");
        // Carried nonces go on to the next restart, and expire like the others.
        let again = NonceCache::new();
        again.import_bytes(&carried.export_bytes());
        assert!(!again.check_and_insert("ak", "n1", 1700), "carried across a second restart");
        assert!(bin.check_and_insert("ak", "n1", 1500 + WINDOW_SECS + 1), "a carried nonce expires");
        assert!(bin.lock().carried.is_empty(), "the carried set is dropped once all of it expired");
    }

    /// A journal in memory, failing on demand.
    #[derive(Default, Clone)]
    struct MemJournal(std::sync::Arc<Mutex<(Vec<u8>, bool)>>);

    impl NonceJournal for MemJournal {
        fn append(&self, record: &[u8; RECORD]) -> std::io::Result<()> {
            let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if g.1 {
                return Err(std::io::Error::other("disk full"));
            }
            g.0.extend_from_slice(record);
            Ok(())
        }

        fn rotate(&self) -> std::io::Result<()> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).0.clear();
            Ok(())
        }

        fn retire(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_admitted_nonce_is_journaled_first() {
        let j = MemJournal::default();
        let c = NonceCache::with_journal(Box::new(j.clone()));
        assert_eq!(c.admit("ak", "n1", 1000, true), Ok(()));
        assert_eq!(c.admit("ak", "n1", 1001, true), Err(Refused::Used));
        assert_eq!(j.0.lock().unwrap().0.len(), RECORD, "only the admitted one");
        // What a crash leaves (the journal) is enough to refuse the replay.
        let after_crash = NonceCache::new();
        assert_eq!(after_crash.import_bytes(&j.0.lock().unwrap().0), 1);
        assert_eq!(after_crash.admit("ak", "n1", 1100, true), Err(Refused::Used));
        // A nonce that cannot be recorded is not admitted (nor remembered).
        j.0.lock().unwrap().1 = true;
        assert_eq!(c.admit("ak", "n2", 1002, true), Err(Refused::Unrecorded));
        // A read is admitted from memory alone, and still only once.
        assert_eq!(c.admit("ak", "read", 1002, false), Ok(()));
        assert_eq!(c.admit("ak", "read", 1002, false), Err(Refused::Used));
        j.0.lock().unwrap().1 = false;
        assert_eq!(c.admit("ak", "n2", 1003, true), Ok(()));
        // A checkpoint saves the live ones and empties the journal.
        let saved = Mutex::new(Vec::new());
        let n = c.checkpoint(1003, &|b| {
            saved.lock().unwrap().extend_from_slice(b);
            Ok(())
        });
        assert_eq!(n.unwrap(), 3, "n1, n2 and the read (durable from here on)");
        assert!(j.0.lock().unwrap().0.is_empty());
        let restarted = NonceCache::new();
        restarted.import_bytes(&saved.lock().unwrap());
        assert!(!restarted.check_and_insert("ak", "n2", 1100));
        // Expired entries are not saved.
        assert_eq!(c.checkpoint(1003 + WINDOW_SECS + 1, &|_| Ok(())).unwrap(), 0);
    }

    #[test]
    fn a_nonce_reused_after_its_window_is_carried_by_its_latest_use() {
        let c = NonceCache::new();
        assert!(c.check_and_insert("ak", "n", 1000));
        let reuse = 1000 + WINDOW_SECS + 10;
        assert!(c.check_and_insert("ak", "n", reuse));
        // Both uses in one saved file (a journal holds them in arrival order).
        let mut raw = record(digest("ak", "n"), 1000).to_vec();
        raw.extend_from_slice(&record(digest("ak", "n"), reuse));
        let restarted = NonceCache::new();
        restarted.import_bytes(&raw);
        assert!(!restarted.check_and_insert("ak", "n", reuse + 60), "the second use still counts");
    }

    #[test]
    fn the_saved_file_is_sorted_by_digest() {
        let c = NonceCache::new();
        for i in 0..100 {
            assert!(c.check_and_insert("ak", &format!("n{i}"), 1000));
        }
        let raw = c.export_bytes();
        let digests: Vec<&[u8]> = raw.chunks_exact(RECORD).map(|r| &r[..16]).collect();
        assert!(digests.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_full_cache_refuses_until_the_oldest_expire_and_forgets_nothing() {
        let mut c = NonceCache::new();
        c.set_capacity(3);
        for (i, t) in [(0, 1000), (1, 1010), (2, 1020)] {
            assert_eq!(c.admit("ak", &format!("n{i}"), t, true), Ok(()));
        }
        // Full: a new nonce is refused with the time until the oldest leaves the window.
        assert_eq!(c.admit("ak", "n3", 1030, true), Err(Refused::Full { retry_after_secs: WINDOW_SECS + 1 - 30 }));
        assert_eq!(c.admit("ak", "n0", 1030, false), Err(Refused::Used), "a replay is still a replay");
        // Once the oldest has expired there is room again, and the others are still known.
        let later = 1000 + WINDOW_SECS + 1;
        assert_eq!(c.admit("ak", "n3", later, true), Ok(()));
        assert_eq!(c.admit("ak", "n1", later, true), Err(Refused::Used));
        assert!(matches!(c.admit("ak", "n4", later, true), Err(Refused::Full { .. })));
    }
}
