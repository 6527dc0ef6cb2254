//! `outbox hooks install|uninstall` on realistic Claude Code settings files,
//! run as a fresh process with HOME and the current directory in a temp
//! dir; and `hooks --child --title` through `sh -c` as Claude Code runs it.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::util::*;

/// A project directory, a HOME and a data root, all temporary.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::create_dir_all(dir.path().join("project/.claude")).unwrap();
        Self { dir }
    }
    fn cwd(&self) -> std::path::PathBuf {
        self.dir.path().join("project")
    }
    fn home(&self) -> std::path::PathBuf {
        self.dir.path().join("home")
    }
    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }
    fn settings(&self) -> std::path::PathBuf {
        self.cwd().join(".claude/settings.json")
    }
    /// `outbox --root <root> <args...>` from the project, HOME set.
    fn outbox(&self, args: &[&str]) -> Run {
        let mut cmd = command();
        cmd.current_dir(self.cwd())
            .env("HOME", self.home())
            .env_remove("CLAUDE_CONFIG_DIR")
            .arg("--root")
            .arg(self.root())
            .args(args);
        run_command(cmd, b"")
    }

    /// `outbox --root <root> hooks <args...>` from the project, HOME set.
    fn hooks(&self, args: &[&str]) -> Run {
        self.outbox(&[&["hooks"], args].concat())
    }
    fn ok(&self, args: &[&str]) -> Run {
        let run = self.hooks(args);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        run
    }
}

/// Settings as Claude Code writes them (`JSON.stringify(x, null, 2)` and a
/// newline), with hooks of others on the same and other events, a matcher,
/// unknown keys, non-ASCII text and escapes.
const CLAUDE_STYLE: &str = r#"{
  "$schema": "https://json.schemastore.org/claude-code-settings.json",
  "permissions": {
    "allow": [
      "Bash(npm run:*)",
      "Read(~/.zshrc)"
    ],
    "deny": []
  },
  "env": {
    "GREETING": "grüß dich \"du\"\n"
  },
  "hooks": {
    "PreToolUse": [
      {
        "matcher": "Edit|Write",
        "hooks": [
          {
            "type": "command",
            "command": "prettier --write \"$CLAUDE_PROJECT_DIR\"",
            "timeout": 30
          }
        ]
      }
    ],
    "Stop": [
      {
        "hooks": [
          {
            "type": "command",
            "command": "notify-send 'Claude is done'"
          }
        ]
      }
    ]
  },
  "futureKey": {
    "nested": [
      1,
      2.5,
      null,
      true
    ]
  },
  "model": "opus"
}
"#;

/// The same kind of content in other formattings a person or tool writes.
fn fixtures() -> Vec<(&'static str, String)> {
    vec![
        ("claude-code style", CLAUDE_STYLE.to_owned()),
        (
            "four spaces, no final newline",
            "{\n    \"model\": \"sonnet\",\n    \"hooks\": {\n        \"SessionStart\": [\n            {\n                \"matcher\": \"startup\",\n                \"hooks\": [{\"type\": \"command\", \"command\": \"echo hi\"}]\n            }\n        ]\n    }\n}".to_owned(),
        ),
        (
            "tabs, CRLF-free, escapes kept as written",
            "{\n\t\"url\": \"https:\\/\\/example.com\",\n\t\"n\": 1.0e3,\n\t\"u\": \"\\u00e9\"\n}\n"
                .to_owned(),
        ),
        (
            "one line, odd spacing",
            "{ \"a\" : [ 1 ,2 ] , \"hooks\" : { \"Stop\" : [ {\"hooks\":[]} ] } }".to_owned(),
        ),
        ("empty object", "{}\n".to_owned()),
        (
            "CRLF line ends",
            CLAUDE_STYLE.replace('\n', "\r\n"),
        ),
        (
            "a repeated key (the last one counts)",
            "{\n  \"hooks\": 1,\n  \"hooks\": {\n    \"Stop\": [\n      {}\n    ]\n  }\n}\n".to_owned(),
        ),
    ]
}

