//! The store behind the fault-injecting proxy ([`crate::proxy`]): each
//! test breaks the connection at one place of one statement and checks the
//! typed outcome the store reports against what the server really did.

use outbox::stop_hook::{StopOutcome, on_stop_consume_on_print as on_stop};
use outbox::{DrainWithError, Error, Outcome, Record, Store};
use outbox_postgres::PgOutbox;

use crate::proxy::{Action, Fault, Proxy};
use crate::util::Pg;

const PARENT: &str = "parent-net";

/// A store on a fresh schema reached through a new proxy, and a direct
/// store on the same schema (to see what the server holds).
pub fn through_proxy(pg: &Pg) -> (Proxy, PgOutbox, PgOutbox) {
    let schema = pg.fresh_schema();
    let direct = PgOutbox::connect_schema(&pg.url, &schema).expect("direct store");
    let proxy = Proxy::start(&pg.url);
    let store = PgOutbox::connect_schema(&proxy.url(&pg.url), &schema).expect("proxied store");
    (proxy, store, direct)
}

fn store_error<E: std::fmt::Debug>(e: DrainWithError<E>) -> Box<outbox::StoreError> {
    match e {
        DrainWithError::Outbox(Error::Store(s)) => s,
        other => panic!("expected a store error, got {other:?}"),
    }
}

fn children(records: &[Record]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r.child_session_id.as_str())
        .collect()
}

/// The server commits the drain, its answer is lost: the drain asks the
/// server what became of its transaction and returns the records it
/// consumed, as a success (issue 20, item 15).
#[test]
fn a_lost_commit_answer_is_resolved_to_consumed() {
    let Some(pg) = Pg::from_env("a_lost_commit_answer_is_resolved_to_consumed") else {
        return;
    };
    let (proxy, store, direct) = through_proxy(&pg);
    direct
        .commit(PARENT, Record::finished("a", "success"))
        .unwrap();
    direct
        .commit(PARENT, Record::finished("b", "success"))
        .unwrap();
    proxy.arm(Fault::on("COMMIT", Action::DropAnswer));
    let drained = store
        .drain_with(PARENT, |_| Ok::<(), std::io::Error>(()))
        .expect("the server committed: the drain succeeded");
    assert_eq!(proxy.fired(), 1);
    assert_eq!(children(&drained.records), ["a", "b"]);
    assert!(direct.peek(PARENT).unwrap().is_empty(), "consumed");
}

/// The `COMMIT` never reaches the server: the drain is NotApplied and the
/// records stay pending.
#[test]
fn a_commit_cut_before_sending_is_not_applied() {
    let Some(pg) = Pg::from_env("a_commit_cut_before_sending_is_not_applied") else {
        return;
    };
    let (proxy, store, direct) = through_proxy(&pg);
    direct
        .commit(PARENT, Record::finished("a", "success"))
        .unwrap();
    proxy.arm(Fault::on("COMMIT", Action::CutBefore));
    let e = store_error(
        store
            .drain_with(PARENT, |_| Ok::<(), std::io::Error>(()))
            .unwrap_err(),
    );
    assert_eq!(proxy.fired(), 1);
    assert_eq!(e.outcome, Outcome::NotApplied, "{e}");
    assert!(e.records.is_empty());
    assert_eq!(children(&direct.peek(PARENT).unwrap()), ["a"]);
}

/// A partition swallows the `COMMIT`: the server still holds the drain's
/// transaction open (and the parent's lock). The drain ends that session
/// from a new connection, learns that nothing committed, and says so:
/// NotApplied, the records pending, the parent free for the next drain.
#[test]
fn a_commit_lost_in_a_partition_is_resolved_by_ending_the_session() {
    let Some(pg) = Pg::from_env("a_commit_lost_in_a_partition_is_resolved_by_ending_the_session")
    else {
        return;
    };
    let (proxy, store, direct) = through_proxy(&pg);
    direct
        .commit(PARENT, Record::finished("a", "success"))
        .unwrap();
    proxy.arm(Fault::on("COMMIT", Action::Partition));
    let e = store_error(
        store
            .drain_with(PARENT, |_| Ok::<(), std::io::Error>(()))
            .unwrap_err(),
    );
    assert_eq!(proxy.fired(), 1);
    assert_eq!(e.outcome, Outcome::NotApplied, "{e}");
    // The lock is free: a direct drain does not wait for the partition.
    let drained = direct.drain(PARENT).unwrap();
    assert_eq!(children(&drained.records), ["a"]);
    drop(proxy);
}

