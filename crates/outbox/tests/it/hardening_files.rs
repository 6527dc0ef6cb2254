//! Issue 10, the file-level defects: one test (or more) per defect, each
//! written to fail against the code before its fix.
//!
//! - 3: distinct parent ids never share a file (and ids agent-deck's
//!   sanitiser leaves unchanged keep their file name);
//! - 4: every directory the outbox creates is durable before the first
//!   commit returns;
//! - 6: temporary files of killed writers cannot block commits (names cannot
//!   collide across pid namespaces) and are swept under their locks;
//! - 8: the parent-id limit is derived from the longest file name the
//!   outbox derives from an id, and an id at the limit works end to end;
//! - 10: sweeps keep records without a timestamp, go on past odd file
//!   names, and `forget_child` matches the child exactly;
//! - 12: read-only operations create nothing;
//! - 14: what the docs claim about a running agent-deck.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use outbox::io::Io;
use outbox::{DEFAULT_STALE_AGE, Error, MAX_ID_BYTES, Outbox, ParentPaths, Record, StdIo};
use outbox_sim::{CrashIo, FaultIo, OpKind};
use proptest::prelude::*;

use crate::util::PARENT;

fn finished(child: &str, summary: &str) -> Record {
    let mut r = Record::finished(child, "success");
    r.done_summary = summary.into();
    r
}

fn children(records: &[Record]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r.child_session_id.as_str())
        .collect()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

// ---------------------------------------------------------------------------
// Defect 3: the parent-id mapping is injective
// ---------------------------------------------------------------------------

/// Every file a parent owns.
fn files_of(p: &ParentPaths) -> [&Path; 6] {
    [
        &p.inbox,
        &p.inbox_lock,
        &p.wal,
        &p.drain_lock,
        &p.ledger,
        &p.stop_blocks,
    ]
}

#[test]
fn parents_whose_ids_sanitise_alike_do_not_share_an_inbox() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(dir.path()).unwrap();
    for (turn, (a, b)) in [
        ("team/alpha", "team_alpha"),
        ("my session", "my_session"),
        ("a..b", "a_b"),
        ("team/alpha", "team alpha"),
        (" padded ", "padded"),
    ]
    .into_iter()
    .enumerate()
    {
        let (pa, pb) = (ob.paths(a).unwrap(), ob.paths(b).unwrap());
        for (fa, fb) in files_of(&pa).into_iter().zip(files_of(&pb)) {
            assert_ne!(fa, fb, "{a:?} and {b:?} share a file");
        }
        // A padded id has files of its own (agent-deck's may exist), but a
        // new commit to it is refused: commit to the other one.
        let (a, b) = if a.trim() != a {
            assert!(matches!(
                ob.commit(a, finished("child-of-a", "refused")),
                Err(outbox::Error::IdHasSurroundingWhitespace { .. })
            ));
            (b, a)
        } else {
            (a, b)
        };
        ob.commit(a, finished("child-of-a", &format!("turn {turn}")))
            .unwrap();
        assert!(
            ob.drain(b).unwrap().records.is_empty(),
            "{b:?} drained {a:?}'s record"
        );
        assert_eq!(children(&ob.drain(a).unwrap().records), ["child-of-a"]);
    }
}

#[test]
fn ids_the_sanitiser_leaves_unchanged_keep_their_file_names() {
    let root = Path::new("/data");
    for id in [
        "conductor",
        "parent-1",
        "a_b",
        "x.y",
        "é",
        "a%2Fb",
        "_unknown",
    ] {
        assert_eq!(outbox::sanitize_id(id), id);
        let p = ParentPaths::new(root, id).unwrap();
        assert_eq!(p.stem, id);
        assert_eq!(p.inbox, root.join(format!("inboxes/{id}.jsonl")));
        assert_eq!(
            p.wal,
            root.join(format!("runtime/inbox-inflight/{id}.jsonl"))
        );
        assert_eq!(
            p.ledger,
            root.join(format!("runtime/consumed-turns/{id}.json"))
        );
    }
}

