//! Issue 20 through the CLI, each test a behaviour a review found broken.

use crate::util::{make_private, ok, outbox, outbox_in, snapshot};

/// A root as another parent's producer leaves it: `inboxes/` with that
/// parent's inbox, nothing else.
fn root_with_another_parents_inbox(root: &std::path::Path) {
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
}

#[test]
fn drain_and_sweep_of_a_parent_without_an_inbox_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    root_with_another_parents_inbox(root);
    let before = snapshot(root);
    let drained = ok(root, &["drain", "--parent", "other"]);
    assert_eq!(drained.stdout, "");
    ok(root, &["drain", "--parent", "other", "--json"]);
    ok(root, &["drain", "--parent", "other", "--exec", "true"]);
    let hook = outbox_in(
        root,
        &["stop-hook", "--parent", "other"],
        br#"{"hook_event_name":"Stop"}"#,
    );
    assert_eq!((hook.code, hook.stdout.as_str()), (0, ""), "{hook:?}");
    assert_eq!(snapshot(root), before, "a drain of nothing wrote");
}

#[test]
fn drain_and_sweep_on_a_root_without_inboxes_create_nothing() {
    for layout in [&["inboxes"][..], &["inboxes", "runtime/inbox-inflight"][..]] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in layout {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let before = snapshot(root);
        ok(root, &["drain", "--parent", "conductor"]);
        let swept = ok(root, &["sweep"]);
        assert_eq!(swept.stdout, "0\n");
        ok(root, &["sweep", "--older-than", "0s"]);
        assert_eq!(snapshot(root), before, "{layout:?}: drain or sweep wrote");
    }
}

/// The command of the one hook in a fragment `outbox hooks` printed.
fn the_command(fragment: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(fragment).expect("hooks prints JSON");
    json["hooks"]["Stop"][0]["hooks"][0]["command"]
        .as_str()
        .expect("a command")
        .to_owned()
}

/// Runs a hook command as Claude Code does: `sh -c` from `/`, no
/// environment, the input on stdin.
fn run_hook(command: &str, input: &[u8]) -> crate::util::Run {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c").arg(command).env_clear().current_dir("/");
    crate::util::run_command(cmd, input)
}

