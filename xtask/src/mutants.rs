//! Real regressions for `cargo xtask perf-trust`: the outbox's own code,
//! made slower on purpose in a scratch copy of the workspace, then measured
//! by the real gates.
//!
//! The synthetic gates of `trust.rs` say what a gate *of a shape* can see.
//! A mutant says what the suite sees when the outbox itself regresses:
//! each [`Mutant`] is one small edit to a source file, anchored on a line
//! that must occur exactly once (a unit test checks every anchor against
//! the tree, so a refactor that moves the code fails `cargo test -p xtask`
//! instead of silently measuring nothing). perf-trust copies the workspace
//! to `<target>/perf/mutants/src`, applies one mutant at a time, builds the
//! outbox's tests there (into `<target>/perf/mutants/target`, so only the
//! workspace's own crates rebuild between mutants) and runs every perf
//! gate of the outbox R times, quiet and loaded. The unmutated copy runs
//! too, as the control: its failures are false alarms.

use std::fs;
use std::path::{Path, PathBuf};

/// The public entry of a plain drain: every drain-side mutant hangs off it.
pub const DRAIN_ANCHOR: &str = "pub fn drain(&self, parent: &str) -> Result<Drained> {";

/// The public entry of a commit.
pub const COMMIT_ANCHOR: &str =
    "pub fn commit(&self, parent: &str, record: Record) -> Result<Committed> {";

/// The file both anchors live in.
pub const OUTBOX_RS: &str = "crates/outbox/src/outbox.rs";

/// The numbers a mutant's edit is sized by, measured on this machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Iterations of the synthetic gate's work loop that cost one drain
    /// base (the loop is the same as in `trust_synthetic.rs`, calibrated
    /// by the same code).
    pub spin_iterations: u64,
    /// The drain gate's base, in nanoseconds: how long a clock-waiting
    /// mutant waits.
    pub wait_ns: u64,
}

/// One injected regression.
#[derive(Debug, Clone, Copy)]
pub struct Mutant {
    /// Short name, used in tables and file names.
    pub name: &'static str,
    /// What it does, for the table.
    pub what: &'static str,
    /// The file edited, relative to the workspace root.
    pub file: &'static str,
    /// The line the edit is anchored on; it must occur exactly once.
    pub anchor: &'static str,
    /// The text that replaces the anchor.
    pub replacement: fn(&Params) -> String,
}

/// The control: no edit at all.
pub const CONTROL: &str = "none";

/// Every mutant, the control first.
pub const MUTANTS: [Mutant; 5] = [
    Mutant {
        name: CONTROL,
        what: "no regression (control: failures are false alarms)",
        file: OUTBOX_RS,
        anchor: DRAIN_ANCHOR,
        replacement: |_| DRAIN_ANCHOR.to_owned(),
    },
    Mutant {
        name: "drain-2x-cpu",
        what: "2× drain: CPU work costing one drain base, at the start of `Outbox::drain`",
        file: OUTBOX_RS,
        anchor: DRAIN_ANCHOR,
        replacement: |p| {
            format!(
                "{DRAIN_ANCHOR}\n        {{\n            let mut x = 0u64;\n            \
                 for i in 0..{}u64 {{\n                \
                 x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));\n            \
                 }}\n            std::hint::black_box(x);\n        }}",
                p.spin_iterations
            )
        },
    },
    Mutant {
        name: "drain-2x-wait",
        what: "2× drain: a busy-wait on the clock for one drain base, at the start of `Outbox::drain`",
        file: OUTBOX_RS,
        anchor: DRAIN_ANCHOR,
        replacement: |p| {
            format!(
                "{DRAIN_ANCHOR}\n        {{\n            \
                 let start = std::time::Instant::now();\n            \
                 while start.elapsed() < std::time::Duration::from_nanos({}) {{\n                \
                 std::hint::spin_loop();\n            }}\n        }}",
                p.wait_ns
            )
        },
    },
    Mutant {
        name: "drain-op-per-record",
        what: "one extra file-system operation (a `file_len` through the `Io` seam) per record drained",
        file: OUTBOX_RS,
        anchor: DRAIN_ANCHOR,
        replacement: |_| {
            format!(
                "{DRAIN_ANCHOR}\n        let drained = self.drain_unmutated(parent)?;\n        \
                 for _ in &drained.records {{\n            \
                 let _ = self.io().file_len(self.root());\n        }}\n        \
                 Ok(drained)\n    }}\n\n    \
                 fn drain_unmutated(&self, parent: &str) -> Result<Drained> {{"
            )
        },
    },
    Mutant {
        name: "commit-op",
        what: "one extra file-system operation (a `file_len` through the `Io` seam) per commit",
        file: OUTBOX_RS,
        anchor: COMMIT_ANCHOR,
        replacement: |_| {
            format!("{COMMIT_ANCHOR}\n        let _ = self.io().file_len(self.root());")
        },
    },
];

/// `source` with `mutant` applied, or why it cannot be.
pub fn apply(source: &str, mutant: &Mutant, params: &Params) -> Result<String, String> {
    let found = source.matches(mutant.anchor).count();
    if found != 1 {
        return Err(format!(
            "mutant `{}`: its anchor `{}` occurs {found} times in {} (expected once); \
             update xtask/src/mutants.rs to the code",
            mutant.name, mutant.anchor, mutant.file
        ));
    }
    Ok(source.replacen(mutant.anchor, &(mutant.replacement)(params), 1))
}

/// What of the workspace is copied: its manifests and sources, no build
/// output, no VCS data.
const COPIED: [&str; 6] = [
    "Cargo.toml",
    "Cargo.lock",
    "rust-toolchain.toml",
    ".cargo",
    "crates",
    "xtask",
];

