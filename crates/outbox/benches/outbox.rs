//! Track A advisory benchmarks of the outbox (issue 4): trend numbers, never
//! a gate. The hard gates are `perf_outbox_drain_25` (Tier 1, WARM) and
//! `perf_outbox_drain_fsync_count` (Tier 2); these benches show how the cost
//! *grows*.
//!
//! Run with `cargo bench -p outbox` (under a minute of sampling on a 2-core
//! machine; every bench is capped by `max_time`). Filter with e.g.
//! `cargo bench -p outbox -- drain`; `OUTBOX_BENCH_DIR=/dev/shm` puts the
//! stubbed-fsync benches on a tmpfs (see [`stubbed_root`]).
//!
//! - `drain_stubbed_fsync(n)`: one drain of an inbox of `n` distinct-child
//!   records (distinct turns), fsync stubbed, so the drain's own CPU and
//!   page-cache work is measured: read and stage `n`, remove the inbox,
//!   persist an `n`-entry ledger. `n` = 1, 25, 100, 1000.
//! - `commit_stubbed_fsync(k)`: one commit of a new child into an inbox
//!   already holding `k` records, fsync stubbed. A commit rewrites the whole
//!   inbox (last-wins per child), so its cost is expected to grow linearly
//!   with `k`; committing `k` records one by one is then O(k²).
//! - `drain_real_fsync_25`: one drain of 25 with the real fsync (2 file + 2
//!   directory fsyncs) on the disk that holds the target directory.
//! - `commit_stubbed_fsync(k)` at k = 1 and k = 1000 are issue 14's "commit
//!   cost does not depend on what is pending" pair (goal: within 1.5×).
//! - `drain_25_with_history(h)`: one drain of 25 fresh turns from a parent
//!   whose consumed ledger already holds `h` turns, fsync stubbed; issue
//!   14's "drain cost does not depend on history" (goal: h = 100 000 within
//!   1.5× of h = 0). See [`drain_25_with_history`] for how the history is
//!   seeded and how much it grows while sampled.
//!
//! `cargo xtask compare` (`bench/`, `docs/compare.md`) runs these shapes
//! against a SQLite outbox side by side; these benches are the quick,
//! ours-only view of the same growth.
//!
//! # Harness: divan
//!
//! Divan (`divan = "0.1"`) rather than criterion: it is maintained, much
//! lighter to build (no plotting or HTML report stack), has untimed
//! per-iteration setup (`with_inputs` + `bench_local_values`), and prints one
//! row per argument with fastest / slowest / median / mean side by side, so
//! the growth with `n` (linear or quadratic) is visible in one table. The
//! `ItemsCount` counter adds a records-per-second column: constant
//! throughput across `n` means linear growth.
//!
//! # Fixtures
//!
//! A drain and a commit consume their fixture, so every sample runs exactly
//! one operation (`sample_size = 1`) after an untimed setup that restores the
//! fixture on disk: the inbox unlinked and written anew from a template, the
//! WAL and the consumed ledger (`runtime/consumed-turns/<parent>.json`)
//! removed. One parent id per bench, reset in place, so the directories do
//! not grow from sample to sample.
//!
//! The inbox templates are built by *stamping records directly* (not by
//! committing them one by one, which rewrites the inbox each time and costs
//! O(N²) for N = 1000): each record is stamped as `commit` stamps it
//! (`target_session_id`, `turn_fingerprint`, `fp`) and encoded with
//! `outbox::format::encode_line`. [`inbox_template`] checks once that its
//! stamping matches a real `commit` of the same record, and every timed
//! drain asserts it delivered exactly `n` records, so a fixture that no
//! longer exercises the full drain fails loudly instead of timing a no-op.

use std::path::{Path, PathBuf};
use std::time::Duration;

use divan::Bencher;
use divan::counter::ItemsCount;
use outbox::format::encode_line;
use outbox::{Outbox, Record, event_fingerprint, turn_fingerprint, turn_id};
use tempfile::TempDir;

