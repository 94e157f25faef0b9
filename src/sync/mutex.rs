//! A mutex and a readers-writer lock that suspend green threads.
//!
//! # Panics while locked
//!
//! These locks are not poisoned. A panic (or a cancellation) while a guard
//! is held unwinds through the guard, which unlocks: the next holder sees the
//! data exactly as the panicking code left it, possibly half-updated, as with
//! tokio's and parking_lot's locks. If an invariant could break midway,
//! restore it in a destructor or catch the panic before the guard drops.

use std::cell::{Cell, UnsafeCell};
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdGuard};

use super::semaphore::RawSemaphore;
use crate::debug;
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
    /// Debug mode: the context holding the lock (see `park::context_id`),
    /// 0 when free or not tracked, to catch a holder locking it again.
    holder: AtomicU64,
    /// Where the mutex was created, for that message.
    site: &'static Location<'static>,
    data: UnsafeCell<T>,
}

// SAFETY: the semaphore with one permit gives exclusive access to `data` to
// whoever holds the permit, on whatever thread; T: Send suffices, as for std.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
// SAFETY: as above: shared references only reach `data` through a guard.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    /// A new unlocked mutex.
    #[track_caller]
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            sem: RawSemaphore::new(1),
            holder: AtomicU64::new(0),
            site: Location::caller(),
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
    ///
    /// # Panics
    ///
    /// In debug mode (`STACKFUL_DEBUG=1`), if the caller already holds the
    /// lock, which would wait forever: the message names where the mutex
    /// was created. (Debug mode takes the holder to be the green thread or
    /// thread that locked it; a guard sent to another one and still alive
    /// there counts as the locker's.) Outside debug mode such a lock hangs,
    /// as a re-entrant `std::sync::Mutex::lock` may.
    #[track_caller]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        if !self.sem.try_acquire() {
            self.lock_slow();
        }
        self.locked()
    }

    /// Locks if the lock is free now.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        // `then`, not `then_some`: a guard built eagerly would be dropped,
        // unlocking a lock never taken.
        self.sem.try_acquire().then(|| self.locked())
    }

    #[cold]
    #[inline(never)]
    #[track_caller]
    fn lock_slow(&self) {
        if debug::enabled() {
            let me = park::context_id();
            if self.holder.load(Ordering::Relaxed) == me {
                panic!(
                    "{} tried to lock a `stackful::sync::Mutex` (created at {}) that it already \
                     holds, which would wait forever: drop the guard first (the lock is not \
                     re-entrant)",
                    park::describe_context(),
                    self.site
                );
            }
        }
        self.sem.acquire();
    }

    /// The guard of a lock just taken.
    #[inline]
    fn locked(&self) -> MutexGuard<'_, T> {
        if debug::enabled() {
            self.holder.store(park::context_id(), Ordering::Relaxed);
        }
        MutexGuard {
            mutex: self,
            _not_sync: PhantomData,
        }
    }

    /// The data, through a unique borrow: no locking needed.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T: Default> Default for Mutex<T> {
    #[track_caller]
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
///
/// Like std's, it is `Sync` only when `T` is: a shared guard hands out `&T`
/// to every thread that can see it.
///
/// ```compile_fail,E0277
/// fn assert_sync<S: Sync>(_: &S) {}
/// let m = stackful::sync::Mutex::new(std::cell::Cell::new(0u64));
/// let guard = m.lock();
/// assert_sync(&guard); // error: `Cell<u64>` cannot be shared between threads
/// ```
///
/// So two threads cannot race on a `Cell` through one guard:
///
/// ```compile_fail,E0277
/// let m = stackful::sync::Mutex::new(std::cell::Cell::new(0u64));
/// let g = m.lock();
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         s.spawn(|| g.set(g.get() + 1)); // error: `Cell<u64>` is not `Sync`
///     }
/// });
/// ```
#[must_use = "the lock is released at once if the guard is not kept"]
pub struct MutexGuard<'a, T: ?Sized> {
    pub(crate) mutex: &'a Mutex<T>,
    /// Makes the type `!Sync` (it stays `Send`): `Sync` is implemented
    /// below for `T: Sync` only.
    _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: `&MutexGuard` gives only `&T` (Deref), so sharing the guard shares
// `&T` between threads, which `T: Sync` allows; as for std's MutexGuard.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

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
        if debug::enabled() {
            self.mutex.holder.store(0, Ordering::Relaxed);
        }
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
/// A waiter cut short (by a [`timeout`](crate::timeout) or a cancellation)
/// leaves the line; if the lock was granted to it meanwhile, it passes the
/// grant on to the next in line, so a lock is never left held by nobody.
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
    /// Debug mode: who holds the lock (see `park::context_id`), to catch a
    /// holder waiting for itself. Empty when not tracked.
    holders: StdMutex<Vec<u64>>,
    /// Where the lock was created, for that message.
    site: &'static Location<'static>,
    data: UnsafeCell<T>,
}

