//! perfbudget's integration tests, one binary: the gates that ship with
//! the toolkit (`perf_gates`) and the synthetic gates `cargo xtask
//! perf-trust` drives (`trust_synthetic`).

mod instruction_gates;
mod perf_gates;
mod trust_synthetic;
mod yield_excuse;
