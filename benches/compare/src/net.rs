//! Green sockets beside tokio and may: an echo server and an HTTP/1.1
//! keep-alive hello server in each, under a closed-loop load client of our
//! own.
//!
//! Each measurement runs in a fresh child process (this binary with
//! `--net-child <runtime> <connections> <echo|http>`). The child pins itself
//! to CPU 0, starts the runtime's server there (2 workers, which inherit the
//! pinning), then runs the load client on a thread pinned to CPU 1, as
//! `taskset -c` would: `connections` TCP connections, each sending a
//! message (64 bytes; or a `GET` request) and waiting for the whole answer
//! (the 64 bytes back; or the fixed hello response) before it sends again,
//! over one epoll instance. After a warm-up it counts round trips for a
//! fixed time and keeps every latency for p50 and p99; the child reports
//! those, the rate, its peak RSS (VmHWM) and the number of errors.
//!
//! Every server reads into a 4 KiB buffer on its stack or in its task; the
//! last echo row reads into 2 KiB (`STACKFUL_COMPARE_BUF=2048` in the
//! child's environment), which keeps a green thread's frames within one
//! page of stack.
//!
//! The three HTTP servers share one request splitter ([`requests`]), which
//! counts the complete requests in what has arrived (a request ends with an
//! empty line; these carry no body), and answer each with the same bytes.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{WORKERS, common::status_kib, fmt, ratio};

const MSG: usize = 64;

/// The load's request in HTTP mode.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: stackful-compare\r\n\r\n";
/// Every HTTP server's answer.
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!";

/// Which server a child runs.
#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Echo,
    Http,
}

/// HTTP mode: appends `new` to `pending`, removes the complete requests
/// from its front, and returns how many there were.
fn requests(pending: &mut Vec<u8>, new: &[u8]) -> usize {
    pending.extend_from_slice(new);
    let mut count = 0;
    let mut start = 0;
    while let Some(end) = pending[start..].windows(4).position(|w| w == b"\r\n\r\n") {
        start += end + 4;
        count += 1;
    }
    pending.drain(..start);
    count
}

/// HTTP mode: the answers to `count` requests, in one buffer.
fn responses(count: usize) -> Vec<u8> {
    RESPONSE.repeat(count)
}
const WARMUP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(2);

/// Pins the calling thread to one CPU (best effort: a machine with fewer
/// CPUs keeps the default).
fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity read and write only that set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Raises the descriptor limit for many connections: to 65 536 where the
/// process may raise its hard limit (root), else to the hard limit.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit read and write the one struct given.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            let want = lim.rlim_max.max(65_536);
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: want,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    }
}

/// Whether the servers read into a 2 KiB buffer instead of 4 KiB
/// (`STACKFUL_COMPARE_BUF=2048` in the child's environment). A green
/// thread whose deepest frames fit in one 4 KiB page touches one page of
/// stack; a 4 KiB buffer on the stack makes it two.
fn small_buffer() -> bool {
    static SMALL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SMALL.get_or_init(|| std::env::var("STACKFUL_COMPARE_BUF").is_ok_and(|v| v == "2048"))
}

/// A connection of a blocking-style server (stackful's, may's): echo, or
/// answer each complete request, until the peer closes or an error.
fn serve(stream: impl Read + Write, proto: Proto) {
    if small_buffer() {
        serve_with::<2048>(stream, proto)
    } else {
        serve_with::<4096>(stream, proto)
    }
}

#[inline(never)]
fn serve_with<const N: usize>(mut stream: impl Read + Write, proto: Proto) {
    let mut buf = [0u8; N];
    let mut pending = Vec::new();
    while let Ok(n) = stream.read(&mut buf) {
        let out = match proto {
            _ if n == 0 => break,
            Proto::Echo => stream.write_all(&buf[..n]),
            Proto::Http => match requests(&mut pending, &buf[..n]) {
                0 => Ok(()),
                k => stream.write_all(&responses(k)),
            },
        };
        if out.is_err() {
            break;
        }
    }
}

