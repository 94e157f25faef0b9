//! `stackful::io::{stdin, stdout, stderr}` on the real descriptors 0, 1 and
//! 2: each case runs in a child process (this test binary re-run with
//! `IO_STD_CASE` set, through the `child_entry` test) whose standard
//! streams the parent connects to pipes, files or devices.

use std::io::{BufRead, BufReader, ErrorKind, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::on_one_worker;

const CASE: &str = "IO_STD_CASE";

/// Written raw to descriptor 1 by the child before its case runs: what the
/// test harness printed before it is ignored.
const MARK: &str = "<<io_std>>\n";

const WAIT: Duration = Duration::from_secs(60);

/// The entry of the child processes; does nothing in a normal test run.
#[test]
fn child_entry() {
    common::child_case(CASE, MARK, 1, run_case);
}

fn run_case(case: &str) {
    match case {
        // Reads lines from a pipe on a green thread while another green
        // thread on the same worker runs; the parent sends the second line
        // only after that other thread has reported progress.
        "pipe_lines" => on_one_worker(|| {
            let read = Arc::new(AtomicUsize::new(0));
            let done = Arc::new(AtomicBool::new(false));
            let reader = stackful::spawn({
                let (read, done) = (read.clone(), done.clone());
                move || {
                    let mut n = 0;
                    for line in stackful::io::stdin().lines() {
                        let line = line.unwrap();
                        writeln!(stackful::io::stdout(), "got {line}").unwrap();
                        n += 1;
                        read.store(n, Ordering::SeqCst);
                    }
                    writeln!(stackful::io::stdout(), "eof after {n}").unwrap();
                    done.store(true, Ordering::SeqCst);
                }
            });
            let ticker = stackful::spawn(move || {
                while read.load(Ordering::SeqCst) == 0 {
                    stackful::yield_now();
                }
                // The reader now waits for a line that the parent sends
                // only after this: a reader blocking the worker would keep
                // these yields from ever finishing.
                for _ in 0..1000 {
                    stackful::yield_now();
                }
                writeln!(stackful::io::stdout(), "ticked").unwrap();
                assert!(!done.load(Ordering::SeqCst));
            });
            ticker.join().unwrap();
            reader.join().unwrap();
        }),
        // A read waiting on an empty pipe is a cancellation point that
        // consumes nothing.
        "pipe_timeout" => stackful::run(|| {
            let mut line = String::new();
            let r = stackful::timeout(Duration::from_millis(50), || {
                stackful::io::stdin().read_line(&mut line)
            });
            assert!(r.is_err(), "nothing was written yet: {r:?}");
            writeln!(stackful::io::stdout(), "timed out").unwrap();
            let n = stackful::io::stdin().read_line(&mut line).unwrap();
            writeln!(stackful::io::stdout(), "{n} {line:?}").unwrap();
        }),
        // Standard input from a regular file or /dev/null: the fallback.
        "read_all_green" => stackful::run(|| {
            let side = stackful::spawn(|| 7);
            let lines: Vec<String> = stackful::io::stdin().lines().map(Result::unwrap).collect();
            let mut rest = Vec::new();
            let n = stackful::io::stdin().read_to_end(&mut rest).unwrap();
            assert_eq!(side.join().unwrap(), 7);
            let mut out = stackful::io::stdout().lock();
            writeln!(out, "{} lines: {}", lines.len(), lines.join("|")).unwrap();
            writeln!(out, "then {n} bytes").unwrap();
        }),
        // A large regular file on standard input, read to its end by a
        // green thread, with the bytes read (`rchar`) by its own OS thread
        // and by the whole process meanwhile: the blocking pool's threads
        // count for the process, not for this one.
        "read_file_pool" => stackful::run(|| {
            let Some(thread_before) = rchar("/proc/thread-self/io") else {
                writeln!(stackful::io::stdout(), "no I/O accounting").unwrap();
                return;
            };
            let process_before = rchar("/proc/self/io").unwrap();
            let mut text = Vec::new();
            let n = stackful::io::stdin().read_to_end(&mut text).unwrap();
            let thread = rchar("/proc/thread-self/io").unwrap() - thread_before;
            let process = rchar("/proc/self/io").unwrap() - process_before;
            let same = text == pattern(BIG_FILE);
            writeln!(
                stackful::io::stdout(),
                "read {n} {same}, by this thread {thread}, by the process {process}"
            )
            .unwrap();
        }),
        // Much more than a pipe holds, from green threads on one worker,
        // while another green thread there runs and reports on stderr; the
        // parent reads standard output only after that report.
        "write_pipe" => on_one_worker(|| {
            let writers: Vec<_> = (0..2)
                .map(|w| {
                    stackful::spawn(move || {
                        for i in 0..LINES {
                            let mut out = stackful::io::stdout().lock();
                            writeln!(out, "{}", line(w, i)).unwrap();
                        }
                    })
                })
                .collect();
            let ticker = stackful::spawn(|| {
                for _ in 0..2000 {
                    stackful::yield_now();
                }
                eprintln!("ticked");
            });
            ticker.join().unwrap();
            for w in writers {
                w.join().unwrap();
            }
        }),
        // Output to a file or a device: the fallback; a partial line is
        // flushed at exit.
        "write_green" => stackful::run(|| {
            let writers: Vec<_> = (0..3)
                .map(|w| {
                    stackful::spawn(move || {
                        for i in 0..100 {
                            writeln!(stackful::io::stdout(), "{}", line(w, i)).unwrap();
                        }
                    })
                })
                .collect();
            for w in writers {
                w.join().unwrap();
            }
            write!(stackful::io::stdout(), "no newline").unwrap();
        }),
        // /dev/full: the error reaches the writer.
        "write_full" => stackful::run(|| {
            // Here, not in the parent: the harness would fail to write.
            let full = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap();
            let fd = std::os::fd::AsRawFd::as_raw_fd(&full);
            // SAFETY: replaces descriptor 1 before anything here uses it.
            let r = unsafe { libc::dup2(fd, 1) };
            assert_eq!(r, 1);
            let mut out = stackful::io::stdout();
            let e = writeln!(out, "x").unwrap_err();
            eprintln!("error kind {:?}", e.kind());
            // Stderr is a pipe: written fine.
            writeln!(stackful::io::stderr(), "stderr fine").unwrap();
        }),
        // A plain OS thread (no runtime at all), then a blocking-pool job.
        "plain" => {
            let mut first = String::new();
            stackful::io::stdin().read_line(&mut first).unwrap();
            println!("std line"); // std's own buffer, flushed per line
            writeln!(stackful::io::stdout(), "plain {}", first.trim_end()).unwrap();
            stackful::run(|| {
                stackful::spawn_blocking(|| {
                    let rest: Vec<String> =
                        stackful::io::stdin().lines().map(Result::unwrap).collect();
                    writeln!(stackful::io::stdout(), "pool {}", rest.join("|")).unwrap();
                })
            });
        }
        // Descriptor 0 closed: reads are empty, as std's.
        "closed" => {
            // This thread's reactor first, so that it does not take the
            // number 0 (it is kept for the thread's next `run`).
            stackful::run(|| ());
            // SAFETY: this child process does not use descriptor 0 again.
            unsafe { libc::close(0) };
            let mut line = String::new();
            let n = stackful::io::stdin().read_line(&mut line).unwrap();
            writeln!(stackful::io::stdout(), "plain read {n}").unwrap();
            stackful::run(|| {
                let mut line = String::new();
                let n = stackful::io::stdin().read_line(&mut line).unwrap();
                writeln!(stackful::io::stdout(), "read {n}").unwrap();
            });
        }
        // Vectored writes to standard error (a socket or a pipe, which the
        // parent reads after the child exits), on a plain thread, then on
        // a green thread; the counts go to standard output.
        "vectored_out" => {
            let plain = vectored_writes();
            let green = stackful::run(vectored_writes);
            writeln!(stackful::io::stdout(), "plain {plain}").unwrap();
            writeln!(stackful::io::stdout(), "green {green}").unwrap();
        }
        // One vectored read of standard input (a socket or a pipe the
        // parent filled beforehand) into buffers larger than stdin's own,
        // so that it reaches the descriptor.
        "vectored_in" => stackful::run(|| {
            let (mut a, mut b) = (vec![0; 8192], vec![0; 8192]);
            let n = stackful::io::stdin()
                .read_vectored(&mut [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)])
                .unwrap();
            a.extend_from_slice(&b);
            let same = a[..n] == pattern(n)[..];
            writeln!(stackful::io::stdout(), "read {n} {same}").unwrap();
        }),
        // A vectored read of an empty socket waits green: another green
        // thread on the worker reports on stdout meanwhile, and only then
        // does the parent write.
        "vectored_in_wait" => on_one_worker(|| {
            let started = Arc::new(stackful::sync::Event::new());
            let reader = stackful::spawn({
                let started = started.clone();
                move || {
                    let (mut a, mut b) = (vec![0; 8192], vec![0; 8192]);
                    let mut bufs = [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)];
                    started.set();
                    let n = stackful::io::stdin().read_vectored(&mut bufs).unwrap();
                    a.extend_from_slice(&b);
                    let same = a[..n] == pattern(n)[..];
                    writeln!(stackful::io::stdout(), "read {} {same}", n > 0).unwrap();
                }
            });
            started.wait();
            for _ in 0..1000 {
                stackful::yield_now();
            }
            writeln!(stackful::io::stdout(), "ticked").unwrap();
            reader.join().unwrap();
        }),
        // Vectored writes of more than a pipe holds from a green thread,
        // while another green thread on the worker runs and reports on
        // stdout; the parent drains standard error only after that report.
        "vectored_pipe_full" => on_one_worker(|| {
            let written = Arc::new(AtomicUsize::new(0));
            let writer = stackful::spawn({
                let written = written.clone();
                move || {
                    let data = pattern(FULL);
                    let mut bufs: Vec<IoSlice<'_>> = data.chunks(1000).map(IoSlice::new).collect();
                    let mut bufs = &mut bufs[..];
                    while !bufs.is_empty() {
                        let n = stackful::io::stderr().write_vectored(bufs).unwrap();
                        assert!(n > 0, "a vectored write of a pipe wrote nothing");
                        IoSlice::advance_slices(&mut bufs, n);
                        written.fetch_add(n, Ordering::SeqCst);
                    }
                }
            });
            // The pipe (64 KiB) is nearly full: the writer waits soon.
            while written.load(Ordering::SeqCst) < 56 << 10 {
                stackful::yield_now();
            }
            for _ in 0..1000 {
                stackful::yield_now();
            }
            writeln!(stackful::io::stdout(), "ticked").unwrap();
            writer.join().unwrap();
        }),
        other => panic!("unknown case {other}"),
    }
}

