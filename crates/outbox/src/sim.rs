//! Simulated file systems for proving the outbox's crash safety.
//!
//! Two [`Io`] implementations built for tests (they live in the library so
//! integration tests, benches and downstream crates can use them):
//!
//! - [`CrashIo`]: an in-memory file system that models the page cache. File
//!   data is durable only up to the last [`sync_file`](Io::sync_file);
//!   creates, renames and unlinks are durable only once
//!   [`sync_dir`](Io::sync_dir) of the directory they touched returned.
//!   An op budget ([`CrashIo::crash_after`]) cuts the power after a chosen
//!   number of operations, and [`CrashIo::crash_image`] returns what a
//!   reboot would find: the worst legal outcome, where every un-synced byte
//!   and every un-synced directory operation is lost.
//!   [`CrashIo::crash_images`] enumerates the other legal outcomes as well.
//!   [`CrashIo::from_image`] "reboots" into a surviving image.
//! - [`FaultIo`]: wraps any [`Io`] and fails the k-th operation with a chosen
//!   error (ENOSPC, EIO, EACCES, ...), once or from k on, and logs every
//!   operation so a test can check what the caller did after the fault.
//!
//! Both keep an op log of [`Op`] values ("#7 rename /r/wal.tmp -> /r/wal")
//! so a failing test can say exactly where the crash or fault fell.
//!
//! # The crash model
//!
//! - Files are only ever created empty and appended to (that is all the
//!   [`Io`] trait offers), so a file's durable content is always a prefix of
//!   its current content: the bytes covered by its last successful fsync.
//!   At a crash the un-synced tail may be lost entirely (the worst outcome),
//!   kept, torn in the middle of a write, or kept in length but zero-filled
//!   (the inode size reached the disk, the data blocks did not).
//! - Every directory has an ordered queue of un-synced entry operations.
//!   At a crash, each directory keeps some prefix of its queue (journaled
//!   file systems commit metadata in order); the worst outcome keeps none.
//!   A rename inside one directory is one atomic queue item; a rename across
//!   two directories is two items, one per directory, so a crash can leave
//!   the file under both names or under neither unless both directories were
//!   synced.
//! - Creating a directory is an entry operation of its parent like any other:
//!   a directory whose creation was never made durable by a sync of its
//!   parent vanishes at a crash, with everything in it.
//! - After a crash every operation fails, like a machine that lost power.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Cursor};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::io::Io;

// ---------------------------------------------------------------------------
// Operation kinds and the op log
// ---------------------------------------------------------------------------

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
}

impl OpKind {
    /// Every kind, in declaration order.
    pub const ALL: [OpKind; 11] = [
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
        }
    }

    /// True for the operations that change the file system (or its
    /// durability): create, write, fsync, rename, remove, mkdir, lock
    /// (which creates its lock file).
    pub fn is_mutating(self) -> bool {
        !matches!(self, OpKind::OpenRead | OpKind::FileLen | OpKind::ListDir)
    }

    /// True for the two fsync operations.
    pub fn is_sync(self) -> bool {
        matches!(self, OpKind::SyncFile | OpKind::SyncDir)
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

/// A set of [`OpKind`]s: which operations a [`FaultPlan`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpKinds(u16);

impl OpKinds {
    /// Every operation.
    pub const ALL: OpKinds = OpKinds(0x7ff);
    /// No operation.
    pub const NONE: OpKinds = OpKinds(0);

    /// The operations that change the file system; see
    /// [`OpKind::is_mutating`].
    pub fn mutating() -> Self {
        Self::of(OpKind::ALL.iter().copied().filter(|k| k.is_mutating()))
    }

    /// The two fsync operations.
    pub fn syncs() -> Self {
        Self::of([OpKind::SyncFile, OpKind::SyncDir])
    }

    /// The set holding exactly `kinds`.
    pub fn of(kinds: impl IntoIterator<Item = OpKind>) -> Self {
        OpKinds(kinds.into_iter().fold(0, |m, k| m | k.bit()))
    }

    /// True when `kind` is in the set.
    pub fn contains(self, kind: OpKind) -> bool {
        self.0 & kind.bit() != 0
    }
}

/// One logged operation of a [`CrashIo`] or [`FaultIo`].
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
    /// [`CrashIo`], a planned fault of a [`FaultIo`]) rather than returned by
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
fn entries_since(log: &[Op], from: usize) -> Vec<Op> {
    log.iter().filter(|o| o.index >= from).cloned().collect()
}

// ---------------------------------------------------------------------------
// File-system images
// ---------------------------------------------------------------------------

/// A file-system snapshot: what a reboot sees, or the state to boot from.
///
/// Directories are listed explicitly (an empty directory is part of the
/// image); every ancestor of a listed file or directory is listed too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FsImage {
    /// Every directory, by absolute path (the root `/` is implied).
    pub dirs: BTreeSet<PathBuf>,
    /// Every file, by absolute path, with its bytes.
    pub files: BTreeMap<PathBuf, Vec<u8>>,
}

impl FsImage {
    /// The bytes of the file at `path`, if it exists.
    pub fn file(&self, path: impl AsRef<Path>) -> Option<&[u8]> {
        self.files.get(&normalize(path.as_ref())).map(Vec::as_slice)
    }

    /// The files directly inside `dir`, as `(name, bytes)`.
    pub fn files_in(&self, dir: impl AsRef<Path>) -> Vec<(OsString, &[u8])> {
        let dir = normalize(dir.as_ref());
        self.files
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir.as_path()))
            .filter_map(|(p, d)| Some((p.file_name()?.to_owned(), d.as_slice())))
            .collect()
    }
}

impl fmt::Display for FsImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.dirs {
            writeln!(f, "{}/", d.display())?;
        }
        for (p, data) in &self.files {
            writeln!(f, "{} ({} bytes)", p.display(), data.len())?;
        }
        Ok(())
    }
}

/// Makes `path` absolute and drops `.` components. `..` pops a component.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The normal components of `path`.
fn components(path: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for c in normalize(path).components() {
        if let Component::Normal(n) = c {
            out.push(n.to_owned());
        }
    }
    out
}

// ---------------------------------------------------------------------------
// CrashIo
// ---------------------------------------------------------------------------

type Ino = u64;
const ROOT: Ino = 0;

/// One entry change in a directory's un-synced queue: `name` now points at
/// `Some(inode)` or is removed (`None`).
type EntryChange = (OsString, Option<Ino>);

#[derive(Debug, Clone)]
struct FileNode {
    /// Current content (page cache).
    data: Vec<u8>,
    /// `data[..synced_len]` is durable.
    synced_len: usize,
    /// End offsets of the writes made after the last sync.
    unsynced_write_ends: Vec<usize>,
}

#[derive(Debug, Clone, Default)]
struct DirNode {
    /// Current entries.
    entries: BTreeMap<OsString, Ino>,
    /// Entries as of the last sync of this directory.
    durable: BTreeMap<OsString, Ino>,
    /// Entry changes since the last sync, in order; each item is atomic.
    pending: Vec<Vec<EntryChange>>,
}

impl DirNode {
    fn change(&mut self, item: Vec<EntryChange>) {
        for (name, target) in &item {
            match target {
                Some(ino) => self.entries.insert(name.clone(), *ino),
                None => self.entries.remove(name),
            };
        }
        self.pending.push(item);
    }

    /// The entries a crash leaves when the first `kept` queued items made
    /// it to disk.
    fn entries_after_crash(&self, kept: usize) -> BTreeMap<OsString, Ino> {
        let mut entries = self.durable.clone();
        for item in &self.pending[..kept] {
            for (name, target) in item {
                match target {
                    Some(ino) => entries.insert(name.clone(), *ino),
                    None => entries.remove(name),
                };
            }
        }
        entries
    }
}

#[derive(Debug, Clone)]
enum Node {
    File(FileNode),
    Dir(DirNode),
}

