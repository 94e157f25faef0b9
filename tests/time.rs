//! Sleep, yield, timeouts and shields, in green threads and on plain threads.

mod common;

use common::DropCounter;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use stackful::{Elapsed, Generator, GeneratorState, shield, sleep, timeout};

#[test]
fn smoke() {
    let start = Instant::now();
    stackful::run(|| sleep(Duration::from_millis(20)));
    assert!(start.elapsed() >= Duration::from_millis(20));
}

#[test]
fn sleepers_overlap_instead_of_adding_up() {
    let start = Instant::now();
    stackful::run(|| {
        let handles: Vec<_> = (0..100)
            .map(|_| stackful::spawn(|| sleep(Duration::from_millis(100))))
            .collect();
        stackful::join_all(handles);
    });
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(100));
    assert!(
        took < Duration::from_secs(5),
        "100 sleeps of 100 ms took {took:?}"
    );
}

#[test]
fn a_one_hour_task_cut_off_by_a_timeout_cleans_up() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let start = Instant::now();
    let outcome = stackful::run(move || {
        timeout(Duration::from_millis(50), move || {
            let _cleanup = DropCounter(d);
            sleep(Duration::from_secs(3600));
            "finished"
        })
    });
    assert_eq!(outcome, Err(Elapsed::new()));
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(50) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(Elapsed::new().to_string(), "deadline has elapsed");
}

#[test]
fn a_body_that_finishes_in_time_returns_its_value() {
    let v = stackful::run(|| timeout(Duration::from_secs(60), || 7));
    assert_eq!(v, Ok(7));
}

#[test]
fn nested_timeouts_the_earliest_deadline_wins() {
    stackful::run(|| {
        // Inner deadline first: the inner timeout fires, the outer goes on.
        let outer = timeout(Duration::from_secs(60), || {
            let inner = timeout(Duration::from_millis(20), || {
                sleep(Duration::from_secs(3600))
            });
            assert_eq!(inner, Err(Elapsed::new()));
            "outer finished"
        });
        assert_eq!(outer, Ok("outer finished"));

        // Outer deadline first: the unwind passes through the inner timeout.
        let inner_result = Arc::new(std::sync::Mutex::new(None));
        let seen = inner_result.clone();
        let outer = timeout(Duration::from_millis(20), move || {
            let inner = timeout(Duration::from_secs(60), || sleep(Duration::from_secs(3600)));
            *seen.lock().unwrap() = Some(inner); // never reached
        });
        assert_eq!(outer, Err(Elapsed::new()));
        assert!(
            inner_result.lock().unwrap().is_none(),
            "the inner timeout did not swallow the outer one"
        );
    });
}

#[test]
fn timeout_lets_other_panics_through() {
    let caught = std::panic::catch_unwind(|| {
        stackful::run(|| timeout(Duration::from_secs(60), || panic!("not a timeout")))
    });
    let payload = caught.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"not a timeout"));
}

#[test]
fn cancellation_passes_through_a_timeout() {
    stackful::run(|| {
        // Cancelled once inside the timeout (one cancelled before it starts
        // never reaches it), ordered by an event.
        let inside = Arc::new(stackful::sync::Event::new());
        let i = inside.clone();
        let h = stackful::spawn(move || {
            timeout(Duration::from_secs(60), || {
                i.set();
                sleep(Duration::from_secs(3600))
            })
        });
        inside.wait();
        h.cancel();
        assert!(
            h.join().unwrap_err().is_cancelled(),
            "the timeout must not turn a cancel into Err(Elapsed)"
        );
    });
}

#[test]
fn shield_defers_cancellation_until_its_body_returns() {
    let progress = Arc::new(AtomicUsize::new(0));
    let p = progress.clone();
    stackful::run(move || {
        // The cancel comes while the body is inside the shield, and the
        // shielded work waits (a suspension point) until after it: ordered
        // by events, not by sleeps.
        let shielded = Arc::new(stackful::sync::Event::new());
        let cancelled = Arc::new(stackful::sync::Event::new());
        let (s, c) = (shielded.clone(), cancelled.clone());
        let h = stackful::spawn(move || {
            shield(|| {
                s.set();
                c.wait(); // not cut off
                p.fetch_add(1, Ordering::SeqCst); // the shielded work completes
            });
            sleep(Duration::from_secs(3600)); // the cancellation lands here
            p.fetch_add(10, Ordering::SeqCst);
        });
        shielded.wait();
        h.cancel();
        cancelled.set();
        assert!(h.join().unwrap_err().is_cancelled());
    });
    assert_eq!(progress.load(Ordering::SeqCst), 1);
}

