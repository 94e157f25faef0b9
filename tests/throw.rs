//! `Generator::throw`: Python's `gen.throw(exc)`. A payload raised at the
//! body's `yield_`, caught or not, before the start, after the end, through
//! `yield from`, and next to stackful's own unwinds (close, cancellation,
//! timeouts).

mod common;

use common::panic_text;

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use stackful::generator::scoped;
use stackful::{Cancelled, Co, Generator, GeneratorState};

/// Counts how many times it is dropped.
struct DropCounter(Rc<Cell<u32>>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// A payload only these tests throw.
#[derive(Debug, PartialEq)]
struct Reset(u32);

/// Runs `f` on this plain thread, then as the main green thread of `run`.
fn on_both(f: impl Fn()) {
    f();
    stackful::run(&f);
}

/// Runs `f`, which must panic, and returns its payload.
fn payload_of<T>(f: impl FnOnce() -> T) -> Box<dyn std::any::Any + Send> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic"),
        Err(p) => p,
    }
}

/// A body that counts up, and starts over from 0 when `Reset` is thrown in.
fn resettable(co: &Co<u32>, (): ()) -> &'static str {
    let mut n = 0;
    loop {
        match panic::catch_unwind(AssertUnwindSafe(|| co.yield_(n))) {
            Ok(()) => n += 1,
            Err(p) => match p.downcast::<Reset>() {
                Ok(reset) if reset.0 == 99 => return "asked to stop",
                Ok(reset) => n = reset.0,
                Err(other) => panic::resume_unwind(other),
            },
        }
    }
}

#[test]
fn a_caught_throw_returns_what_the_body_yields_next() {
    on_both(|| {
        let mut g = Generator::new(resettable);
        assert_eq!(g.resume(), GeneratorState::Yielded(0));
        assert_eq!(g.resume(), GeneratorState::Yielded(1));
        assert_eq!(g.throw(Box::new(Reset(5))), GeneratorState::Yielded(5));
        assert_eq!(
            g.resume(),
            GeneratorState::Yielded(6),
            "it goes on normally"
        );
        assert_eq!(g.throw(Box::new(Reset(40))), GeneratorState::Yielded(40));
        assert!(!g.is_done());
    });
}

#[test]
fn a_caught_throw_after_which_the_body_returns_is_complete() {
    on_both(|| {
        let mut g = Generator::new(resettable);
        assert_eq!(g.resume(), GeneratorState::Yielded(0));
        assert_eq!(
            g.throw(Box::new(Reset(99))),
            GeneratorState::Complete("asked to stop")
        );
        assert!(g.is_done());
    });
}

#[test]
fn an_uncaught_throw_comes_back_out_with_its_payload_and_unwinds_the_body() {
    on_both(|| {
        let drops = Rc::new(Cell::new(0));
        let guard = DropCounter(drops.clone());
        let after = Rc::new(Cell::new(false));
        let after2 = after.clone();
        let mut g = Generator::new(move |co: &Co<u32>, ()| {
            let _on_stack = DropCounter(guard.0.clone());
            let _captured = &guard;
            co.yield_(1);
            after2.set(true);
        });
        assert_eq!(g.resume(), GeneratorState::Yielded(1));
        let p = payload_of(|| g.throw(Box::new(Reset(7))));
        assert_eq!(
            p.downcast_ref::<Reset>(),
            Some(&Reset(7)),
            "the same payload"
        );
        assert!(!after.get(), "the yield_ did not return");
        assert!(g.is_done());
        assert_eq!(drops.get(), 2, "the stack's guard and the captured one");
        // Done now: send panics as for any finished generator, and a second
        // throw is re-raised at once.
        let p = payload_of(|| g.resume());
        assert!(panic_text(p).contains("already done"));
        let p = payload_of(|| g.throw(Box::new("again")));
        assert_eq!(p.downcast_ref::<&str>(), Some(&"again"));
        assert_eq!(drops.get(), 2);
    });
}

