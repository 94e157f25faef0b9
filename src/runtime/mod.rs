//! The M:N runtime: worker threads that run green threads.
//!
//! A [`Runtime`] owns N worker threads (by default one per available CPU),
//! an elastic pool of threads for [`spawn_blocking`](crate::spawn_blocking),
//! and the queues between them. A global one starts lazily the first time
//! [`run`] or [`spawn`](crate::spawn) needs it, with the settings of
//! [`Builder::new`] (which reads `STACKFUL_WORKERS` and
//! `STACKFUL_STACK_SIZE`) unless [`Builder::build_global`] configured it
//! first; [`Runtime::builder`] makes explicit ones.
//!
//! # The soundness rule
//!
//! Once a green thread has started, it never moves to another OS thread.
//! Idle workers steal green threads that have not started yet, never running
//! ones. So nothing on a green thread's stack (an `Rc`, a `MutexGuard`, a
//! thread-local address the compiler kept across a switch) is ever seen from
//! another thread, and [`spawn`](crate::spawn) is a safe function bounded
//! only by `Send + 'static`. The price: a green thread that runs for long
//! without suspending delays the others pinned to its worker. Move such work
//! into [`spawn_blocking`](crate::spawn_blocking), or call
//! [`yield_now`](crate::yield_now) in long loops; debug mode warns about it.
//!
//! # Holding a `std::sync` lock across a suspension point
//!
//! Soundness does not forbid keeping a `std::sync::MutexGuard` across a
//! suspension point (a sleep, a channel operation, a `join`), but it is the
//! usual cause of a stalled worker: another green thread that then calls
//! `lock()` on that mutex blocks its whole OS thread, and if it shares the
//! holder's worker, the holder never runs again to release it: a deadlock
//! that debug mode reports only as a hog. No lint catches this for
//! blocking-style code (clippy's `await_holding_lock` looks at `.await`
//! only), so follow its advice by hand: drop a std guard before anything
//! that may suspend, or use [`stackful::sync::Mutex`](crate::sync::Mutex),
//! whose `lock` suspends the green thread instead.

pub(crate) mod monitor;
pub(crate) mod park;
pub(crate) mod reactor;
mod ready;
pub(crate) mod worker;

use std::fmt;
use std::io;
use std::num::NonZeroUsize;
use std::panic::{self, Location};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_deque::{Stealer, Worker as Deque};
use stackful_arch::{MAX_STACK_SIZE, MIN_STACK_SIZE, MapLimit, Owner};

use crate::blocking::BlockingPool;
use crate::cancel::AbortOnUnwind;
use crate::debug;
use crate::task::raw::{Header, LiveCount, TaskRef, TypedTask};

pub(crate) use worker::{Home, Injector};

/// Settings shared by a runtime's workers.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) stack_size: usize,
    /// The tokio runtime that `block_on` enters on this runtime's green
    /// threads (see `Builder::tokio_handle`).
    #[cfg(feature = "tokio")]
    pub(crate) tokio: Option<tokio::runtime::Handle>,
}

/// Which pool workers are parked, and how many are searching for work.
///
/// New work wakes a parked worker only when no worker is searching: a
/// searching worker (spinning, or just woken and not yet busy) will find it.
/// A worker that finds unstarted work while it is the last searcher wakes
/// one more if work is left, so a burst of spawns spreads over the workers
/// one wake-up at a time instead of one wake-up per spawn. At most half the
/// workers search at once (the others park, after watching only their own
/// inbox for a moment), so idle spinning leaves CPU to the busy ones.
///
/// The race that matters: a worker stops searching and parks while a spawner
/// skips the wake-up because it still saw it searching. Both sides order their
/// write (the queue push; the `searching` decrement) before their read (of
/// `searching`; of the queues) with a SeqCst fence, so at least one of them
/// sees the other: the spawner wakes a parked worker, or the worker sees the
/// work and does not park.
#[derive(Default)]
pub(crate) struct Idle {
    sleepers: Mutex<Vec<usize>>,
    count: AtomicUsize,
    searching: AtomicUsize,
}

