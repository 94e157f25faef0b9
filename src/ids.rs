//! Process-unique ids taken in blocks per thread: each thread takes
//! [`BLOCK`] ids at a time from a shared counter, so threads that make many
//! (spawners, generator factories) do not share its cache line. Ids are
//! unique, never 0, and ordered only within one thread.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::LocalKey;

/// How many ids a thread takes at once.
const BLOCK: u64 = 1024;

/// The next id of the kind that `shared` (starting at 1) and `local` (this
/// thread's `(next, end)` block, starting at `(0, 0)`) count.
pub(crate) fn next(shared: &AtomicU64, local: &'static LocalKey<Cell<(u64, u64)>>) -> u64 {
    let (mut next, mut end) = local.get();
    if next == end {
        next = shared.fetch_add(BLOCK, Ordering::Relaxed);
        end = next + BLOCK;
    }
    local.set((next + 1, end));
    next
}
