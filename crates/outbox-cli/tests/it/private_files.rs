//! Private by default, on the file store: what `outbox` creates is its
//! user's alone whatever the umask (set in the child: a umask is
//! process-global), a root another user can change is refused with one
//! line unless `--allow-shared-root` accepts the risk, and `doctor` names
//! what is not private with the `chmod` that fixes it.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::util::*;

/// `nobody`'s uid on Linux.
const NOBODY: u32 = 65534;

/// Runs the binary as a fresh process under `umask`, from `/`, with an
/// empty environment: `sh -c 'umask U; exec outbox ARGS'`.
fn under_umask(umask: &str, args: &[&str], stdin: &[u8]) -> Run {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(args)
        .env_clear()
        .current_dir("/");
    run_command(cmd, stdin)
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Every path under `dir`, `dir` included.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if fs::symlink_metadata(dir).unwrap().is_dir() {
        for entry in fs::read_dir(dir).unwrap() {
            out.extend(tree(&entry.unwrap().path()));
        }
    }
    out
}

fn stop_input(active: bool) -> Vec<u8> {
    json!({"session_id": "s", "hook_event_name": "Stop", "stop_hook_active": active})
        .to_string()
        .into_bytes()
}

#[test]
fn every_directory_and_file_is_private_whatever_the_umask() {
    // 277 also clears the owner's write bit: only setting the mode after
    // creating (fchmod, chmod) gets 0600 and 0700 there.
    for umask in ["022", "000", "277"] {
        let base = tempfile::tempdir().unwrap();
        let top = base.path().join("x");
        let root = top.join("y/root");
        let root_s = root.to_str().unwrap();
        let run = |args: &[&str], stdin: &[u8]| {
            let mut all = vec!["--root", root_s];
            all.extend_from_slice(args);
            let run = under_umask(umask, &all, stdin);
            assert_eq!(run.code, 0, "umask {umask}: {args:?}: {run:?}");
            run
        };
        let commit = |child: &str| {
            run(
                &[
                    "commit",
                    "--parent",
                    PARENT,
                    "--child",
                    child,
                    "--finished",
                    "--status",
                    "ok",
                ],
                b"",
            )
        };
        commit("w1");
        // An unreadable line: the drain sets it aside in a quarantine file.
        fs::OpenOptions::new()
            .append(true)
            .open(root.join("inboxes/conductor.jsonl"))
            .unwrap()
            .write_all(b"not json\n")
            .unwrap();
        run(&["drain", "--parent", PARENT], b"");
        commit("w2");
        // The stop hook's guard, and its drain.
        let blocked = run(&["stop-hook", "--parent", PARENT], &stop_input(false));
        assert!(blocked.stdout.contains("\"block\""), "{blocked:?}");
        run(
            &["commit", "--parent", PARENT, "--from-hook"],
            br#"{"session_id":"w3","hook_event_name":"Stop","last_assistant_message":"done"}"#,
        );
        commit("w4");
        // A sweep that drops records rewrites the inbox (temp file, rename).
        run(&["sweep", "--older-than", "0s"], b"");
        run(&["drain", "--parent", PARENT, "--max", "1"], b"");

        let paths = tree(&top);
        for name in [
            "quarantine-",
            "consumed-turns/conductor.jsonl",
            "stop-blocks/",
            ".lock",
        ] {
            assert!(
                paths.iter().any(|p| p.to_str().unwrap().contains(name)),
                "umask {umask}: no {name} was created: {paths:?}"
            );
        }
        for path in paths {
            let want = if path.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode(&path), want, "umask {umask}: {}", path.display());
        }
    }
}

/// The uid this test runs as (the owner of what it creates).
fn my_uid() -> u32 {
    fs::metadata(tempfile::tempdir().unwrap().path())
        .unwrap()
        .uid()
}

