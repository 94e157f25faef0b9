//! `run`'s own thread works as an executor for the green threads that its
//! main body spawns (issue 11): partners stay beside the main body, an accept
//! loop's green threads still spread over the pool, a main body that never
//! suspends does not keep what it spawned from starting, and `run` returns
//! only after what started on its thread has ended.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, ThreadId};
use std::time::Duration;

use common::{DropCounter, panic_text, within};
use stackful::sync::Event;

fn two_workers() -> stackful::Runtime {
    stackful::Runtime::builder().workers(2).build().unwrap()
}

#[test]
fn a_partner_the_main_body_spawns_and_joins_runs_on_runs_thread() {
    let rt = two_workers();
    let (me, partner, grandchild) = rt.run(|| {
        let me = thread::current().id();
        let (partner, grandchild) = stackful::spawn(|| {
            // And what that partner spawns and joins, too.
            let grandchild = stackful::spawn(|| thread::current().id()).join().unwrap();
            (thread::current().id(), grandchild)
        })
        .join()
        .unwrap();
        (me, partner, grandchild)
    });
    assert_eq!(partner, me);
    assert_eq!(grandchild, me);
    assert_eq!(
        me,
        thread::current().id(),
        "the main body runs on the caller"
    );
}

#[test]
fn ping_pong_with_a_partner_spawned_from_the_main_body_stays_on_one_thread() {
    let rt = two_workers();
    rt.run(|| {
        let (a_tx, a_rx) = stackful::sync::unbounded::<u64>();
        let (b_tx, b_rx) = stackful::sync::unbounded::<u64>();
        let pong = stackful::spawn(move || {
            let mut threads = Vec::new();
            for v in a_rx.iter() {
                threads.push(thread::current().id());
                b_tx.send(v + 1).unwrap();
            }
            threads
        });
        for i in 0..1000 {
            a_tx.send(i).unwrap();
            assert_eq!(b_rx.recv().unwrap(), i + 1);
        }
        drop(a_tx);
        let threads = pong.join().unwrap();
        assert_eq!(threads.len(), 1000);
        assert!(threads.iter().all(|t| *t == thread::current().id()));
    });
}

#[test]
fn an_accept_loop_in_the_main_body_spreads_its_green_threads_over_the_pool() {
    // Connections arriving one at a time: each green thread has started and
    // waits (for the release) before the next is spawned. Were every one
    // kept on `run`'s thread, the pool would sit idle.
    within(60, || {
        let rt = two_workers();
        let (here, threads) = rt.run(|| {
            let release = Arc::new(Event::new());
            let mut handles = Vec::new();
            for _ in 0..24 {
                let started = Arc::new(Event::new());
                let (s, r) = (started.clone(), release.clone());
                handles.push(stackful::spawn(move || {
                    let me = thread::current().id();
                    s.set();
                    r.wait();
                    me
                }));
                started.wait();
            }
            release.set();
            let threads: Vec<ThreadId> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            (thread::current().id(), threads)
        });
        let on_run = threads.iter().filter(|t| **t == here).count();
        let elsewhere = threads.len() - on_run;
        // `run`'s thread keeps the first three (it holds four green
        // threads then, the main one included); the rest go to the pool.
        assert_eq!(on_run, 3, "the first ones stay beside the main body");
        assert_eq!(elsewhere, 21);
    });
}

#[test]
fn a_main_body_that_never_suspends_does_not_keep_its_spawn_from_starting() {
    // The spawn waits in `run`'s thread's LIFO slot, and the main body spins
    // without suspending until it has run: the monitor moves it to the pool.
    within(60, || {
        let rt = two_workers();
        rt.run(|| {
            let ran = Arc::new(AtomicBool::new(false));
            let r = ran.clone();
            let h = stackful::spawn(move || {
                r.store(true, Ordering::SeqCst);
                thread::current().id()
            });
            while !ran.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
            assert_ne!(h.join().unwrap(), thread::current().id());
        });
        // Again, after the monitor has been quiet for a while (it sleeps
        // after a second without work, and a spawn wakes it).
        thread::sleep(Duration::from_millis(1500));
        rt.run(|| {
            let ran = Arc::new(AtomicBool::new(false));
            let r = ran.clone();
            drop(stackful::spawn(move || r.store(true, Ordering::SeqCst)));
            while !ran.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
        });
    });
}