#[derive(Debug, Clone)]
struct SimFs {
    nodes: HashMap<Ino, Node>,
    next_ino: Ino,
    /// Index of the next operation.
    ops_started: usize,
    /// Operations with index `>= crash_at` fail: the power is cut.
    crash_at: Option<usize>,
    log: Vec<Op>,
    log_enabled: bool,
    /// Fsyncs return `Ok` and persist nothing (a lying disk).
    lying_fsync: bool,
}

/// An error for a path, shaped like the OS's.
fn err(kind: io::ErrorKind, what: &str, path: &Path) -> io::Error {
    io::Error::new(kind, format!("{what}: {}", path.display()))
}

fn power_cut() -> io::Error {
    io::Error::other("simulated power cut: the machine is off")
}

impl SimFs {
    fn new() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::Dir(DirNode::default()));
        SimFs {
            nodes,
            next_ino: ROOT + 1,
            ops_started: 0,
            crash_at: None,
            log: Vec::new(),
            log_enabled: true,
            lying_fsync: false,
        }
    }

    fn alloc(&mut self, node: Node) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        ino
    }

    fn dir(&self, ino: Ino) -> Option<&DirNode> {
        match self.nodes.get(&ino) {
            Some(Node::Dir(d)) => Some(d),
            _ => None,
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> &mut DirNode {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir(d)) => d,
            _ => unreachable!("inode {ino} is not a directory"),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> Option<&mut FileNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(f)) => Some(f),
            _ => None,
        }
    }

    /// The inode at `path` (current state), if any.
    fn lookup(&self, path: &Path) -> Option<Ino> {
        let mut ino = ROOT;
        for c in components(path) {
            ino = *self.dir(ino)?.entries.get(&c)?;
        }
        Some(ino)
    }

    /// The directory inode holding `path` and the final name. Errors like
    /// the OS when the parent is missing or not a directory.
    fn parent_of(&self, path: &Path) -> io::Result<(Ino, OsString)> {
        let mut comps = components(path);
        let Some(name) = comps.pop() else {
            return Err(err(
                io::ErrorKind::InvalidInput,
                "the root has no parent",
                path,
            ));
        };
        let mut ino = ROOT;
        for c in &comps {
            let dir = self
                .dir(ino)
                .ok_or_else(|| err(io::ErrorKind::NotADirectory, "not a directory", path))?;
            ino = *dir
                .entries
                .get(c)
                .ok_or_else(|| err(io::ErrorKind::NotFound, "no such directory", path))?;
        }
        if self.dir(ino).is_none() {
            return Err(err(io::ErrorKind::NotADirectory, "not a directory", path));
        }
        Ok((ino, name))
    }

    /// Starts operation `kind`: logs it and fails it if the power is cut.
    fn begin(
        &mut self,
        kind: OpKind,
        path: &Path,
        to: Option<&Path>,
        len: Option<usize>,
    ) -> io::Result<usize> {
        let index = self.ops_started;
        self.ops_started += 1;
        let cut = self.crash_at.is_some_and(|at| index >= at);
        if self.log_enabled {
            self.log.push(Op {
                index,
                kind,
                path: normalize(path),
                to: to.map(normalize),
                len,
                ok: !cut,
                injected: cut,
            });
        }
        if cut { Err(power_cut()) } else { Ok(index) }
    }

    /// Records the outcome of operation `index` in the log.
    fn finish<T>(&mut self, index: usize, r: io::Result<T>) -> io::Result<T> {
        if r.is_err()
            && self.log_enabled
            && let Some(op) = self.log.iter_mut().rev().find(|o| o.index == index)
        {
            op.ok = false;
        }
        r
    }

    fn create_new(&mut self, path: &Path) -> io::Result<Ino> {
        let (dir, name) = self.parent_of(path)?;
        if self.dir(dir).is_some_and(|d| d.entries.contains_key(&name)) {
            return Err(err(io::ErrorKind::AlreadyExists, "file exists", path));
        }
        let ino = self.alloc(Node::File(FileNode {
            data: Vec::new(),
            synced_len: 0,
            unsynced_write_ends: Vec::new(),
        }));
        self.dir_mut(dir).change(vec![(name, Some(ino))]);
        Ok(ino)
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let (from_dir, from_name) = self.parent_of(from)?;
        let (to_dir, to_name) = self.parent_of(to)?;
        let ino = *self
            .dir(from_dir)
            .and_then(|d| d.entries.get(&from_name))
            .ok_or_else(|| err(io::ErrorKind::NotFound, "no such file", from))?;
        if from_dir == to_dir && from_name == to_name {
            return Ok(());
        }
        if let Some(target) = self.dir(to_dir).and_then(|d| d.entries.get(&to_name))
            && matches!(self.nodes.get(target), Some(Node::Dir(_)))
        {
            return Err(err(io::ErrorKind::IsADirectory, "is a directory", to));
        }
        if from_dir == to_dir {
            self.dir_mut(from_dir)
                .change(vec![(to_name, Some(ino)), (from_name, None)]);
        } else {
            self.dir_mut(to_dir).change(vec![(to_name, Some(ino))]);
            self.dir_mut(from_dir).change(vec![(from_name, None)]);
        }
        Ok(())
    }

    fn remove_file(&mut self, path: &Path) -> io::Result<bool> {
        let (dir, name) = match self.parent_of(path) {
            Ok(v) => v,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let Some(&ino) = self.dir(dir).and_then(|d| d.entries.get(&name)) else {
            return Ok(false);
        };
        if matches!(self.nodes.get(&ino), Some(Node::Dir(_))) {
            return Err(err(io::ErrorKind::IsADirectory, "is a directory", path));
        }
        self.dir_mut(dir).change(vec![(name, None)]);
        Ok(true)
    }

    fn create_dir_all(&mut self, path: &Path) -> io::Result<()> {
        let mut ino = ROOT;
        for c in components(path) {
            let next = self.dir(ino).and_then(|d| d.entries.get(&c)).copied();
            ino = match next {
                Some(n) if self.dir(n).is_some() => n,
                Some(_) => return Err(err(io::ErrorKind::AlreadyExists, "file exists", path)),
                None => {
                    let n = self.alloc(Node::Dir(DirNode::default()));
                    self.dir_mut(ino).change(vec![(c, Some(n))]);
                    n
                }
            };
        }
        Ok(())
    }

    /// Creates a file or directory durably, bypassing the op log (setup).
    fn install(&mut self, path: &Path, content: Option<&[u8]>) {
        let comps = components(path);
        let mut ino = ROOT;
        for (i, c) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let existing = self.dir(ino).and_then(|d| d.entries.get(c)).copied();
            let child = match (existing, last, content) {
                (Some(n), false, _) | (Some(n), true, None) => n,
                (_, true, Some(bytes)) => self.alloc(Node::File(FileNode {
                    data: bytes.to_vec(),
                    synced_len: bytes.len(),
                    unsynced_write_ends: Vec::new(),
                })),
                (None, _, _) => self.alloc(Node::Dir(DirNode::default())),
            };
            let dir = self.dir_mut(ino);
            dir.entries.insert(c.clone(), child);
            dir.durable.insert(c.clone(), child);
            ino = child;
        }
    }

    /// Every way a crash can resolve, as the choices it is made of.
    fn crash_dimensions(&self) -> Vec<Dimension> {
        let mut dims = Vec::new();
        let mut referenced = BTreeSet::new();
        let mut dir_inos: Vec<&Ino> = self.nodes.keys().collect();
        dir_inos.sort();
        for &ino in dir_inos {
            if let Some(Node::Dir(d)) = self.nodes.get(&ino) {
                if !d.pending.is_empty() {
                    dims.push(Dimension::Dir {
                        ino,
                        choices: d.pending.len() + 1,
                    });
                }
                referenced.extend(d.durable.values().copied());
                for item in &d.pending {
                    referenced.extend(item.iter().filter_map(|(_, t)| *t));
                }
            }
        }
        for ino in referenced {
            if let Some(Node::File(f)) = self.nodes.get(&ino) {
                let variants = file_variants(f);
                if variants.len() > 1 {
                    dims.push(Dimension::File { ino, variants });
                }
            }
        }
        dims
    }

    /// The image a reboot sees when each dimension resolves to `choice[i]`.
    fn image_for(&self, dims: &[Dimension], choice: &[usize]) -> FsImage {
        let mut kept: HashMap<Ino, usize> = HashMap::new();
        let mut content: HashMap<Ino, Vec<u8>> = HashMap::new();
        for (dim, &c) in dims.iter().zip(choice) {
            match dim {
                Dimension::Dir { ino, .. } => {
                    kept.insert(*ino, c);
                }
                Dimension::File { ino, variants } => {
                    content.insert(*ino, variants[c].clone());
                }
            }
        }
        let mut image = FsImage::default();
        let mut visiting = HashSet::new();
        self.walk_crashed(
            ROOT,
            PathBuf::from("/"),
            &kept,
            &content,
            &mut image,
            &mut visiting,
        );
        image
    }

    fn walk_crashed(
        &self,
        ino: Ino,
        path: PathBuf,
        kept: &HashMap<Ino, usize>,
        content: &HashMap<Ino, Vec<u8>>,
        image: &mut FsImage,
        visiting: &mut HashSet<Ino>,
    ) {
        let Some(dir) = self.dir(ino) else { return };
        if !visiting.insert(ino) {
            return;
        }
        let entries = dir.entries_after_crash(kept.get(&ino).copied().unwrap_or(0));
        for (name, child) in entries {
            let child_path = path.join(&name);
            match self.nodes.get(&child) {
                Some(Node::Dir(_)) => {
                    image.dirs.insert(child_path.clone());
                    self.walk_crashed(child, child_path, kept, content, image, visiting);
                }
                Some(Node::File(f)) => {
                    let bytes = content
                        .get(&child)
                        .cloned()
                        .unwrap_or_else(|| f.data[..f.synced_len].to_vec());
                    image.files.insert(child_path, bytes);
                }
                None => {}
            }
        }
        visiting.remove(&ino);
    }

    fn current_image(&self) -> FsImage {
        let mut image = FsImage::default();
        self.walk_current(ROOT, PathBuf::from("/"), &mut image, &mut HashSet::new());
        image
    }

    fn walk_current(
        &self,
        ino: Ino,
        path: PathBuf,
        image: &mut FsImage,
        visiting: &mut HashSet<Ino>,
    ) {
        let Some(dir) = self.dir(ino) else { return };
        if !visiting.insert(ino) {
            return;
        }
        for (name, &child) in &dir.entries {
            let child_path = path.join(name);
            match self.nodes.get(&child) {
                Some(Node::Dir(_)) => {
                    image.dirs.insert(child_path.clone());
                    self.walk_current(child, child_path, image, visiting);
                }
                Some(Node::File(f)) => {
                    image.files.insert(child_path, f.data.clone());
                }
                None => {}
            }
        }
        visiting.remove(&ino);
    }
}

