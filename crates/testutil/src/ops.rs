//! [`OpCounter`]: count every file-system operation code issues through its
//! I/O seam, by kind of operation and kind of handle.
//!
//! This crate knows no seam in particular (it depends on no workspace
//! crate), so the counter is fed by a small adapter that the test writes
//! around its code's seam: each method of the seam calls
//! [`OpCounter::record`] (or [`OpCounter::record_path`]) with the
//! [`OpKind`] it is about to perform, then delegates.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

/// A kind of file-system operation, as an I/O seam names its primitives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum OpKind {
    /// Create a new file (`open` with `O_CREAT | O_EXCL`).
    Create,
    /// Write bytes to an open file.
    Write,
    /// Fsync an open file.
    SyncFile,
    /// Open a file for reading.
    OpenRead,
    /// Rename a file.
    Rename,
    /// Fsync a directory.
    SyncDir,
    /// Remove (unlink) a file.
    Remove,
    /// Read a file's metadata (`stat`).
    Stat,
    /// Create a directory (and its missing parents).
    CreateDir,
    /// List a directory.
    ListDir,
    /// Take a lock on a lock file.
    Lock,
    /// Open an existing file for appending.
    OpenAppend,
    /// Fdatasync an open file (its data and size, not all its metadata).
    SyncData,
}

impl OpKind {
    /// Every kind, in a fixed order (the order of [`OpCounts`] listings).
    pub const ALL: [OpKind; 13] = [
        OpKind::Create,
        OpKind::Write,
        OpKind::SyncFile,
        OpKind::OpenRead,
        OpKind::Rename,
        OpKind::SyncDir,
        OpKind::Remove,
        OpKind::Stat,
        OpKind::CreateDir,
        OpKind::ListDir,
        OpKind::Lock,
        OpKind::OpenAppend,
        OpKind::SyncData,
    ];

    /// A short lower-case name, e.g. `"sync_file"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            OpKind::Create => "create",
            OpKind::Write => "write",
            OpKind::SyncFile => "sync_file",
            OpKind::OpenRead => "open_read",
            OpKind::Rename => "rename",
            OpKind::SyncDir => "sync_dir",
            OpKind::Remove => "remove",
            OpKind::Stat => "stat",
            OpKind::CreateDir => "create_dir",
            OpKind::ListDir => "list_dir",
            OpKind::Lock => "lock",
            OpKind::OpenAppend => "open_append",
            OpKind::SyncData => "sync_data",
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an operation was applied to: the same buckets as
/// [`FsyncCounter`](crate::FsyncCounter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Target {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// Something else, or a path that could not be classified (missing,
    /// unreadable metadata, a device, a FIFO, ...).
    Unknown,
}

impl Target {
    /// Classifies `path` by its metadata as it is *now*, without following
    /// a final symlink: a regular file, a directory, or unknown (missing,
    /// unreadable, or another kind of entry).
    #[must_use]
    pub fn of_path(path: &Path) -> Target {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_file() => Target::File,
            Ok(meta) if meta.is_dir() => Target::Dir,
            Ok(_) | Err(_) => Target::Unknown,
        }
    }

    /// `"file"`, `"dir"` or `"unknown"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Target::File => "file",
            Target::Dir => "dir",
            Target::Unknown => "unknown",
        }
    }
}

/// A snapshot of an [`OpCounter`]: how many operations of each kind, on
/// each kind of target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpCounts {
    counts: BTreeMap<(OpKind, Target), u64>,
}

impl OpCounts {
    /// Operations of `kind` on `target`.
    #[must_use]
    pub fn get(&self, kind: OpKind, target: Target) -> u64 {
        self.counts.get(&(kind, target)).copied().unwrap_or(0)
    }

    /// Operations of `kind`, whatever the target.
    #[must_use]
    pub fn of(&self, kind: OpKind) -> u64 {
        self.counts
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, n)| n)
            .sum()
    }

    /// Operations on `target`, whatever the kind.
    #[must_use]
    pub fn on(&self, target: Target) -> u64 {
        self.counts
            .iter()
            .filter(|((_, t), _)| *t == target)
            .map(|(_, n)| n)
            .sum()
    }

    /// All operations.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The non-zero counts, kinds in [`OpKind::ALL`] order, then targets.
    pub fn iter(&self) -> impl Iterator<Item = (OpKind, Target, u64)> + '_ {
        self.counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|((k, t), n)| (*k, *t, *n))
    }
}

