//! Faults and aborts, each in a child process: the parent re-runs this binary
//! with `STACKFUL_CRASH_CASE` set and checks the child's stderr and signal.

mod common;

use common::assert_mentions;

use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use stackful::generator::Builder;
use stackful::{Co, Generator};

const CASE: &str = "STACKFUL_CRASH_CASE";

/// Recurses with a 1 KiB frame until the stack runs out.
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth as u8; 1024]);
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + u64::from(frame[depth as usize % 1024])
}

fn run_case(case: &str) {
    match case {
        "named_generator_overflow" => {
            let mut g = Builder::new()
                .name("deep-parser")
                .stack_size(64 * 1024)
                .build(|co: &Co<u64>, ()| co.yield_(recurse(0)))
                .unwrap();
            g.resume();
        }
        "unnamed_generator_overflow" => {
            let mut g = Generator::new(|co: &Co<u64>, ()| co.yield_(recurse(0)));
            g.resume();
        }
        "main_green_thread_overflow" => {
            // The global `run`'s main green thread: its 256 KiB stack is
            // raised through the global runtime, not `task::Builder`.
            stackful::run(|| recurse(0));
        }
        "runtime_run_main_overflow" => {
            let rt = stackful::Runtime::builder()
                .workers(1)
                .stack_size(64 * 1024)
                .build()
                .unwrap();
            rt.run(|| recurse(0));
        }
        "spawned_green_thread_overflow" => {
            stackful::run(|| {
                let _ = stackful::task::Builder::new()
                    .name("digger")
                    .spawn(|| recurse(0))
                    .unwrap()
                    .join();
            });
        }
        "thread_overflow_after_install" => {
            // Install stackful's handler first, then overflow a plain thread.
            Generator::new(|co: &Co<()>, ()| co.yield_(())).resume();
            std::thread::Builder::new()
                .name("plain".into())
                .stack_size(128 * 1024)
                .spawn(|| recurse(0))
                .unwrap()
                .join()
                .unwrap();
        }
        "wild_fault_after_install" => {
            Generator::new(|co: &Co<()>, ()| co.yield_(())).resume();
            let p = black_box(16usize) as *const u8;
            // SAFETY: none: this deliberately faults, to check that faults
            // that are not overflows reach the default action unchanged.
            black_box(unsafe { p.read_volatile() });
        }
        "yield_in_destructor_during_close" => {
            struct YieldsOnDrop<'a>(&'a Co<u32>);
            impl Drop for YieldsOnDrop<'_> {
                fn drop(&mut self) {
                    self.0.yield_(2);
                }
            }
            let make = || {
                Builder::new()
                    .name("stubborn")
                    .build(|co: &Co<u32>, ()| {
                        let _guard = YieldsOnDrop(co);
                        co.yield_(1);
                    })
                    .unwrap()
            };
            // An explicit close panics in the caller, once, and the
            // generator is done; a drop leaks the next one quietly.
            let mut g = make();
            g.resume();
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| g.close()));
            assert!(caught.is_err() && g.is_done());
            g.close();
            drop(g);
            let mut h = make();
            h.resume();
            drop(h);
            eprintln!("survived");
        }
        "scoped_generator_that_ignores_close" => {
            // Leaking it would let the scoped thread read `data` after it
            // is freed (issue 9 review): the process must stop instead.
            let data = vec![7u64; 64];
            stackful::generator::scoped(
                |co: &Co<()>, ()| {
                    std::thread::scope(|s| {
                        s.spawn(|| {
                            while black_box(data[0]) == 7 {
                                std::thread::yield_now();
                            }
                        });
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            co.yield_(())
                        }));
                        co.yield_(()); // ignores the close
                    });
                },
                |g| {
                    g.resume();
                },
            );
            drop(data);
            eprintln!("survived");
        }
        "mmap_failure_is_an_error" => {
            // Cap the address space so the next mapping fails with ENOMEM.
            let cap = libc::rlimit {
                rlim_cur: 64 << 20,
                rlim_max: libc::RLIM_INFINITY,
            };
            // SAFETY: setrlimit with a valid struct only lowers this process's limit.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &cap) }, 0);
            let err = Builder::new()
                .stack_size(512 << 20)
                .build(|co: &Co<()>, ()| co.yield_(()))
                .unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ENOMEM));
            eprintln!("error: {err}");
            // The process goes on: a small generator still works.
            let mut g = Generator::new(|co: &Co<u8>, ()| co.yield_(7));
            assert_eq!(g.resume(), stackful::GeneratorState::Yielded(7));
        }
        "run_without_a_stack" => {
            // Found in review: `run`'s main green thread, finding no stack,
            // was finished on a pool thread (its !Send body with it) and
            // nothing woke the `run` thread. It fails on the caller's thread.
            let rt = stackful::Runtime::builder()
                .workers(1)
                .stack_size(512 << 20)
                .build()
                .unwrap();
            let cap = libc::rlimit {
                rlim_cur: 256 << 20,
                rlim_max: libc::RLIM_INFINITY,
            };
            // SAFETY: setrlimit with a valid struct only lowers this process's limit.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &cap) }, 0);
            let caller = std::thread::current().id();
            struct NotSend(std::thread::ThreadId, std::marker::PhantomData<*const ()>);
            impl Drop for NotSend {
                fn drop(&mut self) {
                    assert_eq!(std::thread::current().id(), self.0, "dropped elsewhere");
                    eprintln!("dropped on the caller's thread");
                }
            }
            let body = NotSend(caller, std::marker::PhantomData);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rt.run(move || {
                    let _keep = &body;
                })
            }));
            let text = r.unwrap_err();
            let text = text.downcast_ref::<String>().cloned().unwrap_or_default();
            eprintln!("run panicked: {text}");
            eprintln!("survived");
        }
        "max_map_count_reached" => {
            // Keep generators alive until the kernel's mapping limit stops us.
            let mut live = Vec::new();
            let err = loop {
                match Builder::new().build(|co: &Co<()>, ()| co.yield_(())) {
                    Ok(g) => live.push(g),
                    Err(e) => break e,
                }
                assert!(live.len() < 10_000_000, "no limit reached");
            };
            eprintln!("error after {} live generators: {err}", live.len());
        }
        "green_thread_map_limit" => {
            // Spawn sleeping green threads until the runtime refuses.
            let outcome = stackful::run(|| {
                let mut live = Vec::new();
                loop {
                    match stackful::task::Builder::new()
                        .spawn(|| stackful::sleep(std::time::Duration::from_secs(3600)))
                    {
                        Ok(h) => live.push(h),
                        Err(e) => break (live.len(), e),
                    }
                    assert!(live.len() < 10_000_000, "no limit reached");
                }
            });
            eprintln!(
                "refused after {} live green threads: {}",
                outcome.0, outcome.1
            );
        }
        "burst_of_spawns_fails_at_start" => {
            // A burst beyond the mapping limit, spawned while the only
            // worker is held so that none starts: every spawn is accepted.
            // Then they start; those that find no stack fail at start, and
            // their join says which limit refused.
            use std::sync::Arc;
            use std::sync::atomic::{AtomicUsize, Ordering};
            let limit = stackful::stack::MapLimit::current().expect("no vm.max_map_count");
            let rt = stackful::Runtime::builder().workers(1).build().unwrap();
            let (gate, busy) = common::hold_the_worker(&rt);
            let event = Arc::new(stackful::sync::Event::new());
            let waiting = Arc::new(AtomicUsize::new(0));
            let burst = limit.stacks + 300;
            let handles: Vec<_> = (0..burst)
                .map(|_| {
                    let (event, waiting) = (event.clone(), waiting.clone());
                    // Panics if the spawn is refused.
                    rt.spawn(move || {
                        waiting.fetch_add(1, Ordering::SeqCst);
                        event.wait();
                    })
                })
                .collect();
            eprintln!("all {burst} spawns accepted");
            gate.store(true, Ordering::SeqCst);
            busy.join().unwrap();
            // Until each has started and waits, or failed.
            loop {
                let failed = handles.iter().filter(|h| h.is_finished()).count();
                if failed + waiting.load(Ordering::SeqCst) == burst {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            event.set();
            let mut errors = Vec::new();
            for h in handles {
                if let Err(e) = h.join() {
                    errors.push(e);
                }
            }
            assert_eq!(errors.len() + waiting.load(Ordering::SeqCst), burst);
            assert!(!errors.is_empty(), "no green thread failed at start");
            eprintln!(
                "{} of the burst failed at start; the first: {}",
                errors.len(),
                errors[0]
            );
        }
        other => panic!("unknown crash case {other}"),
    }
    eprintln!("case {case} survived");
    std::process::exit(0);
}

