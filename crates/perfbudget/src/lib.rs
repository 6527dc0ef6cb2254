//! Walltime and count budgets for performance gates.
//!
//! A *gate* is an ordinary `#[test]` whose name starts with `perf_` and that
//! fails the build when an operation gets slower than its budget (Tier 1,
//! walltime) or issues a different number of I/O calls than the code says it
//! should (Tier 2, counts). The runner, `cargo perfbudget test` (crate
//! `cargo-perfbudget`), finds and runs every gate
//! in the release profile; `docs/perf-budget-suite.md` is the handbook.
//!
//! # The budget
//!
//! ```text
//! budget = max(base × factor, FLOOR) × multiplier
//! ```
//!
//! * `base` is the observed median the gate's author measured, cited in a
//!   comment next to the constant (value, profile, machine, date).
//! * `factor` comes from the [`Class`]: 5 for [`Class::Cold`], 3 for
//!   [`Class::Warm`].
//! * [`FLOOR`] is 1 ms: cheaper work is noise-dominated and belongs in an
//!   advisory benchmark instead.
//! * `multiplier` comes from `PERF_BUDGET_MULTIPLIER` ([`multiplier`]);
//!   CI uses 2.0.
//!
//! # The measurement
//!
//! [`trimmed_mean`] and [`trimmed_mean_with_setup`] run the operation once
//! untimed, then 11 timed times; the two fastest and two slowest samples are
//! dropped and the middle 7 averaged. The full [`Measurement`] (samples,
//! median, min, max, standard deviation) is kept for the failure message.
//!
//! # What WARM means in Rust
//!
//! Rust has no garbage collector, so there is no collector pause to switch
//! off or force before the timed window. What can still make the first run
//! slower than the rest is cold state: page faults on freshly mapped memory,
//! an allocator that has not yet grown its pools, cold CPU caches and branch
//! predictors, lazily initialised statics. The untimed warm-up run pays those
//! costs once. Beyond that, *warm* means the work stays in the process: the
//! disk is taken out of the window (a tmpfs directory, or fsync stubbed to a
//! no-op through the code's I/O seam), and nothing spawns or talks to the
//! network. The measurement keeps the timed window to the operation alone:
//! the fixture is built by `setup` before the clock starts, the result goes
//! through [`std::hint::black_box`] before it stops (so the optimizer cannot
//! prove the work unused and delete it), and the result is dropped after it
//! stops.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use perfbudget::{Class, Gate, trimmed_mean_with_setup};
//!
//! // Observed median 0.9 ms (release, 2-core VM, 2026-11-28): made up here.
//! const BASE: Duration = Duration::from_micros(900);
//!
//! let input: Vec<u64> = (0..50_000).rev().collect();
//! let m = trimmed_mean_with_setup(|| input.clone(), |mut v| {
//!     v.sort_unstable();
//!     v
//! });
//! let gate = Gate::new("perf_sort_50k", Class::Warm, BASE);
//! // In a real gate: `gate.check(&m);` panics when over budget.
//! let verdict = gate.evaluate(&m);
//! println!("{}", verdict.message());
//! ```
//!
//! # Instruction counts
//!
//! An [`InstructionGate`] pins the number of instructions one call executes
//! (counted under valgrind's callgrind) within a tight tolerance: it is
//! deaf to the machine's load and sees a 1.1× regression. See its module.
//!
//! # Records
//!
//! Every gate that runs, pass or fail, emits one JSON [`Record`]; see
//! [`RECORDS_ENV`] for where it goes.

mod budget;
mod gate;
mod instructions;
mod measure;
mod record;

pub use budget::{
    Budget, Class, FLOOR, MAX_MULTIPLIER, MULTIPLIER_ENV, multiplier, parse_multiplier,
};
pub use gate::{CountGate, Gate, POLICY_ENV, RUNNER_COMMAND, Verdict};
pub use instructions::{CALLGRIND_CHILD_ENV, DEFAULT_TOLERANCE, InstructionGate, VALGRIND_ENV};
pub use measure::{
    KEPT_RUNS, Measurement, TIMED_RUNS, TRIMMED_EACH_SIDE, ThreadUsage, WARMUP_RUNS, thread_times,
    trimmed_mean, trimmed_mean_with_setup,
};
pub use record::{
    CountRecord, Declared, Expected, InstructionRecord, RECORD_PREFIX, RECORD_SCHEMA, RECORDS_ENV,
    Record, WalltimeRecord,
};

/// This crate's README, whose examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme_doctests {}
