//! Mutex, RwLock, Semaphore, Condvar, Event, Barrier and WaitGroup: mutual
//! exclusion, fairness, cancellation, and mixed OS and green threads.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use stackful::sync::{Barrier, Condvar, Event, Mutex, RwLock, Semaphore, WaitGroup};
use stackful::{sleep, spawn, yield_now};

#[test]
fn smoke() {
    let m = Mutex::new(1);
    *m.lock() += 1;
    assert_eq!(m.into_inner(), 2);
    let s = Semaphore::new(1);
    drop(s.acquire());
    assert_eq!(s.available_permits(), 1);
}

#[test]
fn mutex_excludes_across_green_and_os_threads() {
    let counter = Arc::new(Mutex::new(0u64));
    let os: Vec<_> = (0..2)
        .map(|_| {
            let c = counter.clone();
            std::thread::spawn(move || {
                for _ in 0..2_000 {
                    *c.lock() += 1;
                }
            })
        })
        .collect();
    stackful::run(|| {
        let green: Vec<_> = (0..8)
            .map(|_| {
                let c = counter.clone();
                spawn(move || {
                    for i in 0..1_000 {
                        let mut g = c.lock();
                        let before = *g;
                        if i % 50 == 0 {
                            yield_now(); // hold the lock across a switch
                        }
                        *g = before + 1;
                    }
                })
            })
            .collect();
        stackful::join_all(green);
    });
    os.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(*counter.lock(), 4_000 + 8_000);
}

#[test]
fn try_lock_and_debug() {
    let m = Mutex::new(5);
    let g = m.lock();
    assert!(m.try_lock().is_none());
    assert!(format!("{m:?}").contains("locked"));
    drop(g);
    assert_eq!(*m.try_lock().unwrap(), 5);
}

#[test]
fn a_panic_while_locked_unlocks_without_poisoning() {
    let m = Arc::new(Mutex::new(vec![1]));
    let m2 = m.clone();
    let r = stackful::spawn(move || {
        let mut g = m2.lock();
        g.push(2);
        panic!("while locked");
    })
    .join();
    assert!(r.unwrap_err().is_panic());
    assert_eq!(
        *m.lock(),
        [1, 2],
        "the data is as the panicking code left it"
    );
}

#[test]
fn mutex_under_cancellation_never_leaks_the_lock() {
    stackful::run(|| {
        let m = Arc::new(Mutex::new(0));
        let holder_gate = Arc::new(Event::new());
        let (m1, gate) = (m.clone(), holder_gate.clone());
        let holder = spawn(move || {
            let _g = m1.lock();
            gate.wait(); // holds the lock until told
        });
        sleep(Duration::from_millis(5));
        // Waiters queue up; some are cancelled while waiting.
        let waiters: Vec<_> = (0..6)
            .map(|_| {
                let m = m.clone();
                spawn(move || *m.lock() += 1)
            })
            .collect();
        sleep(Duration::from_millis(5));
        for w in waiters.iter().step_by(2) {
            w.cancel();
        }
        holder_gate.set();
        holder.join().unwrap();
        let outcomes = stackful::join_all(waiters);
        let done = outcomes.iter().filter(|r| r.is_ok()).count();
        // Cancelled waiters that got the lock first may have finished too.
        assert_eq!(*m.lock(), done);
        assert!(done >= 3);
        // The lock is free: a holder that was cancelled holding it released it.
        let m3 = m.clone();
        let cancelled_holder = spawn(move || {
            let _g = m3.lock();
            sleep(Duration::from_secs(3600));
        });
        sleep(Duration::from_millis(5));
        cancelled_holder.cancel();
        assert!(cancelled_holder.join().unwrap_err().is_cancelled());
        assert!(m.try_lock().is_some(), "the lock leaked");
    });
}

#[test]
fn the_mutex_is_fair_first_come_first_served() {
    // One worker: a waiter that has said it started runs on until it parks
    // in `lock`, before the next one can start there. So they queue in
    // order, with no sleep to trust.
    let rt = stackful::Runtime::builder().workers(1).build().unwrap();
    // In a green thread on the worker, where all of them run.
    let order = rt.spawn(|| {
        let m = Arc::new(Mutex::new(Vec::new()));
        let guard = m.lock();
        let waiters: Vec<_> = (0..5)
            .map(|i| {
                let m = m.clone();
                let started = Arc::new(stackful::sync::Event::new());
                let s = started.clone();
                let h = spawn(move || {
                    s.set();
                    m.lock().push(i)
                });
                started.wait();
                h
            })
            .collect();
        // And the last one has parked too, once a green thread spawned
        // after it has run on that one worker.
        spawn(|| ()).join().unwrap();
        drop(guard);
        stackful::join_all(waiters);
        Arc::try_unwrap(m).unwrap().into_inner()
    });
    assert_eq!(order.join().unwrap(), [0, 1, 2, 3, 4]);
}

