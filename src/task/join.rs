//! Waiting on several green threads: `join_all`, `gather`, `wait` and
//! `as_completed`, asyncio's patterns over [`JoinHandle`]s.
//!
//! They register one waiter on every green thread, tagged with its index, so
//! each completion reports *which* one finished: waiting on n green threads
//! costs O(n) in all, not O(n) per completion.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::runtime::park::{self, Waker};
use crate::task::raw::{Completions, TaskRef};
use crate::task::{JoinError, JoinHandle, refuse_self_join, register, wait_complete};

pub(crate) mod sealed {
    use crate::task::JoinError;
    use crate::task::raw::TaskRef;

    /// The green thread behind a handle: only the crate can look inside.
    pub struct Task<'a>(pub(crate) &'a TaskRef);

    /// What every [`Joinable`](super::Joinable) handle does, out of the
    /// users' reach: they can neither implement it nor call it.
    pub trait Sealed {
        /// The value its green thread returns.
        type Value;

        /// The green thread.
        fn task(&self) -> Task<'_>;

        /// Takes the result of a green thread that has completed.
        fn take_completed(self) -> Result<Self::Value, JoinError>;
    }
}

/// A handle that [`gather`], [`try_gather`], [`join_all`], [`wait`] and
/// [`as_completed`] can wait on: a [`JoinHandle`], an
/// [`AbortOnDrop`](crate::task::AbortOnDrop) guard, or a
/// [`ScopedJoinHandle`](crate::task::ScopedJoinHandle) from
/// [`Scope::spawn`](crate::task::Scope::spawn). It is sealed: only those
/// types implement it.
///
/// A scoped handle borrows its scope, so whatever the functions return that
/// holds one (the `done` and `pending` of [`wait`], an [`AsCompleted`]) ends
/// with the scope too, and the values they hand out are those of
/// [`ScopedJoinHandle::join`](crate::task::ScopedJoinHandle::join).
///
/// # Examples
///
/// Gathering a scope's children, which borrow a local:
///
/// ```
/// let words = vec!["green".to_string(), "threads".to_string()];
/// let lengths = stackful::scope(|s| {
///     let handles = words.iter().map(|w| s.spawn(move || w.len()));
///     stackful::gather(handles.collect::<Vec<_>>())
/// });
/// assert_eq!(lengths.unwrap(), [5, 7]);
/// ```
///
/// A scoped handle cannot leave its scope through them:
///
/// ```compile_fail
/// let pending = stackful::scope(|s| {
///     let (_, pending) = stackful::wait([s.spawn(|| 1)], stackful::ReturnWhen::FirstCompleted);
///     pending // error: the handles borrow the scope
/// });
/// ```
pub trait Joinable: sealed::Sealed<Value = <Self as Joinable>::Output> {
    /// The value its green thread returns.
    type Output;
}

/// The green thread behind a handle.
fn task_of<H: Joinable>(h: &H) -> &TaskRef {
    h.task().0
}

impl<T> sealed::Sealed for JoinHandle<T> {
    type Value = T;

    fn task(&self) -> sealed::Task<'_> {
        sealed::Task(self.raw())
    }

    fn take_completed(self) -> Result<T, JoinError> {
        self.take()
    }
}

impl<T> Joinable for JoinHandle<T> {
    type Output = T;
}

/// Waits for one green thread and takes its result, as `JoinHandle::join`
/// does.
#[track_caller]
fn join_one<H: Joinable>(handle: H) -> Result<H::Output, JoinError> {
    let h = task_of(&handle).header();
    refuse_self_join(h);
    wait_complete(h, None);
    handle.take_completed()
}

