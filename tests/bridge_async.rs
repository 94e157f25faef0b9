//! Green threads from async code: JoinHandle as a Future, async channel
//! ends, Event::wait_async, Semaphore::acquire_async, Stream and Sink.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use common::{panic_text, within};
use stackful::sync::{Event, Semaphore};

/// Runs `body` on a stackful runtime on a thread of its own; returns its
/// join handle (the runtime ends when `body` does).
fn green<T: Send + 'static>(
    body: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || stackful::run(body))
}

fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(f).poll(&mut cx)
}

#[test]
fn join_handle_awaited_from_futures_executor() {
    within(30, || {
        let (tx, rx) = std::sync::mpsc::channel();
        let gate = Arc::new(Event::new());
        let g = gate.clone();
        let finished = Arc::new(Event::new());
        let f = finished.clone();
        let rt = green(move || {
            let h = stackful::spawn(move || {
                g.wait();
                21 * 2
            });
            tx.send(h).unwrap();
            let failing = stackful::spawn(|| -> u8 { panic!("green boom") });
            tx.send(stackful::spawn(move || failing.join().unwrap_or(0) as i32))
                .unwrap();
            f.wait(); // `run` would cancel the green threads as it ends
        });
        let h = rx.recv().unwrap();
        let mut h = h;
        assert!(
            poll_once(&mut h).is_pending(),
            "ready before the gate opened"
        );
        gate.set();
        assert_eq!(futures::executor::block_on(h).unwrap(), 42);
        assert_eq!(futures::executor::block_on(rx.recv().unwrap()).unwrap(), 0);
        finished.set();
        rt.join().unwrap();
    });
}

#[test]
fn join_handle_awaited_from_tokio_with_panics_and_cancellation() {
    within(60, || {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let rt = stackful::Runtime::builder().workers(2).build().unwrap();
        let rt = Arc::new(rt);
        let r = rt.clone();
        tokio.block_on(async move {
            let ok = r.spawn(|| {
                stackful::sleep(Duration::from_millis(5));
                "done"
            });
            assert_eq!(ok.await.unwrap(), "done");
            let bad = r.spawn(|| -> () { panic!("from green") });
            let err = bad.await.unwrap_err();
            assert!(err.is_panic());
            assert_eq!(panic_text(err.into_panic()), "from green");
            let forever = r.spawn(|| stackful::sleep(Duration::from_secs(3600)));
            forever.cancel();
            assert!(forever.await.unwrap_err().is_cancelled());
            // Many at once, each awaited from its own tokio task.
            let tasks: Vec<_> = (0..500u64)
                .map(|i| {
                    let h = r.spawn(move || i * 2);
                    tokio::spawn(async move { h.await.unwrap() })
                })
                .collect();
            let mut sum = 0;
            for t in tasks {
                sum += t.await.unwrap();
            }
            assert_eq!(sum, 499 * 500);
        });
    });
}

#[test]
fn dropping_an_awaited_join_handle_detaches() {
    within(30, || {
        let done = Arc::new(Event::new());
        let d = done.clone();
        let gate = Arc::new(Event::new());
        let g = gate.clone();
        stackful::run(move || {
            let done = done.clone();
            let mut h = stackful::spawn(move || {
                g.wait();
                d.set();
            });
            assert!(poll_once(&mut h).is_pending());
            drop(h); // detached, not cancelled
            gate.set();
            let finished = stackful::timeout(Duration::from_secs(10), || done.wait());
            assert!(finished.is_ok(), "the green thread did not finish");
        });
    });
}

#[test]
fn join_handle_polled_by_its_own_green_thread_panics() {
    let msg = stackful::run(|| {
        let (tx, rx) = stackful::sync::channel(1);
        let (out_tx, out_rx) = stackful::sync::channel(1);
        let h = stackful::spawn(move || {
            let me: stackful::JoinHandle<()> = rx.recv().unwrap();
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                stackful::block_on(me).unwrap();
            }));
            out_tx.send(panic_text(caught.unwrap_err())).unwrap();
        });
        tx.send(h).unwrap();
        out_rx.recv().unwrap()
    });
    assert!(msg.contains("tried to join itself"), "{msg}");
}

