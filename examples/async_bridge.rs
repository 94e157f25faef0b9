//! A tokio application that hands blocking-style work to green threads and
//! talks to them both ways. Run with `cargo run --example async_bridge
//! --features tokio`.
//!
//! - Async tasks feed a green thread through a `stackful::sync` channel
//!   (`send_async`), and it runs a generator pipeline over what it gets.
//! - The application awaits the green threads' `JoinHandle`s.
//! - A green thread calls `stackful::block_on` on tokio futures: a
//!   `tokio::net::TcpStream` round trip against a tokio listener in this
//!   same process.

use std::sync::Arc;

use stackful::{Generator, GeneratorState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() {
    // The green thread runtime: its own worker threads, beside tokio's.
    let rt = Arc::new(stackful::Runtime::builder().workers(2).build().unwrap());
    // `block_on` polls tokio futures inside this runtime's context.
    stackful::bridge::set_tokio_handle(tokio::runtime::Handle::current());

    // 1. Async producers feed a green thread running a generator pipeline.
    let (tx, rx) = stackful::sync::channel::<u64>(4);
    let pipeline = rt.spawn(move || {
        // Blocking-style code: a generator of squares of what arrives,
        // pulled by a plain loop that keeps the even ones.
        let mut squares = Generator::new(move |co, ()| {
            for n in rx.iter() {
                co.yield_(n * n);
            }
        });
        let mut kept = Vec::new();
        while let GeneratorState::Yielded(sq) = squares.resume() {
            if sq % 2 == 0 {
                kept.push(sq);
            }
        }
        kept
    });
    let producers: Vec<_> = (0..2u64)
        .map(|p| {
            let tx = tx.clone();
            tokio::spawn(async move {
                for n in (p * 5)..(p * 5 + 5) {
                    tx.send_async(n).await.unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    for p in producers {
        p.await.unwrap();
    }
    let mut kept = pipeline.await.unwrap();
    kept.sort_unstable();
    println!("even squares from the green pipeline: {kept:?}");

    // 2. A green thread doing tokio networking with `block_on`.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4];
        sock.read_exact(&mut buf).await.unwrap();
        sock.write_all(b"pong").await.unwrap();
        String::from_utf8_lossy(&buf).into_owned()
    });
    let client = rt.spawn(move || {
        stackful::block_on(async move {
            let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
            sock.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            sock.read_exact(&mut buf).await.unwrap();
            String::from_utf8_lossy(&buf).into_owned()
        })
    });
    let reply = client.await.unwrap();
    let heard = server.await.unwrap();
    println!("the tokio server heard {heard:?}, the green client got {reply:?}");
    assert_eq!((heard.as_str(), reply.as_str()), ("ping", "pong"));
    assert_eq!(kept, [0, 4, 16, 36, 64]);
}
