//! Unix domain sockets that suspend only the calling green thread:
//! [`UnixListener`], [`UnixStream`] and [`UnixDatagram`], mirroring
//! [`std::os::unix::net`].
//!
//! As for the [TCP and UDP types](super), an expired read or write timeout
//! fails with [`ErrorKind::TimedOut`](io::ErrorKind::TimedOut), every wait
//! is a cancellation point, and on a plain OS thread the types block as
//! std's do.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::Timeout;
use crate::runtime::reactor::{Interest, Io};

/// A Unix stream socket server: [`std::os::unix::net::UnixListener`]
/// whose `accept` suspends only the calling green thread.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use stackful::net::unix::{UnixListener, UnixStream};
///
/// let dir = std::env::temp_dir().join(format!("stackful-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("listener.sock");
/// let _ = std::fs::remove_file(&path);
/// stackful::run(|| {
///     let listener = UnixListener::bind(&path).unwrap();
///     let server = stackful::spawn(move || {
///         let (mut conn, _) = listener.accept().unwrap();
///         conn.write_all(b"hello").unwrap();
///     });
///     let mut client = UnixStream::connect(&path).unwrap();
///     let mut buf = String::new();
///     client.read_to_string(&mut buf).unwrap();
///     assert_eq!(buf, "hello");
///     server.join().unwrap();
/// });
/// std::fs::remove_file(&path).unwrap();
/// ```
pub struct UnixListener {
    io: Io<std::os::unix::net::UnixListener>,
}

/// An iterator over the connections of a [`UnixListener`], from
/// [`UnixListener::incoming`]. It never returns `None`.
pub struct Incoming<'a> {
    listener: &'a UnixListener,
}

/// A Unix stream socket: [`std::os::unix::net::UnixStream`] whose reads
/// and writes suspend only the calling green thread. `Read` and `Write`
/// are implemented for `UnixStream` and `&UnixStream`.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use stackful::net::unix::UnixStream;
///
/// stackful::run(|| {
///     let (mut a, mut b) = UnixStream::pair().unwrap();
///     let reader = stackful::spawn(move || {
///         let mut buf = [0; 4];
///         b.read_exact(&mut buf).unwrap();
///         buf
///     });
///     a.write_all(b"ping").unwrap();
///     assert_eq!(&reader.join().unwrap(), b"ping");
/// });
/// ```
pub struct UnixStream {
    io: Io<std::os::unix::net::UnixStream>,
    read_timeout: Timeout,
    write_timeout: Timeout,
}

/// A Unix datagram socket: [`std::os::unix::net::UnixDatagram`] whose
/// sends and receives suspend only the calling green thread.
///
/// # Examples
///
/// ```
/// use stackful::net::unix::UnixDatagram;
///
/// stackful::run(|| {
///     let (a, b) = UnixDatagram::pair().unwrap();
///     a.send(b"one").unwrap();
///     let mut buf = [0; 8];
///     assert_eq!(b.recv(&mut buf).unwrap(), 3);
/// });
/// ```
pub struct UnixDatagram {
    io: Io<std::os::unix::net::UnixDatagram>,
    read_timeout: Timeout,
    write_timeout: Timeout,
}

/// A `sockaddr_un` for `path`.
fn sockaddr_un(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is a plain C struct for which all zeroes is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "paths must not contain interior null bytes",
        ));
    }
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path must be shorter than SUN_LEN",
        ));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let offset = std::mem::offset_of!(libc::sockaddr_un, sun_path);
    // The terminating NUL counts, except for an empty path, which stays
    // empty (an invalid address, as std's) rather than the abstract name "".
    let len = offset + bytes.len() + usize::from(!bytes.is_empty());
    Ok((addr, len as libc::socklen_t))
}

