//! `outbox doctor`: the root, which setting chose it, and what needs a
//! person, with exit 1 when something does.

use crate::util::*;

/// The lines of a doctor run that start with `level: `.
fn lines<'a>(run: &'a Run, level: &str) -> Vec<&'a str> {
    let prefix = format!("{level}: ");
    run.stdout
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

#[test]
fn a_missing_root_is_named_and_left_uncreated() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("typo");
    let run = outbox(&root, &["doctor"]);
    assert_eq!(run.code, 1, "{run:?}");
    let problems = lines(&run, "problem");
    assert_eq!(problems.len(), 1, "{run:?}");
    assert!(
        problems[0].starts_with(&format!("{} does not exist", root.display())),
        "{run:?}"
    );
    assert!(!root.exists());
}

#[test]
fn a_healthy_root_says_where_it_came_from_and_what_is_pending() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    commit_finished(root, PARENT, "w1", "success");
    commit_finished(root, PARENT, "w2", "success");
    make_private(root);
    let before = snapshot(root);
    let run = outbox(root, &["doctor"]);
    assert_eq!(run.code, 0, "{run:?}");
    let info = lines(&run, "info");
    assert!(info[0].starts_with("outbox "), "{run:?}");
    assert!(info[0].ends_with(", on-disk format 2"), "{run:?}");
    assert_eq!(
        info[1],
        format!("file store: data root {} (from --root)", root.display())
    );
    assert!(
        info.contains(&"parent conductor: 2 record(s) pending"),
        "{run:?}"
    );
    assert!(lines(&run, "problem").is_empty(), "{run:?}");
    assert_eq!(lines(&run, "ok").last(), Some(&"nothing needs attention"));
    // Consumes nothing, leaves nothing behind.
    assert_eq!(snapshot(root), before);

    // The environment's choice is named too.
    let mut cmd = command();
    cmd.env("OUTBOX_ROOT", root).arg("doctor");
    let run = run_command(cmd, b"");
    assert!(
        run.stdout
            .contains(&format!("data root {} (from $OUTBOX_ROOT)", root.display())),
        "{run:?}"
    );
    let mut cmd = command();
    cmd.env("HOME", root).arg("doctor");
    let run = run_command(cmd, b"");
    assert!(
        run.stdout.contains("(from $HOME/.local/share/outbox)"),
        "{run:?}"
    );
}

#[test]
fn leftovers_and_unusable_directories_are_problems_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for child in ["w1", "w2", "w3"] {
        commit_finished(root, PARENT, child, "success");
    }
    // A limited drain leaves a WAL behind.
    ok(root, &["drain", "--parent", PARENT, "--max", "1"]);
    let inboxes = root.join("inboxes");
    std::fs::write(
        inboxes.join("conductor.jsonl.quarantine-1-2-3"),
        b"not json\n",
    )
    .unwrap();
    std::fs::write(inboxes.join("other.jsonl.tmp-4242-0"), b"{").unwrap();
    // A file where a directory must be: no permission trick (the tests may
    // run as root), yet unusable.
    std::fs::write(root.join("runtime/stop-blocks"), b"").unwrap();
    make_private(root);

    let run = outbox(root, &["doctor"]);
    assert_eq!(run.code, 1, "{run:?}");
    let problems = lines(&run, "problem");
    assert_eq!(problems.len(), 3, "{run:?}");
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    // The limited drain's leftover is routine: information, not a problem.
    assert!(
        lines(&run, "info").iter().any(|l| l.starts_with(
            "parent conductor: 2 record(s) pending (2 of them staged by an earlier drain"
        )),
        "{run:?}"
    );
    assert!(
        has("quarantine-1-2-3: lines") && has("then delete the file"),
        "{run:?}"
    );
    assert!(has("other.jsonl.tmp-4242-0: a temporary file"), "{run:?}");
    assert!(
        has("runtime/stop-blocks: ") && has("cannot list"),
        "{run:?}"
    );
    assert!(!run.stdout.contains("nothing needs attention"));
    // Nothing was lost or consumed by looking.
    assert_eq!(peek_json(root, PARENT).len(), 2);
}
