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
const RECORD: usize = 24;

/// SignatureNonces seen inside the window, per AccessKey. Each is kept as a 128-bit digest of
/// (AccessKeyId, nonce), 40 bytes an entry whatever the nonce's length, with no allocation per
/// request; two different pairs share a digest with probability 2^-128. Entries expire in
/// arrival order, so eviction is a pop from the front of a queue. Nonces carried over a
/// restart stay in the sorted array they were saved as (looked up by binary search, dropped
/// whole once the newest has expired), so a restart after millions of requests loads in
/// the time it takes to read the file.
#[derive(Default)]
pub struct NonceCache {
    inner: Mutex<Inner>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Records the nonce; false when it was already used inside the window.
    pub fn check_and_insert(&self, access_key_id: &str, nonce: &str, now_secs: i64) -> bool {
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
            return false;
        }
        g.seen.insert(key, now_secs);
        g.order.push_back((now_secs, key));
        true
    }

    /// Every digest still remembered, with its time, sorted by digest.
    fn entries(&self) -> Vec<(u128, i64)> {
        let g = self.lock();
        let mut all: Vec<(u128, i64)> =
            g.carried.iter().copied().chain(g.order.iter().map(|(t, d)| (*d, *t))).collect();
        all.sort_unstable_by_key(|(d, _)| *d);
        all
    }

    /// The digests remembered (hex) with their times.
    pub fn export(&self) -> Vec<(String, i64)> {
        self.entries().into_iter().map(|(d, t)| (format!("{d:032x}"), t)).collect()
    }

    /// Load what [`NonceCache::export`] saved; entries that do not parse are skipped.
    pub fn import(&self, items: Vec<(String, i64)>) {
        self.carry(items.into_iter().filter_map(|(d, t)| u128::from_str_radix(&d, 16).ok().map(|d| (d, t))).collect());
    }

    /// Every digest remembered as 24-byte records (digest, then time in seconds, both
    /// big-endian), sorted by digest: what a restart loads with [`NonceCache::import_bytes`].
    pub fn export_bytes(&self) -> Vec<u8> {
        let all = self.entries();
        let mut out = Vec::with_capacity(all.len() * RECORD);
        for (d, t) in all {
            out.extend_from_slice(&d.to_be_bytes());
            out.extend_from_slice(&t.to_be_bytes());
        }
        out
    }

    /// Load what [`NonceCache::export_bytes`] wrote; a torn last record is ignored. Returns
    /// how many entries were loaded.
    pub fn import_bytes(&self, raw: &[u8]) -> usize {
        let mut items = Vec::with_capacity(raw.len() / RECORD);
        for rec in raw.chunks_exact(RECORD) {
            let (d, t) = rec.split_at(16);
            if let (Ok(d), Ok(t)) = (<[u8; 16]>::try_from(d), <[u8; 8]>::try_from(t)) {
                items.push((u128::from_be_bytes(d), i64::from_be_bytes(t)));
            }
        }
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
        all.sort_unstable_by_key(|(d, _)| *d);
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
        carried.import(c.export());
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
}
