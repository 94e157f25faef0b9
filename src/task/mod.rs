//! Green threads: spawn, join, cancel, and waiting on several at once.
//!
//! [`spawn`] starts a green thread and returns a
//! [`JoinHandle`]; [`JoinHandle::join`] waits for its result. Inside a green
//! thread, waiting suspends only the green thread; on a plain OS thread it
//! blocks the thread, so library code works in both worlds.
//!
//! [`gather`], [`try_gather`], [`join_all`], [`wait`] and [`as_completed`]
//! wait on several handles at once (a [`scope`]'s too; see [`Joinable`]),
//! and a [`JoinSet`] holds a set that grows while it runs.
//!
//! [`task_local!`](crate::task_local) declares values that each green thread
//! has its own of ([`LocalKey`]).

pub(crate) mod join;
pub(crate) mod join_set;
pub(crate) mod local;
pub(crate) mod raw;
pub(crate) mod scope;

use std::any::Any;
use std::fmt;
use std::io;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use stackful_arch::StackError;

use crate::debug;
use crate::runtime::park::{self, Waker};
use crate::runtime::{self, RtShared};
use raw::{HANDLE, Header, JoinWaiter, STORED, TaskRef, TypedTask};

pub use join::{
    AsCompleted, Joinable, ReturnWhen, as_completed, gather, join_all, try_gather, wait,
};
pub use join_set::JoinSet;
pub use local::{AccessError, LocalKey};
pub use scope::{Scope, ScopedJoinHandle, scope};

/// The identity of a green thread, unique within the process. Ids taken on
/// one thread increase; across threads they are not ordered by spawn time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(u64);

impl Id {
    /// The number behind the id.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The id and name of a green thread, as [`current`] reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    id: Id,
    name: Option<String>,
}

impl TaskInfo {
    /// The green thread's id.
    pub fn id(&self) -> Id {
        self.id
    }

    /// The green thread's name, if it was given one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

/// The id and name of the green thread that calls it, or `None` on a plain
/// OS thread.
///
/// # Examples
///
/// ```
/// use stackful::task;
///
/// assert!(task::current().is_none()); // not a green thread
/// let name = stackful::run(|| {
///     task::Builder::new().name("fetcher").spawn(|| task::current().unwrap()).unwrap().join()
/// });
/// assert_eq!(name.unwrap().name(), Some("fetcher"));
/// ```
pub fn current() -> Option<TaskInfo> {
    park::current_task().map(|t| {
        let h = t.header();
        TaskInfo {
            id: Id(h.id),
            name: h.name.as_deref().map(str::to_string),
        }
    })
}

/// Why a green thread produced no value: it panicked, it was cancelled, or
/// it could not start (no stack could be mapped for it).
///
/// # Examples
///
/// ```
/// stackful::run(|| {
///     let crashed = stackful::spawn(|| -> u32 { panic!("disk full") });
///     let err = crashed.join().unwrap_err();
///     assert!(err.is_panic());
///     println!("{err}"); // names the green thread and the panic message
///     let payload = err.into_panic(); // re-raise with `resume_unwind` if wanted
///     assert_eq!(payload.downcast_ref::<&str>(), Some(&"disk full"));
///
///     let sleeper = stackful::spawn(|| stackful::sleep(std::time::Duration::from_secs(3600)));
///     sleeper.cancel();
///     assert!(sleeper.join().unwrap_err().is_cancelled());
/// });
/// ```
pub struct JoinError(Box<ErrorInner>);

/// Boxed, so that an error is one pointer wide: every green thread's
/// record keeps room for a `Result<T, JoinError>`, and errors are rare.
struct ErrorInner {
    id: u64,
    name: Option<Box<str>>,
    repr: Repr,
}

enum Repr {
    Cancelled,
    Panic(Box<dyn Any + Send>),
    NoStack(StackError),
}

impl JoinError {
    pub(crate) fn cancelled(h: &Header) -> JoinError {
        JoinError(Box::new(ErrorInner {
            id: h.id,
            name: h.name.clone(),
            repr: Repr::Cancelled,
        }))
    }

