//! Review of issue 13 (select redesign): rendezvous pairings abandoned by
//! a select, selects on both ends under timeouts and cancellation, and the
//! auto traits of channel ends.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stackful::sync::{Select, channel, unbounded};

/// Dropped exactly once, counted.
struct Counted(Arc<AtomicUsize>, u32);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A lazy send arm whose message expression panics releases the plain
/// receiver it had paired with.
#[test]
fn a_panicking_message_expression_releases_its_rendezvous_partner() {
    for green in [true, false] {
        let body = move || {
            let drops = Arc::new(AtomicUsize::new(0));
            let (tx, rx) = channel::<Counted>(0);
            let (got_tx, got_rx) = unbounded::<u32>();
            let recv_side = move || {
                let v = rx.recv().unwrap();
                got_tx.send(v.1).unwrap();
            };
            let h: Box<dyn FnOnce()> = if green {
                let h = stackful::spawn(recv_side);
                Box::new(move || h.join().unwrap())
            } else {
                let h = std::thread::spawn(recv_side);
                Box::new(move || h.join().unwrap())
            };
            for round in 0..50u32 {
                let r = catch_unwind(AssertUnwindSafe(|| {
                    stackful::select! {
                        send(tx, {
                            if round < 49 { panic!("message expression") }
                            Counted(drops.clone(), 7)
                        }) -> r => r.unwrap(),
                    }
                }));
                assert_eq!(r.is_err(), round < 49);
            }
            h();
            assert_eq!(got_rx.recv().unwrap(), 7);
            assert_eq!(drops.load(Ordering::SeqCst), 1);
        };
        if green {
            common::within(60, move || stackful::run(body));
        } else {
            common::within(60, body);
        }
    }
}

/// Selects against selects and plain ends on rendezvous channels, with
/// timeouts and cancellations everywhere: every message is received once
/// and dropped once. Meant for ASan.
#[test]
fn rendezvous_selects_with_timeouts_and_cancellation_lose_and_duplicate_nothing() {
    const N: u32 = 400;
    for green in [true, false] {
        let body = move || {
            let drops = Arc::new(AtomicUsize::new(0));
            let (tx, rx) = channel::<Counted>(0);
            let (tx2, rx2) = channel::<Counted>(0);
            let (seen_tx, seen_rx) = unbounded::<u32>();
            let mut joins: Vec<Box<dyn FnOnce()>> = Vec::new();
            for k in 0..2u32 {
                let (rx, rx2, seen_tx) = (rx.clone(), rx2.clone(), seen_tx.clone());
                let f = move || {
                    let mut round = 0u32;
                    loop {
                        round += 1;
                        let got = |v: Counted| seen_tx.send(v.1).unwrap();
                        let over = match (round + k) % 4 {
                            0 => {
                                let r = stackful::timeout(Duration::from_micros(150), || {
                                    stackful::select! {
                                        recv(rx) -> v => v.ok(),
                                        recv(rx2) -> v => v.ok(),
                                    }
                                });
                                match r {
                                    Ok(Some(v)) => {
                                        got(v);
                                        false
                                    }
                                    Ok(None) => true,
                                    Err(_) => false,
                                }
                            }
                            1 => stackful::select! {
                                recv(rx) -> v => match v { Ok(v) => { got(v); false } Err(_) => true },
                                recv(rx2) -> v => match v { Ok(v) => { got(v); false } Err(_) => true },
                                default(Duration::from_micros(100)) => false,
                            },
                            2 => match rx.recv_timeout(Duration::from_micros(100)) {
                                Ok(v) => {
                                    got(v);
                                    false
                                }
                                Err(e) => e.is_disconnected(),
                            },
                            _ => match stackful::timeout(Duration::from_micros(100), || rx2.recv())
                            {
                                Ok(Ok(v)) => {
                                    got(v);
                                    false
                                }
                                Ok(Err(_)) => true,
                                Err(_) => false,
                            },
                        };
                        if over {
                            // Drain the other channel too.
                            while let Ok(v) = rx.recv() {
                                got(v)
                            }
                            while let Ok(v) = rx2.recv() {
                                got(v)
                            }
                            return;
                        }
                    }
                };
                joins.push(if green {
                    let h = stackful::spawn(f);
                    Box::new(move || h.join().unwrap())
                } else {
                    let h = std::thread::spawn(f);
                    Box::new(move || h.join().unwrap())
                });
            }
            drop(seen_tx);
            for i in 0..N {
                let mut round = 0;
                loop {
                    round += 1;
                    let sent = match (i + round) % 3 {
                        0 => {
                            let r = stackful::timeout(Duration::from_micros(120), || {
                                stackful::select! {
                                    send(tx, Counted(drops.clone(), i)) -> r => r.is_ok(),
                                    send(tx2, Counted(drops.clone(), i)) -> r => r.is_ok(),
                                }
                            });
                            r.unwrap_or(false)
                        }
                        1 => stackful::select! {
                            send(tx, Counted(drops.clone(), i)) -> r => r.is_ok(),
                            send(tx2, Counted(drops.clone(), i)) -> r => r.is_ok(),
                            default(Duration::from_micros(100)) => false,
                        },
                        _ => tx
                            .send_timeout(Counted(drops.clone(), i), Duration::from_micros(100))
                            .is_ok(),
                    };
                    if sent {
                        break;
                    }
                }
            }
            drop((tx, tx2));
            for j in joins {
                j();
            }
            let mut got: Vec<u32> = seen_rx.iter().collect();
            got.sort_unstable();
            assert_eq!(got, (0..N).collect::<Vec<_>>());
            // Every message built was dropped once: the N delivered, and
            // those given back on a failed send.
            let d = drops.load(Ordering::SeqCst);
            assert!(d >= N as usize, "{d} drops for {N} messages");
        };
        if green {
            common::within(120, move || {
                stackful::Runtime::builder()
                    .workers(2)
                    .build()
                    .unwrap()
                    .run(body)
            });
        } else {
            common::within(120, body);
        }
    }
}

