//! Configuring the global runtime: `Builder::build_global`, and the
//! `STACKFUL_WORKERS` / `STACKFUL_STACK_SIZE` defaults.
//!
//! The global runtime is built once per process, so every case that touches
//! it runs in a child process of its own: the parent test re-runs this test
//! binary on just the case's `child_*` test, with `CHILD` naming it (and the
//! environment the case needs). Without `CHILD`, a `child_*` test does
//! nothing, so the cases cannot disturb each other in the normal run.

mod common;

use std::error::Error;
use std::hint::black_box;
use std::process::Command;

use stackful::Runtime;

const CHILD: &str = "STACKFUL_GLOBAL_CONFIG_CHILD";

/// Whether this process was started to run the case `name`.
fn is_child(name: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|c| c == name)
}

/// Runs the test `name` of this binary in a child process with `env` set,
/// checks that it passed and printed "child ok", and returns its stderr.
fn in_child(name: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .env_remove("STACKFUL_WORKERS")
        .env_remove("STACKFUL_STACK_SIZE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = common::output_within_a_minute(cmd, name);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && stderr.contains("child ok"),
        "{name} failed ({}):\n{stderr}",
        out.status
    );
    stderr
}

/// Recurses `depth` frames of 1 KiB each: over 256 KiB for depth 1000.
fn recurse(depth: u32) -> u32 {
    let frame = black_box([depth as u8; 1024]);
    if depth == 0 {
        return 0;
    }
    recurse(depth - 1) + u32::from(frame[1023] != depth as u8)
}

/// The name of the OS thread running this code.
fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_string()
}

#[test]
fn build_global_sets_the_global_runtime_once() {
    let stderr = in_child("child_build_global_first", &[]);
    common::assert_mentions(
        "build_global_first",
        &stderr,
        &["already built by `build_global` at tests/global_config.rs:"],
        &[],
    );
}

#[test]
fn child_build_global_first() {
    if !is_child("child_build_global_first") {
        return;
    }
    Runtime::builder()
        .workers(1)
        .stack_size(8 << 20)
        .name("configured")
        .build_global()
        .unwrap();
    // The main green thread of `run` has the 8 MiB stack: 1 MiB of frames fit.
    let (depth, names) = stackful::run(|| {
        let depth = recurse(1000);
        let spawned = stackful::spawn(|| (recurse(1000), thread_name()));
        let (d2, name) = spawned.join().unwrap();
        (depth + d2, name)
    });
    assert_eq!(depth, 0);
    assert_eq!(
        names,
        thread_name(),
        "a green thread that the main body spawns and joins runs on `run`'s own thread"
    );
    // A plain thread's spawn goes to the worker, named as built.
    assert_eq!(
        stackful::spawn(thread_name).join().unwrap(),
        "configured-worker-0"
    );
    let err = Runtime::builder().workers(2).build_global().unwrap_err();
    assert!(err.is_already_built());
    assert!(err.source().is_none());
    eprintln!("second build_global: {err}");
    assert!(
        format!("{err:?}").contains("already_built: true"),
        "{err:?}"
    );
    eprintln!("child ok");
}

#[test]
fn build_global_after_the_first_use_names_that_use() {
    let stderr = in_child("child_first_use_by_run", &[]);
    common::assert_mentions(
        "first_use_by_run",
        &stderr,
        &[
            "the global runtime was already built, with the default settings, when the call at \
             tests/global_config.rs:",
            "call `Runtime::builder()...build_global()` before any of them",
        ],
        &[],
    );
    let stderr = in_child("child_first_use_by_spawn", &[]);
    assert!(stderr.contains("when the call at tests/global_config.rs:"));
}

#[test]
fn child_first_use_by_run() {
    if !is_child("child_first_use_by_run") {
        return;
    }
    let line = line!() + 1;
    stackful::run(|| ());
    let err = Runtime::builder().build_global().unwrap_err();
    assert!(err.is_already_built());
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("tests/global_config.rs:{line}:")),
        "not the `run` line: {msg}"
    );
    eprintln!("{msg}");
    eprintln!("child ok");
}

#[test]
fn child_first_use_by_spawn() {
    if !is_child("child_first_use_by_spawn") {
        return;
    }
    let line = line!() + 1;
    stackful::spawn(|| ()).join().unwrap();
    let err = Runtime::builder().build_global().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("tests/global_config.rs:{line}:")),
        "not the `spawn` line: {msg}"
    );
    eprintln!("{msg}");
    eprintln!("child ok");
}

#[test]
fn a_failed_build_global_leaves_the_global_runtime_unbuilt() {
    in_child("child_failed_build_global", &[]);
}

