//! `cargo perfbudget test`: run every perf gate alone, in release, and
//! report.
//!
//! How gate records get here: for each test, the runner sets
//! `PERF_BUDGET_RECORDS` to a fresh file under `<target dir>/perf/records/`;
//! every `perfbudget` gate that runs appends one JSON line to it, pass or
//! fail. A test that exits successfully without writing a record fails the
//! run: it ran no gate (an early return, a gate that was commented out, a
//! filter that matched nothing), and a gate suite that checks nothing must
//! not pass.
//!
//! Every run, even one that fails before running a gate (a build failure,
//! a filter matching nothing), writes its reports (`report.json`,
//! `junit.xml`, `bmf.json`, `summary.md`): a report describes the run that
//! wrote it, never an earlier one.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::budgets::Budgets;
use crate::discover::{self, PerfTest, Workspace};
use crate::model::{GateRecord, MULTIPLIER_ENV, Outcome, RECORDS_ENV, Status, parse_records};
use crate::report;

/// Decides a test's [`Status`] from its exit and what it recorded.
///
/// A test with any skipped gate is [`Status::Skipped`] (unless a gate
/// failed): one gate that checked nothing is not hidden by a neighbour
/// that passed, and `--no-skip` fails it.
pub fn classify(exited_ok: bool, records: &[GateRecord], malformed: usize) -> Status {
    let any_failed = records.iter().any(|r| !r.passed);
    let all_skipped = records.iter().any(|r| r.skipped());
    match (exited_ok, any_failed) {
        (_, true) => Status::GateFailed,
        (false, false) => Status::Crashed,
        (true, false) if malformed > 0 => Status::BadRecord,
        (true, false) if records.is_empty() => Status::NoRecord,
        (true, false) if all_skipped => Status::Skipped,
        (true, false) => Status::Passed,
    }
}

/// The per-test timeout when `--timeout` is not given. The slowest gate
/// today takes a few seconds; ten minutes is far beyond any healthy one and
/// short enough that a hung gate does not stall CI for its whole budget.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The usage text of `cargo xtask test-perf`.
pub const USAGE: &str = "\
usage: cargo perfbudget test [--list] [--timeout SECS] [--no-skip] [--locked]
                             [FILTER...]

Build the workspace's tests in release, find every test whose last path
segment starts with `perf_`, run each one alone (ignored ones included), print
a table and write report.json, junit.xml, bmf.json and summary.md under
<target dir>/perf/ (and append the summary to $GITHUB_STEP_SUMMARY when set).
Then write the gates' declared budgets to the budgets file (budgets in
[workspace.metadata.perfbudget], default perf-budgets.json).

Exits non-zero if a gate fails, a perf test crashes, hangs past the timeout,
emits no gate record or a malformed one, or no perf test is found.

options:
  --list          print the perf tests found, run nothing
  --timeout SECS  kill a perf test that runs longer than SECS seconds and fail
                  it by name (default 600)
  --no-skip       fail a gate that was skipped because its tool is missing
                  (instruction-count gates need valgrind); by default a skip
                  is printed but does not fail the run
  --locked        do not write the budgets file: fail when the gates declare
                  budgets it does not hold (CI)
  FILTER          run only tests whose id contains one of the FILTERs
  -h, --help      print this message

environment:
  PERF_BUDGET_MULTIPLIER  scales every walltime budget (unset = 1.0; CI: 2.0;
                          a busy machine: 2.0 or more)
";

/// Parsed `test-perf` arguments.
#[derive(Debug)]
pub struct Args {
    /// `--list`.
    pub list: bool,
    /// `--timeout SECS`.
    pub timeout: Duration,
    /// `--no-skip`.
    pub no_skip: bool,
    /// `--locked`.
    pub locked: bool,
    /// `-h`/`--help`.
    pub help: bool,
    /// The filters.
    pub filters: Vec<String>,
}

