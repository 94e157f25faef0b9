//! The unwinds that stackful starts on purpose: closing a generator,
//! cancelling a green thread, expiring a timeout, and firing a
//! [`CancellationToken`].
//!
//! Each of them unwinds a coroutine's stack from a suspension point, so every
//! destructor on it runs, like Python's `GeneratorExit` and `CancelledError`
//! or a dropped future. The unwind carries a [`Cancelled`] payload tagged with
//! the identity of whatever started it (a generator, a green thread, a timeout
//! or token scope), so nested coroutines and nested scopes never take each
//! other's unwind for their own. It is started with [`std::panic::resume_unwind`], so
//! the panic hook prints nothing.
//!
//! A `catch_unwind` inside coroutine code catches these unwinds like any
//! panic. Let them go on: check the payload with [`Cancelled::is`] and
//! re-raise it, or use [`catch_unwind`], which does that
//! for you. Code that swallows one anyway causes no undefined behaviour and no
//! hang: a cancelled green thread, an expired timeout or a fired token is
//! unwound again at its next suspension point, and a generator that yields while being closed gets
//! a panic that says so.
//!
//! # Destructors may wait
//!
//! While one of these unwinds is on its way, or a panic's, the waits of the
//! green thread (or thread) it unwinds are not cancelled (again): they
//! behave as if inside [`shield`](crate::shield). Other green threads are
//! not affected. So a destructor can return a connection to a
//! pool under a contended lock, send on a full channel, sleep or call
//! [`spawn_blocking`](crate::spawn_blocking), as a `finally:` block can
//! `await` after a cancellation in asyncio. (Cancelling it again there would
//! start a second unwind inside a destructor that runs during the first,
//! which aborts the process.) Such a wait lasts as long as what it waits for:
//! a `timeout` opened inside the destructor still bounds it, and debug mode
//! reports one that takes longer than the slow threshold (100 ms by
//! default). The shield ends when the unwind is caught by whatever it was
//! aimed at, or when a `catch_unwind` that swallowed it drops the payload.

use std::any::Any;
use std::fmt;
use std::panic::{self, AssertUnwindSafe, UnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

use crate::runtime::park::{self, Waker};
use crate::scopes::{self, Kind};

/// Who started the unwind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// `Generator::close`; the token is the generator's unique id.
    Close(u64),
    /// `JoinHandle::cancel`, a failing sibling, or `run`'s shutdown; the id
    /// is the green thread's.
    Task(u64),
    /// An expired `timeout` with this scope id.
    Scope(u64),
    /// A fired `CancellationToken`, for the `run` scope with this id (0 for
    /// a `run` that found its token cancelled and never opened one).
    Token(u64),
}

/// The payload of an unwind that stackful starts on purpose: a generator
/// being closed, a green thread being cancelled, a timeout expiring, or a
/// [`CancellationToken`] firing.
///
/// It is also the error of [`CancellationToken::run`]: that one is a plain
/// value, not an unwind in flight, and harmless to keep, send or drop.
///
/// # Examples
///
/// Re-raising it from a `catch_unwind` inside a body:
///
/// ```
/// use stackful::{Cancelled, Generator};
/// use std::panic::{self, AssertUnwindSafe};
///
/// let mut g = Generator::new(|co, ()| {
///     let caught = panic::catch_unwind(AssertUnwindSafe(|| co.yield_(1)));
///     if let Err(payload) = caught {
///         if Cancelled::is(&*payload) {
///             panic::resume_unwind(payload); // let the close go on
///         }
///         // handle a real panic here
///     }
/// });
/// g.resume();
/// g.close();
/// assert!(g.is_done());
/// ```
pub struct Cancelled {
    pub(crate) cause: Cause,
    /// The `Kind::Unwind` shield this unwind
    /// holds on the context it started in, closed when the payload is
    /// dropped, so the waits in the destructors it runs are not cancelled
    /// again (which would abort the process). 0 for none (the error a
    /// `CancellationToken::run` returns).
    shield: u64,
}

