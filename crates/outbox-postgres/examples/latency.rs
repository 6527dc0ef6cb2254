//! Commit and drain latency of the PostgreSQL store over loopback, and
//! where the time goes (round trips vs the WAL fsync of each `COMMIT`).
//!
//! ```text
//! cargo run --release -p outbox-postgres --example latency -- postgres://postgres@127.0.0.1:5432/test
//! ```
//!
//! For each operation it prints the median of several runs with the
//! server's `synchronous_commit` on (every `COMMIT` waits for its WAL
//! fsync) and off (it does not): the difference is the fsync's share. A
//! bare round trip (`SELECT 1`) is measured beside them. It works in a
//! schema of its own, dropped at the end.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use outbox::{Record, Store};
use outbox_postgres::PgOutbox;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn record(child: String) -> Record {
    let mut r = Record::finished(child, "success");
    r.done_summary = "turn 1: refactored the parser and added tests".into();
    r
}

fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("OUTBOX_TEST_DATABASE_URL").ok())
        .ok_or("usage: latency POSTGRES_URL (or set OUTBOX_TEST_DATABASE_URL)")?;
    let schema = format!("latency_{}", std::process::id());
    let mut admin = postgres::Client::connect(&url, postgres::NoTls)?;
    let setting: String = admin.query_one("SHOW synchronous_commit", &[])?.get(0);
    println!("server synchronous_commit = {setting}; schema {schema}");
    let st = admin.prepare("SELECT 1")?;
    let rt = median(
        (0..500)
            .map(|_| {
                let t = Instant::now();
                let _ = admin.query_one(&st, &[]);
                t.elapsed()
            })
            .collect(),
    );
    println!("round trip (SELECT 1, prepared): {}", ms(rt));

    let mut n = 0usize;
    let mut fresh = || {
        n += 1;
        format!("c{n}")
    };
    for sync in ["on", "off"] {
        let store = PgOutbox::connect_schema(
            &with_param(&url, &format!("options=-c%20synchronous_commit%3D{sync}")),
            &schema,
        )?;
        // Warm the connection and its prepared statements.
        store.commit("warm", record(fresh()))?;
        store.drain("warm")?;
        for batch in [1usize, 25, 1000] {
            let reps = match batch {
                1 => 200,
                25 => 20,
                _ => 5,
            };
            let mut commits = Vec::new();
            let mut drains = Vec::new();
            for rep in 0..reps {
                let parent = format!("p-{sync}-{batch}-{rep}");
                let t = Instant::now();
                for _ in 0..batch {
                    store.commit(&parent, record(fresh()))?;
                }
                commits.push(t.elapsed());
                let t = Instant::now();
                let d = store.drain_with(&parent, |_| Ok::<(), Infallible>(()))?;
                drains.push(t.elapsed());
                assert_eq!(d.records.len(), batch);
            }
            println!(
                "synchronous_commit={sync:<3} commit x{batch:<4} {:>12} ({} per record)   \
                 drain_with of {batch:<4} {:>12}",
                ms(median(commits.clone())),
                ms(median(commits) / u32::try_from(batch)?),
                ms(median(drains))
            );
        }
    }
    // Where a drain's time goes: its four round trips, timed one by one
    // with the store's own statements (a drain of 25 records).
    for sync in ["on", "off"] {
        let mut c = postgres::Client::connect(
            &with_param(&url, &format!("options=-c%20synchronous_commit%3D{sync}")),
            postgres::NoTls,
        )?;
        let store = PgOutbox::connect_schema(&url, &schema)?;
        let rows = c.prepare(&format!(
            "SELECT p.child, p.seq, p.line, c.hit IS NOT NULL FROM \"{schema}\".pending p \
             LEFT JOIN LATERAL (SELECT true AS hit FROM \"{schema}\".consumed c \
             WHERE c.parent = $1 AND c.turn_key = p.turn_key LIMIT 1) c ON true \
             WHERE p.parent = $1 ORDER BY p.seq"
        ))?;
        let finish = c.prepare(&format!(
            "SELECT \"{schema}\".finish_drain($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))?;
        let mut steps = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        for rep in 0..30 {
            let parent = format!("b-{sync}-{rep}");
            let mut keys = Vec::new();
            for _ in 0..25 {
                keys.push(store.commit(&parent, record(fresh()))?.record.turn_key());
            }
            let t = Instant::now();
            c.batch_execute("BEGIN; SELECT pg_advisory_xact_lock(42)")?;
            steps[0].push(t.elapsed());
            let t = Instant::now();
            let got = c.query(&rows, &[&parent])?;
            steps[1].push(t.elapsed());
            let children: Vec<String> = got.iter().map(|r| r.get(0)).collect();
            let seqs: Vec<i64> = got.iter().map(|r| r.get(1)).collect();
            let none_s: Vec<String> = Vec::new();
            let none_i: Vec<i64> = Vec::new();
            let t = Instant::now();
            c.execute(
                &finish,
                &[
                    &parent,
                    &children,
                    &seqs,
                    &keys,
                    &none_s,
                    &none_i,
                    &none_s,
                    &2_000_000_000i64,
                    &1_209_600i64,
                ],
            )?;
            steps[2].push(t.elapsed());
            let t = Instant::now();
            c.batch_execute("COMMIT")?;
            steps[3].push(t.elapsed());
        }
        let [a, b, f, cm] = steps.map(median);
        println!(
            "synchronous_commit={sync:<3} drain of 25, by round trip: BEGIN+lock {}, rows {}, \
             finish_drain {}, COMMIT {}",
            ms(a),
            ms(b),
            ms(f),
            ms(cm)
        );
    }
    admin.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))?;
    Ok(())
}
