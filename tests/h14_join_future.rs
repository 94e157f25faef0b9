//! A `JoinHandle` polled as a future holds one waker at a time, the latest,
//! and lets it go when it is dropped pending: the green thread's end never
//! wakes a dropped handle's waker (issue 14, async bridge fixes).

mod common;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use common::within;
use stackful::sync::Event;

/// A waker that counts its wakes; `Arc::strong_count` of it counts the
/// clones of its waker held anywhere.
struct Counting(AtomicUsize);

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counters(n: usize) -> Vec<Arc<Counting>> {
    (0..n)
        .map(|_| Arc::new(Counting(AtomicUsize::new(0))))
        .collect()
}

/// Polls `f` once with a waker of `count`, which is dropped afterwards:
/// whatever clone of it remains is held by `f` (or what it registered).
fn poll_with<F: Future + Unpin>(f: &mut F, count: &Arc<Counting>) -> Poll<F::Output> {
    let waker = Waker::from(count.clone());
    Pin::new(f).poll(&mut Context::from_waker(&waker))
}

fn held(count: &Arc<Counting>) -> usize {
    Arc::strong_count(count) - 1
}

fn woken(count: &Arc<Counting>) -> usize {
    count.0.load(Ordering::SeqCst)
}

const POLLS: usize = 1000;

/// A green thread that waits for the returned gate and then returns
/// `value()`, and its handle, held on this plain thread; `run` goes on on
/// the returned OS thread until the green thread's body has ended.
fn held_on_a_plain_thread<T: Send + 'static>(
    value: fn() -> T,
) -> (
    stackful::JoinHandle<T>,
    Arc<Event>,
    std::thread::JoinHandle<()>,
) {
    let gate = Arc::new(Event::new());
    let g = gate.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let rt = std::thread::spawn(move || {
        stackful::run(move || {
            let (ended_tx, ended) = stackful::sync::channel::<()>(1);
            tx.send(stackful::spawn(move || {
                g.wait();
                drop(ended_tx);
                value()
            }))
            .unwrap();
            let _ = ended.recv(); // until the green thread's body ends
        })
    });
    (rx.recv().unwrap(), gate, rt)
}

#[test]
fn a_join_handle_dropped_pending_releases_its_waker_and_is_never_woken() {
    within(60, || {
        let observed = counters(POLLS);
        // `run` hands the wakers back, so they have no other owner here.
        let counts = stackful::run(move || {
            let gate = Arc::new(Event::new());
            let g = gate.clone();
            let mut h = stackful::spawn(move || g.wait());
            for c in &observed {
                assert!(poll_with(&mut h, c).is_pending());
            }
            // Each re-poll replaced the waker: only the latest is held.
            for (i, c) in observed[..POLLS - 1].iter().enumerate() {
                assert_eq!(held(c), 0, "the waker of poll {i} is still held");
            }
            assert_eq!(held(&observed[POLLS - 1]), 1);
            drop(h); // detaches the green thread, pending
            assert_eq!(
                held(&observed[POLLS - 1]),
                0,
                "the dropped handle's waker is still registered with its green thread"
            );
            gate.set(); // the green thread ends now
            observed
        });
        // `run` awaited the detached green thread: it has ended, and woke
        // none of the wakers.
        for (i, c) in counts.iter().enumerate() {
            assert_eq!(woken(c), 0, "the waker of poll {i} was woken");
            assert_eq!(held(c), 0);
        }
    });
}

#[test]
fn a_join_handle_polled_from_a_plain_thread_and_dropped_releases_its_waker() {
    within(60, || {
        let (mut h, gate, rt) = held_on_a_plain_thread(|| ());
        let counts = counters(POLLS);
        for c in &counts {
            assert!(poll_with(&mut h, c).is_pending());
        }
        assert_eq!(counts.iter().map(held).sum::<usize>(), 1, "one waker held");
        drop(h);
        assert_eq!(
            counts.iter().map(held).sum::<usize>(),
            0,
            "a waker is still held after the handle was dropped"
        );
        gate.set();
        rt.join().unwrap(); // the runtime awaited the green thread's end
        assert_eq!(
            counts.iter().map(woken).sum::<usize>(),
            0,
            "a waker was woken"
        );
    });
}

#[test]
fn a_kept_join_handle_wakes_only_its_latest_waker_once() {
    within(60, || {
        let (mut h, gate, rt) = held_on_a_plain_thread(|| 7);
        let counts = counters(100);
        for c in &counts {
            assert!(poll_with(&mut h, c).is_pending());
        }
        gate.set();
        let last = &counts[counts.len() - 1];
        common::eventually("the green thread to end", || woken(last) > 0);
        assert!(matches!(poll_with(&mut h, last), Poll::Ready(Ok(7))));
        assert_eq!(woken(last), 1, "the latest waker was woken more than once");
        for (i, c) in counts[..counts.len() - 1].iter().enumerate() {
            assert_eq!(woken(c), 0, "the replaced waker of poll {i} was woken");
        }
        assert_eq!(counts.iter().map(held).sum::<usize>(), 0);
        rt.join().unwrap();
    });
}

#[test]
fn an_abort_on_drop_guard_of_a_polled_handle_releases_its_waker() {
    within(60, || {
        let c = counters(1).pop().unwrap();
        let count = stackful::run(move || {
            let (_hold, stop) = stackful::sync::channel::<()>(0);
            let mut h = stackful::spawn(move || {
                let _ = stop.recv(); // until cancelled
            });
            assert!(poll_with(&mut h, &c).is_pending());
            assert_eq!(held(&c), 1);
            drop(h.abort_on_drop()); // cancels the green thread
            assert_eq!(held(&c), 0, "the guard's handle kept its waker");
            c
        });
        assert_eq!(
            woken(&count),
            0,
            "the cancelled green thread woke the waker"
        );
    });
}

/// A waker that panics when woken.
struct PanicOnWake;

impl Wake for PanicOnWake {
    fn wake(self: Arc<Self>) {
        panic!("this waker panics on purpose");
    }
}

/// The end of a green thread wakes an awaiting task's waker on the worker's
/// loop: a waker that panics there neither stops its other joiners from
/// being woken nor keeps `run` from returning.
#[test]
fn a_waker_that_panics_when_its_green_thread_ends_hangs_nothing() {
    within(60, || {
        let rt = stackful::Runtime::builder().workers(1).build().unwrap();
        rt.run(|| {
            let mut h = stackful::spawn(|| {
                stackful::sleep(std::time::Duration::from_millis(20));
                5
            });
            let waker = Waker::from(Arc::new(PanicOnWake));
            assert!(
                Pin::new(&mut h)
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
            // A second joiner, blocking-style: woken all the same.
            assert_eq!(h.join().unwrap(), 5);
        });
    });
}
