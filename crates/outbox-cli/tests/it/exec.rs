//! `drain --exec CMD` and `--max N`: delivery confirmed by a command's exit
//! status, and drains that leave the rest pending.

use std::path::Path;

use serde_json::Value;

use crate::util::*;

/// Commits completions of `children` to [`PARENT`].
fn commit_all(root: &Path, children: &[&str]) {
    for child in children {
        commit_finished_with(root, PARENT, child, "success", &["--summary", child]);
    }
}

/// The child ids of JSON records.
fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["child_session_id"].as_str().unwrap().to_owned())
        .collect()
}

/// JSON lines parsed.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON record per line"))
        .collect()
}

#[test]
fn exec_gets_json_lines_and_its_exit_0_consumes_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let out = dir.path().join("delivered");
    commit_all(&root, &["w1", "w2", "w3"]);
    let run = ok(
        &root,
        &[
            "drain",
            "--parent",
            PARENT,
            "--exec",
            "sh",
            "-c",
            r#"cat > "$1""#,
            "sh",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("", ""));
    let delivered = json_lines(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(ids(&delivered), ["w1", "w2", "w3"]);
    assert_eq!(delivered[0]["done_summary"], "w1");
    assert_eq!(outbox(&root, &["pending", "--parent", PARENT]).code, 1);
}

#[test]
fn exec_with_json_gets_one_array_and_shares_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    commit_all(root, &["w1", "w2"]);
    // CMD's stdout is outbox's.
    let run = ok(
        root,
        &["drain", "--parent", PARENT, "--json", "--exec", "cat"],
    );
    let array: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(ids(&array), ["w1", "w2"]);
}

#[test]
fn everything_after_exec_belongs_to_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    commit_all(root, &["w1"]);
    // `--json` and `--max` here are cat's (GNU cat rejects them), not
    // outbox's: the drain fails and keeps the record.
    let run = outbox(
        root,
        &["drain", "--parent", PARENT, "--exec", "cat", "--json"],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(peek_json(root, PARENT).len(), 1);
    // A flag of the command that looks like outbox's reaches the command.
    let run = ok(
        root,
        &[
            "drain",
            "--parent",
            PARENT,
            "--exec",
            "sh",
            "-c",
            "cat; echo \"$@\"",
            "sh",
            "--max",
            "1",
        ],
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{run:?}");
    assert_eq!(lines[1], "--max 1");
}

#[test]
fn a_failing_command_consumes_nothing_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    commit_all(root, &["w1", "w2"]);
    let before = peek_json(root, PARENT);
    let run = outbox(
        root,
        &[
            "drain",
            "--parent",
            PARENT,
            "--exec",
            "sh",
            "-c",
            "cat >/dev/null; echo 'notify: service down' >&2; exit 7",
        ],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stdout, "");
    // The command's stderr passes through, then outbox's one line.
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 2, "{run:?}");
    assert_eq!(lines[0], "notify: service down");
    assert!(
        lines[1].starts_with("outbox: drain --exec `sh -c "),
        "{run:?}"
    );
    assert!(
        lines[1].ends_with(
            ": exited with status 7; nothing was marked consumed, the 2 record(s) stay pending"
        ),
        "{run:?}"
    );
    assert_eq!(peek_json(root, PARENT), before);

    // Killed by a signal, missing, or reading nothing of an input larger
    // than a pipe's buffer (64 KiB): each is reported, none consumes
    // anything.
    let big = "x".repeat(30_000);
    for child in ["w3", "w4", "w5", "w6"] {
        commit_finished_with(root, PARENT, child, "success", &["--summary", &big]);
    }
    for (cmd, says) in [
        (&["sh", "-c", "kill -9 $$"][..], "was killed by signal 9"),
        (&["/nonexistent/notify"], "cannot run it: "),
        (&["true"], "did not read all the records"),
    ] {
        let mut args = vec!["drain", "--parent", PARENT, "--exec"];
        args.extend_from_slice(cmd);
        let run = outbox(root, &args);
        assert_eq!(run.code, 2, "{cmd:?}: {run:?}");
        assert_eq!(run.stderr_lines().len(), 1, "{cmd:?}: {run:?}");
        assert!(run.stderr.contains(says), "{cmd:?}: {run:?}");
        assert!(run.stderr.contains("6 record(s) stay pending"), "{run:?}");
        assert_eq!(peek_json(root, PARENT).len(), 6, "{cmd:?}");
    }
    assert_eq!(
        ids(&drain_json(root, PARENT)),
        ["w1", "w2", "w3", "w4", "w5", "w6"]
    );
}

