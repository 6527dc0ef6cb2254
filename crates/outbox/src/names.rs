//! Reading the names of the files under a data root back: which parent a
//! file belongs to and what it is, by the grammar the outbox names them
//! with ([`ParentPaths`](crate::ParentPaths)), never by looking for a
//! substring (a parent id may itself contain `.tmp-` or `.quarantine-`).

use crate::paths::{DirKind, QUARANTINE_MARK, id_of_stem, stem_of_target, temp_target};

/// One of the outbox's directories under the data root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// `inboxes/`.
    Inboxes,
    /// `runtime/inbox-inflight/`.
    InboxInflight,
    /// `runtime/consumed-turns/`.
    ConsumedTurns,
    /// `runtime/stop-blocks/`.
    StopBlocks,
}

impl Dir {
    /// The directory's path relative to the data root.
    pub fn relative_path(self) -> &'static str {
        match self {
            Dir::Inboxes => crate::paths::INBOX_DIR,
            Dir::InboxInflight => crate::paths::WAL_DIR,
            Dir::ConsumedTurns => crate::paths::LEDGER_DIR,
            Dir::StopBlocks => crate::paths::STOP_BLOCKS_DIR,
        }
    }
}

/// What a file of a parent is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// `inboxes/<stem>.jsonl`: pending records.
    Inbox,
    /// `inboxes/<stem>.jsonl.claimed`: a drain's WAL (one that did not
    /// finish, or the records a `drain --max` left for the next drain).
    Claimed,
    /// `inboxes/<stem>.jsonl.lock`.
    InboxLock,
    /// `inboxes/<stem>.{jsonl,wal}.quarantine-<stamp>`: unreadable lines
    /// set aside.
    Quarantine,
    /// `runtime/inbox-inflight/<stem>.jsonl`: agent-deck's WAL.
    AgentDeckWal,
    /// `runtime/inbox-inflight/<stem>.lock`: the drain lock.
    DrainLock,
    /// `runtime/consumed-turns/<stem>.jsonl`: the consumed ledger.
    Ledger,
    /// `runtime/consumed-turns/<stem>.json`: agent-deck's consumed ledger.
    AgentDeckLedger,
    /// `runtime/stop-blocks/<stem>.json`: the Stop-hook loop guard.
    StopBlocks,
}

/// A file name of one of the outbox's directories, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileName {
    /// What the file is (for a temporary file: what it was to become).
    pub kind: FileKind,
    /// A temporary file of a durable write (`<name>.tmp-<nonce>`), left by
    /// a writer that died (or one writing right now).
    pub temp: bool,
    /// The file-name stem.
    pub stem: String,
    /// The parent id whose stem it is; `None` when no id maps to it (a
    /// file no outbox wrote, e.g. agent-deck's sanitised name of an id
    /// that needs escaping here).
    pub parent: Option<String>,
}

/// Reads the name of a file found in `dir`; `None` when it is no name the
/// outbox derives (a stranger's file, a doctor's probe).
///
/// ```
/// use outbox::names::{Dir, FileKind, parse};
///
/// let inbox = parse(Dir::Inboxes, "job.tmp-1.jsonl").unwrap();
/// assert_eq!((inbox.kind, inbox.temp), (FileKind::Inbox, false));
/// assert_eq!(inbox.parent.as_deref(), Some("job.tmp-1"));
/// let temp = parse(Dir::Inboxes, "team%2Falpha...jsonl.tmp-00ff00ff00ff00ff").unwrap();
/// assert_eq!((temp.kind, temp.temp), (FileKind::Inbox, true));
/// assert_eq!(temp.parent.as_deref(), Some("team/alpha"));
/// ```
pub fn parse(dir: Dir, name: &str) -> Option<FileName> {
    let (target, temp) = match temp_target(name) {
        Some(target) => (target, true),
        None => (name, false),
    };
    let (stem, kind) = match dir {
        Dir::Inboxes => {
            if let Some(stem) = target.strip_suffix(".jsonl.lock") {
                (stem, FileKind::InboxLock)
            } else {
                let stem = stem_of_target(DirKind::Inboxes, target)?;
                let kind = if target.len() == stem.len() + ".jsonl".len() {
                    FileKind::Inbox
                } else if target[stem.len()..] == *".jsonl.claimed" {
                    FileKind::Claimed
                } else {
                    debug_assert!(target[stem.len()..].contains(QUARANTINE_MARK));
                    FileKind::Quarantine
                };
                (stem, kind)
            }
        }
        Dir::InboxInflight => match target.strip_suffix(".lock") {
            Some(stem) => (stem, FileKind::DrainLock),
            None => (target.strip_suffix(".jsonl")?, FileKind::AgentDeckWal),
        },
        Dir::ConsumedTurns => match target.strip_suffix(".jsonl") {
            Some(stem) => (stem, FileKind::Ledger),
            None => (target.strip_suffix(".json")?, FileKind::AgentDeckLedger),
        },
        Dir::StopBlocks => (target.strip_suffix(".json")?, FileKind::StopBlocks),
    };
    if stem.is_empty() {
        return None;
    }
    Some(FileName {
        kind,
        temp,
        stem: stem.to_owned(),
        parent: id_of_stem(stem),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ParentPaths;
    use std::path::Path;

    /// Every file of a parent reads back as that parent's, with its kind,
    /// and its temporary file as a temporary file; for ids that contain
    /// the marks themselves too.
    #[test]
    fn every_derived_name_reads_back_as_its_parent_s() {
        let root = Path::new("/r");
        for id in [
            "p",
            "job.tmp-1",
            "job.tmp-00ff",
            "a.quarantine-2",
            "x.jsonl.quarantine-1-2",
            "team/alpha",
            "-conductor",
            "w.lock",
            "c.jsonl.claimed",
        ] {
            let p = ParentPaths::new(root, id).unwrap();
            let quarantine = root
                .join("inboxes")
                .join(crate::paths::quarantine_name(&p.stem, "jsonl", 7, 9));
            for (dir, path, kind) in [
                (Dir::Inboxes, &p.inbox, FileKind::Inbox),
                (Dir::Inboxes, &p.claimed, FileKind::Claimed),
                (Dir::Inboxes, &p.inbox_lock, FileKind::InboxLock),
                (Dir::Inboxes, &quarantine, FileKind::Quarantine),
                (Dir::InboxInflight, &p.wal, FileKind::AgentDeckWal),
                (Dir::InboxInflight, &p.drain_lock, FileKind::DrainLock),
                (Dir::ConsumedTurns, &p.consumed, FileKind::Ledger),
                (Dir::ConsumedTurns, &p.ledger, FileKind::AgentDeckLedger),
                (Dir::StopBlocks, &p.stop_blocks, FileKind::StopBlocks),
            ] {
                let name = path.file_name().unwrap().to_str().unwrap();
                let want = FileName {
                    kind,
                    temp: false,
                    stem: p.stem.clone(),
                    parent: Some(id.to_owned()),
                };
                assert_eq!(parse(dir, name).as_ref(), Some(&want), "{id:?}: {name}");
                let temp = format!("{name}.tmp-0123456789abcdef");
                let want = FileName { temp: true, ..want };
                assert_eq!(parse(dir, &temp), Some(want), "{id:?}: {temp}");
            }
        }
        assert_eq!(parse(Dir::Inboxes, ".outbox-doctor-probe-12"), None);
        assert_eq!(parse(Dir::Inboxes, "notes.txt"), None);
        let odd = parse(Dir::Inboxes, "team%5Falpha...jsonl").unwrap();
        assert_eq!(odd.parent, None, "no id maps to it");
    }
}
