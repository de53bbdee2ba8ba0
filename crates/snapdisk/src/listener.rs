//! The API's accept loop: HTTP/1.1 connections served by hyper with the limits a public
//! endpoint needs, which `axum::serve` does not set (issue: safe under abuse).
//!
//! - **Time limits.** A connection has `header_timeout` to send a request's headers, and the
//!   same again to start its next request once the previous answer went out (an idle
//!   keep-alive connection is closed then). A request's body must arrive within
//!   `body_timeout` (enforced in `http.rs`).
//! - **Connection caps.** At most `max_connections` open at once, and `max_per_peer` from one
//!   address; beyond that a new connection is closed as soon as it is accepted, before it can
//!   hold a file descriptor for long. The cap is kept below the process's file-descriptor
//!   limit (raised to its hard limit at start) so NBD and the store always have some left.
//! - **Shutdown.** On cancellation the listener closes, open connections finish the request
//!   they are on and close; whatever is still open after `grace` is dropped, so a client
//!   holding a half-sent request cannot keep the process from exiting.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Limits of the API listener; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// To send a request's headers, and to start the next request on a kept-alive connection.
    pub header_timeout: Duration,
    /// To send a request's body (`http.rs`).
    pub body_timeout: Duration,
    /// Open connections at once.
    pub max_connections: usize,
    /// Open connections from one IP address.
    pub max_per_peer: usize,
    /// How long open connections may take to finish after shutdown begins.
    pub grace: Duration,
}

/// Open connections per peer address.
#[derive(Default)]
struct Peers(Mutex<HashMap<IpAddr, usize>>);

impl Peers {
    /// Count one more from `ip` unless that would pass `max`.
    fn admit(&self, ip: IpAddr, max: usize) -> bool {
        let Ok(mut m) = self.0.lock() else { return false };
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn leave(&self, ip: IpAddr) {
        if let Ok(mut m) = self.0.lock()
            && let Some(n) = m.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// Raise the soft limit on open files to the hard limit; returns the limit in force.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                return hard;
            }
            soft
        }
        Err(_) => 1024,
    }
}

/// Serve `router` on `listener` until `shutdown` is cancelled, then drain for at most
/// `limits.grace`.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, shutdown: CancellationToken) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let peers = Arc::new(Peers::default());
    let mut connections = tokio::task::JoinSet::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or the peer gave up: wait a moment, go on.
                    tracing::warn!(error = %e, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "API connection refused: too many open");
            continue;
        };
        if !peers.admit(peer.ip(), limits.max_per_peer) {
            tracing::debug!(%peer, "API connection refused: too many from this address");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let conn = graceful.watch(conn);
        let peers = peers.clone();
        connections.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "API connection ended");
            }
            peers.leave(peer.ip());
            drop(permit);
        });
        // Reap the finished ones so the set holds only open connections.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.grace) => {
            tracing::warn!(grace_ms = limits.grace.as_millis() as u64, "API connections still open after the grace period are dropped");
        }
    }
    // Nothing of a dropped connection may run on while the caller saves state.
    connections.shutdown().await;
}
