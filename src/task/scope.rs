//! Structured concurrency: green threads that may borrow from their parent.
//!
//! [`scope`] is to green threads what [`std::thread::scope`] is to threads:
//! every green thread spawned on the [`Scope`] has ended before `scope`
//! returns or unwinds, so it may borrow anything that outlives the call. It
//! is sound by construction: the waiting happens inside `scope` itself, not
//! in a guard's `Drop` that `mem::forget` could skip.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe, Location};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::cancel::{AbortOnUnwind, Cancelled};
use crate::runtime::park::{self, Waker};
use crate::runtime::{self, Group, RtShared};
use crate::task::join::sealed::{self, Sealed};
use crate::task::raw::{self, TaskRef, TypedTask};
use crate::task::{Id, JoinError, Joinable, refuse_self_join, wait_complete};

/// What a scope and its children share.
pub(crate) struct ScopeShared {
    children: Mutex<Vec<TaskRef>>,
    /// Children that have not completed.
    pending: AtomicUsize,
    /// The scope's owner, to wake when `pending` reaches zero.
    owner: Mutex<Option<Waker>>,
    /// A child panicked: the others were cancelled.
    failed: AtomicBool,
    /// The child whose panic set `failed`: the root cause, re-raised first.
    first_panic: Mutex<Option<TaskRef>>,
}

impl ScopeShared {
    /// Cancels every child: `cancel` drops the unstarted ones here (the
    /// scope's owner calls this), `cancel_from_scheduler` leaves them to
    /// drop themselves (a worker's loop calls this).
    fn cancel_children(&self, cancel: fn(&TaskRef)) {
        let children = self
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for child in &children {
            cancel(child);
        }
    }

    /// Called by the scheduler when a child completes (often on a worker's
    /// loop, where no user code may run).
    pub(crate) fn child_finished(&self, task: &TaskRef) {
        if task.is_panic() && !self.failed.swap(true, Ordering::AcqRel) {
            *self.first_panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.clone());
            self.cancel_children(raw::cancel_from_scheduler);
        }
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let owner = self.owner.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(w) = owner {
                w.wake();
            }
        }
    }
}

/// A scope to spawn borrowing green threads in; see [`scope`].
///
/// # Examples
///
/// ```
/// let mut totals = [0u64; 2];
/// let data = vec![1u64, 2, 3, 4];
/// stackful::run(|| {
///     stackful::scope(|s| {
///         let (left, right) = totals.split_at_mut(1);
///         // Children borrow `data` and write into `totals`: no `Arc` needed.
///         s.spawn(|| left[0] = data[..2].iter().sum());
///         s.spawn(|| right[0] = data[2..].iter().sum());
///     }); // every child has finished here
/// });
/// assert_eq!(totals, [3, 7]);
/// ```
pub struct Scope<'scope, 'env: 'scope> {
    shared: Arc<ScopeShared>,
    rt: Arc<RtShared>,
    group: Option<Arc<Group>>,
    /// Invariance over 'scope, as in std: a Scope cannot be shrunk or grown.
    scope: PhantomData<&'scope mut &'scope ()>,
    /// Invariance over 'env.
    env: PhantomData<&'env mut &'env ()>,
}

