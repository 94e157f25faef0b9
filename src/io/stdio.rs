//! The process's standard streams, waiting green: [`stdin`], [`stdout`] and
//! [`stderr`].
//!
//! # How a read or write waits
//!
//! Descriptors 0, 1 and 2 are shared: with the parent shell, with a pipeline's
//! other processes, with std's own `Stdin`/`Stdout` in this process. Their
//! `O_NONBLOCK` flag belongs to the open file description, which all of
//! those share, so setting it (as [`Green::new`](super::Green::new) does)
//! would make the shell's own reads of the terminal fail with `EAGAIN`
//! after this process exits or while it is stopped. These types never
//! change it. Instead, on a green thread, each call picks a way to wait by
//! what the descriptor is (looked at once per descriptor, on first use):
//!
//! - A socket (inetd, systemd socket activation): `recv`/`send` with
//!   `MSG_DONTWAIT`, which is non-blocking for that one call; on `EAGAIN`
//!   the green thread waits for readiness in the reactor.
//! - A pipe, a FIFO, a terminal or another descriptor epoll can wait on:
//!   the green thread first waits in the reactor until `poll(2)` reports
//!   the descriptor ready, and only then makes the ordinary (blocking)
//!   call, which readiness guarantees will not wait: a readable pipe or
//!   terminal has data or end of file, and a write to a writable pipe is
//!   cut to `PIPE_BUF` bytes (4 KiB), which fit. Per-call non-blocking
//!   flags do not exist for these (`preadv2(RWF_NOWAIT)` is for regular
//!   files, and pipes only on recent kernels), and reopening
//!   `/proc/self/fd/0` to get a private open file would keep a pipe open
//!   behind the process's back (its reader would not see end of file when
//!   the process closes descriptor 1).
//! - A regular file, a directory, `/dev/null` and anything else epoll
//!   refuses (`epoll_ctl` fails with `EPERM`): the call runs on the
//!   runtime's blocking pool ([`spawn_blocking`](crate::spawn_blocking)),
//!   suspending only the green thread. Such a call is shielded: a
//!   cancellation that arrives meanwhile takes effect at the next
//!   cancellation point, after the bytes read or written are accounted
//!   for, so none are lost.
//!
//! Every other wait is a cancellation point that has consumed nothing.
//! The one gap of the readiness approach: if another reader takes the data
//! between the readiness check and the read (another process reading the
//! same pipe, or this process reading descriptor 0 through
//! `std::io::stdin()` on another thread at the same time), the read waits
//! for more data, blocking its worker meanwhile. Read standard input
//! through one of the two only. The same holds for output to a pipe that
//! something else writes too (`println!` on another thread, a sibling
//! process): the pipe may fill between the check and the write. Writes to
//! a terminal go to the blocking pool: a terminal that polls writable may
//! still take a write as slowly as its reader goes.
//!
//! A cancellation or timeout that cuts a `read_line` (or `lines()`) short
//! loses the part of the line read so far, as with any `BufRead` (std's
//! `read_line` consumes the bytes, and its unwind guard empties the
//! string): under a timeout, read raw bytes and split lines yourself.
//!
//! On a plain OS thread (or in a `spawn_blocking` job) every call is the
//! plain blocking system call, as std's.
//!
//! # Buffering and locking
//!
//! As std's: standard input is read through a shared 8 KiB buffer, standard
//! output is line-buffered, standard error is not buffered, and each handle
//! is a reference to a process-wide lock that `lock()` holds for a series
//! of operations. The locks suspend a green thread that waits for them.
//! The output locks are re-entrant, as std's are, per green thread (or per
//! OS thread outside green threads): a `Display` impl may print to
//! `stdout()` while its caller holds the lock. Buffered standard output
//! that remains when the process exits is flushed then (unless a green
//! thread holds the lock at that moment, as with std).
//!
//! These buffers are not std's: a line written through
//! `std::io::stdout()` (or `println!`) and one written through
//! [`stdout()`](crate::io::stdout()) are each written whole, but text still in one buffer (a
//! `print!` without a newline) can come out after text written later
//! through the other. Flush one before writing through the other.
//! Likewise, data that [`stdin()`](crate::io::stdin()) buffered is not seen by
//! `std::io::stdin()`, and the other way round.
//!
//! As std, a standard stream that is closed (`EBADF`) reads as empty and
//! swallows writes.

