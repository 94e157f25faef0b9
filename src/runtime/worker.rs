//! Workers: the OS threads that run green threads.
//!
//! Each worker owns a ready queue of *started* green threads, which are pinned
//! to it, a deque of *unstarted* ones, which idle workers may steal, its own
//! timers, and a registry of the green threads it started. Other threads
//! reach it through its [`Home`]: an inbox for wake-ups, and its reactor,
//! whose `unpark` wakes it.
//!
//! The thread that calls `run` becomes an executor of the same kind for the
//! duration of the call: it runs the main green thread and the green threads
//! of that `run` spawned into its LIFO slot (see `Worker::keeps_spawn`), but
//! has no deque and never takes work from the pool.
//!
//! A worker runs a loop: timers that are due, the inbox, then one green
//! thread from the ready queue (or, every 32nd turn and when nothing is
//! ready, a new one from its deque, the runtime's injector, or another
//! worker), followed by more ready ones in a burst while nothing else is
//! due. With nothing to do it spins briefly (see `Idle` for who may spin on
//! what), then parks until a wake-up or its next timer. The park is the one
//! place a worker blocks: it waits in its epoll reactor (see `reactor`) with
//! the next timer as the timeout, and a busy worker with sockets registered
//! takes their events every 32nd turn without waiting.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corosensei::stack::Stack as _;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use crossbeam_deque::{Steal, Worker as Deque};
use crossbeam_queue::SegQueue;
use crossbeam_utils::CachePadded;
use stackful_arch::{Label, Owner, PooledStack, prefetch};

use crate::debug;
use crate::runtime::reactor::Reactor;
use crate::runtime::ready::ReadyQueue;
use crate::runtime::{Group, RtShared};
use crate::scopes::ScopeStack;
use crate::task::JoinError;
use crate::task::raw::{
    self, COMPLETE, Header, NOTIFIED, RUNNING, SCHEDULED, STARTED, Suspend, TaskRef,
};

static GREEN_THREAD: Owner = Owner {
    kind: "green thread",
    hint: "give it a larger stack with `stackful::task::Builder::stack_size` or \
           `Runtime::builder().stack_size`",
};

/// Turns spent spinning before a worker parks.
const SPINS: u32 = 256;

/// Stacks an idle worker maps ahead of demand at a time (see `idle`): some
/// tens of microseconds of work before it looks for work again.
const GROW_STEP: usize = 8;

/// A worker fires due timers every this many turns (and whenever it has
/// nothing else to do). A power of two, so the check is a mask.
const TIMERS_EVERY: u64 = 16;

/// A busy worker looks for new green threads (and publishes its heartbeat)
/// every this many turns. A multiple of `TIMERS_EVERY`, so that the burst
/// loop in `run`, which returns to a full turn at every timer turn, never
/// skips one.
const FRESH_EVERY: u64 = 2 * TIMERS_EVERY;

/// A busy worker looks for a stalled peer (see `Worker::yield_to_stalled`)
/// every this many turns: a clock read, kept off most turns.
const YIELD_CHECK_EVERY: u64 = 8 * FRESH_EVERY;

/// How long a peer worker with green threads ready may go without a turn
/// before a busy worker gives up its CPU to it.
const YIELD_AFTER: Duration = Duration::from_millis(1);

/// How many started green threads, the main one included, a `run` thread
/// holds at most from its own spawns; then they go to the pool: room for a
/// few partners (see `Worker::keeps_spawn`).
const RUN_SHARE: usize = 4;

/// What other threads may touch of a worker.
pub(crate) struct Home {
    pub(crate) index: usize,
    inbox: SegQueue<TaskRef>,
    /// Set after every push to `inbox`, so the worker checks one flag, not the queue.
    inbox_ready: AtomicBool,
    /// Where the worker parks; its `unpark` wakes it.
    reactor: Arc<Reactor>,
    /// Set when `cancel_groups` or `cancel_all` has work for the worker.
    control: AtomicBool,
    cancel_groups: Mutex<Vec<Arc<Group>>>,
    cancel_all: AtomicBool,
    /// Debug mode: when the running green thread was resumed (ns since the
    /// runtime started, 0 when none runs), and which one it is.
    pub(crate) running_since: AtomicU64,
    pub(crate) running: Mutex<Option<TaskRef>>,
    /// Green threads started here and not finished (each holds a stack): the
    /// registry's size, published by the worker for spawners to enforce the
    /// mapping limit.
    started: CachePadded<AtomicUsize>,
    /// The worker's turn counter, published every 32nd turn: a peer whose
    /// heartbeat stands still is parked or stuck in one green thread.
    heartbeat: AtomicU64,
    /// Its ready queue's length, published with the heartbeat: how many
    /// green threads share its CPU time (see `ahead_of_peers`).
    runnable: AtomicUsize,
    /// A `run` thread's LIFO slot: the newest green thread spawned there and
    /// not started yet, as a counted `TaskRef` (`into_raw`), or null. Shared
    /// so that the monitor can move one that waits there too long to the
    /// pool (see `monitor`). A pool worker keeps its slot in `Worker::lifo`.
    pub(crate) next: AtomicPtr<Header>,
    /// Spawns into `next` so far (written by the `run` thread only), so that
    /// the monitor tells a new spawn from an old one at a reused address.
    pub(crate) next_spawns: AtomicU64,
}

impl Drop for Home {
    fn drop(&mut self) {
        if let Some(p) = NonNull::new(*self.next.get_mut()) {
            // SAFETY: a non-null slot holds a count given up by `into_raw`,
            // taken back only here or by a swap that leaves null behind.
            drop(unsafe { TaskRef::from_raw(p) });
        }
    }
}

impl Home {
    pub(crate) fn new(index: usize, reactor: Arc<Reactor>) -> Home {
        Home {
            index,
            inbox: SegQueue::new(),
            inbox_ready: AtomicBool::new(false),
            reactor,
            control: AtomicBool::new(false),
            cancel_groups: Mutex::new(Vec::new()),
            cancel_all: AtomicBool::new(false),
            running_since: AtomicU64::new(0),
            running: Mutex::new(None),
            started: CachePadded::new(AtomicUsize::new(0)),
            heartbeat: AtomicU64::new(0),
            runnable: AtomicUsize::new(0),
            next: AtomicPtr::new(std::ptr::null_mut()),
            next_spawns: AtomicU64::new(0),
        }
    }

    /// Hands a woken green thread to this worker from another thread.
    fn push_remote(&self, task: TaskRef) {
        self.inbox.push(task);
        self.inbox_ready.store(true, Ordering::Release);
        self.reactor.unpark();
    }

