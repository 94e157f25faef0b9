//! Waiting on several channel operations at once: Go's `select`.
//!
//! # The protocol
//!
//! A [`Select`] follows crossbeam-channel's scheme. It first *tries* its
//! operations, in a random order (in order for a biased one), and completes
//! the first that can proceed: a message in a queue, room in one, or a
//! rendezvous partner waiting, which may be another `Select`. If none can,
//! it *registers* every operation under one context (a [`Waiter`] whose
//! state exactly one party wins with a compare-and-swap, naming the
//! operation), looks again, since an operation may have become ready while
//! it registered, and then waits. A rendezvous partner that wins the
//! context is paired with it for good: the message moves through a packet
//! at once, or, for a selected send, when its caller hands it over with
//! [`SelectedOperation::send`]. A queue's notification only wakes the
//! select, which then tries again, and passes a notification it did not
//! use on to the next waiter.
//!
//! `select!` with one operation and no `default` builds no `Select`: a
//! receive is a plain receive, and a rendezvous send queues a packet
//! without a message (or pairs with a waiting receiver) under the
//! channel's lock alone, and builds its message once a receiver has paired
//! with it, as a `Select`'s send would.
//!
//! A select with a `default` arm ([`Select::try_wait`]) reports "nothing
//! ready" only after a double collect: it reads every channel's counters
//! (queue positions, the rendezvous queues' version, the ends' counts),
//! tries every operation, and reads the counters again; only if nothing
//! changed between the two reads was there an instant at which no
//! operation could proceed. Otherwise it tries again.

use std::alloc::{self, Layout};
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::channel::{Packet, Receiver, Reg, SelectHandle, SendToken, Sender, Try, send_error};
use super::error::{
    ReadyTimeoutError, RecvError, SelectTimeoutError, SendError, TryReadyError, TrySelectError,
};
use super::wait::{Registration, Waiter};
use crate::cancel::{AbortOnUnwind, Cancelled};
use crate::runtime::park;

/// Shuffles `order` uniformly (Fisher-Yates). Each choice below `k` is the
/// high word of a 64-bit random number times `k`, and the low word is the
/// random number of the next choice (no division: a division costs tens
/// of cycles, a select's whole first pass not many more). The bias is of
/// the order of `k / 2^64`: nil.
fn shuffle<E>(order: &mut [E]) {
    let mut x = random();
    for i in (1..order.len()).rev() {
        let wide = u128::from(x) * (i as u128 + 1);
        order.swap(i, (wide >> 64) as usize);
        x = wide as u64;
        if x == 0 {
            x = random();
        }
    }
}

/// Fills `order` with the indices `0..order.len()` (as `index` makes
/// them), in a random order unless `biased`.
fn arrange<E>(order: &mut [E], biased: bool, index: impl Fn(usize) -> E) {
    for (k, slot) in order.iter_mut().enumerate() {
        *slot = index(k);
    }
    if !biased && order.len() > 1 {
        shuffle(order);
    }
}

/// The earlier of two optional instants (`None`: never).
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A random number: a thread-local xorshift, for a fair choice among ready
/// operations.
fn random() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(park::context_id());
            h.finish() | 1
        });
    }
    STATE
        .try_with(|s| {
            let mut x = s.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.set(x);
            x
        })
        // A thread-local's destructor: any number will do.
        .unwrap_or(0x9e37_79b9_7f4a_7c15)
}

/// Room for one received message: inline if small, else on the heap (so
/// a large message does not pass through the stack).
struct Payload {
    inline: Inline,
    heap: Option<(NonNull<u8>, Layout)>,
}

#[repr(C, align(16))]
struct Inline([MaybeUninit<u8>; 32]);

impl Payload {
    fn new(layout: Layout) -> Payload {
        let heap = (layout.size() > size_of::<Inline>() || layout.align() > align_of::<Inline>())
            .then(|| {
                // SAFETY: the size is not zero (it exceeds the inline room).
                let p = unsafe { alloc::alloc(layout) };
                match NonNull::new(p) {
                    Some(p) => (p, layout),
                    None => alloc::handle_alloc_error(layout),
                }
            });
        Payload {
            inline: Inline([MaybeUninit::uninit(); 32]),
            heap,
        }
    }

    fn ptr(&mut self) -> *mut u8 {
        match self.heap {
            Some((p, _)) => p.as_ptr(),
            None => self.inline.0.as_mut_ptr().cast(),
        }
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        if let Some((p, layout)) = self.heap {
            // SAFETY: allocated in `new` with this layout; what it held, if
            // anything, was moved out or dropped by its owner.
            unsafe { alloc::dealloc(p.as_ptr(), layout) };
        }
    }
}

#[derive(Clone, Copy)]
struct Op<'a> {
    handle: &'a (dyn SelectHandle + 'a),
    send: bool,
}

/// Operations kept inline before a `Select` allocates.
const INLINE_OPS: usize = 4;

/// A short sequence kept inline, spilling to the heap past
/// [`INLINE_OPS`]: a `Select`'s operations and what it keeps per operation
/// while it waits, so that a select over a handful of channels allocates
/// nothing for them.
struct Few<T> {
    /// The first values: `Some` below `len` (unless taken out), `None`
    /// above. Not dropped as an array: `Drop` empties the slots below `len`
    /// (the others hold nothing), which spares a select the drop glue of
    /// every slot.
    first: ManuallyDrop<[Option<T>; INLINE_OPS]>,
    /// The values past the first `INLINE_OPS`, `Some` unless taken out.
    /// Dropped by `Drop` only if it allocated: a select that spilled
    /// nothing (most) skips a vector's drop glue.
    rest: ManuallyDrop<Vec<Option<T>>>,
    len: usize,
}

impl<T> Drop for Few<T> {
    fn drop(&mut self) {
        for slot in &mut self.first[..self.len.min(INLINE_OPS)] {
            drop(slot.take());
        }
        if self.rest.capacity() != 0 {
            // What is left in its place holds nothing: no leak.
            drop(std::mem::take(&mut *self.rest));
        }
    }
}

impl<T> Few<T> {
    fn new() -> Few<T> {
        Few {
            first: ManuallyDrop::new([const { None }; INLINE_OPS]),
            rest: ManuallyDrop::new(Vec::new()),
            len: 0,
        }
    }

    #[inline]
    fn push(&mut self, value: T) {
        match self.first.get_mut(self.len) {
            Some(slot) => *slot = Some(value),
            None => self.rest.push(Some(value)),
        }
        self.len += 1;
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        let inline = self.len.min(INLINE_OPS);
        self.first[..inline]
            .iter()
            .chain(self.rest.iter())
            .map(|v| v.as_ref().expect("a value below the length"))
    }

    /// Takes value `i` out, if it is there (below the length, not taken
    /// yet). Walking the indices with it empties a `Few` with no iterator
    /// to build and drop (a select does it once per wait).
    #[inline]
    fn take(&mut self, i: usize) -> Option<T> {
        if i >= self.len {
            return None;
        }
        match self.first.get_mut(i) {
            Some(v) => v.take(),
            None => self.rest[i - INLINE_OPS].take(),
        }
    }
}

impl<T> std::ops::Index<usize> for Few<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        match self.first.get(i) {
            Some(v) => v.as_ref().expect("an index below the length"),
            None => self.rest[i - INLINE_OPS]
                .as_ref()
                .expect("an index below the length"),
        }
    }
}

impl<T> std::ops::IndexMut<usize> for Few<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        match self.first.get_mut(i) {
            Some(v) => v.as_mut().expect("an index below the length"),
            None => self.rest[i - INLINE_OPS]
                .as_mut()
                .expect("an index below the length"),
        }
    }
}

