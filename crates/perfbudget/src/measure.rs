//! The n = 11 trimmed mean and the [`Measurement`] it produces.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Untimed runs before the timed ones.
pub const WARMUP_RUNS: usize = 1;

/// Timed runs per measurement. Odd, so the median is one sample.
pub const TIMED_RUNS: usize = 11;

/// Samples dropped at each end (fastest and slowest) before averaging.
pub const TRIMMED_EACH_SIDE: usize = 2;

/// Samples that remain after trimming and are averaged: 7.
pub const KEPT_RUNS: usize = TIMED_RUNS - 2 * TRIMMED_EACH_SIDE;

/// The result of one n = 11 measurement.
///
/// Built by [`trimmed_mean`], [`trimmed_mean_with_setup`] or, for tests of
/// code that consumes measurements, [`Measurement::from_samples`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Measurement {
    samples: [Duration; TIMED_RUNS],
    sorted: [Duration; TIMED_RUNS],
    trimmed_mean: Duration,
    std_dev: Duration,
    thread: Option<ThreadUsage>,
}

/// Where the measuring thread's time went during each timed sample, from
/// `/proc/thread-self/schedstat` (Linux): on a CPU, or runnable but
/// waiting in the run queue for one. Wall time minus both is time the
/// thread was blocked (I/O, locks, page faults from disk).
///
/// Read just outside each timed window, so each value also holds the few
/// microseconds of the read itself.
///
/// A wait in the run queue is the machine's doing only as far as a thread
/// that wanted the CPU all along would have waited too: code that gives the
/// CPU away itself (`yield_now` in a loop, a spin-wait) also waits in the
/// run queue, and that wait is its own. So the measurement also takes the
/// machine's [`share`](Self::share): the fraction of wall time a thread
/// that only computes got on a CPU, probed just before and after the timed
/// runs. A sample's wait is excused only up to what its on-CPU time would
/// have waited at that share (see
/// [`Measurement::trimmed_mean_without_runq_wait`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ThreadUsage {
    /// On-CPU time per sample, in run order.
    pub cpu: [Duration; TIMED_RUNS],
    /// Run-queue wait per sample, in run order.
    pub wait: [Duration; TIMED_RUNS],
    /// The fraction (0, 1] of wall time a busy-spinning probe on the
    /// measuring thread got on a CPU around the timed runs: 1.0 on an idle
    /// machine, 0.5 when it shared its CPU with one other busy thread.
    pub share: f64,
}

/// Wall time of each of the two spin probes that measure the machine's
/// [`ThreadUsage::share`]: long enough to span a few scheduler slices.
pub const SHARE_PROBE: Duration = Duration::from_millis(4);

/// The middle of 11 values.
fn median_of(values: &[Duration; TIMED_RUNS]) -> Duration {
    let mut sorted = *values;
    sorted.sort_unstable();
    sorted[TIMED_RUNS / 2]
}

impl ThreadUsage {
    /// The median on-CPU time of a sample.
    #[must_use]
    pub fn cpu_median(&self) -> Duration {
        median_of(&self.cpu)
    }

    /// The median run-queue wait of a sample.
    #[must_use]
    pub fn wait_median(&self) -> Duration {
        median_of(&self.wait)
    }
}

impl Measurement {
    /// The same statistic over each sample's wall time minus its run-queue
    /// wait: the time the measuring thread ran or was blocked, not the time
    /// it was ready to run while another process had the CPU. `None` where
    /// the platform does not tell ([`thread_usage`](Self::thread_usage)).
    ///
    /// A sample's excused wait is at most what its on-CPU time would have
    /// waited at the machine's [`share`](ThreadUsage::share):
    /// `cpu × (1/share − 1)`. On a quiet machine (share 1) nothing is
    /// excused; on an oversubscribed one the neighbours' cost is removed.
    /// Code that waits by giving the CPU away (a `yield_now` loop) runs
    /// little and waits much: its wait is its own and stays charged.
    #[must_use]
    pub fn trimmed_mean_without_runq_wait(&self) -> Option<Duration> {
        let usage = self.thread.as_ref()?;
        let share = if usage.share.is_finite() {
            usage.share.clamp(0.01, 1.0)
        } else {
            1.0
        };
        let mut own = self.samples;
        for ((sample, wait), cpu) in own.iter_mut().zip(usage.wait).zip(usage.cpu) {
            let excusable = cpu.mul_f64(1.0 / share - 1.0);
            *sample = sample.saturating_sub(wait.min(excusable));
        }
        Some(Measurement::from_samples(own).trimmed_mean())
    }
}