/// The contents a crash may leave in a file, worst (durable prefix only)
/// first, deduplicated.
fn file_variants(f: &FileNode) -> Vec<Vec<u8>> {
    let durable = &f.data[..f.synced_len];
    let mut out: Vec<Vec<u8>> = vec![durable.to_vec()];
    if f.data.len() > f.synced_len {
        // Torn in the middle of the last un-synced write.
        let last_start = f
            .unsynced_write_ends
            .iter()
            .rev()
            .nth(1)
            .copied()
            .unwrap_or(f.synced_len)
            .max(f.synced_len);
        let torn = last_start + (f.data.len() - last_start) / 2;
        out.push(f.data[..torn].to_vec());
        // Every un-synced write boundary except the full length: each
        // completed write kept, the following ones lost.
        for &end in &f.unsynced_write_ends {
            if end > f.synced_len && end < f.data.len() {
                out.push(f.data[..end].to_vec());
            }
        }
        // Size reached the disk, data did not.
        let mut zeroed = durable.to_vec();
        zeroed.resize(f.data.len(), 0);
        out.push(zeroed);
        // Everything kept.
        out.push(f.data.clone());
    }
    let mut seen = HashSet::new();
    out.retain(|v| seen.insert(v.clone()));
    out
}

#[derive(Debug, Clone)]
enum Dimension {
    /// How many of a directory's queued entry changes survive.
    Dir { ino: Ino, choices: usize },
    /// Which content an un-synced file keeps.
    File { ino: Ino, variants: Vec<Vec<u8>> },
}

impl Dimension {
    fn choices(&self) -> usize {
        match self {
            Dimension::Dir { choices, .. } => *choices,
            Dimension::File { variants, .. } => variants.len(),
        }
    }
}

#[derive(Debug, Default)]
struct LockTable {
    held: Mutex<HashSet<PathBuf>>,
    freed: Condvar,
}

/// A held lock of a [`CrashIo`]; dropping it releases the lock.
#[derive(Debug)]
pub struct SimLock {
    table: Arc<LockTable>,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.table.held.lock().remove(&self.path);
        self.table.freed.notify_all();
    }
}

/// An open, writable file of a [`CrashIo`].
#[derive(Debug)]
pub struct SimFile {
    ino: Ino,
    path: PathBuf,
}

impl SimFile {
    /// The path the file was created at.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// An in-memory [`Io`] that models the page cache and cuts the power on
/// request; see the [module docs](self) for the crash model.
///
/// Clones share one file system, so a test can keep a handle while an
/// outbox owns another.
///
/// ```
/// use outbox::io::Io;
/// use outbox::sim::CrashIo;
/// use std::path::Path;
///
/// let io = CrashIo::new();
/// io.install_dir("/data");
/// let mut f = io.create_new(Path::new("/data/a")).unwrap();
/// io.write_all(&mut f, b"hello").unwrap();
/// io.sync_file(&mut f).unwrap();
/// // The data is durable, the directory entry is not: a crash loses the file.
/// assert_eq!(io.crash_image().file("/data/a"), None);
/// io.sync_dir(Path::new("/data")).unwrap();
/// assert_eq!(io.crash_image().file("/data/a"), Some(&b"hello"[..]));
/// ```
#[derive(Clone)]
pub struct CrashIo {
    fs: Arc<Mutex<SimFs>>,
    locks: Arc<LockTable>,
}

impl fmt::Debug for CrashIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fs = self.fs.lock();
        f.debug_struct("CrashIo")
            .field("ops", &fs.ops_started)
            .field("crash_at", &fs.crash_at)
            .finish_non_exhaustive()
    }
}

impl Default for CrashIo {
    fn default() -> Self {
        Self::new()
    }
}

impl CrashIo {
    /// An empty file system holding only the root directory `/`.
    pub fn new() -> Self {
        CrashIo {
            fs: Arc::new(Mutex::new(SimFs::new())),
            locks: Arc::new(LockTable::default()),
        }
    }

    /// A file system holding exactly `image`, all of it durable: the machine
    /// after a reboot.
    pub fn from_image(image: &FsImage) -> Self {
        let io = Self::new();
        {
            let mut fs = io.fs.lock();
            for d in &image.dirs {
                fs.install(d, None);
            }
            for (p, data) in &image.files {
                fs.install(p, Some(data));
            }
        }
        io
    }

    /// An independent copy of this file system, page cache included (what
    /// is durable and what is not), op counter, log and pending power cut:
    /// run the same operation from the same state once per crash point.
    /// The copy shares nothing with `self`, not even held locks.
    pub fn fork(&self) -> Self {
        CrashIo {
            fs: Arc::new(Mutex::new(self.fs.lock().clone())),
            locks: Arc::new(LockTable::default()),
        }
    }

    /// Creates directory `dir` and its parents durably, without counting or
    /// logging an operation (test setup, e.g. the data root).
    pub fn install_dir(&self, dir: impl AsRef<Path>) {
        self.fs.lock().install(dir.as_ref(), None);
    }

    /// Creates the file at `path` with `content`, durably, creating its
    /// parents, without counting or logging an operation (test setup, e.g.
    /// a WAL left over by an earlier crash). Replaces an existing file.
    pub fn install_file(&self, path: impl AsRef<Path>, content: &[u8]) {
        self.fs.lock().install(path.as_ref(), Some(content));
    }

