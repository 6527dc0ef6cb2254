//! `outbox stop-hook`: the Stop-hook contract, run as Claude Code runs it (a
//! process with the hook's JSON on stdin).

use crate::util::*;
use serde_json::Value;

fn hook(root: &std::path::Path, input: &str) -> Run {
    outbox_in(root, &["stop-hook", "--parent", PARENT], input.as_bytes())
}

/// The decision printed by a blocking run.
fn decision(run: &Run) -> Value {
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout.lines().count(), 1, "one line of JSON: {run:?}");
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["decision"], "block");
    assert_eq!(json.as_object().unwrap().len(), 2, "{json}");
    json
}

const ACTIVE: &str = r#"{"session_id":"s1","transcript_path":"/t.jsonl","hook_event_name":"Stop","stop_hook_active":true}"#;
const INACTIVE: &str = r#"{"session_id":"s1","transcript_path":"/t.jsonl","hook_event_name":"Stop","stop_hook_active":false}"#;

#[test]
fn nothing_pending_prints_nothing_and_writes_nothing() {
    // A root that does not exist: not created; stderr says so (Claude Code
    // shows a successful hook's stderr only in verbose mode).
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh");
    let run = hook(&fresh, INACTIVE);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""));
    assert!(run.stderr.contains("does not exist"), "{run:?}");
    assert!(!fresh.exists());

    // A root in use whose inbox was drained: no file changes at all.
    let root = dir.path().join("used");
    commit_finished(&root, PARENT, "w1", "success");
    drain_json(&root, PARENT);
    let before = snapshot(&root);
    for input in [INACTIVE, ACTIVE, "", "{}"] {
        let run = hook(&root, input);
        assert_eq!(
            (run.code, run.stdout.as_str(), run.stderr.as_str()),
            (0, "", "")
        );
    }
    assert_eq!(snapshot(&root), before);
    assert!(!root.join("runtime/stop-blocks").exists());
}

#[test]
fn pending_records_block_with_a_reason_listing_each_child() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    commit_finished_with(
        root,
        PARENT,
        "w1",
        "success",
        &["--title", "parser", "--summary", "all tests pass"],
    );
    ok(
        root,
        &[
            "commit", "--parent", PARENT, "--child", "w2", "--from", "running", "--to", "error",
        ],
    );
    commit_finished(root, PARENT, "w3", "failed");
    // Unknown fields are ignored; a missing stop_hook_active means false.
    let run = hook(
        root,
        r#"{"session_id":"s1","cwd":"/x","future":{"a":[1,2]}}"#,
    );
    let json = decision(&run);
    let reason = json["reason"].as_str().unwrap();
    let lines: Vec<&str> = reason.lines().collect();
    assert_eq!(lines.len(), 6, "{reason}");
    assert!(lines[0].starts_with(r#"outbox: 3 of 3 records for parent "conductor""#));
    assert!(lines[1].starts_with(
        r#"outbox: record 1: child "w1", title "parser", finished a turn with status "success" at "#
    ));
    assert_eq!(lines[2], "| all tests pass");
    assert!(lines[3].starts_with(
        r#"outbox: record 2: child "w2", changed status from "running" to "error" at "#
    ));
    assert!(
        lines[4].starts_with(
            r#"outbox: record 3: child "w3", finished a turn with status "failed" at "#
        )
    );
    assert!(lines[5].starts_with("outbox: No other record is left out."));
    // Delivered: consumed, and the next stop is inert.
    assert_eq!(outbox(root, &["pending", "--parent", PARENT]).code, 1);
    let run = hook(root, ACTIVE);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""));
}