use std::cell::{RefCell, UnsafeCell};
use std::fmt;
use std::io::{self, BufRead, BufReader, IoSlice, IoSliceMut, LineWriter, Read, Write};
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::net::{self, IOV_MAX, cvt_len};
use crate::runtime::park;
use crate::runtime::reactor::{Interest, Io};
use crate::sync::{Mutex, MutexGuard};

/// The size of std's stdin buffer, which this mirrors.
const STDIN_BUF: usize = 8 * 1024;

/// How calls on a standard descriptor wait on a green thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `MSG_DONTWAIT` per call, readiness from the reactor.
    Socket,
    /// Readiness first (reactor and `poll(2)`), then the blocking call.
    Poll,
    /// A terminal: reads as `Poll`; writes on the blocking pool, since a
    /// terminal that polls writable may still take a write in pieces, as
    /// slowly as its reader (a slow link, a paused output) goes.
    Tty,
    /// On the blocking pool.
    Blocking,
    /// Not open (`EBADF`): reads are empty and writes vanish, as std's.
    Closed,
}

/// A standard descriptor's number as an `AsFd` value for the reactor.
struct StdFd(RawFd);

impl AsFd for StdFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: descriptors 0, 1 and 2 are taken to be open for the life
        // of the process, as std takes them to be; one that is closed (or
        // replaced) makes the system calls fail or act on the new file,
        // which touches no memory of this process.
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }
}

/// One standard descriptor, unbuffered.
struct Raw {
    fd: RawFd,
    kind: OnceLock<Kind>,
    io: OnceLock<Io<StdFd>>,
}

/// The largest count for one `read`/`write` (as std caps it).
const MAX_RW: usize = isize::MAX as usize;

fn sys_read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    let len = buf.len().min(MAX_RW);
    // SAFETY: `buf` is live and writable for `len` bytes; the kernel
    // writes at most that many.
    cvt_len(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), len) })
}

fn sys_readv(fd: RawFd, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
    let n = bufs.len().min(IOV_MAX) as libc::c_int;
    // SAFETY: `IoSliceMut` is ABI-compatible with `iovec` on Unix (std
    // guarantees it); every slice is live and writable.
    cvt_len(unsafe { libc::readv(fd, bufs.as_mut_ptr().cast(), n) })
}

fn sys_write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    let len = buf.len().min(MAX_RW);
    // SAFETY: `buf` is live and readable for `len` bytes.
    cvt_len(unsafe { libc::write(fd, buf.as_ptr().cast(), len) })
}

fn sys_writev(fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let n = bufs.len().min(IOV_MAX) as libc::c_int;
    // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix; every
    // slice is live and readable.
    cvt_len(unsafe { libc::writev(fd, bufs.as_ptr().cast(), n) })
}

/// Whether `fd` is ready for `events` now (or has an error or hang-up the
/// next call will report).
fn ready(fd: RawFd, events: libc::c_short) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    loop {
        // SAFETY: one live pollfd, no wait.
        let r = unsafe { libc::poll(&mut pfd, 1, 0) };
        // Interrupted by a signal: look again (reading it as ready could
        // let the blocking call wait). Any other error of poll itself is
        // not one of the descriptor: not ready.
        if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return r > 0;
    }
}

