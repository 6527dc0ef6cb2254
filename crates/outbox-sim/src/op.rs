//! Operation kinds and the op log every simulated file system keeps.

use std::fmt;
use std::path::PathBuf;

#[cfg(doc)]
use outbox::io::Io;

/// The kind of an [`Io`] operation, one per trait method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// [`Io::create_new`].
    CreateNew,
    /// [`Io::write_all`].
    WriteAll,
    /// [`Io::sync_file`].
    SyncFile,
    /// [`Io::open_read`].
    OpenRead,
    /// [`Io::rename`].
    Rename,
    /// [`Io::sync_dir`].
    SyncDir,
    /// [`Io::remove_file`].
    RemoveFile,
    /// [`Io::file_len`].
    FileLen,
    /// [`Io::create_dir_all`].
    CreateDirAll,
    /// [`Io::list_dir`].
    ListDir,
    /// [`Io::lock`].
    Lock,
    /// [`Io::open_append`].
    OpenAppend,
    /// [`Io::sync_data`].
    SyncData,
}

impl OpKind {
    /// Every kind, in declaration order.
    pub const ALL: [OpKind; 13] = [
        OpKind::CreateNew,
        OpKind::WriteAll,
        OpKind::SyncFile,
        OpKind::OpenRead,
        OpKind::Rename,
        OpKind::SyncDir,
        OpKind::RemoveFile,
        OpKind::FileLen,
        OpKind::CreateDirAll,
        OpKind::ListDir,
        OpKind::Lock,
        OpKind::OpenAppend,
        OpKind::SyncData,
    ];

    /// The trait method's name, e.g. `"sync_file"`.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::CreateNew => "create_new",
            OpKind::WriteAll => "write_all",
            OpKind::SyncFile => "sync_file",
            OpKind::OpenRead => "open_read",
            OpKind::Rename => "rename",
            OpKind::SyncDir => "sync_dir",
            OpKind::RemoveFile => "remove_file",
            OpKind::FileLen => "file_len",
            OpKind::CreateDirAll => "create_dir_all",
            OpKind::ListDir => "list_dir",
            OpKind::Lock => "lock",
            OpKind::OpenAppend => "open_append",
            OpKind::SyncData => "sync_data",
        }
    }

    /// True for the operations that change the file system (or its
    /// durability): create, write, fsync, rename, remove, mkdir, lock
    /// (which creates its lock file), open for append.
    pub fn is_mutating(self) -> bool {
        !matches!(self, OpKind::OpenRead | OpKind::FileLen | OpKind::ListDir)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of [`OpKind`]s: which operations a [`FaultPlan`](crate::FaultPlan) counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpKindSet(u16);

impl OpKindSet {
    /// Every operation.
    pub const ALL: OpKindSet = OpKindSet(0x1fff);

    /// The operations that change the file system; see
    /// [`OpKind::is_mutating`].
    pub fn mutating() -> Self {
        Self::of(OpKind::ALL.iter().copied().filter(|k| k.is_mutating()))
    }

    /// The fsync operations (fsync of a file or a directory, fdatasync).
    pub fn syncs() -> Self {
        Self::of([OpKind::SyncFile, OpKind::SyncDir, OpKind::SyncData])
    }

    /// The set holding exactly `kinds`.
    pub fn of(kinds: impl IntoIterator<Item = OpKind>) -> Self {
        OpKindSet(kinds.into_iter().fold(0, |m, k| m | k.bit()))
    }

    /// True when `kind` is in the set.
    pub fn contains(self, kind: OpKind) -> bool {
        self.0 & kind.bit() != 0
    }
}

/// One logged operation of a [`CrashIo`](crate::CrashIo) or [`FaultIo`](crate::FaultIo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Position in the log, from 0.
    pub index: usize,
    /// Which operation.
    pub kind: OpKind,
    /// The path it acted on; for [`OpKind::WriteAll`] and
    /// [`OpKind::SyncFile`], the path the file was created at.
    pub path: PathBuf,
    /// The target of a rename.
    pub to: Option<PathBuf>,
    /// Bytes passed to a write.
    pub len: Option<usize>,
    /// Whether the operation returned `Ok`.
    pub ok: bool,
    /// Whether the error was injected by the simulation (a power cut of a
    /// [`CrashIo`](crate::CrashIo), a planned fault of a [`FaultIo`](crate::FaultIo)) rather than returned by
    /// the file system.
    pub injected: bool,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {} {}", self.index, self.kind, self.path.display())?;
        if let Some(to) = &self.to {
            write!(f, " -> {}", to.display())?;
        }
        if let Some(len) = self.len {
            write!(f, " ({len} bytes)")?;
        }
        if self.injected {
            f.write_str(" [injected failure]")?;
        } else if !self.ok {
            f.write_str(" [failed]")?;
        }
        Ok(())
    }
}

/// The entries of `log` with an index of at least `from`.
pub(crate) fn entries_since(log: &[Op], from: usize) -> Vec<Op> {
    log.iter().filter(|o| o.index >= from).cloned().collect()
}
