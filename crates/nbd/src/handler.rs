//! One request in, one encoded reply out: the command semantics, free of sockets and
//! threads. Read data and write payloads live in the caller's page-aligned buffer, so the
//! store can use them with `O_DIRECT` as they are and a worker reuses one buffer throughout.

use crate::Device;
use crate::proto::*;
use crate::transmit::Session;
use store::{AlignedBuf, ErrorKind, Extent, StoreError};

/// Block-status answers carry at most this many extents.
const MAX_EXTENTS: usize = 1024;

/// An encoded reply: its header (or whole body), followed on the wire by the first
/// `data_len` bytes of the buffer the request was handled with.
pub(crate) struct Reply {
    pub head: Vec<u8>,
    pub data_len: usize,
}

impl Reply {
    pub fn head(head: Vec<u8>) -> Reply {
        Reply { head, data_len: 0 }
    }

    /// What a request gets when its handler panicked.
    pub fn internal_error(s: &Session, req: &Request) -> Reply {
        fail(s, req, EIO, "internal error")
    }
}

fn fail(s: &Session, req: &Request, err: u32, msg: &str) -> Reply {
    Reply::head(if s.structured && (req.kind == CMD_READ || req.kind == CMD_BLOCK_STATUS) {
        error_chunk(req.cookie, err, msg)
    } else {
        simple_reply(req.cookie, err, &[])
    })
}

/// The NBD error for a store error. A host file system out of space (or quota) is `ENOSPC`,
/// as the spec asks for writes that find no space: qemu then pauses the guest instead of
/// failing its I/O.
fn errno(e: &StoreError, write: bool) -> u32 {
    /// `ENOSPC` and `EDQUOT` as Linux numbers them.
    const NO_SPACE: [i32; 2] = [28, 122];
    match e.kind {
        ErrorKind::OutOfBounds if write => ENOSPC,
        ErrorKind::OutOfBounds | ErrorKind::Invalid => EINVAL,
        ErrorKind::NotFound => ESHUTDOWN,
        ErrorKind::Io if e.source.as_ref().and_then(|s| s.raw_os_error()).is_some_and(|c| NO_SPACE.contains(&c)) => {
            ENOSPC
        }
        _ => EIO,
    }
}

fn in_bounds(size: u64, offset: u64, len: u32) -> bool {
    offset.checked_add(len as u64).is_some_and(|end| end <= size)
}

/// Run one request. For a write, `buf` holds its payload; for a read, the data is left in it.
pub(crate) fn handle(s: &Session, req: &Request, buf: &mut AlignedBuf) -> Reply {
    let fail = |err: u32, msg: &str| fail(s, req, err, msg);
    let size = s.device.size();
    let writable = || match &s.device {
        Device::ReadWrite(d) => Some(d.clone()),
        Device::ReadOnly(_) => None,
    };
    match req.kind {
        CMD_READ => {
            let head = match read_head(s, req) {
                Ok(h) => h,
                Err(answer) => return answer,
            };
            buf.resize(req.length as usize);
            match s.device.reader().read_at(buf.as_mut_slice(), req.offset) {
                Ok(()) => Reply { head, data_len: req.length as usize },
                Err(e) => fail(errno(&e, false), &e.to_string()),
            }
        }
        CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES => {
            let Some(dev) = writable() else {
                return fail(EPERM, "read-only export");
            };
            // Queued before a revocation, run after it: the writer is gone, nothing may land.
            if s.handle.cancel.is_cancelled() {
                return fail(ESHUTDOWN, "the export was closed");
            }
            if !in_bounds(size, req.offset, req.length) {
                // The spec asks EINVAL for a trim beyond the end and ENOSPC for writes.
                let err = if req.kind == CMD_TRIM { EINVAL } else { ENOSPC };
                return fail(err, "beyond the end of the export");
            }
            let fua = req.flags & CMD_FLAG_FUA != 0;
            let r = match req.kind {
                CMD_WRITE => dev.write_at(&buf.as_slice()[..req.length as usize], req.offset, fua),
                CMD_TRIM => dev.trim(req.offset, req.length as u64),
                _ => dev.write_zeroes(req.offset, req.length as u64, req.flags & CMD_FLAG_NO_HOLE == 0),
            }
            .and_then(|_| if fua && req.kind != CMD_WRITE { dev.flush() } else { Ok(()) });
            match r {
                Ok(()) => Reply::head(simple_reply(req.cookie, 0, &[])),
                Err(e) => fail(errno(&e, true), &e.to_string()),
            }
        }
        CMD_FLUSH => match writable().map(|d| d.flush()).unwrap_or(Ok(())) {
            Ok(()) => Reply::head(simple_reply(req.cookie, 0, &[])),
            Err(e) => fail(errno(&e, true), &e.to_string()),
        },
        CMD_BLOCK_STATUS => {
            if !s.meta {
                return fail(EINVAL, "no metadata context negotiated");
            }
            if req.length == 0 || !in_bounds(size, req.offset, req.length) {
                return fail(EINVAL, "block status beyond the end of the export");
            }
            match s.device.reader().block_status(req.offset, req.length as u64) {
                Ok(extents) => Reply::head(block_status_reply(req, &extents)),
                Err(e) => fail(errno(&e, false), &e.to_string()),
            }
        }
        _ => fail(EINVAL, "unknown command"),
    }
}

