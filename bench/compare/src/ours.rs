//! Our outbox (`crates/outbox`), through its public API only.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use outbox::{Outbox, Record, StdIo, turn_fingerprint, turn_id};

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

    /// Writes the history as an agent-deck consumed ledger (a JSON object
    /// of turn key → Unix second: the format every version of this outbox
    /// must keep reading, and which a redesigned one migrates on first
    /// use), holding exactly the keys the default's drains would have
    /// marked, then lets the outbox adopt it with one untimed commit and
    /// drain through the API (so a migration, if any, is not timed), after
    /// checking through `commit`'s `already_consumed` that it reads it.
    ///
    /// Why not the default: with this outbox every commit reads the whole
    /// ledger, so building a history of H turns through commits costs
    /// O(H²): 373 s for 10 000 turns on the project's machine, hours for
    /// 100 000. When commit no longer reads the whole ledger, delete this
    /// method and the default builds the history through the API.
    fn seed_history(
        &mut self,
        parent: &str,
        turns: usize,
        next_batch: &mut dyn FnMut(usize) -> Vec<Record>,
    ) -> Result<()> {
        let ledger = self.setup.paths(parent)?.ledger;
        let mut entries: serde_json::Map<String, serde_json::Value> = match std::fs::read(&ledger) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not a JSON-map ledger: {e}", ledger.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Map::new(),
            Err(e) => return Err(format!("read {}: {e}", ledger.display()).into()),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let records = next_batch(turns);
        for record in &records {
            let key = turn_id(record).unwrap_or_else(|| turn_fingerprint(record));
            entries.insert(key, now.into());
        }
        let temp = ledger.with_extension("json.seed");
        std::fs::write(&temp, serde_json::to_vec(&entries)?)
            .map_err(|e| format!("write {}: {e}", temp.display()))?;
        std::fs::rename(&temp, &ledger)
            .map_err(|e| format!("rename {} to {}: {e}", temp.display(), ledger.display()))?;
        // The outbox must have read the history: a seeded turn committed
        // again is already consumed (and no drain delivers it).
        if let Some(seeded) = records.into_iter().next()
            && !self.setup.commit(parent, seeded)?.already_consumed
        {
            return Err(format!("{} was not read as the history", ledger.display()).into());
        }
        for record in next_batch(1) {
            self.setup.commit(parent, record)?;
        }
        let adopted = self.setup.drain(parent)?.records.len();
        if adopted != 1 {
            return Err(format!("the adopting drain delivered {adopted} records, not 1").into());
        }
        Ok(())
    }

    fn settle(&mut self) -> Result<()> {
        sync_tree(&self.root)
    }
}
