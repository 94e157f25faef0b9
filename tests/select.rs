//! `Select` and `select!`: syntax, fair choice, selects meeting selects on
//! rendezvous channels, lazy send arms, linearizable `default`, readiness.
//! Each behaviour runs on green threads and on plain OS threads.

mod common;

use common::{Joiner, both};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stackful::sync::{
    Receiver, RecvError, Select, SendError, Sender, TryReadyError, TrySelectError, channel,
    unbounded,
};

#[test]
fn every_crossbeam_form_of_select_compiles_and_runs() {
    let (tx, rx) = unbounded::<i32>();
    let (stx, srx) = channel::<i32>(4);
    tx.send(1).unwrap();
    // An expression followed by a comma, and a block followed by a comma.
    let a = stackful::select! {
        recv(rx) -> v => v.unwrap(),
        recv(srx) -> v => { v.unwrap() + 100 },
    };
    assert_eq!(a, 1);
    tx.send(2).unwrap();
    // A block without a comma, then a last expression without one.
    let b = stackful::select! {
        recv(rx) -> v => { v.unwrap() }
        recv(srx) -> v => v.unwrap() + 100
    };
    assert_eq!(b, 2);
    // A block as the last arm, with a trailing comma; trailing commas in
    // the arguments.
    let c = stackful::select! {
        send(stx, 7,) -> r => { r.unwrap(); 7 },
        recv(rx,) -> _ => { 0 },
    };
    assert_eq!(c, 7);
    let d = stackful::select! {
        recv(srx) -> v => v.unwrap(),
        default => -1,
    };
    assert_eq!(d, 7);
    let e = stackful::select! {
        recv(srx) -> v => v.unwrap(),
        default => { -1 }
    };
    assert_eq!(e, -1);
    let f = stackful::select! {
        recv(srx) -> v => v.unwrap(),
        default(Duration::from_millis(5),) => { -2 },
    };
    assert_eq!(f, -2);
    // `default` first, and a reference as the channel.
    tx.send(9).unwrap();
    let g = stackful::select! {
        default(Duration::from_secs(5)) => -3,
        recv(&rx) -> v => v.unwrap(),
    };
    assert_eq!(g, 9);
    // Only a default.
    let h = stackful::select! { default => 4 };
    assert_eq!(h, 4);
    // A send arm with a block body and no comma, then an expression.
    let i = stackful::select! {
        send(&tx, 10) -> r => { assert_eq!(r, Ok(())); 10 }
        recv(srx) -> _ => 0
    };
    assert_eq!(i, 10);
    // Bodies may leave loops.
    let mut n = 0;
    loop {
        stackful::select! {
            recv(rx) -> v => { n += v.unwrap(); continue; }
            default => break,
        }
    }
    assert_eq!(n, 10);
    let j = stackful::select_biased! {
        recv(rx) -> _ => 1,
        default => { 2 }
    };
    assert_eq!(j, 2);
}

#[test]
fn each_channel_expression_is_evaluated_once_and_only_the_selected_message_is_built() {
    let (tx1, rx1) = channel::<u32>(1);
    let (tx2, _rx2) = channel::<u32>(1);
    tx2.send(0).unwrap(); // full: its arm cannot be selected
    let evaluated = AtomicUsize::new(0);
    let built = AtomicUsize::new(0);
    let chan = |t: &'static str| {
        evaluated.fetch_add(1, Ordering::SeqCst);
        t
    };
    let pick = |t: &'static str| if t == "one" { &tx1 } else { &tx2 };
    let sent = stackful::select! {
        send(pick(chan("one")), { built.fetch_add(1, Ordering::SeqCst); 1 }) -> r => r.is_ok(),
        send(pick(chan("two")), { built.fetch_add(100, Ordering::SeqCst); 2 }) -> r => r.is_ok(),
    };
    assert!(sent);
    assert_eq!(
        evaluated.load(Ordering::SeqCst),
        2,
        "each channel expression once"
    );
    assert_eq!(
        built.load(Ordering::SeqCst),
        1,
        "only the selected arm's message"
    );
    assert_eq!(rx1.recv(), Ok(1));
    let none = stackful::select! {
        send(tx2, { built.fetch_add(1000, Ordering::SeqCst); 3 }) -> _ => false,
        default => true,
    };
    assert!(none);
    assert_eq!(
        built.load(Ordering::SeqCst),
        1,
        "an unselected send builds nothing"
    );
}

