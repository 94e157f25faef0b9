//! A send selected on a bounded channel reserves its room until its message
//! is built: it never waits, whatever the select's `default` or timeout;
//! plain senders see the room as taken meanwhile, and get it back if the
//! selected operation is dropped. Green threads and OS threads alike.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use stackful::sync::{Select, TrySendError, channel, unbounded};

/// The message expression lets another sender try to take the room the
/// select saw. Before reservations, that sender took it and the selected
/// send then waited for room, in a select with `default`.
#[test]
fn a_default_select_whose_send_was_selected_never_waits() {
    common::each_mode(|mode| {
        common::within(60, move || {
            for _ in 0..20 {
                let (tx, rx) = channel::<u32>(1);
                let (go_tx, go_rx) = unbounded::<()>();
                let (took_tx, took_rx) = unbounded::<bool>();
                let filler = {
                    let tx = tx.clone();
                    mode.spawn(move || {
                        go_rx.recv().unwrap();
                        took_tx.send(tx.try_send(99).is_ok()).unwrap();
                    })
                };
                let sent = stackful::select! {
                    send(tx, {
                        go_tx.send(()).unwrap();
                        // The other sender found the room reserved.
                        assert!(!took_rx.recv().unwrap(), "a plain send took reserved room");
                        1
                    }) -> r => r.is_ok(),
                    default => false,
                };
                assert!(sent);
                filler.join();
                assert_eq!(rx.try_recv(), Ok(1));
                assert!(rx.try_recv().is_err());
            }
        })
    });
}

/// The same with a timeout, whose deadline the selected send cannot miss.
#[test]
fn a_timed_select_whose_send_was_selected_never_waits() {
    common::each_mode(|_mode| {
        let (tx, rx) = channel::<u32>(1);
        let tx2 = tx.clone();
        let sent = stackful::select! {
            send(tx, {
                assert_eq!(tx2.try_send(7), Err(TrySendError::Full(7)));
                1
            }) -> r => r.is_ok(),
            default(Duration::from_millis(10)) => false,
        };
        assert!(sent);
        assert_eq!(rx.try_recv(), Ok(1));
    });
}

/// A dropped selected send gives its room back: a plain sender that waited
/// for it gets it.
#[test]
fn a_dropped_selected_send_gives_its_room_back_to_a_waiting_sender() {
    common::each_mode(|mode| {
        let (tx, rx) = channel::<u32>(2);
        tx.send(0).unwrap();
        let mut sel = Select::new();
        sel.send(&tx);
        let op = sel.try_select().expect("room for one");
        assert_eq!(
            tx.try_send(5),
            Err(TrySendError::Full(5)),
            "the room is reserved"
        );
        let (started_tx, started_rx) = unbounded::<()>();
        let waiter = {
            let tx = tx.clone();
            mode.spawn(move || {
                started_tx.send(()).unwrap();
                tx.send(6).unwrap(); // waits for the reserved room
            })
        };
        started_rx.recv().unwrap();
        // Dropped uncompleted: it panics, after giving the room back.
        let dropped = catch_unwind(AssertUnwindSafe(move || drop(op)));
        assert!(dropped.is_err(), "a dropped SelectedOperation panics");
        waiter.join();
        assert_eq!(rx.try_recv(), Ok(0));
        assert_eq!(rx.try_recv(), Ok(6));
        assert!(rx.try_recv().is_err());
        drop(sel);
    });
}

/// Reservations count against the capacity, one per selected send, and
/// each completes in order of completion.
#[test]
fn reservations_fill_the_capacity_and_complete_without_waiting() {
    let (tx, rx) = channel::<u32>(3);
    let mut sels: Vec<Select> = (0..3)
        .map(|_| {
            let mut s = Select::new();
            s.send(&tx);
            s
        })
        .collect();
    let mut ops: Vec<_> = sels
        .iter_mut()
        .map(|s| s.try_select().expect("room"))
        .collect();
    assert_eq!(rx.len(), 0, "reservations are not messages");
    let mut fourth = Select::new();
    fourth.send(&tx);
    assert!(fourth.try_select().is_err(), "no room left to reserve");
    assert!(tx.try_send(9).is_err(), "no room left for a plain send");
    for (i, op) in ops.drain(..).rev().enumerate() {
        op.send(&tx, i as u32).unwrap();
    }
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [0, 1, 2]);
    assert!(tx.try_send(9).is_ok());
}

/// A reservation whose receivers all leave completes with the message
/// handed back.
#[test]
fn a_reserved_send_on_a_disconnected_channel_hands_the_message_back() {
    let (tx, rx) = channel::<String>(1);
    let mut sel = Select::new();
    sel.send(&tx);
    let op = sel.select();
    drop(rx);
    let back = op.send(&tx, "kept".to_string()).unwrap_err();
    assert_eq!(back.0, "kept");
}

/// Many selecting senders on a small channel, green threads and OS threads:
/// every message arrives once, none waits past its select's timeout.
#[test]
fn selected_sends_race_plain_sends_and_lose_nothing() {
    common::each_mode(|mode| {
        let (tx, rx) = channel::<u64>(2);
        let senders: Vec<_> = (0..4u64)
            .map(|k| {
                let tx = tx.clone();
                mode.spawn(move || {
                    let mut sent = 0u64;
                    let mut i = 0;
                    while i < 500 {
                        let v = k << 32 | i;
                        let ok = if k % 2 == 0 {
                            stackful::select! {
                                send(tx, v) -> r => { r.unwrap(); true },
                                default(Duration::from_millis(1)) => false,
                            }
                        } else {
                            tx.send_timeout(v, Duration::from_millis(1)).is_ok()
                        };
                        if ok {
                            sent += v;
                            i += 1;
                        }
                    }
                    sent
                })
            })
            .collect();
        drop(tx);
        let received: u64 = rx.iter().sum();
        let sent: u64 = senders.into_iter().map(|s| s.join()).sum();
        assert_eq!(received, sent);
    });
}