/// Copies the workspace at `root` to a fresh `dest` (sources only).
pub fn copy_workspace(root: &Path, dest: &Path) -> Result<(), String> {
    if dest.exists() {
        fs::remove_dir_all(dest).map_err(|e| format!("cannot clear {}: {e}", dest.display()))?;
    }
    fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    for name in COPIED {
        let from = root.join(name);
        if from.exists() {
            copy_tree(&from, &dest.join(name))?;
        }
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    let meta = fs::metadata(from).map_err(|e| format!("cannot stat {}: {e}", from.display()))?;
    if meta.is_file() {
        fs::copy(from, to)
            .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))?;
        return Ok(());
    }
    fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let entries = fs::read_dir(from).map_err(|e| format!("cannot list {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", from.display()))?;
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        copy_tree(&entry.path(), &to.join(name))?;
    }
    Ok(())
}

/// A scratch copy of the workspace with one file that mutants edit.
pub struct Scratch {
    /// The copy's root.
    pub root: PathBuf,
    original: Option<(PathBuf, String)>,
}

impl Scratch {
    /// Copies the workspace at `root` into `dest`.
    pub fn new(root: &Path, dest: &Path) -> Result<Scratch, String> {
        copy_workspace(root, dest)?;
        Ok(Scratch {
            root: dest.to_owned(),
            original: None,
        })
    }

    /// Puts the copy back to the original, then applies `mutant`.
    pub fn apply(&mut self, mutant: &Mutant, params: &Params) -> Result<(), String> {
        self.restore()?;
        let path = self.root.join(mutant.file);
        let source = fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mutated = apply(&source, mutant, params)?;
        fs::write(&path, mutated).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        self.original = Some((path, source));
        Ok(())
    }

    fn restore(&mut self) -> Result<(), String> {
        if let Some((path, source)) = self.original.take() {
            fs::write(&path, source)
                .map_err(|e| format!("cannot restore {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: Params = Params {
        spin_iterations: 1234,
        wait_ns: 5678,
    };

    fn workspace_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask is one level below the root")
            .to_owned()
    }

    /// Every mutant still finds its anchor exactly once in the tree, so a
    /// refactor of the outbox cannot leave perf-trust measuring nothing.
    #[test]
    fn every_anchor_occurs_once_in_the_tree() {
        for mutant in &MUTANTS {
            let path = workspace_root().join(mutant.file);
            let source = fs::read_to_string(&path).unwrap();
            let mutated = apply(&source, mutant, &PARAMS).unwrap();
            if mutant.name == CONTROL {
                assert_eq!(mutated, source);
            } else {
                assert_ne!(mutated, source, "{} changed nothing", mutant.name);
            }
        }
    }

    #[test]
    fn edits_carry_their_parameters() {
        let src = format!("a\n    {DRAIN_ANCHOR}\n b\n    {COMMIT_ANCHOR}\n c\n");
        let by_name = |n: &str| MUTANTS.iter().find(|m| m.name == n).unwrap();
        let cpu = apply(&src, by_name("drain-2x-cpu"), &PARAMS).unwrap();
        assert!(cpu.contains("0..1234u64"), "{cpu}");
        let wait = apply(&src, by_name("drain-2x-wait"), &PARAMS).unwrap();
        assert!(wait.contains("from_nanos(5678)"), "{wait}");
        let op = apply(&src, by_name("drain-op-per-record"), &PARAMS).unwrap();
        assert!(
            op.contains("fn drain_unmutated(&self, parent: &str)"),
            "{op}"
        );
        let commit = apply(&src, by_name("commit-op"), &PARAMS).unwrap();
        assert!(commit.contains(&format!("{COMMIT_ANCHOR}\n        let _ = self.io()")));
    }

    #[test]
    fn a_missing_or_repeated_anchor_is_an_error_naming_the_mutant() {
        let m = &MUTANTS[1];
        let none = apply("fn other() {}", m, &PARAMS).unwrap_err();
        assert!(
            none.contains("drain-2x-cpu") && none.contains("0 times"),
            "{none}"
        );
        let twice = format!("{DRAIN_ANCHOR}\n{DRAIN_ANCHOR}");
        let err = apply(&twice, m, &PARAMS).unwrap_err();
        assert!(err.contains("2 times"), "{err}");
    }

    #[test]
    fn the_scratch_copy_is_restored_between_mutants() {
        let tmp = std::env::temp_dir().join(format!("xtask-mutants-{}", std::process::id()));
        let src = tmp.join("src");
        fs::create_dir_all(src.join("crates/outbox/src")).unwrap();
        fs::create_dir_all(src.join("crates/outbox/target")).unwrap();
        fs::write(src.join("crates/outbox/target/junk"), "x").unwrap();
        let original = format!("x\n    {DRAIN_ANCHOR}\n    {COMMIT_ANCHOR}\n");
        fs::write(src.join(OUTBOX_RS), &original).unwrap();
        let mut scratch = Scratch::new(&src, &tmp.join("copy")).unwrap();
        assert!(!scratch.root.join("crates/outbox/target").exists());
        let copied = scratch.root.join(OUTBOX_RS);
        scratch.apply(&MUTANTS[1], &PARAMS).unwrap();
        assert!(fs::read_to_string(&copied).unwrap().contains("1234u64"));
        scratch.apply(&MUTANTS[4], &PARAMS).unwrap();
        let now = fs::read_to_string(&copied).unwrap();
        assert!(
            !now.contains("1234u64"),
            "the previous mutant was not undone"
        );
        assert!(now.contains("self.io().file_len"));
        scratch.apply(&MUTANTS[0], &PARAMS).unwrap();
        assert_eq!(fs::read_to_string(&copied).unwrap(), original);
        fs::remove_dir_all(&tmp).unwrap();
    }
}
