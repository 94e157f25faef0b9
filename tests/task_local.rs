//! Green-thread-local storage: `task_local!`.

mod common;

use common::panic_text;

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stackful::sync::{Barrier, Event};
use stackful::task::AccessError;
use stackful::{Generator, GeneratorState};

stackful::task_local! {
    static ID: Cell<u64> = Cell::new(0);
    /// A doc comment and a `pub` key in the same invocation.
    pub static NAMES: RefCell<Vec<String>> = RefCell::new(Vec::new())
}

#[test]
fn smoke() {
    let seen = stackful::run(|| {
        ID.set(7);
        ID.get()
    });
    assert_eq!(seen, 7);
}

#[test]
fn each_green_thread_keeps_its_own_value_across_suspensions() {
    // The case: three green threads set an id, all suspend, and
    // each reads back its own (with `thread_local!` all read the last one).
    let seen = stackful::run(|| {
        let all_set = Arc::new(Barrier::new(3));
        let handles: Vec<_> = (1..=3u64)
            .map(|id| {
                let all_set = all_set.clone();
                stackful::spawn(move || {
                    ID.set(id);
                    all_set.wait(); // every one has set its value
                    stackful::sleep(Duration::from_millis(1));
                    ID.get()
                })
            })
            .collect();
        stackful::gather(handles).unwrap()
    });
    assert_eq!(seen, [1, 2, 3]);
}

#[test]
fn a_value_is_made_on_first_access_only() {
    static MADE: AtomicUsize = AtomicUsize::new(0);
    stackful::task_local! {
        static COUNTED: u32 = {
            MADE.fetch_add(1, Ordering::SeqCst);
            5
        };
    }
    stackful::run(|| {
        stackful::spawn(|| ()).join().unwrap(); // never touches it
        assert_eq!(MADE.load(Ordering::SeqCst), 0);
        let v = stackful::spawn(|| COUNTED.with(|v| *v) + COUNTED.with(|v| *v))
            .join()
            .unwrap();
        assert_eq!(v, 10);
        assert_eq!(MADE.load(Ordering::SeqCst), 1, "made once per green thread");
    });
}

/// Records, when dropped, which green thread it was dropped on.
struct Recorder(Arc<Mutex<Vec<Option<u64>>>>);

impl Drop for Recorder {
    fn drop(&mut self) {
        let on = stackful::task::current().map(|t| t.id().as_u64());
        self.0.lock().unwrap().push(on);
    }
}

stackful::task_local! {
    static RECORDER: RefCell<Option<Recorder>> = RefCell::new(None);
}

#[test]
fn values_are_dropped_on_their_green_thread_before_join_returns() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    stackful::run(move || {
        let h = stackful::spawn(move || {
            RECORDER.set(Some(Recorder(log2)));
            stackful::task::current().unwrap().id().as_u64()
        });
        let id = h.join().unwrap();
        assert_eq!(
            *log.lock().unwrap(),
            [Some(id)],
            "dropped on the green thread, before join returned"
        );
    });
}

