//! A deterministic, seeded simulation of the whole outbox, checked against a
//! reference model of its contract (in the spirit of FoundationDB's
//! simulation testing and TigerBeetle's VOPR).
//!
//! One seed builds one world: a few parents (always a pair of ids that a
//! lossy sanitiser would merge, and the longest id the outbox accepts), two
//! producers per parent with their own children, a plain drainer, a
//! `drain_with` drainer whose deliveries fail at random, and an observer
//! that peeks. Each actor runs on its own thread with its own outbox value
//! (like a process), and the [`sched`] gate lets exactly one of them
//! perform one `Io` operation at a time, chosen by the seed. Between
//! operations the world may cut the power (and reboot into a random legal
//! surviving image of [`CrashIo`]), arm or disarm a fault of [`FaultIo`]
//! (ENOSPC/EIO/EACCES, once or persistent), step the clock backwards or
//! forwards, or, when nothing runs, check that `peek` and `has_pending`
//! agree with what a drain delivers (and create nothing), sweep stale
//! records, or forget a child. Commits repeat identical turns and make real
//! second turns with the same summary. The [`model`] checks every
//! delivery, and at the end, after a final drain without faults, that
//! nothing owed is missing.
//!
//! **Discipline** (after TigerBeetle's VOPR):
//! - *swarm testing*: each seed draws its own rates of crashes, faults,
//!   clock steps, checks and tasks, how many faults persist or write half
//!   of a failing write (the others write nothing), how many deliveries
//!   fail, how many commits use an unusual child id (case, NFC/NFD, the
//!   longest, padded with whitespace: refused), and how many callbacks
//!   drain again through a second handle (must be `Reentrant`) ([`Swarm`]);
//! - *a typed oracle*: failed drains are judged by their
//!   [`RecordsState`], never their message;
//! - *determinism*: nonces of file names come from the seed (the `Io`
//!   seam's `nonce`), and a digest of the whole run must be equal for two
//!   runs of one seed;
//! - `cargo test` runs [`DEFAULT_SEEDS`] fixed seeds, every seed in
//!   [`REGRESSIONS`] (each failed once), and one random seed, printed
//!   first with its replay command.
//!
//! `cargo xtask sim --seeds N [--seed S]` runs long campaigns (release
//! build, `OUTBOX_SIM_SEEDS`, `OUTBOX_SIM_FIRST_SEED`, `OUTBOX_SIM_SEED`).
//! A failing seed prints the one-line command that replays it.

mod model;
mod sched;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, DefaultHasher, Hash, Hasher};
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outbox::{DrainWithError, Drained, Outbox, ParentPaths, Record, RecordsState};
use outbox_sim::{CrashIo, Fault, FaultIo, FaultPlan, OpKind};
use parking_lot::Mutex;

use model::{ClockWindow, CommitStatus, Model, Tally};
use sched::{Gate, Nonces, Park, SchedIo, runnable};

/// Seeds `cargo test` runs (a few seconds on 2 cores).
pub const DEFAULT_SEEDS: u64 = 48;

const ROOT: &str = "/data";

/// splitmix64: small, fast, and good enough to drive a simulation.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// The seed's own mix of events (swarm testing, as TigerBeetle's VOPR
/// does): each seed draws how often it crashes, faults, steps the clock,
/// checks and starts tasks, how faults write, how often deliveries fail
/// and how often ids take an unusual form, so that some seeds explore
/// corners (no crash at all, a disk that always fails, a clock that never
/// stops moving) that one fixed mix visits rarely.
#[derive(Clone, Copy, Debug)]
pub struct Swarm {
    /// Per mille of steps: cut the power.
    crash: usize,
    /// Per mille: arm a fault (when none is).
    arm_fault: usize,
    /// Per mille: disarm the fault (when one is).
    disarm_fault: usize,
    /// Per mille: step the clock.
    clock: usize,
    /// Per mille: a quiescent check, sweep or forget (when nothing runs).
    housekeeping: usize,
    /// Per mille: start a task on an idle actor.
    start_task: usize,
    /// Percent of faults that persist (a disk that stays full or broken).
    persistent: u64,
    /// Percent of faults that write half of a failing write (the rest
    /// write nothing).
    partial_write: u64,
    /// Percent of `drain_with` deliveries that fail.
    delivery_failure: u64,
    /// Percent of commits whose child id takes an unusual form.
    identity_variant: u64,
    /// Percent of `drain_with` callbacks that drain the same parent
    /// through a second handle.
    reentry: u64,
}

impl Swarm {
    fn draw(rng: &mut Rng) -> Swarm {
        let mut upto = |n: usize| rng.below(n + 1);
        Swarm {
            crash: upto(12),
            arm_fault: upto(20),
            disarm_fault: 5 + upto(55),
            clock: upto(15),
            housekeeping: 10 + upto(50),
            start_task: 150 + upto(350),
            persistent: upto(60) as u64,
            partial_write: upto(60) as u64,
            delivery_failure: upto(60) as u64,
            identity_variant: upto(30) as u64,
            reentry: upto(20) as u64,
        }
    }
}

/// The simulated wall clock every outbox of the world reads.
#[derive(Clone)]
struct Clock(Arc<Mutex<SystemTime>>);

impl Clock {
    fn now(&self) -> SystemTime {
        *self.0.lock()
    }

    fn advance(&self, by: Duration) {
        let mut t = self.0.lock();
        *t += by;
    }

    fn step_back(&self, by: Duration) {
        let mut t = self.0.lock();
        *t = t.checked_sub(by).unwrap_or(UNIX_EPOCH);
    }
}

