//! The Rust examples of the workspace's READMEs, compiled (and run, unless
//! marked `no_run`) as doctests: `cargo test --workspace` fails when a
//! README's example stops compiling. The top-level README and the CLI's
//! live here, in a crate that is never published and whose
//! dev-dependencies (`perfbudget`, `testutil`, `tempfile`) they use; each
//! published crate doctests its own README in its `lib.rs`, so its package
//! holds every file its doctests read.

#[doc = include_str!("../../../README.md")]
mod workspace_readme {}

#[doc = include_str!("../../outbox-cli/README.md")]
mod cli_readme {}
