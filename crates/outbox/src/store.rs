//! [`Store`]: the outbox contract as a trait, its file implementation, and
//! what every store shares (stamping, parent ids, [`StoreError`]).

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::error::{DrainWithError, Error, Result};
use crate::format::{MAX_LINE_BYTES, encode_line};
use crate::handover::Handover;
use crate::io::Io;
use crate::outbox::{Committed, Drained, Outbox, SweepReport};
use crate::paths::ParentPaths;
use crate::record::{MAX_FIELD_BYTES, Record, event_fingerprint, turn_fingerprint, turn_id};
use crate::timestamp::Timestamp;

/// The outbox contract as a trait, so callers (the Stop hook, the CLI, the
/// conformance suite) work over the file outbox and any other
/// store alike (the `outbox-postgres` crate has one on PostgreSQL).
///
/// The contract is the file outbox's, documented on [`Outbox`]: last wins
/// per (parent, child) by commit order, a plain [`drain`](Store::drain)
/// marks before it returns (a crash after that loses the records to the
/// caller), [`drain_with`](Store::drain_with) marks only after delivery
/// returned `Ok` (a crash in between delivers again), the consumed ledger
/// remembers a turn ([`Record::turn_key`]) for [`LEDGER_TTL`](crate::LEDGER_TTL),
/// [`has_pending`](Store::has_pending) and [`peek`](Store::peek) agree with
/// what a drain would deliver, and a drain or `forget_child` from inside a
/// `drain_with` callback of the same parent is an error, never a deadlock.
///
/// **One error type.** Every store returns [`Error`]. The file outbox's
/// variants stay as they are; a store that is not a file system reports its
/// own failures as [`Error::Store`], a [`StoreError`] that names the
/// operation, the store, what went wrong ([`StoreErrorKind`]) and, above
/// all, whether the operation's effect is known ([`Outcome`]): a failed
/// `COMMIT` round trip leaves it unknown, and the error says so. A caller
/// matching on [`Error`] sees a file-system error or a store error, never a
/// string.
///
/// ```
/// use outbox::{Outbox, Record, Store};
///
/// // Code written against the trait runs on any store.
/// fn finish_turn(store: &impl Store, parent: &str) -> outbox::Result<usize> {
///     store.commit(parent, Record::finished("child-1", "success"))?;
///     Ok(store.drain(parent)?.records.len())
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let root = tempfile::tempdir()?;
/// let outbox = Outbox::open(root.path())?;
/// assert_eq!(finish_turn(&outbox, "parent-A")?, 1);
/// # Ok(())
/// # }
/// ```
///
/// See [`Outbox`] for each operation in detail.
pub trait Store {
    /// Where the records live, for messages: a data root's path, or a
    /// database URL without its password.
    fn describe(&self) -> String;

    /// Commits `record` to `parent` (see [`Outbox::commit`]): stamped as
    /// [`stamp`] does, durable when this returns `Ok`, superseding the
    /// child's pending record (last wins by commit order).
    fn commit(&self, parent: &str, record: Record) -> Result<Committed>;

    /// Drains `parent` and marks what it returns consumed before returning
    /// (see [`Outbox::drain`]).
    fn drain(&self, parent: &str) -> Result<Drained>;

    /// Drains `parent`, marking the records consumed only after `deliver`
    /// returned `Ok` (see [`Outbox::drain_with`]).
    fn drain_with<E>(
        &self,
        parent: &str,
        deliver: impl FnOnce(&[Record]) -> Result<(), E>,
    ) -> Result<Drained, DrainWithError<E>> {
        self.drain_with_max(parent, usize::MAX, deliver)
    }

    /// [`drain_with`](Self::drain_with), delivering at most `max` records;
    /// the rest stay pending and come first next time (see
    /// [`Outbox::drain_with_max`]).
    fn drain_with_max<E>(
        &self,
        parent: &str,
        max: usize,
        deliver: impl FnOnce(&[Record]) -> Result<(), E>,
    ) -> Result<Drained, DrainWithError<E>>;

    /// Whether a drain of `parent` would deliver anything now.
    fn has_pending(&self, parent: &str) -> Result<bool>;

