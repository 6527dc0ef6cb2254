//! Who can change the data root: the check an outbox runs before it first
//! touches its root, like ssh's `StrictModes`.
//!
//! A user who can write the data root, a directory of its layout, or a
//! directory above it can plant, remove or reorder another user's records,
//! or swap a directory for a symbolic link to somewhere else. So by default
//! ([`RootPolicy::Private`]) the outbox refuses:
//!
//! - the root and each directory of its layout (`inboxes/`, `runtime/` and
//!   the directories under it) when another user owns it or group or others
//!   can write it (a sticky bit does not help here: others could still
//!   create an inbox or a lock file);
//! - each directory above the root (up to `/`) when another user owns it,
//!   or group or others can write it without the sticky bit (`/tmp`, 1777,
//!   is fine: nobody else can rename or remove the entries it holds).
//!
//! "Another user" is anyone but the outbox's user ([`Io::user_id`]) and
//! root (uid 0), who can do anything anyway. A symbolic link on the way is
//! judged by where it points, and the directory holding the link by the
//! rules above. Directories that do not exist yet are created by the
//! outbox, [`DIR_MODE`](crate::io::DIR_MODE), and checked after.
//!
//! [`RootPolicy::Shared`] accepts such a root (a risk its user takes), but
//! still refuses a directory of the layout that is a symbolic link; and
//! [`StdIo`](crate::StdIo) never follows a symbolic link when it opens an
//! existing file. What no check closes: another user who can write the
//! root can replace a layout directory *after* the check (between two
//! operations), so a shared root is only as safe as its least trusted
//! writer.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::io::{EntryKind, EntryMeta, Io};
use crate::paths::{INBOX_DIR, LEDGER_DIR, STOP_BLOCKS_DIR, WAL_DIR};

/// The directories of the layout, relative to the root: what a
/// [`RootPolicy`] judges besides the root.
pub const LAYOUT_DIRS: [&str; 5] = [INBOX_DIR, "runtime", WAL_DIR, LEDGER_DIR, STOP_BLOCKS_DIR];

/// How an outbox treats a data root that is not its user's alone (see
/// [`Outbox::with_root_policy`](crate::Outbox::with_root_policy)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RootPolicy {
    /// Refuse a root, a directory of its layout or a directory above it
    /// that another user owns or can write ([`Error::UnsafeRoot`]). The
    /// default.
    #[default]
    Private,
    /// Accept such a root: anyone who can write it can plant, remove or
    /// reorder records. A directory of the layout that is a symbolic link
    /// is still refused.
    Shared,
}

/// Why [`Error::UnsafeRoot`] refused a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnsafeReason {
    /// Group or others can write it.
    Writable,
    /// Another user owns it.
    NotOwned,
    /// A directory of the layout is a symbolic link (refused under every
    /// policy).
    Symlink,
}

/// The facts of an [`Error::UnsafeRoot`]: which directory, why, and who
/// owns it with which mode.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnsafeRoot {
    /// The data root that was refused.
    pub root: PathBuf,
    /// The directory that made it unsafe: the root, a directory of its
    /// layout, or one above it.
    pub path: PathBuf,
    /// Its role.
    pub role: DirRole,
    /// Why.
    pub reason: UnsafeReason,
    /// Its permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Its owner's user id.
    pub owner: u32,
    /// The outbox's user id.
    pub user: u32,
}

/// Where a judged directory sits relative to the data root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DirRole {
    /// The root itself.
    Root,
    /// A directory of its layout.
    Layout,
    /// A directory above it.
    Ancestor,
}

impl UnsafeRoot {
    /// The command that fixes it, for a person to run.
    pub fn fix(&self) -> String {
        let path = self.path.display();
        match self.reason {
            UnsafeReason::Writable if self.role == DirRole::Ancestor => format!(
                "chmod go-w {path} (or chmod +t {path}, so nobody can rename what is not \
                 theirs), or choose a root elsewhere"
            ),
            UnsafeReason::Writable => format!("chmod go-w {path}"),
            UnsafeReason::NotOwned => format!(
                "use a directory of your own, or have it owned by you (chown {} {path})",
                self.user
            ),
            UnsafeReason::Symlink => {
                format!("replace the link {path} by a directory (or use a root of your own)")
            }
        }
    }
}

impl fmt::Display for UnsafeRoot {
    /// One line: the path, its mode and owner, the risk and the fix; the
    /// option that accepts it is the caller's to name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.role {
            DirRole::Root => "data root".to_owned(),
            DirRole::Layout => format!("directory of data root {}:", self.root.display()),
            DirRole::Ancestor => format!("directory above data root {}:", self.root.display()),
        };
        let why = match self.reason {
            UnsafeReason::Writable => {
                let who = match (self.mode & 0o020 != 0, self.mode & 0o002 != 0) {
                    (true, true) => "group and others",
                    (true, false) => "its group",
                    _ => "others",
                };
                format!("can be written by {who}")
            }
            UnsafeReason::NotOwned => {
                format!(
                    "is owned by uid {}, not by you (uid {})",
                    self.owner, self.user
                )
            }
            UnsafeReason::Symlink => "is a symbolic link in a shared root".to_owned(),
        };
        write!(
            f,
            "{what} {} {why} (mode {:04o}, owner uid {}): another user could plant, remove or \
             reorder records; fix: {}",
            self.path.display(),
            self.mode,
            self.owner,
            self.fix()
        )
    }
}