impl Idle {
    /// Registers a worker about to park.
    pub(crate) fn sleep(&self, index: usize) {
        let mut sleepers = self.sleepers.lock().unwrap_or_else(|e| e.into_inner());
        sleepers.push(index);
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    /// A worker is back from parking. Returns false if a waker took it off
    /// the list, which also counted it as searching.
    pub(crate) fn awake(&self, index: usize) -> bool {
        let mut sleepers = self.sleepers.lock().unwrap_or_else(|e| e.into_inner());
        match sleepers.iter().position(|&i| i == index) {
            Some(pos) => {
                sleepers.swap_remove(pos);
                self.count.fetch_sub(1, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// A worker with nothing to do starts searching, unless half of the
    /// `workers` search already: more spinners would only burn the CPU that
    /// the ones with work need. Returns whether it may search.
    pub(crate) fn try_start_searching(&self, workers: usize) -> bool {
        let mut n = self.searching.load(Ordering::SeqCst);
        loop {
            if 2 * n >= workers.max(2) {
                return false;
            }
            match self
                .searching
                .compare_exchange_weak(n, n + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(actual) => n = actual,
            }
        }
    }

    /// A worker searches again: it found work right after it stopped.
    pub(crate) fn start_searching(&self) {
        self.searching.fetch_add(1, Ordering::SeqCst);
    }

    /// A worker stops searching; true if it was the last one.
    pub(crate) fn stop_searching(&self) -> bool {
        self.searching.fetch_sub(1, Ordering::SeqCst) == 1
    }

    /// Takes a parked worker off the list and counts it as searching, unless
    /// a worker is searching already or none is parked.
    fn pop(&self) -> Option<usize> {
        if self.searching.load(Ordering::SeqCst) != 0 || self.count.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let mut sleepers = self.sleepers.lock().unwrap_or_else(|e| e.into_inner());
        let i = sleepers.pop()?;
        self.count.fetch_sub(1, Ordering::SeqCst);
        self.searching.fetch_add(1, Ordering::SeqCst);
        Some(i)
    }
}

/// The green threads spawned under one `run`, transitively.
pub(crate) struct Group {
    pub(crate) cancelled: AtomicBool,
    live: LiveCount,
    /// The executor of the `run` thread, home of the main green thread and
    /// of the green threads of this group that start there (whose headers
    /// point to it without counting, see `Header::home`).
    home: Arc<Home>,
}

impl Group {
    fn new(home: Arc<Home>) -> Group {
        Group {
            cancelled: AtomicBool::new(false),
            live: LiveCount::default(),
            home,
        }
    }

    pub(crate) fn task_finished(&self) {
        self.live.sub();
    }

    /// Whether `home` is the executor of this group's `run` thread.
    pub(crate) fn is_homed_at(&self, home: &Arc<Home>) -> bool {
        Arc::ptr_eq(&self.home, home)
    }
}

/// Everything the workers of one runtime share.
pub(crate) struct RtShared {
    pub(crate) homes: Vec<Arc<Home>>,
    pub(crate) injector: Injector,
    pub(crate) stealers: Vec<Stealer<TaskRef>>,
    pub(crate) idle: Idle,
    pub(crate) config: Config,
    pub(crate) blocking: BlockingPool,
    pub(crate) live: LiveCount,
    /// No new green threads: the runtime is being dropped.
    closing: AtomicBool,
    /// Workers exit their loops.
    pub(crate) stopping: AtomicBool,
    started: Instant,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
    /// The executors of the threads inside a `run` of this runtime now, for
    /// debug mode's watchdog.
    pub(crate) runs: Mutex<Vec<Arc<Home>>>,
    /// Moves green threads stuck in a `run` thread's LIFO slot to the pool.
    pub(crate) monitor: Arc<monitor::Monitor>,
}

impl RtShared {
    pub(crate) fn task_finished(&self) {
        self.live.sub();
    }

    /// Every 64th spawn on a thread: the number of started, unfinished green
    /// threads (each holds a stack) and the limit, if that number has come
    /// within [`SPAWN_HEADROOM`] of the mapping limit. Unstarted ones hold no
    /// stack and do not count, so a burst of spawns far beyond the limit is
    /// accepted; those that find no stack when they start fail then (see
    /// `spawn`'s docs).
    fn stacks_over_limit(&self) -> Option<(usize, MapLimit)> {
        thread_local! {
            static SPAWNS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
        }
        let n = SPAWNS.get();
        SPAWNS.set(n.wrapping_add(1));
        if !n.is_multiple_of(64) {
            return None;
        }
        let limit = MapLimit::current()?;
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let started: usize = self
            .homes
            .iter()
            .chain(runs.iter())
            .map(|h| h.started())
            .sum();
        (started >= limit.stacks - headroom(limit)).then_some((started, limit))
    }

    pub(crate) fn notify_idle(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if let Some(i) = self.idle.pop() {
            self.homes[i].unpark();
        }
    }

    pub(crate) fn nanos_since_start(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64 + 1
    }
}

/// Spawns are refused once the started green threads come within this many
/// stacks of [`MapLimit::stacks`]: room for generators, pooled stacks and
/// the green threads spawned meanwhile, so that a steady stream of spawns
/// meets a spawn error rather than green threads that fail at start.
const SPAWN_HEADROOM: usize = 512;

/// How far short of the limit spawns are refused: [`SPAWN_HEADROOM`], or
/// half the figure under a tiny `vm.max_map_count`, which must not refuse
/// every spawn.
fn headroom(limit: MapLimit) -> usize {
    SPAWN_HEADROOM.min(limit.stacks / 2)
}

/// The error of a spawn refused by `stacks_over_limit`.
fn too_many_started(live: usize, limit: MapLimit) -> String {
    format!(
        "cannot spawn another green thread: {live} have started and not finished, each holding \
         a stack, and {limit}; spawns are refused {} stacks short of that, so \
         that what is already spawned still finds stacks. Raise the limit with `sysctl -w \
         vm.max_map_count=<n>` as root, or keep fewer green threads alive",
        headroom(limit)
    )
}

static NEXT_TASK_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A fresh green thread id (see `crate::ids`).
fn next_task_id() -> u64 {
    thread_local! {
        static IDS: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
    }
    crate::ids::next(&NEXT_TASK_ID, &IDS)
}

/// Builds a [`Runtime`], or configures the global one
/// ([`build_global`](Builder::build_global)).
///
/// Two settings take their defaults from the environment, so a program can
/// be tuned without a rebuild:
///
/// | Variable | Setting | Accepted values |
/// |---|---|---|
/// | `STACKFUL_WORKERS` | [`workers`](Builder::workers) | a whole number, at least 1 |
/// | `STACKFUL_STACK_SIZE` | [`stack_size`](Builder::stack_size) | bytes, optionally with a `K`, `M` or `G` suffix (powers of 1024): `262144`, `256K`, `8M`; 16 KiB to 1 GiB |
///
/// An empty variable counts as unset. Calling the setter overrides the
/// variable. A variable with a bad value makes [`build`](Builder::build)
/// and [`build_global`](Builder::build_global) fail with a message that
/// names it, its value and what is accepted (and the first use of a global
/// runtime that was not built explicitly panics with that message), unless
/// its setter was called.
///
/// # Examples
///
/// ```
/// let rt = stackful::Runtime::builder()
///     .workers(2)
///     .stack_size(256 << 10)
///     .debug(false)
///     .build()
///     .unwrap();
/// assert_eq!(rt.run(|| 6 * 7), 42);
///
/// let err = stackful::Runtime::builder().workers(0).build().unwrap_err();
/// assert!(err.to_string().contains("at least 1 worker"));
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    workers: Option<usize>,
    stack_size: usize,
    /// Why `STACKFUL_WORKERS` could not be used, if it was set to a bad
    /// value; cleared by [`Builder::workers`].
    workers_env_error: Option<String>,
    /// Likewise for `STACKFUL_STACK_SIZE`; cleared by [`Builder::stack_size`].
    stack_size_env_error: Option<String>,
    debug: bool,
    slow: Duration,
    max_blocking: usize,
    blocking_keep_alive: Duration,
    name: String,
    #[cfg(feature = "tokio")]
    tokio: Option<tokio::runtime::Handle>,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// The defaults: one worker per available CPU (or `STACKFUL_WORKERS`),
    /// 256 KiB stacks (or `STACKFUL_STACK_SIZE`), up to 512 blocking threads
    /// that exit after 10 s idle, debug mode off unless `STACKFUL_DEBUG=1`.
    /// See [`Builder`] for the variables.
    pub fn new() -> Builder {
        let (workers, workers_env_error) = from_env(WORKERS_VAR, parse_workers);
        let (stack_size, stack_size_env_error) = from_env(STACK_SIZE_VAR, parse_stack_size);
        Builder {
            workers,
            stack_size: stack_size.unwrap_or(stackful_arch::DEFAULT_STACK_SIZE),
            workers_env_error,
            stack_size_env_error,
            debug: false,
            slow: Duration::from_millis(100),
            max_blocking: 512,
            blocking_keep_alive: Duration::from_secs(10),
            name: "stackful".to_string(),
            #[cfg(feature = "tokio")]
            tokio: None,
        }
    }

    /// The tokio runtime whose context [`block_on`](crate::block_on)
    /// enters while it polls a future on a green thread of this runtime,
    /// so that futures built on tokio's reactor and timers (`tokio::net`,
    /// `tokio::time`, and the crates built on them) find it. It comes ahead
    /// of the handle set for every runtime with
    /// [`set_tokio_handle`](crate::bridge::set_tokio_handle); without
    /// either, `block_on` uses the tokio runtime the thread is in, else a
    /// small one of its own. Needs the cargo feature `tokio`.
    ///
    /// # Examples
    ///
    /// ```
    /// let tokio = tokio::runtime::Builder::new_multi_thread()
    ///     .worker_threads(1)
    ///     .thread_name("my-tokio")
    ///     .enable_all()
    ///     .build()
    ///     .unwrap();
    /// let rt = stackful::Runtime::builder()
    ///     .tokio_handle(tokio.handle().clone())
    ///     .build()
    ///     .unwrap();
    /// let ran_on = rt.run(|| {
    ///     stackful::block_on(async {
    ///         tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    ///         // A task spawned here goes to that runtime.
    ///         tokio::spawn(async { std::thread::current().name().map(String::from) })
    ///             .await
    ///             .unwrap()
    ///     })
    /// });
    /// assert_eq!(ran_on.as_deref(), Some("my-tokio"));
    /// ```
    #[cfg(feature = "tokio")]
    pub fn tokio_handle(mut self, handle: tokio::runtime::Handle) -> Builder {
        self.tokio = Some(handle);
        self
    }

    /// Number of worker threads; at least 1. Overrides `STACKFUL_WORKERS`.
    pub fn workers(mut self, n: usize) -> Builder {
        self.workers = Some(n);
        self.workers_env_error = None;
        self
    }

    /// Stack size of the green threads, in bytes (16 KiB to 1 GiB): of the
    /// main green thread of [`Runtime::run`] (or, for the global runtime,
    /// of [`stackful::run`](run)), and the default of every green thread
    /// spawned on the runtime ([`task::Builder::stack_size`] sets one
    /// green thread's). 256 KiB unless `STACKFUL_STACK_SIZE` says
    /// otherwise; this overrides it.
    ///
    /// [`task::Builder::stack_size`]: crate::task::Builder::stack_size
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = bytes;
        self.stack_size_env_error = None;
        self
    }

    /// Turns on debug mode (see the crate docs): warnings about green threads
    /// that hog their worker, ones dropped without starting, and panics
    /// nobody joined.
    pub fn debug(mut self, on: bool) -> Builder {
        self.debug = on;
        self
    }

    /// How long a green thread may run without suspending before debug mode
    /// warns; 100 ms by default.
    pub fn slow_threshold(mut self, threshold: Duration) -> Builder {
        self.slow = threshold;
        self
    }

    /// Upper bound on threads in the blocking pool; at least 1.
    pub fn max_blocking_threads(mut self, n: usize) -> Builder {
        self.max_blocking = n;
        self
    }

    /// How long an idle blocking thread waits for work before it exits.
    pub fn blocking_keep_alive(mut self, keep_alive: Duration) -> Builder {
        self.blocking_keep_alive = keep_alive;
        self
    }

    /// Prefix of the worker threads' names.
    pub fn name(mut self, prefix: impl Into<String>) -> Builder {
        self.name = prefix.into();
        self
    }

    /// Starts the runtime's workers.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for zero workers, zero blocking threads, a stack size
    /// outside 16 KiB..=1 GiB, or a bad `STACKFUL_WORKERS` or
    /// `STACKFUL_STACK_SIZE` whose setter was not called; the OS error if a
    /// worker thread cannot start.
    pub fn build(self) -> io::Result<Runtime> {
        let invalid = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        if let Some(msg) = self.workers_env_error.or(self.stack_size_env_error) {
            return invalid(msg);
        }
        let workers = match self.workers {
            Some(0) => {
                return invalid(
                    "a runtime needs at least 1 worker; `workers(0)` would run nothing".into(),
                );
            }
            Some(n) => n,
            None => thread::available_parallelism().map_or(1, NonZeroUsize::get),
        };
        check_stack_size(self.stack_size)?;
        if self.max_blocking == 0 {
            return invalid("`max_blocking_threads(0)` leaves spawn_blocking no thread".into());
        }
        if self.debug {
            debug::enable(self.slow);
        }
        let mut deques = Vec::new();
        let mut homes = Vec::new();
        for i in 0..workers {
            let reactor = Arc::new(reactor::Reactor::new()?);
            homes.push(Arc::new(Home::new(i, reactor)));
            deques.push(Deque::new_lifo());
        }
        let shared = Arc::new(RtShared {
            stealers: deques.iter().map(Deque::stealer).collect(),
            homes,
            injector: Injector::default(),
            idle: Idle::default(),
            config: Config {
                stack_size: self.stack_size,
                #[cfg(feature = "tokio")]
                tokio: self.tokio.clone(),
            },
            blocking: BlockingPool::new(
                format!("{}-blocking", self.name),
                self.max_blocking,
                self.blocking_keep_alive,
            ),
            live: LiveCount::default(),
            closing: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            started: Instant::now(),
            threads: Mutex::new(Vec::new()),
            runs: Mutex::new(Vec::new()),
            monitor: Arc::default(),
        });
        let rt = Runtime {
            shared: shared.clone(),
        };
        for (i, deque) in deques.into_iter().enumerate() {
            let rt_shared = shared.clone();
            let home = shared.homes[i].clone();
            let handle = thread::Builder::new()
                .name(format!("{}-worker-{i}", self.name))
                .spawn(move || {
                    let worker = worker::Worker::new(home, rt_shared, Some(deque));
                    worker.enter(|| worker.run_pool());
                })?;
            shared
                .threads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(handle);
        }
        if debug::enabled() {
            start_watchdog(Arc::downgrade(&shared));
        }
        Ok(rt)
    }

    /// Builds the runtime and makes it the global one: the runtime of
    /// [`stackful::run`](run), and of [`spawn`](crate::spawn) and
    /// [`scope`](crate::scope) called from a plain OS thread. Rayon's
    /// `ThreadPoolBuilder::build_global`.
    ///
    /// The global runtime is built once per process. Without this call it
    /// starts with [`Builder::new`]'s settings (so with `STACKFUL_WORKERS`
    /// and `STACKFUL_STACK_SIZE`) the first time something uses it. Call
    /// this first thing in `main`, before any such use; it is the way to
    /// give `stackful::run`'s main green thread a larger stack for deep
    /// recursion.
    ///
    /// # Errors
    ///
    /// If the global runtime exists already, built by an earlier
    /// `build_global` or started by a first use (the error says which, and
    /// where: [`BuildGlobalError::is_already_built`]); the global runtime is
    /// left as it is. Otherwise the errors of [`build`](Builder::build);
    /// the global runtime is then still unbuilt, and a later
    /// `build_global` may try again.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::Runtime;
    ///
    /// fn depth(n: u64) -> u64 {
    ///     let frame = std::hint::black_box([0u8; 512]);
    ///     if n == 0 { u64::from(frame[0]) } else { 1 + depth(n - 1) }
    /// }
    ///
    /// // First thing in `main`: 64 MiB stacks for the green threads.
    /// Runtime::builder().stack_size(64 << 20).build_global().unwrap();
    /// assert_eq!(stackful::run(|| depth(10_000)), 10_000); // about 5 MiB deep
    ///
    /// // Once built (or used), the global runtime cannot be rebuilt.
    /// let err = Runtime::builder().workers(1).build_global().unwrap_err();
    /// assert!(err.is_already_built());
    /// assert!(err.to_string().contains("already built"));
    /// ```
    #[track_caller]
    pub fn build_global(self) -> Result<(), BuildGlobalError> {
        let site = Location::caller();
        let _init = GLOBAL_INIT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(global) = GLOBAL.get() {
            return Err(BuildGlobalError {
                repr: GlobalRepr::AlreadyBuilt(global.origin),
            });
        }
        let rt = self.build().map_err(|e| BuildGlobalError {
            repr: GlobalRepr::Build(e),
        })?;
        let installed = GLOBAL.set(Global {
            rt,
            origin: Origin::BuildGlobal(site),
        });
        // Only set under GLOBAL_INIT, which this holds, and unset above.
        assert!(installed.is_ok(), "the global runtime was set twice");
        Ok(())
    }
}

const WORKERS_VAR: &str = "STACKFUL_WORKERS";
const STACK_SIZE_VAR: &str = "STACKFUL_STACK_SIZE";

/// A setting's default from the environment variable `var`: the value, or
/// the message of a bad one. Unset or empty: neither.
fn from_env<T>(
    var: &str,
    parse: fn(&str) -> Result<T, &'static str>,
) -> (Option<T>, Option<String>) {
    let Some(raw) = std::env::var_os(var) else {
        return (None, None);
    };
    let text = raw.to_string_lossy();
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return (None, None);
    }
    match raw
        .to_str()
        .ok_or("it is not UTF-8")
        .and_then(|_| parse(trimmed))
    {
        Ok(value) => (Some(value), None),
        Err(accepted) => (
            None,
            Some(format!(
                "the environment variable {var}={text:?} is not valid: {accepted}. Fix or unset \
                 it, or set this value in code (`Runtime::builder()`'s setter overrides it)"
            )),
        ),
    }
}

/// `STACKFUL_WORKERS`: a whole number, at least 1.
fn parse_workers(text: &str) -> Result<usize, &'static str> {
    const ACCEPTED: &str = "give the number of worker threads, a whole number of at least 1 \
                            (for example STACKFUL_WORKERS=4)";
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(ACCEPTED),
    }
}

