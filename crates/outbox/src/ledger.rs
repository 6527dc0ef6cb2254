//! The consumed ledger: which turns a parent has already been handed.
//!
//! # On disk (protocol v2)
//!
//! `runtime/consumed-turns/<id>.jsonl`, append-only, one JSON value a line:
//!
//! - line 1, the header, written only by a whole-file rewrite:
//!   `{"outbox_ledger":2,"generation":"<16 hex>","entries":<n>}`; the
//!   generation is a fresh random nonce per rewrite, so a reader that cached
//!   the file can tell an append (same generation, longer) from a rewrite;
//!   `entries` is how many marks the rewrite wrote (it paces compaction);
//! - a mark: `["<turn fingerprint>",<unix seconds>]`;
//! - a prune: `{"prune":<unix seconds>}`: the drain that wrote it pruned
//!   the ledger as of that time ([`Ledger::prune`]) before its marks.
//!
//! The ledger is the replay of its lines in order, so the state after a
//! drain is exactly what the JSON-object ledger of protocol v1 held after
//! the same drain (same pruning, same clock-step rules), while a drain
//! appends a few lines and fdatasyncs instead of rewriting the file. A line
//! that does not parse (a torn append: the writer died mid-line, or a
//! later appender terminated its torn tail with a newline) marks nothing.
//! NUL bytes separate like newlines (what a failed fdatasync can leave
//! before the next drain's lines), so marks written after them count.
//!
//! A drain *compacts* instead of appending (a whole-file rewrite with the
//! durable-write recipe: 1 file + 1 directory fsync) when the file does not
//! exist yet, when agent-deck's ledger must be migrated, when the header is
//! unreadable, when the file holds at least `2 × entries + 1024` lines
//! (amortised: each rewrite is paid for by as many appends as it writes),
//! when the shift rule of [`Ledger::prune`] applies, and when an append
//! would pass the size cap.
//!
//! agent-deck's ledger, `runtime/consumed-turns/<id>.json` (a JSON object
//! `{turn: unix seconds}`), is read while the v2 file does not exist; the
//! first drain that marks anything writes the v2 file with its entries
//! (durably) and only then removes it.
//!
//! In memory, an [`Outbox`](crate::Outbox) keeps each parent's ledger and
//! the offset it has read to: a later read under the same generation reads
//! only the lines appended since, so nothing per drain is proportional to
//! the ledger's size (a new process reads the file once).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::durable::{WriteFailed, nonce, write_durable};
use crate::error::{Error, IoContext, Result};
use crate::io::Io;
use crate::paths::ParentPaths;

/// How long a consumed turn is remembered: entries older than this are
/// pruned whenever a drain marks new turns. Clock steps never shorten it by
/// more than the steps forward add up to, and a step larger than the TTL
/// shortens it not at all when the next marking drain still sees the clock
/// that far ahead (see the crate documentation, "Consumed ledger").
pub const LEDGER_TTL: Duration = Duration::from_secs(14 * 24 * 3600);

/// The largest consumed-ledger file an outbox reads, in bytes (about a
/// million marks). A larger one is an [`Error::LedgerTooLarge`] for every
/// commit and drain of its parent, never read as empty (that would deliver
/// consumed turns again), and a drain never writes one.
pub const MAX_LEDGER_BYTES: u64 = 64 * 1024 * 1024;

/// Lines a ledger may hold beyond twice the marks of its last rewrite
/// before a drain compacts it.
const COMPACT_SLACK: u64 = 1024;

/// The shortest mark line: `["",0]` and its newline.
const MIN_MARK_BYTES: u64 = 7;

/// The longest header line read.
const MAX_HEADER_BYTES: u64 = 256;

/// Where the in-memory ledger came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Source {
    /// Nothing read yet, or a failed write made the memory untrustworthy.
    #[default]
    Unknown,
    /// No v2 file: agent-deck's JSON object (`legacy`), or nothing.
    Legacy { legacy: bool },
    /// The v2 file, read up to `offset` (a line boundary) of `generation`.
    V2 {
        generation: String,
        offset: u64,
        /// Lines after the header read so far.
        lines: u64,
        /// Marks the last rewrite wrote.
        base: u64,
        /// Whether the file ends in a newline at `offset` (always, unless
        /// the bytes after `offset` are a torn line).
        clean_end: bool,
    },
    /// The v2 file exists but its header cannot be read.
    Corrupt,
}

#[derive(Deserialize)]
struct Header {
    outbox_ledger: u32,
    generation: String,
    #[serde(default)]
    entries: u64,
}

#[derive(Deserialize)]
struct PruneLine {
    prune: i64,
}

