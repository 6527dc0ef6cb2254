//! The types every command shares: a perf test's [`Outcome`], its
//! [`Status`], and the [`GateRecord`] view of a `perfbudget` record.
//!
//! The schema is perfbudget's, defined once in `perfbudget::Record` and
//! deserialised here ([`perfbudget::Record::from_json_line`]); this module
//! only gives the runner's report a typed view of it ([`Detail`]). A line
//! that is not a record of this schema makes its test `BAD RECORD`, which
//! fails the run, instead of a report quietly printing `?`.

use std::time::Duration;

use perfbudget::{Declared, Record};
use serde_json::Value;

use crate::discover::PerfTest;

pub use perfbudget::{MULTIPLIER_ENV, RECORDS_ENV};

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
    /// The budget as the gate's code declares it.
    pub declared: Declared,
    /// The record as it was written, kept verbatim for `report.json`.
    pub raw: Value,
}

impl GateRecord {
    /// The typed view of one record.
    pub fn from_record(record: Record) -> Result<GateRecord, String> {
        let detail = if let Some(wall) = &record.walltime {
            Detail::Walltime(Walltime {
                trimmed_mean_ns: wall.trimmed_mean_ns,
                budget_ns: wall.budget_ns,
                base_ns: wall.base_ns,
                median_ns: wall.median_ns,
                multiplier: wall.multiplier,
                multiplier_warning: wall.multiplier_warning.clone(),
            })
        } else if !record.counts.is_empty() {
            Detail::Counts(
                record
                    .counts
                    .iter()
                    .map(|c| Count {
                        what: c.what.clone(),
                        expected: c.expected,
                        observed: c.observed,
                    })
                    .collect(),
            )
        } else if let Some(i) = &record.instructions {
            Detail::Instructions(Instructions {
                observed: i.observed,
                base: i.base,
                low: i.low,
                high: i.high,
            })
        } else if let Some(reason) = &record.skipped {
            Detail::Skipped(reason.clone())
        } else if !record.passed {
            // A count gate with no expectation fails and records no counts.
            Detail::Counts(Vec::new())
        } else {
            return Err(
                "none of `walltime`, `counts`, `instructions` or `skipped` is present".into(),
            );
        };
        let raw = serde_json::to_value(&record).map_err(|e| format!("cannot serialise: {e}"))?;
        Ok(GateRecord {
            gate: record.gate.clone(),
            class: record.class.clone(),
            passed: record.passed,
            detail,
            declared: record.declared,
            raw,
        })
    }

    /// Whether the gate could not measure here (its tool is missing).
    pub fn skipped(&self) -> bool {
        matches!(self.detail, Detail::Skipped(_))
    }

    /// Parses one JSON line written by a gate.
    pub fn from_line(line: &str) -> Result<GateRecord, String> {
        Record::from_json_line(line).and_then(GateRecord::from_record)
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
        let parsed = GateRecord::from_line(line);
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record from the fields a test cares about: `schema` and a
    /// `declared` budget of the record's class are added when missing.
    pub(crate) fn rec(mut value: Value) -> GateRecord {
        let class = value["class"].clone();
        let map = value.as_object_mut().expect("an object");
        map.entry("schema")
            .or_insert(perfbudget::RECORD_SCHEMA.into());
        map.entry("declared")
            .or_insert(serde_json::json!({ "class": class }));
        if let Some(wall) = map.get_mut("walltime").and_then(Value::as_object_mut) {
            for key in ["factor", "floor_ns", "min_ns", "max_ns", "std_dev_ns"] {
                wall.entry(key).or_insert(0.into());
            }
            wall.entry("samples_ns").or_insert(serde_json::json!([]));
        }
        GateRecord::from_line(&value.to_string()).expect("a gate record")
    }

    #[test]
    fn a_record_of_another_schema_or_with_a_stray_field_is_not_read() {
        let good = r#"{"schema":2,"gate":"g","class":"count","passed":true,
            "declared":{"class":"count"},"counts":[{"what":"x","expected":1,"observed":1}]}"#
            .replace('\n', "");
        assert!(GateRecord::from_line(&good).is_ok());
        let old = good.replace(r#""schema":2"#, r#""schema":1"#);
        let e = GateRecord::from_line(&old).expect_err("schema 1");
        assert!(e.contains("record schema 1"), "{e}");
        let stray = good.replace(r#""passed":true"#, r#""passed":true,"pased":1"#);
        assert!(GateRecord::from_line(&stray).is_err());
        let (records, malformed) = parse_records(&format!("{good}\nnot json\n\n"));
        assert_eq!((records.len(), malformed.len()), (1, 1));
        assert!(
            malformed[0].starts_with("line 2: not JSON"),
            "{malformed:?}"
        );
    }
}