    /// What a drain of `parent` would deliver now; consumes nothing.
    fn peek(&self, parent: &str) -> Result<Vec<Record>>;

    /// Drops `parent`'s pending records of `child` whose `from_status` and
    /// `to_status` are `from` and `to`; returns how many (see
    /// [`Outbox::sweep_transition`]). Like every sweep it acts on every
    /// pending record (records an earlier drain claimed and failed to
    /// deliver included), judged by each child's latest, keeps the other
    /// children's order, and waits for a drain in progress of `parent`
    /// (from inside its callback: an error, never a deadlock).
    fn sweep_transition(&self, parent: &str, child: &str, from: &str, to: &str) -> Result<usize>;

    /// Drops `parent`'s pending records older than `max_age` by their
    /// timestamp; records without one are kept, and so are the records a
    /// drain in progress is delivering (the sweep waits for it); records an
    /// earlier drain failed to deliver are pending like any other (see
    /// [`Outbox::sweep_stale`]).
    fn sweep_stale(&self, parent: &str, max_age: Duration) -> Result<usize>;

    /// [`sweep_stale`](Self::sweep_stale) over every parent.
    fn sweep_stale_all(&self, max_age: Duration) -> Result<SweepReport>;

    /// Forgets the consumed turns of `child` in `parent`'s ledger; returns
    /// how many (see [`Outbox::forget_child`]).
    fn forget_child(&self, parent: &str, child: &str) -> Result<usize>;

    /// The handover state of `parent` (what was shown to which session,
    /// and the Stop hook's consecutive-block counter; see
    /// [`crate::handover`]); the default when unset.
    fn handover(&self, parent: &str) -> Result<Handover>;

    /// Sets the handover state of `parent`, durably.
    fn set_handover(&self, parent: &str, state: &Handover) -> Result<()>;

    /// Marks the turns `keys` consumed and removes their pending records
    /// (a child's newer record stays pending); returns the records removed
    /// (see [`Outbox::consume_turns`]).
    fn consume_turns(&self, parent: &str, keys: &[String]) -> Result<Drained>;
}

/// The file outbox: every method is the inherent one, unchanged.
impl<I: Io> Store for Outbox<I> {
    fn describe(&self) -> String {
        format!("file store {}", self.root().display())
    }

    fn commit(&self, parent: &str, record: Record) -> Result<Committed> {
        Outbox::commit(self, parent, record)
    }

    fn drain(&self, parent: &str) -> Result<Drained> {
        Outbox::drain(self, parent)
    }

    fn drain_with<E>(
        &self,
        parent: &str,
        deliver: impl FnOnce(&[Record]) -> Result<(), E>,
    ) -> Result<Drained, DrainWithError<E>> {
        Outbox::drain_with(self, parent, deliver)
    }

    fn drain_with_max<E>(
        &self,
        parent: &str,
        max: usize,
        deliver: impl FnOnce(&[Record]) -> Result<(), E>,
    ) -> Result<Drained, DrainWithError<E>> {
        Outbox::drain_with_max(self, parent, max, deliver)
    }

    fn has_pending(&self, parent: &str) -> Result<bool> {
        Outbox::has_pending(self, parent)
    }

    fn peek(&self, parent: &str) -> Result<Vec<Record>> {
        Outbox::peek(self, parent)
    }

    fn sweep_transition(&self, parent: &str, child: &str, from: &str, to: &str) -> Result<usize> {
        Outbox::sweep_transition(self, parent, child, from, to)
    }

    fn sweep_stale(&self, parent: &str, max_age: Duration) -> Result<usize> {
        Outbox::sweep_stale(self, parent, max_age)
    }

    fn sweep_stale_all(&self, max_age: Duration) -> Result<SweepReport> {
        Outbox::sweep_stale_all(self, max_age)
    }

    fn forget_child(&self, parent: &str, child: &str) -> Result<usize> {
        Outbox::forget_child(self, parent, child)
    }

    fn handover(&self, parent: &str) -> Result<Handover> {
        Outbox::handover(self, parent)
    }

    fn set_handover(&self, parent: &str, state: &Handover) -> Result<()> {
        Outbox::set_handover(self, parent, state)
    }

