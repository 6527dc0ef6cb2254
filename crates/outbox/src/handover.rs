//! Confirmed delivery to a Claude Code parent: records shown to the model
//! stay pending until the parent's next move proves it acted on them.
//!
//! A record reaches the parent's model on one of three *surfaces*
//! ([`Surface`]): a Stop-hook block (`{"decision":"block","reason":…}`),
//! `additionalContext` of a UserPromptSubmit or SessionStart hook, or a
//! rewake (an idle session woken with the text). Printing is not
//! delivery: the user may press Esc (which fires no hook), Claude Code may
//! be killed, or a wrapper may drop the decision. So this module never
//! consumes on print. It keeps, per parent, one small durable
//! [`Handover`]: which session was shown which turns ([`Record::turn_key`]),
//! on which surface, and the consecutive-block counter. The records stay
//! pending; the next hook event of that session decides:
//!
//! | shown on | confirmed by | not acted on (shown again, first, marked "again") |
//! |---|---|---|
//! | Stop block | the next Stop with `stop_hook_active: true` (Claude continued because of the block) | a Stop with `stop_hook_active: false`, a UserPromptSubmit, a SessionStart |
//! | rewake | the woken turn's Stop (`stop_hook_active: true`) | as a Stop block; the woken turn's own UserPromptSubmit (its prompt is the rewake text, recognised by the delivery id in it) is neither |
//! | UserPromptSubmit / SessionStart context | the Stop that ends the turn (any `stop_hook_active`) | a UserPromptSubmit (Esc before any output undoes the turn and its context), a SessionStart |
//!
//! A confirmation consumes exactly the turns shown ([`Store::consume_turns`]):
//! a child that committed a newer turn meanwhile keeps the newer record
//! pending. An event of another session never confirms: the records are
//! shown to the session at hand, again. A SessionStart context is still in
//! the conversation at the first UserPromptSubmit of that session, so that
//! prompt does not repeat it (only records new since are added).
//!
//! **Order of effects.** Show: peek (first-seen order, records shown
//! before first), render within the surface's budget ([`render`]: records
//! that do not fit stay pending and come next), persist the new
//! [`Handover`] durably, *then* emit, then record that it was emitted
//! ([`Handover::emitted`], a second durable write). A crash before the
//! emit: nothing was shown, nothing is lost, and the state, not marked
//! emitted, confirms nothing (even a `stop_hook_active: true` caused by
//! another hook's block); the next event shows the records as new. After
//! the emit the records are still pending, so nothing can be lost.
//! Confirm: consume the turns (durable), then clear the state; a crash in
//! between leaves a state naming consumed turns, which the next event
//! confirms again (consuming nothing). Duplicates, each shown once more
//! (marked "again" once marked emitted): a crash between the emit and its
//! mark, and a delivery emitted and then not acted on. The one window for
//! a confirmation without evidence: the hook is killed after the mark and
//! before it exits (Claude Code then ignores its output) and another Stop
//! hook's block makes the next `stop_hook_active` true.
//!
//! **Loop guard.** At most [`MAX_CONSECUTIVE_BLOCKS`] consecutive Stop
//! blocks of one session (Claude Code's own cap is 8). After that the Stop
//! hook does not block; the records stay pending, and the session's next
//! UserPromptSubmit or SessionStart shows them as context (or a rewake
//! waiter wakes the idle session with them). Nothing drains them in the
//! background: a parent that never prompts again is never told.
//!
//! **One session per parent.** Two sessions hooked to the same parent id
//! each get the records (at least once each); the state follows the last
//! one shown.
//!
//! ```
//! use outbox::{Outbox, Record, Store, handover};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = tempfile::tempdir()?;
//! let outbox = Outbox::open(root.path())?;
//! outbox.commit("conductor", Record::finished("child-1", "success"))?;
//! let mut printed = Vec::new();
//!
//! // The parent's session stops: blocked with the record, still pending.
//! let stop = handover::Event::Stop { stop_hook_active: false };
//! let done = handover::handle(&outbox, "conductor", "s1", &stop, |json: &str| {
//!     printed.push(json.to_owned());
//!     Ok::<(), std::io::Error>(())
//! })?;
//! assert!(matches!(done.action, handover::Action::Shown(_)));
//! assert!(printed[0].starts_with(r#"{"decision":"block""#));
//! assert!(outbox.has_pending("conductor")?);
//!
//! // Claude continued because of the block: confirmed, consumed.
//! let again = handover::Event::Stop { stop_hook_active: true };
//! let done = handover::handle(&outbox, "conductor", "s1", &again, |_: &str| {
//!     Ok::<(), std::io::Error>(())
//! })?;
//! assert_eq!(done.confirmed.len(), 1);
//! assert!(!outbox.has_pending("conductor")?);
//! # Ok(())
//! # }
//! ```

use std::fmt::Write as _;
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::durable::{nonce, write_durable};
use crate::error::{Error, IoContext, Result as OutboxResult};
use crate::io::{Io, parent_dir};
use crate::outbox::ensure_dirs;
use crate::record::nullable;
use crate::{Outbox, Record, Store};