impl Cancelled {
    /// Starts this unwind, shielding the destructors it runs.
    #[cold]
    pub(crate) fn raise(cause: Cause) -> ! {
        let shield = crate::scopes::open(crate::scopes::Kind::Unwind(std::time::Instant::now())).0;
        panic::resume_unwind(Box::new(Cancelled { cause, shield }))
    }

    /// The error of a `CancellationToken::run` whose scope `id` fired: it
    /// holds no shield.
    fn by_token(id: u64) -> Cancelled {
        Cancelled {
            cause: Cause::Token(id),
            shield: 0,
        }
    }

    /// Whether a panic payload is one of stackful's deliberate unwinds, which
    /// must be re-raised with [`std::panic::resume_unwind`] rather than handled.
    pub fn is(payload: &(dyn Any + Send)) -> bool {
        payload.is::<Cancelled>()
    }

    /// The cause, if `payload` is one of stackful's deliberate unwinds.
    pub(crate) fn cause_of(payload: &(dyn Any + Send)) -> Option<Cause> {
        payload.downcast_ref::<Cancelled>().map(|c| c.cause)
    }
}

/// Dropping the payload closes the unwind's shield (which applies only
/// while the unwind is on its way; see the module docs). Keep a caught
/// payload only to re-raise it: while it is alive and another green thread
/// of the same worker is unwinding, this one's cancellation waits for that
/// unwind to end.
impl Drop for Cancelled {
    fn drop(&mut self) {
        if self.shield != 0 {
            crate::scopes::close(crate::scopes::Opened(self.shield));
        }
    }
}

/// Reads as the [`Display`](fmt::Display) text in a tuple:
/// `Cancelled(cancelled by a CancellationToken)`.
impl fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Cancelled")
            .field(&format_args!("{self}"))
            .finish()
    }
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cause {
            Cause::Close(_) => f.write_str("generator closed"),
            Cause::Task(id) => write!(f, "green thread #{id} cancelled"),
            Cause::Scope(_) => f.write_str("timeout expired"),
            Cause::Token(_) => f.write_str("cancelled by a CancellationToken"),
        }
    }
}

impl std::error::Error for Cancelled {}

/// [`std::panic::catch_unwind`] for code inside coroutines: it catches
/// panics but lets stackful's deliberate unwinds ([`Cancelled`]) pass through.
///
/// # Examples
///
/// ```
/// let caught = stackful::catch_unwind(|| panic!("boom"));
/// assert!(caught.is_err());
/// ```
pub fn catch_unwind<F: FnOnce() -> R + UnwindSafe, R>(f: F) -> std::thread::Result<R> {
    match panic::catch_unwind(f) {
        Err(payload) if Cancelled::is(&*payload) => panic::resume_unwind(payload),
        other => other,
    }
}

/// Stops the process if it is dropped: put in a frame that must not unwind
/// (a wait that lifetime-erased borrows depend on) and `mem::forget` it once
/// the frame is past the danger. Only a bug in stackful itself can unwind
/// there, and aborting is then the sound way out: unwinding would free what
/// other threads still borrow.
pub(crate) struct AbortOnUnwind(pub(crate) &'static str);

impl AbortOnUnwind {
    /// The frame is past the danger.
    pub(crate) fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        crate::debug::note(format_args!(
            "a panic tried to unwind out of {} while what it lent out is still in use; \
             aborting, since unwinding would free it. The panic's message is above: it is a \
             bug in stackful (please report it), or stackful code that ran where it cannot \
             wait",
            self.0
        ));
        std::process::abort();
    }
}