/// Ids drawn from an alphabet full of what the sanitiser rewrites.
fn hostile_id() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just('/'),
            Just('.'),
            Just(' '),
            Just('_'),
            Just('%'),
            Just('a'),
            Just('\t'),
            Just('\u{a0}'),
            Just('é'),
        ],
        1..12,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn distinct_ids_get_distinct_files(a in hostile_id(), b in hostile_id()) {
        let root = Path::new("/data");
        let (pa, pb) = (ParentPaths::new(root, &a), ParentPaths::new(root, &b));
        if let (Ok(pa), Ok(pb)) = (&pa, &pb)
            && a != b
        {
            for (fa, fb) in files_of(pa).into_iter().zip(files_of(pb)) {
                prop_assert_ne!(fa, fb);
            }
        }
        for (id, p) in [(&a, &pa), (&b, &pb)] {
            match p {
                Ok(p) => {
                    // Inside its directory, and compatible when the
                    // sanitiser leaves the id unchanged.
                    let inboxes = root.join("inboxes");
                    prop_assert_eq!(p.inbox.parent(), Some(inboxes.as_path()));
                    prop_assert!(!p.stem.contains('/') && p.stem != "..");
                    if outbox::sanitize_id(id) == **id {
                        prop_assert_eq!(&p.stem, id);
                    }
                }
                // Only ids that are blank after trimming are refused here.
                Err(e) => prop_assert!(id.trim().is_empty(), "{id:?}: {e}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Defect 4: every created ancestor directory is durable
// ---------------------------------------------------------------------------

#[test]
fn a_commit_on_a_fresh_nested_root_survives_a_crash() {
    // The CLI's default root on a fresh home: three missing ancestors.
    let io = CrashIo::new();
    io.install_dir("/home/u");
    let root = "/home/u/.local/share/outbox";
    let ob = Outbox::open_with(root, io.clone()).unwrap();
    // One fsync per directory that gained an entry: /home/u, .local, share,
    // the root (inboxes/, runtime/) and runtime/ (its two subdirectories).
    let synced: Vec<String> = io
        .ops()
        .iter()
        .filter(|o| o.kind == OpKind::SyncDir)
        .map(|o| o.path.display().to_string())
        .collect();
    assert_eq!(
        synced,
        [
            "/home/u",
            "/home/u/.local",
            "/home/u/.local/share",
            root,
            &format!("{root}/runtime")
        ]
    );
    let from = io.op_count();
    ob.commit(PARENT, finished("c1", "survives")).unwrap();
    let commit_syncs = io
        .ops_since(from)
        .iter()
        .filter(|o| matches!(o.kind, OpKind::SyncFile | OpKind::SyncDir))
        .count();
    assert_eq!(
        commit_syncs, 2,
        "the commit itself stays 1 file + 1 directory fsync"
    );

    // The worst legal outcome of a power cut right after the commit returned.
    let rebooted = CrashIo::from_image(&io.crash_image());
    let ob = Outbox::open_with(root, rebooted).unwrap();
    assert_eq!(children(&ob.drain(PARENT).unwrap().records), ["c1"]);
}

#[test]
fn a_relative_root_with_missing_ancestors_is_durable_too() {
    // Relative paths resolve against the simulator's `/`.
    let io = CrashIo::new();
    let ob = Outbox::open_with("a/b/root", io.clone()).unwrap();
    ob.commit(PARENT, finished("c1", "survives")).unwrap();
    // Opening it again, existing, fsyncs nothing.
    let from = io.op_count();
    Outbox::open_with("a/b/root", io.clone()).unwrap();
    assert!(!io.ops_since(from).iter().any(|o| o.kind.is_mutating()));
    let rebooted = CrashIo::from_image(&io.crash_image());
    let ob = Outbox::open_with("a/b/root", rebooted).unwrap();
    assert_eq!(children(&ob.drain(PARENT).unwrap().records), ["c1"]);
}

// ---------------------------------------------------------------------------
// Defect 6: temp files of killed writers
// ---------------------------------------------------------------------------

/// Set in the child process of
/// [`leftover_temp_files_of_a_process_with_the_same_pid_do_not_block_commits`].
const CHILD_ROOT_VAR: &str = "OUTBOX_HARDENING_LEFTOVER_ROOT";

#[test]
fn leftover_temp_files_of_a_process_with_the_same_pid_do_not_block_commits() {
    if let Some(root) = std::env::var_os(CHILD_ROOT_VAR) {
        // The child: a fresh process, like a fresh pid namespace. An earlier
        // run with the same pid was killed 64 times between create and
        // rename, leaving the names the old naming scheme gives a process
        // with this pid.
        let ob = Outbox::open(PathBuf::from(root)).unwrap();
        let inbox = ob.paths(PARENT).unwrap().inbox;
        let pid = std::process::id();
        for seq in 0..64 {
            let mut name = inbox.as_os_str().to_owned();
            name.push(format!(".tmp-{pid}-{seq}"));
            std::fs::write(PathBuf::from(name), b"half-written").unwrap();
        }
        ob.commit(PARENT, finished("c1", "after the leftovers"))
            .unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "leftover_temp_files_of_a_process_with_the_same_pid_do_not_block_commits",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROOT_VAR, dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the child's commit failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let ob = Outbox::open(dir.path()).unwrap();
    assert_eq!(
        children(&ob.peek(PARENT).unwrap()),
        ["c1"],
        "the child ran the commit"
    );
    // The leftovers were left under the inbox lock: a sweep removes them.
    ob.sweep_stale(PARENT, DEFAULT_STALE_AGE).unwrap();
    let left: Vec<_> = names_in(&dir.path().join("inboxes"))
        .into_iter()
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(children(&ob.drain(PARENT).unwrap().records), ["c1"]);
}

/// Plants the leftovers of writers killed between create and rename, for
/// every file `parent` owns, plus files no sweep of `parent` may touch.
fn plant_leftovers(ob: &Outbox, parent: &str) -> Vec<PathBuf> {
    let p = ob.paths(parent).unwrap();
    let quarantine = p
        .inbox
        .with_file_name(format!("{}.jsonl.quarantine-1-2-3", p.stem));
    let mut planted = Vec::new();
    for target in [&p.inbox, &quarantine, &p.wal, &p.ledger, &p.stop_blocks] {
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        for suffix in [".tmp-4242-7", ".tmp-0123456789abcdef"] {
            let mut name = target.as_os_str().to_owned();
            name.push(suffix);
            std::fs::write(PathBuf::from(&name), b"half").unwrap();
            planted.push(PathBuf::from(name));
        }
    }
    planted
}

#[test]
fn sweeps_remove_stale_temp_files_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(dir.path()).unwrap();
    ob.commit(PARENT, finished("c1", "pending")).unwrap();
    ob.commit("other", finished("c2", "pending")).unwrap();
    let mine = plant_leftovers(&ob, PARENT);
    let others = plant_leftovers(&ob, "other");
    // Files that look alike but are not this outbox's temp files: agent-deck's
    // fixed temp name, and the inbox of a parent whose id starts like one.
    let p = ob.paths(PARENT).unwrap();
    let mut agent_deck_tmp = p.inbox.as_os_str().to_owned();
    agent_deck_tmp.push(".tmp");
    std::fs::write(PathBuf::from(&agent_deck_tmp), b"agent-deck's").unwrap();
    let look_alike = format!("{PARENT}.jsonl.tmp-1");
    ob.commit(&look_alike, finished("c3", "pending")).unwrap();

    ob.sweep_stale(PARENT, DEFAULT_STALE_AGE).unwrap();
    for f in &mine {
        assert!(!f.exists(), "{} survived the sweep", f.display());
    }
    for f in &others {
        assert!(f.exists(), "{} is not PARENT's", f.display());
    }
    assert!(PathBuf::from(&agent_deck_tmp).exists());
    assert_eq!(children(&ob.peek(&look_alike).unwrap()), ["c3"]);

    ob.sweep_stale_all(DEFAULT_STALE_AGE).unwrap();
    for f in &others {
        assert!(!f.exists(), "{} survived sweep_stale_all", f.display());
    }
    assert!(PathBuf::from(&agent_deck_tmp).exists());
    for parent in [PARENT, "other", look_alike.as_str()] {
        assert_eq!(ob.peek(parent).unwrap().len(), 1, "{parent}");
    }
}

// ---------------------------------------------------------------------------
// Defect 8: the id limit, derived and tested at the limit
// ---------------------------------------------------------------------------

/// A corrupt line: commit and drain must quarantine it, which derives the
/// longest file names of all.
const CORRUPT: &[u8] = b"{\"child_session_id\": \"torn\n";

fn longest_name_created(ops: &[outbox_sim::Op]) -> usize {
    ops.iter()
        .filter(|o| o.kind.is_mutating())
        .flat_map(|o| [Some(&o.path), o.to.as_ref()])
        .flatten()
        .filter_map(|p| p.file_name())
        .map(|n| n.len())
        .max()
        .unwrap_or(0)
}

#[test]
fn an_id_at_the_limit_commits_quarantines_and_drains() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultIo::new(StdIo::new());
    let ob = Outbox::open_with(dir.path(), io.clone()).unwrap();
    let id = "p".repeat(MAX_ID_BYTES);
    let paths = ob.paths(&id).unwrap();
    assert_eq!(paths.stem.len(), MAX_ID_BYTES);
    std::fs::write(&paths.inbox, CORRUPT).unwrap();
    ob.commit(&id, finished("c1", "at the limit")).unwrap();
    std::fs::write(&paths.wal, CORRUPT).unwrap();
    ob.set_handover(&id, &outbox::handover::Handover::default())
        .unwrap();
    let drained = ob.drain(&id).unwrap();
    assert_eq!(children(&drained.records), ["c1"]);
    // Protocol v2: the commit appended and left the inbox's bad line to the
    // drain, which quarantines it and agent-deck's WAL's.
    assert_eq!(drained.quarantined.len(), 2);
    ob.forget_child(&id, "c1").unwrap();
    // The limit is tight: the longest name derived from it is the longest
    // a file name may be.
    assert_eq!(longest_name_created(&io.ops()), 255);

    let err = ob.paths(&"p".repeat(MAX_ID_BYTES + 1)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::ParentIdTooLong { len, limit, .. } if len == MAX_ID_BYTES + 1 && limit == MAX_ID_BYTES)
            && msg.contains(&format!("the limit is {MAX_ID_BYTES} bytes")),
        "{msg}"
    );
}

#[test]
fn an_escaped_id_at_the_limit_works_too() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(dir.path()).unwrap();
    // Grow an id whose file name needs escaping until one more byte would
    // not fit.
    let mut id = String::from("a/");
    while ob.paths(&format!("{id}b")).is_ok() {
        id.push('b');
    }
    let paths = ob.paths(&id).unwrap();
    assert_eq!(paths.stem.len(), MAX_ID_BYTES, "{}", paths.stem);
    std::fs::write(&paths.inbox, CORRUPT).unwrap();
    ob.commit(&id, finished("c1", "escaped, at the limit"))
        .unwrap();
    assert_eq!(children(&ob.drain(&id).unwrap().records), ["c1"]);
}

// ---------------------------------------------------------------------------
// Defect 10: sweeps and forget
// ---------------------------------------------------------------------------

/// A record as agent-deck may write it: no timestamp at all.
const NO_TIMESTAMP: &str =
    r#"{"child_session_id":"c0","from_status":"running","to_status":"waiting"}"#;

#[test]
fn a_stale_sweep_keeps_records_whose_age_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(dir.path()).unwrap();
    let paths = ob.paths(PARENT).unwrap();
    let zero = NO_TIMESTAMP.replace(
        "\"to_status\":\"waiting\"",
        "\"to_status\":\"waiting\",\"timestamp\":\"0001-01-01T00:00:00Z\"",
    );
    let zero = zero.replace("c0", "c1");
    std::fs::write(&paths.inbox, format!("{NO_TIMESTAMP}\n{zero}\n")).unwrap();
    let mut old = finished("c2", "a week and a day ago");
    old.timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    ob.commit(PARENT, old).unwrap();

    let now = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let ob = ob.with_clock(move || now);
    assert_eq!(ob.sweep_stale(PARENT, DEFAULT_STALE_AGE).unwrap(), 1);
    assert_eq!(children(&ob.peek(PARENT).unwrap()), ["c0", "c1"]);
}