/// Joins every handle in order and returns every outcome:
/// `asyncio.gather(..., return_exceptions=True)`. The handles may be
/// [`JoinHandle`]s or any other [`Joinable`] handles.
///
/// # Panics
///
/// If a green thread is among the handles it joins, which would wait forever.
///
/// # Examples
///
/// ```
/// let handles = (0..3).map(|i| stackful::spawn(move || i * 10));
/// let results = stackful::join_all(handles);
/// assert_eq!(results.into_iter().map(Result::unwrap).collect::<Vec<_>>(), [0, 10, 20]);
/// ```
#[track_caller]
pub fn join_all<T, I>(handles: I) -> Vec<Result<T, JoinError>>
where
    I: IntoIterator,
    I::Item: Joinable<Output = T>,
{
    let handles = handles.into_iter();
    let mut results = Vec::with_capacity(handles.size_hint().0);
    for h in handles {
        results.push(join_one(h)); // a loop, for `#[track_caller]` to reach
    }
    results
}

/// Handles being waited on, with the set their completions report to.
struct Watch<H: Joinable> {
    handles: Vec<Option<H>>,
    /// Which completions `next_batch` has already returned.
    reported: Vec<bool>,
    /// How many are not reported yet.
    unreported: usize,
    set: Arc<Completions>,
    /// The waker registered with every pending green thread.
    waker: Option<Waker>,
}

/// However the wait ends (returned, timed out, cancelled), no waiter of ours
/// stays on a green thread to wake its context later for nothing.
impl<H: Joinable> Drop for Watch<H> {
    fn drop(&mut self) {
        self.disarm();
    }
}

impl<H: Joinable> Watch<H> {
    /// Panics if the caller is among the green threads: waiting for itself
    /// would wait forever.
    #[track_caller]
    fn new(handles: impl IntoIterator<Item = H>) -> Watch<H> {
        let handles: Vec<_> = handles.into_iter().map(Some).collect();
        for h in handles.iter().flatten() {
            refuse_self_join(task_of(h).header());
        }
        Watch {
            reported: vec![false; handles.len()],
            unreported: handles.len(),
            handles,
            set: Arc::new(Completions::default()),
            waker: None,
        }
    }

    /// Makes sure every pending green thread will wake the caller (again
    /// after the watch moved to another context), and reports the ones that
    /// completed before they could.
    fn arm(&mut self) {
        let waker = park::current_waker();
        if self.waker.as_ref().is_some_and(|w| w.same(&waker)) {
            return;
        }
        for (i, h) in self.handles.iter().enumerate() {
            if let Some(h) = h
                && !self.reported[i]
                && !register(
                    task_of(h).header(),
                    waker.clone(),
                    Some((self.set.clone(), i)),
                )
            {
                self.set
                    .done
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(i);
            }
        }
        self.waker = Some(waker);
    }

    /// Indices completed and not yet returned; waits (a cancellation point)
    /// until there is at least one.
    fn next_batch(&mut self) -> Vec<usize> {
        loop {
            self.arm();
            let mut done =
                std::mem::take(&mut *self.set.done.lock().unwrap_or_else(|e| e.into_inner()));
            done.retain(|&i| !std::mem::replace(&mut self.reported[i], true));
            self.unreported -= done.len();
            if !done.is_empty() {
                return done;
            }
            park::park(None);
        }
    }

    fn pending(&self) -> usize {
        self.unreported
    }

    /// Removes our waiters from the green threads still pending, so they do
    /// not wake us later for nothing.
    fn disarm(&mut self) {
        if self.waker.take().is_none() {
            return; // never armed, or disarmed already
        }
        for h in self.handles.iter().flatten() {
            unregister(task_of(h), &self.set);
        }
    }
}

/// Removes the waiters that report to `set` from a green thread.
pub(crate) fn unregister(task: &TaskRef, set: &Arc<Completions>) {
    let mut waiters = task
        .header()
        .waiters
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    waiters.retain(|w| !w.tag.as_ref().is_some_and(|(s, _)| Arc::ptr_eq(s, set)));
}