/// A cancellation signal shared between green threads and threads, which
/// can unwind blocking-style code: tokio-util's `CancellationToken`, as a
/// cancel scope.
///
/// Clones share one signal. [`cancel`](CancellationToken::cancel) fires it,
/// from any thread, once and for good. Code can poll it
/// ([`is_cancelled`](CancellationToken::is_cancelled)), wait for it
/// ([`cancelled`](CancellationToken::cancelled)), or be cut off by it:
/// [`run`](CancellationToken::run) runs a body that unwinds from its current
/// or next suspension point when the token fires, as a body run by
/// [`timeout`](crate::timeout) does when its deadline passes.
/// [`child_token`](CancellationToken::child_token) derives a token that
/// fires with this one but can also fire alone.
///
/// # Examples
///
/// Another green thread stops a worker loop that knows nothing of tokens:
///
/// ```
/// use std::time::Duration;
/// use stackful::cancel::CancellationToken;
///
/// let outcome = stackful::run(|| {
///     let token = CancellationToken::new();
///     let stop = token.clone();
///     stackful::spawn(move || {
///         stackful::sleep(Duration::from_millis(20));
///         stop.cancel();
///     });
///     token.run(|| {
///         loop {
///             stackful::sleep(Duration::from_millis(5)); // unwinds from here
///         }
///     })
/// });
/// assert_eq!(
///     outcome.unwrap_err().to_string(),
///     "cancelled by a CancellationToken"
/// );
/// ```
#[derive(Clone, Default)]
pub struct CancellationToken {
    shared: Arc<TokenShared>,
}

/// What the clones of a token share.
#[derive(Default)]
struct TokenShared {
    /// When the token fired; set once, under `lists`' lock, and read
    /// without it (a scope's verdict reads it at every suspension point).
    fired: OnceLock<Instant>,
    /// Whom to wake and which children to fire, while it has not fired.
    /// Emptied for good when it fires: nothing is added after that.
    lists: Mutex<Lists>,
    /// The parent, kept alive while a child is, so a grandparent still
    /// reaches this token after the parent's handles are dropped.
    parent: Option<Arc<TokenShared>>,
    /// This token's key in `parent`'s children, or `NO_KEY`.
    key_in_parent: AtomicUsize,
}

#[derive(Default)]
struct Lists {
    /// The contexts inside `run` or `cancelled` (each `Enrolled`).
    wakers: Slots<Waker>,
    children: Slots<Weak<TokenShared>>,
}

const NO_KEY: usize = usize::MAX;

impl TokenShared {
    fn lists(&self) -> MutexGuard<'_, Lists> {
        // Nothing panics while holding it, but a poisoned list is still
        // consistent: every change to it is a single step.
        self.lists.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fired_at(&self) -> Option<Instant> {
        self.fired.get().copied()
    }

    /// Fires this token and its descendants (iteratively: a chain of
    /// children may be long), at `at`, and wakes every context waiting on
    /// any of them. Wakers are called outside the locks.
    fn fire(self: &Arc<TokenShared>, at: Instant) {
        let mut pending = vec![self.clone()];
        while let Some(token) = pending.pop() {
            let (wakers, children) = {
                let mut lists = token.lists();
                if token.fired.set(at).is_err() {
                    continue; // fired already, by itself or another parent path
                }
                (lists.wakers.take_all(), lists.children.take_all())
            };
            for waker in wakers {
                waker.wake();
            }
            pending.extend(children.iter().filter_map(Weak::upgrade));
        }
    }
}

impl Drop for TokenShared {
    /// Leaves the parent's children and drops the chain of ancestors that
    /// only this token kept alive, iteratively (a recursive drop of a long
    /// chain could overflow a green thread's stack).
    fn drop(&mut self) {
        let mut parent = self.parent.take();
        let mut key = *self.key_in_parent.get_mut();
        while let Some(p) = parent {
            if key != NO_KEY {
                p.lists().children.remove(key);
            }
            match Arc::try_unwrap(p) {
                Ok(mut last) => {
                    parent = last.parent.take();
                    key = *last.key_in_parent.get_mut();
                    // `last` drops here with no parent left: no recursion.
                }
                Err(_) => break,
            }
        }
    }
}

