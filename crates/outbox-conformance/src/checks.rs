//! The checks, one function per behaviour of the contract, each generic
//! over a [`Harness`]. Each panics with what differs.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use outbox::delivery::{DEFAULT_BLOCK_BUDGET, RenderOptions, units};
use outbox::handover::{self, Action, Event, Handover, Surface};
use outbox::stop_hook::{StopOutcome, block_decision, block_reason, on_stop_consume_on_print};
use outbox::{DrainWithError, Error, LEDGER_TTL, Record, Store, StoreErrorKind, Timestamp};

pub use crate::identity::child_ids_are_exact_bytes_and_never_padded;
use crate::model::{Model, by_child, children};
// The order and sweep checks live in their own module; the macro finds
// every check here.
pub use crate::order::{
    a_recommit_during_delivery_starts_a_new_position,
    sweep_stale_all_reaches_records_a_failed_delivery_left,
    sweeps_act_on_records_a_failed_delivery_left, sweeps_keep_first_seen_order,
};
use crate::{Harness, T0, TestClock};

/// The parent most checks commit to.
pub const PARENT: &str = "parent-A";

/// A completion of `child` with `summary`.
pub fn finished(child: &str, summary: &str) -> Record {
    let mut r = Record::finished(child, "success");
    r.done_summary = summary.into();
    r
}

fn ok(_: &[Record]) -> Result<(), Infallible> {
    Ok(())
}

fn outbox_error<E: std::fmt::Debug>(e: DrainWithError<E>) -> Error {
    match e {
        DrainWithError::Outbox(e) => e,
        other => panic!("unexpected drain_with error {other:?}"),
    }
}

/// Whether `e` says a call came from inside a `drain_with` callback of the
/// same parent (each store has its own variant for it).
pub fn is_reentrant(e: &Error) -> bool {
    matches!(e, Error::Reentrant { .. })
        || matches!(e, Error::Store(s) if s.kind == StoreErrorKind::Reentrant)
}

fn drain_children<S: Store>(store: &S, parent: &str) -> Vec<String> {
    let drained = store.drain(parent).unwrap();
    children(&drained.records)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// A re-committed turn is not delivered again (and commit says so); a new
/// turn of the same child is.
pub fn a_turn_is_delivered_once_and_a_new_turn_again(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    ob.commit(PARENT, finished("c1", "turn one")).unwrap();
    assert_eq!(drain_children(&ob, PARENT), ["c1"]);
    let again = ob.commit(PARENT, finished("c1", "turn one")).unwrap();
    assert!(again.already_consumed);
    assert!(!ob.has_pending(PARENT).unwrap());
    let drained = ob.drain(PARENT).unwrap();
    assert!(drained.records.is_empty());
    assert_eq!(drained.already_consumed, 1);
    ob.commit(PARENT, finished("c1", "turn two")).unwrap();
    let next = ob.drain(PARENT).unwrap().records;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].done_summary, "turn two");
    assert!(ob.drain(PARENT).unwrap().records.is_empty());
}

/// One record per child, its last; children in the order they were first
/// seen among the pending records (agent-deck's order).
pub fn last_wins_per_child_by_commit_order(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    ob.commit(PARENT, Record::transition("a", "idle", "running"))
        .unwrap();
    ob.commit(PARENT, Record::transition("b", "idle", "running"))
        .unwrap();
    ob.commit(PARENT, Record::transition("a", "running", "waiting"))
        .unwrap();
    ob.commit(PARENT, finished("a", "done at last")).unwrap();
    assert_eq!(children(&ob.peek(PARENT).unwrap()), ["a", "b"]);
    let drained = ob.drain(PARENT).unwrap().records;
    assert_eq!(children(&drained), ["a", "b"]);
    assert_eq!(drained[0].done_summary, "done at last");
    assert!(ob.drain(PARENT).unwrap().records.is_empty());
}

/// The later commit wins even when its timestamp is earlier, also after a
/// failed delivery of the earlier one.
pub fn last_wins_by_commit_order_not_timestamps(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    let mut first = finished("c1", "first");
    first.timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    ob.commit(PARENT, first).unwrap();
    assert!(matches!(
        ob.drain_with(PARENT, |_| Err("down")),
        Err(DrainWithError::Delivery("down"))
    ));
    let mut second = finished("c1", "second");
    second.timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
    ob.commit(PARENT, second).unwrap();
    let peeked = ob.peek(PARENT).unwrap();
    assert_eq!(peeked.len(), 1);
    assert_eq!(peeked[0].done_summary, "second");
    let drained = ob.drain(PARENT).unwrap().records;
    assert_eq!(drained.len(), 1);
    assert_eq!(drained[0].done_summary, "second");
}

