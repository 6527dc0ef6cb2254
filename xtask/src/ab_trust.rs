//! `cargo xtask perf-trust-ab`: the A/B tier's trust figures. The outbox's
//! drain gate (`perf_outbox_drain_25`) of an unchanged scratch copy is
//! compared with itself (false alarms: quiet, under the disk load, under
//! `--load CMD`, e.g. a build) and with the drain-2x-wait and drain-2x-cpu
//! mutants of `mutants.rs` (detection), R times each, through the runner's
//! A/B comparison (`cargo_perfbudget::ab::interleave`); Wilson intervals.

use std::process::ExitCode;

use cargo_perfbudget::ab;
use cargo_perfbudget::budgets::Budgets;
use cargo_perfbudget::discover::{self, PerfTest};
use cargo_perfbudget::model::MULTIPLIER_ENV;
use cargo_perfbudget::test_perf;
use cargo_perfbudget::trust::{self, Load};

use crate::mutants::{MUTANTS, Params, Scratch};

const GATE: &str = "perf_outbox_drain_25";

/// The usage text.
pub const USAGE: &str = "\
usage: cargo xtask perf-trust-ab [--runs R] [--rounds N] [--load CMD]

Compare the outbox's drain gate of an unchanged copy with itself (false
alarms: quiet, disk load, CMD load) and with the 2x-wait and 2x-CPU drain
mutants (detection), R times each (default 20), N rounds per comparison
(default 10), through `cargo perfbudget ab`'s test; print a Markdown table.
";

/// Entry point.
pub fn run(args: &[String]) -> ExitCode {
    match try_run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perf-trust-ab: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn number(value: Option<&String>, flag: &str) -> Result<usize, String> {
    value
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 3)
        .ok_or_else(|| format!("`{flag}` needs a whole number >= 3"))
}

/// The drain gate's test in the scratch copy, built as it is now; its
/// executable copied to `keep` when given (a later build overwrites it).
fn build_drain(scratch: &Scratch, target: &std::path::Path) -> Result<PerfTest, String> {
    let ws = discover::workspace_at(&scratch.root)?;
    let build = discover::Build {
        dir: Some(&scratch.root),
        target_dir: Some(target),
        packages: &["outbox"],
    };
    for binary in discover::build_test_binaries_in(&ws, &build)? {
        if let Some(t) = discover::perf_tests_in(&binary)?
            .into_iter()
            .find(|t| t.name.ends_with(GATE))
        {
            return Ok(t);
        }
    }
    Err(format!("the copy has no `{GATE}`"))
}

fn try_run(args: &[String]) -> Result<(), String> {
    let (mut runs, mut rounds, mut load_cmd) = (20, ab::DEFAULT_ROUNDS, None);
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--runs" => runs = number(iter.next(), "--runs")?,
            "--rounds" => rounds = number(iter.next(), "--rounds")?,
            "--load" => load_cmd = Some(iter.next().ok_or("`--load` needs a command")?.clone()),
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    let ws = discover::workspace()?;
    let perf = test_perf::perf_dir(&ws);
    let budgets = Budgets::load(&ws.root.join(&ws.settings.budgets))?;
    let base = budgets
        .gates
        .get(GATE)
        .and_then(|d| d.base)
        .ok_or_else(|| format!("{} has no base for `{GATE}`", ws.settings.budgets))?;
    let (tests, _, binaries) = test_perf::find_tests(&ws, &[GATE.to_owned()])?;
    drop(tests);
    let synthetic = trust::find_synthetic(&binaries, "trust_synthetic_gate")?;
    let ns = trust::calibrate_synthetic(&synthetic, "warm", base)?;
    let params = Params {
        spin_iterations: (base as f64 / ns).round().max(1.0) as u64,
        wait_ns: base,
    };
    let mut scratch = Scratch::new(&ws.root, &perf.join("ab-trust").join("src"))?;
    // A target dir of its own: cargo names a workspace's artifacts by
    // paths relative to its root, so the copy built into the workspace's
    // target dir would overwrite (and pass for) the workspace's own.
    let target = perf.join("ab-trust").join("target");
    let records = perf.join("ab-trust").join("records");
    test_perf::fresh_dir(&records)?;
    let mut env = test_perf::gate_env(&ws);
    env.push((MULTIPLIER_ENV, perfbudget::MAX_MULTIPLIER.to_string()));
    // The control, built first and its executable kept aside.
    scratch.apply(&MUTANTS[0], &params)?;
    let mut control = build_drain(&scratch, &target)?;
    let kept = perf.join("ab-trust").join("control-exe");
    std::fs::copy(&control.binary.executable, &kept)
        .map_err(|e| format!("cannot keep the control's executable: {e}"))?;
    control.binary.executable = kept;
    let mut rows = Vec::new();
    let mut cell = |what: String, head: &PerfTest, load: Load| -> Result<(), String> {
        let mut slower = 0;
        let mut ratios = Vec::new();
        for _ in 0..runs {
            let c = ab::interleave(
                &control,
                head,
                rounds,
                ab::DEFAULT_THRESHOLD,
                &env,
                &records,
            )?;
            let c = c.get(GATE).ok_or("the drain gate reported no walltime")?;
            slower += usize::from(c.regressed);
            ratios.push(c.ratio);
        }
        load.stop();
        ratios.sort_by(f64::total_cmp);
        let rate = trust::wilson(slower, runs);
        eprintln!("perf-trust-ab: {what}: {}", rate.show());
        rows.push(format!(
            "| {what} | {} | {:.2}–{:.2} |",
            rate.show(),
            ratios[0],
            ratios[ratios.len() - 1]
        ));
        Ok(())
    };
    let same = control.clone();
    cell("no change, quiet".into(), &same, Load::none())?;
    cell(
        "no change, disk load".into(),
        &same,
        Load::disk(&perf.join("trust-load"))?,
    )?;
    if let Some(cmd) = &load_cmd {
        cell(
            format!("no change, under `{cmd}`"),
            &same,
            Load::command(cmd),
        )?;
    }
    for name in ["drain-2x-wait", "drain-2x-cpu"] {
        let mutant = MUTANTS.iter().find(|m| m.name == name).ok_or(name)?;
        scratch.apply(mutant, &params)?;
        let head = build_drain(&scratch, &target)?;
        cell(format!("{name}, quiet"), &head, Load::none())?;
        if let Some(cmd) = &load_cmd {
            cell(format!("{name}, under `{cmd}`"), &head, Load::command(cmd))?;
        }
    }
    println!(
        "\n### A/B tier on `{GATE}` ({runs} comparisons per row, {rounds} rounds each, \
         threshold {})\n\n| head against the unchanged base | comparisons failed | \
         head/base ratios seen |\n|---|---|---|",
        ab::DEFAULT_THRESHOLD
    );
    for row in rows {
        println!("{row}");
    }
    Ok(())
}
