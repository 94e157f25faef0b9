//! Green threads: spawn, join, cancel, panics, and the combinators.

mod common;

use common::{DropCounter, eventually, panic_text};

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use stackful::task::{self, Builder};
use stackful::{Generator, GeneratorState, JoinError, ReturnWhen};

fn message(e: &JoinError) -> String {
    e.to_string()
}

#[test]
fn smoke() {
    let v = stackful::run(|| stackful::spawn(|| 1 + 1).join().unwrap());
    assert_eq!(v, 2);
}

#[test]
fn spawn_and_join_from_a_plain_thread() {
    let h = stackful::spawn(|| "from a plain thread");
    assert_eq!(h.join().unwrap(), "from a plain thread");
}

#[test]
fn ten_thousand_tasks_gathered_in_order() {
    let out = stackful::run(|| {
        let handles: Vec<_> = (0..10_000u64)
            .map(|i| {
                stackful::spawn(move || {
                    if i % 7 == 0 {
                        stackful::yield_now();
                    }
                    i * 2
                })
            })
            .collect();
        stackful::gather(handles).unwrap()
    });
    assert_eq!(out.len(), 10_000);
    assert!(out.iter().enumerate().all(|(i, v)| *v == i as u64 * 2));
}

#[test]
fn names_ids_and_current() {
    stackful::run(|| {
        let me = task::current().expect("run's closure is a green thread");
        assert_eq!(me.name(), Some("main"));
        let h = Builder::new()
            .name("worker-1")
            .spawn(|| task::current().unwrap())
            .unwrap();
        let id = h.id();
        assert_eq!(h.name(), Some("worker-1"));
        let info = h.join().unwrap();
        assert_eq!(info.id(), id);
        assert_eq!(info.name(), Some("worker-1"));
        assert_ne!(info.id(), me.id());
        assert!(id.to_string().starts_with('#'));
    });
    assert!(task::current().is_none());
}

#[test]
fn cancellation_runs_destructors_exactly_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let reached = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let (d, r, s) = (drops.clone(), reached.clone(), started.clone());
    stackful::run(move || {
        let h = stackful::spawn(move || {
            let _a = DropCounter(d.clone());
            s.store(true, Ordering::SeqCst);
            let _b = DropCounter(d);
            stackful::sleep(Duration::from_secs(3600));
            r.store(true, Ordering::SeqCst);
        });
        eventually("the task to start", || started.load(Ordering::SeqCst));
        h.cancel();
        let err = h.join().unwrap_err();
        assert!(err.is_cancelled() && !err.is_panic(), "{err:?}");
        assert!(message(&err).contains("was cancelled"), "{err}");
    });
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    assert!(!reached.load(Ordering::SeqCst));
}

#[test]
fn a_task_cancelled_before_it_starts_never_runs() {
    let ran = Arc::new(AtomicBool::new(false));
    let drops = Arc::new(AtomicUsize::new(0));
    // One worker kept busy, so the new task cannot start before the cancel.
    let rt = stackful::Runtime::builder().workers(1).build().unwrap();
    let (r, guard) = (ran.clone(), DropCounter(drops.clone()));
    let (gate, busy) = common::hold_the_worker(&rt);
    let h = rt.spawn(move || {
        let _guard = guard;
        r.store(true, Ordering::SeqCst);
    });
    h.cancel();
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "the body was dropped at once"
    );
    assert!(h.is_finished());
    assert!(h.join().unwrap_err().is_cancelled());
    gate.store(true, Ordering::SeqCst);
    busy.join().unwrap();
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn cancelling_a_finished_task_keeps_its_value() {
    let h = stackful::spawn(|| 5);
    while !h.is_finished() {
        std::thread::yield_now();
    }
    h.cancel();
    assert_eq!(h.join().unwrap(), 5);
}

