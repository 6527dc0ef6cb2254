//! `cargo perfbudget trust`: how far the gates can be trusted, measured.
//!
//! A gate is worth its false-alarm rate and its detection power:
//!
//! - **false alarms**: every perf gate (matching the filters) runs `R`
//!   times at multiplier 1.0 on unchanged code, quiet (no load started by
//!   perf-trust; the machine may have other users) and under loads that
//!   perf-trust starts and stops itself: `cpu` (one busy-spinning thread
//!   per core), `disk` (a thread writing 64 MiB files with fsync under
//!   `<target>/perf/trust-load/`, the project's file system), and `cmd`
//!   (`--load CMD`, run with `sh -c` and restarted whenever it exits, e.g.
//!   a concurrent `cargo build`);
//! - **detection power**: for each walltime gate, a synthetic gate of the
//!   same class and base (`perfbudget/tests/it/trust_synthetic.rs`) whose
//!   timed work is a calibrated CPU loop costing `f × base`, for
//!   f ∈ {1.25, 1.5, 2, 3, 5} (and f = 1 as a control), runs `R` times
//!   through the real measurement and gate code, quiet and under the `cpu`
//!   load; and for each instruction-count gate, a synthetic
//!   `InstructionGate` whose measured loop is f times longer than the one
//!   its base was counted on (through the real callgrind measurement).
//!
//! Each rate comes with a 95% Wilson score interval. The table is printed
//! and written, with every count, to `<target>/perf/trust.json`.
//!
//! A gate's shape (class and base) comes from its own record (a first run
//! of each test), never from its source. The synthetic gates live in
//! perfbudget's own tests, so detection power is measured in perfbudget's
//! workspace; elsewhere use `--no-detect`. A workspace can add its own
//! sections (this repository's real regressions injected into the outbox)
//! with [`run_with`].

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use statrs::distribution::{ContinuousCDF, Normal};

use perfbudget::Declared;

use crate::discover::{self, PerfTest};
use crate::model::{Detail, MULTIPLIER_ENV, Status};
use crate::test_perf;

/// The regression factors detection power is measured at.
pub const FACTORS: [f64; 5] = [1.25, 1.5, 2.0, 3.0, 5.0];

/// Factor 1: the synthetic gate with no regression, a control row (its
/// "detections" are the synthetic gate's own false alarms).
pub const CONTROL: f64 = 1.0;

/// The usage text.
pub const USAGE: &str = "\
usage: cargo perfbudget trust [--runs R] [--load CMD] [--no-false-alarms]
                              [--no-detect] [--no-extra] [FILTER...]

Measure every perf gate's false-alarm rate over R runs (default 20) at
multiplier 1.0, quiet and under loads it starts and stops itself (cpu: a
busy thread per core; disk: a writer of 64 MiB files with fsync; cmd: CMD
run with `sh -c`, restarted when it exits), and each walltime gate's
detection power against synthetic regressions of factor 1.25, 1.5, 2, 3
and 5 (quiet and under the cpu load; needs perfbudget's synthetic gates,
in perfbudget's own workspace). A workspace's own tooling may add sections
through the library (e.g. real regressions injected into its code). Prints
tables with 95% Wilson intervals and writes
<target dir>/perf/trust.json.

  --runs R            runs per gate and condition (default 20)
  --load CMD          also measure under CMD, e.g. --load 'cargo build --release'
  --no-false-alarms   skip the false-alarm runs
  --no-detect         skip the synthetic detection-power runs
  --no-extra          skip the sections the workspace's runner adds
  FILTER              only gates whose test id contains a FILTER
";

/// Parsed arguments.
#[derive(Debug, PartialEq)]
pub struct Args {
    /// Runs per gate and condition.
    pub runs: usize,
    /// `--load CMD`.
    pub load: Option<String>,
    /// `--no-false-alarms`.
    pub no_false_alarms: bool,
    /// `--no-detect`.
    pub no_detect: bool,
    /// `--no-extra` (xtask also accepts `--no-mutants`).
    pub no_extra: bool,
    /// Filters.
    pub filters: Vec<String>,
    /// `--help`.
    pub help: bool,
}

/// Parses the arguments.
pub fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        runs: 20,
        load: None,
        no_false_alarms: false,
        no_detect: false,
        no_extra: false,
        filters: Vec::new(),
        help: false,
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--runs" => {
                let v = iter.next().ok_or("`--runs` needs a number")?;
                parsed.runs = match v.parse::<usize>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(format!("`--runs {v}`: expected a whole number >= 1")),
                };
            }
            "--load" => {
                let cmd = iter.next().ok_or("`--load` needs a command")?;
                if cmd.trim().is_empty() {
                    return Err("`--load` needs a non-empty command".into());
                }
                parsed.load = Some(cmd.clone());
            }
            "--no-false-alarms" => parsed.no_false_alarms = true,
            "--no-detect" => parsed.no_detect = true,
            "--no-extra" | "--no-mutants" => parsed.no_extra = true,
            "-h" | "--help" => parsed.help = true,
            flag if flag.starts_with('-') => {
                return Err(format!(
                    "unknown option `{flag}` (try `cargo perfbudget trust --help`)"
                ));
            }
            filter => parsed.filters.push(filter.to_owned()),
        }
    }
    Ok(parsed)
}