#[test]
fn a_string_payload_reads_like_a_panic_message() {
    let mut g = Generator::new(|co: &Co<()>, ()| co.yield_(()));
    g.resume();
    let p = payload_of(|| g.throw(Box::new(String::from("bad input at line 3"))));
    assert_eq!(panic_text(p), "bad input at line 3");
}

#[test]
fn a_throw_before_the_first_send_raises_at_the_start_and_the_body_never_runs() {
    on_both(|| {
        let ran = Rc::new(Cell::new(false));
        let drops = Rc::new(Cell::new(0));
        let guard = DropCounter(drops.clone());
        let ran2 = ran.clone();
        let mut g = Generator::new(move |co: &Co<u32>, ()| {
            ran2.set(true);
            let _keep = &guard;
            // Even a catch-all first statement never sees it.
            let _ = panic::catch_unwind(AssertUnwindSafe(|| co.yield_(1)));
            co.yield_(2);
        });
        let p = payload_of(|| g.throw(Box::new(Reset(1))));
        assert_eq!(p.downcast_ref::<Reset>(), Some(&Reset(1)));
        assert!(!ran.get(), "the body ran");
        assert_eq!(drops.get(), 1, "the unrun body is dropped");
        assert!(g.is_done());
        assert_eq!(g.next(), None);
    });
}

#[test]
fn a_throw_into_a_done_generator_is_re_raised_in_the_caller() {
    on_both(|| {
        let mut g = Generator::new(|co: &Co<u32>, ()| {
            co.yield_(1);
            "end"
        });
        g.resume();
        assert_eq!(g.resume(), GeneratorState::Complete("end"));
        let p = payload_of(|| g.throw(Box::new(Reset(3))));
        assert_eq!(p.downcast_ref::<Reset>(), Some(&Reset(3)));
        // Closed, too.
        let mut h = Generator::new(|co: &Co<u32>, ()| co.yield_(1));
        h.resume();
        h.close();
        let p = payload_of(|| h.throw(Box::new(Reset(4))));
        assert_eq!(p.downcast_ref::<Reset>(), Some(&Reset(4)));
        // And one that panicked.
        let mut k = Generator::new(|_: &Co<u32>, ()| panic!("boom"));
        let _ = payload_of(|| k.resume());
        let p = payload_of(|| k.throw(Box::new(Reset(5))));
        assert_eq!(p.downcast_ref::<Reset>(), Some(&Reset(5)));
    });
}

#[test]
fn a_body_that_panics_while_handling_a_throw_raises_its_own_panic() {
    let mut g = Generator::new(|co: &Co<()>, ()| {
        if panic::catch_unwind(AssertUnwindSafe(|| co.yield_(()))).is_err() {
            panic!("while handling it");
        }
    });
    g.resume();
    let p = payload_of(|| g.throw(Box::new(Reset(0))));
    assert_eq!(panic_text(p), "while handling it");
    assert!(g.is_done());
}

