//! `try_gather`, `JoinHandle::abort_on_drop`, and the combinators over a
//! scope's handles.

mod common;

use common::{DropCounter, eventually, panic_text, within};

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stackful::sync::Event;
use stackful::task::{self, AbortOnDrop, try_gather};
use stackful::{JoinError, ReturnWhen, sleep, timeout};

/// `n` events, shared.
fn gates(n: usize) -> Arc<Vec<Event>> {
    Arc::new((0..n).map(|_| Event::new()).collect())
}

/// The error type of the fallible green threads here.
#[derive(Debug)]
enum Error {
    Failed(u32),
    Join(JoinError),
}

impl From<JoinError> for Error {
    fn from(e: JoinError) -> Error {
        Error::Join(e)
    }
}

/// A green thread that sleeps for an hour holding a drop counter, and says
/// when it has started: only a cancellation ends it.
fn spawn_sleeper(
    drops: &Arc<AtomicUsize>,
    started: &Arc<Event>,
) -> stackful::JoinHandle<Result<u32, Error>> {
    let guard = DropCounter(drops.clone());
    let started = started.clone();
    stackful::spawn(move || {
        let _guard = guard;
        started.set();
        sleep(Duration::from_secs(3600));
        Ok(0)
    })
}

/// A value whose destructor panics.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("PanicOnDrop dropped");
    }
}

// ---- try_gather ----

#[test]
fn try_gather_returns_every_value_in_input_order() {
    let check = || {
        let gates = gates(3);
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let gates = gates.clone();
                stackful::spawn(move || {
                    gates[i].wait();
                    if i > 0 {
                        gates[i - 1].set(); // they end in the order 2, 1, 0
                    }
                    Ok::<u32, Error>(i as u32 * 10)
                })
            })
            .collect();
        gates[2].set();
        assert_eq!(try_gather(handles).unwrap(), [0, 10, 20]);
    };
    within(30, check);
    within(30, move || stackful::run(check));
}

#[test]
fn try_gather_of_nothing_is_ok_and_empty() {
    let none: Vec<stackful::JoinHandle<Result<u32, Error>>> = Vec::new();
    assert!(try_gather(none).unwrap().is_empty());
}

#[test]
fn try_gather_returns_the_first_err_and_cancels_the_rest() {
    let check = || {
        let drops = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(Event::new());
        let gates = gates(2);
        let sleeper = spawn_sleeper(&drops, &started);
        // Each fails once its gate is set. Only the second one's is: a
        // gather that took failures in input order would wait forever for
        // the first (`within` fails it); the first is cancelled instead.
        let failing = |i: usize| {
            let gates = gates.clone();
            let guard = DropCounter(drops.clone());
            stackful::spawn(move || {
                let _guard = guard;
                gates[i].wait();
                Err::<u32, Error>(Error::Failed(i as u32))
            })
        };
        let handles = vec![sleeper, failing(0), failing(1)];
        started.wait();
        gates[1].set();
        match try_gather(handles) {
            Err(Error::Failed(1)) => {}
            other => panic!("expected the first failure in completion order, got {other:?}"),
        }
        eventually("the others to be cancelled and the failure to end", || {
            drops.load(Ordering::SeqCst) == 3
        });
        assert!(!gates[0].is_set());
    };
    within(30, check);
    within(30, move || stackful::run(check));
}

#[test]
fn try_gather_counts_an_err_as_a_failure_where_gather_does_not() {
    stackful::run(|| {
        let fail = || stackful::spawn(|| Err::<u32, Error>(Error::Failed(7)));
        let gathered = stackful::gather([fail()]).unwrap();
        assert!(matches!(gathered[..], [Err(Error::Failed(7))]));
        assert!(matches!(try_gather([fail()]), Err(Error::Failed(7))));
    });
}

#[test]
fn try_gather_turns_a_panic_into_the_error_type() {
    let check = || {
        let drops = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(Event::new());
        let sleeper = spawn_sleeper(&drops, &started);
        started.wait();
        let panicking = stackful::spawn(|| -> Result<u32, Error> { panic!("member panicked") });
        match try_gather([sleeper, panicking]) {
            Err(Error::Join(e)) if e.is_panic() => {
                assert_eq!(panic_text(e.into_panic()), "member panicked");
            }
            other => panic!("expected the panic, got {other:?}"),
        }
        eventually("the sleeper to be cancelled", || {
            drops.load(Ordering::SeqCst) == 1
        });
    };
    within(30, check);
    within(30, move || stackful::run(check));
}

#[test]
fn try_gather_turns_a_cancellation_into_the_error_type() {
    stackful::run(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(Event::new());
        let victim = spawn_sleeper(&drops, &started);
        started.wait();
        victim.cancel();
        match try_gather([victim]) {
            Err(Error::Join(e)) if e.is_cancelled() => {}
            other => panic!("expected the cancellation, got {other:?}"),
        }
    });
}

