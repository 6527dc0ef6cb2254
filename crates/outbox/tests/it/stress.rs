//! Multi-process stress with real processes and `kill -9`.
//!
//! Four producer processes commit thousands of unique records to one parent
//! on one data root while three drainer processes drain it with
//! `drain_with`, each appending what it delivers to its own output file
//! (flushed and fsynced before `deliver` returns `Ok`). Drainers are killed
//! with SIGKILL at seeded-random moments and restarted. At the end a final
//! drain runs, and the test checks: delivered ∪ still pending = committed,
//! nothing delivered that was never committed, and every duplicate lies in
//! the documented window of `drain_with` — the last batch a killed drainer
//! was delivering (it may have been written out, the ledger not yet
//! durable). Duplicates are counted and printed.
//!
//! The worker processes are this test executable itself, re-run with
//! `OUTBOX_STRESS_ROLE` set: [`stress_worker`] is a test that does nothing
//! unless that variable is set.
//!
//! Knobs: `OUTBOX_STRESS_SEED` replays a run (the seed is printed);
//! `OUTBOX_STRESS_RECORDS` (default 2000) sets how many records are
//! committed in all; `OUTBOX_STRESS_DIR` puts the data root elsewhere than
//! the system temp directory (e.g. a tmpfs for speed).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outbox::Outbox;

use crate::util::{PARENT, record};
const PRODUCERS: usize = 4;
const DRAINERS: usize = 3;
const ROLE: &str = "OUTBOX_STRESS_ROLE";
/// The whole run must finish within this, or the test fails.
const DEADLINE: Duration = Duration::from_secs(300);

/// xorshift64*: a tiny seeded generator, enough for picking moments.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

// ---------------------------------------------------------------------------
// Worker processes
// ---------------------------------------------------------------------------

/// The body of a worker process; a no-op in a normal test run.
#[test]
fn stress_worker() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let root = PathBuf::from(std::env::var("OUTBOX_STRESS_ROOT").unwrap());
    let out = PathBuf::from(std::env::var("OUTBOX_STRESS_OUT").unwrap());
    match role.as_str() {
        "producer" => {
            let id = std::env::var("OUTBOX_STRESS_ID").unwrap();
            let count = env_u64("OUTBOX_STRESS_COUNT").unwrap();
            produce(&root, &out, &id, count);
        }
        "drainer" => drain_until_told(&root, &out),
        other => panic!("unknown role {other}"),
    }
}

/// Commits `count` records with unique children; logs each committed one.
fn produce(root: &Path, out: &Path, id: &str, count: u64) {
    let ob = Outbox::open(root).unwrap();
    let mut log = BufWriter::new(File::create(out).unwrap());
    for i in 0..count {
        let child = format!("{id}-{i}");
        ob.commit(PARENT, record(&child))
            .unwrap_or_else(|e| panic!("commit of {child} failed: {e}"));
        writeln!(log, "{child}").unwrap();
    }
    log.flush().unwrap();
    log.get_ref().sync_all().unwrap();
}