#[test]
fn yield_from_passes_a_throw_to_the_sub_generator_first() {
    on_both(|| {
        let outer = |co: &Co<u32>, ()| {
            let sub = Generator::new(resettable);
            co.yield_from(sub, ())
        };
        // The sub-generator catches it and yields again, through the outer.
        let mut g = Generator::new(outer);
        assert_eq!(g.resume(), GeneratorState::Yielded(0));
        assert_eq!(g.throw(Box::new(Reset(3))), GeneratorState::Yielded(3));
        assert_eq!(g.resume(), GeneratorState::Yielded(4));
        // It returns: so does `yield_from`, and the outer body with it.
        assert_eq!(
            g.throw(Box::new(Reset(99))),
            GeneratorState::Complete("asked to stop")
        );

        // A sub-generator that does not catch it: the outer body sees it
        // come out of `yield_from`, after the sub's destructors ran.
        let drops = Rc::new(Cell::new(0));
        let d = drops.clone();
        let mut g = Generator::new(move |co: &Co<u32>, ()| {
            let d = d.clone();
            let sub = Generator::new(move |co: &Co<u32>, ()| {
                let _guard = DropCounter(d);
                co.yield_(1);
                "sub finished"
            });
            match panic::catch_unwind(AssertUnwindSafe(|| co.yield_from(sub, ()))) {
                Ok(r) => r,
                Err(p) => {
                    assert_eq!(p.downcast_ref::<Reset>(), Some(&Reset(8)));
                    co.yield_(2);
                    "outer caught it"
                }
            }
        });
        assert_eq!(g.resume(), GeneratorState::Yielded(1));
        assert_eq!(drops.get(), 0);
        assert_eq!(g.throw(Box::new(Reset(8))), GeneratorState::Yielded(2));
        assert_eq!(drops.get(), 1);
        assert_eq!(g.resume(), GeneratorState::Complete("outer caught it"));
    });
}

#[test]
fn a_scoped_generator_takes_a_throw_too() {
    let log = RefCell::new(Vec::new());
    let out = scoped(
        |co: &Co<u32>, ()| {
            let mut n = 0;
            loop {
                match panic::catch_unwind(AssertUnwindSafe(|| co.yield_(n))) {
                    Ok(()) => n += 1,
                    Err(p) => {
                        log.borrow_mut().push(p.downcast::<Reset>().unwrap().0);
                        return n;
                    }
                }
            }
        },
        |g| {
            g.resume();
            g.resume();
            g.throw(Box::new(Reset(5)))
        },
    );
    assert_eq!(out, GeneratorState::Complete(1));
    assert_eq!(*log.borrow(), [5]);

    let p = payload_of(|| {
        scoped(
            |co: &Co<u32>, ()| co.yield_(1),
            |g| {
                g.resume();
                g.throw(Box::new(Reset(6)))
            },
        )
    });
    assert_eq!(p.downcast_ref::<Reset>(), Some(&Reset(6)));
}

/// Makes a generator whose body swallows its own close and hands the
/// `Cancelled` payload out: the one way user code can hold one of a close.
fn a_close_payload() -> Box<dyn std::any::Any + Send> {
    let slot: Rc<RefCell<Option<Box<dyn std::any::Any + Send>>>> = Rc::default();
    let s = slot.clone();
    let mut g = Generator::new(move |co: &Co<()>, ()| {
        if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| co.yield_(()))) {
            *s.borrow_mut() = Some(p);
        }
    });
    g.resume();
    g.close();
    assert!(g.is_done());
    let p = slot.borrow_mut().take().expect("the body caught its close");
    assert!(Cancelled::is(&*p));
    p
}

#[test]
fn a_thrown_cancelled_payload_is_not_taken_for_a_close_of_the_generator() {
    on_both(|| {
        // stackful::catch_unwind in the body lets it pass; it comes back out.
        let drops = Rc::new(Cell::new(0));
        let d = drops.clone();
        let mut g = Generator::new(move |co: &Co<u32>, ()| {
            let _guard = DropCounter(d);
            let _ = stackful::catch_unwind(AssertUnwindSafe(|| co.yield_(1)));
            co.yield_(2);
            "returned"
        });
        g.resume();
        let p = payload_of(|| g.throw(a_close_payload()));
        assert!(Cancelled::is(&*p), "the same payload comes back out");
        assert!(g.is_done());
        assert_eq!(drops.get(), 1);

        // A body that catches it with std's catch_unwind goes on, unclosed.
        let mut g = Generator::new(|co: &Co<u32>, ()| {
            let caught = panic::catch_unwind(AssertUnwindSafe(|| co.yield_(1)));
            assert!(Cancelled::is(&*caught.unwrap_err()));
            co.yield_(2);
            "returned"
        });
        g.resume();
        assert_eq!(g.throw(a_close_payload()), GeneratorState::Yielded(2));
        assert_eq!(g.resume(), GeneratorState::Complete("returned"));
    });
}

