//! Both sides of Claude Code: `outbox hooks` prints the settings, a child's
//! Stop hook (`commit --from-hook`) commits its last message, and the
//! parent's Stop hook (`stop-hook`) blocks with it. The commands run as
//! Claude Code runs them: through `sh -c`, from another directory, with
//! the hook's JSON on stdin and no `PATH`.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::util::*;

/// The one command of the fragment `outbox hooks` printed.
fn hook_command(fragment: &str) -> String {
    let json: Value = serde_json::from_str(fragment).expect("hooks prints JSON");
    let stop = json["hooks"]["Stop"].as_array().expect("a Stop list");
    assert_eq!(stop.len(), 1, "{json}");
    let hooks = stop[0]["hooks"].as_array().expect("a hooks list");
    assert_eq!(hooks.len(), 1, "{json}");
    assert_eq!(hooks[0]["type"], "command");
    hooks[0]["command"].as_str().unwrap().to_owned()
}

/// Runs a hook command as Claude Code does: `sh -c`, in `/`, with a bare
/// environment and the hook input on stdin.
fn run_hook(command: &str, input: &Value) -> Run {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(command).env_clear().current_dir("/");
    run_command(cmd, input.to_string().as_bytes())
}

/// A Stop-hook input as Claude Code writes it.
fn stop_input(session: &str, active: bool, message: Option<&str>) -> Value {
    let mut input = json!({
        "session_id": session,
        "transcript_path": format!("/home/dev/.claude/projects/-work/{session}.jsonl"),
        "cwd": "/work",
        "permission_mode": "default",
        "hook_event_name": "Stop",
        "stop_hook_active": active,
    });
    if let Some(message) = message {
        input["last_assistant_message"] = json!(message);
    }
    input
}

/// `outbox hooks` with a relative `--root`, run from `cwd`.
fn hooks_from(cwd: &Path, args: &[&str]) -> Run {
    let mut cmd = command();
    cmd.current_dir(cwd)
        .args(["--root", "data", "hooks", "--parent", PARENT])
        .args(args);
    let run = run_command(cmd, b"");
    assert_eq!(run.code, 0, "{run:?}");
    run
}

#[test]
fn the_printed_hooks_connect_a_child_to_its_parent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let parent_hook = hook_command(&hooks_from(dir.path(), &[]).stdout);
    let child_hook = hook_command(&hooks_from(dir.path(), &["--child"]).stdout);

    // Absolute paths: this binary and the root resolved against the
    // directory `outbox hooks` ran in.
    let bin = std::fs::canonicalize(BIN).unwrap();
    let root_arg = format!("--root {}", root.display());
    for command in [&parent_hook, &child_hook] {
        assert!(
            command.starts_with(&format!("{} {root_arg} ", bin.display())),
            "{command}"
        );
    }
    assert!(parent_hook.ends_with("stop-hook --parent conductor"));
    assert!(child_hook.ends_with("commit --parent conductor --from-hook"));

    // The parent stops with nothing pending: no decision.
    let run = run_hook(&parent_hook, &stop_input("conductor-sess", false, None));
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{run:?}");

    // A child ends its turn: its Stop hook commits its last message.
    let summary = "Parser done: 42 tests pass.\nSee src/parser.rs.";
    let run = run_hook(&child_hook, &stop_input("worker-7", false, Some(summary)));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("worker-7@"), "{run:?}");
    assert_eq!(run.stderr, "");

    // The parent tries to stop: blocked, and told what the child said.
    let run = run_hook(&parent_hook, &stop_input("conductor-sess", false, None));
    assert_eq!(run.code, 0, "{run:?}");
    let decision: Value = serde_json::from_str(&run.stdout).expect("a JSON decision");
    assert_eq!(decision["decision"], "block");
    let reason = decision["reason"].as_str().unwrap();
    assert!(
        reason.contains(r#"child "worker-7", finished a turn with status "success""#)
            && reason.contains("\n| Parser done: 42 tests pass.\n| See src/parser.rs.\n"),
        "{reason}"
    );
    assert!(reason.contains("See src/parser.rs."), "{reason}");

    // It handles that and stops again: nothing is left, it may stop.
    let run = run_hook(&parent_hook, &stop_input("conductor-sess", true, None));
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{run:?}");
}

#[test]
fn a_subagent_is_named_by_its_agent_id() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let input = json!({
        "session_id": "main-sess",
        "transcript_path": "/t.jsonl",
        "hook_event_name": "SubagentStop",
        "stop_hook_active": false,
        "agent_id": "agent-3",
        "agent_type": "reviewer",
        "agent_transcript_path": "/a.jsonl",
        "last_assistant_message": "LGTM",
    });
    let run = outbox_in(
        root,
        &["commit", "--parent", PARENT, "--from-hook"],
        input.to_string().as_bytes(),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let records = peek_json(root, PARENT);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["child_session_id"], "agent-3");
    assert_eq!(records[0]["child_title"], "reviewer");
    assert_eq!(records[0]["done_summary"], "LGTM");
    assert_eq!(records[0]["done_status"], "success");
}

