//! A worker's ready queue: the started green threads waiting for their turn.
//!
//! A `yield_now` round trip pushes one green thread and pops the next, so
//! this is the hottest structure of the scheduler. It is a ring whose
//! capacity is a power of two, indexed by free-running counters that are
//! masked on use: a push or a pop is a few moves, with no division and no
//! wrap-around branch.

use std::cell::UnsafeCell;

use crate::task::raw::TaskRef;

/// Capacity of a new queue; it doubles when full and never shrinks.
const INITIAL: usize = 64;

/// A FIFO of green threads, owned by one worker thread.
///
/// The ring sits in an `UnsafeCell`, not a `RefCell`, to spare the borrow
/// flag on every push and pop. That is sound because the queue is `!Sync`
/// (it is only reached through its worker, on the worker's own thread) and
/// no method calls out while it holds a reference into the ring: they move
/// `TaskRef`s in and out and never drop one (a slot being overwritten is
/// always empty, and popped green threads are returned to the caller).
pub(crate) struct ReadyQueue {
    ring: UnsafeCell<Ring<TaskRef>>,
}

/// The ring itself, generic so that its tests need no runtime.
struct Ring<T> {
    /// `slots.len()` is a power of two; the queued green threads are the
    /// slots from `head` to `tail` (exclusive), both taken modulo the length.
    slots: Box<[Option<T>]>,
    head: usize,
    tail: usize,
}

impl<T> Ring<T> {
    fn with_capacity(cap: usize) -> Ring<T> {
        debug_assert!(cap.is_power_of_two());
        Ring {
            slots: std::iter::repeat_with(|| None).take(cap).collect(),
            head: 0,
            tail: 0,
        }
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    #[inline]
    fn len(&self) -> usize {
        self.tail.wrapping_sub(self.head)
    }

    #[cold]
    fn grow(&mut self) {
        let mut bigger = Ring::with_capacity(self.slots.len() * 2);
        while let Some(task) = self.pop() {
            bigger.slots[bigger.tail] = Some(task);
            bigger.tail += 1;
        }
        *self = bigger;
    }

    #[inline]
    fn push(&mut self, task: T) {
        if self.len() == self.slots.len() {
            self.grow();
        }
        let i = self.tail & self.mask();
        debug_assert!(
            self.slots[i].is_none(),
            "a free ready slot held a green thread"
        );
        let old = self.slots[i].replace(task);
        std::mem::forget(old); // None: nothing to drop, and no drop runs here
        self.tail = self.tail.wrapping_add(1);
    }

    #[inline]
    fn pop(&mut self) -> Option<T> {
        if self.head == self.tail {
            return None;
        }
        let i = self.head & self.mask();
        self.head = self.head.wrapping_add(1);
        self.slots[i].take()
    }
}

impl ReadyQueue {
    pub(crate) fn new() -> ReadyQueue {
        ReadyQueue {
            ring: UnsafeCell::new(Ring::with_capacity(INITIAL)),
        }
    }

    /// Runs `f` on the ring.
    ///
    /// `f` must not reach this queue again and must not drop a `TaskRef`;
    /// every caller below is a few moves.
    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(&mut Ring<TaskRef>) -> R) -> R {
        // SAFETY: the queue is !Sync, so this is its owner's thread, and the
        // callers (this impl only) neither re-enter the queue nor run other
        // code inside `f` (see the type's docs), so this is the only
        // reference into the ring while it lives.
        f(unsafe { &mut *self.ring.get() })
    }

    #[inline]
    pub(crate) fn push(&self, task: TaskRef) {
        self.with(|r| r.push(task));
    }

    #[inline]
    pub(crate) fn pop(&self) -> Option<TaskRef> {
        self.with(Ring::pop)
    }

    pub(crate) fn len(&self) -> usize {
        self.with(|r| r.len())
    }

    /// Addresses the next resumes will read: the header of the green thread
    /// `far` places from the front and, from the header of the one `near`
    /// places from the front, the address its last suspension recorded
    /// (`local.resume_hint`, 0 when it never ran). For prefetching; a
    /// missing green thread gives 0.
    #[inline]
    pub(crate) fn ahead(&self, near: usize, far: usize) -> (usize, usize) {
        self.with(|r| {
            let at = |k: usize| {
                if k < r.len() {
                    r.slots[r.head.wrapping_add(k) & r.mask()].as_ref()
                } else {
                    None
                }
            };
            let hint = at(near)
                .and_then(|t| t.header().local.get())
                .map_or(0, |l| l.resume_hint.get());
            let header = at(far).map_or(0, |t| std::ptr::from_ref(t.header()) as usize);
            (hint, header)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Ring;

    /// Pushes and pops against a `VecDeque` model.
    fn check(ring: &mut Ring<u64>, model: &mut std::collections::VecDeque<u64>, ops: &[i32]) {
        for (n, &op) in ops.iter().enumerate() {
            if op > 0 {
                for k in 0..op as u64 {
                    let v = (n as u64) << 32 | k;
                    ring.push(v);
                    model.push_back(v);
                }
            } else {
                for _ in 0..-op {
                    assert_eq!(ring.pop(), model.pop_front());
                }
            }
            assert_eq!(ring.len(), model.len());
            assert!(ring.slots.len().is_power_of_two());
        }
    }

    #[test]
    fn fifo_across_growth_and_wrap_around() {
        let mut model = std::collections::VecDeque::new();
        let mut ring = Ring::with_capacity(4);
        // Grows from 4 while the queue wraps inside the ring.
        check(&mut ring, &mut model, &[3, -2, 3, 5, -4, 20, -30, -1, 7]);
        assert_eq!(ring.slots.len(), 32);
        assert_eq!(ring.pop(), model.pop_front());
    }

    #[test]
    fn counters_wrap_around_usize() {
        let mut model = std::collections::VecDeque::new();
        let mut ring = Ring::with_capacity(4);
        ring.head = usize::MAX - 2;
        ring.tail = usize::MAX - 2;
        check(&mut ring, &mut model, &[3, -1, 2, 6, -9, -1, 1]);
    }

    #[test]
    fn empty_ring_pops_none() {
        let mut ring = Ring::<u64>::with_capacity(4);
        assert_eq!(ring.pop(), None);
        ring.push(1);
        assert_eq!(ring.pop(), Some(1));
        assert_eq!(ring.pop(), None);
        assert_eq!(ring.len(), 0);
    }
}
