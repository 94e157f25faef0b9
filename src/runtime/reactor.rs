//! The reactor: one epoll instance per executor thread (each pool worker,
//! and each thread that calls `run`), which is also where that thread parks.
//!
//! # Parking
//!
//! An executor with nothing to do parks here ([`Reactor::park`]). With
//! descriptors registered it waits in `epoll_pwait2` with its next timer as
//! the timeout; with none it waits on a futex (`crossbeam`'s `Parker`),
//! which wakes about a microsecond sooner, so that green threads that only
//! compute and talk through channels pay nothing for the reactor. No source
//! can be registered while it parks: only the owner registers sources with
//! its reactor. Other threads wake it ([`Reactor::unpark`]) by writing its
//! eventfd or unparking the futex, whichever it waits on, and only while it
//! is parked: the executor publishes `parked` (SeqCst fence) before its
//! last look for work, a waker stores its work first and reads `parked`
//! after a SeqCst fence, so at least one of them sees the other (the
//! protocol of `Idle` in `runtime`, one level down). `notified` saves the
//! second and later eventfd writes of one park.
//!
//! Kernels before 5.11 lack `epoll_pwait2`: the first ENOSYS switches the
//! process to `epoll_wait`, whose timeout is whole milliseconds, rounded up
//! so that a timer never fires early; a 100 µs sleep of a worker that waits
//! on sockets then takes about a millisecond (a worker without sockets
//! parks on the futex, as precise as before).
//!
//! # Sources
//!
//! A descriptor that waits green ([`Io`]) is non-blocking and registered,
//! edge-triggered, with the reactor of the thread where a green thread
//! first waits on it. Its [`Source`] has a reader and a writer direction,
//! each with a readiness sequence number that the event handler bumps and a
//! list of waiting contexts. An operation tries its system call first; on
//! `EAGAIN` it enlists its waker, checks the sequence number it read before
//! the call (an event in between bumped it: retry at once, else the edge
//! would be lost), and parks. Events wake waiters through `Waker::wake`,
//! never by resuming them inline. A thread's green threads that complete
//! `BUDGET` operations in a row without waiting yield before the next one,
//! so a green thread whose socket is always ready cannot keep its worker.
//!
//! The epoll event's data is a slab key (index and generation), never a
//! pointer: an event still in flight when its source deregisters finds the
//! generation changed and is ignored, and a reused slot or a reused file
//! descriptor number cannot be confused with the old one.
//!
//! # Ownership
//!
//! A green thread that waits registers the source with its own thread's
//! reactor, moving it there (`EPOLL_CTL_DEL` from the old one,
//! `EPOLL_CTL_ADD` to the new) if it was registered elsewhere, unless
//! other green threads are waiting on it through a reactor that is still
//! polled (`alive`): then it stays, and the event handler there wakes this
//! waiter through the normal `wake` path. So a socket moved to another
//! worker follows its user after one wait (its events then need no
//! cross-thread wake-up), and a reader and a writer of one socket on two
//! workers do not pull the registration back and forth. `EPOLL_CTL_ADD`
//! reports readiness that is already there, so no edge is lost in a move.
//!
//! A reactor whose owner stops polling it (a thread leaving `run`, a pool
//! worker that stops) is retired: it wakes every waiter of every source
//! registered with it, and they move the registration to their own
//! reactors on their next wait. A socket used after the `run` that
//! registered it has returned therefore keeps working. Plain OS threads
//! never register: they wait in `ppoll(2)` on the descriptor alone.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_utils::sync::{Parker, Unparker};

use crate::cancel::Cancelled;
use crate::runtime::park::{self, Waker};
use crate::runtime::worker;

/// The eventfd's key in the epoll set; slab keys never reach it (their
/// index is below `u32::MAX`).
const WAKE_KEY: u64 = u64::MAX;

/// Events taken from the kernel per call.
const EVENTS: usize = 256;

/// Set once `epoll_pwait2` returned ENOSYS: use `epoll_wait` from then on.
static NO_PWAIT2: AtomicBool = AtomicBool::new(false);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// An epoll instance, its eventfd and the sources registered with it.
pub(crate) struct Reactor {
    epfd: OwnedFd,
    eventfd: OwnedFd,
    /// How the owner waits, if it is parked (or about to): `AWAKE`,
    /// `IN_EPOLL` or `ON_FUTEX`.
    parked: AtomicU8,
    /// The eventfd was written during this park.
    notified: AtomicBool,
    /// Set by every unpark before it looks at `parked`: a park that finds
    /// it set after announcing itself does not sleep. So an unpark that
    /// came while the owner was awake is not lost on the park that follows
    /// (the futex parker's token, for both ways of parking). A spawner
    /// that takes an idle worker off the idle list and counts it as
    /// searching relies on this: that worker must look again, not sleep.
    woken: AtomicBool,
    slab: Mutex<Slab>,
    /// Registered sources: a busy executor polls only if there are any.
    registered: AtomicUsize,
    /// The owner's buffers (only the owning thread polls).
    scratch: Mutex<Scratch>,
    /// Its owner polls it: a pool worker that has not stopped, or a thread
    /// inside `run`. See [`Reactor::retire`].
    alive: AtomicBool,
    /// Where the owner parks while no source is registered. Only the owner
    /// locks it.
    futex: Mutex<Parker>,
    unparker: Unparker,
}

const AWAKE: u8 = 0;
const IN_EPOLL: u8 = 1;
const ON_FUTEX: u8 = 2;

#[derive(Default)]
struct Scratch {
    events: Vec<libc::epoll_event>,
    ready: Vec<(Arc<Source>, u32)>,
}

#[derive(Default)]
struct Slab {
    entries: Vec<Entry>,
    free: Vec<u32>,
}

#[derive(Default)]
struct Entry {
    generation: u32,
    source: Option<Arc<Source>>,
}

fn key(index: u32, generation: u32) -> u64 {
    u64::from(generation) << 32 | u64::from(index)
}

