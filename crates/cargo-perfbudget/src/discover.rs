//! Finding perf tests: build every test executable of the workspace in
//! release, ask each for its list of tests, keep the `perf_` ones.
//!
//! Nothing here is hard-coded per crate: a new `perf_` test anywhere in a
//! lib, a bin or an integration test is picked up on the next run.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The cargo that runs us (`$CARGO`), so the pinned toolchain is used.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// What `cargo metadata` says about the workspace.
pub struct Workspace {
    /// The workspace's root directory.
    pub root: PathBuf,
    /// Where cargo puts build output (honours `CARGO_TARGET_DIR` and config).
    pub target_dir: PathBuf,
    /// The `[workspace.metadata.perfbudget]` settings.
    pub settings: Settings,
    /// Package name by manifest path.
    packages: HashMap<PathBuf, String>,
}

/// The runner's settings, from `[workspace.metadata.perfbudget]` in the
/// workspace's root `Cargo.toml` (or, for a single package without a
/// `[workspace]` table, `[package.metadata.perfbudget]`).
///
/// ```toml
/// [workspace.metadata.perfbudget]
/// policy = "docs/PERF_BUDGETS.md"   # default: PERF_BUDGETS.md
/// budgets = "perf-budgets.json"     # default: perf-budgets.json
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The budget-loosening log, relative to the workspace root: every
    /// loosening `audit` finds needs a new `### ` heading in it naming the
    /// gate.
    pub policy: String,
    /// The committed file of every gate's declared budget, relative to the
    /// workspace root; `test` keeps it up to date, `audit` compares it
    /// between revisions.
    pub budgets: String,
}

/// The default policy log.
pub const DEFAULT_POLICY: &str = "PERF_BUDGETS.md";

/// The default budgets file.
pub const DEFAULT_BUDGETS: &str = "perf-budgets.json";

impl Settings {
    /// Reads the settings from `cargo metadata`'s JSON: the workspace
    /// metadata, else the root package's; an unknown key or a value that is
    /// not a string is an error naming it.
    pub fn from_metadata(meta: &Value) -> Result<Settings, String> {
        let root_manifest = meta["workspace_root"]
            .as_str()
            .map(|r| Path::new(r).join("Cargo.toml"));
        let package_meta = meta["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["manifest_path"].as_str().map(PathBuf::from) == root_manifest)
            .map(|p| &p["metadata"]["perfbudget"]);
        let (table, place) = match &meta["metadata"]["perfbudget"] {
            Value::Null => (
                package_meta.unwrap_or(&Value::Null),
                "[package.metadata.perfbudget]",
            ),
            t => (t, "[workspace.metadata.perfbudget]"),
        };
        let mut settings = Settings {
            policy: DEFAULT_POLICY.to_owned(),
            budgets: DEFAULT_BUDGETS.to_owned(),
        };
        match table {
            Value::Null => {}
            Value::Object(map) => {
                for (key, value) in map {
                    let slot = match key.as_str() {
                        "policy" => &mut settings.policy,
                        "budgets" => &mut settings.budgets,
                        other => {
                            return Err(format!(
                                "{place}: unknown key `{other}` (known: policy, budgets)"
                            ));
                        }
                    };
                    *slot = value
                        .as_str()
                        .filter(|v| !v.trim().is_empty())
                        .ok_or_else(|| format!("{place}: `{key}` must be a non-empty path string"))?
                        .to_owned();
                }
            }
            _ => return Err(format!("{place} must be a table")),
        }
        Ok(settings)
    }
}

/// Reads the workspace's metadata (no dependencies, no network).
pub fn workspace() -> Result<Workspace, String> {
    workspace_at(Path::new("."))
}

/// Reads the metadata of the workspace containing `dir`.
pub fn workspace_at(dir: &Path) -> Result<Workspace, String> {
    let output = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run `cargo metadata`: {e}"))?;
    if !output.status.success() {
        return Err(format!("`cargo metadata` failed ({})", output.status));
    }
    let meta: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("`cargo metadata` printed invalid JSON: {e}"))?;
    let target_dir = meta["target_directory"]
        .as_str()
        .ok_or("`cargo metadata` gave no target_directory")?
        .into();
    let root = meta["workspace_root"]
        .as_str()
        .ok_or("`cargo metadata` gave no workspace_root")?
        .into();
    let settings = Settings::from_metadata(&meta)?;
    let packages = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                PathBuf::from(p["manifest_path"].as_str()?),
                p["name"].as_str()?.to_owned(),
            ))
        })
        .collect();
    Ok(Workspace {
        root,
        target_dir,
        settings,
        packages,
    })
}

