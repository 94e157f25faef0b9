//! Stackful coroutines for Rust: Python-style generators and green threads on
//! real stacks.
//!
//! Each coroutine runs on its own guard-paged stack and switches with a few
//! instructions of assembly (the `corosensei` crate). So a generator body is
//! ordinary Rust that can yield from any depth of ordinary function calls, and
//! a green thread is ordinary blocking-style Rust that suspends instead of
//! blocking its OS thread: no `async`, no function colouring.
//!
//! # A tour
//!
//! ```
//! use std::time::Duration;
//! use stackful::{Generator, GeneratorState};
//!
//! // Python's consumer/producer: the first send primes the body.
//! let mut consumer = Generator::new(|co, first: Option<u32>| {
//!     let mut next = first;
//!     let mut served = 0;
//!     while let Some(n) = next {
//!         served += 1;
//!         next = co.yield_(format!("200 OK {n}"));
//!     }
//!     served
//! });
//! for n in 1..=2 {
//!     if let GeneratorState::Yielded(reply) = consumer.send(Some(n)) {
//!         println!("[PRODUCER] got {reply}");
//!     }
//! }
//! assert_eq!(consumer.send(None), GeneratorState::Complete(2));
//!
//! // Green threads: asyncio.run, create_task and gather, as blocking code.
//! let results = stackful::run(|| {
//!     let fetch = |id: u64| stackful::spawn(move || {
//!         stackful::sleep(Duration::from_millis(30 - 10 * id));
//!         id
//!     });
//!     stackful::gather([fetch(1), fetch(2)]).unwrap()
//! });
//! println!("all data: {results:?}");
//! assert_eq!(results, [1, 2]);
//! ```
//!
//! It prints:
//!
//! ```text
//! [PRODUCER] got 200 OK 1
//! [PRODUCER] got 200 OK 2
//! all data: [1, 2]
//! ```
//!
//! See [`generator`] for the generator protocol, [`runtime`] for the green
//! thread runtime and its soundness rule, [`task`] for spawning, joining,
//! [`JoinSet`] and green-thread-locals ([`task_local!`]), [`time`] for
//! sleeps, intervals and timeouts, [`sync`] for channels, `select!` and
//! locks that suspend green threads, [`cancel`] for cancellation and
//! [`CancellationToken`], and [`stack`] for stack sizes.
//!
//! # Cancellation
//!
//! Cancelling a green thread, a timeout expiring, and closing a generator all
//! unwind the coroutine's stack from a suspension point, so destructors run.
//! A `catch_unwind` in your code must let these unwinds pass: see [`Cancelled`]
//! and [`catch_unwind`].
//!
//! # Debug mode
//!
//! `STACKFUL_DEBUG=1`, or `Runtime::builder().debug(true)`, prints warnings
//! about green threads that run too long without suspending, green threads or
//! generators dropped without ever starting, and panics nobody joined.

#![doc(test(attr(deny(warnings))))]

mod blocking;
pub mod bridge;
pub mod cancel;
mod debug;
pub mod generator;
mod ids;
/// Green waiting for any file descriptor: pipes, ttys, sockets of other crates.
pub mod io;
/// Green TCP, UDP and Unix sockets that suspend only the calling green thread.
pub mod net;
pub mod runtime;
mod scopes;
pub mod stack;
pub mod sync;
pub mod task;
pub mod time;

// Inlined, so the crate root documents them in full rather than as
// re-export lines.
#[doc(inline)]
pub use blocking::spawn_blocking;
#[doc(inline)]
pub use bridge::block_on;
#[doc(inline)]
pub use cancel::{CancellationToken, Cancelled, catch_unwind};
#[doc(inline)]
pub use generator::{Co, Generator, GeneratorState};
#[doc(inline)]
pub use runtime::{Runtime, run};
// `task::scope` names the function only: the module of that name is private
// (a plain `task::scope` import would name both).
#[doc(inline)]
pub use task::scope::scope;
#[doc(inline)]
pub use task::{
    JoinError, JoinHandle, JoinSet, ReturnWhen, as_completed, gather, join_all, spawn, try_gather,
    wait,
};
#[doc(inline)]
pub use time::{
    Elapsed, Interval, MissedTickBehavior, interval, interval_at, shield, sleep, sleep_until,
    timeout, timeout_at, yield_now,
};
