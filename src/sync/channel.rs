//! Multi-producer, multi-consumer channels that suspend green threads.
//!
//! Four flavors sit behind one [`Sender`]/[`Receiver`] API, as in
//! crossbeam-channel:
//!
//! - **array** (`channel(cap)`, `cap > 0`): a lock-free ring of our own
//!   (after Dmitry Vyukov's bounded queue, in `queue.rs`);
//! - **list** (`unbounded()`): a `VecDeque` behind a spin lock (in `queue.rs`);
//! - **zero** (`channel(0)`): a rendezvous; a sender waits until a receiver
//!   takes its value, copied straight from the sender's frame into the
//!   receiver's;
//! - **timers** ([`after`], [`tick`], [`never`]): receivers with no sender,
//!   whose message is computed from the clock when received. Nobody wakes
//!   their waiters: a receive parks until the message is due, and a
//!   `Select` parks no later than its earliest timer, then looks again.
//!
//! A message larger than 256 bytes is boxed on its way in, built in place
//! from the sender's frame, so a large message is not copied many times on
//! the stack. Each queue also has positions that change whenever a failed
//! send or receive could start to succeed, so that a `select` with
//! `default` can tell that an instant came at which nothing was ready (see
//! `queue.rs` and `Select::try_select`).
//!
//! The uncontended paths make no system call: a push or pop on the queue
//! (lock-free for the ring; a few instructions under a spin lock for the
//! list), then one load to see that nobody waits. Waiting
//! goes through the wait lists of [`super::wait`], in FIFO order: the
//! longest-waiting receiver (or sender) is woken first. A running green
//! thread may still take a message before the woken one runs (no strict
//! hand-off), which keeps throughput high; under contention every waiter is
//! woken in turn, so none is passed over forever.
//!
//! # Large messages
//!
//! A message is moved once, by pointer, into its slot (or, for a
//! rendezvous, straight into the receiver's frame), and once out of it:
//! the layers between pass a pointer and a small status, never the
//! message. So a message of a sizeable fraction of a green thread's stack
//! can be sent and received, in debug builds too, where every by-value
//! move is a copy on the stack. Beyond the caller's own argument or
//! result, a send holds one more copy on the stack in a debug build (the
//! `mem::forget` of its argument) and none in a release build; a receive
//! holds two (its slot, and the value it returns) and one. The branches
//! that build an error holding the message live in functions of their own,
//! whose frames exist only when they run.
//!
//! # Cancellation
//!
//! Cancellation loses nothing and duplicates nothing. A blocking operation
//! cut short (by a timeout or a cancellation) either completed before that,
//! and then it reports success, or did nothing. A receiver cancelled after
//! being woken passes the wake-up on, and the message stays in the channel.
//! A rendezvous exchange completes for both sides at once, when the
//! receiver copies the value: from then on the send returns `Ok` and the
//! receive returns the value, whatever happens to their timeouts; a
//! cancellation that arrives then is raised at the next suspension point.

use std::any::Any;
use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::{MaybeUninit, align_of, size_of};
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use super::queue;
use super::wait::{AsyncWait, Registration, TimedOut, WaitList, Waiter, wait_until};
use crate::cancel::{AbortOnUnwind, Cancelled};
use crate::runtime::park::{self, Waker};

/// Creates a bounded channel holding up to `cap` messages; `cap = 0` makes a
/// rendezvous channel, where each `send` waits for a `recv`.
///
/// # Panics
///
/// If `cap` is too large to allocate (the message says so, and suggests
/// `unbounded()`).
///
/// # Examples
///
/// ```
/// let (tx, rx) = stackful::sync::channel(1);
/// let producer = stackful::spawn(move || {
///     for i in 0..3 {
///         tx.send(i).unwrap(); // waits while the channel is full
///     }
/// });
/// assert_eq!(rx.iter().collect::<Vec<_>>(), [0, 1, 2]); // ends when `tx` is dropped
/// producer.join().unwrap();
/// ```
#[track_caller]
pub fn channel<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let flavor = if cap == 0 {
        Flavor::Zero(Zero::default())
    } else {
        Flavor::Array(queue::Array::new(cap))
    };
    Chan::pair(flavor)
}

/// Creates an unbounded channel: `send` never waits.
///
/// # Examples
///
/// ```
/// let (tx, rx) = stackful::sync::unbounded();
/// tx.send("hello").unwrap();
/// assert_eq!(rx.recv(), Ok("hello"));
/// ```
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    Chan::pair(Flavor::List(queue::Unbounded::new()))
}

enum Flavor<T> {
    Array(queue::Array<T>),
    List(queue::Unbounded<T>),
    Zero(Zero<T>),
    /// [`after`]: one message once `due` has passed (`None`: never, the
    /// delay overflowing the clock). `make` builds the message; it is the
    /// identity, `T` being `Instant`.
    At {
        due: Option<Instant>,
        taken: AtomicBool,
        make: fn(Instant) -> T,
    },
    /// [`tick`]: a message whenever `next` (nanoseconds after `base`;
    /// `u64::MAX`: never) has passed; each receipt moves `next` to one
    /// `period` after the receipt, so missed ticks are dropped.
    Tick {
        base: Instant,
        period: Duration,
        next: AtomicU64,
        make: fn(Instant) -> T,
    },
    /// [`never`]: no message, ever.
    Never,
}

/// The identity on `Instant`: the message maker of the timer flavors.
fn same_instant(at: Instant) -> Instant {
    at
}

/// Nanoseconds from `base` to `at`, saturating (`u64::MAX`: never).
fn nanos_after(base: Instant, at: Option<Instant>) -> u64 {
    at.map_or(u64::MAX, |at| {
        u64::try_from(at.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
    })
}

/// The instant `nanos` after `base` (`None`: never).
fn instant_after(base: Instant, nanos: u64) -> Option<Instant> {
    if nanos == u64::MAX {
        return None;
    }
    base.checked_add(Duration::from_nanos(nanos))
}

/// Creates a receiver that delivers one message, the instant `delay` from
/// now, once that instant has passed. The channel has capacity 1 and never
/// disconnects: after its message it stays empty forever, so a second
/// [`recv`](Receiver::recv) waits forever (or until its timeout).
///
/// Waiting for it costs no thread: a green thread parks on its worker's
/// timers, an OS thread parks with a timeout. It is the timeout arm of
/// [`select!`](crate::select!), as in crossbeam-channel.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
///
/// stackful::run(|| {
///     let (_tx, rx) = stackful::sync::unbounded::<u32>();
///     let start = Instant::now();
///     let timer = stackful::sync::after(Duration::from_millis(20));
///     let outcome = stackful::select! {
///         recv(rx) -> msg => format!("got {msg:?}"),
///         recv(timer) -> at => {
///             assert!(at.unwrap() >= start + Duration::from_millis(20));
///             "timed out".to_string()
///         }
///     };
///     assert_eq!(outcome, "timed out");
///     assert!(start.elapsed() >= Duration::from_millis(20));
/// });
/// ```
pub fn after(delay: Duration) -> Receiver<Instant> {
    Chan::timer(Flavor::At {
        due: Instant::now().checked_add(delay),
        taken: AtomicBool::new(false),
        make: same_instant,
    })
}

/// Creates a receiver that delivers a message every `period`: the instant
/// the tick was due. The channel has capacity 1 and never disconnects; a
/// tick not received in time is not queued: the next one is due one
/// `period` after the late one was received.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
///
/// stackful::run(|| {
///     let start = Instant::now();
///     let ticker = stackful::sync::tick(Duration::from_millis(10));
///     let ticks: Vec<Instant> = ticker.iter().take(3).collect();
///     assert!(ticks[0] >= start + Duration::from_millis(10));
///     assert!(ticks[1] >= ticks[0] + Duration::from_millis(10));
///     assert!(ticks[2] >= ticks[1] + Duration::from_millis(10));
/// });
/// ```
pub fn tick(period: Duration) -> Receiver<Instant> {
    let base = Instant::now();
    Chan::timer(Flavor::Tick {
        base,
        period,
        next: AtomicU64::new(nanos_after(base, base.checked_add(period))),
        make: same_instant,
    })
}

/// Creates a receiver that never delivers a message and never
/// disconnects; its capacity is 0. Useful as a select arm that is
/// switched off, such as an optional timeout.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stackful::sync::{after, never, Receiver};
///
/// stackful::run(|| {
///     let limit: Option<Duration> = None;
///     let timer: Receiver<std::time::Instant> = limit.map_or_else(never, after);
///     let (tx, rx) = stackful::sync::unbounded();
///     tx.send(5).unwrap();
///     let got = stackful::select! {
///         recv(rx) -> msg => msg.unwrap(),
///         recv(timer) -> _ => unreachable!("`never` delivered"),
///     };
///     assert_eq!(got, 5);
///     assert!(never::<u8>().recv_timeout(Duration::from_millis(5)).is_err());
/// });
/// ```
pub fn never<T>() -> Receiver<T> {
    Chan::timer(Flavor::Never)
}

/// The outcome of an operation that does not wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Try {
    /// Done: the message moved.
    Done,
    /// Not possible now: the channel is full (sending) or empty
    /// (receiving), or no partner waits at a rendezvous.
    NotReady,
    /// The other side is gone (and, receiving, the channel is empty).
    Disconnected,
}

/// Why a blocking send failed; the message is still the caller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendFail {
    Timeout,
    Disconnected,
}

pub(crate) struct Chan<T> {
    flavor: Flavor<T>,
    senders: AtomicUsize,
    receivers: AtomicUsize,
    /// Waiting receivers, and `Select`s waiting to receive.
    pub(crate) recv_wait: WaitList,
    /// Waiting senders (array flavor), and `Select`s waiting to send.
    pub(crate) send_wait: WaitList,
}

impl<T> Chan<T> {
    fn pair(flavor: Flavor<T>) -> (Sender<T>, Receiver<T>) {
        let chan = Arc::new(Chan {
            flavor,
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
            recv_wait: WaitList::new(),
            send_wait: WaitList::new(),
        });
        (Sender::from_chan(chan.clone()), Receiver::from_chan(chan))
    }

    /// A receiver with no sender, for the timer flavors: they count one
    /// sender that never leaves, so they never disconnect.
    fn timer(flavor: Flavor<T>) -> Receiver<T> {
        let chan = Arc::new(Chan {
            flavor,
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
            recv_wait: WaitList::new(),
            send_wait: WaitList::new(),
        });
        Receiver::from_chan(chan)
    }

    pub(crate) fn is_timer(&self) -> bool {
        matches!(
            self.flavor,
            Flavor::At { .. } | Flavor::Tick { .. } | Flavor::Never
        )
    }

    /// For the timer flavors: when the next message is due, if it ever is
    /// (`None` for the other flavors too).
    pub(crate) fn due(&self) -> Option<Instant> {
        match &self.flavor {
            Flavor::At { due, taken, .. } => due.filter(|_| !taken.load(Ordering::Acquire)),
            Flavor::Tick { base, next, .. } => instant_after(*base, next.load(Ordering::Acquire)),
            _ => None,
        }
    }

    /// For the timer flavors: takes the message that is due, if any, into
    /// `dst`. A frame of its own, which exists only for a timer: a
    /// `T`-sized temporary here would grow every receive's frame (see the
    /// module docs on large messages).
    ///
    /// # Safety
    ///
    /// `dst` is valid for a write of a `T`; on true it holds a message.
    #[inline(never)]
    unsafe fn take_due(&self, dst: *mut T) -> bool {
        let msg = match self.due_message() {
            Some(msg) => msg,
            None => return false,
        };
        // SAFETY: `dst` is valid for a write (the contract).
        unsafe { dst.write(msg) };
        true
    }

    /// The timer's message, if one is due: taken, so no other receiver
    /// gets it.
    fn due_message(&self) -> Option<T> {
        match &self.flavor {
            Flavor::At { due, taken, make } => {
                let due = (*due)?;
                if Instant::now() < due || taken.swap(true, Ordering::AcqRel) {
                    return None;
                }
                Some(make(due))
            }
            Flavor::Tick {
                base,
                period,
                next,
                make,
            } => loop {
                let current = next.load(Ordering::Acquire);
                let at = instant_after(*base, current)?;
                let now = Instant::now();
                if now < at {
                    return None;
                }
                let following = nanos_after(*base, now.checked_add(*period));
                if next
                    .compare_exchange(current, following, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Some(make(at));
                }
            },
            _ => None,
        }
    }

    /// For the timer flavors: receives into `dst`, waiting until `deadline`
    /// at the latest. Nobody sends, so nobody wakes us: park until the
    /// message is due (or the deadline), and look again.
    ///
    /// # Safety
    ///
    /// As [`recv_raw`](Chan::recv_raw).
    #[inline(never)]
    unsafe fn timer_recv(
        &self,
        dst: *mut T,
        deadline: Option<Instant>,
    ) -> Result<(), RecvTimeoutError> {
        loop {
            // SAFETY: `dst` as this function's contract.
            if unsafe { self.take_due(dst) } {
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvTimeoutError::Timeout);
            }
            let wake_at = match (self.due(), deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            park::park(wake_at);
        }
    }