#[test]
fn no_waiter_starves_under_contention() {
    // Eventual fairness: a running green thread may barge ahead of the woken
    // waiter, so shares differ, but a waiter that has waited 1 ms gets the
    // lock handed over. So every green thread progresses, and no single
    // acquisition waits long (generous bound for a noisy machine).
    let results = stackful::run(|| {
        let m = Arc::new(Mutex::new(()));
        let stop = Arc::new(AtomicBool::new(false));
        // Runs until every one has had the lock 20 times (or 20 s pass, for
        // the failure message): a fixed window could end before a loaded
        // machine let them all in.
        let reached = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..6)
            .map(|_| {
                let (m, stop, reached) = (m.clone(), stop.clone(), reached.clone());
                spawn(move || {
                    let (mut n, mut longest) = (0usize, Duration::ZERO);
                    while !stop.load(Ordering::Relaxed) {
                        let asked = Instant::now();
                        let _g = m.lock();
                        longest = longest.max(asked.elapsed());
                        n += 1;
                        if n == 20 {
                            reached.fetch_add(1, Ordering::SeqCst);
                        }
                        yield_now();
                    }
                    (n, longest)
                })
            })
            .collect();
        let start = Instant::now();
        while reached.load(Ordering::SeqCst) < 6 && start.elapsed() < Duration::from_secs(20) {
            sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        stackful::gather(workers).unwrap()
    });
    for (n, longest) in &results {
        assert!(*n >= 20, "a green thread barely got the lock: {results:?}");
        // Starving would be unbounded; a second allows for a descheduled
        // worker on a loaded machine.
        assert!(
            *longest < Duration::from_secs(1),
            "a waiter starved: {results:?}"
        );
    }
}

