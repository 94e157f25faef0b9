//! The green thread record and its state machine: the scheduling core.
//!
//! A green thread is one heap allocation, `Task<F, T>`: a [`Header`] the
//! scheduler works with, the body `F` until it starts, and the result `T`
//! once it ends. The scheduler holds it as a [`TaskRef`], a counted pointer
//! to the header, one word wide; what depends on `F` and `T` is reached
//! through a table of functions ([`Vtable`]) the header points to. A
//! [`JoinHandle`](crate::JoinHandle) holds a [`TypedTask<T>`], a `TaskRef`
//! that also knows the result type.
//!
//! # States
//!
//! `Header::state` is a set of bits ([`SCHEDULED`], [`RUNNING`], ...), each
//! documented where it is defined. A green thread is in at most one run queue
//! at a time, and is only ever resumed by its home worker: the one that
//! started it. That is the soundness rule of the whole runtime: once started,
//! a green thread's stack never runs on another OS thread, so its `!Send`
//! contents are never seen from one.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::fmt;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe, Location};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use corosensei::{Coroutine, Yielder};
use crossbeam_utils::CachePadded;
use stackful_arch::PooledStack;

use crate::cancel::{Cancelled, Cause};
use crate::debug;
use crate::runtime::{Group, Home, RtShared};
use crate::scopes::ScopeStack;
use crate::task::JoinError;

/// In a run queue, or claimed by a worker about to push it there. A green
/// thread is in at most one queue: whoever sets this bit enqueues it.
/// Never together with `COMPLETE` unless it was cancelled before it started
/// (the queue entry is then skipped).
pub(crate) const SCHEDULED: u32 = 1 << 0;
/// Its home worker is running it now. Wake-ups that arrive meanwhile set
/// `NOTIFIED` instead of enqueueing.
pub(crate) const RUNNING: u32 = 1 << 1;
/// Woken while `RUNNING`: requeue it as soon as it suspends.
pub(crate) const NOTIFIED: u32 = 1 << 2;
/// Claimed: its body was taken, either by the worker that started it (which
/// is now its home for good) or by a cancellation before it started.
pub(crate) const STARTED: u32 = 1 << 3;
/// Done running: the body has returned or unwound, or is being dropped
/// unstarted (a cancellation sets this before it drops the body), so no
/// queue entry may run it any more (entries still queued are skipped).
/// Final. Joiners wait for `FINISHED`, which comes after the result is
/// stored.
pub(crate) const COMPLETE: u32 = 1 << 4;
/// Cancellation requested: the next suspension point unwinds.
pub(crate) const CANCELLED: u32 = 1 << 5;
/// A `JoinHandle` exists (or a scope, or `run`, will take the result).
/// Whoever clears it or sets `STORED` second drops the result; see `STORED`.
pub(crate) const HANDLE: u32 = 1 << 6;
/// Finished: set by [`finish`] (just before it wakes the join waiters; see
/// `WAITED`), after `COMPLETE` and after the result is stored. Final.
/// What `is_complete` and so every join looks at: a cancellation that drops
/// an unstarted body sets `COMPLETE` first, to keep workers off it, and the
/// body's destructor may take a while (it may even wait).
pub(crate) const FINISHED: u32 = 1 << 7;
/// The result is stored. Set right after storing it, by the thread that
/// ran (or dropped) the body. With `HANDLE` it decides who drops a result
/// nobody will take, so that it is dropped by user-facing code and never by
/// a scheduler loop (where a destructor that waits would block a worker):
/// the body's own green thread, if the handle was gone when the result was
/// stored; else the handle's owner, when it drops the handle. Both sides
/// change the state with one read-modify-write and look at what the other
/// did, so exactly one of them sees the other's bit.
pub(crate) const STORED: u32 = 1 << 8;
/// A join waiter has been added to `Header::waiters`. Set under the
/// waiters' lock by whoever adds one, before adding it, and never cleared:
/// [`finish`] sets `FINISHED` without the lock and takes the list only if
/// this was set, so a green thread nobody waited for finishes without
/// touching the lock. Who sets it second of the two sees the other's bit:
/// a registration that finds `FINISHED` adds nothing (the green thread has
/// finished), and a `finish` that finds `WAITED` takes the list under the
/// lock, after the registration that set it has added its waiter.
pub(crate) const WAITED: u32 = 1 << 9;

/// What a green thread tells its worker when it suspends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suspend {
    /// It waits for a wake-up (a timer, a join, a channel...).
    Wait,
    /// `yield_now`: put it at the back of the ready queue straight away.
    Requeue,
}

pub(crate) type TaskCoroutine = Coroutine<(), Suspend, (), PooledStack>;

/// The operations on a green thread that depend on its body and result
/// types, one table per `Task<F, T>` type. Each function takes a pointer to
/// the header of a live `Task<F, T>` of exactly the table's types: that is
/// the contract of every entry, which [`TaskRef`] upholds by only ever
/// pointing at a `Task` whose header holds that table.
pub(crate) struct Vtable {
    /// Runs the body on the calling stack and stores its outcome. Called
    /// once, on the green thread's own stack, by whoever set `STARTED`.
    run_body: unsafe fn(NonNull<Header>),
    /// Drops the body without running it and stores `error`. Called once,
    /// instead of `run_body`, by whoever set `STARTED` (a cancellation
    /// before the start, or a worker that found no stack for it).
    fail: unsafe fn(NonNull<Header>, JoinError),
    /// Whether the stored result is a panic, and whether it is an error
    /// (both false once taken).
    result_kind: unsafe fn(NonNull<Header>) -> (bool, bool),
    /// Takes the panic payload out of the result, if it is an untaken panic.
    take_panic: unsafe fn(NonNull<Header>) -> Option<Box<dyn Any + Send>>,
    /// Drops the stored result, whatever it is; returns the panic of its
    /// destructor, if it panicked.
    discard_result: unsafe fn(NonNull<Header>) -> Option<Box<dyn Any + Send>>,
    /// Moves the result out to `out`, which points to an
    /// `Option<Result<T, JoinError>>` for the task's own `T`.
    take_result: unsafe fn(NonNull<Header>, out: *mut ()),
    /// Drops the whole `Task` and frees its memory: the last reference went.
    destroy: unsafe fn(NonNull<Header>),
}

