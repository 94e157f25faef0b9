//! asyncio.wait(return_when=FIRST_COMPLETED), then wait for the rest.
//!
//! ```python
//! done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
//! first = done.pop()
//! print(f"first result: {first.result()}")
//! await asyncio.wait(pending)
//! ```

use std::time::Duration;

use stackful::ReturnWhen;

fn fetch_data(delay_ms: u64, id: u32) -> (u32, u64) {
    stackful::sleep(Duration::from_millis(delay_ms));
    (id, delay_ms)
}

/// Runs this example (the tour calls it too).
pub fn demo() {
    stackful::run(|| {
        let tasks = [(200, 1), (100, 2), (300, 3)]
            .map(|(d, id)| stackful::spawn(move || fetch_data(d, id)));
        let (done, pending) = stackful::wait(tasks, ReturnWhen::FirstCompleted);
        let first = done.into_iter().next().expect("one is done");
        println!("  first result: {:?}", first.join().unwrap());
        println!("  {} still pending", pending.len());
        let (rest, _) = stackful::wait(pending, ReturnWhen::AllCompleted);
        for h in rest {
            println!("  then: {:?}", h.join().unwrap());
        }
    });
}

#[allow(dead_code)]
fn main() {
    demo();
}
