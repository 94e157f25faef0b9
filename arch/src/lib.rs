//! The platform layer of `stackful`: everything that touches the OS or the CPU.
//!
//! - [`Stack`]: an `mmap`'d coroutine stack with a guard page below
//!   it, usable by corosensei through its [`corosensei::stack::Stack`] trait.
//! - [`PooledStack`]: a [`Stack`] borrowed from the bounded stack pool; dropping
//!   it hands the stack back instead of unmapping it.
//! - The overflow handler: a `SIGSEGV`/`SIGBUS` handler, installed once and
//!   chained to the previous one, that turns a fault in a coroutine's guard
//!   page into a message naming the coroutine, then aborts.
//!
//! This crate knows nothing about generators or scheduling. The only thing it
//! learns about the code running on a stack is a [`Label`] that names it for
//! the overflow message.
//!
//! Only Linux on x86_64 and aarch64 is supported for now; see `cpu/`.

#![doc(test(attr(deny(warnings))))]

mod cpu;
mod overflow;
mod pool;
mod registry;
mod stack;

pub use cpu::{prefetch, stack_pointer};
pub use overflow::{Label, Owner};
pub use pool::{
    IDLE_CAPACITY, LOCAL_CAPACITY, PoolStats, PooledStack, SHARED_CAPACITY, grow_ahead, pool_stats,
    prefetch_next, trim,
};
pub use stack::{
    DEFAULT_STACK_SIZE, MAP_RESERVE, MAX_STACK_SIZE, MIN_STACK_SIZE, MapLimit, Stack, StackError,
    StackErrorKind, mapped_stacks, page_size, thread_stack_range,
};
