//! No secrets in argv, settings or messages: a store URL's password never
//! appears in `hooks`' output (it refuses such a URL, or names a store
//! file), in the argv of the hook commands, in connection errors, usage
//! errors or `doctor`; a store file must be its user's and private. The
//! cases that need a server use `OUTBOX_TEST_DATABASE_URL` (trust auth, so
//! a password in the URL is accepted and ignored) and say when skipped;
//! those and the PostgreSQL-specific messages need the cargo feature
//! `postgres` (a build without it refuses every postgres:// URL, and the
//! rest of these cases check that it shows no password doing so).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
#[cfg(feature = "postgres")]
use std::process::Command;

#[cfg(feature = "postgres")]
use serde_json::{Value, json};

use crate::util::{PARENT, Run, command, run_command};

/// The password every case hides.
const SECRET: &str = "Sup3rS3cretPw";

/// Asserts that `run` shows the password nowhere.
fn hides(run: &Run, what: &str) {
    assert!(
        !run.stdout.contains(SECRET) && !run.stderr.contains(SECRET),
        "{what} shows the password: {run:?}"
    );
}

fn outbox(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Run {
    let mut cmd = command();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_command(cmd, stdin)
}

#[cfg(feature = "postgres")]
/// The test database's URL with [`SECRET`] as the password and a schema of
/// this test's own; `None` (and a SKIPPED line) without a database.
fn db_url_with_password(test: &str) -> Option<(String, String)> {
    let var = "OUTBOX_TEST_DATABASE_URL";
    let Some(base) = std::env::var(var).ok().filter(|u| !u.trim().is_empty()) else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED secrets::{test}: {var} is not set, so there is no PostgreSQL to test against"
        );
        return None;
    };
    let scheme_end = base.find("://").expect("a URL") + 3;
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let url = match base[scheme_end..authority_end].rfind('@') {
        Some(at) => {
            let at = scheme_end + at;
            let user = base[scheme_end..at].split(':').next().unwrap();
            format!("{}{user}:{SECRET}{}", &base[..scheme_end], &base[at..])
        }
        None => format!(
            "{}postgres:{SECRET}@{}",
            &base[..scheme_end],
            &base[scheme_end..]
        ),
    };
    let schema = format!("cli_secret_{}_{test}", std::process::id());
    let sep = if url.contains('?') { '&' } else { '?' };
    Some((format!("{url}{sep}outbox_schema={schema}"), schema))
}

#[cfg(feature = "postgres")]
fn drop_schema(schema: &str) {
    let base = std::env::var("OUTBOX_TEST_DATABASE_URL").unwrap();
    if let Ok(mut client) = postgres::Client::connect(&base, postgres::NoTls) {
        let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
    }
}

