//! `Receiver` as a `Stream` and `Sender` as a `Sink` (cargo feature
//! `futures`): one op allocated per stream or sink, not one per message;
//! 10 000 messages both ways between green threads and async tasks; and
//! what becomes of a message the sink accepted when the `Sender` is
//! dropped unflushed (issue 14, async bridge fixes).
#![cfg(feature = "futures")]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use common::{DropCounter, within};
use futures::{SinkExt, StreamExt};
use stackful::sync::{RecvError, Select, TrySendError};

/// Counts the allocations of the threads that ask it to.
struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call goes to `System` unchanged; the counters are
// thread-local cells without destructors, which allocate nothing.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
        // SAFETY: as the caller's contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as the caller's contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// The allocations `body` makes on the calling thread.
fn allocations<R>(body: impl FnOnce() -> R) -> (R, usize) {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    let out = body();
    COUNTING.with(|c| c.set(false));
    (out, ALLOCATIONS.with(Cell::get))
}

const N: u32 = 10_000;

#[test]
fn a_sink_and_a_stream_allocate_once_not_per_message() {
    within(60, || {
        // Room for all, so nothing ever waits: what is left to count is the
        // ops themselves (and the executor's few).
        let (mut tx, mut rx) = stackful::sync::channel::<u32>(N as usize);
        let ((), sent) = allocations(|| {
            futures::executor::block_on(async {
                for i in 0..N {
                    SinkExt::send(&mut tx, i).await.unwrap();
                }
            })
        });
        assert!(sent < 50, "{sent} allocations to sink {N} messages");
        let (got, received) = allocations(|| {
            futures::executor::block_on(async {
                let mut got = Vec::with_capacity(N as usize);
                while got.len() < N as usize {
                    got.push(rx.next().await.unwrap());
                }
                got
            })
        });
        assert!(
            received < 50,
            "{received} allocations to stream {N} messages"
        );
        assert!(got.into_iter().eq(0..N));
        drop(tx);
        assert_eq!(futures::executor::block_on(rx.next()), None);
    });
}

/// Runs `body` on a stackful runtime on a thread of its own.
fn green<T: Send + 'static>(
    body: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || stackful::run(body))
}

#[test]
fn ten_thousand_messages_each_way_between_green_threads_and_async_tasks() {
    within(120, || {
        for cap in [0, 1] {
            // Green thread to a stream on a plain thread's executor.
            let (tx, rx) = stackful::sync::channel::<u32>(cap);
            let producer = green(move || (0..N).for_each(|i| tx.send(i).unwrap()));
            let got: Vec<u32> = futures::executor::block_on(rx.collect());
            assert!(got.into_iter().eq(0..N), "cap {cap}: green to stream");
            producer.join().unwrap();

            // A sink on a plain thread's executor to a green thread.
            let (mut tx, rx) = stackful::sync::channel::<u32>(cap);
            let consumer = green(move || rx.iter().collect::<Vec<_>>());
            futures::executor::block_on(async {
                let mut items = futures::stream::iter(0..N).map(Ok);
                tx.send_all(&mut items).await.unwrap();
                tx.close().await.unwrap();
            });
            drop(tx);
            let got = consumer.join().unwrap();
            assert!(got.into_iter().eq(0..N), "cap {cap}: sink to green");

            // Both on one runtime: `block_on` on a green thread streams from
            // and sinks to other green threads, with each message sent
            // alone (ready, start, flush).
            let got = stackful::run(move || {
                let (tx, mut rx) = stackful::sync::channel::<u32>(cap);
                let producer = stackful::spawn(move || (0..N).for_each(|i| tx.send(i).unwrap()));
                let (mut sink, back) = stackful::sync::channel::<u32>(cap);
                let consumer = stackful::spawn(move || back.iter().collect::<Vec<_>>());
                stackful::block_on(async {
                    while let Some(v) = rx.next().await {
                        SinkExt::send(&mut sink, v).await.unwrap();
                    }
                });
                drop(sink);
                producer.join().unwrap();
                consumer.join().unwrap()
            });
            assert!(
                got.into_iter().eq(0..N),
                "cap {cap}: green, block_on, green"
            );
        }
    });
}

#[test]
fn a_sink_to_a_stream_on_two_executors() {
    within(120, || {
        for cap in [0, 1] {
            let (mut tx, rx) = stackful::sync::channel::<u32>(cap);
            let consumer =
                std::thread::spawn(move || futures::executor::block_on(rx.collect::<Vec<_>>()));
            futures::executor::block_on(async {
                for i in 0..N {
                    SinkExt::send(&mut tx, i).await.unwrap();
                }
            });
            drop(tx);
            assert!(consumer.join().unwrap().into_iter().eq(0..N), "cap {cap}");
        }
    });
}

/// A waker that counts its wakes.
struct Counting(AtomicUsize);

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn poll_with<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(waker))
}

