//! Page-aligned byte buffers, so data can go to and from the disk with `O_DIRECT` without a
//! bounce copy (the NBD server reads write payloads straight into one).

use bytemuck::{Pod, Zeroable};

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// A zeroed, 4096-byte-aligned buffer of `len` bytes.
pub struct AlignedBuf {
    pages: Vec<Page>,
    len: usize,
}

impl AlignedBuf {
    pub fn zeroed(len: usize) -> AlignedBuf {
        AlignedBuf { pages: vec![Page([0; 4096]); len.div_ceil(4096)], len }
    }

    /// Make it `len` bytes long, growing its pages if needed. Bytes up to the old length
    /// keep their contents; a buffer kept for reuse is overwritten before it is read.
    pub fn resize(&mut self, len: usize) {
        let pages = len.div_ceil(4096);
        if pages > self.pages.len() {
            self.pages.resize(pages, Page([0; 4096]));
        }
        self.len = len;
    }

    /// Give back memory above `max` bytes, so a one-off large request does not pin it.
    pub fn shrink(&mut self, max: usize) {
        let pages = max.div_ceil(4096);
        if self.pages.len() > pages {
            self.pages.truncate(pages);
            self.pages.shrink_to_fit();
            self.len = self.len.min(pages * 4096);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        &bytemuck::cast_slice::<Page, u8>(&self.pages)[..self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<Page, u8>(&mut self.pages)[..self.len]
    }
}

/// Whether `buf` can be handed to an `O_DIRECT` read or write as it is.
pub(crate) fn is_aligned(buf: &[u8]) -> bool {
    (buf.as_ptr() as usize).is_multiple_of(4096) && buf.len().is_multiple_of(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_sized() {
        let mut b = AlignedBuf::zeroed(10_000);
        assert_eq!(b.len(), 10_000);
        assert!(b.as_slice().iter().all(|x| *x == 0));
        b.as_mut_slice()[9_999] = 7;
        assert_eq!(b.as_slice()[9_999], 7);
        assert!((b.as_slice().as_ptr() as usize).is_multiple_of(4096));
        assert!(is_aligned(AlignedBuf::zeroed(8192).as_slice()));
        assert!(!is_aligned(&AlignedBuf::zeroed(8192).as_slice()[1..]));
    }

    #[test]
    fn resize_and_shrink_keep_alignment() {
        let mut b = AlignedBuf::zeroed(0);
        b.resize(5000);
        assert_eq!(b.len(), 5000);
        b.as_mut_slice()[4999] = 1;
        b.resize(100);
        assert_eq!(b.len(), 100);
        b.resize(1 << 20);
        assert_eq!(b.as_slice()[4999], 1, "contents below the old length are kept");
        b.shrink(8192);
        assert_eq!(b.len(), 8192);
        assert!(is_aligned(b.as_slice()));
    }
}
