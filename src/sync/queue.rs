//! The queues behind `channel(cap)`, `cap > 0`, and `unbounded()`.
//!
//! - [`Ring`], the bounded queue: Dmitry Vyukov's bounded MPMC queue (a
//!   ring of slots, each with a sequence number that says which position
//!   may use it next), with a close bit in its tail and emptiness and
//!   fullness decided at one instant, so that its head and tail double as
//!   the positions a `select` compares (see [`Ring`]).
//! - [`List`], the unbounded queue: a `VecDeque` behind a spin lock, with a
//!   word that counts pushes and holds the close bit, read without the lock.
//!
//! Both carry messages up to 256 bytes by value and larger ones boxed
//! ([`boxed`]), behind one wrapper, [`Queued`].
//!
//! # Positions
//!
//! A `select` with `default` may say "nothing ready" only if there was an
//! instant at which none of its operations could proceed. It reads every
//! channel's positions, tries every operation, and reads the positions
//! again (a double collect): if none changed, every attempt that failed
//! would still fail at the instant of the first second reading. For that,
//! a queue's positions must change whenever something happens that could
//! turn a failed attempt into one that succeeds:
//!
//! - a receive fails on an empty open queue, and only a push or a close
//!   changes that;
//! - a send fails on a full open ring, and only a pop or a close changes
//!   that (a send to an unbounded list never fails while it is open).
//!
//! A ring's positions are its tail (with the close bit) and its head; a
//! list's are its state word. Each changes by one atomic write at the
//! instant the operation takes effect (its linearization point), so two
//! equal readings mean that no such instant fell between them.