    pub(crate) fn panic(h: &Header, payload: Box<dyn Any + Send>) -> JoinError {
        JoinError(Box::new(ErrorInner {
            id: h.id,
            name: h.name.clone(),
            repr: Repr::Panic(payload),
        }))
    }

    pub(crate) fn no_stack(h: &Header, e: StackError) -> JoinError {
        JoinError(Box::new(ErrorInner {
            id: h.id,
            name: h.name.clone(),
            repr: Repr::NoStack(e),
        }))
    }

    /// Whether the green thread was cancelled (by [`JoinHandle::cancel`], a
    /// failing sibling, or the shutdown of its `run`).
    pub fn is_cancelled(&self) -> bool {
        matches!(self.0.repr, Repr::Cancelled)
    }

    /// Whether the green thread panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.0.repr, Repr::Panic(_))
    }

    /// The id of the green thread.
    pub fn id(&self) -> Id {
        Id(self.0.id)
    }

    /// The panic payload, to re-raise with [`std::panic::resume_unwind`].
    ///
    /// # Panics
    ///
    /// If the error is not a panic; check [`is_panic`](JoinError::is_panic).
    pub fn into_panic(self) -> Box<dyn Any + Send> {
        match self.try_into_panic() {
            Ok(payload) => payload,
            Err(e) => panic!("`JoinError::into_panic` called on an error that is not a panic: {e}"),
        }
    }

    /// The panic payload, or the error itself if it is not a panic.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send>, JoinError> {
        if !self.is_panic() {
            return Err(self);
        }
        match self.0.repr {
            Repr::Panic(payload) => Ok(payload),
            _ => unreachable!("checked just above"),
        }
    }

    fn who(&self) -> String {
        match &self.0.name {
            Some(n) => format!("green thread #{} `{n}`", self.0.id),
            None => format!("green thread #{}", self.0.id),
        }
    }
}

/// The message of a panic payload, when it is a string.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.repr {
            Repr::Cancelled => write!(f, "{} was cancelled", self.who()),
            Repr::Panic(p) => match panic_message(&**p) {
                Some(msg) => write!(f, "{} panicked: {msg}", self.who()),
                None => write!(f, "{} panicked", self.who()),
            },
            Repr::NoStack(e) => write!(f, "{} could not start: {e}", self.who()),
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.0.repr {
            Repr::Cancelled => "Cancelled",
            Repr::Panic(_) => "Panic",
            Repr::NoStack(_) => "NoStack",
        };
        f.debug_struct("JoinError")
            .field("id", &self.0.id)
            .field("kind", &kind)
            .field("message", &self.to_string())
            .finish()
    }
}

impl std::error::Error for JoinError {}

/// An owned permission to join a green thread (to wait for its result).
///
/// Dropping the handle detaches the green thread, which keeps running, as
/// with std's and tokio's handles; the shutdown of its `run` still cancels
/// it. A result nobody takes is dropped by the green thread itself when it
/// ends, or by `drop` here if it has ended already (never by a worker's
/// scheduling loop); a panic in its destructor is caught there, and debug
/// mode reports it.
pub struct JoinHandle<T> {
    /// `None` only once `take` has moved the result out, so that `Drop`
    /// knows there is nothing left to do (one atomic and one lock less
    /// per join).
    task: Option<TypedTask<T>>,
    /// Polled as a future while its green thread ran: it may have left an
    /// async waiter with the green thread, which its drop takes back.
    pub(crate) polled: bool,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(task: TypedTask<T>) -> JoinHandle<T> {
        JoinHandle {
            task: Some(task),
            polled: false,
        }
    }

    fn typed(&self) -> &TypedTask<T> {
        match &self.task {
            Some(task) => task,
            None => unreachable!("a JoinHandle is used after its result was taken"),
        }
    }

