//! I/O fault injection: fail the k-th `Io` operation of commit, drain and
//! drain_with with ENOSPC, EIO or EACCES, for every k, once or from k on.
//!
//! For every fault: the call returns an error naming the operation and the
//! path; a failed fsync is never retried into success (fsyncgate); once the
//! faults stop, everything committed is delivered, nothing twice outside the
//! documented windows. On the simulated file system the power is also cut
//! right after the failed call, to check that what the error left behind is
//! recoverable too. Run with `--nocapture` for the counts.

use std::path::Path;

use outbox::Record;
use outbox::io::{Io, StdIo};
use outbox::{Outbox, ParentPaths};
use outbox_sim::{CrashIo, Fault, FaultIo, FaultPlan, OpKind, OpKindSet};

use crate::util::{Audit, AuditTally, LedgerProgress, PARENT, SIM_ROOT as ROOT, log, record};

const FAULTS: [Fault; 3] = [Fault::ENOSPC, Fault::EIO, Fault::EACCES];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Commit,
    Drain,
    DrainWith,
}

/// What the state before the faulted call holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    /// Nothing pending (commit creates the inbox).
    Empty,
    /// Three pending records.
    Pending,
    /// Three pending records and a corrupt line (the drain quarantines it).
    PendingAndCorrupt,
    /// Three pending records and a WAL of three more, left by a drain that
    /// died after staging.
    PendingAndWal,
}

/// The words an error message uses for an operation kind.
fn op_words(kind: OpKind) -> &'static [&'static str] {
    match kind {
        OpKind::CreateNew | OpKind::CreateDirAll => &["create"],
        OpKind::WriteAll => &["write"],
        OpKind::SyncFile | OpKind::SyncDir => &["fsync"],
        OpKind::SyncData => &["fdatasync"],
        OpKind::OpenAppend => &["open"],
        OpKind::OpenRead => &["open", "read"],
        OpKind::Rename => &["rename"],
        OpKind::RemoveFile => &["remove"],
        OpKind::FileLen => &["stat"],
        OpKind::ListDir => &["list"],
        OpKind::Lock => &["lock"],
    }
}

/// Counters of one family of runs.
#[derive(Debug, Default)]
struct Counts {
    runs: usize,
    faults_injected: usize,
    crash_states: usize,
    tally: AuditTally,
}

impl Counts {
    fn add(&mut self, t: AuditTally) {
        self.tally.lost_in_window += t.lost_in_window;
        self.tally.duplicated_in_window += t.duplicated_in_window;
    }
}

/// Commits the setup's records through `ob` (no fault armed).
fn prepare<I: Io>(ob: &Outbox<I>, setup: Setup, audit: &mut Audit) {
    if setup == Setup::PendingAndWal {
        // w0..w2, which the caller then moves into a WAL.
        for i in 0..3 {
            let child = format!("w{i}");
            ob.commit(PARENT, record(&child)).unwrap();
            audit.committed(child);
        }
    }
    if setup != Setup::Empty {
        for i in 0..3 {
            let child = format!("c{i}");
            ob.commit(PARENT, record(&child)).unwrap();
            audit.committed(child);
        }
    }
}

