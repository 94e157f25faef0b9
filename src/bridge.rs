//! Bridges to async Rust, both ways.
//!
//! **A future on a green thread.** [`block_on`] polls a future on the
//! calling green thread and, while it is pending, suspends only that green
//! thread: its worker runs the others meanwhile. On a plain OS thread it
//! blocks the thread, like `futures::executor::block_on`. It is a
//! cancellation point: a [`cancel`](crate::JoinHandle::cancel), an expiring
//! [`timeout`](crate::timeout) or [`run`](crate::run)'s shutdown drops the
//! future by unwinding, and its destructors run.
//!
//! **A green thread from async code.** [`JoinHandle`](crate::JoinHandle) is a
//! `Future` of the green thread's outcome, so `handle.await` works on any
//! executor; the channel ends have [`send_async`](crate::sync::Sender::send_async)
//! and [`recv_async`](crate::sync::Receiver::recv_async), and there are
//! [`Event::wait_async`](crate::sync::Event::wait_async) and
//! [`Semaphore::acquire_async`](crate::sync::Semaphore::acquire_async). With
//! the cargo feature `futures`, a [`Receiver`](crate::sync::Receiver) is a
//! `futures_core::Stream` and a [`Sender`](crate::sync::Sender) a
//! `futures_sink::Sink`.
//!
//! # tokio
//!
//! Futures of `tokio::net`, `tokio::time` and the crates built on them need
//! a tokio runtime's context when they are polled. With the cargo feature
//! `tokio`, [`block_on`] enters one around every poll: the handle given to
//! `set_tokio_handle` (in this module, with the feature), else the runtime
//! the caller is already inside of, else a small runtime of its own,
//! started on first use, whose one thread drives tokio's I/O and timers. So the future itself runs on the green
//! thread (on its worker's OS thread), while tokio's threads only watch the
//! sockets and clocks and wake it. Blocking inside such a future blocks the
//! green thread's worker, as blocking inside any green thread does. Build
//! the future inside the `block_on` call (`block_on(async { .. })`): some
//! tokio constructors, such as `tokio::time::sleep`, need the context at
//! once.

use std::cell::{Cell, UnsafeCell};
use std::collections::BinaryHeap;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::task::{Context, Poll, RawWaker, RawWakerVTable};
use std::time::Instant;

use crate::runtime::{park, worker};
use crate::task::raw::{Header, TaskRef};

/// A slot holding the `std::task::Waker` of an async task that waits on one
/// of the crate's primitives: wait lists hold it as a
/// [`park::Waker::Async`], and the future puts its latest waker in at every
/// poll, before it looks at its condition.
pub(crate) struct AsyncWaker {
    waker: Mutex<Option<std::task::Waker>>,
}

impl AsyncWaker {
    pub(crate) fn new(waker: &std::task::Waker) -> Arc<AsyncWaker> {
        Arc::new(AsyncWaker {
            waker: Mutex::new(Some(waker.clone())),
        })
    }

    /// Stores `waker`, unless the one stored would wake the same task.
    pub(crate) fn update(&self, waker: &std::task::Waker) {
        let mut slot = self.waker.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            return;
        }
        let old = slot.replace(waker.clone());
        drop(slot);
        drop(old); // another executor's code: not under our lock
    }

    /// Wakes the task, once: the next poll stores a waker again. The waker
    /// is another executor's code, called outside the lock; a panic in it
    /// is discarded, since the notifier may be a scheduler's loop or hold
    /// a promise to wake others.
    pub(crate) fn wake(&self) {
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(waker) = waker
            && let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| waker.wake()))
        {
            crate::task::raw::discard_payload(payload);
        }
    }
}

/// A future's wake-up from the clock, for futures that wait on it with
/// nobody to wake them (a `recv_async` on a timer channel): at most one
/// pending entry per future in the list of a helper thread (started on
/// first use), which wakes the future's latest waker once the instant has
/// passed. A poll refreshes the waker in place; the entry changes only when
/// the instant does. The list holds its entries weakly: dropping the
/// future (or disarming) releases the waker at once, and the dead entry is
/// swept out of the list later.
#[derive(Default)]
pub(crate) struct ClockWake(Option<Arc<ClockEntry>>);

