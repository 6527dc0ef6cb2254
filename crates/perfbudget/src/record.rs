//! Machine-readable gate records and how they leave the test process.
//!
//! Every gate that runs writes one [`Record`] as a single line of JSON:
//!
//! * if `PERF_BUDGET_RECORDS` names a file, the line is appended to it
//!   (the runner, `cargo perfbudget test`, sets it to a fresh file per test);
//! * otherwise the line goes to stdout, prefixed with [`RECORD_PREFIX`], so
//!   it is visible with `--nocapture` and harmless in captured output.
//!
//! This module is the one definition of the record schema: the runner
//! (`cargo-perfbudget`) deserialises these same types ([`Record::from_json_line`]).
//! Every record carries the gate's [`Declared`] budget, the part its code
//! fixes (class, base, tolerance, a multiplier set in code, expected
//! counts), so tools compare budgets by comparing records, never by
//! reading Rust source.

use std::io::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Environment variable naming the JSON Lines file records are appended to.
pub const RECORDS_ENV: &str = "PERF_BUDGET_RECORDS";

/// Prefix of a record printed to stdout when [`RECORDS_ENV`] is unset.
pub const RECORD_PREFIX: &str = "perfbudget-record: ";

/// Version of the record layout; bumped on incompatible changes.
///
/// 2: every record carries its [`Declared`] budget.
pub const RECORD_SCHEMA: u32 = 2;

/// One gate's outcome, as written to the runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Record {
    /// Layout version, [`RECORD_SCHEMA`].
    pub schema: u32,
    /// The gate's name (by convention the test function's name).
    pub gate: String,
    /// `"cold"`, `"warm"`, `"count"` or `"instructions"`.
    pub class: String,
    /// Whether the gate passed.
    pub passed: bool,
    /// The budget as the gate's code declares it.
    pub declared: Declared,
    /// Timing details; present for walltime gates only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub walltime: Option<WalltimeRecord>,
    /// Expected and observed counts; non-empty for count gates only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<CountRecord>,
    /// The count and its allowed range; present for instruction-count
    /// gates that measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<InstructionRecord>,
    /// Why the gate could not measure here (its tool is missing); such a
    /// gate checked nothing, and says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// A gate's budget as its code declares it: what `cargo perfbudget audit`
/// compares between two revisions. Nothing here depends on the machine or
/// on `PERF_BUDGET_MULTIPLIER`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declared {
    /// `"cold"`, `"warm"`, `"count"` or `"instructions"`.
    pub class: String,
    /// The cited base: nanoseconds for a walltime gate, instructions for an
    /// instruction gate; absent for a count gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<u64>,
    /// The class factor of a walltime gate (5 or 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<u32>,
    /// An instruction gate's tolerance, a fraction of its base either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// A multiplier set in the gate's code (`Gate::with_multiplier`), which
    /// replaces the environment's: it loosens (or tightens) the gate as
    /// surely as a larger base does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier_in_code: Option<f64>,
    /// A count gate's expectations, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected: Vec<Expected>,
}

/// One expectation of a count gate, as declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// What is counted, e.g. `"file fsyncs"`.
    pub what: String,
    /// The expected count.
    pub expected: u64,
}

/// The numbers behind an instruction-count verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct InstructionRecord {
    /// Instructions the measured call executed (callgrind's `Ir`).
    pub observed: u64,
    /// The cited base.
    pub base: u64,
    /// The tolerance, a fraction of `base` either way.
    pub tolerance: f64,
    /// The smallest count that passes.
    pub low: u64,
    /// The largest count that passes.
    pub high: u64,
}

