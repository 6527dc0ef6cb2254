//! What commit and drain promise, one behaviour per test.

use std::fs;
use std::path::Path;

use outbox::format::{BadLineReason, MAX_LINE_BYTES};
use outbox::handover::{Handover, Surface};
use outbox::{Error, Outbox, Record, StdIo};
use outbox_sim::{Fault, FaultIo, FaultPlan, OpKind, OpKindSet};

use crate::util::PARENT;

fn open(dir: &Path) -> Outbox {
    Outbox::open(dir).unwrap()
}

fn children(records: &[Record]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r.child_session_id.as_str())
        .collect()
}

fn finished(child: &str, summary: &str) -> Record {
    let mut r = Record::finished(child, "success");
    r.done_summary = summary.into();
    r
}

#[test]
fn a_turn_recommitted_after_a_drain_is_not_delivered_again_but_a_new_turn_is() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(dir.path());
    ob.commit(PARENT, finished("c1", "turn one")).unwrap();
    assert_eq!(children(&ob.drain(PARENT).unwrap().records), ["c1"]);

    // The same turn, emitted again (a new timestamp, same content).
    ob.commit(PARENT, finished("c1", "turn one")).unwrap();
    let again = ob.drain(PARENT).unwrap();
    assert!(again.records.is_empty());
    assert_eq!(again.already_consumed, 1);
    assert!(!ob.has_pending(PARENT).unwrap());

    ob.commit(PARENT, finished("c1", "turn two")).unwrap();
    let next = ob.drain(PARENT).unwrap().records;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].done_summary, "turn two");
}

#[test]
fn two_children_give_two_records_and_one_child_only_its_latest() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(dir.path());
    ob.commit(PARENT, Record::transition("a", "idle", "running"))
        .unwrap();
    ob.commit(PARENT, Record::transition("b", "idle", "running"))
        .unwrap();
    ob.commit(PARENT, Record::transition("a", "running", "waiting"))
        .unwrap();
    ob.commit(PARENT, finished("a", "done at last")).unwrap();

    // Last wins, by commit order. (Protocol v2: a commit appends, so the
    // inbox holds every line and readers take each child's last. Children
    // come in the order they were first seen, as documented: a is first
    // seen at its first pending line. v1's commit moved a to the end by
    // rewriting the inbox, which made the order b, a.)
    let inbox = fs::read_to_string(ob.paths(PARENT).unwrap().inbox).unwrap();
    assert_eq!(inbox.lines().count(), 4);
    let peeked = ob.peek(PARENT).unwrap();
    assert_eq!(children(&peeked), ["a", "b"]);

    let drained = ob.drain(PARENT).unwrap().records;
    assert_eq!(children(&drained), ["a", "b"]);
    assert_eq!(drained[0].done_summary, "done at last");
    assert!(ob.drain(PARENT).unwrap().records.is_empty());
}

#[test]
fn commit_stamps_fingerprints_target_and_caps_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(dir.path());
    let big = "x".repeat(40 * 1024);
    let stamped = ob.commit(PARENT, finished("c1", &big)).unwrap().record;
    assert!(stamped.done_summary.len() <= outbox::MAX_SUMMARY_BYTES);
    assert!(stamped.done_summary.ends_with(outbox::TRUNCATION_MARKER));
    assert_eq!(stamped.turn_fingerprint, outbox::turn_fingerprint(&stamped));
    assert_eq!(stamped.fp, outbox::event_fingerprint(&stamped));
    assert_eq!(stamped.fp.len(), 64);
    assert_eq!(stamped.target_session_id, PARENT);
    let drained = ob.drain(PARENT).unwrap().records;
    assert_eq!(drained, [stamped]);
}

#[test]
fn peek_and_has_pending_consume_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(dir.path());
    assert!(!ob.has_pending(PARENT).unwrap());
    assert!(ob.peek(PARENT).unwrap().is_empty());
    ob.commit(PARENT, finished("c1", "s")).unwrap();
    for _ in 0..3 {
        assert!(ob.has_pending(PARENT).unwrap());
        assert_eq!(children(&ob.peek(PARENT).unwrap()), ["c1"]);
    }
    assert_eq!(children(&ob.drain(PARENT).unwrap().records), ["c1"]);
    assert!(!ob.has_pending(PARENT).unwrap());
}

