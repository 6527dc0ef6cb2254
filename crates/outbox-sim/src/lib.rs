//! Simulated file systems for proving the outbox's crash safety.
//!
//! Two [`Io`] implementations built for tests of the `outbox` crate (a
//! dev-dependency only: nothing here is part of the outbox's production
//! API):
//!
//! - [`CrashIo`]: an in-memory file system that models the page cache. File
//!   data is durable only up to the last [`sync_file`](Io::sync_file);
//!   creates, renames and unlinks are durable only once
//!   [`sync_dir`](Io::sync_dir) of the directory they touched returned.
//!   An op budget ([`CrashIo::crash_after`]) cuts the power after a chosen
//!   number of operations, and [`CrashIo::crash_image`] returns what a
//!   reboot would find: the worst legal outcome, where every un-synced byte
//!   and every un-synced directory operation is lost.
//!   [`CrashIo::crash_images`] enumerates the other legal outcomes as well.
//!   [`CrashIo::from_image`] "reboots" into a surviving image.
//! - [`FaultIo`]: wraps any [`Io`] and fails the k-th operation with a chosen
//!   error (ENOSPC, EIO, EACCES, ...), once or from k on, and logs every
//!   operation so a test can check what the caller did after the fault.
//!
//! Both keep an op log of [`Op`] values ("#7 rename /r/wal.tmp -> /r/wal")
//! so a failing test can say exactly where the crash or fault fell.
//!
//! # The crash model
//!
//! - Files are only ever created empty and appended to (that is all the
//!   [`Io`] trait offers), so a file's durable content is always a prefix of
//!   its current content: the bytes covered by its last successful fsync.
//!   At a crash the un-synced tail may be lost entirely (the worst outcome),
//!   kept, torn in the middle of a write, or kept in length but zero-filled
//!   (the inode size reached the disk, the data blocks did not).
//! - Every directory has an ordered queue of un-synced entry operations.
//!   At a crash, each directory keeps some prefix of its queue (journaled
//!   file systems commit metadata in order); the worst outcome keeps none.
//!   A rename inside one directory is one atomic queue item; a rename across
//!   two directories is two items, one per directory, so a crash can leave
//!   the file under both names or under neither unless both directories were
//!   synced.
//! - Creating a directory is an entry operation of its parent like any other:
//!   a directory whose creation was never made durable by a sync of its
//!   parent vanishes at a crash, with everything in it.
//! - After a crash every operation fails, like a machine that lost power.

//!
//! # Example
//!
//! ```
//! use outbox::io::Io;
//! use outbox_sim::CrashIo;
//! use std::path::Path;
//!
//! let io = CrashIo::new();
//! io.install_dir("/d");
//! let mut f = io.create_new(Path::new("/d/f")).unwrap();
//! io.write_all(&mut f, b"data").unwrap();
//! // Never fsynced: the worst crash outcome has no file at all.
//! assert_eq!(io.crash_image().file("/d/f"), None);
//! ```
//!
//! # Layout
//!
//! - `op`: operation kinds and the op log entry ([`Op`]).
//! - `image`: [`FsImage`], what a reboot finds.
//! - `crash`: [`CrashIo`], the page-cache model.
//! - `fault`: [`FaultIo`], fault injection over any [`Io`].

mod crash;
mod fault;
mod image;
mod op;

pub use crash::{CrashIo, SimFile, SimLock};
pub use fault::{Fault, FaultFile, FaultIo, FaultPlan, errno};
pub use image::FsImage;
pub use op::{Op, OpKind, OpKindSet};

#[cfg(doc)]
use outbox::io::Io;