/// The size of the file `read_file_pool` reads.
const BIG_FILE: usize = 1 << 20;

/// The bytes read so far (`rchar`) in a `/proc/.../io` file; `None` without
/// per-task I/O accounting.
fn rchar(path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.parse().ok())
}

/// Bytes written in `vectored_pipe_full`: several times what a pipe holds.
const FULL: usize = 512 << 10;

/// `n` bytes of a pattern that shows a lost or repeated piece.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Three vectored writes to standard error: two small buffers; 2000
/// one-byte buffers (more than IOV_MAX); an empty buffer, then 10,000
/// bytes (more than PIPE_BUF). Returns the three counts.
fn vectored_writes() -> String {
    let mut err = stackful::io::stderr();
    let n1 = err
        .write_vectored(&[IoSlice::new(b"ab"), IoSlice::new(b"cd")])
        .unwrap();
    let ones = vec![[b'1']; 2000];
    let slices: Vec<IoSlice<'_>> = ones.iter().map(|b| IoSlice::new(b)).collect();
    let n2 = err.write_vectored(&slices).unwrap();
    let big = vec![b'x'; 10_000];
    let n3 = err
        .write_vectored(&[IoSlice::new(&[]), IoSlice::new(&big)])
        .unwrap();
    format!("{n1} {n2} {n3}")
}

