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
//! `<id>` is the parent id's file-name stem ([`ParentPaths`] has the
//! mapping): an id that agent-deck's sanitiser ([`sanitize_id`]) leaves
//! unchanged is its own stem, so agent-deck's files are this crate's files;
//! any other id gets an escaped stem no other id can get (`team/alpha` →
//! `team%2Falpha..`). Distinct ids never share a file. The longest stem is
//! [`MAX_ID_BYTES`], derived from the longest name the outbox derives from
//! a stem ([`LONGEST_SUFFIX_BYTES`]) and the file-name limit
//! ([`MAX_FILE_NAME_BYTES`]).
//!
//! A file is replaced through a temporary file `<file>.tmp-<16 hex>` named
//! from a random nonce (unique across processes and pid namespaces), created
//! and renamed under the file's lock. A writer killed in between leaves it
//! behind; [`Outbox::sweep_stale`] and [`Outbox::sweep_stale_all`] remove
//! such files under the same lock, where no live writer can own one.
//!
//! [`Outbox::open`] creates the directories and makes every directory it
//! creates durable, ancestors of the root included.
//! [`Outbox::open_lazy`] touches nothing: its read-only operations
//! ([`peek`](Outbox::peek), [`has_pending`](Outbox::has_pending),
//! [`stop_blocks`](Outbox::stop_blocks)) create nothing on any root, and
//! its first write creates the directories as `open` would.
//!
//! **agent-deck running.** agent-deck does not take this crate's locks: an
//! append it makes between the outbox's read of an inbox and its rename of
//! the new one is lost. Open agent-deck's data directory only while
//! agent-deck is stopped.
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
//! | `open` (eager) of a missing root | 0 | 1 per directory that gained an entry (3 when the root's parent exists) |
//! | `open` of an existing root, `open_lazy` | 0 | 0 |
//!
//! The first write through an `open_lazy` outbox on a root without the
//! directories pays `open`'s directory fsyncs once, on top of its own.
//!
//! All file-system access goes through the [`Io`](io::Io) seam held by the
//! outbox value: [`StdIo`] is the real one, with an injectable fsync;
//! [`sim`] has crash-simulating and fault-injecting ones for tests.

mod durable;
mod error;
pub mod format;
pub mod io;
mod ledger;
mod outbox;
mod paths;
mod record;
pub mod sim;
pub mod stop_hook;
mod timestamp;

pub use error::{DrainWithError, Error, Result};
pub use io::StdIo;
pub use ledger::LEDGER_TTL;
pub use outbox::{DEFAULT_STALE_AGE, Drained, Outbox, SweepReport};
pub use paths::{
    LONGEST_SUFFIX_BYTES, MAX_FILE_NAME_BYTES, MAX_ID_BYTES, ParentPaths, sanitize_id,
};
pub use record::{
    KIND_FINISHED, MAX_SUMMARY_BYTES, Record, TRUNCATION_MARKER, event_fingerprint,
    turn_fingerprint,
};
pub use timestamp::{Timestamp, TimestampError};
