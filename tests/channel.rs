//! Channels: every flavor, errors, disconnection, timeouts, select, mixed
//! OS and green threads, and message conservation under cancellation.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stackful::sync::{
    Receiver, RecvError, RecvTimeoutError, Select, SendError, SendTimeoutError, Sender,
    TryRecvError, channel, unbounded,
};

fn flavors() -> Vec<(&'static str, Sender<u64>, Receiver<u64>)> {
    let (a, b) = channel(0);
    let (c, d) = channel(1);
    let (e, f) = channel(16);
    let (g, h) = unbounded();
    vec![
        ("rendezvous", a, b),
        ("bounded(1)", c, d),
        ("bounded(16)", e, f),
        ("unbounded", g, h),
    ]
}

#[test]
fn smoke() {
    let (tx, rx) = channel(1);
    tx.send(1).unwrap();
    assert_eq!(rx.recv(), Ok(1));
    let (tx, rx) = unbounded();
    tx.send("a").unwrap();
    assert_eq!(rx.try_recv(), Ok("a"));
}

#[test]
fn every_flavor_delivers_in_order_between_green_threads() {
    for (name, tx, rx) in flavors() {
        let got = stackful::run(move || {
            let producer = stackful::spawn(move || {
                for i in 0..1_000 {
                    tx.send(i).unwrap();
                }
            });
            let got: Vec<u64> = rx.iter().collect();
            producer.join().unwrap();
            got
        });
        assert_eq!(got, (0..1_000).collect::<Vec<_>>(), "{name}");
    }
}

#[test]
fn try_operations_report_full_empty_and_disconnected() {
    let (tx, rx) = channel(1);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    tx.try_send(1).unwrap();
    let full = tx.try_send(2).unwrap_err();
    assert!(full.is_full() && !full.is_disconnected());
    assert_eq!(full.into_inner(), 2);
    assert_eq!(
        (tx.len(), tx.capacity(), rx.is_empty()),
        (1, Some(1), false)
    );
    drop(rx);
    let gone = tx.try_send(3).unwrap_err();
    assert!(gone.is_disconnected());
    assert_eq!(tx.send(4), Err(SendError(4)));

    let (tx, rx) = channel::<u8>(0);
    assert!(
        tx.try_send(1).unwrap_err().is_full(),
        "nobody waits on a rendezvous"
    );
    assert_eq!(tx.capacity(), Some(0));
    drop(tx);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(rx.recv(), Err(RecvError));
    assert_eq!(unbounded::<u8>().0.capacity(), None);
}

#[test]
fn messages_sent_before_disconnection_are_still_received() {
    for (name, tx, rx) in flavors().into_iter().skip(1) {
        tx.send(1).unwrap();
        drop(tx);
        assert_eq!(rx.recv(), Ok(1), "{name}");
        assert_eq!(rx.recv(), Err(RecvError), "{name}");
    }
}

#[test]
fn dropping_the_last_sender_or_receiver_wakes_the_waiters() {
    stackful::run(|| {
        for (name, tx, rx) in flavors() {
            let rx2 = rx.clone();
            let waiter = stackful::spawn(move || rx2.recv());
            stackful::sleep(Duration::from_millis(5));
            drop(tx);
            assert_eq!(waiter.join().unwrap(), Err(RecvError), "{name}");
            drop(rx);
        }
        let (tx, rx) = channel::<u8>(1);
        tx.send(0).unwrap(); // now full
        let sender = stackful::spawn(move || tx.send(1));
        stackful::sleep(Duration::from_millis(5));
        drop(rx);
        assert_eq!(sender.join().unwrap(), Err(SendError(1)));
    });
}

#[test]
fn timeouts_hand_back_the_value() {
    stackful::run(|| {
        let (tx, rx) = channel::<u8>(0);
        let start = Instant::now();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(20)),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(start.elapsed() >= Duration::from_millis(20));
        let err = tx.send_timeout(9, Duration::from_millis(20)).unwrap_err();
        assert!(err.is_timeout());
        assert_eq!(err.into_inner(), 9);
        assert!(matches!(
            rx.recv_deadline(Instant::now() + Duration::from_millis(5)),
            Err(RecvTimeoutError::Timeout)
        ));
        // Inside `stackful::timeout` too: the value is not lost.
        let r = stackful::timeout(Duration::from_millis(10), || tx.send(5));
        assert!(r.is_err());
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop(tx);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(RecvTimeoutError::Disconnected)
        );
    });
    let (tx, _rx) = channel::<u8>(1);
    tx.send(1).unwrap();
    assert!(matches!(
        tx.send_timeout(2, Duration::from_millis(5)),
        Err(SendTimeoutError::Timeout(2))
    ));
}