/// Runs `f` with a [`Scope`] on which it can spawn green threads that borrow
/// from the caller. All of them have ended before `scope` returns.
///
/// - If a child panics, the other children are cancelled, and `scope`
///   re-raises that panic once all have ended (unless the panic was taken
///   with [`ScopedJoinHandle::join`]).
/// - If `f` panics, or the caller is cancelled or times out while `scope`
///   runs, the children are cancelled and awaited first; only then does the
///   unwind continue past `scope`. No child ever outlives what it borrows:
///   a panic meanwhile (the destructor of a cancelled child's closure, say)
///   is kept and re-raised once the last child has ended.
///
/// # Panics
///
/// Re-raises the panic of `f`, else the first unclaimed panic of a child
/// (its body's, or its closure's or value's destructor's). Also panics,
/// before calling `f`, when called from a destructor that the scheduler runs
/// on a worker's own loop, where it could not wait.
///
/// # Lifetimes
///
/// `'env` is the lifetime of what the children may borrow: it starts before
/// the call and ends after it. `'scope` is the lifetime of the scope itself:
/// it starts when `f` is called and ends when the last child has ended.
///
/// # Examples
///
/// ```
/// let mut results = vec![0; 3];
/// let input = [1, 2, 3];
/// stackful::scope(|s| {
///     for (slot, x) in results.iter_mut().zip(&input) {
///         s.spawn(move || *slot = x * 10); // borrows `results` and `input`
///     }
/// });
/// assert_eq!(results, [10, 20, 30]);
/// ```
///
/// Children may not outlive what they borrow, and the borrow checker sees
/// the scope's borrows:
///
/// ```compile_fail,E0499
/// let mut v = vec![1];
/// stackful::scope(|s| {
///     s.spawn(|| v.push(2));
///     v.push(3); // error: `v` is already borrowed by the child
/// });
/// ```
#[track_caller]
pub fn scope<'env, F, T>(f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    park::refuse_scheduler_loop();
    let (rt, group) = match park::current_task() {
        Some(t) => (t.header().rt.clone(), t.header().group.clone()),
        None => (runtime::global().clone(), None),
    };
    let scope = Scope {
        shared: Arc::new(ScopeShared {
            children: Mutex::new(Vec::new()),
            pending: AtomicUsize::new(0),
            owner: Mutex::new(None),
            failed: AtomicBool::new(false),
            first_panic: Mutex::new(None),
        }),
        rt,
        group,
        scope: PhantomData,
        env: PhantomData,
    };
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| f(&scope)));
    // Until every child has ended, `scope` must not unwind: they borrow from
    // the caller's frame. The user code below (closures of unstarted
    // children, dropped when they are cancelled) runs under catch_unwind.
    let no_unwind = AbortOnUnwind("stackful::scope");
    let mut cancelled = outcome.is_err();
    if cancelled {
        scope.shared.cancel_children(raw::cancel);
    }
    // Wait for every child. The wait itself cannot be cancelled, but a
    // cancellation of the owner that arrives meanwhile cancels the children.
    loop {
        if scope.shared.pending.load(Ordering::Acquire) == 0 {
            break;
        }
        // Wake up for an enclosing timeout too, to cancel the children then.
        // One evaluation gives both answers: a timeout that expires after
        // it is among the deadlines waited for.
        let deadline = if cancelled {
            None
        } else {
            match park::pending_or_deadline() {
                Ok(deadline) => deadline,
                Err(_) => {
                    cancelled = true;
                    scope.shared.cancel_children(raw::cancel);
                    None
                }
            }
        };
        *scope.shared.owner.lock().unwrap_or_else(|e| e.into_inner()) = Some(park::current_waker());
        if scope.shared.pending.load(Ordering::Acquire) == 0 {
            break;
        }
        park::park_shielded(deadline);
    }
    no_unwind.disarm();
    // Every child has ended and its body is gone; drop what results are left
    // (they may borrow from 'scope) and keep the first unclaimed panic.
    let children = std::mem::take(
        &mut *scope
            .shared
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    // A panic from a result's destructor counts as the child's panic; every
    // payload but the one re-raised is dropped under `catch_unwind` too.
    let mut child_panic: Option<Box<dyn Any + Send>> = None;
    let mut keep = |p: Box<dyn Any + Send>| match child_panic {
        None if !Cancelled::is(&*p) => child_panic = Some(p),
        _ => raw::discard_payload(p),
    };
    // The panic that made the scope cancel the others comes first: later
    // ones (a sibling's closure failing to drop, say) follow from it.
    let root = scope
        .shared
        .first_panic
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(p) = root.and_then(|t| t.take_panic()) {
        keep(p);
    }
    for child in &children {
        if let Some(p) = child.take_panic() {
            keep(p);
        }
        if let Some(p) = child.discard_result() {
            keep(p);
        }
    }
    drop(children);
    match outcome {
        Err(payload) => {
            if let Some(p) = child_panic {
                raw::discard_payload(p);
            }
            panic::resume_unwind(payload)
        }
        Ok(value) => {
            if let Some(p) = child_panic {
                panic::resume_unwind(p);
            }
            park::checkpoint_with(value) // a cancellation that came while waiting
        }
    }
}