/// `STACKFUL_STACK_SIZE`: bytes, with an optional `K`, `M` or `G` suffix
/// (also `KiB`, `MiB`, `GiB`, any case; powers of 1024), in 16 KiB..=1 GiB.
fn parse_stack_size(text: &str) -> Result<usize, &'static str> {
    const ACCEPTED: &str = "give a stack size between 16 KiB and 1 GiB, in bytes or with a K, M \
                            or G suffix (powers of 1024), for example STACKFUL_STACK_SIZE=8M or \
                            STACKFUL_STACK_SIZE=262144";
    let lower = text.to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, suffix) = lower.split_at(digits_end);
    let unit: usize = match suffix.trim_start() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(ACCEPTED),
    };
    let bytes = number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or(ACCEPTED)?;
    if (MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(ACCEPTED)
    }
}

/// Why [`Builder::build_global`] failed.
///
/// # Examples
///
/// ```
/// use stackful::Runtime;
///
/// stackful::run(|| ()); // the first use starts the global runtime
/// let err = Runtime::builder().build_global().unwrap_err();
/// assert!(err.is_already_built());
/// println!("{err}"); // says where it was started, and what to do instead
/// ```
pub struct BuildGlobalError {
    repr: GlobalRepr,
}

enum GlobalRepr {
    AlreadyBuilt(Origin),
    Build(io::Error),
}