/// Drains with `drain_with` until the stop file exists and nothing is
/// pending. Each delivery appends `B <n>`, the children, and `E` to the
/// output file, fsynced before `deliver` returns `Ok`.
fn drain_until_told(root: &Path, out: &Path) {
    let ob = Outbox::open(root).unwrap();
    let stop = root.join("stop");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .unwrap();
    let mut batch_no = 0u64;
    loop {
        let stopping = stop.exists();
        let drained = ob
            .drain_with(PARENT, |records| {
                batch_no += 1;
                let mut text = format!("B {batch_no}\n");
                for r in records {
                    text.push_str(&r.child_session_id);
                    text.push('\n');
                }
                text.push_str("E\n");
                file.write_all(text.as_bytes())?;
                file.sync_data()
            })
            .unwrap_or_else(|e| panic!("drain failed: {e}"));
        if drained.records.is_empty() {
            if stopping && !ob.has_pending(PARENT).unwrap() {
                return;
            }
            // Idle back-off of a polling consumer (the real drain runs on a
            // heartbeat); not a synchronisation.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

// ---------------------------------------------------------------------------
// The orchestrating test
// ---------------------------------------------------------------------------

/// The libtest name of [`stress_worker`] in this binary: its module path
/// without the crate name (`stress::stress_worker`).
fn worker_test_name() -> String {
    let module = module_path!();
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    format!("{module}::stress_worker")
}

struct Drainer {
    child: Child,
    out: PathBuf,
}

fn spawn(role: &str, root: &Path, out: &Path, extra: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        worker_test_name().as_str(),
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE, role)
    .env("OUTBOX_STRESS_ROOT", root)
    .env("OUTBOX_STRESS_OUT", out)
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn spawn_drainer(root: &Path, outs: &Path, slot: usize, generation: usize) -> Drainer {
    let out = outs.join(format!("drainer-{slot}-{generation}.out"));
    Drainer {
        child: spawn("drainer", root, &out, &[]),
        out,
    }
}

/// One delivery a drainer wrote (a killed drainer may have written only part
/// of its last one).
#[derive(Debug)]
struct Batch {
    children: Vec<String>,
}

fn read_batches(path: &Path) -> Vec<Batch> {
    let Ok(file) = File::open(path) else {
        return Vec::new();
    };
    let mut batches = Vec::new();
    let mut current: Option<Batch> = None;
    for line in BufReader::new(file).lines() {
        let line = line.unwrap();
        if line.starts_with("B ") {
            batches.extend(current.take());
            current = Some(Batch {
                children: Vec::new(),
            });
        } else if line == "E" {
            batches.extend(current.take());
        } else if let Some(b) = current.as_mut() {
            // A torn last line (the kill fell mid-write) is a prefix of a
            // child id; it names no record and is ignored below.
            b.children.push(line);
        }
    }
    batches.extend(current);
    batches
}

fn wait_with_deadline(
    child: &mut Child,
    what: &str,
    deadline: Instant,
) -> std::process::ExitStatus {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn producers_and_killed_drainers_lose_nothing() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    let seed = env_u64("OUTBOX_STRESS_SEED").unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        t.as_nanos() as u64 ^ u64::from(std::process::id())
    });
    println!("stress seed {seed} (replay with OUTBOX_STRESS_SEED={seed})");
    let mut rng = Rng::new(seed);
    let total = env_u64("OUTBOX_STRESS_RECORDS").unwrap_or(2000);
    let per_producer = total.div_ceil(PRODUCERS as u64);

    let base = std::env::var_os("OUTBOX_STRESS_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::Builder::new()
        .prefix("outbox-stress-")
        .tempdir_in(base)
        .unwrap();
    let root = dir.path().join("root");
    let outs = dir.path().join("out");
    fs::create_dir_all(&outs).unwrap();
    Outbox::open(&root).unwrap();

    let started = Instant::now();
    let deadline = started + DEADLINE;
    let mut producers: Vec<(Child, PathBuf)> = (0..PRODUCERS)
        .map(|p| {
            let out = outs.join(format!("producer-{p}.out"));
            let child = spawn(
                "producer",
                &root,
                &out,
                &[
                    ("OUTBOX_STRESS_ID", format!("p{p}")),
                    ("OUTBOX_STRESS_COUNT", per_producer.to_string()),
                ],
            );
            (child, out)
        })
        .collect();
    let mut generations = [0usize; DRAINERS];
    let mut drainers: Vec<Drainer> = (0..DRAINERS)
        .map(|s| spawn_drainer(&root, &outs, s, 0))
        .collect();
    // Output files of drainers that were killed.
    let mut killed: Vec<PathBuf> = Vec::new();

    // Kill drainers at random moments while the producers run.
    let mut running = PRODUCERS;
    while running > 0 {
        assert!(
            Instant::now() < deadline,
            "producers did not finish in time"
        );
        // A random moment: the point of the test, not a synchronisation.
        std::thread::sleep(Duration::from_millis(5 + rng.below(80)));
        let slot = rng.below(DRAINERS as u64) as usize;
        let d = &mut drainers[slot];
        d.child.kill().unwrap();
        let status = d.child.wait().unwrap();
        // A drainer that exited on its own before the kill must have
        // succeeded (it only exits when told to stop).
        assert!(
            status.code().is_none_or(|c| c == 0),
            "drainer failed: {status}"
        );
        killed.push(d.out.clone());
        generations[slot] += 1;
        drainers[slot] = spawn_drainer(&root, &outs, slot, generations[slot]);

        running = 0;
        for (p, _) in &mut producers {
            match p.try_wait().unwrap() {
                None => running += 1,
                Some(status) => assert!(status.success(), "a producer failed: {status}"),
            }
        }
    }
    let produced_at = started.elapsed();

    // Tell the drainers to finish, and wait for them.
    File::create(root.join("stop")).unwrap();
    for (slot, d) in drainers.iter_mut().enumerate() {
        let status = wait_with_deadline(&mut d.child, &format!("drainer {slot}"), deadline);
        assert!(status.success(), "drainer {slot} failed: {status}");
    }

    // The final drain, in this process.
    let ob = Outbox::open(&root).unwrap();
    let mut final_records: Vec<String> = Vec::new();
    loop {
        let d = ob.drain(PARENT).unwrap();
        if d.records.is_empty() {
            break;
        }
        final_records.extend(d.records.into_iter().map(|r| r.child_session_id));
    }
    assert!(!ob.has_pending(PARENT).unwrap());

    // What was committed.
    let mut committed = BTreeSet::new();
    for (_, out) in &producers {
        for line in fs::read_to_string(out).unwrap().lines() {
            assert!(committed.insert(line.to_owned()), "{line} committed twice");
        }
    }
    assert_eq!(committed.len() as u64, per_producer * PRODUCERS as u64);

    // What was delivered, and where.
    let killed: BTreeSet<PathBuf> = killed.into_iter().collect();
    let mut delivered: BTreeMap<String, usize> = BTreeMap::new();
    // Children in the last batch of a killed drainer: the only place a
    // delivery may be repeated.
    let mut in_window: BTreeMap<String, usize> = BTreeMap::new();
    let mut batches_total = 0;
    let mut outputs: Vec<PathBuf> = fs::read_dir(&outs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("drainer-")
        })
        .collect();
    outputs.sort();
    for out in &outputs {
        let batches = read_batches(out);
        batches_total += batches.len();
        let last = batches.len().saturating_sub(1);
        for (i, b) in batches.iter().enumerate() {
            for c in &b.children {
                if !committed.contains(c) {
                    // Only a torn last line of a killed drainer may not be a
                    // committed child.
                    assert!(
                        killed.contains(out) && i == last && c == b.children.last().unwrap(),
                        "{c} delivered (in {}) but never committed",
                        out.display()
                    );
                    continue;
                }
                *delivered.entry(c.clone()).or_default() += 1;
                if killed.contains(out) && i == last {
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
            // Every delivery but one must be in a killed drainer's last
            // batch.
            let excused = in_window.get(c).copied().unwrap_or(0);
            assert!(
                n - 1 <= excused,
                "{c} delivered {n} times, only {excused} of them in a killed drainer's last batch"
            );
        }
    }
    let kills = killed.len();
    println!(
        "stress: {} records committed by {PRODUCERS} producers in {:.1?}; {} batches by drainers \
         + {} records in the final drain; {kills} drainers killed; lost 0; {duplicates} \
         duplicate deliveries, all in the last batch of a killed drainer; total {:.1?}",
        committed.len(),
        produced_at,
        batches_total,
        final_records.len(),
        started.elapsed()
    );
    assert!(duplicates <= in_window.values().sum::<usize>());
}