/// How many consecutive Stop blocks of one session are allowed before the
/// Stop hook stops blocking (Claude Code ends the turn anyway after 8).
pub const MAX_CONSECUTIVE_BLOCKS: u32 = 3;

/// The most records one delivery shows; the rest stay pending and come
/// next (it also bounds the [`Handover`] state).
pub const MAX_SHOWN: usize = 50;

/// The most bytes of a Stop block's or a rewake's text: room for a record
/// with a summary of [`MAX_SUMMARY_BYTES`](crate::MAX_SUMMARY_BYTES) and
/// its header. Claude Code passes a Stop reason of 40 000 characters whole
/// (seen with the real client, 2.1.337, through `/work/shared/realcc`; a
/// rewake's stderr was seen whole at 31 000).
pub const BLOCK_BUDGET: usize = 40_000;

/// The most bytes of an `additionalContext`: Claude Code replaces one over
/// 10 000 characters by a file path and a preview, so stay under it with
/// room to spare (bytes are at least characters).
pub const CONTEXT_BUDGET: usize = 9_500;

/// The most bytes of the state file read back (the state is bounded by
/// [`MAX_SHOWN`] keys of at most [`MAX_TURN_KEY_BYTES`](crate::MAX_TURN_KEY_BYTES)).
const MAX_STATE_BYTES: u64 = 1 << 20;

/// Where a delivery was shown to the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Surface {
    /// A Stop-hook block decision's reason.
    StopBlock,
    /// A UserPromptSubmit hook's `additionalContext`.
    PromptContext,
    /// A SessionStart hook's `additionalContext`.
    SessionContext,
    /// The text that woke an idle session (an `asyncRewake` hook's exit 2).
    Rewake,
}

impl Surface {
    /// The name stored for it (`stop_block`, `prompt_context`,
    /// `session_context`, `rewake`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StopBlock => "stop_block",
            Self::PromptContext => "prompt_context",
            Self::SessionContext => "session_context",
            Self::Rewake => "rewake",
        }
    }

    /// The surface named `name` ([`as_str`](Self::as_str)); `None` for any
    /// other name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::StopBlock,
            Self::PromptContext,
            Self::SessionContext,
            Self::Rewake,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// The most bytes of text this surface carries.
    pub fn budget(self) -> usize {
        match self {
            Self::StopBlock | Self::Rewake => BLOCK_BUDGET,
            Self::PromptContext | Self::SessionContext => CONTEXT_BUDGET,
        }
    }

    /// What this surface does with a record too long for it alone: a block
    /// cuts it (nothing carries more); a context defers it to the next
    /// Stop block, which carries it whole.
    pub fn oversized(self) -> Oversized {
        match self {
            Self::StopBlock | Self::Rewake => Oversized::Cut,
            Self::PromptContext | Self::SessionContext => Oversized::Defer,
        }
    }
}

/// What [`render`] does with a record whose line alone exceeds the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Oversized {
    /// Show it cut to fit, saying how many bytes were left out; it counts as
    /// shown (a confirmation consumes it).
    Cut,
    /// Name it in one line saying it comes whole at the next stop; it is not
    /// shown (it stays pending for the Stop block).
    Defer,
}

/// A parent's handover state: what was last shown to which session, and
/// the Stop hook's consecutive-block counter. One small value per parent
/// ([`Store::handover`], [`Store::set_handover`]); the default is "nothing
/// shown, no block".
///
/// On the file store it is `runtime/stop-blocks/<id>.json`, the file of the
/// older bare counter, whose `count` field it keeps (an older file reads as
/// that counter with nothing shown).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Handover {
    /// Consecutive Stop blocks of `session_id`.
    #[serde(rename = "count")]
    pub blocks: u32,
    /// The session the records were shown to (and the blocks counted in).
    #[serde(deserialize_with = "nullable")]
    pub session_id: String,
    /// Where they were shown; `None` when nothing awaits confirmation.
    pub surface: Option<Surface>,
    /// The turn keys shown and not yet confirmed, in the order shown.
    pub shown: Vec<String>,
    /// The delivery's id, in a rewake's text (so its woken turn's prompt
    /// is recognised); empty for other surfaces.
    #[serde(deserialize_with = "nullable")]
    pub delivery: String,
    /// When it was shown, in Unix seconds (for people; no rule reads it).
    pub shown_at: i64,
    /// Whether the delivery's text was emitted (the second write of a
    /// delivery, after the print): a delivery persisted and then not
    /// printed (a crash, a failed write) is never confirmed, whatever the
    /// next event says (another Stop hook's block also makes
    /// `stop_hook_active` true).
    pub emitted: bool,
}

impl Handover {
    /// Whether a delivery awaits confirmation.
    pub fn awaits_confirmation(&self) -> bool {
        self.surface.is_some() && !self.shown.is_empty()
    }