impl Reactor {
    /// A new epoll instance with its eventfd registered.
    pub(crate) fn new() -> io::Result<Reactor> {
        // SAFETY: plain system calls; each result is checked, and a valid
        // descriptor is owned by exactly one OwnedFd from here on.
        let epfd = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        // SAFETY: as above.
        let eventfd = unsafe {
            OwnedFd::from_raw_fd(cvt(libc::eventfd(
                0,
                libc::EFD_NONBLOCK | libc::EFD_CLOEXEC,
            ))?)
        };
        // Edge-triggered: every write is an edge, so the counter is never
        // read (one system call less per wake-up). It cannot overflow: that
        // takes 2^64 - 1 writes, and `notified` allows one per park.
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: WAKE_KEY,
        };
        // SAFETY: both descriptors are open (owned above); `ev` is a valid
        // event the kernel only reads.
        cvt(unsafe {
            libc::epoll_ctl(
                epfd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                eventfd.as_raw_fd(),
                &mut ev,
            )
        })?;
        let futex = Parker::new();
        Ok(Reactor {
            epfd,
            eventfd,
            parked: AtomicU8::new(AWAKE),
            notified: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            slab: Mutex::new(Slab::default()),
            registered: AtomicUsize::new(0),
            scratch: Mutex::new(Scratch::default()),
            alive: AtomicBool::new(true),
            unparker: futex.unparker().clone(),
            futex: Mutex::new(futex),
        })
    }

    /// The reactor of this thread when it runs `run`'s executor: one per
    /// thread, kept for the thread's life, so repeated `run`s reuse it (a
    /// `run` in a thread-local destructor, after it is gone, gets its own).
    pub(crate) fn for_run_thread() -> io::Result<Arc<Reactor>> {
        thread_local! {
            static RUN_REACTOR: std::cell::OnceCell<Arc<Reactor>> =
                const { std::cell::OnceCell::new() };
        }
        RUN_REACTOR
            .try_with(|cell| {
                if let Some(r) = cell.get() {
                    return Ok(r.clone());
                }
                let r = Arc::new(Reactor::new()?);
                let _ = cell.set(r.clone());
                Ok(r)
            })
            .unwrap_or_else(|_| Reactor::new().map(Arc::new))
    }

    /// The owner polls it again (a thread entering `run`).
    pub(crate) fn revive(&self) {
        self.alive.store(true, Ordering::SeqCst);
    }

    /// The owner stops polling it (a pool worker that stops, a thread
    /// leaving `run`). Every green thread waiting on a source registered
    /// here is woken: it retries, and the registration moves to its own
    /// reactor (see `Source::enlist`), where its events will be seen.
    pub(crate) fn retire(&self) {
        self.alive.store(false, Ordering::SeqCst);
        let sources: Vec<Arc<Source>> = lock(&self.slab)
            .entries
            .iter()
            .filter_map(|e| e.source.clone())
            .collect();
        for s in sources {
            s.fire(u32::MAX);
        }
    }

    /// Wakes the owner if it is parked; called after the caller published
    /// the work it is being woken for.
    pub(crate) fn unpark(&self) {
        self.woken.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        match self.parked.load(Ordering::Relaxed) {
            IN_EPOLL if !self.notified.swap(true, Ordering::AcqRel) => {
                let one: u64 = 1;
                // SAFETY: the eventfd is open for as long as `self` lives;
                // the kernel reads 8 bytes from a live u64. (It cannot fail:
                // see `new` on the counter.)
                unsafe {
                    libc::write(
                        self.eventfd.as_raw_fd(),
                        (&one as *const u64).cast(),
                        std::mem::size_of::<u64>(),
                    )
                };
            }
            // A token the owner may find after it woke anyway: its next
            // park on the futex returns at once, which is harmless.
            ON_FUTEX => self.unparker.unpark(),
            _ => {}
        }
    }

    /// Parks the owner until a wake-up ([`unpark`](Self::unpark)), an I/O
    /// event or `deadline()`, unless `busy()`, asked after the park is
    /// announced, says there is work after all. Returns whether it parked.
    /// Owner thread only.
    pub(crate) fn park(
        &self,
        busy: impl FnOnce() -> bool,
        deadline: impl FnOnce() -> Option<Instant>,
    ) -> bool {
        let mode = if self.has_sources() {
            IN_EPOLL
        } else {
            ON_FUTEX
        };
        // Cleared here, before the park is announced, not only when the
        // last one ended: an unpark that saw that park's `parked` late may
        // set `notified` after that clear, and its eventfd write can be
        // taken by a `poll_now` between parks; a flag left set would then
        // make every unpark of this park skip its write. Set after this
        // clear, it promises a write that this park's epoll_wait will see
        // (nothing takes events between here and there).
        self.notified.store(false, Ordering::SeqCst);
        self.parked.store(mode, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        // An unpark stores `woken` before it reads `parked`, this park the
        // other way round: either it sees this park and wakes it, or this
        // park sees its flag and does not sleep.
        let park = !busy() && !self.woken.swap(false, Ordering::SeqCst);
        if park {
            let deadline = deadline();
            if mode == IN_EPOLL {
                self.poll(deadline);
            } else {
                let futex = lock(&self.futex);
                match deadline {
                    Some(at) => futex.park_deadline(at),
                    None => futex.park(),
                }
            }
        }
        self.parked.store(AWAKE, Ordering::SeqCst);
        // The wake-ups of this park are spent: the owner looks for work
        // next, which covers whatever an unpark from now on announces.
        self.woken.store(false, Ordering::SeqCst);
        self.notified.store(false, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        park
    }

    /// Whether any source is registered here (a busy owner then polls now
    /// and then, see [`Reactor::poll`]).
    pub(crate) fn has_sources(&self) -> bool {
        self.registered.load(Ordering::Relaxed) != 0
    }

    /// Waits for events until `deadline` (forever if `None`; not at all if
    /// it has passed), then wakes the green threads waiting on what became
    /// ready. Owner thread only.
    pub(crate) fn poll(&self, deadline: Option<Instant>) {
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        self.poll_timeout(timeout);
    }

    /// Takes the events that are ready, without waiting.
    pub(crate) fn poll_now(&self) {
        self.poll_timeout(Some(Duration::ZERO));
    }

    fn poll_timeout(&self, timeout: Option<Duration>) {
        let mut scratch = lock(&self.scratch);
        let scratch = &mut *scratch;
        if scratch.events.capacity() < EVENTS {
            scratch.events.reserve_exact(EVENTS);
        }
        let n = self.epoll_wait(&mut scratch.events, timeout);
        {
            let slab = lock(&self.slab);
            for i in 0..n {
                let ev = scratch.events[i];
                let (events, data) = (ev.events, ev.u64);
                if data == WAKE_KEY {
                    continue; // a wake-up: its work is in the executor's queues
                }
                let (index, generation) = (data as u32, (data >> 32) as u32);
                if let Some(e) = slab.entries.get(index as usize)
                    && e.generation == generation
                    && let Some(source) = &e.source
                {
                    scratch.ready.push((source.clone(), events));
                }
            }
        }
        // Wakes outside the slab lock: a wake may reach other threads'
        // reactors, and a source's last reference may drop here.
        for (source, events) in scratch.ready.drain(..) {
            source.fire(events);
        }
    }

    /// One `epoll_pwait2` (or `epoll_wait` where the kernel lacks it) into
    /// `events`' capacity; returns how many were filled (0 on EINTR).
    fn epoll_wait(&self, events: &mut Vec<libc::epoll_event>, timeout: Option<Duration>) -> usize {
        if !NO_PWAIT2.load(Ordering::Relaxed) {
            match self.pwait2(events, timeout) {
                Some(n) => return n,
                None => NO_PWAIT2.store(true, Ordering::Relaxed),
            }
        }
        self.wait_ms(events, timeout)
    }

    /// `epoll_pwait2`, with a nanosecond timeout; `None` on ENOSYS.
    fn pwait2(
        &self,
        events: &mut Vec<libc::epoll_event>,
        timeout: Option<Duration>,
    ) -> Option<usize> {
        events.clear();
        let max = events.capacity().min(i32::MAX as usize) as libc::c_int;
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: the buffer has room for `max` events (the vector's
        // capacity); `ts_ptr` is null or points to a live timespec; no
        // signal mask (null, size 0).
        let n = unsafe {
            libc::syscall(
                libc::SYS_epoll_pwait2,
                self.epfd.as_raw_fd(),
                events.as_mut_ptr(),
                max,
                ts_ptr,
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            )
        };
        if n < 0 {
            let enosys = io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS);
            return if enosys { None } else { Some(0) };
        }
        // SAFETY: the kernel initialised the first `n` events (n <= max).
        unsafe { events.set_len(n as usize) };
        Some(n as usize)
    }

    /// `epoll_wait`, whose timeout is whole milliseconds: rounded up, so
    /// that a timer never fires early (a 100 µs sleep takes about 1 ms).
    fn wait_ms(&self, events: &mut Vec<libc::epoll_event>, timeout: Option<Duration>) -> usize {
        events.clear();
        let max = events.capacity().min(i32::MAX as usize) as libc::c_int;
        let ms = match timeout {
            None => -1,
            Some(t) => t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int,
        };
        // SAFETY: the buffer has room for `max` events.
        let n = unsafe { libc::epoll_wait(self.epfd.as_raw_fd(), events.as_mut_ptr(), max, ms) };
        if n <= 0 {
            return 0;
        }
        // SAFETY: the kernel initialised the first `n` events (n <= max).
        unsafe { events.set_len(n as usize) };
        n as usize
    }

    /// Adds `source` to the epoll set, edge-triggered, and returns its key,
    /// with the private duplicate of its descriptor that was registered in
    /// its place if the descriptor number is registered here already (by
    /// another `Io` over the same descriptor: a second `Green` over a
    /// borrowed one, say). Epoll tells registrations apart by descriptor
    /// number and open file, so the duplicate is a registration of its own.
    fn insert(&self, source: &Arc<Source>) -> io::Result<(u64, Option<OwnedFd>)> {
        let mut slab = lock(&self.slab);
        let index = match slab.free.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(slab.entries.len())
                    .ok()
                    .filter(|&i| i < u32::MAX)
                    .ok_or_else(|| io::Error::other("too many descriptors in one reactor"))?;
                slab.entries.push(Entry::default());
                i
            }
        };
        let k = key(index, slab.entries[index as usize].generation);
        let mut ev = libc::epoll_event {
            // `EPOLLPRI`: urgent data, which ends a TCP read early (see
            // `Source::drained_off`).
            events: (libc::EPOLLIN
                | libc::EPOLLOUT
                | libc::EPOLLRDHUP
                | libc::EPOLLPRI
                | libc::EPOLLET) as u32,
            u64: k,
        };
        let add = |fd: RawFd, ev: &mut libc::epoll_event| {
            // SAFETY: the epoll descriptor is open while `self` lives; `fd`
            // is the caller's open descriptor (its `Io` is borrowed and
            // checked it) or a duplicate owned below; the kernel only reads
            // `ev`.
            cvt(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, ev) })
        };
        let added = match add(source.fd, &mut ev) {
            Ok(_) => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                // SAFETY: fcntl on the caller's open descriptor, no pointers.
                match cvt(unsafe { libc::fcntl(source.fd, libc::F_DUPFD_CLOEXEC, 0) }) {
                    Ok(fd) => {
                        // SAFETY: `fd` is the new duplicate, which nothing
                        // else owns.
                        let dup = unsafe { OwnedFd::from_raw_fd(fd) };
                        add(dup.as_raw_fd(), &mut ev).map(|_| Some(dup))
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        let dup = match added {
            Ok(dup) => dup,
            Err(e) => {
                slab.free.push(index);
                return Err(e);
            }
        };
        let entry = &mut slab.entries[index as usize];
        entry.source = Some(source.clone());
        self.registered.fetch_add(1, Ordering::Relaxed);
        Ok((k, dup))
    }

    /// Removes the source registered under `key`, and descriptor `fd`'s
    /// registration from the epoll set (`None`: the descriptor is not
    /// known to be the one registered, and is left alone).
    fn remove(&self, fd: Option<RawFd>, key: u64) {
        if let Some(fd) = fd {
            // SAFETY: the epoll descriptor is open; `fd` is still the open
            // descriptor that was registered (its `Io` deregisters before
            // it closes it, and checks that its owner still has it). A
            // null event is allowed for DEL. An error (the descriptor was
            // never added) changes nothing.
            unsafe {
                libc::epoll_ctl(
                    self.epfd.as_raw_fd(),
                    libc::EPOLL_CTL_DEL,
                    fd,
                    std::ptr::null_mut(),
                )
            };
        }
        let (index, generation) = (key as u32, (key >> 32) as u32);
        let removed = {
            let mut slab = lock(&self.slab);
            match slab.entries.get_mut(index as usize) {
                Some(e) if e.generation == generation && e.source.is_some() => {
                    e.generation = e.generation.wrapping_add(1);
                    let s = e.source.take();
                    slab.free.push(index);
                    s
                }
                _ => None,
            }
        };
        if removed.is_some() {
            self.registered.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Which way an operation goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interest {
    Read = 0,
    Write = 1,
}

/// What the reactors know of one descriptor.
pub(crate) struct Source {
    fd: RawFd,
    /// Per direction: bumped by every event that may have made it ready.
    seqs: [AtomicU64; 2],
    /// The read sequence number at which a TCP read found the descriptor
    /// drained (it filled less than its buffer); `u64::MAX` if none. While
    /// the sequence number still equals it, no event has come since, so the
    /// next try would fail with `EAGAIN`: a green thread waits without
    /// making it (see `op_loop`). Unless `drained_off`.
    drained: AtomicU64,
    /// The drained mark no longer holds for this socket: an event said the
    /// peer closed its side or the socket failed (`EPOLLRDHUP`, `EPOLLHUP`,
    /// `EPOLLERR`: final states, readable with no further event), or that
    /// urgent data came (`EPOLLPRI`: a TCP read stops short at its mark
    /// with data still queued). Sticky.
    drained_off: AtomicBool,
    /// Per direction, how many waiters `state` lists: stored under its
    /// lock whenever the list changes, so that a waiter whose entry an
    /// event took sees 0 and leaves without taking the lock (see `leave`).
    listed: [AtomicUsize; 2],
    state: Mutex<SourceState>,
}

struct SourceState {
    /// The reactor it is registered with, its key there, and the duplicate
    /// of its descriptor registered in its place, if any (see `insert`).
    registration: Option<(Arc<Reactor>, u64, Option<OwnedFd>)>,
    /// Per direction, the green threads waiting for it. Usually one; several
    /// may wait on one shared socket, and all are woken to retry.
    waiters: [Waiters; 2],
}

/// The waiters of one direction. The usual one is kept inline, so that a
/// wait allocates nothing (an event takes the list, and a `Vec` would go
/// with it); more spill into `more`.
#[derive(Default)]
struct Waiters {
    one: Option<Waker>,
    more: Vec<Waker>,
}

impl Waiters {
    fn push(&mut self, waker: Waker) {
        match self.one {
            None => self.one = Some(waker),
            Some(_) => self.more.push(waker),
        }
    }

    fn is_empty(&self) -> bool {
        self.one.is_none() && self.more.is_empty()
    }

    fn len(&self) -> usize {
        usize::from(self.one.is_some()) + self.more.len()
    }

    /// Takes `waker` off (if an event has not already).
    fn remove(&mut self, waker: &Waker) {
        if self.one.as_ref().is_some_and(|w| w.same(waker)) {
            self.one = self.more.pop();
        } else if let Some(i) = self.more.iter().position(|w| w.same(waker)) {
            self.more.swap_remove(i);
        }
    }

    /// Takes them all, leaving the list empty.
    fn take(&mut self) -> Waiters {
        Waiters {
            one: self.one.take(),
            // The spill `Vec` goes only if it holds someone: an empty one
            // keeps its room for the next crowd.
            more: match self.more.is_empty() {
                true => Vec::new(),
                false => std::mem::take(&mut self.more),
            },
        }
    }

    fn wake(self) {
        if let Some(w) = self.one {
            w.wake_by_value();
        }
        for w in self.more {
            w.wake_by_value();
        }
    }
}

impl Source {
    fn new(fd: RawFd) -> Source {
        Source {
            fd,
            seqs: Default::default(),
            drained: AtomicU64::new(u64::MAX),
            drained_off: AtomicBool::new(false),
            listed: Default::default(),
            state: Mutex::new(SourceState {
                registration: None,
                waiters: Default::default(),
            }),
        }
    }

    /// Bumps `events`' directions and wakes their waiters.
    fn fire(&self, events: u32) {
        const READ: u32 =
            (libc::EPOLLIN | libc::EPOLLPRI | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR)
                as u32;
        const WRITE: u32 = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        const OFF: u32 =
            (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR | libc::EPOLLPRI) as u32;
        let read = events & READ != 0;
        let write = events & WRITE != 0;
        if events & OFF != 0 {
            // Before the sequence number moves: a reader that sees the new
            // number sees this too.
            self.drained_off.store(true, Ordering::Release);
        }
        if read {
            self.seqs[Interest::Read as usize].fetch_add(1, Ordering::AcqRel);
        }
        if write {
            self.seqs[Interest::Write as usize].fetch_add(1, Ordering::AcqRel);
        }
        if !(read || write) {
            return;
        }
        let mut state = lock(&self.state);
        let mut take = |interest: Interest| {
            self.listed[interest as usize].store(0, Ordering::Relaxed);
            state.waiters[interest as usize].take()
        };
        let readers = match read {
            true => take(Interest::Read),
            false => Waiters::default(),
        };
        let writers = match write {
            true => take(Interest::Write),
            false => Waiters::default(),
        };
        drop(state);
        readers.wake();
        writers.wake();
    }

    /// Enlists `waker` for `interest`, first making sure a reactor that is
    /// polled will see the descriptor's events: the registration moves to
    /// `reactor` (the caller's own) unless it is already there, or it is
    /// on a live reactor that other green threads are waiting through
    /// (theirs: moving it would only make them wait through ours).
    fn enlist(
        self: &Arc<Self>,
        interest: Interest,
        waker: Waker,
        reactor: &Arc<Reactor>,
    ) -> io::Result<()> {
        let mut state = lock(&self.state);
        let keep = match &state.registration {
            Some((r, _, _)) if Arc::ptr_eq(r, reactor) => true,
            Some((r, _, _)) => {
                r.alive.load(Ordering::SeqCst) && state.waiters.iter().any(|w| !w.is_empty())
            }
            None => false,
        };
        if !keep {
            if let Some((old, key, dup)) = state.registration.take() {
                old.remove(Some(dup.as_ref().map_or(self.fd, |d| d.as_raw_fd())), key);
            }
            let (key, dup) = reactor.insert(self)?;
            state.registration = Some((reactor.clone(), key, dup));
        }
        let list = &mut state.waiters[interest as usize];
        list.push(waker);
        self.listed[interest as usize].store(list.len(), Ordering::Relaxed);
        Ok(())
    }

    /// Takes `waker`, which the caller enlisted, off the list (if an event
    /// has not already).
    fn leave(&self, interest: Interest, waker: &Waker) {
        let i = interest as usize;
        // The caller's own `enlist` stored a count of at least 1, and every
        // later store is ordered after it by the lock: a 0 was stored when
        // the list was empty since, so an event has taken `waker` (only
        // its owner lists it again, and not before this returns). The
        // usual case after a wake-up: no lock.
        if self.listed[i].load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut state = lock(&self.state);
        let list = &mut state.waiters[i];
        list.remove(waker);
        self.listed[i].store(list.len(), Ordering::Relaxed);
    }

    /// Deregisters it; `current` is the descriptor its owner has now.
    /// If that is not the one registered (a `Green` whose value was
    /// replaced through `get_mut`), the registered one has closed or
    /// belongs to someone else, and its number may be another socket's
    /// now: the epoll set is left alone (a closed descriptor left it
    /// already). A private duplicate is always removed (then closed).
    fn deregister(&self, current: Option<RawFd>) {
        let reg = lock(&self.state).registration.take();
        if let Some((reactor, key, dup)) = reg {
            let fd = match &dup {
                Some(d) => Some(d.as_raw_fd()),
                None => current.filter(|&fd| fd == self.fd),
            };
            reactor.remove(fd, key);
        }
    }
}

/// Takes its waker off the source's list when the wait ends, even by a
/// cancellation unwinding out of the park.
struct Enlisted<'a> {
    source: &'a Source,
    interest: Interest,
    waker: Waker,
}

impl Drop for Enlisted<'_> {
    fn drop(&mut self) {
        self.source.leave(self.interest, &self.waker);
    }
}

/// An owner of a non-blocking descriptor (a std socket, say) whose
/// operations wait green: the calling green thread parks until the
/// descriptor is ready, and a plain OS thread blocks in `ppoll(2)`.
pub(crate) struct Io<T: AsFd> {
    source: Arc<Source>,
    /// `None` only inside `into_inner`.
    inner: Option<T>,
}

impl<T: AsFd> Io<T> {
    /// Takes `inner`, whose descriptor the caller made non-blocking.
    pub(crate) fn new(inner: T) -> Io<T> {
        Io {
            source: Arc::new(Source::new(inner.as_fd().as_raw_fd())),
            inner: Some(inner),
        }
    }

    pub(crate) fn get(&self) -> &T {
        self.inner.as_ref().expect("an Io owns its descriptor")
    }

    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.inner.as_mut().expect("an Io owns its descriptor")
    }

    /// Gives the owner back, deregistered (still non-blocking).
    pub(crate) fn into_inner(mut self) -> T {
        self.source.deregister(self.current_fd());
        self.inner.take().expect("an Io owns its descriptor")
    }

    /// The descriptor its owner has now (`None` inside `into_inner`).
    fn current_fd(&self) -> Option<RawFd> {
        self.inner.as_ref().map(|t| t.as_fd().as_raw_fd())
    }

    /// Fails if the owner's descriptor is no longer the one this `Io` was
    /// made for (a `Green` whose value was replaced through `get_mut`).
    fn check_fd(&self, fd: RawFd) -> io::Result<()> {
        if fd == self.source.fd {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the descriptor of this stackful::io::Green changed (its value was replaced \
             through `get_mut`): wrap the new value in a Green of its own instead",
        ))
    }

    /// Wakes every context waiting on this descriptor to retry (after a
    /// `shutdown`, whose events the kernel may fold into an edge already
    /// taken).
    pub(crate) fn wake_all(&self) {
        self.source.fire(u32::MAX);
    }

    /// Runs `op` until it does not fail with `WouldBlock` (or `Interrupted`),
    /// waiting for readiness in `interest` between tries. Fails with
    /// `TimedOut` once `deadline` has passed with the descriptor not ready.
    /// A cancellation point in a green thread (see `park::park`); a
    /// cancelled wait has not run `op` successfully, so it consumed nothing.
    pub(crate) fn op<R>(
        &self,
        interest: Interest,
        deadline: Option<Instant>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        let inner = self.inner.as_ref().expect("an Io owns its descriptor");
        self.check_fd(inner.as_fd().as_raw_fd())?;
        op_loop(&self.source, interest, deadline, |_| false, || op(inner))
    }

    /// [`op`](Self::op) for a read of a TCP socket into `len` bytes of
    /// buffers: a read that returns fewer (but some) found the socket
    /// drained, so a green thread's next read waits for the next event
    /// instead of failing with `EAGAIN` first (one system call fewer per
    /// message of a request-response protocol). A TCP read stops short
    /// with data still queued only at an urgent mark, which `EPOLLPRI`
    /// reports (`Source::drained_off`); an event for anything that arrives
    /// after the read bumps the sequence number. Not for Unix streams: a
    /// read stops there at a message that passed descriptors or
    /// credentials, which no event tells. (A socket given kernel TLS
    /// through its descriptor stops at record boundaries too: such a user
    /// reads with `recvmsg` on the descriptor, as kTLS requires.)
    pub(crate) fn read_stream(
        &self,
        len: usize,
        deadline: Option<Instant>,
        mut op: impl FnMut(&T) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let inner = self.inner.as_ref().expect("an Io owns its descriptor");
        self.check_fd(inner.as_fd().as_raw_fd())?;
        let drained = |&n: &usize| n > 0 && n < len;
        op_loop(&self.source, Interest::Read, deadline, drained, || {
            op(inner)
        })
    }

    /// [`op`](Self::op) with mutable access.
    pub(crate) fn op_mut<R>(
        &mut self,
        interest: Interest,
        deadline: Option<Instant>,
        mut op: impl FnMut(&mut T) -> io::Result<R>,
    ) -> io::Result<R> {
        self.check_fd(self.get().as_fd().as_raw_fd())?;
        let inner = self.inner.as_mut().expect("an Io owns its descriptor");
        op_loop(&self.source, interest, deadline, |_| false, || op(inner))
    }
}

