//! Several `Outbox` handles on one root in one process: a drain from
//! inside a `drain_with` callback is [`Error::Reentrant`] whichever handle
//! it goes through, never a deadlock (the lock file's `flock` would wait
//! for this very thread).

use std::convert::Infallible;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use outbox::{DrainWithError, Error, Outbox, Record};

use crate::util::PARENT;

/// Runs `body` on its own thread and fails, rather than hangs, when it
/// does not finish: the guard of a test whose defect is a deadlock.
fn within_a_minute(what: &str, body: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        body();
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => thread.join().unwrap(),
        // The body panicked: its panic is the failure.
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("DEADLOCK: {what} did not return within a minute")
        }
    }
}

/// From inside a `drain_with` callback of `first`, each operation that
/// takes the parent's drain lock, through `second`, is `Reentrant`; then
/// the outer drain still finishes and nothing is lost.
fn reentry_through(first: Outbox, second: Outbox) {
    first
        .commit(PARENT, Record::finished("w1", "success"))
        .unwrap();
    let mut inner = Vec::new();
    let drained = first
        .drain_with(PARENT, |records| {
            assert_eq!(records.len(), 1);
            inner.push(second.drain(PARENT).map(drop));
            inner.push(
                second
                    .drain_with(PARENT, |_| Ok::<_, Infallible>(()))
                    .map(drop)
                    .map_err(|e| match e {
                        DrainWithError::Outbox(e) => e,
                        DrainWithError::Delivery(never) => match never {},
                    }),
            );
            inner.push(second.forget_child(PARENT, "w1").map(drop));
            inner.push(second.sweep_stale(PARENT, Duration::from_secs(1)).map(drop));
            // A commit takes only the inbox lock, which a delivery does not
            // hold: it is allowed.
            second
                .commit(PARENT, Record::finished("w2", "success"))
                .unwrap();
            Ok::<_, Infallible>(())
        })
        .unwrap();
    assert_eq!(drained.records.len(), 1);
    for (i, r) in inner.into_iter().enumerate() {
        assert!(
            matches!(r, Err(Error::Reentrant { .. })),
            "operation {i}: {r:?}"
        );
    }
    let rest = second.drain(PARENT).unwrap();
    assert_eq!(rest.records.len(), 1);
    assert_eq!(rest.records[0].child_session_id, "w2");
}

#[test]
fn a_drain_from_a_callback_through_a_second_handle_is_reentrant() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    within_a_minute("a drain through a second handle", move || {
        let first = Outbox::open(&root).unwrap();
        let second = Outbox::open(&root).unwrap();
        reentry_through(first, second);
        drop(dir);
    });
}

#[test]
fn a_second_handle_on_the_same_root_spelled_differently_is_the_same_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    within_a_minute("a drain through a handle on root/./", move || {
        let first = Outbox::open(&root).unwrap();
        let second = Outbox::open(Path::new(&root).join(".").join("")).unwrap();
        reentry_through(first, second);
        drop(dir);
    });
}