#[test]
fn one_odd_file_name_does_not_stop_the_sweep_of_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(dir.path()).unwrap();
    let odd = dir
        .path()
        .join(format!("inboxes/{}.jsonl", "x".repeat(230)));
    std::fs::write(&odd, format!("{NO_TIMESTAMP}\n")).unwrap();
    for parent in ["a", "z"] {
        let mut old = finished("c1", "stale");
        old.timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
        ob.commit(parent, old).unwrap();
    }
    let report = ob.sweep_stale_all(DEFAULT_STALE_AGE).unwrap();
    assert_eq!(report.dropped, 2);
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    let (path, why) = &report.skipped[0];
    assert_eq!(path, &odd);
    assert!(
        why.to_string()
            .contains(&format!("the limit is {MAX_ID_BYTES} bytes")),
        "{why}"
    );
    assert!(odd.exists(), "a file the outbox cannot own is left alone");
    for parent in ["a", "z"] {
        assert!(!ob.has_pending(parent).unwrap(), "{parent}");
    }
}

#[test]
fn forget_child_forgets_that_child_only() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(dir.path()).unwrap();
    for child in ["a", "a@b", "ab"] {
        ob.commit(PARENT, finished(child, "turn one")).unwrap();
    }
    assert_eq!(ob.drain(PARENT).unwrap().records.len(), 3);
    assert_eq!(ob.forget_child(PARENT, "a").unwrap(), 1);
    // "a" is forgotten: its turn is delivered again; the others are not.
    for child in ["a", "a@b", "ab"] {
        ob.commit(PARENT, finished(child, "turn one")).unwrap();
    }
    assert_eq!(children(&ob.drain(PARENT).unwrap().records), ["a"]);
    assert_eq!(ob.forget_child(PARENT, "a@b").unwrap(), 1);
    assert_eq!(ob.forget_child(PARENT, "a@b").unwrap(), 0);
}

