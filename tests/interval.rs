//! Intervals: the first tick, spacing, missed ticks, bad periods, and
//! cancellation, on green threads and plain threads.

mod common;

use common::{panic_text, within};

use std::panic;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stackful::time::{Interval, MissedTickBehavior, interval, interval_at};
use stackful::{Elapsed, sleep, timeout};

const MS: Duration = Duration::from_millis(1);

/// Generous: the machine is shared and tests may run under a sanitizer.
const SLACK: Duration = Duration::from_secs(5);

#[test]
fn the_first_tick_completes_at_once_and_returns_the_creation_instant() {
    for green in [true, false] {
        let check = move || {
            let before = Instant::now();
            let mut ticks = interval(Duration::from_secs(3600));
            let after = Instant::now();
            let first = ticks.tick();
            assert!(before <= first && first <= after, "green: {green}");
            assert!(before.elapsed() < SLACK, "green: {green}");
        };
        within(60, move || {
            if green {
                stackful::run(check);
            } else {
                check();
            }
        });
    }
}

#[test]
fn interval_at_first_ticks_at_start_then_every_period() {
    let start = Instant::now() + 30 * MS;
    let (first, second) = stackful::run(|| {
        let mut ticks = interval_at(start, 10 * MS);
        let first = ticks.tick();
        assert!(Instant::now() >= start, "the first tick waited for start");
        (first, ticks.tick())
    });
    assert_eq!(first, start);
    assert_eq!(second, start + 10 * MS);
    // A start in the past ticks at once, and reports that start.
    let past = Instant::now() - Duration::from_secs(1);
    let mut ticks = interval_at(past, Duration::from_secs(3600));
    assert_eq!(within(60, move || ticks.tick()), past);
}

#[test]
fn ticks_are_a_period_apart_on_green_and_plain_threads() {
    let period = 15 * MS;
    let spaced = move |ticks: &mut Interval| {
        let instants: Vec<Instant> = (0..5).map(|_| ticks.tick()).collect();
        let took = instants[0].elapsed();
        for (k, at) in instants.iter().enumerate() {
            assert_eq!(*at, instants[0] + period * k as u32);
        }
        assert!(
            Instant::now() >= instants[4],
            "a tick never completes early"
        );
        assert!(took >= period * 4 && took < period * 4 + SLACK, "{took:?}");
    };
    stackful::run(|| spaced(&mut interval(period)));
    within(60, move || spaced(&mut interval(period)));
    // Ten green threads ticking at once.
    stackful::run(|| {
        let handles: Vec<_> = (0..10)
            .map(|_| stackful::spawn(move || spaced(&mut interval(period))))
            .collect();
        stackful::gather(handles).unwrap();
    });
}

/// Ticks once, then misses ticks by sleeping `late` before ticking again.
/// Returns the first tick, the instants just before and after the overdue
/// tick, the overdue tick, and the two after it.
fn miss_ticks(
    behavior: MissedTickBehavior,
    period: Duration,
    late: Duration,
) -> (Instant, Instant, Instant, [Instant; 3]) {
    let mut ticks = interval(period);
    ticks.set_missed_tick_behavior(behavior);
    assert_eq!(ticks.missed_tick_behavior(), behavior);
    let t0 = ticks.tick();
    sleep(late);
    let before = Instant::now();
    let overdue = ticks.tick();
    let after = Instant::now();
    (t0, before, after, [overdue, ticks.tick(), ticks.tick()])
}

#[test]
fn burst_keeps_the_schedule_and_catches_up_at_once() {
    let period = 40 * MS;
    stackful::run(|| {
        let start = Instant::now();
        let (t0, _, _, [a, b, c]) = miss_ticks(MissedTickBehavior::Burst, period, 150 * MS);
        assert_eq!([a, b, c], [t0 + period, t0 + 2 * period, t0 + 3 * period]);
        // The three were all due by the time of the sleep's end: no waiting.
        assert!(start.elapsed() < 150 * MS + SLACK);
        assert_eq!(
            interval(period).missed_tick_behavior(),
            MissedTickBehavior::Burst
        );
    });
}

#[test]
fn delay_restarts_the_schedule_from_the_late_tick() {
    let period = 40 * MS;
    stackful::run(|| {
        let (t0, before, after, [a, b, c]) =
            miss_ticks(MissedTickBehavior::Delay, period, 150 * MS);
        assert_eq!(a, t0 + period, "the overdue tick reports its own instant");
        assert!(
            before + period <= b && b <= after + period,
            "the next tick is a period after the overdue one completed"
        );
        assert_eq!(c, b + period);
    });
}