/// A private store file holding `url`.
fn store_file(dir: &Path, url: &str, mode: u32) -> PathBuf {
    let path = dir.join("store-url");
    fs::write(&path, format!("{url}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[cfg(feature = "postgres")]
/// The command of the first hook of a fragment `outbox hooks` printed
/// (`Stop`, or `SubagentStop` for `--subagents`).
fn hook_command(fragment: &str) -> String {
    let json: Value = serde_json::from_str(fragment).expect("hooks prints JSON");
    // A role installs several events; the Stop hook (SubagentStop for
    // --subagents) is the one these tests drive.
    let hooks = json["hooks"].as_object().unwrap();
    let entries = ["Stop", "SubagentStop"]
        .iter()
        .find_map(|event| hooks.get(*event))
        .expect("a Stop or SubagentStop event");
    entries[0]["hooks"][0]["command"]
        .as_str()
        .expect("a command")
        .to_owned()
}

#[cfg(feature = "postgres")]
/// Runs a hook command as Claude Code does: `sh -c`, in `/`, with an
/// empty environment.
fn run_hook(command: &str, input: &Value) -> Run {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(command).env_clear().current_dir("/");
    run_command(cmd, input.to_string().as_bytes())
}

#[test]
fn hooks_refuse_a_url_with_a_password_and_say_what_to_do() {
    for url in [
        format!("postgres://agents:{SECRET}@db.internal:5432/agents"),
        format!("postgres://db.internal/agents?user=agents&password={SECRET}"),
    ] {
        for side in [&[][..], &["--child"], &["--subagents"]] {
            let mut args = vec!["hooks", "--parent", PARENT];
            args.extend_from_slice(side);
            let mut flag = vec!["--store", url.as_str()];
            flag.extend_from_slice(&args);
            for run in [
                outbox(&flag, &[], b""),
                outbox(&args, &[("OUTBOX_STORE", &url)], b""),
            ] {
                hides(&run, "hooks");
                assert_eq!((run.code, run.stdout.as_str()), (2, ""), "{run:?}");
                assert_eq!(run.stderr_lines().len(), 1, "{run:?}");
                #[cfg(feature = "postgres")]
                for needle in [
                    "has a password",
                    "~/.pgpass",
                    "--store-file FILE",
                    "nothing printed",
                ] {
                    assert!(run.stderr.contains(needle), "{needle}: {run:?}");
                }
            }
        }
    }
    // Without a password the URL is fine to print.
    #[cfg(feature = "postgres")]
    let run = outbox(
        &[
            "--store",
            "postgres://agents@db.internal/agents",
            "hooks",
            "--parent",
            PARENT,
        ],
        &[],
        b"",
    );
    #[cfg(feature = "postgres")]
    assert_eq!(run.code, 0, "{run:?}");
    #[cfg(feature = "postgres")]
    assert!(hook_command(&run.stdout).contains("--store postgres://agents@db.internal/agents"));
}

#[test]
fn a_store_file_must_be_yours_and_private() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://agents:{SECRET}@127.0.0.1:1/agents");
    for mode in [0o644, 0o640, 0o604, 0o660] {
        let file = store_file(dir.path(), &url, mode);
        let file_s = file.to_str().unwrap();
        for run in [
            outbox(
                &["--store-file", file_s, "peek", "--parent", PARENT],
                &[],
                b"",
            ),
            outbox(
                &["peek", "--parent", PARENT],
                &[("OUTBOX_STORE_FILE", file_s)],
                b"",
            ),
        ] {
            hides(&run, "a refused store file");
            assert_eq!((run.code, run.stderr_lines().len()), (2, 1), "{run:?}");
            assert!(
                run.stderr.contains(&format!("(mode {mode:04o})"))
                    && run.stderr.contains(&format!("chmod 600 {file_s}")),
                "{run:?}"
            );
        }
    }
    let file = store_file(dir.path(), &url, 0o600);
    if std::os::unix::fs::chown(&file, Some(65534), None).is_ok() {
        let run = outbox(
            &["--store-file", file.to_str().unwrap(), "doctor"],
            &[],
            b"",
        );
        hides(&run, "a store file of another user");
        assert_eq!(run.code, 2, "{run:?}");
        assert!(
            run.stderr.contains("is owned by uid 65534, not by you"),
            "{run:?}"
        );
    } else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED secrets::a_store_file_must_be_yours_and_private (owner case): cannot chown"
        );
    }
    // Both variables set: which one is meant is unclear.
    let file = store_file(dir.path(), &url, 0o600);
    let run = outbox(
        &["peek", "--parent", PARENT],
        &[
            ("OUTBOX_STORE_FILE", file.to_str().unwrap()),
            ("OUTBOX_STORE", "postgres://h/db"),
        ],
        b"",
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("both $OUTBOX_STORE and $OUTBOX_STORE_FILE"),
        "{run:?}"
    );
    let run = outbox(
        &[
            "--store-file",
            "/nonexistent/url",
            "peek",
            "--parent",
            PARENT,
        ],
        &[],
        b"",
    );
    assert_eq!((run.code, run.stderr_lines().len()), (2, 1), "{run:?}");
    assert!(
        run.stderr
            .contains("--store-file /nonexistent/url: cannot open it"),
        "{run:?}"
    );
}

