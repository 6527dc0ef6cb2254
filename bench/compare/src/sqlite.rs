//! The SQLite outbox of issue 14: the obvious alternative a Rust team
//! would weigh against ours.
//!
//! rusqlite with the bundled SQLite, one long-lived connection, WAL
//! journal, `synchronous=FULL` (fsync stubbed: `synchronous=OFF`, under
//! which SQLite issues no fsync at all: the equivalent of our no-op
//! fsync), every other setting SQLite's default. Statements are prepared
//! once and cached (`prepare_cached`), as a real user of rusqlite would.
//!
//! ```sql
//! pending(id INTEGER PRIMARY KEY, parent, child, turn_key, payload,
//!         UNIQUE (parent, child))            -- + index on (parent)
//! consumed(parent, turn_key, consumed_at,
//!          PRIMARY KEY (parent, turn_key)) WITHOUT ROWID
//!                                            -- + index on (parent, consumed_at)
//! ```
//!
//! - **commit** = one transaction: stamp the record exactly as
//!   `Outbox::commit` does and encode the same JSON line (the payload);
//!   look its turn up in `consumed` (ours reads its ledger at commit, to
//!   say `already_consumed`); upsert per (parent, child) with `INSERT OR
//!   REPLACE`, which gives a re-committed child a new rowid, so the drain's
//!   "insertion order" is commit order, last wins, as in ours.
//! - **drain** = one transaction: select the parent's rows in insertion
//!   (rowid) order with whether each turn is consumed, delete them, insert
//!   the new turns' keys into `consumed`, and prune the parent's entries
//!   older than `outbox::LEDGER_TTL` (ours prunes its ledger on every
//!   drain); the payloads are decoded back into records, as ours returns
//!   records. A drain with nothing pending writes nothing.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use outbox::format::decode_line;
use outbox::{LEDGER_TTL, Record};
use rusqlite::{Connection, TransactionBehavior, params};

use crate::store::{Contender, Fsync, Result, Store, sync_tree};

/// The SQLite table outbox.
pub struct Sqlite;

const SCHEMA: &str = "
    CREATE TABLE pending (
        id INTEGER PRIMARY KEY,
        parent TEXT NOT NULL,
        child TEXT NOT NULL,
        turn_key TEXT NOT NULL,
        payload BLOB NOT NULL,
        UNIQUE (parent, child)
    );
    -- Rows of one parent in rowid order, without a sort.
    CREATE INDEX pending_by_parent ON pending (parent);
    CREATE TABLE consumed (
        parent TEXT NOT NULL,
        turn_key TEXT NOT NULL,
        consumed_at INTEGER NOT NULL,
        PRIMARY KEY (parent, turn_key)
    ) WITHOUT ROWID;
    CREATE INDEX consumed_by_age ON consumed (parent, consumed_at);
";

const UPSERT: &str =
    "INSERT OR REPLACE INTO pending (parent, child, turn_key, payload) VALUES (?1, ?2, ?3, ?4)";
const IS_CONSUMED: &str =
    "SELECT EXISTS (SELECT 1 FROM consumed WHERE parent = ?1 AND turn_key = ?2)";
const SELECT_PENDING: &str = "
    SELECT p.payload, p.turn_key,
           EXISTS (SELECT 1 FROM consumed c WHERE c.parent = p.parent AND c.turn_key = p.turn_key)
    FROM pending p WHERE p.parent = ?1 ORDER BY p.id";
const DELETE_PENDING: &str = "DELETE FROM pending WHERE parent = ?1";
const MARK: &str =
    "INSERT OR IGNORE INTO consumed (parent, turn_key, consumed_at) VALUES (?1, ?2, ?3)";
const PRUNE: &str = "DELETE FROM consumed WHERE parent = ?1 AND consumed_at < ?2";