impl BuildGlobalError {
    /// Whether the global runtime existed already (built by an earlier
    /// `build_global`, or started by a first use), rather than failing to
    /// build. It is then left as it was.
    pub fn is_already_built(&self) -> bool {
        matches!(self.repr, GlobalRepr::AlreadyBuilt(_))
    }
}

impl fmt::Display for BuildGlobalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            GlobalRepr::AlreadyBuilt(Origin::BuildGlobal(site)) => write!(
                f,
                "the global runtime was already built by `build_global` at {site}; it can be \
                 built only once per process"
            ),
            GlobalRepr::AlreadyBuilt(Origin::FirstUse(site)) => write!(
                f,
                "the global runtime was already built, with the default settings, when the \
                 call at {site} first used it (`stackful::run`, or `spawn` or `scope` outside a \
                 green thread); call `Runtime::builder()...build_global()` before any of them, \
                 first thing in `main`"
            ),
            GlobalRepr::Build(e) => write!(f, "could not build the global runtime: {e}"),
        }
    }
}

impl fmt::Debug for BuildGlobalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildGlobalError")
            .field("already_built", &self.is_already_built())
            .field("message", &self.to_string())
            .finish()
    }
}

impl std::error::Error for BuildGlobalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.repr {
            GlobalRepr::Build(e) => Some(e),
            GlobalRepr::AlreadyBuilt(_) => None,
        }
    }
}

