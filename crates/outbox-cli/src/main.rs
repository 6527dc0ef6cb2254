//! `outbox`: the durable per-parent outbox from a shell, a script or an
//! agent's hooks.
//!
//! Thin glue over the [`outbox`] library: each subcommand parses its
//! arguments, calls one library operation and prints the result. The
//! Claude Code hook rules live in [`outbox::handover`] and
//! [`outbox::stop_hook`]. The newer commands live in their own modules:
//! `exec` (`drain --exec`), `from_hook` (`commit --from-hook`),
//! `handover_cmd` (`stop-hook`'s default mode, `context-hook`), `hooks`,
//! `settings` (`hooks install|uninstall`, over `jsonspan`), `watch`
//! (`watch`, `wait`), `doctor` and `claude_doctor`, `show` and `generate`
//! (`completions`, `man`).
//!
//! Exit status: 0 success; 1 a "no" answer (`pending` with nothing
//! pending, `doctor` with something to fix); 2 a usage or I/O error, with
//! one line on stderr naming what and where. The hooks (`stop-hook`,
//! `context-hook`, `commit --from-hook`) never exit 2 (Claude Code would
//! read 2 as "block"): their errors exit 1. See `outbox --help` and
//! `README.md`.

mod claude_doctor;
mod commit_form;
mod doctor;
mod duration;
mod exec;
mod from_hook;
mod generate;
mod handover_cmd;
mod hooks;
mod jsonspan;
mod private;
mod render;
mod root;
mod settings;
mod show;
mod store;
mod watch;

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use outbox::stop_hook::{self, HookInput, StopHookError, StopOutcome};
use outbox::{DrainWithError, Record, Store, SweepReport};

use crate::store::{AnyStore, Location};
use serde::Deserialize;

/// Exit status of a "yes" answer and of success.
const EXIT_OK: u8 = 0;
/// Exit status of a "no" answer (`pending` with nothing pending), and of
/// every `stop-hook` error.
const EXIT_NO: u8 = 1;
/// Exit status of a usage or I/O error.
const EXIT_ERROR: u8 = 2;

/// The most bytes read from stdin (`commit --json`, `--from-hook`,
/// `--summary-file -`, `stop-hook`) or from a `--summary-file`.
const MAX_STDIN_BYTES: u64 = 32 * 1024 * 1024;

/// The version of the on-disk format this binary reads and writes: 2 is
/// protocol v2 of the `outbox` library (append-only inbox, the claimed
/// inbox as the WAL, the append-only consumed ledger); it still reads and
/// drains format 1, agent-deck's layout, and migrates its ledger. The
/// record encoding is agent-deck's in both. Raised when a change makes
/// files unreadable to an older binary. `outbox --version` prints it.
const FORMAT_VERSION: u32 = 2;

/// `outbox --version`: the package version and [`FORMAT_VERSION`] (a unit
/// test keeps the two in step; `concat!` takes only literals).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (on-disk format 2)");

const ABOUT: &str = "A durable per-parent outbox: child sessions commit completion records, \
                     the parent drains each turn once.";

const LONG_ABOUT: &str = "\
A durable per-parent outbox: child sessions commit completion records, the
parent drains each turn once.

Store: --store URL (or --store-file FILE), else --root DIR, else $OUTBOX_STORE
(or $OUTBOX_STORE_FILE), else $OUTBOX_ROOT, else $XDG_DATA_HOME/outbox, else
~/.local/share/outbox. A postgres:// URL is the
PostgreSQL store (for agents on several hosts); a path or file:PATH is the
file store (the default) on that data root. The layout is agent-deck's, so --root may point at an
agent-deck data directory, but only while agent-deck is stopped: agent-deck does
not take the locks this tool takes, so a record it appends while this tool
rewrites the same inbox is lost. `pending` and `peek` never write; `drain`,
`sweep` and `stop-hook` write nothing on a root that holds no inbox yet.

Exit status: 0 success; 1 a \"no\" answer (`pending` with nothing pending,
`doctor` with something to fix); 2 a usage or I/O error (or a `drain --exec`
command that did not confirm), with one line on stderr naming what and where.
The hooks (`stop-hook`, `context-hook`, `commit --from-hook`) never exit 2
(Claude Code reads 2 as \"block\"): their errors exit 1.";

const AFTER_HELP: &str = "\
Example:
  outbox --root /tmp/ob commit --parent conductor --child w1 --finished \\
      --status success --summary 'parser done'
  outbox --root /tmp/ob pending --parent conductor && echo something is pending
  outbox --root /tmp/ob drain --parent conductor";

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "outbox", version = VERSION, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
struct Cli {
    /// Data root directory [default: $OUTBOX_ROOT, else $XDG_DATA_HOME/outbox,
    /// else ~/.local/share/outbox].
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// The store: postgres://USER@HOST:PORT/DB for the PostgreSQL store, or
    /// a data root (PATH or file:PATH) for the file store [default:
    /// $OUTBOX_STORE, else the data root].
    #[arg(long, global = true, value_name = "URL", conflicts_with = "root")]
    store: Option<String>,
    /// Read the store's URL from FILE, which must be yours and private
    /// (chmod 600): keeps a password out of argv and hook settings
    /// [default: $OUTBOX_STORE_FILE].
    #[arg(
        long = "store-file",
        global = true,
        value_name = "FILE",
        conflicts_with_all = ["root", "store"]
    )]
    store_file: Option<PathBuf>,
    /// RISK: use a data root that other users can write or own (anyone who
    /// can write it can plant, remove or reorder records). Without it such
    /// a root is refused; see the README's Security section.
    #[arg(long = "allow-shared-root", global = true)]
    allow_shared_root: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Commit(CommitArgs),
    Drain(DrainArgs),
    Pending(PendingArgs),
    Peek(PeekArgs),
    Sweep(SweepArgs),
    StopHook(StopHookArgs),
    ContextHook(handover_cmd::ContextHookArgs),
    Hooks(hooks::HooksArgs),
    Show(show::ShowArgs),
    Doctor(doctor::DoctorArgs),
    Watch(watch::WatchArgs),
    Wait(watch::WaitArgs),
    Completions(generate::CompletionsArgs),
    #[command(hide = true)]
    Man(generate::ManArgs),
}

