//! The stack pool stays within its bounds. This file holds a single test so
//! that no other test maps stacks while it counts them.

use stackful::stack::{IDLE_CAPACITY, LOCAL_CAPACITY, SHARED_CAPACITY, pool_stats, trim_pool};
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
    assert!(
        after.local > 0 && after.local <= LOCAL_CAPACITY,
        "{after:?}"
    );
    assert!(after.shared <= SHARED_CAPACITY, "{after:?}");
    assert_eq!(
        after.mapped,
        after.local + after.shared,
        "nothing else holds a stack"
    );
    assert!(before.mapped <= after.mapped);

    // The next burst reuses the pooled stacks: no new mapping.
    let again: Vec<_> = (0..5_000)
        .map(|_| Generator::new(|co, ()| co.yield_(0)))
        .collect();
    assert_eq!(pool_stats().mapped, after.mapped);
    drop(again);

    // Trimming (the background trimmer does it after a second of idleness)
    // unmaps down to the idle bound and releases the pages of the rest.
    let pre = pool_stats();
    let unmapped = trim_pool();
    let trimmed = pool_stats();
    assert_eq!(trimmed.shared, IDLE_CAPACITY, "{trimmed:?}");
    assert_eq!(trimmed.released, trimmed.shared, "{trimmed:?}");
    assert_eq!(unmapped, pre.shared - IDLE_CAPACITY);
    assert_eq!(trimmed.mapped, trimmed.local + trimmed.shared);
}
