//! The file-system seam.
//!
//! Every file-system operation of an [`Outbox`](crate::Outbox) goes through
//! the [`Io`] value the outbox was opened with. The trait's methods are the
//! primitives a crash can fall between (create, write, fsync a file, rename,
//! fsync a directory, remove, ...), so a crash-simulating implementation can
//! stop the world between any two of them, and a counting implementation can
//! read the fsync shape of every public operation off a test.
//!
//! Composite recipes such as "write a file durably" are built from these
//! primitives once, in this crate (its private `durable` module), never inside an `Io`
//! implementation.
//!
//! [`StdIo`] is the real implementation. Its fsync is injectable per
//! instance ([`StdIo::with_fsync`]), so a test can count fsyncs or stub them
//! out without swapping anything process-global.
//!
//! **Private files.** [`StdIo`] creates every file [`FILE_MODE`] (0600)
//! and every directory [`DIR_MODE`] (0700), whatever the process's umask:
//! the mode is asked for at creation (a umask can only clear bits of it,
//! never add any), and the new file or directory is then set to exactly
//! that mode (`fchmod`, `chmod`), so a umask that clears owner bits
//! (0277, say) cannot leave a file its own user cannot read back. Files
//! and directories that exist are never re-moded (`outbox doctor` reports
//! those that group or others can read). It opens existing files without
//! following a symbolic link (`O_NOFOLLOW`): the outbox's files are
//! regular files it created, and a link planted in a directory another
//! user can write must not redirect a read, an append or a lock.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The mode of every file [`StdIo`] creates: read and write for its owner
/// only.
pub const FILE_MODE: u32 = 0o600;
/// The mode of every directory [`StdIo`] creates: its owner only (the XDG
/// Base Directory rule for a directory it has to create).
pub const DIR_MODE: u32 = 0o700;

/// What kind of entry a path names, without following a final symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link (not followed).
    Symlink,
    /// Anything else (a socket, a device, a FIFO).
    Other,
}

/// Who owns an entry and who may use it: what [`Io::entry_meta`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    /// What the entry is.
    pub kind: EntryKind,
    /// Its permission bits, with the set-id and sticky bits (`mode & 0o7777`).
    pub mode: u32,
    /// The user id of its owner.
    pub uid: u32,
}