/// What an actor does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Commits turns of its own children to one parent.
    Producer { parent: usize, first_child: usize },
    /// Drains one parent with plain `drain`.
    Drainer { parent: usize },
    /// Drains one parent with `drain_with`, failing some deliveries.
    DrainerWith { parent: usize },
    /// Peeks and asks `has_pending` of every parent.
    Observer,
}

/// What a task returned.
#[derive(Debug)]
enum Outcome {
    Commit(Result<(), String>),
    Drain(Result<Drained, Failure>),
    DrainWith {
        /// The callback's verdict, when it ran.
        delivered: Option<bool>,
        /// What a drain through a second handle from inside the callback
        /// returned, when it tried one (it must be `Reentrant`).
        reentry: Option<String>,
        result: Result<Drained, Failure>,
    },
    Read,
}

/// A failed drain: its message (for traces), the typed state of its
/// records ([`RecordsState`]) and the records the error carries.
#[derive(Debug)]
struct Failure {
    message: String,
    state: RecordsState,
    records: Vec<Record>,
}

impl Failure {
    fn of(e: &outbox::Error) -> Failure {
        Failure {
            message: e.to_string(),
            state: e.records_state(),
            records: e.records().to_vec(),
        }
    }
}

/// A task in flight.
struct InFlight {
    actor: usize,
    kind: TaskKind,
    thread: JoinHandle<Outcome>,
    /// What the `drain_with` callback was handed.
    handed: Arc<Mutex<Option<Vec<Record>>>>,
    /// Commits: the model's commit number.
    commit: Option<usize>,
    /// Drains: the model's snapshot when the drain began.
    snapshot: BTreeMap<String, usize>,
    /// Ops the actor had performed before the task, to find its own.
    ops_before: usize,
    /// The clock readings the actor's outbox took during the task.
    readings: Readings,
    /// The index of the clock's value when the task began
    /// ([`Model::clock_index`]).
    clock_from: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TaskKind {
    Commit { parent: usize },
    Drain { parent: usize },
    DrainWith { parent: usize },
    Read,
}

struct Actor {
    role: Role,
    io: SchedIo,
    outbox: Outbox<SchedIo>,
    /// The clock readings its outbox took during the current task.
    readings: Readings,
}

/// The clock readings an outbox took, if any.
type Readings = Arc<Mutex<Option<ClockWindow>>>;

/// Figures of one seed or a campaign.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Seeds run.
    pub seeds: u64,
    /// `Io` operations performed by actors.
    pub ops: u64,
    /// Tasks (commits, drains, reads) started.
    pub tasks: u64,
    /// Power cuts.
    pub crashes: u64,
    /// Faults armed.
    pub faults: u64,
    /// Clock steps (backwards or forwards).
    pub clock_steps: u64,
    /// Quiescent consistency checks.
    pub checks: u64,
    /// What the windows allowed.
    pub lost_in_window: u64,
    /// Duplicates inside drain_with's window.
    pub duplicated_in_window: u64,
    /// Turns delivered again once the clock had risen past the ledger's
    /// TTL since they were consumed, or after a corrupt ledger.
    pub duplicated_after_ttl: u64,
    /// Records delivered.
    pub delivered: u64,
    /// The run's digest ([`World::record`]); summed over a campaign.
    pub digest: u64,
}

impl Stats {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Stats) {
        self.seeds += other.seeds;
        self.ops += other.ops;
        self.tasks += other.tasks;
        self.crashes += other.crashes;
        self.faults += other.faults;
        self.clock_steps += other.clock_steps;
        self.checks += other.checks;
        self.lost_in_window += other.lost_in_window;
        self.duplicated_in_window += other.duplicated_in_window;
        self.duplicated_after_ttl += other.duplicated_after_ttl;
        self.delivered += other.delivered;
        self.digest = self.digest.wrapping_add(other.digest);
    }
}

/// The ids a lossy mapping of ids to file names would merge, in pairs.
const COLLIDING: [[&str; 2]; 3] = [
    ["team/alpha", "team_alpha"],
    ["my session", "my_session"],
    ["a..b", "a_b"],
];

