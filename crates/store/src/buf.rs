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
}
