//! The transmission phase. After negotiation the socket leaves the async runtime and is
//! served by a few threads of its own that take turns as its reader (leader/follower): the
//! thread that decodes a request runs it and sends its reply itself, while the next thread
//! reads on. A request crosses no queue and no other thread between its arrival and its
//! reply, except reads that arrived in a burst behind it, which the reader hands straight to
//! waiting threads; replies go out in any order. Threads are added while every one is busy,
//! up to a limit, and retire when idle; a byte budget bounds the payload in flight.
//!
//! On disconnect, revoke or shutdown the connection stops reading, lets what is in flight
//! finish, flushes, and closes. A revocation shuts the socket's read side, which wakes a
//! reader blocked on a client that holds back its payload.
//!
//! Payload is bounded twice: per connection (`BUDGET_KIB`) and across the server
//! ([`crate::Options::reply_memory_kib`]); a reply the client does not take within
//! `REPLY_STALL` fails its connection, which frees what that connection held.
//!
//! Where the device puts I/O at the disk together (the store under `O_DIRECT`, through
//! io_uring), a reader that finds more reads and writes already received behind a read or a
//! write (a write with all of its payload) keeps a batch of them instead of handing each to
//! a thread of its own: two calls serve the batch and one `writev` sends its replies, so a
//! deep queue of small requests costs a few thread wake-ups rather than several per request.
//!
//! A client that keeps one request in flight at a time (queue depth 1) gains nothing from a
//! second thread reading on while its request runs, and pays a thread wake-up per request
//! for it. So once `LONE_STREAK` requests in a row have each been read with nothing else in
//! flight and nothing more received, the reader keeps its turn: it runs the request and
//! sends the reply itself, then reads on, as a single-threaded server would. Before each such
//! reply it looks whether the client sent more while the request ran; if so, the client has
//! several requests in flight after all and the connection goes back to handing the turn on
//! (the request that came in meanwhile waited for one request's I/O, once). Between lone
//! requests the reader may poll its socket for a short, adaptive window before it sleeps
//! ([`Poll`]), so the next request does not also pay the wake-up of a sleeping thread.
//!
//! A batch of reads (see above) with nothing more received and nothing waiting on the socket
//! is run by the reader too, keeping its turn: a thread handed the turn would only sleep in
//! `recv`, and wake for each request that trickles in, while the reads are at the disk. Kept,
//! what arrives meanwhile waits in the socket and forms the next batch, so a deep queue of
//! reads costs a context switch per batch rather than about one per request. Batches with
//! writes, or with more input behind them, hand the turn on as before.
//!
//! A TLS connection is served the same way over one end of a unix socket pair, with a task
//! that relays between the other end and the TLS stream (rustls sessions cannot be read and
//! written from several threads at once).

use crate::Device;
use crate::handler::{Reply, handle, handle_batch};
use crate::proto::*;
use crate::registry::Handle;
use crate::server::Server;
use crate::stream::{Raw, Stream};
use crate::turns::{Budget, Next, Poll, Turn};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::io::{self, BufRead, BufReader, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::AlignedBuf;
use tokio::sync::{Notify, mpsc};

/// Bytes of request and reply payload in flight per connection, in KiB.
const BUDGET_KIB: u64 = 256 * 1024;
/// Threads per connection (qemu's I/O thread pool has 64): deep queues of mid-sized reads
/// gain from having them all at the disk.
const MAX_WORKERS: usize = 64;
/// Threads a connection keeps however idle: a reader and one to read on while it works.
const MIN_WORKERS: usize = 2;
/// A thread that has waited this long for its turn to read retires.
const IDLE: Duration = Duration::from_secs(5);
/// A batch kept by one thread: at most this many requests, each at most `BATCH_ONE_MAX`
/// bytes, together at most `BATCH_BYTES` (the store holds a volume's lock across a batch,
/// so this bounds how long a snapshot or reset waits for one, as its 1 MiB write pieces do).
const BATCH_REQUESTS: usize = 32;
const BATCH_ONE_MAX: u32 = 256 * 1024;
const BATCH_BYTES: u64 = 1 << 20;
/// Threads beyond each connection's first, across the server.
const MAX_EXTRA_THREADS: usize = 1024;
/// Requests in a row read alone (nothing else in flight or received) after which the reader
/// keeps its turn (see the module's note).
const LONE_STREAK: u32 = 16;
/// Small requests arrive many to one receive.
const READ_BUFFER: usize = 64 * 1024;
/// A worker keeps a buffer up to this size between requests (a connection keeps the threads
/// it grew until it closes, so this bounds what an idle one holds).
const KEEP_BUFFER: usize = 1 << 20;
const WORKER_STACK: usize = 512 * 1024;
/// How long a closing connection waits for its replies to be taken by the client.
const DRAIN: Duration = Duration::from_secs(5);
/// A reply the client takes none of for this long fails the connection.
const REPLY_STALL: Duration = Duration::from_secs(30);

/// A blocking socket a connection's threads share (each holds a clone of the descriptor).
pub(crate) trait Sock: Read + Write + AsFd + Send + Sync + Sized + 'static {
    fn try_clone(&self) -> io::Result<Self>;
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()>;
}

