//! Channels, continued: `same_channel`, what dropping the last receiver
//! does, large messages on small stacks, and what a send or receive that
//! is cut short by a timeout or a cancellation guarantees.
//!
//! Most cases run three ways through [`each_mode`]: on a green thread of a
//! one-worker runtime, of a two-worker runtime, and on plain OS threads.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    DropCounter, Handle, Mode, each_green, each_mode, output_within_a_minute, panic_text,
};
use stackful::sync::{
    Event, Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError, TrySendError,
    channel, unbounded,
};

/// One channel of each flavor.
fn flavors<T>() -> Vec<(&'static str, Sender<T>, Receiver<T>)> {
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

/// Spins, without suspending, for `d`.
fn spin_for(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

// ---------------------------------------------------------------------------
// Item 7: same_channel.

#[test]
fn same_channel_tells_ends_of_one_channel_from_another() {
    for (name, tx, rx) in flavors::<u8>() {
        let (other_tx, other_rx) = channel::<u8>(1);
        let (tx2, rx2) = (tx.clone(), rx.clone());
        assert!(tx.same_channel(&tx2), "{name}");
        assert!(rx.same_channel(&rx2), "{name}");
        assert!(tx.same_channel(&tx), "{name}");
        assert!(!tx.same_channel(&other_tx), "{name}");
        assert!(!rx.same_channel(&other_rx), "{name}");
        // Still true once the other side is gone.
        drop((rx, rx2));
        assert!(tx.same_channel(&tx2), "{name}");
    }
}

// ---------------------------------------------------------------------------
// Item 8: dropping the last receiver drops the queued messages.

#[test]
fn dropping_the_last_receiver_drops_the_queued_messages() {
    each_mode(|_| {
        for (name, tx, rx) in flavors::<DropCounter>() {
            let dropped = Arc::new(AtomicUsize::new(0));
            let queued = match tx.capacity() {
                Some(0) => 0,
                Some(n) => n.min(3),
                None => 3,
            };
            for _ in 0..queued {
                tx.try_send(DropCounter(dropped.clone())).unwrap();
            }
            let rx2 = rx.clone();
            drop(rx);
            assert_eq!(
                dropped.load(Ordering::SeqCst),
                0,
                "{name}: a receiver is left"
            );
            drop(rx2);
            assert_eq!(
                dropped.load(Ordering::SeqCst),
                queued,
                "{name}: the last receiver is gone, so are the messages"
            );
            // A send now fails and hands the message back, undropped.
            let err = tx.send(DropCounter(dropped.clone())).unwrap_err();
            assert_eq!(dropped.load(Ordering::SeqCst), queued, "{name}");
            drop(err);
            assert_eq!(dropped.load(Ordering::SeqCst), queued + 1, "{name}");
            let err = tx.try_send(DropCounter(dropped.clone())).unwrap_err();
            assert!(err.is_disconnected(), "{name}");
            assert!(tx.is_empty(), "{name}");
        }
    });
}

#[test]
fn senders_blocked_on_a_full_channel_get_their_message_back_when_the_last_receiver_goes() {
    each_mode(|mode| {
        for cap in [0usize, 1, 3] {
            let (tx, rx) = channel::<DropCounter>(cap);
            let dropped = Arc::new(AtomicUsize::new(0));
            for _ in 0..cap {
                tx.send(DropCounter(dropped.clone())).unwrap();
            }
            let about_to_send = Arc::new(Event::new());
            let senders: Vec<_> = (0..2)
                .map(|_| {
                    let (tx, dropped, ready) = (tx.clone(), dropped.clone(), about_to_send.clone());
                    mode.spawn(move || {
                        ready.set();
                        match tx.send(DropCounter(dropped)) {
                            Ok(()) => panic!("sent into a channel nobody reads"),
                            Err(e) => e.into_inner(),
                        }
                    })
                })
                .collect();
            about_to_send.wait();
            // Likely (not certainly) blocked by now; either way they must
            // end with their message back.
            stackful::sleep(Duration::from_millis(2));
            drop(rx);
            let back: Vec<DropCounter> = senders.into_iter().map(Handle::join).collect();
            // The queued ones are gone; the two handed back are whole.
            assert_eq!(dropped.load(Ordering::SeqCst), cap, "capacity {cap}");
            drop(back);
            assert_eq!(dropped.load(Ordering::SeqCst), cap + 2, "capacity {cap}");
        }
    });
}

/// A message whose destructor panics.
struct Bomb(Arc<AtomicUsize>);

impl Drop for Bomb {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("a queued message panicked when dropped");
    }
}

#[test]
fn a_panicking_message_destructor_surfaces_after_every_message_is_dropped() {
    each_mode(|_| {
        for (name, tx, rx) in flavors::<Result<Bomb, DropCounter>>() {
            if tx.capacity() == Some(0) || tx.capacity() == Some(1) {
                continue; // no room to queue a bomb between two plain messages
            }
            let dropped = Arc::new(AtomicUsize::new(0));
            tx.send(Err(DropCounter(dropped.clone()))).unwrap();
            tx.send(Ok(Bomb(dropped.clone()))).unwrap();
            tx.send(Err(DropCounter(dropped.clone()))).unwrap();
            tx.send(Ok(Bomb(dropped.clone()))).unwrap();
            tx.send(Err(DropCounter(dropped.clone()))).unwrap();
            let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(rx)))
                .expect_err("the destructor's panic reaches the dropping code");
            assert_eq!(
                panic_text(payload),
                "a queued message panicked when dropped",
                "{name}"
            );
            assert_eq!(dropped.load(Ordering::SeqCst), 5, "{name}: all dropped");
            assert!(
                tx.send(Err(DropCounter(dropped.clone()))).is_err(),
                "{name}"
            );
        }
    });
}

