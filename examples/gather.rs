//! asyncio.gather: three delayed fetches run at once; results in input order.
//!
//! ```python
//! async def fetch_data(delay, id):
//!     print(f"fetching data {id}...")
//!     await asyncio.sleep(delay)
//!     print(f"data {id} fetched")
//!     return {"id": id, "delay": delay}
//!
//! results = await asyncio.gather(fetch_data(2, 1), fetch_data(1, 2), fetch_data(3, 3))
//! ```
//!
//! The delays here are tenths of the guide's seconds.

use std::time::{Duration, Instant};

#[derive(Debug)]
#[allow(dead_code)] // the fields are shown through Debug
/// What a fetch returns.
pub struct Data {
    id: u32,
    delay_ms: u64,
}

/// Pretends to fetch data for `delay_ms` milliseconds.
pub fn fetch_data(delay_ms: u64, id: u32) -> Data {
    println!("  fetching data {id}...");
    stackful::sleep(Duration::from_millis(delay_ms));
    println!("  data {id} fetched");
    Data { id, delay_ms }
}

/// Runs this example (the tour calls it too).
pub fn demo() {
    let start = Instant::now();
    let results = stackful::run(|| {
        stackful::gather([
            stackful::spawn(|| fetch_data(200, 1)),
            stackful::spawn(|| fetch_data(100, 2)),
            stackful::spawn(|| fetch_data(300, 3)),
        ])
        .expect("no fetch failed")
    });
    println!("  all data: {results:?}");
    println!(
        "  took {} ms (the longest delay, not the sum)",
        start.elapsed().as_millis() / 10 * 10
    );
}

#[allow(dead_code)]
fn main() {
    demo();
}