/// The address the kernel wrote to `addr`, `len` bytes of it, as std's
/// type: a path, an abstract name, or unnamed.
fn socket_addr(addr: &libc::sockaddr_un, len: libc::socklen_t) -> io::Result<SocketAddr> {
    let offset = std::mem::offset_of!(libc::sockaddr_un, sun_path);
    // An unnamed sender's address has no bytes at all (a datagram's) or
    // only the family (an accepted connection's peer).
    if len as usize <= offset {
        return unnamed();
    }
    if addr.sun_family != libc::AF_UNIX as libc::sa_family_t {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address is not a Unix socket address",
        ));
    }
    let len = (len as usize - offset).min(addr.sun_path.len());
    let mut bytes = [0u8; std::mem::size_of::<libc::sockaddr_un>()];
    for (b, &c) in bytes.iter_mut().zip(&addr.sun_path[..len]) {
        *b = c as u8;
    }
    match &bytes[..len] {
        [0, name @ ..] => {
            <SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name)
        }
        bytes => {
            // A path ends at its NUL, which the kernel counts. (One that
            // fills `sun_path` without a NUL, which only code that is not
            // std's can bind, fails here: std cannot hold it.)
            let path = bytes.split(|&b| b == 0).next().unwrap_or_default();
            SocketAddr::from_pathname(Path::new(std::ffi::OsStr::from_bytes(path)))
        }
    }
}

/// The unnamed address: std gives no constructor, but an empty path has no
/// bytes after the family, which is what an unnamed address is.
fn unnamed() -> io::Result<SocketAddr> {
    SocketAddr::from_pathname("")
}

/// `recvfrom(2)` with `MSG_DONTWAIT`, for a Unix socket.
fn recv_from(fd: std::os::fd::RawFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    // SAFETY: all zeroes is a valid sockaddr_un.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `buf` is live and writable; the kernel writes at most `len`
    // bytes of address into `addr`, which has that many.
    let n = super::cvt_len(unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&mut addr as *mut libc::sockaddr_un).cast(),
            &mut len,
        )
    })?;
    Ok((n, socket_addr(&addr, len)?))
}

/// `sendto(2)` of `buf` to `addr` (`len` bytes) with `MSG_DONTWAIT |
/// MSG_NOSIGNAL`.
fn send_to(
    fd: std::os::fd::RawFd,
    buf: &[u8],
    addr: &libc::sockaddr_un,
    len: libc::socklen_t,
) -> io::Result<usize> {
    // SAFETY: `buf` is live and readable; `addr` is a valid address of
    // `len` bytes.
    super::cvt_len(unsafe {
        libc::sendto(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            (addr as *const libc::sockaddr_un).cast(),
            len,
        )
    })
}

