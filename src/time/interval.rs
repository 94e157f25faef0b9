//! `Interval`: ticking at a fixed period.

use std::time::{Duration, Instant};

/// How late a tick may be and still count as on time: timers are not exact,
/// so a tick this late does not switch on the [`MissedTickBehavior`].
const TOLERANCE: Duration = Duration::from_millis(5);

/// What an [`Interval`] does when a tick is missed: when
/// [`tick`](Interval::tick) is called so late that the tick it waits for is
/// already more than 5 ms overdue (timers are not precise enough to act on
/// less). Whatever the choice, the overdue tick itself completes at once and
/// returns the instant it was scheduled for; the choice decides when the
/// ticks after it are scheduled. The semantics are those of tokio's
/// `MissedTickBehavior`.
///
/// With a period of 10 ms, ticks due at 0, 10, 20, ... and a caller that
/// takes the tick of 10 only at 35:
///
/// | behavior | ticks returned, by scheduled instant | completed at |
/// |---|---|---|
/// | `Burst` | 10, 20, 30, 40, 50 | 35, 35, 35, 40, 50 |
/// | `Delay` | 10, 45, 55 | 35, 45, 55 |
/// | `Skip`  | 10, 40, 50 | 35, 40, 50 |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stackful::time::{MissedTickBehavior, interval};
///
/// let mut ticks = interval(Duration::from_millis(10));
/// assert_eq!(ticks.missed_tick_behavior(), MissedTickBehavior::Burst);
/// ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
/// assert_eq!(ticks.missed_tick_behavior(), MissedTickBehavior::Skip);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MissedTickBehavior {
    /// Keep the original schedule and tick at once until caught up: the
    /// missed ticks complete back to back, each returning its original
    /// instant, so no tick is lost and the ticks go on at the original
    /// multiples of the period from the start. The default.
    #[default]
    Burst,
    /// Start the schedule again from the late tick: the next tick is one
    /// period after the overdue one completed, and every later one a period
    /// after that. No two ticks are *scheduled* less than a period apart
    /// (a tick completed up to 5 ms late keeps its schedule, so completions
    /// can be that much closer).
    Delay,
    /// Drop the missed ticks: the next tick is the first instant of the
    /// original schedule (a whole number of periods from the start) that
    /// is still to come.
    Skip,
}

/// Ticks at a fixed period: made by [`interval`] or [`interval_at`].
///
/// [`tick`](Interval::tick) waits for the next tick and returns the instant
/// it was scheduled for. Ticks are scheduled at whole multiples of the
/// period from the start; when the caller falls behind, the
/// [`MissedTickBehavior`] decides what follows. An `Interval` is a plain
/// value: it does nothing between calls to `tick`, and can be moved to
/// another green thread or thread.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// stackful::run(|| {
///     let mut ticks = stackful::time::interval(Duration::from_millis(10));
///     let first = ticks.tick(); // at once
///     let second = ticks.tick(); // 10 ms later
///     assert_eq!(second - first, Duration::from_millis(10));
/// });
/// ```
#[derive(Debug, Clone)]
pub struct Interval {
    /// The scheduled instant of the next tick; `None` if it lies beyond
    /// what `Instant` can represent (it never comes).
    next: Option<Instant>,
    period: Duration,
    missed: MissedTickBehavior,
}

/// An [`Interval`] whose first tick completes at once and whose later ticks
/// come every `period` after that: tokio's `interval`.
///
/// Works on green threads and on plain OS threads (where `tick` sleeps the
/// thread).
///
/// # Panics
///
/// If `period` is zero.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
///
/// let start = Instant::now();
/// stackful::run(|| {
///     let mut ticks = stackful::time::interval(Duration::from_millis(10));
///     for _ in 0..3 {
///         ticks.tick(); // at 0, 10 and 20 ms
///     }
/// });
/// assert!(start.elapsed() >= Duration::from_millis(20));
/// ```
#[track_caller]
pub fn interval(period: Duration) -> Interval {
    check_period(period, "interval");
    Interval::starting(Instant::now(), period)
}