#[test]
fn connection_and_usage_errors_never_show_the_password() {
    let closed = format!("postgres://agents:{SECRET}@127.0.0.1:1/agents?connect_timeout=5");
    let bad_host =
        format!("postgres://agents:{SECRET}@no-such-host.invalid/agents?connect_timeout=5");
    let bad_port = format!("postgres://agents:{SECRET}@127.0.0.1:notaport/agents");
    let in_query = format!("postgres://127.0.0.1:1/agents?password={SECRET}&connect_timeout=5");
    for url in [&closed, &bad_host, &bad_port, &in_query] {
        for args in [
            &["peek", "--parent", PARENT][..],
            &[
                "commit", "--parent", PARENT, "--child", "c", "--from", "a", "--to", "b",
            ],
            &["doctor"],
        ] {
            let mut all = vec!["--store", url.as_str()];
            all.extend_from_slice(args);
            let run = outbox(&all, &[], b"");
            hides(&run, &format!("{args:?} on {url}"));
            assert_ne!(run.code, 0, "{run:?}");
            // Still useful: the message names the database.
            #[cfg(feature = "postgres")]
            assert!(
                format!("{}{}", run.stdout, run.stderr).contains("agents"),
                "{run:?}"
            );
        }
        let run = outbox(
            &["stop-hook", "--parent", PARENT],
            &[("OUTBOX_STORE", url)],
            b"{}",
        );
        hides(&run, "stop-hook");
        assert_eq!(run.code, 1, "{run:?}");
    }
    // Passwords a URL-shaped scan cannot see whole (a quote, a space, an
    // escape): the ones the process was given are masked as such.
    for (url, shown) in [
        (
            "postgres://agents:Sup3r'S3cretPw@127.0.0.1:1/agents?connect_timeout=5",
            "Sup3r'S3cretPw",
        ),
        (
            "postgres://agents:Sup3r S3cretPw@127.0.0.1:1/agents?connect_timeout=5",
            "Sup3r S3cretPw",
        ),
        (
            "postgres://agents:Sup3r%20S3cretPw@127.0.0.1:1/agents?connect_timeout=5",
            "Sup3r%20S3cretPw",
        ),
    ] {
        for args in [
            &["peek", "--parent", PARENT][..],
            &["doctor"],
            &["peek", url],
        ] {
            let mut all = vec!["--store", url];
            all.extend_from_slice(args);
            let run = outbox(&all, &[], b"");
            assert_ne!(run.code, 0, "{run:?}");
            for part in [shown, "S3cretPw"] {
                assert!(
                    !run.stdout.contains(part) && !run.stderr.contains(part),
                    "{part:?} of {url} shown: {run:?}"
                );
            }
        }
    }
    // A usage error that echoes the URL (a misplaced argument).
    let run = outbox(&["peek", &closed], &[], b"");
    hides(&run, "a usage error");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("postgres://agents:***@127.0.0.1:1"),
        "{run:?}"
    );
}

#[cfg(feature = "postgres")]
#[test]
fn an_unknown_database_and_doctor_never_show_the_password() {
    let Some((url, schema)) = db_url_with_password("doctor") else {
        return;
    };
    let run = outbox(&["--store", &url, "doctor"], &[], b"");
    hides(&run, "doctor");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("ok: connected"), "{run:?}");
    // An unknown database: the server answers, naming it, not the password.
    let path_start =
        url[url.find("://").unwrap() + 3..].find('/').unwrap() + url.find("://").unwrap() + 3;
    let query = url.find('?').unwrap();
    let unknown = format!(
        "{}/no_such_db_{}{}",
        &url[..path_start],
        std::process::id(),
        &url[query..]
    );
    for args in [&["doctor"][..], &["peek", "--parent", PARENT]] {
        let mut all = vec!["--store", unknown.as_str()];
        all.extend_from_slice(args);
        let run = outbox(&all, &[], b"");
        hides(&run, "an unknown database");
        assert_ne!(run.code, 0, "{run:?}");
        assert!(
            run.stdout.contains("does not exist") || run.stderr.contains("does not exist"),
            "{run:?}"
        );
    }
    drop_schema(&schema);
}

