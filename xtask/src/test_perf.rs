//! `cargo xtask test-perf`: run every perf gate alone, in release, and
//! report.
//!
//! How gate records get here: for each test, xtask sets
//! `PERF_BUDGET_RECORDS` to a fresh file under `<target dir>/perf/records/`;
//! every `perfbudget` gate that runs appends one JSON line to it, pass or
//! fail. A test that exits successfully without writing a record fails the
//! run: it ran no gate (an early return, a gate that was commented out, a
//! filter that matched nothing), and a gate suite that checks nothing must
//! not pass.

use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::discover::{self, PerfTest};
use crate::report;

/// Mirrors `perfbudget::RECORDS_ENV` (xtask does not depend on perfbudget;
/// a unit test keeps the two equal).
pub const RECORDS_ENV: &str = "PERF_BUDGET_RECORDS";

/// Mirrors `perfbudget::MULTIPLIER_ENV`.
pub const MULTIPLIER_ENV: &str = "PERF_BUDGET_MULTIPLIER";

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
    /// Exited successfully but emitted no gate record.
    NoRecord,
    /// Wrote something that is not a gate record.
    BadRecord,
}

impl Status {
    /// Short label for the summary and the report.
    pub fn label(self) -> &'static str {
        match self {
            Status::Passed => "ok",
            Status::GateFailed => "FAILED",
            Status::Crashed => "CRASHED",
            Status::NoRecord => "NO RECORD",
            Status::BadRecord => "BAD RECORD",
        }
    }

    /// Whether this status fails the run.
    pub fn is_failure(self) -> bool {
        self != Status::Passed
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
    pub records: Vec<Value>,
}

/// Decides a test's [`Status`] from its exit and what it recorded.
pub fn classify(exited_ok: bool, records: &[Value], malformed: usize) -> Status {
    let any_failed = records.iter().any(|r| r["passed"] != true);
    match (exited_ok, any_failed) {
        (_, true) => Status::GateFailed,
        (false, false) => Status::Crashed,
        (true, false) if malformed > 0 => Status::BadRecord,
        (true, false) if records.is_empty() => Status::NoRecord,
        (true, false) => Status::Passed,
    }
}

/// Parses a JSON Lines records file: the records, and how many lines were
/// not gate records.
pub fn parse_records(text: &str) -> (Vec<Value>, usize) {
    let mut records = Vec::new();
    let mut malformed = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(value) if value["gate"].is_string() && value["passed"].is_boolean() => {
                records.push(value);
            }
            _ => malformed += 1,
        }
    }
    (records, malformed)
}

struct Args {
    list: bool,
    filters: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        list: false,
        filters: Vec::new(),
    };
    for arg in args {
        match arg.as_str() {
            "--list" => parsed.list = true,
            flag if flag.starts_with('-') => {
                return Err(format!("unknown option `{flag}` (try `cargo xtask help`)"));
            }
            filter => parsed.filters.push(filter.to_owned()),
        }
    }
    Ok(parsed)
}

