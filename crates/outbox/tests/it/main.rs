//! The outbox's integration tests, one binary (as ripgrep does): one module
//! per concern, and `util` for what they share.
//!
//! Gates are the tests named `perf_*` (found by name by
//! `cargo xtask test-perf`); the walltime ones are `#[ignore]`d here.

mod concurrency;
mod conformance;
mod crash;
mod decode_props;
mod delivery;
mod faults;
mod format;
mod handles;
mod hardening_files;
mod hardening_semantics;
mod identity;
mod perf_op_counts;
mod perf_outbox;
mod private_root;
mod records_state;
mod semantics;
mod sim;
mod stop_hook;
mod stress;
mod util;