    fn senders_gone(&self) -> bool {
        self.senders.load(Ordering::Acquire) == 0
    }

    fn receivers_gone(&self) -> bool {
        self.receivers.load(Ordering::Acquire) == 0
    }

    /// Sends the message at `src` if that needs no waiting.
    ///
    /// # Safety
    ///
    /// `src` points to a live `T` that the caller owns. On [`Try::Done`] its
    /// bytes have moved into the channel (or to a receiver): the caller must
    /// forget it, neither using nor dropping it again. Otherwise it is
    /// untouched. Nothing here unwinds after the move.
    pub(crate) unsafe fn try_send_raw(&self, src: *const T) -> Try {
        if self.receivers_gone() {
            return Try::Disconnected;
        }
        let pushed = match &self.flavor {
            // SAFETY: as this function's contract.
            Flavor::Array(q) => unsafe { q.push(src) },
            // SAFETY: as this function's contract.
            Flavor::List(q) => unsafe { q.push(src) },
            // SAFETY: as this function's contract.
            Flavor::Zero(z) => return unsafe { z.try_send(src) },
            // Only a `Sender` sends, and a timer has none.
            _ => unreachable!("a send on a timer channel, which has no sender"),
        };
        if pushed == Try::Done {
            // The push's claim was a `SeqCst` read-modify-write (see
            // `queue.rs`), and a waiting receiver looks again after a
            // `SeqCst` fence.
            self.recv_wait.notify_one_after_sc();
        }
        pushed
    }

    /// `select!` with one send, on this channel, and no `default`: waits
    /// until the send can proceed, without its message. `None` if the
    /// channel is not a rendezvous (a `Select` does it then).
    pub(crate) fn send_lazy(&self) -> Option<SendToken> {
        match &self.flavor {
            Flavor::Zero(z) => Some(z.send_lazy(self)),
            _ => None,
        }
    }

    /// Completes a send that a `Select` selected with `SendToken::Room`:
    /// into the room it reserved (a bounded channel) or the unbounded
    /// queue, without waiting. `Done`, or `Disconnected` (the reservation
    /// is given back).
    ///
    /// # Safety
    ///
    /// As [`try_send_raw`](Chan::try_send_raw); for a bounded channel, the
    /// select's reservation is held, and this uses it up.
    pub(crate) unsafe fn send_selected(&self, src: *const T) -> Try {
        let pushed = match &self.flavor {
            // SAFETY: as this function's contract.
            Flavor::Array(q) => unsafe { q.push_reserved(src) },
            // SAFETY: as this function's contract.
            Flavor::List(q) => unsafe { q.push(src) },
            _ => unreachable!("only a queue's send selects with room"),
        };
        if pushed == Try::Done {
            self.recv_wait.notify_one_after_sc(); // as in `try_send_raw`
        }
        pushed
    }

    /// Receives into `dst` if that needs no waiting.
    ///
    /// # Safety
    ///
    /// `dst` is valid for a write of a `T`. On [`Try::Done`] it holds a
    /// message, which the caller owns; otherwise it is untouched.
    #[inline]
    pub(crate) unsafe fn try_recv_raw(&self, dst: *mut T) -> Try {
        if self.is_timer() {
            // SAFETY: `dst` as this function's contract.
            return if unsafe { self.take_due(dst) } {
                Try::Done
            } else {
                Try::NotReady
            };
        }
        if let Flavor::Zero(z) = &self.flavor {
            // SAFETY: `dst` as this function's contract.
            return unsafe { z.try_recv(dst, || self.senders_gone()) };
        }
        // SAFETY: `dst` as this function's contract.
        if unsafe { self.pop(dst) } {
            // A bounded channel's senders may wait for the room; nobody
            // waits to send on an unbounded one (a send never waits, and a
            // select's send there is always ready, so it never parks).
            // The pop's claim was a `SeqCst` read-modify-write (see
            // `queue.rs`), and a waiting sender looks again after a
            // `SeqCst` fence.
            if let Flavor::Array(_) = &self.flavor {
                self.send_wait.notify_one_after_sc();
            }
            return Try::Done;
        }
        if !self.senders_gone() {
            return Try::NotReady;
        }
        // Seen after the last sender left, a still-empty queue is final.
        // SAFETY: as above; the first pop wrote nothing.
        if unsafe { self.pop(dst) } {
            Try::Done
        } else {
            Try::Disconnected
        }
    }

    /// Pops the queue's first message into `dst`; false if there is none
    /// (a rendezvous holds none).
    ///
    /// # Safety
    ///
    /// `dst` is valid for a write of a `T`; on true it holds a message.
    unsafe fn pop(&self, dst: *mut T) -> bool {
        match &self.flavor {
            // SAFETY: as this function's contract.
            Flavor::Array(q) => unsafe { q.pop(dst) },
            // SAFETY: as this function's contract.
            Flavor::List(q) => unsafe { q.pop(dst) },
            _ => false,
        }
    }

    /// Sends the message at `src`, waiting until `deadline` at the latest.
    /// `tried`: the caller has just tried a queue and found it full, so
    /// the wait starts with its registration.
    ///
    /// # Safety
    ///
    /// As [`try_send_raw`](Chan::try_send_raw): `Ok` means the message
    /// moved. It may unwind (a cancellation), and then did not move it.
    unsafe fn send_raw(
        &self,
        src: *const T,
        deadline: Option<Instant>,
        tried: bool,
    ) -> Result<(), SendFail> {
        if let Flavor::Zero(z) = &self.flavor {
            // SAFETY: as this function's contract.
            return unsafe { z.send(self, src, deadline) };
        }
        let mut skip = tried;
        // An attempt that moves the message returns at once, and
        // `wait_until` returns it without waiting again.
        let outcome = wait_until(&self.send_wait, deadline, || {
            if std::mem::take(&mut skip) {
                return None; // `wait_until`'s first attempt: the caller's
            }
            // SAFETY: as this function's contract.
            match unsafe { self.try_send_raw(src) } {
                Try::Done => Some(Ok(())),
                Try::NotReady => None,
                Try::Disconnected => Some(Err(SendFail::Disconnected)),
            }
        });
        match outcome {
            Ok(done) => done,
            Err(TimedOut) => Err(SendFail::Timeout),
        }
    }

    /// Receives into `dst`, waiting until `deadline` at the latest.
    ///
    /// # Safety
    ///
    /// As [`try_recv_raw`](Chan::try_recv_raw): `Ok` means `dst` holds a
    /// message. It may unwind (a cancellation), and then wrote nothing.
    unsafe fn recv_raw(
        &self,
        dst: *mut T,
        deadline: Option<Instant>,
    ) -> Result<(), RecvTimeoutError> {
        if self.is_timer() {
            // SAFETY: as this function's contract.
            return unsafe { self.timer_recv(dst, deadline) };
        }
        if let Flavor::Zero(z) = &self.flavor {
            // SAFETY: as this function's contract.
            return unsafe { z.recv(self, dst, deadline) };
        }
        let outcome = wait_until(&self.recv_wait, deadline, || {
            // SAFETY: as this function's contract.
            match unsafe { self.try_recv_raw(dst) } {
                Try::Done => Some(Ok(())),
                Try::NotReady => None,
                Try::Disconnected => Some(Err(RecvTimeoutError::Disconnected)),
            }
        });
        match outcome {
            Ok(done) => done,
            Err(TimedOut) => Err(RecvTimeoutError::Timeout),
        }
    }

    fn len(&self) -> usize {
        match &self.flavor {
            Flavor::Array(q) => q.len(),
            Flavor::List(q) => q.len(),
            Flavor::Zero(_) | Flavor::Never => 0,
            Flavor::At { .. } | Flavor::Tick { .. } => {
                usize::from(self.due().is_some_and(|due| Instant::now() >= due))
            }
        }
    }

    fn capacity(&self) -> Option<usize> {
        match &self.flavor {
            Flavor::Array(q) => Some(q.capacity()),
            Flavor::List(_) => None,
            Flavor::Zero(_) | Flavor::Never => Some(0),
            Flavor::At { .. } | Flavor::Tick { .. } => Some(1),
        }
    }

    /// The last sender or receiver left: wake everyone who waits, so they
    /// see the disconnection.
    fn disconnect(&self) {
        self.recv_wait.notify_all();
        self.send_wait.notify_all();
        if let Flavor::Zero(z) = &self.flavor {
            z.wake_all();
        }
    }

    /// The last receiver left: close the queue to sends, wake the senders
    /// (they get their messages back), and drop what is queued.
    fn disconnect_receivers(&self) {
        match &self.flavor {
            Flavor::Array(q) => q.close(),
            Flavor::List(q) => q.close(),
            _ => {}
        }
        self.disconnect();
        self.discard_all();
    }

    /// Drops every queued message, here and now. A destructor that panics
    /// does not stop the others (as for a `Vec`); the first panic is raised
    /// again once all are dropped, unless this context is unwinding already
    /// (a second unwind from a destructor would abort the process, and
    /// with it every green thread): then it goes, like any later one.
    fn discard_all(&self) {
        let mut first: Option<Box<dyn Any + Send>> = None;
        let mut slot = MaybeUninit::<T>::uninit();
        loop {
            let dst = slot.as_mut_ptr();
            // SAFETY: `dst` is our own slot, empty at each turn.
            if !unsafe { self.pop(dst) } {
                break;
            }
            let dropped = panic::catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: `pop` wrote a message there, which is ours; it is
                // dropped once (whether or not its destructor panics), and
                // the slot is overwritten only by the next pop.
                unsafe { ptr::drop_in_place(dst) }
            }));
            if let Err(payload) = dropped {
                match first {
                    None => first = Some(payload),
                    Some(_) => crate::task::raw::discard_payload(payload),
                }
            }
        }
        if let Some(payload) = first {
            if crate::runtime::worker::context_unwinding() {
                crate::task::raw::discard_payload(payload);
            } else {
                panic::resume_unwind(payload);
            }
        }
    }
}

/// A packet's states.
const WAITING: u8 = 0;
/// Paired with a partner whose message is still on its way: a `Select`'s
/// send that was selected and has not been given its message yet
/// (`SelectedOperation::send` delivers it).
const CLAIMED: u8 = 1;
/// The exchange happened: the message moved.
const DONE: u8 = 2;
/// The pairing was undone: the `SelectedOperation` that was to deliver
/// the message was dropped without it. The waiting side starts over.
const ABANDONED: u8 = 3;

/// A sender or receiver waiting at a rendezvous: a plain `send` or `recv`,
/// or one operation of a waiting `Select` (then `select` names its context
/// and operation, and a partner must win the context before pairing).
pub(crate) struct Packet {
    /// The message (a waiting sender's), or the room for one (a receiver's),
    /// in the waiter's frame. A lazy send (see `Zero::send_lazy`), which
    /// has no message yet, has none until a receiver pairs with it: then
    /// the receiver's room. A `Select`'s packet holds the select's room
    /// (for its receives) until a receiver pairs with one of its sends:
    /// then that receiver's room. Written only at creation, or under the
    /// rendezvous lock by the receiver that pairs with such a send, having
    /// won it (for a select's, its context: the one winner), before
    /// `CLAIMED`.
    slot: UnsafeCell<*mut u8>,
    /// Who waits for the message to arrive in `slot`: the packet's owner, or
    /// for a `Select`'s send or a lazy send, the receiver that paired with
    /// it (a lazy send's holds its owner's until then, which that receiver
    /// wakes). A `Select`'s receive has none: its owner is woken through
    /// the select's waiter (see `wake_after`), which spares a waker's clone
    /// and drop per registration. Written as `slot`; then taken out by the
    /// one party that ends the exchange (`DONE` or `ABANDONED`), just
    /// before it publishes that state.
    waker: UnsafeCell<Option<Waker>>,
    state: AtomicU8,
    /// A `Select`'s context. One packet serves all of a select's rendezvous
    /// operations: each queue entry names its operation (see `Entry`).
    select: Option<Arc<Waiter>>,
}

/// A queued rendezvous packet, with the `Select` operation it stands for
/// (0 for a plain packet, which has no select).
type Entry = (Arc<Packet>, usize);

// SAFETY: `slot` and `waker` are written only under the rendezvous lock
// before the state that publishes them (see their docs), and read by the
// one party the state admits; the message behind `slot` moves between
// threads only through channels of `T: Send`.
unsafe impl Send for Packet {}
// SAFETY: as above.
unsafe impl Sync for Packet {}

/// Packets a thread keeps for its next rendezvous waits: a `Select`
/// registers one for all its rendezvous operations.
const SPARE_PACKETS: usize = 4;