fn commit_args(root: &Path) -> Vec<String> {
    [
        "--root",
        root.to_str().unwrap(),
        "commit",
        "--parent",
        PARENT,
        "--child",
        "w1",
        "--finished",
        "--status",
        "ok",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn run_args(args: &[String], stdin: &[u8]) -> Run {
    let mut cmd = command();
    cmd.args(args);
    run_command(cmd, stdin)
}

#[test]
fn a_root_others_can_write_is_refused_with_one_line_unless_allowed() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("shared");
    fs::create_dir(&root).unwrap();
    chmod(&root, 0o777);
    let uid = my_uid();

    // hooks refuses to print hooks that would refuse the root.
    let hooks = outbox(&root, &["hooks", "--parent", PARENT]);
    assert_eq!((hooks.code, hooks.stdout.as_str()), (2, ""), "{hooks:?}");
    assert!(hooks.stderr.contains("can be written by"), "{hooks:?}");

    let run = run_args(&commit_args(&root), b"");
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stderr_lines().len(), 1, "{run:?}");
    let line = run.stderr_lines()[0];
    for needle in [
        format!(
            "data root {} can be written by group and others",
            root.display()
        ),
        format!("(mode 0777, owner uid {uid})"),
        format!("chmod go-w {}", root.display()),
        "--allow-shared-root".to_owned(),
    ] {
        assert!(line.contains(&needle), "{needle:?} in {line}");
    }
    assert_eq!(fs::read_dir(&root).unwrap().count(), 0, "nothing created");

    // Accepted on request.
    let mut args = vec!["--allow-shared-root".to_owned()];
    args.extend(commit_args(&root));
    assert_eq!(run_args(&args, b"").code, 0);

    // Without the flag, the read-only commands and the hooks refuse to
    // read what anyone could have planted; a hook exits 1, blocking nothing.
    let peek = outbox(&root, &["peek", "--parent", PARENT]);
    assert_eq!((peek.code, peek.stderr_lines().len()), (2, 1), "{peek:?}");
    assert_eq!(peek.stdout, "", "{peek:?}");
    let hook = outbox_in(
        &root,
        &["stop-hook", "--parent", PARENT],
        &stop_input(false),
    );
    assert_eq!((hook.code, hook.stdout.as_str()), (1, ""), "{hook:?}");
    assert!(hook.stderr.contains("can be written by"), "{hook:?}");

    // The printed hooks carry the flag.
    let shared = |rest: &[&str]| {
        let mut args = vec!["--allow-shared-root", "--root", root.to_str().unwrap()];
        args.extend_from_slice(rest);
        let mut cmd = command();
        cmd.args(&args);
        run_command(cmd, b"")
    };
    assert!(
        shared(&["peek", "--parent", PARENT])
            .stdout
            .starts_with("w1\tok")
    );
    let fragment: Value =
        serde_json::from_str(&shared(&["hooks", "--parent", PARENT]).stdout).unwrap();
    let hook = fragment["hooks"]["Stop"][0]["hooks"][0]["command"]
        .as_str()
        .unwrap();
    assert!(
        hook.contains(&format!("--allow-shared-root --root {}", root.display())),
        "{hook}"
    );
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(hook).env_clear().current_dir("/");
    let blocked = run_command(cmd, &stop_input(false));
    assert!(blocked.stdout.contains("\"block\""), "{blocked:?}");
}

#[test]
fn the_flag_is_named_as_a_risk_in_help() {
    let help = ok(Path::new("/nonexistent"), &["--help"]).stdout;
    let at = help
        .find("--allow-shared-root")
        .expect("the flag is documented");
    assert!(help[at..].contains("RISK"), "{help}");
}

#[test]
fn a_root_another_user_owns_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("theirs");
    fs::create_dir(&root).unwrap();
    chmod(&root, 0o700);
    if std::os::unix::fs::chown(&root, Some(NOBODY), None).is_err() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED private_files::a_root_another_user_owns_is_refused: cannot chown (not root)"
        );
        return;
    }
    let run = run_args(&commit_args(&root), b"");
    assert_eq!((run.code, run.stderr_lines().len()), (2, 1), "{run:?}");
    let line = run.stderr_lines()[0];
    assert!(
        line.contains(&format!(
            "data root {} is owned by uid {NOBODY}, not by you (uid {})",
            root.display(),
            my_uid()
        )) && line.contains("(mode 0700, owner uid 65534)"),
        "{line}"
    );
}

