//! Found in review of `stackful::io::{stdin, stdout, stderr}` and of the
//! switch of green socket calls to `MSG_DONTWAIT`: each test failed before
//! its fix (one is ignored, with the reason: a documented limit). Stdio
//! cases run in a child process (this binary re-run with
//! `REVIEW_STDIO_CASE` set, through `child_entry`).

use std::io::{BufRead, BufReader, IoSlice, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

mod common;
use common::on_one_worker;

const CASE: &str = "REVIEW_STDIO_CASE";
const MARK: &str = "<<review_stdio>>\n";

#[test]
fn child_entry() {
    common::child_case(CASE, MARK, 2, run_case);
}

fn run_case(case: &str) {
    match case {
        // Standard output is a terminal whose reader is slow: a green write
        // must not block the worker.
        "tty_slow_reader" => {
            let (mut master, mut slave) = (0, 0);
            // SAFETY: out-pointers to live ints; no name, termios or size.
            let r = unsafe {
                libc::openpty(
                    &mut master,
                    &mut slave,
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    std::ptr::null(),
                )
            };
            assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
            // SAFETY: replaces descriptor 1 before anything uses it.
            assert_eq!(unsafe { libc::dup2(slave, 1) }, 1);
            let draining = Arc::new(AtomicBool::new(false));
            let drainer = std::thread::spawn({
                let draining = draining.clone();
                move || {
                    // A slow reader: starts after 3 s.
                    std::thread::sleep(Duration::from_secs(3));
                    draining.store(true, Ordering::SeqCst);
                    let mut buf = [0u8; 65536];
                    loop {
                        // SAFETY: a live buffer.
                        let n = unsafe { libc::read(master, buf.as_mut_ptr().cast(), buf.len()) };
                        if n <= 0 {
                            break;
                        }
                    }
                }
            });
            let blocked = Arc::new(AtomicBool::new(false));
            let b2 = blocked.clone();
            on_one_worker(move || {
                let written = Arc::new(AtomicUsize::new(0));
                let w2 = written.clone();
                let writer = stackful::spawn(move || {
                    let line = format!("{}\n", "x".repeat(1023));
                    for _ in 0..200 {
                        stackful::io::stdout().write_all(line.as_bytes()).unwrap();
                        w2.fetch_add(1024, Ordering::SeqCst);
                    }
                });
                let ticker = stackful::spawn(move || {
                    while written.load(Ordering::SeqCst) < 4 * 1024
                        && !draining.load(Ordering::SeqCst)
                    {
                        stackful::yield_now();
                    }
                    for _ in 0..200 {
                        stackful::yield_now();
                    }
                    // Ran before the slow reader started: the worker was free.
                    b2.store(draining.load(Ordering::SeqCst), Ordering::SeqCst);
                    eprintln!("ticker done, written {}", written.load(Ordering::SeqCst));
                });
                ticker.join().unwrap();
                writer.join().unwrap();
            });
            eprintln!("worker blocked: {}", blocked.load(Ordering::SeqCst));
            // SAFETY: closes our slave copies so the drainer sees EOF/EIO.
            unsafe {
                libc::close(1);
                libc::close(slave);
            }
            drainer.join().unwrap();
        }
        // Standard input is a large regular file: a timeout around a loop
        // that reads it must fire (the blocking-pool path has no
        // cancellation point at all).
        "file_timeout" => stackful::run(|| {
            let r = stackful::timeout(Duration::from_millis(1), || {
                stackful::io::stdin().lines().count()
            });
            eprintln!("timeout result: {r:?}");
        }),
        // A partial line followed by a timeout: the bytes read so far must
        // not vanish.
        "partial_line" => stackful::run(|| {
            let mut line = String::new();
            let r = stackful::timeout(Duration::from_millis(300), || {
                stackful::io::stdin().read_line(&mut line)
            });
            assert!(r.is_err());
            eprintln!("timed out with {line:?}");
            stackful::io::stdin().read_line(&mut line).unwrap();
            eprintln!("line {line:?}");
        }),
        other => panic!("unknown case {other}"),
    }
}

fn child(case: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE, case)
        .env_remove("STACKFUL_DEBUG");
    cmd
}

fn child_stderr(out: &[u8]) -> String {
    let t = String::from_utf8_lossy(out).to_string();
    t.split_once(MARK).map(|(_, r)| r.to_string()).unwrap_or(t)
}

#[test]
fn a_green_write_to_a_terminal_with_a_slow_reader_does_not_block_the_worker() {
    let out = child("tty_slow_reader")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = child_stderr(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("worker blocked: false"), "{err}");
}

#[test]
fn a_timeout_around_reading_stdin_from_a_file_fires() {
    let path = std::env::temp_dir().join(format!("review_stdio_{}", std::process::id()));
    let mut f = std::fs::File::create(&path).unwrap();
    for i in 0..400_000 {
        writeln!(f, "line {i}").unwrap();
    }
    drop(f);
    let out = child("file_timeout")
        .stdin(std::fs::File::open(&path).unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let err = child_stderr(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("timeout result: Err"), "{err}");
}

#[test]
#[ignore = "not fixed, documented: a read_line cut by a cancellation loses the part read so \
            far, as with any BufRead (std's read_line consumes the bytes and its unwind guard \
            empties the string)"]
fn a_read_line_cut_by_a_timeout_keeps_the_partial_line() {
    let mut c = child("partial_line")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = c.stdin.take().unwrap();
    input.write_all(b"hel").unwrap();
    let mut err = BufReader::new(c.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut l = String::new();
        assert_ne!(err.read_line(&mut l).unwrap(), 0, "child died: {seen}");
        seen.push_str(&l);
        if l.starts_with("timed out") {
            break;
        }
    }
    input.write_all(b"lo\n").unwrap();
    drop(input);
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert!(c.wait().unwrap().success(), "{seen}{rest}");
    assert!(rest.contains("line \"hello\\n\""), "{seen}{rest}");
}

#[test]
fn green_vectored_writes_of_more_than_iov_max_slices_write_like_std() {
    let ones = vec![[1u8]; 2000];
    let slices: Vec<IoSlice<'_>> = ones.iter().map(|b| IoSlice::new(b)).collect();
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let std_n = (&a).write_vectored(&slices);
    drop((a, b));
    stackful::run(|| {
        let (a, _b) = stackful::net::unix::UnixStream::pair().unwrap();
        let n = (&a).write_vectored(&slices);
        assert_eq!(
            n.as_ref().ok(),
            std_n.as_ref().ok(),
            "std: {std_n:?}, green: {n:?}"
        );
    });
}
