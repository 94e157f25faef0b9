//! The runtime: `run`, explicit runtimes, shutdown, several runs at once,
//! bad input, and the soundness rule.

mod common;

use common::{DropCounter, eventually, panic_text};

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stackful::{Runtime, sleep};

#[test]
fn smoke() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    assert_eq!(rt.run(|| rt.spawn(|| 21).join().unwrap() * 2), 42);
}

#[test]
fn run_may_borrow_and_use_values_that_are_not_send() {
    let local = Rc::new(Cell::new(1));
    let mut text = String::from("borrowed");
    let out = stackful::run(|| {
        local.set(local.get() + 1);
        sleep(Duration::from_millis(1)); // the Rc stays on this thread across the switch
        text.push('!');
        local.get()
    });
    assert_eq!(out, 2);
    assert_eq!(text, "borrowed!");
}

#[test]
fn run_cancels_and_awaits_what_is_left_when_it_returns() {
    let drops = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let (d, s) = (drops.clone(), started.clone());
    let begin = Instant::now();
    stackful::run(move || {
        for _ in 0..3 {
            let (d, s) = (d.clone(), s.clone());
            // Detached: the handle is dropped at once.
            drop(stackful::spawn(move || {
                let _g = DropCounter(d.clone());
                s.fetch_add(1, Ordering::SeqCst);
                // A grandchild: shutdown is transitive.
                let s2 = s.clone();
                drop(stackful::spawn(move || {
                    let _g = DropCounter(d);
                    s2.fetch_add(1, Ordering::SeqCst);
                    sleep(Duration::from_secs(3600));
                }));
                sleep(Duration::from_secs(3600));
            }));
        }
        // Children and grandchildren have all started (a green thread
        // cancelled before it starts never builds its guard).
        eventually("the green threads to start", || {
            s.load(Ordering::SeqCst) == 6
        });
    });
    assert_eq!(
        drops.load(Ordering::SeqCst),
        6,
        "every green thread unwound before run returned"
    );
    assert!(begin.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_panic_in_run_propagates_after_the_shutdown() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let caught = panic::catch_unwind(AssertUnwindSafe(|| {
        stackful::run(move || {
            // The panic comes once the child holds its guard (one cancelled
            // before it starts never makes it): ordered by an event.
            let guarded = Arc::new(stackful::sync::Event::new());
            let g = guarded.clone();
            drop(stackful::spawn(move || {
                let _g = DropCounter(d);
                g.set();
                sleep(Duration::from_secs(3600));
            }));
            guarded.wait();
            panic!("main failed");
        })
    }));
    assert_eq!(panic_text(caught.unwrap_err()), "main failed");
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn several_runs_at_once_shut_down_only_their_own_green_threads() {
    let a_alive = Arc::new(AtomicBool::new(false));
    let a_survived_b = Arc::new(AtomicBool::new(false));
    let b_done = Arc::new(AtomicBool::new(false));
    let (alive, survived, done) = (a_alive.clone(), a_survived_b.clone(), b_done.clone());
    let a = std::thread::spawn(move || {
        stackful::run(move || {
            let (alive2, survived2, done2) = (alive.clone(), survived.clone(), done.clone());
            let child = stackful::spawn(move || {
                alive2.store(true, Ordering::SeqCst);
                eventually("run B to finish", || done2.load(Ordering::SeqCst));
                sleep(Duration::from_millis(20)); // B's shutdown is over by now
                survived2.store(true, Ordering::SeqCst);
            });
            child.join().unwrap();
        })
    });
    let (alive, done) = (a_alive.clone(), b_done.clone());
    let b = std::thread::spawn(move || {
        stackful::run(|| {
            eventually("run A's child to start", || alive.load(Ordering::SeqCst));
            drop(stackful::spawn(|| sleep(Duration::from_secs(3600)))); // cancelled by B
        });
        done.store(true, Ordering::SeqCst);
    });
    b.join().unwrap();
    a.join().unwrap();
    assert!(a_survived_b.load(Ordering::SeqCst));
}

#[test]
fn many_runs_in_parallel_threads() {
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                stackful::run(|| {
                    let hs: Vec<_> = (0..50)
                        .map(|i| stackful::spawn(move || t * 1000 + i))
                        .collect();
                    stackful::gather(hs).unwrap().iter().sum::<usize>()
                })
            })
        })
        .collect();
    for (t, th) in threads.into_iter().enumerate() {
        assert_eq!(th.join().unwrap(), t * 50_000 + (0..50).sum::<usize>());
    }
}

