//! Adversarial review of session 14's changes: the spin lock behind the
//! wait lists and the unbounded list, the unbounded list's `state`/`len`
//! words (`take`'s lock-free "empty", `select`'s positions), the park fast
//! path for a plain green thread, and the one rendezvous packet shared by a
//! waiting `Select`'s operations.
//!
//! Every test runs on green threads (a runtime of 1 worker and one of 2)
//! and, where it applies, on plain OS threads. Stress loops stay short.

mod common;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use stackful::sync::{Receiver, Sender, TryRecvError, channel, unbounded};

/// Runs `body(green)` on a 1-worker runtime, a 2-worker runtime (green:
/// true) and, if `os`, on a plain thread (green: false), each within a
/// generous bound (a lost wake-up shows as a hang).
fn contexts(os: bool, body: fn(bool)) {
    for workers in [1, 2] {
        common::within(60, move || {
            let rt = stackful::Runtime::builder()
                .workers(workers)
                .build()
                .unwrap();
            rt.run(|| body(true));
        });
    }
    if os {
        common::within(60, move || body(false));
    }
}

/// Starts `f` on a green thread (`green`) or an OS thread; the returned
/// closure joins it.
fn go<R: Send + 'static>(
    green: bool,
    f: impl FnOnce() -> R + Send + 'static,
) -> Box<dyn FnOnce() -> R> {
    if green {
        let h = stackful::spawn(f);
        Box::new(move || h.join().unwrap())
    } else {
        let h = std::thread::spawn(f);
        Box::new(move || h.join().unwrap())
    }
}

/// Asserts that two sorted lists of messages are equal, saying briefly
/// how they differ (the lists run to thousands).
fn same_messages(got: &[u64], want: &[u64], what: &str) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: got {} messages, want {}; first difference at {first:?}",
            got.len(),
            want.len()
        );
    }
}

/// Counts drops, from any thread.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------
// Unbounded list: lost wake-ups, `take`'s lock-free "empty", the close.
// ---------------------------------------------------------------------

/// Ping-pong over two unbounded channels: each side pushes while the other
/// registers to wait, over and over. Catches a lost wake-up between a push
/// and a waiter's registration (a notifier that misses the waiter while the
/// waiter's look after its registration misses the message): the round
/// trip then hangs. Checked to hang with a `take` that says "empty" with a
/// message queued; a missing `SeqCst` fence in `register` (a store-load
/// reordering of a few nanoseconds) did not show in 300 000 rounds on x86.
#[test]
fn unbounded_ping_pong_loses_no_wake_up() {
    contexts(true, |green| {
        let (atx, arx) = unbounded::<u32>();
        let (btx, brx) = unbounded::<u32>();
        let peer = go(green, move || {
            while let Ok(v) = arx.recv() {
                btx.send(v + 1).unwrap();
            }
        });
        for i in 0..3000 {
            atx.send(i).unwrap();
            assert_eq!(brx.recv().unwrap(), i + 1);
        }
        drop(atx);
        peer();
    });
}

