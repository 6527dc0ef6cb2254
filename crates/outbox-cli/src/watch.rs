//! `outbox watch`: a long-running watcher that delivers a parent's records
//! to a command as soon as they are committed, and `outbox wait`, the wait
//! alone ([`wait_until_pending`]).
//!
//! Event-driven, never polling: on the file store the kernel wakes it when
//! the inbox directory changes (inotify on Linux, through the `notify`
//! crate); on PostgreSQL a `LISTEN` connection wakes it when a commit
//! commits (each commit's statement calls `pg_notify`). While nothing
//! happens the process is blocked in one `recv` and uses no CPU (measured:
//! see the CLI README).
//!
//! Order matters for missing nothing: the watch is armed first, then the
//! store is asked what is pending, and only then does it wait; a commit
//! that lands between the two is seen by the question or wakes the wait.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use clap::Args;
use notify::{EventKind, RecursiveMode, Watcher};
use outbox::{DrainWithError, Outbox, ParentPaths, Store};
#[cfg(feature = "postgres")]
use outbox_postgres::PgOutbox;

use crate::store::{AnyStore, Location};
use crate::{Failure, check_parent, drain_failure, duration, exec, render};

/// Deliver a parent's records to a command as soon as they are committed,
/// until stopped (SIGTERM or SIGINT: exit 0).
///
/// Each time something is pending it runs a drain with CMD as the delivery,
/// as `drain --exec` does: CMD gets the records on its stdin as JSON lines,
/// with OUTBOX_PARENT set to the parent, and they are consumed only when it
/// read them all and exited 0. A burst of commits is gathered for
/// --debounce before CMD runs. When CMD fails, the records stay pending
/// and the next try waits 1 s, then twice as long each time, up to
/// --max-backoff; a success resets it. Woken by the kernel (inotify) on the
/// file store and by LISTEN/NOTIFY on PostgreSQL: no polling, no CPU while
/// idle. A stop signal during a delivery lets CMD finish first.
///
/// It prints `outbox watch: watching ...` on stderr once it is armed, and
/// one line per failed delivery.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  outbox watch --parent conductor --exec ./wake-conductor.sh
  outbox watch --all --exec sh -c 'jq -c . >> \"/var/log/outbox/$OUTBOX_PARENT.jsonl\"'")]
pub struct WatchArgs {
    /// The parent whose inbox is watched and drained.
    #[arg(long, value_name = "ID", required_unless_present = "all")]
    pub parent: Option<String>,
    /// Every parent of the store (CMD runs once per parent with records,
    /// OUTBOX_PARENT naming it).
    #[arg(long, conflicts_with = "parent")]
    pub all: bool,
    /// How long to gather a burst of commits before CMD runs (e.g. 100ms).
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = duration::parse_duration)]
    pub debounce: Duration,
    /// The longest wait between tries after CMD failed.
    #[arg(long = "max-backoff", value_name = "DURATION", default_value = "60s", value_parser = duration::parse_duration)]
    pub max_backoff: Duration,
    /// The delivery command and its arguments: it gets the records on
    /// stdin; exit 0 consumes them. Must come last.
    #[arg(long, value_name = "CMD", required = true, num_args = 1.., allow_hyphen_values = true)]
    pub exec: Vec<OsString>,
}

/// Exit 0 as soon as something is pending for the parent (at once if it
/// already is), 1 when --timeout passes first. Consumes nothing.
///
/// Woken as `watch` is (inotify on the file store, LISTEN/NOTIFY on
/// PostgreSQL), not by polling.
#[derive(Debug, Args)]
#[command(after_help = "\
Example:
  outbox wait --parent conductor --timeout 10m && outbox drain --parent conductor")]
pub struct WaitArgs {
    /// The parent to wait for.
    #[arg(long, value_name = "ID")]
    pub parent: String,
    /// Give up after this long [default: wait for ever].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse_duration)]
    pub timeout: Option<Duration>,
}

/// The inbox directory, relative to the data root (the protocol's layout).
const INBOX_DIR: &str = "inboxes";

/// What wakes the watcher.
enum Wake {
    /// Something changed; the file names involved (empty when unknown) or,
    /// on PostgreSQL, the parent that committed.
    Changed(Vec<PathBuf>, Option<String>),
    /// The PostgreSQL listener lost its connection (it reconnects).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Lost(String),
    /// A stop signal.
    Stop(i32),
}