#[test]
fn the_command_runs_only_when_something_is_deliverable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let marker = dir.path().join("ran");
    let touch = ["sh", "-c", r#"cat >/dev/null; : > "$1""#, "sh"];
    let mut args = vec!["drain", "--parent", PARENT, "--exec"];
    args.extend_from_slice(&touch);
    args.push(marker.to_str().unwrap());
    // A root that does not exist yet, then an empty inbox.
    ok(&root, &args);
    commit_all(&root, &["w1"]);
    drain_json(&root, PARENT);
    ok(&root, &args);
    assert!(!marker.exists());
    commit_all(&root, &["w2"]);
    ok(&root, &args);
    assert!(marker.exists());
}

#[test]
fn max_delivers_at_most_n_and_the_rest_comes_first_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    commit_all(root, &["w1", "w2", "w3", "w4", "w5"]);
    let run = ok(root, &["drain", "--parent", PARENT, "--max", "2"]);
    assert_eq!(run.stdout, "w1\tsuccess\tw1\nw2\tsuccess\tw2\n");
    assert_eq!(ids(&peek_json(root, PARENT)), ["w3", "w4", "w5"]);

    commit_all(root, &["w6"]);
    let run = ok(
        root,
        &["drain", "--parent", PARENT, "--max", "2", "--exec", "cat"],
    );
    assert_eq!(ids(&json_lines(&run.stdout)), ["w3", "w4"]);
    // A failed limited delivery keeps all of what is left.
    let run = outbox(
        root,
        &["drain", "--parent", PARENT, "--max", "1", "--exec", "false"],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("the 1 record(s) stay pending"),
        "{run:?}"
    );
    assert_eq!(ids(&drain_json(root, PARENT)), ["w5", "w6"]);
    assert_eq!(outbox(root, &["pending", "--parent", PARENT]).code, 1);

    for bad in ["0", "-1", "x", ""] {
        let run = outbox(
            root,
            &["drain", "--parent", PARENT, &format!("--max={bad}")],
        );
        assert_eq!(run.code, 2, "{bad}: {run:?}");
        assert_eq!(run.stderr_lines().len(), 1, "{bad}: {run:?}");
        assert!(run.stderr.contains("--max"), "{bad}: {run:?}");
    }
}

#[test]
fn a_drain_killed_while_its_command_runs_loses_nothing() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    commit_all(root, &["w1", "w2"]);
    // The command reads everything, then kills outbox (its parent) before
    // exiting 0: outbox dies between delivery and marking.
    let output = command()
        .arg("--root")
        .arg(root)
        .args(["drain", "--parent", PARENT, "--exec", "sh", "-c"])
        .arg("cat >/dev/null; kill -9 $PPID")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.signal(), Some(9), "{output:?}");
    // Nothing was marked: the records are delivered again, once.
    assert_eq!(ids(&peek_json(root, PARENT)), ["w1", "w2"]);
    let doctor = outbox(root, &["doctor"]);
    assert!(
        doctor
            .stdout
            .contains("2 record(s) pending (2 of them staged by an earlier drain"),
        "{doctor:?}"
    );
    assert_eq!(ids(&drain_json(root, PARENT)), ["w1", "w2"]);
    assert!(drain_json(root, PARENT).is_empty());
}