#[test]
fn hooks_for_a_parent_id_that_starts_with_a_dash_work() {
    for parent in ["-conductor", "--root", "-", "- x"] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let flag = format!("--parent={parent}");
        let child = the_command(&ok(root, &["hooks", &flag, "--child"]).stdout);
        let stop = the_command(&ok(root, &["hooks", &flag]).stdout);
        let input =
            br#"{"session_id":"w1","hook_event_name":"Stop","last_assistant_message":"done"}"#;
        let committed = run_hook(&child, input);
        assert_eq!(committed.code, 0, "{parent:?}: {child}: {committed:?}");
        let blocked = run_hook(&stop, br#"{"hook_event_name":"Stop"}"#);
        assert_eq!(blocked.code, 0, "{parent:?}: {stop}: {blocked:?}");
        assert!(
            blocked.stdout.contains(r#""decision":"block""#) && blocked.stdout.contains("done"),
            "{parent:?}: {blocked:?}"
        );
    }
}

/// What Node's `JSON.stringify` writes for a string cut in the middle of
/// an emoji: a lone surrogate escape (RFC 8259's grammar allows it).
const CUT_EMOJI: &str = r#"{"session_id":"w1","hook_event_name":"Stop","stop_hook_active":false,"last_assistant_message":"done \ud83d"}"#;

#[test]
fn hook_input_with_lone_surrogate_escapes_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let committed = outbox_in(
        root,
        &["commit", "--parent", "p", "--from-hook"],
        CUT_EMOJI.as_bytes(),
    );
    assert_eq!(committed.code, 0, "{committed:?}");
    // A lone low surrogate, a pair (kept), and an escaped backslash
    // before a u (text, not an escape).
    let more = r#"{"session_id":"w2","hook_event_name":"Stop","last_assistant_message":"\ude00 \ud83d\ude00 \\ud83d \ud83d\ud83d"}"#;
    let committed = outbox_in(
        root,
        &["commit", "--parent", "p", "--from-hook"],
        more.as_bytes(),
    );
    assert_eq!(committed.code, 0, "{committed:?}");
    let peeked = ok(root, &["peek", "--parent", "p", "--json"]);
    let records: Vec<serde_json::Value> = serde_json::from_str(&peeked.stdout).unwrap();
    assert_eq!(records[0]["done_summary"], "done \u{fffd}");
    assert_eq!(
        records[1]["done_summary"],
        "\u{fffd} \u{1f600} \\ud83d \u{fffd}\u{fffd}"
    );
    // The parent's hook reads such input too.
    let blocked = outbox_in(root, &["stop-hook", "--parent", "p"], CUT_EMOJI.as_bytes());
    assert_eq!(blocked.code, 0, "{blocked:?}");
    assert!(
        blocked.stdout.contains(r#""decision":"block""#),
        "{blocked:?}"
    );
}

fn commit(root: &std::path::Path, parent: &str, child: &str, summary: &str) {
    ok(
        root,
        &[
            "commit",
            &format!("--parent={parent}"),
            "--child",
            child,
            "--finished",
            "--status",
            "success",
            "--summary",
            summary,
        ],
    );
}

#[test]
fn doctor_reads_file_names_by_grammar_and_counts_pending_records_per_parent_id() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Ids that contain the marks of temporary and quarantine files.
    for parent in ["job.tmp-1", "a.quarantine-2", "b.tmp-00ff"] {
        commit(root, parent, "w1", "one");
        commit(root, parent, "w2", "two");
    }
    // A routine limited drain: its leftover is no problem.
    ok(root, &["drain", "--parent=job.tmp-1", "--max", "1"]);
    ok(root, &["drain", "--parent=b.tmp-00ff"]);
    // Four lines, one pending record; an id the shell must quote.
    for summary in ["1", "2", "3", "4"] {
        commit(root, "my session", "w1", summary);
    }
    // A consumed turn committed again: a line, nothing pending.
    commit(root, "cons", "w1", "t");
    ok(root, &["drain", "--parent", "cons"]);
    commit(root, "cons", "w1", "t");
    make_private(root);

    let run = outbox(root, &["doctor"]);
    let problems: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("problem"))
        .collect();
    assert!(problems.is_empty(), "{problems:#?}\n{}", run.stdout);
    assert_eq!(run.code, 0, "{run:?}");
    let info = |needle: &str| {
        run.stdout
            .lines()
            .any(|l| l.starts_with(&format!("info: {needle}")))
    };
    assert!(
        info("parent job.tmp-1: 1 record(s) pending"),
        "{}",
        run.stdout
    );
    assert!(
        info("parent a.quarantine-2: 2 record(s) pending"),
        "{}",
        run.stdout
    );
    assert!(
        info("parent 'my session': 1 record(s) pending"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("my%20session"), "{}", run.stdout);
    assert!(
        !run.stdout.contains("parent cons: 1 record"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("parent b.tmp-00ff: 2 record"),
        "{}",
        run.stdout
    );
    // The drain --max leftover is named as such, as information.
    assert!(
        info(
            "parent job.tmp-1: 1 record(s) pending (1 of them staged by an earlier drain: the rest of a drain --max"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn doctor_says_who_sets_unreadable_lines_aside_and_suggests_nothing_that_consumes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    commit(root, "-odd id", "w1", "one");
    let inbox = std::fs::read_dir(root.join("inboxes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .unwrap();
    let mut bytes = std::fs::read(&inbox).unwrap();
    bytes.extend_from_slice(b"not json\n");
    std::fs::write(&inbox, bytes).unwrap();
    make_private(root);
    let run = outbox(root, &["doctor"]);
    assert_eq!(run.code, 1, "{run:?}");
    let problem = run
        .stdout
        .lines()
        .find(|l| l.starts_with("problem"))
        .unwrap();
    assert!(!problem.contains("commit"), "{problem}");
    assert!(problem.contains("the next drain"), "{problem}");
    assert!(!problem.contains("outbox drain"), "{problem}");
    assert!(problem.contains("--parent='-odd id'"), "{problem}");
}
