//! What the test modules share: the usual parent and root, a record per
//! child, the op-log printer, and the delivery audit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use outbox::Record;
use outbox_sim::{Op, OpKind};

/// The parent most tests commit to.
pub const PARENT: &str = "parent-A";

/// The data root of the simulated file systems.
pub const SIM_ROOT: &str = "/data";

/// A finished turn of `child` with a summary naming it.
pub fn record(child: &str) -> Record {
    let mut r = Record::finished(child, "success");
    r.done_summary = format!("the work of {child}");
    r
}

/// Turn `turn` of child number `child` (`child-07`), shaped like a real
/// worker's completion record.
pub fn worker_turn(child: usize, turn: u64) -> Record {
    let mut r = Record::finished(format!("child-{child:02}"), "success");
    r.child_title = format!("worker {child}");
    r.done_summary = format!("turn {turn}: refactored the parser and added tests");
    r
}

/// Commits one fresh turn (`turn`) of each of `n` children
/// ([`worker_turn`]) to [`PARENT`] through the public `commit`.
pub fn commit_fan_out<I: outbox::io::Io>(ob: &outbox::Outbox<I>, n: usize, turn: u64) {
    for child in 0..n {
        ob.commit(PARENT, worker_turn(child, turn)).unwrap();
    }
}

/// An op log, one indented line per operation, for failure messages.
pub fn log(ops: &[Op]) -> String {
    ops.iter().map(|o| format!("  {o}\n")).collect()
}

/// The ground truth of a durability test: which children's records were
/// committed, how often each was handed to a caller, and which losses and
/// duplicates the documented windows allow. Keyed by `child_session_id`, so
/// a test gives every record its own child.
///
/// `tests::audit_flags_loss_duplicates_and_phantoms_outside_windows` shows
/// it at work.
#[derive(Clone, Debug, Default)]
pub struct Audit {
    committed: BTreeSet<String>,
    uncertain: BTreeSet<String>,
    delivered: BTreeMap<String, usize>,
    may_lose: BTreeSet<String>,
    may_dup: BTreeMap<String, usize>,
}

/// What [`Audit::check`] counted inside the documented windows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditTally {
    /// Committed records never delivered, each allowed by a plain drain's
    /// window.
    pub lost_in_window: usize,
    /// Extra deliveries, each allowed by a `drain_with` window.
    pub duplicated_in_window: usize,
}

impl Audit {
    /// `child`'s commit returned `Ok`: it must be delivered.
    pub fn committed(&mut self, child: impl Into<String>) {
        self.committed.insert(child.into());
    }

    /// `child`'s commit returned an error: it may or may not have become
    /// durable, so it is delivered at most once (plus windows).
    pub fn uncertain(&mut self, child: impl Into<String>) {
        self.uncertain.insert(child.into());
    }

    /// `records` were handed to a caller.
    pub fn delivered<'a>(&mut self, records: impl IntoIterator<Item = &'a outbox::Record>) {
        for r in records {
            self.delivered_child(&r.child_session_id);
        }
    }

    /// The record of `child` was handed to a caller.
    pub fn delivered_child(&mut self, child: &str) {
        *self.delivered.entry(child.to_owned()).or_default() += 1;
    }

    /// How many times `child` was delivered so far.
    pub fn times_delivered(&self, child: &str) -> usize {
        self.delivered.get(child).copied().unwrap_or(0)
    }

    /// How many deliveries were recorded in all, repeats included.
    pub fn deliveries(&self) -> usize {
        self.delivered.values().sum()
    }

    /// Children committed (or uncertain) and not delivered yet.
    pub fn undelivered(&self) -> BTreeSet<String> {
        self.committed
            .iter()
            .chain(&self.uncertain)
            .filter(|c| !self.delivered.contains_key(*c))
            .cloned()
            .collect()
    }

    /// A plain drain failed inside its documented window (after its ledger
    /// rename was issued): everything pending now may be lost to the caller.
    pub fn allow_loss_of_pending(&mut self) {
        let pending = self.undelivered();
        self.may_lose.extend(pending);
    }

    /// A `drain_with` failed inside its documented window (its `deliver`
    /// returned `Ok`, the ledger was not durable yet): each of `records` may
    /// be delivered once more.
    pub fn allow_duplicate_of<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a outbox::Record>,
    ) {
        for r in records {
            *self.may_dup.entry(r.child_session_id.clone()).or_default() += 1;
        }
    }

    /// Checks the deliveries: every committed child delivered exactly once,
    /// every uncertain one at most once, nothing delivered that was never
    /// committed — except what the allowed windows excuse, which is counted.
    pub fn check(&self) -> Result<AuditTally, String> {
        let mut tally = AuditTally::default();
        for (c, must) in self
            .committed
            .iter()
            .map(|c| (c, true))
            .chain(self.uncertain.iter().map(|c| (c, false)))
        {
            let windows = self.may_dup.get(c).copied().unwrap_or(0);
            match self.times_delivered(c) {
                0 if !must => {}
                0 if self.may_lose.contains(c) => tally.lost_in_window += 1,
                0 => return Err(format!("LOST: {c} was committed and never delivered")),
                1 => {}
                n if n <= 1 + windows => tally.duplicated_in_window += n - 1,
                n => {
                    return Err(format!(
                        "DUPLICATE: {c} delivered {n} times ({windows} failures in the \
                         duplicate window)"
                    ));
                }
            }
        }
        for c in self.delivered.keys() {
            if !self.committed.contains(c) && !self.uncertain.contains(c) {
                return Err(format!("PHANTOM: {c} delivered but never committed"));
            }
        }
        Ok(tally)
    }
}

