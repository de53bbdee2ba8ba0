//! Small primitives for a connection's threads: the turn to read the socket, passed from
//! thread to thread (waiting for it can time out, so idle threads can retire), the byte
//! budget that bounds the payload in flight, and the adaptive polling window of a reader
//! running lone requests.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct TurnState<T> {
    taken: bool,
    waiting: usize,
    /// Work the reader found already received and handed on, so that a burst of requests
    /// does not wait for one thread after another to wake and read the next.
    queue: VecDeque<T>,
}

/// The right to read the connection (one holder at a time), and the work it hands on.
pub(crate) struct Turn<T> {
    state: Mutex<TurnState<T>>,
    cv: Condvar,
}

impl<T> Default for Turn<T> {
    fn default() -> Self {
        Turn { state: Mutex::new(TurnState { taken: false, waiting: 0, queue: VecDeque::new() }), cv: Condvar::new() }
    }
}

pub(crate) struct TurnGuard<'a, T>(&'a Turn<T>);

impl<T> Drop for TurnGuard<'_, T> {
    fn drop(&mut self) {
        let mut s = lock(&self.0.state);
        s.taken = false;
        // Waking costs a system call; with nobody waiting there is nobody to wake.
        if s.waiting > 0 {
            self.0.cv.notify_one();
        }
    }
}

/// What a thread gets to do next.
pub(crate) enum Next<'a, T> {
    /// Read the connection.
    Read(TurnGuard<'a, T>),
    /// Run what the reader handed on.
    Run(T),
}

impl<T> Turn<T> {
    /// Wait for handed-on work or the turn to read, work first. Each time `idle` passes with
    /// neither, `may_leave` is asked whether this thread may stop waiting (and is then
    /// counted out); if so, `None`.
    pub fn take(&self, idle: Duration, may_leave: impl Fn() -> bool) -> Option<Next<'_, T>> {
        let mut s = lock(&self.state);
        s.waiting += 1;
        loop {
            if let Some(work) = s.queue.pop_front() {
                s.waiting -= 1;
                return Some(Next::Run(work));
            }
            if !s.taken {
                s.taken = true;
                s.waiting -= 1;
                return Some(Next::Read(TurnGuard(self)));
            }
            let (g, timeout) = self.cv.wait_timeout(s, idle).unwrap_or_else(|p| p.into_inner());
            s = g;
            if timeout.timed_out() && s.taken && s.queue.is_empty() && may_leave() {
                s.waiting -= 1;
                return None;
            }
        }
    }

    /// Hand work on to waiting threads; returns how many more threads it takes for all the
    /// work and the turn to read to have one each (one left to read keeps a burst of work
    /// from leaving the connection unread, e.g. a disconnect behind it).
    pub fn hand_on(&self, work: Vec<T>) -> usize {
        let mut s = lock(&self.state);
        let n = work.len();
        s.queue.extend(work);
        for _ in 0..n.min(s.waiting) {
            self.cv.notify_one();
        }
        (s.queue.len() + 1).saturating_sub(s.waiting)
    }

    /// Threads waiting for work or the turn now.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        lock(&self.state).waiting
    }
}

/// How long a reader running lone requests polls its socket before sleeping in `recv`, in
/// the manner of qemu's adaptive polling (`util/aio-posix.c`): the window starts at zero;
/// a request that came after the reader went to sleep, but within the limit, doubles it (from
/// 4 µs); one that came later than the limit halves it; one that came while polling keeps it.
/// So a client that answers each reply at once is met by a polling reader, and an idle or
/// slow one costs no CPU.
#[derive(Debug)]
pub(crate) struct Poll {
    window: Duration,
    max: Duration,
}

impl Poll {
    const START: Duration = Duration::from_micros(4);

    /// The longest window a caller may ask for.
    const MAX: Duration = Duration::from_millis(1);

    /// A window of at most `max` (at most 1 ms; below 4 µs it never polls).
    pub fn new(max: Duration) -> Poll {
        Poll { window: Duration::ZERO, max: max.min(Self::MAX) }
    }