    pub(crate) fn header(&self) -> &Header {
        self.typed().header()
    }

    pub(crate) fn raw(&self) -> &TaskRef {
        self.typed().task()
    }

    /// Waits for the green thread to end and returns its value, or why there
    /// is none. Inside a green thread this suspends it (and is a
    /// cancellation point); on a plain OS thread it blocks.
    ///
    /// # Panics
    ///
    /// If a green thread tries to join itself, which would wait forever.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = stackful::spawn(|| 6 * 7);
    /// assert_eq!(h.join().unwrap(), 42);
    /// ```
    #[track_caller]
    pub fn join(self) -> Result<T, JoinError> {
        refuse_self_join(self.header());
        wait_complete(self.header(), None);
        self.take()
    }

    /// Takes the result of a completed green thread.
    pub(crate) fn take(mut self) -> Result<T, JoinError> {
        let task = self.task.take().expect("a JoinHandle is taken once");
        task.take_result().unwrap_or_else(|| {
            panic!(
                "stackful: the result of green thread {} was already taken",
                task.header().describe()
            )
        })
    }

    /// Requests cancellation. A green thread that has not started is dropped
    /// without running (its closure is dropped here; if that destructor
    /// panics, the panic is its outcome); a running one unwinds from its
    /// current or next suspension point (destructors run, and their waits
    /// are not cancelled again: see [`crate::cancel`]), and
    /// [`join`](JoinHandle::join) then returns an error with
    /// [`is_cancelled`](JoinError::is_cancelled). A green thread that
    /// completes before it reaches a suspension point keeps its value.
    pub fn cancel(&self) {
        raw::cancel(self.raw());
    }

    /// Whether the green thread has ended; [`join`](JoinHandle::join) then
    /// returns at once.
    pub fn is_finished(&self) -> bool {
        self.header().is_complete()
    }

    /// The green thread's id.
    pub fn id(&self) -> Id {
        Id(self.header().id)
    }

    /// The green thread's name, if it was given one.
    pub fn name(&self) -> Option<&str> {
        self.header().name.as_deref()
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        let Some(task) = &self.task else {
            return; // joined: the result was taken
        };
        let h = task.header();
        // Polled as a future and dropped pending: its waker goes now.
        if self.polled {
            join::forget_async_waiter(h);
        }
        let prev = h.state.fetch_and(!HANDLE, Ordering::AcqRel);
        if prev & STORED == 0 {
            return; // its green thread drops the result when it ends
        }
        // Stored already and never taken: it is ours to drop, here on the
        // handle owner's thread rather than on whichever thread drops the
        // last reference (a worker's loop, say).
        if debug::enabled() && task.task().is_panic() {
            debug::warn(format_args!(
                "the handle of green thread {} (spawned at {}) was dropped without joining it, \
                 and it had panicked",
                h.describe(),
                h.site
            ));
        }
        if let Some(result) = task.take_result() {
            raw::drop_detached_result(h, result);
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("task", self.header())
            .finish()
    }
}

/// Panics if the caller is the green thread `h`, which would wait for itself
/// forever.
#[track_caller]
pub(crate) fn refuse_self_join(h: &Header) {
    if runtime::worker::with_current_task(|me| me.is_some_and(|me| std::ptr::eq(me.header(), h))) {
        panic!(
            "green thread {} tried to join itself, which would wait forever",
            h.describe()
        );
    }
}

impl<T> JoinHandle<T> {
    /// Turns the handle into a guard that cancels the green thread when it
    /// is dropped, for the places where detaching it would be wrong: a
    /// green thread that serves only the code holding the guard, and must
    /// not outlive it when that code returns early, panics or is cancelled.
    ///
    /// Dropping the guard requests the cancellation and returns: it does
    /// not wait for the green thread to unwind (a [`JoinSet`] does).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stackful::sync::channel;
    ///
    /// stackful::run(|| {
    ///     let (alive, watch) = channel::<()>(1);
    ///     let heartbeat = stackful::spawn(move || {
    ///         let _alive = alive; // dropped when the loop unwinds
    ///         loop {
    ///             stackful::sleep(Duration::from_millis(10)); // ping a peer, say
    ///         }
    ///     })
    ///     .abort_on_drop();
    ///     drop(heartbeat); // a plain JoinHandle would leave the loop running
    ///     assert!(watch.recv().is_err()); // cancelled: its sender is gone
    /// });
    /// ```
    pub fn abort_on_drop(self) -> AbortOnDrop<T> {
        AbortOnDrop { handle: Some(self) }
    }
}

/// A [`JoinHandle`] that cancels its green thread when dropped, instead of
/// detaching it; made by [`JoinHandle::abort_on_drop`].
///
/// Dropping it requests the cancellation as [`JoinHandle::cancel`] does and
/// returns at once, without waiting for the green thread to unwind. It can
/// still be joined, and [`into_handle`](AbortOnDrop::into_handle) gives the
/// plain handle back. The functions that wait on several green threads
/// ([`gather`], [`wait`], ...) accept it too: see [`Joinable`]. A guard
/// dropped by the very green thread it guards only detaches, as a
/// [`JoinSet`] does with its own member.
pub struct AbortOnDrop<T> {
    /// `None` only once `join`, `into_handle` or a combinator moved the
    /// handle out, so that `Drop` cancels nothing.
    handle: Option<JoinHandle<T>>,
}

impl<T> AbortOnDrop<T> {
    fn handle(&self) -> &JoinHandle<T> {
        match &self.handle {
            Some(handle) => handle,
            None => unreachable!("an AbortOnDrop is used after its handle was moved out"),
        }
    }