    fn consume_turns(&self, parent: &str, keys: &[String]) -> Result<Drained> {
        Outbox::consume_turns(self, parent, keys)
    }
}

/// Checks a parent id by the file outbox's rules, so every store accepts
/// exactly the same ids: not blank, no NUL, and a file-name stem of at most
/// [`MAX_ID_BYTES`](crate::MAX_ID_BYTES) bytes.
pub fn check_parent_id(id: &str) -> Result<()> {
    ParentPaths::new(Path::new(""), id).map(drop)
}

/// Stamps `record` for a commit to `parent` at `now` and encodes it: the
/// rules of [`Outbox::commit`], shared by every store so records and lines
/// are byte-identical whatever holds them. Refuses an invalid parent id,
/// an id or key over [`MAX_FIELD_BYTES`] and a line over
/// [`MAX_LINE_BYTES`], and a child or parent id with surrounding
/// whitespace ([`Error::IdHasSurroundingWhitespace`]); caps `done_summary`, derives `turn_fingerprint`
/// (and [`turn_id`]) when empty, sets `target_session_id` to `parent` when
/// empty and `timestamp` to `now` when zero, and computes `fp`. Returns the
/// stamped record and its JSON line, newline included.
pub fn stamp(parent: &str, mut record: Record, now: SystemTime) -> Result<(Record, Vec<u8>)> {
    check_parent_id(parent)?;
    for (field, id) in [
        ("parent id", parent),
        ("child_session_id", record.child_session_id.as_str()),
    ] {
        if id.trim() != id {
            return Err(Error::IdHasSurroundingWhitespace {
                field,
                id: id.to_owned(),
            });
        }
    }
    if let Some((field, len)) = record.oversized_field() {
        return Err(Error::FieldTooLong {
            field,
            len,
            limit: MAX_FIELD_BYTES,
        });
    }
    if let Some(field) = record.field_with_nul() {
        return Err(Error::FieldHasNul { field });
    }
    record.cap_summary();
    if record.turn_fingerprint.is_empty() {
        record.turn_fingerprint = turn_fingerprint(&record);
        if record.turn_id.is_empty() {
            record.turn_id = turn_id(&record).unwrap_or_default();
        }
    }
    if record.target_session_id.is_empty() {
        record.target_session_id = parent.to_owned();
    }
    if record.timestamp.is_zero() {
        record.timestamp = Timestamp::from_system_time(now).unwrap_or_default();
    }
    record.fp = event_fingerprint(&record);
    let line = encode_line(&record).map_err(|source| Error::Encode {
        child: record.child_session_id.clone(),
        source,
    })?;
    if line.len() - 1 > MAX_LINE_BYTES {
        return Err(Error::LineTooLong {
            child: record.child_session_id,
            len: line.len() - 1,
            limit: MAX_LINE_BYTES,
        });
    }
    Ok((record, line))
}

impl Committed {
    /// What a store's commit returns: the stamped `record` and whether its
    /// turn was already consumed.
    pub fn new(record: Record, already_consumed: bool) -> Self {
        Self {
            record,
            already_consumed,
        }
    }
}

/// Whether the effect of an operation that failed is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The operation changed nothing: its transaction was rolled back or
    /// never sent. A drain's records stay pending, a commit was not made;
    /// trying again is safe.
    NotApplied,
    /// The server may or may not have applied it: the connection failed
    /// while the statement or the `COMMIT` was in flight. A commit may have
    /// been made (committing the same record again is safe: same turn,
    /// delivered at most once); a drain's records may have been marked
    /// consumed (see [`StoreError::records`]).
    Unknown,
}

/// What kind of failure a [`StoreError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store could not be reached (connection refused, authentication,
    /// a bad URL).
    Connect,
    /// The connection broke during the operation (server restart, network,
    /// a terminated backend).
    ConnectionLost,
    /// The server cancelled a statement that ran too long
    /// (`statement_timeout`, `lock_timeout`).
    Timeout,
    /// The server aborted the transaction to keep it serializable
    /// (serialization failure, deadlock); it was retried and failed again.
    Serialization,
    /// A drain, `drain_with` or `forget_child` of a parent was called from
    /// inside a `drain_with` callback of the same parent, on the same
    /// handle: it would wait for itself forever.
    Reentrant,
    /// The store's schema is missing, newer than this code, or could not be
    /// migrated.
    Schema,
    /// Anything else the server refused.
    Other,
}

