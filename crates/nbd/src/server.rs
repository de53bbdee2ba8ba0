//! Listeners and option haggling. Each connection negotiates, then hands the socket to the
//! transmission phase. Malformed input closes that connection only.
//!
//! A TCP listener with TLS configured is TLS-only (proto.md, "TLS support"): before
//! NBD_OPT_STARTTLS every option but NBD_OPT_ABORT is answered NBD_REP_ERR_TLS_REQD and
//! NBD_OPT_EXPORT_NAME closes the connection; after it, the client certificate names the
//! account whose exports the connection sees. Without TLS a listener is trusted.

use crate::proto::*;
use crate::registry::{Handle, Registry};
use crate::stream::{Raw, Stream};
use crate::transmit::{Session, transmit};
use crate::turns::Pool;
use crate::{Client, Device, Exports, Refusal};
use std::io;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Server-wide limits.
#[derive(Debug, Clone)]
pub struct Options {
    /// Time a client has from accept to the start of transmission (TLS handshake
    /// included); a connection still negotiating then is closed.
    pub negotiation_timeout: Duration,
    /// KiB of request and reply payload all connections together may hold (each connection
    /// also has its own limit of 256 MiB). A connection with nothing in flight may always
    /// take one request (up to 32 MiB) beyond it, so a client that does not read its
    /// replies stalls only itself: the most held is this plus one request per connection.
    pub reply_memory_kib: u64,
    /// TCP connections open at once, negotiating or transmitting; past it a new connection is
    /// closed at accept, so idle clients cannot use up the process's file descriptors. The
    /// unix socket has a budget of its own of the same size.
    pub max_connections: usize,
    /// TCP connections open at once from one IP address.
    pub max_connections_per_peer: usize,
    /// Longest a reader running lone requests on a TCP connection polls its socket for the
    /// next one before it sleeps, in µs (0: never poll; connections on the unix socket never
    /// do, their clients share this host's cores). The window adapts per connection as qemu's event loop
    /// does (`poll-max-ns`, 32 µs for its I/O threads): it grows while the client's next
    /// request comes within this limit, and shrinks while it does not. See `docs/nbd.md`,
    /// "Lone requests".
    pub poll_max_us: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            negotiation_timeout: Duration::from_secs(10),
            reply_memory_kib: 256 << 10,
            max_connections: 1024,
            max_connections_per_peer: 512,
            poll_max_us: 32,
        }
    }
}

/// The peer name of connections on the unix socket.
const UNIX_PEER: &str = "unix";