/// The measuring thread's on-CPU time and run-queue wait so far, from
/// `/proc/thread-self/schedstat`; `None` where it cannot be read.
#[must_use]
pub fn thread_times() -> Option<(Duration, Duration)> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    parse_schedstat(&text)
}

/// [`thread_times`] brought up to date first.
///
/// The kernel adds a running thread's CPU time to what schedstat shows
/// only at a scheduler tick (every 1 to 10 ms) or when the thread leaves
/// the CPU; a yield makes it account the time now (and costs a system
/// call when no other thread wants the CPU). Read outside the timed
/// window, so the yield's own wait is not part of any sample.
fn precise_thread_times() -> Option<(Duration, Duration)> {
    std::thread::yield_now();
    thread_times()
}

/// `cpu_ns wait_ns timeslices` → (cpu, wait).
pub(crate) fn parse_schedstat(text: &str) -> Option<(Duration, Duration)> {
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    let cpu = fields.next()?.ok()?;
    let wait = fields.next()?.ok()?;
    Some((Duration::from_nanos(cpu), Duration::from_nanos(wait)))
}

impl Measurement {
    /// Summarises 11 timed samples, given in the order they were taken.
    ///
    /// ```
    /// use std::time::Duration;
    /// use perfbudget::Measurement;
    ///
    /// let mut samples = [Duration::from_millis(2); 11];
    /// samples[3] = Duration::from_millis(90); // one scheduler hiccup
    /// let m = Measurement::from_samples(samples);
    /// assert_eq!(m.trimmed_mean(), Duration::from_millis(2));
    /// assert_eq!(m.max(), Duration::from_millis(90));
    /// ```
    #[must_use]
    pub fn from_samples(samples: [Duration; TIMED_RUNS]) -> Measurement {
        let mut sorted = samples;
        sorted.sort_unstable();
        let kept = &sorted[TRIMMED_EACH_SIDE..TIMED_RUNS - TRIMMED_EACH_SIDE];
        // Sum in u128 nanoseconds: seven Duration::MAX values still fit.
        let sum: u128 = kept.iter().map(Duration::as_nanos).sum();
        let trimmed_mean = duration_from_nanos(sum / KEPT_RUNS as u128);
        let nanos = samples.map(|sample| sample.as_nanos() as f64);
        let mean = nanos.iter().sum::<f64>() / TIMED_RUNS as f64;
        let variance =
            nanos.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (TIMED_RUNS - 1) as f64;
        let std_dev_nanos = variance.sqrt();
        let std_dev = Duration::try_from_secs_f64(std_dev_nanos / 1e9).unwrap_or(Duration::MAX);
        Measurement {
            samples,
            sorted,
            trimmed_mean,
            std_dev,
            thread: None,
        }
    }

    /// The same measurement with the measuring thread's usage per sample.
    #[must_use]
    pub fn with_thread_usage(self, usage: ThreadUsage) -> Measurement {
        Measurement {
            thread: Some(usage),
            ..self
        }
    }

    /// Where the measuring thread's time went per sample, when the
    /// platform tells (Linux).
    #[must_use]
    pub fn thread_usage(&self) -> Option<&ThreadUsage> {
        self.thread.as_ref()
    }

    /// The 11 timed samples in the order they were taken.
    #[must_use]
    pub fn samples(&self) -> &[Duration; TIMED_RUNS] {
        &self.samples
    }

