//! `JoinSet`: a set of green threads that grows while it runs, joined in
//! completion order, and that nothing outlives unless detached.

mod common;

use common::{DropCounter, panic_text, within};

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stackful::sync::Event;
use stackful::task::JoinSet;
use stackful::{sleep, timeout};

/// `n` events, shared.
fn gates(n: usize) -> Arc<Vec<Event>> {
    Arc::new((0..n).map(|_| Event::new()).collect())
}

/// A value whose destructor panics.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("PanicOnDrop dropped");
    }
}

/// Counts its drop after a short sleep, as a destructor that returns a
/// connection to a pool might: a drop that is not over at once.
struct SlowDrop(Arc<AtomicUsize>);

impl Drop for SlowDrop {
    fn drop(&mut self) {
        sleep(Duration::from_millis(5));
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Sleeps for an hour, holding a `SlowDrop`: a green thread that only a
/// cancellation ends, and whose unwind takes a little while.
fn sleeper(drops: &Arc<AtomicUsize>, started: &Arc<AtomicUsize>) -> impl FnOnce() + Send + 'static {
    let guard = SlowDrop(drops.clone());
    let started = started.clone();
    move || {
        let _guard = guard;
        started.fetch_add(1, Ordering::SeqCst);
        sleep(Duration::from_secs(3600));
    }
}

#[test]
fn an_empty_set_returns_none_at_once() {
    let check = || {
        let mut set = JoinSet::<u32>::new();
        assert!(set.is_empty());
        assert_eq!(set.len(), 0);
        assert!(set.join_next().is_none());
        assert!(set.join_next_with_id().is_none());
        assert!(set.try_join_next().is_none());
        assert!(set.join_all().is_empty());
        let set: JoinSet<String> = JoinSet::default();
        assert_eq!(format!("{set:?}"), "JoinSet { len: 0 }");
    };
    within(20, check);
    within(20, move || stackful::run(check));
}

#[test]
fn join_next_returns_in_completion_order_on_green_and_plain_threads() {
    let check = || {
        let gates = gates(3);
        let mut set = JoinSet::new();
        for i in 0..3 {
            let gates = gates.clone();
            set.spawn(move || {
                gates[i].wait();
                i
            });
        }
        assert_eq!(set.len(), 3);
        assert!(set.try_join_next().is_none(), "nothing has ended yet");
        for i in [2, 0, 1] {
            gates[i].set();
            assert_eq!(set.join_next().unwrap().unwrap(), i);
        }
        assert!(set.is_empty());
        assert!(set.join_next().is_none());
    };
    within(30, check);
    within(30, move || stackful::run(check));
}

#[test]
fn join_next_with_id_names_the_green_thread_spawn_returned() {
    stackful::run(|| {
        let mut set = JoinSet::new();
        let ids: Vec<_> = (0..5).map(|i| set.spawn(move || i)).collect();
        let mut seen = Vec::new();
        while let Some((id, value)) = set.join_next_with_id() {
            let value = value.unwrap();
            assert_eq!(
                id, ids[value],
                "the id of the green thread that returned {value}"
            );
            seen.push(value);
        }
        seen.sort();
        assert_eq!(seen, [0, 1, 2, 3, 4]);
    });
}

#[test]
fn the_set_grows_while_its_green_threads_run() {
    let total = within(60, || {
        stackful::run(|| {
            let mut set = JoinSet::new();
            set.spawn(|| 1u64);
            let mut total = 0;
            let mut spawned = 1;
            // Each result spawns two more until 200 have run: slots are
            // freed and reused while others are running.
            while let Some(result) = set.join_next() {
                total += result.unwrap();
                for _ in 0..2 {
                    if spawned < 200 {
                        spawned += 1;
                        set.spawn(|| {
                            stackful::yield_now();
                            1
                        });
                    }
                }
            }
            total
        })
    });
    assert_eq!(total, 200);
}

#[test]
fn thousands_are_joined_once_each() {
    let (count, sum) = within(120, || {
        stackful::run(|| {
            let mut set = JoinSet::new();
            for i in 0..5000u64 {
                set.spawn(move || {
                    if i % 3 == 0 {
                        stackful::yield_now();
                    }
                    i
                });
            }
            let results = set.join_all();
            let sum: u64 = results.iter().map(|r| r.as_ref().unwrap()).sum();
            (results.len(), sum)
        })
    });
    assert_eq!(count, 5000);
    assert_eq!(sum, (0..5000u64).sum::<u64>());
}

#[test]
fn join_all_returns_completion_order() {
    // One worker: a member that sets the next one's gate ends before that
    // one runs, since it does not suspend in between.
    let rt = stackful::Runtime::builder().workers(1).build().unwrap();
    let owner = rt.spawn(|| {
        let gates = gates(3);
        let mut set = JoinSet::new();
        for i in 0..3 {
            let gates = gates.clone();
            set.spawn(move || {
                gates[i].wait();
                // Each releases the next in the order 1, 2, 0.
                if i == 1 {
                    gates[2].set();
                } else if i == 2 {
                    gates[0].set();
                }
                i
            });
        }
        gates[1].set();
        set.join_all()
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    });
    assert_eq!(within(30, move || owner.join().unwrap()), [1, 2, 0]);
}

#[test]
fn panics_come_back_as_errors() {
    stackful::run(|| {
        let mut set = JoinSet::new();
        set.spawn(|| -> u32 { panic!("member failed") });
        let err = set.join_next().unwrap().unwrap_err();
        assert!(err.is_panic());
        assert_eq!(panic_text(err.into_panic()), "member failed");
    });
}

#[test]
fn cancel_all_then_join_next_returns_each() {
    let check = || {
        let drops = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        // One that has ended with a value before the cancellation.
        let done = Arc::new(Event::new());
        let d = done.clone();
        let finished = set.spawn(move || {
            d.set();
            Some(7) // no suspension point after `set`: it keeps its value
        });
        done.wait();
        // Two running ones.
        for _ in 0..2 {
            let body = sleeper(&drops, &started);
            set.spawn(move || {
                body();
                None
            });
        }
        common::eventually("both sleepers to start", || {
            started.load(Ordering::SeqCst) == 2
        });
        set.cancel_all();
        assert_eq!(set.len(), 3, "cancel_all keeps them in the set");
        let mut values = 0;
        let mut cancelled = 0;
        while let Some((id, result)) = set.join_next_with_id() {
            match result {
                Ok(value) => {
                    assert_eq!((id, value), (finished, Some(7)));
                    values += 1;
                }
                Err(e) => {
                    assert!(e.is_cancelled(), "{e}");
                    cancelled += 1;
                }
            }
        }
        assert_eq!((values, cancelled), (1, 2));
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    };
    within(30, check);
    within(30, move || stackful::run(check));
}

#[test]
fn cancel_all_drops_members_that_never_started() {
    // On a one-worker runtime, a green thread that does not suspend keeps
    // its members from starting.
    let rt = stackful::Runtime::builder().workers(1).build().unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let (d, r) = (drops.clone(), ran.clone());
    let owner = rt.spawn(move || {
        let mut set = JoinSet::new();
        for _ in 0..3 {
            let guard = DropCounter(d.clone());
            let ran = r.clone();
            set.spawn(move || {
                let _guard = guard;
                ran.fetch_add(1, Ordering::SeqCst);
            });
        }
        set.cancel_all();
        assert_eq!(
            d.load(Ordering::SeqCst),
            3,
            "closures dropped by cancel_all"
        );
        set.join_all()
    });
    let results = within(30, move || owner.join().unwrap());
    assert_eq!(results.len(), 3);
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap_err().is_cancelled())
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(drops.load(Ordering::SeqCst), 3);
}

