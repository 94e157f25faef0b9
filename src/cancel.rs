//! The unwinds that stackful starts on purpose: closing a generator,
//! cancelling a green thread, and expiring a timeout.
//!
//! Each of them unwinds a coroutine's stack from a suspension point, so every
//! destructor on it runs, like Python's `GeneratorExit` and `CancelledError`
//! or a dropped future. The unwind carries a [`Cancelled`] payload tagged with
//! the identity of whatever started it (a generator, a green thread, a timeout
//! scope), so nested coroutines and nested timeouts never take each other's
//! unwind for their own. It is started with [`std::panic::resume_unwind`], so
//! the panic hook prints nothing.
//!
//! A `catch_unwind` inside coroutine code catches these unwinds like any
//! panic. Let them go on: check the payload with [`Cancelled::is`] and
//! re-raise it, or use [`catch_unwind`], which does that
//! for you. Code that swallows one anyway causes no undefined behaviour and no
//! hang: a cancelled green thread or an expired timeout is unwound again at its
//! next suspension point, and a generator that yields while being closed gets
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
use std::panic::{self, UnwindSafe};

/// Who started the unwind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// `Generator::close`; the token is the generator's unique id.
    Close(u64),
    /// `JoinHandle::cancel`, a failing sibling, or `run`'s shutdown; the id
    /// is the green thread's.
    Task(u64),
    /// An expired `timeout` (or other cancel scope) with this scope id.
    Scope(u64),
}

/// The payload of an unwind that stackful starts on purpose: a generator
/// being closed, a green thread being cancelled, or a timeout expiring.
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
    /// again (which would abort the process).
    shield: u64,
}

impl Cancelled {
    /// Starts this unwind, shielding the destructors it runs.
    #[cold]
    pub(crate) fn raise(cause: Cause) -> ! {
        let shield = crate::scopes::open(crate::scopes::Kind::Unwind(std::time::Instant::now())).0;
        panic::resume_unwind(Box::new(Cancelled { cause, shield }))
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
        crate::scopes::close(crate::scopes::Opened(self.shield));
    }
}

impl fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Cancelled").field(&self.cause).finish()
    }
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cause {
            Cause::Close(_) => f.write_str("generator closed"),
            Cause::Task(id) => write!(f, "green thread #{id} cancelled"),
            Cause::Scope(_) => f.write_str("timeout expired"),
        }
    }
}

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