/// One armed wake-up: its instant, and the waker to wake then.
struct ClockEntry {
    at: Instant,
    waker: AsyncWaker,
}

impl ClockWake {
    /// Puts `waker` in the armed entry, if any: called before the future
    /// looks at the clock, so that an entry firing after the look wakes
    /// the task of this poll.
    pub(crate) fn refresh(&self, waker: &std::task::Waker) {
        if let Some(entry) = &self.0 {
            entry.waker.update(waker);
        }
    }

    /// Makes sure `waker` is woken once `at` has passed (`None`: never, and
    /// nothing stays armed). Called after [`refresh`](Self::refresh) and the
    /// look: an entry for the same instant stays as it is (it has the
    /// waker already, or fired after the refresh and woke it); another
    /// instant replaces it.
    pub(crate) fn arm(&mut self, at: Option<Instant>, waker: &std::task::Waker) {
        if let (Some(entry), Some(at)) = (&self.0, at)
            && entry.at == at
        {
            return;
        }
        self.0 = None; // the old entry, if any, dies with its waker
        let Some(at) = at else { return };
        let entry = Arc::new(ClockEntry {
            at,
            waker: AsyncWaker {
                waker: Mutex::new(Some(waker.clone())),
            },
        });
        clock().add(&entry);
        self.0 = Some(entry);
    }

    /// Forgets the armed entry, if any, and with it the waker.
    pub(crate) fn disarm(&mut self) {
        self.0 = None;
    }
}

/// An entry of the clock's list, ordered by instant, earliest first.
struct Due {
    at: Instant,
    entry: Weak<ClockEntry>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Due) -> bool {
        self.at == other.at
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Due) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Due) -> std::cmp::Ordering {
        other.at.cmp(&self.at) // a max-heap of the earliest
    }
}

/// The pending wake-ups from the clock.
struct Clock {
    due: Mutex<Pending>,
    /// Signalled when an entry becomes the earliest.
    changed: Condvar,
}

struct Pending {
    heap: BinaryHeap<Due>,
    /// The length at which dead entries (of futures dropped or re-armed)
    /// are swept out: twice the live ones after the last sweep, so the
    /// sweeps cost O(1) per entry added, and the list stays within twice
    /// the entries armed.
    sweep_at: usize,
}

/// The fewest entries worth a sweep.
const SWEEP_MIN: usize = 64;

impl Clock {
    fn new() -> Clock {
        Clock {
            due: Mutex::new(Pending {
                heap: BinaryHeap::new(),
                sweep_at: SWEEP_MIN,
            }),
            changed: Condvar::new(),
        }
    }

    /// Adds `entry`; wakes the helper thread if it is now the earliest.
    fn add(&self, entry: &Arc<ClockEntry>) {
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        if due.heap.len() >= due.sweep_at {
            due.heap.retain(|d| d.entry.strong_count() > 0);
            due.sweep_at = SWEEP_MIN.max(2 * due.heap.len());
        }
        due.heap.push(Due {
            at: entry.at,
            entry: Arc::downgrade(entry),
        });
        let earliest = due.heap.peek().is_some_and(|d| d.at == entry.at);
        drop(due);
        if earliest {
            self.changed.notify_one();
        }
    }

    /// The entries due at `now`, taken out of the list.
    fn take_due(due: &mut Pending, now: Instant) -> Vec<Weak<ClockEntry>> {
        let mut fire = Vec::new();
        while let Some(d) = due.heap.peek()
            && d.at <= now
        {
            fire.extend(due.heap.pop().map(|d| d.entry));
        }
        fire
    }

