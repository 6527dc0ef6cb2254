//! Runs the built `outbox` binary as its callers do: a process with
//! arguments, an environment and stdin.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The parent id most tests commit to and drain.
pub const PARENT: &str = "conductor";

/// The path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_outbox");

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// The exit status (a run killed by a signal fails the helper).
    pub code: i32,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

impl Run {
    /// The non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// A command for the binary with a clean environment for the data root:
/// `OUTBOX_STORE`, `OUTBOX_STORE_FILE`, `OUTBOX_ROOT`, `XDG_DATA_HOME` and
/// `HOME` removed.
pub fn command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("OUTBOX_STORE")
        .env_remove("OUTBOX_STORE_FILE")
        .env_remove("OUTBOX_ROOT")
        .env_remove("XDG_DATA_HOME")
        .env_remove("HOME")
        .env_remove("RUST_BACKTRACE");
    cmd
}

/// Runs `cmd` with `stdin` as its input and checks what every run must
/// hold: it exited (no signal) and did not panic.
pub fn run_command(mut cmd: Command, stdin: &[u8]) -> Run {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the outbox binary");
    let mut input = child.stdin.take().unwrap();
    let bytes = stdin.to_vec();
    // A separate writer, so a large input cannot deadlock against a large
    // output; a child that exits without reading closes the pipe (ignored).
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let output = child
        .wait_with_output()
        .expect("wait for the outbox binary");
    writer.join().unwrap();
    let run = Run {
        code: output
            .status
            .code()
            .expect("exited, not killed by a signal"),
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
        "the binary panicked: {run:?}"
    );
    run
}

/// `outbox --root <root> <args...>` with `stdin`.
pub fn outbox_in<S: AsRef<OsStr>>(root: &Path, args: &[S], stdin: &[u8]) -> Run {
    let mut cmd = command();
    cmd.arg("--root").arg(root).args(args);
    run_command(cmd, stdin)
}

/// `outbox --root <root> <args...>` with empty stdin.
pub fn outbox<S: AsRef<OsStr>>(root: &Path, args: &[S]) -> Run {
    outbox_in(root, args, b"")
}

/// Like [`outbox`], and asserts exit status 0.
pub fn ok<S: AsRef<OsStr>>(root: &Path, args: &[S]) -> Run {
    let run = outbox(root, args);
    assert_eq!(run.code, 0, "{run:?}");
    run
}

/// Commits a completion of `child` to `parent`; returns the fingerprint.
pub fn commit_finished(root: &Path, parent: &str, child: &str, status: &str) -> String {
    commit_finished_with(root, parent, child, status, &[])
}

/// Commits a completion of `child` to `parent` with `extra` flags (e.g.
/// `["--summary", "..."]`); returns the fingerprint.
pub fn commit_finished_with(
    root: &Path,
    parent: &str,
    child: &str,
    status: &str,
    extra: &[&str],
) -> String {
    let mut args = vec![
        "commit",
        "--parent",
        parent,
        "--child",
        child,
        "--finished",
        "--status",
        status,
    ];
    args.extend_from_slice(extra);
    ok(root, &args).stdout.trim().to_owned()
}

/// `drain --json` parsed as JSON values.
pub fn drain_json(root: &Path, parent: &str) -> Vec<serde_json::Value> {
    let run = ok(root, &["drain", "--parent", parent, "--json"]);
    serde_json::from_str(&run.stdout).expect("drain --json prints a JSON array")
}

/// `peek --json` parsed as JSON values.
pub fn peek_json(root: &Path, parent: &str) -> Vec<serde_json::Value> {
    let run = ok(root, &["peek", "--parent", parent, "--json"]);
    serde_json::from_str(&run.stdout).expect("peek --json prints a JSON array")
}

/// Every path under `dir`, relative to it, sorted, with each file's
/// content, to compare a tree before and after a run.
pub fn snapshot(dir: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            if path.is_dir() {
                out.push((rel, None));
                stack.push(path);
            } else {
                out.push((rel, Some(std::fs::read(&path).unwrap())));
            }
        }
    }
    out.sort();
    out
}

/// Takes group's and others' access away from `dir` and everything under
/// it (`chmod -R go-rwx`): what the outbox creates is private, so a
/// fixture a test wrote by hand is made so too before `doctor` judges it.
pub fn make_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7700;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
}