fn stackful_server(addr_tx: mpsc::Sender<SocketAddr>, proto: Proto) {
    let rt = stackful::Runtime::builder()
        .workers(WORKERS)
        .build()
        .unwrap();
    std::thread::spawn(move || {
        rt.run(|| {
            let listener = stackful::net::TcpListener::bind("127.0.0.1:0").unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept() else {
                    continue; // out of descriptors: accept backs off itself
                };
                stackful::spawn(move || {
                    let _ = stream.set_nodelay(true);
                    serve(stream, proto);
                });
            }
        })
    });
}

fn tokio_server(addr_tx: mpsc::Sender<SocketAddr>, proto: Proto) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .unwrap();
    std::thread::spawn(move || {
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                if small_buffer() {
                    tokio::spawn(tokio_serve::<2048>(stream, proto));
                } else {
                    tokio::spawn(tokio_serve::<4096>(stream, proto));
                }
            }
        })
    });
}

/// A connection of tokio's server: `serve`'s loop in a task.
async fn tokio_serve<const N: usize>(mut stream: tokio::net::TcpStream, proto: Proto) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; N];
    let mut pending = Vec::new();
    while let Ok(n) = stream.read(&mut buf).await {
        let out = match proto {
            _ if n == 0 => break,
            Proto::Echo => stream.write_all(&buf[..n]).await,
            Proto::Http => match requests(&mut pending, &buf[..n]) {
                0 => Ok(()),
                k => stream.write_all(&responses(k)).await,
            },
        };
        if out.is_err() {
            break;
        }
    }
}

fn may_server(addr_tx: mpsc::Sender<SocketAddr>, proto: Proto) {
    super::may_cases::configure();
    // SAFETY: may's spawn is unsafe because it may move a running
    // coroutine between threads; these bodies hold no thread-local state or
    // !Send values across a switch.
    unsafe {
        may::coroutine::spawn(move || {
            let listener = may::net::TcpListener::bind("127.0.0.1:0").unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            for stream in listener.incoming() {
                let Ok(stream) = stream else {
                    may::coroutine::sleep(Duration::from_millis(20));
                    continue;
                };
                may::coroutine::spawn(move || {
                    let _ = stream.set_nodelay(true);
                    serve(stream, proto);
                });
            }
        });
    }
}

/// What one load run measured.
struct Load {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
    /// The server's CPU time per round trip in the measured window: the
    /// process's CPU time less this client thread's.
    server_cpu_us: f64,
    /// The share of the window this client thread was on a CPU: near 100%,
    /// the rate measures the client as much as the server.
    client_busy: f64,
}

