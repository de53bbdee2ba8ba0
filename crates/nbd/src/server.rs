//! Listener and option haggling. Each connection negotiates, then hands the socket to the
//! transmission phase. Malformed input closes that connection only.

use crate::proto::*;
use crate::registry::{Handle, Registry};
use crate::transmit::{Session, transmit};
use crate::{Device, Exports, Refusal};
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Server {
    pub(crate) exports: Arc<dyn Exports>,
    pub registry: Arc<Registry>,
    pub(crate) shutdown: CancellationToken,
    /// Connection threads beyond each connection's first, across the server.
    pub(crate) extra_threads: std::sync::atomic::AtomicUsize,
}

impl Server {
    pub fn new(exports: Arc<dyn Exports>, shutdown: CancellationToken) -> Arc<Server> {
        Arc::new(Server {
            exports,
            registry: Arc::new(Registry::default()),
            shutdown,
            extra_threads: Default::default(),
        })
    }
}

/// Accept connections until `shutdown`; each runs on its own task.
pub async fn serve(server: Arc<Server>, listener: TcpListener) {
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        tokio::select! {
            _ = server.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    let s = server.clone();
                    tracker.spawn(async move {
                        if let Err(e) = connection(s, sock).await {
                            tracing::debug!(%peer, error = %e, "NBD connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "NBD accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
    tracker.close();
    tracker.wait().await;
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

/// Negotiate, then serve. Negotiation gives way to shutdown at once; transmission drains.
async fn connection(server: Arc<Server>, sock: TcpStream) -> io::Result<()> {
    let shutdown = server.shutdown.clone();
    let negotiated = tokio::select! {
        biased;
        _ = shutdown.cancelled() => return Ok(()),
        r = negotiate(server, sock) => r?,
    };
    match negotiated {
        Some((sock, session)) => transmit(sock, session).await,
        None => Ok(()),
    }
}

/// Write the reply that starts transmission; if it cannot be sent, the export's registration
/// is given back.
async fn start(sock: &mut TcpStream, reply: &[u8], server: &Server, name: &str, handle: &Handle) -> io::Result<()> {
    if let Err(e) = sock.write_all(reply).await {
        server.registry.unregister(name, handle.id);
        handle.done.set();
        return Err(e);
    }
    Ok(())
}

async fn negotiate(server: Arc<Server>, mut sock: TcpStream) -> io::Result<Option<(TcpStream, Session)>> {
    sock.set_nodelay(true)?;
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
        match option {
            OPT_EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data).into_owned();
                let Some((device, handle)) = open(&server, &name).await.ok() else {
                    return Err(invalid("export refused")); // the protocol's only answer: close
                };
                let mut reply = device.size().to_be_bytes().to_vec();
                reply.extend_from_slice(&flags_for(&device, false).to_be_bytes());
                if !h.no_zeroes {
                    reply.extend_from_slice(&[0u8; 124]);
                }
                start(&mut sock, &reply, &server, &name, &handle).await?;
                let meta = h.meta.as_deref() == Some(name.as_str());
                let session = Session { server: server.clone(), name, device, handle, structured: h.structured, meta };
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
                let names = tokio::task::spawn_blocking(move || exports.list()).await.unwrap_or_default();
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
                    open(&server, &name).await.map(|(d, h)| (d, Some(h)))
                } else {
                    // The policy asks the catalog: never on an async worker.
                    let (exports, n) = (server.exports.clone(), name.clone());
                    tokio::task::spawn_blocking(move || exports.open(&n))
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
                    Some(handle) => {
                        start(&mut sock, &out, &server, &name, &handle).await?;
                        let meta = h.meta.as_deref() == Some(name.as_str());
                        let session =
                            Session { server: server.clone(), name, device, handle, structured: h.structured, meta };
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
async fn open(server: &Arc<Server>, name: &str) -> Result<(Device, crate::registry::Handle), Refusal> {
    let handle = server.registry.register(name, &server.shutdown);
    let exports = server.exports.clone();
    let n = name.to_string();
    let opened = tokio::task::spawn_blocking(move || exports.open(&n))
        .await
        .unwrap_or_else(|_| Err(Refusal::Policy("internal error".into())));
    match opened {
        Ok(d) => Ok((d, handle)),
        Err(r) => {
            server.registry.unregister(name, handle.id);
            handle.done.set();
            Err(r)
        }
    }
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
