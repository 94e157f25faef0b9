//! Review of the green networking code (issue 10): each test shows a bug
//! found in review (fixed unless it is ignored, with the reason).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::within;
use stackful::net::unix::UnixStream;

#[test]
fn an_always_readable_socket_does_not_starve_the_other_green_threads_of_its_worker() {
    // A reader whose socket always has data never has to wait, so without
    // a budget it never leaves its worker to the others.
    within(60, || {
        // On the one worker of a runtime with one, from a green thread of
        // its own: a `run` thread would be a second executor, from which
        // the idle worker could steal one of the two, and then the OS
        // thread scheduler decides how often the other runs (a release
        // build's test run failed so, under load).
        let rt = stackful::Runtime::builder().workers(1).build().unwrap();
        rt.spawn(|| {
            const N: usize = 20_000;
            let (a, b) = UnixStream::pair().unwrap();
            // Fits the socket's buffer: every read below finds data.
            (&a).write_all(&[7; N]).unwrap();
            let ticks = Arc::new(AtomicUsize::new(0));
            let done = Arc::new(AtomicBool::new(false));
            // Both on the one worker.
            let ticker = stackful::spawn({
                let (ticks, done) = (ticks.clone(), done.clone());
                move || {
                    while !done.load(Ordering::SeqCst) {
                        ticks.fetch_add(1, Ordering::SeqCst);
                        stackful::yield_now();
                    }
                    std::thread::current().id()
                }
            });
            let reader = stackful::spawn(move || {
                while ticks.load(Ordering::SeqCst) == 0 {
                    stackful::yield_now();
                }
                let before = ticks.load(Ordering::SeqCst);
                let mut b = b;
                let mut byte = [0; 1];
                for _ in 0..N {
                    b.read_exact(&mut byte).unwrap();
                }
                let ran = ticks.load(Ordering::SeqCst) - before;
                done.store(true, Ordering::SeqCst);
                (ran, std::thread::current().id())
            });
            let (ran, reader_thread) = reader.join().unwrap();
            assert_eq!(ticker.join().unwrap(), reader_thread, "not on one worker");
            drop(a);
            assert!(
                ran >= 10,
                "the other green thread ran {ran} times during {N} reads that never waited"
            );
        })
        .join()
        .unwrap();
    });
}

#[test]
fn shielded_waiters_through_a_run_threads_reactor_are_served_while_that_run_shuts_down() {
    // Two shielded green threads of a `run` wait on a socket registered
    // with the `run` thread's reactor (its main green thread waited there
    // first, so they kept the registration). `run`'s shutdown waits for
    // them; if that reactor is neither polled nor retired meanwhile, their
    // data never wakes them and `run` never returns.
    within(30, || {
        let (x, y) = std::os::unix::net::UnixStream::pair().unwrap();
        let x = Arc::new(UnixStream::from_std(x).unwrap());
        let served = Arc::new(AtomicUsize::new(0));
        let enlisted = Arc::new(AtomicUsize::new(0));
        let writer = {
            let enlisted = enlisted.clone();
            std::thread::spawn(move || {
                while enlisted.load(Ordering::SeqCst) < 2 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                // Well after `run`'s main green thread has returned.
                std::thread::sleep(Duration::from_millis(700));
                (&y).write_all(b"ab").unwrap();
                y
            })
        };
        stackful::run(|| {
            for _ in 0..2 {
                let (x, served, enlisted) = (x.clone(), served.clone(), enlisted.clone());
                drop(stackful::spawn(move || {
                    stackful::shield(|| {
                        // Let the main green thread enlist first.
                        stackful::sleep(Duration::from_millis(50));
                        enlisted.fetch_add(1, Ordering::SeqCst);
                        let mut byte = [0; 1];
                        assert_eq!((&*x).read(&mut byte).unwrap(), 1);
                        served.fetch_add(1, Ordering::SeqCst);
                    })
                }));
            }
            // Waits on `x` through this thread's reactor until both readers
            // wait too, then gives up.
            let r = stackful::timeout(Duration::from_millis(400), || (&*x).read(&mut [0; 1]));
            assert!(r.is_err(), "nothing was written yet");
            assert_eq!(enlisted.load(Ordering::SeqCst), 2);
        });
        assert_eq!(served.load(Ordering::SeqCst), 2);
        drop(writer.join().unwrap());
    });
}