/// How calls on `fd` wait: by what `fstat` says, and for the rest by
/// whether epoll accepts it.
fn classify(fd: RawFd) -> Kind {
    // SAFETY: all zeroes is a valid `stat`; fstat writes one.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live, writable stat.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return if io::Error::last_os_error().raw_os_error() == Some(libc::EBADF) {
            Kind::Closed
        } else {
            Kind::Blocking
        };
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFSOCK => Kind::Socket,
        libc::S_IFREG | libc::S_IFDIR | libc::S_IFBLK => Kind::Blocking,
        _ => {
            // A pipe, a terminal, a character device: ask epoll, which
            // refuses what it cannot wait on (/dev/null) with EPERM.
            // SAFETY: plain system calls; the epoll descriptor is closed
            // below and used only here.
            let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if ep < 0 {
                return Kind::Blocking;
            }
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: 0,
            };
            // SAFETY: `ep` is open; `ev` is a live event the kernel reads.
            let r = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) };
            // SAFETY: `ep` is ours and closed once.
            unsafe { libc::close(ep) };
            // SAFETY: a plain query of an open descriptor.
            let tty = unsafe { libc::isatty(fd) } == 1;
            match (r == 0, tty) {
                (true, true) => Kind::Tty,
                (true, false) => Kind::Poll,
                (false, _) => Kind::Blocking,
            }
        }
    }
}

/// Set once the process exits: see `flush_at_exit`.
static EXITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the caller is a green thread (and the process is not exiting).
fn on_green_thread() -> bool {
    !EXITING.load(std::sync::atomic::Ordering::Relaxed)
        && crate::runtime::worker::with_current_task(|t| t.is_some())
}

/// Std's treatment of a closed standard descriptor.
fn closed_ok<T>(r: io::Result<T>, default: impl FnOnce() -> T) -> io::Result<T> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => Ok(default()),
        r => r,
    }
}

impl Raw {
    const fn new(fd: RawFd) -> Raw {
        Raw {
            fd,
            kind: OnceLock::new(),
            io: OnceLock::new(),
        }
    }

    fn kind(&self) -> Kind {
        *self.kind.get_or_init(|| classify(self.fd))
    }

    fn io(&self) -> &Io<StdFd> {
        self.io.get_or_init(|| Io::new(StdFd(self.fd)))
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.fd;
        let r = if !on_green_thread() {
            sys_read(fd, buf)
        } else {
            match self.kind() {
                Kind::Closed => return Ok(0),
                Kind::Socket => self
                    .io()
                    .op(Interest::Read, None, |_| net::recv(fd, buf, 0)),
                Kind::Poll | Kind::Tty => self.io().op(Interest::Read, None, |_| {
                    if ready(fd, libc::POLLIN) {
                        sys_read(fd, buf)
                    } else {
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                }),
                Kind::Blocking => blocking(|| sys_read(fd, buf)),
            }
        };
        closed_ok(r, || 0)
    }

    fn read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let fd = self.fd;
        let r = if !on_green_thread() {
            sys_readv(fd, bufs)
        } else {
            match self.kind() {
                Kind::Closed => return Ok(0),
                Kind::Socket => self
                    .io()
                    .op(Interest::Read, None, |_| net::recv_vectored(fd, bufs)),
                Kind::Poll | Kind::Tty => self.io().op(Interest::Read, None, |_| {
                    if ready(fd, libc::POLLIN) {
                        sys_readv(fd, bufs)
                    } else {
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                }),
                Kind::Blocking => blocking(|| sys_readv(fd, bufs)),
            }
        };
        closed_ok(r, || 0)
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let fd = self.fd;
        let r = if !on_green_thread() {
            sys_write(fd, buf)
        } else {
            match self.kind() {
                Kind::Closed => return Ok(buf.len()),
                Kind::Socket => self.io().op(Interest::Write, None, |_| net::send(fd, buf)),
                Kind::Poll => {
                    self.write_pipe(PipeChunk::One(&buf[..buf.len().min(libc::PIPE_BUF)]))
                }
                Kind::Blocking | Kind::Tty => blocking(|| sys_write(fd, buf)),
            }
        };
        closed_ok(r, || buf.len())
    }

    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let fd = self.fd;
        let r = if !on_green_thread() {
            sys_writev(fd, bufs)
        } else {
            match self.kind() {
                Kind::Closed => return Ok(total(bufs)),
                Kind::Socket => self
                    .io()
                    .op(Interest::Write, None, |_| net::send_vectored(fd, bufs)),
                Kind::Poll => self.write_pipe(PipeChunk::of(bufs)),
                Kind::Blocking | Kind::Tty => blocking(|| sys_writev(fd, bufs)),
            }
        };
        closed_ok(r, || total(bufs))
    }

