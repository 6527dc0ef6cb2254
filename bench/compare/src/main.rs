//! `cargo xtask compare`: our outbox against a SQLite outbox, side by side
//! in one process (issue 14).
//!
//! Every case (drains of 1, 25 and 1000; commits into 0 and 1000 pending;
//! drains of 25 with 0, 10 000 and 100 000 turns of history; fsync stubbed
//! and real) is measured on every implementation in each of R interleaved
//! rounds (default 9; the first implementation alternates from round to
//! round), each measurement perfbudget's n = 11 trimmed mean. The table
//! shows the median over rounds, the ratio ours / SQLite and a verdict
//! that says in how many rounds the direction held. `docs/compare.md` is
//! the handbook: fairness choices, how to add an implementation
//! ([`store`]), a measured table.

mod args;
mod cases;
mod ours;
mod report;
mod sqlite;
mod store;

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Instant, SystemTime};

use cases::{Case, CaseState};
use store::{Fsync, Result};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match args::parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("compare: {e}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    if args.help {
        print!("{}", args::USAGE);
        return ExitCode::SUCCESS;
    }
    let cases: Vec<Case> = cases::all()
        .into_iter()
        .filter(|c| args.filters.is_empty() || args.filters.iter().any(|f| c.id().contains(f)))
        .collect();
    if args.list {
        for case in cases::all() {
            println!("{:32} {}", case.id(), case.label());
        }
        return ExitCode::SUCCESS;
    }
    if cases.is_empty() {
        eprintln!(
            "compare: no case id contains {:?}; `--list` shows the ids",
            args.filters
        );
        return ExitCode::from(2);
    }
    match run(&args, &cases) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compare: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &args::Args, cases: &[Case]) -> Result<()> {
    let started = Instant::now();
    let date = report::utc(SystemTime::now());
    std::fs::create_dir_all(&args.scratch)
        .map_err(|e| format!("create {}: {e}", args.scratch.display()))?;
    // Removed on return, whatever happens.
    let run_dir = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&args.scratch)
        .map_err(|e| format!("create a directory in {}: {e}", args.scratch.display()))?;
    let scratch = run_dir
        .path()
        .canonicalize()
        .unwrap_or_else(|_| run_dir.path().to_path_buf());
    let fs_type = testutil::fs_type_of(&scratch);
    if matches!(fs_type.as_deref(), Some("tmpfs" | "ramfs"))
        && cases.iter().any(|c| c.fsync == Fsync::Real)
    {
        eprintln!(
            "compare: warning: {} is on {}: the real-fsync cases measure no disk",
            scratch.display(),
            fs_type.as_deref().unwrap_or("?")
        );
    }

    let contenders = store::contenders();
    let names: Vec<&'static str> = contenders.iter().map(|c| c.name()).collect();
    let ctx = report::Context {
        date,
        commit: git_commit(),
        scratch: args.scratch.display().to_string(),
        fs_type,
        rounds: args.rounds,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        names: names.clone(),
        descriptions: contenders.iter().map(|c| c.describe()).collect(),
    };

    // One store per case and implementation, each in its own directory,
    // open for the whole run; histories built once, before round 1.
    let mut states: Vec<Vec<CaseState>> = Vec::new();
    let mut setup_times = Vec::new();
    for (ci, case) in cases.iter().enumerate() {
        let mut row = Vec::new();
        for contender in &contenders {
            let dir = scratch.join(format!("{}-{}", case.id(), row.len()));
            std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            let store = contender
                .open(&dir, case.fsync)
                .map_err(|e| format!("{}: open in {}: {e}", contender.name(), dir.display()))?;
            row.push(CaseState::new(*case, store));
        }
        for i in order(ci, contenders.len()) {
            let state = &mut row[i];
            let t = Instant::now();
            state
                .prepare()
                .map_err(|e| format!("{}: {}: setup: {e}", names[i], case.id()))?;
            if t.elapsed().as_secs_f64() > 1.0 {
                eprintln!(
                    "compare: {}: {} built its fixture in {:.1} s (untimed)",
                    case.id(),
                    names[i],
                    t.elapsed().as_secs_f64()
                );
            }
        }
        states.push(row);
    }

    let mut rows: Vec<report::Row> = cases
        .iter()
        .map(|case| report::Row {
            case: *case,
            samples: vec![Vec::new(); contenders.len()],
        })
        .collect();
    for round in 0..args.rounds {
        eprintln!(
            "compare: round {}/{} ({:.0} s so far)",
            round + 1,
            args.rounds,
            started.elapsed().as_secs_f64()
        );
        for (ci, row) in states.iter_mut().enumerate() {
            let case_started = Instant::now();
            let mut line = format!("  {:32}", cases[ci].id());
            for i in order(round as usize, contenders.len()) {
                let m = row[i]
                    .measure()
                    .map_err(|e| format!("{}: {}: {e}", names[i], cases[ci].id()))?;
                line.push_str(&format!(
                    "  {} {}",
                    names[i],
                    report::duration(m.trimmed_mean())
                ));
                rows[ci].samples[i].push(report::Sample::from(&m));
            }
            eprintln!(
                "{line}  ({:.1} s with setups)",
                case_started.elapsed().as_secs_f64()
            );
        }
    }
    for (ci, row) in states.iter().enumerate() {
        for (i, state) in row.iter().enumerate() {
            setup_times.push((cases[ci].id(), names[i], state.setup_time));
        }
    }

    println!("{}", report::markdown(&ctx, &rows));
    let json = report::json(&ctx, &rows, &setup_times);
    if let Some(dir) = args.json.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&json)?;
    std::fs::write(&args.json, text + "\n")
        .map_err(|e| format!("write {}: {e}", args.json.display()))?;
    eprintln!(
        "compare: wrote {} ({:.0} s in all)",
        args.json.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The order the implementations go in, round `round`: as listed on even
/// rounds, reversed on odd ones, so neither always runs on a cache or disk
/// the other just warmed (or dirtied).
fn order(round: usize, n: usize) -> Vec<usize> {
    if round.is_multiple_of(2) {
        (0..n).collect()
    } else {
        (0..n).rev().collect()
    }
}

/// `git rev-parse --short=12 HEAD` of the repository, `-dirty` when
/// tracked files changed; `unknown` without git.
fn git_commit() -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(hash) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{hash}-dirty") } else { hash }
        }
        None => "unknown".into(),
    }
}