/// Commit one record to a parent's inbox; prints its turn fingerprint.
///
/// Four forms: a status transition (--from and --to), a completion
/// (--finished --status, optionally --summary or --summary-file, capped at
/// 32 KiB with a warning), one record as a JSON object on stdin (--json,
/// the on-disk field format, as printed by `drain --json`), or a child's
/// Claude Code Stop hook (--from-hook). A record replaces any pending
/// record of the same child (last wins). Returns once the record is
/// durable. Warns on stderr when the turn was already consumed (no drain
/// will deliver it; a new --output-hash marks a new turn).
///
/// --from-hook reads a child's hook JSON on stdin and commits a
/// completion: the child is session_id (agent_id for SubagentStop). Stop
/// and SubagentStop: status `success`, summary last_assistant_message
/// (empty when absent). StopFailure: status `error`, the error and the last
/// message. SessionEnd: status `ended` with the reason, not committed
/// while a record of the child is pending (it would replace that report).
/// Unknown fields are ignored. Its errors print one line on stderr and exit
/// 1, never 2 (Claude Code reads 2 as "block"), so a broken hook never
/// traps the agent. `outbox hooks --child` prints the settings to install
/// it.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  outbox commit --parent conductor --child w1 --title parser --from running --to waiting
  outbox commit --parent conductor --child w1 --finished --status success --summary 'tests pass'
  git log -1 | outbox commit --parent conductor --child w1 --finished --status success \\
      --summary-file -
  echo '{\"child_session_id\":\"w1\",\"kind\":\"finished\",\"done_status\":\"failed\"}' \\
      | outbox commit --parent conductor --json
  echo '{\"session_id\":\"w1\",\"hook_event_name\":\"Stop\",\"last_assistant_message\":\"done\"}' \\
      | outbox commit --parent conductor --from-hook")]
struct CommitArgs {
    /// The parent session whose inbox receives the record.
    #[arg(long, value_name = "ID")]
    parent: String,
    /// The child session the record is about.
    #[arg(long, value_name = "ID", required_unless_present_any = ["json", "from_hook"])]
    child: Option<String>,
    /// The child's display title.
    #[arg(long, value_name = "TEXT")]
    title: Option<String>,
    /// The profile the child runs under.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Status before the transition.
    #[arg(
        long,
        value_name = "STATUS",
        requires = "to",
        conflicts_with = "finished"
    )]
    from: Option<String>,
    /// Status after the transition.
    #[arg(
        long,
        value_name = "STATUS",
        requires = "from",
        conflicts_with = "finished"
    )]
    to: Option<String>,
    /// Hash of the child's last output (identifies the turn).
    #[arg(long = "output-hash", value_name = "HASH")]
    output_hash: Option<String>,
    /// Commit a completion record (needs --status).
    #[arg(long, requires = "status")]
    finished: bool,
    /// The completion's status, e.g. success or failed.
    #[arg(long, value_name = "STATUS")]
    status: Option<String>,
    /// The completion's summary (capped at 32 KiB).
    #[arg(long, value_name = "TEXT")]
    summary: Option<String>,
    /// Read the completion's summary from a file, or from stdin with `-`
    /// (UTF-8, capped at 32 KiB; a trailing newline is dropped).
    #[arg(long = "summary-file", value_name = "PATH", conflicts_with = "summary")]
    summary_file: Option<PathBuf>,
    /// Read one record, a JSON object in the on-disk field format, from stdin.
    #[arg(
        long,
        conflicts_with_all = [
            "child", "title", "profile", "from", "to", "output_hash", "finished", "status",
            "summary", "summary_file", "from_hook",
        ]
    )]
    json: bool,
    /// Read a Claude Code Stop, StopFailure, SessionEnd or SubagentStop
    /// hook input on stdin and commit the child's completion (see above).
    #[arg(
        long = "from-hook",
        conflicts_with_all = [
            "child", "from", "to", "output_hash", "finished", "status", "summary",
            "summary_file",
        ]
    )]
    from_hook: bool,
}

/// Drain a parent's inbox: print each deliverable record and mark it
/// consumed.
///
/// One record per child (the latest), each turn once. Text output is one
/// line per record, up to three tab-separated columns: child id, status
/// (done_status of a completion, else to_status), and the summary of a
/// completion (else the child's title); empty columns at the end are left
/// out; tabs, newlines and backslashes inside a column are escaped (\t, \n,
/// \\). --json prints a JSON array of records in the on-disk field format.
///
/// Printing is not delivery: records are marked consumed once the output
/// was written and flushed, but a pipe takes the whole output into its
/// buffer, so `outbox drain | head -1` consumes every record although one
/// was read. If writing fails, or the command exits 2 after printing,
/// nothing printed was marked consumed: the next drain prints it again.
/// (One exception, named in the error: the disk failed both making the
/// consumed ledger durable and putting the old one back.)
///
/// --exec CMD [ARGS...] delivers for real: CMD runs with the records on its
/// stdin (JSON lines in the on-disk field format, or one JSON array with
/// --json), its stdout and stderr are outbox's, and the records are marked
/// consumed only when it read them all and exited 0. Otherwise outbox says
/// how CMD ended, exits 2, and the records stay pending. CMD runs only when
/// something is deliverable; other drains of the parent wait for it (so CMD
/// must not drain the same parent itself: that drain would wait forever).
/// --exec must come last: every argument after it belongs to CMD.
///
/// --max N delivers at most N records; the rest stay pending and come first
/// next time.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  outbox drain --parent conductor
  outbox drain --parent conductor --json > delivered.json
  outbox drain --parent conductor --max 10 --exec ./notify.sh --channel ops
  outbox drain --parent conductor --json --exec sh -c 'jq . > delivered.json'")]
