#![allow(clippy::unwrap_used, clippy::expect_used)]
//! TLS-only mode (NBD_OPT_STARTTLS), per-account isolation, revocation, the negotiation time
//! limit and the server-wide payload cap.

mod common;

use common::*;
use nbd::{Client, Device, Exports, Identity, Options, Refusal, Server};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Exports "a1" (account A) and "b1" (account B), both on one disk.
struct Two(Arc<MemDisk>);

fn owner(name: &str) -> Option<&'static str> {
    match name {
        "a1" => Some("A"),
        "b1" => Some("B"),
        _ => None,
    }
}

impl Exports for Two {
    fn list(&self, client: &Client) -> Vec<String> {
        ["a1", "b1"].into_iter().filter(|n| visible(client, n)).map(String::from).collect()
    }
    fn open(&self, client: &Client, name: &str) -> Result<Device, Refusal> {
        if visible(client, name) { Ok(Device::ReadWrite(self.0.clone())) } else { Err(Refusal::Unknown) }
    }
}

fn visible(client: &Client, name: &str) -> bool {
    match client {
        Client::Trusted => owner(name).is_some(),
        Client::Account(a) => owner(name) == Some(a.as_str()),
    }
}

struct Pki {
    ca: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
}

fn pki() -> Pki {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "test CA");
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let ca = p.self_signed(&key).unwrap();
    let issuer = Issuer::new(p, key);
    let skey = KeyPair::generate().unwrap();
    let s = CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&skey, &issuer).unwrap();
    let server = (s.der().clone(), PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(skey.serialize_der())));
    Pki { ca, issuer, server }
}

/// A client certificate for `account` with `serial`.
fn client_cert(pki: &Pki, account: &str, serial: u64) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, account);
    p.serial_number = Some(SerialNumber::from(serial));
    let c = p.signed_by(&key, &pki.issuer).unwrap();
    (c.der().clone(), PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
}

/// The server's TLS: client certificates verified against the CA and `revoked` serials;
/// the account is the certificate's serial's owner as the test recorded it.
fn tls(pki: &Pki, revoked: &[u64], owners: Vec<(CertificateDer<'static>, &'static str, u64)>) -> nbd::Tls {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.der().clone()).unwrap();
    let now = rcgen::date_time_ymd(2024, 1, 1);
    let crl = rcgen::CertificateRevocationListParams {
        this_update: now,
        next_update: rcgen::date_time_ymd(2100, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| rcgen::RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: now,
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&pki.issuer)
    .unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).with_crls([crl.der().clone()]).build().unwrap();
    let config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
    let identify: nbd::Identify = Arc::new(move |der: &[u8]| {
        owners
            .iter()
            .find(|(c, ..)| c.as_ref() == der)
            .map(|(_, a, s)| Identity { account: a.to_string(), credential: s.to_string() })
    });
    nbd::Tls { config: Arc::new(config), identify }
}

struct Up {
    addr: std::net::SocketAddr,
    server: Arc<Server>,
    shutdown: CancellationToken,
}

impl Drop for Up {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn up(options: Options, tls: Option<nbd::Tls>) -> Up {
    let shutdown = CancellationToken::new();
    let server = Server::with_options(Arc::new(Two(MemDisk::new(|_| Duration::ZERO))), shutdown.clone(), options);
    server.set_tls(tls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(nbd::serve(server.clone(), listener));
    Up { addr, server, shutdown }
}

async fn hello<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) {
    let mut h = [0u8; 18];
    s.read_exact(&mut h).await.unwrap();
    assert_eq!(&h[..8], &NBDMAGIC.to_be_bytes());
    s.write_all(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes()).await.unwrap();
}

async fn option<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, opt: u32, data: &[u8]) {
    let mut o = IHAVEOPT.to_be_bytes().to_vec();
    o.extend_from_slice(&opt.to_be_bytes());
    o.extend_from_slice(&(data.len() as u32).to_be_bytes());
    o.extend_from_slice(data);
    s.write_all(&o).await.unwrap();
}