    /// Lets the next `k` operations succeed and cuts the power before the
    /// one after them: it and every later operation fail. `crash_after(0)`
    /// fails the very next operation.
    pub fn crash_after(&self, k: usize) {
        let mut fs = self.fs.lock();
        fs.crash_at = Some(fs.ops_started + k);
    }

    /// Removes a pending or past power cut: operations succeed again (the
    /// page-cache state is kept as it was).
    pub fn disarm(&self) {
        self.fs.lock().crash_at = None;
    }

    /// True once an operation failed because the power was cut.
    pub fn crashed(&self) -> bool {
        let fs = self.fs.lock();
        fs.crash_at.is_some_and(|at| fs.ops_started > at)
    }

    /// How many operations were started so far (including failed ones).
    pub fn op_count(&self) -> usize {
        self.fs.lock().ops_started
    }

    /// The op log, oldest first.
    pub fn ops(&self) -> Vec<Op> {
        self.fs.lock().log.clone()
    }

    /// The log entries from index `from` on.
    pub fn ops_since(&self, from: usize) -> Vec<Op> {
        entries_since(&self.fs.lock().log, from)
    }

    /// The last operation that succeeded before the power cut, if the power
    /// was cut after at least one operation: "crashed after op #k".
    pub fn last_op_before_crash(&self) -> Option<Op> {
        let fs = self.fs.lock();
        let at = fs.crash_at?;
        fs.log.iter().rev().find(|o| o.index < at).cloned()
    }

    /// Makes every later fsync (file and directory) return `Ok` without
    /// persisting anything, like a disk that lies about its write cache.
    /// Meant for checking that a crash test notices missing durability: with
    /// lying fsyncs, committed data must be seen lost.
    pub fn set_lying_fsync(&self, lie: bool) {
        self.fs.lock().lying_fsync = lie;
    }

    /// Turns the op log on or off (it is on by default; long stress runs may
    /// turn it off to save memory). Operations are counted either way.
    pub fn set_logging(&self, on: bool) {
        let mut fs = self.fs.lock();
        fs.log_enabled = on;
        if !on {
            fs.log.clear();
        }
    }

    /// What a reboot sees in the worst legal outcome of a crash now: every
    /// un-synced byte and every un-synced directory entry change is lost.
    pub fn crash_image(&self) -> FsImage {
        let fs = self.fs.lock();
        let dims = fs.crash_dimensions();
        fs.image_for(&dims, &vec![0; dims.len()])
    }

    /// The state without a crash: every write and entry change kept.
    pub fn current_image(&self) -> FsImage {
        self.fs.lock().current_image()
    }

    /// The number of legal crash outcomes now, before deduplication
    /// (saturating).
    pub fn crash_outcome_count(&self) -> usize {
        let fs = self.fs.lock();
        fs.crash_dimensions()
            .iter()
            .fold(1usize, |n, d| n.saturating_mul(d.choices()))
    }

    /// Distinct legal outcomes of a crash now, worst first
    /// ([`crash_image`](Self::crash_image)), at most `limit` of them.
    ///
    /// Each directory keeps some prefix of its un-synced entry changes and
    /// each un-synced file keeps none, some or all of its un-synced tail
    /// (or its length with zeroed data). When the full product of these
    /// choices fits in `limit` every combination is returned; otherwise the
    /// worst, the best (everything kept), and every outcome that differs
    /// from the worst or from the best in one choice.
    pub fn crash_images(&self, limit: usize) -> Vec<FsImage> {
        let fs = self.fs.lock();
        let dims = fs.crash_dimensions();
        let total = dims
            .iter()
            .fold(1usize, |n, d| n.saturating_mul(d.choices()));
        let mut choices: Vec<Vec<usize>> = Vec::new();
        if total <= limit {
            let mut choice = vec![0; dims.len()];
            'all: loop {
                choices.push(choice.clone());
                for (i, d) in dims.iter().enumerate() {
                    choice[i] += 1;
                    if choice[i] < d.choices() {
                        continue 'all;
                    }
                    choice[i] = 0;
                }
                break;
            }
        } else {
            let worst = vec![0; dims.len()];
            let best: Vec<usize> = dims.iter().map(|d| d.choices() - 1).collect();
            choices.push(worst.clone());
            choices.push(best.clone());
            for base in [&worst, &best] {
                for (i, d) in dims.iter().enumerate() {
                    for c in 0..d.choices() {
                        let mut v = base.clone();
                        v[i] = c;
                        choices.push(v);
                    }
                }
            }
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for c in choices {
            let image = fs.image_for(&dims, &c);
            if seen.insert(image.clone()) {
                out.push(image);
                if out.len() >= limit {
                    break;
                }
            }
        }
        out
    }

    fn op<T>(
        &self,
        kind: OpKind,
        path: &Path,
        to: Option<&Path>,
        len: Option<usize>,
        body: impl FnOnce(&mut SimFs) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut fs = self.fs.lock();
        let index = fs.begin(kind, path, to, len)?;
        let r = body(&mut fs);
        fs.finish(index, r)
    }
}

impl Io for CrashIo {
    type File = SimFile;
    type Reader = Cursor<Vec<u8>>;
    type Lock = SimLock;

    fn create_new(&self, path: &Path) -> io::Result<SimFile> {
        let ino = self.op(OpKind::CreateNew, path, None, None, |fs| {
            fs.create_new(path)
        })?;
        Ok(SimFile {
            ino,
            path: normalize(path),
        })
    }

    fn write_all(&self, file: &mut SimFile, data: &[u8]) -> io::Result<()> {
        self.op(OpKind::WriteAll, &file.path, None, Some(data.len()), |fs| {
            let f = fs
                .file_mut(file.ino)
                .ok_or_else(|| err(io::ErrorKind::Other, "bad file handle", &file.path))?;
            f.data.extend_from_slice(data);
            let end = f.data.len();
            f.unsynced_write_ends.push(end);
            Ok(())
        })
    }

    fn sync_file(&self, file: &mut SimFile) -> io::Result<()> {
        self.op(OpKind::SyncFile, &file.path, None, None, |fs| {
            if fs.lying_fsync {
                return Ok(());
            }
            let f = fs
                .file_mut(file.ino)
                .ok_or_else(|| err(io::ErrorKind::Other, "bad file handle", &file.path))?;
            f.synced_len = f.data.len();
            f.unsynced_write_ends.clear();
            Ok(())
        })
    }

