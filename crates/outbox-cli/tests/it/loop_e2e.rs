//! The Claude Code loop closed end to end: the hook commands `outbox hooks`
//! prints (parsed from its JSON), run as Claude Code runs them (`sh -c`,
//! from `/`, with an empty environment, the hook's JSON on stdin), through
//! scripted sessions of a parent, its children and its subagents, on the
//! file store and on PostgreSQL (skipped, saying so, without
//! `OUTBOX_TEST_DATABASE_URL`). The events follow Claude Code's hooks
//! reference (checked September 2026) and what `/work/shared/realcc` saw
//! the real client do (2.1.332): Esc fires no hook, a blocked turn's next
//! Stop has `stop_hook_active: true`.
//!
//! Hooks are killed (SIGKILL, the whole process group) at two barriers no
//! timing can move: blocked reading stdin (before anything), and blocked
//! printing into a pipe whose buffer the test filled (after the state or
//! the commit was made durable, before Claude Code could read a word).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[cfg(feature = "postgres")]
use crate::postgres_store::Db;
use crate::util::*;

const SESSION: &str = "parent-sess";

/// The store a scenario runs on.
enum Store {
    Files(tempfile::TempDir),
    #[cfg(feature = "postgres")]
    Pg(Db),
}

impl Store {
    fn flag(&self) -> [String; 2] {
        match self {
            Store::Files(dir) => [
                "--root".into(),
                dir.path().join("data").display().to_string(),
            ],
            #[cfg(feature = "postgres")]
            Store::Pg(db) => ["--store".into(), db.url()],
        }
    }

    fn outbox(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut cmd = command();
        cmd.args(self.flag()).args(args);
        run_command(cmd, stdin)
    }

