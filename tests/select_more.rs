//! More `sync` cases from the select work: the semaphore's wake-up hand-on.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stackful::sync::Semaphore;

/// Two releases that both come before the front waiter runs wake that same
/// waiter; once it takes its permit, it must pass the wake-up on, or the
/// second waiter sleeps with a permit free until some later release.
#[test]
fn two_quick_releases_wake_two_waiters() {
    common::within(60, || {
        let rt = stackful::Runtime::builder().workers(1).build().unwrap();
        for _ in 0..50 {
            let sem = Arc::new(Semaphore::new(0));
            let got = Arc::new(AtomicUsize::new(0));
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let (sem, got) = (sem.clone(), got.clone());
                    rt.spawn(move || {
                        sem.acquire().forget();
                        got.fetch_add(1, Ordering::SeqCst);
                    })
                })
                .collect();
            let sem2 = sem.clone();
            rt.spawn(move || {
                // One worker: both waiters queued before this runs, and
                // neither runs between the two releases.
                sem2.add_permits(1);
                sem2.add_permits(1);
            })
            .join()
            .unwrap();
            let left = rt
                .spawn(move || {
                    stackful::timeout(Duration::from_secs(5), || {
                        for w in waiters {
                            w.join().unwrap();
                        }
                    })
                })
                .join()
                .unwrap();
            assert!(left.is_ok(), "a waiter slept with a permit free");
            assert_eq!(got.load(Ordering::SeqCst), 2);
        }
    });
}