#[test]
fn a_cancelled_try_gather_cancels_its_green_threads() {
    let check = || {
        let drops = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(Event::new());
        let handles = [spawn_sleeper(&drops, &started)];
        started.wait();
        let outcome = timeout(Duration::from_millis(10), || try_gather(handles));
        assert!(outcome.is_err());
        eventually("the sleeper to be cancelled", || {
            drops.load(Ordering::SeqCst) == 1
        });
    };
    within(30, check);
    within(30, move || stackful::run(check));
}

// ---- abort_on_drop ----

#[test]
fn dropping_an_abort_on_drop_guard_cancels_the_green_thread() {
    let check = || {
        let drops = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(Event::new());
        let guard = spawn_sleeper(&drops, &started).abort_on_drop();
        started.wait();
        assert!(!guard.is_finished());
        drop(guard);
        eventually("the green thread to be cancelled", || {
            drops.load(Ordering::SeqCst) == 1
        });
    };
    within(30, check);
    within(30, move || stackful::run(check));
}

#[test]
fn a_plain_handle_dropped_instead_detaches() {
    // The control for the test above: the same green thread, dropped as a
    // plain handle, runs on.
    stackful::run(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(Event::new());
        let gate = Arc::new(Event::new());
        let done = Arc::new(Event::new());
        let (g, d, s, guard) = (
            gate.clone(),
            done.clone(),
            started.clone(),
            DropCounter(drops.clone()),
        );
        let guarded = stackful::spawn(move || {
            let _guard = guard;
            s.set();
            g.wait();
            d.set();
        })
        .abort_on_drop();
        started.wait();
        drop(guarded.into_handle()); // detached, not cancelled
        gate.set();
        done.wait();
        eventually("the green thread to end", || {
            drops.load(Ordering::SeqCst) == 1
        });
    });
}

#[test]
fn an_abort_on_drop_guard_joins_and_reports_like_a_handle() {
    let check = || {
        let guard = task::Builder::new()
            .name("guarded")
            .spawn(|| 6 * 7)
            .unwrap()
            .abort_on_drop();
        assert_eq!(guard.name(), Some("guarded"));
        let id = guard.id();
        let debug = format!("{guard:?}");
        assert!(debug.starts_with("AbortOnDrop"), "{debug}");
        assert_eq!(guard.join().unwrap(), 42);
        assert!(id.as_u64() > 0);

        let done = Arc::new(Event::new());
        let d = done.clone();
        let guard = stackful::spawn(move || d.set()).abort_on_drop();
        done.wait();
        eventually("it to end", || guard.is_finished());
        guard.cancel(); // too late: it keeps its value
        assert!(guard.join().is_ok());

        let guard = stackful::spawn(|| sleep(Duration::from_secs(3600))).abort_on_drop();
        guard.cancel();
        assert!(guard.join().unwrap_err().is_cancelled());
    };
    within(30, check);
    within(30, move || stackful::run(check));
}

#[test]
fn an_owner_cancelled_in_join_cancels_the_guarded_green_thread() {
    stackful::run(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(Event::new());
        let (d, s) = (drops.clone(), started.clone());
        let waiting = Arc::new(Event::new());
        let w = waiting.clone();
        let owner = stackful::spawn(move || {
            let guard = spawn_sleeper(&d, &s).abort_on_drop();
            s.wait();
            w.set();
            let _ = guard.join();
        });
        waiting.wait();
        owner.cancel();
        assert!(owner.join().unwrap_err().is_cancelled());
        eventually("the guarded green thread to be cancelled", || {
            drops.load(Ordering::SeqCst) == 1
        });
    });
}