/// CPU time of the clock `id` (the process's or this thread's).
fn cpu_time(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(id, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The process id of a server in another process (`ext=ADDR@PID`), whose
/// CPU time then stands in for this process's.
static EXTERNAL_SERVER: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// The CPU time of process `pid` so far, from `/proc/PID/stat` (user and
/// system, in clock ticks).
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |i: usize| -> u64 {
        rest.split_whitespace()
            .nth(i)
            .and_then(|f| f.parse().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    // utime and stime are the 14th and 15th fields, the 12th and 13th after the name.
    Duration::from_nanos((field(11) + field(12)) * 1_000_000_000 / hz)
}

/// The process's (with an external server: that server's plus this
/// thread's) and this thread's CPU time.
fn cpu_times() -> (Duration, Duration) {
    let thread = cpu_time(libc::CLOCK_THREAD_CPUTIME_ID);
    match EXTERNAL_SERVER.get() {
        Some(&pid) => (process_cpu(pid) + thread, thread),
        None => (cpu_time(libc::CLOCK_PROCESS_CPUTIME_ID), thread),
    }
}

/// The closed-loop client: `conns` connections over one epoll instance.
fn load(addr: SocketAddr, conns: usize, proto: Proto) -> Load {
    let (msg, answer): (&[u8], usize) = match proto {
        Proto::Echo => (&[7u8; MSG], MSG),
        Proto::Http => (REQUEST, RESPONSE.len()),
    };
    let mut errors = 0u64;
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        match std::net::TcpStream::connect(addr) {
            Ok(s) => {
                s.set_nodelay(true).unwrap();
                s.set_nonblocking(true).unwrap();
                streams.push(s);
            }
            Err(_) => errors += 1,
        }
    }
    // SAFETY: plain epoll calls on descriptors this function owns.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1");
    for (i, s) in streams.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: `ev` is a valid event, `s` an open socket.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
    }
    let mut sent_at = vec![Instant::now(); streams.len()];
    let mut pending = vec![0usize; streams.len()]; // bytes still to come back
    for (i, s) in streams.iter_mut().enumerate() {
        if s.write_all(msg).is_err() {
            errors += 1;
        }
        sent_at[i] = Instant::now();
        pending[i] = answer;
    }
    let start = Instant::now();
    let mut cpu_from = None;
    let measure_from = start + WARMUP;
    let end = measure_from + MEASURE;
    let mut latencies: Vec<u32> = Vec::with_capacity(1 << 20);
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut buf = [0u8; 4096];
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now >= measure_from && cpu_from.is_none() {
            cpu_from = Some(cpu_times());
        }
        // SAFETY: `events` has room for its length.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 10) };
        for ev in &events[..n.max(0) as usize] {
            let i = ev.u64 as usize;
            let s = &mut streams[i];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => {
                        // Closed by the server: an error, counted once.
                        errors += 1;
                        // SAFETY: `s` is registered with `ep`.
                        unsafe {
                            libc::epoll_ctl(
                                ep,
                                libc::EPOLL_CTL_DEL,
                                s.as_raw_fd(),
                                std::ptr::null_mut(),
                            )
                        };
                        break;
                    }
                    Ok(got) => {
                        pending[i] = pending[i].saturating_sub(got);
                        if pending[i] == 0 {
                            let now = Instant::now();
                            if now >= measure_from && now < end {
                                latencies.push((now - sent_at[i]).as_nanos() as u32);
                            }
                            if s.write_all(msg).is_err() {
                                errors += 1;
                            }
                            sent_at[i] = Instant::now();
                            pending[i] = answer;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        errors += 1;
                        // SAFETY: `s` is registered with `ep`.
                        unsafe {
                            libc::epoll_ctl(
                                ep,
                                libc::EPOLL_CTL_DEL,
                                s.as_raw_fd(),
                                std::ptr::null_mut(),
                            )
                        };
                        break;
                    }
                }
            }
        }
    }
    let (process, client) = cpu_times();
    let (process0, client0) = cpu_from.unwrap_or((process, client));
    let client_cpu = client - client0;
    let server_cpu = (process - process0).saturating_sub(client_cpu);
    // SAFETY: `ep` is ours, closed once.
    unsafe { libc::close(ep) };
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |&ns| ns as f64 / 1000.0)
    };
    Load {
        rate: latencies.len() as f64 / MEASURE.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        errors,
        server_cpu_us: server_cpu.as_secs_f64() * 1e6 / latencies.len().max(1) as f64,
        client_busy: 100.0 * client_cpu.as_secs_f64() / MEASURE.as_secs_f64(),
    }
}

