//! The deterministic scheduler: actors run on their own threads, but only
//! one at a time, and only between two `Io` operations chosen by the world.
//!
//! Every actor owns an `Outbox<SchedIo>`, like a process of its own (no
//! in-process lock is shared). Before each `Io` operation, [`SchedIo`]
//! parks its actor at the [`Gate`] and waits for its turn; the world picks
//! which parked actor runs next from its seeded random stream, so a seed
//! fixes the interleaving exactly. A would-be locker of a held lock file is
//! parked as [`Park::Blocked`] instead of blocking its thread, so the world
//! always knows who can run, and a set of actors that can never run again is
//! reported as a deadlock rather than hanging the test.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use outbox::io::Io;
use outbox_sim::{CrashIo, FaultIo, OpKind};
use parking_lot::{Condvar, Mutex};

/// Where a parked actor waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Park {
    /// Before an `Io` operation.
    AtOp,
    /// Before taking the lock file at this path, which someone holds.
    Blocked(PathBuf),
    /// Its task returned.
    Done,
}

#[derive(Default)]
struct GateState {
    /// The actor allowed to run one step.
    turn: Option<usize>,
    /// Actors waiting for a turn (or done).
    parked: BTreeMap<usize, Park>,
}

/// The meeting point of the world (one thread) and the actors.
#[derive(Default)]
pub struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

impl Gate {
    /// Called by an actor: park as `how`, wait for a turn, take it.
    fn park(&self, actor: usize, how: Park) {
        let mut s = self.state.lock();
        s.parked.insert(actor, how);
        self.changed.notify_all();
        while s.turn != Some(actor) {
            self.changed.wait(&mut s);
        }
        s.turn = None;
        s.parked.remove(&actor);
    }

    /// Called by an actor's thread when its task returned.
    pub fn done(&self, actor: usize) {
        let mut s = self.state.lock();
        s.parked.insert(actor, Park::Done);
        self.changed.notify_all();
    }

    /// Called by the world: waits until `actor` parked, and says where.
    pub fn wait_parked(&self, actor: usize) -> Park {
        let mut s = self.state.lock();
        loop {
            if s.turn.is_none()
                && let Some(p) = s.parked.get(&actor)
            {
                return p.clone();
            }
            self.changed.wait(&mut s);
        }
    }

    /// Called by the world: lets `actor` run to its next parking point.
    pub fn step(&self, actor: usize) -> Park {
        {
            let mut s = self.state.lock();
            assert!(
                matches!(s.parked.get(&actor), Some(Park::AtOp | Park::Blocked(_))),
                "stepping an actor that is not parked at an operation"
            );
            s.turn = Some(actor);
            self.changed.notify_all();
        }
        self.wait_parked(actor)
    }

    /// Forgets a finished actor.
    pub fn clear(&self, actor: usize) {
        self.state.lock().parked.remove(&actor);
    }
}

/// One operation an actor performed, with its outcome.
#[derive(Clone, Debug)]
pub struct ActorOp {
    /// What it was.
    pub kind: OpKind,
    /// Its path, for traces.
    pub path: PathBuf,
    /// The destination, for a rename.
    pub to: Option<PathBuf>,
    /// Whether it returned `Ok`.
    pub ok: bool,
}

/// The `Io` an actor's outbox uses: the shared simulated disk (crash model
/// plus fault injection) behind a gate that parks the actor before every
/// operation. Without a gate (the world's own checks) it just delegates.
#[derive(Clone)]
pub struct SchedIo {
    inner: FaultIo<CrashIo>,
    gate: Option<(Arc<Gate>, usize)>,
    /// Whether the gate is in use: off while the world itself opens the
    /// actor's outbox (it would park the world's own thread).
    gated: Arc<AtomicBool>,
    ops: Arc<Mutex<Vec<ActorOp>>>,
}

impl SchedIo {
    /// The disk `inner`, used by `actor` through `gate`, or directly when
    /// `gate` is `None`.
    pub fn new(inner: FaultIo<CrashIo>, gate: Option<(Arc<Gate>, usize)>) -> Self {
        SchedIo {
            inner,
            gate,
            gated: Arc::new(AtomicBool::new(false)),
            ops: Arc::default(),
        }
    }

    /// Turns the gate on: from now on every operation waits for its turn.
    pub fn engage(&self) {
        self.gated.store(true, Ordering::SeqCst);
    }

    fn is_gated(&self) -> bool {
        self.gate.is_some() && self.gated.load(Ordering::SeqCst)
    }

