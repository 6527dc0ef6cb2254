//! The reference model of the contract for one process without crashes or
//! faults: what is pending per (parent, child), which turns are consumed,
//! and what every operation must therefore return.
//!
//! The rules are those of the simulation's model
//! (`crates/outbox/tests/it/sim/model.rs`) that apply here, made exact
//! because nothing is uncertain without crashes:
//! - **last wins by commit order**: a child's pending record is its last
//!   commit, whatever the timestamps;
//! - **no phantom, nothing lost**: a drain delivers exactly the pending
//!   records whose turn is not consumed (a limited drain: that many of
//!   them), each as committed (stamped);
//! - **once**: a delivered turn is consumed; a plain drain never returns it
//!   again, and a re-commit of it says `already_consumed`;
//! - **nothing marked on failure**: a delivery that failed changes nothing;
//! - **views agree**: `peek` is what a drain would deliver, `has_pending`
//!   whether that is non-empty;
//! - **forget**: `forget_child` drops exactly the consumed turns whose key
//!   names the child before its last `@`.

use std::collections::{BTreeMap, BTreeSet};

use outbox::Record;

/// The model of one parent.
#[derive(Debug, Default)]
pub struct Model {
    /// child -> its last committed (stamped) record.
    pending: BTreeMap<String, Record>,
    /// Turn keys consumed.
    consumed: BTreeSet<String>,
}

impl Model {
    /// A commit of `stamped` returned `Ok`: returns what its
    /// `already_consumed` must be.
    pub fn commit(&mut self, stamped: &Record) -> bool {
        self.pending
            .insert(stamped.child_session_id.clone(), stamped.clone());
        self.consumed.contains(&stamped.turn_key())
    }

    /// What a drain must deliver now (and `peek` show), sorted by child.
    pub fn deliverable(&self) -> Vec<Record> {
        self.pending
            .values()
            .filter(|r| !self.consumed.contains(&r.turn_key()))
            .cloned()
            .collect()
    }

    /// How many pending records a drain must skip as already consumed.
    pub fn already_consumed(&self) -> usize {
        self.pending.len() - self.deliverable().len()
    }

    /// Checks a drain that returned `records` (at most `max` of them) and
    /// applies it: the records are consumed, and the pending records whose
    /// turns were consumed are dropped.
    pub fn drained(&mut self, records: &[Record], max: usize) -> Result<(), String> {
        let want = self.deliverable();
        if records.len() != want.len().min(max) {
            return Err(format!(
                "a drain limited to {max} delivered {} record(s); {} were deliverable: {:?}",
                records.len(),
                want.len(),
                children(&want)
            ));
        }
        let mut seen = BTreeSet::new();
        for r in records {
            if !seen.insert(r.child_session_id.clone()) {
                return Err(format!(
                    "one drain delivered child {:?} twice",
                    r.child_session_id
                ));
            }
            match self.pending.get(&r.child_session_id) {
                None => {
                    return Err(format!(
                        "PHANTOM: delivered {:?}, which has nothing pending",
                        r.child_session_id
                    ));
                }
                Some(p) if p != r => {
                    return Err(format!(
                        "LAST-WINS: delivered {r:?}, but the child's last commit is {p:?}"
                    ));
                }
                Some(_) if self.consumed.contains(&r.turn_key()) => {
                    return Err(format!("DUPLICATE: turn {} delivered again", r.turn_key()));
                }
                Some(_) => {}
            }
        }
        let consumed = &mut self.consumed;
        self.pending
            .retain(|_, p| !consumed.contains(&p.turn_key()));
        for r in records {
            self.pending.remove(&r.child_session_id);
            consumed.insert(r.turn_key());
        }
        Ok(())
    }

    /// `forget_child(child)`: returns how many consumed turns it must drop.
    pub fn forget(&mut self, child: &str) -> usize {
        let child = child.trim();
        let before = self.consumed.len();
        self.consumed
            .retain(|k| k.rsplit_once('@').is_none_or(|(owner, _)| owner != child));
        before - self.consumed.len()
    }
}

/// The children of `records`, in order.
pub fn children(records: &[Record]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r.child_session_id.as_str())
        .collect()
}

/// `records` sorted by child, for comparing sets.
pub fn by_child(records: &[Record]) -> Vec<Record> {
    let mut v = records.to_vec();
    v.sort_by(|a, b| a.child_session_id.cmp(&b.child_session_id));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(child: &str, summary: &str) -> Record {
        outbox::stamp(
            "p",
            {
                let mut r = Record::finished(child, "success");
                r.done_summary = summary.into();
                r
            },
            std::time::SystemTime::UNIX_EPOCH,
        )
        .unwrap()
        .0
    }

    #[test]
    fn the_model_catches_phantoms_stale_records_and_duplicates() {
        let mut m = Model::default();
        let a1 = turn("a", "one");
        let a2 = turn("a", "two");
        assert!(!m.commit(&a1));
        assert!(!m.commit(&a2));
        assert!(
            m.drained(std::slice::from_ref(&a1), usize::MAX)
                .unwrap_err()
                .contains("LAST-WINS")
        );
        assert!(
            m.drained(&[turn("b", "x")], usize::MAX)
                .unwrap_err()
                .contains("PHANTOM")
        );
        m.drained(std::slice::from_ref(&a2), usize::MAX).unwrap();
        assert!(m.commit(&a2), "a re-commit of a consumed turn says so");
        assert!(m.deliverable().is_empty());
        assert_eq!(m.already_consumed(), 1);
        assert_eq!(m.forget("a"), 1);
        assert_eq!(children(&m.deliverable()), ["a"]);
    }
}
