//! The consumed ledger: which turns a parent has already been handed.
//!
//! On disk: `runtime/consumed-turns/<id>.json`, a JSON object mapping a turn
//! fingerprint to the Unix second it was consumed. Always replaced with the
//! durable-write recipe, so it is never torn.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use crate::durable::{WriteFailed, write_durable};
use crate::error::{IoContext, Result};
use crate::io::Io;

/// How long a consumed turn is remembered: entries older than this are
/// pruned whenever the ledger is saved.
pub const LEDGER_TTL: Duration = Duration::from_secs(14 * 24 * 3600);

/// The largest ledger file read, in bytes (about a million entries).
const MAX_LEDGER_BYTES: u64 = 64 * 1024 * 1024;

/// A parent's consumed ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ledger {
    /// Turn fingerprint → Unix second consumed.
    pub entries: BTreeMap<String, i64>,
    /// The file existed but could not be read as a ledger; it was treated as
    /// empty (at worst a turn is delivered again, never lost).
    pub was_corrupt: bool,
}

impl Ledger {
    /// Reads the ledger at `path`; a missing file is an empty ledger.
    pub fn load<I: Io>(io: &I, path: &Path) -> Result<Self> {
        let Some(reader) = io.open_read(path).at("open ledger", path)? else {
            return Ok(Self::default());
        };
        let mut bytes = Vec::new();
        reader
            .take(MAX_LEDGER_BYTES + 1)
            .read_to_end(&mut bytes)
            .at("read ledger", path)?;
        if bytes.len() as u64 > MAX_LEDGER_BYTES {
            return Ok(Self {
                entries: BTreeMap::new(),
                was_corrupt: true,
            });
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        Ok(
            match serde_json::from_slice::<BTreeMap<String, f64>>(&bytes) {
                Ok(map) => Self {
                    entries: map.into_iter().map(|(k, v)| (k, v as i64)).collect(),
                    was_corrupt: false,
                },
                Err(_) => Self {
                    entries: BTreeMap::new(),
                    was_corrupt: true,
                },
            },
        )
    }

    /// Whether `turn` was consumed.
    pub fn contains(&self, turn: &str) -> bool {
        self.entries.contains_key(turn)
    }

    /// Drops entries consumed more than [`LEDGER_TTL`] before `now`.
    pub fn prune(&mut self, now_unix: i64) {
        let cutoff = now_unix.saturating_sub(LEDGER_TTL.as_secs() as i64);
        self.entries.retain(|_, consumed| *consumed >= cutoff);
    }

    /// Prunes, then replaces the file durably (1 file + 1 directory fsync).
    pub fn save<I: Io>(&mut self, io: &I, path: &Path, now_unix: i64) -> Result<(), WriteFailed> {
        self.prune(now_unix);
        let bytes = self.encode();
        write_durable(io, path, &bytes)
    }

    /// The file content: a JSON object with sorted keys.
    pub fn encode(&self) -> Vec<u8> {
        // A map of strings to integers always serialises.
        serde_json::to_vec(&self.entries).unwrap_or_else(|_| b"{}".to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StdIo;

    #[test]
    fn round_trips_and_prunes_old_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.json");
        let io = StdIo::new();
        let now = 2_000_000_000;
        let mut ledger = Ledger::default();
        ledger.entries.insert("fresh".into(), now - 10);
        ledger
            .entries
            .insert("edge".into(), now - LEDGER_TTL.as_secs() as i64);
        ledger
            .entries
            .insert("old".into(), now - LEDGER_TTL.as_secs() as i64 - 1);
        ledger.save(&io, &path, now).unwrap();
        let back = Ledger::load(&io, &path).unwrap();
        assert!(back.contains("fresh") && back.contains("edge") && !back.contains("old"));
        assert!(!back.was_corrupt);
    }

    #[test]
    fn a_corrupt_ledger_reads_as_empty_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.json");
        std::fs::write(&path, b"{\"a\": 1,").unwrap();
        let ledger = Ledger::load(&StdIo::new(), &path).unwrap();
        assert!(ledger.entries.is_empty() && ledger.was_corrupt);
        std::fs::write(&path, b"").unwrap();
        assert!(!Ledger::load(&StdIo::new(), &path).unwrap().was_corrupt);
    }

    #[test]
    fn reads_go_written_ledgers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.json");
        std::fs::write(
            &path,
            br#"{"c1@0123456789abcdef":1764000000,"c2@x":1.764e9}"#,
        )
        .unwrap();
        let ledger = Ledger::load(&StdIo::new(), &path).unwrap();
        assert_eq!(ledger.entries["c1@0123456789abcdef"], 1_764_000_000);
        assert_eq!(ledger.entries["c2@x"], 1_764_000_000);
    }
}