#[test]
fn corrupt_and_blank_lines_are_skipped_set_aside_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(dir.path());
    ob.commit(PARENT, finished("a", "s")).unwrap();
    ob.commit(PARENT, finished("b", "s")).unwrap();
    let inbox = ob.paths(PARENT).unwrap().inbox;
    let mut text = fs::read_to_string(&inbox).unwrap();
    text.insert_str(0, "\n   \n{\"child_session_id\": broken\n");
    text.push_str("{\"torn\":");
    fs::write(&inbox, text).unwrap();

    let drained = ob.drain(PARENT).unwrap();
    assert_eq!(children(&drained.records), ["a", "b"]);
    assert_eq!(drained.bad_lines.len(), 2);
    assert_eq!(drained.quarantined.len(), 1);
    let q = fs::read_to_string(&drained.quarantined[0]).unwrap();
    assert_eq!(q, "{\"child_session_id\": broken\n{\"torn\":\n");
    assert!(!inbox.exists());
}

#[test]
fn a_commit_over_the_line_limit_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(dir.path());
    ob.commit(PARENT, finished("a", "kept")).unwrap();
    let inbox = ob.paths(PARENT).unwrap().inbox;
    let before = fs::read(&inbox).unwrap();
    let mut huge = finished("b", "s");
    huge.child_title = "t".repeat(MAX_LINE_BYTES);
    let err = ob.commit(PARENT, huge).unwrap_err();
    assert!(matches!(err, Error::LineTooLong { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("\"b\"") && msg.contains("16777216"), "{msg}");
    assert_eq!(fs::read(&inbox).unwrap(), before);
}

#[test]
fn an_oversized_line_in_the_inbox_is_quarantined_whole_and_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(dir.path());
    ob.commit(PARENT, finished("a", "s")).unwrap();
    let inbox = ob.paths(PARENT).unwrap().inbox;
    let long = format!(
        "{{\"child_session_id\":\"foreign\",\"child_title\":\"{}\"}}",
        "y".repeat(MAX_LINE_BYTES)
    );
    let mut text = fs::read_to_string(&inbox).unwrap();
    text.push_str(&long);
    text.push('\n');
    fs::write(&inbox, &text).unwrap();

    // A commit meanwhile appends after it (protocol v2: it never reads
    // the inbox); the drain sets the long line aside.
    ob.commit(PARENT, finished("b", "s")).unwrap();
    let after_commit = fs::read_to_string(&inbox).unwrap();
    assert_eq!(after_commit.lines().count(), 3);

    let drained = ob.drain(PARENT).unwrap();
    assert_eq!(children(&drained.records), ["a", "b"]);
    assert_eq!(drained.bad_lines.len(), 1);
    assert_eq!(drained.bad_lines[0].reason, BadLineReason::TooLong);
    assert_eq!(drained.bad_lines[0].len, long.len() as u64);

    let quarantines: Vec<_> = fs::read_dir(inbox.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".quarantine-"))
        .collect();
    // One: the drain's (protocol v2's commit does not read the inbox).
    assert_eq!(quarantines.len(), 1, "{quarantines:?}");
    for q in quarantines {
        assert_eq!(fs::read_to_string(q).unwrap(), format!("{long}\n"));
    }
    // The next drain is not blocked.
    ob.commit(PARENT, finished("c", "s")).unwrap();
    assert_eq!(children(&ob.drain(PARENT).unwrap().records), ["c"]);
}

#[test]
fn parent_ids_are_validated_and_stay_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let ob = open(&root);
    for bad in ["", "   ", "a\0b"] {
        let err = ob.commit(bad, finished("c", "s")).unwrap_err();
        assert!(
            matches!(err, Error::InvalidParentId { .. }),
            "{bad:?}: {err}"
        );
        assert!(ob.drain(bad).is_err());
        assert!(ob.has_pending(bad).is_err());
    }
    for hostile in ["../../etc/x", "a/b", "with space", "..", "/abs/path"] {
        ob.commit(hostile, finished("c", "s")).unwrap();
        let paths = ob.paths(hostile).unwrap();
        assert!(paths.inbox.starts_with(root.join("inboxes")));
        assert_eq!(paths.inbox.parent().unwrap(), root.join("inboxes"));
        assert_eq!(children(&ob.drain(hostile).unwrap().records), ["c"]);
    }
    // Nothing was written outside the root.
    let outside: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, ["root"]);
}

#[test]
fn a_drain_that_dies_after_staging_delivers_everything_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultIo::new(StdIo::new());
    let ob = Outbox::open_with(dir.path(), io.clone()).unwrap();
    for c in ["a", "b", "c"] {
        ob.commit(PARENT, finished(c, "s")).unwrap();
    }
    // The drain's first new file is the ledger's temp file (protocol v2:
    // the claim is a rename): failing it stops the drain after phase 1.
    io.arm(FaultPlan::once(0, Fault::EIO).counting(OpKindSet::of([OpKind::CreateNew])));
    let err = ob.drain(PARENT).unwrap_err();
    assert!(err.to_string().contains("consumed-turns"), "{err}");
    let paths = ob.paths(PARENT).unwrap();
    assert!(paths.claimed.exists() && !paths.inbox.exists());
    assert!(ob.has_pending(PARENT).unwrap());

    io.disarm();
    let drained = ob.drain(PARENT).unwrap();
    assert_eq!(children(&drained.records), ["a", "b", "c"]);
    assert_eq!(drained.recovered, 3);
    assert!(!paths.claimed.exists());
}