/// Commit stamps as [`outbox::stamp`] does (fingerprints, target, capped
/// summary, timestamp from the store's clock), and what comes back out
/// encodes to the very same line.
pub fn commit_stamps_records_byte_for_byte_like_the_file_outbox(h: &impl Harness) {
    let clock = TestClock::default();
    let ob = h.open(&clock);
    let mut r = finished("c1", &"x".repeat(40 * 1024));
    r.timestamp = Timestamp::default();
    r.last_output_hash = "h1".into();
    r.child_title = "ünïcode \"quoted\" \n title".into();
    let (want, line) = outbox::stamp(PARENT, r.clone(), clock.now()).unwrap();
    let committed = ob.commit(PARENT, r).unwrap();
    assert_eq!(committed.record, want);
    assert!(!committed.already_consumed);
    assert!(want.done_summary.ends_with(outbox::TRUNCATION_MARKER));
    assert_eq!(want.turn_fingerprint, outbox::turn_fingerprint(&want));
    assert_eq!(Some(want.turn_id.clone()), outbox::turn_id(&want));
    assert_eq!(want.fp, outbox::event_fingerprint(&want));
    assert_eq!(want.target_session_id, PARENT);
    assert_eq!(want.timestamp.unix_seconds(), T0);
    assert_eq!(ob.peek(PARENT).unwrap(), std::slice::from_ref(&want));
    let drained = ob.drain(PARENT).unwrap().records;
    assert_eq!(drained, [want]);
    assert_eq!(outbox::format::encode_line(&drained[0]).unwrap(), line);
}

/// `peek` and `has_pending` show what a drain would deliver, consume
/// nothing, and skip a turn already consumed.
pub fn peek_and_has_pending_agree_with_drain_and_consume_nothing(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    assert!(!ob.has_pending(PARENT).unwrap());
    assert!(ob.peek(PARENT).unwrap().is_empty());
    ob.commit(PARENT, finished("c1", "s")).unwrap();
    for _ in 0..3 {
        assert!(ob.has_pending(PARENT).unwrap());
        assert_eq!(children(&ob.peek(PARENT).unwrap()), ["c1"]);
    }
    assert_eq!(drain_children(&ob, PARENT), ["c1"]);
    assert!(!ob.has_pending(PARENT).unwrap());
    ob.commit(PARENT, Record::transition("c2", "running", "waiting"))
        .unwrap();
    assert_eq!(drain_children(&ob, PARENT), ["c2"]);
    let again = ob
        .commit(PARENT, Record::transition("c2", "running", "waiting"))
        .unwrap();
    assert!(again.already_consumed);
    assert!(ob.peek(PARENT).unwrap().is_empty());
    assert!(!ob.has_pending(PARENT).unwrap());
    assert!(ob.drain(PARENT).unwrap().records.is_empty());
    let mut new_turn = Record::transition("c2", "running", "waiting");
    new_turn.last_output_hash = "h9".into();
    assert!(!ob.commit(PARENT, new_turn).unwrap().already_consumed);
    assert!(ob.has_pending(PARENT).unwrap());
    assert_eq!(drain_children(&ob, PARENT), ["c2"]);
}

/// A delivery error marks nothing: the records come again, and a drain
/// with a working delivery then takes them.
pub fn drain_with_marks_nothing_when_delivery_fails(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    ob.commit(PARENT, finished("a", "s")).unwrap();
    ob.commit(PARENT, finished("b", "s")).unwrap();
    let mut seen = Vec::new();
    let err = ob
        .drain_with(PARENT, |records| {
            seen = records.to_vec();
            Err("delivery down")
        })
        .unwrap_err();
    assert!(matches!(err, DrainWithError::Delivery("delivery down")));
    assert_eq!(children(&seen), ["a", "b"]);
    assert!(ob.has_pending(PARENT).unwrap());
    assert_eq!(ob.peek(PARENT).unwrap(), seen);
    let drained = ob.drain_with(PARENT, ok).unwrap();
    assert_eq!(drained.records, seen);
    assert!(!ob.has_pending(PARENT).unwrap());
    // An empty drain never calls the delivery.
    ob.drain_with(PARENT, |_| -> Result<(), Infallible> {
        panic!("delivery called with nothing pending")
    })
    .unwrap();
}

/// A limited drain delivers the first records and leaves the rest pending,
/// first in line next time.
pub fn drain_with_max_leaves_the_rest_pending_and_delivers_it_first(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    for c in ["a", "b", "c"] {
        ob.commit(PARENT, finished(c, "s")).unwrap();
    }
    let first = ob.drain_with_max(PARENT, 2, ok).unwrap();
    assert_eq!(children(&first.records), ["a", "b"]);
    assert_eq!(children(&ob.peek(PARENT).unwrap()), ["c"]);
    ob.commit(PARENT, finished("d", "s")).unwrap();
    let rest = ob.drain_with_max(PARENT, 10, ok).unwrap();
    assert_eq!(children(&rest.records), ["c", "d"]);
    assert!(ob.drain(PARENT).unwrap().records.is_empty());
}