/// The scheduler's handle on a green thread: a counted reference to its
/// header, like an `Arc` but one pointer wide (an `Arc<dyn ..>` is two, and
/// finding the header through one costs a look at the alignment in its
/// vtable). The count is `Header::refs`.
pub(crate) struct TaskRef {
    ptr: NonNull<Header>,
}

// SAFETY: a TaskRef only ever points at a `Task<F, T>` with F: Send and
// T: Send (see `TypedTask::new`), which is Send and Sync (see the impls on
// Header and Task), and the count is atomic.
unsafe impl Send for TaskRef {}
// SAFETY: as for Send; `&TaskRef` gives only `&Header` and the vtable
// operations, which synchronise through the header's state and mutexes.
unsafe impl Sync for TaskRef {}

impl TaskRef {
    /// The green thread's header.
    #[inline(always)]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the pointer is to the live header of the Task this
        // reference keeps alive.
        unsafe { self.ptr.as_ref() }
    }

    /// The header's address, for identity checks and for `borrow_raw`.
    #[inline(always)]
    pub(crate) fn as_raw(&self) -> NonNull<Header> {
        self.ptr
    }

    /// Gives up this reference's count as a pointer, to be taken back once
    /// with [`from_raw`](TaskRef::from_raw).
    pub(crate) fn into_raw(self) -> NonNull<Header> {
        std::mem::ManuallyDrop::new(self).ptr
    }

    /// Takes back a count given up by [`into_raw`](TaskRef::into_raw).
    ///
    /// # Safety
    ///
    /// `ptr` came from `into_raw`, and each such pointer is taken back once.
    pub(crate) unsafe fn from_raw(ptr: NonNull<Header>) -> TaskRef {
        TaskRef { ptr }
    }

    /// A `TaskRef` for `ptr` that does not own a count: it must not outlive
    /// the reference `ptr` came from (see the safety contract), and is never
    /// dropped, so the count is not touched.
    ///
    /// # Safety
    ///
    /// `ptr` must come from [`as_raw`](TaskRef::as_raw) of a `TaskRef` that
    /// stays alive for as long as the returned value is used.
    #[inline(always)]
    pub(crate) unsafe fn borrow_raw(ptr: NonNull<Header>) -> std::mem::ManuallyDrop<TaskRef> {
        std::mem::ManuallyDrop::new(TaskRef { ptr })
    }

    #[inline(always)]
    fn vtable(&self) -> &'static Vtable {
        self.header().vtable
    }

    /// Runs the body on the calling stack and stores its outcome.
    ///
    /// # Safety
    ///
    /// The caller is the one that set `STARTED` (so no other thread touches
    /// the body), and calls this, `abandon` or `fail` at most once in all.
    pub(crate) unsafe fn run_body(&self) {
        // SAFETY: `ptr` is a live Task whose header holds this vtable; the
        // caller owns the body (see above).
        unsafe { (self.vtable().run_body)(self.ptr) }
    }

    /// Drops the body without running it and stores a cancellation.
    ///
    /// # Safety
    ///
    /// As for [`run_body`](TaskRef::run_body).
    pub(crate) unsafe fn abandon(&self) {
        // SAFETY: the caller's contract is the same.
        unsafe { self.fail(JoinError::cancelled(self.header())) }
    }

    /// Drops the body without running it and stores `error` (no stack).
    ///
    /// # Safety
    ///
    /// As for [`run_body`](TaskRef::run_body).
    pub(crate) unsafe fn fail(&self, error: JoinError) {
        // SAFETY: as in `run_body`.
        unsafe { (self.vtable().fail)(self.ptr, error) }
    }

    /// Whether the stored result is a panic (false once taken).
    pub(crate) fn is_panic(&self) -> bool {
        // SAFETY: as in `run_body`.
        unsafe { (self.vtable().result_kind)(self.ptr) }.0
    }

    /// Whether the stored result is an error (false once taken).
    pub(crate) fn is_err(&self) -> bool {
        // SAFETY: as in `run_body`.
        unsafe { (self.vtable().result_kind)(self.ptr) }.1
    }

    /// Takes the panic payload out of the result, if it is an untaken panic.
    pub(crate) fn take_panic(&self) -> Option<Box<dyn Any + Send>> {
        // SAFETY: as in `run_body`.
        unsafe { (self.vtable().take_panic)(self.ptr) }
    }

    /// Drops the stored result, whatever it is; returns the panic of its
    /// destructor, if it panicked.
    #[must_use = "a panic from the result's destructor must go somewhere"]
    pub(crate) fn discard_result(&self) -> Option<Box<dyn Any + Send>> {
        // SAFETY: as in `run_body`.
        unsafe { (self.vtable().discard_result)(self.ptr) }
    }
}

impl Clone for TaskRef {
    #[inline]
    fn clone(&self) -> TaskRef {
        // Relaxed, as in Arc: a new reference is made from an existing one,
        // which keeps the task alive meanwhile.
        let old = self.header().refs.fetch_add(1, Ordering::Relaxed);
        if old > isize::MAX as usize {
            std::process::abort(); // leaked references wrapped the count
        }
        TaskRef { ptr: self.ptr }
    }
}

impl Drop for TaskRef {
    #[inline]
    fn drop(&mut self) {
        // Release, then Acquire before destroying, as in Arc: every use of
        // the task through other references happens before it is freed.
        if self.header().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        std::sync::atomic::fence(Ordering::Acquire);
        // SAFETY: this was the last reference, so nothing else uses the task.
        unsafe { (self.vtable().destroy)(self.ptr) }
    }
}

impl fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.header().fmt(f)
    }
}

/// A [`TaskRef`] that knows the green thread's result type, so it can take
/// the result out: what join handles hold.
pub(crate) struct TypedTask<T> {
    task: TaskRef,
    /// Handles may move between threads even when `T` is only `Send`.
    _marker: PhantomData<fn() -> T>,
}