/// Judges `root` under `policy` (see the module docs). `Ok` when it is
/// safe, or when the file system has no owners (`Io::user_id` is `None`).
pub(crate) fn check_root<I: Io>(io: &I, root: &Path, policy: RootPolicy) -> Result<()> {
    let Some(user) = io.user_id() else {
        return Ok(());
    };
    let root_abs = std::path::absolute(root).at("make absolute", root)?;
    let mut judge = Judge {
        io,
        root: &root_abs,
        policy,
        user,
        seen: HashSet::new(),
    };
    for up in root_abs.ancestors().skip(1) {
        judge.ancestor(up)?;
    }
    judge.dir(&root_abs, DirRole::Root)?;
    for dir in LAYOUT_DIRS {
        judge.dir(&root_abs.join(dir), DirRole::Layout)?;
    }
    Ok(())
}

struct Judge<'a, I> {
    io: &'a I,
    root: &'a Path,
    policy: RootPolicy,
    user: u32,
    /// Directories already judged as ancestors.
    seen: HashSet<PathBuf>,
}

impl<I: Io> Judge<'_, I> {
    fn meta(&self, path: &Path) -> Result<Option<EntryMeta>> {
        match self.io.entry_meta(path) {
            Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(None),
            other => other.at("stat", path),
        }
    }

    /// A directory above the root (or above a link's target).
    fn ancestor(&mut self, dir: &Path) -> Result<()> {
        if !self.seen.insert(dir.to_owned()) {
            return Ok(());
        }
        match self.meta(dir)? {
            Some(meta) if meta.kind == EntryKind::Symlink => self.link_target(dir),
            Some(meta) if meta.kind == EntryKind::Dir => {
                let sticky = meta.mode & 0o1000 != 0;
                self.rule(dir, DirRole::Ancestor, meta, sticky)
            }
            // Missing (created later, ours) or not a directory (the
            // operation itself fails and says so).
            _ => Ok(()),
        }
    }

    /// The root or a directory of its layout.
    fn dir(&mut self, dir: &Path, role: DirRole) -> Result<()> {
        match self.meta(dir)? {
            Some(meta) if meta.kind == EntryKind::Symlink => {
                if role == DirRole::Layout && self.policy == RootPolicy::Shared {
                    return Err(self.refuse(dir, role, UnsafeReason::Symlink, meta));
                }
                // Judged by where it points.
                let target = self.io.canonicalize(dir).at("resolve", dir)?;
                for up in target.ancestors().skip(1) {
                    self.ancestor(up)?;
                }
                match self.meta(&target)? {
                    Some(meta) if meta.kind == EntryKind::Dir => {
                        self.rule(&target, role, meta, false)
                    }
                    _ => Ok(()),
                }
            }
            Some(meta) if meta.kind == EntryKind::Dir => self.rule(dir, role, meta, false),
            _ => Ok(()),
        }
    }

    /// Judges the directories a link on the way points to.
    fn link_target(&mut self, link: &Path) -> Result<()> {
        let target = self.io.canonicalize(link).at("resolve", link)?;
        let chain: Vec<PathBuf> = target.ancestors().map(Path::to_owned).collect();
        for dir in chain {
            self.ancestor(&dir)?;
        }
        Ok(())
    }

    /// Owner and mode of one directory; `sticky_ok` lets a sticky
    /// directory be writable by others (an ancestor's rule).
    fn rule(&self, dir: &Path, role: DirRole, meta: EntryMeta, sticky_ok: bool) -> Result<()> {
        if self.policy == RootPolicy::Shared {
            return Ok(());
        }
        if meta.uid != self.user && meta.uid != 0 {
            return Err(self.refuse(dir, role, UnsafeReason::NotOwned, meta));
        }
        if meta.mode & 0o022 != 0 && !sticky_ok {
            return Err(self.refuse(dir, role, UnsafeReason::Writable, meta));
        }
        Ok(())
    }

    fn refuse(&self, dir: &Path, role: DirRole, reason: UnsafeReason, meta: EntryMeta) -> Error {
        Error::UnsafeRoot(Box::new(UnsafeRoot {
            root: self.root.to_owned(),
            path: dir.to_owned(),
            role,
            reason,
            mode: meta.mode,
            owner: meta.uid,
            user: self.user,
        }))
    }
}
