//! Green Unix sockets: `stackful::net::unix`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::within;
use stackful::Runtime;
use stackful::net::unix::{UnixDatagram, UnixListener, UnixStream};
use stackful::net::{TcpListener, TcpStream};
use stackful::sync::Event;

/// A fresh socket path, removed when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> TempPath {
        let p =
            std::env::temp_dir().join(format!("stackful-test-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        TempPath(p)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn echo_over_a_listener_with_50_clients() {
    within(60, || {
        let path = TempPath::new("echo");
        let p = path.0.clone();
        stackful::run(move || {
            let listener = UnixListener::bind(&p).unwrap();
            let server = stackful::spawn(move || {
                let mut conns = Vec::new();
                for conn in listener.incoming().take(50) {
                    let conn = conn.unwrap();
                    conns.push(stackful::spawn(move || common::echo(conn, 32)));
                }
                for c in conns {
                    c.join().unwrap();
                }
            });
            let clients: Vec<_> = (0..50u8)
                .map(|i| {
                    let p = p.clone();
                    stackful::spawn(move || {
                        let mut s = UnixStream::connect(&p).unwrap();
                        for _ in 0..10 {
                            s.write_all(&[i; 32]).unwrap();
                            let mut back = [0; 32];
                            s.read_exact(&mut back).unwrap();
                            assert_eq!(back, [i; 32]);
                        }
                    })
                })
                .collect();
            for c in clients {
                c.join().unwrap();
            }
            server.join().unwrap();
        });
    });
}

#[test]
fn pair_split_read_write_and_shutdown_wakes_a_reader() {
    within(60, || {
        stackful::run(|| {
            let (a, b) = UnixStream::pair().unwrap();
            let a = Arc::new(a);
            let waiting = Arc::new(Event::new());
            let (r, w) = (a.clone(), waiting.clone());
            let reader = stackful::spawn(move || {
                w.set();
                let mut all = Vec::new();
                (&*r).read_to_end(&mut all).unwrap();
                all
            });
            waiting.wait();
            (&b).write_all(b"before shutdown").unwrap();
            stackful::sleep(Duration::from_millis(10));
            a.shutdown(Shutdown::Read).unwrap();
            let got = stackful::timeout(Duration::from_secs(10), || reader.join().unwrap())
                .expect("the shutdown did not wake the reader");
            // Whatever it read before the shutdown, it then saw the end.
            assert!(b"before shutdown".starts_with(&got), "{got:?}");
        })
    });
}

fn read_timeout_gives_timed_out() {
    let (mut a, _b) = UnixStream::pair().unwrap();
    a.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
    let t = Instant::now();
    assert_eq!(a.read(&mut [0; 4]).unwrap_err().kind(), ErrorKind::TimedOut);
    assert_eq!(a.peek(&mut [0; 4]).unwrap_err().kind(), ErrorKind::TimedOut);
    assert!(t.elapsed() >= Duration::from_millis(60));
    let (d, _e) = UnixDatagram::pair().unwrap();
    d.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
    assert_eq!(d.recv(&mut [0; 4]).unwrap_err().kind(), ErrorKind::TimedOut);
}

#[test]
fn read_timeout_is_timed_out_on_a_green_thread() {
    within(60, || stackful::run(read_timeout_gives_timed_out));
}

#[test]
fn read_timeout_is_timed_out_on_a_plain_thread() {
    within(60, read_timeout_gives_timed_out);
}

#[test]
fn datagrams_by_path_and_by_pair() {
    within(60, || {
        let path = TempPath::new("dgram");
        let p = path.0.clone();
        stackful::run(move || {
            let server = UnixDatagram::bind(&p).unwrap();
            let client = UnixDatagram::unbound().unwrap();
            let waiter = stackful::spawn(move || {
                let mut buf = [0; 16];
                let (n, _) = server.recv_from(&mut buf).unwrap(); // waits
                buf[..n].to_vec()
            });
            stackful::sleep(Duration::from_millis(10));
            client.send_to(b"by path", &p).unwrap();
            assert_eq!(waiter.join().unwrap(), b"by path");
            let (a, b) = UnixDatagram::pair().unwrap();
            a.send(b"one").unwrap();
            a.send(b"two").unwrap();
            let mut buf = [0; 8];
            assert_eq!(b.recv(&mut buf).unwrap(), 3);
            assert_eq!(&buf[..3], b"one");
            assert_eq!(b.recv(&mut buf).unwrap(), 3);
            assert_eq!(&buf[..3], b"two");
        });
    });
}

#[test]
fn connect_errors_match_std() {
    within(60, || {
        let missing = TempPath::new("missing");
        let e = stackful::run(|| UnixStream::connect(&missing.0).unwrap_err());
        let std_e = std::os::unix::net::UnixStream::connect(&missing.0).unwrap_err();
        assert_eq!(e.kind(), std_e.kind());
        assert_eq!(e.kind(), ErrorKind::NotFound);
        // A socket file nobody listens on.
        let stale = TempPath::new("stale");
        drop(std::os::unix::net::UnixListener::bind(&stale.0).unwrap());
        let e = stackful::run(|| UnixStream::connect(&stale.0).unwrap_err());
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
        let long = "x".repeat(200);
        assert_eq!(
            UnixStream::connect(&long).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            UnixStream::connect("a\0b").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    });
}

#[test]
fn sockets_work_on_plain_threads_and_convert() {
    within(60, || {
        let path = TempPath::new("plain");
        let listener = UnixListener::bind(&path.0).unwrap();
        let p = path.0.clone();
        let client = std::thread::spawn(move || {
            let mut s = UnixStream::connect(&p).unwrap();
            s.write_all(b"plain").unwrap();
        });
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = String::new();
        conn.read_to_string(&mut buf).unwrap();
        assert_eq!(buf, "plain");
        client.join().unwrap();
        assert!(format!("{listener:?}").contains("UnixListener"));
        assert!(format!("{conn:?}").contains("UnixStream"));
        let l = UnixListener::from_std(listener.into_std().unwrap()).unwrap();
        assert_eq!(
            l.local_addr().unwrap().as_pathname(),
            Some(path.0.as_path())
        );
        let (a, b) = UnixStream::pair().unwrap();
        a.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let a = UnixStream::from_std(a.into_std().unwrap()).unwrap();
        assert_eq!(a.write_timeout().unwrap(), Some(Duration::from_secs(2)));
        let a2 = a.try_clone().unwrap();
        (&a2).write_all(b"c").unwrap();
        let mut one = [0; 1];
        (&b).read_exact(&mut one).unwrap();
        assert_eq!(&one, b"c");
    });
}

/// `recv_from` names the sender as std does: by its path, by its abstract
/// name, or as unnamed; and an accepted connection's unbound peer is
/// unnamed.
fn sender_addresses_are_as_std(tag: &str) {
    use std::os::linux::net::SocketAddrExt;
    let server_path = TempPath::new(&format!("addr-server-{tag}"));
    let client_path = TempPath::new(&format!("addr-client-{tag}"));
    let server = UnixDatagram::bind(&server_path.0).unwrap();
    let mut buf = [0; 8];
    let by_path = UnixDatagram::bind(&client_path.0).unwrap();
    by_path.send_to(b"path", &server_path.0).unwrap();
    let (n, addr) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"path");
    assert_eq!(addr.as_pathname(), Some(client_path.0.as_path()));
    let unbound = UnixDatagram::unbound().unwrap();
    unbound.send_to(b"none", &server_path.0).unwrap();
    let (n, addr) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"none");
    assert!(addr.is_unnamed(), "{addr:?}");
    assert_eq!(addr.as_pathname(), None);
    let name = format!("stackful-test-{}-abstract-{tag}", std::process::id());
    let abstract_addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
    let by_name = std::os::unix::net::UnixDatagram::bind_addr(&abstract_addr).unwrap();
    by_name.send_to(b"name", &server_path.0).unwrap();
    let (n, addr) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"name");
    assert_eq!(addr.as_abstract_name(), Some(name.as_bytes()));
    // The bad path of a send fails before anything is sent or waited for.
    assert_eq!(
        unbound.send_to(b"x", "a\0b").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        unbound.send_to(b"x", "x".repeat(200)).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let listener_path = TempPath::new(&format!("addr-listener-{tag}"));
    let listener = UnixListener::bind(&listener_path.0).unwrap();
    let _client = UnixStream::connect(&listener_path.0).unwrap();
    let (_conn, peer) = listener.accept().unwrap();
    assert!(peer.is_unnamed(), "{peer:?}");
}

