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
//!
//! A list counts no references: its entries point at waiters that their
//! owners keep alive while listed (see [`WaitList`]'s invariant). So a wait
//! costs no count, and a notifier that wakes a green thread of its own
//! thread takes none either.

use std::cell::Cell;
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::time::Instant;

use super::spin::{SpinGuard, SpinLock};
use crate::bridge::AsyncWaker;
use crate::runtime::park::{self, Waker};
use crate::runtime::worker;
use crate::task::raw::{self, TaskRef};

/// A waiter's state: still waiting.
const WAITING: usize = 0;
/// It gave up (a select that found an operation ready on its own, or that
/// is leaving): notifiers pass it by.
const ABORTED: usize = 1;
/// Woken because a channel disconnected; it just looks again.
const DISCONNECTED: usize = 2;
/// Selected: `SELECTED + op` names the operation it was notified for.
const SELECTED: usize = 3;

/// One registered wait: a context, crossbeam-channel's `Context`. A plain
/// wait registers it on one list under operation 0; a `Select` registers
/// the same waiter on several lists, each under its operation's index, and
/// exactly one notifier wins it (one compare-and-swap on `state`), so a
/// select is committed to one operation at most.
pub(crate) struct Waiter {
    /// `None` only while it is a thread's spare (so a spare keeps no green
    /// thread, and what it holds, alive).
    waker: Option<Waker>,
    state: AtomicUsize,
}

thread_local! {
    /// A waiter that its last wait left unshared, for the next wait on
    /// this thread: a wait allocates nothing in the common case.
    static SPARE: Cell<Option<Arc<Waiter>>> = const { Cell::new(None) };
}

/// A fresh waiter, for one wait; back to the thread's spare when dropped,
/// if nobody else holds it by then.
pub(crate) struct OwnWaiter(Option<Arc<Waiter>>);

impl std::ops::Deref for OwnWaiter {
    type Target = Arc<Waiter>;

    fn deref(&self) -> &Arc<Waiter> {
        self.0.as_ref().expect("a waiter until dropped")
    }
}

impl Drop for OwnWaiter {
    fn drop(&mut self) {
        if let Some(waiter) = self.0.take() {
            Waiter::recycle(waiter);
        }
    }
}

impl Waiter {
    /// A waiter for the current green thread or OS thread, waiting.
    pub(crate) fn own() -> OwnWaiter {
        // A green thread's own spare, whose waker names it already.
        let own_spare =
            worker::with_current_task(|t| t.and_then(|t| t.header().local.spare_waiter.take()));
        if let Some(spare) = own_spare {
            // Unique (see `recycle`): nobody else reads the state.
            spare.state.store(WAITING, Ordering::Relaxed);
            return OwnWaiter(Some(spare));
        }
        let waker = park::current_waker();
        if let Ok(Some(mut spare)) = SPARE.try_with(Cell::take)
            && let Some(w) = Arc::get_mut(&mut spare)
        {
            w.waker = Some(waker);
            *w.state.get_mut() = WAITING;
            return OwnWaiter(Some(spare));
        }
        OwnWaiter(Some(Arc::new(Waiter {
            waker: Some(waker),
            state: AtomicUsize::new(WAITING),
        })))
    }

    /// Drops this reference to a waiter; the last one keeps it as a
    /// spare: the green thread's own, waker and all, if the waiter is the
    /// running green thread's; else the thread's, without its waker. (A
    /// rendezvous partner may hold the last reference, through a packet,
    /// after its owner's wait ended.)
    pub(crate) fn recycle(waiter: Arc<Waiter>) {
        // The count first: a shared waiter is common here (a partner holds
        // it), and `get_mut` would spend a compare-and-swap to find out.
        if Arc::strong_count(&waiter) != 1 {
            return;
        }
        // The last reference: no `Weak` is ever made, and the holders of the
        // others dropped them with a release, which this acquire pairs with.
        fence(Ordering::Acquire);
        // A green thread of this thread (the running one, or a partner that
        // paired with it here and held the last reference): back to it.
        if let Some(Waker::Task(t)) = &waiter.waker
            && worker::lives_here(t.header())
        {
            let header = std::ptr::NonNull::from(t.header());
            // SAFETY: the waker names the green thread of `header`, which
            // lives here and has not completed (just checked), and this is
            // the only reference to the waiter (the count was 1).
            unsafe { crate::task::raw::keep_spare_waiter(header, waiter) };
            return;
        }
        let mut waiter = waiter;
        if let Some(w) = Arc::get_mut(&mut waiter) {
            // Unshared: no list or partner can reach it any more. Its waker
            // goes now, as it would with the waiter; the spare it replaces,
            // if any, is dropped here.
            w.waker = None;
            let _ = SPARE.try_with(|spare| spare.set(Some(waiter)));
        }
    }

