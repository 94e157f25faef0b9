//! TCP: [`TcpListener`] and [`TcpStream`].

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::{Timeout, ToSocketAddrs, each_addr, getsockopt, setsockopt, sockaddr};
use crate::runtime::reactor::{Interest, Io};

/// A TCP socket server, listening for connections: [`std::net::TcpListener`]
/// whose `accept` suspends only the calling green thread.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use stackful::net::{TcpListener, TcpStream};
///
/// stackful::run(|| {
///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
///     let addr = listener.local_addr().unwrap();
///     let server = stackful::spawn(move || {
///         let (mut conn, _) = listener.accept().unwrap();
///         let mut buf = [0; 5];
///         conn.read_exact(&mut buf).unwrap();
///         conn.write_all(&buf).unwrap(); // echo
///     });
///     let mut client = TcpStream::connect(addr).unwrap();
///     client.write_all(b"hello").unwrap();
///     let mut reply = [0; 5];
///     client.read_exact(&mut reply).unwrap();
///     assert_eq!(&reply, b"hello");
///     server.join().unwrap();
/// });
/// ```
pub struct TcpListener {
    io: Io<std::net::TcpListener>,
}

/// An iterator over the connections of a [`TcpListener`], from
/// [`TcpListener::incoming`]. It never returns `None`.
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

/// A TCP connection: [`std::net::TcpStream`] whose reads, writes and
/// connects suspend only the calling green thread.
///
/// `Read` and `Write` are implemented for `TcpStream` and for
/// `&TcpStream`, so one green thread may read while another writes (share
/// it by reference, or `try_clone` it). A `TcpStream` is `Send`: moved to
/// a green thread on another worker, it keeps working.
///
/// # Examples
///
/// ```
/// use std::io::{BufRead, BufReader, Write};
/// use stackful::net::{TcpListener, TcpStream};
///
/// stackful::run(|| {
///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
///     let addr = listener.local_addr().unwrap();
///     stackful::spawn(move || {
///         let (mut conn, _) = listener.accept().unwrap();
///         conn.write_all(b"hello\nworld\n").unwrap();
///     });
///     let stream = TcpStream::connect(addr).unwrap();
///     let lines: Vec<String> = BufReader::new(stream).lines().map(Result::unwrap).collect();
///     assert_eq!(lines, ["hello", "world"]);
/// });
/// ```
pub struct TcpStream {
    io: Io<std::net::TcpStream>,
    read_timeout: Timeout,
    write_timeout: Timeout,
}