#[test]
fn a_symlinked_directory_in_a_shared_root_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("shared");
    let elsewhere = base.path().join("elsewhere");
    fs::create_dir_all(root.join("runtime")).unwrap();
    fs::create_dir(&elsewhere).unwrap();
    chmod(&root, 0o777);
    symlink(&elsewhere, root.join("inboxes")).unwrap();
    let mut args = vec!["--allow-shared-root".to_owned()];
    args.extend(commit_args(&root));
    let run = run_args(&args, b"");
    assert_eq!((run.code, run.stderr_lines().len()), (2, 1), "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "{} is a symbolic link in a shared root",
            root.join("inboxes").display()
        )),
        "{run:?}"
    );
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn doctor_names_what_is_not_private_with_the_fix() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    commit_finished(&root, PARENT, "w1", "ok");
    assert_eq!(outbox(&root, &["doctor"]).code, 0, "private as created");
    // Made by an older version (0755, 0644), or by hand.
    chmod(&root, 0o755);
    let inbox = root.join("inboxes/conductor.jsonl");
    chmod(&inbox, 0o644);
    let run = outbox(&root, &["doctor"]);
    assert_eq!(run.code, 1, "{run:?}");
    for needle in [
        format!(
            "problem: directory {} is not private: group or others can read it (mode 0755); \
             chmod 700 {}",
            root.display(),
            root.display()
        ),
        format!(
            "problem: file {} is not private: group or others can read it (mode 0644); \
             chmod 600 {}",
            inbox.display(),
            inbox.display()
        ),
    ] {
        assert!(run.stdout.contains(&needle), "{needle}\n{run:?}");
    }
    // A root others can write: the refusal every command would print, and
    // with the flag, an info line.
    chmod(&root, 0o777);
    let run = outbox(&root, &["doctor"]);
    assert!(
        run.stdout.contains(&format!(
            "problem: data root {} can be written by group and others",
            root.display()
        )),
        "{run:?}"
    );
    let mut cmd = command();
    cmd.args([
        "--allow-shared-root",
        "--root",
        root.to_str().unwrap(),
        "doctor",
    ]);
    let run = run_command(cmd, b"");
    assert!(
        run.stdout
            .contains("info: accepted by --allow-shared-root: data root"),
        "{run:?}"
    );
}

/// The show command a Stop hook's reason names carries the store as a hook
/// does: on a shared root accepted with the flag, the flag too, so the
/// command runs as printed (from `/`, with an empty environment).
#[test]
fn the_show_command_of_a_shared_root_carries_the_flag() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("shared");
    fs::create_dir(&root).unwrap();
    chmod(&root, 0o777);
    let root_s = root.to_str().unwrap();
    let shared = |args: &[&str], stdin: &[u8]| {
        let mut cmd = command();
        cmd.args(["--allow-shared-root", "--root", root_s])
            .args(args);
        run_command(cmd, stdin)
    };
    // Big enough that the reason pages: it names the show command.
    for child in ["w0", "w1", "w2"] {
        let summary = "x".repeat(12_000);
        let run = shared(
            &[
                "commit",
                "--parent",
                PARENT,
                "--child",
                child,
                "--finished",
                "--status",
                "ok",
                "--summary",
                &summary,
            ],
            b"",
        );
        assert_eq!(run.code, 0, "{run:?}");
    }
    let run = shared(&["stop-hook", "--parent", PARENT], &stop_input(false));
    let decision: Value = serde_json::from_str(run.stdout.trim()).expect("a block");
    let reason = decision["reason"].as_str().unwrap();
    let trailer = reason.lines().last().unwrap();
    let command = trailer
        .split('`')
        .nth(1)
        .expect("a show command in backticks");
    assert!(
        command.contains(&format!("--allow-shared-root --root {root_s} show")),
        "{command}"
    );
    // A record pending now (the reason delivered the others).
    let run = shared(
        &[
            "commit",
            "--parent",
            PARENT,
            "--child",
            "w9",
            "--finished",
            "--status",
            "ok",
            "--summary",
            &"x".repeat(12_000),
        ],
        b"",
    );
    assert_eq!(run.code, 0, "{run:?}");
    let command = command.replace(" --child ID", " --child w9");
    let mut sh = Command::new("/bin/sh");
    sh.arg("-c").arg(&command).env_clear().current_dir("/");
    let shown = run_command(sh, b"");
    assert_eq!(shown.code, 0, "{command}: {shown:?}");
    assert!(shown.stdout.contains(&"x".repeat(12_000)), "{shown:?}");
}