#[test]
fn skip_drops_the_missed_ticks_and_keeps_to_the_original_grid() {
    let period = 40 * MS;
    stackful::run(|| {
        let (t0, before, after, [a, b, c]) = miss_ticks(MissedTickBehavior::Skip, period, 150 * MS);
        assert_eq!(a, t0 + period, "the overdue tick reports its own instant");
        let since = (b - t0).as_nanos();
        assert_eq!(since % period.as_nanos(), 0, "on the grid from t0");
        assert!(b > before, "a tick still to come when the overdue one ran");
        assert!(
            b <= after + period,
            "the first such tick: none skipped over"
        );
        assert!(b >= t0 + 4 * period, "the missed ticks were skipped");
        assert_eq!(c, b + period);
    });
}

#[test]
fn reset_schedules_the_next_tick_a_period_from_now() {
    let period = 30 * MS;
    stackful::run(|| {
        let mut ticks = interval(period);
        ticks.tick();
        sleep(10 * MS);
        let before = Instant::now();
        ticks.reset();
        let after = Instant::now();
        let next = ticks.tick();
        assert!(before + period <= next && next <= after + period);
        assert!(Instant::now() >= next);
        assert_eq!(ticks.tick(), next + period);
        assert_eq!(ticks.period(), period);
    });
}

#[test]
fn a_zero_period_panics_with_a_message_naming_the_callers_line() {
    let hook = panic::take_hook();
    let location = Arc::new(Mutex::new(Vec::new()));
    let seen = location.clone();
    panic::set_hook(Box::new(move |info| {
        if let Some(at) = info.location() {
            seen.lock().unwrap().push(at.file().to_string());
        }
    }));
    let plain = panic::catch_unwind(|| interval(Duration::ZERO));
    let at = panic::catch_unwind(|| interval_at(Instant::now(), Duration::ZERO));
    panic::set_hook(hook);
    for (which, outcome) in [("interval", plain.err()), ("interval_at", at.err())] {
        let text = panic_text(outcome.expect("a zero period panics"));
        assert!(
            text.contains(&format!("`stackful::time::{which}`")) && text.contains("zero period"),
            "{text}"
        );
        assert!(
            text.contains("greater than zero"),
            "says how to fix it: {text}"
        );
    }
    let files = location.lock().unwrap().clone();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| f.ends_with("interval.rs") && f.starts_with("tests")),
        "the panic names the caller's file: {files:?}"
    );
}

#[test]
fn a_huge_period_does_not_overflow_and_its_second_tick_never_comes() {
    within(60, || {
        stackful::run(|| {
            let mut ticks = interval(Duration::MAX);
            ticks.tick();
            assert_eq!(timeout(10 * MS, || ticks.tick()), Err(Elapsed::new()));
            for behavior in [MissedTickBehavior::Delay, MissedTickBehavior::Skip] {
                let mut ticks = interval_at(Instant::now() - Duration::from_secs(1), Duration::MAX);
                ticks.set_missed_tick_behavior(behavior);
                ticks.tick();
                assert_eq!(timeout(10 * MS, || ticks.tick()), Err(Elapsed::new()));
            }
        });
    })
}

#[test]
fn tick_is_a_cancellation_point_under_timeout_and_loses_no_tick() {
    let period = 20 * MS;
    stackful::run(|| {
        let mut ticks = interval(period);
        // The first tick, due at once, is taken before the deadline is set:
        // taken inside, a stall of 110 ms before it (a loaded machine)
        // would have left `seen` empty.
        let mut seen = vec![ticks.tick()];
        let deadline = Instant::now() + 110 * MS;
        let cut = stackful::timeout_at(deadline, || {
            loop {
                seen.push(ticks.tick());
            }
        });
        assert_eq!(cut, Err(Elapsed::new()));
        // Ticks at 0, 20, ..., 100 ms; fewer if the machine is very busy.
        for (k, at) in seen.iter().enumerate() {
            assert_eq!(*at, seen[0] + period * k as u32);
        }
        assert!(
            *seen.last().unwrap() <= deadline,
            "no tick after the deadline"
        );
        // The tick the timeout cut off is still the next one.
        assert_eq!(ticks.tick(), seen[0] + period * seen.len() as u32);
    });
}

#[test]
fn a_cancelled_green_thread_stops_ticking() {
    within(60, || {
        stackful::run(|| {
            let ticking = Arc::new(stackful::sync::Event::new());
            let handle = {
                let ticking = ticking.clone();
                stackful::spawn(move || {
                    let mut ticks = interval(Duration::from_secs(3600));
                    ticks.tick();
                    ticking.set();
                    ticks.tick();
                })
            };
            ticking.wait();
            handle.cancel();
            assert!(handle.join().unwrap_err().is_cancelled());
        })
    });
}

#[test]
fn an_interval_moves_between_green_threads_and_plain_threads() {
    let period = 10 * MS;
    let mut ticks = interval(period);
    let first = ticks.tick();
    let mut ticks = stackful::run(move || {
        stackful::spawn(move || {
            assert_eq!(ticks.tick(), first + period);
            ticks
        })
        .join()
        .unwrap()
    });
    let third = std::thread::spawn(move || ticks.tick()).join().unwrap();
    assert_eq!(third, first + 2 * period);
}
