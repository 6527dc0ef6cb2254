//! Which of `commit`'s two hand-written forms a command line is: a
//! completion (`--finished --status STATUS`) or a transition (`--from
//! STATUS --to STATUS`). clap checks each flag's partners; a command line
//! that is neither form gets one message naming both, where clap's own
//! would list `--finished` and `--from` as both required, which no command
//! can satisfy (they conflict).

use clap::CommandFactory;
use clap::error::ErrorKind;

use crate::{Cli, Command, CommitArgs};

/// Both forms, as the error messages show them.
const FORMS: &str = "a completion is --finished --status STATUS [--summary TEXT], a transition \
                     is --from STATUS --to STATUS";

/// `cli` as parsed, or a usage error when it is a `commit` in neither form.
pub fn check(cli: Cli) -> Result<Cli, clap::Error> {
    match &cli.command {
        Command::Commit(args) => match problem(args) {
            Some(message) => Err(Cli::command().error(ErrorKind::MissingRequiredArgument, message)),
            None => Ok(cli),
        },
        _ => Ok(cli),
    }
}

/// What is wrong with a commit's form, if anything.
fn problem(args: &CommitArgs) -> Option<String> {
    if args.json || args.from_hook || args.finished {
        return None;
    }
    let completion_flag = [
        ("--status", args.status.is_some()),
        ("--summary", args.summary.is_some()),
        ("--summary-file", args.summary_file.is_some()),
    ]
    .into_iter()
    .find_map(|(flag, given)| given.then_some(flag));
    match (completion_flag, args.from.is_some()) {
        (Some(flag), _) => Some(format!("commit: {flag} needs --finished: {FORMS}")),
        (None, true) => None,
        (None, false) => Some(format!(
            "commit: which record? {FORMS} (or --json, --from-hook)"
        )),
    }
}