#[test]
fn yield_now_is_a_cancellation_point() {
    stackful::run(|| {
        let spins = Arc::new(AtomicUsize::new(0));
        let s = spins.clone();
        let h = stackful::spawn(move || {
            loop {
                s.fetch_add(1, Ordering::SeqCst);
                stackful::yield_now();
            }
        });
        eventually("the spinner to spin", || spins.load(Ordering::SeqCst) > 10);
        h.cancel();
        assert!(h.join().unwrap_err().is_cancelled());
    });
}

#[test]
fn a_swallowed_cancellation_is_raised_again_at_the_next_suspension() {
    let caught = Arc::new(AtomicUsize::new(0));
    let c = caught.clone();
    stackful::run(move || {
        // Cancelled once it has started: one cancelled before it starts
        // never runs, and would catch nothing.
        let started = Arc::new(stackful::sync::Event::new());
        let s = started.clone();
        let h = stackful::spawn(move || {
            s.set();
            let first = panic::catch_unwind(|| stackful::sleep(Duration::from_secs(3600)));
            let payload = first.unwrap_err();
            assert!(stackful::Cancelled::is(&*payload));
            c.fetch_add(1, Ordering::SeqCst);
            // Swallowed: the next suspension point unwinds again.
            stackful::sleep(Duration::from_secs(3600));
            unreachable!("a cancelled task slept on");
        });
        started.wait();
        h.cancel();
        assert!(h.join().unwrap_err().is_cancelled());
    });
    assert_eq!(caught.load(Ordering::SeqCst), 1);
}

