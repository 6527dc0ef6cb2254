//! Issue 10 through the command line: `commit` warns on stderr when its
//! turn is already consumed (defect 2) and when it set lines aside in a
//! quarantine file (defect 13); `pending`, `peek` and `drain` agree.

use crate::util::*;

#[test]
fn commit_warns_when_its_turn_is_already_consumed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let flip = [
        "commit", "--parent", PARENT, "--child", "w1", "--from", "running", "--to", "waiting",
    ];
    let first = ok(root, &flip);
    assert_eq!(first.stderr, "", "{first:?}");
    assert_eq!(drain_json(root, PARENT).len(), 1);

    // The same flip again: committed (exit 0), but it will not be delivered,
    // and everything says so.
    let again = ok(root, &flip);
    assert_eq!(again.stderr_lines().len(), 1, "{again:?}");
    assert!(
        again.stderr.contains("already consumed") && again.stderr.contains("\"w1\""),
        "{again:?}"
    );
    assert_eq!(outbox(root, &["pending", "--parent", PARENT]).code, 1);
    assert!(peek_json(root, PARENT).is_empty());
    assert!(drain_json(root, PARENT).is_empty());

    // A new output hash is a new turn: no warning, delivered.
    let mut args = flip.to_vec();
    args.extend(["--output-hash", "h2"]);
    let new_turn = ok(root, &args);
    assert_eq!(new_turn.stderr, "", "{new_turn:?}");
    assert_eq!(outbox(root, &["pending", "--parent", PARENT]).code, 0);
    assert_eq!(drain_json(root, PARENT).len(), 1);
}

#[test]
fn a_second_completion_with_a_new_output_hash_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let extra = ["--summary", "tests pass", "--output-hash", "h1"];
    commit_finished_with(root, PARENT, "w1", "success", &extra);
    assert_eq!(drain_json(root, PARENT).len(), 1);
    let extra = ["--summary", "tests pass", "--output-hash", "h2"];
    commit_finished_with(root, PARENT, "w1", "success", &extra);
    assert_eq!(outbox(root, &["pending", "--parent", PARENT]).code, 0);
    let second = drain_json(root, PARENT);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0]["last_output_hash"], "h2");
}

#[test]
fn commit_reports_a_quarantine_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("inboxes")).unwrap();
    std::fs::write(
        root.join("inboxes").join(format!("{PARENT}.jsonl")),
        b"{\"child_session_id\": torn\n",
    )
    .unwrap();
    let run = outbox(
        root,
        &[
            "commit",
            "--parent",
            PARENT,
            "--child",
            "w1",
            "--finished",
            "--status",
            "ok",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    // Protocol v2: a commit appends and never reads the inbox; the drain
    // sets the unreadable line aside and says where.
    assert!(run.stderr.is_empty(), "{run:?}");
    let run = outbox(root, &["drain", "--parent", PARENT]);
    assert_eq!(run.code, 0, "{run:?}");
    let aside = run
        .stderr
        .lines()
        .find(|l| l.contains("set aside in"))
        .unwrap_or_else(|| panic!("{run:?}"));
    let named = aside.trim().rsplit(' ').next().unwrap();
    assert!(
        std::fs::read(named)
            .unwrap()
            .starts_with(b"{\"child_session_id\": torn"),
        "{run:?}"
    );
}
