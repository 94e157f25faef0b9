//! `block_on`'s token: the waker it lends its polls (which owns no count),
//! the counts of the clones a future keeps, and the end of a wait cut short.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use common::{DropCounter, within};

/// Runs `body` on a green thread (of a two-worker runtime) and on this
/// plain thread.
fn on_green_and_plain(body: impl Fn() + Send + Sync + 'static) {
    let body = Arc::new(body);
    let b = body.clone();
    let rt = stackful::Runtime::builder().workers(2).build().unwrap();
    rt.spawn(move || b()).join().unwrap();
    body();
}

/// The waker of the very first poll is the token's own: a clone made from
/// it is `will_wake`-equal to it and to the waker of every later poll, so
/// a future that clones only when `will_wake` says so clones once.
#[test]
fn the_first_polls_waker_will_wake_its_own_clones() {
    on_green_and_plain(|| {
        let mut kept: Option<Waker> = None;
        let mut polls = 0;
        let mut clones = 0;
        stackful::block_on(std::future::poll_fn(|cx| {
            polls += 1;
            if !kept.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                kept = Some(cx.waker().clone());
                clones += 1;
            }
            let clone = cx.waker().clone();
            assert!(
                clone.will_wake(cx.waker()),
                "poll {polls}: a clone differs from the waker it was made from"
            );
            if polls < 3 {
                clone.wake();
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        }));
        assert_eq!(polls, 3);
        assert_eq!(clones, 1, "the lent waker differed from the clone kept");
    });
}

/// A future that stays pending, keeping a clone of its waker where the
/// test can reach it after the call is gone, and counting its drops.
struct KeepsWaker {
    slot: Arc<Mutex<Option<Waker>>>,
    _drops: DropCounter,
}

impl Future for KeepsWaker {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        *self.slot.lock().unwrap() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A `block_on` cut short by a timeout while it waits: its future is
/// dropped, and the clone of its waker that outlives it, woken later from
/// another thread, reaches no context (not the plain thread, which would
/// see a stray unpark, nor the green thread, which has ended and been
/// freed by then).
#[test]
fn a_late_wake_of_a_block_on_cut_short_while_waiting_reaches_no_context() {
    within(60, || {
        let fire = |slot: &Arc<Mutex<Option<Waker>>>| {
            let waker = slot
                .lock()
                .unwrap()
                .take()
                .expect("the future kept a waker");
            std::thread::spawn(move || {
                for _ in 0..10 {
                    waker.wake_by_ref();
                }
                let other = waker.clone();
                waker.wake();
                drop(other);
            })
            .join()
            .unwrap();
        };
        let cut_short = |slot: Arc<Mutex<Option<Waker>>>, drops: Arc<AtomicUsize>| {
            let r = stackful::timeout(Duration::from_millis(20), || {
                stackful::block_on(KeepsWaker {
                    slot,
                    _drops: DropCounter(drops),
                })
            });
            assert!(r.is_err(), "the timeout did not cut the wait short");
        };

        // On a green thread, which then ends: the late wakes come after
        // the runtime freed it.
        let slot = Arc::new(Mutex::new(None));
        let drops = Arc::new(AtomicUsize::new(0));
        let (s, d) = (slot.clone(), drops.clone());
        let rt = stackful::Runtime::builder().workers(1).build().unwrap();
        rt.spawn(move || cut_short(s, d)).join().unwrap();
        drop(rt);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the future was not dropped"
        );
        fire(&slot);

        // On this plain thread: no unpark may be left for its next park.
        let slot = Arc::new(Mutex::new(None));
        let drops = Arc::new(AtomicUsize::new(0));
        cut_short(slot.clone(), drops.clone());
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the future was not dropped"
        );
        std::thread::park_timeout(Duration::ZERO); // any unpark left before
        fire(&slot);
        let start = Instant::now();
        std::thread::park_timeout(Duration::from_millis(300));
        let parked = start.elapsed();
        assert!(
            parked >= Duration::from_millis(250),
            "a late wake unparked the thread whose block_on had ended: parked {parked:?}"
        );
    });
}