use std::alloc::{self, Layout};
use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::mem::{self, MaybeUninit, size_of};
use std::ptr;
use std::sync::atomic::{self, AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::{Backoff, CachePadded};

use super::channel::Try;
use super::spin::SpinLock;

/// Messages larger than this many bytes travel in a `Box` of their own.
const BOX_ABOVE: usize = 256;

/// Whether a `T` travels boxed. A queue takes its elements by value, and in
/// a debug build each layer of the call copies a by-value argument on the
/// stack: a 64 KiB message would be copied several times on a green
/// thread's small stack. A boxed message is written straight from the
/// sender's `src` into its box, and from the box straight into the
/// receiver's `dst`; only the pointer travels.
pub(super) const fn boxed<T>() -> bool {
    size_of::<T>() > BOX_ABOVE
}

/// A box holding a bitwise copy of `*src`, built in place on the heap.
///
/// # Safety
///
/// `src` points to a live `T`. The box and `*src` are then two copies of
/// one value: the caller makes sure only one of them is ever used or
/// dropped (see [`forget_box`]).
unsafe fn box_from<T>(src: *const T) -> Box<T> {
    // Allocated by hand, so that no `T` is ever a local on the way,
    // whatever a generic std helper instantiated in a debug build does.
    let layout = Layout::new::<T>();
    debug_assert!(layout.size() > 0, "only large messages are boxed");
    // SAFETY: the layout is not zero-sized (a boxed `T` is large).
    let raw = unsafe { alloc::alloc(layout) }.cast::<T>();
    if raw.is_null() {
        alloc::handle_alloc_error(layout);
    }
    // SAFETY: `src` is a live `T` (contract) and `raw` a fresh block for
    // one; they do not overlap.
    unsafe { ptr::copy_nonoverlapping(src, raw, 1) };
    // SAFETY: `raw` was allocated by the global allocator with the layout
    // of `T`, as a `Box<T>` is, and holds a `T`.
    unsafe { Box::from_raw(raw) }
}

/// Moves the boxed value into `dst` and frees the box without dropping the
/// value.
///
/// # Safety
///
/// `dst` is valid for a write of a `T`; it then owns the value.
unsafe fn unbox_into<T>(b: Box<T>, dst: *mut T) {
    let raw = Box::into_raw(b);
    // SAFETY: `raw` holds a live `T`, `dst` is writable (contract); a heap
    // block and the caller's slot do not overlap.
    unsafe { ptr::copy_nonoverlapping(raw, dst, 1) };
    free_box_raw(raw);
}

/// Frees a box without dropping its value (whose other copy lives on).
fn forget_box<T>(b: Box<T>) {
    free_box_raw(Box::into_raw(b));
}

fn free_box_raw<T>(raw: *mut T) {
    let layout = Layout::new::<T>();
    if layout.size() > 0 {
        // SAFETY: `raw` came from `Box::into_raw` of a `Box<T>` of a sized
        // `T`: a block of the global allocator with this layout, freed
        // once, its value left alone.
        unsafe { alloc::dealloc(raw.cast(), layout) };
    }
}

/// A queue of `E`, as [`Queued`] uses it.
pub(super) trait Queue<E> {
    /// Adds `value` at the back. `Err` hands it back with the reason:
    /// `NotReady` (full) or `Disconnected` (closed).
    fn put(&self, value: E) -> Result<(), (E, Try)>;
    /// Takes the value at the front.
    fn take(&self) -> Option<E>;
    /// Why a `put` would fail now, if it would (a hint: it may be stale by
    /// the time it returns).
    fn refuses(&self) -> Option<Try>;
    fn len(&self) -> usize;
    /// Refuses every later `put`; what the queue holds can still be taken.
    fn close(&self);
    /// See the module docs.
    fn positions(&self) -> (u64, u64);
    /// Reserves room for one later [`Queue::put_reserved`]: `Done`,
    /// `NotReady` (full) or `Disconnected` (closed). A queue without a
    /// bound has room for all: it reserves nothing.
    fn reserve(&self) -> Try {
        self.refuses().unwrap_or(Try::Done)
    }
    /// Puts with a reservation, which it uses up: `Err` only when closed.
    fn put_reserved(&self, value: E) -> Result<(), (E, Try)> {
        self.put(value)
    }
    /// Gives back a reservation that will not be used.
    fn release(&self) {}
}

/// A ring's tail word: the next position to push (the low [`POS_BITS`]
/// bits), the sends a `Select` reserved room for ([`RESERVED`] counts
/// them), and [`SHUT`] once closed. One word, so that a push claims its
/// position and sees every reservation in one compare-and-swap.
const POS_BITS: u32 = 55;
const POS: u64 = (1 << POS_BITS) - 1;
/// One reservation in a tail word.
const RESERVED: u64 = 1 << POS_BITS;
/// At most this many reservations at once on one ring; a select that
/// would take one more sees the ring as full, and waits for room.
const MAX_RESERVED: u64 = (1 << (63 - POS_BITS)) - 1;
/// In a ring's tail: the ring is closed to pushes.
const SHUT: u64 = 1 << 63;

/// One slot of a [`Ring`].
struct Slot<E> {
    /// Which operation may use the slot next, as a sequence number:
    /// `2 * pos` when it is free for the push at `pos`, `2 * pos + 1` when
    /// it holds the message pushed at `pos` (so the pop at `pos` may take
    /// it), then `2 * (pos + cap)` once that pop has taken it (free for the
    /// push one lap later). Doubled, unlike Vyukov's `pos` and `pos + 1`,
    /// so that the two stay apart with a capacity of 1.
    seq: AtomicU64,
    value: UnsafeCell<MaybeUninit<E>>,
}

/// A bounded multi-producer multi-consumer ring, after Dmitry Vyukov's
/// bounded MPMC queue.
///
/// Every push and pop has a position, counted from 0 (2^55 positions, a
/// decade of pushes at 10 ns each, before they would run out): a push
/// claims the position in `tail` with a compare-and-swap, writes its slot
/// (position modulo capacity), then publishes it through the slot's
/// sequence number; a pop claims the position in `head` once the slot is
/// published, reads it, and frees it for the next lap. The claiming
/// compare-and-swap is the instant the operation takes effect.
///
/// Vyukov's queue reports "empty" when the slot at `head` is not yet
/// published, even though a later push may have completed, and "full"
/// likewise. Here a pop that finds its slot unpublished reads `tail`: equal
/// to its position, the ring was empty at that instant; otherwise a push
/// that claimed the position is still writing, on another OS thread (a
/// push never suspends a green thread), and the pop waits for it. A full
/// ring is decided the same way against `head`. So emptiness and fullness
/// each hold at one instant, and `head` and `tail` change exactly when
/// the contents do: they are the ring's positions (see the module docs).
///
/// # Reservations
///
/// A `Select` that selects a send builds the message only afterwards, and
/// must then not wait for room: it reserves room when it selects the send
/// ([`Queue::reserve`]), and later pushes with the reservation
/// ([`Queue::put_reserved`]) or gives it back ([`Queue::release`]). The
/// reservations are counted in the tail word, and the ring keeps
/// `messages + reservations <= cap` (messages being `tail - head`): a plain
/// push that sees a reservation claims its position only if the sum stays
/// within the capacity. A reserved push never finds the ring full: with a
/// reservation counted, fewer than `cap` messages are in, so the pop a
/// lap behind its position has at least claimed its slot.
///
/// A close sets [`SHUT`] in `tail`, which fails every later claim; a push
/// that claimed its position before still publishes it, and the pops wait
/// for it as above, so nothing pushed is stranded.
pub(super) struct Ring<E> {
    /// The next position to pop.
    head: CachePadded<AtomicU64>,
    /// The tail word: position, reservations, [`SHUT`].
    tail: CachePadded<AtomicU64>,
    slots: Box<[Slot<E>]>,
    cap: u64,
    /// `cap - 1` when `cap` is a power of two (the slot is a mask away),
    /// else `u64::MAX` (the slot is a division away).
    mask: u64,
}

// SAFETY: a ring hands each value from the thread that pushed it to the
// thread that pops it, so it is `Send` and `Sync` when the values are
// `Send`. A slot's value is accessed only by the one push, then the one
// pop, that claimed its position, ordered by the slot's sequence number
// (release when published or freed, acquire when read).
unsafe impl<E: Send> Send for Ring<E> {}
// SAFETY: as for `Send`.
unsafe impl<E: Send> Sync for Ring<E> {}

/// What a push does with the tail word it read, before its claim.
enum Claim {
    /// Claim the position: compare-and-swap the word to this.
    To(u64),
    /// Refused: full (`NotReady`) or closed (`Disconnected`).
    Refused(Try),
}

impl<E> Ring<E> {
    /// A ring of `cap` slots, or `None` if that many would not fit in
    /// memory's address space.
    fn new(cap: usize) -> Option<Ring<E>> {
        assert!(cap > 0, "a ring needs a capacity of at least 1");
        Layout::array::<Slot<E>>(cap).ok()?;
        let slots = (0..cap as u64)
            .map(|pos| Slot {
                seq: AtomicU64::new(2 * pos),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        let cap = cap as u64;
        Some(Ring {
            head: CachePadded::new(AtomicU64::new(0)),
            tail: CachePadded::new(AtomicU64::new(0)),
            slots,
            cap,
            mask: if cap.is_power_of_two() {
                cap - 1
            } else {
                u64::MAX
            },
        })
    }

    fn index(&self, pos: u64) -> usize {
        (if self.mask != u64::MAX {
            pos & self.mask
        } else {
            pos % self.cap
        }) as usize
    }

    pub(super) fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Messages plus reservations, for the tail word `tail` and a head
    /// read now. Exact at this instant if the tail word still equals `tail`
    /// (the head never passes the tail), which the compare-and-swap that
    /// acts on the answer checks; otherwise that compare-and-swap fails and
    /// the caller looks again (the subtraction saturates meanwhile).
    fn taken(&self, tail: u64) -> u64 {
        let head = self.head.load(Ordering::SeqCst);
        (tail & POS).saturating_sub(head) + (tail & !SHUT) / RESERVED
    }

    /// Pushes `value` once `claim` allows it: the claim loop shared by a
    /// plain push and a reserved one. `claim` sees the tail word and
    /// whether the slot at its position is free, and says what to do.
    fn push_with(
        &self,
        value: E,
        mut claim: impl FnMut(&Self, u64, bool) -> Claim,
    ) -> Result<(), (E, Try)> {
        let backoff = Backoff::new();
        let mut tail = self.tail.load(Ordering::SeqCst);
        loop {
            let pos = tail & POS;
            let slot = &self.slots[self.index(pos)];
            let seq = slot.seq.load(Ordering::Acquire);
            if seq > 2 * pos && tail & SHUT == 0 {
                // Another push took this position; `tail` was stale.
                backoff.spin();
                tail = self.tail.load(Ordering::SeqCst);
                continue;
            }
            let to = match claim(self, tail, seq == 2 * pos) {
                Claim::To(to) => to,
                Claim::Refused(why) => return Err((value, why)),
            };
            if seq != 2 * pos {
                // The slot still holds the message of the lap before, or
                // its pop (which has claimed it) is still reading it:
                // `claim` found room, so the latter.
                backoff.snooze();
                tail = self.tail.load(Ordering::SeqCst);
                continue;
            }
            match self
                .tail
                .compare_exchange_weak(tail, to, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    // SAFETY: the claim makes this push the slot's only user
                    // until it publishes it; the pop a lap ago freed it
                    // (release), seen by the acquire above.
                    unsafe { (*slot.value.get()).write(value) };
                    slot.seq.store(2 * pos + 1, Ordering::Release);
                    return Ok(());
                }
                Err(now) => {
                    tail = now;
                    backoff.spin();
                }
            }
        }
    }

    /// Reserves room for one later push ([`Queue::put_reserved`]): `Done`,
    /// or `NotReady` if the ring is full (or holds [`MAX_RESERVED`]
    /// reservations), or `Disconnected` if it is closed.
    fn reserve_room(&self) -> Try {
        let mut tail = self.tail.load(Ordering::SeqCst);
        loop {
            if tail & SHUT != 0 {
                return Try::Disconnected;
            }
            if (tail & !SHUT) / RESERVED == MAX_RESERVED || self.taken(tail) >= self.cap {
                return Try::NotReady;
            }
            match self.tail.compare_exchange_weak(
                tail,
                tail + RESERVED,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Try::Done,
                Err(now) => tail = now,
            }
        }
    }

    /// Pushes with a reservation, which it uses up: never full, so
    /// `Err` only with `Disconnected` (the reservation is then given back).
    fn put_with_reservation(&self, value: E) -> Result<(), (E, Try)> {
        let pushed = self.push_with(value, |_, tail, _| {
            if tail & SHUT != 0 {
                Claim::Refused(Try::Disconnected)
            } else {
                debug_assert!(
                    tail & !SHUT >= RESERVED,
                    "a reserved push without a reservation"
                );
                Claim::To(tail + 1 - RESERVED)
            }
        });
        if pushed.is_err() {
            self.give_back();
        }
        pushed
    }

    /// Gives back a reservation that will not be used.
    fn give_back(&self) {
        let before = self.tail.fetch_sub(RESERVED, Ordering::SeqCst);
        debug_assert!(before & !SHUT >= RESERVED, "a reservation released twice");
    }
}

impl<E> Queue<E> for Ring<E> {
    fn put(&self, value: E) -> Result<(), (E, Try)> {
        self.push_with(value, |ring, tail, free| {
            if tail & SHUT != 0 {
                Claim::Refused(Try::Disconnected)
            } else if tail & !SHUT >= RESERVED || !free {
                // Reservations count as messages; and a slot not yet free
                // is either full or freed by a pop under way: which one,
                // the head says. Full if every slot's position is claimed
                // by a push that no pop has claimed yet, at the instant
                // the head is read.
                atomic::fence(Ordering::SeqCst);
                if ring.taken(tail) >= ring.cap {
                    Claim::Refused(Try::NotReady)
                } else {
                    Claim::To(tail + 1)
                }
            } else {
                Claim::To(tail + 1)
            }
        })
    }

    fn take(&self) -> Option<E> {
        let backoff = Backoff::new();
        let mut head = self.head.load(Ordering::SeqCst);
        loop {
            let slot = &self.slots[self.index(head)];
            let seq = slot.seq.load(Ordering::Acquire);
            if seq == 2 * head + 1 {
                // Published: claim it.
                match self.head.compare_exchange_weak(
                    head,
                    head + 1,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(_) => {
                        // SAFETY: the claim makes this pop the slot's only
                        // user; the push published it (release), seen by
                        // the acquire above, and its value is read once.
                        let value = unsafe { (*slot.value.get()).assume_init_read() };
                        slot.seq.store(2 * (head + self.cap), Ordering::Release);
                        return Some(value);
                    }
                    Err(now) => {
                        head = now;
                        backoff.spin();
                    }
                }
            } else if seq <= 2 * head {
                // Not published for this position yet. Empty if no push
                // has claimed it.
                atomic::fence(Ordering::SeqCst);
                let tail = self.tail.load(Ordering::SeqCst) & POS;
                if tail == head {
                    return None;
                }
                // A push claimed it and is still writing it.
                backoff.snooze();
                head = self.head.load(Ordering::SeqCst);
            } else {
                // Another pop took this position; `head` was stale.
                backoff.spin();
                head = self.head.load(Ordering::SeqCst);
            }
        }
    }

    fn refuses(&self) -> Option<Try> {
        let tail = self.tail.load(Ordering::SeqCst);
        if tail & SHUT != 0 {
            Some(Try::Disconnected)
        } else if self.taken(tail) >= self.cap {
            Some(Try::NotReady)
        } else {
            None
        }
    }

    fn len(&self) -> usize {
        loop {
            let tail = self.tail.load(Ordering::SeqCst);
            let head = self.head.load(Ordering::SeqCst);
            // A consistent pair: the tail did not move while the head was
            // read, so `head <= tail` (a claimed pop follows its push).
            if self.tail.load(Ordering::SeqCst) == tail {
                return ((tail & POS) - head) as usize;
            }
        }
    }

    fn close(&self) {
        self.tail.fetch_or(SHUT, Ordering::SeqCst);
    }

    fn positions(&self) -> (u64, u64) {
        (
            self.tail.load(Ordering::SeqCst),
            self.head.load(Ordering::SeqCst),
        )
    }

    fn reserve(&self) -> Try {
        self.reserve_room()
    }

    fn put_reserved(&self, value: E) -> Result<(), (E, Try)> {
        self.put_with_reservation(value)
    }

    fn release(&self) {
        self.give_back();
    }
}

impl<E> Drop for Ring<E> {
    fn drop(&mut self) {
        let head = *self.head.get_mut();
        let tail = *self.tail.get_mut() & POS;
        for pos in head..tail {
            let i = self.index(pos);
            // SAFETY: with `&mut self` nothing is in flight: every position
            // in `head..tail` was claimed by a push that published it (a
            // push cannot stop between its claim and its write), and no
            // pop took it. Each is dropped once.
            unsafe { self.slots[i].value.get_mut().assume_init_drop() };
        }
    }
}

/// In a list's state word: closed to pushes. The bits below count the
/// pushes (wrapping around, harmlessly: the count is only compared for
/// equality).
const LIST_CLOSED: u64 = 1 << 63;

/// An unbounded multi-producer multi-consumer queue: a `VecDeque` behind a
/// [`SpinLock`], as flume keeps its queues, with two words beside it that
/// are read without the lock.
///
/// - `state`, the list's position: the pushes so far and the close bit.
///   Written only under the lock, with a `SeqCst` store, which is the
///   instant a push or the close takes effect (its linearization point).
/// - `len`, written under the lock before `state`: a pop that finds it 0
///   after reading `state` returns at once, without the lock, and a
///   waiting receiver's looks cost two loads.
///
/// A push costs one compare-and-swap (the lock) and one `SeqCst` store; a
/// pop, one compare-and-swap. (crossbeam's `SegQueue`, with a word of our
/// own around it for the close and the positions, cost four
/// read-modify-writes per push and two plus a fence per pop, and a fence
/// per look at an empty list.)
pub(super) struct List<E> {
    queue: SpinLock<VecDeque<E>>,
    state: CachePadded<AtomicU64>,
    len: AtomicUsize,
}

impl<E> List<E> {
    fn new() -> List<E> {
        List {
            queue: SpinLock::new(VecDeque::new()),
            state: CachePadded::new(AtomicU64::new(0)),
            len: AtomicUsize::new(0),
        }
    }
}

impl<E> Queue<E> for List<E> {
    fn put(&self, value: E) -> Result<(), (E, Try)> {
        let mut queue = self.queue.lock();
        // Only written under the lock, which we hold.
        let state = self.state.load(Ordering::Relaxed);
        if state & LIST_CLOSED != 0 {
            return Err((value, Try::Disconnected));
        }
        queue.push_back(value);
        self.len.store(queue.len(), Ordering::Relaxed);
        // The push takes effect here. A notifier checks for waiters after
        // this `SeqCst` store without a fence of its own; a waiter
        // registers (a store, then a `SeqCst` fence) and looks again
        // through `take`, whose first read is a `SeqCst` load of this
        // word. In the single order of `SeqCst` operations, a notifier
        // that missed the registration made this store before that fence,
        // so the look reads it (or later) and, through it, `len`.
        self.state
            .store((state + 1) & !LIST_CLOSED, Ordering::SeqCst);
        Ok(())
    }

    fn take(&self) -> Option<E> {
        // `state` first (see `put`): reading a push's store makes its
        // `len` visible.
        self.state.load(Ordering::SeqCst);
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut queue = self.queue.lock();
        let value = queue.pop_front();
        self.len.store(queue.len(), Ordering::Relaxed);
        // Give back most of the room a burst left behind, a halving at a
        // time (amortized: each halving follows as many pops as it moves).
        let cap = queue.capacity();
        if cap > 4096 && queue.len() < cap / 4 {
            queue.shrink_to(cap / 2);
        }
        value
    }

    fn refuses(&self) -> Option<Try> {
        (self.state.load(Ordering::SeqCst) & LIST_CLOSED != 0).then_some(Try::Disconnected)
    }

    fn len(&self) -> usize {
        // `state` first, as in `take`: a waiting select's look after its
        // registration comes through here, and only a look that reads
        // `state` is ordered after a push that missed the registration
        // (`len` is stored relaxed).
        self.state.load(Ordering::SeqCst);
        self.len.load(Ordering::Relaxed)
    }

    fn close(&self) {
        // Under the lock: a push either finished before (its message is
        // there for the closer's drain) or finds the list closed.
        let _queue = self.queue.lock();
        let state = self.state.load(Ordering::Relaxed);
        self.state.store(state | LIST_CLOSED, Ordering::SeqCst);
    }

    fn positions(&self) -> (u64, u64) {
        (self.state.load(Ordering::SeqCst), 0)
    }
}

// The by-value and the boxed paths are functions of their own: in a debug
// build a function's frame holds room for every local of every branch, so
// a by-value branch next to the boxed one would put a large `T` on the
// stack even where it never runs.

/// Pushes a copy of `*src` by value.
///
/// # Safety
///
/// As `Chan::try_send_raw`: on `Done` the bytes at `src` moved.
unsafe fn push_inline<T>(q: &impl Queue<T>, src: *const T, reserved: bool) -> Try {
    // SAFETY: `src` is a live `T` (contract); this copy is the message if
    // the queue takes it, and is forgotten if not, leaving `*src` the only
    // one.
    let value = unsafe { ptr::read(src) };
    let put = if reserved {
        q.put_reserved(value)
    } else {
        q.put(value)
    };
    match put {
        Ok(()) => Try::Done,
        Err((value, why)) => {
            mem::forget(value);
            why
        }
    }
}

/// Pushes a boxed copy of `*src`.
///
/// # Safety
///
/// As `Chan::try_send_raw`: on `Done` the bytes at `src` moved.
unsafe fn push_boxed<T>(q: &impl Queue<Box<T>>, src: *const T, reserved: bool) -> Try {
    // Spares an allocation; a full or closed queue is a valid outcome,
    // whatever came first (a reserved push is never refused for room).
    if !reserved && let Some(why) = q.refuses() {
        return why;
    }
    // SAFETY: `src` is a live `T` (contract); the box is the message if the
    // queue takes it, and is freed without its value if not, leaving
    // `*src` the only copy.
    let value = unsafe { box_from(src) };
    let put = if reserved {
        q.put_reserved(value)
    } else {
        q.put(value)
    };
    match put {
        Ok(()) => Try::Done,
        Err((value, why)) => {
            forget_box(value);
            why
        }
    }
}

/// Pops a message stored by value into `dst`.
///
/// # Safety
///
/// `dst` is valid for a write of a `T`; on true it holds a message.
unsafe fn pop_inline<T>(q: &impl Queue<T>, dst: *mut T) -> bool {
    match q.take() {
        Some(value) => {
            // SAFETY: `dst` is writable (contract).
            unsafe { dst.write(value) };
            true
        }
        None => false,
    }
}

/// Pops a boxed message into `dst`.
///
/// # Safety
///
/// `dst` is valid for a write of a `T`; on true it holds a message.
unsafe fn pop_boxed<T>(q: &impl Queue<Box<T>>, dst: *mut T) -> bool {
    match q.take() {
        Some(b) => {
            // SAFETY: `dst` is writable (contract).
            unsafe { unbox_into(b, dst) };
            true
        }
        None => false,
    }
}

/// The queue itself: messages by value, or boxed (see [`boxed`]).
enum Store<A, B> {
    Inline(A),
    Boxed(B),
}

/// A queue of `T`, `A` holding messages by value or `B` boxed. `Send` and
/// `Sync` when `T: Send`, as both queues are. No `Drop`: dropping a queue
/// drops what it holds, boxed messages with their boxes.
pub(super) struct Queued<T, A, B> {
    store: Store<A, B>,
    _message: std::marker::PhantomData<fn() -> T>,
}

/// The bounded queue behind `channel(cap)`, `cap > 0`.
pub(super) type Array<T> = Queued<T, Ring<T>, Ring<Box<T>>>;

/// The unbounded queue behind `unbounded()`.
pub(super) type Unbounded<T> = Queued<T, List<T>, List<Box<T>>>;

impl<T, A: Queue<T>, B: Queue<Box<T>>> Queued<T, A, B> {
    fn with(store: Store<A, B>) -> Self {
        Queued {
            store,
            _message: std::marker::PhantomData,
        }
    }

    /// The queue of the two that `T`'s size chose (see [`boxed`]): `Ok`
    /// by value, `Err` boxed. The size is known at compile time, so the
    /// other path is dead code there, and an optimizer that inlines the
    /// by-value path into a caller (with a `T` by value in its frame) does
    /// so only where `T` is small: a large message's wait keeps no room
    /// for one (a release build's 64 KiB receive overflowed a 256 KiB
    /// stack with that room in two frames).
    #[inline]
    fn by_size(&self) -> Result<&A, &B> {
        match &self.store {
            Store::Inline(q) if !boxed::<T>() => Ok(q),
            Store::Boxed(q) if boxed::<T>() => Err(q),
            _ => unreachable!("a queue is boxed exactly when its messages are large"),
        }
    }

    /// Moves the message at `src` into the queue.
    ///
    /// # Safety
    ///
    /// As `Chan::try_send_raw`: on `Done` the bytes at `src` moved.
    pub(super) unsafe fn push(&self, src: *const T) -> Try {
        match self.by_size() {
            // SAFETY: as this function's contract.
            Ok(q) => unsafe { push_inline(q, src, false) },
            // SAFETY: as this function's contract.
            Err(q) => unsafe { push_boxed(q, src, false) },
        }
    }

    /// Reserves room for one later [`Queued::push_reserved`] (see
    /// [`Queue::reserve`]).
    pub(super) fn reserve(&self) -> Try {
        match &self.store {
            Store::Inline(q) => q.reserve(),
            Store::Boxed(q) => q.reserve(),
        }
    }

    /// Moves the message at `src` into the queue with a reservation, which
    /// it uses up: `Done`, or `Disconnected` (the reservation given back).
    ///
    /// # Safety
    ///
    /// As [`Queued::push`]; a reservation from [`Queued::reserve`] is held.
    pub(super) unsafe fn push_reserved(&self, src: *const T) -> Try {
        match self.by_size() {
            // SAFETY: as this function's contract.
            Ok(q) => unsafe { push_inline(q, src, true) },
            // SAFETY: as this function's contract.
            Err(q) => unsafe { push_boxed(q, src, true) },
        }
    }

    /// Gives back a reservation from [`Queued::reserve`], unused.
    pub(super) fn release(&self) {
        match &self.store {
            Store::Inline(q) => q.release(),
            Store::Boxed(q) => q.release(),
        }
    }

    /// Whether a push would find room now (a hint).
    pub(super) fn has_room(&self) -> bool {
        match &self.store {
            Store::Inline(q) => q.refuses() != Some(Try::NotReady),
            Store::Boxed(q) => q.refuses() != Some(Try::NotReady),
        }
    }

    /// Moves the first message into `dst`; false if there is none.
    ///
    /// # Safety
    ///
    /// `dst` is valid for a write of a `T`; on true it holds a message.
    pub(super) unsafe fn pop(&self, dst: *mut T) -> bool {
        match self.by_size() {
            // SAFETY: as this function's contract.
            Ok(q) => unsafe { pop_inline(q, dst) },
            // SAFETY: as this function's contract.
            Err(q) => unsafe { pop_boxed(q, dst) },
        }
    }

    /// Closes the queue to pushes; what it holds can still be popped.
    pub(super) fn close(&self) {
        match &self.store {
            Store::Inline(q) => q.close(),
            Store::Boxed(q) => q.close(),
        }
    }

    /// See the module docs.
    pub(super) fn positions(&self) -> (u64, u64) {
        match &self.store {
            Store::Inline(q) => q.positions(),
            Store::Boxed(q) => q.positions(),
        }
    }

    pub(super) fn len(&self) -> usize {
        match &self.store {
            Store::Inline(q) => q.len(),
            Store::Boxed(q) => q.len(),
        }
    }
}

impl<T> Array<T> {
    #[track_caller]
    pub(super) fn new(cap: usize) -> Array<T> {
        let store = if boxed::<T>() {
            Ring::new(cap).map(Store::Boxed)
        } else {
            Ring::new(cap).map(Store::Inline)
        };
        match store {
            Some(store) => Queued::with(store),
            // The capacity is the caller's, so is the message naming it.
            None => panic!(
                "stackful::sync::channel({cap}): the capacity is too large; use `unbounded()` for \
                 a channel without a bound"
            ),
        }
    }

    pub(super) fn capacity(&self) -> usize {
        match &self.store {
            Store::Inline(q) => q.capacity(),
            Store::Boxed(q) => q.capacity(),
        }
    }
}

impl<T> Unbounded<T> {
    pub(super) fn new() -> Unbounded<T> {
        Queued::with(if boxed::<T>() {
            Store::Boxed(List::new())
        } else {
            Store::Inline(List::new())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::{Array, List as Raw, Queue as _, Ring, SHUT, Unbounded as List, boxed};
    use crate::sync::channel::Try;

    /// The operations both queues share, for tests over either.
    trait Queue<T>: Send + Sync {
        fn push(&self, v: T) -> Try;
        fn pop(&self) -> Option<T>;
        fn len(&self) -> usize;
        fn close(&self);
        fn positions(&self) -> (u64, u64);
        fn capacity(&self) -> Option<usize>;
    }

    macro_rules! queue {
        ($q:ident) => {
            impl<T: Send> Queue<T> for $q<T> {
                fn push(&self, v: T) -> Try {
                    let v = std::mem::ManuallyDrop::new(v);
                    // SAFETY: `v` is ours; on `Done` its bytes moved and it
                    // stays forgotten, else it is dropped here.
                    let outcome = unsafe { $q::push(self, &raw const *v) };
                    if outcome != Try::Done {
                        drop(std::mem::ManuallyDrop::into_inner(v));
                    }
                    outcome
                }
                fn pop(&self) -> Option<T> {
                    let mut slot = std::mem::MaybeUninit::uninit();
                    // SAFETY: `slot` is ours; on true it holds a message.
                    unsafe { $q::pop(self, slot.as_mut_ptr()).then(|| slot.assume_init()) }
                }
                fn len(&self) -> usize {
                    $q::len(self)
                }
                fn close(&self) {
                    $q::close(self)
                }
                fn positions(&self) -> (u64, u64) {
                    $q::positions(self)
                }
                fn capacity(&self) -> Option<usize> {
                    $q::bound(self)
                }
            }
        };
    }
    queue!(Array);
    queue!(List);

    impl<T> Array<T> {
        fn bound(&self) -> Option<usize> {
            Some(self.capacity())
        }
    }

    impl<T> List<T> {
        fn bound(&self) -> Option<usize> {
            None
        }
    }

    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn array_wraps_around_many_laps_in_order_and_reports_full() {
        for cap in [1, 2, 3, 7, 8] {
            let q = Array::new(cap);
            let mut next_in = 0u64;
            let mut next_out = 0u64;
            for round in 0..100 {
                let n = 1 + round % cap;
                for _ in 0..n {
                    assert_eq!(Queue::push(&q, next_in), Try::Done);
                    next_in += 1;
                }
                assert_eq!(Queue::len(&q), n, "cap {cap}");
                if n == cap {
                    assert_eq!(Queue::push(&q, u64::MAX), Try::NotReady, "cap {cap}: full");
                }
                for _ in 0..n {
                    assert_eq!(Queue::pop(&q), Some(next_out), "cap {cap}");
                    next_out += 1;
                }
                assert_eq!(Queue::pop(&q), None);
                assert_eq!(Queue::len(&q), 0);
            }
        }
    }

    #[test]
    fn list_crosses_blocks_in_order_with_the_right_len() {
        let q = List::new();
        for i in 0..200u64 {
            assert_eq!(Queue::push(&q, i), Try::Done);
            assert_eq!(Queue::len(&q), i as usize + 1);
        }
        for i in 0..200u64 {
            assert_eq!(Queue::pop(&q), Some(i));
            assert_eq!(Queue::len(&q), 199 - i as usize);
        }
        assert_eq!(Queue::pop(&q), None);
        // Interleaved, so head and tail meet at block boundaries.
        for i in 0..500u64 {
            assert_eq!(Queue::push(&q, i), Try::Done);
            assert_eq!(Queue::pop(&q), Some(i));
            assert_eq!(Queue::len(&q), 0);
        }
    }

    #[test]
    fn closed_queues_refuse_pushes_but_give_up_what_they_hold() {
        let array = Array::new(4);
        let list = List::new();
        let queues: [&dyn Queue<u64>; 2] = [&array, &list];
        for q in queues {
            assert_eq!(q.push(1), Try::Done);
            q.close();
            assert_eq!(q.push(2), Try::Disconnected);
            assert_eq!(q.len(), 1);
            assert_eq!(q.pop(), Some(1));
            assert_eq!(q.pop(), None);
        }
    }

    #[test]
    fn dropping_a_queue_drops_what_it_holds_once() {
        let dropped = Arc::new(AtomicUsize::new(0));
        {
            let array = Array::new(5);
            let list = List::new();
            for _ in 0..3 {
                // A few laps in, so the held slots wrap around.
                for _ in 0..4 {
                    Queue::push(&array, Counted(dropped.clone()));
                    drop(Queue::pop(&array));
                }
                Queue::push(&array, Counted(dropped.clone()));
            }
            for _ in 0..70 {
                Queue::push(&list, Counted(dropped.clone()));
            }
            for _ in 0..40 {
                drop(Queue::pop(&list)); // the first block is freed meanwhile
            }
        }
        assert_eq!(dropped.load(Ordering::SeqCst), 12 + 3 + 70);
    }

    #[test]
    fn zero_sized_messages() {
        let array = Array::new(2);
        let list = List::new();
        let queues: [&dyn Queue<()>; 2] = [&array, &list];
        for q in queues {
            for _ in 0..100 {
                assert_eq!(q.push(()), Try::Done);
                assert_eq!(q.pop(), Some(()));
            }
        }
    }

    /// `threads` producers on OS threads push `per` messages each (`make`
    /// builds message `i` of producer `p`), and `threads` consumers pop
    /// them: each message arrives once, and each consumer sees each
    /// producer's messages in order (`read` gives back `(p, i)`).
    fn mpmc_with<M: Send + 'static>(
        q: Arc<dyn Queue<M>>,
        threads: usize,
        per: u64,
        make: fn(u64, u64) -> M,
        read: fn(&M) -> (usize, u64),
    ) {
        let producers: Vec<_> = (0..threads as u64)
            .map(|p| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..per {
                        while q.push(make(p, i)) != Try::Done {
                            std::hint::spin_loop(); // full
                        }
                    }
                })
            })
            .collect();
        let taken = Arc::new(AtomicUsize::new(0));
        let total = threads * per as usize;
        let consumers: Vec<_> = (0..threads)
            .map(|_| {
                let (q, taken) = (q.clone(), taken.clone());
                std::thread::spawn(move || {
                    let mut last = vec![None::<u64>; threads];
                    let mut sum = 0u64;
                    while taken.load(Ordering::SeqCst) < total {
                        if let Some(m) = q.pop() {
                            taken.fetch_add(1, Ordering::SeqCst);
                            let (p, i) = read(&m);
                            assert!(last[p].is_none_or(|l| l < i), "out of order");
                            last[p] = Some(i);
                            sum += i;
                        }
                    }
                    sum
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let sum: u64 = consumers.into_iter().map(|c| c.join().unwrap()).sum();
        assert_eq!(sum, threads as u64 * (per * (per - 1) / 2));
        assert!(q.pop().is_none());
    }

    /// A message's producer in the high word, its index in the low one.
    fn split(v: u64) -> (usize, u64) {
        ((v >> 32) as usize, v & 0xffff_ffff)
    }

    fn mpmc(q: Arc<dyn Queue<u64>>) {
        mpmc_with(q, 3, 20_000, |p, i| p << 32 | i, |v| split(*v));
    }

    #[test]
    fn array_mpmc() {
        mpmc(Arc::new(Array::<u64>::new(3)));
        mpmc(Arc::new(Array::<u64>::new(64)));
    }

    #[test]
    fn list_mpmc() {
        mpmc(Arc::new(List::<u64>::new()));
    }

    /// A close races with pushes: every push that succeeded is popped
    /// afterwards, and none that failed.
    #[test]
    fn close_races_with_pushes() {
        for round in 0..20 {
            let array = Arc::new(Array::<u64>::new(1 << 12));
            let list = Arc::new(List::<u64>::new());
            let queues: [Arc<dyn Queue<u64>>; 2] = [array, list];
            for q in queues {
                let pushers: Vec<_> = (0..2)
                    .map(|_| {
                        let q = q.clone();
                        std::thread::spawn(move || {
                            let mut n = 0u64;
                            while q.push(n) == Try::Done {
                                n += 1;
                                if n == 1 << 11 {
                                    break;
                                }
                            }
                            n
                        })
                    })
                    .collect();
                std::thread::sleep(std::time::Duration::from_micros(50 * round));
                q.close();
                let pushed: u64 = pushers.into_iter().map(|p| p.join().unwrap()).sum();
                let mut popped = 0;
                while q.pop().is_some() {
                    popped += 1;
                }
                assert_eq!(popped, pushed);
            }
        }
    }

    /// Large enough to travel boxed.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    struct Big([u64; 64]);

    impl Big {
        fn new(v: u64) -> Big {
            Big([v; 64])
        }

        /// The value it was made from; panics if it arrived damaged.
        fn value(&self) -> u64 {
            assert!(self.0.iter().all(|&w| w == self.0[0]), "damaged");
            self.0[0]
        }
    }

    #[test]
    fn large_messages_travel_boxed_whole_in_order_and_are_dropped_once() {
        assert!(boxed::<Big>() && !boxed::<u64>() && !boxed::<()>());
        let dropped = Arc::new(AtomicUsize::new(0));
        {
            let array = Array::new(3);
            let list = List::new();
            let queues: [&dyn Queue<(Big, Counted)>; 2] = [&array, &list];
            for q in queues {
                for i in 0..3 {
                    assert_eq!(q.push((Big::new(i), Counted(dropped.clone()))), Try::Done);
                }
                assert_eq!(q.len(), 3);
                for i in 0..2 {
                    let (big, counted) = q.pop().expect("a message");
                    assert_eq!(big.value(), i);
                    drop(counted);
                }
                assert_eq!(q.len(), 1);
            }
            assert_eq!(dropped.load(Ordering::SeqCst), 4);
            // A full ring and a closed queue hand the message back whole.
            assert_eq!(
                Queue::push(&array, (Big::new(7), Counted(dropped.clone()))),
                Try::Done
            );
            assert_eq!(
                Queue::push(&array, (Big::new(8), Counted(dropped.clone()))),
                Try::Done
            );
            assert_eq!(
                Queue::push(&array, (Big::new(9), Counted(dropped.clone()))),
                Try::NotReady
            );
            assert_eq!(
                dropped.load(Ordering::SeqCst),
                5,
                "refused: dropped by its owner"
            );
            Queue::close(&list);
            assert_eq!(
                Queue::push(&list, (Big::new(9), Counted(dropped.clone()))),
                Try::Disconnected
            );
            assert_eq!(
                dropped.load(Ordering::SeqCst),
                6,
                "refused: dropped by its owner"
            );
        }
        // Left in the queues: 3 in the array, 1 in the list.
        assert_eq!(dropped.load(Ordering::SeqCst), 10);
    }

    #[test]
    fn large_messages_mpmc() {
        let array = Arc::new(Array::<Big>::new(4));
        let list = Arc::new(List::<Big>::new());
        let queues: [Arc<dyn Queue<Big>>; 2] = [array, list];
        for q in queues {
            mpmc_with(
                q,
                2,
                5_000,
                |p, i| Big::new(p << 32 | i),
                |b| split(b.value()),
            );
        }
    }

    fn positions_of(q: &dyn Queue<u64>) -> (u64, u64) {
        q.positions()
    }

    /// What `select`'s double collect relies on: a ring's positions change
    /// with every push and pop that moved a message (a push and a pop of
    /// the same message too, though the contents end as they began), and
    /// with the close; a list's with every push and the close. Attempts
    /// that moved nothing leave them alone.
    #[test]
    fn positions_change_with_every_move_and_the_close_only() {
        let array = Array::new(1);
        let list = List::new();
        let queues: [(&dyn Queue<u64>, bool); 2] = [(&array, true), (&list, false)];
        for (q, pops_count) in queues {
            let empty = positions_of(q);
            assert_eq!(q.pop(), None);
            assert_eq!(positions_of(q), empty, "a failed pop");
            assert_eq!(q.push(1), Try::Done);
            let one = positions_of(q);
            assert_ne!(one, empty, "a push");
            assert_eq!(positions_of(q), one, "a reading alone");
            assert_eq!(q.pop(), Some(1));
            let popped = positions_of(q);
            assert_eq!(popped != one, pops_count, "a pop");
            assert_ne!(popped, empty, "a push, then a pop");
            assert_eq!(q.push(2), Try::Done);
            assert_eq!(q.pop(), Some(2));
            assert_ne!(positions_of(q), popped, "a push and a pop");
            assert_eq!(q.push(3), Try::Done);
            let before = positions_of(q);
            if q.capacity() == Some(1) {
                assert_eq!(q.push(4), Try::NotReady);
                assert_eq!(positions_of(q), before, "a push into a full ring");
            }
            q.close();
            let closed = positions_of(q);
            assert_ne!(closed, before, "the close");
            assert_eq!(q.push(5), Try::Disconnected);
            assert_eq!(positions_of(q), closed, "a push after the close");
            assert_eq!(q.pop(), Some(3));
            assert_eq!(
                positions_of(q) != closed,
                pops_count,
                "a pop after the close"
            );
        }
    }

    /// A list's position changes with every push and with the close, and
    /// not with a pop (a pop cannot turn a failed receive into one that
    /// succeeds), so a double collect sees every push between its reads.
    #[test]
    fn list_positions_change_with_pushes_and_the_close_only() {
        let list = Raw::<u64>::new();
        let idle = list.positions();
        assert_eq!(list.positions(), idle);
        list.put(1).unwrap();
        let pushed = list.positions();
        assert_ne!(pushed, idle);
        assert_eq!(list.take(), Some(1));
        assert_eq!(list.positions(), pushed, "a pop moved the position");
        list.put(2).unwrap();
        let again = list.positions();
        assert_ne!(again, pushed);
        list.close();
        assert_ne!(list.positions(), again, "the close left the position");
        assert!(matches!(list.put(3), Err((3, Try::Disconnected))));
        assert_eq!(list.take(), Some(2), "a closed list gives up what it holds");
        assert_eq!(list.take(), None);
    }

    /// A list's `close` waits for a push that holds the lock, so the
    /// closer's drain sees its message.
    #[test]
    fn list_close_waits_for_a_push_in_flight() {
        let list = Arc::new(Raw::<u64>::new());
        let held = list.queue.lock(); // plays a push in flight
        let closed = Arc::new(AtomicUsize::new(0));
        let closer = {
            let (list, closed) = (list.clone(), closed.clone());
            std::thread::spawn(move || {
                list.close();
                closed.store(1, Ordering::SeqCst);
            })
        };
        // A negative check: nothing to wait for but time. Long enough for
        // a broken `close` to return on a loaded machine most of the time.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(closed.load(Ordering::SeqCst), 0, "close returned mid-push");
        drop(held);
        closer.join().unwrap();
        assert_eq!(closed.load(Ordering::SeqCst), 1);
        assert!(list.put(1).is_err(), "closed");
    }

    /// A list that held a burst gives most of its room back as it drains.
    #[test]
    fn list_gives_back_room_after_a_burst() {
        let list = Raw::<u64>::new();
        for i in 0..100_000 {
            list.put(i).unwrap();
        }
        let full = list.queue.lock().capacity();
        for i in 0..100_000 {
            assert_eq!(list.take(), Some(i));
        }
        assert_eq!(list.take(), None);
        let drained = list.queue.lock().capacity();
        assert!(
            drained <= 8192 && drained < full / 8,
            "kept {drained} of {full} slots"
        );
    }

    /// A ring's pop that finds its slot claimed by a push still writing it
    /// waits for that push instead of calling the ring empty (the push
    /// took effect when it claimed the position); a ring's push that finds
    /// its slot claimed by a pop still reading it waits likewise instead
    /// of calling the ring full. Driven by hand: the test plays the slow
    /// push and the slow pop itself.
    #[test]
    fn ring_waits_for_an_operation_in_flight_instead_of_failing() {
        let ring = Arc::new(Ring::<u64>::new(2).unwrap());
        // A push claims position 0 and stalls before writing it.
        ring.tail.fetch_add(1, Ordering::SeqCst);
        let popper = {
            let ring = ring.clone();
            std::thread::spawn(move || ring.take())
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(
            !popper.is_finished(),
            "a pop called the ring empty mid-push"
        );
        // The push ends: writes and publishes its slot.
        // SAFETY: position 0 was claimed above; the test is its push.
        unsafe { (*ring.slots[0].value.get()).write(7) };
        ring.slots[0].seq.store(1, Ordering::Release); // 2 * 0 + 1: published
        assert_eq!(popper.join().unwrap(), Some(7));

        // Fill the ring (positions 1 and 2), then a pop claims position 1
        // and stalls before reading it.
        assert!(ring.put(8).is_ok() && ring.put(9).is_ok());
        assert_eq!(ring.head.fetch_add(1, Ordering::SeqCst), 1);
        let pusher = {
            let ring = ring.clone();
            std::thread::spawn(move || ring.put(10).map_err(|(_, why)| why))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!pusher.is_finished(), "a push called the ring full mid-pop");
        // The pop ends: reads its slot and frees it for the next lap.
        // SAFETY: position 1 was claimed above; the test is its pop.
        let value = unsafe { (*ring.slots[1].value.get()).assume_init_read() };
        assert_eq!(value, 8);
        ring.slots[1].seq.store(2 * (1 + 2), Ordering::Release);
        assert_eq!(pusher.join().unwrap(), Ok(()));
        assert_eq!(ring.take(), Some(9));
        assert_eq!(ring.take(), Some(10));
        assert_eq!(ring.take(), None);
    }

    /// A ring's close lets a push that claimed its position before it
    /// publish, and the pops wait for that message: none is stranded.
    #[test]
    fn ring_close_keeps_a_push_in_flight() {
        let ring = Arc::new(Ring::<u64>::new(4).unwrap());
        ring.tail.fetch_add(1, Ordering::SeqCst); // a push claims 0, stalls
        ring.close();
        assert!(matches!(ring.put(1), Err((1, Try::Disconnected))));
        assert_ne!(ring.tail.load(Ordering::SeqCst) & SHUT, 0);
        let popper = {
            let ring = ring.clone();
            std::thread::spawn(move || ring.take())
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!popper.is_finished(), "a pop gave up on a claimed message");
        // SAFETY: position 0 was claimed above; the test is its push.
        unsafe { (*ring.slots[0].value.get()).write(5) };
        ring.slots[0].seq.store(1, Ordering::Release); // 2 * 0 + 1: published
        assert_eq!(popper.join().unwrap(), Some(5));
        assert_eq!(ring.take(), None);
    }

    /// Odd capacities index their slots by division, powers of two by a
    /// mask; both wrap around.
    #[test]
    fn ring_capacities_odd_and_even() {
        for cap in [1usize, 3, 5, 16, 100] {
            let ring = Ring::<usize>::new(cap).unwrap();
            assert_eq!(ring.capacity(), cap);
            for lap in 0..5 {
                for i in 0..cap {
                    assert!(ring.put(lap * cap + i).is_ok());
                }
                assert!(matches!(ring.put(0), Err((0, Try::NotReady))));
                assert_eq!(ring.refuses(), Some(Try::NotReady));
                assert_eq!(ring.len(), cap);
                for i in 0..cap {
                    assert_eq!(ring.take(), Some(lap * cap + i));
                }
                assert_eq!(ring.refuses(), None);
            }
        }
    }
}
