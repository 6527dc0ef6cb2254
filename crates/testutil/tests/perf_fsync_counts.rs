//! Tier 2 count gate for the durable-replace pattern, run by
//! `cargo xtask test-perf` and by plain `cargo test` alike (it times
//! nothing, so it cannot flake on a loaded machine).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use perfbudget::CountGate;
use testutil::{FsyncCounter, noop_fsync};

/// Write-to-temp, fsync, rename, fsync the directory: the textbook durable
/// replace that storage code in this workspace builds on.
fn replace_durably(
    path: &Path,
    bytes: &[u8],
    fsync: &dyn Fn(&File) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    fsync(&file)?;
    std::fs::rename(&tmp, path)?;
    let parent = path.parent().unwrap_or(Path::new("."));
    fsync(&File::open(parent)?)
}

/// Reading the code above: one fsync of the data file, one of the directory
/// that holds the rename, per replace, whatever the payload size.
#[test]
fn perf_durable_replace_fsync_counts() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let counter = FsyncCounter::wrapping(noop_fsync());
    let hook = counter.hook();
    let target = dir.path().join("state");

    replace_durably(&target, b"small", &hook)?;
    let small = counter.counts();
    counter.reset();
    replace_durably(&target, &vec![7u8; 1 << 20], &hook)?;
    let large = counter.counts();

    CountGate::new("perf_durable_replace_fsync_counts")
        .expect("file fsyncs (small payload)", 1, small.file)
        .expect("dir fsyncs (small payload)", 1, small.dir)
        .expect("unknown fsyncs (small payload)", 0, small.unknown)
        .expect("file fsyncs (1 MiB payload)", 1, large.file)
        .expect("dir fsyncs (1 MiB payload)", 1, large.dir)
        .check();
    Ok(())
}