/// The file-system primitives the outbox is built from.
///
/// Implementations must be cheap to share across threads: an outbox holds one
/// `Io` value and calls it from every thread that uses the outbox.
///
/// Semantics every implementation must keep (the outbox's crash safety rests
/// on them):
/// - [`create_new`](Io::create_new) fails with `AlreadyExists` if the path
///   exists; it never truncates an existing file.
/// - Nothing written is durable until [`sync_file`](Io::sync_file) (or
///   [`sync_data`](Io::sync_data)) returned `Ok`; a new, renamed or removed
///   directory entry is not durable until [`sync_dir`](Io::sync_dir) of its
///   directory returned `Ok`.
/// - The entry changes of one directory reach the disk in the order they
///   were made: a crash keeps a prefix of them (ext4's ordered journal; the
///   crash model of `outbox-sim`). The outbox relies on this to skip a
///   directory fsync between a rename and a later removal in the same
///   directory.
/// - [`rename`](Io::rename) atomically replaces the target.
/// - An error from `sync_file`, `sync_data` or `sync_dir` is final: the caller must not
///   retry the fsync and treat a later success as covering the failed one.
pub trait Io: Send + Sync + 'static {
    /// An open, writable file created by [`create_new`](Io::create_new).
    /// Dropping it closes the file.
    type File: Send;
    /// A reader over a file's bytes, from [`open_read`](Io::open_read); it
    /// can seek, so a reader of an append-only file can resume where it
    /// stopped.
    type Reader: Read + Seek + Send;
    /// A held exclusive lock, from [`lock`](Io::lock); dropping it unlocks.
    type Lock: Send;

    /// Creates a new file at `path` for writing; fails if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Self::File>;
    /// Writes all of `data` at the end of what was written to `file` so far.
    fn write_all(&self, file: &mut Self::File, data: &[u8]) -> io::Result<()>;
    /// [`write_all`](Io::write_all), saying on failure how many leading
    /// bytes of `data` reached the file, so a caller can tell a write that
    /// changed nothing (ENOSPC on the first byte) from a short one. The
    /// default cannot tell ([`FailedWrite::written`] is `None`: any prefix
    /// may have been written).
    fn write_all_counted(&self, file: &mut Self::File, data: &[u8]) -> Result<(), FailedWrite> {
        self.write_all(file, data).map_err(|error| FailedWrite {
            written: None,
            error,
        })
    }
    /// Makes the contents of `file` durable (fsync).
    fn sync_file(&self, file: &mut Self::File) -> io::Result<()>;
    /// Opens the existing file at `path` for appending: every write goes to
    /// its end. `Ok(None)` when it does not exist. Also says whether the
    /// file is empty or ends in a newline, so an appender of lines can
    /// terminate a torn last line first.
    fn open_append(&self, path: &Path) -> io::Result<Option<Appending<Self::File>>>;
    /// Makes the data of `file` durable, with the metadata needed to read
    /// it back (its size), but not e.g. its modification time (fdatasync).
    /// Enough for a file whose directory entry is already durable.
    fn sync_data(&self, file: &mut Self::File) -> io::Result<()>;
    /// Opens `path` for reading; `Ok(None)` when it does not exist.
    fn open_read(&self, path: &Path) -> io::Result<Option<Self::Reader>>;
    /// Atomically renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the entries of directory `dir` durable (fsync of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Removes the file at `path`; `Ok(false)` when it did not exist.
    fn remove_file(&self, path: &Path) -> io::Result<bool>;
    /// The length of the file at `path`; `Ok(None)` when it does not exist.
    fn file_len(&self, path: &Path) -> io::Result<Option<u64>>;
    /// Creates `dir` and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries of `dir`; empty when it does not exist.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>>;
    /// A fresh 64-bit nonce for a file name (temporary and quarantine
    /// files) or a ledger generation. The default draws it at random from
    /// the operating system, unique across processes; a simulation
    /// overrides it with a seeded sequence so that a seed replays the same
    /// names (its runs are then comparable byte for byte).
    fn nonce(&self) -> u64 {
        crate::durable::nonce()
    }
    /// Takes an exclusive lock on the lock file at `path` (creating it),
    /// blocking until it is free. Excludes other processes; threads of one
    /// process are excluded by the outbox's own in-process locks.
    fn lock(&self, path: &Path) -> io::Result<Self::Lock>;

    /// The kind, mode and owner of the entry at `path`, not following a
    /// final symbolic link (`lstat`); `Ok(None)` when it does not exist.
    ///
    /// The outbox checks with it who can change the data root (see
    /// [`RootPolicy`](crate::RootPolicy)). The default answers
    /// `Unsupported`, for file systems without owners (the simulated ones
    /// of the tests): the outbox then skips those checks. Every
    /// implementation over a real file system must implement it, with
    /// [`canonicalize`](Io::canonicalize) and [`user_id`](Io::user_id).
    fn entry_meta(&self, path: &Path) -> io::Result<Option<EntryMeta>> {
        let _ = path;
        Err(io::ErrorKind::Unsupported.into())
    }

    /// `path` with every symbolic link resolved (`realpath`). The default
    /// returns it unchanged (see [`entry_meta`](Io::entry_meta)).
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        Ok(path.to_owned())
    }

    /// The user the outbox acts for (the effective user id): the owner a
    /// private data root must have. `None` (the default) for a file system
    /// without owners.
    fn user_id(&self) -> Option<u32> {
        None
    }
}

/// A failed [`Io::write_all_counted`]: the error, and how much of the data
/// reached the file.
#[derive(Debug)]
pub struct FailedWrite {
    /// How many leading bytes of the data reached the file (readers may
    /// see them); `None` when the implementation cannot tell, and then any
    /// prefix may have.
    pub written: Option<usize>,
    /// The operating system's error.
    pub error: io::Error,
}

/// A file opened by [`Io::open_append`].
#[derive(Debug)]
pub struct Appending<F> {
    /// The open file: every write goes to its end.
    pub file: F,
    /// Whether the file is empty or its last byte is `\n`. When it is not,
    /// the last line is torn (a writer died mid-line), and a new line
    /// appended as is would merge with it.
    pub ends_in_newline: bool,
}

/// The directory holding `path`'s entry: the one whose
/// [`sync_dir`](Io::sync_dir) makes a create, rename or removal of `path`
/// durable. `.` for a relative path of one component; the root for the
/// root.
///
/// ```
/// use std::path::Path;
/// use outbox::io::parent_dir;
///
/// assert_eq!(parent_dir(Path::new("/data/inboxes/p.jsonl")), Path::new("/data/inboxes"));
/// assert_eq!(parent_dir(Path::new("data")), Path::new("."));
/// assert_eq!(parent_dir(Path::new("/")), Path::new("/"));
/// ```
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        Some(_) => Path::new("."),
        None if path.as_os_str().is_empty() => Path::new("."),
        None => path,
    }
}

