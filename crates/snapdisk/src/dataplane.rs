//! Glue between the control plane, the storage engine and the NBD server: which export names
//! open which device, and how the control plane closes connections it takes away.

use control::Control;
use control::exports::{Denied, Events, Grant};
use std::sync::Arc;
use std::time::Duration;
use store::Engine;

pub struct Exports {
    pub control: Arc<Control>,
    /// None when the store could not be opened: every export is refused.
    pub engine: Option<Arc<Engine>>,
}

impl nbd::Exports for Exports {
    fn list(&self, client: &nbd::Client) -> Vec<String> {
        match client {
            nbd::Client::Trusted => self.control.export_names(None),
            nbd::Client::Account(a) => self.control.export_names(Some(a)),
        }
    }

    fn open(&self, client: &nbd::Client, name: &str) -> Result<nbd::Device, nbd::Refusal> {
        // Another account's export is answered as if it did not exist.
        if let nbd::Client::Account(a) = client
            && self.control.export_account(name).as_deref() != Some(a.as_str())
        {
            return Err(nbd::Refusal::Unknown);
        }
        let unavailable = |e: store::StoreError| nbd::Refusal::Policy(e.to_string());
        let Some(engine) = &self.engine else {
            return Err(nbd::Refusal::Policy("storage metadata is corrupt; see the server log".into()));
        };
        match self.control.export_grant(name) {
            Ok(Grant::ReadWrite) => Ok(nbd::Device::ReadWrite(engine.volume(name).map_err(unavailable)?)),
            Ok(Grant::ReadOnly) => {
                Ok(nbd::Device::ReadOnly(Arc::new(engine.snapshot_view(name).map_err(unavailable)?)))
            }
            Err(Denied::Unknown) => Err(nbd::Refusal::Unknown),
            Err(Denied::Policy(why)) => Err(nbd::Refusal::Policy(why)),
        }
    }
}

pub struct Revoker(pub Arc<nbd::Registry>);

impl Events for Revoker {
    fn revoke(&self, exports: &[String]) {
        for e in exports {
            let n = self.0.revoke(e, Duration::from_secs(10));
            if n > 0 {
                tracing::info!(export = %e, connections = n, "closed NBD connections");
            }
        }
    }
}
