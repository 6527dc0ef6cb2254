//! Issue 10 through the CLI: read-only commands create nothing (defect
//! 12), `sweep` reports an odd file and goes on (defect 10), and the
//! coexistence rule for an agent-deck data directory (defect 14).

use crate::util::{commit_finished, ok, outbox, snapshot};

#[test]
fn peek_and_pending_on_a_root_with_only_inboxes_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // A root as a producer of another implementation leaves it: an inbox,
    // no runtime/ yet.
    std::fs::create_dir_all(root.join("inboxes")).unwrap();
    std::fs::write(
        root.join("inboxes/conductor.jsonl"),
        concat!(
            r#"{"child_session_id":"w1","child_title":"","profile":"","from_status":"running","#,
            r#""to_status":"waiting","timestamp":"2026-11-28T11:20:59Z"}"#,
            "\n"
        ),
    )
    .unwrap();
    let before = snapshot(root);
    assert_eq!(ok(root, &["pending", "--parent", "conductor"]).code, 0);
    assert_eq!(outbox(root, &["pending", "--parent", "other"]).code, 1);
    let peeked = ok(root, &["peek", "--parent", "conductor"]);
    assert!(peeked.stdout.starts_with("w1\t"), "{peeked:?}");
    assert_eq!(snapshot(root), before, "a read-only command wrote");
}

#[test]
fn sweep_reports_a_file_it_cannot_own_and_sweeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    commit_finished(root, "a", "w1", "success");
    let odd = format!("{}.jsonl", "x".repeat(230));
    std::fs::write(root.join("inboxes").join(&odd), b"").unwrap();
    // A bound of zero: the record committed above is older than that.
    let run = outbox(root, &["sweep", "--older-than", "0s"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "1\n");
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 1, "{run:?}");
    assert!(
        lines[0].starts_with("outbox: warning: skipped \"")
            && lines[0].contains(&odd)
            && lines[0].contains("the limit is")
            && lines[0].ends_with("the other inboxes were swept"),
        "{}",
        lines[0]
    );
    assert!(root.join("inboxes").join(&odd).exists());
}

#[test]
fn sweep_fails_loudly_for_a_parent_it_cannot_sweep_and_sweeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    commit_finished(root, "a", "w1", "success");
    // An "inbox" that cannot be read: a directory.
    std::fs::create_dir(root.join("inboxes/broken.jsonl")).unwrap();
    let run = outbox(root, &["sweep", "--older-than", "0s"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stdout, "1\n", "the other parent was swept");
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 2, "{run:?}");
    assert!(
        lines[0].starts_with("outbox: warning: could not sweep \"")
            && lines[0].contains("broken.jsonl"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("1 of the parents could not be swept"),
        "{}",
        lines[1]
    );
}

#[test]
fn the_readme_says_when_an_agent_deck_directory_is_safe() {
    // The claim itself is tested in the library
    // (`hardening_files::an_agent_deck_append_between_read_and_rename_is_lost`
    // and `files_a_stopped_agent_deck_left_drain_correctly`); this keeps the
    // README and `--help` saying it.
    let readme = include_str!("../../README.md");
    assert!(
        readme.contains("only while agent-deck is stopped"),
        "the README must state the coexistence rule"
    );
    let help = ok(std::path::Path::new("/nonexistent"), &["--help"]).stdout;
    assert!(
        help.contains("only while agent-deck is stopped"),
        "--help must state the coexistence rule: {help}"
    );
}