impl UnixListener {
    /// Creates a listener bound to the socket file `path`.
    ///
    /// # Errors
    ///
    /// As [`std::os::unix::net::UnixListener::bind`]: the path exists, say.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::unix::UnixListener;
    ///
    /// let path = std::env::temp_dir().join(format!("stackful-bind-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let listener = UnixListener::bind(&path).unwrap();
    /// assert_eq!(listener.local_addr().unwrap().as_pathname(), Some(path.as_path()));
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        UnixListener::from_std(std::os::unix::net::UnixListener::bind(path)?)
    }

    /// Waits for a connection and returns it with the peer's address. A
    /// cancellation point in a green thread.
    ///
    /// # Errors
    ///
    /// As [`std::os::unix::net::UnixListener::accept`]; out of file
    /// descriptors, it backs off first as
    /// [`TcpListener::accept`](super::TcpListener::accept) does.
    ///
    /// # Examples
    ///
    /// See [`UnixListener`].
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        // SAFETY: all zeroes is a valid sockaddr_un.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        let (fd, len) = self
            .io
            .op(Interest::Read, None, |l| {
                super::accept(l.as_raw_fd(), &mut addr)
            })
            .inspect_err(super::accept_failed)?;
        let addr = socket_addr(&addr, len)?;
        Ok((
            UnixStream::wrap(std::os::unix::net::UnixStream::from(fd)),
            addr,
        ))
    }

    /// An iterator over incoming connections: [`accept`](Self::accept) in a
    /// loop, without the addresses.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::unix::{UnixListener, UnixStream};
    ///
    /// let path = std::env::temp_dir().join(format!("stackful-inc-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// stackful::run(|| {
    ///     let listener = UnixListener::bind(&path).unwrap();
    ///     let _client = UnixStream::connect(&path).unwrap();
    ///     assert!(listener.incoming().next().unwrap().is_ok());
    /// });
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address this listener is bound to.
    ///
    /// # Examples
    ///
    /// See [`bind`](Self::bind).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get().local_addr()
    }

    /// A second handle to the same listening socket.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::unix::UnixListener;
    ///
    /// let path = std::env::temp_dir().join(format!("stackful-clone-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let a = UnixListener::bind(&path).unwrap();
    /// let b = a.try_clone().unwrap();
    /// assert_eq!(b.local_addr().unwrap().as_pathname(), Some(path.as_path()));
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn try_clone(&self) -> io::Result<UnixListener> {
        Ok(UnixListener::wrap(self.io.get().try_clone()?))
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::unix::UnixListener;
    ///
    /// let path = std::env::temp_dir().join(format!("stackful-err-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let listener = UnixListener::bind(&path).unwrap();
    /// assert!(listener.take_error().unwrap().is_none());
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.get().take_error()
    }

    /// Wraps a std listener, making it non-blocking underneath.
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("stackful-fstd-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let std_listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    /// let listener = stackful::net::unix::UnixListener::from_std(std_listener).unwrap();
    /// assert!(listener.local_addr().is_ok());
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        listener.set_nonblocking(true)?;
        Ok(UnixListener::wrap(listener))
    }

    fn wrap(listener: std::os::unix::net::UnixListener) -> UnixListener {
        UnixListener {
            io: Io::new(listener),
        }
    }

    /// Unwraps the std listener, blocking again.
    ///
    /// Blocking mode belongs to the socket (the open file), which clones
    /// made with `try_clone` share: this clears it, since the std listener
    /// must block. `accept` has no per-call non-blocking flag, so a green
    /// clone still accepting after this would block its worker while it
    /// waits: convert the last handle only, or keep accepting through the
    /// std listener on a plain thread (or in
    /// [`spawn_blocking`](crate::spawn_blocking)).
    ///
    /// # Examples
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("stackful-istd-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let listener = stackful::net::unix::UnixListener::bind(&path).unwrap();
    /// let std_listener = listener.into_std().unwrap();
    /// assert!(std_listener.local_addr().is_ok());
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixListener> {
        let listener = self.io.into_inner();
        listener.set_nonblocking(false)?;
        Ok(listener)
    }
}

impl<'a> Iterator for Incoming<'a> {
    type Item = io::Result<UnixStream>;

    fn next(&mut self) -> Option<io::Result<UnixStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

impl fmt::Debug for Incoming<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("listener", self.listener)
            .finish()
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.io.get(), f)
    }
}

/// How long a connect waits before it tries again when the listener's
/// backlog is full (the kernel offers no readiness event for that).
const BACKLOG_RETRY: Duration = Duration::from_millis(1);

