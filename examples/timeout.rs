//! asyncio.wait_for / asyncio.timeout: a one-hour task cut off after 1 s,
//! with its cleanup running as it is cancelled.
//!
//! ```python
//! async def long_running_task():
//!     try:
//!         await asyncio.sleep(3600)
//!     except asyncio.CancelledError:
//!         print("task cancelled")
//!         raise
//!
//! try:
//!     await asyncio.wait_for(long_running_task(), timeout=1.0)
//! except asyncio.TimeoutError:
//!     print("timed out!")
//! ```

use std::time::{Duration, Instant};

/// Runs when the task's stack unwinds: Python's `except CancelledError` + `raise`.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        println!("  task cancelled, cleaning up");
    }
}

fn long_running_task() -> &'static str {
    let _cleanup = Cleanup;
    println!("  long task starts");
    stackful::sleep(Duration::from_secs(3600));
    "task finished"
}

/// Runs this example (the tour calls it too).
pub fn demo() {
    let start = Instant::now();
    stackful::run(
        || match stackful::timeout(Duration::from_secs(1), long_running_task) {
            Ok(r) => println!("  {r}"),
            Err(e) => println!(
                "  timed out! ({e}, after {} ms)",
                start.elapsed().as_millis() / 100 * 100
            ),
        },
    );
}

#[allow(dead_code)]
fn main() {
    demo();
}