/// What `vectored_writes` wrote for those counts.
fn vectored_text(n1: usize, n2: usize, n3: usize) -> Vec<u8> {
    let mut v = b"abcd"[..n1].to_vec();
    v.extend(std::iter::repeat_n(b'1', n2));
    v.extend(std::iter::repeat_n(b'x', n3));
    v
}

/// Lines per writer in `write_pipe`.
const LINES: usize = 2000;

/// Line `i` of writer `w`: every 100th is 10 KB long (more than one
/// PIPE_BUF).
fn line(w: usize, i: usize) -> String {
    let len = if i % 100 == 99 { 10_000 } else { 40 };
    let fill = char::from(b'a' + (i % 26) as u8);
    format!("{w} {i} {}", fill.to_string().repeat(len))
}

fn child(case: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE, case)
        .env_remove("STACKFUL_DEBUG");
    cmd
}

/// Starts the child for `case` with these standard input and error, and
/// its standard output piped.
fn spawn(case: &str, stdin: impl Into<Stdio>, stderr: impl Into<Stdio>) -> Child {
    child(case)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// What the child wrote after the mark.
fn after_mark(case: &str, out: &[u8]) -> String {
    let text = String::from_utf8_lossy(out);
    match text.split_once(MARK) {
        Some((_, rest)) => rest.to_string(),
        None => panic!("{case}: the child wrote no mark; its output:\n{text}"),
    }
}

/// Waits for the child, killing it and failing after `WAIT`; checks that
/// it succeeded and returns its stderr (if piped).
fn finish(case: &str, mut child: Child) -> String {
    let mut stderr = child.stderr.take();
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut text);
        }
        text
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > WAIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{case}: the child hung; stderr:\n{}", err.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let err = err.join().unwrap();
    assert!(
        status.success(),
        "{case}: the child failed: {status}\n{err}"
    );
    err
}