impl<T> TypedTask<T> {
    /// Allocates the green thread, with the vtable of its own types.
    ///
    /// The record is allocated first and its fields are written into it
    /// one by one: a `Task` is a few hundred bytes, and building it on the
    /// stack and moving it into a `Box` cost a copy of all of them.
    /// `header` makes the header (with [`Header::new`]); it is called once
    /// the memory is there, so the header is built in place too.
    #[inline(always)]
    pub(crate) fn new<F>(header: impl FnOnce() -> Header, body: F) -> TypedTask<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let mut boxed = Box::<Task<F, T>>::new_uninit();
        let p = boxed.as_mut_ptr();
        // SAFETY: `p` points to memory for a whole `Task<F, T>`; each field
        // is written once, through raw pointers (nothing reads it before).
        unsafe {
            (&raw mut (*p).header).write(header());
            (&raw mut (*p).header.vtable).write(&Task::<F, T>::VTABLE);
            (&raw mut (*p).body).write(UnsafeCell::new(Some(body)));
            (&raw mut (*p).result).write(Mutex::new(None));
        }
        // SAFETY: every field was written just above.
        let task = unsafe { boxed.assume_init() };
        let ptr = NonNull::from(Box::leak(task)).cast::<Header>();
        TypedTask {
            task: TaskRef { ptr },
            _marker: PhantomData,
        }
    }

    pub(crate) fn task(&self) -> &TaskRef {
        &self.task
    }

    pub(crate) fn header(&self) -> &Header {
        self.task.header()
    }

    /// Takes the result out, once the green thread has completed (`None`
    /// before, or once taken).
    pub(crate) fn take_result(&self) -> Option<Result<T, JoinError>> {
        let mut out: Option<Result<T, JoinError>> = None;
        // SAFETY: `new` made this from a Task<F, T> with this very T, and the
        // vtable entry writes an Option<Result<T, JoinError>> to `out`.
        unsafe {
            (self.task.vtable().take_result)(self.task.ptr, (&raw mut out).cast());
        }
        out
    }
}

/// Who to wake when a green thread completes.
pub(crate) struct JoinWaiter {
    pub(crate) waker: crate::runtime::park::Waker,
    /// For `gather`, `wait` and `as_completed`: report the completion here
    /// under this index.
    pub(crate) tag: Option<(Arc<Completions>, usize)>,
}

/// The join waiters of a green thread: boxed, so that the record of one
/// nobody waits for (most are joined once they have finished, or never)
/// keeps one word for them instead of a `Vec`'s three.
#[derive(Default)]
#[allow(clippy::box_collection)] // the point: one word, not a Vec's three
pub(crate) struct Waiters(Option<Box<Vec<JoinWaiter>>>);

impl Waiters {
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, JoinWaiter> {
        self.0.as_deref().map_or(&[][..], Vec::as_slice).iter()
    }

    pub(crate) fn push(&mut self, waiter: JoinWaiter) {
        self.0.get_or_insert_with(Box::default).push(waiter);
    }

    pub(crate) fn retain(&mut self, keep: impl FnMut(&JoinWaiter) -> bool) {
        if let Some(list) = &mut self.0 {
            list.retain(keep);
        }
    }

    /// Removes the waiter at `index` (of [`iter`](Waiters::iter)).
    pub(crate) fn remove(&mut self, index: usize) -> JoinWaiter {
        self.0
            .as_mut()
            .expect("an index from `iter` means a list")
            .remove(index)
    }

    /// Takes them all.
    pub(crate) fn take(&mut self) -> Vec<JoinWaiter> {
        self.0.take().map_or_else(Vec::new, |list| *list)
    }
}

/// Indices of the green threads of a set that have completed, in completion order.
#[derive(Default)]
pub(crate) struct Completions {
    pub(crate) done: Mutex<Vec<usize>>,
}

/// The part of a green thread that only its home worker's thread touches,
/// from its start to its completion: allocated by [`LocalBox::install`]
/// when a worker starts it, freed by [`LocalBox::release`] when it
/// completes. Out of the record, so that the many green threads that wait
/// to start or to be joined (a burst of spawns, the results of a gather)
/// do not each carry it: a record is about half the size without it.
/// `repr(C)`: the fields every switch touches come first (see `Header`).
#[repr(C)]
pub(crate) struct Local {
    pub(crate) co: UnsafeCell<Option<TaskCoroutine>>,
    pub(crate) yielder: Cell<*const Yielder<(), Suspend>>,
    /// An address near the top of the frames of its last suspension (0 before
    /// the first): where its next resume will read, for the worker to prefetch.
    pub(crate) resume_hint: Cell<usize>,
    pub(crate) scopes: UnsafeCell<ScopeStack>,
    /// The sequence number of the timer this green thread waits on; 0 if none.
    pub(crate) timer: Cell<u64>,
    /// Index in the home worker's registry of started green threads (u32,
    /// next to `unwinding`: one word for both).
    pub(crate) slot: Cell<u32>,
    /// It suspended in the middle of an unwind of its own (see
    /// `worker::note_unwind`); read only while the thread is panicking.
    pub(crate) unwinding: Cell<bool>,
    /// Its task-locals (one pointer, null until first used; see
    /// `task::local`). Last: no switch touches it.
    pub(crate) locals: crate::task::local::Slot,
    /// The waiter its last wait left unshared, waker included (see
    /// `Waiter::recycle`): its next wait takes it without touching a
    /// thread-local or a reference count. It names this green thread, so
    /// it is dropped when the green thread completes (`Worker::complete`),
    /// which ends the cycle.
    pub(crate) spare_waiter: Cell<Option<std::sync::Arc<crate::sync::wait::Waiter>>>,
}

impl Local {
    #[inline(always)]
    fn new() -> Local {
        Local {
            co: UnsafeCell::new(None),
            yielder: Cell::new(std::ptr::null()),
            resume_hint: Cell::new(0),
            scopes: UnsafeCell::new(ScopeStack::default()),
            timer: Cell::new(0),
            slot: Cell::new(u32::MAX),
            unwinding: Cell::new(false),
            locals: crate::task::local::Slot::new(),
            spare_waiter: Cell::new(None),
        }
    }
}

/// The [`Local`] of a started, uncompleted green thread; null before it
/// starts and once it completes. Derefs to the `Local`, which only code
/// that knows the green thread is started and not complete may do (its own
/// code, its home worker's loop while it runs or waits, another green
/// thread of its home that checked `worker::lives_here`); anything else
/// (timer and queue entries, which may outlive it) uses
/// [`get`](LocalBox::get). This extends the rule that only the home
/// thread touches `Local` (see the `Sync` impl of `Header`), and is checked
/// in debug builds.
pub(crate) struct LocalBox(Cell<*mut Local>);