/// Waits on several send and receive operations and completes exactly one.
/// Used directly or through [`select!`](crate::select).
///
/// It follows crossbeam-channel's scheme: try every operation (in a random
/// order); if none can proceed, register all of them under one context
/// that exactly one partner can win, look again, and wait. A rendezvous
/// partner that wins the context is paired for good. Cancellation and
/// timeouts lose and duplicate nothing: a select cut short either
/// completed an operation (and returns it) or did nothing.
///
/// When several operations are ready, one is chosen uniformly at random
/// ([`new_biased`](Select::new_biased): the first added). A send is
/// registered without its message: once it is selected, the caller hands
/// the message to [`SelectedOperation::send`], so a message is built only
/// for the operation that proceeds; a bounded channel keeps room reserved
/// for it meanwhile, and a rendezvous partner waits for it. A rendezvous (capacity 0) operation
/// pairs with a plain `send`/`recv` on the other side or with another
/// `Select`'s operation. A `Select` may be used round after round.
///
/// A select that cannot wait ([`try_wait`](Select::try_wait), or a
/// `select!` with `default`) reports "nothing ready" only if there was an
/// instant at which no operation could proceed.
///
/// # crossbeam-channel's names
///
/// | crossbeam-channel | stackful |
/// |---|---|
/// | `Select::select()` | [`Select::select`], or [`Select::wait`] |
/// | `Select::try_select() -> Result<_, TrySelectError>` | [`Select::try_select`], or [`Select::try_wait`] (`Option`) |
/// | `Select::select_timeout(d) -> Result<_, SelectTimeoutError>` | [`Select::select_timeout`], or [`Select::wait_timeout`] (`Option`) |
/// | `Select::select_deadline(t)` | [`Select::select_deadline`], or [`Select::wait_deadline`] (`Option<Instant>`, `Option`) |
/// | `Select::ready()`, `try_ready()`, `ready_timeout(d)`, `ready_deadline(t)` | the same |
/// | `Select::send(&s)`, `SelectedOperation::send(s, msg)` | the same |
/// | `select!`, `select_biased!`, `Select::new_biased()` | the same |
/// | `Select::remove(i)` | not offered: build a new `Select` |
///
/// # Examples
///
/// ```
/// use stackful::sync::{channel, Select};
///
/// let (tx1, rx1) = channel::<u32>(1);
/// let (_tx2, rx2) = channel::<&str>(1);
/// tx1.send(7).unwrap();
/// let mut sel = Select::new();
/// let first = sel.recv(&rx1);
/// let second = sel.recv(&rx2);
/// let op = sel.select();
/// assert_eq!(op.index(), first);
/// assert_ne!(op.index(), second);
/// assert_eq!(op.recv(&rx1), Ok(7));
/// ```
pub struct Select<'a> {
    ops: Few<Op<'a>>,
    biased: bool,
    /// Room for any message the receive operations may get.
    recv_layout: Layout,
    /// `select!` tried every operation just before: the next wait starts
    /// by registering (see `__tried`).
    tried: bool,
    /// A receive on a timer (`after`, `tick`, `never`) was added: a wait
    /// must look at when it is due (nobody wakes a select for it).
    timers: bool,
}

impl Default for Select<'_> {
    fn default() -> Self {
        Select::new()
    }
}

/// What the try phase found.
enum Found {
    Recv(usize, bool),
    Send(usize, SendToken),
}

/// The operation a [`Select`] selected: complete it with
/// [`recv`](SelectedOperation::recv) or [`send`](SelectedOperation::send),
/// with the channel it was added with.
///
/// # Panics
///
/// Dropped without being completed, it panics (unless the thread is
/// unwinding already), as crossbeam-channel's does. What it held is
/// released first: a received message is dropped, and a rendezvous
/// receiver paired with a selected send goes back to waiting.
#[must_use = "a selected operation must be completed with `recv` or `send`"]
pub struct SelectedOperation<'a> {
    index: usize,
    /// The channel (its address is the identity `recv` and `send` check).
    handle: &'a (dyn SelectHandle + 'a),
    send: bool,
    /// A receive got a message (in `payload`), which `handle` drops if it
    /// is not taken out.
    received: bool,
    token: Option<SendToken>,
    payload: Payload,
    completed: bool,
    _channels: PhantomData<&'a ()>,
}

unsafe fn drop_nothing(_: *mut u8) {}

