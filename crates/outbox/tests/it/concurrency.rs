//! Threads committing and draining one parent at once: nothing lost,
//! nothing doubled.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::thread;

use outbox::{Outbox, Record};
use parking_lot::Mutex;

use crate::util::{PARENT, worker_turn};
const CHILDREN: usize = 25;
const DRAINERS: usize = 6;

/// Runs `DRAINERS` threads that each drain once, all released together.
fn race_drains(ob: &Outbox, at_least_once: bool) -> Vec<Record> {
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let start = Arc::new(Barrier::new(DRAINERS));
    let handles: Vec<_> = (0..DRAINERS)
        .map(|_| {
            let (ob, delivered, start) = (ob.clone(), Arc::clone(&delivered), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                if at_least_once {
                    ob.drain_with(PARENT, |records| {
                        delivered.lock().extend_from_slice(records);
                        Ok::<_, ()>(())
                    })
                    .unwrap();
                } else {
                    let records = ob.drain(PARENT).unwrap().records;
                    delivered.lock().extend(records);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    Arc::try_unwrap(delivered).unwrap().into_inner()
}

fn assert_each_child_once(delivered: &[Record]) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in delivered {
        *counts.entry(r.child_session_id.as_str()).or_default() += 1;
    }
    assert_eq!(counts.len(), CHILDREN, "every child delivered");
    assert!(counts.values().all(|&n| n == 1), "none twice: {counts:?}");
}

#[test]
fn six_concurrent_drains_deliver_each_of_25_children_exactly_once() {
    for at_least_once in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path()).unwrap();
        for c in 0..CHILDREN {
            ob.commit(PARENT, worker_turn(c, 1)).unwrap();
        }
        let delivered = race_drains(&ob, at_least_once);
        assert_each_child_once(&delivered);
        assert!(!ob.has_pending(PARENT).unwrap());
        assert!(ob.drain(PARENT).unwrap().records.is_empty());
    }
}

#[test]
fn concurrent_drains_never_redeliver_a_wal_being_delivered() {
    // A WAL left by a drain that died: every racing drain sees it, but only
    // the one holding the drain lock may deliver it.
    for at_least_once in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(dir.path()).unwrap();
        for c in 0..CHILDREN {
            ob.commit(PARENT, worker_turn(c, 1)).unwrap();
        }
        let paths = ob.paths(PARENT).unwrap();
        std::fs::rename(&paths.inbox, &paths.wal).unwrap();
        let delivered = race_drains(&ob, at_least_once);
        assert_each_child_once(&delivered);
    }
}

#[test]
fn producers_committing_while_drains_run_lose_and_double_nothing() {
    const PRODUCERS: usize = 4;
    const TURNS: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(dir.path()).unwrap();
    let delivered = Arc::new(Mutex::new(Vec::<Record>::new()));
    let producing = Arc::new(std::sync::atomic::AtomicUsize::new(PRODUCERS));

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (ob, producing) = (ob.clone(), Arc::clone(&producing));
            thread::spawn(move || {
                // Each producer owns distinct children; every turn of every
                // child is a distinct turn.
                for turn in 0..TURNS {
                    let child = p * 100 + turn % 5;
                    ob.commit(PARENT, worker_turn(child, turn as u64)).unwrap();
                }
                producing.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            })
        })
        .collect();
    let drainers: Vec<_> = (0..2)
        .map(|i| {
            let (ob, delivered, producing) =
                (ob.clone(), Arc::clone(&delivered), Arc::clone(&producing));
            thread::spawn(move || {
                loop {
                    let done = producing.load(std::sync::atomic::Ordering::SeqCst) == 0;
                    if i == 0 {
                        let records = ob.drain(PARENT).unwrap().records;
                        delivered.lock().extend(records);
                    } else {
                        ob.drain_with(PARENT, |records| {
                            delivered.lock().extend_from_slice(records);
                            Ok::<_, ()>(())
                        })
                        .unwrap();
                    }
                    if done {
                        break;
                    }
                }
            })
        })
        .collect();
    for h in producers.into_iter().chain(drainers) {
        h.join().unwrap();
    }
    let mut delivered = Arc::try_unwrap(delivered).unwrap().into_inner();
    delivered.extend(ob.drain(PARENT).unwrap().records);

    // No turn twice.
    let mut seen = HashMap::new();
    for r in &delivered {
        let n = seen.entry(r.turn_fingerprint.clone()).or_insert(0);
        *n += 1;
        assert_eq!(*n, 1, "turn delivered twice: {r:?}");
    }
    // Last wins per child, so intermediate turns may be superseded before a
    // drain sees them, but the final turn of every child is never lost.
    for p in 0..PRODUCERS {
        for c in 0..5 {
            let child = format!("child-{:02}", p * 100 + c);
            let last_turn = (0..TURNS).filter(|t| t % 5 == c).max().unwrap();
            let got = delivered.iter().any(|r| {
                r.child_session_id == child
                    && r.done_summary == worker_turn(0, last_turn as u64).done_summary
            });
            assert!(got, "final turn {last_turn} of {child} lost");
        }
    }
    assert!(!ob.has_pending(PARENT).unwrap());
}