    /// The 11 timed samples, fastest first.
    #[must_use]
    pub fn sorted_samples(&self) -> &[Duration; TIMED_RUNS] {
        &self.sorted
    }

    /// Mean of the middle 7 samples after dropping the 2 fastest and the
    /// 2 slowest: the number a gate compares with its budget.
    #[must_use]
    pub fn trimmed_mean(&self) -> Duration {
        self.trimmed_mean
    }

    /// The middle (6th fastest) sample.
    #[must_use]
    pub fn median(&self) -> Duration {
        self.sorted[TIMED_RUNS / 2]
    }

    /// The fastest sample.
    #[must_use]
    pub fn min(&self) -> Duration {
        self.sorted[0]
    }

    /// The slowest sample.
    #[must_use]
    pub fn max(&self) -> Duration {
        self.sorted[TIMED_RUNS - 1]
    }

    /// Sample standard deviation of all 11 samples (n − 1 denominator).
    #[must_use]
    pub fn std_dev(&self) -> Duration {
        self.std_dev
    }
}

/// Converts nanoseconds to a [`Duration`], saturating at [`Duration::MAX`].
fn duration_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    match u64::try_from(nanos / NANOS_PER_SEC) {
        Ok(secs) => Duration::new(secs, (nanos % NANOS_PER_SEC) as u32),
        Err(_) => Duration::MAX,
    }
}

/// Measures `op`: one untimed warm-up, then 11 timed runs.
///
/// `op` is called exactly 12 times. Its result passes through
/// [`std::hint::black_box`] inside the timed window, so the optimizer cannot
/// delete the work, and is dropped after the window closes.
///
/// ```
/// let m = perfbudget::trimmed_mean(|| (0..1_000u64).sum::<u64>());
/// assert!(m.min() <= m.trimmed_mean() && m.trimmed_mean() <= m.max());
/// ```
pub fn trimmed_mean<R>(mut op: impl FnMut() -> R) -> Measurement {
    trimmed_mean_with_setup(|| (), |()| op())
}

/// Measures `op` on a fresh fixture from `setup` each run.
///
/// `setup` runs before the warm-up and before every timed run, outside the
/// timed window; its value is moved into `op`. Use this for operations that
/// consume or mutate their input (draining a queue, sorting a vector).
/// Both closures are called exactly 12 times (1 warm-up + 11 timed runs).
///
/// ```
/// let data: Vec<u32> = (0..10_000).rev().collect();
/// let m = perfbudget::trimmed_mean_with_setup(
///     || data.clone(), // not timed
///     |mut v| {
///         v.sort_unstable();
///         v
///     },
/// );
/// assert!(m.median() <= m.max());
/// ```
pub fn trimmed_mean_with_setup<S, R>(
    setup: impl FnMut() -> S,
    op: impl FnMut(S) -> R,
) -> Measurement {
    measure_with(&MonotonicClock, setup, op)
}

/// A source of monotonic time, so the loop can be tested with a fake clock.
pub(crate) trait Clock {
    /// Time since an arbitrary fixed origin.
    fn now(&self) -> Duration;

    /// The current thread's (on-CPU, run-queue wait) totals, if known.
    fn thread(&self) -> Option<(Duration, Duration)> {
        None
    }

    /// The fraction of wall time a busy-spinning thread gets on a CPU now
    /// ([`ThreadUsage::share`]), if known.
    fn share(&self) -> Option<f64> {
        None
    }
}

/// The real clock: [`Instant`], relative to a process-wide origin.
struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }

    fn thread(&self) -> Option<(Duration, Duration)> {
        precise_thread_times()
    }

    fn share(&self) -> Option<f64> {
        let (cpu0, _) = precise_thread_times()?;
        let start = Instant::now();
        while start.elapsed() < SHARE_PROBE {
            black_box(0u64);
        }
        let wall = start.elapsed();
        let (cpu1, _) = precise_thread_times()?;
        Some(cpu1.saturating_sub(cpu0).as_secs_f64() / wall.as_secs_f64())
    }
}

