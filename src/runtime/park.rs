//! The one seam where code waits.
//!
//! Everything that blocks (sleep, join, spawn_blocking, and the channels and
//! locks to come) waits through this module, like crossbeam-channel's
//! `Context`: it takes a [`Waker`] for the current context, registers it
//! wherever the wake-up will come from, and calls [`park`]. Inside a green
//! thread `park` suspends it and frees the worker; on a plain OS thread it
//! parks the thread. Either way it returns when woken (possibly spuriously,
//! so callers loop on their condition) or when the deadline passes, and it
//! is a cancellation point: it unwinds the caller if the green thread was
//! cancelled or an enclosing timeout expired.

use std::sync::Arc;
use std::thread::{self, Thread};
use std::time::Instant;

use crate::bridge::AsyncWaker;
use crate::cancel::{Cancelled, Cause};
use crate::debug;
use crate::runtime::worker;
use crate::scopes;
use crate::task::raw::{self, Suspend, TaskRef};

/// Who to wake: a green thread, a parked OS thread, or an async task (a
/// future of `stackful::bridge` waiting on a sync primitive).
#[derive(Clone)]
pub(crate) enum Waker {
    Task(TaskRef),
    Thread(Thread),
    Async(Arc<AsyncWaker>),
}

impl Waker {
    pub(crate) fn wake(&self) {
        match self {
            Waker::Task(task) => raw::wake(task),
            Waker::Thread(thread) => thread.unpark(),
            Waker::Async(slot) => slot.wake(),
        }
    }

    /// As `wake`, consuming the waker (a green thread's reference goes
    /// to the run queue instead of being counted again).
    pub(crate) fn wake_by_value(self) {
        match self {
            Waker::Task(task) => raw::wake_owned(task),
            other => other.wake(),
        }
    }

