#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The transmission phase against an in-memory disk that can be made slow: replies out of
//! order, pipelining, the per-connection thread limit, revocation against a held-back
//! payload, a client that stops reading, and one that half-closes with requests in flight.

mod common;

use common::*;
use std::io::Read;
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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

/// A disk that serves I/O together (`reads_together`), its first `blocks` blocks holding
/// `pattern(i)`, and a server on it.
fn batching_disk(blocks: u64) -> (std::sync::Arc<MemDisk>, Running) {
    let disk = MemDisk::new(|_| Duration::ZERO);
    disk.together.store(true, Ordering::SeqCst);
    for i in 0..blocks {
        let at = (i * 4096) as usize;
        disk.data.lock().unwrap()[at..at + 4096].copy_from_slice(&pattern(i));
    }
    let srv = start(disk.clone());
    (disk, srv)
}

/// A burst of reads on a device that serves reads together is answered from batches: every
/// reply matches its cookie and data, and a bad or odd-sized read in the burst gets its own
/// answer without failing the others.
#[test]
fn a_burst_of_reads_is_served_in_batches_each_reply_its_own() {
    let (disk, srv) = batching_disk(64);
    let mut s = connect(srv.addr);
    // One write carries the whole burst, so the reader finds it received at once.
    let mut burst = Vec::new();
    for i in 0..40u64 {
        let (offset, length) = match i {
            7 => (SIZE - 4096, 8192), // past the end: EINVAL
            9 => (100, 1000),         // not on block boundaries
            _ => (i * 4096, 4096),
        };
        burst.extend_from_slice(&Request { flags: 0, kind: CMD_READ, cookie: 3000 + i, offset, length }.encode());
    }
    std::io::Write::write_all(&mut s, &burst).unwrap();
    let mut seen = Vec::new();
    for _ in 0..40 {
        let (cookie, err) = reply(&mut s);
        let i = cookie - 3000;
        match i {
            7 => assert_eq!(err, EINVAL, "the read past the end fails alone"),
            9 => {
                assert_eq!(err, 0);
                let mut data = vec![0u8; 1000];
                s.read_exact(&mut data).unwrap();
                assert_eq!(data, pattern(0)[100..1100]);
            }
            _ => {
                assert_eq!(err, 0);
                let mut data = vec![0u8; 4096];
                s.read_exact(&mut data).unwrap();
                assert_eq!(data, pattern(i), "cookie {cookie} carries its own block");
            }
        }
        seen.push(cookie);
    }
    seen.sort();
    assert_eq!(seen, (3000..3040).collect::<Vec<_>>());
    assert!(disk.largest_batch.load(Ordering::SeqCst) > 1, "the burst was served in batches");
}

/// Writes whose payload is all received batch with the reads around them: every write
/// lands, every read answers its own cookie, and a write past the end fails alone.
#[test]
fn a_burst_of_writes_and_reads_is_served_in_batches() {
    let (disk, srv) = batching_disk(8);
    let mut s = connect(srv.addr);
    let mut burst = Vec::new();
    for i in 0..12u64 {
        let req = |kind, cookie, offset| Request { flags: 0, kind, cookie, offset, length: 4096 }.encode();
        burst.extend_from_slice(&req(CMD_READ, 4000 + i, (i % 8) * 4096));
        let offset = if i == 5 { SIZE } else { (100 + i) * 4096 }; // 5: past the end
        burst.extend_from_slice(&req(CMD_WRITE, 5000 + i, offset));
        burst.extend_from_slice(&pattern(100 + i));
    }
    std::io::Write::write_all(&mut s, &burst).unwrap();
    let mut seen = Vec::new();
    for _ in 0..24 {
        let (cookie, err) = reply(&mut s);
        if cookie >= 5000 {
            assert_eq!(err, if cookie == 5005 { ENOSPC } else { 0 }, "write {cookie}");
        } else {
            assert_eq!(err, 0);
            let mut data = vec![0u8; 4096];
            s.read_exact(&mut data).unwrap();
            assert_eq!(data, pattern((cookie - 4000) % 8), "cookie {cookie} carries its own block");
        }
        seen.push(cookie);
    }
    seen.sort();
    let want: Vec<u64> = (4000..4012).chain(5000..5012).collect();
    assert_eq!(seen, want);
    let data = disk.data.lock().unwrap();
    for i in (0..12u64).filter(|i| *i != 5) {
        let at = ((100 + i) * 4096) as usize;
        assert_eq!(data[at..at + 4096], pattern(100 + i)[..], "write {i} landed");
    }
    assert!(disk.largest_write_batch.load(Ordering::SeqCst) > 1, "writes were batched");
}