/// Every store accepts exactly the file outbox's parent ids, and distinct
/// ids never share records.
pub fn parent_ids_follow_the_file_outbox_rules(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    let too_long = "x".repeat(outbox::MAX_ID_BYTES + 1);
    for bad in ["", "  ", "a\0b", too_long.as_str()] {
        let is_id_error = |e: Error| {
            matches!(
                e,
                Error::InvalidParentId { .. } | Error::ParentIdTooLong { .. }
            )
        };
        assert!(
            is_id_error(ob.commit(bad, finished("c", "s")).unwrap_err()),
            "{bad:?}"
        );
        assert!(is_id_error(ob.drain(bad).unwrap_err()), "{bad:?}");
        assert!(is_id_error(ob.peek(bad).unwrap_err()), "{bad:?}");
        assert!(is_id_error(ob.has_pending(bad).unwrap_err()), "{bad:?}");
        assert!(
            is_id_error(ob.forget_child(bad, "c").unwrap_err()),
            "{bad:?}"
        );
        assert!(
            is_id_error(ob.set_handover(bad, &Handover::default()).unwrap_err()),
            "{bad:?}"
        );
        assert!(is_id_error(ob.handover(bad).unwrap_err()), "{bad:?}");
        assert!(
            is_id_error(ob.consume_turns(bad, &[]).unwrap_err()),
            "{bad:?}"
        );
    }
    let odd = ["team/alpha", "team%2Falpha", "../x", "Ünï cödé", "a.b"];
    for (i, id) in odd.iter().enumerate() {
        ob.commit(id, finished(&format!("c{i}"), "s")).unwrap();
    }
    for (i, id) in odd.iter().enumerate() {
        assert_eq!(drain_children(&ob, id), [format!("c{i}")], "{id:?}");
    }
    let longest = "y".repeat(outbox::MAX_ID_BYTES);
    ob.commit(&longest, finished("c", "s")).unwrap();
    assert_eq!(drain_children(&ob, &longest), ["c"]);
}

/// Ids and keys over the limit, and lines over the limit, are refused and
/// leave nothing behind.
pub fn oversized_fields_are_refused_and_change_nothing(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    let huge = "x".repeat(outbox::MAX_FIELD_BYTES + 1);
    let err = ob.commit(PARENT, finished(&huge, "ok")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::FieldTooLong {
                field: "child_session_id",
                ..
            }
        ),
        "{err}"
    );
    let mut r = finished("c1", "ok");
    r.last_output_hash = huge.clone();
    assert!(matches!(
        ob.commit(PARENT, r).unwrap_err(),
        Error::FieldTooLong { .. }
    ));
    let mut r = finished("c1", "ok");
    r.child_title = "t".repeat(outbox::format::MAX_LINE_BYTES);
    assert!(matches!(
        ob.commit(PARENT, r).unwrap_err(),
        Error::LineTooLong { .. }
    ));
    assert!(!ob.has_pending(PARENT).unwrap());
    assert!(ob.drain(PARENT).unwrap().records.is_empty());
}

/// A NUL in an id, status or key is refused by every store alike, naming
/// the field, and changes nothing; in free text it is kept, escaped in the
/// line, and comes back as it went in.
pub fn nul_in_ids_is_refused_and_kept_in_text(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    let err = ob.commit(PARENT, finished("a\0b", "ok")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::FieldHasNul {
                field: "child_session_id"
            }
        ),
        "{err}"
    );
    let mut r = finished("c1", "ok");
    r.to_status = "waiting\0".into();
    let err = ob.commit(PARENT, r).unwrap_err();
    assert!(err.to_string().contains("to_status"), "{err}");
    assert!(!ob.has_pending(PARENT).unwrap());
    let mut r = finished("c1", "ok");
    r.done_summary = "before\0after".into();
    ob.commit(PARENT, r).unwrap();
    let drained = ob.drain(PARENT).unwrap().records;
    assert_eq!(drained.len(), 1);
    assert_eq!(drained[0].done_summary, "before\0after");
}

/// `sweep_transition`, `sweep_stale(_all)` by timestamp (none: kept) and
/// `forget_child` (exactly the child's turns).
pub fn sweeps_and_forgetting_a_child(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    let mut old = Record::transition("old", "running", "waiting");
    old.timestamp = Timestamp::from_unix(T0 - 8 * 24 * 3600, 0, 0).unwrap();
    let mut fresh = Record::transition("fresh", "running", "waiting");
    fresh.timestamp = Timestamp::from_unix(T0 - 3600, 0, 7200).unwrap();
    ob.commit(PARENT, old.clone()).unwrap();
    ob.commit(PARENT, fresh).unwrap();
    ob.commit(PARENT, Record::transition("t", "running", "error"))
        .unwrap();
    assert_eq!(
        ob.sweep_transition(PARENT, "t", "running", "waiting")
            .unwrap(),
        0
    );
    assert_eq!(
        ob.sweep_transition(PARENT, "t", "running", "error")
            .unwrap(),
        1
    );
    assert_eq!(
        ob.sweep_stale_all(outbox::DEFAULT_STALE_AGE)
            .unwrap()
            .dropped,
        1
    );
    assert_eq!(children(&ob.peek(PARENT).unwrap()), ["fresh"]);
    // Per parent, too; a record without a timestamp has no age.
    ob.commit("parent-B", old).unwrap();
    let mut timeless = Record::transition("timeless", "a", "b");
    timeless.timestamp = Timestamp::default();
    let stamped = ob.commit("parent-B", timeless).unwrap().record;
    assert_eq!(
        stamped.timestamp.unix_seconds(),
        T0,
        "commit stamps a zero timestamp"
    );
    assert_eq!(
        ob.sweep_stale("parent-B", Duration::from_secs(3600))
            .unwrap(),
        1
    );
    assert_eq!(children(&ob.peek("parent-B").unwrap()), ["timeless"]);

    assert_eq!(drain_children(&ob, PARENT), ["fresh"]);
    ob.commit(PARENT, finished("fresh@x", "other child"))
        .unwrap();
    assert_eq!(drain_children(&ob, PARENT), ["fresh@x"]);
    assert_eq!(ob.forget_child(PARENT, " fresh ").unwrap(), 1);
    assert_eq!(ob.forget_child(PARENT, "fresh").unwrap(), 0);
    ob.commit(PARENT, Record::transition("fresh", "running", "waiting"))
        .unwrap();
    assert_eq!(drain_children(&ob, PARENT), ["fresh"]);
    // The other child's turn is still consumed.
    assert!(
        ob.commit(PARENT, finished("fresh@x", "other child"))
            .unwrap()
            .already_consumed
    );
}