#[test]
fn an_os_thread_feeds_green_threads_and_the_reverse() {
    let (to_green, from_os) = channel::<u32>(4);
    // The OS thread reads only after it has sent everything: unbounded.
    let (to_os, from_green) = unbounded::<u32>();
    let os = std::thread::spawn(move || {
        for i in 0..500 {
            to_green.send(i).unwrap();
        }
        drop(to_green);
        from_green.iter().sum::<u32>()
    });
    stackful::run(move || {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (rx, tx) = (from_os.clone(), to_os.clone());
                stackful::spawn(move || {
                    for v in rx.iter() {
                        tx.send(v * 2).unwrap();
                    }
                })
            })
            .collect();
        drop(to_os);
        stackful::join_all(workers);
    });
    assert_eq!(os.join().unwrap(), (0..500).map(|i| i * 2).sum::<u32>());
}

#[test]
fn no_lost_wake_ups_over_many_rounds() {
    stackful::run(|| {
        for (name, tx, rx) in flavors() {
            let echo = stackful::spawn(move || {
                for _ in 0..3_000 {
                    let v = rx.recv().unwrap();
                    assert!(v < 3_000);
                }
            });
            for i in 0..3_000 {
                tx.send(i).unwrap();
                if i.is_multiple_of(64) {
                    stackful::yield_now();
                }
            }
            echo.join().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // Ping-pong between two green threads, and between OS threads.
        let (a_tx, a_rx) = channel::<u32>(0);
        let (b_tx, b_rx) = channel::<u32>(0);
        let pong = stackful::spawn(move || {
            for v in a_rx.iter() {
                b_tx.send(v + 1).unwrap();
            }
        });
        for i in 0..3_000 {
            a_tx.send(i).unwrap();
            assert_eq!(b_rx.recv(), Ok(i + 1));
        }
        drop(a_tx);
        pong.join().unwrap();
    });
}

/// Many producers and consumers on every flavor, with random cancellations
/// and timeouts. Every message successfully sent is received exactly once,
/// or is still in the channel at the end.
#[test]
fn message_conservation_under_cancellation() {
    for (name, tx, rx) in flavors() {
        let received = Arc::new(Mutex::new(Vec::<u64>::new()));
        let sent = Arc::new(Mutex::new(Vec::<u64>::new()));
        let (received2, sent2) = (received.clone(), sent.clone());
        let leftover_rx = rx.clone();
        stackful::run(move || {
            let mut handles = Vec::new();
            for p in 0..4u64 {
                let (tx, sent) = (tx.clone(), sent2.clone());
                handles.push(stackful::spawn(move || {
                    for i in 0..300u64 {
                        let v = p * 1_000_000 + i;
                        let outcome = if i.is_multiple_of(5) {
                            tx.send_timeout(v, Duration::from_micros(50)).is_ok()
                        } else {
                            tx.send(v).is_ok()
                        };
                        if outcome {
                            sent.lock().unwrap().push(v);
                        }
                    }
                }));
            }
            for c in 0..4u64 {
                let (rx, received) = (rx.clone(), received2.clone());
                handles.push(stackful::spawn(move || {
                    let mut n = 0u64;
                    loop {
                        n += 1;
                        let got = if (n + c).is_multiple_of(7) {
                            match rx.recv_timeout(Duration::from_micros(30)) {
                                Ok(v) => Some(v),
                                Err(RecvTimeoutError::Timeout) => continue,
                                Err(RecvTimeoutError::Disconnected) => None,
                            }
                        } else {
                            rx.recv().ok()
                        };
                        match got {
                            Some(v) => received.lock().unwrap().push(v),
                            None => return,
                        }
                    }
                }));
            }
            // Cancel some receivers and producers mid-flight.
            let victims: Vec<_> = (0..3)
                .map(|k| {
                    let (rx, received) = (rx.clone(), received2.clone());
                    stackful::spawn(move || {
                        for v in rx.iter() {
                            received.lock().unwrap().push(v);
                            if k == 0 {
                                stackful::yield_now();
                            }
                        }
                    })
                })
                .collect();
            stackful::sleep(Duration::from_millis(2));
            for v in &victims {
                v.cancel();
            }
            drop(tx);
            drop(rx);
            stackful::join_all(handles);
            stackful::join_all(victims);
        });
        let mut received = received.lock().unwrap().clone();
        received.extend(leftover_rx.try_iter());
        let sent = sent.lock().unwrap().clone();
        let unique: HashSet<u64> = received.iter().copied().collect();
        assert_eq!(
            unique.len(),
            received.len(),
            "{name}: a message was received twice"
        );
        let sent_set: HashSet<u64> = sent.iter().copied().collect();
        assert_eq!(unique, sent_set, "{name}: sent and received differ");
        assert!(
            sent.len() > 100,
            "{name}: the test sent only {}",
            sent.len()
        );
    }
}

#[test]
fn a_rendezvous_value_handed_to_a_cancelled_receiver_is_not_lost() {
    for _ in 0..50 {
        let (tx, rx) = channel::<u32>(0);
        let got = Arc::new(AtomicUsize::new(0));
        stackful::run(|| {
            let rx1 = rx.clone();
            let doomed = stackful::spawn(move || rx1.recv());
            stackful::sleep(Duration::from_millis(1));
            // Cancel the receiver around the moment a value reaches it.
            let sender = stackful::spawn(move || tx.send(42));
            doomed.cancel();
            let v = match doomed.join() {
                Ok(Ok(v)) => v,
                // Cancelled: the value, if it reached the doomed receiver,
                // stayed in the channel; else the sender still waits.
                _ => rx.recv().unwrap(),
            };
            assert_eq!(v, 42);
            got.fetch_add(1, Ordering::SeqCst);
            sender.join().unwrap().unwrap();
            assert!(rx.try_recv().is_err(), "delivered once, not twice");
        });
        assert_eq!(got.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn select_takes_the_ready_operation() {
    stackful::run(|| {
        let (tx1, rx1) = channel::<u32>(1);
        let (tx2, rx2) = channel::<&str>(1);
        let _keep_rx2_connected = tx2.clone();
        let h = stackful::spawn(move || {
            stackful::sleep(Duration::from_millis(10));
            tx2.send("late").unwrap();
            tx1
        });
        let out = stackful::select! {
            recv(rx1) -> m => format!("rx1 {m:?}"),
            recv(rx2) -> m => format!("rx2 {}", m.unwrap()),
        };
        assert_eq!(out, "rx2 late");
        let tx1 = h.join().unwrap();

        // A send arm proceeds when there is room; default when nothing can.
        let mut sel = Select::new();
        let i = sel.send(&tx1);
        let op = sel.wait();
        assert_eq!(op.index(), i);
        assert_eq!(op.send(&tx1, 5), Ok(()));
        let r = stackful::select! {
            send(tx1, 6) -> res => res.is_ok(),
            default => false,
        };
        assert!(!r, "the channel is full, so default runs");
        let t = stackful::select! {
            recv(rx2) -> _ => "message",
            default(Duration::from_millis(10)) => "timed out",
        };
        assert_eq!(t, "timed out");
        assert_eq!(rx1.recv(), Ok(5));
    });
}

#[test]
fn select_sees_disconnection_and_wrong_channels_panic_clearly() {
    let (tx, rx) = channel::<u8>(1);
    let (_tx2, rx2) = channel::<u8>(1);
    drop(tx);
    let mut sel = Select::new();
    sel.recv(&rx);
    let op = sel.wait();
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op.recv(&rx2))).unwrap_err();
    let msg = err.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(msg.contains("another channel"), "{msg}");
    let mut sel = Select::new();
    sel.recv(&rx);
    assert_eq!(sel.wait().recv(&rx), Err(RecvError));
}

#[test]
fn green_consumers_share_the_work_fairly() {
    let counts = stackful::run(|| {
        let (tx, rx) = channel::<u32>(1);
        let counts = Arc::new(Mutex::new(vec![0usize; 4]));
        let consumers: Vec<_> = (0..4)
            .map(|k| {
                let (rx, counts) = (rx.clone(), counts.clone());
                // All on the pool's workers, so that this measures the
                // channel's fairness: one on `run`'s thread would share it
                // with the sender, which changes who runs first.
                common::spawn_on_pool(move || {
                    for _ in rx.iter() {
                        counts.lock().unwrap()[k] += 1;
                        stackful::sleep(Duration::from_micros(100));
                    }
                })
            })
            .collect();
        for i in 0..400 {
            tx.send(i).unwrap();
        }
        drop(tx);
        stackful::join_all(consumers);
        Arc::try_unwrap(counts).unwrap().into_inner().unwrap()
    });
    assert_eq!(counts.iter().sum::<usize>(), 400);
    assert!(
        counts.iter().all(|&c| c >= 40),
        "a consumer starved: {counts:?}"
    );
}

/// Regression: a rendezvous sender and receiver could each find the other
/// side empty and both queue up, waiting for each other forever.
#[test]
fn regression_rendezvous_sender_and_receiver_never_both_queue_up() {
    for _ in 0..5 {
        let (a_tx, a_rx) = channel::<u32>(0);
        let (b_tx, b_rx) = channel::<u32>(0);
        let pong = std::thread::spawn(move || {
            for v in a_rx.iter() {
                b_tx.send(v + 1).unwrap();
            }
        });
        for i in 0..2_000 {
            a_tx.send(i).unwrap();
            assert_eq!(b_rx.recv(), Ok(i + 1));
        }
        drop(a_tx);
        pong.join().unwrap();
    }
}

#[test]
fn channel_ends_and_primitives_are_send_and_sync() {
    // Fails to compile if any of them loses Send or Sync.
    fn shareable<T: Send + Sync>() {}
    shareable::<Sender<Vec<u8>>>();
    shareable::<Receiver<Vec<u8>>>();
    shareable::<stackful::sync::Mutex<Vec<u8>>>();
    shareable::<stackful::sync::RwLock<Vec<u8>>>();
    shareable::<stackful::sync::Semaphore>();
    shareable::<stackful::sync::Event>();
    shareable::<stackful::sync::Condvar>();
    shareable::<stackful::sync::Barrier>();
    shareable::<stackful::sync::WaitGroup>();
    let (tx, rx) = channel::<u8>(1);
    let t = std::thread::spawn(move || tx.send(3));
    assert_eq!(rx.recv(), Ok(3));
    t.join().unwrap().unwrap();
}

/// Found in review: after a park, `Select` marked every notification it had
/// received as used, then completed an operation on another channel; a
/// plain receiver waiting on the first channel never heard of its message.
#[test]
fn regression_select_passes_on_a_notification_it_did_not_use() {
    let rt = stackful::Runtime::builder().workers(1).build().unwrap();
    for _ in 0..20 {
        let (tx1, rx1) = unbounded::<u32>();
        let (tx2, rx2) = unbounded::<u32>();
        let (rx1a, rx2a) = (rx1.clone(), rx2.clone());
        let selector = rt.spawn(move || {
            let mut sel = Select::new();
            sel.recv(&rx1a);
            sel.recv(&rx2a);
            let op = sel.wait();
            match op.index() {
                0 => op.recv(&rx1a).unwrap(),
                _ => op.recv(&rx2a).unwrap(),
            }
        });
        let plain = rt.spawn(move || {
            let start = Instant::now();
            let got = rx1.recv_timeout(Duration::from_secs(5));
            // Woken by the message, not found at the deadline.
            assert!(start.elapsed() < Duration::from_secs(4), "slept through it");
            got
        });
        // Both wait now (one worker: they ran before this green thread).
        let (tx1, _tx2) = rt
            .spawn(move || {
                tx1.send(10).unwrap();
                tx2.send(20).unwrap(); // no switch between the two sends
                (tx1, tx2)
            })
            .join()
            .unwrap();
        if selector.join().unwrap() == 10 {
            tx1.send(30).unwrap(); // the plain receiver's turn
            assert_eq!(plain.join().unwrap(), Ok(30));
        } else {
            // The select took the other channel: the plain receiver must
            // have heard of the message on its own, not slept through it.
            assert_eq!(
                plain.join().unwrap(),
                Ok(10),
                "the plain receiver missed its message"
            );
        }
        drop(rx2);
    }
}

#[test]
fn select_does_not_depend_on_the_names_in_scope() {
    // A user's items named like the ones the macro uses must not change it.
    #[allow(dead_code)]
    fn drop(_: u8) {}
    #[allow(unused_macros)]
    macro_rules! unreachable {
        () => {
            0
        };
    }
    let (tx, rx) = unbounded::<u32>();
    tx.send(3).unwrap();
    let got = stackful::select! {
        recv(rx) -> v => v.unwrap(),
    };
    assert_eq!(got, 3);
}
