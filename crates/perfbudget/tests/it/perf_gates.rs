//! The gates that ship with perfbudget itself, so the suite is never empty
//! and the toolkit is exercised end to end under `cargo xtask test-perf`.

use std::time::Duration;

use perfbudget::{Class, Gate, InstructionGate};

/// Elements sorted by [`perf_sort_200k_u64`].
const SORT_LEN: usize = 200_000;

/// A fixed pseudo-random input (xorshift64, fixed seed): the same work on
/// every run and every machine.
fn shuffled_input() -> Vec<u64> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..SORT_LEN)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        })
        .collect()
}

/// Tier 1, WARM: `sort_unstable` of 200 000 pseudo-random `u64`s, a pure
/// in-process operation of known cost. The clone that restores the unsorted
/// input runs in `setup`, outside the timed window.
#[test]
#[ignore = "walltime gate: run by cargo xtask test-perf"]
fn perf_sort_200k_u64() {
    // Observed median 4.2 ms: the median of 5 full `cargo xtask test-perf`
    // runs at multiplier 1.0 (release profile) on the 2-core shared VM with
    // no other build running, 2026-11-28; trimmed means 3.14-4.94 ms. (A
    // first base of 6.9 ms was measured while other builds loaded the
    // machine, run medians 3.10-11.71 ms.)
    const BASE: Duration = Duration::from_micros(4_200);
    let input = shuffled_input();
    // Over budget once (a burst of load), it measures again and decides on
    // the second measurement; the budget is the same.
    Gate::new("perf_sort_200k_u64", Class::Warm, BASE).measure_and_check(
        || input.clone(),
        |mut v| {
            v.sort_unstable();
            v
        },
    );
}

/// Instruction-count gate: `sort_unstable` of the first 20 000 elements of
/// the same fixed input, counted by callgrind (the toolkit's own end-to-end
/// check of `InstructionGate`: re-run under valgrind, toggled region, parsed
/// total). Skipped, and says so, where valgrind is missing.
#[test]
#[ignore = "instruction-count gate (valgrind): run by cargo xtask test-perf"]
fn perf_sort_20k_u64_instructions() {
    // Observed: 2 616 727 instructions in each of 3 runs of `cargo xtask
    // test-perf sort_20k` (callgrind, valgrind 3.19, release profile, the
    // 2-core shared VM, 2026-11-29): the count is exact here because the
    // input is fixed and nothing in the sort is randomised.
    const BASE: u64 = 2_616_727;
    let input: Vec<u64> = shuffled_input().into_iter().take(20_000).collect();
    InstructionGate::new("perf_sort_20k_u64_instructions", BASE).check_with_setup(
        || input.clone(),
        |mut v| {
            v.sort_unstable();
            v
        },
    );
}