    /// The helper thread's loop: wakes what is due, sleeps until the next.
    fn serve(&self) -> ! {
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            let fire = Clock::take_due(&mut due, now);
            if !fire.is_empty() {
                drop(due);
                for entry in fire {
                    // A dead entry's future is gone. Another executor's
                    // code runs in `wake`, which discards its panic, and in
                    // the drop of the waker of a future dropped meanwhile:
                    // not under our lock.
                    if let Some(entry) = entry.upgrade() {
                        entry.waker.wake();
                    }
                }
                due = self.due.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            due = match due.heap.peek().map(|d| d.at) {
                None => self.changed.wait(due).unwrap_or_else(|e| e.into_inner()),
                Some(next) => {
                    let wait = next.saturating_duration_since(now);
                    match self.changed.wait_timeout(due, wait) {
                        Ok((g, _)) => g,
                        Err(e) => e.into_inner().0,
                    }
                }
            };
        }
    }
}

/// The clock's list, and its helper thread, started on first use.
fn clock() -> &'static Clock {
    static CLOCK: OnceLock<&'static Clock> = OnceLock::new();
    CLOCK.get_or_init(|| {
        let clock: &'static Clock = Box::leak(Box::new(Clock::new()));
        std::thread::Builder::new()
            .name("stackful-async-timers".into())
            .spawn(move || clock.serve())
            .unwrap_or_else(|e| panic!("stackful: could not start the async timer thread: {e}"));
        clock
    })
}

/// The token of one [`block_on`] call: what its `std::task::Waker` points
/// to. A wake only marks it `NOTIFIED`, unless the call is waiting
/// (`PARKING`): then it wakes the green thread (or OS thread) too. The call
/// clears `PARKING` as each wait ends, by return or by unwind, waiting out
/// a wake under way (`BUSY`), so a late wake never reaches another wait of
/// the same context, and a wake during a poll costs no context switch.
///
/// A token is reference counted by hand (the call holds one count, each
/// waker clone another), so that the call can tell it is the last holder
/// with a load, and lend the polls a waker of the token that owns no count.
/// A token the call leaves unshared is kept for the next call on the same
/// thread ([`SPARE`]), so a call allocates nothing and, if no waker clone
/// outlives it, touches no count but those the future's own clones take.
struct Token {
    /// The counted references: the holder's (a call's [`Armed`], or
    /// [`SPARE`]) and one per waker clone. The last one frees the token.
    refs: AtomicUsize,
    /// `PARKING`, `NOTIFIED`, and the number of wakes under way in units of
    /// `BUSY`.
    state: AtomicUsize,
    /// Who to wake: the context of the call, borrowed (it counts no
    /// reference to the green thread). Written by the call only while
    /// `PARKING` and `BUSY` are clear, before it sets `PARKING`; read by a
    /// wake only while its `BUSY` is counted, which it took from a state
    /// with `PARKING` set: the call is then inside its wait, which it
    /// leaves only once `BUSY` is back to zero, so the context is alive and
    /// no write overlaps the read. `None` until the call's first wait.
    owner: UnsafeCell<Option<Owner>>,
}

// SAFETY: `refs` and `state` are atomics; `owner` is written and read only
// under the `PARKING`/`BUSY` protocol described on the field, which orders
// every write before every read (the call's release of `PARKING` after its
// write, the wake's acquire of it; the wake's release of `BUSY`, the call's
// acquire of it before it writes again). A `Thread` may be used and dropped
// on any thread; the header pointer is only dereferenced by a wake holding
// `BUSY`, while the green thread is suspended in (or about to suspend in)
// the call. So the wakers made of a token may be sent and shared, as
// `std::task::Waker` requires.
unsafe impl Send for Token {}
// SAFETY: as for `Send`.
unsafe impl Sync for Token {}

/// The call waits (or is about to) for a wake.
const PARKING: usize = 1;
/// Woken since the last poll.
const NOTIFIED: usize = 2;
/// One wake under way: it read `PARKING` and has not finished waking.
const BUSY: usize = 4;

