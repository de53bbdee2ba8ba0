//! A volume's writable head and the read path shared with snapshot views.
//!
//! Every layer that can be read (a head, a snapshot) carries its complete block map: a
//! persistent ordered map whose clones share structure. A read is one lookup per block no
//! matter how many snapshots lie beneath, and freezing or swapping a map is O(1).

use crate::BLOCK_SIZE;
use crate::device::{BlockRead, BlockWrite, Extent};
use crate::error::{ErrorKind, Result, StoreError};
use crate::format::{LayerId, Phys, Record};
use crate::io::{Io, runs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Block index → data block, for every block that is not a hole.
pub(crate) type BlockMap = imbl::OrdMap<u64, Phys>;
/// A layer's own changes: `Some` written, `None` trimmed over whatever lies beneath.
pub(crate) type OwnMap = imbl::OrdMap<u64, Option<Phys>>;

/// Writes are cut into pieces of this size so that one request never pins huge buffers,
/// and so that a snapshot, GC pass or copied write waits on an in-place overwrite (which
/// holds the volume's lock shared) for at most one piece.
const MAX_PIECE: u64 = 1 << 20;

#[derive(Clone)]
pub(crate) struct Head {
    pub layer: LayerId,
    pub parent: Option<LayerId>,
    pub own: OwnMap,
    pub map: BlockMap,
}

impl Head {
    /// Point blocks at freshly written data; returns data blocks only this head referenced.
    pub fn apply_write(&mut self, block: u64, count: u64, phys: Phys) -> Vec<Phys> {
        let mut freed = Vec::new();
        for i in 0..count {
            if let Some(Some(old)) = self.own.insert(block + i, Some(phys + i)) {
                freed.push(old);
            }
            self.map.insert(block + i, phys + i);
        }
        freed
    }

    /// Make blocks holes. Only blocks that hold data need a record of it: a tombstone when
    /// an older layer may still have them, nothing at the root of a chain.
    pub fn apply_trim(&mut self, block: u64, count: u64) -> Vec<Phys> {
        let mut freed = Vec::new();
        let keys: Vec<u64> = self.map.range(block..block + count).map(|(k, _)| *k).collect();
        for b in keys {
            self.map.remove(&b);
            let old = if self.parent.is_some() { self.own.insert(b, None) } else { self.own.remove(&b) };
            if let Some(Some(p)) = old {
                freed.push(p);
            }
        }
        freed
    }
}

pub struct Volume {
    pub(crate) name: String,
    /// Size in bytes; it only grows (`Engine::resize`), so a range checked once stays valid.
    pub(crate) size: AtomicU64,
    pub(crate) io: Arc<Io>,
    pub(crate) head: RwLock<Head>,
    pub(crate) deleted: AtomicBool,
}

impl Volume {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn head_read(&self) -> Result<RwLockReadGuard<'_, Head>> {
        self.live()?;
        self.head.read().map_err(|_| StoreError::new(ErrorKind::Io, "volume lock poisoned"))
    }

    pub(crate) fn head_write(&self) -> Result<RwLockWriteGuard<'_, Head>> {
        self.head.write().map_err(|_| StoreError::new(ErrorKind::Io, "volume lock poisoned"))
    }

    fn live(&self) -> Result<()> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(StoreError::not_found("volume", &self.name));
        }
        Ok(())
    }

    fn write_aligned(&self, data: &[u8], offset: u64) -> Result<()> {
        let (block, count) = (offset / BLOCK_SIZE, data.len() as u64 / BLOCK_SIZE);
        {
            let head = self.head_read()?;
            if let Some(phys) = owned_run(&head.own, block, count) {
                // Blocks written since the last snapshot or reset belong to the head alone (a
                // snapshot freezes the head's own map and starts an empty one), so they are
                // overwritten where they are: no allocation, no record, nothing to free. The
                // read lock keeps a snapshot, reset or GC from taking them mid-write.
                return self.io.write_blocks(data, phys);
            }
        }
        let phys = self.io.alloc(count)?;
        self.io.write_blocks(data, phys)?;
        let mut head = self.head_write()?;
        self.live()?;
        let freed = head.apply_write(block, count, phys);
        self.io.append(&[Record::Write { layer: head.layer, block, count: count as u32, phys }], runs(freed))
    }

    /// A write that starts or ends inside a block: merge it with the blocks' current
    /// contents under the lock, so a concurrent writer cannot interleave.
    fn write_unaligned(&self, data: &[u8], offset: u64) -> Result<()> {
        let first = offset / BLOCK_SIZE;
        let last = (offset + data.len() as u64 - 1) / BLOCK_SIZE;
        let count = last - first + 1;
        let mut buf = vec![0u8; (count * BLOCK_SIZE) as usize];
        let mut head = self.head_write()?;
        self.live()?;
        read_map(&self.io, &head.map, first, &mut buf[..BLOCK_SIZE as usize])?;
        if count > 1 {
            read_map(&self.io, &head.map, last, &mut buf[((count - 1) * BLOCK_SIZE) as usize..])?;
        }
        let at = (offset - first * BLOCK_SIZE) as usize;
        buf[at..at + data.len()].copy_from_slice(data);
        let phys = self.io.alloc(count)?;
        self.io.write_blocks(&buf, phys)?;
        let freed = head.apply_write(first, count, phys);
        self.io.append(&[Record::Write { layer: head.layer, block: first, count: count as u32, phys }], runs(freed))
    }
}