thread_local! {
    /// Packets that their last waits left unshared, for the next
    /// rendezvous waits on this thread (as `wait.rs` keeps a spare waiter).
    static SPARE_PACKET: [std::cell::Cell<Option<Arc<Packet>>>; SPARE_PACKETS] =
        const { [const { std::cell::Cell::new(None) }; SPARE_PACKETS] };
}

/// A spare packet of this thread's, if it has one.
fn take_spare_packet() -> Option<Arc<Packet>> {
    SPARE_PACKET
        .try_with(|spares| spares.iter().find_map(std::cell::Cell::take))
        .ok()
        .flatten()
}

impl Packet {
    fn new(slot: *mut u8, select: Option<Arc<Waiter>>) -> Arc<Packet> {
        Packet::with_waker(slot, select, Some(park::current_waker()))
    }

    /// The packet of a `Select` with context `waiter`, made for its first
    /// rendezvous operation and shared by the others (each queue entry
    /// names its operation): one packet to set up and recycle, and one
    /// clone of the waiter, per wait. Its room is `room`, for whichever
    /// receive wins; a receiver that pairs with one of its sends puts its
    /// own room there, having won the context (so no receive of the
    /// select's can win it). It has no waker: a send's is its partner's,
    /// set when one pairs with it, and the owner is woken through `waiter`
    /// (see `wake_after`).
    pub(crate) fn for_select<'p>(
        shared: &'p mut Option<Arc<Packet>>,
        waiter: &Arc<Waiter>,
        room: *mut u8,
    ) -> &'p Arc<Packet> {
        shared.get_or_insert_with(|| Packet::with_waker(room, Some(waiter.clone()), None))
    }

    // Always inlined: each caller's set-up is a few stores, and a call
    // with its prologue costs a plain rendezvous as much again.
    #[inline(always)]
    fn with_waker(slot: *mut u8, select: Option<Arc<Waiter>>, waker: Option<Waker>) -> Arc<Packet> {
        if let Some(mut spare) = take_spare_packet()
            && let Some(p) = Arc::get_mut(&mut spare)
        {
            *p.slot.get_mut() = slot;
            *p.waker.get_mut() = waker;
            *p.state.get_mut() = WAITING;
            p.select = select;
            return spare;
        }
        Arc::new(Packet {
            slot: UnsafeCell::new(slot),
            waker: UnsafeCell::new(waker),
            state: AtomicU8::new(WAITING),
            select,
        })
    }

    /// Keeps `packet` as the thread's spare if nobody else holds it any
    /// more, emptied (no waker, no select, no room), so that it keeps
    /// nothing alive; otherwise just drops this reference.
    /// The select's waiter it held is recycled the same way (see
    /// `Waiter::recycle`): the partner of a select often holds the last
    /// references to both.
    pub(crate) fn recycle(mut packet: Arc<Packet>) {
        // The count first, as `Waiter::recycle` does.
        if Arc::strong_count(&packet) != 1 {
            return;
        }
        if let Some(p) = Arc::get_mut(&mut packet) {
            *p.slot.get_mut() = ptr::null_mut();
            *p.waker.get_mut() = None;
            if let Some(waiter) = p.select.take() {
                Waiter::recycle(waiter);
            }
            // Into the first free place, if any (else dropped).
            let _ = SPARE_PACKET.try_with(|spares| {
                let mut packet = Some(packet);
                for spare in spares {
                    // In; if the place held one, that one back.
                    match spare.replace(packet.take()) {
                        None => break,
                        held => packet = spare.replace(held),
                    }
                }
            });
        }
    }

    fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    /// Wins the packet for an exchange: always for a plain one (queued, so
    /// waiting); for a `Select`'s, as its operation `op` (the entry's),
    /// only if its context is still waiting. Called under the rendezvous
    /// lock.
    fn try_win(&self, op: usize) -> bool {
        match &self.select {
            None => true,
            Some(waiter) => waiter.try_select(op),
        }
    }

    /// Whether a partner could pair with it now (not one of `own`'s).
    fn available(&self, own: Option<&Arc<Waiter>>) -> bool {
        match &self.select {
            None => true,
            Some(waiter) => own.is_none_or(|o| !o.is(waiter)) && waiter.is_waiting(),
        }
    }

    /// Wakes the one waiting for the message.
    ///
    /// # Safety
    ///
    /// `waker` is settled (see its docs).
    unsafe fn wake(&self) {
        // SAFETY: per the contract.
        if let Some(w) = unsafe { &*self.waker.get() } {
            w.wake();
        }
    }

    /// Delivers the message at `src` into the packet's room, completing
    /// an exchange the caller has won (the packet is off its queue).
    ///
    /// # Safety
    ///
    /// `slot` is settled and is room for a `T`, lent until `DONE`; `src`
    /// holds a `T`, whose bytes move (the caller forgets it).
    unsafe fn deliver<T>(&self, src: *const T) {
        // SAFETY: per the contract; the waker is taken out before `DONE`,
        // after which the owner may leave (nobody else reads it: the packet
        // is off its queue).
        unsafe {
            ptr::copy_nonoverlapping(src, (*self.slot.get()).cast::<T>(), 1);
            let waker = (*self.waker.get()).take();
            self.state.store(DONE, Ordering::Release);
            self.wake_after(waker);
        }
    }

    /// Wakes the one waiting for the exchange that just ended (`DONE` or
    /// `ABANDONED`): `waker`, taken out before that state was published,
    /// or if there is none, a `Select`'s receive's owner through its
    /// waiter. The caller holds a reference to the packet, which holds the
    /// waiter; the owner may have left already: a spurious wake-up, which
    /// every wait tolerates.
    fn wake_after(&self, waker: Option<Waker>) {
        match (waker, &self.select) {
            (Some(w), _) => w.wake_by_value(),
            (None, Some(waiter)) => waiter.wake(),
            (None, None) => {}
        }
    }

    /// Waits, not cancellably, until the message arrives (true) or the
    /// pairing is abandoned (false). The caller's room is lent until then.
    /// Then lets go of the packet (see `recycle`).
    pub(crate) fn wait_delivered(packet: Arc<Packet>) -> bool {
        // A wait on a scheduler's loop panics with a message; find out
        // before the guard, under which it would abort instead.
        park::refuse_scheduler_loop();
        let lent = AbortOnUnwind("a rendezvous with a select");
        let delivered = loop {
            match packet.state() {
                DONE => break true,
                ABANDONED => break false,
                _ => park::park_shielded(None),
            }
        };
        lent.disarm();
        Packet::recycle(packet);
        delivered
    }

    /// Undoes a `CLAIMED` pairing whose message will never come.
    pub(crate) fn abandon(&self) {
        // SAFETY: a claimed packet's waker is settled, and only this
        // send reads it; it is taken out first.
        let waker = unsafe { (*self.waker.get()).take() };
        self.state.store(ABANDONED, Ordering::Release);
        self.wake_after(waker);
    }

    /// Delivers `value` to a claimed packet (a `Select`'s send completing).
    ///
    /// # Safety
    ///
    /// The packet is `CLAIMED` by this send, and its room is for a `T`.
    pub(crate) unsafe fn complete<T>(&self, value: *const T) {
        // SAFETY: per the contract.
        unsafe { self.deliver(value) }
    }
}

struct ZeroState {
    senders: VecDeque<Entry>,
    receivers: VecDeque<Entry>,
    /// Counts every change of the queues, for a `Select` that must tell
    /// whether nothing changed between two looks.
    version: u64,
}

struct Zero<T> {
    state: Mutex<ZeroState>,
    /// Which queues may hold a packet (`SENDERS_QUEUED`, `RECEIVERS_QUEUED`),
    /// written only under the lock: set by every push (`Zero::queued`),
    /// cleared by a try that found the queue empty (`Zero::emptied`). A
    /// clear flag means the queue was empty when it was read, so a try
    /// that reads one (`partners_queued`) need not lock (a select's try,
    /// mostly, on a channel whose other side nobody is waiting on).
    queued: AtomicU8,
    /// `fn() -> T`: the flavor holds no `T` itself, so it does not make
    /// the channel `Sync` only for `Sync` messages (the queue flavors
    /// require `T: Send`, as std and crossbeam do).
    _marker: PhantomData<fn() -> T>,
}

impl<T> Default for Zero<T> {
    fn default() -> Self {
        Zero {
            state: Mutex::new(ZeroState {
                senders: VecDeque::new(),
                receivers: VecDeque::new(),
                version: 0,
            }),
            queued: AtomicU8::new(0),
            _marker: PhantomData,
        }
    }
}

/// `Zero::queued`: the senders' queue may hold a packet.
const SENDERS_QUEUED: u8 = 1;
/// `Zero::queued`: the receivers' queue may hold a packet.
const RECEIVERS_QUEUED: u8 = 2;

/// The flag of the senders' (`send`) or receivers' queue in `Zero::queued`.
fn queue_flag(send: bool) -> u8 {
    if send {
        SENDERS_QUEUED
    } else {
        RECEIVERS_QUEUED
    }
}

/// Removes `p`'s entry for operation `op` (0 for a plain packet) from
/// `queue`; true if it was there.
fn remove(queue: &mut VecDeque<Entry>, p: &Arc<Packet>, op: usize) -> bool {
    let is = |(q, o): &Entry| Arc::ptr_eq(q, p) && *o == op;
    // Most often the last queued (a select leaving a channel nobody used),
    // else the first.
    if queue.back().is_some_and(is) {
        queue.pop_back();
        return true;
    }
    match queue.iter().position(is) {
        Some(0) => {
            queue.pop_front();
            true
        }
        Some(i) => {
            queue.remove(i);
            true
        }
        None => false,
    }
}

/// Why a rendezvous wait ended without an exchange.
enum Withdrawn {
    Cancelled(crate::cancel::Cause),
    Timeout,
    Disconnected,
    /// A select paired with the packet and then dropped its operation: the
    /// packet is out of the queue, and the caller starts over (a partner
    /// may have queued up meanwhile), at the front of the line.
    Abandoned,
}

/// What a receiver found at the front of the senders' queue.
enum Taken<'s> {
    /// The message moved into the room.
    Done,
    /// A `Select`'s send, now paired with us: its message comes later.
    Claimed(Arc<Packet>),
    /// Nobody there; the lock is still held.
    Empty(MutexGuard<'s, ZeroState>),
}

impl<T> Zero<T> {
    fn lock(&self) -> MutexGuard<'_, ZeroState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `packet` on the senders' (`send`) or receivers' queue, at the
    /// back, or at the `front` (a waiter that waited before keeps its
    /// place), under the lock `state`: every push goes through here, so the
    /// queue's flag (see `queued`) and the version move with it.
    #[inline]
    fn enqueue(
        &self,
        state: &mut ZeroState,
        send: bool,
        packet: &Arc<Packet>,
        op: usize,
        front: bool,
    ) {
        let queue = if send {
            &mut state.senders
        } else {
            &mut state.receivers
        };
        if front {
            queue.push_front((packet.clone(), op));
        } else {
            queue.push_back((packet.clone(), op));
        }
        self.queued(send);
        state.version += 1;
    }

    /// Notes a packet pushed on the senders' (`send`) or receivers' queue.
    /// Called under the lock, with the push (by `enqueue`).
    #[inline]
    fn queued(&self, send: bool) {
        let flag = queue_flag(send);
        // Only lock holders write it: this reads the last write.
        let queued = self.queued.load(Ordering::Relaxed);
        if queued & flag == 0 {
            self.queued.store(queued | flag, Ordering::Release);
        }
    }

    /// Notes that the senders' (`send`) or receivers' queue was found
    /// empty. Called under the lock.
    #[inline]
    fn emptied(&self, send: bool) {
        let flag = queue_flag(send);
        let queued = self.queued.load(Ordering::Relaxed);
        if queued & flag != 0 {
            self.queued.store(queued & !flag, Ordering::Release);
        }
    }

    /// Whether the queue that a send (`send`) or a receive pairs from may
    /// hold a packet. False: it was empty at an instant after the caller's
    /// last look under the lock (a push is published with its unlock).
    /// A waiter that registers on a `WaitList` and then looks again here
    /// does not miss a push: every push is followed by a `notify_all` of
    /// the other side's list, whose `SeqCst` fence pairs with the one of
    /// the registration (see `WaitList::register`), so either the notifier
    /// sees the waiter or the look sees the flag.
    #[inline]
    fn partners_queued(&self, send: bool) -> bool {
        self.queued.load(Ordering::Acquire) & queue_flag(!send) != 0
    }

