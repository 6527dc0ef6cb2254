//! cargo-perfbudget's integration tests, one binary: the runner used as a
//! new user uses it, on a crate outside this workspace.

mod out_of_workspace;
