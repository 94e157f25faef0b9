//! Cancellation tokens: `run` as a cancel scope, `cancelled`, child tokens,
//! on green threads and on plain threads.

mod common;

use common::{DropCounter, panic_text, within};

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use stackful::cancel::CancellationToken;
use stackful::sync::Event;
use stackful::{Cancelled, Elapsed, Generator, GeneratorState, shield, sleep, spawn, timeout};

const HOUR: Duration = Duration::from_secs(3600);

/// Cancels `token` once `ready` is set, from a green thread.
fn cancel_when(ready: &Arc<Event>, token: &CancellationToken) -> stackful::JoinHandle<()> {
    let (ready, token) = (ready.clone(), token.clone());
    spawn(move || {
        ready.wait();
        token.cancel();
    })
}

#[test]
fn another_green_thread_cancels_a_sleeping_body_which_unwinds_and_cleans_up() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let start = Instant::now();
    let outcome = within(60, move || {
        stackful::run(move || {
            let token = CancellationToken::new();
            let inside = Arc::new(Event::new());
            let canceller = cancel_when(&inside, &token);
            let outcome = token.run(|| {
                let _cleanup = DropCounter(d);
                inside.set();
                sleep(HOUR);
                "slept an hour"
            });
            canceller.join().unwrap();
            outcome.map_err(|e| e.to_string())
        })
    });
    assert_eq!(outcome, Err("cancelled by a CancellationToken".to_string()));
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "the body's destructors ran"
    );
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_token_cancelled_before_run_returns_at_once_without_running_the_body() {
    let ran = AtomicBool::new(false);
    let token = CancellationToken::new();
    token.cancel();
    let outcome = token.run(|| ran.store(true, Ordering::SeqCst));
    assert!(outcome.is_err());
    assert!(!ran.load(Ordering::SeqCst), "the body must not run");
    // The same on a green thread, and through a child born cancelled.
    let child = token.child_token();
    let ran_green = stackful::run(|| {
        let ran = AtomicBool::new(false);
        let outcome = child.run(|| ran.store(true, Ordering::SeqCst));
        (outcome.is_err(), ran.load(Ordering::SeqCst))
    });
    assert_eq!(ran_green, (true, false));
}

#[test]
fn a_body_that_is_not_cancelled_returns_its_value() {
    let token = CancellationToken::new();
    let value = stackful::run(|| {
        token.run(|| {
            sleep(Duration::from_millis(1));
            stackful::yield_now();
            41 + 1
        })
    });
    assert_eq!(value.unwrap(), 42);
    assert_eq!(token.run(|| "plain thread").unwrap(), "plain thread");
    assert!(!token.is_cancelled());
}

#[test]
fn on_a_plain_thread_a_cancel_from_another_thread_unwinds_a_sleep_and_a_recv() {
    within(60, || {
        for wait in ["sleep", "recv"] {
            let token = CancellationToken::new();
            let (entered_tx, entered_rx) = mpsc::channel();
            let canceller = {
                let token = token.clone();
                std::thread::spawn(move || {
                    entered_rx.recv().unwrap();
                    token.cancel();
                })
            };
            let (_tx, rx) = stackful::sync::channel::<u32>(1);
            let drops = Arc::new(AtomicUsize::new(0));
            let outcome = token.run(|| {
                let _cleanup = DropCounter(drops.clone());
                entered_tx.send(()).unwrap();
                match wait {
                    "sleep" => sleep(HOUR),
                    _ => {
                        let _ = rx.recv();
                    }
                }
            });
            canceller.join().unwrap();
            assert!(outcome.is_err(), "{wait} was not cut off");
            assert_eq!(drops.load(Ordering::SeqCst), 1, "{wait}");
        }
    });
}

#[test]
fn a_token_cancelled_inside_its_own_body_raises_at_the_next_suspension_point() {
    let (reached, outcome) = stackful::run(|| {
        let token = CancellationToken::new();
        let mut reached = Vec::new();
        let outcome = token.run(|| {
            token.cancel();
            reached.push("after cancel");
            stackful::yield_now();
            reached.push("after yield");
        });
        (reached, outcome.is_err())
    });
    assert_eq!(reached, ["after cancel"]);
    assert!(outcome);
    // On a plain thread, at a sleep; and a body that never suspends again
    // returns normally, as with a timeout.
    let token = CancellationToken::new();
    assert!(
        token
            .run(|| {
                token.cancel();
                sleep(HOUR);
            })
            .is_err()
    );
    let token = CancellationToken::new();
    assert_eq!(token.run(|| token.cancel()).ok(), Some(()));
}

