//! The runtime workloads, on stackful. Shared by stackful's own `cargo bench
//! --bench runtime` and by the side-by-side comparison in `benches/compare`,
//! which runs the same workloads on tokio and may.

#![allow(dead_code)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stackful::Runtime;

/// A runtime with `workers` workers.
pub fn runtime(workers: usize) -> Runtime {
    Runtime::builder()
        .workers(workers)
        .build()
        .expect("runtime")
}

/// Spawns `n` trivial green threads, then joins them all.
pub fn spawn_join(rt: &Runtime, n: u64) {
    rt.run(|| {
        let handles: Vec<_> = (0..n)
            .map(|i| stackful::spawn(move || black_box(i)))
            .collect();
        for h in handles {
            black_box(h.join().unwrap());
        }
    });
}

/// `tasks` green threads each call `yield_now` `yields` times.
pub fn yield_many(rt: &Runtime, tasks: u64, yields: u64) {
    rt.run(|| {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                stackful::spawn(move || {
                    for _ in 0..yields {
                        stackful::yield_now();
                    }
                })
            })
            .collect();
        stackful::join_all(handles);
    });
}

/// `n` green threads each sleep for `ms` milliseconds.
pub fn sleepers(rt: &Runtime, n: u64, ms: u64) {
    rt.run(|| {
        let handles: Vec<_> = (0..n)
            .map(|_| stackful::spawn(move || stackful::sleep(Duration::from_millis(ms))))
            .collect();
        stackful::join_all(handles);
    });
}

/// `n` sequential `spawn_blocking` round trips from one green thread.
pub fn blocking(rt: &Runtime, n: u64) {
    rt.run(|| {
        for i in 0..n {
            black_box(stackful::spawn_blocking(move || black_box(i)));
        }
    });
}

/// Starts `n` green threads that stay idle (sleeping) and returns once all
/// have started; cancel them through the handles.
pub fn park_idle(rt: &Runtime, n: u64) -> Vec<stackful::JoinHandle<()>> {
    let started = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let s = started.clone();
            rt.spawn(move || {
                s.fetch_add(1, Ordering::Relaxed);
                stackful::sleep(Duration::from_secs(3600));
            })
        })
        .collect();
    while started.load(Ordering::Relaxed) < n as usize {
        std::thread::sleep(Duration::from_millis(5));
    }
    handles
}

/// `n` round trips between two green threads over two rendezvous channels.
/// With `split`, the pair is made to run on different workers (the partner
/// holds its worker until the other has started elsewhere); without, the
/// first spawns the second, which the LIFO slot starts on the same worker.
/// Returns whether the pair shared a worker.
pub fn pingpong(rt: &Runtime, n: u64, split: bool) -> bool {
    use stackful::sync::channel;
    use std::sync::atomic::AtomicBool;
    rt.run(|| {
        let (a_tx, a_rx) = channel::<u64>(0);
        let (b_tx, b_rx) = channel::<u64>(0);
        let pong_body = move || {
            let me = std::thread::current().id();
            for v in a_rx.iter() {
                b_tx.send(v + 1).unwrap();
            }
            me
        };
        let ping_body = move || {
            for i in 0..n {
                a_tx.send(i).unwrap();
                black_box(b_rx.recv().unwrap());
            }
            drop(a_tx); // ends the partner's loop
            std::thread::current().id()
        };
        if split {
            let started = Arc::new(AtomicBool::new(false));
            let s = started.clone();
            let pong = stackful::spawn(move || {
                while !s.load(Ordering::Acquire) {
                    std::hint::spin_loop(); // hold this worker
                }
                pong_body()
            });
            let ping = stackful::spawn(move || {
                started.store(true, Ordering::Release);
                ping_body()
            });
            let ping_thread = ping.join().unwrap();
            ping_thread == pong.join().unwrap()
        } else {
            stackful::spawn(move || {
                let pong = stackful::spawn(pong_body);
                let ping_thread = ping_body();
                ping_thread == pong.join().unwrap()
            })
            .join()
            .unwrap()
        }
    })
}

