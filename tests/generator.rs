//! The generator protocol: send, yield, return, close, yield from, iteration,
//! panics, and scoped generators.

mod common;

use common::panic_text;

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;

use stackful::generator::{Builder, scoped};
use stackful::stack::{MAX_STACK_SIZE, StackErrorKind};
use stackful::{Cancelled, Co, Generator, GeneratorState};

/// Counts how many times it is dropped.
struct DropCounter(Rc<Cell<u32>>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn smoke() {
    let mut g = Generator::new(|co, ()| {
        co.yield_(1);
        co.yield_(2);
        "done"
    });
    assert_eq!(g.resume(), GeneratorState::Yielded(1));
    assert_eq!(g.resume(), GeneratorState::Yielded(2));
    assert!(!g.is_done());
    assert_eq!(g.resume(), GeneratorState::Complete("done"));
    assert!(g.is_done());
}

#[test]
fn the_issue_example_serves_until_none() {
    let mut consumer = Generator::new(|co, first: Option<u32>| {
        let mut next = first;
        let mut served = 0;
        while let Some(n) = next {
            served += 1;
            next = co.yield_(format!("200 OK {n}"));
        }
        served
    });
    assert_eq!(
        consumer.send(Some(1)),
        GeneratorState::Yielded("200 OK 1".to_string())
    );
    assert_eq!(
        consumer.send(Some(2)),
        GeneratorState::Yielded("200 OK 2".to_string())
    );
    assert_eq!(consumer.send(None), GeneratorState::Complete(2));
}

#[test]
fn body_does_not_run_before_the_first_send() {
    let ran = Rc::new(Cell::new(false));
    let seen = ran.clone();
    let mut g = Generator::new(move |_co: &Co<(), u32>, first: u32| {
        seen.set(true);
        first * 2
    });
    assert!(!ran.get());
    assert_eq!(g.send(21), GeneratorState::Complete(42));
    assert!(ran.get());
}

#[test]
fn sent_values_arrive_in_order() {
    let mut echo = Generator::new(|co, first: i32| {
        let mut got = vec![first];
        for _ in 0..3 {
            got.push(co.yield_(got.len()));
        }
        got
    });
    assert_eq!(echo.send(10), GeneratorState::Yielded(1));
    assert_eq!(echo.send(20), GeneratorState::Yielded(2));
    assert_eq!(echo.send(30), GeneratorState::Yielded(3));
    assert_eq!(
        echo.send(40),
        GeneratorState::Complete(vec![10, 20, 30, 40])
    );
}

#[test]
fn send_after_completion_panics_with_a_clear_message() {
    let mut g = Generator::new(|_co: &Co<()>, ()| 7);
    assert_eq!(g.resume(), GeneratorState::Complete(7));
    let err = panic::catch_unwind(AssertUnwindSafe(|| g.resume())).unwrap_err();
    let msg = panic_text(err);
    assert!(
        msg.contains("already done") && msg.contains("is_done()"),
        "{msg}"
    );
}

#[test]
fn a_panic_in_the_body_reaches_the_caller_and_ends_the_generator() {
    let drops = Rc::new(Cell::new(0));
    let guard = DropCounter(drops.clone());
    let mut g = Generator::new(move |co, ()| {
        let _guard = guard;
        co.yield_(1);
        panic!("body failed");
    });
    assert_eq!(g.resume(), GeneratorState::Yielded(1));
    let err = panic::catch_unwind(AssertUnwindSafe(|| g.resume())).unwrap_err();
    assert_eq!(panic_text(err), "body failed");
    assert!(g.is_done());
    assert_eq!(
        drops.get(),
        1,
        "the body's locals were dropped by the unwind"
    );
    drop(g);
    assert_eq!(drops.get(), 1);
}

#[test]
fn close_runs_every_destructor_exactly_once() {
    let drops = Rc::new(Cell::new(0));
    let (a, b) = (DropCounter(drops.clone()), DropCounter(drops.clone()));
    let reached_end = Rc::new(Cell::new(false));
    let end = reached_end.clone();
    let mut g = Generator::new(move |co, ()| {
        let _a = a;
        co.yield_(1);
        let _b = b;
        fn deeper(co: &Co<i32>) {
            co.yield_(2);
        }
        deeper(co);
        end.set(true);
    });
    assert_eq!(g.resume(), GeneratorState::Yielded(1));
    assert_eq!(g.resume(), GeneratorState::Yielded(2));
    assert_eq!(drops.get(), 0);
    g.close();
    assert_eq!(drops.get(), 2);
    assert!(g.is_done());
    assert!(
        !reached_end.get(),
        "close must not resume the body normally"
    );
    g.close(); // closing twice does nothing
    drop(g);
    assert_eq!(drops.get(), 2);
}

#[test]
fn dropping_a_suspended_generator_closes_it() {
    let drops = Rc::new(Cell::new(0));
    let guard = DropCounter(drops.clone());
    let mut g = Generator::new(move |co, ()| {
        let _guard = guard;
        loop {
            co.yield_(());
        }
    });
    g.resume();
    g.resume();
    drop(g);
    assert_eq!(drops.get(), 1);
}

#[test]
fn closing_an_unstarted_generator_drops_the_body_without_running_it() {
    let drops = Rc::new(Cell::new(0));
    let ran = Rc::new(Cell::new(false));
    let (guard, seen) = (DropCounter(drops.clone()), ran.clone());
    let mut g = Generator::new(move |co, ()| {
        let _guard = guard;
        seen.set(true);
        co.yield_(());
    });
    g.close();
    assert!(g.is_done());
    assert!(!ran.get());
    assert_eq!(drops.get(), 1);
    let err = panic::catch_unwind(AssertUnwindSafe(|| g.resume())).unwrap_err();
    assert!(panic_text(err).contains("already done"));
}

#[test]
fn close_unwind_is_recognisable_and_catch_unwind_lets_it_pass() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let seen = log.clone();
    let mut g = Generator::new(move |co, ()| {
        let caught = panic::catch_unwind(AssertUnwindSafe(|| co.yield_(1)));
        let payload = caught.unwrap_err();
        seen.borrow_mut()
            .push(format!("{}", Cancelled::is(&*payload)));
        // stackful's own catch_unwind re-raises the close right away.
        let _ = stackful::catch_unwind(AssertUnwindSafe(|| panic::resume_unwind(payload)));
        seen.borrow_mut().push("unreachable".to_string());
    });
    g.resume();
    g.close();
    assert_eq!(*log.borrow(), ["true"]);
    assert!(g.is_done());
}