#[test]
fn install_then_uninstall_gives_back_the_file_byte_for_byte() {
    for (name, original) in fixtures() {
        let p = Project::new();
        std::fs::write(p.settings(), &original).unwrap();
        let before: Value = serde_json::from_str(&original).unwrap();

        p.ok(&["install", "--parent", PARENT]);
        let once = std::fs::read(p.settings()).unwrap();
        let run = p.ok(&["install", "--parent", PARENT]);
        assert!(run.stdout.contains("already"), "{name}: {run:?}");
        assert_eq!(
            std::fs::read(p.settings()).unwrap(),
            once,
            "{name}: install twice = install once"
        );
        p.ok(&["install", "--parent", PARENT, "--subagents"]);

        // Claude Code reads it: every other key as it was, ours added.
        let text = std::fs::read_to_string(p.settings()).unwrap();
        if original.contains("\r\n") {
            assert!(
                !text.replace("\r\n", "").contains('\n'),
                "{name}: CRLF kept"
            );
        }
        let after: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{name}: install wrote invalid JSON ({e}):\n{text}"));
        for (key, value) in before.as_object().unwrap() {
            if key != "hooks" {
                assert_eq!(&after[key], value, "{name}: {key}");
            }
        }
        let stop = after["hooks"]["Stop"].as_array().unwrap();
        let ours = stop.last().unwrap()["hooks"][0]["command"]
            .as_str()
            .unwrap();
        assert!(
            ours.ends_with("stop-hook --parent conductor"),
            "{name}: {ours}"
        );
        if let Some(old) = before["hooks"]["Stop"].as_array() {
            assert_eq!(
                &stop[..old.len()],
                &old[..],
                "{name}: others' Stop hooks first"
            );
        }
        assert!(
            after["hooks"]["SubagentStop"][0]["hooks"][0]["command"]
                .as_str()
                .unwrap()
                .ends_with("commit --parent conductor --from-hook")
        );

        // Uninstall in the order installed: every byte back.
        let run = p.ok(&["uninstall", "--parent", PARENT]);
        assert!(
            run.stdout.contains("removed 1 Stop hook"),
            "{name}: {run:?}"
        );
        p.ok(&["uninstall", "--parent", PARENT, "--subagents"]);
        assert_eq!(
            std::fs::read_to_string(p.settings()).unwrap(),
            original,
            "{name}"
        );
        let run = p.ok(&["uninstall", "--parent", PARENT]);
        assert!(run.stdout.contains("no Stop hook"), "{name}: {run:?}");
        assert_eq!(std::fs::read_to_string(p.settings()).unwrap(), original);
    }
}

/// The known limit of the text edits: an event list that was empty before
/// install is removed by uninstall (its emptiness cannot be told from one
/// install created), and so is a `hooks` object left empty.
#[test]
fn an_event_list_empty_before_install_is_removed_by_uninstall() {
    let p = Project::new();
    std::fs::write(
        p.settings(),
        "{\n  \"hooks\": {\n    \"Stop\": []\n  }\n}\n",
    )
    .unwrap();
    p.ok(&["install", "--parent", PARENT]);
    p.ok(&["uninstall", "--parent", PARENT]);
    assert_eq!(std::fs::read_to_string(p.settings()).unwrap(), "{}\n");
}

#[test]
fn uninstall_in_another_order_and_between_others_hooks_is_exact() {
    let p = Project::new();
    std::fs::write(p.settings(), CLAUDE_STYLE).unwrap();
    p.ok(&["install", "--parent", PARENT]);
    p.ok(&["install", "--parent", PARENT, "--subagents"]);
    // Someone adds a hook after ours in the Stop list (the parent's
    // UserPromptSubmit list follows it); ours goes, theirs stays.
    let text = std::fs::read_to_string(p.settings()).unwrap();
    let marker = "          }\n        ]\n      }\n    ],\n    \"UserPromptSubmit\"";
    let theirs = "          }\n        ]\n      },\n      {\n        \"hooks\": [\n          {\n            \"type\": \"command\",\n            \"command\": \"later\"\n          }\n        ]\n      }\n    ],\n    \"UserPromptSubmit\"";
    assert!(text.contains(marker), "{text}");
    std::fs::write(p.settings(), text.replacen(marker, theirs, 1)).unwrap();
    p.ok(&["uninstall", "--parent", PARENT, "--subagents"]);
    p.ok(&["uninstall", "--parent", PARENT]);
    let text = std::fs::read_to_string(p.settings()).unwrap();
    let expected = CLAUDE_STYLE.replacen(
        "\"command\": \"notify-send 'Claude is done'\"\n          }\n        ]\n      }",
        "\"command\": \"notify-send 'Claude is done'\"\n          }\n        ]\n      },\n      {\n        \"hooks\": [\n          {\n            \"type\": \"command\",\n            \"command\": \"later\"\n          }\n        ]\n      }",
        1,
    );
    assert_eq!(text, expected);
}