    /// A waiter for an async task, waiting; it wakes the task through
    /// `slot`.
    pub(crate) fn for_async(slot: &Arc<AsyncWaker>) -> Arc<Waiter> {
        Arc::new(Waiter {
            waker: Some(Waker::Async(slot.clone())),
            state: AtomicUsize::new(WAITING),
        })
    }

    /// Notified for some operation.
    pub(crate) fn is_notified(&self) -> bool {
        self.state.load(Ordering::Acquire) >= SELECTED
    }

    /// The operation it was selected for, if any.
    pub(crate) fn selected(&self) -> Option<usize> {
        self.state.load(Ordering::Acquire).checked_sub(SELECTED)
    }

    /// Still waiting (neither selected nor aborted).
    pub(crate) fn is_waiting(&self) -> bool {
        self.state.load(Ordering::Acquire) == WAITING
    }

    /// Selects it for operation `op`, without waking it; false if it was
    /// selected or aborted already. The winner wakes it (`wake`) once what
    /// it hands over is in place.
    pub(crate) fn try_select(&self, op: usize) -> bool {
        self.state
            .compare_exchange(WAITING, SELECTED + op, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Gives up waiting. `Err` with the operation if it was selected first.
    pub(crate) fn abort(&self) -> Result<(), Option<usize>> {
        match self
            .state
            .compare_exchange(WAITING, ABORTED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(()),
            Err(s) => Err(s.checked_sub(SELECTED)),
        }
    }

    /// Wakes it for a disconnection, if it still waits.
    pub(crate) fn disconnect(&self) {
        if self
            .state
            .compare_exchange(WAITING, DISCONNECTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.wake_owner();
        }
    }

    pub(crate) fn wake(&self) {
        self.wake_owner();
    }

    fn wake_owner(&self) {
        if let Some(waker) = &self.waker {
            waker.wake();
        }
    }

    /// What waking its owner takes, read while the waiter is still listed
    /// (see [`WaitList`]'s invariant): a green thread of the caller's
    /// thread is named by a pointer with no count, since it cannot run, let
    /// alone complete, before the caller lets its thread go; any other
    /// owner's waker is cloned.
    fn prepare_wake(&self) -> Wake {
        match &self.waker {
            Some(Waker::Task(t)) if worker::lives_here(t.header()) => Wake::Here(t.as_raw()),
            Some(waker) => Wake::Other(waker.clone()),
            None => Wake::Nobody,
        }
    }

    /// Whether `other` is this very waiter.
    pub(crate) fn is(self: &Arc<Self>, other: &Arc<Waiter>) -> bool {
        Arc::ptr_eq(self, other)
    }
}

/// A wake-up prepared under a list's lock (`Waiter::prepare_wake`), done
/// after it.
enum Wake {
    /// A green thread of this thread, which cannot complete before this
    /// thread runs it: no count needed.
    Here(NonNull<raw::Header>),
    Other(Waker),
    Nobody,
}

impl Wake {
    fn wake(self) {
        match self {
            Wake::Here(t) => wake_here(t),
            Wake::Other(waker) => waker.wake_by_value(),
            Wake::Nobody => {}
        }
    }
}

/// Wakes a green thread of this thread named by a prepared `Wake::Here`.
fn wake_here(t: NonNull<raw::Header>) {
    // SAFETY: the green thread lives on this thread and had not completed
    // when the wake-up was prepared; it can complete only when this thread
    // runs it, which it has not done since (the caller did not let its
    // thread go in between: no user code ran since the preparation), so the
    // record is alive and its registry holds a count.
    raw::wake(&*unsafe { TaskRef::borrow_raw(t) })
}

/// A listed waiter, for the operation of a select it waits for (0 for a
/// plain wait). A pointer with no count; see [`WaitList`].
struct Entry {
    waiter: NonNull<Waiter>,
    op: usize,
}

// SAFETY: an entry only points at a waiter, which is Send and Sync (its
// waker and its state are), and is read under the list's lock.
unsafe impl Send for Entry {}

/// A FIFO queue of waiters.
///
/// # Invariant
///
/// The queue's entries hold no reference counts: a listed waiter is kept
/// alive by its owner (a wait's [`OwnWaiter`], a [`Registration`], an
/// [`AsyncWait`]), which takes its entry off the list (`unregister`, under
/// the lock) before it lets the waiter go, unless a notifier selected it
/// for that entry's operation first. A notifier reads a waiter only under
/// the lock, while its entry is listed or just popped, and its last access
/// is the compare-and-swap that selects it: what the wake-up needs is
/// prepared before (`Waiter::prepare_wake`), since once selected the owner
/// may leave without the lock (`unregister`'s first check) and free it.
#[derive(Default)]
pub(crate) struct WaitList {
    queue: SpinLock<VecDeque<Entry>>,
    len: AtomicUsize,
}

impl WaitList {
    pub(crate) fn new() -> WaitList {
        WaitList::default()
    }

    fn lock(&self) -> SpinGuard<'_, VecDeque<Entry>> {
        self.queue.lock()
    }

    /// How many wait now (a snapshot, for `Debug` output).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::SeqCst)
    }

