//! Debug mode's warnings, each checked in a child process: the parent re-runs
//! this binary with `STACKFUL_DEBUG_CASE` set and reads the child's stderr.

mod common;

use common::assert_mentions;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use stackful::{Co, Generator, Runtime};

const CASE: &str = "STACKFUL_DEBUG_CASE";

/// One worker, debug mode on, a 30 ms threshold for "without suspending".
fn slow_at_30ms() -> Runtime {
    Runtime::builder()
        .workers(1)
        .debug(true)
        .slow_threshold(Duration::from_millis(30))
        .build()
        .unwrap()
}

fn run_case(case: &str) {
    match case {
        "hog" => {
            let rt = slow_at_30ms();
            // Spawned from outside `run`, so it starts on the pool worker,
            // as does what it spawns.
            rt.spawn(|| {
                stackful::task::Builder::new()
                    .name("hog")
                    .spawn(|| std::thread::sleep(Duration::from_millis(400)))
                    .unwrap()
                    .join()
                    .unwrap();
            })
            .join()
            .unwrap();
        }
        "main-hog" => {
            let rt = slow_at_30ms();
            rt.run(|| {
                // The partner starts on this thread once the main body
                // suspends, which the blocking sleep delays.
                let partner = stackful::spawn(|| 7);
                std::thread::sleep(Duration::from_millis(400));
                assert_eq!(partner.join().unwrap(), 7);
            });
        }
        "unstarted" => {
            let g = Generator::new(|co: &Co<u8>, ()| co.yield_(1));
            drop(g);
            // The global runtime: a named spawn from this plain thread goes
            // there (a runtime of our own would leave it to the global one,
            // which might start it before the cancel).
            Runtime::builder()
                .workers(1)
                .debug(true)
                .build_global()
                .unwrap();
            // The only worker is held, so the next spawn cannot start.
            let gate = Arc::new(AtomicBool::new(false));
            let running = Arc::new(AtomicBool::new(false));
            let (g, r) = (gate.clone(), running.clone());
            let busy = stackful::spawn(move || {
                r.store(true, Ordering::SeqCst);
                while !g.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                }
            });
            while !running.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            let never = stackful::task::Builder::new()
                .name("never-run")
                .spawn(|| ())
                .unwrap();
            never.cancel();
            gate.store(true, Ordering::SeqCst);
            busy.join().unwrap();
        }
        "unjoined_panic" => {
            let rt = Runtime::builder().debug(true).build().unwrap();
            let h = rt.spawn(|| panic!("nobody listens"));
            while !h.is_finished() {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(h);
            let detached = rt.spawn(|| {
                std::thread::sleep(Duration::from_millis(5));
                panic!("detached and failed")
            });
            drop(detached);
            // Dropping the runtime waits for every green thread to finish,
            // so the warning about the detached one has been printed.
            drop(rt);
        }
        "quiet_without_debug" => {
            drop(Generator::new(|co: &Co<u8>, ()| co.yield_(1)));
            let rt = Runtime::builder().workers(1).build().unwrap();
            rt.run(|| std::thread::sleep(Duration::from_millis(150)));
        }
        "relock" => {
            // Each second lock would wait forever; debug mode says so.
            let rt = Runtime::builder().workers(1).debug(true).build().unwrap();
            let caught = |what: &str, f: &mut dyn FnMut()| {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
                eprintln!(
                    "{what}: {}",
                    if r.is_err() { "caught" } else { "NOT CAUGHT" }
                );
            };
            rt.run(|| {
                let m = stackful::sync::Mutex::new(0);
                let _g = m.lock();
                caught("green mutex", &mut || drop(m.lock()));
                let l = stackful::sync::RwLock::new(0);
                let r = l.read();
                caught("read then write", &mut || drop(l.write()));
                drop(r);
                let w = l.write();
                caught("write then read", &mut || drop(l.read()));
                drop(w);
            });
            let m = stackful::sync::Mutex::new(0);
            let g = m.lock();
            caught("thread mutex", &mut || drop(m.lock()));
            drop(g);
            drop(m.lock()); // free again: no false alarm
            eprintln!("survived");
        }
        "slow_unwind_wait" => {
            // Reported while it still waits: a wait that never ended would
            // be reported all the same.
            static WAITING: std::sync::OnceLock<stackful::sync::Event> = std::sync::OnceLock::new();
            static RELEASE: std::sync::OnceLock<stackful::sync::Event> = std::sync::OnceLock::new();
            struct SlowDrop;
            impl Drop for SlowDrop {
                fn drop(&mut self) {
                    WAITING.get_or_init(stackful::sync::Event::new).set();
                    RELEASE.get_or_init(stackful::sync::Event::new).wait();
                }
            }
            // Releases the destructor 300 ms (ten times the threshold) after
            // it has started waiting: timed from that event, not from
            // before the runtime was even built.
            let release = || {
                std::thread::spawn(|| {
                    WAITING.get_or_init(stackful::sync::Event::new).wait();
                    std::thread::sleep(Duration::from_millis(300));
                    RELEASE.get_or_init(stackful::sync::Event::new).set();
                })
            };
            let rt = slow_at_30ms();
            rt.run(|| {
                // Cancelled once it holds its guard (one cancelled before it
                // starts never makes it), ordered by an event.
                let started = std::sync::Arc::new(stackful::sync::Event::new());
                let s1 = started.clone();
                let h = stackful::task::Builder::new()
                    .name("cleaner")
                    .spawn(move || {
                        let _g = SlowDrop;
                        s1.set();
                        stackful::sleep(Duration::from_secs(3600));
                    })
                    .unwrap();
                started.wait();
                release();
                h.cancel();
                assert!(h.join().unwrap_err().is_cancelled());
            });
            // The same destructor left to `run`'s shutdown, which says what
            // it waits for.
            WAITING.get_or_init(stackful::sync::Event::new).clear();
            RELEASE.get_or_init(stackful::sync::Event::new).clear();
            let started = std::sync::Arc::new(stackful::sync::Event::new());
            let s2 = started.clone();
            rt.run(move || {
                drop(stackful::spawn(move || {
                    let _g = SlowDrop;
                    s2.set();
                    stackful::sleep(Duration::from_secs(3600));
                }));
                started.wait();
                release();
            });
        }
        other => panic!("unknown case {other}"),
    }
}