/// Waits for every green thread and turns each result into a value with
/// `settle`, in input order; the first error (in completion order) cancels
/// the others and is returned.
#[track_caller]
fn gather_with<H, V, E>(
    handles: impl IntoIterator<Item = H>,
    mut settle: impl FnMut(Result<H::Output, JoinError>) -> Result<V, E>,
) -> Result<Vec<V>, E>
where
    H: Joinable,
{
    /// Cancels whatever is still pending when the gather leaves early.
    struct CancelRest<H: Joinable>(Watch<H>);
    impl<H: Joinable> Drop for CancelRest<H> {
        fn drop(&mut self) {
            for h in self.0.handles.iter().flatten() {
                crate::task::raw::cancel(task_of(h));
            }
        }
    }
    let mut watch = CancelRest(Watch::new(handles));
    let mut values: Vec<Option<V>> = watch.0.handles.iter().map(|_| None).collect();
    while watch.0.pending() > 0 {
        for i in watch.0.next_batch() {
            let handle = watch.0.handles[i]
                .take()
                .expect("each completion is reported once");
            values[i] = Some(settle(handle.take_completed())?);
        }
    }
    Ok(values
        .into_iter()
        .map(|v| v.expect("every green thread completed"))
        .collect())
}

/// Waits for all the green threads and returns their values in input order:
/// `asyncio.gather`. The first failure (in completion order) cancels the
/// others and is returned at once, without waiting for them to end (a
/// [`scope`](crate::scope) still waits for its children). If the caller is
/// cancelled while waiting, the green threads are cancelled too, as asyncio
/// does. The handles may be [`JoinHandle`]s or any other [`Joinable`]
/// handles, a scope's among them.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let values = stackful::run(|| {
///     let slow = stackful::spawn(|| { stackful::sleep(Duration::from_millis(20)); "slow" });
///     let fast = stackful::spawn(|| "fast");
///     stackful::gather([slow, fast])
/// });
/// assert_eq!(values.unwrap(), ["slow", "fast"]); // input order, not completion order
/// ```
#[track_caller]
pub fn gather<T, I>(handles: I) -> Result<Vec<T>, JoinError>
where
    I: IntoIterator,
    I::Item: Joinable<Output = T>,
{
    gather_with(handles, |r| r)
}

/// [`gather`] for green threads that return a `Result`: their values in
/// input order, or the first failure in completion order, which cancels the
/// others (without waiting for them to end, as [`gather`] does). A failure
/// is a returned `Err`, or a panic or cancellation turned into `E` with
/// `From<JoinError>`. If the caller is cancelled while waiting, the green
/// threads are cancelled too.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// #[derive(Debug)]
/// enum Error { NotFound(u32), Crashed(stackful::JoinError) }
///
/// impl From<stackful::JoinError> for Error {
///     fn from(e: stackful::JoinError) -> Error { Error::Crashed(e) }
/// }
///
/// let fetch = |id: u32| stackful::spawn(move || match id {
///     0 => Err(Error::NotFound(id)),
///     13 => panic!("unlucky"),
///     _ => { stackful::sleep(Duration::from_millis(5)); Ok(id * 10) }
/// });
/// let found = stackful::run(|| stackful::task::try_gather([fetch(1), fetch(2)]));
/// assert_eq!(found.unwrap(), [10, 20]);
/// let missing = stackful::run(|| stackful::task::try_gather([fetch(1), fetch(0)]));
/// assert!(matches!(missing, Err(Error::NotFound(0))));
/// let crashed = stackful::run(|| stackful::task::try_gather([fetch(1), fetch(13)]));
/// assert!(matches!(crashed, Err(Error::Crashed(e)) if e.is_panic()));
/// ```
#[track_caller]
pub fn try_gather<T, E, I>(handles: I) -> Result<Vec<T>, E>
where
    I: IntoIterator,
    I::Item: Joinable<Output = Result<T, E>>,
    E: From<JoinError>,
{
    gather_with(handles, |r| match r {
        Ok(returned) => returned,
        Err(e) => Err(E::from(e)),
    })
}

/// When [`wait`] returns, like asyncio's `return_when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReturnWhen {
    /// As soon as any green thread ends.
    FirstCompleted,
    /// As soon as any green thread ends with an error, or when all have ended.
    FirstException,
    /// When all have ended.
    AllCompleted,
}