#[test]
fn a_panicking_message_destructor_during_a_cancellation_does_not_abort() {
    each_green(|_| {
        let (tx, rx) = unbounded::<Result<Bomb, DropCounter>>();
        let dropped = Arc::new(AtomicUsize::new(0));
        tx.send(Ok(Bomb(dropped.clone()))).unwrap();
        tx.send(Err(DropCounter(dropped.clone()))).unwrap();
        let started = Arc::new(Event::new());
        let s = started.clone();
        let owner = stackful::spawn(move || {
            let _rx = rx; // dropped by the cancellation's unwind
            s.set();
            stackful::sleep(Duration::from_secs(3600));
        });
        started.wait();
        owner.cancel();
        assert!(owner.join().unwrap_err().is_cancelled());
        assert_eq!(dropped.load(Ordering::SeqCst), 2);
        assert!(tx.send(Err(DropCounter(dropped.clone()))).is_err());
    });
}

// ---------------------------------------------------------------------------
// Item 13: large messages fit the default stack.

/// Runs the ignored test `name` of this binary in a child process (a stack
/// overflow aborts the child, not this binary) and fails with its output
/// if it fails or did not run.
fn in_child(name: &str) {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    let out = output_within_a_minute(cmd, name);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains(&format!("child {name} done")),
        "{name} failed in a child process ({}):\n{stderr}",
        out.status
    );
}

const BIG: usize = 64 << 10;
type Big = [u8; BIG];

#[inline(never)]
fn big(seed: u8) -> Big {
    [seed; BIG]
}

#[inline(never)]
fn check(v: &Big, seed: u8) {
    assert!(
        v.iter().all(|&b| b == seed),
        "message {seed} arrived damaged"
    );
}

#[inline(never)]
fn check_recv<E: std::fmt::Debug>(got: &Result<Big, E>, seed: u8) {
    match got {
        Ok(v) => check(v, seed),
        Err(e) => panic!("message {seed} did not arrive: {e:?}"),
    }
}

// Each operation in a function of its own: a debug build gives every
// temporary of a function its own room in the frame, so a body with many
// 64 KiB temporaries would overflow by itself, whatever the channel does.
// Each of these holds what the caller of a channel operation must: the
// argument or the returned `Result`, each as large as the message.

#[inline(never)]
fn send_big(tx: &Sender<Big>, seed: u8) {
    assert!(tx.send(big(seed)).is_ok());
}

#[inline(never)]
fn send_big_timeout(tx: &Sender<Big>, seed: u8) {
    assert!(tx.send_timeout(big(seed), Duration::from_secs(20)).is_ok());
}