/// The data blocks of `block..block + count` if the head owns them all, contiguously.
fn owned_run(own: &OwnMap, block: u64, count: u64) -> Option<Phys> {
    let mut blocks = own.range(block..block + count);
    let first = match blocks.next()? {
        (b, Some(p)) if *b == block => *p,
        _ => return None,
    };
    let mut n = 1;
    for (b, p) in blocks {
        if *b != block + n || *p != Some(first + n) {
            return None;
        }
        n += 1;
    }
    (n == count).then_some(first)
}

impl Volume {
    /// Zero part of a block (or of two neighbours); a block left all zeros becomes a hole,
    /// so clients that discard at 512-byte granularity still leave the disk thin.
    fn zero_partial(&self, offset: u64, len: u64) -> Result<()> {
        let mut at = offset;
        while at < offset + len {
            let block = at / BLOCK_SIZE;
            let end = ((block + 1) * BLOCK_SIZE).min(offset + len);
            let mut buf = vec![0u8; BLOCK_SIZE as usize];
            let mut head = self.head_write()?;
            self.live()?;
            read_map(&self.io, &head.map, block, &mut buf)?;
            buf[(at - block * BLOCK_SIZE) as usize..(end - block * BLOCK_SIZE) as usize].fill(0);
            if buf.iter().all(|b| *b == 0) {
                let freed = head.apply_trim(block, 1);
                self.io.append(&[Record::Trim { layer: head.layer, block, count: 1 }], runs(freed))?;
            } else {
                let phys = self.io.alloc(1)?;
                self.io.write_blocks(&buf, phys)?;
                let freed = head.apply_write(block, 1, phys);
                self.io.append(&[Record::Write { layer: head.layer, block, count: 1, phys }], runs(freed))?;
            }
            at = end;
        }
        Ok(())
    }
}

fn check_range(size: u64, offset: u64, len: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => {
            Err(StoreError::new(ErrorKind::OutOfBounds, format!("{len} bytes at {offset} lie beyond the end ({size})")))
        }
    }
}

/// Read whole blocks starting at `block` from `map` into `out` (a multiple of the block size),
/// coalescing runs of consecutive data blocks into one read. The map is walked once, in
/// order, rather than looked up block by block.
pub(crate) fn read_map(io: &Io, map: &BlockMap, block: u64, out: &mut [u8]) -> Result<()> {
    let count = out.len() as u64 / BLOCK_SIZE;
    let bs = BLOCK_SIZE as usize;
    let mut next = 0u64; // first block (relative) not yet filled
    let mut run: Option<(u64, Phys, u64)> = None; // (relative start, phys, length)
    let flush = |run: Option<(u64, Phys, u64)>, out: &mut [u8]| -> Result<()> {
        if let Some((s, p, n)) = run {
            io.read_blocks(&mut out[s as usize * bs..(s + n) as usize * bs], p)?;
        }
        Ok(())
    };
    for (&b, &p) in map.range(block..block + count) {
        let rel = b - block;
        match run {
            Some((s, rp, n)) if s + n == rel && rp + n == p => run = Some((s, rp, n + 1)),
            _ => {
                flush(run.take(), out)?;
                out[next as usize * bs..rel as usize * bs].fill(0);
                run = Some((rel, p, 1));
            }
        }
        next = rel + 1;
    }
    flush(run, out)?;
    out[next as usize * bs..].fill(0);
    Ok(())
}

