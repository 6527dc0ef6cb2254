//! Instruction-count gates: the deterministic tier for CPU work.
//!
//! A walltime budget is 3× or 5× a median, so it cannot see a 2× slowdown;
//! and on a loaded machine the clock measures the neighbours too. The number
//! of instructions an operation executes does not depend on the load, so it
//! can be pinned tightly: an [`InstructionGate`] fails when the count moves
//! more than its tolerance (default [`DEFAULT_TOLERANCE`], 2%) away from its
//! `base`, in either direction.
//!
//! # How it counts
//!
//! Hardware counters (`perf_event_open`) are missing on many virtual
//! machines, including this project's, so the gate uses valgrind's
//! callgrind, which every machine of the project has and which counts the
//! same on any CPU. The test re-runs *itself* under
//! `valgrind --tool=callgrind --collect-atstart=no
//! --toggle-collect=*perfbudget_measured_region*`, with
//! [`CALLGRIND_CHILD_ENV`] set: in that child the gate runs `setup` and `op`
//! once untimed (the warm-up), then `setup` again and `op` once inside a
//! function named `perfbudget_measured_region`, the only code callgrind
//! counts; the parent reads the total from callgrind's output file. Only
//! user-space instructions are counted: a system call costs what its
//! user-space wrapper costs, so file-system work is the business of the
//! operation-count gates (`testutil::OpCounter`).
//!
//! Where valgrind is missing (not on `PATH`, or [`VALGRIND_ENV`] names a
//! program that does not run), the gate does not pass silently: it prints
//! why, and emits a record marked `skipped`, which `cargo perfbudget test`
//! lists (and fails with `--no-skip`).
//!
//! The gate must run on a test thread named after the test (libtest does
//! this), so it can re-run exactly that test.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::record::{Declared, InstructionRecord, RECORD_SCHEMA, Record};

/// Environment variable set in the child process that runs under valgrind,
/// to the name of the gate it measures (the other gates of the same test
/// do nothing in it, so each gate counts only its own call; gate names in
/// one test must differ).
pub const CALLGRIND_CHILD_ENV: &str = "PERFBUDGET_CALLGRIND_CHILD";

/// Environment variable naming the valgrind program to use (default
/// `valgrind` on `PATH`).
pub const VALGRIND_ENV: &str = "PERFBUDGET_VALGRIND";

/// The default tolerance: 2% either way.
///
/// A fixed sort counts the same every run. The outbox's drain of 25 does
/// not: 40 runs read 765 997 to 780 961 instructions, a 1.95% range
/// (glibc's allocator takes different paths as per-process hash seeds and
/// temp-file nonces change; see `docs/perf-trust.md`). With the base cited
/// at the middle of the observed range, as `cargo perfbudget calibrate`
/// gives it, that noise stays within about ±1%: 2% leaves a margin to it
/// and still catches a regression of 1.05× in CPU work.
pub const DEFAULT_TOLERANCE: f64 = 0.02;

/// The name callgrind toggles collection on; a function with this name
/// wraps the measured call.
const REGION: &str = "perfbudget_measured_region";

/// A gate on the instructions one call of an operation executes.
///
/// ```no_run
/// use perfbudget::InstructionGate;
///
/// #[test]
/// #[ignore = "instruction-count gate: run by cargo perfbudget test"]
/// fn perf_sum_instructions() {
///     // Observed: 1 203 455 instructions (callgrind, release, 2026-11-29).
///     InstructionGate::new("perf_sum_instructions", 1_203_455)
///         .check_with_setup(|| (0..100_000u64).collect::<Vec<_>>(), |v| v.iter().sum::<u64>());
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct InstructionGate {
    name: String,
    base: u64,
    tolerance: f64,
}

/// Outcome of looking for valgrind.
enum Tool {
    Found(PathBuf),
    Missing(String),
}

fn find_valgrind() -> Tool {
    let program = std::env::var_os(VALGRIND_ENV)
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("valgrind"), PathBuf::from);
    probe(program)
}

/// Whether `program --version` runs and succeeds.
fn probe(program: PathBuf) -> Tool {
    match Command::new(&program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Tool::Found(program),
        Ok(status) => Tool::Missing(format!(
            "`{} --version` failed ({status})",
            program.display()
        )),
        Err(error) => Tool::Missing(format!(
            "valgrind not found (`{}`: {error}); install valgrind, or name it with {VALGRIND_ENV}",
            program.display()
        )),
    }
}

/// Runs `f` inside the only function callgrind counts.
#[inline(never)]
fn perfbudget_measured_region<R>(f: impl FnOnce() -> R) -> R {
    std::hint::black_box(f())
}

/// The total of the first event (`Ir`, instructions) in a callgrind output
/// file: its `summary:` or `totals:` line.
pub(crate) fn parse_callgrind_total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

