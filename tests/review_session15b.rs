//! Session 15, second review: ready queues and wait lists that count no
//! references.
//!
//! A worker's ready queue holds bare pointers to green threads that its
//! registry keeps alive until they complete; a wait list holds bare
//! pointers to waiters that their owners keep alive until they leave it;
//! and a notifier names a green thread of its own thread with a pointer
//! that owns no count (`Wake::Here`). These tests give user code (wakers,
//! destructors, generator closes), cancellation, timeouts, other
//! executors and shutdown their chance to break those invariants. Most
//! breakages would be uses after free, which AddressSanitizer (CI's
//! `.ci/asan`) reports; where a plain build can see the breakage too, the
//! tests assert it.

mod common;

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use stackful::sync::{
    Event, RecvError, RecvFuture, RecvTimeoutError, Select, TryRecvError, channel, unbounded,
};
use stackful::{Generator, GeneratorState};

/// Runs `body` on the only worker of a fresh runtime, where the green
/// threads it spawns start and stay (a pool worker keeps its spawns), so
/// that they and `body` share one OS thread. A panic in `body` goes on.
fn on_one_worker(body: impl FnOnce() + Send + 'static) {
    let rt = stackful::Runtime::builder().workers(1).build().unwrap();
    match rt.spawn(body).join() {
        Ok(()) => {}
        Err(e) => match e.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(e) => panic!("the test body did not finish: {e:?}"),
        },
    }
}

/// How many wait on `event`, from its `Debug` output.
fn waiting(event: &Event) -> usize {
    let text = format!("{event:?}");
    let at = text
        .find("waiters: ")
        .expect("Event's Debug shows its waiters")
        + "waiters: ".len();
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// An async task's waker that, the first time it is woken (on a green
/// thread), yields that green thread until `until` holds, giving up after
/// a few seconds: the notifier's worker runs its other green threads
/// meanwhile, possibly to their end, while the notifier is still inside
/// its `notify_all`.
struct YieldingWaker {
    until: Box<dyn Fn() -> bool + Send + Sync>,
    first: AtomicBool,
    /// Whether `until` came to hold while it yielded.
    held: AtomicBool,
    wakes: AtomicUsize,
}

impl YieldingWaker {
    fn new(until: impl Fn() -> bool + Send + Sync + 'static) -> Arc<YieldingWaker> {
        Arc::new(YieldingWaker {
            until: Box::new(until),
            first: AtomicBool::new(true),
            held: AtomicBool::new(false),
            wakes: AtomicUsize::new(0),
        })
    }
}

impl Wake for YieldingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        if self.first.swap(false, Ordering::SeqCst) {
            let give_up = Instant::now() + Duration::from_secs(3);
            while !(self.until)() && Instant::now() < give_up {
                stackful::yield_now();
            }
            self.held.store((self.until)(), Ordering::SeqCst);
        }
    }
}