#[test]
fn a_shield_inside_run_defers_the_token_until_its_body_returns() {
    let (shielded_work_done, after_shield, outcome) = within(60, || {
        stackful::run(|| {
            let token = CancellationToken::new();
            let inside = Arc::new(Event::new());
            let canceller = cancel_when(&inside, &token);
            let mut done = false;
            let mut after = false;
            let outcome = token.run(|| {
                shield(|| {
                    inside.set();
                    // Long enough for the cancel to come meanwhile.
                    while !token.is_cancelled() {
                        sleep(Duration::from_millis(1));
                    }
                    sleep(Duration::from_millis(20)); // not cut off
                    done = true;
                });
                sleep(HOUR); // cut off here
                after = true;
            });
            canceller.join().unwrap();
            (done, after, outcome.is_err())
        })
    });
    assert!(shielded_work_done, "the shielded body ran to its end");
    assert!(!after_shield, "cut off at the first wait after the shield");
    assert!(outcome);
}

#[test]
fn an_outer_timeout_passes_through_run_and_an_inner_one_is_caught_inside() {
    stackful::run(|| {
        let token = CancellationToken::new();
        // An expiring timeout around `run` unwinds through it untouched.
        let drops = Arc::new(AtomicUsize::new(0));
        let outer = timeout(Duration::from_millis(20), || {
            token.run(|| {
                let _cleanup = DropCounter(drops.clone());
                sleep(HOUR);
            })
        });
        assert_eq!(outer.map(|r| r.is_ok()), Err(Elapsed::new()));
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert!(!token.is_cancelled());
        // A timeout inside `run` is caught by its own `timeout`.
        let inner = token.run(|| timeout(Duration::from_millis(5), || sleep(HOUR)));
        assert_eq!(inner.unwrap(), Err(Elapsed::new()));
        // A token that fires inside a timeout is caught by its own `run`.
        let inside = Arc::new(Event::new());
        let canceller = cancel_when(&inside, &token);
        let nested = timeout(HOUR, || {
            token.run(|| {
                inside.set();
                sleep(HOUR);
            })
        });
        canceller.join().unwrap();
        assert!(matches!(nested, Ok(Err(_))), "the token's run caught it");
    });
}

#[test]
fn nested_tokens_each_catch_only_their_own_cancel() {
    stackful::run(|| {
        let outer = CancellationToken::new();
        let inner = CancellationToken::new();
        // The inner token fires: the inner run returns Err, the outer body
        // goes on.
        let inside = Arc::new(Event::new());
        let canceller = cancel_when(&inside, &inner);
        let result = outer.run(|| {
            let r = inner.run(|| {
                inside.set();
                sleep(HOUR);
            });
            (r.is_err(), "outer body went on")
        });
        canceller.join().unwrap();
        assert_eq!(result.unwrap(), (true, "outer body went on"));
        // The outer token fires: it passes through the inner run.
        let inner = CancellationToken::new();
        let inside = Arc::new(Event::new());
        let canceller = cancel_when(&inside, &outer);
        let mut inner_returned = false;
        let result = outer.run(|| {
            let _ = inner.run(|| {
                inside.set();
                sleep(HOUR);
            });
            inner_returned = true;
        });
        canceller.join().unwrap();
        assert!(result.is_err());
        assert!(
            !inner_returned,
            "the inner run did not catch the outer cancel"
        );
    });
}

#[test]
fn the_green_threads_own_cancellation_passes_through_run() {
    stackful::run(|| {
        let token = CancellationToken::new();
        let inside = Arc::new(Event::new());
        let caught = Arc::new(AtomicBool::new(false));
        let handle = {
            let (token, inside, caught) = (token.clone(), inside.clone(), caught.clone());
            spawn(move || {
                let r = token.run(|| {
                    inside.set();
                    sleep(HOUR);
                });
                caught.store(true, Ordering::SeqCst); // not reached
                r.is_err()
            })
        };
        inside.wait();
        handle.cancel();
        let err = handle.join().unwrap_err();
        assert!(err.is_cancelled());
        assert!(!caught.load(Ordering::SeqCst));
        assert!(!token.is_cancelled());
    });
}