    /// Green threads started on this worker and not finished.
    pub(crate) fn started(&self) -> usize {
        self.started.load(Ordering::Relaxed)
    }

    pub(crate) fn unpark(&self) {
        self.reactor.unpark();
    }

    /// Asks the worker to cancel the green threads of `group` it has started.
    pub(crate) fn request_cancel(&self, group: Arc<Group>) {
        self.cancel_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(group);
        self.control.store(true, Ordering::Release);
        self.reactor.unpark();
    }

    /// Asks the worker to cancel every green thread it has started.
    pub(crate) fn request_cancel_all(&self) {
        self.cancel_all.store(true, Ordering::Release);
        self.control.store(true, Ordering::Release);
        self.reactor.unpark();
    }
}

/// A worker's timers: a FIFO of deadlines in order and a min-heap for the
/// rest, both with lazy removal.
///
/// Entries are ordered by deadline, then by a sequence number that makes
/// them unique and identifies them to their green thread. Most sleeps end later than every sleep before them (a burst of
/// `sleep(10ms)`, a ticker), so a timer whose key is not below the FIFO's
/// last goes to its back, and due timers come off its front: O(1) both ways,
/// reading memory in order. The others go to the heap, O(log n). The next
/// timer is the earlier of the two fronts.
///
/// A green thread woken before its timer does not search for it; its
/// `local.timer` no longer names the entry, which is skipped (and counted as
/// stale) when it reaches a front. When stale entries outnumber live ones,
/// both are rebuilt without them, so memory stays bounded.
struct Timers {
    fifo: VecDeque<TimerEntry>,
    heap: std::collections::BinaryHeap<TimerEntry>,
    seq: u64,
    stale: usize,
}

struct TimerEntry {
    key: (Instant, u64),
    task: TaskRef,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for TimerEntry {}

impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TimerEntry {
    /// Reversed: the max-heap then yields the earliest deadline first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.key.cmp(&self.key)
    }
}

impl TimerEntry {
    /// Whether the green thread still waits on this timer. Home thread only.
    fn is_live(&self) -> bool {
        // A completed green thread (whose `Local` is gone) waits on nothing.
        let local = self.task.header().local.get();
        local.is_some_and(|l| l.timer.get() == self.key.1)
    }
}

impl Timers {
    fn new() -> Timers {
        Timers {
            fifo: VecDeque::new(),
            heap: std::collections::BinaryHeap::new(),
            seq: 0,
            stale: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.fifo.is_empty() && self.heap.is_empty()
    }

    /// Adds a timer and returns its sequence number (never 0).
    fn add(&mut self, at: Instant, task: &TaskRef) -> u64 {
        self.seq += 1;
        let key = (at, self.seq);
        let entry = TimerEntry {
            key,
            task: task.clone(),
        };
        // A stale entry at the back (a long sleep woken early) would send
        // every earlier timer to the heap until it reached the front.
        while self.fifo.back().is_some_and(|last| !last.is_live()) {
            self.fifo.pop_back();
            self.stale = self.stale.saturating_sub(1);
        }
        if self.fifo.back().is_none_or(|last| last.key < key) {
            self.fifo.push_back(entry);
        } else {
            self.heap.push(entry);
        }
        self.seq
    }

    /// One entry went stale; rebuild when stale ones dominate.
    fn forget(&mut self) {
        self.stale += 1;
        if self.stale > 64 && self.stale * 2 > self.fifo.len() + self.heap.len() {
            self.fifo.retain(TimerEntry::is_live);
            let entries = std::mem::take(&mut self.heap).into_vec();
            self.heap = entries.into_iter().filter(TimerEntry::is_live).collect();
            self.stale = 0;
        }
    }

    /// Drops stale entries from both fronts, then returns the earliest key
    /// and whether it is the FIFO's.
    fn first(&mut self) -> Option<(Instant, bool)> {
        while self.fifo.front().is_some_and(|e| !e.is_live()) {
            self.fifo.pop_front();
            self.stale = self.stale.saturating_sub(1);
        }
        while self.heap.peek().is_some_and(|e| !e.is_live()) {
            self.heap.pop();
            self.stale = self.stale.saturating_sub(1);
        }
        match (self.fifo.front(), self.heap.peek()) {
            (Some(f), Some(h)) if h.key < f.key => Some((h.key.0, false)),
            (Some(f), _) => Some((f.key.0, true)),
            (None, Some(h)) => Some((h.key.0, false)),
            (None, None) => None,
        }
    }

    fn next(&mut self) -> Option<Instant> {
        self.first().map(|(at, _)| at)
    }

    /// Pops a live timer that is due at `now`, clearing the green thread's
    /// record of it.
    fn pop_due(&mut self, now: Instant) -> Option<TaskRef> {
        let (at, in_fifo) = self.first()?;
        if at > now {
            return None;
        }
        let entry = if in_fifo {
            self.fifo.pop_front()?
        } else {
            self.heap.pop()?
        };
        if let Some(l) = entry.task.header().local.get() {
            l.timer.set(0);
        }
        Some(entry.task)
    }
}

/// New green threads spawned from outside the workers (a `run` thread, a
/// plain thread): a queue under a short lock, from which workers take
/// batches.
///
/// A lock and a `VecDeque` rather than a lock-free segment queue: segments
/// are allocated by the spawning thread and freed by the worker that empties
/// them, and with glibc's malloc those cross-thread frees contend on the
/// spawner's arena lock. The deque's buffer is reused, so the steady state
/// allocates nothing, and the lock is held for a push or a batch move only.
#[derive(Default)]
pub(crate) struct Injector {
    queue: Mutex<VecDeque<TaskRef>>,
    /// The queue's length, read without the lock by idle checks.
    len: AtomicUsize,
}

/// Most green threads a worker takes from the injector at once.
const INJECT_BATCH: usize = 32;

impl Injector {
    pub(crate) fn push(&self, task: TaskRef) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.push_back(task);
        self.len.store(q.len(), Ordering::Release);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
    }

    /// Takes one green thread to run now and moves up to half of the rest
    /// (at most `INJECT_BATCH`) to `deque`.
    fn steal_batch_and_pop(&self, deque: &Deque<TaskRef>) -> Option<TaskRef> {
        if self.is_empty() {
            return None;
        }
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let first = q.pop_front();
        let batch = q.len().div_ceil(2).min(INJECT_BATCH);
        for task in q.drain(..batch) {
            deque.push(task);
        }
        self.len.store(q.len(), Ordering::Release);
        first
    }
}