#[test]
fn a_guard_dropped_in_an_unwind_cancels_an_unstarted_thread_whose_closure_panics_on_drop() {
    // One worker, held by the owner: the guarded green thread never starts,
    // and the guard's drop in the owner's unwind drops its closure, whose
    // panic must not abort the process.
    let rt = stackful::Runtime::builder().workers(1).build().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let owner = rt.spawn(move || {
        let bomb = PanicOnDrop;
        let _guard = stackful::spawn(move || {
            let _bomb = bomb;
            r.fetch_add(1, Ordering::SeqCst);
        })
        .abort_on_drop();
        panic!("owner failed");
    });
    let err = within(30, move || owner.join().unwrap_err());
    assert_eq!(panic_text(err.into_panic()), "owner failed");
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn the_combinators_take_abort_on_drop_guards() {
    stackful::run(|| {
        let guards: Vec<AbortOnDrop<u32>> = (1..=3)
            .map(|i| stackful::spawn(move || i).abort_on_drop())
            .collect();
        assert_eq!(stackful::gather(guards).unwrap(), [1, 2, 3]);

        // `wait` hands the pending guards back; dropping them cancels.
        let drops = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(Event::new());
        let slow = spawn_sleeper(&drops, &started).abort_on_drop();
        let fast = stackful::spawn(|| Ok(1)).abort_on_drop();
        let (done, pending) = stackful::wait([slow, fast], ReturnWhen::FirstCompleted);
        assert_eq!(done.len(), 1);
        assert_eq!(pending.len(), 1);
        drop(pending);
        eventually("the pending one to be cancelled", || {
            drops.load(Ordering::SeqCst) == 1
        });

        // So does dropping an `as_completed` over them.
        let started = Arc::new(Event::new());
        let mut rest = stackful::as_completed([
            stackful::spawn(|| Ok(2)).abort_on_drop(),
            spawn_sleeper(&drops, &started).abort_on_drop(),
        ]);
        assert_eq!(rest.next().unwrap().unwrap().unwrap(), 2);
        drop(rest);
        eventually("the unyielded one to be cancelled", || {
            drops.load(Ordering::SeqCst) == 2
        });
    });
}

// ---- scoped handles ----

#[test]
fn gather_takes_scoped_handles_that_borrow_a_local() {
    let check = || {
        let words = [
            "green".to_string(),
            "threads".to_string(),
            "borrow".to_string(),
        ];
        let mut seen = vec![0; 3];
        let lengths = stackful::scope(|s| {
            let handles: Vec<_> = words
                .iter()
                .zip(seen.iter_mut())
                .map(|(w, slot)| {
                    s.spawn(move || {
                        stackful::yield_now();
                        *slot = 1;
                        w.len()
                    })
                })
                .collect();
            stackful::gather(handles)
        });
        assert_eq!(lengths.unwrap(), [5, 7, 6]);
        assert_eq!(seen, [1, 1, 1]);
    };
    within(30, check);
    within(30, move || stackful::run(check));
}

#[test]
fn join_all_wait_and_as_completed_take_scoped_handles() {
    let check = || {
        let base = [10, 20, 30];
        let gates = gates(3);
        stackful::scope(|s| {
            let all = stackful::join_all(base.iter().map(|b| s.spawn(move || b + 1)));
            assert_eq!(
                all.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
                [11, 21, 31]
            );

            let spawn_gated = |i: usize| {
                let gates = &gates;
                let base = &base;
                s.spawn(move || {
                    gates[i].wait();
                    base[i]
                })
            };
            let handles: Vec<_> = (0..3).map(spawn_gated).collect();
            gates[1].set();
            let (done, pending) = stackful::wait(handles, ReturnWhen::FirstCompleted);
            assert_eq!(
                done.into_iter()
                    .map(|h| h.join().unwrap())
                    .collect::<Vec<_>>(),
                [20]
            );
            assert_eq!(pending.len(), 2);

            let mut order = stackful::as_completed(pending);
            gates[2].set();
            assert_eq!(order.next().unwrap().unwrap(), 30);
            gates[0].set();
            assert_eq!(order.next().unwrap().unwrap(), 10);
            assert!(order.next().is_none());
        });
    };
    within(30, check);
    within(30, move || stackful::run(check));
}

#[test]
fn try_gather_of_scoped_handles_cancels_the_rest_and_the_scope_waits_for_them() {
    let check = || {
        let drops = AtomicUsize::new(0);
        let started = Event::new();
        let outcome = stackful::scope(|s| {
            let sleeper = s.spawn(|| {
                struct Count<'a>(&'a AtomicUsize);
                impl Drop for Count<'_> {
                    fn drop(&mut self) {
                        self.0.fetch_add(1, Ordering::SeqCst);
                    }
                }
                let _count = Count(&drops);
                started.set();
                sleep(Duration::from_secs(3600));
                Ok(0)
            });
            let started = &started;
            let failing = s.spawn(move || {
                started.wait();
                Err(Error::Failed(3))
            });
            try_gather([sleeper, failing])
        });
        assert!(matches!(outcome, Err(Error::Failed(3))));
        // No `eventually`: the scope has waited for the cancelled sleeper.
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    };
    within(30, check);
    within(30, move || stackful::run(check));
}

#[test]
fn a_panic_gathered_from_a_scope_is_claimed_and_not_raised_again() {
    stackful::run(|| {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            stackful::scope(|s| {
                let fine = s.spawn(|| 1);
                let failing = s.spawn(|| -> i32 { panic!("scoped member failed") });
                stackful::gather([fine, failing])
            })
        }));
        let err = outcome
            .expect("the scope does not re-raise a claimed panic")
            .unwrap_err();
        assert_eq!(panic_text(err.into_panic()), "scoped member failed");
    });
}

#[test]
fn join_all_refuses_a_green_thread_joining_itself() {
    stackful::run(|| {
        let own: Arc<Mutex<Option<stackful::JoinHandle<()>>>> = Arc::new(Mutex::new(None));
        let gate = Arc::new(Event::new());
        let (tx, rx) = stackful::sync::channel(1);
        let (o, g) = (own.clone(), gate.clone());
        let h = stackful::spawn(move || {
            g.wait();
            let me = o.lock().unwrap().take().unwrap();
            let caught = panic::catch_unwind(AssertUnwindSafe(|| stackful::join_all([me])));
            tx.send(panic_text(caught.unwrap_err())).unwrap();
        });
        *own.lock().unwrap() = Some(h);
        gate.set();
        let message = rx.recv().unwrap();
        assert!(message.contains("tried to join itself"), "{message}");
    });
}
