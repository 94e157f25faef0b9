//! Green TCP: `stackful::net::{TcpListener, TcpStream}`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::within;
use stackful::net::{TcpListener, TcpStream};
use stackful::sync::Event;

/// A listener on a free loopback port, and its address.
fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// A connected pair: (client, server side).
fn pair() -> (TcpStream, TcpStream) {
    let (l, addr) = listener();
    let c = TcpStream::connect(addr).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

/// A port where nothing listens (bound, then closed).
fn dead_port() -> SocketAddr {
    let (l, addr) = listener();
    drop(l);
    addr
}

#[test]
fn echo_with_200_concurrent_clients() {
    within(120, || {
        stackful::run(|| {
            let (l, addr) = listener();
            let server = stackful::spawn(move || {
                let mut conns = Vec::new();
                for _ in 0..200 {
                    let (s, _) = l.accept().unwrap();
                    conns.push(stackful::spawn(move || common::echo(s, 64)));
                }
                for c in conns {
                    c.join().unwrap();
                }
            });
            let clients: Vec<_> = (0..200u32)
                .map(|i| {
                    stackful::spawn(move || {
                        let mut s = TcpStream::connect(addr).unwrap();
                        for round in 0..20u32 {
                            let msg = [(i + round) as u8; 64];
                            s.write_all(&msg).unwrap();
                            let mut back = [0; 64];
                            s.read_exact(&mut back).unwrap();
                            assert_eq!(back, msg, "client {i} round {round}");
                        }
                    })
                })
                .collect();
            for c in clients {
                c.join().unwrap();
            }
            server.join().unwrap();
        })
    });
}

#[test]
fn one_green_thread_reads_while_another_writes_the_same_socket() {
    within(60, || {
        stackful::run(|| {
            let (c, s) = pair();
            let c = Arc::new(c);
            // The peer echoes everything back.
            let echo = stackful::spawn(move || common::echo(s, 1024));
            const TOTAL: usize = 1 << 20;
            // The reader starts first and waits on the socket while the
            // writer (sharing it by reference) sends.
            let r = c.clone();
            let reader = stackful::spawn(move || {
                let mut got = Vec::with_capacity(TOTAL);
                let mut buf = [0; 4096];
                while got.len() < TOTAL {
                    let n = (&*r).read(&mut buf).unwrap();
                    assert_ne!(n, 0, "early end of stream");
                    got.extend_from_slice(&buf[..n]);
                }
                got
            });
            let w = c.try_clone().unwrap();
            let writer = stackful::spawn(move || {
                let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
                (&w).write_all(&data).unwrap();
            });
            writer.join().unwrap();
            let got = reader.join().unwrap();
            assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
            c.shutdown(Shutdown::Write).unwrap();
            echo.join().unwrap();
        })
    });
}

#[test]
fn read_and_accept_work_under_timeout() {
    within(60, || {
        stackful::run(|| {
            let (l, addr) = listener();
            let t = Instant::now();
            let r = stackful::timeout(Duration::from_millis(50), || l.accept());
            assert!(r.is_err(), "accept with no client returned {r:?}");
            assert!(t.elapsed() >= Duration::from_millis(50));
            // The listener still works after the cancelled wait.
            let mut c = TcpStream::connect(addr).unwrap();
            let (mut s, _) =
                stackful::timeout(Duration::from_secs(10), || l.accept().unwrap()).unwrap();
            let t = Instant::now();
            let r = stackful::timeout(Duration::from_millis(50), || s.read(&mut [0; 8]));
            assert!(r.is_err(), "read with no data returned {r:?}");
            assert!(t.elapsed() >= Duration::from_millis(50));
            c.write_all(b"late").unwrap();
            let mut buf = [0; 4];
            stackful::timeout(Duration::from_secs(10), || s.read_exact(&mut buf).unwrap()).unwrap();
            assert_eq!(&buf, b"late");
        })
    });
}

fn read_timeout_gives_timed_out() {
    let (c, mut s) = pair();
    s.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
    assert_eq!(s.read_timeout().unwrap(), Some(Duration::from_millis(30)));
    let t = Instant::now();
    let e = s.read(&mut [0; 8]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(30), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    // Data that is there is read despite the timeout, and the peek too.
    (&c).write_all(b"ok").unwrap();
    let mut buf = [0; 2];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ok");
    let e = s.peek(&mut [0; 8]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    // A zero timeout is refused, as by std.
    let e = s.set_read_timeout(Some(Duration::ZERO)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    s.set_read_timeout(None).unwrap();
    assert_eq!(s.read_timeout().unwrap(), None);
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
fn write_timeout_gives_timed_out_when_the_peer_does_not_read() {
    within(60, || {
        stackful::run(|| {
            let (c, _s) = pair();
            c.set_write_timeout(Some(Duration::from_millis(30)))
                .unwrap();
            let chunk = vec![7u8; 1 << 16];
            let t = Instant::now();
            let e = loop {
                if let Err(e) = (&c).write(&chunk) {
                    break e;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(20),
                    "the buffers never filled"
                );
            };
            assert_eq!(e.kind(), ErrorKind::TimedOut);
        })
    });
}

#[test]
fn a_read_cancelled_while_it_waits_loses_no_bytes() {
    within(60, || {
        stackful::run(|| {
            let (mut c, s) = pair();
            const TOTAL: usize = 20_000;
            let writer = stackful::spawn(move || {
                let data: Vec<u8> = (0..TOTAL).map(|i| (i % 253) as u8).collect();
                for chunk in data.chunks(997) {
                    c.write_all(chunk).unwrap();
                    stackful::sleep(Duration::from_micros(300));
                }
            });
            let mut got = Vec::new();
            let mut buf = [0; 512];
            let mut cancelled = 0;
            while got.len() < TOTAL {
                // Very short timeouts: most reads are cut off while they wait.
                match stackful::timeout(Duration::from_micros(100), || (&s).read(&mut buf)) {
                    Ok(n) => got.extend_from_slice(&buf[..n.unwrap()]),
                    Err(_) => cancelled += 1,
                }
            }
            writer.join().unwrap();
            assert!(
                cancelled > 0,
                "no read was cancelled: the test proved nothing"
            );
            assert_eq!(got.len(), TOTAL);
            assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8));
        })
    });
}

#[test]
fn shutdown_by_one_green_thread_wakes_a_reader_of_the_same_socket() {
    within(60, || {
        stackful::run(|| {
            let (c, _s) = pair();
            let c = Arc::new(c);
            let waiting = Arc::new(Event::new());
            let (r, w) = (c.clone(), waiting.clone());
            let reader = stackful::spawn(move || {
                w.set();
                (&*r).read(&mut [0; 8])
            });
            waiting.wait();
            stackful::sleep(Duration::from_millis(20)); // let it park in the read
            c.shutdown(Shutdown::Both).unwrap();
            let r = stackful::timeout(Duration::from_secs(10), || reader.join().unwrap())
                .expect("the reader was not woken by the shutdown");
            assert_eq!(r.unwrap(), 0);
            // A write after the shutdown is an error, as with std.
            assert!((&*c).write(b"x").is_err());
        })
    });
}

#[test]
fn a_clone_dropped_while_another_handle_waits_leaves_that_wait_working() {
    // Defined behaviour: each handle is its own descriptor; dropping one
    // closes only it, so a wait on another goes on and ends normally.
    within(60, || {
        stackful::run(|| {
            let (c, mut s) = pair();
            let clone = c.try_clone().unwrap();
            let waiting = Arc::new(Event::new());
            let w = waiting.clone();
            let reader = stackful::spawn(move || {
                let mut c = c;
                w.set();
                let mut buf = [0; 5];
                c.read_exact(&mut buf).map(|_| buf)
            });
            waiting.wait();
            stackful::sleep(Duration::from_millis(10));
            drop(clone);
            s.write_all(b"after").unwrap();
            let got = stackful::timeout(Duration::from_secs(10), || reader.join().unwrap())
                .expect("the reader hung");
            assert_eq!(&got.unwrap(), b"after");
        })
    });
}

#[test]
fn a_socket_dropped_by_a_cancelled_waiter_gets_events_harmlessly() {
    // A green thread waits in a read, is cancelled, and its stream drops as
    // it unwinds; the peer then writes and closes. The event (or none)
    // must find nothing freed, and the runtime goes on.
    within(60, || {
        stackful::run(|| {
            for _ in 0..50 {
                let (c, mut s) = pair();
                let waiting = Arc::new(Event::new());
                let w = waiting.clone();
                let h = stackful::spawn(move || {
                    let mut c = c;
                    w.set();
                    let _ = c.read(&mut [0; 8]);
                    unreachable!("the read was not cancelled");
                });
                waiting.wait();
                stackful::yield_now();
                h.cancel();
                assert!(h.join().unwrap_err().is_cancelled());
                let _ = s.write_all(b"to nobody");
                drop(s);
            }
            // Fresh sockets (reusing the descriptor numbers) still work.
            let (mut c, mut s) = pair();
            c.write_all(b"fine").unwrap();
            let mut buf = [0; 4];
            s.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"fine");
        })
    });
}

#[test]
fn connect_refused_is_connection_refused() {
    within(60, || {
        let addr = dead_port();
        let e = stackful::run(|| TcpStream::connect(addr).unwrap_err());
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
        let e = TcpStream::connect(addr).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
        let e = stackful::run(|| {
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap_err()
        });
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    });
}

#[test]
fn bad_addresses_are_errors() {
    stackful::run(|| {
        let none: &[SocketAddr] = &[];
        let e = TcpStream::connect(none).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(TcpListener::bind("not an address").is_err());
        assert!(TcpStream::connect("no-such-host.invalid:80").is_err());
        let addr = dead_port();
        let e = TcpStream::connect_timeout(&addr, Duration::ZERO).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    });
}

#[test]
fn localhost_resolves() {
    within(60, || {
        stackful::run(|| {
            let (l, addr) = listener();
            let port = addr.port();
            let c = TcpStream::connect(("localhost", port)).unwrap();
            let (s, _) = l.accept().unwrap();
            assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
            let c = TcpStream::connect(format!("localhost:{port}")).unwrap();
            assert_eq!(c.peer_addr().unwrap(), addr);
        })
    });
}

#[test]
fn sockets_work_on_plain_os_threads() {
    within(60, || {
        let (l, addr) = listener();
        let server = std::thread::spawn(move || {
            for conn in l.incoming().take(2) {
                let mut conn = conn.unwrap();
                let mut buf = [0; 5];
                conn.read_exact(&mut buf).unwrap();
                conn.write_all(&buf).unwrap();
            }
        });
        for _ in 0..2 {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"plain").unwrap();
            let mut buf = [0; 5];
            c.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"plain");
        }
        server.join().unwrap();
    });
}

