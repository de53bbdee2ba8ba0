#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]
//! An in-memory disk that can be made slow, a server on it, and a minimal raw NBD client.

pub use nbd::proto::*;
use nbd::{Client, Device, Exports, Refusal, Server};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{BlockRead, BlockWrite, Extent, Result};
use tokio_util::sync::CancellationToken;

pub const SIZE: u64 = 32 << 20;

/// A disk in memory; each call can be delayed by offset, and the most calls ever running at
/// once is recorded.
pub struct MemDisk {
    pub data: Mutex<Vec<u8>>,
    delay: Box<dyn Fn(u64) -> Duration + Send + Sync>,
    running: AtomicUsize,
    pub most: AtomicUsize,
    pub flushes: AtomicUsize,
    /// Whether it claims to serve reads together (`reads_together`), and the largest batch
    /// `read_many` has been given.
    pub together: std::sync::atomic::AtomicBool,
    pub largest_batch: AtomicUsize,
    pub largest_write_batch: AtomicUsize,
    /// The thread of every read and write call, in order.
    pub callers: Mutex<Vec<std::thread::ThreadId>>,
}

impl MemDisk {
    pub fn new(delay: impl Fn(u64) -> Duration + Send + Sync + 'static) -> Arc<MemDisk> {
        Arc::new(MemDisk {
            data: Mutex::new(vec![0; SIZE as usize]),
            delay: Box::new(delay),
            running: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            flushes: AtomicUsize::new(0),
            together: Default::default(),
            largest_batch: AtomicUsize::new(0),
            largest_write_batch: AtomicUsize::new(0),
            callers: Mutex::new(Vec::new()),
        })
    }

    fn call<T>(&self, offset: u64, f: impl FnOnce() -> T) -> T {
        self.callers.lock().unwrap().push(std::thread::current().id());
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
    fn read_many(&self, reads: &mut [(u64, &mut [u8])]) -> Vec<Result<()>> {
        self.largest_batch.fetch_max(reads.len(), Ordering::SeqCst);
        reads.iter_mut().map(|(offset, buf)| self.read_at(buf, *offset)).collect()
    }
    fn reads_together(&self) -> bool {
        self.together.load(Ordering::SeqCst)
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
    fn write_many(&self, writes: &[(u64, &[u8], bool)]) -> Vec<Result<()>> {
        self.largest_write_batch.fetch_max(writes.len(), Ordering::SeqCst);
        writes.iter().map(|(offset, data, fua)| self.write_at(data, *offset, *fua)).collect()
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
    fn list(&self, _: &Client) -> Vec<String> {
        vec!["d".into()]
    }
    fn open(&self, _: &Client, name: &str) -> std::result::Result<Device, Refusal> {
        if name == "d" { Ok(Device::ReadWrite(self.0.clone())) } else { Err(Refusal::Unknown) }
    }
}

pub struct Running {
    pub addr: SocketAddr,
    pub server: Arc<Server>,
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

pub fn start(disk: Arc<MemDisk>) -> Running {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let shutdown = CancellationToken::new();
    let server = Server::new(Arc::new(One(disk)), shutdown.clone());
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(nbd::serve(server.clone(), listener));
    Running { addr, server, shutdown, rt: Some(rt) }
}

/// Fixed newstyle, no zeroes, NBD_OPT_EXPORT_NAME "d": simple replies.
pub fn connect(addr: SocketAddr) -> TcpStream {
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

pub fn send(s: &mut TcpStream, kind: u16, cookie: u64, offset: u64, length: u32, payload: &[u8]) {
    let mut out = Request { flags: 0, kind, cookie, offset, length }.encode().to_vec();
    out.extend_from_slice(payload);
    s.write_all(&out).unwrap();
}

/// A simple reply: (cookie, error).
pub fn reply(s: &mut TcpStream) -> (u64, u32) {
    let mut r = [0u8; 16];
    s.read_exact(&mut r).unwrap();
    assert_eq!(u32::from_be_bytes(r[..4].try_into().unwrap()), SIMPLE_REPLY_MAGIC);
    (u64::from_be_bytes(r[8..].try_into().unwrap()), u32::from_be_bytes(r[4..8].try_into().unwrap()))
}

pub fn pattern(i: u64) -> Vec<u8> {
    (0..4096u64).map(|j| (i * 31 + j) as u8).collect()
}

/// Send `n` 4 KiB reads at once, then take every reply and its data.
pub fn read_burst(s: &mut TcpStream, n: u64) {
    for i in 0..n {
        send(s, CMD_READ, i, (i % 200) * 4096, 4096, &[]);
    }
    let mut data = vec![0u8; 4096];
    for _ in 0..n {
        assert_eq!(reply(s).1, 0);
        s.read_exact(&mut data).unwrap();
    }
}