/// Waits until the condition `when` holds and returns `(done, pending)`,
/// each in input order: `asyncio.wait`. Nothing is cancelled; the pending
/// handles can be waited on again. The handles may be [`JoinHandle`]s or
/// any other [`Joinable`] handles. An error here is a panic or a
/// cancellation: a green thread that returns an `Err` value has succeeded.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stackful::ReturnWhen;
///
/// stackful::run(|| {
///     let slow = stackful::spawn(|| { stackful::sleep(Duration::from_secs(5)); 1 });
///     let fast = stackful::spawn(|| 2);
///     let (done, pending) = stackful::wait([slow, fast], ReturnWhen::FirstCompleted);
///     assert_eq!(done.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>(), [2]);
///     pending.iter().for_each(|h| h.cancel());
/// });
/// ```
#[track_caller]
pub fn wait<T, I>(handles: I, when: ReturnWhen) -> (Vec<I::Item>, Vec<I::Item>)
where
    I: IntoIterator,
    I::Item: Joinable<Output = T>,
{
    let mut watch = Watch::new(handles);
    let total = watch.handles.len();
    let (mut count, mut failed) = (0, false);
    let satisfied = |count: usize, failed: bool| match when {
        ReturnWhen::FirstCompleted => count > 0 || total == 0,
        ReturnWhen::FirstException => failed || count == total,
        ReturnWhen::AllCompleted => count == total,
    };
    while !satisfied(count, failed) {
        for i in watch.next_batch() {
            count += 1;
            failed |= watch.handles[i]
                .as_ref()
                .is_some_and(|h| task_of(h).is_err());
        }
    }
    watch.disarm();
    let (mut done, mut pending) = (Vec::new(), Vec::new());
    for h in std::mem::take(&mut watch.handles).into_iter().flatten() {
        if task_of(&h).header().is_complete() {
            done.push(h);
        } else {
            pending.push(h);
        }
    }
    (done, pending)
}

/// Yields results in the order the green threads end: `asyncio.as_completed`.
/// The handles may be [`JoinHandle`]s or any other [`Joinable`] handles.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let order: Vec<u64> = stackful::run(|| {
///     let handles = [300, 100, 200].map(|ms| stackful::spawn(move || {
///         stackful::sleep(Duration::from_millis(ms));
///         ms
///     }));
///     stackful::as_completed(handles).map(Result::unwrap).collect()
/// });
/// assert_eq!(order, [100, 200, 300]);
/// ```
#[track_caller]
pub fn as_completed<T, I>(handles: I) -> AsCompleted<T, I::Item>
where
    I: IntoIterator,
    I::Item: Joinable<Output = T>,
{
    AsCompleted {
        watch: Watch::new(handles),
        queue: VecDeque::new(),
        _value: PhantomData,
    }
}

/// The iterator returned by [`as_completed`], over the values `T` of
/// handles of type `H`. Each `next` waits (a cancellation point) for the
/// next green thread to end. Dropping it drops the handles not yet yielded:
/// [`JoinHandle`]s detach their green threads.
pub struct AsCompleted<T, H: Joinable<Output = T> = JoinHandle<T>> {
    watch: Watch<H>,
    queue: VecDeque<usize>,
    _value: PhantomData<fn() -> T>,
}

impl<T, H: Joinable<Output = T>> Iterator for AsCompleted<T, H> {
    type Item = Result<T, JoinError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(i) = self.queue.pop_front() {
                let handle = self.watch.handles[i]
                    .take()
                    .expect("each completion is reported once");
                return Some(handle.take_completed());
            }
            if self.watch.pending() == 0 {
                return None;
            }
            self.queue.extend(self.watch.next_batch());
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.watch.pending() + self.queue.len();
        (n, Some(n))
    }
}

impl<T, H: Joinable<Output = T>> std::fmt::Debug for AsCompleted<T, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsCompleted")
            .field("remaining", &self.size_hint().0)
            .finish()
    }
}

