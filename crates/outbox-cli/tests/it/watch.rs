//! `outbox watch` and `outbox wait` as real processes, on both stores:
//! records committed while it runs reach CMD, SIGTERM stops it with 0, a
//! failing CMD is retried and loses nothing, SIGKILL at any point loses
//! nothing. Every wait is on a pipe or a process with a generous timeout
//! that only fails the test; nothing sleeps. The PostgreSQL cases print
//! SKIPPED without `OUTBOX_TEST_DATABASE_URL`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

/// How long any one expected event may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// The store a test runs on: `--root DIR` or `--store URL`.
struct StoreArgs {
    args: Vec<String>,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    cleanup: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl StoreArgs {
    /// A file store whose root does not exist yet (watch must follow its
    /// creation).
    fn files() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("not-yet/root");
        Self {
            args: vec!["--root".into(), root.display().to_string()],
            cleanup: None,
            _dir: Some(dir),
        }
    }

    /// A fresh schema on the test database, or `None` (SKIPPED).
    #[cfg(feature = "postgres")]
    fn postgres(test: &str) -> Option<Self> {
        const VAR: &str = "OUTBOX_TEST_DATABASE_URL";
        let Some(base) = std::env::var(VAR).ok().filter(|u| !u.trim().is_empty()) else {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED watch::{test}: {VAR} is not set, so there is no PostgreSQL to test \
                 against (e.g. {VAR}=postgres://postgres@127.0.0.1:5432/test)"
            );
            return None;
        };
        let schema = format!("watch_{}_{test}", std::process::id());
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(Self {
            args: vec![
                "--store".into(),
                format!("{base}{sep}outbox_schema={schema}"),
            ],
            cleanup: Some((base, schema)),
            _dir: None,
        })
    }

    fn outbox(&self, args: &[&str]) -> Run {
        let mut cmd = command();
        cmd.args(&self.args).args(args);
        run_command(cmd, b"")
    }

    fn commit(&self, child: &str) {
        let run = self.outbox(&[
            "commit",
            "--parent",
            PARENT,
            "--child",
            child,
            "--finished",
            "--status",
            "success",
        ]);
        assert_eq!(run.code, 0, "{run:?}");
    }
}

impl Drop for StoreArgs {
    fn drop(&mut self) {
        #[cfg(feature = "postgres")]
        if let Some((base, schema)) = &self.cleanup
            && let Ok(mut client) = postgres::Client::connect(base, postgres::NoTls)
        {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
        }
    }
}

/// Two tests of `$check`, `$name::files` and `$name::postgres` (SKIPPED
/// without a database; `$tag` names its schema).
macro_rules! on_both_stores {
    ($name:ident, $check:ident, $tag:literal) => {
        mod $name {
            use super::*;

            #[test]
            fn files() {
                $check(StoreArgs::files());
            }

            #[cfg(feature = "postgres")]
            #[test]
            fn postgres() {
                if let Some(store) = StoreArgs::postgres($tag) {
                    $check(store);
                }
            }
        }
    };
}

/// A running `outbox watch`, its stdout (CMD's) and stderr as line channels.
struct Watch {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    readers: Vec<JoinHandle<()>>,
}

fn lines(pipe: impl std::io::Read + Send + 'static) -> (Receiver<String>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (rx, handle)
}

impl Watch {
    /// Starts `outbox watch --parent P <extra> --exec <exec>` in `cwd` and
    /// waits until it says it is watching.
    fn start(store: &StoreArgs, extra: &[&str], exec: &[&str], cwd: &std::path::Path) -> Self {
        let mut cmd = command();
        cmd.current_dir(cwd)
            .args(&store.args)
            .args(["watch", "--parent", PARENT, "--debounce", "10ms"])
            .args(extra)
            .arg("--exec")
            .args(exec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn outbox watch");
        let (stdout, out) = lines(child.stdout.take().unwrap());
        let (stderr, err) = lines(child.stderr.take().unwrap());
        let watch = Self {
            child,
            stdout,
            stderr,
            readers: vec![out, err],
        };
        let line = watch.stderr_until("watching");
        assert!(line.starts_with("outbox watch: watching"), "{line}");
        watch
    }

    /// The next stderr line containing `text` (fails after [`PATIENCE`]).
    fn stderr_until(&self, text: &str) -> String {
        loop {
            let line = self
                .stderr
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|e| panic!("no stderr line with {text:?}: {e}"));
            if line.contains(text) {
                return line;
            }
        }
    }