#[test]
fn a_socket_registered_on_a_green_thread_then_used_on_a_plain_thread() {
    within(60, || {
        let (c, s) = stackful::run(|| {
            let (c, mut s) = pair();
            // Wait once, so that the socket registers with a reactor.
            let r = stackful::timeout(Duration::from_millis(5), || s.read(&mut [0; 1]));
            assert!(r.is_err());
            (c, s)
        });
        let reader = std::thread::spawn(move || {
            let mut s = s;
            let mut buf = [0; 3];
            s.read_exact(&mut buf).unwrap();
            buf
        });
        std::thread::sleep(Duration::from_millis(10));
        (&c).write_all(b"abc").unwrap();
        assert_eq!(&reader.join().unwrap(), b"abc");
    });
}

#[test]
fn a_stream_moved_to_a_green_thread_on_another_worker_keeps_working() {
    within(60, || {
        let rt = stackful::Runtime::builder().workers(2).build().unwrap();
        rt.run(|| {
            let (mut c, s) = pair();
            // Register it here: wait once on this worker.
            let r = stackful::timeout(Duration::from_millis(5), || (&s).read(&mut [0; 1]));
            assert!(r.is_err());
            let here = std::thread::current().id();
            let slot = Arc::new(Mutex::new(Some(s)));
            let moved = Arc::new(AtomicBool::new(false));
            let start = Instant::now();
            loop {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "no other worker ran"
                );
                let (slot, m) = (slot.clone(), moved.clone());
                let h = common::spawn_on_pool(move || {
                    if std::thread::current().id() == here {
                        return None;
                    }
                    let mut s = slot.lock().unwrap().take().unwrap();
                    m.store(true, Ordering::SeqCst);
                    let mut got = Vec::new();
                    let mut buf = [0; 4];
                    for _ in 0..3 {
                        s.read_exact(&mut buf).unwrap(); // waits on this worker
                        got.extend_from_slice(&buf);
                        s.write_all(b"ack!").unwrap();
                    }
                    Some(got)
                });
                while !moved.load(Ordering::SeqCst) && !h.is_finished() {
                    stackful::sleep(Duration::from_millis(1));
                }
                if !moved.load(Ordering::SeqCst) {
                    assert!(h.join().unwrap().is_none());
                    continue;
                }
                for msg in [b"one.", b"two.", b"thr."] {
                    stackful::sleep(Duration::from_millis(5)); // it waits first
                    c.write_all(msg).unwrap();
                    let mut ack = [0; 4];
                    c.read_exact(&mut ack).unwrap();
                    assert_eq!(&ack, b"ack!");
                }
                assert_eq!(h.join().unwrap().unwrap(), b"one.two.thr.");
                break;
            }
        });
    });
}

