//! The classic generator producer/consumer from the Python guide:
//!
//! ```python
//! def consumer():
//!     r = ''
//!     while True:
//!         n = yield r
//!         if not n:
//!             return
//!         print(f'[CONSUMER] Consuming {n}...')
//!         r = '200 OK'
//!
//! def producer(c):
//!     c.send(None)
//!     for n in range(1, 6):
//!         print(f'[PRODUCER] Producing {n}...')
//!         r = c.send(n)
//!         print(f'[PRODUCER] Consumer return: {r}')
//!     c.close()
//! ```
//!
//! In stackful the priming `send(None)` disappears: the first `send` starts
//! the body and hands it the first value.

use stackful::{Generator, GeneratorState};

/// Prints when the consumer's body is unwound by `close`.
struct Goodbye;

impl Drop for Goodbye {
    fn drop(&mut self) {
        println!("[CONSUMER] closed, cleaning up");
    }
}

fn consumer() -> Generator<&'static str, u32> {
    Generator::new(|co, mut n: u32| {
        let _cleanup = Goodbye;
        loop {
            println!("[CONSUMER] Consuming {n}...");
            n = co.yield_("200 OK");
        }
    })
}

fn producer(mut c: Generator<&'static str, u32>) {
    for n in 1..=5 {
        println!("[PRODUCER] Producing {n}...");
        if let GeneratorState::Yielded(r) = c.send(n) {
            println!("[PRODUCER] Consumer return: {r}");
        }
    }
    c.close();
}

fn main() {
    producer(consumer());
}
