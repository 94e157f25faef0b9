//! `block_on` of tokio futures (the `tokio` feature): tokio's reactor and
//! timers under green threads.
#![cfg(feature = "tokio")]

mod common;

use std::time::{Duration, Instant};

use common::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn tokio_sleep_and_tcp_round_trip_on_green_threads_with_the_default_runtime() {
    within(60, || {
        let got = stackful::Runtime::builder()
            .workers(1)
            .build()
            .unwrap()
            .run(|| {
                let start = Instant::now();
                stackful::block_on(async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                });
                assert!(start.elapsed() >= Duration::from_millis(20));
                let listener =
                    stackful::block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
                let addr = listener.local_addr().unwrap();
                // The server is a green thread too, on the same single
                // worker: the client's block_on must not block it.
                let server = stackful::spawn(move || {
                    stackful::block_on(async move {
                        let (mut s, _) = listener.accept().await.unwrap();
                        let mut buf = [0u8; 5];
                        s.read_exact(&mut buf).await.unwrap();
                        s.write_all(&buf.map(|b| b.to_ascii_uppercase()))
                            .await
                            .unwrap();
                    })
                });
                let reply = stackful::block_on(async move {
                    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
                    c.write_all(b"hello").await.unwrap();
                    let mut buf = [0u8; 5];
                    c.read_exact(&mut buf).await.unwrap();
                    buf
                });
                server.join().unwrap();
                reply
            });
        assert_eq!(&got, b"HELLO");
    });
}

#[test]
fn timeout_cancels_a_tokio_future_on_a_green_thread() {
    within(60, || {
        let start = Instant::now();
        let r = stackful::run(|| {
            stackful::timeout(Duration::from_millis(20), || {
                stackful::block_on(async { tokio::time::sleep(Duration::from_secs(3600)).await })
            })
        });
        assert!(r.is_err());
        assert!(start.elapsed() < Duration::from_secs(30));
    });
}

#[test]
fn a_plain_thread_inside_a_tokio_context_uses_it() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    // A current-thread runtime is driven by this very thread's block_on
    // only in tokio's own block_on; ours just needs the context to build
    // the future and a timer driver somewhere. The handle answers.
    let h = stackful::bridge::tokio_handle();
    assert_eq!(h.id(), rt.handle().id());
}
