//! The runner for [`perfbudget`] gates, usable from any Cargo workspace:
//! `cargo perfbudget test|list|audit|calibrate|trust`.
//!
//! Install it (`cargo install --locked --path crates/cargo-perfbudget`, or run it
//! from a checkout with `cargo run -p cargo-perfbudget -- ...`) and run it
//! from anywhere inside a workspace: it asks `cargo metadata` where the
//! workspace and its target directory are, builds every test target in
//! release, finds the tests whose last path segment starts with `perf_`,
//! and runs each one alone (one process each, one test thread), with a
//! per-test timeout. Gates report through JSON records (the schema is
//! `perfbudget::Record`, deserialised here, never copied).
//!
//! Commands:
//!
//! * `test [--list] [--timeout SECS] [--no-skip] [--locked] [FILTER...]`:
//!   run the gates; print a table; write `report.json`, `junit.xml`,
//!   `bmf.json` (Bencher Metric Format) and `summary.md` under
//!   `<target dir>/perf/` (the summary also to `$GITHUB_STEP_SUMMARY`);
//!   keep the budgets file up to date ([`budgets`]).
//! * `list [FILTER...]`: the gates `test` would run.
//! * `audit [--against REV]`: no budget loosened without a policy-log
//!   entry, comparing budgets files, not source ([`audit`]).
//! * `calibrate [--runs R] [FILTER...]`: propose bases ([`calibrate`]).
//! * `trust [...]`: false-alarm rates and detection power ([`trust`]).
//! * `ab [--against REV] [...]`: the relative walltime tier, base and head
//!   interleaved, a Student's t interval of their ratio ([`ab`]).
//!
//! Settings live in `[workspace.metadata.perfbudget]`
//! ([`discover::Settings`]): `policy` (the budget-loosening log, default
//! `PERF_BUDGETS.md`) and `budgets` (default `perf-budgets.json`).

pub mod ab;
pub mod audit;
pub mod budgets;
pub mod calibrate;
pub mod ci;
pub mod discover;
pub mod model;
pub mod report;
pub mod test_perf;
pub mod trust;

use std::process::ExitCode;

/// The usage text of the `cargo-perfbudget` binary.
pub const USAGE: &str = "\
usage: cargo perfbudget <command> [options]

commands:
  test [--list] [--timeout SECS] [--no-skip] [--locked] [FILTER...]
      Build the workspace's tests in release, run every `perf_` test alone,
      print a table and write report.json, junit.xml, bmf.json and summary.md
      under <target dir>/perf/; update the budgets file (--locked: check it).
  list [FILTER...]
      Print the perf tests `test` would run.
  audit [--against REV]
      Fail when a gate's budget loosened since REV (default: the merge base
      with main, else HEAD~1) without a new entry in the policy log.
  calibrate [--runs R] [FILTER...]
      Run each gate R times (default 5) and propose the base it should cite.
  trust [--runs R] [--load CMD] [--no-false-alarms] [--no-detect] [FILTER...]
      Measure false-alarm rates quiet and under load, and detection power.
  ab [--against REV] [--rounds N] [--threshold X] [FILTER...]
      Run every walltime gate of the base revision and of the working tree
      interleaved; fail when head/base is above X (default 1.3) with 95%
      confidence.
  help
      Print this message; `cargo perfbudget <command> --help` for a command.

settings ([workspace.metadata.perfbudget] in the root Cargo.toml):
  policy = \"PERF_BUDGETS.md\"      the budget-loosening log
  budgets = \"perf-budgets.json\"   the committed declared budgets
";

/// Runs one command; `args` are the arguments after the program name
/// (and after `perfbudget` when cargo runs it as `cargo perfbudget`).
pub fn main_with(args: &[String]) -> ExitCode {
    let Some(command) = args.first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    match command.as_str() {
        "test" => test_perf::run(rest),
        "list" => {
            let mut with_list = vec!["--list".to_owned()];
            with_list.extend_from_slice(rest);
            test_perf::run(&with_list)
        }
        "audit" => audit::run(rest),
        "calibrate" => calibrate::run(rest),
        "trust" => trust::run(rest),
        "ab" => ab::run(rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("cargo perfbudget: unknown command `{other}`\n");
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
