//! Bad input never panics: malformed JSON, oversized stdin, arguments that
//! are not UTF-8, and a stdout whose reader has gone.

use std::process::Stdio;

use crate::util::*;

#[test]
fn malformed_commit_json_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for input in [
        &b""[..],
        b"{",
        b"{}{}",
        b"{} trailing",
        b"[{\"child_session_id\":\"w1\"}]",
        b"42",
        b"{\"child_session_id\":\"w1\",\"timestamp\":\"yesterday\"}",
        b"{\"child_session_id\":\"w1\",\"attempts\":\"many\"}",
        b"{\"child_session_id\":\"\"}",
        b"\xff\xfe",
    ] {
        let run = outbox_in(root, &["commit", "--parent", PARENT, "--json"], input);
        assert_eq!(run.code, 2, "{input:?}: {run:?}");
        assert_eq!(run.stdout, "", "{input:?}");
        assert_eq!(run.stderr_lines().len(), 1, "{input:?}: {run:?}");
    }
    let run = outbox_in(root, &["commit", "--parent", PARENT, "--json"], b"[]");
    assert!(run.stderr.contains("one at a time"), "{run:?}");
    assert_eq!(outbox(root, &["pending", "--parent", PARENT]).code, 1);
}

#[test]
fn stdin_over_32_mib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut big = b"{\"child_session_id\":\"w1\",\"done_summary\":\"".to_vec();
    big.resize(33 << 20, b'x');
    big.extend_from_slice(b"\"}");
    let run = outbox_in(root, &["commit", "--parent", PARENT, "--json"], &big);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("32 MiB"), "{}", run.stderr);
    let run = outbox_in(root, &["stop-hook", "--parent", PARENT], &big);
    assert_eq!((run.code, run.stdout.as_str()), (1, ""), "{}", run.stderr);
}

#[test]
fn arguments_that_are_not_utf8_are_usage_errors() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let bad = OsStr::from_bytes(b"p\xff");
    let run = outbox(
        dir.path(),
        &[OsStr::new("pending"), OsStr::new("--parent"), bad],
    );
    assert_eq!(run.code, 2, "{run:?}");
}

/// Runs the binary with a stdout pipe whose read end is already closed.
fn with_closed_stdout(root: &std::path::Path, args: &[&str]) -> Run {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = command()
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let run = Run {
        code: output
            .status
            .code()
            .expect("exited, not killed by a signal"),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    run
}

#[test]
fn a_closed_stdout_never_panics_and_never_loses_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    commit_finished(root, PARENT, "w1", "success");

    // Output that consumes nothing: the reader left early, not an error.
    for args in [
        &["peek", "--parent", PARENT][..],
        &["peek", "--parent", PARENT, "--json"],
        &["sweep"],
        &["--help"],
    ] {
        let run = with_closed_stdout(root, args);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
    }
    // A drain that cannot deliver consumes nothing and says so.
    for args in [
        &["drain", "--parent", PARENT][..],
        &["drain", "--parent", PARENT, "--json"],
    ] {
        let run = with_closed_stdout(root, args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert_eq!(run.stderr_lines().len(), 1, "{run:?}");
        assert!(run.stderr.contains("stay pending"), "{run:?}");
    }
    assert_eq!(peek_json(root, PARENT).len(), 1);
    // Likewise the Stop hook: no block reached anyone, nothing consumed.
    let run = with_closed_stdout(root, &["stop-hook", "--parent", PARENT]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(peek_json(root, PARENT).len(), 1);
    // A commit whose fingerprint cannot be printed still commits.
    let run = with_closed_stdout(
        root,
        &[
            "commit",
            "--parent",
            PARENT,
            "--child",
            "w2",
            "--finished",
            "--status",
            "ok",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(drain_json(root, PARENT).len(), 2);
}