/// A keyed store that reuses freed keys, so a long-lived token run many
/// times keeps only as many slots as were ever in use at once.
struct Slots<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slots<T> {
    fn insert(&mut self, value: T) -> usize {
        match self.free.pop() {
            Some(key) => {
                self.slots[key] = Some(value);
                key
            }
            None => {
                self.slots.push(Some(value));
                self.slots.len() - 1
            }
        }
    }

    /// Removes `key`'s value if it is there (a key outlives `take_all`).
    fn remove(&mut self, key: usize) -> Option<T> {
        let value = self.slots.get_mut(key)?.take();
        if value.is_some() {
            self.free.push(key);
        }
        value
    }

    fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        self.slots.get_mut(key)?.as_mut()
    }

    fn take_all(&mut self) -> Vec<T> {
        self.free = Vec::new();
        std::mem::take(&mut self.slots)
            .into_iter()
            .flatten()
            .collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }
}

/// A context waiting on a token (inside `run` or `cancelled`): the token
/// holds its waker until this is dropped. For `run` it lives in the scope's
/// entry, so it leaves with the entry on every path (the body returning,
/// unwinding, or a generator holding the scope being dropped).
pub(crate) struct Enrolled {
    token: Arc<TokenShared>,
    /// `NO_KEY` if the token had fired already.
    key: usize,
}

impl Enrolled {
    fn new(token: &Arc<TokenShared>) -> Enrolled {
        let waker = park::current_waker();
        let mut lists = token.lists();
        let key = if token.fired.get().is_some() {
            NO_KEY
        } else {
            lists.wakers.insert(waker)
        };
        drop(lists);
        Enrolled {
            token: token.clone(),
            key,
        }
    }

    /// When the token fired, if it has.
    pub(crate) fn fired_at(&self) -> Option<Instant> {
        self.token.fired_at()
    }

    /// The scope moved to another context (a generator holding it was
    /// resumed there): wake that context from now on. If the token fired
    /// meanwhile, the context's next verdict sees it.
    pub(crate) fn moved_here(&self) {
        if self.key == NO_KEY {
            return;
        }
        let waker = park::current_waker();
        if let Some(slot) = self.token.lists().wakers.get_mut(self.key)
            && !slot.same(&waker)
        {
            *slot = waker;
        }
    }
}

impl Drop for Enrolled {
    fn drop(&mut self) {
        if self.key != NO_KEY {
            let waker = self.token.lists().wakers.remove(self.key);
            drop(waker); // outside the lock
        }
    }
}

impl fmt::Debug for Enrolled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enrolled")
            .field("fired", &self.fired_at().is_some())
            .finish_non_exhaustive()
    }
}

impl CancellationToken {
    /// A new token, not cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = stackful::cancel::CancellationToken::new();
    /// assert!(!token.is_cancelled());
    /// ```
    pub fn new() -> CancellationToken {
        CancellationToken::default()
    }

    /// Fires the token: every clone and every child token (and theirs) is
    /// cancelled, bodies inside their [`run`](CancellationToken::run)
    /// unwind from their current or next suspension point, and waits in
    /// [`cancelled`](CancellationToken::cancelled) return. Callable from
    /// any thread, including from inside the token's own `run`. Cancelling
    /// again does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = stackful::cancel::CancellationToken::new();
    /// let clone = token.clone();
    /// token.cancel();
    /// assert!(clone.is_cancelled());
    /// ```
    pub fn cancel(&self) {
        if self.shared.fired.get().is_none() {
            self.shared.fire(Instant::now());
        }
    }