/// An [`Interval`] whose first tick completes at `start` (at once if
/// `start` has passed) and whose later ticks come every `period` after
/// that: tokio's `interval_at`.
///
/// # Panics
///
/// If `period` is zero.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
///
/// stackful::run(|| {
///     let start = Instant::now() + Duration::from_millis(20);
///     let mut ticks = stackful::time::interval_at(start, Duration::from_millis(10));
///     assert_eq!(ticks.tick(), start);
///     assert!(Instant::now() >= start);
///     assert_eq!(ticks.tick(), start + Duration::from_millis(10));
/// });
/// ```
#[track_caller]
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    check_period(period, "interval_at");
    Interval::starting(start, period)
}

#[track_caller]
fn check_period(period: Duration, function: &str) {
    if period.is_zero() {
        zero_period(function);
    }
}

#[cold]
#[track_caller]
fn zero_period(function: &str) -> ! {
    panic!(
        "`stackful::time::{function}` was given a zero period: an interval must wait a \
         non-zero time between ticks. Pass a period greater than zero (to run work as often \
         as possible, loop over it and call `stackful::yield_now` instead)"
    )
}

impl Interval {
    fn starting(start: Instant, period: Duration) -> Interval {
        Interval {
            next: Some(start),
            period,
            missed: MissedTickBehavior::default(),
        }
    }

    /// Waits until the next tick and returns the instant it was scheduled
    /// for (which may be in the past, if the tick was missed; see
    /// [`MissedTickBehavior`]). A tick that is due already completes at
    /// once, after a [`yield_now`](crate::yield_now).
    ///
    /// A cancellation point, as [`sleep_until`](crate::sleep_until) is. If
    /// it unwinds (a cancellation, an expired timeout), the tick it waited
    /// for is not used up: the next call waits for it again.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// stackful::run(|| {
    ///     let mut ticks = stackful::time::interval(Duration::from_millis(5));
    ///     let start = ticks.tick();
    ///     let mut last = start;
    ///     for _ in 0..4 {
    ///         last = ticks.tick();
    ///     }
    ///     assert_eq!(last - start, Duration::from_millis(20));
    ///     assert!(Instant::now() >= last);
    /// });
    /// ```
    pub fn tick(&mut self) -> Instant {
        let Some(scheduled) = self.next else {
            // A tick past the end of representable time: wait for good (a
            // cancellation or a timeout is the only way out).
            loop {
                crate::sleep(Duration::MAX);
            }
        };
        crate::sleep_until(scheduled);
        self.next = next_tick(scheduled, Instant::now(), self.period, self.missed);
        scheduled
    }

    /// Schedules the next tick one period from now, as if a tick had just
    /// completed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// stackful::run(|| {
    ///     let period = Duration::from_millis(10);
    ///     let mut ticks = stackful::time::interval(period);
    ///     let before = Instant::now();
    ///     ticks.reset(); // the first tick is no longer immediate
    ///     assert!(ticks.tick() >= before + period);
    /// });
    /// ```
    pub fn reset(&mut self) {
        self.next = Instant::now().checked_add(self.period);
    }

    /// The time between ticks.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let ticks = stackful::time::interval(Duration::from_secs(1));
    /// assert_eq!(ticks.period(), Duration::from_secs(1));
    /// ```
    pub fn period(&self) -> Duration {
        self.period
    }

    /// What happens when a tick is missed; [`MissedTickBehavior::Burst`]
    /// unless set.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stackful::time::MissedTickBehavior;
    ///
    /// let ticks = stackful::time::interval(Duration::from_secs(1));
    /// assert_eq!(ticks.missed_tick_behavior(), MissedTickBehavior::Burst);
    /// ```
    pub fn missed_tick_behavior(&self) -> MissedTickBehavior {
        self.missed
    }

