//! The reference model of the outbox's contract, and the checks against it.
//!
//! The model knows every commit the world attempted (its parent, child,
//! commit order and outcome) and every delivery a caller saw. Records carry
//! their commit number in `done_summary` (`c17`), so a delivered record is
//! traced to its commit without trusting anything the outbox wrote.
//!
//! The contract, as checked here:
//! - **no phantom**: a delivered record was committed, to this parent;
//! - **last wins by commit order**: a drain never delivers a child's record
//!   older than the newest one committed (`Ok`) before the drain began;
//! - **once**: a turn delivered by a call that returned `Ok` is never
//!   delivered again, except after the ledger's TTL or a reported corrupt
//!   ledger (counted); a turn whose delivery was uncertain (a `drain_with`
//!   crashed or failed after its callback returned `Ok`) may come again
//!   (counted as a duplicate in the window). The TTL counts from the clock
//!   reading the consuming call's outbox took (the simulation may step the
//!   clock before the call returns): from the one furthest from now if it
//!   took several ([`ClockWindow`]);
//! - **nothing lost**: at the end, after a final drain with no faults, the
//!   newest `Ok` commit of every child was delivered (or its turn was
//!   consumed already, or the child was forgotten or swept), except where a
//!   plain drain crashed after its ledger rename (counted as a loss in the
//!   window);
//! - **errors are true** (the typed [`RecordsState`](outbox::RecordsState),
//!   never the message): records an error leaves
//!   [`Pending`](outbox::RecordsState::Pending) are delivered again;
//!   records it carries as [`Consumed`](outbox::RecordsState::Consumed) are
//!   not, unless a power cut came in between.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use outbox::{LEDGER_TTL, Record};

/// The clock readings an outbox took during a call: its marks are stamped
/// with one of them.
#[derive(Clone, Copy, Debug)]
pub struct ClockWindow {
    low: SystemTime,
    high: SystemTime,
}

impl ClockWindow {
    /// One reading, `now`.
    pub fn at(now: SystemTime) -> Self {
        Self {
            low: now,
            high: now,
        }
    }

    /// Another reading, `now`.
    pub fn saw(&mut self, now: SystemTime) {
        self.low = self.low.min(now);
        self.high = self.high.max(now);
    }

    /// Whether a drain may have pruned a mark stamped inside this window,
    /// given `later`: every value the clock took from the consuming call's
    /// start on, in order (a prune reads one of them). A prune at `now`
    /// drops a mark stamped more than the TTL before `now`; a prune
    /// restamps a mark from the future with its `now` and a shift only
    /// moves stamps forward, so a mark's stamp is never below the lowest
    /// reading since it was made. So it may have expired only if some
    /// clock value came more than the TTL after the lowest one before it
    /// (counting the window's own readings, whose order is not known). A
    /// clock set back never expires a mark by itself.
    fn may_have_expired(self, later: &[SystemTime]) -> bool {
        let after = |high: SystemTime, low: SystemTime| {
            high.duration_since(low).is_ok_and(|age| age > LEDGER_TTL)
        };
        let mut low = self.low;
        if after(self.high, low) {
            return true;
        }
        for &value in later {
            low = low.min(value);
            if after(value, low) {
                return true;
            }
        }
        false
    }
}

/// A turn's identity as the contract sees it: the summary (unique per
/// distinct turn in the simulation) and the output hash (a real second turn
/// with the same summary carries a new one).
pub type Identity = (String, String);

/// The identity of `r`.
pub fn identity(r: &Record) -> Identity {
    (r.done_summary.clone(), r.last_output_hash.clone())
}

/// The commit number carried by a simulated record's summary.
pub fn commit_no(r: &Record) -> Option<usize> {
    r.done_summary.strip_prefix('c')?.parse().ok()
}

/// What became of one commit call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitStatus {
    /// Still running.
    InFlight,
    /// Returned `Ok`: durable, owed to the parent.
    Ok,
    /// Returned an error: may or may not have been committed.
    Failed,
    /// Cut by a crash: may or may not have survived.
    Crashed,
}

