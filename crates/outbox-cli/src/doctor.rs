//! `outbox doctor`: what is under the data root, and what needs a person.
//!
//! Reads the root's directories directly (no lock, no drain, nothing
//! consumed) and prints one line per finding, each starting with `ok`,
//! `info` or `problem`. A problem says what to do.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

use clap::Args;
use outbox::MAX_LEDGER_BYTES;
#[cfg(feature = "postgres")]
use outbox::Store;
use outbox::format::{MAX_LINE_BYTES, scan};
use outbox::names::{Dir, FileKind};
#[cfg(feature = "postgres")]
use outbox_postgres::{PgOutbox, SCHEMA_VERSION};

mod permissions;

/// Check the store. The file store: which setting chose the data root,
/// whether other users can change it (the check every command runs), what
/// in it group or others can read (with the chmod that fixes it),
/// permissions, pending records, unfinished drains, quarantined lines,
/// stray temporary files and the consumed ledgers' sizes. The PostgreSQL
/// store (--store postgres://...): whether it can connect, the schema's
/// version (connecting creates or migrates it), pending records per parent.
///
/// Prints one line per finding: `ok`, `info` or `problem` (with what to
/// do). Exit status 0 when nothing needs attention, 1 when something does.
/// Consumes nothing and takes no lock; to check that it may create files it
/// creates and removes one probe file (`.outbox-doctor-probe-<pid>`) in
/// each directory of the root that exists.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  outbox doctor
  outbox --root /srv/agents doctor || echo 'see the problem lines above'")]
pub struct DoctorArgs {}

/// The directories of the layout, relative to the root (agent-deck's names,
/// as in `outbox::ParentPaths`).
const INBOX_DIR: &str = "inboxes";
const WAL_DIR: &str = "runtime/inbox-inflight";
const LEDGER_DIR: &str = "runtime/consumed-turns";
const STOP_BLOCKS_DIR: &str = "runtime/stop-blocks";

/// Examines the PostgreSQL store at `url`, chosen by the setting `from`:
/// connects (which creates or migrates the schema), then lists the pending
/// records per parent. Consumes nothing.
#[cfg(feature = "postgres")]
pub fn examine_postgres(url: &str, from: &str) -> Report {
    let mut report = Report::default();
    let store = match PgOutbox::connect(url) {
        Ok(store) => store,
        Err(e) => {
            report.info(format!("store: PostgreSQL (from {from})"));
            report.problem(format!(
                "{e}; check the URL (--store, $OUTBOX_STORE) and that the server runs and \
                 accepts this user"
            ));
            return report;
        }
    };
    report.info(format!(
        "store: PostgreSQL {} (from {from})",
        store.describe()
    ));
    report.ok(format!(
        "connected; schema {} is at version {SCHEMA_VERSION}",
        store.schema()
    ));
    match store.pending_counts() {
        Ok(counts) => {
            for (parent, n) in counts {
                report.info(format!("parent {parent}: {n} record(s) pending"));
            }
        }
        Err(e) => report.problem(format!("cannot count the pending records: {e}")),
    }
    if !report.has_problems() {
        report.ok("nothing needs attention".to_owned());
    }
    report
}

/// The findings, in the order they were made.
#[derive(Debug, Default)]
pub struct Report {
    /// `(level, text)`: level `ok`, `info` or `problem`.
    pub lines: Vec<(&'static str, String)>,
}

impl Report {
    pub(crate) fn ok(&mut self, text: String) {
        self.lines.push(("ok", text));
    }
    pub(crate) fn info(&mut self, text: String) {
        self.lines.push(("info", text));
    }
    pub(crate) fn problem(&mut self, text: String) {
        self.lines.push(("problem", text));
    }

    /// Whether anything needs attention.
    pub fn has_problems(&self) -> bool {
        self.lines.iter().any(|(level, _)| *level == "problem")
    }

    /// The report as text, one finding a line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (level, text) in &self.lines {
            out.push_str(level);
            out.push_str(": ");
            out.push_str(&text.replace('\n', " "));
            out.push('\n');
        }
        out
    }
}

