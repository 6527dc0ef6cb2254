//! Defect 1 of issue 23, end to end: code that waits by yielding the CPU
//! in a loop, measured on a machine made busy by spinning threads, must
//! not be excused as "the machine was busy".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use perfbudget::{Class, Gate, trimmed_mean};

#[test]
fn a_yield_loop_on_a_busy_machine_fails_its_budget() {
    if perfbudget::thread_times().is_none() {
        println!("SKIPPED: /proc/thread-self/schedstat is unreadable here; no run-queue excuse");
        return;
    }
    // Busy: two spinning threads per core, stopped by the flag.
    let stop = Arc::new(AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let spinners: Vec<_> = (0..2 * cores)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::black_box(0u64);
                }
            })
        })
        .collect();
    // 10 ms of yield_now against a 1 ms WARM base (3 ms budget).
    let m = trimmed_mean(|| {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(10) {
            std::thread::yield_now();
        }
    });
    stop.store(true, Ordering::Relaxed);
    for spinner in spinners {
        spinner.join().expect("spinner");
    }
    let verdict = Gate::new("perf_yield_loop", Class::Warm, Duration::from_millis(1))
        .with_multiplier(1.0)
        .evaluate(&m);
    assert!(
        !verdict.passed(),
        "a 10 ms yield loop passed: {}",
        verdict.message()
    );
}