impl Token {
    /// Marks the token woken, and wakes the call's context if it waits.
    fn wake(&self) {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let new = if s & NOTIFIED != 0 {
                // Woken already since the last poll. Still a
                // read-modify-write: ordered with the call's clearing of
                // `NOTIFIED` (see `unpark`), it publishes the waker's
                // earlier writes to the poll that follows, or comes after
                // it and wakes again. A plain load could read the flag
                // before the clearing while the waker's writes were not yet
                // visible to the poll, and the wake would be lost.
                s
            } else if s & PARKING != 0 {
                (s | NOTIFIED) + BUSY
            } else {
                s | NOTIFIED
            };
            match self
                .state
                .compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        if s & (PARKING | NOTIFIED) != PARKING {
            // Woken already, or the call looks at `NOTIFIED` before it
            // waits.
            return;
        }
        // Counted in `BUSY` above: released however the wake ends.
        let _busy = Busy(self);
        // SAFETY: this wake counted `BUSY` from a state with `PARKING` set,
        // so the call wrote `owner` before (and released it with
        // `PARKING`) and writes it again only after `BUSY` drops (see the
        // field).
        match unsafe { &*self.owner.get() } {
            Some(Owner::Task(header)) => {
                // SAFETY: the green thread is inside the call, which cannot
                // return before `BUSY` drops, so the reference its running
                // closure holds keeps the header alive while this borrow is
                // used; `wake` counts a reference of its own if it keeps
                // one (a remote worker's inbox).
                let task = unsafe { TaskRef::borrow_raw(*header) };
                crate::task::raw::wake(&task);
            }
            Some(Owner::Thread(thread)) => thread.unpark(),
            None => {} // not reached: set before `PARKING`
        }
    }

    /// Stops the context wakes (before a poll, or for good), waiting out
    /// one under way on another thread (one on this thread has finished).
    fn unpark(&self) {
        let s = self
            .state
            .fetch_and(!(PARKING | NOTIFIED), Ordering::AcqRel);
        if s < BUSY {
            return;
        }
        // A few instructions on the waking thread: spin, then yield.
        let mut spins = 0u32;
        while self.state.load(Ordering::Acquire) >= BUSY {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// A wake under way (one `BUSY`), until dropped.
struct Busy<'a>(&'a Token);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        // Release: the wake's read of `owner` comes before the call's next
        // write, and its other writes before the call goes on.
        self.0.state.fetch_sub(BUSY, Ordering::Release);
    }
}

/// The wait of a `block_on` call: clears `PARKING` as it ends, by return or
/// by unwind (a cancellation), so that `PARKING` is clear whenever the call
/// polls or drops its future, and a wake from the future's destructor
/// reaches no context.
struct Parking<'a>(&'a Token);

impl Drop for Parking<'_> {
    fn drop(&mut self) {
        self.0.unpark();
    }
}

/// A counted reference to a [`Token`]: the call's ([`Armed`]) or the
/// spare's.
struct TokenRef(NonNull<Token>);

impl TokenRef {
    fn new() -> TokenRef {
        let token = Box::new(Token {
            refs: AtomicUsize::new(1),
            state: AtomicUsize::new(0),
            owner: UnsafeCell::new(None),
        });
        TokenRef(NonNull::from(Box::leak(token)))
    }

    #[inline]
    fn get(&self) -> &Token {
        // SAFETY: this reference's count keeps the token alive.
        unsafe { self.0.as_ref() }
    }

    /// Whether this is the only reference (no waker of the token is left
    /// anywhere). Stable once true, since a new count is made only from an
    /// existing one; acquires the drops of the others, so their uses of the
    /// token come before the caller's.
    #[inline]
    fn is_unique(&self) -> bool {
        self.get().refs.load(Ordering::Acquire) == 1
    }
}

impl Drop for TokenRef {
    fn drop(&mut self) {
        // SAFETY: this reference owns a count of a live token.
        unsafe { release(self.0) };
    }
}

/// Adds a count to the token at `token`.
///
/// # Safety
///
/// The caller holds a count of the token (or borrows from one that lives
/// meanwhile).
unsafe fn retain(token: NonNull<Token>) {
    // SAFETY: as this function's contract. Relaxed, as in `Arc`: a count is
    // made from an existing one, which keeps the token alive meanwhile.
    let old = unsafe { token.as_ref() }
        .refs
        .fetch_add(1, Ordering::Relaxed);
    if old > isize::MAX as usize {
        std::process::abort(); // leaked wakers wrapped the count
    }
}