/// Open connections, overall and per peer address ([`Options::max_connections`]).
#[derive(Default)]
pub(crate) struct Conns {
    per_peer: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// One admitted connection; counted until dropped (when the connection's task ends).
pub(crate) struct ConnSlot {
    server: Arc<Server>,
    peer: String,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut m = match self.server.conns.per_peer.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some(n) = m.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.peer);
            }
        }
        if self.peer != UNIX_PEER {
            self.server.open.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

impl Server {
    /// Count a new connection from `peer`, or refuse it when a cap is reached.
    pub(crate) fn admit(self: &Arc<Server>, peer: String) -> Option<ConnSlot> {
        use std::sync::atomic::Ordering;
        let mut m = match self.conns.per_peer.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let mine = m.get(&peer).copied().unwrap_or(0);
        // The unix socket (only the server's own tools can open it) has a budget of its own,
        // so that TCP clients filling theirs cannot crowd it out.
        let local = peer == UNIX_PEER;
        let full = if local {
            mine >= self.options.max_connections
        } else {
            mine >= self.options.max_connections_per_peer
                || self.open.load(Ordering::Acquire) >= self.options.max_connections
        };
        if full {
            return None;
        }
        m.insert(peer.clone(), mine + 1);
        if !local {
            self.open.fetch_add(1, Ordering::AcqRel);
        }
        Some(ConnSlot { server: self.clone(), peer })
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The account (and the credential) a verified TLS client certificate stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The account whose exports the connection may see and open.
    pub account: String,
    /// An opaque name of the credential (e.g. the certificate's serial), for
    /// [`Registry::revoke_credential`].
    pub credential: String,
}

/// Maps the DER of a client's leaf certificate, already verified by rustls against the
/// configured client CA and revocation lists, to an identity; `None` refuses the connection.
pub type Identify = Arc<dyn Fn(&[u8]) -> Option<Identity> + Send + Sync>;

/// TLS for the TCP listeners: the rustls configuration (server certificate, client
/// certificate verifier) and how a client certificate maps to an account.
#[derive(Clone)]
pub struct Tls {
    pub config: Arc<rustls::ServerConfig>,
    pub identify: Identify,
}

pub struct Server {
    pub(crate) exports: Arc<dyn Exports>,
    pub registry: Arc<Registry>,
    pub(crate) shutdown: CancellationToken,
    /// Connection threads beyond each connection's first, across the server.
    pub(crate) extra_threads: std::sync::atomic::AtomicUsize,
    pub(crate) options: Options,
    /// Payload held across the server, in KiB ([`Options::reply_memory_kib`]).
    pub(crate) pool: Pool,
    tls: RwLock<Option<Tls>>,
    pub(crate) conns: Conns,
    open: std::sync::atomic::AtomicUsize,
}

impl Server {
    pub fn new(exports: Arc<dyn Exports>, shutdown: CancellationToken) -> Arc<Server> {
        Server::with_options(exports, shutdown, Options::default())
    }

    pub fn with_options(exports: Arc<dyn Exports>, shutdown: CancellationToken, options: Options) -> Arc<Server> {
        Arc::new(Server {
            exports,
            registry: Arc::new(Registry::default()),
            shutdown,
            extra_threads: Default::default(),
            pool: Pool::new(options.reply_memory_kib),
            options,
            tls: RwLock::new(None),
            conns: Conns::default(),
            open: Default::default(),
        })
    }

    /// Make TCP listeners TLS-only with this configuration (or trusted, with `None`). Takes
    /// effect for connections accepted from now on: call it again with a new verifier to
    /// apply a new revocation list.
    pub fn set_tls(&self, tls: Option<Tls>) {
        match self.tls.write() {
            Ok(mut g) => *g = tls,
            Err(p) => *p.into_inner() = tls,
        }
    }

    fn tls(&self) -> Option<Tls> {
        match self.tls.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// KiB of payload held now across all connections (see [`Options::reply_memory_kib`]).
    pub fn payload_in_flight_kib(&self) -> u64 {
        self.pool.in_use()
    }
}

/// Accept TCP connections until shutdown; each runs on its own task. TLS-only if the server
/// has TLS configured when the connection is accepted, trusted otherwise.
pub async fn serve(server: Arc<Server>, listener: TcpListener) {
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            _ = server.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    let Some(slot) = server.admit(peer.ip().to_string()) else {
                        tracing::debug!(%peer, "NBD connection refused: too many open");
                        continue;
                    };
                    if let Err(e) = sock.set_nodelay(true) {
                        tracing::debug!(%peer, error = %e, "NBD set_nodelay failed");
                    }
                    let tls = server.tls();
                    spawn(&tracker, slot, Raw::Tcp(sock), tls, peer.to_string());
                }
                Err(e) => accept_failed(e).await,
            },
        }
    }
    tracker.close();
    tracker.wait().await;
}

/// Accept connections on a unix socket until shutdown. They are trusted: whoever may open
/// the socket (its file mode decides) sees every export; STARTTLS is not offered there.
pub async fn serve_unix(server: Arc<Server>, listener: UnixListener) {
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            _ = server.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((sock, _)) => match server.admit(UNIX_PEER.into()) {
                    Some(slot) => spawn(&tracker, slot, Raw::Unix(sock), None, "unix".into()),
                    None => tracing::debug!("NBD connection on the unix socket refused: too many open"),
                },
                Err(e) => accept_failed(e).await,
            },
        }
    }
    tracker.close();
    tracker.wait().await;
}

