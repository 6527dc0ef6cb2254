//! Checks of delivery order and of what sweeps act on, which both stores
//! must agree on (issue 20, items 13 and 14).
//!
//! **Order.** A drain delivers one record per child in the order the
//! children were first seen: a child's position is the first of its
//! commits among its pending records since it was last consumed. A
//! re-commit keeps the position; a consumption (a drain that delivered the
//! child) ends it, so a commit made while a drain delivers the earlier
//! version starts a new one; a sweep that drops other children moves
//! nobody.
//!
//! **Sweeps.** `sweep_transition` and `sweep_stale` act on every pending
//! record, whether or not an earlier drain claimed it and failed to deliver
//! it; only what a drain in progress is delivering is out of their reach
//! (they wait for it).

use outbox::{Record, Store, Timestamp};

use crate::checks::PARENT;
use crate::model::children;
use crate::{Harness, T0, TestClock};

/// A completion of `child` without a timestamp: the commit stamps the
/// test clock's "now", so only records made old on purpose are stale.
fn finished(child: &str, summary: &str) -> Record {
    transition(crate::checks::finished(child, summary))
}

fn transition(mut r: Record) -> Record {
    r.timestamp = Timestamp::default();
    r
}

fn ok(_: &[Record]) -> Result<(), std::convert::Infallible> {
    Ok(())
}

/// A child re-committed while a drain delivers its earlier version is
/// pending again, and placed by that new commit: after children first
/// seen before it, not at the delivered version's old place.
pub fn a_recommit_during_delivery_starts_a_new_position(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    ob.commit(PARENT, finished("a", "a1")).unwrap();
    let drained = ob
        .drain_with(PARENT, |records| {
            assert_eq!(children(records), ["a"]);
            ob.commit(PARENT, finished("b", "b1")).unwrap();
            ob.commit(PARENT, finished("a", "a2")).unwrap();
            ob.commit(PARENT, finished("c", "c1")).unwrap();
            // A second re-commit keeps the place the first one took.
            ob.commit(PARENT, finished("a", "a3")).unwrap();
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap();
    assert_eq!(children(&drained.records), ["a"]);
    assert_eq!(
        children(&ob.peek(PARENT).unwrap()),
        ["b", "a", "c"],
        "a's new record was committed after b's"
    );
    let drained = ob.drain(PARENT).unwrap();
    assert_eq!(children(&drained.records), ["b", "a", "c"]);
    assert_eq!(drained.records[1].done_summary, "a3", "last wins");
}

/// A re-commit keeps a pending child's place; sweeping another child away
/// (by transition or by age) moves nobody.
pub fn sweeps_keep_first_seen_order(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    let mut old = Record::transition("old", "running", "waiting");
    old.timestamp = Timestamp::from_unix(T0 - 8 * 24 * 3600, 0, 0).unwrap();
    ob.commit(PARENT, finished("a", "a1")).unwrap();
    ob.commit(
        PARENT,
        transition(Record::transition("t", "running", "error")),
    )
    .unwrap();
    ob.commit(PARENT, old).unwrap();
    ob.commit(PARENT, finished("b", "b1")).unwrap();
    ob.commit(PARENT, finished("a", "a2")).unwrap();
    ob.commit(PARENT, finished("c", "c1")).unwrap();
    assert_eq!(
        children(&ob.peek(PARENT).unwrap()),
        ["a", "t", "old", "b", "c"]
    );
    assert_eq!(
        ob.sweep_transition(PARENT, "t", "running", "error")
            .unwrap(),
        1
    );
    assert_eq!(
        children(&ob.peek(PARENT).unwrap()),
        ["a", "old", "b", "c"],
        "after sweep_transition"
    );
    assert_eq!(
        ob.sweep_stale(PARENT, outbox::DEFAULT_STALE_AGE).unwrap(),
        1
    );
    assert_eq!(
        children(&ob.peek(PARENT).unwrap()),
        ["a", "b", "c"],
        "after sweep_stale"
    );
    let drained = ob.drain(PARENT).unwrap();
    assert_eq!(children(&drained.records), ["a", "b", "c"]);
    assert_eq!(drained.records[0].done_summary, "a2", "last wins");
}

/// Records an earlier drain claimed and failed to deliver are pending like
/// any other: `sweep_transition` and `sweep_stale` drop them, and a
/// re-commit after the failure supersedes them in place.
pub fn sweeps_act_on_records_a_failed_delivery_left(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    let mut old = Record::transition("old", "running", "waiting");
    old.timestamp = Timestamp::from_unix(T0 - 8 * 24 * 3600, 0, 0).unwrap();
    ob.commit(
        PARENT,
        transition(Record::transition("t", "running", "error")),
    )
    .unwrap();
    ob.commit(PARENT, old).unwrap();
    ob.commit(PARENT, finished("a", "a1")).unwrap();
    ob.commit(PARENT, finished("k", "k1")).unwrap();
    let failed = ob.drain_with(PARENT, |_| Err::<(), _>("delivery refused"));
    assert!(failed.is_err(), "the delivery failed");
    // A commit after the failure: the new record supersedes the claimed one.
    ob.commit(PARENT, finished("b", "b1")).unwrap();
    ob.commit(PARENT, finished("a", "a2")).unwrap();
    assert_eq!(
        children(&ob.peek(PARENT).unwrap()),
        ["t", "old", "a", "k", "b"]
    );
    assert_eq!(
        ob.sweep_transition(PARENT, "t", "running", "error")
            .unwrap(),
        1,
        "a claimed record is swept by transition"
    );
    assert_eq!(
        ob.sweep_stale(PARENT, outbox::DEFAULT_STALE_AGE).unwrap(),
        1,
        "a claimed record is swept by age"
    );
    // Dropping a child's newest record never brings an older one back.
    assert_eq!(ob.sweep_transition(PARENT, "a", "", "").unwrap(), 1);
    assert_eq!(children(&ob.peek(PARENT).unwrap()), ["k", "b"]);
    assert_eq!(ob.sweep_transition(PARENT, "nobody", "x", "y").unwrap(), 0);
    let drained = ob.drain_with(PARENT, ok).unwrap();
    assert_eq!(children(&drained.records), ["k", "b"]);
    assert!(ob.peek(PARENT).unwrap().is_empty());
}

/// `sweep_stale_all` finds a parent whose only pending records are the
/// ones a failed delivery left (no inbox since): they are pending like any
/// other and old ones are dropped.
pub fn sweep_stale_all_reaches_records_a_failed_delivery_left(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    let mut old = Record::transition("old", "running", "waiting");
    old.timestamp = Timestamp::from_unix(T0 - 8 * 24 * 3600, 0, 0).unwrap();
    ob.commit(PARENT, old).unwrap();
    ob.commit(PARENT, finished("fresh", "f1")).unwrap();
    let failed = ob.drain_with(PARENT, |_| Err::<(), _>("delivery refused"));
    assert!(failed.is_err(), "the delivery failed");
    let report = ob.sweep_stale_all(outbox::DEFAULT_STALE_AGE).unwrap();
    assert_eq!(report.dropped, 1, "{report:?}");
    assert_eq!(children(&ob.peek(PARENT).unwrap()), ["fresh"]);
}