/// A message sent (the send returned) before a flag that the receiver then
/// reads is there for the receiver's `try_recv`: `take` may say "empty"
/// without the lock only if no completed push's message is queued.
/// Catches a `take` that reads `len` without first reading `state` (or a
/// push that stores `len` after `state`), on a weakly ordered machine, and
/// any `take` that returns `None` spuriously (say, on losing a race for
/// the lock).
#[test]
fn try_recv_sees_every_completed_send() {
    contexts(true, |green| {
        let (tx, rx) = unbounded::<u64>();
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let s2 = sent.clone();
        let rx2 = rx.clone();
        // A second receiver competes for the lock now and then.
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let competing = go(green, move || {
            let mut got = 0u64;
            while !stop2.load(Ordering::SeqCst) {
                if rx2.try_recv().is_ok() {
                    got += 1;
                }
                if green {
                    stackful::yield_now();
                }
            }
            got
        });
        let producer = go(green, move || {
            for i in 1..=2000u64 {
                tx.send(i).unwrap();
                s2.store(i, Ordering::SeqCst);
                if green && i % 16 == 0 {
                    stackful::yield_now();
                }
            }
        });
        // Once `sent` says the last send returned, "empty" must mean that
        // every message was taken (by us or the competitor).
        let mut mine = 0u64;
        loop {
            let n = sent.load(Ordering::SeqCst);
            match rx.try_recv() {
                Ok(_) => mine += 1,
                Err(TryRecvError::Empty) => {
                    if n == 2000 {
                        break;
                    }
                    if green {
                        stackful::yield_now();
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            }
        }
        producer();
        // Every message is taken exactly once: none was left behind by a
        // wrong "empty" (the loop ends on "empty" only after the last send
        // completed, so anything left now was missed).
        let left = std::iter::from_fn(|| rx.try_recv().ok()).count() as u64;
        stop.store(true, Ordering::SeqCst);
        let theirs = competing();
        assert_eq!(left, 0, "try_recv said empty with messages queued");
        assert_eq!(mine + theirs, 2000);
    });
}

/// Producers push while the receivers drop (closing the list) and while
/// messages are drained: every message is dropped exactly once, and every
/// send that reported success left its message to be received or dropped
/// with the channel, never stranded or dropped twice. Catches a close that
/// does not wait for a push in flight (a push into a list the closer has
/// already drained: leaked) and a double drop.
#[test]
fn unbounded_close_races_pushes_and_a_drain() {
    contexts(true, |green| {
        for round in 0..40u64 {
            let drops = Arc::new(AtomicUsize::new(0));
            let (tx, rx) = unbounded::<Counted>();
            let producers: Vec<_> = (0..2)
                .map(|_| {
                    let (tx, drops) = (tx.clone(), drops.clone());
                    go(green, move || {
                        let mut made = 0usize;
                        for i in 0..200u64 {
                            made += 1;
                            if tx.send(Counted(drops.clone())).is_err() {
                                break; // the error gave the message back; dropped
                            }
                            if green && i % 8 == 0 {
                                stackful::yield_now();
                            }
                        }
                        made
                    })
                })
                .collect();
            drop(tx);
            // Drain a few, then drop the receiver mid-stream.
            for _ in 0..(round % 7) * 10 {
                if rx.recv().is_err() {
                    break;
                }
            }
            drop(rx);
            let made: usize = producers.into_iter().map(|p| p()).sum();
            assert_eq!(drops.load(Ordering::SeqCst), made, "round {round}");
        }
    });
}

/// The last senders leave while a receiver drains: every message a send
/// put in is received before the receiver sees the disconnection. Catches
/// a `take` that says "empty" (then "disconnected") with a message queued.
#[test]
fn unbounded_receiver_gets_everything_before_disconnection() {
    contexts(true, |green| {
        for _ in 0..20 {
            let (tx, rx) = unbounded::<u64>();
            let producers: Vec<_> = (0..3u64)
                .map(|p| {
                    let tx = tx.clone();
                    go(green, move || {
                        for i in 0..300u64 {
                            tx.send(p << 32 | i).unwrap();
                        }
                    })
                })
                .collect();
            drop(tx);
            let mut next = [0u64; 3];
            while let Ok(v) = rx.recv() {
                let (p, i) = ((v >> 32) as usize, v & 0xffff_ffff);
                assert_eq!(next[p], i, "out of order or lost");
                next[p] += 1;
            }
            assert_eq!(next, [300; 3]);
            for p in producers {
                p();
            }
        }
    });
}

/// A message whose destructor uses the same channel (sends on it, looks at
/// its length) when the channel drops it: the list's spin lock must not be
/// held around a message's drop (it would spin forever on its own lock).
/// Also a destructor that panics does not stop the others.
#[test]
fn message_drops_may_use_their_own_channel() {
    struct Reenters {
        tx: Option<Sender<Reenters>>,
        seen: Arc<AtomicUsize>,
        panic: bool,
    }
    impl Drop for Reenters {
        fn drop(&mut self) {
            if let Some(tx) = self.tx.take() {
                // Closed by now (the receiver left): refused, not queued.
                let back = tx.send(Reenters {
                    tx: None,
                    seen: self.seen.clone(),
                    panic: false,
                });
                assert!(back.is_err());
                let _ = tx.len();
                self.seen.fetch_add(1, Ordering::SeqCst);
            }
            if self.panic {
                panic!("a message's destructor panics on purpose");
            }
        }
    }
    contexts(true, |_green| {
        let seen = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = unbounded::<Reenters>();
        for i in 0..10 {
            tx.send(Reenters {
                tx: Some(tx.clone()),
                seen: seen.clone(),
                panic: i == 3,
            })
            .unwrap();
        }
        // Received and dropped while the channel is open: the send in the
        // destructor succeeds then, so take one out by hand first.
        let first = rx.recv().unwrap();
        // The last receiver drops the nine queued: the one destructor's
        // panic comes out once all of them ran.
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| drop(rx)));
        assert_eq!(
            common::panic_text(r.expect_err("the destructor's panic")),
            "a message's destructor panics on purpose"
        );
        assert_eq!(seen.load(Ordering::SeqCst), 9, "every destructor ran");
        drop(first); // closed now: its send is refused
        assert_eq!(seen.load(Ordering::SeqCst), 10);
        drop(tx);
    });
}

