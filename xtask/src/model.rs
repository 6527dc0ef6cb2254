//! The types every xtask command shares: a perf test's [`Outcome`], its
//! [`Status`], and the typed [`GateRecord`] parsed from the JSON line a
//! `perfbudget` gate emits.
//!
//! This is a leaf module: it imports nothing from the rest of xtask, and
//! both the runner (`test_perf`) and the report (`report`) import it, so
//! neither imports the other.
//!
//! xtask does not depend on `perfbudget` (it stays lean, `serde_json`
//! only), so the record's JSON keys are written here once, in
//! [`GateRecord::from_json`]. A record missing a key, or with a key of the
//! wrong type, is not a gate record: the test that wrote it is reported
//! `BAD RECORD` and fails the run, instead of a report quietly printing `?`.
//! The unit tests push real `perfbudget` records through this parser and
//! the report, so renaming a field in `perfbudget/src/record.rs` fails
//! `cargo test -p xtask`.

use std::time::Duration;

use serde_json::Value;

use crate::discover::PerfTest;

/// Mirrors `perfbudget::RECORDS_ENV` (a unit test keeps the two equal).
pub const RECORDS_ENV: &str = "PERF_BUDGET_RECORDS";

/// Mirrors `perfbudget::MULTIPLIER_ENV`.
pub const MULTIPLIER_ENV: &str = "PERF_BUDGET_MULTIPLIER";

/// The numbers of a walltime gate's record (`perfbudget::WalltimeRecord`).
#[derive(Debug, Clone, PartialEq)]
pub struct Walltime {
    /// Mean of the middle 7 samples, in nanoseconds.
    pub trimmed_mean_ns: u64,
    /// The budget, in nanoseconds.
    pub budget_ns: u64,
    /// The cited base, in nanoseconds.
    pub base_ns: u64,
    /// The middle sample, in nanoseconds.
    pub median_ns: u64,
    /// The multiplier the gate applied.
    pub multiplier: f64,
    /// Set when `PERF_BUDGET_MULTIPLIER` was rejected.
    pub multiplier_warning: Option<String>,
}

/// One expected-versus-observed count (`perfbudget::CountRecord`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    /// What was counted.
    pub what: String,
    /// The count derived from the code.
    pub expected: u64,
    /// The count observed.
    pub observed: u64,
}

/// The numbers of an instruction-count gate's record
/// (`perfbudget::InstructionRecord`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instructions {
    /// Instructions counted.
    pub observed: u64,
    /// The cited base.
    pub base: u64,
    /// The smallest count that passes.
    pub low: u64,
    /// The largest count that passes.
    pub high: u64,
}

/// What a gate measured: a time, counts, or nothing it could measure.
#[derive(Debug, Clone, PartialEq)]
pub enum Detail {
    /// A walltime gate.
    Walltime(Walltime),
    /// A count gate.
    Counts(Vec<Count>),
    /// An instruction-count gate.
    Instructions(Instructions),
    /// A gate that could not measure here (its tool is missing); the text
    /// says why. It fails the run unless skips are allowed.
    Skipped(String),
}

/// One gate's record, typed (`perfbudget::Record`).
#[derive(Debug, Clone, PartialEq)]
pub struct GateRecord {
    /// The gate's name.
    pub gate: String,
    /// `cold`, `warm`, `count`, `instructions`, ...
    pub class: String,
    /// Whether the gate passed.
    pub passed: bool,
    /// The numbers.
    pub detail: Detail,
    /// The record as it was written, kept verbatim for `report.json`.
    pub raw: Value,
}

fn u64_at(value: &Value, key: &str) -> Result<u64, String> {
    value[key]
        .as_u64()
        .ok_or_else(|| format!("`{key}` is missing or not an unsigned integer"))
}

fn str_at(value: &Value, key: &str) -> Result<String, String> {
    value[key]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("`{key}` is missing or not a string"))
}

