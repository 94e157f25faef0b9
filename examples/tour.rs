//! A tour of stackful, following the Python coroutine guide.
//! Run it with `cargo run --release --example tour`.
//!
//! The asyncio patterns are examples of their own too (`gather`,
//! `wait_first`, `offload`, `timeout`, `scope`, `channel_producer_consumer`,
//! `crawler`, `pipeline`), and so are the green sockets (`echo`, `chat`,
//! `http_hello`, `tls_echo`); the tour includes them.

#[path = "channel_producer_consumer.rs"]
mod channel_producer_consumer;
#[path = "chat.rs"]
mod chat;
#[path = "crawler.rs"]
mod crawler;
#[path = "echo.rs"]
mod echo;
#[path = "gather.rs"]
mod gather;
#[path = "http_hello.rs"]
mod http_hello;
#[path = "offload.rs"]
mod offload;
#[path = "pipeline.rs"]
mod pipeline;
#[path = "scope.rs"]
mod scope;
#[path = "timeout.rs"]
mod timeout;
#[path = "tls_echo.rs"]
mod tls_echo;
#[path = "wait_first.rs"]
mod wait_first;

use std::time::Duration;

use stackful::generator::{Builder, scoped};
use stackful::{Co, Generator, GeneratorState};

fn section(title: &str) {
    println!("\n== {title}");
}

/// Python: `def consumer(): ... n = yield r ...`
fn generator_protocol() {
    section("generator protocol: send, yield, return");
    let mut consumer = Generator::new(|co, first: Option<u32>| {
        let mut next = first;
        let mut served = 0;
        while let Some(n) = next {
            println!("[CONSUMER] consuming {n}");
            served += 1;
            next = co.yield_(format!("200 OK {n}"));
        }
        served
    });
    for n in 1..=3 {
        if let GeneratorState::Yielded(reply) = consumer.send(Some(n)) {
            println!("[PRODUCER] got {reply}");
        }
    }
    println!("[PRODUCER] consumer served {:?}", consumer.send(None));
}

/// Python: `r = yield from sub()`
fn yield_from() {
    section("yield from: delegating to a sub-generator");
    fn countdown(from: u32) -> Generator<u32, (), &'static str> {
        Generator::new(move |co, ()| {
            for i in (1..=from).rev() {
                co.yield_(i);
            }
            "liftoff"
        })
    }
    let mission = Generator::new(|co, ()| {
        let first = co.yield_from(countdown(3), ());
        println!("  sub-generator returned {first:?}");
        co.yield_from(countdown(2), ())
    });
    let seen: Vec<u32> = mission.collect();
    println!("yielded {seen:?}");
}

/// No function colouring: ordinary recursive functions yield through `&Co`.
fn recursion() {
    section("yielding from deep inside ordinary functions");
    fn permutations(co: &Co<String>, prefix: &mut String, rest: &mut Vec<char>) {
        if rest.is_empty() {
            co.yield_(prefix.clone());
        }
        for i in 0..rest.len() {
            let c = rest.remove(i);
            prefix.push(c);
            permutations(co, prefix, rest);
            prefix.pop();
            rest.insert(i, c);
        }
    }
    let all: Vec<String> =
        Generator::new(|co, ()| permutations(co, &mut String::new(), &mut vec!['a', 'b', 'c']))
            .collect();
    println!("permutations of abc: {all:?}");
}