#[test]
fn a_missing_file_is_created_and_uninstall_leaves_an_empty_object() {
    let p = Project::new();
    std::fs::remove_dir(p.cwd().join(".claude")).unwrap();
    p.ok(&["install", "--parent", PARENT, "--scope", "local"]);
    let local = p.cwd().join(".claude/settings.local.json");
    let json: Value = serde_json::from_slice(&std::fs::read(&local).unwrap()).unwrap();
    assert!(json["hooks"]["Stop"].is_array(), "{json}");
    p.ok(&["uninstall", "--parent", PARENT, "--scope", "local"]);
    assert_eq!(std::fs::read_to_string(&local).unwrap(), "{}\n");
    // Uninstall from a file that does not exist creates nothing.
    let run = p.ok(&["uninstall", "--parent", PARENT, "--scope", "nowhere.json"]);
    assert!(run.stdout.contains("nothing to uninstall"), "{run:?}");
    assert!(!p.cwd().join("nowhere.json").exists());
}

#[test]
fn what_is_not_a_json_object_is_refused_and_left_alone() {
    for bad in [
        "",
        "[]",
        "{\"a\": 1,}",
        "// a comment\n{}",
        "{\"hooks\": []}",
        "{\"hooks\": {\"Stop\": {}}}",
        "\u{feff}{\"a\":", // a byte-order mark and a truncated object
    ] {
        let p = Project::new();
        std::fs::write(p.settings(), bad).unwrap();
        let run = p.hooks(&["install", "--parent", PARENT]);
        assert_eq!(run.code, 2, "{bad:?}: {run:?}");
        assert!(
            run.stderr.contains(&p.settings().display().to_string())
                && run.stderr.contains("nothing changed"),
            "{bad:?}: {run:?}"
        );
        assert_eq!(run.stderr_lines().len(), 1, "{run:?}");
        assert_eq!(std::fs::read_to_string(p.settings()).unwrap(), bad);
        let names: Vec<_> = std::fs::read_dir(p.cwd().join(".claude"))
            .unwrap()
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }
}

#[test]
fn user_scope_is_refused_without_force_under_any_name() {
    let p = Project::new();
    let user = p.home().join(".claude/settings.json");
    let run = p.hooks(&["install", "--parent", PARENT, "--scope", "user"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("every Claude Code session"), "{run:?}");
    assert!(!user.exists());
    // The same file by path, through a symlinked directory.
    std::fs::create_dir_all(user.parent().unwrap()).unwrap();
    std::fs::write(&user, "{}\n").unwrap();
    std::os::unix::fs::symlink(p.home(), p.cwd().join("h")).unwrap();
    for scope in [user.display().to_string(), "h/.claude/settings.json".into()] {
        let run = p.hooks(&["install", "--parent", PARENT, "--child", "--scope", &scope]);
        assert_eq!(run.code, 2, "{scope}: {run:?}");
        assert_eq!(std::fs::read_to_string(&user).unwrap(), "{}\n");
    }
    p.ok(&["install", "--parent", PARENT, "--scope", "user", "--force"]);
    assert!(
        std::fs::read_to_string(&user)
            .unwrap()
            .contains("stop-hook")
    );
    // CLAUDE_CONFIG_DIR moves the user file.
    let mut cmd = command();
    cmd.current_dir(p.cwd())
        .env("HOME", p.home())
        .env("CLAUDE_CONFIG_DIR", p.dir.path().join("cfg"))
        .args(["hooks", "install", "--parent", PARENT, "--scope", "user"]);
    let run = run_command(cmd, b"");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("cfg/settings.json"), "{run:?}");
}

#[test]
fn the_project_scope_of_the_home_directory_is_the_user_scope() {
    // Run from HOME, .claude/settings.json is the user file.
    let p = Project::new();
    let mut cmd = command();
    cmd.current_dir(p.home())
        .env("HOME", p.home())
        .env_remove("CLAUDE_CONFIG_DIR")
        .args(["hooks", "install", "--parent", PARENT]);
    let run = run_command(cmd, b"");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("every Claude Code session"), "{run:?}");
    assert!(!p.home().join(".claude").exists());
}