#[test]
fn rwlock_allows_many_readers_or_one_writer() {
    stackful::run(|| {
        let lock = Arc::new(RwLock::new(0));
        let readers_inside = Arc::new(AtomicUsize::new(0));
        let max_readers = Arc::new(AtomicUsize::new(0));
        let writer_overlap = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for i in 0..12 {
            let (lock, inside, max, overlap) = (
                lock.clone(),
                readers_inside.clone(),
                max_readers.clone(),
                writer_overlap.clone(),
            );
            handles.push(spawn(move || {
                for _ in 0..50 {
                    if i % 4 == 0 {
                        let mut w = lock.write();
                        if inside.load(Ordering::SeqCst) != 0 {
                            overlap.store(true, Ordering::SeqCst);
                        }
                        *w += 1;
                        yield_now();
                    } else {
                        let _r = lock.read();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(now, Ordering::SeqCst);
                        yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            }));
        }
        stackful::join_all(handles);
        assert_eq!(*lock.read(), 3 * 50);
        assert!(
            !writer_overlap.load(Ordering::SeqCst),
            "a writer overlapped readers"
        );
        // Whether readers overlapped above depends on scheduling; sharing
        // itself is checked deterministically: a reader holding the lock
        // does not keep a second reader out.
        let _ = max_readers.load(Ordering::SeqCst);
        assert!(lock.try_write().is_some());
        let held = Arc::new(stackful::sync::Event::new());
        let release = Arc::new(stackful::sync::Event::new());
        let (h, r, l) = (held.clone(), release.clone(), lock.clone());
        let first = spawn(move || {
            let _r = l.read();
            h.set();
            r.wait();
        });
        held.wait();
        assert!(lock.try_read().is_some(), "readers never shared the lock");
        assert!(
            lock.try_write().is_none(),
            "a writer got in beside a reader"
        );
        release.set();
        first.join().unwrap();
    });
}

#[test]
fn semaphore_bounds_concurrency_and_survives_cancellation() {
    stackful::run(|| {
        let sem = Arc::new(Semaphore::new(3));
        let inside = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..30)
            .map(|_| {
                let (sem, inside, peak) = (sem.clone(), inside.clone(), peak.clone());
                spawn(move || {
                    /// Leaves on every path, cancellation included.
                    struct Inside(Arc<AtomicUsize>);
                    impl Drop for Inside {
                        fn drop(&mut self) {
                            self.0.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                    let _permit = sem.acquire();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    let _inside = Inside(inside);
                    peak.fetch_max(now, Ordering::SeqCst);
                    sleep(Duration::from_millis(2));
                })
            })
            .collect();
        sleep(Duration::from_millis(3));
        for h in handles.iter().skip(10).step_by(3) {
            h.cancel(); // some waiting, some holding
        }
        stackful::join_all(handles);
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert_eq!(sem.available_permits(), 3, "a permit leaked");
        let p = sem.try_acquire().unwrap();
        p.forget();
        assert_eq!(sem.available_permits(), 2);
        sem.add_permits(1);
        assert_eq!(sem.available_permits(), 3);
    });
}

#[test]
fn semaphore_acquire_works_inside_timeout() {
    stackful::run(|| {
        let sem = Semaphore::new(0);
        let r = stackful::timeout(Duration::from_millis(10), || sem.acquire());
        assert!(r.is_err());
        sem.add_permits(1);
        assert!(stackful::timeout(Duration::from_millis(100), || sem.acquire().forget()).is_ok());
        assert_eq!(sem.available_permits(), 0);
    });
}

#[test]
fn event_wakes_every_waiter_and_can_be_cleared() {
    stackful::run(|| {
        let ev = Arc::new(Event::new());
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let ev = ev.clone();
                spawn(move || ev.wait())
            })
            .collect();
        sleep(Duration::from_millis(5));
        assert!(waiters.iter().all(|w| !w.is_finished()));
        ev.set();
        stackful::join_all(waiters)
            .into_iter()
            .for_each(|r| r.unwrap());
        ev.clear();
        assert!(!ev.is_set());
        let start = Instant::now();
        assert!(!ev.wait_timeout(Duration::from_millis(10)));
        assert!(start.elapsed() >= Duration::from_millis(10));
    });
    // A plain OS thread waits on an event set by a green thread.
    let ev = Arc::new(Event::new());
    let e2 = ev.clone();
    let h = stackful::spawn(move || {
        sleep(Duration::from_millis(5));
        e2.set();
    });
    ev.wait();
    h.join().unwrap();
}

#[test]
fn condvar_wakes_waiters_for_a_condition() {
    stackful::run(|| {
        let pair = Arc::new((Mutex::new(0u32), Condvar::new()));
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let pair = pair.clone();
                spawn(move || {
                    let (lock, cvar) = &*pair;
                    let g = cvar.wait_while(lock.lock(), |v| *v < 3);
                    *g
                })
            })
            .collect();
        for _ in 0..3 {
            sleep(Duration::from_millis(2));
            *pair.0.lock() += 1;
            pair.1.notify_all();
        }
        let seen = stackful::gather(consumers).unwrap();
        assert!(seen.iter().all(|&v| v >= 3), "{seen:?}");
        let (g, res) = pair.1.wait_timeout(pair.0.lock(), Duration::from_millis(5));
        assert!(res.timed_out());
        drop(g);
    });
}

#[test]
fn barrier_releases_all_parties_together_with_one_leader() {
    stackful::run(|| {
        let barrier = Arc::new(Barrier::new(4));
        let arrived = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (b, arrived) = (barrier.clone(), arrived.clone());
                spawn(move || {
                    sleep(Duration::from_millis(i * 3));
                    arrived.fetch_add(1, Ordering::SeqCst);
                    let r = b.wait();
                    (r.is_leader(), arrived.load(Ordering::SeqCst))
                })
            })
            .collect();
        let results = stackful::gather(handles).unwrap();
        assert_eq!(results.iter().filter(|(leader, _)| *leader).count(), 1);
        assert!(
            results.iter().all(|(_, n)| *n == 4),
            "someone passed early: {results:?}"
        );
    });
}

#[test]
fn a_cancelled_barrier_party_does_not_count() {
    stackful::run(|| {
        let barrier = Arc::new(Barrier::new(2));
        let b1 = barrier.clone();
        let quitter = spawn(move || {
            b1.wait();
        });
        sleep(Duration::from_millis(5));
        quitter.cancel();
        assert!(quitter.join().unwrap_err().is_cancelled());
        // The quitter's arrival was taken back: one more is not enough.
        let b2 = barrier.clone();
        let lone = spawn(move || b2.wait());
        sleep(Duration::from_millis(10));
        assert!(!lone.is_finished());
        let last = barrier.wait();
        let other = lone.join().unwrap();
        assert_ne!(last.is_leader(), other.is_leader());
    });
}