impl UnixStream {
    /// Connects to the socket at `path`. A cancellation point in a green
    /// thread: while the listener's backlog is full it retries every
    /// millisecond, suspending only the calling green thread.
    ///
    /// # Errors
    ///
    /// As [`std::os::unix::net::UnixStream::connect`]: `NotFound` when no
    /// socket is there, `ConnectionRefused` when nothing listens on it.
    ///
    /// # Examples
    ///
    /// See [`UnixListener`].
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        let (addr, len) = sockaddr_un(path.as_ref())?;
        // SAFETY: a plain system call; no pointers.
        let fd = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor nothing else owns.
        let stream = std::os::unix::net::UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
        loop {
            // SAFETY: `addr` is a socket address of `len` bytes.
            let r = unsafe {
                libc::connect(
                    stream.as_raw_fd(),
                    (&addr as *const libc::sockaddr_un).cast(),
                    len,
                )
            };
            if r == 0 {
                return Ok(UnixStream::wrap(stream));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => crate::sleep(BACKLOG_RETRY),
                _ => return Err(e),
            }
        }
    }

    /// A connected pair of unnamed sockets.
    ///
    /// # Examples
    ///
    /// See [`UnixStream`].
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        Ok((UnixStream::from_std(a)?, UnixStream::from_std(b)?))
    }

    fn wrap(stream: std::os::unix::net::UnixStream) -> UnixStream {
        UnixStream {
            io: Io::new(stream),
            read_timeout: Timeout::default(),
            write_timeout: Timeout::default(),
        }
    }

    /// A second handle to the same connection, with a copy of this
    /// handle's timeouts.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = stackful::net::unix::UnixStream::pair().unwrap();
    /// let a2 = a.try_clone().unwrap();
    /// assert!(a2.peer_addr().is_ok());
    /// ```
    pub fn try_clone(&self) -> io::Result<UnixStream> {
        Ok(UnixStream {
            io: Io::new(self.io.get().try_clone()?),
            read_timeout: self.read_timeout.copy(),
            write_timeout: self.write_timeout.copy(),
        })
    }

    /// The address of this end.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = stackful::net::unix::UnixStream::pair().unwrap();
    /// assert!(a.local_addr().unwrap().is_unnamed());
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get().local_addr()
    }

    /// The address of the peer.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = stackful::net::unix::UnixStream::pair().unwrap();
    /// assert!(a.peer_addr().unwrap().is_unnamed());
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get().peer_addr()
    }

    /// Sets how long a read may wait; `None` waits forever. An expired
    /// timeout fails with `TimedOut`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for `Some(Duration::ZERO)`, as std.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{ErrorKind, Read};
    /// use std::time::Duration;
    ///
    /// stackful::run(|| {
    ///     let (mut a, _b) = stackful::net::unix::UnixStream::pair().unwrap();
    ///     a.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    ///     assert_eq!(a.read(&mut [0; 4]).unwrap_err().kind(), ErrorKind::TimedOut);
    /// });
    /// ```
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.read_timeout.set(timeout)
    }

    /// Sets how long a write may wait; `None` waits forever. An expired
    /// timeout fails with `TimedOut`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for `Some(Duration::ZERO)`, as std.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (a, _b) = stackful::net::unix::UnixStream::pair().unwrap();
    /// a.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    /// assert_eq!(a.write_timeout().unwrap(), Some(Duration::from_secs(1)));
    /// ```
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.write_timeout.set(timeout)
    }

    /// The read timeout: see [`set_read_timeout`](Self::set_read_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = stackful::net::unix::UnixStream::pair().unwrap();
    /// assert_eq!(a.read_timeout().unwrap(), None);
    /// ```
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.read_timeout.get())
    }

    /// The write timeout: see [`set_write_timeout`](Self::set_write_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = stackful::net::unix::UnixStream::pair().unwrap();
    /// assert_eq!(a.write_timeout().unwrap(), None);
    /// ```
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.write_timeout.get())
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = stackful::net::unix::UnixStream::pair().unwrap();
    /// assert!(a.take_error().unwrap().is_none());
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.get().take_error()
    }

    /// Shuts down the read half, the write half, or both. Green threads
    /// waiting on this socket are woken: a read then returns `Ok(0)`, a
    /// write an error.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// use std::net::Shutdown;
    ///
    /// stackful::run(|| {
    ///     let (a, mut b) = stackful::net::unix::UnixStream::pair().unwrap();
    ///     a.shutdown(Shutdown::Write).unwrap();
    ///     assert_eq!(b.read(&mut [0; 4]).unwrap(), 0);
    /// });
    /// ```
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let r = self.io.get().shutdown(how);
        self.io.wake_all();
        r
    }

    /// Reads without consuming: the next read returns the same bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    ///
    /// stackful::run(|| {
    ///     let (mut a, mut b) = stackful::net::unix::UnixStream::pair().unwrap();
    ///     a.write_all(b"x").unwrap();
    ///     let mut buf = [0; 1];
    ///     assert_eq!(b.peek(&mut buf).unwrap(), 1);
    ///     assert_eq!(b.read(&mut buf).unwrap(), 1);
    /// });
    /// ```
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io
            .op(Interest::Read, self.read_timeout.deadline(), |s| {
                super::recv(s.as_raw_fd(), buf, libc::MSG_PEEK)
            })
    }

    /// Wraps a connected std stream, making it non-blocking underneath. Its
    /// timeouts become this handle's.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    /// let a = stackful::net::unix::UnixStream::from_std(a).unwrap();
    /// assert!(a.local_addr().is_ok());
    /// ```
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        stream.set_nonblocking(true)?;
        let s = UnixStream::wrap(stream);
        s.read_timeout.set(s.io.get().read_timeout()?)?;
        s.write_timeout.set(s.io.get().write_timeout()?)?;
        Ok(s)
    }

    /// Unwraps the std stream, blocking again, with this handle's timeouts.
    ///
    /// Blocking mode belongs to the socket (the open file), which a clone
    /// made with [`try_clone`](UnixStream::try_clone) shares: this clears
    /// it, since the std stream must block. A green clone still in use
    /// keeps waiting green all the same: its reads, writes and peeks pass
    /// `MSG_DONTWAIT` on every call instead of relying on the socket's mode.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = stackful::net::unix::UnixStream::pair().unwrap();
    /// let a = a.into_std().unwrap();
    /// assert!(a.local_addr().is_ok());
    /// ```
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixStream> {
        let (read, write) = (self.read_timeout.get(), self.write_timeout.get());
        let stream = self.io.into_inner();
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(read)?;
        stream.set_write_timeout(write)?;
        Ok(stream)
    }
}

