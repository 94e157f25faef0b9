//! `Event`, `Condvar`, `Barrier` and `WaitGroup`: waiting for a condition.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::mutex::MutexGuard;
use super::wait::{AsyncWait, Registration, WaitList, Waiter, wait_until};
use crate::runtime::park;

/// A flag that green threads and threads can wait for: `asyncio.Event`.
///
/// [`set`](Event::set) releases everyone waiting at that moment, even if
/// [`clear`](Event::clear) follows at once: a waiter returns when the flag
/// is set, or when it was set at some moment during the wait, as with
/// `asyncio.Event` and `threading.Event`. (Each `set` starts a new
/// generation; a waiter remembers the one it started in.) A wait that
/// begins after such a `set` and `clear` waits for the next `set`.
///
/// Its `Debug` output shows the flag and how many wait now.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use stackful::sync::Event;
///
/// let ready = Arc::new(Event::new());
/// let waiter = {
///     let ready = ready.clone();
///     stackful::spawn(move || { ready.wait(); "saw it" })
/// };
/// ready.set();
/// assert_eq!(waiter.join().unwrap(), "saw it");
/// assert!(ready.is_set());
/// ```
#[derive(Default)]
pub struct Event {
    /// The flag in bit 0; the number of `set` calls (the generation) above.
    state: AtomicU64,
    waiters: WaitList,
}

impl Event {
    /// A new event, not set.
    pub fn new() -> Event {
        Event::default()
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        // The flag, and the next generation: bit 0 set, plus 2.
        let next = |s: u64| Some((s | 1).wrapping_add(2));
        let _ = self
            .state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, next);
        self.waiters.notify_all();
    }

    /// Clears the flag. Waiters released by an earlier [`set`](Event::set)
    /// return all the same.
    pub fn clear(&self) {
        self.state.fetch_and(!1, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.state.load(Ordering::SeqCst) & 1 == 1
    }

    /// Waits until the flag is set, or is set and cleared again meanwhile;
    /// returns at once if it is set. A cancellation point.
    pub fn wait(&self) {
        let _ = self.wait_deadline(None);
    }

    /// Waits at most `timeout`; returns whether the flag was set during
    /// the wait (it may be cleared again by now), or is set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline(Instant::now().checked_add(timeout))
    }

    /// [`wait`](Event::wait) for async code: a future that is ready when
    /// the flag is set, or was set at some moment since this call. It waits
    /// without blocking the thread that polls it, on any executor (or on a
    /// green thread with [`block_on`](crate::block_on)). Dropping it leaves
    /// the line.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use stackful::sync::Event;
    ///
    /// let ready = Arc::new(Event::new());
    /// let setter = ready.clone();
    /// let green = std::thread::spawn(move || stackful::run(|| setter.set()));
    /// futures::executor::block_on(ready.wait_async()); // an async task waits for a green thread
    /// green.join().unwrap();
    /// assert!(ready.is_set());
    /// ```
    pub fn wait_async(&self) -> EventWaitFuture<'_> {
        EventWaitFuture {
            event: self,
            start: self.state.load(Ordering::SeqCst),
            wait: AsyncWait::default(),
        }
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> bool {
        let start = self.state.load(Ordering::SeqCst);
        if start & 1 == 1 {
            return true;
        }
        // Any change but a `clear` is a `set`: the flag, or a generation
        // that moved on.
        let released = || (self.state.load(Ordering::SeqCst) != start).then_some(());
        wait_until(&self.waiters, deadline, released).is_ok()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("is_set", &self.is_set())
            .field("waiters", &self.waiters.len())
            .finish()
    }
}

/// The future of [`Event::wait_async`]: ready once the flag is set, or was
/// set at some moment since `wait_async` was called.
#[must_use = "futures do nothing unless polled"]
pub struct EventWaitFuture<'a> {
    event: &'a Event,
    start: u64,
    wait: AsyncWait,
}

impl Future for EventWaitFuture<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.start & 1 == 1 {
            return Poll::Ready(());
        }
        let (state, start) = (&this.event.state, this.start);
        let released = || (state.load(Ordering::SeqCst) != start).then_some(());
        this.wait.poll(&this.event.waiters, cx, released)
    }
}

impl Drop for EventWaitFuture<'_> {
    fn drop(&mut self) {
        self.wait.finish(&self.event.waiters, false);
    }
}

impl fmt::Debug for EventWaitFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventWaitFuture")
            .field("event", self.event)
            .finish_non_exhaustive()
    }
}

/// A condition variable for [`Mutex`](super::Mutex): `asyncio.Condition`.
///
/// `wait` unlocks the mutex, waits for a notification, and locks it again.
/// Wake-ups may be spurious, so wait in a loop on the condition, or use
/// [`wait_while`](Condvar::wait_while). Its `Debug` output shows how many
/// wait now.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use stackful::sync::{Condvar, Mutex};
///
/// let pair = Arc::new((Mutex::new(false), Condvar::new()));
/// let other = pair.clone();
/// stackful::spawn(move || {
///     *other.0.lock() = true;
///     other.1.notify_one();
/// });
/// let (lock, cvar) = &*pair;
/// let ready = cvar.wait_while(lock.lock(), |ready| !*ready);
/// assert!(*ready);
/// ```
#[derive(Default)]
pub struct Condvar {
    waiters: WaitList,
}

/// Whether [`Condvar::wait_timeout`] returned because of the timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// Whether the wait timed out.
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

impl Condvar {
    /// A new condition variable.
    pub fn new() -> Condvar {
        Condvar::default()
    }