#[test]
fn a_drain_that_dies_after_the_ledger_write_delivers_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultIo::new(StdIo::new());
    let ob = Outbox::open_with(dir.path(), io.clone()).unwrap();
    for c in ["a", "b"] {
        ob.commit(PARENT, finished(c, "s")).unwrap();
    }
    // Removals in a drain (protocol v2: the claim is a rename): the WAL
    // (#0), after the ledger is durable.
    io.arm(FaultPlan::once(0, Fault::EIO).counting(OpKindSet::of([OpKind::RemoveFile])));
    // The ledger is durable by then, so the drain succeeds (the records are
    // the caller's) and reports the leftover WAL instead of failing.
    let drained = ob.drain(PARENT).unwrap();
    assert_eq!(children(&drained.records), ["a", "b"]);
    let cleanup = drained.cleanup_error.unwrap().to_string();
    assert!(cleanup.contains("claimed"), "{cleanup}");
    io.disarm();
    let paths = ob.paths(PARENT).unwrap();
    assert!(
        paths.claimed.exists(),
        "the WAL survived the failed removal"
    );
    let again = ob.drain(PARENT).unwrap();
    assert!(again.records.is_empty());
    assert_eq!(again.recovered, 2);
    assert_eq!(again.already_consumed, 2);
    assert!(!paths.claimed.exists());
}

#[test]
fn drain_with_marks_nothing_when_delivery_fails() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(dir.path());
    ob.commit(PARENT, finished("a", "s")).unwrap();
    let err = ob.drain_with(PARENT, |records| {
        assert_eq!(children(records), ["a"]);
        Err("downstream unavailable")
    });
    assert!(matches!(
        err,
        Err(outbox::DrainWithError::Delivery("downstream unavailable"))
    ));
    let mut seen = Vec::new();
    ob.drain_with(PARENT, |records| {
        seen.extend(records.iter().cloned());
        Ok::<_, ()>(())
    })
    .unwrap();
    assert_eq!(children(&seen), ["a"]);
    let mut called = false;
    ob.drain_with(PARENT, |_| {
        called = true;
        Ok::<_, ()>(())
    })
    .unwrap();
    assert!(!called, "nothing pending: delivery is not called");
}

#[test]
fn a_failed_ledger_fsync_in_drain_is_an_error_and_the_records_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultIo::new(StdIo::new());
    let ob = Outbox::open_with(dir.path(), io.clone()).unwrap();
    ob.commit(PARENT, finished("a", "s")).unwrap();
    // Directory fsyncs in a first drain (protocol v2: the claim needs
    // none): the new ledger's (#0). Its rename has happened when #0 fails;
    // the caller gets an error, so the marks must not stick.
    io.arm(FaultPlan::once(0, Fault::EIO).counting(OpKindSet::of([OpKind::SyncDir])));
    let err = ob.drain(PARENT).unwrap_err();
    assert!(err.to_string().starts_with("fsync directory"), "{err}");
    io.disarm();
    assert_eq!(children(&ob.drain(PARENT).unwrap().records), ["a"]);
}

#[test]
fn sweeps_and_forgetting_a_child() {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(2_000_000_000);
    let ob = open(dir.path()).with_clock(move || now);
    let mut old = Record::transition("old", "running", "waiting");
    old.timestamp = outbox::Timestamp::from_unix(2_000_000_000 - 8 * 24 * 3600, 0, 0).unwrap();
    let mut fresh = Record::transition("fresh", "running", "waiting");
    fresh.timestamp = outbox::Timestamp::from_unix(2_000_000_000 - 3600, 0, 7200).unwrap();
    ob.commit(PARENT, old).unwrap();
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

    assert_eq!(children(&ob.drain(PARENT).unwrap().records), ["fresh"]);
    // Forget the child: the same turn is then deliverable again.
    assert_eq!(ob.forget_child(PARENT, "fresh").unwrap(), 1);
    assert_eq!(ob.forget_child(PARENT, "fresh").unwrap(), 0);
    let mut again = Record::transition("fresh", "running", "waiting");
    again.timestamp = outbox::Timestamp::from_unix(2_000_000_000, 0, 0).unwrap();
    ob.commit(PARENT, again).unwrap();
    assert_eq!(children(&ob.drain(PARENT).unwrap().records), ["fresh"]);
}