/// The Stop hook's drain loses its `COMMIT` answer after the block was
/// printed: the hook still reports the block (the records were consumed),
/// never an error that makes Claude Code ignore what it printed.
#[test]
fn the_stop_hook_keeps_its_block_when_the_commit_answer_is_lost() {
    let Some(pg) = Pg::from_env("the_stop_hook_keeps_its_block_when_the_commit_answer_is_lost")
    else {
        return;
    };
    let (proxy, store, direct) = through_proxy(&pg);
    direct
        .commit(PARENT, Record::finished("a", "success"))
        .unwrap();
    proxy.arm(Fault::on("COMMIT", Action::DropAnswer));
    let mut printed = String::new();
    let outcome = on_stop(&store, PARENT, false, |json| {
        printed.push_str(json);
        Ok::<(), std::io::Error>(())
    })
    .expect("the block stands");
    assert_eq!(proxy.fired(), 1);
    assert!(
        matches!(&outcome, StopOutcome::Blocked { records, .. } if children(records) == ["a"]),
        "{outcome:?}"
    );
    assert!(printed.contains("\"block\""));
    assert!(direct.peek(PARENT).unwrap().is_empty());
}

/// Waits until no session named `app` is connected (the server ended it),
/// asking the server every 20 ms, for at most 30 s.
fn wait_until_gone(pg: &Pg, app: &str) {
    let mut client = pg.client();
    for _ in 0..1500 {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .unwrap()
            .get(0);
        if n == 0 {
            return;
        }
        client.execute("SELECT pg_sleep(0.02)", &[]).unwrap();
    }
    panic!("session {app} still connected after 30 s");
}

/// The server closed an idle pooled session (`idle_session_timeout`): the
/// next commit's statement never reached it. The commit is made on a new
/// connection, or reported NotApplied, never Unknown (issue 20, item 16).
#[test]
fn a_commit_after_idle_session_timeout_is_not_unknown() {
    let Some(pg) = Pg::from_env("a_commit_after_idle_session_timeout_is_not_unknown") else {
        return;
    };
    let schema = pg.fresh_schema();
    let app = format!("idle-{schema}");
    let url = crate::util::with_param(
        &crate::util::with_param(&pg.url, &format!("application_name={app}")),
        "options=-c%20idle_session_timeout%3D300",
    );
    let store = PgOutbox::connect_schema(&url, &schema).unwrap();
    store
        .commit(PARENT, Record::finished("a", "success"))
        .unwrap();
    wait_until_gone(&pg, &app);
    match store.commit(PARENT, Record::finished("b", "success")) {
        Ok(_) => {}
        Err(Error::Store(e)) => assert_eq!(e.outcome, Outcome::NotApplied, "{e}"),
        Err(e) => panic!("{e}"),
    }
}

/// A pooled connection cut while idle (a network drop between two
/// commits): the next commit never sent its statement on it, so it is made
/// on a new connection or reported NotApplied, never Unknown.
#[test]
fn a_commit_on_a_pooled_connection_cut_while_idle_is_not_unknown() {
    let Some(pg) = Pg::from_env("a_commit_on_a_pooled_connection_cut_while_idle_is_not_unknown")
    else {
        return;
    };
    let (proxy, store, direct) = through_proxy(&pg);
    store
        .commit(PARENT, Record::finished("a", "success"))
        .unwrap();
    proxy.release();
    match store.commit(PARENT, Record::finished("b", "success")) {
        Ok(_) => assert_eq!(children(&direct.peek(PARENT).unwrap()), ["a", "b"]),
        Err(Error::Store(e)) => assert_eq!(e.outcome, Outcome::NotApplied, "{e}"),
        Err(e) => panic!("{e}"),
    }
}

/// The commit's statement is cut before any byte of it was forwarded on a
/// connection that was alive when it was taken: the store cannot tell
/// that from a cut after, and says Unknown; what it must never do is say
/// NotApplied for a commit the server made.
#[test]
fn a_commit_whose_answer_is_lost_is_never_not_applied() {
    let Some(pg) = Pg::from_env("a_commit_whose_answer_is_lost_is_never_not_applied") else {
        return;
    };
    let (proxy, store, direct) = through_proxy(&pg);
    proxy.arm(Fault::on("WITH up AS", Action::DropAnswer));
    let e = store
        .commit(PARENT, Record::finished("a", "success"))
        .unwrap_err();
    assert_eq!(proxy.fired(), 1);
    assert!(e.outcome_unknown(), "{e}");
    assert_eq!(
        children(&direct.peek(PARENT).unwrap()),
        ["a"],
        "it was made"
    );
}

