//! Review finding: a refused self-join through an `AbortOnDrop` guard
//! cancels the caller (scratch test; fails on the reviewed code).

use std::time::Duration;

/// `AbortOnDrop::join` panics ("tried to join itself") with the guard still
/// in it, so the guard's `Drop` runs during that panic and cancels its green
/// thread: the caller itself. A green thread that catches the misuse panic
/// is then unwound at its next suspension point. The same happens with
/// `gather([own_guard])` (`Watch::new` panics with the guard inside).
/// `JoinSet::drop` skips the current green thread; this guard does not.
#[test]
fn a_refused_self_join_through_a_guard_does_not_cancel_the_caller() {
    let still_running = stackful::run(|| {
        let (tx, rx) = stackful::sync::channel::<stackful::task::AbortOnDrop<()>>(1);
        let (res_tx, res_rx) = stackful::sync::channel::<bool>(1);
        let h = stackful::spawn(move || {
            let me = rx.recv().unwrap();
            let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| me.join()));
            assert!(refused.is_err(), "the self-join is refused");
            let slept = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                stackful::sleep(Duration::from_millis(5));
            }))
            .is_ok();
            let _ = res_tx.send(slept);
        });
        tx.send(h.abort_on_drop()).unwrap();
        res_rx.recv().unwrap_or(false)
    });
    assert!(
        still_running,
        "the refused self-join cancelled the green thread that made it"
    );
}