/// Drops a count of the token at `token`, and frees it if it was the last.
///
/// # Safety
///
/// The caller owns a count of the token, which it gives up.
unsafe fn release(token: NonNull<Token>) {
    // SAFETY: the count the caller gives up keeps the token alive up to
    // here. Release, then Acquire before freeing, as in `Arc`: every use of
    // the token through other counts comes before it is freed.
    if unsafe { token.as_ref() }
        .refs
        .fetch_sub(1, Ordering::Release)
        != 1
    {
        return;
    }
    std::sync::atomic::fence(Ordering::Acquire);
    // SAFETY: the last count is gone, so nothing else uses the token; it
    // was allocated by `TokenRef::new` as a `Box`.
    drop(unsafe { Box::from_raw(token.as_ptr()) });
}

thread_local! {
    /// A token its last `block_on` left unshared (no waker clone outlived
    /// the call), for the next call on this thread: its only reference,
    /// with a clear state.
    static SPARE: Cell<Option<TokenRef>> = const { Cell::new(None) };
}

/// Who a `block_on` call waits as, taken without a reference count: its
/// green thread, which cannot end while the call waits, or its OS thread.
enum Owner {
    Task(NonNull<Header>),
    Thread(std::thread::Thread),
}

impl Owner {
    /// Makes `owner` the context running now: its green thread, or its OS
    /// thread. Costs a thread-local read when it is already; an OS thread
    /// is looked up only when the owner was none or a green thread, since
    /// a call on a plain thread never moves to another (see `block_on`).
    #[inline]
    fn update(owner: &mut Option<Owner>) {
        match worker::with_current_task(|t| t.map(TaskRef::as_raw)) {
            Some(task) => {
                if !matches!(owner, Some(Owner::Task(t)) if *t == task) {
                    *owner = Some(Owner::Task(task));
                }
            }
            None => {
                if !matches!(owner, Some(Owner::Thread(_))) {
                    *owner = Some(Owner::Thread(std::thread::current()));
                }
            }
        }
    }
}

/// The functions of a waker of a [`Token`], whose data points to it. The
/// wakers a future clones own a count each; the one a call lends its polls
/// owns none, borrowing the call's (see `block_on`). A `static` has one
/// address, so every waker of one token is `will_wake`-equal to every
/// other, the lent one included. (std's `Waker::from(Arc<impl Wake>)` puts
/// its table in a constant, which a release build instantiates apart in
/// each crate that makes one.)
static TOKEN: RawWakerVTable =
    RawWakerVTable::new(token_clone, token_wake, token_wake_by_ref, token_drop);

/// # Safety
///
/// `data` points to a token, and the waker it comes from owns a count of it
/// or borrows one that lives meanwhile (see [`TOKEN`]).
unsafe fn token_clone(data: *const ()) -> RawWaker {
    // SAFETY: as this function's contract; the new waker owns the new
    // count.
    unsafe { retain(NonNull::from(&*data.cast::<Token>())) };
    RawWaker::new(data, &TOKEN)
}

/// # Safety
///
/// `data` points to a token, and the waker it comes from owns a count of
/// it, which is used up (a lent waker is only borrowed, and so never woken
/// by value or dropped).
unsafe fn token_wake(data: *const ()) {
    // SAFETY: as this function's contract: this takes over the count.
    let token = TokenRef(unsafe { NonNull::from(&*data.cast::<Token>()) });
    token.get().wake();
}

/// # Safety
///
/// As [`token_clone`].
unsafe fn token_wake_by_ref(data: *const ()) {
    // SAFETY: as this function's contract: the waker's count (or the one it
    // borrows) keeps the token alive.
    unsafe { &*data.cast::<Token>() }.wake();
}

/// # Safety
///
/// As [`token_wake`].
unsafe fn token_drop(data: *const ()) {
    // SAFETY: as this function's contract: the waker's count goes.
    unsafe { release(NonNull::from(&*data.cast::<Token>())) };
}