#[test]
fn run_returns_after_the_green_threads_started_on_its_thread_have_unwound() {
    within(60, || {
        let rt = two_workers();
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        let here = rt.run(move || {
            let started = Arc::new(Event::new());
            let s = started.clone();
            let h = stackful::spawn(move || {
                let _counted = DropCounter(d);
                s.set();
                stackful::sleep(Duration::from_secs(3600));
                thread::current().id()
            });
            started.wait();
            drop(h); // detached, asleep: `run`'s shutdown cancels it
            thread::current().id()
        });
        assert_eq!(here, thread::current().id());
        assert_eq!(drops.load(Ordering::SeqCst), 1, "its destructors ran");
        assert_eq!(rt.spawn(|| 5).join().unwrap(), 5, "the runtime still works");
    });
}

#[test]
fn concurrent_runs_on_several_threads_each_keep_their_own_partners() {
    within(60, || {
        let rt = Arc::new(two_workers());
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let rt = rt.clone();
                thread::spawn(move || {
                    rt.run(|| {
                        let me = thread::current().id();
                        (0..200)
                            .filter(|&i| {
                                stackful::spawn(move || (i, thread::current().id()))
                                    .join()
                                    .unwrap()
                                    == (i, me)
                            })
                            .count()
                    })
                })
            })
            .collect();
        // All of them, but for a rare one that the monitor moved because
        // its thread was descheduled for a whole period.
        for t in threads {
            let beside = t.join().unwrap();
            assert!(
                beside >= 195,
                "only {beside} of 200 partners ran beside their run"
            );
        }
    });
}

/// Runs per descriptor test: each leaked two descriptors, and the other
/// tests of this file, running at the same time, open and close some too.
const RUNS: usize = 200;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Found in review: `run` asks its own thread's executor to cancel its group,
/// and the request (which holds the group, which holds the executor's
/// `Home`) stayed there when nothing was left to cancel: a cycle, which kept
/// the thread's reactor (an epoll fd and an eventfd) after the thread ended.
#[test]
fn runs_on_threads_that_exit_do_not_leak_descriptors() {
    assert_runs_leak_no_descriptors(|| 1);
}

/// Control: a run that ends with a green thread still pinned on its thread
/// processes the control request, so no cycle.
#[test]
fn runs_that_cancel_a_pinned_green_thread_do_not_leak_descriptors() {
    assert_runs_leak_no_descriptors(|| {
        let started = Arc::new(Event::new());
        let s = started.clone();
        drop(stackful::spawn(move || {
            s.set();
            stackful::sleep(Duration::from_secs(3600));
        }));
        started.wait();
    });
}

/// Runs `body` in [`RUNS`] `run`s, each on a thread that then exits, and
/// checks the process's descriptor count did not grow with them.
fn assert_runs_leak_no_descriptors<R: 'static>(body: fn() -> R) {
    let rt = Arc::new(stackful::Runtime::builder().workers(1).build().unwrap());
    // Warm up: the monitor thread, the worker's reactor, etc.
    rt.run(|| stackful::spawn(|| ()).join().unwrap());
    let before = open_fds();
    for _ in 0..RUNS {
        let rt = rt.clone();
        thread::spawn(move || drop(rt.run(body))).join().unwrap();
    }
    let after = open_fds();
    assert!(
        after < before + RUNS / 2,
        "{} descriptors leaked by {RUNS} runs on threads that exited",
        after - before
    );
}

/// A main body that panics while green threads are pinned beside it: the
/// panic propagates after they are cancelled and unwound.
#[test]
fn main_body_panics_with_pinned_children() {
    within(30, || {
        let rt = stackful::Runtime::builder().workers(2).build().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.run(move || {
                let mut started = Vec::new();
                for _ in 0..3 {
                    let ev = Arc::new(Event::new());
                    let (e, d) = (ev.clone(), d.clone());
                    drop(stackful::spawn(move || {
                        let _c = DropCounter(d);
                        e.set();
                        stackful::sleep(Duration::from_secs(3600));
                    }));
                    started.push(ev);
                }
                for e in &started {
                    e.wait();
                }
                panic!("main fails");
            })
        }));
        assert_eq!(panic_text(r.unwrap_err()), "main fails");
        assert_eq!(drops.load(Ordering::SeqCst), 3);
    });
}

