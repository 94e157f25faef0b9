//! [`JoinSet`]: a set of green threads that grows while it runs, joined in
//! the order they end.
//!
//! It reuses the machinery of `join.rs`: every green thread in the set has
//! one join waiter, tagged with its slot, that wakes the set's owner and
//! reports the slot to the set's [`Completions`]. So `join_next` takes the
//! next completion off a queue, O(1) amortized, instead of looking at every
//! member on each wake-up. The waiters are registered again (O(n)) only when
//! the set is used from another context than before.
//!
//! A report may come twice (a completion racing a re-registration) and
//! outlive its green thread's stay in the slot, which may hold another one
//! by then. So a report only says "look at this slot": whatever finished
//! green thread is there is taken. Every member's own report comes after it
//! has finished, so none is missed, and none is taken unfinished.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use crate::debug;
use crate::runtime::park::{self, Waker};
use crate::task::join::unregister;
use crate::task::raw::{self, Completions};
use crate::task::{Id, JoinError, JoinHandle, cancel_from_anywhere, on_scheduler_loop, register};

/// A set of green threads that can grow while they run, joined in the order
/// they end: Python's `asyncio.TaskGroup` without the scope, or tokio's
/// `JoinSet`.
///
/// [`spawn`](JoinSet::spawn) adds a green thread; [`join_next`](JoinSet::join_next)
/// returns the result of whichever ends next. Nothing outlives the set
/// unless detached: dropping it cancels the green threads still in it and
/// waits for them to unwind (see its `Drop` impl below).
///
/// As everywhere in stackful, waiting suspends only the calling green
/// thread, and blocks a plain OS thread; from a plain thread the green
/// threads run on the global runtime, as with [`spawn`](crate::spawn).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stackful::task::JoinSet;
///
/// let total = stackful::run(|| {
///     let mut set = JoinSet::new();
///     for ms in [30, 10, 20] {
///         set.spawn(move || { stackful::sleep(Duration::from_millis(ms)); ms });
///     }
///     let mut total = 0;
///     while let Some(result) = set.join_next() {
///         let ms = result.unwrap();
///         if ms == 10 {
///             set.spawn(|| 5); // the set grows while it runs
///         }
///         total += ms;
///     }
///     total
/// });
/// assert_eq!(total, 65);
/// ```
pub struct JoinSet<T> {
    /// The members, by slot: a member's slot is the tag of its join waiter.
    slots: Vec<Option<JoinHandle<T>>>,
    /// Empty slots, to reuse.
    free: Vec<usize>,
    /// Members (occupied slots).
    len: usize,
    /// Where the members report their completions (slots, roughly in
    /// completion order; see the module docs).
    set: Arc<Completions>,
    /// Reports taken from `set` and not looked at yet: kept here, so that a
    /// `join_next` cancelled while it waits loses none.
    ready: VecDeque<usize>,
    /// If set, every member has a join waiter with this waker, tagged with
    /// `set` and its slot (or had completed, and its slot was reported).
    waker: Option<Waker>,
}

impl<T> JoinSet<T> {
    /// An empty set.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut set = stackful::task::JoinSet::<u32>::new();
    /// assert!(set.is_empty());
    /// assert!(set.join_next().is_none()); // at once: nothing to wait for
    /// ```
    pub fn new() -> JoinSet<T> {
        JoinSet {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            set: Arc::new(Completions::default()),
            ready: VecDeque::new(),
            waker: None,
        }
    }

