//! Live connections per export, so the control plane can close them (StopInstance, detach,
//! delete) and know they are gone, drained and flushed, before it moves on.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub(crate) struct Done {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Done {
    pub fn set(&self) {
        if let Ok(mut f) = self.flag.lock() {
            *f = true;
        }
        self.cv.notify_all();
    }

    fn wait(&self, timeout: Duration) -> bool {
        let Ok(guard) = self.flag.lock() else {
            return false;
        };
        match self.cv.wait_timeout_while(guard, timeout, |done| !*done) {
            Ok((g, _)) => *g,
            Err(_) => false,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Handle {
    pub id: u64,
    pub cancel: CancellationToken,
    pub done: Arc<Done>,
    /// Set once the connection is serving requests; only those need waiting for.
    pub active: Arc<std::sync::atomic::AtomicBool>,
    /// The TLS credential the connection authenticated with, if any.
    pub credential: Option<Arc<str>>,
}

#[derive(Default)]
pub struct Registry {
    inner: Mutex<(u64, HashMap<String, Vec<Handle>>)>,
    /// Credentials revoked so far: a connection that finished its TLS handshake before the
    /// revocation but registers after it is refused (see `server::open`).
    revoked: Mutex<std::collections::HashSet<String>>,
}

impl Registry {
    pub(crate) fn register(&self, export: &str, parent: &CancellationToken, credential: Option<Arc<str>>) -> Handle {
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.0 += 1;
        let h = Handle {
            id: g.0,
            cancel: parent.child_token(),
            done: Arc::new(Done::default()),
            active: Default::default(),
            credential,
        };
        g.1.entry(export.to_string()).or_default().push(h.clone());
        h
    }

    pub(crate) fn unregister(&self, export: &str, id: u64) {
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(v) = g.1.get_mut(export) {
            v.retain(|h| h.id != id);
            if v.is_empty() {
                g.1.remove(export);
            }
        }
    }

    /// Close every connection to `export` and wait (up to `timeout` each) until each has
    /// finished its in-flight requests, flushed, and closed. Returns how many were closed.
    pub fn revoke(&self, export: &str, timeout: Duration) -> usize {
        let handles = {
            let g = match self.inner.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            g.1.get(export).cloned().unwrap_or_default()
        };
        Self::close(export, handles, timeout)
    }

    /// Close every connection that authenticated with the TLS credential `credential` (as
    /// [`crate::Identity::credential`] named it), draining and flushing each as
    /// [`Registry::revoke`] does. Returns how many were closed.
    pub fn revoke_credential(&self, credential: &str, timeout: Duration) -> usize {
        // Marked first, then the registered ones collected: a connection registering
        // meanwhile is either collected here or sees the mark when it checks after registering.
        match self.revoked.lock() {
            Ok(mut r) => r.insert(credential.to_string()),
            Err(p) => p.into_inner().insert(credential.to_string()),
        };
        let handles: Vec<Handle> = {
            let g = match self.inner.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            g.1.values().flatten().filter(|h| h.credential.as_deref() == Some(credential)).cloned().collect()
        };
        Self::close(credential, handles, timeout)
    }

    /// Whether `credential` was revoked through [`Registry::revoke_credential`].
    pub(crate) fn is_revoked(&self, credential: &str) -> bool {
        match self.revoked.lock() {
            Ok(r) => r.contains(credential),
            Err(p) => p.into_inner().contains(credential),
        }
    }

    fn close(export: &str, handles: Vec<Handle>, timeout: Duration) -> usize {
        for h in &handles {
            h.cancel.cancel();
        }
        // A connection still negotiating is refused by the policy from now on, and one that
        // starts serving sees its cancellation before it reads a request.
        for h in handles.iter().filter(|h| h.active.load(std::sync::atomic::Ordering::Acquire)) {
            if !h.done.wait(timeout) {
                tracing::warn!(export, "an NBD connection did not close in time");
            }
        }
        handles.len()
    }

    /// Connections currently open to `export`.
    pub fn count(&self, export: &str) -> usize {
        match self.inner.lock() {
            Ok(g) => g.1.get(export).map_or(0, Vec::len),
            Err(_) => 0,
        }
    }
}