#[test]
fn a_socket_from_one_run_works_in_a_later_run_on_another_thread() {
    within(60, || {
        let (c, s) = std::thread::spawn(|| {
            stackful::run(|| {
                let (c, s) = pair();
                // Registered with this thread's `run` reactor, which is not
                // polled once `run` returns (and is gone with the thread).
                let r = stackful::timeout(Duration::from_millis(5), || (&s).read(&mut [0; 1]));
                assert!(r.is_err());
                (c, s)
            })
        })
        .join()
        .unwrap();
        stackful::run(|| {
            let reader = stackful::spawn(move || {
                let mut s = s;
                let mut buf = [0; 5];
                s.read_exact(&mut buf).unwrap();
                buf
            });
            stackful::sleep(Duration::from_millis(10));
            (&c).write_all(b"later").unwrap();
            let got = stackful::timeout(Duration::from_secs(10), || reader.join().unwrap())
                .expect("the socket from the earlier run was never woken");
            assert_eq!(&got, b"later");
        });
    });
}

#[test]
fn a_socket_from_one_run_works_in_a_later_run_on_the_same_thread() {
    within(60, || {
        let (c, mut s) = stackful::run(|| {
            let (c, s) = pair();
            let r = stackful::timeout(Duration::from_millis(5), || (&s).read(&mut [0; 1]));
            assert!(r.is_err());
            (c, s)
        });
        stackful::run(|| {
            let writer = stackful::spawn(move || {
                stackful::sleep(Duration::from_millis(10));
                (&c).write_all(b"again").unwrap();
                c
            });
            let mut buf = [0; 5];
            s.read_exact(&mut buf).unwrap(); // the main green thread waits
            assert_eq!(&buf, b"again");
            drop(writer.join().unwrap());
        });
    });
}

