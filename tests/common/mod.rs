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
