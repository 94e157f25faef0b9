//! Waiting on several channel operations at once: Go's `select`.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::channel::{Chan, Receiver, Sender, Try};
use super::error::{RecvError, SendError};
use super::wait::{Registration, WaitList, Waiter};
use crate::runtime::park;

/// One registered operation.
trait Operation<'a> {
    /// Tries to complete without waiting; on success returns the result.
    fn try_complete(&mut self) -> Option<Box<dyn Any>>;
    /// The list to wait on for this operation (it lives in the channel).
    fn list(&self) -> &'a WaitList;
    /// The channel, to check `SelectedOperation` is completed with the right one.
    fn chan(&self) -> *const ();
}

/// The result of a completed receive: the message (`ok`), or the
/// disconnection. Received straight into this heap box, so a large message
/// does not pass through the stack.
struct Received<T> {
    value: MaybeUninit<T>,
    ok: bool,
}

impl<T> Drop for Received<T> {
    fn drop(&mut self) {
        if self.ok {
            // SAFETY: `ok` says `value` holds a message, not yet moved out.
            unsafe { self.value.assume_init_drop() };
        }
    }
}

struct RecvOp<'a, T> {
    chan: &'a Chan<T>,
    /// Room for the result, kept across attempts that find nothing.
    room: Option<Box<MaybeUninit<Received<T>>>>,
}

impl<'a, T: 'static> Operation<'a> for RecvOp<'a, T> {
    fn try_complete(&mut self) -> Option<Box<dyn Any>> {
        let room = self.room.get_or_insert_with(Box::new_uninit);
        let p = room.as_mut_ptr();
        // SAFETY: `p` points to our uninitialized box; the message, if
        // any, is written into its `value` field.
        let outcome = unsafe { self.chan.try_recv_raw((&raw mut (*p).value).cast::<T>()) };
        let ok = match outcome {
            Try::Done => true,
            Try::Disconnected => false,
            Try::NotReady => return None,
        };
        // SAFETY: `value` is written if `ok` (and may stay uninitialized
        // otherwise); `ok` is written now, so the box is initialized.
        let result = unsafe {
            (&raw mut (*p).ok).write(ok);
            self.room.take().expect("filled above").assume_init()
        };
        Some(result)
    }

    fn list(&self) -> &'a WaitList {
        &self.chan.recv_wait
    }

    fn chan(&self) -> *const () {
        std::ptr::from_ref(self.chan).cast()
    }
}

/// The result of a completed send: sent, or the message back, boxed.
enum Sent<T> {
    Yes(PhantomData<T>),
    Disconnected(Box<T>),
}

/// A send operation, its message in the same heap box as the operation.
struct SendOp<'a, T> {
    chan: &'a Chan<T>,
    value: MaybeUninit<T>,
    /// `value` holds the message (not sent or handed back yet).
    full: bool,
}

impl<T> Drop for SendOp<'_, T> {
    fn drop(&mut self) {
        if self.full {
            // SAFETY: `full` says the message is still here.
            unsafe { self.value.assume_init_drop() };
        }
    }
}

impl<'a, T: 'static> Operation<'a> for SendOp<'a, T> {
    fn try_complete(&mut self) -> Option<Box<dyn Any>> {
        if !self.full {
            return None;
        }
        // SAFETY: `full`: the message is here; on `Done` it moved, and
        // `full` is cleared so that it is not dropped here again.
        match unsafe { self.chan.try_send_raw(self.value.as_ptr()) } {
            Try::Done => {
                self.full = false;
                Some(Box::new(Sent::<T>::Yes(PhantomData)))
            }
            Try::Disconnected => {
                let mut back = Box::<T>::new_uninit();
                self.full = false;
                // SAFETY: moves the message, which `full` no longer claims,
                // into a box of its own.
                let back = unsafe {
                    ptr::copy_nonoverlapping(self.value.as_ptr(), back.as_mut_ptr(), 1);
                    back.assume_init()
                };
                Some(Box::new(Sent::Disconnected(back)))
            }
            Try::NotReady => None,
        }
    }

    fn list(&self) -> &'a WaitList {
        &self.chan.send_wait
    }

    fn chan(&self) -> *const () {
        std::ptr::from_ref(self.chan).cast()
    }
}