/// The token of one `block_on` call, with its count; kept for the next
/// call when dropped unshared, however the call ends.
struct Armed(ManuallyDrop<TokenRef>);

impl Armed {
    #[inline]
    fn new() -> Armed {
        match SPARE.try_with(Cell::take) {
            Ok(Some(spare)) => Armed(ManuallyDrop::new(spare)),
            _ => Armed(ManuallyDrop::new(TokenRef::new())),
        }
    }

    #[inline]
    fn token(&self) -> &Token {
        self.0.get()
    }

    /// A waker of the token that owns no count, for the call to lend to its
    /// polls.
    #[inline]
    fn lent_waker(&self) -> ManuallyDrop<std::task::Waker> {
        let data = std::ptr::from_ref(self.token()).cast::<()>();
        // SAFETY: `TOKEN`'s functions get a pointer to a live token. The
        // waker borrows this `Armed`'s count: the caller lends it only to
        // polls made while `self` lives (a future gets `&Waker`, and cannot
        // keep it past the poll), never wakes it by value, and never drops
        // it (`ManuallyDrop`).
        ManuallyDrop::new(unsafe { std::task::Waker::from_raw(RawWaker::new(data, &TOKEN)) })
    }
}

impl Drop for Armed {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: taken once, here, and not used after.
        let token = unsafe { ManuallyDrop::take(&mut self.0) };
        // No wake reads the context any more: `Parking` cleared `PARKING`
        // (and waited out `BUSY`) before the call went on, and only the
        // call sets it.
        debug_assert_eq!(token.get().state.load(Ordering::Relaxed) & !NOTIFIED, 0);
        if token.is_unique() {
            // No other reference, so nothing else reads the state: a clear
            // one for the next call. Shared, the token goes with the last
            // waker clone instead, and its late wakes only mark it.
            token.get().state.store(0, Ordering::Relaxed);
            let _ = SPARE.try_with(|spare| spare.set(Some(token)));
        }
    }
}

/// Runs a future to completion on the calling green thread, and returns its
/// output.
///
/// While the future is pending, only the calling green thread is
/// suspended: its worker runs other green threads, and the future's waker
/// wakes it through the runtime's normal wake path. On a plain OS thread
/// it blocks the thread, like `futures::executor::block_on`. Inside a
/// generator running on a green thread it suspends the green thread, not
/// the generator: the generator's caller sees nothing.
///
/// The waker is `Send + Sync` and cheap to clone (one reference count). It
/// may be called from any thread, from inside `poll` too, and stays valid
/// after `block_on` returned and after the green thread ended: such a late
/// wake does nothing, and never disturbs a later wait of the same green
/// thread.
///
/// It is a cancellation point while the future is pending: a cancellation
/// of the green thread, an expiring [`timeout`](crate::timeout) or
/// [`run`](crate::run)'s shutdown unwinds from it and drops the future
/// (its destructors run). A panic inside `poll` unwinds from `block_on`
/// too, and so reaches the green thread's joiner.
///
/// With the cargo feature `tokio`, each poll runs inside a tokio runtime's
/// context, so futures of `tokio::net` and `tokio::time` work: see the
/// [module docs](self#tokio).
///
/// # Panics
///
/// If the future panics (the panic goes on), or if it is called on a
/// scheduler's own loop outside any green thread and must wait.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use stackful::sync::Event;
///
/// let got = stackful::run(|| {
///     let (tx, rx) = stackful::sync::unbounded();
///     let ready = Arc::new(Event::new());
///     let setter = ready.clone();
///     stackful::spawn(move || {
///         tx.send(7).unwrap();
///         setter.set();
///     });
///     // An async block, awaited on this green thread: it suspends only it.
///     stackful::block_on(async {
///         ready.wait_async().await;
///         rx.recv_async().await.unwrap()
///     })
/// });
/// assert_eq!(got, 7);
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    #[cfg(feature = "tokio")]
    let tokio = tokio_rt::handle();
    // Declared before the future, so dropped after it: the future goes
    // before the token is kept or let go, whether the call returns or
    // unwinds.
    let armed = Armed::new();
    let token = armed.token();
    let mut future = pin!(future);
    // Lent to the polls below only, while `armed` lives; `will_wake` finds
    // it equal to the clones a future keeps, so a future need not clone it
    // again at every poll.
    let lent = armed.lent_waker();
    loop {
        let mut cx = Context::from_waker(&lent);
        #[cfg(feature = "tokio")]
        let polled = {
            let _context = tokio.as_ref().map(|h| h.enter());
            future.as_mut().poll(&mut cx)
        };
        #[cfg(not(feature = "tokio"))]
        let polled = future.as_mut().poll(&mut cx);
        if let Poll::Ready(output) = polled {
            return output;
        }
        // Who waits: looked up before every wait, not once, because a
        // generator whose body called `block_on` can yield inside a poll
        // and be resumed by another green thread of this OS thread (a
        // `Generator` is `!Send`, so never by another OS thread); a wake
        // must reach that one, and never the first, which may have ended.
        // SAFETY: `PARKING` and `BUSY` are clear (a token is armed with a
        // clear state, and the last wait's `Parking` cleared `PARKING` and
        // waited out `BUSY`), so no wake reads `owner` now, though clones of
        // the waker may be out; the fetch_or below releases the write to
        // the wakes that read it (see `Token::owner`).
        unsafe { Owner::update(&mut *token.owner.get()) };
        // Woken during the poll: poll again at once. Else wait; a return
        // from `park` may be spurious, so look again. `PARKING` is cleared
        // as the wait ends, by return or unwind.
        let _parking = Parking(token);
        if token.state.fetch_or(PARKING, Ordering::AcqRel) & NOTIFIED == 0 {
            while token.state.load(Ordering::Acquire) & NOTIFIED == 0 {
                park::park(None);
            }
        }
    }
}