/// A rate `k/n` with its 95% Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Events.
    pub k: usize,
    /// Trials.
    pub n: usize,
    /// Lower bound of the interval.
    pub low: f64,
    /// Upper bound of the interval.
    pub high: f64,
}

/// `k` events in `n` trials, with the 95% Wilson score interval.
pub fn wilson(k: usize, n: usize) -> Rate {
    if n == 0 {
        return Rate {
            k,
            n,
            low: 0.0,
            high: 1.0,
        };
    }
    // The standard normal is a valid distribution: `new` cannot fail here.
    let z = Normal::new(0.0, 1.0).map_or(1.959_964, |d| d.inverse_cdf(0.975));
    let (kf, nf) = (k as f64, n as f64);
    let p = kf / nf;
    let z2 = z * z;
    let denom = 1.0 + z2 / nf;
    let center = (p + z2 / (2.0 * nf)) / denom;
    let half = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / denom;
    // k = 0 and k = n put a bound exactly at 0 or 1; say so exactly.
    let low = if k == 0 {
        0.0
    } else {
        (center - half).max(0.0)
    };
    let high = if k == n {
        1.0
    } else {
        (center + half).min(1.0)
    };
    Rate { k, n, low, high }
}

impl Rate {
    /// `3/20 (15%, 95% CI 5–36%)`.
    pub fn show(&self) -> String {
        let pct = |x: f64| format!("{:.0}", x * 100.0);
        let rate = if self.n == 0 {
            0.0
        } else {
            self.k as f64 / self.n as f64
        };
        format!(
            "{}/{} ({}%, 95% CI {}–{}%)",
            self.k,
            self.n,
            pct(rate),
            pct(self.low),
            pct(self.high)
        )
    }

    /// The rate as JSON: `k`, `n` and the interval's bounds.
    pub fn json(&self) -> Value {
        json!({"k": self.k, "n": self.n, "low": self.low, "high": self.high})
    }
}

/// A load perf-trust started; stopped (threads joined, processes killed)
/// by [`Load::stop`] or on drop.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    scratch: Option<PathBuf>,
}

impl Load {
    /// No load.
    pub fn none() -> Load {
        Load {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            scratch: None,
        }
    }

    /// One busy-spinning thread per core.
    pub fn cpu() -> Load {
        let mut load = Load::none();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        for _ in 0..cores {
            let stop = Arc::clone(&load.stop);
            load.threads.push(std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for i in 0..10_000u64 {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                    }
                }
            }));
        }
        load
    }

    /// A thread writing 64 MiB files with fsync under `dir`.
    pub fn disk(dir: &Path) -> Result<Load, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut load = Load::none();
        load.scratch = Some(dir.to_owned());
        let stop = Arc::clone(&load.stop);
        let file = dir.join("writer.bin");
        load.threads.push(std::thread::spawn(move || {
            let chunk = vec![0x5au8; 1 << 20];
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut f) = std::fs::File::create(&file) else {
                    return;
                };
                for _ in 0..64 {
                    if stop.load(Ordering::Relaxed) || f.write_all(&chunk).is_err() {
                        break;
                    }
                }
                let _ = f.sync_all();
            }
        }));
        Ok(load)
    }

    /// `sh -c CMD` in its own process group, restarted when it exits.
    pub fn command(cmd: &str) -> Load {
        let mut load = Load::none();
        let stop = Arc::clone(&load.stop);
        let cmd = cmd.to_owned();
        load.threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut child) = spawn_group(&cmd) else {
                    return;
                };
                loop {
                    if stop.load(Ordering::Relaxed) {
                        kill_group(&mut child);
                        return;
                    }
                    match child.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            }
        }));
        load
    }

    /// Stops the load and waits for it to be gone.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if let Some(dir) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.halt();
    }
}

