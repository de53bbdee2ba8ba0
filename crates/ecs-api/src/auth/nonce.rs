use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// A request is valid for 15 minutes either side of its timestamp, so a nonce must be
/// remembered for the whole 30 minutes in which its request could still be accepted.
const WINDOW_SECS: i64 = 2 * super::MAX_SKEW_SECS;

/// Bytes of one entry in [`NonceCache::export_bytes`]: a 16-byte digest and an 8-byte time.
const RECORD: usize = 24;

/// SignatureNonces seen inside the window, per AccessKey. Each is kept as a 128-bit digest of
/// (AccessKeyId, nonce), 40 bytes an entry whatever the nonce's length, with no allocation per
/// request; two different pairs share a digest with probability 2^-128. Entries expire in
/// arrival order, so eviction is a pop from the front of a queue.
#[derive(Default)]
pub struct NonceCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    seen: HashMap<u128, i64>,
    order: VecDeque<(i64, u128)>,
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
        if g.seen.contains_key(&key) {
            return false;
        }
        g.seen.insert(key, now_secs);
        g.order.push_back((now_secs, key));
        true
    }

    /// The digests still inside the window (hex) with their times, oldest first, to carry
    /// across a restart.
    pub fn export(&self) -> Vec<(String, i64)> {
        self.lock().order.iter().map(|(t, d)| (format!("{d:032x}"), *t)).collect()
    }

    /// Load what [`NonceCache::export`] saved; entries that do not parse are skipped, expired
    /// ones age out as usual.
    pub fn import(&self, items: Vec<(String, i64)>) {
        let mut items: Vec<(u128, i64)> =
            items.into_iter().filter_map(|(d, t)| u128::from_str_radix(&d, 16).ok().map(|d| (d, t))).collect();
        items.sort_by_key(|(_, t)| *t);
        let mut g = self.lock();
        for (d, t) in items {
            g.seen.insert(d, t);
            g.order.push_back((t, d));
        }
    }

    /// The digests still inside the window as 24-byte records (digest, then time in seconds,
    /// both big-endian), oldest first: what a restart loads with [`NonceCache::import_bytes`].
    pub fn export_bytes(&self) -> Vec<u8> {
        let g = self.lock();
        let mut out = Vec::with_capacity(g.order.len() * RECORD);
        for (t, d) in &g.order {
            out.extend_from_slice(&d.to_be_bytes());
            out.extend_from_slice(&t.to_be_bytes());
        }
        out
    }

    /// Load what [`NonceCache::export_bytes`] wrote; a torn last record is ignored. Returns
    /// how many entries were loaded.
    pub fn import_bytes(&self, raw: &[u8]) -> usize {
        let mut g = self.lock();
        let n = raw.len() / RECORD;
        g.seen.reserve(n);
        g.order.reserve(n);
        for rec in raw.chunks_exact(RECORD) {
            let (d, t) = rec.split_at(16);
            let (Ok(d), Ok(t)) = (<[u8; 16]>::try_from(d), <[u8; 8]>::try_from(t)) else {
                continue;
            };
            let (d, t) = (u128::from_be_bytes(d), i64::from_be_bytes(t));
            g.seen.insert(d, t);
            g.order.push_back((t, d));
        }
        n
    }

    /// Load nonces saved by earlier versions, as (AccessKeyId, nonce, time).
    pub fn import_pairs(&self, items: Vec<(String, String, i64)>) {
        self.import(items.into_iter().map(|(ak, n, t)| (format!("{:032x}", digest(&ak, &n)), t)).collect());
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
    }
}
