//! `cargo perfbudget calibrate [FILTER...] [--runs R]`: measure each gate
//! R times and propose its `base`, with the citation to paste beside it.
//!
//! A walltime gate's proposal is the median of the R runs' medians (each
//! run is the usual n = 11 measurement); an instruction gate's is the median
//! of its R counts. The current base comes from the gate's own record (its
//! declared budget), not from reading the source; the proposal comes with
//! the citation the suite asks for (value, spread, profile, machine, date,
//! command). Count gates are not calibrated: their numbers come from
//! reading the code. Nothing is written: a person edits the constant (and,
//! for a raise over 25%, logs it in the policy file).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use perfbudget::Declared;

use crate::audit::MAX_SILENT_RAISE;
use crate::discover;
use crate::model::{Detail, Status};
use crate::test_perf;

/// The usage text.
pub const USAGE: &str = "\
usage: cargo perfbudget calibrate [--runs R] [FILTER...]

Run each perf gate matching a FILTER (all if none) R times (default 5) at
multiplier 1.0, and print the base each walltime and instruction gate should
cite: the median of the runs, its spread, the profile, the machine and the
date, beside the base the gate declares now. Count gates are derived from
the code and are not calibrated. Nothing is written.
";

/// Parsed arguments.
#[derive(Debug, PartialEq)]
pub struct Args {
    /// Runs per gate.
    pub runs: usize,
    /// Filters on test ids.
    pub filters: Vec<String>,
    /// `--help`.
    pub help: bool,
}

/// Parses the arguments.
pub fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        runs: 5,
        filters: Vec::new(),
        help: false,
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--runs" => {
                let value = iter
                    .next()
                    .ok_or("`--runs` needs a number, e.g. `--runs 5`")?;
                parsed.runs = match value.parse::<usize>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(format!("`--runs {value}`: expected a whole number >= 1")),
                };
            }
            "-h" | "--help" => parsed.help = true,
            flag if flag.starts_with('-') => {
                return Err(format!(
                    "unknown option `{flag}` (try `cargo perfbudget calibrate --help`)"
                ));
            }
            filter => parsed.filters.push(filter.to_owned()),
        }
    }
    Ok(parsed)
}

/// The median of `values` (the lower middle for an even count).
pub fn median(values: &[u64]) -> Option<u64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get((sorted.len().saturating_sub(1)) / 2).copied()
}

/// What one gate measured over the runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Runs {
    /// Walltime: each run's median (ns); instructions: each run's count.
    pub values: Vec<u64>,
    /// Walltime only: each run's trimmed mean (ns).
    pub trimmed_means: Vec<u64>,
}

/// `1_234_567` style.
pub fn with_underscores(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('_');
        }
        out.push(c);
    }
    out
}

fn ms(ns: u64) -> String {
    format!("{:.3} ms", ns as f64 / 1e6)
}

/// The citation comment for a proposal, in the suite's format; `None` for
/// a gate that is not calibrated.
pub fn citation(class: &str, runs: &Runs, machine: &str, date: &str) -> Option<String> {
    let proposed = median(&runs.values)?;
    let (lo, hi) = (*runs.values.iter().min()?, *runs.values.iter().max()?);
    let n = runs.values.len();
    Some(match class {
        "cold" | "warm" => {
            let means = match (
                runs.trimmed_means.iter().min(),
                runs.trimmed_means.iter().max(),
            ) {
                (Some(a), Some(b)) => format!(", trimmed means {}–{}", ms(*a), ms(*b)),
                _ => String::new(),
            };
            format!(
                "Observed median {}: the median of {n} runs' medians (run medians {}–{}{means}); \
                 release profile, `cargo perfbudget calibrate`, multiplier 1.0, {machine}, {date}.",
                ms(proposed),
                ms(lo),
                ms(hi)
            )
        }
        "instructions" => format!(
            "Observed {} instructions: the median of {n} callgrind counts ({}–{}); release \
             profile, `cargo perfbudget calibrate`, {machine}, {date}.",
            with_underscores(proposed),
            with_underscores(lo),
            with_underscores(hi)
        ),
        _ => return None,
    })
}

/// The proposal for one gate: the constant to write, the citation, and
/// the change against the declared base; `None` when it has nothing to
/// propose. `policy` is the configured policy file.
pub fn proposal(
    gate: &str,
    declared: &Declared,
    runs: &Runs,
    machine: &str,
    date: &str,
    policy: &str,
) -> Option<String> {
    let proposed = median(&runs.values)?;
    let cite = citation(&declared.class, runs, machine, date)?;
    let constant = match declared.class.as_str() {
        // Whole microseconds, rounded: the resolution the suite cites.
        "instructions" => with_underscores(proposed),
        _ => format!(
            "Duration::from_micros({})",
            with_underscores((proposed.saturating_add(500) / 1_000).max(1))
        ),
    };
    let old = declared.base.unwrap_or(0);
    let change = if old > 0 {
        format!("{:+.1}%", (proposed as f64 / old as f64 - 1.0) * 100.0)
    } else {
        "new".into()
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{gate} ({}): base {constant} ({change} against the declared {})",
        declared.class,
        match declared.class.as_str() {
            "instructions" => with_underscores(old),
            _ => ms(old),
        }
    );
    let _ = writeln!(out, "    // {cite}");
    if old > 0 && proposed as f64 > old as f64 * (1.0 + MAX_SILENT_RAISE) {
        let _ = writeln!(
            out,
            "    note: a raise of more than 25% needs an entry in {policy} (`cargo perfbudget \
             audit` enforces it)"
        );
    }
    Some(out)
}