#[test]
fn a_timeout_inside_a_shield_still_fires() {
    stackful::run(|| {
        let r = timeout(Duration::from_millis(5), || {
            shield(|| {
                let inner = timeout(Duration::from_millis(10), || {
                    sleep(Duration::from_secs(3600))
                });
                assert_eq!(inner, Err(Elapsed::new()));
                sleep(Duration::from_millis(20)); // the outer timeout is deferred
                "shielded"
            })
        });
        assert_eq!(r, Ok("shielded"));
    });
}

/// PEP 789: a generator that yields out of an open timeout must not get its
/// caller's frames cancelled by it.
#[test]
fn a_generator_yielding_out_of_a_timeout_does_not_cancel_its_caller() {
    let outcome = stackful::run(|| {
        let mut g = Generator::new(|co, ()| {
            timeout(Duration::from_millis(20), || {
                co.yield_("inside the timeout");
                sleep(Duration::from_secs(3600)); // resumed late: the timeout applies here
                co.yield_("unreachable");
            })
        });
        assert_eq!(g.resume(), GeneratorState::Yielded("inside the timeout"));
        // The caller sleeps past the generator's deadline: it must not be cut.
        let start = Instant::now();
        sleep(Duration::from_millis(80));
        assert!(
            start.elapsed() >= Duration::from_millis(80),
            "the caller's sleep was cut short"
        );
        // Back inside the generator, its expired timeout fires.
        g.resume()
    });
    assert_eq!(outcome, GeneratorState::Complete(Err(Elapsed::new())));
}

/// The same, on a plain OS thread.
#[test]
fn pep_789_also_holds_on_a_plain_thread() {
    let mut g = Generator::new(|co, ()| {
        timeout(Duration::from_millis(10), || {
            co.yield_(1);
            sleep(Duration::from_secs(3600));
        })
    });
    assert_eq!(g.resume(), GeneratorState::Yielded(1));
    let start = Instant::now();
    sleep(Duration::from_millis(40));
    assert!(start.elapsed() >= Duration::from_millis(40));
    assert_eq!(g.resume(), GeneratorState::Complete(Err(Elapsed::new())));
}

#[test]
fn a_timeout_around_a_generator_applies_inside_it() {
    // The caller's timeout encloses the generator while it runs.
    let r = stackful::run(|| {
        let mut g = Generator::new(|co: &stackful::Co<()>, ()| {
            sleep(Duration::from_secs(3600));
            co.yield_(());
        });
        timeout(Duration::from_millis(20), move || g.resume())
    });
    assert_eq!(r, Err(Elapsed::new()));
}

#[test]
fn outside_green_threads_sleep_and_timeout_block_the_thread() {
    let start = Instant::now();
    sleep(Duration::from_millis(15));
    assert!(start.elapsed() >= Duration::from_millis(15));
    stackful::yield_now();
    let r = timeout(Duration::from_millis(15), || {
        sleep(Duration::from_secs(3600))
    });
    assert_eq!(r, Err(Elapsed::new()));
    assert!(start.elapsed() < Duration::from_secs(10));
    let joined = timeout(Duration::from_millis(15), || {
        stackful::spawn(|| sleep(Duration::from_secs(3600))).join()
    });
    assert_eq!(joined.err(), Some(Elapsed::new()));
}

#[test]
fn sleep_zero_yields_and_huge_durations_do_not_overflow() {
    stackful::run(|| {
        sleep(Duration::ZERO);
        let r = timeout(Duration::from_millis(5), || sleep(Duration::MAX));
        assert_eq!(r, Err(Elapsed::new()));
        assert_eq!(timeout(Duration::MAX, || 3), Ok(3));
    });
}

