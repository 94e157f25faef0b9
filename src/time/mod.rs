//! Time: sleeping, yielding, intervals, timeouts and shields.
//!
//! Inside a green thread these suspend only the green thread. On a plain OS
//! thread they behave as their blocking equivalents (`sleep` sleeps the
//! thread, `timeout` bounds the waits made inside it), so library code works
//! in both worlds.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::cancel::{Cancelled, Cause};
use crate::runtime::park;
use crate::scopes::{self, Kind};

mod interval;

pub use interval::{Interval, MissedTickBehavior, interval, interval_at};

/// Suspends the caller for at least `duration`: `asyncio.sleep`.
///
/// A cancellation point: a cancelled green thread, or an expired enclosing
/// timeout, unwinds from here. `sleep(Duration::ZERO)` yields, like
/// [`yield_now`].
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
///
/// let start = Instant::now();
/// stackful::run(|| stackful::sleep(Duration::from_millis(10)));
/// assert!(start.elapsed() >= Duration::from_millis(10));
/// ```
pub fn sleep(duration: Duration) {
    if duration.is_zero() {
        return yield_now();
    }
    match Instant::now().checked_add(duration) {
        Some(deadline) => sleep_to(deadline),
        None => loop {
            park::park(None); // "forever": only a cancellation ends it
        },
    }
}

/// Suspends the caller until `deadline`; see [`sleep`]. A deadline in the
/// past returns after a [`yield_now`].
///
/// # Examples
///
/// Steps at a steady pace, whatever each step costs (see also
/// [`interval`]):
///
/// ```
/// use std::time::{Duration, Instant};
///
/// stackful::run(|| {
///     let start = Instant::now();
///     for step in 1..=3 {
///         // ... some work ...
///         stackful::sleep_until(start + Duration::from_millis(5 * step));
///     }
///     assert!(start.elapsed() >= Duration::from_millis(15));
/// });
/// ```
pub fn sleep_until(deadline: Instant) {
    if Instant::now() >= deadline {
        return yield_now();
    }
    sleep_to(deadline);
}

/// Sleeps until a deadline in the future. A fired timer means the deadline
/// has passed; only an early wake-up reads the clock again.
fn sleep_to(deadline: Instant) {
    while !park::park_until(deadline) && Instant::now() < deadline {}
}

/// Lets the other green threads on this worker run, then continues: a bare
/// `await asyncio.sleep(0)`. A cancellation point. On a plain OS thread it
/// calls [`std::thread::yield_now`].
// Inlined: the switch then sits in the caller's own frame, so a loop that
// yields does not return from a function the worker's switch entered, which
// the CPU's return predictor gets wrong twice per switch.
#[inline]
pub fn yield_now() {
    if !park::yield_current() {
        yield_thread();
    }
}

/// `yield_now` on a plain OS thread.
#[cold]
fn yield_thread() {
    park::checkpoint();
    std::thread::yield_now();
}

/// The error of a [`timeout`] whose deadline passed.
///
/// It prints as `deadline has elapsed`, and debug-prints as
/// `Elapsed(deadline has elapsed)`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Debug for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Elapsed")
            .field(&format_args!("{self}"))
            .finish()
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

/// Runs `body` on the caller's stack, cut off if it is still running after
/// `duration`: `asyncio.timeout` / `asyncio.wait_for`.
///
/// When the deadline passes, `body` is unwound from its current or next
/// suspension point (destructors run) and `timeout` returns `Err(Elapsed)`.
/// Other cancellations pass through. Timeouts nest, and the earliest
/// deadline wins. `body` needs no `Send` or `'static` bound: it runs right
/// here. A `body` that never suspends cannot be cut off, nor can the
/// waits that are not cancellation points (`spawn_blocking`, a scope
/// waiting for its children, a rendezvous receive waiting for the message
/// of the `select!` send it paired with): the deadline takes effect at the
/// next suspension point after them.
///
/// A timeout belongs to the stack it was opened on: a generator that yields
/// out of an open timeout does not take its caller's frames with it (see
/// PEP 789); the timeout applies again when the generator resumes.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let outcome = stackful::run(|| {
///     stackful::timeout(Duration::from_millis(20), || {
///         stackful::sleep(Duration::from_secs(3600));
///         "finished"
///     })
/// });
/// assert_eq!(outcome, Err(stackful::Elapsed::new()));
/// ```
pub fn timeout<F: FnOnce() -> R, R>(duration: Duration, body: F) -> Result<R, Elapsed> {
    match Instant::now().checked_add(duration) {
        Some(deadline) => timeout_at(deadline, body),
        None => Ok(body()), // a deadline past the end of time never comes
    }
}

/// [`timeout`] with an absolute deadline: several steps can share one
/// budget.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
///
/// stackful::run(|| {
///     let deadline = Instant::now() + Duration::from_millis(50);
///     let first = stackful::timeout_at(deadline, || "quick step");
///     assert_eq!(first, Ok("quick step"));
///     // The second step gets what is left of the same 50 ms.
///     let second = stackful::timeout_at(deadline, || stackful::sleep(Duration::from_secs(3600)));
///     assert!(second.is_err());
/// });
/// ```
pub fn timeout_at<F: FnOnce() -> R, R>(deadline: Instant, body: F) -> Result<R, Elapsed> {
    let scope = Open(Some(scopes::open(Kind::Deadline(deadline))));
    let id = scope.id();
    let outcome = panic::catch_unwind(AssertUnwindSafe(body));
    drop(scope);
    match outcome {
        Ok(value) => Ok(value),
        Err(payload) if Cancelled::cause_of(&*payload) == Some(Cause::Scope(id)) => {
            Err(Elapsed(()))
        }
        Err(payload) => panic::resume_unwind(payload),
    }
}

impl Elapsed {
    /// An `Elapsed`, for comparisons in tests.
    pub fn new() -> Elapsed {
        Elapsed(())
    }
}

impl Default for Elapsed {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `body`, deferring the caller's cancellation until it returns:
/// `asyncio.shield`. Cancelling the green thread, or an enclosing timeout
/// expiring, takes effect at the first suspension point after `body`
/// returns. Timeouts opened inside `body` still work.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let saved = stackful::run(|| {
///     stackful::timeout(Duration::from_millis(5), || {
///         stackful::shield(|| {
///             stackful::sleep(Duration::from_millis(30)); // not cut off
///             "saved"
///         })
///     })
/// });
/// assert_eq!(saved, Ok("saved"));
/// ```
pub fn shield<F: FnOnce() -> R, R>(body: F) -> R {
    let _scope = Open(Some(scopes::open(Kind::Shield)));
    body()
}

/// Closes a scope however its body ends.
struct Open(Option<scopes::Opened>);

impl Open {
    fn id(&self) -> u64 {
        self.0.as_ref().map_or(0, |s| s.0)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(scope) = self.0.take() {
            scopes::close(scope);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_reads_like_its_message() {
        assert_eq!(Elapsed::new().to_string(), "deadline has elapsed");
        assert_eq!(
            format!("{:?}", Elapsed::new()),
            "Elapsed(deadline has elapsed)"
        );
        assert_eq!(
            format!("{:?}", Err::<(), _>(Elapsed::new())),
            "Err(Elapsed(deadline has elapsed))"
        );
    }
}