    /// Unlocks, waits for a notification (or a spurious wake-up), relocks.
    /// A cancellation point; if cancelled, the mutex stays unlocked.
    ///
    /// A notification is never lost to a waiter cut short: one that
    /// reached it but that it could not use (it was cancelled, or its
    /// [`timeout`](crate::timeout) expired, while it waited for the
    /// notification or while it relocked the mutex) passes on to the next
    /// waiter, as asyncio's `Condition` does since Python 3.13.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.wait_deadline(guard, None).0
    }

    /// Waits while `condition` holds, relocking between checks.
    pub fn wait_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> MutexGuard<'a, T> {
        while condition(&mut *guard) {
            guard = self.wait(guard);
        }
        guard
    }

    /// As [`wait`](Condvar::wait), for at most `timeout`.
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        self.wait_deadline(guard, Instant::now().checked_add(timeout))
    }

    fn wait_deadline<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        let waiter = Waiter::own();
        let registration = Registration::new(&self.waiters, &waiter);
        let mutex = guard.unlock();
        while !waiter.is_notified() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            park::park(deadline);
        }
        // Whether we were notified is settled as we leave the list: a
        // notification that comes after the deadline but before that counts.
        let notified = registration.leave();
        /// Passes a notification we got on if relocking unwinds (the caller
        /// was cancelled or timed out there), so it is not lost (as Python
        /// fixed in gh-112202).
        struct PassOn<'a>(&'a WaitList);
        impl Drop for PassOn<'_> {
            fn drop(&mut self) {
                self.0.notify_one();
            }
        }
        let pass_on = notified.then(|| PassOn(&self.waiters));
        let guard = mutex.lock();
        std::mem::forget(pass_on);
        (guard, WaitTimeoutResult(!notified))
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) {
        self.waiters.notify_one();
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.waiters.notify_all();
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar")
            .field("waiters", &self.waiters.len())
            .finish()
    }
}

/// Lets `n` parties wait until all of them have arrived: `asyncio.Barrier`.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use stackful::sync::Barrier;
///
/// let barrier = Arc::new(Barrier::new(3));
/// let handles: Vec<_> = (0..3).map(|_| {
///     let b = barrier.clone();
///     stackful::spawn(move || b.wait().is_leader())
/// }).collect();
/// let leaders = stackful::join_all(handles).into_iter().filter(|r| *r.as_ref().unwrap()).count();
/// assert_eq!(leaders, 1);
/// ```
pub struct Barrier {
    parties: usize,
    state: StdMutex<(usize, u64)>,
    waiters: WaitList,
}

/// What [`Barrier::wait`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// Whether this party was the last to arrive (exactly one is).
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl Barrier {
    /// A barrier for `parties` parties (0 behaves like 1).
    pub fn new(parties: usize) -> Barrier {
        Barrier {
            parties: parties.max(1),
            state: StdMutex::new((0, 0)),
            waiters: WaitList::new(),
        }
    }

    /// Waits until all parties have arrived. A cancellation point: a party
    /// cancelled while waiting no longer counts as arrived.
    pub fn wait(&self) -> BarrierWaitResult {
        let generation = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.0 += 1;
            if state.0 == self.parties {
                state.0 = 0;
                state.1 += 1;
                drop(state);
                self.waiters.notify_all();
                return BarrierWaitResult(true);
            }
            state.1
        };
        /// Takes back an arrival if the wait ends early.
        struct Leave<'a>(&'a Barrier, u64);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
                if state.1 == self.1 {
                    state.0 -= 1;
                }
            }
        }
        let leave = Leave(self, generation);
        let passed = || {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            (state.1 != generation).then_some(())
        };
        let _ = wait_until(&self.waiters, None, passed);
        std::mem::forget(leave);
        BarrierWaitResult(false)
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .finish_non_exhaustive()
    }
}

struct WaitGroupInner {
    count: AtomicUsize,
    waiters: WaitList,
}

/// Waits for a group of workers to finish, in crossbeam's shape: each
/// worker holds a clone, dropping it means done, and [`wait`](WaitGroup::wait)
/// returns when every clone is gone. Go's `sync.WaitGroup`.
///
/// # Examples
///
/// ```
/// use stackful::sync::WaitGroup;
///
/// let wg = WaitGroup::new();
/// for _ in 0..4 {
///     let wg = wg.clone();
///     stackful::spawn(move || {
///         stackful::yield_now();
///         drop(wg); // done
///     });
/// }
/// wg.wait(); // all four are done
/// ```
pub struct WaitGroup {
    inner: Arc<WaitGroupInner>,
}

impl WaitGroup {
    /// A group with one member: this handle.
    pub fn new() -> WaitGroup {
        WaitGroup {
            inner: Arc::new(WaitGroupInner {
                count: AtomicUsize::new(1),
                waiters: WaitList::new(),
            }),
        }
    }

    /// Drops this handle and waits until every other one is dropped. A
    /// cancellation point.
    pub fn wait(self) {
        let inner = self.inner.clone();
        drop(self);
        let _ = wait_until(&inner.waiters, None, || {
            (inner.count.load(Ordering::SeqCst) == 0).then_some(())
        });
    }
}

impl Default for WaitGroup {
    fn default() -> Self {
        WaitGroup::new()
    }
}

impl Clone for WaitGroup {
    fn clone(&self) -> Self {
        self.inner.count.fetch_add(1, Ordering::SeqCst);
        WaitGroup {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for WaitGroup {
    fn drop(&mut self) {
        if self.inner.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.waiters.notify_all();
        }
    }
}

impl fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitGroup")
            .field("count", &self.inner.count.load(Ordering::SeqCst))
            .finish()
    }
}
