//! A TLS echo server and its clients, with rustls running unchanged on
//! green threads.
//!
//! rustls is a synchronous library: its `StreamOwned` wraps any transport
//! that is `std::io::Read + Write`, and is one itself. Given a
//! `stackful::net::TcpStream`, a read or write inside the handshake or a
//! record that would block suspends only its green thread, so each
//! connection is served in plain blocking style, lines read with
//! `std::io::BufReader`. The server's self-signed certificate is made at
//! start with `rcgen`, and the clients trust that one certificate. 8
//! clients then talk to the server at once, each from a green thread, and
//! check what comes back.
//!
//! ```text
//! cargo run --example tls_echo
//! ```

use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls::{StreamOwned, SupportedCipherSuite};
use stackful::net::{TcpListener, TcpStream};

const CLIENTS: usize = 8;
const LINES: usize = 4;

/// A fresh self-signed certificate for "localhost": the server's config
/// holds it with its key, the client's trusts it as its only root.
fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(["localhost".to_string()]).expect("a certificate");
    let key = PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let server = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("the server's config");
    let mut roots = RootCertStore::empty();
    roots
        .add(cert.der().clone())
        .expect("the certificate as a root");
    let client = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// Echoes the lines `stream` sends over TLS until the client says goodbye
/// (its close_notify); returns how many lines it echoed.
fn serve(config: Arc<ServerConfig>, stream: TcpStream) -> io::Result<usize> {
    stream.set_nodelay(true)?; // small records go out at once
    let conn = ServerConnection::new(config).map_err(io::Error::other)?;
    let mut tls = BufReader::new(StreamOwned::new(conn, stream));
    let (mut line, mut lines) = (String::new(), 0);
    while tls.read_line(&mut line)? != 0 {
        tls.get_mut().write_all(line.as_bytes())?; // BufReader reads, its inner writes
        line.clear();
        lines += 1;
    }
    tls.get_mut().conn.send_close_notify(); // goodbye back
    tls.get_mut().flush()?;
    Ok(lines)
}

/// One client: the handshake, `LINES` lines out and back, then a clean
/// TLS goodbye both ways. Returns the cipher suite the two agreed on.
fn client(
    addr: std::net::SocketAddr,
    config: Arc<ClientConfig>,
    id: usize,
) -> io::Result<SupportedCipherSuite> {
    let name = ServerName::try_from("localhost").expect("a DNS name");
    let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut tls = BufReader::new(StreamOwned::new(conn, stream));
    let mut back = String::new();
    for n in 0..LINES {
        let line = format!("client {id} line {n}\n");
        tls.get_mut().write_all(line.as_bytes())?; // the first runs the handshake
        back.clear();
        tls.read_line(&mut back)?;
        assert_eq!(back, line, "the echo differs");
    }
    tls.get_mut().conn.send_close_notify();
    tls.get_mut().flush()?;
    back.clear();
    // The end of the stream: clean only after the server's close_notify (a
    // bare TCP close would be an UnexpectedEof error).
    tls.read_to_string(&mut back)?;
    assert!(back.is_empty());
    let suite = tls.get_ref().conn.negotiated_cipher_suite();
    Ok(suite.expect("a finished handshake"))
}

/// Runs the server and its clients; panics on an I/O or TLS error.
pub fn demo() {
    let (server_config, client_config) = configs();
    stackful::run(move || -> io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0")?; // any free port
        let addr = listener.local_addr()?;
        println!("  TLS echo server on {addr}");
        let server = stackful::spawn(move || {
            let mut connections = Vec::new();
            for _ in 0..CLIENTS {
                let (stream, _peer) = listener.accept()?;
                let config = server_config.clone();
                connections.push(stackful::spawn(move || serve(config, stream)));
            }
            let mut echoed = 0;
            for c in connections {
                echoed += c.join().expect("a connection's green thread")?;
            }
            Ok::<_, io::Error>(echoed)
        });
        let start = std::time::Instant::now();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|id| {
                let config = client_config.clone();
                stackful::spawn(move || client(addr, config, id))
            })
            .collect();
        let mut suite = None;
        for c in clients {
            suite = Some(c.join().expect("a client's green thread")?);
        }
        let echoed = server.join().expect("the server's green thread")?;
        assert_eq!(echoed, CLIENTS * LINES);
        println!(
            "  {CLIENTS} clients x {LINES} lines: {echoed} lines echoed over {:?} in {} ms",
            suite.expect("a client").suite(),
            start.elapsed().as_millis()
        );
        Ok(())
    })
    .expect("the TLS demo's I/O");
}

#[allow(dead_code)]
fn main() {
    demo();
}
