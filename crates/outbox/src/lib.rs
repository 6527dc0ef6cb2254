//! A crash-safe, durable per-parent outbox.
//!
//! Worker agents ("children") finish turns; each finished turn becomes one
//! [`Record`] committed to the inbox of the agent that spawned them (the
//! "parent"). The parent drains its inbox at its own turn boundary. Nothing
//! committed is lost, and a turn is acted on once.
//!
//! ```
//! use outbox::{Outbox, Record};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = tempfile::tempdir()?;
//! let outbox = Outbox::open(root.path())?;
//!
//! // Producers (any thread, any process) commit completion records.
//! let mut done = Record::finished("child-1", "success");
//! done.done_summary = "wrote the parser".into();
//! outbox.commit("parent-A", done)?;
//! outbox.commit("parent-A", Record::transition("child-2", "running", "waiting"))?;
//! assert!(outbox.has_pending("parent-A")?);
//!
//! // The parent drains: one record per child, each turn once.
//! let drained = outbox.drain("parent-A")?;
//! let children: Vec<_> = drained.records.iter().map(|r| r.child_session_id.as_str()).collect();
//! assert_eq!(children, ["child-1", "child-2"]);
//!
//! // Re-committing the same turn does not deliver it again.
//! outbox.commit("parent-A", Record::transition("child-2", "running", "waiting"))?;
//! assert!(outbox.drain("parent-A")?.records.is_empty());
//!
//! // At-least-once: the ledger is persisted only once delivery succeeded.
//! outbox.commit("parent-A", Record::finished("child-3", "failed"))?;
//! let drained = outbox.drain_with("parent-A", |records| {
//!     for r in records {
//!         println!("{} -> {}", r.child_session_id, r.done_status);
//!     }
//!     Ok::<(), std::io::Error>(())
//! })?;
//! assert_eq!(drained.records.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Files
//!
//! Under the data root (see [`ParentPaths`]): `inboxes/<id>.jsonl` (pending
//! records, one JSON line each), `inboxes/<id>.jsonl.lock` (serialises
//! writers of the inbox), `runtime/inbox-inflight/<id>.jsonl` (the drain's
//! write-ahead log) and `<id>.lock` beside it (serialises drains),
//! `runtime/consumed-turns/<id>.json` (the consumed ledger) and
//! `runtime/stop-blocks/<id>.json` (the Stop-hook loop guard). Lines that
//! cannot be read are copied to `inboxes/<id>.{jsonl,wal}.quarantine-*`
//! files before their source is removed.
//!
//! # Guarantees
//!
//! - [`Outbox::commit`] returns `Ok` only when the record is durable; at most
//!   one record per child is pending (last wins).
//! - [`Outbox::drain`] never returns a turn twice; a crash after its ledger
//!   write and before the caller acts loses the records *to the caller*
//!   (the documented window).
//! - [`Outbox::drain_with`] never loses a record; a crash after delivery and
//!   before the ledger is durable delivers it again (the only duplicate
//!   window).
//! - Commits and drains of one parent exclude each other across threads
//!   (in-process locks) and processes (lock files), so a producer never
//!   loses a record to a concurrent drain.
//!
//! # Fsync cost
//!
//! | operation | file fsyncs | directory fsyncs |
//! |---|---|---|
//! | `commit` | 1 | 1 |
//! | `drain` / `drain_with`, N > 0 new records | 2 | 2 |
//! | `drain` / `drain_with`, nothing pending | 0 | 0 |
//! | `has_pending`, `peek` | 0 | 0 |
//!
//! All file-system access goes through the [`Io`](io::Io) seam held by the
//! outbox value: [`StdIo`] is the real one, with an injectable fsync;
//! the `outbox-sim` crate (a dev-dependency) has crash-simulating and
//! fault-injecting ones for the tests.

mod durable;
mod error;
pub mod format;
pub mod io;
mod ledger;
mod outbox;
mod paths;
mod record;
pub mod stop_hook;
mod timestamp;

pub use error::{DrainWithError, Error, Result};
pub use io::StdIo;
pub use ledger::LEDGER_TTL;
pub use outbox::{DEFAULT_STALE_AGE, Drained, Outbox};
pub use paths::{ParentPaths, sanitize_id};
pub use record::{
    KIND_FINISHED, MAX_SUMMARY_BYTES, Record, TRUNCATION_MARKER, event_fingerprint,
    turn_fingerprint,
};
pub use timestamp::{Timestamp, TimestampError};
