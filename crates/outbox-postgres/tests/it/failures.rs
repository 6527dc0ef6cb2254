//! The PostgreSQL store under failures: concurrent startup, a schema from
//! the future, timeouts, backends terminated mid-drain and while idle, an
//! unreachable server; and the byte-identical line beside the file store.

use std::convert::Infallible;
use std::sync::Barrier;

use outbox::{Error, Outbox, Outcome, Record, Store, StoreErrorKind};
use outbox_postgres::{PgOutbox, SCHEMA_VERSION};

use crate::util::{Pg, url, with_param};

const PARENT: &str = "parent-A";

fn store_error(e: &Error) -> &outbox::StoreError {
    match e {
        Error::Store(s) => s,
        other => panic!("expected a store error, got {other:?}"),
    }
}

/// Terminates the backends of `application_name` and waits (up to 10 s,
/// `pg_terminate_backend`'s timeout) until each is gone, so what follows
/// meets a dead connection, not a race with its death.
fn terminate(pg: &Pg, application_name: &str) -> i64 {
    let mut client = pg.client();
    let rows = client
        .query(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
            &[&application_name],
        )
        .unwrap();
    rows.len() as i64
}

#[test]
fn processes_starting_at_once_migrate_the_schema_once() {
    let Some(pg) = Pg::from_env("migrate") else {
        return;
    };
    let schema = pg.fresh_schema();
    let barrier = Barrier::new(8);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                barrier.wait();
                PgOutbox::connect_schema(&pg.url, &schema).unwrap();
            });
        }
    });
    let mut client = pg.client();
    let v: i32 = client
        .query_one(
            &format!("SELECT version FROM \"{schema}\".schema_version"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(v, SCHEMA_VERSION);
    let rows: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".schema_version"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    // Reopening is one read, and changes nothing.
    let store = PgOutbox::connect_schema(&pg.url, &schema).unwrap();
    store.commit(PARENT, Record::finished("c", "ok")).unwrap();
    assert_eq!(store.drain(PARENT).unwrap().records.len(), 1);
}

#[test]
fn a_schema_newer_than_the_code_is_refused_by_name() {
    let Some(pg) = Pg::from_env("newer schema") else {
        return;
    };
    let schema = pg.fresh_schema();
    PgOutbox::connect_schema(&pg.url, &schema).unwrap();
    pg.client()
        .batch_execute(&format!(
            "UPDATE \"{schema}\".schema_version SET version = 99"
        ))
        .unwrap();
    let e = PgOutbox::connect_schema(&pg.url, &schema).unwrap_err();
    assert_eq!(store_error(&e).kind, StoreErrorKind::Schema);
    assert!(e.to_string().contains("schema version 99 is newer"), "{e}");
}

/// A schema from before the handover step (the bare Stop-hook counter)
/// migrates to the handover state: the counter is kept, nothing is shown,
/// and the state then round-trips.
#[test]
fn a_bare_stop_blocks_row_migrates_to_a_handover_state() {
    let Some(pg) = Pg::from_env("migrate stop_blocks") else {
        return;
    };
    let schema = pg.fresh_schema();
    PgOutbox::connect_schema(&pg.url, &schema).unwrap();
    // Back to the version before the handover step (the last one): the
    // counter table without the handover columns, holding a counter.
    pg.client()
        .batch_execute(&format!(
            "ALTER TABLE \"{schema}\".stop_blocks DROP COLUMN session_id, DROP COLUMN surface,
                 DROP COLUMN shown, DROP COLUMN delivery, DROP COLUMN shown_at,
                 DROP COLUMN emitted;
             INSERT INTO \"{schema}\".stop_blocks (parent, count) VALUES ('{PARENT}', 2);
             UPDATE \"{schema}\".schema_version SET version = {};",
            SCHEMA_VERSION - 1
        ))
        .unwrap();
    let store = PgOutbox::connect_schema(&pg.url, &schema).unwrap();
    let state = store.handover(PARENT).unwrap();
    assert_eq!(state.blocks, 2);
    assert!(!state.awaits_confirmation());
    let shown = outbox::handover::Handover {
        session_id: "s1".into(),
        surface: Some(outbox::handover::Surface::StopBlock),
        shown: vec!["c@1".into()],
        emitted: true,
        ..state
    };
    store.set_handover(PARENT, &shown).unwrap();
    assert_eq!(store.handover(PARENT).unwrap(), shown);
}

#[test]
fn an_unreachable_server_is_a_connect_error_naming_the_store() {
    if url("unreachable").is_none() {
        return;
    }
    let e =
        PgOutbox::connect("postgres://postgres@127.0.0.1:1/test?connect_timeout=5").unwrap_err();
    let s = store_error(&e);
    assert_eq!(s.kind, StoreErrorKind::Connect);
    assert_eq!(s.outcome, Outcome::NotApplied);
    assert!(
        e.to_string()
            .starts_with("connect on postgres://postgres@127.0.0.1:1/test"),
        "{e}"
    );
}

/// A drain that waits too long for the parent's lock (another drainer
/// holds it) fails with a timeout naming the operation; nothing changes.
#[test]
fn a_lock_timeout_names_the_operation_and_changes_nothing() {
    let Some(pg) = Pg::from_env("lock timeout") else {
        return;
    };
    let schema = pg.fresh_schema();
    let holder = PgOutbox::connect_schema(&pg.url, &schema).unwrap();
    let impatient = PgOutbox::connect_schema(
        &with_param(&pg.url, "options=-c%20lock_timeout%3D200"),
        &schema,
    )
    .unwrap();
    holder.commit(PARENT, Record::finished("c1", "ok")).unwrap();
    let mut seen = None;
    holder
        .drain_with(PARENT, |records| {
            // A second drainer (another handle: another host) waits for the
            // lock this drain holds, and gives up.
            let e = impatient.drain(PARENT).unwrap_err();
            seen = Some((records.len(), e));
            Err("hold back")
        })
        .unwrap_err();
    let (n, e) = seen.unwrap();
    assert_eq!(n, 1);
    let s = store_error(&e);
    assert_eq!(s.kind, StoreErrorKind::Timeout, "{e}");
    assert_eq!(s.outcome, Outcome::NotApplied);
    assert!(
        e.to_string()
            .starts_with("drain: claim the parent's records on postgres://"),
        "{e}"
    );
    assert!(e.to_string().ends_with("nothing was changed"), "{e}");
    assert_eq!(impatient.drain(PARENT).unwrap().records.len(), 1);
}

/// The drainer's backend is terminated while its delivery runs (a server
/// restart, a failover): the marks are never committed, the error names
/// the operation, and the records come again.
#[test]
fn a_backend_terminated_mid_drain_marks_nothing() {
    let Some(pg) = Pg::from_env("terminated mid-drain") else {
        return;
    };
    let schema = pg.fresh_schema();
    let app = format!("victim_{schema}");
    let store = PgOutbox::connect_schema(
        &with_param(&pg.url, &format!("application_name={app}")),
        &schema,
    )
    .unwrap();
    store.commit(PARENT, Record::finished("a", "ok")).unwrap();
    store.commit(PARENT, Record::finished("b", "ok")).unwrap();
    let err = store
        .drain_with(PARENT, |_| {
            assert!(terminate(&pg, &app) >= 1);
            Ok::<(), Infallible>(())
        })
        .unwrap_err();
    let e = err.into_outbox();
    let s = store_error(&e);
    assert_eq!(s.kind, StoreErrorKind::ConnectionLost, "{e}");
    assert_eq!(s.outcome, Outcome::NotApplied, "{e}");
    assert!(
        e.to_string()
            .starts_with("drain: mark the records consumed on postgres://"),
        "{e}"
    );
    assert!(store.has_pending(PARENT).unwrap());
    let again = store.drain(PARENT).unwrap().records;
    assert_eq!(again.len(), 2);
}

/// Idle connections killed (a server restart between operations): a drain
/// retries its claim on a new connection (nothing was sent that could
/// commit); a commit, whose statement commits, cannot know and says so;
/// committing again is safe.
#[test]
fn dead_idle_connections_retry_where_safe_and_say_unknown_where_not() {
    let Some(pg) = Pg::from_env("dead idle connections") else {
        return;
    };
    let schema = pg.fresh_schema();
    let app = format!("idle_{schema}");
    let store = PgOutbox::connect_schema(
        &with_param(&pg.url, &format!("application_name={app}")),
        &schema,
    )
    .unwrap();
    store.commit(PARENT, Record::finished("a", "ok")).unwrap();
    assert!(terminate(&pg, &app) >= 1);
    assert_eq!(
        store.drain(PARENT).unwrap().records.len(),
        1,
        "the drain retried"
    );

    assert!(terminate(&pg, &app) >= 1);
    let r = Record::finished("b", "ok");
    // (A connection the driver already knows is closed is never used: then
    // the commit takes a new one and simply succeeds.)
    if let Err(e) = store.commit(PARENT, r.clone()) {
        assert!(e.outcome_unknown(), "{e}");
        assert!(e.to_string().contains("the outcome is unknown"), "{e}");
        store.commit(PARENT, r).unwrap();
    }
    let drained = store.drain(PARENT).unwrap().records;
    assert_eq!(drained.len(), 1);
    assert_eq!(drained[0].child_session_id, "b");
}

/// The stored line is byte for byte the file outbox's inbox line.
#[test]
fn the_stored_line_is_the_file_outbox_line() {
    let Some(pg) = Pg::from_env("byte-identical") else {
        return;
    };
    let schema = pg.fresh_schema();
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_900_000_000);
    let store = PgOutbox::connect_schema(&pg.url, &schema)
        .unwrap()
        .with_clock(move || now);
    let dir = tempfile::tempdir().unwrap();
    let files = Outbox::open(dir.path()).unwrap().with_clock(move || now);
    let mut r = Record::finished("w1", "success");
    r.timestamp = outbox::Timestamp::default();
    r.child_title = "tïtle \"q\"\n\u{1}".into();
    r.done_summary = "done — ok".into();
    r.last_output_hash = "abc".into();
    let a = store.commit(PARENT, r.clone()).unwrap().record;
    let b = files.commit(PARENT, r).unwrap().record;
    assert_eq!(a, b);
    let on_disk = std::fs::read_to_string(files.paths(PARENT).unwrap().inbox).unwrap();
    let row: String = pg
        .client()
        .query_one(&format!("SELECT line FROM \"{schema}\".pending"), &[])
        .unwrap()
        .get(0);
    assert_eq!(format!("{row}\n"), on_disk);
}