// SAFETY: readers share `&T` across threads (T: Sync) and a writer gets
// `&mut T` exclusively (T: Send), as for std's RwLock.
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

impl<T> RwLock<T> {
    /// A new unlocked lock.
    #[track_caller]
    pub const fn new(value: T) -> RwLock<T> {
        RwLock {
            state: AtomicUsize::new(0),
            queue: StdMutex::new(VecDeque::new()),
            holders: StdMutex::new(Vec::new()),
            site: Location::caller(),
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

    /// Takes the lock for `write` or reading, waiting in line; in debug
    /// mode records the holder and returns its id (0 otherwise).
    #[track_caller]
    fn acquire(&self, write: bool) -> u64 {
        if !self.try_take(write, false) {
            self.acquire_slow(write);
        }
        self.held(write)
    }

    /// Debug mode: records the caller as a holder; returns its id, or 0.
    #[inline]
    fn held(&self, write: bool) -> u64 {
        if !debug::enabled() {
            return 0;
        }
        let me = park::context_id() << 1 | u64::from(write);
        self.lock_holders().push(me);
        me
    }

    fn lock_holders(&self) -> StdGuard<'_, Vec<u64>> {
        self.holders.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Debug mode: forgets a holder recorded by `held`.
    fn unheld(&self, holder: u64) {
        if holder != 0 {
            let mut holders = self.lock_holders();
            if let Some(i) = holders.iter().position(|&h| h == holder) {
                holders.swap_remove(i);
            }
        }
    }

    #[cold]
    #[inline(never)]
    #[track_caller]
    fn acquire_slow(&self, write: bool) {
        if debug::enabled() {
            let me = park::context_id();
            // About to wait: if we hold the lock in any way, we would wait
            // for ourselves (a reader also waits behind a queued writer).
            if let Some(&h) = self.lock_holders().iter().find(|&&h| h >> 1 == me) {
                panic!(
                    "{} tried to {} a `stackful::sync::RwLock` (created at {}) while it holds \
                     it for {}, which would wait forever{}: drop the guard first (the lock is \
                     not re-entrant, and a read guard cannot be upgraded)",
                    park::describe_context(),
                    if write { "write-lock" } else { "read-lock" },
                    self.site,
                    if h & 1 == 1 { "writing" } else { "reading" },
                    if write || h & 1 == 1 {
                        ""
                    } else {
                        " (a writer waits, and readers queue behind it)"
                    },
                );
            }
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
    /// A cancellation point while it waits; a grant that reaches a waiter
    /// cut short there passes on.
    ///
    /// # Panics
    ///
    /// In debug mode, if the caller must wait while it holds the lock
    /// itself (for writing, or for reading while a writer waits): that wait
    /// would never end. The message names where the lock was created.
    #[track_caller]
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        let holder = self.acquire(false);
        RwLockReadGuard { lock: self, holder }
    }

    /// Locks for writing, waiting while anyone holds it. A cancellation
    /// point while it waits; a grant that reaches a waiter cut short there
    /// passes on.
    ///
    /// # Panics
    ///
    /// In debug mode, if the caller holds the lock itself (a read guard
    /// cannot be upgraded): that wait would never end.
    #[track_caller]
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        let holder = self.acquire(true);
        RwLockWriteGuard { lock: self, holder }
    }

    /// Locks for reading if that needs no waiting.
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        self.try_take(false, false).then(|| RwLockReadGuard {
            lock: self,
            holder: self.held(false),
        })
    }

    /// Locks for writing if that needs no waiting.
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        self.try_take(true, false).then(|| RwLockWriteGuard {
            lock: self,
            holder: self.held(true),
        })
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
///
/// `Send` and `Sync` only when `T` is both, since an `RwLock` is shared
/// only then: a read guard of a `Cell` cannot reach another thread.
///
/// ```compile_fail,E0277
/// fn assert_sync<S: Sync>(_: &S) {}
/// let lock = stackful::sync::RwLock::new(std::cell::Cell::new(0u64));
/// let guard = lock.read();
/// assert_sync(&guard); // error: `Cell<u64>` cannot be shared between threads
/// ```
#[must_use = "the lock is released at once if the guard is not kept"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    /// Debug mode: the holder recorded for it, or 0.
    holder: u64,
}

/// Exclusive access to an [`RwLock`]'s data.
///
/// `Sync` only when `T: Send + Sync` (what makes the lock `Sync`):
///
/// ```compile_fail,E0277
/// fn assert_sync<S: Sync>(_: &S) {}
/// let lock = stackful::sync::RwLock::new(std::cell::Cell::new(0u64));
/// let guard = lock.write();
/// assert_sync(&guard); // error: `Cell<u64>` cannot be shared between threads
/// ```
#[must_use = "the lock is released at once if the guard is not kept"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    /// Debug mode: the holder recorded for it, or 0.
    holder: u64,
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
        self.lock.unheld(self.holder);
        self.lock.release(false);
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.unheld(self.holder);
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
