//! The multi-host proof: producer and drainer *processes* on one parent,
//! talking to PostgreSQL over TCP (the `OUTBOX_TEST_DATABASE_URL`), as
//! agents on several hosts would.
//!
//! Three producer processes commit unique records (retrying a commit that
//! failed: committing the same record again is safe) and log each one
//! whose commit returned `Ok`. Two drainer processes drain with
//! `drain_with`, each appending what it delivers to its own output file
//! (fsynced before `deliver` returns `Ok`). Drainers are SIGKILLed at
//! seeded-random moments and restarted. Once, mid-run, the server drops
//! every connection of the run: by default every backend of the run is
//! terminated with `pg_terminate_backend` (a restart of the shared server
//! would break the other tests running beside this one); with
//! `OUTBOX_MULTIHOST_RESTART_CMD` set (e.g. `pg_ctlcluster
//! --skip-systemctl-redirect 15 main restart`, run alone) that command
//! restarts the server instead. At the end a final drain runs and the test
//! checks: nothing committed is lost, nothing delivered was never
//! committed, and every duplicate lies in the documented window of
//! `drain_with` — the last batch of a killed drainer, or a batch whose
//! drain failed after its delivery (the `COMMIT` of its marks did not
//! happen). Counts are printed.
//!
//! The workers are this test executable itself, re-run with
//! `OUTBOX_MH_ROLE` set: [`multi_host_worker`] does nothing otherwise.
//! Knobs: `OUTBOX_MULTIHOST_SEED` (printed), `OUTBOX_MULTIHOST_RECORDS`
//! (default 600).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outbox::{Record, Store};
use outbox_postgres::PgOutbox;

use crate::util::{Pg, with_param};

const PRODUCERS: usize = 3;
const DRAINERS: usize = 2;
const ROLE: &str = "OUTBOX_MH_ROLE";
const PARENT: &str = "conductor";
const DEADLINE: Duration = Duration::from_secs(300);

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// Connects, retrying while the server is away (a restart); gives up at
/// the deadline.
fn connect(url: &str, schema: &str) -> PgOutbox {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        match PgOutbox::connect_schema(url, schema) {
            Ok(store) => return store,
            Err(e) if Instant::now() < until => {
                eprintln!("multi-host worker: {e}; retrying");
                // Back-off while the server restarts; not a synchronisation.
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("cannot connect: {e}"),
        }
    }
}

/// The body of a worker process; a no-op in a normal test run.
#[test]
fn multi_host_worker() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let store = connect(&var("OUTBOX_MH_URL"), &var("OUTBOX_MH_SCHEMA"));
    let out = PathBuf::from(var("OUTBOX_MH_OUT"));
    match role.as_str() {
        "producer" => {
            let id = var("OUTBOX_MH_ID");
            let count: u64 = var("OUTBOX_MH_COUNT").parse().unwrap();
            produce(&store, &out, &id, count);
        }
        "drainer" => drain_until_told(&store, &out, &PathBuf::from(var("OUTBOX_MH_STOP"))),
        other => panic!("unknown role {other}"),
    }
}

fn produce(store: &PgOutbox, out: &Path, id: &str, count: u64) {
    let mut log = BufWriter::new(File::create(out).unwrap());
    let mut retries = 0u64;
    for i in 0..count {
        let child = format!("{id}-{i}");
        let mut r = Record::finished(child.as_str(), "success");
        r.done_summary = format!("the work of {child}");
        let until = Instant::now() + Duration::from_secs(60);
        while let Err(e) = store.commit(PARENT, r.clone()) {
            assert!(
                Instant::now() < until,
                "commit of {child} kept failing: {e}"
            );
            retries += 1;
            // Back-off while the server is away; not a synchronisation.
            std::thread::sleep(Duration::from_millis(20));
        }
        writeln!(log, "{child}").unwrap();
    }
    writeln!(log, "# retries {retries}").unwrap();
    log.flush().unwrap();
    log.get_ref().sync_all().unwrap();
}