fn main() {
    divan::main();
}

/// The parent whose inbox every bench fills and drains.
const PARENT: &str = "bench-parent";

/// Stubbed-fsync inbox sizes: one child, the representative fan-out of the
/// Tier 1 gate (25), and two larger ones to expose the growth.
const SIZES: [usize; 4] = [1, 25, 100, 1000];

/// A completion record of child `i`, with a summary of a realistic size
/// (~200 bytes), not yet stamped.
fn record(i: usize) -> Record {
    let mut r = Record::finished(format!("child-{i:04}"), "success");
    r.child_title = format!("worker {i}");
    r.profile = "default".into();
    r.from_status = "running".into();
    r.to_status = "waiting".into();
    r.done_summary = format!(
        "child {i}: wrote the parser, added tests for the bounded line reader, \
         fixed the RFC 3339 offset handling and left a note about the ledger TTL \
         for the reviewer; all checks green."
    );
    r
}

/// `r` stamped as `Outbox::commit` stamps it for `parent` (the summary is
/// below the cap and the timestamp is already set by `Record::finished`).
fn stamped(mut r: Record, parent: &str) -> Record {
    r.target_session_id = parent.to_owned();
    r.turn_fingerprint = turn_fingerprint(&r);
    r.fp = event_fingerprint(&r);
    r
}

/// The bytes of an inbox holding `n` committed records of distinct children
/// (children `0..n`, so distinct turns).
fn inbox_template(n: usize) -> Vec<u8> {
    // Once per template: the direct stamping must match what the public
    // commit path writes, or the fixture would drift from reality.
    let check = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open_with(check.path(), stdio_stubbed()).expect("open the check outbox");
    let r = record(0);
    let committed = outbox.commit(PARENT, r.clone()).expect("commit");
    assert_eq!(
        committed.record,
        stamped(r, PARENT),
        "stamping drifted from commit"
    );

    let mut bytes = Vec::new();
    for i in 0..n {
        bytes.extend(encode_line(&stamped(record(i), PARENT)).expect("encode"));
    }
    bytes
}

/// The outbox root of the stubbed-fsync benches: a tempdir under
/// `$OUTBOX_BENCH_DIR` when set, else under the system temp dir, the same
/// place the Tier 1 gate `perf_outbox_drain_25` uses, so the two are
/// comparable. With fsync stubbed, what remains of the disk is the file
/// system's own metadata work (journal, block allocation); on a machine
/// shared with other disk-heavy work that adds spread to the larger sizes.
/// `OUTBOX_BENCH_DIR=/dev/shm` (a tmpfs) factors it out as well.
fn stubbed_root() -> TempDir {
    match std::env::var_os("OUTBOX_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).expect("tempdir in $OUTBOX_BENCH_DIR"),
        None => tempfile::tempdir().expect("tempdir"),
    }
}

fn stdio_stubbed() -> outbox::StdIo {
    outbox::StdIo::with_fsync(testutil::noop_fsync())
}

/// One outbox root with [`PARENT`]'s inbox resettable to a template.
struct Fixture<I: outbox::io::Io> {
    // Kept alive for the bench; removed on drop.
    _dir: TempDir,
    outbox: Outbox<I>,
    inbox: PathBuf,
    wal: PathBuf,
    ledger: PathBuf,
    template: Vec<u8>,
}

impl<I: outbox::io::Io> Fixture<I> {
    fn new(dir: TempDir, io: I, n: usize) -> Self {
        let outbox = Outbox::open_with(dir.path(), io).expect("open outbox");
        let paths = outbox.paths(PARENT).expect("paths");
        Self {
            _dir: dir,
            outbox,
            inbox: paths.inbox,
            wal: paths.wal,
            ledger: paths.ledger,
            template: inbox_template(n),
        }
    }