/// The reply header for a valid read (its data follows it), or the whole answer to a read
/// that reads nothing: an error, or the NONE chunk for an empty structured read.
fn read_head(s: &Session, req: &Request) -> Result<Vec<u8>, Reply> {
    if req.length > MAX_PAYLOAD || !in_bounds(s.device.size(), req.offset, req.length) {
        return Err(fail(s, req, EINVAL, "read beyond the end of the export or too large"));
    }
    if s.structured && req.length == 0 {
        // An OFFSET_DATA chunk must carry data: an empty read is answered with NONE.
        return Err(Reply::head(chunk_header(req.cookie, REPLY_FLAG_DONE, REPLY_TYPE_NONE, 0)));
    }
    Ok(if s.structured {
        let mut h = chunk_header(req.cookie, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 8 + req.length);
        h.extend_from_slice(&req.offset.to_be_bytes());
        h
    } else {
        simple_reply(req.cookie, 0, &[])
    })
}

/// Run a batch of reads and writes together (`items` are `CMD_READ` or `CMD_WRITE`, each
/// with the offset in `buf` where its payload starts, for a write), so the device can serve
/// them in two calls ([`store::BlockWrite::write_many`], then
/// [`store::BlockRead::read_many`]). Read data goes into `buf` past the payloads, each at a
/// page-aligned place. Returns each request's reply with the offset in `buf` where its data
/// starts; the replies are those [`handle`] gives one by one. NBD leaves the order of
/// requests in flight together to the server: the writes go first.
pub(crate) fn handle_batch(s: &Session, items: &[(Request, usize)], buf: &mut AlignedBuf) -> Vec<(Reply, usize)> {
    let page = store::BLOCK_SIZE as usize;
    let mut replies: Vec<Option<(Reply, usize)>> = items.iter().map(|_| None).collect();
    // Writes: the checks of `handle`, then one call for those that pass.
    let mut writes: Vec<(usize, u64, usize, u32, bool)> = Vec::new(); // (item, offset, at, len, fua)
    for (i, (req, at)) in items.iter().enumerate().filter(|(_, (r, _))| r.kind == CMD_WRITE) {
        let answer = if !matches!(s.device, Device::ReadWrite(_)) {
            Some(fail(s, req, EPERM, "read-only export"))
        } else if s.handle.cancel.is_cancelled() {
            Some(fail(s, req, ESHUTDOWN, "the export was closed"))
        } else if !in_bounds(s.device.size(), req.offset, req.length) || *at + req.length as usize > buf.len() {
            Some(fail(s, req, ENOSPC, "beyond the end of the export"))
        } else {
            writes.push((i, req.offset, *at, req.length, req.flags & CMD_FLAG_FUA != 0));
            None
        };
        replies[i] = answer.map(|a| (a, 0));
    }
    if let (Device::ReadWrite(dev), false) = (&s.device, writes.is_empty()) {
        let data = buf.as_slice();
        let batch: Vec<(u64, &[u8], bool)> =
            writes.iter().map(|(_, offset, at, len, fua)| (*offset, &data[*at..*at + *len as usize], *fua)).collect();
        for ((i, ..), r) in writes.iter().zip(dev.write_many(&batch)) {
            let req = &items[*i].0;
            replies[*i] = Some(match r {
                Ok(()) => (Reply::head(simple_reply(req.cookie, 0, &[])), 0),
                Err(e) => (fail(s, req, errno(&e, true), &e.to_string()), 0),
            });
        }
    }
    // Reads: their data after everything the batch holds.
    let mut end = buf.len().div_ceil(page) * page;
    let mut heads: Vec<(usize, Vec<u8>, usize)> = Vec::new(); // (item, head, at)
    for (i, (req, _)) in items.iter().enumerate().filter(|(_, (r, _))| r.kind == CMD_READ) {
        match read_head(s, req) {
            Ok(h) => {
                heads.push((i, h, end));
                end += (req.length as usize).div_ceil(page) * page;
            }
            Err(answer) => replies[i] = Some((answer, 0)),
        }
    }
    if !heads.is_empty() {
        let first = heads[0].2;
        buf.resize(end);
        let (_, mut rest) = buf.as_mut_slice().split_at_mut(first);
        let mut pos = first;
        let mut reads: Vec<(u64, &mut [u8])> = Vec::with_capacity(heads.len());
        for (i, _, at) in &heads {
            let req = &items[*i].0;
            let (_, from) = std::mem::take(&mut rest).split_at_mut(at - pos);
            let (data, after) = from.split_at_mut(req.length as usize);
            reads.push((req.offset, data));
            rest = after;
            pos = at + req.length as usize;
        }
        let results = s.device.reader().read_many(&mut reads);
        for ((i, head, at), r) in heads.into_iter().zip(results) {
            let req = &items[i].0;
            replies[i] = Some(match r {
                Ok(()) => (Reply { head, data_len: req.length as usize }, at),
                Err(e) => (fail(s, req, errno(&e, false), &e.to_string()), 0),
            });
        }
    }
    items
        .iter()
        .zip(replies)
        .map(|((req, _), r)| r.unwrap_or_else(|| (fail(s, req, EINVAL, "not a command a batch runs"), 0)))
        .collect()
}