/// A parent's consumed ledger, in memory.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ledger {
    /// Turn fingerprint → (stamp stored minus `shift`, insertion number).
    turns: HashMap<Arc<str>, (i64, u64)>,
    /// The same entries ordered by stored stamp, then insertion, for
    /// pruning. Keyed by numbers, not by the fingerprints: a ledger of
    /// 100 000 marks of a few stamps is read without comparing strings.
    by_time: BTreeMap<(i64, u64), Arc<str>>,
    /// The next insertion number.
    next: u64,
    /// Added to every stored stamp (the forward shift of the clock-step
    /// rule, applied to all entries at once).
    shift: i64,
    /// The file existed but could not be read as a ledger; it was treated as
    /// empty (at worst a turn is delivered again, never lost).
    pub was_corrupt: bool,
    source: Source,
}

/// A ledger write that failed, after the ledger was put back when it could
/// be.
#[derive(Debug)]
pub(crate) enum MarkFailed {
    /// No mark is visible: nothing was written, or the old ledger was put
    /// back (a new durable write, not a retry of a failed fsync).
    NotMarked(Error),
    /// The marks may be visible and the old ledger could not be put back.
    MarksKept {
        error: Box<Error>,
        undo: Box<Error>,
        /// Whether the marks are visible for sure (nothing of the undo
        /// reached the file).
        marks_visible: bool,
        /// How many of the turns, the leading ones, were marked: the
        /// others never reached the file and stay pending.
        marked: usize,
    },
}

impl Ledger {
    /// Whether the ledger was read (and nothing since made it untrustworthy).
    pub fn is_loaded(&self) -> bool {
        self.source != Source::Unknown
    }

    /// How many turns are remembered.
    pub fn len(&self) -> usize {
        self.turns.len()
    }

    /// Whether `turn` was consumed.
    pub fn contains(&self, turn: &str) -> bool {
        self.turns.contains_key(turn)
    }

    /// The entries with their stamps (Unix seconds), oldest first.
    pub fn entries(&self) -> impl Iterator<Item = (&str, i64)> {
        self.by_time
            .iter()
            .map(|((t, _), k)| (&**k, t.saturating_add(self.shift)))
    }

    /// Records `turn` consumed at `stamp` (replacing an earlier stamp).
    pub fn insert(&mut self, turn: &str, stamp: i64) {
        let stored = stamp.saturating_sub(self.shift);
        let at = (stored, self.next);
        self.next += 1;
        if let Some(slot) = self.turns.get_mut(turn) {
            let old = std::mem::replace(slot, at);
            if let Some(key) = self.by_time.remove(&old) {
                self.by_time.insert(at, key);
            }
        } else {
            let key: Arc<str> = Arc::from(turn);
            self.by_time.insert(at, Arc::clone(&key));
            self.turns.insert(key, at);
        }
    }

    /// Forgets every turn `drop` accepts; returns how many.
    pub fn remove_where(&mut self, mut drop: impl FnMut(&str) -> bool) -> usize {
        let gone: Vec<Arc<str>> = self.turns.keys().filter(|k| drop(k)).cloned().collect();
        for k in &gone {
            if let Some(at) = self.turns.remove(k) {
                self.by_time.remove(&at);
            }
        }
        gone.len()
    }

    fn newest(&self) -> Option<i64> {
        self.by_time
            .last_key_value()
            .map(|((t, _), _)| t.saturating_add(self.shift))
    }