struct DrainArgs {
    #[command(flatten)]
    inbox: InboxArgs,
    /// Deliver at most N records; the rest stay pending.
    #[arg(long, value_name = "N", value_parser = parse_max)]
    max: Option<usize>,
    /// Run CMD with the records on its stdin; mark them consumed only if it
    /// exits 0. Must come last: every argument after it is CMD's.
    #[arg(
        long,
        value_name = "CMD",
        num_args = 1..,
        allow_hyphen_values = true
    )]
    exec: Option<Vec<OsString>>,
}

/// `--max N`: a whole number, at least 1.
fn parse_max(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("expected a whole number: {e}")),
    }
}

/// The flags of a command that reads one parent's inbox.
#[derive(Debug, Args)]
struct InboxArgs {
    /// The parent session whose inbox is read.
    #[arg(long, value_name = "ID")]
    parent: String,
    /// A JSON array of records instead of text lines (for drain --exec:
    /// instead of JSON lines).
    #[arg(long)]
    json: bool,
}

/// Exit 0 if something is pending for the parent, 1 if not; prints nothing
/// and consumes nothing.
#[derive(Debug, Args)]
#[command(after_help = "\
Example:
  if outbox pending --parent conductor; then outbox drain --parent conductor; fi")]
struct PendingArgs {
    /// The parent session to ask about.
    #[arg(long, value_name = "ID")]
    parent: String,
}

/// Show what a drain would deliver now, consuming nothing (same output as
/// drain).
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  outbox peek --parent conductor
  outbox peek --parent conductor --json")]
struct PeekArgs {
    #[command(flatten)]
    inbox: InboxArgs,
}

/// Drop pending records older than a duration, in every inbox under the
/// root (records without a timestamp are kept), and the temporary files of
/// writers killed mid-write; prints how many records were dropped. A file
/// that belongs to no parent is named on stderr and left alone.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  outbox sweep                     # the default: older than 7 days
  outbox sweep --older-than 36h
  outbox sweep --older-than '1d 12h'
  outbox sweep --older-than 2w")]
struct SweepArgs {
    /// How old a record must be to go: numbers with a unit, summed, as
    /// humantime reads them (7d, 36h, 90m, 45s, 1d12h, 1d 12h, 1w, 90min,
    /// 2days).
    #[arg(
        long = "older-than",
        value_name = "DURATION",
        default_value = "7d",
        value_parser = duration::parse_duration
    )]
    older_than: Duration,
}

/// The Claude Code Stop hook of a parent: read the hook's JSON on stdin
/// and, when child sessions completed, print
/// {"decision":"block","reason":...} so the agent handles them before it
/// stops.
///
/// Confirmed delivery (the default): the records shown stay pending until
/// the session's next move proves the model acted on them. The next Stop
/// with "stop_hook_active": true (Claude continued because of the block)
/// confirms and consumes exactly the turns shown; a Stop with
/// "stop_hook_active": false, or a UserPromptSubmit or SessionStart
/// (context-hook) of the session first, means the block was not acted on
/// (the user pressed Esc, which fires no hook): the same records are shown
/// again, first, each saying it was shown before. The state (what was shown to which
/// session, and the block counter) is persisted before printing
/// (`runtime/stop-blocks/<id>.json` on the file store). After 3
/// consecutive blocks in a session the hook stops blocking; the records
/// stay pending for the session's next prompt (context-hook). Nothing
/// drains them in the background.
/// The reason (and the context) show the pending records that fit the
/// budget (16 000 characters; a context at most 10 000), each child's text
/// framed as data (lines prefixed "| "); the rest stay pending for the next
/// delivery, and a record too long for it is shown cut (`outbox show`
/// prints it whole while it is pending, which it is until confirmed).
///
/// --consume-on-print keeps the older rule: the records are consumed as
/// soon as the decision was written, so a block Claude Code does not act
/// on loses them to the parent.
///
/// Nothing pending: prints nothing and writes nothing. Empty stdin reads as
/// {}. Unknown fields are ignored. hook_event_name must be Stop (or
/// absent); SubagentStop is refused (a block there keeps the *subagent*
/// working and hands it the parent's records) unless --allow-subagent;
/// install `commit --from-hook` under SubagentStop instead (`outbox hooks
/// --subagents`). Every error (malformed JSON, an unusable root, a state
/// that cannot be persisted) prints one line on stderr, blocks nothing,
/// consumes nothing and exits 1 — never 2, which Claude Code would take as
/// "block" and could trap the agent in a loop. `outbox hooks` prints the
/// settings to install it.
#[derive(Debug, Args)]
#[command(after_help = "\
Example, in .claude/settings.json of the parent's session:
  {\"hooks\": {\"Stop\": [{\"hooks\": [{\"type\": \"command\",
      \"command\": \"outbox stop-hook --parent conductor\"}]}]}}
By hand:
  echo '{\"stop_hook_active\": false}' | outbox stop-hook --parent conductor")]
struct StopHookArgs {
    /// The parent session whose inbox is drained [default: the hook
    /// input's session_id].
    #[arg(long, value_name = "ID")]
    parent: Option<String>,
    /// Consume the records as soon as the block decision was written (the
    /// older rule), instead of on the session's confirmation.
    #[arg(long = "consume-on-print")]
    consume_on_print: bool,
    /// Accept a SubagentStop input: block the subagent with the parent's
    /// records (they then reach the subagent, not the parent).
    #[arg(long = "allow-subagent")]
    allow_subagent: bool,
}

/// A command that failed: its exit status and a message for stderr.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// A usage or I/O error (exit status 2).
    fn error(message: impl ToString) -> Self {
        Failure {
            code: EXIT_ERROR,
            message: message.to_string(),
        }
    }
}

