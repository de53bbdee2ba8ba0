//! The transmission phase: a reader that decodes requests and starts a handler for each
//! (bounded by a byte budget), handlers that run the I/O on blocking threads, and a writer
//! that sends replies as they complete, in any order. On disconnect, revoke or shutdown the
//! connection stops reading, lets what is in flight finish, flushes, and closes.

use crate::Device;
use crate::proto::*;
use crate::registry::Handle;
use crate::server::Server;
use std::io;
use std::sync::Arc;
use store::{AlignedBuf, ErrorKind, Extent, StoreError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};

/// Bytes of request and reply payload in flight per connection, in KiB.
const BUDGET_KIB: u32 = 256 * 1024;
/// Replies ready at the same time are sent together up to this many bytes.
const BATCH_BYTES: usize = 256 * 1024;
/// Block-status answers carry at most this many extents.
const MAX_EXTENTS: usize = 1024;

pub(crate) struct Session {
    pub server: Arc<Server>,
    pub name: String,
    pub device: Device,
    pub handle: Handle,
    pub structured: bool,
    pub meta: bool,
}

pub(crate) async fn transmit(sock: TcpStream, s: Session) -> io::Result<()> {
    s.handle.active.store(true, std::sync::atomic::Ordering::Release);
    let (mut rd, mut wr) = sock.into_split();
    // Unbounded: what bounds it is the budget, whose permits the replies carry until sent.
    let (tx, mut rx) = mpsc::unbounded_channel::<Reply>();
    let writer = tokio::spawn(async move {
        // Replies that are ready together go out in one send; small data is copied in after
        // its header (cheaper than another send), large data is sent from its own buffer.
        let mut out: Vec<u8> = Vec::with_capacity(BATCH_BYTES);
        let mut sent: Vec<Reply> = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            while let Some(r) = next.take() {
                out.extend_from_slice(&r.head);
                match &r.data {
                    Some(d) if d.len() <= 128 * 1024 => out.extend_from_slice(d.as_slice()),
                    Some(d) => {
                        wr.write_all(&out).await?;
                        out.clear();
                        wr.write_all(d.as_slice()).await?;
                    }
                    None => {}
                }
                sent.push(r);
                if out.len() < BATCH_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            wr.write_all(&out).await?;
            out.clear();
            sent.clear(); // releases their budget
        }
        wr.shutdown().await
    });
    let budget = Arc::new(Semaphore::new(BUDGET_KIB as usize));
    let session = Arc::new(s);
    let result = read_loop(&mut rd, &session, &tx, &budget).await;
    // Let every handler finish and its reply go out before flushing and closing; a client that
    // stops reading its replies gets a few seconds, then the connection is dropped regardless.
    let drained = tokio::time::timeout(DRAIN, budget.acquire_many(BUDGET_KIB)).await.is_ok();
    if let Device::ReadWrite(d) = &session.device {
        let d = d.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || d.flush()).await {
            tracing::warn!(export = %session.name, error = %e, "flush on close failed");
        }
    }
    drop(tx);
    if drained {
        let _ = writer.await;
    } else {
        writer.abort();
    }
    session.server.registry.unregister(&session.name, session.handle.id);
    session.handle.done.set();
    result
}

/// How long a closing connection waits for its replies to be taken by the client.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

