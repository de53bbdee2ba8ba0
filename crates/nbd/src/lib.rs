//! An NBD server for Snapdisk: fixed newstyle negotiation, structured replies, the
//! `base:allocation` metadata context, several requests in flight per connection answered
//! out of order, and revocation (close every connection to an export, after draining and
//! flushing) for the control plane.
//!
//! Security (see docs/nbd.md, "NBD security"): a listener is either trusted (a unix socket
//! only the server's user can open, or TCP the operator explicitly left open) or TLS-only
//! (NBD_OPT_STARTTLS with rustls; a client certificate names the account whose exports the
//! connection may see and open).

mod handler;
pub mod proto;
mod registry;
mod server;
mod stream;
mod transmit;
mod turns;

pub use registry::Registry;
pub use server::{Identify, Identity, Options, Server, Tls, serve, serve_unix};

/// Who is on the other end of a connection, as far as the exports it may see are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    /// A connection on a trusted channel (the server's unix socket, or a TCP listener the
    /// operator left open with `--nbd-insecure`): it may see and open every export.
    Trusted,
    /// A connection authenticated by TLS as one account: it may see and open only that
    /// account's exports.
    Account(String),
}

use std::sync::Arc;
use store::{BlockRead, BlockWrite};

/// What an export name opens.
#[derive(Clone)]
pub enum Device {
    ReadWrite(Arc<dyn BlockWrite>),
    ReadOnly(Arc<dyn BlockRead>),
}

impl Device {
    pub fn size(&self) -> u64 {
        match self {
            Device::ReadWrite(d) => d.size(),
            Device::ReadOnly(d) => d.size(),
        }
    }

    pub fn reader(&self) -> &dyn BlockRead {
        match self {
            Device::ReadWrite(d) => d.as_ref(),
            Device::ReadOnly(d) => d.as_ref(),
        }
    }
}

/// Why an export cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such export.
    Unknown,
    /// It exists but may not be opened now; the text says why.
    Policy(String),
}

/// Who may open what: implemented by the binary from the control plane and the engine.
/// Both methods may block (they ask the catalog); the server calls them off the async
/// workers.
pub trait Exports: Send + Sync + 'static {
    /// Names `client` may open right now (NBD_OPT_LIST).
    fn list(&self, client: &Client) -> Vec<String>;
    /// Open `name` for `client`. An export of another account must be refused as
    /// [`Refusal::Unknown`], so that its existence does not leak.
    fn open(&self, client: &Client, name: &str) -> Result<Device, Refusal>;
}