    /// The children pending for the parent, in order.
    fn pending(&self) -> Vec<String> {
        let run = self.outbox(&["peek", "--parent", PARENT, "--json"], b"");
        assert_eq!(run.code, 0, "{run:?}");
        let records: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
        records
            .iter()
            .map(|r| r["child_session_id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The handover state's (surface, emitted).
    fn state(&self) -> (Option<String>, bool) {
        match self {
            Store::Files(dir) => {
                let path = dir
                    .path()
                    .join("data/runtime/stop-blocks")
                    .join(format!("{PARENT}.json"));
                let Ok(bytes) = std::fs::read(path) else {
                    return (None, false);
                };
                // A half-written file is never seen: it is renamed into place.
                let v: Value = serde_json::from_slice(&bytes).unwrap();
                (
                    v["surface"].as_str().map(str::to_owned),
                    v["emitted"] == true,
                )
            }
            #[cfg(feature = "postgres")]
            Store::Pg(db) => {
                let mut client = postgres::Client::connect(db.base(), postgres::NoTls).unwrap();
                let sql = format!(
                    "SELECT surface, emitted FROM \"{}\".stop_blocks WHERE parent = $1",
                    db.schema()
                );
                match client.query_opt(&sql, &[&PARENT]) {
                    Ok(Some(row)) => (row.get(0), row.get(1)),
                    _ => (None, false),
                }
            }
        }
    }
}

/// The hooks one `outbox hooks` invocation printed: event -> command.
fn printed_hooks(store: &Store, role: &[&str]) -> BTreeMap<String, String> {
    let mut args = vec!["hooks", "--parent", PARENT];
    args.extend_from_slice(role);
    let run = store.outbox(&args, b"");
    assert_eq!(run.code, 0, "{run:?}");
    let json: Value = serde_json::from_str(&run.stdout).expect("hooks prints JSON");
    let mut hooks = BTreeMap::new();
    for (event, groups) in json["hooks"].as_object().unwrap() {
        assert_eq!(groups.as_array().unwrap().len(), 1, "{json}");
        let list = groups[0]["hooks"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{json}");
        assert_eq!(list[0]["type"], "command");
        hooks.insert(
            event.clone(),
            list[0]["command"].as_str().unwrap().to_owned(),
        );
    }
    hooks
}

/// `command` as Claude Code runs a hook: `sh -c`, in `/`, with an empty
/// environment, in a process group of its own (so a kill reaches it all).
fn hook_command(command: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .env_clear()
        .current_dir("/")
        .process_group(0);
    cmd
}

/// Runs a hook to its end.
fn fire(command: &str, input: &Value) -> Run {
    run_command(hook_command(command), input.to_string().as_bytes())
}

/// SIGKILL to the whole process group of `child`, then reaps it.
fn kill_group(mut child: Child) {
    let status = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill failed");
    let exit = child.wait().unwrap();
    assert!(exit.code().is_none(), "killed by a signal: {exit:?}");
}

/// Kills the hook while it waits for its input: it has done nothing.
fn kill_at_read(command: &str) {
    let mut child = hook_command(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Half of the input, and stdin kept open: the hook reads to EOF first.
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"{\"session_id\":")
        .unwrap();
    kill_group(child);
}

/// Runs the hook with its stdout a pipe whose buffer is full, waits until
/// `reached` holds (what the hook made durable before its print), then
/// kills it: blocked in its print, it cannot have printed a byte.
fn kill_at_print(command: &str, input: &Value, reached: impl Fn() -> bool) {
    let (reader, mut writer) = std::io::pipe().unwrap();
    writer.write_all(&[b'x'; 64 * 1024]).unwrap();
    let mut cmd = hook_command(command);
    cmd.stdin(Stdio::piped())
        .stdout(writer)
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    drop(cmd); // our copy of the pipe's write end
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.to_string().as_bytes()).unwrap();
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reached() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the hook ended before it reached its print (is the pipe's buffer over 64 KiB?)"
        );
        assert!(
            Instant::now() < deadline,
            "the hook never reached its print"
        );
        std::thread::yield_now();
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "it is blocked in its print"
    );
    kill_group(child);
    drop(reader);
}

fn stop_input(session: &str, active: bool, message: Option<&str>) -> Value {
    let mut input = json!({
        "session_id": session,
        "transcript_path": format!("/home/dev/.claude/projects/-work/{session}.jsonl"),
        "cwd": "/work",
        "permission_mode": "default",
        "hook_event_name": "Stop",
        "stop_hook_active": active,
        "prompt_id": "p-1",
        "effort": "high",
        "background_tasks": [],
        "session_crons": [],
    });
    if let Some(message) = message {
        input["last_assistant_message"] = json!(message);
    }
    input
}

fn event_input(event: &str, extra: Value) -> Value {
    let mut input = json!({
        "session_id": SESSION,
        "transcript_path": "/home/dev/.claude/projects/-work/parent-sess.jsonl",
        "cwd": "/work",
        "hook_event_name": event,
    });
    for (k, v) in extra.as_object().unwrap() {
        input[k] = v.clone();
    }
    input
}

/// The parent's hooks, a child's, the subagents', and what the parent's
/// model was shown.
struct Loop {
    parent: BTreeMap<String, String>,
    child: BTreeMap<String, String>,
    subagents: BTreeMap<String, String>,
    shown: Vec<String>,
}

impl Loop {
    fn new(store: &Store) -> Self {
        let parent = printed_hooks(store, &[]);
        let child = printed_hooks(store, &["--child"]);
        let subagents = printed_hooks(store, &["--subagents"]);
        let events = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            events(&parent),
            ["SessionStart", "Stop", "UserPromptSubmit"]
        );
        assert_eq!(events(&child), ["SessionEnd", "Stop", "StopFailure"]);
        assert_eq!(events(&subagents), ["SubagentStop"]);
        Self {
            parent,
            child,
            subagents,
            shown: Vec::new(),
        }
    }

    /// A child's hook for `event` with `input`; it must succeed.
    fn child_hook(&self, event: &str, input: &Value) -> Run {
        let run = fire(&self.child[event], input);
        assert_eq!(run.code, 0, "{event}: {run:?}");
        run
    }

    fn child_stop(&self, child: &str, message: &str) {
        self.child_hook("Stop", &stop_input(child, false, Some(message)));
    }

    /// The parent's Stop: the block's reason, if it blocked.
    fn stop(&mut self, active: bool) -> Option<String> {
        let run = fire(&self.parent["Stop"], &stop_input(SESSION, active, None));
        assert_eq!(run.code, 0, "{run:?}");
        if run.stdout.is_empty() {
            return None;
        }
        let json: Value = serde_json::from_str(&run.stdout).expect("one line of JSON");
        assert_eq!(json["decision"], "block", "{json}");
        let reason = json["reason"].as_str().unwrap().to_owned();
        self.shown.push(reason.clone());
        Some(reason)
    }

    /// The parent's UserPromptSubmit or SessionStart: the context added.
    fn context(&mut self, event: &str, extra: Value) -> Option<String> {
        let run = fire(&self.parent[event], &event_input(event, extra));
        assert_eq!(run.code, 0, "{run:?}");
        if run.stdout.is_empty() {
            return None;
        }
        let json: Value = serde_json::from_str(&run.stdout).expect("one line of JSON");
        let out = &json["hookSpecificOutput"];
        assert_eq!(out["hookEventName"], event, "{json}");
        let text = out["additionalContext"].as_str().unwrap().to_owned();
        assert!(text.chars().count() <= 10_000, "{}", text.len());
        self.shown.push(text.clone());
        Some(text)
    }

    fn prompt(&mut self, prompt: &str) -> Option<String> {
        self.context("UserPromptSubmit", json!({ "prompt": prompt }))
    }
}

/// Whether a delivery's text names `child`'s record with `status` and, when
/// given, a first summary line starting with `summary` (the renderer's
/// frame: `child "ID"`, `status "S"`, the child's text on `| ` lines).
fn says(text: &str, child: &str, status: &str, summary: Option<&str>) -> bool {
    text.contains(&format!("child \"{child}\""))
        && text.contains(&format!("status \"{status}\""))
        && summary.is_none_or(|s| text.contains(&format!("\n| {s}")))
}

/// Whether a delivery's text says a record was shown before.
fn again(text: &str) -> bool {
    text.contains("It was shown before and is not yet confirmed.")
}

/// Whether a delivery's text names `child` at all.
fn names(text: &str, child: &str) -> bool {
    text.contains(&format!("child \"{child}\""))
}

fn pending(store: &Store) -> Vec<String> {
    store.pending()
}

/// The whole loop on one store.
fn the_loop(store: &Store) {
    let mut l = Loop::new(store);

    // A child finishes; the parent's Stop blocks with its summary; the
    // records stay pending until the next Stop with stop_hook_active.
    l.child_stop("worker-1", "Parser done: 42 tests pass.");
    let reason = l.stop(false).expect("a block");
    assert!(
        says(
            &reason,
            "worker-1",
            "success",
            Some("Parser done: 42 tests pass.")
        ),
        "{reason}"
    );
    assert_eq!(pending(store), ["worker-1"], "pending until confirmed");
    assert_eq!(l.stop(true), None);
    assert!(pending(store).is_empty(), "confirmed and consumed");

    // The user interrupts the blocked turn (Esc fires no hook) and types
    // a prompt: the record is shown again, as not yet handled; the
    // prompt's turn ends (Stop, stop_hook_active false): confirmed.
    l.child_stop("worker-2", "Lexer done.");
    l.stop(false).expect("a block");
    let context = l.prompt("what next?").expect("shown again");
    assert!(
        says(&context, "worker-2", "success", Some("Lexer done.")) && again(&context),
        "{context}"
    );
    assert_eq!(l.stop(false), None);
    assert!(pending(store).is_empty());

    // The loop guard: three blocks in a row, then the Stop lets go and the
    // next prompt delivers.
    for (n, child) in ["worker-3", "worker-4", "worker-5"].iter().enumerate() {
        l.child_stop(child, "done");
        let reason = l.stop(n > 0).expect("a block");
        assert!(says(&reason, child, "success", Some("done")), "{reason}");
    }
    l.child_stop("worker-6", "done");
    let run = fire(&l.parent["Stop"], &stop_input(SESSION, true, None));
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{run:?}");
    assert!(run.stderr.contains("3 consecutive blocks"), "{run:?}");
    assert!(run.stderr.contains("next prompt"), "{run:?}");
    assert_eq!(
        pending(store),
        ["worker-6"],
        "worker-5 confirmed, worker-6 waits"
    );
    let context = l.prompt("status?").expect("the prompt hook delivers");
    assert!(
        says(&context, "worker-6", "success", Some("done")),
        "{context}"
    );
    assert!(!again(&context), "{context}");
    assert_eq!(l.stop(false), None);
    assert!(pending(store).is_empty());

    // A child's turn fails with an API error (StopFailure instead of Stop).
    let mut failed = stop_input("worker-7", false, Some("API Error: 429 rate limited"));
    failed["hook_event_name"] = json!("StopFailure");
    failed["error"] = json!("rate_limit");
    l.child_hook("StopFailure", &failed);
    let reason = l.stop(false).expect("the parent is told");
    assert!(
        says(
            &reason,
            "worker-7",
            "error",
            Some("the turn failed: rate_limit")
        ),
        "{reason}"
    );
    assert!(reason.contains("API Error: 429"), "{reason}");
    assert_eq!(l.stop(true), None);

    // A child's session ends with nothing of it pending: the parent is
    // told, here at its next SessionStart (a resume), and the first prompt
    // after it does not repeat it.
    let end = json!({"session_id": "worker-8", "hook_event_name": "SessionEnd",
                     "reason": "logout", "cwd": "/work"});
    l.child_hook("SessionEnd", &end);
    let context = l
        .context("SessionStart", json!({"source": "resume"}))
        .expect("told at SessionStart");
    assert!(
        says(
            &context,
            "worker-8",
            "ended",
            Some("the session ended (logout)")
        ),
        "{context}"
    );
    assert_eq!(l.prompt("hello again"), None, "still in the conversation");
    assert_eq!(l.stop(false), None);
    assert!(pending(store).is_empty());

    // A session that ends while its last report is pending: the report
    // stands (last wins would replace it by the end).
    l.child_stop("worker-9", "Docs written.");
    let run = l.child_hook(
        "SessionEnd",
        &json!({"session_id": "worker-9", "hook_event_name": "SessionEnd", "reason": "other"}),
    );
    assert!(run.stderr.contains("still pending"), "{run:?}");
    let reason = l.stop(false).expect("a block");
    assert!(
        says(&reason, "worker-9", "success", Some("Docs written.")),
        "{reason}"
    );
    assert_eq!(l.stop(true), None);

    // A background subagent of the parent finishes: SubagentStop runs in
    // the parent's session. The parent's Stop hook refuses that input (a
    // block would reach the subagent), the subagents' hook commits it, and
    // the parent is told.
    let subagent = json!({
        "session_id": SESSION, "transcript_path": "/t.jsonl", "cwd": "/work",
        "hook_event_name": "SubagentStop", "stop_hook_active": false,
        "agent_id": "agent-1", "agent_type": "reviewer",
        "agent_transcript_path": "/a.jsonl", "last_assistant_message": "LGTM",
    });
    let run = fire(&l.subagents["SubagentStop"], &subagent);
    assert_eq!(run.code, 0, "{run:?}");
    let run = fire(&l.parent["Stop"], &subagent);
    assert_eq!((run.code, run.stdout.as_str()), (1, ""), "{run:?}");
    assert_eq!(
        pending(store),
        ["agent-1"],
        "nothing consumed by the refusal"
    );
    let reason = l.stop(false).expect("the parent is told");
    assert!(
        says(&reason, "agent-1", "success", Some("LGTM")) && reason.contains("title \"reviewer\""),
        "{reason}"
    );
    assert_eq!(l.stop(true), None);
    assert!(pending(store).is_empty());

    // Every completion reached the parent's model.
    for child in [
        "worker-1", "worker-2", "worker-3", "worker-4", "worker-5", "worker-6", "worker-7",
        "worker-8", "worker-9", "agent-1",
    ] {
        assert!(
            l.shown.iter().any(|t| names(t, child)),
            "{child} never shown"
        );
    }
}

/// SIGKILL of every hook at both barriers of every step of a session:
/// every completion still reaches the parent's model, and is consumed
/// only after a confirmation of a delivery that was printed.
fn killed_hooks(store: &Store) {
    let mut l = Loop::new(store);
    let children = ["k-1", "k-2", "k-3"];
    let all = ["k-1", "k-2", "k-3", "k-4"];

    // A child's hooks (Stop, StopFailure, SessionEnd), killed waiting for
    // their input: nothing committed (Claude Code reports the hook's
    // failure); killed blocked in their print: the commit was durable
    // before, the record is pending.
    for (child, event) in children.iter().zip(["Stop", "StopFailure", "SessionEnd"]) {
        kill_at_read(&l.child[event]);
        let mut input = stop_input(child, false, Some(&format!("{child} done")));
        input["hook_event_name"] = json!(event);
        input["reason"] = json!("other");
        kill_at_print(&l.child[event], &input, || {
            store.pending().iter().any(|c| c == child)
        });
    }
    assert_eq!(pending(store), children);

    // The parent's Stop, killed before anything, then blocked in its
    // print: the state is durable and not marked emitted, nothing shown.
    kill_at_read(&l.parent["Stop"]);
    kill_at_print(&l.parent["Stop"], &stop_input(SESSION, false, None), || {
        store.state() == (Some("stop_block".into()), false)
    });
    // Claude Code ignored the killed hook. Even a Stop that claims
    // stop_hook_active (another hook's block) confirms nothing: the block
    // was never printed. It is shown, as new.
    let reason = l.stop(true).expect("shown");
    assert!(!again(&reason), "{reason}");
    for child in children {
        assert!(names(&reason, child), "{reason}");
    }
    assert_eq!(pending(store), children, "nothing consumed without a print");

    // The user interrupts; the prompt hook is killed in its print: its
    // context was never printed, so the turn's Stop does not confirm it
    // and shows the records again.
    kill_at_read(&l.parent["UserPromptSubmit"]);
    kill_at_print(
        &l.parent["UserPromptSubmit"],
        &event_input("UserPromptSubmit", json!({"prompt": "go"})),
        || store.state() == (Some("prompt_context".into()), false),
    );
    assert!(l.stop(false).is_some(), "shown at the turn's Stop");
    assert_eq!(pending(store), children);
    // Acted on, while a fourth child finished: the Stop that confirms is
    // killed in the print of its next block. The confirmation was durable
    // before it: the three are consumed, the fourth is pending, not shown.
    l.child_stop("k-4", "k-4 done");
    kill_at_read(&l.parent["Stop"]);
    kill_at_print(&l.parent["Stop"], &stop_input(SESSION, true, None), || {
        store.state() == (Some("stop_block".into()), false)
    });
    assert_eq!(pending(store), ["k-4"]);
    // The turn ended (Claude Code ignored the killed hook); a new session
    // starts: the fourth is shown, as new, and the first prompt does not
    // repeat it; its turn's Stop confirms.
    kill_at_read(&l.parent["SessionStart"]);
    kill_at_print(
        &l.parent["SessionStart"],
        &event_input("SessionStart", json!({"source": "resume"})),
        || store.state() == (Some("session_context".into()), false),
    );
    let context = l
        .context("SessionStart", json!({"source": "resume"}))
        .expect("shown at SessionStart");
    assert!(names(&context, "k-4") && !again(&context), "{context}");
    assert_eq!(l.prompt("hi"), None);
    assert_eq!(l.stop(false), None);
    assert!(pending(store).is_empty());
    // Consumed exactly once: the same turn committed again is not
    // delivered again.
    let record = json!({"child_session_id": "k-4", "kind": "finished",
                        "done_status": "success", "done_summary": "k-4 done"});
    let run = store.outbox(
        &["commit", "--parent", PARENT, "--json"],
        record.to_string().as_bytes(),
    );
    assert!(run.stderr.contains("already consumed"), "{run:?}");
    assert!(pending(store).is_empty());
    let seen: BTreeSet<&str> = all
        .into_iter()
        .filter(|c| l.shown.iter().any(|t| names(t, c)))
        .collect();
    assert_eq!(seen.len(), all.len(), "{seen:?}");
}

fn files() -> Store {
    Store::Files(tempfile::tempdir().unwrap())
}

#[test]
fn the_loop_on_the_file_store() {
    the_loop(&files());
}

/// Says, past libtest's capture, that a PostgreSQL test did not run in a
/// build without the `postgres` feature.
#[cfg(not(feature = "postgres"))]
fn skipped(test: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED loop_e2e::{test}: built without the cargo feature postgres \
         (cargo test -p outbox-cli --features postgres)"
    );
}

#[test]
fn the_loop_on_postgres() {
    #[cfg(feature = "postgres")]
    if let Some(db) = Db::from_env("loop") {
        the_loop(&Store::Pg(db));
    }
    #[cfg(not(feature = "postgres"))]
    skipped("the_loop_on_postgres");
}

#[test]
fn killed_hooks_lose_nothing_on_the_file_store() {
    killed_hooks(&files());
}

#[test]
fn killed_hooks_lose_nothing_on_postgres() {
    #[cfg(feature = "postgres")]
    if let Some(db) = Db::from_env("loop_killed") {
        killed_hooks(&Store::Pg(db));
    }
    #[cfg(not(feature = "postgres"))]
    skipped("killed_hooks_lose_nothing_on_postgres");
}

/// The data root a file-store hook names is absolute, whatever directory
/// `outbox hooks` ran in.
#[test]
fn printed_commands_name_absolute_paths() {
    let store = files();
    for command in printed_hooks(&store, &["--child"]).values() {
        let root = PathBuf::from(command.split(' ').nth(2).unwrap());
        assert!(root.is_absolute(), "{command}");
    }
}