impl LocalBox {
    fn empty() -> LocalBox {
        LocalBox(Cell::new(std::ptr::null_mut()))
    }

    /// Gives a green thread that starts its `Local`: `spare` (one released
    /// earlier on this thread, reset here) or a new one. Home thread, once,
    /// by the worker that starts it.
    pub(crate) fn install(&self, spare: Option<Box<Local>>) {
        debug_assert!(self.0.get().is_null(), "a green thread was started twice");
        let local = match spare {
            Some(mut local) => {
                // What the old one holds is empty by now (see `release`); a
                // task-local table left with values is leaked by its drop.
                *local = Local::new();
                local
            }
            None => Box::new(Local::new()),
        };
        self.0.set(Box::into_raw(local));
    }

    /// Takes the `Local` of a green thread that has completed (its
    /// coroutine and spare waiter already taken), for the worker to reuse
    /// or drop. Home thread.
    pub(crate) fn release(&self) -> Option<Box<Local>> {
        let p = self.0.replace(std::ptr::null_mut());
        // SAFETY: a non-null `p` came from `Box::into_raw` in `install` and
        // was just taken out of the cell, so it is taken back once; no
        // reference into it is alive (the green thread has completed; see
        // the type's docs).
        (!p.is_null()).then(|| unsafe { Box::from_raw(p) })
    }

    /// The `Local`, if the green thread has started and not completed.
    #[inline]
    pub(crate) fn get(&self) -> Option<&Local> {
        // SAFETY: non-null means installed and not yet released; it is
        // released only on the home thread, which is the caller's (see the
        // type's docs), and not while this reference is used.
        unsafe { self.0.get().as_ref() }
    }
}

impl std::ops::Deref for LocalBox {
    type Target = Local;

    #[inline(always)]
    fn deref(&self) -> &Local {
        let p = self.0.get();
        // Checked in debug builds (so every test checks it); a switch
        // dereferences this several times, and the checks cost about 5% of a
        // `yield_now` in release builds.
        if cfg!(debug_assertions) && p.is_null() {
            local_gone()
        }
        // SAFETY: the contract of `Local`'s users (the type's docs): only
        // code that knows the green thread has started and not completed
        // dereferences it, on the home thread, where it is released, and
        // so between `install` and `release`, when `p` is a live box.
        unsafe { &*p }
    }
}

/// The debug builds' check of `LocalBox`'s contract failed.
#[cold]
#[inline(never)]
fn local_gone() -> ! {
    panic!(
        "stackful bug: the local part of a green thread was used before it started or after it \
         completed"
    )
}

impl Drop for LocalBox {
    fn drop(&mut self) {
        // A started green thread whose record goes without completing
        // (a runtime torn down around it) still has its `Local`.
        drop(self.release());
    }
}

/// The non-generic part of a green thread.
///
/// `repr(C)`, hot fields first: a switch reads `state` and the coroutine,
/// yielder and scope stack in `local`, so they sit together in two or three
/// cache lines instead of spread over the header's five. With a thousand
/// green threads taking turns, those lines are what falls out of the cache.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) state: AtomicU32,
    /// The size of the stack it starts on, in bytes (at most
    /// `MAX_STACK_SIZE`, which fits); a u32 beside `state`, which leaves
    /// room for it before the next word.
    stack_size: u32,
    /// References ([`TaskRef`]s) to this green thread; next to `state`,
    /// which the wake-ups that clone and drop them touch too.
    refs: AtomicUsize,
    /// Its home-thread part, while it runs (see `Local`); beside `state`,
    /// which a switch reads too.
    pub(crate) local: LocalBox,
    /// The operations that depend on the body and result types.
    vtable: &'static Vtable,
    pub(crate) id: u64,
    pub(crate) name: Option<Box<str>>,
    pub(crate) rt: Arc<RtShared>,
    /// The `run` this green thread belongs to, for shutdown.
    pub(crate) group: Option<Arc<Group>>,
    /// The structured scope this green thread is a child of.
    pub(crate) scope: Option<Arc<crate::task::scope::ScopeShared>>,
    /// Its home worker: set once, when a worker starts it. Not counted: a
    /// pool worker's `Home` lives in `rt.homes` and a `run` thread's in the
    /// `Group` of that `run`, the only green threads it starts, and this
    /// header holds both `rt` and `group`.
    home: AtomicPtr<Home>,
    pub(crate) waiters: Mutex<Waiters>,
    pub(crate) site: &'static Location<'static>,
}

// SAFETY: every field but `local` is Sync on its own. `local` is only touched
// on the green thread's home worker thread: it is written when the worker
// starts the green thread and read or written only while that worker runs it
// or handles its suspension, which the STARTED/RUNNING protocol confines to
// that one thread (a started green thread is never resumed elsewhere), or,
// for `spare_waiter` alone, by another green thread running on that same
// thread (see `keep_spare_waiter`): one thing runs on a thread at a time,
// and a `Cell` is never borrowed across a switch. The box itself (the
// pointer in `LocalBox`) is set at the start and cleared at the completion,
// both on the home thread; the record's drop, on any thread, comes after
// the last reference is gone, which orders it after both.
unsafe impl Sync for Header {}
// SAFETY: as for Sync; the coroutine in `local` is created on, resumed on and
// dropped on the home thread only, so moving the header's owners (TaskRefs)
// between threads never moves the coroutine's use.
unsafe impl Send for Header {}

impl Header {
    /// Inlined, so that `TypedTask::new` writes it straight into the record.
    #[inline(always)]
    pub(crate) fn new(
        id: u64,
        name: Option<Box<str>>,
        rt: Arc<RtShared>,
        group: Option<Arc<Group>>,
        scope: Option<Arc<crate::task::scope::ScopeShared>>,
        stack_size: usize,
        site: &'static Location<'static>,
    ) -> Header {
        Header {
            id,
            name,
            state: AtomicU32::new(SCHEDULED | HANDLE),
            rt,
            group,
            scope,
            home: AtomicPtr::new(std::ptr::null_mut()),
            waiters: Mutex::new(Waiters(None)),
            stack_size: u32::try_from(stack_size).expect("a checked stack size fits in a u32"),
            site,
            vtable: &UNSET,
            refs: AtomicUsize::new(1),
            local: LocalBox::empty(),
        }
    }