/// Blocks until a backend of `application_name` waits for an advisory lock
/// (a drain queued behind another drainer of the same parent): a condition
/// polled on the server, not a sleep.
fn wait_for_lock_waiter(pg: &Pg, application_name: &str) {
    let mut client = pg.client();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let waiting: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
                 AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
                &[&application_name],
            )
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "no backend of {application_name} ever waited for the drain lock"
        );
        std::thread::yield_now();
    }
}

/// The URL with `default_transaction_isolation` set to `serializable`, as a
/// DBA may set it for a database or role.
fn serializable(url: &str) -> String {
    with_param(
        url,
        "options=-c%20default_transaction_isolation%3Dserializable",
    )
}

/// A database whose default isolation is `serializable` (or `repeatable
/// read`): a second drainer that queued behind the first must still see
/// what the first consumed, not a snapshot taken before it got the lock,
/// and deliver nothing again.
#[test]
fn a_queued_drainer_sees_what_the_first_consumed_whatever_the_default_isolation() {
    let Some(pg) = Pg::from_env("queued drainer isolation") else {
        return;
    };
    let schema = pg.fresh_schema();
    let url = serializable(&pg.url);
    let first = PgOutbox::connect_schema(&url, &schema).unwrap();
    let app = format!("second_{schema}");
    let second = PgOutbox::connect_schema(
        &with_param(&url, &format!("application_name={app}")),
        &schema,
    )
    .unwrap();
    first.commit(PARENT, Record::finished("c1", "ok")).unwrap();
    let mut again = Vec::new();
    let second_result = std::thread::scope(|s| {
        let mut queued = None;
        let drained = first
            .drain_with(PARENT, |records| {
                assert_eq!(records.len(), 1);
                queued = Some(s.spawn(|| {
                    second.drain_with(PARENT, |records| {
                        again.extend(records.iter().map(|r| r.child_session_id.clone()));
                        Ok::<(), Infallible>(())
                    })
                }));
                wait_for_lock_waiter(&pg, &app);
                Ok::<(), Infallible>(())
            })
            .unwrap();
        assert_eq!(drained.records.len(), 1);
        queued.unwrap().join().unwrap()
    });
    assert!(again.is_empty(), "delivered twice: {again:?}");
    let drained = second_result.unwrap_or_else(|e| panic!("{:?}", e));
    assert!(drained.records.is_empty());
}

