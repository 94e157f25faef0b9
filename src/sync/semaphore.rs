//! Semaphores, and the raw semaphore the mutex is built on.
//!
//! # Order of service: eventual fairness
//!
//! Waiters queue first come, first served, and only the one at the front is
//! woken when a permit comes back. A running green thread may still take a
//! free permit before the woken waiter runs ("barging"): that keeps a busy
//! lock from switching green threads on every unlock, which is what makes a
//! contended `Mutex` fast. To bound how long the front waiter can lose such
//! races, a release hands the permit to it directly once it has waited for
//! [`FAIR_AFTER`] (1 ms): no waiter starves. This is parking_lot's policy.
//!
//! The uncontended paths are one or two atomic operations, with no lock and
//! no system call. A waiter that is cancelled (or times out) leaves the
//! queue; if a permit was handed to it meanwhile it passes it on, and if it
//! was the woken one, it wakes the next. Permits are never leaked.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::bridge::AsyncWaker;
use crate::runtime::park::{self, Waker};

/// The most permits a semaphore holds, as in tokio: far more than any use
/// needs, and far enough from `usize::MAX` that the count cannot wrap.
pub(crate) const MAX_PERMITS: usize = usize::MAX >> 3;

/// How long the front waiter may lose races for a permit before one is
/// handed to it directly.
pub(crate) const FAIR_AFTER: Duration = Duration::from_millis(1);

struct Waiter {
    waker: Waker,
    /// A permit was handed over directly.
    granted: AtomicBool,
    since: Instant,
}

/// A counting semaphore with eventual fairness (see the module docs).
pub(crate) struct RawSemaphore {
    permits: AtomicUsize,
    /// Waiters queued; read without the lock by the fast paths.
    queued: AtomicUsize,
    queue: Mutex<VecDeque<Arc<Waiter>>>,
}