    /// Notes, under the join waiters' lock, that a waiter is about to be
    /// added (see `WAITED`); false if it has finished already, and then
    /// none may be (`finish` will not look at the list).
    pub(crate) fn mark_waited(&self) -> bool {
        self.state.fetch_or(WAITED, Ordering::AcqRel) & FINISHED == 0
    }

    /// The size of the stack it starts on, in bytes.
    #[inline]
    pub(crate) fn stack_size(&self) -> usize {
        self.stack_size as usize
    }

    /// Records the worker that starts this green thread. Called once, by
    /// that worker, which must be owned by `rt.homes` or by `group` (see
    /// the field).
    pub(crate) fn set_home(&self, home: &Arc<Home>) {
        let old = self
            .home
            .swap(Arc::as_ptr(home).cast_mut(), Ordering::AcqRel);
        debug_assert!(old.is_null(), "a green thread was started twice");
    }

    /// The home worker, once started.
    pub(crate) fn home(&self) -> Option<&Home> {
        // SAFETY: the pointer is null or points to a Home owned by `rt` or
        // `group` (see `set_home`), which this header keeps alive.
        unsafe { self.home.load(Ordering::Acquire).as_ref() }
    }

    /// Whether the green thread has finished and its result is stored.
    pub(crate) fn is_complete(&self) -> bool {
        self.state.load(Ordering::Acquire) & FINISHED != 0
    }

    /// The cancellation that applies to this green thread, if any. The
    /// shutdown of its `run` sets `CANCELLED` on every green thread it has
    /// started, so a started one only needs its own bit.
    #[inline]
    pub(crate) fn cancel_cause(&self) -> Option<Cause> {
        (self.state.load(Ordering::Acquire) & CANCELLED != 0).then_some(Cause::Task(self.id))
    }

    /// Whether it must not start: cancelled, or its `run` is shutting down.
    pub(crate) fn cancelled_before_start(&self) -> bool {
        self.cancel_cause().is_some()
            || self
                .group
                .as_ref()
                .is_some_and(|g| g.cancelled.load(Ordering::Acquire))
    }

    /// Whether cancel scopes are open in this green thread. Home thread only.
    #[inline]
    pub(crate) fn has_scopes(&self) -> bool {
        // SAFETY: called only by the green thread itself, on its home thread,
        // while nothing else borrows its scope stack.
        unsafe { !(*self.local.scopes.get()).is_empty() }
    }

    /// `#12 `fetcher`` or `#12`, for messages.
    pub(crate) fn describe(&self) -> String {
        match &self.name {
            Some(n) => format!("#{} `{n}`", self.id),
            None => format!("#{}", self.id),
        }
    }
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("state", &StateBits(self.state.load(Ordering::Relaxed)))
            .finish_non_exhaustive()
    }
}

/// Decodes state bits for `Debug`.
struct StateBits(u32);

impl fmt::Debug for StateBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (SCHEDULED, "SCHEDULED"),
            (RUNNING, "RUNNING"),
            (NOTIFIED, "NOTIFIED"),
            (STARTED, "STARTED"),
            (COMPLETE, "COMPLETE"),
            (CANCELLED, "CANCELLED"),
            (HANDLE, "HANDLE"),
            (FINISHED, "FINISHED"),
            (STORED, "STORED"),
            (WAITED, "WAITED"),
        ];
        let set: Vec<_> = names
            .iter()
            .filter(|(b, _)| self.0 & b != 0)
            .map(|(_, n)| *n)
            .collect();
        write!(f, "{}", set.join("|"))
    }
}

/// The vtable of a header that is not allocated yet: `TypedTask::new`
/// replaces it before any `TaskRef` exists, so none of these ever runs.
static UNSET: Vtable = {
    unsafe fn unset(_: NonNull<Header>) {
        unreachable!("a green thread's header was used outside its Task")
    }
    unsafe fn unset_fail(_: NonNull<Header>, _: JoinError) {
        unreachable!("a green thread's header was used outside its Task")
    }
    unsafe fn unset_kind(_: NonNull<Header>) -> (bool, bool) {
        unreachable!("a green thread's header was used outside its Task")
    }
    unsafe fn unset_panic(_: NonNull<Header>) -> Option<Box<dyn Any + Send>> {
        unreachable!("a green thread's header was used outside its Task")
    }
    unsafe fn unset_take(_: NonNull<Header>, _: *mut ()) {
        unreachable!("a green thread's header was used outside its Task")
    }
    Vtable {
        run_body: unset,
        fail: unset_fail,
        result_kind: unset_kind,
        take_panic: unset_panic,
        discard_result: unset_panic,
        take_result: unset_take,
        destroy: unset,
    }
};

/// A green thread with body `F` and result `T`. `repr(C)` with the header
/// first, so a pointer to the task is a pointer to its header and back.
#[repr(C)]
pub(crate) struct Task<F, T> {
    header: Header,
    /// Taken by whoever sets `STARTED`.
    body: UnsafeCell<Option<F>>,
    result: Mutex<Option<Result<T, JoinError>>>,
}

// SAFETY: `body` is accessed only by the single thread that won the STARTED
// transition (see `claim`), and F: Send lets it be that thread. The header is
// Sync (above) and the result sits behind a mutex with T: Send.
unsafe impl<F: Send, T: Send> Sync for Task<F, T> {}

