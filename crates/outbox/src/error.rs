//! The outbox's error type.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::Record;

/// Everything that can go wrong in an outbox operation.
///
/// Every file-system error names the operation and the path it failed on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The parent id cannot name an inbox.
    #[error("invalid parent id {id:?}: {reason}")]
    InvalidParentId {
        /// The id as given.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The parent id maps to a file-name stem longer than
    /// [`MAX_ID_BYTES`](crate::MAX_ID_BYTES), so some file of the parent
    /// could not be named.
    #[error(
        "invalid parent id {id:?}: its file-name stem would be {len} bytes long; the limit is {limit} bytes"
    )]
    ParentIdTooLong {
        /// The id as given.
        id: String,
        /// The length of the stem it maps to, in bytes.
        len: usize,
        /// The limit, [`MAX_ID_BYTES`](crate::MAX_ID_BYTES).
        limit: usize,
    },
    /// A file-system operation failed.
    #[error("{op} {}{}: {source}", path.display(), Arrow(to.as_deref()))]
    Io {
        /// What was being done, e.g. `"fsync file"`.
        op: &'static str,
        /// The path it was done to (the source, for a rename).
        path: PathBuf,
        /// The destination, for a rename.
        to: Option<PathBuf>,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A commit would write a line longer than the format allows.
    #[error("record for child {child:?} encodes to a {len}-byte line; the limit is {limit} bytes")]
    LineTooLong {
        /// The record's child session id.
        child: String,
        /// The encoded length in bytes.
        len: usize,
        /// The limit, [`MAX_LINE_BYTES`](crate::format::MAX_LINE_BYTES).
        limit: usize,
    },
    /// A record could not be encoded as JSON.
    #[error("encode record for child {child:?}: {source}")]
    Encode {
        /// The record's child session id.
        child: String,
        /// The encoder's error.
        #[source]
        source: crate::format::JsonError,
    },
    /// A commit was given an id, status or key containing U+0000 (NUL):
    /// refused by every store, so they agree (PostgreSQL cannot store it).
    #[error(
        "record field {field} contains a NUL character (U+0000); ids, statuses and keys may not"
    )]
    FieldHasNul {
        /// The field's name, e.g. `"child_session_id"`.
        field: &'static str,
    },
    /// A commit was given a child or parent id with leading or trailing
    /// whitespace. agent-deck's turn fingerprint trims the child id, so
    /// `w1` and `w1 ` are one child to the consumed ledger: every store
    /// refuses such an id in a new commit, so that they are one child
    /// everywhere (records of agent-deck's files are read by the trimmed
    /// id). Other ids are exact bytes: no case folding, no Unicode
    /// normalisation.
    #[error(
        "{field} {id:?} has leading or trailing whitespace; ids differing only by it would be \
         one child to the turn fingerprint, so they are refused: trim it"
    )]
    IdHasSurroundingWhitespace {
        /// `"child_session_id"` or `"parent id"`.
        field: &'static str,
        /// The id as given.
        id: String,
    },
    /// A commit was given an id or key longer than
    /// [`MAX_FIELD_BYTES`](crate::MAX_FIELD_BYTES).
    #[error("record field {field} is {len} bytes long; the limit is {limit} bytes")]
    FieldTooLong {
        /// The field's name, e.g. `"child_session_id"`.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The consumed ledger is larger than the outbox reads or writes. It is
    /// never treated as empty: that would deliver consumed turns again.
    #[error(
        "consumed ledger {}: {len} bytes, over the {limit}-byte limit; not treated as empty \
         (that would deliver consumed turns again): forget children (forget_child) or move \
         the file aside to reset it",
        path.display()
    )]
    LedgerTooLarge {
        /// The ledger file.
        path: PathBuf,
        /// Its size (at least this many bytes).
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// A drain, `drain_with` or `forget_child` of a parent was called from
    /// inside a `drain_with` callback of the same parent, on the same thread,
    /// through the same [`Outbox`](crate::Outbox) handle or any other of the
    /// process on the same root: it would wait for itself forever.
    #[error(
        "lock {} is already held by this thread: a drain, drain_with or forget_child of a \
         parent cannot be called from inside a drain_with callback of the same parent",
        path.display()
    )]
    Reentrant {
        /// The lock file already held.
        path: PathBuf,
    },
    /// A drain could not make its consumed ledger durable after the new
    /// ledger had become visible, and could not put the old one back
    /// durably either. `records` were marked consumed, and the drain
    /// returns this error instead of them: here they are.
    #[error("{}", marks_kept_message(error, undo, *marks_visible, records))]
    MarksKept {
        /// Why the ledger write failed.
        error: Box<Error>,
        /// Why putting the old ledger back failed.
        undo: Box<Error>,
        /// `true`: the old ledger could not be put back, the marks are
        /// visible and no later drain delivers `records` (unless a crash
        /// undoes the marks, which are not durable: then a drain delivers
        /// them again; act on them only if acting twice is safe, or
        /// accept that window). `false`: the old
        /// ledger is back but not durable: the records are pending, and a
        /// crash before the next durable write may still mark them consumed.
        marks_visible: bool,
        /// The records the failed drain marked consumed: those whose marks
        /// reached the ledger (a write cut short marks only the leading
        /// ones; the drain's other records are pending, as for any failed
        /// drain). When
        /// `marks_visible` is `false` they are pending again and the next
        /// drain delivers them: act on them here only if acting twice is
        /// safe.
        records: Vec<Record>,
    },
    /// A store other than the file outbox failed (a database, see
    /// [`Store`](crate::Store)): the operation, the store, the kind of
    /// failure and whether its effect is known.
    #[error(transparent)]
    Store(Box<crate::store::StoreError>),
    /// The data root is not its user's alone: another user owns or can
    /// write it, a directory of its layout or one above it (see
    /// [`RootPolicy`](crate::RootPolicy)). Nothing was read or written.
    #[error("{0}")]
    UnsafeRoot(Box<crate::root_check::UnsafeRoot>),
}

