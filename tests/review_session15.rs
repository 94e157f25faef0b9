//! Session 15: wait lists that count no references.
//!
//! A notifier names a green thread of its own thread with a pointer that
//! owns no count, on the ground that the green thread cannot run, let alone
//! complete, before the notifier lets its thread go. An async task's waker
//! is user code that can break that ground: it may wait, and the notifier's
//! thread then runs other green threads. These tests give such a waker its
//! chance; ASan (CI's `.ci/asan`) reports the use after free that a wrong
//! order of wake-ups would cause, and the plain build checks the outcome.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use stackful::sync::{Event, unbounded};

/// A waker that, the first time it is woken on a green thread, sleeps
/// there: the notifier's thread runs other green threads meanwhile.
struct SleepyWaker {
    slept: AtomicBool,
    wakes: AtomicUsize,
}

impl Wake for SleepyWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        if !self.slept.swap(true, Ordering::SeqCst) {
            stackful::sleep(Duration::from_millis(60));
        }
    }
}

fn waiting(event: &Event) -> usize {
    // `Event`'s Debug output names how many wait.
    let text = format!("{event:?}");
    let at = text
        .find("waiters: ")
        .expect("Event's Debug shows its waiters")
        + 9;
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// `Event::set` wakes an async waiter, listed first, whose waker sleeps on
/// the setter's green thread, and a green thread of the same thread, listed
/// second, whose own timeout expires during that sleep. That green thread
/// then ends and its record is freed; the setter must have woken it before
/// the waker ran (green threads of its own thread first), not after.
#[test]
fn an_async_waker_that_waits_cannot_outlast_a_green_thread_woken_by_the_same_set() {
    for _ in 0..5 {
        let rt = stackful::Runtime::builder().workers(1).build().unwrap();
        rt.run(|| {
            let event = Arc::new(Event::new());
            let sleepy = Arc::new(SleepyWaker {
                slept: AtomicBool::new(false),
                wakes: AtomicUsize::new(0),
            });
            let waker = Waker::from(sleepy.clone());
            let mut fut = pin!(event.wait_async());
            assert_eq!(
                fut.as_mut().poll(&mut Context::from_waker(&waker)),
                Poll::Pending
            );
            assert_eq!(waiting(&event), 1);

            let (tx, rx) = unbounded();
            let ev = event.clone();
            // Detached: once it ends, nothing but the worker held its record.
            drop(stackful::spawn(move || {
                let released = ev.wait_timeout(Duration::from_millis(20));
                tx.send(released).unwrap();
            }));
            while waiting(&event) < 2 {
                stackful::yield_now();
            }

            event.set();
            assert_eq!(sleepy.wakes.load(Ordering::SeqCst), 1);
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true));
            assert_eq!(
                fut.as_mut().poll(&mut Context::from_waker(&waker)),
                Poll::Ready(())
            );
        });
    }
}
