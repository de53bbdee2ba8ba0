//! Block-device capabilities, small and separate: a snapshot view only reads; a volume also
//! writes. The NBD server serves anything that implements them.

use crate::error::Result;

/// A run of bytes that is either backed by written data or a hole that reads as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub len: u64,
    pub allocated: bool,
}

pub trait BlockRead: Send + Sync {
    fn size(&self) -> u64;
    /// Fill `buf` from `offset`; holes read as zeros.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;
    /// Serve many reads, each `(offset, buf)` as [`BlockRead::read_at`] would; one result
    /// per read, in order (a failed read does not stop the others). Engines that can put the
    /// reads at the disk together override this (the store's volumes and snapshot views do,
    /// through io_uring, when they bypass the page cache); this default reads one by one.
    fn read_many(&self, reads: &mut [(u64, &mut [u8])]) -> Vec<Result<()>> {
        reads.iter_mut().map(|(offset, buf)| self.read_at(buf, *offset)).collect()
    }
    /// Whether [`BlockRead::read_many`] puts its reads at the disk together, so a server
    /// gains by gathering reads into one call rather than spreading them over threads.
    fn reads_together(&self) -> bool {
        false
    }
    /// Allocation of `offset..offset+len`, in order, covering the range exactly.
    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>>;
}

pub trait BlockWrite: BlockRead {
    /// Write `data` at `offset`; with `fua` it is durable before this returns.
    fn write_at(&self, data: &[u8], offset: u64, fua: bool) -> Result<()>;
    /// Serve many writes, each `(offset, data, fua)` as [`BlockWrite::write_at`] would; one
    /// result per write, in order (a failed write does not stop the others). Writes that
    /// overlap are applied in their order. Engines that can put the writes at the disk
    /// together override this (the store's volumes do, for blocks a volume overwrites in
    /// place, when it bypasses the page cache); this default writes one by one.
    fn write_many(&self, writes: &[(u64, &[u8], bool)]) -> Vec<Result<()>> {
        writes.iter().map(|(offset, data, fua)| self.write_at(data, *offset, *fua)).collect()
    }
    /// Make every completed write durable.
    fn flush(&self) -> Result<()>;
    /// Forget a range: it reads as zeros and frees its space.
    fn trim(&self, offset: u64, len: u64) -> Result<()>;
    /// Make a range read as zeros; `may_trim` lets it become a hole, else it stays allocated.
    fn write_zeroes(&self, offset: u64, len: u64, may_trim: bool) -> Result<()>;
}
