//! Perf gate of the command-line tool (see `docs/perf-budget-suite.md`).
//!
//! Every Stop hook and heartbeat of every parent spawns `outbox`, and most
//! of them find nothing pending, so the cost that matters is a cold start
//! that answers "no": process spawn, argument parsing, root resolution and
//! the stat calls. It crosses a process boundary whose variance the test
//! cannot control, so the gate is COLD.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use perfbudget::{Class, Gate, trimmed_mean};

/// Observed median of `perf_cli_cold_start` under
/// `cargo xtask test-perf perf_cli_cold_start` at multiplier 1.0: 2.0 ms,
/// the middle of 14 runs whose medians spread 1.4–4.2 ms (trimmed means
/// 1.5–4.3 ms; the quiet runs sit at 1.4–1.6 ms, the slow ones shared the
/// machine with concurrent builds, load average ~5). Release profile, this
/// project's 2-core shared Linux VM, 2026-11-28.
/// Budget: COLD, max(base × 5, 1 ms) × multiplier = 10 ms locally, 20 ms in
/// CI.
const COLD_START_BASE: Duration = Duration::from_millis(2);

/// Spawns `outbox pending --parent conductor --root <root>` and waits.
fn pending_on(root: &Path) -> std::process::ExitStatus {
    Command::new(env!("CARGO_BIN_EXE_outbox"))
        .args(["pending", "--parent", "conductor", "--root"])
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn the outbox binary")
}

/// COLD: a whole `outbox pending` process on an empty data root, from spawn
/// to exit.
#[test]
#[ignore = "walltime gate: run by cargo xtask test-perf"]
fn perf_cli_cold_start() {
    let root = tempfile::tempdir().unwrap();
    let m = trimmed_mean(|| {
        let status = pending_on(root.path());
        // "Nothing pending" is exit 1; anything else (a crash, a usage
        // error) must fail the gate rather than time a different path.
        assert_eq!(status.code(), Some(1), "outbox pending: {status}");
        status
    });
    // The answer wrote nothing: every run timed the same work.
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    Gate::new("perf_cli_cold_start", Class::Cold, COLD_START_BASE).check(&m);
}