#[test]
fn a_cancelled_green_thread_drops_its_values_and_their_destructors_may_wait() {
    struct SlowDrop(Arc<AtomicUsize>);
    impl Drop for SlowDrop {
        fn drop(&mut self) {
            // A wait in a task-local's destructor is not cut short by the
            // green thread's cancellation.
            stackful::sleep(Duration::from_millis(20));
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    stackful::task_local! {
        static SLOW: RefCell<Option<SlowDrop>> = RefCell::new(None);
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    stackful::run(move || {
        let ready = Arc::new(Event::new());
        let r = ready.clone();
        let h = stackful::spawn(move || {
            SLOW.set(Some(SlowDrop(d)));
            r.set();
            stackful::sleep(Duration::from_secs(3600));
        });
        ready.wait();
        h.cancel();
        assert!(h.join().unwrap_err().is_cancelled());
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            1,
            "dropped before join returned"
        );
    });
}

#[test]
fn the_main_green_thread_drops_its_values_before_run_returns() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    let id = stackful::run(move || {
        RECORDER.set(Some(Recorder(log2)));
        stackful::task::current().unwrap().id().as_u64()
    });
    assert_eq!(*log.lock().unwrap(), [Some(id)]);
}

#[test]
fn plain_threads_get_a_value_each_dropped_at_thread_exit() {
    let log = Arc::new(Mutex::new(Vec::new()));
    // `std::thread::scope` may return before its threads' thread-locals are
    // dropped; `join` waits for the whole thread.
    let threads: Vec<_> = (1..=2)
        .map(|id| {
            let log = log.clone();
            std::thread::spawn(move || {
                ID.set(id);
                RECORDER.set(Some(Recorder(log)));
                std::thread::yield_now();
                assert_eq!(ID.get(), id);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        *log.lock().unwrap(),
        [None, None],
        "both dropped at thread exit"
    );
}

#[test]
fn a_generator_sees_the_values_of_whoever_resumes_it() {
    // Generators are not `Send`: each green thread makes and resumes its own,
    // and each sees its resumer's value, not a value of its own.
    let seen = stackful::run(|| {
        let handles: Vec<_> = (1..=2u64)
            .map(|id| {
                stackful::spawn(move || {
                    let mut g = Generator::new(|co, ()| {
                        loop {
                            co.yield_(ID.get());
                        }
                    });
                    ID.set(id);
                    let first = g.resume();
                    stackful::yield_now();
                    // A generator's own writes land in its resumer's value.
                    let mut setter = Generator::new(move |co, ()| {
                        ID.set(10 * id);
                        co.yield_(());
                    });
                    setter.resume();
                    (first, g.resume(), ID.get())
                })
            })
            .collect();
        stackful::gather(handles).unwrap()
    });
    use GeneratorState::Yielded;
    assert_eq!(
        seen,
        [(Yielded(1), Yielded(10), 10), (Yielded(2), Yielded(20), 20)]
    );
    // Outside green threads, the thread's own value.
    ID.set(9);
    let mut g = Generator::new(|co, ()| co.yield_(ID.get()));
    assert_eq!(g.resume(), Yielded(9));
}

#[test]
fn a_panicking_destructor_becomes_the_outcome_of_a_green_thread_that_succeeded() {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("task-local bomb");
        }
    }
    stackful::task_local! {
        static BOMB: RefCell<Option<Bomb>> = RefCell::new(None);
    }
    stackful::run(|| {
        let err = stackful::spawn(|| {
            BOMB.set(Some(Bomb));
            5
        })
        .join()
        .unwrap_err();
        assert!(err.is_panic());
        assert_eq!(panic_text(err.into_panic()), "task-local bomb");
        // After a failure, the body's panic stays the outcome.
        let err = stackful::spawn(|| {
            BOMB.set(Some(Bomb));
            panic!("the body's own");
        })
        .join()
        .unwrap_err();
        assert_eq!(panic_text(err.into_panic()), "the body's own");
    });
}

#[test]
fn a_destructor_that_uses_a_task_local_gets_an_access_error() {
    let outcome = Arc::new(Mutex::new(None));
    struct Peeker(Arc<Mutex<Option<Result<u64, AccessError>>>>);
    impl Drop for Peeker {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = Some(ID.try_with(|v| v.get()));
        }
    }
    stackful::task_local! {
        static PEEKER: RefCell<Option<Peeker>> = RefCell::new(None);
    }
    let o = outcome.clone();
    stackful::run(move || {
        stackful::spawn(move || {
            ID.set(3);
            PEEKER.set(Some(Peeker(o)));
        })
        .join()
        .unwrap();
    });
    let got = outcome.lock().unwrap().take().expect("the destructor ran");
    let text = got.unwrap_err().to_string();
    assert!(text.contains("dropped"), "{text}");
}

#[test]
fn with_panics_clearly_from_a_destructor_and_names_the_caller() {
    struct Strict;
    impl Drop for Strict {
        fn drop(&mut self) {
            ID.with(|_| ());
        }
    }
    stackful::task_local! {
        static STRICT: RefCell<Option<Strict>> = RefCell::new(None);
    }
    let err = stackful::run(|| {
        stackful::spawn(|| STRICT.set(Some(Strict)))
            .join()
            .unwrap_err()
    });
    let text = panic_text(err.into_panic());
    assert!(text.contains("try_with"), "{text}");
}

#[test]
fn an_initializer_may_use_other_keys_and_the_helpers_work() {
    stackful::task_local! {
        static BASE: Cell<u32> = Cell::new(10);
        static DERIVED: u32 = BASE.get() * 2;
    }
    stackful::run(|| {
        BASE.set(21);
        assert_eq!(DERIVED.with(|v| *v), 42);
        NAMES.with_borrow_mut(|n| n.push("a".into()));
        NAMES.with_borrow(|n| assert_eq!(n, &["a"]));
        assert_eq!(NAMES.take(), ["a"]);
        assert_eq!(NAMES.replace(vec!["b".into()]), Vec::<String>::new());
        assert_eq!(ID.replace(4), 0);
        assert_eq!(ID.take(), 4);
    });
}

#[test]
fn scoped_children_have_their_own_values() {
    stackful::run(|| {
        ID.set(100);
        let mut seen = Vec::new();
        stackful::scope(|s| {
            let a = s.spawn(|| {
                ID.set(1);
                stackful::yield_now();
                ID.get()
            });
            let b = s.spawn(|| ID.get());
            seen.push(a.join().unwrap());
            seen.push(b.join().unwrap());
        });
        assert_eq!(seen, [1, 0]);
        assert_eq!(ID.get(), 100);
    });
}

/// Review of issue 12: a generator that yields inside `with` keeps the `&T`
/// lent by its resumer's context. Here that context (the main green thread)
/// ends, and the generator is resumed on the plain thread afterwards: the
/// value must still be there, and is dropped when that last loan ends.
#[test]
fn regression_a_generator_holding_a_loan_past_its_lenders_end_keeps_the_value_alive() {
    static DROPPED: AtomicUsize = AtomicUsize::new(0);
    struct Tracked(String);
    impl Drop for Tracked {
        fn drop(&mut self) {
            DROPPED.fetch_add(1, Ordering::SeqCst);
        }
    }
    stackful::task_local! {
        static V: RefCell<Tracked> = RefCell::new(Tracked("hello, world".repeat(4)));
    }
    let mut g = stackful::run(|| {
        let mut g = Generator::new(|co, ()| {
            V.with(|v| {
                co.yield_(());
                v.borrow().0.len() // read after the lender ended (ASan checks it)
            })
        });
        g.resume();
        g // `run`'s result need not be `Send`
    });
    assert_eq!(
        DROPPED.load(Ordering::SeqCst),
        0,
        "still lent to the generator"
    );
    assert_eq!(g.resume(), GeneratorState::Complete(48));
    assert_eq!(
        DROPPED.load(Ordering::SeqCst),
        1,
        "dropped when the loan ended"
    );
}

/// Review of issue 12: the same loan without leaving the green thread: a
/// generator kept in a task-local yields inside another key's `with`. When
/// the green thread ends, that key's value is let go before the generator
/// is closed, and the close runs a destructor that still reads it.
#[test]
fn regression_a_generator_kept_in_a_task_local_reads_a_value_let_go_before_it() {
    static VAL_DROPPED: AtomicUsize = AtomicUsize::new(0);
    static SEEN_DROPPED: AtomicUsize = AtomicUsize::new(usize::MAX);
    struct Val(String);
    impl Drop for Val {
        fn drop(&mut self) {
            VAL_DROPPED.fetch_add(1, Ordering::SeqCst);
        }
    }
    stackful::task_local! {
        static VAL: RefCell<Val> = RefCell::new(Val("task-local value".repeat(3)));
        static GEN: RefCell<Option<Generator<(), (), ()>>> = const { RefCell::new(None) };
    }
    struct Guard<'a>(&'a RefCell<Val>);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            SEEN_DROPPED.store(VAL_DROPPED.load(Ordering::SeqCst), Ordering::SeqCst);
            std::hint::black_box(self.0.borrow().0.len()); // ASan checks it
        }
    }
    stackful::run(|| {
        stackful::spawn(|| {
            VAL.with(|_| ()); // VAL gets the lower index: let go first
            let mut g = Generator::new(|co, ()| {
                VAL.with(|v| {
                    let _guard = Guard(v);
                    co.yield_(());
                })
            });
            g.resume();
            GEN.with(|slot| *slot.borrow_mut() = Some(g));
        })
        .join()
        .unwrap();
    });
    assert_eq!(
        SEEN_DROPPED.load(Ordering::SeqCst),
        0,
        "read before the drop"
    );
    assert_eq!(VAL_DROPPED.load(Ordering::SeqCst), 1, "then dropped once");
}