impl TcpListener {
    /// Creates a listener bound to `addr` (the first of its addresses that
    /// binds). Port 0 asks the OS for a free port: see
    /// [`local_addr`](Self::local_addr).
    ///
    /// # Errors
    ///
    /// As [`std::net::TcpListener::bind`]: the address is in use, say, or
    /// resolved to no address.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::TcpListener;
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// assert_ne!(listener.local_addr().unwrap().port(), 0);
    /// ```
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        let listener = each_addr(&addr, |a| std::net::TcpListener::bind(a))?;
        TcpListener::from_std(listener)
    }

    /// Waits for a connection and returns it with the peer's address. A
    /// cancellation point in a green thread.
    ///
    /// # Errors
    ///
    /// As [`std::net::TcpListener::accept`]. When the process or the
    /// system is out of file descriptors (`EMFILE`, `ENFILE`) it first
    /// waits 20 ms, then returns that error: a loop that goes on accepting
    /// does not spin a core meanwhile, the connection waits in the backlog,
    /// and open connections are served on. Debug mode says so once.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// stackful::run(|| {
    ///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    ///     let (_conn, peer) = listener.accept().unwrap();
    ///     assert_eq!(peer, client.local_addr().unwrap());
    /// });
    /// ```
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        // SAFETY: all zeroes is a valid sockaddr_storage.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let (fd, _) = self
            .io
            .op(Interest::Read, None, |l| {
                super::accept(l.as_raw_fd(), &mut storage)
            })
            .inspect_err(super::accept_failed)?;
        let addr = super::from_sockaddr(&storage)?;
        Ok((TcpStream::wrap(std::net::TcpStream::from(fd)), addr))
    }

    /// An iterator over incoming connections: [`accept`](Self::accept) in a
    /// loop, without the addresses.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// stackful::run(|| {
    ///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let addr = listener.local_addr().unwrap();
    ///     let clients = stackful::spawn(move || {
    ///         (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect::<Vec<_>>()
    ///     });
    ///     let accepted = listener.incoming().take(3).filter(Result::is_ok).count();
    ///     assert_eq!(accepted, 3);
    ///     drop(clients.join());
    /// });
    /// ```
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address this listener is bound to.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::TcpListener;
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// assert!(listener.local_addr().unwrap().ip().is_loopback());
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get().local_addr()
    }

    /// Sets the IP time-to-live of the sockets it accepts (`IP_TTL`).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::TcpListener;
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// listener.set_ttl(100).unwrap();
    /// assert_eq!(listener.ttl().unwrap(), 100);
    /// ```
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.get().set_ttl(ttl)
    }

    /// The IP time-to-live: see [`set_ttl`](Self::set_ttl).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::TcpListener;
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// assert!(listener.ttl().unwrap() > 0);
    /// ```
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.get().ttl()
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::TcpListener;
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// assert!(listener.take_error().unwrap().is_none());
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.get().take_error()
    }

    /// A second handle to the same listening socket (a duplicated
    /// descriptor).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::TcpListener;
    ///
    /// let a = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let b = a.try_clone().unwrap();
    /// assert_eq!(a.local_addr().unwrap(), b.local_addr().unwrap());
    /// ```
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        // The duplicate shares the open file, so it is non-blocking too.
        Ok(TcpListener::wrap(self.io.get().try_clone()?))
    }

    /// Wraps a std listener, making it non-blocking underneath.
    ///
    /// # Examples
    ///
    /// ```
    /// let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let listener = stackful::net::TcpListener::from_std(std_listener).unwrap();
    /// assert!(listener.local_addr().is_ok());
    /// ```
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        Ok(TcpListener::wrap(listener))
    }

    /// Wraps a non-blocking std listener.
    fn wrap(listener: std::net::TcpListener) -> TcpListener {
        TcpListener {
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
    /// let listener = stackful::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let addr = listener.local_addr().unwrap();
    /// let std_listener = listener.into_std().unwrap();
    /// assert_eq!(std_listener.local_addr().unwrap(), addr);
    /// ```
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        let listener = self.io.into_inner();
        listener.set_nonblocking(false)?;
        Ok(listener)
    }
}

impl<'a> Iterator for Incoming<'a> {
    type Item = io::Result<TcpStream>;

    fn next(&mut self) -> Option<io::Result<TcpStream>> {
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

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.io.get(), f)
    }
}