#[cfg(feature = "postgres")]
#[test]
fn hooks_with_a_store_file_name_the_file_and_work_from_a_bare_environment() {
    let Some((url, schema)) = db_url_with_password("store_file") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = store_file(dir.path(), &url, 0o600);
    // A relative --store-file, from the directory holding it: the printed
    // command names it by absolute path.
    let hooks = |side: &[&str], env: &[(&str, &str)]| {
        let mut cmd = command();
        cmd.current_dir(dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        if env.is_empty() {
            cmd.args(["--store-file", "store-url"]);
        }
        cmd.args(["hooks", "--parent", PARENT]).args(side);
        let run = run_command(cmd, b"");
        hides(&run, "hooks");
        assert_eq!(run.code, 0, "{run:?}");
        hook_command(&run.stdout)
    };
    let parent = hooks(&[], &[]);
    let child = hooks(&["--child"], &[]);
    let subagents = hooks(&["--subagents"], &[]);
    assert_eq!(
        hooks(&[], &[("OUTBOX_STORE_FILE", file.to_str().unwrap())]),
        parent
    );
    for command in [&parent, &child, &subagents] {
        assert!(!command.contains(SECRET), "{command}");
        assert!(
            command.contains(&format!("--store-file {} ", file.display())),
            "{command}"
        );
    }
    let input = |session: &str, message: &str| {
        json!({"session_id": session, "hook_event_name": "Stop", "stop_hook_active": false,
               "last_assistant_message": message})
    };
    let run = run_hook(&child, &input("w1", "parser done"));
    hides(&run, "the child's hook");
    assert_eq!(run.code, 0, "{run:?}");
    let run = run_hook(&parent, &input("p", ""));
    hides(&run, "the parent's hook");
    assert_eq!(run.code, 0, "{run:?}");
    let decision: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(decision["decision"], "block", "{run:?}");
    let reason = decision["reason"].as_str().unwrap();
    assert!(reason.contains("parser done"), "{reason}");
    // The show command the reason names carries the file, as the hooks do.
    assert!(
        reason.contains(&format!("--store-file {} show", file.display())),
        "{reason}"
    );
    // doctor through the file, too.
    let run = outbox(
        &["--store-file", file.to_str().unwrap(), "doctor"],
        &[],
        b"",
    );
    hides(&run, "doctor");
    assert!(run.stdout.contains("(from --store-file)"), "{run:?}");
    drop_schema(&schema);
}

/// `hooks install` takes the store as `hooks` does: a URL with a password is
/// refused and nothing is written; a store file is installed by its path,
/// recognised again (installing twice adds nothing) and uninstalled.
#[cfg(feature = "postgres")]
#[test]
fn hooks_install_writes_no_password_and_knows_its_store_file_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("settings.json");
    let settings_s = settings.to_str().unwrap();
    let url = format!("postgres://agents:{SECRET}@127.0.0.1:1/agents");
    let install = [
        "hooks", "install", "--parent", PARENT, "--scope", settings_s,
    ];
    let mut args = vec!["--store", url.as_str()];
    args.extend_from_slice(&install);
    let run = outbox(&args, &[], b"");
    hides(&run, "hooks install");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("nothing printed or installed"),
        "{run:?}"
    );
    assert!(!settings.exists(), "nothing written");

    let file = store_file(dir.path(), &url, 0o600);
    let mut args = vec!["--store-file", file.to_str().unwrap()];
    args.extend_from_slice(&install);
    for _ in 0..2 {
        let run = outbox(&args, &[], b"");
        hides(&run, "hooks install");
        assert_eq!(run.code, 0, "{run:?}");
    }
    let text = fs::read_to_string(&settings).unwrap();
    assert!(!text.contains(SECRET), "{text}");
    assert_eq!(
        text.matches(&format!("--store-file {} stop-hook", file.display()))
            .count(),
        1,
        "installed once: {text}"
    );
    let mut args = vec!["--store-file", file.to_str().unwrap()];
    args.extend_from_slice(&[
        "hooks",
        "uninstall",
        "--parent",
        PARENT,
        "--scope",
        settings_s,
    ]);
    assert_eq!(outbox(&args, &[], b"").code, 0);
    assert!(!fs::read_to_string(&settings).unwrap().contains("stop-hook"));
}