fn child(case: &str, debug_env: bool) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(CASE, case).env_remove("STACKFUL_DEBUG");
    if debug_env {
        cmd.env("STACKFUL_DEBUG", "1");
    }
    let out = common::output_within_a_minute(cmd, case);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{case}: the child failed:\n{stderr}");
    stderr
}

fn expect(case: &str, debug_env: bool, has: &[&str], lacks: &[&str]) {
    let stderr = child(case, debug_env);
    assert_mentions(case, &stderr, has, lacks);
    println!("test {case} ... ok");
}

fn main() {
    if let Ok(case) = std::env::var(CASE) {
        run_case(&case);
        return;
    }
    expect(
        "hog",
        false,
        &[
            "stackful debug: green thread #",
            "`hog` has run for",
            "without suspending on worker 0",
            "stackful::spawn_blocking",
            "`std::sync` lock held by another across a suspension point",
        ],
        &[],
    );
    expect(
        "main-hog",
        false,
        &[
            "stackful debug: green thread #",
            "`main` has run for",
            "without suspending on the thread that called `run`",
            "delaying the green threads pinned there",
        ],
        &[],
    );
    expect(
        "unstarted",
        true,
        &[
            "stackful debug: generator created at tests/debug_mode.rs:",
            "was dropped without ever being started",
            "`never-run` spawned at tests/debug_mode.rs:",
            "was cancelled before it ever started",
        ],
        &[],
    );
    expect(
        "unjoined_panic",
        false,
        &[
            "was dropped without joining it, and it had panicked",
            "panicked and nobody joined it",
        ],
        &[],
    );
    expect("quiet_without_debug", false, &[], &["stackful debug"]);
    // Issue 9, item 10: a lock's holder locking it again hung silently.
    expect(
        "relock",
        false,
        &[
            "green thread #",
            "tried to lock a `stackful::sync::Mutex` (created at tests/debug_mode.rs:",
            "that it already holds, which would wait forever",
            "green mutex: caught",
            "tried to write-lock a `stackful::sync::RwLock` (created at tests/debug_mode.rs:",
            "while it holds it for reading",
            "read then write: caught",
            "tried to read-lock",
            "while it holds it for writing",
            "write then read: caught",
            "thread `main` tried to lock",
            "thread mutex: caught",
            "survived",
        ],
        &["NOT CAUGHT"],
    );
    expect(
        "slow_unwind_wait",
        false,
        &[
            "stackful debug: green thread #",
            "`cleaner` has been unwinding from a cancellation, timeout or generator close for",
            "waiting in a destructor",
            "`run`'s shutdown has waited",
            "for 1 green thread(s) to end",
        ],
        &[],
    );
}