#[test]
fn a_cancelled_join_next_loses_nothing() {
    let check = || {
        let gate = Arc::new(Event::new());
        let mut set = JoinSet::new();
        let g = gate.clone();
        set.spawn(move || {
            g.wait();
            "kept"
        });
        let waited = timeout(Duration::from_millis(10), || set.join_next());
        assert!(waited.is_err(), "the member is still waiting");
        assert_eq!(set.len(), 1);
        gate.set();
        assert_eq!(set.join_next().unwrap().unwrap(), "kept");
        assert!(set.join_next().is_none());
    };
    within(30, check);
    within(30, move || stackful::run(check));
}

#[test]
fn a_member_that_ends_while_join_next_is_cancelled_stays_in_the_set() {
    // One worker: the owner waits in `join_next` under a timeout; the member
    // runs (the owner is parked), spins until the test lets it go, which is
    // after the owner's deadline, and ends. The owner then resumes with its
    // timeout expired and the member's report unread: it must stay.
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;
    let rt = stackful::Runtime::builder().workers(1).build().unwrap();
    let started = Arc::new(AtomicBool::new(false));
    let go = Arc::new(AtomicBool::new(false));
    let deadline: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let (s, g, d) = (started.clone(), go.clone(), deadline.clone());
    let owner = rt.spawn(move || {
        let mut set = JoinSet::new();
        let started = s.clone();
        set.spawn(move || {
            started.store(true, Ordering::SeqCst);
            while !g.load(Ordering::SeqCst) {
                std::hint::spin_loop(); // holds the only worker
            }
            "ended meanwhile"
        });
        loop {
            let until = Instant::now() + Duration::from_millis(5);
            *d.lock().unwrap() = Some(until);
            let waited = stackful::timeout_at(until, || set.join_next());
            assert!(waited.is_err(), "the member ends only after the deadline");
            if s.load(Ordering::SeqCst) {
                break; // it ran while this attempt waited
            }
        }
        assert_eq!(set.len(), 1);
        set.try_join_next()
            .expect("the member ended while join_next waited")
            .unwrap()
    });
    let value = within(30, move || {
        while !started.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let until = deadline.lock().unwrap().expect("published before waiting");
        while Instant::now() < until + Duration::from_millis(1) {
            std::thread::yield_now();
        }
        go.store(true, Ordering::SeqCst);
        owner.join().unwrap()
    });
    assert_eq!(value, "ended meanwhile");
}

