//! Waiting from a thread-local's destructor at thread exit, after
//! stackful's own thread-locals may be gone (issue 13, item 10).

use std::time::{Duration, Instant};

use stackful::sync::{channel, unbounded};

struct WaitsOnDrop;

impl Drop for WaitsOnDrop {
    fn drop(&mut self) {
        let (_tx, rx) = unbounded::<u8>();
        let start = Instant::now();
        assert!(rx.recv_timeout(Duration::from_millis(20)).is_err());
        assert!(start.elapsed() >= Duration::from_millis(15));
        stackful::sleep(Duration::from_millis(5));
        let (tx, rx) = channel::<u8>(1);
        tx.send(1).unwrap();
        assert_eq!(rx.recv(), Ok(1));
        let m = stackful::sync::Mutex::new(1);
        *m.lock() += 1;
        // A timeout still cuts a wait short there.
        let start = Instant::now();
        let cut = stackful::timeout(Duration::from_millis(5), || {
            stackful::sleep(Duration::from_secs(10));
        });
        assert!(cut.is_err());
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}

thread_local! {
    static LATE: std::cell::RefCell<Option<WaitsOnDrop>> = const { std::cell::RefCell::new(None) };
}

#[test]
fn smoke() {
    drop(WaitsOnDrop);
}

#[test]
fn waits_in_a_thread_local_destructor_at_thread_exit_work() {
    for _ in 0..20 {
        std::thread::spawn(|| {
            // Ours first: thread-locals are destroyed in the reverse order
            // of their first use, so stackful's, made below, go first.
            LATE.with(|l| *l.borrow_mut() = Some(WaitsOnDrop));
            let (tx, rx) = channel::<u8>(0);
            let h = std::thread::spawn(move || tx.send(7).unwrap());
            assert_eq!(rx.recv(), Ok(7));
            h.join().unwrap();
            stackful::sleep(Duration::from_millis(1));
            let _ = stackful::timeout(Duration::from_millis(1), || {
                stackful::sleep(Duration::from_secs(1));
            });
            stackful::task_local! { static MINE: u8 = 1; }
            assert_eq!(MINE.with(|v| *v), 1);
        })
        .join()
        .unwrap();
    }
}