    /// Untimed: the inbox holds exactly the template, no WAL, no ledger.
    fn reset(&self) {
        remove_if_exists(&self.wal);
        remove_if_exists(&self.ledger);
        // Unlink, then write a new file; never truncate the old one in place:
        // on ext4 a truncate-and-rewrite starts writeback of the file
        // (`auto_da_alloc`), and the timed commit's rename over the inbox (or
        // the drain's unlink of it) would then wait for that I/O, timing the
        // setup's disk traffic instead of the operation.
        remove_if_exists(&self.inbox);
        if !self.template.is_empty() {
            std::fs::write(&self.inbox, &self.template).expect("write inbox");
        }
    }

    /// Untimed, real-disk variant: [`reset`](Self::reset), then make the
    /// setup's own writes and unlinks durable, so the timed drain's fsyncs
    /// do not also pay for flushing the setup.
    fn reset_durably(&self) {
        self.reset();
        std::fs::File::open(&self.inbox)
            .and_then(|f| f.sync_all())
            .expect("fsync inbox");
        for dir in [&self.inbox, &self.wal, &self.ledger].map(|p| p.parent().expect("parent")) {
            std::fs::File::open(dir)
                .and_then(|f| f.sync_all())
                .expect("fsync directory");
        }
    }
}

fn remove_if_exists(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("remove {}: {e}", path.display()),
    }
}

/// Drain of `n` distinct-child records, fsync stubbed.
#[divan::bench(args = SIZES, sample_size = 1, sample_count = 200, max_time = Duration::from_secs(4))]
fn drain_stubbed_fsync(bencher: Bencher, n: usize) {
    let fx = Fixture::new(stubbed_root(), stdio_stubbed(), n);
    bencher
        .counter(ItemsCount::new(n))
        .with_inputs(|| fx.reset())
        .bench_local_values(|()| {
            let drained = fx.outbox.drain(PARENT).expect("drain");
            assert_eq!(drained.records.len(), n, "the drain must deliver all");
            drained
        });
}

/// Commit of one new child into an inbox already holding `k` records,
/// fsync stubbed.
#[divan::bench(args = [0, 1, 25, 100, 1000], sample_size = 1, sample_count = 200, max_time = Duration::from_secs(4))]
fn commit_stubbed_fsync(bencher: Bencher, k: usize) {
    let fx = Fixture::new(stubbed_root(), stdio_stubbed(), k);
    bencher
        .with_inputs(|| {
            fx.reset();
            // A child not in the template, so the inbox grows to k + 1.
            record(1_000_000)
        })
        .bench_local_values(|r| fx.outbox.commit(PARENT, r).expect("commit"));
}

/// Drain of 25 with the real fsync, on the disk holding the target
/// directory: the outbox root is a tempdir under `CARGO_TARGET_TMPDIR`
/// (`<target>/tmp`), not under `/tmp`, which is a tmpfs on some machines
/// and CI runners (an fsync there costs nothing). COLD by nature: device
/// latency dominates and varies ~100× between disks, so read it as "what
/// this disk costs", not as a trend of the code.
#[divan::bench(sample_size = 1, sample_count = 40, max_time = Duration::from_secs(10))]
fn drain_real_fsync_25(bencher: Bencher) {
    const N: usize = 25;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir in target");
    let fx = Fixture::new(dir, outbox::StdIo::new(), N);
    bencher
        .counter(ItemsCount::new(N))
        .with_inputs(|| fx.reset_durably())
        .bench_local_values(|()| {
            let drained = fx.outbox.drain(PARENT).expect("drain");
            assert_eq!(drained.records.len(), N, "the drain must deliver all");
            drained
        });
}

/// Consumed turns a history fixture is built with: none, a busy parent's
/// few days, and half of a busy parent's 14-day TTL (issue 14).
const HISTORIES: [usize; 3] = [0, 10_000, 100_000];

/// Samples of [`drain_25_with_history`]: each adds 25 turns to the history,
/// so the history grows by at most 25 × (this + divan's warm-up samples).
const HISTORY_SAMPLES: u32 = 40;

