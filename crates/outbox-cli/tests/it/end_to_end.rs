//! End to end: the built binary on a real data root, as a shell or a
//! script uses it.

use crate::util::*;
use serde_json::Value;

#[test]
fn commit_pending_peek_drain_pending() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    assert_eq!(outbox(root, &["pending", "--parent", PARENT]).code, 1);

    let fp = commit_finished(root, PARENT, "w1", "success");
    assert!(
        fp.starts_with("w1@") && fp.len() == "w1@".len() + 16,
        "{fp}"
    );
    let run = ok(
        root,
        &[
            "commit",
            "--parent",
            PARENT,
            "--child",
            "w2",
            "--title",
            "lexer",
            "--profile",
            "dev",
            "--from",
            "running",
            "--to",
            "waiting",
            "--output-hash",
            "h1",
        ],
    );
    assert!(run.stdout.starts_with("w2@") && run.stdout.ends_with('\n'));

    let pending = outbox(root, &["pending", "--parent", PARENT]);
    assert_eq!((pending.code, pending.stdout.as_str()), (0, ""));

    let peek = ok(root, &["peek", "--parent", PARENT]);
    // No trailing tab: w1 has neither summary nor title.
    assert_eq!(peek.stdout, "w1\tsuccess\nw2\twaiting\tlexer\n");
    // Peek consumes nothing.
    assert_eq!(ok(root, &["peek", "--parent", PARENT]).stdout, peek.stdout);

    let drain = ok(root, &["drain", "--parent", PARENT]);
    assert_eq!(drain.stdout, peek.stdout);
    assert_eq!(outbox(root, &["pending", "--parent", PARENT]).code, 1);
    assert_eq!(ok(root, &["drain", "--parent", PARENT]).stdout, "");
    assert_eq!(
        ok(root, &["drain", "--parent", PARENT, "--json"]).stdout,
        "[]\n"
    );
    assert_eq!(
        ok(root, &["peek", "--parent", PARENT, "--json"]).stdout,
        "[]\n"
    );

    // The same turn again is not delivered twice.
    assert_eq!(commit_finished(root, PARENT, "w1", "success"), fp);
    assert!(drain_json(root, PARENT).is_empty());
}

#[test]
fn text_output_escapes_tabs_and_newlines() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    commit_finished_with(
        root,
        PARENT,
        "w1",
        "failed",
        &["--summary", "line 1\nline\t2"],
    );
    assert_eq!(
        ok(root, &["drain", "--parent", PARENT]).stdout,
        "w1\tfailed\tline 1\\nline\\t2\n"
    );
}

#[test]
fn a_summary_over_32_kib_is_capped() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let long = "x".repeat(40 * 1024);
    commit_finished_with(root, PARENT, "w1", "success", &["--summary", &long]);
    // Through --json as well.
    let record = serde_json::json!({
        "child_session_id": "w2", "kind": "finished", "done_status": "success",
        "done_summary": "é".repeat(30 * 1024),
    });
    let run = outbox_in(
        root,
        &["commit", "--parent", PARENT, "--json"],
        record.to_string().as_bytes(),
    );
    assert_eq!(run.code, 0, "{run:?}");

    let drained = drain_json(root, PARENT);
    assert_eq!(drained.len(), 2);
    for r in &drained {
        let summary = r["done_summary"].as_str().unwrap();
        assert!(summary.len() <= 32 * 1024, "{}", summary.len());
        assert!(summary.len() > 32 * 1024 - 64, "{}", summary.len());
        assert!(summary.ends_with("…[truncated]"));
    }
}

