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
//! | shown on | confirmed by | not acted on (shown again, first, each line saying it was shown before) |
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
//! before first), render within the surface's budget ([`delivery::render`]: records
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

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::delivery::{self, RenderOptions};
use crate::durable::{nonce, write_durable};
use crate::error::{Error, IoContext, Result as OutboxResult};
use crate::io::{Io, parent_dir};
use crate::outbox::ensure_dirs;
use crate::record::nullable;
use crate::{Outbox, Record, Store};

/// How many consecutive Stop blocks of one session are allowed before the
/// Stop hook stops blocking (Claude Code ends the turn anyway after 8).
pub const MAX_CONSECUTIVE_BLOCKS: u32 = 3;

/// The most bytes of the state file read back: the turn keys of one
/// delivery (as many records as [`delivery::render`] fits in its budget,
/// each key at most [`MAX_TURN_KEY_BYTES`](crate::MAX_TURN_KEY_BYTES)).
const MAX_STATE_BYTES: u64 = 16 << 20;

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

    /// The renderer's surface ([`delivery::Surface`]): its budget.
    pub fn rendered_as(self) -> delivery::Surface {
        match self {
            Self::StopBlock => delivery::Surface::StopBlock,
            Self::PromptContext | Self::SessionContext => delivery::Surface::Context,
            Self::Rewake => delivery::Surface::Rewake,
        }
    }
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
/// The text is [`delivery::render`]'s with the default show command; see
/// [`handle_with`].
pub fn handle<S: Store, E>(
    store: &S,
    parent: &str,
    session: &str,
    event: &Event,
    emit: impl FnOnce(&str) -> Result<(), E>,
) -> Result<Handled, HandoverError<E>> {
    handle_with(store, parent, session, event, "", emit)
}

/// [`handle`], the text naming `show_command` as the command that prints
/// a record in full ([`RenderOptions::show_command`]: it should name the
/// same binary and store as the hook). A record cut to fit the surface's
/// budget stays pending until the confirmation, so the model can run it
/// while it acts on the delivery.
pub fn handle_with<S: Store, E>(
    store: &S,
    parent: &str,
    session: &str,
    event: &Event,
    show_command: &str,
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
    let mut all = again;
    let again_count = all.len();
    all.extend(new);
    let mut opts = RenderOptions::new(parent);
    opts.shown_before = again_count;
    opts.show_command = show_command.to_owned();
    let tag = (!delivery.is_empty()).then(|| delivery_tag(&delivery));
    if let Some(tag) = &tag {
        let budget = delivery::effective_budget(surface.rendered_as(), &opts);
        opts.budget = Some(budget.saturating_sub(delivery::units(tag) + 1));
    }
    let mut rendered = delivery::render(&all, surface.rendered_as(), &opts);
    if let Some(tag) = &tag {
        rendered.text.push('\n');
        rendered.text.push_str(tag);
    }
    let records: Vec<Record> = all[..rendered.shown].to_vec();
    let left = rendered.remaining;
    let again = again_count.min(records.len());
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

/// The handover state of the file store: `runtime/stop-blocks/<id>.json`,
/// beside the rules that read and write it ([`handle`]).
impl<I: Io> Outbox<I> {
    /// The handover state of `parent` ([`Handover`]); the default when the
    /// file is absent or unreadable (nothing shown: the records are shown
    /// again, never lost). Creates nothing.
    pub fn handover(&self, parent: &str) -> OutboxResult<Handover> {
        let paths = self.paths(parent)?;
        let path = &paths.stop_blocks;
        self.ensure_root_checked()?;
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

    fn run(ob: &Outbox, session: &str, event: &Event, out: &mut Vec<String>) -> Handled {
        handle(ob, PARENT, session, event, |t: &str| {
            out.push(t.to_owned());
            Ok::<(), Infallible>(())
        })
        .unwrap()
    }

    /// The renderer's frame, with what the rules add: records shown
    /// before come first and say so.
    #[test]
    fn deliveries_are_the_renderers_text_with_records_shown_before_first() {
        let root = tempfile::tempdir().unwrap();
        let ob = Outbox::open(root.path()).unwrap();
        let mut out = Vec::new();
        ob.commit(PARENT, rec("b", "bee")).unwrap();
        run(&ob, "s1", &stop(false), &mut out);
        ob.commit(PARENT, rec("a", "ay")).unwrap();
        let Action::Shown(d) = run(&ob, "s1", &prompt("hi"), &mut out).action else {
            panic!()
        };
        assert_eq!((children(&d.records), d.again), (vec!["b", "a"], 1));
        let stamped: Vec<Record> = ob.peek(PARENT).unwrap();
        assert_eq!(children(&stamped), ["b", "a"]);
        let mut opts = RenderOptions::new(PARENT);
        opts.shown_before = 1;
        let expected = delivery::render(&stamped, delivery::Surface::Context, &opts).text;
        assert_eq!(d.text, expected);
        assert!(
            d.text
                .contains("It was shown before and is not yet confirmed."),
            "{}",
            d.text
        );
        let json: serde_json::Value = serde_json::from_str(&out[1]).unwrap();
        assert_eq!(json["hookSpecificOutput"]["additionalContext"], expected);
    }

    /// A summary too long for a context is shown cut with the command that
    /// prints it in full, and stays pending (so that command works) until
    /// the turn's Stop confirms it.
    #[test]
    fn a_cut_record_stays_pending_until_the_turn_ends() {
        let root = tempfile::tempdir().unwrap();
        let ob = Outbox::open(root.path()).unwrap();
        let mut out = Vec::new();
        ob.commit(PARENT, rec("big", &"b".repeat(31_000))).unwrap();
        let show = "/bin/outbox --root /r show --parent conductor";
        let handled = handle_with(&ob, PARENT, "s1", &prompt("hi"), show, |t: &str| {
            out.push(t.to_owned());
            Ok::<(), Infallible>(())
        })
        .unwrap();
        let Action::Shown(d) = handled.action else {
            panic!()
        };
        assert_eq!(children(&d.records), ["big"]);
        assert!(d.text.chars().count() <= delivery::CONTEXT_LIMIT);
        assert!(
            d.text
                .contains(&format!("`{show} --child big` prints it in full")),
            "{}",
            d.text
        );
        assert_eq!(children(&ob.peek(PARENT).unwrap()), ["big"]);
        let handled = run(&ob, "s1", &stop(false), &mut out);
        assert_eq!(children(&handled.confirmed), ["big"]);
        assert!(ob.peek(PARENT).unwrap().is_empty());
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
            out[1].contains("child \\\"c2\\\"") && !out[1].contains("child \\\"c1\\\""),
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
                .contains("child \"c1\", finished a turn with status \"success\"")
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
