//! run_in_executor: a blocking call goes to the thread pool while a ticker
//! green thread on the same worker keeps ticking.
//!
//! ```python
//! def blocking_io():
//!     time.sleep(2)
//!     return "IO result"
//!
//! result = await loop.run_in_executor(None, blocking_io)
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn blocking_io() -> &'static str {
    println!("  blocking IO starts");
    std::thread::sleep(Duration::from_millis(300)); // a real blocking call
    println!("  blocking IO ends");
    "IO result"
}

/// Runs this example (the tour calls it too).
pub fn demo() {
    // One worker, so the ticker and the caller share it.
    let rt = stackful::Runtime::builder()
        .workers(1)
        .build()
        .expect("runtime");
    rt.run(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let ticker = stackful::spawn(move || {
            let mut n = 0;
            while !s.load(Ordering::Relaxed) {
                n += 1;
                println!("  tick {n}");
                stackful::sleep(Duration::from_millis(100));
            }
        });
        let result = stackful::spawn_blocking(blocking_io);
        println!("  got: {result}");
        stop.store(true, Ordering::Relaxed);
        ticker.join().unwrap();
    });
}

#[allow(dead_code)]
fn main() {
    demo();
}