fn block_status_reply(req: &Request, extents: &[Extent]) -> Vec<u8> {
    let limit = if req.flags & CMD_FLAG_REQ_ONE != 0 { 1 } else { MAX_EXTENTS };
    let mut descs: Vec<(u32, u32)> = Vec::new();
    for e in extents {
        let flags = if e.allocated { 0 } else { STATE_HOLE | STATE_ZERO };
        let mut left = e.len;
        while left > 0 && descs.len() < limit {
            // Extents longer than a u32 are split on a 4 KiB boundary.
            let n = left.min(0xffff_f000);
            descs.push((n as u32, flags));
            left -= n;
        }
    }
    let mut out = chunk_header(req.cookie, REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, 4 + 8 * descs.len() as u32);
    out.extend_from_slice(&BASE_ALLOCATION_ID.to_be_bytes());
    for (len, flags) in descs {
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_host_file_system_is_enospc() {
        let full = StoreError::io("writing a block", std::io::Error::from_raw_os_error(28));
        assert_eq!(errno(&full, true), ENOSPC);
        let quota = StoreError::io("writing a block", std::io::Error::from_raw_os_error(122));
        assert_eq!(errno(&quota, true), ENOSPC);
        let other = StoreError::io("writing a block", std::io::Error::from_raw_os_error(5));
        assert_eq!(errno(&other, true), EIO);
        assert_eq!(errno(&StoreError::new(ErrorKind::OutOfBounds, "past the end"), true), ENOSPC);
        assert_eq!(errno(&StoreError::new(ErrorKind::OutOfBounds, "past the end"), false), EINVAL);
    }
}