#[test]
fn child_failed_build_global() {
    if !is_child("child_failed_build_global") {
        return;
    }
    let err = Runtime::builder().workers(0).build_global().unwrap_err();
    assert!(!err.is_already_built());
    let msg = err.to_string();
    assert!(
        msg.starts_with("could not build the global runtime: a runtime needs at least 1 worker"),
        "{msg}"
    );
    let source = err.source().expect("the build error is the source");
    let io = source.downcast_ref::<std::io::Error>().unwrap();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
    let err = Runtime::builder().stack_size(1).build_global().unwrap_err();
    assert!(err.to_string().contains("invalid green thread stack size"));
    // Still unbuilt: a valid one now takes.
    Runtime::builder()
        .workers(1)
        .name("second-try")
        .build_global()
        .unwrap();
    assert_eq!(
        stackful::spawn(thread_name).join().unwrap(),
        "second-try-worker-0"
    );
    eprintln!("child ok");
}

#[test]
fn the_environment_sets_the_defaults() {
    in_child(
        "child_environment_defaults",
        &[("STACKFUL_WORKERS", "1"), ("STACKFUL_STACK_SIZE", "8M")],
    );
    in_child(
        "child_empty_environment",
        &[("STACKFUL_WORKERS", ""), ("STACKFUL_STACK_SIZE", " ")],
    );
}

#[test]
fn child_environment_defaults() {
    if !is_child("child_environment_defaults") {
        return;
    }
    let builder = format!("{:?}", Runtime::builder());
    assert!(builder.contains("workers: Some(1)"), "{builder}");
    assert!(builder.contains("stack_size: 8388608"), "{builder}");
    // The global runtime, started by first use, takes them: `run`'s main
    // green thread and spawned ones get 8 MiB stacks.
    let depth = stackful::run(|| recurse(1000) + stackful::spawn(|| recurse(1000)).join().unwrap());
    assert_eq!(depth, 0);
    // A setter overrides the variable.
    let builder = format!("{:?}", Runtime::builder().workers(3).stack_size(1 << 20));
    assert!(builder.contains("workers: Some(3)"), "{builder}");
    assert!(builder.contains("stack_size: 1048576"), "{builder}");
    eprintln!("child ok");
}

#[test]
fn child_empty_environment() {
    if !is_child("child_empty_environment") {
        return;
    }
    // Empty (or blank) counts as unset: the built-in defaults.
    let builder = format!("{:?}", Runtime::builder());
    assert!(builder.contains("workers: None"), "{builder}");
    assert!(builder.contains("stack_size: 262144"), "{builder}");
    assert!(Runtime::builder().build().is_ok());
    eprintln!("child ok");
}

#[test]
fn a_bad_environment_variable_is_an_error_that_names_it() {
    let stderr = in_child(
        "child_bad_environment",
        &[("STACKFUL_WORKERS", "0"), ("STACKFUL_STACK_SIZE", "lots")],
    );
    common::assert_mentions(
        "bad_environment",
        &stderr,
        &[
            "stackful: could not start the global runtime: the environment variable \
             STACKFUL_WORKERS=\"0\" is not valid: give the number of worker threads, a whole \
             number of at least 1",
        ],
        &[],
    );
    for bad in ["8K", "2G", "-1", "12 parsecs", "1.5M"] {
        let stderr = in_child("child_bad_stack_size", &[("STACKFUL_STACK_SIZE", bad)]);
        assert!(
            stderr.contains(&format!("STACKFUL_STACK_SIZE=\"{bad}\" is not valid")),
            "{bad}: {stderr}"
        );
    }
}

#[test]
fn child_bad_environment() {
    if !is_child("child_bad_environment") {
        return;
    }
    let err = Runtime::builder().build().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("STACKFUL_WORKERS=\"0\""), "{err}");
    // Each setter overrides its own variable only.
    let err = Runtime::builder().workers(1).build().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(
            "the environment variable STACKFUL_STACK_SIZE=\"lots\" is not valid: give a stack \
             size between 16 KiB and 1 GiB, in bytes or with a K, M or G suffix"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("Fix or unset it, or set this value in code"),
        "{msg}"
    );
    let rt = Runtime::builder()
        .workers(1)
        .stack_size(1 << 20)
        .build()
        .unwrap();
    assert_eq!(rt.run(|| 7), 7);
    drop(rt);
    // build_global reports it too, and the first use panics with it.
    let err = Runtime::builder()
        .stack_size(1 << 20)
        .build_global()
        .unwrap_err();
    assert!(!err.is_already_built());
    assert!(err.to_string().contains("STACKFUL_WORKERS"), "{err}");
    let panic = std::panic::catch_unwind(|| stackful::run(|| ())).unwrap_err();
    eprintln!("{}", common::panic_text(panic));
    eprintln!("child ok");
}

#[test]
fn child_bad_stack_size() {
    if !is_child("child_bad_stack_size") {
        return;
    }
    let err = Runtime::builder().build().unwrap_err();
    eprintln!("{err}");
    eprintln!("child ok");
}