/// Runs the child to its end (killing it and failing after `WAIT`),
/// checks that it succeeded, and returns its stdout and stderr.
fn output(case: &str, mut c: Child) -> std::process::Output {
    let mut out = c.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = out.read_to_end(&mut text);
        text
    });
    let stderr = finish(case, c);
    std::process::Output {
        status: std::process::ExitStatus::default(),
        stdout: reader.join().unwrap(),
        stderr: stderr.into_bytes(),
    }
}

/// Lines of a child's stdout, read on a thread of their own.
fn lines_of(out: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line that is not the harness's, failing after `WAIT`.
fn next(rx: &mpsc::Receiver<String>, case: &str, seen_mark: &mut bool) -> String {
    loop {
        let line = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("{case}: no line from the child"));
        if *seen_mark {
            return line;
        }
        // The mark may follow the harness's "test child_entry ... ".
        if line.ends_with(MARK.trim_end()) {
            *seen_mark = true;
        }
    }
}

#[test]
fn a_green_thread_reading_lines_from_a_pipe_leaves_its_worker_to_others() {
    let case = "pipe_lines";
    let mut c = spawn(case, Stdio::piped(), Stdio::piped());
    let mut input = c.stdin.take().unwrap();
    let rx = lines_of(c.stdout.take().unwrap());
    let mut mark = false;
    input.write_all(b"one\n").unwrap();
    assert_eq!(next(&rx, case, &mut mark), "got one");
    // Only reachable if the reader, waiting for the next line, does not
    // hold the worker.
    assert_eq!(next(&rx, case, &mut mark), "ticked");
    input.write_all(b"two\nthree without newline").unwrap();
    drop(input); // end of input
    assert_eq!(next(&rx, case, &mut mark), "got two");
    assert_eq!(next(&rx, case, &mut mark), "got three without newline");
    assert_eq!(next(&rx, case, &mut mark), "eof after 3");
    finish(case, c);
}

#[test]
fn a_cancelled_read_of_a_pipe_consumes_nothing() {
    let case = "pipe_timeout";
    let mut c = spawn(case, Stdio::piped(), Stdio::piped());
    let mut input = c.stdin.take().unwrap();
    let rx = lines_of(c.stdout.take().unwrap());
    let mut mark = false;
    assert_eq!(next(&rx, case, &mut mark), "timed out");
    input.write_all(b"late line\n").unwrap();
    assert_eq!(next(&rx, case, &mut mark), r#"10 "late line\n""#);
    drop(input);
    finish(case, c);
}

#[test]
fn stdin_from_a_regular_file_is_read_on_the_blocking_pool() {
    let case = "read_all_green";
    let path = std::env::temp_dir().join(format!("stackful-io-std-in-{}", std::process::id()));
    std::fs::write(&path, "alpha\nbeta\n\ngamma").unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let c = spawn(case, file, Stdio::piped());
    let out = output(case, c);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        after_mark(case, &out.stdout),
        "4 lines: alpha|beta||gamma\nthen 0 bytes\n"
    );
    // That it was the pool: the green thread's own OS thread read (almost)
    // none of a large file's bytes, which the process as a whole did read.
    let case = "read_file_pool";
    std::fs::write(&path, pattern(BIG_FILE)).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let c = spawn(case, file, Stdio::piped());
    let out = output(case, c);
    std::fs::remove_file(&path).unwrap();
    let report = after_mark(case, &out.stdout);
    if report == "no I/O accounting\n" {
        eprintln!("no per-thread I/O accounting here: the pool was not checked");
        return;
    }
    let numbers: Vec<u64> = report
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let [n, thread, process] = numbers[..] else {
        panic!("{case}: {report}");
    };
    assert!(
        report.contains(" true,"),
        "{case}: the text differs: {report}"
    );
    assert_eq!(n, BIG_FILE as u64, "{report}");
    // The thread read its /proc files: a few hundred bytes.
    assert!(
        thread < n / 4,
        "the file was read on the green thread's own OS thread: {report}"
    );
    assert!(process >= n, "{report}");
}

