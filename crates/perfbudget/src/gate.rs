//! Gates: compare a measurement (or counts) with what is allowed, report,
//! and fail the test with a message a person can act on.

use std::fmt::Write as _;
use std::time::Duration;

use crate::budget::{Budget, Class, FLOOR, MULTIPLIER_ENV, env_multiplier};
use crate::measure::Measurement;
use crate::record::{
    CountRecord, Declared, Expected, RECORD_SCHEMA, Record, WalltimeRecord, nanos,
};

/// Environment variable the runner sets, in every test it runs, to the
/// budget-loosening policy file its workspace configures
/// (`[workspace.metadata.perfbudget] policy`); failure messages name it.
pub const POLICY_ENV: &str = "PERF_BUDGET_POLICY";

/// The command that runs gates, quoted in failure messages.
pub const RUNNER_COMMAND: &str = "cargo perfbudget test";

/// "the policy file P" (from [`POLICY_ENV`]) or, when a gate runs outside
/// the runner, where the setting lives.
pub(crate) fn policy() -> String {
    match std::env::var(POLICY_ENV) {
        Ok(path) if !path.trim().is_empty() => path,
        _ => "the policy file named by `policy` in [workspace.metadata.perfbudget]".to_owned(),
    }
}

/// A Tier 1 walltime gate: a named budget for one measured operation.
///
/// ```should_panic
/// use std::time::Duration;
/// use perfbudget::{Class, Gate, Measurement};
///
/// let gate = Gate::new("perf_example", Class::Warm, Duration::from_millis(1))
///     .with_multiplier(1.0);
/// // A 5 ms trimmed mean against a 3 ms budget: panics with the details.
/// gate.check(&Measurement::from_samples([Duration::from_millis(5); 11]));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    name: String,
    budget: Budget,
    multiplier_warning: Option<String>,
    multiplier_in_code: Option<f64>,
}

impl Gate {
    /// A gate named `name` (use the test function's name) for `class`,
    /// with `base` the observed median cited next to the test, and the
    /// multiplier from `PERF_BUDGET_MULTIPLIER`.
    #[must_use]
    pub fn new(name: impl Into<String>, class: Class, base: Duration) -> Gate {
        let (multiplier, warning) = env_multiplier();
        Gate {
            name: name.into(),
            budget: Budget::new(class, base, *multiplier),
            multiplier_warning: warning.clone(),
            multiplier_in_code: None,
        }
    }

    /// Replaces the environment's multiplier with an explicit one (for tests
    /// of gates; a value that is not finite and positive means 1.0, one
    /// above [`MAX_MULTIPLIER`](crate::MAX_MULTIPLIER) the cap).
    ///
    /// The record declares it (`declared.multiplier_in_code`), so
    /// `cargo perfbudget audit` sees a gate loosened this way.
    #[must_use]
    pub fn with_multiplier(self, multiplier: f64) -> Gate {
        let budget = Budget::new(self.budget.class(), self.budget.base(), multiplier);
        Gate {
            multiplier_in_code: Some(budget.multiplier()),
            budget,
            multiplier_warning: None,
            ..self
        }
    }