/// The signature of an fsync function: what [`StdIo`] calls to make an open
/// file or directory handle durable. The same shape as `testutil::FsyncFn`,
/// so a `testutil::FsyncCounter` hook plugs in as it is.
pub type FsyncFn = dyn Fn(&File) -> io::Result<()> + Send + Sync + 'static;

/// The real file system, with an injectable fsync.
///
/// The default fsync is [`File::sync_all`]. Tests plug in a counting or
/// no-op function with [`StdIo::with_fsync`]; the choice belongs to this
/// value alone, so parallel tests never race on a global.
#[derive(Clone)]
pub struct StdIo {
    fsync: Arc<FsyncFn>,
    fdatasync: Arc<FsyncFn>,
}

impl std::fmt::Debug for StdIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdIo").finish_non_exhaustive()
    }
}

impl Default for StdIo {
    fn default() -> Self {
        Self::new()
    }
}

impl StdIo {
    /// The real file system with the real fsync ([`File::sync_all`]) and
    /// fdatasync ([`File::sync_data`]).
    pub fn new() -> Self {
        Self {
            fsync: Arc::new(File::sync_all),
            fdatasync: Arc::new(File::sync_data),
        }
    }

    /// The real file system with `fsync` called for every file and directory
    /// fsync and every fdatasync ([`Io::sync_data`]), e.g. a counter that
    /// delegates to `File::sync_all`, or a no-op for WARM walltime gates
    /// that must factor the disk out.
    pub fn with_fsync<F>(fsync: F) -> Self
    where
        F: Fn(&File) -> io::Result<()> + Send + Sync + 'static,
    {
        let fsync: Arc<FsyncFn> = Arc::new(fsync);
        Self {
            fdatasync: Arc::clone(&fsync),
            fsync,
        }
    }
}

/// A held `flock`-style exclusive lock on a lock file; released on drop.
#[derive(Debug)]
pub struct StdLock {
    file: File,
}

impl Drop for StdLock {
    fn drop(&mut self) {
        // Closing the descriptor releases the lock as well; unlocking first
        // just makes the release explicit. Nothing useful can be done with
        // an error here.
        let _ = self.file.unlock();
    }
}

/// Opens an existing file without following a final symbolic link; a link
/// is an error that says so (instead of `ELOOP`'s "too many levels of
/// symbolic links").
fn open_no_follow(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    options
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    e.kind(),
                    "is a symbolic link, not followed (the outbox's files are never links)",
                )
            } else {
                e
            }
        })
}

