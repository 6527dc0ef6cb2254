//! The tables and the one function of the PostgreSQL store, and their
//! versioned, idempotent migration.
//!
//! Every object lives in one schema (`outbox` by default; each test uses
//! its own). `schema_version` holds one row, the version applied;
//! [`migrate`] applies the missing steps of [`MIGRATIONS`] in one
//! transaction under a transaction-level advisory lock, so processes that
//! start at once apply each step once and wait for each other, and a step
//! that fails applies nothing.

use crate::conn::{Conn, PgError};

use crate::lock_key;

/// The schema version this code reads and writes.
pub const VERSION: i32 = 5;

/// The steps, in order: step `n` (1-based) moves the schema from version
/// `n - 1` to `n`. `{s}` is the quoted schema name. Never edit a step that
/// has shipped: add one.
const MIGRATIONS: [&str; VERSION as usize] = [
    r#"
-- The pending records: one row per (parent, child), the last committed
-- (a commit replaces the child's row under its row lock, so the row is
-- the last commit in commit order). `seq` is assigned from a sequence under
-- that lock: children are delivered in the order of their last commits, and
-- a drain deletes a row only if its `seq` is still the one it delivered.
CREATE SEQUENCE {s}.commit_seq AS bigint;
CREATE TABLE {s}.pending (
    parent      text   NOT NULL,
    child       text   NOT NULL,
    seq         bigint NOT NULL,
    turn_key    text   NOT NULL,
    from_status text   NOT NULL,
    to_status   text   NOT NULL,
    -- The record's timestamp in Unix nanoseconds (saturated), NULL for the
    -- zero time (no known age: sweeps keep it).
    ts_ns       bigint,
    -- The parent's advisory-lock key (drains and sweeps take it).
    lock_key    bigint NOT NULL,
    -- The record's JSON line without its newline, byte for byte what the
    -- file outbox writes.
    line        text   NOT NULL,
    PRIMARY KEY (parent, child)
);
CREATE INDEX pending_parent_seq ON {s}.pending (parent, seq);
-- The consumed ledger: turn key -> Unix second consumed.
CREATE TABLE {s}.consumed (
    parent      text   NOT NULL,
    turn_key    text   NOT NULL,
    consumed_at bigint NOT NULL,
    PRIMARY KEY (parent, turn_key)
);
-- The Stop-hook loop guard.
CREATE TABLE {s}.stop_blocks (
    parent text    PRIMARY KEY,
    count  bigint  NOT NULL
);
-- Rows whose line could not be read back as a record, set aside by a drain.
CREATE TABLE {s}.quarantine (
    parent text   NOT NULL,
    child  text   NOT NULL,
    seq    bigint NOT NULL,
    line   text   NOT NULL,
    reason text   NOT NULL,
    at     bigint NOT NULL
);
-- The end of a drain, in the drain's transaction, in one round trip: set
-- the unreadable rows aside, delete the rows handled (only if still the
-- version handled), and when turns are marked, prune the ledger with the
-- file outbox's clock-step rules and then mark them.
CREATE FUNCTION {s}.finish_drain(
    p_parent text, p_children text[], p_seqs bigint[], p_keys text[],
    p_bad_children text[], p_bad_seqs bigint[], p_bad_reasons text[],
    p_now bigint, p_ttl bigint
) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    newest bigint;
BEGIN
    INSERT INTO {s}.quarantine (parent, child, seq, line, reason, at)
        SELECT p.parent, p.child, p.seq, p.line, b.reason, p_now
        FROM {s}.pending p
        JOIN unnest(p_bad_children, p_bad_seqs, p_bad_reasons) AS b(child, seq, reason)
          ON p.child = b.child AND p.seq = b.seq
        WHERE p.parent = p_parent;
    DELETE FROM {s}.pending p
        USING unnest(p_children || p_bad_children, p_seqs || p_bad_seqs) AS h(child, seq)
        WHERE p.parent = p_parent AND p.child = h.child AND p.seq = h.seq;
    IF cardinality(p_keys) > 0 THEN
        -- Stamped in the future (a clock set back): restamp now.
        UPDATE {s}.consumed SET consumed_at = p_now
            WHERE parent = p_parent AND consumed_at > p_now;
        SELECT max(consumed_at) INTO newest FROM {s}.consumed WHERE parent = p_parent;
        IF newest IS NOT NULL AND newest < p_now - p_ttl THEN
            -- Even the newest entry is older than the TTL: a clock stepped
            -- forward, or a parent idle for a whole TTL. Shift, never empty.
            UPDATE {s}.consumed SET consumed_at = consumed_at + (p_now - newest)
                WHERE parent = p_parent;
        ELSE
            DELETE FROM {s}.consumed
                WHERE parent = p_parent AND consumed_at < p_now - p_ttl;
        END IF;
        INSERT INTO {s}.consumed (parent, turn_key, consumed_at)
            SELECT DISTINCT p_parent, k, p_now FROM unnest(p_keys) AS k
            ON CONFLICT (parent, turn_key) DO UPDATE SET consumed_at = excluded.consumed_at;
    END IF;
END
$fn$;
"#,
    r#"
-- Children are delivered in the order they were first seen among the
-- pending records (the file outbox's and agent-deck's order), not in the
-- order of their last commits: `first_seq` keeps the `seq` of the commit
-- that created the row, and NULL means "the row's own seq" (every row
-- written before this step, and every row a commit inserts).
ALTER TABLE {s}.pending ADD COLUMN first_seq bigint;
"#,
    r#"
-- A child re-committed while a drain delivered its earlier record starts a
-- new place: the drain consumes the record it delivered, so the child's
-- first commit among its pending records is now its re-commit (the file
-- outbox's order). The row's place becomes its own `seq` (first_seq NULL):
-- the re-commit's, exactly when it was the only one during the delivery,
-- else the latest's.
CREATE OR REPLACE FUNCTION {s}.finish_drain(
    p_parent text, p_children text[], p_seqs bigint[], p_keys text[],
    p_bad_children text[], p_bad_seqs bigint[], p_bad_reasons text[],
    p_now bigint, p_ttl bigint
) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    newest bigint;
BEGIN
    INSERT INTO {s}.quarantine (parent, child, seq, line, reason, at)
        SELECT p.parent, p.child, p.seq, p.line, b.reason, p_now
        FROM {s}.pending p
        JOIN unnest(p_bad_children, p_bad_seqs, p_bad_reasons) AS b(child, seq, reason)
          ON p.child = b.child AND p.seq = b.seq
        WHERE p.parent = p_parent;
    DELETE FROM {s}.pending p
        USING unnest(p_children || p_bad_children, p_seqs || p_bad_seqs) AS h(child, seq)
        WHERE p.parent = p_parent AND p.child = h.child AND p.seq = h.seq;
    UPDATE {s}.pending p SET first_seq = NULL
        FROM unnest(p_children, p_seqs) AS h(child, seq)
        WHERE p.parent = p_parent AND p.child = h.child AND p.seq <> h.seq
          AND p.first_seq IS NOT NULL;
    IF cardinality(p_keys) > 0 THEN
        -- Stamped in the future (a clock set back): restamp now.
        UPDATE {s}.consumed SET consumed_at = p_now
            WHERE parent = p_parent AND consumed_at > p_now;
        SELECT max(consumed_at) INTO newest FROM {s}.consumed WHERE parent = p_parent;
        IF newest IS NOT NULL AND newest < p_now - p_ttl THEN
            -- Even the newest entry is older than the TTL: a clock stepped
            -- forward, or a parent idle for a whole TTL. Shift, never empty.
            UPDATE {s}.consumed SET consumed_at = consumed_at + (p_now - newest)
                WHERE parent = p_parent;
        ELSE
            DELETE FROM {s}.consumed
                WHERE parent = p_parent AND consumed_at < p_now - p_ttl;
        END IF;
        INSERT INTO {s}.consumed (parent, turn_key, consumed_at)
            SELECT DISTINCT p_parent, k, p_now FROM unnest(p_keys) AS k
            ON CONFLICT (parent, turn_key) DO UPDATE SET consumed_at = excluded.consumed_at;
    END IF;
END
$fn$;
"#,
    r#"
-- Step 3 placed a child re-committed during a delivery at its latest
-- commit; its place is its first commit after the delivered one. `recent`
-- keeps the seqs of the last 8 versions a commit superseded (the commit
-- appends the old seq), so the drain's end finds the first version after
-- the one it delivered: exact unless a child was re-committed more than 8
-- times during one delivery (then the oldest version still known).
ALTER TABLE {s}.pending ADD COLUMN recent bigint[];
CREATE OR REPLACE FUNCTION {s}.finish_drain(
    p_parent text, p_children text[], p_seqs bigint[], p_keys text[],
    p_bad_children text[], p_bad_seqs bigint[], p_bad_reasons text[],
    p_now bigint, p_ttl bigint
) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    newest bigint;
BEGIN
    INSERT INTO {s}.quarantine (parent, child, seq, line, reason, at)
        SELECT p.parent, p.child, p.seq, p.line, b.reason, p_now
        FROM {s}.pending p
        JOIN unnest(p_bad_children, p_bad_seqs, p_bad_reasons) AS b(child, seq, reason)
          ON p.child = b.child AND p.seq = b.seq
        WHERE p.parent = p_parent;
    DELETE FROM {s}.pending p
        USING unnest(p_children || p_bad_children, p_seqs || p_bad_seqs) AS h(child, seq)
        WHERE p.parent = p_parent AND p.child = h.child AND p.seq = h.seq;
    UPDATE {s}.pending p SET
            first_seq = (SELECT min(x) FROM unnest(coalesce(p.recent, '{}') || p.seq) AS x
                         WHERE x > h.seq),
            recent = NULL
        FROM unnest(p_children, p_seqs) AS h(child, seq)
        WHERE p.parent = p_parent AND p.child = h.child AND p.seq <> h.seq;
    IF cardinality(p_keys) > 0 THEN
        -- Stamped in the future (a clock set back): restamp now.
        UPDATE {s}.consumed SET consumed_at = p_now
            WHERE parent = p_parent AND consumed_at > p_now;
        SELECT max(consumed_at) INTO newest FROM {s}.consumed WHERE parent = p_parent;
        IF newest IS NOT NULL AND newest < p_now - p_ttl THEN
            -- Even the newest entry is older than the TTL: a clock stepped
            -- forward, or a parent idle for a whole TTL. Shift, never empty.
            UPDATE {s}.consumed SET consumed_at = consumed_at + (p_now - newest)
                WHERE parent = p_parent;
        ELSE
            DELETE FROM {s}.consumed
                WHERE parent = p_parent AND consumed_at < p_now - p_ttl;
        END IF;
        INSERT INTO {s}.consumed (parent, turn_key, consumed_at)
            SELECT DISTINCT p_parent, k, p_now FROM unnest(p_keys) AS k
            ON CONFLICT (parent, turn_key) DO UPDATE SET consumed_at = excluded.consumed_at;
    END IF;
END
$fn$;
"#,
    r#"
-- The Stop-hook guard becomes the parent's handover state (confirmed
-- delivery, `outbox::handover`): besides the consecutive-block counter,
-- the session the records were shown to, where (`surface`: stop_block,
-- prompt_context, session_context, rewake; NULL when nothing awaits
-- confirmation), the turn keys shown, a rewake's delivery id, when, and
-- whether the delivery was emitted.
ALTER TABLE {s}.stop_blocks
    ADD COLUMN session_id text   NOT NULL DEFAULT '',
    ADD COLUMN surface    text,
    ADD COLUMN shown      text[] NOT NULL DEFAULT '{}',
    ADD COLUMN delivery   text   NOT NULL DEFAULT '',
    ADD COLUMN shown_at   bigint NOT NULL DEFAULT 0,
    ADD COLUMN emitted    boolean NOT NULL DEFAULT false;
"#,
];