/// `producers` and `consumers` green threads move `n` messages through a
/// bounded(1024) channel. With one of each, the producer spawns the consumer,
/// as the README recommends for partners, so they share a worker.
pub fn throughput(rt: &Runtime, producers: u64, consumers: u64, n: u64) {
    use stackful::sync::channel;
    if producers == 1 && consumers == 1 {
        return rt.run(|| {
            stackful::spawn(move || {
                let (tx, rx) = channel::<u64>(1024);
                let consumer = stackful::spawn(move || {
                    for v in rx.iter() {
                        black_box(v);
                    }
                });
                for i in 0..n {
                    tx.send(i).unwrap();
                }
                drop(tx);
                consumer.join().unwrap();
            })
            .join()
            .unwrap()
        });
    }
    rt.run(|| {
        let (tx, rx) = channel::<u64>(1024);
        let mut handles = Vec::new();
        for p in 0..producers {
            let tx = tx.clone();
            handles.push(stackful::spawn(move || {
                for i in 0..n / producers {
                    tx.send(p + i).unwrap();
                }
            }));
        }
        drop(tx);
        for _ in 0..consumers {
            let rx = rx.clone();
            handles.push(stackful::spawn(move || {
                for v in rx.iter() {
                    black_box(v);
                }
            }));
        }
        stackful::join_all(handles);
    });
}

/// `tasks` green threads each increment a shared counter `each` times
/// under a `stackful::sync::Mutex`.
pub fn mutex(rt: &Runtime, tasks: u64, each: u64) {
    let counter = Arc::new(stackful::sync::Mutex::new(0u64));
    rt.run(|| {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let c = counter.clone();
                stackful::spawn(move || {
                    for _ in 0..each {
                        *c.lock() += 1;
                    }
                })
            })
            .collect();
        stackful::join_all(handles);
    });
    assert_eq!(*counter.lock(), tasks * each);
}

stackful::task_local! {
    static TASK_COUNTER: std::cell::Cell<u64> = std::cell::Cell::new(0);
}