fn spawn_group(cmd: &str) -> std::io::Result<Child> {
    let mut command = Command::new("sh");
    command
        .args(["-c", cmd])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    command.spawn()
}

fn kill_group(child: &mut Child) {
    #[cfg(unix)]
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs the synthetic gate in calibration mode: nanoseconds per iteration
/// of its loop, measured as a gate of this shape measures.
pub fn calibrate_synthetic(test: &PerfTest, class: &str, base: u64) -> Result<f64, String> {
    let output = Command::new(&test.binary.executable)
        .args(["--exact", &test.name, "--include-ignored", "--nocapture"])
        .current_dir(&test.binary.manifest_dir)
        .env("PERF_TRUST_CALIBRATE", "1")
        .env("PERF_TRUST_GATE", "calibration")
        .env("PERF_TRUST_CLASS", class)
        .env("PERF_TRUST_BASE_NS", base.to_string())
        .env("PERF_TRUST_FACTOR", "1")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", test.binary.executable.display()))?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("perf-trust-calibration: "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .ok_or_else(|| {
            format!(
                "the synthetic gate printed no calibration ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })
}

/// The synthetic test `name` of perfbudget's test executables.
pub fn find_synthetic(binaries: &[discover::TestBinary], name: &str) -> Result<PerfTest, String> {
    for binary in binaries.iter().filter(|b| b.package == "perfbudget") {
        let found = match name {
            "trust_synthetic_gate" => discover::tests_in(binary, |n| {
                n.rsplit("::").next() == Some("trust_synthetic_gate")
            })?,
            _ => discover::tests_in(binary, |n| {
                n.rsplit("::").next() == Some("trust_synthetic_instructions")
            })?,
        };
        if let Some(test) = found.into_iter().next() {
            return Ok(test);
        }
    }
    Err(format!(
        "the synthetic gate `{name}` (perfbudget's tests/it/trust_synthetic.rs) is not in this \
         workspace: measure detection power from perfbudget's workspace, or pass --no-detect"
    ))
}

/// Starts one condition's load.
type LoadStarter = Box<dyn Fn() -> Result<Load, String>>;

/// What a workspace's own trust section gets to work with.
pub struct Context<'a> {
    /// Runs per gate and condition.
    pub runs: usize,
    /// `<target dir>/perf`.
    pub perf_dir: &'a Path,
    /// A scratch directory for records files.
    pub records: &'a Path,
    /// The environment every gate run gets (multiplier 1.0, the policy).
    pub env: &'a [(&'static str, String)],
    /// Every test executable of the workspace.
    pub binaries: &'a [discover::TestBinary],
    /// Every gate's declared budget, from its first run.
    pub shapes: &'a BTreeMap<String, Declared>,
}

/// A section a workspace adds to the report: its Markdown and its JSON.
pub type Extra<'a> = &'a dyn Fn(&Context) -> Result<(String, Value), String>;

/// Entry point (the working directory is inside the workspace).
pub fn run(args: &[String]) -> ExitCode {
    run_with(args, None)
}

/// [`run`], with a section of the workspace's own (skipped by
/// `--no-extra`), reported under the key `extra` of `trust.json`.
pub fn run_with(args: &[String], extra: Option<Extra>) -> ExitCode {
    match try_run(args, extra) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perf-trust: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Failures of `test` over `runs` runs (anything but a pass or a skip).
fn failures(
    test: &PerfTest,
    runs: usize,
    dir: &Path,
    env: &[(&str, String)],
) -> Result<Rate, String> {
    let mut failed = 0;
    for run in 0..runs {
        let file = dir.join(format!("{}-{run}.jsonl", test.name.replace("::", "-")));
        // Gates append: a file left by an earlier condition or factor must
        // not lend its records to this run.
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", file.display())),
        }
        let outcome =
            test_perf::run_one(test.clone(), &file, test_perf::DEFAULT_TIMEOUT, env, false)?;
        if outcome.status == Status::Skipped {
            return Err(format!(
                "{} is skipped here (its tool is missing)",
                test.id()
            ));
        }
        if outcome.status.is_failure() {
            failed += 1;
        }
    }
    Ok(wilson(failed, runs))
}

