//! Which thread holds which lock file, for every [`Outbox`](crate::Outbox)
//! handle of the process at once.
//!
//! A drain holds its parent's drain lock while a `drain_with` callback
//! runs. A drain of the same parent from inside that callback would wait
//! for the lock file's `flock` for ever: the lock is held by this very
//! thread, through another open file description. Each handle's own
//! in-process mutexes cannot see that when the second drain goes through
//! a second handle on the same root, so the registry of holders is
//! process-wide, keyed by the lock file's path (made absolute and
//! normalised: `root/./x` and `root/x` are one lock; two spellings through
//! a symbolic link are not) and the holding thread. It is the one
//! process-global state of the crate; it touches no file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::thread::ThreadId;

use parking_lot::Mutex;

use crate::error::{Error, Result};

static HELD: LazyLock<Mutex<HashSet<(PathBuf, ThreadId)>>> =
    LazyLock::new(|| Mutex::new(HashSet::new()));

/// This thread's registration as the holder of one lock file; removed on
/// drop.
#[derive(Debug)]
pub(crate) struct Held {
    key: (PathBuf, ThreadId),
}

impl Held {
    /// Registers the current thread as the holder of the lock file
    /// `path`; [`Error::Reentrant`] when it already is, through any handle.
    pub(crate) fn enter(path: &Path) -> Result<Held> {
        let key = (normalise(path), std::thread::current().id());
        if !HELD.lock().insert(key.clone()) {
            return Err(Error::Reentrant {
                path: path.to_owned(),
            });
        }
        Ok(Held { key })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD.lock().remove(&self.key);
    }
}

/// `path` made absolute (against the working directory, when it can be
/// read) and without `.` components or a trailing separator. Lexical only:
/// no file is looked at.
fn normalise(path: &Path) -> PathBuf {
    let absolute = match path.is_absolute() {
        true => None,
        false => std::env::current_dir().ok().map(|cwd| cwd.join(path)),
    };
    absolute.as_deref().unwrap_or(path).components().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_holds_a_lock_once_whatever_the_spelling() {
        let held = Held::enter(Path::new("/r/./inboxes/p.jsonl.lock")).unwrap();
        assert!(matches!(
            Held::enter(Path::new("/r/inboxes/p.jsonl.lock")),
            Err(Error::Reentrant { .. })
        ));
        // Another thread may ask (and then waits for the lock file).
        std::thread::spawn(|| Held::enter(Path::new("/r/inboxes/p.jsonl.lock")).map(drop))
            .join()
            .unwrap()
            .unwrap();
        drop(held);
        Held::enter(Path::new("/r/inboxes/p.jsonl.lock")).unwrap();
    }
}
