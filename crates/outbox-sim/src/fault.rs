//! [`FaultIo`]: fails chosen operations of any [`Io`] with chosen errors.

use std::ffi::OsString;
use std::fmt;
use std::io::{self};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::op::{Op, OpKind, OpKindSet, entries_since};
use outbox::io::{Appending, FailedWrite, Io};

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
    pub counts: OpKindSet,
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
            counts: OpKindSet::ALL,
            fault,
            persist: false,
            partial_write: false,
        }
    }

    /// Fail counted operation `at` and every later one with `fault`.
    pub fn persistent(at: usize, fault: Fault) -> Self {
        FaultPlan {
            persist: true,
            ..Self::once(at, fault)
        }
    }

    /// The same plan, counting only `kinds`.
    pub fn counting(self, kinds: OpKindSet) -> Self {
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
}

/// An [`Io`] wrapper that fails chosen operations with chosen errors and
/// logs every operation.
///
/// Clones share the plan, counters and log.
///
/// ```
/// use outbox::io::Io;
/// use outbox_sim::{CrashIo, Fault, FaultIo, FaultPlan, OpKind, OpKindSet};
/// use std::path::Path;
///
/// let fs = CrashIo::new();
/// fs.install_dir("/d");
/// let io = FaultIo::new(fs);
/// io.arm(FaultPlan::once(0, Fault::EIO).counting(OpKindSet::of([OpKind::SyncFile])));
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

    fn decide(&self, kind: OpKind, path: &Path, to: Option<&Path>, len: Option<usize>) -> Decision {
        let mut s = self.state.lock();
        let index = s.next_index;
        s.next_index += 1;
        let counts = s.plan.map_or(OpKindSet::ALL, |p| p.counts);
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
        if r.is_err() {
            self.mark_failed(index);
        }
        r
    }

    /// Logs operation `index` as failed.
    fn mark_failed(&self, index: usize) {
        if let Some(op) = self
            .state
            .lock()
            .log
            .iter_mut()
            .rev()
            .find(|o| o.index == index)
        {
            op.ok = false;
        }
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

    fn write_all_counted(&self, file: &mut Self::File, data: &[u8]) -> Result<(), FailedWrite> {
        match self.decide(OpKind::WriteAll, &file.path, None, Some(data.len())) {
            Decision::Pass(i) => {
                let r = self.inner.write_all_counted(&mut file.inner, data);
                if r.is_err() {
                    self.mark_failed(i);
                }
                r
            }
            Decision::Fail(p) => {
                let mut written = Some(0);
                if p.partial_write && data.len() > 1 {
                    // A short write: the first half may reach the file.
                    let half = &data[..data.len() / 2];
                    written = match self.inner.write_all_counted(&mut file.inner, half) {
                        Ok(()) => Some(half.len()),
                        Err(e) => e.written,
                    };
                }
                Err(FailedWrite {
                    written,
                    error: p.fault.to_error(),
                })
            }
        }
    }

    fn sync_file(&self, file: &mut Self::File) -> io::Result<()> {
        let path = file.path.clone();
        self.run(OpKind::SyncFile, &path, None, || {
            self.inner.sync_file(&mut file.inner)
        })
    }

    fn open_append(&self, path: &Path) -> io::Result<Option<Appending<Self::File>>> {
        let opened = self.run(OpKind::OpenAppend, path, None, || {
            self.inner.open_append(path)
        })?;
        Ok(opened.map(|a| Appending {
            file: FaultFile {
                inner: a.file,
                path: path.to_owned(),
            },
            ends_in_newline: a.ends_in_newline,
        }))
    }

    fn sync_data(&self, file: &mut Self::File) -> io::Result<()> {
        let path = file.path.clone();
        self.run(OpKind::SyncData, &path, None, || {
            self.inner.sync_data(&mut file.inner)
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

    fn nonce(&self) -> u64 {
        self.inner.nonce()
    }

    // The ownership queries pass through uncounted and never fail: faults
    // are planned by operation index, and these are no data operations.
    fn entry_meta(&self, path: &Path) -> io::Result<Option<outbox::io::EntryMeta>> {
        self.inner.entry_meta(path)
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        self.inner.canonicalize(path)
    }

    fn user_id(&self) -> Option<u32> {
        self.inner.user_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CrashIo;

    fn p(s: &str) -> &Path {
        Path::new(s)
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

        io.arm(FaultPlan::persistent(1, Fault::EACCES).counting(OpKindSet::syncs()));
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
                .counting(OpKindSet::of([OpKind::WriteAll]))
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
        assert!(!OpKindSet::mutating().contains(OpKind::ListDir));
        assert!(OpKindSet::mutating().contains(OpKind::Lock));
    }
}
