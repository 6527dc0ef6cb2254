//! [`Listener`]: wake when a record is committed, without polling.
//!
//! Every commit's statement calls `pg_notify` on the schema's channel
//! (`outbox_` and the MD5 of the quoted schema name: at most 39 bytes,
//! under PostgreSQL's 63-byte limit for any schema name) with the parent
//! id as payload; PostgreSQL delivers it when the commit commits. A
//! listener holds a connection of its own on which it ran `LISTEN`.
//!
//! Its cost, measured with `examples/latency.rs` (debug build, loopback,
//! the shared 2-core VM, 2026-12-07, two runs each): one commit with
//! `synchronous_commit=off` took 0.192 and 0.193 ms with the `pg_notify`,
//! 0.192 and 0.195 ms without it; with `synchronous_commit=on` both are
//! dominated by the WAL fsync (3–6 ms). Not measured: many concurrent
//! committers, where PostgreSQL serialises the commits of notifying
//! transactions on its notification queue.

use std::time::Duration;

use outbox::{Outcome, Result, StoreErrorKind};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};

use crate::{PgOutbox, store_error};

/// A connection listening for the commits of one schema.
pub struct Listener {
    client: Client,
    describe: String,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("store", &self.describe)
            .finish_non_exhaustive()
    }
}

impl PgOutbox {
    /// Opens a connection of its own and listens on this schema's channel.
    /// Commits made after this returns wake [`Listener::wait`]; those made
    /// before do not (ask [`has_pending`](outbox::Store::has_pending) after
    /// listening, not before, to miss none).
    pub fn listen(&self) -> Result<Listener> {
        let fail = |op: &'static str, e: postgres::Error| {
            store_error(
                op,
                self.inner.describe.clone(),
                StoreErrorKind::Connect,
                Outcome::NotApplied,
                e,
            )
        };
        let mut client = self
            .inner
            .config
            .connect(NoTls)
            .map_err(|e| fail("listen: connect", e))?;
        let row = client
            .query_one("SELECT 'outbox_' || md5($1)", &[&self.inner.quoted])
            .map_err(|e| fail("listen: name the channel", e))?;
        let channel: String = row.get(0);
        // The channel is `outbox_` and 32 hex digits: no quoting needed.
        client
            .batch_execute(&format!("LISTEN {channel}"))
            .map_err(|e| fail("listen", e))?;
        Ok(Listener {
            client,
            describe: self.inner.describe.clone(),
        })
    }
}

impl Listener {
    /// Waits for the next commit (at most `timeout`, or without limit for
    /// `None`) and returns its parent id; `Ok(None)` when the time ran out.
    /// An error means the connection is lost: listen again, then ask what is
    /// pending (commits in between woke nobody).
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<Option<String>> {
        let mut notifications = self.client.notifications();
        let next = match timeout {
            Some(timeout) => notifications.timeout_iter(timeout).next(),
            None => notifications.blocking_iter().next(),
        };
        let lost = |e: postgres::Error| {
            store_error(
                "listen: wait for a commit",
                self.describe.clone(),
                StoreErrorKind::Connect,
                Outcome::NotApplied,
                e,
            )
        };
        match next {
            Ok(Some(n)) => Ok(Some(n.payload().to_owned())),
            Ok(None) if timeout.is_some() => Ok(None),
            Ok(None) => Err(store_error(
                "listen: wait for a commit",
                self.describe.clone(),
                StoreErrorKind::Connect,
                Outcome::NotApplied,
                "the connection closed",
            )),
            Err(e) => Err(lost(e)),
        }
    }
}