/// Plan whole-block reads of `out` from `block` through `map`, for [`read_many`]: holes are
/// zeroed at once, and each run of consecutive data blocks becomes one `(slice, phys)` in
/// `runs`, with `tag` (the read it belongs to) in `tags`.
fn plan_map<'a>(
    map: &BlockMap,
    block: u64,
    out: &'a mut [u8],
    tag: usize,
    runs: &mut Vec<(&'a mut [u8], Phys)>,
    tags: &mut Vec<usize>,
) {
    let count = out.len() as u64 / BLOCK_SIZE;
    let bs = BLOCK_SIZE as usize;
    let mut found: Vec<(u64, Phys, u64)> = Vec::new(); // (relative start, phys, length)
    for (&b, &p) in map.range(block..block + count) {
        let rel = b - block;
        match found.last_mut() {
            Some((s, rp, n)) if *s + *n == rel && *rp + *n == p => *n += 1,
            _ => found.push((rel, p, 1)),
        }
    }
    let mut rest = out;
    let mut pos = 0u64;
    for (rel, p, n) in found {
        let (gap, after) = std::mem::take(&mut rest).split_at_mut((rel - pos) as usize * bs);
        gap.fill(0);
        let (run, after) = after.split_at_mut(n as usize * bs);
        runs.push((run, p));
        tags.push(tag);
        rest = after;
        pos = rel + n;
    }
    rest.fill(0);
}

/// Serve many reads through one block map, their data-block runs all read together
/// ([`Io::read_runs`]); one result per read, in order. Reads not on block boundaries are read
/// on their own, as [`read_range`] does.
fn read_many(io: &Io, map: &BlockMap, size: u64, reads: &mut [(u64, &mut [u8])]) -> Vec<Result<()>> {
    let mut results: Vec<Option<Result<()>>> = Vec::with_capacity(reads.len());
    let mut runs = Vec::new();
    let mut tags = Vec::new();
    for (i, (offset, buf)) in reads.iter_mut().enumerate() {
        if let Err(e) = check_range(size, *offset, buf.len() as u64) {
            results.push(Some(Err(e)));
        } else if offset.is_multiple_of(BLOCK_SIZE) && (buf.len() as u64).is_multiple_of(BLOCK_SIZE) {
            plan_map(map, *offset / BLOCK_SIZE, buf, i, &mut runs, &mut tags);
            results.push(None);
        } else {
            results.push(Some(read_range(io, map, buf, *offset)));
        }
    }
    for (tag, r) in tags.into_iter().zip(io.read_runs(&mut runs)) {
        if let Err(e) = r {
            results[tag].get_or_insert(Err(e));
        }
    }
    results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect()
}

/// Read any byte range through a block map.
fn read_range(io: &Io, map: &BlockMap, buf: &mut [u8], offset: u64) -> Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    if offset.is_multiple_of(BLOCK_SIZE) && (buf.len() as u64).is_multiple_of(BLOCK_SIZE) {
        return read_map(io, map, offset / BLOCK_SIZE, buf);
    }
    let first = offset / BLOCK_SIZE;
    let last = (offset + buf.len() as u64 - 1) / BLOCK_SIZE;
    let mut tmp = vec![0u8; ((last - first + 1) * BLOCK_SIZE) as usize];
    read_map(io, map, first, &mut tmp)?;
    let at = (offset - first * BLOCK_SIZE) as usize;
    buf.copy_from_slice(&tmp[at..at + buf.len()]);
    Ok(())
}

fn status(map: &BlockMap, offset: u64, len: u64) -> Vec<Extent> {
    let mut out: Vec<Extent> = Vec::new();
    let mut push = |len: u64, allocated: bool| match out.last_mut() {
        Some(e) if e.allocated == allocated => e.len += len,
        _ if len > 0 => out.push(Extent { len, allocated }),
        _ => {}
    };
    let end = offset + len;
    let mut pos = offset;
    for (b, _) in map.range(offset / BLOCK_SIZE..end.div_ceil(BLOCK_SIZE)) {
        let start = (b * BLOCK_SIZE).max(offset);
        let stop = ((b + 1) * BLOCK_SIZE).min(end);
        push(start - pos, false);
        push(stop - start, true);
        pos = stop;
    }
    push(end - pos, false);
    out
}