fn marks_kept_message(error: &Error, undo: &Error, visible: bool, records: &[Record]) -> String {
    const SHOWN: usize = 10;
    let mut children: Vec<String> = records
        .iter()
        .take(SHOWN)
        .map(|r| {
            let id = &r.child_session_id;
            match id.char_indices().nth(64) {
                Some((cut, _)) => format!("{:?}…", &id[..cut]),
                None => format!("{id:?}"),
            }
        })
        .collect();
    if records.len() > SHOWN {
        children.push(format!("and {} more", records.len() - SHOWN));
    }
    let n = records.len();
    let children = children.join(", ");
    if visible {
        format!(
            "{error}; putting the old consumed ledger back failed too ({undo}): {n} record(s) \
             stay marked consumed although the drain failed, and no later drain delivers \
             them (unless a crash undoes the marks, which are not durable: then the next \
             drain delivers them again): children {children}"
        )
    } else {
        format!(
            "{error}; the old consumed ledger was put back but not made durable ({undo}): \
             {n} record(s) are not marked consumed now, but a crash may still mark them: \
             children {children}"
        )
    }
}

struct Arrow<'a>(Option<&'a Path>);

impl fmt::Display for Arrow<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(to) => write!(f, " -> {}", to.display()),
            None => Ok(()),
        }
    }
}

/// Attaches the operation and path to an `io::Result`.
pub(crate) trait IoContext<T> {
    /// Names the operation and the path it was done to.
    fn at(self, op: &'static str, path: &Path) -> Result<T, Error>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            op,
            path: path.to_owned(),
            to: None,
            source,
        })
    }
}

/// The outbox's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error of [`Outbox::drain_with`](crate::Outbox::drain_with).
#[derive(Debug, thiserror::Error)]
// Not `#[non_exhaustive]`: it is the sum of the store's error and the
// caller's, complete by construction, and callers match it exhaustively.
pub enum DrainWithError<E> {
    /// The outbox failed. Nothing is marked consumed: the records stay
    /// pending (staged for the next drain), whether or not `deliver` ran.
    /// The one exception says so itself: [`Error::MarksKept`], when the
    /// ledger could not be made durable and the old one not put back.
    /// [`DrainWithError::records_state`] is the typed answer.
    #[error(transparent)]
    Outbox(#[from] Error),
    /// The caller's delivery failed; nothing was marked consumed and the
    /// records will be delivered again by the next drain.
    #[error("delivery failed: {0}")]
    Delivery(E),
}

impl DrainWithError<std::convert::Infallible> {
    /// The outbox's error: a delivery that cannot fail leaves no other
    /// (for stores whose `drain` is a `drain_with` without a delivery).
    pub fn into_outbox(self) -> Error {
        match self {
            Self::Outbox(e) => e,
            Self::Delivery(never) => match never {},
        }
    }
}
