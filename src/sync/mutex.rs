//! A mutex and a readers-writer lock that suspend green threads.
//!
//! # Panics while locked
//!
//! These locks are not poisoned. A panic (or a cancellation) while a guard
//! is held unwinds through the guard, which unlocks: the next holder sees the
//! data exactly as the panicking code left it, possibly half-updated, as with
//! tokio's and parking_lot's locks. If an invariant could break midway,
//! restore it in a destructor or catch the panic before the guard drops.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdGuard};

use super::semaphore::RawSemaphore;
use crate::runtime::park::{self, Waker};

/// A mutual exclusion lock: `asyncio.Lock` with data inside, like
/// `std::sync::Mutex` but waiting suspends the green thread, not the worker.
/// Waiters queue first come, first served; a running green thread may take
/// the lock ahead of the woken waiter, but a waiter that has waited 1 ms gets
/// it handed over directly, so none starves (parking_lot's eventual fairness;
/// see [`Semaphore`](super::Semaphore)).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use stackful::sync::Mutex;
///
/// let counter = Arc::new(Mutex::new(0));
/// let handles: Vec<_> = (0..4).map(|_| {
///     let counter = counter.clone();
///     stackful::spawn(move || {
///         for _ in 0..100 {
///             *counter.lock() += 1;
///             stackful::yield_now();
///         }
///     })
/// }).collect();
/// stackful::join_all(handles);
/// assert_eq!(*counter.lock(), 400);
/// ```
pub struct Mutex<T: ?Sized> {
    sem: RawSemaphore,
    data: UnsafeCell<T>,
}

// SAFETY: the semaphore with one permit gives exclusive access to `data` to
// whoever holds the permit, on whatever thread; T: Send suffices, as for std.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
// SAFETY: as above: shared references only reach `data` through a guard.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    /// A new unlocked mutex.
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            sem: RawSemaphore::new(1),
            data: UnsafeCell::new(value),
        }
    }

    /// The data, consuming the mutex.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks, waiting (suspending a green thread) while another holds it. A
    /// cancellation point while it waits; a lock handed to a cancelled
    /// waiter passes to the next one.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.sem.acquire();
        MutexGuard { mutex: self }
    }

    /// Locks if the lock is free now.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        // `then`, not `then_some`: a guard built eagerly would be dropped,
        // unlocking a lock never taken.
        self.sem.try_acquire().then(|| MutexGuard { mutex: self })
    }

    /// The data, through a unique borrow: no locking needed.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_lock() {
            Some(guard) => f.debug_struct("Mutex").field("data", &&*guard).finish(),
            None => f
                .debug_struct("Mutex")
                .field("data", &format_args!("<locked>"))
                .finish(),
        }
    }
}

/// Holds a [`Mutex`] locked; unlocks when dropped.
#[must_use = "the lock is released at once if the guard is not kept"]
pub struct MutexGuard<'a, T: ?Sized> {
    pub(crate) mutex: &'a Mutex<T>,
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard holds the mutex's only permit.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the mutex's only permit, and `&mut self`
        // makes this the only reference derived from it.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.sem.release();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    /// Unlocks and returns the mutex (for `Condvar`).
    pub(crate) fn unlock(self) -> &'a Mutex<T> {
        let mutex = self.mutex;
        drop(self);
        mutex
    }
}

/// A reader or writer waiting for an [`RwLock`].
struct RwWaiter {
    write: bool,
    waker: Waker,
    granted: AtomicBool,
}

/// Set in `RwLock::state` while a writer holds the lock.
const WRITER: usize = 1 << (usize::BITS - 1);
/// Set in `RwLock::state` while anyone waits in the queue: the fast paths
/// step aside, so waiters are served strictly in order.
const QUEUED: usize = 1 << (usize::BITS - 2);

/// A readers-writer lock: many readers or one writer. Once anyone waits,
/// newcomers queue behind them and the lock is granted strictly first come,
/// first served (a waiting writer holds back later readers, so neither kind
/// starves). Uncontended, reading and writing are one atomic operation each
/// way. Not poisoned; see the module docs.
///
/// # Examples
///
/// ```
/// let lock = stackful::sync::RwLock::new(vec![1]);
/// {
///     let a = lock.read();
///     let b = lock.read(); // many readers at once
///     assert_eq!(a.len() + b.len(), 2);
/// }
/// lock.write().push(2);
/// assert_eq!(*lock.read(), [1, 2]);
/// ```
pub struct RwLock<T: ?Sized> {
    /// Reader count in the low bits, plus `WRITER` and `QUEUED`.
    state: AtomicUsize,
    queue: StdMutex<VecDeque<Arc<RwWaiter>>>,
    data: UnsafeCell<T>,
}

// SAFETY: readers share `&T` across threads (T: Sync) and a writer gets
// `&mut T` exclusively (T: Send), as for std's RwLock.
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