// ---------------------------------------------------------------------
// `select`'s "nothing ready" over unbounded lists (double collect).
// ---------------------------------------------------------------------

/// Two unbounded channels hold at least one token between them at every
/// instant: a mover puts a token into one before it takes one out of the
/// other, as fast as it can. So a select over both receives can never
/// linearizably say "nothing ready" (`try_ready`, which takes nothing, and
/// now and then a `select!` with `default`, which takes the token and
/// puts it back), though each channel alone is empty now and then.
/// Catches a "nothing ready" decided from one pass over the operations
/// (checked: fails in every run with the double collects of `Select::run`
/// and `ready_run` cut to one look). A second look without comparing the
/// positions (or a list position that a push does not move) is not caught
/// in this short run. (On one worker nothing runs between the select's
/// looks: the run there checks the plumbing.)
#[test]
fn nothing_ready_over_unbounded_lists_never_misses_the_moving_token() {
    contexts(true, |green| {
        let (atx, arx) = unbounded::<()>();
        let (btx, brx) = unbounded::<()>();
        atx.send(()).unwrap(); // the one token
        let stop = Arc::new(AtomicBool::new(false));
        let mover = {
            let (atx, arx, btx, brx, stop) = (
                atx.clone(),
                arx.clone(),
                btx.clone(),
                brx.clone(),
                stop.clone(),
            );
            go(green, move || {
                let mut moves = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    btx.send(()).unwrap();
                    arx.recv().unwrap();
                    atx.send(()).unwrap();
                    brx.recv().unwrap();
                    moves += 1;
                    if green && moves.is_multiple_of(64) {
                        stackful::yield_now();
                    }
                }
                moves
            })
        };
        let mut misses = 0;
        let start = std::time::Instant::now();
        let mut looks = 0u32;
        while start.elapsed() < Duration::from_millis(150) || looks < 1000 {
            looks += 1;
            if looks.is_multiple_of(64) {
                let got = stackful::select! {
                    recv(arx) -> m => { m.unwrap(); Some(true) },
                    recv(brx) -> m => { m.unwrap(); Some(false) },
                    default => None,
                };
                match got {
                    // Put it back where it came from.
                    Some(true) => atx.send(()).unwrap(),
                    Some(false) => btx.send(()).unwrap(),
                    None => misses += 1,
                }
                if green {
                    stackful::yield_now();
                }
            } else {
                let mut sel = stackful::sync::Select::new();
                sel.recv(&arx);
                sel.recv(&brx);
                if sel.try_ready().is_err() {
                    misses += 1;
                }
            }
        }
        stop.store(true, Ordering::SeqCst);
        // Unblock the mover whichever receive it waits in.
        atx.send(()).unwrap();
        btx.send(()).unwrap();
        let moves = mover();
        assert_eq!(misses, 0, "nothing ready, in {looks} looks ({moves} moves)");
    });
}

/// `Select::ready` waiting on an unbounded receive is woken by a push from
/// another context, round after round: its look after registering reads
/// the list's `len` (not `state`, as `take` does), so this is the wait
/// that leans hardest on the registration/notification ordering. A lost
/// wake-up hangs.
#[test]
fn select_ready_on_an_unbounded_list_is_woken_by_every_push() {
    contexts(true, |green| {
        let (atx, arx) = unbounded::<u32>();
        let (btx, brx) = unbounded::<u32>();
        let peer = go(green, move || {
            let mut sel = stackful::sync::Select::new();
            sel.recv(&arx);
            loop {
                assert_eq!(sel.ready(), 0);
                match arx.try_recv() {
                    Ok(v) => btx.send(v).unwrap(),
                    Err(TryRecvError::Disconnected) => break,
                    Err(TryRecvError::Empty) => panic!("ready, then empty: one receiver"),
                }
            }
        });
        for i in 0..3000 {
            atx.send(i).unwrap();
            assert_eq!(brx.recv().unwrap(), i);
        }
        drop(atx);
        peer();
    });
}