#[test]
fn a_cancel_during_a_panics_unwind_is_deferred_and_the_panic_goes_on() {
    /// Waits for the cancel during the unwind, then sleeps: not cut off.
    struct SlowDrop<'a>(&'a Event, &'a CancellationToken, &'a AtomicBool);
    impl Drop for SlowDrop<'_> {
        fn drop(&mut self) {
            self.0.set();
            while !self.1.is_cancelled() {
                sleep(Duration::from_millis(1));
            }
            sleep(Duration::from_millis(10));
            self.2.store(true, Ordering::SeqCst);
        }
    }
    within(60, || {
        stackful::run(|| {
            let token = CancellationToken::new();
            let unwinding = Arc::new(Event::new());
            let canceller = cancel_when(&unwinding, &token);
            let finished = AtomicBool::new(false);
            let caught = panic::catch_unwind(AssertUnwindSafe(|| {
                token.run(|| {
                    let _slow = SlowDrop(&unwinding, &token, &finished);
                    panic!("boom");
                })
            }));
            canceller.join().unwrap();
            let payload = caught.expect_err("the panic passes through run");
            assert_eq!(panic_text(payload), "boom");
            assert!(finished.load(Ordering::SeqCst), "the destructor finished");
        });
    });
}

#[test]
fn child_tokens_follow_their_parent_but_not_the_other_way() {
    let parent = CancellationToken::new();
    let child = parent.child_token();
    let grandchild = child.child_token();
    let sibling = parent.child_token();
    sibling.cancel();
    assert!(!parent.is_cancelled() && !child.is_cancelled());
    // A grandparent still reaches a grandchild once the parent's handles are
    // gone.
    drop(child);
    let waiter = {
        let grandchild = grandchild.clone();
        std::thread::spawn(move || grandchild.cancelled())
    };
    parent.cancel();
    assert!(grandchild.is_cancelled());
    waiter.join().unwrap();
    assert!(parent.child_token().is_cancelled(), "born cancelled");
}

#[test]
fn a_parents_cancel_cuts_off_a_run_of_its_child() {
    let outcome = within(60, || {
        stackful::run(|| {
            let parent = CancellationToken::new();
            let child = parent.child_token();
            let inside = Arc::new(Event::new());
            let canceller = cancel_when(&inside, &parent);
            let outcome = child.run(|| {
                inside.set();
                sleep(HOUR);
            });
            canceller.join().unwrap();
            outcome.is_err()
        })
    });
    assert!(outcome);
}

#[test]
fn cancelled_waits_on_green_and_plain_threads_and_is_a_cancellation_point() {
    within(60, || {
        let token = CancellationToken::new();
        let plain = {
            let token = token.clone();
            std::thread::spawn(move || token.cancelled())
        };
        stackful::run(|| {
            let started = stackful::sync::WaitGroup::new();
            let waiters: Vec<_> = (0..10)
                .map(|_| {
                    let (token, started) = (token.clone(), started.clone());
                    spawn(move || {
                        drop(started);
                        token.cancelled();
                        token.is_cancelled()
                    })
                })
                .collect();
            started.wait();
            // Not cancelled yet: the wait is cut off by a timeout.
            let cut = timeout(Duration::from_millis(10), || token.cancelled());
            assert_eq!(cut, Err(Elapsed::new()));
            token.cancel();
            assert!(stackful::gather(waiters).unwrap().into_iter().all(|c| c));
            token.cancelled(); // returns at once
        });
        plain.join().unwrap();
    });
}

#[test]
fn a_generator_carries_the_token_scope_to_the_context_that_resumes_it() {
    within(60, || {
        let token = CancellationToken::new();
        let t = token.clone();
        let mut g = Generator::new(move |co, ()| {
            t.run(|| {
                co.yield_(());
                sleep(HOUR); // in whatever context resumed it
            })
            .is_err()
        });
        // Started on this plain thread, which the token would wake...
        assert_eq!(g.resume(), GeneratorState::Yielded(()));
        // ...but resumed in a green thread, which the token must wake now.
        stackful::run(|| {
            let inside = Arc::new(Event::new());
            let canceller = {
                let (inside, token) = (inside.clone(), token.clone());
                spawn(move || {
                    inside.wait();
                    sleep(Duration::from_millis(10)); // let the body park
                    token.cancel();
                })
            };
            inside.set();
            assert_eq!(g.resume(), GeneratorState::Complete(true));
            canceller.join().unwrap();
        });
    });
}