/// A [`JoinHandle`] is a future of its green thread's outcome, the value
/// [`join`](JoinHandle::join) returns, so async code on any executor can
/// `.await` it. Awaiting does not block the executor's thread. It holds one
/// waker at a time, the one of its latest poll. Dropping the future (the
/// handle) before it completes detaches the green thread, as dropping the
/// handle always does, and releases that waker at once: the green thread's
/// end does not wake it.
///
/// # Panics
///
/// If polled again after it returned the outcome, or polled by the green
/// thread it joins (inside [`block_on`](crate::block_on)), which would wait
/// forever.
///
/// # Examples
///
/// ```
/// // A green thread on a stackful runtime, awaited from an async task.
/// let outcome = std::thread::scope(|s| {
///     let (tx, rx) = std::sync::mpsc::channel();
///     let rt = s.spawn(move || stackful::run(|| {
///         tx.send(stackful::spawn(|| 6 * 7)).unwrap();
///         stackful::sleep(std::time::Duration::from_millis(20));
///     }));
///     let handle = rx.recv().unwrap();
///     let outcome = futures::executor::block_on(handle);
///     rt.join().unwrap();
///     outcome
/// });
/// assert_eq!(outcome.unwrap(), 42);
/// ```
impl<T> std::future::Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    #[track_caller]
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        let Some(task) = &this.task else {
            panic!(
                "a JoinHandle was polled after it returned its green thread's outcome; \
                 await it once"
            );
        };
        let h = task.header();
        if !h.is_complete() {
            refuse_self_join(h);
            this.polled = true;
            if register_async(h, cx.waker()) {
                return std::task::Poll::Pending;
            }
        }
        let handle = JoinHandle {
            task: this.task.take(),
            polled: false,
        };
        std::task::Poll::Ready(handle.take())
    }
}

/// Registers `waker` to be woken when the green thread of `h` completes;
/// false if it has completed. A green thread has one `JoinHandle`, so at
/// most one async waiter: an untagged [`Waker::Async`] in its list is that
/// handle's, and a later poll only updates its waker (the one it replaces
/// is dropped). [`forget_async_waiter`] takes it out when the handle goes.
fn register_async(h: &crate::task::raw::Header, waker: &std::task::Waker) -> bool {
    let mut waiters = h.waiters.lock().unwrap_or_else(|e| e.into_inner());
    if h.is_complete() {
        return false;
    }
    let existing = waiters.iter().find_map(|w| match (&w.waker, &w.tag) {
        (Waker::Async(slot), None) => Some(slot.clone()),
        _ => None,
    });
    match existing {
        Some(slot) => {
            drop(waiters);
            // Then look again: a completion before the update may have
            // woken the waker of an earlier poll, not this one.
            slot.update(waker);
            if h.is_complete() {
                return false;
            }
        }
        None => {
            // As in `register`: `finish` takes the list only if this is set.
            if !h.mark_waited() {
                return false;
            }
            waiters.push(crate::task::raw::JoinWaiter {
                waker: Waker::Async(crate::bridge::AsyncWaker::new(waker)),
                tag: None,
            });
        }
    }
    true
}

/// Takes the async waiter of the `JoinHandle` of `h`'s green thread out of
/// its list, if the handle registered one (polled as a future) and the
/// green thread has not finished: the handle is being dropped, and its
/// executor's waker must neither stay alive until the green thread ends
/// nor be woken then. The waker is dropped after the lock is released (it
/// is the executor's code).
pub(crate) fn forget_async_waiter(h: &crate::task::raw::Header) {
    if h.is_complete() {
        return; // the waiters were taken and woken
    }
    let forgotten = {
        let mut waiters = h.waiters.lock().unwrap_or_else(|e| e.into_inner());
        let mine = waiters
            .iter()
            .position(|w| matches!((&w.waker, &w.tag), (Waker::Async(_), None)));
        mine.map(|i| waiters.remove(i))
    };
    drop(forgotten);
}
