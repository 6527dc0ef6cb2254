//! `cargo perfbudget ab`: the relative walltime tier. A walltime gate's
//! budget is 3× or 5× its base (and at least 1 ms), so it cannot see a
//! change that makes the code 2× slower; comparing the code with itself
//! can.
//!
//! It builds the base revision (the merge base with main, or `--against
//! REV`; extracted with `git archive` under `<target>/perf/ab/`, built into
//! `<target>/perf/ab/target`, so the first run builds the dependencies
//! once more) and the working tree, then runs every walltime gate of both builds interleaved,
//! round by round (A B, then B A, ...: a slow spell of the machine falls on
//! both sides alike), each run the gate's usual n = 11 measurement in a
//! process of its own. Per round it takes the log of the ratio of the two
//! trimmed means; over the rounds, a Student's t confidence interval
//! (statrs) of the mean log ratio. A gate fails when the whole 95%
//! interval of the ratio head/base lies above the threshold (default
//! 1.3): the head is slower than the base by more than 30%, and the data
//! leave no reasonable doubt about it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::discover::{self, PerfTest, Workspace};
use crate::model::{Detail, MULTIPLIER_ENV, Outcome};
use crate::test_perf;

/// Default rounds (each one run of the base and one of the head).
pub const DEFAULT_ROUNDS: usize = 10;

/// Default threshold on the ratio head/base.
pub const DEFAULT_THRESHOLD: f64 = 1.3;

/// The usage text.
pub const USAGE: &str = "\
usage: cargo perfbudget ab [--against REV] [--rounds N] [--threshold X] [FILTER...]

Build the base revision (default: the merge base with origin/main or main,
else HEAD~1) and the working tree, run every walltime gate of both
interleaved (N rounds, default 10, each a base run and a head run in
alternating order), and fail a gate when the 95% confidence interval of the
ratio head/base (Student's t over the rounds' log ratios) lies wholly above
X (default 1.3). Writes <target dir>/perf/ab.json.
";

/// Parsed arguments.
#[derive(Debug, PartialEq)]
pub struct Args {
    /// `--against REV`.
    pub against: Option<String>,
    /// `--rounds N`.
    pub rounds: usize,
    /// `--threshold X`.
    pub threshold: f64,
    /// Filters on test ids.
    pub filters: Vec<String>,
    /// `--help`.
    pub help: bool,
}

/// Parses the arguments.
pub fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        against: None,
        rounds: DEFAULT_ROUNDS,
        threshold: DEFAULT_THRESHOLD,
        filters: Vec::new(),
        help: false,
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = |what: &str| {
            iter.next()
                .cloned()
                .ok_or_else(|| format!("`{arg}` needs {what}"))
        };
        match arg.as_str() {
            "--against" => parsed.against = Some(value("a revision")?),
            "--rounds" => {
                let v = value("a number")?;
                parsed.rounds = match v.parse::<usize>() {
                    Ok(n) if n >= 3 => n,
                    _ => return Err(format!("`--rounds {v}`: expected a whole number >= 3")),
                };
            }
            "--threshold" => {
                let v = value("a ratio")?;
                parsed.threshold = match v.parse::<f64>() {
                    Ok(x) if x.is_finite() && x >= 1.0 => x,
                    _ => {
                        return Err(format!(
                            "`--threshold {v}`: expected a ratio >= 1, e.g. 1.3"
                        ));
                    }
                };
            }
            "-h" | "--help" => parsed.help = true,
            flag if flag.starts_with('-') => {
                return Err(format!(
                    "unknown option `{flag}` (try `cargo perfbudget ab --help`)"
                ));
            }
            filter => parsed.filters.push(filter.to_owned()),
        }
    }
    Ok(parsed)
}

/// The comparison of one gate over the rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Base (A) trimmed means, ns, one per round.
    pub base_ns: Vec<u64>,
    /// Head (B) trimmed means, ns, one per round.
    pub head_ns: Vec<u64>,
    /// Geometric mean of the per-round ratios head/base.
    pub ratio: f64,
    /// The 95% confidence interval of that ratio.
    pub low: f64,
    /// Upper bound of the interval.
    pub high: f64,
    /// Whether the whole interval lies above the threshold.
    pub regressed: bool,
}

/// Compares paired samples: `base[i]` and `head[i]` were taken in the same
/// round. `None` with fewer than 3 pairs or a non-positive sample.
pub fn compare(base: &[u64], head: &[u64], threshold: f64) -> Option<Comparison> {
    let n = base.len().min(head.len());
    if n < 3 || base.iter().chain(head).any(|&v| v == 0) {
        return None;
    }
    let logs: Vec<f64> = (0..n)
        .map(|i| (head[i] as f64).ln() - (base[i] as f64).ln())
        .collect();
    let nf = n as f64;
    let mean = logs.iter().sum::<f64>() / nf;
    let var = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (nf - 1.0);
    let t = StudentsT::new(0.0, 1.0, nf - 1.0).ok()?.inverse_cdf(0.975);
    let half = t * (var / nf).sqrt();
    let (low, high) = ((mean - half).exp(), (mean + half).exp());
    Some(Comparison {
        base_ns: base[..n].to_vec(),
        head_ns: head[..n].to_vec(),
        ratio: mean.exp(),
        low,
        high,
        regressed: low > threshold,
    })
}