impl GateRecord {
    /// Parses one record; the error names the first key that is missing or
    /// of the wrong type.
    pub fn from_json(value: Value) -> Result<GateRecord, String> {
        let gate = str_at(&value, "gate")?;
        let class = str_at(&value, "class")?;
        let passed = value["passed"]
            .as_bool()
            .ok_or("`passed` is missing or not a boolean")?;
        let detail = if let Some(wall) = value.get("walltime") {
            Detail::Walltime(Walltime {
                trimmed_mean_ns: u64_at(wall, "trimmed_mean_ns")?,
                budget_ns: u64_at(wall, "budget_ns")?,
                base_ns: u64_at(wall, "base_ns")?,
                median_ns: u64_at(wall, "median_ns")?,
                multiplier: wall["multiplier"]
                    .as_f64()
                    .ok_or("`walltime.multiplier` is missing or not a number")?,
                multiplier_warning: wall["multiplier_warning"].as_str().map(str::to_owned),
            })
        } else if let Some(counts) = value.get("counts") {
            let counts = counts
                .as_array()
                .ok_or("`counts` is not an array")?
                .iter()
                .map(|c| {
                    Ok(Count {
                        what: str_at(c, "what")?,
                        expected: u64_at(c, "expected")?,
                        observed: u64_at(c, "observed")?,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            if counts.is_empty() {
                return Err("`counts` is empty".into());
            }
            Detail::Counts(counts)
        } else if let Some(i) = value.get("instructions") {
            Detail::Instructions(Instructions {
                observed: u64_at(i, "observed")?,
                base: u64_at(i, "base")?,
                low: u64_at(i, "low")?,
                high: u64_at(i, "high")?,
            })
        } else if let Some(reason) = value.get("skipped") {
            Detail::Skipped(
                reason
                    .as_str()
                    .ok_or("`skipped` is not a string")?
                    .to_owned(),
            )
        } else if !passed {
            // A count gate with no expectation fails and records no counts.
            Detail::Counts(Vec::new())
        } else {
            return Err(
                "none of `walltime`, `counts`, `instructions` or `skipped` is present".into(),
            );
        };
        Ok(GateRecord {
            gate,
            class,
            passed,
            detail,
            raw: value,
        })
    }
}

/// Parses a JSON Lines records file: the records, and one message per line
/// that is not a gate record.
pub fn parse_records(text: &str) -> (Vec<GateRecord>, Vec<String>) {
    let mut records = Vec::new();
    let mut malformed = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Value>(line)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(GateRecord::from_json);
        match parsed {
            Ok(record) => records.push(record),
            Err(why) => malformed.push(format!("line {}: {why}", index + 1)),
        }
    }
    (records, malformed)
}

/// How one perf test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exited successfully and every record it emitted passed.
    Passed,
    /// At least one of its gates recorded a failure.
    GateFailed,
    /// Exited unsuccessfully without a failed gate record: a panic outside
    /// a gate, an abort, a signal.
    Crashed,
    /// Killed after running longer than the per-test timeout.
    TimedOut,
    /// Exited successfully but emitted no gate record.
    NoRecord,
    /// Wrote something that is not a gate record.
    BadRecord,
    /// Every gate it ran was skipped (its tool is missing here).
    Skipped,
}

impl Status {
    /// Short label for the summary and the report.
    pub fn label(self) -> &'static str {
        match self {
            Status::Passed => "ok",
            Status::GateFailed => "FAILED",
            Status::Crashed => "CRASHED",
            Status::TimedOut => "TIMED OUT",
            Status::NoRecord => "NO RECORD",
            Status::BadRecord => "BAD RECORD",
            Status::Skipped => "SKIPPED",
        }
    }

    /// Whether this status fails the run. A skip does not, but the run
    /// prints it, and `--no-skip` turns it into a failure.
    pub fn is_failure(self) -> bool {
        !matches!(self, Status::Passed | Status::Skipped)
    }
}

/// One perf test's run.
pub struct Outcome {
    /// The test.
    pub test: PerfTest,
    /// How it ended.
    pub status: Status,
    /// The process's exit status, as text.
    pub exit: String,
    /// Wall time of the whole test process.
    pub elapsed: Duration,
    /// The gate records it emitted, in order.
    pub records: Vec<GateRecord>,
}