impl<F, T> Task<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    const VTABLE: Vtable = Vtable {
        run_body: Self::run_body,
        fail: Self::fail,
        result_kind: Self::result_kind,
        take_panic: Self::take_panic,
        discard_result: Self::discard_result,
        take_result: Self::take_result,
        destroy: Self::destroy,
    };

    /// The task whose header `p` points to.
    ///
    /// # Safety
    ///
    /// `p` must point to the header of a live `Task<F, T>` (the contract of
    /// every [`Vtable`] entry), and the task must stay alive for `'a`.
    unsafe fn this<'a>(p: NonNull<Header>) -> &'a Self {
        // SAFETY: per the contract; the header is the task's first field
        // (repr(C)), and `p` came from the pointer to the whole task.
        unsafe { p.cast::<Self>().as_ref() }
    }

    fn take_body(&self) -> Option<F> {
        // SAFETY: only the thread that set STARTED calls this, once (see the
        // `run_body` and `fail` entries), so no other access to `body` exists.
        unsafe { (*self.body.get()).take() }
    }

    /// Stores the outcome; if no handle is left to take it, drops it here
    /// (see `STORED`).
    fn store(&self, result: Result<T, JoinError>) {
        *self.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        let prev = self.header.state.fetch_or(STORED, Ordering::AcqRel);
        if prev & HANDLE == 0 {
            // Detached: nobody will take it. Debug mode reports a panic
            // first (`finish` will find the result gone).
            report_unjoined_panic(
                &self.header,
                || matches!(&*self.result(), Some(Err(e)) if e.is_panic()),
            );
            let taken = self.result().take();
            if let Some(result) = taken {
                drop_detached_result(&self.header, result);
            }
        }
    }

    fn result(&self) -> std::sync::MutexGuard<'_, Option<Result<T, JoinError>>> {
        self.result.lock().unwrap_or_else(|e| e.into_inner())
    }

    unsafe fn run_body(p: NonNull<Header>) {
        // SAFETY: the Vtable contract.
        let this = unsafe { Self::this(p) };
        let Some(body) = this.take_body() else { return };
        if this.header.cancelled_before_start() {
            // Cancelled before it started (or its `run` is shutting down):
            // the body is dropped here, on its own stack, where its
            // destructors may wait like any green thread's code.
            report_never_started(&this.header);
            let error = drop_body(&this.header, body, JoinError::cancelled(&this.header));
            return this.store(finish_locals(&this.header, Err(error)));
        }
        let result = match panic::catch_unwind(AssertUnwindSafe(body)) {
            Ok(value) => Ok(value),
            Err(payload) if Cancelled::is(&*payload) => Err(JoinError::cancelled(&this.header)),
            Err(payload) => Err(JoinError::panic(&this.header, payload)),
        };
        this.store(finish_locals(&this.header, result));
    }

    unsafe fn fail(p: NonNull<Header>, error: JoinError) {
        // SAFETY: the Vtable contract.
        let this = unsafe { Self::this(p) };
        let error = drop_body(&this.header, this.take_body(), error);
        this.store(Err(error));
    }

    unsafe fn result_kind(p: NonNull<Header>) -> (bool, bool) {
        // SAFETY: the Vtable contract.
        let result = unsafe { Self::this(p) }.result();
        match &*result {
            Some(Err(e)) => (e.is_panic(), true),
            _ => (false, false),
        }
    }

    unsafe fn take_panic(p: NonNull<Header>) -> Option<Box<dyn Any + Send>> {
        // SAFETY: the Vtable contract.
        let mut result = unsafe { Self::this(p) }.result();
        if matches!(&*result, Some(Err(e)) if e.is_panic()) {
            return result
                .take()
                .and_then(|r| r.err())
                .and_then(|e| e.try_into_panic().ok());
        }
        None
    }

    unsafe fn discard_result(p: NonNull<Header>) -> Option<Box<dyn Any + Send>> {
        // SAFETY: the Vtable contract.
        let taken = unsafe { Self::this(p) }.result().take();
        drop_caught(taken)
    }

    unsafe fn take_result(p: NonNull<Header>, out: *mut ()) {
        // SAFETY: the Vtable contract.
        let taken = unsafe { Self::this(p) }.result().take();
        // SAFETY: the caller passes an `Option<Result<T, JoinError>>` for
        // this task's T (see `TypedTask::take_result`).
        unsafe { *out.cast::<Option<Result<T, JoinError>>>() = taken };
    }

    unsafe fn destroy(p: NonNull<Header>) {
        // SAFETY: `p` came from `Box::leak` of this very type in
        // `TypedTask::new`, and the last reference is gone.
        let mut task = unsafe { Box::from_raw(p.cast::<Self>().as_ptr()) };
        // The last reference may go on any thread, a worker's loop included:
        // the user's values (a body that never ran, a result nobody took)
        // are taken out and dropped under `catch_unwind`, so their
        // destructors cannot unwind the scheduler. Nobody joins now, so a
        // panic there goes where an unjoined panic goes: debug mode reports
        // it (the panic hook has printed it already). The rest is dropped
        // in place with the box (moving the whole record out first would
        // copy it).
        let body = task.body.get_mut().take();
        let result = task
            .result
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(payload) = drop_caught((body, result)) {
            report_result_drop_panic(&task.header, payload);
        }
        drop(task);
    }
}

/// Makes `waiter` the spare waiter of the green thread whose header is
/// `header` (see `Local::spare_waiter`), dropping the one it had.
///
/// # Safety
///
/// `waiter`'s waker is a reference to that green thread (which keeps
/// `header` alive until the waiter is stored, and the header then owns the
/// waiter), the green thread lives on the calling thread and has not
/// completed (`worker::lives_here`), and the caller is the only holder of
/// `waiter`.
pub(crate) unsafe fn keep_spare_waiter(
    header: NonNull<Header>,
    waiter: Arc<crate::sync::wait::Waiter>,
) {
    // SAFETY: alive, as the contract says; its `local` cells are used only
    // on its home thread, which is this one, and only one thing runs here.
    let h = unsafe { header.as_ref() };
    h.local.spare_waiter.set(Some(waiter));
}

/// Drops the task-locals of the green thread `h` as it ends, on its own
/// stack, before its outcome is stored, so a `join` sees their destructors
/// done. A destructor's panic becomes the outcome of a green thread that
/// had succeeded; after a failure it is reported (debug mode) and dropped.
fn finish_locals<T>(h: &Header, result: Result<T, JoinError>) -> Result<T, JoinError> {
    let Some(payload) = crate::task::local::drop_current() else {
        return result;
    };
    match result {
        Ok(value) => {
            if let Some(again) = crate::time::shield(|| drop_caught(value)) {
                discard_payload(again);
            }
            Err(JoinError::panic(h, payload))
        }
        Err(e) => {
            if debug::enabled() && !Cancelled::is(&*payload) {
                debug::warn(format_args!(
                    "a task-local of green thread {} spawned at {} panicked when it was dropped, \
                     after the green thread had failed",
                    h.describe(),
                    h.site
                ));
            }
            discard_payload(payload);
            Err(e)
        }
    }
}

