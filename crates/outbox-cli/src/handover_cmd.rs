//! The parent's hook commands in the default mode, confirmed delivery
//! (`outbox::handover`): `stop-hook` (Stop) and `context-hook`
//! (UserPromptSubmit, SessionStart). Process glue only: every rule is the
//! library's.

use std::io::{self, Write};

use clap::Args;
use outbox::handover::{self, Action, Event, HandoverError};
use outbox::stop_hook::HookInput;

use crate::store::Location;
use crate::{
    EXIT_OK, Failure, check_parent, drain_failure, open_existing, read_stdin, write_stdout,
};

/// The Claude Code UserPromptSubmit and SessionStart hook of a parent: adds
/// what is pending for it to the model's context.
///
/// Reads the hook's JSON on stdin and prints
/// {"hookSpecificOutput":{"hookEventName":...,"additionalContext":...}}
/// with the pending records (outbox::delivery's frame, at most 10 000
/// characters: Claude Code replaces a longer context by a file path; a
/// record too long for its share is cut and names the command that prints
/// it in full; what does not fit stays pending and comes next). Records stay pending until the Stop that ends
/// the turn confirms them (see `stop-hook --help`); records shown before
/// and not acted on come first, saying so. A rewake's own prompt
/// (it carries the delivery's tag) and the first prompt after a SessionStart
/// context do not repeat what the conversation holds.
///
/// Nothing pending: prints nothing. hook_event_name must be
/// UserPromptSubmit or SessionStart. Errors print one line on stderr and
/// exit 1, never 2 (Claude Code would erase the user's prompt).
#[derive(Debug, Args)]
#[command(after_help = "\
Example (outbox hooks --parent conductor prints it with absolute paths):
  {\"hooks\": {\"UserPromptSubmit\": [{\"hooks\": [{\"type\": \"command\",
      \"command\": \"outbox context-hook --parent conductor\"}]}]}}")]
pub struct ContextHookArgs {
    /// The parent session whose inbox is shown [default: the hook input's
    /// session_id].
    #[arg(long, value_name = "ID")]
    pub parent: Option<String>,
}

/// The parent id: `--parent`, else the input's `session_id`.
fn parent_of(parent: Option<String>, input: &HookInput) -> Result<String, Failure> {
    let parent = match parent {
        Some(parent) => parent,
        None if !input.session_id.trim().is_empty() => input.session_id.clone(),
        None => {
            return Err(Failure::error(
                "no parent: pass --parent, or a session_id in the hook input; not blocking",
            ));
        }
    };
    check_parent(&parent)?;
    Ok(parent)
}

/// Runs `event` of the input's session through the rules and prints what
/// they emit (a line of JSON on stdout).
fn run(loc: &Location, parent: &str, input: &HookInput, event: &Event) -> Result<u8, Failure> {
    let not = if matches!(event, Event::Stop { .. }) {
        "not blocking"
    } else {
        "nothing shown"
    };
    let Some(store) = open_existing(loc)? else {
        return Ok(EXIT_OK);
    };
    // The command a delivery names to print one record in full: this
    // binary and the store by absolute path (a URL without its password).
    let show = crate::show::render_options(loc, parent).show_command;
    let handled = handover::handle_with(&store, parent, &input.session_id, event, &show, |json| {
        write_stdout(format!("{json}\n").as_bytes())
    })
    .map_err(|e| match e {
        HandoverError::State(e) => Failure::error(format!(
            "cannot keep the handover state ({e}); {not}, nothing consumed"
        )),
        HandoverError::Emit(e) => Failure::error(format!(
            "write stdout: {e}; the records stay pending and are shown again"
        )),
        HandoverError::Outbox(e) => Failure::error(format!("{}; {not}", drain_failure(&e))),
        // Exit 1: Claude Code then ignores what was printed, as the state
        // (not marked emitted) says.
        HandoverError::Marked(e) => Failure::error(format!(
            "printed, but recording that failed ({e}); exiting with an error so that it is \
             ignored: the records stay pending and are shown again"
        )),
    })?;
    if let Action::GuardTripped { blocks } = handled.action {
        let _ = writeln!(
            io::stderr(),
            "outbox stop-hook: {blocks} consecutive blocks; not blocking again: the records \
             stay pending for this session's next prompt (context-hook)"
        );
    }
    Ok(EXIT_OK)
}

/// `stop-hook` in the default mode: a Stop of the parent's session.
pub fn stop(loc: &Location, parent: Option<String>, input: &HookInput) -> Result<u8, Failure> {
    let parent = parent_of(parent, input)?;
    let event = Event::Stop {
        stop_hook_active: input.stop_hook_active,
    };
    run(loc, &parent, input, &event)
}

/// `context-hook`: a UserPromptSubmit or SessionStart of the parent's
/// session.
pub fn context(loc: &Location, args: ContextHookArgs) -> Result<u8, Failure> {
    let input = HookInput::parse(&read_stdin()?)
        .map_err(|e| Failure::error(format!("stdin: {e}; nothing shown")))?;
    let event = match input.hook_event_name.as_str() {
        "UserPromptSubmit" => Event::UserPromptSubmit {
            prompt: input.prompt.clone(),
        },
        "SessionStart" => Event::SessionStart,
        other => {
            return Err(Failure::error(format!(
                "stdin: hook_event_name is {other:?}, expected UserPromptSubmit or \
                 SessionStart: install this command under those events; nothing shown"
            )));
        }
    };
    let parent = parent_of(args.parent, &input)?;
    run(loc, &parent, &input, &event)
}
