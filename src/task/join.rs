//! Waiting on several green threads: `join_all`, `gather`, `wait` and
//! `as_completed`, asyncio's patterns over [`JoinHandle`]s.
//!
//! They register one waiter on every green thread, tagged with its index, so
//! each completion reports *which* one finished: waiting on n green threads
//! costs O(n) in all, not O(n) per completion.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::runtime::park::{self, Waker};
use crate::task::raw::Completions;
use crate::task::{JoinError, JoinHandle, register};

/// Joins every handle in order and returns every outcome:
/// `asyncio.gather(..., return_exceptions=True)`.
///
/// # Examples
///
/// ```
/// let handles = (0..3).map(|i| stackful::spawn(move || i * 10));
/// let results = stackful::join_all(handles);
/// assert_eq!(results.into_iter().map(Result::unwrap).collect::<Vec<_>>(), [0, 10, 20]);
/// ```
pub fn join_all<T, I>(handles: I) -> Vec<Result<T, JoinError>>
where
    I: IntoIterator<Item = JoinHandle<T>>,
{
    handles.into_iter().map(JoinHandle::join).collect()
}

/// Handles being waited on, with the set their completions report to.
struct Watch<T> {
    handles: Vec<Option<JoinHandle<T>>>,
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
impl<T> Drop for Watch<T> {
    fn drop(&mut self) {
        self.disarm();
    }
}

impl<T> Watch<T> {
    fn new(handles: impl IntoIterator<Item = JoinHandle<T>>) -> Watch<T> {
        let handles: Vec<_> = handles.into_iter().map(Some).collect();
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
                && !register(h.header(), waker.clone(), Some((self.set.clone(), i)))
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
            let mut waiters = h.header().waiters.lock().unwrap_or_else(|e| e.into_inner());
            waiters.retain(|w| {
                !w.tag
                    .as_ref()
                    .is_some_and(|(s, _)| Arc::ptr_eq(s, &self.set))
            });
        }
    }
}

/// Waits for all the green threads and returns their values in input order:
/// `asyncio.gather`. The first failure (in completion order) cancels the
/// others and is returned. If the caller is cancelled while waiting, the
/// green threads are cancelled too, as asyncio does.
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
pub fn gather<T, I>(handles: I) -> Result<Vec<T>, JoinError>
where
    I: IntoIterator<Item = JoinHandle<T>>,
{
    /// Cancels whatever is still pending when `gather` leaves early.
    struct CancelRest<T>(Watch<T>);
    impl<T> Drop for CancelRest<T> {
        fn drop(&mut self) {
            for h in self.0.handles.iter().flatten() {
                h.cancel();
            }
        }
    }
    let mut watch = CancelRest(Watch::new(handles));
    let mut values: Vec<Option<T>> = watch.0.handles.iter().map(|_| None).collect();
    while watch.0.pending() > 0 {
        for i in watch.0.next_batch() {
            let handle = watch.0.handles[i]
                .take()
                .expect("each completion is reported once");
            values[i] = Some(handle.take()?);
        }
    }
    Ok(values
        .into_iter()
        .map(|v| v.expect("every green thread completed"))
        .collect())
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
/// handles can be waited on again.
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
pub fn wait<T, I>(handles: I, when: ReturnWhen) -> (Vec<JoinHandle<T>>, Vec<JoinHandle<T>>)
where
    I: IntoIterator<Item = JoinHandle<T>>,
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
            failed |= watch.handles[i].as_ref().is_some_and(|h| h.raw().is_err());
        }
    }
    watch.disarm();
    let (mut done, mut pending) = (Vec::new(), Vec::new());
    for h in std::mem::take(&mut watch.handles).into_iter().flatten() {
        if h.is_finished() {
            done.push(h);
        } else {
            pending.push(h);
        }
    }
    (done, pending)
}

/// Yields results in the order the green threads end: `asyncio.as_completed`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let order: Vec<u64> = stackful::run(|| {
///     let handles = [30, 10, 20].map(|ms| stackful::spawn(move || {
///         stackful::sleep(Duration::from_millis(ms));
///         ms
///     }));
///     stackful::as_completed(handles).map(Result::unwrap).collect()
/// });
/// assert_eq!(order, [10, 20, 30]);
/// ```
pub fn as_completed<T, I>(handles: I) -> AsCompleted<T>
where
    I: IntoIterator<Item = JoinHandle<T>>,
{
    AsCompleted {
        watch: Watch::new(handles),
        queue: VecDeque::new(),
    }
}

/// The iterator returned by [`as_completed`]. Each `next` waits (a
/// cancellation point) for the next green thread to end. Dropping it
/// detaches the ones not yet yielded.
pub struct AsCompleted<T> {
    watch: Watch<T>,
    queue: VecDeque<usize>,
}

impl<T> Iterator for AsCompleted<T> {
    type Item = Result<T, JoinError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(i) = self.queue.pop_front() {
                let handle = self.watch.handles[i]
                    .take()
                    .expect("each completion is reported once");
                return Some(handle.take());
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

impl<T> std::fmt::Debug for AsCompleted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsCompleted")
            .field("remaining", &self.size_hint().0)
            .finish()
    }
}
