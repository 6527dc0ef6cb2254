//! Tidy checks: the invariants ARCHITECTURE.md states, enforced by
//! `cargo test` (in the spirit of rust-analyzer's `xtask/src/tidy.rs`).
//!
//! Each test reads the repository (the workspace's `cargo metadata` or its
//! source files) and fails with the rule, the offender and what to do.
//! When an invariant changes on purpose, change ARCHITECTURE.md and the
//! rule here in the same commit.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// `perfbudget` depends on no workspace crate, of any kind: any crate can
/// use it on its own.
const LEAF: &str = "perfbudget";

/// `testutil` has no normal dependency on a workspace crate, and knows
/// nothing of the outbox even in its own tests (it may gate itself with
/// `perfbudget`).
const TEST_SUPPORT: &str = "testutil";

/// xtask's normal (non-dev) dependencies: it is compiled before every perf
/// run, so it stays lean (statrs: the confidence intervals of perf-trust).
const XTASK_NORMAL_DEPS: [&str; 3] = ["cargo-perfbudget", "perfbudget", "serde_json"];

/// The perf runner's normal dependencies: it is built before every perf
/// run, in any workspace that adopts it.
const RUNNER_NORMAL_DEPS: [&str; 4] = ["perfbudget", "serde", "serde_json", "statrs"];

/// Crates the library `outbox` may use only in its tests and benches.
const OUTBOX_DEV_ONLY: [&str; 4] = ["outbox-conformance", "outbox-sim", "perfbudget", "testutil"];

/// The conformance suite: test support for every store, so only ever a
/// dev-dependency; it knows stores only through the `outbox::Store` trait,
/// so `outbox` is its one workspace dependency.
const CONFORMANCE: &str = "outbox-conformance";

/// The PostgreSQL store: it builds on `outbox` alone (the trait, the
/// stamping and encoding rules), and the `outbox` library never depends on
/// it or on a database driver (the file outbox stays the embedded default).
const PG_STORE: &str = "outbox-postgres";

/// The crates that may depend on the PostgreSQL store normally.
const PG_STORE_USERS: [&str; 1] = ["outbox-cli"];

/// The only file of `crates/outbox/src` that may touch `std::fs`: the `Io`
/// implementation.
const OUTBOX_FS_FILE: &str = "io.rs";

fn root() -> PathBuf {
    crate::project_root()
}

/// The workspace's own packages, from `cargo metadata --no-deps`.
fn packages() -> Vec<Value> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    meta["packages"].as_array().expect("packages").clone()
}

fn name(pkg: &Value) -> &str {
    pkg["name"].as_str().unwrap_or("?")
}

/// `(dependency name, kind)` of `pkg`; kind is `normal`, `dev` or `build`.
fn deps(pkg: &Value) -> Vec<(String, String)> {
    pkg["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let kind = d["kind"].as_str().unwrap_or("normal").to_string();
            (d["name"].as_str().unwrap_or("?").to_string(), kind)
        })
        .collect()
}

fn workspace_names(packages: &[Value]) -> BTreeSet<String> {
    packages.iter().map(|p| name(p).to_string()).collect()
}

fn package<'a>(packages: &'a [Value], wanted: &str) -> &'a Value {
    packages
        .iter()
        .find(|p| name(p) == wanted)
        .unwrap_or_else(|| panic!("tidy: workspace crate `{wanted}` is gone; update tidy.rs"))
}

#[test]
fn perfbudget_and_testutil_depend_on_no_workspace_crate() {
    let packages = packages();
    let members = workspace_names(&packages);
    for (dep, kind) in deps(package(&packages, LEAF)) {
        assert!(
            !members.contains(&dep),
            "tidy: `{LEAF}` has a {kind} dependency on the workspace crate `{dep}`; \
             ARCHITECTURE.md promises it depends on none (any crate can use it on its own)"
        );
    }
    for (dep, kind) in deps(package(&packages, TEST_SUPPORT)) {
        let allowed = kind == "dev" && dep == LEAF;
        assert!(
            !members.contains(&dep) || allowed,
            "tidy: `{TEST_SUPPORT}` has a {kind} dependency on the workspace crate `{dep}`; \
             ARCHITECTURE.md promises it knows fsync seams only by their signature"
        );
    }
}

