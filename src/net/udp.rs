//! UDP: [`UdpSocket`].

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::{Timeout, ToSocketAddrs, each_addr, no_addresses, resolve};
use crate::runtime::reactor::{Interest, Io};

/// A UDP socket: [`std::net::UdpSocket`] whose sends and receives suspend
/// only the calling green thread.
///
/// An expired read or write timeout fails with
/// [`ErrorKind::TimedOut`](io::ErrorKind::TimedOut), on green and plain
/// threads alike (see the [module docs](super)).
///
/// # Examples
///
/// ```
/// use stackful::net::UdpSocket;
///
/// stackful::run(|| {
///     let a = UdpSocket::bind("127.0.0.1:0").unwrap();
///     let b = UdpSocket::bind("127.0.0.1:0").unwrap();
///     let b_addr = b.local_addr().unwrap();
///     let echo = stackful::spawn(move || {
///         let mut buf = [0; 16];
///         let (n, from) = b.recv_from(&mut buf).unwrap();
///         b.send_to(&buf[..n], from).unwrap();
///     });
///     a.send_to(b"ping", b_addr).unwrap();
///     let mut buf = [0; 16];
///     let (n, from) = a.recv_from(&mut buf).unwrap();
///     assert_eq!((&buf[..n], from), (&b"ping"[..], b_addr));
///     echo.join().unwrap();
/// });
/// ```
pub struct UdpSocket {
    io: Io<std::net::UdpSocket>,
    read_timeout: Timeout,
    write_timeout: Timeout,
}

