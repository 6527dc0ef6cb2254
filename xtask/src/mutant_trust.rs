//! The outbox's section of `cargo xtask perf-trust`: every mutant of
//! `mutants.rs` applied to a scratch copy of the workspace, built, and
//! every outbox perf gate run R times quiet and loaded (the cpu and disk
//! loads at once): how often the suite catches a real regression. The
//! rest of perf-trust is the runner's (`cargo_perfbudget::trust`).

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use cargo_perfbudget::discover;
use cargo_perfbudget::model::{Detail, GateRecord, Status};
use cargo_perfbudget::test_perf;
use cargo_perfbudget::trust::{self, Context, Load, Rate};
use perfbudget::Declared;
use serde_json::{Value, json};

/// `cargo xtask perf-trust`: the runner's trust with the mutant section.
pub fn run(args: &[String]) -> ExitCode {
    let section = |cx: &Context| -> Result<(String, Value), String> {
        let rows = run_mutants(cx)?;
        let json = rows.iter().map(MutantRow::json).collect::<Vec<_>>();
        Ok((render_mutants(&rows, cx.runs), Value::Array(json)))
    };
    trust::run_with(args, Some(&section))
}

/// The outbox's gate named `gate`, walltime, from its declared budget.
fn walltime_base(shapes: &BTreeMap<String, Declared>, gate: &str) -> Result<u64, String> {
    match shapes.get(gate) {
        Some(d) if matches!(d.class.as_str(), "cold" | "warm") => d
            .base
            .ok_or_else(|| format!("the gate `{gate}` declares no base")),
        _ => Err(format!(
            "the walltime gate `{gate}` the mutants are sized by did not run (filtered out?)"
        )),
    }
}

/// One mutant under one condition: how often the suite caught it, and
/// each gate's failures and readings.
#[derive(Debug, Clone, PartialEq)]
pub struct MutantRow {
    /// The mutant's name.
    pub mutant: String,
    /// What it does.
    pub what: String,
    /// `quiet` or `loaded`.
    pub condition: String,
    /// Runs in which at least one gate failed.
    pub caught: Rate,
    /// Per gate: its test id, its failures, and what it read (a summary).
    pub gates: Vec<(String, Rate, String)>,
}

impl MutantRow {
    fn json(&self) -> Value {
        json!({
            "mutant": self.mutant,
            "what": self.what,
            "condition": self.condition,
            "caught": self.caught.json(),
            "gates": self.gates.iter().map(|(g, r, seen)| json!({"test": g, "failed": r.json(), "read": seen})).collect::<Vec<_>>(),
        })
    }
}

/// What a gate read over the runs, in a few words: the median trimmed mean
/// of a walltime gate, the median instruction count against its base, the
/// counts that differed from the expectation.
#[derive(Default)]
struct Readings {
    walltime_ns: Vec<u64>,
    instructions: Vec<(u64, u64)>,
    counts: BTreeSet<String>,
}

impl Readings {
    fn add(&mut self, records: &[GateRecord]) {
        for r in records {
            match &r.detail {
                Detail::Walltime(w) => self.walltime_ns.push(w.trimmed_mean_ns),
                Detail::Instructions(i) => self.instructions.push((i.observed, i.base)),
                Detail::Counts(counts) => {
                    for c in counts.iter().filter(|c| c.observed != c.expected) {
                        self.counts
                            .insert(format!("{} {} → {}", c.what, c.expected, c.observed));
                    }
                }
                Detail::Skipped(_) => {}
            }
        }
    }

    fn summary(mut self) -> String {
        let mut parts = Vec::new();
        if !self.walltime_ns.is_empty() {
            self.walltime_ns.sort_unstable();
            let m = self.walltime_ns[self.walltime_ns.len() / 2];
            parts.push(format!("median {:.3} ms", m as f64 / 1e6));
        }
        if !self.instructions.is_empty() {
            self.instructions.sort_unstable();
            let (observed, base) = self.instructions[self.instructions.len() / 2];
            let delta = (observed as f64 / base as f64 - 1.0) * 100.0;
            parts.push(format!("median {observed} instr ({delta:+.1}% of base)"));
        }
        if self.counts.is_empty() {
            if parts.is_empty() {
                parts.push("counts as expected".into());
            }
        } else {
            parts.push(self.counts.into_iter().collect::<Vec<_>>().join(", "));
        }
        parts.join("; ")
    }
}

