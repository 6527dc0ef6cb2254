//! Choosing the store from the command line without a database: a bad
//! `--store` value, and the PostgreSQL store in a build without the cargo
//! feature `postgres` (the default build). The tests that need a server are
//! in `postgres_store`, compiled only with the feature.

use crate::util::{PARENT, command, run_command};

#[test]
fn an_unknown_store_scheme_is_one_line_naming_the_scheme() {
    let mut cmd = command();
    cmd.args([
        "--store",
        "mysql://u:secret@h/db",
        "pending",
        "--parent",
        PARENT,
    ]);
    let bad = run_command(cmd, b"");
    assert_eq!(bad.code, 2, "{bad:?}");
    assert_eq!(bad.stderr_lines().len(), 1, "{bad:?}");
    assert!(
        bad.stderr
            .contains("--store: store with unknown scheme \"mysql\""),
        "{bad:?}"
    );
    assert!(!bad.stderr.contains("secret"), "{bad:?}");
}

/// The commands a user runs with a PostgreSQL URL, each as a fresh process:
/// each refuses in one line that names the feature and the install line,
/// never the URL's password; the hooks exit 1, never 2 ("block").
#[test]
#[cfg(not(feature = "postgres"))]
fn without_the_feature_a_postgres_store_names_the_feature_and_the_install_line() {
    let url = "postgres://u:secret@127.0.0.1:5432/db";
    let cases: [(&[&str], &[u8], i32); 5] = [
        (&["pending", "--parent", PARENT], b"", 2),
        (
            &[
                "commit",
                "--parent",
                PARENT,
                "--child",
                "w1",
                "--finished",
                "--status",
                "ok",
            ],
            b"",
            2,
        ),
        (&["doctor"], b"", 2),
        (&["stop-hook", "--parent", PARENT], b"{}", 1),
        (&["commit", "--parent", PARENT, "--from-hook"], b"{}", 1),
    ];
    for (args, stdin, code) in cases {
        for via_env in [false, true] {
            let mut cmd = command();
            if via_env {
                cmd.env("OUTBOX_STORE", url);
            } else {
                cmd.args(["--store", url]);
            }
            cmd.args(args);
            let run = run_command(cmd, stdin);
            assert_eq!(run.code, code, "{args:?} {run:?}");
            assert_eq!(run.stdout, "", "{args:?} {run:?}");
            assert_eq!(run.stderr_lines().len(), 1, "{args:?} {run:?}");
            for part in [
                "built without the PostgreSQL store",
                "cargo feature \"postgres\"",
                "cargo install --locked --features postgres",
            ] {
                assert!(run.stderr.contains(part), "{part}: {args:?} {run:?}");
            }
            assert!(!run.stderr.contains("secret"), "{args:?} {run:?}");
        }
    }
}

/// Says, in the test output, that the PostgreSQL tests of the binary were
/// not compiled into this build and how to run them.
#[test]
#[cfg(not(feature = "postgres"))]
fn postgres_store_tests_need_the_feature() {
    use std::io::Write as _;
    // Straight to stderr, past libtest's capture: a skip must show.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED postgres_store: built without the cargo feature \"postgres\"; \
         `cargo test -p outbox-cli --features postgres` runs them (.ci/run does)"
    );
}