/// Debug mode: warns about green threads that run too long without suspending.
fn start_watchdog(rt: std::sync::Weak<RtShared>) {
    let _ = thread::Builder::new()
        .name("stackful-watchdog".into())
        .spawn(move || {
            let mut warned = Vec::new();
            loop {
                let threshold = debug::slow_threshold();
                thread::sleep((threshold / 2).max(Duration::from_millis(5)));
                let Some(rt) = rt.upgrade() else { return };
                if rt.stopping.load(Ordering::Acquire) {
                    return;
                }
                let runs = rt.runs.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let now = rt.nanos_since_start();
                let homes = rt.homes.iter().chain(&runs);
                // Keyed by address: a `run` thread's entry may be another's next
                // round, which at worst repeats or skips one warning.
                warned.retain(|(home, _)| {
                    rt.homes
                        .iter()
                        .chain(&runs)
                        .any(|h| Arc::as_ptr(h) as usize == *home)
                });
                for home in homes {
                    let key = Arc::as_ptr(home) as usize;
                    let since = home.running_since.load(Ordering::Acquire);
                    let seen = warned.iter().position(|(h, _)| *h == key);
                    if since == 0 || seen.is_some_and(|i| warned[i].1 == since) {
                        continue;
                    }
                    let ran = Duration::from_nanos(now.saturating_sub(since));
                    if ran < threshold {
                        continue;
                    }
                    match seen {
                        Some(i) => warned[i].1 = since,
                        None => warned.push((key, since)),
                    }
                    let who = home
                        .running
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .as_ref()
                        .map(|t| t.header().describe());
                    let place = if home.index == usize::MAX {
                        "the thread that called `run`".to_string()
                    } else {
                        format!("worker {}", home.index)
                    };
                    if let Some(who) = who {
                        debug::warn(format_args!(
                            "green thread {who} has run for {} ms without suspending on {place}, \
                         delaying the green threads pinned there; move blocking or CPU-heavy \
                         work into `stackful::spawn_blocking`, or call `stackful::yield_now()` \
                         in long loops. A green thread that waits on a `std::sync` lock held by \
                         another across a suspension point (a sleep, a channel, a join) blocks \
                         its worker this way too: use `stackful::sync::Mutex` there, or release \
                         the std guard before suspending",
                            ran.as_millis()
                        ));
                    }
                }
            }
        });
}

