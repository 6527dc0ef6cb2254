//! The Claude Code Stop-hook input, the block reason, and the
//! *consume-on-print* mode.
//!
//! A Claude Code Stop hook receives a JSON object on stdin ([`HookInput`])
//! when the agent is about to end its turn, and may print
//! `{"decision":"block","reason":"..."}`: the stop is cancelled and the
//! reason becomes the agent's next input. The default rule, confirmed
//! delivery (records stay pending until the model's next move shows it
//! acted on them), is [`crate::handover`]. This module keeps the older rule
//! as an explicit mode for callers that want it,
//! [`on_stop_consume_on_print`]: the records are consumed as soon as the
//! decision was printed, so a block that Claude Code does not act on (Esc,
//! a killed session, a wrapper that drops it) loses them to the parent.
//!
//!
//! 1. nothing pending: decide nothing, write nothing (leaf sessions stay
//!    inert);
//! 2. `stop_hook_active` false (the stop was not caused by an earlier block)
//!    resets the consecutive-block counter to 0;
//! 3. after [`MAX_CONSECUTIVE_BLOCKS`] consecutive blocks, stop blocking; the
//!    records stay pending (for the next block after a stop the hook did
//!    not cause, or for the UserPromptSubmit / SessionStart hook);
//! 4. persist counter + 1 durably (in the parent's
//!    [`Handover`](crate::handover::Handover) state) *before* draining; if
//!    that fails, do not block and do not drain;
//! 5. render the pending records as a [`Surface::StopBlock`] delivery
//!    ([`delivery::render`]: the child's text framed
//!    as data, within the budget) and drain exactly the records it shows
//!    with [`Store::drain_with_max`] (at-least-once: the ledger is written
//!    only after the decision was emitted); the rest stay pending for the
//!    next stop. None left (another drain won): reset the counter and do
//!    not block;
//! 6. else block with that delivery as the reason ([`block_reason`]).
//!
//! The caller does the process glue (reading stdin, writing stdout); this
//! module holds every decision, so it is testable without a process.
//!
//! ```
//! use outbox::{Outbox, Record, stop_hook};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = tempfile::tempdir()?;
//! let outbox = Outbox::open(root.path())?;
//! let input = stop_hook::HookInput::parse(br#"{"session_id":"s1","stop_hook_active":false}"#)?;
//!
//! // Nothing pending: no decision, nothing written.
//! let mut printed = String::new();
//! let outcome = stop_hook::on_stop_consume_on_print(&outbox, "conductor", input.stop_hook_active, |json| {
//!     printed.push_str(json);
//!     Ok::<(), std::io::Error>(())
//! })?;
//! assert_eq!(outcome, stop_hook::StopOutcome::NothingPending);
//! assert!(printed.is_empty());
//!
//! // A child finished: the hook blocks, and the reason lists it.
//! let mut done = Record::finished("child-1", "success");
//! done.child_title = "parser".into();
//! done.done_summary = "wrote the parser".into();
//! outbox.commit("conductor", done)?;
//! let outcome = stop_hook::on_stop_consume_on_print(&outbox, "conductor", false, |json| {
//!     printed.push_str(json);
//!     Ok::<(), std::io::Error>(())
//! })?;
//! assert!(matches!(outcome, stop_hook::StopOutcome::Blocked { blocks: 1, .. }));
//! assert!(printed.starts_with(r#"{"decision":"block","reason":"#));
//! assert!(printed.contains(r#"child \"child-1\", title \"parser\", finished a turn"#));
//! assert!(printed.contains("\\n| wrote the parser"));
//! # Ok(())
//! # }
//! ```

use serde::Deserialize;

use std::path::PathBuf;

use crate::delivery::{self, RenderOptions, Rendered, Surface};
use crate::error::{DrainWithError, Error};
use crate::format::JsonError;
use crate::io::Io;
use crate::paths::STOP_BLOCKS_DIR;
use crate::record::nullable;
use crate::{Outbox, Record, Store};

