//! Processes racing on one data root: two `outbox commit` producers and two
//! `outbox drain` consumers (printing, or delivering a few at a time to a
//! command with `--max` and `--exec`). Nothing lost, nothing doubled.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::util::*;
use serde_json::Value;

const PER_PRODUCER: usize = 15;

#[test]
fn two_drains_and_two_commits_racing_lose_nothing_and_double_nothing() {
    race(|root| drain_json(root, PARENT));
}

#[test]
fn two_limited_exec_drains_and_two_commits_racing_lose_nothing_and_double_nothing() {
    race(|root| {
        let run = ok(
            root,
            &["drain", "--parent", PARENT, "--max", "3", "--exec", "cat"],
        );
        run.stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON lines"))
            .collect()
    });
}

/// Two producers commit while two consumers run `drain` (each returning
/// what one drain delivered); then checks that the union of deliveries is
/// exactly the commits, each once.
fn race(drain: impl Fn(&Path) -> Vec<Value> + Sync) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let producing = AtomicBool::new(true);

    let (committed, delivered) = std::thread::scope(|s| {
        let producers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|name| {
                s.spawn(move || {
                    (0..PER_PRODUCER)
                        .map(|i| {
                            let child = format!("{name}-{i:02}");
                            let fp = commit_finished(root, PARENT, &child, "success");
                            (child, fp)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let producing = &producing;
                let drain = &drain;
                s.spawn(move || {
                    let mut got = Vec::new();
                    // Drain while the producers run, then once more after
                    // they stopped, so the last commits are drained too.
                    loop {
                        let last = !producing.load(Ordering::SeqCst);
                        let batch = drain(root);
                        if last && batch.is_empty() {
                            return got;
                        }
                        got.extend(batch);
                    }
                })
            })
            .collect();
        let committed: Vec<(String, String)> = producers
            .into_iter()
            .flat_map(|p| p.join().unwrap())
            .collect();
        producing.store(false, Ordering::SeqCst);
        let delivered: Vec<Value> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        (committed, delivered)
    });

    assert_eq!(committed.len(), 2 * PER_PRODUCER);
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for record in &delivered {
        let child = record["child_session_id"].as_str().unwrap().to_owned();
        let fp = record["turn_fingerprint"].as_str().unwrap().to_owned();
        assert!(
            seen.insert(child.clone(), fp).is_none(),
            "{child} delivered twice"
        );
    }
    let expected: BTreeMap<String, String> = committed.into_iter().collect();
    assert_eq!(seen, expected, "the drains' union is exactly the commits");
    assert_eq!(outbox(root, &["pending", "--parent", PARENT]).code, 1);
}