/// `n` records of children `0..n` for turn `turn`: distinct children, and a
/// `last_output_hash` no other turn has, so every record is a new turn.
fn fresh_turn(n: usize, turn: usize) -> impl Iterator<Item = Record> {
    (0..n).map(move |i| {
        let mut r = record(i);
        r.last_output_hash = format!("turn-{turn}");
        r
    })
}

/// Gives `parent` a consumed history of `h` turns (keys `child-NNNN@...`
/// of turns no record of the bench uses) before any sample.
///
/// The ledger is written as agent-deck writes it (a JSON object of turn
/// key → Unix second: the format every version of the outbox must keep
/// reading, and which a redesigned one migrates on first use); then a
/// commit of a seeded turn must report `already_consumed` (the outbox
/// read it), and one untimed commit and drain let the outbox adopt it, so
/// a migration, if any, is not timed. Building it through the API instead
/// costs O(h²) while every commit reads the whole ledger (373 s for
/// 10 000 turns on the project's machine, hours for 100 000).
fn seed_history<I: outbox::io::Io>(outbox: &Outbox<I>, parent: &str, h: usize) {
    if h == 0 {
        return;
    }
    let ledger = outbox.paths(parent).expect("paths").ledger;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let seeded: Vec<Record> = (0..h).flat_map(|t| fresh_turn(1, usize::MAX - t)).collect();
    let entries: serde_json::Map<String, serde_json::Value> = seeded
        .iter()
        .map(|r| (turn_id(r).expect("a completion with a hash"), now.into()))
        .collect();
    std::fs::create_dir_all(ledger.parent().expect("parent")).expect("ledger directory");
    std::fs::write(&ledger, serde_json::to_vec(&entries).expect("encode")).expect("write ledger");
    let again = outbox.commit(parent, seeded[0].clone()).expect("commit");
    assert!(again.already_consumed, "the seeded ledger was not read");
    outbox
        .commit(parent, record(0))
        .expect("commit the adopting record");
    assert_eq!(outbox.drain(parent).expect("drain").records.len(), 1);
}

/// Drain of 25 fresh turns from a parent with `h` consumed turns of
/// history, fsync stubbed.
///
/// The history is seeded once, untimed ([`seed_history`]). Each sample's
/// untimed setup commits 25 fresh turns; the timed drain delivers them and
/// adds them to the history, so it grows from `h` by 25 per sample
/// (≤ 1 000 over the bench: 10 % of the 10 000 case, 1 % of the 100 000
/// one). For `h = 0` each sample uses a new parent, warmed by one untimed
/// commit and drain so its lock files exist as in steady state.
#[divan::bench(args = HISTORIES, sample_size = 1, sample_count = HISTORY_SAMPLES, max_time = Duration::from_secs(20))]
fn drain_25_with_history(bencher: Bencher, h: usize) {
    const N: usize = 25;
    let dir = stubbed_root();
    let outbox = Outbox::open_with(dir.path(), stdio_stubbed()).expect("open outbox");
    seed_history(&outbox, PARENT, h);
    let mut turn = 0usize;
    let mut commit_turn = |parent: &str, n: usize| {
        turn += 1;
        for r in fresh_turn(n, turn) {
            outbox.commit(parent, r).expect("commit");
        }
    };
    let mut fresh_parents = 0usize;
    bencher
        .counter(ItemsCount::new(N))
        .with_inputs(|| {
            let parent = if h == 0 {
                fresh_parents += 1;
                let parent = format!("{PARENT}-{fresh_parents}");
                commit_turn(&parent, 1);
                outbox.drain(&parent).expect("warm-up drain");
                parent
            } else {
                PARENT.to_owned()
            };
            commit_turn(&parent, N);
            parent
        })
        .bench_local_values(|parent| {
            let drained = outbox.drain(&parent).expect("drain");
            assert_eq!(drained.records.len(), N, "the drain must deliver all");
            drained
        });
}