#[test]
fn stdin_at_end_of_input_reads_nothing_from_dev_null_and_an_empty_pipe() {
    let case = "read_all_green";
    // /dev/null: epoll refuses it, so the fallback path.
    let c = spawn(case, Stdio::null(), Stdio::piped());
    let out = output(case, c);
    assert_eq!(after_mark(case, &out.stdout), "0 lines: \nthen 0 bytes\n");
    // A pipe whose writer closes at once: the readiness path.
    let mut c = spawn(case, Stdio::piped(), Stdio::piped());
    drop(c.stdin.take());
    let out = output(case, c);
    assert_eq!(after_mark(case, &out.stdout), "0 lines: \nthen 0 bytes\n");
}

#[test]
fn a_closed_stdin_reads_as_empty() {
    let case = "closed";
    let c = spawn(case, Stdio::piped(), Stdio::piped());
    let out = output(case, c);
    assert_eq!(after_mark(case, &out.stdout), "plain read 0\nread 0\n");
}

#[test]
fn green_threads_writing_more_than_a_pipe_holds_leave_their_worker_to_others() {
    let case = "write_pipe";
    let mut c = spawn(case, Stdio::null(), Stdio::piped());
    let mut out = c.stdout.take().unwrap();
    // Stdout is not read until the other green thread has reported: a
    // writer blocking the worker on the full pipe would keep it from that.
    let mut err = BufReader::new(c.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = err.read_line(&mut line);
        let _ = tx.send(line);
        let mut rest = String::new();
        let _ = err.read_to_string(&mut rest);
        rest
    });
    match rx.recv_timeout(WAIT) {
        Ok(line) => assert_eq!(line, "ticked\n"),
        Err(_) => {
            let _ = c.kill();
            panic!("{case}: the other green thread never ran while the writers waited");
        }
    }
    let mut text = Vec::new();
    out.read_to_end(&mut text).unwrap();
    finish(case, c);
    let text = after_mark(case, &text);
    // Each writer's lines whole and in order; the two interleave by line.
    let mut expected = [0, 0];
    let mut total = 0;
    for l in text.lines() {
        let w: usize = l[..1].parse().unwrap();
        assert_eq!(l, line(w, expected[w]), "a torn or missing line");
        expected[w] += 1;
        total += l.len() + 1;
    }
    assert_eq!(expected, [LINES, LINES]);
    assert!(total > 256 << 10, "more than a pipe holds: {total}");
}

#[test]
fn stdout_to_a_file_is_written_on_the_blocking_pool_and_flushed_at_exit() {
    let case = "write_green";
    let path = std::env::temp_dir().join(format!("stackful-io-std-out-{}", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    let c = child(case)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(case, c);
    let text = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let text = after_mark(case, &text);
    let (lines, last) = text.rsplit_once('\n').unwrap();
    assert_eq!(
        last, "no newline",
        "the partial line was not flushed at exit"
    );
    let mut got: Vec<&str> = lines.lines().collect();
    got.sort_unstable();
    let mut want: Vec<String> = (0..3)
        .flat_map(|w| (0..100).map(move |i| line(w, i)))
        .collect();
    want.sort_unstable();
    assert_eq!(got, want);
}

#[test]
fn a_write_error_of_the_fallback_reaches_the_writer() {
    let case = "write_full";
    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("no /dev/full here: skipped");
        return;
    }
    let c = spawn(case, Stdio::null(), Stdio::piped());
    let err = finish(case, c);
    assert!(
        err.contains(&format!("error kind {:?}", ErrorKind::StorageFull)),
        "{err}"
    );
    assert!(err.contains("stderr fine"), "{err}");
}

#[test]
fn on_plain_threads_they_read_and_write_as_std() {
    let case = "plain";
    let mut c = spawn(case, Stdio::piped(), Stdio::piped());
    let mut input = c.stdin.take().unwrap();
    input.write_all(b"first\nsecond\nthird\n").unwrap();
    drop(input);
    let out = output(case, c);
    assert_eq!(
        after_mark(case, &out.stdout),
        "std line\nplain first\npool second|third\n"
    );
}

/// Reads `r` to its end.
fn all_of(mut r: impl Read) -> Vec<u8> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    v
}

