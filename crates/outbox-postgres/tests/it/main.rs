//! The PostgreSQL store's integration tests, one binary: the conformance
//! suite (`conformance`), the store's own behaviour under failures
//! (`failures`), and what they share (`util`: the database from
//! `OUTBOX_TEST_DATABASE_URL`, a schema per test). Without that variable
//! every test prints that it was skipped and why, and passes.

mod conformance;
mod failures;
mod multi_host;
mod net_faults;
mod net_sim;
mod password_file;
mod proxy;
mod util;