/// The numbers behind a walltime verdict. Durations are whole nanoseconds,
/// saturating at `u64::MAX`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WalltimeRecord {
    /// Mean of the middle 7 samples: the compared value.
    pub trimmed_mean_ns: u64,
    /// The budget the trimmed mean was compared with.
    pub budget_ns: u64,
    /// The cited base.
    pub base_ns: u64,
    /// The class factor (5 or 3).
    pub factor: u32,
    /// The floor applied before the multiplier.
    pub floor_ns: u64,
    /// The multiplier applied.
    pub multiplier: f64,
    /// Set when `PERF_BUDGET_MULTIPLIER` was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiplier_warning: Option<String>,
    /// The middle sample.
    pub median_ns: u64,
    /// The fastest sample.
    pub min_ns: u64,
    /// The slowest sample.
    pub max_ns: u64,
    /// Sample standard deviation of the 11 samples.
    pub std_dev_ns: u64,
    /// All 11 samples in run order.
    pub samples_ns: Vec<u64>,
    /// Median on-CPU time of the measuring thread per sample, where the
    /// platform tells (`/proc/thread-self/schedstat`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_median_ns: Option<u64>,
    /// The fraction of wall time a busy-spinning probe got on a CPU around
    /// the timed runs (1.0 on an idle machine), where the platform tells.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_share: Option<f64>,
    /// Median time per sample the measuring thread waited in the run queue
    /// for a CPU, where the platform tells.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runq_wait_median_ns: Option<u64>,
    /// The trimmed mean of each sample's wall time minus its run-queue
    /// wait, where the platform tells. A gate over budget on wall time
    /// passes when this is within budget (the machine was busy, the code
    /// was not slower).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub without_runq_wait_trimmed_mean_ns: Option<u64>,
    /// Set when the gate was over budget on a first measurement and
    /// measured again: that first trimmed mean. The verdict is the second
    /// measurement's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_trimmed_mean_ns: Option<u64>,
}

/// One expected-versus-observed count of a count gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CountRecord {
    /// What was counted, e.g. `"file fsyncs"`.
    pub what: String,
    /// The count derived by reading the code.
    pub expected: u64,
    /// The count the test observed.
    pub observed: u64,
}

impl Record {
    /// The record as one line of JSON (no trailing newline).
    #[must_use]
    pub fn to_json_line(&self) -> String {
        // Serialising plain structs of numbers and strings cannot fail.
        serde_json::to_string(self).unwrap_or_else(|error| {
            format!(
                r#"{{"schema":{RECORD_SCHEMA},"gate":{:?},"error":"{error}"}}"#,
                self.gate
            )
        })
    }

    /// Parses one line of JSON written by [`Record::to_json_line`]; the
    /// error names what is wrong (a missing or unknown field, a record of
    /// another schema version).
    pub fn from_json_line(line: &str) -> Result<Record, String> {
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        match value.get("schema").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(RECORD_SCHEMA) => {}
            Some(v) => {
                return Err(format!(
                    "record schema {v}, this runner reads schema {RECORD_SCHEMA} (build the \
                     runner and the gates from the same perfbudget version)"
                ));
            }
            None => return Err("`schema` is missing or not a number".into()),
        }
        serde_json::from_value(value).map_err(|e| format!("not a gate record: {e}"))
    }

    /// Writes the record where the runner looks for it (see the module docs).
    ///
    /// Never panics: if the records file cannot be written, a warning goes to
    /// stderr, and the runner, missing the record, fails the test.
    pub fn emit(&self) {
        let line = self.to_json_line();
        match std::env::var_os(RECORDS_ENV).filter(|path| !path.is_empty()) {
            Some(path) => {
                let written = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    // One write of the whole line, so lines from parallel
                    // tests in one process do not interleave.
                    .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()));
                if let Err(error) = written {
                    eprintln!(
                        "perfbudget: warning: cannot append the record of gate `{}` to {}: {error}",
                        self.gate,
                        std::path::Path::new(&path).display()
                    );
                }
            }
            None => println!("{RECORD_PREFIX}{line}"),
        }
    }
}

/// Whole nanoseconds of `duration`, saturating at `u64::MAX`.
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
