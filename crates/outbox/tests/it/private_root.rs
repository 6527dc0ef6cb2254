//! Private files and the data-root check (`RootPolicy`): what the library
//! creates is its user's alone, and a root another user can change is
//! refused before anything is read or written. (The umask cases run the
//! CLI in a child process: a umask is process-global; see the CLI's
//! `private_files` tests.)

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use outbox::{DirRole, Error, Outbox, RootPolicy, StdIo, UnsafeReason, UnsafeRoot};

use crate::util::{PARENT, record};

/// `nobody`'s uid on Linux.
const NOBODY: u32 = 65534;

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// The facts of an `UnsafeRoot` error; panics on any other result.
fn refused<T: std::fmt::Debug>(result: outbox::Result<T>) -> UnsafeRoot {
    match result {
        Err(Error::UnsafeRoot(facts)) => *facts,
        other => panic!("expected UnsafeRoot, got {other:?}"),
    }
}

/// Every entry under `dir` (not `dir` itself), recursively.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(entries(&path));
        }
        out.push(path);
    }
    out
}

/// Whether this process may chown (it runs as root): the ownership cases
/// need it, and say so when they cannot run.
fn can_chown() -> bool {
    let probe = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(probe.path(), Some(NOBODY), None).is_ok()
}

#[test]
fn what_the_library_creates_is_private_and_the_root_passes_its_own_check() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("a/b/root");
    let ob = Outbox::open(&root).unwrap();
    ob.commit(PARENT, record("c1")).unwrap();
    ob.drain(PARENT).unwrap();
    ob.commit(PARENT, record("c2")).unwrap();
    let state = outbox::handover::Handover {
        blocks: 1,
        ..Default::default()
    };
    ob.set_handover(PARENT, &state).unwrap();
    for dir in [base.path().join("a"), base.path().join("a/b")] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    for path in entries(base.path()) {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), want, "{}", path.display());
    }
    ob.check_root().unwrap();
}

#[test]
fn a_root_others_can_write_is_refused_before_anything_is_touched() {
    for (bits, who) in [
        (0o777, "group and others"),
        (0o770, "its group"),
        (0o707, "others"),
    ] {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        fs::create_dir(&root).unwrap();
        chmod(&root, bits);
        let facts = refused(Outbox::open(&root));
        assert_eq!(
            (facts.reason, facts.role, facts.mode, facts.path.as_path()),
            (UnsafeReason::Writable, DirRole::Root, bits, root.as_path())
        );
        let line = Error::UnsafeRoot(Box::new(facts)).to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains(&format!("can be written by {who}")), "{line}");
        assert!(line.contains(&format!("mode {bits:04o}")), "{line}");
        assert!(
            line.contains(&format!("chmod go-w {}", root.display())),
            "{line}"
        );
        assert!(entries(&root).is_empty(), "nothing was created");
        // Lazily opened: every operation refuses, the read-only ones too.
        let lazy = Outbox::open_lazy(&root);
        refused(lazy.peek(PARENT));
        refused(lazy.has_pending(PARENT));
        refused(lazy.commit(PARENT, record("c")));
        refused(lazy.drain(PARENT));
        refused(lazy.handover(PARENT));
        assert!(entries(&root).is_empty(), "nothing was created");
        // The shared policy takes it.
        let shared = Outbox::open_lazy(&root).with_root_policy(RootPolicy::Shared);
        shared.commit(PARENT, record("c")).unwrap();
        assert_eq!(shared.drain(PARENT).unwrap().records.len(), 1);
    }
}

#[test]
fn a_layout_directory_others_can_write_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    Outbox::open(&root).unwrap();
    let inboxes = root.join("inboxes");
    chmod(&inboxes, 0o1777);
    let facts = refused(Outbox::open(&root));
    assert_eq!(
        (facts.reason, facts.role, facts.path),
        (UnsafeReason::Writable, DirRole::Layout, inboxes)
    );
}