impl Read for &UnixStream {
    // Not `read_stream`: a Unix stream read stops short at a message that
    // passed descriptors or credentials, with data still queued.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.io
            .op(Interest::Read, self.read_timeout.deadline(), |s| {
                super::recv(s.as_raw_fd(), buf, 0)
            })
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.io
            .op(Interest::Read, self.read_timeout.deadline(), |s| {
                super::recv_vectored(s.as_raw_fd(), bufs)
            })
    }
}

impl Write for &UnixStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.io
            .op(Interest::Write, self.write_timeout.deadline(), |s| {
                super::send(s.as_raw_fd(), buf)
            })
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.io
            .op(Interest::Write, self.write_timeout.deadline(), |s| {
                super::send_vectored(s.as_raw_fd(), bufs)
            })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for UnixStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self).read_vectored(bufs)
    }
}

impl Write for UnixStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.io.get(), f)
    }
}

impl UnixDatagram {
    /// Creates a datagram socket bound to the socket file `path`.
    ///
    /// # Errors
    ///
    /// As [`std::os::unix::net::UnixDatagram::bind`].
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::unix::UnixDatagram;
    ///
    /// let path = std::env::temp_dir().join(format!("stackful-dgram-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// stackful::run(|| {
    ///     let server = UnixDatagram::bind(&path).unwrap();
    ///     let client = UnixDatagram::unbound().unwrap();
    ///     client.send_to(b"hi", &path).unwrap();
    ///     let mut buf = [0; 8];
    ///     let (n, _) = server.recv_from(&mut buf).unwrap();
    ///     assert_eq!(&buf[..n], b"hi");
    /// });
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixDatagram> {
        UnixDatagram::from_std(std::os::unix::net::UnixDatagram::bind(path)?)
    }

    /// Creates a datagram socket bound to no address.
    ///
    /// # Examples
    ///
    /// See [`bind`](Self::bind).
    pub fn unbound() -> io::Result<UnixDatagram> {
        UnixDatagram::from_std(std::os::unix::net::UnixDatagram::unbound()?)
    }

