//! What the comparison needs of an outbox implementation, and the list of
//! implementations it compares.
//!
//! # Adding an implementation
//!
//! 1. Write a module (e.g. `postgres.rs`) with a type implementing
//!    [`Store`] (commit, drain, the untimed `fill` and `settle`) and a
//!    [`Contender`] that opens one store per case in a scratch directory
//!    (a server-backed store can ignore the directory and use a fresh
//!    schema or database instead).
//! 2. Add one line to [`contenders`]. Every case then runs it too, in the
//!    same interleaved rounds; the table gains a column for it and an
//!    "ours / it" ratio with its verdict, and the JSON an entry.
//!
//! The rules a store must keep so the comparison stays fair are on each
//! method below: the timed operations do the whole durable job
//! (`commit` durable on return, `drain` delivering and marking in one
//! atomic step), and the untimed ones leave exactly the state the timed
//! ones would have left.

use std::error::Error;
use std::path::Path;

use outbox::Record;

/// The error of every fallible step of the comparison.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// The result of every fallible step of the comparison.
pub type Result<T> = std::result::Result<T, BoxError>;

/// Whether the timed operations ask the disk to make data durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// No fsync reaches the disk: our outbox's injectable fsync is a
    /// no-op, SQLite runs with `PRAGMA synchronous=OFF`. Measures each
    /// implementation's own CPU and page-cache work.
    Stubbed,
    /// The implementation's real durability: `File::sync_all` for ours,
    /// `PRAGMA synchronous=FULL` for SQLite.
    Real,
}

impl Fsync {
    /// `stubbed` or `real`, as in case ids and the JSON.
    pub fn id(self) -> &'static str {
        match self {
            Fsync::Stubbed => "stubbed",
            Fsync::Real => "real",
        }
    }
}

/// One open outbox of one implementation, holding any number of parents.
///
/// Used from one thread; a store is opened once per case and lives for the
/// whole run (a long-lived connection, for a database).
pub trait Store {
    /// Commits `record` to `parent`, stamped as `outbox::Outbox::commit`
    /// stamps it, durable on return (per the store's [`Fsync`]); last wins
    /// per child. **Timed.**
    fn commit(&mut self, parent: &str, record: Record) -> Result<()>;

    /// Drains `parent`: returns its pending records not yet consumed, in
    /// commit order, and marks their turns consumed, atomically and
    /// durably (per the store's [`Fsync`]). **Timed.**
    fn drain(&mut self, parent: &str) -> Result<Vec<Record>>;

    /// Commits `records` to `parent` in order, leaving the state `commit`
    /// would leave, as fast as the implementation honestly can (it may
    /// skip fsyncs: [`settle`](Store::settle) runs before any timed
    /// operation that fsyncs). **Untimed** setup.
    fn fill(&mut self, parent: &str, records: Vec<Record>) -> Result<()> {
        for record in records {
            self.commit(parent, record)?;
        }
        Ok(())
    }

    /// Gives `parent` a history of `turns` consumed turns, as that many
    /// drained records would have, before any timed run. **Untimed.**
    ///
    /// The default builds it through the timed API's own operations:
    /// [`fill`](Store::fill) `batch` records of fresh turns (`next_batch`
    /// makes them), [`drain`](Store::drain) them, until `turns` are
    /// consumed. An implementation may override it with a faster way to
    /// reach the same state, and must say in its docs why that state is the
    /// same.
    fn seed_history(
        &mut self,
        parent: &str,
        turns: usize,
        next_batch: &mut dyn FnMut(usize) -> Vec<Record>,
    ) -> Result<()> {
        const BATCH: usize = 100;
        let mut left = turns;
        while left > 0 {
            let n = left.min(BATCH);
            self.fill(parent, next_batch(n))?;
            let drained = self.drain(parent)?.len();
            if drained != n {
                return Err(format!("a history drain delivered {drained} of {n} records").into());
            }
            left -= n;
        }
        Ok(())
    }

    /// Makes everything written so far durable, so that a timed operation
    /// with the real fsync does not also pay for flushing the setup's
    /// writes. **Untimed.**
    fn settle(&mut self) -> Result<()>;
}

/// An implementation under comparison: its name and how to open a store.
pub trait Contender {
    /// The column header: `our outbox`, `SQLite outbox`, ...
    fn name(&self) -> &'static str;

    /// One line on how it is configured, printed above the table.
    fn describe(&self) -> String;

    /// Opens a new, empty store in the empty directory `dir`.
    fn open(&self, dir: &Path, fsync: Fsync) -> Result<Box<dyn Store>>;
}

/// Every implementation, ours first: the table's ratios are ours divided
/// by each of the others. Add a line here to compare one more.
pub fn contenders() -> Vec<Box<dyn Contender>> {
    vec![
        Box::new(crate::ours::Ours),
        Box::new(crate::sqlite::Sqlite),
        // The PostgreSQL store of crates/outbox-postgres goes here.
    ]
}

/// fsyncs every file and directory under `dir` (and `dir` itself): the
/// [`Store::settle`] of a store that lives in files.
pub fn sync_tree(dir: &Path) -> Result<()> {
    let sync = |path: &Path| {
        std::fs::File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(|e| format!("fsync {}: {e}", path.display()))
    };
    for entry in std::fs::read_dir(dir).map_err(|e| format!("list {}: {e}", dir.display()))? {
        let path = entry
            .map_err(|e| format!("list {}: {e}", dir.display()))?
            .path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            sync(&path)?;
        }
    }
    sync(dir)?;
    Ok(())
}