    fn open_read(&self, path: &Path) -> io::Result<Option<Cursor<Vec<u8>>>> {
        self.op(OpKind::OpenRead, path, None, None, |fs| {
            match fs.lookup(path).and_then(|ino| fs.nodes.get(&ino)) {
                None => Ok(None),
                Some(Node::File(f)) => Ok(Some(Cursor::new(f.data.clone()))),
                Some(Node::Dir(_)) => Err(err(io::ErrorKind::IsADirectory, "is a directory", path)),
            }
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.op(OpKind::Rename, from, Some(to), None, |fs| {
            fs.rename(from, to)
        })
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.op(OpKind::SyncDir, dir, None, None, |fs| {
            let ino = fs
                .lookup(dir)
                .ok_or_else(|| err(io::ErrorKind::NotFound, "no such directory", dir))?;
            if fs.dir(ino).is_none() {
                return Err(err(io::ErrorKind::NotADirectory, "not a directory", dir));
            }
            if fs.lying_fsync {
                return Ok(());
            }
            let d = fs.dir_mut(ino);
            d.durable = d.entries.clone();
            d.pending.clear();
            Ok(())
        })
    }

    fn remove_file(&self, path: &Path) -> io::Result<bool> {
        self.op(OpKind::RemoveFile, path, None, None, |fs| {
            fs.remove_file(path)
        })
    }

    fn file_len(&self, path: &Path) -> io::Result<Option<u64>> {
        self.op(OpKind::FileLen, path, None, None, |fs| {
            Ok(match fs.lookup(path).and_then(|ino| fs.nodes.get(&ino)) {
                None => None,
                Some(Node::File(f)) => Some(f.data.len() as u64),
                Some(Node::Dir(_)) => Some(0),
            })
        })
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.op(OpKind::CreateDirAll, dir, None, None, |fs| {
            fs.create_dir_all(dir)
        })
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        self.op(OpKind::ListDir, dir, None, None, |fs| {
            match fs.lookup(dir).and_then(|ino| fs.nodes.get(&ino)) {
                None => Ok(Vec::new()),
                Some(Node::Dir(d)) => Ok(d.entries.keys().cloned().collect()),
                Some(Node::File(_)) => {
                    Err(err(io::ErrorKind::NotADirectory, "not a directory", dir))
                }
            }
        })
    }

    fn lock(&self, path: &Path) -> io::Result<SimLock> {
        let path = normalize(path);
        self.op(OpKind::Lock, &path, None, None, |fs| {
            // Like flock on a file opened with O_CREAT: the lock file is
            // created (un-durably) when missing.
            match fs.lookup(&path) {
                Some(_) => Ok(()),
                None => fs.create_new(&path).map(drop),
            }
        })?;
        let mut held = self.locks.held.lock();
        while held.contains(&path) {
            self.locks.freed.wait(&mut held);
        }
        held.insert(path.clone());
        Ok(SimLock {
            table: Arc::clone(&self.locks),
            path,
        })
    }
}

// ---------------------------------------------------------------------------
// Delivery audit
// ---------------------------------------------------------------------------

/// The ground truth of a durability test: which children's records were
/// committed, how often each was handed to a caller, and which losses and
/// duplicates the documented windows allow. Keyed by `child_session_id`, so
/// a test gives every record its own child.
///
/// ```
/// use outbox::Record;
/// use outbox::sim::Audit;
///
/// let mut audit = Audit::default();
/// audit.committed("a");
/// audit.committed("b");
/// audit.allow_loss_of_pending(); // a plain drain crashed after its ledger rename
/// audit.delivered(&[Record::finished("b", "ok")]);
/// let tally = audit.check().unwrap();
/// assert_eq!(tally.lost_in_window, 1); // "a", inside the window
/// ```
#[derive(Clone, Debug, Default)]
pub struct Audit {
    committed: BTreeSet<String>,
    uncertain: BTreeSet<String>,
    delivered: BTreeMap<String, usize>,
    may_lose: BTreeSet<String>,
    may_dup: BTreeMap<String, usize>,
}

/// What [`Audit::check`] counted inside the documented windows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditTally {
    /// Committed records never delivered, each allowed by a plain drain's
    /// window.
    pub lost_in_window: usize,
    /// Extra deliveries, each allowed by a `drain_with` window.
    pub duplicated_in_window: usize,
}

impl Audit {
    /// `child`'s commit returned `Ok`: it must be delivered.
    pub fn committed(&mut self, child: impl Into<String>) {
        self.committed.insert(child.into());
    }

    /// `child`'s commit returned an error: it may or may not have become
    /// durable, so it is delivered at most once (plus windows).
    pub fn uncertain(&mut self, child: impl Into<String>) {
        self.uncertain.insert(child.into());
    }

    /// `records` were handed to a caller.
    pub fn delivered<'a>(&mut self, records: impl IntoIterator<Item = &'a crate::Record>) {
        for r in records {
            self.delivered_child(&r.child_session_id);
        }
    }

    /// The record of `child` was handed to a caller.
    pub fn delivered_child(&mut self, child: &str) {
        *self.delivered.entry(child.to_owned()).or_default() += 1;
    }

    /// How many times `child` was delivered so far.
    pub fn times_delivered(&self, child: &str) -> usize {
        self.delivered.get(child).copied().unwrap_or(0)
    }

    /// How many deliveries were recorded in all, repeats included.
    pub fn deliveries(&self) -> usize {
        self.delivered.values().sum()
    }

    /// Children committed (or uncertain) and not delivered yet.
    pub fn undelivered(&self) -> BTreeSet<String> {
        self.committed
            .iter()
            .chain(&self.uncertain)
            .filter(|c| !self.delivered.contains_key(*c))
            .cloned()
            .collect()
    }

    /// A plain drain failed inside its documented window (after its ledger
    /// rename was issued): everything pending now may be lost to the caller.
    pub fn allow_loss_of_pending(&mut self) {
        let pending = self.undelivered();
        self.may_lose.extend(pending);
    }

    /// A `drain_with` failed inside its documented window (its `deliver`
    /// returned `Ok`, the ledger was not durable yet): each of `records` may
    /// be delivered once more.
    pub fn allow_duplicate_of<'a>(&mut self, records: impl IntoIterator<Item = &'a crate::Record>) {
        for r in records {
            *self.may_dup.entry(r.child_session_id.clone()).or_default() += 1;
        }
    }

    /// Checks the deliveries: every committed child delivered exactly once,
    /// every uncertain one at most once, nothing delivered that was never
    /// committed — except what the allowed windows excuse, which is counted.
    pub fn check(&self) -> Result<AuditTally, String> {
        let mut tally = AuditTally::default();
        for (c, must) in self
            .committed
            .iter()
            .map(|c| (c, true))
            .chain(self.uncertain.iter().map(|c| (c, false)))
        {
            let windows = self.may_dup.get(c).copied().unwrap_or(0);
            match self.times_delivered(c) {
                0 if !must => {}
                0 if self.may_lose.contains(c) => tally.lost_in_window += 1,
                0 => return Err(format!("LOST: {c} was committed and never delivered")),
                1 => {}
                n if n <= 1 + windows => tally.duplicated_in_window += n - 1,
                n => {
                    return Err(format!(
                        "DUPLICATE: {c} delivered {n} times ({windows} failures in the \
                         duplicate window)"
                    ));
                }
            }
        }
        for c in self.delivered.keys() {
            if !self.committed.contains(c) && !self.uncertain.contains(c) {
                return Err(format!("PHANTOM: {c} delivered but never committed"));
            }
        }
        Ok(tally)
    }
}

/// How far a drain got with its ledger write, read off an op log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerProgress {
    /// A rename onto the ledger returned `Ok`.
    pub renamed: bool,
    /// After that rename, an fsync of the ledger's directory returned `Ok`:
    /// the ledger is durable.
    pub durable: bool,
}

impl LedgerProgress {
    /// Reads the progress of the ledger write to `ledger` off `ops`.
    pub fn of(ops: &[Op], ledger: &Path) -> Self {
        let dir = crate::io::parent_dir(ledger);
        let renamed_at = ops
            .iter()
            .position(|o| o.ok && o.kind == OpKind::Rename && o.to.as_deref() == Some(ledger));
        let durable = renamed_at.is_some_and(|i| {
            ops[i..]
                .iter()
                .any(|o| o.ok && o.kind == OpKind::SyncDir && o.path == dir)
        });
        LedgerProgress {
            renamed: renamed_at.is_some(),
            durable,
        }
    }
}

// ---------------------------------------------------------------------------
// FaultIo
// ---------------------------------------------------------------------------

/// Linux errno values for the faults a test typically injects.
pub mod errno {
    /// No space left on device.
    pub const ENOSPC: i32 = 28;
    /// Input/output error.
    pub const EIO: i32 = 5;
    /// Permission denied.
    pub const EACCES: i32 = 13;
}

/// The error a [`FaultIo`] injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// An OS error with this raw errno (see [`errno`]).
    Errno(i32),
    /// A synthetic error of this kind.
    Kind(io::ErrorKind),
}

impl Fault {
    /// ENOSPC: the disk is full.
    pub const ENOSPC: Fault = Fault::Errno(errno::ENOSPC);
    /// EIO: the device failed.
    pub const EIO: Fault = Fault::Errno(errno::EIO);
    /// EACCES: permission denied.
    pub const EACCES: Fault = Fault::Errno(errno::EACCES);