impl<'a> Select<'a> {
    /// An empty selection that chooses fairly among ready operations.
    #[inline]
    pub fn new() -> Select<'a> {
        Select {
            ops: Few::new(),
            biased: false,
            recv_layout: Layout::new::<()>(),
            tried: false,
            timers: false,
        }
    }

    /// An empty selection that prefers the operation added first among
    /// those ready (for priority loops).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::sync::{unbounded, Select};
    ///
    /// let (urgent_tx, urgent) = unbounded::<u32>();
    /// let (normal_tx, normal) = unbounded::<u32>();
    /// urgent_tx.send(1).unwrap();
    /// normal_tx.send(2).unwrap();
    /// let mut sel = Select::new_biased();
    /// let u = sel.recv(&urgent);
    /// sel.recv(&normal);
    /// let op = sel.select();
    /// assert_eq!(op.index(), u);
    /// assert_eq!(op.recv(&urgent), Ok(1));
    /// ```
    pub fn new_biased() -> Select<'a> {
        Select {
            biased: true,
            ..Select::new()
        }
    }

    /// Adds a receive operation; returns its index.
    #[inline]
    pub fn recv<T>(&mut self, rx: &'a Receiver<T>) -> usize {
        let (room, msg) = (self.recv_layout, Layout::new::<T>());
        self.recv_layout =
            Layout::from_size_align(room.size().max(msg.size()), room.align().max(msg.align()))
                .expect("a message's layout");
        self.timers |= rx.chan.is_timer();
        self.ops.push(Op {
            handle: &*rx.chan,
            send: false,
        });
        self.ops.len() - 1
    }

    /// Adds a send operation, without its message (see
    /// [`SelectedOperation::send`]); returns its index.
    #[inline]
    pub fn send<T>(&mut self, tx: &'a Sender<T>) -> usize {
        self.ops.push(Op {
            handle: &*tx.chan,
            send: true,
        });
        self.ops.len() - 1
    }

    /// `select!` has just tried every operation, and none could proceed:
    /// the next wait skips its own first try. Not public API.
    #[doc(hidden)]
    #[inline]
    pub fn __tried(&mut self) {
        self.tried = true;
    }

    /// The first `Some` that `f` gives, asked of the operations' indices in
    /// the try order: random, or as added if biased.
    fn in_order<R>(&self, mut f: impl FnMut(usize) -> Option<R>) -> Option<R> {
        let n = self.ops.len();
        if n <= FAST_OPS {
            // On the stack, as `select!`'s first pass.
            let order = __select_order(n, self.biased);
            return order.as_slice().iter().find_map(|&i| f(usize::from(i)));
        }
        let mut order = vec![0; n];
        arrange(&mut order, self.biased, |k| k);
        order.iter().find_map(|&i| f(i))
    }

    /// Completes an operation that can proceed now, if one can.
    fn try_phase(&mut self, payload: &mut Payload) -> Option<Found> {
        self.in_order(|i| {
            let op = self.ops[i];
            if op.send {
                op.handle.sel_try_send().map(|token| Found::Send(i, token))
            } else {
                // SAFETY: `payload` has room for any of the receives' messages.
                match unsafe { op.handle.sel_try_recv(payload.ptr()) } {
                    Try::Done => Some(Found::Recv(i, true)),
                    Try::Disconnected => Some(Found::Recv(i, false)),
                    Try::NotReady => None,
                }
            }
        })
    }

    fn versions(&self) -> Vec<[u64; 4]> {
        self.ops.iter().map(|op| op.handle.sel_version()).collect()
    }

    fn selected(&self, found: Found, payload: Payload) -> SelectedOperation<'a> {
        let (index, received, token) = match found {
            Found::Recv(i, ok) => (i, ok, None),
            Found::Send(i, t) => (i, false, Some(t)),
        };
        let op = self.ops[index];
        SelectedOperation {
            index,
            handle: op.handle,
            send: op.send,
            received,
            token,
            payload,
            completed: false,
            _channels: PhantomData,
        }
    }

    /// The earliest instant at which a timer's receive (`after`, `tick`)
    /// becomes ready, if any.
    fn timer_due(&self) -> Option<Instant> {
        if !self.timers {
            return None;
        }
        self.ops
            .iter()
            .filter_map(|op| op.handle.sel_due(op.send))
            .min()
    }

    /// Whether ops `a` and `b` wait on the same queue.
    fn same_queue(&self, a: usize, b: usize) -> bool {
        let (a, b) = (self.ops[a], self.ops[b]);
        a.send == b.send && ptr::eq(a.handle.addr(), b.handle.addr())
    }

    /// The heart of every `select` flavor (see the module docs). `now`:
    /// never wait.
    fn run(&mut self, deadline: Option<Instant>, now: bool) -> Option<SelectedOperation<'a>> {
        let mut payload = Payload::new(self.recv_layout);
        // A queue's notification that woke us, not used yet.
        let mut notified: Option<usize> = None;
        // After `select!`'s own first pass, the first look is the one that
        // follows the registration.
        let mut tried = std::mem::take(&mut self.tried);
        loop {
            if let Some(found) = (!std::mem::take(&mut tried))
                .then(|| self.try_phase(&mut payload))
                .flatten()
            {
                let index = match found {
                    Found::Recv(i, _) | Found::Send(i, _) => i,
                };
                if let Some(k) = notified.filter(|&k| !self.same_queue(k, index)) {
                    self.ops[k].handle.sel_watch(self.ops[k].send).notify_one();
                }
                return Some(self.selected(found, payload));
            }
            // A notification found nothing: it was stale, and is used up.
            notified = None;
            if now || deadline.is_some_and(|d| Instant::now() >= d) {
                // Linearizable "nothing ready": a double collect.
                loop {
                    let before = self.versions();
                    if let Some(found) = self.try_phase(&mut payload) {
                        return Some(self.selected(found, payload));
                    }
                    if self.versions() == before {
                        return None;
                    }
                }
            }
            let waiter = Waiter::own();
            // A wait on a scheduler's loop panics with a message; find out
            // before the guard, under which it would abort instead.
            park::refuse_scheduler_loop();
            // Rendezvous receives lend `payload` until they leave the queues.
            let lent = AbortOnUnwind("a select's registration");
            let room = payload.ptr();
            let mut regs: Few<Reg<'a>> = Few::new();
            // The packet of the rendezvous operations, made at the first.
            let mut shared: Option<Arc<Packet>> = None;
            let mut ready = false;
            for (i, op) in self.ops.iter().enumerate() {
                let (reg, now_ready) =
                    op.handle
                        .sel_register(op.send, &waiter, i, room, &mut shared);
                regs.push(reg);
                if now_ready {
                    // No need to register the rest: we leave at once.
                    ready = true;
                    break;
                }
            }
            let mut cancelled = None;
            if ready {
                // Ready meanwhile: leave, and try again (unless selected).
                let _ = waiter.abort();
            } else {
                while waiter.is_waiting() {
                    let (cause, scope_deadline) = match park::pending_or_deadline() {
                        Err(cause) => (Some(cause), None),
                        Ok(at) => (None, at),
                    };
                    // A timer (`after`, `tick`) is due: nobody wakes us for
                    // it, so leave and try again.
                    let timer = self.timer_due();
                    let now = (deadline.is_some() || timer.is_some()).then(Instant::now);
                    let passed = |at: Option<Instant>| at.zip(now).is_some_and(|(d, n)| n >= d);
                    let timed_out = passed(deadline);
                    let timer_due = passed(timer);
                    if cause.is_some() || timed_out || timer_due {
                        if waiter.abort().is_ok() {
                            cancelled = cause;
                        }
                        break;
                    }
                    park::park_shielded(earliest(earliest(deadline, scope_deadline), timer));
                }
            }
            let selected = waiter.selected();
            // The selected operation was a rendezvous.
            let mut rendezvous = false;
            for (i, op) in self.ops.iter().enumerate() {
                // Registered up to the first that was ready, if any.
                let Some(reg) = regs.take(i) else { break };
                let mine = selected == Some(i);
                let (_, zero) = op
                    .handle
                    .sel_unregister(op.send, reg, i, mine, shared.as_ref());
                rendezvous |= zero && mine;
            }
            // The selected operation's rendezvous packet, if any (its
            // partner's now as well); else the packet, out of every queue,
            // is ours alone again.
            let paired = if rendezvous { shared.take() } else { None };
            if let Some(packet) = shared.take() {
                Packet::recycle(packet);
            }
            if let Some(k) = selected {
                let op = self.ops[k];
                if let Some(packet) = paired {
                    if op.send {
                        // A receiver paired with our send: it waits for the
                        // message, which our caller hands over.
                        lent.disarm();
                        return Some(
                            self.selected(Found::Send(k, SendToken::Paired(packet)), payload),
                        );
                    }
                    // A sender won our receive: its message is coming.
                    let delivered = Packet::wait_delivered(packet);
                    lent.disarm();
                    if delivered {
                        return Some(self.selected(Found::Recv(k, true), payload));
                    }
                    continue; // the pairing was abandoned: start over
                }
                notified = Some(k);
            }
            lent.disarm();
            if let Some(cause) = cancelled {
                Cancelled::raise(cause);
            }
        }
    }

    /// Completes an operation that can proceed now; `None` if none can
    /// (linearizably: there was an instant at which none could).
    pub fn try_wait(&mut self) -> Option<SelectedOperation<'a>> {
        if self.ops.is_empty() {
            return None;
        }
        self.run(None, true)
    }

    /// As [`try_wait`](Select::try_wait), with crossbeam's `Result`.
    ///
    /// # Errors
    ///
    /// [`TrySelectError`] if no operation can proceed now.
    pub fn try_select(&mut self) -> Result<SelectedOperation<'a>, TrySelectError> {
        self.try_wait().ok_or(TrySelectError)
    }

    /// Waits until an operation completes. A cancellation point.
    ///
    /// # Panics
    ///
    /// If no operation was added: that would wait forever.
    #[track_caller]
    #[inline]
    pub fn wait(&mut self) -> SelectedOperation<'a> {
        self.wait_deadline(None).expect("no deadline")
    }

    /// Waits until an operation completes (crossbeam's name for
    /// [`wait`](Select::wait)). A cancellation point.
    ///
    /// # Panics
    ///
    /// If no operation was added: that would wait forever.
    #[track_caller]
    pub fn select(&mut self) -> SelectedOperation<'a> {
        self.wait_deadline(None).expect("no deadline")
    }

    /// Waits at most `timeout`; `None` if nothing completed.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<SelectedOperation<'a>> {
        self.wait_deadline(Instant::now().checked_add(timeout))
    }

    /// As [`wait_timeout`](Select::wait_timeout), with crossbeam's `Result`.
    ///
    /// # Errors
    ///
    /// [`SelectTimeoutError`] if nothing completed in time.
    pub fn select_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<SelectedOperation<'a>, SelectTimeoutError> {
        self.wait_timeout(timeout).ok_or(SelectTimeoutError)
    }

    /// As [`wait_deadline`](Select::wait_deadline), with crossbeam's `Result`.
    ///
    /// # Errors
    ///
    /// [`SelectTimeoutError`] if nothing completed by `deadline`.
    pub fn select_deadline(
        &mut self,
        deadline: Instant,
    ) -> Result<SelectedOperation<'a>, SelectTimeoutError> {
        self.wait_deadline(Some(deadline)).ok_or(SelectTimeoutError)
    }

    /// Waits until `deadline` at the latest (`None`: no deadline).
    ///
    /// # Panics
    ///
    /// If no operation was added and there is no deadline.
    #[track_caller]
    pub fn wait_deadline(&mut self, deadline: Option<Instant>) -> Option<SelectedOperation<'a>> {
        assert!(
            !self.ops.is_empty() || deadline.is_some(),
            "Select::wait with no operations would wait forever; add a send or recv first"
        );
        if self.ops.is_empty() {
            if let Some(deadline) = deadline {
                crate::sleep_until(deadline);
            }
            return None;
        }
        self.run(deadline, false)
    }

    /// The ready-wait behind [`ready`](Select::ready) and its variants.
    fn ready_run(&mut self, deadline: Option<Instant>, now: bool) -> Option<usize> {
        loop {
            let ready = |s: &Self| {
                s.in_order(|i| s.ops[i].handle.sel_ready(s.ops[i].send, None).then_some(i))
            };
            if let Some(i) = ready(self) {
                return Some(i);
            }
            if now || deadline.is_some_and(|d| Instant::now() >= d) {
                loop {
                    let before = self.versions();
                    if let Some(i) = ready(self) {
                        return Some(i);
                    }
                    if self.versions() == before {
                        return None;
                    }
                }
            }
            let waiter = Waiter::own();
            let regs: Vec<Registration<'a>> = self
                .ops
                .iter()
                .enumerate()
                .map(|(i, op)| Registration::for_op(op.handle.sel_watch(op.send), &waiter, i))
                .collect();
            if ready(self).is_none() {
                // A cancellation point: the registrations clean up. A timer
                // wakes nobody: park no later than it is due.
                park::park(earliest(deadline, self.timer_due()));
            }
            // Readiness uses no notification: pass each on.
            for (op, reg) in self.ops.iter().zip(regs) {
                if reg.leave() {
                    op.handle.sel_watch(op.send).notify_one();
                }
            }
        }
    }

    /// Waits until an operation is ready, without performing it; returns
    /// its index. Another thread may take the message (or the room) before
    /// the caller acts on it. A cancellation point.
    ///
    /// # Panics
    ///
    /// If no operation was added.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::sync::{unbounded, Select};
    ///
    /// let (tx, rx) = unbounded::<u8>();
    /// tx.send(1).unwrap();
    /// let mut sel = Select::new();
    /// let i = sel.recv(&rx);
    /// assert_eq!(sel.ready(), i);
    /// assert_eq!(rx.try_recv(), Ok(1)); // still there: `ready` took nothing
    /// ```
    #[track_caller]
    pub fn ready(&mut self) -> usize {
        assert!(
            !self.ops.is_empty(),
            "Select::ready with no operations would wait forever; add a send or recv first"
        );
        self.ready_run(None, false).expect("no deadline")
    }

    /// The index of an operation ready now, without performing it.
    ///
    /// # Errors
    ///
    /// [`TryReadyError`] if none is (linearizably, as `try_select`).
    pub fn try_ready(&mut self) -> Result<usize, TryReadyError> {
        if self.ops.is_empty() {
            return Err(TryReadyError);
        }
        self.ready_run(None, true).ok_or(TryReadyError)
    }

    /// Waits at most `timeout` for an operation to be ready.
    ///
    /// # Errors
    ///
    /// [`ReadyTimeoutError`] if none was in time.
    pub fn ready_timeout(&mut self, timeout: Duration) -> Result<usize, ReadyTimeoutError> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.ready_deadline(deadline),
            None => Ok(self.ready()),
        }
    }

    /// Waits until `deadline` at the latest for an operation to be ready.
    ///
    /// # Errors
    ///
    /// [`ReadyTimeoutError`] if none was in time.
    pub fn ready_deadline(&mut self, deadline: Instant) -> Result<usize, ReadyTimeoutError> {
        if self.ops.is_empty() {
            crate::sleep_until(deadline);
            return Err(ReadyTimeoutError);
        }
        self.ready_run(Some(deadline), false)
            .ok_or(ReadyTimeoutError)
    }
}

