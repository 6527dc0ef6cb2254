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
//! # Files (protocol v2)
//!
//! Under the data root (see [`ParentPaths`]):
//!
//! | file | content |
//! |---|---|
//! | `inboxes/<id>.jsonl` | pending records, one JSON line each, **append-only**: a commit appends its line; a child's last line wins (commit order) |
//! | `inboxes/<id>.jsonl.lock` | serialises writers of the inbox |
//! | `inboxes/<id>.jsonl.claimed` | the drain's write-ahead log: the inbox a drain claimed (renamed, or rewritten with one record per child) and has not finished |
//! | `runtime/inbox-inflight/<id>.lock` | serialises drains |
//! | `runtime/consumed-turns/<id>.jsonl` | the consumed ledger, append-only (a header, then `["turn",unix]` marks and `{"prune":unix}` lines; see below) |
//! | `runtime/stop-blocks/<id>.json` | the handover state ([`handover::Handover`]: what was shown to the parent's session and awaits confirmation, and the Stop-hook loop guard) |
//!
//! Lines that cannot be read are copied to
//! `inboxes/<id>.{jsonl,wal}.quarantine-*` files before their source is
//! removed. Every record line is byte-identical to agent-deck's encoding.
//!
//! **agent-deck's files.** Protocol v1 (agent-deck's layout, and this
//! crate's before v2) kept the WAL at `runtime/inbox-inflight/<id>.jsonl`
//! and the ledger as a JSON object at `runtime/consumed-turns/<id>.json`.
//! Both are still read: a drain merges such a WAL into its claim (then
//! removes it), and while no v2 ledger exists the JSON ledger is the
//! ledger; the first drain that marks a turn writes the v2 ledger with
//! its entries, durably, and only then removes it. An inbox with any lines
//! drains as before. What agent-deck can read of a v2 root: the inbox (a
//! JSON-lines file; where a child has several lines agent-deck keeps the
//! latest by timestamp, which is the last committed unless a clock stepped
//! back); not the claimed WAL (records staged
//! by an unfinished v2 drain are invisible to it) and not the v2 ledger
//! (it would see no marks, and deliver consumed turns again). Run one or
//! the other on a root, never both.
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
//! A file is replaced (a sweep's inbox, a claim, a ledger compaction, the
//! handover state) through a temporary file `<file>.tmp-<16 hex>` named
//! from a random nonce (unique across processes and pid namespaces), created
//! and renamed under the file's lock. A writer killed in between leaves it
//! behind; [`Outbox::sweep_stale`] and [`Outbox::sweep_stale_all`] remove
//! such files under the same lock, where no live writer can own one.
//!
//! [`Outbox::open`] creates the directories and makes every directory it
//! creates durable, ancestors of the root included.
//! [`Outbox::open_lazy`] touches nothing: its read-only operations
//! ([`peek`](Outbox::peek), [`has_pending`](Outbox::has_pending),
//! [`handover`](Outbox::handover)) create nothing on any root, and
//! its first write creates the directories as `open` would.
//!
//! **Private by default.** [`StdIo`] creates every file 0600 and every
//! directory 0700 whatever the umask, and never opens an existing file
//! through a symbolic link (see [`io`]). Every operation first checks the
//! data root once ([`RootPolicy`], like ssh's `StrictModes`): a root, a
//! directory of its layout, or a non-sticky directory above it that
//! another user owns or group or others can write is refused with
//! [`Error::UnsafeRoot`] before anything is read or written;
//! [`Outbox::with_root_policy`] with [`RootPolicy::Shared`] accepts it (a
//! risk: anyone who can write it can forge, drop or reorder records), but
//! still refuses a layout directory that is a symbolic link. agent-deck,
//! running as the same user, reads and writes the 0600 files as before.
//!
//! **agent-deck running.** agent-deck does not take this crate's locks and
//! rewrites the inbox on commit: an append it makes while a drain claims
//! the inbox, or a line this crate appends while agent-deck rewrites it,
//! is lost. Open agent-deck's data directory only while agent-deck is
//! stopped.
//!
//! # Guarantees
//!
//! - [`Outbox::commit`] returns `Ok` only when the record is durable; one
//!   record per child is deliverable (last wins, by commit order: the
//!   timestamp plays no part). Its [`Committed`] result says whether the
//!   turn was already consumed (then no drain delivers it). Ids and keys
//!   are bounded ([`MAX_FIELD_BYTES`]). A commit costs the same whatever is
//!   pending: it appends, never reads or rewrites the inbox.
//! - A torn last line (a writer died mid-line, or a crash kept a file's new
//!   size and not its data: trailing NULs, which readers ignore) never
//!   merges with the next line and never costs a committed record: a
//!   commit that finds the inbox not ending in a newline writes one first.
//!   The inbox ends in a newline only once its directory entry is durable,
//!   so that commit also fsyncs the directory (see
//!   [`Outbox::commit`]). NUL bytes anywhere in a line separate like
//!   newlines: a commit whose fdatasync failed may leave its bytes as NULs
//!   on disk, with the next (successful) commit's line right after them,
//!   and that line is still delivered. A piece between two runs of NULs
//!   is a fragment of a lost write, set aside as a bad line, never a
//!   record.
//! - [`Outbox::drain`] never returns a turn twice; a crash after its ledger
//!   write and before the caller acts loses the records *to the caller*
//!   (the documented window).
//! - [`Outbox::drain_with`] never loses a record; a crash after delivery and
//!   before the ledger is durable delivers it again (the only duplicate
//!   window).
//! - A drain that returns an error leaves its records pending, marked by
//!   nothing, even when the marks' fdatasync (or a compacted ledger's
//!   directory fsync) failed after they became visible (the old ledger is
//!   put back, with a new durable write). The one exception is
//!   [`Error::MarksKept`]: putting it back failed too, and the error says
//!   so and carries the records.
//! - [`Outbox::has_pending`] and [`Outbox::peek`] agree with what a drain
//!   would deliver: a pending record whose turn is consumed is not pending.
//! - A drain, `drain_with` or `forget_child` called from inside a
//!   `drain_with` callback of the same parent is an [`Error::Reentrant`],
//!   not a deadlock.
//!
//! # Claude Code hooks
//!
//! [`handover`] delivers a parent's records to its Claude Code session
//! (a Stop block, a prompt's or SessionStart's context, a rewake) and
//! consumes them only once the session's next move confirms the model
//! acted on them; [`stop_hook`] holds the hook input, the block reason and
//! the older consume-on-print rule.
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
//! **Child identity.** A child is its id's exact bytes: no case folding
//! and no Unicode normalisation (`w1` and `W1`, NFC and NFD `café`, are
//! two children), because agent-deck's fingerprint hashes the bytes as
//! they are, and folding would need Unicode tables and change the
//! fingerprints of existing records. The one exception is surrounding
//! whitespace, which that fingerprint trims: `w1` and `w1 ` would be one
//! turn to the ledger and two children to the inbox, so a new commit with
//! a child or parent id that has leading or trailing whitespace is refused
//! ([`Error::IdHasSurroundingWhitespace`], by [`stamp`], so on every
//! store), and records already in agent-deck's files are collapsed by the
//! trimmed id (one drain never returns one turn twice). The longest id is
//! [`MAX_FIELD_BYTES`] bytes.
//!
//! # Consumed ledger
//!
//! Append-only (`runtime/consumed-turns/<id>.jsonl`): a drain appends a
//! `{"prune":now}` line and its marks, then fdatasyncs; replaying the lines
//! in order gives exactly the ledger protocol v1 held after the same
//! drains (same TTL, same clock-step rules). An outbox keeps each parent's
//! ledger in memory (at most 64 parents) with the offset it read to, and
//! reads only what was appended since (a header generation tells an append
//! from a rewrite), so a drain's cost does not grow with the ledger's
//! history. The file is compacted (rewritten with its live entries) when it
//! holds `2 × entries + 1024` lines, when the clock-step shift applies, or
//! before it would pass the read limit: amortised, never per drain. A line
//! that does not parse (a torn append) marks nothing.
//!
//! Entries are stamped with the clock, but pruning does not trust it: an
//! entry stamped in the future is restamped now (so one stamped while the
//! clock read 2090 expires one TTL after the clock was corrected, not
//! never), and when even the newest entry is older than [`LEDGER_TTL`] (a
//! machine that booted at 1970 and was then set by NTP, or a parent idle
//! for a whole TTL) the ledger is shifted forward rather than emptied. A
//! forward step shorter than the TTL ages entries by the step. Steps add
//! up: the shift applies only when a drain sees every entry older than the
//! TTL, so a jump forward of more than the TTL that is partly undone by a
//! step back before the next drain (+17 days, then −4 days) ages entries by
//! what is left of it (13 days), and a later small step forward can then
//! expire them. Such a turn may be delivered again; the seeded simulation
//! allows it only once the clock has risen past the TTL since the turn was
//! consumed, and counts it (`duplicated after TTL`). Keys are
//! bounded ([`MAX_TURN_KEY_BYTES`]), and a ledger over the 64 MiB read limit
//! is an [`Error::LedgerTooLarge`], never read as empty (that would deliver
//! consumed turns again); a drain refuses to write one.
//! - Commits and drains of one parent exclude each other across threads
//!   (in-process locks) and processes (lock files), so a producer never
//!   loses a record to a concurrent drain.
//!
//! # Deliveries
//!
//! What a parent model reads about its children (the Stop hook's reason,
//! hook context, a rewake message) is rendered by [`delivery::render`]:
//! facts in lines of the tool's own, each child's text framed as data that
//! cannot pass for them, within a budget counted in UTF-16 code units
//! (10 000 for `additionalContext`, Claude Code's cap). See [`delivery`].
//!
//! # Fsync cost
//!
//! | operation | file fsyncs | directory fsyncs |
//! |---|---|---|
//! | `commit` (the inbox exists) | 1 (fdatasync) | 0 |
//! | `commit` creating the inbox (or finding its last line unterminated) | 1 | 1 |
//! | `drain` / `drain_with`, N > 0 new records, steady state | 1 (fdatasync of the ledger's append) | 0 |
//! | `drain` / `drain_with` creating, migrating or compacting the ledger | 1 | 1 |
//! | `drain` / `drain_with`, nothing pending | 0 | 0 |
//! | claim by copy (a child twice in the inbox, unreadable lines, an earlier claim or agent-deck's WAL to merge) | +1 | +0 (+1 with agent-deck's WAL) |
//! | `drain_with_max`, records left over | +1 | +0 |
//! | `has_pending`, `peek` | 0 | 0 |
//! | `open` (eager) of a missing root | 0 | 1 per directory that gained an entry (3 when the root's parent exists) |
//! | `open` of an existing root, `open_lazy` | 0 | 0 |
//!
//! Why no directory fsync where the table has none: a claim renames the
//! inbox within `inboxes/`, and the claim's later removal (or a collapsed
//! claim's rename and the inbox's removal) are changes of that same
//! directory, which reach the disk in order; whichever of them a crash
//! keeps, every record is in the inbox or the claim, and the ledger decides
//! what is delivered again. A quarantine file adds 1 + 1.
//!
//! The first write through an `open_lazy` outbox on a root without the
//! directories pays `open`'s directory fsyncs once, on top of its own.
//!
//! All file-system access goes through the [`Io`](io::Io) seam held by the
//! outbox value: [`StdIo`] is the real one, with an injectable fsync;
//! the `outbox-sim` crate (a dev-dependency) has crash-simulating and
//! fault-injecting ones for the tests.

