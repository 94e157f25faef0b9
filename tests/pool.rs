//! The stack pool stays within its bound. This file holds a single test so
//! that no other test maps stacks while it counts them.

use stackful::stack::{LOCAL_CAPACITY, SHARED_CAPACITY, pool_stats};
use stackful::{Generator, GeneratorState};

#[test]
fn ten_thousand_live_generators_leave_the_pool_within_its_bound() {
    let before = pool_stats();
    let mut live: Vec<Generator<usize>> = (0..10_000)
        .map(|i| Generator::new(move |co, ()| co.yield_(i)))
        .collect();
    for (i, g) in live.iter_mut().enumerate() {
        assert_eq!(g.resume(), GeneratorState::Yielded(i)); // touch every stack
    }
    let during = pool_stats();
    assert!(during.mapped >= 10_000, "{during:?}");
    drop(live);
    let after = pool_stats();
    assert_eq!(after.local, LOCAL_CAPACITY, "{after:?}");
    assert_eq!(after.shared, SHARED_CAPACITY, "{after:?}");
    assert_eq!(
        after.mapped,
        after.local + after.shared,
        "every other stack was unmapped"
    );
    assert!(before.mapped <= after.mapped);
    // The pool hands its stacks out again: no new mapping for the next ones.
    let again: Vec<_> = (0..LOCAL_CAPACITY + 10)
        .map(|_| Generator::new(|co, ()| co.yield_(0)))
        .collect();
    assert_eq!(pool_stats().mapped, after.mapped);
    drop(again);
}