    /// Appends `waiter`. The fence pairs with the one in `notify_one`: after
    /// it, a notifier either sees this waiter or the caller's re-check sees
    /// the notifier's change. (The count is stored under the lock, so a
    /// plain store: the fence after it is what orders it for the notifiers;
    /// see `notify_one_after_sc`.)
    ///
    /// # Safety
    ///
    /// `waiter` stays alive until the caller takes it off the list with
    /// `unregister` for `op`, which it must do before it lets the waiter
    /// go (the type's invariant).
    unsafe fn register(&self, waiter: &Arc<Waiter>, op: usize) {
        let mut queue = self.lock();
        queue.push_back(Entry {
            waiter: NonNull::from(&**waiter),
            op,
        });
        self.len.store(queue.len(), Ordering::Relaxed);
        drop(queue);
        fence(Ordering::SeqCst);
    }

    /// Removes `waiter`'s entry for `op` if it is still queued. Returns
    /// true if it had been notified for `op` (and so already removed by the
    /// notifier).
    pub(crate) fn unregister(&self, waiter: &Arc<Waiter>, op: usize) -> bool {
        if waiter.selected() == Some(op) {
            return true;
        }
        let mut queue = self.lock();
        let me = NonNull::from(&**waiter);
        if let Some(i) = queue.iter().position(|e| e.waiter == me && e.op == op) {
            queue.remove(i);
            self.len.store(queue.len(), Ordering::Relaxed);
        }
        drop(queue);
        waiter.selected() == Some(op)
    }

    /// Wakes the first waiter. A fence and one load when nobody waits.
    pub(crate) fn notify_one(&self) -> bool {
        fence(Ordering::SeqCst);
        self.notify_one_after_sc()
    }