    /// Hands the message at `src` to the first receiver that can take it.
    /// Called with the lock held; releases it.
    ///
    /// # Safety
    ///
    /// As `Chan::try_send_raw`.
    unsafe fn send_locked<'s>(
        &'s self,
        mut state: MutexGuard<'s, ZeroState>,
        src: *const T,
    ) -> Option<MutexGuard<'s, ZeroState>> {
        while let Some((receiver, op)) = state.receivers.pop_front() {
            state.version += 1;
            if !receiver.try_win(op) {
                continue; // a `Select` taken elsewhere meanwhile
            }
            drop(state);
            // SAFETY: a queued receiver's room is lent until `DONE`, and we
            // won it, off its queue; `src` as this function's contract.
            unsafe { receiver.deliver(src) };
            return None;
        }
        Some(state)
    }

    /// Hands the message at `src` to the first waiting receiver, if any.
    ///
    /// # Safety
    ///
    /// As `Chan::try_send_raw`.
    unsafe fn try_send(&self, src: *const T) -> Try {
        if !self.partners_queued(true) {
            return Try::NotReady; // no receiver: no need for the lock
        }
        // SAFETY: as this function's contract.
        match unsafe { self.send_locked(self.lock(), src) } {
            None => Try::Done,
            Some(_state) => {
                self.emptied(false); // it pops until it hands over or runs out
                Try::NotReady
            }
        }
    }

    /// Takes the message of the first sender that can give one, into
    /// `dst`. Called with the lock held; releases it.
    ///
    /// # Safety
    ///
    /// `dst` is room for a `T`.
    unsafe fn recv_locked<'s>(
        &'s self,
        mut state: MutexGuard<'s, ZeroState>,
        dst: *mut T,
    ) -> Taken<'s> {
        while let Some((sender, op)) = state.senders.pop_front() {
            state.version += 1;
            if !sender.try_win(op) {
                continue;
            }
            // SAFETY: a queued packet's slot is settled (see its docs).
            let lazy = unsafe { (*sender.slot.get()).is_null() };
            if sender.select.is_none() && !lazy {
                // SAFETY: a queued sender's slot is its live message, which
                // it gives up at `DONE`; we won it, under the lock.
                unsafe {
                    ptr::copy_nonoverlapping((*sender.slot.get()).cast::<T>(), dst, 1);
                    let waker = (*sender.waker.get()).take();
                    sender.state.store(DONE, Ordering::Release);
                    drop(state);
                    if let Some(w) = waker {
                        w.wake_by_value();
                    }
                }
                return Taken::Done;
            }
            // A `Select`'s send, or a lazy one (see `send_lazy`): it gets
            // our room and our waker, which its owner reads once it sees
            // `CLAIMED`. A lazy send's waker was its owner's: we wake it.
            // SAFETY: written under the lock, before `CLAIMED`; nobody
            // else reads them until then (the packet is off its queue).
            let owner = unsafe {
                *sender.slot.get() = dst.cast();
                (*sender.waker.get()).replace(park::current_waker())
            };
            sender.state.store(CLAIMED, Ordering::Release);
            drop(state);
            match (&sender.select, owner) {
                (Some(waiter), _) => waiter.wake(),
                (None, Some(owner)) => owner.wake_by_value(),
                (None, None) => {}
            }
            return Taken::Claimed(sender);
        }
        Taken::Empty(state)
    }

    /// Takes the message of the first waiting sender, if any. A sender in a
    /// `Select` is paired with at once and its message awaited (it comes
    /// as soon as the select's caller gives it).
    ///
    /// # Safety
    ///
    /// As `Chan::try_recv_raw`.
    unsafe fn try_recv(&self, dst: *mut T, senders_gone: impl Fn() -> bool) -> Try {
        loop {
            if !self.partners_queued(false) {
                // No sender: no need for the lock.
                return if senders_gone() {
                    Try::Disconnected
                } else {
                    Try::NotReady
                };
            }
            // SAFETY: as this function's contract.
            match unsafe { self.recv_locked(self.lock(), dst) } {
                Taken::Done => return Try::Done,
                Taken::Claimed(p) => {
                    if Packet::wait_delivered(p) {
                        return Try::Done;
                    }
                }
                Taken::Empty(state) => {
                    self.emptied(true);
                    drop(state);
                    return if senders_gone() {
                        Try::Disconnected
                    } else {
                        Try::NotReady
                    };
                }
            }
        }
    }

    /// Pairs a `Select`'s send (no message yet) with the first receiver
    /// that can take one: its packet, claimed, comes back.
    pub(crate) fn try_claim_receiver(&self) -> Option<Arc<Packet>> {
        if !self.partners_queued(true) {
            return None; // no receiver: no need for the lock
        }
        let mut state = self.lock();
        let claimed = Self::claim_receiver(&mut state);
        if claimed.is_none() {
            self.emptied(false); // it pops until it wins or runs out
        }
        claimed
    }

    /// As `try_claim_receiver`, under the lock held.
    fn claim_receiver(state: &mut ZeroState) -> Option<Arc<Packet>> {
        while let Some((receiver, op)) = state.receivers.pop_front() {
            state.version += 1;
            if receiver.try_win(op) {
                receiver.state.store(CLAIMED, Ordering::Release);
                return Some(receiver);
            }
        }
        None
    }

    /// Queues a waiting sender's `packet` (at the front if it waited
    /// before, `again`, so that it keeps its place), with the lock `state`
    /// held; releases it, then wakes the selects waiting for readiness.
    fn queue_sender(
        &self,
        chan: &Chan<T>,
        mut state: MutexGuard<'_, ZeroState>,
        packet: &Arc<Packet>,
        again: bool,
    ) {
        self.enqueue(&mut state, true, packet, 0, again);
        drop(state);
        chan.recv_wait.notify_all();
    }

    /// A send whose message is built only once a receiver is paired with
    /// it, as a `Select`'s, without a `Select`: `select!` with this send as
    /// its only operation and no `default`. It pairs with a waiting
    /// receiver, or queues a packet without a message (`slot` null, no
    /// `select`) and waits until a receiver pairs with it, which takes it
    /// off the queue under the lock, as with a plain send, so nothing but
    /// the queue decides who wins it. A cancellation point until paired;
    /// a pairing that happened first wins, and the cancellation is raised
    /// at the next suspension point.
    fn send_lazy(&self, chan: &Chan<T>) -> SendToken {
        let mut again = false;
        loop {
            if chan.receivers_gone() {
                return SendToken::Disconnected;
            }
            let mut state = self.lock();
            if let Some(receiver) = Self::claim_receiver(&mut state) {
                return SendToken::Paired(receiver);
            }
            if park::on_scheduler_loop() {
                drop(state);
                park::scheduler_wait();
            }
            // Nothing is lent: the packet has no message, and a receiver
            // lends its room only once it has paired with us.
            let packet = Packet::new(ptr::null_mut(), None);
            self.queue_sender(chan, state, &packet, again);
            let outcome = self.wait_exchange(
                &packet,
                |s| &mut s.senders,
                None,
                || chan.receivers_gone(),
                CLAIMED,
            );
            match outcome {
                Ok(()) => return SendToken::Paired(packet),
                Err(withdrawn) => {
                    Packet::recycle(packet);
                    match withdrawn {
                        Withdrawn::Cancelled(cause) => Cancelled::raise(cause),
                        Withdrawn::Disconnected => return SendToken::Disconnected,
                        // Neither happens to a lazy send (no deadline; only
                        // its own `SelectedOperation` abandons its packet):
                        // look again.
                        Withdrawn::Timeout | Withdrawn::Abandoned => again = true,
                    }
                }
            }
        }
    }

    /// Queues operation `op` of a `Select` (a send, or a receive), with
    /// the select's `packet` (see `Packet::for_select`). Also tells whether
    /// a partner that could pair with it (not one of `waiter`'s own) was
    /// queued already, as `is_ready` would, under the same lock: after
    /// that, a partner that comes finds the packet.
    fn register(&self, send: bool, packet: &Arc<Packet>, waiter: &Arc<Waiter>, op: usize) -> bool {
        let mut state = self.lock();
        self.enqueue(&mut state, send, packet, op, false);
        let other = if send {
            &state.receivers
        } else {
            &state.senders
        };
        other.iter().any(|(p, _)| p.available(Some(waiter)))
    }

    /// Takes a `Select`'s entry for operation `op` off its queue (if it is
    /// still there); `selected`: the select's context was won for `op`.
    fn unregister(&self, send: bool, packet: &Arc<Packet>, op: usize, selected: bool) {
        if selected && packet.state() != WAITING {
            // Claimed or done, as this operation: whoever did that took
            // its entry off the queue first, under the lock (the packet
            // leaves `WAITING` only then). The state is the packet's, which
            // the select's other operations share: theirs are still queued.
            return;
        }
        let mut state = self.lock();
        let queue = if send {
            &mut state.senders
        } else {
            &mut state.receivers
        };
        if remove(queue, packet, op) {
            state.version += 1;
        }
    }

    /// Whether a partner waits for `own`'s operation on this side.
    fn is_ready(&self, send: bool, own: Option<&Arc<Waiter>>) -> bool {
        let state = self.lock();
        let queue = if send {
            &state.receivers
        } else {
            &state.senders
        };
        queue.iter().any(|(p, _)| p.available(own))
    }

    fn version(&self) -> u64 {
        self.lock().version
    }

    fn wake_all(&self) {
        let state = self.lock();
        for (p, _) in state.senders.iter().chain(&state.receivers) {
            match &p.select {
                Some(waiter) => waiter.disconnect(),
                // SAFETY: a plain packet's waker is set at creation.
                None => unsafe { p.wake() },
            }
        }
    }

    /// Waits until the partner completes the exchange of `packet`, queued
    /// in the queue `queue` picks, or until the wait is cut short (by the
    /// deadline, `gone()` or a cancellation): then withdraws the packet,
    /// unless the exchange happened (or is under way) meanwhile, which
    /// wins. Never unwinds: a cancellation is returned, for the caller to
    /// raise once its frame is no longer lent out.
    ///
    /// A lazy send's packet (see `send_lazy`) is done waiting once a
    /// receiver has paired with it (`CLAIMED`), plain ones at `DONE`:
    /// `done` says which.
    fn wait_exchange(
        &self,
        packet: &Arc<Packet>,
        queue: fn(&mut ZeroState) -> &mut VecDeque<Entry>,
        deadline: Option<Instant>,
        gone: impl Fn() -> bool,
        done: u8,
    ) -> Result<(), Withdrawn> {
        loop {
            match packet.state() {
                s if s == done => return Ok(()),
                // A select paired with us and dropped its operation: the
                // caller starts over, so as to meet a partner that queued
                // up meanwhile (review: re-queueing here left both waiting).
                ABANDONED => return Err(Withdrawn::Abandoned),
                _ => {}
            }
            // One evaluation answers both questions: asked apart, a timeout
            // expiring between them would be neither pending nor a deadline
            // to wake at (see `park::pending_or_deadline`).
            let (cancelled, scope_deadline) = match park::pending_or_deadline() {
                Err(cause) => (Some(cause), None),
                Ok(at) => (None, at),
            };
            let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
            if cancelled.is_some() || timed_out || gone() {
                let removed = {
                    let mut state = self.lock();
                    let removed = remove(queue(&mut state), packet, 0);
                    if removed {
                        state.version += 1;
                    }
                    removed
                };
                if !removed {
                    // Taken off the queue by a partner, which completed the
                    // exchange under the lock we just held, or paired with
                    // us (a select whose message is on its way): that wins.
                    // A lazy send was paired with, under that lock: it
                    // builds its message now.
                    if done == CLAIMED || Packet::wait_delivered(packet.clone()) {
                        return Ok(());
                    }
                    // Abandoned: nothing was exchanged, we may leave.
                }
                return Err(match cancelled {
                    Some(cause) => Withdrawn::Cancelled(cause),
                    None if timed_out => Withdrawn::Timeout,
                    None => Withdrawn::Disconnected,
                });
            }
            // Shielded, so a cancellation wakes us instead of unwinding
            // from here; it is seen at the top of the loop.
            let wake_at = match (deadline, scope_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            park::park_shielded(wake_at);
        }
    }

    /// Sends the message at `src`, waiting for a receiver to take it.
    ///
    /// # Safety
    ///
    /// As `Chan::send_raw`. The message stays in the caller's frame while
    /// it waits; a receiver copies it from there.
    unsafe fn send(
        &self,
        chan: &Chan<T>,
        src: *const T,
        deadline: Option<Instant>,
    ) -> Result<(), SendFail> {
        if chan.receivers_gone() {
            return Err(SendFail::Disconnected);
        }
        let mut again = false;
        loop {
            // Hand over to a waiting receiver, or queue up: in one critical
            // section, so a receiver cannot queue up between the two.
            // SAFETY: as this function's contract.
            let Some(state) = (unsafe { self.send_locked(self.lock(), src) }) else {
                return Ok(());
            };
            // A wait on a scheduler's loop panics (a hand-over to a waiting
            // receiver above does not wait); find out before lending, and
            // without the lock.
            if park::on_scheduler_loop() {
                drop(state);
                park::scheduler_wait();
            }
            let packet = Packet::new(src.cast_mut().cast(), None);
            // The caller's frame is lent out from the push below until the
            // packet leaves the queue; nothing unwinds before that (see
            // `wait_exchange`), and the guard makes sure of it from the start.
            let lent = AbortOnUnwind("a rendezvous send");
            self.queue_sender(chan, state, &packet, again);
            let outcome = self.wait_exchange(
                &packet,
                |s| &mut s.senders,
                deadline,
                || chan.receivers_gone(),
                DONE,
            );
            lent.disarm();
            Packet::recycle(packet);
            return match outcome {
                Ok(()) => Ok(()),
                Err(Withdrawn::Cancelled(cause)) => Cancelled::raise(cause),
                Err(Withdrawn::Timeout) => Err(SendFail::Timeout),
                Err(Withdrawn::Disconnected) => Err(SendFail::Disconnected),
                Err(Withdrawn::Abandoned) => {
                    again = true;
                    continue;
                }
            };
        }
    }

    /// Receives into `dst`, waiting for a sender.
    ///
    /// # Safety
    ///
    /// As `Chan::recv_raw`. A sender copies its message into `dst` while
    /// the caller waits.
    unsafe fn recv(
        &self,
        chan: &Chan<T>,
        dst: *mut T,
        deadline: Option<Instant>,
    ) -> Result<(), RecvTimeoutError> {
        park::refuse_scheduler_loop();
        let mut again = false;
        loop {
            // Take a waiting message, or queue up, in one critical section.
            let lent;
            let packet = loop {
                // SAFETY: as this function's contract.
                let mut state = match unsafe { self.recv_locked(self.lock(), dst) } {
                    Taken::Done => return Ok(()),
                    Taken::Claimed(p) => {
                        if Packet::wait_delivered(p) {
                            return Ok(());
                        }
                        continue;
                    }
                    Taken::Empty(state) => state,
                };
                if chan.senders_gone() {
                    return Err(RecvTimeoutError::Disconnected);
                }
                let packet = Packet::new(dst.cast(), None);
                // Armed before the frame is lent out by the push (see `send`).
                lent = AbortOnUnwind("a rendezvous receive");
                self.enqueue(&mut state, false, &packet, 0, again);
                break packet;
            };
            chan.send_wait.notify_all(); // a `Select` may wait for readiness
            let outcome = self.wait_exchange(
                &packet,
                |s| &mut s.receivers,
                deadline,
                || chan.senders_gone(),
                DONE,
            );
            lent.disarm();
            Packet::recycle(packet);
            return match outcome {
                Ok(()) => Ok(()),
                Err(Withdrawn::Cancelled(cause)) => Cancelled::raise(cause),
                Err(Withdrawn::Timeout) => Err(RecvTimeoutError::Timeout),
                Err(Withdrawn::Disconnected) => Err(RecvTimeoutError::Disconnected),
                Err(Withdrawn::Abandoned) => {
                    again = true;
                    continue;
                }
            };
        }
    }
}