thread_local! {
    static THREAD_COUNTER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// `n` increments of a `task_local!` `Cell` from run's body, or of a
/// `thread_local!` one (`task == false`), for the cost of `with`.
pub fn local_with(rt: &Runtime, n: u64, task: bool) -> u64 {
    rt.run(|| {
        for _ in 0..n {
            if std::hint::black_box(task) {
                TASK_COUNTER.with(|c| c.set(c.get() + 1));
            } else {
                THREAD_COUNTER.with(|c| c.set(c.get() + 1));
            }
        }
        if task {
            TASK_COUNTER.get()
        } else {
            THREAD_COUNTER.with(|c| c.get())
        }
    })
}

/// On one green thread, `n` receives from a channel that always holds a
/// message: with `select`, a `select!` over it and a second ready channel;
/// without, a plain `recv`. The ratio is the cost of a select over two.
pub fn ready_recv(rt: &Runtime, n: u64, select: bool) {
    use stackful::sync::unbounded;
    rt.run(|| {
        stackful::spawn(move || {
            let (tx1, rx1) = unbounded::<u64>();
            let (tx2, rx2) = unbounded::<u64>();
            tx1.send(0).unwrap();
            tx2.send(0).unwrap();
            for i in 0..n {
                if select {
                    stackful::select! {
                        recv(rx1) -> v => { black_box(v.unwrap()); tx1.send(i).unwrap(); }
                        recv(rx2) -> v => { black_box(v.unwrap()); tx2.send(i).unwrap(); }
                    }
                } else {
                    black_box(rx1.recv().unwrap());
                    tx1.send(i).unwrap();
                }
            }
        })
        .join()
        .unwrap();
    });
}

/// As [`ready_recv`] with `select`, over eight ready channels.
pub fn ready_select8(rt: &Runtime, n: u64) {
    use stackful::sync::unbounded;
    rt.run(|| {
        stackful::spawn(move || {
            let chans: Vec<_> = (0..8)
                .map(|_| {
                    let (tx, rx) = unbounded::<u64>();
                    tx.send(0).unwrap();
                    (tx, rx)
                })
                .collect();
            let [a, b, c, d, e, f, g, h] = &chans[..] else {
                unreachable!()
            };
            for i in 0..n {
                stackful::select! {
                    recv(a.1) -> v => { black_box(v.unwrap()); a.0.send(i).unwrap(); }
                    recv(b.1) -> v => { black_box(v.unwrap()); b.0.send(i).unwrap(); }
                    recv(c.1) -> v => { black_box(v.unwrap()); c.0.send(i).unwrap(); }
                    recv(d.1) -> v => { black_box(v.unwrap()); d.0.send(i).unwrap(); }
                    recv(e.1) -> v => { black_box(v.unwrap()); e.0.send(i).unwrap(); }
                    recv(f.1) -> v => { black_box(v.unwrap()); f.0.send(i).unwrap(); }
                    recv(g.1) -> v => { black_box(v.unwrap()); g.0.send(i).unwrap(); }
                    recv(h.1) -> v => { black_box(v.unwrap()); h.0.send(i).unwrap(); }
                }
            }
        })
        .join()
        .unwrap();
    });
}

/// `n` messages through a rendezvous channel between two green threads,
/// the receiver spawned by the sender (so the LIFO slot starts it on the
/// same worker): with `select`, both ends are `select!`s of two
/// operations (the second on an empty `quit` channel); without, plain
/// `send` and `recv`.
pub fn rendezvous(rt: &Runtime, n: u64, select: bool) {
    use stackful::sync::channel;
    rt.run(|| {
        stackful::spawn(move || {
            let (tx, rx) = channel::<u64>(0);
            // With `select`, each side also waits on a `quit` channel that
            // stays empty (Go's usual shape): a select of one operation is
            // a plain one, so two make it a select.
            let (quit_tx, quit_rx) = channel::<()>(0);
            let quit = quit_rx.clone();
            let receiver = stackful::spawn(move || {
                let mut sum = 0u64;
                loop {
                    let v = if select {
                        stackful::select! {
                            recv(rx) -> v => v.ok(),
                            recv(quit) -> _ => None,
                        }
                    } else {
                        rx.recv().ok()
                    };
                    match v {
                        Some(v) => sum += v,
                        None => return sum,
                    }
                }
            });
            for i in 0..n {
                if select {
                    stackful::select! {
                        send(tx, i) -> r => r.unwrap(),
                        recv(quit_rx) -> _ => unreachable!("nobody sends on quit"),
                    }
                } else {
                    tx.send(i).unwrap();
                }
            }
            drop(tx);
            black_box(receiver.join().unwrap());
            drop(quit_tx);
        })
        .join()
        .unwrap();
    });
}

/// The channel flavours of the issue-11 ping-pong cases.
#[derive(Clone, Copy, Debug)]
pub enum Flavor {
    Unbounded,
    Bounded1,
}

fn pair_of(flavor: Flavor) -> (stackful::sync::Sender<u64>, stackful::sync::Receiver<u64>) {
    match flavor {
        Flavor::Unbounded => stackful::sync::unbounded(),
        Flavor::Bounded1 => stackful::sync::channel(1),
    }
}

/// `n` round trips between a pinger and the partner it spawned, over two
/// channels of `flavor`: from `run`'s body itself (`from_main`), or inside a
/// spawned green thread.
pub fn pingpong_flavor(rt: &Runtime, n: u64, flavor: Flavor, from_main: bool) {
    let body = move || {
        let (a_tx, a_rx) = pair_of(flavor);
        let (b_tx, b_rx) = pair_of(flavor);
        let pong = stackful::spawn(move || {
            for v in a_rx.iter() {
                b_tx.send(v + 1).unwrap();
            }
        });
        for i in 0..n {
            a_tx.send(i).unwrap();
            black_box(b_rx.recv().unwrap());
        }
        drop(a_tx);
        pong.join().unwrap();
    };
    rt.run(|| {
        if from_main {
            body()
        } else {
            stackful::spawn(body).join().unwrap()
        }
    })
}

/// Spawns a trivial green thread and joins it, `n` times in a row, from
/// `run`'s body itself.
pub fn spawn_join_each(rt: &Runtime, n: u64) {
    rt.run(|| {
        for i in 0..n {
            black_box(stackful::spawn(move || black_box(i)).join().unwrap());
        }
    });
}
