//! The types mirror [`std::net`], and [`unix`](crate::net::unix) mirrors
//! [`std::os::unix::net`].
//!
//! Code written for `std::net` ports by changing the import: a read, write,
//! accept or connect that would block parks the green thread, and its
//! worker runs the others meanwhile. The types implement
//! [`std::io::Read`] and [`std::io::Write`], so code written for them
//! (a `BufReader`, a TLS library, a protocol parser) runs unchanged.
//!
//! Underneath, every socket is non-blocking and registered, edge-triggered,
//! with the epoll reactor of the worker it waits on; a socket may move to
//! another worker (the types are `Send`) and keeps working.
//!
//! # Outside green threads
//!
//! On a plain OS thread (or a [`spawn_blocking`](crate::spawn_blocking)
//! job) the same types block the thread as std's do, in `poll(2)`.
//!
//! # Differences from `std::net`
//!
//! - An expired read or write timeout fails with
//!   [`ErrorKind::TimedOut`](std::io::ErrorKind::TimedOut) on green and
//!   plain threads alike, where std gives `WouldBlock` (or `TimedOut`,
//!   depending on the platform). Timeouts belong to the handle: a
//!   `try_clone` copies them, and later changes to one handle do not
//!   affect the other.
//! - Addresses are taken through this module's [`ToSocketAddrs`](crate::net::ToSocketAddrs), which
//!   is implemented for the same types as std's. An IP literal resolves
//!   on the spot; a host name resolves on the blocking pool, so a slow DNS
//!   server never stalls a worker.
//! - Every wait is a cancellation point: it works under
//!   [`stackful::timeout`](crate::timeout) and a cancelled green thread
//!   unwinds out of it. A read cancelled while it waits has consumed
//!   nothing. A cancelled `write` has written nothing, or returned before
//!   the cancellation was seen. A cancelled `write_all` leaves a prefix of
//!   the buffer on the wire (the writes that completed), with no way to tell
//!   how long: treat the connection as unusable.
//!
//! # Many connections
//!
//! Each connection usually gets its own green thread. Each socket is a file
//! descriptor: raise the limit (`ulimit -n`) for many connections.
//!
//! A green thread's memory is the pages of stack it touches, not its stack
//! size: the default 256 KiB is address space, and a connection whose
//! deepest frames fit in one 4 KiB page costs one page. A 4 KiB read
//! buffer on the stack makes it two, with the frames around it. Measured
//! with 10 000 echo connections on 2 workers (the benchmark comparison's
//! echo table): 50 MiB peak RSS with a 2 KiB buffer on the stack, 89 MiB
//! with a 4 KiB one (tokio's server: 51 MiB with 4 KiB). So for many
//! connections, read into a buffer of 2 KiB or less, or into one shared by
//! a worker's connections, and keep large values off the stack. A function
//! whose branches each hold their own buffer may reserve all of them in
//! one frame: put each in a function of its own (`#[inline(never)]`). A
//! smaller [`stack_size`](crate::task::Builder::stack_size) reserves less
//! address space but touches no fewer pages; the number of live stacks is
//! bounded by `vm.max_map_count` whatever their size (see
//! [`MapLimit`](crate::stack::MapLimit)).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::{Duration, Instant};

/// The raw-descriptor traits for a socket type `$t` wrapping `$std` in
/// `io`, with a `wrap` constructor for a non-blocking `$std`.
macro_rules! fd_traits {
    ($t:ident, $std:ty) => {
        impl std::os::fd::AsRawFd for $t {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(self.io.get())
            }
        }

        impl std::os::fd::AsFd for $t {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                std::os::fd::AsFd::as_fd(self.io.get())
            }
        }

        impl std::os::fd::FromRawFd for $t {
            /// Takes ownership of `fd`, which must be an open socket of
            /// this kind, and makes it non-blocking.
            unsafe fn from_raw_fd(fd: std::os::fd::RawFd) -> $t {
                // SAFETY: the caller passes an open descriptor it owns.
                let inner = unsafe { <$std as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                // Fails only for a bad descriptor, which every later
                // operation then reports.
                let _ = inner.set_nonblocking(true);
                $t::wrap(inner)
            }
        }

        impl std::os::fd::IntoRawFd for $t {
            /// Gives the descriptor up, deregistered and blocking again.
            fn into_raw_fd(self) -> std::os::fd::RawFd {
                let inner = self.io.into_inner();
                let _ = inner.set_nonblocking(false);
                std::os::fd::IntoRawFd::into_raw_fd(inner)
            }
        }
    };
}

