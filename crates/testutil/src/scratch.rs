//! [`ram_tempdir`]: a scratch directory on a RAM-backed file system, for
//! WARM gates whose intent is the code's cost, not the disk's.
//!
//! A WARM gate that stubs fsync still creates, renames and unlinks files;
//! on a disk file system those metadata operations wait on the journal,
//! behind every other process's writes, so a busy disk makes the gate fail
//! although the code did not change. On tmpfs they are memory operations.

use std::io;
use std::path::{Path, PathBuf};

/// Environment variable naming a directory to use instead of the
/// RAM-backed candidates (it is used whatever its file system).
pub const RAM_DIR_ENV: &str = "TESTUTIL_RAM_DIR";

/// File system types that keep their data in memory.
const RAM_FS_TYPES: [&str; 2] = ["tmpfs", "ramfs"];

/// A temporary directory, removed on drop, that knows whether it is on a
/// RAM-backed file system.
#[derive(Debug)]
pub struct ScratchDir {
    dir: tempfile::TempDir,
    fs_type: Option<String>,
}

impl ScratchDir {
    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the directory is on tmpfs or ramfs.
    #[must_use]
    pub fn is_ram_backed(&self) -> bool {
        self.fs_type
            .as_deref()
            .is_some_and(|t| RAM_FS_TYPES.contains(&t))
    }

    /// The file system type the directory is on (`tmpfs`, `ext4`, ...),
    /// when `/proc/self/mountinfo` tells.
    #[must_use]
    pub fn fs_type(&self) -> Option<&str> {
        self.fs_type.as_deref()
    }
}

/// The file system type of `path`: the type of the mount with the longest
/// mount point that contains it, from `/proc/self/mountinfo` (Linux);
/// `None` where that file is missing or does not tell.
#[must_use]
pub fn fs_type_of(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    fs_type_in(&mountinfo, &path)
}

/// [`fs_type_of`] on a given mountinfo text.
fn fs_type_in(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        // `36 35 98:0 /mnt1 /mnt/point rw,noatime master:1 - ext3 /dev/root rw`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let (Some(mount_point), Some(fs_type)) = (left.split(' ').nth(4), right.split(' ').next())
        else {
            continue;
        };
        let mount_point = unescape(mount_point);
        let mount_point = Path::new(&mount_point);
        if path.starts_with(mount_point) {
            let depth = mount_point.components().count();
            if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
                best = Some((depth, fs_type.to_owned()));
            }
        }
    }
    best.map(|(_, t)| t)
}

/// Mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A fresh temporary directory on a RAM-backed file system when one is
/// available: [`RAM_DIR_ENV`] if set, else the first of `/dev/shm` and
/// `$XDG_RUNTIME_DIR` that is tmpfs or ramfs and writable; else the usual
/// temporary directory (check [`ScratchDir::is_ram_backed`], and say so in
/// the gate's output: the gate then also times the disk).
///
/// ```
/// let dir = testutil::ram_tempdir()?;
/// std::fs::write(dir.path().join("a"), b"x")?;
/// println!("scratch on {:?}, RAM-backed: {}", dir.fs_type(), dir.is_ram_backed());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn ram_tempdir() -> io::Result<ScratchDir> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os(RAM_DIR_ENV).filter(|d| !d.is_empty()) {
        let dir = tempfile::Builder::new()
            .prefix("testutil-")
            .tempdir_in(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{RAM_DIR_ENV}={dir:?}: {e}")))?;
        let fs_type = fs_type_of(dir.path());
        return Ok(ScratchDir { dir, fs_type });
    }
    candidates.push(PathBuf::from("/dev/shm"));
    if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR") {
        candidates.push(PathBuf::from(run));
    }
    for candidate in candidates {
        let fs_type = fs_type_of(&candidate);
        if !fs_type
            .as_deref()
            .is_some_and(|t| RAM_FS_TYPES.contains(&t))
        {
            continue;
        }
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("testutil-")
            .tempdir_in(&candidate)
        {
            return Ok(ScratchDir { dir, fs_type });
        }
    }
    let dir = tempfile::tempdir()?;
    let fs_type = fs_type_of(dir.path());
    Ok(ScratchDir { dir, fs_type })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
23 22 0:5 / /dev rw - devtmpfs udev rw
24 23 0:20 / /dev/shm rw,nosuid - tmpfs tmpfs rw
25 22 0:21 / /mnt/with\\040space rw - xfs /dev/sdb rw
";

    #[test]
    fn the_longest_containing_mount_wins() {
        let t = |p: &str| fs_type_in(MOUNTINFO, Path::new(p));
        assert_eq!(t("/dev/shm/x/y").as_deref(), Some("tmpfs"));
        assert_eq!(t("/dev/shm").as_deref(), Some("tmpfs"));
        assert_eq!(t("/dev/null").as_deref(), Some("devtmpfs"));
        assert_eq!(t("/home/u").as_deref(), Some("ext4"));
        assert_eq!(
            t("/dev/shmem").as_deref(),
            Some("devtmpfs"),
            "a prefix is not a parent"
        );
        assert_eq!(t("/mnt/with space/f").as_deref(), Some("xfs"));
    }

    #[test]
    fn scratch_dir_is_usable_and_removed_on_drop() {
        let dir = ram_tempdir().expect("a scratch dir");
        let path = dir.path().to_owned();
        std::fs::write(path.join("f"), b"x").expect("writable");
        if Path::new("/dev/shm").exists()
            && fs_type_of(Path::new("/dev/shm")).as_deref() == Some("tmpfs")
        {
            assert!(dir.is_ram_backed(), "{:?}", dir.fs_type());
            assert!(path.starts_with("/dev/shm"));
        }
        drop(dir);
        assert!(!path.exists());
    }
}