/// Runs `action` on `ob` with `plan` armed on `fio`, checks the error and
/// the fsync discipline, and records the outcome in `audit`.
fn faulted_call<I: Io>(
    ob: &Outbox<FaultIo<I>>,
    fio: &FaultIo<I>,
    action: Action,
    plan: FaultPlan,
    audit: &mut Audit,
) -> Result<(), String> {
    let ledger = ob.paths(PARENT).unwrap().consumed;
    let start = fio.log_len();
    fio.arm(plan);
    let mut batch: Option<Vec<Record>> = None;
    let result: Result<(), String> = match action {
        Action::Commit => match ob.commit(PARENT, record("new")) {
            Ok(_) => {
                audit.committed("new");
                Ok(())
            }
            Err(e) => {
                audit.uncertain("new");
                Err(e.to_string())
            }
        },
        Action::Drain => match ob.drain(PARENT) {
            Ok(d) => {
                audit.delivered(&d.records);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
        Action::DrainWith => {
            let r = ob.drain_with(PARENT, |records| {
                batch = Some(records.to_vec());
                Ok::<(), std::convert::Infallible>(())
            });
            if let Some(b) = &batch {
                audit.delivered(b);
            }
            r.map(drop).map_err(|e| e.to_string())
        }
    };
    fio.disarm();
    let ops = fio.ops_since(start);
    let context = || format!("{action:?} under {plan:?}:\n{}", log(&ops));
    let first_fault = ops.iter().find(|o| o.injected);

    match (first_fault, &result) {
        (None, Ok(())) => {}
        (None, Err(e)) => return Err(format!("error without a fault: {e}\n{}", context())),
        // The one fault a call may absorb: unlinking the WAL after the
        // ledger that consumes its records is durable (the leftover WAL is
        // harmless; failing the call would lose the batch to the caller).
        (Some(f), Ok(()))
            if f.kind == OpKind::RemoveFile
                && f.path == ob.paths(PARENT).unwrap().claimed
                && LedgerProgress::of(&ops, &ledger).durable => {}
        // And ending a rewritten ledger's placeholder line once its
        // directory entry is durable (unsynced: when it fails, the next
        // append ends it and fsyncs the directory itself).
        (Some(f), Ok(()))
            if matches!(f.kind, OpKind::OpenAppend | OpKind::WriteAll)
                && f.path == ledger
                && LedgerProgress::of(&ops, &ledger).durable => {}
        (Some(f), Ok(())) => {
            return Err(format!("the fault on {f} was swallowed: Ok\n{}", context()));
        }
        (Some(f), Err(msg)) => {
            let path = f.path.display().to_string();
            let named = op_words(f.kind).iter().any(|w| msg.contains(w));
            if !msg.contains(&path) || !named {
                return Err(format!(
                    "the error {msg:?} does not name the operation and path of {f}\n{}",
                    context()
                ));
            }
        }
    }

    // fsyncgate: a failed fsync of a file is never followed by another
    // fsync of that file in the same call (it would report success for data
    // the kernel may have dropped), and the call fails.
    for (i, f) in ops.iter().enumerate() {
        if f.injected && f.kind == OpKind::SyncFile {
            if let Some(again) = ops[i + 1..]
                .iter()
                .find(|o| o.kind == OpKind::SyncFile && o.path == f.path)
            {
                return Err(format!(
                    "fsync of {} retried after it failed: {again}\n{}",
                    f.path.display(),
                    context()
                ));
            }
            if result.is_ok() {
                return Err(format!(
                    "a failed fsync was retried into success\n{}",
                    context()
                ));
            }
        }
    }

    if result.is_err() {
        let progress = LedgerProgress::of(&ops, &ledger);
        match action {
            Action::Commit => {}
            // The plain drain's window: once the ledger rename is issued the
            // batch may be lost to the caller. The drain puts the old ledger
            // back when only the ledger's directory fsync failed, so a single
            // fault loses nothing; only a persistent fault (the restore fails
            // too) may.
            Action::Drain => {
                if progress.renamed && plan.persist {
                    audit.allow_loss_of_pending();
                }
            }
            // drain_with's window: delivered, then an error. An error means
            // the records stay pending (a ledger that became visible is put
            // back), so they come again.
            Action::DrainWith => {
                if let Some(b) = &batch {
                    audit.allow_duplicate_of(b);
                }
            }
        }
    }
    Ok(())
}

/// Drains until nothing is left, with no fault armed, and checks.
fn recover<I: Io>(ob: &Outbox<I>, action: Action, mut audit: Audit) -> Result<AuditTally, String> {
    for _ in 0..2 {
        match action {
            Action::DrainWith => {
                ob.drain_with(PARENT, |records| {
                    audit.delivered(records);
                    Ok::<(), std::convert::Infallible>(())
                })
                .map_err(|e| format!("recovery drain_with failed: {e}"))?;
            }
            _ => {
                let d = ob
                    .drain(PARENT)
                    .map_err(|e| format!("recovery drain failed: {e}"))?;
                audit.delivered(&d.records);
            }
        }
    }
    if ob.has_pending(PARENT).map_err(|e| e.to_string())? {
        return Err("records still pending after recovery".into());
    }
    audit.check()
}

/// How many operations `action` issues, on a run without a fault.
fn ops_of<I: Io>(
    ob: &Outbox<FaultIo<I>>,
    fio: &FaultIo<I>,
    action: Action,
    audit: &mut Audit,
) -> usize {
    let start = fio.log_len();
    let never = FaultPlan::once(usize::MAX, Fault::EIO);
    faulted_call(ob, fio, action, never, audit).unwrap();
    fio.log_len() - start
}

fn plans(k: usize, fault: Fault) -> [FaultPlan; 2] {
    [
        FaultPlan::once(k, fault),
        FaultPlan::persistent(k, fault).with_partial_write(),
    ]
}

/// The simulated file system: every action × setup × fault × k × mode, and
/// a power cut after each failed call.
fn sim_family(action: Action) -> Counts {
    let setups: &[Setup] = match action {
        Action::Commit => &[Setup::Empty, Setup::Pending, Setup::PendingAndCorrupt],
        _ => &[
            Setup::Pending,
            Setup::PendingAndCorrupt,
            Setup::PendingAndWal,
        ],
    };
    let mut counts = Counts::default();
    for &setup in setups {
        // The state before the call, built once and forked per run.
        let base = CrashIo::new();
        base.install_dir(ROOT);
        let mut audit = Audit::default();
        {
            let ob = Outbox::open_with(ROOT, base.clone()).unwrap();
            prepare(&ob, setup, &mut audit);
            let p = ob.paths(PARENT).unwrap();
            if setup == Setup::PendingAndWal {
                // Move the w-records into a WAL, as a drain that died after
                // staging leaves it, and leave the c-records pending.
                let inbox = base.current_image().file(&p.inbox).unwrap().to_vec();
                let (w, c): (Vec<&[u8]>, Vec<&[u8]>) = inbox
                    .split_inclusive(|&b| b == b'\n')
                    .partition(|l| l.starts_with(b"{\"child_session_id\":\"w"));
                base.install_file(&p.wal, &w.concat());
                base.install_file(&p.inbox, &c.concat());
            }
            if setup == Setup::PendingAndCorrupt {
                let mut inbox = base.current_image().file(&p.inbox).unwrap().to_vec();
                inbox.extend_from_slice(b"{\"child_session_id\": torn\n");
                base.install_file(&p.inbox, &inbox);
            }
        }
        let opened = |io: CrashIo| -> (FaultIo<CrashIo>, Outbox<FaultIo<CrashIo>>) {
            let fio = FaultIo::new(io);
            let ob = Outbox::open_with(ROOT, fio.clone()).unwrap();
            (fio, ob)
        };
        let (fio, ob) = opened(base.fork());
        let n = ops_of(&ob, &fio, action, &mut audit.clone());
        for fault in FAULTS {
            for k in 0..n {
                for plan in plans(k, fault) {
                    let world = base.fork();
                    let (fio, ob) = opened(world.clone());
                    let mut a = audit.clone();
                    let name = format!("{action:?}, setup {setup:?}, {fault} at op {k} ({plan:?})");
                    faulted_call(&ob, &fio, action, plan, &mut a)
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    counts.runs += 1;
                    counts.faults_injected += fio.injected();

                    // The power is cut right after the failed call.
                    for image in world.crash_images(8) {
                        counts.crash_states += 1;
                        let (_, rebooted) = opened(CrashIo::from_image(&image));
                        let t = recover(&rebooted, action, a.clone())
                            .unwrap_or_else(|e| panic!("{name}, then a power cut:\n{image}\n{e}"));
                        counts.add(t);
                    }
                    // Or the system keeps running and the faults stop.
                    let t = recover(&ob, action, a)
                        .unwrap_or_else(|e| panic!("{name}, then recovery: {e}"));
                    counts.add(t);
                }
            }
        }
    }
    println!(
        "{action:?} on the simulated fs: {} faulted calls, {} faults injected, {} crash states \
         after a fault; lost in the documented window: {}, duplicated in the documented window: {}",
        counts.runs,
        counts.faults_injected,
        counts.crash_states,
        counts.tally.lost_in_window,
        counts.tally.duplicated_in_window
    );
    counts
}

#[test]
fn every_fault_of_commit_on_the_simulated_fs() {
    let c = sim_family(Action::Commit);
    assert!(c.faults_injected > 0);
    assert_eq!(c.tally, AuditTally::default());
}

#[test]
fn every_fault_of_drain_on_the_simulated_fs() {
    let c = sim_family(Action::Drain);
    assert!(c.faults_injected > 0);
    assert_eq!(
        c.tally.duplicated_in_window, 0,
        "plain drain never duplicates"
    );
}

#[test]
fn every_fault_of_drain_with_on_the_simulated_fs() {
    let c = sim_family(Action::DrainWith);
    assert!(c.faults_injected > 0);
    assert_eq!(c.tally.lost_in_window, 0, "drain_with never loses");
}

/// The real file system: each action with three pending records, every k,
/// each errno, a single fault.
fn real_family(action: Action) -> Counts {
    let fresh = || {
        let dir = tempfile::tempdir().unwrap();
        let fio = FaultIo::new(StdIo::new());
        let ob = Outbox::open_with(dir.path(), fio.clone()).unwrap();
        let mut audit = Audit::default();
        prepare(&ob, Setup::Pending, &mut audit);
        (dir, fio, ob, audit)
    };
    let (_dir, fio, ob, mut audit) = fresh();
    let n = ops_of(&ob, &fio, action, &mut audit);
    let mut counts = Counts::default();
    for fault in FAULTS {
        for k in 0..n {
            let (dir, fio, ob, mut audit) = fresh();
            let plan = FaultPlan::once(k, fault);
            let name = format!("{action:?} on {}, {fault} at op {k}", dir.path().display());
            faulted_call(&ob, &fio, action, plan, &mut audit)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            counts.runs += 1;
            counts.faults_injected += fio.injected();
            // A fresh handle, as after a restart of the process.
            let again = Outbox::open_with(dir.path(), StdIo::new()).unwrap();
            counts.add(recover(&again, action, audit).unwrap_or_else(|e| panic!("{name}: {e}")));
            assert_no_temp_files_left_unless_renamed(dir.path());
        }
    }
    println!(
        "{action:?} on the real fs: {} faulted calls, {} faults injected; lost in the \
         documented window: {}, duplicated in the documented window: {}",
        counts.runs,
        counts.faults_injected,
        counts.tally.lost_in_window,
        counts.tally.duplicated_in_window
    );
    counts
}

/// A failed durable write removes its temporary file.
fn assert_no_temp_files_left_unless_renamed(root: &Path) {
    let p = ParentPaths::new(root, PARENT).unwrap();
    for dir in [
        p.inbox.parent().unwrap(),
        p.wal.parent().unwrap(),
        p.ledger.parent().unwrap(),
    ] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name();
            let name = name.to_string_lossy();
            assert!(
                !name.contains(".tmp-"),
                "temporary file left behind: {}/{name}",
                dir.display()
            );
        }
    }
}