#[test]
fn a_body_that_swallows_the_close_and_returns_is_done() {
    let mut g = Generator::new(|co, ()| {
        let _ = panic::catch_unwind(AssertUnwindSafe(|| co.yield_(1)));
        "returned anyway"
    });
    g.resume();
    g.close();
    assert!(g.is_done());
}

#[test]
fn a_body_that_yields_while_being_closed_gets_a_clear_panic() {
    let mut g = Generator::new(|co, ()| {
        let _ = panic::catch_unwind(AssertUnwindSafe(|| co.yield_(1)));
        co.yield_(2); // Python: "generator ignored GeneratorExit"
    });
    g.resume();
    let err = panic::catch_unwind(AssertUnwindSafe(|| g.close())).unwrap_err();
    let msg = panic_text(err);
    assert!(
        msg.contains("generator created at tests/generator.rs:"),
        "{msg}"
    );
    assert!(msg.contains("ignored `close`"), "{msg}");
    assert!(msg.contains("stackful::catch_unwind"), "{msg}");
    assert!(g.is_done());
    assert!(format!("{g:?}").contains("leaked"));
    g.close(); // done: nothing happens
}

/// Issue 9, item 7: `close` looped forever on a body that swallows every
/// close unwind and yields again.
#[test]
fn regression_close_of_a_body_that_ignores_every_close_does_not_loop() {
    let yields = Rc::new(Cell::new(0));
    let body = |yields: Rc<Cell<u32>>| {
        move |co: &Co<u32>, ()| loop {
            yields.set(yields.get() + 1);
            let _ = panic::catch_unwind(AssertUnwindSafe(|| co.yield_(1)));
        }
    };
    let mut g = Builder::new()
        .name("stubborn")
        .build(body(yields.clone()))
        .unwrap();
    g.resume();
    let msg = panic_text(panic::catch_unwind(AssertUnwindSafe(|| g.close())).unwrap_err());
    assert!(msg.contains("generator `stubborn` created at"), "{msg}");
    assert_eq!(yields.get(), 2, "resumed once by close, then never again");
    drop(g);
    // Dropped without an explicit close: leaked quietly, no loop either.
    let mut h = Generator::new(body(yields.clone()));
    h.resume();
    drop(h);
    assert_eq!(yields.get(), 4);
}