#[test]
fn a_bad_hook_input_never_blocks_the_child_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    commit_finished(root, PARENT, "w0", "success");
    let before = peek_json(root, PARENT);
    let good = stop_input("worker-1", false, Some("done"));
    let without = |field: &str| {
        let mut input = good.clone();
        input.as_object_mut().unwrap().remove(field);
        input.to_string()
    };
    for (input, says) in [
        (String::new(), "stdin is empty"),
        ("{\"session_id\":".to_owned(), "not JSON"),
        ("[]".to_owned(), "JSON object"),
        (without("session_id"), "no session_id"),
        (without("hook_event_name"), "no hook_event_name"),
        (
            good.to_string().replace("\"Stop\"", "\"PreToolUse\""),
            "hook_event_name is \"PreToolUse\"",
        ),
        (
            good.to_string().replace("\"done\"", "{\"text\":\"done\"}"),
            "last_assistant_message must be a string",
        ),
    ] {
        let run = outbox_in(
            root,
            &["commit", "--parent", PARENT, "--from-hook"],
            input.as_bytes(),
        );
        assert_eq!(run.code, 1, "never 2 (\"block\"): {input}: {run:?}");
        assert_eq!(run.stdout, "", "{input}");
        let lines = run.stderr_lines();
        assert_eq!(lines.len(), 1, "{input}: {run:?}");
        assert!(
            lines[0].starts_with("outbox commit --from-hook: "),
            "{run:?}"
        );
        assert!(lines[0].contains(says), "{input}: {run:?}");
        assert!(
            lines[0].ends_with("nothing committed, not blocking"),
            "{run:?}"
        );
    }
    // Usage errors of a hook command are not "block" either.
    for args in [
        &["commit", "--parent", PARENT, "--from-hook", "--child", "x"][..],
        &["commit", "--from-hook"],
        &["commit", "--parent", PARENT, "--from-hook", "--bogus"],
    ] {
        let run = outbox_in(root, args, good.to_string().as_bytes());
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert_eq!(run.stderr_lines().len(), 1, "{args:?}: {run:?}");
    }
    // An unusable root: still exit 1.
    let file = root.join("a-file");
    std::fs::write(&file, b"").unwrap();
    let run = outbox_in(
        &file,
        &["commit", "--parent", PARENT, "--from-hook"],
        good.to_string().as_bytes(),
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(peek_json(root, PARENT), before);
}

#[test]
fn a_long_last_message_is_cut_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let message = "é".repeat(20_000); // 40,000 bytes
    let run = outbox_in(
        root,
        &["commit", "--parent", PARENT, "--from-hook"],
        stop_input("w1", false, Some(&message))
            .to_string()
            .as_bytes(),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr_lines().len(), 1, "{run:?}");
    assert!(
        run.stderr
            .contains("the summary of \"w1\" is 40000 bytes; it was cut to 32768 bytes"),
        "{run:?}"
    );
    let summary = peek_json(root, PARENT)[0]["done_summary"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(summary.len() <= 32 * 1024);
    assert!(summary.ends_with("…[truncated]"));
}

#[test]
fn stop_hook_refuses_another_hook_event() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    commit_finished(root, PARENT, "w1", "success");
    let mut input = stop_input("conductor-sess", false, None);
    input["hook_event_name"] = json!("PreToolUse");
    let run = outbox_in(
        root,
        &["stop-hook", "--parent", PARENT],
        input.to_string().as_bytes(),
    );
    assert_eq!((run.code, run.stdout.as_str()), (1, ""), "{run:?}");
    assert_eq!(run.stderr_lines().len(), 1, "{run:?}");
    assert!(
        run.stderr.contains("hook_event_name is \"PreToolUse\""),
        "{run:?}"
    );
    assert_eq!(peek_json(root, PARENT).len(), 1);
    // SubagentStop: a block would hand the parent's records to the
    // subagent. Refused, nothing consumed, unless explicitly allowed.
    input["hook_event_name"] = json!("SubagentStop");
    input["agent_id"] = json!("agent-1");
    let run = outbox_in(
        root,
        &["stop-hook", "--parent", PARENT],
        input.to_string().as_bytes(),
    );
    assert_eq!((run.code, run.stdout.as_str()), (1, ""), "{run:?}");
    assert_eq!(run.stderr_lines().len(), 1, "{run:?}");
    assert!(run.stderr.contains("SubagentStop"), "{run:?}");
    assert!(run.stderr.contains("--allow-subagent"), "{run:?}");
    assert!(run.stderr.contains("nothing consumed"), "{run:?}");
    assert_eq!(peek_json(root, PARENT).len(), 1);
    assert!(
        !root.join("runtime/stop-blocks").exists(),
        "no state written"
    );
    let run = outbox_in(
        root,
        &["stop-hook", "--parent", PARENT, "--allow-subagent"],
        input.to_string().as_bytes(),
    );
    assert!(run.stdout.contains("\"decision\":\"block\""), "{run:?}");
}

#[test]
fn hooks_rejects_a_root_that_json_cannot_hold() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(OsStr::from_bytes(b"data\xff"));
    let run = outbox(&root, &["hooks", "--parent", PARENT]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr_lines().len(), 1, "{run:?}");
    assert!(run.stderr.contains("the data root"), "{run:?}");
    assert!(run.stderr.contains("is not UTF-8"), "{run:?}");
}

#[test]
fn hooks_rejects_a_bad_parent_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let long = "p".repeat(300);
    for args in [&["hooks"][..], &["hooks", "--parent", &long]] {
        let run = outbox(dir.path(), args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert_eq!(run.stderr_lines().len(), 1, "{run:?}");
        assert_eq!(run.stdout, "");
    }
}