/// Fixed: `into_std` on a clone clears O_NONBLOCK on the open file that the
/// green handle shares; the green handle's reads now pass MSG_DONTWAIT, so
/// they still wait green.
#[test]
fn into_std_of_a_clone_leaves_the_green_handle_waiting_green() {
    within(30, || {
        let rt = stackful::Runtime::builder().workers(1).build().unwrap();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            // Unblocks the read below if it blocks its OS thread (which
            // then returns the byte). Fixed, the read times out and its
            // socket is gone by now: the write may fail.
            std::thread::sleep(Duration::from_secs(2));
            let _ = (&a).write_all(b"x");
            a
        });
        rt.run(move || {
            let green = UnixStream::from_std(b).unwrap();
            let std_clone = green.try_clone().unwrap().into_std().unwrap();
            green
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let r = stackful::spawn(move || {
                let r = (&green).read(&mut [0; 1]).map_err(|e| e.kind());
                drop(std_clone);
                r
            });
            assert_eq!(r.join().unwrap(), Err(ErrorKind::TimedOut));
        });
        drop(writer.join().unwrap());
    });
}

/// The same for a TCP stream and a UDP socket (a blocked read would hang
/// until `within` fails the test).
#[test]
fn into_std_of_a_tcp_or_udp_clone_leaves_the_green_handle_waiting_green() {
    within(30, || {
        let rt = stackful::Runtime::builder().workers(1).build().unwrap();
        rt.run(|| {
            let listener = stackful::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let tcp = stackful::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (_peer, _) = listener.accept().unwrap();
            let std_tcp = tcp.try_clone().unwrap().into_std().unwrap();
            tcp.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let kind = (&tcp).read(&mut [0; 1]).map_err(|e| e.kind());
            assert_eq!(kind, Err(ErrorKind::TimedOut));
            drop(std_tcp);

            let udp = stackful::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let std_udp = udp.try_clone().unwrap().into_std().unwrap();
            udp.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            assert_eq!(
                udp.recv_from(&mut [0; 1]).map_err(|e| e.kind()),
                Err(ErrorKind::TimedOut)
            );
            // The std handle blocks, as it should, and the green one
            // still receives.
            let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            other.send_to(b"hi", udp.local_addr().unwrap()).unwrap();
            let (n, from) = udp.recv_from(&mut [0; 4]).unwrap();
            assert_eq!((n, from), (2, other.local_addr().unwrap()));
            drop(std_udp);
        });
    });
}

#[test]
fn unix_connect_to_an_empty_path_is_invalid_input_as_std() {
    // The address took the trailing NUL even for an empty path: the
    // abstract name "" (anyone may listen there), not an invalid address.
    let std_kind = std::os::unix::net::UnixStream::connect("")
        .unwrap_err()
        .kind();
    assert_eq!(std_kind, ErrorKind::InvalidInput);
    let green = stackful::run(|| UnixStream::connect("").map(drop).map_err(|e| e.kind()));
    assert_eq!(green, Err(std_kind));
    // On a plain thread too.
    let plain = UnixStream::connect("").map(drop).map_err(|e| e.kind());
    assert_eq!(plain, Err(std_kind));
}