/// Examines the file store on `root`, chosen by the setting `from`.
pub fn examine(root: &Path, from: &str) -> Report {
    let mut report = Report::default();
    report.info(format!(
        "file store: data root {} (from {from})",
        root.display()
    ));
    match fs::metadata(root) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            report.problem(format!(
                "{} does not exist: nothing was ever committed there, or the root is \
                 mistyped (check --root and $OUTBOX_ROOT); the first commit creates it",
                root.display()
            ));
            return report;
        }
        Err(e) => {
            report.problem(format!("cannot stat {}: {e}", root.display()));
            return report;
        }
        Ok(meta) if !meta.is_dir() => {
            report.problem(format!(
                "{} is not a directory: point --root or $OUTBOX_ROOT at a directory",
                root.display()
            ));
            return report;
        }
        Ok(_) => {}
    }
    permissions::check(&mut report, root);
    for dir in [
        root.to_path_buf(),
        root.join(INBOX_DIR),
        root.join(WAL_DIR),
        root.join(LEDGER_DIR),
        root.join(STOP_BLOCKS_DIR),
    ] {
        check_dir(&mut report, &dir);
    }
    let parents = walk(&mut report, root);
    pending(&mut report, root, &parents);
    if !report.has_problems() {
        report.ok("nothing needs attention".to_owned());
    }
    report
}

/// Whether `dir` can be listed and written to (a probe file is created and
/// removed); a missing directory is fine (created when first needed).
fn check_dir(report: &mut Report, dir: &Path) {
    match fs::read_dir(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => return,
        Err(e) => {
            report.problem(format!(
                "cannot list {}: {e}; fix its permissions (chmod u+rwx)",
                dir.display()
            ));
            return;
        }
        Ok(_) => {}
    }
    let probe = dir.join(format!(".outbox-doctor-probe-{}", std::process::id()));
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(file) => {
            drop(file);
            let _ = fs::remove_file(&probe);
            report.ok(format!("{} is readable and writable", dir.display()));
        }
        Err(e) => report.problem(format!(
            "cannot create files in {}: {e}; commits and drains will fail until its \
             permissions allow it (chmod u+rwx, or chown to the agents' user)",
            dir.display()
        )),
    }
}

/// The file names in `dir`, sorted; empty when it does not exist.
fn names(report: &mut Report, dir: &Path) -> Vec<(String, PathBuf)> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(_) => return Vec::new(), // Reported by check_dir.
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(|entry| match entry {
            Ok(entry) => Some((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            )),
            Err(e) => {
                report.problem(format!("cannot list {}: {e}", dir.display()));
                None
            }
        })
        .collect();
    out.sort();
    out
}

/// Records and unreadable lines in a JSON-lines file.
fn count(path: &Path) -> io::Result<(usize, usize)> {
    let scan = scan(fs::File::open(path)?, MAX_LINE_BYTES)?;
    Ok((scan.records.len(), scan.bad_lines.len()))
}

/// A parent id as the shell reads it, for findings and advice.
fn shown(id: &str) -> String {
    crate::hooks::shell_quote(id)
}

/// What the walk found of one parent's records.
#[derive(Debug, Default)]
struct Seen {
    /// Records staged in a drain's WAL (the claim, or agent-deck's).
    staged: usize,
}

/// Walks the outbox's directories under `root`, reading each name by the
/// outbox's grammar ([`outbox::names::parse`]), never by substring;
/// returns the parents with records (an inbox or a WAL), by id.
fn walk(report: &mut Report, root: &Path) -> BTreeMap<String, Seen> {
    let mut parents = BTreeMap::new();
    for dir in [
        Dir::Inboxes,
        Dir::InboxInflight,
        Dir::ConsumedTurns,
        Dir::StopBlocks,
    ] {
        walk_dir(report, dir, &root.join(dir.relative_path()), &mut parents);
    }
    parents
}