    /// Whether [`prune`](Self::prune) at `now` would shift the whole ledger
    /// forward (every entry older than the TTL).
    fn would_shift(&self, now_unix: i64) -> bool {
        let ttl = LEDGER_TTL.as_secs() as i64;
        self.newest()
            .is_some_and(|newest| newest.min(now_unix) < now_unix.saturating_sub(ttl))
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
    ///
    /// Costs what it restamps and drops, not the ledger's size.
    pub fn prune(&mut self, now_unix: i64) {
        let ttl = LEDGER_TTL.as_secs() as i64;
        while let Some(((stored, _), _)) = self.by_time.last_key_value()
            && stored.saturating_add(self.shift) > now_unix
        {
            let Some((_, turn)) = self.by_time.pop_last() else {
                break;
            };
            self.turns.remove(&turn);
            self.insert(&turn, now_unix);
        }
        let Some(newest) = self.newest() else {
            return;
        };
        if newest < now_unix.saturating_sub(ttl) {
            self.shift = self.shift.saturating_add(now_unix.saturating_sub(newest));
            return;
        }
        let cutoff = now_unix.saturating_sub(ttl);
        while let Some(((stored, _), _)) = self.by_time.first_key_value()
            && stored.saturating_add(self.shift) < cutoff
        {
            if let Some((_, turn)) = self.by_time.pop_first() {
                self.turns.remove(&turn);
            }
        }
    }

    /// Brings the ledger up to date with the disk: reads only what was
    /// appended since the last call when the file is the same generation,
    /// the whole file otherwise. A missing v2 file reads agent-deck's.
    pub fn refresh<I: Io>(&mut self, io: &I, paths: &ParentPaths) -> Result<()> {
        let result = self.refresh_inner(io, paths);
        if result.is_err() {
            *self = Self::default();
        }
        result
    }

    fn refresh_inner<I: Io>(&mut self, io: &I, paths: &ParentPaths) -> Result<()> {
        let path = &paths.consumed;
        let Some(mut reader) = io.open_read(path).at("open ledger", path)? else {
            // No v2 file: agent-deck's ledger, read whole each time (this
            // crate never writes it; the first marking drain migrates it).
            *self = Self::load_legacy(io, &paths.ledger)?;
            return Ok(());
        };
        let len = reader.seek(SeekFrom::End(0)).at("read ledger", path)?;
        if len > MAX_LEDGER_BYTES {
            // Never an empty ledger: that would forget every mark.
            return Err(Error::LedgerTooLarge {
                path: path.to_owned(),
                len,
                limit: MAX_LEDGER_BYTES,
            });
        }
        reader.seek(SeekFrom::Start(0)).at("read ledger", path)?;
        let mut head = Vec::new();
        (&mut reader)
            .take(MAX_HEADER_BYTES)
            .read_to_end(&mut head)
            .at("read ledger", path)?;
        let header = head.iter().position(|&b| b == b'\n').and_then(|end| {
            let h: Header = serde_json::from_slice(&head[..end]).ok()?;
            (h.outbox_ledger == 2).then_some((h, end as u64 + 1))
        });
        let Some((header, header_len)) = header else {
            *self = Self {
                was_corrupt: true,
                source: Source::Corrupt,
                ..Self::default()
            };
            return Ok(());
        };
        let resume = match &self.source {
            Source::V2 {
                generation, offset, ..
            } if *generation == header.generation && *offset <= len => *offset,
            _ => {
                *self = Self {
                    source: Source::V2 {
                        generation: header.generation.clone(),
                        offset: header_len,
                        lines: 0,
                        base: header.entries,
                        clean_end: true,
                    },
                    // Sized for the marks the last rewrite wrote (the header
                    // says; bounded by what the file can hold).
                    turns: HashMap::with_capacity(header.entries.min(len / MIN_MARK_BYTES) as usize),
                    ..Self::default()
                };
                header_len
            }
        };
        reader
            .seek(SeekFrom::Start(resume))
            .at("read ledger", path)?;
        let mut tail = Vec::new();
        reader.read_to_end(&mut tail).at("read ledger", path)?;
        let whole = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let lines = self.apply_lines(&tail[..whole]);
        if let Source::V2 {
            offset,
            lines: read,
            clean_end,
            ..
        } = &mut self.source
        {
            *offset = resume + whole as u64;
            *read += lines;
            *clean_end = whole == tail.len();
        }
        Ok(())
    }

    /// Applies every line of `bytes` in order; returns how many non-empty
    /// lines it holds. NULs separate like newlines: a crash after a failed
    /// fdatasync can leave a run of them right before the next drain's
    /// lines (see `format::for_each_line`).
    fn apply_lines(&mut self, bytes: &[u8]) -> u64 {
        let mut lines = 0;
        for line in bytes.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            lines += 1;
            for piece in line.split(|&b| b == 0) {
                self.apply_line(piece);
            }
        }
        lines
    }

    fn apply_line(&mut self, line: &[u8]) {
        match line.first() {
            Some(b'[') => {
                // Borrowed when the key has no escapes (a fingerprint never
                // has): no allocation but the ledger's own.
                if let Ok((turn, stamp)) = serde_json::from_slice::<(&str, i64)>(line) {
                    self.insert(turn, stamp);
                } else if let Ok((turn, stamp)) = serde_json::from_slice::<(String, i64)>(line) {
                    self.insert(&turn, stamp);
                }
            }
            Some(b'{') => {
                if let Ok(p) = serde_json::from_slice::<PruneLine>(line) {
                    self.prune(p.prune);
                }
            }
            // Blank, torn or zeroed: marks nothing.
            _ => {}
        }
    }

