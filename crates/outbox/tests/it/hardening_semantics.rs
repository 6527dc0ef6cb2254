//! Issue 10, the drain/commit semantics: defects 1, 2, 5, 7, 9, 11 and 13,
//! one or more tests each, every one written to fail before its fix.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use outbox::io::Io;
use outbox::{Error, LEDGER_TTL, Outbox, Record, Timestamp};
use outbox_sim::{CrashIo, Fault, FaultIo, FaultPlan, OpKind, OpKindSet};

use crate::util::{PARENT, SIM_ROOT as ROOT};

fn finished(child: &str, summary: &str) -> Record {
    let mut r = Record::finished(child, "success");
    r.done_summary = summary.into();
    r
}

fn sim() -> (FaultIo<CrashIo>, Outbox<FaultIo<CrashIo>>) {
    let fs = CrashIo::new();
    fs.install_dir(ROOT);
    let fio = FaultIo::new(fs);
    let ob = Outbox::open_with(ROOT, fio.clone()).unwrap();
    (fio, ob)
}

fn children(records: &[Record]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r.child_session_id.as_str())
        .collect()
}

fn lines_of<I: Io>(ob: &Outbox<I>, path: &Path) -> usize {
    let Some(mut reader) = ob.io().open_read(path).unwrap() else {
        return 0;
    };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut bytes).unwrap();
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
}

// --------------------------------------------------------------------------
// Defect 1: an error return never leaves marks for records the caller did
// not get, and every message says what is true.
// --------------------------------------------------------------------------

/// `drain_with` delivered, then the ledger's directory fsync failed: the
/// error says "not consumed", so the next drain must deliver them again.
#[test]
fn drain_with_whose_ledger_dir_fsync_fails_leaves_the_records_pending() {
    let (fio, ob) = sim();
    ob.commit(PARENT, finished("c1", "one")).unwrap();
    // Directory fsyncs of a first drain (protocol v2: the claim is a
    // rename, no fsync): the new ledger's (0).
    fio.arm(FaultPlan::once(0, Fault::EIO).counting(OpKindSet::of([OpKind::SyncDir])));
    let mut delivered = 0;
    let err = ob
        .drain_with(PARENT, |records| {
            delivered += records.len();
            Ok::<(), std::io::Error>(())
        })
        .unwrap_err();
    fio.disarm();
    assert_eq!(delivered, 1);
    assert!(err.to_string().contains("fsync directory"), "{err}");
    assert!(ob.has_pending(PARENT).unwrap());
    assert_eq!(children(&ob.peek(PARENT).unwrap()), ["c1"]);
    assert_eq!(children(&ob.drain(PARENT).unwrap().records), ["c1"]);
}

/// Plain `drain`: the ledger's directory fsync fails and so does every
/// later rename, so the old ledger cannot be put back. The marks stay, and
/// the error must say so and hand over the records it marked.
#[test]
fn plain_drain_that_cannot_undo_its_marks_says_so_and_returns_the_records() {
    let (fio, ob) = sim();
    ob.commit(PARENT, finished("c1", "one")).unwrap();
    ob.commit(PARENT, finished("c2", "two")).unwrap();
    // Renames and directory fsyncs of a first drain (protocol v2): the
    // claim's rename (0), ledger rename (1), ledger dir fsync (2): fail
    // from 2 on.
    fio.arm(
        FaultPlan::persistent(2, Fault::EIO)
            .counting(OpKindSet::of([OpKind::Rename, OpKind::SyncDir])),
    );
    let err = ob.drain(PARENT).unwrap_err();
    fio.disarm();
    let message = err.to_string();
    let again = ob.drain(PARENT).unwrap().records;
    if again.is_empty() {
        // The marks stayed: the error is the only place the records are.
        assert!(
            message.contains("marked consumed") && message.contains("c1"),
            "{message}"
        );
        match &err {
            Error::MarksKept {
                records,
                marks_visible,
                ..
            } => {
                assert!(*marks_visible);
                assert_eq!(children(records), ["c1", "c2"]);
            }
            other => panic!("expected MarksKept, got {other:?}"),
        }
    } else {
        assert_eq!(children(&again), ["c1", "c2"]);
    }
}