#[test]
fn the_ledger_forgets_turns_after_fourteen_days() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = std::time::UNIX_EPOCH + std::time::Duration::from_secs(2_000_000_000);
    let ob = open(dir.path()).with_clock(move || t0);
    ob.commit(PARENT, finished("a", "s")).unwrap();
    ob.drain(PARENT).unwrap();
    // A live parent drains in between. (One that drained nothing for a
    // whole TTL cannot be told from a clock stepped forward: its ledger is
    // shifted forward, not emptied; see the crate docs.)
    let week = t0 + outbox::LEDGER_TTL / 2;
    let ob_week = open(dir.path()).with_clock(move || week);
    ob_week.commit(PARENT, finished("m", "s")).unwrap();
    ob_week.drain(PARENT).unwrap();
    let later = t0 + outbox::LEDGER_TTL + std::time::Duration::from_secs(1);
    let ob_later = open(dir.path()).with_clock(move || later);
    ob_later.commit(PARENT, finished("b", "s")).unwrap();
    ob_later.drain(PARENT).unwrap();
    // Protocol v2's ledger is append-only: read what it remembers, not its
    // bytes. a's turn was forgotten, m's and b's are remembered.
    for c in ["a", "m", "b"] {
        ob_later.commit(PARENT, finished(c, "s")).unwrap();
    }
    assert_eq!(children(&ob_later.drain(PARENT).unwrap().records), ["a"]);
}

#[test]
fn the_handover_state_round_trips_durably_and_reads_the_older_counter() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(dir.path());
    assert_eq!(ob.handover(PARENT).unwrap(), Handover::default());
    let state = Handover {
        blocks: 2,
        session_id: "s1".into(),
        surface: Some(Surface::StopBlock),
        shown: vec!["c1@k".into()],
        delivery: String::new(),
        shown_at: 7,
        emitted: true,
    };
    ob.set_handover(PARENT, &state).unwrap();
    assert_eq!(open(dir.path()).handover(PARENT).unwrap(), state);
    let path = ob.paths(PARENT).unwrap().stop_blocks;
    let file: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(file["count"], 2, "the older counter's field: {file}");
    // An older binary's file: the counter, nothing shown.
    fs::write(&path, "{\"count\":2}").unwrap();
    let read = ob.handover(PARENT).unwrap();
    assert_eq!((read.blocks, read.awaits_confirmation()), (2, false));
    // An unreadable one: nothing shown (shown again, never lost).
    fs::write(&path, "{\"count\":").unwrap();
    assert_eq!(ob.handover(PARENT).unwrap(), Handover::default());
}

#[test]
fn a_record_both_in_the_wal_and_the_inbox_is_staged_once() {
    // A crash can undo the inbox unlink that followed a durable WAL write:
    // both files then hold the same record.
    let dir = tempfile::tempdir().unwrap();
    let ob = open(dir.path());
    ob.commit(PARENT, finished("a", "s")).unwrap();
    let paths = ob.paths(PARENT).unwrap();
    fs::copy(&paths.inbox, &paths.wal).unwrap();
    let failed = ob.drain_with(PARENT, |records| {
        assert_eq!(children(records), ["a"]);
        Err("not now")
    });
    assert!(failed.is_err());
    // agent-deck's WAL and the inbox were merged into the claim.
    assert!(!paths.wal.exists());
    let wal = fs::read_to_string(&paths.claimed).unwrap();
    assert_eq!(wal.lines().count(), 1, "{wal}");
    assert_eq!(children(&ob.drain(PARENT).unwrap().records), ["a"]);
}

#[test]
fn staging_once_keeps_the_collapse_rule_for_equal_timestamps() {
    // The union is WAL then inbox; of records of one child with the same
    // timestamp the later one wins. Dropping the inbox copy of a record the
    // WAL holds earlier would let the WAL's later tie win instead.
    let dir = tempfile::tempdir().unwrap();
    let ob = open(dir.path());
    let paths = ob.paths(PARENT).unwrap();
    let line = |status: &str| {
        format!(
            r#"{{"child_session_id":"a","to_status":"{status}","timestamp":"2026-11-28T11:20:59Z"}}"#
        )
    };
    fs::write(
        &paths.wal,
        format!("{}\n{}\n", line("first"), line("second")),
    )
    .unwrap();
    fs::write(&paths.inbox, format!("{}\n", line("first"))).unwrap();
    let drained = ob.drain(PARENT).unwrap().records;
    assert_eq!(drained.len(), 1);
    assert_eq!(drained[0].to_status, "first");
}