    /// The next record CMD printed, as JSON.
    fn next_record(&self) -> Value {
        let line = self
            .stdout
            .recv_timeout(PATIENCE)
            .expect("a record delivered within the timeout");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    /// Sends SIGTERM and returns the exit code, failing after [`PATIENCE`].
    fn terminate(self) -> i32 {
        self.signal("TERM")
    }

    /// Sends SIG`name` and returns the exit code, failing after
    /// [`PATIENCE`].
    fn signal(mut self, name: &str) -> i32 {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let (tx, rx) = mpsc::channel();
        let mut child = std::mem::replace(&mut self.child, dummy());
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = rx
            .recv_timeout(PATIENCE)
            .expect("watch exits after SIGTERM")
            .unwrap();
        self.stderr_until(&format!("stopped by SIG{name}"));
        status.code().expect("exited, not killed")
    }
}

/// A finished process to stand in for a moved-out child.
fn dummy() -> Child {
    let mut child = Command::new("true").spawn().unwrap();
    let _ = child.wait();
    child
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn delivered_while_running(store: StoreArgs) {
    let dir = tempfile::tempdir().unwrap();
    let watch = Watch::start(&store, &[], &["cat"], dir.path());
    for child in ["w1", "w2", "w3"] {
        store.commit(child);
        let record = watch.next_record();
        assert_eq!(record["child_session_id"], child, "{record}");
    }
    assert_eq!(watch.terminate(), 0);
    // Consumed: nothing pending once watch has stopped.
    let run = store.outbox(&["pending", "--parent", PARENT]);
    assert_eq!(run.code, 1, "{run:?}");
}

on_both_stores!(
    records_committed_while_watch_runs_are_delivered,
    delivered_while_running,
    "delivered"
);

#[test]
fn what_was_pending_before_it_started_is_delivered_first() {
    let store = StoreArgs::files();
    store.commit("early");
    let dir = tempfile::tempdir().unwrap();
    let watch = Watch::start(&store, &[], &["cat"], dir.path());
    assert_eq!(watch.next_record()["child_session_id"], "early");
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn a_failing_command_is_retried_and_loses_nothing() {
    let store = StoreArgs::files();
    let dir = tempfile::tempdir().unwrap();
    // Fails the first time (after reading), succeeds the second.
    let script = "if [ -e tried ]; then cat; else touch tried; cat >/dev/null; exit 3; fi";
    let watch = Watch::start(&store, &[], &["sh", "-c", script], dir.path());
    store.commit("w1");
    let line = watch.stderr_until("exited with status 3");
    assert!(line.contains("stay pending"), "{line}");
    watch.stderr_until("trying again in 1s");
    assert_eq!(watch.next_record()["child_session_id"], "w1");
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn other_parents_do_not_wake_it_and_all_watches_every_parent() {
    let store = StoreArgs::files();
    let dir = tempfile::tempdir().unwrap();
    let watch = Watch::start(&store, &[], &["cat"], dir.path());
    let run = store.outbox(&[
        "commit",
        "--parent",
        "other",
        "--child",
        "x",
        "--finished",
        "--status",
        "ok",
    ]);
    assert_eq!(run.code, 0);
    store.commit("mine");
    assert_eq!(watch.next_record()["child_session_id"], "mine");
    assert_eq!(watch.terminate(), 0);
    // --all: the other parent's record, with OUTBOX_PARENT naming it.
    let mut cmd = command();
    cmd.current_dir(dir.path())
        .args(&store.args)
        .args([
            "watch",
            "--all",
            "--exec",
            "sh",
            "-c",
            "echo \"$OUTBOX_PARENT\"; cat",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let (stdout, _) = lines(child.stdout.take().unwrap());
    assert_eq!(stdout.recv_timeout(PATIENCE).unwrap(), "other");
    let record: Value = serde_json::from_str(&stdout.recv_timeout(PATIENCE).unwrap()).unwrap();
    assert_eq!(record["child_session_id"], "x");
    let _ = child.kill();
    let _ = child.wait();
}

/// A small deterministic generator (xorshift), so a failing seed replays.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn sigkill_loses_nothing(store: StoreArgs) {
    let seed = 0x9E37_79B9_7F4A_7C15_u64 ^ u64::from(std::process::id());
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut committed = BTreeSet::new();
    let mut delivered = BTreeSet::new();
    for round in 0..6 {
        let mut watch = Watch::start(&store, &[], &["cat"], dir.path());
        let children: Vec<String> = (0..8).map(|i| format!("r{round}c{i}")).collect();
        committed.extend(children.iter().cloned());
        let args = store.args.clone();
        let committer = std::thread::spawn(move || {
            for child in children {
                let mut cmd = command();
                cmd.args(&args).args([
                    "commit",
                    "--parent",
                    PARENT,
                    "--child",
                    &child,
                    "--finished",
                    "--status",
                    "ok",
                ]);
                assert_eq!(run_command(cmd, b"").code, 0);
            }
        });
        // Kill after a random number of deliveries (0: at once, while the
        // commits start).
        let k = rng.below(6);
        for _ in 0..k {
            let record = watch.next_record();
            delivered.insert(record["child_session_id"].as_str().unwrap().to_owned());
        }
        watch.child.kill().unwrap();
        watch.child.wait().unwrap();
        committer.join().unwrap();
        // What CMD printed before it saw its input end counts as delivered.
        for reader in watch.readers.drain(..) {
            reader.join().unwrap();
        }
        for line in watch.stdout.try_iter() {
            let record: Value = serde_json::from_str(&line).unwrap();
            delivered.insert(record["child_session_id"].as_str().unwrap().to_owned());
        }
    }
    let run = store.outbox(&["drain", "--parent", PARENT, "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let rest: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    for record in rest {
        delivered.insert(record["child_session_id"].as_str().unwrap().to_owned());
    }
    let lost: Vec<_> = committed.difference(&delivered).collect();
    assert!(lost.is_empty(), "seed {seed:#x}: lost {lost:?}");
}

on_both_stores!(
    sigkill_at_random_points_loses_nothing,
    sigkill_loses_nothing,
    "sigkill"
);

fn wait_returns_when_something_is_pending(store: StoreArgs) {
    let run = store.outbox(&["wait", "--parent", PARENT, "--timeout", "50ms"]);
    assert_eq!(run.code, 1, "nothing pending: timeout, {run:?}");
    let mut cmd = command();
    cmd.args(&store.args)
        .args(["wait", "--parent", PARENT])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut waiter = cmd.spawn().unwrap();
    store.commit("w1");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(waiter.wait());
    });
    let status = rx.recv_timeout(PATIENCE).expect("wait returns").unwrap();
    assert_eq!(status.code(), Some(0));
    let run = store.outbox(&["wait", "--parent", PARENT, "--timeout", "1s"]);
    assert_eq!(run.code, 0, "already pending: at once, {run:?}");
}

on_both_stores!(
    wait_returns_when_something_is_pending,
    wait_returns_when_something_is_pending,
    "wait"
);

#[test]
fn sigint_stops_it_too_and_keeps_what_it_did_not_deliver() {
    let store = StoreArgs::files();
    let dir = tempfile::tempdir().unwrap();
    // A CMD that always fails: the record stays pending through the stop.
    let watch = Watch::start(
        &store,
        &[],
        &["sh", "-c", "cat >/dev/null; exit 1"],
        dir.path(),
    );
    store.commit("w1");
    watch.stderr_until("exited with status 1");
    assert_eq!(watch.signal("INT"), 0);
    let records = store.outbox(&["peek", "--parent", PARENT, "--json"]);
    let records: Vec<Value> = serde_json::from_str(&records.stdout).unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
}

#[test]
fn the_backoff_is_capped_by_max_backoff() {
    let store = StoreArgs::files();
    let dir = tempfile::tempdir().unwrap();
    // Fails three times, then delivers.
    let script = "n=$(cat count 2>/dev/null || echo 0); echo $((n+1)) > count; \
                  if [ $n -ge 3 ]; then cat; else cat >/dev/null; exit 4; fi";
    let watch = Watch::start(
        &store,
        &["--max-backoff", "1s"],
        &["sh", "-c", script],
        dir.path(),
    );
    store.commit("w1");
    for _ in 0..3 {
        // 1 s each time: the doubling stops at --max-backoff.
        watch.stderr_until("exited with status 4");
        let line = watch.stderr_until("trying again in");
        assert!(line.ends_with("trying again in 1s"), "{line}");
    }
    assert_eq!(watch.next_record()["child_session_id"], "w1");
    assert_eq!(watch.terminate(), 0);
}

#[cfg(feature = "postgres")]
#[test]
fn a_lost_postgres_listener_reconnects_and_misses_nothing() {
    let Some(store) = StoreArgs::postgres("reconnect") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let watch = Watch::start(&store, &[], &["cat"], dir.path());
    let (base, schema) = store.cleanup.clone().unwrap();
    let mut client = postgres::Client::connect(&base, postgres::NoTls).unwrap();
    let killed: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE query = 'LISTEN outbox_' || md5($1)",
            &[&format!("\"{schema}\"")],
        )
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "the watch's LISTEN connection");
    watch.stderr_until("lost the store's notifications");
    // Committed while nobody listens: found by the look after reconnecting.
    store.commit("w1");
    assert_eq!(watch.next_record()["child_session_id"], "w1");
    store.commit("w2");
    assert_eq!(watch.next_record()["child_session_id"], "w2");
    assert_eq!(watch.terminate(), 0);
}