/// Requests sent one at a time settle on one thread: after a streak of lone requests the
/// reader runs each itself instead of waking another thread to read on.
#[test]
fn requests_one_at_a_time_are_run_by_the_reader() {
    let disk = MemDisk::new(|_| Duration::ZERO);
    let srv = start(disk.clone());
    let mut s = connect(srv.addr);
    let mut data = vec![0u8; 4096];
    for i in 0..256u64 {
        send(&mut s, CMD_READ, i, (i % 64) * 4096, 4096, &[]);
        assert_eq!(reply(&mut s), (i, 0));
        s.read_exact(&mut data).unwrap();
    }
    // (A thread handing on may give its budget back just after the client sees its reply, so
    // the streak may take a few tries to form: only the last reads are looked at.)
    assert!(ran_on_one_thread(&disk, 32), "the last 32 of 256 lone reads ran on one thread");
}

/// Whether the disk's last `n` calls all ran on one thread.
fn ran_on_one_thread(disk: &MemDisk, n: usize) -> bool {
    let callers = disk.callers.lock().unwrap();
    let last = &callers[callers.len().saturating_sub(n)..];
    last.iter().all(|t| *t == last[0])
}

/// A client that turns out to have a second request in flight while the reader runs a lone
/// one puts the connection back to reading on: a fast request no longer waits for a slow one.
#[test]
fn a_second_request_in_flight_ends_the_readers_run_alone() {
    // Offset 0 is slow; everything else is fast.
    let disk = MemDisk::new(|off| if off == 0 { Duration::from_millis(300) } else { Duration::ZERO });
    let srv = start(disk.clone());
    let mut s = connect(srv.addr);
    let mut data = vec![0u8; 4096];
    for i in 0..256u64 {
        send(&mut s, CMD_READ, i, 4096, 4096, &[]);
        assert_eq!(reply(&mut s), (i, 0));
        s.read_exact(&mut data).unwrap();
    }
    assert!(ran_on_one_thread(&disk, 32), "the reader runs the lone requests itself");
    let mut order = Vec::new();
    for round in 0..2u64 {
        send(&mut s, CMD_READ, 100 + round, 0, 4096, &[]); // slow
        std::thread::sleep(Duration::from_millis(50));
        send(&mut s, CMD_READ, 200 + round, 8192, 4096, &[]); // fast, sent while the slow one runs
        for _ in 0..2 {
            let (cookie, err) = reply(&mut s);
            assert_eq!(err, 0);
            s.read_exact(&mut data).unwrap();
            order.push(cookie);
        }
    }
    // The first round shows the connection that the client has two in flight (its fast read
    // may wait for the slow one, once); from then on the fast read overtakes.
    assert_eq!(&order[2..], &[201, 101], "reply order {order:?}");
}

#[test]
fn threads_grow_with_the_queue_and_stop_at_the_limit() {
    let disk = MemDisk::new(|_| Duration::from_millis(40));
    let srv = start(disk.clone());
    read_burst(&mut connect(srv.addr), 100);
    let most = disk.most.load(Ordering::SeqCst);
    assert!((16..=64).contains(&most), "{most} requests ran at once; expected between 16 and the limit of 64");
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
fn a_client_that_disconnects_without_reading_its_replies_is_closed_after_the_drain() {
    let disk = MemDisk::new(|_| Duration::ZERO);
    let srv = start(disk);
    let mut s = connect(srv.addr);
    // Far more reply data than the two socket buffers hold, never read, with threads to spare
    // to read the disconnect.
    for i in 0..4 {
        send(&mut s, CMD_READ, i, 0, SIZE as u32, &[]);
    }
    send(&mut s, CMD_DISC, 99, 0, 0, &[]);
    let t = Instant::now();
    while srv.server.registry.count("d") > 0 && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(srv.server.registry.count("d"), 0, "the connection must not wait for ever");
    assert!(t.elapsed() < Duration::from_secs(12), "closed after {:?}", t.elapsed());
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

/// Bursts of reads with nothing behind them are run by the reader that read them, which
/// keeps its turn: every burst after the first runs on one thread, each reply its own.
#[test]
fn a_batch_of_reads_with_nothing_behind_it_is_run_by_the_reader() {
    let (disk, srv) = batching_disk(64);
    let mut s = connect(srv.addr);
    let mut data = vec![0u8; 4096];
    for burst in 0..20u64 {
        let mut out = Vec::new();
        for i in 0..8u64 {
            let req = Request { flags: 0, kind: CMD_READ, cookie: burst * 100 + i, offset: i * 4096, length: 4096 };
            out.extend_from_slice(&req.encode());
        }
        std::io::Write::write_all(&mut s, &out).unwrap();
        let mut seen = Vec::new();
        for _ in 0..8 {
            let (cookie, err) = reply(&mut s);
            assert_eq!(err, 0);
            s.read_exact(&mut data).unwrap();
            assert_eq!(data, pattern(cookie % 100), "cookie {cookie} carries its own block");
            seen.push(cookie);
        }
        seen.sort();
        assert_eq!(seen, (burst * 100..burst * 100 + 8).collect::<Vec<_>>());
    }
    assert!(disk.largest_batch.load(Ordering::SeqCst) > 1, "the bursts were served in batches");
    assert!(ran_on_one_thread(&disk, 80), "the last 10 bursts ran on the reader's thread");
}
