//! `outbox doctor`: what is under the data root, and what needs a person.
//!
//! Reads the root's directories directly (no lock, no drain, nothing
//! consumed) and prints one line per finding, each starting with `ok`,
//! `info` or `problem`. A problem says what to do.

use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

use clap::Args;
use outbox::MAX_LEDGER_BYTES;
#[cfg(feature = "postgres")]
use outbox::Store;
use outbox::format::{MAX_LINE_BYTES, scan};
#[cfg(feature = "postgres")]
use outbox_postgres::{PgOutbox, SCHEMA_VERSION};

/// Check the store. The file store: which setting chose the data root,
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

/// What marks the temporary file of a durable write (`<target>.tmp-<pid>-<n>`).
const TEMP_MARK: &str = ".tmp-";
/// What marks a quarantine file (`<id>.{jsonl,wal}.quarantine-<...>`).
const QUARANTINE_MARK: &str = ".quarantine-";

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
    for dir in [
        root.to_path_buf(),
        root.join(INBOX_DIR),
        root.join(WAL_DIR),
        root.join(LEDGER_DIR),
        root.join(STOP_BLOCKS_DIR),
    ] {
        check_dir(&mut report, &dir);
    }
    inboxes(&mut report, &root.join(INBOX_DIR));
    wals(&mut report, &root.join(WAL_DIR), false);
    wals(&mut report, &root.join(INBOX_DIR), true);
    ledgers(&mut report, &root.join(LEDGER_DIR));
    for (name, path) in names(&mut report, &root.join(STOP_BLOCKS_DIR)) {
        if name.contains(TEMP_MARK) {
            stray_temp(&mut report, &path);
        }
    }
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

fn inboxes(report: &mut Report, dir: &Path) {
    for (name, path) in names(report, dir) {
        if name.contains(QUARANTINE_MARK) {
            report.problem(format!(
                "{}: lines a drain or commit could not read were set aside here; inspect \
                 them, recommit what matters (outbox commit --json), then delete the file",
                path.display()
            ));
        } else if name.contains(TEMP_MARK) {
            stray_temp(report, &path);
        } else if let Some(stem) = name.strip_suffix(".jsonl") {
            match count(&path) {
                Ok((0, 0)) => {}
                Ok((records, bad)) => {
                    if records > 0 {
                        report.info(format!("parent {stem}: {records} record(s) pending"));
                    }
                    if bad > 0 {
                        report.problem(format!(
                            "{}: {bad} unreadable line(s); the next commit or drain moves \
                             them to a quarantine file (run outbox drain --parent {stem})",
                            path.display()
                        ));
                    }
                }
                Err(e) => report.problem(format!(
                    "cannot read {}: {e}; fix its permissions",
                    path.display()
                )),
            }
        }
    }
}

/// The WALs in `dir`: agent-deck's (`runtime/inbox-inflight/<id>.jsonl`),
/// or, with `claimed`, protocol v2's claims (`inboxes/<id>.jsonl.claimed`;
/// the inbox directory's temp files are `inboxes`' to report).
fn wals(report: &mut Report, dir: &Path, claimed: bool) {
    let suffix = if claimed { ".jsonl.claimed" } else { ".jsonl" };
    for (name, path) in names(report, dir) {
        if name.contains(TEMP_MARK) {
            if !claimed {
                stray_temp(report, &path);
            }
        } else if let Some(stem) = name.strip_suffix(suffix) {
            match count(&path) {
                Ok((0, 0)) => {}
                Ok((records, bad)) => {
                    let unreadable = match bad {
                        0 => String::new(),
                        n => format!(" and {n} unreadable line(s)"),
                    };
                    report.problem(format!(
                        "parent {stem}: a WAL with {records} record(s){unreadable} from a \
                         drain that did not finish, or left by drain --max; the next drain \
                         delivers what is not yet consumed: run outbox drain --parent {stem}"
                    ));
                }
                Err(e) => report.problem(format!(
                    "cannot read {}: {e}; fix its permissions",
                    path.display()
                )),
            }
        }
    }
}

fn ledgers(report: &mut Report, dir: &Path) {
    for (name, path) in names(report, dir) {
        if name.contains(TEMP_MARK) {
            stray_temp(report, &path);
        } else if let Some(stem) = name.strip_suffix(".jsonl") {
            // Protocol v2's append-only ledger: one line a mark (and a prune
            // line a drain). A new process, each CLI call, reads it whole.
            match ledger_size(&path) {
                Ok((len, _)) if len > MAX_LEDGER_BYTES => too_large(report, stem, &path, len),
                Ok((len, lines)) => report.info(format!(
                    "parent {stem}: consumed ledger of {len} bytes, {lines} lines (each outbox \
                     call reads it whole once; drains compact it)"
                )),
                Err(e) => report.problem(format!("cannot read {}: {e}", path.display())),
            }
        } else if let Some(stem) = name.strip_suffix(".json") {
            if dir.join(format!("{stem}.jsonl")).exists() {
                // The v2 ledger is read first: this one is never read or
                // migrated again (a migration whose unlink failed).
                report.info(format!(
                    "parent {stem}: a leftover agent-deck consumed ledger, {} (never read \
                     while {stem}.jsonl exists; its entries were migrated there; it may be \
                     deleted once no agent-deck uses this root)",
                    path.display()
                ));
                continue;
            }
            match fs::metadata(&path) {
                Ok(meta) if meta.len() > MAX_LEDGER_BYTES => {
                    too_large(report, stem, &path, meta.len())
                }
                Ok(meta) => report.info(format!(
                    "parent {stem}: agent-deck's consumed ledger of {} bytes (read while no \
                     {stem}.jsonl exists; the next drain that marks a turn migrates it)",
                    meta.len()
                )),
                Err(e) => report.problem(format!("cannot stat {}: {e}", path.display())),
            }
        }
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

fn too_large(report: &mut Report, stem: &str, path: &Path, len: u64) {
    report.problem(format!(
        "parent {stem}: consumed ledger {} of {len} bytes is over the {MAX_LEDGER_BYTES}-byte \
         read limit: every commit and drain of this parent fails until it is moved aside \
         (its consumed turns may then be delivered again)",
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
        let report = examine(dir.path(), "$OUTBOX_ROOT");
        assert!(!report.has_problems(), "{}", report.render());
        assert!(report.render().contains("(from $OUTBOX_ROOT)"));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
