//! [`FsyncCounter`]: count the fsyncs code asks for, by kind of handle.

use std::fmt;
use std::fs::File;
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;

/// The signature of an fsync function: what an I/O seam calls to make a
/// file or directory durable.
pub type FsyncFn = dyn Fn(&File) -> io::Result<()> + Send + Sync + 'static;

/// Fsyncs seen by a [`FsyncCounter`], by kind of handle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FsyncCounts {
    /// Fsyncs of regular files.
    pub file: u64,
    /// Fsyncs of directories (made after a create or rename inside them).
    pub dir: u64,
    /// Fsyncs of handles whose metadata could not be read, or that are
    /// neither a regular file nor a directory (a device, a FIFO, ...).
    pub unknown: u64,
}

impl FsyncCounts {
    /// All fsyncs, whatever the kind.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.file + self.dir + self.unknown
    }
}

/// Which bucket a handle falls in.
fn classify(file: &File) -> Bucket {
    match file.metadata() {
        Ok(meta) if meta.is_file() => Bucket::File,
        Ok(meta) if meta.is_dir() => Bucket::Dir,
        Ok(_) | Err(_) => Bucket::Unknown,
    }
}

#[derive(Clone, Copy)]
enum Bucket {
    File,
    Dir,
    Unknown,
}

struct Shared {
    counts: Mutex<FsyncCounts>,
    delegate: Box<FsyncFn>,
}

impl Shared {
    fn sync(&self, file: &File) -> io::Result<()> {
        let bucket = classify(file);
        {
            let mut counts = self.counts.lock();
            match bucket {
                Bucket::File => counts.file += 1,
                Bucket::Dir => counts.dir += 1,
                Bucket::Unknown => counts.unknown += 1,
            }
        }
        // Counted before delegating: a failed fsync was still issued.
        (self.delegate)(file)
    }
}

/// Counts fsync calls, bucketed as file, directory or unknown, then
/// delegates to the real (or a stub) fsync.
///
/// Hand [`FsyncCounter::hook`] to the code's fsync seam, run the operation,
/// and compare [`FsyncCounter::counts`] with the numbers read off the code.
/// Clones share the same counts; all methods are thread-safe.
///
/// ```
/// use testutil::{FsyncCounter, FsyncCounts};
///
/// let dir = tempfile::tempdir()?;
/// let counter = FsyncCounter::new(); // delegates to File::sync_all
/// let fsync = counter.hook();
///
/// let file = std::fs::File::create(dir.path().join("a"))?;
/// fsync(&file)?;
/// fsync(&std::fs::File::open(dir.path())?)?;
///
/// assert_eq!(counter.counts(), FsyncCounts { file: 1, dir: 1, unknown: 0 });
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct FsyncCounter {
    shared: Arc<Shared>,
}

impl FsyncCounter {
    /// A counter that delegates to [`File::sync_all`] (a real fsync).
    #[must_use]
    pub fn new() -> FsyncCounter {
        FsyncCounter::wrapping(File::sync_all)
    }

    /// A counter that delegates to `fsync`, e.g. [`noop_fsync`] to take the
    /// disk out of a WARM walltime gate, or a closure that injects failures.
    #[must_use]
    pub fn wrapping<F>(fsync: F) -> FsyncCounter
    where
        F: Fn(&File) -> io::Result<()> + Send + Sync + 'static,
    {
        FsyncCounter {
            shared: Arc::new(Shared {
                counts: Mutex::new(FsyncCounts::default()),
                delegate: Box::new(fsync),
            }),
        }
    }

    /// An fsync function to install in the code under test: it counts the
    /// call, then delegates. It shares state with this counter and may be
    /// cloned and sent to other threads.
    pub fn hook(&self) -> impl Fn(&File) -> io::Result<()> + Send + Sync + Clone + 'static {
        let shared = Arc::clone(&self.shared);
        move |file: &File| shared.sync(file)
    }

    /// A snapshot of the counts so far (all three buckets read together).
    #[must_use]
    pub fn counts(&self) -> FsyncCounts {
        *self.shared.counts.lock()
    }

    /// Zeroes the counts, e.g. after a fixture's own fsyncs.
    pub fn reset(&self) {
        *self.shared.counts.lock() = FsyncCounts::default();
    }
}

impl Default for FsyncCounter {
    fn default() -> FsyncCounter {
        FsyncCounter::new()
    }
}

impl fmt::Debug for FsyncCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsyncCounter")
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