    /// How many green threads are in the set: running, or ended and not yet
    /// returned by [`join_next`](JoinSet::join_next).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set has no green threads.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Spawns a green thread into the set, as [`spawn`](crate::spawn) does
    /// (on the caller's runtime and `run`, or on the global runtime from a
    /// plain OS thread), and returns its id.
    ///
    /// # Panics
    ///
    /// When [`spawn`](crate::spawn) would panic: the green thread cannot be
    /// spawned (see [`task::Builder::spawn`](crate::task::Builder::spawn)
    /// for the reasons).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut set = stackful::task::JoinSet::new();
    /// let id = set.spawn(|| "done");
    /// let (joined, value) = set.join_next_with_id().unwrap();
    /// assert_eq!((joined, value.unwrap()), (id, "done"));
    /// ```
    #[track_caller]
    pub fn spawn<F>(&mut self, f: F) -> Id
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.insert(crate::task::spawn(f))
    }

    /// Adds a handle to the set and returns its id.
    fn insert(&mut self, handle: JoinHandle<T>) -> Id {
        let id = handle.id();
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        if let Some(waker) = &self.waker
            && !register(
                handle.header(),
                waker.clone(),
                Some((self.set.clone(), slot)),
            )
        {
            self.report(slot); // ended already
        }
        self.slots[slot] = Some(handle);
        self.len += 1;
        id
    }

    fn report(&self, slot: usize) {
        self.set
            .done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(slot);
    }

    /// Waits for the next green thread of the set to end and returns its
    /// value, or why there is none; `None` at once if the set is empty.
    ///
    /// Inside a green thread this suspends it, and is a cancellation point;
    /// on a plain OS thread it blocks. A cancelled `join_next` loses nothing:
    /// the green thread it would have returned stays in the set.
    ///
    /// # Panics
    ///
    /// If the caller is the only member still running: it would wait for
    /// itself forever (as [`JoinHandle::join`](crate::JoinHandle::join) on
    /// itself does).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let first = stackful::run(|| {
    ///     let mut set = stackful::task::JoinSet::new();
    ///     set.spawn(|| { stackful::sleep(Duration::from_secs(3600)); "slow" });
    ///     set.spawn(|| "fast");
    ///     set.join_next().unwrap().unwrap() // the slow one is cancelled with the set
    /// });
    /// assert_eq!(first, "fast");
    /// ```
    #[track_caller]
    pub fn join_next(&mut self) -> Option<Result<T, JoinError>> {
        self.next(true).map(|(_, result)| result)
    }

    /// [`join_next`](JoinSet::join_next), with the id of the green thread
    /// the result comes from.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut set = stackful::task::JoinSet::new();
    /// let ids = [set.spawn(|| 1), set.spawn(|| 2)];
    /// while let Some((id, value)) = set.join_next_with_id() {
    ///     assert_eq!(value.unwrap(), if id == ids[0] { 1 } else { 2 });
    /// }
    /// ```
    #[track_caller]
    pub fn join_next_with_id(&mut self) -> Option<(Id, Result<T, JoinError>)> {
        self.next(true)
    }

    /// The result of a green thread of the set that has ended, if there is
    /// one, without waiting: `None` if the set is empty or none has ended.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut set = stackful::task::JoinSet::new();
    /// assert!(set.try_join_next().is_none()); // empty
    /// let gate = std::sync::Arc::new(stackful::sync::Event::new());
    /// let g = gate.clone();
    /// set.spawn(move || g.wait());
    /// assert!(set.try_join_next().is_none()); // still waiting
    /// gate.set();
    /// assert!(set.join_next().unwrap().is_ok());
    /// ```
    pub fn try_join_next(&mut self) -> Option<Result<T, JoinError>> {
        self.next(false).map(|(_, result)| result)
    }

    /// Takes the next member that has ended, waiting for one if `block`.
    #[track_caller]
    fn next(&mut self, block: bool) -> Option<(Id, Result<T, JoinError>)> {
        loop {
            if self.len == 0 {
                return None;
            }
            self.arm();
            // Every time, not only when `ready` is empty: it may hold only
            // stale reports, and a wake-up that came with a report still in
            // `done` has been spent.
            self.ready.extend(
                self.set
                    .done
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .drain(..),
            );
            while let Some(slot) = self.ready.pop_front() {
                // A report says "look here" (see the module docs).
                if let Some(handle) = self.slots[slot].take_if(|h| h.is_finished()) {
                    self.free.push(slot);
                    self.len -= 1;
                    return Some((handle.id(), handle.take()));
                }
            }
            if !block {
                return None;
            }
            if self.len == 1 {
                self.refuse_waiting_for_itself();
            }
            park::park(None);
        }
    }

    /// Panics if the one member left is the caller: it would wait for
    /// itself forever (as `JoinHandle::join` on itself panics).
    #[track_caller]
    fn refuse_waiting_for_itself(&self) {
        if let Some(last) = self.slots.iter().flatten().next() {
            crate::task::refuse_self_join(last.header());
        }
    }

    /// Makes sure every member will wake the calling context when it ends:
    /// registers them all again (O(n)) if the set was last armed elsewhere.
    fn arm(&mut self) {
        let waker = park::current_waker();
        if self.waker.as_ref().is_some_and(|w| w.same(&waker)) {
            return;
        }
        let rearm = self.waker.is_some();
        for (slot, handle) in self.slots.iter().enumerate() {
            let Some(handle) = handle else { continue };
            if rearm {
                unregister(handle.raw(), &self.set);
            }
            if !register(
                handle.header(),
                waker.clone(),
                Some((self.set.clone(), slot)),
            ) {
                self.report(slot);
            }
        }
        self.waker = Some(waker);
    }

    /// Removes the members' waiters, so that they do not wake the last
    /// context that used the set.
    fn disarm(&mut self) {
        if self.waker.take().is_none() {
            return;
        }
        for handle in self.slots.iter().flatten() {
            unregister(handle.raw(), &self.set);
        }
    }

    /// Requests the cancellation of every green thread in the set, as
    /// [`JoinHandle::cancel`] does. They stay in the set: `join_next` then
    /// returns each, as a cancelled [`JoinError`], or with its value (or
    /// panic) if it ended before it was cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// stackful::run(|| {
    ///     let mut set = stackful::task::JoinSet::new();
    ///     for _ in 0..3 {
    ///         set.spawn(|| stackful::sleep(Duration::from_secs(60)));
    ///     }
    ///     set.cancel_all();
    ///     let results = set.join_all();
    ///     assert_eq!(results.len(), 3);
    ///     assert!(results.iter().all(|r| r.as_ref().unwrap_err().is_cancelled()));
    /// });
    /// ```
    pub fn cancel_all(&mut self) {
        for handle in self.slots.iter().flatten() {
            handle.cancel();
        }
    }

    /// Waits for every green thread in the set and returns their results in
    /// the order they end. A cancellation point, like
    /// [`join_next`](JoinSet::join_next): if the caller is cancelled, the
    /// set is dropped as it unwinds, which cancels the green threads left.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let results = stackful::run(|| {
    ///     let mut set = stackful::task::JoinSet::new();
    ///     set.spawn(|| { stackful::sleep(Duration::from_millis(300)); 2 });
    ///     set.spawn(|| 1);
    ///     set.join_all()
    /// });
    /// assert_eq!(results.into_iter().map(Result::unwrap).collect::<Vec<_>>(), [1, 2]);
    /// ```
    pub fn join_all(mut self) -> Vec<Result<T, JoinError>> {
        /// The results so far, dropped under `catch_unwind` if the wait
        /// unwinds: a panic from a value's destructor then would abort.
        struct Collected<T>(Vec<Result<T, JoinError>>);
        impl<T> Drop for Collected<T> {
            fn drop(&mut self) {
                for result in self.0.drain(..) {
                    if let Some(payload) = raw::drop_caught(result) {
                        raw::discard_payload(payload);
                    }
                }
            }
        }
        let mut results = Collected(Vec::with_capacity(self.len));
        while let Some(result) = self.join_next() {
            results.0.push(result);
        }
        std::mem::take(&mut results.0)
    }

    /// Empties the set without cancelling anything: its green threads run
    /// on, detached, as when a [`JoinHandle`] is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use stackful::sync::Event;
    ///
    /// let done = Arc::new(Event::new());
    /// let mut set = stackful::task::JoinSet::new();
    /// let d = done.clone();
    /// set.spawn(move || d.set());
    /// set.detach_all();
    /// done.wait(); // it ran on
    /// ```
    pub fn detach_all(mut self) {
        self.disarm();
        self.len = 0;
        self.ready.clear();
        // Each handle detaches its green thread as it is dropped.
        drop(std::mem::take(&mut self.slots));
    }
}

