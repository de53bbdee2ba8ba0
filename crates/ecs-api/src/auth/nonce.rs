use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

const WINDOW_SECS: i64 = super::MAX_SKEW_SECS;

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
        g.order
            .push_back((now_secs, access_key_id.to_string(), nonce.to_string()));
        true
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
        assert!(
            c.check_and_insert("ak", "n1", 1000 + WINDOW_SECS + 1),
            "expired"
        );
    }
}
