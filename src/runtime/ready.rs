//! A worker's ready queue: the started green threads waiting for their turn.
//!
//! A `yield_now` round trip pushes one green thread and pops the next, so
//! this is the hottest structure of the scheduler. It is a ring whose
//! capacity is a power of two, indexed by free-running counters that are
//! masked on use: a push or a pop is a few moves, with no division and no
//! wrap-around branch.
//!
//! The queue holds no reference counts: an entry is a pointer to the
//! header of a green thread that its worker's registry keeps alive (see
//! [`ReadyQueue`]'s invariant), so a wake-up on the home worker and the run
//! that follows cost no count (two atomic read-modify-writes each time).

use std::cell::UnsafeCell;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

use crate::task::raw::{Header, TaskRef};

/// Capacity of a new queue; it doubles when full and never shrinks.
const INITIAL: usize = 64;

/// A FIFO of green threads, owned by one worker thread.
///
/// # Invariant
///
/// Every entry is a green thread that this queue's worker started and has
/// not completed, so its worker's registry holds a reference to it (taken
/// in `Worker::start`, dropped in `Worker::complete`). A green thread
/// completes only on that worker, during a resume, after its entry was
/// popped: an entry is pushed when the green thread is woken while
/// suspended (`SCHEDULED` set by that wake-up, so there is one entry at
/// most) or when it suspends to be requeued, and its worker pops it before
/// running it again. So an entry's header outlives its stay here, and a
/// popped entry until that run ends (see [`pop`](ReadyQueue::pop)).
///
/// The ring sits in an `UnsafeCell`, not a `RefCell`, to spare the borrow
/// flag on every push and pop. That is sound because the queue is `!Sync`
/// (it is only reached through its worker, on the worker's own thread) and
/// no method calls out while it holds a reference into the ring.
pub(crate) struct ReadyQueue {
    ring: UnsafeCell<Ring<NonNull<Header>>>,
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
        self.slots[i] = Some(task);
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
    /// `f` must not reach this queue again; every caller below is a few
    /// moves.
    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(&mut Ring<NonNull<Header>>) -> R) -> R {
        // SAFETY: the queue is !Sync, so this is its owner's thread, and the
        // callers (this impl only) neither re-enter the queue nor run other
        // code inside `f` (see the type's docs), so this is the only
        // reference into the ring while it lives.
        f(unsafe { &mut *self.ring.get() })
    }

    /// Queues `task`, which must meet the type's invariant: a green thread
    /// started by this queue's worker and not completed, queued once.
    #[inline]
    pub(crate) fn push(&self, task: &TaskRef) {
        let header = task.as_raw();
        self.with(|r| r.push(header));
    }

    /// The next green thread, as a reference that owns no count: valid
    /// until the green thread completes, which only its run by this worker
    /// can bring about (see the type's invariant), so the caller must not
    /// use it after a resume that completed it.
    #[inline]
    pub(crate) fn pop(&self) -> Option<ManuallyDrop<TaskRef>> {
        // SAFETY: the entry's registry reference keeps the header alive
        // until the green thread completes (the type's invariant), which is
        // as long as the caller may use it (this method's contract).
        self.with(Ring::pop)
            .map(|p| unsafe { TaskRef::borrow_raw(p) })
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
                    r.slots[r.head.wrapping_add(k) & r.mask()]
                } else {
                    None
                }
            };
            let hint = at(near).map_or(0, |p| {
                // SAFETY: a queued green thread's header is alive (the
                // type's invariant), and `local` is read on its home thread.
                let h = unsafe { p.as_ref() };
                h.local.get().map_or(0, |l| l.resume_hint.get())
            });
            let header = at(far).map_or(0, |p| p.as_ptr() as usize);
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