impl fmt::Debug for Select<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Select")
            .field("operations", &self.ops.len())
            .field("biased", &self.biased)
            .finish()
    }
}

impl SelectedOperation<'_> {
    /// The channel's address (as `SelectHandle::addr`, without the call).
    fn chan(&self) -> *const () {
        ptr::from_ref(self.handle).cast()
    }

    /// The index of the selected operation, as returned when it was added.
    #[inline]
    pub fn index(&self) -> usize {
        self.index
    }

    /// Completes the selected receive on `rx`: its message, or
    /// [`RecvError`] if the channel was empty and disconnected.
    ///
    /// # Errors
    ///
    /// [`RecvError`] for a disconnected channel.
    ///
    /// # Panics
    ///
    /// If the selected operation was not a receive on `rx`.
    #[track_caller]
    pub fn recv<T>(mut self, rx: &Receiver<T>) -> Result<T, RecvError> {
        assert!(
            ptr::eq(self.chan(), ptr::from_ref(&*rx.chan).cast()),
            "SelectedOperation::recv called with another channel than the selected operation's; \
             pass the receiver that was added at `index()`"
        );
        assert!(
            !self.send,
            "SelectedOperation::recv called on a send operation; complete it with `send`"
        );
        self.completed = true;
        if !self.received {
            return Err(RecvError);
        }
        self.received = false;
        // SAFETY: the channel is `rx`'s, so the message in `payload` is a
        // `T`; read out once (`received` is cleared).
        Ok(unsafe { self.payload.ptr().cast::<T>().read() })
    }

    /// Completes the selected send on `tx` with `msg`, built only now.
    ///
    /// It never waits. On a bounded channel, the room was reserved when
    /// the send was selected (plain senders see it as taken), so the
    /// message goes in at once; dropping the `SelectedOperation` instead
    /// gives the room back. On an unbounded channel the message goes in at
    /// once, and on a rendezvous the paired receiver gets it at once.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the message if every receiver is gone.
    ///
    /// # Panics
    ///
    /// If the selected operation was not a send on `tx`.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::sync::{channel, Select};
    ///
    /// let (tx, rx) = channel::<String>(1);
    /// let mut sel = Select::new();
    /// let i = sel.send(&tx);
    /// let op = sel.select();
    /// assert_eq!(op.index(), i);
    /// op.send(&tx, "built only now".to_string()).unwrap();
    /// assert_eq!(rx.recv().unwrap(), "built only now");
    /// ```
    #[track_caller]
    pub fn send<T>(mut self, tx: &Sender<T>, msg: T) -> Result<(), SendError<T>> {
        assert!(
            ptr::eq(self.chan(), ptr::from_ref(&*tx.chan).cast()),
            "SelectedOperation::send called with another channel than the selected operation's; \
             pass the sender that was added at `index()`"
        );
        assert!(
            self.send,
            "SelectedOperation::send called on a receive operation; complete it with `recv`"
        );
        self.completed = true;
        let back = match self.token.take().expect("a send's token") {
            SendToken::Paired(packet) => {
                // SAFETY: the packet is claimed by this send, its room is
                // for a `T` (the channel is `tx`'s); `msg` moves, forgotten.
                unsafe { packet.complete(&raw const msg) };
                Packet::recycle(packet);
                Ok(None)
            }
            // SAFETY: `msg` is ours, forgotten at once (as in `Sender::send`);
            // the select reserved room for it, which this uses up.
            SendToken::Room => match unsafe { tx.chan.send_selected(&raw const msg) } {
                Try::Done => Ok(None),
                // SAFETY: as above; the channel is disconnected, and the
                // send gives the message back at once.
                _ => unsafe { tx.send_or_spill(&raw const msg, Some(Instant::now())) },
            },
            // SAFETY: as above; the channel is disconnected.
            SendToken::Disconnected => unsafe {
                tx.send_or_spill(&raw const msg, Some(Instant::now()))
            },
        };
        std::mem::forget(msg);
        match back.unwrap_or_else(|payload| std::panic::resume_unwind(payload)) {
            None => Ok(()),
            Some((back, _)) => send_error(back),
        }
    }
}

impl Drop for SelectedOperation<'_> {
    fn drop(&mut self) {
        if self.received {
            // SAFETY: `received`: `payload` holds a message of the
            // channel's, not moved out.
            unsafe { (self.handle.msg_drop())(self.payload.ptr()) };
        }
        match self.token.take() {
            Some(SendToken::Paired(packet)) => {
                packet.abandon(); // the receiver waits again
                Packet::recycle(packet);
            }
            Some(SendToken::Room) => self.handle.sel_release(), // room for another sender
            _ => {}
        }
        if !self.completed && !crate::runtime::worker::context_unwinding() {
            panic!(
                "a SelectedOperation (index {}) was dropped without completing its operation; \
                 call `recv` or `send` on it with the channel it selected",
                self.index
            );
        }
    }
}

/// The order in which `select!` tries its operations before it builds a
/// `Select`; not public API.
#[doc(hidden)]
pub struct SelectOrder {
    order: [u8; FAST_OPS],
    len: usize,
}

/// Operations `select!` tries in its first pass; with more, it goes
/// straight to a `Select`.
const FAST_OPS: usize = 16;

impl SelectOrder {
    #[doc(hidden)]
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.order[..self.len]
    }
}

/// A random order of `n` operations (in order if `biased`), for
/// `select!`'s first pass; empty (no first pass) beyond `FAST_OPS`. Not
/// public API.
#[doc(hidden)]
#[inline]
pub fn __select_order(n: usize, biased: bool) -> SelectOrder {
    let mut order = [0u8; FAST_OPS];
    if n > FAST_OPS {
        return SelectOrder { order, len: 0 };
    }
    // `n` is at most `FAST_OPS`: an index fits in a byte.
    arrange(&mut order[..n], biased, |k| k as u8);
    SelectOrder { order, len: n }
}

/// Where `select!` keeps the operation that completed; not public API.
///
/// A small message received in `select!`'s first pass stays inline here,
/// with the channel it came from (which, borrowed for `'a`, proves its
/// type when it is taken out); anything else is held as the
/// [`SelectedOperation`] a [`Select`] gives.
#[doc(hidden)]
pub struct SelectSlot<'a> {
    inline: Inline,
    /// The channel whose receive completed inline; null if none did, or
    /// once its result was taken.
    chan: *const (),
    /// The inline receive got a message (else: disconnected).
    received: bool,
    drop_msg: unsafe fn(*mut u8),
    /// The operation that completed; `usize::MAX` while none has.
    index: usize,
    op: Option<SelectedOperation<'a>>,
    _channels: PhantomData<&'a ()>,
}

