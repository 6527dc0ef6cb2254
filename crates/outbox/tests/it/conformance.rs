//! The conformance suite (`outbox-conformance`) on the file outbox: the
//! same checks every store runs, one test each.

use std::sync::Mutex;

use outbox::Outbox;
use outbox_conformance::{Harness, TestClock};
use tempfile::TempDir;

/// Fresh data roots in temporary directories, removed when the test ends.
#[derive(Default)]
struct Files(Mutex<Vec<TempDir>>);

impl Harness for Files {
    type Store = Outbox;

    fn open(&self, clock: &TestClock) -> Outbox {
        let dir = tempfile::tempdir().expect("create a temporary data root");
        let outbox = Outbox::open(dir.path())
            .expect("open the file outbox")
            .with_clock(clock.source());
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(dir);
        outbox
    }
}

outbox_conformance::conformance_tests!(Some(Files::default()));