impl From<outbox::Error> for Failure {
    fn from(e: outbox::Error) -> Self {
        Failure::error(private::message(&e))
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // Before anything can fail: a password given anywhere is masked in
    // every line written from here on.
    for given in args.iter().cloned().chain(std::env::var_os("OUTBOX_STORE")) {
        private::remember_secrets(&given.to_string_lossy());
    }
    let cli = match Cli::try_parse_from(&args).and_then(commit_form::check) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr
            // with 2, except for the hooks (see `StopHookArgs`), as one
            // line.
            let code = match u8::try_from(e.exit_code()).unwrap_or(EXIT_ERROR) {
                EXIT_OK => {
                    let _ = e.print();
                    return ExitCode::from(EXIT_OK);
                }
                _ if runs_as_hook(&args) => EXIT_NO,
                code => code,
            };
            if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                let _ = e.print(); // `outbox` alone: the help, on stderr.
            } else {
                let line = private::scrub(&usage_error_line(&e.render().to_string()));
                let _ = writeln!(io::stderr(), "{line}");
            }
            return ExitCode::from(code);
        }
    };
    let hook = match &cli.command {
        Command::StopHook(_) => Some("outbox stop-hook"),
        Command::ContextHook(_) => Some("outbox context-hook"),
        Command::Commit(args) if args.from_hook => Some("outbox commit --from-hook"),
        _ => None,
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            // One line, whatever the message holds; a closed stderr is
            // ignored, never a panic.
            let message = private::scrub(&failure.message.replace(['\n', '\r'], " "));
            let _ = writeln!(io::stderr(), "{}: {message}", hook.unwrap_or("outbox"));
            // A hook's error must not read as "block" (see `StopHookArgs`).
            let code = if hook.is_some() {
                EXIT_NO
            } else {
                failure.code
            };
            ExitCode::from(code)
        }
    }
}

/// clap's usage error as one line: its first paragraph (the error, which
/// names the argument and the value) and its tips (`tip: a similar
/// subcommand exists: 'commit'`), lines joined, `error:` replaced by
/// `outbox:`, and a pointer to `--help` instead of the usage block.
fn usage_error_line(rendered: &str) -> String {
    let mut paragraphs = rendered.split("\n\n");
    let first = paragraphs.next().unwrap_or_default();
    let tips = paragraphs.filter(|p| p.trim_start().starts_with("tip:"));
    let one_line = |paragraph: &str| {
        let words: Vec<&str> = paragraph
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        words.join(" ")
    };
    let line = std::iter::once(first)
        .chain(tips)
        .map(one_line)
        .collect::<Vec<_>>()
        .join("; ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    format!("outbox: {line} (see --help)")
}

/// Whether an argument list (that clap rejected) runs a Claude Code hook:
/// `stop-hook`, or `commit` with `--from-hook`. Its usage errors exit 1,
/// not 2.
fn runs_as_hook(args: &[OsString]) -> bool {
    match subcommand_of(args) {
        Some(sub) if sub == "stop-hook" || sub == "context-hook" => true,
        Some(sub) if sub == "commit" => args.iter().any(|a| a == "--from-hook"),
        _ => false,
    }
}

/// The subcommand an argument list names: the first argument after the
/// program name that is not an option (nor the value of `--root`).
fn subcommand_of(args: &[OsString]) -> Option<&OsStr> {
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if arg == "--root" || arg == "--store" || arg == "--store-file" {
            rest.next();
        } else if !arg.as_encoded_bytes().starts_with(b"-") {
            return Some(arg);
        }
    }
    None
}

fn run(cli: Cli) -> Result<u8, Failure> {
    // Commands that need no data root.
    match &cli.command {
        Command::Completions(args) => {
            return print(&generate::completions(args.shell, Cli::command()));
        }
        Command::Man(args) => return man(args),
        _ => {}
    }
    private::set_policy(cli.allow_shared_root);
    let (loc, chooser) = store::resolve(cli.store, cli.store_file, cli.root, |name| {
        std::env::var_os(name)
    })
    .map_err(Failure::error)?;
    private::set_chooser(chooser.clone());
    match cli.command {
        Command::Commit(args) => commit(&loc, args),
        Command::Drain(args) => drain(&loc, &args),
        Command::Pending(args) => pending(&loc, &args),
        Command::Peek(args) => peek(&loc, &args),
        Command::Sweep(args) => sweep(&loc, &args),
        Command::StopHook(args) => run_stop_hook(&loc, args),
        Command::ContextHook(args) => handover_cmd::context(&loc, args),
        Command::Hooks(args) => print_hooks(&loc, &args),
        Command::Show(args) => show::run(&loc, &args),
        Command::Watch(args) => watch::run_watch(&loc, &args),
        Command::Wait(args) => watch::run_wait(&loc, &args),
        Command::Doctor(_) => {
            let mut report = match &loc {
                Location::Files(root) => doctor::examine(root, chooser.describe()),
                #[cfg(feature = "postgres")]
                Location::Postgres(url) => doctor::examine_postgres(url, chooser.describe()),
            };
            claude_doctor::examine(&mut report);
            report.lines.insert(
                0,
                (
                    "info",
                    format!(
                        "outbox {}, on-disk format {FORMAT_VERSION}",
                        env!("CARGO_PKG_VERSION")
                    ),
                ),
            );
            print(private::scrub(&report.render()).as_bytes())?;
            Ok(if report.has_problems() {
                EXIT_NO
            } else {
                EXIT_OK
            })
        }
        Command::Completions(_) | Command::Man(_) => unreachable!("handled above"),
    }
}

