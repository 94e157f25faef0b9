//! A green stream read that fills less than its buffer marks the socket
//! drained, and the next read waits for the next event instead of trying
//! first. These tests make sure nothing that arrives after such a read is
//! missed: every case would hang if the mark outlived the next event.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;

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
        let (mut a, mut b) = pair();
        let echo = stackful::spawn(move || {
            let mut buf = [0u8; 64];
            loop {
                let n = b.read(&mut buf).unwrap();
                if n == 0 {
                    return;
                }
                b.write_all(&buf[..n]).unwrap();
            }
        });
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