#[test]
fn a_message_fed_to_a_queue_is_in_the_channel_without_a_flush() {
    for cap in [None, Some(1), Some(4)] {
        let (mut tx, rx) = match cap {
            None => stackful::sync::unbounded::<u32>(),
            Some(cap) => stackful::sync::channel::<u32>(cap),
        };
        // `feed`: ready and start, no flush.
        futures::executor::block_on(tx.feed(7)).unwrap();
        drop(tx); // the last sender: the channel disconnects
        assert_eq!(
            rx.try_recv(),
            Ok(7),
            "cap {cap:?}: the fed message was lost"
        );
        assert_eq!(rx.recv(), Err(RecvError));
    }
}

#[test]
fn a_full_bounded_sink_waits_for_room_then_its_message_is_in_the_channel() {
    let (mut tx, rx) = stackful::sync::channel::<u32>(1);
    let other = tx.clone();
    other.send(1).unwrap(); // full
    let count = Arc::new(Counting(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let mut feed = tx.feed(2);
    assert!(poll_with(&mut feed, &waker).is_pending(), "no room yet");
    assert_eq!(rx.recv(), Ok(1)); // room: the sink is told
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    assert!(matches!(poll_with(&mut feed, &waker), Poll::Ready(Ok(()))));
    drop(feed);
    drop(tx); // unflushed
    drop(other);
    assert_eq!(rx.recv(), Ok(2));
    assert_eq!(rx.recv(), Err(RecvError));
}

#[test]
fn the_room_poll_ready_reserves_is_held_until_used_closed_or_dropped() {
    let noop = Waker::noop();
    let mut cx = Context::from_waker(noop);
    for how in ["used", "closed", "dropped"] {
        let (mut tx, rx) = stackful::sync::channel::<u32>(1);
        let other = tx.clone();
        assert!(matches!(tx.poll_ready_unpin(&mut cx), Poll::Ready(Ok(()))));
        // The one slot is the sink's: a blocking sender finds it full.
        assert_eq!(other.try_send(9), Err(TrySendError::Full(9)), "{how}");
        match how {
            "used" => {
                tx.start_send_unpin(5).unwrap();
                assert_eq!(rx.try_recv(), Ok(5)); // in, without a flush
            }
            "closed" => assert!(matches!(tx.poll_close_unpin(&mut cx), Poll::Ready(Ok(())))),
            _ => drop(tx),
        }
        assert_eq!(
            other.try_send(9),
            Ok(()),
            "{how}: the room was not given back"
        );
        assert_eq!(rx.try_recv(), Ok(9));
    }
}

#[test]
fn start_send_hands_the_message_back_at_once_when_receivers_are_gone() {
    for cap in [None, Some(0), Some(1)] {
        let (mut tx, rx) = match cap {
            None => stackful::sync::unbounded::<u32>(),
            Some(cap) => stackful::sync::channel::<u32>(cap),
        };
        drop(rx);
        let err = futures::executor::block_on(tx.feed(3)).unwrap_err();
        assert_eq!(err.0, 3, "cap {cap:?}");
    }
}

#[test]
fn at_a_rendezvous_a_waiting_receiver_gets_the_fed_message_without_a_flush() {
    within(60, || {
        let (mut tx, rx) = stackful::sync::channel::<u32>(0);
        let receiver = green(move || rx.recv());
        // Until the receiver waits at the rendezvous (a send could proceed).
        let mut sel = Select::new();
        sel.send(&tx);
        sel.ready();
        drop(sel);
        futures::executor::block_on(tx.feed(8)).unwrap();
        drop(tx); // unflushed
        assert_eq!(receiver.join().unwrap(), Ok(8));
    });
}

#[test]
fn at_a_rendezvous_an_unflushed_message_nobody_took_is_dropped_with_the_sender() {
    within(60, || {
        for last in [true, false] {
            let drops = Arc::new(AtomicUsize::new(0));
            let (mut tx, rx) = stackful::sync::channel::<DropCounter>(0);
            let kept = (!last).then(|| tx.clone());
            // No receiver waits: the message is offered, and stays the
            // sender's until one takes it.
            futures::executor::block_on(tx.feed(DropCounter(drops.clone()))).unwrap();
            assert_eq!(drops.load(Ordering::SeqCst), 0);
            drop(tx); // before any receiver came
            assert_eq!(
                drops.load(Ordering::SeqCst),
                1,
                "last {last}: not dropped with it"
            );
            match kept {
                Some(other) => {
                    assert!(rx.try_recv().is_err(), "withdrawn, yet received");
                    drop(other);
                }
                None => assert!(rx.recv().is_err(), "withdrawn, yet received"),
            }
            assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped twice");
        }
    });
}

#[test]
fn at_a_rendezvous_an_offered_message_is_taken_by_a_receiver_that_comes() {
    within(60, || {
        let (mut tx, rx) = stackful::sync::channel::<u32>(0);
        futures::executor::block_on(tx.feed(4)).unwrap(); // offered
        // A receiver that comes while it is offered takes it, and then the
        // flush completes.
        assert_eq!(rx.try_recv(), Ok(4));
        assert!(matches!(
            tx.poll_flush_unpin(&mut Context::from_waker(Waker::noop())),
            Poll::Ready(Ok(()))
        ));
        drop(tx);
        assert_eq!(rx.recv(), Err(RecvError));
    });
}