#[test]
fn a_panic_raised_while_closing_propagates_out_of_close() {
    let mut g = Generator::new(|co, ()| {
        let caught = panic::catch_unwind(AssertUnwindSafe(|| co.yield_(())));
        assert!(caught.is_err());
        panic!("cleanup failed");
    });
    g.resume();
    let err = panic::catch_unwind(AssertUnwindSafe(|| g.close())).unwrap_err();
    assert_eq!(panic_text(err), "cleanup failed");
    assert!(g.is_done());
}

#[test]
fn dropping_a_suspended_generator_while_unwinding_still_runs_its_destructors() {
    let drops = Rc::new(Cell::new(0));
    let guard = DropCounter(drops.clone());
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut g = Generator::new(move |co, ()| {
            let _guard = guard;
            co.yield_(());
        });
        g.resume();
        panic!("caller failed"); // `g` is dropped during this unwind
    }));
    assert_eq!(panic_text(result.unwrap_err()), "caller failed");
    assert_eq!(drops.get(), 1);
}

fn numbers(from: u32, to: u32) -> Generator<u32, (), u32> {
    Generator::new(move |co, ()| {
        for i in from..to {
            co.yield_(i);
        }
        to - from
    })
}

#[test]
fn iterator_yields_until_completion_and_stays_done() {
    let mut g = numbers(0, 3);
    assert_eq!(g.by_ref().collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(g.next(), None);
    assert_eq!(g.next(), None);
    let total: u32 = numbers(1, 101).sum();
    assert_eq!(total, 5050);
}

#[test]
fn yield_from_forwards_yields_out_and_sends_in_and_returns_the_result() {
    let sub = Generator::new(|co, first: i32| {
        let second = co.yield_(first * 10);
        let third = co.yield_(second * 10);
        first + second + third
    });
    let mut outer = Generator::new(move |co, first: i32| {
        let from_sub = co.yield_from(sub, first);
        co.yield_(-1);
        from_sub
    });
    assert_eq!(outer.send(1), GeneratorState::Yielded(10));
    assert_eq!(outer.send(2), GeneratorState::Yielded(20));
    assert_eq!(outer.send(3), GeneratorState::Yielded(-1));
    assert_eq!(outer.send(0), GeneratorState::Complete(6));
}

#[test]
fn yield_from_chains_and_nests() {
    let outer = Generator::new(|co, ()| {
        let a = co.yield_from(numbers(0, 2), ());
        let nested = Generator::new(|co, ()| co.yield_from(numbers(10, 13), ()) * 100);
        let b = co.yield_from(nested, ());
        a + b
    });
    let mut outer = outer;
    let mut seen = Vec::new();
    let total = loop {
        match outer.resume() {
            GeneratorState::Yielded(v) => seen.push(v),
            GeneratorState::Complete(r) => break r,
        }
    };
    assert_eq!(seen, [0, 1, 10, 11, 12]);
    assert_eq!(total, 2 + 300);
}

#[test]
fn closing_the_outer_generator_closes_the_sub_generator() {
    let drops = Rc::new(Cell::new(0));
    let (outer_guard, sub_guard) = (DropCounter(drops.clone()), DropCounter(drops.clone()));
    let sub = Generator::new(move |co, ()| {
        let _g = sub_guard;
        loop {
            co.yield_(1);
        }
    });
    let mut outer = Generator::new(move |co, ()| {
        let _g = outer_guard;
        co.yield_from(sub, ())
    });
    assert_eq!(outer.resume(), GeneratorState::Yielded(1));
    outer.close();
    assert_eq!(drops.get(), 2);
}

#[test]
fn a_panic_in_a_sub_generator_propagates_through_yield_from() {
    let sub = Generator::new(|co: &Co<i32>, ()| {
        co.yield_(1);
        panic!("sub failed");
    });
    let mut outer = Generator::new(move |co, ()| co.yield_from(sub, ()));
    assert_eq!(outer.resume(), GeneratorState::Yielded(1));
    let err = panic::catch_unwind(AssertUnwindSafe(|| outer.resume())).unwrap_err();
    assert_eq!(panic_text(err), "sub failed");
    assert!(outer.is_done());
}

#[test]
fn closing_an_inner_generator_does_not_disturb_the_outer_one() {
    // The close unwind is tagged: the inner generator's close must not be
    // taken for the outer one's, nor the other way round.
    let mut outer = Generator::new(|co, ()| {
        let mut inner = numbers(0, 10);
        inner.next();
        inner.close();
        co.yield_(inner.is_done());
        "outer finished"
    });
    assert_eq!(outer.resume(), GeneratorState::Yielded(true));
    assert_eq!(outer.resume(), GeneratorState::Complete("outer finished"));
}

#[derive(Debug)]
enum Tree {
    Leaf(u32),
    Node(Box<Tree>, Box<Tree>),
}

fn walk(co: &Co<(u32, usize)>, tree: &Tree, depth: usize) {
    match tree {
        Tree::Leaf(v) => co.yield_((*v, depth)),
        Tree::Node(l, r) => {
            walk(co, l, depth + 1);
            walk(co, r, depth + 1);
        }
    }
}

#[test]
fn a_recursive_walk_yields_from_a_depth_of_one_thousand() {
    // A left-leaning spine 1 000 nodes deep, with a leaf hanging off each node.
    let mut tree = Tree::Leaf(1000);
    for i in (0..1000).rev() {
        tree = Tree::Node(Box::new(tree), Box::new(Tree::Leaf(i)));
    }
    let walker = Generator::new(move |co, ()| walk(co, &tree, 0));
    let leaves: Vec<(u32, usize)> = walker.collect();
    assert_eq!(leaves.len(), 1001);
    assert_eq!(leaves[0], (1000, 1000), "the deepest leaf comes first");
    assert_eq!(leaves[1], (999, 1000));
    assert_eq!(leaves[1000], (0, 1));
    // Iterative drop of the tree is not needed: the generator dropped it.
}

#[test]
fn values_on_the_stack_may_be_not_send() {
    let shared = Rc::new(RefCell::new(Vec::new()));
    let inside = shared.clone();
    let g = Generator::new(move |co, ()| {
        for i in 0..3 {
            inside.borrow_mut().push(i);
            co.yield_(Rc::strong_count(&inside));
        }
    });
    assert_eq!(g.collect::<Vec<_>>(), [2, 2, 2]);
    assert_eq!(*shared.borrow(), [0, 1, 2]);
}

#[test]
fn builder_names_sizes_and_rejects_bad_sizes() {
    let g = Builder::new()
        .name("named")
        .stack_size(64 * 1024)
        .build(|co, ()| co.yield_(1))
        .unwrap();
    assert!(format!("{g:?}").contains("named"));
    assert_eq!(g.collect::<Vec<_>>(), [1]);
    for bad in [0, 1, MAX_STACK_SIZE + 1, usize::MAX] {
        let err = Builder::new()
            .stack_size(bad)
            .build(|co: &Co<i32>, ()| co.yield_(1))
            .unwrap_err();
        assert_eq!(err.kind(), StackErrorKind::InvalidSize);
        assert!(
            err.to_string().contains("between 16 KiB and 1024 MiB"),
            "{err}"
        );
        let unit = if bad == 1 { " byte:" } else { " bytes:" };
        assert!(err.to_string().contains(&format!("{bad}{unit}")), "{err}");
    }
}

#[test]
fn debug_shows_the_state() {
    let mut g = numbers(0, 1);
    assert!(format!("{g:?}").contains("unstarted"));
    g.next();
    assert!(format!("{g:?}").contains("suspended"));
    g.next();
    assert!(format!("{g:?}").contains("done"));
}

#[test]
fn scoped_generators_borrow_from_the_caller() {
    let mut log = Vec::new();
    let words = ["a", "bb", "ccc"];
    let total: usize = scoped(
        |co, ()| {
            for w in &words {
                log.push(*w);
                co.yield_(w.len());
            }
        },
        |g| g.sum(),
    );
    assert_eq!(total, 6);
    assert_eq!(
        log,
        ["a", "bb", "ccc"],
        "the body's mutable borrow ended with the scope"
    );
}

#[test]
fn a_scoped_generator_is_closed_when_the_scope_ends_even_if_forgotten() {
    let drops = Rc::new(Cell::new(0));
    let mut borrowed = vec![1, 2, 3];
    let first = scoped(
        |co, ()| {
            let _guard = DropCounter(drops.clone());
            for x in borrowed.iter_mut() {
                *x *= 10;
                co.yield_(*x);
            }
        },
        |g| {
            let first = g.next();
            // All a scope hands out is a `&mut`, so forgetting it cannot leak
            // the generator: that is the point of this test.
            #[allow(forgetting_references)]
            std::mem::forget(g);
            first
        },
    );
    assert_eq!(first, Some(10));
    assert_eq!(drops.get(), 1, "the scope closed the body before returning");
    assert_eq!(borrowed, [10, 2, 3]);
}

#[test]
fn a_panic_in_the_scope_closure_still_closes_the_generator() {
    let drops = Rc::new(Cell::new(0));
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        scoped(
            |co, ()| {
                let _guard = DropCounter(drops.clone());
                co.yield_(1);
            },
            |g| {
                g.resume();
                panic!("scope failed");
            },
        )
    }));
    assert_eq!(panic_text(result.unwrap_err()), "scope failed");
    assert_eq!(drops.get(), 1);
}

