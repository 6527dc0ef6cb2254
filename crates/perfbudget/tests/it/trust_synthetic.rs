//! The synthetic gate `cargo xtask perf-trust` uses to measure detection
//! power: a walltime gate shaped like a real one (same class, same base)
//! whose timed work is a CPU loop calibrated (on this machine, quiet) to
//! cost `factor × base`, run
//! through the real measurement (`Gate::measure_and_check`) and gate code.
//!
//! It is not a `perf_` test (test-perf must not run it) and it is ignored:
//! it reads its shape from the environment, which only perf-trust sets.

use std::hint::black_box;
use std::time::{Duration, Instant};

use perfbudget::{Class, Gate};

/// The work unit: a dependent multiply-add the optimizer cannot remove.
fn spin(iterations: u64) -> u64 {
    let mut x = 0u64;
    for i in 0..iterations {
        x = black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    x
}

/// Nanoseconds per iteration of [`spin`] when `target` worth of it is
/// measured the way a gate measures: a first guess from the fastest of 7
/// runs of 200 000 iterations, then the median of an n = 11 measurement of
/// a loop sized to `target` (so the per-run overhead of the measurement
/// is part of the calibration, as it is part of a gate's sample).
fn nanos_per_iteration(target: Duration) -> f64 {
    const N: u64 = 200_000;
    spin(N);
    let guess = (0..7)
        .map(|_| {
            let start = Instant::now();
            black_box(spin(N));
            start.elapsed().as_secs_f64() * 1e9 / N as f64
        })
        .fold(f64::INFINITY, f64::min);
    let n = ((target.as_secs_f64() * 1e9 / guess) as u64).max(1_000);
    let m = perfbudget::trimmed_mean(|| spin(n));
    m.median().as_secs_f64() * 1e9 / n as f64
}

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run via cargo xtask perf-trust"))
}

#[test]
#[ignore = "synthetic gate: run by cargo xtask perf-trust"]
fn trust_synthetic_gate() {
    let base = Duration::from_nanos(env("PERF_TRUST_BASE_NS").parse().expect("a number of ns"));
    let factor: f64 = env("PERF_TRUST_FACTOR").parse().expect("a factor");
    let class = match env("PERF_TRUST_CLASS").as_str() {
        "cold" => Class::Cold,
        "warm" => Class::Warm,
        other => panic!("PERF_TRUST_CLASS={other:?}: expected cold or warm"),
    };
    if std::env::var_os("PERF_TRUST_CALIBRATE").is_some() {
        // Calibration mode (perf-trust runs it on a quiet machine, before
        // any load): print the cost of an iteration, gate nothing.
        println!("perf-trust-calibration: {}", nanos_per_iteration(base));
        return;
    }
    // The quiet cost, so a load started afterwards slows the synthetic
    // gate as it slows a real one.
    let per_iteration: f64 = match std::env::var("PERF_TRUST_NS_PER_ITERATION") {
        Ok(v) => v.parse().expect("PERF_TRUST_NS_PER_ITERATION: a number"),
        Err(_) => nanos_per_iteration(base),
    };
    let iterations = (base.as_secs_f64() * 1e9 * factor / per_iteration).round() as u64;
    Gate::new(env("PERF_TRUST_GATE"), class, base).measure_and_check(|| (), |()| spin(iterations));
}

/// The instruction-count twin: an `InstructionGate` whose measured call is
/// [`spin`] of `PERF_TRUST_ITERATIONS × factor` iterations, pinned at
/// `PERF_TRUST_BASE_INSTRUCTIONS` (perf-trust measures it at factor 1
/// first). Through the real callgrind measurement and gate code.
#[test]
#[ignore = "synthetic gate: run by cargo xtask perf-trust"]
fn trust_synthetic_instructions() {
    let iterations: f64 = env("PERF_TRUST_ITERATIONS").parse().expect("a number");
    let factor: f64 = env("PERF_TRUST_FACTOR").parse().expect("a factor");
    let base: u64 = env("PERF_TRUST_BASE_INSTRUCTIONS")
        .parse()
        .expect("a count");
    let n = (iterations * factor).round() as u64;
    perfbudget::InstructionGate::new(env("PERF_TRUST_GATE"), base)
        .check_with_setup(|| n, |n| spin(black_box(n)));
}