#[test]
fn drain_json_round_trips_through_commit_json() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    ok(
        a.path(),
        &[
            "commit",
            "--parent",
            PARENT,
            "--child",
            "w1",
            "--title",
            "parser",
            "--profile",
            "dev",
            "--finished",
            "--status",
            "success",
            "--summary",
            "all \"tests\" pass\n",
            "--output-hash",
            "abc",
        ],
    );
    ok(
        a.path(),
        &[
            "commit", "--parent", PARENT, "--child", "w2", "--from", "running", "--to", "waiting",
        ],
    );
    let first = drain_json(a.path(), PARENT);
    assert_eq!(first.len(), 2);
    assert_eq!(first[0]["kind"], "finished");
    assert_eq!(first[0]["target_session_id"], PARENT);
    for record in &first {
        let run = outbox_in(
            b.path(),
            &["commit", "--parent", PARENT, "--json"],
            record.to_string().as_bytes(),
        );
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.stdout.trim(), record["turn_fingerprint"]);
    }
    let raw = ok(b.path(), &["drain", "--parent", PARENT, "--json"]).stdout;
    let second: Vec<Value> = serde_json::from_str(&raw).unwrap();
    assert_eq!(second, first);

    // One record per line, the on-disk field names in the on-disk order.
    let line = raw.lines().nth(1).unwrap();
    let order = [
        "child_session_id",
        "child_title",
        "profile",
        "from_status",
        "to_status",
        "timestamp",
        "last_output_hash",
        "target_session_id",
        "kind",
        "done_status",
        "done_summary",
        "turn_fingerprint",
        "fp",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|k| line.find(&format!("\"{k}\":")).expect(k))
        .collect();
    assert!(positions.is_sorted(), "{line}");
}

#[test]
fn sweep_drops_only_old_records_in_every_inbox() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    for parent in ["p1", "p2"] {
        let old = serde_json::json!({
            "child_session_id": "old", "to_status": "waiting",
            "timestamp": "2020-01-01T00:00:00Z",
        });
        let run = outbox_in(
            root,
            &["commit", "--parent", parent, "--json"],
            old.to_string().as_bytes(),
        );
        assert_eq!(run.code, 0, "{run:?}");
        commit_finished(root, parent, "new", "success");
    }
    assert_eq!(ok(root, &["sweep", "--older-than", "36h"]).stdout, "2\n");
    assert_eq!(ok(root, &["sweep"]).stdout, "0\n");
    for parent in ["p1", "p2"] {
        let left: Vec<Value> = peek_json(root, parent);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0]["child_session_id"], "new");
    }
    // humantime's forms work too; the records are a few seconds old.
    for older_than in ["1d 12h", "1w", "90min", "7 days"] {
        assert_eq!(
            ok(root, &["sweep", "--older-than", older_than]).stdout,
            "0\n"
        );
    }
    assert_eq!(peek_json(root, "p1").len(), 1);
    for junk in ["7 fortnights", "-1d", "", "1d12"] {
        let bad = outbox(root, &["sweep", &format!("--older-than={junk}")]);
        assert_eq!(bad.code, 2, "{junk}: {bad:?}");
        assert_eq!(bad.stderr_lines().len(), 1, "{junk}: {bad:?}");
        assert!(bad.stderr.contains("invalid duration"), "{bad:?}");
    }
}

#[test]
fn the_root_comes_from_the_flag_then_outbox_root_then_xdg_then_home() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let commit = |envs: &[(&str, &std::path::Path)], args: &[&str]| {
        let mut cmd = command();
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.args(args).args([
            "commit",
            "--parent",
            PARENT,
            "--child",
            "w1",
            "--finished",
            "--status",
            "ok",
        ]);
        let run = run_command(cmd, b"");
        assert_eq!(run.code, 0, "{run:?}");
    };
    let flag = base.join("flag");
    let env = base.join("env");
    let xdg = base.join("xdg");
    let home = base.join("home");
    let all: [(&str, &std::path::Path); 3] = [
        ("OUTBOX_ROOT", &env),
        ("XDG_DATA_HOME", &xdg),
        ("HOME", &home),
    ];
    commit(&all, &["--root", flag.to_str().unwrap()]);
    commit(&all, &[]);
    commit(&all[1..], &[]);
    commit(&all[2..], &[]);
    for root in [
        flag,
        env,
        xdg.join("outbox"),
        home.join(".local/share/outbox"),
    ] {
        assert_eq!(
            outbox(&root, &["pending", "--parent", PARENT]).code,
            0,
            "{root:?}"
        );
    }
    // Nowhere to go: a usage error naming the way out.
    let mut cmd = command();
    cmd.args(["pending", "--parent", PARENT]);
    let run = run_command(cmd, b"");
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--root"), "{run:?}");
}