    /// As [`notify_one`](WaitList::notify_one), without its fence, for a
    /// notifier whose change was a `SeqCst` read-modify-write (a queue's
    /// claim of a position), which waiters look for again after a `SeqCst`
    /// fence or with `SeqCst` loads. Registration stores the count, then
    /// runs a `SeqCst` fence; in the single order of `SeqCst` operations,
    /// either that fence comes before this load, which then sees the count
    /// stored before it, or this load (and the change before it) comes
    /// before the fence, and the waiter's look after the fence sees the
    /// change. One load when nobody waits.
    pub(crate) fn notify_one_after_sc(&self) -> bool {
        if self.len.load(Ordering::SeqCst) == 0 {
            return false;
        }
        // Selected under the lock: a waiter that leaves (`unregister`) takes
        // the lock too, so it either finds itself still queued or finds the
        // notification, never neither (which would lose the wake-up). It is
        // woken, and dropped, after the lock is released: a waker is user
        // code for an async waiter (its executor's), which must not run
        // under this lock.
        let mut queue = self.lock();
        let mut woken = None;
        // Waiters selected already (through a select's other list) or
        // aborted are passed by.
        while let Some(entry) = queue.pop_front() {
            // Under the lock, like every store of the count.
            self.len.store(queue.len(), Ordering::Relaxed);
            // SAFETY: the entry was listed until now, under the lock we
            // hold, so its owner has not let the waiter go (the invariant).
            let waiter = unsafe { entry.waiter.as_ref() };
            let wake = waiter.prepare_wake();
            // The last access to the waiter (see the invariant).
            if waiter.try_select(entry.op) {
                woken = Some(wake);
                break;
            }
            // A clone, if any, of a waker the waiter still holds: never the
            // last reference, so no user code runs under the lock.
            drop(wake);
        }
        drop(queue);
        match woken {
            Some(wake) => {
                wake.wake();
                true
            }
            None => false,
        }
    }

    /// Wakes every waiter.
    pub(crate) fn notify_all(&self) {
        fence(Ordering::SeqCst);
        let len = self.len.load(Ordering::SeqCst);
        if len == 0 {
            return;
        }
        // Allocated before the lock, which spins its other takers: it grows
        // under the lock only if waiters came in meanwhile.
        let mut wakes = Vec::with_capacity(len);
        let mut queue = self.lock();
        for entry in queue.drain(..) {
            // SAFETY: as in `notify_one_after_sc`.
            let waiter = unsafe { entry.waiter.as_ref() };
            let wake = waiter.prepare_wake();
            if waiter.try_select(entry.op) {
                wakes.push(wake);
            }
        }
        self.len.store(0, Ordering::Relaxed);
        drop(queue);
        // Green threads of this thread first: another waker may be an async
        // task's, user code that could even wait, letting this thread run
        // (and complete) them, after which their pointers would dangle.
        // Each group keeps the list's order.
        wakes.retain(|w| match w {
            Wake::Here(t) => {
                wake_here(*t);
                false
            }
            _ => true,
        });
        for wake in wakes {
            wake.wake();
        }
    }
}

/// A registration on one list that cleans up however the wait ends: unless
/// it [left](Registration::leave) (and its caller settled what it was
/// told), it leaves the list on drop and passes on a notification it got.
pub(crate) struct Registration<'a> {
    list: &'a WaitList,
    waiter: Arc<Waiter>,
    op: usize,
    /// Already left the list (`leave`): nothing left to do on drop.
    left: bool,
}

impl<'a> Registration<'a> {
    /// Registers `waiter` on `list` for a plain wait (operation 0).
    pub(crate) fn new(list: &'a WaitList, waiter: &Arc<Waiter>) -> Registration<'a> {
        Registration::for_op(list, waiter, 0)
    }

    /// Registers `waiter` on `list` for operation `op` of a select.
    pub(crate) fn for_op(list: &'a WaitList, waiter: &Arc<Waiter>, op: usize) -> Registration<'a> {
        // SAFETY: the registration holds a count of the waiter, and takes it
        // off the list before it lets that go (`leave`, or its drop); a
        // registration that is leaked keeps the waiter alive for good.
        unsafe { list.register(waiter, op) };
        Registration {
            list,
            waiter: waiter.clone(),
            op,
            left: false,
        }
    }

    /// Leaves the list and returns whether a notification came, which is
    /// now the caller's to use or pass on (`WaitList::notify_one`). Settled
    /// under the list's lock, so a notification cannot slip in after the
    /// answer and be lost.
    pub(crate) fn leave(mut self) -> bool {
        self.left = true;
        self.list.unregister(&self.waiter, self.op)
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if !self.left {
            settle(self.list, &self.waiter, self.op, false);
        }
    }
}

/// Leaves `list` and passes on a notification for `op` that was not used.
fn settle(list: &WaitList, waiter: &Arc<Waiter>, op: usize, consumed: bool) {
    if list.unregister(waiter, op) && !consumed {
        list.notify_one();
    }
}

/// [`wait_until`]'s registration: a [`Registration`] for operation 0 that
/// borrows the waiter, which outlives it, where a `Registration` holds a
/// reference count of its own (two read-modify-writes per wait).
struct Listed<'a> {
    list: &'a WaitList,
    waiter: &'a Arc<Waiter>,
    consumed: bool,
}

impl<'a> Listed<'a> {
    fn new(list: &'a WaitList, waiter: &'a Arc<Waiter>) -> Listed<'a> {
        // SAFETY: the waiter outlives the borrow, and the drop takes it off
        // the list; `wait_until`, the only user, never leaks a `Listed`.
        unsafe { list.register(waiter, 0) };
        Listed {
            list,
            waiter,
            consumed: false,
        }
    }
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        settle(self.list, self.waiter, 0, self.consumed);
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
        let waiter = Waiter::own();
        let mut listed = Listed::new(list, &waiter);
        if let Some(r) = attempt() {
            listed.consumed = true;
            return Ok(r);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(TimedOut); // leaving passes on any notification
        }
        park::park(deadline);
        match attempt() {
            Some(r) => {
                listed.consumed = true;
                return Ok(r);
            }
            None => {
                // Notified but beaten to it, or woken spuriously: try again
                // with a fresh registration. Whatever we were told is stale.
                listed.consumed = waiter.is_notified();
            }
        }
    }
}