#[inline(never)]
fn try_send_big(tx: &Sender<Big>, seed: u8) {
    assert!(tx.try_send(big(seed)).is_ok());
}

#[inline(never)]
fn recv_big(rx: &Receiver<Big>, seed: u8) {
    check_recv(&rx.recv(), seed);
}

#[inline(never)]
fn recv_big_timeout(rx: &Receiver<Big>, seed: u8) {
    check_recv(&rx.recv_timeout(Duration::from_secs(20)), seed);
}

#[inline(never)]
fn try_recv_big(rx: &Receiver<Big>, seed: u8) {
    check_recv(&rx.try_recv(), seed);
}

#[inline(never)]
fn iter_big(rx: &Receiver<Big>, seed: u8) {
    match rx.iter().next() {
        Some(ref v) => check(v, seed),
        None => panic!("no message {seed}"),
    }
}

#[inline(never)]
fn select_send_big(tx: &Sender<Big>, seed: u8) {
    stackful::select! {
        send(tx, big(seed)) -> r => assert!(r.is_ok()),
    }
}

#[inline(never)]
fn select_recv_big(rx: &Receiver<Big>, seed: u8) {
    stackful::select! {
        recv(rx) -> m => check_recv(&m, seed),
    }
}

/// A 64 KiB message through every flavor and every operation, both ends on
/// green threads with the default 256 KiB stack, in a debug build too.
#[test]
fn a_64_kib_message_fits_the_default_stack_through_every_flavor() {
    in_child("child_big_messages_every_flavor");
}

#[test]
#[ignore = "run in a child process by a_64_kib_message_fits_the_default_stack_through_every_flavor"]
fn child_big_messages_every_flavor() {
    for workers in [1, 2] {
        let rt = stackful::Runtime::builder()
            .workers(workers)
            .build()
            .unwrap();
        rt.run(|| {
            for (name, tx, rx) in flavors::<Big>() {
                // Green thread to green thread, blocking operations.
                let tx2 = tx.clone();
                let producer = stackful::spawn(move || {
                    for i in 0..4u8 {
                        send_big(&tx2, i);
                    }
                    send_big_timeout(&tx2, 4);
                });
                for i in 0..4u8 {
                    recv_big(&rx, i);
                }
                recv_big_timeout(&rx, 4);
                producer.join().unwrap();
                // The other direction: the spawned green thread receives.
                let rx2 = rx.clone();
                let consumer = stackful::spawn(move || {
                    for i in 10..13u8 {
                        recv_big(&rx2, i);
                    }
                    iter_big(&rx2, 13);
                });
                for i in 10..14u8 {
                    send_big(&tx, i);
                }
                consumer.join().unwrap();
                // Non-blocking operations, where there is room.
                if tx.capacity() != Some(0) {
                    try_send_big(&tx, 20);
                    try_recv_big(&rx, 20);
                }
                eprintln!("{name} ok on {workers} worker(s)");
            }
        });
    }
    eprintln!("child child_big_messages_every_flavor done");
}

#[test]
fn a_64_kib_message_fits_the_default_stack_through_select() {
    in_child("child_big_messages_select");
}

#[test]
#[ignore = "run in a child process by a_64_kib_message_fits_the_default_stack_through_select"]
fn child_big_messages_select() {
    for workers in [1, 2] {
        let rt = stackful::Runtime::builder()
            .workers(workers)
            .build()
            .unwrap();
        rt.run(|| {
            for (name, tx, rx) in flavors::<Big>() {
                // A select's send arm to a plain receive, and a plain send to
                // a select's receive arm (a rendezvous needs a plain
                // operation on one side), each way round.
                let tx2 = tx.clone();
                let producer = stackful::spawn(move || {
                    select_send_big(&tx2, 1);
                    send_big(&tx2, 2);
                });
                recv_big(&rx, 1);
                select_recv_big(&rx, 2);
                producer.join().unwrap();
                let rx2 = rx.clone();
                let consumer = stackful::spawn(move || {
                    recv_big(&rx2, 3);
                    select_recv_big(&rx2, 4);
                });
                select_send_big(&tx, 3);
                send_big(&tx, 4);
                consumer.join().unwrap();
                eprintln!("select {name} ok on {workers} worker(s)");
            }
        });
    }
    eprintln!("child child_big_messages_select done");
}

