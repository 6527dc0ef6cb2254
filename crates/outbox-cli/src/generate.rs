//! `outbox completions SHELL` and `outbox man`: shell completions and man
//! pages generated from the command line's clap definitions, so they can
//! never disagree with `--help`.
//!
//! Both run only when asked for: the generators add no work to any other
//! command's start.

use std::io;
use std::path::{Path, PathBuf};

use clap::{Args, Command};
use clap_complete::Shell;

/// Print a completion script for SHELL.
///
/// Install it where your shell looks for completions (see the examples).
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  outbox completions bash > ~/.local/share/bash-completion/completions/outbox
  outbox completions zsh > ~/.zfunc/_outbox      # with ~/.zfunc in fpath
  outbox completions fish > ~/.config/fish/completions/outbox.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Print the man page outbox(1) in roff, or write it and one page per
/// subcommand (outbox-commit(1), ...) into a directory.
///
/// `cargo xtask man` runs `outbox man --dir target/man`. Read a page with
/// `man target/man/outbox.1`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write outbox.1 and outbox-<command>.1 into DIR (created if missing)
    /// instead of printing outbox.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The completion script of `cmd` for `shell`.
pub fn completions(shell: Shell, mut cmd: Command) -> Vec<u8> {
    let mut out = Vec::new();
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    out
}

/// The top-level man page of `cmd`, in roff.
pub fn man_page(cmd: Command) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    Ok(out)
}

/// Writes the man pages of `cmd` and of each of its visible subcommands
/// into `dir`; returns the files written.
pub fn man_pages_into(cmd: Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(cmd.clone(), dir)?;
    let mut written: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == "outbox.1" || (n.starts_with("outbox-") && n.ends_with(".1")))
        })
        .collect();
    written.sort();
    Ok(written)
}
