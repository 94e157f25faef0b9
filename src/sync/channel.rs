//! Multi-producer, multi-consumer channels that suspend green threads.
//!
//! Three flavors sit behind one [`Sender`]/[`Receiver`] API, as in
//! crossbeam-channel:
//!
//! - **array** (`channel(cap)`, `cap > 0`): a lock-free bounded ring
//!   (crossbeam's `ArrayQueue`);
//! - **list** (`unbounded()`): a lock-free unbounded list (`SegQueue`);
//! - **zero** (`channel(0)`): a rendezvous; a sender waits until a receiver
//!   takes its value, handed over directly.
//!
//! The uncontended paths take no lock and make no system call: a push or pop
//! on the lock-free queue, then one load to see that nobody waits. Waiting
//! goes through the wait lists of [`super::wait`], in FIFO order: the
//! longest-waiting receiver (or sender) is woken first. A running green
//! thread may still take a message before the woken one runs (no strict
//! hand-off), which keeps throughput high; under contention every waiter is
//! woken in turn, so none is passed over forever.
//!
//! Cancellation loses nothing. A receiver cancelled after being woken passes
//! the wake-up on, and the message stays in the channel. A rendezvous
//! receiver cancelled after a value was handed to it gives the value to the
//! next waiting receiver, or keeps it at the front of the channel.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_queue::{ArrayQueue, SegQueue};

use super::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use super::wait::{TimedOut, WaitList, wait_until};
use crate::runtime::park::{self, Waker};

/// Creates a bounded channel holding up to `cap` messages; `cap = 0` makes a
/// rendezvous channel, where each `send` waits for a `recv`.
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
pub fn channel<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let flavor = if cap == 0 {
        Flavor::Zero(Zero::default())
    } else {
        Flavor::Array(ArrayQueue::new(cap))
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
    Chan::pair(Flavor::List(SegQueue::new()))
}

