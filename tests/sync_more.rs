//! Synchronisation primitives, continued: `Event::set` then `clear`,
//! `Condvar` notifications that survive a cancelled waiter, and lock and
//! permit hand-offs to waiters whose wait is cut short.
//!
//! Most cases run three ways through [`each_mode`]: on a green thread of a
//! one-worker runtime, of a two-worker runtime, and on plain OS threads.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Handle, each_green, each_mode, eventually};
use stackful::sync::{Condvar, Event, Mutex, RwLock, Semaphore};

/// How many wait on `what`, as its `Debug` output shows.
fn waiters(what: &impl std::fmt::Debug) -> usize {
    let text = format!("{what:?}");
    let at = text.find("waiters: ").expect("`Debug` shows the waiters") + "waiters: ".len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

/// Waits until `n` wait on `what`: they have registered, so a
/// notification from now on reaches them.
fn until_waiting(what: &impl std::fmt::Debug, n: usize) {
    eventually(&format!("{n} waiters"), || waiters(what) == n);
}

/// Spins, without suspending, for `d`.
fn spin_for(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

// ---------------------------------------------------------------------------
// Item 16: Event::set then clear.

#[test]
fn set_then_clear_at_once_releases_everyone_who_waited() {
    each_mode(|mode| {
        for round in 0..20 {
            let ev = Arc::new(Event::new());
            let plain_done = Arc::new(AtomicBool::new(false));
            let (e, done) = (ev.clone(), plain_done.clone());
            // Not joined: if it hangs, the assertion below fails instead.
            let _plain = mode.spawn(move || {
                e.wait();
                done.store(true, Ordering::SeqCst);
            });
            let timed: Vec<_> = (0..2)
                .map(|_| {
                    let ev = ev.clone();
                    mode.spawn(move || ev.wait_timeout(Duration::from_secs(20)))
                })
                .collect();
            until_waiting(&*ev, 3);
            ev.set();
            ev.clear();
            for w in timed {
                assert!(w.join(), "{mode:?} round {round}: a waiter saw no set");
            }
            eventually("the plain waiter to return", || {
                plain_done.load(Ordering::SeqCst)
            });
            assert!(!ev.is_set());
            // A wait that starts after the set waits for the next one.
            assert!(!ev.wait_timeout(Duration::from_millis(2)));
        }
    });
}

#[test]
fn set_and_clear_keep_their_plain_meaning() {
    each_mode(|mode| {
        let ev = Arc::new(Event::new());
        assert!(!ev.is_set());
        assert!(!ev.wait_timeout(Duration::ZERO));
        ev.set();
        assert!(ev.is_set());
        ev.wait(); // returns at once while set
        assert!(ev.wait_timeout(Duration::ZERO));
        ev.set(); // twice is fine
        ev.clear();
        ev.clear();
        assert!(!ev.is_set());
        let start = Instant::now();
        assert!(!ev.wait_timeout(Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(20));
        // Set from another thread while waiting.
        let e = ev.clone();
        let setter = mode.spawn(move || {
            until_waiting(&*e, 1);
            e.set();
        });
        assert!(ev.wait_timeout(Duration::from_secs(20)));
        setter.join();
        assert!(format!("{ev:?}").contains("is_set: true"));
    });
}

#[test]
fn a_cancelled_event_waiter_leaves_and_others_still_wake() {
    each_green(|_| {
        let ev = Arc::new(Event::new());
        let e = ev.clone();
        let doomed = stackful::spawn(move || e.wait());
        let e = ev.clone();
        let other = stackful::spawn(move || e.wait());
        until_waiting(&*ev, 2);
        doomed.cancel();
        assert!(doomed.join().unwrap_err().is_cancelled());
        until_waiting(&*ev, 1);
        ev.set();
        ev.clear();
        other.join().unwrap();
    });
}

// ---------------------------------------------------------------------------
// Item 14: a Condvar notification survives a waiter cut off while relocking.

/// `notify_one` wakes A; A is cut off (cancelled by its handle, or by its
/// timeout) while it waits to relock the mutex, which the notifier holds.
/// B must get the notification A could not use.
#[test]
fn a_notification_passes_on_when_the_woken_waiter_is_cancelled_relocking() {
    each_green(|mode| {
        for by_timeout in [false, true] {
            let mut exercised = 0;
            for round in 0..if by_timeout { 6 } else { 20 } {
                // With a timeout, A's deadline passes while the notifier
                // holds the mutex, below.
                let deadline = Instant::now() + Duration::from_millis(150);
                let pair = Arc::new((Mutex::new(0u32), Condvar::new()));
                let a_done = Arc::new(AtomicBool::new(false));
                let (p, done) = (pair.clone(), a_done.clone());
                let a = stackful::spawn(move || {
                    let body = || {
                        let g = p.0.lock();
                        drop(p.1.wait(g));
                    };
                    if by_timeout {
                        let _ = stackful::timeout_at(deadline, body);
                    } else {
                        body();
                    }
                    done.store(true, Ordering::SeqCst);
                });
                eventually("A to wait", || {
                    waiters(&pair.1) == 1 || a_done.load(Ordering::SeqCst)
                });
                let p = pair.clone();
                let b = stackful::spawn(move || {
                    let g = p.0.lock();
                    let (_g, r) = p.1.wait_timeout(g, Duration::from_secs(20));
                    !r.timed_out()
                });
                eventually("B to wait", || {
                    waiters(&pair.1) == 2 || a_done.load(Ordering::SeqCst)
                });
                if a_done.load(Ordering::SeqCst) {
                    // A's deadline passed before the notification (a slow
                    // machine): not the case under test.
                    pair.1.notify_all();
                    assert!(b.join().unwrap());
                    continue;
                }
                let guard = pair.0.lock();
                pair.1.notify_one(); // A, first in line
                if by_timeout {
                    // A wakes and waits for the mutex until its deadline.
                    let left = deadline.saturating_duration_since(Instant::now());
                    stackful::sleep(left + Duration::from_millis(10));
                } else {
                    stackful::yield_now(); // on one worker, A waits for the mutex now
                    a.cancel();
                }
                drop(guard);
                let _ = a.join();
                assert!(
                    b.join().unwrap(),
                    "{mode:?} round {round} (timeout: {by_timeout}): B was never notified"
                );
                exercised += 1;
            }
            assert!(
                exercised > 0,
                "{mode:?}: the machine was too slow every time"
            );
        }
    });
}

/// The same with a timeout on OS threads: a thread whose wait is cut off
/// while relocking passes its notification on.
#[test]
fn a_notification_passes_on_when_a_timed_out_os_thread_relocks() {
    for _attempt in 0..5 {
        let deadline = Instant::now() + Duration::from_millis(150);
        let pair = Arc::new((Mutex::new(()), Condvar::new()));
        let a_done = Arc::new(AtomicBool::new(false));
        let (p, done) = (pair.clone(), a_done.clone());
        let a = std::thread::spawn(move || {
            let _ = stackful::timeout_at(deadline, || {
                let g = p.0.lock();
                drop(p.1.wait(g));
            });
            done.store(true, Ordering::SeqCst);
        });
        eventually("A to wait", || {
            waiters(&pair.1) == 1 || a_done.load(Ordering::SeqCst)
        });
        let p = pair.clone();
        let b = std::thread::spawn(move || {
            let g = p.0.lock();
            !p.1.wait_timeout(g, Duration::from_secs(20)).1.timed_out()
        });
        eventually("B to wait", || {
            waiters(&pair.1) == 2 || a_done.load(Ordering::SeqCst)
        });
        if a_done.load(Ordering::SeqCst) {
            pair.1.notify_all(); // too slow: A timed out early; again
            a.join().unwrap();
            assert!(b.join().unwrap());
            continue;
        }
        let guard = pair.0.lock();
        pair.1.notify_one();
        // A's deadline passes while it waits to relock.
        std::thread::sleep(
            deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(10),
        );
        drop(guard);
        a.join().unwrap();
        assert!(b.join().unwrap(), "B was never notified");
        return;
    }
    panic!("the machine was too slow every time");
}

// ---------------------------------------------------------------------------
// Item 15: a lock or permit granted to a waiter that is cut off goes on.

/// A waiter behind a 1 ms timeout is handed the lock after its deadline
/// (the holder spins past it, so the hand-off is direct); it must pass the
/// lock on, to a second waiter, or give it back.
#[test]
fn a_lock_granted_to_a_timed_out_waiter_is_passed_on() {
    each_mode(|mode| {
        for round in 0..20 {
            let m = Arc::new(Mutex::new(0u32));
            let guard = m.lock();
            let m1 = m.clone();
            let hurried = mode.spawn(move || {
                stackful::timeout(Duration::from_millis(1), || *m1.lock() += 1).is_ok()
            });
            let m2 = m.clone();
            let patient = mode.spawn(move || {
                stackful::timeout(Duration::from_secs(20), || *m2.lock() += 10).is_ok()
            });
            stackful::sleep(Duration::from_millis(1)); // both queue up
            spin_for(Duration::from_millis(3)); // the hurried one's deadline passes
            drop(guard);
            let hurried_got_it = hurried.join();
            assert!(patient.join(), "{mode:?} round {round}: the lock was lost");
            let expect = if hurried_got_it { 11 } else { 10 };
            assert_eq!(*m.lock(), expect, "{mode:?} round {round}");
            assert!(
                m.try_lock().is_some(),
                "{mode:?} round {round}: the lock leaked"
            );
        }
    });
}

#[test]
fn an_rwlock_granted_to_a_timed_out_waiter_is_passed_on() {
    each_mode(|mode| {
        for round in 0..20 {
            let l = Arc::new(RwLock::new(0u32));
            let guard = l.write();
            let waiters: Vec<_> = (0..4)
                .map(|k| {
                    let l = l.clone();
                    mode.spawn(move || {
                        let t = Duration::from_millis(1);
                        let patience = Duration::from_secs(20);
                        match k {
                            0 => stackful::timeout(t, || *l.write() += 1).is_ok(),
                            1 => stackful::timeout(t, || drop(l.read())).is_ok(),
                            // These two must get it, or the grant was lost.
                            2 => stackful::timeout(patience, || *l.write() += 100).is_ok(),
                            _ => stackful::timeout(patience, || drop(l.read())).is_ok(),
                        }
                    })
                })
                .collect();
            stackful::sleep(Duration::from_millis(1)); // all queue up
            spin_for(Duration::from_millis(3)); // the hurried ones' deadlines pass
            drop(guard);
            let done: Vec<bool> = waiters.into_iter().map(Handle::join).collect();
            assert!(
                done[2] && done[3],
                "{mode:?} round {round}: a grant was lost"
            );
            let v = *l.read();
            assert_eq!(v, 100 + u32::from(done[0]), "{mode:?} round {round}");
            assert!(
                l.try_write().is_some(),
                "{mode:?} round {round}: the lock leaked"
            );
        }
    });
}

#[test]
fn a_permit_granted_to_a_cancelled_waiter_is_passed_on() {
    each_green(|mode| {
        for round in 0..20 {
            let s = Arc::new(Semaphore::new(1));
            let permit = s.acquire();
            let s1 = s.clone();
            let doomed = stackful::spawn(move || {
                let _p = s1.acquire();
                stackful::sleep(Duration::from_secs(3600));
            });
            stackful::sleep(Duration::from_millis(1)); // `doomed` queues first
            let s2 = s.clone();
            let acquired = Arc::new(AtomicUsize::new(0));
            let a2 = acquired.clone();
            let patient = stackful::spawn(move || {
                let _ = stackful::timeout(Duration::from_secs(20), || {
                    let _p = s2.acquire();
                    a2.fetch_add(1, Ordering::SeqCst);
                });
            });
            stackful::sleep(Duration::from_millis(1)); // then `patient`
            spin_for(Duration::from_millis(2)); // past the fairness threshold: direct hand-off
            drop(permit); // to `doomed`, first in line
            doomed.cancel();
            assert!(doomed.join().unwrap_err().is_cancelled());
            patient.join().unwrap();
            assert_eq!(
                acquired.load(Ordering::SeqCst),
                1,
                "{mode:?} round {round}: lost"
            );
            assert_eq!(
                s.available_permits(),
                1,
                "{mode:?} round {round}: a permit leaked"
            );
        }
    });
}