/// Waits on several send and receive operations and completes exactly one:
/// the first that can proceed. Used directly or through [`select!`](crate::select).
///
/// Ready operations are tried starting from a rotating position, so one
/// busy channel does not starve the others. The value of a send operation
/// that is not selected is dropped with the `Select`.
///
/// A rendezvous (capacity 0) operation is ready only when a plain `send` or
/// `recv` waits on the other side; two `Select`s cannot rendezvous with each
/// other.
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
/// let op = sel.wait();
/// assert_eq!(op.index(), first);
/// assert_ne!(op.index(), second);
/// assert_eq!(op.recv(&rx1), Ok(7));
/// ```
#[derive(Default)]
pub struct Select<'a> {
    ops: Vec<Box<dyn Operation<'a> + 'a>>,
}

/// The operation a [`Select`] completed; read its result with
/// [`recv`](SelectedOperation::recv) or [`send`](SelectedOperation::send).
#[must_use = "the result of the selected operation should be read"]
pub struct SelectedOperation {
    index: usize,
    chan: *const (),
    result: Box<dyn Any>,
}

static ROTATE: AtomicUsize = AtomicUsize::new(0);

impl<'a> Select<'a> {
    /// An empty selection.
    pub fn new() -> Select<'a> {
        Select { ops: Vec::new() }
    }

    /// Adds a receive operation; returns its index.
    pub fn recv<T: 'static>(&mut self, rx: &'a Receiver<T>) -> usize {
        self.ops.push(Box::new(RecvOp {
            chan: &rx.chan,
            room: None,
        }));
        self.ops.len() - 1
    }

    /// Adds a send operation of `value`; returns its index.
    pub fn send<T: 'static>(&mut self, tx: &'a Sender<T>, value: T) -> usize {
        // Built in place on the heap, so a large message is not copied on
        // the stack on its way in.
        let mut op = Box::<SendOp<'a, T>>::new_uninit();
        let p = op.as_mut_ptr();
        // SAFETY: every field of the box is written; the message's bytes
        // move into it, and `value` is forgotten below.
        let op = unsafe {
            (&raw mut (*p).chan).write(&tx.chan);
            (&raw mut (*p).full).write(true);
            ptr::copy_nonoverlapping(&raw const value, (&raw mut (*p).value).cast::<T>(), 1);
            op.assume_init()
        };
        std::mem::forget(value);
        self.ops.push(op);
        self.ops.len() - 1
    }

    fn try_all(&mut self) -> Option<SelectedOperation> {
        let n = self.ops.len();
        let start = ROTATE.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            let index = (start + k) % n;
            if let Some(result) = self.ops[index].try_complete() {
                let chan = self.ops[index].chan();
                return Some(SelectedOperation {
                    index,
                    chan,
                    result,
                });
            }
        }
        None
    }

    /// Completes an operation that can proceed now, if any; never waits.
    pub fn try_wait(&mut self) -> Option<SelectedOperation> {
        self.try_all()
    }

    /// Waits until an operation completes. A cancellation point.
    ///
    /// # Panics
    ///
    /// If no operation was added: that would wait forever.
    #[track_caller]
    pub fn wait(&mut self) -> SelectedOperation {
        self.wait_deadline(None).expect("no deadline")
    }

    /// Waits at most `timeout`; `None` if nothing completed.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<SelectedOperation> {
        self.wait_deadline(Instant::now().checked_add(timeout))
    }

    /// Waits until `deadline` at the latest (`None`: no deadline).
    ///
    /// # Panics
    ///
    /// If no operation was added and there is no deadline.
    #[track_caller]
    pub fn wait_deadline(&mut self, deadline: Option<Instant>) -> Option<SelectedOperation> {
        assert!(
            !self.ops.is_empty() || deadline.is_some(),
            "Select::wait with no operations would wait forever; add a send or recv first"
        );
        // The registrations of the last park, kept until the retry after it
        // has shown which notification, if any, was used.
        let mut parked: Option<(Vec<Registration<'a>>, Vec<Arc<Waiter>>)> = None;
        loop {
            let done = self.try_all();
            if let Some((registrations, waiters)) = parked.take() {
                // With nothing completed, every notification we had was
                // stale (someone else took the message).
                settle(
                    registrations,
                    &waiters,
                    done.as_ref().map(SelectedOperation::index),
                );
            }
            if let Some(op) = done {
                return Some(op);
            }
            // One waiter per list, so each notification is accounted for on
            // its own list.
            let waiters: Vec<Arc<Waiter>> = self.ops.iter().map(|_| Waiter::new()).collect();
            let registrations: Vec<Registration<'a>> = self
                .ops
                .iter()
                .zip(&waiters)
                .map(|(op, w)| Registration::new(op.list(), w))
                .collect();
            // Re-check after registering: a change before it is seen now.
            let recheck = (0..self.ops.len())
                .find_map(|index| self.ops[index].try_complete().map(|result| (index, result)));
            if let Some((index, result)) = recheck {
                settle(registrations, &waiters, Some(index));
                let chan = self.ops[index].chan();
                return Some(SelectedOperation {
                    index,
                    chan,
                    result,
                });
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
            park::park(deadline);
            parked = Some((registrations, waiters));
        }
    }
}

/// Ends the registrations of one wait. The completed operation, `used`,
/// used its list's notification, if one came; any other list's is passed on
/// (dropping a registration does that), or a plain receiver on that list
/// would never hear of its message. With no operation completed (`None`),
/// the notifications are all used up.
fn settle(registrations: Vec<Registration<'_>>, waiters: &[Arc<Waiter>], used: Option<usize>) {
    for (index, (registration, waiter)) in registrations.into_iter().zip(waiters).enumerate() {
        if waiter.is_notified() && used.is_none_or(|u| u == index) {
            registration.consume();
        }
    }
}

impl fmt::Debug for Select<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Select")
            .field("operations", &self.ops.len())
            .finish()
    }
}