fn walk_dir(report: &mut Report, dir: Dir, path: &Path, parents: &mut BTreeMap<String, Seen>) {
    for (name, path) in names(report, path) {
        let Some(file) = outbox::names::parse(dir, &name) else {
            continue; // Not the outbox's (a probe, a stranger's file).
        };
        if file.temp {
            stray_temp(report, &path);
            continue;
        }
        let Some(id) = file.parent else {
            report.info(format!(
                "{}: no parent id maps to this name; no outbox command reads it",
                path.display()
            ));
            continue;
        };
        match file.kind {
            FileKind::Quarantine => report.problem(format!(
                "{}: lines a drain could not read were set aside here; inspect them, \
                 recommit what matters (outbox commit --json), then delete the file",
                path.display()
            )),
            FileKind::Inbox | FileKind::Claimed | FileKind::AgentDeckWal => {
                let seen = parents.entry(id.clone()).or_default();
                match count(&path) {
                    Ok((records, bad)) => {
                        if file.kind != FileKind::Inbox {
                            seen.staged += records;
                        }
                        if bad > 0 {
                            unreadable(report, &path, &id, bad);
                        }
                    }
                    Err(e) => report.problem(format!(
                        "cannot read {}: {e}; fix its permissions",
                        path.display()
                    )),
                }
            }
            FileKind::Ledger => ledger(report, &id, &path),
            FileKind::AgentDeckLedger => agent_deck_ledger(report, &id, &file.stem, &path),
            _ => {}
        }
    }
}

fn unreadable(report: &mut Report, path: &Path, id: &str, bad: usize) {
    report.problem(format!(
        "{}: {bad} unreadable line(s); the next drain of parent {} sets them aside in a \
         quarantine file, without losing the other records (`outbox peek {}` shows what \
         it will deliver)",
        path.display(),
        shown(id),
        crate::hooks::parent_arg(id)
    ));
}

/// The pending records of each parent, as a drain would deliver them
/// (`peek`: one per child, consumed turns left out), not lines.
fn pending(report: &mut Report, root: &Path, parents: &BTreeMap<String, Seen>) {
    let store = outbox::Outbox::open_lazy(root);
    for (id, seen) in parents {
        match store.peek(id) {
            Ok(records) if records.is_empty() => {}
            Ok(records) => {
                let staged = match seen.staged {
                    0 => String::new(),
                    n => format!(
                        " ({n} of them staged by an earlier drain: the rest of a drain --max, \
                         or a drain that did not finish; the next drain delivers them first)"
                    ),
                };
                report.info(format!(
                    "parent {}: {} record(s) pending{staged}",
                    shown(id),
                    records.len()
                ));
            }
            Err(e) => report.problem(format!(
                "parent {}: cannot read its records: {e}",
                shown(id)
            )),
        }
    }
}

/// The ledger findings of `dir` alone.
#[cfg(test)]
fn ledgers(report: &mut Report, dir: &Path) {
    walk_dir(report, Dir::ConsumedTurns, dir, &mut BTreeMap::new());
}

/// Protocol v2's append-only ledger: one line a mark (and a prune line a
/// drain). A new process, each CLI call, reads it whole.
fn ledger(report: &mut Report, id: &str, path: &Path) {
    match ledger_size(path) {
        Ok((len, _)) if len > MAX_LEDGER_BYTES => too_large(report, id, path, len),
        Ok((len, lines)) => report.info(format!(
            "parent {}: consumed ledger of {len} bytes, {lines} lines (each outbox call reads \
             it whole once; drains compact it)",
            shown(id)
        )),
        Err(e) => report.problem(format!("cannot read {}: {e}", path.display())),
    }
}

fn agent_deck_ledger(report: &mut Report, id: &str, stem: &str, path: &Path) {
    if path.with_file_name(format!("{stem}.jsonl")).exists() {
        // The v2 ledger is read first: this one is never read or
        // migrated again (a migration whose unlink failed).
        report.info(format!(
            "parent {}: a leftover agent-deck consumed ledger, {} (never read while \
             {stem}.jsonl exists; its entries were migrated there; it may be deleted once no \
             agent-deck uses this root)",
            shown(id),
            path.display()
        ));
        return;
    }
    match fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_LEDGER_BYTES => too_large(report, id, path, meta.len()),
        Ok(meta) => report.info(format!(
            "parent {}: agent-deck's consumed ledger of {} bytes (read while no {stem}.jsonl \
             exists; the next drain that marks a turn migrates it)",
            shown(id),
            meta.len()
        )),
        Err(e) => report.problem(format!("cannot stat {}: {e}", path.display())),
    }
}