#[cfg(feature = "tokio")]
pub use tokio_rt::{set_tokio_handle, tokio_handle};

#[cfg(feature = "tokio")]
mod tokio_rt {
    use std::sync::{OnceLock, RwLock};

    use tokio::runtime::{Builder, Handle, Runtime};

    /// The handle set with `set_tokio_handle`.
    static GIVEN: RwLock<Option<Handle>> = RwLock::new(None);

    /// The runtime started on first use when no other is at hand.
    static OWN: OnceLock<Runtime> = OnceLock::new();

    /// Makes [`block_on`](super::block_on) poll its futures inside the
    /// context of the tokio runtime behind `handle`, on every thread, for
    /// every green thread runtime but one built with its own
    /// ([`Builder::tokio_handle`](crate::runtime::Builder::tokio_handle)).
    /// Returns the handle set before, if any.
    ///
    /// Without it, `block_on` uses the tokio runtime the calling thread is
    /// already in (a plain thread inside one), else a small runtime of its
    /// own, started on first use, with one thread that drives tokio's I/O
    /// and timers. Needs the cargo feature `tokio`.
    ///
    /// # Examples
    ///
    /// ```
    /// let tokio = tokio::runtime::Runtime::new().unwrap();
    /// stackful::bridge::set_tokio_handle(tokio.handle().clone());
    /// let slept = stackful::run(|| {
    ///     stackful::block_on(async {
    ///         tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    ///         "slept on tokio's timer"
    ///     })
    /// });
    /// assert_eq!(slept, "slept on tokio's timer");
    /// # stackful::bridge::clear_tokio_handle();
    /// ```
    pub fn set_tokio_handle(handle: Handle) -> Option<Handle> {
        GIVEN
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .replace(handle)
    }