#[test]
fn sender_addresses_are_as_std_on_a_green_thread() {
    within(60, || {
        stackful::run(|| sender_addresses_are_as_std("green"))
    });
}

#[test]
fn sender_addresses_are_as_std_on_a_plain_thread() {
    within(60, || sender_addresses_are_as_std("plain"));
}

// Green operations never block their worker, even on a descriptor whose
// `O_NONBLOCK` flag someone else cleared (through `fcntl`, or an `into_std`
// of a clone): they pass `MSG_DONTWAIT` per call. Accepted sockets come
// non-blocking and close-on-exec from `accept4`.

/// How long the test waits for the other green thread to report before it
/// takes the worker for blocked (generous: the machine is shared).
const PATIENCE: Duration = Duration::from_secs(20);

/// The descriptor's status flags.
fn flags(fd: RawFd) -> libc::c_int {
    // SAFETY: fcntl on an open descriptor; no pointers.
    let f = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(f >= 0, "F_GETFL: {}", std::io::Error::last_os_error());
    f
}

/// Clears `O_NONBLOCK`, as another crate holding the descriptor might.
fn make_blocking(fd: RawFd) {
    let f = flags(fd);
    // SAFETY: as above.
    let r = unsafe { libc::fcntl(fd, libc::F_SETFL, f & !libc::O_NONBLOCK) };
    assert_eq!(r, 0, "F_SETFL: {}", std::io::Error::last_os_error());
    assert_eq!(flags(fd) & libc::O_NONBLOCK, 0);
}

