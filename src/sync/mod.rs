//! Channels and synchronisation primitives that suspend green threads, not
//! workers: asyncio's `Queue`, `Lock`, `Event`, `Condition`, `Semaphore` and
//! `Barrier`, and Go's channels and `select`, as blocking-style Rust.
//!
//! Every blocking operation here suspends the calling green thread and
//! leaves its worker free; called from a plain OS thread, it parks the
//! thread. Both kinds mix freely: an OS thread may feed green threads
//! through a channel, and the other way round. Every wait is a cancellation
//! point and works inside [`timeout`](crate::timeout); a green thread that
//! is cancelled while waiting leaves the line without losing a message, a
//! permit or a lock hand-off.
//!
//! All of them wait through one seam, the wait queue in `wait.rs`, which
//! parks through `runtime::park`.

mod channel;
mod error;
mod event;
mod mutex;
mod queue;
mod select;
mod semaphore;
mod spin;
pub(crate) mod wait;

pub use channel::{
    IntoIter, Iter, Receiver, RecvFuture, SendFuture, Sender, TryIter, after, channel, never, tick,
    unbounded,
};
pub use error::{
    ReadyTimeoutError, RecvError, RecvTimeoutError, SelectTimeoutError, SendError,
    SendTimeoutError, TryReadyError, TryRecvError, TrySelectError, TrySendError,
};
pub use event::{
    Barrier, BarrierWaitResult, Condvar, Event, EventWaitFuture, WaitGroup, WaitTimeoutResult,
};
pub use mutex::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
#[doc(hidden)]
pub use select::{__select_order, SelectOrder, SelectSlot};
pub use select::{Select, SelectedOperation};
pub use semaphore::{AcquireFuture, Semaphore, SemaphorePermit};