// ---------------------------------------------------------------------------
// Defect 12: read-only operations create nothing
// ---------------------------------------------------------------------------

#[test]
fn read_only_operations_on_a_lazily_opened_root_create_nothing() {
    let io = CrashIo::new();
    let root = Path::new("/data");
    let paths = ParentPaths::new(root, PARENT).unwrap();
    let line = outbox::format::encode_line(&finished("c1", "pending")).unwrap();
    io.install_file(&paths.inbox, &line);
    let before = io.current_image();

    let ob = Outbox::open_lazy_with(root, io.clone());
    assert!(ob.has_pending(PARENT).unwrap());
    assert_eq!(children(&ob.peek(PARENT).unwrap()), ["c1"]);
    assert_eq!(ob.handover(PARENT).unwrap(), Default::default());
    assert!(!ob.has_pending("another").unwrap());
    let mutating: Vec<String> = io
        .ops()
        .iter()
        .filter(|o| o.kind.is_mutating())
        .map(ToString::to_string)
        .collect();
    assert!(mutating.is_empty(), "{mutating:?}");
    assert_eq!(io.current_image(), before);

    // A write through the same handle creates what it needs, durably.
    assert_eq!(children(&ob.drain(PARENT).unwrap().records), ["c1"]);
    ob.commit(PARENT, finished("c2", "next")).unwrap();
    let rebooted = CrashIo::from_image(&io.crash_image());
    let ob = Outbox::open_lazy_with(root, rebooted);
    assert_eq!(children(&ob.drain(PARENT).unwrap().records), ["c2"]);
}

