//! Issue 20 through the CLI, each test a behaviour a review found broken.

use crate::util::{ok, outbox_in, snapshot};

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