#[test]
fn run_inside_a_green_thread_is_refused_clearly() {
    let err = stackful::spawn(|| stackful::run(|| 1)).join().unwrap_err();
    assert!(err.is_panic());
    let text = panic_text(err.into_panic());
    assert!(
        text.contains("stackful::run called from inside a green thread"),
        "{text}"
    );
    assert!(text.contains("join"), "{text}");
}

#[test]
fn spawning_during_shutdown_is_an_error() {
    let report = Arc::new(Mutex::new(None::<String>));
    let r = report.clone();
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    stackful::run(move || {
        drop(stackful::spawn(move || {
            s.store(true, Ordering::SeqCst);
            // Swallow the shutdown's cancellation (don't do this at home)...
            let _ = panic::catch_unwind(|| sleep(Duration::from_secs(3600)));
            // ...and try to spawn while the run shuts down, shielded, so the
            // cancellation is not raised again there.
            let err = stackful::shield(|| stackful::task::Builder::new().spawn(|| ())).unwrap_err();
            *r.lock().unwrap() = Some(err.to_string());
        }));
        eventually("the child to start", || started.load(Ordering::SeqCst));
    });
    let text = report.lock().unwrap().take().expect("the child reported");
    assert!(text.contains("shutting down"), "{text}");
}

/// Issue 13, item 11: a green thread still running (not suspended) when its
/// `run` shuts down, which then spawns, unwinds with the pending
/// cancellation rather than panicking with a spawn error.
#[test]
fn regression_a_spawn_during_shutdown_raises_the_pending_cancellation() {
    let seen = Arc::new(Mutex::new(None::<bool>));
    let s = seen.clone();
    let started = Arc::new(AtomicBool::new(false));
    let st = started.clone();
    stackful::run(move || {
        // On a pool worker: on `run`'s thread it would never let the main
        // body run again.
        drop(common::spawn_on_pool(move || {
            st.store(true, Ordering::SeqCst);
            // Never suspends: spawns until the shutdown stops it.
            loop {
                let outcome = panic::catch_unwind(|| drop(stackful::spawn(|| ())));
                if let Err(payload) = outcome {
                    *s.lock().unwrap() = Some(stackful::Cancelled::is(&*payload));
                    panic::resume_unwind(payload);
                }
            }
        }));
        eventually("the spawner to start", || started.load(Ordering::SeqCst));
    });
    assert_eq!(
        *seen.lock().unwrap(),
        Some(true),
        "the spawn raised the cancellation, not a panic of its own"
    );
}

#[test]
fn builder_rejects_bad_input_with_clear_messages() {
    let cases: [(stackful::runtime::Builder, &str); 6] = [
        (Runtime::builder().workers(0), "at least 1 worker"),
        (Runtime::builder().stack_size(1), "size of 1 byte:"),
        (Runtime::builder().stack_size(2), "size of 2 bytes:"),
        (
            Runtime::builder().stack_size(0),
            "invalid green thread stack size",
        ),
        (
            Runtime::builder().stack_size(usize::MAX),
            "between 16 KiB and 1024 MiB",
        ),
        (
            Runtime::builder().max_blocking_threads(0),
            "max_blocking_threads(0)",
        ),
    ];
    for (builder, needle) in cases {
        let err = builder.build().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains(needle), "{err}");
    }
}

