//! The outbox contract ([`outbox::Store`]) on PostgreSQL, for parents and
//! children on several hosts.
//!
//! [`PgOutbox`] keeps the file outbox's contract, checked by the same
//! conformance suite (`outbox-conformance`): last wins per (parent, child)
//! by commit order, the same JSON line (byte for byte) and fingerprints,
//! the consumed ledger with its 14-day TTL and clock-step rules, the same
//! parent-id rules, a plain drain that marks before it returns and a
//! `drain_with` that marks only after delivery returned `Ok`.
//!
//! ```no_run
//! use outbox::{Record, Store};
//! use outbox_postgres::PgOutbox;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgOutbox::connect("postgres://postgres@127.0.0.1:5432/test")?;
//! store.commit("parent-A", Record::finished("child-1", "success"))?;
//! let drained = store.drain_with("parent-A", |records| {
//!     for r in records {
//!         println!("{} -> {}", r.child_session_id, r.done_status);
//!     }
//!     Ok::<(), std::io::Error>(())
//! })?;
//! assert_eq!(drained.records.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Tables
//!
//! All in one schema ([`DEFAULT_SCHEMA`], or one per tenant or test; see
//! `schema.rs` for the DDL), created and migrated by [`PgOutbox::connect`]:
//! versioned ([`SCHEMA_VERSION`]), idempotent, and safe when several
//! processes start at once (one transaction under an advisory lock).
//! `pending` holds one row per (parent, child): the child's last record,
//! its JSON line, its turn key and a `seq` from a sequence; `consumed` is
//! the ledger; `stop_blocks` the handover state (`outbox::handover`: what
//! was shown to the parent's session, and the Stop-hook guard); `quarantine` the rows a
//! drain could not read back.
//!
//! # Commit
//!
//! One statement, one round trip (autocommit): an upsert of the child's row
//! (`INSERT … ON CONFLICT DO UPDATE`, whose row lock orders commits of one
//! child: the last to commit wins, whatever the timestamps say), a fresh
//! `seq` taken under that lock, and whether the turn is already consumed.
//! Commits never wait for a drain's delivery. The same statement calls
//! `pg_notify` with the parent id, delivered when the commit commits, so a
//! [`Listener`] (`outbox watch`) wakes without polling and without another
//! round trip.
//!
//! # Drain
//!
//! One transaction: `BEGIN` (`READ COMMITTED` and no
//! `idle_in_transaction_session_timeout`, whatever the server's defaults)
//! and `pg_advisory_xact_lock` on the parent's key (one round trip), so two drainers of one parent, on any hosts, never
//! both claim its records: the second waits for the first to finish; then
//! the parent's rows, with whether each turn is consumed (one round trip);
//! then the caller's delivery, for [`drain_with`](outbox::Store::drain_with);
//! then, in one round trip, the rows handled are deleted (each only if its
//! `seq` is still the one delivered: a child that committed again during
//! the delivery keeps its new record pending), the ledger pruned and the
//! turns marked; then `COMMIT`. A delivery error, a crash of the drainer or
//! of the server, or any failure before `COMMIT` rolls everything back:
//! nothing is marked, the records stay pending. A plain
//! [`drain`](outbox::Store::drain) commits before it returns, as the file
//! outbox writes its ledger before it returns.
//!
//! # Errors
//!
//! Every failure is an [`outbox::Error::Store`] naming the operation and
//! the store, classified ([`StoreErrorKind`]), with
//! its [`Outcome`]: `NotApplied` when the transaction provably did not
//! commit (the server answered with an error, or the connection failed
//! before `COMMIT` was sent), `Unknown` when a statement that commits (an
//! autocommit upsert, a `COMMIT`) was in flight when the connection failed.
//! A drain whose `COMMIT` answer is lost learns its fate instead of
//! guessing: it read its transaction id with its last statement, so a new
//! connection asks the server (`txid_status`), ending the old session
//! first when the server still holds the transaction open (a partition):
//! committed is a success (the records are returned, consumed), rolled
//! back is `NotApplied`; only when the server cannot be asked is the
//! outcome `Unknown`, and then the error carries the records
//! ([`outbox::StoreError::records`]), which may be consumed.
//! Retries happen only where nothing can have committed: a serialization
//! failure or deadlock the server reported, and a drain whose claim failed
//! on a pooled connection that had died (a server restart) — retried once on
//! a new connection before any delivery. A pooled connection is checked
//! before a statement is sent on it (one non-blocking look at its socket,
//! no round trip): one the server closed (a restart, `idle_session_timeout`)
//! or the network cut is dropped, so a commit on it is never `Unknown`.
//!
//! # Connections
//!
//! Each operation takes an idle connection of the handle, or a new one
//! (`tokio-postgres` on a runtime of its own, over a socket this crate
//! opens: `conn.rs`). Every round trip has a client-side deadline
//! ([`DEFAULT_TIMEOUT`], [`PgOutbox::with_timeout`], the URL's
//! `outbox_timeout=SECONDS`): a stalled connection fails the operation with
//! [`StoreErrorKind::Timeout`] and its server session is ended from a new
//! connection, so a drain never leaves its parent locked behind it. TCP
//! keepalives and `TCP_USER_TIMEOUT` are set on the socket and asked of the
//! server unless the URL sets its own, so either end gives a vanished peer
//! up in about a minute. `sslmode` has libpq's meaning (`tls.rs`: rustls;
//! `prefer` and `require` encrypt without verifying the certificate, as
//! libpq does). A URL without a password takes libpq's: `PGPASSWORD`, else
//! `PGPASSFILE` or `~/.pgpass` (`pgpass.rs`).
//!
//! # Differences from the file outbox
//!
//! There is no staging file: a record whose delivery failed is pending like
//! any other (as in the file outbox, whose sweeps act on its claim too).
//! [`Drained::recovered`](outbox::Drained::recovered) is always 0, and a
//! [`BadLine`] of this store names the row's `seq`
//! as its `line_no` (offset 0).