pub use crate::handover::MAX_CONSECUTIVE_BLOCKS;

/// The hook events whose input is a Stop-hook input and whose
/// `{"decision":"block"}` keeps the agent (or subagent) working: `Stop` and
/// `SubagentStop`, as Claude Code spells them in `hook_event_name`.
pub const STOP_EVENTS: [&str; 2] = ["Stop", "SubagentStop"];

/// The fields of a Claude Code Stop-hook input this adapter uses.
///
/// Unknown fields (`transcript_path`, `cwd`, ...) are ignored; a missing or
/// `null` field takes its default (`stop_hook_active` false, `session_id`
/// and `hook_event_name` empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HookInput {
    /// The session the hook runs in.
    #[serde(deserialize_with = "nullable")]
    pub session_id: String,
    /// The hook event that ran the hook, e.g. `Stop`; empty when absent (a
    /// hand-written input). See [`is_stop_event`](Self::is_stop_event).
    #[serde(deserialize_with = "nullable")]
    pub hook_event_name: String,
    /// Whether this stop follows a continuation caused by a Stop hook (the
    /// agent is already handling an earlier block).
    #[serde(deserialize_with = "nullable")]
    pub stop_hook_active: bool,
    /// A UserPromptSubmit's prompt; empty for other events.
    #[serde(deserialize_with = "nullable")]
    pub prompt: String,
    /// A SubagentStop's subagent id; empty for other events.
    #[serde(deserialize_with = "nullable")]
    pub agent_id: String,
}

/// Why a hook input was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The input is not JSON, or a known field has the wrong type.
    #[error("hook input is not valid JSON: {0}")]
    Json(#[from] JsonError),
    /// The input is JSON but not an object.
    #[error("hook input must be a JSON object, got {0}")]
    NotAnObject(&'static str),
}

impl HookInput {
    /// Whether the input comes from a Stop-hook event: `hook_event_name` is
    /// one of [`STOP_EVENTS`], or absent (a hand-written input such as
    /// `{"stop_hook_active":false}`). Anything else (`PreToolUse`, a typo)
    /// means the hook was installed under the wrong event, where a block
    /// decision would mean something else.
    ///
    /// ```
    /// use outbox::stop_hook::HookInput;
    /// assert!(HookInput::parse(br#"{"hook_event_name":"Stop"}"#).unwrap().is_stop_event());
    /// assert!(HookInput::parse(b"{}").unwrap().is_stop_event());
    /// assert!(!HookInput::parse(br#"{"hook_event_name":"PreToolUse"}"#).unwrap().is_stop_event());
    /// ```
    pub fn is_stop_event(&self) -> bool {
        self.hook_event_name.is_empty() || STOP_EVENTS.contains(&self.hook_event_name.as_str())
    }

    /// Parses a hook input: one JSON object, surrounded by optional
    /// whitespace. Empty (or all-whitespace) input is read as `{}`, so the
    /// hook can be run by hand with no input.
    pub fn parse(bytes: &[u8]) -> Result<Self, InputError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let value = crate::hook_json::parse(bytes).map_err(JsonError::new)?;
        let kind = match &value {
            serde_json::Value::Object(_) => {
                return Self::deserialize(value).map_err(|e| JsonError::new(e).into());
            }
            serde_json::Value::Null => "null",
            serde_json::Value::Bool(_) => "a boolean",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::String(_) => "a string",
            serde_json::Value::Array(_) => "an array",
        };
        Err(InputError::NotAnObject(kind))
    }
}

