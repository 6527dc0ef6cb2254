//! Usage errors a person makes by hand, each answered in one line that
//! says what to do: clap's "a similar subcommand exists" tips kept, and the
//! two forms of `commit` (a completion, a transition) named when neither is
//! complete.

use crate::util::{PARENT, command, run_command};

fn usage(args: &[&str]) -> String {
    let mut cmd = command();
    cmd.args(["--root", "/nonexistent/outbox-usage-test"])
        .args(args);
    let run = run_command(cmd, b"");
    assert_eq!(run.code, 2, "{args:?}: {run:?}");
    assert_eq!(run.stdout, "", "{args:?}: {run:?}");
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 1, "{args:?}: {run:?}");
    assert!(lines[0].starts_with("outbox: "), "{args:?}: {run:?}");
    lines[0].to_owned()
}

#[test]
fn a_mistyped_subcommand_keeps_the_tip_naming_the_right_one() {
    let line = usage(&["comit"]);
    assert!(line.contains("unrecognized subcommand 'comit'"), "{line}");
    assert!(line.contains("'comit'; tip: "), "{line}");
    assert!(line.contains("similar subcommand"), "{line}");
    assert!(line.contains("'commit'"), "{line}");
    let line = usage(&["drain", "--parnt", PARENT]);
    assert!(
        line.contains("tip: a similar argument exists: '--parent'"),
        "{line}"
    );
}

/// `--status` without `--finished`, a summary without it, or no form at
/// all: one message naming both forms, never "--finished and --from are
/// required" (which no single command satisfies).
#[test]
fn an_incomplete_commit_names_both_forms() {
    let base = ["commit", "--parent", PARENT, "--child", "w1"];
    for extra in [
        &["--status", "ok"][..],
        &["--summary", "done"][..],
        &["--status", "ok", "--summary", "done"][..],
        &[][..],
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let line = usage(&args);
        assert!(
            line.contains("a completion is --finished --status STATUS"),
            "{args:?}: {line}"
        );
        assert!(
            line.contains("a transition is --from STATUS --to STATUS"),
            "{args:?}: {line}"
        );
        assert!(!line.contains("--from <STATUS>"), "{args:?}: {line}");
    }
    let line = usage(&[&base[..], &["--status", "ok"]].concat());
    assert!(line.contains("--status needs --finished"), "{line}");
    let line = usage(
        &[
            &base[..],
            &["--from", "running", "--to", "waiting", "--status", "ok"],
        ]
        .concat(),
    );
    assert!(line.contains("--status needs --finished"), "{line}");
}

/// The complete forms still commit.
#[test]
fn the_complete_commit_forms_still_work() {
    let root = tempfile::tempdir().unwrap();
    for extra in [
        &["--finished", "--status", "ok"][..],
        &["--from", "running", "--to", "waiting"][..],
    ] {
        let mut cmd = command();
        cmd.arg("--root").arg(root.path());
        cmd.args(["commit", "--parent", PARENT, "--child", "w1"])
            .args(extra);
        let run = run_command(cmd, b"");
        assert_eq!(run.code, 0, "{extra:?}: {run:?}");
    }
}
