//! [`CrashIo`]: an in-memory file system that models the page cache.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::image::{FsImage, components, normalize};
use crate::op::{Op, OpKind, entries_since};
use outbox::io::{Appending, FailedWrite, Io};

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
        self.log.push(Op {
            index,
            kind,
            path: normalize(path),
            to: to.map(normalize),
            len,
            ok: !cut,
            injected: cut,
        });
        if cut { Err(power_cut()) } else { Ok(index) }
    }

    /// Records the outcome of operation `index` in the log.
    fn finish<T>(&mut self, index: usize, r: io::Result<T>) -> io::Result<T> {
        if r.is_err()
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
/// request; see the [crate docs](crate) for the crash model.
///
/// Clones share one file system, so a test can keep a handle while an
/// outbox owns another.
///
/// ```
/// use outbox::io::{Appending, FailedWrite, Io};
/// use outbox_sim::CrashIo;
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

    /// True while some holder has the lock file at `path` locked (a
    /// scheduler uses it to park a would-be locker instead of blocking).
    pub fn is_locked(&self, path: impl AsRef<Path>) -> bool {
        self.locks.held.lock().contains(&normalize(path.as_ref()))
    }

    /// Makes every later fsync (file and directory) return `Ok` without
    /// persisting anything, like a disk that lies about its write cache.
    /// Meant for checking that a crash test notices missing durability: with
    /// lying fsyncs, committed data must be seen lost.
    pub fn set_lying_fsync(&self, lie: bool) {
        self.fs.lock().lying_fsync = lie;
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

    fn write_all_counted(&self, file: &mut SimFile, data: &[u8]) -> Result<(), FailedWrite> {
        // All or nothing: a failure (a crashed disk, a bad handle) comes
        // before the data is appended.
        self.write_all(file, data).map_err(|error| FailedWrite {
            written: Some(0),
            error,
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

    fn open_append(&self, path: &Path) -> io::Result<Option<Appending<SimFile>>> {
        self.op(OpKind::OpenAppend, path, None, None, |fs| {
            let Some(ino) = fs.lookup(path) else {
                return Ok(None);
            };
            match fs.nodes.get(&ino) {
                Some(Node::File(f)) => Ok(Some(Appending {
                    file: SimFile {
                        ino,
                        path: normalize(path),
                    },
                    ends_in_newline: f.data.last().is_none_or(|&b| b == b'\n'),
                })),
                _ => Err(err(io::ErrorKind::IsADirectory, "is a directory", path)),
            }
        })
    }

    fn sync_data(&self, file: &mut SimFile) -> io::Result<()> {
        // The model has no metadata but the size, which fdatasync persists.
        self.op(OpKind::SyncData, &file.path, None, None, |fs| {
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
        assert!(io.is_locked("/d/x.lock") && !io.is_locked("/d/y.lock"));
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
}