/// What [`on_stop_consume_on_print`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopOutcome {
    /// Nothing was pending: no decision was emitted and nothing was written.
    NothingPending,
    /// The hook had already blocked [`MAX_CONSECUTIVE_BLOCKS`] times in a
    /// row: no decision was emitted and the records stay pending.
    GuardTripped {
        /// The consecutive-block counter, as read.
        blocks: u32,
    },
    /// Records were pending, but another drain took them first: the counter
    /// was reset to 0 and no decision was emitted.
    NoneLeft,
    /// A block decision was emitted for `records`, which are now consumed.
    Blocked {
        /// The records the reason lists.
        records: Vec<Record>,
        /// The consecutive-block counter after this block.
        blocks: u32,
    },
    /// A block decision was emitted for `records`, and the disk then failed
    /// both making the consumed ledger durable and putting the old one back
    /// ([`Error::MarksKept`] with the marks visible): the records are marked
    /// consumed, not durably. The decision stands (reporting an error would
    /// make Claude Code ignore it, and no later drain would deliver the
    /// records); a crash may deliver them again.
    BlockedNotDurable {
        /// The records the reason lists.
        records: Vec<Record>,
        /// The consecutive-block counter after this block.
        blocks: u32,
        /// What failed, for a warning.
        warning: String,
    },
}

/// Why [`on_stop_consume_on_print`] failed. In no case is a record lost; the caller should
/// not block (print nothing more) and report the error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StopHookError<E> {
    /// The consecutive-block counter could not be read or persisted: no
    /// decision was emitted and nothing was consumed.
    #[error("stop-hook loop guard: {0}")]
    Guard(#[source] Error),
    /// Checking or draining the inbox failed. If the decision had already
    /// been emitted, the records are not marked consumed (a ledger that had
    /// become visible was put back, see [`Outbox::drain_with`]): the next
    /// drain delivers them again. (When the old ledger could not be put
    /// back, the outcome is [`StopOutcome::BlockedNotDurable`] instead.)
    #[error(transparent)]
    Outbox(Error),
    /// Emitting the decision failed: nothing was marked consumed. The
    /// counter already counted this block, so the guard may trip one block
    /// early (never late).
    #[error("emit the block decision: {0}")]
    Emit(#[source] E),
    /// The pending records changed between reading them and draining them,
    /// [`RENDER_ATTEMPTS`] times in a row, so that the reason rendered from
    /// what was drained no longer showed all of it: nothing was emitted or
    /// consumed.
    #[error(
        "the pending records changed while the hook drained them ({RENDER_ATTEMPTS} times); \
         nothing was consumed"
    )]
    Changed,
}

/// How many times [`on_stop_consume_on_print`] reads and drains again when the records it
/// drained are not the ones it rendered (a commit came in between).
pub const RENDER_ATTEMPTS: u32 = 3;

/// Why one drain attempt of [`on_stop_consume_on_print`] delivered nothing.
enum Attempt<E> {
    /// The drained records do not all fit the reason: try again.
    Changed,
    /// `emit` failed.
    Emit(E),
}

/// Applies the consume-on-print rule (see the module documentation) to
/// `parent` of any [`Store`] (the file outbox, or another store), with
/// the reason rendered for `parent` with the default options
/// ([`on_stop_consume_on_print_with`] takes others). `emit` receives the block decision as
/// one line of JSON (without a newline), `{"decision":"block","reason":"..."}`;
/// it is called at most once, and the records are marked consumed only
/// after it returned `Ok`.
///
/// Writes nothing when nothing is pending. Otherwise: the counter (1 file +
/// 1 directory fsync), then the drain's own fsyncs (+1 when records stay
/// pending because the reason could not show them all).
pub fn on_stop_consume_on_print<S: Store, E>(
    outbox: &S,
    parent: &str,
    stop_hook_active: bool,
    emit: impl FnOnce(&str) -> Result<(), E>,
) -> Result<StopOutcome, StopHookError<E>> {
    on_stop_consume_on_print_with(
        outbox,
        parent,
        stop_hook_active,
        &RenderOptions::new(parent),
        emit,
    )
}