#[test]
fn vectored_writes_to_a_socket_or_a_pipe_take_several_buffers_at_once() {
    let case = "vectored_out";
    // A socket: up to IOV_MAX buffers per call, on green threads as on
    // plain ones (one buffer per call before).
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let c = spawn(case, Stdio::null(), OwnedFd::from(theirs));
    let out = output(case, c);
    assert_eq!(
        after_mark(case, &out.stdout),
        "plain 4 1024 10000\ngreen 4 1024 10000\n"
    );
    assert_eq!(all_of(ours), vectored_text(4, 1024, 10_000).repeat(2));
    // A pipe: as many whole buffers as fit in PIPE_BUF, or PIPE_BUF bytes of
    // a larger one, on a green thread.
    let (r, w) = std::io::pipe().unwrap();
    let c = spawn(case, Stdio::null(), w);
    let out = output(case, c);
    assert_eq!(
        after_mark(case, &out.stdout),
        "plain 4 1024 10000\ngreen 4 1024 4096\n"
    );
    let mut want = vectored_text(4, 1024, 10_000);
    want.extend(vectored_text(4, 1024, 4096));
    assert_eq!(all_of(r), want);
}

#[test]
fn a_green_vectored_read_of_a_socket_or_a_pipe_fills_several_buffers() {
    let case = "vectored_in";
    let data = pattern(10_000);
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.write_all(&data).unwrap();
    let c = spawn(case, OwnedFd::from(theirs), Stdio::piped());
    let out = output(case, c);
    assert_eq!(
        after_mark(case, &out.stdout),
        "read 10000 true\n",
        "a socket"
    );
    drop(ours);
    let (r, mut w) = std::io::pipe().unwrap();
    w.write_all(&data).unwrap();
    let c = spawn(case, r, Stdio::piped());
    let out = output(case, c);
    assert_eq!(after_mark(case, &out.stdout), "read 10000 true\n", "a pipe");
    drop(w);
}

#[test]
fn a_green_vectored_read_of_an_empty_socket_leaves_its_worker_to_others() {
    let case = "vectored_in_wait";
    // Blocking, as the child's descriptor 0 is: only a per-call flag keeps
    // the read from blocking the worker.
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut c = spawn(case, OwnedFd::from(theirs), Stdio::piped());
    let rx = lines_of(c.stdout.take().unwrap());
    let mut mark = false;
    // Only reachable if the reader, waiting for data, does not hold the
    // worker.
    assert_eq!(next(&rx, case, &mut mark), "ticked");
    ours.write_all(&pattern(10_000)).unwrap();
    assert_eq!(next(&rx, case, &mut mark), "read true true");
    finish(case, c);
}

#[test]
fn green_vectored_writes_to_a_full_pipe_leave_their_worker_to_others() {
    let case = "vectored_pipe_full";
    let mut c = spawn(case, Stdio::null(), Stdio::piped());
    let err = c.stderr.take().unwrap();
    let rx = lines_of(c.stdout.take().unwrap());
    let mut mark = false;
    // Standard error is drained only after this: a vectored write of more
    // than the pipe has room for would block the worker on the full pipe.
    // (A child that never reports dies of the closed pipe when this test
    // process ends.)
    assert_eq!(next(&rx, case, &mut mark), "ticked");
    let text = all_of(err);
    finish(case, c);
    assert!(
        text == pattern(FULL),
        "the pipe got {} bytes, not the pattern",
        text.len()
    );
}