/// Counts how often each of two ready operations wins.
fn two_ready_counts(biased: bool, sends: bool) -> [usize; 2] {
    let (tx1, rx1) = unbounded::<u8>();
    let (tx2, rx2) = unbounded::<u8>();
    let mut counts = [0; 2];
    for _ in 0..10_000 {
        let mut sel = if biased {
            Select::new_biased()
        } else {
            Select::new()
        };
        let op = if sends {
            sel.send(&tx1);
            sel.send(&tx2);
            let op = sel.select();
            let i = op.index();
            let tx = if i == 0 { &tx1 } else { &tx2 };
            op.send(tx, 0).unwrap();
            i
        } else {
            tx1.send(1).unwrap();
            tx2.send(2).unwrap();
            sel.recv(&rx1);
            sel.recv(&rx2);
            let op = sel.select();
            let i = op.index();
            let rx = if i == 0 { &rx1 } else { &rx2 };
            op.recv(rx).unwrap();
            i
        };
        counts[op] += 1;
        while rx1.try_recv().is_ok() {}
        while rx2.try_recv().is_ok() {}
    }
    counts
}

#[test]
fn the_choice_among_ready_operations_is_fair_and_biased_on_request() {
    both(|_| {
        for sends in [false, true] {
            let counts = two_ready_counts(false, sends);
            for c in counts {
                assert!(
                    (4_000..=6_000).contains(&c),
                    "unfair choice (sends: {sends}): {counts:?}"
                );
            }
            assert_eq!(two_ready_counts(true, sends), [10_000, 0]);
        }
        // Three ready receives: each about a third.
        let chans: Vec<_> = (0..3).map(|_| unbounded::<u8>()).collect();
        let mut counts = [0usize; 3];
        for _ in 0..9_000 {
            for (tx, _) in &chans {
                tx.send(0).unwrap();
            }
            let mut sel = Select::new();
            for (_, rx) in &chans {
                sel.recv(rx);
            }
            let op = sel.select();
            let i = op.index();
            op.recv(&chans[i].1).unwrap();
            counts[i] += 1;
            for (_, rx) in &chans {
                while rx.try_recv().is_ok() {}
            }
        }
        assert!(
            counts.iter().all(|&c| (2_400..=3_600).contains(&c)),
            "{counts:?}"
        );
    });
}

/// A select that sends on one rendezvous channel meets a select that
/// receives on it; each message is delivered once, in order.
#[test]
fn a_select_meets_a_select_on_a_rendezvous_channel() {
    both(|spawn| {
        const N: u32 = 2_000;
        let (tx, rx) = channel::<u32>(0);
        let (_never_tx, never_rx) = channel::<u32>(0);
        let (other_tx, _other_rx) = channel::<u32>(0);
        let sender = spawn(Box::new(move || {
            for i in 0..N {
                stackful::select! {
                    send(tx, i) -> r => r.unwrap(),
                    recv(never_rx) -> _ => unreachable!(),
                }
            }
        }));
        for i in 0..N {
            let got = stackful::select! {
                recv(rx) -> v => v.unwrap(),
                send(other_tx, u32::MAX) -> _ => unreachable!(),
            };
            assert_eq!(got, i);
        }
        sender.join();
    });
}

/// Go's self-select: two peers each run a select with both a send and a
/// receive on the same rendezvous channel; they must pair with each other
/// (a select never pairs with itself).
#[test]
fn selects_with_a_send_and_a_receive_on_one_rendezvous_channel_pair_up() {
    both(|spawn| {
        const N: usize = 1_000;
        let (tx, rx) = channel::<usize>(0);
        let sent = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(AtomicUsize::new(0));
        let peer = |tx: Sender<usize>,
                    rx: Receiver<usize>,
                    s: Arc<AtomicUsize>,
                    r: Arc<AtomicUsize>| {
            move || {
                for i in 0..N {
                    stackful::select! {
                        send(tx, i) -> res => { res.unwrap(); s.fetch_add(1, Ordering::SeqCst); }
                        recv(rx) -> v => { v.unwrap(); r.fetch_add(1, Ordering::SeqCst); }
                    }
                }
            }
        };
        let a = spawn(Box::new(peer(
            tx.clone(),
            rx.clone(),
            sent.clone(),
            received.clone(),
        )));
        peer(tx, rx, sent.clone(), received.clone())();
        a.join();
        assert_eq!(sent.load(Ordering::SeqCst), N);
        assert_eq!(received.load(Ordering::SeqCst), N);
    });
}

