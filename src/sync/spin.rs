//! The spin lock behind the wait lists and the unbounded queue, as
//! crossbeam-channel's wakers and flume's queues use one.
//!
//! Every critical section it guards is a few instructions (a push, a pop,
//! a search of a short list) that never waits, never suspends a green
//! thread and never runs user code, so a lock that is held is nearly
//! always about to be released. Its release is a plain store, where a
//! futex mutex's is a read-modify-write (to learn whether anyone sleeps).
//! A contender spins, reading only, and after a while yields its OS thread
//! (`Backoff::snooze`), so a holder preempted by the OS costs the others
//! time slices, not a hang. A green thread never holds it across a
//! suspension, so two green threads of one OS thread never meet here.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_utils::Backoff;

/// A spin lock, for critical sections of a few instructions.
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a `SpinGuard`, and one guard at
// a time exists (the `locked` flag, taken with an acquire and released
// with a release): the value moves between threads as behind a mutex.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T: Default> Default for SpinLock<T> {
    fn default() -> Self {
        SpinLock::new(T::default())
    }
}

impl<T> SpinLock<T> {
    pub(crate) fn new(value: T) -> SpinLock<T> {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        let backoff = Backoff::new();
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // Read-only until it looks free: no cache-line ping-pong.
            while self.locked.load(Ordering::Relaxed) {
                backoff.snooze();
            }
        }
        SpinGuard {
            lock: self,
            _value: PhantomData,
        }
    }
}

/// Holds a [`SpinLock`]; releases it when dropped (an unwind included).
pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    /// The guard lends the value out as a `&mut T` would: shared between
    /// threads only if `T: Sync` (a `&SpinLock<T>` alone would make it
    /// `Sync` whenever `T: Send`, and a shared guard hands out `&T`).
    _value: PhantomData<&'a mut T>,
}

impl<T> std::ops::Deref for SpinGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock, so no other reference to the
        // value exists (see the `Sync` impl).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> std::ops::DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow
        // through the guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}
