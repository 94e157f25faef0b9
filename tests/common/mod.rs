//! Helpers shared by the test files.

#![allow(dead_code)] // each test file uses a different subset

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counts how many times it is dropped, from any thread.
pub struct DropCounter(pub Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The entry of a test binary re-run as a child process with the
/// environment variable `var` naming its case: writes `mark` raw to
/// descriptor `mark_fd` (what the harness printed before it is then
/// ignored), runs the case, and exits before the harness prints its result
/// (exit flushes what is buffered). Does nothing in a normal test run.
pub fn child_case(var: &str, mark: &str, mark_fd: i32, run: impl FnOnce(&str)) {
    let Ok(case) = std::env::var(var) else {
        return;
    };
    // SAFETY: a live buffer of that length.
    unsafe { libc::write(mark_fd, mark.as_ptr().cast(), mark.len()) };
    run(&case);
    std::process::exit(0);
}

/// A one-worker runtime running `body` on its worker, where the green
/// threads it spawns run too.
pub fn on_one_worker(body: impl FnOnce() + Send + 'static) {
    let rt = stackful::Runtime::builder().workers(1).build().unwrap();
    rt.spawn(body).join().unwrap();
}

/// Echoes what `s` reads back to it, at most `chunk` bytes at a time, until
/// the peer closes its side; panics on an error.
pub fn echo<S: std::io::Read + std::io::Write>(mut s: S, chunk: usize) {
    let mut buf = vec![0; chunk];
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            return;
        }
        s.write_all(&buf[..n]).unwrap();
    }
}

/// The message of a panic payload (`&str` or `String`), or "".
pub fn panic_text(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p
            .downcast::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_default(),
    }
}

/// Polls `cond` from a green thread or a plain thread (sleeping 1 ms between
/// looks) until it holds, failing after a generous 20 s.
pub fn eventually(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        stackful::sleep(Duration::from_millis(1));
    }
}

/// Asserts that `text` (a child process's stderr, say) contains every one of
/// `has` and none of `lacks`, naming `case` and showing `text` on failure.
pub fn assert_mentions(case: &str, text: &str, has: &[&str], lacks: &[&str]) {
    for needle in has {
        assert!(
            text.contains(needle),
            "{case}: stderr lacks {needle:?}:\n{text}"
        );
    }
    for needle in lacks {
        assert!(
            !text.contains(needle),
            "{case}: stderr has {needle:?}:\n{text}"
        );
    }
}

/// Runs `body` on a thread of its own and fails if it has not returned
/// within `secs` seconds, so a bug that hangs fails the test instead of
/// stalling the suite (the stuck thread ends with the process). A panic in
/// `body` is re-raised here.
pub fn within<R: Send + 'static>(secs: u64, body: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)));
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(value)) => value,
        Ok(Err(payload)) => std::panic::resume_unwind(payload),
        Err(_) => panic!("hung: still running after {secs} s"),
    }
}

/// Runs `cmd` to completion with its stderr captured, killing it and failing
/// if it takes longer than 60 s (a child that hangs must fail the test, not
/// stall the suite).
pub fn output_within_a_minute(mut cmd: std::process::Command, case: &str) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("could not start the child");
    // Read stderr on a thread, so a chatty child cannot fill the pipe and block.
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = std::io::Read::read_to_end(&mut pipe, &mut text);
        text
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("could not wait for the child") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            let text = reader.join().unwrap_or_default();
            panic!(
                "{case}: the child hung (killed after 60 s); stderr:\n{}",
                String::from_utf8_lossy(&text)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = reader.join().unwrap_or_default();
    std::process::Output {
        status,
        stdout: Vec::new(),
        stderr,
    }
}