/// Wakes a green thread: enqueues it on its home worker unless it is already
/// queued, running (then it is requeued when it suspends), or complete.
///
/// Every path but `COMPLETE` is a read-modify-write on the state, even when
/// the green thread is already queued and nothing changes. That is what
/// publishes the waker's earlier writes (a `granted` flag, a delivered value)
/// to the worker that runs it: the worker claims it with a CAS on the same
/// state, so it either comes after this one and sees those writes, or comes
/// before and this sees `RUNNING` and sets `NOTIFIED`. A plain load here
/// would let the green thread run, miss the write, and sleep forever (a
/// store-load reordering that happens on x86 too).
pub(crate) fn wake(task: &TaskRef) {
    if let Some(enqueue) = mark_woken(task) {
        crate::runtime::worker::schedule(enqueue);
    }
}

/// As [`wake`], consuming the reference (which goes to the home's inbox if
/// the green thread is enqueued there, saving a count).
pub(crate) fn wake_owned(task: TaskRef) {
    if mark_woken(&task).is_some() {
        crate::runtime::worker::schedule_owned(task);
    }
}

/// The state change of a wake-up: returns the task if the caller must
/// enqueue it.
fn mark_woken(task: &TaskRef) -> Option<&TaskRef> {
    let state = &task.header().state;
    let mut s = state.load(Ordering::Acquire);
    loop {
        if s & COMPLETE != 0 {
            return None; // finished: nothing will read the waker's writes
        }
        let (new, enqueue) = if s & SCHEDULED != 0 {
            (s, false) // already queued: publish only
        } else if s & RUNNING != 0 {
            (s | NOTIFIED, false) // its worker requeues it when it suspends
        } else {
            (s | SCHEDULED, true) // suspended: we enqueue it
        };
        match state.compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return enqueue.then_some(task),
            Err(actual) => s = actual,
        }
    }
}

/// Requests cancellation. A green thread that has not started is completed
/// as cancelled at once, without running; a started one is woken so that its
/// current or next suspension point unwinds.
pub(crate) fn cancel(task: &TaskRef) {
    let h = task.header();
    let prev = h.state.fetch_or(CANCELLED, Ordering::AcqRel);
    if prev & COMPLETE != 0 {
        return;
    }
    if prev & STARTED == 0 && abandon_unstarted(task) {
        return;
    }
    wake(task);
}

/// Completes a green thread that has not started yet as cancelled, if it
/// still has not. Returns false if a worker started it first.
pub(crate) fn abandon_unstarted(task: &TaskRef) -> bool {
    let h = task.header();
    let mut s = h.state.load(Ordering::Acquire);
    loop {
        if s & STARTED != 0 {
            return false;
        }
        // Claim it and mark it complete in one step; its queue entry, if any,
        // is skipped when popped.
        let new = s | STARTED | COMPLETE | CANCELLED;
        match h
            .state
            .compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => break,
            Err(actual) => s = actual,
        }
    }
    // SAFETY: the exchange above set STARTED.
    unsafe { drop_unstarted(task) };
    finish(task);
    true
}

/// Drops the body of a claimed green thread that will never run, storing a
/// cancellation (and saying so in debug mode).
///
/// # Safety
///
/// As for [`TaskRef::run_body`]: the caller set `STARTED`.
pub(crate) unsafe fn drop_unstarted(task: &TaskRef) {
    report_never_started(task.header());
    // SAFETY: the caller set STARTED (this function's contract).
    unsafe { task.abandon() };
}

/// Debug mode: says that a green thread was cancelled before it started.
fn report_never_started(h: &Header) {
    if debug::enabled() {
        debug::warn(format_args!(
            "green thread {} spawned at {} was cancelled before it ever started",
            h.describe(),
            h.site
        ));
    }
}

/// Requests cancellation from a scheduler's loop (a scope's failed child
/// cancelling its siblings): like [`cancel`], but a green thread that has
/// not started is not dropped here, where its closure's destructors (user
/// code) must not run; it starts and drops its body itself.
pub(crate) fn cancel_from_scheduler(task: &TaskRef) {
    let prev = task.header().state.fetch_or(CANCELLED, Ordering::AcqRel);
    if prev & COMPLETE == 0 {
        wake(task);
    }
}

/// The last step of every green thread, on whichever thread completed it:
/// mark it `FINISHED`, wake its joiners and release its place in its `run`,
/// scope and runtime. `COMPLETE` must already be set and the result stored.
/// Runs no user code but the wakers of tasks that await a `JoinHandle` as
/// a future (their executors' code), whose panics `AsyncWaker::wake`
/// discards; a scope's failed child only marks its siblings cancelled
/// (`cancel_from_scheduler`); each drops its own body.
pub(crate) fn finish(task: &TaskRef) {
    let h = task.header();
    // A joiner registering after this sees FINISHED and does not wait; one
    // that registered before set WAITED first, and is woken below (see
    // `WAITED`). Without one, the list is empty and the lock untouched.
    let prev = h.state.fetch_or(FINISHED, Ordering::AcqRel);
    let waiters = if prev & WAITED != 0 {
        h.waiters.lock().unwrap_or_else(|e| e.into_inner()).take()
    } else {
        Vec::new()
    };
    for w in waiters {
        if let Some((set, index)) = &w.tag {
            set.done
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(*index);
        }
        w.waker.wake();
    }
    if let Some(scope) = &h.scope {
        scope.child_finished(task);
    }
    if let Some(group) = &h.group {
        group.task_finished();
    }
    h.rt.task_finished();
}

/// Counts live green threads and wakes a waiter when the count drops to zero.
///
/// Spawns and completions happen on different threads, so a single counter
/// would bounce its cache line between them on every green thread. Instead,
/// each thread counts its own starts and ends on one of a few padded shards,
/// as monotonic totals. The count is zero when the ends equal the starts.
///
/// Reading all the `ended` totals first, then all the `added` ones, is what
/// makes a zero reliable: a green thread's end happens after its start, so an
/// end counted in the first pass has its start counted in the second, and a
/// zero means that at some instant between the passes nothing was alive.
/// Only live green threads (and `run`, counted as one) spawn into a count,
/// so once it is zero it stays zero.
pub(crate) struct LiveCount {
    shards: [CachePadded<Shard>; SHARDS],
    /// A waiter is registered in `zero`: completions check for zero.
    waiting: AtomicBool,
    zero: Mutex<Option<crate::runtime::park::Waker>>,
}

