//! The bounded stack pool.
//!
//! Mapping a stack costs system calls (`mmap`, then a guard page) and a page
//! fault at its first use, unmapping one more call (with a TLB shootdown
//! across the process's threads), several microseconds in all, while a coroutine that runs briefly costs tens of
//! nanoseconds. So finished coroutines hand their stack back, and new ones
//! take a stack from here:
//!
//! 1. **Local cache** (per thread, no lock, no system call): up to
//!    [`LOCAL_CAPACITY`] stacks. Creating and finishing coroutines in a loop
//!    never leaves this level. It trades with the shared pool in batches of
//!    half its capacity, one lock per batch.
//! 2. **Shared pool** (one mutex, taken only when the local cache misses or
//!    overflows): up to [`SHARED_CAPACITY`] stacks. Taking and returning cost
//!    no system call either, so a burst of many live coroutines (25 000
//!    sleeping green threads, say) reuses the stacks of the previous burst.
//! 3. Beyond that, stacks are unmapped.
//!
//! When both levels are empty, stacks are mapped eight at a time with one
//! `mmap` (each still gets its own guard page), and the spare ones go to the
//! thread's cache, so a burst that outgrows the pool pays fewer calls.
//! Those stacks are counted, and [`grow_ahead`] maps as many again into the
//! shared pool, within limits: the runtime calls it from an idle worker
//! while green threads it started are alive, so a next, larger burst finds
//! them mapped instead of paying the system calls itself.
//!
//! Memory goes back to the kernel off the hot path. When the shared pool
//! holds more than [`IDLE_CAPACITY`] stacks, a background trimmer thread
//! starts; once the pool has seen no traffic for a second it unmaps all but
//! `IDLE_CAPACITY` stacks and releases the pages of the rest with
//! `madvise(MADV_DONTNEED)`. [`trim`] does the same at once. So an idle pool
//! holds at most `LOCAL_CAPACITY` stacks per thread plus `IDLE_CAPACITY`
//! released ones, and `madvise` is never paid when a stack is reused.
//!
//! A thread's local cache moves to the shared pool when the thread exits.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::overflow;
use crate::stack::{MAPPED, Stack, StackError};

/// Stacks kept per thread.
pub const LOCAL_CAPACITY: usize = 64;

/// Stacks moved between a thread's cache and the shared pool at a time, so
/// that a burst takes the shared pool's lock once per batch, not per stack.
const BATCH: usize = LOCAL_CAPACITY / 2;

/// Stacks mapped at once when the pool is empty (see `Stack::new_batch`).
const MAP_BATCH: usize = 8;

/// Stacks kept in the shared pool while it is busy.
pub const SHARED_CAPACITY: usize = 32_768;

/// Stacks the shared pool keeps (with their pages released) once idle.
pub const IDLE_CAPACITY: usize = 256;

/// Stacks mapped on demand (the pool was empty) and not yet matched by
/// stacks grown ahead, see [`grow_ahead`]: the stack size in pages in the
/// high 32 bits, the count in the low 32. Only the size of the latest miss
/// is owed: a miss of another size starts the count again.
static SHORTFALL: AtomicU64 = AtomicU64::new(0);

fn shortfall_of(v: u64) -> (usize, usize) {
    ((v >> 32) as usize, (v & u64::from(u32::MAX)) as usize)
}

fn shortfall(pages: usize, count: usize) -> u64 {
    ((pages as u64) << 32) | count.min(SHARED_CAPACITY) as u64
}

/// Counts `n` stacks of `size` bytes mapped on demand.
fn owe(size: usize, n: usize) {
    let pages = size / crate::stack::page_size();
    let _ = SHORTFALL.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        let (owed_pages, owed) = shortfall_of(v);
        Some(if owed_pages == pages {
            shortfall(pages, owed + n)
        } else {
            shortfall(pages, n)
        })
    });
}

/// How long the pool must see no traffic before the trimmer trims it.
const IDLE_AFTER: Duration = Duration::from_secs(1);

/// A thread's stacks. Dropped at thread exit.
struct Local {
    stacks: Vec<Stack>,
}