impl Default for SelectSlot<'_> {
    #[inline]
    fn default() -> Self {
        SelectSlot {
            inline: Inline([MaybeUninit::uninit(); 32]),
            chan: ptr::null(),
            received: false,
            drop_msg: drop_nothing,
            index: usize::MAX,
            op: None,
            _channels: PhantomData,
        }
    }
}

impl<'a> SelectSlot<'a> {
    /// The operation that completed, or `usize::MAX`.
    #[doc(hidden)]
    #[inline]
    pub fn index(&self) -> usize {
        self.index
    }

    /// Holds what a `Select` completed, if anything.
    #[doc(hidden)]
    #[inline]
    pub fn set(&mut self, op: Option<SelectedOperation<'a>>) {
        if let Some(o) = &op {
            self.index = o.index();
        }
        self.op = op;
    }

    /// The selected send, to complete with its message (handed straight to
    /// it, so a large message is not copied through another frame).
    #[doc(hidden)]
    #[track_caller]
    #[inline]
    pub fn take_op(&mut self) -> SelectedOperation<'a> {
        self.op
            .take()
            .expect("select!: a send completed without its operation")
    }
}

impl Drop for SelectSlot<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.chan.is_null() && self.received {
            // SAFETY: a message of the channel `chan` was received inline
            // and not taken out; `drop_msg` is that channel's.
            unsafe { (self.drop_msg)(self.inline.0.as_mut_ptr().cast()) };
        }
    }
}

impl<T> Receiver<T> {
    /// `select!`'s first pass: this receive, as operation `index`, if it
    /// can complete now (a message, or disconnected), as `Select` would
    /// select it; not public API.
    #[doc(hidden)]
    pub fn __select_try<'a>(&'a self, index: usize, slot: &mut SelectSlot<'a>) {
        let layout = Layout::new::<T>();
        let handle: &dyn SelectHandle = &*self.chan;
        if layout.size() > size_of::<Inline>() || layout.align() > align_of::<Inline>() {
            slot.set(self.select_try_large(index));
            return;
        }
        debug_assert!(slot.chan.is_null(), "select!: a second operation completed");
        // SAFETY: the inline room fits a `T` (checked above), this
        // channel's message.
        let received = match unsafe { handle.sel_try_recv(slot.inline.0.as_mut_ptr().cast()) } {
            Try::Done => true,
            Try::Disconnected => false,
            Try::NotReady => return,
        };
        slot.chan = ptr::from_ref(handle).cast();
        slot.received = received;
        slot.drop_msg = handle.msg_drop();
        slot.index = index;
    }

    /// As `__select_try`, for a message too large for the slot: it goes
    /// through a `SelectedOperation`'s heap payload.
    fn select_try_large(&self, index: usize) -> Option<SelectedOperation<'_>> {
        let handle: &dyn SelectHandle = &*self.chan;
        if !handle.sel_ready(false, None) {
            return None; // no room to allocate for nothing
        }
        let mut payload = Payload::new(Layout::new::<T>());
        // SAFETY: `payload` has room for a `T`, this channel's message.
        let received = match unsafe { handle.sel_try_recv(payload.ptr()) } {
            Try::Done => true,
            Try::Disconnected => false,
            Try::NotReady => return None,
        };
        Some(SelectedOperation {
            index,
            handle,
            send: false,
            received,
            token: None,
            payload,
            completed: false,
            _channels: PhantomData,
        })
    }

    /// The result of this receive, which completed into `slot`; not
    /// public API.
    #[doc(hidden)]
    #[track_caller]
    pub fn __select_take(&self, slot: &mut SelectSlot<'_>) -> Result<T, RecvError> {
        // Each path in a function of its own: a debug build's frame holds
        // room for every local of every branch, and a large message must
        // not sit there twice.
        match slot.op.take() {
            Some(op) => op.recv(self),
            None => self.select_take_inline(slot),
        }
    }

    #[track_caller]
    fn select_take_inline(&self, slot: &mut SelectSlot<'_>) -> Result<T, RecvError> {
        assert!(
            ptr::eq(slot.chan, ptr::from_ref(&*self.chan).cast()),
            "select!: a receive taken from another channel than the one that completed"
        );
        slot.chan = ptr::null();
        if slot.received {
            // SAFETY: this channel (the same one: a channel is borrowed for
            // the slot's lifetime, so no other can take its address) wrote
            // a `T` there, taken out once (`chan` is cleared).
            Ok(unsafe { slot.inline.0.as_ptr().cast::<T>().read() })
        } else {
            Err(RecvError)
        }
    }
}

impl<T> Receiver<T> {
    /// `select!` with this receive as its only operation and no `default`:
    /// a plain receive, which is what such a select does (it waits, as a
    /// cancellation point, for a message or the disconnection, and pairs
    /// with a plain or selected send on a rendezvous); not public API.
    #[doc(hidden)]
    #[inline]
    pub fn __select_recv_one(&self) -> Result<T, RecvError> {
        self.recv()
    }
}

impl<T> Sender<T> {
    /// `select!` with this send as its only operation and no `default`:
    /// waits until the send can proceed, without its message, and gives
    /// the operation to complete with it, as a `Select` with this one
    /// send would; not public API. On a rendezvous it needs no `Select`:
    /// it pairs with a receiver, or waits for one to pair with it, under
    /// the channel's lock alone (see `Zero::send_lazy`).
    #[doc(hidden)]
    #[track_caller]
    pub fn __select_send_one(&self) -> SelectedOperation<'_> {
        match self.chan.send_lazy() {
            Some(token) => self.selected_send(0, token),
            None => {
                let mut sel = Select::new();
                sel.send(self);
                sel.select()
            }
        }
    }

    /// `select!`'s first pass: this send, as operation `index`, if it can
    /// complete now (room reserved, a partner paired, or disconnected), as
    /// `Select` would select it; not public API.
    #[doc(hidden)]
    pub fn __select_try<'a>(&'a self, index: usize, slot: &mut SelectSlot<'a>) {
        let handle: &dyn SelectHandle = &*self.chan;
        let Some(token) = handle.sel_try_send() else {
            return;
        };
        slot.set(Some(self.selected_send(index, token)));
    }

    /// This send as operation `index`, selected with `token`: its message
    /// is still to come (`SelectedOperation::send`).
    #[inline]
    fn selected_send(&self, index: usize, token: SendToken) -> SelectedOperation<'_> {
        let handle: &dyn SelectHandle = &*self.chan;
        SelectedOperation {
            index,
            handle,
            send: true,
            received: false,
            token: Some(token),
            payload: Payload::new(Layout::new::<()>()),
            completed: false,
            _channels: PhantomData,
        }
    }
}

impl fmt::Debug for SelectedOperation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectedOperation")
            .field("index", &self.index)
            .finish()
    }
}

/// Waits on several channel operations and runs the arm of the one that
/// completes, like Go's `select` and crossbeam-channel's `select!`.
///
/// ```text
/// select! {
///     recv(rx) -> msg => body,          // msg: Result<T, RecvError>
///     send(tx, value) -> res => body,   // res: Result<(), SendError<T>>
///     default => body,                  // optional: don't wait at all
///     default(duration) => body,        // optional, instead: wait at most this long
/// }
/// ```
///
/// Bodies are expressions followed by a comma (optional after the last
/// arm), or blocks, with or without a comma. Each channel expression (a
/// `Receiver`, a `Sender`, or a reference to one) is evaluated once, in
/// order, before waiting; a send's `value` is evaluated only if its arm is
/// selected. When several operations are ready, one is chosen uniformly at
/// random; [`select_biased!`](crate::select_biased) prefers the first. A
/// `default` arm runs only if there was an instant at which no operation
/// could proceed. See [`Select`](crate::sync::Select) for the protocol.
///
/// # Panics
///
/// Without a `default` arm and without operations, it would wait forever,
/// and panics instead.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stackful::sync::channel;
///
/// let (tx, rx) = channel::<i32>(1);
/// let (_quit_tx, quit) = channel::<()>(1);
/// tx.send(5).unwrap();
/// let got = stackful::select! {
///     recv(rx) -> msg => msg.unwrap(),
///     recv(quit) -> _ => { -1 },
///     default(Duration::from_secs(1)) => 0,
/// };
/// assert_eq!(got, 5);
/// ```
#[macro_export]
macro_rules! select {
    ($($tokens:tt)*) => {
        $crate::__select_parse!((fair) [] () $($tokens)*)
    };
}