#[test]
fn stream_options_and_conversions() {
    stackful::run(|| {
        let (l, addr) = listener();
        let c = TcpStream::connect(addr).unwrap();
        let (s, peer) = l.accept().unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
        assert_eq!(s.local_addr().unwrap(), addr);
        c.set_nodelay(true).unwrap();
        assert!(c.nodelay().unwrap());
        c.set_ttl(33).unwrap();
        assert_eq!(c.ttl().unwrap(), 33);
        c.set_linger(Some(Duration::from_secs(2))).unwrap();
        assert_eq!(c.linger().unwrap(), Some(Duration::from_secs(2)));
        c.set_linger(None).unwrap();
        assert_eq!(c.linger().unwrap(), None);
        assert!(c.take_error().unwrap().is_none());
        c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let debug = format!("{c:?}");
        assert!(debug.contains("TcpStream"), "{debug}");
        assert!(format!("{l:?}").contains("TcpListener"));
        // Round trip through std keeps the connection and the timeout.
        let std_c = c.into_std().unwrap();
        assert_eq!(std_c.read_timeout().unwrap(), Some(Duration::from_secs(1)));
        let mut c = TcpStream::from_std(std_c).unwrap();
        assert_eq!(c.read_timeout().unwrap(), Some(Duration::from_secs(1)));
        let l = TcpListener::from_std(l.into_std().unwrap()).unwrap();
        assert_eq!(l.local_addr().unwrap(), addr);
        // Raw descriptors.
        use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
        let fd = s.into_raw_fd();
        // SAFETY: `fd` was just given up by `s` and is owned by nobody else.
        let mut s = unsafe { TcpStream::from_raw_fd(fd) };
        assert_eq!(s.as_raw_fd(), fd);
        c.write_all(b"raw").unwrap();
        let mut buf = [0; 3];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"raw");
        // Vectored I/O.
        let n = (&c)
            .write_vectored(&[std::io::IoSlice::new(b"ab"), std::io::IoSlice::new(b"cd")])
            .unwrap();
        assert_eq!(n, 4);
        let mut got: Vec<u8> = Vec::new();
        while got.len() < 4 {
            let (mut x, mut y) = ([0; 2], [0; 2]);
            let n = s
                .read_vectored(&mut [
                    std::io::IoSliceMut::new(&mut x),
                    std::io::IoSliceMut::new(&mut y),
                ])
                .unwrap();
            got.extend(x.iter().chain(&y).take(n));
        }
        assert_eq!(got, b"abcd");
        // A half-close reads as the end of the stream.
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(s.read(&mut [0; 4]).unwrap(), 0);
    });
}