/// `outbox man`: outbox(1) on stdout, or every page into `--dir`.
fn man(args: &generate::ManArgs) -> Result<u8, Failure> {
    match &args.dir {
        None => {
            let page = generate::man_page(Cli::command())
                .map_err(|e| Failure::error(format!("render the man page: {e}")))?;
            print(&page)
        }
        Some(dir) => {
            let written = generate::man_pages_into(Cli::command(), dir).map_err(|e| {
                Failure::error(format!("write man pages to {}: {e}", dir.display()))
            })?;
            let list: String = written
                .iter()
                .map(|p| format!("{}\n", p.display()))
                .collect();
            print(list.as_bytes())
        }
    }
}

/// `outbox hooks`: the settings.json fragment, with this binary's and the
/// root's absolute paths.
fn print_hooks(loc: &Location, args: &hooks::HooksArgs) -> Result<u8, Failure> {
    if let Some(action) = &args.action {
        return settings::run(loc, action);
    }
    let parent = args.parent.as_deref().unwrap_or_default();
    check_parent(parent)?;
    let (binary, store) = hook_binary_and_store(loc)?;
    let text = hooks::fragment(&binary, &store, args).map_err(Failure::error)?;
    print(text.as_bytes())
}

/// What a hook's command names: this binary and the store, by absolute
/// path.
fn hook_binary_and_store(loc: &Location) -> Result<(PathBuf, hooks::StoreArg), Failure> {
    let binary = std::env::current_exe()
        .map_err(|e| Failure::error(format!("cannot find this binary's path: {e}")))?;
    let store = private::hook_store_arg(loc).map_err(Failure::error)?;
    Ok((binary, store))
}

/// Checks a parent id before anything touches a store (every store takes
/// the file outbox's ids).
fn check_parent(parent: &str) -> Result<(), Failure> {
    outbox::check_parent_id(parent).map_err(Failure::from)
}

/// Opens the outbox for a command that only reads or drains: `None` when
/// the root has neither an inbox directory nor a WAL directory, so nothing
/// can be pending; such a root is left as it is (not even created). The
/// outbox is opened lazily: read-only commands create nothing, and a drain
/// or sweep creates only the directories it writes to.
// Without the PostgreSQL store the match below has one arm.
#[cfg_attr(
    not(feature = "postgres"),
    allow(clippy::infallible_destructuring_match)
)]
fn open_existing(loc: &Location) -> Result<Option<AnyStore>, Failure> {
    let root = match loc {
        #[cfg(feature = "postgres")]
        Location::Postgres(url) => return Ok(Some(AnyStore::postgres(url)?)),
        Location::Files(root) => root,
    };
    if matches!(root.try_exists(), Ok(false)) {
        // Most likely a mistyped --root or OUTBOX_ROOT: say so, but answer
        // as documented (nothing is pending there).
        warn(&format!(
            "data root {} does not exist; nothing is pending there (check --root and \
             $OUTBOX_ROOT; `outbox doctor` shows which root is used)",
            root.display()
        ));
        return Ok(None);
    }
    // The directory names are fixed by the protocol's file layout.
    for dir in ["inboxes", "runtime/inbox-inflight"] {
        if !matches!(root.join(dir).try_exists(), Ok(false)) {
            // Present, or unknown: let the library open it and report.
            return Ok(Some(AnyStore::Files(private::open_lazy(root))));
        }
    }
    Ok(None)
}

/// Writes `bytes` to stdout and flushes.
fn write_stdout(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// Writes output that consumes nothing: a reader that closed the pipe early
/// (`outbox peek | head -1`) is not an error.
fn print(bytes: &[u8]) -> Result<u8, Failure> {
    match write_stdout(bytes) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(Failure::error(format!("write stdout: {e}")))
        }
        _ => Ok(EXIT_OK),
    }
}

fn warn(message: &str) {
    let message = private::scrub(message);
    let _ = writeln!(io::stderr(), "outbox: warning: {message}");
}

/// Reads all of stdin, refusing more than [`MAX_STDIN_BYTES`].
fn read_stdin() -> Result<Vec<u8>, Failure> {
    read_limited(io::stdin().lock(), "stdin")
}

/// Reads all of `reader` (named `what` in errors), refusing more than
/// [`MAX_STDIN_BYTES`].
fn read_limited(reader: impl Read, what: &str) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_STDIN_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::error(format!("read {what}: {e}")))?;
    if bytes.len() as u64 > MAX_STDIN_BYTES {
        return Err(Failure::error(format!(
            "{what}: more than {} MiB of input",
            MAX_STDIN_BYTES >> 20
        )));
    }
    Ok(bytes)
}