impl SelectedOperation {
    /// The index of the completed operation, as returned when it was added.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The result of a completed receive on `rx`.
    ///
    /// # Panics
    ///
    /// If the selected operation was not a receive on `rx`.
    #[track_caller]
    pub fn recv<T: 'static>(self, rx: &Receiver<T>) -> Result<T, RecvError> {
        assert!(
            std::ptr::eq(self.chan, std::ptr::from_ref(&*rx.chan).cast()),
            "SelectedOperation::recv called with another channel than the selected operation's"
        );
        let mut received = match self.result.downcast::<Received<T>>() {
            Ok(received) => received,
            Err(_) => panic!("SelectedOperation::recv called on a send operation"),
        };
        if !received.ok {
            return Err(RecvError);
        }
        received.ok = false; // moved out below
        // SAFETY: `ok` said the message is there; it is read out once.
        Ok(unsafe { received.value.as_ptr().read() })
    }

    /// The result of a completed send on `tx`; an error hands the value back.
    ///
    /// # Panics
    ///
    /// If the selected operation was not a send on `tx`.
    #[track_caller]
    pub fn send<T: 'static>(self, tx: &Sender<T>) -> Result<(), SendError<T>> {
        assert!(
            std::ptr::eq(self.chan, std::ptr::from_ref(&*tx.chan).cast()),
            "SelectedOperation::send called with another channel than the selected operation's"
        );
        let sent = match self.result.downcast::<Sent<T>>() {
            Ok(sent) => sent,
            Err(_) => panic!("SelectedOperation::send called on a receive operation"),
        };
        match *sent {
            Sent::Yes(_) => Ok(()),
            Sent::Disconnected(back) => unbox_send_error(back),
        }
    }
}

/// The message of a failed send, back: a frame of its own, so that a
/// successful send's holds no room for a copy of the message.
#[cold]
#[inline(never)]
#[allow(clippy::boxed_local)] // the box kept the message off the stack
fn unbox_send_error<T>(back: Box<T>) -> Result<(), SendError<T>> {
    Err(SendError(*back))
}

impl fmt::Debug for SelectedOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectedOperation")
            .field("index", &self.index)
            .finish()
    }
}

