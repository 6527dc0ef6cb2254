//! The durable-write recipe, composed once from [`Io`] primitives.
//!
//! `write_durable` is the only way the outbox replaces a file:
//!
//! 1. create a temporary file beside the target, with a name unique to this
//!    process and call (so two processes writing the same target never share
//!    a temp file), and write the new content;
//! 2. fsync the temporary file: its content is durable before any name
//!    points at it;
//! 3. rename it over the target: atomic, so readers see the old or the new
//!    content, never a torn file;
//! 4. fsync the directory: the rename itself is durable.
//!
//! Cost: exactly one file fsync and one directory fsync. A crash before step
//! 4 completes leaves the old content or the new one at the target, and at
//! worst a stray temporary file, which no reader looks at.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, IoContext, Result};
use crate::io::Io;

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The suffix that marks a temporary file of a durable write.
pub(crate) const TEMP_MARK: &str = ".tmp-";

/// Creates a fresh temporary file beside `target`.
pub(crate) fn create_temp<I: Io>(io: &I, target: &Path) -> Result<(PathBuf, I::File)> {
    let pid = std::process::id();
    let mut last_err = None;
    // A name can exist only if a crashed process with our pid left it; the
    // next sequence number is then free.
    for _ in 0..64 {
        let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let mut name = target.as_os_str().to_owned();
        name.push(format!("{TEMP_MARK}{pid}-{seq}"));
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

fn not_renamed(error: Error) -> WriteFailed {
    WriteFailed {
        renamed: false,
        error,
    }
}

/// Fsyncs a temp file, renames it over `target` and fsyncs the directory.
/// On any error before the rename the temp file is removed (best effort);
/// the error is returned, and a failed fsync is never retried.
pub(crate) fn install<I: Io>(
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
    let dir = target.parent().unwrap_or(Path::new("."));
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
    install(io, file, &temp, target)
}