/// `bytes` as text, or an error that says precisely what is wrong: a UTF-8
/// byte-order mark, or the first invalid byte by offset, line and column.
fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, Failure> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Err(Failure::error(format!(
            "{what}: starts with a UTF-8 byte-order mark (bytes EF BB BF), which JSON and \
             summaries must not have; remove it (e.g. sed '1s/^\\xEF\\xBB\\xBF//')"
        )));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let before = &bytes[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        // The column in characters: what precedes is valid UTF-8.
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        Failure::error(format!(
            "{what}: invalid UTF-8 at byte {at} (line {line}, column {column}: byte {:#04x}); \
             the input must be UTF-8",
            bytes[at]
        ))
    })
}

/// Parses one record: a single JSON object, nothing after it but
/// whitespace, whose `kind` is empty (a transition) or `finished` with a
/// `done_status` (a completion).
fn parse_record(bytes: &[u8]) -> Result<Record, Failure> {
    let bad = |why: String| Failure::error(format!("stdin: not a record: {why}"));
    let text = utf8(bytes, "stdin")?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    if !value.is_object() {
        let hint = if value.is_array() {
            " (commit the elements of a `drain --json` array one at a time)"
        } else {
            ""
        };
        return Err(bad(format!("expected one JSON object{hint}")));
    }
    let record = Record::deserialize(value).map_err(|e| bad(e.to_string()))?;
    if !record.kind.is_empty() && !record.is_finished() {
        return Err(bad(format!(
            "unknown kind {:?} (expected \"{}\" for a completion, or no kind for a status \
             transition)",
            record.kind,
            outbox::KIND_FINISHED
        )));
    }
    if record.is_finished() && record.done_status.trim().is_empty() {
        return Err(bad(
            "a finished record needs a done_status (e.g. \"success\")".to_owned(),
        ));
    }
    Ok(record)
}

