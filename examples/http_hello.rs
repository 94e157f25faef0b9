//! HTTP/1.1 "hello world" with keep-alive and pipelining, on green threads.
//!
//! Each connection is served by one green thread in blocking style: read
//! into a buffer, parse every complete request in it with `httparse` (a
//! plain synchronous parser), write a response for each, keep the rest for
//! the next read. A pipelining client in the same process sends batches of
//! requests without waiting and checks the responses.
//!
//! ```text
//! cargo run --release --example http_hello            # the self-check below
//! cargo run --release --example http_hello -- serve   # serve on 127.0.0.1:8080
//! ```
//!
//! Served, it takes load from any HTTP client, `wrk` included.

use std::io::{self, Read, Write};

use stackful::net::{TcpListener, TcpStream};

const BODY: &str = "Hello, world!\n";

/// Serves requests on `stream` until the client closes it.
fn serve(mut stream: TcpStream) -> io::Result<u64> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 8192];
    let mut filled = 0;
    let mut out = Vec::with_capacity(4096);
    let mut served = 0;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0); // a large request head
        }
        let n = stream.read(&mut buf[filled..])?;
        if n == 0 {
            return Ok(served);
        }
        filled += n;
        // Every complete request in the buffer: pipelined ones come in
        // together, and are answered together.
        let mut start = 0;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf[start..filled]) {
                Ok(httparse::Status::Complete(len)) => {
                    let close = req.headers.iter().any(|h| {
                        h.name.eq_ignore_ascii_case("connection")
                            && h.value.eq_ignore_ascii_case(b"close")
                    });
                    write!(
                        out,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{BODY}",
                        BODY.len(),
                        if close { "Connection: close\r\n" } else { "" }
                    )?;
                    served += 1;
                    start += len;
                    if close {
                        stream.write_all(&out)?;
                        return Ok(served);
                    }
                }
                Ok(httparse::Status::Partial) => break,
                Err(e) => {
                    stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")?;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
        }
        stream.write_all(&out)?;
        out.clear();
        buf.copy_within(start..filled, 0);
        filled -= start;
    }
}

/// Accepts forever, a green thread per connection.
fn accept_loop(listener: TcpListener) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept()?;
        stackful::spawn(move || {
            if let Err(e) = serve(stream) {
                eprintln!("connection: {e}");
            }
        });
    }
}

/// Sends `batches` batches of `depth` pipelined requests on one
/// connection and checks that as many responses come back.
fn client(addr: std::net::SocketAddr, batches: usize, depth: usize) -> io::Result<usize> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    for _ in 0..batches {
        for _ in 0..depth {
            stream.write_all(request)?;
        }
        let (mut filled, mut answered) = (0, 0);
        while answered < depth {
            let n = stream.read(&mut buf[filled..])?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            filled += n;
            let mut start = 0;
            loop {
                let mut headers = [httparse::EMPTY_HEADER; 8];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&buf[start..filled]) {
                    Ok(httparse::Status::Complete(head)) if filled - start >= head + BODY.len() => {
                        assert_eq!(resp.code, Some(200));
                        assert_eq!(
                            &buf[start + head..start + head + BODY.len()],
                            BODY.as_bytes()
                        );
                        start += head + BODY.len();
                        answered += 1;
                    }
                    Ok(_) => break, // the rest has not arrived yet
                    Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                }
            }
            buf.copy_within(start..filled, 0);
            filled -= start;
        }
        got += answered;
    }
    Ok(got)
}

/// The self-check: pipelining clients against the server, in one process.
pub fn demo() {
    stackful::run(|| -> io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let server = stackful::spawn(move || accept_loop(listener));
        let start = std::time::Instant::now();
        let clients: Vec<_> = (0..50)
            .map(|_| stackful::spawn(move || client(addr, 20, 16)))
            .collect();
        let mut total = 0;
        for c in clients {
            total += c.join().expect("a client")?;
        }
        println!(
            "  {total} pipelined requests over 50 keep-alive connections in {} ms",
            start.elapsed().as_millis()
        );
        assert_eq!(total, 50 * 20 * 16);
        server.cancel(); // the accept loop runs forever
        assert!(server.join().is_err_and(|e| e.is_cancelled()));
        Ok(())
    })
    .expect("the HTTP demo's I/O");
}

#[allow(dead_code)]
fn main() -> io::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("serve") {
        return stackful::run(|| {
            let listener = TcpListener::bind("127.0.0.1:8080")?;
            println!("serving on http://{}", listener.local_addr()?);
            accept_loop(listener)
        });
    }
    demo();
    Ok(())
}