const SHARDS: usize = 8;

#[derive(Default)]
struct Shard {
    added: AtomicU64,
    ended: AtomicU64,
}

/// This thread's shard: threads take them in turn.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

impl Default for LiveCount {
    fn default() -> LiveCount {
        LiveCount {
            shards: Default::default(),
            waiting: AtomicBool::new(false),
            zero: Mutex::new(None),
        }
    }
}

impl LiveCount {
    pub(crate) fn add(&self) {
        self.shards[shard()].added.fetch_add(1, Ordering::Release);
    }

    /// The live count (a snapshot; see the type's docs).
    pub(crate) fn get(&self) -> u64 {
        let ended: u64 = self
            .shards
            .iter()
            .map(|s| s.ended.load(Ordering::SeqCst))
            .sum();
        let added: u64 = self
            .shards
            .iter()
            .map(|s| s.added.load(Ordering::SeqCst))
            .sum();
        added.saturating_sub(ended)
    }

    pub(crate) fn sub(&self) {
        self.shards[shard()].ended.fetch_add(1, Ordering::SeqCst);
        // SeqCst on both sides: either this sees `waiting`, or the waiter's
        // count (taken after it set `waiting`) sees this end.
        if self.waiting.load(Ordering::SeqCst) && self.get() == 0 {
            let waker = self.zero.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    /// Waits, uncancellably, until the count is zero. In debug mode, a wait
    /// longer than the slow threshold is reported once, naming `what` waits.
    pub(crate) fn wait_zero(&self, what: &str) {
        let start = std::time::Instant::now();
        let mut report_at = debug::enabled().then(|| start + debug::slow_threshold());
        loop {
            if self.get() == 0 {
                return;
            }
            *self.zero.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(crate::runtime::park::current_waker());
            self.waiting.store(true, Ordering::SeqCst);
            let left = self.get();
            if left == 0 {
                return;
            }
            if let Some(at) = report_at
                && std::time::Instant::now() >= at
            {
                report_at = None;
                report_slow_wait(what, start, left);
            }
            crate::runtime::park::park_shielded(report_at);
        }
    }
}

/// Debug mode: `what` has waited since `start` for `left` green threads.
pub(crate) fn report_slow_wait(what: &str, start: std::time::Instant, left: u64) {
    debug::warn(format_args!(
        "{what} has waited {} ms for {left} green thread(s) to end; one may be waiting in a \
         destructor, running without suspending, or (outside a `run`, which cancels) still at \
         work",
        start.elapsed().as_millis()
    ));
}

/// Drops `value` under `catch_unwind` and returns the panic payload if its
/// destructor panicked. A destructor that waits in a cancelled green thread
/// is cut short there by a [`Cancelled`] payload, which callers take for
/// what it is (the cancellation is raised again at the next suspension
/// point), not for a panic of the value.
pub(crate) fn drop_caught<V>(value: V) -> Option<Box<dyn Any + Send>> {
    if !std::mem::needs_drop::<V>() {
        return None;
    }
    panic::catch_unwind(AssertUnwindSafe(move || drop(value))).err()
}

/// Drops a panic payload nobody will look at. Its own destructor may panic
/// too, with another payload: a few rounds, then the rest is leaked.
pub(crate) fn discard_payload(payload: Box<dyn Any + Send>) {
    let mut next = Some(payload);
    for _ in 0..8 {
        match next.take() {
            Some(p) => next = drop_caught(p),
            None => return,
        }
    }
    std::mem::forget(next);
}

/// Debug mode: reports a green thread that panicked and that nobody will
/// join, if `is_panic` says its result is a panic.
pub(crate) fn report_unjoined_panic(h: &Header, is_panic: impl FnOnce() -> bool) {
    if debug::enabled() && is_panic() {
        debug::warn(format_args!(
            "green thread {} spawned at {} panicked and nobody joined it",
            h.describe(),
            h.site
        ));
    }
}

/// Drops the result of a green thread that nobody will join, on the
/// calling context (its own green thread, or its handle's owner): under
/// `catch_unwind`, so a panicking destructor reaches neither a worker nor
/// the handle's owner (debug mode reports it), and in a shield, so a
/// destructor that waits is not cut short by a cancellation.
pub(crate) fn drop_detached_result<T>(h: &Header, result: Result<T, JoinError>) {
    // Only a value with a destructor, or a panic payload, runs user code.
    let panicked = match result {
        Ok(value) if std::mem::needs_drop::<T>() => crate::time::shield(|| drop_caught(value)),
        Ok(_) => None,
        Err(e) => match e.try_into_panic() {
            Ok(payload) => crate::time::shield(|| drop_caught(payload)),
            Err(_) => None,
        },
    };
    if let Some(payload) = panicked {
        report_result_drop_panic(h, payload);
    }
}

/// A result nobody joined panicked when dropped: debug mode says so (the
/// panic hook has printed the panic already), and the payload goes.
fn report_result_drop_panic(h: &Header, payload: Box<dyn Any + Send>) {
    if debug::enabled() && !Cancelled::is(&*payload) {
        debug::warn(format_args!(
            "the result of green thread {} spawned at {}, which nobody joined, panicked when it \
             was dropped",
            h.describe(),
            h.site
        ));
    }
    discard_payload(payload);
}

/// Drops the body of a green thread that will never run, under
/// `catch_unwind` and in a shield (the canceller may be cancelled itself, a
/// scope whose timeout expired say, and a destructor's wait must not be cut
/// short there). Returns its outcome: `otherwise`, or the destructor's
/// panic, which is the green thread's outcome as a panic of its body would
/// be.
fn drop_body<F>(h: &Header, body: F, otherwise: JoinError) -> JoinError {
    match crate::time::shield(|| drop_caught(body)) {
        Some(payload) if !Cancelled::is(&*payload) => JoinError::panic(h, payload),
        _ => otherwise,
    }
}
