#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The transmission phase against an in-memory disk that can be made slow: replies out of
//! order, pipelining, the per-connection thread limit, revocation against a held-back
//! payload, and a client that half-closes with requests in flight.

use nbd::proto::*;
use nbd::{Device, Exports, Refusal, Server};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{BlockRead, BlockWrite, Extent, Result};
use tokio_util::sync::CancellationToken;

const SIZE: u64 = 1 << 20;

/// A disk in memory; each call can be delayed by offset, and the most calls ever running at
/// once is recorded.
struct MemDisk {
    data: Mutex<Vec<u8>>,
    delay: Box<dyn Fn(u64) -> Duration + Send + Sync>,
    running: AtomicUsize,
    most: AtomicUsize,
    flushes: AtomicUsize,
}

impl MemDisk {
    fn new(delay: impl Fn(u64) -> Duration + Send + Sync + 'static) -> Arc<MemDisk> {
        Arc::new(MemDisk {
            data: Mutex::new(vec![0; SIZE as usize]),
            delay: Box::new(delay),
            running: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            flushes: AtomicUsize::new(0),
        })
    }

    fn call<T>(&self, offset: u64, f: impl FnOnce() -> T) -> T {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep((self.delay)(offset));
        let out = f();
        self.running.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

impl BlockRead for MemDisk {
    fn size(&self) -> u64 {
        SIZE
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.call(offset, || {
            let d = self.data.lock().unwrap();
            buf.copy_from_slice(&d[offset as usize..offset as usize + buf.len()]);
            Ok(())
        })
    }
    fn block_status(&self, _offset: u64, len: u64) -> Result<Vec<Extent>> {
        Ok(vec![Extent { len, allocated: true }])
    }
}

impl BlockWrite for MemDisk {
    fn write_at(&self, data: &[u8], offset: u64, _fua: bool) -> Result<()> {
        self.call(offset, || {
            self.data.lock().unwrap()[offset as usize..offset as usize + data.len()].copy_from_slice(data);
            Ok(())
        })
    }
    fn flush(&self) -> Result<()> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn trim(&self, offset: u64, len: u64) -> Result<()> {
        self.write_zeroes(offset, len, true)
    }
    fn write_zeroes(&self, offset: u64, len: u64, _may_trim: bool) -> Result<()> {
        self.data.lock().unwrap()[offset as usize..(offset + len) as usize].fill(0);
        Ok(())
    }
}

struct One(Arc<MemDisk>);

impl Exports for One {
    fn list(&self) -> Vec<String> {
        vec!["d".into()]
    }
    fn open(&self, name: &str) -> std::result::Result<Device, Refusal> {
        if name == "d" { Ok(Device::ReadWrite(self.0.clone())) } else { Err(Refusal::Unknown) }
    }
}

struct Running {
    addr: SocketAddr,
    server: Arc<Server>,
    shutdown: CancellationToken,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(10));
        }
    }
}

fn start(disk: Arc<MemDisk>) -> Running {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let shutdown = CancellationToken::new();
    let server = Server::new(Arc::new(One(disk)), shutdown.clone());
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(nbd::serve(server.clone(), listener));
    Running { addr, server, shutdown, rt: Some(rt) }
}

/// Fixed newstyle, no zeroes, NBD_OPT_EXPORT_NAME "d": simple replies.
fn connect(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut hello = [0u8; 18];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(&hello[..8], &NBDMAGIC.to_be_bytes());
    s.write_all(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes()).unwrap();
    let mut opt = IHAVEOPT.to_be_bytes().to_vec();
    opt.extend_from_slice(&OPT_EXPORT_NAME.to_be_bytes());
    opt.extend_from_slice(&1u32.to_be_bytes());
    opt.push(b'd');
    s.write_all(&opt).unwrap();
    let mut info = [0u8; 10];
    s.read_exact(&mut info).unwrap();
    assert_eq!(u64::from_be_bytes(info[..8].try_into().unwrap()), SIZE);
    s
}

fn send(s: &mut TcpStream, kind: u16, cookie: u64, offset: u64, length: u32, payload: &[u8]) {
    let mut out = Request { flags: 0, kind, cookie, offset, length }.encode().to_vec();
    out.extend_from_slice(payload);
    s.write_all(&out).unwrap();
}

/// A simple reply: (cookie, error).
fn reply(s: &mut TcpStream) -> (u64, u32) {
    let mut r = [0u8; 16];
    s.read_exact(&mut r).unwrap();
    assert_eq!(u32::from_be_bytes(r[..4].try_into().unwrap()), SIMPLE_REPLY_MAGIC);
    (u64::from_be_bytes(r[8..].try_into().unwrap()), u32::from_be_bytes(r[4..8].try_into().unwrap()))
}