impl<'scope, 'env> Scope<'scope, 'env> {
    /// Spawns a green thread that may borrow anything that outlives the scope.
    ///
    /// # Panics
    ///
    /// If the green thread cannot be spawned (see
    /// [`task::Builder::spawn`](crate::task::Builder::spawn) for the reasons).
    #[track_caller]
    pub fn spawn<F, T>(&'scope self, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let slot: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
        let out = slot.clone();
        let body: Box<dyn FnOnce() + Send + 'scope> = Box::new(move || {
            let value = f();
            *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
        });
        // SAFETY: only the lifetime is erased. The body borrows for 'scope,
        // and `scope` does not return or unwind before every child has
        // completed; a child completes only after its body has been run to
        // the end or dropped, and `scope` then drops what results are left.
        // So nothing borrowed is used after 'scope.
        let body: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(body) };
        self.shared.pending.fetch_add(1, Ordering::AcqRel);
        let spawned = runtime::spawn_task(
            &self.rt,
            self.group.clone(),
            Some(self.shared.clone()),
            None,
            self.rt.config.stack_size,
            Location::caller(),
            body,
        );
        let task = match spawned {
            Ok(task) => task,
            Err(e) => {
                self.shared.pending.fetch_sub(1, Ordering::AcqRel);
                panic!("stackful: could not spawn a scoped green thread: {e}");
            }
        };
        let task_ref: TaskRef = task.task().clone();
        self.shared
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task_ref.clone());
        if self.shared.failed.load(Ordering::Acquire) {
            raw::cancel(&task_ref); // a sibling already failed
        }
        ScopedJoinHandle {
            task,
            slot,
            _scope: PhantomData,
        }
    }
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("pending", &self.shared.pending.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A handle to join a green thread spawned on a [`Scope`].
pub struct ScopedJoinHandle<'scope, T> {
    task: TypedTask<()>,
    slot: Arc<Mutex<Option<T>>>,
    _scope: PhantomData<&'scope ()>,
}

impl<T> ScopedJoinHandle<'_, T> {
    /// Waits for the green thread and returns its value; as
    /// [`JoinHandle::join`](crate::JoinHandle::join).
    ///
    /// # Panics
    ///
    /// If a green thread tries to join itself, which would wait forever.
    #[track_caller]
    pub fn join(self) -> Result<T, JoinError> {
        refuse_self_join(self.task.header());
        wait_complete(self.task.header(), None);
        self.take_completed()
    }

    /// Requests cancellation; as [`JoinHandle::cancel`](crate::JoinHandle::cancel).
    pub fn cancel(&self) {
        raw::cancel(self.task.task());
    }

    /// Whether the green thread has ended.
    pub fn is_finished(&self) -> bool {
        self.task.header().is_complete()
    }

    /// The green thread's id.
    pub fn id(&self) -> Id {
        Id(self.task.header().id)
    }
}

impl<T> Sealed for ScopedJoinHandle<'_, T> {
    type Value = T;

    fn task(&self) -> sealed::Task<'_> {
        sealed::Task(self.task.task())
    }

    fn take_completed(self) -> Result<T, JoinError> {
        let outcome = self
            .task
            .take_result()
            .expect("the scoped result is taken once");
        outcome.map(|()| {
            self.slot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .expect("a green thread that returned stored its value")
        })
    }
}

/// Scoped handles can be gathered, waited on and so on; the `'scope`
/// lifetime keeps whatever holds them inside the scope.
impl<T> Joinable for ScopedJoinHandle<'_, T> {
    type Output = T;
}

impl<T> fmt::Debug for ScopedJoinHandle<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedJoinHandle")
            .field("task", self.task.header())
            .finish()
    }
}