/// Plain operations and selects, in every pairing, on one rendezvous
/// channel: many senders of each kind, many receivers of each kind.
#[test]
fn plain_and_select_ends_mix_on_a_rendezvous_channel() {
    both(|spawn| {
        const PER: usize = 500;
        let (tx, rx) = channel::<usize>(0);
        let total = Arc::new(AtomicUsize::new(0));
        let mut peers = Vec::new();
        for k in 0..2 {
            let tx = tx.clone();
            peers.push(spawn(Box::new(move || {
                for i in 0..PER {
                    if k == 0 {
                        tx.send(i).unwrap();
                    } else {
                        let mut sel = Select::new();
                        sel.send(&tx);
                        sel.select().send(&tx, i).unwrap();
                    }
                }
            })));
        }
        for k in 0..2 {
            let (rx, total) = (rx.clone(), total.clone());
            peers.push(spawn(Box::new(move || {
                for _ in 0..PER {
                    let v = if k == 0 {
                        rx.recv().unwrap()
                    } else {
                        stackful::select! { recv(rx) -> v => v.unwrap() }
                    };
                    total.fetch_add(v, Ordering::SeqCst);
                }
            })));
        }
        for p in peers {
            p.join();
        }
        assert_eq!(total.load(Ordering::SeqCst), 2 * PER * (PER - 1) / 2);
        assert_eq!(rx.try_recv(), Err(stackful::sync::TryRecvError::Empty));
    });
}

/// crossbeam's `linearizable_default`/`linearizable_try`, our own shape:
/// A sends on 1, then selects over 1 and 2 with a default; B sends on 2,
/// then steals from 1. One of the two always holds a message, so the
/// default must never run.
fn linearizable_rounds(
    bounded: bool,
    use_macro: bool,
    spawn: &dyn Fn(Box<dyn FnOnce() + Send>) -> Joiner,
) {
    const ROUNDS: usize = 100_000;
    let make = || {
        if bounded {
            channel::<u8>(1)
        } else {
            unbounded::<u8>()
        }
    };
    let ((tx1, rx1), (tx2, rx2)) = (make(), make());
    let go = Arc::new(stackful::sync::Barrier::new(2));
    let done = Arc::new(stackful::sync::Barrier::new(2));
    let b = {
        let (go, done, rx1, tx2) = (go.clone(), done.clone(), rx1.clone(), tx2.clone());
        spawn(Box::new(move || {
            for _ in 0..ROUNDS {
                go.wait();
                tx2.send(2).unwrap();
                let _ = rx1.try_recv();
                done.wait();
            }
        }))
    };
    for round in 0..ROUNDS {
        go.wait();
        tx1.send(1).unwrap();
        let got = if use_macro {
            stackful::select! {
                recv(rx1) -> v => v.is_ok(),
                recv(rx2) -> v => v.is_ok(),
                default => false,
            }
        } else {
            let mut sel = Select::new();
            sel.recv(&rx1);
            sel.recv(&rx2);
            match sel.try_select() {
                Ok(op) => {
                    let i = op.index();
                    op.recv(if i == 0 { &rx1 } else { &rx2 }).is_ok()
                }
                Err(TrySelectError) => false,
            }
        };
        assert!(
            got,
            "round {round}: `default` ran while a message was always there"
        );
        done.wait();
        while rx1.try_recv().is_ok() {}
        while rx2.try_recv().is_ok() {}
    }
    b.join();
}

#[test]
fn a_default_arm_runs_only_when_nothing_was_ready_at_some_instant() {
    both(|spawn| {
        for bounded in [true, false] {
            linearizable_rounds(bounded, true, spawn);
        }
    });
}

#[test]
fn try_select_is_linearizable() {
    both(|spawn| {
        for bounded in [true, false] {
            linearizable_rounds(bounded, false, spawn);
        }
    });
}

/// A selected rendezvous send whose `SelectedOperation` is dropped panics
/// clearly, and the receiver it was paired with goes back to waiting: a
/// later send reaches it.
#[test]
fn a_dropped_selected_send_panics_and_wedges_nothing() {
    both(|spawn| {
        let (tx, rx) = channel::<u32>(0);
        let (got_tx, got_rx) = unbounded::<Result<u32, RecvError>>();
        let receiver = spawn(Box::new(move || got_tx.send(rx.recv()).unwrap()));
        let mut sel = Select::new();
        sel.send(&tx);
        let op = sel.select(); // pairs with the waiting receiver
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(op))).unwrap_err();
        let text = common::panic_text(err);
        assert!(text.contains("without completing"), "{text}");
        tx.send(5).unwrap();
        receiver.join();
        assert_eq!(got_rx.recv(), Ok(Ok(5)));
    });
}

/// The same with a select on the receiving side.
#[test]
fn a_dropped_selected_send_releases_a_receiving_select() {
    both(|spawn| {
        let (tx, rx) = channel::<u32>(0);
        let (got_tx, got_rx) = unbounded::<u32>();
        let receiver = spawn(Box::new(move || {
            let v = stackful::select! { recv(rx) -> v => v.unwrap() };
            got_tx.send(v).unwrap();
        }));
        loop {
            let mut sel = Select::new();
            sel.send(&tx);
            if let Ok(op) = sel.select_timeout(Duration::from_millis(1)) {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(op)));
                break;
            }
        }
        tx.send(6).unwrap();
        receiver.join();
        assert_eq!(got_rx.recv(), Ok(6));
    });
}