impl BlockRead for Volume {
    fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(BlockRead::size(self), offset, buf.len() as u64)?;
        // The lock is held across the read so that GC cannot free a block being read.
        let head = self.head_read()?;
        read_range(&self.io, &head.map, buf, offset)
    }

    fn read_many(&self, reads: &mut [(u64, &mut [u8])]) -> Vec<Result<()>> {
        // One lock for the whole batch, held until every read is done (as in `read_at`).
        match self.head_read() {
            Ok(head) => read_many(&self.io, &head.map, BlockRead::size(self), reads),
            // A deleted volume (or a poisoned lock) fails every read alike.
            Err(e) => reads.iter().map(|_| Err(StoreError::new(e.kind, e.context.clone()))).collect(),
        }
    }

    fn reads_together(&self) -> bool {
        self.io.is_direct()
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        check_range(BlockRead::size(self), offset, len)?;
        Ok(status(&self.head_read()?.map, offset, len))
    }
}

impl BlockWrite for Volume {
    fn write_at(&self, data: &[u8], offset: u64, fua: bool) -> Result<()> {
        check_range(BlockRead::size(self), offset, data.len() as u64)?;
        self.live()?;
        let mut done = 0u64;
        while done < data.len() as u64 {
            let at = offset + done;
            // Pieces end on block boundaries so that only the first and last can be partial.
            let piece = (MAX_PIECE - at % BLOCK_SIZE).min(data.len() as u64 - done);
            let chunk = &data[done as usize..(done + piece) as usize];
            if at.is_multiple_of(BLOCK_SIZE) && piece.is_multiple_of(BLOCK_SIZE) {
                self.write_aligned(chunk, at)?;
            } else {
                self.write_unaligned(chunk, at)?;
            }
            done += piece;
        }
        if fua {
            self.io.sync()?;
        }
        Ok(())
    }

    fn write_many(&self, writes: &[(u64, &[u8], bool)]) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = writes.iter().map(|_| None).collect();
        {
            let head = match self.head_read() {
                Ok(h) => h,
                Err(e) => return writes.iter().map(|_| Err(StoreError::new(e.kind, e.context.clone()))).collect(),
            };
            // Whole-block writes over blocks the head owns are overwrites in place (as in
            // `write_aligned`): no allocation, no record. They go to the disk together under
            // the read lock; a write that overlaps an earlier one of the batch, asks for FUA,
            // or needs new blocks is left for `write_at`, after them and in order.
            let mut seen: Vec<(u64, u64)> = Vec::new();
            let mut fast: Vec<(&[u8], Phys)> = Vec::new();
            let mut which: Vec<usize> = Vec::new();
            for (i, (offset, data, fua)) in writes.iter().enumerate() {
                let (block, end) = (offset / BLOCK_SIZE, offset.saturating_add(data.len() as u64).div_ceil(BLOCK_SIZE));
                let overlaps = seen.iter().any(|(b, e)| block < *e && *b < end);
                seen.push((block, end));
                let whole = offset.is_multiple_of(BLOCK_SIZE)
                    && (data.len() as u64).is_multiple_of(BLOCK_SIZE)
                    && !data.is_empty()
                    && data.len() as u64 <= MAX_PIECE
                    && check_range(BlockRead::size(self), *offset, data.len() as u64).is_ok();
                if overlaps || *fua || !whole {
                    continue;
                }
                if let Some(phys) = owned_run(&head.own, block, end - block) {
                    fast.push((data, phys));
                    which.push(i);
                }
            }
            for (i, r) in which.into_iter().zip(self.io.write_runs(&fast)) {
                results[i] = Some(r);
            }
        }
        writes
            .iter()
            .zip(results)
            .map(|((offset, data, fua), r)| r.unwrap_or_else(|| self.write_at(data, *offset, *fua)))
            .collect()
    }

    fn flush(&self) -> Result<()> {
        self.live()?;
        self.io.sync()
    }

    fn trim(&self, offset: u64, len: u64) -> Result<()> {
        check_range(BlockRead::size(self), offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let first_full = offset.div_ceil(BLOCK_SIZE);
        let end_full = (offset + len) / BLOCK_SIZE;
        if first_full >= end_full {
            // No whole block inside: the bytes still have to read as zeros.
            return self.zero_partial(offset, len);
        }
        if !offset.is_multiple_of(BLOCK_SIZE) {
            self.zero_partial(offset, first_full * BLOCK_SIZE - offset)?;
        }
        if !(offset + len).is_multiple_of(BLOCK_SIZE) {
            let s = end_full * BLOCK_SIZE;
            self.zero_partial(s, offset + len - s)?;
        }
        let mut head = self.head_write()?;
        self.live()?;
        let count = end_full - first_full;
        let freed = head.apply_trim(first_full, count);
        // The record is needed only if something changed; large trims of empty space are free.
        if freed.is_empty() && !head.own.range(first_full..end_full).any(|(_, v)| v.is_none()) {
            return Ok(());
        }
        let mut records = Vec::new();
        let mut b = first_full;
        while b < end_full {
            let n = (end_full - b).min(u32::MAX as u64);
            records.push(Record::Trim { layer: head.layer, block: b, count: n as u32 });
            b += n;
        }
        self.io.append(&records, runs(freed))
    }

    fn write_zeroes(&self, offset: u64, len: u64, may_trim: bool) -> Result<()> {
        if may_trim {
            return self.trim(offset, len);
        }
        check_range(BlockRead::size(self), offset, len)?;
        let zeros = vec![0u8; MAX_PIECE.min(len) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(MAX_PIECE);
            self.write_at(&zeros[..n as usize], offset + done, false)?;
            done += n;
        }
        Ok(())
    }
}