    fn clear_shown(&mut self) {
        self.surface = None;
        self.shown.clear();
        self.delivery.clear();
    }
}

/// A hook event of the parent's session, as far as the rules care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The session is about to end its turn (Claude Code's `Stop`).
    Stop {
        /// Whether Claude is continuing because a Stop hook blocked.
        stop_hook_active: bool,
    },
    /// The user (or a rewake) submitted a prompt.
    UserPromptSubmit {
        /// The prompt's text.
        prompt: String,
    },
    /// The session started, resumed, was cleared or compacted.
    SessionStart,
    /// A waiter is about to wake the idle session with the records (an
    /// `asyncRewake` hook: the text goes to stderr, then exit 2). Only
    /// once the session is idle: at the Stop the waiter starts from, the
    /// synchronous Stop hook delivers what is pending, and a rewake
    /// handled at the same time would show it twice (no loss: the second
    /// delivery replaces the first as the one to confirm).
    Rewake,
}

impl Event {
    fn surface(&self) -> Surface {
        match self {
            Self::Stop { .. } => Surface::StopBlock,
            Self::UserPromptSubmit { .. } => Surface::PromptContext,
            Self::SessionStart => Surface::SessionContext,
            Self::Rewake => Surface::Rewake,
        }
    }
}

/// What an event says about the delivery awaiting confirmation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing awaits confirmation.
    NothingShown,
    /// The model acted on it: consume the turns shown.
    Confirmed,
    /// It was not acted on (or shown to another session): show it again.
    NotActedOn,
    /// It is still in the conversation this event continues (a rewake's
    /// woken prompt, the first prompt after a SessionStart context): do
    /// not repeat it.
    StillInContext,
}

/// The rules of the table in the module documentation, as a pure function
/// of the state, the event's session and the event.
pub fn judge(state: &Handover, session: &str, event: &Event) -> Verdict {
    let Some(surface) = state
        .surface
        .filter(|_| !state.shown.is_empty() && state.emitted)
    else {
        return Verdict::NothingShown;
    };
    if state.session_id != session {
        return Verdict::NotActedOn;
    }
    match (event, surface) {
        (Event::Stop { stop_hook_active }, Surface::StopBlock | Surface::Rewake) => {
            if *stop_hook_active {
                Verdict::Confirmed
            } else {
                Verdict::NotActedOn
            }
        }
        (Event::Stop { .. }, Surface::PromptContext | Surface::SessionContext) => {
            Verdict::Confirmed
        }
        (Event::UserPromptSubmit { prompt }, Surface::Rewake)
            if !state.delivery.is_empty() && prompt.contains(&delivery_tag(&state.delivery)) =>
        {
            Verdict::StillInContext
        }
        (Event::UserPromptSubmit { .. }, Surface::SessionContext) => Verdict::StillInContext,
        _ => Verdict::NotActedOn,
    }
}

/// What [`handle`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handled {
    /// The records a confirmation consumed (empty when none).
    pub confirmed: Vec<Record>,
    /// What was shown, or why nothing was.
    pub action: Action,
}

/// What [`handle`] showed, or why it showed nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing is pending (or all of it is still in the conversation):
    /// nothing was emitted.
    NothingPending,
    /// The Stop hook had already blocked [`MAX_CONSECUTIVE_BLOCKS`] times in
    /// a row in this session: nothing was emitted; the records stay pending
    /// for the session's next prompt (or a rewake).
    GuardTripped {
        /// The consecutive-block counter, as read.
        blocks: u32,
    },
    /// A delivery was emitted; its records stay pending until confirmed.
    Shown(Delivery),
}

/// One delivery that was emitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Where.
    pub surface: Surface,
    /// The records shown, in the order shown.
    pub records: Vec<Record>,
    /// How many of them (the first ones) were shown before and not acted
    /// on.
    pub again: usize,
    /// How many pending records did not fit and wait for the next delivery.
    pub left: usize,
    /// The consecutive-block counter after this delivery (0 but for a Stop
    /// block).
    pub blocks: u32,
    /// The text shown.
    pub text: String,
    /// The delivery's id (in the text of a rewake).
    pub delivery: String,
}