#[test]
fn a_file_that_is_not_utf8_is_refused_and_left_alone() {
    let p = Project::new();
    let bytes = b"{\"model\": \"caf\xe9\"}\n";
    std::fs::write(p.settings(), bytes).unwrap();
    let run = p.hooks(&["install", "--parent", PARENT]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("not UTF-8"), "{run:?}");
    assert_eq!(std::fs::read(p.settings()).unwrap(), bytes);
}

#[test]
fn both_sides_of_one_parent_in_one_file_are_refused() {
    let p = Project::new();
    p.ok(&["install", "--parent", PARENT]);
    let before = std::fs::read(p.settings()).unwrap();
    let run = p.hooks(&["install", "--parent", PARENT, "--child"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("already holds the parent hooks"),
        "{run:?}"
    );
    assert_eq!(std::fs::read(p.settings()).unwrap(), before);
    // Another parent's child is fine (a middle tier: child of one, parent
    // of others).
    p.ok(&["install", "--parent", "grandparent", "--child"]);
}

#[test]
fn the_mode_and_a_symlink_are_kept() {
    use std::os::unix::fs::PermissionsExt;
    let p = Project::new();
    let real = p.dir.path().join("dotfiles-settings.json");
    std::fs::write(&real, CLAUDE_STYLE).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&real, p.settings()).unwrap();
    p.ok(&["install", "--parent", PARENT]);
    assert!(p.settings().symlink_metadata().unwrap().is_symlink());
    let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        std::fs::read_to_string(&real)
            .unwrap()
            .contains("stop-hook")
    );
    p.ok(&["uninstall", "--parent", PARENT]);
    assert_eq!(std::fs::read_to_string(&real).unwrap(), CLAUDE_STYLE);
}

#[test]
fn another_binary_or_root_is_replaced_not_added() {
    let p = Project::new();
    let old = "/opt/old/bin/outbox --root /old/root stop-hook --parent conductor";
    let text = serde_json::to_string_pretty(&json!({
        "hooks": {"Stop": [{"hooks": [{"type": "command", "command": old}]}]}
    }))
    .unwrap();
    std::fs::write(p.settings(), &text).unwrap();
    let run = p.ok(&["install", "--parent", PARENT]);
    assert!(
        run.stdout.contains("updated") && run.stdout.contains(old),
        "{run:?}"
    );
    let json: Value = serde_json::from_slice(&std::fs::read(p.settings()).unwrap()).unwrap();
    let stop = json["hooks"]["Stop"].as_array().unwrap();
    assert_eq!(stop.len(), 1, "{json}");
    let command = stop[0]["hooks"][0]["command"].as_str().unwrap();
    assert!(
        command.contains(&p.root().display().to_string()),
        "{command}"
    );
    p.ok(&["uninstall", "--parent", PARENT]);
    assert_eq!(std::fs::read_to_string(p.settings()).unwrap(), "{}");
}

/// Runs a hook command as Claude Code does: `sh -c`, in `/`, with an empty
/// environment and the hook input on stdin.
fn run_hook(command: &str, input: &Value) -> Run {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(command).env_clear().current_dir("/");
    run_command(cmd, input.to_string().as_bytes())
}

