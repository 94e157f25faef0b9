//! A crawler: 200 simulated fetches (sleeps of random length), at most 10 in
//! flight, bounded by a `Semaphore`; the results are gathered in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use stackful::sync::Semaphore;

/// A small xorshift generator, so the example needs no dependency.
fn random_ms(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    5 + *seed % 20
}

/// Runs this example (the tour calls it too).
pub fn demo() {
    let start = Instant::now();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let pages = stackful::run(|| {
        let limit = Arc::new(Semaphore::new(10));
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let handles: Vec<_> = (0..200)
            .map(|i| {
                let (limit, in_flight, peak) = (limit.clone(), in_flight.clone(), peak.clone());
                let delay = Duration::from_millis(random_ms(&mut seed));
                stackful::spawn(move || {
                    let _permit = limit.acquire(); // at most 10 past this line
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    stackful::sleep(delay); // the "fetch"
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    format!("page {i} ({} ms)", delay.as_millis())
                })
            })
            .collect();
        stackful::gather(handles).expect("no fetch failed")
    });
    println!(
        "  fetched {} pages, first {:?}, last {:?}",
        pages.len(),
        pages[0],
        pages[199]
    );
    println!(
        "  at most {} in flight; took {} ms",
        peak.load(Ordering::SeqCst),
        start.elapsed().as_millis() / 10 * 10
    );
}

#[allow(dead_code)]
fn main() {
    demo();
}