    /// A connected pair of unnamed datagram sockets.
    ///
    /// # Examples
    ///
    /// See [`UnixDatagram`].
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = std::os::unix::net::UnixDatagram::pair()?;
        Ok((UnixDatagram::from_std(a)?, UnixDatagram::from_std(b)?))
    }

    fn wrap(socket: std::os::unix::net::UnixDatagram) -> UnixDatagram {
        UnixDatagram {
            io: Io::new(socket),
            read_timeout: Timeout::default(),
            write_timeout: Timeout::default(),
        }
    }

    /// Connects to the socket at `path`: `send` and `recv` then go to and
    /// come from it only.
    ///
    /// # Errors
    ///
    /// As [`std::os::unix::net::UnixDatagram::connect`].
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::unix::UnixDatagram;
    ///
    /// let path = std::env::temp_dir().join(format!("stackful-dconn-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let server = UnixDatagram::bind(&path).unwrap();
    /// let client = UnixDatagram::unbound().unwrap();
    /// client.connect(&path).unwrap();
    /// assert_eq!(client.peer_addr().unwrap().as_pathname(), Some(path.as_path()));
    /// std::fs::remove_file(&path).unwrap();
    /// # drop(server);
    /// ```
    pub fn connect<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.io.get().connect(path)
    }

    /// A second handle to the same socket, with a copy of this handle's
    /// timeouts.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = stackful::net::unix::UnixDatagram::pair().unwrap();
    /// assert!(a.try_clone().is_ok());
    /// ```
    pub fn try_clone(&self) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            io: Io::new(self.io.get().try_clone()?),
            read_timeout: self.read_timeout.copy(),
            write_timeout: self.write_timeout.copy(),
        })
    }

    /// The address this socket is bound to.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = stackful::net::unix::UnixDatagram::unbound().unwrap();
    /// assert!(s.local_addr().unwrap().is_unnamed());
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get().local_addr()
    }

    /// The address of the connected peer.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = stackful::net::unix::UnixDatagram::pair().unwrap();
    /// assert!(a.peer_addr().is_ok());
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get().peer_addr()
    }

    /// Receives one datagram and its sender's address.
    ///
    /// # Errors
    ///
    /// As std; `TimedOut` after the read timeout.
    ///
    /// # Examples
    ///
    /// See [`bind`](Self::bind).
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io
            .op(Interest::Read, self.read_timeout.deadline(), |s| {
                recv_from(s.as_raw_fd(), buf)
            })
    }

    /// Receives one datagram.
    ///
    /// # Errors
    ///
    /// As std; `TimedOut` after the read timeout.
    ///
    /// # Examples
    ///
    /// See [`UnixDatagram`].
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io
            .op(Interest::Read, self.read_timeout.deadline(), |s| {
                super::recv(s.as_raw_fd(), buf, 0)
            })
    }

    /// Sends one datagram to the socket at `path`.
    ///
    /// # Errors
    ///
    /// As std; `TimedOut` after the write timeout.
    ///
    /// # Examples
    ///
    /// See [`bind`](Self::bind).
    pub fn send_to<P: AsRef<Path>>(&self, buf: &[u8], path: P) -> io::Result<usize> {
        let (addr, len) = sockaddr_un(path.as_ref())?;
        self.io
            .op(Interest::Write, self.write_timeout.deadline(), |s| {
                send_to(s.as_raw_fd(), buf, &addr, len)
            })
    }

    /// Sends one datagram to the connected peer.
    ///
    /// # Errors
    ///
    /// As std; `TimedOut` after the write timeout.
    ///
    /// # Examples
    ///
    /// See [`UnixDatagram`].
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.io
            .op(Interest::Write, self.write_timeout.deadline(), |s| {
                super::send(s.as_raw_fd(), buf)
            })
    }

    /// Sets how long a receive may wait; `None` waits forever. An expired
    /// timeout fails with `TimedOut`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for `Some(Duration::ZERO)`, as std.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// stackful::run(|| {
    ///     let (a, _b) = stackful::net::unix::UnixDatagram::pair().unwrap();
    ///     a.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    ///     let err = a.recv(&mut [0; 4]).unwrap_err();
    ///     assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// });
    /// ```
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.read_timeout.set(timeout)
    }

    /// Sets how long a send may wait; `None` waits forever. An expired
    /// timeout fails with `TimedOut`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for `Some(Duration::ZERO)`, as std.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (a, _b) = stackful::net::unix::UnixDatagram::pair().unwrap();
    /// a.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    /// assert_eq!(a.write_timeout().unwrap(), Some(Duration::from_secs(1)));
    /// ```
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.write_timeout.set(timeout)
    }

    /// The receive timeout: see [`set_read_timeout`](Self::set_read_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = stackful::net::unix::UnixDatagram::pair().unwrap();
    /// assert_eq!(a.read_timeout().unwrap(), None);
    /// ```
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.read_timeout.get())
    }

    /// The send timeout: see [`set_write_timeout`](Self::set_write_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = stackful::net::unix::UnixDatagram::pair().unwrap();
    /// assert_eq!(a.write_timeout().unwrap(), None);
    /// ```
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.write_timeout.get())
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, _b) = stackful::net::unix::UnixDatagram::pair().unwrap();
    /// assert!(a.take_error().unwrap().is_none());
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.get().take_error()
    }

    /// Shuts down the read half, the write half, or both, waking green
    /// threads waiting on this socket to try again. A send then fails; a
    /// receive on Linux goes on waiting for datagrams as before (unlike a
    /// stream's read, it does not return 0), as with std.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::Shutdown;
    ///
    /// stackful::run(|| {
    ///     let (a, _b) = stackful::net::unix::UnixDatagram::pair().unwrap();
    ///     a.shutdown(Shutdown::Write).unwrap();
    ///     assert!(a.send(b"x").is_err());
    /// });
    /// ```
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let r = self.io.get().shutdown(how);
        self.io.wake_all();
        r
    }

    /// Wraps a std socket, making it non-blocking underneath. Its timeouts
    /// become this handle's.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = std::os::unix::net::UnixDatagram::unbound().unwrap();
    /// let s = stackful::net::unix::UnixDatagram::from_std(s).unwrap();
    /// assert!(s.local_addr().is_ok());
    /// ```
    pub fn from_std(socket: std::os::unix::net::UnixDatagram) -> io::Result<UnixDatagram> {
        socket.set_nonblocking(true)?;
        let s = UnixDatagram::wrap(socket);
        s.read_timeout.set(s.io.get().read_timeout()?)?;
        s.write_timeout.set(s.io.get().write_timeout()?)?;
        Ok(s)
    }

    /// Unwraps the std socket, blocking again, with this handle's timeouts.
    ///
    /// Blocking mode belongs to the socket (the open file), which a clone
    /// made with [`try_clone`](UnixDatagram::try_clone) shares: this clears
    /// it, since the std socket must block. A green clone still in use
    /// keeps waiting green all the same: its sends and receives pass
    /// `MSG_DONTWAIT` on every call instead of relying on the socket's mode.
    ///
    /// # Examples
    ///
    /// ```
    /// let s = stackful::net::unix::UnixDatagram::unbound().unwrap();
    /// assert!(s.into_std().unwrap().local_addr().is_ok());
    /// ```
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixDatagram> {
        let (read, write) = (self.read_timeout.get(), self.write_timeout.get());
        let socket = self.io.into_inner();
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(read)?;
        socket.set_write_timeout(write)?;
        Ok(socket)
    }
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.io.get(), f)
    }
}

fd_traits!(UnixListener, std::os::unix::net::UnixListener);
fd_traits!(UnixStream, std::os::unix::net::UnixStream);
fd_traits!(UnixDatagram, std::os::unix::net::UnixDatagram);