/// Runs `case` in a child and returns (signal, stderr).
fn child(case: &str) -> (Option<i32>, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(CASE, case)
        .env_remove("STACKFUL_STACK_SIZE")
        .env_remove("STACKFUL_WORKERS");
    let out = common::output_within_a_minute(cmd, case);
    (
        out.status.signal(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `case` in a child that must end by `signal` (`None`: exit normally)
/// with every one of `has` and none of `lacks` on its stderr.
fn expect(case: &str, signal: Option<i32>, has: &[&str], lacks: &[&str]) {
    let (got, stderr) = child(case);
    assert_eq!(got, signal, "{case}: wrong signal; stderr:\n{stderr}");
    assert_mentions(case, &stderr, has, lacks);
    println!("test {case} ... ok");
}

fn main() {
    if let Ok(case) = std::env::var(CASE) {
        run_case(&case);
        return;
    }
    expect(
        "named_generator_overflow",
        Some(libc::SIGABRT),
        &[
            "stackful: coroutine `deep-parser` (a generator created at tests/crash.rs:",
            "overflowed its 64 KiB stack; give it a larger stack with \
             `stackful::generator::Builder::stack_size`",
        ],
        &["survived"],
    );
    expect(
        "unnamed_generator_overflow",
        Some(libc::SIGABRT),
        &[
            "stackful: coroutine <unnamed> (a generator created at tests/crash.rs:",
            "256 KiB",
        ],
        &["survived"],
    );
    expect(
        "main_green_thread_overflow",
        Some(libc::SIGABRT),
        &[
            "stackful: coroutine `main` (a main green thread of `run` created at tests/crash.rs:",
            "overflowed its 256 KiB stack; raise its stack with \
             `Runtime::builder().stack_size(bytes).build_global()` before the first \
             `stackful::run`",
            "STACKFUL_STACK_SIZE=<bytes>",
        ],
        &["task::Builder::stack_size", "src/runtime", "survived"],
    );
    expect(
        "runtime_run_main_overflow",
        Some(libc::SIGABRT),
        &[
            "stackful: coroutine `main` (a main green thread of `run` created at tests/crash.rs:",
            "overflowed its 64 KiB stack",
            "(`.build()` for a `Runtime::run`)",
        ],
        &["task::Builder::stack_size", "src/runtime", "survived"],
    );
    expect(
        "spawned_green_thread_overflow",
        Some(libc::SIGABRT),
        &[
            "stackful: coroutine `digger` (a green thread created at tests/crash.rs:",
            "`stackful::task::Builder::stack_size`",
        ],
        &["build_global", "survived"],
    );
    expect(
        "thread_overflow_after_install",
        Some(libc::SIGABRT),
        &["thread 'plain'", "has overflowed its stack"],
        &["stackful:", "survived"],
    );
    expect(
        "mmap_failure_is_an_error",
        None,
        &[
            "could not create a 524288 KiB coroutine stack: the kernel refused it (mmap failed: \
             Cannot allocate memory (os error 12))",
            "the mapping limit is not reached",
            "survived",
        ],
        &[],
    );
    // The mapping-limit cases need the kernel's default limit: with a raised
    // one they would map hundreds of thousands of stacks before failing.
    let limit: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if limit > 200_000 {
        println!("test max_map_count_reached ... skipped (vm.max_map_count is {limit})");
        println!("test green_thread_map_limit ... skipped (vm.max_map_count is {limit})");
        println!("test burst_of_spawns_fails_at_start ... skipped (vm.max_map_count is {limit})");
    } else {
        map_limit_cases(limit);
    }
    expect(
        "wild_fault_after_install",
        Some(libc::SIGSEGV),
        &[],
        &["stackful:", "survived"],
    );
    expect(
        "run_without_a_stack",
        None,
        &[
            "dropped on the caller's thread",
            "run panicked: stackful: the main green thread ended without a result",
            "could not start",
            "survived",
        ],
        &[],
    );
    expect(
        "scoped_generator_that_ignores_close",
        Some(libc::SIGABRT),
        &[
            "stackful: scoped generator created at tests/crash.rs:",
            "ignored `close`",
            "cannot be leaked either: aborting",
        ],
        &["survived"],
    );
    // Python's "generator ignored GeneratorExit": no abort, no loop.
    expect(
        "yield_in_destructor_during_close",
        None,
        &[
            "generator `stubborn` created at tests/crash.rs:",
            "ignored `close`: it yielded while being closed",
            "(Shown once.)",
            "survived",
        ],
        &["panic in a destructor during cleanup"],
    );
}

fn map_limit_cases(max_map_count: u64) {
    // Every message gives the same figure: 2 mappings a stack, 1024 kept.
    let figure = format!(
        "vm.max_map_count = {max_map_count} lets stackful map at most {} stacks",
        (max_map_count - 1024) / 2
    );
    expect(
        "max_map_count_reached",
        None,
        &[
            "refused by stackful's own limit, before asking the kernel",
            &figure,
            "survived",
        ],
        &["os error"],
    );
    expect(
        "green_thread_map_limit",
        None,
        &["cannot spawn another green thread", &figure, "survived"],
        &[],
    );
    expect(
        "burst_of_spawns_fails_at_start",
        None,
        &[
            "spawns accepted",
            "failed at start; the first: green thread #",
            "could not start: could not create a 256 KiB coroutine stack: refused by stackful's \
             own limit",
            &figure,
            "survived",
        ],
        &["os error"],
    );
}
