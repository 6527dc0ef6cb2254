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
//! // Re-committing the same turn does not deliver it again, and commit says so.
//! let again = outbox.commit("parent-A", Record::transition("child-2", "running", "waiting"))?;
//! assert!(again.already_consumed);
//! assert!(!outbox.has_pending("parent-A")?);
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
//!   one record per child is pending (last wins, by commit order: the
//!   timestamp plays no part). Its [`Committed`] result says whether the
//!   turn was already consumed (then no drain delivers it) and which
//!   quarantine files it wrote. Ids and keys are bounded
//!   ([`MAX_FIELD_BYTES`]).
//! - [`Outbox::drain`] never returns a turn twice; a crash after its ledger
//!   write and before the caller acts loses the records *to the caller*
//!   (the documented window).
//! - [`Outbox::drain_with`] never loses a record; a crash after delivery and
//!   before the ledger is durable delivers it again (the only duplicate
//!   window).
//! - A drain that returns an error leaves its records pending, marked by
//!   nothing, even when the ledger's directory fsync failed after its
//!   rename (the old ledger is put back). The one exception is
//!   [`Error::MarksKept`]: putting it back failed too, and the error says
//!   so and carries the records.
//! - [`Outbox::has_pending`] and [`Outbox::peek`] agree with what a drain
//!   would deliver: a pending record whose turn is consumed is not pending.
//! - A drain, `drain_with` or `forget_child` called from inside a
//!   `drain_with` callback of the same parent is an [`Error::Reentrant`],
//!   not a deadlock.
//!
//! # Turn identity
//!
//! A turn is delivered at most once; its identity is [`Record::turn_key`],
//! the key of the consumed ledger. agent-deck's [`turn_fingerprint`] stays
//! what is stored in `turn_fingerprint` (wire compatibility), and lines of
//! agent-deck's files keep it as their identity, so they deduplicate exactly
//! as agent-deck does. But that fingerprint ignores `last_output_hash` for a
//! completion, so a child that finished a second turn with the same status
//! and summary looked like a re-emit of the first and was swallowed. A
//! commit therefore also stamps [`turn_id`] into the record's `turn_id`
//! field (not an agent-deck field; agent-deck ignores it) for a completion
//! with a non-empty `last_output_hash`, and the identity includes the hash.
//! A status flip with a hash is already keyed on it. A record without a
//! hash carries nothing that tells a new turn from a re-emit of an old one:
//! it stays deduplicated, and the commit's
//! [`already_consumed`](Committed::already_consumed) tells the producer,
//! who can give a new `last_output_hash` to mark a new turn.
//!
//! # Consumed ledger
//!
//! Entries are stamped with the clock, but pruning does not trust it: an
//! entry stamped in the future is restamped now (so one stamped while the
//! clock read 2090 expires one TTL after the clock was corrected, not
//! never), and when even the newest entry is older than [`LEDGER_TTL`] (a
//! machine that booted at 1970 and was then set by NTP, or a parent idle
//! for a whole TTL) the ledger is shifted forward rather than emptied. A
//! forward step shorter than the TTL ages entries by the step. Keys are
//! bounded ([`MAX_TURN_KEY_BYTES`]), and a ledger over the 64 MiB read limit
//! is an [`Error::LedgerTooLarge`], never read as empty (that would deliver
//! consumed turns again); a drain refuses to write one.
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
//! | `drain_with_max`, records left over | 3 | 3 |
//! | `has_pending`, `peek` | 0 | 0 |
//! | `open` (eager) of a missing root | 0 | 1 per directory that gained an entry (3 when the root's parent exists) |
//! | `open` of an existing root, `open_lazy` | 0 | 0 |
//!
//! The first write through an `open_lazy` outbox on a root without the
//! directories pays `open`'s directory fsyncs once, on top of its own.
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
mod store;
mod timestamp;

pub use error::{DrainWithError, Error, Result};
pub use io::StdIo;
pub use ledger::LEDGER_TTL;
pub use outbox::{Committed, DEFAULT_STALE_AGE, Drained, Outbox, SweepReport};
pub use paths::{
    LONGEST_SUFFIX_BYTES, MAX_FILE_NAME_BYTES, MAX_ID_BYTES, ParentPaths, sanitize_id,
};
pub use record::{
    KIND_FINISHED, MAX_FIELD_BYTES, MAX_SUMMARY_BYTES, MAX_TURN_KEY_BYTES, Record,
    TRUNCATION_MARKER, event_fingerprint, turn_fingerprint, turn_id,
};
pub use store::{Outcome, Store, StoreError, StoreErrorKind, check_parent_id, stamp};
pub use timestamp::{Timestamp, TimestampError};
