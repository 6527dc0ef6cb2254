//! `cargo xtask sim`: long campaigns of the outbox's seeded whole-system
//! simulation (`crates/outbox/tests/it/sim`).
//!
//! Builds the outbox's test binary in release, splits the seed range into
//! one contiguous chunk per job, runs the simulation test of each chunk as
//! its own process (`OUTBOX_SIM_FIRST_SEED`, `OUTBOX_SIM_SEEDS`), and sums
//! the figures each prints. A failing seed stops its chunk; its message and
//! the one-line replay command are printed, and the exit code is 1.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use serde_json::Value;

use crate::discover::cargo;

/// The simulation test, by its libtest name.
const TEST: &str = "sim::seeded_whole_system_simulation";

/// The `sim` entry of `cargo xtask help`.
pub const USAGE: &str = "  sim [--seeds N] [--first F] [--jobs J] | sim --seed S
      Run the outbox's seeded whole-system simulation in release: seeds
      F..F+N (default 0..1000) split over J processes (default: the number
      of CPUs), or replay seed S alone with its output. Prints operations,
      crashes, faults, clock steps and seeds explored; exits 1 on the
      first failing seed of any job, printing how to replay it.
";

#[derive(Debug, PartialEq, Eq)]
struct Args {
    seeds: u64,
    first: u64,
    jobs: u64,
    replay: Option<u64>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let mut out = Args {
        seeds: 1000,
        first: 0,
        jobs,
        replay: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{name} needs a number"))?;
            v.parse()
                .map_err(|_| format!("{name} takes a whole number, got {v:?}"))
        };
        match flag.as_str() {
            "--seeds" => out.seeds = value("--seeds")?,
            "--first" => out.first = value("--first")?,
            "--jobs" => out.jobs = value("--jobs")?.max(1),
            "--seed" => out.replay = Some(value("--seed")?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if out.seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    Ok(out)
}

/// `[first, first + seeds)` cut into at most `jobs` contiguous chunks.
fn chunks(first: u64, seeds: u64, jobs: u64) -> Vec<(u64, u64)> {
    let jobs = jobs.clamp(1, seeds);
    let base = seeds / jobs;
    let extra = seeds % jobs;
    let mut out = Vec::new();
    let mut start = first;
    for j in 0..jobs {
        let n = base + u64::from(j < extra);
        out.push((start, n));
        start += n;
    }
    out
}

/// Sums the figures of `sim: seeds a..b ok: 12 seeds, 3400 ops, ...` lines.
fn add_figures(stdout: &str, totals: &mut BTreeMap<String, u64>, order: &mut Vec<String>) {
    for line in stdout.lines() {
        // libtest may print the test's name on the same line first.
        let Some(at) = line.find("sim: seeds ") else {
            continue;
        };
        let Some((_, figures)) = line[at..].split_once(" ok: ") else {
            continue;
        };
        for part in figures.split(", ") {
            let Some((n, label)) = part.trim().split_once(' ') else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            if !totals.contains_key(label) {
                order.push(label.to_string());
            }
            *totals.entry(label.to_string()).or_default() += n;
        }
    }
}

fn build() -> Result<PathBuf, String> {
    let out = Command::new(cargo())
        .args([
            "test",
            "--release",
            "-p",
            "outbox",
            "--test",
            "it",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err("building the outbox's tests failed".into());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "it")
        .and_then(|v| v["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| "cargo built no `it` test binary for the outbox".into())
}

/// Runs the campaign `args` describe (after the `sim` word).
pub fn run(args: &[String]) -> ExitCode {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("xtask sim: {e}\n\nusage:\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let exe = match build() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("xtask sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(seed) = args.replay {
        let status = Command::new(&exe)
            .args([TEST, "--exact", "--nocapture"])
            .env("OUTBOX_SIM_SEED", seed.to_string())
            .status();
        return match status {
            Ok(s) if s.success() => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("xtask sim: cannot run {}: {e}", exe.display());
                ExitCode::FAILURE
            }
        };
    }
    let started = std::time::Instant::now();
    let mut children = Vec::new();
    for (first, n) in chunks(args.first, args.seeds, args.jobs) {
        let child = Command::new(&exe)
            .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env("OUTBOX_SIM_FIRST_SEED", first.to_string())
            .env("OUTBOX_SIM_SEEDS", n.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match child {
            Ok(c) => children.push((first, n, c)),
            Err(e) => {
                eprintln!("xtask sim: cannot run {}: {e}", exe.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let (mut totals, mut order) = (BTreeMap::new(), Vec::new());
    let mut failed = false;
    for (first, n, child) in children {
        let out = match child.wait_with_output() {
            Ok(o) => o,
            Err(e) => {
                eprintln!("xtask sim: seeds {first}..{}: {e}", first + n);
                failed = true;
                continue;
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        add_figures(&stdout, &mut totals, &mut order);
        if !out.status.success() {
            failed = true;
            eprintln!("xtask sim: seeds {first}..{} FAILED:", first + n);
            let text = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
            for line in text.lines().filter(|l| {
                l.starts_with("seed ") || l.starts_with("replay:") || l.contains("failed: ")
            }) {
                eprintln!("  {line}");
            }
        }
    }
    println!(
        "\nsim campaign: seeds {}..{} in {} job(s), {:.1} s",
        args.first,
        args.first + args.seeds,
        args.jobs.min(args.seeds),
        started.elapsed().as_secs_f64()
    );
    for label in &order {
        println!("  {:>12}  {label}", totals[label]);
    }
    if failed {
        println!("result: FAILED (see above)");
        ExitCode::FAILURE
    } else {
        println!("result: clean");
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn chunks_cover_the_range_once() {
        assert_eq!(chunks(10, 7, 3), [(10, 3), (13, 2), (15, 2)]);
        assert_eq!(chunks(0, 2, 8), [(0, 1), (1, 1)]);
        let total: u64 = chunks(5, 100_000, 2).iter().map(|c| c.1).sum();
        assert_eq!(total, 100_000);
    }

    #[test]
    fn arguments_parse_and_bad_ones_are_named() {
        let a = parse_args(&strings(&["--seeds", "50", "--jobs", "2", "--first", "9"])).unwrap();
        assert_eq!((a.seeds, a.jobs, a.first, a.replay), (50, 2, 9, None));
        assert_eq!(
            parse_args(&strings(&["--seed", "42"])).unwrap().replay,
            Some(42)
        );
        let e = parse_args(&strings(&["--seeds", "many"])).unwrap_err();
        assert!(e.contains("--seeds") && e.contains("many"), "{e}");
        assert!(
            parse_args(&strings(&["--bogus"]))
                .unwrap_err()
                .contains("--bogus")
        );
        assert!(parse_args(&strings(&["--seeds", "0"])).is_err());
    }

    #[test]
    fn figures_add_up_across_jobs() {
        let (mut t, mut o) = (BTreeMap::new(), Vec::new());
        add_figures(
            "noise\nsim: seeds 0..2 ok: 2 seeds, 10 ops, 1 crashes\n",
            &mut t,
            &mut o,
        );
        add_figures(
            "sim: seeds 2..4 ok: 2 seeds, 5 ops, 0 crashes\n",
            &mut t,
            &mut o,
        );
        assert_eq!(t["seeds"], 4);
        assert_eq!(t["ops"], 15);
        assert_eq!(t["crashes"], 1);
        assert_eq!(o, ["seeds", "ops", "crashes"]);
    }
}
