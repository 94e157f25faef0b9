//! Offloading blocking calls to a thread pool: `run_in_executor` / `to_thread`.
//!
//! A green thread that calls a blocking function (file I/O, a C library, a
//! long computation) would stall every green thread pinned to its worker.
//! [`spawn_blocking`] runs the function on an elastic pool of OS threads
//! instead and suspends only the calling green thread meanwhile.
//!
//! The pool grows on demand, one thread per job that finds no idle thread,
//! up to a cap (512 by default), and a thread that stays idle for the
//! keep-alive time (10 s by default) exits.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use crate::cancel::AbortOnUnwind;
use crate::runtime::park::{self, Waker};

type Job = Box<dyn FnOnce() + Send + 'static>;

struct State {
    queue: VecDeque<Job>,
    /// Threads waiting on `work`.
    idle: usize,
    /// Threads spinning for a job before they wait: they need no notify.
    spinning: usize,
    threads: usize,
    shut_down: bool,
}

/// Turns a pool thread spins for the next job before it waits on the
/// condition variable (a few microseconds). A green thread that calls
/// `spawn_blocking` in a loop then finds the thread awake, and neither side
/// pays a futex wake-up per call.
const SPINS: u32 = 2_000;

struct PoolInner {
    state: Mutex<State>,
    /// `queue.len()`, for spinning threads to watch without the lock.
    queued: AtomicUsize,
    work: Condvar,
    name: String,
    cap: usize,
    keep_alive: Duration,
}

/// An elastic pool of OS threads for blocking jobs.
pub(crate) struct BlockingPool {
    inner: Arc<PoolInner>,
}

impl BlockingPool {
    pub(crate) fn new(name: String, cap: usize, keep_alive: Duration) -> BlockingPool {
        BlockingPool {
            inner: Arc::new(PoolInner {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    idle: 0,
                    spinning: 0,
                    threads: 0,
                    shut_down: false,
                }),
                queued: AtomicUsize::new(0),
                work: Condvar::new(),
                name,
                cap,
                keep_alive,
            }),
        }
    }

    /// Runs `job` on a pool thread. If no thread can be started and none is
    /// there, runs it on the caller instead: slower, but it never gets lost.
    pub(crate) fn submit(&self, job: Job) {
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        state.queue.push_back(job);
        self.inner
            .queued
            .store(state.queue.len(), Ordering::Release);
        if state.queue.len() > state.idle + state.spinning && state.threads < self.inner.cap {
            state.threads += 1;
            let inner = self.inner.clone();
            let spawned = thread::Builder::new()
                .name(self.inner.name.clone())
                .spawn(move || pool_thread(&inner));
            if spawned.is_err() {
                state.threads -= 1;
                if state.threads == 0 {
                    let job = state.queue.pop_back().expect("the job was just pushed");
                    self.inner
                        .queued
                        .store(state.queue.len(), Ordering::Release);
                    drop(state);
                    return job();
                }
            }
        }
        // Spinning threads will see the jobs; wake a waiting one for the rest.
        let notify = state.idle > 0 && state.queue.len() > state.spinning;
        drop(state);
        if notify {
            self.inner.work.notify_one();
        }
    }

    /// Whether the calling thread is one of this pool's.
    pub(crate) fn is_own_thread(&self) -> bool {
        POOL_THREAD.with(|p| std::ptr::eq(p.get(), Arc::as_ptr(&self.inner)))
    }

    pub(crate) fn shut_down(&self) {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shut_down = true;
        self.inner.work.notify_all();
    }
}

thread_local! {
    /// The pool this thread belongs to, if it is a pool thread.
    static POOL_THREAD: std::cell::Cell<*const PoolInner> =
        const { std::cell::Cell::new(std::ptr::null()) };
}

fn pool_thread(inner: &PoolInner) {
    POOL_THREAD.with(|p| p.set(inner));
    let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
    let mut spun = false;
    loop {
        if let Some(job) = state.queue.pop_front() {
            inner.queued.store(state.queue.len(), Ordering::Release);
            drop(state);
            job(); // jobs catch their own panics
            state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            spun = false;
            continue;
        }
        if state.shut_down {
            break;
        }
        if !spun {
            // Spin once after each job; submitters skip the notify meanwhile,
            // and the queue is checked under the lock again afterwards.
            spun = true;
            state.spinning += 1;
            drop(state);
            for _ in 0..SPINS {
                if inner.queued.load(Ordering::Acquire) != 0 {
                    break;
                }
                std::hint::spin_loop();
            }
            state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            state.spinning -= 1;
            continue;
        }
        state.idle += 1;
        let (next, timeout) = inner
            .work
            .wait_timeout(state, inner.keep_alive)
            .unwrap_or_else(|e| e.into_inner());
        state = next;
        state.idle -= 1;
        if timeout.timed_out() && state.queue.is_empty() {
            break;
        }
    }
    state.threads -= 1;
}

/// Where a blocking job leaves its outcome for the green thread that waits.
struct Slot<R> {
    outcome: Mutex<Option<thread::Result<R>>>,
    done: AtomicBool,
    waker: Waker,
}

/// Runs the blocking function `f` on the runtime's blocking pool and returns
/// its result, suspending only the calling green thread meanwhile:
/// `loop.run_in_executor(None, f)` / `asyncio.to_thread(f)`.
///
/// `f` may borrow from the caller's stack: `spawn_blocking` does not return,
/// even when the caller is cancelled, before `f` has returned. The return is
/// a cancellation point: a cancellation or timeout that arrived meanwhile
/// takes effect then, and the result is dropped. A panic in `f` is re-raised
/// in the caller. Outside any green thread, `spawn_blocking` simply calls `f`.
///
/// # Examples
///
/// ```
/// let config = String::from("threads = 4");
/// let len = stackful::run(|| {
///     stackful::spawn_blocking(|| {
///         std::thread::sleep(std::time::Duration::from_millis(5)); // blocking is fine here
///         config.len() // borrows from the caller
///     })
/// });
/// assert_eq!(len, 11);
/// ```
pub fn spawn_blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let Some(task) = park::current_task() else {
        return f();
    };
    let slot = Slot {
        outcome: Mutex::new(None),
        done: AtomicBool::new(false),
        waker: Waker::Task(task.clone()),
    };
    let slot_ref = &slot;
    let job: Box<dyn FnOnce() + Send + '_> = Box::new(move || {
        let outcome = panic::catch_unwind(AssertUnwindSafe(f));
        // Everything `f` borrowed is released by now. Take what the signal
        // needs before setting `done`: once it is set the caller may return
        // and `slot` is gone.
        let waker = slot_ref.waker.clone();
        *slot_ref.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
        slot_ref.done.store(true, Ordering::Release);
        waker.wake();
    });
    // SAFETY: only the lifetime is erased. The job borrows `slot` and
    // whatever `f` borrows, all of which outlive this call, and this call
    // does not return or unwind until `done` is set, which the job does last,
    // after `f` and its captures are gone. The wait below cannot be cut short:
    // `park_shielded` never unwinds, and the pool always runs a job it accepts.
    let job: Job = unsafe { std::mem::transmute(job) };
    let no_unwind = AbortOnUnwind("stackful::spawn_blocking");
    task.header().rt.blocking.submit(job);
    while !slot.done.load(Ordering::Acquire) {
        park::park_shielded(None);
    }
    no_unwind.disarm();
    let outcome = slot
        .outcome
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    match outcome.expect("a finished blocking job left its outcome") {
        // The return is a cancellation point.
        Ok(value) => park::checkpoint_with(value),
        Err(payload) => panic::resume_unwind(payload),
    }
}