#[test]
fn the_set_moves_between_green_threads_and_plain_threads() {
    within(30, || {
        let gates = gates(3);
        let mut set = JoinSet::new();
        for i in 0..3 {
            let gates = gates.clone();
            set.spawn(move || {
                gates[i].wait();
                i
            });
        }
        assert!(set.try_join_next().is_none()); // armed on this thread
        // On a green thread: armed there.
        let g = gates.clone();
        let mut set = stackful::spawn(move || {
            g[0].set();
            assert_eq!(set.join_next().unwrap().unwrap(), 0);
            set
        })
        .join()
        .unwrap();
        // On another plain thread.
        let g = gates.clone();
        let mut set = std::thread::spawn(move || {
            g[1].set();
            assert_eq!(set.join_next().unwrap().unwrap(), 1);
            set
        })
        .join()
        .unwrap();
        // Back here.
        gates[2].set();
        assert_eq!(set.join_next().unwrap().unwrap(), 2);
        assert!(set.join_next().is_none());
    });
}

#[test]
fn dropping_the_set_cancels_and_waits_for_the_unwind() {
    let check = || {
        let drops = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        for _ in 0..4 {
            set.spawn(sleeper(&drops, &started));
        }
        common::eventually("the sleepers to start", || {
            started.load(Ordering::SeqCst) == 4
        });
        drop(set);
        assert_eq!(drops.load(Ordering::SeqCst), 4, "every member has unwound");
    };
    within(30, check);
    within(30, move || stackful::run(check));
}

#[test]
fn dropping_the_set_waits_even_for_slow_destructors_under_a_timeout() {
    let check = || {
        let drops = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        // The set is dropped by the unwind of an expired timeout: its wait
        // must not be cut short by that same timeout.
        let outcome = timeout(Duration::from_millis(20), || {
            let mut set = JoinSet::new();
            for _ in 0..3 {
                set.spawn(sleeper(&d, &started));
            }
            set.join_next()
        });
        assert!(outcome.is_err());
        assert_eq!(
            drops.load(Ordering::SeqCst),
            3,
            "dropped after every slow destructor"
        );
    };
    within(30, check);
    within(30, move || stackful::run(check));
}

#[test]
fn dropping_the_set_after_a_deadline_passed_still_waits() {
    // Not in an unwind: the set is dropped by ordinary code whose timeout
    // has expired, so the next cancellation point would unwind. The wait
    // in Drop is not one.
    let check = || {
        let drops = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let _ = timeout(Duration::from_millis(10), || {
            let mut set = JoinSet::new();
            for _ in 0..3 {
                set.spawn(sleeper(&drops, &started));
            }
            let start = std::time::Instant::now();
            while started.load(Ordering::SeqCst) < 3 || start.elapsed() < Duration::from_millis(20)
            {
                std::thread::yield_now(); // no suspension point: the deadline passes
            }
            drop(set);
            assert_eq!(
                drops.load(Ordering::SeqCst),
                3,
                "inside the timeout, after the drop"
            );
        });
        assert_eq!(drops.load(Ordering::SeqCst), 3);
    };
    within(30, check);
    within(30, move || stackful::run(check));
}

