//! spawn_blocking: the blocking pool, borrowing, panics and cancellation.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stackful::spawn_blocking;

#[test]
fn smoke() {
    let v = stackful::run(|| spawn_blocking(|| 40 + 2));
    assert_eq!(v, 42);
}

#[test]
fn the_function_runs_on_another_thread_and_may_borrow() {
    let mut buffer = vec![0u8; 4];
    let here = std::thread::current().id();
    let there = stackful::run(|| {
        spawn_blocking(|| {
            buffer.fill(7);
            std::thread::current().id()
        })
    });
    assert_ne!(here, there);
    assert_eq!(buffer, [7; 4]);
}

#[test]
fn outside_a_green_thread_it_simply_calls_the_function() {
    let here = std::thread::current().id();
    assert_eq!(spawn_blocking(|| std::thread::current().id()), here);
}

#[test]
fn a_panic_in_the_function_is_re_raised_in_the_caller() {
    let caught = stackful::run(|| {
        stackful::spawn(|| spawn_blocking(|| -> u8 { panic!("blocking failed") }))
            .join()
            .unwrap_err()
    });
    assert!(caught.is_panic());
    assert!(caught.to_string().contains("blocking failed"));
    // A panic in a blocking job does not poison the pool.
    assert_eq!(stackful::run(|| spawn_blocking(|| 1)), 1);
}

#[test]
fn cancelling_the_caller_waits_for_the_function_to_return() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    stackful::run(move || {
        // The cancel comes while the job runs, and the job goes on for a
        // while after it: ordered by events, not by sleeps.
        let running = Arc::new(stackful::sync::Event::new());
        let cancelled = Arc::new(stackful::sync::Event::new());
        let (r, c) = (running.clone(), cancelled.clone());
        let h = stackful::spawn(move || {
            let local = String::from("borrowed by the blocking job");
            let l2 = l.clone();
            spawn_blocking(|| {
                r.set();
                c.wait();
                // Still running well after the cancel: a join that did not
                // wait for it would return first.
                std::thread::sleep(Duration::from_millis(60));
                l2.lock()
                    .unwrap()
                    .push(format!("job done with {}", local.len()));
            });
            l.lock().unwrap().push("after spawn_blocking".to_string()); // not reached
        });
        running.wait();
        h.cancel();
        cancelled.set();
        assert!(h.join().unwrap_err().is_cancelled());
    });
    assert_eq!(*log.lock().unwrap(), ["job done with 28"]);
}

#[test]
fn many_blocking_calls_run_in_parallel() {
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    // Each job lasts until three have run at once, or until 10 s after the
    // start (a fixed 50 ms each did not always overlap three on a loaded
    // machine). Jobs run one or two at a time never get there, and fail
    // below after those 10 s.
    let until = start + Duration::from_secs(10);
    stackful::run(|| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let (running, peak) = (running.clone(), peak.clone());
                stackful::spawn(move || {
                    spawn_blocking(|| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        while peak.load(Ordering::SeqCst) <= 2 && Instant::now() < until {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                })
            })
            .collect();
        stackful::join_all(handles)
            .into_iter()
            .for_each(|r| r.unwrap());
    });
    assert!(
        peak.load(Ordering::SeqCst) > 2,
        "the pool grew: peak {}",
        peak.load(Ordering::SeqCst)
    );
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_capped_pool_still_runs_every_job() {
    let rt = stackful::Runtime::builder()
        .workers(2)
        .max_blocking_threads(1)
        .blocking_keep_alive(Duration::from_millis(10))
        .build()
        .unwrap();
    let done = rt.run(|| {
        let handles: Vec<_> = (0..8)
            .map(|i| stackful::spawn(move || spawn_blocking(move || i)))
            .collect();
        stackful::gather(handles).unwrap()
    });
    assert_eq!(done, (0..8).collect::<Vec<_>>());
    // Idle pool threads exit after the keep-alive; later jobs start new ones.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(rt.run(|| spawn_blocking(|| 9)), 9);
}

#[test]
fn the_caller_resumes_on_its_own_worker() {
    let rt = stackful::Runtime::builder().workers(2).build().unwrap();
    let same = rt.run(|| {
        stackful::spawn(|| {
            let before = std::thread::current().id();
            spawn_blocking(|| std::thread::sleep(Duration::from_millis(5)));
            before == std::thread::current().id()
        })
        .join()
        .unwrap()
    });
    assert!(same);
}

/// A pool thread that just finished a job spins briefly for the next one.
/// Two jobs submitted meanwhile must still run at the same time: the second
/// must wake another thread, not wait behind the first. Each job here waits
/// for the other, so running them one after the other fails (by timeout).
#[test]
fn jobs_submitted_while_a_pool_thread_spins_run_concurrently() {
    use std::sync::mpsc::channel;
    stackful::run(|| {
        spawn_blocking(|| ()); // leaves a pool thread spinning
        let (a_tx, a_rx) = channel::<()>();
        let (b_tx, b_rx) = channel::<()>();
        let a = stackful::spawn(move || {
            spawn_blocking(move || {
                a_tx.send(()).unwrap();
                b_rx.recv_timeout(Duration::from_secs(10)).is_ok()
            })
        });
        let b = stackful::spawn(move || {
            spawn_blocking(move || {
                b_tx.send(()).unwrap();
                a_rx.recv_timeout(Duration::from_secs(10)).is_ok()
            })
        });
        assert!(a.join().unwrap(), "job a never saw job b run");
        assert!(b.join().unwrap(), "job b never saw job a run");
    });
}