    /// Whether the token has been cancelled (directly or through a parent).
    ///
    /// # Examples
    ///
    /// ```
    /// let parent = stackful::cancel::CancellationToken::new();
    /// let child = parent.child_token();
    /// parent.cancel();
    /// assert!(child.is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.shared.fired.get().is_some()
    }

    /// A new token that is cancelled when this one is (or is already, if
    /// this one is), and that can be cancelled on its own without cancelling
    /// this one. It stays linked to this token's own parents even once every
    /// handle to this token is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::cancel::CancellationToken;
    ///
    /// let server = CancellationToken::new();
    /// let request = server.child_token();
    /// request.cancel(); // one request gives up
    /// assert!(!server.is_cancelled());
    /// let other = server.child_token();
    /// server.cancel(); // shutdown: every request stops
    /// assert!(other.is_cancelled());
    /// ```
    pub fn child_token(&self) -> CancellationToken {
        let child = Arc::new(TokenShared {
            fired: OnceLock::new(),
            lists: Mutex::default(),
            parent: Some(self.shared.clone()),
            key_in_parent: AtomicUsize::new(NO_KEY),
        });
        let mut lists = self.shared.lists();
        match self.shared.fired_at() {
            Some(at) => {
                let _ = child.fired.set(at);
            }
            None => {
                let key = lists.children.insert(Arc::downgrade(&child));
                child.key_in_parent.store(key, Ordering::Relaxed);
            }
        }
        drop(lists);
        CancellationToken { shared: child }
    }

    /// Waits until the token is cancelled; returns at once if it is. A
    /// suspension point on a green thread, and a cancellation point: a
    /// cancellation of the green thread, an expired enclosing timeout or
    /// another token's `run` unwinds from here. On a plain OS thread it
    /// blocks the thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::cancel::CancellationToken;
    ///
    /// let token = CancellationToken::new();
    /// let waiter = {
    ///     let token = token.clone();
    ///     std::thread::spawn(move || token.cancelled()) // a plain thread
    /// };
    /// stackful::run(|| {
    ///     let green = {
    ///         let token = token.clone();
    ///         stackful::spawn(move || token.cancelled())
    ///     };
    ///     token.cancel();
    ///     green.join().unwrap();
    /// });
    /// waiter.join().unwrap();
    /// ```
    pub fn cancelled(&self) {
        if self.is_cancelled() {
            return;
        }
        let _enrolled = Enrolled::new(&self.shared);
        while !self.is_cancelled() {
            park::park(None);
        }
    }

    /// Runs `body` on the caller's stack as a cancel scope of this token:
    /// when the token is cancelled, from any thread, `body` is unwound from
    /// its current or next suspension point (destructors run) and `run`
    /// returns `Err(Cancelled)`. If the token is cancelled already, `body`
    /// is not run at all.
    ///
    /// It behaves as a [`timeout`](crate::timeout) whose deadline is the
    /// moment of the cancel: it nests with timeouts, shields and other
    /// tokens (a [`shield`](crate::shield) inside `body` defers it until the
    /// shield's body returns; among scopes that have fired, the one that
    /// fired first wins, and a tie goes to the outer one), and other
    /// cancellations (the green thread's own, an enclosing timeout or
    /// token) pass through it. Like a timeout, it belongs to the stack it
    /// was opened on, so a generator that yields from inside `run` takes
    /// the scope along. A `body` that does not suspend after the cancel
    /// returns normally, with `Ok`. It works on green threads and on plain
    /// OS threads, where the suspension points are stackful's own waits
    /// (sleeps, channels, locks, joins).
    ///
    /// The `Cancelled` returned is a plain value (it is not re-raised and
    /// holds nothing): keep it, drop it or return it as an error.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stackful::cancel::CancellationToken;
    ///
    /// let outcome = stackful::run(|| {
    ///     let token = CancellationToken::new();
    ///     let canceller = {
    ///         let token = token.clone();
    ///         stackful::spawn(move || {
    ///             stackful::sleep(Duration::from_millis(20));
    ///             token.cancel();
    ///         })
    ///     };
    ///     let outcome = token.run(|| {
    ///         stackful::sleep(Duration::from_secs(3600)); // cut short
    ///         "slept an hour"
    ///     });
    ///     canceller.join().unwrap();
    ///     outcome
    /// });
    /// assert!(outcome.is_err());
    ///
    /// let token = CancellationToken::new();
    /// token.cancel();
    /// assert!(token.run(|| unreachable!("not run")).is_err());
    /// ```
    pub fn run<F: FnOnce() -> R, R>(&self, body: F) -> Result<R, Cancelled> {
        if self.is_cancelled() {
            return Err(Cancelled::by_token(0));
        }
        let scope = CloseOnDrop(scopes::open(Kind::Token(Enrolled::new(&self.shared))).0);
        let id = scope.0;
        let outcome = panic::catch_unwind(AssertUnwindSafe(body));
        drop(scope);
        match outcome {
            Ok(value) => Ok(value),
            Err(payload) if Cancelled::cause_of(&*payload) == Some(Cause::Token(id)) => {
                drop(payload); // closes the unwind's shield
                Err(Cancelled::by_token(id))
            }
            Err(payload) => panic::resume_unwind(payload),
        }
    }
}