/// Plain `drain`, the ledger's directory fsync fails once: the old ledger
/// is put back, the error is plain and the records stay pending.
#[test]
fn plain_drain_whose_ledger_dir_fsync_fails_once_leaves_the_records_pending() {
    let (fio, ob) = sim();
    ob.commit(PARENT, finished("c1", "one")).unwrap();
    // Protocol v2: the ledger's is the drain's first directory fsync.
    fio.arm(FaultPlan::once(0, Fault::EIO).counting(OpKindSet::of([OpKind::SyncDir])));
    let err = ob.drain(PARENT).unwrap_err();
    fio.disarm();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert_eq!(children(&ob.drain(PARENT).unwrap().records), ["c1"]);
}

/// Plain `drain`: every directory fsync fails from the ledger's on, so the
/// old ledger is put back but not durably. The records are pending now and
/// the error says a crash may still mark them.
#[test]
fn plain_drain_whose_undo_is_not_durable_says_so_and_leaves_the_records_pending() {
    let (fio, ob) = sim();
    ob.commit(PARENT, finished("c1", "one")).unwrap();
    // Protocol v2: the ledger's is the drain's first directory fsync.
    fio.arm(FaultPlan::persistent(0, Fault::EIO).counting(OpKindSet::of([OpKind::SyncDir])));
    let err = ob.drain(PARENT).unwrap_err();
    fio.disarm();
    match &err {
        Error::MarksKept {
            marks_visible: false,
            records,
            ..
        } => assert_eq!(children(records), ["c1"]),
        other => panic!("expected MarksKept, not visible: {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("not marked consumed now") && message.contains("crash"),
        "{message}"
    );
    assert_eq!(children(&ob.drain(PARENT).unwrap().records), ["c1"]);
}

/// `drain_with`, the disk fails persistently after delivery: the marks
/// cannot be undone; the error says the records are marked consumed.
#[test]
fn drain_with_that_cannot_undo_its_marks_says_so() {
    let (fio, ob) = sim();
    ob.commit(PARENT, finished("c1", "one")).unwrap();
    // Protocol v2: the claim's rename (0), the ledger's rename (1) and
    // directory fsync (2).
    fio.arm(
        FaultPlan::persistent(2, Fault::EIO)
            .counting(OpKindSet::of([OpKind::Rename, OpKind::SyncDir])),
    );
    let err = ob
        .drain_with(PARENT, |_| Ok::<(), std::io::Error>(()))
        .unwrap_err();
    fio.disarm();
    let message = err.to_string();
    assert!(
        message.contains("marked consumed") && message.contains("c1"),
        "{message}"
    );
    assert!(ob.drain(PARENT).unwrap().records.is_empty());
}

// --------------------------------------------------------------------------
// Defect 2: a real second turn is not swallowed; pending/peek agree with
// drain; commit says when its turn is already consumed.
// --------------------------------------------------------------------------

#[test]
fn a_second_finished_turn_with_a_new_output_hash_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(dir.path()).unwrap();
    let mut first = finished("c1", "tests pass");
    first.last_output_hash = "h1".into();
    let committed = ob.commit(PARENT, first.clone()).unwrap();
    assert!(!committed.already_consumed);
    assert_eq!(ob.drain(PARENT).unwrap().records.len(), 1);

    // The same status and summary, but a new output: a new turn.
    let mut second = first.clone();
    second.last_output_hash = "h2".into();
    let committed = ob.commit(PARENT, second).unwrap();
    assert!(!committed.already_consumed);
    assert!(ob.has_pending(PARENT).unwrap());
    assert_eq!(ob.peek(PARENT).unwrap().len(), 1);
    let drained = ob.drain(PARENT).unwrap();
    assert_eq!(drained.records.len(), 1);
    assert_eq!(drained.records[0].last_output_hash, "h2");
    // The stored fingerprint is still agent-deck's (hash not part of it).
    assert_eq!(
        drained.records[0].turn_fingerprint,
        outbox::turn_fingerprint(&drained.records[0])
    );

    // The first turn again (same hash): a re-emit, consumed.
    let committed = ob.commit(PARENT, first).unwrap();
    assert!(committed.already_consumed);
    assert!(!ob.has_pending(PARENT).unwrap());
    assert!(ob.drain(PARENT).unwrap().records.is_empty());
}

