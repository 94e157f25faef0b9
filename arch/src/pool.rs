//! The bounded stack pool.
//!
//! Mapping a stack costs two system calls (`mmap`, `mprotect`) and unmapping
//! one more, several microseconds in all, while a coroutine that runs briefly
//! costs tens of nanoseconds. So finished coroutines hand their stack back,
//! and new ones take a stack from here:
//!
//! 1. **Local cache** (per thread, no lock, no system call): up to
//!    [`LOCAL_CAPACITY`] *warm* stacks whose touched pages are still resident.
//!    Creating and finishing coroutines in a loop never leaves this level.
//! 2. **Shared pool** (one mutex, taken only when the local cache misses or
//!    overflows): up to [`SHARED_CAPACITY`] *cold* stacks. A stack moving
//!    here first gives its pages back with `madvise(MADV_DONTNEED)` (all but
//!    the top page), so an idle pool holds about one page per stack.
//! 3. Beyond that, stacks are unmapped.
//!
//! So the pool never holds more than `LOCAL_CAPACITY` stacks per thread plus
//! `SHARED_CAPACITY` in all, and `madvise` is paid only when a stack goes
//! cold, never on the create-run-drop fast path. A thread's local cache moves
//! to the shared pool (or is unmapped) when the thread exits.

use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use crate::overflow;
use crate::stack::{MAPPED, Stack, StackError};

/// Warm stacks kept per thread.
pub const LOCAL_CAPACITY: usize = 16;

/// Cold stacks kept for the whole process.
pub const SHARED_CAPACITY: usize = 256;

/// A thread's warm stacks. Dropped at thread exit.
struct Local {
    stacks: Vec<Stack>,
}

impl Drop for Local {
    fn drop(&mut self) {
        for stack in self.stacks.drain(..) {
            put_shared(stack);
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = {
        // First stack use on this thread: make sure overflows are reported.
        overflow::install();
        RefCell::new(Local { stacks: Vec::with_capacity(LOCAL_CAPACITY) })
    };
}

static SHARED: Mutex<Vec<Stack>> = Mutex::new(Vec::new());

/// Takes the most recently returned stack of exactly `size` bytes out of `stacks`.
fn take_from(stacks: &mut Vec<Stack>, size: usize) -> Option<Stack> {
    let i = stacks.iter().rposition(|s| s.size() == size)?;
    Some(stacks.swap_remove(i))
}

/// Releases a stack's pages and keeps it in the shared pool, or unmaps it if
/// the pool is full.
fn put_shared(stack: Stack) {
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if shared.len() < SHARED_CAPACITY {
        stack.release_pages();
        shared.push(stack);
    } else {
        drop(shared);
        drop(stack);
    }
}

/// A stack on loan from the pool. Dropping it returns the stack to the pool
/// (see the module docs); it derefs to the [`Stack`] itself.
///
/// # Examples
///
/// ```
/// use stackful_arch::{PooledStack, DEFAULT_STACK_SIZE};
///
/// let stack = PooledStack::take(DEFAULT_STACK_SIZE).unwrap();
/// assert_eq!(stack.size(), DEFAULT_STACK_SIZE);
/// drop(stack); // back to this thread's cache, ready for the next coroutine
/// ```
pub struct PooledStack {
    stack: ManuallyDrop<Stack>,
}

impl PooledStack {
    /// Takes a stack with `size` usable bytes (rounded up to whole pages):
    /// from this thread's cache, else from the shared pool, else a new mapping.
    ///
    /// # Errors
    ///
    /// As [`Stack::new`]: an invalid size, or the kernel refusing a new mapping.
    #[inline]
    pub fn take(size: usize) -> Result<PooledStack, StackError> {
        let size = Stack::checked_size(size)?;
        let local = LOCAL.try_with(|l| take_from(&mut l.borrow_mut().stacks, size));
        let stack = match local {
            Ok(Some(stack)) => stack,
            Ok(None) => Self::take_slow(size)?,
            Err(_) => {
                // This thread is exiting and its cache is gone.
                overflow::install();
                Self::take_slow(size)?
            }
        };
        Ok(PooledStack {
            stack: ManuallyDrop::new(stack),
        })
    }

    #[cold]
    fn take_slow(size: usize) -> Result<Stack, StackError> {
        let shared = take_from(&mut SHARED.lock().unwrap_or_else(|e| e.into_inner()), size);
        match shared {
            Some(stack) => Ok(stack),
            None => Stack::new(size),
        }
    }
}

impl Drop for PooledStack {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: `stack` is taken exactly once, here, and never used again.
        let stack = unsafe { ManuallyDrop::take(&mut self.stack) };
        stack.clear_label();
        let rejected = LOCAL.try_with(|l| {
            let stacks = &mut l.borrow_mut().stacks;
            if stacks.len() < LOCAL_CAPACITY {
                stacks.push(stack);
                None
            } else {
                Some(stack)
            }
        });
        match rejected {
            Ok(None) => {}
            Ok(Some(stack)) => put_shared(stack),
            Err(_) => {
                // Thread exiting: its cache is gone. The stack was moved into
                // the closure, which was not run, so it was dropped (unmapped).
            }
        }
    }
}

impl Deref for PooledStack {
    type Target = Stack;

    fn deref(&self) -> &Stack {
        &self.stack
    }
}

impl std::fmt::Debug for PooledStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PooledStack").field(&*self.stack).finish()
    }
}

// SAFETY: delegates to the inner `Stack`, whose implementation upholds the
// contract; the pool never hands the same stack to two owners.
unsafe impl corosensei::stack::Stack for PooledStack {
    #[inline]
    fn base(&self) -> corosensei::stack::StackPointer {
        self.stack.base()
    }

    #[inline]
    fn limit(&self) -> corosensei::stack::StackPointer {
        self.stack.limit()
    }
}

/// How many stacks exist and where they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Stacks mapped by this process: in use plus pooled.
    pub mapped: usize,
    /// Cold stacks in the shared pool (at most [`SHARED_CAPACITY`]).
    pub shared: usize,
    /// Warm stacks in the calling thread's cache (at most [`LOCAL_CAPACITY`]).
    pub local: usize,
}

/// A snapshot of the pool, for tests and diagnostics.
///
/// # Examples
///
/// ```
/// let stats = stackful_arch::pool_stats();
/// assert!(stats.shared <= stackful_arch::SHARED_CAPACITY);
/// assert!(stats.local <= stackful_arch::LOCAL_CAPACITY);
/// ```
pub fn pool_stats() -> PoolStats {
    PoolStats {
        mapped: MAPPED.load(Ordering::Relaxed),
        shared: SHARED.lock().unwrap_or_else(|e| e.into_inner()).len(),
        local: LOCAL.try_with(|l| l.borrow().stacks.len()).unwrap_or(0),
    }
}