/// Closes a scope however its body ends.
struct CloseOnDrop(u64);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        scopes::close(scopes::Opened(self.0));
    }
}

impl fmt::Debug for CancellationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancellationToken")
            .field("is_cancelled", &self.is_cancelled())
            .finish()
    }
}

#[cfg(test)]
impl CancellationToken {
    /// Enrolls the calling context, as `run` does, for scope tests.
    pub(crate) fn enroll(&self) -> Enrolled {
        Enrolled::new(&self.shared)
    }

    fn wakers(&self) -> (usize, usize) {
        let lists = self.shared.lists();
        (lists.wakers.len(), lists.wakers.slots.len())
    }

    fn children(&self) -> (usize, usize) {
        let lists = self.shared.lists();
        (lists.children.len(), lists.children.slots.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_run_many_times_keeps_one_slot() {
        let token = CancellationToken::new();
        for i in 0..1000 {
            assert_eq!(token.run(|| i).unwrap(), i);
            let nested = token.run(|| token.run(|| token.wakers()));
            assert_eq!(nested.unwrap().unwrap(), (2, 2), "two runs, two slots");
        }
        assert_eq!(token.wakers(), (0, 2), "slots are reused, not added");
    }

    #[test]
    fn dropped_children_leave_their_parent_and_slots_are_reused() {
        let parent = CancellationToken::new();
        for _ in 0..1000 {
            let a = parent.child_token();
            let b = a.clone();
            let _c = parent.child_token();
            assert_eq!(parent.children(), (2, 2));
            drop(a);
            assert_eq!(parent.children().0, 2, "a clone still holds it");
            drop(b);
            assert_eq!(parent.children().0, 1);
        }
        assert_eq!(parent.children(), (0, 2));
    }

    #[test]
    fn cancelling_empties_the_lists_and_children_born_later_register_nothing() {
        let parent = CancellationToken::new();
        let child = parent.child_token();
        let enrolled = parent.enroll();
        assert_eq!(parent.wakers().0, 1);
        parent.cancel();
        assert_eq!((parent.wakers(), parent.children()), ((0, 0), (0, 0)));
        assert!(child.is_cancelled());
        let late = parent.child_token();
        assert!(late.is_cancelled());
        assert_eq!(parent.children(), (0, 0));
        let late_enrolled = parent.enroll();
        assert_eq!(late_enrolled.key, NO_KEY);
        drop((enrolled, late_enrolled, child, late)); // stale keys: no-ops
        assert_eq!(parent.wakers(), (0, 0));
    }

    #[test]
    fn a_child_fires_at_its_parents_instant() {
        let parent = CancellationToken::new();
        let child = parent.child_token();
        parent.cancel();
        assert_eq!(child.shared.fired_at(), parent.shared.fired_at());
    }

    #[test]
    fn the_error_of_run_holds_no_shield_and_reads_well() {
        let token = CancellationToken::new();
        token.cancel();
        let err = token.run(|| ()).unwrap_err();
        assert_eq!(err.shield, 0);
        assert_eq!(err.to_string(), "cancelled by a CancellationToken");
        assert_eq!(
            format!("{err:?}"),
            "Cancelled(cancelled by a CancellationToken)"
        );
    }
}