fn try_run(args: &[String], extra: Option<Extra>) -> Result<(), String> {
    let args = parse_args(args)?;
    if args.help {
        print!("{USAGE}");
        return Ok(());
    }
    let ws = discover::workspace()?;
    let perf_dir = test_perf::perf_dir(&ws);
    let dir = perf_dir.join("trust-records");
    test_perf::fresh_dir(&dir)?;
    let (tests, found, binaries) = test_perf::find_tests(&ws, &args.filters)?;
    if tests.is_empty() {
        return Err(format!(
            "no perf test matches {:?} (of {found})",
            args.filters
        ));
    }
    let mut env = test_perf::gate_env(&ws);
    env.push((MULTIPLIER_ENV, "1.0".to_owned()));
    // Each gate's shape, from a first run: its record declares it.
    let mut sources: BTreeMap<String, Declared> = BTreeMap::new();
    for test in &tests {
        let file = dir.join("shape.jsonl");
        let _ = std::fs::remove_file(&file);
        let outcome =
            test_perf::run_one(test.clone(), &file, test_perf::DEFAULT_TIMEOUT, &env, false)?;
        for record in outcome.records {
            sources.insert(record.gate, record.declared);
        }
    }
    let mut conditions: Vec<(&str, LoadStarter)> = vec![
        ("quiet", Box::new(|| Ok(Load::none()))),
        ("cpu", Box::new(|| Ok(Load::cpu()))),
        (
            "disk",
            Box::new({
                let d = perf_dir.join("trust-load");
                move || Load::disk(&d)
            }),
        ),
    ];
    if let Some(cmd) = args.load.clone() {
        conditions.push(("cmd", Box::new(move || Ok(Load::command(&cmd)))));
    }

    let started = Instant::now();
    let mut false_alarms = Vec::new();
    let mut condition_notes = Vec::new();
    let alarm_conditions = if args.no_false_alarms {
        &conditions[..0]
    } else {
        &conditions[..]
    };
    for (name, start) in alarm_conditions {
        eprintln!(
            "perf-trust: false alarms, {name}, {} run(s) per gate",
            args.runs
        );
        let load = start()?;
        let began = Instant::now();
        for test in &tests {
            eprint!("  {} ... ", test.id());
            let rate = failures(test, args.runs, &dir, &env)?;
            eprintln!("{}", rate.show());
            false_alarms.push((test.id(), name.to_string(), rate));
        }
        let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        eprintln!(
            "perf-trust: {name} took {:.0} s; load average at its end: {}",
            began.elapsed().as_secs_f64(),
            loadavg.trim()
        );
        condition_notes.push(json!({
            "condition": name,
            "elapsed_s": began.elapsed().as_secs_f64(),
            "loadavg_at_end": loadavg.trim(),
        }));
        load.stop();
    }

    let mut detection = Vec::new();
    if !args.no_detect {
        let synthetic = find_synthetic(&binaries, "trust_synthetic_gate")?;
        let shapes: Vec<(String, String, u64)> = tests
            .iter()
            .filter_map(|t| {
                let gate = t.name.rsplit("::").next()?;
                let d = sources.get(gate)?;
                match (d.class.as_str(), d.base) {
                    ("cold" | "warm", Some(base)) => Some((gate.to_owned(), d.class.clone(), base)),
                    _ => None,
                }
            })
            .collect();
        // Calibrate each shape's loop before any load: under a load it then
        // slows as a real gate's work does.
        let mut per_iteration = Vec::new();
        for (gate, class, base) in &shapes {
            let ns = calibrate_synthetic(&synthetic, class, *base)?;
            eprintln!("perf-trust: synthetic {gate}: {ns:.3} ns per loop iteration (quiet)");
            per_iteration.push(ns);
        }
        let instruction_shapes: Vec<(String, u64)> = tests
            .iter()
            .filter_map(|t| {
                let gate = t.name.rsplit("::").next()?;
                let d = sources.get(gate)?;
                match (d.class.as_str(), d.base) {
                    ("instructions", Some(base)) => Some((gate.to_owned(), base)),
                    _ => None,
                }
            })
            .collect();
        let synthetic_instructions = find_synthetic(&binaries, "trust_synthetic_instructions")?;
        for (name, start) in conditions.iter().take(2) {
            let load = start()?;
            for (gate, base) in &instruction_shapes {
                // The loop costs about 9 instructions an iteration; its own
                // count at factor 1 is the synthetic gate's base.
                let iterations = (*base / 9).max(1);
                let mut env = env.to_vec();
                env.push(("PERF_TRUST_GATE", format!("{gate}_synthetic")));
                env.push(("PERF_TRUST_ITERATIONS", iterations.to_string()));
                let probe_file = dir.join("instructions-probe.jsonl");
                let _ = std::fs::remove_file(&probe_file);
                let mut probe_env = env.clone();
                probe_env.push(("PERF_TRUST_FACTOR", "1".into()));
                probe_env.push(("PERF_TRUST_BASE_INSTRUCTIONS", "1".into()));
                let probe = test_perf::run_one(
                    synthetic_instructions.clone(),
                    &probe_file,
                    test_perf::DEFAULT_TIMEOUT,
                    &probe_env,
                    false,
                )?;
                let own_base = probe
                    .records
                    .iter()
                    .find_map(|r| match &r.detail {
                        Detail::Instructions(i) => Some(i.observed),
                        _ => None,
                    })
                    .ok_or(
                        "the synthetic instruction gate measured nothing (is valgrind installed?)",
                    )?;
                env.push(("PERF_TRUST_BASE_INSTRUCTIONS", own_base.to_string()));
                for factor in std::iter::once(CONTROL).chain(FACTORS) {
                    eprint!(
                        "perf-trust: detection, {name}, {gate} (instructions, {own_base} \
                         counted) x{factor} ... "
                    );
                    let mut env = env.clone();
                    env.push(("PERF_TRUST_FACTOR", factor.to_string()));
                    let rate = failures(&synthetic_instructions, args.runs, &dir, &env)?;
                    eprintln!("{}", rate.show());
                    detection.push((gate.clone(), name.to_string(), factor, rate));
                }
            }
            for ((gate, class, base), ns) in shapes.iter().zip(&per_iteration) {
                for factor in std::iter::once(CONTROL).chain(FACTORS) {
                    eprint!(
                        "perf-trust: detection, {name}, {gate} ({class}, base {:.3} ms) x{factor} ... ",
                        *base as f64 / 1e6
                    );
                    let mut env = env.to_vec();
                    env.push(("PERF_TRUST_GATE", format!("{gate}_synthetic")));
                    env.push(("PERF_TRUST_CLASS", class.clone()));
                    env.push(("PERF_TRUST_BASE_NS", base.to_string()));
                    env.push(("PERF_TRUST_FACTOR", factor.to_string()));
                    env.push(("PERF_TRUST_NS_PER_ITERATION", ns.to_string()));
                    let rate = failures(&synthetic, args.runs, &dir, &env)?;
                    eprintln!("{}", rate.show());
                    detection.push((gate.clone(), name.to_string(), factor, rate));
                }
            }
            load.stop();
        }
    }

    let mut extra_json = Value::Null;
    let mut table = render(&false_alarms, &detection, args.runs);
    if let (Some(extra), false) = (extra, args.no_extra) {
        let context = Context {
            runs: args.runs,
            perf_dir: &perf_dir,
            records: &dir,
            env: &env,
            binaries: &binaries,
            shapes: &sources,
        };
        let (markdown, json) = extra(&context)?;
        table.push_str(&markdown);
        extra_json = json;
    }
    print!("{table}");
    let report = json!({
        "runs": args.runs,
        "load_cmd": args.load,
        "multiplier": 1.0,
        "machine": crate::calibrate::machine(),
        "extra": extra_json,
        "elapsed_s": started.elapsed().as_secs_f64(),
        "conditions": condition_notes,
        "false_alarms": false_alarms.iter().map(|(t, c, r)| json!({"test": t, "condition": c, "failed": r.json()})).collect::<Vec<_>>(),
        "detection": detection.iter().map(|(g, c, f, r)| json!({"gate": g, "condition": c, "factor": f, "detected": r.json()})).collect::<Vec<_>>(),
    });
    let path = perf_dir.join("trust.json");
    let text =
        serde_json::to_string_pretty(&report).map_err(|e| format!("cannot serialise: {e}"))?;
    std::fs::write(&path, text + "\n")
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("report: {}", path.display());
    Ok(())
}