mod conn;
mod listen;
mod pgpass;
mod resolve;
mod schema;
mod tls;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conn::{Conn, Net, PgError};
use outbox::format::{BadLine, BadLineReason, decode_line};
use outbox::handover::{Handover, Surface};
use outbox::{
    Committed, DrainWithError, Drained, Error, LEDGER_TTL, Outcome, Record, Result, Store,
    StoreError, StoreErrorKind, SweepReport, check_parent_id,
};
use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Row, Statement};

pub use listen::Listener;
// Kept here too: callers of this crate found them here first.
pub use outbox::redact::{MASK, has_password, passwords, redact_text, redact_url};
pub use schema::VERSION as SCHEMA_VERSION;

/// The schema [`PgOutbox::connect`] uses.
pub const DEFAULT_SCHEMA: &str = "outbox";

/// How long a connection attempt may take when the URL sets no
/// `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The client-side deadline of each round trip to the server (a statement
/// and its answer, including a drain's wait for the parent's lock) when
/// the URL sets no `outbox_timeout` (seconds) and
/// [`PgOutbox::with_timeout`] was not called. A connection that stalls
/// without closing fails the operation after this long, with
/// [`StoreErrorKind::Timeout`], instead of hanging it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How many idle connections a handle keeps for reuse.
const MAX_IDLE: usize = 8;

/// How many times a transaction the server aborted to stay serializable
/// (it provably did not commit) is tried again.
const SERIALIZATION_RETRIES: usize = 3;

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The outbox on a PostgreSQL database. Cheap to clone (clones share the
/// idle connections); use it from any number of threads and processes,
/// on any number of hosts.
///
/// Each operation takes a connection of its own (an idle one, or a new
/// one), so a `drain_with` callback may commit through the same handle;
/// a drain, `drain_with`, `sweep_stale` or `forget_child` of the same
/// parent from inside the callback is an error of kind
/// [`StoreErrorKind::Reentrant`], not a deadlock.
#[derive(Clone)]
pub struct PgOutbox {
    inner: Arc<Inner>,
    clock: Clock,
    /// The client-side deadline of each round trip.
    deadline: Duration,
}

struct Inner {
    config: tokio_postgres::Config,
    net: Net,
    schema: String,
    quoted: String,
    describe: String,
    idle: Mutex<Vec<Conn>>,
    /// (parent, thread) pairs holding a parent's drain lock through this
    /// handle, so a thread asking again gets an error, not a deadlock.
    draining: Mutex<HashSet<(String, ThreadId)>>,
}

impl std::fmt::Debug for PgOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOutbox")
            .field("store", &self.inner.describe)
            .finish_non_exhaustive()
    }
}

/// The statements, `{s}` standing for the quoted schema.
mod sql {
    pub const COMMIT: &str = "\
        WITH up AS (
            INSERT INTO {s}.pending
                (parent, child, seq, turn_key, from_status, to_status, ts_ns, lock_key, line)
            VALUES ($1, $2, nextval('{s}.commit_seq'), $3, $4, $5, $6, $7, $8)
            ON CONFLICT (parent, child) DO UPDATE SET
                first_seq = coalesce({s}.pending.first_seq, {s}.pending.seq),
                recent = (coalesce({s}.pending.recent, '{}') || {s}.pending.seq)
                    [greatest(cardinality({s}.pending.recent) - 6, 1):],
                seq = nextval('{s}.commit_seq'), turn_key = excluded.turn_key,
                from_status = excluded.from_status, to_status = excluded.to_status,
                ts_ns = excluded.ts_ns, lock_key = excluded.lock_key, line = excluded.line
            RETURNING seq)
        SELECT EXISTS (SELECT 1 FROM {s}.consumed WHERE parent = $1 AND turn_key = $3),
            pg_notify('outbox_' || md5('{s}'), $1) FROM up";
    // The ledger is probed once per pending row through its primary key
    // (LATERAL … LIMIT 1): a plain EXISTS may be planned as a hash of the
    // parent's whole ledger, which grows with every turn of the TTL.
    pub const ROWS: &str = "\
        SELECT p.child, p.seq, p.line, c.hit IS NOT NULL
        FROM {s}.pending p
        LEFT JOIN LATERAL (SELECT true AS hit FROM {s}.consumed c
                           WHERE c.parent = $1 AND c.turn_key = p.turn_key LIMIT 1) c ON true
        WHERE p.parent = $1 ORDER BY coalesce(p.first_seq, p.seq)";
    pub const HAS_PENDING: &str = "\
        SELECT EXISTS (SELECT 1 FROM {s}.pending p
            LEFT JOIN LATERAL (SELECT true AS hit FROM {s}.consumed c
                               WHERE c.parent = $1 AND c.turn_key = p.turn_key LIMIT 1) c ON true
            WHERE p.parent = $1 AND c.hit IS NULL)";
    // With the transaction's id and backend, to learn its fate when the
    // COMMIT's answer is lost (see `resolve.rs`).
    pub const FINISH: &str = "SELECT {s}.finish_drain($1, $2, $3, $4, $5, $6, $7, $8, $9), \
        txid_current(), pg_backend_pid()";
    pub const SWEEP_TRANSITION: &str = "\
        DELETE FROM {s}.pending
        WHERE parent = $1 AND child = $2 AND from_status = $3 AND to_status = $4";
    pub const SWEEP_STALE: &str = "\
        DELETE FROM {s}.pending WHERE parent = $1 AND ts_ns < $2";
    pub const SWEEP_STALE_ALL: &str = "\
        DELETE FROM {s}.pending WHERE ts_ns < $1 AND pg_try_advisory_xact_lock(lock_key)";
    pub const FORGET: &str = "\
        DELETE FROM {s}.consumed WHERE parent = $1 AND strpos(turn_key, '@') > 0
          AND left(turn_key, length(turn_key) - strpos(reverse(turn_key), '@')) = $2";
    pub const PENDING_COUNTS: &str =
        "SELECT parent, count(*) FROM {s}.pending GROUP BY parent ORDER BY parent";
    pub const HANDOVER: &str = "\
        SELECT count, session_id, surface, shown, delivery, shown_at, emitted
        FROM {s}.stop_blocks WHERE parent = $1";
    pub const SET_HANDOVER: &str = "\
        INSERT INTO {s}.stop_blocks
            (parent, count, session_id, surface, shown, delivery, shown_at, emitted)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (parent) DO UPDATE SET count = excluded.count,
            session_id = excluded.session_id, surface = excluded.surface,
            shown = excluded.shown, delivery = excluded.delivery,
            shown_at = excluded.shown_at, emitted = excluded.emitted";
    pub const TURN_ROWS: &str = "\
        SELECT p.child, p.seq, p.line, EXISTS (SELECT 1 FROM {s}.consumed c
            WHERE c.parent = $1 AND c.turn_key = p.turn_key)
        FROM {s}.pending p WHERE p.parent = $1 AND p.turn_key = ANY($2)
        ORDER BY coalesce(p.first_seq, p.seq)";
}