    /// Sets what happens when a tick is missed (from the next missed tick
    /// on).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use stackful::time::MissedTickBehavior;
    ///
    /// stackful::run(|| {
    ///     let period = Duration::from_millis(10);
    ///     let mut ticks = stackful::time::interval(period);
    ///     ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ///     ticks.tick();
    ///     stackful::sleep(Duration::from_millis(50)); // misses ticks
    ///     let late = Instant::now();
    ///     ticks.tick(); // the overdue tick, at once
    ///     // The schedule starts again from the late tick.
    ///     assert!(ticks.tick() >= late + period);
    /// });
    /// ```
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.missed = behavior;
    }
}

/// When the tick after the one `scheduled` for is due, given that the
/// latter completed at `now`. `None` if that is past representable time.
fn next_tick(
    scheduled: Instant,
    now: Instant,
    period: Duration,
    missed: MissedTickBehavior,
) -> Option<Instant> {
    let late = now.saturating_duration_since(scheduled);
    if late <= TOLERANCE {
        return scheduled.checked_add(period);
    }
    match missed {
        MissedTickBehavior::Burst => scheduled.checked_add(period),
        MissedTickBehavior::Delay => now.checked_add(period),
        MissedTickBehavior::Skip => {
            // The first `scheduled + k * period` after `now`: `now` plus what
            // is left of the period it falls in.
            let into = late.as_nanos() % period.as_nanos();
            now.checked_add(period - nanos(into))
        }
    }
}

/// `n` nanoseconds, for an `n` below some `Duration`'s nanoseconds.
fn nanos(n: u128) -> Duration {
    const PER_SEC: u128 = 1_000_000_000;
    Duration::new((n / PER_SEC) as u64, (n % PER_SEC) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn each_behavior_schedules_the_tick_after_a_missed_one_as_documented() {
        let t0 = Instant::now();
        let period = 10 * MS;
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // The tick of 10 taken at 35, as in the table of `MissedTickBehavior`.
        let next = |b| next_tick(at(10), at(35), period, b);
        assert_eq!(next(MissedTickBehavior::Burst), Some(at(20)));
        assert_eq!(next(MissedTickBehavior::Delay), Some(at(45)));
        assert_eq!(next(MissedTickBehavior::Skip), Some(at(40)));
        // Late by exactly a whole number of periods: Skip goes a period on.
        let skip = next_tick(at(10), at(40), period, MissedTickBehavior::Skip);
        assert_eq!(skip, Some(at(50)));
    }

    #[test]
    fn a_tick_late_by_at_most_the_tolerance_counts_as_on_time() {
        let t0 = Instant::now();
        let delay = MissedTickBehavior::Delay;
        assert_eq!(
            next_tick(t0, t0 + TOLERANCE, 100 * MS, delay),
            Some(t0 + 100 * MS)
        );
        assert_eq!(
            next_tick(t0, t0 + TOLERANCE + MS, 100 * MS, delay),
            Some(t0 + TOLERANCE + 101 * MS)
        );
        let skip = MissedTickBehavior::Skip;
        assert_eq!(next_tick(t0, t0 + 2 * MS, MS, skip), Some(t0 + MS));
        assert_eq!(next_tick(t0, t0 + 9 * MS, MS, skip), Some(t0 + 10 * MS));
    }

    #[test]
    fn a_tick_past_representable_time_is_none_and_long_periods_skip_exactly() {
        let t0 = Instant::now();
        assert_eq!(
            next_tick(t0, t0, Duration::MAX, MissedTickBehavior::Burst),
            None
        );
        let period = Duration::new(u64::MAX / 4, 999_999_999);
        let late = Duration::from_secs(3) + Duration::from_nanos(7);
        assert_eq!(
            next_tick(t0, t0 + late, period, MissedTickBehavior::Skip),
            t0.checked_add(period)
        );
        assert_eq!(nanos(3_000_000_007), late);
    }
}