/// A read-only view of a snapshot, frozen at the moment it was taken.
pub struct SnapshotView {
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) io: Arc<Io>,
    pub(crate) map: BlockMap,
}

impl SnapshotView {
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl BlockRead for SnapshotView {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(BlockRead::size(self), offset, buf.len() as u64)?;
        read_range(&self.io, &self.map, buf, offset)
    }

    fn read_many(&self, reads: &mut [(u64, &mut [u8])]) -> Vec<Result<()>> {
        read_many(&self.io, &self.map, self.size, reads)
    }

    fn reads_together(&self) -> bool {
        self.io.is_direct()
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        check_range(BlockRead::size(self), offset, len)?;
        Ok(status(&self.map, offset, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_covers_the_range_exactly() {
        let mut m = BlockMap::new();
        m.insert(1, 10);
        m.insert(2, 11);
        m.insert(5, 12);
        let s = status(&m, 100, 6 * BLOCK_SIZE);
        assert_eq!(s.iter().map(|e| e.len).sum::<u64>(), 6 * BLOCK_SIZE);
        assert_eq!(s[0], Extent { len: BLOCK_SIZE - 100, allocated: false });
        assert_eq!(s[1], Extent { len: 2 * BLOCK_SIZE, allocated: true });
        assert_eq!(status(&BlockMap::new(), 0, 7), vec![Extent { len: 7, allocated: false }]);
    }

    #[test]
    fn owned_runs_are_whole_and_contiguous() {
        let mut own = OwnMap::new();
        for (b, p) in [(0, 10), (1, 11), (2, 12), (4, 13), (5, 20)] {
            own.insert(b, Some(p));
        }
        own.insert(6, None);
        assert_eq!(owned_run(&own, 0, 3), Some(10));
        assert_eq!(owned_run(&own, 1, 2), Some(11));
        assert_eq!(owned_run(&own, 2, 2), None, "block 3 is not the head's");
        assert_eq!(owned_run(&own, 4, 2), None, "not contiguous on disk");
        assert_eq!(owned_run(&own, 6, 1), None, "a trimmed block has no data block");
        assert_eq!(owned_run(&own, 7, 1), None);
    }

    #[test]
    fn trim_leaves_tombstones_only_over_a_parent() {
        let mut h = Head { layer: 1, parent: None, own: OwnMap::new(), map: BlockMap::new() };
        h.apply_write(0, 4, 100);
        assert_eq!(h.apply_trim(1, 2), vec![101, 102]);
        assert_eq!(h.own.len(), 2);
        let mut child = Head { layer: 2, parent: Some(1), own: OwnMap::new(), map: h.map.clone() };
        assert!(child.apply_trim(0, 1).is_empty(), "the parent's block is not the child's to free");
        assert_eq!(child.own.get(&0), Some(&None));
        assert_eq!(child.apply_write(3, 1, 200), Vec::<Phys>::new());
        assert_eq!(child.apply_write(3, 1, 201), vec![200]);
    }
}
