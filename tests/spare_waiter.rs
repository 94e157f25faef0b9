//! A green thread keeps the waiter of its last wait for its next one, and
//! that waiter refers back to the green thread. The green thread's end must
//! break that cycle: green threads that waited and ended leave no memory
//! behind. Measured with a counting allocator, so this file is its own
//! test binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `n` green threads that each wait on a channel (several times, so
/// their spare waiter is used and kept) and then end, on a fresh runtime
/// that is dropped afterwards.
fn waiters_that_end(n: usize) {
    // One worker: where the green threads run, and so the capacities they
    // grow, is the same every time.
    let rt = stackful::Runtime::builder().workers(1).build().unwrap();
    rt.run(|| {
        let (back_tx, back_rx) = stackful::sync::unbounded::<usize>();
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for i in 0..n {
            let (tx, rx) = stackful::sync::unbounded::<usize>();
            let back = back_tx.clone();
            handles.push(stackful::spawn(move || {
                for _ in 0..3 {
                    let v = rx.recv().unwrap();
                    back.send(v).unwrap();
                }
            }));
            senders.push((i, tx));
        }
        for _ in 0..3 {
            for (i, tx) in &senders {
                tx.send(*i).unwrap();
            }
            for _ in 0..n {
                back_rx.recv().unwrap();
            }
        }
        for h in handles {
            h.join().unwrap();
        }
    });
}

#[test]
fn green_threads_that_waited_and_ended_leave_no_memory_behind() {
    const N: usize = 4_000;
    // Warm up with the same load: thread-local spares, pools, lazily built
    // statics and the capacities that grow with the number of green
    // threads are all reached by the first run and reused by the next.
    waiters_that_end(N);
    waiters_that_end(N);
    let before = LIVE.load(Ordering::SeqCst);
    waiters_that_end(N);
    let grown = LIVE.load(Ordering::SeqCst) - before;
    // A leaked green thread keeps its record (hundreds of bytes) and its
    // waiter: N of them would be well over a megabyte.
    assert!(
        grown < 256 * 1024,
        "{grown} bytes still allocated after {N} green threads that waited have ended"
    );
}