/// A connection that stalls without closing (the statement forwarded, no
/// answer ever): the commit fails after the client-side deadline, as a
/// timeout whose outcome is unknown (the server may have made it), instead
/// of hanging forever (issue 20, item 18).
#[test]
fn a_stalled_commit_times_out_as_unknown() {
    let Some(pg) = Pg::from_env("a_stalled_commit_times_out_as_unknown") else {
        return;
    };
    let (proxy, store, _direct) = through_proxy(&pg);
    let store = store.with_timeout(std::time::Duration::from_millis(500));
    proxy.arm(Fault::on("WITH up AS", Action::Stall));
    let e = store
        .commit(PARENT, Record::finished("a", "success"))
        .unwrap_err();
    assert_eq!(proxy.fired(), 1);
    match &e {
        Error::Store(s) => {
            assert_eq!(s.kind, outbox::StoreErrorKind::Timeout, "{e}");
            assert_eq!(s.outcome, Outcome::Unknown, "{e}");
        }
        other => panic!("{other}"),
    }
    // The handle goes on working on a new connection.
    store
        .commit(PARENT, Record::finished("b", "success"))
        .unwrap();
}

/// A drain whose connection stalls mid-drain (here: its last statement,
/// after the delivery) fails after the deadline with nothing marked, and
/// does not keep the parent locked: the stalled session is ended from a
/// new connection, so the next drainer (another host) gets the records
/// at once, not after the server's TCP keepalive gives up.
#[test]
fn a_stalled_drain_times_out_and_frees_the_parent() {
    let Some(pg) = Pg::from_env("a_stalled_drain_times_out_and_frees_the_parent") else {
        return;
    };
    let (proxy, store, direct) = through_proxy(&pg);
    let store = store.with_timeout(std::time::Duration::from_millis(500));
    direct
        .commit(PARENT, Record::finished("a", "success"))
        .unwrap();
    proxy.arm(Fault::containing("finish_drain", Action::Stall));
    let e = store_error(
        store
            .drain_with(PARENT, |_| Ok::<(), std::io::Error>(()))
            .unwrap_err(),
    );
    assert_eq!(proxy.fired(), 1);
    assert_eq!(e.kind, outbox::StoreErrorKind::Timeout, "{e}");
    assert_eq!(e.outcome, Outcome::NotApplied, "{e}");
    let drained = direct
        .with_timeout(std::time::Duration::from_secs(10))
        .drain(PARENT)
        .expect("the parent is free");
    assert_eq!(children(&drained.records), ["a"]);
}

/// Whether the session named `app` is encrypted.
fn encrypted(pg: &Pg, app: &str) -> bool {
    pg.client()
        .query_one(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = $1",
            &[&app],
        )
        .unwrap()
        .get::<_, Option<bool>>(0)
        .expect("the session is connected")
}

/// `sslmode` as libpq means it: `disable` never encrypts, `prefer` does
/// when the server offers TLS, `require` does or refuses to connect, with
/// an error that says so, never "no TLS implementation configured" (issue
/// 20, item 18).
#[test]
fn sslmode_disable_prefer_and_require_do_what_they_say() {
    let Some(pg) = Pg::from_env("sslmode_disable_prefer_and_require_do_what_they_say") else {
        return;
    };
    let tls_on: bool = pg
        .client()
        .query_one("SELECT current_setting('ssl') = 'on'", &[])
        .unwrap()
        .get(0);
    for (mode, want) in [("disable", false), ("prefer", tls_on), ("require", true)] {
        if mode == "require" && !tls_on {
            continue;
        }
        let schema = pg.fresh_schema();
        let app = format!("ssl-{schema}");
        let url = crate::util::with_param(
            &crate::util::with_param(&pg.url, &format!("sslmode={mode}")),
            &format!("application_name={app}"),
        );
        let store = PgOutbox::connect_schema(&url, &schema)
            .unwrap_or_else(|e| panic!("sslmode={mode}: {e}"));
        store
            .commit(PARENT, Record::finished("a", "success"))
            .unwrap();
        assert_eq!(encrypted(&pg, &app), want, "sslmode={mode}");
    }
    // A server that declines TLS: a one-line fake that answers the TLS
    // request with 'N'.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let decline = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut request = [0u8; 8];
        s.read_exact(&mut request).unwrap();
        s.write_all(b"N").unwrap();
    });
    let e = PgOutbox::connect(&format!(
        "postgres://postgres@127.0.0.1:{port}/test?sslmode=require"
    ))
    .unwrap_err();
    decline.join().unwrap();
    let text = e.to_string();
    assert!(text.contains("TLS"), "{text}");
    assert!(!text.contains("no TLS implementation configured"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{port}")),
        "names the store: {text}"
    );
}