/// A re-emit that cannot be told apart from its turn: commit says so, and
/// pending / peek agree with the drain that delivers nothing.
#[test]
fn pending_and_peek_agree_with_drain_for_an_already_consumed_turn() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(dir.path()).unwrap();
    ob.commit(PARENT, Record::transition("c1", "running", "waiting"))
        .unwrap();
    assert_eq!(ob.drain(PARENT).unwrap().records.len(), 1);
    let committed = ob
        .commit(PARENT, Record::transition("c1", "running", "waiting"))
        .unwrap();
    assert!(committed.already_consumed);
    assert!(ob.peek(PARENT).unwrap().is_empty());
    assert!(!ob.has_pending(PARENT).unwrap());
    assert!(ob.drain(PARENT).unwrap().records.is_empty());

    // With a distinct output hash the flip is a new turn.
    let mut again = Record::transition("c1", "running", "waiting");
    again.last_output_hash = "h9".into();
    assert!(!ob.commit(PARENT, again).unwrap().already_consumed);
    assert!(ob.has_pending(PARENT).unwrap());
    assert_eq!(ob.drain(PARENT).unwrap().records.len(), 1);
}

/// Lines from agent-deck's files keep their stored `turn_fingerprint` as
/// their identity: two lines with one stored fingerprint are one turn,
/// whatever their hashes.
#[test]
fn agent_deck_lines_keep_their_stored_fingerprint_as_identity() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(dir.path()).unwrap();
    let paths = ob.paths(PARENT).unwrap();
    let line = |hash: &str| {
        format!(
            concat!(
                r#"{{"child_session_id":"c1","child_title":"","profile":"","from_status":"","#,
                r#""to_status":"","timestamp":"2026-11-28T11:20:59Z","last_output_hash":"{}","#,
                r#""kind":"finished","done_status":"success","done_summary":"ok","#,
                r#""turn_fingerprint":"c1@00000000000000aa"}}"#,
                "\n"
            ),
            hash
        )
    };
    std::fs::write(&paths.inbox, line("h1")).unwrap();
    assert_eq!(ob.drain(PARENT).unwrap().records.len(), 1);
    std::fs::write(&paths.inbox, line("h2")).unwrap();
    assert!(!ob.has_pending(PARENT).unwrap());
    assert!(ob.drain(PARENT).unwrap().records.is_empty());
}

// --------------------------------------------------------------------------
// Defect 5: last wins by commit order; ledger pruning survives clock steps.
// --------------------------------------------------------------------------

#[test]
fn last_wins_follows_commit_order_not_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(dir.path()).unwrap();
    let mut older_commit = finished("c1", "first");
    older_commit.timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    ob.commit(PARENT, older_commit).unwrap();
    // A failed delivery leaves it in the WAL.
    ob.drain_with(PARENT, |_| Err("down")).unwrap_err();
    // The clock stepped back: the next commit carries an earlier stamp.
    let mut newer_commit = finished("c1", "second");
    newer_commit.timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
    ob.commit(PARENT, newer_commit).unwrap();
    let peeked = ob.peek(PARENT).unwrap();
    assert_eq!(peeked.len(), 1);
    assert_eq!(peeked[0].done_summary, "second");
    let drained = ob.drain(PARENT).unwrap().records;
    assert_eq!(drained.len(), 1);
    assert_eq!(drained[0].done_summary, "second");
}

fn clocked(dir: &Path, now: &Arc<AtomicI64>) -> Outbox {
    let now = Arc::clone(now);
    Outbox::open(dir)
        .unwrap()
        .with_clock(move || UNIX_EPOCH + Duration::from_secs(now.load(Ordering::SeqCst) as u64))
}

const Y2026: i64 = 1_780_000_000;

/// A machine that booted at 1970 consumed a turn, then NTP set the clock:
/// the turn is still consumed.
#[test]
fn a_clock_corrected_forward_does_not_forget_consumed_turns() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(1_000));
    let ob = clocked(dir.path(), &now);
    let mut turn = finished("c1", "one");
    turn.timestamp = Timestamp::default();
    ob.commit(PARENT, turn.clone()).unwrap();
    assert_eq!(ob.drain(PARENT).unwrap().records.len(), 1);

    now.store(Y2026, Ordering::SeqCst);
    ob.commit(PARENT, finished("c2", "two")).unwrap();
    assert_eq!(ob.drain(PARENT).unwrap().records.len(), 1);
    // The re-emit of c1's turn is still recognised.
    ob.commit(PARENT, turn).unwrap();
    assert!(ob.drain(PARENT).unwrap().records.is_empty());
}