#[cfg(test)]
impl<T> Chan<T> {
    /// How many entries a rendezvous channel's senders' and receivers'
    /// queues hold (for tests: a select that returned left none behind).
    pub(crate) fn rendezvous_queued(&self) -> (usize, usize) {
        match &self.flavor {
            Flavor::Zero(z) => {
                let state = z.lock();
                (state.senders.len(), state.receivers.len())
            }
            _ => (0, 0),
        }
    }
}

/// What a `Select` got for a send operation it selected.
pub(crate) enum SendToken {
    /// A queue with room reserved for this send (see `queue::Ring`), or an
    /// unbounded one: `SelectedOperation::send` sends without waiting.
    Room,
    /// Every receiver is gone.
    Disconnected,
    /// A rendezvous partner, paired and waiting for the message.
    Paired(Arc<Packet>),
}

/// A `Select`'s registration on one channel: on its waiting list, or for
/// a rendezvous, an entry of the select's packet in its queue.
pub(crate) enum Reg<'a> {
    List(Registration<'a>),
    Zero,
}

/// The channel operations a `Select` needs, with the message type erased.
pub(crate) trait SelectHandle {
    /// The channel's identity.
    fn addr(&self) -> *const ();
    /// Drops a received message at the pointer.
    fn msg_drop(&self) -> unsafe fn(*mut u8);
    /// Receives into `dst` if that needs no waiting (a rendezvous with a
    /// select's send waits for its message, not cancellably).
    ///
    /// # Safety
    ///
    /// `dst` is room for a message, aligned; on `Done` it holds one.
    unsafe fn sel_try_recv(&self, dst: *mut u8) -> Try;
    /// Claims a send that can proceed now.
    fn sel_try_send(&self) -> Option<SendToken>;
    /// Registers operation `op` of `waiter`; `room` is where a rendezvous
    /// receive's message goes, lent until the registration ends. A
    /// rendezvous registers the select's packet, `shared` (made at its
    /// first one: see `Packet::for_select`). Also tells whether the
    /// operation could proceed once registered (as `sel_ready`): if not,
    /// whatever makes it ready later finds the registration.
    fn sel_register<'a>(
        &'a self,
        send: bool,
        waiter: &Arc<Waiter>,
        op: usize,
        room: *mut u8,
        shared: &mut Option<Arc<Packet>>,
    ) -> (Reg<'a>, bool);
    /// Ends the registration of operation `op` (`selected`: the select's
    /// context was won for it). Tells whether a queue's notification came
    /// for it, and whether it was a rendezvous's (of the packet `shared`).
    fn sel_unregister(
        &self,
        send: bool,
        reg: Reg<'_>,
        op: usize,
        selected: bool,
        shared: Option<&Arc<Packet>>,
    ) -> (bool, bool);
    /// Whether the operation could proceed now (a rendezvous partner that
    /// is not `own`'s).
    fn sel_ready(&self, send: bool, own: Option<&Arc<Waiter>>) -> bool;
    /// Counters that change whenever readiness may change.
    fn sel_version(&self) -> [u64; 4];
    /// For a timer's receive: when its message is due (nobody wakes a
    /// select for it; the select parks no later than that and looks again).
    fn sel_due(&self, send: bool) -> Option<Instant>;
    /// The list that wakes a select waiting for readiness.
    fn sel_watch(&self, send: bool) -> &WaitList;
    /// Gives back the room a selected send reserved (`SendToken::Room`)
    /// and did not use.
    fn sel_release(&self);
}

/// Drops the `T` at `p`.
///
/// # Safety
///
/// `p` holds a `T` the caller owns.
unsafe fn drop_erased<T>(p: *mut u8) {
    // SAFETY: per the contract.
    unsafe { ptr::drop_in_place(p.cast::<T>()) }
}

impl<T> SelectHandle for Chan<T> {
    fn addr(&self) -> *const () {
        ptr::from_ref(self).cast()
    }

    fn msg_drop(&self) -> unsafe fn(*mut u8) {
        drop_erased::<T>
    }

    unsafe fn sel_try_recv(&self, dst: *mut u8) -> Try {
        // SAFETY: as this function's contract.
        unsafe { self.try_recv_raw(dst.cast::<T>()) }
    }

    fn sel_try_send(&self) -> Option<SendToken> {
        if self.receivers_gone() {
            return Some(SendToken::Disconnected);
        }
        match &self.flavor {
            Flavor::Array(q) => match q.reserve() {
                Try::Done => Some(SendToken::Room),
                Try::NotReady => None,
                Try::Disconnected => Some(SendToken::Disconnected),
            },
            Flavor::List(_) => Some(SendToken::Room),
            Flavor::Zero(z) => z.try_claim_receiver().map(SendToken::Paired),
            // Nothing sends on a timer: it has no `Sender`.
            _ => None,
        }
    }

    fn sel_register<'a>(
        &'a self,
        send: bool,
        waiter: &Arc<Waiter>,
        op: usize,
        room: *mut u8,
        shared: &mut Option<Arc<Packet>>,
    ) -> (Reg<'a>, bool) {
        match &self.flavor {
            Flavor::Zero(z) => {
                let packet = Packet::for_select(shared, waiter, room);
                let partner = z.register(send, packet, waiter, op);
                // A select waiting for readiness on the other side.
                if send {
                    self.recv_wait.notify_all();
                } else {
                    self.send_wait.notify_all();
                }
                // Disconnection is read after the registration, which
                // `wake_all` would find.
                let gone = if send {
                    self.receivers_gone()
                } else {
                    self.senders_gone()
                };
                (Reg::Zero, partner || gone)
            }
            _ => {
                let list = if send {
                    &self.send_wait
                } else {
                    &self.recv_wait
                };
                let reg = Reg::List(Registration::for_op(list, waiter, op));
                (reg, self.sel_ready(send, Some(waiter)))
            }
        }
    }

    fn sel_unregister(
        &self,
        send: bool,
        reg: Reg<'_>,
        op: usize,
        selected: bool,
        shared: Option<&Arc<Packet>>,
    ) -> (bool, bool) {
        match (reg, &self.flavor, shared) {
            (Reg::List(r), _, _) => (r.leave(), false),
            (Reg::Zero, Flavor::Zero(z), Some(packet)) => {
                z.unregister(send, packet, op, selected);
                (false, true)
            }
            (Reg::Zero, _, _) => unreachable!("a rendezvous registration without its packet"),
        }
    }

    fn sel_ready(&self, send: bool, own: Option<&Arc<Waiter>>) -> bool {
        if send {
            self.receivers_gone()
                || match &self.flavor {
                    Flavor::Array(q) => q.has_room(),
                    Flavor::List(_) => true,
                    Flavor::Zero(z) => z.is_ready(true, own),
                    _ => false,
                }
        } else {
            self.len() > 0
                || self.senders_gone()
                || match &self.flavor {
                    Flavor::Zero(z) => z.is_ready(false, own),
                    _ => false,
                }
        }
    }

    fn sel_version(&self) -> [u64; 4] {
        let (a, b) = match &self.flavor {
            Flavor::Array(q) => q.positions(),
            Flavor::List(q) => q.positions(),
            Flavor::Zero(z) => (z.version(), 0),
            Flavor::At { taken, .. } => (u64::from(taken.load(Ordering::SeqCst)), 0),
            Flavor::Tick { next, .. } => (next.load(Ordering::SeqCst), 0),
            Flavor::Never => (0, 0),
        };
        [
            a,
            b,
            self.senders.load(Ordering::SeqCst) as u64,
            self.receivers.load(Ordering::SeqCst) as u64,
        ]
    }

    fn sel_due(&self, send: bool) -> Option<Instant> {
        if send { None } else { self.due() }
    }

    fn sel_watch(&self, send: bool) -> &WaitList {
        if send {
            &self.send_wait
        } else {
            &self.recv_wait
        }
    }

    fn sel_release(&self) {
        if let Flavor::Array(q) = &self.flavor {
            q.release();
            // Room a waiting sender may take.
            self.send_wait.notify_one();
        }
    }
}

/// The sending half of a channel. Clone it for more producers; the channel
/// disconnects for receivers when the last one is dropped.
///
/// # Cancellation
///
/// A blocking send is a cancellation point while it waits. Cut short (by a
/// [`timeout`](crate::timeout) or a cancellation), it sent nothing, and the
/// message is dropped with the unwind ([`send_timeout`](Sender::send_timeout)
/// hands it back instead). A send whose message was taken returns `Ok`,
/// whatever happens to the timeout after that; for a rendezvous channel
/// that is the moment the receiver copies it. A cancellation that arrives
/// then is raised at the next suspension point. So after
/// `timeout(t, || tx.send(v))` returns `Err(Elapsed)`, `v` was not
/// delivered, and sending it again does not deliver it twice.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let (tx, rx) = stackful::sync::channel::<u32>(0);
/// let receiver = stackful::spawn(move || rx.recv());
/// // Retrying after a timeout never delivers twice.
/// while stackful::timeout(Duration::from_millis(10), || tx.send(7)).is_err() {}
/// assert_eq!(receiver.join().unwrap(), Ok(7));
/// ```
///
/// Both ends are `Send` and `Sync` only for messages that are `Send`:
///
/// ```compile_fail,E0277
/// let (tx, _rx) = stackful::sync::unbounded::<std::rc::Rc<u8>>();
/// std::thread::spawn(move || drop(tx)); // error: `Rc` cannot be sent between threads
/// ```
pub struct Sender<T> {
    pub(crate) chan: Arc<Chan<T>>,
    /// The `Sink`'s one send operation, allocated at its first use and
    /// kept for every message: the room `poll_ready` reserved, or a
    /// rendezvous message `start_send` took that no receiver has yet.
    #[cfg(feature = "futures")]
    sink: Exclusive<Option<Box<SendOp<T>>>>,
}

