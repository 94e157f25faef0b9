//! The timer receivers `after`, `tick` and `never`: alone, through every
//! receive method and iterator, and in `select!`, `select_biased!` and
//! `Select`. Each behaviour runs on green threads and on plain OS threads.
//! Timing bounds are generous (a shared machine, and ASan in CI).

mod common;

use common::both;

use std::time::{Duration, Instant};

use stackful::sync::{
    Receiver, RecvTimeoutError, Select, TryRecvError, after, never, tick, unbounded,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A bound for "soon": far above any honest delay, far below "never".
const SLACK: Duration = Duration::from_secs(5);

#[test]
fn after_delivers_its_deadline_once_not_before_it_and_never_disconnects() {
    both(|_| {
        let start = Instant::now();
        let r = after(ms(50));
        assert_eq!(r.capacity(), Some(1));
        assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
        assert_eq!((r.len(), r.is_empty(), r.is_full()), (0, true, false));
        let at = r.recv().unwrap();
        let now = Instant::now();
        assert!(at >= start + ms(50), "the message is the deadline");
        assert!(
            at <= now && now >= start + ms(50),
            "delivered before its deadline"
        );
        assert!(now - start < SLACK);
        // Once only, and then empty forever: never disconnected.
        assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(r.recv_timeout(ms(30)), Err(RecvTimeoutError::Timeout));
        assert!(Instant::now() - now >= ms(30));
        assert_eq!(r.try_iter().count(), 0);
        assert_eq!((r.len(), r.is_empty()), (0, true));
    });
}

#[test]
fn after_holds_its_message_until_received_and_gives_it_to_one_clone() {
    both(|_| {
        let r = after(ms(10));
        let r2 = r.clone();
        assert!(r.same_channel(&r2));
        assert!(!r.same_channel(&after(ms(10))));
        stackful::sleep(ms(40));
        assert_eq!((r.len(), r.is_empty(), r.is_full()), (1, false, true));
        let got = [r.try_recv().is_ok(), r2.try_recv().is_ok()];
        assert_eq!(got, [true, false]);
        assert_eq!(r2.len(), 0);
        assert_eq!(
            r2.recv_deadline(Instant::now() + ms(20)),
            Err(RecvTimeoutError::Timeout)
        );
    });
}

#[test]
fn after_with_a_huge_delay_never_fires_and_zero_fires_at_once() {
    both(|_| {
        let r = after(Duration::MAX);
        assert_eq!(r.recv_timeout(ms(20)), Err(RecvTimeoutError::Timeout));
        let start = Instant::now();
        let r = after(Duration::ZERO);
        assert!(r.recv_timeout(SLACK).unwrap() <= Instant::now());
        assert!(start.elapsed() < SLACK);
    });
}

#[test]
fn tick_is_spaced_by_its_period_and_drops_the_ticks_missed() {
    both(|_| {
        let period = ms(30);
        let start = Instant::now();
        let r = tick(period);
        assert_eq!(r.capacity(), Some(1));
        assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
        let first = r.recv().unwrap();
        assert!(first >= start + period);
        assert!(Instant::now() >= first);
        let second = r.recv().unwrap();
        assert!(second >= first + period, "ticks closer than the period");
        assert!(Instant::now() >= second);
        // Miss several ticks: one is waiting (the one due first), no more.
        stackful::sleep(period * 5);
        assert_eq!((r.len(), r.is_full()), (1, true));
        let received = Instant::now(); // just before the receipt
        let late = r.try_recv().unwrap();
        assert!(
            late < received - period * 2,
            "the message is when the tick was due"
        );
        assert_eq!(
            r.try_recv(),
            Err(TryRecvError::Empty),
            "missed ticks were queued"
        );
        // The next one is due a period after the late receipt.
        let next = r.recv().unwrap();
        assert!(next >= received + period);
        assert!(next - received < SLACK);
    });
}

#[test]
fn tick_works_with_the_iterators() {
    both(|_| {
        let start = Instant::now();
        let r = tick(ms(10));
        let ticks: Vec<Instant> = r.iter().take(3).collect();
        assert_eq!(ticks.len(), 3);
        assert!(ticks[0] >= start + ms(10));
        assert!(ticks.windows(2).all(|w| w[1] >= w[0] + ms(10)));
        let ticks: Vec<Instant> = r.into_iter().take(2).collect();
        assert!(ticks[1] >= ticks[0] + ms(10));
    });
}

#[test]
fn never_never_delivers_nor_disconnects() {
    both(|_| {
        let r = never::<String>();
        assert_eq!(r.capacity(), Some(0));
        assert_eq!((r.len(), r.is_empty(), r.is_full()), (0, true, true));
        assert_eq!(r.try_recv(), Err(TryRecvError::Empty));
        let start = Instant::now();
        assert_eq!(r.recv_timeout(ms(40)), Err(RecvTimeoutError::Timeout));
        assert!(start.elapsed() >= ms(40));
        assert_eq!(r.try_iter().count(), 0);
        assert!(r.same_channel(&r.clone()));
    });
}

#[test]
fn select_timer_arm_wins_when_the_other_channel_is_silent() {
    both(|_| {
        let (_tx, rx) = unbounded::<u32>();
        let start = Instant::now();
        let outcome = stackful::select! {
            recv(rx) -> _ => "message",
            recv(after(ms(40))) -> at => {
                assert!(at.unwrap() >= start + ms(40));
                "timed out"
            }
        };
        assert_eq!(outcome, "timed out");
        let took = start.elapsed();
        assert!(took >= ms(40) && took < SLACK, "{took:?}");
        // The same with `select_biased!`, the timer last.
        let outcome = stackful::select_biased! {
            recv(rx) -> _ => "message",
            recv(never::<u8>()) -> _ => "never",
            recv(after(ms(10))) -> _ => "timed out",
        };
        assert_eq!(outcome, "timed out");
    });
}

#[test]
fn select_other_channel_wins_when_its_message_comes_first() {
    both(|spawn| {
        let (tx, rx) = unbounded::<u32>();
        let (go_tx, go_rx) = unbounded::<()>();
        let peer = spawn(Box::new(move || {
            go_rx.recv().unwrap();
            tx.send(7).unwrap();
        }));
        let timer = after(Duration::from_secs(30));
        let start = Instant::now();
        go_tx.send(()).unwrap();
        let got = stackful::select! {
            recv(rx) -> msg => msg.unwrap(),
            recv(timer) -> _ => panic!("the timer fired first"),
        };
        assert_eq!(got, 7);
        assert!(start.elapsed() < SLACK);
        peer.join();
        // A message already there wins over a timer not yet due, every time.
        let (tx, rx) = unbounded::<u32>();
        let timer = tick(ms(200));
        for i in 0..50 {
            tx.send(i).unwrap();
            let got = stackful::select! {
                recv(timer) -> _ => panic!("tick before its period"),
                recv(rx) -> msg => msg.unwrap(),
            };
            assert_eq!(got, i);
        }
    });
}

#[test]
fn select_default_and_timeouts_with_timers() {
    both(|_| {
        // Not due: `default` runs.
        let timer = after(Duration::from_secs(30));
        let ran = stackful::select! {
            recv(timer) -> _ => "timer",
            recv(never::<u8>()) -> _ => "never",
            default => "default",
        };
        assert_eq!(ran, "default");
        // Due: the timer, not `default`.
        let timer = after(Duration::ZERO);
        let ran = stackful::select! {
            recv(timer) -> _ => "timer",
            default => "default",
        };
        assert_eq!(ran, "timer");
        // A timer due before the select's timeout wins.
        let start = Instant::now();
        let ran = stackful::select! {
            recv(after(ms(20))) -> _ => "timer",
            default(Duration::from_secs(30)) => "timeout",
        };
        assert_eq!(ran, "timer");
        assert!(start.elapsed() >= ms(20) && start.elapsed() < SLACK);
        // A timer due after the select's timeout loses.
        let ran = stackful::select! {
            recv(after(Duration::from_secs(30))) -> _ => "timer",
            default(ms(20)) => "timeout",
        };
        assert_eq!(ran, "timeout");
        // `never` with a timeout: crossbeam's tick-then-never loop.
        let mut r = tick(ms(5));
        let mut steps = 0;
        loop {
            stackful::select! {
                recv(r) -> _ => steps += 1,
                default(ms(100)) => break,
            }
            if steps == 4 {
                r = never();
            }
        }
        assert_eq!(steps, 4);
    });
}

#[test]
fn select_struct_waits_and_readies_on_timers() {
    both(|_| {
        let (_tx, rx) = unbounded::<u32>();
        // Before the timer is made: it is due 30 ms after its creation,
        // and a wake-up right at that instant is less than 30 ms after a
        // clock read taken later.
        let start = Instant::now();
        let timer = after(ms(30));
        let off: Receiver<u32> = never();
        let mut sel = Select::new();
        sel.recv(&rx);
        sel.recv(&off);
        let t = sel.recv(&timer);
        assert_eq!(sel.ready(), t);
        assert!(start.elapsed() >= ms(30));
        let op = sel.select();
        assert_eq!(op.index(), t);
        assert!(op.recv(&timer).is_ok());
        // Taken: the timer is silent again.
        assert!(sel.try_select().is_err());
        assert!(sel.select_timeout(ms(20)).is_err());
        assert!(sel.ready_timeout(ms(20)).is_err());
    });
}

#[test]
fn a_green_thread_waiting_on_a_timer_leaves_its_worker_free() {
    common::within(60, || {
        let rt = stackful::Runtime::builder().workers(1).build().unwrap();
        for by_select in [false, true] {
            let (started_tx, started) = std::sync::mpsc::channel();
            let waiter = rt.spawn(move || {
                let (_tx, silent) = unbounded::<u8>();
                let timer = after(ms(400));
                started_tx.send(()).unwrap();
                if by_select {
                    stackful::select! {
                        recv(silent) -> _ => panic!("nothing was sent"),
                        recv(timer) -> at => at.unwrap(),
                    }
                } else {
                    timer.recv().unwrap()
                }
            });
            started.recv().unwrap();
            // On the same single worker, this runs while the other waits.
            let other = rt.spawn(Instant::now);
            let ran_at = other.join().unwrap();
            let due = waiter.join().unwrap();
            assert!(
                ran_at < due,
                "the timer's wait held the worker (by_select: {by_select})"
            );
        }
    });
}

#[test]
fn a_timer_wait_is_a_cancellation_point() {
    common::within(60, || {
        stackful::run(|| {
            let start = Instant::now();
            let r = after(Duration::from_secs(30));
            assert!(stackful::timeout(ms(20), || r.recv()).is_err());
            let t = tick(Duration::from_secs(30));
            let cut = stackful::timeout(ms(20), || {
                stackful::select! {
                    recv(t) -> _ => "tick",
                    recv(never::<u8>()) -> _ => "never",
                }
            });
            assert!(cut.is_err());
            assert!(start.elapsed() < SLACK);
            // Nothing was taken by the cut-short waits.
            assert_eq!(r.len(), 0);
        });
    });
}
