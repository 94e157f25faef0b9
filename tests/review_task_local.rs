//! Review findings for issue 12's task-locals (scratch tests; each asserts
//! what the contract or soundness requires and fails on the reviewed code).

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use stackful::Generator;

static DROPPED: AtomicBool = AtomicBool::new(false);

struct Tracked(String);

impl Drop for Tracked {
    fn drop(&mut self) {
        DROPPED.store(true, Ordering::SeqCst);
    }
}

stackful::task_local! {
    static V: RefCell<Tracked> = RefCell::new(Tracked("hello, world".repeat(4)));
}

/// A generator that yields inside `with` keeps the `&T` its resumer's context
/// lent it. The main green thread ends (dropping its task-locals) and the
/// generator is then resumed on the plain thread: the reference dangles.
/// Run under ASan to see the heap-use-after-free; without ASan the test
/// shows the borrow outlived the value.
#[test]
fn a_generator_keeps_a_task_local_borrow_past_its_lenders_end() {
    let mut g = stackful::run(|| {
        let mut g = Generator::new(|co, ()| {
            V.with(|v| {
                co.yield_(());
                // Safe code, holding `v: &RefCell<Tracked>`.
                let dropped = DROPPED.load(Ordering::SeqCst);
                let len = if std::env::var_os("REVIEW_DEREF").is_some() {
                    v.borrow().0.len() // UAF under ASan
                } else {
                    0
                };
                (dropped, len)
            })
        });
        g.resume();
        g // run's T need not be Send
    });
    // The main green thread is over: its task-locals are dropped.
    assert!(DROPPED.load(Ordering::SeqCst));
    let stackful::GeneratorState::Complete((dropped, _)) = g.resume() else {
        unreachable!()
    };
    assert!(
        !dropped,
        "safe code holds a `&T` from `LocalKey::with` after the value was dropped"
    );
}

static VAL_DROPPED: AtomicBool = AtomicBool::new(false);
static SEEN_DROPPED: AtomicBool = AtomicBool::new(false);

struct Val(String);

impl Drop for Val {
    fn drop(&mut self) {
        VAL_DROPPED.store(true, Ordering::SeqCst);
    }
}

stackful::task_local! {
    static VAL: RefCell<Val> = RefCell::new(Val("task-local value".repeat(3)));
    static GEN: RefCell<Option<Generator<(), (), ()>>> = const { RefCell::new(None) };
}

/// The same borrow without leaving the green thread: a generator kept in a
/// task-local (a cache, say) yields inside `VAL.with`. When the green thread
/// ends, `VAL` (the lower index) is dropped first, then `GEN`, whose close
/// unwinds the generator: the guard on its stack still holds `&VAL`. With
/// REVIEW_DEREF=1 under ASan: heap-use-after-free in `Guard::drop`.
#[test]
fn a_generator_kept_in_a_task_local_reads_an_earlier_dropped_one_on_close() {
    struct Guard<'a>(&'a RefCell<Val>);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            SEEN_DROPPED.store(VAL_DROPPED.load(Ordering::SeqCst), Ordering::SeqCst);
            if std::env::var_os("REVIEW_DEREF").is_some() {
                std::hint::black_box(self.0.borrow().0.len()); // UAF under ASan
            }
        }
    }
    stackful::run(|| {
        stackful::spawn(|| {
            VAL.with(|_| ()); // VAL gets the lower index
            let mut g = Generator::new(|co, ()| {
                VAL.with(|v| {
                    let _guard = Guard(v);
                    co.yield_(());
                })
            });
            g.resume();
            GEN.with(|slot| *slot.borrow_mut() = Some(g));
        })
        .join()
        .unwrap();
    });
    assert!(
        !SEEN_DROPPED.load(Ordering::SeqCst),
        "a `&T` lent by `with` was used after the value was dropped"
    );
}
