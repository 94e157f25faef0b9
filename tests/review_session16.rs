//! Session 16: adversarial review of generators, structured scopes,
//! task-locals, `JoinSet` and intervals.
//!
//! Each test attacks one place where user code runs at an awkward moment (a
//! destructor that panics, a `Co` used on another stack, a close during an
//! unwind) and asserts what must hold: every destructor runs exactly once,
//! nothing borrowed is used after its scope, misuse panics clearly. Run the
//! suspicious ones under AddressSanitizer (CI's `.ci/asan`) too.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use stackful::generator::scoped;
use stackful::{Generator, GeneratorState};

/// Counts how many times it is dropped.
struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Panics when dropped (not while the thread is already panicking).
struct PanicOnDrop(&'static str);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("{}", self.0);
        }
    }
}

fn counter() -> (Arc<AtomicUsize>, DropCounter) {
    let n = Arc::new(AtomicUsize::new(0));
    (n.clone(), DropCounter(n))
}

/// The message of a panic payload (`&str` or `String`), or "".
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p
            .downcast::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_default(),
    }
}

// ---------------------------------------------------------------- generators

/// Catches: closing an unstarted generator whose captured value panics in
/// its destructor left corosensei's coroutine marked unstarted (it marks it
/// done only once the drop returns), so the generator's own drop (and
/// corosensei's) dropped the captures a second time: a double drop (a
/// double free of `_data` under ASan), then an abort.
#[test]
fn closing_an_unstarted_generator_whose_capture_panics_on_drop_drops_it_once() {
    let (drops, guard) = counter();
    let data = vec![1u8; 64];
    let bomb = PanicOnDrop("capture dropped");
    let mut g = Generator::new(move |co, ()| {
        let _keep = (&guard, &bomb, &data);
        co.yield_(1);
    });
    let out = panic::catch_unwind(AssertUnwindSafe(|| g.close()));
    assert_eq!(panic_text(out.unwrap_err()), "capture dropped");
    assert!(g.is_done(), "the body is gone: the generator is done");
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    drop(g);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped twice");
}

/// As above, through `drop` alone: the panic leaves `drop`, and nothing is
/// dropped twice.
#[test]
fn dropping_an_unstarted_generator_whose_capture_panics_drops_it_once() {
    let (drops, guard) = counter();
    let bomb = PanicOnDrop("capture dropped");
    let g = Generator::new(move |co, ()| {
        let _keep = (&guard, &bomb);
        co.yield_(1);
    });
    let out = panic::catch_unwind(AssertUnwindSafe(move || drop(g)));
    assert_eq!(panic_text(out.unwrap_err()), "capture dropped");
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}