/// Quotes a schema name (checked by [`check_schema_name`]) as an identifier.
pub fn quoted(schema: &str) -> String {
    format!("\"{schema}\"")
}

/// Whether `name` is a schema name this crate uses: 1 to 63 bytes of
/// lowercase ASCII letters, digits and `_`, not starting with a digit (no
/// quoting surprises, no case folding).
pub fn check_schema_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 bytes long");
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("must not start with a digit");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err("may hold only lowercase ASCII letters, digits and _");
    }
    Ok(())
}

/// What [`migrate`] found or did.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Migrated {
    /// The schema was at [`VERSION`] already.
    Current,
    /// The schema was migrated from this version (0: created).
    From(i32),
}

/// Why a migration failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum MigrateError {
    /// The server refused or the connection failed.
    Db(PgError),
    /// The schema is at a version this code does not know.
    TooNew(i32),
}

impl From<PgError> for MigrateError {
    fn from(e: PgError) -> Self {
        Self::Db(e)
    }
}

/// Brings `schema` to [`VERSION`]: one read when it is current; else, in
/// one transaction under the schema's migration lock, creates what is
/// missing and applies the missing steps.
pub fn migrate(client: &mut Conn, schema: &str) -> Result<Migrated, MigrateError> {
    let s = quoted(schema);
    // Fast path: the version table exists and says current (one round trip
    // when it does not exist, two when it does).
    let table = format!("{s}.schema_version");
    let exists: bool = client
        .query_one_sql("SELECT to_regclass($1) IS NOT NULL", &[&table])?
        .get(0);
    if exists {
        let v: i32 = client
            .query_opt_sql(&format!("SELECT version FROM {table}"), &[])?
            .map_or(0, |r| r.get(0));
        if v == VERSION {
            return Ok(Migrated::Current);
        }
        if v > VERSION {
            return Err(MigrateError::TooNew(v));
        }
    }
    // READ COMMITTED whatever the server's default, so the version read
    // after the lock is the one the previous holder committed.
    client.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED")?;
    let result = migrate_locked(client, schema, &s);
    let end = if matches!(result, Ok(Migrated::From(_))) {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    match (result, client.batch_execute(end)) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e.into()),
        (Ok(m), Ok(())) => Ok(m),
    }
}