/// Operations a worker's green threads may complete in a row without
/// waiting before the next one yields first: a green thread whose socket
/// always has data (or room) would otherwise never leave its worker to the
/// others.
const BUDGET: u32 = 64;

thread_local! {
    /// Operations completed on this thread since one of its green threads
    /// last waited for readiness or yielded for the budget.
    static SPENT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// The loop of [`Io::op`]. `drained` tells from an operation's result
/// that it left the descriptor drained (see `Source::drained`).
fn op_loop<R>(
    source: &Arc<Source>,
    interest: Interest,
    deadline: Option<Instant>,
    drained: impl Fn(&R) -> bool,
    mut op: impl FnMut() -> io::Result<R>,
) -> io::Result<R> {
    let seqs = &source.seqs[interest as usize];
    // Only reads are ever marked drained.
    let drained_at = &source.drained;
    let reads = interest == Interest::Read;
    let green = worker::with_current_task(|t| t.is_some());
    if green && SPENT.get() >= BUDGET {
        // Before the operation, so a cancellation raised here has consumed
        // nothing. A spawn left in a `run` thread's slot goes to the pool,
        // as when this waits (see `wait_green`).
        SPENT.set(0);
        worker::with_current(|w| w.map(worker::Worker::hand_off_spawn));
        park::yield_current();
    }
    loop {
        let seq = seqs.load(Ordering::Acquire);
        // Known drained, with no event since: the try would fail. Only a
        // green thread skips it; a plain thread's waits (`ppoll`) bump no
        // sequence number, so it would never try again.
        let skip = green
            && reads
            && drained_at.load(Ordering::Acquire) == seq
            && !source.drained_off.load(Ordering::Acquire);
        match if skip {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            op()
        } {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => {
                if let Ok(v) = &r
                    && drained(v)
                {
                    drained_at.store(seq, Ordering::Release);
                }
                if green {
                    SPENT.set(SPENT.get() + 1);
                }
                return r;
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(timed_out());
        }
        if green {
            wait_green(source, interest, seq, deadline)?;
        } else {
            wait_plain(source.fd, interest, deadline);
        }
    }
}

/// A green thread waits for `source` to be ready in `interest`, unless
/// its sequence number moved on from `seq`.
fn wait_green(
    source: &Arc<Source>,
    interest: Interest,
    seq: u64,
    deadline: Option<Instant>,
) -> io::Result<()> {
    let waker = park::current_waker();
    worker::with_current(|w| {
        let w = w.expect("a green thread runs on an executor");
        source.enlist(interest, waker.clone(), w.reactor())
    })?;
    let _enlisted = Enlisted {
        source,
        interest,
        waker,
    };
    // An event since the try bumped the sequence: its edge would not come
    // again, so retry instead of parking.
    if source.seqs[interest as usize].load(Ordering::Acquire) == seq {
        // The worker runs others meanwhile: a new budget.
        SPENT.set(0);
        // On a `run` thread, what this green thread just spawned goes to
        // the pool rather than wait here (see `Worker::hand_off_spawn`).
        worker::with_current(|w| w.map(worker::Worker::hand_off_spawn));
        park::park(deadline);
    }
    Ok(())
}

impl<T: AsFd> Drop for Io<T> {
    fn drop(&mut self) {
        // Before the descriptor closes (`inner` drops after this): its
        // number may be reused at once.
        self.source.deregister(self.current_fd());
    }
}

/// The error of an expired read or write timeout.
pub(crate) fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the operation timed out")
}

/// A plain OS thread waits for `fd` to be ready in `ppoll(2)`, until
/// `deadline` or the deadline of an enclosing `stackful::timeout`, whose
/// expiry (or a cancellation) unwinds as it does from `park`.
fn wait_plain(fd: RawFd, interest: Interest, deadline: Option<Instant>) {
    // Blocking a scheduler's own loop would stall its green threads.
    park::refuse_scheduler_loop();
    let scope = match park::pending_or_deadline() {
        Ok(d) => d,
        Err(cause) => Cancelled::raise(cause),
    };
    let until = match (deadline, scope) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let mut pfd = libc::pollfd {
        fd,
        events: match interest {
            Interest::Read => libc::POLLIN | libc::POLLPRI | libc::POLLRDHUP,
            Interest::Write => libc::POLLOUT,
        },
        revents: 0,
    };
    let ts = until.map(|d| {
        let t = d.saturating_duration_since(Instant::now());
        libc::timespec {
            tv_sec: t.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        }
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: one live pollfd; `ts_ptr` is null or a live timespec; no
    // signal mask. EINTR and timeouts return to the caller's loop.
    unsafe { libc::ppoll(&mut pfd, 1, ts_ptr, std::ptr::null()) };
    park::checkpoint();
}

/// Sets or clears `O_NONBLOCK` on `fd`; returns whether it was set.
pub(crate) fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<bool> {
    // SAFETY: fcntl on a descriptor the caller keeps open; no pointers.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    let new = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    if new != flags {
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, new) })?;
    }
    Ok(flags & libc::O_NONBLOCK != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three distinct wakers: the handles of three (finished) OS threads.
    fn three_wakers() -> Vec<Waker> {
        (0..3)
            .map(|_| Waker::Thread(std::thread::spawn(std::thread::current).join().unwrap()))
            .collect()
    }

    fn holds(list: &Waiters, w: &Waker) -> bool {
        list.one.iter().chain(&list.more).any(|x| x.same(w))
    }

    #[test]
    fn waiters_keep_the_first_inline_and_lose_none_on_removal() {
        let w = three_wakers();
        let mut list = Waiters::default();
        assert!(list.is_empty());
        for x in &w {
            list.push(x.clone());
        }
        assert!(list.one.as_ref().is_some_and(|x| x.same(&w[0])));
        assert_eq!(list.more.len(), 2);
        // Removing the inline one moves a spilled one inline.
        list.remove(&w[0]);
        assert!(!holds(&list, &w[0]) && holds(&list, &w[1]) && holds(&list, &w[2]));
        assert!(list.one.is_some());
        // A waker that is not there (an event took it) changes nothing.
        list.remove(&w[0]);
        assert!(holds(&list, &w[1]) && holds(&list, &w[2]));
        list.remove(&w[2]);
        assert!(holds(&list, &w[1]) && !holds(&list, &w[2]));
        let taken = list.take();
        assert!(list.is_empty() && holds(&taken, &w[1]));
        taken.wake();
    }

    #[test]
    fn a_lone_waiter_is_taken_without_the_spill_vec() {
        let w = three_wakers();
        let mut list = Waiters::default();
        for x in &w {
            list.push(x.clone());
        }
        let all = list.take();
        assert!(list.is_empty() && all.more.len() == 2);
        // One waiter again: inline; its take allocates nothing.
        list.push(w[0].clone());
        let one = list.take();
        assert!(one.one.is_some() && one.more.capacity() == 0);
    }

    #[test]
    fn the_listed_count_follows_the_list_so_a_taken_waiter_leaves_without_the_lock() {
        let r = Arc::new(Reactor::new().unwrap());
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let source = Arc::new(Source::new(a.as_raw_fd()));
        let w = three_wakers();
        let count = |i: Interest| source.listed[i as usize].load(Ordering::Relaxed);
        source.enlist(Interest::Read, w[0].clone(), &r).unwrap();
        source.enlist(Interest::Read, w[1].clone(), &r).unwrap();
        source.enlist(Interest::Write, w[2].clone(), &r).unwrap();
        assert_eq!((count(Interest::Read), count(Interest::Write)), (2, 1));
        // A wait that ends without an event takes its own entry off.
        source.leave(Interest::Read, &w[0]);
        assert_eq!(count(Interest::Read), 1);
        assert!(!holds(&lock(&source.state).waiters[0], &w[0]));
        // An event takes the readers; the writer stays listed.
        source.fire(libc::EPOLLIN as u32);
        assert_eq!((count(Interest::Read), count(Interest::Write)), (0, 1));
        // A reader enlisted after the event is not disturbed by the leave
        // of one the event took (the count says 0 only while it is true).
        source.leave(Interest::Read, &w[1]);
        source.enlist(Interest::Read, w[0].clone(), &r).unwrap();
        source.leave(Interest::Read, &w[1]);
        assert!(holds(&lock(&source.state).waiters[0], &w[0]));
        source.leave(Interest::Read, &w[0]);
        source.leave(Interest::Write, &w[2]);
        assert_eq!((count(Interest::Read), count(Interest::Write)), (0, 0));
        assert!(lock(&source.state).waiters.iter().all(Waiters::is_empty));
        source.deregister(Some(a.as_raw_fd()));
    }

    fn events() -> Vec<libc::epoll_event> {
        Vec::with_capacity(EVENTS)
    }

    /// An unpark that comes while the owner is awake (after its last look
    /// for work, before it announces the park) keeps the next park from
    /// sleeping, in both ways of parking; without it, an idle worker that a
    /// spawner had counted as searching slept through the work (a hang
    /// seen in `benches/runtime`).
    #[test]
    fn an_unpark_while_awake_is_not_lost_on_the_next_park() {
        let r = Reactor::new().unwrap();
        for _ in 0..2 {
            r.unpark(); // the owner is awake
            let t = Instant::now();
            let parked = r.park(|| false, || Some(Instant::now() + Duration::from_secs(5)));
            assert!(!parked, "the park slept through an earlier unpark");
            assert!(t.elapsed() < Duration::from_secs(1));
            // Spent: the next park sleeps until its deadline.
            let t = Instant::now();
            assert!(r.park(
                || false,
                || Some(Instant::now() + Duration::from_millis(20))
            ));
            assert!(t.elapsed() >= Duration::from_millis(20));
        }
    }

    #[test]
    fn pwait2_waits_with_sub_millisecond_precision() {
        let r = Reactor::new().unwrap();
        let mut ev = events();
        let t = Instant::now();
        // The kernel here has epoll_pwait2 (Linux 5.11+).
        assert_eq!(r.pwait2(&mut ev, Some(Duration::from_micros(100))), Some(0));
        let waited = t.elapsed();
        assert!(waited >= Duration::from_micros(100), "{waited:?}");
    }

    #[test]
    fn the_fallback_rounds_its_timeout_up_to_a_millisecond() {
        let r = Reactor::new().unwrap();
        let mut ev = events();
        let t = Instant::now();
        assert_eq!(r.wait_ms(&mut ev, Some(Duration::from_micros(100))), 0);
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(1), "{waited:?}");
        // Zero stays zero: no wait at all.
        assert_eq!(r.wait_ms(&mut ev, Some(Duration::ZERO)), 0);
    }

    #[test]
    fn unpark_writes_the_eventfd_only_while_parked_in_epoll() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let r = Arc::new(Reactor::new().unwrap());
        let source = Arc::new(Source::new(a.as_raw_fd()));
        let key = r.insert(&source).unwrap().0;
        r.poll_now(); // takes the writable edge of the ADD
        let mut ev = events();
        r.unpark(); // not parked: nothing written
        assert_eq!(r.pwait2(&mut ev, Some(Duration::ZERO)), Some(0));
        // But the next park does not sleep: that unpark may have meant it.
        assert!(!r.park(|| false, || None));
        // Parked in epoll (a source is registered): woken by the eventfd.
        let r2 = r.clone();
        let waker = std::thread::spawn(move || {
            while r2.parked.load(Ordering::SeqCst) != IN_EPOLL {
                std::thread::yield_now();
            }
            r2.unpark();
            r2.unpark(); // the second one is saved
        });
        assert!(r.park(|| false, || None)); // would wait forever unwoken
        waker.join().unwrap();
        // Edge-triggered: that write is not reported again.
        assert_eq!(r.pwait2(&mut ev, Some(Duration::ZERO)), Some(0));
        r.remove(Some(a.as_raw_fd()), key);
    }

    #[test]
    fn a_late_unpark_of_one_park_does_not_swallow_the_next_parks_wake_up() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let r = Arc::new(Reactor::new().unwrap());
        let source = Arc::new(Source::new(a.as_raw_fd()));
        let key = r.insert(&source).unwrap().0;
        r.poll_now(); // takes the writable edge of the ADD
        // An unparker read `parked == IN_EPOLL` just before the owner left
        // a park (stored AWAKE, then cleared `notified`), and swapped
        // `notified` only after that clear: it writes the eventfd, and
        // `notified` stays set past the park it was meant for.
        r.parked.store(IN_EPOLL, Ordering::SeqCst);
        r.unpark();
        r.parked.store(AWAKE, Ordering::SeqCst);
        // The owner's leaving that park clears `woken` (the unpark set it
        // before reading `parked`, so before the owner left).
        r.woken.store(false, Ordering::SeqCst);
        // The busy owner takes that edge in a `poll_now` between parks.
        r.poll_now();
        // The next park must still be woken by the next unpark.
        let r2 = r.clone();
        let waker = std::thread::spawn(move || {
            while r2.parked.load(Ordering::SeqCst) != IN_EPOLL {
                std::thread::yield_now();
            }
            r2.unpark();
        });
        let t = Instant::now();
        assert!(r.park(|| false, || Some(Instant::now() + Duration::from_secs(10))));
        waker.join().unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the unpark was lost: the park ran to its deadline"
        );
        r.remove(Some(a.as_raw_fd()), key);
    }

    #[test]
    fn without_sources_the_owner_parks_on_the_futex() {
        let r = Arc::new(Reactor::new().unwrap());
        let r2 = r.clone();
        let waker = std::thread::spawn(move || {
            while r2.parked.load(Ordering::SeqCst) != ON_FUTEX {
                std::thread::yield_now();
            }
            r2.unpark();
        });
        assert!(r.park(|| false, || None)); // would wait forever unwoken
        waker.join().unwrap();
        // Nothing went to the eventfd.
        let mut ev = events();
        assert_eq!(r.pwait2(&mut ev, Some(Duration::ZERO)), Some(0));
        // Work found after the park was announced: no park at all.
        assert!(!r.park(|| true, || None));
        // A deadline ends a futex park.
        let t = Instant::now();
        assert!(r.park(|| false, || Some(Instant::now() + Duration::from_millis(5))));
        assert!(t.elapsed() >= Duration::from_millis(5));
    }

    #[test]
    fn an_event_for_a_removed_source_is_ignored() {
        use std::io::Write;
        use std::os::unix::net::UnixStream;
        let (a, b) = UnixStream::pair().unwrap();
        // A duplicate keeps the open file, so closing `a` below leaves its
        // registration in the epoll set (as a leaked duplicate would).
        let a2 = a.try_clone().unwrap();
        let r = Reactor::new().unwrap();
        let old = Arc::new(Source::new(a.as_raw_fd()));
        let key = r.insert(&old).unwrap().0;
        assert!(r.has_sources());
        r.poll_now(); // the ADD reports writability
        assert_eq!(old.seqs[Interest::Write as usize].load(Ordering::SeqCst), 1);
        let fd = a.as_raw_fd();
        drop(a);
        r.remove(Some(fd), key); // its DEL fails: the descriptor is closed
        assert!(!r.has_sources());
        // A new source takes the slot (and perhaps the descriptor number).
        let (c, _d) = UnixStream::pair().unwrap();
        let new = Arc::new(Source::new(c.as_raw_fd()));
        let key2 = r.insert(&new).unwrap().0;
        assert_eq!(key2 as u32, key as u32, "the slot is reused");
        assert_ne!(key2 >> 32, key >> 32, "with a new generation");
        r.poll_now();
        let before = new.seqs[Interest::Read as usize].load(Ordering::SeqCst);
        // Readable now: the kernel reports the stale registration's key.
        (&b).write_all(b"x").unwrap();
        r.poll_now();
        assert_eq!(
            new.seqs[Interest::Read as usize].load(Ordering::SeqCst),
            before
        );
        assert_eq!(old.seqs[Interest::Read as usize].load(Ordering::SeqCst), 0);
        r.remove(Some(c.as_raw_fd()), key2);
        // A removal with a stale key changes nothing.
        r.remove(Some(c.as_raw_fd()), key);
        drop(a2);
    }
}
