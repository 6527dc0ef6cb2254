//! [`Outbox`]: commit, the two-phase drain, and housekeeping.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RawMutex, lock_api::ArcMutexGuard};

use crate::durable::{create_temp, rename_into_place, write_durable, write_renamed};
use crate::error::{DrainWithError, Error, IoContext, Result};
use crate::format::{BadLine, MAX_LINE_BYTES, Scan, encode_line, for_each_record};
use crate::held::Held;
use crate::io::{Io, StdIo, parent_dir};
use crate::ledger::{Ledger, MarkFailed};
use crate::paths::{
    DirKind, INBOX_DIR, LEDGER_DIR, ParentPaths, STOP_BLOCKS_DIR, WAL_DIR, id_of_stem,
    quarantine_name, stem_of_target, temp_target,
};
use crate::record::Record;
use crate::root_check::RootPolicy;

mod sweep;

/// How old a pending record must be before [`Outbox::sweep_stale`] drops it
/// by default: 7 days.
pub const DEFAULT_STALE_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// A durable per-parent outbox on a data root directory.
///
/// Cheap to clone: clones share the file-system seam and the in-process
/// locks, and may be used from any number of threads. Several processes may
/// open the same root: every writer of an inbox, and every drain, also holds
/// a lock file, so they exclude each other across processes too.
///
/// See the crate documentation for the files, the guarantees of each drain
/// variant and the fsync cost of each operation.
pub struct Outbox<I: Io = StdIo> {
    inner: Arc<Inner<I>>,
    clock: Clock,
    policy: RootPolicy,
}

struct Inner<I> {
    root: PathBuf,
    io: I,
    /// One mutex per lock file, so threads of this process exclude each
    /// other before they contend for the (per-process) file lock.
    locks: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
    /// The directories every write needs exist, durably (set by the eager
    /// open, or by the first write of a lazily opened outbox).
    layout_ready: AtomicBool,
    /// The root passed the check of [`RootPolicy::Private`] (which implies
    /// `Shared`'s), or of `Shared`: each is run at most once per outbox.
    root_private: AtomicBool,
    root_shared: AtomicBool,
    /// Each parent's consumed ledger as last read, by ledger path: a read
    /// resumes where the last one stopped (see the `ledger` module).
    /// Bounded: emptied when it holds [`MAX_CACHED_LEDGERS`].
    ledgers: Mutex<HashMap<PathBuf, Arc<Mutex<Ledger>>>>,
}

/// How many parents' ledgers an outbox keeps in memory at most.
const MAX_CACHED_LEDGERS: usize = 64;

type LedgerGuard = ArcMutexGuard<RawMutex, Ledger>;

impl<I: Io> Clone for Outbox<I> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            clock: Arc::clone(&self.clock),
            policy: self.policy,
        }
    }
}

impl<I: Io> std::fmt::Debug for Outbox<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

/// What a drain returned.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Drained {
    /// The records handed to the caller: one per child, the latest, each
    /// turn at most once, in the order the children were first seen: a
    /// child's place is its first commit among its pending records since it
    /// was last delivered (a re-commit keeps it; a commit made while a drain
    /// delivers the child's earlier record takes a new one; a sweep that
    /// drops other children moves nobody). Every store keeps this order.
    pub records: Vec<Record>,
    /// How many records were recovered from the WAL of an earlier drain that
    /// did not finish.
    pub recovered: usize,
    /// How many (collapsed) records were skipped because their turn had
    /// already been consumed.
    pub already_consumed: usize,
    /// Lines that could not be read as records (corrupt, or over
    /// [`MAX_LINE_BYTES`]); each was copied to a quarantine file before its
    /// source was removed.
    pub bad_lines: Vec<BadLine>,
    /// The quarantine files written by this drain.
    pub quarantined: Vec<PathBuf>,
    /// The consumed ledger could not be read and was treated as empty (turns
    /// may be delivered again; none is lost).
    pub ledger_was_corrupt: bool,
    /// The WAL could not be removed once the ledger was durable. Harmless:
    /// the next drain skips its (consumed) records and removes it.
    pub cleanup_error: Option<Error>,
}

/// What a commit did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Committed {
    /// The record as written (stamped).
    pub record: Record,
    /// The record's turn was already consumed by the parent when it was
    /// committed: no drain will deliver it (see [`Record::turn_key`]).
    /// (A commit appends and never reads the inbox: unreadable lines are
    /// the next drain's to set aside, see [`Drained::bad_lines`].)
    pub already_consumed: bool,
}

/// Records staged by phase 1 of a drain.
struct Staged {
    records: Vec<Record>,
    recovered: usize,
    bad_lines: Vec<BadLine>,
    quarantined: Vec<PathBuf>,
}

/// Both locks of one lock file, the in-process mutex and the file lock, and
/// this thread's entry in the process-wide registry of holders ([`Held`]:
/// re-entry through any handle is an error, not a deadlock). Field order is
/// drop order: the file lock is released first, the registration last.
pub(crate) struct ThreadAndFileLock<I: Io> {
    _file: I::Lock,
    _thread: ArcMutexGuard<RawMutex, ()>,
    _held: Held,
}

/// What [`Outbox::sweep_stale_all`] did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct SweepReport {
    /// Pending records dropped as stale, over every parent.
    pub dropped: usize,
    /// Stale temporary files removed (left by writers killed between
    /// creating and renaming them).
    pub temp_files_removed: usize,
    /// Files in the outbox's directories that name no parent this outbox
    /// can open (an id too long, a name no id maps to, a name that is not
    /// UTF-8), or whose parent's sweep failed: each file's path with why.
    /// The sweep went on with the other parents; these files were left as
    /// they were.
    pub skipped: Vec<(PathBuf, Error)>,
}

impl Outbox<StdIo> {
    /// Opens the outbox at `root` on the real file system, creating the
    /// directories it needs (see [`open_with`](Self::open_with)).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        Self::open_with(root, StdIo::new())
    }

    /// Opens the outbox at `root` on the real file system without touching
    /// the disk (see [`open_lazy_with`](Self::open_lazy_with)).
    pub fn open_lazy(root: impl Into<PathBuf>) -> Self {
        Self::open_lazy_with(root, StdIo::new())
    }
}

impl<I: Io> Outbox<I> {
    /// Opens the outbox at `root` with the file-system seam `io`, creating
    /// the directories it needs: `inboxes/`, `runtime/inbox-inflight/`,
    /// `runtime/consumed-turns/` and every missing ancestor of them,
    /// the root's included. Every directory it creates is durable before
    /// this returns: each directory that gained an entry is fsynced once
    /// (a root with an existing parent: 3 directory fsyncs; the CLI's
    /// default root on a fresh home, 3 ancestors missing: 5). Opening an
    /// existing root fsyncs nothing.
    ///
    /// A directory that exists when it is looked at is taken as durable: if
    /// another process created it an instant earlier and the power fails
    /// before that process's fsync of it, it can vanish.
    pub fn open_with(root: impl Into<PathBuf>, io: I) -> Result<Self> {
        let ob = Self::open_lazy_with(root, io);
        ob.ensure_layout()?;
        Ok(ob)
    }