/// The mutant part: every mutant of `mutants.rs`, applied to a scratch
/// copy of the workspace, built, and every outbox perf gate run `runs`
/// times quiet and loaded (the cpu and disk loads at once).
fn run_mutants(cx: &Context) -> Result<Vec<MutantRow>, String> {
    let (runs, perf_dir, records, env) = (cx.runs, cx.perf_dir, cx.records, cx.env);
    let synthetic = &trust::find_synthetic(cx.binaries, "trust_synthetic_gate")?;
    let drain_base = walltime_base(cx.shapes, "perf_outbox_drain_25")?;
    let ns = trust::calibrate_synthetic(synthetic, "warm", drain_base)?;
    let params = crate::mutants::Params {
        spin_iterations: (drain_base as f64 / ns).round().max(1.0) as u64,
        wait_ns: drain_base,
    };
    eprintln!(
        "perf-trust: mutants sized by the drain's base {:.3} ms: {} loop iterations, \
         a {:.3} ms wait",
        drain_base as f64 / 1e6,
        params.spin_iterations,
        params.wait_ns as f64 / 1e6
    );
    let root =
        std::env::current_dir().map_err(|e| format!("cannot read the working directory: {e}"))?;
    let mut scratch = crate::mutants::Scratch::new(&root, &perf_dir.join("mutants").join("src"))?;
    let target = perf_dir.join("mutants").join("target");
    let load_dir = perf_dir.join("trust-load");
    let mut rows = Vec::new();
    for mutant in &crate::mutants::MUTANTS {
        scratch.apply(mutant, &params)?;
        eprintln!(
            "perf-trust: mutant `{}`: building the outbox's tests",
            mutant.name
        );
        let ws = discover::workspace_at(&scratch.root)?;
        let build = discover::Build {
            dir: Some(&scratch.root),
            target_dir: Some(&target),
            packages: &["outbox"],
        };
        let mut tests = Vec::new();
        for binary in discover::build_test_binaries_in(&ws, &build)? {
            tests.extend(discover::perf_tests_in(&binary)?);
        }
        if tests.is_empty() {
            return Err(format!(
                "mutant `{}`: the copy has no outbox perf gate",
                mutant.name
            ));
        }
        for condition in ["quiet", "loaded"] {
            let loads = match condition {
                "quiet" => vec![Load::none()],
                _ => vec![Load::cpu(), Load::disk(&load_dir)?],
            };
            let mut caught = 0;
            let mut failed = vec![0; tests.len()];
            let mut readings: Vec<Readings> = tests.iter().map(|_| Readings::default()).collect();
            for run in 0..runs {
                let mut any = false;
                for (i, test) in tests.iter().enumerate() {
                    let file = records.join(format!("mutant-{}-{i}-{run}.jsonl", mutant.name));
                    let _ = std::fs::remove_file(&file);
                    let outcome = test_perf::run_one(
                        test.clone(),
                        &file,
                        test_perf::DEFAULT_TIMEOUT,
                        env,
                        false,
                    )?;
                    if outcome.status == Status::Skipped {
                        return Err(format!(
                            "{} is skipped here (its tool is missing)",
                            test.id()
                        ));
                    }
                    if outcome.status.is_failure() {
                        failed[i] += 1;
                        any = true;
                    }
                    readings[i].add(&outcome.records);
                }
                caught += usize::from(any);
            }
            for load in loads {
                load.stop();
            }
            let row = MutantRow {
                mutant: mutant.name.to_owned(),
                what: mutant.what.to_owned(),
                condition: condition.to_owned(),
                caught: trust::wilson(caught, runs),
                gates: tests
                    .iter()
                    .zip(failed)
                    .zip(readings)
                    .map(|((t, f), r)| (t.id(), trust::wilson(f, runs), r.summary()))
                    .collect(),
            };
            eprintln!(
                "perf-trust: mutant `{}`, {condition}: caught {}",
                mutant.name,
                row.caught.show()
            );
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The mutant tables, in Markdown: one summary row per mutant and
/// condition, then every gate's failures and readings.
pub fn render_mutants(rows: &[MutantRow], runs: usize) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\n### Real regressions injected into the outbox ({runs} runs per cell)\n\n\
         | regression | condition | runs in which a gate failed |\n|---|---|---|\n"
    );
    for r in rows {
        out.push_str(&format!(
            "| `{}`: {} | {} | {} |\n",
            r.mutant,
            r.what,
            r.condition,
            r.caught.show()
        ));
    }
    out.push_str("\n| regression | condition | gate | failed | read |\n|---|---|---|---|---|\n");
    for r in rows {
        for (gate, rate, read) in &r.gates {
            out.push_str(&format!(
                "| `{}` | {} | `{gate}` | {} | {read} |\n",
                r.mutant,
                r.condition,
                rate.show()
            ));
        }
    }
    out
}
