//! The wait queue every primitive in `sync` waits through.
//!
//! A [`WaitList`] is a FIFO queue of [`Waiter`]s, each holding the
//! [`Waker`] of a green thread or an OS thread. Like crossbeam-channel's
//! `SyncWaker`, it keeps an atomic count so that the uncontended path (no
//! one waiting) takes no lock: `notify_one` is one load.
//!
//! Waiting follows one protocol, in [`wait_until`]: try the operation;
//! register; try again (so a notification between the first try and the
//! registration is not lost); park; repeat. A waiter that was notified but
//! leaves without completing (cancelled, timed out, or unwound) passes the
//! notification on to the next waiter, so a wake-up is never lost to a
//! cancellation.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::runtime::park::{self, Waker};

const WAITING: u8 = 0;
const NOTIFIED: u8 = 1;

/// One registered wait.
pub(crate) struct Waiter {
    waker: Waker,
    state: AtomicU8,
}

impl Waiter {
    pub(crate) fn new() -> Arc<Waiter> {
        Arc::new(Waiter {
            waker: park::current_waker(),
            state: AtomicU8::new(WAITING),
        })
    }

    pub(crate) fn is_notified(&self) -> bool {
        self.state.load(Ordering::Acquire) == NOTIFIED
    }

    /// Marks the waiter notified and wakes it; false if it already was.
    pub(crate) fn notify(&self) -> bool {
        if self
            .state
            .compare_exchange(WAITING, NOTIFIED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.waker.wake();
            true
        } else {
            false
        }
    }
}

/// A FIFO queue of waiters.
#[derive(Default)]
pub(crate) struct WaitList {
    queue: Mutex<VecDeque<Arc<Waiter>>>,
    len: AtomicUsize,
}

impl WaitList {
    pub(crate) fn new() -> WaitList {
        WaitList::default()
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<Waiter>>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many wait now (a snapshot, for `Debug` output).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::SeqCst)
    }

    /// Appends `waiter`. The fence pairs with the one in `notify_one`: after
    /// it, a notifier either sees this waiter or the caller's re-check sees
    /// the notifier's change.
    pub(crate) fn register(&self, waiter: &Arc<Waiter>) {
        let mut queue = self.lock();
        queue.push_back(waiter.clone());
        self.len.store(queue.len(), Ordering::SeqCst);
        drop(queue);
        fence(Ordering::SeqCst);
    }

    /// Removes `waiter` if it is still queued. Returns true if it had been
    /// notified (and so already removed by the notifier).
    pub(crate) fn unregister(&self, waiter: &Arc<Waiter>) -> bool {
        if waiter.is_notified() {
            return true;
        }
        let mut queue = self.lock();
        if let Some(i) = queue.iter().position(|w| Arc::ptr_eq(w, waiter)) {
            queue.remove(i);
            self.len.store(queue.len(), Ordering::SeqCst);
        }
        drop(queue);
        waiter.is_notified()
    }

    /// Wakes the first waiter. One load when nobody waits.
    pub(crate) fn notify_one(&self) -> bool {
        fence(Ordering::SeqCst);
        if self.len.load(Ordering::SeqCst) == 0 {
            return false;
        }
        // Notified under the lock: a waiter that leaves (`unregister`) takes
        // the lock too, so it either finds itself still queued or finds the
        // notification, never neither (which would lose the wake-up). The
        // one notified is dropped after the lock is released.
        let mut queue = self.lock();
        // Waiters notified already (through a select's other list): rare, so
        // the vector allocates only when one shows up.
        let mut stale = Vec::new();
        let mut woken = None;
        while let Some(w) = queue.pop_front() {
            self.len.store(queue.len(), Ordering::SeqCst);
            if w.notify() {
                woken = Some(w);
                break;
            }
            stale.push(w);
        }
        drop(queue);
        drop(stale);
        woken.is_some()
    }

    /// Wakes every waiter.
    pub(crate) fn notify_all(&self) {
        fence(Ordering::SeqCst);
        if self.len.load(Ordering::SeqCst) == 0 {
            return;
        }
        let waiters = std::mem::take(&mut *self.lock());
        self.len.store(0, Ordering::SeqCst);
        for w in waiters {
            w.notify();
        }
    }
}

/// A registration on one list that cleans up however the wait ends: it
/// leaves the list and, if it had been notified, passes the notification on.
pub(crate) struct Registration<'a> {
    list: &'a WaitList,
    waiter: Arc<Waiter>,
    /// Whether the notification, if any, was used (the operation completed).
    consumed: bool,
    /// Already left the list (`leave`): nothing left to do on drop.
    left: bool,
}

impl<'a> Registration<'a> {
    pub(crate) fn new(list: &'a WaitList, waiter: &Arc<Waiter>) -> Registration<'a> {
        list.register(waiter);
        Registration {
            list,
            waiter: waiter.clone(),
            consumed: false,
            left: false,
        }
    }

    /// The operation completed: a notification received was used.
    pub(crate) fn consume(mut self) {
        self.consumed = true;
    }

    /// Leaves the list and returns whether a notification came, which is
    /// now the caller's to use or pass on (`WaitList::notify_one`). Settled
    /// under the list's lock, so a notification cannot slip in after the
    /// answer and be lost.
    pub(crate) fn leave(mut self) -> bool {
        self.left = true;
        self.list.unregister(&self.waiter)
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        let notified = self.list.unregister(&self.waiter);
        if notified && !self.consumed {
            self.list.notify_one();
        }
    }
}

/// The outcome of [`wait_until`] when it gives up.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TimedOut;

/// Waits on `list` until `attempt` returns `Some`, or until `deadline`. A
/// cancellation point: a cancellation or expired timeout unwinds from the
/// park, and the registration cleans up on the way.
pub(crate) fn wait_until<R>(
    list: &WaitList,
    deadline: Option<Instant>,
    mut attempt: impl FnMut() -> Option<R>,
) -> Result<R, TimedOut> {
    if let Some(r) = attempt() {
        return Ok(r);
    }
    loop {
        let waiter = Waiter::new();
        let registration = Registration::new(list, &waiter);
        if let Some(r) = attempt() {
            registration.consume();
            return Ok(r);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(TimedOut); // the registration passes on any notification
        }
        park::park(deadline);
        match attempt() {
            Some(r) => {
                registration.consume();
                return Ok(r);
            }
            None => {
                // Notified but beaten to it, or woken spuriously: try again
                // with a fresh registration. Whatever we were told is stale.
                let mut registration = registration;
                registration.consumed = waiter.is_notified();
            }
        }
    }
}