// ---------------------------------------------------------------------------
// Item 15: a send or receive cut short after its exchange happened.

/// A rendezvous sender waits behind a 1 ms timeout; the receiver, on the
/// same worker, takes the value only after that deadline has passed. The
/// exchange happened, so the send reports success, never `Elapsed`.
#[test]
fn a_rendezvous_send_whose_value_was_taken_succeeds_despite_its_timeout() {
    each_mode(|mode| {
        let mut ok = 0;
        for round in 0..40u32 {
            let (tx, rx) = channel::<u32>(0);
            let receiver = mode.spawn(move || {
                spin_for(Duration::from_millis(2)); // past the sender's deadline
                rx.recv().ok()
            });
            let sent = stackful::timeout(Duration::from_millis(1), || tx.send(round));
            drop(tx);
            let got = receiver.join();
            match sent {
                Ok(Ok(())) => {
                    assert_eq!(got, Some(round), "{mode:?}: reported sent, never received");
                    ok += 1;
                }
                Ok(Err(_)) => panic!("{mode:?}: the receiver is alive"),
                Err(_elapsed) => assert_eq!(
                    got, None,
                    "{mode:?} round {round}: the send reported `Elapsed` but the value was \
                     received; a retry would deliver it twice"
                ),
            }
        }
        if mode == Mode::Green(1) {
            // On one worker the receiver takes the value after the deadline,
            // from the waiting sender (all but a descheduled round or so).
            assert!(ok >= 20, "{mode:?}: only {ok} of 40");
        }
    });
}

/// The mirror: a receiver behind a timeout is handed a value after its
/// deadline. The value is delivered exactly once: returned by that receive
/// (the chosen design), never lost.
#[test]
fn a_rendezvous_receive_handed_a_value_returns_it_despite_its_timeout() {
    each_mode(|mode| {
        let mut returned = 0;
        for round in 0..40u32 {
            let (tx, rx) = channel::<u32>(0);
            let sender = mode.spawn(move || {
                spin_for(Duration::from_millis(2)); // past the receiver's deadline
                tx.send_timeout(round, Duration::from_millis(50)).is_ok()
            });
            let got = stackful::timeout(Duration::from_millis(1), || rx.recv());
            let sent = sender.join();
            let got = match got {
                Ok(Ok(v)) => {
                    returned += 1;
                    Some(v)
                }
                Ok(Err(e)) => panic!("{mode:?}: {e:?}"),
                Err(_elapsed) => rx.try_recv().ok(),
            };
            assert_eq!(
                got.is_some(),
                sent,
                "{mode:?} round {round}: sent {sent}, received {got:?}"
            );
            assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        }
        if mode == Mode::Green(1) {
            assert!(returned >= 20, "{mode:?}: only {returned} of 40");
        }
    });
}

/// A receiver cancelled (by its handle) just after a value was handed to
/// it still returns the value; it is neither lost nor delivered twice.
#[test]
fn a_cancelled_rendezvous_receiver_that_was_handed_a_value_keeps_it() {
    each_green(|mode| {
        for round in 0..50u32 {
            let (tx, rx) = channel::<u32>(0);
            let rx2 = rx.clone();
            let receiver = stackful::spawn(move || rx2.recv().ok());
            stackful::yield_now(); // on one worker, the receiver waits now
            tx.send(round).unwrap(); // handed over: the receiver has it
            receiver.cancel();
            let got = match receiver.join() {
                Ok(v) => v,
                Err(e) => {
                    assert!(e.is_cancelled());
                    None
                }
            };
            let left = rx.try_recv().ok();
            assert_eq!(
                got.into_iter().chain(left).collect::<Vec<_>>(),
                [round],
                "{mode:?} round {round}: delivered exactly once"
            );
        }
    });
}

