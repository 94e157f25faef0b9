//! `stackful::block_on`: futures on green threads and plain threads.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use common::{DropCounter, panic_text, within};
use stackful::sync::Event;

/// A future woken by hand: pending until `fire` is called, keeping the last
/// waker it was polled with (which the test may fire at any time, from any
/// thread).
#[derive(Clone, Default)]
struct Remote {
    inner: Arc<(AtomicBool, Mutex<Option<Waker>>)>,
}

impl Remote {
    fn fire(&self) {
        self.inner.0.store(true, Ordering::SeqCst);
        if let Some(w) = self.inner.1.lock().unwrap().take() {
            w.wake();
        }
    }

    fn waker(&self) -> Option<Waker> {
        self.inner.1.lock().unwrap().clone()
    }

    fn wait(&self) -> RemoteWait {
        RemoteWait(self.clone())
    }
}

struct RemoteWait(Remote);

impl Future for RemoteWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        *self.0.inner.1.lock().unwrap() = Some(cx.waker().clone());
        if self.0.inner.0.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[test]
fn ready_future_returns_its_output() {
    assert_eq!(stackful::run(|| stackful::block_on(async { 5 })), 5);
    assert_eq!(stackful::block_on(async { "os" }), "os");
}

#[test]
fn pending_future_suspends_only_its_green_thread() {
    within(30, || {
        let out = stackful::Runtime::builder()
            .workers(1)
            .build()
            .unwrap()
            .run(|| {
                let remote = Remote::default();
                let other_ran = Arc::new(Event::new());
                let waiter = {
                    let remote = remote.clone();
                    stackful::spawn(move || {
                        stackful::block_on(remote.wait());
                        "woken"
                    })
                };
                // On one worker, this green thread runs only if the waiter
                // suspended rather than blocking the worker.
                let ran = other_ran.clone();
                let other = stackful::spawn(move || {
                    ran.set();
                });
                other.join().unwrap();
                assert!(other_ran.is_set());
                assert!(!waiter.is_finished());
                remote.fire();
                waiter.join().unwrap()
            });
        assert_eq!(out, "woken");
    });
}

#[test]
fn thousands_of_block_ons_on_two_workers_woken_from_another_thread() {
    within(120, || {
        const N: usize = 3000;
        let rt = stackful::Runtime::builder().workers(2).build().unwrap();
        let total = rt.run(|| {
            let remotes: Vec<Remote> = (0..N).map(|_| Remote::default()).collect();
            let polled = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = remotes
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let r = r.clone();
                    let polled = polled.clone();
                    stackful::spawn(move || {
                        stackful::block_on(async {
                            polled.fetch_add(1, Ordering::SeqCst);
                            r.wait().await;
                            i
                        })
                    })
                })
                .collect();
            // Fire from a plain OS thread, once every future waits.
            let firer = {
                let remotes = remotes.clone();
                let polled = polled.clone();
                std::thread::spawn(move || {
                    while polled.load(Ordering::SeqCst) < N {
                        std::thread::yield_now();
                    }
                    for r in remotes.iter().rev() {
                        r.fire();
                    }
                })
            };
            let sum: usize = stackful::gather(handles).unwrap().into_iter().sum();
            firer.join().unwrap();
            sum
        });
        assert_eq!(total, N * (N - 1) / 2);
    });
}