/// The longest parent id the outbox accepts, found by asking it.
fn longest_id() -> String {
    let (mut lo, mut hi) = (1usize, 4096usize);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if ParentPaths::new(Path::new(ROOT), &"p".repeat(mid)).is_ok() {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    "p".repeat(lo)
}

struct World {
    seed: u64,
    rng: Rng,
    clock: Clock,
    disk: CrashIo,
    faults: FaultIo<CrashIo>,
    fault_armed: bool,
    gate: Arc<Gate>,
    parents: Vec<String>,
    actors: Vec<Actor>,
    in_flight: Vec<InFlight>,
    model: Model,
    stats: Stats,
    /// Per producer: how many turns it committed.
    turns: BTreeMap<usize, u64>,
    /// The power is being cut: tasks still in flight are finishing.
    crashing: bool,
    /// Print every event on stderr (`OUTBOX_SIM_TRACE=1`, with a replay).
    trace: bool,
    /// This seed's mix of events.
    swarm: Swarm,
    /// The nonces of every outbox's file names, from the seed.
    nonces: Nonces,
    /// A hash of the whole run (every operation, outcome, crash image and
    /// clock step): the same seed must give the same digest.
    digest: DefaultHasher,
}

const CHILDREN_PER_PRODUCER: usize = 2;

fn child_name(parent: usize, n: usize) -> String {
    format!("p{parent}-child-{n}")
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = Rng::new(seed);
        let swarm = Swarm::draw(&mut rng);
        let pair = COLLIDING[rng.below(COLLIDING.len())];
        let mut parents: Vec<String> = pair.iter().map(|s| s.to_string()).collect();
        if rng.chance(50) {
            parents.push(longest_id());
        }
        // Some worlds boot at 1970 and get corrected later.
        let start = if rng.chance(10) {
            UNIX_EPOCH + Duration::from_secs(1_000)
        } else {
            UNIX_EPOCH + Duration::from_secs(1_780_000_000)
        };
        let clock = Clock(Arc::new(Mutex::new(start)));
        let disk = CrashIo::new();
        disk.install_dir(ROOT);
        let faults = FaultIo::new(disk.clone());
        let mut roles = Vec::new();
        for p in 0..parents.len() {
            roles.push(Role::Producer {
                parent: p,
                first_child: 0,
            });
            roles.push(Role::Producer {
                parent: p,
                first_child: CHILDREN_PER_PRODUCER,
            });
            roles.push(Role::Drainer { parent: p });
            roles.push(Role::DrainerWith { parent: p });
        }
        roles.push(Role::Observer);
        let mut world = World {
            seed,
            rng,
            clock,
            disk,
            faults,
            fault_armed: false,
            gate: Arc::new(Gate::default()),
            parents,
            actors: Vec::new(),
            in_flight: Vec::new(),
            model: Model::default(),
            stats: Stats {
                seeds: 1,
                ..Stats::default()
            },
            turns: BTreeMap::new(),
            crashing: false,
            trace: std::env::var_os("OUTBOX_SIM_TRACE").is_some(),
            swarm,
            nonces: Nonces::new(seed),
            digest: DefaultHasher::new(),
        };
        world.actors = roles
            .into_iter()
            .enumerate()
            .map(|(i, role)| world.new_actor(i, role))
            .collect();
        let start = world.clock.now();
        world.model.clock_moved(start);
        world
    }

    fn new_actor(&self, index: usize, role: Role) -> Actor {
        let io = SchedIo::new(
            self.faults.clone(),
            Some((Arc::clone(&self.gate), index)),
            self.nonces.clone(),
        );
        let clock = self.clock.clone();
        let readings = Readings::default();
        let seen = Arc::clone(&readings);
        let outbox = Outbox::open_with(ROOT, io.clone())
            .expect("open the simulated outbox")
            .with_clock(move || {
                let now = clock.now();
                let mut seen = seen.lock();
                match seen.as_mut() {
                    Some(window) => window.saw(now),
                    None => *seen = Some(ClockWindow::at(now)),
                }
                now
            });
        io.engage();
        Actor {
            role,
            io,
            outbox,
            readings,
        }
    }

    /// An outbox for the world's own checks: same disk, no gate.
    fn direct(&self) -> Outbox<SchedIo> {
        let clock = self.clock.clone();
        Outbox::open_with(
            ROOT,
            SchedIo::new(self.faults.clone(), None, self.nonces.clone()),
        )
        .expect("open the simulated outbox")
        .with_clock(move || clock.now())
    }

    fn fail(&self, what: &str) -> String {
        format!(
            "seed {} failed: {what}\nreplay: cargo xtask sim --seed {}   \
             (or OUTBOX_SIM_SEED={} cargo test -p outbox --test it sim:: -- --nocapture)",
            self.seed, self.seed, self.seed
        )
    }

    fn note(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[sim {}] {}", self.seed, what());
        }
    }

    /// Adds `event` to the run's digest.
    fn record(&mut self, event: impl Hash) {
        event.hash(&mut self.digest);
    }

    fn busy(&self, actor: usize) -> bool {
        self.in_flight.iter().any(|t| t.actor == actor)
    }

    // ----------------------------------------------------------------------
    // Tasks
    // ----------------------------------------------------------------------

    fn start_task(&mut self, actor: usize) {
        let role = self.actors[actor].role;
        let outbox = self.actors[actor].outbox.clone();
        let handed: Arc<Mutex<Option<Vec<Record>>>> = Arc::default();
        let ops_before = self.actors[actor].io.ops().len();
        let names = self.parents.clone();
        let mut commit = None;
        let mut snapshot = BTreeMap::new();
        let gate = Arc::clone(&self.gate);
        let (kind, body): (TaskKind, Box<dyn FnOnce() -> Outcome + Send>) = match role {
            Role::Producer {
                parent,
                first_child,
            } => {
                let child = child_name(parent, first_child + self.rng.below(CHILDREN_PER_PRODUCER));
                let child = self.variant_of(child);
                let record = self.next_record(parent, &child);
                commit = Some(self.model.begin_commit(parent, &record));
                self.note(|| {
                    format!(
                        "commit {commit:?} is {:?}",
                        summaries(std::slice::from_ref(&record))
                    )
                });
                let id = names[parent].clone();
                (
                    TaskKind::Commit { parent },
                    Box::new(move || {
                        Outcome::Commit(
                            outbox
                                .commit(&id, record)
                                .map(drop)
                                .map_err(|e| e.to_string()),
                        )
                    }),
                )
            }
            Role::Drainer { parent } => {
                snapshot = self.model.snapshot(parent);
                let id = names[parent].clone();
                (
                    TaskKind::Drain { parent },
                    Box::new(move || {
                        Outcome::Drain(outbox.drain(&id).map_err(|e| Failure::of(&e)))
                    }),
                )
            }
            Role::DrainerWith { parent } => {
                snapshot = self.model.snapshot(parent);
                let id = names[parent].clone();
                let fail = self.rng.chance(self.swarm.delivery_failure);
                let slot = Arc::clone(&handed);
                // Sometimes the callback drains the same parent through a
                // second handle of the same process: that must be
                // `Error::Reentrant`, never a wait for itself.
                let second = self
                    .rng
                    .chance(self.swarm.reentry)
                    .then(|| Outbox::open_lazy_with(ROOT, self.actors[actor].io.clone()));
                (
                    TaskKind::DrainWith { parent },
                    Box::new(move || {
                        let mut delivered = None;
                        let mut reentry = None;
                        let result = outbox.drain_with(&id, |records| {
                            if let Some(second) = &second {
                                reentry = Some(format!("{:?}", second.drain(&id).map(drop)));
                            }
                            *slot.lock() = Some(records.to_vec());
                            delivered = Some(!fail);
                            if fail {
                                Err("the parent was busy")
                            } else {
                                Ok(())
                            }
                        });
                        let result = result.map_err(|e| match &e {
                            DrainWithError::Outbox(inner) => Failure::of(inner),
                            _ => Failure {
                                message: e.to_string(),
                                state: e.records_state(),
                                records: Vec::new(),
                            },
                        });
                        Outcome::DrainWith {
                            delivered,
                            result,
                            reentry,
                        }
                    }),
                )
            }
            Role::Observer => {
                let id = names[self.rng.below(names.len())].clone();
                (
                    TaskKind::Read,
                    Box::new(move || {
                        let _ = outbox.peek(&id);
                        let _ = outbox.has_pending(&id);
                        Outcome::Read
                    }),
                )
            }
        };
        let readings = Arc::clone(&self.actors[actor].readings);
        *readings.lock() = None;
        let clock_from = self.model.clock_index();
        self.clock
            .advance(Duration::from_millis(self.rng.below(3_000) as u64));
        self.model.clock_moved(self.clock.now());
        let thread = std::thread::spawn(move || {
            let out = body();
            gate.done(actor);
            out
        });
        self.stats.tasks += 1;
        self.note(|| format!("start {kind:?} on actor {actor} (commit {commit:?})"));
        self.in_flight.push(InFlight {
            actor,
            kind,
            thread,
            handed,
            commit,
            snapshot,
            ops_before,
            readings,
            clock_from,
        });
        self.gate.wait_parked(actor);
    }

    /// `base`, or now and then (the seed's `identity_variant`) an unusual
    /// form of it: its upper case and a NFC or NFD accented name (other
    /// children: ids are exact bytes), the longest id allowed, or the id
    /// padded with whitespace (refused by every commit).
    fn variant_of(&mut self, base: String) -> String {
        if !self.rng.chance(self.swarm.identity_variant) {
            return base;
        }
        match self.rng.below(5) {
            0 => base.to_uppercase(),
            1 => format!("{base}-caf\u{e9}"),
            2 => format!("{base}-cafe\u{301}"),
            3 => {
                let mut id = format!("{base}-");
                while id.len() < outbox::MAX_FIELD_BYTES {
                    id.push('L');
                }
                id
            }
            _ if self.rng.chance(50) => format!("{base} "),
            _ => format!("\t{base}"),
        }
    }

    /// The next turn of `child`: usually a new one; sometimes an identical
    /// repeat of its last turn, or a real second turn with the same summary
    /// and a new output hash.
    fn next_record(&mut self, parent: usize, child: &str) -> Record {
        let no = self.model.next_commit();
        let last = self.model.last_commit_of(parent, child);
        let mut r = Record::finished(child, "success");
        r.timestamp = outbox::Timestamp::default(); // stamped by the outbox's clock
        r.done_summary = format!("c{no}");
        match (last, self.rng.below(10)) {
            (Some(prev), 0) => {
                // The same turn again: same summary, same hash.
                r.done_summary = format!("c{prev}");
                r.last_output_hash = self.prev_hash(prev);
            }
            (Some(prev), 1) => {
                // A real second turn that happens to say the same thing.
                r.done_summary = format!("c{prev}");
                r.last_output_hash = format!("h{no}");
            }
            _ => {
                if self.rng.chance(50) {
                    r.last_output_hash = format!("h{no}");
                }
            }
        }
        *self.turns.entry(parent).or_default() += 1;
        r
    }

    fn prev_hash(&self, prev: usize) -> String {
        self.model.hash_of(prev)
    }

    /// Lets one runnable actor perform one operation; returns false when
    /// nothing is in flight.
    fn step_one(&mut self) -> Result<bool, String> {
        if self.in_flight.is_empty() {
            return Ok(false);
        }
        let mut candidates = Vec::new();
        for (i, t) in self.in_flight.iter().enumerate() {
            let park = self.gate.wait_parked(t.actor);
            if park == Park::Done || runnable(&park, &self.disk) {
                candidates.push((i, park));
            }
        }
        if candidates.is_empty() {
            let stuck: Vec<String> = self
                .in_flight
                .iter()
                .map(|t| format!("{:?} of actor {}", t.kind, t.actor))
                .collect();
            return Err(self.fail(&format!("DEADLOCK: nobody can run: {}", stuck.join(", "))));
        }
        let (i, park) = candidates.swap_remove(self.rng.below(candidates.len()));
        let park = if park == Park::Done {
            park
        } else {
            self.stats.ops += 1;
            let actor = self.in_flight[i].actor;
            let park = self.gate.step(actor);
            if let Some(op) = self.actors[actor].io.last_op() {
                let op = (actor, op.kind, op.path.clone(), op.to.clone(), op.ok);
                self.record(op);
            }
            self.note(|| {
                let ops = self.actors[actor].io.ops();
                let op = ops.last().expect("an op ran");
                format!(
                    "  actor {actor}: {} {} {} {}",
                    op.kind,
                    op.path.display(),
                    op.to
                        .as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    if op.ok { "ok" } else { "FAILED" }
                )
            });
            park
        };
        if park == Park::Done {
            let task = self.in_flight.swap_remove(i);
            self.finish(task)?;
        }
        Ok(true)
    }

    /// Joins a finished task and checks its outcome against the model.
    fn finish(&mut self, task: InFlight) -> Result<(), String> {
        self.gate.clear(task.actor);
        let outcome = task
            .thread
            .join()
            .map_err(|_| self.fail(&format!("PANIC in {:?}", task.kind)))?;
        let now = self.clock.now();
        // The marks of a drain are stamped with a reading its outbox took
        // (the clock may have been stepped since).
        let window = task.readings.lock().take().unwrap_or(ClockWindow::at(now));
        let from = task.clock_from;
        // A task that ends while the world winds down a power cut never
        // reaches its caller, whatever it returned (a fault of the layer
        // above the disk may have answered first).
        let crashed = self.disk.crashed() || self.crashing;
        self.note(|| {
            let shown = match &outcome {
                Outcome::Drain(Ok(d)) => format!("delivered {:?}", summaries(&d.records)),
                Outcome::DrainWith {
                    delivered, result, ..
                } => format!(
                    "callback {delivered:?}, handed {:?}, result {:?}",
                    task.handed.lock().as_deref().map(summaries),
                    result.as_ref().map(|d| summaries(&d.records))
                ),
                other => format!("{other:?}"),
            };
            format!(
                "end {:?} of actor {} (crashed: {crashed}): {shown}",
                task.kind, task.actor
            )
        });
        self.record((task.actor, format!("{:?} {outcome:?}", task.kind)));
        match (task.kind, outcome) {
            (TaskKind::Commit { .. }, Outcome::Commit(r)) => {
                let no = task.commit.expect("a commit task");
                let child = self.model.child_of(no);
                if r.is_ok() && !crashed && child.trim() != child {
                    return Err(self.fail(&format!(
                        "PADDED ID: a commit for child {child:?} (surrounding whitespace) \
                         returned Ok; such ids must be refused"
                    )));
                }
                let status = match r {
                    _ if crashed => CommitStatus::Crashed,
                    Ok(()) => CommitStatus::Ok,
                    Err(_) => CommitStatus::Failed,
                };
                self.model
                    .end_commit(task.commit.expect("a commit task"), status);
            }
            (TaskKind::Drain { parent }, Outcome::Drain(r)) => match r {
                Ok(d) => {
                    self.model
                        .delivered(parent, &task.snapshot, &d.records, d.ledger_was_corrupt)
                        .map_err(|e| self.fail(&e))?;
                    self.model.consumed(parent, &d.records, true, window, from);
                }
                Err(_) if crashed => {
                    if self.ledger_renamed(task.actor, task.ops_before, parent) {
                        self.model.open_loss_window(parent, window, from);
                    }
                }
                Err(f) => match f.state {
                    RecordsState::Pending => {}
                    // The caller gets the records inside the error.
                    state => {
                        self.model
                            .delivered(parent, &task.snapshot, &f.records, false)
                            .map_err(|e| self.fail(&e))?;
                        self.consumed_by_error(parent, &f, state, window, from);
                    }
                },
            },
            (
                TaskKind::DrainWith { parent },
                Outcome::DrainWith {
                    delivered,
                    result,
                    reentry,
                },
            ) => {
                if let Some(inner) = reentry
                    && !crashed
                    && !inner.starts_with("Err(Reentrant")
                {
                    return Err(self.fail(&format!(
                        "REENTRY: a drain through a second handle from inside a drain_with \
                         callback of the same parent returned {inner}, not Error::Reentrant"
                    )));
                }
                let handed = task.handed.lock().take().unwrap_or_default();
                if delivered == Some(true) {
                    // The caller acted on these: a delivery, whatever the
                    // call returns next.
                    let corrupt = result.as_ref().is_ok_and(|d| d.ledger_was_corrupt);
                    self.model
                        .delivered(parent, &task.snapshot, &handed, corrupt)
                        .map_err(|e| self.fail(&e))?;
                    match &result {
                        Ok(_) if !crashed => {
                            self.model.consumed(parent, &handed, true, window, from)
                        }
                        Err(f) if !crashed => {
                            // What the error carries is its state's; the
                            // rest of what was handed is pending.
                            let carried = |r: &Record| f.records.contains(r);
                            let rest: Vec<Record> =
                                handed.iter().filter(|r| !carried(r)).cloned().collect();
                            self.model.consumed(parent, &handed, false, window, from);
                            self.model.promise_pending(parent, &rest, &f.message);
                            if f.state != RecordsState::Pending {
                                self.consumed_by_error(parent, f, f.state, window, from);
                            }
                        }
                        _ => self.model.consumed(parent, &handed, false, window, from),
                    }
                }
            }
            (TaskKind::Read, Outcome::Read) => {}
            (kind, outcome) => {
                return Err(self.fail(&format!("task {kind:?} returned {outcome:?}")));
            }
        }
        Ok(())
    }

    /// A failed drain's error carried records it says are consumed, or may
    /// be: the model holds it to that ([`RecordsState::Consumed`]: never
    /// delivered again unless a crash undoes the marks).
    fn consumed_by_error(
        &mut self,
        parent: usize,
        f: &Failure,
        state: RecordsState,
        window: ClockWindow,
        from: usize,
    ) {
        if state == RecordsState::Consumed {
            self.model
                .consumed_until_crash(parent, &f.records, window, from);
        } else {
            self.model.consumed(parent, &f.records, false, window, from);
        }
    }

    /// Whether `actor`, since its op number `ops_before`, wrote marks to
    /// `parent`'s ledger: appended to it, or renamed a file onto it (a
    /// compaction). Either may survive a crash from the moment it is
    /// issued: the plain drain's window opens there.
    fn ledger_renamed(&self, actor: usize, ops_before: usize, parent: usize) -> bool {
        let Ok(paths) = ParentPaths::new(Path::new(ROOT), &self.parents[parent]) else {
            return false;
        };
        self.actors[actor].io.ops()[ops_before..].iter().any(|op| {
            op.ok
                && ((op.kind == OpKind::Rename && op.to.as_deref() == Some(&paths.consumed))
                    || (op.kind == OpKind::WriteAll && op.path == paths.consumed))
        })
    }

    fn run_all_to_completion(&mut self) -> Result<(), String> {
        while self.step_one()? {}
        Ok(())
    }

    // ----------------------------------------------------------------------
    // Events
    // ----------------------------------------------------------------------

    fn crash(&mut self) -> Result<(), String> {
        self.stats.crashes += 1;
        self.model.crashed();
        self.note(|| "CRASH".into());
        self.disk.crash_after(0);
        self.crashing = true;
        self.run_all_to_completion()?;
        self.crashing = false;
        let images = self.disk.crash_images(6);
        let chosen = self.rng.below(images.len());
        self.record(("crash", chosen, images.len()));
        let image = &images[chosen];
        self.disk = CrashIo::from_image(image);
        self.faults = FaultIo::new(self.disk.clone());
        self.fault_armed = false;
        self.gate = Arc::new(Gate::default());
        let roles: Vec<Role> = self.actors.iter().map(|a| a.role).collect();
        self.actors = roles
            .into_iter()
            .enumerate()
            .map(|(i, role)| self.new_actor(i, role))
            .collect();
        Ok(())
    }

    fn arm_fault(&mut self) {
        let fault = [Fault::ENOSPC, Fault::EIO, Fault::EACCES][self.rng.below(3)];
        let at = self.rng.below(40);
        let mut plan = if self.rng.chance(self.swarm.persistent) {
            FaultPlan::persistent(at, fault)
        } else {
            FaultPlan::once(at, fault)
        };
        if self.rng.chance(self.swarm.partial_write) {
            plan = plan.with_partial_write();
        }
        self.record(("fault", format!("{plan:?}")));
        self.note(|| format!("arm {plan:?}"));
        self.faults.arm(plan);
        self.fault_armed = true;
        self.stats.faults += 1;
    }

    fn step_clock(&mut self) {
        self.stats.clock_steps += 1;
        let hours = Duration::from_secs(3_600);
        match self.rng.below(4) {
            0 => self
                .clock
                .step_back(hours * (1 + self.rng.below(240)) as u32),
            1 => self.clock.advance(hours * (1 + self.rng.below(48)) as u32),
            2 => self
                .clock
                .advance(hours * 24 * (15 + self.rng.below(30)) as u32),
            _ => {
                // NTP corrects a clock that booted at 1970.
                let now = self.clock.now();
                if now < UNIX_EPOCH + Duration::from_secs(1_000_000_000) {
                    self.clock.advance(Duration::from_secs(1_780_000_000));
                } else {
                    self.clock.step_back(Duration::from_secs(60));
                }
            }
        }
        let now = self.clock.now();
        self.model.clock_moved(now);
        self.record(("clock", now));
        self.note(|| {
            let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            format!("clock step to {secs}")
        });
    }

    /// The records in `id`'s WAL (the claimed inbox; agent-deck's WAL,
    /// which the simulation never writes, would come first) on the disk now.
    fn wal_records(&self, id: &str) -> Vec<Record> {
        ParentPaths::new(Path::new(ROOT), id)
            .ok()
            .map(|paths| {
                let image = self.disk.current_image();
                let mut bytes = image
                    .file(&paths.wal)
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default();
                bytes.extend(image.file(&paths.claimed).unwrap_or_default());
                bytes
            })
            .map(|bytes| {
                // The format's own reader (it ignores a crash's trailing
                // NULs, as every reader of the outbox does).
                outbox::format::scan(&bytes[..], outbox::format::MAX_LINE_BYTES)
                    .map(|scan| scan.records)
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    /// With nothing in flight and no fault armed: `peek` and `has_pending`
    /// create nothing and agree with what a drain then delivers.
    fn check_quiescent(&mut self, parent: usize) -> Result<(), String> {
        self.stats.checks += 1;
        let ob = self.direct();
        let id = self.parents[parent].clone();
        // The WAL holds at most one record per child, however many
        // deliveries failed.
        let wal = self.wal_records(&id);
        let mut children: Vec<&str> = wal.iter().map(|r| r.child_session_id.as_str()).collect();
        children.sort_unstable();
        let total = children.len();
        children.dedup();
        if children.len() != total {
            return Err(self.fail(&format!(
                "WAL GROWTH: {id:?}'s WAL holds {total} records for {} children: {:?}",
                children.len(),
                summaries(&wal)
            )));
        }
        let before = self.disk.current_image();
        let peeked = ob
            .peek(&id)
            .map_err(|e| self.fail(&format!("peek failed: {e}")))?;
        let pending = ob
            .has_pending(&id)
            .map_err(|e| self.fail(&format!("has_pending failed: {e}")))?;
        if self.disk.current_image() != before {
            return Err(self.fail(&format!(
                "READ-ONLY: peek/has_pending of {id:?} changed the disk"
            )));
        }
        let snapshot = self.model.snapshot(parent);
        let drained = ob
            .drain(&id)
            .map_err(|e| self.fail(&format!("drain failed: {e}")))?;
        self.note(|| {
            format!(
                "check {id:?}: peek {:?}, pending {pending}, drain {:?}",
                summaries(&peeked),
                summaries(&drained.records)
            )
        });
        let now = self.clock.now();
        self.model
            .delivered(
                parent,
                &snapshot,
                &drained.records,
                drained.ledger_was_corrupt,
            )
            .map_err(|e| self.fail(&e))?;
        let from = self.model.clock_index();
        self.model
            .consumed(parent, &drained.records, true, ClockWindow::at(now), from);
        let key = |r: &Record| (r.child_session_id.clone(), model::identity(r));
        let mut a: Vec<_> = peeked.iter().map(key).collect();
        let mut b: Vec<_> = drained.records.iter().map(key).collect();
        a.sort();
        b.sort();
        if pending == drained.records.is_empty() || a != b {
            return Err(self.fail(&format!(
                "PEEK/PENDING: has_pending={pending}, peek={a:?}, but the drain delivered {b:?}"
            )));
        }
        Ok(())
    }

    /// With nothing in flight: forget one child's consumed turns, and check
    /// that nothing pending went and only that child's turns came back.
    fn forget(&mut self, parent: usize) -> Result<(), String> {
        let ob = self.direct();
        let id = self.parents[parent].clone();
        let child = child_name(parent, self.rng.below(2 * CHILDREN_PER_PRODUCER));
        let before = ob
            .peek(&id)
            .map_err(|e| self.fail(&format!("peek failed: {e}")))?;
        self.note(|| format!("forget {id:?} {child:?}"));
        ob.forget_child(&id, &child)
            .map_err(|e| self.fail(&format!("forget_child failed: {e}")))?;
        let after = ob
            .peek(&id)
            .map_err(|e| self.fail(&format!("peek failed: {e}")))?;
        let lost: Vec<_> = before.iter().filter(|r| !after.contains(r)).collect();
        let other: Vec<_> = after
            .iter()
            .filter(|r| !before.contains(r) && r.child_session_id != child)
            .collect();
        if !lost.is_empty() || !other.is_empty() {
            return Err(self.fail(&format!(
                "FORGET: forget_child({child:?}) removed pending {lost:?} or revived \
                 other children's {other:?}"
            )));
        }
        self.model.forget_consumed(parent, &child);
        Ok(())
    }

    /// With nothing in flight: sweep records older than a random age, and
    /// check that exactly the old ones went.
    fn sweep(&mut self, parent: usize) -> Result<(), String> {
        let ob = self.direct();
        let id = self.parents[parent].clone();
        let age = Duration::from_secs(3_600 * [1, 24, 24 * 15][self.rng.below(3)]);
        let before = ob
            .peek(&id)
            .map_err(|e| self.fail(&format!("peek failed: {e}")))?;
        ob.sweep_stale(&id, age)
            .map_err(|e| self.fail(&format!("sweep_stale failed: {e}")))?;
        let after = ob
            .peek(&id)
            .map_err(|e| self.fail(&format!("peek failed: {e}")))?;
        let now = self.clock.now();
        // Records staged in the WAL are being delivered: never swept.
        let wal = self.wal_records(&id);
        for r in &before {
            let staged = wal.iter().any(|w| {
                w.child_session_id == r.child_session_id && model::identity(w) == model::identity(r)
            });
            let old = r.timestamp.age_at(now) > age;
            let kept = after.contains(r);
            let should_drop = old && !r.timestamp.is_zero();
            // A staged record is kept in the WAL; an old copy of it that a
            // crash left in the inbox too may go or stay (seeds 27636,
            // 63798): only records the WAL does not hold are judged.
            if !staged && should_drop == kept {
                return Err(self.fail(&format!(
                    "SWEEP: sweep_stale(age {age:?}) {} {r:?} (now {now:?})",
                    if kept {
                        "kept the stale"
                    } else {
                        "dropped the fresh"
                    }
                )));
            }
            if !kept && !staged {
                self.model.remove_child(parent, &r.child_session_id);
            }
        }
        Ok(())
    }

    // ----------------------------------------------------------------------
    // The run
    // ----------------------------------------------------------------------

    fn run(mut self, steps: usize) -> Result<Stats, String> {
        let s = self.swarm;
        let crash = s.crash;
        let arm = crash + s.arm_fault;
        let disarm = arm + s.disarm_fault;
        let clock = disarm + s.clock;
        let housekeeping = clock + s.housekeeping;
        let start = housekeeping + s.start_task;
        self.note(|| format!("swarm {s:?}"));
        for _ in 0..steps {
            let roll = self.rng.below(1000);
            let idle: Vec<usize> = (0..self.actors.len()).filter(|&a| !self.busy(a)).collect();
            if roll < crash {
                self.crash()?;
            } else if roll < arm && !self.fault_armed {
                self.arm_fault();
            } else if (arm..disarm).contains(&roll) && self.fault_armed {
                self.faults.disarm();
                self.fault_armed = false;
                self.record("disarm");
            } else if (disarm..clock).contains(&roll) {
                self.step_clock();
            } else if (clock..housekeeping).contains(&roll)
                && self.in_flight.is_empty()
                && !self.fault_armed
            {
                let parent = self.rng.below(self.parents.len());
                match self.rng.below(6) {
                    0 => self.forget(parent)?,
                    1 => self.sweep(parent)?,
                    _ => self.check_quiescent(parent)?,
                }
            } else if (housekeeping..start).contains(&roll) && !idle.is_empty() {
                let actor = idle[self.rng.below(idle.len())];
                self.start_task(actor);
            } else {
                self.step_one()?;
            }
        }
        // The end: no more faults, let everything finish, drain everything.
        self.faults.disarm();
        self.fault_armed = false;
        self.run_all_to_completion()?;
        for parent in 0..self.parents.len() {
            for _ in 0..2 {
                self.check_quiescent(parent)?;
            }
        }
        let names = self.parents.clone();
        self.model.check_end(&names).map_err(|e| self.fail(&e))?;
        let Tally {
            lost_in_window,
            duplicated_in_window,
            duplicated_after_ttl,
            delivered,
        } = self.model.tally;
        self.stats.lost_in_window = lost_in_window as u64;
        self.stats.duplicated_in_window = duplicated_in_window as u64;
        self.stats.duplicated_after_ttl = duplicated_after_ttl as u64;
        self.stats.delivered = delivered as u64;
        self.stats.digest = self.digest.finish();
        Ok(self.stats)
    }
}

/// `child:summary/hash` of each record, for traces.
fn summaries(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            format!(
                "{}:{}/{}",
                r.child_session_id, r.done_summary, r.last_output_hash
            )
        })
        .collect()
}