/// As [`select!`](crate::select), but when several operations are ready
/// the first arm among them wins (crossbeam-channel's `select_biased!`),
/// for priority loops.
///
/// # Examples
///
/// ```
/// use stackful::sync::unbounded;
///
/// let (hi_tx, hi) = unbounded::<&str>();
/// let (lo_tx, lo) = unbounded::<&str>();
/// lo_tx.send("low").unwrap();
/// hi_tx.send("high").unwrap();
/// let first = stackful::select_biased! {
///     recv(hi) -> m => m.unwrap(),
///     recv(lo) -> m => m.unwrap(),
/// };
/// assert_eq!(first, "high");
/// ```
#[macro_export]
macro_rules! select_biased {
    ($($tokens:tt)*) => {
        $crate::__select_parse!((biased) [] () $($tokens)*)
    };
}

/// Parses `select!` arms into a list; not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_parse {
    // recv
    ($b:tt [$($arms:tt)*] $d:tt recv($rx:expr $(,)?) -> $res:pat => $body:block, $($rest:tt)*) => {
        $crate::__select_parse!($b [$($arms)* (recv ($rx) ($res) ($body))] $d $($rest)*)
    };
    ($b:tt [$($arms:tt)*] $d:tt recv($rx:expr $(,)?) -> $res:pat => $body:expr, $($rest:tt)*) => {
        $crate::__select_parse!($b [$($arms)* (recv ($rx) ($res) ($body))] $d $($rest)*)
    };
    ($b:tt [$($arms:tt)*] $d:tt recv($rx:expr $(,)?) -> $res:pat => $body:block $($rest:tt)*) => {
        $crate::__select_parse!($b [$($arms)* (recv ($rx) ($res) ($body))] $d $($rest)*)
    };
    ($b:tt [$($arms:tt)*] $d:tt recv($rx:expr $(,)?) -> $res:pat => $body:expr) => {
        $crate::__select_parse!($b [$($arms)* (recv ($rx) ($res) ($body))] $d)
    };
    // send
    ($b:tt [$($arms:tt)*] $d:tt send($tx:expr, $v:expr $(,)?) -> $res:pat => $body:block, $($rest:tt)*) => {
        $crate::__select_parse!($b [$($arms)* (send ($tx) ($v) ($res) ($body))] $d $($rest)*)
    };
    ($b:tt [$($arms:tt)*] $d:tt send($tx:expr, $v:expr $(,)?) -> $res:pat => $body:expr, $($rest:tt)*) => {
        $crate::__select_parse!($b [$($arms)* (send ($tx) ($v) ($res) ($body))] $d $($rest)*)
    };
    ($b:tt [$($arms:tt)*] $d:tt send($tx:expr, $v:expr $(,)?) -> $res:pat => $body:block $($rest:tt)*) => {
        $crate::__select_parse!($b [$($arms)* (send ($tx) ($v) ($res) ($body))] $d $($rest)*)
    };
    ($b:tt [$($arms:tt)*] $d:tt send($tx:expr, $v:expr $(,)?) -> $res:pat => $body:expr) => {
        $crate::__select_parse!($b [$($arms)* (send ($tx) ($v) ($res) ($body))] $d)
    };
    // default, at most one
    ($b:tt $arms:tt () default => $body:block, $($rest:tt)*) => {
        $crate::__select_parse!($b $arms (now ($body)) $($rest)*)
    };
    ($b:tt $arms:tt () default => $body:expr, $($rest:tt)*) => {
        $crate::__select_parse!($b $arms (now ($body)) $($rest)*)
    };
    ($b:tt $arms:tt () default => $body:block $($rest:tt)*) => {
        $crate::__select_parse!($b $arms (now ($body)) $($rest)*)
    };
    ($b:tt $arms:tt () default => $body:expr) => {
        $crate::__select_parse!($b $arms (now ($body)))
    };
    ($b:tt $arms:tt () default($t:expr $(,)?) => $body:block, $($rest:tt)*) => {
        $crate::__select_parse!($b $arms (timeout ($t) ($body)) $($rest)*)
    };
    ($b:tt $arms:tt () default($t:expr $(,)?) => $body:expr, $($rest:tt)*) => {
        $crate::__select_parse!($b $arms (timeout ($t) ($body)) $($rest)*)
    };
    ($b:tt $arms:tt () default($t:expr $(,)?) => $body:block $($rest:tt)*) => {
        $crate::__select_parse!($b $arms (timeout ($t) ($body)) $($rest)*)
    };
    ($b:tt $arms:tt () default($t:expr $(,)?) => $body:expr) => {
        $crate::__select_parse!($b $arms (timeout ($t) ($body)))
    };
    ($b:tt $arms:tt ($($d:tt)+) default $($rest:tt)*) => {
        ::core::compile_error!("select! takes at most one `default` arm")
    };
    // done
    ($b:tt [$($arms:tt)*] $d:tt) => {
        $crate::__select_bind!($b $d [] $($arms)*)
    };
    ($b:tt $arms:tt $d:tt $($rest:tt)+) => {
        ::core::compile_error!(::core::concat!(
            "select!: expected `recv(r) -> v => body`, `send(s, m) -> r => body`, ",
            "`default => body` or `default(timeout) => body`, found: ",
            ::core::stringify!($($rest)+)
        ))
    };
}

/// Evaluates each channel expression once, binding a reference; not
/// public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_bind {
    ($b:tt $d:tt [$($bound:tt)*] (recv ($rx:expr) ($res:pat) ($body:expr)) $($rest:tt)*) => {
        match $rx {
            ref __chan => {
                let __chan: &$crate::sync::Receiver<_> = __chan;
                $crate::__select_bind!($b $d [$($bound)* (recv __chan ($res) ($body))] $($rest)*)
            }
        }
    };
    ($b:tt $d:tt [$($bound:tt)*] (send ($tx:expr) ($v:expr) ($res:pat) ($body:expr)) $($rest:tt)*) => {
        match $tx {
            ref __chan => {
                let __chan: &$crate::sync::Sender<_> = __chan;
                $crate::__select_bind!($b $d [$($bound)* (send __chan ($v) ($res) ($body))] $($rest)*)
            }
        }
    };
    ($b:tt $d:tt [$($bound:tt)*]) => {
        $crate::__select_run!($b $d $($bound)*)
    };
}