impl Contender for Sqlite {
    fn name(&self) -> &'static str {
        "SQLite outbox"
    }

    fn describe(&self) -> String {
        format!(
            "SQLite outbox: rusqlite, bundled SQLite {}, one connection, journal_mode=WAL, \
             synchronous=FULL (fsync stubbed: synchronous=OFF), other settings default",
            rusqlite::version()
        )
    }

    fn open(&self, dir: &Path, fsync: Fsync) -> Result<Box<dyn Store>> {
        let path = dir.join("outbox.sqlite3");
        let conn = Connection::open(&path).map_err(|e| format!("open {}: {e}", path.display()))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("{}: journal_mode is {mode}, not wal", path.display()).into());
        }
        conn.execute_batch(SCHEMA)?;
        let store = SqliteStore {
            dir: dir.to_path_buf(),
            conn,
            timed_sync: match fsync {
                Fsync::Stubbed => "OFF",
                Fsync::Real => "FULL",
            },
        };
        store.set_synchronous(store.timed_sync)?;
        Ok(Box::new(store))
    }
}

struct SqliteStore {
    dir: std::path::PathBuf,
    conn: Connection,
    /// The `synchronous` setting of the timed operations.
    timed_sync: &'static str,
}

impl SqliteStore {
    fn set_synchronous(&self, value: &str) -> Result<()> {
        self.conn
            .execute_batch(&format!("PRAGMA synchronous={value}"))?;
        Ok(())
    }

    /// One commit's work inside an open transaction: stamp, encode, look
    /// the turn up, upsert.
    fn upsert(tx: &rusqlite::Transaction<'_>, parent: &str, record: Record) -> Result<()> {
        // The same stamping and line as `Outbox::commit`: one function.
        let (record, line) = outbox::stamp(parent, record, SystemTime::now())?;
        let payload = line.strip_suffix(b"\n").unwrap_or(&line);
        let key = record.turn_key();
        let _already_consumed: bool = tx
            .prepare_cached(IS_CONSUMED)?
            .query_row(params![parent, key], |r| r.get(0))?;
        tx.prepare_cached(UPSERT)?.execute(params![
            parent,
            record.child_session_id,
            key,
            payload
        ])?;
        Ok(())
    }
}

impl Store for SqliteStore {
    fn commit(&mut self, parent: &str, record: Record) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        Self::upsert(&tx, parent, record)?;
        tx.commit()?;
        Ok(())
    }

    fn drain(&mut self, parent: &str) -> Result<Vec<Record>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut records = Vec::new();
        let mut new_keys = Vec::new();
        let mut rows = 0usize;
        {
            let mut select = tx.prepare_cached(SELECT_PENDING)?;
            let mut cursor = select.query(params![parent])?;
            while let Some(row) = cursor.next()? {
                rows += 1;
                let consumed: bool = row.get(2)?;
                if consumed {
                    continue;
                }
                let payload = row.get_ref(0)?.as_blob()?;
                records.push(decode_line(payload)?);
                new_keys.push(row.get::<_, String>(1)?);
            }
        }
        if rows == 0 {
            // Nothing pending: write nothing (ours issues no fsync either).
            tx.rollback()?;
            return Ok(records);
        }
        tx.prepare_cached(DELETE_PENDING)?
            .execute(params![parent])?;
        let now = unix_seconds(SystemTime::now());
        {
            let mut mark = tx.prepare_cached(MARK)?;
            for key in &new_keys {
                mark.execute(params![parent, key, now])?;
            }
        }
        let expired = now.saturating_sub(LEDGER_TTL.as_secs() as i64);
        tx.prepare_cached(PRUNE)?
            .execute(params![parent, expired])?;
        tx.commit()?;
        Ok(records)
    }

    fn fill(&mut self, parent: &str, records: Vec<Record>) -> Result<()> {
        // Untimed: one transaction without fsyncs; `settle` flushes it.
        self.set_synchronous("OFF")?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for record in records {
            Self::upsert(&tx, parent, record)?;
        }
        tx.commit()?;
        self.set_synchronous(self.timed_sync)
    }

    fn settle(&mut self) -> Result<()> {
        sync_tree(&self.dir)
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