/// Runs one seed.
pub fn run_seed(seed: u64, steps: usize) -> Result<Stats, String> {
    World::new(seed).run(steps)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// Steps per seed.
const STEPS: usize = 400;

/// Every seed that ever failed (an outbox defect or a model gap, since
/// fixed), run by every `cargo test`: 254, 2595, 1352, 10000, 19624,
/// 27636, 38152, 63798 and 1166 were found before swarm testing (their
/// worlds differ now, but they stay), 99 and 1694 by the first swarm
/// campaign, 1912 and 2698 with defect 1 of issue 20 re-introduced (a
/// failed ledger append said its records stayed consumed; 0 and 3, which
/// found defects 12 and 5, are among the fixed seeds), 36496 by the clean
/// campaign (a model gap: a record whose commit failed, promised pending,
/// lost to a later power cut), 54191 by the same campaign (an outbox
/// defect: marks appended to a ledger whose rewrite's directory fsync had
/// failed were lost with the file in a power cut), 28868 by the final
/// campaign (a model gap: forgetting a child made the model owe a record
/// a drain had already dropped as consumed). Add a failing seed here when
/// you fix what it found.
pub const REGRESSIONS: &[u64] = &[
    99, 254, 1166, 1352, 1694, 1912, 2595, 2698, 10000, 19624, 27636, 28868, 36496, 38152, 54191,
    63798,
];

/// A seed no earlier run chose: the clock's nanoseconds and the process's
/// random hasher keys.
fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() % 1_000_000_000
}