/// [`on_stop_consume_on_print`], rendering the reason with `opts` (its budget, its show
/// command; `opts.parent` names the parent in the text).
pub fn on_stop_consume_on_print_with<S: Store, E>(
    outbox: &S,
    parent: &str,
    stop_hook_active: bool,
    opts: &RenderOptions,
    emit: impl FnOnce(&str) -> Result<(), E>,
) -> Result<StopOutcome, StopHookError<E>> {
    if !outbox.has_pending(parent).map_err(StopHookError::Outbox)? {
        return Ok(StopOutcome::NothingPending);
    }
    // A stop that no block of ours caused starts a new run of blocks. The
    // reset reaches the disk with the increment below.
    let mut state = outbox.handover(parent).map_err(StopHookError::Guard)?;
    let previous = if stop_hook_active { state.blocks } else { 0 };
    if previous >= MAX_CONSECUTIVE_BLOCKS {
        return Ok(StopOutcome::GuardTripped { blocks: previous });
    }
    let blocks = previous + 1;
    // Durable before the drain: a hook that crashes after emitting a block
    // must still count it, or a crash loop could block forever.
    state.blocks = blocks;
    outbox
        .set_handover(parent, &state)
        .map_err(StopHookError::Guard)?;

    let mut emit = Some(emit);
    let mut attempts = 0;
    let drained = loop {
        attempts += 1;
        // What fits the reason, from what is pending now; the drain then
        // takes that many, and the reason is rendered from what it took.
        let pending = outbox.peek(parent).map_err(StopHookError::Outbox)?;
        let fits = block_reason(&pending, opts).shown;
        let result = outbox.drain_with_max(parent, fits.max(1), |records| {
            let reason = block_reason(records, opts);
            if reason.shown < records.len() {
                return Err(Attempt::Changed);
            }
            match emit.take() {
                Some(emit) => emit(&block_decision(&reason.text)).map_err(Attempt::Emit),
                // Emitted by an earlier attempt, which then returned: never
                // reached.
                None => Err(Attempt::Changed),
            }
        });
        match result {
            Ok(drained) => break drained,
            Err(DrainWithError::Delivery(Attempt::Changed)) if attempts < RENDER_ATTEMPTS => {}
            Err(DrainWithError::Delivery(Attempt::Changed)) => {
                return Err(StopHookError::Changed);
            }
            Err(DrainWithError::Delivery(Attempt::Emit(e))) => {
                return Err(StopHookError::Emit(e));
            }
            Err(DrainWithError::Outbox(Error::MarksKept {
                error,
                undo,
                marks_visible: true,
                records,
            })) => {
                let warning = format!(
                    "{error}; putting the old consumed ledger back failed too ({undo}): the \
                     block stands and its records are marked consumed, not durably (a crash \
                     may deliver them again)"
                );
                return Ok(StopOutcome::BlockedNotDurable {
                    records,
                    blocks,
                    warning,
                });
            }
            Err(DrainWithError::Outbox(e)) => return Err(StopHookError::Outbox(e)),
        }
    };
    if drained.records.is_empty() {
        state.blocks = 0;
        outbox
            .set_handover(parent, &state)
            .map_err(StopHookError::Guard)?;
        return Ok(StopOutcome::NoneLeft);
    }
    Ok(StopOutcome::Blocked {
        records: drained.records,
        blocks,
    })
}

/// The block decision with `reason`: `{"decision":"block","reason":...}`,
/// as one line of JSON without a newline.
pub fn block_decision(reason: &str) -> String {
    serde_json::json!({
        "decision": "block",
        "reason": reason,
    })
    .to_string()
}