    /// Reads agent-deck's ledger at `path` (a JSON object); a missing file
    /// is an empty ledger.
    fn load_legacy<I: Io>(io: &I, path: &Path) -> Result<Self> {
        let Some(reader) = io.open_read(path).at("open ledger", path)? else {
            return Ok(Self {
                source: Source::Legacy { legacy: false },
                ..Self::default()
            });
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
        let mut ledger = Self {
            source: Source::Legacy { legacy: true },
            ..Self::default()
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(ledger);
        }
        match serde_json::from_slice::<HashMap<String, f64>>(&bytes) {
            Ok(map) => {
                for (k, v) in map {
                    ledger.insert(&k, v as i64);
                }
            }
            Err(_) => ledger.was_corrupt = true,
        }
        Ok(ledger)
    }

    /// Whether the next write must be a whole-file rewrite.
    fn must_rewrite(&self, now_unix: i64, append_bytes: u64) -> bool {
        match &self.source {
            Source::V2 {
                offset,
                lines,
                base,
                ..
            } => {
                *lines >= base.saturating_mul(2).saturating_add(COMPACT_SLACK)
                    || offset.saturating_add(append_bytes) > MAX_LEDGER_BYTES
                    || self.would_shift(now_unix)
            }
            _ => true,
        }
    }

    /// Prunes as of `now_unix`, marks `turns` consumed at `now_unix`, and
    /// makes that durable: an append of a prune line and the marks, then one
    /// fdatasync; or, when due (see the module docs), a whole-file rewrite.
    /// The caller has refreshed the ledger and holds the drain lock.
    ///
    /// On failure the old ledger is put back when the marks may be visible
    /// (a new durable write, never a retry of the failed fsync), and the
    /// in-memory ledger is dropped (the next refresh reads the file).
    pub fn mark<I: Io>(
        &mut self,
        io: &I,
        paths: &ParentPaths,
        turns: &[String],
        now_unix: i64,
    ) -> Result<(), MarkFailed> {
        let mut lines = format!("{{\"prune\":{now_unix}}}\n").into_bytes();
        for turn in turns {
            push_mark(&mut lines, turn, now_unix);
        }
        if self.must_rewrite(now_unix, lines.len() as u64 + 1) {
            let before = self.clone();
            self.prune(now_unix);
            for turn in turns {
                self.insert(turn, now_unix);
            }
            return match self.rewrite(io, paths) {
                Ok(()) => Ok(()),
                Err(failed) => {
                    *self = Self::default();
                    Err(undo(io, paths, failed, turns.len(), || Ok(before)))
                }
            };
        }
        let Source::V2 {
            offset, clean_end, ..
        } = self.source.clone()
        else {
            unreachable!("must_rewrite is true for every other source");
        };
        if !clean_end {
            // A torn last line: end it, so the marks start on a line of
            // their own (the torn one then marks nothing).
            lines.insert(0, b'\n');
        }
        let path = &paths.consumed;
        let appended = append(io, path, &lines);
        match appended {
            Ok(()) => {
                self.prune(now_unix);
                for turn in turns {
                    self.insert(turn, now_unix);
                }
                if let Source::V2 {
                    offset: o,
                    lines: l,
                    clean_end: c,
                    ..
                } = &mut self.source
                {
                    *o = offset + lines.len() as u64;
                    *l += 1 + turns.len() as u64 + u64::from(!clean_end);
                    *c = true;
                }
                Ok(())
            }
            Err((failed, visible)) => {
                let before = std::mem::take(self);
                Err(undo(io, paths, failed, visible, || {
                    // The ledger as it was: the file up to where it was read.
                    let mut old = before;
                    old.refresh_upto(io, paths, offset)?;
                    Ok(old)
                }))
            }
        }
    }

    /// Rebuilds the ledger from the file's first `upto` bytes.
    fn refresh_upto<I: Io>(&mut self, io: &I, paths: &ParentPaths, upto: u64) -> Result<()> {
        let path = &paths.consumed;
        let mut reader = io
            .open_read(path)
            .at("open ledger", path)?
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
            .at("open ledger", path)?;
        let mut bytes = Vec::new();
        (&mut reader)
            .take(upto)
            .read_to_end(&mut bytes)
            .at("read ledger", path)?;
        *self = Self::default();
        let header_end = bytes.iter().position(|&b| b == b'\n');
        let first = &bytes[..header_end.unwrap_or(bytes.len())];
        if let Ok(h) = serde_json::from_slice::<Header>(first) {
            self.source = Source::V2 {
                generation: h.generation,
                offset: upto,
                lines: 0,
                base: h.entries,
                clean_end: true,
            };
        }
        // The marks as `refresh` reads them (NULs separate like newlines).
        if let Some(end) = header_end {
            self.apply_lines(&bytes[end + 1..]);
        }
        Ok(())
    }

    /// Forgets the turns `drop` accepts and rewrites the file if any went;
    /// returns how many. The caller has refreshed the ledger and holds the
    /// drain lock.
    pub fn forget<I: Io>(
        &mut self,
        io: &I,
        paths: &ParentPaths,
        drop: impl FnMut(&str) -> bool,
    ) -> Result<usize> {
        let dropped = self.remove_where(drop);
        if dropped > 0
            && let Err(failed) = self.rewrite(io, paths)
        {
            *self = Self::default();
            return Err(failed.error);
        }
        Ok(dropped)
    }

    /// Replaces the v2 file with the whole ledger, durably (1 file + 1
    /// directory fsync), under a new generation; then removes agent-deck's
    /// ledger if there was one (its entries are in the new file). A ledger
    /// that would not be read back (over the size cap) is refused before
    /// anything is written.
    fn rewrite<I: Io>(&mut self, io: &I, paths: &ParentPaths) -> Result<(), WriteFailed> {
        let generation = format!("{:016x}", nonce());
        let bytes = self.encode(&generation);
        if bytes.len() as u64 > MAX_LEDGER_BYTES {
            return Err(WriteFailed::not_renamed(Error::LedgerTooLarge {
                path: paths.consumed.clone(),
                len: bytes.len() as u64,
                limit: MAX_LEDGER_BYTES,
            }));
        }
        write_durable(io, &paths.consumed, &bytes)?;
        let had_legacy = self.source == Source::Legacy { legacy: true };
        // Fold the shift into the stamps, as the file now has them.
        let entries: Vec<(String, i64)> = self.entries().map(|(k, t)| (k.to_owned(), t)).collect();
        let n = entries.len() as u64;
        *self = Self::default();
        for (k, t) in entries {
            self.insert(&k, t);
        }
        self.source = Source::V2 {
            generation,
            offset: bytes.len() as u64,
            lines: n,
            base: n,
            clean_end: true,
        };
        if had_legacy {
            // A plain unlink: the v2 file is durable and is read first; a
            // leftover agent-deck ledger is never read again.
            let _ = io.remove_file(&paths.ledger);
        }
        Ok(())
    }

    /// The whole file: header, then every mark, oldest first.
    fn encode(&self, generation: &str) -> Vec<u8> {
        let mut out = format!(
            "{{\"outbox_ledger\":2,\"generation\":\"{generation}\",\"entries\":{}}}\n",
            self.len()
        )
        .into_bytes();
        for (turn, stamp) in self.entries() {
            push_mark(&mut out, turn, stamp);
        }
        out
    }
}

/// Appends the mark line `["turn",stamp]`.
fn push_mark(out: &mut Vec<u8>, turn: &str, stamp: i64) {
    out.push(b'[');
    // A string always serialises.
    let _ = serde_json::to_writer(&mut *out, turn);
    out.extend_from_slice(format!(",{stamp}]\n").as_bytes());
}

/// Appends `lines` (a prune line and marks) to the ledger at `path` and
/// fdatasyncs it. On failure: the error (`renamed`: whether any mark may be
/// visible) and how many of the leading marks may be visible to a reader:
/// those whose line reached the file whole (a write that failed having
/// written nothing shows none), or all of them once the write succeeded
/// (a failed fdatasync leaves them in the page cache).
fn append<I: Io>(io: &I, path: &Path, lines: &[u8]) -> Result<(), (WriteFailed, usize)> {
    let marks = lines
        .split(|&b| b == b'\n')
        .filter(|l| l.first() == Some(&b'['))
        .count();
    let mut file = match io.open_append(path).at("open ledger", path) {
        Ok(Some(file)) => file,
        Ok(None) => {
            let error = Error::Io {
                op: "open ledger",
                path: path.to_owned(),
                to: None,
                source: std::io::ErrorKind::NotFound.into(),
            };
            return Err((WriteFailed::not_renamed(error), 0));
        }
        Err(error) => return Err((WriteFailed::not_renamed(error), 0)),
    };
    let (error, visible) = match io.write_all_counted(&mut file.file, lines) {
        Ok(()) => match io.sync_data(&mut file.file).at("fdatasync", path) {
            Ok(()) => return Ok(()),
            Err(error) => (error, marks),
        },
        Err(failed) => {
            let visible = failed
                .written
                .map_or(marks, |n| whole_marks(&lines[..n.min(lines.len())]));
            let error = Error::Io {
                op: "write",
                path: path.to_owned(),
                to: None,
                source: failed.error,
            };
            (error, visible)
        }
    };
    let failed = WriteFailed {
        renamed: visible > 0,
        error,
    };
    Err((failed, visible))
}

/// How many mark lines of `written` (a prefix of an append) a reader
/// would apply: those that parse, the last one even without its newline.
fn whole_marks(written: &[u8]) -> usize {
    written
        .split(|&b| b == b'\n')
        .filter(|l| l.first() == Some(&b'[') && serde_json::from_slice::<(String, i64)>(l).is_ok())
        .count()
}

/// After a failed ledger write: when marks may be visible (`visible` of
/// them, the leading ones), put the old ledger (`before`) back with a new
/// durable write.
fn undo<I: Io>(
    io: &I,
    paths: &ParentPaths,
    failed: WriteFailed,
    visible: usize,
    before: impl FnOnce() -> Result<Ledger>,
) -> MarkFailed {
    if !failed.renamed || visible == 0 {
        return MarkFailed::NotMarked(failed.error);
    }
    let put_back = before()
        .map_err(WriteFailed::not_renamed)
        .and_then(|mut old| {
            // Rewriting under a fresh generation; the caller's in-memory ledger
            // was dropped and is re-read by the next refresh.
            old.source = Source::V2 {
                generation: String::new(),
                offset: 0,
                lines: 0,
                base: 0,
                clean_end: true,
            };
            old.rewrite(io, paths)
        });
    match put_back {
        Ok(()) => MarkFailed::NotMarked(failed.error),
        Err(undo) => MarkFailed::MarksKept {
            error: Box::new(failed.error),
            marks_visible: !undo.renamed,
            undo: Box::new(undo.error),
            marked: visible,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StdIo;

    fn paths(dir: &Path) -> ParentPaths {
        let p = ParentPaths::new(dir, "p").unwrap();
        std::fs::create_dir_all(p.consumed.parent().unwrap()).unwrap();
        p
    }

    fn load(io: &StdIo, p: &ParentPaths) -> Ledger {
        let mut l = Ledger::default();
        l.refresh(io, p).unwrap();
        l
    }

    #[test]
    fn round_trips_and_prunes_old_entries() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let io = StdIo::new();
        let now = 2_000_000_000;
        let ttl = LEDGER_TTL.as_secs() as i64;
        let mut ledger = load(&io, &p);
        ledger.insert("fresh", now - 10);
        ledger.insert("edge", now - ttl);
        ledger.insert("old", now - ttl - 1);
        ledger.mark(&io, &p, &["new".into()], now).unwrap();
        let back = load(&io, &p);
        assert!(back.contains("fresh") && back.contains("edge") && !back.contains("old"));
        assert!(back.contains("new") && !back.was_corrupt);
        // An append, replayed by a fresh reader, prunes the same way.
        let mut live = back;
        live.mark(&io, &p, &["later".into()], now + ttl).unwrap();
        let again = load(&io, &p);
        assert!(again.contains("later") && again.contains("new") && !again.contains("edge"));
        assert_eq!(again.len(), live.len());
    }

    #[test]
    fn appends_are_read_incrementally_and_torn_tails_mark_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let io = StdIo::new();
        let mut a = load(&io, &p);
        a.mark(&io, &p, &["t1".into()], 2_000_000_000).unwrap();
        let mut reader = load(&io, &p);
        a.mark(&io, &p, &["t2".into()], 2_000_000_001).unwrap();
        // A writer died mid-line.
        let mut bytes = std::fs::read(&p.consumed).unwrap();
        bytes.extend_from_slice(b"[\"t3\",20");
        std::fs::write(&p.consumed, &bytes).unwrap();
        reader.refresh(&io, &p).unwrap();
        assert!(reader.contains("t2") && !reader.contains("t3"));
        let mut b = load(&io, &p);
        b.mark(&io, &p, &["t4".into()], 2_000_000_002).unwrap();
        reader.refresh(&io, &p).unwrap();
        assert!(reader.contains("t4") && !reader.contains("t3"));
        assert!(!reader.was_corrupt);
    }

    #[test]
    fn pruning_survives_clock_steps_both_ways() {
        let ttl = LEDGER_TTL.as_secs() as i64;
        let day = 24 * 3600;
        // Stamped at 1970 (no clock yet), then NTP: nothing is forgotten.
        let mut ledger = Ledger::default();
        ledger.insert("a", 1_000);
        ledger.insert("b", 1_000 - day);
        let now = 1_780_000_000;
        ledger.prune(now);
        let stamps: HashMap<&str, i64> = ledger.entries().collect();
        assert_eq!(stamps["a"], now);
        assert_eq!(stamps["b"], now - day);
        // Stamped in the far future, then the clock was corrected: kept
        // one TTL from now, then dropped.
        let mut ledger = Ledger::default();
        ledger.insert("future", 3_800_000_000);
        ledger.insert("recent", now - day);
        ledger.prune(now);
        assert_eq!(ledger.entries().last(), Some(("future", now)));
        ledger.prune(now + ttl);
        assert!(ledger.contains("future") && !ledger.contains("recent"));
        ledger.insert("later", now + ttl);
        ledger.prune(now + ttl + 1);
        assert!(!ledger.contains("future") && ledger.contains("later"));
    }

    #[test]
    fn lines_written_after_a_run_of_nuls_count() {
        // A drain's append whose fdatasync failed, its pages never written:
        // after a crash the file holds NULs where its lines were, and the
        // next drain's lines follow them with no newline in between. Its
        // first line is its prune, which must still apply.
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let io = StdIo::new();
        let ttl = LEDGER_TTL.as_secs() as i64;
        let t0 = 1_800_000_000;
        let day = 24 * 3600;
        let mut ledger = load(&io, &p);
        ledger.mark(&io, &p, &["old".to_owned()], t0).unwrap();
        ledger
            .mark(&io, &p, &["new".to_owned()], t0 + ttl - day)
            .unwrap();
        let later = t0 + ttl + day;
        let mut bytes = std::fs::read(&p.consumed).unwrap();
        bytes.extend_from_slice(&[0; 40]);
        bytes.extend_from_slice(format!("{{\"prune\":{later}}}\n[\"after\",{later}]\n").as_bytes());
        std::fs::write(&p.consumed, &bytes).unwrap();
        let ledger = load(&io, &p);
        assert!(ledger.contains("new") && ledger.contains("after"));
        assert!(!ledger.contains("old"), "the prune after the NULs applied");
    }

    #[test]
    fn a_failed_append_puts_back_the_marks_written_after_a_run_of_nuls() {
        // The file after a lost append (NULs) and the next drain's lines
        // right after them; then a drain whose fdatasync fails puts the old
        // ledger back from the file's first bytes. Those bytes must read as
        // `refresh` reads them: the mark after the NULs is kept, or its
        // turn is delivered again.
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let io = StdIo::new();
        let now = 1_800_000_000;
        let mut ledger = load(&io, &p);
        ledger.mark(&io, &p, &["before".to_owned()], now).unwrap();
        let mut bytes = std::fs::read(&p.consumed).unwrap();
        bytes.extend_from_slice(&[0; 40]);
        bytes.extend_from_slice(format!("[\"after\",{now}]\n").as_bytes());
        std::fs::write(&p.consumed, &bytes).unwrap();
        let mut ledger = load(&io, &p);
        assert!(ledger.contains("before") && ledger.contains("after"));
        let first = std::sync::atomic::AtomicBool::new(true);
        let failing = StdIo::with_fsync(move |f| {
            if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                Err(std::io::Error::other("injected EIO"))
            } else {
                f.sync_all()
            }
        });
        let failed = ledger.mark(&failing, &p, &["x".to_owned()], now + 1);
        assert!(
            matches!(failed, Err(MarkFailed::NotMarked(_))),
            "{failed:?}"
        );
        let back = load(&io, &p);
        assert!(!back.contains("x"), "the failed drain's mark was undone");
        assert!(back.contains("before"));
        assert!(
            back.contains("after"),
            "the mark after the NULs was put back"
        );
    }

