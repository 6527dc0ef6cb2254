//! The typed state of a failed drain's records ([`RecordsState`]) is true
//! in both directions: records said to be pending come again, records said
//! to stay marked consumed never do, whatever fault hit the ledger write
//! and its undo, and whether the failing write wrote nothing or a part.

use std::collections::BTreeSet;
use std::convert::Infallible;

use outbox::{DrainWithError, Error, Outbox, Record, RecordsState};
use outbox_sim::{CrashIo, Fault, FaultIo, FaultPlan, OpKind, OpKindSet};

use crate::util::{PARENT, SIM_ROOT as ROOT, log, record};

fn children(records: &[Record]) -> BTreeSet<String> {
    records.iter().map(|r| r.child_session_id.clone()).collect()
}

/// A root whose ledger exists (so the next drain appends to it), with
/// `w1`, `w2` and `w3` pending.
fn setup() -> CrashIo {
    let disk = CrashIo::new();
    disk.install_dir(ROOT);
    let ob = Outbox::open_with(ROOT, disk.clone()).unwrap();
    ob.commit(PARENT, record("w0")).unwrap();
    assert_eq!(ob.drain(PARENT).unwrap().records.len(), 1);
    for c in ["w1", "w2", "w3"] {
        ob.commit(PARENT, record(c)).unwrap();
    }
    disk
}

/// Checks what a failed drain's error says against what the next drain
/// (no fault) delivers; returns the state, or why it lied.
fn judge(e: &Error, staged: &BTreeSet<String>, again: &BTreeSet<String>) -> Result<(), String> {
    let carried = children(e.records());
    match e.records_state() {
        RecordsState::Pending => {
            if again != staged {
                return Err(format!(
                    "said Pending, but the next drain delivered {again:?} of {staged:?}"
                ));
            }
        }
        RecordsState::Consumed => {
            if carried.is_empty() || !carried.is_disjoint(again) {
                return Err(format!(
                    "said Consumed for {carried:?}, but the next drain delivered {again:?}"
                ));
            }
            let accounted: BTreeSet<String> = carried.union(again).cloned().collect();
            if &accounted != staged {
                return Err(format!(
                    "said Consumed for {carried:?}; the next drain delivered {again:?}; \
                     {staged:?} were staged"
                ));
            }
        }
        RecordsState::MaybeConsumed => {
            if carried.is_empty() {
                return Err("said MaybeConsumed without carrying the records".into());
            }
        }
        other => return Err(format!("unexpected state {other:?}")),
    }
    Ok(())
}

/// For every operation `k` of a drain, a persistent fault from `k` on
/// (so the undo fails too), counting `kinds`, with writes that write
/// nothing or half: the error's state matches what the next drain does.
fn every_persistent_fault(kinds: OpKindSet, partial: bool, with: bool) {
    let mut checked = 0;
    for k in 0..40 {
        for fault in [Fault::ENOSPC, Fault::EIO] {
            let disk = setup();
            let faults = FaultIo::new(disk.clone());
            let ob = Outbox::open_with(ROOT, faults.clone()).unwrap();
            let staged = children(&ob.peek(PARENT).unwrap());
            let mut plan = FaultPlan::persistent(k, fault).counting(kinds);
            if partial {
                plan = plan.with_partial_write();
            }
            let start = faults.log_len();
            faults.arm(plan);
            let result = if with {
                ob.drain_with(PARENT, |_| Ok::<_, Infallible>(()))
                    .map_err(|e| match e {
                        DrainWithError::Outbox(e) => e,
                        DrainWithError::Delivery(never) => match never {},
                    })
            } else {
                ob.drain(PARENT)
            };
            faults.disarm();
            let ops = faults.ops_since(start);
            let Err(e) = result else {
                continue;
            };
            checked += 1;
            let fresh = Outbox::open_with(ROOT, disk.clone()).unwrap();
            let again = children(&fresh.drain(PARENT).unwrap().records);
            if let Err(why) = judge(&e, &staged, &again) {
                panic!(
                    "{plan:?} (drain_with: {with}): {why}\nerror: {e}\nops:\n{}",
                    log(&ops)
                );
            }
        }
    }
    // At least the append's own write failed, under each fault.
    assert!(checked >= 2, "only {checked} drains failed");
}

#[test]
fn a_ledger_append_that_wrote_nothing_leaves_the_records_pending_and_says_so() {
    // ENOSPC on the append's write (nothing written) and on every write
    // after it (the undo's too): the marks never reached the file.
    let writes = OpKindSet::of([OpKind::WriteAll]);
    every_persistent_fault(writes, false, false);
    every_persistent_fault(writes, false, true);
}

#[test]
fn a_ledger_append_that_wrote_part_says_which_records_stay_marked() {
    let writes = OpKindSet::of([OpKind::WriteAll]);
    every_persistent_fault(writes, true, false);
    every_persistent_fault(writes, true, true);
}

#[test]
fn a_drain_whose_every_later_operation_fails_says_what_became_of_its_records() {
    // Every kind counted: the fdatasync, the undo's reads, creates,
    // renames and directory fsyncs fail in turn.
    for partial in [false, true] {
        every_persistent_fault(OpKindSet::ALL, partial, false);
        every_persistent_fault(OpKindSet::ALL, partial, true);
    }
}
