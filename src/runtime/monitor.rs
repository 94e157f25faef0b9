//! The monitor: moves a green thread that waits too long in a `run`
//! thread's LIFO slot to the pool.
//!
//! A green thread that the main body spawns waits in its thread's LIFO slot
//! until the main body suspends (see `Worker::keeps_spawn`). A main body
//! that never suspends (it computes, or blocks its OS thread, perhaps until
//! that very green thread does something) would keep it from starting for
//! good. Every [`PERIOD`], the monitor looks at each `run` thread's slot,
//! and a green thread it finds there twice in a row (the thread has not had
//! a turn since) goes to the injector, where a pool worker starts it. Only
//! an unstarted green thread moves, so the soundness rule holds.
//!
//! One thread per runtime, started by its first `run`. It sleeps for good
//! after a second without finding any slot occupied; the next spawn into an
//! empty slot wakes it (one atomic load on that path while it is awake).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread;
use std::time::Duration;

use crate::debug;
use crate::runtime::RtShared;
use crate::task::raw::TaskRef;

/// How often the monitor looks: a green thread left in a slot starts on the
/// pool within two periods.
const PERIOD: Duration = Duration::from_millis(10);

/// Looks without finding an occupied slot before the monitor sleeps for
/// good (until poked).
const QUIET_LOOKS: u32 = 100;

#[derive(Default)]
pub(crate) struct Monitor {
    /// Set while the monitor sleeps until poked.
    asleep: AtomicBool,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    started: bool,
    poked: bool,
    stopped: bool,
}

impl Monitor {
    /// Starts the monitor thread of `rt`, once.
    pub(crate) fn start(self: &Arc<Monitor>, rt: &Arc<RtShared>) {
        let mut state = self.lock();
        if state.started {
            return;
        }
        state.started = true;
        let (me, rt) = (self.clone(), Arc::downgrade(rt));
        let spawned = thread::Builder::new()
            .name("stackful-monitor".into())
            .spawn(move || me.run(rt));
        if spawned.is_err() {
            debug::note(format_args!(
                "could not start the monitor thread: a green thread spawned from `run`'s body \
                 starts only when that body next suspends"
            ));
        }
    }

    /// A spawn filled an empty slot: wakes the monitor if it sleeps for good.
    /// The spawner's swap and this load, and the monitor's store of `asleep`
    /// and its last look at the slots, are SeqCst: one sees the other.
    pub(crate) fn poke(&self) {
        if self.asleep.load(Ordering::SeqCst) {
            self.lock().poked = true;
            self.wake.notify_one();
        }
    }

    /// The runtime is shutting down: the thread ends.
    pub(crate) fn stop(&self) {
        self.lock().stopped = true;
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self, rt: Weak<RtShared>) {
        // (slot's home, green thread, spawns into that slot) seen at the
        // last look.
        let mut seen: Vec<(usize, usize, u64)> = Vec::new();
        let mut quiet = 0;
        loop {
            {
                let state = self.lock();
                let (state, _) = self
                    .wake
                    .wait_timeout_while(state, PERIOD, |s| !s.stopped)
                    .unwrap_or_else(|e| e.into_inner());
                if state.stopped {
                    return;
                }
            }
            let Some(rt) = rt.upgrade() else { return };
            if look(&rt, &mut seen) {
                quiet = 0;
                continue;
            }
            quiet += 1;
            if quiet < QUIET_LOOKS {
                continue;
            }
            self.asleep.store(true, Ordering::SeqCst);
            if !look(&rt, &mut seen) {
                drop(rt);
                let state = self.lock();
                let mut state = self
                    .wake
                    .wait_while(state, |s| !s.poked && !s.stopped)
                    .unwrap_or_else(|e| e.into_inner());
                state.poked = false;
            }
            self.asleep.store(false, Ordering::SeqCst);
            quiet = 0;
        }
    }
}

/// One look at every `run` thread's slot: moves a green thread seen there
/// at the last look too. Returns whether any slot was occupied.
fn look(rt: &Arc<RtShared>, seen: &mut Vec<(usize, usize, u64)>) -> bool {
    let runs = rt.runs.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut now = Vec::new();
    for home in &runs {
        let p = home.next.load(Ordering::SeqCst);
        if p.is_null() {
            continue;
        }
        let key = (
            Arc::as_ptr(home) as usize,
            p as usize,
            home.next_spawns.load(Ordering::Relaxed),
        );
        if !seen.contains(&key) {
            now.push(key);
            continue;
        }
        // The same spawn sat there a whole period (the count of spawns into
        // the slot tells it from a later one at the same address): take it,
        // unless its thread takes it first. Were the thread to take it and
        // spawn again between the load of the count and the exchange, the
        // new spawn moves early: harmless.
        let taken = home.next.compare_exchange(
            p,
            std::ptr::null_mut(),
            Ordering::SeqCst,
            Ordering::Relaxed,
        );
        if taken.is_ok() {
            // SAFETY: the slot held a count given up by `into_raw`, and the
            // exchange took it out, so nobody else takes it back.
            let task = unsafe { TaskRef::from_raw(NonNull::new(p).expect("not null")) };
            rt.injector.push(task);
            rt.notify_idle();
        }
    }
    let occupied = !now.is_empty()
        || runs
            .iter()
            .any(|h| !h.next.load(Ordering::SeqCst).is_null());
    *seen = now;
    occupied
}