/// The started green threads of one worker, so that shutdown can find them.
#[derive(Default)]
struct Registry {
    slots: Vec<Option<TaskRef>>,
    free: Vec<usize>,
}

impl Registry {
    fn insert(&mut self, task: TaskRef) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(task);
                i
            }
            None => {
                self.slots.push(Some(task));
                self.slots.len() - 1
            }
        }
    }

    /// Green threads registered: started here and not finished.
    fn live(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn remove(&mut self, i: usize) -> Option<TaskRef> {
        let task = self.slots.get_mut(i).and_then(Option::take);
        if task.is_some() {
            self.free.push(i);
        }
        task
    }
}

/// An executor owned by one OS thread: a pool worker, or a thread inside `run`.
/// Used through `&Worker` from both the loop and the green threads it runs,
/// hence the cells; no borrow of them is ever held across a resume.
pub(crate) struct Worker {
    pub(crate) home: Arc<Home>,
    pub(crate) rt: Arc<RtShared>,
    ready: ReadyQueue,
    timers: RefCell<Timers>,
    registry: RefCell<Registry>,
    /// Unstarted green threads; `None` for a `run` thread, which never steals.
    fresh: Option<Deque<TaskRef>>,
    /// A pool worker's LIFO slot: the newest green thread spawned here, run
    /// next; see `submit_new`. (A `run` thread's is `Home::next`.)
    lifo: Cell<Option<TaskRef>>,
    /// A `run` thread: the header of its main green thread (see `start`).
    main: Cell<*const Header>,
    /// A `run` thread: when its shutdown reports a slow wait (debug mode).
    report_at: Cell<Option<Instant>>,
    /// Runs from the LIFO slot in a row; capped so a chain of spawns cannot
    /// starve the ready queue.
    lifo_streak: Cell<u8>,
    tick: Cell<u64>,
    /// Per worker: the last heartbeat seen and when it changed.
    peers: RefCell<Vec<(u64, Instant)>>,
    /// Counted in the runtime's `searching` workers (see `Idle`).
    searching: Cell<bool>,
    /// The peer `find_fresh` tries to steal from first.
    steal_from: Cell<usize>,
    /// When `yield_to_stalled` last gave up the CPU.
    last_yield: Cell<Instant>,
    /// The `Local` of the last green thread that completed here, for the
    /// next one to start here (one allocation less per green thread).
    spare_local: Cell<Option<Box<crate::task::raw::Local>>>,
}

thread_local! {
    /// Whether this thread was panicking (`std::thread::panicking`) when the
    /// running green thread was resumed: see `note_unwind`.
    static SLICE_PANICKING: Cell<bool> = const { Cell::new(false) };
    /// The executor of this thread, if it is one.
    static WORKER: Cell<*const Worker> = const { Cell::new(std::ptr::null()) };
    /// The green thread this thread is running now, if any.
    static CURRENT: Cell<Option<NonNull<Header>>> = const { Cell::new(None) };
}

/// Tells which green thread an unwind on this thread belongs to, at each
/// switch where one is on its way. The panic count behind
/// `std::thread::panicking` is per OS thread, so a green thread suspended
/// in a destructor in the middle of an unwind leaves it set for the others
/// of its worker. A green thread that was resumed with the thread not
/// panicking and suspends with it panicking started that unwind itself:
/// it is flagged, until it suspends with the thread not panicking. Only
/// the flagged one (or the running one, if the thread was not panicking
/// when it was resumed) counts as unwinding; see `context_unwinding`. Two
/// green threads of one worker mid-unwind at once blur this (the second
/// is not flagged), as does a generator leaked mid-unwind, which keeps the
/// count for good.
#[cold]
#[inline(never)]
fn note_unwind(h: &Header) {
    let now = std::thread::panicking();
    if now && !SLICE_PANICKING.get() {
        h.local.unwinding.set(true);
    } else if !now {
        h.local.unwinding.set(false);
    }
    SLICE_PANICKING.set(now);
}

/// Whether the calling context is in the middle of an unwind of its own:
/// the running green thread (see `note_unwind`), or this OS thread.
pub(crate) fn context_unwinding() -> bool {
    if !std::thread::panicking() {
        return false;
    }
    with_current_task(|t| match t {
        Some(t) => t.header().local.unwinding.get() || !SLICE_PANICKING.get(),
        None => true,
    })
}

/// Runs `f` with this thread's executor, if it has one.
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&Worker>) -> R) -> R {
    let w = WORKER.get();
    // SAFETY: WORKER points to a Worker that lives on this thread's stack
    // for as long as the pointer is set (see `Worker::enter`).
    f(unsafe { w.as_ref() })
}

/// Runs `f` with the green thread running on this thread, if any, without
/// touching its reference count.
#[inline]
pub(crate) fn with_current_task<R>(f: impl FnOnce(Option<&TaskRef>) -> R) -> R {
    match CURRENT.get() {
        // SAFETY: CURRENT is set from a live TaskRef that the worker holds
        // for the whole resume, and the green thread's own closure holds
        // another, so the task outlives any use within this green thread's
        // execution, which is where `f` runs.
        Some(p) => f(Some(&*unsafe { TaskRef::borrow_raw(p) })),
        None => f(None),
    }
}

/// The scope stack of the green thread running on this thread, or null.
pub(crate) fn current_scopes() -> *mut ScopeStack {
    with_current_task(|t| t.map_or(std::ptr::null_mut(), |t| t.header().local.scopes.get()))
}

/// The task-locals slot of the green thread running on this thread, or null.
#[inline]
pub(crate) fn current_locals() -> *const crate::task::local::Slot {
    with_current_task(|t| t.map_or(std::ptr::null(), |t| &t.header().local.locals as *const _))
}

/// Whether the green thread of `h` has this thread's executor as its home
/// and has not completed: what runs here may then use its `local` cells
/// (one thing runs on a thread at a time), and `Worker::complete`, which
/// runs here too, has yet to clear them.
pub(crate) fn lives_here(h: &Header) -> bool {
    let Some(home) = h.home() else { return false };
    with_current(|w| w.is_some_and(|w| std::ptr::eq(Arc::as_ptr(&w.home), home)))
        && h.state.load(Ordering::Acquire) & COMPLETE == 0
}

/// The green thread running on this thread, if any.
pub(crate) fn current_task() -> Option<TaskRef> {
    with_current_task(|t| t.cloned())
}

