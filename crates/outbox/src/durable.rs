//! The durable-write recipe, composed once from [`Io`] primitives.
//!
//! `write_durable` is the only way the outbox replaces a file:
//!
//! 1. create a temporary file beside the target, named
//!    `<target>.tmp-<16 hex digits>` from a random nonce (so two writers of
//!    the same target never share a temp file, whatever their pids or pid
//!    namespaces), and write the new content;
//! 2. fsync the temporary file: its content is durable before any name
//!    points at it;
//! 3. rename it over the target: atomic, so readers see the old or the new
//!    content, never a torn file;
//! 4. fsync the directory: the rename itself is durable.
//!
//! Cost: exactly one file fsync and one directory fsync. A crash before step
//! 4 completes leaves the old content or the new one at the target, and at
//! worst a stray temporary file, which no reader looks at.
//!
//! **Stray temporary files.** Every writer of a target holds the target's
//! lock from creating its temporary file until it renamed or removed it (the
//! inbox lock for an inbox and the quarantine files beside it, the parent's
//! drain lock for its WAL, ledger and Stop-hook guard). So a temporary file
//! of a target found while holding that lock belongs to a writer that was
//! killed: it is stale, whatever its age or pid, and the sweeps
//! ([`Outbox::sweep_stale`](crate::Outbox::sweep_stale)) remove it under
//! that lock.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, IoContext, Result};
use crate::io::{Io, parent_dir};
use crate::paths::TEMP_MARK;

/// A random 64-bit nonce for a file name. `RandomState` keys its hasher
/// with randomness from the operating system (fresh keys per value), so two
/// processes draw unrelated nonces even when they share a pid (separate pid
/// namespaces, a pid reused after a crash); the counter, pid and clock make
/// the input of every call distinct on top of that.
pub(crate) fn nonce() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// Creates a fresh temporary file beside `target`:
/// `<target>.tmp-<16 hex digits>`.
pub(crate) fn create_temp<I: Io>(io: &I, target: &Path) -> Result<(PathBuf, I::File)> {
    let mut last_err = None;
    // A name is taken only if another writer drew the same 64-bit nonce:
    // draw again.
    for _ in 0..64 {
        let mut name = target.as_os_str().to_owned();
        name.push(format!("{TEMP_MARK}{:016x}", io.nonce()));
        let path = PathBuf::from(name);
        match io.create_new(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => return Err(e).at("create temp file", &path),
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("no free temp name")))
        .at("create temp file", target)
}

/// A durable write that failed.
#[derive(Debug)]
pub(crate) struct WriteFailed {
    /// Whether the rename over the target happened (only the directory fsync
    /// failed): the new content may then be visible, and may or may not
    /// survive a crash.
    pub renamed: bool,
    /// What failed.
    pub error: Error,
}

impl From<WriteFailed> for Error {
    fn from(f: WriteFailed) -> Self {
        f.error
    }
}

impl WriteFailed {
    /// A failure before the rename: the target is untouched.
    pub(crate) fn not_renamed(error: Error) -> Self {
        WriteFailed {
            renamed: false,
            error,
        }
    }
}

fn not_renamed(error: Error) -> WriteFailed {
    WriteFailed::not_renamed(error)
}

/// Fsyncs a temp file, renames it over `target` and fsyncs the directory.
/// On any error before the rename the temp file is removed (best effort);
/// the error is returned, and a failed fsync is never retried.
pub(crate) fn rename_into_place<I: Io>(
    io: &I,
    mut file: I::File,
    temp: &Path,
    target: &Path,
) -> Result<(), WriteFailed> {
    let result = io
        .sync_file(&mut file)
        .at("fsync file", temp)
        .and_then(|()| {
            drop(file);
            io.rename(temp, target).map_err(|source| Error::Io {
                op: "rename",
                path: temp.to_owned(),
                to: Some(target.to_owned()),
                source,
            })
        });
    if let Err(e) = result {
        let _ = io.remove_file(temp);
        return Err(not_renamed(e));
    }
    let dir = parent_dir(target);
    io.sync_dir(dir)
        .at("fsync directory", dir)
        .map_err(|error| WriteFailed {
            renamed: true,
            error,
        })
}

/// Replaces `target` with `data`, durably: one file fsync, one directory
/// fsync (see the module docs for the order and why).
pub(crate) fn write_durable<I: Io>(io: &I, target: &Path, data: &[u8]) -> Result<(), WriteFailed> {
    let (temp, mut file) = create_temp(io, target).map_err(not_renamed)?;
    if let Err(e) = io.write_all(&mut file, data).at("write", &temp) {
        drop(file);
        let _ = io.remove_file(&temp);
        return Err(not_renamed(e));
    }
    rename_into_place(io, file, &temp, target)
}

/// Replaces `target` with `data` atomically, without the directory fsync:
/// create a temporary file beside it, write, fsync it, rename it over
/// `target`. One file fsync.
///
/// The content is durable before any name points at it, but the rename is
/// not durable yet: a crash leaves the old content or the new. Use it only
/// where either is correct until a later entry change of the same
/// directory, which (entries of one directory reach the disk in order, see
/// [`Io`]) cannot survive a crash without this rename.
pub(crate) fn write_renamed<I: Io>(io: &I, target: &Path, data: &[u8]) -> Result<()> {
    let (temp, mut file) = create_temp(io, target)?;
    let written = io
        .write_all(&mut file, data)
        .at("write", &temp)
        .and_then(|()| io.sync_file(&mut file).at("fsync file", &temp));
    drop(file);
    let result = written.and_then(|()| {
        io.rename(&temp, target).map_err(|source| Error::Io {
            op: "rename",
            path: temp.clone(),
            to: Some(target.to_owned()),
            source,
        })
    });
    if result.is_err() {
        let _ = io.remove_file(&temp);
    }
    result
}