#[test]
fn waker_called_inside_poll_is_not_lost() {
    let polls = stackful::run(|| {
        let mut polls = 0;
        stackful::block_on(std::future::poll_fn(|cx| {
            polls += 1;
            if polls < 3 {
                cx.waker().wake_by_ref(); // yield, async style
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        }));
        polls
    });
    assert_eq!(polls, 3);
}

#[test]
fn late_wake_after_return_does_not_disturb_a_later_channel_wait() {
    within(30, || {
        stackful::run(|| {
            let remote = Remote::default();
            let r = remote.clone();
            stackful::block_on(std::future::poll_fn(move |cx| {
                // Keep the waker, but complete at once.
                *r.inner.1.lock().unwrap() = Some(cx.waker().clone());
                Poll::Ready(())
            }));
            let stale_waker = remote.waker().expect("kept");
            let (tx, rx) = stackful::sync::channel::<u32>(1);
            let fired = Arc::new(Event::new());
            let f = fired.clone();
            // Fire the stale waker (many times) while we wait on the
            // channel; the receive must not return before the message.
            let sender = stackful::spawn(move || {
                for _ in 0..100 {
                    stale_waker.wake_by_ref();
                    stackful::yield_now();
                }
                f.set();
                tx.send(9).unwrap();
            });
            assert_eq!(rx.recv(), Ok(9));
            assert!(fired.is_set(), "the receive returned before the send");
            sender.join().unwrap();
            // And a later block_on of the same green thread is not woken by
            // the stale waker: its future is polled once, then once more
            // when it is really woken (a spare poll allowed for a stray
            // wake-up the runtime may give any wait). The stale wakes are
            // spaced out, so that each would have time to cause a poll.
            let remote2 = Remote::default();
            let r2 = remote2.clone();
            let stale_waker = remote.waker().expect("kept");
            let woke = Arc::new(Event::new());
            let w2 = woke.clone();
            let waiting = Arc::new(Event::new());
            let waiting2 = waiting.clone();
            let firer = stackful::spawn(move || {
                waiting2.wait(); // until the block_on below has polled
                for _ in 0..30 {
                    stale_waker.wake_by_ref();
                    stackful::sleep(Duration::from_millis(1));
                }
                w2.set();
                r2.fire();
            });
            let mut polls = 0;
            let mut inner = remote2.wait();
            stackful::block_on(std::future::poll_fn(|cx| {
                polls += 1;
                waiting.set();
                Pin::new(&mut inner).poll(cx)
            }));
            assert!(
                woke.is_set(),
                "block_on returned before its future was ready"
            );
            assert!(
                polls <= 3,
                "the stale waker woke a later block_on: {polls} polls"
            );
            firer.join().unwrap();
        });
    });
}

#[test]
fn stale_waker_fired_after_green_thread_ended_is_harmless() {
    let remote = Remote::default();
    let r = remote.clone();
    stackful::run(move || {
        stackful::spawn(move || {
            stackful::block_on(std::future::poll_fn(|cx| {
                *r.inner.1.lock().unwrap() = Some(cx.waker().clone());
                Poll::Ready(())
            }))
        })
        .join()
        .unwrap();
    });
    let w = remote.waker().unwrap();
    w.wake_by_ref();
    let other = w.clone();
    drop(w);
    other.wake();
}

/// A future that never completes and counts its drops.
struct Forever(#[allow(dead_code)] DropCounter);

impl Future for Forever {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

#[test]
fn cancel_drops_the_future_by_unwinding() {
    within(30, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        let outcome = stackful::run(move || {
            let started = Arc::new(Event::new());
            let s = started.clone();
            let h = stackful::spawn(move || {
                let _guard = DropCounter(d.clone()); // a frame destructor
                s.set();
                stackful::block_on(Forever(DropCounter(d)));
            });
            started.wait();
            stackful::yield_now();
            h.cancel();
            h.join()
        });
        assert!(outcome.unwrap_err().is_cancelled());
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn timeout_drops_the_future() {
    within(30, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        let start = Instant::now();
        let r = stackful::run(move || {
            stackful::timeout(Duration::from_millis(30), || {
                stackful::block_on(Forever(DropCounter(d)))
            })
        });
        assert!(r.is_err());
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn run_shutdown_drops_a_detached_block_on() {
    within(30, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        stackful::run(move || {
            let started = Arc::new(Event::new());
            let s = started.clone();
            drop(stackful::spawn(move || {
                s.set();
                stackful::block_on(Forever(DropCounter(d)));
            }));
            started.wait();
        });
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn panic_inside_poll_reaches_the_joiner() {
    let err = stackful::run(|| {
        stackful::spawn(|| {
            stackful::block_on(std::future::poll_fn(|_| -> Poll<()> {
                panic!("poll exploded")
            }))
        })
        .join()
        .unwrap_err()
    });
    assert!(err.is_panic());
    assert_eq!(panic_text(err.into_panic()), "poll exploded");
}

#[test]
fn block_on_in_a_generator_suspends_the_green_thread_not_the_generator() {
    within(30, || {
        let out = stackful::run(|| {
            let remote = Remote::default();
            let r = remote.clone();
            let firer = stackful::spawn(move || {
                stackful::sleep(Duration::from_millis(10));
                r.fire();
            });
            let mut g = stackful::Generator::new(move |co, ()| {
                co.yield_(1);
                stackful::block_on(remote.wait());
                co.yield_(2);
                3
            });
            let mut seen = Vec::new();
            while let stackful::GeneratorState::Yielded(v) = g.resume() {
                seen.push(v);
            }
            firer.join().unwrap();
            seen
        });
        assert_eq!(out, [1, 2]);
    });
}

#[test]
fn on_a_plain_thread_it_blocks_until_woken_from_another_thread() {
    within(30, || {
        let remote = Remote::default();
        let r = remote.clone();
        let fired = Arc::new(AtomicBool::new(false));
        let f = fired.clone();
        let t = std::thread::spawn(move || {
            while r.waker().is_none() {
                std::thread::yield_now();
            }
            f.store(true, Ordering::SeqCst);
            r.fire();
        });
        stackful::block_on(remote.wait());
        assert!(fired.load(Ordering::SeqCst));
        t.join().unwrap();
    });
}

#[test]
fn awaits_stackful_futures_inside() {
    let got = stackful::run(|| {
        let (tx, rx) = stackful::sync::channel::<u32>(0);
        let h = stackful::spawn(move || {
            for i in 0..10 {
                tx.send(i).unwrap();
            }
        });
        let sum = stackful::block_on(async {
            let mut sum = 0;
            while let Ok(v) = rx.recv_async().await {
                sum += v;
            }
            sum
        });
        stackful::block_on(h).unwrap();
        sum
    });
    assert_eq!(got, 45);
}

/// A future that keeps the waker of its first poll only (it does not look
/// at later ones, as the contract asks), woken later from another thread:
/// the waker `block_on` lends must work when cloned, and all its clones
/// wake the same call.
#[test]
fn a_waker_kept_from_the_first_poll_only_still_wakes_the_call() {
    within(30, || {
        let run = |on_green: bool| {
            let kept: Arc<Mutex<Option<Waker>>> = Arc::default();
            let done = Arc::new(AtomicBool::new(false));
            let (k, d) = (kept.clone(), done.clone());
            let waker_thread = std::thread::spawn(move || {
                let waker = loop {
                    if let Some(w) = k.lock().unwrap().take() {
                        break w;
                    }
                    std::thread::yield_now();
                };
                d.store(true, Ordering::SeqCst);
                waker.wake();
            });
            let body = move || {
                let mut first = true;
                stackful::block_on(std::future::poll_fn(|cx| {
                    if std::mem::take(&mut first) {
                        *kept.lock().unwrap() = Some(cx.waker().clone());
                    }
                    if done.load(Ordering::SeqCst) {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                }))
            };
            if on_green {
                stackful::run(body);
            } else {
                body();
            }
            waker_thread.join().unwrap();
        };
        run(true);
        run(false);
    });
}

/// A waker handed to another thread during a poll, and cloned and fired
/// there while the poll waits for it (as a scoped thread can).
#[test]
fn the_lent_waker_works_from_another_thread_during_the_poll() {
    let polls = stackful::run(|| {
        let mut polls = 0;
        stackful::block_on(std::future::poll_fn(|cx| {
            polls += 1;
            if polls == 1 {
                let waker = cx.waker();
                std::thread::scope(|s| {
                    s.spawn(|| waker.wake_by_ref());
                    s.spawn(|| drop(waker.clone()));
                });
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        }));
        polls
    });
    assert_eq!(polls, 2);
}

/// A future that keeps a clone of its waker and clones again only when
/// `will_wake` says the one it is polled with differs (as tokio's
/// registrations do): from the second poll on, `block_on` lends a waker
/// equal to the clone it kept.
#[test]
fn a_kept_waker_clone_will_wake_the_waker_of_later_polls() {
    let clones = stackful::run(|| {
        let mut kept: Option<Waker> = None;
        let mut clones = 0;
        let mut polls = 0;
        stackful::block_on(std::future::poll_fn(|cx| {
            polls += 1;
            if !kept.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                kept = Some(cx.waker().clone());
                clones += 1;
            }
            if polls < 5 {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        }));
        clones
    });
    // One clone at the first poll: it arms the token, and every later poll
    // lends the token's own waker, equal to that clone (5 without it).
    assert_eq!(clones, 1, "the lent waker differed from the clone kept");
}