    /// The documented rules, the obvious way: turn -> stamp.
    #[derive(Default)]
    struct Reference(std::collections::BTreeMap<String, i64>);

    impl Reference {
        fn prune(&mut self, now: i64) {
            let ttl = LEDGER_TTL.as_secs() as i64;
            for t in self.0.values_mut() {
                *t = (*t).min(now);
            }
            let Some(&newest) = self.0.values().max() else {
                return;
            };
            if newest < now - ttl {
                for t in self.0.values_mut() {
                    *t += now - newest;
                }
                return;
            }
            self.0.retain(|_, t| *t >= now - ttl);
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u8, i64),
        Prune(i64),
        Forget(u8),
        Mark(Vec<u8>, i64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let ttl = LEDGER_TTL.as_secs() as i64;
        let base = 1_800_000_000i64;
        // Stamps around a few TTLs, with steps of a TTL or two both ways.
        let t = prop_oneof![
            (0i64..6).prop_map(move |k| base + k * ttl / 2),
            (0i64..4 * ttl).prop_map(move |d| base + d),
            Just(base + ttl),
            Just(0i64),
        ];
        prop_oneof![
            (0u8..12, t.clone()).prop_map(|(k, t)| Op::Insert(k, t)),
            t.clone().prop_map(Op::Prune),
            (0u8..12).prop_map(Op::Forget),
            (prop::collection::vec(0u8..12, 0..4), t).prop_map(|(k, t)| Op::Mark(k, t)),
        ]
    }