#[test]
fn a_select_is_reusable_round_after_round_and_reports_disconnection() {
    both(|_| {
        let (tx, rx) = channel::<u32>(2);
        let (tx2, rx2) = unbounded::<u32>();
        let mut sel = Select::new();
        let r = sel.recv(&rx);
        let s = sel.send(&tx2);
        for round in 0..10 {
            tx.send(round).unwrap();
            let op = sel.select();
            if op.index() == r {
                assert_eq!(op.recv(&rx), Ok(round));
            } else {
                assert_eq!(op.index(), s);
                op.send(&tx2, round).unwrap();
                assert_eq!(rx.recv(), Ok(round));
            }
        }
        assert!(rx2.try_iter().count() <= 10);
        drop(rx2);
        drop(tx);
        // Both operations are ready now: one disconnected each way.
        let op = sel.select();
        if op.index() == r {
            assert_eq!(op.recv(&rx), Err(RecvError));
        } else {
            assert_eq!(op.send(&tx2, 1), Err(SendError(1)));
        }
    });
}

#[test]
fn ready_waits_without_performing_the_operation() {
    both(|spawn| {
        let (tx, rx) = channel::<u32>(0);
        let (btx, brx) = channel::<u32>(1);
        let mut sel = Select::new();
        sel.recv(&rx);
        let b = sel.recv(&brx);
        assert_eq!(sel.try_ready(), Err(TryReadyError));
        assert!(sel.ready_timeout(Duration::from_millis(5)).is_err());
        let peer = spawn(Box::new(move || btx.send(3).unwrap()));
        assert_eq!(sel.ready(), b);
        peer.join();
        assert_eq!(brx.try_recv(), Ok(3), "ready took nothing");
        // A rendezvous sender waiting makes the receive ready.
        let mut sel = Select::new();
        let r = sel.recv(&rx);
        let peer = spawn(Box::new(move || tx.send(4).unwrap()));
        assert_eq!(sel.ready(), r);
        assert_eq!(rx.recv(), Ok(4));
        peer.join();
    });
}

#[test]
fn is_full_matches_each_flavor() {
    let (tx, rx) = channel::<u8>(2);
    assert!(!tx.is_full());
    tx.send(1).unwrap();
    assert!(!rx.is_full());
    tx.send(2).unwrap();
    assert!(tx.is_full() && rx.is_full());
    let (tx, _rx) = unbounded::<u8>();
    tx.send(1).unwrap();
    assert!(!tx.is_full());
    let (tx, _rx) = channel::<u8>(0);
    assert!(tx.is_full());
}

#[test]
fn a_select_borrows_channels_of_non_static_messages() {
    let text = String::from("borrowed");
    let (tx, rx) = unbounded::<&str>();
    tx.send(&text).unwrap();
    let mut sel = Select::new();
    sel.recv(&rx);
    let op = sel.select();
    assert_eq!(op.recv(&rx), Ok("borrowed"));
}

#[test]
fn selects_time_out_and_are_cancelled_without_losing_a_rendezvous() {
    both(|spawn| {
        // Receivers that time out at random; the sender retries; every
        // message arrives exactly once.
        const N: u32 = 300;
        let (tx, rx) = channel::<u32>(0);
        let (seen_tx, seen_rx) = unbounded::<u32>();
        let receivers: Vec<_> = (0..2)
            .map(|_| {
                let (rx, seen_tx) = (rx.clone(), seen_tx.clone());
                spawn(Box::new(move || {
                    loop {
                        let mut sel = Select::new();
                        sel.recv(&rx);
                        if let Ok(op) = sel.select_timeout(Duration::from_micros(200)) {
                            match op.recv(&rx) {
                                Ok(v) => seen_tx.send(v).unwrap(),
                                Err(_) => return,
                            }
                        }
                    }
                }))
            })
            .collect();
        drop(seen_tx);
        for i in 0..N {
            loop {
                let mut sel = Select::new();
                sel.send(&tx);
                if let Some(op) = sel.wait_timeout(Duration::from_micros(300)) {
                    op.send(&tx, i).unwrap();
                    break;
                }
            }
        }
        drop(tx);
        for r in receivers {
            r.join();
        }
        let mut got: Vec<u32> = seen_rx.iter().collect();
        got.sort_unstable();
        assert_eq!(got, (0..N).collect::<Vec<_>>());
    });
}
