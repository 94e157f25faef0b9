//! A green stream read that fills less than its buffer marks the socket
//! drained, and the next read waits for the next event instead of trying
//! first. These tests make sure nothing that arrives after such a read is
//! missed: every case would hang if the mark outlived the next event.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::mpsc;
use std::time::Duration;

use common::within;
use stackful::net::unix::UnixStream;
use stackful::net::{TcpListener, TcpStream};

/// A connected pair of green TCP streams.
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

/// Small messages back and forth, each read into a larger buffer (a short
/// read every time), `rounds` times, between two green threads of `workers`.
fn ping_pong<S: Read + Write + Send + 'static>(workers: usize, pair: fn() -> (S, S)) {
    const ROUNDS: u32 = 2_000;
    let rt = stackful::Runtime::builder()
        .workers(workers)
        .build()
        .unwrap();
    rt.run(move || {
        let (mut a, b) = pair();
        let echo = stackful::spawn(move || common::echo(b, 64));
        let mut buf = [0u8; 64];
        for i in 0..ROUNDS {
            let msg = i.to_le_bytes();
            a.write_all(&msg).unwrap();
            let mut got = 0;
            while got < msg.len() {
                got += a.read(&mut buf[got..]).unwrap();
            }
            assert_eq!(buf[..4], msg, "round {i}");
        }
        drop(a);
        echo.join().unwrap();
    });
}

#[test]
fn tcp_messages_after_short_reads_all_arrive_on_one_and_two_workers() {
    within(60, || {
        ping_pong(1, tcp_pair);
        ping_pong(2, tcp_pair);
    });
}

#[test]
fn unix_messages_after_short_reads_all_arrive_on_one_and_two_workers() {
    within(60, || {
        ping_pong(1, || UnixStream::pair().unwrap());
        ping_pong(2, || UnixStream::pair().unwrap());
    });
}

#[test]
fn a_close_after_a_short_read_ends_the_next_read() {
    within(60, || {
        stackful::run(|| {
            let (mut a, mut b) = tcp_pair();
            a.write_all(b"x").unwrap();
            let mut buf = [0u8; 16];
            assert_eq!(b.read(&mut buf).unwrap(), 1); // short: drained
            a.shutdown(Shutdown::Write).unwrap();
            assert_eq!(b.read(&mut buf).unwrap(), 0, "the close must end the read");
        });
    });
}

/// The data and the close arrive together, in one edge that the reactor
/// takes before the reader runs: after the short read that takes the data,
/// no further event will come, and the end of stream must still be read.
fn data_and_close_in_one_edge<S: Read + Write + Send + 'static>(pair: fn() -> (S, S)) {
    for workers in [1, 2] {
        let rt = stackful::Runtime::builder()
            .workers(workers)
            .build()
            .unwrap();
        rt.run(|| {
            let (mut a, mut b) = pair();
            let reader = stackful::spawn(move || {
                let mut text = String::new();
                // Waits first (registered), then takes the data short,
                // then must see the end.
                b.read_to_string(&mut text).unwrap();
                text
            });
            // Write and close with no wait in between, so both land
            // before the reactor looks.
            stackful::yield_now();
            a.write_all(b"hello").unwrap();
            drop(a);
            assert_eq!(reader.join().unwrap(), "hello");
        });
    }
}

#[test]
fn data_and_close_in_one_edge_then_a_short_read_then_the_end() {
    within(60, || {
        data_and_close_in_one_edge(tcp_pair);
        data_and_close_in_one_edge(|| UnixStream::pair().unwrap());
    });
}

#[test]
fn a_short_read_on_a_plain_thread_then_a_green_read_gets_the_next_message() {
    within(60, || {
        let (mut a, mut b) = stackful::run(tcp_pair);
        a.write_all(b"one").unwrap();
        let mut buf = [0u8; 16];
        // A plain thread: it blocks in ppoll, and its short read marks the
        // socket drained all the same.
        assert_eq!(b.read(&mut buf).unwrap(), 3);
        let rt = stackful::Runtime::builder().workers(1).build().unwrap();
        rt.run(move || {
            let reader = stackful::spawn(move || {
                let mut buf = [0u8; 16];
                let n = b.read(&mut buf).unwrap();
                buf[..n].to_vec()
            });
            a.write_all(b"two").unwrap();
            assert_eq!(reader.join().unwrap(), b"two");
        });
    });
}