pub mod delivery;
mod durable;
mod error;
pub mod format;
pub mod handover;
mod held;
pub mod hook_json;
pub mod io;
mod json_error;
mod ledger;
pub mod names;
mod outbox;
mod paths;
mod record;
mod records_state;
pub mod redact;
mod root_check;
pub mod stop_hook;
mod store;
mod timestamp;

pub use error::{DrainWithError, Error, Result};
pub use io::StdIo;
pub use ledger::{LEDGER_TTL, MAX_LEDGER_BYTES};
pub use outbox::{Committed, DEFAULT_STALE_AGE, Drained, Outbox, SweepReport};
pub use paths::{
    LONGEST_SUFFIX_BYTES, MAX_FILE_NAME_BYTES, MAX_ID_BYTES, ParentPaths, id_of_stem, sanitize_id,
};
pub use record::{
    KIND_FINISHED, MAX_FIELD_BYTES, MAX_SUMMARY_BYTES, MAX_TURN_KEY_BYTES, Record,
    TRUNCATION_MARKER, event_fingerprint, turn_fingerprint, turn_id,
};
pub use records_state::RecordsState;
pub use root_check::{DirRole, LAYOUT_DIRS, RootPolicy, UnsafeReason, UnsafeRoot};
pub use store::{Outcome, Store, StoreError, StoreErrorKind, check_parent_id, stamp};
pub use timestamp::{Timestamp, TimestampError};

/// This crate's README, whose examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme_doctests {}