async fn read_loop(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    s: &Arc<Session>,
    tx: &mpsc::UnboundedSender<Reply>,
    budget: &Arc<Semaphore>,
) -> io::Result<()> {
    let cancelled = s.handle.cancel.clone();
    loop {
        let mut head = [0u8; REQUEST_LEN];
        tokio::select! {
            biased;
            _ = cancelled.cancelled() => return Ok(()),
            r = rd.read_exact(&mut head) => match r {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            },
        }
        let req = Request::decode(&head).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        if req.kind == CMD_DISC {
            return Ok(());
        }
        if req.payload_len() > MAX_PAYLOAD {
            // The payload cannot be skipped safely: the protocol allows closing.
            return Err(io::Error::new(io::ErrorKind::InvalidData, "write larger than the advertised maximum"));
        }
        let kib = (req.length.min(MAX_PAYLOAD) / 1024).max(1);
        // A revocation must not wait on a client that holds back its payload.
        let permit = tokio::select! {
            biased;
            _ = cancelled.cancelled() => return Ok(()),
            p = budget.clone().acquire_many_owned(kib) => p.map_err(|_| io::Error::other("budget closed"))?,
        };
        // Page-aligned, so the store can write it with O_DIRECT as it is.
        let mut payload = AlignedBuf::zeroed(req.payload_len() as usize);
        tokio::select! {
            biased;
            _ = cancelled.cancelled() => return Ok(()),
            r = rd.read_exact(payload.as_mut_slice()) => { r?; }
        }
        let (s, tx) = (s.clone(), tx.clone());
        // The I/O runs on a blocking thread, which hands its reply straight to the writer.
        tokio::task::spawn_blocking(move || {
            let mut reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(&s, &req, payload)))
                .unwrap_or_else(|_| Reply::head(simple_reply(req.cookie, EIO, &[])));
            reply.permit = Some(permit);
            let _ = tx.send(reply);
        });
    }
}

fn errno(e: &StoreError, write: bool) -> u32 {
    match e.kind {
        ErrorKind::OutOfBounds if write => ENOSPC,
        ErrorKind::OutOfBounds | ErrorKind::Invalid => EINVAL,
        ErrorKind::NotFound => ESHUTDOWN,
        _ => EIO,
    }
}

fn in_bounds(size: u64, offset: u64, len: u32) -> bool {
    offset.checked_add(len as u64).is_some_and(|end| end <= size)
}

/// An encoded reply: its header (or whole body) and, for reads, the data after it. It holds
/// its request's share of the connection's budget until it has been sent.
pub(crate) struct Reply {
    head: Vec<u8>,
    data: Option<AlignedBuf>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Reply {
    fn head(head: Vec<u8>) -> Reply {
        Reply { head, data: None, permit: None }
    }
}

/// Run one request and encode its reply.
fn handle(s: &Session, req: &Request, payload: AlignedBuf) -> Reply {
    let fail = |err: u32, msg: &str| {
        Reply::head(if s.structured && (req.kind == CMD_READ || req.kind == CMD_BLOCK_STATUS) {
            error_chunk(req.cookie, err, msg)
        } else {
            simple_reply(req.cookie, err, &[])
        })
    };
    let size = s.device.size();
    let writable = || match &s.device {
        Device::ReadWrite(d) => Some(d.clone()),
        Device::ReadOnly(_) => None,
    };
    match req.kind {
        CMD_READ => {
            if req.length > MAX_PAYLOAD || !in_bounds(size, req.offset, req.length) {
                return fail(EINVAL, "read beyond the end of the export or too large");
            }
            if s.structured && req.length == 0 {
                // An OFFSET_DATA chunk must carry data: an empty read is answered with NONE.
                return Reply::head(chunk_header(req.cookie, REPLY_FLAG_DONE, REPLY_TYPE_NONE, 0));
            }
            let head = if s.structured {
                let mut h = chunk_header(req.cookie, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 8 + req.length);
                h.extend_from_slice(&req.offset.to_be_bytes());
                h
            } else {
                simple_reply(req.cookie, 0, &[])
            };
            // Read into a page-aligned buffer of its own (O_DIRECT needs one); the header
            // goes out first, from its own buffer.
            let mut data = AlignedBuf::zeroed(req.length as usize);
            match s.device.reader().read_at(data.as_mut_slice(), req.offset) {
                Ok(()) => Reply { head, data: Some(data), permit: None },
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
                CMD_WRITE => dev.write_at(payload.as_slice(), req.offset, fua),
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