/// Senders retry on `Elapsed` until a send succeeds; receivers give up
/// now and then too. Every value arrives exactly once, in each flavor.
#[test]
fn senders_that_retry_after_a_timeout_never_deliver_twice() {
    each_mode(|mode| {
        for (name, tx, rx) in flavors::<u64>() {
            let received = Arc::new(Mutex::new(Vec::new()));
            let mut handles = Vec::new();
            for p in 0..3u64 {
                let tx = tx.clone();
                handles.push(mode.spawn(move || {
                    for i in 0..150u64 {
                        let v = p << 32 | i;
                        let mut patience = 10 + (i % 7) * 15;
                        while stackful::timeout(Duration::from_micros(patience), || tx.send(v))
                            .is_err()
                        {
                            patience += 20;
                        }
                    }
                }));
            }
            drop(tx);
            let consumers: Vec<_> = (0..2u64)
                .map(|c| {
                    let (rx, received) = (rx.clone(), received.clone());
                    mode.spawn(move || {
                        let mut n = c;
                        loop {
                            n += 1;
                            let got = if n % 3 == 0 {
                                match stackful::timeout(Duration::from_micros(20), || rx.recv()) {
                                    Ok(got) => got,
                                    Err(_) => continue,
                                }
                            } else {
                                rx.recv()
                            };
                            match got {
                                Ok(v) => received.lock().unwrap().push(v),
                                Err(_) => return,
                            }
                        }
                    })
                })
                .collect();
            drop(rx);
            for h in handles.into_iter().chain(consumers) {
                h.join();
            }
            let received = received.lock().unwrap();
            let unique: HashSet<u64> = received.iter().copied().collect();
            assert_eq!(
                unique.len(),
                received.len(),
                "{mode:?} {name}: a value arrived twice"
            );
            assert_eq!(received.len(), 3 * 150, "{mode:?} {name}: a value was lost");
        }
    });
}

/// Blocking sends and receives in every flavor, cut short by timeouts and
/// cancellations at random points: every value whose send returned `Ok`
/// is received exactly once (or is still queued at the end), and no other.
#[test]
fn stress_exactly_once_under_timeouts_and_cancellation() {
    each_green(|mode| {
        for (name, tx, rx) in flavors::<u64>() {
            let sent = Arc::new(Mutex::new(Vec::new()));
            let received = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let mut producers = Vec::new();
            for p in 0..3u64 {
                let (tx, sent) = (tx.clone(), sent.clone());
                producers.push(stackful::spawn(move || {
                    for i in 0..200u64 {
                        let v = p << 32 | i;
                        let t = Duration::from_micros(5 + (i * 37 + p * 11) % 60);
                        if let Ok(Ok(())) = stackful::timeout(t, || tx.send(v)) {
                            sent.lock().unwrap().push(v);
                        }
                    }
                }));
            }
            let mut consumers = Vec::new();
            for c in 0..4u64 {
                let (rx, received, stop) = (rx.clone(), received.clone(), stop.clone());
                consumers.push(stackful::spawn(move || {
                    let mut n = c;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        let t = Duration::from_micros(3 + (n * 13) % 40);
                        match stackful::timeout(t, || rx.recv()) {
                            Ok(Ok(v)) => received.lock().unwrap().push(v),
                            Ok(Err(_)) => return,
                            Err(_) => {}
                        }
                    }
                }));
            }
            // Cancel half of the consumers partway.
            stackful::sleep(Duration::from_millis(3));
            for c in consumers.iter().step_by(2) {
                c.cancel();
            }
            for p in producers {
                p.join().unwrap();
            }
            stop.store(true, Ordering::SeqCst);
            for c in consumers {
                let _ = c.join();
            }
            let mut received = received.lock().unwrap().clone();
            received.extend(rx.try_iter());
            let sent: HashSet<u64> = sent.lock().unwrap().iter().copied().collect();
            let unique: HashSet<u64> = received.iter().copied().collect();
            assert_eq!(unique.len(), received.len(), "{mode:?} {name}: twice");
            assert_eq!(unique, sent, "{mode:?} {name}: sent and received differ");
        }
    });
}

