//! Snapdisk's storage engine. Thin volumes of 4 KiB blocks; a volume is a writable head on a
//! chain of frozen layers. Snapshot, reset to any snapshot (keeping the newer ones) and clone
//! are O(1) in disk size and in data written. See docs/storage.md for the format and the
//! crash-safety argument.

mod buf;
pub mod device;
mod engine;
mod error;
mod format;
mod gc;
mod io;
mod uring;
mod volume;

pub use buf::AlignedBuf;
pub use device::{BlockRead, BlockWrite, Extent};
pub use engine::{Engine, Options};
pub use error::{ErrorKind, Result, StoreError};
pub use format::FORMAT_VERSION;
pub use volume::{SnapshotView, Volume};

/// The unit of allocation and copy-on-write.
pub const BLOCK_SIZE: u64 = 4096;