#[test]
fn three_consecutive_blocks_then_no_block_and_the_records_wait() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let guard = root
        .join("runtime/stop-blocks")
        .join(format!("{PARENT}.json"));
    for turn in 1..=3 {
        commit_finished(root, PARENT, "w1", &format!("turn-{turn}"));
        let input = if turn == 1 { INACTIVE } else { ACTIVE };
        let json = decision(&hook(root, input));
        assert!(
            json["reason"]
                .as_str()
                .unwrap()
                .contains(&format!("turn-{turn}"))
        );
        let count: Value = serde_json::from_slice(&std::fs::read(&guard).unwrap()).unwrap();
        assert_eq!(count["count"], turn);
    }
    commit_finished(root, PARENT, "w1", "turn-4");
    let run = hook(root, ACTIVE);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{run:?}");
    assert!(run.stderr.contains("3 consecutive blocks"), "{run:?}");
    let waiting = peek_json(root, PARENT);
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0]["done_status"], "turn-4");
    // Still not blocking while the agent keeps stopping because of us.
    assert_eq!(hook(root, ACTIVE).stdout, "");
    assert_eq!(peek_json(root, PARENT).len(), 1);

    // A stop the hook did not cause resets the counter: it blocks again.
    let json = decision(&hook(root, INACTIVE));
    assert!(json["reason"].as_str().unwrap().contains("turn-4"));
    let count: Value = serde_json::from_slice(&std::fs::read(&guard).unwrap()).unwrap();
    assert_eq!(count["count"], 1);
    assert!(peek_json(root, PARENT).is_empty());
}

#[test]
fn an_unwritable_guard_directory_means_no_block_and_records_intact() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    commit_finished(root, PARENT, "w1", "success");
    // A regular file where the guard directory must go: it cannot be
    // created, whoever runs the test (root included).
    std::fs::write(root.join("runtime/stop-blocks"), b"in the way").unwrap();
    let before = peek_json(root, PARENT);
    let run = hook(root, INACTIVE);
    assert_eq!(run.code, 1, "an error, never 2 (\"block\"): {run:?}");
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr_lines().len(), 1, "{run:?}");
    assert!(run.stderr.contains("runtime/stop-blocks"), "{run:?}");
    assert!(run.stderr.contains("not blocking"), "{run:?}");
    assert_eq!(peek_json(root, PARENT), before);
    assert_eq!(outbox(root, &["pending", "--parent", PARENT]).code, 0);
}

#[test]
fn the_parent_defaults_to_the_hook_session_id() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    commit_finished(root, "s1", "w1", "success");
    let run = outbox_in(root, &["stop-hook"], INACTIVE.as_bytes());
    assert!(
        decision(&run)["reason"]
            .as_str()
            .unwrap()
            .contains(r#"child "w1""#)
    );
    // --parent wins over session_id.
    commit_finished(root, "s1", "w2", "success");
    let run = outbox_in(
        root,
        &["stop-hook", "--parent", PARENT],
        INACTIVE.as_bytes(),
    );
    assert_eq!((run.code, run.stdout.as_str()), (0, ""));
    // Neither: an error that blocks nothing.
    let run = outbox_in(root, &["stop-hook"], br#"{"stop_hook_active":false}"#);
    assert_eq!((run.code, run.stdout.as_str()), (1, ""), "{run:?}");
    assert!(run.stderr.contains("--parent"), "{run:?}");
}

#[test]
fn malformed_input_never_blocks_and_never_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    commit_finished(root, PARENT, "w1", "success");
    for input in [
        &b"{"[..],
        b"not json",
        b"[]",
        b"null",
        b"\"Stop\"",
        b"{} {}",
        br#"{"stop_hook_active":"yes"}"#,
        br#"{"session_id":5}"#,
        b"\xff\xfe\x00garbage",
    ] {
        let run = outbox_in(root, &["stop-hook", "--parent", PARENT], input);
        assert_eq!(run.code, 1, "{input:?}: {run:?}");
        assert_eq!(run.stdout, "", "{input:?}");
        assert_eq!(run.stderr_lines().len(), 1, "{input:?}: {run:?}");
        assert!(run.stderr.contains("not blocking"), "{input:?}: {run:?}");
    }
    // A NUL in the session id: a clear error, no block.
    let run = outbox_in(root, &["stop-hook"], br#"{"session_id":"a\u0000b"}"#);
    assert_eq!((run.code, run.stdout.as_str()), (1, ""), "{run:?}");
    assert!(run.stderr.contains("NUL"), "{run:?}");
    // Usage errors of the hook exit 1 too; help still exits 0.
    let run = outbox_in(root, &["stop-hook", "--bogus"], b"{}");
    assert_eq!((run.code, run.stdout.as_str()), (1, ""), "{run:?}");
    assert_eq!(ok(root, &["stop-hook", "--help"]).code, 0);
    // Nothing was consumed by any of it.
    assert_eq!(peek_json(root, PARENT).len(), 1);
}