/// Creates a new file at `path` with [`FILE_MODE`], exactly.
fn create_private(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    let file = options.create_new(true).mode(FILE_MODE).open(path)?;
    // A umask can only have cleared bits: set the mode itself (fchmod).
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

fn not_found_to_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Io for StdIo {
    type File = File;
    type Reader = File;
    type Lock = StdLock;

    fn create_new(&self, path: &Path) -> io::Result<File> {
        create_private(OpenOptions::new().write(true), path)
    }

    fn write_all(&self, file: &mut File, data: &[u8]) -> io::Result<()> {
        file.write_all(data)
    }

    fn write_all_counted(&self, file: &mut File, data: &[u8]) -> Result<(), FailedWrite> {
        // `write_all`, counting: each `write` says how much it took.
        let mut written = 0;
        while written < data.len() {
            match file.write(&data[written..]) {
                Ok(0) => {
                    return Err(FailedWrite {
                        written: Some(written),
                        error: io::ErrorKind::WriteZero.into(),
                    });
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    return Err(FailedWrite {
                        written: Some(written),
                        error,
                    });
                }
            }
        }
        Ok(())
    }

    fn sync_file(&self, file: &mut File) -> io::Result<()> {
        (self.fsync)(file)
    }

    fn open_append(&self, path: &Path) -> io::Result<Option<Appending<File>>> {
        use std::os::unix::fs::FileExt;
        let Some(file) = not_found_to_none(open_no_follow(
            OpenOptions::new().read(true).append(true),
            path,
        ))?
        else {
            return Ok(None);
        };
        let len = file.metadata()?.len();
        let ends_in_newline = if len == 0 {
            true
        } else {
            let mut last = [0u8];
            file.read_exact_at(&mut last, len - 1)?;
            last[0] == b'\n'
        };
        Ok(Some(Appending {
            file,
            ends_in_newline,
        }))
    }

    fn sync_data(&self, file: &mut File) -> io::Result<()> {
        (self.fdatasync)(file)
    }

    fn open_read(&self, path: &Path) -> io::Result<Option<File>> {
        not_found_to_none(open_no_follow(OpenOptions::new().read(true), path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let handle = File::open(dir)?;
        (self.fsync)(&handle)
    }

    fn remove_file(&self, path: &Path) -> io::Result<bool> {
        Ok(not_found_to_none(fs::remove_file(path))?.is_some())
    }

    fn file_len(&self, path: &Path) -> io::Result<Option<u64>> {
        Ok(not_found_to_none(fs::metadata(path))?.map(|m| m.len()))
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        // The missing directories, outermost first, each created with
        // DIR_MODE exactly; one another process created first is left as
        // it is (the root checks judge it).
        let mut missing = Vec::new();
        let mut at = dir;
        while matches!(fs::symlink_metadata(at), Err(ref e) if e.kind() == io::ErrorKind::NotFound)
        {
            missing.push(at);
            match at.parent() {
                Some(up) if !up.as_os_str().is_empty() => at = up,
                _ => break,
            }
        }
        for created in missing.into_iter().rev() {
            match fs::DirBuilder::new().mode(DIR_MODE).create(created) {
                // Through a handle that did not follow a link: had another
                // user swapped the new directory for a link in between
                // (possible only in a shared root), a chmod by path would
                // change the link's target.
                Ok(()) => OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
                    .open(created)?
                    .set_permissions(Permissions::from_mode(DIR_MODE))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && created.is_dir() => {}
                Err(e) => return Err(e),
            }
        }
        if fs::metadata(dir)?.is_dir() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "exists and is not a directory",
            ))
        }
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        let Some(entries) = not_found_to_none(fs::read_dir(dir))? else {
            return Ok(Vec::new());
        };
        entries.map(|e| e.map(|e| e.file_name())).collect()
    }

    fn lock(&self, path: &Path) -> io::Result<StdLock> {
        // Open the lock file, or create it private; a link is not followed
        // (it could point a create at any file the user can write).
        let file = loop {
            match open_no_follow(OpenOptions::new().read(true).write(true), path) {
                Ok(file) => break file,
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                Err(_) => {}
            }
            match create_private(OpenOptions::new().read(true).write(true), path) {
                Ok(file) => break file,
                // Another process created it in between: open that one.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        };
        file.lock()?;
        Ok(StdLock { file })
    }

    fn entry_meta(&self, path: &Path) -> io::Result<Option<EntryMeta>> {
        let Some(meta) = not_found_to_none(fs::symlink_metadata(path))? else {
            return Ok(None);
        };
        let kind = meta.file_type();
        let kind = if kind.is_dir() {
            EntryKind::Dir
        } else if kind.is_file() {
            EntryKind::File
        } else if kind.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::Other
        };
        Ok(Some(EntryMeta {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
        }))
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        fs::canonicalize(path)
    }

    fn user_id(&self) -> Option<u32> {
        Some(rustix::process::geteuid().as_raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn injected_fsync_sees_file_and_directory_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let io = StdIo::with_fsync(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        let path = dir.path().join("f");
        let mut f = io.create_new(&path).unwrap();
        io.write_all(&mut f, b"abc").unwrap();
        io.sync_file(&mut f).unwrap();
        io.sync_dir(dir.path()).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(io.file_len(&path).unwrap(), Some(3));
    }

    #[test]
    fn create_new_refuses_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let io = StdIo::new();
        let path = dir.path().join("f");
        drop(io.create_new(&path).unwrap());
        let err = io.create_new(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn missing_files_are_none_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        let io = StdIo::new();
        let missing = dir.path().join("missing");
        assert!(io.open_read(&missing).unwrap().is_none());
        assert_eq!(io.file_len(&missing).unwrap(), None);
        assert!(!io.remove_file(&missing).unwrap());
        assert!(io.list_dir(&missing).unwrap().is_empty());
    }

    #[test]
    fn fsync_error_is_returned_not_swallowed() {
        let dir = tempfile::tempdir().unwrap();
        let io = StdIo::with_fsync(|_| Err(io::Error::other("injected EIO")));
        let mut f = io.create_new(&dir.path().join("f")).unwrap();
        let err = io.sync_file(&mut f).unwrap_err();
        assert_eq!(err.to_string(), "injected EIO");
        assert!(io.sync_dir(dir.path()).is_err());
    }
}