// ---------------------------------------------------------------------
// Rendezvous selects sharing one packet.
// ---------------------------------------------------------------------

/// A select with a send and a receive on the SAME rendezvous channel never
/// pairs with itself: alone, it times out; with a plain receiver, its send
/// wins; with a plain sender, its receive wins. Catches a packet shared by
/// a select's operations that one of them takes as a partner of another
/// (a regression test: no plausible breakage made it pair with itself).
#[test]
fn select_send_and_recv_on_one_rendezvous_never_pairs_with_itself() {
    contexts(true, |green| {
        let (tx, rx) = channel::<u32>(0);
        let alone = stackful::select! {
            send(tx, 1) -> r => { r.unwrap(); "sent" },
            recv(rx) -> m => { m.unwrap(); "received" },
            default(Duration::from_millis(20)) => "nothing",
        };
        assert_eq!(alone, "nothing");
        for round in 0..200u32 {
            let partner_sends = round % 2 == 0;
            let (ptx, prx) = (tx.clone(), rx.clone());
            let partner = go(green, move || {
                if partner_sends {
                    ptx.send(round).unwrap();
                    None
                } else {
                    Some(prx.recv().unwrap())
                }
            });
            let did = stackful::select! {
                send(tx, 1000 + round) -> r => { r.unwrap(); None },
                recv(rx) -> m => Some(m.unwrap()),
            };
            let got = partner();
            if partner_sends {
                assert_eq!(did, Some(round), "round {round}");
                assert_eq!(got, None);
            } else {
                assert_eq!(did, None, "round {round}");
                assert_eq!(got, Some(1000 + round));
            }
        }
    });
}

/// Two selects, each with a send and a receive on one rendezvous channel:
/// they pair with each other, one sending and one receiving, every round,
/// without a partner of their own and without hanging.
#[test]
fn two_selects_each_sending_and_receiving_on_one_rendezvous_pair_up() {
    contexts(true, |green| {
        let (tx, rx) = channel::<u64>(0);
        let side = |me: u64, tx: Sender<u64>, rx: Receiver<u64>| {
            let mut sent = 0u64;
            let mut got = Vec::new();
            for round in 0..300u64 {
                stackful::select! {
                    send(tx, me << 32 | round) -> r => { r.unwrap(); sent += 1; },
                    recv(rx) -> m => got.push(m.unwrap()),
                }
            }
            (sent, got)
        };
        let (tx2, rx2) = (tx.clone(), rx.clone());
        let other = go(green, move || side(2, tx2, rx2));
        let (sent1, got1) = side(1, tx, rx);
        let (sent2, got2) = other();
        assert_eq!(sent1 + sent2, 300, "one send per pairing");
        assert_eq!(sent1, got2.len() as u64);
        assert_eq!(sent2, got1.len() as u64);
        assert!(
            got1.iter().all(|v| v >> 32 == 2),
            "received its own message"
        );
        assert!(
            got2.iter().all(|v| v >> 32 == 1),
            "received its own message"
        );
    });
}

/// A select with two receives on the same rendezvous channel (both
/// operations' entries in one queue, one packet) and several senders:
/// each send pairs with exactly one receive, nothing is lost or doubled,
/// and the entry the select leaves behind pairs with no later sender
/// (a later `try_send` finds no receiver).
#[test]
fn select_with_two_receives_on_one_rendezvous() {
    contexts(true, |green| {
        let (tx, rx) = channel::<u64>(0);
        let senders: Vec<_> = (0..2u64)
            .map(|p| {
                let tx = tx.clone();
                go(green, move || {
                    for i in 0..200u64 {
                        tx.send(p << 32 | i).unwrap();
                    }
                })
            })
            .collect();
        let mut next = [0u64; 2];
        for _ in 0..400 {
            let v = stackful::select! {
                recv(rx) -> m => m.unwrap(),
                recv(rx) -> m => m.unwrap(),
            };
            let (p, i) = ((v >> 32) as usize, v & 0xffff_ffff);
            assert_eq!(next[p], i, "lost or doubled");
            next[p] += 1;
        }
        for s in senders {
            s();
        }
        assert_eq!(next, [200, 200]);
        // Nobody waits to receive now: a select left no entry behind that
        // a sender could pair with.
        assert!(
            tx.try_send(9).is_err(),
            "a stale receive entry took a message"
        );
        assert!(rx.try_recv().is_err());
    });
}