#[test]
fn every_fault_of_commit_and_drains_on_the_real_fs() {
    for action in [Action::Commit, Action::Drain, Action::DrainWith] {
        let c = real_family(action);
        assert!(c.faults_injected > 0);
        match action {
            Action::Commit => assert_eq!(c.tally, AuditTally::default()),
            Action::Drain => assert_eq!(c.tally.duplicated_in_window, 0),
            Action::DrainWith => assert_eq!(c.tally.lost_in_window, 0),
        }
    }
}

/// Minimal case of the one loss these tests found: a plain `drain` whose
/// ledger is already durable, and whose final WAL unlink then fails, returns
/// an error; its records are marked consumed, so no later drain returns
/// them. The caller never sees them although nothing crashed.
#[test]
fn a_failed_wal_unlink_after_the_ledger_is_durable_does_not_lose_the_batch() {
    let fs = CrashIo::new();
    fs.install_dir(ROOT);
    let fio = FaultIo::new(fs);
    let ob = Outbox::open_with(ROOT, fio.clone()).unwrap();
    ob.commit(PARENT, record("c0")).unwrap();
    // The drain's only unlink is the WAL's (protocol v2 claims the inbox
    // by a rename; v1 unlinked the inbox first).
    fio.arm(FaultPlan::once(0, Fault::EIO).counting(OpKindSet::of([OpKind::RemoveFile])));
    let start = fio.log_len();
    let first = ob.drain(PARENT);
    fio.disarm();
    let ops = fio.ops_since(start);
    let fault = ops
        .iter()
        .find(|o| o.injected)
        .expect("a fault was injected");
    let p = ob.paths(PARENT).unwrap();
    assert_eq!(
        (fault.kind, fault.path.as_path()),
        (OpKind::RemoveFile, p.claimed.as_path())
    );
    assert!(
        LedgerProgress::of(&ops, &p.consumed).durable,
        "the ledger was durable before"
    );

    let now = first.as_ref().map_or(0, |d| d.records.len());
    let later = ob.drain(PARENT).unwrap().records.len();
    assert_eq!(
        now + later,
        1,
        "c0 must reach the caller once: the drain returned {:?}, the next drain {later} records",
        first.map(|d| d.records.len()).map_err(|e| e.to_string())
    );
}