/// A non-blocking connect to `addr`, waiting until `deadline`.
fn connect_addr(addr: &SocketAddr, deadline: Option<Instant>) -> io::Result<TcpStream> {
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: a plain system call; no pointers.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nothing else owns.
    let stream = std::net::TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a socket address of `len` bytes.
    let r = unsafe { libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), len) };
    let stream = TcpStream::wrap(stream);
    if r < 0 {
        let e = io::Error::last_os_error();
        // EINTR: the connect goes on in the background, as EINPROGRESS.
        if !matches!(e.raw_os_error(), Some(libc::EINPROGRESS | libc::EINTR)) {
            return Err(e);
        }
        stream.io.op(Interest::Write, deadline, |s| {
            let mut pfd = libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one live pollfd, no waiting.
            let n = unsafe { libc::poll(&mut pfd, 1, 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            match s.take_error()? {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })?;
    }
    Ok(stream)
}

impl TcpStream {
    /// Opens a connection to `addr`: each of its addresses in turn until
    /// one connects. A cancellation point in a green thread.
    ///
    /// # Errors
    ///
    /// The last address's error, as std: `ConnectionRefused` when nothing
    /// listens there, say.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// stackful::run(|| {
    ///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let port = listener.local_addr().unwrap().port();
    ///     let stream = TcpStream::connect(("localhost", port)).unwrap();
    ///     assert_eq!(stream.peer_addr().unwrap().port(), port);
    /// });
    /// ```
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        each_addr(&addr, |a| connect_addr(a, None))
    }

    /// Opens a connection to `addr`, failing with `TimedOut` if it takes
    /// longer than `timeout`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero `timeout` (as std); `TimedOut`; or the
    /// connect's own error.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// stackful::run(|| {
    ///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let addr = listener.local_addr().unwrap();
    ///     assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok());
    /// });
    /// ```
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        connect_addr(addr, Instant::now().checked_add(timeout))
    }

    /// The address of the peer.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// stackful::run(|| {
    ///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let addr = listener.local_addr().unwrap();
    ///     let stream = TcpStream::connect(addr).unwrap();
    ///     assert_eq!(stream.peer_addr().unwrap(), addr);
    /// });
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get().peer_addr()
    }

    /// The local address of this end.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// stackful::run(|| {
    ///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    ///     assert!(stream.local_addr().unwrap().ip().is_loopback());
    /// });
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get().local_addr()
    }

    /// Shuts down the read half, the write half, or both. Green threads
    /// waiting on this socket are woken: a read then returns `Ok(0)`, a
    /// write an error, as with std.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// use std::net::Shutdown;
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// stackful::run(|| {
    ///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let mut stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    ///     let (_conn, _) = listener.accept().unwrap();
    ///     stream.shutdown(Shutdown::Read).unwrap();
    ///     assert_eq!(stream.read(&mut [0; 8]).unwrap(), 0);
    /// });
    /// ```
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let r = self.io.get().shutdown(how);
        self.io.wake_all();
        r
    }

    /// A second handle to the same connection (a duplicated descriptor),
    /// with a copy of this handle's timeouts.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// stackful::run(|| {
    ///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    ///     let (mut conn, _) = listener.accept().unwrap();
    ///     let mut writer = stream.try_clone().unwrap();
    ///     writer.write_all(b"hi").unwrap();
    ///     let mut buf = [0; 2];
    ///     conn.read_exact(&mut buf).unwrap();
    ///     assert_eq!(&buf, b"hi");
    /// });
    /// ```
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        // The duplicate shares the open file, so it is non-blocking too.
        Ok(TcpStream {
            io: Io::new(self.io.get().try_clone()?),
            read_timeout: self.read_timeout.copy(),
            write_timeout: self.write_timeout.copy(),
        })
    }

    /// Sets how long a read may wait; `None` waits forever. An expired
    /// timeout fails the read with [`ErrorKind::TimedOut`](io::ErrorKind::TimedOut)
    /// (std gives `WouldBlock` on Unix), on green and plain threads alike.
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
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// stackful::run(|| {
    ///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let mut stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    ///     stream.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    ///     let err = stream.read(&mut [0; 8]).unwrap_err();
    ///     assert_eq!(err.kind(), ErrorKind::TimedOut);
    /// });
    /// ```
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.read_timeout.set(timeout)
    }

    /// Sets how long a write may wait; see
    /// [`set_read_timeout`](Self::set_read_timeout).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for `Some(Duration::ZERO)`, as std.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// stream.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    /// assert_eq!(stream.write_timeout().unwrap(), Some(Duration::from_secs(1)));
    /// ```
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.write_timeout.set(timeout)
    }

    /// The read timeout: see [`set_read_timeout`](Self::set_read_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// assert_eq!(stream.read_timeout().unwrap(), None);
    /// ```
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.read_timeout.get())
    }

    /// The write timeout: see [`set_write_timeout`](Self::set_write_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// assert_eq!(stream.write_timeout().unwrap(), None);
    /// ```
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.write_timeout.get())
    }

    /// Reads without consuming: the next read returns the same bytes.
    /// Waits like [`read`](Read::read).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// stackful::run(|| {
    ///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let mut stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    ///     let (mut conn, _) = listener.accept().unwrap();
    ///     conn.write_all(b"x").unwrap();
    ///     let mut buf = [0; 1];
    ///     assert_eq!(stream.peek(&mut buf).unwrap(), 1);
    ///     assert_eq!(stream.read(&mut buf).unwrap(), 1);
    ///     assert_eq!(&buf, b"x");
    /// });
    /// ```
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io
            .op(Interest::Read, self.read_timeout.deadline(), |s| {
                super::recv(s.as_raw_fd(), buf, libc::MSG_PEEK)
            })
    }

    /// Sets `TCP_NODELAY`: send small writes at once instead of coalescing
    /// them (Nagle's algorithm).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// stream.set_nodelay(true).unwrap();
    /// assert!(stream.nodelay().unwrap());
    /// ```
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.io.get().set_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set: see [`set_nodelay`](Self::set_nodelay).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// assert!(!stream.nodelay().unwrap());
    /// ```
    pub fn nodelay(&self) -> io::Result<bool> {
        self.io.get().nodelay()
    }

    /// Sets `SO_LINGER`: with `Some(d)`, closing the socket waits up to `d`
    /// (whole seconds) for unsent data, and `Some(Duration::ZERO)` resets
    /// the connection on close; `None` restores the default. Note that the
    /// close then blocks the OS thread that drops the socket.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// stream.set_linger(Some(Duration::from_secs(1))).unwrap();
    /// assert_eq!(stream.linger().unwrap(), Some(Duration::from_secs(1)));
    /// ```
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        let value = libc::linger {
            l_onoff: linger.is_some() as libc::c_int,
            l_linger: linger.map_or(0, |d| {
                d.as_secs().min(libc::c_int::MAX as u64) as libc::c_int
            }),
        };
        setsockopt(self.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, value)
    }

    /// The `SO_LINGER` setting: see [`set_linger`](Self::set_linger).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// assert_eq!(stream.linger().unwrap(), None);
    /// ```
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        let value = getsockopt(
            self.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            libc::linger {
                l_onoff: 0,
                l_linger: 0,
            },
        )?;
        Ok((value.l_onoff != 0).then(|| Duration::from_secs(value.l_linger.max(0) as u64)))
    }

    /// Sets the IP time-to-live (`IP_TTL`).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// stream.set_ttl(42).unwrap();
    /// assert_eq!(stream.ttl().unwrap(), 42);
    /// ```
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.get().set_ttl(ttl)
    }

    /// The IP time-to-live: see [`set_ttl`](Self::set_ttl).
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// assert!(stream.ttl().unwrap() > 0);
    /// ```
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.get().ttl()
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// assert!(stream.take_error().unwrap().is_none());
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.get().take_error()
    }

    /// Wraps a connected std stream, making it non-blocking underneath. Its
    /// read and write timeouts (`SO_RCVTIMEO`, `SO_SNDTIMEO`) become this
    /// handle's.
    ///
    /// # Examples
    ///
    /// ```
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let std_stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// let stream = stackful::net::TcpStream::from_std(std_stream).unwrap();
    /// assert!(stream.peer_addr().is_ok());
    /// ```
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        let read_timeout = Timeout::default();
        read_timeout.set(stream.read_timeout()?)?;
        let write_timeout = Timeout::default();
        write_timeout.set(stream.write_timeout()?)?;
        Ok(TcpStream {
            io: Io::new(stream),
            read_timeout,
            write_timeout,
        })
    }

    /// Wraps a non-blocking std stream, with no timeouts.
    fn wrap(stream: std::net::TcpStream) -> TcpStream {
        TcpStream {
            io: Io::new(stream),
            read_timeout: Timeout::default(),
            write_timeout: Timeout::default(),
        }
    }

    /// Unwraps the std stream, blocking again, with this handle's timeouts
    /// set on it.
    ///
    /// Blocking mode belongs to the socket (the open file), which a clone
    /// made with [`try_clone`](TcpStream::try_clone) shares: this clears
    /// it, since the std stream must block. A green clone still in use
    /// keeps waiting green all the same: its reads, writes and peeks pass
    /// `MSG_DONTWAIT` on every call instead of relying on the socket's mode.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::{TcpListener, TcpStream};
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// let std_stream: std::net::TcpStream = stream.into_std().unwrap();
    /// assert!(std_stream.peer_addr().is_ok());
    /// ```
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        let (read, write) = (self.read_timeout.get(), self.write_timeout.get());
        let stream = self.io.into_inner();
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(read)?;
        stream.set_write_timeout(write)?;
        Ok(stream)
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.io
            .read_stream(buf.len(), self.read_timeout.deadline(), |s| {
                super::recv(s.as_raw_fd(), buf, 0)
            })
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let len = bufs.iter().take(super::IOV_MAX).map(|b| b.len()).sum();
        self.io.read_stream(len, self.read_timeout.deadline(), |s| {
            super::recv_vectored(s.as_raw_fd(), bufs)
        })
    }
}

impl Write for &TcpStream {
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

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self).read_vectored(bufs)
    }
}

impl Write for TcpStream {
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

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.io.get(), f)
    }
}

fd_traits!(TcpListener, std::net::TcpListener);
fd_traits!(TcpStream, std::net::TcpStream);
