//! Parent ids and the files of a parent under the data root.
//!
//! The mapping from a parent id to its file names is documented on
//! [`ParentPaths`] (public), with the derivation of [`MAX_ID_BYTES`].

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The longest file name, in bytes, the file systems the outbox runs on
/// accept (`NAME_MAX` on Linux and macOS).
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// Hex digits of the random nonce in a temporary or quarantine file name.
pub(crate) const NONCE_HEX_DIGITS: usize = 16;

/// Decimal digits of the nanosecond stamp in a quarantine file name (a
/// `u64`, zero-padded).
pub(crate) const QUARANTINE_NANOS_DIGITS: usize = 20;

/// What follows a target's name in the name of its temporary file:
/// `.tmp-<16 hex>`.
pub(crate) const TEMP_MARK: &str = ".tmp-";

/// What follows `<stem>.<kind>` in a quarantine file's name.
pub(crate) const QUARANTINE_MARK: &str = ".quarantine-";

/// The bytes a temporary file's name adds to its target's name.
const TEMP_SUFFIX_BYTES: usize = TEMP_MARK.len() + NONCE_HEX_DIGITS;

/// The bytes a quarantine file's name adds to the stem (for the longer
/// kind, `jsonl`).
const QUARANTINE_SUFFIX_BYTES: usize =
    ".jsonl".len() + QUARANTINE_MARK.len() + QUARANTINE_NANOS_DIGITS + 1 + NONCE_HEX_DIGITS;

/// The most bytes any file name the outbox derives from a stem adds to it:
/// a quarantine file's temporary file (see [`ParentPaths`]).
pub const LONGEST_SUFFIX_BYTES: usize = QUARANTINE_SUFFIX_BYTES + TEMP_SUFFIX_BYTES;

/// The longest file-name stem a parent id may map to, in bytes: derived so
/// that the longest name the outbox derives from it is
/// [`MAX_FILE_NAME_BYTES`] long.
pub const MAX_ID_BYTES: usize = MAX_FILE_NAME_BYTES - LONGEST_SUFFIX_BYTES;

// Every other derived name is shorter than a quarantine temp file's.
const _: () = {
    let others = [
        ".jsonl.lock".len(),
        ".jsonl.claimed".len() + TEMP_SUFFIX_BYTES,
        ".jsonl".len() + TEMP_SUFFIX_BYTES,
        ".json".len() + TEMP_SUFFIX_BYTES,
        ".lock".len(),
        QUARANTINE_SUFFIX_BYTES,
    ];
    let mut i = 0;
    while i < others.len() {
        assert!(others[i] < LONGEST_SUFFIX_BYTES);
        i += 1;
    }
};

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

/// The stem that ends every escaped id (see [`ParentPaths`]).
const ESCAPED_END: &str = "..";

/// Whether `c` is written as `%XX` in an escaped stem.
fn needs_escape(c: char) -> bool {
    c == '%' || c == '/' || c.is_whitespace() || c.is_control()
}

/// The file-name stem of a parent id: the id itself when the sanitiser
/// leaves it unchanged, else its escape followed by `..` (see the module
/// docs). The caller has refused blank ids and ids with a NUL.
fn stem_of(id: &str) -> String {
    if sanitize_id(id) == id {
        return id.to_owned();
    }
    let mut out = String::with_capacity(id.len() + ESCAPED_END.len());
    for c in id.chars() {
        if needs_escape(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out.push_str(ESCAPED_END);
    out
}

/// The parent id whose stem is `stem`, if any: the inverse of the mapping
/// of [`ParentPaths::new`] (used to find the parents of the files in a
/// directory, and by `outbox watch --all`).
pub fn id_of_stem(stem: &str) -> Option<String> {
    let id = match stem.strip_suffix(ESCAPED_END) {
        Some(escaped) => {
            let bytes = escaped.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 3;
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).ok()?
        }
        None => stem.to_owned(),
    };
    // Only the canonical form names a parent.
    let valid = !id.trim().is_empty() && !id.contains('\0') && stem_of(&id) == stem;
    valid.then_some(id)
}

/// The name of a quarantine file of the parent with file-name stem `stem`:
/// `<stem>.<kind>.quarantine-<nanos, 20 digits>-<nonce, 16 hex digits>`.
pub(crate) fn quarantine_name(stem: &str, kind: &str, nanos: u64, nonce: u64) -> String {
    format!("{stem}.{kind}{QUARANTINE_MARK}{nanos:020}-{nonce:016x}")
}

/// Whether `s` is a non-empty run of the characters a nonce, a stamp or an
/// older version's `<pid>-<seq>` is written with.
fn is_stamp(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-'))
}

/// The target of a temporary file named `name` (`<target>.tmp-<nonce>`;
/// also `<target>.tmp-<pid>-<seq>`, the names earlier versions used), or
/// `None` when `name` is not one.
pub(crate) fn temp_target(name: &str) -> Option<&str> {
    let (target, tail) = name.rsplit_once(TEMP_MARK)?;
    is_stamp(tail).then_some(target)
}

/// Which of the outbox's directories a file is in, for [`stem_of_target`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DirKind {
    /// `inboxes/`: inboxes (`<stem>.jsonl`), claimed inboxes
    /// (`<stem>.jsonl.claimed`) and quarantine files.
    Inboxes,
    /// `runtime/inbox-inflight/`: agent-deck's WALs (`<stem>.jsonl`).
    Wal,
    /// `runtime/consumed-turns/` and `runtime/stop-blocks/`:
    /// `<stem>.json`, and the append-only ledgers (`<stem>.jsonl`).
    Json,
}