impl<T> RwLock<T> {
    /// A new unlocked lock.
    pub const fn new(value: T) -> RwLock<T> {
        RwLock {
            state: AtomicUsize::new(0),
            queue: StdMutex::new(VecDeque::new()),
            data: UnsafeCell::new(value),
        }
    }

    /// The data, consuming the lock.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    fn lock_queue(&self) -> StdGuard<'_, VecDeque<Arc<RwWaiter>>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the lock without queueing, if nobody holds it in a conflicting
    /// way; `ignore_queue` lets a waiter being granted pass `QUEUED`.
    fn try_take(&self, write: bool, ignore_queue: bool) -> bool {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let queued = s & QUEUED != 0 && !ignore_queue;
            let new = if write {
                if s & !QUEUED != 0 || queued {
                    return false;
                }
                s | WRITER
            } else {
                if s & WRITER != 0 || queued {
                    return false;
                }
                s + 1
            };
            match self
                .state
                .compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(actual) => s = actual,
            }
        }
    }

    /// Grants the lock to waiters at the front of the queue while they fit,
    /// and keeps `QUEUED` in step with the queue. Called with the queue lock.
    fn grant(&self, queue: &mut VecDeque<Arc<RwWaiter>>) {
        while let Some(front) = queue.front() {
            if !self.try_take(front.write, true) {
                break;
            }
            let w = queue.pop_front().expect("checked non-empty");
            w.granted.store(true, Ordering::Release);
            w.waker.wake();
            if w.write {
                break;
            }
        }
        if queue.is_empty() {
            self.state.fetch_and(!QUEUED, Ordering::AcqRel);
        } else {
            self.state.fetch_or(QUEUED, Ordering::AcqRel);
        }
    }

    fn acquire(&self, write: bool) {
        if self.try_take(write, false) {
            return;
        }
        let me = Arc::new(RwWaiter {
            write,
            waker: park::current_waker(),
            granted: AtomicBool::new(false),
        });
        {
            let mut queue = self.lock_queue();
            queue.push_back(me.clone());
            self.state.fetch_or(QUEUED, Ordering::AcqRel);
            // Released before we queued? Then we may be granted right away.
            self.grant(&mut queue);
        }
        /// Leaves the queue if the wait ends early; releases a grant that
        /// came meanwhile.
        struct Leave<'a, T: ?Sized>(&'a RwLock<T>, &'a Arc<RwWaiter>);
        impl<T: ?Sized> Drop for Leave<'_, T> {
            fn drop(&mut self) {
                let mut queue = self.0.lock_queue();
                if let Some(i) = queue.iter().position(|w| Arc::ptr_eq(w, self.1)) {
                    queue.remove(i);
                    self.0.grant(&mut queue); // we may have been blocking others
                    return;
                }
                drop(queue);
                if self.1.granted.load(Ordering::Acquire) {
                    self.0.release(self.1.write);
                }
            }
        }
        let leave = Leave(self, &me);
        while !me.granted.load(Ordering::Acquire) {
            park::park(None);
        }
        std::mem::forget(leave);
    }

    fn release(&self, write: bool) {
        let prev = if write {
            self.state.fetch_and(!WRITER, Ordering::AcqRel)
        } else {
            self.state.fetch_sub(1, Ordering::AcqRel)
        };
        let now = if write { prev & !WRITER } else { prev - 1 };
        // Someone waits and nobody holds the lock any more: grant it.
        if now == QUEUED {
            let mut queue = self.lock_queue();
            self.grant(&mut queue);
        }
    }

    /// Locks for reading, waiting while a writer holds it or anyone waits.
    /// A cancellation point while it waits.
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.acquire(false);
        RwLockReadGuard { lock: self }
    }

    /// Locks for writing, waiting while anyone holds it. A cancellation
    /// point while it waits.
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.acquire(true);
        RwLockWriteGuard { lock: self }
    }

    /// Locks for reading if that needs no waiting.
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        self.try_take(false, false)
            .then(|| RwLockReadGuard { lock: self })
    }

    /// Locks for writing if that needs no waiting.
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        self.try_take(true, false)
            .then(|| RwLockWriteGuard { lock: self })
    }

    /// The data, through a unique borrow.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_read() {
            Some(guard) => f.debug_struct("RwLock").field("data", &&*guard).finish(),
            None => f
                .debug_struct("RwLock")
                .field("data", &format_args!("<locked>"))
                .finish(),
        }
    }
}

/// Shared access to an [`RwLock`]'s data.
#[must_use = "the lock is released at once if the guard is not kept"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
}

/// Exclusive access to an [`RwLock`]'s data.
#[must_use = "the lock is released at once if the guard is not kept"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: a read guard means no writer holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: a write guard means no one else holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: a write guard means no one else holds the lock, and
        // `&mut self` makes this the only reference derived from it.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release(false);
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release(true);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