// ---------------------------------------------------------------------------
// Defect 14: a running agent-deck
// ---------------------------------------------------------------------------

/// A hook [`HookIo`] calls before delegating a rename or a lock.
type Hook = Arc<dyn Fn(&Path, Option<&Path>) + Send + Sync>;

/// The real file system, with hooks run before each rename (`(from,
/// Some(to))`) and each lock (`(path, None)`): a second process or a
/// paused writer, played inside one test.
#[derive(Clone)]
struct HookIo {
    inner: StdIo,
    hook: Hook,
}

impl Io for HookIo {
    type File = <StdIo as Io>::File;
    type Reader = <StdIo as Io>::Reader;
    type Lock = <StdIo as Io>::Lock;

    fn create_new(&self, path: &Path) -> std::io::Result<Self::File> {
        self.inner.create_new(path)
    }
    fn write_all(&self, file: &mut Self::File, data: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(file, data)
    }
    fn sync_file(&self, file: &mut Self::File) -> std::io::Result<()> {
        self.inner.sync_file(file)
    }
    fn open_append(
        &self,
        path: &Path,
    ) -> std::io::Result<Option<outbox::io::Appending<Self::File>>> {
        self.inner.open_append(path)
    }
    fn sync_data(&self, file: &mut Self::File) -> std::io::Result<()> {
        self.inner.sync_data(file)
    }
    fn open_read(&self, path: &Path) -> std::io::Result<Option<Self::Reader>> {
        self.inner.open_read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        (self.hook)(from, Some(to));
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<bool> {
        self.inner.remove_file(path)
    }
    fn file_len(&self, path: &Path) -> std::io::Result<Option<u64>> {
        self.inner.file_len(path)
    }
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> std::io::Result<Vec<OsString>> {
        self.inner.list_dir(dir)
    }
    fn lock(&self, path: &Path) -> std::io::Result<Self::Lock> {
        (self.hook)(path, None);
        self.inner.lock(path)
    }
}

/// A sweep never removes the temporary file of a live writer: a commit is
/// paused between creating its temp file and renaming it while a sweep (of
/// another outbox value, as another process would) lists the directory,
/// sees the temp file, and waits for the inbox lock; the commit then
/// completes, and the sweep finds nothing stale.
#[test]
fn a_sweep_never_removes_the_temp_file_of_a_live_writer() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::channel;