/// An M:N runtime: worker threads running green threads.
///
/// Most programs use the global one through [`run`]; build one of your own
/// for settings of its own (workers, stack size, debug mode) or to keep a
/// library's green threads apart. Dropping it cancels the green threads
/// still running on it, waits for them, and stops its threads.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stackful::Runtime;
///
/// let rt = Runtime::builder()
///     .workers(2)
///     .stack_size(512 << 10) // for the main green thread and spawned ones
///     .build()
///     .unwrap();
/// let total = rt.run(|| {
///     let handles: Vec<_> = (1..=3u64)
///         .map(|n| stackful::spawn(move || {
///             stackful::sleep(Duration::from_millis(n));
///             n * 10
///         }))
///         .collect();
///     stackful::gather(handles).unwrap().iter().sum::<u64>()
/// });
/// assert_eq!(total, 60);
/// drop(rt); // stops its workers
/// ```
pub struct Runtime {
    shared: Arc<RtShared>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.shared.homes.len())
            .field("live_green_threads", &self.shared.live.get())
            .finish_non_exhaustive()
    }
}

/// The global runtime and how it came to be.
struct Global {
    rt: Runtime,
    origin: Origin,
}

/// Who built the global runtime, for `build_global`'s error.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// `build_global`, called here.
    BuildGlobal(&'static Location<'static>),
    /// The first use, with the default settings, by the call here.
    FirstUse(&'static Location<'static>),
}

static GLOBAL: OnceLock<Global> = OnceLock::new();
/// Held while the global runtime is being built, by either path, so that
/// `build_global` can fail without building it twice.
static GLOBAL_INIT: Mutex<()> = Mutex::new(());

/// The global runtime, started on first use.
#[inline]
#[track_caller]
pub(crate) fn global() -> &'static Arc<RtShared> {
    match GLOBAL.get() {
        Some(global) => &global.rt.shared,
        None => start_global(),
    }
}

/// Builds the global runtime with the default settings, on its first use.
#[cold]
#[track_caller]
fn start_global() -> &'static Arc<RtShared> {
    let site = Location::caller();
    let _init = GLOBAL_INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(global) = GLOBAL.get() {
        return &global.rt.shared; // built meanwhile
    }
    let mut builder = Builder::new();
    if debug::enabled() {
        builder = builder.debug(true);
    }
    let rt = builder
        .build()
        .unwrap_or_else(|e| panic!("stackful: could not start the global runtime: {e}"));
    let global = GLOBAL.get_or_init(|| Global {
        rt,
        origin: Origin::FirstUse(site),
    });
    &global.rt.shared
}

/// What a main green thread's stack overflow says: raise `run`'s stack.
pub(crate) static MAIN_GREEN_THREAD: Owner = Owner {
    kind: "main green thread of `run`",
    hint: "raise its stack with `Runtime::builder().stack_size(bytes).build_global()` before the \
           first `stackful::run` (`.build()` for a `Runtime::run`), or with \
           STACKFUL_STACK_SIZE=<bytes> (`8M`, say) in the environment",
};

impl Runtime {
    /// A builder for a runtime with custom settings.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Runs `f` as the main green thread on the calling thread and returns its
    /// result: Python's `asyncio.run`. When `f` returns, the green threads
    /// spawned under it that still run are cancelled and awaited, so nothing
    /// spawned under `run` outlives it.
    ///
    /// The calling thread works as an executor meanwhile: a green thread
    /// that `f` (or a green thread running beside it) spawns starts there
    /// when `f` next suspends, so a partner it talks to or a child it joins
    /// needs no other thread; once it holds 4 (`f` included), spawns go to
    /// the runtime's workers, and so does a spawn not started yet when its
    /// spawner waits for I/O (an accept loop's connections). What starts on
    /// the calling thread stays there, so `f` must not block that OS thread
    /// (a `std::sync` lock or channel, a blocking read, a long computation)
    /// while it waits for them: wait through `stackful` (a `join`, a
    /// `stackful::sync` channel), or move the blocking call into
    /// [`spawn_blocking`](crate::spawn_blocking). A spawn that has not
    /// started yet moves to the workers if `f` keeps the thread for 10-20 ms.
    ///
    /// `f` may borrow from the caller and need not be `Send`: it never leaves
    /// the calling thread.
    ///
    /// The main green thread has the runtime's stack size
    /// ([`Builder::stack_size`], 256 KiB by default); if it overflows, the
    /// message names this call.
    ///
    /// # Panics
    ///
    /// If called from inside a green thread (it would block that green
    /// thread's worker: spawn and join instead). If `f` panics, the panic
    /// propagates after the shutdown.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = stackful::Runtime::builder().workers(1).build().unwrap();
    /// let data = vec![1, 2, 3];
    /// let sum = rt.run(|| {
    ///     let h = stackful::spawn(|| 10);
    ///     data.iter().sum::<i32>() + h.join().unwrap()
    /// });
    /// assert_eq!(sum, 16);
    /// ```
    #[track_caller]
    pub fn run<F: FnOnce() -> T, T>(&self, f: F) -> T {
        run_on(&self.shared, f)
    }

    /// Spawns a green thread on this runtime; see [`spawn`](crate::spawn).
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> crate::JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        crate::task::Builder::new()
            .spawn_on(&self.shared, f)
            .unwrap_or_else(|e| panic!("stackful: could not spawn a green thread: {e}"))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let rt = &self.shared;
        rt.closing.store(true, Ordering::Release);
        // On one of its own threads (a green thread, a worker's loop, a
        // blocking-pool thread), waiting would wait for ourselves.
        let inside = park::current_task().is_some_and(|t| Arc::ptr_eq(&t.header().rt, rt))
            || worker::with_current(|w| w.is_some_and(|w| Arc::ptr_eq(&w.rt, rt)))
            || rt.blocking.is_own_thread();
        for home in &rt.homes {
            home.request_cancel_all();
        }
        if inside {
            if debug::enabled() {
                debug::warn(format_args!(
                    "a Runtime was dropped on one of its own threads; its shutdown continues \
                     in the background"
                ));
            }
            let rt = rt.clone();
            let spawned = thread::Builder::new()
                .name("stackful-shutdown".into())
                .spawn(move || finish_shutdown(&rt));
            if spawned.is_err() {
                // No thread for it: the workers stay, idle, until the
                // process ends; nothing is freed while in use.
                debug::note(format_args!(
                    "could not start a thread to finish a Runtime's shutdown; its threads stay"
                ));
            }
            return;
        }
        finish_shutdown(rt);
    }
}