/// Walltime trimmed means by gate name, from one run's records.
fn walltimes(outcome: &Outcome) -> BTreeMap<String, u64> {
    outcome
        .records
        .iter()
        .filter_map(|r| match &r.detail {
            Detail::Walltime(w) => Some((r.gate.clone(), w.trimmed_mean_ns)),
            _ => None,
        })
        .collect()
}

/// Runs `base` and `head` interleaved for `rounds` rounds and compares
/// every walltime gate both report. `env` is every run's environment.
pub fn interleave(
    base: &PerfTest,
    head: &PerfTest,
    rounds: usize,
    threshold: f64,
    env: &[(&str, String)],
    scratch: &Path,
) -> Result<BTreeMap<String, Comparison>, String> {
    let mut a: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut b: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [(base, &mut a), (head, &mut b)]
        } else {
            [(head, &mut b), (base, &mut a)]
        };
        for (test, into) in order {
            let file = scratch.join("ab.jsonl");
            let _ = std::fs::remove_file(&file);
            let outcome =
                test_perf::run_one(test.clone(), &file, test_perf::DEFAULT_TIMEOUT, env, false)?;
            for (gate, ns) in walltimes(&outcome) {
                into.entry(gate).or_default().push(ns);
            }
        }
    }
    Ok(a.iter()
        .filter_map(|(gate, base_ns)| {
            let head_ns = b.get(gate)?;
            (base_ns.len() == rounds && head_ns.len() == rounds)
                .then(|| compare(base_ns, head_ns, threshold))?
                .map(|c| (gate.clone(), c))
        })
        .collect())
}

/// `git archive REV` of the workspace's directory into `dest`.
pub fn extract(ws: &Workspace, rev: &str, dest: &Path) -> Result<(), String> {
    test_perf::fresh_dir(dest)?;
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&ws.root)
            .output()
            .map_err(|e| format!("cannot run git: {e}"))
    };
    let prefix = git(&["rev-parse", "--show-prefix"])?;
    let prefix = String::from_utf8_lossy(&prefix.stdout).trim().to_owned();
    let tree = if prefix.is_empty() {
        rev.to_owned()
    } else {
        format!("{rev}:{prefix}")
    };
    let archive = Command::new("git")
        .args(["archive", "--format=tar", &tree])
        .current_dir(&ws.root)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git archive: {e}"))?;
    // -m: the files get the time of extraction, not of the commit, so a
    // build never takes an older artifact for theirs.
    let status = Command::new("tar")
        .args(["-x", "-m", "-C"])
        .arg(dest)
        .stdin(archive.stdout.ok_or("git archive gave no output")?)
        .status()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !status.success() {
        return Err(format!("extracting {tree} into {} failed", dest.display()));
    }
    Ok(())
}

/// The perf tests of the workspace at `dir`, built into `target`, their
/// executables copied into `keep` (a later build of another base into the
/// same `target` overwrites the originals).
///
/// `target` must not be the head's target directory: cargo names a
/// workspace's artifacts by paths relative to its root, so the base would
/// get the head's file names, and each build would take the other's
/// artifacts for its own.
pub fn tests_at(dir: &Path, target: &Path, keep: &Path) -> Result<Vec<PerfTest>, String> {
    let ws = discover::workspace_at(dir)?;
    let build = discover::Build {
        dir: Some(dir),
        target_dir: Some(target),
        packages: &[],
    };
    test_perf::fresh_dir(keep)?;
    let mut tests = Vec::new();
    for mut binary in discover::build_test_binaries_in(&ws, &build)? {
        let name = binary
            .executable
            .file_name()
            .ok_or_else(|| format!("{} has no file name", binary.executable.display()))?;
        let kept = keep.join(name);
        std::fs::copy(&binary.executable, &kept).map_err(|e| {
            format!(
                "cannot copy {} to {}: {e}",
                binary.executable.display(),
                kept.display()
            )
        })?;
        binary.executable = kept;
        tests.extend(discover::perf_tests_in(&binary)?);
    }
    Ok(tests)
}