/// Wakers of many calls, cloned in the poll and handed to another OS
/// thread, which wakes them (by reference and by value) and drops them
/// while the calls return and their green threads end: every call
/// completes, and every clone is counted (a clone dropped after its call
/// returned may not free the token the call keeps for the next one, nor
/// may the call reuse a token a clone still points to).
#[test]
fn wakers_from_another_thread_race_the_calls_return() {
    within(120, || {
        const CALLS: usize = 2000;
        let (to_waker, wakers) = mpsc::channel::<(Waker, Arc<AtomicBool>)>();
        let waker_thread = std::thread::spawn(move || {
            let mut late: Vec<Waker> = Vec::new();
            for (waker, ready) in wakers {
                ready.store(true, Ordering::SeqCst);
                waker.wake_by_ref();
                let clone = waker.clone();
                waker.wake();
                clone.wake_by_ref();
                // Kept a little past the call's return, then dropped here.
                late.push(clone);
                if late.len() > 8 {
                    late.remove(0).wake();
                }
            }
        });
        let rt = stackful::Runtime::builder().workers(2).build().unwrap();
        let completed = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let to_waker = to_waker.clone();
                let completed = completed.clone();
                rt.spawn(move || {
                    for _ in 0..CALLS / 4 {
                        let ready = Arc::new(AtomicBool::new(false));
                        let mut sent = false;
                        // Each call on a green thread of its own, which ends
                        // right after it.
                        let to_waker = to_waker.clone();
                        stackful::spawn(move || {
                            stackful::block_on(std::future::poll_fn(|cx| {
                                if ready.load(Ordering::SeqCst) {
                                    return Poll::Ready(());
                                }
                                if !std::mem::replace(&mut sent, true) {
                                    let w = cx.waker().clone();
                                    to_waker.send((w, ready.clone())).unwrap();
                                }
                                Poll::Pending
                            }));
                        })
                        .join()
                        .unwrap();
                        completed.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        drop(to_waker);
        waker_thread.join().unwrap();
        drop(rt);
        assert_eq!(completed.load(Ordering::SeqCst), CALLS);
    });
}

/// A generator whose body waits in `block_on` yields inside a poll, and
/// another green thread of the same worker resumes it (through a
/// thread-local: a `Generator` is `!Send`) and waits there. The wake must
/// reach the green thread that waits now, not the one that started the
/// call: with the context taken once, at the first wait, the wake went to
/// the first green thread (here parked elsewhere, so woken for nothing)
/// and the second slept forever; had the first ended, the wake would have
/// read its freed record.
#[test]
fn a_call_carried_to_another_green_thread_by_a_generator_wakes_that_one() {
    use stackful::sync::Event;
    use stackful::{Generator, GeneratorState};
    use std::cell::RefCell;

    thread_local! {
        static CARRIED: RefCell<Option<Generator<(), (), u32>>> = const { RefCell::new(None) };
    }
    within(20, || {
        common::on_one_worker(|| {
            let kept: Arc<Mutex<Option<Waker>>> = Arc::default();
            let polled_in_b = Arc::new(Event::new());
            let carried = Arc::new(Event::new());
            let release_a = Arc::new(Event::new());
            let (k, p) = (kept.clone(), polled_in_b.clone());
            // Green thread A starts the call and carries it to the yield.
            let (ra, c) = (release_a.clone(), carried.clone());
            let a = stackful::spawn(move || {
                let mut g: Generator<(), (), u32> = Generator::new(move |co, ()| {
                    let mut polls = 0;
                    stackful::block_on(std::future::poll_fn(|cx| {
                        polls += 1;
                        match polls {
                            // Waits once here, on the first green thread (a
                            // wake during the poll: it only looks again).
                            1 => {
                                cx.waker().wake_by_ref();
                                Poll::Pending
                            }
                            // Leaves the first green thread mid-call.
                            2 => {
                                co.yield_(());
                                *k.lock().unwrap() = Some(cx.waker().clone());
                                p.set();
                                Poll::Pending // now waits on the second
                            }
                            _ => Poll::Ready(polls),
                        }
                    }))
                });
                assert_eq!(g.send(()), GeneratorState::Yielded(()));
                CARRIED.with(|c| *c.borrow_mut() = Some(g));
                c.set();
                ra.wait(); // parked elsewhere while B waits in the call
            });
            // Green thread B, on the same worker, resumes it and waits.
            let c = carried.clone();
            let b = stackful::spawn(move || {
                c.wait();
                let mut g = CARRIED.with(|c| c.borrow_mut().take()).expect("carried");
                match g.send(()) {
                    GeneratorState::Complete(polls) => polls,
                    GeneratorState::Yielded(()) => panic!("yielded again"),
                }
            });
            // Runs once B has polled and waits: wakes the call's waker.
            polled_in_b.wait();
            kept.lock().unwrap().take().expect("kept").wake();
            assert_eq!(
                b.join().unwrap(),
                3,
                "the second green thread was not woken"
            );
            release_a.set();
            a.join().unwrap();
        })
    });
}