    /// A green write to a pipe: waits until it polls writable, then writes
    /// `chunk`, which fits.
    fn write_pipe(&self, chunk: PipeChunk<'_, '_>) -> io::Result<usize> {
        let fd = self.fd;
        self.io().op(Interest::Write, None, |_| {
            if !ready(fd, libc::POLLOUT) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            match chunk {
                PipeChunk::Whole(bufs) => sys_writev(fd, bufs),
                PipeChunk::One(buf) => sys_write(fd, buf),
            }
        })
    }
}

/// The bytes in `bufs`.
fn total(bufs: &[IoSlice<'_>]) -> usize {
    bufs.iter().map(|b| b.len()).sum()
}

/// What one write to a pipe that polls writable takes: writable means room
/// for `PIPE_BUF` bytes and no more is sure, so a write of at most that
/// many does not wait.
#[derive(Clone, Copy)]
enum PipeChunk<'s, 'a> {
    /// The leading buffers (at most `IOV_MAX`) that fit in `PIPE_BUF` bytes.
    Whole(&'s [IoSlice<'a>]),
    /// At most `PIPE_BUF` bytes of one buffer.
    One(&'s [u8]),
}

impl<'s, 'a> PipeChunk<'s, 'a> {
    fn of(bufs: &'s [IoSlice<'a>]) -> PipeChunk<'s, 'a> {
        let mut len = 0;
        let mut whole = 0;
        for b in bufs.iter().take(IOV_MAX) {
            if len + b.len() > libc::PIPE_BUF {
                break;
            }
            len += b.len();
            whole += 1;
        }
        if len > 0 {
            return PipeChunk::Whole(&bufs[..whole]);
        }
        // No data fits whole (a write of only empty buffers would return
        // 0, which `write_all` takes for a closed pipe).
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(b) => PipeChunk::One(&b[..libc::PIPE_BUF.min(b.len())]),
            None => PipeChunk::Whole(&[]),
        }
    }
}

/// Runs a blocking call on the blocking pool, shielded: once it has read
/// or written, its result reaches the caller (a cancellation takes effect
/// at the next cancellation point), so no bytes are lost. A cancellation
/// already pending is raised first, before anything moved: a loop of reads
/// from a file stays cancellable.
fn blocking<R: Send>(f: impl FnOnce() -> io::Result<R> + Send) -> io::Result<R> {
    park::checkpoint();
    crate::time::shield(|| crate::spawn_blocking(f))
}

impl Read for &Raw {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Raw::read(self, buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        Raw::read_vectored(self, bufs)
    }
}

impl Write for &Raw {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Raw::write(self, buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Raw::write_vectored(self, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

static RAW_IN: Raw = Raw::new(libc::STDIN_FILENO);
static RAW_OUT: Raw = Raw::new(libc::STDOUT_FILENO);
static RAW_ERR: Raw = Raw::new(libc::STDERR_FILENO);

/// A lock that its holder (a green thread, or an OS thread outside green
/// threads) may take again, as std's `ReentrantLock`; other contexts wait,
/// a green thread suspending. Only for statics: the holder keeps the
/// mutex's guard inside the lock while its guards are alive, whatever order
/// they drop in.
struct ReentrantLock<T: 'static> {
    mutex: Mutex<()>,
    /// The holder's `park::context_id`, 0 when free. Only the holder
    /// stores its own id, so a context that reads its own id holds the lock.
    owner: AtomicU64,
    /// How many guards the holder has (touched by the holder only).
    depth: AtomicUsize,
    /// The mutex's guard while the lock is held (touched by the holder
    /// only).
    held: UnsafeCell<Option<MutexGuard<'static, ()>>>,
    data: T,
}

// SAFETY: `data` and `held` are reached only by the context holding the
// mutex (through its guards, which are neither Send nor Sync, or while
// taking and releasing it); the mutex orders one holder's accesses before
// the next one's. A started green thread never moves between OS threads,
// so its guards stay on the thread where it took them; `T: Send` lets the
// data be reached from whichever thread holds the mutex.
unsafe impl<T: Send> Sync for ReentrantLock<T> {}

struct ReentrantGuard<T: 'static> {
    lock: &'static ReentrantLock<T>,
    /// Neither Send nor Sync: the owner check is per context.
    _context: PhantomData<*const ()>,
}

impl<T> ReentrantLock<T> {
    fn new(data: T) -> ReentrantLock<T> {
        ReentrantLock {
            mutex: Mutex::new(()),
            owner: AtomicU64::new(0),
            depth: AtomicUsize::new(0),
            held: UnsafeCell::new(None),
            data,
        }
    }