#[test]
fn xtask_and_the_runner_stay_lean() {
    let packages = packages();
    for (crate_name, allowed) in [
        ("xtask", &XTASK_NORMAL_DEPS[..]),
        ("cargo-perfbudget", &RUNNER_NORMAL_DEPS[..]),
    ] {
        let normal: BTreeSet<String> = deps(package(&packages, crate_name))
            .into_iter()
            .filter(|(_, kind)| kind == "normal")
            .map(|(dep, _)| dep)
            .collect();
        let allowed: BTreeSet<String> = allowed.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            normal, allowed,
            "tidy: {crate_name}'s normal dependencies changed; it is built before every perf \
             run, so each one costs every user time (ARCHITECTURE.md, invariants)"
        );
    }
}

#[test]
fn test_support_stays_out_of_the_outbox_library() {
    let packages = packages();
    for (dep, kind) in deps(package(&packages, "outbox")) {
        if OUTBOX_DEV_ONLY.contains(&dep.as_str()) {
            assert_eq!(
                kind, "dev",
                "tidy: `outbox` depends on `{dep}` as a {kind} dependency; \
                 test support is a dev-dependency only"
            );
        }
    }
    for pkg in &packages {
        for (dep, kind) in deps(pkg) {
            assert!(
                !(dep == "outbox-sim" && kind == "normal" && name(pkg) != "outbox-sim"),
                "tidy: `{}` depends on `outbox-sim` as a normal dependency; \
                 the simulated file systems are for tests only",
                name(pkg)
            );
        }
    }
}

#[test]
fn stores_and_the_conformance_suite_depend_only_where_the_map_says() {
    let packages = packages();
    let members = workspace_names(&packages);
    for store in [CONFORMANCE, PG_STORE] {
        let workspace_deps: BTreeSet<String> = deps(package(&packages, store))
            .into_iter()
            .filter(|(dep, kind)| kind == "normal" && members.contains(dep))
            .map(|(dep, _)| dep)
            .collect();
        assert_eq!(
            workspace_deps,
            BTreeSet::from(["outbox".to_string()]),
            "tidy: `{store}`'s normal workspace dependencies must be exactly `outbox` \
             (ARCHITECTURE.md: it knows the outbox through the Store trait only)"
        );
    }
    for (dep, kind) in deps(package(&packages, "outbox")) {
        assert!(
            kind != "normal" || !(dep == PG_STORE || dep.contains("postgres")),
            "tidy: the `outbox` library depends on `{dep}`; it stays free of databases \
             (stores build on it, not the other way round)"
        );
    }
    for pkg in &packages {
        for (dep, kind) in deps(pkg) {
            assert!(
                !(dep == CONFORMANCE && kind == "normal"),
                "tidy: `{}` depends on `{CONFORMANCE}` as a normal dependency; the \
                 conformance suite is for tests only",
                name(pkg)
            );
            assert!(
                !(dep == PG_STORE && kind == "normal" && !PG_STORE_USERS.contains(&name(pkg))),
                "tidy: `{}` depends on `{PG_STORE}`; only {PG_STORE_USERS:?} may (normal \
                 dependency), anything else reaches stores through `outbox::Store`",
                name(pkg)
            );
        }
    }
}

#[test]
fn every_crate_takes_the_workspace_lints() {
    for pkg in packages() {
        let manifest = PathBuf::from(pkg["manifest_path"].as_str().expect("manifest_path"));
        let text = fs::read_to_string(&manifest).expect("read a manifest");
        assert!(
            text.contains("[lints]\nworkspace = true"),
            "tidy: {} lacks `[lints] workspace = true` (missing_docs, unsafe_code = \"forbid\")",
            manifest.display()
        );
    }
}