/// The measurement loop, generic over the clock.
pub(crate) fn measure_with<S, R>(
    clock: &impl Clock,
    mut setup: impl FnMut() -> S,
    mut op: impl FnMut(S) -> R,
) -> Measurement {
    for _ in 0..WARMUP_RUNS {
        let fixture = setup();
        drop(black_box(op(black_box(fixture))));
    }
    let mut samples = [Duration::ZERO; TIMED_RUNS];
    let mut cpu = [Duration::ZERO; TIMED_RUNS];
    let mut wait = [Duration::ZERO; TIMED_RUNS];
    let mut usage_known = true;
    let share_before = clock.share();
    for (i, sample) in samples.iter_mut().enumerate() {
        let fixture = black_box(setup());
        let before = clock.thread();
        let start = clock.now();
        let result = black_box(op(fixture));
        let end = clock.now();
        let after = clock.thread();
        *sample = end.saturating_sub(start);
        match (before, after) {
            (Some((c0, w0)), Some((c1, w1))) => {
                cpu[i] = c1.saturating_sub(c0);
                wait[i] = w1.saturating_sub(w0);
            }
            _ => usage_known = false,
        }
        // The result is dropped outside the window: an op that wants its
        // deallocation timed drops it itself and returns ().
        drop(result);
    }
    let share_after = clock.share();
    let m = Measurement::from_samples(samples);
    match (usage_known, share_before, share_after) {
        (true, Some(before), Some(after)) => m.with_thread_usage(ThreadUsage {
            cpu,
            wait,
            share: f64::midpoint(before, after).min(1.0),
        }),
        _ => m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A clock that only moves when a test advances it.
    #[derive(Default)]
    struct FakeClock {
        now: Cell<Duration>,
    }

    impl FakeClock {
        fn advance(&self, by: Duration) {
            self.now.set(self.now.get() + by);
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            self.now.get()
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn op_and_setup_run_exactly_twelve_times() {
        let setups = Cell::new(0);
        let ops = Cell::new(0);
        let clock = FakeClock::default();
        measure_with(
            &clock,
            || setups.set(setups.get() + 1),
            |()| ops.set(ops.get() + 1),
        );
        assert_eq!(setups.get(), 12);
        assert_eq!(ops.get(), 12);

        let calls = Cell::new(0);
        trimmed_mean(|| calls.set(calls.get() + 1));
        assert_eq!(calls.get(), 12);

        let (setups, ops) = (Cell::new(0), Cell::new(0));
        trimmed_mean_with_setup(|| setups.set(setups.get() + 1), |()| ops.set(ops.get() + 1));
        assert_eq!((setups.get(), ops.get()), (12, 12));
    }

    #[test]
    fn setup_runs_before_each_op_and_its_value_is_moved_in() {
        let clock = FakeClock::default();
        let next = Cell::new(0);
        let seen = std::cell::RefCell::new(Vec::new());
        measure_with(
            &clock,
            || {
                next.set(next.get() + 1);
                vec![next.get(); 3]
            },
            |fixture: Vec<i32>| seen.borrow_mut().push(fixture[0]),
        );
        assert_eq!(*seen.borrow(), (1..=12).collect::<Vec<_>>());
    }

    #[test]
    fn setup_time_stays_out_of_the_timed_window() {
        let clock = FakeClock::default();
        let m = measure_with(
            &clock,
            || clock.advance(1000 * MS), // an expensive fixture
            |()| clock.advance(2 * MS),
        );
        assert_eq!(m.samples(), &[2 * MS; TIMED_RUNS]);
        assert_eq!(m.trimmed_mean(), 2 * MS);
    }

    /// Measures an op whose `run`-th call (1 = the warm-up) takes
    /// `cost(run)` on the fake clock.
    fn measure_costs(cost: impl Fn(u32) -> Duration) -> Measurement {
        let clock = FakeClock::default();
        let run = Cell::new(0);
        measure_with(
            &clock,
            || (),
            |()| {
                run.set(run.get() + 1);
                clock.advance(cost(run.get()));
            },
        )
    }

    #[test]
    fn warm_up_is_not_timed() {
        // The first (warm-up) run is a cold, slow one.
        let m = measure_costs(|run| if run == 1 { 500 * MS } else { MS });
        assert_eq!(m.max(), MS);
    }

    #[test]
    fn an_injected_outlier_is_dropped_from_the_trimmed_mean() {
        let m = measure_costs(|run| if run == 6 { 900 * MS } else { 3 * MS });
        assert_eq!(m.trimmed_mean(), 3 * MS);
        assert_eq!(m.median(), 3 * MS);
        assert_eq!(m.max(), 900 * MS);
        assert_eq!(m.samples()[4], 900 * MS, "run 6 is the 5th timed run");
    }

    #[test]
    fn trimmed_mean_is_the_mean_of_the_middle_seven() {
        // 1..=11 ms, shuffled; middle seven are 3..=9 ms, mean 6 ms.
        let order = [7, 1, 11, 4, 9, 2, 6, 10, 3, 8, 5];
        let m = Measurement::from_samples(order.map(|ms| ms * MS));
        assert_eq!(m.trimmed_mean(), 6 * MS);
        assert_eq!(m.median(), 6 * MS);
        assert_eq!(m.min(), MS);
        assert_eq!(m.max(), 11 * MS);
        assert_eq!(m.samples()[0], 7 * MS, "run order is kept");
        assert_eq!(m.sorted_samples()[0], MS);
        // Sample std dev of 1..=11 is sqrt(11) ms.
        let expected = 11f64.sqrt() * 1e-3;
        assert!((m.std_dev().as_secs_f64() - expected).abs() < 1e-9);
    }

    #[test]
    fn the_two_slowest_and_two_fastest_are_dropped() {
        let mut samples = [5 * MS; TIMED_RUNS];
        samples[0] = Duration::ZERO;
        samples[1] = Duration::ZERO;
        samples[9] = Duration::from_secs(3600);
        samples[10] = Duration::from_secs(3600);
        assert_eq!(Measurement::from_samples(samples).trimmed_mean(), 5 * MS);
    }

    #[test]
    fn schedstat_is_parsed_and_thread_usage_recorded() {
        assert_eq!(
            parse_schedstat("1500 2500 7\n"),
            Some((Duration::from_nanos(1500), Duration::from_nanos(2500)))
        );
        assert_eq!(parse_schedstat("x 1 2"), None);
        assert_eq!(parse_schedstat(""), None);
        // A fake clock without thread times gives no usage.
        let clock = FakeClock::default();
        let m = measure_with(&clock, || (), |()| clock.advance(MS));
        assert!(m.thread_usage().is_none());
        // The real clock on Linux: cpu and wait are recorded per sample.
        if cfg!(target_os = "linux") {
            // The kernel adds a running thread's CPU time to schedstat at a
            // scheduler tick or a context switch, not on each read: a
            // sample shorter than a tick (1-10 ms) can read 0. Each sample
            // here computes for 25 ms of wall time, which spans a tick
            // whatever CONFIG_HZ is, so some sample must show CPU time.
            let spin = || {
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < Duration::from_millis(25) {
                    n = black_box(n + 1);
                }
                n
            };
            let m = trimmed_mean(spin);
            let usage = m.thread_usage().expect("schedstat on Linux");
            assert!(usage.cpu.iter().any(|c| !c.is_zero()), "{usage:?}");
        }
    }

    #[test]
    fn huge_samples_do_not_overflow() {
        let m = Measurement::from_samples([Duration::MAX; TIMED_RUNS]);
        assert_eq!(m.trimmed_mean(), Duration::MAX);
        assert_eq!(m.std_dev(), Duration::ZERO);
    }

    #[test]
    fn sub_nanosecond_means_round_down() {
        let mut samples = [Duration::ZERO; TIMED_RUNS];
        samples[5] = Duration::from_nanos(6); // 6 ns / 7 → 0 ns
        assert_eq!(
            Measurement::from_samples(samples).trimmed_mean(),
            Duration::ZERO
        );
    }
}