fn spawn(tracker: &TaskTracker, slot: ConnSlot, sock: Raw, tls: Option<Tls>, peer: String) {
    let server = slot.server.clone();
    tracker.spawn(async move {
        if let Err(e) = connection(server, sock, tls).await {
            tracing::debug!(%peer, error = %e, "NBD connection ended");
        }
        drop(slot);
    });
}

async fn accept_failed(e: io::Error) {
    tracing::warn!(error = %e, "NBD accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Per-connection negotiation state.
#[derive(Default)]
struct Haggle {
    no_zeroes: bool,
    structured: bool,
    /// Export name the meta context was set for, if any.
    meta: Option<String>,
}

/// Negotiate, then serve. Negotiation gives way to shutdown at once and is bounded by
/// [`Options::negotiation_timeout`]; transmission drains.
async fn connection(server: Arc<Server>, sock: Raw, tls: Option<Tls>) -> io::Result<()> {
    let shutdown = server.shutdown.clone();
    let limit = server.options.negotiation_timeout;
    let negotiated = tokio::select! {
        biased;
        _ = shutdown.cancelled() => return Ok(()),
        r = tokio::time::timeout(limit, negotiate(server, sock, tls)) => match r {
            Ok(r) => r?,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "negotiation took too long")),
        },
    };
    match negotiated {
        Some((sock, session)) => transmit(sock, session).await,
        None => Ok(()),
    }
}

/// A connection's place in the registry until transmission starts: given back if
/// negotiation fails or is dropped (timeout, shutdown) in between.
struct Registered {
    server: Arc<Server>,
    name: String,
    handle: Option<Handle>,
}

impl Registered {
    fn keep(mut self) -> Option<Handle> {
        self.handle.take()
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.server.registry.unregister(&self.name, h.id);
            h.done.set();
        }
    }
}

fn session(server: &Arc<Server>, name: String, device: Device, reg: Registered, h: &Haggle) -> io::Result<Session> {
    let handle = reg.keep().ok_or_else(|| io::Error::other("registration lost"))?;
    let meta = h.meta.as_deref() == Some(name.as_str());
    Ok(Session { server: server.clone(), name, device, handle, structured: h.structured, meta })
}