    fn into_inner(mut self) -> JoinHandle<T> {
        self.handle
            .take()
            .expect("an AbortOnDrop gives its handle away once")
    }

    /// Waits for the green thread to end and returns its value, or why there
    /// is none, as [`JoinHandle::join`]. If the caller is cancelled while it
    /// waits, the guard is dropped as the caller unwinds, and cancels the
    /// green thread.
    ///
    /// # Panics
    ///
    /// If a green thread tries to join itself, which would wait forever.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = stackful::spawn(|| 6 * 7).abort_on_drop();
    /// assert_eq!(h.join().unwrap(), 42);
    /// ```
    #[track_caller]
    pub fn join(self) -> Result<T, JoinError> {
        let h = self.handle().header();
        refuse_self_join(h);
        wait_complete(h, None); // unwinding from here drops `self`: a cancel
        self.into_inner().take()
    }

    /// Requests cancellation now, as [`JoinHandle::cancel`].
    pub fn cancel(&self) {
        self.handle().cancel();
    }

    /// Whether the green thread has ended.
    pub fn is_finished(&self) -> bool {
        self.handle().is_finished()
    }

    /// The green thread's id.
    pub fn id(&self) -> Id {
        self.handle().id()
    }

    /// The green thread's name, if it was given one.
    pub fn name(&self) -> Option<&str> {
        self.handle().name()
    }

    /// The plain [`JoinHandle`] back: dropping that one detaches the green
    /// thread rather than cancel it.
    ///
    /// # Examples
    ///
    /// ```
    /// let guard = stackful::spawn(|| "left to run").abort_on_drop();
    /// let handle = guard.into_handle(); // nothing is cancelled
    /// assert_eq!(handle.join().unwrap(), "left to run");
    /// ```
    pub fn into_handle(self) -> JoinHandle<T> {
        self.into_inner()
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        // A cancel drops an unstarted closure here (on a scheduler's loop it
        // leaves that to the green thread), under `catch_unwind` and in a
        // shield: its panic becomes the green thread's outcome, so this is
        // safe in an unwind too. The handle then detaches.
        if let Some(handle) = self.handle.take() {
            // Never the caller itself (a guard that reached its own green
            // thread, say, and whose refused self-join is unwinding): as a
            // `JoinSet` does, the guard then only detaches.
            let me = park::current_task();
            if !me.is_some_and(|t| std::ptr::addr_eq(t.header(), handle.header())) {
                // Before the cancel, which may end the green thread here:
                // a waker of the handle polled as a future is not woken.
                if handle.polled {
                    join::forget_async_waiter(handle.header());
                }
                cancel_from_anywhere(handle.raw());
            }
        }
    }
}

impl<T> fmt::Debug for AbortOnDrop<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortOnDrop")
            .field("task", self.handle().header())
            .finish()
    }
}