#[derive(Clone, Debug)]
struct Commit {
    parent: usize,
    child: String,
    identity: Identity,
    status: CommitStatus,
    /// A crash inside a plain drain's window may have lost it.
    loss_allowed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Consumed {
    /// Delivered by a call that returned `Ok`.
    Certain,
    /// Handed to a callback that returned `Ok`, but the call failed or
    /// crashed afterwards: it may come again.
    Uncertain,
    /// Carried by an error whose state was
    /// [`RecordsState::Consumed`](outbox::RecordsState::Consumed): never
    /// delivered again unless a crash (after power cut number `.0`) undid
    /// the marks, which are not durable.
    UntilCrash(usize),
}

/// Counters of what the windows allowed.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Records a crash lost inside a plain drain's documented window.
    pub lost_in_window: usize,
    /// Turns delivered again after an uncertain delivery.
    pub duplicated_in_window: usize,
    /// Turns delivered again after the ledger's TTL or a corrupt ledger.
    pub duplicated_after_ttl: usize,
    /// Records delivered in all.
    pub delivered: usize,
}

/// A record an error message said stays pending.
#[derive(Clone, Debug)]
struct Promise {
    parent: usize,
    child: String,
    commit: usize,
    after_event: usize,
    message: String,
    /// Power cuts before the promise.
    crashes: usize,
}

/// The reference model of one simulated world.
#[derive(Debug, Default)]
pub struct Model {
    commits: Vec<Commit>,
    /// `(parent, child)` → every delivery: (event number, commit number).
    deliveries: BTreeMap<(usize, String), Vec<(usize, usize)>>,
    /// `(parent, identity)` → how it was consumed, the clock readings the
    /// consuming call's outbox took, and the index in `clock` of the
    /// clock's value when that call began.
    consumed: BTreeMap<(usize, Identity), (Consumed, ClockWindow, usize)>,
    /// Every value the simulated clock took, in order.
    clock: Vec<SystemTime>,
    /// `(parent, child)` → commits up to this number were removed on
    /// purpose (forget_child, sweep).
    removed_upto: BTreeMap<(usize, String), usize>,
    promises: Vec<Promise>,
    event: usize,
    /// Power cuts so far.
    crashes: usize,
    /// Commits whose turn was consumed when their child was forgotten:
    /// owed no delivery.
    settled: BTreeSet<usize>,
    /// What the windows allowed so far.
    pub tally: Tally,
}

impl Model {
    /// Records a value the simulated clock took (its first, and each after
    /// a step or an advance): outboxes read only these.
    pub fn clock_moved(&mut self, now: SystemTime) {
        self.clock.push(now);
    }

    /// The index of the clock's current value, for a call beginning now.
    pub fn clock_index(&self) -> usize {
        self.clock.len().saturating_sub(1)
    }

    /// The power was cut: marks that were not durable may be gone.
    pub fn crashed(&mut self) {
        self.crashes += 1;
    }

    /// Registers a commit about to be attempted; returns its number.
    pub fn begin_commit(&mut self, parent: usize, r: &Record) -> usize {
        self.commits.push(Commit {
            parent,
            child: r.child_session_id.clone(),
            identity: identity(r),
            status: CommitStatus::InFlight,
            loss_allowed: false,
        });
        self.commits.len() - 1
    }

    /// The number the next commit will get.
    pub fn next_commit(&self) -> usize {
        self.commits.len()
    }

    /// Records how commit `no` ended.
    pub fn end_commit(&mut self, no: usize, status: CommitStatus) {
        self.commits[no].status = status;
    }

    /// The child commit `no` was for.
    pub fn child_of(&self, no: usize) -> String {
        self.commits[no].child.clone()
    }

    /// The output hash commit `no` carried.
    pub fn hash_of(&self, no: usize) -> String {
        self.commits[no].identity.1.clone()
    }