macro_rules! sock_impl {
    ($t:ty) => {
        impl Sock for $t {
            fn try_clone(&self) -> io::Result<Self> {
                <$t>::try_clone(self)
            }
            fn shutdown(&self, how: Shutdown) -> io::Result<()> {
                <$t>::shutdown(self, how)
            }
            fn set_nonblocking(&self, on: bool) -> io::Result<()> {
                <$t>::set_nonblocking(self, on)
            }
            fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
                <$t>::set_write_timeout(self, t)
            }
        }
    };
}
sock_impl!(TcpStream);
sock_impl!(UnixStream);

pub(crate) struct Session {
    pub server: Arc<Server>,
    pub name: String,
    pub device: Device,
    pub handle: Handle,
    pub structured: bool,
    pub meta: bool,
}

pub(crate) async fn transmit(sock: Stream, s: Session) -> io::Result<()> {
    s.handle.active.store(true, Ordering::Release);
    let (server, name, handle) = (s.server.clone(), s.name.clone(), s.handle.clone());
    // Connections on the unix socket come from this host (the server's own VMs, whose vCPUs
    // need its cores, and local tools): their readers do not poll.
    let poll_max = Duration::from_micros(s.server.options.poll_max_us);
    let result = match sock {
        Stream::Plain(Raw::Tcp(t)) => serve_requests(t.into_std()?, s, poll_max).await,
        Stream::Plain(Raw::Unix(u)) => serve_requests(u.into_std()?, s, Duration::ZERO).await,
        Stream::Tls(tls) => serve_tls(*tls, s, poll_max).await,
    };
    server.registry.unregister(&name, handle.id);
    handle.done.set();
    result
}

/// Serve a TLS connection through a socket pair and a relay task.
async fn serve_tls(mut tls: tokio_rustls::server::TlsStream<Raw>, s: Session, poll_max: Duration) -> io::Result<()> {
    let poll_max = if matches!(tls.get_ref().0, Raw::Unix(_)) { Duration::ZERO } else { poll_max };
    let (ours, theirs) = UnixStream::pair()?;
    theirs.set_nonblocking(true)?;
    let mut theirs = tokio::net::UnixStream::from_std(theirs)?;
    let done = tokio_util::sync::CancellationToken::new();
    let finished = done.clone();
    let relay = tokio::spawn(async move {
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut tls, &mut theirs) => {}
            // Once transmission has ended, a client that keeps its side open gets `DRAIN`.
            _ = async { finished.cancelled().await; tokio::time::sleep(DRAIN).await } => {}
        }
        use tokio::io::AsyncWriteExt;
        let _ = tokio::time::timeout(DRAIN, tls.shutdown()).await;
    });
    let result = serve_requests(ours, s, poll_max).await;
    done.cancel();
    let _ = relay.await;
    result
}