#[test]
fn async_channel_ends_talk_to_green_threads_every_flavor() {
    for cap in [None, Some(0), Some(1), Some(4)] {
        within(30, move || {
            let (tx, rx) = match cap {
                None => stackful::sync::unbounded::<u32>(),
                Some(c) => stackful::sync::channel::<u32>(c),
            };
            let (back_tx, back_rx) = match cap {
                None => stackful::sync::unbounded::<u32>(),
                Some(c) => stackful::sync::channel::<u32>(c),
            };
            // A green thread doubles what async code sends it.
            let rt = green(move || {
                for v in rx.iter() {
                    back_tx.send(v * 2).unwrap();
                }
            });
            let got = futures::executor::block_on(async move {
                let mut got = Vec::new();
                for i in 0..50 {
                    tx.send_async(i).await.unwrap();
                    got.push(back_rx.recv_async().await.unwrap());
                }
                drop(tx);
                assert!(back_rx.recv_async().await.is_err(), "cap {cap:?}");
                got
            });
            assert_eq!(got, (0..50).map(|i| i * 2).collect::<Vec<_>>());
            rt.join().unwrap();
        });
    }
}

#[test]
fn send_async_errors_with_the_value_when_receivers_are_gone() {
    for cap in [0, 1] {
        let (tx, rx) = stackful::sync::channel::<String>(cap);
        drop(rx);
        let err = futures::executor::block_on(tx.send_async("back".into())).unwrap_err();
        assert_eq!(err.0, "back");
    }
    // Receivers leave while a rendezvous send waits: the value comes back.
    let (tx, rx) = stackful::sync::channel::<String>(0);
    let mut f = tx.send_async("waiting".into());
    assert!(poll_once(&mut f).is_pending());
    drop(rx);
    match poll_once(&mut f) {
        Poll::Ready(Err(e)) => assert_eq!(e.0, "waiting"),
        other => panic!("expected the value back, got {other:?}"),
    }
}

#[test]
fn dropped_rendezvous_send_future_sends_nothing_and_drops_the_value() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = stackful::sync::channel::<common::DropCounter>(0);
    let mut f = tx.send_async(common::DropCounter(drops.clone()));
    assert!(poll_once(&mut f).is_pending());
    drop(f);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert!(
        rx.try_recv().is_err(),
        "a dropped send delivered its message"
    );
}

#[test]
fn rendezvous_send_future_completes_when_a_blocking_receiver_takes_it() {
    let (tx, rx) = stackful::sync::channel::<u32>(0);
    let mut f = tx.send_async(3);
    assert!(poll_once(&mut f).is_pending());
    assert_eq!(rx.try_recv(), Ok(3));
    assert!(matches!(poll_once(&mut f), Poll::Ready(Ok(()))));
    drop(f);
    assert!(rx.try_recv().is_err(), "delivered twice");
}

/// A waker that counts its wakes.
struct Counting(AtomicUsize);

impl std::task::Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn dropped_recv_future_loses_no_message_and_passes_the_wakeup_on() {
    for cap in [1, 0] {
        let (tx, rx) = stackful::sync::channel::<u32>(cap);
        let mut held = Vec::new();
        let rx2 = rx.clone();
        let mut first = rx.recv_async();
        let mut second = rx2.recv_async();
        let counts = [
            Arc::new(Counting(AtomicUsize::new(0))),
            Arc::new(Counting(AtomicUsize::new(0))),
        ];
        let wakers = counts.clone().map(std::task::Waker::from);
        let mut cx0 = Context::from_waker(&wakers[0]);
        let mut cx1 = Context::from_waker(&wakers[1]);
        assert!(std::pin::Pin::new(&mut first).poll(&mut cx0).is_pending());
        assert!(std::pin::Pin::new(&mut second).poll(&mut cx1).is_pending());
        if cap == 1 {
            tx.send(1).unwrap(); // notifies `first` alone, the longest waiting
            assert_eq!(counts[0].0.load(Ordering::SeqCst), 1);
            assert_eq!(counts[1].0.load(Ordering::SeqCst), 0);
        } else {
            // A rendezvous sender waits in line; both receivers are told.
            let mut send = tx.send_async(1);
            assert!(poll_once(&mut send).is_pending());
            assert!(counts[0].0.load(Ordering::SeqCst) >= 1);
            drop(send); // leaves; the value goes with it
            let mut queued = tx.send_async(1);
            assert!(poll_once(&mut queued).is_pending());
            held.push(queued); // stays queued for the receive below
        }
        let before = counts[1].0.load(Ordering::SeqCst);
        drop(first); // without taking it: the wake-up goes on to `second`
        let after = counts[1].0.load(Ordering::SeqCst);
        if cap == 1 {
            assert!(
                after > before,
                "cap {cap}: the wake-up was lost with the dropped future"
            );
        } else {
            // A rendezvous sender told every receiver already, so there is
            // no single wake-up to pass on; `second` takes the value below.
            assert!(after >= 1, "cap {cap}: `second` was never told");
        }
        assert_eq!(
            std::pin::Pin::new(&mut second).poll(&mut cx1),
            Poll::Ready(Ok(1))
        );
    }
}