    /// The operations performed through this value so far.
    pub fn ops(&self) -> Vec<ActorOp> {
        self.ops.lock().clone()
    }

    fn crash_io(&self) -> &CrashIo {
        self.inner.inner()
    }

    fn yield_turn(&self, how: Park) {
        if let Some((gate, actor)) = &self.gate
            && self.is_gated()
        {
            gate.park(*actor, how);
        }
    }

    fn run<T>(
        &self,
        kind: OpKind,
        path: &Path,
        to: Option<&Path>,
        f: impl FnOnce(&FaultIo<CrashIo>) -> io::Result<T>,
    ) -> io::Result<T> {
        self.yield_turn(Park::AtOp);
        let r = f(&self.inner);
        self.ops.lock().push(ActorOp {
            kind,
            path: path.to_path_buf(),
            to: to.map(Path::to_path_buf),
            ok: r.is_ok(),
        });
        r
    }
}

impl Io for SchedIo {
    type File = <FaultIo<CrashIo> as Io>::File;
    type Reader = <FaultIo<CrashIo> as Io>::Reader;
    type Lock = <FaultIo<CrashIo> as Io>::Lock;

    fn create_new(&self, path: &Path) -> io::Result<Self::File> {
        self.run(OpKind::CreateNew, path, None, |io| io.create_new(path))
    }

    fn write_all(&self, file: &mut Self::File, data: &[u8]) -> io::Result<()> {
        let path = file.path().to_path_buf();
        self.run(OpKind::WriteAll, &path, None, |io| io.write_all(file, data))
    }

    fn write_all_counted(
        &self,
        file: &mut Self::File,
        data: &[u8],
    ) -> Result<(), outbox::io::FailedWrite> {
        let path = file.path().to_path_buf();
        self.yield_turn(Park::AtOp);
        let r = self.inner.write_all_counted(file, data);
        self.ops.lock().push(ActorOp {
            kind: OpKind::WriteAll,
            path,
            to: None,
            ok: r.is_ok(),
        });
        r
    }

    fn sync_file(&self, file: &mut Self::File) -> io::Result<()> {
        let path = file.path().to_path_buf();
        self.run(OpKind::SyncFile, &path, None, |io| io.sync_file(file))
    }

    fn open_append(&self, path: &Path) -> io::Result<Option<outbox::io::Appending<Self::File>>> {
        self.run(OpKind::OpenAppend, path, None, |io| io.open_append(path))
    }

    fn sync_data(&self, file: &mut Self::File) -> io::Result<()> {
        let path = file.path().to_path_buf();
        self.run(OpKind::SyncData, &path, None, |io| io.sync_data(file))
    }

    fn open_read(&self, path: &Path) -> io::Result<Option<Self::Reader>> {
        self.run(OpKind::OpenRead, path, None, |io| io.open_read(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.run(OpKind::Rename, from, Some(to), |io| io.rename(from, to))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.run(OpKind::SyncDir, dir, None, |io| io.sync_dir(dir))
    }

    fn remove_file(&self, path: &Path) -> io::Result<bool> {
        self.run(OpKind::RemoveFile, path, None, |io| io.remove_file(path))
    }

    fn file_len(&self, path: &Path) -> io::Result<Option<u64>> {
        self.run(OpKind::FileLen, path, None, |io| io.file_len(path))
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.run(OpKind::CreateDirAll, dir, None, |io| io.create_dir_all(dir))
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        self.run(OpKind::ListDir, dir, None, |io| io.list_dir(dir))
    }

    fn lock(&self, path: &Path) -> io::Result<Self::Lock> {
        self.yield_turn(Park::AtOp);
        // Park instead of blocking the thread while someone holds the lock;
        // the world wakes us only once it is free.
        while self.is_gated() && !self.crash_io().crashed() && self.crash_io().is_locked(path) {
            self.yield_turn(Park::Blocked(path.to_path_buf()));
        }
        let r = self.inner.lock(path);
        self.ops.lock().push(ActorOp {
            kind: OpKind::Lock,
            path: path.to_path_buf(),
            to: None,
            ok: r.is_ok(),
        });
        r
    }
}

/// True when `actor` may run now: parked at an operation, or blocked on a
/// lock that has been released.
pub fn runnable(park: &Park, disk: &CrashIo) -> bool {
    match park {
        Park::AtOp => true,
        Park::Blocked(path) => !disk.is_locked(path) || disk.crashed(),
        Park::Done => false,
    }
}