/// A `Select` with two receives on one rendezvous channel and a send on it,
/// against a twin: they pair up, never with themselves, never hang.
#[test]
fn twin_selects_with_both_ends_of_one_rendezvous_pair_up() {
    for _ in 0..3 {
        common::within(60, || {
            let (tx, rx) = channel::<u32>(0);
            let count = Arc::new(AtomicUsize::new(0));
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let (tx, rx, count) = (tx.clone(), rx.clone(), count.clone());
                    std::thread::spawn(move || {
                        for i in 0..2000u32 {
                            let mut sel = Select::new();
                            let s = sel.send(&tx);
                            let r1 = sel.recv(&rx);
                            let r2 = sel.recv(&rx);
                            let op = sel.select();
                            match op.index() {
                                i2 if i2 == s => op.send(&tx, i).unwrap(),
                                i2 if i2 == r1 || i2 == r2 => {
                                    op.recv(&rx).unwrap();
                                    count.fetch_add(1, Ordering::SeqCst);
                                }
                                _ => unreachable!(),
                            }
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(count.load(Ordering::SeqCst), 2000);
        });
    }
}

/// Contract check: ends of a channel of `Send + !Sync` messages (a `Cell`)
/// are `Send` and `Sync`, as crossbeam's and std's are.
// Fails to compile today (finding): enable with
// RUSTFLAGS="--cfg review_send_bound".
#[test]
fn an_abandoned_pairing_meets_a_partner_that_queued_meanwhile() {
    let (tx, rx) = channel::<u32>(0);
    let (got_tx, got_rx) = unbounded::<u32>();
    let receiver = std::thread::spawn(move || {
        got_tx.send(rx.recv().unwrap()).unwrap();
    });
    // Let the receiver queue up first, so that the select claims it.
    std::thread::sleep(Duration::from_millis(300));
    let mut sel = Select::new();
    sel.send(&tx);
    let op = sel.select(); // paired with the plain receiver
    // A plain sender queues up while the pairing is pending.
    let tx2 = tx.clone();
    let sender = std::thread::spawn(move || {
        let _ = tx2.send_timeout(5, Duration::from_secs(5));
    });
    // No end here can observe that it queued: give it time.
    std::thread::sleep(Duration::from_millis(300));
    // Drop the selected operation uncompleted: the receiver is released.
    let dropped = catch_unwind(AssertUnwindSafe(move || drop(op)));
    assert!(dropped.is_err());
    let got = got_rx.recv_timeout(Duration::from_secs(3));
    sender.join().unwrap();
    // On failure the receiver waits forever: leave it behind.
    assert_eq!(
        got,
        Ok(5),
        "the released receiver never met the sender that queued meanwhile"
    );
    receiver.join().unwrap();
}

/// Review of issue 13: channel ends are `Send` for messages that are `Send`
/// but not `Sync`, as std's and crossbeam's are.
#[test]
fn ends_of_a_channel_of_send_but_not_sync_messages_are_send() {
    fn assert_send<X: Send>(_: &X) {}
    let (tx, rx) = channel::<std::cell::Cell<u8>>(0);
    assert_send(&tx);
    assert_send(&rx);
    let (tx, rx) = unbounded::<std::cell::RefCell<u8>>();
    assert_send(&tx);
    assert_send(&rx);
}