fn pattern(i: u64) -> Vec<u8> {
    (0..4096u64).map(|j| (i * 31 + j) as u8).collect()
}

#[test]
fn a_fast_reply_overtakes_a_slow_one() {
    let disk = MemDisk::new(|off| if off == 0 { Duration::from_millis(400) } else { Duration::ZERO });
    let srv = start(disk);
    let mut s = connect(srv.addr);
    send(&mut s, CMD_READ, 1, 0, 4096, &[]);
    send(&mut s, CMD_READ, 2, 4096, 4096, &[]);
    let mut buf = vec![0u8; 4096];
    let first = reply(&mut s);
    s.read_exact(&mut buf).unwrap();
    let second = reply(&mut s);
    s.read_exact(&mut buf).unwrap();
    assert_eq!((first, second), ((2, 0), (1, 0)), "the slow read at offset 0 must not hold back the other");
}

#[test]
fn pipelined_writes_and_reads_match_their_cookies() {
    let disk = MemDisk::new(|off| Duration::from_micros((off / 4096 % 7) * 300));
    let srv = start(disk.clone());
    let mut s = connect(srv.addr);
    for i in 0..64 {
        send(&mut s, CMD_WRITE, 1000 + i, i * 4096, 4096, &pattern(i));
    }
    let mut acked: Vec<u64> = (0..64).map(|_| reply(&mut s)).map(|(c, e)| c + 100 * e as u64).collect();
    acked.sort();
    assert_eq!(acked, (1000..1064).collect::<Vec<_>>());
    for i in 0..64 {
        send(&mut s, CMD_READ, 2000 + i, i * 4096, 4096, &[]);
    }
    let mut seen = Vec::new();
    for _ in 0..64 {
        let (cookie, err) = reply(&mut s);
        assert_eq!(err, 0);
        let mut data = vec![0u8; 4096];
        s.read_exact(&mut data).unwrap();
        assert_eq!(data, pattern(cookie - 2000), "cookie {cookie} carries its own block");
        seen.push(cookie);
    }
    seen.sort();
    assert_eq!(seen, (2000..2064).collect::<Vec<_>>());
}

#[test]
fn threads_grow_with_the_queue_and_stop_at_the_limit() {
    let disk = MemDisk::new(|_| Duration::from_millis(40));
    let srv = start(disk.clone());
    let mut s = connect(srv.addr);
    for i in 0..48 {
        send(&mut s, CMD_READ, i, (i % 200) * 4096, 4096, &[]);
    }
    let mut data = vec![0u8; 4096];
    for _ in 0..48 {
        assert_eq!(reply(&mut s).1, 0);
        s.read_exact(&mut data).unwrap();
    }
    let most = disk.most.load(Ordering::SeqCst);
    assert!((8..=16).contains(&most), "{most} requests ran at once; expected between 8 and the limit of 16");
}

#[test]
fn revocation_does_not_wait_for_a_held_back_payload_and_drops_it() {
    let disk = MemDisk::new(|_| Duration::ZERO);
    let srv = start(disk.clone());
    let mut s = connect(srv.addr);
    send(&mut s, CMD_WRITE, 7, 0, 4096, &[0xAB; 100]);
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    assert_eq!(srv.server.registry.revoke("d", Duration::from_secs(10)), 1);
    assert!(t.elapsed() < Duration::from_secs(3), "revoke took {:?}", t.elapsed());
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "no reply for a write whose payload never arrived");
    assert!(disk.data.lock().unwrap()[..100].iter().all(|b| *b == 0), "nothing of it was written");
    assert_eq!(srv.server.registry.count("d"), 0);
    assert!(disk.flushes.load(Ordering::SeqCst) >= 1, "a closing connection flushes");
}

#[test]
fn a_half_closed_client_gets_its_replies_then_the_connection_ends() {
    let disk = MemDisk::new(|_| Duration::from_millis(100));
    let srv = start(disk.clone());
    let mut s = connect(srv.addr);
    for i in 0..4 {
        send(&mut s, CMD_WRITE, i, i * 4096, 4096, &pattern(i));
    }
    s.shutdown(Shutdown::Write).unwrap();
    let mut cookies: Vec<u64> = (0..4).map(|_| reply(&mut s)).map(|(c, e)| c + 100 * e as u64).collect();
    cookies.sort();
    assert_eq!(cookies, vec![0, 1, 2, 3]);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    for i in 0..4u64 {
        assert_eq!(disk.data.lock().unwrap()[(i * 4096) as usize..((i + 1) * 4096) as usize], pattern(i)[..]);
    }
    let t = Instant::now();
    while srv.server.registry.count("d") > 0 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(srv.server.registry.count("d"), 0);
    assert!(disk.flushes.load(Ordering::SeqCst) >= 1);
}