    /// The gate's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The budget the gate enforces.
    #[must_use]
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Compares `measurement` with the budget without side effects.
    #[must_use]
    pub fn evaluate(&self, measurement: &Measurement) -> Verdict {
        let budget = self.budget;
        let mean = measurement.trimmed_mean();
        // Over budget on wall time, the gate asks whether the code was: a
        // thread that waited in the run queue was slowed by the machine's
        // other work, not by its own. The budget and the statistic are the
        // same; only the neighbours' share of each sample is left out.
        let own = measurement.trimmed_mean_without_runq_wait();
        let passed_on_wall = budget.allows(mean);
        let passed = passed_on_wall || own.is_some_and(|own| budget.allows(own));
        let record = Record {
            schema: RECORD_SCHEMA,
            gate: self.name.clone(),
            class: budget.class().as_str().to_owned(),
            passed,
            declared: Declared {
                class: budget.class().as_str().to_owned(),
                base: Some(nanos(budget.base())),
                factor: Some(budget.factor()),
                tolerance: None,
                multiplier_in_code: self.multiplier_in_code,
                expected: Vec::new(),
            },
            walltime: Some(WalltimeRecord {
                trimmed_mean_ns: nanos(mean),
                budget_ns: nanos(budget.limit()),
                base_ns: nanos(budget.base()),
                factor: budget.factor(),
                floor_ns: nanos(FLOOR),
                multiplier: budget.multiplier(),
                multiplier_warning: self.multiplier_warning.clone(),
                median_ns: nanos(measurement.median()),
                min_ns: nanos(measurement.min()),
                max_ns: nanos(measurement.max()),
                std_dev_ns: nanos(measurement.std_dev()),
                samples_ns: measurement.samples().iter().copied().map(nanos).collect(),
                cpu_share: measurement.thread_usage().map(|u| u.share),
                cpu_median_ns: measurement.thread_usage().map(|u| nanos(u.cpu_median())),
                runq_wait_median_ns: measurement.thread_usage().map(|u| nanos(u.wait_median())),
                without_runq_wait_trimmed_mean_ns: own.map(nanos),
                first_trimmed_mean_ns: None,
            }),
            counts: Vec::new(),
            instructions: None,
            skipped: None,
        };
        let message = if passed_on_wall {
            format!(
                "perf gate `{}` passed ({}): trimmed mean {} <= budget {} ({} headroom)",
                self.name,
                budget.class(),
                fmt_ms(mean),
                fmt_ms(budget.limit()),
                headroom(mean, budget.limit()),
            )
        } else if let (true, Some(own)) = (passed, own) {
            format!(
                "perf gate `{}` passed ({}): trimmed mean {} is over budget {}, but without the \
                 time the measuring thread waited for a CPU (the machine was busy) it is {} \
                 <= budget ({} headroom)",
                self.name,
                budget.class(),
                fmt_ms(mean),
                fmt_ms(budget.limit()),
                fmt_ms(own),
                headroom(own, budget.limit()),
            )
        } else {
            self.failure_message(measurement)
        };
        Verdict { record, message }
    }

    /// Evaluates, emits the record, and panics if the budget is exceeded.
    ///
    /// On success a one-line summary goes to stderr.
    #[track_caller]
    pub fn check(&self, measurement: &Measurement) {
        self.evaluate(measurement).enforce();
    }

    /// Measures `op` ([`trimmed_mean_with_setup`](crate::trimmed_mean_with_setup))
    /// and checks it; when the first measurement is over budget, measures
    /// once more and decides on that second one, reporting both.
    ///
    /// The budget is the same for both: a real regression past it fails
    /// twice and the gate fails; a burst of load during one measurement (a
    /// neighbour's build step, a journal flush) does not fail the gate
    /// alone. The record keeps the first trimmed mean
    /// (`first_trimmed_mean_ns`).
    #[track_caller]
    pub fn measure_and_check<S, R>(
        &self,
        mut setup: impl FnMut() -> S,
        mut op: impl FnMut(S) -> R,
    ) {
        let first = crate::trimmed_mean_with_setup(&mut setup, &mut op);
        let verdict = self.evaluate(&first);
        if verdict.passed() {
            verdict.enforce();
            return;
        }
        eprintln!(
            "perf gate `{}`: trimmed mean {} over budget {} on the first measurement; \
             measuring once more",
            self.name,
            fmt_ms(first.trimmed_mean()),
            fmt_ms(self.budget.limit())
        );
        let second = crate::trimmed_mean_with_setup(&mut setup, &mut op);
        self.evaluate_remeasured(&first, &second).enforce();
    }

    /// The verdict on `second`, a re-measurement after `first` was over
    /// budget: the record and message carry both.
    #[must_use]
    pub fn evaluate_remeasured(&self, first: &Measurement, second: &Measurement) -> Verdict {
        let mut verdict = self.evaluate(second);
        if let Some(wall) = verdict.record.walltime.as_mut() {
            wall.first_trimmed_mean_ns = Some(nanos(first.trimmed_mean()));
        }
        let note = format!(
            "re-measured: the first measurement's trimmed mean was {} (median {}), over budget",
            fmt_ms(first.trimmed_mean()),
            fmt_ms(first.median())
        );
        verdict.message = if verdict.passed() {
            format!("{} ({note})", verdict.message)
        } else {
            format!(
                "{}\n  {note}; this second one is over budget too",
                verdict.message
            )
        };
        verdict
    }

