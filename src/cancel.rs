//! The unwind that closes a generator's body.
//!
//! Closing a suspended generator (Python's `close()` and `GeneratorExit`)
//! unwinds its stack from the `yield_` where it is suspended, so every
//! destructor on it runs. The unwind carries a [`Cancelled`] payload, tagged
//! with the identity of the stack it belongs to, and is started with
//! [`std::panic::resume_unwind`], so the panic hook does not print anything.
//!
//! A `catch_unwind` inside a coroutine body catches that unwind like any
//! panic. Let it go on: check the payload with [`Cancelled::is`] and re-raise
//! it, or use [`catch_unwind`](crate::catch_unwind), which does that for you.
//! A body that swallows it anyway is not undefined behaviour and does not
//! hang; see [`Generator::close`](crate::Generator::close) for what happens.

use std::any::Any;
use std::fmt;
use std::panic::{self, UnwindSafe};

/// The payload of the unwind that stackful starts to close a generator.
///
/// It is tagged with the identity of the coroutine it closes, so a nested
/// coroutine never mistakes another one's unwind for its own.
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
    /// Identity of the coroutine being closed: the top of its stack.
    token: usize,
}

impl Cancelled {
    pub(crate) fn closing(token: usize) -> Cancelled {
        Cancelled { token }
    }

    /// Whether a panic payload is stackful's close unwind, which must be
    /// re-raised with [`std::panic::resume_unwind`] rather than handled.
    pub fn is(payload: &(dyn Any + Send)) -> bool {
        payload.is::<Cancelled>()
    }

    /// Whether `payload` is the close unwind of the coroutine identified by `token`.
    pub(crate) fn is_for(payload: &(dyn Any + Send), token: usize) -> bool {
        payload
            .downcast_ref::<Cancelled>()
            .is_some_and(|c| c.token == token)
    }
}

impl fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancelled")
            .field("token", &format_args!("{:#x}", self.token))
            .finish()
    }
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("generator closed")
    }
}

/// [`std::panic::catch_unwind`] for code inside coroutines: it catches
/// panics but lets stackful's close unwind ([`Cancelled`]) pass through.
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