impl<T> join::sealed::Sealed for AbortOnDrop<T> {
    type Value = T;

    fn task(&self) -> join::sealed::Task<'_> {
        join::sealed::Task(self.handle().raw())
    }

    fn take_completed(self) -> Result<T, JoinError> {
        self.into_inner().take()
    }
}

impl<T> Joinable for AbortOnDrop<T> {
    type Output = T;
}

/// Whether the caller runs on a scheduler's own loop, outside any green
/// thread (a destructor of a value the scheduler drops there), where no
/// user code may run and nothing may wait.
pub(crate) fn on_scheduler_loop() -> bool {
    park::current_task().is_none() && runtime::worker::with_current(|w| w.is_some())
}

/// Cancels `task` from a destructor, which may run on a scheduler's loop:
/// there, an unstarted green thread is left to drop its own closure.
pub(crate) fn cancel_from_anywhere(task: &TaskRef) {
    if on_scheduler_loop() {
        raw::cancel_from_scheduler(task);
    } else {
        raw::cancel(task);
    }
}

/// Waits until `task` completes. With `tag`, the completion is also reported
/// to a set (see `join.rs`). Cancellation point.
pub(crate) fn wait_complete(h: &Header, tag: Option<(Arc<raw::Completions>, usize)>) {
    loop {
        if h.is_complete() {
            return;
        }
        register(h, park::current_waker(), tag.clone());
        if h.is_complete() {
            return;
        }
        park::park(None);
    }
}

/// Adds a join waiter unless an equivalent one is there already. Returns
/// false if the green thread completed meanwhile (the waiter is not added).
pub(crate) fn register(
    h: &Header,
    waker: Waker,
    tag: Option<(Arc<raw::Completions>, usize)>,
) -> bool {
    let mut waiters = h.waiters.lock().unwrap_or_else(|e| e.into_inner());
    if h.is_complete() {
        return false;
    }
    let same_tag = |w: &JoinWaiter| match (&w.tag, &tag) {
        (None, None) => true,
        (Some((a, i)), Some((b, j))) => Arc::ptr_eq(a, b) && i == j,
        _ => false,
    };
    if !waiters.iter().any(|w| w.waker.same(&waker) && same_tag(w)) {
        // Tell `finish` to take the list (see `WAITED`), unless it has
        // already finished without looking at it.
        if !h.mark_waited() {
            return false;
        }
        waiters.push(JoinWaiter { waker, tag });
    }
    true
}

/// Sets the name and stack size of a green thread before spawning it, like
/// [`std::thread::Builder`].
///
/// # Examples
///
/// ```
/// use stackful::task::Builder;
///
/// let h = Builder::new().name("fetcher").stack_size(1 << 20).spawn(|| 1).unwrap();
/// assert_eq!(h.name(), Some("fetcher"));
/// assert_eq!(h.join().unwrap(), 1);
///
/// let err = Builder::new().stack_size(1).spawn(|| 1).unwrap_err();
/// assert!(err.to_string().contains("invalid green thread stack size"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
}