/// Entry point (the working directory is inside the workspace).
pub fn run(args: &[String]) -> ExitCode {
    match try_run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ab: error: {e}");
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
    let Some((rev, why)) = crate::audit::choose_base(args.against.as_deref())? else {
        return Err("no base revision to compare with (a first commit, or a shallow clone)".into());
    };
    let dir = test_perf::perf_dir(&ws).join("ab");
    let base_dir = dir.join("base");
    eprintln!(
        "ab: base is {why}; extracting it into {}",
        base_dir.display()
    );
    extract(&ws, &rev, &base_dir)?;
    let keep = |t: &PerfTest| {
        let id = t.id();
        args.filters.is_empty() || args.filters.iter().any(|f| id.contains(f.as_str()))
    };
    eprintln!("ab: building the base's tests (release)...");
    let base: BTreeMap<String, PerfTest> =
        tests_at(&base_dir, &dir.join("target"), &dir.join("base-bin"))?
            .into_iter()
            .filter(keep)
            .map(|t| (t.id(), t))
            .collect();
    eprintln!("ab: building the head's tests (release)...");
    let (head, _, _) = test_perf::find_tests(&ws, &args.filters)?;
    let mut env = test_perf::gate_env(&ws);
    // The budget decides nothing here; the cap keeps a slow head from
    // being measured twice (measure_and_check re-measures over budget).
    env.push((MULTIPLIER_ENV, perfbudget::MAX_MULTIPLIER.to_string()));
    let scratch = dir.join("records");
    test_perf::fresh_dir(&scratch)?;
    let mut rows = Vec::new();
    for test in &head {
        let Some(base_test) = base.get(&test.id()) else {
            eprintln!("ab: {}: new since the base, nothing to compare", test.id());
            continue;
        };
        eprint!("ab: {} x{} rounds ... ", test.id(), args.rounds);
        let compared = interleave(base_test, test, args.rounds, args.threshold, &env, &scratch)?;
        eprintln!("{} walltime gate(s)", compared.len());
        rows.extend(compared);
    }
    if rows.is_empty() {
        return Err("no walltime gate exists in both the base and the head".into());
    }
    println!("\n| gate | base median | head median | head/base (95% CI) | verdict |");
    println!("|---|---:|---:|---|---|");
    let median = |v: &[u64]| {
        let mut s = v.to_vec();
        s.sort_unstable();
        s[s.len() / 2] as f64 / 1e6
    };
    for (gate, c) in &rows {
        println!(
            "| `{gate}` | {:.3} ms | {:.3} ms | {:.2} ({:.2}–{:.2}) | {} |",
            median(&c.base_ns),
            median(&c.head_ns),
            c.ratio,
            c.low,
            c.high,
            if c.regressed { "SLOWER" } else { "ok" }
        );
    }
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|(g, c)| {
            serde_json::json!({"gate": g, "base_ns": c.base_ns, "head_ns": c.head_ns,
                "ratio": c.ratio, "low": c.low, "high": c.high, "regressed": c.regressed})
        })
        .collect();
    let report = serde_json::json!({"base": rev, "threshold": args.threshold,
        "rounds": args.rounds, "gates": json});
    let path = test_perf::perf_dir(&ws).join("ab.json");
    std::fs::write(&path, report.to_string() + "\n")
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let slower: Vec<&String> = rows
        .iter()
        .filter(|(_, c)| c.regressed)
        .map(|(g, _)| g)
        .collect();
    if slower.is_empty() {
        println!(
            "ab: no gate is slower than the base by more than {}x",
            args.threshold
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "ab: {} gate(s) slower than the base beyond {}x with 95% confidence: {slower:?}",
            slower.len(),
            args.threshold
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Where [`extract`] puts a base, for callers that build their own copy.
pub fn base_dir(ws: &Workspace) -> PathBuf {
    test_perf::perf_dir(ws).join("ab").join("base")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_change_is_not_a_regression_and_2x_is() {
        let base = [100, 104, 98, 101, 99, 103, 97, 100, 102, 100];
        let same = [101, 99, 100, 104, 98, 100, 102, 97, 100, 103];
        let c = compare(&base, &same, 1.3).expect("compared");
        assert!(!c.regressed && c.low < 1.0 && c.high > 1.0, "{c:?}");
        let double: Vec<u64> = base.iter().map(|v| v * 2 + v % 7).collect();
        let c = compare(&base, &double, 1.3).expect("compared");
        assert!(c.regressed && c.low > 1.9 && c.high < 2.2, "{c:?}");
    }

    #[test]
    fn noise_widens_the_interval_so_one_wild_round_does_not_fail() {
        // One round in ten ran 5x slower on the head side: the mean log
        // ratio moves, but the interval is wide and reaches below 1.3.
        let base = [100u64; 10];
        let mut head = [100u64; 10];
        head[3] = 500;
        let c = compare(&base, &head, 1.3).expect("compared");
        assert!(!c.regressed, "{c:?}");
        assert!(c.low < 1.0, "{c:?}");
    }

    #[test]
    fn too_few_rounds_or_a_zero_sample_compare_nothing() {
        assert_eq!(compare(&[1, 2], &[1, 2], 1.3), None);
        assert_eq!(compare(&[0, 1, 1], &[1, 1, 1], 1.3), None);
    }

    #[test]
    fn arguments() {
        let a = parse_args(&[
            "--rounds".into(),
            "20".into(),
            "--threshold".into(),
            "1.5".into(),
            "drain".into(),
        ])
        .expect("ok");
        assert_eq!((a.rounds, a.threshold), (20, 1.5));
        assert_eq!(a.filters, ["drain"]);
        for bad in [
            &["--rounds", "2"][..],
            &["--threshold", "0.9"],
            &["--threshold"],
            &["--x"],
        ] {
            let bad: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(parse_args(&bad).is_err(), "{bad:?}");
        }
    }
}