/// A bounded sender woken by room after its timeout expired reports
/// `Elapsed` and did not send; it never both sends and fails.
#[test]
fn a_bounded_send_that_times_out_did_not_send() {
    each_mode(|mode| {
        for round in 0..30u32 {
            let (tx, rx) = channel::<u32>(1);
            tx.send(u32::MAX).unwrap(); // full
            let receiver = mode.spawn(move || {
                spin_for(Duration::from_millis(2));
                let first = rx.recv().unwrap();
                // The value, if sent, or the disconnection.
                let second = rx.recv_timeout(Duration::from_secs(20));
                (first, second.ok())
            });
            let sent = stackful::timeout(Duration::from_millis(1), || tx.send(round));
            drop(tx);
            let (first, second) = receiver.join();
            assert_eq!(first, u32::MAX);
            match sent {
                Ok(Ok(())) => assert_eq!(second, Some(round), "{mode:?}"),
                Ok(Err(e)) => panic!("{mode:?}: {e:?}"),
                Err(_) => assert_eq!(second, None, "{mode:?}: failed, yet sent"),
            }
        }
    });
}

/// The value of a failed send comes back through every error type.
#[test]
fn failed_sends_hand_the_value_back_in_every_flavor() {
    each_mode(|_| {
        for (name, tx, rx) in flavors::<String>() {
            if tx.capacity() == Some(1) {
                tx.send("fill".into()).unwrap();
                match tx.try_send("full".into()) {
                    Err(TrySendError::Full(s)) => assert_eq!(s, "full", "{name}"),
                    other => panic!("{name}: {other:?}"),
                }
                match tx.send_timeout("late".into(), Duration::from_millis(1)) {
                    Err(SendTimeoutError::Timeout(s)) => assert_eq!(s, "late", "{name}"),
                    other => panic!("{name}: {other:?}"),
                }
            }
            if tx.capacity() == Some(0) {
                match tx.send_timeout("late".into(), Duration::from_millis(1)) {
                    Err(SendTimeoutError::Timeout(s)) => assert_eq!(s, "late", "{name}"),
                    other => panic!("{name}: {other:?}"),
                }
            }
            drop(rx);
            assert_eq!(tx.send("gone".into()).unwrap_err().0, "gone", "{name}");
            match tx.send_timeout("gone".into(), Duration::from_millis(1)) {
                Err(SendTimeoutError::Disconnected(s)) => assert_eq!(s, "gone", "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    });
}

/// Receivers see the disconnection after the queued messages, in every
/// flavor and mode.
#[test]
fn receivers_drain_then_see_the_disconnection() {
    each_mode(|mode| {
        for (name, tx, rx) in flavors::<u32>() {
            let producer = mode.spawn(move || {
                for i in 0..100 {
                    tx.send(i).unwrap();
                }
            });
            let got: Vec<u32> = rx.iter().collect();
            producer.join();
            assert_eq!(got, (0..100).collect::<Vec<_>>(), "{mode:?} {name}");
            assert_eq!(
                rx.recv_timeout(Duration::from_millis(1)),
                Err(RecvTimeoutError::Disconnected)
            );
        }
    });
}

/// A waker that sends on a rendezvous channel when woken.
struct SendOnWake(stackful::sync::Sender<u32>);

impl std::task::Wake for SendOnWake {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.send(7).unwrap();
    }
}

/// A worker's loop wakes the async waiters of a green thread that ends. A
/// waker there that sends on a rendezvous channel whose receiver waits
/// hands the message over (only a send that would wait is refused there).
#[test]
fn a_waker_on_a_workers_loop_hands_over_to_a_waiting_receiver() {
    use std::future::Future;
    common::within(60, || {
        let rt = stackful::Runtime::builder().workers(1).build().unwrap();
        rt.run(|| {
            let (tx, rx) = stackful::sync::channel::<u32>(0);
            let receiver = stackful::spawn(move || rx.recv().unwrap());
            // Ends once the receiver has long been waiting.
            let mut sleeper =
                stackful::spawn(|| stackful::sleep(std::time::Duration::from_millis(100)));
            let waker = std::task::Waker::from(std::sync::Arc::new(SendOnWake(tx)));
            let mut cx = std::task::Context::from_waker(&waker);
            assert!(std::pin::Pin::new(&mut sleeper).poll(&mut cx).is_pending());
            assert_eq!(receiver.join().unwrap(), 7);
        });
    });
}