impl InstructionGate {
    /// A gate named `name` (use the test function's name) pinning `base`
    /// instructions, with the [`DEFAULT_TOLERANCE`].
    #[must_use]
    pub fn new(name: impl Into<String>, base: u64) -> InstructionGate {
        InstructionGate {
            name: name.into(),
            base,
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Replaces the tolerance (a fraction: 0.05 is 5%). A value that is not
    /// finite, or negative, means the default.
    #[must_use]
    pub fn with_tolerance(self, tolerance: f64) -> InstructionGate {
        let tolerance = if tolerance.is_finite() && tolerance >= 0.0 {
            tolerance
        } else {
            DEFAULT_TOLERANCE
        };
        InstructionGate { tolerance, ..self }
    }

    /// The gate's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The smallest and largest counts that pass (rounded outwards).
    #[must_use]
    pub fn allowed(&self) -> (u64, u64) {
        let spread = self.base as f64 * self.tolerance;
        let low = (self.base as f64 - spread).floor().max(0.0) as u64;
        let high = (self.base as f64 + spread).ceil().min(u64::MAX as f64) as u64;
        (low, high)
    }

    /// Compares an observed count with the gate, without side effects.
    #[must_use]
    pub fn evaluate(&self, observed: u64) -> crate::Verdict {
        let (low, high) = self.allowed();
        let passed = (low..=high).contains(&observed);
        let change = if self.base == 0 {
            f64::INFINITY
        } else {
            (observed as f64 / self.base as f64 - 1.0) * 100.0
        };
        let message = if passed {
            format!(
                "instruction gate `{}` passed: {observed} instructions, base {} ({change:+.2}%, \
                 allowed {low}..={high})",
                self.name, self.base
            )
        } else {
            let mut out = String::new();
            let _ = write!(
                out,
                "instruction gate `{}` FAILED: {observed} instructions, base {} ({change:+.2}%), \
                 allowed {low}..={high} (±{:.1}%)\n  what to do: the count does not depend on \
                 the machine's load, so the change is in the code (or the toolchain). If it got \
                 slower, find the change; if it got faster or the work grew on purpose, \
                 re-measure with `cargo perfbudget calibrate {}` and update the base with its \
                 citation (a raise over 25% needs an entry in {}).",
                self.name,
                self.base,
                self.tolerance * 100.0,
                self.name,
                crate::gate::policy()
            );
            out
        };
        crate::Verdict::new(
            Record {
                schema: RECORD_SCHEMA,
                gate: self.name.clone(),
                class: "instructions".into(),
                passed,
                declared: self.declared(),
                walltime: None,
                counts: Vec::new(),
                instructions: Some(InstructionRecord {
                    observed,
                    base: self.base,
                    tolerance: self.tolerance,
                    low,
                    high,
                }),
                skipped: None,
            },
            message,
        )
    }

    /// The budget as declared: class, base and tolerance.
    fn declared(&self) -> Declared {
        Declared {
            class: "instructions".into(),
            base: Some(self.base),
            factor: None,
            tolerance: Some(self.tolerance),
            multiplier_in_code: None,
            expected: Vec::new(),
        }
    }

    /// The verdict of a gate that could not measure, with the reason.
    #[must_use]
    pub fn skipped(&self, why: &str) -> crate::Verdict {
        crate::Verdict::new(
            Record {
                schema: RECORD_SCHEMA,
                gate: self.name.clone(),
                class: "instructions".into(),
                passed: true,
                declared: self.declared(),
                walltime: None,
                counts: Vec::new(),
                instructions: None,
                skipped: Some(why.to_owned()),
            },
            format!(
                "instruction gate `{}` SKIPPED (it checked nothing): {why}",
                self.name
            ),
        )
    }

    /// Counts the instructions of one call of `op` on a fresh fixture from
    /// `setup` (after one untimed warm-up call), emits the record, and
    /// panics if the count is outside the tolerance.
    ///
    /// In the child process under valgrind this only runs the operation;
    /// where valgrind is missing it emits a skipped record and returns.
    #[track_caller]
    pub fn check_with_setup<S, R>(&self, mut setup: impl FnMut() -> S, mut op: impl FnMut(S) -> R) {
        if let Some(target) = std::env::var_os(CALLGRIND_CHILD_ENV) {
            // The child re-runs the whole test: only the gate it was
            // started for enters the counted region; any other gate of the
            // same test does nothing here.
            if target == *self.name {
                drop(std::hint::black_box(op(setup())));
                let fixture = setup();
                drop(perfbudget_measured_region(|| op(fixture)));
            }
            return;
        }
        let valgrind = match find_valgrind() {
            Tool::Found(path) => path,
            Tool::Missing(why) => {
                let verdict = self.skipped(&why);
                verdict.record().emit();
                eprintln!("{}", verdict.message());
                return;
            }
        };
        let observed = match self.count_under(&valgrind) {
            Ok(n) => n,
            Err(why) => panic!("instruction gate `{}` could not count: {why}", self.name),
        };
        self.evaluate(observed).enforce();
    }

    /// Re-runs the current test under callgrind and returns the count.
    fn count_under(&self, valgrind: &Path) -> Result<u64, String> {
        let thread = std::thread::current();
        let test = thread
            .name()
            .filter(|n| *n != "main")
            .ok_or("it must run on a libtest test thread (named after the test), to re-run it")?
            .to_owned();
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find the test binary: {e}"))?;
        let dir = scratch_dir()?;
        let out = dir.join("callgrind.out");
        let result = (|| {
            let output = Command::new(valgrind)
                .arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg("--collect-atstart=no")
                .arg(format!("--toggle-collect=*{REGION}*"))
                .arg(&exe)
                .args(["--exact", &test, "--include-ignored", "--nocapture"])
                .args(["--test-threads=1"])
                .env(CALLGRIND_CHILD_ENV, &self.name)
                .env_remove(crate::RECORDS_ENV)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run {}: {e}", valgrind.display()))?;
            if !output.status.success() {
                return Err(format!(
                    "the run under callgrind failed ({}):\n{}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim_end()
                ));
            }
            let text = std::fs::read_to_string(&out)
                .map_err(|e| format!("cannot read {}: {e}", out.display()))?;
            match parse_callgrind_total(&text) {
                Some(0) | None => Err(format!(
                    "callgrind counted nothing in `{REGION}` (was the test `{test}` run, and did \
                     it reach the gate?)"
                )),
                Some(n) => Ok(n),
            }
        })();
        let _ = std::fs::remove_dir_all(&dir);
        result
    }
}

/// A fresh private directory for callgrind's output.
fn scratch_dir() -> Result<PathBuf, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "perfbudget-callgrind-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_range_is_the_tolerance_either_way() {
        let gate = InstructionGate::new("g", 1_000_000);
        assert_eq!(gate.allowed(), (980_000, 1_020_000));
        assert!(gate.evaluate(1_020_000).passed());
        assert!(gate.evaluate(980_000).passed());
        assert!(!gate.evaluate(1_020_001).passed());
        assert!(!gate.evaluate(979_999).passed());
        assert_eq!(
            gate.clone().with_tolerance(0.0).allowed(),
            (1_000_000, 1_000_000)
        );
        assert_eq!(
            gate.clone().with_tolerance(f64::NAN).allowed(),
            gate.allowed()
        );
        assert_eq!(gate.with_tolerance(-1.0).allowed(), (980_000, 1_020_000));
    }