impl StoreErrorKind {
    fn describe(self) -> &'static str {
        match self {
            Self::Connect => "cannot connect",
            Self::ConnectionLost => "connection lost",
            Self::Timeout => "timed out",
            Self::Serialization => "serialization failure",
            Self::Reentrant => "called from inside a drain_with callback of the same parent",
            Self::Schema => "schema",
            Self::Other => "failed",
        }
    }
}

/// A failure of a store that is not the file outbox, in [`Error::Store`]:
/// the operation, the store, the kind, whether the operation's effect is
/// known, and the driver's message.
#[derive(Debug)]
#[non_exhaustive]
pub struct StoreError {
    /// What was being done, e.g. `"drain: claim the parent's records"`.
    pub op: &'static str,
    /// The store ([`Store::describe`]).
    pub store: String,
    /// What went wrong.
    pub kind: StoreErrorKind,
    /// Whether the operation's effect is known.
    pub outcome: Outcome,
    /// The records a drain had claimed when its outcome became
    /// [`Outcome::Unknown`] (the `COMMIT` that marks them failed in
    /// flight): they may be marked consumed and never delivered again, so
    /// here they are. Empty otherwise.
    pub records: Vec<Record>,
    /// The driver's or server's error.
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    /// A store error with no records (see
    /// [`with_records`](Self::with_records)); for implementations of
    /// [`Store`] outside this crate.
    pub fn new(
        op: &'static str,
        store: String,
        kind: StoreErrorKind,
        outcome: Outcome,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            op,
            store,
            kind,
            outcome,
            records: Vec::new(),
            source: source.into(),
        }
    }

    /// The same error carrying `records`, the ones a drain had claimed when
    /// its outcome became [`Outcome::Unknown`].
    pub fn with_records(mut self, records: Vec<Record>) -> Self {
        self.records = records;
        self
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {}: {}: {}",
            self.op,
            self.store,
            self.kind.describe(),
            self.source
        )?;
        match (self.outcome, self.records.len()) {
            (Outcome::NotApplied, _) => f.write_str("; nothing was changed"),
            (Outcome::Unknown, 0) if self.op.starts_with("commit") => f.write_str(
                "; the outcome is unknown: the connection failed while the server may have \
                 been committing (doing it again is safe: a commit of the same turn is \
                 delivered at most once)",
            ),
            (Outcome::Unknown, 0) => f.write_str(
                "; the outcome is unknown: the connection failed while the server may have \
                 been committing, so the change may or may not have been made (check before \
                 relying on either)",
            ),
            (Outcome::Unknown, n) => write!(
                f,
                "; the outcome is unknown: the connection failed during the COMMIT that marks \
                 {n} record(s) consumed, so they may be marked and never delivered again, or \
                 pending and delivered again (act on them only if acting twice is safe)"
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

impl Error {
    /// Whether the failed operation's effect is unknown: a store error
    /// whose [`Outcome`] is [`Outcome::Unknown`]. Every other error changed
    /// nothing the caller did not get (see each variant), except
    /// [`Error::MarksKept`], which says so itself.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Error::Store(e) if e.outcome == Outcome::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(op: &'static str) -> String {
        StoreError {
            op,
            store: "postgres://h/db".into(),
            kind: StoreErrorKind::ConnectionLost,
            outcome: Outcome::Unknown,
            records: Vec::new(),
            source: "reset".into(),
        }
        .to_string()
    }

    /// An unknown outcome promises "safe to do again" only for a commit,
    /// where it is true; a sweep, a forget or a guard update says only
    /// what is known.
    #[test]
    fn an_unknown_outcome_promises_only_what_holds_for_the_operation() {
        let commit = unknown("commit");
        assert!(commit.contains("a commit of the same turn"), "{commit}");
        for op in ["forget_child", "sweep_stale", "set_handover"] {
            let text = unknown(op);
            assert!(text.starts_with(op), "{text}");
            assert!(!text.contains("commit of the same turn"), "{text}");
            assert!(text.contains("may or may not have been made"), "{text}");
        }
    }
}