/// Attacks the order of `notify_all`'s wake-ups (count-free `Wake::Here`
/// pointers must all be used before any user code runs). The last sender's
/// drop wakes, in list order: an async receive, whose waker then yields the
/// dropping green thread until three green threads of the same worker,
/// listed after it, have ended; a `recv_timeout`; a `Select::ready` and a
/// `Select::select_timeout`, each with two arms on that same list (two
/// entries for one waiter). The green threads are detached, so their
/// records are freed as they end. They can end during the waker's yields
/// only if they were woken before it ran (their timeouts are long); and
/// had they been woken after it, by then freed, ASan would report it.
#[test]
fn disconnect_wakes_own_green_threads_before_an_async_waker_that_yields_until_they_end() {
    common::within(60, || {
        on_one_worker(|| {
            let (tx, rx) = unbounded::<u32>();
            let rx = Arc::new(rx);
            let ended = Arc::new(AtomicUsize::new(0));
            let e = ended.clone();
            let yielding = YieldingWaker::new(move || e.load(Ordering::SeqCst) == 3);
            let waker = Waker::from(yielding.clone());
            let mut fut = pin!(rx.recv_async());
            assert!(
                fut.as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );

            let listed = Arc::new(AtomicUsize::new(0));
            let (r, l, e) = (rx.clone(), listed.clone(), ended.clone());
            drop(stackful::spawn(move || {
                l.fetch_add(1, Ordering::SeqCst);
                // Listed and parked before this worker runs anything else.
                if r.recv_timeout(Duration::from_secs(20)) == Err(RecvTimeoutError::Disconnected) {
                    e.fetch_add(1, Ordering::SeqCst);
                }
            }));
            let (r, l, e) = (rx.clone(), listed.clone(), ended.clone());
            drop(stackful::spawn(move || {
                let mut sel = Select::new();
                let a = sel.recv(&r);
                let b = sel.recv(&r);
                l.fetch_add(1, Ordering::SeqCst);
                if let Ok(i) = sel.ready_timeout(Duration::from_secs(20))
                    && (i == a || i == b)
                {
                    e.fetch_add(1, Ordering::SeqCst);
                }
            }));
            let (r, l, e) = (rx.clone(), listed.clone(), ended.clone());
            drop(stackful::spawn(move || {
                let mut sel = Select::new();
                sel.recv(&r);
                sel.recv(&r);
                l.fetch_add(1, Ordering::SeqCst);
                if let Ok(op) = sel.select_timeout(Duration::from_secs(20)) {
                    let i = op.index();
                    if op.recv(&r) == Err(RecvError) && i < 2 {
                        e.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
            // One worker: each green thread counts itself and parks in the
            // same run, so once all counted, all are listed.
            while listed.load(Ordering::SeqCst) < 3 {
                stackful::yield_now();
            }

            drop(tx);
            assert!(
                yielding.held.load(Ordering::SeqCst),
                "the green threads woken by the same notify_all did not run while the async \
                 waker yielded: their wake-ups came after it (ended: {})",
                ended.load(Ordering::SeqCst)
            );
            assert_eq!(yielding.wakes.load(Ordering::SeqCst), 1);
            assert_eq!(
                fut.as_mut().poll(&mut Context::from_waker(&waker)),
                Poll::Ready(Err(RecvError))
            );
        });
    });
}

/// An async receive of a leaked receiver, to be dropped by a waker.
type Pending = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A waker that drops the futures it holds when woken: their owners leave
/// the wait list from inside a notifier's wake-up (user code, run after
/// the notifier let go of the list).
struct DroppingWaker {
    held: StdMutex<Vec<Pending>>,
    wakes: AtomicUsize,
}

impl Wake for DroppingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        let held = std::mem::take(&mut *self.held.lock().unwrap());
        drop(held);
    }
}

/// Polls `fut` once with `waker`, expecting `Pending`, and boxes it.
fn listed<F: Future + Send + 'static>(fut: F, waker: &Waker) -> Pending {
    let mut fut: Pending = Box::pin(async move {
        fut.await;
    });
    assert!(
        fut.as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_pending()
    );
    fut
}

/// Attacks the owners' side of count-free lists from inside a waker (user
/// code a notifier runs after letting go of the list). (1) `notify_one`
/// selects the first of two async receives; its waker drops both: the
/// first passes its unused notification on (a nested `notify_one`, which
/// selects the second), the second leaves while selected. Nothing may stay
/// listed: later sends find an empty list, and the message stays for the
/// next receiver. (2) `notify_all` selects two event waits; the first's
/// waker drops both futures, so the second's waiter is freed before the
/// notifier wakes it: the notifier must wake through the waker it cloned
/// before its compare-and-swap, not through the waiter. ASan reports any
/// freed waiter touched; the counts check the hand-offs.
#[test]
fn wakers_that_drop_listed_futures_leave_nothing_behind() {
    fn body() {
        // (1) notify_one, pass-on from inside the waker.
        let (tx, rx) = unbounded::<u32>();
        let rx: &'static stackful::sync::Receiver<u32> = Box::leak(Box::new(rx));
        let dropping = Arc::new(DroppingWaker {
            held: StdMutex::new(Vec::new()),
            wakes: AtomicUsize::new(0),
        });
        let waker = Waker::from(dropping.clone());
        let first = listed(
            async move {
                let _ = rx.recv_async().await;
            },
            &waker,
        );
        let second = listed(
            async move {
                let _ = rx.recv_async().await;
            },
            &waker,
        );
        dropping.held.lock().unwrap().extend([first, second]);
        tx.send(1).unwrap(); // the first's waker drops both
        assert_eq!(dropping.wakes.load(Ordering::SeqCst), 2, "passed on once");
        assert!(dropping.held.lock().unwrap().is_empty());
        tx.send(2).unwrap(); // an empty list
        assert_eq!(dropping.wakes.load(Ordering::SeqCst), 2);
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        let mut later: Pin<Box<RecvFuture<'static, u32>>> = Box::pin(rx.recv_async());
        let noop = Waker::noop();
        assert!(
            later
                .as_mut()
                .poll(&mut Context::from_waker(noop))
                .is_pending()
        );
        tx.send(3).unwrap();
        assert_eq!(
            later.as_mut().poll(&mut Context::from_waker(noop)),
            Poll::Ready(Ok(3))
        );

        // (2) notify_all, the second waiter freed before its wake-up.
        let event: &'static Event = Box::leak(Box::new(Event::new()));
        let dropping = Arc::new(DroppingWaker {
            held: StdMutex::new(Vec::new()),
            wakes: AtomicUsize::new(0),
        });
        let waker = Waker::from(dropping.clone());
        let a = listed(event.wait_async(), &waker);
        let b = listed(event.wait_async(), &waker);
        dropping.held.lock().unwrap().extend([a, b]);
        assert_eq!(waiting(event), 2);
        event.set(); // the first's waker drops both; the second is woken all the same
        assert_eq!(dropping.wakes.load(Ordering::SeqCst), 2);
        assert_eq!(waiting(event), 0);
        assert!(event.is_set());
    }
    common::within(60, body);
    common::within(60, || on_one_worker(body));
}

/// Attacks the count-free ready queue. Green threads of one worker are
/// woken while they run, while they sit in the ready queue after
/// `yield_now`, and while they wait (with a timer due soon), by their own
/// worker, by a plain thread and by a tokio thread, and end; half of them
/// are detached, so their worker's registry holds their last reference. An
/// entry that outlived its green thread, or a green thread queued twice,
/// is a use after free (ASan), or fails the debug build's assertion in
/// `claim`; a lost wake-up hangs.
#[test]
fn green_threads_woken_from_everywhere_while_queued_end_cleanly() {
    const TARGETS: usize = 12;
    const ROUNDS: usize = 240;
    common::within(90, || {
        let rt = stackful::Runtime::builder().workers(1).build().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let event = Arc::new(Event::new());
        let (done_tx, done_rx) = unbounded::<usize>();
        let started = Arc::new(AtomicUsize::new(0));
        let mut kicks = Vec::new(); // the senders that wake each target
        let mut cancelled = Vec::new(); // handles woken by repeated `cancel`
        for i in 0..TARGETS {
            // Bounded, and fed with `try_send`: the kicks never pile up.
            let (tx, rx) = channel::<u8>(2);
            kicks.push(tx);
            let (ev, done, st) = (event.clone(), done_tx.clone(), started.clone());
            let handle = rt.spawn(move || {
                // Cancellation only wakes it: nothing here raises it.
                stackful::shield(|| {
                    st.fetch_add(1, Ordering::SeqCst);
                    for round in 0..ROUNDS {
                        match round % 3 {
                            0 => stackful::yield_now(),
                            1 => {
                                let _ = rx.recv_timeout(Duration::from_micros(150));
                            }
                            _ => {
                                let _ = ev.wait_timeout(Duration::from_micros(100));
                            }
                        }
                    }
                    done.send(i).unwrap();
                });
            });
            if i % 2 == 0 {
                cancelled.push(handle);
            } else {
                drop(handle); // detached: the registry holds the last reference
            }
        }
        drop(done_tx);

        // A green thread of the same worker: count-free wake-ups.
        let (s, ev, k) = (stop.clone(), event.clone(), kicks.clone());
        let local = rt.spawn(move || {
            while !s.load(Ordering::SeqCst) {
                for tx in &k {
                    let _ = tx.try_send(0);
                }
                ev.set();
                ev.clear();
                stackful::yield_now();
            }
        });
        // A plain thread: wake-ups through the inbox, and cancels.
        let (s, k, st) = (stop.clone(), kicks.clone(), started.clone());
        let plain = std::thread::spawn(move || {
            // Started first: a green thread cancelled before it starts
            // never runs.
            while st.load(Ordering::SeqCst) < TARGETS {
                std::thread::sleep(Duration::from_micros(50));
            }
            while !s.load(Ordering::SeqCst) {
                for tx in &k {
                    let _ = tx.try_send(1);
                }
                for h in &cancelled {
                    h.cancel();
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            cancelled
        });
        // A tokio thread: wake-ups from another executor.
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        let (s, k) = (stop.clone(), kicks);
        let remote = tokio.spawn(async move {
            while !s.load(Ordering::SeqCst) {
                for tx in &k {
                    let _ = tx.try_send(2);
                }
                tokio::time::sleep(Duration::from_micros(100)).await;
            }
        });

        let mut finished = [false; TARGETS];
        for _ in 0..TARGETS {
            let i = done_rx
                .recv_timeout(Duration::from_secs(60))
                .expect("every target ends");
            assert!(!std::mem::replace(&mut finished[i], true));
        }
        stop.store(true, Ordering::SeqCst);
        local.join().unwrap();
        for h in plain.join().unwrap() {
            // Cancelled after its last suspension point, or not at all.
            assert!(h.join().is_ok());
        }
        tokio.block_on(remote).unwrap();
    });
}

/// Attacks wake-ups racing the end of a wait, where a notified waiter
/// leaves without using its notification and must pass it on. Each round,
/// on green threads of `run`'s thread and of the pool: a `wait_timeout`
/// whose deadline comes as the event is set; a receive inside a
/// `stackful::timeout` that expires around the send, beside a second
/// receiver; and a receive cancelled by a plain thread as the message
/// comes. The waiters are detached or joined elsewhere and end at once.
/// Every message is received exactly once (a lost pass-on shows), and no
/// wake-up may reach a freed record or waiter (ASan).
#[test]
fn notifications_racing_timeouts_and_cancels_pass_on_and_free_nothing_early() {
    const ROUNDS: u32 = 120;
    common::within(120, || {
        let rt = stackful::Runtime::builder().workers(2).build().unwrap();
        rt.run(|| {
            for round in 0..ROUNDS {
                let spin = (round % 7) as usize;
                let micros = u64::from(round % 5) * 40;

                // A wait_timeout due as the event is set.
                let event = Arc::new(Event::new());
                let ev = event.clone();
                drop(stackful::spawn(move || {
                    let _ = ev.wait_timeout(Duration::from_micros(micros));
                }));
                for _ in 0..spin {
                    stackful::yield_now();
                }
                event.set();

                // A timeout around a send, beside a second receiver.
                let (tx, rx) = unbounded::<u32>();
                let (got_tx, got_rx) = unbounded::<(u8, Option<u32>)>();
                let (r, g) = (rx.clone(), got_tx.clone());
                drop(stackful::spawn(move || {
                    let got = stackful::timeout(Duration::from_micros(micros), || r.recv()).ok();
                    let _ = g.send((1, got.map(|m| m.expect("a sender is alive"))));
                }));
                let (r, g) = (rx.clone(), got_tx);
                drop(stackful::spawn(move || {
                    let got = r.recv_timeout(Duration::from_secs(30)).ok();
                    let _ = g.send((2, got));
                }));
                for _ in 0..spin {
                    stackful::yield_now();
                }
                tx.send(round).unwrap();
                let mut delivered = 0;
                let mut reports = 0;
                while reports < 2 {
                    let (who, got) = got_rx
                        .recv_timeout(Duration::from_secs(30))
                        .expect("both receivers report");
                    reports += 1;
                    match got {
                        Some(m) if m == round => {
                            delivered += 1;
                            if who == 1 {
                                tx.send(u32::MAX).unwrap(); // releases the second receiver
                            }
                        }
                        Some(m) => assert_eq!((who, m), (2, u32::MAX), "a stale message"),
                        None => {}
                    }
                }
                assert_eq!(
                    delivered, 1,
                    "round {round}: the message was lost or doubled"
                );
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));

                // A receive cancelled by a plain thread as the message comes.
                let (tx, rx) = unbounded::<u32>();
                let r = rx.clone();
                let handle = stackful::spawn(move || r.recv().expect("a sender is alive"));
                let canceller = std::thread::spawn(move || {
                    handle.cancel();
                    handle.join()
                });
                for _ in 0..spin {
                    stackful::yield_now();
                }
                tx.send(round).unwrap();
                let outcome = stackful::spawn_blocking(move || canceller.join().unwrap());
                match outcome {
                    Ok(m) => assert_eq!(m, round),
                    Err(e) => {
                        assert!(e.is_cancelled(), "{e:?}");
                        assert_eq!(rx.try_recv(), Ok(round), "a cancelled receive took it");
                    }
                }
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            }
        });
    });
}

/// Attacks owners that leave a list from a generator's stack. (1) A
/// generator polls an event's async wait (listing its waiter), yields, and
/// is dropped while suspended: the close unwinds its stack, and the future
/// must leave the list then, since the list keeps no count of the waiter;
/// the event's `set` afterwards must find nothing (ASan), and the count
/// says so. (2) A generator's body waits on an event, which suspends its
/// green thread inside the generator, and a green thread of the same
/// worker sets it (a count-free wake-up); the waiting green thread then
/// ends, detached.
#[test]
fn waits_on_generator_stacks_leave_their_lists() {
    fn closed_while_listed() {
        let event = Arc::new(Event::new());
        let ev = event.clone();
        let mut g: Generator<(), (), ()> = Generator::new(move |co, ()| {
            let mut fut = pin!(ev.wait_async());
            assert!(
                fut.as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
                    .is_pending()
            );
            co.yield_(());
            panic!("a generator closed while suspended does not run on");
        });
        assert_eq!(g.send(()), GeneratorState::Yielded(()));
        assert_eq!(waiting(&event), 1);
        drop(g);
        assert_eq!(
            waiting(&event),
            0,
            "the closed generator's wait stayed listed"
        );
        event.set();
        assert!(event.is_set());
    }
    common::within(60, closed_while_listed);
    common::within(60, || on_one_worker(closed_while_listed));

    common::within(60, || {
        on_one_worker(|| {
            let event = Arc::new(Event::new());
            let (tx, rx) = unbounded::<Vec<u32>>();
            let ev = event.clone();
            drop(stackful::spawn(move || {
                let mut g: Generator<u32, (), ()> = Generator::new(move |co, ()| {
                    co.yield_(1);
                    ev.wait(); // suspends the green thread, inside the generator
                    co.yield_(2);
                });
                let got: Vec<u32> = g.by_ref().collect();
                tx.send(got).unwrap();
            }));
            while waiting(&event) == 0 {
                stackful::yield_now();
            }
            let ev = event.clone();
            drop(stackful::spawn(move || ev.set()));
            assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(vec![1, 2]));
        });
    });
}

/// Attacks cancellation at shutdown. A runtime is dropped while its green
/// threads wait on an event (listed there), on a channel, in a select with
/// two arms on one list, or spin through `yield_now` (in the ready queue),
/// and a plain thread waits on the same event. Shutdown cancels them all:
/// each waiter must leave its list as it unwinds, before its green thread's
/// end frees the waiter (the spare it kept), so that the event's `set`
/// afterwards reaches the plain thread alone (ASan would see freed
/// waiters). Every green thread's closure is dropped.
#[test]
fn a_runtime_dropped_while_its_green_threads_wait_leaves_no_entry_behind() {
    const EACH: usize = 5;
    common::within(90, || {
        let event = Arc::new(Event::new());
        let (tx, rx) = unbounded::<u32>();
        let dropped = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let rt = stackful::Runtime::builder().workers(2).build().unwrap();
        for i in 0..4 * EACH {
            let guard = common::DropCounter(dropped.clone());
            let (ev, r, s) = (event.clone(), rx.clone(), started.clone());
            drop(rt.spawn(move || {
                let _guard = guard;
                s.fetch_add(1, Ordering::SeqCst);
                match i % 4 {
                    0 => ev.wait(),
                    1 => {
                        let _ = r.recv();
                    }
                    2 => {
                        let mut sel = Select::new();
                        sel.recv(&r);
                        sel.recv(&r);
                        let _ = sel.ready();
                    }
                    _ => loop {
                        stackful::yield_now();
                    },
                }
            }));
        }
        let ev = event.clone();
        let plain = std::thread::spawn(move || ev.wait());
        common::eventually(
            "every green thread started and the event's waiters listed",
            || started.load(Ordering::SeqCst) == 4 * EACH && waiting(&event) == EACH + 1,
        );
        drop(rt); // cancels them all, and waits for them to end
        assert_eq!(dropped.load(Ordering::SeqCst), 4 * EACH);
        assert_eq!(waiting(&event), 1, "only the plain thread waits");
        event.set();
        plain.join().unwrap();
        assert_eq!(waiting(&event), 0);
        tx.send(7).unwrap(); // the channel's list is empty too
        assert_eq!(rx.try_recv(), Ok(7));
    });
}

/// Attacks wake-ups across executors. Tokio tasks, on tokio's threads,
/// ping-pong with green threads of one worker through `send_async` and
/// `recv_async` (a green thread's notifier wakes tokio's wakers; tokio's
/// wakes a green thread through its home's inbox), and every other round
/// the green thread awaits inside `block_on`, whose waker tokio's thread
/// fires. The green threads end detached while the tokio side still holds
/// the channels.
#[test]
fn ping_pong_with_tokio_tasks_through_async_and_block_on() {
    const PAIRS: usize = 3;
    const ROUNDS: u32 = 150;
    common::within(90, || {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let rt = stackful::Runtime::builder().workers(1).build().unwrap();
        let (done_tx, done_rx) = unbounded::<u32>();
        let mut remote = Vec::new();
        for _ in 0..PAIRS {
            let (to_green, from_tokio) = unbounded::<u32>();
            let (to_tokio, from_green) = unbounded::<u32>();
            let done = done_tx.clone();
            drop(rt.spawn(move || {
                let mut sum = 0;
                for round in 0..ROUNDS {
                    let got = if round % 2 == 0 {
                        from_tokio.recv().unwrap()
                    } else {
                        stackful::block_on(from_tokio.recv_async()).unwrap()
                    };
                    assert_eq!(got, round);
                    sum += got;
                    to_tokio.send(got + 1).unwrap();
                }
                done.send(sum).unwrap();
            }));
            remote.push(tokio.spawn(async move {
                for round in 0..ROUNDS {
                    to_green.send_async(round).await.unwrap();
                    assert_eq!(from_green.recv_async().await, Ok(round + 1));
                }
                // Held until the green side has ended.
                (to_green, from_green)
            }));
        }
        drop(done_tx);
        for _ in 0..PAIRS {
            let sum = done_rx
                .recv_timeout(Duration::from_secs(60))
                .expect("every green thread ends");
            assert_eq!(sum, (0..ROUNDS).sum::<u32>());
        }
        for r in remote {
            drop(tokio.block_on(r).unwrap());
        }
        drop(rt);
    });
}

/// A waker that drops what it holds the first time it is woken.
#[cfg(feature = "futures")]
struct DropOnWake<T>(StdMutex<Option<T>>);

#[cfg(feature = "futures")]
impl<T: Send> Wake for DropOnWake<T> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let held = self.0.lock().unwrap().take();
        drop(held);
    }
}