/// A turn consumed while the clock read 2090 is forgotten 14 days after the
/// clock was corrected, not never.
#[test]
fn entries_stamped_in_the_far_future_expire() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(3_800_000_000)); // 2090
    let ob = clocked(dir.path(), &now);
    ob.commit(PARENT, finished("c1", "one")).unwrap();
    assert_eq!(ob.drain(PARENT).unwrap().records.len(), 1);

    now.store(Y2026, Ordering::SeqCst);
    ob.commit(PARENT, finished("c2", "two")).unwrap();
    assert_eq!(ob.drain(PARENT).unwrap().records.len(), 1);
    // Still within the TTL: a re-emit is a duplicate.
    ob.commit(PARENT, finished("c1", "one")).unwrap();
    assert!(ob.drain(PARENT).unwrap().records.is_empty());

    // Days pass, with drains in between (as a live parent has).
    let day = 24 * 3600;
    for d in 1..=(LEDGER_TTL.as_secs() as i64 / day + 1) {
        now.store(Y2026 + d * day, Ordering::SeqCst);
        ob.commit(PARENT, finished("c3", &format!("day {d}")))
            .unwrap();
        ob.drain(PARENT).unwrap();
    }
    ob.commit(PARENT, finished("c1", "one")).unwrap();
    assert_eq!(children(&ob.drain(PARENT).unwrap().records), ["c1"]);
}

// --------------------------------------------------------------------------
// Defect 7: bounded ids and keys; an oversized ledger is never a reset.
// --------------------------------------------------------------------------

#[test]
fn oversized_ids_and_keys_are_refused_at_commit() {
    let (_fio, ob) = sim();
    let huge = "x".repeat(1 << 20);
    let mut r = finished(&huge, "ok");
    let err = ob.commit(PARENT, r.clone()).unwrap_err();
    assert!(err.to_string().contains("child_session_id"), "{err}");
    r.child_session_id = "c1".into();
    r.turn_fingerprint = huge.clone();
    let err = ob.commit(PARENT, r.clone()).unwrap_err();
    assert!(err.to_string().contains("turn_fingerprint"), "{err}");
    r.turn_fingerprint.clear();
    r.last_output_hash = huge.clone();
    let err = ob.commit(PARENT, r).unwrap_err();
    assert!(err.to_string().contains("last_output_hash"), "{err}");
    assert!(!ob.has_pending(PARENT).unwrap());
}

/// Five lines with 1 MB child ids (agent-deck's files have no limit): their
/// marks must stay small, so that no number of such lines (the issue's
/// reproduction: five of 14 MB) can push the ledger past its read cap.
#[test]
fn huge_keys_from_files_do_not_reset_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(dir.path()).unwrap();
    let paths = ob.paths(PARENT).unwrap();
    let mut inbox = String::new();
    for i in 0..5 {
        let child = format!("{i}{}", "k".repeat(1 << 20));
        inbox.push_str(&format!(
            r#"{{"child_session_id":"{child}","to_status":"waiting","timestamp":"2026-11-28T11:20:59Z"}}"#
        ));
        inbox.push('\n');
    }
    std::fs::write(&paths.inbox, &inbox).unwrap();
    let first = ob.drain(PARENT).unwrap();
    assert_eq!(first.records.len(), 5);
    assert!(std::fs::metadata(&paths.consumed).unwrap().len() < 1 << 20);
    // The same lines again: already consumed.
    std::fs::write(&paths.inbox, &inbox).unwrap();
    let second = ob.drain(PARENT).unwrap();
    assert!(!second.ledger_was_corrupt);
    assert!(second.records.is_empty());
}

