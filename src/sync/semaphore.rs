//! Semaphores, and the raw semaphore the mutex is built on.
//!
//! Waiters are served strictly first come, first served: a released permit
//! is handed to the longest waiter directly, and a newcomer does not take a
//! permit while anyone waits. So no waiter starves. The uncontended paths
//! are one or two atomic operations, with no lock and no system call.
//!
//! A waiter that is cancelled (or times out) leaves the queue; if a permit
//! was handed to it meanwhile, it passes the permit on. Permits are never
//! leaked.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::runtime::park::{self, Waker};

struct Waiter {
    waker: Waker,
    granted: AtomicBool,
}

/// A counting semaphore with FIFO hand-off.
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

    fn take_permit(&self) -> bool {
        self.permits
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| p.checked_sub(1))
            .is_ok()
    }

    /// Takes a permit if one is free and nobody waits.
    pub(crate) fn try_acquire(&self) -> bool {
        self.queued.load(Ordering::SeqCst) == 0 && self.take_permit()
    }

    /// Hands free permits to waiters at the front of the queue.
    fn grant(&self, queue: &mut VecDeque<Arc<Waiter>>) {
        while !queue.is_empty() && self.take_permit() {
            let w = queue.pop_front().expect("checked non-empty");
            self.queued.store(queue.len(), Ordering::SeqCst);
            w.granted.store(true, Ordering::Release);
            w.waker.wake();
        }
    }

    /// Takes a permit, waiting in line if none is free. A cancellation point.
    pub(crate) fn acquire(&self) {
        if self.try_acquire() {
            return;
        }
        let me = Arc::new(Waiter {
            waker: park::current_waker(),
            granted: AtomicBool::new(false),
        });
        {
            let mut queue = self.lock();
            queue.push_back(me.clone());
            self.queued.store(queue.len(), Ordering::SeqCst);
            fence(Ordering::SeqCst);
            // A permit released before we were queued is ours if we are first.
            self.grant(&mut queue);
        }
        /// Leaves the queue if the wait ends early; returns a permit granted
        /// meanwhile.
        struct Leave<'a>(&'a RawSemaphore, &'a Arc<Waiter>);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                let mut queue = self.0.lock();
                if let Some(i) = queue.iter().position(|w| Arc::ptr_eq(w, self.1)) {
                    queue.remove(i);
                    self.0.queued.store(queue.len(), Ordering::SeqCst);
                    // Leaving may let the next waiter take a free permit.
                    self.0.grant(&mut queue);
                    return;
                }
                drop(queue);
                if self.1.granted.load(Ordering::Acquire) {
                    self.0.release(); // granted, but we are leaving: pass it on
                }
            }
        }
        let leave = Leave(self, &me);
        while !me.granted.load(Ordering::Acquire) {
            park::park(None);
        }
        std::mem::forget(leave);
    }

    /// Returns a permit: to the first waiter if there is one.
    pub(crate) fn release(&self) {
        self.permits.fetch_add(1, Ordering::AcqRel);
        fence(Ordering::SeqCst);
        if self.queued.load(Ordering::SeqCst) > 0 {
            let mut queue = self.lock();
            self.grant(&mut queue);
        }
    }

    pub(crate) fn add(&self, n: usize) {
        self.permits.fetch_add(n, Ordering::AcqRel);
        fence(Ordering::SeqCst);
        if self.queued.load(Ordering::SeqCst) > 0 {
            let mut queue = self.lock();
            self.grant(&mut queue);
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
/// Waiters are served first come, first served.
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
    /// A semaphore with `permits` permits.
    pub const fn new(permits: usize) -> Semaphore {
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

    /// Takes a permit if one is free and nobody is waiting.
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        // `then`, not `then_some`: a permit built eagerly would be dropped,
        // releasing a permit never taken.
        self.raw
            .try_acquire()
            .then(|| SemaphorePermit { sem: self })
    }

    /// Adds `n` permits.
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

/// A permit from a [`Semaphore`]; dropping it gives the permit back.
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