/// Keeps the only worker of a one-worker runtime busy (spinning, never
/// suspending) until the returned gate is set, so that green threads
/// spawned meanwhile stay unstarted. Join the handle after setting the gate.
pub fn hold_the_worker(
    rt: &stackful::Runtime,
) -> (Arc<std::sync::atomic::AtomicBool>, stackful::JoinHandle<()>) {
    use std::sync::atomic::AtomicBool;
    let gate = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicBool::new(false));
    let (g, r) = (gate.clone(), running.clone());
    let busy = rt.spawn(move || {
        r.store(true, Ordering::SeqCst);
        while !g.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
    });
    while !running.load(Ordering::SeqCst) {
        std::thread::yield_now(); // the only worker is held from here on
    }
    (gate, busy)
}

/// A whole number from the environment variable `name`, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Where a test body runs: on a green thread of a runtime with this many
/// workers, or on a plain OS thread. Helpers it starts run the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Green(usize),
    Os,
}

/// A helper started by [`Mode::spawn`].
pub enum Handle<T> {
    Green(stackful::JoinHandle<T>),
    Os(std::thread::JoinHandle<T>),
}

impl Mode {
    pub fn spawn<T: Send + 'static>(self, f: impl FnOnce() -> T + Send + 'static) -> Handle<T> {
        match self {
            Mode::Green(_) => Handle::Green(stackful::spawn(f)),
            Mode::Os => Handle::Os(std::thread::spawn(f)),
        }
    }
}

impl<T> Handle<T> {
    /// The helper's result; its panic is re-raised.
    pub fn join(self) -> T {
        match self {
            Handle::Green(h) => match h.join() {
                Ok(v) => v,
                Err(e) => match e.try_into_panic() {
                    Ok(payload) => std::panic::resume_unwind(payload),
                    Err(e) => panic!("a green helper did not finish: {e:?}"),
                },
            },
            Handle::Os(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
        }
    }
}

/// Runs `body` on a green thread of a one-worker runtime, then of a
/// two-worker runtime, then on a plain OS thread: the same assertions hold
/// in every mode.
pub fn each_mode(body: impl Fn(Mode) + Send + Sync + 'static) {
    let body = Arc::new(body);
    let b = body.clone();
    each_green(move |mode| b(mode));
    body(Mode::Os);
}

/// As [`each_mode`], green threads only (for cancellation by handle). The
/// body runs on a worker (not on `run`'s own thread), so with one worker
/// it and every helper it spawns share that one thread.
pub fn each_green(body: impl Fn(Mode) + Send + Sync + 'static) {
    let body = Arc::new(body);
    for workers in [1, 2] {
        let rt = stackful::Runtime::builder()
            .workers(workers)
            .build()
            .unwrap();
        let b = body.clone();
        match rt.spawn(move || b(Mode::Green(workers))).join() {
            Ok(()) => {}
            Err(e) => match e.try_into_panic() {
                Ok(payload) => std::panic::resume_unwind(payload),
                Err(e) => panic!("the test body did not finish: {e:?}"),
            },
        }
    }
}

/// Runs `body` once inside `stackful::run` (green threads) and once on a
/// plain OS thread; `spawn` starts a peer of the same kind.
pub fn both(body: impl Fn(&dyn Fn(Box<dyn FnOnce() + Send>) -> Joiner) + Send + Sync + 'static) {
    let body = Arc::new(body);
    let b = body.clone();
    within(120, move || {
        stackful::run(move || {
            b(&|f| {
                let h = stackful::spawn(f);
                Joiner(Box::new(move || h.join().unwrap()))
            })
        })
    });
    within(120, move || {
        body(&|f| {
            let h = std::thread::spawn(f);
            Joiner(Box::new(move || h.join().unwrap()))
        })
    });
}

/// Joins a peer started by `both`'s spawner.
pub struct Joiner(pub Box<dyn FnOnce()>);

impl Joiner {
    pub fn join(self) {
        (self.0)()
    }
}

/// Spawns `f` from `run`'s main body so that it starts on a pool worker,
/// not on `run`'s own thread: the main body's newest spawn takes that
/// thread's LIFO slot, so a second, empty spawn pushes `f` out to the pool.
pub fn spawn_on_pool<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> stackful::JoinHandle<T> {
    let h = stackful::spawn(f);
    drop(stackful::spawn(|| ()));
    h
}