/// Why [`handle`] failed. In no case is a record lost or consumed without
/// confirmation; the caller should emit nothing more and report it.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError<E> {
    /// The handover state could not be read or persisted: nothing was
    /// emitted.
    #[error("handover state: {0}")]
    State(#[source] Error),
    /// Peeking, or consuming a confirmed delivery, failed: nothing was
    /// emitted; a confirmation not made is made by the next event.
    #[error(transparent)]
    Outbox(Error),
    /// Emitting failed after the state was persisted: the records are
    /// pending, and the next event shows them again.
    #[error("emit: {0}")]
    Emit(#[source] E),
    /// The text was emitted, but recording that it was failed: the state
    /// says "not emitted", so the next event shows the records again and
    /// never confirms them. A hook should exit with an error so that
    /// Claude Code ignores what was printed.
    #[error("record that the delivery was emitted: {0}")]
    Marked(#[source] Error),
}

/// Applies the rules (see the module documentation) to one event of
/// `session`, the parent `parent`'s session: confirms what the event
/// confirms, then shows what is pending. `emit` gets the text to print, at
/// most once, after the state is durable: for a Stop the block decision
/// (one line of JSON), for UserPromptSubmit and SessionStart the
/// `hookSpecificOutput` object with `additionalContext` (one line of JSON),
/// for a rewake the plain text (for stderr).
///
/// Writes nothing when nothing is pending and nothing awaits confirmation.
pub fn handle<S: Store, E>(
    store: &S,
    parent: &str,
    session: &str,
    event: &Event,
    emit: impl FnOnce(&str) -> Result<(), E>,
) -> Result<Handled, HandoverError<E>> {
    let mut state = store.handover(parent).map_err(HandoverError::State)?;
    let verdict = judge(&state, session, event);
    let mut confirmed = Vec::new();
    let mut dirty = false;
    let (mut again_keys, mut in_context) = (Vec::new(), Vec::new());
    match verdict {
        Verdict::NothingShown => {}
        Verdict::Confirmed => {
            confirmed = store
                .consume_turns(parent, &state.shown)
                .map_err(HandoverError::Outbox)?
                .records;
            state.clear_shown();
            dirty = true;
        }
        Verdict::NotActedOn => again_keys = std::mem::take(&mut state.shown),
        Verdict::StillInContext => in_context = state.shown.clone(),
    }
    let previous = match event {
        Event::Stop {
            stop_hook_active: true,
        } if state.session_id == session => state.blocks,
        _ => 0,
    };
    let done = |action| Handled {
        confirmed: confirmed.clone(),
        action,
    };
    if matches!(event, Event::Stop { .. }) && previous >= MAX_CONSECUTIVE_BLOCKS {
        if dirty {
            store
                .set_handover(parent, &state)
                .map_err(HandoverError::State)?;
        }
        return Ok(done(Action::GuardTripped { blocks: previous }));
    }
    let pending = store.peek(parent).map_err(HandoverError::Outbox)?;
    let (again, new): (Vec<Record>, Vec<Record>) = pending
        .into_iter()
        .filter(|r| !in_context.contains(&r.turn_key()))
        .partition(|r| again_keys.contains(&r.turn_key()));
    if again.is_empty() && new.is_empty() {
        if dirty || verdict == Verdict::NotActedOn {
            // Nothing of it is pending any more (another drain took it).
            state.clear_shown();
            store
                .set_handover(parent, &state)
                .map_err(HandoverError::State)?;
        }
        return Ok(done(Action::NothingPending));
    }
    let mut surface = event.surface();
    if !in_context.is_empty() {
        // What is still in the conversation and what is added now are
        // confirmed together, by the turn's Stop.
        surface = Surface::PromptContext;
    }
    let delivery = if surface == Surface::Rewake {
        format!("{:016x}", nonce())
    } else {
        String::new()
    };
    let rendered = render(
        &again,
        &new,
        surface.budget(),
        surface.oversized(),
        Some(delivery.as_str()).filter(|d| !d.is_empty()),
    );
    let mut all = again;
    all.extend(new);
    let left = all.len() - rendered.shown.len();
    let records: Vec<Record> = rendered.shown.iter().map(|&i| all[i].clone()).collect();
    if records.is_empty() {
        // Only records too long for a context: they wait for the turn's
        // Stop block, which carries them whole.
        if dirty {
            store
                .set_handover(parent, &state)
                .map_err(HandoverError::State)?;
        }
        return Ok(done(Action::NothingPending));
    }
    let again = rendered.again;
    let blocks = match event {
        Event::Stop { .. } => previous + 1,
        _ => 0,
    };
    let mut shown: Vec<String> = in_context;
    shown.extend(records.iter().map(Record::turn_key));
    let mut state = Handover {
        blocks,
        session_id: session.to_owned(),
        surface: Some(surface),
        shown,
        delivery: delivery.clone(),
        shown_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        emitted: false,
    };
    store
        .set_handover(parent, &state)
        .map_err(HandoverError::State)?;
    let output = output(event, &rendered.text);
    emit(&output).map_err(HandoverError::Emit)?;
    state.emitted = true;
    store
        .set_handover(parent, &state)
        .map_err(HandoverError::Marked)?;
    Ok(done(Action::Shown(Delivery {
        surface,
        records,
        again,
        left,
        blocks,
        text: rendered.text,
        delivery,
    })))
}

/// What a hook prints for `event`: the block decision (Stop), the
/// `hookSpecificOutput` with `additionalContext` (UserPromptSubmit,
/// SessionStart), or the text itself (a rewake's stderr).
fn output(event: &Event, text: &str) -> String {
    let name = match event {
        Event::Stop { .. } => {
            return serde_json::json!({"decision": "block", "reason": text}).to_string();
        }
        Event::Rewake => return text.to_owned(),
        Event::SessionStart => "SessionStart",
        Event::UserPromptSubmit { .. } => "UserPromptSubmit",
    };
    serde_json::json!({"hookSpecificOutput": {
        "hookEventName": name,
        "additionalContext": text,
    }})
    .to_string()
}

/// The tag a rewake's text carries, by which its woken prompt is known.
pub fn delivery_tag(delivery: &str) -> String {
    format!("[outbox delivery {delivery}]")
}

/// A rendered delivery: the text and which records it shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The text, at most the budget's bytes.
    pub text: String,
    /// The records it shows, as indices into `again` then `new` (in order;
    /// a deferred record is named, not shown).
    pub shown: Vec<usize>,
    /// How many of those are from `again`.
    pub again: usize,
    /// How many records it names as deferred ([`Oversized::Defer`]).
    pub deferred: usize,
}

/// The text of a delivery of `again` (shown before, not yet handled: first,
/// each line marked `[again]`) then `new`, within `budget` bytes: a header,
/// one line per record (`- [again] <title or child id> (<child id>):
/// <status>[ — <summary>]`, as [`block_reason`](crate::stop_hook::block_reason)
/// without the mark), a line saying how many more wait, and the delivery's
/// tag when given. At most [`MAX_SHOWN`] records; the records after the
/// first that does not fit wait for the next delivery. A record too long
/// for the budget on its own is cut (its line ends saying how many bytes
/// were left out) or deferred (named, with the note that it comes whole
/// at the next stop), as `oversized` says.
pub fn render(
    again: &[Record],
    new: &[Record],
    budget: usize,
    oversized: Oversized,
    delivery: Option<&str>,
) -> Rendered {
    const HEADER: usize = 120;
    let all: Vec<(&Record, bool)> = again
        .iter()
        .map(|r| (r, true))
        .chain(new.iter().map(|r| (r, false)))
        .collect();
    let mut footer = 80;
    if let Some(d) = delivery {
        footer += delivery_tag(d).len() + 1;
    }
    let room = budget.saturating_sub(HEADER + footer);
    let (mut lines, mut shown, mut deferred) = (Vec::new(), Vec::new(), 0);
    let mut used = 0;
    for (i, (r, is_again)) in all.iter().enumerate() {
        if shown.len() + deferred == MAX_SHOWN {
            break;
        }
        let mut line = record_line(r, *is_again);
        let mut is_shown = true;
        if line.len() + 1 > room {
            match oversized {
                Oversized::Cut if lines.is_empty() => line = cut(&line, room.saturating_sub(1)),
                Oversized::Cut => break,
                Oversized::Defer => {
                    line = deferred_line(r, *is_again, line.len());
                    is_shown = false;
                }
            }
        }
        if used + line.len() + 1 > room {
            break;
        }
        used += line.len() + 1;
        lines.push(line);
        if is_shown {
            shown.push(i);
        } else {
            deferred += 1;
        }
    }
    let again_shown = shown.iter().filter(|&&i| i < again.len()).count();
    let mut text = match lines.len() {
        1 => "1 child session completed; it needs handling".to_owned(),
        n => format!("{n} child sessions completed; each one needs handling"),
    };
    // The lines are the first records, in order.
    let again_named = again.len().min(lines.len());
    if again_named > 0 {
        let _ = write!(
            text,
            " ({again_named} shown before and not yet handled, marked [again])"
        );
    }
    text.push(':');
    for line in lines {
        text.push('\n');
        text.push_str(&line);
    }
    let waiting = all.len() - shown.len() - deferred;
    if waiting > 0 {
        let _ = write!(text, "\n({waiting} more pending: shown next time)");
    }
    if let Some(d) = delivery {
        text.push('\n');
        text.push_str(&delivery_tag(d));
    }
    Rendered {
        text,
        shown,
        again: again_shown,
        deferred,
    }
}

/// The line naming a record deferred to the next stop.
fn deferred_line(r: &Record, again: bool, len: usize) -> String {
    let mut line = record_line(
        &Record {
            done_summary: String::new(),
            ..r.clone()
        },
        again,
    );
    let _ = write!(
        line,
        " — (its report, {len} bytes, is too long for here: it comes whole at your next stop)"
    );
    line
}

/// One record's line.
fn record_line(r: &Record, again: bool) -> String {
    let child = r.child_session_id.as_str();
    let title = match r.child_title.trim() {
        "" => child,
        title => title,
    };
    let status = if r.is_finished() {
        &r.done_status
    } else {
        &r.to_status
    };
    let mark = if again { "[again] " } else { "" };
    let mut line = format!("- {mark}{title} ({child}): {status}");
    let summary = r.done_summary.trim();
    if r.is_finished() && !summary.is_empty() {
        line.push_str(" — ");
        line.push_str(summary);
    }
    line
}

/// `line` cut to at most `room` bytes (on a character boundary), ending in
/// a note saying how many bytes were left out.
fn cut(line: &str, room: usize) -> String {
    if line.len() <= room {
        return line.to_owned();
    }
    let note = |n: usize| format!(" …[{n} more bytes not shown]");
    let mut end = room.saturating_sub(note(line.len()).len());
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{}", &line[..end], note(line.len() - end))
}

/// The handover state of the file store: `runtime/stop-blocks/<id>.json`,
/// beside the rules that read and write it ([`handle`]).
impl<I: Io> Outbox<I> {
    /// The handover state of `parent` ([`Handover`]); the default when the
    /// file is absent or unreadable (nothing shown: the records are shown
    /// again, never lost). Creates nothing.
    pub fn handover(&self, parent: &str) -> OutboxResult<Handover> {
        let paths = self.paths(parent)?;
        let path = &paths.stop_blocks;
        let Some(reader) = self.io().open_read(path).at("open", path)? else {
            return Ok(Handover::default());
        };
        let mut bytes = Vec::new();
        reader
            .take(MAX_STATE_BYTES)
            .read_to_end(&mut bytes)
            .at("read", path)?;
        Ok(serde_json::from_slice(&bytes).unwrap_or_default())
    }

    /// Sets the handover state of `parent`, durably (1 file + 1 directory
    /// fsync; the first call also creates `runtime/stop-blocks/`, +1
    /// directory fsync). Holds the parent's drain lock while writing, like
    /// every writer of the parent's `runtime/` files (so a sweep can tell
    /// its temporary files are stale); do not call it from a
    /// [`drain_with`](Self::drain_with) callback of the same parent.
    pub fn set_handover(&self, parent: &str, state: &Handover) -> OutboxResult<()> {
        let paths = self.paths(parent)?;
        self.ensure_layout()?;
        let io = self.io();
        ensure_dirs(io, &[parent_dir(&paths.stop_blocks).to_owned()])?;
        let _drain = self.lock(&paths.drain_lock)?;
        let bytes = serde_json::to_vec(state).map_err(|source| Error::Encode {
            child: String::new(),
            source: crate::format::JsonError::new(source),
        })?;
        write_durable(io, &paths.stop_blocks, &bytes)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    const PARENT: &str = "conductor";

    fn shown(surface: Surface) -> Handover {
        Handover {
            blocks: 1,
            session_id: "s1".into(),
            surface: Some(surface),
            shown: vec!["c1@k".into()],
            delivery: "d00d".into(),
            shown_at: 0,
            emitted: true,
        }
    }

    fn stop(active: bool) -> Event {
        Event::Stop {
            stop_hook_active: active,
        }
    }

    fn prompt(text: &str) -> Event {
        Event::UserPromptSubmit {
            prompt: text.into(),
        }
    }

    /// The table of the module documentation, row by row.
    #[test]
    fn the_verdicts_follow_the_table() {
        use Surface::*;
        use Verdict::*;
        let woken = prompt(&format!("wake up\n{}", delivery_tag("d00d")));
        let cases = [
            (StopBlock, stop(true), Confirmed),
            (StopBlock, stop(false), NotActedOn),
            (StopBlock, prompt("hi"), NotActedOn),
            (StopBlock, Event::SessionStart, NotActedOn),
            (StopBlock, woken.clone(), NotActedOn),
            (Rewake, stop(true), Confirmed),
            (Rewake, stop(false), NotActedOn),
            (Rewake, woken.clone(), StillInContext),
            (Rewake, prompt("wake up [outbox delivery 0000]"), NotActedOn),
            (Rewake, Event::SessionStart, NotActedOn),
            (PromptContext, stop(false), Confirmed),
            (PromptContext, stop(true), Confirmed),
            (PromptContext, prompt("hi"), NotActedOn),
            (PromptContext, Event::SessionStart, NotActedOn),
            (SessionContext, stop(false), Confirmed),
            (SessionContext, prompt("hi"), StillInContext),
            (SessionContext, Event::SessionStart, NotActedOn),
            (StopBlock, Event::Rewake, NotActedOn),
        ];
        for (surface, event, verdict) in cases {
            let state = shown(surface);
            assert_eq!(
                judge(&state, "s1", &event),
                verdict,
                "{surface:?} {event:?}"
            );
            // Another session never confirms, and never counts as in context.
            assert_eq!(
                judge(&state, "s2", &event),
                NotActedOn,
                "{surface:?} {event:?}"
            );
            // Not emitted: never confirmed, never "shown before".
            let unprinted = Handover {
                emitted: false,
                ..state.clone()
            };
            assert_eq!(judge(&unprinted, "s1", &event), NothingShown);
            let empty = Handover {
                shown: Vec::new(),
                ..state
            };
            assert_eq!(judge(&empty, "s1", &event), NothingShown);
        }
        assert_eq!(judge(&Handover::default(), "", &stop(true)), NothingShown);
    }

    fn rec(child: &str, summary: &str) -> Record {
        let mut r = Record::finished(child, "success");
        r.done_summary = summary.into();
        r
    }

    #[test]
    fn render_marks_the_records_shown_before_and_keeps_within_the_budget() {
        let text = render(
            &[rec("a", "one")],
            &[rec("b", "")],
            1000,
            Oversized::Cut,
            None,
        );
        assert_eq!(
            text.text,
            "2 child sessions completed; each one needs handling (1 shown before and not yet \
             handled, marked [again]):\n- [again] a (a): success — one\n- b (b): success"
        );
        assert_eq!((text.shown, text.again), (vec![0, 1], 1));
        // Many records, a small budget: a prefix fits, the rest wait.
        let many: Vec<Record> = (0..200)
            .map(|i| rec(&format!("c{i}"), &"x".repeat(90)))
            .collect();
        for budget in [CONTEXT_BUDGET, BLOCK_BUDGET, 400] {
            let r = render(
                &[],
                &many,
                budget,
                Oversized::Defer,
                Some("0123456789abcdef"),
            );
            assert!(r.text.len() <= budget, "{budget}: {}", r.text.len());
            let n = r.shown.len();
            assert!((1..=MAX_SHOWN).contains(&n), "{n}");
            assert_eq!(r.shown, (0..n).collect::<Vec<_>>());
            assert!(r.text.contains(&format!("({} more pending", 200 - n)));
            assert!(r.text.ends_with(&delivery_tag("0123456789abcdef")));
        }
        // One record over the budget: a block shows it cut on a character
        // boundary, saying how much is left out; a context defers it.
        let huge = rec("big", &"é".repeat(20_000));
        let r = render(
            &[],
            &[huge.clone(), rec("small", "s")],
            CONTEXT_BUDGET,
            Oversized::Cut,
            None,
        );
        assert_eq!(r.shown, [0]);
        assert!(r.text.len() <= CONTEXT_BUDGET, "{}", r.text.len());
        assert!(
            r.text.contains("more bytes not shown]"),
            "{}",
            &r.text[r.text.len() - 80..]
        );
        assert!(
            r.text.ends_with("(1 more pending: shown next time)"),
            "{}",
            &r.text[r.text.len() - 80..]
        );
        let r = render(
            &[],
            &[huge, rec("small", "s")],
            CONTEXT_BUDGET,
            Oversized::Defer,
            None,
        );
        assert_eq!((r.shown.clone(), r.deferred), (vec![1], 1));
        assert!(r.text.len() < 500, "{}", r.text);
        assert!(
            r.text.contains("- big (big): success — (its report, 40025 bytes, is too long for here: it comes whole at your next stop)"),
            "{}",
            r.text
        );
        // A whole maximal summary fits a block.
        let max = rec("max", &"x".repeat(crate::MAX_SUMMARY_BYTES));
        let r = render(&[], &[max], BLOCK_BUDGET, Oversized::Cut, None);
        assert!(r.text.ends_with(&"x".repeat(100)), "not cut");
    }

    #[test]
    fn a_record_too_long_for_a_context_comes_whole_in_the_next_block() {
        let root = tempfile::tempdir().unwrap();
        let ob = Outbox::open(root.path()).unwrap();
        let mut out = Vec::new();
        ob.commit(PARENT, rec("big", &"b".repeat(31_000))).unwrap();
        ob.commit(PARENT, rec("small", "s")).unwrap();
        let Action::Shown(d) = run(&ob, "s1", &prompt("hi"), &mut out).action else {
            panic!()
        };
        assert_eq!((children(&d.records), d.left), (vec!["small"], 1));
        assert!(out[0].contains("too long for here"), "{}", out[0]);
        // The turn's Stop confirms the context and blocks with it whole.
        let handled = run(&ob, "s1", &stop(false), &mut out);
        assert_eq!(children(&handled.confirmed), ["small"]);
        let Action::Shown(d) = handled.action else {
            panic!()
        };
        assert_eq!(children(&d.records), ["big"]);
        assert!(out[1].contains(&"b".repeat(31_000)), "whole");
        assert_eq!(
            children(&run(&ob, "s1", &stop(true), &mut out).confirmed),
            ["big"]
        );
        // Alone in a context: nothing shown there, it waits for the Stop.
        ob.commit(PARENT, rec("big2", &"c".repeat(31_000))).unwrap();
        assert_eq!(
            run(&ob, "s1", &prompt("hi"), &mut out).action,
            Action::NothingPending
        );
        assert_eq!(out.len(), 2);
        assert!(matches!(
            run(&ob, "s1", &stop(false), &mut out).action,
            Action::Shown(_)
        ));
    }

    fn run(ob: &Outbox, session: &str, event: &Event, out: &mut Vec<String>) -> Handled {
        handle(ob, PARENT, session, event, |t: &str| {
            out.push(t.to_owned());
            Ok::<(), Infallible>(())
        })
        .unwrap()
    }

    #[test]
    fn a_rewakes_own_prompt_does_not_repeat_it_and_adds_only_what_is_new() {
        let root = tempfile::tempdir().unwrap();
        let ob = Outbox::open(root.path()).unwrap();
        let mut out = Vec::new();
        ob.commit(PARENT, rec("c1", "one")).unwrap();
        let Action::Shown(d) = run(&ob, "s1", &Event::Rewake, &mut out).action else {
            panic!()
        };
        assert_eq!(d.surface, Surface::Rewake);
        assert!(out[0].ends_with(&delivery_tag(&d.delivery)), "{}", out[0]);
        // The woken turn's prompt is the rewake text: nothing to add.
        let woken = prompt(&out[0]);
        assert_eq!(
            run(&ob, "s1", &woken, &mut out).action,
            Action::NothingPending
        );
        assert_eq!(out.len(), 1);
        // A record new since: added, and both confirmed by the turn's Stop.
        ob.commit(PARENT, rec("c2", "two")).unwrap();
        let Action::Shown(d) = run(&ob, "s1", &woken, &mut out).action else {
            panic!()
        };
        assert_eq!((d.surface, d.records.len()), (Surface::PromptContext, 1));
        assert!(
            out[1].contains("c2 (c2)") && !out[1].contains("c1 (c1)"),
            "{}",
            out[1]
        );
        let handled = run(&ob, "s1", &stop(true), &mut out);
        assert_eq!(handled.confirmed.len(), 2);
        assert!(!ob.has_pending(PARENT).unwrap());
    }

    #[test]
    fn the_first_prompt_after_a_session_start_context_does_not_repeat_it() {
        let root = tempfile::tempdir().unwrap();
        let ob = Outbox::open(root.path()).unwrap();
        let mut out = Vec::new();
        ob.commit(PARENT, rec("c1", "one")).unwrap();
        run(&ob, "s1", &Event::SessionStart, &mut out);
        let json: serde_json::Value = serde_json::from_str(&out[0]).unwrap();
        assert_eq!(json["hookSpecificOutput"]["hookEventName"], "SessionStart");
        assert!(
            json["hookSpecificOutput"]["additionalContext"]
                .as_str()
                .unwrap()
                .contains("c1 (c1): success — one")
        );
        assert_eq!(
            run(&ob, "s1", &prompt("hi"), &mut out).action,
            Action::NothingPending
        );
        assert_eq!(run(&ob, "s1", &stop(false), &mut out).confirmed.len(), 1);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_failed_print_or_mark_confirms_nothing() {
        let root = tempfile::tempdir().unwrap();
        let ob = Outbox::open(root.path()).unwrap();
        ob.commit(PARENT, rec("c1", "one")).unwrap();
        let err = handle(&ob, PARENT, "s1", &stop(false), |_| Err("closed")).unwrap_err();
        assert!(matches!(err, HandoverError::Emit("closed")));
        assert!(!ob.handover(PARENT).unwrap().emitted);
        // Another hook's block makes stop_hook_active true: still nothing
        // confirmed (it was never printed); shown, as new.
        let mut out = Vec::new();
        let handled = run(&ob, "s1", &stop(true), &mut out);
        assert!(handled.confirmed.is_empty());
        let Action::Shown(d) = handled.action else {
            panic!()
        };
        assert_eq!((d.again, d.blocks), (0, 2));
        assert!(ob.handover(PARENT).unwrap().emitted);
    }

    #[test]
    fn the_guard_trips_after_three_blocks_and_the_prompt_hook_delivers() {
        let root = tempfile::tempdir().unwrap();
        let ob = Outbox::open(root.path()).unwrap();
        let mut out = Vec::new();
        for n in 1..=3u32 {
            ob.commit(PARENT, rec(&format!("c{n}"), "done")).unwrap();
            let Action::Shown(d) = run(&ob, "s1", &stop(n > 1), &mut out).action else {
                panic!("{n}")
            };
            assert_eq!(d.blocks, n);
        }
        ob.commit(PARENT, rec("c4", "done")).unwrap();
        let handled = run(&ob, "s1", &stop(true), &mut out);
        assert_eq!(children(&handled.confirmed), ["c3"]);
        assert_eq!(handled.action, Action::GuardTripped { blocks: 3 });
        assert_eq!(out.len(), 3);
        // Still tripped while Claude keeps continuing.
        assert_eq!(
            run(&ob, "s1", &stop(true), &mut out).action,
            Action::GuardTripped { blocks: 3 }
        );
        // The next prompt delivers it as context, as new.
        let Action::Shown(d) = run(&ob, "s1", &prompt("next"), &mut out).action else {
            panic!()
        };
        assert_eq!(
            (children(&d.records), d.again, d.blocks),
            (vec!["c4"], 0, 0)
        );
        assert!(
            out[3].contains("\"hookEventName\":\"UserPromptSubmit\""),
            "{}",
            out[3]
        );
        assert_eq!(
            children(&run(&ob, "s1", &stop(false), &mut out).confirmed),
            ["c4"]
        );
    }

    fn children(records: &[Record]) -> Vec<&str> {
        records
            .iter()
            .map(|r| r.child_session_id.as_str())
            .collect()
    }
}