impl Conn {
    fn statement(&mut self, quoted: &str, sql: &'static str) -> Result<Statement, PgError> {
        if let Some((_, st)) = self.statements.iter().find(|(k, _)| std::ptr::eq(*k, sql)) {
            return Ok(st.clone());
        }
        let st = self.prepare(&sql.replace("{s}", quoted))?;
        self.statements.push((sql, st.clone()));
        Ok(st)
    }
}

/// A 64-bit advisory-lock key for `name` in the namespace `kind`: the first
/// 8 bytes of a SHA-256, so keys of distinct names collide only by chance
/// (and a collision only makes two parents' drains take turns).
pub(crate) fn lock_key(kind: &str, name: &str) -> i64 {
    let digest = Sha256::digest(format!("outbox-postgres\0{kind}\0{name}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// The store error for `source`, classified.
fn classify(e: &PgError) -> StoreErrorKind {
    let e = match e {
        PgError::Db(e) => e,
        PgError::TimedOut(_) => return StoreErrorKind::Timeout,
        PgError::Io(_) => return StoreErrorKind::Connect,
    };
    match e.code() {
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            StoreErrorKind::Serialization
        }
        Some(c) if *c == SqlState::QUERY_CANCELED || *c == SqlState::LOCK_NOT_AVAILABLE => {
            StoreErrorKind::Timeout
        }
        Some(c)
            if *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
                || *c == SqlState::IDLE_SESSION_TIMEOUT =>
        {
            StoreErrorKind::ConnectionLost
        }
        Some(c) if *c == SqlState::UNDEFINED_TABLE || *c == SqlState::UNDEFINED_FUNCTION => {
            StoreErrorKind::Schema
        }
        Some(_) => StoreErrorKind::Other,
        None if e.is_closed() => StoreErrorKind::ConnectionLost,
        None => match std::error::Error::source(e) {
            Some(s) if s.is::<std::io::Error>() => StoreErrorKind::ConnectionLost,
            _ => StoreErrorKind::Other,
        },
    }
}

/// The driver's error with its causes (see [`PgError`]'s `Display`),
/// scrubbed of passwords ([`redact_text`]): neither the driver nor the
/// server should echo a connection string, but a message is no place to
/// find out they did.
fn reason(e: &PgError) -> String {
    redact_text(&e.to_string())
}

/// Whether the server itself answered `e` (then the statement or
/// transaction it answered provably did not commit).
fn server_answered(e: &PgError) -> bool {
    matches!(e, PgError::Db(db) if db.as_db_error().is_some())
        && classify(e) != StoreErrorKind::ConnectionLost
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Releases a parent's drain lock of this handle on drop.
struct Entered<'a> {
    inner: &'a Inner,
    key: (String, ThreadId),
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        lock(&self.inner.draining).remove(&self.key);
    }
}

/// One row of a parent's `pending` rows.
struct PendingRow {
    child: String,
    seq: i64,
    record: std::result::Result<Record, String>,
    consumed: bool,
}

impl PgOutbox {
    /// Connects to the database at `url` (a `postgres://` URL or a
    /// `key=value` string) and brings the [`DEFAULT_SCHEMA`] to
    /// [`SCHEMA_VERSION`]. See [`connect_schema`](Self::connect_schema).
    ///
    /// A URL may name the schema with the parameter `outbox_schema=NAME`
    /// (this crate's, removed before the URL reaches the driver):
    /// `postgres://host/db?outbox_schema=team_a`.
    ///
    /// The parameter `outbox_timeout=SECONDS` (also removed) sets the
    /// client-side deadline of each round trip ([`DEFAULT_TIMEOUT`]).
    pub fn connect(url: &str) -> Result<Self> {
        let (url, schema) = split_schema(url);
        let (url, timeout) = split_param(&url, "outbox_timeout=");
        let timeout = match timeout.map(|t| t.parse::<f64>()) {
            None => DEFAULT_TIMEOUT,
            Some(Ok(secs)) if secs.is_finite() && secs > 0.0 && secs < 1e9 => {
                Duration::from_secs_f64(secs)
            }
            Some(_) => {
                return Err(store_error(
                    "parse the store URL",
                    redact_url(&url),
                    StoreErrorKind::Connect,
                    Outcome::NotApplied,
                    "outbox_timeout must be a positive number of seconds",
                ));
            }
        };
        let store = Self::connect_schema(&url, schema.as_deref().unwrap_or(DEFAULT_SCHEMA))?;
        Ok(store.with_timeout(timeout))
    }

    /// Connects to the database at `url` and keeps the outbox in `schema`
    /// (lowercase ASCII letters, digits and `_`), creating or migrating it.
    /// Safe when many processes do it at once. Sets `application_name` to
    /// `outbox-postgres` and a connect timeout of
    /// [`DEFAULT_CONNECT_TIMEOUT`] unless the URL sets them. Server
    /// settings such as `statement_timeout` can be passed in the URL's
    /// `options` (`?options=-c%20statement_timeout%3D5s`).
    pub fn connect_schema(url: &str, schema: &str) -> Result<Self> {
        let bad_url = |e: Box<dyn std::error::Error + Send + Sync>| {
            store_error(
                "parse the store URL",
                redact_url(url),
                StoreErrorKind::Connect,
                Outcome::NotApplied,
                // The parser's words, scrubbed like every driver message.
                redact_text(&e.to_string()),
            )
        };
        // libpq's tcp_user_timeout is in milliseconds; the driver would read
        // seconds (7000 ms as almost two hours): taken out and read here.
        let (parsed, user_timeout) = split_param(url, "tcp_user_timeout=");
        let mut config: tokio_postgres::Config =
            parsed.parse().map_err(|e| bad_url(Box::new(e)))?;
        if let Some(ms) = user_timeout {
            let ms: u64 = ms.parse().map_err(|_| {
                bad_url("tcp_user_timeout must be a whole number of milliseconds".into())
            })?;
            config.tcp_user_timeout(Duration::from_millis(ms));
        }
        if let Err(why) = schema::check_schema_name(schema) {
            return Err(store_error(
                "choose the schema",
                redact_url(url),
                StoreErrorKind::Schema,
                Outcome::NotApplied,
                format!("schema name {schema:?} {why}"),
            ));
        }
        if config.get_application_name().is_none() {
            config.application_name("outbox-postgres");
        }
        let net = conn::net_settings(&mut config);
        let describe = describe(&config, schema);
        let store = Self {
            deadline: DEFAULT_TIMEOUT,
            inner: Arc::new(Inner {
                net,
                config,
                schema: schema.to_owned(),
                quoted: schema::quoted(schema),
                describe,
                idle: Mutex::new(Vec::new()),
                draining: Mutex::new(HashSet::new()),
            }),
            clock: Arc::new(SystemTime::now),
        };
        let mut conn = store.take("connect")?;
        match schema::migrate(&mut conn, schema) {
            Ok(_) => {}
            Err(schema::MigrateError::TooNew(v)) => {
                return Err(store.error_msg(
                    "migrate the schema",
                    StoreErrorKind::Schema,
                    format!(
                        "schema version {v} is newer than this code's ({SCHEMA_VERSION}); \
                         upgrade this program"
                    ),
                ));
            }
            Err(schema::MigrateError::Db(e)) => {
                return Err(store.error("migrate the schema", &e, Outcome::NotApplied));
            }
        }
        store.give_back(conn);
        Ok(store)
    }

    /// Uses `clock` instead of the system clock for "now" (ledger stamps
    /// and pruning, sweeps by age, stamping a zero timestamp), for this
    /// handle and the clones made from it afterwards.
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Sets the client-side deadline of each round trip (see
    /// [`DEFAULT_TIMEOUT`]) for this handle and the clones made from it
    /// afterwards. An operation whose round trip times out fails with
    /// [`StoreErrorKind::Timeout`]; its connection is closed, so the server
    /// rolls back what it had not committed and frees the parent's lock.
    /// A commit or `COMMIT` that timed out is [`Outcome::Unknown`].
    pub fn with_timeout(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The schema the outbox lives in.
    pub fn schema(&self) -> &str {
        &self.inner.schema
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

    fn now_ns(&self) -> i64 {
        match self.now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
        }
    }

    fn parent_key(&self, parent: &str) -> i64 {
        lock_key("parent", &format!("{}\0{parent}", self.inner.schema))
    }

    fn error(&self, op: &'static str, e: &PgError, outcome: Outcome) -> Error {
        let kind = classify(e);
        if kind == StoreErrorKind::ConnectionLost {
            // The server went away: the idle connections are most likely
            // dead too.
            lock(&self.inner.idle).clear();
        }
        store_error(op, self.inner.describe.clone(), kind, outcome, reason(e))
    }

    fn error_msg(&self, op: &'static str, kind: StoreErrorKind, message: String) -> Error {
        store_error(
            op,
            self.inner.describe.clone(),
            kind,
            Outcome::NotApplied,
            message,
        )
    }

    /// An idle connection, or a new one.
    fn take(&self, op: &'static str) -> Result<Conn> {
        // A pooled connection found dead (closed, reset, or told by the
        // server that it ended the session) is dropped before any statement
        // is sent on it.
        while let Some(mut conn) = lock(&self.inner.idle).pop() {
            if conn.is_alive() {
                conn.reused = true;
                conn.set_deadline(self.deadline);
                return Ok(conn);
            }
        }
        self.fresh(op)
    }

    fn fresh(&self, op: &'static str) -> Result<Conn> {
        let mut conn = Conn::connect(&self.inner.config, &self.inner.net).map_err(|e| {
            store_error(
                op,
                self.inner.describe.clone(),
                StoreErrorKind::Connect,
                Outcome::NotApplied,
                reason(&e),
            )
        })?;
        conn.set_deadline(self.deadline);
        Ok(conn)
    }

    fn give_back(&self, conn: Conn) {
        if !conn.reusable() {
            return;
        }
        let mut idle = lock(&self.inner.idle);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// Runs one autocommit statement; a serialization failure or deadlock
    /// the server reported (nothing committed) is tried again.
    fn run<T>(
        &self,
        op: &'static str,
        commits: bool,
        mut f: impl FnMut(&mut Conn, &str) -> std::result::Result<T, PgError>,
    ) -> Result<T> {
        let mut tries = 0;
        loop {
            let mut conn = self.take(op)?;
            match f(&mut conn, &self.inner.quoted) {
                Ok(v) => {
                    self.give_back(conn);
                    return Ok(v);
                }
                Err(e) => {
                    let answered = server_answered(&e);
                    if answered {
                        self.give_back(conn);
                    }
                    if answered
                        && classify(&e) == StoreErrorKind::Serialization
                        && tries < SERIALIZATION_RETRIES
                    {
                        tries += 1;
                        continue;
                    }
                    let outcome = if commits && !answered {
                        Outcome::Unknown
                    } else {
                        Outcome::NotApplied
                    };
                    return Err(self.error(op, &e, outcome));
                }
            }
        }
    }

    /// Marks `parent` as drained by this thread through this handle; an
    /// error when it already is (a call from inside a callback).
    fn enter(&self, parent: &str) -> Result<Entered<'_>> {
        let key = (parent.to_owned(), std::thread::current().id());
        if !lock(&self.inner.draining).insert(key.clone()) {
            return Err(self.error_msg(
                "lock the parent",
                StoreErrorKind::Reentrant,
                format!(
                    "parent {parent:?}: a drain, drain_with, sweep_stale or forget_child cannot \
                     be called from inside a drain_with callback of the same parent"
                ),
            ));
        }
        Ok(Entered {
            inner: &self.inner,
            key,
        })
    }

    /// `BEGIN` and the parent's advisory lock, in one round trip, on a
    /// connection; tried again on a new connection when a pooled one turns
    /// out dead, or when the server reports a serialization failure
    /// (nothing was sent that could commit).
    fn begin_locked<T>(
        &self,
        op: &'static str,
        parent: &str,
        mut then: impl FnMut(&mut Conn, &str) -> std::result::Result<T, PgError>,
    ) -> Result<(Conn, T)> {
        let key = self.parent_key(parent);
        let mut tries = 0;
        loop {
            let mut conn = self.take(op)?;
            let reused = conn.reused;
            let result = conn
                // READ COMMITTED whatever the server's default: each
                // statement after the lock must see what the previous holder
                // committed (a REPEATABLE READ or SERIALIZABLE snapshot is
                // taken before the lock is granted). No idle-in-transaction
                // timeout: the server ending the transaction during a slow
                // delivery would hand the parent to a second drainer.
                .batch_execute(&format!(
                    "BEGIN ISOLATION LEVEL READ COMMITTED; \
                     SET LOCAL idle_in_transaction_session_timeout = 0; \
                     SELECT pg_advisory_xact_lock({key})"
                ))
                .and_then(|()| then(&mut conn, &self.inner.quoted));
            match result {
                Ok(v) => return Ok((conn, v)),
                Err(e) => {
                    let kind = classify(&e);
                    self.rollback(&mut conn, parent);
                    let retry = (kind == StoreErrorKind::ConnectionLost && reused)
                        || (kind == StoreErrorKind::Serialization && server_answered(&e));
                    if kind != StoreErrorKind::ConnectionLost {
                        self.give_back(conn);
                    }
                    if retry && tries < SERIALIZATION_RETRIES {
                        tries += 1;
                        if kind == StoreErrorKind::ConnectionLost {
                            lock(&self.inner.idle).clear();
                        }
                        continue;
                    }
                    return Err(self.error(op, &e, Outcome::NotApplied));
                }
            }
        }
    }

    fn rows(
        conn: &mut Conn,
        quoted: &str,
        parent: &str,
    ) -> std::result::Result<Vec<PendingRow>, PgError> {
        let st = conn.statement(quoted, sql::ROWS)?;
        Ok(conn
            .query(&st, &[&parent])?
            .iter()
            .map(pending_row)
            .collect())
    }

    fn drain_impl<E>(
        &self,
        parent: &str,
        max: usize,
        deliver: Option<impl FnOnce(&[Record]) -> std::result::Result<(), E>>,
    ) -> Result<Drained, DrainWithError<E>> {
        check_parent_id(parent)?;
        let _entered = self.enter(parent)?;
        let (mut conn, rows) =
            self.begin_locked("drain: claim the parent's records", parent, |c, q| {
                Self::rows(c, q, parent)
            })?;
        let mut drained = Drained::default();
        // Rows handled: delivered, or already consumed (dropped).
        let (mut children, mut seqs, mut keys) = (Vec::new(), Vec::new(), Vec::new());
        let (mut bad_children, mut bad_seqs, mut bad_reasons) =
            (Vec::new(), Vec::new(), Vec::new());
        let mut fresh = Vec::new();
        let mut fresh_rows = Vec::new();
        for row in rows {
            match row.record {
                Err(reason) => {
                    drained.bad_lines.push(BadLine::new(
                        u64::try_from(row.seq).unwrap_or(0),
                        0,
                        0,
                        BadLineReason::Unparsable(reason.clone()),
                    ));
                    bad_children.push(row.child);
                    bad_seqs.push(row.seq);
                    bad_reasons.push(reason);
                }
                Ok(_) if row.consumed => {
                    drained.already_consumed += 1;
                    children.push(row.child);
                    seqs.push(row.seq);
                }
                Ok(record) if fresh.len() < max => {
                    keys.push(record.turn_key());
                    fresh.push(record);
                    fresh_rows.push((row.child, row.seq));
                }
                Ok(_) => {} // Left pending: over `max`.
            }
        }
        if fresh.is_empty() && children.is_empty() && bad_seqs.is_empty() {
            self.rollback(&mut conn, parent);
            self.give_back(conn);
            return Ok(drained);
        }
        if !fresh.is_empty()
            && let Some(deliver) = deliver
            && let Err(e) = deliver(&fresh)
        {
            self.rollback(&mut conn, parent);
            self.give_back(conn);
            return Err(DrainWithError::Delivery(e));
        }
        for (child, seq) in fresh_rows {
            children.push(child);
            seqs.push(seq);
        }
        let ttl = i64::try_from(LEDGER_TTL.as_secs()).unwrap_or(i64::MAX);
        let now = self.now_unix();
        let finish = conn
            .statement(&self.inner.quoted, sql::FINISH)
            .and_then(|st| {
                conn.query_one(
                    &st,
                    &[
                        &parent,
                        &children,
                        &seqs,
                        &keys,
                        &bad_children,
                        &bad_seqs,
                        &bad_reasons,
                        &now,
                        &ttl,
                    ],
                )
            });
        let (xid, pid): (i64, i32) = match finish {
            Ok(row) => (row.get(1), row.get(2)),
            Err(e) => {
                self.rollback(&mut conn, parent);
                if server_answered(&e) {
                    self.give_back(conn);
                }
                return Err(self
                    .error("drain: mark the records consumed", &e, Outcome::NotApplied)
                    .into());
            }
        };
        match conn.batch_execute("COMMIT") {
            Ok(()) => self.give_back(conn),
            Err(e) => self.commit_failed(conn, &e, xid, pid, &mut fresh)?,
        }
        drained.quarantined = Vec::new();
        drained.records = fresh;
        Ok(drained)
    }

    /// A drain's `COMMIT` failed: `Ok` when the server committed it all the
    /// same (its answer was lost: asked on a new connection, see
    /// `resolve.rs`), else the error, `NotApplied` when it provably did not
    /// commit, `Unknown` with the `records` when the server cannot say.
    fn commit_failed(
        &self,
        conn: Conn,
        e: &PgError,
        xid: i64,
        pid: i32,
        records: &mut Vec<Record>,
    ) -> Result<()> {
        const OP: &str = "drain: commit the marks";
        if server_answered(e) {
            self.give_back(conn);
            return Err(self.error(OP, e, Outcome::NotApplied));
        }
        drop(conn);
        match self.fate(xid, pid) {
            resolve::Fate::Committed => Ok(()),
            resolve::Fate::Aborted => Err(self.error(OP, e, Outcome::NotApplied)),
            resolve::Fate::Unknown => {
                let mut err = self.error(OP, e, Outcome::Unknown);
                if let Error::Store(store) = &mut err {
                    store.records = std::mem::take(records);
                }
                Err(err)
            }
        }
    }

    /// `ROLLBACK`, best effort: a connection that cannot take it is closed
    /// (the server rolls back the transaction of a closed connection). One
    /// that stalled is ended from a new connection, if it holds `parent`'s
    /// lock: the server may not see it close (a partition) and would keep
    /// the parent locked.
    fn rollback(&self, conn: &mut Conn, parent: &str) {
        if conn.timed_out() {
            self.end_session(conn.session(), self.parent_key(parent));
        } else {
            let _ = conn.batch_execute("ROLLBACK");
        }
    }

    /// Runs `f` in a transaction holding `parent`'s drain lock.
    fn locked<T>(
        &self,
        op: &'static str,
        parent: &str,
        f: impl FnMut(&mut Conn, &str) -> std::result::Result<T, PgError>,
    ) -> Result<T> {
        let _entered = self.enter(parent)?;
        let (mut conn, v) = self.begin_locked(op, parent, f)?;
        match conn.batch_execute("COMMIT") {
            Ok(()) => {
                self.give_back(conn);
                Ok(v)
            }
            Err(e) => {
                let outcome = if server_answered(&e) {
                    Outcome::NotApplied
                } else {
                    Outcome::Unknown
                };
                if conn.timed_out() {
                    self.end_session(conn.session(), self.parent_key(parent));
                }
                Err(self.error(op, &e, outcome))
            }
        }
    }
}

/// `url` without its `outbox_schema=NAME` parameter, and that name.
fn split_schema(url: &str) -> (String, Option<String>) {
    split_param(url, "outbox_schema=")
}

/// `url` without its parameter `key` (`name=`), and its value.
fn split_param(url: &str, key: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|p| match p.strip_prefix(key) {
            Some(name) => {
                schema = Some(name.to_owned());
                false
            }
            None => true,
        })
        .collect();
    if rest.is_empty() {
        (base.to_owned(), schema)
    } else {
        (format!("{base}?{}", rest.join("&")), schema)
    }
}

fn pending_row(row: &Row) -> PendingRow {
    let line: String = row.get(2);
    PendingRow {
        child: row.get(0),
        seq: row.get(1),
        record: decode_line(line.as_bytes()).map_err(|e| e.to_string()),
        consumed: row.get(3),
    }
}

fn store_error(
    op: &'static str,
    store: String,
    kind: StoreErrorKind,
    outcome: Outcome,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Error::Store(Box::new(StoreError::new(op, store, kind, outcome, source)))
}

/// `postgres://user@host:port/db (schema s)`, without the password.
fn describe(config: &tokio_postgres::Config, schema: &str) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = config
                .get_ports()
                .get(i)
                .or(config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match h {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    format!(
        "postgres://{}@{}/{} (schema {schema})",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

fn ts_ns(r: &Record) -> Option<i64> {
    if r.timestamp.is_zero() {
        return None;
    }
    let ns = i128::from(r.timestamp.unix_seconds()) * 1_000_000_000
        + i128::from(r.timestamp.subsec_nanos());
    Some(i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX }))
}

impl Store for PgOutbox {
    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    /// One round trip: an upsert that supersedes the child's pending record
    /// and says whether the turn is already consumed. `Ok` means the
    /// transaction committed (durable under the server's
    /// `synchronous_commit`).
    fn commit(&self, parent: &str, record: Record) -> Result<Committed> {
        let (record, line) = outbox::stamp(parent, record, self.now())?;
        let line = std::str::from_utf8(&line[..line.len() - 1])
            .map_err(|e| self.error_msg("commit: encode", StoreErrorKind::Other, e.to_string()))?;
        let turn_key = record.turn_key();
        let ts = ts_ns(&record);
        let key = self.parent_key(parent);
        let consumed = self.run("commit", true, |c, q| {
            let st = c.statement(q, sql::COMMIT)?;
            let row = c.query_one(
                &st,
                &[
                    &parent,
                    &record.child_session_id,
                    &turn_key,
                    &record.from_status,
                    &record.to_status,
                    &ts,
                    &key,
                    &line,
                ],
            )?;
            Ok(row.get::<_, bool>(0))
        })?;
        Ok(Committed::new(record, consumed))
    }

    fn drain(&self, parent: &str) -> Result<Drained> {
        let none = None::<fn(&[Record]) -> std::result::Result<(), std::convert::Infallible>>;
        self.drain_impl(parent, usize::MAX, none)
            .map_err(DrainWithError::into_outbox)
    }

    fn drain_with_max<E>(
        &self,
        parent: &str,
        max: usize,
        deliver: impl FnOnce(&[Record]) -> std::result::Result<(), E>,
    ) -> Result<Drained, DrainWithError<E>> {
        self.drain_impl(parent, max, Some(deliver))
    }

    fn has_pending(&self, parent: &str) -> Result<bool> {
        check_parent_id(parent)?;
        let any = self.run("has_pending", false, |c, q| {
            let st = c.statement(q, sql::HAS_PENDING)?;
            Ok(c.query_one(&st, &[&parent])?.get(0))
        })?;
        // A row whose line cannot be read back is set aside by a drain, not
        // delivered: when there is any row, ask what peek (and a drain)
        // would deliver, as the file outbox does.
        Ok(any && !self.peek(parent)?.is_empty())
    }

    fn peek(&self, parent: &str) -> Result<Vec<Record>> {
        check_parent_id(parent)?;
        let rows = self.run("peek", false, |c, q| Self::rows(c, q, parent))?;
        Ok(rows
            .into_iter()
            .filter(|r| !r.consumed)
            .filter_map(|r| r.record.ok())
            .collect())
    }

    fn sweep_transition(&self, parent: &str, child: &str, from: &str, to: &str) -> Result<usize> {
        check_parent_id(parent)?;
        // Under the parent's drain lock, as sweep_stale: a drain in progress
        // finishes first, and what it delivers is out of reach.
        let n = self.locked("sweep_transition", parent, |c, q| {
            let st = c.statement(q, sql::SWEEP_TRANSITION)?;
            c.execute(&st, &[&parent, &child, &from, &to])
        })?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn sweep_stale(&self, parent: &str, max_age: Duration) -> Result<usize> {
        check_parent_id(parent)?;
        let cutoff = self.stale_cutoff(max_age);
        let n = self.locked("sweep_stale", parent, |c, q| {
            let st = c.statement(q, sql::SWEEP_STALE)?;
            c.execute(&st, &[&parent, &cutoff])
        })?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Skips the parents a drain holds at that moment (their records are
    /// being delivered).
    fn sweep_stale_all(&self, max_age: Duration) -> Result<SweepReport> {
        let cutoff = self.stale_cutoff(max_age);
        let n = self.run("sweep_stale_all", true, |c, q| {
            let st = c.statement(q, sql::SWEEP_STALE_ALL)?;
            c.execute(&st, &[&cutoff])
        })?;
        let mut report = SweepReport::default();
        report.dropped = usize::try_from(n).unwrap_or(usize::MAX);
        Ok(report)
    }

    fn forget_child(&self, parent: &str, child: &str) -> Result<usize> {
        check_parent_id(parent)?;
        let child = child.trim();
        let n = self.locked("forget_child", parent, |c, q| {
            let st = c.statement(q, sql::FORGET)?;
            c.execute(&st, &[&parent, &child])
        })?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn handover(&self, parent: &str) -> Result<Handover> {
        check_parent_id(parent)?;
        let row = self.run("handover", false, |c, q| {
            let st = c.statement(q, sql::HANDOVER)?;
            c.query_opt(&st, &[&parent])
        })?;
        let Some(row) = row else {
            return Ok(Handover::default());
        };
        let count: i64 = row.get(0);
        let surface: Option<String> = row.get(2);
        Ok(Handover {
            blocks: u32::try_from(count).unwrap_or(0),
            session_id: row.get(1),
            surface: surface.as_deref().and_then(Surface::parse),
            shown: row.get(3),
            delivery: row.get(4),
            shown_at: row.get(5),
            emitted: row.get(6),
        })
    }

    fn set_handover(&self, parent: &str, state: &Handover) -> Result<()> {
        check_parent_id(parent)?;
        let count = i64::from(state.blocks);
        let surface = state.surface.map(Surface::as_str);
        self.run("set_handover", true, |c, q| {
            let st = c.statement(q, sql::SET_HANDOVER)?;
            c.execute(
                &st,
                &[
                    &parent,
                    &count,
                    &state.session_id,
                    &surface,
                    &state.shown,
                    &state.delivery,
                    &state.shown_at,
                    &state.emitted,
                ],
            )
        })?;
        Ok(())
    }

    /// One transaction under the parent's drain lock: the rows of those
    /// turns, then `finish_drain` deletes them (each only if still the
    /// version read) and marks every key given.
    fn consume_turns(&self, parent: &str, keys: &[String]) -> Result<Drained> {
        check_parent_id(parent)?;
        let ttl = i64::try_from(LEDGER_TTL.as_secs()).unwrap_or(i64::MAX);
        let now = self.now_unix();
        let keys: Vec<String> = keys.to_vec();
        let rows = self.locked("consume_turns", parent, |c, q| {
            let st = c.statement(q, sql::TURN_ROWS)?;
            let rows: Vec<(String, i64, String, bool)> = c
                .query(&st, &[&parent, &keys])?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect();
            let children: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            let seqs: Vec<i64> = rows.iter().map(|r| r.1).collect();
            let none: Vec<String> = Vec::new();
            let no_seqs: Vec<i64> = Vec::new();
            let st = c.statement(q, sql::FINISH)?;
            c.execute(
                &st,
                &[
                    &parent, &children, &seqs, &keys, &none, &no_seqs, &none, &now, &ttl,
                ],
            )?;
            Ok(rows)
        })?;
        let mut drained = Drained::default();
        // Rows of turns consumed before are removed, not returned (as a
        // drain drops them).
        drained.records = rows
            .iter()
            .filter(|(_, _, _, consumed)| !consumed)
            .filter_map(|(_, _, line, _)| decode_line(line.as_bytes()).ok())
            .collect();
        Ok(drained)
    }
}

impl PgOutbox {
    /// How many records are pending per parent (consumed turns included:
    /// a drain would drop those), sorted by parent; for `outbox doctor`.
    pub fn pending_counts(&self) -> Result<Vec<(String, usize)>> {
        self.run("count the pending records", false, |c, q| {
            let st = c.statement(q, sql::PENDING_COUNTS)?;
            Ok(c.query(&st, &[])?
                .iter()
                .map(|r| {
                    let n: i64 = r.get(1);
                    (r.get(0), usize::try_from(n).unwrap_or(0))
                })
                .collect())
        })
    }

    /// The `ts_ns` below which a record is older than `max_age`.
    fn stale_cutoff(&self, max_age: Duration) -> i64 {
        let age = i64::try_from(max_age.as_nanos()).unwrap_or(i64::MAX);
        self.now_ns().saturating_sub(age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_by_kind_and_name() {
        assert_ne!(lock_key("parent", "a"), lock_key("parent", "b"));
        assert_ne!(lock_key("parent", "a"), lock_key("migrate", "a"));
        assert_eq!(lock_key("parent", "a"), lock_key("parent", "a"));
    }

    #[test]
    fn the_schema_parameter_is_ours_and_removed() {
        assert_eq!(
            split_schema("postgres://h/db"),
            ("postgres://h/db".into(), None)
        );
        assert_eq!(
            split_schema("postgres://h/db?outbox_schema=a_1"),
            ("postgres://h/db".into(), Some("a_1".into()))
        );
        assert_eq!(
            split_schema("postgres://h/db?connect_timeout=5&outbox_schema=s&sslmode=disable"),
            (
                "postgres://h/db?connect_timeout=5&sslmode=disable".into(),
                Some("s".into())
            )
        );
    }

    #[test]
    fn passwords_never_reach_a_message() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert!(!redact_url("host=h password=secret").contains("secret"));
        assert!(!redact_url("host=h PASSWORD=secret").contains("secret"));
        // A password in the query string, beside a user without one.
        assert!(!redact_url("postgres://u@h:x/db?password=secret").contains("secret"));
        assert!(!redact_url("postgres://h:x/db?password=secret").contains("secret"));
        assert!(!redact_url("postgres://h:x/db?pass%77ord=secret").contains("secret"));
        assert_eq!(
            redact_url("postgres://u@h:x/db?password=s&port=x"),
            "postgres://u@h:x/db?password=***&port=x"
        );
        let config: tokio_postgres::Config = "postgres://u:secret@h:6000/db".parse().unwrap();
        let text = describe(&config, "s");
        assert_eq!(text, "postgres://u@h:6000/db (schema s)");
    }

    #[test]
    fn a_bad_url_or_schema_is_an_error_naming_it() {
        let e = PgOutbox::connect("postgres://u:pw@h:notaport/db").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("parse the store URL on postgres://u:***@"),
            "{text}"
        );
        assert!(!text.contains("pw@"), "{text}");
        let e = PgOutbox::connect_schema("postgres://u@h/db", "Bad-Name").unwrap_err();
        assert!(e.to_string().contains("\"Bad-Name\""), "{e}");
    }

    #[test]
    fn tcp_user_timeout_is_milliseconds_as_in_libpq() {
        let e = PgOutbox::connect("postgres://u:pw@h/db?tcp_user_timeout=1.5").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("whole number of milliseconds"), "{text}");
        assert!(!text.contains("pw@"), "{text}");
        let e = PgOutbox::connect("postgres://u@h/db?outbox_timeout=0").unwrap_err();
        assert!(e.to_string().contains("outbox_timeout"), "{e}");
    }

    #[test]
    fn timestamps_map_to_saturated_nanoseconds() {
        let mut r = Record::default();
        assert_eq!(ts_ns(&r), None);
        r.timestamp = "1970-01-01T00:00:01.5Z".parse().unwrap();
        assert_eq!(ts_ns(&r), Some(1_500_000_000));
        r.timestamp = "9999-12-31T23:59:59Z".parse().unwrap();
        assert_eq!(ts_ns(&r), Some(i64::MAX));
    }
}

/// This crate's README, whose examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme_doctests {}
