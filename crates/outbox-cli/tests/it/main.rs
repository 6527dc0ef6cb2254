//! The end-to-end tests of the `outbox` binary: one test binary (as
//! ripgrep's `tests/`), one module per concern, and [`util`], the shared
//! helpers that run the built binary as its callers do.
//!
//! `cargo xtask test-perf` finds the walltime gates by the `perf_` prefix
//! of the test function's name (`perf_cli::perf_cli_cold_start`).

mod bad_input;
mod concurrency;
mod delivery;
mod doctor;
mod end_to_end;
mod exec;
mod generate;
mod hardening_files;
mod hardening_semantics;
mod hooks;
mod input;
mod install;
mod loop_e2e;
mod perf_cli;
#[cfg(feature = "postgres")]
mod postgres_store;
mod private_files;
mod readme;
mod reliability;
mod secrets;
mod stop_hook;
mod store_choice;
mod usage;
mod util;
mod watch;