/// Runs `op` on a green thread of a one-worker runtime, once it has started
/// (and, if it waits, while it waits) another green thread on that worker
/// reports progress and then runs `unblock`, which lets `op` finish. Fails
/// if the report does not come: `op` blocked the worker. `rescue`, run on
/// this plain thread then, unblocks `op` so that the test ends.
fn keeps_worker_free<T: Send + 'static>(
    op: impl FnOnce() -> T + Send + 'static,
    unblock: impl FnOnce() + Send + 'static,
    rescue: impl FnOnce(),
) -> T {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let started = Arc::new(Event::new());
    let (progress, reported) = mpsc::channel();
    let op = rt.spawn({
        let started = started.clone();
        move || {
            started.set(); // the other may run from here on, if this waits
            op()
        }
    });
    let other = rt.spawn(move || {
        started.wait();
        progress.send(()).unwrap();
        unblock();
    });
    if reported.recv_timeout(PATIENCE).is_err() {
        rescue();
        panic!("the other green thread never ran: the operation blocked the worker");
    }
    other.join().unwrap();
    op.join().unwrap()
}

#[test]
fn recv_from_on_a_socket_made_blocking_leaves_the_worker_to_others() {
    within(120, || {
        let (server_path, client_path) = (TempPath::new("rf-server"), TempPath::new("rf-client"));
        let server = UnixDatagram::bind(&server_path.0).unwrap();
        make_blocking(server.as_raw_fd());
        let rescuer = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let (to, from) = (server_path.0.clone(), client_path.0.clone());
        let (n, sender, buf) = keeps_worker_free(
            move || {
                let mut buf = [0; 16];
                let (n, addr) = server.recv_from(&mut buf).unwrap();
                (n, addr.as_pathname().map(PathBuf::from), buf)
            },
            move || {
                let client = UnixDatagram::bind(&from).unwrap();
                client.send_to(b"green", &to).unwrap();
            },
            || {
                rescuer.send_to(b"rescue", &server_path.0).unwrap();
            },
        );
        assert_eq!(&buf[..n], b"green");
        assert_eq!(sender, Some(client_path.0.clone()));
    });
}

