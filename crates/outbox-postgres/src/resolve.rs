//! The fate of a drain whose `COMMIT` answer was lost: the drain's
//! transaction id is known before its `COMMIT` is sent, so a new connection
//! can ask the server whether it committed (`txid_status`), and end it
//! first when the old session still holds it open (the server has not
//! seen the `COMMIT`, or not yet noticed that the client is gone).

use crate::PgOutbox;
use crate::conn::{Conn, PgError, Session};

/// What became of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// It committed.
    Committed,
    /// It was rolled back, or never committed (and now never will).
    Aborted,
    /// The server could not be asked, or did not say.
    Unknown,
}

/// How many times the status is asked while the transaction is still in
/// progress after its session was ended (the backend exits
/// asynchronously), 50 ms apart on the server.
const POLLS: usize = 100;

impl PgOutbox {
    /// Ends `session` from a new connection, best effort, if it holds the
    /// advisory lock `key` (a parent's): a session whose round trip timed
    /// out may be alive on the server, which would keep its transaction,
    /// and the parent's lock, open until its TCP keepalive gives up. The
    /// lock is the proof that the session is this drain's: behind a
    /// transaction pooler the pid seen at connect time may be another
    /// client's, which is never ended.
    pub(crate) fn end_session(&self, session: &Session, key: i64) {
        // A 64-bit advisory key shows in pg_locks as classid (high half),
        // objid (low half), objsubid 1.
        let high = key >> 32;
        let low = key & 0xFFFF_FFFF;
        if let Ok(mut conn) = self.fresh("end a stalled session") {
            let ended = conn.execute_sql(
                "SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a \
                 JOIN pg_locks l ON l.pid = a.pid \
                 WHERE a.pid = $1::int4 AND a.backend_start::text = $2 \
                   AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
                   AND l.classid = ($3::bigint & 4294967295)::oid \
                   AND l.objid = $4::bigint::oid",
                &[&session.pid, &session.started, &high, &low],
            );
            if ended.is_ok() {
                self.give_back(conn);
            }
        }
    }

    /// Whether transaction `xid` (from `txid_current()`), begun by the
    /// backend `pid`, committed. Ends that backend when it still runs the
    /// transaction (only while it runs that one), so the answer is final.
    pub(crate) fn fate(&self, xid: i64, pid: i32) -> Fate {
        let Ok(mut conn) = self.fresh("drain: ask whether the COMMIT was applied") else {
            return Fate::Unknown;
        };
        let fate = ask(&mut conn, xid, pid).unwrap_or(Fate::Unknown);
        self.give_back(conn);
        fate
    }
}

fn ask(client: &mut Conn, xid: i64, pid: i32) -> Result<Fate, PgError> {
    let mut terminated = false;
    for _ in 0..POLLS {
        let status: Option<String> = client
            .query_one_sql("SELECT txid_status($1)", &[&xid])?
            .get(0);
        match status.as_deref() {
            Some("committed") => return Ok(Fate::Committed),
            Some("aborted") => return Ok(Fate::Aborted),
            Some("in progress") => {}
            _ => return Ok(Fate::Unknown),
        }
        if !terminated {
            // The xid column is 32 bits; txid_current() adds the epoch.
            client.execute_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE pid = $1::int4 AND backend_xid = (($2::bigint % 4294967296)::text)::xid",
                &[&pid, &xid],
            )?;
            terminated = true;
        } else {
            client.execute_sql("SELECT pg_sleep(0.05)", &[])?;
        }
    }
    Ok(Fate::Unknown)
}