/// The two tables, in Markdown.
pub fn render(
    false_alarms: &[(String, String, Rate)],
    detection: &[(String, String, f64, Rate)],
    runs: usize,
) -> String {
    let mut out = format!(
        "\n### False alarms at multiplier 1.0 ({runs} runs per cell)\n\n| gate | condition | failed |\n|---|---|---|\n"
    );
    for (test, condition, rate) in false_alarms {
        out.push_str(&format!("| `{test}` | {condition} | {} |\n", rate.show()));
    }
    if !detection.is_empty() {
        out.push_str(&format!(
            "\n### Detection of synthetic regressions by a walltime gate of the same class and base ({runs} runs per cell)\n\n| gate shape | condition | factor | detected |\n|---|---|---|---|\n"
        ));
        for (gate, condition, factor, rate) in detection {
            out.push_str(&format!(
                "| `{gate}` | {condition} | ×{factor} | {} |\n",
                rate.show()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_intervals_match_the_textbook() {
        // 0/20: the rule of three's neighbour, Wilson gives [0, 16.1%].
        let r = wilson(0, 20);
        assert!(r.low.abs() < 1e-12, "{r:?}");
        assert!((r.high - 0.1611).abs() < 0.001, "{r:?}");
        let r = wilson(20, 20);
        assert!((r.low - 0.8389).abs() < 0.001 && r.high == 1.0, "{r:?}");
        let r = wilson(10, 20);
        assert!(
            (r.low - 0.2993).abs() < 0.001 && (r.high - 0.7007).abs() < 0.001,
            "{r:?}"
        );
        assert_eq!(wilson(0, 0).high, 1.0);
        assert_eq!(wilson(0, 20).show(), "0/20 (0%, 95% CI 0–16%)");
    }

    #[test]
    fn arguments() {
        let a = parse_args(&[
            "--runs".into(),
            "5".into(),
            "--load".into(),
            "make".into(),
            "drain".into(),
        ])
        .expect("ok");
        assert_eq!(a.runs, 5);
        assert_eq!(a.load.as_deref(), Some("make"));
        assert_eq!(a.filters, ["drain"]);
        assert_eq!(parse_args(&[]).expect("ok").runs, 20);
        for bad in [
            &["--runs", "0"][..],
            &["--load"],
            &["--load", " "],
            &["--x"],
        ] {
            let bad: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(parse_args(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn loads_start_and_stop() {
        let dir =
            std::env::temp_dir().join(format!("perfbudget-trust-load-{}", std::process::id()));
        let disk = Load::disk(&dir).expect("disk load");
        // The writer makes progress (a file appears) before it is stopped.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dir.join("writer.bin").exists() && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(dir.join("writer.bin").exists());
        disk.stop();
        assert!(!dir.exists(), "the scratch dir is removed");
        Load::cpu().stop();
        // A command load is killed with its process group on stop.
        let marker =
            std::env::temp_dir().join(format!("perfbudget-trust-cmd-{}", std::process::id()));
        let cmd = Load::command(&format!("echo x > {}; exec sleep 600", marker.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !marker.exists() && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(marker.exists(), "the command ran");
        let t = Instant::now();
        cmd.stop();
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "stopped without waiting for it"
        );
        let _ = std::fs::remove_file(marker);
    }

    #[test]
    fn tables_are_markdown_with_intervals() {
        let text = render(
            &[("p/t::perf_a".into(), "disk".into(), wilson(4, 10))],
            &[("perf_a".into(), "quiet".into(), 2.0, wilson(0, 10))],
            10,
        );
        assert!(
            text.contains("| `p/t::perf_a` | disk | 4/10 (40%, 95% CI 17–69%) |"),
            "{text}"
        );
        assert!(
            text.contains("| `perf_a` | quiet | ×2 | 0/10 (0%, 95% CI 0–28%) |"),
            "{text}"
        );
    }
}