#[test]
fn a_cancel_racing_with_run_returning_gives_ok_or_err_and_cleans_up_once() {
    within(120, || {
        stackful::run(|| {
            let drops = Arc::new(AtomicUsize::new(0));
            let (mut ok, mut err, mut started) = (0, 0, 0);
            for i in 0..300u64 {
                let token = CancellationToken::new();
                let canceller = {
                    let token = token.clone();
                    spawn(move || {
                        for _ in 0..i % 7 {
                            stackful::yield_now();
                        }
                        token.cancel();
                    })
                };
                let outcome = token.run(|| {
                    started += 1;
                    let _cleanup = DropCounter(drops.clone());
                    for _ in 0..3 {
                        stackful::yield_now();
                    }
                });
                canceller.join().unwrap();
                match outcome {
                    Ok(()) => ok += 1,
                    Err(_) => err += 1,
                }
            }
            // A cancel that came before `run` started skips the body.
            assert_eq!(drops.load(Ordering::SeqCst), started);
            assert_eq!(ok + err, 300);
            assert!(ok <= started);
        });
    });
}

#[test]
fn one_long_lived_token_run_many_times_from_many_green_threads() {
    let token = CancellationToken::new();
    let total = stackful::run(|| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                let token = token.clone();
                spawn(move || (0..200).map(|i| token.run(|| i % 2).unwrap()).sum::<u32>())
            })
            .collect();
        stackful::gather(handles).unwrap().into_iter().sum::<u32>()
    });
    assert_eq!(total, 20 * 100);
}

#[test]
fn the_error_is_a_plain_value_harmless_to_keep_send_or_drop() {
    fn assert_send_sync<T: Send + Sync + 'static + std::error::Error>(_: &T) {}
    let token = CancellationToken::new();
    token.cancel();
    let err: Cancelled = token.run(|| ()).unwrap_err();
    assert_send_sync(&err);
    assert!(Cancelled::is(&err));
    assert_eq!(err.to_string(), "cancelled by a CancellationToken");
    assert_eq!(
        format!("{err:?}"),
        "Cancelled(cancelled by a CancellationToken)"
    );
    // Kept across waits, and timeouts still work meanwhile; then dropped on
    // another thread.
    let err = stackful::run(move || {
        let cut = timeout(Duration::from_millis(5), || sleep(HOUR));
        assert_eq!(cut, Err(Elapsed::new()));
        let token = CancellationToken::new();
        let inside = Arc::new(Event::new());
        let canceller = cancel_when(&inside, &token);
        let again = token.run(|| {
            inside.set();
            sleep(HOUR);
        });
        canceller.join().unwrap();
        assert!(again.is_err());
        err
    });
    std::thread::spawn(move || drop(err)).join().unwrap();
}

#[test]
fn tokens_debug_print_their_state_and_default_to_not_cancelled() {
    let token = CancellationToken::default();
    assert_eq!(
        format!("{token:?}"),
        "CancellationToken { is_cancelled: false }"
    );
    token.cancel();
    token.cancel(); // twice: nothing more
    assert_eq!(
        format!("{token:?}"),
        "CancellationToken { is_cancelled: true }"
    );
}

#[test]
fn a_long_chain_of_children_drops_without_recursing() {
    // Each level keeps its parent alive; dropping the last child drops the
    // whole chain. On a green thread's small stack, a recursive drop would
    // overflow.
    stackful::run(|| {
        let root = CancellationToken::new();
        let mut leaf = root.child_token();
        for _ in 0..100_000 {
            leaf = leaf.child_token();
        }
        drop(root);
        drop(leaf);
    });
    // And a cancel of a long chain reaches its end.
    stackful::run(|| {
        let root = CancellationToken::new();
        let mut leaf = root.child_token();
        for _ in 0..100_000 {
            leaf = leaf.child_token();
        }
        root.cancel();
        assert!(leaf.is_cancelled());
    });
}
