//! Structured concurrency: children that borrow a local vector, all joined
//! before the scope returns (asyncio.TaskGroup, with borrowing).

use std::time::Duration;

/// Runs this example (the tour calls it too).
pub fn demo() {
    let mut scores = vec![3, 1, 4, 1, 5, 9, 2, 6];
    let chunk = scores.len() / 2;
    stackful::run(|| {
        stackful::scope(|s| {
            for (i, part) in scores.chunks_mut(chunk).enumerate() {
                s.spawn(move || {
                    stackful::sleep(Duration::from_millis(10));
                    part.sort_unstable();
                    println!("  child {i} sorted its half: {part:?}");
                });
            }
        });
    });
    println!("  after the scope, the vector is ours again: {scores:?}");
}

#[allow(dead_code)]
fn main() {
    demo();
}