    fn state(ledger: &Ledger) -> std::collections::BTreeMap<String, i64> {
        ledger.entries().map(|(k, t)| (k.to_owned(), t)).collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..Default::default()
        })]

        /// The index agrees with the reference after any sequence; its
        /// entries are oldest first; and the file a sequence of marks and
        /// forgets leaves (appends and compactions) replays to the same
        /// ledger as the one in memory.
        #[test]
        fn the_index_matches_the_reference_and_the_file_replays_to_it(
            ops in proptest::collection::vec(op(), 0..40),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let p = paths(dir.path());
            let io = StdIo::new();
            let mut mem = Ledger::default();
            let mut reference = Reference::default();
            let mut disk = load(&io, &p);
            let mut disk_ref = Reference::default();
            for op in ops {
                match op {
                    Op::Insert(k, t) => {
                        mem.insert(&format!("t{k}"), t);
                        reference.0.insert(format!("t{k}"), t);
                    }
                    Op::Prune(now) => {
                        proptest::prop_assert_eq!(
                            mem.would_shift(now),
                            reference.0.values().max().is_some_and(|&n| n.min(now) < now - LEDGER_TTL.as_secs() as i64)
                        );
                        mem.prune(now);
                        reference.prune(now);
                    }
                    Op::Forget(k) => {
                        let key = format!("t{k}");
                        let n = mem.remove_where(|t| t == key);
                        proptest::prop_assert_eq!(n, usize::from(reference.0.remove(&key).is_some()));
                        disk.refresh(&io, &p).unwrap();
                        disk.forget(&io, &p, |t| t == key).unwrap();
                        disk_ref.0.remove(&key);
                    }
                    Op::Mark(keys, now) => {
                        let turns: Vec<String> = keys.iter().map(|k| format!("t{k}")).collect();
                        disk.refresh(&io, &p).unwrap();
                        disk.mark(&io, &p, &turns, now).unwrap();
                        disk_ref.prune(now);
                        for t in turns {
                            disk_ref.0.insert(t, now);
                        }
                    }
                }
                proptest::prop_assert_eq!(&state(&mem), &reference.0);
                proptest::prop_assert_eq!(mem.len(), reference.0.len());
                proptest::prop_assert_eq!(mem.newest(), reference.0.values().max().copied());
                let stamps: Vec<i64> = mem.entries().map(|(_, t)| t).collect();
                proptest::prop_assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "oldest first");
                proptest::prop_assert_eq!(&state(&disk), &disk_ref.0);
                proptest::prop_assert_eq!(&state(&load(&io, &p)), &disk_ref.0, "replayed");
            }
        }
    }

    #[test]
    fn a_corrupt_ledger_reads_as_empty_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        std::fs::write(&p.ledger, b"{\"a\": 1,").unwrap();
        let ledger = load(&StdIo::new(), &p);
        assert!(ledger.len() == 0 && ledger.was_corrupt);
        std::fs::write(&p.ledger, b"").unwrap();
        assert!(!load(&StdIo::new(), &p).was_corrupt);
        std::fs::write(&p.consumed, b"garbage\n[\"a\",1]\n").unwrap();
        let ledger = load(&StdIo::new(), &p);
        assert!(ledger.len() == 0 && ledger.was_corrupt);
    }

    #[test]
    fn reads_go_written_ledgers_and_migrates_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        std::fs::write(
            &p.ledger,
            br#"{"c1@0123456789abcdef":1764000000,"c2@x":1.764e9}"#,
        )
        .unwrap();
        let io = StdIo::new();
        let mut ledger = load(&io, &p);
        let stamps: HashMap<&str, i64> = ledger.entries().collect();
        assert_eq!(stamps["c1@0123456789abcdef"], 1_764_000_000);
        assert_eq!(stamps["c2@x"], 1_764_000_000);
        ledger
            .mark(&io, &p, &["c3@y".into()], 1_764_000_100)
            .unwrap();
        assert!(!p.ledger.exists(), "migrated");
        let back = load(&io, &p);
        assert!(back.contains("c1@0123456789abcdef") && back.contains("c3@y"));
    }
}