/// Attacks the `Sink` and `Stream` ops, whose waits live inside the
/// `Sender` and the `Receiver` between polls. A sink waiting for room in a
/// full channel is woken by a receive, and its waker drops the `Sender`;
/// a stream waiting for a message is woken by a send, and its waker drops
/// the `Receiver`. Each drop must take its op's entry off the list (which
/// counts no reference) and pass the unused notification on to a green
/// thread blocked behind it, which must then get the room or the message.
#[cfg(feature = "futures")]
#[test]
fn sink_and_stream_dropped_by_their_own_wakers_pass_the_wake_up_on() {
    use futures::{Sink, Stream};
    common::within(60, || {
        on_one_worker(|| {
            // The sink: room in a full channel.
            let (tx, rx) = channel::<u32>(1);
            tx.send(0).unwrap();
            let sink = Arc::new(DropOnWake(StdMutex::new(Some(tx.clone()))));
            let waker = Waker::from(sink.clone());
            {
                let mut held = sink.0.lock().unwrap();
                let sender = held.as_mut().unwrap();
                let polled = Pin::new(sender).poll_ready(&mut Context::from_waker(&waker));
                assert!(polled.is_pending(), "the channel is full");
            }
            let blocked = Arc::new(AtomicBool::new(false));
            let b = blocked.clone();
            let sender = stackful::spawn(move || {
                b.store(true, Ordering::SeqCst);
                tx.send(1).unwrap(); // listed behind the sink, and parked
            });
            while !blocked.load(Ordering::SeqCst) {
                stackful::yield_now();
            }
            assert_eq!(rx.recv(), Ok(0)); // wakes the sink, whose waker drops it
            assert!(sink.0.lock().unwrap().is_none());
            sender.join().unwrap();
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(1));

            // The stream: a message.
            let (tx, rx) = unbounded::<u32>();
            let stream = Arc::new(DropOnWake(StdMutex::new(Some(rx.clone()))));
            let waker = Waker::from(stream.clone());
            {
                let mut held = stream.0.lock().unwrap();
                let receiver = held.as_mut().unwrap();
                let polled = Pin::new(receiver).poll_next(&mut Context::from_waker(&waker));
                assert!(polled.is_pending(), "the channel is empty");
            }
            let waiting = Arc::new(AtomicBool::new(false));
            let w = waiting.clone();
            let receiver = stackful::spawn(move || {
                w.store(true, Ordering::SeqCst);
                rx.recv_timeout(Duration::from_secs(10)) // listed behind the stream
            });
            while !waiting.load(Ordering::SeqCst) {
                stackful::yield_now();
            }
            tx.send(5).unwrap(); // wakes the stream, whose waker drops it
            assert!(stream.0.lock().unwrap().is_none());
            assert_eq!(receiver.join().unwrap(), Ok(5));
        });
    });
}