impl RawSemaphore {
    pub(crate) const fn new(permits: usize) -> RawSemaphore {
        RawSemaphore {
            permits: AtomicUsize::new(permits),
            queued: AtomicUsize::new(0),
            queue: Mutex::new(VecDeque::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<Waiter>>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a free permit, if there is one.
    pub(crate) fn try_acquire(&self) -> bool {
        self.permits
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| p.checked_sub(1))
            .is_ok()
    }

    /// Removes `me` from the queue; false if it was not there (granted).
    fn dequeue(&self, queue: &mut VecDeque<Arc<Waiter>>, me: &Arc<Waiter>) -> bool {
        match queue.iter().position(|w| Arc::ptr_eq(w, me)) {
            Some(i) => {
                queue.remove(i);
                self.queued.store(queue.len(), Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// Queues a waiter woken through `waker`; `None` if a permit was
    /// released before it was queued and it took that one instead.
    fn enqueue(&self, waker: Waker) -> Option<Arc<Waiter>> {
        let me = Arc::new(Waiter {
            waker,
            granted: AtomicBool::new(false),
            since: Instant::now(),
        });
        let mut queue = self.lock();
        queue.push_back(me.clone());
        self.queued.store(queue.len(), Ordering::SeqCst);
        fence(Ordering::SeqCst);
        // A permit released before we were queued: take it now.
        if self.try_acquire() {
            self.dequeue(&mut queue, &me);
            return None;
        }
        Some(me)
    }

    /// A queued waiter's look after a wake-up: true if it now holds a
    /// permit, handed to it or taken (then it leaves the queue).
    fn take_queued(&self, me: &Arc<Waiter>) -> bool {
        if me.granted.load(Ordering::Acquire) {
            // Handed a permit, perhaps after a release that left one free
            // and woke only us (we were the front then): pass the wake-up
            // on, as below.
            self.wake_front();
            return true;
        }
        if !self.try_acquire() {
            return false;
        }
        let was_queued = {
            let mut queue = self.lock();
            self.dequeue(&mut queue, me)
        };
        if was_queued {
            // Several releases may have woken only us (each wakes the
            // front, and we were it): pass the wake-up on while permits
            // remain, or the next waiter would sleep with one free.
            self.wake_front();
        } else {
            // Granted at the same time: we hold two, give one back.
            self.release();
        }
        true
    }

    /// A queued waiter gives up (cancelled, timed out, or its future
    /// dropped): it leaves the queue, passing on a permit handed to it
    /// meanwhile, or the wake-up it may have had.
    fn leave(&self, me: &Arc<Waiter>) {
        let was_queued = {
            let mut queue = self.lock();
            self.dequeue(&mut queue, me)
        };
        if !was_queued && me.granted.load(Ordering::Acquire) {
            self.release();
        } else {
            self.wake_front(); // in case we were the one woken
        }
    }

    /// Takes a permit, waiting in line if none is free. A cancellation point.
    pub(crate) fn acquire(&self) {
        if self.try_acquire() {
            return;
        }
        let Some(me) = self.enqueue(park::current_waker()) else {
            return;
        };
        struct Leave<'a>(&'a RawSemaphore, &'a Arc<Waiter>);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.leave(self.1);
            }
        }
        let leave = Leave(self, &me);
        // A cancellation point: `park` unwinds through `leave`.
        while !self.take_queued(&me) {
            park::park(None);
        }
        std::mem::forget(leave);
    }

    fn poll_acquire(
        &self,
        me: &mut Option<Arc<Waiter>>,
        slot: &mut Option<Arc<AsyncWaker>>,
        cx: &std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        use std::task::Poll;
        let Some(queued) = me.as_ref() else {
            if self.try_acquire() {
                return Poll::Ready(());
            }
            let slot = slot.get_or_insert_with(|| AsyncWaker::new(cx.waker()));
            return match self.enqueue(Waker::Async(slot.clone())) {
                None => Poll::Ready(()),
                Some(w) => {
                    *me = Some(w);
                    Poll::Pending
                }
            };
        };
        // The waker first, then the look: a release after it wakes the
        // task of this poll.
        if let Some(slot) = slot {
            slot.update(cx.waker());
        }
        if self.take_queued(queued) {
            *me = None;
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// An `acquire_async` future dropped: leaves the queue if it was in it.
    fn abandon_acquire(&self, me: Option<Arc<Waiter>>) {
        if let Some(me) = me {
            self.leave(&me);
        }
    }

    /// Wakes the front waiter if a permit is free, so it can take it.
    fn wake_front(&self) {
        if self.permits.load(Ordering::Acquire) == 0 {
            return;
        }
        // Woken after the lock goes: an async waiter's waker is its
        // executor's code.
        let front = self.lock().front().cloned();
        if let Some(front) = front {
            front.waker.wake();
        }
    }

    /// Returns a permit and wakes the front waiter; hands the permit to it
    /// directly once it has waited `FAIR_AFTER`.
    pub(crate) fn release(&self) {
        if self.queued.load(Ordering::SeqCst) == 0 {
            self.permits.fetch_add(1, Ordering::AcqRel);
            fence(Ordering::SeqCst);
            if self.queued.load(Ordering::SeqCst) == 0 {
                return;
            }
            // A waiter queued meanwhile: it re-checks after queueing, but
            // wake it in case it already parked.
            return self.wake_front();
        }
        let mut queue = self.lock();
        match queue.front() {
            Some(front) if front.since.elapsed() >= FAIR_AFTER => {
                let w = queue.pop_front().expect("checked non-empty");
                self.queued.store(queue.len(), Ordering::SeqCst);
                // Granted before the queue lock goes: a waiter cancelled
                // meanwhile that finds itself dequeued must find the permit
                // too, to pass it on, or it would be lost.
                w.granted.store(true, Ordering::Release);
                drop(queue);
                w.waker.wake();
            }
            Some(front) => {
                self.permits.fetch_add(1, Ordering::AcqRel);
                let front = front.clone();
                drop(queue);
                front.waker.wake();
            }
            None => {
                self.permits.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Adds `n` permits: one at a time while waiters queue (each may be
    /// handed one), the rest at once.
    ///
    /// # Panics
    ///
    /// If the count would pass [`MAX_PERMITS`].
    #[track_caller]
    pub(crate) fn add(&self, n: usize) {
        let room = MAX_PERMITS - self.permits.load(Ordering::Acquire).min(MAX_PERMITS);
        assert!(
            n <= room,
            "Semaphore::add_permits({n}) would take the semaphore past its maximum of {MAX_PERMITS} \
             permits ({} are free)",
            MAX_PERMITS - room
        );
        let mut left = n;
        while left > 0 && self.queued.load(Ordering::SeqCst) != 0 {
            self.release();
            left -= 1;
        }
        if left > 0 {
            self.permits.fetch_add(left, Ordering::AcqRel);
            fence(Ordering::SeqCst);
            // A waiter that queued meanwhile re-checks after queueing, but
            // may have parked already.
            if self.queued.load(Ordering::SeqCst) != 0 {
                self.wake_front();
            }
        }
    }

    pub(crate) fn available(&self) -> usize {
        self.permits.load(Ordering::Acquire)
    }
}

/// A counting semaphore: `asyncio.Semaphore`, for green threads and threads.
///
/// [`acquire`](Semaphore::acquire) waits (suspending a green thread) until a
/// permit is free and returns a guard that gives it back when dropped.
/// Waiters are served first come, first served, with eventual fairness (see
/// the module docs): no waiter waits more than about a millisecond past its
/// turn.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use stackful::sync::Semaphore;
///
/// let limit = Arc::new(Semaphore::new(2)); // at most 2 at once
/// let handles: Vec<_> = (0..5).map(|i| {
///     let limit = limit.clone();
///     stackful::spawn(move || {
///         let _permit = limit.acquire();
///         stackful::sleep(std::time::Duration::from_millis(1));
///         i
///     })
/// }).collect();
/// assert_eq!(stackful::gather(handles).unwrap(), [0, 1, 2, 3, 4]);
/// assert_eq!(limit.available_permits(), 2);
/// ```
pub struct Semaphore {
    raw: RawSemaphore,
}

impl Semaphore {
    /// The most permits a semaphore can hold: `usize::MAX >> 3`.
    pub const MAX_PERMITS: usize = MAX_PERMITS;

    /// A semaphore with `permits` permits.
    ///
    /// # Panics
    ///
    /// If `permits` exceeds [`Semaphore::MAX_PERMITS`].
    ///
    /// ```should_panic
    /// let _ = stackful::sync::Semaphore::new(usize::MAX); // panics: too many permits
    /// ```
    #[track_caller]
    pub const fn new(permits: usize) -> Semaphore {
        assert!(
            permits <= MAX_PERMITS,
            "Semaphore::new: more permits than Semaphore::MAX_PERMITS (usize::MAX >> 3)"
        );
        Semaphore {
            raw: RawSemaphore::new(permits),
        }
    }

    /// Waits for a permit. A cancellation point: a green thread cancelled
    /// while waiting leaves the line, and a permit handed to it meanwhile
    /// goes to the next in line.
    pub fn acquire(&self) -> SemaphorePermit<'_> {
        self.raw.acquire();
        SemaphorePermit { sem: self }
    }

    /// [`acquire`](Semaphore::acquire) for async code: a future of the
    /// permit, which waits in the same line as the blocking acquires,
    /// without blocking the thread that polls it. Dropped before it
    /// completes, it leaves the line, and a permit handed to it meanwhile
    /// goes to the next in line.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::sync::Semaphore;
    ///
    /// let limit = Semaphore::new(1);
    /// let held = limit.acquire();
    /// let mut waiting = Box::pin(limit.acquire_async());
    /// let waker = std::task::Waker::noop();
    /// let mut cx = std::task::Context::from_waker(waker);
    /// assert!(waiting.as_mut().poll(&mut cx).is_pending()); // in line behind `held`
    /// drop(held);
    /// let permit = futures::executor::block_on(waiting);
    /// assert_eq!(limit.available_permits(), 0);
    /// drop(permit);
    /// assert_eq!(limit.available_permits(), 1);
    /// ```
    pub fn acquire_async(&self) -> AcquireFuture<'_> {
        AcquireFuture {
            sem: self,
            me: None,
            slot: None,
            done: false,
        }
    }

    /// Takes a permit if one is free now.
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        // `then`, not `then_some`: a permit built eagerly would be dropped,
        // releasing a permit never taken.
        self.raw
            .try_acquire()
            .then(|| SemaphorePermit { sem: self })
    }

    /// Adds `n` permits.
    ///
    /// # Panics
    ///
    /// If the count of free permits would pass [`Semaphore::MAX_PERMITS`].
    #[track_caller]
    pub fn add_permits(&self, n: usize) {
        self.raw.add(n);
    }

    /// Permits free now.
    pub fn available_permits(&self) -> usize {
        self.raw.available()
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("available_permits", &self.available_permits())
            .finish_non_exhaustive()
    }
}

/// The future of [`Semaphore::acquire_async`]: the permit, once one is the
/// caller's.
#[must_use = "futures do nothing unless polled"]
pub struct AcquireFuture<'a> {
    sem: &'a Semaphore,
    /// Its place in line, once it queued.
    me: Option<Arc<Waiter>>,
    slot: Option<Arc<AsyncWaker>>,
    done: bool,
}

impl<'a> Future for AcquireFuture<'a> {
    type Output = SemaphorePermit<'a>;

    #[track_caller]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SemaphorePermit<'a>> {
        let this = self.get_mut();
        assert!(
            !this.done,
            "an AcquireFuture was polled after it completed; it hands out its permit once"
        );
        match this.sem.raw.poll_acquire(&mut this.me, &mut this.slot, cx) {
            Poll::Ready(()) => {
                this.done = true;
                Poll::Ready(SemaphorePermit { sem: this.sem })
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for AcquireFuture<'_> {
    fn drop(&mut self) {
        self.sem.raw.abandon_acquire(self.me.take());
    }
}

impl fmt::Debug for AcquireFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcquireFuture")
            .field("queued", &self.me.is_some())
            .finish_non_exhaustive()
    }
}

/// A permit from a [`Semaphore`]; dropping it gives the permit back.
///
/// It is `Send` and `Sync` whatever the semaphore guards, unlike a
/// [`MutexGuard`](super::MutexGuard): it gives access to no data, only the
/// count, which is atomic, so sharing or moving it between threads cannot
/// race on anything.
///
/// ```
/// fn assert_send_sync<P: Send + Sync>(_: &P) {}
/// let s = stackful::sync::Semaphore::new(1);
/// assert_send_sync(&s.acquire());
/// ```
#[must_use = "the permit is released at once if not kept"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
}

impl SemaphorePermit<'_> {
    /// Keeps the permit out of the semaphore for good.
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        self.sem.raw.release();
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit").finish_non_exhaustive()
    }
}