mod tcp;
mod udp;
pub mod unix;

pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;

mod sealed {
    use std::io;
    use std::net::SocketAddr;

    /// How an address resolves: on the spot, or by a lookup to run on the
    /// blocking pool.
    pub enum Resolution {
        Done(io::Result<Vec<SocketAddr>>),
        Lookup(Box<dyn FnOnce() -> io::Result<Vec<SocketAddr>> + Send>),
    }

    pub trait Sealed {
        fn resolution(&self) -> Resolution;
    }
}

use sealed::Resolution;

/// The most buffers one vectored call takes (Linux's `IOV_MAX`); more are
/// left for the next call, as std does.
pub(crate) const IOV_MAX: usize = 1024;

/// Values that name one or more socket addresses: this module's
/// counterpart of [`std::net::ToSocketAddrs`], implemented for the same
/// types (`SocketAddr`, `(IpAddr, u16)`, `"host:port"`, `("host", port)`,
/// `&[SocketAddr]`, and references to them).
///
/// An IP literal resolves without leaving the green thread; a host name is
/// looked up (`getaddrinfo`) on the runtime's blocking pool, suspending
/// only the calling green thread. A lookup that has started runs to its
/// end: a `stackful::timeout` or a cancellation takes effect when it
/// returns. On a plain OS thread the lookup runs on the caller. The trait
/// is sealed: it cannot be implemented outside this crate.
///
/// # Examples
///
/// ```
/// use stackful::net::TcpListener;
///
/// stackful::run(|| {
///     // A literal: no lookup.
///     let a = TcpListener::bind("127.0.0.1:0").unwrap();
///     // A name: looked up on the blocking pool.
///     let b = TcpListener::bind(("localhost", 0)).unwrap();
///     assert!(a.local_addr().unwrap().ip().is_loopback());
///     assert!(b.local_addr().unwrap().ip().is_loopback());
/// });
/// ```
pub trait ToSocketAddrs: sealed::Sealed {}

fn done(addr: SocketAddr) -> Resolution {
    Resolution::Done(Ok(vec![addr]))
}

fn lookup<A: std::net::ToSocketAddrs + Send + 'static>(a: A) -> Resolution {
    Resolution::Lookup(Box::new(move || {
        a.to_socket_addrs().map(|addrs| addrs.collect())
    }))
}

macro_rules! literal {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {
            fn resolution(&self) -> Resolution {
                done(SocketAddr::from(*self))
            }
        }
        impl ToSocketAddrs for $t {}
    )*};
}

literal!(
    SocketAddr,
    SocketAddrV4,
    SocketAddrV6,
    (IpAddr, u16),
    (Ipv4Addr, u16),
    (Ipv6Addr, u16)
);

impl sealed::Sealed for str {
    fn resolution(&self) -> Resolution {
        match self.parse::<SocketAddr>() {
            Ok(addr) => done(addr),
            Err(_) => lookup(self.to_owned()),
        }
    }
}
impl ToSocketAddrs for str {}

impl sealed::Sealed for String {
    fn resolution(&self) -> Resolution {
        self.as_str().resolution()
    }
}
impl ToSocketAddrs for String {}

impl sealed::Sealed for (&str, u16) {
    fn resolution(&self) -> Resolution {
        let (host, port) = *self;
        match host.parse::<IpAddr>() {
            Ok(ip) => done(SocketAddr::new(ip, port)),
            Err(_) => lookup((host.to_owned(), port)),
        }
    }
}
impl ToSocketAddrs for (&str, u16) {}

impl sealed::Sealed for (String, u16) {
    fn resolution(&self) -> Resolution {
        (self.0.as_str(), self.1).resolution()
    }
}
impl ToSocketAddrs for (String, u16) {}

