//! An echo server and its clients in one process, on green threads.
//!
//! The server accepts on a `stackful::net::TcpListener` and serves each
//! connection on a green thread of its own, in plain blocking style: read,
//! write back, until the client hangs up. A read that would block suspends
//! only that green thread. 100 clients then talk to it at once, each from
//! a green thread, and check what comes back.
//!
//! ```text
//! cargo run --example echo
//! ```

use std::io::{Read, Write};
use std::net::Shutdown;

use stackful::net::{TcpListener, TcpStream};

const CLIENTS: usize = 100;
const ROUNDS: usize = 50;

/// Echoes what `stream` sends until it hangs up; returns the bytes echoed.
fn serve(mut stream: TcpStream) -> std::io::Result<usize> {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(total); // the client shut its side down
        }
        stream.write_all(&buf[..n])?;
        total += n;
    }
}

/// One client: `ROUNDS` messages out and back, then a clean hang-up.
fn client(addr: std::net::SocketAddr, id: usize) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    for round in 0..ROUNDS {
        let msg = format!("client {id} round {round}\n");
        stream.write_all(msg.as_bytes())?;
        let mut back = vec![0u8; msg.len()];
        stream.read_exact(&mut back)?;
        assert_eq!(back, msg.as_bytes(), "the echo differs");
    }
    stream.shutdown(Shutdown::Write)?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?; // the server closes after our shutdown
    assert!(rest.is_empty());
    Ok(())
}

/// Runs the server and its clients; panics on an I/O error.
pub fn demo() {
    stackful::run(|| -> std::io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0")?; // any free port
        let addr = listener.local_addr()?;
        println!("  echo server on {addr}");
        let server = stackful::spawn(move || {
            let mut connections = Vec::new();
            for _ in 0..CLIENTS {
                let (stream, _peer) = listener.accept()?;
                connections.push(stackful::spawn(move || serve(stream)));
            }
            let mut echoed = 0;
            for c in connections {
                echoed += c.join().expect("a connection's green thread")?;
            }
            Ok::<_, std::io::Error>(echoed)
        });
        let start = std::time::Instant::now();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|id| stackful::spawn(move || client(addr, id)))
            .collect();
        for c in clients {
            c.join().expect("a client's green thread")?;
        }
        let echoed = server.join().expect("the server's green thread")?;
        println!(
            "  {CLIENTS} clients x {ROUNDS} round trips: {echoed} bytes echoed in {} ms",
            start.elapsed().as_millis()
        );
        Ok(())
    })
    .expect("the echo demo's I/O");
}

#[allow(dead_code)]
fn main() {
    demo();
}