    /// A fresh `io::Error` for this fault.
    pub fn to_error(self) -> io::Error {
        match self {
            Fault::Errno(n) => io::Error::from_raw_os_error(n),
            Fault::Kind(k) => io::Error::new(k, "injected fault"),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Errno(errno::ENOSPC) => f.write_str("ENOSPC"),
            Fault::Errno(errno::EIO) => f.write_str("EIO"),
            Fault::Errno(errno::EACCES) => f.write_str("EACCES"),
            Fault::Errno(n) => write!(f, "errno {n}"),
            Fault::Kind(k) => write!(f, "{k:?}"),
        }
    }
}

/// When and how a [`FaultIo`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultPlan {
    /// Fail the counted operation with this index (0-based, counted from
    /// when the plan was armed).
    pub at: usize,
    /// Which operation kinds are counted (and can fail).
    pub counts: OpKinds,
    /// The error returned.
    pub fault: Fault,
    /// `false`: fail only operation `at`; `true`: fail `at` and every
    /// counted operation after it (a disk that stays full or broken).
    pub persist: bool,
    /// When the failing operation is a write, first pass half of the data to
    /// the inner `Io` (a short write, as with ENOSPC mid-write).
    pub partial_write: bool,
}

impl FaultPlan {
    /// Fail only counted operation `at` with `fault`, counting every kind.
    pub fn once(at: usize, fault: Fault) -> Self {
        FaultPlan {
            at,
            counts: OpKinds::ALL,
            fault,
            persist: false,
            partial_write: false,
        }
    }

    /// Fail counted operation `at` and every later one with `fault`.
    pub fn from_on(at: usize, fault: Fault) -> Self {
        FaultPlan {
            persist: true,
            ..Self::once(at, fault)
        }
    }

    /// The same plan, counting only `kinds`.
    pub fn counting(self, kinds: OpKinds) -> Self {
        FaultPlan {
            counts: kinds,
            ..self
        }
    }

    /// The same plan, with short writes on a failing write.
    pub fn with_partial_write(self) -> Self {
        FaultPlan {
            partial_write: true,
            ..self
        }
    }
}

#[derive(Debug, Default)]
struct FaultState {
    plan: Option<FaultPlan>,
    /// Counted operations since the plan was armed (or since creation).
    counted: usize,
    injected: usize,
    log: Vec<Op>,
    next_index: usize,
}

/// An open file of a [`FaultIo`]: the inner file and the path it was
/// created at (for the op log).
#[derive(Debug)]
pub struct FaultFile<F> {
    inner: F,
    path: PathBuf,
}

impl<F> FaultFile<F> {
    /// The path the file was created at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The inner `Io`'s file.
    pub fn inner_mut(&mut self) -> &mut F {
        &mut self.inner
    }
}

/// An [`Io`] wrapper that fails chosen operations with chosen errors and
/// logs every operation.
///
/// Clones share the plan, counters and log.
///
/// ```
/// use outbox::io::Io;
/// use outbox::sim::{CrashIo, Fault, FaultIo, FaultPlan, OpKind, OpKinds};
/// use std::path::Path;
///
/// let fs = CrashIo::new();
/// fs.install_dir("/d");
/// let io = FaultIo::new(fs);
/// io.arm(FaultPlan::once(0, Fault::EIO).counting(OpKinds::of([OpKind::SyncFile])));
/// let mut f = io.create_new(Path::new("/d/f")).unwrap();
/// let e = io.sync_file(&mut f).unwrap_err();
/// assert_eq!(e.raw_os_error(), Some(5));
/// assert!(io.sync_file(&mut f).is_ok()); // only the first counted op fails
/// ```
pub struct FaultIo<I: Io> {
    inner: I,
    state: Arc<Mutex<FaultState>>,
}

impl<I: Io + Clone> Clone for FaultIo<I> {
    fn clone(&self) -> Self {
        FaultIo {
            inner: self.inner.clone(),
            state: Arc::clone(&self.state),
        }
    }
}

impl<I: Io> fmt::Debug for FaultIo<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.lock();
        f.debug_struct("FaultIo")
            .field("plan", &s.plan)
            .field("counted", &s.counted)
            .field("injected", &s.injected)
            .finish_non_exhaustive()
    }
}

/// What [`FaultIo::decide`] chose for one operation.
enum Decision {
    Pass(usize),
    Fail(FaultPlan),
}

impl<I: Io> FaultIo<I> {
    /// Wraps `inner` with no fault armed; operations are counted and logged.
    pub fn new(inner: I) -> Self {
        FaultIo {
            inner,
            state: Arc::new(Mutex::new(FaultState::default())),
        }
    }

    /// The wrapped `Io`.
    pub fn inner(&self) -> &I {
        &self.inner
    }

    /// Arms `plan` and restarts the count of counted operations at 0.
    pub fn arm(&self, plan: FaultPlan) {
        let mut s = self.state.lock();
        s.plan = Some(plan);
        s.counted = 0;
    }

    /// Removes the plan: every later operation passes through. The count
    /// keeps running (over every kind).
    pub fn disarm(&self) {
        let mut s = self.state.lock();
        s.plan = None;
        s.counted = 0;
    }

    /// Counted operations since the last [`arm`](Self::arm) /
    /// [`disarm`](Self::disarm) (every kind when no plan is armed). Run an
    /// operation once disarmed to learn how many `k` there are to try.
    pub fn count(&self) -> usize {
        self.state.lock().counted
    }

    /// How many faults were injected in total.
    pub fn injected(&self) -> usize {
        self.state.lock().injected
    }

    /// The index the next logged operation will get.
    pub fn log_len(&self) -> usize {
        self.state.lock().next_index
    }

    /// The op log, oldest first.
    pub fn ops(&self) -> Vec<Op> {
        self.state.lock().log.clone()
    }

    /// The log entries from index `from` on.
    pub fn ops_since(&self, from: usize) -> Vec<Op> {
        entries_since(&self.state.lock().log, from)
    }

    /// Clears the op log (indices keep increasing).
    pub fn clear_log(&self) {
        self.state.lock().log.clear();
    }

    fn decide(&self, kind: OpKind, path: &Path, to: Option<&Path>, len: Option<usize>) -> Decision {
        let mut s = self.state.lock();
        let index = s.next_index;
        s.next_index += 1;
        let counts = s.plan.map_or(OpKinds::ALL, |p| p.counts);
        let mut fail = None;
        if counts.contains(kind) {
            let n = s.counted;
            s.counted += 1;
            if let Some(p) = s.plan
                && (n == p.at || (p.persist && n > p.at))
            {
                fail = Some(p);
            }
        }
        if fail.is_some() {
            s.injected += 1;
        }
        s.log.push(Op {
            index,
            kind,
            path: path.to_owned(),
            to: to.map(Path::to_owned),
            len,
            ok: fail.is_none(),
            injected: fail.is_some(),
        });
        match fail {
            Some(p) => Decision::Fail(p),
            None => Decision::Pass(index),
        }
    }

    fn record<T>(&self, index: usize, r: io::Result<T>) -> io::Result<T> {
        if r.is_err()
            && let Some(op) = self
                .state
                .lock()
                .log
                .iter_mut()
                .rev()
                .find(|o| o.index == index)
        {
            op.ok = false;
        }
        r
    }

    fn run<T>(
        &self,
        kind: OpKind,
        path: &Path,
        to: Option<&Path>,
        body: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        match self.decide(kind, path, to, None) {
            Decision::Pass(i) => self.record(i, body()),
            Decision::Fail(p) => Err(p.fault.to_error()),
        }
    }
}

impl<I: Io> Io for FaultIo<I> {
    type File = FaultFile<I::File>;
    type Reader = I::Reader;
    type Lock = I::Lock;

    fn create_new(&self, path: &Path) -> io::Result<Self::File> {
        let inner = self.run(OpKind::CreateNew, path, None, || {
            self.inner.create_new(path)
        })?;
        Ok(FaultFile {
            inner,
            path: path.to_owned(),
        })
    }

