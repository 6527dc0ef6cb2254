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
    assert!(!reason.contains("shown before"), "{reason}");
    // Shown, not yet delivered: pending until the session's next Stop
    // with stop_hook_active (Claude continued because of the block).
    assert_eq!(outbox(root, &["pending", "--parent", PARENT]).code, 0);
    let run = hook(root, ACTIVE);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""));
    assert_eq!(outbox(root, &["pending", "--parent", PARENT]).code, 1);
    // And the stop after that is inert.
    let run = hook(root, ACTIVE);
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (0, "", "")
    );
}

#[test]
fn consume_on_print_consumes_as_soon_as_the_decision_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    commit_finished(root, PARENT, "w1", "success");
    let args = ["stop-hook", "--parent", PARENT, "--consume-on-print"];
    let run = outbox_in(root, &args, INACTIVE.as_bytes());
    assert!(
        decision(&run)["reason"]
            .as_str()
            .unwrap()
            .contains("child \"w1\"")
    );
    assert_eq!(outbox(root, &["pending", "--parent", PARENT]).code, 1);
    let run = outbox_in(root, &args, ACTIVE.as_bytes());
    assert_eq!((run.code, run.stdout.as_str()), (0, ""));
}

#[test]
fn a_block_not_acted_on_is_shown_again_first_and_marked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    commit_finished_with(root, PARENT, "w1", "success", &["--summary", "one"]);
    decision(&hook(root, INACTIVE));
    commit_finished_with(root, PARENT, "w2", "success", &["--summary", "two"]);
    // The user pressed Esc (no hook), and the next turn stops normally.
    let json = decision(&hook(root, INACTIVE));
    let reason = json["reason"].as_str().unwrap();
    let lines: Vec<&str> = reason.lines().collect();
    assert!(
        lines[1].starts_with("outbox: record 1: child \"w1\"")
            && lines[1].contains("It was shown before and is not yet confirmed."),
        "{reason}"
    );
    assert_eq!(lines[2], "| one", "{reason}");
    assert!(
        lines[3].starts_with("outbox: record 2: child \"w2\"")
            && !lines[3].contains("shown before"),
        "{reason}"
    );
    assert_eq!(lines[4], "| two", "{reason}");
    let run = hook(root, ACTIVE);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{run:?}");
    assert!(peek_json(root, PARENT).is_empty());
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
    // Confirmed by the next Stop with stop_hook_active: consumed.
    assert_eq!(hook(root, ACTIVE).stdout, "");
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

fn context_hook(root: &std::path::Path, input: &str) -> Run {
    outbox_in(
        root,
        &["context-hook", "--parent", PARENT],
        input.as_bytes(),
    )
}

#[test]
fn context_hook_adds_the_pending_records_and_refuses_other_events() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Nothing pending, a root that does not exist: nothing printed, nothing
    // created.
    let prompt =
        r#"{"session_id":"s1","hook_event_name":"UserPromptSubmit","prompt":"hi","new":{}}"#;
    let run = context_hook(&root.join("none"), prompt);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{run:?}");
    assert!(!root.join("none").exists());
    commit_finished_with(root, PARENT, "w1", "success", &["--summary", "tests pass"]);
    let run = context_hook(root, prompt);
    assert_eq!(run.code, 0, "{run:?}");
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        json["hookSpecificOutput"]["hookEventName"],
        "UserPromptSubmit"
    );
    let context = json["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap();
    assert!(
        context.starts_with("outbox: 1 of 1 record for parent \"conductor\"")
            && context.contains("child \"w1\", finished a turn with status \"success\"")
            && context.contains("\n| tests pass\n"),
        "{context}"
    );
    assert_eq!(
        peek_json(root, PARENT).len(),
        1,
        "pending until the turn's Stop"
    );
    // Errors exit 1, never 2 (which would erase the user's prompt), and
    // show nothing.
    for (input, says) in [
        (
            r#"{"session_id":"s1","hook_event_name":"Stop"}"#,
            "hook_event_name is \"Stop\"",
        ),
        (r#"{"session_id":"s1"}"#, "hook_event_name is \"\""),
        ("{", "not valid JSON"),
        (
            r#"{"hook_event_name":"SessionStart","prompt":7}"#,
            "invalid type",
        ),
    ] {
        let run = context_hook(root, input);
        assert_eq!((run.code, run.stdout.as_str()), (1, ""), "{input}: {run:?}");
        assert_eq!(run.stderr_lines().len(), 1, "{run:?}");
        assert!(run.stderr.starts_with("outbox context-hook: "), "{run:?}");
        assert!(run.stderr.contains(says), "{input}: {run:?}");
        assert!(run.stderr.contains("nothing shown"), "{input}: {run:?}");
    }
    let run = outbox_in(root, &["context-hook", "--bogus"], prompt.as_bytes());
    assert_eq!((run.code, run.stdout.as_str()), (1, ""), "{run:?}");
    // Without --parent, the parent is the session.
    commit_finished(root, "s9", "w2", "success");
    let run = outbox_in(
        root,
        &["context-hook"],
        br#"{"session_id":"s9","hook_event_name":"SessionStart","source":"startup"}"#,
    );
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["hookSpecificOutput"]["hookEventName"], "SessionStart");
    assert!(
        json["hookSpecificOutput"]["additionalContext"]
            .as_str()
            .unwrap()
            .contains("child \"w2\"")
    );
}

#[test]
fn a_context_over_the_cap_shows_what_fits_and_the_rest_comes_next() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let summary = "s".repeat(3000);
    for i in 0..8 {
        commit_finished_with(
            root,
            PARENT,
            &format!("w{i}"),
            "success",
            &["--summary", &summary],
        );
    }
    let prompt = r#"{"session_id":"s1","hook_event_name":"UserPromptSubmit","prompt":"hi"}"#;
    let mut seen = Vec::new();
    for _ in 0..8 {
        let run = context_hook(root, prompt);
        if run.stdout.is_empty() {
            break;
        }
        let json: Value = serde_json::from_str(&run.stdout).unwrap();
        let text = json["hookSpecificOutput"]["additionalContext"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(text.chars().count() < 10_000, "{}", text.len());
        for i in 0..8 {
            if text.contains(&format!("child \"w{i}\"")) && !seen.contains(&i) {
                seen.push(i);
            }
        }
        // The turn's Stop confirms what was shown; the rest waits.
        let run = hook(root, r#"{"session_id":"s1","hook_event_name":"Stop"}"#);
        assert_eq!(run.code, 0, "{run:?}");
        if !run.stdout.is_empty() {
            // The Stop blocks with what was left: confirm it too.
            assert_eq!(hook(root, ACTIVE).code, 0);
        }
    }
    assert!(peek_json(root, PARENT).is_empty());
    assert!(seen.len() >= 3, "{seen:?}");
}