/// The receiving half of a channel. Clone it for more consumers; the
/// channel disconnects for senders when the last one is dropped.
///
/// # Cancellation
///
/// A blocking receive is a cancellation point while it waits. Cut short,
/// it received nothing, and every message stays in the channel for the
/// next receiver. A rendezvous receive that was handed a message returns
/// it, whatever happens to its timeout after that; a cancellation that
/// arrives then is raised at the next suspension point.
///
/// One wait is not cut short: a rendezvous receive that paired with a
/// `select!`'s send arm waits, not cancellably, while the sender builds
/// the message (its expression runs only once the arm is chosen). Its
/// timeout or cancellation takes effect once that expression returns; a
/// message expression that itself waits for the receiver to give up hangs
/// both.
///
/// # Dropping the last receiver
///
/// The channel then disconnects for senders, and the messages still queued
/// are dropped at once, on the dropping thread: a value with a destructor
/// does not outlive every reader. Senders waiting for room wake up with
/// [`SendError`] and their message back, as does every later send. If a
/// message's destructor panics, the others are dropped all the same and
/// the first panic then continues from the drop of the receiver (later
/// ones are discarded, where a `Vec` would abort); if the dropping thread
/// is already unwinding, all of them are discarded, since a second unwind
/// would abort the process.
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
///
/// let (tx, rx) = stackful::sync::unbounded();
/// let shared = Rc::new(());
/// tx.send(shared.clone()).unwrap();
/// assert_eq!(Rc::strong_count(&shared), 2);
/// drop(rx); // the queued clone goes too
/// assert_eq!(Rc::strong_count(&shared), 1);
/// assert!(tx.send(shared.clone()).is_err());
/// ```
pub struct Receiver<T> {
    pub(crate) chan: Arc<Chan<T>>,
    /// The wait of `Stream::poll_next`, between polls.
    #[cfg(feature = "futures")]
    stream: Option<Box<RecvOp<T>>>,
}

/// `Ok` with the message at `p`, read out. A frame of its own, so that the
/// caller's holds no second copy (see the module docs).
///
/// # Safety
///
/// `p` holds a message the caller owns and will not use again.
#[inline(never)]
unsafe fn read_ok<T, E>(p: *const T) -> Result<T, E> {
    // SAFETY: per the contract.
    Ok(unsafe { p.read() })
}

/// `Some` with the message at `p`, read out; as [`read_ok`].
///
/// # Safety
///
/// As [`read_ok`].
#[inline(never)]
unsafe fn read_some<T>(p: *const T) -> Option<T> {
    // SAFETY: per the contract.
    Some(unsafe { p.read() })
}

/// The bytes of a message that failed to send, set aside so that the
/// caller's `value` can be forgotten before the error that returns the
/// message is built (in a frame of its own): with a by-value parameter,
/// each call that consumes it costs a copy on the stack in a debug build,
/// so `send` consumes its `value` at one call only, `mem::forget`. Small
/// messages are kept inline; large ones go to the heap (on failure only).
#[allow(clippy::large_enum_variant)] // inline on purpose: no allocation for small messages
pub(crate) enum Spill<T> {
    Inline(SpillBuf, PhantomData<T>),
    Boxed(Box<T>),
}

/// Room for a small message.
#[repr(C, align(16))]
pub(crate) struct SpillBuf([MaybeUninit<u8>; 256]);

impl<T> Spill<T> {
    const INLINE: bool =
        size_of::<T>() <= size_of::<SpillBuf>() && align_of::<T>() <= align_of::<SpillBuf>();

    /// Copies the message at `p`, which the caller then forgets.
    ///
    /// # Safety
    ///
    /// `p` holds a message the caller owns; it must forget it (the copy
    /// owns the message now) without unwinding before that.
    unsafe fn copy_of(p: *const T) -> Spill<T> {
        if Self::INLINE {
            let mut buf = SpillBuf([MaybeUninit::uninit(); 256]);
            // SAFETY: `buf` has room for a `T`, aligned (`INLINE`).
            unsafe { ptr::copy_nonoverlapping(p, buf.0.as_mut_ptr().cast::<T>(), 1) };
            Spill::Inline(buf, PhantomData)
        } else {
            let mut boxed = Box::<T>::new_uninit();
            // SAFETY: the box has room for a `T`, and now holds one.
            unsafe {
                ptr::copy_nonoverlapping(p, boxed.as_mut_ptr(), 1);
                Spill::Boxed(boxed.assume_init())
            }
        }
    }

    fn into_inner(self) -> T {
        match self {
            // SAFETY: `copy_of` put a message there, read out once.
            Spill::Inline(buf, _) => unsafe { buf.0.as_ptr().cast::<T>().read() },
            Spill::Boxed(boxed) => *boxed,
        }
    }
}

/// The errors that hand a message back, built in frames of their own (see
/// the module docs).
#[cold]
#[inline(never)]
pub(crate) fn send_error<T>(back: Spill<T>) -> Result<(), SendError<T>> {
    Err(SendError(back.into_inner()))
}

#[cold]
#[inline(never)]
fn try_send_error<T>(back: Spill<T>, outcome: Try) -> Result<(), TrySendError<T>> {
    let value = back.into_inner();
    Err(match outcome {
        Try::Disconnected => TrySendError::Disconnected(value),
        _ => TrySendError::Full(value),
    })
}

#[cold]
#[inline(never)]
fn send_timeout_error<T>(back: Spill<T>, fail: SendFail) -> Result<(), SendTimeoutError<T>> {
    let value = back.into_inner();
    Err(match fail {
        SendFail::Timeout => SendTimeoutError::Timeout(value),
        SendFail::Disconnected => SendTimeoutError::Disconnected(value),
    })
}

/// What [`Sender::send_or_spill`] did: `Ok(None)` sent; `Ok(Some(..))`
/// failed, with the message set aside; `Err(payload)` was cut short by an
/// unwind, which the caller resumes after forgetting its copy.
pub(crate) type SendOutcome<T> = Result<Option<(Spill<T>, SendFail)>, Box<dyn Any + Send>>;

impl<T> Sender<T> {
    /// Sends `value`, waiting while the channel is full (for a rendezvous
    /// channel, until a receiver takes it). A cancellation point; see
    /// [Cancellation](Sender#cancellation).
    ///
    /// # Errors
    ///
    /// [`SendError`] with the value if every receiver is gone.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        // SAFETY: `value` is ours, and forgotten at once (see `send_or_spill`).
        let back = unsafe { self.send_or_spill(&raw const value, None) };
        std::mem::forget(value);
        let back = back.unwrap_or_else(|payload| panic::resume_unwind(payload));
        match back {
            None => Ok(()),
            Some((back, _)) => send_error(back),
        }
    }

    /// Sends without waiting.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] if there is no room (or no receiver waiting on
    /// a rendezvous channel), [`TrySendError::Disconnected`] if every receiver
    /// is gone; both hand the value back.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        // SAFETY: `value` is ours; on `Done` its bytes moved into the
        // channel, otherwise into `back`; either way it is forgotten just
        // after, with nothing that unwinds between (see `Spill`).
        let outcome = unsafe { self.chan.try_send_raw(&raw const value) };
        let back = match outcome {
            Try::Done => None,
            // SAFETY: not sent, so still ours; forgotten just below.
            _ => Some(unsafe { Spill::copy_of(&raw const value) }),
        };
        std::mem::forget(value);
        match back {
            None => Ok(()),
            Some(back) => try_send_error(back, outcome),
        }
    }

    /// Sends, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] or [`SendTimeoutError::Disconnected`],
    /// with the value.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        let deadline = Instant::now().checked_add(timeout);
        // SAFETY: as in `send`.
        let back = unsafe { self.send_or_spill(&raw const value, deadline) };
        std::mem::forget(value);
        let back = back.unwrap_or_else(|payload| panic::resume_unwind(payload));
        match back {
            None => Ok(()),
            Some((back, fail)) => send_timeout_error(back, fail),
        }
    }

    /// Sends, waiting until `deadline` at the latest (`None`: no deadline).
    ///
    /// # Errors
    ///
    /// As [`send_timeout`](Sender::send_timeout).
    pub fn send_deadline(
        &self,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        // SAFETY: as in `send`.
        let back = unsafe { self.send_or_spill(&raw const value, deadline) };
        std::mem::forget(value);
        let back = back.unwrap_or_else(|payload| panic::resume_unwind(payload));
        match back {
            None => Ok(()),
            Some((back, fail)) => send_timeout_error(back, fail),
        }
    }

    /// Sends the message at `p`, waiting until `deadline` at the latest;
    /// on failure returns its bytes, set aside (see [`SendOutcome`]). Either way the message is
    /// no longer at `p`, and the caller forgets it there, at once. (The
    /// public functions share this, not each other: passing the message on
    /// by value would cost a copy on the stack in a debug build.)
    ///
    /// If the wait is cut short by an unwind (a cancellation), the message
    /// is dropped here, in a shield and under `catch_unwind`, and the
    /// unwind's payload is returned as `Err`: the caller forgets its copy
    /// and then resumes the unwind. Dropped during the unwind instead, a
    /// message whose destructor panics would abort the process.
    ///
    /// # Safety
    ///
    /// `p` holds a message the caller owns, which the caller forgets when
    /// this returns.
    pub(crate) unsafe fn send_or_spill(
        &self,
        p: *const T,
        deadline: Option<Instant>,
    ) -> SendOutcome<T> {
        // The common case first, outside the unwind guard: room in a
        // queue. Nothing here unwinds or waits. (A rendezvous pairs or
        // queues under one lock in `send_raw`: no separate try.)
        let queue = !matches!(self.chan.flavor, Flavor::Zero(_));
        // SAFETY: per the contract: on `Done` the message moved.
        if queue && unsafe { self.chan.try_send_raw(p) } == Try::Done {
            return Ok(None);
        }
        // SAFETY: per the contract: on `Ok` the message moved into the
        // channel; otherwise (an error or an unwind) it is still at `p`.
        let sent = panic::catch_unwind(AssertUnwindSafe(|| unsafe {
            self.chan.send_raw(p, deadline, queue)
        }));
        match sent {
            Ok(Ok(())) => Ok(None),
            // SAFETY: not sent, so still the caller's, who forgets it.
            Ok(Err(fail)) => Ok(Some((unsafe { Spill::copy_of(p) }, fail))),
            Err(payload) => {
                let dropped = crate::time::shield(|| {
                    // SAFETY: not sent, so still ours to drop, once: the
                    // caller forgets it.
                    panic::catch_unwind(AssertUnwindSafe(|| unsafe {
                        ptr::drop_in_place(p.cast_mut())
                    }))
                });
                if let Err(again) = dropped {
                    crate::task::raw::discard_payload(again);
                }
                Err(payload)
            }
        }
    }

    /// Messages in the channel now.
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether the channel holds no message now.
    pub fn is_empty(&self) -> bool {
        self.chan.len() == 0
    }

    /// Whether the channel is full now: a bounded channel at capacity, or
    /// always for a rendezvous channel (which holds no message); never for
    /// an unbounded one.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = stackful::sync::channel::<u8>(1);
    /// assert!(!tx.is_full());
    /// tx.send(1).unwrap();
    /// assert!(tx.is_full() && rx.is_full());
    /// ```
    pub fn is_full(&self) -> bool {
        self.chan
            .capacity()
            .is_some_and(|cap| self.chan.len() >= cap)
    }

    /// The capacity: `None` for an unbounded channel, `Some(0)` for a rendezvous.
    pub fn capacity(&self) -> Option<usize> {
        self.chan.capacity()
    }

    /// Whether `self` and `other` send into the same channel.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = stackful::sync::unbounded::<i32>();
    /// let (other, _other_rx) = stackful::sync::unbounded::<i32>();
    /// assert!(tx.same_channel(&tx.clone()));
    /// assert!(!tx.same_channel(&other));
    /// ```
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> Receiver<T> {
    /// Receives a message, waiting until one arrives. A cancellation point;
    /// see [Cancellation](Receiver#cancellation).
    ///
    /// # Errors
    ///
    /// [`RecvError`] once the channel is empty and every sender is gone.
    pub fn recv(&self) -> Result<T, RecvError> {
        let mut slot = MaybeUninit::<T>::uninit();
        // SAFETY: `slot` is ours to write.
        match unsafe { self.chan.recv_raw(slot.as_mut_ptr(), None) } {
            // SAFETY: `Ok`: `slot` holds a message, read out once.
            Ok(()) => unsafe { read_ok(slot.as_ptr()) },
            Err(_) => Err(RecvError),
        }
    }

    /// Receives without waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] or [`TryRecvError::Disconnected`].
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let mut slot = MaybeUninit::<T>::uninit();
        // SAFETY: as in `recv`.
        match unsafe { self.chan.try_recv_raw(slot.as_mut_ptr()) } {
            // SAFETY: `Done`: `slot` holds a message, read out once.
            Try::Done => unsafe { read_ok(slot.as_ptr()) },
            Try::NotReady => Err(TryRecvError::Empty),
            Try::Disconnected => Err(TryRecvError::Disconnected),
        }
    }

    /// Receives, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] or [`RecvTimeoutError::Disconnected`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_until(Instant::now().checked_add(timeout))
    }

    /// Receives, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Receiver::recv_timeout).
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_until(Some(deadline))
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let mut slot = MaybeUninit::<T>::uninit();
        // SAFETY: as in `recv`.
        match unsafe { self.chan.recv_raw(slot.as_mut_ptr(), deadline) } {
            // SAFETY: `Ok`: `slot` holds a message, read out once.
            Ok(()) => unsafe { read_ok(slot.as_ptr()) },
            Err(e) => Err(e),
        }
    }

    /// The next message for the iterators: `None` once disconnected.
    fn next_message(&self) -> Option<T> {
        let mut slot = MaybeUninit::<T>::uninit();
        // SAFETY: as in `recv`.
        match unsafe { self.chan.recv_raw(slot.as_mut_ptr(), None) } {
            // SAFETY: `Ok`: `slot` holds a message, read out once.
            Ok(()) => unsafe { read_some(slot.as_ptr()) },
            Err(_) => None,
        }
    }

    /// Messages in the channel now.
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether the channel holds no message now.
    pub fn is_empty(&self) -> bool {
        self.chan.len() == 0
    }

    /// Whether the channel is full now: a bounded channel at capacity, or
    /// always for a rendezvous channel (which holds no message); never for
    /// an unbounded one.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = stackful::sync::channel::<u8>(1);
    /// assert!(!tx.is_full());
    /// tx.send(1).unwrap();
    /// assert!(tx.is_full() && rx.is_full());
    /// ```
    pub fn is_full(&self) -> bool {
        self.chan
            .capacity()
            .is_some_and(|cap| self.chan.len() >= cap)
    }

    /// The capacity: `None` for an unbounded channel, `Some(0)` for a rendezvous.
    pub fn capacity(&self) -> Option<usize> {
        self.chan.capacity()
    }

    /// Whether `self` and `other` receive from the same channel.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = stackful::sync::channel::<i32>(1);
    /// let (_other_tx, other) = stackful::sync::channel::<i32>(1);
    /// assert!(rx.same_channel(&rx.clone()));
    /// assert!(!rx.same_channel(&other));
    /// ```
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }

    /// An iterator that waits for each message and ends when the channel is
    /// empty and disconnected.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// An iterator over the messages there now; it never waits.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.senders.fetch_add(1, Ordering::Relaxed);
        Sender::from_chan(self.chan.clone())
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.chan.receivers.fetch_add(1, Ordering::Relaxed);
        Receiver::from_chan(self.chan.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.chan.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.chan.disconnect();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if self.chan.receivers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.chan.disconnect_receivers();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// A waiting iterator over received messages; see [`Receiver::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.rx.next_message()
    }
}