/// Numbers the bound arms, then runs them; not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_run {
    ($b:tt $d:tt $($arm:tt)*) => {
        $crate::__select_number!($b $d [] [
            0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
            32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59
            60 61 62 63
        ] $($arm)*)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_number {
    ($b:tt $d:tt [$($done:tt)*] [$i:tt $($is:tt)*] ($($arm:tt)*) $($rest:tt)*) => {
        $crate::__select_number!($b $d [$($done)* ($i $($arm)*)] [$($is)*] $($rest)*)
    };
    ($b:tt $d:tt [$($done:tt)*] $is:tt) => {
        $crate::__select_go!($b $d $($done)*)
    };
    ($b:tt $d:tt $done:tt [] $($rest:tt)+) => {
        ::core::compile_error!("select! takes at most 64 operations; use `Select` for more")
    };
}

/// Tries the operations, then waits if none could proceed, then runs the
/// arm of the one that completed; not public API.
///
/// The try comes first, straight on the channels (in a random order, or in
/// order if biased), with no `Select` built: the operation that can proceed
/// completes into the `SelectSlot` (a small message inline, else as the
/// `SelectedOperation` a `Select` would have returned). Only if none can is
/// a `Select` built, which waits (or, with `default`, makes sure that
/// nothing was ready at some instant).
#[doc(hidden)]
#[macro_export]
macro_rules! __select_go {
    // One operation and no `default`: what it does without a `Select`.
    ($b:tt () ($i:tt recv $c:ident ($res:pat) ($body:expr))) => {{
        let $res = $c.__select_recv_one();
        $body
    }};
    ($b:tt () ($i:tt send $c:ident ($v:expr) ($res:pat) ($body:expr))) => {{
        let __op = $c.__select_send_one();
        let $res = __op.send($c, $v);
        $body
    }};
    ($b:tt $d:tt $($arm:tt)*) => {{
        let mut __slot = $crate::sync::SelectSlot::default();
        let __order = $crate::sync::__select_order(
            0usize $( + $crate::__select_one!($arm) )*,
            $crate::__select_biased!($b),
        );
        for &__i in __order.as_slice() {
            $( $crate::__select_try!(__slot __i $arm); )*
            if __slot.index() != usize::MAX {
                break;
            }
        }
        if __slot.index() == usize::MAX {
            let mut __select = $crate::__select_new!($b);
            $( $crate::__select_register!(__select $arm); )*
            if !__order.as_slice().is_empty() {
                __select.__tried();
            }
            let __op = $crate::__select_wait!(__select $d);
            ::core::mem::drop(__select);
            __slot.set(__op);
        }
        let __hit = __slot.index();
        $crate::__select_dispatch!(__slot __hit $d $($arm)*)
    }};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_one {
    ($arm:tt) => {
        1usize
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_biased {
    ((fair)) => {
        false
    };
    ((biased)) => {
        true
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_try {
    ($slot:ident $k:ident ($i:tt $kind:ident $c:ident $($x:tt)*)) => {
        if $k == $i && $slot.index() == usize::MAX {
            $c.__select_try($i, &mut $slot);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_new {
    ((fair)) => {
        $crate::sync::Select::new()
    };
    ((biased)) => {
        $crate::sync::Select::new_biased()
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_register {
    ($sel:ident ($i:tt recv $c:ident $($x:tt)*)) => {
        $sel.recv($c);
    };
    ($sel:ident ($i:tt send $c:ident $($x:tt)*)) => {
        $sel.send($c);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_wait {
    ($sel:ident ()) => {
        ::core::option::Option::Some($sel.select())
    };
    ($sel:ident (now ($body:expr))) => {
        $sel.try_wait()
    };
    ($sel:ident (timeout ($timeout:expr) ($body:expr))) => {
        $sel.wait_timeout($timeout)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_dispatch {
    ($op:ident $hit:ident ()) => {
        ::core::unreachable!("select! completed an operation it did not register")
    };
    ($op:ident $hit:ident (now ($body:expr))) => {
        $body
    };
    ($op:ident $hit:ident (timeout ($t:expr) ($body:expr))) => {
        $body
    };
    ($op:ident $hit:ident $d:tt ($i:tt recv $c:ident ($res:pat) ($body:expr)) $($rest:tt)*) => {
        if $hit == $i {
            let $res = $c.__select_take(&mut $op);
            $body
        } else {
            $crate::__select_dispatch!($op $hit $d $($rest)*)
        }
    };
    ($op:ident $hit:ident $d:tt ($i:tt send $c:ident ($v:expr) ($res:pat) ($body:expr)) $($rest:tt)*) => {
        if $hit == $i {
            let $res = $op.take_op().send($c, $v);
            $body
        } else {
            $crate::__select_dispatch!($op $hit $d $($rest)*)
        }
    };
}

#[cfg(test)]
mod tests {
    //! `select!` with one operation and no `default` takes a path of its
    //! own (`__select_recv_one`, `__select_send_one`): its semantics are a
    //! `Select`'s with that one operation.

    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::time::Duration;

    use crate::sync::{Select, channel};

    /// How the receiving side takes each message.
    #[derive(Clone, Copy, Debug)]
    enum Taker {
        Plain,
        OneArm,
        TwoArms,
        Api,
    }

    /// A one-arm select's send on a rendezvous builds its message only
    /// once a receiver has paired with it: each message is the count the
    /// receiver set just before it asked, whichever way it asks, on green
    /// threads and on OS threads. (Built eagerly, the sender's message
    /// would miss the receiver's last increment.)
    #[test]
    fn one_arm_send_builds_its_message_once_paired() {
        for taker in [Taker::Plain, Taker::OneArm, Taker::TwoArms, Taker::Api] {
            for green in [true, false] {
                let body = move || {
                    let (tx, rx) = channel::<u32>(0);
                    let (_other_tx, other_rx) = channel::<u32>(0);
                    let asked = Arc::new(AtomicU32::new(0));
                    let asked2 = asked.clone();
                    let receive = move || {
                        for i in 1..=200u32 {
                            asked2.store(i, Ordering::SeqCst);
                            let v = match taker {
                                Taker::Plain => rx.recv().unwrap(),
                                Taker::OneArm => crate::select! { recv(rx) -> v => v.unwrap() },
                                Taker::TwoArms => crate::select! {
                                    recv(rx) -> v => v.unwrap(),
                                    recv(other_rx) -> _ => unreachable!(),
                                },
                                Taker::Api => {
                                    let mut sel = Select::new();
                                    sel.recv(&rx);
                                    sel.select().recv(&rx).unwrap()
                                }
                            };
                            assert_eq!(v, i, "{taker:?}: a message built before the pairing");
                        }
                    };
                    let join: Box<dyn FnOnce()> = if green {
                        let h = crate::spawn(receive);
                        Box::new(move || h.join().unwrap())
                    } else {
                        let h = std::thread::spawn(receive);
                        Box::new(move || h.join().unwrap())
                    };
                    for _ in 0..200 {
                        crate::select! { send(tx, asked.load(Ordering::SeqCst)) -> r => r.unwrap() }
                    }
                    join();
                };
                crate::run(body);
            }
        }
        // The sending select on an OS thread of its own, the receiving one
        // on a green thread.
        let (tx, rx) = channel::<u32>(0);
        let asked = Arc::new(AtomicU32::new(0));
        let asked2 = asked.clone();
        let sender = std::thread::spawn(move || {
            for _ in 0..200 {
                crate::select! { send(tx, asked2.load(Ordering::SeqCst)) -> r => r.unwrap() }
            }
        });
        crate::run(move || {
            for i in 1..=200u32 {
                asked.store(i, Ordering::SeqCst);
                let v = crate::select! { recv(rx) -> v => v.unwrap() };
                assert_eq!(v, i, "a message built before the pairing");
            }
        });
        sender.join().unwrap();
    }

    /// Cancelled while it waits for a receiver, a one-arm select's send
    /// builds nothing and leaves nothing queued: no receive finds a sender
    /// afterwards, and the next send is the one received.
    #[test]
    fn one_arm_send_cancelled_while_waiting_leaves_nothing() {
        crate::run(|| {
            let (tx, rx) = channel::<u32>(0);
            let built = AtomicBool::new(false);
            let r = crate::timeout(Duration::from_millis(20), || {
                crate::select! {
                    send(tx, { built.store(true, Ordering::SeqCst); 1 }) -> r => r.unwrap(),
                }
            });
            assert!(r.is_err(), "nothing received, yet the send completed");
            assert!(
                !built.load(Ordering::SeqCst),
                "a message built for a send that never happened"
            );
            {
                let mut sel = Select::new();
                sel.recv(&rx);
                assert!(
                    sel.try_ready().is_err(),
                    "the cancelled send is still queued"
                );
            }
            let h = crate::spawn(move || rx.recv().unwrap());
            crate::select! { send(tx, 2) -> r => r.unwrap() }
            assert_eq!(h.join().unwrap(), 2);
        });
    }

    /// Polls `f` (yielding between looks) until it gives `Some`; fails
    /// after a generous 20 s.
    fn poll<R>(what: &str, mut f: impl FnMut() -> Option<R>) -> R {
        let start = std::time::Instant::now();
        loop {
            if let Some(r) = f() {
                return r;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{what}: never seen"
            );
            crate::yield_now();
        }
    }

    /// A rendezvous's tries (which skip the lock when nobody can be
    /// waiting on the other side) see every kind of waiting partner, also
    /// after a try found none: a plain send or receive, a select's, and a
    /// one-arm select's send.
    #[test]
    fn rendezvous_tries_see_partners_queued_after_an_empty_look() {
        use crate::sync::{TryRecvError, TrySendError};
        crate::run(|| {
            let (tx, rx) = channel::<u32>(0);
            let (_idle_tx, idle_rx) = channel::<u32>(0);
            let (tx, rx, idle_rx) = (Arc::new(tx), Arc::new(rx), Arc::new(idle_rx));
            for round in 0..3u32 {
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
                assert_eq!(tx.try_send(0), Err(TrySendError::Full(0)));
                // Senders of every kind, each met by a receiving try.
                let t = tx.clone();
                let h = crate::spawn(move || t.send(round).unwrap());
                assert_eq!(poll("a plain send", || rx.try_recv().ok()), round);
                h.join().unwrap();
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
                let (t, i) = (tx.clone(), idle_rx.clone());
                let h = crate::spawn(move || {
                    crate::select! {
                        send(t, round + 10) -> r => r.unwrap(),
                        recv(i) -> _ => unreachable!(),
                    }
                });
                assert_eq!(poll("a select's send", || rx.try_recv().ok()), round + 10);
                h.join().unwrap();
                let t = tx.clone();
                let h =
                    crate::spawn(move || crate::select! { send(t, round + 20) -> r => r.unwrap() });
                assert_eq!(poll("a one-arm send", || rx.try_recv().ok()), round + 20);
                h.join().unwrap();
                // Receivers of both kinds, each met by a sending try.
                assert_eq!(tx.try_send(0), Err(TrySendError::Full(0)));
                let r = rx.clone();
                let h = crate::spawn(move || r.recv().unwrap());
                poll("a plain receive", || tx.try_send(round + 30).ok());
                assert_eq!(h.join().unwrap(), round + 30);
                let (r, i) = (rx.clone(), idle_rx.clone());
                let h = crate::spawn(move || {
                    crate::select! {
                        recv(r) -> v => v.unwrap(),
                        recv(i) -> _ => unreachable!(),
                    }
                });
                poll("a select's receive", || tx.try_send(round + 40).ok());
                assert_eq!(h.join().unwrap(), round + 40);
            }
        });
    }

    /// Waits (yielding) until `queued` gives `want`; fails after 20 s.
    fn until_queued(what: &str, want: (usize, usize), queued: impl Fn() -> (usize, usize)) {
        poll(what, || (queued() == want).then_some(()));
    }

    /// A waiting select's rendezvous operations share one packet, with an
    /// entry per operation in each queue: whichever operation a partner
    /// wins, plain or selected, sending or receiving, and also with two
    /// operations on one channel, the select leaves no entry behind in
    /// any queue, and the next exchanges on every channel work.
    #[test]
    fn a_select_leaves_no_rendezvous_entry_behind() {
        crate::run(|| {
            let (a_tx, a_rx) = channel::<u32>(0);
            let (b_tx, b_rx) = channel::<u32>(0);
            let (a_tx, a_rx) = (Arc::new(a_tx), Arc::new(a_rx));
            let (b_tx, b_rx) = (Arc::new(b_tx), Arc::new(b_rx));
            let empty = |what: &str| {
                assert_eq!(a_rx.chan.rendezvous_queued(), (0, 0), "{what}: left on a");
                assert_eq!(b_rx.chan.rendezvous_queued(), (0, 0), "{what}: left on b");
            };
            for round in 0..3u32 {
                // A send and a receive; a plain receiver wins the send.
                let (t, r) = (a_tx.clone(), b_rx.clone());
                let h = crate::spawn(move || {
                    crate::select! {
                        send(t, round) -> s => { s.unwrap(); 0 },
                        recv(r) -> v => v.unwrap() + 100,
                    }
                });
                until_queued("send and receive", (1, 0), || a_rx.chan.rendezvous_queued());
                assert_eq!(a_rx.recv().unwrap(), round);
                assert_eq!(h.join().unwrap(), 0);
                empty("a send won by a plain receive");

                // The same select; a plain sender wins the receive.
                let (t, r) = (a_tx.clone(), b_rx.clone());
                let h = crate::spawn(move || {
                    crate::select! {
                        send(t, round) -> s => { s.unwrap(); 0 },
                        recv(r) -> v => v.unwrap() + 100,
                    }
                });
                until_queued("send and receive", (0, 1), || b_rx.chan.rendezvous_queued());
                b_tx.send(round).unwrap();
                assert_eq!(h.join().unwrap(), round + 100);
                empty("a receive won by a plain send");

                // Two receives on one channel, and one on another; a
                // selected send wins one of the first two.
                let (r1, r2) = (a_rx.clone(), b_rx.clone());
                let h = crate::spawn(move || {
                    crate::select! {
                        recv(r1) -> v => v.unwrap(),
                        recv(r1) -> v => v.unwrap() + 10,
                        recv(r2) -> v => v.unwrap() + 100,
                    }
                });
                until_queued("three receives", (0, 2), || a_rx.chan.rendezvous_queued());
                let (_never_tx, never) = channel::<u32>(0);
                crate::select! {
                    send(a_tx, round) -> s => s.unwrap(),
                    recv(never) -> _ => unreachable!(),
                }
                let got = h.join().unwrap();
                assert!(got == round || got == round + 10, "{got}");
                empty("one of two receives on a channel won by a selected send");
            }
            // Every channel still pairs.
            let r = b_rx.clone();
            let h = crate::spawn(move || r.recv().unwrap());
            b_tx.send(7).unwrap();
            assert_eq!(h.join().unwrap(), 7);
            let t = a_tx.clone();
            let h = crate::spawn(move || t.send(8).unwrap());
            assert_eq!(a_rx.recv().unwrap(), 8);
            h.join().unwrap();
            empty("the last exchanges");
        });
    }

    /// A waiting select of more operations than it keeps inline (its
    /// registrations spill to the heap): whichever one a partner
    /// completes, inline or spilled, rendezvous or queue, it is the one
    /// selected, with its message, and the select leaves nothing queued.
    #[test]
    fn a_select_past_its_inline_operations_waits_and_cleans_up() {
        crate::run(|| {
            let zero: Vec<_> = (0..4).map(|_| channel::<u32>(0)).collect();
            let (q_tx, q_rx) = channel::<u32>(1);
            let (z5_tx, z5_rx) = channel::<u32>(0);
            let (z6_tx, z6_rx) = channel::<u32>(0);
            let zero = Arc::new(zero);
            let (q_rx, z5_rx, z6_rx) = (Arc::new(q_rx), Arc::new(z5_rx), Arc::new(z6_rx));
            // Operations 0..4: rendezvous receives (inline); 4: a queue's
            // receive, 5 and 6: rendezvous receives (spilled).
            for (target, value) in [(6usize, 60u32), (4, 40), (5, 50), (1, 10)] {
                let (z, q, r5, r6) = (zero.clone(), q_rx.clone(), z5_rx.clone(), z6_rx.clone());
                let h = crate::spawn(move || {
                    let mut sel = Select::new();
                    for (_, rx) in z.iter() {
                        sel.recv(rx);
                    }
                    sel.recv(&q);
                    sel.recv(&r5);
                    sel.recv(&r6);
                    let op = sel.select();
                    let i = op.index();
                    let v = match i {
                        0..4 => op.recv(&z[i].1),
                        4 => op.recv(&q),
                        5 => op.recv(&r5),
                        _ => op.recv(&r6),
                    };
                    (i, v.unwrap())
                });
                until_queued("the spilled receive", (0, 1), || {
                    z6_rx.chan.rendezvous_queued()
                });
                match target {
                    6 => z6_tx.send(value).unwrap(),
                    5 => z5_tx.send(value).unwrap(),
                    4 => q_tx.send(value).unwrap(),
                    t => zero[t].0.send(value).unwrap(),
                }
                assert_eq!(h.join().unwrap(), (target, value));
                for (i, (_, rx)) in zero.iter().enumerate() {
                    assert_eq!(rx.chan.rendezvous_queued(), (0, 0), "left on {i}");
                }
                assert_eq!(z5_rx.chan.rendezvous_queued(), (0, 0), "left on 5");
                assert_eq!(z6_rx.chan.rendezvous_queued(), (0, 0), "left on 6");
            }
        });
    }

    /// The receivers leaving while a one-arm select's send waits wake it:
    /// it builds its message and gets it back in the error.
    #[test]
    fn one_arm_send_waiting_sees_the_receivers_go() {
        for green in [true, false] {
            crate::run(move || {
                let (tx, rx) = channel::<String>(0);
                let (ready_tx, ready_rx) = channel::<()>(1);
                let send = move || {
                    ready_tx.send(()).unwrap();
                    crate::select! { send(tx, "built".to_string()) -> r => r }
                };
                let join: Box<dyn FnOnce() -> Result<(), _>> = if green {
                    let h = crate::spawn(send);
                    Box::new(move || h.join().unwrap())
                } else {
                    let h = std::thread::spawn(send);
                    Box::new(move || h.join().unwrap())
                };
                ready_rx.recv().unwrap();
                crate::sleep(Duration::from_millis(5)); // most likely queued by now
                drop(rx);
                assert_eq!(join().unwrap_err().into_inner(), "built");
            });
        }
    }
}