/// The server's peak RSS: this process's, or the external server's.
fn peak_rss_kib() -> u64 {
    let Some(pid) = EXTERNAL_SERVER.get() else {
        return status_kib("VmHWM:");
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The child side: `args` = [runtime, connections, echo|http]. The runtime
/// `ext=ADDR@PID` drives a server already running in process `PID` (the Go
/// reference server in `go/`, started on CPU 0), and reports that process's
/// CPU time and peak RSS as the server's.
pub fn child(args: &[String]) {
    let (rt, conns) = (args[0].as_str(), args[1].parse::<usize>().unwrap());
    let proto = match args.get(2).map(String::as_str) {
        Some("http") => Proto::Http,
        _ => Proto::Echo,
    };
    raise_fd_limit();
    pin(0);
    let (addr_tx, addr_rx) = mpsc::channel();
    match rt {
        _ if rt.starts_with("ext=") => {
            let (addr, pid) = rt["ext=".len()..]
                .split_once('@')
                .expect("ext=ADDR@PID: the address and process id the server printed");
            EXTERNAL_SERVER
                .set(pid.parse().expect("ext=ADDR@PID: PID is a process id"))
                .unwrap();
            addr_tx
                .send(addr.parse().expect("ext=ADDR@PID: ADDR is an address"))
                .unwrap();
        }
        "stackful" => stackful_server(addr_tx, proto),
        "tokio" => tokio_server(addr_tx, proto),
        _ => may_server(addr_tx, proto),
    }
    let addr = addr_rx.recv().unwrap();
    let client = std::thread::spawn(move || {
        pin(1);
        load(addr, conns, proto)
    });
    let l = client.join().unwrap();
    println!(
        "{} {} {} {} {} {} {}",
        l.rate,
        l.p50_us,
        l.p99_us,
        peak_rss_kib() as f64 / 1024.0,
        l.errors,
        l.server_cpu_us,
        l.client_busy
    );
    // The servers run forever: leave without tearing them down.
    std::process::exit(0);
}

/// The figures a child prints, in the order of `proto_table`'s names.
const FIGURES: usize = 7;

/// Runs one child; its seven figures, or `None` if it failed.
fn run_child(rt: &str, conns: usize, small: bool, proto: Proto) -> Option<[f64; FIGURES]> {
    let proto = if proto == Proto::Http { "http" } else { "echo" };
    let mut child = Command::new(std::env::current_exe().ok()?);
    child.args(["--net-child", rt, &conns.to_string(), proto]);
    if small {
        child.env("STACKFUL_COMPARE_BUF", "2048");
    } else {
        child.env_remove("STACKFUL_COMPARE_BUF");
    }
    let out = child.output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let figures = v.try_into().ok();
    if figures.is_none() {
        eprintln!(
            "the {rt} child with {conns} connections ({proto}) failed ({}): {}{}",
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    figures
}

/// The medians of `runs` children per runtime, figure by figure.
fn median_of(
    rt: &str,
    conns: usize,
    small: bool,
    runs: usize,
    proto: Proto,
) -> Option<[f64; FIGURES]> {
    let mut all: Vec<[f64; FIGURES]> = (0..runs)
        .filter_map(|_| run_child(rt, conns, small, proto))
        .collect();
    if all.is_empty() {
        return None;
    }
    let mut out = [0.0; FIGURES];
    for (k, slot) in out.iter_mut().enumerate() {
        all.sort_by(|a, b| a[k].total_cmp(&b[k]));
        *slot = all[all.len() / 2][k];
    }
    Some(out)
}

/// Prints the echo and HTTP tables (those whose name `only` matches, if
/// given).
pub fn table(only: Option<&str>) {
    let wants = |name: &str| only.is_none_or(|o| name.contains(o) || o.contains(name));
    if wants("echo") {
        proto_table(
            Proto::Echo,
            "echo, 64-byte round trips",
            &[
                (100, false),
                (1_000, false),
                (10_000, false),
                (10_000, true),
            ],
        );
    }
    if wants("http") {
        proto_table(
            Proto::Http,
            "HTTP/1.1 hello, keep-alive, one request at a time per connection",
            &[(100, false), (1_000, false)],
        );
    }
}

/// One table; each row group is a connection count, and whether the
/// servers read into a 2 KiB buffer rather than 4 KiB.
fn proto_table(proto: Proto, title: &str, conns_list: &[(usize, bool)]) {
    println!(
        "\n{title}, closed loop: server on CPU 0 ({WORKERS} workers), our client on CPU 1; \
         {}s measured after {}ms, medians of 3 child processes",
        MEASURE.as_secs(),
        WARMUP.as_millis()
    );
    println!("| connections | figure | stackful | tokio | may | stackful/tokio | may/tokio |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for &(conns, small) in conns_list {
        let runs = if conns >= 10_000 { 1 } else { 3 };
        let [s, t, m] =
            ["stackful", "tokio", "may"].map(|rt| median_of(rt, conns, small, runs, proto));
        let label = if small {
            format!("{conns}, 2 KiB buffer")
        } else {
            conns.to_string()
        };
        let names = [
            "round trips/s",
            "p50 µs",
            "p99 µs",
            "peak RSS MiB",
            "errors",
            "server CPU µs per round trip",
            "client thread busy %",
        ];
        for (k, name) in names.iter().enumerate() {
            let (s, t, m) = (s.map(|v| v[k]), t.map(|v| v[k]), m.map(|v| v[k]));
            println!(
                "| {label} | {name} | {} | {} | {} | {} | {} |",
                fmt(s),
                fmt(t),
                fmt(m),
                ratio(s, t),
                ratio(m, t)
            );
        }
    }
}