    let dir = tempfile::tempdir().unwrap();
    let paths = ParentPaths::new(dir.path(), PARENT).unwrap();
    let (paused_tx, paused_rx) = channel::<PathBuf>();
    let (resume_tx, resume_rx) = channel::<()>();
    let pause_next_rename = Arc::new(AtomicBool::new(false));
    let resume_on_lock = Arc::new(AtomicBool::new(false));
    let hook: Hook = {
        let (pause, resume) = (Arc::clone(&pause_next_rename), Arc::clone(&resume_on_lock));
        let (paused_tx, resume_tx) = (Mutex::new(paused_tx), Mutex::new(resume_tx));
        let resume_rx = Mutex::new(resume_rx);
        let (inbox, inbox_lock) = (paths.inbox.clone(), paths.inbox_lock.clone());
        Arc::new(move |path, to| match to {
            Some(to) if to == inbox && pause.swap(false, Ordering::SeqCst) => {
                paused_tx.lock().unwrap().send(path.to_owned()).unwrap();
                resume_rx.lock().unwrap().recv().unwrap();
            }
            None if path == inbox_lock && resume.swap(false, Ordering::SeqCst) => {
                resume_tx.lock().unwrap().send(()).unwrap();
            }
            _ => {}
        })
    };
    let io = HookIo {
        inner: StdIo::new(),
        hook,
    };
    let writer = Outbox::open_with(dir.path(), io.clone()).unwrap();
    let sweeper = Outbox::open_with(dir.path(), io).unwrap();

    pause_next_rename.store(true, Ordering::SeqCst);
    let commit = std::thread::spawn(move || writer.commit(PARENT, finished("c1", "live")));
    let temp = paused_rx.recv().unwrap();
    assert!(temp.exists(), "the writer's temp file is there");
    // The writer holds the inbox lock: the next lock of it is the sweep's.
    resume_on_lock.store(true, Ordering::SeqCst);
    let report = sweeper.sweep_stale_all(DEFAULT_STALE_AGE).unwrap();
    commit.join().unwrap().unwrap();
    assert_eq!(report.temp_files_removed, 0, "{report:?}");
    assert!(report.skipped.is_empty(), "{report:?}");
    assert_eq!(children(&sweeper.drain(PARENT).unwrap().records), ["c1"]);
}

/// The README says pointing the outbox at agent-deck's data directory is
/// safe only while agent-deck is stopped. This is why: an append agent-deck
/// makes between the outbox's read and its rename is lost.
#[test]
fn an_agent_deck_append_between_read_and_rename_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let paths = ParentPaths::new(dir.path(), PARENT).unwrap();
    let line = outbox::format::encode_line(&finished("from-agent-deck", "appended")).unwrap();
    // A running agent-deck: the moment the outbox renames a new inbox
    // into place, agent-deck appends a record to the old one, as it does,
    // holding no lock the outbox knows of.
    let inbox = paths.inbox.clone();
    let io = HookIo {
        inner: StdIo::new(),
        hook: Arc::new(move |_, to| {
            if to == Some(inbox.as_path()) {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&inbox)
                    .unwrap();
                f.write_all(&line).unwrap();
            }
        }),
    };
    let ob = Outbox::open_with(dir.path(), io).unwrap();
    ob.commit(PARENT, finished("ours", "committed")).unwrap();
    let delivered = ob.drain(PARENT).unwrap().records;
    assert_eq!(
        children(&delivered),
        ["ours"],
        "agent-deck's append survived: update the README's coexistence note"
    );
}

