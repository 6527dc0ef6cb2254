//! `cargo xtask perf-calibrate [FILTER...] [--runs R]`: measure each gate R
//! times and propose its `base`, as a diff against the source.
//!
//! A walltime gate's proposal is the median of the R runs' medians (each
//! run is the usual n = 11 measurement); an instruction gate's is the median
//! of its R counts. The proposal comes with the citation the suite asks for
//! (value, spread, profile, machine, date, command), written as a comment
//! line above the constant. Count gates are not calibrated: their numbers
//! come from reading the code. Nothing is written: the diff is printed for a
//! person to apply (and, for a raise over 25%, to log).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use crate::audit::{self, GateKind, SourceGate};
use crate::model::{Detail, Status};
use crate::test_perf;

/// The usage text.
pub const USAGE: &str = "\
usage: cargo xtask perf-calibrate [--runs R] [FILTER...]

Run each perf gate matching a FILTER (all if none) R times (default 5) at
multiplier 1.0, and print, as a diff against the source, the base each
walltime and instruction gate should cite: the median of the runs, with its
spread, the profile, the machine and the date. Count gates are derived from
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
                    "unknown option `{flag}` (try `cargo xtask perf-calibrate --help`)"
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

/// Rewrites the number in `line` (a `Duration::from_*(N)` or an integer
/// literal after `=` or as the constructor's argument) to `value`.
pub fn rewrite_line(line: &str, kind: &GateKind, value: u64) -> Option<String> {
    match kind {
        GateKind::Walltime { .. } => {
            let at = line.find("Duration::from_")?;
            let open = at + line[at..].find('(')?;
            let close = open + line[open..].find(')')?;
            // Whole microseconds, rounded: the resolution the suite cites.
            let micros = (value.saturating_add(500) / 1_000).max(1);
            Some(format!(
                "{}Duration::from_micros({}){}",
                &line[..at],
                with_underscores(micros),
                &line[close + 1..]
            ))
        }
        GateKind::Instructions { .. } => {
            // The last integer literal on the line.
            let bytes = line.as_bytes();
            let end = (0..bytes.len())
                .rev()
                .find(|i| bytes[*i].is_ascii_digit())?
                + 1;
            let start = (0..end)
                .rev()
                .find(|i| !(bytes[*i].is_ascii_digit() || bytes[*i] == b'_'))
                .map_or(0, |i| i + 1);
            Some(format!(
                "{}{}{}",
                &line[..start],
                with_underscores(value),
                &line[end..]
            ))
        }
        GateKind::Count { .. } => None,
    }
}

/// The citation comment for a proposal, in the suite's format.
pub fn citation(gate: &SourceGate, runs: &Runs, machine: &str, date: &str) -> Option<String> {
    let proposed = median(&runs.values)?;
    let (lo, hi) = (*runs.values.iter().min()?, *runs.values.iter().max()?);
    let n = runs.values.len();
    Some(match gate.kind {
        GateKind::Walltime { .. } => {
            let means = match (
                runs.trimmed_means.iter().min(),
                runs.trimmed_means.iter().max(),
            ) {
                (Some(a), Some(b)) => format!(", trimmed means {}–{}", ms(*a), ms(*b)),
                _ => String::new(),
            };
            format!(
                "Observed median {}: the median of {n} runs' medians (run medians {}–{}{means}); \
                 release profile, `cargo xtask perf-calibrate`, multiplier 1.0, {machine}, {date}.",
                ms(proposed),
                ms(lo),
                ms(hi)
            )
        }
        GateKind::Instructions { .. } => format!(
            "Observed {} instructions: the median of {n} callgrind counts ({}–{}); release \
             profile, `cargo xtask perf-calibrate`, {machine}, {date}.",
            with_underscores(proposed),
            with_underscores(lo),
            with_underscores(hi)
        ),
        GateKind::Count { .. } => return None,
    })
}