/// The non-test part of a Rust source file: everything before its first
/// `#[cfg(test)]` (test modules sit at the end of a file, by convention).
fn non_test_part(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("read a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn only_the_io_implementation_touches_the_file_system() {
    let src = root().join("crates/outbox/src");
    let forbidden = [
        "std::fs",
        "fs::",
        "File::",
        "OpenOptions",
        "std::os::unix::fs",
    ];
    let mut offenders = Vec::new();
    for file in rust_files(&src) {
        if file.file_name().is_some_and(|n| n == OUTBOX_FS_FILE) {
            continue;
        }
        let text = fs::read_to_string(&file).expect("read a source file");
        for (i, line) in non_test_part(&text).lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if let Some(word) = forbidden.iter().find(|w| code.contains(**w)) {
                offenders.push(format!("{}:{}: `{word}`", file.display(), i + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "tidy: file-system access outside the `Io` seam (go through the outbox's `Io` \
         value so the crash simulator and fault injector see it):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn each_crate_links_at_most_one_integration_test_binary() {
    for crate_dir in fs::read_dir(root().join("crates")).expect("read crates/") {
        let tests = crate_dir.expect("a directory entry").path().join("tests");
        let Ok(entries) = fs::read_dir(&tests) else {
            continue;
        };
        let binaries: Vec<String> = entries
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs") || p.join("main.rs").is_file())
            .map(|p| p.display().to_string())
            .collect();
        assert!(
            binaries.len() <= 1,
            "tidy: {} links {} test binaries ({}); fold them into one `tests/it/main.rs` \
             with a module each (one link step, one shared util module)",
            tests.display(),
            binaries.len(),
            binaries.join(", ")
        );
    }
}

#[test]
fn the_code_map_names_every_crate() {
    let map = fs::read_to_string(root().join("ARCHITECTURE.md")).expect("read ARCHITECTURE.md");
    for pkg in packages() {
        let manifest = PathBuf::from(pkg["manifest_path"].as_str().expect("manifest_path"));
        let dir = manifest.parent().expect("a manifest's directory");
        let rel = dir
            .strip_prefix(root())
            .unwrap_or(dir)
            .display()
            .to_string();
        assert!(
            map.contains(&format!("### `{rel}`")),
            "tidy: ARCHITECTURE.md's code map has no `### `{rel}`` section for crate `{}`",
            name(&pkg)
        );
    }
}

#[test]
fn the_tidy_rules_see_what_they_check() {
    // Guards against a rule that passes because it looks at nothing.
    assert!(non_test_part("a\n#[cfg(test)]\nstd::fs").ends_with("a\n"));
    let files = rust_files(&root().join("crates/outbox/src"));
    assert!(files.iter().any(|f| f.ends_with(OUTBOX_FS_FILE)));
    let io = fs::read_to_string(root().join("crates/outbox/src").join(OUTBOX_FS_FILE)).unwrap();
    assert!(io.contains("std::fs"), "the Io implementation uses std::fs");
    assert!(packages().len() >= 5);
}

/// Issue 23: the perf harness lives in the runner; xtask keeps this
/// repository's chores, under 1 500 lines (the tidy tests, which guard
/// invariants rather than run anything, are not counted).
#[test]
fn xtask_stays_small() {
    let dir = root().join("xtask/src");
    let mut lines = 0;
    for entry in std::fs::read_dir(&dir).expect("xtask/src") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tidy.rs") {
            lines += std::fs::read_to_string(&path)
                .expect("read")
                .lines()
                .count();
        }
    }
    assert!(
        lines < 1_500,
        "tidy: xtask/src has {lines} lines (tidy.rs aside), 1 500 at most"
    );
}

/// The Markdown files of the repository, outside build output and `.git`.
fn markdown_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("read a directory") {
        let path = entry.expect("a directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !matches!(name, "target" | ".git") {
                out.extend(markdown_files(&path));
            }
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The `cargo install` commands of `text` that do not say `--locked`.
fn unlocked_installs(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.contains("cargo install ") && !l.contains("--locked"))
        .collect()
}

#[test]
fn every_documented_cargo_install_is_locked() {
    // Without --locked, cargo install resolves every dependency anew: the
    // installed binary is built from versions no test ran.
    let mut checked = 0;
    for path in markdown_files(&root()) {
        let text = fs::read_to_string(&path).expect("read a Markdown file");
        checked += text.matches("cargo install ").count();
        let unlocked = unlocked_installs(&text);
        assert!(
            unlocked.is_empty(),
            "tidy: {} has a `cargo install` without --locked (add it, so the \
             binary is built from Cargo.lock's versions): {unlocked:?}",
            path.display()
        );
    }
    assert!(
        checked > 0,
        "tidy: no `cargo install` line found in any README"
    );
    assert_eq!(
        unlocked_installs("cargo install --path x\ncargo install --locked --path x"),
        ["cargo install --path x"]
    );
}

#[test]
fn the_cli_builds_without_postgres_by_default() {
    // A Claude Code user on one machine compiles no async runtime or
    // database client: the PostgreSQL store is the cargo feature
    // `postgres`, off by default.
    let packages = packages();
    let cli = package(&packages, "outbox-cli");
    let pg = cli["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["name"] == PG_STORE && d["kind"].is_null())
        .expect("tidy: outbox-cli has a normal dependency on the PostgreSQL store");
    assert_eq!(
        pg["optional"], true,
        "tidy: outbox-cli's `{PG_STORE}` dependency must be optional (the `postgres` feature)"
    );
    let default = cli["features"]["default"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        default.is_empty(),
        "tidy: outbox-cli's default features must be empty (PostgreSQL is opt-in): {default:?}"
    );
    assert!(
        cli["features"]["postgres"].is_array(),
        "tidy: outbox-cli has no `postgres` feature"
    );
}