#[test]
fn a_thrown_timeout_payload_still_reaches_its_timeout() {
    stackful::run(|| {
        let drops = Rc::new(Cell::new(0));
        let d = drops.clone();
        let mut g = Generator::new(move |co: &Co<u32>, ()| {
            let _guard = DropCounter(d);
            let _ = stackful::catch_unwind(AssertUnwindSafe(|| co.yield_(1)));
            co.yield_(2);
        });
        g.resume();
        let r = stackful::timeout(Duration::from_millis(5), || {
            // Catch the timeout's unwind, then forward it into the body.
            let p = payload_of(|| stackful::sleep(Duration::from_secs(3600)));
            assert!(Cancelled::is(&*p));
            g.throw(p)
        });
        assert!(r.is_err(), "the timeout took its own unwind: {r:?}");
        assert!(g.is_done());
        assert_eq!(drops.get(), 1);
    });
}

#[test]
fn a_throw_unwinds_the_timeouts_the_body_opened_and_leaves_none_behind() {
    on_both(|| {
        // The body is suspended inside a short timeout of its own (PEP 789:
        // it does not apply to the caller meanwhile). A throw unwinds
        // through it; had its scope stayed in the caller's context, it
        // would expire there and cut the caller's sleep short.
        let mut g = Generator::new(|co: &Co<u32>, ()| {
            let r = stackful::timeout(Duration::from_millis(20), || co.yield_(1));
            unreachable!("the throw went through the timeout: {r:?}");
        });
        assert_eq!(g.resume(), GeneratorState::Yielded(1));
        let p = payload_of(|| g.throw(Box::new(Reset(2))));
        assert_eq!(p.downcast_ref::<Reset>(), Some(&Reset(2)));
        stackful::sleep(Duration::from_millis(60));

        // Caught inside the timeout, and yielding again from inside it: its
        // scope leaves the caller's context again with the generator.
        let mut g = Generator::new(|co: &Co<u32>, ()| {
            stackful::timeout(Duration::from_millis(20), || {
                let caught = panic::catch_unwind(AssertUnwindSafe(|| co.yield_(1)));
                assert!(caught.is_err());
                co.yield_(2);
                stackful::sleep(Duration::from_secs(3600));
            })
            .is_err()
        });
        assert_eq!(g.resume(), GeneratorState::Yielded(1));
        assert_eq!(g.throw(Box::new(Reset(3))), GeneratorState::Yielded(2));
        stackful::sleep(Duration::from_millis(60));
        // Resumed after its deadline: the timeout, still the body's, fires
        // at the body's next suspension point.
        assert_eq!(g.resume(), GeneratorState::Complete(true));
    });
}

#[test]
fn a_thrown_payload_is_raised_without_the_panic_hook() {
    // resume_unwind semantics: nothing is printed for a throw. A hook that
    // counts calls proves it (this binary's other tests use the default
    // hook and may panic on other threads meanwhile, so only this thread's
    // calls count).
    thread_local! {
        static HOOK_CALLS: Cell<u32> = const { Cell::new(0) };
    }
    let previous = panic::take_hook();
    panic::set_hook(Box::new(|_| HOOK_CALLS.set(HOOK_CALLS.get() + 1)));
    let mut g = Generator::new(|co: &Co<()>, ()| co.yield_(()));
    g.resume();
    let _ = payload_of(|| g.throw(Box::new(Reset(0))));
    let calls = HOOK_CALLS.get();
    let _ = payload_of(|| panic!("a real panic calls it"));
    let after = HOOK_CALLS.get();
    panic::set_hook(previous);
    assert_eq!(calls, 0, "the throw went through the panic hook");
    assert_eq!(after, 1);
}