/// Selects over two rendezvous receives, cut short by timeouts while
/// senders with deadlines race to pair with them: a message whose send
/// reported success is received exactly once, and one whose send timed out
/// is never received. Catches a pairing lost or doubled when the select
/// leaves mid-pairing (the shared packet's state, the entries of its other
/// operation left behind, a packet recycled while its partner holds it).
#[test]
fn rendezvous_select_timeouts_mid_pairing_lose_and_double_nothing() {
    contexts(true, |green| {
        let (atx, arx) = channel::<u64>(0);
        let (btx, brx) = channel::<u64>(0);
        let stop = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = [atx, btx]
            .into_iter()
            .enumerate()
            .map(|(p, tx)| {
                let stop = stop.clone();
                go(green, move || {
                    let mut ok = Vec::new();
                    let mut i = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        let v = (p as u64) << 32 | i;
                        if tx.send_timeout(v, Duration::from_micros(200)).is_ok() {
                            ok.push(v);
                        }
                        i += 1;
                    }
                    ok
                })
            })
            .collect();
        let mut got = Vec::new();
        for round in 0..1500u32 {
            let r = match round % 3 {
                0 => stackful::select! {
                    recv(arx) -> m => Some(m.unwrap()),
                    recv(brx) -> m => Some(m.unwrap()),
                    default(Duration::from_micros(100)) => None,
                },
                1 => stackful::timeout(Duration::from_micros(150), || {
                    stackful::select! {
                        recv(arx) -> m => m.unwrap(),
                        recv(brx) -> m => m.unwrap(),
                    }
                })
                .ok(),
                _ => stackful::select! {
                    recv(arx) -> m => Some(m.unwrap()),
                    recv(brx) -> m => Some(m.unwrap()),
                    default => None,
                },
            };
            got.extend(r);
        }
        stop.store(true, Ordering::SeqCst);
        let mut ok: Vec<u64> = senders.into_iter().flat_map(|s| s()).collect();
        ok.sort_unstable();
        got.sort_unstable();
        same_messages(
            &got,
            &ok,
            "received exactly the messages whose send succeeded",
        );
        assert!(!got.is_empty(), "some pairing happened");
    });
}

/// Selects over two rendezvous SENDS, cut short by timeouts, against plain
/// receivers with deadlines: a message is received iff the select said it
/// sent it. The select's packet is lent to a receiver's room once paired
/// with one send while its other send's entry may still be queued.
#[test]
fn rendezvous_select_sends_timing_out_mid_pairing() {
    contexts(true, |green| {
        let (atx, arx) = channel::<u64>(0);
        let (btx, brx) = channel::<u64>(0);
        let stop = Arc::new(AtomicBool::new(false));
        let receivers: Vec<_> = [arx, brx]
            .into_iter()
            .map(|rx| {
                let stop = stop.clone();
                go(green, move || {
                    let mut got = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        if let Ok(v) = rx.recv_timeout(Duration::from_micros(200)) {
                            got.push(v);
                        }
                    }
                    got
                })
            })
            .collect();
        let mut sent = Vec::new();
        for i in 0..1500u64 {
            let (a, b) = (i << 1, i << 1 | 1);
            let r = if i % 2 == 0 {
                stackful::select! {
                    send(atx, a) -> r => { r.unwrap(); Some(a) },
                    send(btx, b) -> r => { r.unwrap(); Some(b) },
                    default(Duration::from_micros(100)) => None,
                }
            } else {
                stackful::timeout(Duration::from_micros(150), || {
                    stackful::select! {
                        send(atx, a) -> r => { r.unwrap(); a },
                        send(btx, b) -> r => { r.unwrap(); b },
                    }
                })
                .ok()
            };
            sent.extend(r);
        }
        stop.store(true, Ordering::SeqCst);
        let mut got: Vec<u64> = receivers.into_iter().flat_map(|r| r()).collect();
        got.sort_unstable();
        sent.sort_unstable();
        same_messages(&got, &sent, "received exactly what the selects sent");
    });
}