#[test]
fn an_ancestor_others_can_write_counts_unless_it_is_sticky() {
    let base = tempfile::tempdir().unwrap();
    let shared = base.path().join("shared");
    fs::create_dir(&shared).unwrap();
    let root = shared.join("root");
    // 1777 like /tmp: nobody else can rename or remove our entry.
    chmod(&shared, 0o1777);
    Outbox::open(&root)
        .unwrap()
        .commit(PARENT, record("c"))
        .unwrap();
    // 0777 without the sticky bit: another user could swap the root.
    chmod(&shared, 0o777);
    let facts = refused(Outbox::open(&root));
    assert_eq!(
        (facts.reason, facts.role, facts.path.as_path()),
        (UnsafeReason::Writable, DirRole::Ancestor, shared.as_path())
    );
    let line = Error::UnsafeRoot(Box::new(facts)).to_string();
    assert!(
        line.starts_with(&format!(
            "directory above data root {}: {} can be written by",
            root.display(),
            shared.display()
        )) && line.contains(&format!("chmod +t {}", shared.display())),
        "{line}"
    );
}

#[test]
fn a_symlinked_root_is_judged_by_its_target() {
    let base = tempfile::tempdir().unwrap();
    let real = base.path().join("real");
    fs::create_dir(&real).unwrap();
    let link = base.path().join("link");
    symlink(&real, &link).unwrap();
    Outbox::open(&link)
        .unwrap()
        .commit(PARENT, record("c"))
        .unwrap();
    chmod(&real, 0o777);
    let facts = refused(Outbox::open(&link));
    assert_eq!(facts.path, real.canonicalize().unwrap());
}

#[test]
fn a_root_another_user_owns_is_refused() {
    if !can_chown() {
        eprintln!("SKIPPED: this process cannot chown (it does not run as root)");
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    fs::create_dir(&root).unwrap();
    std::os::unix::fs::chown(&root, Some(NOBODY), None).unwrap();
    let facts = refused(Outbox::open(&root));
    assert_eq!(
        (facts.reason, facts.role, facts.owner, facts.mode),
        (UnsafeReason::NotOwned, DirRole::Root, NOBODY, mode(&root))
    );
    let line = Error::UnsafeRoot(Box::new(facts)).to_string();
    assert!(
        line.contains(&format!("is owned by uid {NOBODY}, not by you")),
        "{line}"
    );
    // A directory of the layout, and one above the root, count too.
    let root2 = base.path().join("mine/root");
    Outbox::open(&root2).unwrap();
    std::os::unix::fs::chown(root2.join("runtime/consumed-turns"), Some(NOBODY), None).unwrap();
    assert_eq!(refused(Outbox::open(&root2)).role, DirRole::Layout);
    std::os::unix::fs::chown(root2.join("runtime/consumed-turns"), Some(0), None).unwrap();
    std::os::unix::fs::chown(base.path().join("mine"), Some(NOBODY), None).unwrap();
    assert_eq!(refused(Outbox::open(&root2)).role, DirRole::Ancestor);
}

#[test]
fn a_shared_root_still_refuses_a_symlinked_layout_directory() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    let elsewhere = base.path().join("elsewhere");
    fs::create_dir_all(root.join("runtime")).unwrap();
    fs::create_dir(&elsewhere).unwrap();
    chmod(&root, 0o777);
    symlink(&elsewhere, root.join("inboxes")).unwrap();
    let shared = Outbox::open_lazy(&root).with_root_policy(RootPolicy::Shared);
    let facts = refused(shared.commit(PARENT, record("c")));
    assert_eq!(
        (facts.reason, facts.role, facts.path),
        (UnsafeReason::Symlink, DirRole::Layout, root.join("inboxes"))
    );
    assert!(
        entries(&elsewhere).is_empty(),
        "nothing written through the link"
    );
}

#[test]
fn files_planted_as_symlinks_are_not_followed() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    let victim = base.path().join("victim");
    fs::write(&victim, "precious\n").unwrap();
    let ob = Outbox::open_lazy(&root).with_root_policy(RootPolicy::Shared);
    ob.commit(PARENT, record("c")).unwrap();
    ob.drain(PARENT).unwrap();
    let paths = ob.paths(PARENT).unwrap();
    // The inbox, then its lock file, replaced by a link to the victim.
    for planted in [&paths.inbox, &paths.inbox_lock] {
        let _ = fs::remove_file(planted);
        symlink(&victim, planted).unwrap();
        let ob = Outbox::open_lazy_with(&root, StdIo::new()).with_root_policy(RootPolicy::Shared);
        let err = ob.commit(PARENT, record("c2")).unwrap_err();
        assert!(
            err.to_string().contains("is a symbolic link, not followed"),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        fs::remove_file(planted).unwrap();
    }
    // Reading through a planted link is refused too.
    symlink(&victim, &paths.inbox).unwrap();
    let err = ob.peek(PARENT).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
}
