//! The runtime workloads, on stackful. Shared by stackful's own `cargo bench
//! --bench runtime` and by the side-by-side comparison in `benches/compare`,
//! which runs the same workloads on tokio and may.

#![allow(dead_code)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stackful::Runtime;

/// A runtime with `workers` workers.
pub fn runtime(workers: usize) -> Runtime {
    Runtime::builder()
        .workers(workers)
        .build()
        .expect("runtime")
}

/// Spawns `n` trivial green threads, then joins them all.
pub fn spawn_join(rt: &Runtime, n: u64) {
    rt.run(|| {
        let handles: Vec<_> = (0..n)
            .map(|i| stackful::spawn(move || black_box(i)))
            .collect();
        for h in handles {
            black_box(h.join().unwrap());
        }
    });
}

/// `tasks` green threads each call `yield_now` `yields` times.
pub fn yield_many(rt: &Runtime, tasks: u64, yields: u64) {
    rt.run(|| {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                stackful::spawn(move || {
                    for _ in 0..yields {
                        stackful::yield_now();
                    }
                })
            })
            .collect();
        stackful::join_all(handles);
    });
}

/// `n` green threads each sleep for `ms` milliseconds.
pub fn sleepers(rt: &Runtime, n: u64, ms: u64) {
    rt.run(|| {
        let handles: Vec<_> = (0..n)
            .map(|_| stackful::spawn(move || stackful::sleep(Duration::from_millis(ms))))
            .collect();
        stackful::join_all(handles);
    });
}

/// `n` sequential `spawn_blocking` round trips from one green thread.
pub fn blocking(rt: &Runtime, n: u64) {
    rt.run(|| {
        for i in 0..n {
            black_box(stackful::spawn_blocking(move || black_box(i)));
        }
    });
}

/// Starts `n` green threads that stay idle (sleeping) and returns once all
/// have started; cancel them through the handles.
pub fn park_idle(rt: &Runtime, n: u64) -> Vec<stackful::JoinHandle<()>> {
    let started = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let s = started.clone();
            rt.spawn(move || {
                s.fetch_add(1, Ordering::Relaxed);
                stackful::sleep(Duration::from_secs(3600));
            })
        })
        .collect();
    while started.load(Ordering::Relaxed) < n as usize {
        std::thread::sleep(Duration::from_millis(5));
    }
    handles
}
