//! The binary on the PostgreSQL store (`--store postgres://…`,
//! `OUTBOX_STORE`): commit, pending, peek, drain, stop-hook and doctor on a
//! schema of its own in the database `OUTBOX_TEST_DATABASE_URL` names.
//! Without that variable these tests print that they were skipped and why.
//! Compiled only with the cargo feature `postgres` (`store_choice` says so
//! when it is off); the store-choice errors need neither and are there.

use std::io::Write as _;

use crate::util::{PARENT, Run, command, run_command};

const URL_VAR: &str = "OUTBOX_TEST_DATABASE_URL";

/// A fresh schema on the test database, dropped at the end.
pub(crate) struct Db {
    base: String,
    schema: String,
}

impl Db {
    /// `None` (after saying it is skipped) when no database is configured.
    pub(crate) fn from_env(test: &str) -> Option<Self> {
        let Some(base) = std::env::var(URL_VAR).ok().filter(|u| !u.trim().is_empty()) else {
            // Straight to stderr, past libtest's capture: a skip must show.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED postgres_store::{test}: {URL_VAR} is not set, so there is no \
                 PostgreSQL to test against (e.g. {URL_VAR}=postgres://postgres@127.0.0.1:5432/test)"
            );
            return None;
        };
        let schema = format!("cli_{}_{test}", std::process::id());
        Some(Self { base, schema })
    }

    /// The store URL: the test database and this test's schema.
    pub(crate) fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}outbox_schema={}", self.base, self.schema)
    }

    pub(crate) fn run(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut cmd = command();
        cmd.arg("--store").arg(self.url()).args(args);
        run_command(cmd, stdin)
    }
}

impl Db {
    /// The test database's URL, without the schema.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// This test's schema.
    pub(crate) fn schema(&self) -> &str {
        &self.schema
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.base, postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ));
        }
    }
}

#[test]
fn commit_pending_peek_and_drain_over_postgres() {
    let Some(db) = Db::from_env("commit_drain") else {
        return;
    };
    for child in ["w1", "w2"] {
        let run = db.run(
            &[
                "commit",
                "--parent",
                PARENT,
                "--child",
                child,
                "--finished",
                "--status",
                "success",
            ],
            b"",
        );
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.starts_with(&format!("{child}@")), "{run:?}");
    }
    assert_eq!(db.run(&["pending", "--parent", PARENT], b"").code, 0);
    let peek = db.run(&["peek", "--parent", PARENT, "--json"], b"");
    let peeked: Vec<serde_json::Value> = serde_json::from_str(&peek.stdout).unwrap();
    assert_eq!(peeked.len(), 2, "{peek:?}");
    // OUTBOX_STORE chooses the store as --store does.
    let mut cmd = command();
    cmd.env("OUTBOX_STORE", db.url())
        .args(["drain", "--parent", PARENT, "--json"]);
    let drain = run_command(cmd, b"");
    assert_eq!(drain.code, 0, "{drain:?}");
    let drained: Vec<serde_json::Value> = serde_json::from_str(&drain.stdout).unwrap();
    assert_eq!(drained, peeked);
    assert_eq!(db.run(&["pending", "--parent", PARENT], b"").code, 1);
    let again = db.run(&["drain", "--parent", PARENT, "--json"], b"");
    assert_eq!(again.stdout, "[]\n", "{again:?}");
}

#[test]
fn the_stop_hook_and_doctor_over_postgres() {
    let Some(db) = Db::from_env("stop_hook") else {
        return;
    };
    let quiet = db.run(
        &["stop-hook", "--parent", PARENT],
        br#"{"stop_hook_active":false}"#,
    );
    assert_eq!((quiet.code, quiet.stdout.as_str()), (0, ""), "{quiet:?}");
    let run = db.run(
        &[
            "commit",
            "--parent",
            PARENT,
            "--child",
            "w1",
            "--finished",
            "--status",
            "success",
            "--summary",
            "parser done",
        ],
        b"",
    );
    assert_eq!(run.code, 0, "{run:?}");
    let doctor = db.run(&["doctor"], b"");
    assert_eq!(doctor.code, 0, "{doctor:?}");
    assert!(
        doctor
            .stdout
            .contains("info: store: PostgreSQL postgres://"),
        "{doctor:?}"
    );
    assert!(doctor.stdout.contains("(from --store)"), "{doctor:?}");
    assert!(
        doctor
            .stdout
            .contains(&format!("ok: connected; schema {}", db.schema)),
        "{doctor:?}"
    );
    assert!(
        doctor
            .stdout
            .contains(&format!("parent {PARENT}: 1 record(s) pending")),
        "{doctor:?}"
    );
    let block = db.run(
        &["stop-hook", "--parent", PARENT],
        br#"{"stop_hook_active":false}"#,
    );
    assert_eq!(block.code, 0, "{block:?}");
    let decision: serde_json::Value = serde_json::from_str(block.stdout.trim()).unwrap();
    assert_eq!(decision["decision"], "block");
    assert!(
        decision["reason"]
            .as_str()
            .unwrap()
            .contains("child \"w1\", finished a turn with status \"success\"")
    );
    assert!(
        decision["reason"]
            .as_str()
            .unwrap()
            .contains("\n| parser done\n")
    );
    // Pending until the next Stop with stop_hook_active confirms it.
    assert_eq!(db.run(&["pending", "--parent", PARENT], b"").code, 0);
    let confirm = db.run(
        &["stop-hook", "--parent", PARENT],
        br#"{"stop_hook_active":true}"#,
    );
    assert_eq!(
        (confirm.code, confirm.stdout.as_str()),
        (0, ""),
        "{confirm:?}"
    );
    assert_eq!(db.run(&["pending", "--parent", PARENT], b"").code, 1);
}

#[test]
fn an_unreachable_store_is_one_line_and_hooks_never_exit_2() {
    let down = "postgres://postgres@127.0.0.1:1/test?connect_timeout=5";
    let mut cmd = command();
    cmd.args(["--store", down, "pending", "--parent", PARENT]);
    let pending = run_command(cmd, b"");
    assert_eq!(pending.code, 2, "{pending:?}");
    assert_eq!(pending.stderr_lines().len(), 1, "{pending:?}");
    assert!(
        pending
            .stderr
            .starts_with("outbox: connect on postgres://postgres@127.0.0.1:1/test"),
        "{pending:?}"
    );
    let mut cmd = command();
    cmd.args(["--store", down, "stop-hook", "--parent", PARENT]);
    let hook = run_command(cmd, b"{}");
    assert_eq!(hook.code, 1, "a hook never exits 2: {hook:?}");
    assert_eq!(hook.stdout, "", "{hook:?}");
}