/// Entry point; the working directory is already the workspace root.
pub fn run(args: &[String]) -> ExitCode {
    match try_run(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("test-perf: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn try_run(args: &[String]) -> Result<ExitCode, String> {
    let args = parse_args(args)?;
    let ws = discover::workspace()?;
    let perf_dir = ws.target_dir.join("perf");
    let report_path = perf_dir.join("report.json");

    eprintln!("test-perf: building the workspace's tests (release)...");
    let binaries = discover::build_test_binaries(&ws)?;
    let mut tests = Vec::new();
    for binary in &binaries {
        tests.extend(discover::perf_tests_in(binary)?);
    }
    let found = tests.len();
    if !args.filters.is_empty() {
        tests.retain(|t| {
            let id = t.id();
            args.filters.iter().any(|f| id.contains(f.as_str()))
        });
    }

    if args.list {
        for test in &tests {
            println!("{}", test.id());
        }
        eprintln!(
            "test-perf: {} perf test(s) in {} test executable(s){}",
            tests.len(),
            binaries.len(),
            filter_note(&args.filters, found)
        );
        return Ok(if tests.is_empty() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }

    if tests.is_empty() {
        let why = if found == 0 {
            format!(
                "no perf test found in {} test executable(s): a gate is a test whose last path \
                 segment starts with `perf_` (see docs/perf-budget-suite.md). A gate suite \
                 that ran nothing does not pass.",
                binaries.len()
            )
        } else {
            format!(
                "none of the {found} perf tests matches {:?} (see `cargo xtask test-perf --list`)",
                args.filters
            )
        };
        report::write_json(&report_path, &[], false)?;
        return Err(why);
    }

    let multiplier = std::env::var(MULTIPLIER_ENV).ok();
    eprintln!(
        "test-perf: running {} perf test(s) one at a time, {MULTIPLIER_ENV}={}",
        tests.len(),
        multiplier.as_deref().unwrap_or("(unset)")
    );
    let records_dir = perf_dir.join("records");
    // A stale records file must never be mistaken for this run's.
    if records_dir.exists() {
        fs::remove_dir_all(&records_dir)
            .map_err(|e| format!("cannot clear {}: {e}", records_dir.display()))?;
    }
    fs::create_dir_all(&records_dir)
        .map_err(|e| format!("cannot create {}: {e}", records_dir.display()))?;

    let mut outcomes = Vec::new();
    for (index, test) in tests.into_iter().enumerate() {
        let records_file = records_dir.join(format!("{index:03}.jsonl"));
        outcomes.push(run_one(test, &records_file)?);
    }

    let passed = outcomes.iter().all(|o| !o.status.is_failure());
    println!();
    print!("{}", report::table(&outcomes));
    for warning in report::multiplier_warnings(&outcomes) {
        println!("{warning}");
    }
    report::write_json(&report_path, &outcomes, passed)?;
    println!("report: {}", report_path.display());

    let failures: Vec<&Outcome> = outcomes.iter().filter(|o| o.status.is_failure()).collect();
    if failures.is_empty() {
        println!("test-perf: all {} perf test(s) passed", outcomes.len());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "test-perf: {} of {} perf test(s) failed:",
            failures.len(),
            outcomes.len()
        );
        for outcome in failures {
            eprintln!("  {}", report::failure_line(outcome));
        }
        Ok(ExitCode::FAILURE)
    }
}

fn filter_note(filters: &[String], found: usize) -> String {
    if filters.is_empty() {
        String::new()
    } else {
        format!(" matching {filters:?} (of {found})")
    }
}

/// Runs one perf test as cargo would (cwd = its package), in its own
/// process, and collects its records.
fn run_one(test: PerfTest, records_file: &Path) -> Result<Outcome, String> {
    let id = test.id();
    eprint!("test-perf: {id} ... ");
    let start = Instant::now();
    let output = Command::new(&test.binary.executable)
        .args([
            "--exact",
            test.name.as_str(),
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .current_dir(&test.binary.manifest_dir)
        .env("CARGO_MANIFEST_DIR", &test.binary.manifest_dir)
        .env(RECORDS_ENV, records_file)
        .output()
        .map_err(|e| {
            format!(
                "cannot run {} for {id}: {e}",
                test.binary.executable.display()
            )
        })?;
    let elapsed = start.elapsed();
    let text = match fs::read_to_string(records_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", records_file.display())),
    };
    let (records, malformed) = parse_records(&text);
    let status = classify(output.status.success(), &records, malformed);
    eprintln!("{} ({:.2} s)", status.label(), elapsed.as_secs_f64());
    if status.is_failure() {
        // Show what the test said: the gate's report is in the panic text.
        for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
            let text = String::from_utf8_lossy(bytes);
            if !text.trim().is_empty() {
                eprintln!("---- {id} {stream} ----");
                eprintln!("{}", text.trim_end());
            }
        }
        if status == Status::NoRecord {
            eprintln!(
                "---- {id}: the test passed but ran no gate; call perfbudget's Gate::check or \
                 CountGate::check (docs/perf-budget-suite.md)"
            );
        }
    }
    Ok(Outcome {
        test,
        status,
        exit: output.status.to_string(),
        elapsed,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn env_names_match_perfbudget() {
        assert_eq!(RECORDS_ENV, perfbudget::RECORDS_ENV);
        assert_eq!(MULTIPLIER_ENV, perfbudget::MULTIPLIER_ENV);
    }

    #[test]
    fn status_follows_exit_and_records() {
        let ok = json!({"gate": "g", "passed": true});
        let bad = json!({"gate": "g", "passed": false});
        let one = std::slice::from_ref;
        assert_eq!(classify(true, one(&ok), 0), Status::Passed);
        assert_eq!(classify(false, one(&bad), 0), Status::GateFailed);
        assert_eq!(classify(false, &[ok.clone(), bad], 0), Status::GateFailed);
        assert_eq!(classify(false, one(&ok), 0), Status::Crashed);
        assert_eq!(classify(false, &[], 0), Status::Crashed);
        assert_eq!(classify(true, &[], 0), Status::NoRecord);
        assert_eq!(classify(true, &[ok], 1), Status::BadRecord);
    }

    #[test]
    fn records_file_is_json_lines_of_gate_records() {
        let text =
            "{\"gate\":\"a\",\"passed\":true}\n\n{\"gate\":\"b\",\"passed\":false}\nnoise\n{}\n";
        let (records, malformed) = parse_records(text);
        assert_eq!(records.len(), 2);
        assert_eq!(records[1]["gate"], "b");
        assert_eq!(malformed, 2);
    }

    #[test]
    fn a_gate_record_from_perfbudget_parses() {
        let line = perfbudget::CountGate::new("perf_x")
            .expect("file fsyncs", 1, 1)
            .evaluate()
            .record()
            .to_json_line();
        let (records, malformed) = parse_records(&line);
        assert_eq!((records.len(), malformed), (1, 0));
        assert_eq!(classify(true, &records, malformed), Status::Passed);
    }

    #[test]
    fn arguments() {
        let args = parse_args(&["--list".into(), "sort".into(), "drain".into()]).expect("valid");
        assert!(args.list);
        assert_eq!(args.filters, ["sort", "drain"]);
        assert!(parse_args(&["--bogus".into()]).is_err());
    }
}