/// The summary named by `--summary-file`: the file's text, or stdin's for
/// `-`, without one trailing newline.
fn read_summary_file(path: &Path) -> Result<String, Failure> {
    let (bytes, what) = if path == Path::new("-") {
        (read_stdin()?, "stdin".to_owned())
    } else {
        let what = path.display().to_string();
        let file = std::fs::File::open(path)
            .map_err(|e| Failure::error(format!("--summary-file {what}: {e}")))?;
        (read_limited(file, &what)?, what)
    };
    let mut text = utf8(&bytes, &format!("--summary-file {what}"))?.to_owned();
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

fn commit(loc: &Location, args: CommitArgs) -> Result<u8, Failure> {
    let mut only_if_nothing_pending = false;
    let mut record = if args.json {
        parse_record(&read_stdin()?)?
    } else if args.from_hook {
        let bytes = read_stdin()?;
        let hooked = from_hook::record(&bytes)
            .map_err(|e| Failure::error(format!("{e}; nothing committed, not blocking")))?;
        only_if_nothing_pending = hooked.only_if_nothing_pending;
        let mut record = hooked.record;
        if let Some(title) = args.title {
            record.child_title = title;
        }
        record.profile = args.profile.unwrap_or_default();
        record
    } else {
        let child = args.child.unwrap_or_default();
        let mut record = match args.status {
            Some(status) => {
                let mut r = Record::finished(child, status);
                r.done_summary = match (args.summary, args.summary_file) {
                    (_, Some(path)) => read_summary_file(&path)?,
                    (summary, None) => summary.unwrap_or_default(),
                };
                r
            }
            None => Record::transition(
                child,
                args.from.unwrap_or_default(),
                args.to.unwrap_or_default(),
            ),
        };
        record.child_title = args.title.unwrap_or_default();
        record.profile = args.profile.unwrap_or_default();
        record.last_output_hash = args.output_hash.unwrap_or_default();
        record
    };
    if record.child_session_id.trim().is_empty() {
        return Err(Failure::error(
            "the record has no child session id (--child, or child_session_id in --json)",
        ));
    }
    check_parent(&args.parent)?;
    let len = record.done_summary.len();
    if record.cap_summary() {
        warn(&format!(
            "the summary of {:?} is {len} bytes; it was cut to {} bytes, ending in {:?}",
            record.child_session_id,
            outbox::MAX_SUMMARY_BYTES,
            outbox::TRUNCATION_MARKER
        ));
    }
    let store = match loc {
        Location::Files(root) => AnyStore::Files(private::open_lazy(root)),
        #[cfg(feature = "postgres")]
        Location::Postgres(url) => AnyStore::postgres(url)?,
    };
    if only_if_nothing_pending
        && let Some(pending) = store
            .peek(&args.parent)?
            .into_iter()
            .find(|r| r.child_session_id == record.child_session_id)
    {
        // SessionEnd: the child's last report is still pending; the end
        // would supersede it (last wins) before the parent saw it.
        warn(&format!(
            "{}'s last report ({}) is still pending for {:?}; the session's end is not \
             committed over it",
            record.child_session_id,
            pending.turn_key(),
            args.parent
        ));
        return Ok(EXIT_OK);
    }
    let committed = store.commit(&args.parent, record)?;
    let stamped = &committed.record;
    if committed.already_consumed {
        warn(&format!(
            "child {:?}'s turn {:?} was already consumed by {:?}; no drain will deliver it \
             (a new --output-hash, or last_output_hash, marks a new turn)",
            stamped.child_session_id,
            stamped.turn_key(),
            args.parent
        ));
    }
    print(format!("{}\n", stamped.turn_fingerprint).as_bytes())
}

/// The message of a drain that failed in the outbox, saying what became of
/// the records, by the error's typed [`outbox::RecordsState`].
fn drain_failure(e: &outbox::Error) -> String {
    match e.records_state() {
        // The error says what may be marked, and which children.
        outbox::RecordsState::Consumed | outbox::RecordsState::MaybeConsumed => e.to_string(),
        _ => format!("{e}; nothing was marked consumed, the records stay pending"),
    }
}

fn drain(loc: &Location, args: &DrainArgs) -> Result<u8, Failure> {
    let inbox = &args.inbox;
    check_parent(&inbox.parent)?;
    let max = args.max.unwrap_or(usize::MAX);
    if let Some(cmd) = &args.exec {
        return drain_exec(loc, inbox, max, cmd);
    }
    let empty = if inbox.json { &b"[]\n"[..] } else { b"" };
    let Some(outbox) = open_existing(loc)? else {
        return print(empty);
    };
    let drained = outbox
        .drain_with_max(&inbox.parent, max, |records| {
            write_stdout(&render::records(records, inbox.json)?)
        })
        .map_err(|e| match e {
            DrainWithError::Delivery(e) => Failure::error(format!(
                "write stdout: {e}; nothing was marked consumed, the records stay pending"
            )),
            DrainWithError::Outbox(e) => Failure::error(drain_failure(&e)),
        })?;
    warn_about(&drained);
    if drained.records.is_empty() {
        return print(empty);
    }
    Ok(EXIT_OK)
}

/// `drain --exec CMD`: the records go to CMD's stdin, and are marked
/// consumed only when it read them all and exited 0.
fn drain_exec(
    loc: &Location,
    inbox: &InboxArgs,
    max: usize,
    cmd: &[OsString],
) -> Result<u8, Failure> {
    let Some(outbox) = open_existing(loc)? else {
        return Ok(EXIT_OK);
    };
    let mut count = 0;
    let drained = outbox
        .drain_with_max(&inbox.parent, max, |records| {
            count = records.len();
            let input = if inbox.json {
                render::records(records, true)
            } else {
                render::json_lines(records)
            }
            .map_err(|e| format!("encode the records: {e}"))?;
            exec::deliver(cmd, &input).map_err(|e| e.to_string())
        })
        .map_err(|e| match e {
            DrainWithError::Delivery(e) => Failure::error(format!(
                "drain --exec {}: {e}; nothing was marked consumed, the {count} record(s) stay \
                 pending",
                exec::display(cmd)
            )),
            DrainWithError::Outbox(e) => Failure::error(drain_failure(&e)),
        })?;
    warn_about(&drained);
    Ok(EXIT_OK)
}

/// The stderr warnings of a drain (plain or `--exec`) that succeeded.
fn warn_about(drained: &outbox::Drained) {
    for path in &drained.quarantined {
        warn(&format!(
            "unreadable lines were set aside in {}",
            path.display()
        ));
    }
    if drained.ledger_was_corrupt {
        warn("the consumed ledger was unreadable and was reset; turns may be delivered again");
    }
}

fn pending(loc: &Location, args: &PendingArgs) -> Result<u8, Failure> {
    check_parent(&args.parent)?;
    let pending = match open_existing(loc)? {
        Some(outbox) => outbox.has_pending(&args.parent)?,
        None => false,
    };
    Ok(if pending { EXIT_OK } else { EXIT_NO })
}

fn peek(loc: &Location, args: &PeekArgs) -> Result<u8, Failure> {
    let inbox = &args.inbox;
    check_parent(&inbox.parent)?;
    let records = match open_existing(loc)? {
        Some(outbox) => outbox.peek(&inbox.parent)?,
        None => Vec::new(),
    };
    let bytes = render::records(&records, inbox.json).map_err(Failure::error)?;
    print(&bytes)
}

fn sweep(loc: &Location, args: &SweepArgs) -> Result<u8, Failure> {
    let report = match open_existing(loc)? {
        Some(outbox) => outbox.sweep_stale_all(args.older_than)?,
        None => SweepReport::default(),
    };
    // Debug quoting keeps an odd file name on one line.
    let mut failed = 0;
    for (path, why) in &report.skipped {
        if matches!(why, outbox::Error::Io { .. }) {
            failed += 1;
            warn(&format!(
                "could not sweep {path:?}: {why}; the other inboxes were swept"
            ));
        } else {
            warn(&format!(
                "skipped {path:?}: {why}; the other inboxes were swept"
            ));
        }
    }
    let code = print(format!("{}\n", report.dropped).as_bytes())?;
    if failed > 0 {
        return Err(Failure::error(format!(
            "{failed} of the parents could not be swept (named above)"
        )));
    }
    Ok(code)
}

fn run_stop_hook(loc: &Location, args: StopHookArgs) -> Result<u8, Failure> {
    let input = HookInput::parse(&read_stdin()?)
        .map_err(|e| Failure::error(format!("stdin: {e}; not blocking")))?;
    if !input.is_stop_event() {
        return Err(Failure::error(format!(
            "stdin: hook_event_name is {:?}, expected {}: install this command under \
             hooks.Stop; not blocking",
            input.hook_event_name,
            stop_hook::STOP_EVENTS.join(" or ")
        )));
    }
    if input.hook_event_name == "SubagentStop" && !args.allow_subagent {
        return Err(Failure::error(
            "stdin: hook_event_name is \"SubagentStop\": a block there would keep the subagent \
             working and hand it the parent's records, which the parent would never see; \
             install `outbox commit --parent P --from-hook` under SubagentStop instead \
             (outbox hooks --subagents), or pass --allow-subagent; not blocking, nothing \
             consumed",
        ));
    }
    if !args.consume_on_print {
        return handover_cmd::stop(loc, args.parent, &input);
    }
    let parent = match args.parent {
        Some(parent) => parent,
        None if !input.session_id.trim().is_empty() => input.session_id,
        None => {
            return Err(Failure::error(
                "no parent: pass --parent, or a session_id in the hook input; not blocking",
            ));
        }
    };
    check_parent(&parent)?;
    let Some(outbox) = open_existing(loc)? else {
        return Ok(EXIT_OK);
    };
    let opts = show::render_options(loc, &parent);
    let outcome = stop_hook::on_stop_consume_on_print_with(
        &outbox,
        &parent,
        input.stop_hook_active,
        &opts,
        |json| write_stdout(format!("{json}\n").as_bytes()),
    )
    .map_err(|e| match e {
        StopHookError::Guard(e) => Failure::error(format!(
            "cannot keep the loop guard ({e}); not blocking, nothing drained"
        )),
        StopHookError::Emit(e) => Failure::error(format!(
            "write stdout: {e}; nothing was marked consumed, the records stay pending"
        )),
        StopHookError::Outbox(e) => Failure::error(drain_failure(&e)),
        e => Failure::error(format!("{e}; not blocking")),
    })?;
    match outcome {
        StopOutcome::GuardTripped { blocks } => {
            let _ = writeln!(
                io::stderr(),
                "outbox stop-hook: {blocks} consecutive blocks; not blocking again: the \
                 records stay pending for this session's next prompt (context-hook)"
            );
        }
        StopOutcome::BlockedNotDurable { warning, .. } => {
            let warning = private::scrub(&warning.replace(['\n', '\r'], " "));
            let _ = writeln!(io::stderr(), "outbox stop-hook: warning: {warning}");
        }
        _ => {}
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_names_the_format_version() {
        assert!(
            VERSION.ends_with(&format!("(on-disk format {FORMAT_VERSION})")),
            "{VERSION}"
        );
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn usage_errors_are_one_line() {
        for args in [
            "outbox",
            "outbox drain",
            "outbox drain --parent p --max 0",
            "outbox sweep --older-than 7x",
            "outbox commit --parent p --child c --bogus",
        ] {
            let err = Cli::try_parse_from(args.split_whitespace()).unwrap_err();
            let line = usage_error_line(&err.render().to_string());
            assert!(!line.contains('\n'), "{args}: {line}");
            assert!(line.starts_with("outbox: "), "{args}: {line}");
            assert!(line.ends_with(" (see --help)"), "{args}: {line}");
        }
        let err = Cli::try_parse_from(["outbox", "drain"]).unwrap_err();
        let line = usage_error_line(&err.render().to_string());
        assert!(line.contains("--parent <ID>"), "{line}");
    }

    #[test]
    fn the_subcommand_is_found_past_global_options() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        let of = |list: &[&str]| subcommand_of(&args(list)).map(|s| s.to_owned());
        assert_eq!(
            of(&["outbox", "--root", "stop-hook", "drain"]),
            Some("drain".into())
        );
        assert_eq!(
            of(&["outbox", "--root=/x", "stop-hook", "--bogus"]),
            Some("stop-hook".into())
        );
        assert_eq!(of(&["outbox", "--bogus"]), None);
    }

    #[test]
    fn commit_forms_are_exclusive() {
        // As main parses: clap, then the check of commit's two forms.
        let parse =
            |args: &str| Cli::try_parse_from(args.split_whitespace()).and_then(commit_form::check);
        let commit = "outbox commit --parent p";
        assert!(parse(&format!("{commit} --child c")).is_err());
        assert!(parse(&format!("{commit} --child c --from a --to b")).is_ok());
        assert!(
            parse(&format!(
                "{commit} --child c --from a --to b --finished --status ok"
            ))
            .is_err()
        );
        assert!(parse(&format!("{commit} --child c --finished")).is_err());
        assert!(parse(&format!("{commit} --json --child c")).is_err());
        assert!(parse(&format!("{commit} --json")).is_ok());
        assert!(parse(&format!("{commit} --child c --from a --to b --summary s")).is_err());
    }

    #[test]
    fn drain_failures_say_what_became_of_the_records() {
        let io = |op| outbox::Error::Io {
            op,
            path: "/r/runtime/consumed-turns/p.json".into(),
            to: None,
            source: io::Error::from_raw_os_error(5),
        };
        let plain = drain_failure(&io("fsync directory"));
        assert!(plain.ends_with("the records stay pending"), "{plain}");
        let kept = outbox::Error::MarksKept {
            error: Box::new(io("fsync directory")),
            undo: Box::new(io("rename")),
            marks_visible: true,
            records: vec![Record::finished("w1", "ok")],
        };
        let message = drain_failure(&kept);
        assert!(!message.contains("stay pending"), "{message}");
        assert!(
            message.contains("stay marked consumed") && message.contains("\"w1\""),
            "{message}"
        );
    }

    #[test]
    fn records_parse_from_one_object_only() {
        let r = parse_record(br#" {"child_session_id":"c","unknown":1} "#).unwrap();
        assert_eq!(r.child_session_id, "c");
        for bad in [
            &b"{} {}"[..],
            b"{} x",
            b"[{}]",
            b"\"c\"",
            b"",
            b"{",
            br#"{"attempts":"x"}"#,
        ] {
            let err = parse_record(bad).unwrap_err();
            assert_eq!(err.code, EXIT_ERROR);
            assert!(
                err.message.starts_with("stdin: not a record"),
                "{}",
                err.message
            );
        }
    }
}
