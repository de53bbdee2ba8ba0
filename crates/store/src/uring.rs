//! Many block runs read or written at once through io_uring: every run of a batch goes to
//! the disk in one `io_uring_enter`, and the caller sleeps once for all of them, instead of
//! once per run in `pread`/`pwrite`. Each thread keeps a ring of its own. Short transfers
//! and `EAGAIN`/`EINTR` completions are resubmitted for what is left; a batch larger than
//! the submission queue goes in windows. Where io_uring is unavailable (an old kernel, a
//! seccomp filter, the `io_uring_disabled` sysctl) the runs go one after another through
//! `pread`/`pwrite`.
//!
//! Safety: the kernel uses a run's buffer until that run's completion is reaped, so
//! [`transfer`] never returns while anything it submitted is still in flight; the buffers
//! are borrowed for the whole call.

// The one place Snapdisk allows `unsafe`: a submission hands a buffer to the kernel.
#![allow(unsafe_code)]

use io_uring::{IoUring, opcode, types};
use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::FileExt;
use std::time::Duration;

/// Submission-queue entries per thread's ring. At most this many transfers are ever in flight
/// or queued at once, and the completion queue has twice as many slots, so it cannot
/// overflow.
const ENTRIES: u32 = 64;

/// Passes of the submission loop in a row that may make no progress (the kernel refusing
/// entries with `EAGAIN`/`EBUSY`), and times one run may come back `EAGAIN`/`EINTR`, before
/// the ring is given up for `pread`/`pwrite`.
const MAX_STALLS: u32 = 1000;
const MAX_RETRIES: u32 = 100;

thread_local! {
    /// This thread's ring: `None` before the first batch, `Some(None)` where io_uring cannot
    /// be used (so it is tried once per thread, not per batch).
    static RING: RefCell<Option<Option<IoUring>>> = const { RefCell::new(None) };
}

/// One transfer at byte `offset` of the file: fill a buffer from it, or write one to it.
pub(crate) struct Run<'a> {
    pub buf: Buf<'a>,
    pub offset: u64,
}

pub(crate) enum Buf<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl Buf<'_> {
    fn len(&self) -> usize {
        match self {
            Buf::Read(b) => b.len(),
            Buf::Write(b) => b.len(),
        }
    }
}

/// A ring that can serve batches: created, and able to read and write files (`IORING_OP_READ`
/// and `IORING_OP_WRITE` came in Linux 5.6; older kernels create rings without them).
fn new_ring() -> Option<IoUring> {
    let ring = IoUring::new(ENTRIES)
        .map_err(|e| tracing::info!(error = %e, "io_uring is not available: data I/O uses pread/pwrite"))
        .ok()?;
    let mut probe = io_uring::Probe::new();
    let usable = ring.submitter().register_probe(&mut probe).is_ok()
        && probe.is_supported(opcode::Read::CODE)
        && probe.is_supported(opcode::Write::CODE);
    if !usable {
        tracing::info!("io_uring cannot read and write files on this kernel: data I/O uses pread/pwrite");
        return None;
    }
    Some(ring)
}