#[test]
fn dropping_a_handle_detaches_the_task() {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    drop(stackful::spawn(move || {
        stackful::sleep(Duration::from_millis(5));
        d.store(true, Ordering::SeqCst);
    }));
    let start = Instant::now();
    while !done.load(Ordering::SeqCst) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the detached task never finished"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_finished_green_thread_is_freed_with_its_last_reference() {
    // The task record is reference-counted by hand; a result nobody takes
    // is dropped exactly once, when the last reference (here the handle,
    // dropped after completion, or the runtime's, for a detached one) goes.
    let drops = Arc::new(AtomicUsize::new(0));
    let joined = {
        let d = drops.clone();
        stackful::spawn(move || DropCounter(d))
    };
    while !joined.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(drops.load(Ordering::SeqCst), 0, "dropped while still held");
    drop(joined);
    // The worker may still hold its reference for a moment after completion.
    let reaches = |n: usize, what: &str| {
        let start = Instant::now();
        while drops.load(Ordering::SeqCst) < n {
            assert!(start.elapsed() < Duration::from_secs(20), "{what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    reaches(1, "an unjoined result was never dropped");
    let d = drops.clone();
    drop(stackful::spawn(move || DropCounter(d)));
    reaches(2, "a detached green thread's result was never dropped");
    // Taking the result moves it out: it drops once, with the caller's copy.
    let d = drops.clone();
    let value = stackful::spawn(move || DropCounter(d)).join().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    drop(value);
    assert_eq!(drops.load(Ordering::SeqCst), 3);
}

#[test]
fn a_panicking_task_reports_its_panic_to_join() {
    let h = stackful::spawn(|| -> u32 { panic!("task failed: {}", 42) });
    let err = h.join().unwrap_err();
    assert!(err.is_panic() && !err.is_cancelled());
    assert!(message(&err).contains("panicked: task failed: 42"), "{err}");
    assert_eq!(panic_text(err.into_panic()), "task failed: 42");
}

#[test]
fn into_panic_on_a_cancellation_panics_clearly() {
    let h = stackful::spawn(|| stackful::sleep(Duration::from_secs(3600)));
    h.cancel();
    let err = h.join().unwrap_err();
    let err = err.try_into_panic().unwrap_err();
    let p = panic::catch_unwind(AssertUnwindSafe(|| err.into_panic())).unwrap_err();
    assert!(panic_text(p).contains("not a panic"));
}

#[test]
fn gather_returns_the_first_failure_and_cancels_the_rest() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    stackful::run(move || {
        // The failure comes once the sleeper holds its guard (one cancelled
        // before it starts never makes it): ordered by an event.
        let guarded = Arc::new(stackful::sync::Event::new());
        let g = guarded.clone();
        let sleeper = stackful::spawn(move || {
            let _g = DropCounter(d);
            g.set();
            stackful::sleep(Duration::from_secs(3600));
            1
        });
        let failing = stackful::spawn(move || -> i32 {
            guarded.wait();
            panic!("gather member failed")
        });
        let err = stackful::gather([sleeper, failing]).unwrap_err();
        assert!(err.is_panic());
        assert!(err.to_string().contains("gather member failed"));
    });
    // The cancelled sleeper unwound (by the end of `run` at the latest).
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn join_all_returns_every_outcome_in_order() {
    let results = stackful::run(|| {
        let ok = stackful::spawn(|| 1);
        let bad = stackful::spawn(|| -> i32 { panic!("second fails") });
        let ok2 = stackful::spawn(|| 3);
        stackful::join_all([ok, bad, ok2])
    });
    assert_eq!(results[0].as_ref().unwrap(), &1);
    assert!(results[1].as_ref().unwrap_err().is_panic());
    assert_eq!(results[2].as_ref().unwrap(), &3);
}

#[test]
fn wait_first_completed_then_the_rest() {
    // The slow one waits for an event set only after the first `wait`
    // returned, so the order does not depend on timing (an ASan run once
    // started the fast one more than 60 ms late).
    stackful::run(|| {
        let release = Arc::new(stackful::sync::Event::new());
        let gate = release.clone();
        let slow = stackful::spawn(move || {
            gate.wait();
            "slow"
        });
        let fast = stackful::spawn(|| {
            stackful::sleep(Duration::from_millis(1));
            "fast"
        });
        let (done, pending) = stackful::wait([slow, fast], ReturnWhen::FirstCompleted);
        assert_eq!(done.len(), 1);
        assert_eq!(pending.len(), 1);
        assert_eq!(done.into_iter().next().unwrap().join().unwrap(), "fast");
        release.set();
        let (done, pending) = stackful::wait(pending, ReturnWhen::AllCompleted);
        assert!(pending.is_empty());
        assert_eq!(done.into_iter().next().unwrap().join().unwrap(), "slow");
    });
}

#[test]
fn wait_first_exception_returns_at_the_failure() {
    stackful::run(|| {
        let sleeper = stackful::spawn(|| {
            stackful::sleep(Duration::from_secs(3600));
        });
        // The failure comes after `ok` has finished: ordered by an event, not
        // by a sleep (an ASan run once started `ok` more than 5 ms late).
        let ok_done = Arc::new(stackful::sync::Event::new());
        let after_ok = ok_done.clone();
        let failing = stackful::spawn(move || {
            after_ok.wait();
            panic!("first exception");
        });
        let ok = stackful::spawn(move || ok_done.set());
        let (done, pending) = stackful::wait([sleeper, failing, ok], ReturnWhen::FirstException);
        assert_eq!(pending.len(), 1, "the sleeper is still pending");
        assert!(done.iter().any(|h| h.is_finished()));
        let errors = done.into_iter().filter_map(|h| h.join().err()).count();
        assert_eq!(errors, 1);
        pending.iter().for_each(|h| h.cancel());
        // Nothing was cancelled by `wait` itself.
    });
}

#[test]
fn wait_on_nothing_returns_at_once() {
    let (done, pending) = stackful::wait(
        Vec::<stackful::JoinHandle<()>>::new(),
        ReturnWhen::FirstCompleted,
    );
    assert!(done.is_empty() && pending.is_empty());
}

#[test]
fn as_completed_yields_in_completion_order() {
    // Each ends when its gate is set, and each gate is set only once the
    // one before has been yielded, so they end in the order 5, 20, 40
    // whatever the timing (sleeps of 40, 5 and 20 ms did not order them on
    // a loaded machine). An `as_completed` that waited in input order would
    // wait for good for the 40 (`within` fails it).
    let order: Vec<u64> = common::within(60, || {
        stackful::run(|| {
            let gates: Arc<Vec<stackful::sync::Event>> =
                Arc::new((0..3).map(|_| stackful::sync::Event::new()).collect());
            let handles: Vec<_> = [40u64, 5, 20]
                .into_iter()
                .enumerate()
                .map(|(i, ms)| {
                    let gates = gates.clone();
                    stackful::spawn(move || {
                        gates[i].wait();
                        ms
                    })
                })
                .collect();
            let mut it = stackful::as_completed(handles);
            assert_eq!(it.size_hint(), (3, Some(3)));
            let mut order = Vec::new();
            for i in [1, 2, 0] {
                gates[i].set();
                order.push(it.next().unwrap().unwrap());
            }
            assert!(it.next().is_none());
            order
        })
    });
    assert_eq!(order, [5, 20, 40]);
}

#[test]
fn a_green_thread_joining_itself_gets_a_clear_panic() {
    let report = Arc::new(Mutex::new(None::<String>));
    let slot: Arc<Mutex<Option<stackful::JoinHandle<()>>>> = Arc::new(Mutex::new(None));
    let (r, s) = (report.clone(), slot.clone());
    let h = stackful::spawn(move || {
        let me = loop {
            if let Some(h) = s.lock().unwrap().take() {
                break h;
            }
            stackful::yield_now();
        };
        let caught = panic::catch_unwind(AssertUnwindSafe(|| {
            let _ = me.join();
        }));
        *r.lock().unwrap() = Some(panic_text(caught.unwrap_err()));
    });
    *slot.lock().unwrap() = Some(h); // the green thread gets its own handle
    let start = Instant::now();
    let text = loop {
        if let Some(t) = report.lock().unwrap().take() {
            break t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no report from the self-joiner"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(
        text.contains("tried to join itself, which would wait forever"),
        "{text}"
    );
}

#[test]
fn a_generator_inside_a_task_may_suspend_the_task() {
    let ticks = stackful::run(|| {
        let h = stackful::spawn(|| {
            let mut g = Generator::new(|co, ()| {
                for i in 0..3 {
                    stackful::sleep(Duration::from_millis(2)); // suspends the green thread
                    co.yield_(i);
                }
            });
            let mut seen = Vec::new();
            while let GeneratorState::Yielded(v) = g.resume() {
                seen.push(v);
            }
            seen
        });
        h.join().unwrap()
    });
    assert_eq!(ticks, [0, 1, 2]);
}

#[test]
fn cancelling_a_task_suspended_inside_a_generator_unwinds_both_stacks() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    stackful::run(move || {
        // Cancelled once inside the generator, ordered by an event.
        let inside = Arc::new(stackful::sync::Event::new());
        let i = inside.clone();
        let h = stackful::spawn(move || {
            let _task_guard = DropCounter(d.clone());
            let mut g = Generator::new(move |co, ()| {
                let _gen_guard = DropCounter(d);
                i.set();
                stackful::sleep(Duration::from_secs(3600));
                co.yield_(1);
            });
            g.resume();
        });
        inside.wait();
        h.cancel();
        assert!(h.join().unwrap_err().is_cancelled());
    });
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

#[test]
fn a_panic_in_a_generator_inside_a_task_reaches_join() {
    let err = stackful::run(|| {
        stackful::spawn(|| {
            let mut g = Generator::new(|co: &stackful::Co<()>, ()| {
                stackful::yield_now();
                co.yield_(());
                panic!("generator in a task failed");
            });
            g.resume();
            g.resume();
        })
        .join()
        .unwrap_err()
    });
    assert!(err.is_panic());
    assert!(err.to_string().contains("generator in a task failed"));
}

#[test]
fn builder_rejects_bad_stack_sizes() {
    for bad in [0, 100, usize::MAX] {
        let err = Builder::new().stack_size(bad).spawn(|| ()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(
            err.to_string().contains("between 16 KiB and 1024 MiB"),
            "{err}"
        );
    }
}