impl fmt::Display for OpCounts {
    /// `create file 2, write file 2, sync_dir dir 2` (or `none`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .iter()
            .map(|(k, t, n)| format!("{k} {} {n}", t.as_str()))
            .collect();
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Counts the operations code issues through its I/O seam.
///
/// Clones share the same counts; all methods are thread-safe. A call is
/// counted when it is recorded, before the adapter delegates, so an
/// operation that then fails was still issued and still counts.
///
/// ```
/// use std::path::Path;
/// use testutil::{OpCounter, OpKind, Target};
///
/// /// A seam adapter: count, then delegate.
/// fn remove(counter: &OpCounter, path: &Path) -> std::io::Result<()> {
///     counter.record(OpKind::Remove, Target::File);
///     std::fs::remove_file(path)
/// }
///
/// let dir = tempfile::tempdir()?;
/// let counter = OpCounter::new();
/// let path = dir.path().join("a");
/// std::fs::write(&path, b"x")?;
/// counter.record_path(OpKind::Stat, &path); // classified by its metadata
/// remove(&counter, &path)?;
/// assert!(remove(&counter, &path).is_err()); // failed, still counted
///
/// let counts = counter.counts();
/// assert_eq!(counts.get(OpKind::Stat, Target::File), 1);
/// assert_eq!(counts.of(OpKind::Remove), 2);
/// assert_eq!(counts.to_string(), "remove file 2, stat file 1");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct OpCounter {
    counts: Arc<Mutex<BTreeMap<(OpKind, Target), u64>>>,
}

impl OpCounter {
    /// A counter at zero.
    #[must_use]
    pub fn new() -> OpCounter {
        OpCounter::default()
    }

    /// Counts one operation of `kind` on `target`.
    pub fn record(&self, kind: OpKind, target: Target) {
        *self.counts.lock().entry((kind, target)).or_insert(0) += 1;
    }

    /// Counts one operation of `kind` on `path`, classified by
    /// [`Target::of_path`] at the time of the call: call it *before*
    /// delegating an operation that removes the path, *after* one that
    /// creates it.
    pub fn record_path(&self, kind: OpKind, path: &Path) {
        self.record(kind, Target::of_path(path));
    }

    /// A snapshot of the counts so far.
    #[must_use]
    pub fn counts(&self) -> OpCounts {
        OpCounts {
            counts: self.counts.lock().clone(),
        }
    }

    /// Zeroes the counts, e.g. after a fixture's own operations.
    pub fn reset(&self) {
        self.counts.lock().clear();
    }
}

impl fmt::Debug for OpCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpCounter")
            .field("counts", &self.counts().to_string())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_target() {
        let counter = OpCounter::new();
        counter.record(OpKind::Create, Target::File);
        counter.record(OpKind::Create, Target::File);
        counter.record(OpKind::SyncDir, Target::Dir);
        counter.record(OpKind::Stat, Target::Unknown);
        let c = counter.counts();
        assert_eq!(c.get(OpKind::Create, Target::File), 2);
        assert_eq!(c.get(OpKind::Create, Target::Dir), 0);
        assert_eq!(c.of(OpKind::SyncDir), 1);
        assert_eq!(c.on(Target::File), 2);
        assert_eq!(c.on(Target::Unknown), 1);
        assert_eq!(c.total(), 4);
        assert_eq!(
            c.to_string(),
            "create file 2, sync_dir dir 1, stat unknown 1"
        );
    }

    #[test]
    fn paths_are_classified_by_their_metadata() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").expect("write");
        assert_eq!(Target::of_path(&file), Target::File);
        assert_eq!(Target::of_path(dir.path()), Target::Dir);
        assert_eq!(
            Target::of_path(&dir.path().join("missing")),
            Target::Unknown
        );
        #[cfg(unix)]
        {
            assert_eq!(Target::of_path(Path::new("/dev/null")), Target::Unknown);
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&file, &link).expect("symlink");
            assert_eq!(Target::of_path(&link), Target::Unknown, "not followed");
        }
    }

    #[test]
    fn clones_share_counts_and_reset_zeroes_them() {
        let counter = OpCounter::new();
        let clone = counter.clone();
        clone.record(OpKind::Lock, Target::File);
        assert_eq!(counter.counts().total(), 1);
        counter.reset();
        assert_eq!(clone.counts(), OpCounts::default());
        assert_eq!(clone.counts().to_string(), "none");
        assert!(format!("{counter:?}").contains("none"));
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let counter = OpCounter::new();
        std::thread::scope(|scope| {
            for _ in 0..8 {
                let counter = counter.clone();
                scope.spawn(move || {
                    for _ in 0..500 {
                        counter.record(OpKind::Write, Target::File);
                    }
                });
            }
        });
        assert_eq!(counter.counts().of(OpKind::Write), 4000);
    }

    #[test]
    fn every_kind_has_a_distinct_name() {
        let mut names: Vec<&str> = OpKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OpKind::ALL.len());
    }
}