/// One test executable cargo built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestBinary {
    /// Package name.
    pub package: String,
    /// Target name (the crate name for a lib, the file stem for a test).
    pub target: String,
    /// Target kind: `lib`, `bin` or `test`.
    pub kind: String,
    /// Path of the executable.
    pub executable: PathBuf,
    /// Directory of the package's manifest: the working directory cargo
    /// would give the test.
    pub manifest_dir: PathBuf,
}

/// One perf test inside a test executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerfTest {
    /// The executable holding the test.
    pub binary: TestBinary,
    /// The test's path inside the executable, e.g. `tests::perf_x`.
    pub name: String,
}

impl PerfTest {
    /// The id shown in the summary and matched by filters:
    /// `package::path` for a lib, `package/target::path` otherwise.
    pub fn id(&self) -> String {
        if self.binary.kind == "lib" {
            format!("{}::{}", self.binary.package, self.name)
        } else {
            format!(
                "{}/{}::{}",
                self.binary.package, self.binary.target, self.name
            )
        }
    }
}

/// Builds all test executables (libs, bins, integration tests) in release.
///
/// Compiler diagnostics go to the terminal; the JSON on stdout is parsed.
pub fn build_test_binaries(ws: &Workspace) -> Result<Vec<TestBinary>, String> {
    build_test_binaries_in(ws, &Build::default())
}

/// Where and what [`build_test_binaries_in`] builds; the default is the
/// whole workspace of the working directory, into its own target dir.
#[derive(Debug, Default)]
pub struct Build<'a> {
    /// The workspace's directory (default: the working directory).
    pub dir: Option<&'a Path>,
    /// `CARGO_TARGET_DIR` for the build (default: cargo's choice).
    pub target_dir: Option<&'a Path>,
    /// Only these packages (default: `--workspace`).
    pub packages: &'a [&'a str],
}

/// [`build_test_binaries`] with the workspace, target dir and packages of
/// `build`.
pub fn build_test_binaries_in(ws: &Workspace, build: &Build) -> Result<Vec<TestBinary>, String> {
    let mut command = Command::new(cargo());
    command.arg("test");
    if build.packages.is_empty() {
        command.arg("--workspace");
    }
    for p in build.packages {
        command.args(["-p", p]);
    }
    command.args([
        "--release",
        "--lib",
        "--bins",
        "--tests",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    if let Some(dir) = build.dir {
        command.current_dir(dir);
    }
    if let Some(target) = build.target_dir {
        command.env("CARGO_TARGET_DIR", target);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run `cargo test --no-run`: {e}"))?;
    let mut binaries = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.map_err(|e| format!("reading cargo's output: {e}"))?;
            if let Some(binary) = parse_artifact(&line, &ws.packages) {
                binaries.push(binary);
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the tests in release failed ({status}); see the errors above"
        ));
    }
    binaries
        .sort_by(|a, b| (&a.package, &a.kind, &a.target).cmp(&(&b.package, &b.kind, &b.target)));
    Ok(binaries)
}

/// A test executable from one line of cargo's JSON output, if it is one.
fn parse_artifact(line: &str, packages: &HashMap<PathBuf, String>) -> Option<TestBinary> {
    let msg: Value = serde_json::from_str(line).ok()?;
    if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
        return None;
    }
    let executable = PathBuf::from(msg["executable"].as_str()?);
    let manifest = PathBuf::from(msg["manifest_path"].as_str()?);
    let target = msg["target"]["name"].as_str()?.to_owned();
    let package = packages
        .get(&manifest)
        .cloned()
        .unwrap_or_else(|| target.clone());
    Some(TestBinary {
        package,
        kind: msg["target"]["kind"][0].as_str().unwrap_or("?").to_owned(),
        target,
        executable,
        manifest_dir: manifest.parent().map(Path::to_path_buf).unwrap_or_default(),
    })
}