/// A consumed turn is forgotten after the TTL (pruned when a drain marks
/// new turns), then delivered again.
pub fn the_ledger_forgets_turns_after_its_ttl(h: &impl Harness) {
    let clock = TestClock::default();
    let ob = h.open(&clock);
    let ttl = i64::try_from(LEDGER_TTL.as_secs()).unwrap();
    ob.commit(PARENT, finished("a", "s")).unwrap();
    ob.drain(PARENT).unwrap();
    clock.set(T0 + ttl / 2);
    ob.commit(PARENT, finished("m", "s")).unwrap();
    ob.drain(PARENT).unwrap();
    clock.set(T0 + ttl - 1);
    assert!(
        ob.commit(PARENT, finished("a", "s"))
            .unwrap()
            .already_consumed
    );
    clock.set(T0 + ttl + 1);
    ob.commit(PARENT, finished("b", "s")).unwrap();
    assert_eq!(drain_children(&ob, PARENT), ["b"]);
    assert!(
        !ob.commit(PARENT, finished("a", "s"))
            .unwrap()
            .already_consumed
    );
    assert!(
        ob.commit(PARENT, finished("m", "s"))
            .unwrap()
            .already_consumed
    );
    assert_eq!(drain_children(&ob, PARENT), ["a"]);
}

/// A machine that booted at 1970 consumed a turn, then NTP set the clock:
/// the turn is still consumed (the ledger is shifted, not emptied).
pub fn a_clock_corrected_forward_does_not_forget_consumed_turns(h: &impl Harness) {
    let clock = TestClock::at(1_000);
    let ob = h.open(&clock);
    let mut turn = finished("c1", "one");
    turn.timestamp = Timestamp::default();
    ob.commit(PARENT, turn.clone()).unwrap();
    assert_eq!(ob.drain(PARENT).unwrap().records.len(), 1);
    clock.set(T0);
    ob.commit(PARENT, finished("c2", "two")).unwrap();
    assert_eq!(ob.drain(PARENT).unwrap().records.len(), 1);
    assert!(ob.commit(PARENT, turn).unwrap().already_consumed);
    assert!(ob.drain(PARENT).unwrap().records.is_empty());
}

/// A turn consumed while the clock read 2090 is forgotten one TTL after the
/// clock was corrected, not never.
pub fn entries_stamped_in_the_far_future_expire(h: &impl Harness) {
    let clock = TestClock::at(3_800_000_000);
    let ob = h.open(&clock);
    ob.commit(PARENT, finished("c1", "one")).unwrap();
    assert_eq!(ob.drain(PARENT).unwrap().records.len(), 1);
    clock.set(T0);
    ob.commit(PARENT, finished("c2", "two")).unwrap();
    assert_eq!(ob.drain(PARENT).unwrap().records.len(), 1);
    ob.commit(PARENT, finished("c1", "one")).unwrap();
    assert!(ob.drain(PARENT).unwrap().records.is_empty());
    let day = 24 * 3600;
    for d in 1..=(i64::try_from(LEDGER_TTL.as_secs()).unwrap() / day + 1) {
        clock.set(T0 + d * day);
        ob.commit(PARENT, finished("c3", &format!("day {d}")))
            .unwrap();
        ob.drain(PARENT).unwrap();
    }
    ob.commit(PARENT, finished("c1", "one")).unwrap();
    assert_eq!(drain_children(&ob, PARENT), ["c1"]);
}