/// Run every transfer on `file` (opened with `O_DIRECT` or not), one result per run, in
/// order. A read past the end of the file is `UnexpectedEof`; a write the file takes nothing
/// of is `WriteZero`.
pub(crate) fn transfer(file: &std::fs::File, runs: &mut [Run<'_>]) -> Vec<io::Result<()>> {
    use std::os::fd::AsRawFd;
    let mut results: Vec<Option<io::Result<()>>> = runs.iter().map(|_| None).collect();
    if runs.len() > 1 {
        RING.with(|cell| {
            let mut cell = cell.borrow_mut();
            let slot = cell.get_or_insert_with(new_ring);
            if let Some(ring) = slot.as_mut()
                && submit_all(ring, file.as_raw_fd(), runs, &mut results).is_err()
            {
                // The ring failed: nothing of ours is in flight any more (`submit_all` waited
                // for it), and what it never took goes with it. Stop using it on this thread.
                *slot = None;
            }
        });
    }
    // Whatever the ring did not finish (or everything, without one) goes one by one.
    runs.iter_mut()
        .zip(results)
        .map(|(r, done)| {
            done.unwrap_or_else(|| match &mut r.buf {
                Buf::Read(b) => file.read_exact_at(b, r.offset),
                Buf::Write(b) => file.write_all_at(b, r.offset),
            })
        })
        .collect()
}

/// The ring failed in a way that retrying does not mend; nothing of ours is in flight.
struct Broken;

/// Transfers the kernel has taken and not yet completed. Dropped early (a panic), it waits
/// for them, so no buffer goes back to its owner while the kernel still uses it.
struct InFlight<'a> {
    ring: &'a mut IoUring,
    count: usize,
}