/// Mixed blocking and async ends of one channel, under cancellation of the
/// blocking ones and drops of the async ones: no message is lost or
/// arrives twice.
#[test]
fn mixed_ends_under_cancellation_conserve_every_message() {
    for cap in [0usize, 2] {
        within(120, move || {
            const PER: u32 = 300;
            let (tx, rx) = stackful::sync::channel::<u32>(cap);
            let seen = Arc::new(Mutex::new(Vec::new()));
            let tokio = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            // Async senders (tokio tasks), whose sends are cut short when
            // not done within two polls (a `select!` against a yield),
            // dropping the future. On a bounded channel a cut send sent
            // nothing, and is retried. At a rendezvous a cut send may have delivered (see
            // `send_async`), so there a cut send is only noted: its message
            // either arrived once or was dropped, never twice.
            let mut async_senders = Vec::new();
            let cut = Arc::new(Mutex::new(Vec::new()));
            let cuts = Arc::new(AtomicUsize::new(0));
            for s in 0..2u32 {
                let tx = tx.clone();
                let cut = cut.clone();
                let cuts = cuts.clone();
                async_senders.push(tokio.spawn(async move {
                    for i in 0..PER {
                        let v = s * PER + i;
                        loop {
                            let sent = tokio::select! {
                                biased;
                                r = tx.send_async(v) => Some(r),
                                _ = tokio::task::yield_now() => None,
                            };
                            match sent {
                                Some(r) => break r.unwrap(),
                                None if cap == 0 => {
                                    cut.lock().unwrap().push(v);
                                    break;
                                }
                                None => cuts.fetch_add(1, Ordering::Relaxed),
                            };
                        }
                    }
                }));
            }
            // Async receivers, cut short the same way.
            let mut async_receivers = Vec::new();
            for _ in 0..2 {
                let rx = rx.clone();
                let seen = seen.clone();
                let cuts = cuts.clone();
                async_receivers.push(tokio.spawn(async move {
                    loop {
                        let got = tokio::select! {
                            biased;
                            r = rx.recv_async() => Some(r),
                            _ = tokio::task::yield_now() => None,
                        };
                        match got {
                            Some(Ok(v)) => seen.lock().unwrap().push(v),
                            Some(Err(_)) => break,
                            None => {
                                cuts.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }));
            }
            let seen_green = seen.clone();
            let green_rx = rx.clone();
            let green_tx = tx.clone();
            drop((tx, rx));
            let green_cuts = Arc::new(AtomicUsize::new(0));
            let counted = green_cuts.clone();
            let rt = green(move || {
                // Blocking senders and receivers on green threads, with
                // timeouts cutting them short.
                let senders: Vec<_> = (2..4u32)
                    .map(|s| {
                        let tx = green_tx.clone();
                        let green_cuts = green_cuts.clone();
                        stackful::spawn(move || {
                            for i in 0..PER {
                                let v = s * PER + i;
                                while stackful::timeout(Duration::from_micros(20), || tx.send(v))
                                    .is_err()
                                {
                                    green_cuts.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        })
                    })
                    .collect();
                drop(green_tx);
                let receivers: Vec<_> = (0..2)
                    .map(|_| {
                        let rx = green_rx.clone();
                        let seen = seen_green.clone();
                        let green_cuts = green_cuts.clone();
                        stackful::spawn(move || {
                            loop {
                                match stackful::timeout(Duration::from_micros(30), || rx.recv()) {
                                    Ok(Ok(v)) => seen.lock().unwrap().push(v),
                                    Ok(Err(_)) => break,
                                    Err(_) => {
                                        green_cuts.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            }
                        })
                    })
                    .collect();
                drop(green_rx);
                stackful::gather(senders).unwrap();
                stackful::gather(receivers).unwrap();
            });
            tokio.block_on(async {
                for s in async_senders {
                    s.await.unwrap();
                }
                for r in async_receivers {
                    r.await.unwrap();
                }
            });
            rt.join().unwrap();
            let seen = seen.lock().unwrap();
            let unique: HashSet<u32> = seen.iter().copied().collect();
            assert_eq!(
                unique.len(),
                seen.len(),
                "cap {cap}: a message arrived twice"
            );
            let cut = cut.lock().unwrap();
            // How often futures were dropped and blocking calls timed
            // out, for the failure messages.
            let cancelled = (
                cuts.load(Ordering::Relaxed),
                counted.load(Ordering::Relaxed),
            );
            for v in 0..4 * PER {
                assert!(
                    unique.contains(&v) || cut.contains(&v),
                    "cap {cap}: message {v} lost (cancellations {cancelled:?})"
                );
            }
        });
    }
}

#[test]
fn event_wait_async_from_async_and_on_green_threads() {
    within(30, || {
        let ev = Arc::new(Event::new());
        let e = ev.clone();
        let rt = green(move || {
            stackful::sleep(Duration::from_millis(10));
            e.set();
        });
        futures::executor::block_on(ev.wait_async());
        assert!(ev.is_set());
        rt.join().unwrap();
        // Set and cleared between polls: still released.
        let ev = Event::new();
        let mut f = ev.wait_async();
        assert!(poll_once(&mut f).is_pending());
        ev.set();
        ev.clear();
        assert_eq!(poll_once(&mut f), Poll::Ready(()));
        // A wait begun after a set and clear waits for the next set.
        let mut g = ev.wait_async();
        assert!(poll_once(&mut g).is_pending());
    });
}

#[test]
fn acquire_async_waits_in_line_and_a_dropped_one_passes_its_permit_on() {
    within(30, || {
        let sem = Semaphore::new(1);
        let held = sem.acquire();
        let mut a = sem.acquire_async();
        let mut b = sem.acquire_async();
        assert!(poll_once(&mut a).is_pending());
        assert!(poll_once(&mut b).is_pending());
        // Past the fairness threshold (1 ms), a release hands the permit
        // straight to the front waiter, `a`, which is then dropped.
        std::thread::sleep(Duration::from_millis(3));
        drop(held);
        drop(a);
        let permit = match poll_once(&mut b) {
            Poll::Ready(p) => p,
            Poll::Pending => panic!("the permit was lost with the dropped future"),
        };
        assert_eq!(sem.available_permits(), 0);
        drop(permit);
        assert_eq!(sem.available_permits(), 1);
        drop(b);
        assert_eq!(sem.available_permits(), 1);
    });
}

#[test]
fn acquire_async_against_green_threads() {
    within(60, || {
        let sem = Arc::new(Semaphore::new(2));
        let inside = Arc::new(AtomicUsize::new(0));
        let (s, i) = (sem.clone(), inside.clone());
        let rt = green(move || {
            let hs: Vec<_> = (0..50)
                .map(|_| {
                    let (s, i) = (s.clone(), i.clone());
                    stackful::spawn(move || {
                        let _p = s.acquire();
                        assert!(i.fetch_add(1, Ordering::SeqCst) < 2);
                        stackful::yield_now();
                        i.fetch_sub(1, Ordering::SeqCst);
                    })
                })
                .collect();
            stackful::gather(hs).unwrap();
        });
        futures::executor::block_on(async {
            for _ in 0..50 {
                let _p = sem.acquire_async().await;
                assert!(inside.fetch_add(1, Ordering::SeqCst) < 2);
                inside.fetch_sub(1, Ordering::SeqCst);
            }
        });
        rt.join().unwrap();
        assert_eq!(sem.available_permits(), 2);
    });
}

#[test]
fn recv_async_on_timer_channels() {
    within(30, || {
        let start = std::time::Instant::now();
        let at = futures::executor::block_on(
            stackful::sync::after(Duration::from_millis(20)).recv_async(),
        )
        .unwrap();
        assert!(at >= start + Duration::from_millis(20));
        assert!(start.elapsed() >= Duration::from_millis(20));
    });
}

#[cfg(feature = "futures")]
#[test]
fn receiver_is_a_stream_and_sender_a_sink() {
    use futures::{SinkExt, StreamExt};
    within(30, || {
        let (mut tx, rx) = stackful::sync::channel::<u32>(0);
        let rt = green(move || rx.iter().map(|v| v + 1).collect::<Vec<_>>());
        futures::executor::block_on(async {
            for i in 0..5 {
                SinkExt::send(&mut tx, i).await.unwrap();
            }
            tx.close().await.unwrap();
        });
        drop(tx);
        assert_eq!(rt.join().unwrap(), [1, 2, 3, 4, 5]);

        let (tx, rx) = stackful::sync::channel::<u32>(2);
        let rt = green(move || (0..10).for_each(|i| tx.send(i).unwrap()));
        let got: Vec<u32> = futures::executor::block_on(rx.collect());
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        rt.join().unwrap();
    });
}

#[cfg(feature = "futures")]
#[test]
fn sink_hands_the_message_back_when_receivers_are_gone() {
    use futures::SinkExt;
    let (mut tx, rx) = stackful::sync::channel::<u32>(0);
    drop(rx);
    let err = futures::executor::block_on(SinkExt::send(&mut tx, 5)).unwrap_err();
    assert_eq!(err.0, 5);
}

#[test]
fn ends_stay_send_and_sync_for_messages_that_are_only_send() {
    // With the `futures` feature a `Sender` holds a pending `Sink` message;
    // that must not make it `Sync` only for `Sync` messages.
    fn send_sync<T: Send + Sync>() {}
    send_sync::<stackful::sync::Sender<std::cell::Cell<u8>>>();
    send_sync::<stackful::sync::Receiver<std::cell::Cell<u8>>>();
    fn send<T: Send>(_: &T) {}
    let (tx, rx) = stackful::sync::unbounded::<std::cell::Cell<u8>>();
    send(&tx.send_async(std::cell::Cell::new(1)));
    send(&rx.recv_async());
    let (ev, sem) = (Event::new(), Semaphore::new(1));
    send(&ev.wait_async());
    send(&sem.acquire_async());
    send(&stackful::run(|| stackful::spawn(|| ())));
}

#[test]
fn a_future_moved_to_another_task_wakes_the_new_one() {
    within(30, || {
        let counts = [
            Arc::new(Counting(AtomicUsize::new(0))),
            Arc::new(Counting(AtomicUsize::new(0))),
        ];
        let wakers = counts.clone().map(std::task::Waker::from);
        let (mut cx_a, mut cx_b) = (
            Context::from_waker(&wakers[0]),
            Context::from_waker(&wakers[1]),
        );
        let gate = Arc::new(Event::new());
        let g = gate.clone();
        let finished = Arc::new(Event::new());
        let f = finished.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let rt = green(move || {
            tx.send(stackful::spawn(move || g.wait())).unwrap();
            f.wait();
        });
        // A JoinHandle, polled by task A, then by task B.
        let mut h = rx.recv().unwrap();
        assert!(std::pin::Pin::new(&mut h).poll(&mut cx_a).is_pending());
        assert!(std::pin::Pin::new(&mut h).poll(&mut cx_b).is_pending());
        gate.set();
        common::eventually("the green thread to end", || {
            counts[1].0.load(Ordering::SeqCst) > 0
        });
        assert!(matches!(
            std::pin::Pin::new(&mut h).poll(&mut cx_b),
            Poll::Ready(Ok(()))
        ));
        // The same for a receive and an event wait.
        let (stx, srx) = stackful::sync::unbounded::<u8>();
        let ev = Event::new();
        let mut r = srx.recv_async();
        let mut e = ev.wait_async();
        let before = counts[1].0.load(Ordering::SeqCst);
        assert!(std::pin::Pin::new(&mut r).poll(&mut cx_a).is_pending());
        assert!(std::pin::Pin::new(&mut e).poll(&mut cx_a).is_pending());
        assert!(std::pin::Pin::new(&mut r).poll(&mut cx_b).is_pending());
        assert!(std::pin::Pin::new(&mut e).poll(&mut cx_b).is_pending());
        stx.send(1).unwrap();
        ev.set();
        assert_eq!(counts[1].0.load(Ordering::SeqCst), before + 2);
        finished.set();
        rt.join().unwrap();
    });
}