/// Serve transmission on `sock`; `poll_max` bounds the reader's polling between lone
/// requests (see [`Poll`]).
async fn serve_requests<S: Sock>(sock: S, session: Session, poll_max: Duration) -> io::Result<()> {
    sock.set_nonblocking(false)?;
    sock.set_write_timeout(Some(REPLY_STALL))?;
    let poll = Poll::new(poll_max);
    let conn = Arc::new(Conn {
        turn: Turn::default(),
        reader: Mutex::new(BufReader::with_capacity(READ_BUFFER, sock.try_clone()?)),
        writer: Mutex::new(sock.try_clone()?),
        sock,
        session,
        budget: Budget::new(BUDGET_KIB),
        pooled: AtomicU64::new(0),
        closing: AtomicBool::new(false),
        closed: Notify::new(),
        workers: AtomicUsize::new(0),
        error: Mutex::new(None),
        lone: AtomicU32::new(0),
        poll: Mutex::new(poll),
    });
    // Every worker holds a sender; the channel closes when the last one has gone.
    let (alive, mut gone) = mpsc::channel::<()>(1);
    if !conn.spawn_worker(alive, true) {
        return Err(io::Error::other("no thread for the connection"));
    }
    let cancel = conn.session.handle.cancel.clone();
    tokio::select! {
        _ = gone.recv() => {}
        _ = cancel.cancelled() => {
            conn.stop();
            conn.drain(&mut gone).await;
        }
        _ = conn.closed.notified() => conn.drain(&mut gone).await,
    }
    if let Device::ReadWrite(d) = &conn.session.device {
        let d = d.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || d.flush()).await {
            tracing::warn!(export = %conn.session.name, error = %e, "flush on close failed");
        }
    }
    let _ = conn.sock.shutdown(Shutdown::Write);
    discard_unread(&conn.sock);
    match lock(&conn.error).take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Closing a socket with unread input makes the kernel reset the connection, and a reset can
