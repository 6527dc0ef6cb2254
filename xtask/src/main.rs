//! Repository automation, run as `cargo xtask <command>` (a cargo alias).
//!
//! Commands:
//!
//! * `test-perf [--list] [--timeout SECS] [--no-skip] [FILTER...]`: find
//!   every perf gate (a test whose last path segment starts with `perf_`)
//!   in every workspace crate and target, run each alone in the release
//!   profile with a per-test timeout, print a summary and write
//!   `<target dir>/perf/report.json`. See `docs/perf-budget-suite.md`.
//!
//! This crate stays lean (serde_json only) because it is compiled before
//! every perf run.

use std::env;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod audit;
mod calibrate;
mod discover;
mod model;
mod report;
mod test_perf;
mod trust;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test-perf [--list] [--timeout SECS] [--no-skip] [FILTER...]
      Build the workspace's tests in release, find every test whose last path
      segment starts with `perf_`, run each one alone (ignored ones included)
      and write <target dir>/perf/report.json. `cargo xtask test-perf --help`
      explains every option.
  perf-audit [--against REV]
      Fail when a gate's base was raised by more than 25%, its class or its
      count expectations changed, or it disappeared, since REV (default: the
      merge base with main, else HEAD~1), without a new entry in
      docs/rfc/PERF_BUDGETS.md.
  perf-calibrate [--runs R] [FILTER...]
      Run each gate R times (default 5) and print, as a diff against the
      source, the base each walltime and instruction gate should cite.
  perf-trust [--runs R] [--load CMD] [--no-detect] [FILTER...]
      Measure each gate's false-alarm rate quiet and under loads, and
      detection power against synthetic regressions; table + JSON.
  help
      Print this message.
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let run: fn(&[String]) -> ExitCode = match command.as_str() {
        "test-perf" => test_perf::run,
        "perf-audit" => audit::run,
        "perf-calibrate" => calibrate::run,
        "perf-trust" => trust::run,
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => {
            eprintln!("xtask: unknown command `{other}`\n");
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = env::set_current_dir(project_root()) {
        eprintln!(
            "xtask: cannot change directory to the workspace root {}: {error}",
            project_root().display()
        );
        return ExitCode::FAILURE;
    }
    run(&args[1..])
}

/// The workspace root: the parent of this crate's manifest directory, so
/// the commands work from anywhere in the tree.
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}