/// The environment variable that makes `debug_mode_child` run its case.
const DEBUG_CHILD: &str = "STACKFUL_REVIEW15B_DEBUG_CHILD";

/// Attacks the same paths with debug mode on, where every resume also
/// lends the green thread to its home's `running` slot (read by the
/// monitor): ping-pong on one worker (count-free wake-ups both ways),
/// detached green threads that end right after their wake-up, and a
/// `notify_all` whose async waker yields. Debug mode is process-wide once
/// on, so the case runs in a child process of this test binary.
#[test]
fn debug_mode_paths_in_a_child_process() {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--exact", "debug_mode_child", "--test-threads=1"])
        .env(DEBUG_CHILD, "1")
        .env("STACKFUL_DEBUG", "1");
    let out = common::output_within_a_minute(cmd, "debug mode child");
    assert!(
        out.status.success(),
        "the debug-mode child failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The case of `debug_mode_paths_in_a_child_process`; does nothing in a
/// normal run.
#[test]
fn debug_mode_child() {
    if std::env::var_os(DEBUG_CHILD).is_none() {
        return;
    }
    on_one_worker(|| {
        // Ping-pong: each side wakes the other, on their one worker.
        let (a_tx, a_rx) = unbounded::<u32>();
        let (b_tx, b_rx) = unbounded::<u32>();
        let partner = stackful::spawn(move || {
            while let Ok(n) = a_rx.recv() {
                b_tx.send(n + 1).unwrap();
            }
        });
        for n in 0..2000 {
            a_tx.send(n).unwrap();
            assert_eq!(b_rx.recv(), Ok(n + 1));
        }
        drop(a_tx);
        partner.join().unwrap();

        // Detached green threads woken by one `notify_all`, behind an async
        // waker that yields until they have ended.
        let event = Arc::new(Event::new());
        let ended = Arc::new(AtomicUsize::new(0));
        let e = ended.clone();
        let yielding = YieldingWaker::new(move || e.load(Ordering::SeqCst) == 8);
        let waker = Waker::from(yielding.clone());
        let mut fut = pin!(event.wait_async());
        assert!(
            fut.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        for _ in 0..8 {
            let (ev, e) = (event.clone(), ended.clone());
            drop(stackful::spawn(move || {
                if ev.wait_timeout(Duration::from_secs(20)) {
                    e.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        while waiting(&event) < 9 {
            stackful::yield_now();
        }
        event.set();
        assert!(yielding.held.load(Ordering::SeqCst));
        assert_eq!(
            fut.as_mut().poll(&mut Context::from_waker(&waker)),
            Poll::Ready(())
        );
    });
}