#[test]
fn a_waiter_on_another_runtime_is_not_stranded_when_the_run_that_registered_ends() {
    // The main green thread of a `run` waits on a socket first, so the
    // registration sits with that thread's reactor; a green thread of
    // another runtime then waits on the same socket through it. When the
    // `run` returns, nothing polls that reactor any more: the waiter must
    // still see the data that arrives afterwards.
    within(60, || {
        let other = stackful::Runtime::builder().workers(1).build().unwrap();
        let (c, s) = pair();
        let s = Arc::new(s);
        let s2 = s.clone();
        let reader = stackful::run(|| {
            let reader = other.spawn(move || {
                stackful::sleep(Duration::from_millis(30)); // the main one waits first
                let mut buf = [0; 4];
                (&*s2).read_exact(&mut buf).unwrap();
                buf
            });
            let r = stackful::timeout(Duration::from_millis(200), || (&*s).read(&mut [0; 1]));
            assert!(r.is_err(), "nothing was written yet");
            reader
        });
        std::thread::sleep(Duration::from_millis(20));
        (&c).write_all(b"data").unwrap();
        assert_eq!(&reader.join().unwrap(), b"data");
    });
}

/// Set in the child process of the EMFILE test.
const EMFILE_CHILD: &str = "STACKFUL_TEST_EMFILE_CHILD";

#[test]
fn accept_out_of_descriptors_backs_off_serves_on_and_says_so_once() {
    if std::env::var_os(EMFILE_CHILD).is_some() {
        return emfile_child();
    }
    // The child lowers its own descriptor limit; the test harness runs it
    // alone, in a process of its own.
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "accept_out_of_descriptors_backs_off_serves_on_and_says_so_once",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(EMFILE_CHILD, "1")
    .env("STACKFUL_DEBUG", "1");
    let out = common::output_within_a_minute(cmd, "emfile");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the child failed:\n{stderr}");
    assert_eq!(
        stderr.matches("out of file descriptors").count(),
        1,
        "said once:\n{stderr}"
    );
    assert!(stderr.contains("ulimit -n"), "{stderr}");
}