    fn failure_message(&self, m: &Measurement) -> String {
        let b = self.budget;
        let mut out = String::new();
        // `write!` to a String cannot fail.
        let _ = writeln!(
            out,
            "perf gate `{}` FAILED ({} class): trimmed mean {} exceeds budget {} by {}",
            self.name,
            b.class(),
            fmt_ms(m.trimmed_mean()),
            fmt_ms(b.limit()),
            fmt_ms(m.trimmed_mean().saturating_sub(b.limit())),
        );
        if let Some(own) = m.trimmed_mean_without_runq_wait() {
            let _ = writeln!(
                out,
                "  without the time the measuring thread waited for a CPU: trimmed mean {}, \
                 over budget too",
                fmt_ms(own),
            );
        }
        let _ = writeln!(
            out,
            "  budget = max(base {} x factor {}, floor {}) x multiplier {} = {}",
            fmt_ms(b.base()),
            b.factor(),
            fmt_ms(FLOOR),
            b.multiplier(),
            fmt_ms(b.limit()),
        );
        if let Some(warning) = &self.multiplier_warning {
            let _ = writeln!(out, "  note: {warning}");
        }
        let _ = writeln!(
            out,
            "  median {}, min {}, max {}, std dev {}",
            fmt_ms(m.median()),
            fmt_ms(m.min()),
            fmt_ms(m.max()),
            fmt_ms(m.std_dev()),
        );
        if let Some(usage) = m.thread_usage() {
            let (cpu, wait, wall) = (usage.cpu_median(), usage.wait_median(), m.median());
            let verdict = if wait.as_secs_f64() > 0.25 * wall.as_secs_f64() {
                "much of it went to waiting for a CPU: the machine was busy"
            } else if cpu.as_secs_f64() >= 0.75 * wall.as_secs_f64() {
                "it went to the code, on a CPU"
            } else {
                "the thread was mostly blocked (I/O, locks, page faults), neither running nor \
                 waiting for a CPU"
            };
            let _ = writeln!(
                out,
                "  measuring thread per sample (medians): wall {}, on CPU {}, waiting for a CPU \
                 {}: {verdict}",
                fmt_ms(wall),
                fmt_ms(cpu),
                fmt_ms(wait),
            );
        }
        let samples: Vec<String> = m
            .samples()
            .iter()
            .map(|s| format!("{:.3}", s.as_secs_f64() * 1e3))
            .collect();
        let _ = writeln!(out, "  samples in run order (ms): [{}]", samples.join(", "));
        let _ = write!(
            out,
            "  what to do: if min and median are also over budget the slowdown is real: \
             find the change that caused it (compare `cargo bench` numbers). If only a few \
             samples are slow the machine was busy: rerun, or set {MULTIPLIER_ENV}=2.0 on a \
             loaded machine. If the work legitimately grew, re-measure the median with \
             `cargo perfbudget calibrate {}` and update the base; raising it by more than 25% \
             needs a justification in {}.",
            self.name,
            policy()
        );
        out
    }
}

/// A Tier 2 count gate: exact expected counts (fsyncs, transactions, ...)
/// derived by reading the code, compared with what a run observed.
///
/// ```
/// use perfbudget::CountGate;
///
/// let verdict = CountGate::new("perf_save_fsyncs")
///     .expect("file fsyncs", 2, 2)
///     .expect("dir fsyncs", 2, 3)
///     .evaluate();
/// assert!(!verdict.passed());
/// assert!(verdict.message().contains("dir fsyncs: expected 2, observed 3"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountGate {
    name: String,
    counts: Vec<CountRecord>,
}

impl CountGate {
    /// A count gate named `name` (use the test function's name).
    #[must_use]
    pub fn new(name: impl Into<String>) -> CountGate {
        CountGate {
            name: name.into(),
            counts: Vec::new(),
        }
    }

    /// Adds one expectation: `observed` must equal `expected` exactly.
    #[must_use]
    pub fn expect(mut self, what: impl Into<String>, expected: u64, observed: u64) -> CountGate {
        self.counts.push(CountRecord {
            what: what.into(),
            expected,
            observed,
        });
        self
    }