/// The armed watch: the kernel's on the file store, a listening connection
/// on PostgreSQL (in a thread of its own, which reconnects).
enum Source {
    Files {
        root: PathBuf,
        watcher: notify::RecommendedWatcher,
        watched: PathBuf,
    },
    #[cfg(feature = "postgres")]
    Postgres,
}

impl Source {
    /// Arms the watch for `loc`, sending what happens to `tx`.
    fn arm(loc: &Location, tx: &Sender<Wake>) -> Result<Self, Failure> {
        match loc {
            Location::Files(root) => {
                let tx = tx.clone();
                let mut watcher =
                    notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                        let wake = match event {
                            Ok(e) if matches!(e.kind, EventKind::Access(_)) => return,
                            Ok(e) => Wake::Changed(e.paths, None),
                            Err(_) => Wake::Changed(Vec::new(), None),
                        };
                        let _ = tx.send(wake);
                    })
                    .map_err(|e| Failure::error(format!("cannot watch files: {e}")))?;
                let watched = deepest_existing(root);
                watcher
                    .watch(&watched, RecursiveMode::NonRecursive)
                    .map_err(|e| Failure::error(format!("watch {}: {e}", watched.display())))?;
                let mut source = Source::Files {
                    root: root.clone(),
                    watcher,
                    watched,
                };
                source.rearm();
                Ok(source)
            }
            #[cfg(feature = "postgres")]
            Location::Postgres(url) => {
                let store = PgOutbox::connect(url)?;
                let mut listener = store.listen()?;
                let tx = tx.clone();
                std::thread::spawn(move || listen_forever(&store, &mut listener, &tx));
                Ok(Source::Postgres)
            }
        }
    }

    /// Follows the root as it appears: watches the inbox directory once it
    /// exists (until then its nearest existing ancestor). The caller asks
    /// the store again after this, so nothing created meanwhile is missed.
    ///
    /// A directory created after the deepest one was found but before the
    /// watch was placed raises no event, so it looks again after each move
    /// until nothing deeper exists: from then on every creation is seen.
    /// (Seen once under load: a commit creating `root/inboxes` one level
    /// at a time outran a single look, and the record waited.)
    #[cfg_attr(not(feature = "postgres"), allow(irrefutable_let_patterns))]
    fn rearm(&mut self) {
        if let Source::Files {
            root,
            watcher,
            watched,
        } = self
        {
            // Each move goes deeper (or back to a still existing
            // ancestor); the bound is only a guard.
            for _ in 0..64 {
                let target = deepest_existing(root);
                if target == *watched && watched.is_dir() {
                    return;
                }
                let _ = watcher.unwatch(watched);
                if watcher.watch(&target, RecursiveMode::NonRecursive).is_err() {
                    return;
                }
                *watched = target;
            }
        }
    }

    /// Whether a change to `paths` can concern `stem`'s inbox (`None`:
    /// every parent).
    fn concerns(&self, paths: &[PathBuf], stem: Option<&str>) -> bool {
        let (Source::Files { root, watched, .. }, Some(stem)) = (self, stem) else {
            return true;
        };
        if *watched != root.join(INBOX_DIR) || paths.is_empty() {
            return true;
        }
        let inbox = format!("{stem}.jsonl");
        paths.iter().any(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_none_or(|n| n.starts_with(&inbox))
        })
    }
}

#[cfg(feature = "postgres")]
/// The PostgreSQL listener's thread: wait, forward, reconnect (1 s, then
/// twice as long, up to 60 s) when the connection is lost; after a
/// reconnection it says "changed", since commits in between woke nobody.
fn listen_forever(store: &PgOutbox, listener: &mut outbox_postgres::Listener, tx: &Sender<Wake>) {
    let mut delay = Duration::from_secs(1);
    loop {
        match listener.wait(None) {
            Ok(parent) => {
                if tx.send(Wake::Changed(Vec::new(), parent)).is_err() {
                    return;
                }
            }
            Err(e) => {
                if tx.send(Wake::Lost(e.to_string())).is_err() {
                    return;
                }
                loop {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(60));
                    if let Ok(l) = store.listen() {
                        *listener = l;
                        delay = Duration::from_secs(1);
                        let _ = tx.send(Wake::Changed(Vec::new(), None));
                        break;
                    }
                }
            }
        }
    }
}