/// A ledger's size in bytes and, when it is within the read limit, its
/// lines (counted a buffer at a time).
fn ledger_size(path: &Path) -> io::Result<(u64, u64)> {
    let len = fs::metadata(path)?.len();
    if len > MAX_LEDGER_BYTES {
        return Ok((len, 0));
    }
    let mut reader = io::BufReader::new(fs::File::open(path)?);
    let mut lines = 0;
    loop {
        let buf = io::BufRead::fill_buf(&mut reader)?;
        if buf.is_empty() {
            return Ok((len, lines));
        }
        lines += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        let n = buf.len();
        io::BufRead::consume(&mut reader, n);
    }
}

fn too_large(report: &mut Report, id: &str, path: &Path, len: u64) {
    report.problem(format!(
        "parent {}: consumed ledger {} of {len} bytes is over the {MAX_LEDGER_BYTES}-byte \
         read limit: every commit and drain of this parent fails until it is moved aside \
         (its consumed turns may then be delivered again)",
        shown(id),
        path.display()
    ));
}

fn stray_temp(report: &mut Report, path: &Path) {
    report.problem(format!(
        "{}: a temporary file left by a write that crashed (or one in progress right \
         now); once no outbox process runs, delete it",
        path.display()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(report: &Report) -> Vec<&str> {
        report.lines.iter().map(|(l, _)| *l).collect()
    }

    /// The ledger findings for a directory holding the v2 ledger `p.jsonl`
    /// (one mark) and an agent-deck ledger named `legacy`.
    fn ledger_report(legacy: &str) -> (Report, String) {
        let dir = tempfile::tempdir().unwrap();
        let ledger_dir = dir.path().join(LEDGER_DIR);
        fs::create_dir_all(&ledger_dir).unwrap();
        fs::write(
            ledger_dir.join("p.jsonl"),
            "{\"outbox_ledger\":2,\"generation\":\"00\",\"entries\":1}\n[\"t\",1]\n",
        )
        .unwrap();
        fs::write(ledger_dir.join(legacy), "{\"t\":1}").unwrap();
        let mut report = Report::default();
        ledgers(&mut report, &ledger_dir);
        let text = report.render();
        (report, text)
    }

    #[test]
    fn both_ledger_formats_are_sized() {
        let (report, text) = ledger_report("q.json");
        assert!(
            text.contains("parent p: consumed ledger of 58 bytes, 2 lines"),
            "{text}"
        );
        assert!(
            text.contains("parent q: agent-deck's consumed ledger of 7 bytes"),
            "{text}"
        );
        assert_eq!(levels(&report), ["info", "info"]);
    }

    #[test]
    fn an_agent_deck_ledger_beside_a_v2_one_is_not_said_to_be_migrated() {
        // Both files: a migration whose unlink failed. The v2 ledger is
        // read first, so the JSON one is never read nor migrated again.
        let (_, text) = ledger_report("p.json");
        assert!(!text.contains("migrates it"), "{text}");
        assert!(text.contains("leftover"), "{text}");
    }

    #[test]
    fn a_ledger_over_the_read_limit_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let ledger_dir = dir.path().join(LEDGER_DIR);
        fs::create_dir_all(&ledger_dir).unwrap();
        for name in ["p.jsonl", "q.json"] {
            let f = fs::File::create(ledger_dir.join(name)).unwrap();
            f.set_len(MAX_LEDGER_BYTES + 1).unwrap(); // sparse
        }
        let mut report = Report::default();
        ledgers(&mut report, &ledger_dir);
        assert_eq!(levels(&report), ["problem", "problem"]);
        let text = report.render();
        assert!(text.contains("parent p: consumed ledger"), "{text}");
        assert!(
            text.contains("is over the 67108864-byte read limit"),
            "{text}"
        );
        assert!(text.contains("parent q: consumed ledger"), "{text}");
    }

    #[test]
    fn a_missing_root_is_a_problem_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("typo");
        let report = examine(&root, "--root");
        assert_eq!(levels(&report), ["info", "problem"]);
        assert!(report.render().contains("typo does not exist"));
        assert!(!root.exists(), "doctor created nothing");
    }

    #[test]
    fn an_empty_root_is_fine_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        // Private, as the outbox creates it (a 0755 root is a finding).
        fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let report = examine(dir.path(), "$OUTBOX_ROOT");
        assert!(!report.has_problems(), "{}", report.render());
        assert!(report.render().contains("(from $OUTBOX_ROOT)"));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