/// A non-waiting iterator; see [`Receiver::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

/// An owning waiting iterator; see `IntoIterator for Receiver`.
#[derive(Debug)]
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.rx.next_message()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;

    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}

impl<T> Sender<T> {
    fn from_chan(chan: Arc<Chan<T>>) -> Sender<T> {
        Sender {
            chan,
            #[cfg(feature = "futures")]
            sink: Exclusive(None),
        }
    }

    /// [`send`](Sender::send) for async code: a future with the same
    /// output, which waits (for room, or at a rendezvous for a receiver)
    /// without blocking the thread that polls it, on any executor, while
    /// blocking and async senders and receivers use the channel at the
    /// same time.
    ///
    /// # Cancellation
    ///
    /// On a bounded or unbounded channel the message moves into the
    /// channel only inside a poll that then returns `Ready`: a future
    /// dropped before it completed sent nothing, and the message goes with
    /// it, as with a cancelled blocking send. At a rendezvous (`channel(0)`)
    /// the pending future offers its message to receivers, and one may take
    /// it at any moment, as a rendezvous sender's frame is read by the
    /// receiver: a future dropped after its first poll either had its
    /// message taken (it was delivered, once) or sent nothing and drops it.
    /// Nothing is lost or delivered twice by the channel, but a caller that
    /// retries after, say, a `tokio::time::timeout` of a rendezvous send
    /// may deliver twice; use a bounded channel for that, or a blocking
    /// send inside [`timeout`](crate::timeout), which tells the two apart.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the value if every receiver is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = stackful::sync::channel::<u32>(0); // a rendezvous
    /// let green = std::thread::spawn(move || stackful::run(move || rx.recv().unwrap()));
    /// futures::executor::block_on(tx.send_async(7)).unwrap();
    /// assert_eq!(green.join().unwrap(), 7);
    /// ```
    pub fn send_async(&self, value: T) -> SendFuture<'_, T> {
        SendFuture {
            sender: self,
            op: SendOp::new(value),
        }
    }
}

impl<T> Receiver<T> {
    fn from_chan(chan: Arc<Chan<T>>) -> Receiver<T> {
        Receiver {
            chan,
            #[cfg(feature = "futures")]
            stream: None,
        }
    }

    /// [`recv`](Receiver::recv) for async code: a future with the same
    /// output, which waits without blocking the thread that polls it, on
    /// any executor, while blocking and async senders and receivers use the
    /// channel at the same time.
    ///
    /// It takes a message only when it completes, so dropping it before
    /// loses none: the messages stay in the channel for other receivers.
    /// On a rendezvous channel it takes the message of a waiting sender; a
    /// blocking [`try_send`](Sender::try_send) does not count it as a
    /// receiver waiting.
    ///
    /// # Errors
    ///
    /// [`RecvError`] once the channel is empty and every sender is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = stackful::sync::channel::<u32>(1);
    /// let green = std::thread::spawn(move || stackful::run(move || {
    ///     for i in 0..3 {
    ///         tx.send(i).unwrap();
    ///     }
    /// }));
    /// let got = futures::executor::block_on(async {
    ///     let mut got = Vec::new();
    ///     while let Ok(v) = rx.recv_async().await {
    ///         got.push(v);
    ///     }
    ///     got
    /// });
    /// assert_eq!(got, [0, 1, 2]);
    /// green.join().unwrap();
    /// ```
    pub fn recv_async(&self) -> RecvFuture<'_, T> {
        RecvFuture {
            receiver: self,
            op: RecvOp::default(),
        }
    }
}

/// A rendezvous send queued by an async sender: its packet points into the
/// boxed message, which stays put however the future moves.
struct ZeroSend<T> {
    packet: Arc<Packet>,
    boxed: Box<MaybeUninit<T>>,
    slot: Arc<crate::bridge::AsyncWaker>,
}

/// What a completed rendezvous send leaves for the next one of the same
/// op (a `Sink` sends many): the box, empty, and the waker slot, unshared.
struct ZeroSpare<T> {
    boxed: Box<MaybeUninit<T>>,
    slot: Arc<crate::bridge::AsyncWaker>,
}

/// An async send between polls. Cleans up on drop: leaves the wait list,
/// or takes a queued rendezvous packet back (dropping its message), or
/// gives back the room it reserved, so nothing points into it once it is
/// gone. A `Sink` keeps one for all its messages: once a send returned
/// `Ready`, another may start in the same op.
pub(crate) struct SendOp<T> {
    /// The message, until it moved (or went back in an error).
    value: Option<T>,
    /// The queue flavors' wait for room.
    wait: AsyncWait,
    /// A rendezvous packet waiting for a receiver.
    zero: Option<ZeroSend<T>>,
    /// For the next rendezvous send of the op.
    spare: Option<ZeroSpare<T>>,
    /// A `Sink`'s room in a bounded channel, reserved by `poll_ready` for
    /// the next `start_send` (see `queue::Ring`).
    reserved: bool,
    /// The channel, once the op waits on it or holds room (for the drop).
    chan: Option<Arc<Chan<T>>>,
}

// The message is never pinned: it moves in and out of the op freely.
impl<T> Unpin for SendOp<T> {}

impl<T> SendOp<T> {
    fn new(value: T) -> SendOp<T> {
        SendOp {
            value: Some(value),
            wait: AsyncWait::default(),
            zero: None,
            spare: None,
            reserved: false,
            chan: None,
        }
    }

    /// An op with nothing to send yet, for a `Sink`.
    #[cfg(feature = "futures")]
    fn idle() -> SendOp<T> {
        SendOp {
            value: None,
            wait: AsyncWait::default(),
            zero: None,
            spare: None,
            reserved: false,
            chan: None,
        }
    }

    #[track_caller]
    fn poll(&mut self, chan: &Arc<Chan<T>>, cx: &Context<'_>) -> Poll<Result<(), SendError<T>>> {
        if self.zero.is_some() {
            return self.poll_queued(chan, cx);
        }
        assert!(
            self.value.is_some(),
            "a send future was polled after it completed; await it once"
        );
        if let Flavor::Zero(z) = &chan.flavor {
            return self.start_rendezvous(chan, z, cx);
        }
        let value = &mut self.value;
        let polled = self.wait.poll(&chan.send_wait, cx, || {
            let src: *const T = value.as_ref().expect("the message, until it is sent");
            // SAFETY: `src` is the message we own; on `Done` its bytes moved
            // and the `Option` holding them is forgotten at once.
            match unsafe { chan.try_send_raw(src) } {
                Try::Done => {
                    std::mem::forget(value.take());
                    Some(Ok(()))
                }
                Try::NotReady => None,
                Try::Disconnected => Some(Err(SendError(
                    value.take().expect("the message, until it is sent"),
                ))),
            }
        });
        if polled.is_pending() && self.chan.is_none() {
            self.chan = Some(chan.clone());
        }
        polled
    }

    /// The first poll at a rendezvous: hands the message to a waiting
    /// receiver, or queues it up (boxed) for one.
    fn start_rendezvous(
        &mut self,
        chan: &Arc<Chan<T>>,
        z: &Zero<T>,
        cx: &Context<'_>,
    ) -> Poll<Result<(), SendError<T>>> {
        let value = self.value.take().expect("checked by the caller");
        if chan.receivers_gone() {
            return Poll::Ready(Err(SendError(value)));
        }
        let src = &raw const value;
        // SAFETY: `src` is the message we own; handed over (`None`), its
        // bytes moved and it is forgotten at once; otherwise untouched.
        let Some(mut state) = (unsafe { z.send_locked(z.lock(), src) }) else {
            std::mem::forget(value);
            return Poll::Ready(Ok(()));
        };
        // Still under the lock: no receiver can queue up before the push.
        // The box and the slot of an earlier send of this op serve again
        // (the slot only if nobody else holds it: a receiver waking it).
        let (mut boxed, slot) = match self.spare.take() {
            Some(ZeroSpare { mut boxed, slot }) => {
                boxed.write(value);
                let slot = if Arc::strong_count(&slot) == 1 {
                    slot.update(cx.waker());
                    slot
                } else {
                    crate::bridge::AsyncWaker::new(cx.waker())
                };
                (boxed, slot)
            }
            None => (
                Box::new(MaybeUninit::new(value)),
                crate::bridge::AsyncWaker::new(cx.waker()),
            ),
        };
        let packet = Packet::with_waker(
            boxed.as_mut_ptr().cast(),
            None,
            Some(Waker::Async(slot.clone())),
        );
        z.enqueue(&mut state, true, &packet, 0, false);
        drop(state);
        chan.recv_wait.notify_all(); // async receivers and selects wait there
        self.zero = Some(ZeroSend {
            packet,
            boxed,
            slot,
        });
        self.chan = Some(chan.clone());
        Poll::Pending
    }

    /// A later poll of a queued rendezvous send.
    fn poll_queued(&mut self, chan: &Chan<T>, cx: &Context<'_>) -> Poll<Result<(), SendError<T>>> {
        let queued = self.zero.as_ref().expect("checked by the caller");
        // The waker first, then the look (a receiver wakes after `DONE`).
        queued.slot.update(cx.waker());
        if queued.packet.state() == DONE {
            // The message moved out of the box, which serves again.
            if let Some(ZeroSend { boxed, slot, .. }) = self.zero.take() {
                self.spare = Some(ZeroSpare { boxed, slot });
            }
            self.chan = None;
            return Poll::Ready(Ok(()));
        }
        if !chan.receivers_gone() {
            return Poll::Pending;
        }
        Poll::Ready(match self.take_back() {
            Some(value) => Err(SendError(value)),
            None => Ok(()), // taken just before the last receiver left
        })
    }

    /// Takes a queued rendezvous message back, unless a receiver took it.
    fn take_back(&mut self) -> Option<T> {
        let queued = self.zero.take()?;
        let chan = self.chan.take().expect("kept while a packet is queued");
        let Flavor::Zero(z) = &chan.flavor else {
            unreachable!("a rendezvous packet on a queue")
        };
        let removed = {
            let mut state = z.lock();
            let removed = remove(&mut state.senders, &queued.packet, 0);
            if removed {
                state.version += 1;
            }
            removed
        };
        if !removed {
            // A receiver popped it, and copied the message out under the
            // lock we just held: it is theirs.
            debug_assert_eq!(queued.packet.state(), DONE);
            return None;
        }
        // SAFETY: off the queue, so no receiver reads the box any more, and
        // no receiver took the message: it is still ours, read out once (the
        // box holds a `MaybeUninit`, which it does not drop).
        Some(unsafe { queued.boxed.as_ptr().read() })
    }
}