#[test]
fn wait_group_waits_for_every_member() {
    stackful::run(|| {
        let done = Arc::new(AtomicUsize::new(0));
        let wg = WaitGroup::new();
        for i in 0..5 {
            let (wg, done) = (wg.clone(), done.clone());
            drop(spawn(move || {
                sleep(Duration::from_millis(i));
                done.fetch_add(1, Ordering::SeqCst);
                drop(wg);
            }));
        }
        wg.wait();
        assert_eq!(done.load(Ordering::SeqCst), 5);
    });
}

/// Regression: a failed `try_lock` or `try_acquire` built its guard anyway
/// and dropped it, releasing a lock or permit it never took.
#[test]
fn regression_failed_try_lock_releases_nothing() {
    let m = Mutex::new(0);
    let g = m.lock();
    for _ in 0..3 {
        assert!(m.try_lock().is_none());
    }
    assert!(
        m.try_lock().is_none(),
        "a failed try_lock unlocked the mutex"
    );
    drop(g);
    let s = Semaphore::new(0);
    for _ in 0..3 {
        assert!(s.try_acquire().is_none());
    }
    assert_eq!(
        s.available_permits(),
        0,
        "a failed try_acquire added permits"
    );
}

/// Regression: `wake` returned on a plain load when the green thread was
/// already queued, which did not publish the waker's writes (a lock handed
/// over with `granted = true`) to the worker about to run it. The green
/// thread could run, miss the hand-off, and sleep forever while holding the
/// lock. A contended mutex with direct hand-offs exercises exactly that.
#[test]
fn regression_waking_a_queued_green_thread_publishes_the_wakers_writes() {
    let finished = stackful::run(|| {
        stackful::timeout(Duration::from_secs(60), || {
            let m = Arc::new(Mutex::new(0u64));
            let handles: Vec<_> = (0..64)
                .map(|_| {
                    let m = m.clone();
                    spawn(move || {
                        for _ in 0..3_000 {
                            *m.lock() += 1;
                        }
                    })
                })
                .collect();
            stackful::join_all(handles);
            *m.lock()
        })
    });
    assert_eq!(
        finished,
        Ok(64 * 3_000),
        "a lost wake-up left the mutex stuck"
    );
}

/// Found in review (Python had the same bug, gh-112202): a `Condvar` waiter
/// notified, then cancelled while it relocked the mutex, took the
/// notification with it, and the other waiter slept through `notify_one`.
#[test]
fn regression_condvar_passes_on_a_notification_when_relocking_is_cancelled() {
    let rt = stackful::Runtime::builder().workers(1).build().unwrap();
    rt.run(|| {
        let pair = Arc::new((Mutex::new(()), Condvar::new()));
        let p1 = pair.clone();
        let first = spawn(move || {
            stackful::timeout(Duration::from_millis(50), || {
                let g = p1.0.lock();
                drop(p1.1.wait(g));
            })
        });
        let waiting = |n: usize| format!("{:?}", pair.1) == format!("Condvar {{ waiters: {n} }}");
        common::eventually("the first waiter", || waiting(1));
        let p2 = pair.clone();
        let second = spawn(move || {
            let g = p2.0.lock();
            let (_g, r) = p2.1.wait_timeout(g, Duration::from_secs(20));
            r.timed_out()
        });
        common::eventually("the second waiter", || waiting(2));
        let guard = pair.0.lock();
        pair.1.notify_one(); // wakes `first`, which then waits for the mutex...
        // ...until its timeout cuts it off, while the mutex is still held.
        assert!(first.join().unwrap().is_err(), "first timed out relocking");
        drop(guard);
        assert!(
            !second.join().unwrap(),
            "the notification passed on to the second waiter"
        );
    });
}

#[test]
fn semaphore_counts_past_the_maximum_panic_with_a_message() {
    let s = Semaphore::new(Semaphore::MAX_PERMITS);
    let err = std::panic::catch_unwind(|| s.add_permits(1)).unwrap_err();
    let text = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains("maximum"), "{text}");
    assert_eq!(s.available_permits(), Semaphore::MAX_PERMITS);
    assert!(std::panic::catch_unwind(|| Semaphore::new(usize::MAX)).is_err());
    // Adding many permits at once is one step, not one per permit.
    let s = Semaphore::new(0);
    let start = Instant::now();
    s.add_permits(1 << 40);
    assert_eq!(s.available_permits(), 1 << 40);
    assert!(start.elapsed() < Duration::from_secs(5));
}