impl UdpSocket {
    /// Creates a socket bound to `addr` (the first of its addresses that
    /// binds).
    ///
    /// # Errors
    ///
    /// As [`std::net::UdpSocket::bind`].
    ///
    /// # Examples
    ///
    /// ```
    /// let socket = stackful::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert_ne!(socket.local_addr().unwrap().port(), 0);
    /// ```
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        let socket = each_addr(&addr, |a| std::net::UdpSocket::bind(a))?;
        UdpSocket::from_std(socket)
    }

    /// Wraps a non-blocking std socket, with no timeouts.
    fn wrap(socket: std::net::UdpSocket) -> UdpSocket {
        UdpSocket {
            io: Io::new(socket),
            read_timeout: Timeout::default(),
            write_timeout: Timeout::default(),
        }
    }

    /// Connects to `addr` (the first of its addresses that connects):
    /// `send` and `recv` then go to and come from it only.
    ///
    /// # Errors
    ///
    /// As [`std::net::UdpSocket::connect`].
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::UdpSocket;
    ///
    /// let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    /// let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    /// a.connect(b.local_addr().unwrap()).unwrap();
    /// assert_eq!(a.peer_addr().unwrap(), b.local_addr().unwrap());
    /// ```
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        each_addr(&addr, |a| self.io.get().connect(a))
    }

    /// Sends `buf` to the connected peer; returns the bytes sent.
    ///
    /// # Errors
    ///
    /// As [`std::net::UdpSocket::send`]; `TimedOut` after the write timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::UdpSocket;
    ///
    /// stackful::run(|| {
    ///     let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     a.connect(b.local_addr().unwrap()).unwrap();
    ///     assert_eq!(a.send(b"hi").unwrap(), 2);
    ///     let mut buf = [0; 8];
    ///     assert_eq!(b.recv(&mut buf).unwrap(), 2);
    /// });
    /// ```
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.io
            .op(Interest::Write, self.write_timeout.deadline(), |s| {
                super::send(s.as_raw_fd(), buf)
            })
    }

    /// Receives one datagram from the connected peer (or from anyone, if
    /// not connected); returns its length (a longer datagram is cut to
    /// `buf`).
    ///
    /// # Errors
    ///
    /// As [`std::net::UdpSocket::recv`]; `TimedOut` after the read timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stackful::net::UdpSocket;
    ///
    /// stackful::run(|| {
    ///     let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     socket.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    ///     let err = socket.recv(&mut [0; 8]).unwrap_err();
    ///     assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// });
    /// ```
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io
            .op(Interest::Read, self.read_timeout.deadline(), |s| {
                super::recv(s.as_raw_fd(), buf, 0)
            })
    }

    /// Like [`recv`](Self::recv), leaving the datagram queued.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::UdpSocket;
    ///
    /// stackful::run(|| {
    ///     let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     a.send_to(b"x", b.local_addr().unwrap()).unwrap();
    ///     let mut buf = [0; 8];
    ///     assert_eq!(b.peek(&mut buf).unwrap(), 1);
    ///     assert_eq!(b.recv(&mut buf).unwrap(), 1);
    /// });
    /// ```
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io
            .op(Interest::Read, self.read_timeout.deadline(), |s| {
                super::recv(s.as_raw_fd(), buf, libc::MSG_PEEK)
            })
    }

    /// Sends `buf` to `addr` (its first address, as std); returns the bytes
    /// sent.
    ///
    /// # Errors
    ///
    /// As [`std::net::UdpSocket::send_to`]; `TimedOut` after the write
    /// timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::UdpSocket;
    ///
    /// stackful::run(|| {
    ///     let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     assert_eq!(a.send_to(b"hey", b.local_addr().unwrap()).unwrap(), 3);
    /// });
    /// ```
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let addr = resolve(&addr)?
            .into_iter()
            .next()
            .ok_or_else(no_addresses)?;
        self.io
            .op(Interest::Write, self.write_timeout.deadline(), |s| {
                super::send_to(s.as_raw_fd(), buf, &addr)
            })
    }

    /// Receives one datagram and its sender's address.
    ///
    /// # Errors
    ///
    /// As [`std::net::UdpSocket::recv_from`]; `TimedOut` after the read
    /// timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::UdpSocket;
    ///
    /// stackful::run(|| {
    ///     let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     a.send_to(b"x", b.local_addr().unwrap()).unwrap();
    ///     let (n, from) = b.recv_from(&mut [0; 8]).unwrap();
    ///     assert_eq!((n, from), (1, a.local_addr().unwrap()));
    /// });
    /// ```
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io
            .op(Interest::Read, self.read_timeout.deadline(), |s| {
                super::recv_from(s.as_raw_fd(), buf, 0)
            })
    }

    /// Like [`recv_from`](Self::recv_from), leaving the datagram queued.
    ///
    /// # Examples
    ///
    /// ```
    /// use stackful::net::UdpSocket;
    ///
    /// stackful::run(|| {
    ///     let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     a.send_to(b"x", b.local_addr().unwrap()).unwrap();
    ///     let (_, from) = b.peek_from(&mut [0; 8]).unwrap();
    ///     assert_eq!(b.recv_from(&mut [0; 8]).unwrap().1, from);
    /// });
    /// ```
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io
            .op(Interest::Read, self.read_timeout.deadline(), |s| {
                super::recv_from(s.as_raw_fd(), buf, libc::MSG_PEEK)
            })
    }

    /// The address of the connected peer.
    ///
    /// # Errors
    ///
    /// `NotConnected` if not connected.
    ///
    /// # Examples
    ///
    /// ```
    /// let socket = stackful::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert!(socket.peer_addr().is_err());
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get().peer_addr()
    }

    /// The address this socket is bound to.
    ///
    /// # Examples
    ///
    /// ```
    /// let socket = stackful::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert!(socket.local_addr().unwrap().ip().is_loopback());
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get().local_addr()
    }

    /// A second handle to the same socket (a duplicated descriptor), with
    /// a copy of this handle's timeouts.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = stackful::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// let b = a.try_clone().unwrap();
    /// assert_eq!(a.local_addr().unwrap(), b.local_addr().unwrap());
    /// ```
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        // The duplicate shares the open file, so it is non-blocking too.
        Ok(UdpSocket {
            io: Io::new(self.io.get().try_clone()?),
            read_timeout: self.read_timeout.copy(),
            write_timeout: self.write_timeout.copy(),
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
    /// let socket = stackful::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// socket.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    /// assert_eq!(socket.read_timeout().unwrap(), Some(Duration::from_secs(1)));
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
    /// let socket = stackful::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// socket.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    /// assert_eq!(socket.write_timeout().unwrap(), Some(Duration::from_secs(1)));
    /// ```
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.write_timeout.set(timeout)
    }

    /// The receive timeout: see [`set_read_timeout`](Self::set_read_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// let socket = stackful::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert_eq!(socket.read_timeout().unwrap(), None);
    /// ```
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.read_timeout.get())
    }

    /// The send timeout: see [`set_write_timeout`](Self::set_write_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// let socket = stackful::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert_eq!(socket.write_timeout().unwrap(), None);
    /// ```
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.write_timeout.get())
    }

    /// Sets `SO_BROADCAST`: whether sends to a broadcast address are allowed.
    ///
    /// # Examples
    ///
    /// ```
    /// let socket = stackful::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// socket.set_broadcast(true).unwrap();
    /// assert!(socket.broadcast().unwrap());
    /// ```
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.io.get().set_broadcast(on)
    }

    /// Whether `SO_BROADCAST` is set.
    ///
    /// # Examples
    ///
    /// ```
    /// let socket = stackful::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert!(!socket.broadcast().unwrap());
    /// ```
    pub fn broadcast(&self) -> io::Result<bool> {
        self.io.get().broadcast()
    }

    /// Sets `IP_MULTICAST_LOOP`: whether IPv4 multicast sends loop back.
    ///
    /// # Examples
    ///
    /// ```
    /// let socket = stackful::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// socket.set_multicast_loop_v4(false).unwrap();
    /// assert!(!socket.multicast_loop_v4().unwrap());
    /// ```
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        self.io.get().set_multicast_loop_v4(on)
    }

    /// Whether `IP_MULTICAST_LOOP` is set.
    ///
    /// # Examples
    ///
    /// ```
    /// let socket = stackful::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert!(socket.multicast_loop_v4().unwrap());
    /// ```
    pub fn multicast_loop_v4(&self) -> io::Result<bool> {
        self.io.get().multicast_loop_v4()
    }

    /// Sets `IP_MULTICAST_TTL`, the time-to-live of IPv4 multicast sends.
    ///
    /// # Examples
    ///
    /// ```
    /// let socket = stackful::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// socket.set_multicast_ttl_v4(4).unwrap();
    /// assert_eq!(socket.multicast_ttl_v4().unwrap(), 4);
    /// ```
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        self.io.get().set_multicast_ttl_v4(ttl)
    }

    /// The `IP_MULTICAST_TTL` setting.
    ///
    /// # Examples
    ///
    /// ```
    /// let socket = stackful::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert_eq!(socket.multicast_ttl_v4().unwrap(), 1);
    /// ```
    pub fn multicast_ttl_v4(&self) -> io::Result<u32> {
        self.io.get().multicast_ttl_v4()
    }

    /// Sets `IPV6_MULTICAST_LOOP`: whether IPv6 multicast sends loop back.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let socket = stackful::net::UdpSocket::bind("[::1]:0").unwrap();
    /// socket.set_multicast_loop_v6(false).unwrap();
    /// assert!(!socket.multicast_loop_v6().unwrap());
    /// ```
    pub fn set_multicast_loop_v6(&self, on: bool) -> io::Result<()> {
        self.io.get().set_multicast_loop_v6(on)
    }

    /// Whether `IPV6_MULTICAST_LOOP` is set.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let socket = stackful::net::UdpSocket::bind("[::1]:0").unwrap();
    /// assert!(socket.multicast_loop_v6().unwrap());
    /// ```
    pub fn multicast_loop_v6(&self) -> io::Result<bool> {
        self.io.get().multicast_loop_v6()
    }

    /// Joins the IPv4 multicast group `group` on the interface with address
    /// `interface` (`UNSPECIFIED`: the system's choice).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::net::Ipv4Addr;
    ///
    /// let socket = stackful::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    /// let group = Ipv4Addr::new(239, 255, 0, 1);
    /// socket.join_multicast_v4(&group, &Ipv4Addr::UNSPECIFIED).unwrap();
    /// socket.leave_multicast_v4(&group, &Ipv4Addr::UNSPECIFIED).unwrap();
    /// ```
    pub fn join_multicast_v4(&self, group: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.io.get().join_multicast_v4(group, interface)
    }

    /// Joins the IPv6 multicast group `group` on interface number
    /// `interface` (0: the system's choice).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::net::Ipv6Addr;
    ///
    /// let socket = stackful::net::UdpSocket::bind("[::]:0").unwrap();
    /// let group = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x123);
    /// socket.join_multicast_v6(&group, 0).unwrap();
    /// socket.leave_multicast_v6(&group, 0).unwrap();
    /// ```
    pub fn join_multicast_v6(&self, group: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.io.get().join_multicast_v6(group, interface)
    }

    /// Leaves an IPv4 multicast group: see
    /// [`join_multicast_v4`](Self::join_multicast_v4).
    ///
    /// # Examples
    ///
    /// See [`join_multicast_v4`](Self::join_multicast_v4).
    pub fn leave_multicast_v4(&self, group: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.io.get().leave_multicast_v4(group, interface)
    }

    /// Leaves an IPv6 multicast group: see
    /// [`join_multicast_v6`](Self::join_multicast_v6).
    ///
    /// # Examples
    ///
    /// See [`join_multicast_v6`](Self::join_multicast_v6).
    pub fn leave_multicast_v6(&self, group: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.io.get().leave_multicast_v6(group, interface)
    }

    /// Sets the IP time-to-live (`IP_TTL`).
    ///
    /// # Examples
    ///
    /// ```
    /// let socket = stackful::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// socket.set_ttl(9).unwrap();
    /// assert_eq!(socket.ttl().unwrap(), 9);
    /// ```
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.get().set_ttl(ttl)
    }

    /// The IP time-to-live: see [`set_ttl`](Self::set_ttl).
    ///
    /// # Examples
    ///
    /// ```
    /// let socket = stackful::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert!(socket.ttl().unwrap() > 0);
    /// ```
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.get().ttl()
    }

    /// Takes the pending socket error (`SO_ERROR`), if any.
    ///
    /// # Examples
    ///
    /// ```
    /// let socket = stackful::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert!(socket.take_error().unwrap().is_none());
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.get().take_error()
    }

    /// Wraps a std socket, making it non-blocking underneath. Its read and
    /// write timeouts become this handle's.
    ///
    /// # Examples
    ///
    /// ```
    /// let std_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// let socket = stackful::net::UdpSocket::from_std(std_socket).unwrap();
    /// assert!(socket.local_addr().is_ok());
    /// ```
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        socket.set_nonblocking(true)?;
        let s = UdpSocket::wrap(socket);
        s.read_timeout.set(s.io.get().read_timeout()?)?;
        s.write_timeout.set(s.io.get().write_timeout()?)?;
        Ok(s)
    }

    /// Unwraps the std socket, blocking again, with this handle's timeouts
    /// set on it.
    ///
    /// Blocking mode belongs to the socket (the open file), which a clone
    /// made with [`try_clone`](UdpSocket::try_clone) shares: this clears
    /// it, since the std socket must block. A green clone still in use
    /// keeps waiting green all the same: every send, receive and peek passes
    /// `MSG_DONTWAIT` instead of relying on the socket's mode.
    ///
    /// # Examples
    ///
    /// ```
    /// let socket = stackful::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// let std_socket = socket.into_std().unwrap();
    /// assert!(std_socket.local_addr().is_ok());
    /// ```
    pub fn into_std(self) -> io::Result<std::net::UdpSocket> {
        let (read, write) = (self.read_timeout.get(), self.write_timeout.get());
        let socket = self.io.into_inner();
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(read)?;
        socket.set_write_timeout(write)?;
        Ok(socket)
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.io.get(), f)
    }
}

fd_traits!(UdpSocket, std::net::UdpSocket);
