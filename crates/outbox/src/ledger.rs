//! The consumed ledger: which turns a parent has already been handed.
//!
//! On disk: `runtime/consumed-turns/<id>.json`, a JSON object mapping a turn
//! fingerprint to the Unix second it was consumed. Always replaced with the
//! durable-write recipe, so it is never torn.
//!
//! Pruning reads the clock but does not trust it: see [`Ledger::prune`].

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use crate::durable::{WriteFailed, write_durable};
use crate::error::{Error, IoContext, Result};
use crate::io::Io;

/// How long a consumed turn is remembered: entries older than this are
/// pruned whenever a drain marks new turns. Clock steps never shorten it by
/// more than the step, and a step larger than the TTL shortens it not at all
/// (see the crate documentation, "Consumed ledger").
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
            // Never an empty ledger: that would forget every mark.
            return Err(Error::LedgerTooLarge {
                path: path.to_owned(),
                len: bytes.len() as u64,
                limit: MAX_LEDGER_BYTES,
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

    /// Drops entries consumed more than [`LEDGER_TTL`] before `now`, robust
    /// to clock steps. Call it before stamping new entries with `now`.
    ///
    /// - An entry stamped after `now` (the clock was ahead and has been set
    ///   back) is restamped `now`: it is kept one TTL from now, not forever.
    /// - When even the newest entry is older than the TTL, the clock has
    ///   stepped forward (a machine that booted at 1970, then NTP) or the
    ///   parent drained nothing for a whole TTL; the two look alike, and
    ///   forgetting every turn at once is the harm, so the whole ledger is
    ///   shifted forward until its newest entry is stamped `now` (the ages
    ///   between entries are kept) and nothing is dropped.
    /// - Otherwise entries older than the TTL are dropped. A forward step
    ///   shorter than the TTL ages every entry by the step.
    pub fn prune(&mut self, now_unix: i64) {
        let ttl = LEDGER_TTL.as_secs() as i64;
        for consumed in self.entries.values_mut() {
            *consumed = (*consumed).min(now_unix);
        }
        let Some(&newest) = self.entries.values().max() else {
            return;
        };
        if newest < now_unix.saturating_sub(ttl) {
            let shift = now_unix.saturating_sub(newest);
            for consumed in self.entries.values_mut() {
                *consumed = consumed.saturating_add(shift);
            }
            return;
        }
        let cutoff = now_unix.saturating_sub(ttl);
        self.entries.retain(|_, consumed| *consumed >= cutoff);
    }

    /// Replaces the file durably (1 file + 1 directory fsync). A ledger
    /// that would not be read back (over the size limit) is refused before
    /// anything is written.
    pub fn save<I: Io>(&self, io: &I, path: &Path) -> Result<(), WriteFailed> {
        let bytes = self.encode();
        if bytes.len() as u64 > MAX_LEDGER_BYTES {
            return Err(WriteFailed {
                renamed: false,
                error: Error::LedgerTooLarge {
                    path: path.to_owned(),
                    len: bytes.len() as u64,
                    limit: MAX_LEDGER_BYTES,
                },
            });
        }
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
        ledger.prune(now);
        ledger.save(&io, &path).unwrap();
        let back = Ledger::load(&io, &path).unwrap();
        assert!(back.contains("fresh") && back.contains("edge") && !back.contains("old"));
        assert!(!back.was_corrupt);
    }

    #[test]
    fn pruning_survives_clock_steps_both_ways() {
        let ttl = LEDGER_TTL.as_secs() as i64;
        let day = 24 * 3600;
        // Stamped at 1970 (no clock yet), then NTP: nothing is forgotten.
        let mut ledger = Ledger::default();
        ledger.entries.insert("a".into(), 1_000);
        ledger.entries.insert("b".into(), 1_000 - day);
        let now = 1_780_000_000;
        ledger.prune(now);
        assert_eq!(ledger.entries["a"], now);
        assert_eq!(ledger.entries["b"], now - day);
        // Stamped in the far future, then the clock was corrected: kept
        // one TTL from now, then dropped.
        let mut ledger = Ledger::default();
        ledger.entries.insert("future".into(), 3_800_000_000);
        ledger.entries.insert("recent".into(), now - day);
        ledger.prune(now);
        assert_eq!(ledger.entries["future"], now);
        ledger.prune(now + ttl);
        assert!(ledger.contains("future") && !ledger.contains("recent"));
        ledger.entries.insert("later".into(), now + ttl);
        ledger.prune(now + ttl + 1);
        assert!(!ledger.contains("future") && ledger.contains("later"));
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