/// Python: `g.close()` raises GeneratorExit inside the body; `finally` runs.
fn close() {
    section("close: the body unwinds and its destructors run");
    struct Connection(&'static str);
    impl Drop for Connection {
        fn drop(&mut self) {
            println!("  closing connection {}", self.0);
        }
    }
    let mut reader = Builder::new()
        .name("reader")
        .build(|co, ()| {
            let _conn = Connection("db-1");
            for row in 0.. {
                co.yield_(row);
            }
        })
        .expect("could not map a stack");
    println!("read {:?} and {:?}", reader.resume(), reader.resume());
    reader.close();
    println!("reader done: {}", reader.is_done());
}

/// Bodies may borrow from the caller's frame inside a scope.
fn scoped_generator() {
    section("scoped generators borrow local data");
    let words = vec!["stackful".to_string(), "coroutines".to_string()];
    let mut total = 0;
    scoped(
        |co, ()| {
            for w in &words {
                co.yield_(w.len());
            }
        },
        |g| g.for_each(|n| total += n),
    );
    println!("total length of {words:?}: {total}");
}

stackful::task_local! {
    /// Python's `contextvars.ContextVar`: one value per green thread.
    static REQUEST: std::cell::Cell<u32> = std::cell::Cell::new(0);
}

/// Each green thread keeps its own request id across its suspensions.
fn task_locals() {
    section("green-thread-locals (contextvars)");
    let seen = stackful::run(|| {
        let handlers: Vec<_> = (1..=3)
            .map(|id| {
                stackful::spawn(move || {
                    REQUEST.set(id);
                    stackful::sleep(Duration::from_millis(5)); // the others run meanwhile
                    format!("request {} handled", REQUEST.get())
                })
            })
            .collect();
        stackful::gather(handlers).unwrap()
    });
    println!("{seen:?}");
}

/// A set that grows while it runs, joined in completion order.
fn join_set() {
    section("a JoinSet joined in completion order (tokio's JoinSet)");
    stackful::run(|| {
        let mut set = stackful::JoinSet::new();
        for ms in [30, 10, 20] {
            set.spawn(move || {
                stackful::sleep(Duration::from_millis(ms));
                ms
            });
        }
        while let Some(done) = set.join_next() {
            println!("finished after {} ms", done.unwrap());
        }
    });
}

/// A token that another green thread fires unwinds blocking-style code.
fn cancellation_token() {
    section("a cancellation token stops a worker loop (tokio-util's CancellationToken)");
    stackful::run(|| {
        let token = stackful::CancellationToken::new();
        let stop = token.clone();
        stackful::spawn(move || {
            stackful::sleep(Duration::from_millis(25));
            stop.cancel();
        });
        let ticks = std::cell::Cell::new(0);
        let outcome = token.run(|| {
            let mut every = stackful::interval(Duration::from_millis(10));
            loop {
                every.tick(); // a suspension point: the cancel lands here
                ticks.set(ticks.get() + 1);
            }
        });
        println!("worker loop: {outcome:?} after {} ticks", ticks.get());
    });
}

fn main() {
    generator_protocol();
    yield_from();
    recursion();
    close();
    scoped_generator();
    section("green threads: gather three delayed fetches (asyncio.gather)");
    gather::demo();
    section("wait for the first to complete, then the rest (asyncio.wait)");
    wait_first::demo();
    section("a blocking call offloaded while a ticker keeps ticking (run_in_executor)");
    offload::demo();
    section("a one-hour task cut off by a 1 s timeout (asyncio.wait_for)");
    timeout::demo();
    section("a scope whose children borrow a local vector (TaskGroup)");
    scope::demo();
    section("producer/consumer as two green threads and channels (asyncio.Queue)");
    channel_producer_consumer::demo();
    section("a crawler: 200 fetches, at most 10 in flight (asyncio.Semaphore)");
    crawler::demo();
    section("a pipeline over bounded channels, fed by an OS thread");
    pipeline::demo();
    task_locals();
    join_set();
    cancellation_token();
    section("an echo server and 100 clients over green sockets (asyncio streams)");
    echo::demo();
    section("a chat room: BufReader lines, broadcast through channels");
    chat::demo();
    section("HTTP/1.1 keep-alive with pipelining, parsed by httparse");
    http_hello::demo();
    section("TLS echo: rustls's blocking StreamOwned over green sockets, unchanged");
    tls_echo::demo();
}