/// Parses `test-perf`'s arguments.
pub fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        list: false,
        timeout: DEFAULT_TIMEOUT,
        no_skip: false,
        locked: false,
        help: false,
        filters: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--list" => parsed.list = true,
            "--no-skip" => parsed.no_skip = true,
            "--locked" => parsed.locked = true,
            "-h" | "--help" => parsed.help = true,
            "--timeout" => {
                let value = args
                    .next()
                    .ok_or("`--timeout` needs a number of seconds, e.g. `--timeout 300`")?;
                parsed.timeout = parse_seconds(value).ok_or_else(|| {
                    format!("`--timeout {value}`: expected a whole number of seconds > 0")
                })?;
            }
            flag if flag.starts_with('-') => {
                return Err(format!(
                    "unknown option `{flag}` (try `cargo perfbudget test --help`)"
                ));
            }
            filter => parsed.filters.push(filter.to_owned()),
        }
    }
    Ok(parsed)
}

fn parse_seconds(text: &str) -> Option<Duration> {
    match text.parse::<u64>() {
        Ok(0) | Err(_) => None,
        Ok(secs) => Some(Duration::from_secs(secs)),
    }
}

/// Entry point (the working directory is inside the workspace).
pub fn run(args: &[String]) -> ExitCode {
    match try_run(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("test: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The environment every gate process gets: the configured policy file,
/// which failure messages name.
pub fn gate_env(ws: &Workspace) -> Vec<(&'static str, String)> {
    vec![(perfbudget::POLICY_ENV, ws.settings.policy.clone())]
}

/// Builds the tests and finds the perf tests matching `filters`: the
/// matching tests, how many were found before filtering, and the test
/// executables searched.
pub fn find_tests(
    ws: &Workspace,
    filters: &[String],
) -> Result<(Vec<PerfTest>, usize, Vec<discover::TestBinary>), String> {
    eprintln!("test: building the workspace's tests (release)...");
    let binaries = discover::build_test_binaries(ws)?;
    let mut tests = Vec::new();
    for binary in &binaries {
        tests.extend(discover::perf_tests_in(binary)?);
    }
    let found = tests.len();
    if !filters.is_empty() {
        tests.retain(|t| {
            let id = t.id();
            filters.iter().any(|f| id.contains(f.as_str()))
        });
    }
    Ok((tests, found, binaries))
}

/// The directory perf output goes to: `<target dir>/perf`.
pub fn perf_dir(ws: &Workspace) -> std::path::PathBuf {
    ws.target_dir.join("perf")
}

/// Empties (or creates) a directory of records files, so a stale file is
/// never mistaken for this run's.
pub fn fresh_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

fn try_run(args: &[String]) -> Result<ExitCode, String> {
    let args = parse_args(args)?;
    if args.help {
        print!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    let ws = discover::workspace()?;
    let dir = perf_dir(&ws);
    if args.list {
        let (tests, found, binaries) = find_tests(&ws, &args.filters)?;
        for test in &tests {
            println!("{}", test.id());
        }
        eprintln!(
            "test: {} perf test(s) in {} test executable(s){}",
            tests.len(),
            binaries.len(),
            filter_note(&args.filters, found)
        );
        return Ok(if tests.is_empty() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    // From here on every way out writes the reports: a failure before any
    // gate ran replaces the previous run's reports with one that says so.
    match run_gates(&ws, &args, &dir) {
        Ok(code) => Ok(code),
        Err(error) => {
            report::write_all(&dir, &[], false, Some(&error))?;
            eprintln!("test: reports (of this failed run): {}", dir.display());
            Err(error)
        }
    }
}

fn run_gates(ws: &Workspace, args: &Args, perf_dir: &Path) -> Result<ExitCode, String> {
    let (tests, found, binaries) = find_tests(ws, &args.filters)?;
    if tests.is_empty() {
        return Err(if found == 0 {
            format!(
                "no perf test found in {} test executable(s): a gate is a test whose last path \
                 segment starts with `perf_`. A gate suite that ran nothing does not pass.",
                binaries.len()
            )
        } else {
            format!(
                "none of the {found} perf tests matches {:?} (see `cargo perfbudget test --list`)",
                args.filters
            )
        });
    }
    let multiplier = std::env::var(MULTIPLIER_ENV).ok();
    eprintln!(
        "test: running {} perf test(s) one at a time, {MULTIPLIER_ENV}={}, timeout {} s each",
        tests.len(),
        multiplier.as_deref().unwrap_or("(unset)"),
        args.timeout.as_secs()
    );
    let records_dir = perf_dir.join("records");
    fresh_dir(&records_dir)?;
    let env = gate_env(ws);
    let mut outcomes = Vec::new();
    for (index, test) in tests.into_iter().enumerate() {
        let records_file = records_dir.join(format!("{index:03}.jsonl"));
        outcomes.push(run_one(test, &records_file, args.timeout, &env, true)?);
    }
    if args.no_skip {
        for outcome in &mut outcomes {
            if outcome.status == Status::Skipped {
                outcome.status = Status::GateFailed;
            }
        }
    }
    let budgets_note = update_budgets(ws, &outcomes, args)?;
    let passed = outcomes.iter().all(|o| !o.status.is_failure()) && budgets_note.is_ok();
    println!();
    print!("{}", report::table(&outcomes));
    for warning in report::multiplier_warnings(&outcomes) {
        println!("{warning}");
    }
    for line in report::skip_lines(&outcomes) {
        println!("{line}");
    }
    let error = budgets_note.as_ref().err().cloned();
    report::write_all(perf_dir, &outcomes, passed, error.as_deref())?;
    println!("reports: {}", perf_dir.display());
    match &budgets_note {
        Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
        Err(e) => eprintln!("test: {e}"),
    }
    let failures: Vec<&Outcome> = outcomes.iter().filter(|o| o.status.is_failure()).collect();
    if failures.is_empty() && passed {
        let skipped = outcomes
            .iter()
            .filter(|o| o.status == Status::Skipped)
            .count();
        if skipped == 0 {
            println!("test: all {} perf test(s) passed", outcomes.len());
        } else {
            println!(
                "test: {} perf test(s) passed, {skipped} SKIPPED (checked nothing; see above; \
                 `--no-skip` fails them)",
                outcomes.len() - skipped
            );
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "test: {} of {} perf test(s) failed:",
            failures.len(),
            outcomes.len()
        );
        for outcome in failures {
            eprintln!("  {}", report::failure_line(outcome));
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Brings the budgets file up to date with what the gates declared (or,
/// with `--locked`, fails when it is not). `Ok` holds lines to print.
fn update_budgets(
    ws: &Workspace,
    outcomes: &[Outcome],
    args: &Args,
) -> Result<Result<Vec<String>, String>, String> {
    let file = &ws.settings.budgets;
    let path = ws.root.join(file);
    let current = Budgets::load(&path)?;
    let (updated, changes) = match current.updated(outcomes, args.filters.is_empty()) {
        Ok(u) => u,
        Err(e) => return Ok(Err(e)),
    };
    if changes.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    let listing: Vec<String> = changes.iter().map(|c| format!("  {c}")).collect();
    if args.locked {
        return Ok(Err(format!(
            "{file} does not hold the budgets the gates declare (--locked):\n{}\n  run \
             `cargo perfbudget test` to update it, commit it, and `cargo perfbudget audit` \
             checks the change against {}",
            listing.join("\n"),
            ws.settings.policy
        )));
    }
    fs::write(&path, updated.to_text())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let mut lines = vec![format!("updated {file} (commit it):")];
    lines.extend(listing);
    Ok(Ok(lines))
}

fn filter_note(filters: &[String], found: usize) -> String {
    if filters.is_empty() {
        String::new()
    } else {
        format!(" matching {filters:?} (of {found})")
    }
}

/// What a finished (or killed) test process left.
struct Finished {
    success: bool,
    exit: String,
    timed_out: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs `command` to completion, or kills it once `timeout` has passed.
/// Output is read on two threads, so a chatty test cannot block on a full
/// pipe while we wait.
fn run_with_timeout(mut command: Command, timeout: Duration) -> std::io::Result<Finished> {
    #[cfg(unix)]
    {
        // Its own process group, so a timeout kills whatever it spawned too
        // (a grandchild holding our pipes open would block the readers).
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() >= timeout {
            timed_out = true;
            // Already exited between the two calls is fine: wait reaps it.
            #[cfg(unix)]
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Finished {
        success: status.success() && !timed_out,
        exit: status.to_string(),
        timed_out,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Runs one perf test as cargo would (cwd = its package), in its own
/// process, killed after `timeout`, and collects its records. `env` adds
/// variables; `verbose` prints progress and, on failure, the test's output.
pub fn run_one(
    test: PerfTest,
    records_file: &Path,
    timeout: Duration,
    env: &[(&str, String)],
    verbose: bool,
) -> Result<Outcome, String> {
    let id = test.id();
    if verbose {
        eprint!("test: {id} ... ");
    }
    let mut command = Command::new(&test.binary.executable);
    command
        .args([
            "--exact",
            test.name.as_str(),
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .current_dir(&test.binary.manifest_dir)
        .env("CARGO_MANIFEST_DIR", &test.binary.manifest_dir)
        .env(RECORDS_ENV, records_file);
    for (key, value) in env {
        command.env(key, value);
    }
    let start = Instant::now();
    let output = run_with_timeout(command, timeout).map_err(|e| {
        format!(
            "cannot run {} for {id}: {e}",
            test.binary.executable.display()
        )
    })?;
    let elapsed = start.elapsed();
    let text = match fs::read_to_string(records_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", records_file.display())),
    };
    let (records, malformed) = parse_records(&text);
    let status = if output.timed_out {
        Status::TimedOut
    } else {
        classify(output.success, &records, malformed.len())
    };
    let exit = if output.timed_out {
        format!("killed after the {timeout:?} timeout")
    } else {
        output.exit
    };
    if verbose {
        eprintln!("{} ({:.2} s)", status.label(), elapsed.as_secs_f64());
    }
    if verbose && status.is_failure() {
        // Show what the test said: the gate's report is in the panic text.
        for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
            let text = String::from_utf8_lossy(bytes);
            if !text.trim().is_empty() {
                eprintln!("---- {id} {stream} ----");
                eprintln!("{}", text.trim_end());
            }
        }
        for why in &malformed {
            eprintln!("---- {id}: not a gate record: {why}");
        }
        match status {
            Status::NoRecord => eprintln!(
                "---- {id}: the test passed but ran no gate; call perfbudget's Gate::check, \
                 CountGate::check or InstructionGate::check_with_setup"
            ),
            Status::TimedOut => eprintln!(
                "---- {id}: still running after {} s: killed (a hung gate; raise the limit with \
                 `--timeout SECS` only if the gate is legitimately that slow)",
                timeout.as_secs()
            ),
            _ => {}
        }
    }
    Ok(Outcome {
        test,
        status,
        exit,
        elapsed,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::TestBinary;
    use serde_json::json;

    fn rec(value: serde_json::Value) -> GateRecord {
        crate::model::tests::rec(value)
    }

    #[test]
    fn status_follows_exit_and_records() {
        let counts = json!([{"what": "x", "expected": 1, "observed": 1}]);
        let ok = rec(json!({"gate": "g", "class": "count", "passed": true, "counts": counts}));
        let bad = rec(json!({"gate": "g", "class": "count", "passed": false, "counts": counts}));
        let skip = rec(json!({"gate": "g", "class": "instructions", "passed": true,
                              "skipped": "valgrind not found"}));
        let one = std::slice::from_ref;
        assert_eq!(classify(true, one(&ok), 0), Status::Passed);
        assert_eq!(classify(false, one(&bad), 0), Status::GateFailed);
        assert_eq!(classify(false, &[ok.clone(), bad], 0), Status::GateFailed);
        assert_eq!(classify(false, one(&ok), 0), Status::Crashed);
        assert_eq!(classify(false, &[], 0), Status::Crashed);
        assert_eq!(classify(true, &[], 0), Status::NoRecord);
        assert_eq!(classify(true, one(&ok), 1), Status::BadRecord);
        assert_eq!(classify(true, one(&skip), 0), Status::Skipped);
        assert_eq!(classify(true, &[skip, ok], 0), Status::Skipped);
        assert!(!Status::Skipped.is_failure());
        assert!(Status::TimedOut.is_failure());
    }

    /// Defect 4 of issue 23: `--no-skip` passed a test in which one gate
    /// was skipped (valgrind missing) beside a gate that passed, because
    /// the test as a whole counted as passed.
    #[test]
    fn a_skipped_gate_beside_a_passed_one_makes_the_test_a_skip() {
        let counts = json!([{"what": "x", "expected": 1, "observed": 1}]);
        let ok = rec(json!({"gate": "a", "class": "count", "passed": true, "counts": counts}));
        let skip = rec(json!({"gate": "b", "class": "instructions", "passed": true,
                              "skipped": "valgrind not found"}));
        assert_eq!(
            classify(true, &[ok.clone(), skip.clone()], 0),
            Status::Skipped
        );
        assert_eq!(classify(true, &[skip, ok], 0), Status::Skipped);
    }

    #[test]
    fn arguments() {
        let args = parse_args(&["--list".into(), "sort".into(), "drain".into()]).expect("valid");
        assert!(args.list && !args.help && !args.no_skip);
        assert_eq!(args.filters, ["sort", "drain"]);
        assert_eq!(args.timeout, DEFAULT_TIMEOUT);
        let args = parse_args(&["--timeout".into(), "30".into(), "--no-skip".into()]).expect("ok");
        assert_eq!(args.timeout, Duration::from_secs(30));
        assert!(args.no_skip && !args.locked);
        assert!(parse_args(&["--locked".into()]).expect("ok").locked);
        assert!(parse_args(&["--help".into()]).expect("ok").help);
        assert!(parse_args(&["-h".into()]).expect("ok").help);
        let e = parse_args(&["--bogus".into()]).expect_err("unknown");
        assert!(
            e.contains("`--bogus`") && e.contains("perfbudget test --help"),
            "{e}"
        );
        for bad in [
            &["--timeout"][..],
            &["--timeout", "0"],
            &["--timeout", "ten"],
        ] {
            let bad: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            let e = parse_args(&bad).expect_err("bad timeout");
            assert!(e.contains("--timeout"), "{e}");
        }
    }

    #[test]
    fn usage_documents_every_option() {
        for needle in [
            "--list",
            "--timeout SECS",
            "--no-skip",
            "--locked",
            "FILTER",
            "--help",
            "PERF_BUDGET_MULTIPLIER",
        ] {
            assert!(USAGE.contains(needle), "{needle}");
        }
    }

    /// A "test executable" that hangs: a shell script ignoring its
    /// arguments. The runner must kill it and fail it by name.
    #[cfg(unix)]
    #[test]
    fn a_hung_test_is_killed_and_fails_with_its_name() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile_dir("hung");
        let script = dir.join("hang.sh");
        fs::write(&script, "#!/bin/sh\necho started\nsleep 600\necho never\n").expect("write");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
        let test = PerfTest {
            binary: TestBinary {
                package: "p".into(),
                target: "t".into(),
                kind: "test".into(),
                executable: script,
                manifest_dir: dir.clone(),
            },
            name: "perf_hangs".into(),
        };
        let start = Instant::now();
        let outcome = run_one(
            test,
            &dir.join("r.jsonl"),
            Duration::from_millis(300),
            &[],
            false,
        )
        .expect("ran");
        assert!(start.elapsed() < Duration::from_secs(60), "not killed");
        assert_eq!(outcome.status, Status::TimedOut);
        assert!(outcome.status.is_failure());
        let line = report::failure_line(&outcome);
        assert!(line.contains("p/t::perf_hangs"), "{line}");
        assert!(
            line.contains("TIMED OUT") && line.contains("timeout"),
            "{line}"
        );
        fs::remove_dir_all(dir).expect("cleanup");
    }

    fn tempfile_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("perfbudget-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        dir
    }
}
