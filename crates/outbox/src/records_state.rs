//! [`RecordsState`]: what a failed operation did to the caller's records,
//! as a typed fact every store's errors carry, so that callers (the CLI's
//! messages, the Stop hook, the simulation's oracle) decide on it instead
//! of reading error prose.

use crate::error::{DrainWithError, Error};
use crate::record::Record;
use crate::store::Outcome;

/// What became of the records a failed operation concerned: for a drain,
/// the records it staged (and, for `drain_with`, handed to the callback);
/// for any other operation, the records that were pending before it.
///
/// Derived from the error's own facts ([`Error::records_state`],
/// [`DrainWithError::records_state`]), never from its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordsState {
    /// Nothing is marked consumed: what was pending stays pending and the
    /// next drain delivers it (again, if a `drain_with` callback already
    /// acted on it). Every error but the two below: a failure before the
    /// ledger write, a delivery the caller failed, a ledger write whose
    /// marks never reached the file or were put back durably, a store
    /// transaction the server rolled back. (A failed *commit* is another
    /// question: its own record may or may not have been made, see
    /// [`Outbox::commit`](crate::Outbox::commit).)
    Pending,
    /// Unknown: the records may be marked consumed (then no later drain
    /// delivers them) or pending (then the next drain delivers them
    /// again). [`Error::MarksKept`] with `marks_visible: false` (the old
    /// ledger is back, not durably: a crash may bring the marks back), and
    /// a [`StoreError`](crate::StoreError) whose drain `COMMIT` failed in
    /// flight ([`Outcome::Unknown`]). The error carries the records
    /// ([`Error::records`]): act on them only if acting twice is safe.
    MaybeConsumed,
    /// Marked consumed although the call failed: no later drain delivers
    /// them (unless a crash undoes the marks, which are not durable).
    /// [`Error::MarksKept`] with `marks_visible: true`. The error carries
    /// the records ([`Error::records`]): this is the caller's one chance
    /// to act on them.
    Consumed,
}

impl Error {
    /// What became of the caller's records (see [`RecordsState`]): derived
    /// from the error's facts, `marks_visible` of [`Error::MarksKept`] and
    /// the [`Outcome`] of a store's drain.
    pub fn records_state(&self) -> RecordsState {
        match self {
            Error::MarksKept {
                marks_visible: true,
                ..
            } => RecordsState::Consumed,
            Error::MarksKept {
                marks_visible: false,
                ..
            } => RecordsState::MaybeConsumed,
            Error::Store(e) if e.outcome == Outcome::Unknown && !e.records.is_empty() => {
                RecordsState::MaybeConsumed
            }
            _ => RecordsState::Pending,
        }
    }

    /// The records the error carries because they may not be delivered
    /// again ([`RecordsState::Consumed`] or
    /// [`RecordsState::MaybeConsumed`]); empty for every other error.
    pub fn records(&self) -> &[Record] {
        match self {
            Error::MarksKept { records, .. } => records,
            Error::Store(e) => &e.records,
            _ => &[],
        }
    }
}

impl<E> DrainWithError<E> {
    /// What became of the records (see [`RecordsState`]): a failed
    /// delivery marks nothing ([`RecordsState::Pending`]); an outbox error
    /// says itself ([`Error::records_state`]).
    pub fn records_state(&self) -> RecordsState {
        match self {
            DrainWithError::Outbox(e) => e.records_state(),
            DrainWithError::Delivery(_) => RecordsState::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StoreError, StoreErrorKind};

    fn io() -> Error {
        Error::Io {
            op: "fdatasync",
            path: "/r/runtime/consumed-turns/p.jsonl".into(),
            to: None,
            source: std::io::Error::from_raw_os_error(5),
        }
    }

    fn kept(marks_visible: bool) -> Error {
        Error::MarksKept {
            error: Box::new(io()),
            undo: Box::new(io()),
            marks_visible,
            records: vec![Record::finished("w1", "success")],
        }
    }

    fn store(outcome: Outcome, records: Vec<Record>) -> Error {
        Error::Store(Box::new(StoreError {
            op: "drain: commit the marks",
            store: "postgres://h/db".into(),
            kind: StoreErrorKind::ConnectionLost,
            outcome,
            records,
            source: "reset".into(),
        }))
    }

    #[test]
    fn each_error_says_what_became_of_the_records() {
        assert_eq!(io().records_state(), RecordsState::Pending);
        assert!(io().records().is_empty());
        assert_eq!(kept(true).records_state(), RecordsState::Consumed);
        assert_eq!(kept(false).records_state(), RecordsState::MaybeConsumed);
        assert_eq!(kept(true).records().len(), 1);
        let w1 = vec![Record::finished("w1", "success")];
        assert_eq!(
            store(Outcome::Unknown, w1.clone()).records_state(),
            RecordsState::MaybeConsumed
        );
        assert_eq!(store(Outcome::Unknown, w1).records().len(), 1);
        // A commit or a sweep whose outcome is unknown consumed nothing.
        assert_eq!(
            store(Outcome::Unknown, Vec::new()).records_state(),
            RecordsState::Pending
        );
        assert_eq!(
            store(Outcome::NotApplied, Vec::new()).records_state(),
            RecordsState::Pending
        );
        let delivery: DrainWithError<&str> = DrainWithError::Delivery("down");
        assert_eq!(delivery.records_state(), RecordsState::Pending);
        let outbox: DrainWithError<&str> = DrainWithError::Outbox(kept(true));
        assert_eq!(outbox.records_state(), RecordsState::Consumed);
    }
}