    /// Opens the outbox at `root` with the file-system seam `io` without
    /// touching the disk. The read-only operations ([`peek`](Self::peek),
    /// [`has_pending`](Self::has_pending), [`handover`](Self::handover))
    /// then create nothing, on any root, nor does a drain or a sweep that
    /// finds nothing to do (no file of the parent: no directory, no lock
    /// file); the first operation that writes creates the directories
    /// [`open_with`](Self::open_with) would have created, as durably and
    /// with the same fsyncs.
    pub fn open_lazy_with(root: impl Into<PathBuf>, io: I) -> Self {
        Self {
            inner: Arc::new(Inner {
                root: root.into(),
                io,
                locks: Mutex::new(HashMap::new()),
                layout_ready: AtomicBool::new(false),
                root_private: AtomicBool::new(false),
                root_shared: AtomicBool::new(false),
                ledgers: Mutex::new(HashMap::new()),
            }),
            clock: Arc::new(SystemTime::now),
            policy: RootPolicy::Private,
        }
    }

    /// Sets how this handle (and the clones made from it afterwards)
    /// treats a data root that is not its user's alone; the default is
    /// [`RootPolicy::Private`]. Every operation checks the root once, before
    /// it first touches it (an error, [`Error::UnsafeRoot`], touches
    /// nothing). An eager [`open_with`](Self::open_with) checks at once, so
    /// to accept a shared root open lazily:
    ///
    /// ```no_run
    /// use outbox::{Outbox, RootPolicy};
    /// // A risk: anyone who can write /srv/team/outbox can forge records.
    /// let outbox = Outbox::open_lazy("/srv/team/outbox").with_root_policy(RootPolicy::Shared);
    /// ```
    pub fn with_root_policy(mut self, policy: RootPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Checks the data root under this handle's [`RootPolicy`] now (the
    /// check every operation runs once before it touches the root); `Ok`
    /// when it is safe, [`Error::UnsafeRoot`] naming the directory that is
    /// not. Reads only metadata; creates nothing.
    pub fn check_root(&self) -> Result<()> {
        crate::root_check::check_root(&self.inner.io, &self.inner.root, self.policy)
    }

    /// [`check_root`](Self::check_root), once per outbox and policy.
    pub(crate) fn ensure_root_checked(&self) -> Result<()> {
        let passed = match self.policy {
            RootPolicy::Private => &self.inner.root_private,
            RootPolicy::Shared => &self.inner.root_shared,
        };
        if passed.load(Ordering::Acquire) || self.inner.root_private.load(Ordering::Acquire) {
            return Ok(());
        }
        self.check_root()?;
        passed.store(true, Ordering::Release);
        Ok(())
    }

    /// Creates the directories every write needs, once per outbox value.
    pub(crate) fn ensure_layout(&self) -> Result<()> {
        if self.inner.layout_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        self.ensure_root_checked()?;
        let root = &self.inner.root;
        ensure_dirs(
            &self.inner.io,
            &[
                root.join(INBOX_DIR),
                root.join(WAL_DIR),
                root.join(LEDGER_DIR),
            ],
        )?;
        // What existed was judged before; what another process created
        // in between (instead of us) is judged now.
        self.check_root()?;
        self.inner.layout_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Uses `clock` instead of the system clock for "now" (consumed-ledger
    /// stamps and pruning, sweeps by age, stamping a zero timestamp). Applies
    /// to this handle and the clones made from it afterwards.
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The data root.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The file-system seam.
    pub fn io(&self) -> &I {
        &self.inner.io
    }

    /// The files of `parent`; an error for an invalid parent id.
    pub fn paths(&self, parent: &str) -> Result<ParentPaths> {
        ParentPaths::new(&self.inner.root, parent)
    }

    fn now(&self) -> SystemTime {
        (self.clock)()
    }

    fn now_unix(&self) -> i64 {
        match self.now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// Takes both locks of the lock file `path`; an error, not a deadlock,
    /// when this thread already holds them, through this handle or any
    /// other of the process (a call from inside a `drain_with` callback).
    pub(crate) fn lock(&self, path: &Path) -> Result<ThreadAndFileLock<I>> {
        self.ensure_root_checked()?;
        let held = Held::enter(path)?;
        let mutex = Arc::clone(self.inner.locks.lock().entry(path.to_owned()).or_default());
        let thread = mutex.lock_arc();
        let file = self.inner.io.lock(path).at("lock", path)?;
        Ok(ThreadAndFileLock {
            _file: file,
            _thread: thread,
            _held: held,
        })
    }

    fn read_scan(&self, path: &Path) -> Result<Scan> {
        Ok(self.read_scan_opt(path)?.unwrap_or_default())
    }

    /// The file's records, `None` when it does not exist.
    fn read_scan_opt(&self, path: &Path) -> Result<Option<Scan>> {
        match self.inner.io.open_read(path).at("open", path)? {
            Some(reader) => Ok(Some(
                crate::format::scan(reader, MAX_LINE_BYTES).at("read", path)?,
            )),
            None => Ok(None),
        }
    }

    /// `paths`'s consumed ledger, brought up to date with the disk (only
    /// what was appended since the last read is read), locked in memory.
    /// Do not hold it across a caller's callback.
    fn ledger(&self, paths: &ParentPaths) -> Result<LedgerGuard> {
        let mut guard = self.ledger_cell(paths).lock_arc();
        guard.refresh(&self.inner.io, paths)?;
        Ok(guard)
    }

    fn ledger_cell(&self, paths: &ParentPaths) -> Arc<Mutex<Ledger>> {
        let mut cache = self.inner.ledgers.lock();
        if !cache.contains_key(&paths.consumed) && cache.len() >= MAX_CACHED_LEDGERS {
            cache.clear();
        }
        Arc::clone(cache.entry(paths.consumed.clone()).or_default())
    }

    // ----------------------------------------------------------------------
    // Commit (producer side)
    // ----------------------------------------------------------------------

    /// Commits `record` to `parent`'s inbox and returns it as written and
    /// whether its turn was already consumed.
    ///
    /// Ids and keys longer than [`MAX_FIELD_BYTES`](crate::MAX_FIELD_BYTES) are
    /// refused. The record is stamped first: `done_summary` capped at
    /// [`MAX_SUMMARY_BYTES`](crate::MAX_SUMMARY_BYTES), `turn_fingerprint`
    /// derived when empty (and then `turn_id`, see
    /// [`turn_id`](crate::turn_id)), `target_session_id` set to `parent`
    /// when empty, `timestamp` set to now when zero, and `fp` (the event
    /// fingerprint) computed. Then, under the inbox locks, its line is
    /// appended to the inbox and made durable. The inbox may hold several
    /// records of a child: the last one in the file wins (last wins by
    /// commit order), so a commit never reads or rewrites what is pending.
    /// A torn last line (a writer died mid-line) is first ended with a
    /// newline, so the new line never merges with it.
    ///
    /// A record whose turn ([`Record::turn_key`]) the parent already
    /// consumed is written like any other (it supersedes the child's pending
    /// record) but no drain delivers it:
    /// [`Committed::already_consumed`] says so. The ledger is read before
    /// anything is written: if it cannot be read, the commit fails and
    /// writes nothing. (A drain finishing concurrently may mark the same
    /// turn just after the check: then that drain delivered it.)
    ///
    /// **Fsyncs: 1** (an fdatasync of the inbox), whatever the inbox holds;
    /// **1 file + 1 directory** when the commit creates the inbox (it is
    /// written beside it, fsynced, renamed into place, and the directory
    /// fsynced). Lines of the inbox that cannot be read are left for the
    /// drain, which quarantines them.
    ///
    /// `Ok` means the record is durable. An `Err` means it may or may not
    /// survive; committing the same record again is safe (same turn,
    /// delivered at most once). An inbox whose creation did not finish (its
    /// directory fsync failed, or its writer died) is recognised by the
    /// next commit, which then fsyncs the directory too (1 file + 1
    /// directory, once).
    pub fn commit(&self, parent: &str, record: Record) -> Result<Committed> {
        let paths = self.paths(parent)?;
        // The stamping and encoding rules every store shares.
        let (record, line) = crate::store::stamp(parent, record, self.now())?;
        self.ensure_layout()?;
        let _held = self.lock(&paths.inbox_lock)?;
        // Read before anything is written, so a ledger that cannot be read
        // fails the commit cleanly instead of leaving the answer unknown.
        let already_consumed = self.ledger(&paths)?.contains(&record.turn_key());
        self.append_inbox(&paths, &line)?;
        Ok(Committed {
            record,
            already_consumed,
        })
    }

    /// Appends `line` (newline included) to the inbox durably. The caller
    /// holds the inbox lock.
    ///
    /// **The newline rule.** An append is made durable by an fdatasync of
    /// the inbox alone, which is enough only if the inbox's directory entry
    /// is durable. So the inbox ends in a newline only once its entry is
    /// known durable: a writer that installs an inbox (this, or a sweep's
    /// rewrite) writes its last line without the newline, fsyncs the
    /// directory, and only then adds the newline. An inbox that does not end
    /// in a newline (that writer failed or died, or a crash tore the last
    /// line) gets a newline first (so nothing merges with a torn line), the
    /// line without its own, an fdatasync, a directory fsync, then the
    /// newline: the slow path, taken once.
    fn append_inbox(&self, paths: &ParentPaths, line: &[u8]) -> Result<()> {
        let io = &self.inner.io;
        let path = &paths.inbox;
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        let Some(mut inbox) = io.open_append(path).at("open", path)? else {
            write_durable(io, path, bare)?;
            return self.end_last_line(path);
        };
        if inbox.ends_in_newline {
            io.write_all(&mut inbox.file, line).at("write", path)?;
            return io.sync_data(&mut inbox.file).at("fdatasync", path);
        }
        let mut ended = Vec::with_capacity(line.len());
        ended.push(b'\n');
        ended.extend_from_slice(bare);
        io.write_all(&mut inbox.file, &ended).at("write", path)?;
        io.sync_data(&mut inbox.file).at("fdatasync", path)?;
        let dir = parent_dir(path);
        io.sync_dir(dir).at("fsync directory", dir)?;
        io.write_all(&mut inbox.file, b"\n").at("write", path)
    }

    /// Adds the newline that says the inbox's directory entry is durable
    /// (see [`append_inbox`](Self::append_inbox)). Not synced: if a crash
    /// loses it, the next commit only takes the slow path once.
    fn end_last_line(&self, path: &Path) -> Result<()> {
        let io = &self.inner.io;
        match io.open_append(path).at("open", path)? {
            Some(mut inbox) => io.write_all(&mut inbox.file, b"\n").at("write", path),
            None => Ok(()),
        }
    }

    /// Rewrites the inbox keeping the records `keep` accepts (each child's
    /// last; superseded lines go too); returns how many records were
    /// dropped. Unreadable lines are quarantined first. The caller holds the
    /// inbox lock. Installs nothing when no record is dropped and no line is
    /// unreadable. (Housekeeping only: a commit appends.)
    fn rewrite_inbox(
        &self,
        paths: &ParentPaths,
        mut keep: impl FnMut(&Record) -> bool,
    ) -> Result<usize> {
        let io = &self.inner.io;
        let mut lines: Vec<(Record, Vec<u8>)> = Vec::new();
        let mut bad = Vec::new();
        if let Some(reader) = io.open_read(&paths.inbox).at("open", &paths.inbox)? {
            for_each_record(reader, MAX_LINE_BYTES, |line| match line {
                Ok((r, bytes)) => lines.push((r, bytes.to_vec())),
                Err(line) => bad.push(line),
            })
            .at("read", &paths.inbox)?;
        }
        // The inbox is append-only: a child's earlier lines are superseded
        // by its last (last wins). Only the last is judged by `keep`, and a
        // rewrite keeps nothing superseded, so dropping a child's newest
        // record never brings an older one back.
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, (r, _)) in lines.iter().enumerate() {
            last.insert(child_of(r), i);
        }
        let mut kept = Vec::new();
        let mut dropped = 0;
        // Each child keeps its place, its first line's (first-seen order);
        // its content is its last line's.
        let mut seen = std::collections::HashSet::new();
        for (r, _) in &lines {
            let child = child_of(r);
            if !seen.insert(child) {
                continue;
            }
            let (r, bytes) = &lines[last[child]];
            if keep(r) {
                kept.extend_from_slice(bytes);
                kept.push(b'\n');
            } else {
                dropped += 1;
            }
        }
        if dropped == 0 && bad.is_empty() {
            return Ok(0);
        }
        if !bad.is_empty() {
            self.quarantine(paths, &paths.inbox, &bad)?;
        }
        if kept.is_empty() {
            if io.remove_file(&paths.inbox).at("remove", &paths.inbox)? {
                let dir = parent_dir(&paths.inbox);
                io.sync_dir(dir).at("fsync directory", dir)?;
            }
        } else {
            // The newline rule of `append_inbox`: the last newline only once
            // the new inbox's entry is durable.
            kept.pop();
            write_durable(io, &paths.inbox, &kept)?;
            self.end_last_line(&paths.inbox)?;
        }
        Ok(dropped)
    }

    /// Copies the `bad` lines of `source` to a new quarantine file beside
    /// the inbox, durably, and returns its path. Runs before `source` is
    /// removed or replaced, so no line is ever lost unseen.
    fn quarantine(&self, paths: &ParentPaths, source: &Path, bad: &[BadLine]) -> Result<PathBuf> {
        let io = &self.inner.io;
        let kind = if source == paths.wal || source == paths.claimed {
            "wal"
        } else {
            "jsonl"
        };
        // A random nonce makes the name unique, so one quarantine never
        // replaces another (the rename below would); the stamp sorts them.
        let nanos = self
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let target =
            parent_dir(&paths.inbox).join(quarantine_name(&paths.stem, kind, nanos, io.nonce()));
        let (temp, mut file) = create_temp(io, &target)?;
        let copy = (|| -> Result<()> {
            let mut reader = io
                .open_read(source)
                .at("open", source)?
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
                .at("open", source)?;
            let mut pos = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            for line in bad {
                // Skip to the line, then copy it in bounded chunks.
                std::io::copy(
                    &mut (&mut reader).take(line.offset - pos),
                    &mut std::io::sink(),
                )
                .at("read", source)?;
                let mut chunk = (&mut reader).take(line.len);
                loop {
                    let n = chunk.read(&mut buf).at("read", source)?;
                    if n == 0 {
                        break;
                    }
                    io.write_all(&mut file, &buf[..n]).at("write", &temp)?;
                }
                io.write_all(&mut file, b"\n").at("write", &temp)?;
                pos = line.offset + line.len;
            }
            Ok(())
        })();
        if let Err(e) = copy {
            drop(file);
            let _ = io.remove_file(&temp);
            return Err(e);
        }
        rename_into_place(io, file, &temp, &target)?;
        Ok(target)
    }

    // ----------------------------------------------------------------------
    // Drain (consumer side)
    // ----------------------------------------------------------------------

    /// Drains `parent`'s inbox: returns the deliverable records (one per
    /// child, the latest; each turn at most once) and marks them consumed.
    ///
    /// **Guarantee per crash window.** The consumed ledger is written
    /// *before* this returns:
    /// - a crash before the ledger write leaves the records in the claimed
    ///   inbox (the WAL) or still in the inbox: the next drain delivers
    ///   them;
    /// - a crash after the ledger write (the append of the marks, or the
    ///   rename of a compacted ledger) was issued and before the caller
    ///   acted on the returned records loses them *to the caller*: they are
    ///   marked consumed and will not be delivered again. Callers that can
    ///   act twice safely should use [`drain_with`](Self::drain_with), which
    ///   closes this window.
    ///
    /// **Errors.** An error return leaves no mark for a record the caller
    /// did not get: a failure before the ledger write changes nothing, and
    /// when the marks may be visible (their write or fdatasync failed, or a
    /// compacted ledger's directory fsync) the drain puts the old ledger
    /// back (a new durable write, not a retry of the failed fsync) and
    /// returns the first error; the records stay pending. If putting it
    /// back fails too (a disk that keeps failing), the error is
    /// [`Error::MarksKept`]: it says whether the marks are still visible and
    /// carries the records themselves.
    ///
    /// No turn is ever returned twice by this variant. Calling it from
    /// inside a [`drain_with`](Self::drain_with) callback of the same
    /// parent is an [`Error::Reentrant`], not a deadlock.
    ///
    /// **Fsyncs: 1** when anything new is delivered (the fdatasync of the
    /// ledger's append; the inbox is claimed by a rename, which needs no
    /// fsync), 0 when nothing is pending. More only off the steady state:
    /// +1 file fsync when the inbox holds several records of a child or
    /// unreadable lines (the claim is then a collapsed copy), or when an
    /// earlier drain's claim is merged with new records; +1 file + 1
    /// directory when the ledger is created, migrated or compacted (instead
    /// of the fdatasync: 2 in all), amortised over as many drains as the
    /// ledger has entries; +1 file + 1 directory per quarantine file.
    pub fn drain(&self, parent: &str) -> Result<Drained> {
        let Some(paths) = self.drain_paths(parent)? else {
            return Ok(Drained::default());
        };
        let _drain = self.lock(&paths.drain_lock)?;
        let staged = self.stage_claim(&paths)?;
        let no_delivery = None::<fn(&[Record]) -> Result<(), Infallible>>;
        self.finalize(&paths, staged, Select::First(usize::MAX), no_delivery)
            .map_err(|e| match e {
                DrainWithError::Outbox(e) => e,
                DrainWithError::Delivery(never) => match never {},
            })
    }

    /// Drains like [`drain`](Self::drain), but persists the consumed ledger
    /// only after `deliver` returned `Ok` for the records: true
    /// at-least-once delivery for callers that can act on a record twice.
    ///
    /// `deliver` is called once, with the deliverable records, only when
    /// there are any. While it runs, other drains of this parent wait;
    /// commits do not.
    ///
    /// **Guarantee per crash window.**
    /// - a crash (or an `Err` from `deliver`) before `deliver` returned
    ///   `Ok`: nothing is marked; the next drain delivers the records again;
    /// - a crash after `deliver` returned `Ok` and before the ledger is
    ///   durable: the next drain delivers them again (the only window for a
    ///   duplicate);
    /// - after that, never again.
    ///
    /// An [`DrainWithError::Outbox`] error means the records stay pending
    /// even if `deliver` ran (the ledger is put back exactly as for
    /// [`drain`](Self::drain)), so the next drain delivers them again; the
    /// one exception, [`Error::MarksKept`], says so. Nothing committed is
    /// ever lost. **Fsyncs: as [`drain`](Self::drain).**
    pub fn drain_with<E>(
        &self,
        parent: &str,
        deliver: impl FnOnce(&[Record]) -> Result<(), E>,
    ) -> Result<Drained, DrainWithError<E>> {
        let Some(paths) = self.drain_paths(parent)? else {
            return Ok(Drained::default());
        };
        let _drain = self.lock(&paths.drain_lock)?;
        let staged = self.stage_claim(&paths)?;
        self.finalize(&paths, staged, Select::First(usize::MAX), Some(deliver))
    }

    /// [`drain_with`](Self::drain_with), delivering at most `max` records:
    /// the first `max` deliverable records (in the order
    /// [`Drained::records`] documents) go to `deliver` and are marked
    /// consumed once it returned `Ok`; the rest stay pending, in the WAL,
    /// and the next drain delivers them first. `max == 0` delivers nothing
    /// and leaves everything pending.
    ///
    /// Every guarantee of `drain_with` holds, for the delivered records and
    /// for the rest: the WAL that holds the rest is rewritten only after the
    /// ledger that marks the delivered ones is durable, and atomically, so a
    /// crash at any point leaves each record delivered-and-marked or
    /// pending. A failed rewrite is reported in
    /// [`Drained::cleanup_error`]: the old WAL then still holds the rest
    /// (and the delivered records, which the ledger skips).
    ///
    /// **Fsyncs: as [`drain`](Self::drain)** when nothing is left over; 1
    /// file fsync more when some records stay pending (the rewritten WAL,
    /// renamed over the old one: either is correct, so no directory fsync).
    pub fn drain_with_max<E>(
        &self,
        parent: &str,
        max: usize,
        deliver: impl FnOnce(&[Record]) -> Result<(), E>,
    ) -> Result<Drained, DrainWithError<E>> {
        let Some(paths) = self.drain_paths(parent)? else {
            return Ok(Drained::default());
        };
        let _drain = self.lock(&paths.drain_lock)?;
        let staged = self.stage_claim(&paths)?;
        self.finalize(&paths, staged, Select::First(max), Some(deliver))
    }

    /// Marks the turns `keys` ([`Record::turn_key`]) consumed and removes
    /// their pending records: the confirmation of a delivery that showed
    /// them (see [`crate::handover`]). A child that committed a newer turn
    /// since keeps the newer record pending (its key differs); a key whose
    /// record is gone is marked all the same (it was acted on, so a
    /// re-commit of it is not delivered again). Everything else stays
    /// pending, in order. Returns the records removed in
    /// [`Drained::records`].
    ///
    /// Crash-safe as a drain: the ledger is durable before a record leaves
    /// the WAL. **Fsyncs: as [`drain_with_max`](Self::drain_with_max)**
    /// (1, +1 when records stay pending in the WAL; 0 when every key is
    /// consumed already and nothing is pending).
    pub fn consume_turns(&self, parent: &str, keys: &[String]) -> Result<Drained> {
        let paths = self.paths(parent)?;
        self.ensure_layout()?;
        let _drain = self.lock(&paths.drain_lock)?;
        let staged = self.stage_claim(&paths)?;
        let no_delivery = None::<fn(&[Record]) -> Result<(), Infallible>>;
        self.finalize(&paths, staged, Select::Turns(keys), no_delivery)
            .map_err(|e| match e {
                DrainWithError::Outbox(e) => e,
                DrainWithError::Delivery(never) => match never {},
            })
    }

    /// `parent`'s files for a drain, with the directories every write needs;
    /// `None` when an outbox opened lazily whose first write this would be
    /// finds nothing to drain (no inbox, claim or agent-deck WAL: three
    /// stats), so that a drain of nothing creates nothing on any root. A
    /// commit racing with it is drained next time, as if it came after.
    fn drain_paths(&self, parent: &str) -> Result<Option<ParentPaths>> {
        let paths = self.paths(parent)?;
        // Re-entry is known before any I/O: say so whatever the disk does.
        crate::held::check(&paths.drain_lock)?;
        self.ensure_root_checked()?;
        if !self.inner.layout_ready.load(Ordering::Acquire) {
            let io = &self.inner.io;
            let mut any = false;
            for path in [&paths.inbox, &paths.claimed, &paths.wal] {
                any = any || io.file_len(path).at("stat", path)?.is_some();
            }
            if !any {
                return Ok(None);
            }
        }
        self.ensure_layout()?;
        Ok(Some(paths))
    }

    /// Phase 1: claim everything pending into the WAL
    /// (`inboxes/<id>.jsonl.claimed`), one record per child, the last in
    /// commit order. Runs under the drain lock and, inside this function,
    /// the inbox locks.
    ///
    /// - The steady state (no earlier claim, no agent-deck WAL, an inbox
    ///   with one record per child and no unreadable line): the inbox is
    ///   renamed to the WAL. No fsync: the inbox's data is durable (every
    ///   commit fsynced it), and whichever name a crash leaves holds it.
    /// - Otherwise the union (agent-deck's WAL, the earlier claim, the
    ///   inbox: commit order) is collapsed and written beside the inbox,
    ///   fsynced and renamed to the WAL; then the inbox is removed. No
    ///   directory fsync: the removal is a later change of the same
    ///   directory, so a crash that keeps it keeps the rename. agent-deck's
    ///   WAL lives in another directory: when there is one, `inboxes/` is
    ///   fsynced before it is removed.
    ///
    /// Crash invariant: the last record of each child in the inbox and the
    /// WALs on entry (the only one a drain delivers) is, at every instant,
    /// durably in the WAL or in the inbox (or both). Bad lines reach a
    /// durable quarantine file before their source is removed or replaced.
    fn stage_claim(&self, paths: &ParentPaths) -> Result<Staged> {
        let io = &self.inner.io;
        let _inbox = self.lock(&paths.inbox_lock)?;
        let legacy = self.read_scan_opt(&paths.wal)?;
        let claimed = self.read_scan_opt(&paths.claimed)?;
        let inbox = self.read_scan_opt(&paths.inbox)?;

        let mut quarantined = Vec::new();
        for (scan, source) in [
            (&legacy, &paths.wal),
            (&claimed, &paths.claimed),
            (&inbox, &paths.inbox),
        ] {
            if let Some(scan) = scan
                && !scan.bad_lines.is_empty()
            {
                quarantined.push(self.quarantine(paths, source, &scan.bad_lines)?);
            }
        }
        let clean = |scan: &Option<Scan>| {
            scan.as_ref()
                .is_none_or(|s| s.bad_lines.is_empty() && one_per_child(&s.records))
        };
        let fast_claim = legacy.is_none() && claimed.is_none() && clean(&inbox);
        let as_is = legacy.is_none()
            && inbox
                .as_ref()
                .is_none_or(|s| s.records.is_empty() && s.bad_lines.is_empty())
            && clean(&claimed);

        let mut recovered = 0;
        let mut records = Vec::new();
        let mut bad_lines = Vec::new();
        let (had_legacy, had_claim, had_inbox) =
            (legacy.is_some(), claimed.is_some(), inbox.is_some());
        for (scan, from_wal) in [(legacy, true), (claimed, true), (inbox, false)] {
            if let Some(scan) = scan {
                if from_wal {
                    recovered += scan.records.len();
                }
                records.extend(scan.records);
                bad_lines.extend(scan.bad_lines);
            }
        }
        // The WAL holds one record per child, the last in commit order (a
        // failed delivery does not grow it). After a crash undid an earlier
        // inbox removal, the inbox repeats records the WAL has, which
        // collapse too.
        let records = collapse(records);
        if records.is_empty() {
            // Nothing to deliver: drop what is left (blank or quarantined).
            for (had, path) in [
                (had_legacy, &paths.wal),
                (had_claim, &paths.claimed),
                (had_inbox, &paths.inbox),
            ] {
                if had {
                    io.remove_file(path).at("remove", path)?;
                }
            }
        } else if fast_claim {
            io.rename(&paths.inbox, &paths.claimed)
                .map_err(|source| Error::Io {
                    op: "rename",
                    path: paths.inbox.clone(),
                    to: Some(paths.claimed.clone()),
                    source,
                })?;
        } else if as_is {
            if had_inbox {
                io.remove_file(&paths.inbox).at("remove", &paths.inbox)?;
            }
        } else {
            let mut bytes = Vec::new();
            for r in &records {
                bytes.extend(encode(r)?);
            }
            write_renamed(io, &paths.claimed, &bytes)?;
            if had_legacy {
                let dir = parent_dir(&paths.claimed);
                io.sync_dir(dir).at("fsync directory", dir)?;
                io.remove_file(&paths.wal).at("remove", &paths.wal)?;
            }
            if had_inbox {
                io.remove_file(&paths.inbox).at("remove", &paths.inbox)?;
            }
        }
        Ok(Staged {
            records,
            recovered,
            bad_lines,
            quarantined,
        })
    }

    /// Phase 2: skip consumed turns, (deliver,) persist the ledger, remove
    /// the WAL. Runs under the drain lock. Only the first `max` deliverable
    /// records are delivered and marked; the WAL is then rewritten to hold
    /// the rest instead of being removed.
    ///
    /// Crash invariant: the WAL is removed or rewritten only after the
    /// ledger that marks its delivered records is durable, so a crash
    /// anywhere here re-reads the WAL and the ledger decides what is
    /// delivered again.
    fn finalize<E>(
        &self,
        paths: &ParentPaths,
        staged: Staged,
        select: Select<'_>,
        deliver: Option<impl FnOnce(&[Record]) -> Result<(), E>>,
    ) -> Result<Drained, DrainWithError<E>> {
        let io = &self.inner.io;
        let mut drained = Drained {
            recovered: staged.recovered,
            bad_lines: staged.bad_lines,
            quarantined: staged.quarantined,
            ..Drained::default()
        };
        if staged.records.is_empty() && matches!(select, Select::First(_)) {
            return Ok(drained);
        }
        let ledger = self.ledger(paths)?;
        drained.ledger_was_corrupt = ledger.was_corrupt;
        let (mut fresh, consumed): (Vec<_>, Vec<_>) = staged
            .records
            .into_iter()
            .partition(|r| !ledger.contains(&r.turn_key()));
        drained.already_consumed = consumed.len();
        let (mut fresh, rest, mut turns) = match select {
            Select::First(max) => {
                let rest = fresh.split_off(fresh.len().min(max));
                (fresh, rest, Vec::new())
            }
            Select::Turns(keys) => {
                let (chosen, rest) = fresh
                    .into_iter()
                    .partition(|r| keys.contains(&r.turn_key()));
                // Every key given is marked, also one whose record a newer
                // commit of its child superseded (it was acted on).
                let mut turns: Vec<String> = Vec::new();
                for key in keys {
                    if !ledger.contains(key) && !turns.contains(key) {
                        turns.push(key.clone());
                    }
                }
                (chosen, rest, turns)
            }
        };
        // Not held across the caller's callback (it may commit).
        drop(ledger);
        if fresh.is_empty() && turns.is_empty() && !rest.is_empty() {
            // Nothing to deliver or mark (`max == 0`, or no key given
            // matches): the WAL holds everything.
            return Ok(drained);
        }

        if !fresh.is_empty() || !turns.is_empty() {
            if !fresh.is_empty()
                && let Some(deliver) = deliver
            {
                deliver(&fresh).map_err(DrainWithError::Delivery)?;
            }
            if turns.is_empty() {
                turns = fresh.iter().map(Record::turn_key).collect();
            }
            // The file cannot have changed: every writer of it holds the
            // drain lock, which this drain holds. Read again only if a
            // failed read in between dropped what was read.
            let mut ledger = self.ledger_cell(paths).lock_arc();
            if !ledger.is_loaded() {
                ledger.refresh(io, paths)?;
            }
            match ledger.mark(io, paths, &turns, self.now_unix()) {
                Ok(()) => {}
                Err(MarkFailed::NotMarked(e)) => return Err(e.into()),
                Err(MarkFailed::MarksKept {
                    error,
                    undo,
                    marks_visible,
                    marked,
                }) => {
                    // Only the marks that reached the file: the others are
                    // pending, like any record of a failed drain. (`turns`
                    // is `fresh`'s keys in order, or the keys given.)
                    let reached = &turns[..marked.min(turns.len())];
                    fresh.retain(|r| reached.contains(&r.turn_key()));
                    return Err(Error::MarksKept {
                        error,
                        marks_visible,
                        undo,
                        records: fresh,
                    }
                    .into());
                }
            }
        }
        // The ledger is durable: the WAL may go. A plain unlink: if a crash
        // undoes it, the ledger skips every record in it. For the same reason
        // a failed unlink is not a failed drain: the records are marked, so
        // returning an error here would lose them to the caller. It is
        // reported beside the records instead.
        let cleanup = if rest.is_empty() {
            io.remove_file(&paths.claimed)
                .at("remove", &paths.claimed)
                .map(drop)
        } else {
            // A limited drain: the WAL keeps exactly the records left over.
            // Renamed over the old WAL without a directory fsync: a crash
            // that undoes the rename leaves the old WAL, whose delivered
            // records the ledger skips.
            rest.iter()
                .map(encode)
                .collect::<Result<Vec<_>>>()
                .and_then(|lines| write_renamed(io, &paths.claimed, &lines.concat()))
        };
        if let Err(e) = cleanup {
            drained.cleanup_error = Some(e);
        }
        drained.records = fresh;
        Ok(drained)
    }

    // ----------------------------------------------------------------------
    // Read-only views
    // ----------------------------------------------------------------------

    /// Whether a drain of `parent` would deliver anything now: whether
    /// [`peek`](Self::peek) is non-empty. One `stat` per file when the inbox
    /// and the WAL are empty or absent; else it reads them and the consumed
    /// ledger. Takes no lock, consumes nothing.
    pub fn has_pending(&self, parent: &str) -> Result<bool> {
        let paths = self.paths(parent)?;
        self.ensure_root_checked()?;
        let io = &self.inner.io;
        for path in [&paths.inbox, &paths.claimed, &paths.wal] {
            if io.file_len(path).at("stat", path)?.unwrap_or(0) > 0 {
                return Ok(!self.peek(parent)?.is_empty());
            }
        }
        Ok(false)
    }

    /// What a drain of `parent` would deliver now, for display: consumes
    /// nothing, takes no lock, and skips torn or corrupt lines (a drain may
    /// be rewriting the files meanwhile).
    pub fn peek(&self, parent: &str) -> Result<Vec<Record>> {
        let paths = self.paths(parent)?;
        self.ensure_root_checked()?;
        // The inbox first, then agent-deck's WAL, then the claim: a drain
        // moves records inbox -> claim and agent-deck's WAL -> claim, so
        // records moving are seen (at least) once.
        let inbox = self.read_scan(&paths.inbox)?.records;
        let mut records = self.read_scan(&paths.wal)?.records;
        records.extend(self.read_scan(&paths.claimed)?.records);
        records.extend(inbox);
        if records.is_empty() {
            return Ok(records);
        }
        let ledger = self.ledger(&paths)?;
        Ok(collapse(records)
            .into_iter()
            .filter(|r| !ledger.contains(&r.turn_key()))
            .collect())
    }

    // ----------------------------------------------------------------------
    // Housekeeping
    // ----------------------------------------------------------------------

    /// Drops `parent`'s pending records of `child` (compared trimmed, as
    /// every child id) whose `from_status` and `to_status` are `from` and
    /// `to`; returns how many. Acts on every pending record, judged by the
    /// child's latest: those in the inbox and those a drain claimed and did
    /// not deliver (its delivery failed, or it crashed). Holds the drain
    /// lock, so a drain in progress finishes first: what it delivers is out
    /// of reach, and a call from inside a [`drain_with`](Self::drain_with)
    /// callback of the same parent is an [`Error::Reentrant`]. The other
    /// children keep their order. Fsyncs only when something is dropped (1
    /// file + 1 directory, per file rewritten).
    pub fn sweep_transition(
        &self,
        parent: &str,
        child: &str,
        from: &str,
        to: &str,
    ) -> Result<usize> {
        let paths = self.paths(parent)?;
        self.ensure_layout()?;
        let _drain = self.lock(&paths.drain_lock)?;
        let _inbox = self.lock(&paths.inbox_lock)?;
        let child = child.trim();
        self.sweep_records(&paths, |r| {
            !(child_of(r) == child && r.from_status == from && r.to_status == to)
        })
    }

    /// Drops the records in `parent`'s inbox older than `max_age` by their
    /// timestamp ([`DEFAULT_STALE_AGE`] is the usual value); returns how
    /// many. A record without a timestamp (or with the zero time) has no
    /// known age and is kept, as agent-deck keeps it. Like
    /// [`sweep_transition`](Self::sweep_transition), it acts on records a
    /// drain claimed and did not deliver (a failed delivery, a crash) as on
    /// any pending record, judged by each child's latest, and waits for a
    /// drain in progress (what it delivers is out of reach). agent-deck's
    /// own WAL is left to the next drain.
    ///
    /// Also removes `parent`'s stale temporary files: those of writers
    /// killed between creating and renaming them. Every writer of a file
    /// holds that file's lock (the inbox lock, or the drain lock) from
    /// creating its temporary file to renaming it, and this sweep holds both
    /// locks, so every temporary file it finds is stale. (The removals are
    /// plain unlinks: one a crash undoes is removed by the next sweep.)
    /// Other processes' files are never touched: only names the outbox
    /// derives from `parent`'s files, `<file>.tmp-<hex>`, are removed.
    ///
    /// Fsyncs only when a record is dropped (1 file + 1 directory). Holds
    /// the drain lock: do not call it from a [`drain_with`](Self::drain_with)
    /// callback of the same parent.
    pub fn sweep_stale(&self, parent: &str, max_age: Duration) -> Result<usize> {
        let paths = self.paths(parent)?;
        self.ensure_root_checked()?;
        let (found, _) = self.parent_files()?;
        if !self.inner.layout_ready.load(Ordering::Acquire) && !found.contains_key(&paths.stem) {
            // A lazily opened outbox: nothing to sweep, nothing created.
            return Ok(0);
        }
        self.ensure_layout()?;
        let temps = found.get(&paths.stem).map_or(&[][..], |f| &f.temps);
        Ok(self.sweep_parent(&paths, temps, max_age)?.0)
    }

    /// [`sweep_stale`](Self::sweep_stale) over every parent with an inbox or
    /// a temporary file under the root. A file that names no parent this
    /// outbox can open, or a parent whose sweep fails, is reported in
    /// [`SweepReport::skipped`] and the sweep goes on with the others. An
    /// error is returned only when a directory cannot be listed.
    pub fn sweep_stale_all(&self, max_age: Duration) -> Result<SweepReport> {
        self.ensure_root_checked()?;
        let mut report = SweepReport::default();
        let (found, odd) = self.parent_files()?;
        report.skipped = odd;
        if found.is_empty() {
            // Nothing to sweep: a lazily opened outbox creates nothing.
            return Ok(report);
        }
        self.ensure_layout()?;
        for (stem, files) in found {
            let result = match id_of_stem(&stem) {
                Some(id) => self
                    .paths(&id)
                    .and_then(|paths| self.sweep_parent(&paths, &files.temps, max_age)),
                None => Err(Error::InvalidParentId {
                    id: stem,
                    reason: "no parent id maps to this file name",
                }),
            };
            match result {
                Ok((dropped, removed)) => {
                    report.dropped += dropped;
                    report.temp_files_removed += removed;
                }
                Err(e) => report.skipped.push((files.path, e)),
            }
        }
        Ok(report)
    }

    /// Removes the stale temporary files `temps` of one parent and drops
    /// its records older than `max_age`, under both of its locks; returns
    /// (records dropped, files removed).
    fn sweep_parent(
        &self,
        paths: &ParentPaths,
        temps: &[PathBuf],
        max_age: Duration,
    ) -> Result<(usize, usize)> {
        let io = &self.inner.io;
        let now = self.now();
        let _drain = self.lock(&paths.drain_lock)?;
        let _inbox = self.lock(&paths.inbox_lock)?;
        let mut removed = 0;
        for temp in temps {
            if io.remove_file(temp).at("remove", temp)? {
                removed += 1;
            }
        }
        let dropped = self.sweep_records(paths, |r| {
            r.timestamp.is_zero() || r.timestamp.age_at(now) <= max_age
        })?;
        Ok((dropped, removed))
    }

    /// The parents with files in the outbox's directories, by stem: an
    /// inbox, or temporary files (listed); and the names that cannot be
    /// read as a parent's file name (not UTF-8).
    #[allow(clippy::type_complexity)]
    fn parent_files(&self) -> Result<(BTreeMap<String, ParentFiles>, Vec<(PathBuf, Error)>)> {
        let root = &self.inner.root;
        let mut found: BTreeMap<String, ParentFiles> = BTreeMap::new();
        let mut odd = Vec::new();
        for (dir, kind) in [
            (INBOX_DIR, DirKind::Inboxes),
            (WAL_DIR, DirKind::Wal),
            (LEDGER_DIR, DirKind::Json),
            (STOP_BLOCKS_DIR, DirKind::Json),
        ] {
            let dir = root.join(dir);
            for name in self.inner.io.list_dir(&dir).at("list", &dir)? {
                let Some(text) = name.to_str() else {
                    let lossy = name.to_string_lossy();
                    if lossy.contains(crate::paths::TEMP_MARK)
                        || (kind == DirKind::Inboxes && lossy.ends_with(".jsonl"))
                    {
                        odd.push((
                            dir.join(&name),
                            Error::InvalidParentId {
                                id: lossy.into_owned(),
                                reason: "the file name is not UTF-8",
                            },
                        ));
                    }
                    continue;
                };
                // A claim a failed drain left holds pending records too: a
                // parent with only a claim is swept like one with an inbox.
                let (stem, temp, claim) = match temp_target(text) {
                    Some(target) => (stem_of_target(kind, target), true, false),
                    None if kind == DirKind::Inboxes => match text.strip_suffix(".jsonl") {
                        Some(stem) => (Some(stem), false, false),
                        None => (text.strip_suffix(".jsonl.claimed"), false, true),
                    },
                    None => (None, false, false),
                };
                let Some(stem) = stem else { continue };
                let path = dir.join(&name);
                let files = found.entry(stem.to_owned()).or_insert_with(|| ParentFiles {
                    path: path.clone(),
                    temps: Vec::new(),
                });
                if temp {
                    files.temps.push(path);
                } else if !claim {
                    files.path = path;
                }
            }
        }
        Ok((found, odd))
    }

    /// Forgets the consumed turns of `child` (e.g. a removed child) in
    /// `parent`'s ledger; returns how many entries were dropped. A turn
    /// fingerprint is `<child>@<hash>`: exactly the entries whose part
    /// before the last `@` is `child` (trimmed) are dropped, so forgetting
    /// `a` keeps the turns of `a@b`. An [`Error::Reentrant`] from inside a
    /// `drain_with` callback of `parent`.
    pub fn forget_child(&self, parent: &str, child: &str) -> Result<usize> {
        let paths = self.paths(parent)?;
        self.ensure_layout()?;
        let _drain = self.lock(&paths.drain_lock)?;
        let child = child.trim();
        self.ledger(&paths)?.forget(&self.inner.io, &paths, |turn| {
            turn.rsplit_once('@')
                .is_some_and(|(owner, _)| owner == child)
        })
    }
}

/// The files of one parent found by a sweep.
struct ParentFiles {
    /// A file that led to the parent: its inbox when it has one.
    path: PathBuf,
    /// Its temporary files.
    temps: Vec<PathBuf>,
}

/// Creates each of `dirs` with its missing ancestors, and makes every
/// created entry durable: each directory that gained an entry is fsynced
/// once, after all are created. A directory that exists is taken as
/// durable.
/// Which of the claimed records a drain's second phase delivers and marks.
#[derive(Clone, Copy, Debug)]
enum Select<'a> {
    /// The first `n` deliverable records, in order.
    First(usize),
    /// The records of these turns; the keys are marked whether or not a
    /// record of theirs is pending.
    Turns(&'a [String]),
}

pub(crate) fn ensure_dirs<I: Io>(io: &I, dirs: &[PathBuf]) -> Result<()> {
    let mut to_sync: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        // The missing directories on the way to `dir`, deepest first.
        let mut missing = Vec::new();
        let mut at = dir.as_path();
        while io.file_len(at).at("stat", at)?.is_none() {
            missing.push(at);
            let up = parent_dir(at);
            if up == at {
                break;
            }
            at = up;
        }
        if missing.is_empty() {
            continue;
        }
        io.create_dir_all(dir).at("create directory", dir)?;
        for created in missing.iter().rev() {
            let up = parent_dir(created).to_owned();
            if !to_sync.contains(&up) {
                to_sync.push(up);
            }
        }
    }
    for dir in &to_sync {
        io.sync_dir(dir).at("fsync directory", dir)?;
    }
    Ok(())
}

/// Encodes one record as a JSON line.
fn encode(r: &Record) -> Result<Vec<u8>> {
    encode_line(r).map_err(|source| Error::Encode {
        child: r.child_session_id.clone(),
        source,
    })
}

/// A record's child, as identity: its id trimmed, as agent-deck's turn
/// fingerprint takes it (a new commit may not pad an id, see
/// [`Error::IdHasSurroundingWhitespace`]; lines agent-deck wrote may).
fn child_of(r: &Record) -> &str {
    r.child_session_id.trim()
}

/// Whether `records` hold at most one record per child.
fn one_per_child(records: &[Record]) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(records.len());
    records.iter().all(|r| seen.insert(child_of(r)))
}

/// One record per child ([`child_of`]), the last in `records` (which are
/// in commit order: the WAL's, then the inbox's), in the order the
/// children were first seen. Timestamps play no part: a clock step or a
/// producer's stamp cannot make an older record win.
pub(crate) fn collapse(records: Vec<Record>) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for r in records {
        match index.get(child_of(&r)) {
            Some(&i) => out[i] = r,
            None => {
                index.insert(child_of(&r).to_owned(), out.len());
                out.push(r);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(child: &str, ts: &str, to: &str) -> Record {
        Record {
            child_session_id: child.into(),
            to_status: to.into(),
            timestamp: ts.parse().unwrap(),
            ..Record::default()
        }
    }

    #[test]
    fn collapse_keeps_the_last_per_child_in_first_seen_order() {
        let out = collapse(vec![
            rec("b", "2026-01-01T00:00:02Z", "b1"),
            rec("a", "2026-01-01T00:00:05Z", "a1"),
            rec("c", "2026-01-01T00:00:09Z", "c-stamped-later"),
            rec("b", "2026-01-01T00:00:01Z", "b-stamped-earlier"),
            rec("a", "2026-01-01T00:00:05Z", "a-tie"),
            rec("c", "2026-01-01T00:00:01Z", "c-committed-last"),
        ]);
        let got: Vec<_> = out
            .iter()
            .map(|r| (r.child_session_id.as_str(), r.to_status.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("b", "b-stamped-earlier"),
                ("a", "a-tie"),
                ("c", "c-committed-last")
            ]
        );
    }

    fn children(records: &[Record]) -> Vec<&str> {
        records
            .iter()
            .map(|r| r.child_session_id.as_str())
            .collect()
    }

    /// Drains at most `max` records; returns the children delivered.
    fn drain_max(outbox: &Outbox, max: usize) -> Vec<String> {
        let mut got = Vec::new();
        let drained = outbox
            .drain_with_max("p", max, |records| {
                got.extend(children(records).into_iter().map(String::from));
                Ok::<_, Infallible>(())
            })
            .unwrap();
        assert_eq!(children(&drained.records), got);
        assert!(
            drained.cleanup_error.is_none(),
            "{:?}",
            drained.cleanup_error
        );
        got
    }

    #[test]
    fn drain_with_max_leaves_the_rest_pending_and_delivers_it_first() {
        let root = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(root.path()).unwrap();
        for c in ["c1", "c2", "c3", "c4", "c5"] {
            outbox.commit("p", Record::finished(c, "success")).unwrap();
        }
        assert_eq!(drain_max(&outbox, 2), ["c1", "c2"]);
        assert!(outbox.has_pending("p").unwrap());
        assert_eq!(children(&outbox.peek("p").unwrap()), ["c3", "c4", "c5"]);

        // A new child arrives, and a pending one is superseded: the rest
        // comes first, each child once, in its latest version.
        outbox
            .commit("p", Record::finished("c6", "success"))
            .unwrap();
        outbox
            .commit("p", Record::finished("c3", "failed"))
            .unwrap();
        let mut got = Vec::new();
        outbox
            .drain_with_max("p", 2, |records| {
                got.extend(
                    records
                        .iter()
                        .map(|r| (r.child_session_id.clone(), r.done_status.clone())),
                );
                Ok::<_, Infallible>(())
            })
            .unwrap();
        assert_eq!(
            got,
            [
                ("c3".to_owned(), "failed".to_owned()),
                ("c4".to_owned(), "success".to_owned())
            ]
        );
        assert_eq!(drain_max(&outbox, usize::MAX), ["c5", "c6"]);
        assert!(!outbox.has_pending("p").unwrap());
        assert!(outbox.drain("p").unwrap().records.is_empty());
    }

    #[test]
    fn drain_with_max_delivers_nothing_twice_and_loses_nothing_on_failure() {
        let root = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(root.path()).unwrap();
        for c in ["c1", "c2", "c3"] {
            outbox.commit("p", Record::finished(c, "success")).unwrap();
        }
        // A failed delivery marks nothing.
        let err = outbox.drain_with_max("p", 2, |records| {
            assert_eq!(children(records), ["c1", "c2"]);
            Err("no")
        });
        assert!(matches!(err, Err(DrainWithError::Delivery("no"))));
        assert_eq!(children(&outbox.peek("p").unwrap()), ["c1", "c2", "c3"]);
        // max 0 delivers nothing and calls nobody.
        let drained = outbox
            .drain_with_max("p", 0, |_| -> Result<(), Infallible> { panic!("called") })
            .unwrap();
        assert!(drained.records.is_empty());
        assert_eq!(children(&outbox.peek("p").unwrap()), ["c1", "c2", "c3"]);
        // One at a time, then nothing.
        let mut all = Vec::new();
        for _ in 0..3 {
            all.extend(drain_max(&outbox, 1));
        }
        assert_eq!(all, ["c1", "c2", "c3"]);
        assert!(drain_max(&outbox, 1).is_empty());
        assert!(!outbox.has_pending("p").unwrap());
    }

    #[test]
    fn a_failed_rewrite_of_the_rest_loses_nothing_and_repeats_nothing() {
        // Fsyncs of drain_with_max(2) over 3 records (protocol v2): the
        // claim is a rename (none), the new ledger (1 file, 2 dir), the
        // rewritten WAL (3 file; renamed without a directory fsync).
        // Failing 3 leaves the old WAL: delivered records marked, the rest
        // pending, and the drain itself succeeded.
        for failing in [3] {
            let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let seen = Arc::clone(&calls);
            let io = StdIo::with_fsync(move |file: &std::fs::File| {
                if seen.fetch_add(1, Ordering::SeqCst) + 1 == failing {
                    return Err(std::io::Error::other("injected fsync failure"));
                }
                file.sync_all()
            });
            let root = tempfile::tempdir().unwrap();
            let plain = Outbox::open(root.path()).unwrap();
            for c in ["c1", "c2", "c3"] {
                plain.commit("p", Record::finished(c, "success")).unwrap();
            }
            let outbox = Outbox::open_with(root.path(), io).unwrap();
            calls.store(0, Ordering::SeqCst);
            let drained = outbox
                .drain_with_max("p", 2, |_| Ok::<_, Infallible>(()))
                .unwrap();
            assert_eq!(children(&drained.records), ["c1", "c2"], "{failing}");
            let cleanup = drained.cleanup_error.expect("the rewrite failed");
            assert!(
                cleanup.to_string().contains("injected"),
                "{failing}: {cleanup}"
            );
            assert_eq!(calls.load(Ordering::SeqCst), failing, "no retry");
            assert_eq!(children(&plain.peek("p").unwrap()), ["c3"], "{failing}");
            assert_eq!(drain_max(&plain, usize::MAX), ["c3"], "{failing}");
            assert!(drain_max(&plain, usize::MAX).is_empty());
        }
    }

    #[test]
    fn drain_with_max_fsyncs_once_more_only_when_records_are_left() {
        let counter = testutil::FsyncCounter::new();
        let root = tempfile::tempdir().unwrap();
        let outbox = Outbox::open_with(root.path(), StdIo::with_fsync(counter.hook())).unwrap();
        for c in ["c1", "c2", "c3"] {
            outbox.commit("p", Record::finished(c, "success")).unwrap();
        }
        let before = counter.counts();
        drain_max(&outbox, 2);
        let after = counter.counts();
        // The claim is a rename; the first ledger is created (1 + 1); the
        // WAL keeps the rest (1 file fsync, no directory fsync).
        assert_eq!((after.file - before.file, after.dir - before.dir), (2, 1));
        drain_max(&outbox, 2);
        let last = counter.counts();
        // Only the WAL's own records: no claim, the ledger's append (one
        // fdatasync), no rewrite.
        assert_eq!((last.file - after.file, last.dir - after.dir), (1, 0));
    }
}