    /// The newest commit of `parent`'s `child` so far (any status).
    pub fn last_commit_of(&self, parent: usize, child: &str) -> Option<usize> {
        (0..self.commits.len())
            .rev()
            .find(|&i| self.commits[i].parent == parent && self.commits[i].child == child)
    }

    /// For each child of `parent`, the newest commit that returned `Ok` and
    /// was not removed on purpose: what a drain starting now must not
    /// deliver anything older than.
    pub fn snapshot(&self, parent: usize) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (i, c) in self.commits.iter().enumerate() {
            if c.parent == parent
                && c.status == CommitStatus::Ok
                && !self.removed(parent, &c.child, i)
            {
                out.insert(c.child.clone(), i);
            }
        }
        out
    }

    fn removed(&self, parent: usize, child: &str, no: usize) -> bool {
        self.removed_upto
            .get(&(parent, child.to_owned()))
            .is_some_and(|&upto| no <= upto)
    }

    /// `forget_child`: the consumed marks of `parent`'s `child` are gone, so
    /// its turns may be delivered again.
    pub fn forget_consumed(&mut self, parent: usize, child: &str) {
        let mine: Vec<usize> = (0..self.commits.len())
            .filter(|&i| self.commits[i].parent == parent && self.commits[i].child == child)
            .collect();
        for &i in &mine {
            // A commit of a turn consumed before the forget may already be
            // gone (a drain drops a consumed turn's record): it is settled,
            // not owed (seed 28868); one still pending may come again.
            if self.identity_consumed(i) {
                self.settled.insert(i);
            }
        }
        for i in mine {
            let id = self.commits[i].identity.clone();
            self.consumed.remove(&(parent, id));
        }
    }

    /// Marks every commit of `parent`'s `child` so far as removed on
    /// purpose.
    pub fn remove_child(&mut self, parent: usize, child: &str) {
        if let Some(last) = self.last_commit_of(parent, child) {
            self.removed_upto.insert((parent, child.to_owned()), last);
        }
    }

    /// A plain drain of `parent` crashed after its ledger rename: what it
    /// staged may be lost to the caller (the documented window).
    /// Their marks may have survived too, so a later re-emit of one of
    /// those turns may rightly be skipped as consumed.
    pub fn open_loss_window(&mut self, parent: usize, window: ClockWindow, from: usize) {
        for c in self.commits.iter_mut().filter(|c| c.parent == parent) {
            c.loss_allowed = true;
            self.consumed
                .entry((parent, c.identity.clone()))
                .or_insert((Consumed::Uncertain, window, from));
        }
    }

    /// The newest commit of `parent` with `identity`, and checks the
    /// delivered record against the commit log.
    fn trace(&self, parent: usize, r: &Record) -> Result<usize, String> {
        let Some(no) = commit_no(r) else {
            return Err(format!(
                "PHANTOM: delivered a record never committed: {r:?}"
            ));
        };
        let Some(c) = self.commits.get(no) else {
            return Err(format!(
                "PHANTOM: delivered commit c{no}, which was never attempted"
            ));
        };
        if c.parent != parent {
            return Err(format!(
                "PHANTOM: parent #{parent} was delivered c{no}, committed to parent #{} \
                 (two parents share files?)",
                c.parent
            ));
        }
        if c.child != r.child_session_id {
            return Err(format!(
                "PHANTOM: c{no} was committed for child {:?}, delivered as {:?}",
                c.child, r.child_session_id
            ));
        }
        let id = identity(r);
        Ok((no..self.commits.len())
            .rev()
            .find(|&i| {
                let c = &self.commits[i];
                c.parent == parent && c.child == r.child_session_id && c.identity == id
            })
            .unwrap_or(no))
    }

    /// Checks one batch a caller received from a drain of `parent` that
    /// began at `snapshot`, and records it. `corrupt_ledger`: the drain
    /// reported a ledger it could not read.
    pub fn delivered(
        &mut self,
        parent: usize,
        snapshot: &BTreeMap<String, usize>,
        records: &[Record],
        corrupt_ledger: bool,
    ) -> Result<(), String> {
        self.event += 1;
        let mut seen = BTreeSet::new();
        for r in records {
            let no = self.trace(parent, r)?;
            let child = r.child_session_id.clone();
            if !seen.insert(child.clone()) {
                return Err(format!("one drain delivered child {child:?} twice"));
            }
            if let Some(&newest) = snapshot.get(&child)
                && newest > no
                && self.commits[newest].identity != identity(r)
            {
                return Err(format!(
                    "LAST-WINS: delivered c{no} of {child:?} although c{newest} was committed \
                     (Ok) before this drain began"
                ));
            }
            let key = (parent, identity(r));
            match self.consumed.get(&key) {
                Some((Consumed::Certain, window, from)) => {
                    let later = self.clock.get(*from..).unwrap_or_default();
                    if window.may_have_expired(later) || corrupt_ledger {
                        self.tally.duplicated_after_ttl += 1;
                    } else {
                        return Err(format!(
                            "DUPLICATE: c{no} of {child:?} was delivered by a call that \
                             returned Ok, and is delivered again"
                        ));
                    }
                }
                Some((Consumed::Uncertain, ..)) => self.tally.duplicated_in_window += 1,
                Some((Consumed::UntilCrash(at), window, from)) => {
                    let later = self.clock.get(*from..).unwrap_or_default();
                    if self.crashes > *at || window.may_have_expired(later) || corrupt_ledger {
                        self.tally.duplicated_in_window += 1;
                    } else {
                        return Err(format!(
                            "FALSE MESSAGE: an error said c{no} of {child:?} stays marked \
                             consumed (RecordsState::Consumed, no later drain delivers it), \
                             and a drain delivered it with no power cut in between"
                        ));
                    }
                }
                None => {}
            }
            self.deliveries
                .entry((parent, child))
                .or_default()
                .push((self.event, no));
            self.tally.delivered += 1;
        }
        Ok(())
    }

    /// Marks what a caller received as consumed, certainly or not.
    pub fn consumed(
        &mut self,
        parent: usize,
        records: &[Record],
        certain: bool,
        window: ClockWindow,
        from: usize,
    ) {
        let how = if certain {
            Consumed::Certain
        } else {
            Consumed::Uncertain
        };
        for r in records {
            let key = (parent, identity(r));
            let entry = self.consumed.entry(key).or_insert((how, window, from));
            if certain {
                *entry = (how, window, from);
            }
        }
    }

    /// An error said these records stay marked consumed
    /// ([`RecordsState::Consumed`](outbox::RecordsState::Consumed)): no
    /// drain may deliver them again before a power cut.
    pub fn consumed_until_crash(
        &mut self,
        parent: usize,
        records: &[Record],
        window: ClockWindow,
        from: usize,
    ) {
        let how = Consumed::UntilCrash(self.crashes);
        for r in records {
            let entry = self
                .consumed
                .entry((parent, identity(r)))
                .or_insert((how, window, from));
            if entry.0 != Consumed::Certain {
                *entry = (how, window, from);
            }
        }
    }

    /// An error said these records stay pending: they must come again.
    pub fn promise_pending(&mut self, parent: usize, records: &[Record], message: &str) {
        for r in records {
            if let Some(no) = commit_no(r) {
                self.promises.push(Promise {
                    parent,
                    child: r.child_session_id.clone(),
                    commit: no,
                    after_event: self.event,
                    message: message.to_owned(),
                    crashes: self.crashes,
                });
            }
        }
    }

    /// Whether commit `no`'s turn was consumed at some point.
    fn identity_consumed(&self, no: usize) -> bool {
        let c = &self.commits[no];
        self.consumed.contains_key(&(c.parent, c.identity.clone()))
    }

    fn delivered_since(&self, parent: usize, child: &str, no: usize, after_event: usize) -> bool {
        self.deliveries
            .get(&(parent, child.to_owned()))
            .is_some_and(|d| d.iter().any(|&(e, n)| e > after_event && n >= no))
    }

    /// The final check, after the last drain: nothing owed is missing, and
    /// every "stays pending" message came true. `names` names the parents.
    pub fn check_end(&mut self, names: &[String]) -> Result<(), String> {
        let mut problems = String::new();
        let mut newest: BTreeMap<(usize, String), usize> = BTreeMap::new();
        for (i, c) in self.commits.iter().enumerate() {
            if c.status == CommitStatus::Ok && !self.removed(c.parent, &c.child, i) {
                newest.insert((c.parent, c.child.clone()), i);
            }
        }
        for ((parent, child), no) in newest {
            let got = self.delivered_since(parent, &child, no, 0);
            if got || self.identity_consumed(no) || self.settled.contains(&no) {
                continue;
            }
            if self.commits[no].loss_allowed {
                self.tally.lost_in_window += 1;
                continue;
            }
            let _ = writeln!(
                problems,
                "LOST: c{no} of child {child:?} (parent {:?}) returned Ok and was never delivered",
                names[parent]
            );
        }
        for p in &self.promises {
            // "Pending" says nothing is marked, not that a record whose
            // commit failed (say, its fdatasync) is durable: a power cut
            // after the promise may take it (seed 36496).
            let never_durable =
                self.commits[p.commit].status != CommitStatus::Ok && self.crashes > p.crashes;
            if self.delivered_since(p.parent, &p.child, p.commit, p.after_event)
                || self.commits[p.commit].loss_allowed
                || self.removed(p.parent, &p.child, p.commit)
                || never_durable
            {
                continue;
            }
            let _ = writeln!(
                problems,
                "FALSE MESSAGE: an error said c{} of {:?} stays pending ({:?}), but it never \
                 came again",
                p.commit, p.child, p.message
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn a_turn_may_expire_from_any_reading_its_consuming_call_took() {
        let t0 = SystemTime::UNIX_EPOCH + 20_000 * DAY;
        // Seed 38152: the drain marked at t0, the clock stepped +17 days
        // before it returned (a prune may have run then), then -4 and +2
        // days: though measured from the call's end it looked 2 days old.
        let later = [t0, t0 + 17 * DAY, t0 + 13 * DAY, t0 + 15 * DAY];
        assert!(ClockWindow::at(t0).may_have_expired(&later));
        assert!(!ClockWindow::at(t0 + 17 * DAY).may_have_expired(&later[1..]));
        // Several readings: the lowest counts.
        let mut w = ClockWindow::at(t0 + 17 * DAY);
        w.saw(t0);
        assert!(w.may_have_expired(&later[1..]));
        assert!(!ClockWindow::at(t0).may_have_expired(&[t0, t0 + 13 * DAY]));
    }

    #[test]
    fn a_clock_set_back_never_expires_a_turn_by_itself() {
        // The ledger restamps marks from the future: setting the clock back
        // 15 days keeps a mark a TTL from then, so a duplicate there is a
        // bug, not the TTL. (The old model measured the age either way.)
        let t0 = SystemTime::UNIX_EPOCH + 20_000 * DAY;
        let later = [t0, t0 - 10 * DAY, t0 - 15 * DAY];
        assert!(!ClockWindow::at(t0).may_have_expired(&later));
        // Set back, then forward more than a TTL from the lowest value:
        // the restamped mark may have gone.
        let later = [t0, t0 - 10 * DAY, t0 + 5 * DAY];
        assert!(ClockWindow::at(t0).may_have_expired(&later));
    }

    #[test]
    fn a_turn_pruned_while_the_clock_was_ahead_may_come_back_after_a_step_back() {
        // Marked at t0; the clock ran 20 days ahead (a prune there drops the
        // mark) and was set back near t0: the duplicate is the TTL's, though
        // the clock now says the mark is a day old.
        let t0 = SystemTime::UNIX_EPOCH + 20_000 * DAY;
        let later = [t0, t0 + 20 * DAY, t0 + DAY];
        assert!(ClockWindow::at(t0).may_have_expired(&later));
    }
}
