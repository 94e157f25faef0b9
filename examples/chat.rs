//! A line-based chat server: every line a client sends goes to every other
//! client, through `stackful::sync` channels.
//!
//! Each connection gets two green threads: a reader that parses lines with
//! `std::io::BufReader` (an ordinary `std::io::Read` user, unchanged) and
//! hands them to the hub, and a writer that sends the client what the hub
//! broadcasts. The hub is one green thread that owns the list of clients,
//! and announces when the room is full. Three scripted clients join, wait
//! for the announcement, talk, and leave, and the example checks that each
//! heard the others.
//!
//! ```text
//! cargo run --example chat
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;

use stackful::net::{TcpListener, TcpStream};
use stackful::sync::{Receiver, Sender, unbounded};

/// What the connections tell the hub.
enum Event {
    Joined(usize, Sender<String>),
    Said(usize, String),
    Left(usize),
}

/// How many clients the room waits for before it announces itself.
const ROOM: usize = 3;

/// Owns the clients' outboxes; relays every line to everyone else.
fn hub(events: Receiver<Event>) {
    let mut outboxes: Vec<(usize, Sender<String>)> = Vec::new();
    for event in events {
        match event {
            Event::Joined(id, outbox) => {
                outboxes.push((id, outbox));
                if outboxes.len() == ROOM {
                    for (_, outbox) in &outboxes {
                        let _ = outbox.send(format!("* all {ROOM} here\n"));
                    }
                }
            }
            Event::Said(from, line) => {
                for (id, outbox) in &outboxes {
                    if *id != from {
                        let _ = outbox.send(format!("{from}: {line}\n"));
                    }
                }
            }
            Event::Left(id) => outboxes.retain(|(other, _)| *other != id),
        }
    }
}

/// Serves one client: a reader green thread (this one) and a writer.
fn connection(id: usize, stream: TcpStream, hub: Sender<Event>) -> std::io::Result<()> {
    let (outbox, inbox) = unbounded::<String>();
    let mut out = stream.try_clone()?;
    let writer = stackful::spawn(move || -> std::io::Result<()> {
        for line in inbox {
            out.write_all(line.as_bytes())?;
        }
        out.shutdown(Shutdown::Write)
    });
    hub.send(Event::Joined(id, outbox)).expect("the hub");
    for line in BufReader::new(&stream).lines() {
        hub.send(Event::Said(id, line?)).expect("the hub");
    }
    hub.send(Event::Left(id)).expect("the hub"); // drops our outbox: the writer ends
    writer.join().expect("the writer")
}

/// A scripted client: waits until the room is full, says `lines`, then
/// reads until it has heard `expect` lines from the others.
fn client(addr: std::net::SocketAddr, lines: &[&str], expect: usize) -> Vec<String> {
    let stream = TcpStream::connect(addr).expect("connect");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let mut line = String::new();
    while !line.starts_with("* all") {
        line.clear();
        assert!(
            reader.read_line(&mut line).expect("read") > 0,
            "the room closed"
        );
    }
    for line in lines {
        writeln!(writer, "{line}").expect("write");
    }
    let mut heard = Vec::new();
    while heard.len() < expect {
        line.clear();
        if reader.read_line(&mut line).expect("read") == 0 {
            break;
        }
        heard.push(line.trim_end().to_string());
    }
    writer.shutdown(Shutdown::Write).expect("shutdown");
    heard
}

/// Runs the room and its three clients.
pub fn demo() {
    stackful::run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let (events, hub_rx) = unbounded();
        let hub_thread = stackful::spawn(move || hub(hub_rx));
        let accepting = {
            let events = events.clone();
            stackful::spawn(move || {
                let mut conns = Vec::new();
                for id in 0..ROOM {
                    let (stream, _) = listener.accept().expect("accept");
                    let events = events.clone();
                    conns.push(stackful::spawn(move || connection(id, stream, events)));
                }
                for c in conns {
                    c.join().expect("a connection").expect("its I/O");
                }
            })
        };
        drop(events);
        // Each client hears the two lines of each of the two others.
        let scripts: [&'static [&str]; ROOM] = [
            &["hi, I am A", "bye from A"],
            &["B here", "B out"],
            &["C!", "C?"],
        ];
        let clients: Vec<_> = scripts
            .into_iter()
            .map(|lines| stackful::spawn(move || client(addr, lines, 4)))
            .collect();
        let heard: Vec<Vec<String>> = clients
            .into_iter()
            .map(|c| c.join().expect("a client"))
            .collect();
        for (name, lines) in ["A", "B", "C"].iter().zip(&heard) {
            println!("  {name} heard {lines:?}");
            assert_eq!(lines.len(), 4, "{name} heard the two others");
        }
        accepting.join().expect("the server");
        hub_thread.join().expect("the hub");
    });
}

#[allow(dead_code)]
fn main() {
    demo();
}