impl sealed::Sealed for [SocketAddr] {
    fn resolution(&self) -> Resolution {
        Resolution::Done(Ok(self.to_vec()))
    }
}
impl ToSocketAddrs for [SocketAddr] {}

impl<T: ToSocketAddrs + ?Sized> sealed::Sealed for &T {
    fn resolution(&self) -> Resolution {
        (**self).resolution()
    }
}
impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}

/// Resolves `addr`: on the spot for a literal, else on the blocking pool
/// (on the caller outside green threads).
pub(crate) fn resolve<A: ToSocketAddrs + ?Sized>(addr: &A) -> io::Result<Vec<SocketAddr>> {
    match addr.resolution() {
        Resolution::Done(r) => r,
        Resolution::Lookup(job) => crate::spawn_blocking(job),
    }
}

/// The error std gives for an address list that resolved to nothing.
fn no_addresses() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "could not resolve to any addresses",
    )
}

/// Tries `f` on each address of `addr` in turn, returning the first
/// success or the last error, as std does.
pub(crate) fn each_addr<A: ToSocketAddrs + ?Sized, R>(
    addr: &A,
    mut f: impl FnMut(&SocketAddr) -> io::Result<R>,
) -> io::Result<R> {
    let mut last = None;
    for a in resolve(addr)? {
        match f(&a) {
            Ok(r) => return Ok(r),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(no_addresses))
}

/// How long an `accept` that found the process out of file descriptors
/// waits before it returns the error, so that a server loop that goes on
/// accepting does not spin a core while connections are refused.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// After a failed `accept`: backs off if the process (or the system) is out
/// of file descriptors, saying so once in debug mode. A cancellation point.
pub(crate) fn accept_failed(e: &io::Error) {
    if !matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
        return;
    }
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if crate::debug::enabled() && !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        crate::debug::warn(format_args!(
            "accept failed: the process is out of file descriptors ({e}); pending \
             connections wait and open ones are served on; raise the limit (`ulimit -n`) \
             or close connections (said once)"
        ));
    }
    crate::sleep(ACCEPT_BACKOFF);
}

/// A per-handle read or write timeout, as nanoseconds (0: none).
#[derive(Default)]
pub(crate) struct Timeout(std::sync::atomic::AtomicU64);

impl Timeout {
    pub(crate) fn set(&self, t: Option<Duration>) -> io::Result<()> {
        let nanos = match t {
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot set a 0 duration timeout; pass `None` for no timeout",
                ));
            }
            Some(d) => u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            None => 0,
        };
        self.0.store(nanos, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn get(&self) -> Option<Duration> {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// The deadline of an operation starting now.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.get().and_then(|d| Instant::now().checked_add(d))
    }

    pub(crate) fn copy(&self) -> Timeout {
        Timeout(std::sync::atomic::AtomicU64::new(
            self.0.load(std::sync::atomic::Ordering::Relaxed),
        ))
    }
}

/// Converts an address for the C socket calls.
pub(crate) fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is a plain C struct for which all zeroes is
    // a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for every
            // socket address type, sockaddr_in included.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Reads an integer socket option.
pub(crate) fn getsockopt<T: Copy>(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    init: T,
) -> io::Result<T> {
    let mut value = init;
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live, writable T of `len` bytes; the kernel
    // writes at most `len` bytes. Callers pass option types matching `T`.
    let r = unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut T).cast(), &mut len) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// Sets a socket option.
