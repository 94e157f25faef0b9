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

/// Found closing issue 13 (ASan run): a release that found the front waiter
/// young added a free permit and woke it; a second release, once that
/// waiter had waited `FAIR_AFTER` (1 ms), handed it a permit directly. The
/// granted waiter left without passing the first wake-up on, and the second
/// waiter slept with a permit free. The releases here straddle the 1 ms
/// mark, blocking the one worker between them so no waiter runs.
#[test]
fn regression_a_granted_waiter_passes_on_a_wake_up_that_left_a_permit_free() {
    common::within(120, || {
        let rt = stackful::Runtime::builder().workers(1).build().unwrap();
        for round in 0..40u64 {
            let sem = Arc::new(Semaphore::new(0));
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let sem = sem.clone();
                    rt.spawn(move || sem.acquire().forget())
                })
                .collect();
            let sem2 = sem.clone();
            rt.spawn(move || {
                // Both waiters are queued (one worker, spawned first).
                std::thread::sleep(Duration::from_micros(50 * (round % 20)));
                sem2.add_permits(1);
                std::thread::sleep(Duration::from_micros(1200));
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
            assert!(
                left.is_ok(),
                "round {round}: a waiter slept with a permit free"
            );
        }
    });
}
