//! An NBD server for Snapdisk: fixed newstyle negotiation, structured replies, the
//! `base:allocation` metadata context, several requests in flight per connection answered
//! out of order, and revocation (close every connection to an export, after draining and
//! flushing) for the control plane.

mod handler;
pub mod proto;
mod registry;
mod server;
mod transmit;
mod turns;

pub use registry::Registry;
pub use server::{Server, serve};

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
pub trait Exports: Send + Sync + 'static {
    /// Names a client may open right now.
    fn list(&self) -> Vec<String>;
    fn open(&self, name: &str) -> Result<Device, Refusal>;
}
