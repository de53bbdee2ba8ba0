use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// A request is valid for 15 minutes either side of its timestamp, so a nonce must be
/// remembered for the whole 30 minutes in which its request could still be accepted.
const WINDOW_SECS: i64 = 2 * super::MAX_SKEW_SECS;

/// SignatureNonces seen in the last 15 minutes, per AccessKey. Entries expire in arrival order,
/// so eviction is a pop from the front of a queue.
#[derive(Default)]
pub struct NonceCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    seen: HashMap<(String, String), i64>,
    order: VecDeque<(i64, String, String)>,
}

impl NonceCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the nonce; false when it was already used inside the window.
    pub fn check_and_insert(&self, access_key_id: &str, nonce: &str, now_secs: i64) -> bool {
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        while let Some((t, _, _)) = g.order.front() {
            if now_secs - *t <= WINDOW_SECS {
                break;
            }
            if let Some((t, ak, n)) = g.order.pop_front() {
                let key = (ak, n);
                if g.seen.get(&key) == Some(&t) {
                    g.seen.remove(&key);
                }
            }
        }
        let key = (access_key_id.to_string(), nonce.to_string());
        if g.seen.contains_key(&key) {
            return false;
        }
        g.seen.insert(key, now_secs);
        g.order.push_back((now_secs, access_key_id.to_string(), nonce.to_string()));
        true
    }
}

impl NonceCache {
    /// The nonces still inside the window, oldest first, to carry across a restart.
    pub fn export(&self) -> Vec<(String, String, i64)> {
        match self.inner.lock() {
            Ok(g) => g.order.iter().map(|(t, ak, n)| (ak.clone(), n.clone(), *t)).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Load nonces saved by [`NonceCache::export`]; expired ones are dropped as they age out.
    pub fn import(&self, items: Vec<(String, String, i64)>) {
        let mut items = items;
        items.sort_by_key(|(_, _, t)| *t);
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for (ak, n, t) in items {
            g.seen.insert((ak.clone(), n.clone()), t);
            g.order.push_back((t, ak, n));
        }
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
        assert!(c.check_and_insert("ak", "n1", 1000 + WINDOW_SECS + 1), "expired");
    }
}