/// How far a drain got with its ledger write, read off an op log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerProgress {
    /// Marks were written to the ledger: an append to it, or a rename onto
    /// it (a compaction), returned `Ok`. From then on a crash may keep them.
    pub renamed: bool,
    /// After that, the ledger is durable: an fdatasync (or fsync) of the
    /// appended file, or an fsync of the directory after the rename,
    /// returned `Ok`.
    pub durable: bool,
}

impl LedgerProgress {
    /// Reads the progress of the ledger write to `ledger` off `ops`.
    pub fn of(ops: &[Op], ledger: &Path) -> Self {
        let dir = outbox::io::parent_dir(ledger);
        let renamed_at = ops
            .iter()
            .position(|o| o.ok && o.kind == OpKind::Rename && o.to.as_deref() == Some(ledger));
        let appended_at = ops
            .iter()
            .position(|o| o.ok && o.kind == OpKind::WriteAll && o.path == ledger);
        let durable = renamed_at.is_some_and(|i| {
            ops[i..]
                .iter()
                .any(|o| o.ok && o.kind == OpKind::SyncDir && o.path == dir)
        }) || appended_at.is_some_and(|i| {
            ops[i..].iter().any(|o| {
                o.ok && matches!(o.kind, OpKind::SyncData | OpKind::SyncFile) && o.path == ledger
            })
        });
        LedgerProgress {
            renamed: renamed_at.is_some() || appended_at.is_some(),
            durable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outbox::io::Io;
    use outbox_sim::CrashIo;

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    fn durable_file(io: &CrashIo, path: &str, data: &[u8]) {
        let mut f = io.create_new(p(path)).unwrap();
        io.write_all(&mut f, data).unwrap();
        io.sync_file(&mut f).unwrap();
        io.sync_dir(p(path).parent().unwrap()).unwrap();
    }

    #[test]
    fn audit_flags_loss_duplicates_and_phantoms_outside_windows() {
        let rec = |c: &str| Record::finished(c, "ok");
        let mut a = Audit::default();
        a.committed("a");
        assert!(a.check().unwrap_err().starts_with("LOST"));
        a.delivered(&[rec("a"), rec("a")]);
        assert!(a.check().unwrap_err().starts_with("DUPLICATE"));
        a.allow_duplicate_of(&[rec("a")]);
        assert_eq!(a.check().unwrap().duplicated_in_window, 1);
        a.delivered(&[rec("z")]);
        assert!(a.check().unwrap_err().starts_with("PHANTOM"));
        let mut b = Audit::default();
        b.uncertain("u");
        assert_eq!(b.check().unwrap(), AuditTally::default());
    }

    #[test]
    fn ledger_progress_reads_the_op_log() {
        let io = CrashIo::new();
        io.install_dir("/r/l");
        durable_file(&io, "/r/l/x.tmp", b"{}");
        let start = io.op_count();
        io.rename(p("/r/l/x.tmp"), p("/r/l/x.json")).unwrap();
        let ledger = p("/r/l/x.json");
        let pr = LedgerProgress::of(&io.ops_since(start), ledger);
        assert_eq!((pr.renamed, pr.durable), (true, false));
        io.sync_dir(p("/r/l")).unwrap();
        let pr = LedgerProgress::of(&io.ops_since(start), ledger);
        assert_eq!((pr.renamed, pr.durable), (true, true));
    }
}