/// cost the client replies it has not read yet; input already received is dropped instead.
fn discard_unread<S: Sock>(sock: &S) {
    let Ok(mut sock) = sock.try_clone() else { return };
    if sock.set_nonblocking(true).is_err() {
        return;
    }
    let mut scratch = [0u8; 64 * 1024];
    for _ in 0..256 {
        match sock.read(&mut scratch) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

struct Conn<S> {
    session: Session,
    /// Whose turn it is to read; the reader itself is only ever locked by that thread.
    turn: Turn<(Request, u64)>,
    reader: Mutex<BufReader<S>>,
    writer: Mutex<S>,
    sock: S,
    budget: Budget,
    /// KiB this connection holds of the server's pool.
    pooled: AtomicU64,
    /// Set once no more requests are to be read.
    closing: AtomicBool,
    /// Tells the connection's task that reading ended, so it bounds the wait for replies.
    closed: Notify,
    workers: AtomicUsize,
    error: Mutex<Option<io::Error>>,
    /// Requests in a row read alone; only the thread holding the turn touches it.
    lone: AtomicU32,
    /// The polling window between lone requests; only the thread holding the turn uses it.
    poll: Mutex<Poll>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn worker<S: Sock>(conn: Arc<Conn<S>>, alive: mpsc::Sender<()>, extra: bool) {
    let _count = Counted(&conn.session.server.extra_threads, extra);
    let mut buf = AlignedBuf::zeroed(0);
    let mut work = Vec::with_capacity(BATCH_REQUESTS);
    while conn.next(&mut buf, &alive, &mut work) {
        if let Err(e) = conn.run(&mut buf, &work, false) {
            conn.fail(e);
            break;
        }
        buf.shrink(KEEP_BUFFER);
    }
}

/// A request's share of the budget: what it carries or asks for, at least 1 KiB.
fn budget_kib(req: &Request) -> u64 {
    (req.length.min(MAX_PAYLOAD) as u64 / 1024).max(1)
}

/// Holds one place in the server's count of extra threads while the thread runs.
struct Counted<'a>(&'a AtomicUsize, bool);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl<S: Sock> Conn<S> {
    /// Take `kib` of the connection's budget and the server's pool, waiting for releases
    /// unless `wait` is false; `false` if not taken (or the connection is stopping).
    fn take(&self, kib: u64, wait: bool) -> bool {
        let pool = &self.session.server.pool;
        if wait {
            if !self.budget.acquire(kib, || self.stopping()) {
                return false;
            }
            if !pool.acquire(kib, || self.pooled.load(Ordering::Acquire), || self.stopping()) {
                self.budget.release(kib);
                return false;
            }
        } else {
            if !self.budget.try_acquire(kib) {
                return false;
            }
            if !pool.try_acquire(kib, self.pooled.load(Ordering::Acquire)) {
                self.budget.release(kib);
                return false;
            }
        }
        self.pooled.fetch_add(kib, Ordering::AcqRel);
        true
    }

    fn give_back(&self, kib: u64) {
        self.pooled.fetch_sub(kib, Ordering::AcqRel);
        self.session.server.pool.release(kib);
        self.budget.release(kib);
    }

    /// Wait for whatever is in flight to be answered, but not for ever: a client that stops
    /// reading its replies has its socket shut after `DRAIN`.
    async fn drain(&self, gone: &mut mpsc::Receiver<()>) {
        if tokio::time::timeout(DRAIN, gone.recv()).await.is_err() {
            let _ = self.sock.shutdown(Shutdown::Both);
            gone.recv().await;
        }
    }

    fn stopping(&self) -> bool {
        self.closing.load(Ordering::Acquire) || self.session.handle.cancel.is_cancelled()
    }

    /// Stop reading requests: on revocation and shutdown.
    fn stop(&self) {
        self.closing.store(true, Ordering::Release);
        let _ = self.sock.shutdown(Shutdown::Read);
        self.budget.wake();
    }

    /// The client is gone or broke the protocol: read no more, keep the first real error.
    fn end(&self, e: Option<io::Error>) {
        self.closing.store(true, Ordering::Release);
        self.closed.notify_one();
        if let Some(e) = e
            && e.kind() != io::ErrorKind::UnexpectedEof
            && !self.session.handle.cancel.is_cancelled()
        {
            lock(&self.error).get_or_insert(e);
        }
    }

    /// A reply could not be sent: the connection is broken both ways.
    fn fail(&self, e: io::Error) {
        self.end(Some(e));
        let _ = self.sock.shutdown(Shutdown::Both);
    }

    /// Start a thread for this connection: its first always (unless the system has none),
    /// more while under both the connection's and the server's limits.
    fn spawn_worker(self: &Arc<Self>, alive: mpsc::Sender<()>, first: bool) -> bool {
        if self.workers.fetch_add(1, Ordering::AcqRel) >= MAX_WORKERS {
            self.workers.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let extra = &self.session.server.extra_threads;
        if !first && extra.fetch_add(1, Ordering::AcqRel) >= MAX_EXTRA_THREADS {
            extra.fetch_sub(1, Ordering::AcqRel);
            self.workers.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let conn = self.clone();
        let spawned = std::thread::Builder::new()
            .name("nbd-io".into())
            .stack_size(WORKER_STACK)
            .spawn(move || worker(conn, alive, !first));
        if let Err(e) = spawned {
            if !first {
                extra.fetch_sub(1, Ordering::AcqRel);
            }
            self.workers.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(error = %e, "could not start an NBD worker thread");
            return false;
        }
        true
    }

    /// An idle thread may retire while more than the minimum remain.
    fn retire(&self) -> bool {
        self.workers.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n > MIN_WORKERS).then(|| n - 1)).is_ok()
    }

    /// Run `work` (from [`Conn::next`]) and send its replies, giving its budget back. With
    /// `watch` (a lone request run by the reader), note before the reply whether the client
    /// sent more while it ran (see the module's note). Not after the reply: a quick client at
    /// queue depth 1 may already have answered it by then.
    fn run(&self, buf: &mut AlignedBuf, work: &[(Request, u64, usize)], watch: bool) -> io::Result<()> {
        let sent = match work {
            [(req, _, _)] => {
                let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(&self.session, req, buf)))
                    .unwrap_or_else(|_| Reply::internal_error(&self.session, req));
                if watch && self.input_waiting() {
                    self.lone.store(0, Ordering::Relaxed);
                }
                let data = &buf.as_slice()[..reply.data_len.min(buf.len())];
                self.send(&[(&reply.head, data)])
            }
            batch => {
                let items: Vec<(Request, usize)> = batch.iter().map(|(r, _, at)| (*r, *at)).collect();
                let replies =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle_batch(&self.session, &items, buf)))
                        .unwrap_or_else(|_| {
                            items.iter().map(|(r, _)| (Reply::internal_error(&self.session, r), 0)).collect()
                        });
                let parts: Vec<(&[u8], &[u8])> = replies
                    .iter()
                    .map(|(reply, at)| {
                        let data = buf.as_slice().get(*at..at + reply.data_len).unwrap_or(&[]);
                        (reply.head.as_slice(), data)
                    })
                    .collect();
                self.send(&parts)
            }
        };
        for (_, kib, _) in work {
            self.give_back(*kib);
        }
        sent
    }

    /// Poll the socket for input for the current window (see [`Poll`]); whether it came.
    fn poll_for_input(&self) -> bool {
        let window = lock(&self.poll).window();
        if window.is_zero() {
            return false;
        }
        let start = std::time::Instant::now();
        while start.elapsed() < window {
            if self.input_waiting() {
                return true;
            }
            std::hint::spin_loop();
        }
        false
    }

    /// Whether input from the client is waiting to be read (a zero-timeout `poll`).
    fn input_waiting(&self) -> bool {
        let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// Put into `work` the next requests to run, each with its share of the budget and where
    /// its payload starts in `buf`: one handed on by the reader, or, as the reader, one whole request
    /// read (its payload at the start of `buf`), followed by the batch kept with it (see the
    /// module's note). A reader in a streak of lone requests runs those itself, keeping the
    /// turn, before it returns with one that is not. `false` once the connection is closing.
    fn next(
        self: &Arc<Self>,
        buf: &mut AlignedBuf,
        alive: &mpsc::Sender<()>,
        work: &mut Vec<(Request, u64, usize)>,
    ) -> bool {
        work.clear();
        let Some(next) = self.turn.take(IDLE, || self.retire()) else {
            return false;
        };
        let _turn = match next {
            Next::Run((req, kib)) => {
                // Read before a revocation, taken after it: not run. (A disconnect or bad
                // input after it still lets it run: the client asked before that.)
                if self.session.handle.cancel.is_cancelled() {
                    self.give_back(kib);
                    return false;
                }
                work.push((req, kib, 0));
                return true;
            }
            Next::Read(turn) => turn,
        };
        let mut rd = lock(&self.reader);
        if self.stopping() {
            return false;
        }
        loop {
            let mut head = [0u8; REQUEST_LEN];
            let waiting = self.lone.load(Ordering::Relaxed) >= LONE_STREAK && rd.buffer().is_empty();
            let started = waiting.then(|| (std::time::Instant::now(), self.poll_for_input()));
            if let Err(e) = rd.read_exact(&mut head) {
                self.end(Some(e));
                return false;
            }
            if let Some((at, polled)) = started {
                lock(&self.poll).learn(polled, at.elapsed());
            }
            // After a revocation nothing more is run, even what was already received.
            if self.stopping() {
                return false;
            }
            let req = match Request::decode(&head) {
                Ok(r) => r,
                Err(e) => {
                    self.end(Some(io::Error::new(io::ErrorKind::InvalidData, e.to_string())));
                    return false;
                }
            };
            if req.kind == CMD_DISC {
                self.end(None);
                return false;
            }
            if req.payload_len() > MAX_PAYLOAD {
                // The payload cannot be skipped safely: the protocol allows closing.
                let e = io::Error::new(io::ErrorKind::InvalidData, "write larger than the advertised maximum");
                self.end(Some(e));
                return false;
            }
            let kib = budget_kib(&req);
            if !self.take(kib, true) {
                return false;
            }
            buf.resize(req.payload_len() as usize);
            if let Err(e) = rd.read_exact(buf.as_mut_slice()) {
                self.give_back(kib);
                self.end(Some(e));
                return false;
            }
            work.push((req, kib, 0));
            if matches!(req.kind, CMD_READ | CMD_WRITE)
                && req.length <= BATCH_ONE_MAX
                && self.session.device.reader().reads_together()
            {
                self.gather(&mut rd, buf, work);
            }
            // A lone request at the end of a streak, or a batch of reads with nothing more come
            // in: run it with the turn kept, then read on (see the module's note).
            let lone = work.len() == 1 && rd.buffer().is_empty() && self.pooled.load(Ordering::Acquire) == kib;
            let streak = if lone { self.lone.load(Ordering::Relaxed).saturating_add(1) } else { 0 };
            self.lone.store(streak, Ordering::Relaxed);
            let reads = work.len() > 1 && work.iter().all(|(r, _, _)| r.kind == CMD_READ);
            if streak >= LONE_STREAK || (reads && rd.buffer().is_empty() && !self.input_waiting()) {
                if let Err(e) = self.run(buf, work, streak >= LONE_STREAK) {
                    self.fail(e);
                    return false;
                }
                work.clear();
                buf.shrink(KEEP_BUFFER);
                continue;
            }
            let ahead = self.read_ahead(&mut rd);
            // Spare threads for what was handed on and one to read on: with nobody left to read,
            // the next request would wait for this one's I/O.
            let wanted = self.turn.hand_on(ahead);
            for _ in 0..wanted {
                if !self.spawn_worker(alive.clone(), false) {
                    break;
                }
            }
            return true;
        }
    }

    /// Add to `work` the reads and whole writes already received, up to the batch limits,
    /// each with its budget (not waited for); write payloads are copied into `buf` after
    /// what it holds, each at a page-aligned place.
    fn gather(&self, rd: &mut BufReader<S>, buf: &mut AlignedBuf, work: &mut Vec<(Request, u64, usize)>) {
        let page = store::BLOCK_SIZE as usize;
        let mut bytes: u64 = work.iter().map(|(r, _, _)| u64::from(r.length)).sum();
        while work.len() < BATCH_REQUESTS && !self.stopping() {
            let Some(req) = rd.buffer().get(..REQUEST_LEN).and_then(|h| Request::decode(h).ok()) else {
                break;
            };
            let len = req.length as usize;
            let fits = req.length <= BATCH_ONE_MAX && bytes + u64::from(req.length) <= BATCH_BYTES;
            let whole = match req.kind {
                CMD_READ => true,
                CMD_WRITE => rd.buffer().len() >= REQUEST_LEN + len,
                _ => false,
            };
            if !fits || !whole {
                break;
            }
            let kib = budget_kib(&req);
            if !self.take(kib, false) {
                break;
            }
            rd.consume(REQUEST_LEN);
            let at = buf.len().div_ceil(page) * page;
            if req.kind == CMD_WRITE {
                buf.resize(at + len);
                buf.as_mut_slice()[at..at + len].copy_from_slice(&rd.buffer()[..len]);
                rd.consume(len);
            }
            bytes += u64::from(req.length);
            work.push((req, kib, at));
        }
    }

    /// Reads already received, taken off the receive buffer (with their budget) to hand on,
    /// so a burst starts at once instead of one thread waking after another to read the next.
    /// Anything else (a write's payload may not be here yet) stops it, for the next reader.
    fn read_ahead(&self, rd: &mut BufReader<S>) -> Vec<(Request, u64)> {
        let mut ahead = Vec::new();
        while ahead.len() < MAX_WORKERS && !self.stopping() {
            let Some(req) = rd.buffer().get(..REQUEST_LEN).and_then(|h| Request::decode(h).ok()) else {
                break;
            };
            if req.kind != CMD_READ {
                break;
            }
            let kib = budget_kib(&req);
            if !self.take(kib, false) {
                break;
            }
            rd.consume(REQUEST_LEN);
            ahead.push((req, kib));
        }
        ahead
    }

    /// Send replies, each a header and its data, in one `writev` where the socket takes them.
    fn send(&self, replies: &[(&[u8], &[u8])]) -> io::Result<()> {
        let mut w = lock(&self.writer);
        let mut bufs: Vec<IoSlice> =
            replies.iter().flat_map(|(head, data)| [IoSlice::new(head), IoSlice::new(data)]).collect();
        let mut bufs = &mut bufs[..];
        while !bufs.is_empty() {
            match w.write_vectored(bufs) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut bufs, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
