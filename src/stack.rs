//! Coroutine stacks: sizes, the pool and its statistics.
//!
//! Every generator and green thread runs on an `mmap`'d stack with a guard
//! page below it, taken from a bounded pool. These
//! items come from the platform layer, `stackful-arch`; see its docs for the
//! memory layout and the pool's levels.

pub use stackful_arch::{
    DEFAULT_STACK_SIZE, IDLE_CAPACITY, LOCAL_CAPACITY, MAP_RESERVE, MAX_STACK_SIZE, MIN_STACK_SIZE,
    MapLimit, PoolStats, SHARED_CAPACITY, StackError, StackErrorKind, mapped_stacks, pool_stats,
    trim as trim_pool,
};