impl<T> Default for JoinSet<T> {
    fn default() -> JoinSet<T> {
        JoinSet::new()
    }
}

impl<T> fmt::Debug for JoinSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinSet").field("len", &self.len).finish()
    }
}

/// Dropping the set cancels the green threads still in it and waits until
/// they have ended (run their destructors); results not taken are dropped.
///
/// The wait is not a cancellation point (a timeout cannot cut it short),
/// works on green threads and plain OS threads alike, and also in an
/// unwind. A panic in the destructor of a result is caught (debug mode
/// reports it). It lasts as long as the slowest green thread takes to
/// unwind: one that waits in a destructor holds it up. If a member drops
/// the set that holds it, that member is neither cancelled nor waited for.
/// Use [`detach_all`](JoinSet::detach_all) to leave the green threads
/// running instead.
impl<T> Drop for JoinSet<T> {
    fn drop(&mut self) {
        if self.len == 0 {
            self.disarm();
            return;
        }
        self.disarm();
        let slots = std::mem::take(&mut self.slots);
        self.len = 0;
        let me = park::current_task();
        let is_me = |handle: &JoinHandle<T>| {
            me.as_ref()
                .is_some_and(|t| std::ptr::addr_eq(t.header(), handle.header()))
        };
        for handle in slots.iter().flatten() {
            if !is_me(handle) {
                cancel_from_anywhere(handle.raw());
            }
        }
        // On a scheduler's own loop (a result holding a set, dropped there)
        // nothing may wait: they are cancelled and left to end.
        if on_scheduler_loop() {
            if debug::enabled() {
                debug::warn(format_args!(
                    "a JoinSet dropped on a worker's own loop could not wait for its {} green \
                     thread(s) to end; they were cancelled and left to unwind",
                    slots.iter().flatten().count()
                ));
            }
        } else {
            for handle in slots.iter().flatten() {
                if !is_me(handle) {
                    wait_shielded(handle);
                }
            }
        }
        // Each handle drops its result (or leaves it to its green thread)
        // under `catch_unwind` and in a shield.
        drop(slots);
    }
}

/// Waits, not as a cancellation point, until `handle`'s green thread ends.
fn wait_shielded<T>(handle: &JoinHandle<T>) {
    let h = handle.header();
    loop {
        if h.is_complete() {
            return;
        }
        register(h, park::current_waker(), None);
        if h.is_complete() {
            return;
        }
        park::park_shielded(None);
    }
}