    /// Another guard for the holder.
    fn again(&'static self) -> ReentrantGuard<T> {
        let depth = self.depth.load(Ordering::Relaxed);
        let depth = depth
            .checked_add(1)
            .expect("too many nested locks of a stackful::io standard stream");
        self.depth.store(depth, Ordering::Relaxed);
        ReentrantGuard {
            lock: self,
            _context: PhantomData,
        }
    }

    /// The first guard, for the context that just took the mutex.
    fn first(&'static self, guard: MutexGuard<'static, ()>, me: u64) -> ReentrantGuard<T> {
        // SAFETY: this context holds the mutex, so it alone touches `held`.
        unsafe { *self.held.get() = Some(guard) };
        self.owner.store(me, Ordering::Relaxed);
        self.depth.store(1, Ordering::Relaxed);
        ReentrantGuard {
            lock: self,
            _context: PhantomData,
        }
    }

    fn lock(&'static self) -> ReentrantGuard<T> {
        let me = park::context_id();
        if self.owner.load(Ordering::Relaxed) == me {
            return self.again();
        }
        self.first(self.mutex.lock(), me)
    }

    fn try_lock(&'static self) -> Option<ReentrantGuard<T>> {
        let me = park::context_id();
        if self.owner.load(Ordering::Relaxed) == me {
            return Some(self.again());
        }
        Some(self.first(self.mutex.try_lock()?, me))
    }
}

impl<T> std::ops::Deref for ReentrantGuard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.lock.data
    }
}

impl<T> Drop for ReentrantGuard<T> {
    fn drop(&mut self) {
        let lock = self.lock;
        let depth = lock.depth.load(Ordering::Relaxed) - 1;
        lock.depth.store(depth, Ordering::Relaxed);
        if depth == 0 {
            lock.owner.store(0, Ordering::Relaxed);
            // SAFETY: this context still holds the mutex (through the
            // guard in `held`), so it alone touches `held`.
            let guard = unsafe { (*lock.held.get()).take() };
            drop(guard); // unlocks
        }
    }
}

// ---------------------------------------------------------------- stdin

/// A handle to the process's standard input, waiting green: see
/// [`stdin()`](crate::io::stdin()).
///
/// # Examples
///
/// ```no_run
/// stackful::run(|| {
///     for line in stackful::io::stdin().lines() {
///         println!("got {}", line.unwrap());
///     }
/// });
/// ```
pub struct Stdin {
    inner: &'static Mutex<BufReader<&'static Raw>>,
}

/// The locked standard input: [`Stdin::lock`]. Implements [`BufRead`].
///
/// # Examples
///
/// ```no_run
/// use std::io::BufRead;
///
/// stackful::run(|| {
///     let mut lock = stackful::io::stdin().lock();
///     let mut first = String::new();
///     lock.read_line(&mut first).unwrap();
///     let rest: Vec<String> = lock.lines().map(Result::unwrap).collect();
///     # drop((first, rest));
/// });
/// ```
pub struct StdinLock<'a> {
    inner: MutexGuard<'a, BufReader<&'static Raw>>,
}

