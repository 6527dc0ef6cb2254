//! The Stop-hook rules against faults and crashes of the simulated disk
//! (their other tests are unit tests in `outbox::stop_hook` and
//! `outbox::handover`, and the conformance checks).

use std::collections::HashSet;
use std::convert::Infallible;

use outbox::handover::{self, Action, Event};
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

/// One step of a parent session's script: a child commits, or a hook event
/// of session `s1` runs through the confirmed-delivery rules.
#[derive(Clone, Debug)]
enum Step {
    Commit(&'static str),
    Hook(Event),
}

fn stop(active: bool) -> Step {
    Step::Hook(Event::Stop {
        stop_hook_active: active,
    })
}

/// A session: two children finish, the parent is blocked, acts (a Stop
/// with stop_hook_active) while a third finishes, the user interrupts (a
/// prompt), the prompt's turn ends.
fn script() -> Vec<Step> {
    vec![
        Step::Commit("c1"),
        Step::Commit("c2"),
        stop(false),
        Step::Commit("c3"),
        stop(true),
        Step::Hook(Event::UserPromptSubmit {
            prompt: "next".into(),
        }),
        stop(false),
    ]
}

/// What the parent's model was shown, and what the store consumed, checked
/// after every step: a record leaves the pending set only after it was
/// emitted, and never comes back.
#[derive(Default)]
struct Seen {
    emitted: HashSet<String>,
    gone: HashSet<String>,
}

impl Seen {
    fn check(&mut self, ob: &Outbox<CrashIo>, committed: &[&str], at: &str) {
        let pending: HashSet<String> = ob
            .peek(PARENT)
            .unwrap()
            .iter()
            .map(|r| r.child_session_id.clone())
            .collect();
        for child in committed {
            if pending.contains(*child) {
                assert!(!self.gone.contains(*child), "{at}: {child} came back");
            } else {
                assert!(
                    self.emitted.contains(*child),
                    "{at}: {child} consumed without being shown"
                );
                self.gone.insert((*child).to_owned());
            }
        }
    }

    fn emit(&mut self, json: &str) {
        let json: serde_json::Value = serde_json::from_str(json).unwrap();
        let text = json["reason"]
            .as_str()
            .or(json["hookSpecificOutput"]["additionalContext"].as_str())
            .unwrap();
        for child in ["c1", "c2", "c3"] {
            if text.contains(&format!("child \"{child}\"")) {
                self.emitted.insert(child.to_owned());
            }
        }
    }
}

/// Runs `step`; `Err` once the power is cut.
fn run_step(ob: &Outbox<CrashIo>, step: &Step, seen: &mut Seen) -> Result<(), String> {
    match step {
        Step::Commit(child) => {
            let mut r = Record::finished(*child, "success");
            r.done_summary = format!("{child} done");
            ob.commit(PARENT, r).map(drop).map_err(|e| e.to_string())
        }
        Step::Hook(event) => handover::handle(ob, PARENT, "s1", event, |text: &str| {
            seen.emit(text);
            Ok::<(), Infallible>(())
        })
        .map(drop)
        .map_err(|e| e.to_string()),
    }
}

/// Cuts the power after every operation of every step of a session's
/// script, reboots into the worst and other legal outcomes, and lets the
/// session go on as an adversary would: its first event a Stop with
/// `stop_hook_active: true` whether or not the block was printed (another
/// hook's block), then a model that acts on every block. Every completion
/// reaches the model at least once; none is consumed before it was shown,
/// and none comes back once consumed.
#[test]
fn a_crash_anywhere_in_a_session_loses_nothing_and_consumes_only_what_was_shown() {
    let steps = script();
    let mut explored = 0;
    for (i, crashed_step) in steps.iter().enumerate() {
        for k in 0.. {
            let fs = CrashIo::new();
            fs.install_dir(SIM_ROOT);
            let ob = Outbox::open_with(SIM_ROOT, fs.clone()).unwrap();
            let mut seen = Seen::default();
            let mut committed = Vec::new();
            for step in &steps[..i] {
                run_step(&ob, step, &mut seen).unwrap();
                if let Step::Commit(c) = step {
                    committed.push(*c);
                }
            }
            fs.crash_after(k);
            let result = run_step(&ob, crashed_step, &mut seen);
            if !fs.crashed() {
                assert!(result.is_ok(), "step {i}: {result:?}");
                break; // k is past the step's last operation.
            }
            for image in fs.crash_images(6) {
                explored += 1;
                let at = format!("step {i} ({crashed_step:?}), crash after op {k}");
                let rebooted = CrashIo::from_image(&image);
                let ob = Outbox::open_with(SIM_ROOT, rebooted).unwrap();
                let mut seen = Seen {
                    emitted: seen.emitted.clone(),
                    gone: HashSet::new(),
                };
                let mut committed = committed.clone();
                // A commit the crash cut short may or may not have landed;
                // commit it again (the same turn: delivered once).
                for step in &steps[i..] {
                    if let Step::Commit(c) = step {
                        committed.push(*c);
                        run_step(&ob, step, &mut seen).unwrap();
                    }
                }
                seen.check(&ob, &committed, &at);
                let mut active = true;
                for round in 0..20 {
                    let event = Step::Hook(Event::Stop {
                        stop_hook_active: active,
                    });
                    let before = seen.emitted.len();
                    let handled = handover::handle(
                        &ob,
                        PARENT,
                        "s1",
                        &match event {
                            Step::Hook(e) => e,
                            Step::Commit(_) => unreachable!(),
                        },
                        |text: &str| {
                            seen.emit(text);
                            Ok::<(), Infallible>(())
                        },
                    )
                    .unwrap();
                    seen.check(&ob, &committed, &format!("{at}, round {round}"));
                    match handled.action {
                        Action::Shown(_) => active = true,
                        _ if seen.emitted.len() == before && !ob.has_pending(PARENT).unwrap() => {
                            break;
                        }
                        _ => active = false,
                    }
                }
                assert!(!ob.has_pending(PARENT).unwrap(), "{at}: still pending");
                for child in &committed {
                    assert!(seen.emitted.contains(*child), "{at}: {child} never shown");
                }
            }
        }
    }
    println!("explored {explored} crash states");
    assert!(explored > 50, "{explored}");
}