    #[test]
    fn a_2x_regression_fails_with_the_numbers() {
        let verdict = InstructionGate::new("perf_x", 1_000).evaluate(2_000);
        assert!(!verdict.passed());
        let text = verdict.message();
        for needle in [
            "perf_x",
            "FAILED",
            "2000 instructions",
            "base 1000",
            "+100.00%",
            "980..=1020",
            "cargo perfbudget calibrate perf_x",
        ] {
            assert!(text.contains(needle), "{needle:?} in {text}");
        }
        let record = verdict.record();
        assert_eq!(record.class, "instructions");
        let i = record.instructions.as_ref().expect("instruction record");
        assert_eq!(
            (i.observed, i.base, i.low, i.high),
            (2_000, 1_000, 980, 1_020)
        );
    }

    #[test]
    fn a_skip_says_so_and_checks_nothing() {
        let verdict = InstructionGate::new("perf_x", 1).skipped("valgrind not found");
        assert!(verdict.message().contains("SKIPPED"));
        let value: serde_json::Value =
            serde_json::from_str(&verdict.record().to_json_line()).expect("json");
        assert_eq!(value["skipped"], "valgrind not found");
        assert!(value.get("instructions").is_none());
    }

    #[test]
    fn callgrind_totals_are_read_from_summary_or_totals() {
        let text = "version: 1\ncmd: x\nevents: Ir\nfl=a\n0 5\nsummary: 123456\ntotals: 1\n";
        assert_eq!(parse_callgrind_total(text), Some(123_456));
        assert_eq!(
            parse_callgrind_total("events: Ir\ntotals: 77 1 2\n"),
            Some(77)
        );
        assert_eq!(parse_callgrind_total("events: Ir\n"), None);
    }

    #[test]
    fn a_missing_valgrind_is_reported_by_name() {
        let Tool::Missing(why) = probe(PathBuf::from("/nonexistent/valgrind")) else {
            panic!("a program that does not exist was found");
        };
        assert!(why.contains("/nonexistent/valgrind"), "{why}");
        assert!(why.contains(VALGRIND_ENV), "{why}");
        // A program that exists but fails `--version`.
        #[cfg(unix)]
        {
            let Tool::Missing(why) = probe(PathBuf::from("false")) else {
                panic!("`false --version` counted as valgrind");
            };
            assert!(why.contains("`false --version` failed"), "{why}");
        }
    }
}