/// The process's standard input (descriptor 0), buffered, for green
/// threads: a read that would wait suspends only the calling green thread,
/// and never changes the descriptor's blocking mode (see the
/// [module docs](crate::io#standard-streams) for how). On a plain OS thread
/// it reads as [`std::io::stdin()`] does.
///
/// Every handle refers to one process-wide buffer behind a lock; this is
/// not std's buffer, so read standard input through one of the two only.
///
/// # Examples
///
/// Echoes standard input, line by line, while other green threads go on
/// running:
///
/// ```no_run
/// use std::io::Write;
///
/// stackful::run(|| {
///     let ticker = stackful::spawn(|| loop {
///         stackful::sleep(std::time::Duration::from_secs(1));
///     });
///     for line in stackful::io::stdin().lines() {
///         writeln!(stackful::io::stdout(), "echo: {}", line.unwrap()).unwrap();
///     }
///     ticker.cancel();
/// });
/// ```
pub fn stdin() -> Stdin {
    static STDIN: OnceLock<Mutex<BufReader<&'static Raw>>> = OnceLock::new();
    Stdin {
        inner: STDIN.get_or_init(|| Mutex::new(BufReader::with_capacity(STDIN_BUF, &RAW_IN))),
    }
}

impl Stdin {
    /// Locks the shared buffer for a series of reads, suspending a green
    /// thread while another holds it. The lock is not re-entrant: a
    /// context that holds it and locks it again (or reads through another
    /// `Stdin`) waits forever; debug mode (`STACKFUL_DEBUG=1`) panics then.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::io::BufRead;
    ///
    /// let mut line = String::new();
    /// stackful::io::stdin().lock().read_line(&mut line).unwrap();
    /// ```
    pub fn lock(&self) -> StdinLock<'static> {
        StdinLock {
            inner: self.inner.lock(),
        }
    }

    /// Reads a line into `buf`, newline included, as
    /// [`BufRead::read_line`]; `Ok(0)` at end of input.
    ///
    /// # Errors
    ///
    /// A read error, or `InvalidData` if the line is not UTF-8.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// stackful::run(|| {
    ///     let mut name = String::new();
    ///     stackful::io::stdin().read_line(&mut name).unwrap();
    ///     println!("hello, {}", name.trim_end());
    /// });
    /// ```
    pub fn read_line(&self, buf: &mut String) -> io::Result<usize> {
        self.lock().read_line(buf)
    }

    /// The lines of standard input, as [`BufRead::lines`], holding the lock
    /// until the iterator drops.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// stackful::run(|| {
    ///     let total: usize = stackful::io::stdin().lines().map(|l| l.unwrap().len()).sum();
    ///     println!("{total} bytes of text");
    /// });
    /// ```
    pub fn lines(self) -> io::Lines<StdinLock<'static>> {
        self.lock().lines()
    }
}

impl Read for Stdin {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self).read_vectored(bufs)
    }

    fn read_to_end(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        (&*self).read_to_end(buf)
    }

    fn read_to_string(&mut self, buf: &mut String) -> io::Result<usize> {
        (&*self).read_to_string(buf)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        (&*self).read_exact(buf)
    }
}

impl Read for &Stdin {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.lock().read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.lock().read_vectored(bufs)
    }

    fn read_to_end(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.lock().read_to_end(buf)
    }

    fn read_to_string(&mut self, buf: &mut String) -> io::Result<usize> {
        self.lock().read_to_string(buf)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.lock().read_exact(buf)
    }
}

impl Read for StdinLock<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.inner.read_vectored(bufs)
    }
}

impl BufRead for StdinLock<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt)
    }
}

impl fmt::Debug for Stdin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stdin").finish_non_exhaustive()
    }
}

impl fmt::Debug for StdinLock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StdinLock").finish_non_exhaustive()
    }
}

/// `Write` for `&$t`, an output handle, each call under one lock of the
/// stream (so `write_fmt` keeps the pieces of one `writeln!` together), and
/// for `$t` through `&$t`.
macro_rules! write_under_lock {
    ($t:ty) => {
        impl Write for &$t {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.lock().write(buf)
            }

            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                self.lock().write_vectored(bufs)
            }

            fn flush(&mut self) -> io::Result<()> {
                self.lock().flush()
            }

            fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
                self.lock().write_all(buf)
            }

            fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> io::Result<()> {
                self.lock().write_fmt(args)
            }
        }

        impl Write for $t {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                (&*self).write(buf)
            }

            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                (&*self).write_vectored(bufs)
            }

            fn flush(&mut self) -> io::Result<()> {
                (&*self).flush()
            }

            fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
                (&*self).write_all(buf)
            }

            fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> io::Result<()> {
                (&*self).write_fmt(args)
            }
        }
    };
}