/// A pinned green thread whose unwind waits (shielded) for a pool green
/// thread, and one waiting (shielded, with a timeout) on a socket
/// registered on the run thread's reactor: shutdown completes.
#[test]
fn shutdown_with_shielded_pinned_waits() {
    within(30, || {
        let rt = stackful::Runtime::builder().workers(2).build().unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        rt.run(move || {
            let here = thread::current().id();
            let listener = stackful::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let started = Arc::new(Event::new());
            let s = started.clone();
            let d1 = d.clone();
            let pool = common::spawn_on_pool(|| {
                stackful::shield(|| stackful::sleep(Duration::from_millis(200)));
                7
            });
            drop(stackful::spawn(move || {
                assert_eq!(thread::current().id(), here);
                struct OnDrop(Arc<AtomicUsize>, Option<stackful::JoinHandle<i32>>);
                impl Drop for OnDrop {
                    fn drop(&mut self) {
                        let h = self.1.take().unwrap();
                        let _ = stackful::shield(|| h.join());
                        self.0.fetch_add(1, Ordering::SeqCst);
                    }
                }
                let _g = OnDrop(d1, Some(pool));
                s.set();
                stackful::sleep(Duration::from_secs(3600));
            }));
            started.wait();
            let started = Arc::new(Event::new());
            let s = started.clone();
            let d2 = d.clone();
            drop(stackful::spawn(move || {
                assert_eq!(thread::current().id(), here);
                stackful::shield(|| {
                    s.set();
                    let r = stackful::timeout(Duration::from_millis(300), || listener.accept());
                    assert!(r.is_ok(), "accept should complete before the timeout");
                });
                d2.fetch_add(1, Ordering::SeqCst);
            }));
            started.wait();
            // connect from a plain thread after a delay
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(50));
                let _c = std::net::TcpStream::connect(addr).unwrap();
                thread::sleep(Duration::from_millis(100));
            });
        });
        assert_eq!(done.load(Ordering::SeqCst), 2);
    });
}

/// Found in review: the monitor told spawns apart by address, and a main
/// body that spawns and joins in a loop gets each one at the last one's
/// address, so two looks 10 ms apart that both caught the slot briefly
/// occupied moved a fresh spawn (8 to 10 in 3 s). A stray move stays
/// possible if this thread is descheduled for a whole period.
#[test]
fn a_spawn_join_loop_keeps_every_partner_beside_the_main_body() {
    within(120, || {
        let rt = stackful::Runtime::builder().workers(2).build().unwrap();
        let (moved, total) = rt.run(|| {
            let me = thread::current().id();
            let start = std::time::Instant::now();
            let (mut moved, mut total) = (0, 0);
            while start.elapsed() < Duration::from_secs(2) {
                if stackful::spawn(move || thread::current().id())
                    .join()
                    .unwrap()
                    != me
                {
                    moved += 1;
                }
                total += 1;
            }
            (moved, total)
        });
        assert!(moved <= 3, "{moved} of {total} partners moved to the pool");
    });
}

/// A green thread on `run`'s thread that spawns and then waits for I/O is
/// not waiting for what it spawned: an accept loop in the main body sends
/// every connection's green thread to the pool, where it would otherwise
/// start on `run`'s thread, one thread more than the workers.
#[test]
fn an_accept_loop_waiting_for_connections_sends_them_to_the_pool() {
    within(60, || {
        let rt = two_workers();
        let (here, threads) = rt.run(|| {
            let listener = stackful::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            // One client at a time, each waiting for its echo, so the
            // accept loop waits for every next connection.
            let clients = thread::spawn(move || {
                for i in 0..6u8 {
                    let mut c = std::net::TcpStream::connect(addr).unwrap();
                    std::io::Write::write_all(&mut c, &[i]).unwrap();
                    let mut b = [0u8];
                    std::io::Read::read_exact(&mut c, &mut b).unwrap();
                    assert_eq!(b[0], i);
                }
            });
            let mut handles = Vec::new();
            for _ in 0..6 {
                let (mut s, _) = listener.accept().unwrap();
                handles.push(stackful::spawn(move || {
                    let mut b = [0u8];
                    std::io::Read::read_exact(&mut s, &mut b).unwrap();
                    std::io::Write::write_all(&mut s, &b).unwrap();
                    thread::current().id()
                }));
            }
            let threads: Vec<ThreadId> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            clients.join().unwrap();
            (thread::current().id(), threads)
        });
        // The last one may stay: after it the main body waits in `join`.
        let on_run = threads.iter().filter(|t| **t == here).count();
        assert!(on_run <= 1, "{on_run} of 6 connections ran on run's thread");
    });
}