enum Flavor<T> {
    Array(ArrayQueue<T>),
    List(SegQueue<T>),
    Zero(Zero<T>),
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
        (Sender { chan: chan.clone() }, Receiver { chan })
    }

    fn senders_gone(&self) -> bool {
        self.senders.load(Ordering::Acquire) == 0
    }

    fn receivers_gone(&self) -> bool {
        self.receivers.load(Ordering::Acquire) == 0
    }

    pub(crate) fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        if self.receivers_gone() {
            return Err(TrySendError::Disconnected(value));
        }
        let pushed = match &self.flavor {
            Flavor::Array(q) => q.push(value).map_err(TrySendError::Full),
            Flavor::List(q) => {
                q.push(value);
                Ok(())
            }
            Flavor::Zero(z) => return z.try_send(value),
        };
        if pushed.is_ok() {
            self.recv_wait.notify_one();
        }
        pushed
    }

    pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
        let popped = match &self.flavor {
            Flavor::Array(q) => q.pop(),
            Flavor::List(q) => q.pop(),
            Flavor::Zero(z) => return z.try_recv(self.senders_gone()),
        };
        match popped {
            Some(v) => {
                self.send_wait.notify_one();
                Ok(v)
            }
            // Seen after the last sender left, a still-empty queue is final.
            None if self.senders_gone() => match &self.flavor {
                Flavor::Array(q) => q.pop().ok_or(TryRecvError::Disconnected),
                Flavor::List(q) => q.pop().ok_or(TryRecvError::Disconnected),
                Flavor::Zero(_) => Err(TryRecvError::Disconnected),
            },
            None => Err(TryRecvError::Empty),
        }
    }

    fn send_deadline(
        &self,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        if let Flavor::Zero(z) = &self.flavor {
            return z.send(self, value, deadline);
        }
        let mut slot = Some(value);
        let outcome = wait_until(&self.send_wait, deadline, || {
            match self.try_send(slot.take().expect("the value is put back on failure")) {
                Ok(()) => Some(Ok(())),
                Err(TrySendError::Full(v)) => {
                    slot = Some(v);
                    None
                }
                Err(TrySendError::Disconnected(v)) => Some(Err(v)),
            }
        });
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(v)) => Err(SendTimeoutError::Disconnected(v)),
            Err(TimedOut) => Err(SendTimeoutError::Timeout(
                slot.take().expect("kept on timeout"),
            )),
        }
    }

    fn recv_deadline(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        if let Flavor::Zero(z) = &self.flavor {
            return z.recv(self, deadline);
        }
        let outcome = wait_until(&self.recv_wait, deadline, || match self.try_recv() {
            Ok(v) => Some(Ok(v)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(RecvTimeoutError::Disconnected)),
        });
        outcome.unwrap_or(Err(RecvTimeoutError::Timeout))
    }

    fn len(&self) -> usize {
        match &self.flavor {
            Flavor::Array(q) => q.len(),
            Flavor::List(q) => q.len(),
            Flavor::Zero(z) => z.lock().leftover.len(),
        }
    }

    fn capacity(&self) -> Option<usize> {
        match &self.flavor {
            Flavor::Array(q) => Some(q.capacity()),
            Flavor::List(_) => None,
            Flavor::Zero(_) => Some(0),
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
}

/// A value waiting in a rendezvous, or a receiver waiting for one.
struct Packet<T> {
    value: Mutex<Option<T>>,
    /// The exchange happened: the value was taken (a sender's packet) or
    /// delivered (a receiver's packet).
    done: AtomicBool,
    waker: Waker,
}

impl<T> Packet<T> {
    fn new(value: Option<T>) -> Arc<Packet<T>> {
        Arc::new(Packet {
            value: Mutex::new(value),
            done: AtomicBool::new(false),
            waker: park::current_waker(),
        })
    }

    fn take(&self) -> Option<T> {
        self.value.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn put(&self, v: T) {
        *self.value.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
    }

    fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    fn complete(&self) {
        self.done.store(true, Ordering::Release);
        self.waker.wake();
    }
}

struct ZeroState<T> {
    senders: VecDeque<Arc<Packet<T>>>,
    receivers: VecDeque<Arc<Packet<T>>>,
    /// Values handed to receivers that were cancelled before taking them,
    /// oldest first; the next receive takes them before anything else.
    leftover: VecDeque<T>,
}

struct Zero<T> {
    state: Mutex<ZeroState<T>>,
}

impl<T> Default for Zero<T> {
    fn default() -> Self {
        Zero {
            state: Mutex::new(ZeroState {
                senders: VecDeque::new(),
                receivers: VecDeque::new(),
                leftover: VecDeque::new(),
            }),
        }
    }
}

/// Removes `p` from `queue`; true if it was there.
fn remove<T>(queue: &mut VecDeque<Arc<Packet<T>>>, p: &Arc<Packet<T>>) -> bool {
    match queue.iter().position(|q| Arc::ptr_eq(q, p)) {
        Some(i) => {
            queue.remove(i);
            true
        }
        None => false,
    }
}

impl<T> Zero<T> {
    fn lock(&self) -> MutexGuard<'_, ZeroState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let mut state = self.lock();
        match state.receivers.pop_front() {
            Some(receiver) => {
                // Put the value under the lock: a receiver that leaves checks
                // its packet under the lock too, so it cannot miss it.
                receiver.put(value);
                drop(state);
                receiver.complete();
                Ok(())
            }
            None => Err(TrySendError::Full(value)),
        }
    }

    fn try_recv(&self, senders_gone: bool) -> Result<T, TryRecvError> {
        let mut state = self.lock();
        if let Some(v) = state.leftover.pop_front() {
            return Ok(v);
        }
        match state.senders.pop_front() {
            Some(sender) => {
                let v = sender.take().expect("a waiting sender holds its value");
                drop(state);
                sender.complete();
                Ok(v)
            }
            None if senders_gone => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    fn wake_all(&self) {
        let state = self.lock();
        for p in state.senders.iter().chain(&state.receivers) {
            p.waker.wake();
        }
    }

    fn send(
        &self,
        chan: &Chan<T>,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        if chan.receivers_gone() {
            return Err(SendTimeoutError::Disconnected(value));
        }
        // Hand over to a waiting receiver, or queue up: in one critical
        // section, so a receiver cannot queue up between the two.
        let packet = {
            let mut state = self.lock();
            if let Some(receiver) = state.receivers.pop_front() {
                receiver.put(value);
                drop(state);
                receiver.complete();
                return Ok(());
            }
            let packet = Packet::new(Some(value));
            state.senders.push_back(packet.clone());
            packet
        };
        chan.recv_wait.notify_one(); // a receiver in `Select` may want it
        /// Takes the packet back if the sender leaves before the exchange.
        struct Withdraw<'a, T>(&'a Zero<T>, &'a Arc<Packet<T>>);
        impl<T> Drop for Withdraw<'_, T> {
            fn drop(&mut self) {
                remove(&mut self.0.lock().senders, self.1);
            }
        }
        let withdraw = Withdraw(self, &packet);
        loop {
            if packet.is_done() {
                std::mem::forget(withdraw);
                return Ok(());
            }
            let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
            if timed_out || chan.receivers_gone() {
                let withdrawn = remove(&mut self.lock().senders, &packet);
                std::mem::forget(withdraw);
                if !withdrawn {
                    return Ok(()); // taken just now
                }
                let v = packet.take().expect("an untaken packet holds its value");
                return Err(if timed_out {
                    SendTimeoutError::Timeout(v)
                } else {
                    SendTimeoutError::Disconnected(v)
                });
            }
            park::park(deadline);
        }
    }

    fn recv(&self, chan: &Chan<T>, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        // Take a waiting value, or queue up, in one critical section.
        let packet = {
            let mut state = self.lock();
            if let Some(v) = state.leftover.pop_front() {
                return Ok(v);
            }
            if let Some(sender) = state.senders.pop_front() {
                let v = sender.take().expect("a waiting sender holds its value");
                drop(state);
                sender.complete();
                return Ok(v);
            }
            if chan.senders_gone() {
                return Err(RecvTimeoutError::Disconnected);
            }
            let packet = Packet::new(None);
            state.receivers.push_back(packet.clone());
            packet
        };
        chan.send_wait.notify_one(); // a sender in `Select` may want us
        /// Leaves the queue; a value delivered to a receiver that leaves
        /// anyway goes to the next receiver, or stays in the channel.
        struct Leave<'a, T>(&'a Zero<T>, &'a Arc<Packet<T>>);
        impl<T> Drop for Leave<'_, T> {
            fn drop(&mut self) {
                let mut state = self.0.lock();
                if remove(&mut state.receivers, self.1) {
                    return; // nothing was delivered
                }
                if let Some(v) = self.1.take() {
                    match state.receivers.pop_front() {
                        Some(next) => {
                            next.put(v);
                            drop(state);
                            next.complete();
                        }
                        None => state.leftover.push_front(v),
                    }
                }
            }
        }
        let leave = Leave(self, &packet);
        loop {
            if packet.is_done()
                && let Some(v) = packet.take()
            {
                std::mem::forget(leave);
                return Ok(v);
            }
            if chan.senders_gone() {
                drop(leave); // keeps a value delivered meanwhile in the channel
                return self
                    .try_recv(true)
                    .map_err(|_| RecvTimeoutError::Disconnected);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                drop(leave);
                return Err(RecvTimeoutError::Timeout);
            }
            park::park(deadline);
        }
    }
}

/// The sending half of a channel. Clone it for more producers; the channel
/// disconnects for receivers when the last one is dropped.
pub struct Sender<T> {
    pub(crate) chan: Arc<Chan<T>>,
}

/// The receiving half of a channel. Clone it for more consumers; the
/// channel disconnects for senders when the last one is dropped.
pub struct Receiver<T> {
    pub(crate) chan: Arc<Chan<T>>,
}

impl<T> Sender<T> {
    /// Sends `value`, waiting while the channel is full (for a rendezvous
    /// channel, until a receiver takes it). A cancellation point.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the value if every receiver is gone.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.chan
            .send_deadline(value, None)
            .map_err(|e| SendError(e.into_inner()))
    }

    /// Sends without waiting.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] if there is no room (or no receiver waiting on
    /// a rendezvous channel), [`TrySendError::Disconnected`] if every receiver
    /// is gone; both hand the value back.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.chan.try_send(value)
    }

    /// Sends, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] or [`SendTimeoutError::Disconnected`],
    /// with the value.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_deadline(value, Instant::now().checked_add(timeout))
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
        self.chan.send_deadline(value, deadline)
    }

    /// Messages in the channel now.
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether the channel holds no message now.
    pub fn is_empty(&self) -> bool {
        self.chan.len() == 0
    }

    /// The capacity: `None` for an unbounded channel, `Some(0)` for a rendezvous.
    pub fn capacity(&self) -> Option<usize> {
        self.chan.capacity()
    }
}

impl<T> Receiver<T> {
    /// Receives a message, waiting until one arrives. A cancellation point.
    ///
    /// # Errors
    ///
    /// [`RecvError`] once the channel is empty and every sender is gone.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.chan.recv_deadline(None).map_err(|_| RecvError)
    }

    /// Receives without waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] or [`TryRecvError::Disconnected`].
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.chan.try_recv()
    }

    /// Receives, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] or [`RecvTimeoutError::Disconnected`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.chan.recv_deadline(Instant::now().checked_add(timeout))
    }

    /// Receives, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Receiver::recv_timeout).
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.chan.recv_deadline(Some(deadline))
    }

    /// Messages in the channel now.
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether the channel holds no message now.
    pub fn is_empty(&self) -> bool {
        self.chan.len() == 0
    }

    /// The capacity: `None` for an unbounded channel, `Some(0)` for a rendezvous.
    pub fn capacity(&self) -> Option<usize> {
        self.chan.capacity()
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
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.chan.receivers.fetch_add(1, Ordering::Relaxed);
        Receiver {
            chan: self.chan.clone(),
        }
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
            self.chan.disconnect();
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
        self.rx.recv().ok()
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
        self.rx.recv().ok()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;

    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}