    /// How long to poll now.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Learn from one wait: `polled` whether the request came while polling, `waited` how
    /// long it took to come in all.
    pub fn learn(&mut self, polled: bool, waited: Duration) {
        if polled {
            return;
        }
        self.window =
            if waited <= self.max { (self.window * 2).max(Self::START).min(self.max) } else { self.window / 2 };
        if self.window < Self::START {
            self.window = Duration::ZERO;
        }
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

    /// Take `kib` if it is free now.
    pub fn try_acquire(&self, kib: u64) -> bool {
        let mut g = lock(&self.state);
        if g.0 < kib {
            return false;
        }
        g.0 -= kib;
        true
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

/// KiB of payload held across the whole server. Unlike [`Budget`] it may be overdrawn: a
/// connection holding none of it may always take one request, so connections whose clients
/// do not read their replies can exhaust it without stopping any other connection.
pub(crate) struct Pool {
    /// Free KiB (below zero while overdrawn) and the number of threads waiting for some.
    state: Mutex<(i64, usize)>,
    capacity: i64,
    cv: Condvar,
}

impl Pool {
    pub fn new(kib: u64) -> Pool {
        let capacity = i64::try_from(kib).unwrap_or(i64::MAX);
        Pool { state: Mutex::new((capacity, 0)), capacity, cv: Condvar::new() }
    }

    /// Take `kib` if it is free, or if the caller holds none (`held == 0`) whatever is free.
    pub fn try_acquire(&self, kib: u64, held: u64) -> bool {
        let mut g = lock(&self.state);
        let kib = i64::try_from(kib).unwrap_or(i64::MAX);
        if g.0 >= kib || held == 0 {
            g.0 -= kib;
            return true;
        }
        false
    }

    /// Take `kib` as [`Pool::try_acquire`] would, waiting for releases while it cannot;
    /// `false` once `stop` says so. `held` reports what the caller holds now.
    pub fn acquire(&self, kib: u64, held: impl Fn() -> u64, stop: impl Fn() -> bool) -> bool {
        let want = i64::try_from(kib).unwrap_or(i64::MAX);
        let mut g = lock(&self.state);
        while g.0 < want && held() > 0 {
            if stop() {
                return false;
            }
            g.1 += 1;
            g = self.cv.wait_timeout(g, Duration::from_millis(50)).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
            g.1 -= 1;
        }
        g.0 -= want;
        true
    }

    pub fn release(&self, kib: u64) {
        let mut g = lock(&self.state);
        g.0 += i64::try_from(kib).unwrap_or(i64::MAX);
        if g.1 > 0 {
            self.cv.notify_all();
        }
    }

    /// KiB taken now (more than the capacity while overdrawn).
    pub fn in_use(&self) -> u64 {
        u64::try_from(self.capacity - lock(&self.state).0).unwrap_or(0)
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
        let turn = Arc::new(Turn::<()>::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (turn, inside, most) = (turn.clone(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let Some(Next::Read(_g)) = turn.take(Duration::from_secs(10), || false) else {
                            panic!("nothing was handed on")
                        };
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
        let turn = Turn::<u32>::default();
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
    fn handed_on_work_comes_before_the_turn_and_wakes_waiters() {
        let turn = Arc::new(Turn::<u32>::default());
        let held = turn.take(Duration::from_secs(1), || false);
        assert!(matches!(held, Some(Next::Read(_))));
        assert_eq!(turn.hand_on(Vec::new()), 1, "nobody waiting: one thread wanted to read on");
        let t2 = turn.clone();
        let waiter = std::thread::spawn(move || match t2.take(Duration::from_secs(10), || false) {
            Some(Next::Run(w)) => w,
            _ => 0,
        });
        while turn.waiting() == 0 {
            std::thread::yield_now();
        }
        assert_eq!(turn.hand_on(Vec::new()), 0, "the waiter will read on");
        assert_eq!(turn.hand_on(vec![7, 8]), 2, "one waiter for two pieces of work and the turn");
        assert_eq!(waiter.join().unwrap(), 7);
        drop(held);
        assert!(matches!(turn.take(Duration::from_secs(1), || false), Some(Next::Run(8))), "work before the turn");
        assert!(matches!(turn.take(Duration::from_secs(1), || false), Some(Next::Read(_))));
    }

    #[test]
    fn the_polling_window_grows_with_a_quick_client_and_shrinks_with_a_slow_one() {
        let us = Duration::from_micros;
        let mut p = Poll::new(us(32));
        assert_eq!(p.window(), Duration::ZERO, "nobody polls before a client has shown its pace");
        p.learn(false, us(15));
        assert_eq!(p.window(), us(4));
        p.learn(false, us(15));
        p.learn(false, us(15));
        assert_eq!(p.window(), us(16));
        p.learn(true, us(12));
        assert_eq!(p.window(), us(16), "a request met while polling keeps the window");
        p.learn(false, us(20));
        p.learn(false, us(20));
        assert_eq!(p.window(), us(32), "never past the limit");
        p.learn(false, us(5_000));
        assert_eq!(p.window(), us(16));
        for _ in 0..3 {
            p.learn(false, us(5_000));
        }
        assert_eq!(p.window(), Duration::ZERO, "a slow client costs no polling");
        let mut off = Poll::new(Duration::ZERO);
        off.learn(false, Duration::ZERO);
        assert_eq!(off.window(), Duration::ZERO, "a limit of 0 never polls");
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

    #[test]
    fn the_pool_lets_an_empty_handed_caller_overdraw_and_makes_others_wait() {
        let p = Arc::new(Pool::new(10));
        assert!(p.try_acquire(8, 0));
        assert!(!p.try_acquire(5, 8), "a holder waits when the pool is short");
        assert!(p.try_acquire(32, 0), "one holding nothing may always take one request");
        assert_eq!(p.in_use(), 40);
        let p2 = p.clone();
        let waiter = std::thread::spawn(move || p2.acquire(5, || 3, || false));
        std::thread::sleep(Duration::from_millis(20));
        p.release(32);
        p.release(8);
        assert!(waiter.join().unwrap());
        assert_eq!(p.in_use(), 5);
        assert!(!p.acquire(100, || 5, || true), "gives way to stop");
    }
}