impl InFlight<'_> {
    /// Wait, submitting nothing more, until every counted transfer has completed; reaped
    /// completions go to `done(user_data, result)`. Like a blocking `pread`, this waits as
    /// long as the device takes: returning earlier would hand back buffers the kernel uses.
    fn drain(&mut self, mut done: impl FnMut(u64, i32)) {
        while self.count > 0 {
            for c in self.ring.completion() {
                self.count = self.count.saturating_sub(1);
                done(c.user_data(), c.result());
            }
            if self.count == 0 {
                break;
            }
            // SAFETY: `to_submit` is 0: this only waits for completions.
            let waited = unsafe {
                self.ring.submitter().enter::<nix::libc::sigset_t>(0, 1, io_uring::EnterFlags::GETEVENTS.bits(), None)
            };
            if waited.is_err() {
                // Completions still land in the queue without our help; look again shortly.
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.drain(|_, _| {});
    }
}

/// Where each run stands: bytes transferred, times it came back `EAGAIN`/`EINTR`, and the
/// runs still to (re)submit, taken from the back.
struct Progress {
    done: Vec<usize>,
    retries: Vec<u32>,
    todo: Vec<usize>,
}

/// Account for one completion (`data` is the run's index): final, or queued again for what
/// is left (`EAGAIN`, `EINTR`, a short transfer). A run that keeps coming back `EAGAIN` is
/// left unfinished, for `pread`/`pwrite`.
fn complete(data: u64, res: i32, runs: &[Run<'_>], p: &mut Progress, results: &mut [Option<io::Result<()>>]) {
    let Some(i) = usize::try_from(data).ok().filter(|i| *i < runs.len()) else {
        return;
    };
    let nothing = match runs[i].buf {
        Buf::Read(_) => io::ErrorKind::UnexpectedEof,
        Buf::Write(_) => io::ErrorKind::WriteZero,
    };
    match res {
        e if e == -nix::libc::EAGAIN || e == -nix::libc::EINTR => {
            p.retries[i] += 1;
            if p.retries[i] < MAX_RETRIES {
                p.todo.push(i);
            }
        }
        e if e < 0 => results[i] = Some(Err(io::Error::from_raw_os_error(e.saturating_neg()))),
        0 => results[i] = Some(Err(nothing.into())),
        n => {
            p.done[i] += n as usize;
            if p.done[i] < runs[i].buf.len() {
                p.todo.push(i); // a short transfer: the rest goes again
            } else {
                results[i] = Some(Ok(()));
            }
        }
    }
}

/// Run `runs` through `ring`, filling `results` (a run the ring could not finish is left
/// `None`). `Err` when the ring must not be used again; even then nothing submitted is still
/// in flight when this returns.
fn submit_all(
    ring: &mut IoUring,
    fd: RawFd,
    runs: &mut [Run<'_>],
    results: &mut [Option<io::Result<()>>],
) -> Result<(), Broken> {
    // A ring left holding entries or completions (which this function never leaves) is in a
    // state it cannot account for.
    if !ring.submission().is_empty() || !ring.completion().is_empty() {
        return Err(Broken);
    }
    let mut p = Progress { done: vec![0; runs.len()], retries: vec![0; runs.len()], todo: Vec::new() };
    for i in (0..runs.len()).rev() {
        if runs[i].buf.len() == 0 {
            results[i] = Some(Ok(())); // as `read_exact_at` and `write_all_at` answer
        } else {
            p.todo.push(i);
        }
    }
    let mut flight = InFlight { ring, count: 0 };
    let mut stalls = 0u32;
    while !p.todo.is_empty() || flight.count > 0 || !flight.ring.submission().is_empty() {
        {
            // Never more than ENTRIES taken or queued: the completion queue cannot overflow.
            let mut sq = flight.ring.submission();
            while flight.count + sq.len() < ENTRIES as usize
                && let Some(&i) = p.todo.last()
            {
                let r = &mut runs[i];
                let at = p.done[i];
                let offset = r.offset + at as u64;
                let entry = match &mut r.buf {
                    Buf::Read(b) => {
                        let left = &mut b[at..];
                        let len = u32::try_from(left.len()).unwrap_or(u32::MAX);
                        opcode::Read::new(types::Fd(fd), left.as_mut_ptr(), len).offset(offset).build()
                    }
                    Buf::Write(b) => {
                        let left = &b[at..];
                        let len = u32::try_from(left.len()).unwrap_or(u32::MAX);
                        opcode::Write::new(types::Fd(fd), left.as_ptr(), len).offset(offset).build()
                    }
                }
                .user_data(i as u64);
                // SAFETY: the buffer stays borrowed (and unmoved) until this function
                // returns, which it does only after every transfer the kernel took has
                // completed (`InFlight`), and entries it never took die with the ring.
                if unsafe { sq.push(&entry) }.is_err() {
                    break;
                }
                p.todo.pop();
            }
        }
        let queued = flight.ring.submission().len();
        let entered = flight.ring.submit_and_wait(1);
        // What the kernel took is in flight, whatever the call returned.
        let taken = queued.saturating_sub(flight.ring.submission().len());
        flight.count += taken;
        let mut give_up = false;
        match entered {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EINTR | nix::libc::EAGAIN | nix::libc::EBUSY)) => {
                if e.raw_os_error() != Some(nix::libc::EINTR) {
                    std::thread::sleep(Duration::from_micros(100)); // the kernel is short of memory
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "io_uring submission failed: data I/O falls back to pread/pwrite");
                give_up = true;
            }
        }
        let reaped: Vec<(u64, i32)> = flight.ring.completion().map(|c| (c.user_data(), c.result())).collect();
        flight.count = flight.count.saturating_sub(reaped.len());
        stalls = if taken == 0 && reaped.is_empty() { stalls + 1 } else { 0 };
        for (d, r) in reaped {
            complete(d, r, runs, &mut p, results);
        }
        if stalls >= MAX_STALLS {
            tracing::warn!("io_uring makes no progress: data I/O falls back to pread/pwrite");
            give_up = true;
        }
        if give_up {
            // Wait for what the kernel took; what it never took dies with the ring, and
            // every run left unfinished goes through pread/pwrite.
            let mut reaped = Vec::new();
            flight.drain(|d, r| reaped.push((d, r)));
            for (d, r) in reaped {
                complete(d, r, runs, &mut p, results);
            }
            return Err(Broken);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&data).unwrap();
        f.flush().unwrap();
        (f, data)
    }

    #[test]
    fn many_runs_read_what_pread_reads() {
        let (f, data) = file_with(1 << 20);
        let mut bufs: Vec<Vec<u8>> = (0..200).map(|i| vec![0u8; 4096 * (1 + i % 3)]).collect();
        let offsets: Vec<u64> = (0..200u64).map(|i| (i * 37 % 200) * 4096).collect();
        // More runs than the ring has entries: they go in windows.
        let mut runs: Vec<Run> =
            bufs.iter_mut().zip(&offsets).map(|(b, &o)| Run { buf: Buf::Read(b.as_mut_slice()), offset: o }).collect();
        let results = transfer(f.as_file(), &mut runs);
        assert_eq!(results.len(), 200);
        drop(runs);
        for (i, r) in results.iter().enumerate() {
            assert!(r.is_ok(), "run {i}: {r:?}");
            let o = offsets[i] as usize;
            assert_eq!(bufs[i], data[o..o + bufs[i].len()], "run {i}");
        }
    }

    #[test]
    fn a_run_cut_short_by_the_end_of_the_file_fails_alone() {
        let (f, data) = file_with(3 * 4096 + 100);
        let (mut a, mut b, mut c) = (vec![0u8; 4096], vec![0u8; 8192], vec![0u8; 4096]);
        let mut runs = vec![
            Run { buf: Buf::Read(&mut a), offset: 0 },
            Run { buf: Buf::Read(&mut b), offset: 2 * 4096 }, // only 4196 bytes are there
            Run { buf: Buf::Read(&mut c), offset: 4096 },
        ];
        let results = transfer(f.as_file(), &mut runs);
        assert!(results[0].is_ok() && results[2].is_ok());
        assert_eq!(results[1].as_ref().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(a, data[..4096]);
        assert_eq!(c, data[4096..8192]);
    }

    #[test]
    fn writes_and_reads_in_one_batch_land_where_pwrite_would() {
        let (f, mut data) = file_with(64 * 4096);
        let rw = std::fs::OpenOptions::new().read(true).write(true).open(f.path()).unwrap();
        let blocks: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i ^ 0x5a; 4096]).collect();
        // 100 writes (more than the ring holds) to blocks 0..50, each block written twice
        // apart in the batch order is not asked for: distinct blocks only.
        let mut runs: Vec<Run> = blocks
            .iter()
            .take(50)
            .enumerate()
            .map(|(i, b)| Run { buf: Buf::Write(b), offset: i as u64 * 4096 })
            .collect();
        let mut back = vec![0u8; 4096];
        runs.push(Run { buf: Buf::Read(&mut back), offset: 60 * 4096 });
        let results = transfer(&rw, &mut runs);
        drop(runs);
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        assert_eq!(back, data[60 * 4096..61 * 4096]);
        for (i, b) in blocks.iter().take(50).enumerate() {
            data[i * 4096..(i + 1) * 4096].copy_from_slice(b);
        }
        assert_eq!(std::fs::read(f.path()).unwrap(), data);
    }

    #[test]
    fn empty_runs_succeed_as_pread_says() {
        let (f, data) = file_with(8192);
        let (mut a, mut b) = (vec![0u8; 0], vec![0u8; 4096]);
        let mut runs = vec![Run { buf: Buf::Read(&mut a), offset: 4096 }, Run { buf: Buf::Read(&mut b), offset: 0 }];
        let results = transfer(f.as_file(), &mut runs);
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        assert_eq!(b, data[..4096]);
    }

    #[test]
    fn a_bad_descriptor_is_an_error_per_run_not_a_panic() {
        let (f, _) = file_with(8192);
        let (mut a, mut b) = (vec![0u8; 4096], vec![0u8; 4096]);
        let mut runs = vec![Run { buf: Buf::Read(&mut a), offset: 0 }, Run { buf: Buf::Read(&mut b), offset: 4096 }];
        // A file opened for writing only cannot be read: every run gets EBADF.
        let w = std::fs::OpenOptions::new().write(true).open(f.path()).unwrap();
        let results = transfer(&w, &mut runs);
        assert!(results.iter().all(|r| r.as_ref().unwrap_err().raw_os_error() == Some(nix::libc::EBADF)));
    }
}