    /// Forgets the handle given to [`set_tokio_handle`], and returns it:
    /// [`block_on`](super::block_on) goes back to its default choice.
    /// Needs the cargo feature `tokio`.
    ///
    /// # Examples
    ///
    /// ```
    /// let tokio = tokio::runtime::Runtime::new().unwrap();
    /// stackful::bridge::set_tokio_handle(tokio.handle().clone());
    /// assert!(stackful::bridge::clear_tokio_handle().is_some());
    /// assert!(stackful::bridge::clear_tokio_handle().is_none());
    /// ```
    pub fn clear_tokio_handle() -> Option<Handle> {
        GIVEN.write().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The handle of the tokio runtime whose context
    /// [`block_on`](super::block_on) would enter if called here: the one
    /// given to this green thread's runtime
    /// ([`Builder::tokio_handle`](crate::runtime::Builder::tokio_handle)),
    /// else the one given to [`set_tokio_handle`], else the one the calling
    /// thread is in, else the crate's own (started now if it was not yet).
    /// Needs the cargo feature `tokio`.
    ///
    /// # Examples
    ///
    /// ```
    /// let handle = stackful::run(stackful::bridge::tokio_handle);
    /// // Spawn on tokio from a green thread, and await the task there.
    /// let task = handle.spawn(async { 6 * 7 });
    /// let answer = stackful::run(move || stackful::block_on(task).unwrap());
    /// assert_eq!(answer, 42);
    /// ```
    pub fn tokio_handle() -> Handle {
        handle().unwrap_or_else(Handle::current)
    }

    /// The handle to enter around each poll, if any must be entered (none
    /// when the caller is in a tokio context already).
    pub(super) fn handle() -> Option<Handle> {
        let mine =
            crate::runtime::park::current_task().and_then(|t| t.header().rt.config.tokio.clone());
        if mine.is_some() {
            return mine;
        }
        if let Some(h) = &*GIVEN.read().unwrap_or_else(|e| e.into_inner()) {
            return Some(h.clone());
        }
        if Handle::try_current().is_ok() {
            return None;
        }
        Some(own().handle().clone())
    }

    fn own() -> &'static Runtime {
        OWN.get_or_init(|| {
            Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("stackful-tokio")
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("stackful: could not start a tokio runtime: {e}"))
        })
    }
}

#[cfg(feature = "tokio")]
pub use tokio_rt::clear_tokio_handle;

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: Instant) -> Arc<ClockEntry> {
        Arc::new(ClockEntry {
            at,
            waker: AsyncWaker {
                waker: Mutex::new(Some(std::task::Waker::noop().clone())),
            },
        })
    }

    /// Entries of futures dropped (or re-armed) before their instant are
    /// swept out as more come: the list stays within twice the live ones.
    #[test]
    fn dead_entries_are_swept_out() {
        let clock = Clock::new();
        let far = Instant::now() + std::time::Duration::from_secs(3600);
        let live: Vec<_> = (0..100).map(|_| entry(far)).collect();
        for e in &live {
            clock.add(e);
        }
        for i in 0..10_000 {
            clock.add(&entry(far)); // dropped at once
            let len = clock.due.lock().unwrap().heap.len();
            assert!(
                len <= 2 * live.len() + 1,
                "{len} entries after {i} dead ones"
            );
        }
        // Every live entry is still there, and fires when due.
        let mut due = clock.due.lock().unwrap();
        let fired = Clock::take_due(&mut due, far);
        assert_eq!(fired.iter().filter(|w| w.upgrade().is_some()).count(), 100);
        assert!(due.heap.is_empty());
    }

    /// The earliest entry comes first, whatever the order they came in.
    #[test]
    fn entries_fire_in_instant_order() {
        let clock = Clock::new();
        let base = Instant::now();
        let at = |ms| base + std::time::Duration::from_millis(ms);
        let entries: Vec<_> = [30, 10, 20].map(|ms| entry(at(ms))).into();
        for e in &entries {
            clock.add(e);
        }
        let mut due = clock.due.lock().unwrap();
        assert!(Clock::take_due(&mut due, at(5)).is_empty());
        let fired = Clock::take_due(&mut due, at(20));
        let instants: Vec<_> = fired.iter().map(|w| w.upgrade().unwrap().at).collect();
        assert_eq!(instants, [at(10), at(20)]);
        assert_eq!(due.heap.len(), 1);
    }
}