async fn negotiate(server: Arc<Server>, raw: Raw, tls: Option<Tls>) -> io::Result<Option<(Stream, Session)>> {
    let mut sock = Stream::Plain(raw);
    // Who the client is: decided by the listener, or by its certificate after STARTTLS.
    let mut client = if tls.is_some() { None } else { Some(Client::Trusted) };
    let mut credential: Option<Arc<str>> = None;
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    sock.write_all(&hello).await?;
    let client_flags = sock.read_u32().await?;
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(invalid("unknown client flags"));
    }
    let mut h = Haggle { no_zeroes: client_flags & FLAG_C_NO_ZEROES != 0, ..Haggle::default() };
    loop {
        let mut head = [0u8; 16];
        sock.read_exact(&mut head).await?;
        let (option, len) = decode_option_header(&head).map_err(|e| invalid(&e.to_string()))?;
        if len > MAX_OPTION_LEN {
            // Stay in sync by skipping it, but never buffer it.
            if len > 16 * MAX_OPTION_LEN {
                return Err(invalid("option payload too large"));
            }
            tokio::io::copy(&mut (&mut sock).take(len as u64), &mut tokio::io::sink()).await?;
            sock.write_all(&option_reply(option, REP_ERR_TOO_BIG, b"option too large")).await?;
            continue;
        }
        let mut data = vec![0u8; len as usize];
        sock.read_exact(&mut data).await?;
        let Some(who) = client.clone() else {
            // TLS-only and not yet upgraded.
            match option {
                OPT_STARTTLS => {
                    if !data.is_empty() {
                        sock.write_all(&option_reply(option, REP_ERR_INVALID, b"NBD_OPT_STARTTLS takes no data"))
                            .await?;
                        continue;
                    }
                    let Some(tls) = &tls else { return Err(invalid("no TLS configuration")) };
                    sock.write_all(&option_reply(option, REP_ACK, &[])).await?;
                    let Stream::Plain(raw) = sock else { return Err(invalid("TLS twice")) };
                    let upgraded = tokio_rustls::TlsAcceptor::from(tls.config.clone()).accept(raw).await?;
                    let leaf = upgraded.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
                    let Some(id) = leaf.and_then(|der| (tls.identify)(&der)) else {
                        return Err(invalid("the client certificate names no account"));
                    };
                    client = Some(Client::Account(id.account));
                    credential = Some(id.credential.into());
                    sock = Stream::Tls(Box::new(upgraded));
                    // Nothing negotiated in the clear carries over (proto.md, "TLS support").
                    h = Haggle { no_zeroes: h.no_zeroes, ..Haggle::default() };
                }
                OPT_ABORT => {
                    let _ = sock.write_all(&option_reply(option, REP_ACK, &[])).await;
                    return Ok(None);
                }
                // It cannot be answered with an error: the spec has the server close.
                OPT_EXPORT_NAME => return Err(invalid("NBD_OPT_EXPORT_NAME before NBD_OPT_STARTTLS")),
                _ => {
                    sock.write_all(&option_reply(option, REP_ERR_TLS_REQD, b"TLS required: send NBD_OPT_STARTTLS"))
                        .await?
                }
            }
            continue;
        };
        match option {
            OPT_STARTTLS => {
                let (kind, msg): (u32, &[u8]) = if tls.is_some() {
                    (REP_ERR_INVALID, b"TLS is already negotiated")
                } else {
                    (REP_ERR_UNSUP, b"TLS is not offered on this listener")
                };
                sock.write_all(&option_reply(option, kind, msg)).await?;
            }
            OPT_EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data).into_owned();
                let Some((device, reg)) = open(&server, &who, &credential, &name).await.ok() else {
                    return Err(invalid("export refused")); // the protocol's only answer: close
                };
                let mut reply = device.size().to_be_bytes().to_vec();
                reply.extend_from_slice(&flags_for(&device, false).to_be_bytes());
                if !h.no_zeroes {
                    reply.extend_from_slice(&[0u8; 124]);
                }
                sock.write_all(&reply).await?;
                let session = session(&server, name, device, reg, &h)?;
                return Ok(Some((sock, session)));
            }
            OPT_ABORT => {
                let _ = sock.write_all(&option_reply(option, REP_ACK, &[])).await;
                return Ok(None);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    sock.write_all(&option_reply(option, REP_ERR_INVALID, b"NBD_OPT_LIST takes no data")).await?;
                    continue;
                }
                let exports = server.exports.clone();
                let names = tokio::task::spawn_blocking(move || exports.list(&who)).await.unwrap_or_default();
                let mut out = Vec::new();
                for n in names {
                    let mut d = (n.len() as u32).to_be_bytes().to_vec();
                    d.extend_from_slice(n.as_bytes());
                    out.extend(option_reply(option, REP_SERVER, &d));
                }
                out.extend(option_reply(option, REP_ACK, &[]));
                sock.write_all(&out).await?;
            }
            OPT_STRUCTURED_REPLY => {
                let kind = if data.is_empty() && !h.structured { REP_ACK } else { REP_ERR_INVALID };
                h.structured |= kind == REP_ACK;
                sock.write_all(&option_reply(option, kind, &[])).await?;
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                let set = option == OPT_SET_META_CONTEXT;
                let Some((name, queries)) = parse_meta_request(&data) else {
                    sock.write_all(&option_reply(option, REP_ERR_INVALID, b"malformed meta context request")).await?;
                    continue;
                };
                if !h.structured {
                    sock.write_all(&option_reply(option, REP_ERR_INVALID, b"negotiate structured replies first"))
                        .await?;
                    continue;
                }
                let wanted = |q: &str| q == BASE_ALLOCATION || (!set && (q == "base:" || q.is_empty()));
                let offer = if queries.is_empty() { !set } else { queries.iter().any(|q| wanted(q)) };
                let mut out = Vec::new();
                if offer {
                    let mut d = BASE_ALLOCATION_ID.to_be_bytes().to_vec();
                    d.extend_from_slice(BASE_ALLOCATION.as_bytes());
                    out.extend(option_reply(option, REP_META_CONTEXT, &d));
                }
                if set {
                    h.meta = offer.then_some(name);
                }
                out.extend(option_reply(option, REP_ACK, &[]));
                sock.write_all(&out).await?;
            }
            OPT_INFO | OPT_GO => {
                let Some((name, infos)) = parse_info_request(&data) else {
                    sock.write_all(&option_reply(option, REP_ERR_INVALID, b"malformed info request")).await?;
                    continue;
                };
                let opened = if option == OPT_GO {
                    open(&server, &who, &credential, &name).await.map(|(d, h)| (d, Some(h)))
                } else {
                    // The policy asks the catalog: never on an async worker.
                    let (exports, n) = (server.exports.clone(), name.clone());
                    tokio::task::spawn_blocking(move || exports.open(&who, &n))
                        .await
                        .unwrap_or_else(|_| Err(Refusal::Policy("internal error".into())))
                        .map(|d| (d, None))
                };
                let (device, handle) = match opened {
                    Ok(x) => x,
                    Err(Refusal::Unknown) => {
                        let msg = format!("no export named {name:?}");
                        sock.write_all(&option_reply(option, REP_ERR_UNKNOWN, msg.as_bytes())).await?;
                        continue;
                    }
                    Err(Refusal::Policy(msg)) => {
                        sock.write_all(&option_reply(option, REP_ERR_POLICY, msg.as_bytes())).await?;
                        continue;
                    }
                };
                let mut out =
                    option_reply(option, REP_INFO, &info_export(device.size(), flags_for(&device, h.structured)));
                out.extend(option_reply(option, REP_INFO, &info_block_size(1, 4096, MAX_PAYLOAD)));
                if infos.contains(&INFO_NAME) {
                    out.extend(option_reply(option, REP_INFO, &info_name(&name)));
                }
                out.extend(option_reply(option, REP_ACK, &[]));
                match handle {
                    Some(reg) => {
                        sock.write_all(&out).await?;
                        let session = session(&server, name, device, reg, &h)?;
                        return Ok(Some((sock, session)));
                    }
                    None => sock.write_all(&out).await?,
                }
            }
            _ => {
                sock.write_all(&option_reply(option, REP_ERR_UNSUP, b"option not supported")).await?;
            }
        }
    }
}