impl Drop for Local {
    fn drop(&mut self) {
        put_shared_all(self.stacks.drain(..));
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = {
        // First stack use on this thread: make sure overflows are reported.
        overflow::install();
        RefCell::new(Local { stacks: Vec::with_capacity(LOCAL_CAPACITY) })
    };
}

/// The shared pool: most recently returned stacks at the back.
struct Shared {
    stacks: VecDeque<Stack>,
    /// How many stacks at the front have had their pages released.
    released: usize,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared {
    stacks: VecDeque::new(),
    released: 0,
});

/// Pool traffic clock, in milliseconds since `EPOCH`, for the trimmer.
static LAST_USE: AtomicU64 = AtomicU64::new(0);
static TRIMMER: AtomicBool = AtomicBool::new(false);

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds since the pool's clock started.
pub(crate) fn millis_since_start() -> u64 {
    epoch().elapsed().as_millis() as u64
}

fn lock_shared() -> std::sync::MutexGuard<'static, Shared> {
    SHARED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes the most recently returned local stack of exactly `size` bytes.
fn take_local(stacks: &mut Vec<Stack>, size: usize) -> Option<Stack> {
    let i = stacks.iter().rposition(|s| s.size() == size)?;
    Some(stacks.swap_remove(i))
}

/// Starts loading the top of the stack that this thread's next
/// [`PooledStack::take`] will likely return, if its cache holds one.
///
/// For a caller that starts many coroutines in a row on stacks that have
/// gone cold (a burst of green threads, say): a cold stack's first touch is
/// a TLB miss and a run of cache misses, which this overlaps with the
/// current coroutine's work. A tight loop on warm stacks gains nothing.
#[inline]
pub fn prefetch_next() {
    let _ = LOCAL.try_with(|l| {
        if let Some(next) = l.borrow().stacks.last() {
            next.prefetch_top();
        }
    });
}

impl Shared {
    /// Takes the most recently returned stack of exactly `size` bytes.
    fn take(&mut self, size: usize) -> Option<Stack> {
        // The common case, one stack size throughout: the back one fits.
        if self.stacks.back().is_some_and(|s| s.size() == size) {
            let stack = self.stacks.pop_back();
            self.released = self.released.min(self.stacks.len());
            return stack;
        }
        let i = self.stacks.iter().rposition(|s| s.size() == size)?;
        if i < self.released {
            self.released -= 1;
        }
        self.stacks.remove(i)
    }
}

/// Moves up to `BATCH` stacks of `size` bytes from the shared pool into
/// `local` under one lock, and returns one of them.
fn refill(local: &mut Vec<Stack>, size: usize) -> Option<Stack> {
    let mut shared = lock_shared();
    let first = shared.take(size)?;
    while local.len() < BATCH {
        match shared.take(size) {
            Some(stack) => local.push(stack),
            None => break,
        }
    }
    drop(shared);
    LAST_USE.store(epoch().elapsed().as_millis() as u64, Ordering::Relaxed);
    Some(first)
}

/// Keeps stacks in the shared pool under one lock, unmapping those that do
/// not fit.
fn put_shared_all(stacks: impl Iterator<Item = Stack>) {
    let mut shared = lock_shared();
    let mut rejected = Vec::new();
    for stack in stacks {
        // At the mapping limit even growing the queue can fail (a large
        // allocation needs a mapping of its own): then unmapping is the answer.
        if shared.stacks.len() >= SHARED_CAPACITY || shared.stacks.try_reserve(1).is_err() {
            rejected.push(stack);
        } else {
            shared.stacks.push_back(stack);
        }
    }
    let len = shared.stacks.len();
    drop(shared);
    drop(rejected);
    LAST_USE.store(epoch().elapsed().as_millis() as u64, Ordering::Relaxed);
    if len > IDLE_CAPACITY && !TRIMMER.swap(true, Ordering::AcqRel) {
        start_trimmer();
    }
}

/// Starts the thread that trims the shared pool once it falls idle.
fn start_trimmer() {
    let spawned = std::thread::Builder::new()
        .name("stackful-pool-trim".into())
        .spawn(|| {
            loop {
                std::thread::sleep(IDLE_AFTER);
                let idle_ms =
                    epoch().elapsed().as_millis() as u64 - LAST_USE.load(Ordering::Relaxed);
                let (len, released) = {
                    let s = lock_shared();
                    (s.stacks.len(), s.released)
                };
                if idle_ms >= IDLE_AFTER.as_millis() as u64
                    && (len > IDLE_CAPACITY || released < len)
                {
                    trim();
                }
            }
        });
    if spawned.is_err() {
        TRIMMER.store(false, Ordering::Release); // try again next time
    }
}

/// Gives memory back now: unmaps the shared pool's stacks beyond
/// [`IDLE_CAPACITY`] and releases the pages of the rest. The trimmer calls
/// it when the pool has been idle for a second; call it yourself after a
/// burst to give the memory back at once. Returns the number of stacks
/// unmapped.
///
/// # Examples
///
/// ```
/// stackful_arch::trim();
/// assert!(stackful_arch::pool_stats().shared <= stackful_arch::IDLE_CAPACITY);
/// ```
pub fn trim() -> usize {
    SHORTFALL.store(0, Ordering::Relaxed);
    let excess: Vec<Stack> = {
        let mut shared = lock_shared();
        let n = shared.stacks.len().saturating_sub(IDLE_CAPACITY);
        let released = shared.released;
        shared.released = released.saturating_sub(n);
        shared.stacks.drain(..n).collect()
    };
    let unmapped = excess.len();
    drop(excess);
    // Release the rest one by one, so takers are not held up meanwhile.
    loop {
        let stack = {
            let mut shared = lock_shared();
            if shared.released >= shared.stacks.len() {
                break;
            }
            let i = shared.released;
            shared.stacks.remove(i)
        };
        let Some(stack) = stack else { break };
        stack.release_pages();
        let mut shared = lock_shared();
        let i = shared.released.min(shared.stacks.len());
        shared.stacks.insert(i, stack);
        shared.released = i + 1;
    }
    unmapped
}

/// Maps up to `max` stacks of `size` bytes ahead of demand into the shared
/// pool; returns how many.
///
/// A burst that runs the pool dry maps new stacks while it starts its
/// coroutines, a few system calls each, and the next, larger burst does so
/// again for its extra ones. The runtime calls this from an idle worker
/// while green threads it started are alive, so that this work is done in
/// otherwise idle time instead: it grows the pool by as many stacks of
/// `size` as were mapped on demand since (each one counted once), in steps
/// of `max` so the caller can look for work in between.
///
/// The new stacks cost address space and mappings, not memory: their pages
/// are not touched (faulting them in ahead was no faster, and would double
/// the memory of a burst of idle green threads until the trimmer ran).
/// Growth stops, and what is owed is forgotten, when the shared pool is full
/// ([`SHARED_CAPACITY`]) or when it would take more than half the stacks
/// still allowed under `vm.max_map_count`, so a burst of a million green
/// threads grows the pool by at most that much, and mappings stay for
/// demand. [`trim`] forgets it too.
pub fn grow_ahead(size: usize, max: usize) -> usize {
    let Ok(size) = Stack::checked_size(size) else {
        return 0;
    };
    let pages = size / crate::stack::page_size();
    let (owed_pages, owed) = shortfall_of(SHORTFALL.load(Ordering::Relaxed));
    if owed == 0 || owed_pages != pages {
        return 0;
    }
    let room = SHARED_CAPACITY.saturating_sub(lock_shared().stacks.len());
    let budget = crate::stack::stacks_that_fit(usize::MAX) / 2;
    let step = max.min(room).min(budget);
    if step == 0 {
        SHORTFALL.store(0, Ordering::Relaxed);
        return 0;
    }
    let Ok(before) = SHORTFALL.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        let (owed_pages, owed) = shortfall_of(v);
        (owed_pages == pages && owed > 0).then(|| shortfall(pages, owed - owed.min(step)))
    }) else {
        return 0;
    };
    let want = shortfall_of(before).1.min(step);
    let Ok(batch) = Stack::new_batch(size, want) else {
        SHORTFALL.store(0, Ordering::Relaxed); // a limit: owe nothing more
        return 0;
    };
    let grown = batch.len();
    put_shared_all(batch.into_iter());
    grown
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
        let local = LOCAL.try_with(|l| {
            let stacks = &mut l.borrow_mut().stacks;
            take_local(stacks, size).or_else(|| refill(stacks, size))
        });
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
        let shared = lock_shared().take(size);
        if let Some(stack) = shared {
            LAST_USE.store(epoch().elapsed().as_millis() as u64, Ordering::Relaxed);
            return Ok(stack);
        }
        let mut batch = match Stack::new_batch(size, MAP_BATCH) {
            Err(e) if e.is_out_of_mappings() => {
                // Pooled stacks of other sizes hold mappings: give them up
                // and try once more.
                let pooled = {
                    let mut shared = lock_shared();
                    shared.released = 0;
                    std::mem::take(&mut shared.stacks)
                };
                if pooled.is_empty() {
                    return Err(e);
                }
                drop(pooled);
                Stack::new_batch(size, 1)?
            }
            other => other?,
        };
        owe(size, batch.len());
        let first = batch.pop().expect("a batch holds at least one stack");
        // The rest go to this thread's cache (it missed, so it has room).
        let spare = LOCAL.try_with(|l| {
            let stacks = &mut l.borrow_mut().stacks;
            let room = LOCAL_CAPACITY.saturating_sub(stacks.len());
            let keep = batch.len().min(room);
            stacks.extend(batch.drain(..keep));
            batch
        });
        match spare {
            Ok(rest) if rest.is_empty() => {}
            Ok(rest) => put_shared_all(rest.into_iter()),
            Err(_) => {} // thread exiting: the batch was dropped (unmapped)
        }
        Ok(first)
    }
}

