//! Parent ids and the files of a parent under the data root.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The longest file-name stem a parent id may sanitise to, in bytes; leaves
/// room for the longest suffix under the usual 255-byte name limit.
pub const MAX_ID_BYTES: usize = 200;

/// Turns a session id into a file-name stem: trims surrounding whitespace,
/// maps an empty id to `_unknown`, then, left to right, replaces every `/`,
/// every `..` and every space with `_`.
///
/// The result never contains `/` or `..`, so it cannot leave its directory.
///
/// ```
/// assert_eq!(outbox::sanitize_id(" ../../etc/x "), "____etc_x");
/// assert_eq!(outbox::sanitize_id("a b/c"), "a_b_c");
/// assert_eq!(outbox::sanitize_id("   "), "_unknown");
/// ```
pub fn sanitize_id(id: &str) -> String {
    let id = id.trim();
    if id.is_empty() {
        return "_unknown".to_owned();
    }
    let mut out = String::with_capacity(id.len());
    let mut rest = id;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("..") {
            out.push('_');
            rest = &rest[2..];
        } else {
            out.push(if c == '/' || c == ' ' { '_' } else { c });
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The files of one parent, under a data root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentPaths {
    /// The parent id as given.
    pub id: String,
    /// The sanitised file-name stem.
    pub stem: String,
    /// `inboxes/<stem>.jsonl`: pending records.
    pub inbox: PathBuf,
    /// `inboxes/<stem>.jsonl.lock`: serialises writers of the inbox.
    pub inbox_lock: PathBuf,
    /// `runtime/inbox-inflight/<stem>.jsonl`: the drain's write-ahead log.
    pub wal: PathBuf,
    /// `runtime/inbox-inflight/<stem>.lock`: serialises drains (WAL and
    /// ledger) of this parent.
    pub drain_lock: PathBuf,
    /// `runtime/consumed-turns/<stem>.json`: the consumed ledger.
    pub ledger: PathBuf,
    /// `runtime/stop-blocks/<stem>.json`: the Stop-hook loop guard.
    pub stop_blocks: PathBuf,
}

/// Directory of the inboxes, relative to the data root.
pub const INBOX_DIR: &str = "inboxes";
/// Directory of the WALs, relative to the data root.
pub const WAL_DIR: &str = "runtime/inbox-inflight";
/// Directory of the consumed ledgers, relative to the data root.
pub const LEDGER_DIR: &str = "runtime/consumed-turns";
/// Directory of the Stop-hook loop guards, relative to the data root.
pub const STOP_BLOCKS_DIR: &str = "runtime/stop-blocks";

impl ParentPaths {
    /// The files of parent `id` under `root`; an error for an id that is
    /// empty, contains NUL, or is too long to be a file name.
    pub fn new(root: &Path, id: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidParentId {
            id: id.to_owned(),
            reason,
        };
        if id.trim().is_empty() {
            return Err(invalid("empty"));
        }
        if id.contains('\0') {
            return Err(invalid("contains a NUL byte"));
        }
        let stem = sanitize_id(id);
        if stem.len() > MAX_ID_BYTES {
            return Err(invalid("longer than 200 bytes"));
        }
        let inbox_dir = root.join(INBOX_DIR);
        let wal_dir = root.join(WAL_DIR);
        Ok(Self {
            id: id.to_owned(),
            inbox: inbox_dir.join(format!("{stem}.jsonl")),
            inbox_lock: inbox_dir.join(format!("{stem}.jsonl.lock")),
            wal: wal_dir.join(format!("{stem}.jsonl")),
            drain_lock: wal_dir.join(format!("{stem}.lock")),
            ledger: root.join(LEDGER_DIR).join(format!("{stem}.json")),
            stop_blocks: root.join(STOP_BLOCKS_DIR).join(format!("{stem}.json")),
            stem,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_ids_stay_inside_their_directory() {
        let root = Path::new("/data");
        for id in [
            "../../etc/x",
            "a/b",
            "..",
            "/abs",
            "a b",
            "....//..",
            "x/../../y",
        ] {
            let p = ParentPaths::new(root, id).unwrap();
            assert_eq!(
                p.inbox.parent(),
                Some(root.join(INBOX_DIR).as_path()),
                "{id}"
            );
            assert!(!p.stem.contains('/') && !p.stem.contains(".."), "{id}");
        }
        assert_eq!(sanitize_id("../../etc/x"), "____etc_x");
        assert_eq!(sanitize_id("..."), "_.");
    }

    #[test]
    fn bad_ids_are_clear_errors() {
        let root = Path::new("/data");
        for (id, why) in [
            ("", "empty"),
            ("  \t", "empty"),
            ("a\0b", "NUL"),
            (&"x".repeat(201), "200 bytes"),
        ] {
            let err = ParentPaths::new(root, id).unwrap_err().to_string();
            assert!(
                err.contains("invalid parent id") && err.contains(why),
                "{err}"
            );
        }
    }

    #[test]
    fn sanitising_is_idempotent() {
        for id in ["a..b", "...", ". .", "a/./b", " x ", "é/ü"] {
            let once = sanitize_id(id);
            assert_eq!(sanitize_id(&once), once, "{id}");
        }
    }
}