/// The second half of a runtime's shutdown: waits for its green threads to
/// end, then stops and joins its workers and its blocking pool.
fn finish_shutdown(rt: &Arc<RtShared>) {
    rt.live.wait_zero("a Runtime's shutdown");
    rt.stopping.store(true, Ordering::Release);
    rt.monitor.stop();
    for home in &rt.homes {
        home.unpark();
    }
    let threads = std::mem::take(&mut *rt.threads.lock().unwrap_or_else(|e| e.into_inner()));
    for t in threads {
        let _ = t.join();
    }
    rt.blocking.shut_down();
}

/// Runs `f` as the main green thread of the global runtime; see [`Runtime::run`].
///
/// The global runtime starts on first use with the default settings: one
/// worker per CPU and 256 KiB stacks, for the main green thread too, or
/// what `STACKFUL_WORKERS` and `STACKFUL_STACK_SIZE` say. Code that
/// recursed deeply on the main thread's 8 MiB may need more: configure the
/// global runtime once, before its first use, with
/// [`Runtime::builder()`](Runtime::builder)`.stack_size(..).`[`build_global()`](Builder::build_global),
/// or set `STACKFUL_STACK_SIZE=8M`. A stack overflow of the main green
/// thread names this call and says so.
///
/// # Panics
///
/// As [`Runtime::run`]; also on first use if the global runtime cannot
/// start (a bad `STACKFUL_WORKERS` or `STACKFUL_STACK_SIZE`, say), with
/// the reason.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let words = vec!["a", "b"];
/// let n = stackful::run(|| {
///     let h = stackful::spawn(|| 40);
///     stackful::sleep(Duration::from_millis(1));
///     h.join().unwrap() + words.len() // the closure may borrow `words`
/// });
/// assert_eq!(n, 42);
/// ```
#[track_caller]
pub fn run<F: FnOnce() -> T, T>(f: F) -> T {
    run_on(global(), f)
}

/// The body of the main green thread with its borrows erased; see `run_on`.
struct MainBody(Box<dyn FnOnce()>);

// SAFETY: the main green thread's body is created, run and dropped on the
// thread that called `run`: its task starts there at once (before any other
// thread sees it) and nobody holds a handle that could cancel it before it
// starts, so the body never crosses threads.
unsafe impl Send for MainBody {}

#[track_caller]
fn run_on<F: FnOnce() -> T, T>(rt: &Arc<RtShared>, f: F) -> T {
    if park::current_task().is_some() {
        panic!(
            "stackful::run called from inside a green thread: it would block this green thread's \
             worker until it returned. Spawn the work with `stackful::spawn` and `join` it instead"
        );
    }
    park::refuse_scheduler_loop();
    // A `match`, not a closure, so that the panic names the caller's line.
    let reactor = match reactor::Reactor::for_run_thread() {
        Ok(r) => r,
        Err(e) => panic!(
            "stackful::run could not create the epoll instance this thread waits in: {e}; \
             if the process is out of file descriptors, raise `ulimit -n`"
        ),
    };
    // Polled again from here until this run ends (see `Reactor::retire`).
    reactor.revive();
    let home = Arc::new(Home::new(usize::MAX, reactor.clone()));
    let group = Arc::new(Group::new(home.clone()));
    let mut output: Option<T> = None;
    let slot = &mut output;
    let body: Box<dyn FnOnce() + '_> = Box::new(move || *slot = Some(f()));
    // SAFETY: the borrows of `body` (on `f` and `output`) outlive this call,
    // and `run_on` does not return or unwind before the main green thread
    // has completed, which consumes the body; see also MainBody's Send.
    let body: Box<dyn FnOnce() + 'static> = unsafe { std::mem::transmute(body) };
    let body = MainBody(body);
    let header = Header::new(
        next_task_id(),
        Some("main".into()),
        rt.clone(),
        Some(group.clone()),
        None,
        rt.config.stack_size,
        Location::caller(), // the user's `run` (track_caller): overflows name it
    );
    rt.live.add();
    group.live.add();
    let task = TypedTask::new(
        || header,
        move || {
            let body = body; // the whole wrapper, which is Send, not its field
            (body.0)()
        },
    );
    let main: TaskRef = task.task().clone();
    // From here until every green thread of this run has ended, `run_on`
    // must not unwind: the main body borrows from the caller's frame, and so
    // may scoped green threads on other workers. No user code runs on this
    // thread outside a green thread's catch_unwind; only a bug could.
    let no_unwind = AbortOnUnwind("stackful::run");
    rt.runs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(home.clone());
    rt.monitor.start(rt);
    let executor = worker::Worker::new(home.clone(), rt.clone(), None);
    executor.enter(|| {
        executor.run_main(main);
        // Shutdown: cancel what is left of this run's green threads, and
        // run those started here until they have unwound.
        group.cancelled.store(true, Ordering::Release);
        for h in rt.homes.iter().chain([&home]) {
            h.request_cancel(group.clone());
        }
        executor.run_out(|| group.live.get());
    });
    rt.runs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|h| !Arc::ptr_eq(h, &home));
    // Nothing polls this thread's reactor until its next `run` (no green
    // thread is left here): green threads elsewhere waiting through it move
    // to their own. Before the wait below, which may be for green threads
    // of this run that wait through it (shielded ones, say): they would
    // never see their events.
    reactor.retire();
    group.live.wait_zero("`run`'s shutdown");
    no_unwind.disarm();
    let result = task.take_result();
    match result {
        Some(Ok(())) => output.expect("the main green thread stored its result"),
        Some(Err(e)) if e.is_panic() => panic::resume_unwind(e.into_panic()),
        Some(Err(e)) => panic!("stackful: the main green thread ended without a result: {e}"),
        None => panic!("stackful: the main green thread's result was lost"),
    }
}