#[test]
fn scoped_builder_reports_bad_sizes_without_calling_the_scope() {
    let called = Cell::new(false);
    let err = Builder::new()
        .stack_size(0)
        .scoped(|co: &Co<i32>, ()| co.yield_(1), |_g| called.set(true))
        .unwrap_err();
    assert_eq!(err.kind(), StackErrorKind::InvalidSize);
    assert!(!called.get());
}

#[test]
fn generators_churn_through_the_pool() {
    // Many short-lived generators: the pool hands stacks back and forth.
    for i in 0..10_000u32 {
        let mut g = Generator::new(move |co, ()| co.yield_(i));
        assert_eq!(g.resume(), GeneratorState::Yielded(i));
    }
}

/// Found in review: a generator's close token was its stack's address, so
/// a close payload kept by one generator and re-raised in the next one on
/// the same pooled stack was taken for that one's own close.
#[test]
fn regression_a_close_payload_from_an_earlier_generator_is_not_taken_for_a_later_ones() {
    use std::sync::Mutex;
    static KEPT: Mutex<Option<Box<dyn std::any::Any + Send>>> = Mutex::new(None);
    let mut g1 = Generator::new(|co: &Co<()>, ()| {
        if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| co.yield_(()))) {
            *KEPT.lock().unwrap() = Some(p); // kept, and the body returns
        }
    });
    g1.resume();
    g1.close();
    drop(g1);
    let mut g2 = Generator::new(|_co: &Co<()>, ()| {
        let p = KEPT.lock().unwrap().take().unwrap();
        panic::resume_unwind(p);
    });
    let caught = panic::catch_unwind(AssertUnwindSafe(|| g2.resume())).unwrap_err();
    assert!(
        Cancelled::is(&*caught),
        "the payload comes out of g2 as it went in: {}",
        panic_text(caught)
    );
}