fn emfile_child() {
    stackful::run(|| {
        let (l, addr) = listener();
        let (mut c0, mut s0) = {
            let c = TcpStream::connect(addr).unwrap();
            (c, l.accept().unwrap().0)
        };
        // A low limit, then every descriptor under it taken.
        let limit = libc::rlimit {
            rlim_cur: 256,
            rlim_max: 256,
        };
        // SAFETY: a plain system call with a live rlimit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
        let mut hog = Vec::new();
        loop {
            match std::fs::File::open("/dev/null") {
                Ok(f) => hog.push(f),
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
                    break;
                }
            }
        }
        // One descriptor for the client; the server has none to accept it.
        hog.pop();
        let mut client = TcpStream::connect(addr).unwrap();
        let start = Instant::now();
        let mut failures = 0;
        while start.elapsed() < Duration::from_millis(200) {
            let e = l.accept().unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
            failures += 1;
        }
        // Backed off: 20 ms a try, not a spin.
        assert!(failures <= 12, "{failures} accepts in 200 ms");
        // The open connection is served meanwhile.
        c0.write_all(b"still").unwrap();
        let mut buf = [0; 5];
        s0.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"still");
        // Descriptors back: the waiting connection is accepted.
        drop(hog);
        let (mut s, _) = l.accept().unwrap();
        client.write_all(b"in").unwrap();
        let mut buf = [0; 2];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"in");
    });
}

