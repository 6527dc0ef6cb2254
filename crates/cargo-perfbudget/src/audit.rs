//! `cargo perfbudget audit`: no budget loosens without a log entry.
//!
//! Compares the budgets file (see [`crate::budgets`]) of the working tree
//! with the same file at a base revision (see [`choose_base`]) and fails
//! when, without a matching entry in the policy log (`policy` in
//! `[workspace.metadata.perfbudget]`):
//!
//! - a walltime or instruction gate's `base` was raised by more than 25%;
//! - a gate's class changed (cold, warm, count, instructions), or a
//!   walltime gate's factor rose;
//! - an instruction gate's tolerance rose;
//! - a multiplier set in code appeared or rose (`Gate::with_multiplier`);
//! - a count gate's expectations changed;
//! - a gate disappeared.
//!
//! A *matching entry* is a `### ` heading in the log that names the gate and
//! that the base revision's log did not have: an old entry never excuses a
//! new change. Renaming a gate counts as removing one and adding another.
//!
//! The budgets come from the gates' own records (what their code declared
//! when they ran), never from reading Rust source; `cargo perfbudget test
//! --locked` in CI keeps the committed file equal to what the code declares.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use perfbudget::Declared;

use crate::budgets::{Budgets, describe};
use crate::discover;

/// A raise of a base by more than this fraction needs an entry.
pub const MAX_SILENT_RAISE: f64 = 0.25;

/// A rule broken without a log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The gate.
    pub gate: String,
    /// What changed, in words.
    pub what: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}", self.gate, self.what)
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The `### ` headings of the log section of the policy file.
pub fn log_entries(policy: &str) -> Vec<String> {
    policy
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(str::to_owned)
        .collect()
}

/// Whether `heading` names `gate` as a whole word.
fn names(heading: &str, gate: &str) -> bool {
    heading.match_indices(gate).any(|(at, _)| {
        let before = heading[..at].chars().next_back();
        let after = heading[at + gate.len()..].chars().next();
        !before.is_some_and(is_ident_char) && !after.is_some_and(is_ident_char)
    })
}

/// What loosened between `before` and `after`, in words (empty: nothing).
pub fn loosened(before: &Declared, after: &Declared) -> Vec<String> {
    let mut what = Vec::new();
    if before.class != after.class {
        what.push(format!(
            "class changed from {} to {}",
            before.class, after.class
        ));
        return what;
    }
    if let (Some(a), Some(b)) = (before.base, after.base)
        && b as f64 > a as f64 * (1.0 + MAX_SILENT_RAISE)
    {
        let unit = |v: u64| match after.class.as_str() {
            "instructions" => format!("{v} instructions"),
            _ => format!("{:.3} ms", v as f64 / 1e6),
        };
        what.push(format!(
            "base raised from {} to {} (+{:.0}%, more than {:.0}%)",
            unit(a),
            unit(b),
            (b as f64 / a as f64 - 1.0) * 100.0,
            MAX_SILENT_RAISE * 100.0
        ));
    }
    if let (Some(a), Some(b)) = (before.factor, after.factor)
        && b > a
    {
        what.push(format!("factor raised from {a} to {b}"));
    }
    if after.tolerance.unwrap_or(0.0) > before.tolerance.unwrap_or(0.0) {
        what.push(format!(
            "tolerance raised from {:?} to {:?}",
            before.tolerance, after.tolerance
        ));
    }
    // No multiplier in code means the environment's (CI sets 2.0): one in
    // code that appears or rises loosens the gate in every environment.
    match (before.multiplier_in_code, after.multiplier_in_code) {
        (None, Some(b)) => what.push(format!("a multiplier of {b} is set in code")),
        (Some(a), Some(b)) if b > a => {
            what.push(format!("the multiplier set in code rose from {a} to {b}"));
        }
        _ => {}
    }
    if before.expected != after.expected {
        let show = |d: &Declared| {
            let e: Vec<String> = d
                .expected
                .iter()
                .map(|e| format!("{} {}", e.expected, e.what))
                .collect();
            format!("[{}]", e.join(", "))
        };
        what.push(format!(
            "count expectations changed: {} -> {}",
            show(before),
            show(after)
        ));
    }
    what
}

/// Checks `new` against `old`; `new_entries` are the log headings added
/// since the base revision.
pub fn audit(old: &Budgets, new: &Budgets, new_entries: &[String]) -> Vec<Violation> {
    let excused = |gate: &str| new_entries.iter().any(|h| names(h, gate));
    let mut violations = Vec::new();
    for (name, before) in &old.gates {
        if excused(name) {
            continue;
        }
        let Some(after) = new.gates.get(name) else {
            violations.push(Violation {
                gate: name.clone(),
                what: format!("disappeared (was {})", describe(before)),
            });
            continue;
        };
        for what in loosened(before, after) {
            violations.push(Violation {
                gate: name.clone(),
                what,
            });
        }
    }
    violations
}

