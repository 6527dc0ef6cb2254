//! Test support usable by any crate of the workspace (and by none of them in
//! particular: this crate knows nothing about the outbox).
//!
//! The main item is [`FsyncCounter`], the instrument behind Tier 2 count
//! gates: code that makes data durable calls its fsyncs through a seam, a
//! test installs [`FsyncCounter::hook`] in that seam, and asserts the exact
//! number of file and directory fsyncs the code should issue (usually with
//! `perfbudget::CountGate`). [`noop_fsync`] is the stub a WARM walltime gate
//! installs instead, so the disk's latency stays out of the timed window.
//! [`OpCounter`] counts every operation of a seam (create, write, rename,
//! remove, stat, ...), not only fsyncs, so a count gate can pin an
//! operation's whole file-system shape. [`ram_tempdir`] gives WARM gates a
//! scratch directory on tmpfs, so other processes' disk writes stay out of
//! their timed window.
//!
//! # Example
//!
//! ```
//! use std::fs::File;
//! use std::io::{self, Write};
//! use std::path::Path;
//! use testutil::{FsyncCounter, noop_fsync};
//!
//! /// Code under test: replace `path` durably, with fsync through a seam.
//! fn replace_durably(
//!     path: &Path,
//!     bytes: &[u8],
//!     fsync: &dyn Fn(&File) -> io::Result<()>,
//! ) -> io::Result<()> {
//!     let tmp = path.with_extension("tmp");
//!     let mut file = File::create(&tmp)?;
//!     file.write_all(bytes)?;
//!     fsync(&file)?; // the data
//!     std::fs::rename(&tmp, path)?;
//!     fsync(&File::open(path.parent().unwrap())?) // the rename
//! }
//!
//! let dir = tempfile::tempdir()?;
//! let counter = FsyncCounter::wrapping(noop_fsync());
//! replace_durably(&dir.path().join("state"), b"v1", &counter.hook())?;
//! let counts = counter.counts();
//! assert_eq!((counts.file, counts.dir, counts.unknown), (1, 1, 0));
//! # Ok::<(), io::Error>(())
//! ```

mod fsync;
mod ops;
mod scratch;

pub use fsync::{FsyncCounter, FsyncCounts, FsyncFn, noop_fsync};
pub use ops::{OpCounter, OpCounts, OpKind, Target};
pub use scratch::{RAM_DIR_ENV, ScratchDir, fs_type_of, ram_tempdir};

/// This crate's README, whose examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme_doctests {}