/// [`wait_until`] for a future, one poll at a time: the registration lives
/// between polls. Its owner must call [`finish`](AsyncWait::finish) with
/// the same list before it is dropped (a future's `Drop`), or a
/// notification given to it would be lost.
#[derive(Default)]
pub(crate) struct AsyncWait {
    /// Registered on the list under operation 0, while it waits.
    waiter: Option<Arc<Waiter>>,
    /// The task's latest waker, updated at every poll.
    slot: Option<Arc<AsyncWaker>>,
}

impl AsyncWait {
    /// One poll of a wait on `list` until `attempt` succeeds.
    pub(crate) fn poll<R>(
        &mut self,
        list: &WaitList,
        cx: &std::task::Context<'_>,
        mut attempt: impl FnMut() -> Option<R>,
    ) -> std::task::Poll<R> {
        // The waker first, then the condition: a notification after the
        // look wakes the task of this poll.
        if let Some(slot) = &self.slot {
            slot.update(cx.waker());
        }
        if let Some(r) = attempt() {
            self.finish(list, true);
            return std::task::Poll::Ready(r);
        }
        if let Some(waiter) = &self.waiter {
            if waiter.is_waiting() {
                return std::task::Poll::Pending;
            }
            // Notified but beaten to it (or a disconnection we just looked
            // at): the notification is spent, as in `wait_until`. Queue up
            // again, at the back.
            list.unregister(waiter, 0);
            self.waiter = None;
        }
        let slot = self
            .slot
            .get_or_insert_with(|| AsyncWaker::new(cx.waker()))
            .clone();
        let waiter = Waiter::for_async(&slot);
        // SAFETY: `self` holds the waiter until `finish` (or a later poll)
        // takes it off the list; dropped without that, it keeps the waiter
        // alive for good (see the `Drop` impl).
        unsafe { list.register(&waiter, 0) };
        self.waiter = Some(waiter);
        match attempt() {
            Some(r) => {
                self.finish(list, true);
                std::task::Poll::Ready(r)
            }
            None => std::task::Poll::Pending,
        }
    }

    /// Leaves the list, if registered. A notification it got and did not
    /// use (`consumed` false: the future is dropped) goes to the next
    /// waiter. Its owner calls it before it goes (see the type's docs).
    pub(crate) fn finish(&mut self, list: &WaitList, consumed: bool) {
        if let Some(waiter) = self.waiter.take() {
            let notified = list.unregister(&waiter, 0);
            if notified && !consumed {
                list.notify_one();
            }
        }
    }
}

impl Drop for AsyncWait {
    /// Only a future that failed to call `finish` (a bug) gets here with a
    /// waiter: it may still be listed, and the list counts no reference
    /// (see [`WaitList`]), so it is leaked rather than freed.
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            debug_assert!(
                std::thread::panicking(),
                "an async wait was dropped without `finish`"
            );
            std::mem::forget(waiter);
        }
    }
}
