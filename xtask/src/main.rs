//! Repository automation, run as `cargo xtask <command>` (a cargo alias).
//!
//! The perf commands are thin calls into the runner's library
//! (`cargo_perfbudget`, the crate behind `cargo perfbudget`), which works
//! in any workspace; this crate keeps only this repository's chores:
//!
//! * `test-perf`, `perf-audit`, `perf-calibrate`: the runner's `test`,
//!   `audit` and `calibrate`. See `docs/perf-budget-suite.md`.
//! * `perf-trust`: the runner's `trust`, plus real regressions injected
//!   into the outbox (`mutants.rs`, `mutant_trust.rs`).
//! * `perf-trust-ab`: the A/B tier's trust figures (`ab_trust.rs`).
//! * `man`: build the `outbox` binary and have it write its man pages
//!   (`outbox man --dir`) into `<target dir>/man/`.
//! * `sim [--seeds N] [--first F] [--jobs J] | sim --seed S`: run the
//!   outbox's seeded whole-system simulation over many seeds, or replay one.
//! * `compare [--rounds R] [--quick] [--filter WORD]... [--scratch DIR]`:
//!   build `bench/` (its own workspace) in release and run our outbox
//!   against a SQLite outbox side by side. See `docs/compare.md`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod ab_trust;
mod compare;
mod mutant_trust;
mod mutants;
mod sim;
#[cfg(test)]
mod tidy;

use cargo_perfbudget::{audit, calibrate, discover, test_perf};

const USAGE_HEAD: &str = "\
usage: cargo xtask <command>

commands:
  test-perf [--list] [--timeout SECS] [--no-skip] [--locked] [FILTER...]
      `cargo perfbudget test`: run every `perf_` test alone in release and
      write the reports under <target dir>/perf/ (`--help` for the options).
  perf-audit [--against REV]
      `cargo perfbudget audit`: no gate loosened since REV without a new
      entry in docs/rfc/PERF_BUDGETS.md (the configured policy).
  perf-calibrate [--runs R] [FILTER...]
      `cargo perfbudget calibrate`: propose each gate's base.
  perf-trust [--runs R] [--load CMD] [--no-false-alarms] [--no-detect]
             [--no-mutants] [FILTER...]
      `cargo perfbudget trust`, plus how often the outbox's gates catch real
      regressions injected into a scratch copy; table + JSON.
  perf-trust-ab [--runs R] [--rounds N] [--load CMD]
      The A/B tier (`cargo perfbudget ab`) on the outbox's drain gate: false
      alarms quiet and loaded, detection of 2x drain mutants.
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
        "perf-trust" => mutant_trust::run,
        "perf-trust-ab" => ab_trust::run,
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