/// The inbox directory if it exists, else the root, else the root's
/// nearest existing ancestor.
fn deepest_existing(root: &Path) -> PathBuf {
    let inboxes = root.join(INBOX_DIR);
    if inboxes.is_dir() {
        return inboxes;
    }
    let mut dir = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    while !dir.is_dir() {
        if !dir.pop() {
            return PathBuf::from("/");
        }
    }
    dir
}

/// The store, opened without creating anything until a drain writes.
fn open(loc: &Location) -> Result<AnyStore, Failure> {
    Ok(match loc {
        Location::Files(root) => AnyStore::Files(Outbox::open_lazy(root)),
        #[cfg(feature = "postgres")]
        Location::Postgres(url) => AnyStore::postgres(url)?,
    })
}

/// Whether `parent` has something pending; a root that does not exist has
/// nothing (and is not created).
fn pending(store: &AnyStore, loc: &Location, parent: &str) -> Result<bool, Failure> {
    if let Location::Files(root) = loc
        && !root.exists()
    {
        return Ok(false);
    }
    Ok(store.has_pending(parent)?)
}

/// Waits until `parent` has something pending (`Ok(true)`, at once if it
/// already has) or `deadline` passes (`Ok(false)`; `None`: no deadline).
/// Event-driven: armed before the first question, woken by the store's
/// changes, never polling. Consumes nothing.
pub fn wait_until_pending(
    loc: &Location,
    parent: &str,
    deadline: Option<Instant>,
) -> Result<bool, Failure> {
    check_parent(parent)?;
    let store = open(loc)?;
    let (tx, rx) = mpsc::channel();
    let mut source = Source::arm(loc, &tx)?;
    drop(tx);
    let stem = stem_of(loc, parent)?;
    loop {
        if pending(&store, loc, parent)? {
            return Ok(true);
        }
        loop {
            let wake = match next(&rx, deadline) {
                Some(wake) => wake,
                None => return Ok(false),
            };
            if let Wake::Changed(paths, _) = &wake
                && !source.concerns(paths, stem.as_deref())
            {
                continue;
            }
            source.rearm();
            break;
        }
    }
}

/// The next wake, or `None` when `deadline` passed (or every sender is
/// gone).
fn next(rx: &Receiver<Wake>, deadline: Option<Instant>) -> Option<Wake> {
    match deadline {
        None => rx.recv().ok(),
        // Timed out, or every sender is gone.
        Some(deadline) => rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok(),
    }
}

/// The file-name stem of `parent`'s inbox on the file store, to ignore
/// other parents' changes.
fn stem_of(loc: &Location, parent: &str) -> Result<Option<String>, Failure> {
    Ok(match loc {
        Location::Files(root) => Some(ParentPaths::new(root, parent)?.stem),
        #[cfg(feature = "postgres")]
        Location::Postgres(_) => None,
    })
}

/// `outbox wait`.
pub fn run_wait(loc: &Location, args: &WaitArgs) -> Result<u8, Failure> {
    let deadline = args.timeout.map(|t| Instant::now() + t);
    Ok(if wait_until_pending(loc, &args.parent, deadline)? {
        crate::EXIT_OK
    } else {
        crate::EXIT_NO
    })
}

/// The delay before the next try after failures: 1 s, doubling, capped.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);

    fn failed(&mut self) -> Duration {
        let delay = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        delay
    }

    fn succeeded(&mut self) {
        self.next = Self::FIRST;
    }
}

fn say(line: &str) {
    let _ = writeln!(io::stderr(), "outbox watch: {line}");
}

