//! File-system images: what a reboot finds after a crash.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// A file-system snapshot: what a reboot sees, or the state to boot from.
///
/// Directories are listed explicitly (an empty directory is part of the
/// image); every ancestor of a listed file or directory is listed too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FsImage {
    /// Every directory, by absolute path (the root `/` is implied).
    pub dirs: BTreeSet<PathBuf>,
    /// Every file, by absolute path, with its bytes.
    pub files: BTreeMap<PathBuf, Vec<u8>>,
}

impl FsImage {
    /// The bytes of the file at `path`, if it exists.
    pub fn file(&self, path: impl AsRef<Path>) -> Option<&[u8]> {
        self.files.get(&normalize(path.as_ref())).map(Vec::as_slice)
    }

    /// The files directly inside `dir`, as `(name, bytes)`.
    pub fn files_in(&self, dir: impl AsRef<Path>) -> Vec<(OsString, &[u8])> {
        let dir = normalize(dir.as_ref());
        self.files
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir.as_path()))
            .filter_map(|(p, d)| Some((p.file_name()?.to_owned(), d.as_slice())))
            .collect()
    }
}

impl fmt::Display for FsImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.dirs {
            writeln!(f, "{}/", d.display())?;
        }
        for (p, data) in &self.files {
            writeln!(f, "{} ({} bytes)", p.display(), data.len())?;
        }
        Ok(())
    }
}

/// Makes `path` absolute and drops `.` components. `..` pops a component.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The normal components of `path`.
pub(crate) fn components(path: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for c in normalize(path).components() {
        if let Component::Normal(n) = c {
            out.push(n.to_owned());
        }
    }
    out
}
