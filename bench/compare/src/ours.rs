//! Our outbox (`crates/outbox`), through its public API only.

use std::path::{Path, PathBuf};

use outbox::{Outbox, Record, StdIo};

use crate::store::{Contender, Fsync, Result, Store, sync_tree};

/// The `outbox` crate of this repository.
pub struct Ours;

impl Contender for Ours {
    fn name(&self) -> &'static str {
        "our outbox"
    }

    fn describe(&self) -> String {
        "our outbox: crates/outbox at this commit, `StdIo`; fsync stubbed = a no-op \
         injected with `StdIo::with_fsync` (as the WARM perf gates do), real = the \
         default (`File::sync_all`)"
            .into()
    }

    fn open(&self, dir: &Path, fsync: Fsync) -> Result<Box<dyn Store>> {
        let stubbed = || Outbox::open_with(dir, StdIo::with_fsync(testutil::noop_fsync()));
        let timed = match fsync {
            Fsync::Stubbed => stubbed()?,
            Fsync::Real => Outbox::open_with(dir, StdIo::new())?,
        };
        Ok(Box::new(OursStore {
            root: dir.to_path_buf(),
            timed,
            setup: stubbed()?,
        }))
    }
}

/// One outbox root, with two `Outbox` values on it: the timed one, and
/// one with a no-op fsync for the untimed setup (the two coordinate
/// through the outbox's lock files, as two processes would).
struct OursStore {
    root: PathBuf,
    timed: Outbox<StdIo>,
    setup: Outbox<StdIo>,
}

impl Store for OursStore {
    fn commit(&mut self, parent: &str, record: Record) -> Result<()> {
        self.timed.commit(parent, record)?;
        Ok(())
    }

    fn drain(&mut self, parent: &str) -> Result<Vec<Record>> {
        Ok(self.timed.drain(parent)?.records)
    }

    fn fill(&mut self, parent: &str, records: Vec<Record>) -> Result<()> {
        // No batch commit in the public API: one commit per record.
        for record in records {
            self.setup.commit(parent, record)?;
        }
        Ok(())
    }

    fn settle(&mut self) -> Result<()> {
        sync_tree(&self.root)
    }
}