#[test]
fn a_plain_thread_after_a_green_short_read_still_reads() {
    within(60, || {
        let (mut a, mut b) = stackful::run(|| {
            let (mut a, mut b) = tcp_pair();
            a.write_all(b"one").unwrap();
            let mut buf = [0u8; 16];
            assert_eq!(b.read(&mut buf).unwrap(), 3); // green, short: drained
            (a, b)
        });
        // No event will bump the mark for a plain thread (it waits in
        // ppoll): it must try anyway, and find the data.
        a.write_all(b"two").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(b.read(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"two");
    });
}

/// `send(2)` of all of `b` on a raw descriptor, with `flags`.
fn send_raw(fd: RawFd, b: &[u8], flags: i32) {
    // SAFETY: `b` is a live buffer of `b.len()` bytes; `fd` is the caller's
    // open socket.
    let n = unsafe { libc::send(fd, b.as_ptr().cast(), b.len(), flags) };
    assert_eq!(n, b.len() as isize);
}

/// A read stops short with data still queued: the reader's next read must
/// get that data at once, though no further event comes for it. `read`
/// reads the reader's socket; `first` is what its first short read gets;
/// `go` asks the peer for the next step, `end` lets it finish.
fn data_after_an_early_stop(
    read: &mut dyn FnMut(&mut [u8]) -> std::io::Result<usize>,
    first: &[u8],
    go: mpsc::Sender<()>,
    end: mpsc::Sender<()>,
) {
    let mut buf = [0u8; 1024];
    go.send(()).unwrap(); // the peer sends "a": this read waits (registers)
    assert_eq!(read(&mut buf).unwrap(), 1);
    go.send(()).unwrap(); // the peer sends `first`, a stop, then "world"
    // The events are taken meanwhile: no edge is left for "world".
    stackful::sleep(Duration::from_millis(300));
    let n = read(&mut buf).unwrap();
    assert_eq!(&buf[..n], first, "a read that stops early");
    let r = read(&mut buf);
    end.send(()).unwrap();
    match r {
        Ok(n) => assert_eq!(&buf[..n], b"world"),
        Err(e) if e.kind() == ErrorKind::TimedOut => {
            panic!("\"world\" was queued all along, but the read timed out")
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn tcp_data_after_the_urgent_mark_is_read_at_once() {
    within(60, || {
        stackful::run(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let (end_tx, end_rx) = mpsc::channel::<()>();
            let peer = std::thread::spawn(move || {
                let s = std::net::TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                let fd = s.as_raw_fd();
                go_rx.recv().unwrap();
                send_raw(fd, b"a", 0);
                go_rx.recv().unwrap();
                send_raw(fd, b"hello", 0);
                send_raw(fd, b"X", libc::MSG_OOB); // the read stops at the mark
                send_raw(fd, b"world", 0);
                end_rx.recv().unwrap(); // no FIN before the reader is done
            });
            let (s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            data_after_an_early_stop(&mut |b| (&s).read(b), b"hello", go_tx, end_tx);
            peer.join().unwrap();
        });
    });
}

#[test]
fn unix_data_after_a_message_with_a_descriptor_is_read_at_once() {
    within(60, || {
        stackful::run(|| {
            let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let (end_tx, end_rx) = mpsc::channel::<()>();
            let peer = std::thread::spawn(move || {
                let fd = theirs.as_raw_fd();
                go_rx.recv().unwrap();
                send_raw(fd, b"a", 0);
                go_rx.recv().unwrap();
                // The read stops after a message that passed a descriptor.
                theirs.send_vectored_with_ancillary_fd(b"hello", std::io::stdin().as_raw_fd());
                send_raw(fd, b"world", 0);
                end_rx.recv().unwrap();
            });
            let s = UnixStream::from_std(mine).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            data_after_an_early_stop(&mut |b| (&s).read(b), b"hello", go_tx, end_tx);
            peer.join().unwrap();
        });
    });
}

/// Sends `bytes` with one descriptor passed along (`SCM_RIGHTS`).
trait SendWithFd {
    fn send_vectored_with_ancillary_fd(&self, bytes: &[u8], fd: RawFd);
}

impl SendWithFd for std::os::unix::net::UnixStream {
    fn send_vectored_with_ancillary_fd(&self, bytes: &[u8], passed: RawFd) {
        let mut iov = libc::iovec {
            iov_base: bytes.as_ptr() as *mut _,
            iov_len: bytes.len(),
        };
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(size_of::<RawFd>() as u32) } as usize;
        let mut control = vec![0u8; space];
        // SAFETY: all zeroes is a valid msghdr.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `msg` has a control buffer of CMSG_SPACE for one
        // descriptor, so the first header exists and its data holds one;
        // `iov` and `control` outlive the call.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
            *(libc::CMSG_DATA(c) as *mut RawFd) = passed;
            assert_eq!(
                libc::sendmsg(self.as_raw_fd(), &msg, 0),
                bytes.len() as isize
            );
        }
    }
}