/// The stem of the parent owning a file named `target` in a directory of
/// kind `dir`, when `target` is a name the outbox derives (an inbox, WAL,
/// ledger, guard or quarantine file).
pub(crate) fn stem_of_target(dir: DirKind, target: &str) -> Option<&str> {
    match dir {
        DirKind::Inboxes => target
            .strip_suffix(".jsonl")
            .or_else(|| target.strip_suffix(".jsonl.claimed"))
            .or_else(|| {
                let (head, tail) = target.rsplit_once(QUARANTINE_MARK)?;
                if !is_stamp(tail) {
                    return None;
                }
                head.strip_suffix(".jsonl")
                    .or_else(|| head.strip_suffix(".wal"))
            }),
        DirKind::Wal => target.strip_suffix(".jsonl"),
        DirKind::Json => target
            .strip_suffix(".json")
            .or_else(|| target.strip_suffix(".jsonl")),
    }
}

/// The files of one parent, under a data root.
///
/// # From a parent id to its file names
///
/// Every file of a parent is named `<stem><suffix>`, where the stem is
/// derived from the parent id by [`ParentPaths::new`]:
///
/// - an id that [`sanitize_id`] (agent-deck's sanitiser) leaves unchanged is
///   its own stem, so agent-deck and this crate name its files alike;
/// - any other id (one with a `/`, a `..`, a space, or surrounding
///   whitespace) is *escaped*: `%`, `/`, whitespace and control characters
///   become `%XX` (uppercase hex, one per UTF-8 byte), every other character
///   stays, and `..` is appended. `team/alpha` becomes `team%2Falpha..`.
///   The stem ends in `..`, which the sanitiser never leaves, so no id of the
///   first kind has it; and the escape is reversible, so no two ids of the
///   second kind share it. (agent-deck, and versions of this crate before
///   the escape, file such an id under its sanitised form, `team_alpha`:
///   pass that form as the id to reach those files.)
/// - a blank id, an id with a NUL, and an id whose stem is longer than
///   [`MAX_ID_BYTES`] are refused with [`Error::InvalidParentId`] or
///   [`Error::ParentIdTooLong`].
///
/// So distinct ids always name distinct files, and no stem contains `/` or
/// is `..`: every file stays inside its directory.
///
/// ```
/// use std::path::Path;
/// use outbox::ParentPaths;
///
/// let root = Path::new("/data");
/// assert_eq!(ParentPaths::new(root, "conductor")?.stem, "conductor");
/// assert_eq!(ParentPaths::new(root, "team_alpha")?.stem, "team_alpha");
/// assert_eq!(ParentPaths::new(root, "team/alpha")?.stem, "team%2Falpha..");
/// assert_eq!(ParentPaths::new(root, "my session")?.stem, "my%20session..");
/// # Ok::<(), outbox::Error>(())
/// ```
///
/// # The longest file name
///
/// The longest name derived from a stem is that of a quarantine file's
/// temporary file: `<stem>.jsonl.quarantine-<20 digits>-<16 hex>` followed by
/// `.tmp-<16 hex>`, [`LONGEST_SUFFIX_BYTES`] bytes after the stem.
/// [`MAX_ID_BYTES`] is [`MAX_FILE_NAME_BYTES`] minus that, so every name the
/// outbox derives fits the file system's limit, the longest exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentPaths {
    /// The parent id as given.
    pub id: String,
    /// The file-name stem the id maps to (see above): the id
    /// itself when agent-deck's sanitiser leaves it unchanged, else its
    /// escaped form.
    pub stem: String,
    /// `inboxes/<stem>.jsonl`: pending records.
    pub inbox: PathBuf,
    /// `inboxes/<stem>.jsonl.lock`: serialises writers of the inbox.
    pub inbox_lock: PathBuf,
    /// `inboxes/<stem>.jsonl.claimed`: the drain's write-ahead log: the
    /// inbox a drain claimed (renamed, or rewritten collapsed) and has not
    /// finished. Beside the inbox, so that the claim is one atomic rename
    /// within a directory.
    pub claimed: PathBuf,
    /// `runtime/inbox-inflight/<stem>.jsonl`: agent-deck's write-ahead log
    /// (and this crate's before protocol v2). Read and drained, never
    /// written.
    pub wal: PathBuf,
    /// `runtime/inbox-inflight/<stem>.lock`: serialises drains (WAL and
    /// ledger) of this parent.
    pub drain_lock: PathBuf,
    /// `runtime/consumed-turns/<stem>.jsonl`: the consumed ledger,
    /// append-only (see the crate documentation).
    pub consumed: PathBuf,
    /// `runtime/consumed-turns/<stem>.json`: agent-deck's consumed ledger, a
    /// JSON object. Read while `consumed` does not exist; the first drain
    /// migrates it into `consumed` and removes it.
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
    /// blank, contains NUL, or maps to a stem longer than [`MAX_ID_BYTES`].
    /// Distinct ids get distinct files (see [`ParentPaths`]).
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
        let stem = stem_of(id);
        if stem.len() > MAX_ID_BYTES {
            return Err(Error::ParentIdTooLong {
                id: id.to_owned(),
                len: stem.len(),
                limit: MAX_ID_BYTES,
            });
        }
        let inbox_dir = root.join(INBOX_DIR);
        let wal_dir = root.join(WAL_DIR);
        Ok(Self {
            id: id.to_owned(),
            inbox: inbox_dir.join(format!("{stem}.jsonl")),
            inbox_lock: inbox_dir.join(format!("{stem}.jsonl.lock")),
            claimed: inbox_dir.join(format!("{stem}.jsonl.claimed")),
            wal: wal_dir.join(format!("{stem}.jsonl")),
            drain_lock: wal_dir.join(format!("{stem}.lock")),
            consumed: root.join(LEDGER_DIR).join(format!("{stem}.jsonl")),
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
            assert!(!p.stem.contains('/') && p.stem != "..", "{id}");
            assert_eq!(id_of_stem(&p.stem).as_deref(), Some(id), "{id}");
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
            (
                &"x".repeat(MAX_ID_BYTES + 1),
                &format!("limit is {MAX_ID_BYTES}"),
            ),
        ] {
            let err = ParentPaths::new(root, id).unwrap_err().to_string();
            assert!(
                err.contains("invalid parent id") && err.contains(why),
                "{err}"
            );
        }
    }

    #[test]
    fn escaped_stems_read_back_and_odd_stems_name_no_parent() {
        for (id, stem) in [
            ("team/alpha", "team%2Falpha.."),
            ("my session", "my%20session.."),
            ("a..b", "a..b.."),
            (" x", "%20x.."),
            ("50%/x", "50%25%2Fx.."),
            ("a\u{a0}/", "a%C2%A0%2F.."),
            ("conductor", "conductor"),
        ] {
            assert_eq!(stem_of(id), stem);
            assert_eq!(id_of_stem(stem).as_deref(), Some(id));
        }
        for stem in [
            "",
            " x",
            "a b",
            "team%2falpha..",
            "x%2..",
            "x%ZZ..",
            "a..b",
            "%FF..",
        ] {
            assert_eq!(id_of_stem(stem), None, "{stem:?}");
        }
    }

    #[test]
    fn temp_files_are_told_apart_from_every_other_derived_name() {
        let stems = [
            "a",
            "a.jsonl",
            "a.jsonl.tmp-1",
            "a.wal",
            "x.jsonl.quarantine-1",
            "a%2F..",
        ];
        for stem in stems {
            let q = quarantine_name(stem, "jsonl", 1, 2);
            let derived = [
                (DirKind::Inboxes, format!("{stem}.jsonl")),
                (DirKind::Inboxes, format!("{stem}.jsonl.lock")),
                (DirKind::Inboxes, format!("{stem}.jsonl.claimed")),
                (DirKind::Json, format!("{stem}.jsonl")),
                (DirKind::Inboxes, q.clone()),
                (DirKind::Wal, format!("{stem}.jsonl")),
                (DirKind::Wal, format!("{stem}.lock")),
                (DirKind::Json, format!("{stem}.json")),
            ];
            for (dir, name) in &derived {
                // A file that is not a temp file is never taken for one...
                assert_eq!(temp_target(name), None, "{name}");
                if name.ends_with(".lock") {
                    continue;
                }
                // ...and a temp file leads back to its own stem only.
                let temp = format!("{name}{TEMP_MARK}{:016x}", 7);
                let target = temp_target(&temp).unwrap();
                assert_eq!(stem_of_target(*dir, target), Some(stem), "{temp}");
                let old = format!("{name}{TEMP_MARK}4242-7");
                assert_eq!(temp_target(&old), Some(name.as_str()));
            }
        }
        assert_eq!(temp_target("a.jsonl.tmp"), None, "agent-deck's temp name");
    }

    #[test]
    fn sanitising_is_idempotent() {
        for id in ["a..b", "...", ". .", "a/./b", " x ", "é/ü"] {
            let once = sanitize_id(id);
            assert_eq!(sanitize_id(&once), once, "{id}");
        }
    }
}
