//! Debug mode: extra warnings on stderr for mistakes that are otherwise silent.
//!
//! Turned on by `STACKFUL_DEBUG=1` in the environment or by
//! `Runtime::builder().debug(true)`. It reports:
//! - a green thread that runs for longer than the threshold (100 ms by
//!   default) without suspending, which starves the others on its worker;
//! - a green thread or generator dropped without ever being started;
//! - a green thread that panicked when nobody joined it.

use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

/// 0: not read from the environment yet; 1: off; 2: on.
static STATE: AtomicU8 = AtomicU8::new(0);

/// Microseconds a green thread may run without suspending before a warning.
static SLOW_MICROS: AtomicU64 = AtomicU64::new(100_000);

/// Whether debug mode is on. One load on the hot path.
#[inline]
pub(crate) fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        2 => true,
        1 => false,
        _ => read_env(),
    }
}

#[cold]
fn read_env() -> bool {
    let on = std::env::var_os("STACKFUL_DEBUG").is_some_and(|v| v != "0" && !v.is_empty());
    // Only moves 0 to 1 or 2: an `enable` that came first stays.
    let _ = STATE.compare_exchange(
        0,
        if on { 2 } else { 1 },
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    STATE.load(Ordering::Relaxed) == 2
}

/// Turns debug mode on (it is never turned off once on).
pub(crate) fn enable(slow: Duration) {
    STATE.store(2, Ordering::Relaxed);
    SLOW_MICROS.store(slow.as_micros().max(1) as u64, Ordering::Relaxed);
}

/// The threshold for the slow green thread warning.
pub(crate) fn slow_threshold() -> Duration {
    Duration::from_micros(SLOW_MICROS.load(Ordering::Relaxed))
}

/// Prints one warning line. A closed or failing stderr is ignored: the
/// warnings are printed from places that must not panic.
pub(crate) fn warn(message: fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "stackful debug: {message}");
}

/// Prints one line on stderr whether or not debug mode is on, for what
/// must never pass silently (a leaked stack, an abort). Ignores a failing
/// stderr, as [`warn`] does.
pub(crate) fn note(message: fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "stackful: {message}");
}