#[test]
fn dropping_a_runtime_cancels_its_green_threads() {
    let drops = Arc::new(AtomicUsize::new(0));
    let guarded = Arc::new(AtomicUsize::new(0));
    let rt = Runtime::builder().workers(2).build().unwrap();
    for _ in 0..4 {
        let (d, g) = (drops.clone(), guarded.clone());
        drop(rt.spawn(move || {
            let _g = DropCounter(d);
            g.fetch_add(1, Ordering::SeqCst);
            sleep(Duration::from_secs(3600));
        }));
    }
    let h = rt.spawn(|| sleep(Duration::from_secs(3600)));
    // Each holds its guard (one cancelled before it starts never makes it).
    eventually("the green threads to start", || {
        guarded.load(Ordering::SeqCst) == 4
    });
    drop(rt);
    assert_eq!(drops.load(Ordering::SeqCst), 4);
    assert!(h.join().unwrap_err().is_cancelled());
}

/// The soundness rule: a started green thread never changes OS thread, even
/// while idle workers steal and the load shifts.
#[test]
fn a_started_green_thread_never_changes_os_thread() {
    let rt = Runtime::builder().workers(4).build().unwrap();
    let moved = Arc::new(AtomicUsize::new(0));
    let threads_seen = Arc::new(Mutex::new(std::collections::HashSet::new()));
    rt.run(|| {
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let (moved, seen) = (moved.clone(), threads_seen.clone());
                stackful::spawn(move || {
                    // Hog the worker briefly so that the idle ones must steal.
                    std::thread::sleep(Duration::from_millis(2));
                    let home = std::thread::current().id();
                    seen.lock().unwrap().insert(home);
                    for round in 0..2_000 {
                        if round % 100 == i % 100 {
                            sleep(Duration::from_micros(50));
                        } else {
                            stackful::yield_now();
                        }
                        if round % 500 == 0 {
                            // New work appears mid-flight, for idle workers to steal.
                            drop(stackful::spawn(|| std::hint::black_box(0)));
                        }
                        if std::thread::current().id() != home {
                            moved.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        stackful::join_all(handles)
            .into_iter()
            .for_each(|r| r.unwrap());
    });
    assert_eq!(
        moved.load(Ordering::SeqCst),
        0,
        "a green thread resumed on another OS thread"
    );
    assert!(
        threads_seen.lock().unwrap().len() > 1,
        "stealing spread the green threads out"
    );
}

/// A long blocking call, offloaded, does not stop a ticker on the same worker.
#[test]
fn a_blocking_call_does_not_stop_a_ticker_on_the_same_worker() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let ticks = Arc::new(AtomicUsize::new(0));
    let during = rt.run(|| {
        let t = ticks.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let ticker = stackful::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                t.fetch_add(1, Ordering::SeqCst);
                sleep(Duration::from_millis(10));
            }
        });
        let t = ticks.clone();
        let blocker = stackful::spawn(move || {
            let before = t.load(Ordering::SeqCst);
            // The blocking call lasts until the ticker has ticked 5 times,
            // or 10 s (a count in a fixed 200 ms window fell short on a
            // loaded machine). A ticker stopped by the call makes it last
            // the 10 s and tick no more.
            let t2 = t.clone();
            stackful::spawn_blocking(move || {
                let start = Instant::now();
                while t2.load(Ordering::SeqCst) - before < 5
                    && start.elapsed() < Duration::from_secs(10)
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
            t.load(Ordering::SeqCst) - before
        });
        let during = blocker.join().unwrap();
        stop.store(true, Ordering::SeqCst);
        ticker.join().unwrap();
        during
    });
    assert!(
        during >= 5,
        "the ticker ticked only {during} times during the blocking call"
    );
}

#[test]
fn a_worker_keeps_other_green_threads_going_while_one_waits() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let order = rt.run(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        // `a` sleeps (in short naps) until `b` has run, and `b` runs once
        // `a` has started: ordered by events, not by sleeps of different
        // lengths. A sleep that held the worker would keep `b` from
        // running and fail `eventually`.
        let a_started = Arc::new(stackful::sync::Event::new());
        let b_done = Arc::new(stackful::sync::Event::new());
        let (l1, started, done) = (log.clone(), a_started.clone(), b_done.clone());
        let a = stackful::spawn(move || {
            l1.lock().unwrap().push("a start");
            started.set();
            eventually("b to run while a sleeps", || done.is_set());
            l1.lock().unwrap().push("a end");
        });
        let (l2, started, done) = (log.clone(), a_started.clone(), b_done.clone());
        let b = stackful::spawn(move || {
            started.wait();
            l2.lock().unwrap().push("b");
            done.set();
        });
        a.join().unwrap();
        b.join().unwrap();
        Arc::try_unwrap(log).unwrap().into_inner().unwrap()
    });
    assert_eq!(order, ["a start", "b", "a end"]);
}