/// Register first, then ask for the device: a revoke that runs in between either finds this
/// connection registered or made the policy refuse it.
async fn open(
    server: &Arc<Server>,
    client: &Client,
    credential: &Option<Arc<str>>,
    name: &str,
) -> Result<(Device, Registered), Refusal> {
    let handle = server.registry.register(name, &server.shutdown, credential.clone());
    let reg = Registered { server: server.clone(), name: name.to_string(), handle: Some(handle) };
    // Checked after registering: a revocation either closes this registration or is seen here.
    if credential.as_deref().is_some_and(|c| server.registry.is_revoked(c)) {
        return Err(Refusal::Policy("the client certificate was revoked".into()));
    }
    let (exports, client) = (server.exports.clone(), client.clone());
    let n = name.to_string();
    let device = tokio::task::spawn_blocking(move || exports.open(&client, &n))
        .await
        .unwrap_or_else(|_| Err(Refusal::Policy("internal error".into())))?;
    Ok((device, reg))
}

fn flags_for(device: &Device, structured: bool) -> u16 {
    let df = if structured { TF_SEND_DF } else { 0 };
    match device {
        Device::ReadWrite(_) => {
            TF_HAS_FLAGS | TF_SEND_FLUSH | TF_SEND_FUA | TF_SEND_TRIM | TF_SEND_WRITE_ZEROES | TF_CAN_MULTI_CONN | df
        }
        Device::ReadOnly(_) => TF_HAS_FLAGS | TF_READ_ONLY | TF_SEND_FLUSH | TF_CAN_MULTI_CONN | df,
    }
}
