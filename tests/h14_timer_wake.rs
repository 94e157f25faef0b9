//! `recv_async` on a timer channel (`after`, `tick`) keeps at most one
//! pending wake-up from the clock per future, holding only its latest waker,
//! and lets it go when the future is dropped (issue 14, async bridge fixes).
//! The clock's helper thread holds no waker of its own: the strong counts of
//! the wakers below count every wake-up still armed.

mod common;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::within;

/// A waker that counts its wakes.
struct Counting(AtomicUsize);

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counter() -> Arc<Counting> {
    Arc::new(Counting(AtomicUsize::new(0)))
}

fn poll_with<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(waker))
}

/// Clones of `count`'s waker held elsewhere (`count` itself aside).
fn held(count: &Arc<Counting>) -> usize {
    Arc::strong_count(count) - 1
}

fn woken(count: &Arc<Counting>) -> usize {
    count.0.load(Ordering::SeqCst)
}

const POLLS: usize = 5000;
const LONG: Duration = Duration::from_secs(3600);

#[test]
fn polling_with_a_new_waker_each_time_keeps_one_entry_with_the_latest() {
    let rx = stackful::sync::after(LONG);
    let mut f = rx.recv_async();
    let counts: Vec<_> = (0..POLLS).map(|_| counter()).collect();
    for c in &counts {
        // A waker made for this poll only, dropped after it.
        assert!(poll_with(&mut f, &Waker::from(c.clone())).is_pending());
    }
    for (i, c) in counts[..POLLS - 1].iter().enumerate() {
        assert_eq!(
            held(c),
            0,
            "the waker of poll {i} is still armed on the clock"
        );
    }
    assert_eq!(
        held(&counts[POLLS - 1]),
        1,
        "the latest waker is armed once"
    );
    drop(f);
    assert_eq!(
        held(&counts[POLLS - 1]),
        0,
        "the dropped future's wake-up is still armed"
    );
    assert_eq!(counts.iter().map(woken).sum::<usize>(), 0);
}

#[test]
fn polling_with_one_waker_keeps_one_clone() {
    let count = counter();
    let waker = Waker::from(count.clone());
    let rx = stackful::sync::tick(LONG);
    let mut f = rx.recv_async();
    for _ in 0..POLLS {
        assert!(poll_with(&mut f, &waker).is_pending());
    }
    drop(waker);
    assert_eq!(held(&count), 1, "one clone of the waker, armed once");
    drop(f);
    assert_eq!(held(&count), 0);
}

#[test]
fn futures_dropped_pending_release_their_wakers_at_once() {
    // The select-loop pattern: a fresh timeout per round, polled once and
    // dropped when another branch wins.
    let count = counter();
    let waker = Waker::from(count.clone());
    for i in 0..POLLS {
        let rx = stackful::sync::after(LONG + Duration::from_millis(i as u64));
        let mut f = rx.recv_async();
        assert!(poll_with(&mut f, &waker).is_pending());
        assert_eq!(held(&count), 2, "round {i}: the armed clone and ours");
        drop(f);
        assert_eq!(
            held(&count),
            1,
            "round {i}: the wake-up outlived its future"
        );
    }
    drop(waker);
    assert_eq!(held(&count), 0);
    assert_eq!(woken(&count), 0);
}

#[test]
fn a_repolled_timer_wakes_only_its_latest_waker_once_due() {
    within(60, || {
        let start = Instant::now();
        let rx = stackful::sync::after(Duration::from_millis(30));
        let mut f = rx.recv_async();
        let (first, second) = (counter(), counter());
        let waker = Waker::from(second.clone());
        assert!(poll_with(&mut f, &Waker::from(first.clone())).is_pending());
        assert!(poll_with(&mut f, &waker).is_pending());
        common::eventually("the clock to wake the future", || woken(&second) > 0);
        assert!(start.elapsed() >= Duration::from_millis(30), "woken early");
        match poll_with(&mut f, &waker) {
            Poll::Ready(Ok(at)) => assert!(at >= start + Duration::from_millis(30)),
            other => panic!("not ready once woken: {other:?}"),
        }
        assert_eq!(woken(&first), 0, "the replaced waker was woken");
        assert_eq!(woken(&second), 1);
        drop(waker);
        assert_eq!(
            held(&first) + held(&second),
            0,
            "a completed receive holds a waker"
        );
    });
}

#[test]
fn a_tick_taken_by_another_receiver_rearms_the_pending_future() {
    within(60, || {
        let period = Duration::from_millis(20);
        let rx = stackful::sync::tick(period);
        let other = rx.clone();
        let count = counter();
        let waker = Waker::from(count.clone());
        let mut f = rx.recv_async();
        assert!(poll_with(&mut f, &waker).is_pending());
        // Another receiver takes the first tick: the future's instant moves
        // on, and the clock must wake it for the next one.
        let first = other.recv().unwrap();
        let got = futures::executor::block_on(f).unwrap();
        assert!(
            got >= first + period,
            "the same tick twice: {got:?} {first:?}"
        );
        drop(waker);
        assert_eq!(held(&count), 0);
    });
}

#[test]
fn recv_async_streams_ticks_in_order() {
    within(60, || {
        let period = Duration::from_millis(10);
        let start = Instant::now();
        let rx = stackful::sync::tick(period);
        let ticks = futures::executor::block_on(async {
            let mut ticks = Vec::new();
            for _ in 0..3 {
                ticks.push(rx.recv_async().await.unwrap());
            }
            ticks
        });
        assert!(ticks[0] >= start + period);
        assert!(ticks[1] >= ticks[0] + period);
        assert!(ticks[2] >= ticks[1] + period);
    });
}