/// Processes starting at once migrate the schema once, also when the
/// database's default isolation is `serializable`.
#[test]
fn processes_starting_at_once_migrate_under_a_serializable_default() {
    let Some(pg) = Pg::from_env("migrate serializable") else {
        return;
    };
    let schema = pg.fresh_schema();
    let url = serializable(&pg.url);
    let barrier = Barrier::new(8);
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    PgOutbox::connect_schema(&url, &schema)
                        .err()
                        .map(|e| e.to_string())
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(errors.is_empty(), "{errors:#?}");
}

/// A row whose line cannot be read back (written by another program) is
/// not something a drain would deliver: `has_pending` agrees with `peek`
/// and the drain, which sets it aside.
#[test]
fn has_pending_agrees_with_peek_about_an_unreadable_row() {
    let Some(pg) = Pg::from_env("unreadable row") else {
        return;
    };
    let schema = pg.fresh_schema();
    let store = PgOutbox::connect_schema(&pg.url, &schema).unwrap();
    pg.client()
        .execute(
            &format!(
                "INSERT INTO \"{schema}\".pending \
                 (parent, child, seq, turn_key, from_status, to_status, ts_ns, lock_key, line) \
                 VALUES ($1, 'x', nextval('\"{schema}\".commit_seq'), 'x@1', '', '', NULL, 0, \
                 'not a record')"
            ),
            &[&PARENT],
        )
        .unwrap();
    assert!(store.peek(PARENT).unwrap().is_empty());
    assert!(
        !store.has_pending(PARENT).unwrap(),
        "has_pending says yes, peek and a drain deliver nothing"
    );
    let drained = store.drain(PARENT).unwrap();
    assert!(drained.records.is_empty());
    assert_eq!(drained.bad_lines.len(), 1);
}

