//! `doctor`'s privacy findings on the file store: whether the root passes
//! the check every command runs (`outbox::RootPolicy`), and every
//! directory or file of the root that group or others can use, with the
//! `chmod` that fixes it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use outbox::{LAYOUT_DIRS, Outbox, RootPolicy};

use super::Report;
use crate::private;

/// How many paths are named one per line before the rest are summed up.
const SHOWN: usize = 10;

/// Adds the privacy findings for `root` (which exists) to `report`.
pub fn check(report: &mut Report, root: &Path) {
    let cannot = |e: outbox::Error| format!("cannot check who can change {}: {e}", root.display());
    match private::open_lazy(root).check_root() {
        // Shared and passed: say what the flag accepted, if anything.
        Ok(()) if private::policy() == RootPolicy::Shared => {
            match Outbox::open_lazy(root).check_root() {
                Ok(()) => {}
                Err(e @ outbox::Error::UnsafeRoot(_)) => {
                    report.info(format!("accepted by --allow-shared-root: {e}"));
                }
                Err(e) => report.problem(cannot(e)),
            }
        }
        Ok(()) => {}
        Err(e @ outbox::Error::UnsafeRoot(_)) => report.problem(private::message(&e)),
        Err(e) => report.problem(cannot(e)),
    }
    let open = open_paths(root);
    for (path, mode, dir) in open.iter().take(SHOWN) {
        let (what, fix) = if *dir {
            ("directory", "700")
        } else {
            ("file", "600")
        };
        let can = if mode & 0o044 != 0 { "read" } else { "use" };
        report.problem(format!(
            "{what} {} is not private: group or others can {can} it (mode {mode:04o}); \
             chmod {fix} {}",
            path.display(),
            path.display()
        ));
    }
    if open.len() > SHOWN {
        report.problem(format!(
            "and {} more paths under {} that group or others can use; chmod -R go-rwx {} \
             fixes them all",
            open.len() - SHOWN,
            root.display(),
            root.display()
        ));
    }
}

/// The root, its layout directories and the files in them whose mode gives
/// group or others any access: (path, mode, is a directory). Links are
/// not judged here (the root check refuses what matters).
fn open_paths(root: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut dirs = vec![root.to_path_buf()];
    dirs.extend(LAYOUT_DIRS.iter().map(|d| root.join(d)));
    let mut open = Vec::new();
    for dir in &dirs {
        let Ok(meta) = fs::symlink_metadata(dir) else {
            continue;
        };
        if !meta.is_dir() && dir != root {
            continue;
        }
        if meta.mode() & 0o077 != 0 {
            open.push((dir.clone(), meta.mode() & 0o7777, true));
        }
        if dir == root {
            continue;
        }
        let Ok(entries) = fs::read_dir(dir) else {
            continue; // Reported by the directory checks.
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        files.sort();
        for path in files {
            if let Ok(meta) = fs::symlink_metadata(&path)
                && meta.is_file()
                && meta.mode() & 0o077 != 0
            {
                open.push((path, meta.mode() & 0o7777, false));
            }
        }
    }
    open
}