fn run_or_panic(seed: u64, total: &mut Stats) {
    match run_seed(seed, STEPS) {
        Ok(stats) => total.add(&stats),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn seeded_whole_system_simulation() {
    let (first, count) = match env_u64("OUTBOX_SIM_SEED") {
        Some(seed) => (seed, 1),
        None => (
            env_u64("OUTBOX_SIM_FIRST_SEED").unwrap_or(0),
            env_u64("OUTBOX_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS),
        ),
    };
    let campaign = std::env::var_os("OUTBOX_SIM_SEED").is_some()
        || std::env::var_os("OUTBOX_SIM_SEEDS").is_some();
    let mut total = Stats::default();
    let mut ran = count;
    if !campaign {
        // Beside the fixed seeds: the regressions, and one seed no run
        // chose before (printed first, so a failure can be replayed).
        let seed = random_seed();
        // Straight to the process's stderr, past libtest's capture: shown
        // on every run, passing or not.
        let _ = writeln!(
            std::io::stderr(),
            "sim: random seed {seed} (replay: cargo xtask sim --seed {seed}, or \
             OUTBOX_SIM_SEED={seed} cargo test -p outbox --test it sim::)"
        );
        run_or_panic(seed, &mut total);
        for &seed in REGRESSIONS {
            run_or_panic(seed, &mut total);
        }
        ran += 1 + REGRESSIONS.len() as u64;
    }
    for seed in first..first + count {
        run_or_panic(seed, &mut total);
    }
    println!(
        "sim: seeds {}..{} ok: {} seeds, {} ops, {} tasks, {} crashes, {} faults, \
         {} clock steps, {} checks, {} delivered, {} lost in window, {} duplicated in window, \
         {} duplicated after TTL",
        first,
        first + count,
        total.seeds,
        total.ops,
        total.tasks,
        total.crashes,
        total.faults,
        total.clock_steps,
        total.checks,
        total.delivered,
        total.lost_in_window,
        total.duplicated_in_window,
        total.duplicated_after_ttl
    );
    assert_eq!(total.seeds, ran, "every seed ran");
    assert!(
        total.ops > 0 && total.delivered > 0,
        "the simulation did something"
    );
}

#[test]
fn the_same_seed_replays_the_same_run() {
    // The digest covers every operation (paths included: temporary file
    // names come from the seed's nonces), outcome, crash and clock step.
    for seed in [7, 2595] {
        let a = run_seed(seed, 200).expect("first run");
        let b = run_seed(seed, 200).expect("second run");
        assert_eq!(a.digest, b.digest, "seed {seed} ran differently twice");
        assert_eq!(
            (a.ops, a.tasks, a.crashes, a.faults, a.delivered),
            (b.ops, b.tasks, b.crashes, b.faults, b.delivered)
        );
    }
    let other = run_seed(8, 200).expect("seed 8");
    assert_ne!(
        run_seed(7, 200).expect("seed 7").digest,
        other.digest,
        "the digest tells runs apart"
    );
}
