//! Green Unix sockets: `stackful::net::unix`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::within;
use stackful::net::unix::{UnixDatagram, UnixListener, UnixStream};
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
                    let mut conn = conn.unwrap();
                    conns.push(stackful::spawn(move || {
                        let mut buf = [0; 32];
                        loop {
                            let n = conn.read(&mut buf).unwrap();
                            if n == 0 {
                                return;
                            }
                            conn.write_all(&buf[..n]).unwrap();
                        }
                    }));
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
