//! Repository automation, run as `cargo xtask <command>` (a cargo alias).
//!
//! Commands:
//!
//! * `test-perf [--list] [--timeout SECS] [--no-skip] [FILTER...]`: find
//!   every perf gate (a test whose last path segment starts with `perf_`)
//!   in every workspace crate and target, run each alone in the release
//!   profile with a per-test timeout, print a summary and write
//!   `<target dir>/perf/report.json`. See `docs/perf-budget-suite.md`.
//! * `man`: build the `outbox` binary and have it write its man pages
//!   (`outbox man --dir`) into `<target dir>/man/`. The pages come from the
//!   CLI's clap definitions, which only the binary links, so xtask runs it
//!   rather than depending on clap.
//!
//! * `sim [--seeds N] [--first F] [--jobs J] | sim --seed S`: run the
//!   outbox's seeded whole-system simulation over many seeds, or replay one.
//! * `compare [--rounds R] [--quick] [--filter WORD]... [--scratch DIR]`:
//!   build `bench/` (its own workspace) in release and run our outbox
//!   against a SQLite outbox side by side. See `docs/compare.md`.
//!
//! This crate stays lean (serde_json, and statrs for perf-trust) because it is compiled before
//! every perf run.

use std::env;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod audit;
mod calibrate;
mod compare;
mod discover;
mod model;
mod mutants;
mod report;
mod sim;
mod test_perf;
#[cfg(test)]
mod tidy;
mod trust;

const USAGE_HEAD: &str = "\
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
  perf-trust [--runs R] [--load CMD] [--no-false-alarms] [--no-detect]
             [--no-mutants] [FILTER...]
      Measure each gate's false-alarm rate quiet and under loads, detection
      power against synthetic regressions, and how often the outbox's gates
      catch real regressions injected into a scratch copy; table + JSON.
  man
      Build the outbox binary and write its man pages (outbox.1 and one per
      command) into <target dir>/man/, from its clap definitions. Read them
      with `man <target dir>/man/outbox.1`.
";

const USAGE_TAIL: &str = "  help
      Print this message.
";

fn usage() -> String {
    format!("{USAGE_HEAD}{}{}{USAGE_TAIL}", sim::USAGE, compare::USAGE)
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    let run: fn(&[String]) -> ExitCode = match command.as_str() {
        "test-perf" => test_perf::run,
        "perf-audit" => audit::run,
        "perf-calibrate" => calibrate::run,
        "perf-trust" => trust::run,
        "sim" => sim::run,
        "compare" => compare::run,
        "man" => |_: &[String]| man(),
        "help" | "-h" | "--help" => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        other => {
            eprintln!("xtask: unknown command `{other}`\n");
            eprint!("{}", usage());
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

/// `cargo xtask man`: `cargo run -p outbox-cli -- man --dir <target>/man`.
fn man() -> ExitCode {
    let target =
        env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let dir = target.join("man");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args([
            "run",
            "--quiet",
            "--package",
            "outbox-cli",
            "--bin",
            "outbox",
            "--",
            "man",
            "--dir",
        ])
        .arg(&dir)
        .status();
    match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("xtask: outbox man --dir {}: {status}", dir.display());
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("xtask: cannot run cargo: {error}");
            ExitCode::FAILURE
        }
    }
}