// ---------------------------------------------------------- stdout/err

type OutBuf = ReentrantLock<RefCell<LineWriter<&'static Raw>>>;

static STDOUT: OnceLock<OutBuf> = OnceLock::new();

/// A handle to the process's standard output, line-buffered, waiting
/// green: see [`stdout()`](crate::io::stdout()).
///
/// # Examples
///
/// ```
/// use std::io::Write;
///
/// stackful::run(|| {
///     let mut out = stackful::io::stdout();
///     writeln!(out, "hello from a green thread").unwrap();
/// });
/// ```
pub struct Stdout {
    inner: &'static OutBuf,
}

/// The locked standard output: [`Stdout::lock`].
///
/// # Examples
///
/// ```
/// use std::io::Write;
///
/// stackful::run(|| {
///     let mut lock = stackful::io::stdout().lock();
///     for i in 0..3 {
///         writeln!(lock, "line {i}").unwrap(); // no other writer in between
///     }
/// });
/// ```
pub struct StdoutLock<'a> {
    inner: ReentrantGuard<RefCell<LineWriter<&'static Raw>>>,
    _lock: PhantomData<&'a ()>,
}

/// Flushes what is left in the stdout buffer when the process exits, as
/// std does for its own; skipped if someone holds the lock then.
extern "C" fn flush_at_exit() {
    // Plain blocking writes from here on: this may run on a green thread's
    // stack (`process::exit` called there), where a green write could
    // suspend inside `exit`.
    EXITING.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(buf) = STDOUT.get()
        && let Some(guard) = buf.try_lock()
        && let Ok(mut w) = guard.try_borrow_mut()
    {
        let _ = w.flush();
    }
}

/// The process's standard output (descriptor 1), line-buffered, for green
/// threads: a write that would wait suspends only the calling green
/// thread, and never changes the descriptor's blocking mode (see the
/// [module docs](crate::io#standard-streams) for how). On a plain OS thread
/// it writes as [`std::io::stdout()`] does. What is left in the buffer is
/// flushed when the process exits.
///
/// Its buffer is not std's: `println!` and this each write whole lines, but
/// a partial line (`print!` without a newline) in one buffer may come out
/// after lines written later through the other. Flush one before switching
/// to the other.
///
/// # Examples
///
/// ```
/// use std::io::Write;
///
/// stackful::run(|| {
///     let workers: Vec<_> = (0..3)
///         .map(|i| stackful::spawn(move || writeln!(stackful::io::stdout(), "worker {i}").unwrap()))
///         .collect();
///     stackful::join_all(workers);
/// });
/// ```
pub fn stdout() -> Stdout {
    Stdout {
        inner: STDOUT.get_or_init(|| {
            // SAFETY: registers a function that touches only statics and
            // cannot unwind out (every error is ignored; `try_lock` never
            // waits). A failed registration only skips the final flush.
            unsafe { libc::atexit(flush_at_exit) };
            ReentrantLock::new(RefCell::new(LineWriter::new(&RAW_OUT)))
        }),
    }
}

impl Stdout {
    /// Locks standard output for a series of writes, suspending a green
    /// thread while another holds it. Re-entrant, as std's: the holder may
    /// write through other `Stdout` handles meanwhile.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    ///
    /// stackful::run(|| {
    ///     let mut lock = stackful::io::stdout().lock();
    ///     write!(lock, "a").unwrap();
    ///     writeln!(stackful::io::stdout(), "b").unwrap(); // re-entrant
    /// });
    /// ```
    pub fn lock(&self) -> StdoutLock<'static> {
        StdoutLock {
            inner: self.inner.lock(),
            _lock: PhantomData,
        }
    }
}

/// Borrows the buffer behind a held lock: a write from inside a write
/// (a `Write` impl that prints) would need it twice.
fn borrow<'a, W>(cell: &'a RefCell<W>, what: &str) -> io::Result<std::cell::RefMut<'a, W>> {
    cell.try_borrow_mut().map_err(|_| {
        io::Error::other(format!(
            "stackful::io::{what} was written to from inside one of its own writes \
             (a Write impl or waker that prints): write to another stream there"
        ))
    })
}