/// An fsync that does nothing and succeeds: takes disk latency out of a WARM
/// walltime gate while the code under test keeps calling its seam.
pub fn noop_fsync() -> impl Fn(&File) -> io::Result<()> + Send + Sync + Copy + 'static {
    |_: &File| Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn regular_file(dir: &tempfile::TempDir) -> File {
        File::create(dir.path().join("data")).expect("create a file")
    }

    #[test]
    fn regular_file_counts_as_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let counter = FsyncCounter::new();
        let fsync = counter.hook();
        fsync(&regular_file(&dir)).expect("real fsync of a file");
        assert_eq!(
            counter.counts(),
            FsyncCounts {
                file: 1,
                dir: 0,
                unknown: 0
            }
        );
    }

    #[test]
    fn directory_counts_as_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let counter = FsyncCounter::new();
        let fsync = counter.hook();
        fsync(&File::open(dir.path()).expect("open dir")).expect("real fsync of a dir");
        assert_eq!(
            counter.counts(),
            FsyncCounts {
                file: 0,
                dir: 1,
                unknown: 0
            }
        );
    }

    #[cfg(unix)]
    #[test]
    fn character_device_counts_as_unknown() {
        let counter = FsyncCounter::wrapping(noop_fsync());
        let fsync = counter.hook();
        let null = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .expect("open /dev/null");
        fsync(&null).expect("noop");
        assert_eq!(
            counter.counts(),
            FsyncCounts {
                file: 0,
                dir: 0,
                unknown: 1
            }
        );
    }

    #[test]
    fn failed_fsync_is_counted_and_its_error_returned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let counter =
            FsyncCounter::wrapping(|_: &File| Err(io::Error::other("injected fsync failure")));
        let fsync = counter.hook();
        let error = fsync(&regular_file(&dir)).expect_err("the delegate fails");
        assert_eq!(error.to_string(), "injected fsync failure");
        assert_eq!(counter.counts().file, 1);
        assert_eq!(counter.counts().total(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn real_fsync_failure_on_a_device_still_counts() {
        // fsync(2) on /dev/null fails with EINVAL on Linux; on other systems
        // it may succeed. Either way the call is counted.
        let counter = FsyncCounter::new();
        let null = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .expect("open /dev/null");
        let _ = counter.hook()(&null);
        assert_eq!(counter.counts().unknown, 1);
    }

    #[test]
    fn delegate_sees_every_call_after_counting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seen = Arc::new(AtomicU64::new(0));
        let seen_in_delegate = Arc::clone(&seen);
        let counter = FsyncCounter::wrapping(move |_: &File| {
            seen_in_delegate.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        let fsync = counter.hook();
        let file = regular_file(&dir);
        for _ in 0..3 {
            fsync(&file).expect("noop");
        }
        assert_eq!(seen.load(Ordering::SeqCst), 3);
        assert_eq!(counter.counts().file, 3);
    }

    #[test]
    fn reset_drops_setup_syncs_and_clones_share_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let counter = FsyncCounter::wrapping(noop_fsync());
        let clone = counter.clone();
        let file = regular_file(&dir);
        counter.hook()(&file).expect("noop");
        clone.hook()(&file).expect("noop");
        assert_eq!(counter.counts().file, 2);
        counter.reset();
        assert_eq!(clone.counts(), FsyncCounts::default());
        clone.hook()(&file).expect("noop");
        assert_eq!(counter.counts().file, 1);
    }

    #[test]
    fn concurrent_calls_from_many_threads_are_all_counted() {
        const THREADS: u64 = 8;
        const CALLS: u64 = 250;
        let dir = tempfile::tempdir().expect("tempdir");
        let counter = FsyncCounter::wrapping(noop_fsync());
        let file = regular_file(&dir);
        let directory = File::open(dir.path()).expect("open dir");
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let fsync = counter.hook();
                let (file, directory) = (&file, &directory);
                scope.spawn(move || {
                    for _ in 0..CALLS {
                        let handle = if thread % 2 == 0 { file } else { directory };
                        fsync(handle).expect("noop");
                    }
                });
            }
        });
        let counts = counter.counts();
        assert_eq!(counts.file, THREADS / 2 * CALLS);
        assert_eq!(counts.dir, THREADS / 2 * CALLS);
        assert_eq!(counts.total(), THREADS * CALLS);
    }

    #[test]
    fn noop_fsync_succeeds_without_touching_the_handle() {
        let null = File::open(std::env::temp_dir()).expect("open temp dir");
        noop_fsync()(&null).expect("noop");
    }

    #[test]
    fn debug_shows_the_counts() {
        let text = format!("{:?}", FsyncCounter::wrapping(noop_fsync()));
        assert!(text.contains("file: 0"), "{text}");
    }
}