/// Enqueues a woken, started green thread on its home worker: on its
/// ready queue, which counts no reference, when the caller runs there, else
/// in the home's inbox, with a reference of its own.
pub(crate) fn schedule(task: &TaskRef) {
    if let Some(home) = push_if_home(task) {
        // SAFETY: `home` came from the task's header, which `task` keeps alive.
        unsafe { &*home }.push_remote(task.clone());
    }
}

/// As [`schedule`], consuming a reference: it goes to the inbox if the
/// green thread is enqueued there.
pub(crate) fn schedule_owned(task: TaskRef) {
    if let Some(home) = push_if_home(&task) {
        // SAFETY: `home` came from the task's header, which `task` keeps alive.
        unsafe { &*home }.push_remote(task);
    }
}

/// Pushes a woken green thread on the caller's ready queue if the caller
/// runs on its home thread; else returns that home.
#[inline]
fn push_if_home(task: &TaskRef) -> Option<*const Home> {
    let home: *const Home = task
        .header()
        .home()
        .expect("a woken green thread has a home");
    with_current(|w| match w {
        Some(w) if std::ptr::eq(Arc::as_ptr(&w.home), home) => {
            // A woken green thread was started here and has not completed
            // (its wake-up found it suspended): the ready queue's invariant.
            w.ready.push(task);
            None
        }
        _ => Some(home),
    })
}

/// What a worker's turn runs first: a green thread that has not started
/// (from the LIFO slot, a deque or the injector), with the reference its
/// queue held, or one from the ready queue, which holds none.
enum Next {
    Fresh(TaskRef),
    Ready(ManuallyDrop<TaskRef>),
}

/// Places a new green thread: in the spawning executor's LIFO slot when the
/// spawner is a green thread of the same runtime (on a `run` thread, only
/// while that thread holds few; see `keeps_spawn`), else on
/// the injector. An idle worker is woken to pick up what does not stay.
pub(crate) fn submit_new(rt: &Arc<RtShared>, task: TaskRef) {
    let leftover = with_current(|w| match w {
        Some(w) if Arc::ptr_eq(&w.rt, rt) && w.keeps_spawn(&task) => {
            // The LIFO slot: the newest spawn of a green thread runs next on
            // this executor and cannot be stolen meanwhile, so a green thread
            // and the partner it spawns start, and stay, side by side. The
            // spawn it displaces goes to the deque, where idle workers may
            // steal it (a `run` thread has none: to the injector).
            let displaced = w.lifo_replace(task);
            displaced
                .map(|old| match &w.fresh {
                    Some(deque) => deque.push(old),
                    None => rt.injector.push(old),
                })
                .is_some()
        }
        _ => {
            rt.injector.push(task);
            true
        }
    });
    if leftover {
        rt.notify_idle();
    }
}

/// Marks a claimed green thread that never ran as complete, on whichever
/// thread dropped its body.
fn finish_unstarted(task: &TaskRef) {
    let h = task.header();
    h.state.fetch_or(COMPLETE, Ordering::AcqRel);
    h.state
        .fetch_and(!(RUNNING | NOTIFIED | SCHEDULED), Ordering::AcqRel);
    raw::finish(task);
}

impl Worker {
    pub(crate) fn new(home: Arc<Home>, rt: Arc<RtShared>, fresh: Option<Deque<TaskRef>>) -> Worker {
        Worker {
            home,
            rt,
            ready: ReadyQueue::new(),
            timers: RefCell::new(Timers::new()),
            registry: RefCell::new(Registry::default()),
            fresh,
            lifo: Cell::new(None),
            main: Cell::new(std::ptr::null()),
            report_at: Cell::new(None),
            lifo_streak: Cell::new(0),
            tick: Cell::new(0),
            peers: RefCell::new(Vec::new()),
            searching: Cell::new(false),
            steal_from: Cell::new(0),
            last_yield: Cell::new(Instant::now()),
            spare_local: Cell::new(None),
        }
    }