/// The reason of a block: `records` rendered as a [`Surface::StopBlock`]
/// delivery ([`delivery::render`]): the leading records that fit the
/// budget, each child's text framed as data. Only the
/// [`shown`](Rendered::shown) records may be consumed.
///
/// ```
/// use outbox::{Record, stop_hook::block_reason};
/// use outbox::delivery::RenderOptions;
///
/// let mut done = Record::finished("c1", "success");
/// done.child_title = "parser".into();
/// done.done_summary = "all tests pass".into();
/// let moved = Record::transition("c2", "running", "waiting");
/// let reason = block_reason(&[done, moved], &RenderOptions::new("conductor"));
/// assert_eq!(reason.shown, 2);
/// let lines: Vec<&str> = reason.text.lines().collect();
/// assert!(lines[0].starts_with(r#"outbox: 2 of 2 records for parent "conductor""#));
/// assert!(lines[1].starts_with(r#"outbox: record 1: child "c1", title "parser", finished a turn with status "success""#));
/// assert_eq!(lines[2], "| all tests pass");
/// assert!(lines[3].starts_with(r#"outbox: record 2: child "c2", changed status from "running" to "waiting""#));
/// ```
pub fn block_reason(records: &[Record], opts: &RenderOptions) -> Rendered {
    delivery::render(records, Surface::StopBlock, opts)
}

