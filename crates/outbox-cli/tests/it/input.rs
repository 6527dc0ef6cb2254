//! Input edges of `commit`: summaries from a file or stdin, truncation
//! warnings, and `--json` records that are JSON but not valid records.

use crate::util::*;

/// `commit --finished` of `child` with `extra` flags and `stdin`.
fn commit_in(root: &std::path::Path, child: &str, extra: &[&str], stdin: &[u8]) -> Run {
    let mut args = vec![
        "commit",
        "--parent",
        PARENT,
        "--child",
        child,
        "--finished",
        "--status",
        "success",
    ];
    args.extend_from_slice(extra);
    outbox_in(root, &args, stdin)
}

fn summary_of(root: &std::path::Path, child: &str) -> String {
    peek_json(root, PARENT)
        .into_iter()
        .find(|r| r["child_session_id"] == child)
        .map(|r| r["done_summary"].as_str().unwrap_or_default().to_owned())
        .expect("the child's record")
}

#[test]
fn a_summary_comes_from_a_file_or_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let file = dir.path().join("summary.txt");
    std::fs::write(&file, "line one\n\tline two\n").unwrap();
    let run = commit_in(
        &root,
        "w1",
        &["--summary-file", file.to_str().unwrap()],
        b"",
    );
    assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{run:?}");
    // One trailing newline dropped, the rest kept.
    assert_eq!(summary_of(&root, "w1"), "line one\n\tline two");

    let run = commit_in(&root, "w2", &["--summary-file", "-"], b"from stdin\r\n");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(summary_of(&root, "w2"), "from stdin");
}

#[test]
fn a_long_summary_is_cut_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let file = dir.path().join("big.txt");
    std::fs::write(&file, "x".repeat(100_000)).unwrap();
    let run = commit_in(root, "w1", &["--summary-file", file.to_str().unwrap()], b"");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr_lines().len(), 1, "{run:?}");
    assert!(
        run.stderr.starts_with(
            "outbox: warning: the summary of \"w1\" is 100000 bytes; it was cut to 32768 bytes"
        ),
        "{run:?}"
    );
    let summary = summary_of(root, "w1");
    assert_eq!(summary.len(), 32 * 1024);
    assert!(summary.ends_with("…[truncated]"));
    // At the limit: no warning.
    let exact = "y".repeat(32 * 1024);
    let run = commit_in(root, "w2", &["--summary", &exact], b"");
    assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{run:?}");
}

#[test]
fn bad_summary_files_are_one_line_errors_and_commit_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    commit_finished(&root, PARENT, "w0", "success");
    let before = peek_json(&root, PARENT);
    let missing = dir.path().join("missing.txt");
    let latin1 = dir.path().join("latin1.txt");
    std::fs::write(&latin1, b"ok\ncaf\xe9\n").unwrap();
    for (args, stdin, says) in [
        (
            vec!["--summary-file", missing.to_str().unwrap()],
            &b""[..],
            format!("--summary-file {}: No such file", missing.display()),
        ),
        (
            vec!["--summary-file", latin1.to_str().unwrap()],
            b"",
            "invalid UTF-8 at byte 6 (line 2, column 4: byte 0xe9)".to_owned(),
        ),
        (
            vec!["--summary-file", "-"],
            b"\xEF\xBB\xBFhello",
            "--summary-file stdin: starts with a UTF-8 byte-order mark".to_owned(),
        ),
        (
            vec!["--summary-file", dir.path().to_str().unwrap()],
            b"",
            format!("{}", dir.path().display()),
        ),
        (
            vec!["--summary", "a", "--summary-file", "-"],
            b"",
            "--summary-file".to_owned(),
        ),
    ] {
        let run = commit_in(&root, "w1", &args, stdin);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert_eq!(run.stdout, "");
        assert_eq!(run.stderr_lines().len(), 1, "{args:?}: {run:?}");
        assert!(run.stderr.contains(&says), "{args:?}: {run:?}");
    }
    assert_eq!(peek_json(&root, PARENT), before);
}

#[test]
fn json_records_must_be_valid_records() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    commit_finished(root, PARENT, "w0", "success");
    let before = peek_json(root, PARENT);
    for (input, says) in [
        (
            &br#"{"child_session_id":"w1","kind":"done","done_status":"success"}"#[..],
            r#"stdin: not a record: unknown kind "done" (expected "finished" for a completion"#,
        ),
        (
            br#"{"child_session_id":"w1","kind":"finished"}"#,
            "stdin: not a record: a finished record needs a done_status",
        ),
        (
            br#"{"child_session_id":"w1","kind":"finished","done_status":"  "}"#,
            "a finished record needs a done_status",
        ),
        (
            b"\xEF\xBB\xBF{\"child_session_id\":\"w1\"}",
            "stdin: starts with a UTF-8 byte-order mark (bytes EF BB BF)",
        ),
        (
            b"{\"child_session_id\":\n\"w\xff1\"}",
            "stdin: invalid UTF-8 at byte 23 (line 2, column 3: byte 0xff)",
        ),
    ] {
        let run = outbox_in(root, &["commit", "--parent", PARENT, "--json"], input);
        assert_eq!(run.code, 2, "{input:?}: {run:?}");
        assert_eq!(run.stdout, "");
        assert_eq!(run.stderr_lines().len(), 1, "{input:?}: {run:?}");
        assert!(run.stderr.contains(says), "{input:?}: {run:?}");
    }
    assert_eq!(peek_json(root, PARENT), before);
    // A transition (no kind) and a completion still go in.
    for input in [
        &br#"{"child_session_id":"w1","from_status":"running","to_status":"waiting"}"#[..],
        br#"{"child_session_id":"w2","kind":"finished","done_status":"failed"}"#,
    ] {
        let run = outbox_in(root, &["commit", "--parent", PARENT, "--json"], input);
        assert_eq!(run.code, 0, "{run:?}");
    }
    assert_eq!(peek_json(root, PARENT).len(), 3);
}
