//! The bridges to async Rust (issue 14), each beside its yardstick in the
//! same run: `block_on` of a ready future beside a bare `poll`; a
//! `block_on` ping-pong between two green threads of one worker beside a
//! `stackful::sync` channel ping-pong; `JoinHandle`s awaited from a tokio
//! task beside `tokio::spawn` plus await; and a ping-pong between a tokio
//! task and a green thread over `stackful` channels beside tokio's own
//! `mpsc` ping-pong between two tasks, and, for scale, a ping-pong between
//! two OS threads over std's `sync_channel` beside that same yardstick: each
//! message of a cross-runtime ping-pong wakes a parked thread, and this
//! line shows what that costs on the machine, whatever the runtimes do.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::{WORKERS, fmt, ratio, side_by_side, stackful_cases};

const READY: u64 = 1_000_000;
const PING: u64 = 100_000;
const SPAWN: u64 = 100_000;
/// Round trips of the ping-pongs that cross threads (tens of microseconds
/// each on a VM whose idle vCPUs halt).
const CROSS: u64 = 20_000;

/// A flag one side raises and the other awaits: the least a future woken
/// from elsewhere can be.
#[derive(Default)]
struct Flag {
    state: Mutex<(bool, Option<Waker>)>,
}

impl Flag {
    fn raise(&self) {
        let waker = {
            let mut s = self.state.lock().unwrap();
            s.0 = true;
            s.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Waits until raised, and lowers it again.
    fn lowered(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            let mut s = self.state.lock().unwrap();
            if s.0 {
                s.0 = false;
                return Poll::Ready(());
            }
            if !s.1.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                s.1 = Some(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

/// `block_on` of a ready future, on a green thread.
fn block_on_ready(rt: &stackful::Runtime, n: u64) {
    rt.run(|| {
        for i in 0..n {
            black_box(stackful::block_on(std::future::ready(black_box(i))));
        }
    });
}

/// The same ready future polled by hand: the floor `block_on` adds to.
fn poll_ready(rt: &stackful::Runtime, n: u64) {
    rt.run(|| {
        let mut cx = Context::from_waker(Waker::noop());
        for i in 0..n {
            let f = pin!(std::future::ready(black_box(i)));
            let _ = black_box(f.poll(&mut cx));
        }
    });
}

/// Two green threads of one worker, each `block_on`ing a flag the other
/// raises: `n` round trips.
fn block_on_ping_pong(rt: &stackful::Runtime, n: u64) {
    rt.run(|| {
        let ping = Arc::new(Flag::default());
        let pong = Arc::new(Flag::default());
        let (p, q) = (ping.clone(), pong.clone());
        let other = stackful::spawn(move || {
            for _ in 0..n {
                stackful::block_on(p.lowered());
                q.raise();
            }
        });
        for _ in 0..n {
            ping.raise();
            stackful::block_on(pong.lowered());
        }
        other.join().unwrap();
    });
}

/// The same round trips over two `stackful::sync` channels.
fn channel_ping_pong(rt: &stackful::Runtime, n: u64) {
    rt.run(|| {
        let (ping_tx, ping_rx) = stackful::sync::channel::<u64>(1);
        let (pong_tx, pong_rx) = stackful::sync::channel::<u64>(1);
        let other = stackful::spawn(move || {
            for v in ping_rx.iter() {
                pong_tx.send(v).unwrap();
            }
        });
        for i in 0..n {
            ping_tx.send(i).unwrap();
            black_box(pong_rx.recv().unwrap());
        }
        drop(ping_tx);
        other.join().unwrap();
    });
}

/// A tokio task spawns `n` green threads and awaits their handles.
fn await_green_threads(trt: &tokio::runtime::Runtime, srt: &Arc<stackful::Runtime>, n: u64) {
    let srt = srt.clone();
    trt.block_on(async move {
        tokio::spawn(async move {
            let handles: Vec<_> = (0..n).map(|i| srt.spawn(move || i)).collect();
            for h in handles {
                black_box(h.await.unwrap());
            }
        })
        .await
        .unwrap();
    });
}

/// A tokio task spawns `n` tokio tasks and awaits their handles.
fn await_tokio_tasks(trt: &tokio::runtime::Runtime, n: u64) {
    trt.block_on(async move {
        tokio::spawn(async move {
            let handles: Vec<_> = (0..n).map(|i| tokio::spawn(async move { i })).collect();
            for h in handles {
                black_box(h.await.unwrap());
            }
        })
        .await
        .unwrap();
    });
}

/// A tokio task against a green thread over `stackful` channels: the task
/// uses the async ends, the green thread the blocking ones.
fn mixed_ping_pong(trt: &tokio::runtime::Runtime, srt: &stackful::Runtime, n: u64) {
    let (ping_tx, ping_rx) = stackful::sync::channel::<u64>(1);
    let (pong_tx, pong_rx) = stackful::sync::channel::<u64>(1);
    let green = srt.spawn(move || {
        for v in ping_rx.iter() {
            pong_tx.send(v).unwrap();
        }
    });
    trt.block_on(async move {
        tokio::spawn(async move {
            for i in 0..n {
                ping_tx.send_async(i).await.unwrap();
                black_box(pong_rx.recv_async().await.unwrap());
            }
        })
        .await
        .unwrap();
    });
    green.join().unwrap();
}

/// Two OS threads over std's `sync_channel(1)`: every message wakes a
/// thread parked on a futex.
fn thread_ping_pong(n: u64) {
    let (ping_tx, ping_rx) = std::sync::mpsc::sync_channel::<u64>(1);
    let (pong_tx, pong_rx) = std::sync::mpsc::sync_channel::<u64>(1);
    let other = std::thread::spawn(move || {
        for v in ping_rx {
            pong_tx.send(v).unwrap();
        }
    });
    for i in 0..n {
        ping_tx.send(i).unwrap();
        black_box(pong_rx.recv().unwrap());
    }
    drop(ping_tx);
    other.join().unwrap();
}

/// Two tokio tasks over tokio's `mpsc`.
fn tokio_ping_pong(trt: &tokio::runtime::Runtime, n: u64) {
    trt.block_on(async move {
        let (ping_tx, mut ping_rx) = tokio::sync::mpsc::channel::<u64>(1);
        let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<u64>(1);
        let other = tokio::spawn(async move {
            while let Some(v) = ping_rx.recv().await {
                pong_tx.send(v).await.unwrap();
            }
        });
        tokio::spawn(async move {
            for i in 0..n {
                ping_tx.send(i).await.unwrap();
                black_box(pong_rx.recv().await.unwrap());
            }
        })
        .await
        .unwrap();
        other.await.unwrap();
    });
}

struct Line {
    case: &'static str,
    ours: Option<f64>,
    yardstick: Option<f64>,
    yardstick_name: &'static str,
}

/// The bridge table; `only` keeps the cases whose name contains it.
pub fn table(only: Option<&str>) {
    let srt = Arc::new(stackful_cases::runtime(WORKERS));
    let one = stackful_cases::runtime(1);
    let trt = super::tokio_cases::runtime();
    let mut lines = Vec::new();
    let mut line = |case: &'static str,
                    yardstick_name: &'static str,
                    rounds,
                    ops,
                    runs: &mut [&mut dyn FnMut()]| {
        if only.is_none_or(|o| case.contains(o)) {
            let m = side_by_side(rounds, ops, runs);
            lines.push(Line {
                case,
                ours: m.first().copied(),
                yardstick: m.get(1).copied(),
                yardstick_name,
            });
        }
    };
    line(
        "block_on of a ready future (1 000 000)",
        "a bare poll",
        7,
        READY,
        &mut [&mut || block_on_ready(&srt, READY), &mut || {
            poll_ready(&srt, READY)
        }],
    );
    line(
        "block_on ping-pong, two green threads of one worker (100 000)",
        "stackful channel ping-pong",
        7,
        PING,
        &mut [&mut || block_on_ping_pong(&one, PING), &mut || {
            channel_ping_pong(&one, PING)
        }],
    );
    line(
        "spawn and await 100 000 green threads from a tokio task",
        "tokio::spawn and await",
        7,
        SPAWN,
        &mut [&mut || await_green_threads(&trt, &srt, SPAWN), &mut || {
            await_tokio_tasks(&trt, SPAWN)
        }],
    );
    line(
        "ping-pong, tokio task against green thread (20 000)",
        "tokio mpsc ping-pong",
        7,
        CROSS,
        &mut [&mut || mixed_ping_pong(&trt, &srt, CROSS), &mut || {
            tokio_ping_pong(&trt, CROSS)
        }],
    );
    line(
        "ping-pong, two OS threads over std's sync_channel (20 000), for scale",
        "tokio mpsc ping-pong",
        7,
        CROSS,
        &mut [&mut || thread_ping_pong(CROSS), &mut || {
            tokio_ping_pong(&trt, CROSS)
        }],
    );
    if lines.is_empty() {
        return;
    }
    println!(
        "\nbridges to async Rust: stackful ({WORKERS} workers, 1 for the block_on ping-pong) \
         beside a yardstick in the same run (tokio: {WORKERS} workers); ns per operation, medians"
    );
    println!("| case | stackful | yardstick | ns | ratio |");
    println!("|---|---:|---|---:|---:|");
    for l in &lines {
        println!(
            "| {} | {} | {} | {} | {} |",
            l.case,
            fmt(l.ours),
            l.yardstick_name,
            fmt(l.yardstick),
            ratio(l.ours, l.yardstick)
        );
    }
}