/// Waits on several channel operations and runs the arm of the first that
/// completes, like Go's `select`.
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
/// Bodies are expressions followed by a comma, or blocks. The channel
/// expressions are evaluated twice (to register and to read the result), so
/// pass variables. A value of an unselected `send` arm is dropped.
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
///     recv(quit) -> _ => -1,
///     default(Duration::from_secs(1)) => 0,
/// };
/// assert_eq!(got, 5);
/// ```
#[macro_export]
macro_rules! select {
    ($($arms:tt)*) => {
        $crate::__select_collect!([] $($arms)*)
    };
}

/// Collects `select!` arms into a list; not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_collect {
    ([$($done:tt)*] recv($rx:expr) -> $res:pat => $body:block $(,)? $($rest:tt)*) => {
        $crate::__select_collect!([$($done)* (recv ($rx) ($res) ($body))] $($rest)*)
    };
    ([$($done:tt)*] recv($rx:expr) -> $res:pat => $body:expr, $($rest:tt)*) => {
        $crate::__select_collect!([$($done)* (recv ($rx) ($res) ($body))] $($rest)*)
    };
    ([$($done:tt)*] recv($rx:expr) -> $res:pat => $body:expr) => {
        $crate::__select_collect!([$($done)* (recv ($rx) ($res) ($body))])
    };
    ([$($done:tt)*] send($tx:expr, $value:expr) -> $res:pat => $body:block $(,)? $($rest:tt)*) => {
        $crate::__select_collect!([$($done)* (send ($tx, $value) ($res) ($body))] $($rest)*)
    };
    ([$($done:tt)*] send($tx:expr, $value:expr) -> $res:pat => $body:expr, $($rest:tt)*) => {
        $crate::__select_collect!([$($done)* (send ($tx, $value) ($res) ($body))] $($rest)*)
    };
    ([$($done:tt)*] send($tx:expr, $value:expr) -> $res:pat => $body:expr) => {
        $crate::__select_collect!([$($done)* (send ($tx, $value) ($res) ($body))])
    };
    ([$($done:tt)*] default($timeout:expr) => $body:expr $(,)?) => {
        $crate::__select_run!([$($done)*] (timeout ($timeout) ($body)))
    };
    ([$($done:tt)*] default => $body:expr $(,)?) => {
        $crate::__select_run!([$($done)*] (now ($body)))
    };
    ([$($done:tt)*]) => {
        $crate::__select_run!([$($done)*] (block))
    };
}

/// Registers the collected arms, waits, and dispatches; not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_run {
    ([$($arm:tt)*] $mode:tt) => {{
        let mut __select = $crate::sync::Select::new();
        $( $crate::__select_register!(__select $arm); )*
        let __selected = $crate::__select_wait!(__select $mode);
        ::core::mem::drop(__select);
        $crate::__select_dispatch!(__selected 0usize, $mode, $($arm)*)
    }};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_register {
    ($sel:ident (recv ($rx:expr) ($res:pat) ($body:expr))) => {
        $sel.recv(&$rx);
    };
    ($sel:ident (send ($tx:expr, $value:expr) ($res:pat) ($body:expr))) => {
        $sel.send(&$tx, $value);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_wait {
    ($sel:ident (block)) => {
        ::std::option::Option::Some($sel.wait())
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
    ($op:ident $i:expr, (block), ) => {
        ::core::unreachable!("select! completed an operation it did not register")
    };
    ($op:ident $i:expr, (now ($body:expr)), ) => {
        $body
    };
    ($op:ident $i:expr, (timeout ($t:expr) ($body:expr)), ) => {
        $body
    };
    ($op:ident $i:expr, $mode:tt, (recv ($rx:expr) ($res:pat) ($body:expr)) $($rest:tt)*) => {
        match $op {
            ::std::option::Option::Some(__o) if __o.index() == $i => {
                let $res = __o.recv(&$rx);
                $body
            }
            $op => $crate::__select_dispatch!($op $i + 1, $mode, $($rest)*),
        }
    };
    ($op:ident $i:expr, $mode:tt, (send ($tx:expr, $value:expr) ($res:pat) ($body:expr)) $($rest:tt)*) => {
        match $op {
            ::std::option::Option::Some(__o) if __o.index() == $i => {
                let $res = __o.send(&$tx);
                $body
            }
            $op => $crate::__select_dispatch!($op $i + 1, $mode, $($rest)*),
        }
    };
}
