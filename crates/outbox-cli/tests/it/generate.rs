//! `outbox completions SHELL` and `outbox man`: generated from the clap
//! definitions, so they cover every command.

use crate::util::*;

/// The visible subcommands, as `outbox --help` lists them.
const COMMANDS: [&str; 13] = [
    "commit",
    "drain",
    "pending",
    "peek",
    "show",
    "sweep",
    "stop-hook",
    "context-hook",
    "hooks",
    "doctor",
    "watch",
    "wait",
    "completions",
];

#[test]
fn completions_cover_every_command_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = ok(dir.path(), &["completions", shell]);
        for command in COMMANDS {
            assert!(run.stdout.contains(command), "{shell}: {command}");
        }
        assert!(run.stdout.contains("--from-hook"), "{shell}");
    }
    let run = outbox(dir.path(), &["completions", "tcsh"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stderr_lines().len(), 1, "{run:?}");
    assert!(run.stderr.contains("'tcsh'"), "{run:?}");
    // They need no data root and create none.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn the_man_pages_build_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = ok(dir.path(), &["man"]);
    assert!(
        run.stdout.starts_with(".ie \\n(.g .ds Aq"),
        "roff: {}",
        &run.stdout[..80]
    );
    assert!(run.stdout.contains(".TH outbox 1"), "{}", run.stdout);
    for command in COMMANDS {
        // roff writes a hyphen as `\-`.
        let roff = command.replace('-', "\\-");
        assert!(run.stdout.contains(&roff), "{command}");
    }
    assert!(run.stdout.contains(env!("CARGO_PKG_VERSION")));

    let out = dir.path().join("man");
    let run = ok(dir.path(), &["man", "--dir", out.to_str().unwrap()]);
    let mut pages: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    let mut expected: Vec<String> = COMMANDS.iter().map(|c| format!("outbox-{c}.1")).collect();
    expected.push("outbox.1".to_owned());
    // Subcommands of subcommands get pages of their own.
    expected.push("outbox-hooks-install.1".to_owned());
    expected.push("outbox-hooks-uninstall.1".to_owned());
    expected.sort();
    assert_eq!(pages, expected);
    assert_eq!(run.stdout.lines().count(), expected.len(), "{run:?}");
    let drain = std::fs::read_to_string(out.join("outbox-drain.1")).unwrap();
    assert!(drain.contains("exec"), "{drain}");

    // The man page is not a listed command.
    let help = ok(dir.path(), &["--help"]);
    assert!(!help.stdout.contains("\n  man "), "{}", help.stdout);
}