/// A ledger over the read cap is an error, never an empty ledger.
#[test]
fn an_oversized_ledger_is_an_error_not_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(dir.path()).unwrap();
    let paths = ob.paths(PARENT).unwrap();
    ob.commit(PARENT, finished("c1", "one")).unwrap();
    assert_eq!(ob.drain(PARENT).unwrap().records.len(), 1);
    // Protocol v2's ledger, padded past the cap by one huge mark line.
    let ledger = std::fs::read_to_string(&paths.consumed).unwrap();
    let padded = format!("{ledger}[\"{}\",1]\n", "p".repeat(64 << 20));
    std::fs::write(&paths.consumed, padded).unwrap();
    // A commit cannot tell whether the turn was consumed: it fails, writing
    // nothing, and says why.
    let err = ob.commit(PARENT, finished("c1", "one")).unwrap_err();
    assert!(matches!(err, Error::LedgerTooLarge { .. }), "{err}");
    assert!(!paths.inbox.exists());
    // The same turn, written by another program.
    let mut line = serde_json::to_vec(&finished("c1", "one")).unwrap();
    line.push(b'\n');
    std::fs::write(&paths.inbox, line).unwrap();
    match ob.drain(PARENT) {
        Ok(d) => assert!(d.records.is_empty(), "a consumed turn came back"),
        Err(e) => assert!(e.to_string().contains("ledger"), "{e}"),
    }
}

// --------------------------------------------------------------------------
// Defect 9: the WAL holds at most one record per child.
// --------------------------------------------------------------------------

#[test]
fn failed_deliveries_do_not_grow_the_wal() {
    let (_fio, ob) = sim();
    let paths = ob.paths(PARENT).unwrap();
    for i in 0..20 {
        ob.commit(PARENT, finished("c1", &format!("attempt {i}")))
            .unwrap();
        ob.commit(PARENT, finished("c2", &format!("attempt {i}")))
            .unwrap();
        ob.drain_with(PARENT, |_| Err("down")).unwrap_err();
    }
    assert_eq!(lines_of(&ob, &paths.claimed), 2);
    let drained = ob.drain(PARENT).unwrap().records;
    let summaries: Vec<_> = drained.iter().map(|r| r.done_summary.as_str()).collect();
    assert_eq!(summaries, ["attempt 19", "attempt 19"]);
}

// --------------------------------------------------------------------------
// Defect 11: re-entrant calls are errors, not deadlocks.
// --------------------------------------------------------------------------

#[test]
fn reentrant_drains_and_forget_from_a_callback_are_errors() {
    let (_fio, ob) = sim();
    ob.commit(PARENT, finished("c1", "one")).unwrap();
    let mut messages = Vec::new();
    ob.drain_with(PARENT, |_| {
        let errors = [
            ob.drain(PARENT).unwrap_err(),
            ob.drain_with(PARENT, |_| Ok::<(), std::io::Error>(()))
                .map_err(|e| match e {
                    outbox::DrainWithError::Outbox(e) => e,
                    e => panic!("{e}"),
                })
                .unwrap_err(),
            ob.forget_child(PARENT, "c1").unwrap_err(),
        ];
        messages.extend(errors.iter().map(ToString::to_string));
        // Another parent and a commit of the same parent still work.
        ob.drain("parent-B").unwrap();
        ob.commit(PARENT, finished("c2", "two")).unwrap();
        Ok::<(), std::io::Error>(())
    })
    .unwrap();
    assert_eq!(messages.len(), 3);
    for m in &messages {
        assert!(m.contains("drain_with callback"), "{m}");
    }
    // Nothing is wedged afterwards.
    assert_eq!(children(&ob.drain(PARENT).unwrap().records), ["c2"]);
    assert_eq!(ob.forget_child(PARENT, "c1").unwrap(), 1);
}

// --------------------------------------------------------------------------
// Defect 13: quarantines are reported. (Protocol v2: a commit appends and
// never reads the inbox, so the drain is what sets bad lines aside.)
// --------------------------------------------------------------------------

#[test]
fn commit_reports_the_quarantine_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(dir.path()).unwrap();
    let paths = ob.paths(PARENT).unwrap();
    std::fs::write(&paths.inbox, b"{\"child_session_id\": torn\n").unwrap();
    let committed = ob.commit(PARENT, finished("c1", "one")).unwrap();
    assert!(committed.quarantined.is_empty() && committed.bad_lines.is_empty());
    let drained = ob.drain(PARENT).unwrap();
    assert_eq!(children(&drained.records), ["c1"]);
    assert_eq!(drained.quarantined.len(), 1);
    let q = &drained.quarantined[0];
    assert!(
        std::fs::read(q)
            .unwrap()
            .starts_with(b"{\"child_session_id\": torn")
    );
    assert_eq!(drained.bad_lines.len(), 1);
    // Nothing to set aside the second time.
    let committed = ob.commit(PARENT, finished("c2", "two")).unwrap();
    assert!(committed.quarantined.is_empty());
}
