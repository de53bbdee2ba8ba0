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

/// Submission-queue entries per thread's ring (the completion queue has twice as many, so
/// it cannot overflow: at most this many reads are in flight).
const ENTRIES: u32 = 64;

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

/// Run every transfer on `file` (opened with `O_DIRECT` or not), one result per run, in
/// order. A read past the end of the file is `UnexpectedEof`; a write the file takes nothing
/// of is `WriteZero`.
pub(crate) fn transfer(file: &std::fs::File, runs: &mut [Run<'_>]) -> Vec<io::Result<()>> {
    use std::os::fd::AsRawFd;
    if runs.len() > 1 {
        let done = RING.with(|cell| {
            let mut cell = cell.borrow_mut();
            let ring = cell.get_or_insert_with(|| match IoUring::new(ENTRIES) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::info!(error = %e, "io_uring is not available: data I/O uses pread/pwrite");
                    None
                }
            });
            let out = ring.as_mut().map(|r| submit_all(r, file.as_raw_fd(), runs));
            if let Some(Err(Broken)) = &out {
                // The ring refused a submission: what it took has completed (`submit_all`
                // waited for it); stop using it on this thread.
                *cell = Some(None);
            }
            out
        });
        if let Some(Ok(results)) = done {
            return results;
        }
    }
    runs.iter_mut()
        .map(|r| match &mut r.buf {
            Buf::Read(b) => file.read_exact_at(b, r.offset),
            Buf::Write(b) => file.write_all_at(b, r.offset),
        })
        .collect()
}

/// The ring failed in a way that retrying does not mend; nothing of ours is in flight.
struct Broken;

/// Per run: bytes read so far, and its result once final.
struct Progress {
    done: usize,
    result: Option<io::Result<()>>,
}

fn submit_all(ring: &mut IoUring, fd: RawFd, runs: &mut [Run<'_>]) -> Result<Vec<io::Result<()>>, Broken> {
    let mut state: Vec<Progress> = runs.iter().map(|_| Progress { done: 0, result: None }).collect();
    // Runs still to (re)submit, taken from the back.
    let mut todo: Vec<usize> = (0..runs.len()).rev().collect();
    let mut in_flight = 0usize;
    while !todo.is_empty() || in_flight > 0 {
        let mut pushed = 0usize;
        {
            let mut sq = ring.submission();
            while let Some(&i) = todo.last() {
                let r = &mut runs[i];
                let at = state[i].done;
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
                // returns, which it does only after reaping every completion it submitted.
                if unsafe { sq.push(&entry) }.is_err() {
                    break; // the queue is full: submit this window first
                }
                todo.pop();
                pushed += 1;
            }
        }
        let want = if in_flight + pushed > 0 { 1 } else { 0 };
        match ring.submit_and_wait(want) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EINTR | nix::libc::EAGAIN | nix::libc::EBUSY)) => {}
            Err(e) => {
                // Whatever the kernel took before failing is in flight: wait for it on the
                // completion queue (it fills without our help) before the buffers go back.
                let taken = pushed - ring.submission().len();
                in_flight += taken;
                tracing::warn!(error = %e, "io_uring submission failed: data I/O falls back to pread/pwrite");
                drain(ring, &mut in_flight);
                return Err(Broken);
            }
        }
        // Entries the kernel has not taken yet stay queued for the next call.
        in_flight += pushed - ring.submission().len();
        let completed: Vec<(u64, i32)> = ring.completion().map(|c| (c.user_data(), c.result())).collect();
        for (data, res) in completed {
            in_flight -= 1;
            let i = data as usize;
            let want = runs[i].buf.len();
            let nothing = match runs[i].buf {
                Buf::Read(_) => io::ErrorKind::UnexpectedEof,
                Buf::Write(_) => io::ErrorKind::WriteZero,
            };
            match res {
                e if e == -nix::libc::EAGAIN || e == -nix::libc::EINTR => todo.push(i),
                e if e < 0 => state[i].result = Some(Err(io::Error::from_raw_os_error(-e))),
                0 => state[i].result = Some(Err(nothing.into())),
                n => {
                    state[i].done += n as usize;
                    if state[i].done < want {
                        todo.push(i); // a short read: the rest goes again
                    } else {
                        state[i].result = Some(Ok(()));
                    }
                }
            }
        }
    }
    Ok(state.into_iter().map(|p| p.result.unwrap_or_else(|| Err(io::Error::other("transfer not completed")))).collect())
}

/// Wait, without submitting anything more, until `in_flight` completions have been reaped.
fn drain(ring: &mut IoUring, in_flight: &mut usize) {
    while *in_flight > 0 {
        let n = ring.completion().count();
        *in_flight = in_flight.saturating_sub(n);
        if *in_flight > 0 && ring.submitter().submit_and_wait(1).is_err() {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
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
