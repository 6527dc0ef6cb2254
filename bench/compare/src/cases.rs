//! The operations compared, their fixtures, and one measurement of one
//! case on one store.
//!
//! Every fixture is built through the [`Store`] API, by each
//! implementation for itself, and nothing is shared between
//! implementations. The conventions every case keeps:
//!
//! - **Fresh turns.** Every record carries a `last_output_hash` no other
//!   record had, so every turn is new: a drain delivers all of it.
//! - **A warmed parent.** A parent is used for the first time only after
//!   one commit and one drain (untimed), so its lock files and ledger
//!   exist as in steady state and the timed operation pays for no
//!   first-use file creation; its history is then that one turn.
//! - **Settled.** With the real fsync, the setup's writes are made durable
//!   before the clock starts ([`Store::settle`]), so a timed fsync flushes
//!   only what the timed operation wrote.

use std::cell::RefCell;
use std::time::Duration;

use outbox::Record;

use crate::store::{BoxError, Fsync, Result, Store};

/// What one case times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A drain delivering `n` records of `n` children.
    ///
    /// Without `history`, each run drains a new warmed parent (one turn of
    /// history). With `Some(h)`, h > 0, every run drains the one parent
    /// whose history of `h` consumed turns [`CaseState::prepare`] built, so
    /// it grows by `n` per run; `Some(0)` is the plain drain, listed again
    /// as the history series' baseline.
    Drain {
        /// Records delivered by the timed drain.
        n: usize,
        /// Consumed turns in the parent's history before the first run.
        history: Option<usize>,
    },
    /// A commit of a child that is not pending into a parent with `k`
    /// pending records of other children.
    Commit {
        /// Records pending before the first run of a round.
        k: usize,
    },
}

/// One row of the table: an operation and the fsync mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    /// The timed operation.
    pub op: Op,
    /// Stubbed or real fsync for the timed operation.
    pub fsync: Fsync,
}

impl Case {
    /// The stable id used by `--filter` and in the JSON, e.g.
    /// `drain-25-real`, `commit-k1000-stubbed`, `drain-25-history100000-stubbed`.
    pub fn id(&self) -> String {
        match self.op {
            Op::Drain { n, history: None } => format!("drain-{n}-{}", self.fsync.id()),
            Op::Drain {
                n,
                history: Some(h),
            } => format!("drain-{n}-history{h}-{}", self.fsync.id()),
            Op::Commit { k } => format!("commit-k{k}-{}", self.fsync.id()),
        }
    }

    /// The table's row label.
    pub fn label(&self) -> String {
        let fsync = match self.fsync {
            Fsync::Stubbed => "fsync stubbed",
            Fsync::Real => "real fsync",
        };
        match self.op {
            Op::Drain { n, history: None } => format!("drain of {n}, {fsync}"),
            Op::Drain {
                n,
                history: Some(h),
            } => format!("drain of {n}, history {}, {fsync}", thousands(h)),
            Op::Commit { k: 0 } => format!("commit into an empty inbox, {fsync}"),
            Op::Commit { k } => format!("commit into {} pending, {fsync}", thousands(k)),
        }
    }
}

/// The cases of issue 14, in table order.
pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    for fsync in [Fsync::Stubbed, Fsync::Real] {
        for n in [1, 25, 1000] {
            cases.push(Case {
                op: Op::Drain { n, history: None },
                fsync,
            });
        }
        for k in [0, 1000] {
            cases.push(Case {
                op: Op::Commit { k },
                fsync,
            });
        }
    }
    // The history cases: fsync stubbed, because what they show is work
    // proportional to the ledger, which the disk would only blur.
    for history in [0, 10_000, 100_000] {
        cases.push(Case {
            op: Op::Drain {
                n: 25,
                history: Some(history),
            },
            fsync: Fsync::Stubbed,
        });
    }
    cases
}

/// `100000` → `100 000`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// A completion record of `child` for turn `turn`, with a summary of a
/// realistic size (~200 bytes), as the Track A benches use.
pub fn record(child: &str, turn: u64) -> Record {
    let mut r = Record::finished(child, "success");
    r.child_title = format!("worker {child}");
    r.profile = "default".into();
    r.from_status = "running".into();
    r.to_status = "waiting".into();
    r.last_output_hash = format!("turn-{turn}");
    r.done_summary = format!(
        "{child}: wrote the parser, added tests for the bounded line reader, \
         fixed the RFC 3339 offset handling and left a note about the ledger TTL \
         for the reviewer; all checks green."
    );
    r
}

/// One case's state on one store: the parent names used so far, the next
/// fresh turn, and the parent a history or a pending set was built on.
pub struct CaseState {
    /// The case.
    pub case: Case,
    /// The store, open for the whole run.
    pub store: Box<dyn Store>,
    next_parent: u64,
    next_turn: u64,
    /// The parent holding the built history (history cases).
    history_parent: Option<String>,
    /// Untimed commits and drains the fixture building did, for the report.
    pub setup_time: Duration,
}

impl CaseState {
    /// A state for `case` on `store`; nothing built yet.
    pub fn new(case: Case, store: Box<dyn Store>) -> Self {
        Self {
            case,
            store,
            next_parent: 0,
            next_turn: 0,
            history_parent: None,
            setup_time: Duration::ZERO,
        }
    }

    fn fresh_turn(&mut self) -> u64 {
        self.next_turn += 1;
        self.next_turn
    }