/// The workspace root the git commands run in.
fn root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        discover::workspace()
            .map(|w| w.root)
            .unwrap_or_else(|_| PathBuf::from("."))
    })
    .clone()
}

fn git(args: &[&str]) -> Result<String, String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(root())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`git {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn rev_exists(rev: &str) -> bool {
    git(&[
        "rev-parse",
        "--verify",
        "--quiet",
        &format!("{rev}^{{commit}}"),
    ])
    .is_ok()
}

/// The revision to compare with, and why it was chosen:
///
/// 1. `--against REV` when given;
/// 2. the merge base of `HEAD` and `origin/main` when that ref exists and
///    the merge base is not `HEAD` itself (a branch: every change since it
///    left main);
/// 3. the same with a local `main`;
/// 4. otherwise `HEAD~1` (CI on a clean clone of main, or on main itself:
///    the last commit's changes);
/// 5. none when `HEAD` has no parent (a first commit, or a shallow clone
///    with depth 1): the audit says so and has nothing to check.
pub fn choose_base(against: Option<&str>) -> Result<Option<(String, String)>, String> {
    if let Some(rev) = against {
        if !rev_exists(rev) {
            return Err(format!("`--against {rev}`: no such revision"));
        }
        return Ok(Some((rev.to_owned(), format!("{rev} (--against)"))));
    }
    let head = git(&["rev-parse", "HEAD"])?.trim().to_owned();
    for main in ["origin/main", "main"] {
        if rev_exists(main)
            && let Ok(base) = git(&["merge-base", "HEAD", main])
        {
            let base = base.trim().to_owned();
            if base != head {
                return Ok(Some((
                    base.clone(),
                    format!("merge base of HEAD and {main}"),
                )));
            }
        }
    }
    if rev_exists("HEAD~1") {
        return Ok(Some((
            "HEAD~1".into(),
            "HEAD~1 (no branch point found: the last commit)".into(),
        )));
    }
    Ok(None)
}

/// The usage text of `cargo perfbudget audit`.
pub const USAGE: &str = "\
usage: cargo perfbudget audit [--against REV]

Compare every gate's budget in the budgets file (budgets in
[workspace.metadata.perfbudget], default perf-budgets.json) with the same file
at a base revision, and fail when a base was raised by more than 25%, a class
or factor changed, a tolerance rose, a multiplier was set in code, a count
gate's expectations changed, or a gate disappeared, unless the policy log
(policy in [workspace.metadata.perfbudget], default PERF_BUDGETS.md) gained a
`### ` entry naming the gate since then.

The base revision: REV if given; else the merge base with origin/main (or
main) when HEAD is on a branch; else HEAD~1. With no parent commit (a
shallow clone), nothing can be compared: it says so and passes.
";