#[test]
fn a_green_whose_descriptor_was_replaced_does_not_deregister_another_socket_on_drop() {
    // `Green::get_mut` lets safe code replace the wrapped value. The old
    // descriptor closes, its number goes to a new socket that registers
    // with the same reactor, and the Green's drop must not take that
    // socket's registration away (its reader would never be woken).
    use std::os::fd::AsRawFd;
    within(30, || {
        stackful::run(|| {
            let (a1, _a1_peer) = std::os::unix::net::UnixStream::pair().unwrap();
            let mut g = stackful::io::Green::new(a1).unwrap();
            // A wait registers it with this thread's reactor.
            let r = stackful::timeout(Duration::from_millis(10), || (&g).read(&mut [0; 1]));
            assert!(r.is_err());
            let (a2, _a2_peer) = std::os::unix::net::UnixStream::pair().unwrap();
            let old = std::mem::replace(g.get_mut(), a2);
            let n = old.as_raw_fd();
            drop(old);
            // A new socket gets the number (other tests open descriptors
            // too: try a few).
            let mut spare = Vec::new();
            let (c, c_peer) = loop {
                let (x, y) = std::os::unix::net::UnixStream::pair().unwrap();
                if x.as_raw_fd() == n {
                    break (x, y);
                }
                if y.as_raw_fd() == n {
                    break (y, x);
                }
                spare.push((x, y));
                if spare.len() == 64 {
                    // Another test holds the number: nothing to check.
                    eprintln!("descriptor {n} was not reused; skipped");
                    return;
                }
            };
            let c = UnixStream::from_std(c).unwrap();
            let r = stackful::timeout(Duration::from_millis(10), || (&c).read(&mut [0; 1]));
            assert!(r.is_err()); // `c` is registered here now
            // The Green refuses to wait on a descriptor it was not made for.
            let e = (&g).read(&mut [0; 1]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            drop(g);
            // Wake `c`'s reader only through its registration.
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                (&c_peer).write_all(b"c").unwrap();
                c_peer
            });
            // Bounded, so the bug shows as a wait to the deadline: the
            // retry after it finds the byte.
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let t = std::time::Instant::now();
            let r = (&c).read(&mut [0; 1]).map_err(|e| e.kind());
            let waited = t.elapsed();
            drop(writer.join().unwrap());
            assert_eq!(r, Ok(1));
            assert!(
                waited < Duration::from_secs(4),
                "the new socket's registration was removed: its read waited {waited:?}"
            );
        });
    });
}

#[test]
fn two_greens_over_one_descriptor_can_both_wait_on_one_worker() {
    // Epoll registers a descriptor number once per epoll set: the second
    // Green's first wait failed with AlreadyExists.
    type G<'a> = stackful::io::Green<&'a std::os::unix::net::UnixStream>;
    within(30, || {
        stackful::run(|| {
            let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            let g1 = stackful::io::Green::new(&a).unwrap();
            let g2 = stackful::io::Green::new(&a).unwrap();
            let read = |g: &G<'_>, limit: Duration| {
                stackful::timeout(limit, || {
                    g.read_with(|s| {
                        let mut s: &std::os::unix::net::UnixStream = s;
                        s.read(&mut [0; 1])
                    })
                    .map_err(|e| e.kind())
                })
            };
            // Both wait (and time out); neither fails.
            assert!(read(&g1, Duration::from_millis(10)).is_err());
            let r = read(&g2, Duration::from_millis(10));
            assert!(r.is_err(), "{r:?}");
            // Each is woken by its data, also after the other is dropped.
            let b = Arc::new(b);
            let write_soon = || {
                let b = b.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(50));
                    (&*b).write_all(b"x").unwrap();
                })
            };
            for g in [&g2, &g1] {
                let w = write_soon();
                let t = std::time::Instant::now();
                assert_eq!(read(g, Duration::from_secs(5)), Ok(Ok(1)));
                assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
                w.join().unwrap();
            }
            drop(g2);
            let w = write_soon();
            let t = std::time::Instant::now();
            assert_eq!(read(&g1, Duration::from_secs(5)), Ok(Ok(1)));
            assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
            w.join().unwrap();
        });
    });
}