fn installed_command(settings: &Path, event: &str) -> String {
    let json: Value = serde_json::from_slice(&std::fs::read(settings).unwrap()).unwrap();
    json["hooks"][event].as_array().unwrap().last().unwrap()["hooks"][0]["command"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn installed_hooks_carry_a_title_and_connect_child_to_parent() {
    let p = Project::new();
    let child_settings = p.dir.path().join("child-settings.json");
    let title = "parser 'v2' $HOME `x`";
    p.ok(&[
        "install",
        "--parent",
        PARENT,
        "--child",
        "--title",
        title,
        "--scope",
        child_settings.to_str().unwrap(),
    ]);
    p.ok(&["install", "--parent", PARENT]);
    let child = installed_command(&child_settings, "Stop");
    let parent = installed_command(&p.settings(), "Stop");
    let input = json!({
        "session_id": "worker-1", "hook_event_name": "Stop",
        "stop_hook_active": false, "last_assistant_message": "done",
    });
    let run = run_hook(&child, &input);
    assert_eq!(run.code, 0, "{run:?}");
    let records = peek_json(&p.root(), PARENT);
    assert_eq!(records[0]["child_title"], title, "{records:?}");
    let input =
        json!({"session_id": "conductor-s", "hook_event_name": "Stop", "stop_hook_active": false});
    let run = run_hook(&parent, &input);
    let decision: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(decision["decision"], "block", "{run:?}");
    assert!(decision["reason"].as_str().unwrap().contains(title));

    // `outbox hooks --child --title` prints the same command.
    let run = p.ok(&["--parent", PARENT, "--child", "--title", title]);
    let printed: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        printed["hooks"]["Stop"][0]["hooks"][0]["command"],
        child.as_str()
    );
}

impl Project {
    /// `outbox --root <root> doctor` from the project, HOME set.
    fn doctor(&self) -> Run {
        self.outbox(&["doctor"])
    }
}

fn problems(run: &Run) -> Vec<&str> {
    run.stdout
        .lines()
        .filter(|l| l.starts_with("problem: "))
        .collect()
}

#[test]
fn doctor_is_content_with_a_clean_install() {
    let p = Project::new();
    p.ok(&["install", "--parent", PARENT, "--scope", "local"]);
    commit_finished(&p.root(), PARENT, "w1", "success");
    let run = p.doctor();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(problems(&run).is_empty(), "{run:?}");
    assert!(
        run.stdout
            .contains("(local): the parent hook of parent \"conductor\" on Stop"),
        "{run:?}"
    );
    assert!(
        run.stdout.ends_with("ok: nothing needs attention\n"),
        "{run:?}"
    );
}

#[test]
fn doctor_reports_missing_duplicated_and_misplaced_hooks() {
    let p = Project::new();
    let run = p.doctor();
    assert!(
        run.stdout
            .contains("info: no outbox hooks in the Claude Code settings"),
        "{run:?}"
    );

    // Both sides of one parent in the project file, the parent again at
    // user scope, and a hook naming a binary that is gone.
    p.ok(&["install", "--parent", PARENT]);
    p.ok(&["install", "--parent", PARENT, "--child", "--force"]);
    p.ok(&["install", "--parent", PARENT, "--scope", "user", "--force"]);
    // The same hook in the project and user files, identical: Claude Code
    // runs it once.
    let run = p.doctor();
    assert!(
        run.stdout.contains("installed 2 times") && run.stdout.contains("runs once"),
        "{run:?}"
    );
    // Now the user file's copy names another root: both would run.
    let user = p.home().join(".claude/settings.json");
    let text = std::fs::read_to_string(&user).unwrap();
    let root = p.root().display().to_string();
    std::fs::write(&user, text.replace(&root, &format!("{root}-other"))).unwrap();
    let local = p.cwd().join(".claude/settings.local.json");
    std::fs::write(
        &local,
        serde_json::to_string_pretty(&json!({"hooks": {"SubagentStop": [{"hooks": [{
            "type": "command",
            "command": "/gone/bin/outbox --root /gone/root commit --parent conductor --from-hook"
        }]}]}}))
        .unwrap(),
    )
    .unwrap();
    let run = p.doctor();
    assert_eq!(run.code, 1, "{run:?}");
    let problems = problems(&run);
    let has = |text: &str| problems.iter().any(|l| l.contains(text));
    assert!(
        has("at user scope every Claude Code session"),
        "{problems:#?}"
    );
    assert!(
        has("the parent hook of parent \"conductor\" on Stop is installed 2 times")
            && has("with different commands"),
        "{problems:#?}"
    );
    assert!(
        has("holds both the parent and a child hook"),
        "{problems:#?}"
    );
    assert!(
        has("its binary /gone/bin/outbox does not exist"),
        "{problems:#?}"
    );
    assert!(
        has("its data root /gone/root does not exist"),
        "{problems:#?}"
    );
    assert!(!run.stdout.contains("nothing needs attention"), "{run:?}");

    // A settings file that is not JSON is named, not skipped silently.
    std::fs::write(&local, "{ not json").unwrap();
    let run = p.doctor();
    assert!(
        run.stdout
            .contains(&format!("{}: not a JSON object", local.display())),
        "{run:?}"
    );
}