impl Builder {
    /// A builder with no name and the runtime's default stack size.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the green thread; the name shows in `current()`, in errors and
    /// in the stack overflow message.
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Sets the stack size in bytes (16 KiB to 1 GiB).
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Spawns the green thread on the current green thread's runtime, or on
    /// the global runtime from a plain OS thread.
    ///
    /// # Errors
    ///
    /// An invalid stack size, a runtime or `run` that is shutting down, or
    /// too many *started* green threads for the kernel's `vm.max_map_count`;
    /// each message says which and what to do.
    ///
    /// # A burst of spawns is accepted, and may fail at start
    ///
    /// A green thread gets its stack when it starts, not when it is spawned,
    /// so the limit is checked against the green threads that have started
    /// (every 64th spawn of a thread). A fast burst of spawns is therefore
    /// accepted, every call returning `Ok`, even beyond the number of stacks
    /// that fit: 32 253 under the default `vm.max_map_count` of 65530 (see
    /// [`MapLimit`](crate::stack::MapLimit)). The green threads of the burst
    /// that find no stack when they start end without running (their
    /// closure is dropped), and their [`JoinHandle::join`] returns an error
    /// that says it "could not start" and which limit refused the stack:
    /// stackful's own, which keeps some mappings for the rest of the
    /// process, or the kernel's `mmap`. To run more green threads at once,
    /// raise `vm.max_map_count`; to stay under it, bound how many are alive
    /// at once (with a [`Semaphore`](crate::sync::Semaphore), say).
    #[track_caller]
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let site = Location::caller();
        let (name, stack_size) = (self.name, self.stack_size);
        let spawn = move |rt: &Arc<RtShared>, group| {
            let size = stack_size.unwrap_or(rt.config.stack_size);
            runtime::spawn_task(rt, group, None, name, size, site, f)
        };
        // From a green thread, its runtime is borrowed from its header, not
        // counted: the new header takes the one count it needs.
        let task = match runtime::worker::with_current_task(move |me| match me {
            Some(t) => Ok(spawn(&t.header().rt, t.header().group.clone())),
            None => Err(spawn),
        }) {
            Ok(spawned) => spawned?,
            // Here, not in the closure: `global` records the user's line
            // (track_caller) if this builds the global runtime.
            Err(spawn) => spawn(runtime::global(), None)?,
        };
        Ok(JoinHandle::new(task))
    }

    /// Spawns on a given runtime; the green thread joins the caller's `run`
    /// when the caller is a green thread of that same runtime.
    #[track_caller]
    pub(crate) fn spawn_on<F, T>(self, rt: &Arc<RtShared>, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let group = park::current_task()
            .filter(|t| Arc::ptr_eq(&t.header().rt, rt))
            .and_then(|t| t.header().group.clone());
        let size = self.stack_size.unwrap_or(rt.config.stack_size);
        let task = runtime::spawn_task(rt, group, None, self.name, size, Location::caller(), f)?;
        Ok(JoinHandle::new(task))
    }
}

/// Spawns a green thread: Python's `asyncio.create_task`.
///
/// It runs on the current green thread's runtime (as part of the same `run`),
/// or on the global runtime when called from a plain OS thread. The handle
/// joins or cancels it; dropping the handle detaches it.
///
/// The green thread gets its stack when it starts. So a fast burst of
/// spawns is accepted even beyond the number of stacks that fit under the
/// kernel's `vm.max_map_count` (32 253 by default), and the green threads
/// of the burst that find no stack fail at start: they never run, and
/// their `join` returns the error, which says which limit refused the
/// stack. See [`task::Builder::spawn`](Builder::spawn) for more.
///
/// # Panics
///
/// When [`task::Builder::spawn`](Builder::spawn) would return an error, with
/// its message: an invalid default stack size, a runtime or `run` that is
/// shutting down, or too many started green threads for the mapping limit.
///
/// # Examples
///
/// ```
/// let h = stackful::spawn(|| "hello from a green thread");
/// assert_eq!(h.join().unwrap(), "hello from a green thread");
/// ```
#[track_caller]
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new()
        .spawn(f)
        .unwrap_or_else(|e| panic!("stackful: could not spawn a green thread: {e}"))
}