/// The migration's steps inside its transaction.
fn migrate_locked(client: &mut Conn, schema: &str, s: &str) -> Result<Migrated, MigrateError> {
    client.execute_sql(
        "SELECT pg_advisory_xact_lock($1)",
        &[&lock_key("migrate", schema)],
    )?;
    client.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.schema_version (
             one     boolean PRIMARY KEY DEFAULT true CHECK (one),
             version integer NOT NULL
         );"
    ))?;
    let from: i32 = client
        .query_opt_sql(&format!("SELECT version FROM {s}.schema_version"), &[])?
        .map_or(0, |r| r.get(0));
    if from > VERSION {
        return Err(MigrateError::TooNew(from));
    }
    if from == VERSION {
        return Ok(Migrated::Current);
    }
    for step in &MIGRATIONS[usize::try_from(from).unwrap_or(0)..] {
        client.batch_execute(&step.replace("{s}", s))?;
    }
    client.execute_sql(
        &format!(
            "INSERT INTO {s}.schema_version (version) VALUES ($1) \
             ON CONFLICT (one) DO UPDATE SET version = excluded.version"
        ),
        &[&VERSION],
    )?;
    Ok(Migrated::From(from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(check_schema_name("outbox").is_ok());
        assert!(check_schema_name("t_123").is_ok());
        for bad in ["", "1abc", "Outbox", "a-b", "a\"b", &"x".repeat(64)] {
            assert!(check_schema_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_step_names_only_the_schema_placeholder() {
        for step in MIGRATIONS {
            assert!(step.contains("{s}."));
            assert!(!step.contains("outbox."), "steps name no fixed schema");
        }
    }
}