/// The same status and summary with a new output hash is a new turn; the
/// first turn again is a re-emit.
pub fn a_second_finished_turn_with_a_new_output_hash_is_delivered(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    let mut first = finished("c1", "tests pass");
    first.last_output_hash = "h1".into();
    assert!(!ob.commit(PARENT, first.clone()).unwrap().already_consumed);
    assert_eq!(ob.drain(PARENT).unwrap().records.len(), 1);
    let mut second = first.clone();
    second.last_output_hash = "h2".into();
    assert!(!ob.commit(PARENT, second).unwrap().already_consumed);
    assert!(ob.has_pending(PARENT).unwrap());
    let drained = ob.drain(PARENT).unwrap().records;
    assert_eq!(drained.len(), 1);
    assert_eq!(drained[0].last_output_hash, "h2");
    assert_eq!(
        drained[0].turn_fingerprint,
        outbox::turn_fingerprint(&drained[0])
    );
    assert!(ob.commit(PARENT, first).unwrap().already_consumed);
    assert!(!ob.has_pending(PARENT).unwrap());
}

/// From inside a `drain_with` callback: a drain, `drain_with` or
/// `forget_child` of the same parent is an error (not a deadlock); another
/// parent's drain and a commit to the same parent work.
pub fn reentrant_calls_from_a_callback_are_errors_not_deadlocks(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    ob.commit(PARENT, finished("c1", "one")).unwrap();
    let mut errors = Vec::new();
    ob.drain_with(PARENT, |_| {
        errors.push(ob.drain(PARENT).unwrap_err());
        errors.push(outbox_error(ob.drain_with(PARENT, ok).unwrap_err()));
        errors.push(ob.forget_child(PARENT, "c1").unwrap_err());
        ob.drain("parent-B").unwrap();
        ob.commit(PARENT, finished("c2", "two")).unwrap();
        Ok::<(), Infallible>(())
    })
    .unwrap();
    assert_eq!(errors.len(), 3);
    for e in &errors {
        assert!(is_reentrant(e), "{e}");
        assert!(e.to_string().contains("drain_with callback"), "{e}");
    }
    assert_eq!(drain_children(&ob, PARENT), ["c2"]);
    assert_eq!(ob.forget_child(PARENT, "c1").unwrap(), 1);
}