/// Timers set out of order (some land in the worker's in-order FIFO, some in
/// its heap) fire in deadline order, and a cancelled sleeper's stale timer
/// neither fires nor holds up the others.
#[test]
fn timers_fire_in_deadline_order_whatever_order_they_were_set_in() {
    let rt = stackful::Runtime::builder().workers(1).build().unwrap();
    let woke = Arc::new(std::sync::Mutex::new(Vec::new()));
    rt.run(|| {
        // Deadlines from one instant, so a sleeper that starts late keeps
        // its place (relative sleeps 20 ms apart did not, on a loaded
        // machine), and far enough ahead that all have set their timers
        // before the first is due.
        let base = Instant::now() + Duration::from_millis(500);
        let asleep = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for ms in [60u64, 20, 100, 40, 120, 80, 140] {
            let (woke, asleep) = (woke.clone(), asleep.clone());
            handles.push(stackful::spawn(move || {
                asleep.fetch_add(1, Ordering::SeqCst);
                stackful::sleep_until(base + Duration::from_millis(ms));
                woke.lock().unwrap().push(ms);
            }));
        }
        // Once every sleeper has set its timer (one worker: each one has
        // suspended before the next counts itself), cancel the 100 ms one.
        common::eventually("the sleepers to start", || {
            asleep.load(Ordering::SeqCst) == 7
        });
        sleep(Duration::from_millis(1)); // not for correctness: the last one parks
        handles[2].cancel();
        let outcomes = stackful::join_all(handles);
        assert!(outcomes[2].as_ref().unwrap_err().is_cancelled());
    });
    assert_eq!(*woke.lock().unwrap(), [20, 40, 60, 80, 120, 140]);
}

/// Issue 9, item 8: a generator suspended inside a timeout in green thread A
/// was dropped by green thread B on the same worker; its timeout stayed in
/// A's scopes, a later generator of A on the same pooled stack revived it,
/// and A ended cancelled although nobody cancelled it.
#[test]
fn regression_a_generator_dropped_by_another_green_thread_leaves_no_timeout_behind() {
    use std::cell::RefCell;
    thread_local! {
        static HANDED: RefCell<Option<Generator<u8>>> = const { RefCell::new(None) };
    }
    fn with_timeout_inside() -> Generator<u8> {
        Generator::new(|co, ()| {
            let _ = timeout(Duration::from_millis(1), || {
                co.yield_(1);
                sleep(Duration::from_millis(2)); // a suspension inside the timeout
                co.yield_(2);
            });
        })
    }
    let rt = stackful::Runtime::builder().workers(1).build().unwrap();
    let handed = Arc::new(stackful::sync::Event::new());
    let dropped = Arc::new(stackful::sync::Event::new());
    let finished = Arc::new(stackful::sync::Event::new());
    let (h1, d1, f1) = (handed.clone(), dropped.clone(), finished.clone());
    let a = rt.spawn(move || {
        let mut g = with_timeout_inside();
        assert_eq!(g.resume(), GeneratorState::Yielded(1)); // suspended in its timeout
        HANDED.with(|h| *h.borrow_mut() = Some(g)); // one worker: B sees it
        h1.set();
        d1.wait();
        sleep(Duration::from_millis(5)); // the old timeout's deadline passes
        // A new generator on the same pooled stack, with a timeout of its own
        // that suspends: it must not revive the old entry.
        let mut g2 = with_timeout_inside();
        let mut states = vec![g2.resume()];
        states.push(g2.resume());
        sleep(Duration::from_millis(1));
        f1.set();
        states
    });
    let (h2, d2, f2) = (handed.clone(), dropped.clone(), finished.clone());
    let b = rt.spawn(move || {
        h2.wait();
        drop(HANDED.with(|h| h.borrow_mut().take())); // closed here, in B
        d2.set();
        // B stays alive meanwhile, so the stack the dropped generator gave
        // back is the next one taken (by A's second generator).
        f2.wait();
    });
    let states = a.join().expect("A was cancelled by a stale timeout");
    assert_eq!(states[0], GeneratorState::Yielded(1));
    b.join().unwrap();
}

/// Found in review: a `Cancelled` payload kept in a thread-local and dropped
/// when its thread exits, after stackful's own thread-locals are gone,
/// panicked in a thread-local destructor, which aborts the process.
#[test]
fn regression_a_cancelled_payload_dropped_at_thread_exit_is_harmless() {
    use std::cell::RefCell;
    thread_local! {
        static LAST_ERROR: RefCell<Option<Box<dyn std::any::Any + Send>>> =
            const { RefCell::new(None) };
    }
    let kept = std::thread::spawn(|| {
        LAST_ERROR.with(|_| {}); // registered before stackful's, so dropped after
        let r = timeout(Duration::from_millis(1), || {
            if let Err(p) = std::panic::catch_unwind(|| sleep(Duration::from_secs(3600))) {
                LAST_ERROR.with(|e| *e.borrow_mut() = Some(p));
            }
        });
        assert_eq!(r, Ok(()), "the payload was swallowed, so the body returned");
        LAST_ERROR.with(|e| e.borrow().is_some())
    })
    .join()
    .expect("the thread exits cleanly");
    assert!(kept);
}
