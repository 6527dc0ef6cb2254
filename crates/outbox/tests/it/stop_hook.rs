//! The Stop-hook rule against faults of the simulated disk (the rule's
//! other tests are unit tests in `outbox::stop_hook`).

use std::convert::Infallible;

use outbox::stop_hook::{StopOutcome, on_stop_consume_on_print};
use outbox::{Outbox, Record};
use outbox_sim::{CrashIo, Fault, FaultIo, FaultPlan, OpKind, OpKindSet};

use crate::util::{PARENT, SIM_ROOT};

fn emit_into(out: &mut Vec<String>) -> impl FnOnce(&str) -> Result<(), Infallible> + '_ {
    |json| {
        out.push(json.to_owned());
        Ok(())
    }
}

#[test]
fn a_block_whose_marks_cannot_be_undone_stands() {
    let fs = CrashIo::new();
    fs.install_dir(SIM_ROOT);
    let fio = FaultIo::new(fs);
    let ob = Outbox::open_with(SIM_ROOT, fio.clone()).unwrap();
    ob.set_handover(PARENT, &Default::default()).unwrap();
    ob.commit(PARENT, Record::finished("c1", "done")).unwrap();
    // Renames and directory fsyncs: the counter's (0, 1), the claim's
    // rename (2; protocol v2: no fsync), the new ledger's (3, 4); from the
    // ledger's fsync on, all fail.
    fio.arm(
        FaultPlan::persistent(4, Fault::EIO)
            .counting(OpKindSet::of([OpKind::Rename, OpKind::SyncDir])),
    );
    let mut out = Vec::new();
    let outcome = on_stop_consume_on_print(&ob, PARENT, false, emit_into(&mut out)).unwrap();
    fio.disarm();
    match outcome {
        StopOutcome::BlockedNotDurable {
            records,
            blocks,
            warning,
        } => {
            assert_eq!(records.len(), 1);
            assert_eq!(blocks, 1);
            assert!(warning.contains("not durably"), "{warning}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(out.len(), 1, "the decision was emitted once");
    // The records are marked: the block is the only delivery.
    assert!(!ob.has_pending(PARENT).unwrap());
}