/// Entry point (the working directory is inside the workspace).
pub fn run(args: &[String]) -> std::process::ExitCode {
    use std::process::ExitCode;
    let mut against = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--against" => match iter.next() {
                Some(rev) => against = Some(rev.clone()),
                None => {
                    eprintln!("audit: error: `--against` needs a revision");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("audit: error: unknown argument `{other}`\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    match try_run(against.as_deref()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("audit: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn try_run(against: Option<&str>) -> Result<bool, String> {
    let ws = discover::workspace()?;
    let (policy, budgets_file) = (&ws.settings.policy, &ws.settings.budgets);
    let Some((rev, why)) = choose_base(against)? else {
        println!(
            "audit: HEAD has no parent commit and no main branch to compare with (a first \
             commit, or a shallow clone: fetch with depth 2 or more); nothing checked"
        );
        return Ok(true);
    };
    let new = Budgets::load(&ws.root.join(budgets_file))?;
    let old = match git(&["show", &format!("{rev}:./{budgets_file}")]) {
        Ok(text) => Budgets::parse(&text, &format!("{budgets_file} at {rev}"))?,
        Err(_) => Budgets::default(),
    };
    let old_log = git(&["show", &format!("{rev}:./{policy}")]).unwrap_or_default();
    let new_log = match std::fs::read_to_string(ws.root.join(policy)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {policy}: {e}")),
    };
    let before = log_entries(&old_log);
    let added: Vec<String> = log_entries(&new_log)
        .into_iter()
        .filter(|h| !before.contains(h))
        .collect();
    let violations = audit(&old, &new, &added);
    println!(
        "audit: {} gate(s) in {budgets_file}, {} at {why}",
        new.gates.len(),
        old.gates.len()
    );
    if violations.is_empty() {
        println!("audit: ok, no gate loosened without an entry in {policy}");
        return Ok(true);
    }
    eprintln!(
        "audit: {} change(s) need an entry in {policy} (a `### ` heading naming the gate):",
        violations.len()
    );
    for v in &violations {
        eprintln!("  {v}");
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use perfbudget::Expected;

    fn walltime(base: u64) -> Declared {
        Declared {
            class: "warm".into(),
            base: Some(base),
            factor: Some(3),
            tolerance: None,
            multiplier_in_code: None,
            expected: Vec::new(),
        }
    }

    fn budgets(gates: &[(&str, Declared)]) -> Budgets {
        Budgets {
            schema: crate::budgets::BUDGETS_SCHEMA,
            gates: gates
                .iter()
                .map(|(n, d)| ((*n).to_owned(), d.clone()))
                .collect(),
        }
    }

    fn whats(old: &Budgets, new: &Budgets) -> Vec<String> {
        audit(old, new, &[])
            .into_iter()
            .map(|v| v.to_string())
            .collect()
    }

    #[test]
    fn unchanged_budgets_small_raises_and_new_gates_pass() {
        let old = budgets(&[("perf_a", walltime(1_000_000))]);
        assert!(whats(&old, &old).is_empty());
        let raised = budgets(&[("perf_a", walltime(1_250_000)), ("perf_new", walltime(9))]);
        assert!(whats(&old, &raised).is_empty());
        // Tightening is never a violation.
        assert!(whats(&old, &budgets(&[("perf_a", walltime(10))])).is_empty());
    }

    #[test]
    fn each_loosening_is_named() {
        let old = budgets(&[("perf_a", walltime(1_000_000))]);
        let w = whats(&old, &budgets(&[("perf_a", walltime(1_250_001))]));
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("base raised from 1.000 ms to 1.250 ms"),
            "{w:?}"
        );
        let mut cold = walltime(1_000_000);
        cold.class = "cold".into();
        assert!(whats(&old, &budgets(&[("perf_a", cold)]))[0].contains("class changed"));
        assert!(whats(&old, &budgets(&[]))[0].contains("disappeared (was warm, base 1.000 ms"));
        let mut counts = walltime(0);
        counts.class = "count".into();
        counts.base = None;
        counts.expected = vec![Expected {
            what: "fsyncs".into(),
            expected: 2,
        }];
        let old_counts = budgets(&[("perf_c", counts.clone())]);
        counts.expected[0].expected = 3;
        let w = whats(&old_counts, &budgets(&[("perf_c", counts)]));
        assert!(w[0].contains("count expectations changed"), "{w:?}");
        let instr = |t: f64| Declared {
            class: "instructions".into(),
            base: Some(1000),
            factor: None,
            tolerance: Some(t),
            multiplier_in_code: None,
            expected: Vec::new(),
        };
        let w = whats(
            &budgets(&[("perf_i", instr(0.02))]),
            &budgets(&[("perf_i", instr(0.5))]),
        );
        assert!(w[0].contains("tolerance raised"), "{w:?}");
    }

    /// Defect 3 of issue 23: `.with_multiplier(50.0)` in a gate's code
    /// passed the audit as "no gate loosened". Through a real record: the
    /// gate's declared budget carries it, and the audit names it.
    #[test]
    fn a_multiplier_set_in_code_is_a_loosening() {
        use perfbudget::{Class, Gate, Measurement};
        use std::time::Duration;
        let m = Measurement::from_samples([Duration::from_millis(1); 11]);
        let declared = |gate: Gate| gate.evaluate(&m).record().declared.clone();
        let base = Duration::from_micros(600);
        let plain = declared(Gate::new("perf_d", Class::Warm, base));
        let loose = declared(Gate::new("perf_d", Class::Warm, base).with_multiplier(50.0));
        let w = whats(
            &budgets(&[("perf_d", plain)]),
            &budgets(&[("perf_d", loose)]),
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("a multiplier of 10 is set in code"), "{w:?}");
    }

    #[test]
    fn a_new_log_entry_naming_the_gate_excuses_the_change() {
        let old = budgets(&[("perf_a", walltime(1_000_000))]);
        let new = budgets(&[("perf_a", walltime(9_000_000))]);
        assert!(audit(&old, &new, &["2026-12-07 perf_a: grew".into()]).is_empty());
        // A heading naming another gate, or a longer name, does not.
        assert_eq!(audit(&old, &new, &["perf_ab raised".into()]).len(), 1);
    }

    #[test]
    fn log_entries_are_the_level_3_headings() {
        let log = "# Policy\n## Log\n### one perf_a\ntext\n#### not\n### two\n";
        assert_eq!(log_entries(log), ["one perf_a", "two"]);
    }
}