#[test]
fn read_only_commands_leave_a_fresh_root_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("never-created");
    // Each answers as documented, and says on stderr (one line) that the
    // root does not exist: most likely a mistyped --root.
    let says_missing = |run: &Run| {
        assert_eq!(run.stderr_lines().len(), 1, "{run:?}");
        assert!(
            run.stderr
                .contains(&format!("data root {} does not exist", root.display())),
            "{run:?}"
        );
    };
    let run = outbox(&root, &["pending", "--parent", PARENT]);
    assert_eq!(run.code, 1);
    says_missing(&run);
    let run = ok(&root, &["peek", "--parent", PARENT]);
    assert_eq!(run.stdout, "");
    says_missing(&run);
    let run = ok(&root, &["drain", "--parent", PARENT, "--json"]);
    assert_eq!(run.stdout, "[]\n");
    says_missing(&run);
    let run = ok(&root, &["drain", "--parent", PARENT, "--exec", "false"]);
    says_missing(&run);
    let run = ok(&root, &["sweep"]);
    assert_eq!(run.stdout, "0\n");
    says_missing(&run);
    assert!(!root.exists());

    // A root that exists but holds nothing yet is not worth a word.
    std::fs::create_dir(&root).unwrap();
    let run = outbox(&root, &["pending", "--parent", PARENT]);
    assert_eq!((run.code, run.stderr.as_str()), (1, ""));
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
}

#[test]
fn every_command_has_help_with_an_example() {
    let root = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["commit", "--help"],
        &["drain", "--help"],
        &["pending", "--help"],
        &["peek", "--help"],
        &["sweep", "--help"],
        &["stop-hook", "--help"],
        &["help", "stop-hook"],
        &["hooks", "--help"],
        &["doctor", "--help"],
        &["completions", "--help"],
    ] {
        let run = ok(root.path(), args);
        assert!(run.stdout.contains("Example"), "{args:?}: {}", run.stdout);
    }
    let version = ok(root.path(), &["--version"]);
    assert_eq!(
        version.stdout,
        format!("outbox {} (on-disk format 2)\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn exit_codes_and_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Usage errors: clap's message, status 2.
    for args in [
        &[][..],
        &["frobnicate"],
        &["pending"],
        &["pending", "--parent", PARENT, "--bogus"],
        &["commit", "--parent", PARENT, "--child", "c"],
        &["commit", "--parent", PARENT, "--child", "c", "--finished"],
        &["sweep", "--older-than", "soon"],
    ] {
        let run = outbox(root, args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?}");
        assert!(!run.stderr.is_empty(), "{args:?}");
    }
    // Bad ids: one line, status 2.
    for parent in ["", "   ", &"x".repeat(300)] {
        let run = outbox(root, &["pending", "--parent", parent]);
        assert_eq!(run.code, 2, "{run:?}");
        assert_eq!(run.stderr_lines().len(), 1, "{run:?}");
        assert!(run.stderr.contains("invalid parent id"), "{run:?}");
    }
    let run = outbox(
        root,
        &[
            "commit", "--parent", PARENT, "--child", " ", "--from", "a", "--to", "b",
        ],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("no child session id"), "{run:?}");

    // An unusable root: one line naming the path, status 2.
    let file = root.join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    for args in [
        &["pending", "--parent", PARENT][..],
        &["peek", "--parent", PARENT],
        &["drain", "--parent", PARENT],
        &["sweep"],
        &[
            "commit",
            "--parent",
            PARENT,
            "--child",
            "c",
            "--finished",
            "--status",
            "ok",
        ],
    ] {
        let run = outbox(&file, args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert_eq!(run.stderr_lines().len(), 1, "{args:?}: {run:?}");
        assert!(
            run.stderr.contains(&*file.to_string_lossy()),
            "{args:?}: {run:?}"
        );
    }
}
