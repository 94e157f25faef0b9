//! Green I/O on any file descriptor ([`Green`](crate::io::Green)) and the
//! process's standard streams ([`stdin()`](crate::io::stdin()), [`stdout()`](crate::io::stdout()), [`stderr()`](crate::io::stderr())).
//!
//! # Standard streams
//!
//! [`stdin()`](crate::io::stdin()), [`stdout()`](crate::io::stdout()) and [`stderr()`](crate::io::stderr()) mirror std's functions of the
//! same names, buffering and locking included, but a read or write that
//! would wait suspends only the calling green thread. They never change the
//! blocking mode of descriptors 0, 1 and 2, which the parent shell shares:
//!
//! - a socket is read and written with `MSG_DONTWAIT`, per call;
//! - a pipe, FIFO or terminal is first waited on in the reactor until
//!   `poll(2)` says it is ready, and only then read or written with the
//!   ordinary call (a write at most `PIPE_BUF` bytes), which then does not
//!   wait;
//! - a regular file, `/dev/null` or anything else epoll cannot wait on is
//!   read or written on the blocking pool
//!   ([`spawn_blocking`](crate::spawn_blocking)), shielded so that no byte
//!   is lost to a cancellation.
//!
//! On a plain OS thread they make the plain blocking calls, as std's. Their
//! buffers are not std's: flush `std::io::stdout()` before writing through
//! [`stdout()`](crate::io::stdout()) and the other way round, or partial lines may come out of
//! order; and read standard input through one of the two only (a pipe's
//! data that the other reads between this one's readiness check and its
//! read would leave the read waiting, blocking its worker). Writes to a
//! terminal go to the blocking pool. A `read_line` cut short by a
//! cancellation loses the part of the line read so far (see
//! [`stdin()`](crate::io::stdin())).

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use crate::runtime::reactor::{Interest, Io, set_nonblocking};

mod stdio;

pub use stdio::{Stderr, StderrLock, Stdin, StdinLock, Stdout, StdoutLock, stderr, stdin, stdout};

/// Makes any pollable file descriptor wait green: a pipe, a tty, an
/// eventfd, a socket made by another crate.
///
/// `Green::new` sets `O_NONBLOCK` on the descriptor; an operation that
/// fails with `WouldBlock` then parks the calling green thread until the
/// descriptor is ready, and retries (on a plain OS thread it blocks in
/// `poll(2)`). Use [`read_with`](Self::read_with) and
/// [`write_with`](Self::write_with) for any non-blocking system call, or
/// `Read`/`Write` when `T` has them. Every wait is a cancellation point.
///
/// `O_NONBLOCK` belongs to the open file, which a `dup` or a parent
/// process may share: they see the descriptor non-blocking too, until
/// [`into_inner`](Self::into_inner) restores the flag as it was. A
/// descriptor epoll cannot wait on (a regular file) fails with the
/// error of `epoll_ctl` (`PermissionDenied`) the first time it would
/// wait; regular files never do.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use std::os::unix::net::UnixStream; // any descriptor will do
/// use stackful::io::Green;
///
/// stackful::run(|| {
///     let (a, b) = UnixStream::pair().unwrap();
///     let mut reader = Green::new(a).unwrap();
///     let writer = stackful::spawn(move || {
///         stackful::sleep(std::time::Duration::from_millis(5));
///         (&b).write_all(b"late").unwrap();
///     });
///     let mut buf = [0; 4];
///     reader.read_exact(&mut buf).unwrap(); // suspends, not blocks
///     assert_eq!(&buf, b"late");
///     writer.join().unwrap();
/// });
/// ```
pub struct Green<T: AsFd> {
    io: Io<T>,
    /// Whether the descriptor was non-blocking before `new`.
    was_nonblocking: bool,
}

impl<T: AsFd> Green<T> {
    /// Takes `inner` and makes its descriptor non-blocking.
    ///
    /// # Errors
    ///
    /// The error of `fcntl` for a descriptor that is not open.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    /// let green = stackful::io::Green::new(a).unwrap();
    /// assert!(green.get_ref().peer_addr().is_ok());
    /// ```
    pub fn new(inner: T) -> io::Result<Green<T>> {
        let was_nonblocking = set_nonblocking(inner.as_fd().as_raw_fd(), true)?;
        Ok(Green {
            io: Io::new(inner),
            was_nonblocking,
        })
    }

    /// The wrapped value.
    ///
    /// # Examples
    ///
    /// See [`new`](Self::new).
    pub fn get_ref(&self) -> &T {
        self.io.get()
    }