/// Checks a green thread stack size, with a message that says how to fix it.
fn check_stack_size(bytes: usize) -> io::Result<()> {
    if (MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&bytes) {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "invalid green thread stack size of {bytes} byte{}: it must be between {} KiB and {} \
             MiB (the size is in bytes; 256 KiB is `256 << 10`)",
            if bytes == 1 { "" } else { "s" },
            MIN_STACK_SIZE / 1024,
            MAX_STACK_SIZE >> 20
        ),
    ))
}

/// A spawn found its runtime or `run` shutting down. If the caller is one
/// of the green threads being shut down, it is cancelled (its worker may
/// not have got to it yet, if it has been running all along) and the
/// cancellation is raised here, as a suspension point would: it unwinds as
/// cancelled instead of failing with an error it would report as a panic.
/// Inside a shield nothing is raised, and the spawn fails with its error.
fn cancel_if_shut_down(rt: &Arc<RtShared>, group: Option<&Arc<Group>>) {
    let Some(me) = park::current_task() else {
        return;
    };
    let h = me.header();
    let mine = match group {
        Some(g) => h.group.as_ref().is_some_and(|mine| Arc::ptr_eq(mine, g)),
        None => Arc::ptr_eq(&h.rt, rt),
    };
    if mine {
        crate::task::raw::cancel(&me);
    }
    park::checkpoint();
}

/// Creates and places a green thread; the common path of every spawn.
pub(crate) fn spawn_task<F, T>(
    rt: &Arc<RtShared>,
    group: Option<Arc<Group>>,
    scope: Option<Arc<crate::task::scope::ScopeShared>>,
    name: Option<String>,
    stack_size: usize,
    site: &'static panic::Location<'static>,
    f: F,
) -> io::Result<TypedTask<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // Read once: a `run` whose shutdown begins between two reads would turn
    // the pending cancellation of a green thread that spawns into a spawn
    // error (a panic, from `spawn`). A spawn that reads "not shutting
    // down" just before it does is cancelled when it would start (see
    // `Header::cancelled_before_start`).
    let closing = rt.closing.load(Ordering::Acquire);
    let cancelled = group
        .as_ref()
        .is_some_and(|g| g.cancelled.load(Ordering::Acquire));
    if closing || cancelled {
        cancel_if_shut_down(rt, group.as_ref());
    }
    if closing {
        return Err(io::Error::other(
            "cannot spawn a green thread: its runtime is shutting down (being dropped)",
        ));
    }
    if cancelled {
        return Err(io::Error::other(
            "cannot spawn a green thread: the `run` it belongs to has returned and is shutting \
             down; green threads spawned under `run` may not outlive it",
        ));
    }
    if let Some((live, limit)) = rt.stacks_over_limit() {
        return Err(io::Error::new(
            io::ErrorKind::OutOfMemory,
            too_many_started(live, limit),
        ));
    }
    check_stack_size(stack_size)?;
    rt.live.add();
    if let Some(g) = &group {
        g.live.add();
    }
    let id = next_task_id();
    let name = name.map(String::into_boxed_str);
    let header = || Header::new(id, name, rt.clone(), group, scope, stack_size, site);
    let task = TypedTask::new(header, f);
    worker::submit_new(rt, task.task().clone());
    Ok(task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_sizes_from_the_environment_take_bytes_or_binary_suffixes() {
        for (text, bytes) in [
            ("262144", 256 << 10),
            ("262144b", 256 << 10),
            ("256K", 256 << 10),
            ("256k", 256 << 10),
            ("256KiB", 256 << 10),
            ("256 kb", 256 << 10),
            ("16K", MIN_STACK_SIZE),
            ("8M", 8 << 20),
            ("8mib", 8 << 20),
            ("1G", MAX_STACK_SIZE),
        ] {
            assert_eq!(parse_stack_size(text), Ok(bytes), "{text}");
        }
        for bad in [
            "", "K", "-1", "1.5M", "8K", "16383", "2G", "1T", "256 KB B", "0x1000", "huge",
        ] {
            let err = parse_stack_size(bad).unwrap_err();
            assert!(err.contains("between 16 KiB and 1 GiB"), "{bad}: {err}");
        }
        // No overflow on absurd numbers.
        assert!(parse_stack_size("99999999999999999999999G").is_err());
        assert!(parse_stack_size("18014398509481984G").is_err());
    }

    #[test]
    fn a_refused_spawn_gives_the_stack_limit_of_the_platform_layer() {
        let limit = MapLimit::for_max_map_count(65530);
        let msg = too_many_started(31741, limit);
        assert!(
            msg.starts_with(
                "cannot spawn another green thread: 31741 have started and not finished"
            ),
            "{msg}"
        );
        // The figure of stackful-arch's own refusals, from the same function.
        assert!(msg.contains(&limit.to_string()), "{msg}");
        assert!(
            msg.contains("vm.max_map_count = 65530 lets stackful map at most 32253 stacks"),
            "{msg}"
        );
        assert!(msg.contains("refused 512 stacks short of that"), "{msg}");
    }

    #[test]
    fn worker_counts_from_the_environment_are_at_least_one() {
        assert_eq!(parse_workers("1"), Ok(1));
        assert_eq!(parse_workers("64"), Ok(64));
        for bad in ["0", "-2", "two", "1.5", "4 workers"] {
            let err = parse_workers(bad).unwrap_err();
            assert!(err.contains("at least 1"), "{bad}: {err}");
        }
    }
}