impl<I: Io> Outbox<I> {
    /// The directory of the handover states (the Stop-hook loop guards of
    /// older versions), relative to the root.
    pub fn handover_dir(&self) -> PathBuf {
        self.root().join(STOP_BLOCKS_DIR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outbox;
    use parking_lot::Mutex;
    use std::convert::Infallible;
    use std::path::Path;

    const PARENT: &str = "conductor";

    fn blocks(n: u32) -> crate::handover::Handover {
        crate::handover::Handover {
            blocks: n,
            ..Default::default()
        }
    }

    fn emit_into(out: &mut Vec<String>) -> impl FnOnce(&str) -> Result<(), Infallible> + '_ {
        |json| {
            out.push(json.to_owned());
            Ok(())
        }
    }

    fn stop(ob: &Outbox, active: bool, out: &mut Vec<String>) -> StopOutcome {
        on_stop_consume_on_print(ob, PARENT, active, emit_into(out)).unwrap()
    }

    #[test]
    fn input_tolerates_unknown_and_missing_fields() {
        let input = HookInput::parse(
            br#"{"session_id":"s","transcript_path":"/t","hook_event_name":"Stop","extra":[1]}"#,
        )
        .unwrap();
        assert_eq!(input.session_id, "s");
        assert!(!input.stop_hook_active);
        let input = HookInput::parse(br#" {"stop_hook_active":true,"session_id":null} "#).unwrap();
        assert!(input.stop_hook_active);
        assert_eq!(input.session_id, "");
        assert_eq!(HookInput::parse(b" \n").unwrap(), HookInput::default());
        assert!(
            !HookInput::parse(br#"{"stop_hook_active":null}"#)
                .unwrap()
                .stop_hook_active
        );
    }

    #[test]
    fn input_rejects_what_is_not_one_object() {
        for bad in [
            &b"{"[..],
            b"[]",
            b"true",
            b"{} {}",
            br#"{"stop_hook_active":"yes"}"#,
            b"\xff",
        ] {
            assert!(HookInput::parse(bad).is_err(), "{:?}", bad);
        }
        let err = HookInput::parse(b"[1]").unwrap_err().to_string();
        assert!(err.contains("an array"), "{err}");
    }

    #[test]
    fn nothing_pending_writes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let ob = Outbox::open(root.path()).unwrap();
        let mut out = Vec::new();
        assert_eq!(stop(&ob, false, &mut out), StopOutcome::NothingPending);
        assert_eq!(stop(&ob, true, &mut out), StopOutcome::NothingPending);
        assert!(out.is_empty());
        assert!(!ob.handover_dir().exists());
    }

    #[test]
    fn three_consecutive_blocks_then_the_records_wait() {
        let root = tempfile::tempdir().unwrap();
        let ob = Outbox::open(root.path()).unwrap();
        let mut out = Vec::new();
        for turn in 1..=3 {
            ob.commit(PARENT, Record::finished("c1", format!("turn {turn}")))
                .unwrap();
            let outcome = stop(&ob, turn > 1, &mut out);
            assert!(
                matches!(outcome, StopOutcome::Blocked { blocks, .. } if blocks == turn),
                "{outcome:?}"
            );
            assert_eq!(ob.handover(PARENT).unwrap().blocks, turn);
        }
        ob.commit(PARENT, Record::finished("c1", "turn 4")).unwrap();
        assert_eq!(
            stop(&ob, true, &mut out),
            StopOutcome::GuardTripped { blocks: 3 }
        );
        assert_eq!(out.len(), 3);
        assert_eq!(ob.peek(PARENT).unwrap().len(), 1, "the record waits");

        // A stop the hook did not cause resets the run.
        let outcome = stop(&ob, false, &mut out);
        assert!(matches!(outcome, StopOutcome::Blocked { blocks: 1, .. }));
        assert!(out[3].contains("turn 4"));
        assert!(!ob.has_pending(PARENT).unwrap());
    }

    /// The real file system, plus a rival: once the stop-blocks counter is
    /// renamed into place (between the hook's pending check and its drain),
    /// another outbox on the same root drains the parent just before the
    /// hook takes the next lock (its drain's). The counter is written under
    /// the drain lock, so the rival cannot run inside that rename.
    struct RivalIo {
        inner: crate::io::StdIo,
        rival: Mutex<Option<Outbox>>,
        counter_renamed: std::sync::atomic::AtomicBool,
    }

    impl Io for RivalIo {
        type File = <crate::io::StdIo as Io>::File;
        type Reader = <crate::io::StdIo as Io>::Reader;
        type Lock = <crate::io::StdIo as Io>::Lock;
        fn create_new(&self, path: &Path) -> std::io::Result<Self::File> {
            self.inner.create_new(path)
        }
        fn write_all(&self, file: &mut Self::File, data: &[u8]) -> std::io::Result<()> {
            self.inner.write_all(file, data)
        }
        fn sync_file(&self, file: &mut Self::File) -> std::io::Result<()> {
            self.inner.sync_file(file)
        }
        fn open_append(
            &self,
            path: &Path,
        ) -> std::io::Result<Option<crate::io::Appending<Self::File>>> {
            self.inner.open_append(path)
        }
        fn sync_data(&self, file: &mut Self::File) -> std::io::Result<()> {
            self.inner.sync_data(file)
        }
        fn open_read(&self, path: &Path) -> std::io::Result<Option<Self::Reader>> {
            self.inner.open_read(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            self.inner.rename(from, to)?;
            if to.parent().is_some_and(|d| d.ends_with("stop-blocks")) {
                self.counter_renamed
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
            Ok(())
        }
        fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
            self.inner.sync_dir(dir)
        }
        fn remove_file(&self, path: &Path) -> std::io::Result<bool> {
            self.inner.remove_file(path)
        }
        fn file_len(&self, path: &Path) -> std::io::Result<Option<u64>> {
            self.inner.file_len(path)
        }
        fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
            self.inner.create_dir_all(dir)
        }
        fn list_dir(&self, dir: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
            self.inner.list_dir(dir)
        }
        fn lock(&self, path: &Path) -> std::io::Result<Self::Lock> {
            if self
                .counter_renamed
                .load(std::sync::atomic::Ordering::SeqCst)
                && let Some(rival) = self.rival.lock().take()
            {
                // Another thread, as another process would be: this one
                // is inside `Outbox::lock`, and a drain from it would be
                // (rightly) `Reentrant`.
                let drained = std::thread::scope(|s| s.spawn(|| rival.drain(PARENT)).join());
                assert_eq!(drained.unwrap().unwrap().records.len(), 1);
            }
            self.inner.lock(path)
        }
    }

    #[test]
    fn a_drain_that_wins_the_race_resets_the_counter() {
        let root = tempfile::tempdir().unwrap();
        let ob = Outbox::open(root.path()).unwrap();
        ob.set_handover(PARENT, &blocks(2)).unwrap();
        ob.commit(PARENT, Record::finished("c1", "done")).unwrap();
        let io = RivalIo {
            inner: crate::io::StdIo::new(),
            rival: Mutex::new(Some(ob.clone())),
            counter_renamed: std::sync::atomic::AtomicBool::new(false),
        };
        let hooked = Outbox::open_with(root.path(), io).unwrap();
        let mut out = Vec::new();
        let outcome = on_stop_consume_on_print(&hooked, PARENT, true, emit_into(&mut out)).unwrap();
        assert_eq!(outcome, StopOutcome::NoneLeft);
        assert!(hooked.io().rival.lock().is_none(), "the rival drained");
        assert!(out.is_empty());
        assert_eq!(ob.handover(PARENT).unwrap().blocks, 0);
    }

    #[test]
    fn a_re_emitted_consumed_turn_is_nothing_pending() {
        let root = tempfile::tempdir().unwrap();
        let ob = Outbox::open(root.path()).unwrap();
        ob.set_handover(PARENT, &blocks(2)).unwrap();
        ob.commit(PARENT, Record::finished("c1", "done")).unwrap();
        let turn = ob.peek(PARENT).unwrap();
        // Consume the turn, then put the same turn back: the inbox is not
        // empty, yet no drain would deliver anything, so nothing is pending
        // and the hook writes nothing.
        ob.drain(PARENT).unwrap();
        ob.commit(PARENT, turn[0].clone()).unwrap();
        assert!(!ob.has_pending(PARENT).unwrap());
        let mut out = Vec::new();
        assert_eq!(stop(&ob, true, &mut out), StopOutcome::NothingPending);
        assert!(out.is_empty());
        assert_eq!(ob.handover(PARENT).unwrap().blocks, 2);
    }

    #[test]
    fn a_guard_that_cannot_be_persisted_blocks_nothing_and_drains_nothing() {
        let root = tempfile::tempdir().unwrap();
        let ob = Outbox::open(root.path()).unwrap();
        // A file where the guard directory should be: it cannot be created.
        std::fs::write(ob.handover_dir(), b"not a directory").unwrap();
        ob.commit(PARENT, Record::finished("c1", "done")).unwrap();
        let mut out = Vec::new();
        let err = on_stop_consume_on_print(&ob, PARENT, false, emit_into(&mut out)).unwrap_err();
        assert!(matches!(err, StopHookError::Guard(_)), "{err}");
        assert!(out.is_empty());
        assert_eq!(ob.peek(PARENT).unwrap().len(), 1);
    }

    #[test]
    fn a_failed_emit_consumes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let ob = Outbox::open(root.path()).unwrap();
        ob.commit(PARENT, Record::finished("c1", "done")).unwrap();
        let err =
            on_stop_consume_on_print(&ob, PARENT, false, |_| Err("stdout closed")).unwrap_err();
        assert!(matches!(err, StopHookError::Emit("stdout closed")));
        assert_eq!(ob.peek(PARENT).unwrap().len(), 1);
    }

    #[test]
    fn the_reason_lists_each_child_once() {
        let mut a = Record::finished("a", "success");
        a.child_title = "  ".into();
        a.done_summary = " \n ".into();
        let mut b = Record::transition("b", "running", "error");
        b.child_title = "worker b".into();
        b.done_summary = "ignored for a transition".into();
        let reason = block_reason(&[a, b], &RenderOptions::new(PARENT));
        let records: Vec<&str> = reason
            .text
            .lines()
            .filter(|l| l.starts_with("outbox: record "))
            .collect();
        assert_eq!(records.len(), 2, "{}", reason.text);
        assert!(records[0].contains(r#"child "a", finished a turn with status "success""#));
        assert!(records[1].contains(r#"child "b", title "worker b", changed status"#));
        assert!(!reason.text.contains('|') || !reason.text.contains("\n|"));
        let json: serde_json::Value = serde_json::from_str(&block_decision("r")).unwrap();
        assert_eq!(json["decision"], "block");
        assert_eq!(json["reason"], "r");
    }
}
