//! Stackful coroutines for Rust: Python-style generators on real stacks.
//!
//! Each coroutine runs on its own guard-paged stack and switches with a few
//! instructions of assembly (the `corosensei` crate). So a generator body is
//! ordinary Rust that can yield from any depth of ordinary function calls:
//! no `async`, no function colouring.
//!
//! # A tour
//!
//! ```
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
//! // Any function can yield, given the `&Co`: walk a tree recursively.
//! enum Tree { Leaf(u32), Node(Vec<Tree>) }
//! fn walk(co: &stackful::Co<u32>, t: &Tree) {
//!     match t {
//!         Tree::Leaf(v) => co.yield_(*v),
//!         Tree::Node(children) => children.iter().for_each(|c| walk(co, c)),
//!     }
//! }
//! let tree = Tree::Node(vec![Tree::Leaf(1), Tree::Node(vec![Tree::Leaf(2), Tree::Leaf(3)])]);
//! let leaves: Vec<u32> = Generator::new(move |co, ()| walk(co, &tree)).collect();
//! assert_eq!(leaves, [1, 2, 3]);
//! ```
//!
//! It prints:
//!
//! ```text
//! [PRODUCER] got 200 OK 1
//! [PRODUCER] got 200 OK 2
//! ```
//!
//! See [`generator`] for the whole protocol, including `close` and
//! `yield_from`, and [`stack`] for stack sizes and the stack pool.

#![doc(test(attr(deny(warnings))))]

pub mod cancel;
pub mod generator;
pub mod stack;

pub use cancel::{Cancelled, catch_unwind};
pub use generator::{Co, Generator, GeneratorState};
