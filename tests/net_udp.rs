//! Green UDP: `stackful::net::UdpSocket`.

mod common;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::within;
use stackful::net::UdpSocket;

fn bound() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

#[test]
fn many_green_threads_exchange_datagrams_with_one_server() {
    within(60, || {
        stackful::run(|| {
            let (server, addr) = bound();
            let server = Arc::new(server);
            let srv = server.clone();
            // The server waits for datagrams and echoes them.
            let echo = stackful::spawn(move || {
                let mut buf = [0; 64];
                for _ in 0..100 * 10 {
                    let (n, from) = srv.recv_from(&mut buf).unwrap();
                    srv.send_to(&buf[..n], from).unwrap();
                }
            });
            let clients: Vec<_> = (0..100u32)
                .map(|i| {
                    stackful::spawn(move || {
                        let (s, _) = bound();
                        s.connect(addr).unwrap();
                        for round in 0..10u32 {
                            let msg = (i * 100 + round).to_be_bytes();
                            s.send(&msg).unwrap();
                            let mut back = [0; 8];
                            let n = s.recv(&mut back).unwrap();
                            assert_eq!(&back[..n], &msg);
                        }
                    })
                })
                .collect();
            for c in clients {
                c.join().unwrap();
            }
            echo.join().unwrap();
        })
    });
}

fn recv_timeout_gives_timed_out() {
    let (s, _) = bound();
    s.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
    let t = Instant::now();
    assert_eq!(s.recv(&mut [0; 8]).unwrap_err().kind(), ErrorKind::TimedOut);
    assert_eq!(
        s.recv_from(&mut [0; 8]).unwrap_err().kind(),
        ErrorKind::TimedOut
    );
    assert_eq!(
        s.peek_from(&mut [0; 8]).unwrap_err().kind(),
        ErrorKind::TimedOut
    );
    assert!(t.elapsed() >= Duration::from_millis(90));
    assert_eq!(
        s.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn recv_timeout_is_timed_out_on_a_green_thread() {
    within(60, || stackful::run(recv_timeout_gives_timed_out));
}

#[test]
fn recv_timeout_is_timed_out_on_a_plain_thread() {
    within(60, recv_timeout_gives_timed_out);
}

#[test]
fn recv_works_under_timeout_and_after_it() {
    within(60, || {
        stackful::run(|| {
            let (a, a_addr) = bound();
            let (b, _) = bound();
            let r = stackful::timeout(Duration::from_millis(20), || a.recv(&mut [0; 8]));
            assert!(r.is_err());
            b.send_to(b"now", a_addr).unwrap();
            let mut buf = [0; 8];
            let (n, from) = a.peek_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"now"[..], b.local_addr().unwrap()));
            let (n, _) = a.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"now");
        })
    });
}

#[test]
fn a_waiting_recv_is_woken_by_a_datagram_from_a_plain_thread() {
    within(60, || {
        stackful::run(|| {
            let (a, a_addr) = bound();
            let sender = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                let (b, _) = bound();
                b.send_to(b"wake", a_addr).unwrap();
            });
            let mut buf = [0; 8];
            let n = a.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"wake");
            sender.join().unwrap();
        })
    });
}

#[test]
fn options_conversions_and_bad_input() {
    stackful::run(|| {
        let (s, addr) = bound();
        assert!(s.peer_addr().is_err());
        s.set_broadcast(true).unwrap();
        assert!(s.broadcast().unwrap());
        s.set_multicast_loop_v4(false).unwrap();
        assert!(!s.multicast_loop_v4().unwrap());
        s.set_multicast_ttl_v4(7).unwrap();
        assert_eq!(s.multicast_ttl_v4().unwrap(), 7);
        s.set_ttl(21).unwrap();
        assert_eq!(s.ttl().unwrap(), 21);
        assert!(s.take_error().unwrap().is_none());
        s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
        assert!(format!("{s:?}").contains("UdpSocket"));
        let c = s.try_clone().unwrap();
        assert_eq!(c.write_timeout().unwrap(), Some(Duration::from_secs(1)));
        let std_s = s.into_std().unwrap();
        assert_eq!(std_s.write_timeout().unwrap(), Some(Duration::from_secs(1)));
        let s = UdpSocket::from_std(std_s).unwrap();
        assert_eq!(s.local_addr().unwrap(), addr);
        let none: &[SocketAddr] = &[];
        assert_eq!(
            s.send_to(b"x", none).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert!(UdpSocket::bind("nonsense").is_err());
        // A name resolves on the blocking pool.
        let t = UdpSocket::bind(("localhost", 0)).unwrap();
        s.send_to(b"named", ("localhost", t.local_addr().unwrap().port()))
            .ok(); // localhost may resolve to ::1 first: best effort
    });
}
