//! Panics on misuse name the caller's line, not a line inside stackful.

mod common;

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use stackful::sync::channel;
use stackful::{Generator, GeneratorState};

/// Runs `f`, expects a panic, and returns where it was raised and its message.
/// The panic hook is process-wide: one test at a time swaps it.
fn panic_site(f: impl FnOnce()) -> (String, String) {
    static HOOK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    let site = Arc::new(std::sync::Mutex::new(String::new()));
    let s = site.clone();
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if let Some(loc) = info.location() {
            *s.lock().unwrap() = format!("{}:{}", loc.file(), loc.line());
        }
    }));
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    panic::set_hook(previous);
    let payload = outcome.expect_err("expected a panic");
    let site = site.lock().unwrap().clone();
    (site, common::panic_text(payload))
}

#[test]
fn smoke() {
    let (site, text) = panic_site(|| panic!("here"));
    assert!(site.starts_with("tests/track_caller.rs:"), "{site}");
    assert_eq!(text, "here");
}

#[test]
fn sending_to_a_finished_generator_names_the_caller() {
    let mut g = Generator::new(|_co: &stackful::Co<u8>, ()| 1);
    assert_eq!(g.resume(), GeneratorState::Complete(1));
    let line = line!() + 2;
    let (site, text) = panic_site(|| {
        let _ = g.resume();
    });
    assert_eq!(site, format!("tests/track_caller.rs:{line}"));
    assert!(text.contains("check `is_done()` first"), "{text}");
}

#[test]
fn gathering_its_own_handle_names_the_caller_instead_of_waiting_forever() {
    let (site, text, line) = stackful::run(|| {
        let (handle_tx, handle_rx) = channel(1);
        let (out_tx, out_rx) = channel(1);
        let me = stackful::spawn(move || {
            let own: stackful::JoinHandle<()> = handle_rx.recv().unwrap();
            let line = line!() + 1;
            let (site, text) = panic_site(|| drop(stackful::gather([own])));
            out_tx.send((site, text, line)).unwrap();
        });
        handle_tx.send(me).unwrap();
        out_rx.recv().unwrap()
    });
    assert_eq!(site, format!("tests/track_caller.rs:{line}"));
    assert!(text.contains("tried to join itself"), "{text}");
}

#[test]
fn sync_misuse_names_the_caller() {
    let sem = stackful::sync::Semaphore::new(1);
    let line = line!() + 1;
    let (site, text) = panic_site(|| sem.add_permits(usize::MAX));
    assert_eq!(site, format!("tests/track_caller.rs:{line}"));
    assert!(text.contains("add_permits"), "{text}");

    let line = line!() + 1;
    let (site, text) = panic_site(|| drop(stackful::sync::Select::new().wait()));
    assert_eq!(site, format!("tests/track_caller.rs:{line}"));
    assert!(text.contains("no operations"), "{text}");

    let line = line!() + 1;
    let (site, text) = panic_site(|| drop(channel::<u8>(usize::MAX)));
    assert_eq!(site, format!("tests/track_caller.rs:{line}"));
    assert!(text.contains("too large"), "{text}");

    let (tx, rx) = channel::<u8>(1);
    let (_tx2, rx2) = channel::<u8>(1);
    tx.send(1).unwrap();
    let mut sel = stackful::sync::Select::new();
    sel.recv(&rx);
    let op = sel.wait();
    let line = line!() + 2;
    let (site, text) = panic_site(|| {
        let _ = op.recv(&rx2);
    });
    assert_eq!(site, format!("tests/track_caller.rs:{line}"));
    assert!(text.contains("another channel"), "{text}");
}