/// Only started green threads hold a stack (two memory mappings), so only
/// they count against `vm.max_map_count`. A burst of spawns well past the
/// default limit of about 31 700 must succeed while few of them have started.
#[test]
fn a_burst_of_unstarted_spawns_is_not_refused_by_the_mapping_limit() {
    const N: u64 = 40_000;
    let rt = Runtime::builder().workers(1).build().unwrap();
    let total = rt.run(|| {
        // This green thread holds the only worker until it returns, so none
        // of the green threads it spawns can start meanwhile.
        let handles = stackful::spawn(|| {
            (0..N)
                .map(|i| stackful::spawn(move || i))
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap();
        handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(total, N * (N - 1) / 2);
}

/// A green thread spawns three partners in a row while the other workers are
/// parked: the first two go to its deque (each displaced from the LIFO slot),
/// and the worker woken for the first may steal only that one. The second
/// must not be stranded in the deque while workers stay parked: here the
/// first and third spin until the second has run, so a stranded one would
/// leave them spinning (up to the test's 5 s limit) instead of finishing.
#[test]
fn spawns_pushed_while_a_worker_searches_still_wake_a_parked_worker() {
    fn spin_until(flag: &AtomicBool) -> bool {
        let start = Instant::now();
        while !flag.load(Ordering::Acquire) {
            if start.elapsed() > Duration::from_secs(5) {
                return false;
            }
            std::hint::spin_loop();
        }
        true
    }
    let rt = Runtime::builder().workers(4).build().unwrap();
    for round in 0..5 {
        let ok = rt.run(|| {
            sleep(Duration::from_millis(30)); // let the workers park
            stackful::spawn(|| {
                let flag = Arc::new(AtomicBool::new(false));
                let f = flag.clone();
                let first = stackful::spawn(move || spin_until(&f));
                let f = flag.clone();
                let second = stackful::spawn(move || f.store(true, Ordering::Release));
                let f = flag.clone();
                let third = stackful::spawn(move || spin_until(&f));
                let ok = first.join().unwrap();
                second.join().unwrap();
                ok && third.join().unwrap()
            })
            .join()
            .unwrap()
        });
        assert!(ok, "round {round}: the second spawn never started");
    }
}

/// Found in review: a `Runtime` whose last owner was dropped on one of its
/// own threads (a worker's loop, a blocking-pool thread) waited for itself
/// or tried to join its own thread. Its shutdown now finishes on a thread
/// of its own, and the dropping code goes on.
#[test]
fn regression_a_runtime_dropped_on_one_of_its_own_threads_shuts_down_in_the_background() {
    common::within(30, || {
        // The last owner is a detached green thread's result.
        let rt = Arc::new(Runtime::builder().workers(2).build().unwrap());
        let (rt2, gate) = (rt.clone(), Arc::new(stackful::sync::Event::new()));
        let g = gate.clone();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        drop(rt.spawn(move || {
            g.wait();
            let _ = done_tx.send(());
            rt2
        }));
        drop(rt);
        gate.set();
        done_rx.recv().unwrap();
        // The last owner goes inside `spawn_blocking`, on a pool thread.
        let rt = Arc::new(Runtime::builder().workers(2).build().unwrap());
        let rt2 = rt.clone();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        drop(rt.spawn(move || {
            // The green thread ends either way (the shutdown cancels it at
            // the return of `spawn_blocking`): this tells when it has.
            struct Ended(std::sync::mpsc::Sender<()>);
            impl Drop for Ended {
                fn drop(&mut self) {
                    let _ = self.0.send(());
                }
            }
            let _ended = Ended(done_tx);
            stackful::spawn_blocking(move || {
                rx.recv().unwrap();
                drop(rt2); // the last owner
            });
        }));
        drop(rt);
        tx.send(()).unwrap();
        done_rx.recv().unwrap(); // the drop returned and the green thread ended
    });
}