#[test]
fn send_to_a_full_receiver_on_a_socket_made_blocking_leaves_the_worker_to_others() {
    within(120, || {
        let path = TempPath::new("st-full");
        let receiver = std::os::unix::net::UnixDatagram::bind(&path.0).unwrap();
        let rescuer = receiver.try_clone().unwrap();
        let receiver = UnixDatagram::from_std(receiver).unwrap();
        let sender = UnixDatagram::unbound().unwrap();
        // Fill the receiver's queue: sends fail with EAGAIN once it is full.
        let (addr, len) = sockaddr_un(&path.0);
        let mut queued = 0;
        loop {
            // SAFETY: a live buffer and a valid address of `len` bytes.
            let r = unsafe {
                libc::sendto(
                    sender.as_raw_fd(),
                    b"fill".as_ptr().cast(),
                    4,
                    libc::MSG_DONTWAIT,
                    (&addr as *const libc::sockaddr_un).cast(),
                    len,
                )
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
                break;
            }
            queued += 1;
            assert!(queued < 100_000, "the receiver's queue never filled");
        }
        make_blocking(sender.as_raw_fd());
        let to = path.0.clone();
        let n = keeps_worker_free(
            move || sender.send_to(b"last", &to).unwrap(),
            move || {
                // Room for one more: the sender's wait ends.
                let mut buf = [0; 8];
                assert_eq!(receiver.recv(&mut buf).unwrap(), 4);
            },
            || {
                let mut buf = [0; 8];
                rescuer.recv(&mut buf).unwrap();
            },
        );
        assert_eq!(n, 4);
        // All the fill but the one taken, then the last one.
        rescuer.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 8];
        while let Ok(n) = rescuer.recv(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        assert_eq!(got.len(), queued);
        assert_eq!(got.last().map(Vec::as_slice), Some(&b"last"[..]));
    });
}

/// `path` as a `sockaddr_un` for the raw `sendto` that fills a queue.
fn sockaddr_un(path: &std::path::Path) -> (libc::sockaddr_un, libc::socklen_t) {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: all zeroes is a valid sockaddr_un.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    assert!(bytes.len() < addr.sun_path.len());
    for (d, &s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = s as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    (addr, len as libc::socklen_t)
}

#[test]
fn recv_from_with_a_timeout_on_a_socket_made_blocking_times_out_on_a_plain_thread() {
    within(60, || {
        let (a, _b) = UnixDatagram::pair().unwrap();
        make_blocking(a.as_raw_fd());
        a.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
        let t = Instant::now();
        let e = a.recv_from(&mut [0; 4]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(30));
    });
}

#[test]
fn accepted_sockets_are_non_blocking_and_close_on_exec() {
    fn check(fd: RawFd) {
        assert_ne!(flags(fd) & libc::O_NONBLOCK, 0, "not non-blocking");
        // SAFETY: fcntl on an open descriptor; no pointers.
        let fd_flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert_ne!(fd_flags & libc::FD_CLOEXEC, 0, "not close-on-exec");
    }
    within(60, || {
        let path = TempPath::new("accept");
        let p = path.0.clone();
        stackful::run(move || {
            let listener = UnixListener::bind(&p).unwrap();
            let _client = UnixStream::connect(&p).unwrap();
            let (conn, peer) = listener.accept().unwrap();
            check(conn.as_raw_fd());
            assert!(peer.is_unnamed(), "{peer:?}");
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (conn, peer) = listener.accept().unwrap();
            check(conn.as_raw_fd());
            assert_eq!(peer, client.local_addr().unwrap());
        });
        // On a plain thread too.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (conn, peer) = listener.accept().unwrap();
        check(conn.as_raw_fd());
        assert_eq!(peer, client.local_addr().unwrap());
    });
}