impl Write for StdoutLock<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        borrow(&self.inner, "stdout")?.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        borrow(&self.inner, "stdout")?.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        borrow(&self.inner, "stdout")?.flush()
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        borrow(&self.inner, "stdout")?.write_all(buf)
    }
}

write_under_lock!(Stdout);

impl fmt::Debug for Stdout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stdout").finish_non_exhaustive()
    }
}

impl fmt::Debug for StdoutLock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StdoutLock").finish_non_exhaustive()
    }
}

type ErrLock = ReentrantLock<&'static Raw>;

/// A handle to the process's standard error, unbuffered, waiting green:
/// see [`stderr()`](crate::io::stderr()).
///
/// # Examples
///
/// ```
/// use std::io::Write;
///
/// stackful::run(|| {
///     writeln!(stackful::io::stderr(), "a warning").unwrap();
/// });
/// ```
pub struct Stderr {
    inner: &'static ErrLock,
}

/// The locked standard error: [`Stderr::lock`].
///
/// # Examples
///
/// ```
/// use std::io::Write;
///
/// let mut lock = stackful::io::stderr().lock();
/// writeln!(lock, "one").unwrap();
/// writeln!(lock, "two").unwrap();
/// ```
pub struct StderrLock<'a> {
    inner: ReentrantGuard<&'static Raw>,
    _lock: PhantomData<&'a ()>,
}

/// The process's standard error (descriptor 2), unbuffered, for green
/// threads: as [`stdout()`](crate::io::stdout()), without a buffer, as std's
/// [`stderr()`](std::io::stderr).
///
/// # Examples
///
/// ```
/// use std::io::Write;
///
/// stackful::run(|| {
///     writeln!(stackful::io::stderr(), "written at once").unwrap();
/// });
/// ```
pub fn stderr() -> Stderr {
    static STDERR: OnceLock<ErrLock> = OnceLock::new();
    Stderr {
        inner: STDERR.get_or_init(|| ReentrantLock::new(&RAW_ERR)),
    }
}

impl Stderr {
    /// Locks standard error for a series of writes (re-entrant), so that
    /// other writers' text does not come in between.
    ///
    /// # Examples
    ///
    /// See [`StderrLock`].
    pub fn lock(&self) -> StderrLock<'static> {
        StderrLock {
            inner: self.inner.lock(),
            _lock: PhantomData,
        }
    }
}

impl Write for StderrLock<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Raw::write(*self.inner, buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Raw::write_vectored(*self.inner, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

write_under_lock!(Stderr);

impl fmt::Debug for Stderr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stderr").finish_non_exhaustive()
    }
}

impl fmt::Debug for StderrLock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StderrLock").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_polls_and_dev_null_and_files_go_to_the_pool() {
        use std::os::fd::AsRawFd;
        let (r, w) = std::io::pipe().unwrap();
        assert_eq!(classify(r.as_raw_fd()), Kind::Poll);
        assert_eq!(classify(w.as_raw_fd()), Kind::Poll);
        let null = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(classify(null.as_raw_fd()), Kind::Blocking);
        let file = std::fs::File::open("Cargo.toml").unwrap();
        assert_eq!(classify(file.as_raw_fd()), Kind::Blocking);
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(classify(a.as_raw_fd()), Kind::Socket);
        assert_eq!(classify(-1), Kind::Closed);
    }

    #[test]
    fn the_reentrant_lock_lets_its_holder_in_and_keeps_others_out() {
        let lock: &'static _ = Box::leak(Box::new(ReentrantLock::new(RefCell::new(0))));
        let outer = lock.lock();
        let inner = lock.lock();
        *inner.borrow_mut() += 1;
        // The outermost guard may go first: the lock stays held.
        drop(outer);
        let other = std::thread::spawn(move || lock.try_lock().is_none());
        assert!(other.join().unwrap(), "another thread got a held lock");
        drop(inner);
        let other = std::thread::spawn(move || lock.try_lock().map(|g| *g.borrow()));
        assert_eq!(other.join().unwrap(), Some(1));
    }
}