/// The other half of the claim: with agent-deck stopped, everything it left
/// (an inbox, a WAL of a drain it did not finish, its ledger) is drained
/// once, through the same files.
#[test]
fn files_a_stopped_agent_deck_left_drain_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for sub in [
        "inboxes",
        "runtime/inbox-inflight",
        "runtime/consumed-turns",
    ] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let line = |child: &str, summary: &str| {
        format!(
            concat!(
                r#"{{"child_session_id":"{}","child_title":"","profile":"","from_status":"running","#,
                r#""to_status":"waiting","timestamp":"2026-11-28T11:20:59Z","kind":"finished","#,
                r#""done_status":"success","done_summary":"{}"}}"#,
                "\n"
            ),
            child, summary
        )
    };
    // agent-deck's own sanitised name of the session "team/alpha".
    let stem = "team_alpha";
    std::fs::write(
        root.join(format!("inboxes/{stem}.jsonl")),
        line("c-inbox", "x"),
    )
    .unwrap();
    std::fs::write(
        root.join(format!("runtime/inbox-inflight/{stem}.jsonl")),
        line("c-wal", "y") + &line("c-consumed", "z"),
    )
    .unwrap();
    let mut consumed = Record::default();
    consumed.child_session_id = "c-consumed".into();
    consumed.kind = "finished".into();
    consumed.done_status = "success".into();
    consumed.done_summary = "z".into();
    consumed.from_status = "running".into();
    consumed.to_status = "waiting".into();
    std::fs::write(
        root.join(format!("runtime/consumed-turns/{stem}.json")),
        format!("{{\"{}\":1764000000}}", outbox::turn_fingerprint(&consumed)),
    )
    .unwrap();
    let ob = Outbox::open(root).unwrap();
    // The sanitised name is the id that names agent-deck's files.
    let drained = ob.drain(stem).unwrap();
    assert_eq!(children(&drained.records), ["c-wal", "c-inbox"]);
    assert_eq!(drained.already_consumed, 1);
    assert!(ob.drain(stem).unwrap().records.is_empty());
}

// ---------------------------------------------------------------------------
// A failed fdatasync's pages: NULs before a later commit's line
// ---------------------------------------------------------------------------

/// The inbox after this story and a crash: commit A's fdatasync failed (A
/// returned an error) and its pages were never written; commit B appended
/// after it (the inbox in memory ended in A's newline, so B took the fast
/// path) and its fdatasync succeeded. On disk, A's bytes (`keep` of them
/// survived) are NULs, and B's line follows with no newline in between.
fn inbox_after_a_lost_append(keep: usize) -> (tempfile::TempDir, Outbox) {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(dir.path()).unwrap();
    ob.commit(PARENT, finished("warm", "w")).unwrap();
    ob.drain(PARENT).unwrap();
    ob.commit(PARENT, finished("child-a", "A")).unwrap();
    let inbox = ob.paths(PARENT).unwrap().inbox;
    let a_len = std::fs::read(&inbox).unwrap().len();
    ob.commit(PARENT, finished("child-b", "B")).unwrap();
    let mut bytes = std::fs::read(&inbox).unwrap();
    for b in &mut bytes[keep..a_len] {
        *b = 0;
    }
    std::fs::write(&inbox, &bytes).unwrap();
    drop(ob);
    let ob = Outbox::open(dir.path()).unwrap();
    (dir, ob)
}

#[test]
fn a_record_written_after_a_lost_append_is_delivered() {
    let (_dir, ob) = inbox_after_a_lost_append(0);
    assert_eq!(children(&ob.peek(PARENT).unwrap()), ["child-b"]);
    let drained = ob.drain(PARENT).unwrap();
    assert_eq!(children(&drained.records), ["child-b"]);
    assert!(drained.bad_lines.is_empty(), "{:?}", drained.bad_lines);
}

#[test]
fn a_half_written_append_is_set_aside_and_the_next_record_delivered() {
    let (_dir, ob) = inbox_after_a_lost_append(30);
    let drained = ob.drain(PARENT).unwrap();
    assert_eq!(children(&drained.records), ["child-b"]);
    assert_eq!(drained.bad_lines.len(), 1, "A's surviving half");
    assert_eq!(drained.bad_lines[0].offset, 0);
    assert_eq!(drained.bad_lines[0].len, 30);
    assert_eq!(drained.quarantined.len(), 1);
}