    /// Whether two wakers wake the same context.
    pub(crate) fn same(&self, other: &Waker) -> bool {
        match (self, other) {
            (Waker::Task(a), Waker::Task(b)) => std::ptr::addr_eq(a.header(), b.header()),
            (Waker::Thread(a), Waker::Thread(b)) => a.id() == b.id(),
            (Waker::Async(a), Waker::Async(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// The running green thread, if the caller is one.
pub(crate) fn current_task() -> Option<TaskRef> {
    worker::current_task()
}

/// A process-unique id for the calling context: the green thread's id, or
/// for a plain OS thread an id of its own with the top bit set (task ids
/// never reach it). Never 0.
pub(crate) fn context_id() -> u64 {
    thread_local! {
        static THREAD_ID: u64 = {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) | 1 << 63
        };
    }
    worker::with_current_task(|t| match t {
        Some(t) => t.header().id,
        None => THREAD_ID.with(|id| *id),
    })
}

/// `green thread #3 `name`` or `thread `main``, for messages.
pub(crate) fn describe_context() -> String {
    match current_task() {
        Some(t) => format!("green thread {}", t.header().describe()),
        None => format!(
            "thread `{}`",
            thread::current().name().unwrap_or("<unnamed>")
        ),
    }
}

/// A waker for the calling context.
pub(crate) fn current_waker() -> Waker {
    match current_task() {
        Some(task) => Waker::Task(task),
        None => Waker::Thread(thread::current()),
    }
}

/// Evaluates the cancel scopes and the green thread's own cancellation.
///
/// Nothing is raised while the calling context is in the middle of an
/// unwind (a panic's or a cancellation's), except by a timeout opened
/// during it: a second unwind started inside a destructor that runs during
/// the first one would abort the process. Such a cancellation is
/// `deferred`.
fn verdict(task: Option<&TaskRef>, now: Option<Instant>) -> scopes::Verdict {
    if task.is_some_and(plain) {
        return scopes::Verdict::default();
    }
    let cancelled = task.and_then(|t| t.header().cancel_cause());
    let panicking = worker::context_unwinding();
    let empty = match task {
        Some(t) => !t.header().has_scopes(),
        None => scopes::with(|s| s.is_empty()).unwrap_or(true),
    };
    if empty {
        return scopes::Verdict {
            raise: cancelled.filter(|_| !panicking),
            deferred: cancelled.is_some() && panicking,
            ..scopes::Verdict::default()
        };
    }
    let now = now.unwrap_or_else(Instant::now);
    scopes::with(|s| s.evaluate(now, cancelled, panicking)).unwrap_or_default()
}

/// A green thread with no scope open and no cancellation: it has nothing
/// to raise, defer or wake for.
#[inline]
fn plain(t: &TaskRef) -> bool {
    !t.header().has_scopes() && t.header().cancel_cause().is_none()
}

/// How soon a wait whose cancellation is deferred (see `verdict`) looks
/// again: the unwind may end without this wait being woken (a flag left by
/// an unwind caught while another green thread of the worker was also
/// unwinding; see `worker::note_unwind`).
const DEFERRED_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// The cancellation pending for the caller, without raising it.
pub(crate) fn pending() -> Option<Cause> {
    worker::with_current_task(|t| verdict(t, None)).raise
}

/// For a shielded wait that acts on the caller's cancellation (a scope
/// waiting for its children): the cancellation pending now, or else when to
/// wake up to notice the next one, that is the earliest deadline of an
/// enclosing timeout that has not expired, or soon if a cancellation is
/// deferred (see `verdict`). Both answers come from one evaluation at one
/// instant: asked apart, a timeout that expired between the two questions
/// was neither pending at the first nor a deadline at the second, and the
/// wait went on with no deadline.
pub(crate) fn pending_or_deadline() -> Result<Option<Instant>, Cause> {
    let v = worker::with_current_task(|t| verdict(t, None));
    if let Some(cause) = v.raise {
        return Err(cause);
    }
    if v.deferred {
        return Ok(earliest(v.deadline, Some(Instant::now() + DEFERRED_POLL)));
    }
    Ok(v.deadline)
}

/// A cancellation point that does not suspend: unwinds if the caller's green
/// thread was cancelled or an enclosing timeout expired.
pub(crate) fn checkpoint() {
    checkpoint_with(());
}

/// A cancellation point that hands `value` back, or drops it before it
/// unwinds: dropped during the unwind, a panic in its destructor would abort
/// the process.
pub(crate) fn checkpoint_with<V>(value: V) -> V {
    if let Some(cause) = pending() {
        drop(value);
        Cancelled::raise(cause);
    }
    value
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Waits until woken or until `deadline`, and is a cancellation point (see
/// the module docs). Spurious returns are possible: loop on the condition.
pub(crate) fn park(deadline: Option<Instant>) {
    wait(deadline, true);
}

/// Like [`park`], for a sleep: returns true when the green thread's timer
/// fired, so `deadline` has passed without reading the clock again. False
/// says nothing (woken early, or not a green thread): check the clock.
pub(crate) fn park_until(deadline: Instant) -> bool {
    wait(Some(deadline), true)
}

/// Like [`park`] but not a cancellation point: for waits that must not be
/// cut short (a `spawn_blocking` call or a scope waiting for its children).
pub(crate) fn park_shielded(deadline: Option<Instant>) {
    wait(deadline, false);
}

/// Returns whether a green thread's own timer ended the wait.
fn wait(deadline: Option<Instant>, cancellable: bool) -> bool {
    // Borrowed, as in `refuse_scheduler_loop`: the green thread's own
    // closure keeps it alive across the suspension.
    worker::with_current_task(|task| wait_as(task, deadline, cancellable))
}

fn wait_as(task: Option<&TaskRef>, deadline: Option<Instant>, cancellable: bool) -> bool {
    // The common case, with no `Verdict` built: a green thread with no
    // scope open and no cancellation pending has nothing to raise, defer,
    // report or wake early for (`verdict`'s own first case); after the
    // wait, only a cancellation that came meanwhile matters.
    if let Some(t) = task
        && plain(t)
    {
        let fired = suspend(t, deadline, Suspend::Wait);
        if cancellable
            && !plain(t)
            && let Some(cause) = verdict(task, None).raise
        {
            Cancelled::raise(cause);
        }
        return fired;
    }
    let mut wake_at = deadline;
    let mut unreported = None;
    if cancellable {
        let v = verdict(task, None);
        if let Some(cause) = v.raise {
            Cancelled::raise(cause);
        }
        wake_at = earliest(deadline, v.deadline);
        if v.deferred {
            wake_at = earliest(wake_at, Some(Instant::now() + DEFERRED_POLL));
        }
        unreported = v.unreported;
    } else if debug::enabled() {
        unreported = verdict(task, None).unreported;
    }
    // Debug mode: a destructor that waits during a deliberate unwind is
    // reported once it has taken longer than the slow threshold, even if the
    // wait never ends (so a hang says where it is).
    let report_at = unreported
        .filter(|_| debug::enabled())
        .map(|(id, since)| (id, since + debug::slow_threshold()));
    if let Some((_, at)) = report_at {
        wake_at = earliest(wake_at, Some(at));
    }
    let fired = match task {
        Some(task) => suspend(task, wake_at, Suspend::Wait),
        None => {
            refuse_scheduler_loop();
            match wake_at {
                Some(at) => thread::park_timeout(at.saturating_duration_since(Instant::now())),
                None => thread::park(),
            }
            false
        }
    };
    if let Some((id, at)) = report_at
        && Instant::now() >= at
    {
        report_slow_unwind(id, at);
    }
    if cancellable && let Some(cause) = verdict(task, None).raise {
        Cancelled::raise(cause);
    }
    // An earlier timeout's timer firing says nothing about `deadline`.
    fired && wake_at == deadline
}

/// Debug mode: a destructor is still waiting, or has waited, past the slow
/// threshold during the unwind whose shield is `id`. Said once per unwind.
#[cold]
fn report_slow_unwind(id: u64, threshold_passed_at: Instant) {
    let ms = (Instant::now() - threshold_passed_at + debug::slow_threshold()).as_millis();
    debug::warn(format_args!(
        "{} has been unwinding from a cancellation, timeout or generator close for {ms} ms, \
         waiting in a destructor; such waits are shielded and last as long as what they wait \
         for: bound them with `stackful::timeout` inside the destructor",
        describe_context()
    ));
    scopes::with(|s| s.mark_reported(id));
}

/// A wait on a worker's (or a `run` thread's) own loop, outside any green
/// thread. No user code should run there (destructors of green threads'
/// closures and results run on green threads or their handles' owners), so
/// this is a safety net: such a wait would block the thread every green
/// thread pinned to it depends on.
#[cold]
#[inline(never)]
pub(crate) fn scheduler_wait() -> ! {
    panic!(
        "code run by stackful's scheduler on a worker's own loop, outside any green thread, \
         tried to wait (a stackful lock, channel, sleep, join, scope or run); waiting there \
         would stall every green thread of that worker. Move the waiting into a green thread"
    )
}

/// Panics (see `scheduler_wait`) if the caller runs on a scheduler's loop
/// outside any green thread: for `scope` and `run`, which must find out
/// before they lend anything out, since they may not unwind while they wait.
#[inline]
pub(crate) fn refuse_scheduler_loop() {
    if on_scheduler_loop() {
        scheduler_wait();
    }
}

/// Whether the caller runs on a scheduler's loop outside any green thread
/// (where waiting is refused; see `refuse_scheduler_loop`).
#[inline]
pub(crate) fn on_scheduler_loop() -> bool {
    // Borrowed, not `current_task()`: a clone and drop of the task's
    // reference would cost two atomic operations on every rendezvous.
    worker::with_current_task(|t| t.is_none()) && worker::with_current(|w| w.is_some())
}

/// Suspends the running green thread `task` until woken or `wake_at`.
/// Returns whether the timer for `wake_at` is what woke it.
pub(crate) fn suspend(task: &TaskRef, wake_at: Option<Instant>, how: Suspend) -> bool {
    let h = task.header();
    if let Some(at) = wake_at {
        let seq = worker::with_current(|w| {
            w.expect("a green thread runs on a worker")
                .add_timer(at, task)
        });
        h.local.timer.set(seq);
    }
    switch_out(h, how);
    // The worker clears `timer` when it fires; still set, it was woken
    // before its timer, which goes stale.
    if h.local.timer.replace(0) != 0 {
        worker::with_current(|w| w.expect("a green thread runs on a worker").forget_timer());
        return false;
    }
    wake_at.is_some()
}

/// Switches the running green thread, whose header is `h`, out to its
/// worker, first noting where its frames are for the worker to prefetch
/// before the next resume.
#[inline(always)]
fn switch_out(h: &raw::Header, how: Suspend) {
    let marker = 0u8;
    let frames = std::hint::black_box(std::ptr::addr_of!(marker)) as usize;
    h.local.resume_hint.set(frames);
    let yielder = h.local.yielder.get();
    // SAFETY: `yielder` was stored by the green thread's entry closure from
    // the reference corosensei gave it, and stays valid while the body runs;
    // callers are inside the body (`h` is the green thread running here).
    unsafe { (*yielder).suspend(how) };
}

/// `yield_now` inside a green thread: back of the ready queue, then on.
/// Returns false on a plain OS thread. A cancellation point: the check after
/// the switch sees any cancellation requested before it too.
#[inline]
pub(crate) fn yield_current() -> bool {
    worker::with_current_task(|task| {
        let Some(task) = task else { return false };
        let h = task.header();
        switch_out(h, Suspend::Requeue);
        if h.state.load(std::sync::atomic::Ordering::Relaxed) & raw::CANCELLED != 0
            || h.has_scopes()
        {
            after_yield(task);
        }
        true
    })
}

/// Raises a cancellation pending after a `yield_now`, if any.
#[cold]
#[inline(never)]
fn after_yield(task: &TaskRef) {
    if let Some(cause) = verdict(Some(task), None).raise {
        Cancelled::raise(cause);
    }
}
