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

fn tokio_named(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

/// Where `block_on` sends a `tokio::spawn`: the runtime it entered.
fn tokio_thread_of_block_on() -> Option<String> {
    stackful::block_on(async {
        tokio::spawn(async { std::thread::current().name().map(String::from) })
            .await
            .unwrap()
    })
}

#[test]
fn a_runtime_built_with_a_tokio_handle_enters_that_runtime_in_block_on() {
    within(60, || {
        let (a, b) = (tokio_named("tokio-a"), tokio_named("tokio-b"));
        let on_a = stackful::Runtime::builder()
            .workers(1)
            .tokio_handle(a.handle().clone())
            .build()
            .unwrap();
        let on_b = stackful::Runtime::builder()
            .workers(1)
            .tokio_handle(b.handle().clone())
            .build()
            .unwrap();
        assert_eq!(
            on_a.run(tokio_thread_of_block_on).as_deref(),
            Some("tokio-a")
        );
        assert_eq!(
            on_b.run(tokio_thread_of_block_on).as_deref(),
            Some("tokio-b")
        );
        // On the pool's workers too, and from the handle's accessor.
        let from_worker = on_a.spawn(tokio_thread_of_block_on).join().unwrap();
        assert_eq!(from_worker.as_deref(), Some("tokio-a"));
        let handle = on_b.run(stackful::bridge::tokio_handle);
        let task = handle.spawn(async { std::thread::current().name().map(String::from) });
        assert_eq!(b.block_on(task).unwrap().as_deref(), Some("tokio-b"));
    });
}
