//! The store behind the fault-injecting proxy ([`crate::proxy`]): each
//! test breaks the connection at one place of one statement and checks the
//! typed outcome the store reports against what the server really did.

use outbox::stop_hook::{StopOutcome, on_stop};
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