/// The consume-on-print Stop-hook rule over the store: nothing pending
/// writes nothing; a block per stop while records come; three consecutive
/// blocks, then the records wait; a stop not caused by a block resets the
/// counter (kept in the handover state).
pub fn the_stop_hook_blocks_three_times_then_waits(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    assert_eq!(ob.handover(PARENT).unwrap().blocks, 0);
    let seven = Handover {
        blocks: 7,
        ..Handover::default()
    };
    ob.set_handover(PARENT, &seven).unwrap();
    assert_eq!(ob.handover(PARENT).unwrap(), seven);
    let mut out = Vec::new();
    let mut stop = |active: bool| {
        on_stop_consume_on_print(&ob, PARENT, active, |json: &str| {
            out.push(json.to_owned());
            Ok::<(), Infallible>(())
        })
        .unwrap()
    };
    assert_eq!(stop(false), StopOutcome::NothingPending);
    for n in 1..=3u32 {
        ob.commit(PARENT, finished(&format!("c{n}"), "done"))
            .unwrap();
        match stop(n > 1) {
            StopOutcome::Blocked { records, blocks } => {
                assert_eq!(blocks, n);
                assert_eq!(children(&records), [format!("c{n}")]);
            }
            other => panic!("stop {n}: {other:?}"),
        }
    }
    ob.commit(PARENT, finished("c4", "done")).unwrap();
    assert_eq!(stop(true), StopOutcome::GuardTripped { blocks: 3 });
    assert!(ob.has_pending(PARENT).unwrap(), "the records wait");
    assert!(matches!(
        stop(false),
        StopOutcome::Blocked { blocks: 1, .. }
    ));
    assert_eq!(out.len(), 4);
    assert!(
        out[3].starts_with(r#"{"decision":"block","reason":"#),
        "{}",
        out[3]
    );
    assert!(
        out[3].contains(r#"child \"c4\", finished a turn with status \"success\""#),
        "{}",
        out[3]
    );
}

/// A Stop hook's reason stays within its budget: it shows the records that
/// fit (the first always, a huge one cut), consumes only those, and the
/// next stops deliver the rest, in commit order.
pub fn the_stop_hook_consumes_only_what_its_reason_shows(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    let mut committed = Vec::new();
    for i in 0..12 {
        let child = format!("c{i:02}");
        let size = if i == 1 { 40_000 } else { 6_000 };
        ob.commit(PARENT, finished(&child, &"s".repeat(size)))
            .unwrap();
        committed.push(child);
    }
    let mut delivered = Vec::new();
    while ob.has_pending(PARENT).unwrap() {
        let mut emitted = String::new();
        let outcome = on_stop_consume_on_print(&ob, PARENT, false, |json: &str| {
            emitted = json.to_owned();
            Ok::<(), Infallible>(())
        })
        .unwrap();
        let StopOutcome::Blocked { records, .. } = outcome else {
            panic!("{outcome:?}");
        };
        // The reason is the delivery of exactly the records it consumed.
        let reason = block_reason(&records, &RenderOptions::new(PARENT));
        assert_eq!(emitted, block_decision(&reason.text));
        assert_eq!(
            reason.shown,
            records.len(),
            "consumed exactly what it showed"
        );
        assert!(units(&reason.text) <= DEFAULT_BLOCK_BUDGET);
        assert!(
            records.len() < committed.len(),
            "one reason cannot hold them all"
        );
        delivered.extend(children(&records).into_iter().map(str::to_owned));
    }
    assert_eq!(delivered, committed);
}

/// The handover state round-trips whole, per parent.
pub fn the_handover_state_round_trips(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    assert_eq!(ob.handover(PARENT).unwrap(), Handover::default());
    let long_key = format!("c@{}", "k".repeat(outbox::MAX_TURN_KEY_BYTES - 2));
    let state = Handover {
        blocks: 3,
        session_id: "sess-Ü".into(),
        surface: Some(Surface::Rewake),
        shown: vec!["c1@a".into(), long_key, "c2@b".into()],
        delivery: "00ff00ff00ff00ff".into(),
        shown_at: T0,
        emitted: true,
    };
    ob.set_handover(PARENT, &state).unwrap();
    assert_eq!(ob.handover(PARENT).unwrap(), state);
    assert_eq!(ob.handover("another").unwrap(), Handover::default());
    let cleared = Handover {
        blocks: 1,
        ..Handover::default()
    };
    ob.set_handover(PARENT, &cleared).unwrap();
    assert_eq!(ob.handover(PARENT).unwrap(), cleared);
}

/// `consume_turns` marks exactly the turns given and removes their
/// records: the rest stay pending in order, a child that committed a
/// newer turn keeps it, a key whose record is gone is still marked (its
/// re-commit is not delivered), and an empty list changes nothing.
pub fn consume_turns_consumes_exactly_the_turns_given(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    for c in ["c1", "c2", "c3"] {
        ob.commit(PARENT, finished(c, "first")).unwrap();
    }
    let shown: Vec<String> = ob.peek(PARENT).unwrap()[..2]
        .iter()
        .map(Record::turn_key)
        .collect();
    // c2 finishes a newer turn after c1 and c2 were shown.
    ob.commit(PARENT, finished("c2", "second")).unwrap();
    assert!(ob.consume_turns(PARENT, &[]).unwrap().records.is_empty());
    assert_eq!(children(&ob.peek(PARENT).unwrap()), ["c1", "c2", "c3"]);
    let removed = ob.consume_turns(PARENT, &shown).unwrap();
    assert_eq!(children(&removed.records), ["c1"]);
    let left = ob.peek(PARENT).unwrap();
    assert_eq!(children(&left), ["c2", "c3"]);
    assert_eq!(left[0].done_summary, "second", "the newer turn stays");
    // Both shown turns are consumed: c2's first turn is not delivered
    // again when re-committed.
    assert!(
        ob.commit(PARENT, finished("c2", "first"))
            .unwrap()
            .already_consumed
    );
    assert!(
        ob.commit(PARENT, finished("c1", "first"))
            .unwrap()
            .already_consumed
    );
    // Again: idempotent.
    assert!(ob.consume_turns(PARENT, &shown).unwrap().records.is_empty());
    assert_eq!(drain_children(&ob, PARENT), ["c3"]);
}

fn emit_into(out: &mut Vec<String>) -> impl FnOnce(&str) -> Result<(), Infallible> + '_ {
    |text| {
        out.push(text.to_owned());
        Ok(())
    }
}

/// The confirmed-delivery rules over the store: a Stop block stays pending
/// until the next Stop with `stop_hook_active` confirms it; a Stop without
/// it, or a prompt, shows it again first; a prompt's context is confirmed
/// by the turn's Stop; another session never confirms.
pub fn confirmed_delivery_follows_the_session(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    let mut out = Vec::new();
    let stop = |active| Event::Stop {
        stop_hook_active: active,
    };
    let prompt = Event::UserPromptSubmit {
        prompt: "go on".into(),
    };
    let run = |ob: &_, session: &str, event: &Event, out: &mut Vec<String>| {
        handover::handle(ob, PARENT, session, event, emit_into(out)).unwrap()
    };
    assert_eq!(
        run(&ob, "s1", &stop(false), &mut out).action,
        Action::NothingPending
    );
    assert_eq!(
        ob.handover(PARENT).unwrap(),
        Handover::default(),
        "nothing written"
    );
    ob.commit(PARENT, finished("c1", "one")).unwrap();
    let Action::Shown(d) = run(&ob, "s1", &stop(false), &mut out).action else {
        panic!("no block")
    };
    assert_eq!((d.surface, d.again, d.blocks), (Surface::StopBlock, 0, 1));
    assert!(ob.has_pending(PARENT).unwrap(), "pending until confirmed");
    // Another session's Stop does not confirm; it shows the record there.
    let Action::Shown(d) = run(&ob, "s2", &stop(true), &mut out).action else {
        panic!("not shown to s2")
    };
    assert_eq!((d.again, d.blocks), (1, 1));
    // Interrupted (no hook), then a prompt of s2: shown again as context.
    let handled = run(&ob, "s2", &prompt, &mut out);
    let Action::Shown(d) = handled.action else {
        panic!("not shown again")
    };
    assert!(handled.confirmed.is_empty());
    assert_eq!((d.surface, d.again), (Surface::PromptContext, 1));
    assert!(
        d.text
            .contains("child \"c1\", finished a turn with status \"success\"")
            && d.text
                .contains("It was shown before and is not yet confirmed.")
            && d.text.contains("\n| one"),
        "{}",
        d.text
    );
    assert!(out.last().unwrap().contains("additionalContext"));
    // The turn's Stop confirms the context, whatever stop_hook_active.
    ob.commit(PARENT, finished("c2", "two")).unwrap();
    let handled = run(&ob, "s2", &stop(false), &mut out);
    assert_eq!(children(&handled.confirmed), ["c1"]);
    let Action::Shown(d) = handled.action else {
        panic!("c2 not shown")
    };
    assert_eq!((children(&d.records), d.again), (vec!["c2"], 0));
    // Not acted on (a Stop without stop_hook_active): shown again.
    let Action::Shown(d) = run(&ob, "s2", &stop(false), &mut out).action else {
        panic!("not shown again")
    };
    assert_eq!((d.again, d.blocks), (1, 1));
    let handled = run(&ob, "s2", &stop(true), &mut out);
    assert_eq!(children(&handled.confirmed), ["c2"]);
    assert_eq!(handled.action, Action::NothingPending);
    assert!(!ob.has_pending(PARENT).unwrap());
    assert!(!ob.handover(PARENT).unwrap().awaits_confirmation());
    assert_eq!(drain_children(&ob, PARENT), Vec::<String>::new());
}

/// What happens to one parent never shows in another.
pub fn parents_are_independent(h: &impl Harness) {
    let ob = h.open(&TestClock::default());
    ob.commit("p1", finished("c", "one")).unwrap();
    ob.commit("p2", finished("c", "one")).unwrap();
    assert_eq!(drain_children(&ob, "p1"), ["c"]);
    assert!(ob.has_pending("p2").unwrap());
    assert_eq!(drain_children(&ob, "p2"), ["c"]);
    let two = Handover {
        blocks: 2,
        session_id: "s".into(),
        ..Handover::default()
    };
    ob.set_handover("p1", &two).unwrap();
    assert_eq!(ob.handover("p2").unwrap(), Handover::default());
    assert_eq!(ob.forget_child("p2", "c").unwrap(), 1);
    assert!(
        ob.commit("p1", finished("c", "one"))
            .unwrap()
            .already_consumed
    );
}

/// Producers and drainers on several threads: every committed record is
/// delivered exactly once (no crash, so no duplicate window), none is
/// invented.
pub fn concurrent_producers_and_drainers_deliver_each_record_once(h: &impl Harness) {
    const PRODUCERS: usize = 3;
    const PER_PRODUCER: usize = 60;
    const DRAINERS: usize = 2;
    let ob = h.open(&TestClock::default());
    let delivered = Mutex::new(BTreeMap::<String, usize>::new());
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let drainers: Vec<_> = (0..DRAINERS)
            .map(|d| {
                let (ob, delivered, done) = (&ob, &delivered, &done);
                s.spawn(move || {
                    let mut round = 0usize;
                    loop {
                        let finished = done.load(Ordering::SeqCst);
                        round += 1;
                        let fail = round % 5 == d;
                        let result = ob.drain_with(PARENT, |records| {
                            if fail {
                                return Err("injected delivery failure");
                            }
                            let mut map = delivered.lock().unwrap();
                            for r in records {
                                *map.entry(r.child_session_id.clone()).or_default() += 1;
                            }
                            Ok(())
                        });
                        match result {
                            Ok(drained) if finished && drained.records.is_empty() => break,
                            Ok(_) | Err(DrainWithError::Delivery(_)) => {}
                            Err(DrainWithError::Outbox(e)) => panic!("drainer {d}: {e}"),
                        }
                        std::thread::yield_now();
                    }
                })
            })
            .collect();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let ob = &ob;
                s.spawn(move || {
                    for i in 0..PER_PRODUCER {
                        ob.commit(PARENT, finished(&format!("p{p}-{i}"), "work"))
                            .unwrap();
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        for d in drainers {
            d.join().unwrap();
        }
    });
    let delivered = delivered.into_inner().unwrap();
    let want: BTreeSet<String> = (0..PRODUCERS)
        .flat_map(|p| (0..PER_PRODUCER).map(move |i| format!("p{p}-{i}")))
        .collect();
    let got: BTreeSet<String> = delivered.keys().cloned().collect();
    assert_eq!(got, want, "lost or invented records");
    let twice: Vec<_> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert!(!ob.has_pending(PARENT).unwrap());
}

/// xorshift64*: seeded, tiny, enough to pick operations.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Seeded random operations (commits of new turns and re-emits, plain and
/// limited drains, failing deliveries, views, forgets) on two parents,
/// each result checked against the [`Model`]. `OUTBOX_CONFORMANCE_SEED`
/// replays one seed; the failure message names it.
pub fn random_operations_match_the_reference_model(h: &impl Harness) {
    let seeds: Vec<u64> = match std::env::var("OUTBOX_CONFORMANCE_SEED") {
        Ok(s) => vec![s.parse().expect("OUTBOX_CONFORMANCE_SEED is a number")],
        Err(_) => (1..=4).collect(),
    };
    for seed in seeds {
        let ob = h.open(&TestClock::default());
        if let Err(e) = random_run(&ob, seed, 250) {
            panic!("seed {seed} (replay: OUTBOX_CONFORMANCE_SEED={seed}): {e}");
        }
    }
}

fn random_run<S: Store>(ob: &S, seed: u64, ops: usize) -> Result<(), String> {
    let parents = ["p-one", "team/p two"];
    let mut models: Vec<Model> = parents.iter().map(|_| Model::default()).collect();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    for step in 0..ops {
        let p = rng.below(2) as usize;
        let parent = parents[p];
        let model = &mut models[p];
        let at = |what: &str| format!("step {step}, {what} on {parent:?}");
        match rng.below(100) {
            0..=44 => {
                let child = format!("c{}", rng.below(5));
                let mut r = if rng.below(3) == 0 {
                    Record::transition(child, "running", ["waiting", "idle"][rng.below(2) as usize])
                } else {
                    finished(&child, &format!("s{}", rng.below(3)))
                };
                r.last_output_hash = ["", "h1", "h2"][rng.below(3) as usize].into();
                let c = ob
                    .commit(parent, r)
                    .map_err(|e| format!("{}: {e}", at("commit")))?;
                let want = model.commit(&c.record);
                if c.already_consumed != want {
                    return Err(format!(
                        "{}: already_consumed {} but the model says {want}",
                        at("commit"),
                        c.already_consumed
                    ));
                }
            }
            45..=59 => {
                let skipped = model.already_consumed();
                let d = ob
                    .drain(parent)
                    .map_err(|e| format!("{}: {e}", at("drain")))?;
                if d.already_consumed != skipped {
                    return Err(format!(
                        "{}: skipped {} consumed, the model says {skipped}",
                        at("drain"),
                        d.already_consumed
                    ));
                }
                model
                    .drained(&d.records, usize::MAX)
                    .map_err(|e| format!("{}: {e}", at("drain")))?;
            }
            60..=69 => {
                let max = 1 + rng.below(2) as usize;
                let d = ob
                    .drain_with_max(parent, max, ok)
                    .map_err(|e| format!("{}: {}", at("drain_with_max"), outbox_error(e)))?;
                model
                    .drained(&d.records, max)
                    .map_err(|e| format!("{}: {e}", at("drain_with_max")))?;
            }
            70..=77 => {
                let mut seen = None;
                match ob.drain_with(parent, |records| {
                    seen = Some(records.to_vec());
                    Err("down")
                }) {
                    Err(DrainWithError::Delivery("down")) => {}
                    // Nothing deliverable: the drain went through (and
                    // dropped the pending records whose turns are consumed).
                    Ok(d) if d.records.is_empty() && seen.is_none() => model
                        .drained(&d.records, usize::MAX)
                        .map_err(|e| format!("{}: {e}", at("failed drain_with")))?,
                    Ok(d) => return Err(format!("{}: Ok({:?})", at("failed drain_with"), d)),
                    Err(e) => return Err(format!("{}: {e}", at("failed drain_with"))),
                }
                let want = model.deliverable();
                if by_child(&seen.unwrap_or_default()) != want {
                    return Err(format!(
                        "{}: offered something else",
                        at("failed drain_with")
                    ));
                }
            }
            78..=91 => {
                let want = model.deliverable();
                let peeked = ob
                    .peek(parent)
                    .map_err(|e| format!("{}: {e}", at("peek")))?;
                if by_child(&peeked) != want {
                    return Err(format!(
                        "{}: {:?}, the model says {:?}",
                        at("peek"),
                        children(&peeked),
                        children(&want)
                    ));
                }
                let pending = ob
                    .has_pending(parent)
                    .map_err(|e| format!("{}: {e}", at("has_pending")))?;
                if pending == want.is_empty() {
                    return Err(format!("{}: {pending}", at("has_pending")));
                }
            }
            _ => {
                let child = format!("c{}", rng.below(5));
                let n = ob
                    .forget_child(parent, &child)
                    .map_err(|e| format!("{}: {e}", at("forget_child")))?;
                let want = model.forget(&child);
                if n != want {
                    return Err(format!(
                        "{}: {n}, the model says {want}",
                        at("forget_child")
                    ));
                }
            }
        }
    }
    for (p, parent) in parents.iter().enumerate() {
        let d = ob.drain(parent).map_err(|e| format!("final drain: {e}"))?;
        models[p]
            .drained(&d.records, usize::MAX)
            .map_err(|e| format!("final drain of {parent:?}: {e}"))?;
    }
    Ok(())
}