/// A green thread waiting in a select over rendezvous operations is
/// cancelled while partners race to pair with it: its join reports the
/// cancellation or its value, and any message a sender handed over is
/// accounted for (received by the select before the cancellation, or
/// never sent). Runs only on green threads (cancellation is theirs).
#[test]
fn cancelling_a_rendezvous_select_mid_pairing() {
    contexts(false, |_| {
        let (atx, arx) = channel::<u64>(0);
        let (btx, brx) = channel::<u64>(0);
        let delivered = Arc::new(AtomicUsize::new(0));
        let mut sent_ok = 0usize;
        for round in 0..300u64 {
            let (arx, brx, d) = (arx.clone(), brx.clone(), delivered.clone());
            let h = stackful::spawn(move || {
                loop {
                    stackful::select! {
                        recv(arx) -> m => { m.unwrap(); },
                        recv(brx) -> m => { m.unwrap(); },
                    }
                    d.fetch_add(1, Ordering::SeqCst);
                }
            });
            let tx = if round % 2 == 0 { &atx } else { &btx };
            for _ in 0..(round % 3) {
                if tx.send_timeout(round, Duration::from_millis(5)).is_ok() {
                    sent_ok += 1;
                }
            }
            if round % 4 == 0 {
                stackful::yield_now();
            }
            h.cancel();
            let err = h.join().expect_err("the loop never ends by itself");
            assert!(err.is_cancelled());
        }
        assert_eq!(delivered.load(Ordering::SeqCst), sent_ok);
        assert!(atx.try_send(1).is_err() && btx.try_send(1).is_err());
    });
}

// ---------------------------------------------------------------------
// The park fast path for a plain green thread.
// ---------------------------------------------------------------------

/// A plain green thread (no scope, no cancellation) blocked in a receive
/// is cancelled while it waits: it unwinds. Then a timeout that expired
/// and closed leaves the next plain wait alone (it waits for its message,
/// raising nothing stale), and a timeout opened after plain waits still
/// fires. Catches a fast path that misses a cancellation that arrives
/// while parked, or a stale scope verdict after the scope closed.
#[test]
fn park_fast_path_sees_cancellation_and_scopes_around_waits() {
    contexts(false, |_| {
        for _ in 0..50 {
            let (tx, rx) = unbounded::<u32>();
            let (ready_tx, ready_rx) = unbounded::<()>();
            let h = stackful::spawn(move || {
                ready_tx.send(()).unwrap();
                rx.recv()
            });
            ready_rx.recv().unwrap();
            stackful::yield_now();
            h.cancel();
            assert!(h.join().unwrap_err().is_cancelled());
            drop(tx);
        }
        let (tx, rx) = unbounded::<u32>();
        let (go_tx, go_rx) = unbounded::<()>();
        let h = stackful::spawn(move || {
            let t = stackful::timeout(Duration::from_millis(5), || rx.recv());
            assert!(t.is_err(), "nothing was sent: the timeout fires");
            go_tx.send(()).unwrap();
            // Plain again: waits for the message past the old deadline.
            let v = rx.recv().unwrap();
            // A timeout opened after plain waits fires.
            let t = stackful::timeout(Duration::from_millis(5), || rx.recv());
            assert!(t.is_err());
            v
        });
        go_rx.recv().unwrap();
        stackful::sleep(Duration::from_millis(20));
        tx.send(7).unwrap();
        assert_eq!(h.join().unwrap(), 7);
    });
}

/// A green thread unwinding from a panic waits in a destructor (a plain
/// wait: no scope, no cancellation yet) and is cancelled meanwhile: the
/// wait must not raise (a second unwind would abort the process); it ends
/// when its message comes, and the join reports the panic. Catches a fast
/// path that raises a cancellation during an unwind.
#[test]
fn park_fast_path_defers_a_cancellation_during_an_unwind() {
    struct WaitsInDrop(Receiver<u32>, Arc<AtomicUsize>, Sender<()>);
    impl Drop for WaitsInDrop {
        fn drop(&mut self) {
            self.2.send(()).unwrap();
            let v = self.0.recv().unwrap();
            self.1.store(v as usize, Ordering::SeqCst);
        }
    }
    contexts(false, |_| {
        for round in 0..20u32 {
            let (tx, rx) = unbounded::<u32>();
            let (in_drop_tx, in_drop_rx) = unbounded::<()>();
            let seen = Arc::new(AtomicUsize::new(0));
            let s2 = seen.clone();
            let h = stackful::spawn(move || {
                let _w = WaitsInDrop(rx, s2, in_drop_tx);
                panic!("on purpose");
            });
            in_drop_rx.recv().unwrap();
            if round % 2 == 0 {
                stackful::yield_now();
            }
            h.cancel();
            stackful::sleep(Duration::from_millis(1));
            tx.send(round + 1).unwrap();
            let err = h.join().unwrap_err();
            assert!(err.is_panic(), "the panic is the outcome");
            assert_eq!(seen.load(Ordering::SeqCst), round as usize + 1);
        }
    });
}