    /// Makes this the thread's executor while `f` runs.
    pub(crate) fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Leave(*const Worker);
        impl Drop for Leave {
            fn drop(&mut self) {
                WORKER.set(self.0);
            }
        }
        let _leave = Leave(WORKER.replace(self));
        f()
    }

    /// This thread's reactor, where its green threads' sockets register.
    pub(crate) fn reactor(&self) -> &Arc<Reactor> {
        &self.home.reactor
    }

    /// Registers a wake-up for `task` at `at` and returns its sequence number.
    pub(crate) fn add_timer(&self, at: Instant, task: &TaskRef) -> u64 {
        self.timers.borrow_mut().add(at, task)
    }

    /// The green thread woke up before its timer: the entry goes stale and
    /// is dropped lazily (see `Timers`).
    pub(crate) fn forget_timer(&self) {
        self.timers.borrow_mut().forget();
    }

    fn next_timer(&self) -> Option<Instant> {
        let next = self.timers.borrow_mut().next();
        match (next, self.report_at.get()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn fire_timers(&self) {
        if self.timers.borrow().is_empty() {
            return;
        }
        let now = Instant::now();
        loop {
            let due = self.timers.borrow_mut().pop_due(now);
            match due {
                Some(task) => raw::wake(&task),
                None => return,
            }
        }
    }

    fn drain_inbox(&self) {
        // A plain load on the common, empty path; clear the flag before
        // draining, so a push after this point sets it again.
        if !self.home.inbox_ready.load(Ordering::Acquire)
            || !self.home.inbox_ready.swap(false, Ordering::AcqRel)
        {
            return;
        }
        while let Some(task) = self.home.inbox.pop() {
            // Woken here by another thread: started here, not completed (the
            // ready queue's invariant), so the registry's reference keeps it
            // alive once the inbox's goes.
            self.ready.push(&task);
        }
    }

    fn pop_ready(&self) -> Option<Next> {
        self.ready.pop().map(Next::Ready)
    }

    fn fresh_next(&self) -> Option<Next> {
        self.find_fresh().map(Next::Fresh)
    }

    /// Whether a green thread spawned on this executor stays in its LIFO
    /// slot. Always on a pool worker. On a `run` thread, only a green thread
    /// of that `run` (whose shutdown waits for it), and only while the
    /// thread holds fewer than [`RUN_SHARE`] started green threads: the
    /// partners and children that the main body (and they) spawn and wait
    /// for run beside it with no thread crossing, but the thread stays a
    /// helper, not one more worker. An accept loop in the main body sends
    /// all but its first few connections to the pool, whose workers are
    /// sized to the CPUs; a `run` thread holding a share of them would be
    /// one thread more than there are CPUs, and what it holds would wait
    /// whenever the OS runs a worker instead.
    fn keeps_spawn(&self, task: &TaskRef) -> bool {
        if self.fresh.is_some() {
            return true;
        }
        task.header()
            .group
            .as_ref()
            .is_some_and(|g| g.is_homed_at(&self.home))
            && self.home.started() < RUN_SHARE
    }

    /// A green thread of a `run` thread is about to wait for I/O: the spawn
    /// it left in the thread's LIFO slot, if any, goes to the pool. A green
    /// thread that spawns and then waits for a socket (an accept loop, a
    /// server started before its client connects) is not waiting for what
    /// it spawned, which would otherwise start and stay on this thread, one
    /// thread more than the workers sized to the CPUs; partners waited for
    /// through channels and joins stay.
    pub(crate) fn hand_off_spawn(&self) {
        if self.fresh.is_some() {
            return;
        }
        if let Some(task) = self.lifo_take() {
            self.rt.injector.push(task);
            self.rt.notify_idle();
        }
    }

    /// An unstarted green thread: the LIFO slot (when the ready queue had
    /// its turn), own deque, then injector, then other workers. A `run`
    /// thread takes only its LIFO slot.
    fn find_fresh(&self) -> Option<TaskRef> {
        if let Some(t) = self.lifo_take() {
            return Some(t);
        }
        let deque = self.fresh.as_ref()?;
        if let Some(t) = deque.pop() {
            return Some(t);
        }
        if let Some(t) = self.rt.injector.steal_batch_and_pop(deque) {
            return Some(t);
        }
        let n = self.rt.stealers.len();
        // Peers in turn, starting one further each time (the tick is a
        // multiple of FRESH_EVERY on the periodic path, so it cannot serve).
        let start = self.steal_from.get();
        self.steal_from.set(start.wrapping_add(1));
        for k in 0..n {
            let i = (start + k) % n;
            if i == self.home.index {
                continue;
            }
            loop {
                match self.rt.stealers[i].steal_batch_and_pop(deque) {
                    Steal::Success(t) => return Some(t),
                    Steal::Retry => continue,
                    Steal::Empty => break,
                }
            }
        }
        None
    }

    /// Whether an unstarted green thread is anywhere this worker could take
    /// it from (a few loads, no lock).
    fn fresh_visible(&self) -> bool {
        self.lifo_is_set()
            || self.fresh.as_ref().is_some_and(|deque| {
                !deque.is_empty()
                    || !self.rt.injector.is_empty()
                    || self.rt.stealers.iter().any(|s| !s.is_empty())
            })
    }

    fn has_work(&self) -> bool {
        self.home.inbox_ready.load(Ordering::Acquire)
            || self.home.control.load(Ordering::Acquire)
            || self.fresh_visible()
    }

    fn control(&self) {
        self.home.control.store(false, Ordering::Release);
        let all = self.home.cancel_all.swap(false, Ordering::AcqRel);
        let groups = std::mem::take(
            &mut *self
                .home
                .cancel_groups
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let victims: Vec<TaskRef> = self
            .registry
            .borrow()
            .slots
            .iter()
            .flatten()
            .filter(|t| {
                all || t
                    .header()
                    .group
                    .as_ref()
                    .is_some_and(|g| groups.iter().any(|x| Arc::ptr_eq(g, x)))
            })
            .cloned()
            .collect();
        for task in &victims {
            raw::cancel(task);
        }
    }

    /// The loop of a pool worker; returns when the runtime stops.
    pub(crate) fn run_pool(&self) {
        loop {
            if self.home.control.load(Ordering::Acquire) {
                self.control();
            }
            if self.rt.stopping.load(Ordering::Acquire) {
                // Nothing polls this reactor from now on: green threads of
                // other runtimes waiting through it move to their own.
                self.home.reactor.retire();
                return;
            }
            if !self.turn() {
                self.idle();
            }
        }
    }

    /// The loop of a `run` thread: runs `main`, and the green threads of
    /// its `run` that start here (see `keeps_spawn`), until `main` completes.
    pub(crate) fn run_main(&self, main: TaskRef) {
        self.main.set(main.header());
        self.run(Next::Fresh(main.clone()));
        self.run_while(|| !main.header().is_complete());
    }

    /// The rest of a `run` thread's loop, once its `run` has asked every
    /// executor to cancel what is left of it: runs until nothing started
    /// here is left, nor waits to start here. Nothing else can arrive: only
    /// green threads running here spawn into this thread's LIFO slot.
    /// `left` counts the green threads of the `run` still alive anywhere,
    /// for debug mode's report of a slow shutdown.
    pub(crate) fn run_out(&self, left: impl Fn() -> u64) {
        let start = Instant::now();
        self.report_at
            .set(debug::enabled().then(|| start + debug::slow_threshold()));
        self.run_while(|| {
            if let Some(at) = self.report_at.get()
                && Instant::now() >= at
            {
                self.report_at.set(None);
                raw::report_slow_wait("`run`'s shutdown", start, left());
            }
            self.registry.borrow().live() > 0 || self.lifo_is_set()
        });
        self.report_at.set(None);
        // Take the request even with nothing left here: it holds the group,
        // which holds this `Home`, a cycle that would leak both.
        if self.home.control.load(Ordering::Acquire) {
            self.control();
        }
    }

    fn run_while(&self, go_on: impl Fn() -> bool) {
        while go_on() {
            if self.home.control.load(Ordering::Acquire) {
                self.control();
            }
            if !self.turn() {
                self.idle();
            }
        }
    }

    /// One turn of the loop. Returns false when there was nothing to run.
    fn turn(&self) -> bool {
        let tick = self.tick.get().wrapping_add(1);
        self.tick.set(tick);
        // Timers every 16th turn, and whenever nothing else is ready (below):
        // reading the clock on every turn of a burst of new green threads
        // was a tenth of the cost of starting them.
        if tick.is_multiple_of(TIMERS_EVERY) {
            self.fire_timers();
        }
        self.drain_inbox();
        if tick.is_multiple_of(FRESH_EVERY) {
            // Busy: take the I/O events that are ready now, if any source
            // waits here (an idle worker takes them in its park).
            if self.home.reactor.has_sources() {
                self.home.reactor.poll_now();
            }
            self.home.heartbeat.store(tick, Ordering::Relaxed);
            self.home
                .runnable
                .store(self.ready.len(), Ordering::Relaxed);
            if tick.is_multiple_of(YIELD_CHECK_EVERY) {
                self.yield_to_stalled();
            }
        }
        let streak = self.lifo_streak.get();
        let lifo = if streak < 3 { self.lifo_take() } else { None };
        self.lifo_streak
            .set(if lifo.is_some() { streak + 1 } else { 0 });
        let next = lifo.map(Next::Fresh).or_else(|| {
            // Every 32nd turn a busy worker starts a new green thread too, so
            // new ones are not starved by a busy ready queue, unless it runs
            // more than its share already (see `ahead_of_peers`).
            if tick.is_multiple_of(FRESH_EVERY) && self.fresh_visible() {
                let ahead = self.ahead_of_peers();
                let fresh = if ahead { None } else { self.fresh_next() };
                // Busy, with more new green threads waiting: wake a parked
                // worker to start them, or this one would start them all.
                if self.fresh.as_ref().is_some_and(|d| !d.is_empty())
                    || (self.fresh.is_some() && !self.rt.injector.is_empty())
                {
                    self.rt.notify_idle();
                }
                // With nothing else to run it takes one after all.
                fresh
                    .or_else(|| self.pop_ready())
                    .or_else(|| if ahead { self.fresh_next() } else { None })
            } else {
                self.pop_ready().or_else(|| self.fresh_next())
            }
        });
        let next = next.or_else(|| {
            self.fire_timers();
            self.pop_ready()
        });
        match next {
            Some(task) => {
                self.found_work();
                self.run(task);
                true
            }
            None => false,
        }
    }

    /// Whether this busy worker already runs more than its share of green
    /// threads: more than `SLACK` ready ones beyond the least loaded peer
    /// that is making progress. It then leaves new green threads to its
    /// peers on its periodic turn (it still takes one when it has nothing
    /// else to run). A started green thread never moves, so a worker that
    /// happens to run faster for a moment (its peer shares a CPU with the
    /// spawning thread, say) would otherwise start nearly every green thread
    /// of a burst and keep them. Load is the ready queue's length, so green
    /// threads that sleep or wait do not count. Peers whose heartbeat has
    /// not moved for `STALL` (parked, descheduled, or stuck in one green
    /// thread) do not count, so new green threads wait at most that long on
    /// a worker that cannot take them.
    fn ahead_of_peers(&self) -> bool {
        const SLACK: usize = 16;
        const STALL: Duration = Duration::from_millis(5);
        let homes = &self.rt.homes;
        if homes.len() < 2 || self.fresh.is_none() {
            return false;
        }
        let now = Instant::now();
        let mut peers = self.peers.borrow_mut();
        peers.resize(homes.len(), (0, now));
        let mut least = usize::MAX;
        for (i, home) in homes.iter().enumerate() {
            if i == self.home.index {
                continue;
            }
            let beat = home.heartbeat.load(Ordering::Relaxed);
            let (seen, at) = &mut peers[i];
            if beat != *seen {
                (*seen, *at) = (beat, now);
            } else if now.duration_since(*at) > STALL {
                continue;
            }
            least = least.min(home.runnable.load(Ordering::Relaxed));
        }
        least != usize::MAX && self.ready.len() > least.saturating_add(SLACK)
    }

    /// Gives this worker's CPU to the OS's next thread if a peer worker had
    /// green threads ready and has not had a turn for [`YIELD_AFTER`]. With
    /// more workers than CPUs for them (a server pinned to fewer CPUs, a
    /// loaded machine), the OS runs them in turn, each for a time slice of
    /// a few milliseconds, and the green threads started on a worker that is
    /// not running cannot move to one that is: they wait out the slice
    /// (tokio's tasks would be stolen). Yielding after a millisecond keeps
    /// that wait near one. Where the peer is on a CPU of its own (stuck in a
    /// long green thread), the yield returns at once: a system call per
    /// millisecond at most. It shares `peers` with `ahead_of_peers`,
    /// reading it the same way.
    fn yield_to_stalled(&self) {
        let homes = &self.rt.homes;
        if homes.len() < 2 || self.fresh.is_none() {
            return;
        }
        let now = Instant::now();
        let mut peers = self.peers.borrow_mut();
        peers.resize(homes.len(), (0, now));
        let mut stalled = false;
        for (i, home) in homes.iter().enumerate() {
            if i == self.home.index {
                continue;
            }
            let beat = home.heartbeat.load(Ordering::Relaxed);
            let (seen, at) = &mut peers[i];
            if beat != *seen {
                (*seen, *at) = (beat, now);
            } else if now.duration_since(*at) >= YIELD_AFTER {
                stalled = true;
            }
        }
        drop(peers);
        // At most once per period.
        if stalled && now.duration_since(self.last_yield.get()) >= YIELD_AFTER {
            self.last_yield.set(now);
            std::thread::yield_now();
        }
    }

    /// Nothing to run: search (spin) briefly, then park until a wake-up or
    /// the next timer. Pool workers take part in the `searching` protocol
    /// described at `Idle`.
    fn idle(&self) {
        let pool = self.fresh.is_some();
        if pool && !self.searching.get() {
            self.searching
                .set(self.rt.idle.try_start_searching(self.rt.homes.len()));
        }
        // Searchers (and a `run` thread) spin on all the work they could
        // take. A worker that may not search spins on its own inbox only: a
        // partner green thread on another worker that answers within a few
        // microseconds then needs no wake-up system call, and the shared queues'
        // cache lines are left alone.
        let searching = !pool || self.searching.get();
        for _ in 0..SPINS {
            let work = if searching {
                self.has_work()
            } else {
                self.home.inbox_ready.load(Ordering::Acquire)
                    || self.home.control.load(Ordering::Acquire)
            };
            if work {
                return;
            }
            std::hint::spin_loop();
        }
        // Green threads started here are alive, and a burst ran the stack
        // pool dry: grow the pool for the next one in this idle time, a step
        // at a time, then look for work again. A step is short (a searching
        // worker, which spawners count on to find their work, looks again
        // within tens of microseconds); none while stopping.
        if pool
            && !self.rt.stopping.load(Ordering::Relaxed)
            && self.registry.borrow().live() > 0
            && stackful_arch::grow_ahead(self.rt.config.stack_size, GROW_STEP) > 0
        {
            return;
        }
        let mut was_last = false;
        if pool {
            self.rt.idle.sleep(self.home.index);
            was_last = self.searching.replace(false) && self.rt.idle.stop_searching();
            std::sync::atomic::fence(Ordering::SeqCst);
        }
        // The reactor announces the park before the last look for work
        // (see `reactor`), so a wake-up after that look is not missed.
        let parked = self.home.reactor.park(
            || self.has_work() || self.rt.stopping.load(Ordering::Acquire),
            || self.next_timer(),
        );
        if !parked && was_last {
            // Work came in while we were the last searcher, and its spawners
            // skipped their wake-ups for us: search on, so that `found_work`
            // wakes another worker if more is left than we take.
            self.rt.idle.start_searching();
            self.searching.set(true);
        }
        if pool && !self.rt.idle.awake(self.home.index) {
            // A spawner took us off the list and counted us as searching;
            // if we counted ourselves again above, one count goes.
            if self.searching.replace(true) {
                self.rt.idle.stop_searching();
            }
        }
    }

    /// Found something to run: stop searching. The last searcher wakes a
    /// parked worker if unstarted work is left, since spawners skipped the
    /// wake-up while it searched.
    fn found_work(&self) {
        if self.searching.replace(false) && self.rt.idle.stop_searching() {
            std::sync::atomic::fence(Ordering::SeqCst);
            // Every queue a spawner may have pushed to while skipping its
            // wake-up: this worker's deque, the injector, any other deque.
            let left = self.fresh.as_ref().is_some_and(|d| !d.is_empty())
                || !self.rt.injector.is_empty()
                || self.rt.stealers.iter().any(|s| !s.is_empty());
            if left {
                self.rt.notify_idle();
            }
        }
    }

    /// Runs a green thread popped from a queue until it suspends or ends,
    /// then, in a burst, the next ones from the ready queue for as long as
    /// the loop has nothing else to do: no timers or fresh green threads due
    /// (every 16th turn), no inbox, control request or LIFO spawn.
    /// A `yield_now` round trip then costs one pass of this loop, not of
    /// the whole scheduler turn.
    fn run(&self, next: Next) {
        // A fresh green thread is claimed by `start`.
        let (mut task, mut claimed) = match next {
            Next::Ready(task) => (task, false),
            Next::Fresh(task) => match self.start(task) {
                Some(task) => (task, true),
                None => return,
            },
        };
        loop {
            if claimed || self.claim(&task) {
                self.resume(&task);
            }
            claimed = false;
            let tick = self.tick.get().wrapping_add(1);
            if tick.is_multiple_of(TIMERS_EVERY)
                || self.home.inbox_ready.load(Ordering::Relaxed)
                || self.home.control.load(Ordering::Relaxed)
                || self.lifo_is_set()
            {
                return;
            }
            self.tick.set(tick);
            match self.ready.pop() {
                Some(next) => task = next,
                None => return,
            }
        }
    }

    #[inline]
    fn lifo_is_set(&self) -> bool {
        if self.fresh.is_none() {
            return !self.home.next.load(Ordering::Relaxed).is_null();
        }
        // SAFETY: a plain read of the Cell's content on its owner's thread
        // (Worker is !Sync); nothing writes the cell during this expression.
        unsafe { (*self.lifo.as_ptr()).is_some() }
    }

    /// Puts `task` in the LIFO slot; returns the one it displaces.
    fn lifo_replace(&self, task: TaskRef) -> Option<TaskRef> {
        if self.fresh.is_some() {
            return self.lifo.replace(Some(task));
        }
        // Tells the monitor this is a new spawn, even at an old one's address.
        let spawns = &self.home.next_spawns;
        spawns.store(
            spawns.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
        // SeqCst: the monitor may be going to sleep (see `Monitor::poke`).
        let old = self
            .home
            .next
            .swap(task.into_raw().as_ptr(), Ordering::SeqCst);
        match NonNull::new(old) {
            // SAFETY: the slot held a count given up by `into_raw`, and the
            // swap took it out, so nobody else takes it back.
            Some(p) => Some(unsafe { TaskRef::from_raw(p) }),
            None => {
                self.rt.monitor.poke();
                None
            }
        }
    }

    /// Takes the green thread in the LIFO slot, if any.
    #[inline]
    fn lifo_take(&self) -> Option<TaskRef> {
        if self.fresh.is_some() {
            return self.lifo.take();
        }
        if !self.lifo_is_set() {
            return None;
        }
        let p = self.home.next.swap(std::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: as in `lifo_replace`.
        NonNull::new(p).map(|p| unsafe { TaskRef::from_raw(p) })
    }

    /// Claims a green thread popped from the ready queue for running.
    #[inline]
    fn claim(&self, task: &TaskRef) -> bool {
        let h = task.header();
        let mut s = h.state.load(Ordering::Acquire);
        loop {
            debug_assert!(
                s & (COMPLETE | STARTED) == STARTED,
                "a queued green thread was started and has not completed"
            );
            if s & RUNNING != 0 {
                return true; // requeued by `yield_now`: still ours, still running
            }
            let new = (s & !SCHEDULED) | RUNNING;
            match h
                .state
                .compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(actual) => s = actual,
            }
        }
    }

    /// Claims and starts a green thread that has not started (taken from
    /// the LIFO slot, a deque or the injector, with that queue's reference):
    /// it becomes ours for good, and its reference goes to the registry. The
    /// returned reference counts none (see `ReadyQueue::pop`). `None` if it
    /// completed instead (cancelled before it started, or no stack). Setting
    /// `STARTED` makes this worker the owner of the body: it runs it, or
    /// drops it, exactly once.
    fn start(&self, task: TaskRef) -> Option<ManuallyDrop<TaskRef>> {
        let h = task.header();
        let mut s = h.state.load(Ordering::Acquire);
        loop {
            if s & COMPLETE != 0 {
                return None; // cancelled before it started; its queue entry is stale
            }
            debug_assert!(s & (STARTED | RUNNING) == 0, "a fresh green thread");
            let new = (s & !SCHEDULED) | RUNNING | STARTED;
            match h
                .state
                .compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        h.set_home(&self.home);
        // Its home-thread part, from now until it completes (released in
        // `complete`, or by the record's drop if it fails to start).
        h.local.install(self.spare_local.take());
        // A green thread cancelled before it starts starts all the same: its
        // body checks that first and drops itself on its own stack (see
        // `Task::run_body`), since the destructors of what it captured are
        // user code, which must not run on this loop.
        let stack = match PooledStack::take(h.stack_size()) {
            Ok(stack) => {
                // The next start will likely take the next pooled stack.
                stackful_arch::prefetch_next();
                stack
            }
            Err(e) => {
                let error = JoinError::no_stack(h, e);
                if std::ptr::eq(h, self.main.get()) {
                    // The main green thread: its body (which need not be
                    // `Send`) is dropped on the caller's thread, where it
                    // would have run.
                    // SAFETY: `start` set STARTED for this thread.
                    unsafe { task.fail(error) };
                    finish_unstarted(&task);
                    return None;
                }
                // No stack to drop the body on: a blocking-pool thread drops
                // it (it is `Send`), then finishes the green thread. (Were
                // no pool thread to be had, `submit` would run it here.)
                self.rt.blocking.submit(Box::new(move || {
                    // SAFETY: `start` set STARTED for this worker, which hands
                    // the body over to this job and never touches it again.
                    unsafe { task.fail(error) };
                    finish_unstarted(&task);
                }));
                return None;
            }
        };
        let label = Label {
            // The main green thread's stack is raised differently from a
            // spawned one's.
            owner: if std::ptr::eq(h, self.main.get()) {
                &crate::runtime::MAIN_GREEN_THREAD
            } else {
                &GREEN_THREAD
            },
            name: h.name.as_deref(),
            site: Some(h.site),
        };
        // SAFETY: the name lives in the header, which the coroutine's own
        // closure keeps alive (it holds a TaskRef) for as long as code runs
        // on the stack; the pool clears the label when the stack returns.
        unsafe { stack.set_label(label) };
        let range = (stack.guard_end(), stack.base().get());
        let me = task.clone();
        let co = Coroutine::with_stack(stack, move |yielder: &Yielder<(), Suspend>, ()| {
            me.header().local.yielder.set(yielder);
            // SAFETY: `start` set STARTED for this worker, which runs this
            // closure once (a coroutine's body runs at most once).
            unsafe { me.run_body() };
        });
        // SAFETY: `local` belongs to the home thread, which is this one from
        // now on; nothing else references these cells yet.
        unsafe {
            *h.local.co.get() = Some(co);
            *h.local.scopes.get() = ScopeStack::new(range);
        }
        let mut registry = self.registry.borrow_mut();
        let header = task.as_raw();
        // Registry indices stay far below u32::MAX: each is a started green
        // thread, holding a mapped stack. The registry keeps the reference
        // until the green thread completes (see `complete`).
        let slot = registry.insert(task);
        // SAFETY: `header` is the green thread's, which the registry's
        // reference keeps alive until `complete`, the end of the borrowed
        // reference's use (see `ReadyQueue::pop`).
        let h = unsafe { header.as_ref() };
        h.local
            .slot
            .set(u32::try_from(slot).expect("fewer than 2^32 started green threads"));
        self.home.started.store(registry.live(), Ordering::Relaxed);
        // SAFETY: as above.
        Some(unsafe { TaskRef::borrow_raw(header) })
    }

    /// Runs `task`, started here and claimed, until it suspends or ends. It
    /// must not be used after this returns if it completed (see
    /// `ReadyQueue::pop`).
    fn resume(&self, task: &TaskRef) {
        let h = task.header();
        let debugging = debug::enabled();
        if debugging {
            *self.home.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.clone());
            self.home
                .running_since
                .store(self.rt.nanos_since_start(), Ordering::Release);
        }
        self.prefetch_ahead();
        CURRENT.set(Some(task.as_raw()));
        // SAFETY: this is the home thread (see `start`), and the green
        // thread's own code never touches `local.co`, only the other cells.
        let co = unsafe { (*h.local.co.get()).as_mut() }
            .expect("a started green thread has a coroutine");
        let outcome = co.resume(());
        CURRENT.set(None);
        // One load of a global that is 0 while nothing panics anywhere.
        if std::thread::panicking() || SLICE_PANICKING.get() {
            note_unwind(h);
        }
        if debugging {
            self.home.running_since.store(0, Ordering::Release);
            *self.home.running.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        match outcome {
            // Still started here, and not completed: the queue's invariant.
            CoroutineResult::Yield(Suspend::Requeue) => self.ready.push(task),
            CoroutineResult::Yield(Suspend::Wait) => self.after_wait(task),
            CoroutineResult::Return(()) => self.complete(task),
        }
    }

    /// Asks the CPU to start loading what the next resumes will touch while
    /// this one runs: the header of the green thread three places ahead in
    /// the ready queue, and the suspended frames of the one two places ahead
    /// (its header, holding their address, was prefetched a switch earlier).
    /// With many green threads taking turns those are cache misses otherwise,
    /// and a resume or two is about the time a load from memory takes.
    #[inline]
    fn prefetch_ahead(&self) {
        let (at, later) = self.ready.ahead(1, 2);
        if later != 0 {
            prefetch(later);
        }
        if at != 0 {
            prefetch(at - 128);
            prefetch(at - 64);
            prefetch(at);
        }
    }

    /// A green thread suspended to wait: requeue it if it was woken meanwhile.
    fn after_wait(&self, task: &TaskRef) {
        let state = &task.header().state;
        let mut s = state.load(Ordering::Acquire);
        loop {
            let new = if s & NOTIFIED != 0 {
                (s & !(RUNNING | NOTIFIED)) | SCHEDULED
            } else {
                s & !RUNNING
            };
            match state.compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        if s & NOTIFIED != 0 {
            self.ready.push(task);
        }
    }

    fn complete(&self, task: &TaskRef) {
        let h = task.header();
        // SAFETY: home thread; the coroutine has returned, so nothing runs on
        // its stack and no reference into `co` is live.
        let co = unsafe { (*h.local.co.get()).take() };
        drop(co); // the stack goes back to this thread's pool
        // Nothing runs as this green thread any more: its spare waiter,
        // which holds a reference to it, goes.
        drop(h.local.spare_waiter.take());
        let mut registry = self.registry.borrow_mut();
        // The registry's reference, which keeps the record alive until this
        // function ends (`task` counts none: see `ReadyQueue::pop`).
        let owned = registry.remove(h.local.slot.get() as usize);
        self.home.started.store(registry.live(), Ordering::Relaxed);
        drop(registry);
        // Nothing reads its `Local` from here on (timer entries and queue
        // entries left behind check for it): taken now, not with the record,
        // which may wait long for its join, and kept for the next start.
        if let Some(local) = h.local.release() {
            self.spare_local.set(Some(local));
        }
        let mut s = h.state.load(Ordering::Acquire);
        loop {
            let new = (s | COMPLETE) & !(RUNNING | NOTIFIED | SCHEDULED);
            match h
                .state
                .compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        raw::finish(task);
        debug_assert!(owned.is_some(), "a completing green thread is registered");
        drop(owned);
    }
}