/// `YYYY-MM-DD` (UTC) of a Unix time.
pub fn date_of(unix_secs: u64) -> String {
    // Days to civil date (Howard Hinnant's algorithm).
    let z = (unix_secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A short description of this machine: cores and CPU model.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    format!("{cores}-core {model}, {}", std::env::consts::OS)
}

/// Entry point (the working directory is inside the workspace).
pub fn run(args: &[String]) -> ExitCode {
    match try_run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("calibrate: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn try_run(args: &[String]) -> Result<ExitCode, String> {
    let args = parse_args(args)?;
    if args.help {
        print!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    let ws = discover::workspace()?;
    let (tests, found, _) = test_perf::find_tests(&ws, &args.filters)?;
    if tests.is_empty() {
        return Err(format!(
            "no perf test matches {:?} (of {found}; see `cargo perfbudget list`)",
            args.filters
        ));
    }
    let dir = test_perf::perf_dir(&ws).join("calibrate");
    test_perf::fresh_dir(&dir)?;
    let mut env = test_perf::gate_env(&ws);
    env.push((crate::model::MULTIPLIER_ENV, "1.0".to_owned()));
    let mut runs: BTreeMap<String, (Declared, Runs)> = BTreeMap::new();
    for test in &tests {
        eprint!("calibrate: {} x{} ", test.id(), args.runs);
        for run in 0..args.runs {
            let file = dir.join(format!("{}-{run}.jsonl", test.name.replace("::", "-")));
            let outcome =
                test_perf::run_one(test.clone(), &file, test_perf::DEFAULT_TIMEOUT, &env, false)?;
            eprint!(".");
            if matches!(
                outcome.status,
                Status::Crashed | Status::TimedOut | Status::BadRecord
            ) {
                return Err(format!(
                    "{} {} on run {}: fix it before calibrating",
                    test.id(),
                    outcome.status.label(),
                    run + 1
                ));
            }
            for record in outcome.records {
                let entry = runs
                    .entry(record.gate.clone())
                    .or_insert_with(|| (record.declared.clone(), Runs::default()));
                match record.detail {
                    Detail::Walltime(w) => {
                        entry.1.values.push(w.median_ns);
                        entry.1.trimmed_means.push(w.trimmed_mean_ns);
                    }
                    Detail::Instructions(i) => entry.1.values.push(i.observed),
                    Detail::Counts(_) | Detail::Skipped(_) => {}
                }
            }
        }
        eprintln!();
    }
    let (machine, date) = (machine(), date_of(unix_now()));
    let mut printed = 0;
    for (name, (declared, measured)) in &runs {
        if let Some(text) = proposal(
            name,
            declared,
            measured,
            &machine,
            &date,
            &ws.settings.policy,
        ) {
            print!("{text}");
            printed += 1;
        }
    }
    if printed == 0 {
        println!("calibrate: nothing to propose (count gates are derived from the code)");
    }
    Ok(ExitCode::SUCCESS)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let a = parse_args(&["--runs".into(), "9".into(), "drain".into()]).expect("ok");
        assert_eq!(
            a,
            Args {
                runs: 9,
                filters: vec!["drain".into()],
                help: false
            }
        );
        assert_eq!(parse_args(&[]).expect("ok").runs, 5);
        for bad in [
            &["--runs"][..],
            &["--runs", "0"],
            &["--runs", "x"],
            &["--bogus"],
        ] {
            let bad: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(parse_args(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn medians_and_numbers() {
        assert_eq!(median(&[5, 1, 3]), Some(3));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2));
        assert_eq!(median(&[]), None);
        assert_eq!(with_underscores(700_079), "700_079");
        assert_eq!(with_underscores(1_000), "1_000");
        assert_eq!(with_underscores(999), "999");
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(1_796_083_200), "2026-12-01");
        assert_eq!(date_of(951_782_400), "2000-02-29");
    }

    fn declared(class: &str, base: u64) -> Declared {
        Declared {
            class: class.into(),
            base: Some(base),
            factor: None,
            tolerance: None,
            multiplier_in_code: None,
            expected: Vec::new(),
        }
    }

    #[test]
    fn a_proposal_cites_the_runs_and_compares_with_the_declared_base() {
        let runs = Runs {
            values: vec![800_000, 760_000, 790_000],
            trimmed_means: vec![810_000, 770_000, 800_000],
        };
        let text = proposal(
            "perf_d",
            &declared("warm", 600_000),
            &runs,
            "2-core",
            "2026-12-07",
            "LOG.md",
        )
        .expect("a proposal");
        assert!(
            text.starts_with("perf_d (warm): base Duration::from_micros(790) (+31.7% against the declared 0.600 ms)"),
            "{text}"
        );
        assert!(
            text.contains("run medians 0.760 ms–0.800 ms, trimmed means 0.770 ms–0.810 ms"),
            "{text}"
        );
        assert!(text.contains("needs an entry in LOG.md"), "{text}");
        let instr = Runs {
            values: vec![1_000_100, 1_000_000],
            trimmed_means: Vec::new(),
        };
        let text = proposal(
            "perf_i",
            &declared("instructions", 1_000_000),
            &instr,
            "m",
            "d",
            "L",
        )
        .expect("a proposal");
        assert!(text.contains("base 1_000_000 (+0.0%"), "{text}");
        assert!(text.contains("the median of 2 callgrind counts"), "{text}");
        assert_eq!(
            proposal("perf_c", &declared("count", 0), &instr, "m", "d", "L"),
            None
        );
    }
}