/// Drains until the stop file exists and nothing is pending. Each delivery
/// appends `B <n>`, the children and `E`, fsynced before `deliver` returns
/// `Ok`; a drain that then fails (its marks were not committed) appends
/// `X`: that batch may come again.
fn drain_until_told(store: &PgOutbox, out: &Path, stop: &Path) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .unwrap();
    let mut batch_no = 0u64;
    loop {
        let stopping = stop.exists();
        let mut delivered = false;
        let result = store.drain_with(PARENT, |records| {
            batch_no += 1;
            let mut text = format!("B {batch_no}\n");
            for r in records {
                text.push_str(&r.child_session_id);
                text.push('\n');
            }
            text.push_str("E\n");
            file.write_all(text.as_bytes())?;
            file.sync_data()?;
            delivered = true;
            Ok::<(), std::io::Error>(())
        });
        match result {
            Ok(d) if d.records.is_empty() => {
                if stopping && !store.has_pending(PARENT).unwrap_or(true) {
                    return;
                }
                // Idle back-off of a polling consumer; not a synchronisation.
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(_) => {}
            Err(e) => {
                if delivered {
                    file.write_all(b"X\n").unwrap();
                    file.sync_data().unwrap();
                }
                eprintln!("multi-host drainer: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn worker_test_name() -> String {
    let module = module_path!();
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    format!("{module}::multi_host_worker")
}

fn spawn(role: &str, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        worker_test_name().as_str(),
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE, role)
    .env_remove("OUTBOX_TEST_DATABASE_URL")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// One delivery a drainer wrote: its children, and whether the drain failed
/// after it (`X`).
struct Batch {
    children: Vec<String>,
    failed_after: bool,
}

fn read_batches(path: &Path) -> Vec<Batch> {
    let Ok(file) = File::open(path) else {
        return Vec::new();
    };
    let mut batches: Vec<Batch> = Vec::new();
    let mut open = false;
    for line in BufReader::new(file).lines() {
        let line = line.unwrap();
        if line.starts_with("B ") {
            batches.push(Batch {
                children: Vec::new(),
                failed_after: false,
            });
            open = true;
        } else if line == "E" {
            open = false;
        } else if line == "X" {
            if let Some(b) = batches.last_mut() {
                b.failed_after = true;
            }
        } else if open && let Some(b) = batches.last_mut() {
            b.children.push(line);
        }
    }
    batches
}

fn terminate_run(pg: &Pg, app: &str) -> usize {
    pg.client()
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
            &[&app],
        )
        .map_or(0, |rows| rows.len())
}

#[test]
fn producers_and_killed_drainers_over_tcp_lose_nothing() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    let Some(pg) = Pg::from_env("multi-host") else {
        return;
    };
    let seed = std::env::var("OUTBOX_MULTIHOST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                ^ u64::from(std::process::id())
        });
    println!("multi-host seed {seed} (replay with OUTBOX_MULTIHOST_SEED={seed})");
    let mut rng = Rng(seed | 1);
    let total: u64 = std::env::var("OUTBOX_MULTIHOST_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let per_producer = total.div_ceil(PRODUCERS as u64);
    let restart_cmd = std::env::var("OUTBOX_MULTIHOST_RESTART_CMD").ok();

    let schema = pg.fresh_schema();
    let app = format!("mh_{schema}");
    let url = with_param(&pg.url, &format!("application_name={app}"));
    PgOutbox::connect_schema(&url, &schema).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stop = dir.path().join("stop");
    let env = |out: &Path| {
        vec![
            ("OUTBOX_MH_URL", url.clone()),
            ("OUTBOX_MH_SCHEMA", schema.clone()),
            ("OUTBOX_MH_OUT", out.display().to_string()),
            ("OUTBOX_MH_STOP", stop.display().to_string()),
        ]
    };
    let started = Instant::now();
    let deadline = started + DEADLINE;
    let mut producers: Vec<(Child, PathBuf)> = (0..PRODUCERS)
        .map(|p| {
            let out = dir.path().join(format!("producer-{p}.out"));
            let mut e = env(&out);
            e.push(("OUTBOX_MH_ID", format!("p{p}")));
            e.push(("OUTBOX_MH_COUNT", per_producer.to_string()));
            (spawn("producer", &e), out)
        })
        .collect();
    let mut outputs: Vec<PathBuf> = Vec::new();
    let spawn_drainer = |slot: usize, generation: usize, outputs: &mut Vec<PathBuf>| {
        let out = dir.path().join(format!("drainer-{slot}-{generation}.out"));
        outputs.push(out.clone());
        (spawn("drainer", &env(&out)), out)
    };
    let mut generations = [0usize; DRAINERS];
    let mut drainers: Vec<(Child, PathBuf)> = (0..DRAINERS)
        .map(|s| spawn_drainer(s, 0, &mut outputs))
        .collect();
    let mut killed: BTreeSet<PathBuf> = BTreeSet::new();
    let mut dropped_once = false;
    let mut terminated = 0;

    let mut running = PRODUCERS;
    let mut round = 0u64;
    // The round at which every connection is dropped: early enough that
    // the producers are still running on a fast machine, and in any case
    // before the run ends (the loop goes on until it happened).
    let drop_at = 2 + rng.below(3);
    while running > 0 || !dropped_once {
        assert!(
            Instant::now() < deadline,
            "producers did not finish in time"
        );
        round += 1;
        // A random moment: the point of the test, not a synchronisation.
        std::thread::sleep(Duration::from_millis(20 + rng.below(120)));
        if !dropped_once && (round >= drop_at || running == 0) {
            dropped_once = true;
            match &restart_cmd {
                Some(cmd) => {
                    let status = Command::new("sh").args(["-c", cmd]).status().unwrap();
                    assert!(status.success(), "{cmd}: {status}");
                }
                None => terminated = terminate_run(&pg, &app),
            }
        }
        let slot = rng.below(DRAINERS as u64) as usize;
        let (child, out) = &mut drainers[slot];
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none_or(|c| c == 0),
            "drainer failed: {status}"
        );
        killed.insert(out.clone());
        generations[slot] += 1;
        drainers[slot] = spawn_drainer(slot, generations[slot], &mut outputs);
        running = 0;
        for (p, _) in &mut producers {
            match p.try_wait().unwrap() {
                None => running += 1,
                Some(status) => assert!(status.success(), "a producer failed: {status}"),
            }
        }
    }
    let produced_at = started.elapsed();
    File::create(&stop).unwrap();
    for (slot, (child, _)) in drainers.iter_mut().enumerate() {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "drainer {slot} failed: {status}");
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("drainer {slot} did not finish in time");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    let store = PgOutbox::connect_schema(&url, &schema).unwrap();
    let mut final_records: Vec<String> = Vec::new();
    loop {
        let d = store.drain(PARENT).unwrap();
        if d.records.is_empty() {
            break;
        }
        final_records.extend(d.records.into_iter().map(|r| r.child_session_id));
    }
    assert!(!store.has_pending(PARENT).unwrap());

    let mut committed = BTreeSet::new();
    let mut retries = 0u64;
    for (_, out) in &producers {
        for line in fs::read_to_string(out).unwrap().lines() {
            if let Some(n) = line.strip_prefix("# retries ") {
                retries += n.parse::<u64>().unwrap();
            } else {
                assert!(committed.insert(line.to_owned()), "{line} committed twice");
            }
        }
    }
    assert_eq!(committed.len() as u64, per_producer * PRODUCERS as u64);

    let mut delivered: BTreeMap<String, usize> = BTreeMap::new();
    let mut in_window: BTreeMap<String, usize> = BTreeMap::new();
    let (mut batches_total, mut failed_after) = (0, 0);
    for out in &outputs {
        let batches = read_batches(out);
        batches_total += batches.len();
        let last = batches.len().saturating_sub(1);
        for (i, b) in batches.iter().enumerate() {
            failed_after += usize::from(b.failed_after);
            let window = b.failed_after || (killed.contains(out) && i == last);
            for (j, c) in b.children.iter().enumerate() {
                if !committed.contains(c) {
                    // Only a torn last line of a killed drainer's last batch.
                    assert!(
                        killed.contains(out) && i == last && j + 1 == b.children.len(),
                        "{c} delivered (in {}) but never committed",
                        out.display()
                    );
                    continue;
                }
                *delivered.entry(c.clone()).or_default() += 1;
                if window {
                    *in_window.entry(c.clone()).or_default() += 1;
                }
            }
        }
    }
    for c in &final_records {
        assert!(
            committed.contains(c),
            "{c} drained at the end but never committed"
        );
        *delivered.entry(c.clone()).or_default() += 1;
    }
    let lost: Vec<&String> = committed
        .iter()
        .filter(|c| !delivered.contains_key(*c))
        .collect();
    assert!(
        lost.is_empty(),
        "{} committed records never delivered: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let mut duplicates = 0;
    for (c, &n) in &delivered {
        if n > 1 {
            duplicates += n - 1;
            let excused = in_window.get(c).copied().unwrap_or(0);
            assert!(
                n - 1 <= excused,
                "{c} delivered {n} times, only {excused} of them in the window (a killed \
                 drainer's last batch, or a batch whose drain failed after delivery)"
            );
        }
    }
    let dropped = match &restart_cmd {
        Some(cmd) => format!("server restarted once mid-run ({cmd})"),
        None => format!(
            "every connection of the run dropped once mid-run ({terminated} backends \
             terminated with pg_terminate_backend, standing in for a server restart)"
        ),
    };
    println!(
        "multi-host: {} records committed by {PRODUCERS} producer processes over TCP in \
         {produced_at:.1?} ({retries} commit retries); {batches_total} batches by {DRAINERS} \
         drainer processes ({failed_after} failed after delivery) + {} records in the final \
         drain; {} drainers SIGKILLed; {dropped}; lost 0; {duplicates} duplicate deliveries, \
         all in the documented window; total {:.1?}",
        committed.len(),
        final_records.len(),
        killed.len(),
        started.elapsed()
    );
    assert!(dropped_once, "the connections were dropped once");
}