    /// `n` records of children `child-0000..`, each a fresh turn.
    fn batch(&mut self, n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| {
                let turn = self.fresh_turn();
                record(&format!("child-{i:04}"), turn)
            })
            .collect()
    }

    /// A parent never used before, warmed (see the module docs).
    fn fresh_parent(&mut self) -> Result<String> {
        self.next_parent += 1;
        let parent = format!("parent-{:05}", self.next_parent);
        let turn = self.fresh_turn();
        self.store.fill(&parent, vec![record("warm-up", turn)])?;
        expect_delivered(self.store.drain(&parent)?.len(), 1, "the warm-up drain")?;
        Ok(parent)
    }

    /// Builds what must exist before the first round: the history of a
    /// history case ([`Store::seed_history`]).
    pub fn prepare(&mut self) -> Result<()> {
        let started = std::time::Instant::now();
        if let Op::Drain {
            history: Some(history),
            ..
        } = self.case.op
            && history > 0
        {
            let parent = self.fresh_parent()?;
            let mut next_turn = self.next_turn;
            let mut next_batch = |n: usize| {
                (0..n)
                    .map(|i| {
                        next_turn += 1;
                        record(&format!("child-{i:04}"), next_turn)
                    })
                    .collect()
            };
            self.store.seed_history(&parent, history, &mut next_batch)?;
            self.next_turn = next_turn;
            self.history_parent = Some(parent);
        }
        self.setup_time += started.elapsed();
        Ok(())
    }

    /// One n = 11 trimmed mean of this case (perfbudget's: one untimed
    /// warm-up run, 11 timed, mean of the middle 7), fixtures rebuilt
    /// before each run outside the timed window.
    pub fn measure(&mut self) -> Result<perfbudget::Measurement> {
        let real = self.case.fsync == Fsync::Real;
        match self.case.op {
            Op::Drain { n, history } => {
                let fixed_parent = if history.unwrap_or(0) > 0 {
                    Some(
                        self.history_parent
                            .clone()
                            .ok_or("a history case measured before prepare()")?,
                    )
                } else {
                    None
                };
                measure(
                    self,
                    |s| {
                        let parent = match &fixed_parent {
                            Some(p) => p.clone(),
                            None => s.fresh_parent()?,
                        };
                        let batch = s.batch(n);
                        s.store.fill(&parent, batch)?;
                        if real {
                            s.store.settle()?;
                        }
                        Ok(parent)
                    },
                    |s, parent| {
                        let drained = s.store.drain(&parent)?;
                        expect_delivered(drained.len(), n, "the timed drain")?;
                        Ok(drained)
                    },
                )
            }
            Op::Commit { k } => {
                // One parent per measurement holding k pending; each run
                // commits one more child, so the runs see k .. k + 11.
                let started = std::time::Instant::now();
                let parent = self.fresh_parent()?;
                let batch = self.batch(k);
                self.store.fill(&parent, batch)?;
                self.setup_time += started.elapsed();
                let mut probe = 0u32;
                measure(
                    self,
                    |s| {
                        // k = 0: a new (warmed) parent each run, so the
                        // inbox is empty every time.
                        let parent = if k == 0 {
                            s.fresh_parent()?
                        } else {
                            parent.clone()
                        };
                        if real {
                            s.store.settle()?;
                        }
                        probe += 1;
                        let turn = s.fresh_turn();
                        Ok((parent, record(&format!("probe-{probe:02}"), turn)))
                    },
                    |s, (parent, record)| s.store.commit(&parent, record),
                )
            }
        }
    }
}

fn expect_delivered(got: usize, want: usize, what: &str) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what} delivered {got} records, expected {want}").into())
    }
}

/// [`perfbudget::trimmed_mean_with_setup`] with fallible closures over the
/// case state: the first error skips the remaining runs and is returned.
fn measure<S, R>(
    state: &mut CaseState,
    mut setup: impl FnMut(&mut CaseState) -> Result<S>,
    mut op: impl FnMut(&mut CaseState, S) -> Result<R>,
) -> Result<perfbudget::Measurement> {
    let cell = RefCell::new(state);
    let error: RefCell<Option<BoxError>> = RefCell::new(None);
    let m = perfbudget::trimmed_mean_with_setup(
        || {
            if error.borrow().is_some() {
                return None;
            }
            match setup(&mut cell.borrow_mut()) {
                Ok(s) => Some(s),
                Err(e) => {
                    *error.borrow_mut() = Some(e);
                    None
                }
            }
        },
        |fixture| {
            let fixture = fixture?;
            match op(&mut cell.borrow_mut(), fixture) {
                Ok(r) => Some(r),
                Err(e) => {
                    *error.borrow_mut() = Some(e);
                    None
                }
            }
        },
    );
    match error.into_inner() {
        Some(e) => Err(e),
        None => Ok(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_ids_are_distinct_and_cover_the_issue() {
        let ids: Vec<String> = all().iter().map(Case::id).collect();
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
        for want in [
            "drain-1-stubbed",
            "drain-25-real",
            "drain-1000-real",
            "commit-k0-stubbed",
            "commit-k1000-real",
            "drain-25-history0-stubbed",
            "drain-25-history100000-stubbed",
        ] {
            assert!(ids.iter().any(|i| i == want), "{want} missing from {ids:?}");
        }
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1 000");
        assert_eq!(thousands(100_000), "100 000");
    }
}