pub(crate) fn setsockopt<T: Copy>(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: T,
) -> io::Result<()> {
    // SAFETY: `value` is a live T; the kernel reads `size_of::<T>()` bytes.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// Green operations pass `MSG_DONTWAIT` on every call instead of relying on
// the socket's `O_NONBLOCK`, which belongs to the open file and so to
// every duplicate: an `into_std` of one handle clears it (a std handle
// must block) while a `try_clone` of it may still be used green, and a
// descriptor taken with `from_raw_fd` may have it cleared by whoever else
// holds it. The flag costs nothing (the same system call, one more bit).
// `accept` has no such flag: it still relies on the listener's
// `O_NONBLOCK` (`accept4`'s flags are the new socket's), so an accepted
// socket is non-blocking and close-on-exec from the start. A `connect`
// makes its own socket, which nothing else holds while it waits.

/// The count a system call returned, or its error (`errno`) if negative.
pub(crate) fn cvt_len(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `accept4(2)` on the listener `fd`: the new connection, non-blocking and
/// close-on-exec from the start, and the length of the peer's address,
/// which the kernel wrote to `addr`, a socket address type (`sockaddr_in`,
/// `sockaddr_un`, `sockaddr_storage`).
fn accept<A: Copy>(
    fd: std::os::fd::RawFd,
    addr: &mut A,
) -> io::Result<(std::os::fd::OwnedFd, libc::socklen_t)> {
    let mut len = std::mem::size_of::<A>() as libc::socklen_t;
    // SAFETY: `addr` is live and writable for `len` bytes; the kernel
    // writes at most that many, and `len` back.
    let r = unsafe {
        libc::accept4(
            fd,
            (addr as *mut A).cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `r` is the new descriptor, which nothing else owns.
    Ok((unsafe { std::os::fd::FromRawFd::from_raw_fd(r) }, len))
}

/// `recv(2)` with `MSG_DONTWAIT` and `flags`.
pub(crate) fn recv(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<usize> {
    // SAFETY: `buf` is live and writable for `buf.len()` bytes; the kernel
    // writes at most that many.
    cvt_len(unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags | libc::MSG_DONTWAIT,
        )
    })
}

/// `send(2)` with `MSG_DONTWAIT | MSG_NOSIGNAL` (a closed peer is `EPIPE`,
/// never `SIGPIPE`, as std's `TcpStream`).
pub(crate) fn send(fd: std::os::fd::RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is live and readable for `buf.len()` bytes.
    cvt_len(unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    })
}

/// `recvmsg(2)` into `bufs` with `MSG_DONTWAIT`.
pub(crate) fn recv_vectored(
    fd: std::os::fd::RawFd,
    bufs: &mut [std::io::IoSliceMut<'_>],
) -> io::Result<usize> {
    // SAFETY: all zeroes is a valid msghdr (no address, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = bufs.as_mut_ptr().cast();
    msg.msg_iovlen = bufs.len().min(IOV_MAX) as _;
    // SAFETY: `IoSliceMut` is ABI-compatible with `iovec` on Unix (std
    // guarantees it), every slice is live and writable, and `msg` points
    // at nothing else.
    cvt_len(unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) })
}

/// `sendmsg(2)` of `bufs` with `MSG_DONTWAIT | MSG_NOSIGNAL`.
pub(crate) fn send_vectored(
    fd: std::os::fd::RawFd,
    bufs: &[std::io::IoSlice<'_>],
) -> io::Result<usize> {
    // SAFETY: all zeroes is a valid msghdr (no address, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = bufs.as_ptr().cast_mut().cast();
    msg.msg_iovlen = bufs.len().min(IOV_MAX) as _;
    // SAFETY: `IoSlice` is ABI-compatible with `iovec`; the kernel only
    // reads the slices, which are live.
    cvt_len(unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) })
}

/// `sendto(2)` with `MSG_DONTWAIT | MSG_NOSIGNAL`.
pub(crate) fn send_to(fd: std::os::fd::RawFd, buf: &[u8], addr: &SocketAddr) -> io::Result<usize> {
    let (storage, len) = sockaddr(addr);
    // SAFETY: `buf` is live and readable; `storage` holds a valid address
    // of `len` bytes.
    cvt_len(unsafe {
        libc::sendto(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    })
}

/// `recvfrom(2)` with `MSG_DONTWAIT` and `flags`, for an IP socket.
pub(crate) fn recv_from(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<(usize, SocketAddr)> {
    // SAFETY: all zeroes is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `buf` is live and writable; the kernel writes at most `len`
    // bytes of address into `storage`, which has that many.
    let n = cvt_len(unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags | libc::MSG_DONTWAIT,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    Ok((n, from_sockaddr(&storage)?))
}

/// The IP address in `storage`.
fn from_sockaddr(storage: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says it holds a sockaddr_in, for which
            // sockaddr_storage is large and aligned enough.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Ok(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the sender's address is not an IP address",
        )),
    }
}