    /// The wrapped value, mutably. It must keep the same descriptor: once
    /// the value is replaced by one with another descriptor, operations
    /// fail with `InvalidInput` (wrap the new value in a `Green` of its
    /// own instead).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    ///
    /// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    /// let mut green = stackful::io::Green::new(a).unwrap();
    /// green.get_mut().write_all(b"x").unwrap();
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.io.get_mut()
    }

    /// Unwraps the value, with `O_NONBLOCK` as it was before
    /// [`new`](Self::new).
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    /// let green = stackful::io::Green::new(a).unwrap();
    /// let a = green.into_inner(); // blocking again
    /// # drop(a);
    /// ```
    pub fn into_inner(self) -> T {
        let was = self.was_nonblocking;
        let inner = self.io.into_inner();
        // Fails only for a closed descriptor, which has no flag to restore.
        let _ = set_nonblocking(inner.as_fd().as_raw_fd(), was);
        inner
    }

    /// Runs `f`, a non-blocking read-side operation, until it does not fail
    /// with `WouldBlock`, waiting for the descriptor to be readable between
    /// tries. `f` must not block, and should return `WouldBlock` only when
    /// the descriptor is not readable (else the wait may be long). A
    /// cancellation point; a cancelled wait has not run `f` successfully.
    ///
    /// # Errors
    ///
    /// `f`'s error other than `WouldBlock` (`Interrupted` retries), or the
    /// error of registering the descriptor with epoll.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::unix::net::UnixStream;
    /// use stackful::io::Green;
    ///
    /// stackful::run(|| {
    ///     let (a, b) = UnixStream::pair().unwrap();
    ///     let a = Green::new(a).unwrap();
    ///     (&b).write_all(b"abc").unwrap();
    ///     let mut buf = [0; 3];
    ///     let n = a.read_with(|s| (&*s).read(&mut buf)).unwrap();
    ///     assert_eq!(&buf[..n], b"abc");
    /// });
    /// ```
    pub fn read_with<R>(&self, f: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.io.op(Interest::Read, None, f)
    }

    /// Like [`read_with`](Self::read_with), waiting for writability.
    ///
    /// # Errors
    ///
    /// As [`read_with`](Self::read_with).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// use std::os::unix::net::UnixStream;
    /// use stackful::io::Green;
    ///
    /// stackful::run(|| {
    ///     let (a, _b) = UnixStream::pair().unwrap();
    ///     let a = Green::new(a).unwrap();
    ///     assert_eq!(a.write_with(|s| (&*s).write(b"hi")).unwrap(), 2);
    /// });
    /// ```
    pub fn write_with<R>(&self, f: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.io.op(Interest::Write, None, f)
    }

    /// [`read_with`](Self::read_with) with mutable access to the value.
    ///
    /// # Errors
    ///
    /// As [`read_with`](Self::read_with).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    ///
    /// stackful::run(|| {
    ///     let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    ///     let mut a = stackful::io::Green::new(a).unwrap();
    ///     drop(b);
    ///     assert_eq!(a.read_with_mut(|s| s.read(&mut [0; 4])).unwrap(), 0);
    /// });
    /// ```
    pub fn read_with_mut<R>(&mut self, f: impl FnMut(&mut T) -> io::Result<R>) -> io::Result<R> {
        self.io.op_mut(Interest::Read, None, f)
    }

    /// [`write_with`](Self::write_with) with mutable access to the value.
    ///
    /// # Errors
    ///
    /// As [`read_with`](Self::read_with).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    ///
    /// stackful::run(|| {
    ///     let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    ///     let mut a = stackful::io::Green::new(a).unwrap();
    ///     assert_eq!(a.write_with_mut(|s| s.write(b"x")).unwrap(), 1);
    /// });
    /// ```
    pub fn write_with_mut<R>(&mut self, f: impl FnMut(&mut T) -> io::Result<R>) -> io::Result<R> {
        self.io.op_mut(Interest::Write, None, f)
    }
}

impl<T: AsFd + Read> Read for Green<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with_mut(|t| t.read(buf))
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.read_with_mut(|t| t.read_vectored(bufs))
    }
}

impl<T: AsFd + Write> Write for Green<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_with_mut(|t| t.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_with_mut(|t| t.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_with_mut(|t| t.flush())
    }
}

impl<T: AsFd> Read for &Green<T>
where
    for<'a> &'a T: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(|mut t| t.read(buf))
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.read_with(|mut t| t.read_vectored(bufs))
    }
}

impl<T: AsFd> Write for &Green<T>
where
    for<'a> &'a T: Write,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_with(|mut t| t.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_with(|mut t| t.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_with(|mut t| t.flush())
    }
}

impl<T: AsFd> AsFd for Green<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.get().as_fd()
    }
}

impl<T: AsFd> AsRawFd for Green<T> {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.io.get().as_fd().as_raw_fd()
    }
}

impl<T: AsFd + fmt::Debug> fmt::Debug for Green<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Green").field(self.io.get()).finish()
    }
}