/// `outbox watch`.
pub fn run_watch(loc: &Location, args: &WatchArgs) -> Result<u8, Failure> {
    if let Some(parent) = &args.parent {
        check_parent(parent)?;
    }
    let store = open(loc)?;
    let (tx, rx) = mpsc::channel();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| Failure::error(format!("cannot handle signals: {e}")))?;
    let signal_tx = tx.clone();
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            let _ = signal_tx.send(Wake::Stop(signal));
        }
    });
    let mut source = Source::arm(loc, &tx)?;
    drop(tx);
    let stem = match &args.parent {
        Some(parent) => stem_of(loc, parent)?,
        None => None,
    };
    let what = match &args.parent {
        Some(parent) => format!("parent {parent:?}"),
        None => "every parent".to_owned(),
    };
    say(&format!("watching {what} of {}", store.describe()));
    let mut backoff = Backoff {
        next: Backoff::FIRST,
        max: args.max_backoff.max(Backoff::FIRST),
    };
    // When to drain next (`None`: when something changes), and not before
    // when (after a failure).
    let mut due = Some(Instant::now());
    let mut not_before: Option<Instant> = None;
    loop {
        match due {
            Some(at) if at <= Instant::now() => {
                due = None;
                if let Err(()) = deliver_all(&store, loc, args) {
                    let delay = backoff.failed();
                    say(&format!("trying again in {delay:?}"));
                    let at = Instant::now() + delay;
                    not_before = Some(at);
                    due = Some(at);
                } else {
                    backoff.succeeded();
                    not_before = None;
                }
                continue;
            }
            _ => {}
        }
        let Some(wake) = next(&rx, due) else {
            if due.is_some() {
                continue; // due now
            }
            return Err(Failure::error("the watch ended unexpectedly"));
        };
        match wake {
            Wake::Stop(signal) => {
                let name = if signal == signal_hook::consts::SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                say(&format!("stopped by {name}"));
                return Ok(crate::EXIT_OK);
            }
            Wake::Lost(why) => say(&format!(
                "lost the store's notifications ({why}); reconnecting"
            )),
            Wake::Changed(paths, parent) => {
                if let (Some(want), Some(got)) = (&args.parent, &parent)
                    && want != got
                {
                    continue;
                }
                if !source.concerns(&paths, stem.as_deref()) {
                    continue;
                }
                source.rearm();
                if due.is_none() {
                    let soon = Instant::now() + args.debounce;
                    due = Some(not_before.map_or(soon, |nb| nb.max(soon)));
                }
            }
        }
    }
}

/// Drains every parent concerned that has something pending, each into
/// CMD; `Err` when any delivery or drain failed (said on stderr).
fn deliver_all(store: &AnyStore, loc: &Location, args: &WatchArgs) -> Result<(), ()> {
    let parents = match &args.parent {
        Some(parent) => vec![parent.clone()],
        None => match parents(store, loc) {
            Ok(parents) => parents,
            Err(e) => {
                say(&format!("cannot list the parents: {}", e.message));
                return Err(());
            }
        },
    };
    let mut result = Ok(());
    for parent in parents {
        match pending(store, loc, &parent) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                say(&format!("parent {parent:?}: {}", e.message));
                result = Err(());
                continue;
            }
        }
        if let Err(message) = deliver(store, &parent, &args.exec) {
            say(&format!("parent {parent:?}: {message}"));
            result = Err(());
        }
    }
    result
}

/// One drain of `parent` into `cmd`.
fn deliver(store: &AnyStore, parent: &str, cmd: &[OsString]) -> Result<(), String> {
    let mut count = 0;
    store
        .drain_with_max(parent, usize::MAX, |records| {
            count = records.len();
            let input =
                render::json_lines(records).map_err(|e| format!("encode the records: {e}"))?;
            exec::deliver_env(cmd, &input, &[("OUTBOX_PARENT", parent)]).map_err(|e| e.to_string())
        })
        .map(|_| ())
        .map_err(|e| match e {
            DrainWithError::Delivery(e) => format!(
                "{} {e}; the {count} record(s) stay pending",
                exec::display(cmd)
            ),
            DrainWithError::Outbox(e) => drain_failure(&e),
        })
}

/// The parents of the store that may have records: on the file store,
/// those with an inbox or an unfinished drain's WAL; on PostgreSQL, those
/// with pending rows.
fn parents(store: &AnyStore, loc: &Location) -> Result<Vec<String>, Failure> {
    match loc {
        #[cfg(feature = "postgres")]
        Location::Postgres(_) => match store {
            AnyStore::Postgres(pg) => {
                Ok(pg.pending_counts()?.into_iter().map(|(p, _)| p).collect())
            }
            AnyStore::Files(_) => Ok(Vec::new()),
        },
        Location::Files(root) => {
            let mut ids = Vec::new();
            for (dir, suffixes) in [
                (root.join(INBOX_DIR), &[".jsonl", ".jsonl.claimed"][..]),
                (root.join("runtime/inbox-inflight"), &[".jsonl"][..]),
            ] {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(Failure::error(format!("list {}: {e}", dir.display())));
                    }
                };
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else { continue };
                    for suffix in suffixes {
                        if let Some(stem) = name.strip_suffix(suffix)
                            && let Some(id) = outbox::id_of_stem(stem)
                        {
                            ids.push(id);
                        }
                    }
                }
            }
            let _ = store; // The file store is read through its files.
            ids.sort();
            ids.dedup();
            Ok(ids)
        }
    }
}