/// The steps of a `Sink`, on its one op.
#[cfg(feature = "futures")]
impl<T> SendOp<T> {
    /// Whether a message is on its way.
    fn sending(&self) -> bool {
        self.value.is_some() || self.zero.is_some()
    }

    /// Drives the message on its way, if any, to its end.
    fn poll_flush(
        &mut self,
        chan: &Arc<Chan<T>>,
        cx: &Context<'_>,
    ) -> Poll<Result<(), SendError<T>>> {
        if !self.sending() {
            return Poll::Ready(Ok(()));
        }
        self.poll(chan, cx)
    }

    /// Flushes, then on a bounded channel waits for room and reserves it
    /// for the next `start_send`, which so never waits. Once every receiver
    /// is gone it is ready, and `start_send` hands the message back.
    fn poll_ready(
        &mut self,
        chan: &Arc<Chan<T>>,
        cx: &Context<'_>,
    ) -> Poll<Result<(), SendError<T>>> {
        match self.poll_flush(chan, cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let Flavor::Array(q) = &chan.flavor else {
            return Poll::Ready(Ok(())); // unbounded, or a rendezvous: see `start`
        };
        if self.reserved {
            return Poll::Ready(Ok(()));
        }
        let polled = self.wait.poll(&chan.send_wait, cx, || match q.reserve() {
            Try::Done => Some(true),
            Try::NotReady => None,
            Try::Disconnected => Some(false),
        });
        if self.chan.is_none() {
            self.chan = Some(chan.clone()); // for the drop: the wait, the room
        }
        match polled {
            Poll::Ready(reserved) => {
                self.reserved = reserved;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Sends `value` at once if that needs no waiting: into the room
    /// `poll_ready` reserved, an unbounded queue, or to a receiver waiting
    /// at a rendezvous. Else it goes on its way for `poll_flush` to drive:
    /// at a rendezvous it is offered to receivers from now on.
    #[track_caller]
    fn start(&mut self, chan: &Arc<Chan<T>>, value: T) -> Result<(), SendError<T>> {
        assert!(
            !self.sending(),
            "Sink::start_send on a stackful Sender whose previous message is still being sent; \
             wait for poll_ready to return Ready first"
        );
        if std::mem::take(&mut self.reserved) {
            if chan.receivers_gone() {
                chan.sel_release(); // as `try_send_raw`: refused at once
                return Err(SendError(value));
            }
            let src = &raw const value;
            // SAFETY: `src` is the message we own; on `Done` its bytes
            // moved and it is forgotten at once. The room was reserved by
            // `poll_ready` and is used up here (given back on an error).
            return match unsafe { chan.send_selected(src) } {
                Try::Done => {
                    std::mem::forget(value);
                    Ok(())
                }
                _ => Err(SendError(value)),
            };
        }
        self.value = Some(value);
        // Nobody to wake yet: the first `poll_flush` puts its waker in.
        match self.poll(chan, &Context::from_waker(std::task::Waker::noop())) {
            Poll::Ready(sent) => sent,
            Poll::Pending => Ok(()),
        }
    }

    /// Flushes, then gives back the room reserved, if any: nothing more
    /// is expected to be sent.
    fn poll_close(
        &mut self,
        chan: &Arc<Chan<T>>,
        cx: &Context<'_>,
    ) -> Poll<Result<(), SendError<T>>> {
        let flushed = self.poll_flush(chan, cx);
        if flushed.is_ready() && std::mem::take(&mut self.reserved) {
            chan.sel_release();
        }
        flushed
    }
}

impl<T> Drop for SendOp<T> {
    fn drop(&mut self) {
        if self.zero.is_some() {
            drop(self.take_back()); // a message not sent goes with the future
        } else if let Some(chan) = self.chan.take() {
            self.wait.finish(&chan.send_wait, false);
            if self.reserved {
                chan.sel_release(); // room another sender may take
            }
        }
    }
}

/// An async receive between polls; leaves the wait list on drop, passing
/// on a notification it did not use. Reusable: once it returned `Ready`,
/// it may be polled for the next message (a `Stream` keeps one).
pub(crate) struct RecvOp<T> {
    wait: AsyncWait,
    /// On a timer channel, which nobody wakes: the clock's wake-up, one
    /// per op however often it is polled.
    clock: crate::bridge::ClockWake,
    /// The channel, once the op waits on it (for the drop).
    chan: Option<Arc<Chan<T>>>,
}

impl<T> Default for RecvOp<T> {
    fn default() -> Self {
        RecvOp {
            wait: AsyncWait::default(),
            clock: crate::bridge::ClockWake::default(),
            chan: None,
        }
    }
}

impl<T> RecvOp<T> {
    fn poll(&mut self, chan: &Arc<Chan<T>>, cx: &Context<'_>) -> Poll<Result<T, RecvError>> {
        let mut slot = MaybeUninit::<T>::uninit();
        let dst = slot.as_mut_ptr();
        if chan.is_timer() {
            // The waker first, then the look: the clock firing after the
            // look wakes the task of this poll.
            self.clock.refresh(cx.waker());
            // SAFETY: `dst` is our own slot to write.
            if unsafe { chan.take_due(dst) } {
                self.clock.disarm();
                // SAFETY: `take_due` wrote a message there, read out once.
                return Poll::Ready(Ok(unsafe { slot.assume_init() }));
            }
            // Nobody sends: the clock wakes us (at once if it is due by
            // now), through one entry that a later poll re-arms only if
            // the instant changed (another receiver took a tick).
            self.clock.arm(chan.due(), cx.waker());
            return Poll::Pending;
        }
        let polled = self.wait.poll(&chan.recv_wait, cx, || {
            // SAFETY: `dst` is our own slot; it holds a message only on
            // `Done`, and the attempt that gets `Done` ends the poll.
            match unsafe { chan.try_recv_raw(dst) } {
                Try::Done => Some(Ok(())),
                Try::NotReady => None,
                Try::Disconnected => Some(Err(RecvError)),
            }
        });
        match polled {
            // SAFETY: `Done`: the slot holds a message, read out once.
            Poll::Ready(Ok(())) => Poll::Ready(Ok(unsafe { slot.assume_init() })),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if self.chan.is_none() {
                    self.chan = Some(chan.clone());
                }
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for RecvOp<T> {
    fn drop(&mut self) {
        if let Some(chan) = self.chan.take() {
            self.wait.finish(&chan.recv_wait, false);
        }
    }
}

/// The future of [`Sender::send_async`]. On a bounded or unbounded
/// channel, dropped before it completes, it sent nothing, and the message
/// goes with it; at a rendezvous, a receiver may have taken the message
/// already (see [`Sender::send_async`]).
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a, T> {
    sender: &'a Sender<T>,
    op: SendOp<T>,
}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<(), SendError<T>>;

    #[track_caller]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.op.poll(&this.sender.chan, cx)
    }
}

impl<T> fmt::Debug for SendFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendFuture").finish_non_exhaustive()
    }
}

/// The future of [`Receiver::recv_async`]. It takes a message only as it
/// completes: dropped before, it took none.
#[must_use = "futures do nothing unless polled"]
pub struct RecvFuture<'a, T> {
    receiver: &'a Receiver<T>,
    op: RecvOp<T>,
}

impl<T> Future for RecvFuture<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.op.poll(&this.receiver.chan, cx)
    }
}

impl<T> fmt::Debug for RecvFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvFuture").finish_non_exhaustive()
    }
}

/// A value reached only through `&mut` (the `Sink` methods take
/// `Pin<&mut Sender>`): sharing its owner shares no access to it, so the
/// owner stays `Sync` whatever the value is, as a `Sender` of messages that
/// are `Send` but not `Sync` must be.
#[cfg(feature = "futures")]
struct Exclusive<U>(U);

// SAFETY: `Exclusive` gives no access through `&self` (its field is read
// and written only through `&mut`, in the `Sink` methods and the drop), so
// a `&Exclusive` shared between threads reaches nothing; moving it needs
// `U: Send`, which `Send` for the owner already requires.
#[cfg(feature = "futures")]
unsafe impl<U: Send> Sync for Exclusive<U> {}

/// With the cargo feature `futures`: the messages as a stream, which ends
/// once the channel is empty and every sender is gone. A receive pending
/// between polls took no message yet, so a stream dropped mid-wait loses
/// none. The wait is allocated at the first poll and serves every message
/// after it.
///
/// # Examples
///
/// ```
/// use futures::StreamExt;
///
/// let (tx, rx) = stackful::sync::unbounded();
/// std::thread::spawn(move || stackful::run(move || (1..=3).for_each(|i| tx.send(i).unwrap())));
/// let sum: i32 = futures::executor::block_on(rx.fold(0, |a, b| async move { a + b }));
/// assert_eq!(sum, 6);
/// ```
#[cfg(feature = "futures")]
impl<T> futures_core::Stream for Receiver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        // One op for the whole stream, allocated at the first poll.
        let op = this.stream.get_or_insert_with(Box::default);
        match op.poll(&this.chan, cx) {
            Poll::Ready(Ok(msg)) => Poll::Ready(Some(msg)),
            Poll::Ready(Err(RecvError)) => {
                this.stream = None; // ended: it keeps no waker
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// With the cargo feature `futures`: a sink of messages.
///
/// `start_send` sends the message at once when that needs no waiting: into
/// an unbounded channel, into the room that `poll_ready` waited for and
/// reserved in a bounded one, or to a receiver waiting at a rendezvous. So
/// a message the sink accepted is in the channel, and is received like any
/// other, even if the `Sender` is dropped before a flush. `start_send`
/// hands the message back in a [`SendError`] if every receiver is gone.
///
/// Only at a rendezvous (`channel(0)`) can a message accepted with no
/// receiver waiting still be on its way: it is offered to receivers from
/// then on, and `poll_flush` (as well as `poll_ready` and `poll_close`)
/// waits until one takes it. If the `Sender` is dropped before that, the
/// message is withdrawn and dropped, in that drop, and never delivered,
/// unless a receiver took it first (then it was delivered, once): as a
/// [`send_async`](Sender::send_async) future dropped unfinished. If that
/// `Sender` was the last, the channel disconnects first; a receiver that
/// comes before the withdrawal still finds the message and takes it, and
/// receivers see the disconnection only once it is gone. Flush before
/// dropping a rendezvous sink to be sure of delivery.
///
/// The room `poll_ready` reserves in a bounded channel is held until the
/// next `start_send` uses it (blocking senders see one slot less
/// meanwhile), and given back by `poll_close` or when the `Sender` is
/// dropped. Closing does not disconnect the channel: dropping the last
/// sender does. The sink's state is allocated at its first use and serves
/// every message after it.
///
/// # Panics
///
/// `start_send` panics if the previous message is still being sent: call
/// `poll_ready` first, as the `Sink` contract says.
///
/// # Examples
///
/// ```
/// use futures::SinkExt;
///
/// let (mut tx, rx) = stackful::sync::channel(0);
/// let green = std::thread::spawn(move || stackful::run(move || rx.iter().collect::<Vec<_>>()));
/// futures::executor::block_on(async {
///     SinkExt::send(&mut tx, "a").await.unwrap(); // ready, start, flush
///     tx.feed("b").await.unwrap();
///     tx.close().await.unwrap();
/// });
/// drop(tx);
/// assert_eq!(green.join().unwrap(), ["a", "b"]);
///
/// // Accepted by a bounded channel's sink: in the channel, flushed or not.
/// let (mut tx, rx) = stackful::sync::channel(1);
/// futures::executor::block_on(tx.feed("c")).unwrap();
/// drop(tx);
/// assert_eq!(rx.recv(), Ok("c"));
/// ```
#[cfg(feature = "futures")]
impl<T> futures_sink::Sink<T> for Sender<T> {
    type Error = SendError<T>;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError<T>>> {
        let this = self.get_mut();
        // One op for the whole sink, allocated at the first use.
        let op = this.sink.0.get_or_insert_with(|| Box::new(SendOp::idle()));
        op.poll_ready(&this.chan, cx)
    }

    #[track_caller]
    fn start_send(self: Pin<&mut Self>, item: T) -> Result<(), SendError<T>> {
        let this = self.get_mut();
        let op = this.sink.0.get_or_insert_with(|| Box::new(SendOp::idle()));
        op.start(&this.chan, item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError<T>>> {
        let this = self.get_mut();
        match &mut this.sink.0 {
            Some(op) => op.poll_flush(&this.chan, cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError<T>>> {
        let this = self.get_mut();
        match &mut this.sink.0 {
            Some(op) => op.poll_close(&this.chan, cx),
            None => Poll::Ready(Ok(())),
        }
    }
}