    fn write_all(&self, file: &mut Self::File, data: &[u8]) -> io::Result<()> {
        match self.decide(OpKind::WriteAll, &file.path, None, Some(data.len())) {
            Decision::Pass(i) => {
                let r = self.inner.write_all(&mut file.inner, data);
                self.record(i, r)
            }
            Decision::Fail(p) => {
                if p.partial_write && data.len() > 1 {
                    // A short write: the first half may reach the file.
                    let _ = self
                        .inner
                        .write_all(&mut file.inner, &data[..data.len() / 2]);
                }
                Err(p.fault.to_error())
            }
        }
    }

    fn sync_file(&self, file: &mut Self::File) -> io::Result<()> {
        let path = file.path.clone();
        self.run(OpKind::SyncFile, &path, None, || {
            self.inner.sync_file(&mut file.inner)
        })
    }

    fn open_read(&self, path: &Path) -> io::Result<Option<Self::Reader>> {
        self.run(OpKind::OpenRead, path, None, || self.inner.open_read(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.run(OpKind::Rename, from, Some(to), || {
            self.inner.rename(from, to)
        })
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.run(OpKind::SyncDir, dir, None, || self.inner.sync_dir(dir))
    }

    fn remove_file(&self, path: &Path) -> io::Result<bool> {
        self.run(OpKind::RemoveFile, path, None, || {
            self.inner.remove_file(path)
        })
    }

    fn file_len(&self, path: &Path) -> io::Result<Option<u64>> {
        self.run(OpKind::FileLen, path, None, || self.inner.file_len(path))
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.run(OpKind::CreateDirAll, dir, None, || {
            self.inner.create_dir_all(dir)
        })
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        self.run(OpKind::ListDir, dir, None, || self.inner.list_dir(dir))
    }

    fn lock(&self, path: &Path) -> io::Result<Self::Lock> {
        self.run(OpKind::Lock, path, None, || self.inner.lock(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    fn read(io: &CrashIo, path: &str) -> Option<Vec<u8>> {
        let mut r = io.open_read(p(path)).unwrap()?;
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        Some(v)
    }

    fn durable_file(io: &CrashIo, path: &str, data: &[u8]) {
        let mut f = io.create_new(p(path)).unwrap();
        io.write_all(&mut f, data).unwrap();
        io.sync_file(&mut f).unwrap();
        io.sync_dir(p(path).parent().unwrap()).unwrap();
    }

    #[test]
    fn fsynced_data_in_a_synced_directory_survives() {
        let io = CrashIo::new();
        io.install_dir("/d");
        durable_file(&io, "/d/f", b"abc");
        let image = io.crash_image();
        assert_eq!(image.file("/d/f"), Some(&b"abc"[..]));
        let rebooted = CrashIo::from_image(&image);
        assert_eq!(read(&rebooted, "/d/f").unwrap(), b"abc");
        assert_eq!(
            rebooted.crash_image(),
            image,
            "a rebooted image is all durable"
        );
    }

    #[test]
    fn unsynced_write_is_lost_and_alternatives_keep_or_tear_it() {
        let io = CrashIo::new();
        io.install_dir("/d");
        durable_file(&io, "/d/f", b"abc");
        // Rewrite through a second file to get an un-synced tail on a durable
        // entry: create + sync dir, then write without fsync.
        let mut g = io.create_new(p("/d/g")).unwrap();
        io.sync_dir(p("/d")).unwrap();
        io.write_all(&mut g, b"line1\n").unwrap();
        io.sync_file(&mut g).unwrap();
        io.write_all(&mut g, b"line2\n").unwrap();
        assert_eq!(read(&io, "/d/g").unwrap(), b"line1\nline2\n");
        assert_eq!(io.crash_image().file("/d/g"), Some(&b"line1\n"[..]));
        let contents: Vec<Vec<u8>> = io
            .crash_images(100)
            .iter()
            .map(|i| i.file("/d/g").unwrap().to_vec())
            .collect();
        assert!(contents.contains(&b"line1\nline2\n".to_vec()));
        assert!(contents.contains(&b"line1\nlin".to_vec()), "{contents:?}");
        assert!(contents.contains(&b"line1\n\0\0\0\0\0\0".to_vec()));
        assert_eq!(contents.len(), 4);
    }

    #[test]
    fn create_without_dir_sync_is_lost() {
        let io = CrashIo::new();
        io.install_dir("/d");
        let mut f = io.create_new(p("/d/f")).unwrap();
        io.write_all(&mut f, b"x").unwrap();
        io.sync_file(&mut f).unwrap();
        assert_eq!(io.crash_image().file("/d/f"), None);
        let images = io.crash_images(100);
        assert_eq!(images.len(), 2);
        assert_eq!(images[1].file("/d/f"), Some(&b"x"[..]));
    }

    #[test]
    fn rename_without_dir_sync_is_lost_and_is_atomic_within_a_directory() {
        let io = CrashIo::new();
        io.install_dir("/d");
        durable_file(&io, "/d/wal", b"old");
        durable_file(&io, "/d/wal.tmp", b"new");
        io.rename(p("/d/wal.tmp"), p("/d/wal")).unwrap();
        assert_eq!(read(&io, "/d/wal").unwrap(), b"new");
        assert_eq!(read(&io, "/d/wal.tmp"), None);
        let worst = io.crash_image();
        assert_eq!(worst.file("/d/wal"), Some(&b"old"[..]));
        assert_eq!(worst.file("/d/wal.tmp"), Some(&b"new"[..]));
        // Either the whole rename or none of it: never both names gone,
        // never the new name and the temp name together.
        let images = io.crash_images(100);
        assert_eq!(images.len(), 2);
        assert_eq!(images[1].file("/d/wal"), Some(&b"new"[..]));
        assert_eq!(images[1].file("/d/wal.tmp"), None);
        io.sync_dir(p("/d")).unwrap();
        assert_eq!(io.crash_image().file("/d/wal"), Some(&b"new"[..]));
        assert_eq!(io.crash_images(100).len(), 1);
    }

    #[test]
    fn rename_across_directories_needs_both_synced() {
        let io = CrashIo::new();
        io.install_dir("/a");
        io.install_dir("/b");
        durable_file(&io, "/a/f", b"data");
        io.rename(p("/a/f"), p("/b/f")).unwrap();
        io.sync_dir(p("/b")).unwrap();
        let worst = io.crash_image();
        // Source entry not yet durably removed: the file is under both names.
        assert_eq!(worst.file("/a/f"), Some(&b"data"[..]));
        assert_eq!(worst.file("/b/f"), Some(&b"data"[..]));
        io.sync_dir(p("/a")).unwrap();
        let worst = io.crash_image();
        assert_eq!(worst.file("/a/f"), None);
        assert_eq!(worst.file("/b/f"), Some(&b"data"[..]));
    }

    #[test]
    fn unlink_without_dir_sync_is_undone() {
        let io = CrashIo::new();
        io.install_dir("/d");
        durable_file(&io, "/d/f", b"x");
        assert!(io.remove_file(p("/d/f")).unwrap());
        assert!(!io.remove_file(p("/d/f")).unwrap());
        assert_eq!(io.crash_image().file("/d/f"), Some(&b"x"[..]));
        io.sync_dir(p("/d")).unwrap();
        assert_eq!(io.crash_image().file("/d/f"), None);
    }

    #[test]
    fn directory_ops_keep_their_order_at_a_crash() {
        let io = CrashIo::new();
        io.install_dir("/d");
        durable_file(&io, "/d/a", b"a");
        durable_file(&io, "/d/b", b"b");
        io.remove_file(p("/d/a")).unwrap(); // item 1
        io.remove_file(p("/d/b")).unwrap(); // item 2
        let images = io.crash_images(100);
        // Prefixes: none, first, both. Never "b removed but a kept".
        assert_eq!(images.len(), 3);
        assert!(
            images
                .iter()
                .all(|i| !(i.file("/d/a").is_some() && i.file("/d/b").is_none()))
        );
    }

    #[test]
    fn unsynced_mkdir_loses_the_directory_and_its_files() {
        let io = CrashIo::new();
        io.install_dir("/root");
        io.create_dir_all(p("/root/inboxes")).unwrap();
        durable_file(&io, "/root/inboxes/x", b"x");
        let worst = io.crash_image();
        assert!(!worst.dirs.contains(p("/root/inboxes")));
        assert_eq!(worst.file("/root/inboxes/x"), None);
        io.sync_dir(p("/root")).unwrap();
        assert_eq!(io.crash_image().file("/root/inboxes/x"), Some(&b"x"[..]));
    }

    #[test]
    fn power_cut_fails_every_later_op_and_logs_the_crash_point() {
        let io = CrashIo::new();
        io.install_dir("/d");
        io.crash_after(2);
        let mut f = io.create_new(p("/d/f")).unwrap();
        io.write_all(&mut f, b"x").unwrap();
        let e = io.sync_file(&mut f).unwrap_err();
        assert!(e.to_string().contains("power cut"));
        assert!(io.crashed());
        assert!(io.list_dir(p("/d")).is_err());
        let last = io.last_op_before_crash().unwrap();
        assert_eq!(last.to_string(), "#1 write_all /d/f (1 bytes)");
        let ops = io.ops();
        assert_eq!(ops.len(), 4);
        assert!(ops[2].injected && !ops[2].ok);
        // The un-synced write is lost, the un-synced create too.
        assert_eq!(io.crash_image().file("/d/f"), None);
    }

    #[test]
    fn posix_error_shapes() {
        let io = CrashIo::new();
        io.install_dir("/d");
        drop(io.create_new(p("/d/f")).unwrap());
        assert_eq!(
            io.create_new(p("/d/f")).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(
            io.create_new(p("/nope/f")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            io.rename(p("/d/missing"), p("/d/g")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(io.open_read(p("/d/missing")).unwrap().is_none());
        assert_eq!(io.file_len(p("/d/f")).unwrap(), Some(0));
        assert_eq!(io.file_len(p("/d/missing")).unwrap(), None);
        assert!(io.list_dir(p("/missing")).unwrap().is_empty());
        assert_eq!(io.list_dir(p("/d")).unwrap(), vec![OsString::from("f")]);
        assert!(io.sync_dir(p("/missing")).is_err());
    }

    #[test]
    fn locks_exclude_and_release() {
        let io = CrashIo::new();
        io.install_dir("/d");
        let held = io.lock(p("/d/x.lock")).unwrap();
        let io2 = io.clone();
        let t = std::thread::spawn(move || {
            let _l = io2.lock(p("/d/x.lock")).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!t.is_finished(), "the second lock must wait");
        drop(held);
        t.join().unwrap();
        assert!(io.current_image().file("/d/x.lock").is_some());
    }

    #[test]
    fn a_lying_fsync_persists_nothing() {
        let io = CrashIo::new();
        io.install_dir("/d");
        io.set_lying_fsync(true);
        durable_file(&io, "/d/f", b"x");
        assert_eq!(io.crash_image().file("/d/f"), None);
    }

    #[test]
    fn audit_flags_loss_duplicates_and_phantoms_outside_windows() {
        let rec = |c: &str| crate::Record::finished(c, "ok");
        let mut a = Audit::default();
        a.committed("a");
        assert!(a.check().unwrap_err().starts_with("LOST"));
        a.delivered(&[rec("a"), rec("a")]);
        assert!(a.check().unwrap_err().starts_with("DUPLICATE"));
        a.allow_duplicate_of(&[rec("a")]);
        assert_eq!(a.check().unwrap().duplicated_in_window, 1);
        a.delivered(&[rec("z")]);
        assert!(a.check().unwrap_err().starts_with("PHANTOM"));
        let mut b = Audit::default();
        b.uncertain("u");
        assert_eq!(b.check().unwrap(), AuditTally::default());
    }

    #[test]
    fn ledger_progress_reads_the_op_log() {
        let io = CrashIo::new();
        io.install_dir("/r/l");
        durable_file(&io, "/r/l/x.tmp", b"{}");
        let start = io.op_count();
        io.rename(p("/r/l/x.tmp"), p("/r/l/x.json")).unwrap();
        let ledger = p("/r/l/x.json");
        let pr = LedgerProgress::of(&io.ops_since(start), ledger);
        assert_eq!((pr.renamed, pr.durable), (true, false));
        io.sync_dir(p("/r/l")).unwrap();
        let pr = LedgerProgress::of(&io.ops_since(start), ledger);
        assert_eq!((pr.renamed, pr.durable), (true, true));
    }

    #[test]
    fn a_fork_keeps_the_page_cache_and_diverges() {
        let io = CrashIo::new();
        io.install_dir("/d");
        let mut f = io.create_new(p("/d/f")).unwrap();
        io.write_all(&mut f, b"x").unwrap();
        let fork = io.fork();
        assert_eq!(fork.op_count(), io.op_count());
        assert_eq!(fork.crash_image(), io.crash_image());
        assert_eq!(fork.current_image(), io.current_image());
        fork.sync_dir(p("/d")).unwrap();
        assert!(fork.crash_image().file("/d/f").is_some());
        assert!(io.crash_image().file("/d/f").is_none());
    }

    #[test]
    fn enumeration_is_capped_and_starts_with_the_worst() {
        let io = CrashIo::new();
        io.install_dir("/d");
        for i in 0..12 {
            let mut f = io.create_new(&PathBuf::from(format!("/d/f{i}"))).unwrap();
            io.write_all(&mut f, b"abc").unwrap();
        }
        assert!(io.crash_outcome_count() > 1000);
        let images = io.crash_images(50);
        assert_eq!(images.len(), 50);
        assert_eq!(images[0], io.crash_image());
        assert!(images[0].files.is_empty());
    }

    #[test]
    fn fault_io_fails_the_kth_op_once_or_from_then_on() {
        let fs = CrashIo::new();
        fs.install_dir("/d");
        let io = FaultIo::new(fs.clone());
        io.arm(FaultPlan::once(1, Fault::ENOSPC));
        let mut f = io.create_new(p("/d/f")).unwrap();
        let e = io.write_all(&mut f, b"abc").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(errno::ENOSPC));
        io.write_all(&mut f, b"abc").unwrap();
        assert_eq!(io.injected(), 1);

        io.arm(FaultPlan::from_on(1, Fault::EACCES).counting(OpKinds::syncs()));
        io.write_all(&mut f, b"d").unwrap(); // not counted
        io.sync_file(&mut f).unwrap(); // counted #0
        assert!(io.sync_dir(p("/d")).is_err()); // #1
        assert!(io.sync_file(&mut f).is_err()); // #2, persists
        assert_eq!(io.count(), 3);
        assert_eq!(io.injected(), 3);
        let ops = io.ops();
        assert!(ops.iter().filter(|o| o.injected).count() == 3);
        assert_eq!(ops.last().unwrap().kind, OpKind::SyncFile);
        assert_eq!(ops.last().unwrap().path, p("/d/f"));

        io.disarm();
        io.sync_dir(p("/d")).unwrap();
        assert_eq!(fs.crash_image().file("/d/f"), Some(&b"abcd"[..]));
    }

    #[test]
    fn fault_io_partial_write_leaves_a_short_file() {
        let fs = CrashIo::new();
        fs.install_dir("/d");
        let io = FaultIo::new(fs.clone());
        io.arm(
            FaultPlan::once(0, Fault::ENOSPC)
                .counting(OpKinds::of([OpKind::WriteAll]))
                .with_partial_write(),
        );
        let mut f = io.create_new(p("/d/f")).unwrap();
        assert!(io.write_all(&mut f, b"abcdef").is_err());
        assert_eq!(fs.current_image().file("/d/f"), Some(&b"abc"[..]));
    }

    #[test]
    fn fault_io_counts_every_op_when_disarmed() {
        let fs = CrashIo::new();
        fs.install_dir("/d");
        let io = FaultIo::new(fs);
        io.create_dir_all(p("/d/e")).unwrap();
        assert!(io.list_dir(p("/d")).unwrap().len() == 1);
        assert_eq!(io.count(), 2);
        assert_eq!(io.log_len(), 2);
        assert!(!OpKinds::mutating().contains(OpKind::ListDir));
        assert!(OpKinds::mutating().contains(OpKind::Lock));
    }
}