    /// Compares every expectation without side effects. A gate with no
    /// expectation fails: it would assert nothing.
    #[must_use]
    pub fn evaluate(&self) -> Verdict {
        let mismatches = self
            .counts
            .iter()
            .filter(|c| c.expected != c.observed)
            .count();
        let passed = mismatches == 0 && !self.counts.is_empty();
        let listing: Vec<String> = self
            .counts
            .iter()
            .map(|c| {
                let mark = if c.expected == c.observed {
                    ""
                } else {
                    "   <-- differs"
                };
                format!(
                    "  {}: expected {}, observed {}{mark}",
                    c.what, c.expected, c.observed
                )
            })
            .collect();
        let message = if passed {
            let summary: Vec<String> = self
                .counts
                .iter()
                .map(|c| format!("{} {}", c.observed, c.what))
                .collect();
            format!("count gate `{}` passed: {}", self.name, summary.join(", "))
        } else if self.counts.is_empty() {
            format!(
                "count gate `{}` FAILED: it has no expectation; add at least one with \
                 CountGate::expect(what, expected, observed)",
                self.name
            )
        } else {
            format!(
                "count gate `{}` FAILED: {mismatches} of {} counts differ from what the code \
                 should issue\n{}\n  what to do: the expected numbers come from reading the \
                 code, not from a recorded run. If the code now does more (or less) I/O on \
                 purpose, update the expectation and say why in the commit; otherwise find the \
                 change that added or removed the calls.",
                self.name,
                self.counts.len(),
                listing.join("\n")
            )
        };
        Verdict {
            record: Record {
                schema: RECORD_SCHEMA,
                gate: self.name.clone(),
                class: "count".to_owned(),
                passed,
                declared: Declared {
                    class: "count".to_owned(),
                    base: None,
                    factor: None,
                    tolerance: None,
                    multiplier_in_code: None,
                    expected: self
                        .counts
                        .iter()
                        .map(|c| Expected {
                            what: c.what.clone(),
                            expected: c.expected,
                        })
                        .collect(),
                },
                walltime: None,
                counts: self.counts.clone(),
                instructions: None,
                skipped: None,
            },
            message,
        }
    }

    /// Evaluates, emits the record, and panics if any count differs.
    #[track_caller]
    pub fn check(&self) {
        self.evaluate().enforce();
    }
}

/// The outcome of evaluating a gate: its record and a human message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Verdict {
    record: Record,
    message: String,
}

impl Verdict {
    pub(crate) fn new(record: Record, message: String) -> Verdict {
        Verdict { record, message }
    }

    /// Whether the gate passed.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.record.passed
    }

    /// A one-line summary when passed; the full actionable report when not.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The machine-readable record.
    #[must_use]
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// Emits the record, then prints the summary to stderr if the gate
    /// passed or panics with the report if it failed.
    #[track_caller]
    pub fn enforce(&self) {
        self.record.emit();
        if self.passed() {
            eprintln!("{}", self.message);
        } else {
            panic!("{}", self.message);
        }
    }
}

/// `12.345 ms`.
fn fmt_ms(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1e3)
}