impl Drop for PooledStack {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: `stack` is taken exactly once, here, and never used again.
        let stack = unsafe { ManuallyDrop::take(&mut self.stack) };
        stack.clear_label();
        let spill = LOCAL.try_with(|l| {
            let stacks = &mut l.borrow_mut().stacks;
            if stacks.len() >= LOCAL_CAPACITY {
                // Full: hand the older half to the shared pool in one batch.
                let spill: Vec<Stack> = stacks.drain(..BATCH).collect();
                stacks.push(stack);
                Some(spill)
            } else {
                stacks.push(stack);
                None
            }
        });
        match spill {
            Ok(Some(spill)) => put_shared_all(spill.into_iter()),
            Ok(None) => {}
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
    /// Stacks in the shared pool (at most [`SHARED_CAPACITY`]).
    pub shared: usize,
    /// Of those, stacks whose pages have been released.
    pub released: usize,
    /// Stacks in the calling thread's cache (at most [`LOCAL_CAPACITY`]).
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
    let (shared, released) = {
        let s = lock_shared();
        (s.stacks.len(), s.released)
    };
    PoolStats {
        mapped: MAPPED.load(Ordering::Relaxed),
        shared,
        released,
        local: LOCAL.try_with(|l| l.borrow().stacks.len()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::MIN_STACK_SIZE;

    #[test]
    fn grow_ahead_adds_the_stacks_mapped_on_demand_once() {
        // No other unit test takes pooled stacks, so the counts are ours.
        assert_eq!(grow_ahead(MIN_STACK_SIZE, 64), 0, "nothing was owed yet");
        let taken: Vec<PooledStack> = (0..100)
            .map(|_| PooledStack::take(MIN_STACK_SIZE).unwrap())
            .collect();
        let owed = shortfall_of(SHORTFALL.load(Ordering::Relaxed)).1;
        assert!(owed >= 100, "100 stacks from an empty pool, {owed} counted");
        assert_eq!(
            grow_ahead(2 * MIN_STACK_SIZE, 64),
            0,
            "a size nobody missed"
        );
        let shared = pool_stats().shared;
        assert_eq!(grow_ahead(MIN_STACK_SIZE, 64), 64, "one step at a time");
        assert_eq!(grow_ahead(MIN_STACK_SIZE, 10_000), owed - 64);
        assert_eq!(grow_ahead(MIN_STACK_SIZE, 10_000), 0, "each counted once");
        assert_eq!(pool_stats().shared, shared + owed);
        drop(taken);

        // A miss of another size starts the count again, and trimming
        // forgets it: a trimmed pool does not grow back on its own.
        let other = 3 * MIN_STACK_SIZE;
        let taken: Vec<PooledStack> = (0..20).map(|_| PooledStack::take(other).unwrap()).collect();
        assert_eq!(
            grow_ahead(MIN_STACK_SIZE, 64),
            0,
            "the old size is no longer owed"
        );
        trim();
        assert_eq!(grow_ahead(other, 64), 0, "trim forgot what was owed");
        drop(taken);
    }
}
