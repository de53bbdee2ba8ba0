//! Two small blocking primitives for a connection's threads: the turn to read the socket,
//! passed from thread to thread (waiting for it can time out, so idle threads can retire),
//! and the byte budget that bounds the payload in flight.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct TurnState {
    taken: bool,
    waiting: usize,
}

/// The right to read the connection: one holder at a time.
#[derive(Default)]
pub(crate) struct Turn {
    state: Mutex<TurnState>,
    cv: Condvar,
}

pub(crate) struct TurnGuard<'a>(&'a Turn);

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        let mut s = lock(&self.0.state);
        s.taken = false;
        // Waking costs a system call; with nobody waiting there is nobody to wake.
        if s.waiting > 0 {
            self.0.cv.notify_one();
        }
    }
}

impl Turn {
    /// Wait for the turn. Each time `idle` passes without it, `may_leave` is asked whether
    /// this thread may stop waiting (and is then counted out); if so, `None`.
    pub fn take(&self, idle: Duration, may_leave: impl Fn() -> bool) -> Option<TurnGuard<'_>> {
        let mut s = lock(&self.state);
        s.waiting += 1;
        while s.taken {
            let (g, timeout) = self.cv.wait_timeout(s, idle).unwrap_or_else(|p| p.into_inner());
            s = g;
            if timeout.timed_out() && s.taken && may_leave() {
                s.waiting -= 1;
                return None;
            }
        }
        s.waiting -= 1;
        s.taken = true;
        Some(TurnGuard(self))
    }

    /// Threads waiting for the turn now.
    pub fn waiting(&self) -> usize {
        lock(&self.state).waiting
    }
}

/// KiB of payload a connection may hold; the reader waits for replies to free some.
pub(crate) struct Budget {
    /// Free KiB and the number of threads waiting for some.
    state: Mutex<(u64, usize)>,
    cv: Condvar,
}

impl Budget {
    pub fn new(kib: u64) -> Budget {
        Budget { state: Mutex::new((kib, 0)), cv: Condvar::new() }
    }

    /// Take `kib`, waiting for replies to give some back; `false` once `stop` says so.
    pub fn acquire(&self, kib: u64, stop: impl Fn() -> bool) -> bool {
        let mut g = lock(&self.state);
        while g.0 < kib {
            if stop() {
                return false;
            }
            g.1 += 1;
            // Timed, so a stop that raced the check above is still seen.
            g = self.cv.wait_timeout(g, Duration::from_millis(50)).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
            g.1 -= 1;
        }
        g.0 -= kib;
        true
    }

    pub fn release(&self, kib: u64) {
        let mut g = lock(&self.state);
        g.0 += kib;
        if g.1 > 0 {
            self.cv.notify_all();
        }
    }

    pub fn wake(&self) {
        let _g = lock(&self.state);
        self.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Instant;

    #[test]
    fn one_reader_at_a_time_and_the_turn_passes_on() {
        let turn = Arc::new(Turn::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (turn, inside, most) = (turn.clone(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _g = turn.take(Duration::from_secs(10), || false).unwrap();
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert_eq!(turn.waiting(), 0);
    }

    #[test]
    fn a_waiter_leaves_only_when_idle_and_allowed() {
        let turn = Turn::default();
        let held = turn.take(Duration::from_secs(1), || false).unwrap();
        let asked = AtomicUsize::new(0);
        let t = Instant::now();
        let got = turn.take(Duration::from_millis(30), || asked.fetch_add(1, Ordering::SeqCst) >= 2);
        assert!(got.is_none());
        assert_eq!(asked.load(Ordering::SeqCst), 3, "asked after each idle period until allowed");
        assert!(t.elapsed() >= Duration::from_millis(90));
        assert_eq!(turn.waiting(), 0);
        drop(held);
        assert!(turn.take(Duration::from_millis(30), || true).is_some(), "a free turn is taken at once");
    }

    #[test]
    fn budget_waits_for_releases_and_gives_way_to_stop() {
        let b = Arc::new(Budget::new(10));
        assert!(b.acquire(8, || false));
        let b2 = b.clone();
        let waiter = std::thread::spawn(move || b2.acquire(5, || false));
        std::thread::sleep(Duration::from_millis(20));
        b.release(8);
        assert!(waiter.join().unwrap());
        let stop = AtomicBool::new(false);
        let t = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(60));
                stop.store(true, Ordering::SeqCst);
            });
            assert!(!b.acquire(100, || stop.load(Ordering::SeqCst)));
        });
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