/// Unused fraction of the budget, e.g. `62.5%`; negative when over.
fn headroom(used: Duration, limit: Duration) -> String {
    if limit.is_zero() {
        return "n/a".to_owned();
    }
    let fraction = 1.0 - used.as_secs_f64() / limit.as_secs_f64();
    format!("{:.1}%", fraction * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::TIMED_RUNS;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    const MS: Duration = Duration::from_millis(1);

    fn slow_measurement() -> Measurement {
        // Trimmed mean 7 ms; median 7 ms; min 2 ms; max 40 ms.
        let mut samples = [7 * MS; TIMED_RUNS];
        samples[0] = 2 * MS;
        samples[10] = 40 * MS;
        Measurement::from_samples(samples)
    }

    fn panic_text(f: impl FnOnce()) -> String {
        let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("the gate should panic");
        if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else {
            panic!("non-string panic payload")
        }
    }

    #[test]
    fn failing_walltime_gate_panics_with_everything_needed_to_act() {
        let gate = Gate::new("perf_widget_render", Class::Warm, 2 * MS).with_multiplier(1.0);
        let text = panic_text(|| gate.check(&slow_measurement()));
        for needle in [
            "perf_widget_render",
            "FAILED",
            "warm",
            "trimmed mean 7.000 ms",
            "budget 6.000 ms",
            "base 2.000 ms",
            "factor 3",
            "multiplier 1",
            "floor 1.000 ms",
            "median 7.000 ms",
            "min 2.000 ms",
            "max 40.000 ms",
            "std dev",
            "[2.000, 7.000, 7.000, 7.000, 7.000, 7.000, 7.000, 7.000, 7.000, 7.000, 40.000]",
            "PERF_BUDGET_MULTIPLIER",
            "cargo perfbudget calibrate perf_widget_render",
            "[workspace.metadata.perfbudget]",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn cold_failure_names_its_class_and_factor() {
        let gate = Gate::new("perf_spawn", Class::Cold, MS).with_multiplier(1.25);
        let verdict = gate.evaluate(&slow_measurement());
        assert!(!verdict.passed());
        let text = verdict.message();
        assert!(text.contains("cold"), "{text}");
        assert!(text.contains("factor 5"), "{text}");
        assert!(text.contains("multiplier 1.25"), "{text}");
        assert!(text.contains("budget 6.250 ms"), "{text}");
    }

    #[test]
    fn passing_gate_does_not_panic_and_records_the_numbers() {
        let gate = Gate::new("perf_ok", Class::Warm, 3 * MS).with_multiplier(2.0);
        let verdict = gate.evaluate(&slow_measurement());
        assert!(verdict.passed(), "{}", verdict.message());
        let record = verdict.record();
        assert_eq!(record.class, "warm");
        let wall = record.walltime.as_ref().expect("walltime record");
        assert_eq!(wall.trimmed_mean_ns, 7_000_000);
        assert_eq!(wall.budget_ns, 18_000_000);
        assert_eq!(wall.base_ns, 3_000_000);
        assert_eq!(wall.factor, 3);
        assert_eq!(wall.multiplier, 2.0);
        assert_eq!(wall.samples_ns.len(), TIMED_RUNS);
        assert!(verdict.message().contains("passed"));
        gate.check(&slow_measurement());
    }

    #[test]
    fn walltime_record_is_one_line_of_json_with_the_documented_fields() {
        let gate = Gate::new("perf_json", Class::Cold, MS).with_multiplier(1.0);
        let line = gate.evaluate(&slow_measurement()).record().to_json_line();
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(value["schema"], 2);
        assert_eq!(value["gate"], "perf_json");
        assert_eq!(value["declared"]["base"], 1_000_000);
        assert_eq!(value["declared"]["multiplier_in_code"], 1.0);
        let back = Record::from_json_line(&line).expect("reads back");
        assert_eq!(&back, gate.evaluate(&slow_measurement()).record());
        assert_eq!(value["class"], "cold");
        assert_eq!(value["passed"], false);
        assert_eq!(value["walltime"]["budget_ns"], 5_000_000);
        assert_eq!(value["walltime"]["median_ns"], 7_000_000);
        assert!(value.get("counts").is_none());
    }

    /// Over budget on wall time only because the thread waited for a CPU:
    /// the gate passes and says so; the same wait on a slower code path
    /// does not rescue it.
    #[test]
    fn run_queue_wait_is_not_charged_to_the_code() {
        use crate::measure::ThreadUsage;
        let gate = Gate::new("perf_busy", Class::Warm, MS).with_multiplier(1.0);
        // 7 ms of wall time, 5 ms of it waiting for a CPU: 2 ms of its own.
        let waited = slow_measurement().with_thread_usage(ThreadUsage {
            cpu: [2 * MS; TIMED_RUNS],
            wait: [5 * MS; TIMED_RUNS],
            // A spinning probe got 2/7 of the wall time: 2 ms of CPU
            // waits 5 ms at that share.
            share: 2.0 / 7.0,
        });
        let verdict = gate.evaluate(&waited);
        assert!(verdict.passed(), "{}", verdict.message());
        assert!(
            verdict.message().contains(
                "trimmed mean 7.000 ms is over budget 3.000 ms, but without the time the \
                 measuring thread waited for a CPU (the machine was busy) it is 2.000 ms"
            ),
            "{}",
            verdict.message()
        );
        let wall = verdict.record().walltime.as_ref().expect("walltime");
        assert_eq!(wall.without_runq_wait_trimmed_mean_ns, Some(2_000_000));
        assert!(verdict.record().passed);
        // Waits spread unevenly: the statistic is the trimmed mean of the
        // per-sample differences, so one sample's wait does not excuse the
        // others' time.
        let mut wait = [Duration::ZERO; TIMED_RUNS];
        wait[0] = 7 * MS;
        let one_wait = slow_measurement().with_thread_usage(ThreadUsage {
            cpu: [7 * MS; TIMED_RUNS],
            wait,
            share: 0.5,
        });
        assert!(!gate.evaluate(&one_wait).passed());
        // Without thread usage (another platform) wall time decides alone.
        assert!(!gate.evaluate(&slow_measurement()).passed());
        assert_eq!(
            gate.evaluate(&slow_measurement())
                .record()
                .walltime
                .as_ref()
                .unwrap()
                .without_runq_wait_trimmed_mean_ns,
            None
        );
    }

    /// Defect 1 of issue 23: a `yield_now` loop of 10 ms on a busy
    /// machine ran 0.3 ms and waited 9.5 ms in the run queue per sample;
    /// the whole wait was excused and the gate passed against 3 ms. The
    /// wait it caused itself is not the machine's: at a share of one half,
    /// 0.3 ms of CPU waits 0.3 ms, no more.
    #[test]
    fn a_wait_the_code_caused_itself_is_not_excused() {
        use crate::measure::ThreadUsage;
        let gate = Gate::new("perf_yield", Class::Warm, MS).with_multiplier(1.0);
        let yielding =
            Measurement::from_samples([10 * MS; TIMED_RUNS]).with_thread_usage(ThreadUsage {
                cpu: [Duration::from_micros(300); TIMED_RUNS],
                wait: [Duration::from_micros(9_500); TIMED_RUNS],
                share: 0.5,
            });
        let verdict = gate.evaluate(&yielding);
        assert!(!verdict.passed(), "{}", verdict.message());
        let wall = verdict.record().walltime.as_ref().expect("walltime");
        assert_eq!(wall.without_runq_wait_trimmed_mean_ns, Some(9_700_000));
        // On a quiet machine (share 1) no wait is excused at all.
        let quiet =
            Measurement::from_samples([7 * MS; TIMED_RUNS]).with_thread_usage(ThreadUsage {
                cpu: [2 * MS; TIMED_RUNS],
                wait: [5 * MS; TIMED_RUNS],
                share: 1.0,
            });
        assert!(!gate.evaluate(&quiet).passed());
    }

    #[test]
    fn failure_message_says_where_the_time_went() {
        use crate::measure::ThreadUsage;
        let gate = Gate::new("perf_busy", Class::Warm, MS).with_multiplier(1.0);
        // 7 ms of wall time, 2 ms of it waiting for a CPU: 5 ms of its own
        // is over the 3 ms budget too, and the message says both.
        let waited = slow_measurement().with_thread_usage(ThreadUsage {
            cpu: [4 * MS; TIMED_RUNS],
            wait: [2 * MS; TIMED_RUNS],
            share: 0.5,
        });
        let verdict = gate.evaluate(&waited);
        let text = verdict.message().to_owned();
        assert!(!verdict.passed(), "{text}");
        assert!(
            text.contains("on CPU 4.000 ms, waiting for a CPU 2.000 ms"),
            "{text}"
        );
        assert!(text.contains("the machine was busy"), "{text}");
        assert!(
            text.contains("waited for a CPU: trimmed mean 5.000 ms, over budget too"),
            "{text}"
        );
        let ran = slow_measurement().with_thread_usage(ThreadUsage {
            cpu: [7 * MS; TIMED_RUNS],
            wait: [Duration::ZERO; TIMED_RUNS],
            share: 1.0,
        });
        let verdict = gate.evaluate(&ran);
        assert!(
            verdict.message().contains("it went to the code"),
            "{}",
            verdict.message()
        );
        let wall = verdict.record().walltime.as_ref().expect("walltime");
        assert_eq!(
            (wall.cpu_median_ns, wall.runq_wait_median_ns),
            (Some(7_000_000), Some(0))
        );
        let blocked = slow_measurement().with_thread_usage(ThreadUsage {
            cpu: [MS; TIMED_RUNS],
            wait: [Duration::ZERO; TIMED_RUNS],
            share: 1.0,
        });
        assert!(gate.evaluate(&blocked).message().contains("mostly blocked"));
    }

    #[test]
    fn a_remeasured_gate_reports_both_and_decides_on_the_second() {
        let gate = Gate::new("perf_re", Class::Warm, 2 * MS).with_multiplier(1.0);
        let fast = Measurement::from_samples([3 * MS; TIMED_RUNS]);
        let passed = gate.evaluate_remeasured(&slow_measurement(), &fast);
        assert!(passed.passed());
        assert!(
            passed
                .message()
                .contains("first measurement's trimmed mean was 7.000 ms")
        );
        let wall = passed.record().walltime.as_ref().expect("walltime");
        assert_eq!(wall.first_trimmed_mean_ns, Some(7_000_000));
        assert_eq!(wall.trimmed_mean_ns, 3_000_000);
        let failed = gate.evaluate_remeasured(&slow_measurement(), &slow_measurement());
        assert!(!failed.passed());
        assert!(
            failed
                .message()
                .contains("this second one is over budget too")
        );
    }

    #[test]
    fn measure_and_check_measures_again_only_when_over_budget() {
        use std::cell::Cell;
        // A generous budget: one measurement, 12 calls.
        let calls = Cell::new(0);
        Gate::new("perf_fast", Class::Warm, Duration::from_secs(10))
            .with_multiplier(1.0)
            .measure_and_check(|| (), |()| calls.set(calls.get() + 1));
        assert_eq!(calls.get(), 12);
        // An impossible budget: two measurements, then the panic.
        let calls = Cell::new(0);
        let text = panic_text(|| {
            Gate::new("perf_never", Class::Warm, Duration::ZERO)
                .with_multiplier(1e-9)
                .measure_and_check(
                    || (),
                    |()| {
                        calls.set(calls.get() + 1);
                        std::thread::sleep(Duration::from_micros(50));
                    },
                );
        });
        assert_eq!(calls.get(), 24);
        assert!(text.contains("second one is over budget too"), "{text}");
    }

    /// Defect 3 of issue 23: `.with_multiplier(50.0)` in a gate's code
    /// loosened it unseen. The record declares it (capped at 10), and a
    /// gate on the environment's multiplier declares none.
    #[test]
    fn a_multiplier_set_in_code_is_declared() {
        let loose = Gate::new("perf_loose", Class::Warm, MS).with_multiplier(50.0);
        let verdict = loose.evaluate(&slow_measurement());
        assert_eq!(
            verdict.record().declared.multiplier_in_code,
            Some(crate::MAX_MULTIPLIER)
        );
        let plain = Gate::new("perf_plain", Class::Warm, MS);
        let verdict = plain.evaluate(&slow_measurement());
        let declared = &verdict.record().declared;
        assert_eq!(declared.multiplier_in_code, None);
        assert_eq!((declared.base, declared.factor), (Some(1_000_000), Some(3)));
    }

    #[test]
    fn count_gate_passes_on_exact_equality() {
        let verdict = CountGate::new("perf_fsyncs")
            .expect("file fsyncs", 2, 2)
            .expect("dir fsyncs", 2, 2)
            .evaluate();
        assert!(verdict.passed());
        assert_eq!(
            verdict.message(),
            "count gate `perf_fsyncs` passed: 2 file fsyncs, 2 dir fsyncs"
        );
        let value: serde_json::Value =
            serde_json::from_str(&verdict.record().to_json_line()).expect("valid JSON");
        assert_eq!(value["class"], "count");
        assert_eq!(value["counts"][1]["what"], "dir fsyncs");
        assert!(value.get("walltime").is_none());
    }

    #[test]
    fn count_gate_failure_lists_every_count_and_marks_the_mismatch() {
        let gate = CountGate::new("perf_fsyncs")
            .expect("file fsyncs", 2, 5)
            .expect("dir fsyncs", 2, 2);
        let text = panic_text(|| gate.check());
        assert!(text.contains("perf_fsyncs"), "{text}");
        assert!(text.contains("1 of 2 counts differ"), "{text}");
        assert!(
            text.contains("file fsyncs: expected 2, observed 5   <-- differs"),
            "{text}"
        );
        assert!(
            text.contains("dir fsyncs: expected 2, observed 2\n"),
            "{text}"
        );
    }

    #[test]
    fn count_gate_fails_when_not_exactly_equal_in_either_direction() {
        assert!(!CountGate::new("g").expect("x", 2, 1).evaluate().passed());
        assert!(!CountGate::new("g").expect("x", 2, 3).evaluate().passed());
    }

    #[test]
    fn count_gate_without_expectations_fails() {
        let verdict = CountGate::new("perf_empty").evaluate();
        assert!(!verdict.passed());
        assert!(verdict.message().contains("no expectation"));
    }

    #[test]
    fn headroom_is_signed() {
        assert_eq!(headroom(2 * MS, 8 * MS), "75.0%");
        assert_eq!(headroom(10 * MS, 8 * MS), "-25.0%");
    }
}