/// A store error carries the server's or the system's reason, not only the
/// driver's kind of error ("db error", "error connecting to server").
#[test]
fn errors_carry_the_reason() {
    let Some(pg) = Pg::from_env("errors carry the reason") else {
        return;
    };
    let schema = pg.fresh_schema();
    let holder = PgOutbox::connect_schema(&pg.url, &schema).unwrap();
    let impatient = PgOutbox::connect_schema(
        &with_param(&pg.url, "options=-c%20lock_timeout%3D100"),
        &schema,
    )
    .unwrap();
    holder.commit(PARENT, Record::finished("c1", "ok")).unwrap();
    let mut seen = None;
    holder
        .drain_with(PARENT, |_| {
            seen = Some(impatient.drain(PARENT).unwrap_err());
            Ok::<(), Infallible>(())
        })
        .unwrap();
    let e = seen.unwrap();
    assert!(e.to_string().contains("lock timeout"), "{e}");

    let e =
        PgOutbox::connect("postgres://postgres@127.0.0.1:1/test?connect_timeout=5").unwrap_err();
    assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
}

/// A server with `idle_in_transaction_session_timeout` (a common DBA
/// setting) must not end a drain's transaction while its delivery runs:
/// that would release the parent's lock, and a second drainer would claim
/// and deliver the same records while the first still delivers them.
#[test]
fn a_slow_delivery_keeps_the_parent_under_an_idle_in_transaction_timeout() {
    let Some(pg) = Pg::from_env("idle in transaction timeout") else {
        return;
    };
    let schema = pg.fresh_schema();
    let first_app = format!("first_{schema}");
    let second_app = format!("second_{schema}");
    let timeout = "options=-c%20idle_in_transaction_session_timeout%3D200";
    let first = PgOutbox::connect_schema(
        &with_param(
            &with_param(&pg.url, timeout),
            &format!("application_name={first_app}"),
        ),
        &schema,
    )
    .unwrap();
    let second = PgOutbox::connect_schema(
        &with_param(&pg.url, &format!("application_name={second_app}")),
        &schema,
    )
    .unwrap();
    first.commit(PARENT, Record::finished("c1", "ok")).unwrap();
    let (first_result, second_result) = std::thread::scope(|s| {
        let mut queued = None;
        let first_result = first.drain_with(PARENT, |_| {
            queued = Some(s.spawn(|| second.drain(PARENT)));
            wait_for_lock_waiter(&pg, &second_app);
            // Deliver for longer than the timeout: until the first's
            // transaction has been idle for 400 ms, or is gone.
            let mut client = pg.client();
            loop {
                let done: bool = client
                    .query_one(
                        "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity \
                         WHERE application_name = $1 AND state = 'idle in transaction' \
                         AND clock_timestamp() - state_change < interval '400 ms')",
                        &[&first_app],
                    )
                    .unwrap()
                    .get(0);
                if done {
                    break;
                }
                std::thread::yield_now();
            }
            Ok::<(), Infallible>(())
        });
        (first_result, queued.unwrap().join().unwrap())
    });
    let second = second_result.unwrap();
    assert!(
        second.records.is_empty(),
        "the second drainer delivered what the first was delivering; first: {first_result:?}"
    );
    assert_eq!(first_result.unwrap().records.len(), 1);
}