#[test]
fn dropping_the_set_in_a_panic_unwind_waits_too() {
    let check = || {
        let drops = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let caught = panic::catch_unwind(AssertUnwindSafe(|| {
            let mut set = JoinSet::new();
            for _ in 0..3 {
                set.spawn(sleeper(&drops, &started));
            }
            common::eventually("the sleepers to start", || {
                started.load(Ordering::SeqCst) == 3
            });
            panic!("owner failed");
        }));
        assert_eq!(panic_text(caught.unwrap_err()), "owner failed");
        assert_eq!(drops.load(Ordering::SeqCst), 3);
    };
    within(30, check);
    within(30, move || stackful::run(check));
}

#[test]
fn a_cancelled_owner_drops_its_set_and_its_members_first() {
    stackful::run(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let (d, s) = (drops.clone(), started.clone());
        let owner = stackful::spawn(move || {
            let mut set = JoinSet::new();
            for _ in 0..3 {
                set.spawn(sleeper(&d, &s));
            }
            set.join_all()
        });
        common::eventually("the sleepers to start", || {
            started.load(Ordering::SeqCst) == 3
        });
        owner.cancel();
        assert!(owner.join().unwrap_err().is_cancelled());
        assert_eq!(
            drops.load(Ordering::SeqCst),
            3,
            "before the owner's join returned"
        );
    });
}

#[test]
fn a_panicking_result_destructor_does_not_escape_drop() {
    let check = || {
        let mut set = JoinSet::new();
        let done = Arc::new(Event::new());
        let d = done.clone();
        set.spawn(move || {
            d.set();
            PanicOnDrop
        });
        done.wait();
        // Drop waits for it to end, then drops its stored result.
        let dropped = panic::catch_unwind(AssertUnwindSafe(move || drop(set)));
        assert!(dropped.is_ok(), "the result's panic was caught");
    };
    within(30, check);
    within(30, move || stackful::run(check));
}

#[test]
fn a_panicking_result_destructor_in_an_unwind_does_not_abort() {
    let check = || {
        let caught = panic::catch_unwind(AssertUnwindSafe(|| {
            let mut set = JoinSet::new();
            let done = Arc::new(Event::new());
            let d = done.clone();
            set.spawn(move || {
                d.set();
                PanicOnDrop
            });
            done.wait();
            panic!("owner failed");
        }));
        assert_eq!(panic_text(caught.unwrap_err()), "owner failed");
    };
    within(30, check);
    within(30, move || stackful::run(check));
}

#[test]
fn join_all_cancelled_with_panicking_results_in_hand_does_not_abort() {
    stackful::run(|| {
        let started = Arc::new(Event::new());
        let s = started.clone();
        let owner = stackful::spawn(move || {
            let mut set = JoinSet::new();
            set.spawn(|| Some(PanicOnDrop));
            let s = s.clone();
            set.spawn(move || {
                s.set();
                sleep(Duration::from_secs(3600));
                None
            });
            set.join_all()
        });
        started.wait();
        owner.cancel();
        assert!(owner.join().err().unwrap().is_cancelled());
    });
}

#[test]
fn detach_all_lets_them_run_on() {
    let check = || {
        let gate = Arc::new(Event::new());
        let finished = Arc::new(Event::new());
        let drops = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        let (g, f, guard) = (gate.clone(), finished.clone(), DropCounter(drops.clone()));
        set.spawn(move || {
            let _guard = guard;
            g.wait();
            f.set();
        });
        set.detach_all();
        assert_eq!(drops.load(Ordering::SeqCst), 0, "not cancelled");
        gate.set();
        finished.wait();
        common::eventually("the detached green thread to end", || {
            drops.load(Ordering::SeqCst) == 1
        });
    };
    within(30, check);
    within(30, move || stackful::run(check));
}

#[test]
fn a_member_that_drops_its_own_set_does_not_wait_for_itself() {
    within(30, || {
        stackful::run(|| {
            let shared: Arc<Mutex<Option<JoinSet<()>>>> = Arc::new(Mutex::new(None));
            let gate = Arc::new(Event::new());
            let mut set = JoinSet::new();
            let (sh, g) = (shared.clone(), gate.clone());
            set.spawn(move || {
                g.wait();
                let set = sh.lock().unwrap().take();
                drop(set); // holds this very green thread
            });
            *shared.lock().unwrap() = Some(set);
            gate.set();
            common::eventually("the member to drop the set", || {
                shared.lock().unwrap().is_none()
            });
        });
    });
}