#[test]
fn five_thousand_concurrent_connections_on_two_workers() {
    // Two descriptors a connection (both ends live in this process): raise
    // the soft limit as far as the hard one allows.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls with a live rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    let n = 5000.min((lim.rlim_cur.saturating_sub(500) / 2) as usize);
    assert!(n >= 1000, "the descriptor limit is too low for this test");
    within(240, move || {
        let rt = stackful::Runtime::builder()
            .workers(2)
            .stack_size(64 << 10)
            .build()
            .unwrap();
        rt.run(|| {
            let (l, addr) = listener();
            let server = stackful::spawn(move || {
                let mut conns = Vec::with_capacity(n);
                for _ in 0..n {
                    let (mut s, _) = l.accept().unwrap();
                    conns.push(stackful::spawn(move || {
                        let mut buf = [0; 16];
                        loop {
                            let k = s.read(&mut buf).unwrap();
                            if k == 0 {
                                return;
                            }
                            s.write_all(&buf[..k]).unwrap();
                        }
                    }));
                }
                for c in conns {
                    c.join().unwrap();
                }
            });
            // Every client connects, then waits for all the others, so all
            // connections are open at once before any talks.
            let all_open = Arc::new(stackful::sync::Barrier::new(n));
            let clients: Vec<_> = (0..n)
                .map(|i| {
                    let all_open = all_open.clone();
                    stackful::spawn(move || {
                        let mut s = TcpStream::connect(addr).unwrap();
                        all_open.wait();
                        for round in 0..3u64 {
                            let msg = (i as u64 * 10 + round).to_le_bytes();
                            s.write_all(&msg).unwrap();
                            let mut back = [0; 8];
                            s.read_exact(&mut back).unwrap();
                            assert_eq!(back, msg);
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
fn a_busy_worker_still_takes_io_events() {
    // One worker that never runs out of ready green threads (one yields in
    // a loop) never parks: it must look at its reactor while busy.
    within(60, || {
        let rt = stackful::Runtime::builder().workers(1).build().unwrap();
        let (c, s) = pair();
        rt.run(move || {
            let done = Arc::new(AtomicBool::new(false));
            let d = done.clone();
            // Both on the one worker.
            let reader = stackful::spawn(move || {
                let mut s = s;
                let mut buf = [0; 4];
                s.read_exact(&mut buf).unwrap();
                d.store(true, Ordering::SeqCst);
                buf
            });
            let d = done.clone();
            let spinner = stackful::spawn(move || {
                let start = Instant::now();
                while !d.load(Ordering::SeqCst) {
                    assert!(
                        start.elapsed() < Duration::from_secs(20),
                        "the reader was never woken while the worker was busy"
                    );
                    stackful::yield_now();
                }
            });
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                (&c).write_all(b"busy").unwrap();
                c
            });
            spinner.join().unwrap();
            assert_eq!(&reader.join().unwrap(), b"busy");
            drop(writer.join().unwrap());
        });
    });
}

#[test]
fn a_reader_and_a_writer_on_different_threads_share_one_socket() {
    // The main green thread (on `run`'s thread) reads while a green thread
    // on a pool worker writes the same socket: each waits through the
    // registration wherever it is, many times over, in both directions.
    within(120, || {
        let rt = stackful::Runtime::builder().workers(2).build().unwrap();
        rt.run(|| {
            let (c, s) = pair();
            // A plain thread echoes, slowly enough that both sides wait.
            let echo = std::thread::spawn(move || common::echo(s, 8192));
            const TOTAL: usize = 4 << 20;
            let c = Arc::new(c);
            let w = c.clone();
            let here = std::thread::current().id();
            let writer = common::spawn_on_pool(move || {
                assert_ne!(std::thread::current().id(), here);
                let data: Vec<u8> = (0..TOTAL).map(|i| (i % 249) as u8).collect();
                for chunk in data.chunks(100_000) {
                    (&*w).write_all(chunk).unwrap();
                }
            });
            let mut got = 0;
            let mut buf = vec![0; 65536];
            while got < TOTAL {
                let n = (&*c).read(&mut buf).unwrap();
                assert_ne!(n, 0);
                assert!(
                    buf[..n]
                        .iter()
                        .enumerate()
                        .all(|(k, &b)| b == ((got + k) % 249) as u8)
                );
                got += n;
            }
            writer.join().unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            echo.join().unwrap();
        });
    });
}

#[test]
fn several_green_threads_waiting_to_read_one_socket_are_all_served() {
    within(60, || {
        stackful::run(|| {
            let (c, mut s) = pair();
            let c = Arc::new(c);
            let started = Arc::new(stackful::sync::Barrier::new(5));
            let readers: Vec<_> = (0..4)
                .map(|_| {
                    let (c, started) = (c.clone(), started.clone());
                    stackful::spawn(move || {
                        started.wait();
                        let mut one = [0; 1];
                        assert_eq!((&*c).read(&mut one).unwrap(), 1);
                        one[0]
                    })
                })
                .collect();
            started.wait();
            stackful::sleep(Duration::from_millis(20)); // all four wait now
            for b in 1..=4u8 {
                s.write_all(&[b]).unwrap();
                stackful::sleep(Duration::from_millis(5));
            }
            let mut got: Vec<u8> = readers.into_iter().map(|r| r.join().unwrap()).collect();
            got.sort();
            assert_eq!(got, [1, 2, 3, 4]);
        })
    });
}

#[test]
fn a_reset_and_a_half_close_give_std_error_kinds() {
    within(60, || {
        stackful::run(|| {
            // Reset: the peer closes with a zero linger.
            let (c, mut s) = pair();
            c.set_linger(Some(Duration::ZERO)).unwrap();
            let reader = stackful::spawn(move || s.read(&mut [0; 8]));
            stackful::sleep(Duration::from_millis(10)); // it waits first
            drop(c);
            let e = reader.join().unwrap().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ConnectionReset);
            // Half-close: the peer shuts its write side; reads end, writes
            // still go through.
            let (c, mut s) = pair();
            c.shutdown(Shutdown::Write).unwrap();
            assert_eq!(s.read(&mut [0; 8]).unwrap(), 0);
            s.write_all(b"still open").unwrap();
            let mut buf = [0; 10];
            (&c).read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"still open");
        })
    });
}

#[test]
fn the_socket_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync + std::fmt::Debug>() {}
    send_sync::<TcpListener>();
    send_sync::<TcpStream>();
    send_sync::<stackful::net::UdpSocket>();
    send_sync::<stackful::net::unix::UnixListener>();
    send_sync::<stackful::net::unix::UnixStream>();
    send_sync::<stackful::net::unix::UnixDatagram>();
    send_sync::<stackful::io::Green<std::fs::File>>();
}