/// One option reply: (kind, data).
async fn opt_reply<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<(u32, Vec<u8>)> {
    let mut h = [0u8; 20];
    s.read_exact(&mut h).await?;
    assert_eq!(&h[..8], &OPT_REPLY_MAGIC.to_be_bytes());
    let kind = u32::from_be_bytes(h[12..16].try_into().unwrap());
    let mut d = vec![0u8; u32::from_be_bytes(h[16..20].try_into().unwrap()) as usize];
    s.read_exact(&mut d).await?;
    Ok((kind, d))
}

/// NBD_OPT_LIST: the names offered.
async fn list<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> Vec<String> {
    option(s, OPT_LIST, &[]).await;
    let mut names = Vec::new();
    loop {
        let (kind, d) = opt_reply(s).await.unwrap();
        if kind == REP_ACK {
            return names;
        }
        assert_eq!(kind, REP_SERVER);
        names.push(String::from_utf8(d[4..].to_vec()).unwrap());
    }
}

/// NBD_OPT_GO for `name`: the final reply kind.
async fn go<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, name: &str) -> u32 {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&0u16.to_be_bytes());
    option(s, OPT_GO, &d).await;
    loop {
        let (kind, _) = opt_reply(s).await.unwrap();
        if kind != REP_INFO {
            return kind;
        }
    }
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Connect, STARTTLS, handshake with `cert` (if any).
async fn starttls(
    addr: std::net::SocketAddr,
    pki: &Pki,
    cert: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> std::io::Result<Tls> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    hello(&mut s).await;
    option(&mut s, OPT_STARTTLS, &[]).await;
    assert_eq!(opt_reply(&mut s).await?.0, REP_ACK);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.der().clone()).unwrap();
    let b = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match cert {
        Some((c, k)) => b.with_client_auth_cert(vec![c], k).unwrap(),
        None => b.with_no_client_auth(),
    };
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), s)
        .await?;
    // TLS 1.3 reports a refused client certificate only on the first read: list to see it.
    option(&mut tls, OPT_LIST, &[]).await;
    opt_reply(&mut tls).await.map(|_| ())?;
    while opt_reply(&mut tls).await?.0 != REP_ACK {}
    Ok(tls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_only_mode_refuses_options_before_starttls_and_closes_on_export_name() {
    let pki = pki();
    let srv = up(Options::default(), Some(tls(&pki, &[], Vec::new()))).await;
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    hello(&mut s).await;
    for opt in [OPT_LIST, OPT_STRUCTURED_REPLY, OPT_INFO, OPT_GO, 99] {
        option(&mut s, opt, &[]).await;
        assert_eq!(opt_reply(&mut s).await.unwrap().0, REP_ERR_TLS_REQD, "option {opt}");
    }
    option(&mut s, OPT_STARTTLS, b"x").await;
    assert_eq!(opt_reply(&mut s).await.unwrap().0, REP_ERR_INVALID);
    option(&mut s, OPT_EXPORT_NAME, b"a1").await;
    let mut b = [0u8; 1];
    assert_eq!(s.read(&mut b).await.unwrap(), 0, "NBD_OPT_EXPORT_NAME before TLS closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_sees_and_opens_only_its_exports_over_tls() {
    let pki = pki();
    let a = client_cert(&pki, "A", 10);
    let b = client_cert(&pki, "B", 11);
    let srv = up(Options::default(), Some(tls(&pki, &[], vec![(a.0.clone(), "A", 10), (b.0.clone(), "B", 11)]))).await;

    let mut ta = starttls(srv.addr, &pki, Some(a)).await.unwrap();
    assert_eq!(list(&mut ta).await, vec!["a1"]);
    option(&mut ta, OPT_STARTTLS, &[]).await;
    assert_eq!(opt_reply(&mut ta).await.unwrap().0, REP_ERR_INVALID, "TLS twice");
    assert_eq!(go(&mut ta, "b1").await, REP_ERR_UNKNOWN, "another account's export does not exist");
    assert_eq!(go(&mut ta, "a1").await, REP_ACK);
    // Transmission runs over TLS: write, then read it back.
    let data = pattern(3);
    let mut w = Request { flags: 0, kind: CMD_WRITE, cookie: 1, offset: 8192, length: 4096 }.encode().to_vec();
    w.extend_from_slice(&data);
    w.extend_from_slice(&Request { flags: 0, kind: CMD_READ, cookie: 2, offset: 8192, length: 4096 }.encode());
    ta.write_all(&w).await.unwrap();
    let mut got = std::collections::HashMap::new();
    for _ in 0..2 {
        let mut r = [0u8; 16];
        ta.read_exact(&mut r).await.unwrap();
        assert_eq!(u32::from_be_bytes(r[4..8].try_into().unwrap()), 0);
        let cookie = u64::from_be_bytes(r[8..].try_into().unwrap());
        let mut d = Vec::new();
        if cookie == 2 {
            d = vec![0u8; 4096];
            ta.read_exact(&mut d).await.unwrap();
        }
        got.insert(cookie, d);
    }
    assert_eq!(got[&2], data);

    let mut tb = starttls(srv.addr, &pki, Some(b)).await.unwrap();
    assert_eq!(list(&mut tb).await, vec!["b1"]);
    assert_eq!(go(&mut tb, "a1").await, REP_ERR_UNKNOWN);

    assert!(starttls(srv.addr, &pki, None).await.is_err(), "no client certificate, no connection");
    let stranger = client_cert(&pki, "C", 12);
    assert!(starttls(srv.addr, &pki, Some(stranger)).await.is_err(), "a certificate naming no account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_refused_and_its_connections_closed() {
    let pki = pki();
    let a = client_cert(&pki, "A", 20);
    let owners = vec![(a.0.clone(), "A", 20)];
    let srv = up(Options::default(), Some(tls(&pki, &[], owners.clone()))).await;
    let mut open = starttls(srv.addr, &pki, Some((a.0.clone(), a.1.clone_key()))).await.unwrap();
    assert_eq!(go(&mut open, "a1").await, REP_ACK);
    while srv.server.registry.count("a1") == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    srv.server.set_tls(Some(tls(&pki, &[20], owners)));
    let registry = srv.server.registry.clone();
    let closed = tokio::task::spawn_blocking(move || registry.revoke_credential("20", Duration::from_secs(5)));
    assert_eq!(closed.await.unwrap(), 1);
    let mut b = [0u8; 1];
    assert_eq!(open.read(&mut b).await.unwrap_or(0), 0, "the open connection was closed");
    assert!(starttls(srv.addr, &pki, Some(a)).await.is_err(), "the revoked certificate is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_revoked_between_handshake_and_open_cannot_open() {
    let pki = pki();
    let a = client_cert(&pki, "A", 21);
    let srv = up(Options::default(), Some(tls(&pki, &[], vec![(a.0.clone(), "A", 21)]))).await;
    // The handshake is done (and LIST answered) before the revocation; GO comes after it.
    let mut late = starttls(srv.addr, &pki, Some(a)).await.unwrap();
    let registry = srv.server.registry.clone();
    let closed = tokio::task::spawn_blocking(move || registry.revoke_credential("21", Duration::from_secs(5)));
    assert_eq!(closed.await.unwrap(), 0, "nothing was open yet");
    assert_ne!(go(&mut late, "a1").await, REP_ACK, "the export is refused");
    assert_eq!(srv.server.registry.count("a1"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_listener_does_not_offer_tls_and_sees_everything() {
    let srv = up(Options::default(), None).await;
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    hello(&mut s).await;
    option(&mut s, OPT_STARTTLS, &[]).await;
    assert_eq!(opt_reply(&mut s).await.unwrap().0, REP_ERR_UNSUP);
    assert_eq!(list(&mut s).await, vec!["a1", "b1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_negotiation_is_closed_after_the_time_limit() {
    let options = Options { negotiation_timeout: Duration::from_millis(300), ..Options::default() };
    let pki = pki();
    for tls in [None, Some(tls(&pki, &[], Vec::new()))] {
        let srv = up(options.clone(), tls).await;
        let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
        let t = Instant::now();
        let mut h = [0u8; 18];
        s.read_exact(&mut h).await.unwrap();
        // Silent after the greeting: closed by the server, not by us.
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await.expect("closed in time");
        assert_eq!(n.unwrap_or(0), 0);
        assert!(t.elapsed() >= Duration::from_millis(250), "{:?}", t.elapsed());
    }
}

/// Connects from `source` (any 127.0.0.0/8 address) and says whether the server greets (true)
/// or closes at once (false).
async fn greeted(addr: std::net::SocketAddr, source: &str) -> (bool, tokio::net::TcpStream) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    let mut h = [0u8; 18];
    let ok = matches!(tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut h)).await, Ok(Ok(_)));
    (ok, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_caps_are_closed_at_accept() {
    let options = Options { max_connections: 3, max_connections_per_peer: 2, ..Options::default() };
    let srv = up(options, None).await;
    let (a1, _k1) = greeted(srv.addr, "127.0.0.1").await;
    let (a2, k2) = greeted(srv.addr, "127.0.0.1").await;
    assert!(a1 && a2);
    let (a3, _) = greeted(srv.addr, "127.0.0.1").await;
    assert!(!a3, "a third connection from one address is past the per-peer cap");
    let (b1, _k3) = greeted(srv.addr, "127.0.0.2").await;
    assert!(b1, "another address still gets in");
    let (c1, _) = greeted(srv.addr, "127.0.0.3").await;
    assert!(!c1, "past the overall cap");
    assert_eq!(srv.server.open_connections(), 3);
    // A connection that ends gives its place back.
    drop(k2);
    let t = Instant::now();
    while srv.server.open_connections() > 2 && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (again, _k4) = greeted(srv.addr, "127.0.0.1").await;
    assert!(again);
}

#[test]
fn clients_that_do_not_read_replies_stall_only_themselves() {
    const CAP_KIB: u64 = 4 * 1024;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let options = Options { reply_memory_kib: CAP_KIB, ..Options::default() };
    let srv = rt.block_on(up(options, None));
    // Two greedy clients: 64 reads of 1 MiB each, replies never read.
    let greedy: Vec<_> = (0..2)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(srv.addr).unwrap();
            handshake_export(&mut s, "a1");
            for i in 0..64 {
                send(&mut s, CMD_READ, i, 0, 1 << 20, &[]);
            }
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let held = srv.server.payload_in_flight_kib();
    assert!(held <= CAP_KIB + 2 * 1024, "{held} KiB held");
    // Another client still gets its reads answered.
    let mut s = std::net::TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    handshake_export(&mut s, "b1");
    let mut d = vec![0u8; 1 << 20];
    for i in 0..8 {
        send(&mut s, CMD_READ, 100 + i, 0, 1 << 20, &[]);
        assert_eq!(reply(&mut s), (100 + i, 0));
        s.read_exact(&mut d).unwrap();
    }
    drop(greedy);
    drop(srv);
    rt.shutdown_timeout(Duration::from_secs(10));
}

/// Fixed newstyle, NBD_OPT_EXPORT_NAME `name`, blocking.
fn handshake_export(s: &mut std::net::TcpStream, name: &str) {
    let mut hello = [0u8; 18];
    s.read_exact(&mut hello).unwrap();
    s.write_all(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes()).unwrap();
    let mut opt = IHAVEOPT.to_be_bytes().to_vec();
    opt.extend_from_slice(&OPT_EXPORT_NAME.to_be_bytes());
    opt.extend_from_slice(&(name.len() as u32).to_be_bytes());
    opt.extend_from_slice(name.as_bytes());
    s.write_all(&opt).unwrap();
    let mut info = [0u8; 10];
    s.read_exact(&mut info).unwrap();
}
