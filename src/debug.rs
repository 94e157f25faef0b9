//! Debug mode: extra warnings on stderr for mistakes that are otherwise silent.
//!
//! Turned on by `STACKFUL_DEBUG=1` in the environment or by
//! `Runtime::builder().debug(true)`. It reports:
//! - a green thread that runs for longer than the threshold (100 ms by
//!   default) without suspending, which starves the others on its worker;
//! - a green thread or generator dropped without ever being started;
//! - a green thread that panicked when nobody joined it.

use std::fmt;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

static ENABLED: LazyLock<AtomicBool> = LazyLock::new(|| {
    let on = std::env::var_os("STACKFUL_DEBUG").is_some_and(|v| v != "0" && !v.is_empty());
    AtomicBool::new(on)
});

/// Microseconds a green thread may run without suspending before a warning.
static SLOW_MICROS: AtomicU64 = AtomicU64::new(100_000);

/// Whether debug mode is on.
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Turns debug mode on (it is never turned off once on).
pub(crate) fn enable(slow: Duration) {
    ENABLED.store(true, Ordering::Relaxed);
    SLOW_MICROS.store(slow.as_micros().max(1) as u64, Ordering::Relaxed);
}

/// The threshold for the slow green thread warning.
pub(crate) fn slow_threshold() -> Duration {
    Duration::from_micros(SLOW_MICROS.load(Ordering::Relaxed))
}

/// Prints one warning line.
pub(crate) fn warn(message: fmt::Arguments<'_>) {
    eprintln!("stackful debug: {message}");
}
