//! The outbox's error type.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in an outbox operation.
///
/// Every file-system error names the operation and the path it failed on.
#[derive(Debug, thiserror::Error)]
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
        source: serde_json::Error,
    },
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

impl Error {
    /// The operating system's error, when this is a file-system error.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
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
pub enum DrainWithError<E> {
    /// The outbox failed; what was staged stays staged for the next drain.
    #[error(transparent)]
    Outbox(#[from] Error),
    /// The caller's delivery failed; nothing was marked consumed and the
    /// records will be delivered again by the next drain.
    #[error("delivery failed: {0}")]
    Delivery(E),
}