/// The perf tests of one executable, ignored ones included.
pub fn perf_tests_in(binary: &TestBinary) -> Result<Vec<PerfTest>, String> {
    tests_in(binary, is_perf_test)
}

/// The tests of one executable whose path `keep` accepts, ignored ones
/// included.
pub fn tests_in(binary: &TestBinary, keep: fn(&str) -> bool) -> Result<Vec<PerfTest>, String> {
    let output = Command::new(&binary.executable)
        .args(["--list", "--format", "terse", "--include-ignored"])
        .current_dir(&binary.manifest_dir)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.executable.display()))?;
    if !output.status.success() {
        return Err(format!(
            "listing the tests of {} failed ({}): {}",
            binary.executable.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(parse_list(&String::from_utf8_lossy(&output.stdout))
        .into_iter()
        .filter(|name| keep(name))
        .map(|name| PerfTest {
            binary: binary.clone(),
            name,
        })
        .collect())
}

/// Test names from libtest's `--list --format terse` output
/// (`path::to::name: test`; benchmarks are skipped).
fn parse_list(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_owned)
        .collect()
}

/// Whether the last `::` segment of a test path starts with `perf_`.
fn is_perf_test(name: &str) -> bool {
    name.rsplit("::")
        .next()
        .is_some_and(|last| last.starts_with("perf_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_perf_tests_by_their_last_segment() {
        assert!(is_perf_test("perf_sort"));
        assert!(is_perf_test("gate::tests::perf_drain_25"));
        assert!(!is_perf_test("perf_gate::tests::sorts"));
        assert!(!is_perf_test("tests::not_perf_sort"));
        assert!(!is_perf_test("tests::perf"));
    }

    #[test]
    fn list_output_keeps_tests_and_skips_benchmarks_and_summaries() {
        let out = "a::perf_x: test\nb::bench_y: benchmark\n\n2 tests, 1 benchmarks\nc: test\n";
        assert_eq!(parse_list(out), ["a::perf_x", "c"]);
    }

    #[test]
    fn artifacts_with_an_executable_and_a_test_profile_are_test_binaries() {
        let packages = HashMap::from([(PathBuf::from("/w/crates/p/Cargo.toml"), "p".to_owned())]);
        let line = r#"{"reason":"compiler-artifact","manifest_path":"/w/crates/p/Cargo.toml",
            "target":{"kind":["test"],"name":"perf_gates"},"profile":{"test":true},
            "executable":"/w/target/release/deps/perf_gates-1"}"#
            .replace('\n', "");
        let binary = parse_artifact(&line, &packages).expect("a test binary");
        assert_eq!(binary.package, "p");
        assert_eq!(binary.target, "perf_gates");
        assert_eq!(binary.kind, "test");
        assert_eq!(binary.manifest_dir, PathBuf::from("/w/crates/p"));
        let test = PerfTest {
            binary,
            name: "perf_sort".into(),
        };
        assert_eq!(test.id(), "p/perf_gates::perf_sort");

        let not_test = line.replace(r#""test":true"#, r#""test":false"#);
        assert_eq!(parse_artifact(&not_test, &packages), None);
        let no_exe = line.replace(r#""/w/target/release/deps/perf_gates-1""#, "null");
        assert_eq!(parse_artifact(&no_exe, &packages), None);
        assert_eq!(parse_artifact("not json", &packages), None);
    }
}