/// The diff for one gate: `None` when it has nothing to propose.
pub fn proposal(
    gate: &SourceGate,
    source_line: &str,
    runs: &Runs,
    machine: &str,
    date: &str,
) -> Option<String> {
    let proposed = median(&runs.values)?;
    let line_no = gate.base_line?;
    let new_line = rewrite_line(source_line, &gate.kind, proposed)?;
    let cite = citation(gate, runs, machine, date)?;
    let indent: String = source_line
        .chars()
        .take_while(|c| c.is_whitespace())
        .collect();
    let old = gate.kind.base()?;
    let change = if old > 0 {
        format!("{:+.1}%", (proposed as f64 / old as f64 - 1.0) * 100.0)
    } else {
        "new".into()
    };
    let mut out = String::new();
    let _ = writeln!(out, "--- {}", gate.file);
    let _ = writeln!(out, "+++ {} (proposed)", gate.file);
    let _ = writeln!(
        out,
        "@@ -{line_no} +{line_no} @@ {} ({} {change})",
        gate.name,
        gate.kind.class()
    );
    let _ = writeln!(out, "-{source_line}");
    let _ = writeln!(out, "+{indent}// {cite}");
    let _ = writeln!(out, "+{new_line}");
    if old > 0 && proposed as f64 > old as f64 * (1.0 + audit::MAX_SILENT_RAISE) {
        let _ = writeln!(
            out,
            "    note: a raise of more than 25% needs an entry in {} (perf-audit enforces it)",
            audit::POLICY_LOG
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

/// Entry point; the working directory is already the workspace root.
pub fn run(args: &[String]) -> ExitCode {
    match try_run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("perf-calibrate: error: {e}");
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
    let sources = audit::gates_of(&audit::working_files()?)?;
    let (tests, found, _) = test_perf::find_tests(&args.filters)?;
    if tests.is_empty() {
        return Err(format!(
            "no perf test matches {:?} (of {found}; see `cargo xtask test-perf --list`)",
            args.filters
        ));
    }
    let dir = test_perf::perf_dir()?.join("calibrate");
    test_perf::fresh_dir(&dir)?;
    let mut runs: BTreeMap<String, Runs> = BTreeMap::new();
    for test in &tests {
        eprint!("perf-calibrate: {} x{} ", test.id(), args.runs);
        for run in 0..args.runs {
            let file = dir.join(format!("{}-{run}.jsonl", test.name.replace("::", "-")));
            let outcome = test_perf::run_one(
                test.clone(),
                &file,
                test_perf::DEFAULT_TIMEOUT,
                &[(crate::model::MULTIPLIER_ENV, "1.0".to_owned())],
                false,
            )?;
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
                let entry = runs.entry(record.gate.clone()).or_default();
                match record.detail {
                    Detail::Walltime(w) => {
                        entry.values.push(w.median_ns);
                        entry.trimmed_means.push(w.trimmed_mean_ns);
                    }
                    Detail::Instructions(i) => entry.values.push(i.observed),
                    Detail::Counts(_) | Detail::Skipped(_) => {}
                }
            }
        }
        eprintln!();
    }
    let (machine, date) = (machine(), date_of(unix_now()));
    let mut printed = 0;
    for (name, measured) in &runs {
        let Some(gate) = sources.get(name) else {
            println!("# {name}: measured, but its source could not be found; skipped");
            continue;
        };
        if measured.values.is_empty() {
            continue;
        }
        let line = gate.base_line.and_then(|n| {
            std::fs::read_to_string(&gate.file)
                .ok()
                .and_then(|t| t.lines().nth(n - 1).map(str::to_owned))
        });
        match line.and_then(|l| proposal(gate, &l, measured, &machine, &date)) {
            Some(diff) => {
                print!("{diff}");
                printed += 1;
            }
            None => println!(
                "# {name}: cannot rewrite its base line; measured {:?}",
                measured.values
            ),
        }
    }
    if printed == 0 {
        println!("perf-calibrate: nothing to propose (count gates are derived from the code)");
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

    fn gate(kind: GateKind) -> SourceGate {
        SourceGate {
            name: "perf_drain".into(),
            file: "crates/x/tests/p.rs".into(),
            function: "perf_drain".into(),
            kind,
            base_line: Some(12),
        }
    }

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

    #[test]
    fn rewrites_the_number_and_keeps_the_rest_of_the_line() {
        let wall = GateKind::Walltime {
            class: "warm".into(),
            base_ns: 600_000,
        };
        assert_eq!(
            rewrite_line(
                "const B: Duration = Duration::from_micros(600);",
                &wall,
                612_400
            ),
            Some("const B: Duration = Duration::from_micros(612);".into())
        );
        assert_eq!(
            rewrite_line(
                "    const BASE: Duration = Duration::from_millis(4);",
                &wall,
                4_200_000
            ),
            Some("    const BASE: Duration = Duration::from_micros(4_200);".into())
        );
        let instr = GateKind::Instructions { base: 1 };
        assert_eq!(
            rewrite_line("const N: u64 = 700_079;", &instr, 701_000),
            Some("const N: u64 = 701_000;".into())
        );
        assert_eq!(rewrite_line("no number here", &wall, 1), None);
    }

    #[test]
    fn the_proposal_is_a_diff_with_the_citation() {
        let g = gate(GateKind::Walltime {
            class: "warm".into(),
            base_ns: 600_000,
        });
        let runs = Runs {
            values: vec![610_000, 590_000, 700_000, 560_000, 640_000],
            trimmed_means: vec![600_000, 580_000, 690_000, 550_000, 630_000],
        };
        let line = "const DRAIN_25_BASE: Duration = Duration::from_micros(600);";
        let diff = proposal(&g, line, &runs, "2-core X, linux", "2026-11-29").expect("a diff");
        let lines: Vec<&str> = diff.lines().collect();
        assert_eq!(lines[0], "--- crates/x/tests/p.rs");
        assert_eq!(lines[2], "@@ -12 +12 @@ perf_drain (warm +1.7%)");
        assert_eq!(lines[3], format!("-{line}"));
        assert_eq!(
            lines[4],
            "+// Observed median 0.610 ms: the median of 5 runs' medians (run medians \
             0.560 ms–0.700 ms, trimmed means 0.550 ms–0.690 ms); release profile, `cargo xtask \
             perf-calibrate`, multiplier 1.0, 2-core X, linux, 2026-11-29."
        );
        assert_eq!(
            lines[5],
            "+const DRAIN_25_BASE: Duration = Duration::from_micros(610);"
        );
        assert_eq!(lines.len(), 6, "{diff}");

        // A raise over 25% says it needs a log entry.
        let slow = Runs {
            values: vec![900_000],
            trimmed_means: vec![900_000],
        };
        let diff = proposal(&g, line, &slow, "m", "d").expect("a diff");
        assert!(
            diff.contains("+50.0%") && diff.contains("docs/rfc/PERF_BUDGETS.md"),
            "{diff}"
        );

        // Count gates are not calibrated.
        let count = SourceGate {
            base_line: None,
            ..gate(GateKind::Count { literals: vec![] })
        };
        assert_eq!(proposal(&count, line, &runs, "m", "d"), None);
    }

    #[test]
    fn instruction_proposal_cites_counts() {
        let g = gate(GateKind::Instructions { base: 700_079 });
        let runs = Runs {
            values: vec![700_100, 699_900, 700_500],
            trimmed_means: vec![],
        };
        let diff = proposal(&g, "const N: u64 = 700_079;", &runs, "m", "d").expect("diff");
        assert!(diff.contains("+const N: u64 = 700_100;"), "{diff}");
        assert!(
            diff.contains("median of 3 callgrind counts (699_900–700_500)"),
            "{diff}"
        );
    }
}