#[test]
fn a_stale_report_for_a_reused_slot_takes_nothing_unfinished() {
    // On one worker: two members end while the owner yields, so both report
    // to it. It takes one; the set moves to another green thread, which
    // registers the members again and so reports the other one a second
    // time. After that one is taken, its slot goes to a new member that has
    // not run: the stale second report must not take it.
    let rt = stackful::Runtime::builder().workers(1).build().unwrap();
    let owner = rt.spawn(|| {
        let mut set = JoinSet::new();
        let ended = Arc::new(AtomicUsize::new(0));
        for i in 0..2 {
            let ended = ended.clone();
            set.spawn(move || {
                ended.fetch_add(1, Ordering::SeqCst);
                i // no suspension point: on one worker, it has ended when we run
            });
        }
        assert!(set.try_join_next().is_none(), "neither has run yet");
        while ended.load(Ordering::SeqCst) < 2 {
            stackful::yield_now();
        }
        let first = set.join_next().unwrap().unwrap();
        stackful::spawn(move || {
            let second = set.join_next().unwrap().unwrap();
            assert_eq!(first + second, 1);
            let gate = Arc::new(Event::new());
            let g = gate.clone();
            set.spawn(move || {
                g.wait();
                2
            });
            assert!(
                set.try_join_next().is_none(),
                "the new member has not ended"
            );
            gate.set();
            assert_eq!(set.join_next().unwrap().unwrap(), 2);
            assert!(set.is_empty());
        })
        .join()
        .unwrap();
    });
    within(30, move || owner.join().unwrap());
}

#[test]
fn a_report_behind_a_stale_one_is_not_missed() {
    // One worker. After a move to another green thread, the first member's
    // completion is reported twice and one report stays unread. The second
    // member then ends, and its wake-up is spent before the owner asks
    // again: that report must still be read.
    let rt = stackful::Runtime::builder().workers(1).build().unwrap();
    let owner = rt.spawn(|| {
        let ended = Arc::new(AtomicUsize::new(0));
        let gates = gates(2);
        let mut set = JoinSet::new();
        for i in 0..3 {
            let (ended, gates) = (ended.clone(), gates.clone());
            set.spawn(move || {
                if i > 0 {
                    gates[i - 1].wait(); // the third waits for good
                }
                ended.fetch_add(1, Ordering::SeqCst);
                i
            });
        }
        assert!(set.try_join_next().is_none(), "none has run yet");
        while ended.load(Ordering::SeqCst) < 1 {
            stackful::yield_now();
        }
        stackful::spawn(move || {
            assert_eq!(set.join_next().unwrap().unwrap(), 0);
            gates[0].set();
            while ended.load(Ordering::SeqCst) < 2 {
                stackful::yield_now();
            }
            // Not for timing: a sleep spends any wake-up delivered already.
            sleep(Duration::from_millis(1));
            assert_eq!(set.join_next().unwrap().unwrap(), 1);
            assert_eq!(set.len(), 1); // the third is cancelled with the set
        })
        .join()
        .unwrap();
    });
    within(30, move || owner.join().unwrap());
}

/// Found while closing issue 12: a member that calls `join_next` on its own
/// set, once it is the only member left, would wait for itself forever. It
/// panics instead, as a `join` of its own handle does, naming the caller.
#[test]
fn regression_the_last_member_waiting_on_its_own_set_panics_instead_of_hanging() {
    let text = within(60, || {
        stackful::run(|| {
            let (set_tx, set_rx) = stackful::sync::channel::<JoinSet<()>>(1);
            let (out_tx, out_rx) = stackful::sync::channel::<String>(1);
            let mut set = JoinSet::new();
            set.spawn(move || {
                let mut own = set_rx.recv().unwrap();
                let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    own.join_next();
                }));
                let payload = caught.expect_err("waiting for itself must panic");
                out_tx.send(panic_text(payload)).unwrap();
            });
            set_tx.send(set).unwrap();
            out_rx.recv().unwrap()
        })
    });
    assert!(text.contains("tried to join itself"), "{text}");
}
