//! `commit --from-hook`: a child's Claude Code hook input turned into a
//! completion record.
//!
//! The input is the JSON object Claude Code writes on the hook's stdin.
//! Read: `hook_event_name` (required, one of [`EVENTS`]), `session_id`
//! (required: the child's id), `last_assistant_message` (the summary, when
//! present), and per event:
//!
//! - `Stop`: status `success`.
//! - `SubagentStop`: `agent_id` (the subagent's id, which then is the
//!   child's id: a subagent shares its parent's `session_id`) and
//!   `agent_type` (its title); status `success`.
//! - `StopFailure` (a turn that ended in an API error, instead of Stop):
//!   status `error`; the summary says `error` and `error_details`, then
//!   the last message ("API Error: …"). Each failure is its own turn
//!   (`prompt_id`, else the time, is its output hash), so a second
//!   identical error is not taken for a re-emit of the first.
//! - `SessionEnd`: status `ended`, the summary names `reason`; one turn
//!   per session. The caller commits it only when nothing of the child is
//!   pending ([`FromHook::only_if_nothing_pending`]): a pending report
//!   would otherwise be superseded (last wins) before the parent saw it.
//!
//! Everything else (`transcript_path`, `stop_hook_active`, `cwd`, ...) is
//! ignored.

use outbox::Record;
use serde_json::{Map, Value};

/// The status of a record committed from a Stop or SubagentStop hook: the
/// child ended a turn.
pub const STATUS: &str = "success";

/// The status of a record committed from a StopFailure hook.
pub const STATUS_ERROR: &str = "error";

/// The status of a record committed from a SessionEnd hook.
pub const STATUS_ENDED: &str = "ended";

/// The hook events `commit --from-hook` understands.
pub const EVENTS: [&str; 4] = ["Stop", "SubagentStop", "StopFailure", "SessionEnd"];

/// A record made from a hook input, and how to commit it.
#[derive(Debug)]
pub struct FromHook {
    /// The record.
    pub record: Record,
    /// Commit it only when no record of its child is pending (SessionEnd).
    pub only_if_nothing_pending: bool,
}

/// The string field `name` of the hook input: `None` when absent or
/// `null`, an error naming it when it is not a string.
fn field(input: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "stdin: hook input field {name} must be a string, got {}",
            match other {
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::Array(_) => "an array",
                _ => "an object",
            }
        )),
    }
}

/// The completion record for a hook input (see the module documentation).
/// Errors name the field and say what was expected.
pub fn record(bytes: &[u8]) -> Result<FromHook, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("stdin is empty: expected the hook's JSON object".to_owned());
    }
    let value = outbox::hook_json::parse(bytes).map_err(|e| format!("stdin: not JSON: {e}"))?;
    let Value::Object(input) = value else {
        return Err("stdin: expected the hook's JSON object".to_owned());
    };
    let event = field(&input, "hook_event_name")?;
    let event = match event.as_deref() {
        None | Some("") => {
            return Err(format!(
                "stdin: hook input has no hook_event_name (expected {})",
                EVENTS.join(", ")
            ));
        }
        Some(event) if !EVENTS.contains(&event) => {
            return Err(format!(
                "stdin: hook_event_name is {event:?}, expected {}: install this command \
                 under those events",
                EVENTS.join(", ")
            ));
        }
        Some(event) => event,
    };
    let nonblank = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let agent = nonblank(field(&input, "agent_id")?).filter(|_| event == "SubagentStop");
    let child = match (agent, nonblank(field(&input, "session_id")?)) {
        (Some(agent), _) => agent,
        (None, Some(session)) => session,
        (None, None) => {
            return Err("stdin: hook input has no session_id (the child's id)".to_owned());
        }
    };
    let message = field(&input, "last_assistant_message")?.unwrap_or_default();
    let mut only_if_nothing_pending = false;
    let record = match event {
        "StopFailure" => {
            let mut r = Record::finished(child, STATUS_ERROR);
            let error = nonblank(field(&input, "error")?).unwrap_or_else(|| "unknown".into());
            let mut summary = format!("the turn failed: {error}");
            if let Some(details) = nonblank(text_field(&input, "error_details")) {
                summary.push_str(&format!(" ({details})"));
            }
            if !message.trim().is_empty() {
                summary.push('\n');
                summary.push_str(&message);
            }
            r.done_summary = summary;
            r.last_output_hash = match nonblank(field(&input, "prompt_id")?) {
                Some(prompt) => format!("stop-failure:{prompt}"),
                None => format!("stop-failure:{}", now_nanos()),
            };
            r
        }
        "SessionEnd" => {
            let mut r = Record::finished(child, STATUS_ENDED);
            let reason = nonblank(field(&input, "reason")?).unwrap_or_else(|| "unknown".into());
            r.done_summary = format!("the session ended ({reason}) with its last turn unreported");
            r.last_output_hash = "session-end".to_owned();
            only_if_nothing_pending = true;
            r
        }
        _ => {
            let mut r = Record::finished(child, STATUS);
            r.done_summary = message;
            if event == "SubagentStop" {
                r.child_title = field(&input, "agent_type")?.unwrap_or_default();
            }
            r
        }
    };
    Ok(FromHook {
        record,
        only_if_nothing_pending,
    })
}

/// A field as text whatever its JSON type (`error_details` may be an
/// object): a string as is, anything else as JSON; `None` when absent or
/// `null`.
fn text_field(input: &Map<String, Value>, name: &str) -> Option<String> {
    match input.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

/// Nanoseconds since the Unix epoch (0 before it).
fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_input_becomes_a_completion() {
        let r = record(
            br#"{"session_id":"c1","transcript_path":"/t.jsonl","cwd":"/w",
                 "hook_event_name":"Stop","stop_hook_active":false,
                 "last_assistant_message":"done: parser","new_field":[1]}"#,
        )
        .unwrap()
        .record;
        assert_eq!(
            (r.child_session_id.as_str(), r.done_status.as_str()),
            ("c1", "success")
        );
        assert_eq!(r.done_summary, "done: parser");
        assert!(r.is_finished());
        // No message (an older Claude Code): an empty summary.
        let r = record(br#"{"session_id":"c1","hook_event_name":"Stop"}"#)
            .unwrap()
            .record;
        assert_eq!(r.done_summary, "");
    }

    #[test]
    fn a_subagent_is_named_by_its_agent_id() {
        let r = record(
            br#"{"session_id":"main","hook_event_name":"SubagentStop","agent_id":"a7",
                 "agent_type":"reviewer","last_assistant_message":"ok"}"#,
        )
        .unwrap()
        .record;
        assert_eq!(
            (r.child_session_id.as_str(), r.child_title.as_str()),
            ("a7", "reviewer")
        );
        // agent_id counts only for SubagentStop.
        let r = record(br#"{"session_id":"s","hook_event_name":"Stop","agent_id":"a"}"#)
            .unwrap()
            .record;
        assert_eq!(r.child_session_id, "s");
    }

    #[test]
    fn bad_inputs_name_the_field() {
        for (input, needle) in [
            (&b""[..], "stdin is empty"),
            (b"{", "not JSON"),
            (b"[]", "JSON object"),
            (br#"{"session_id":"c"}"#, "no hook_event_name"),
            (
                br#"{"session_id":"c","hook_event_name":"PreToolUse"}"#,
                "hook_event_name is \"PreToolUse\"",
            ),
            (br#"{"hook_event_name":"Stop"}"#, "no session_id"),
            (
                br#"{"hook_event_name":"Stop","session_id":"  "}"#,
                "no session_id",
            ),
            (
                br#"{"hook_event_name":"Stop","session_id":7}"#,
                "session_id",
            ),
            (
                br#"{"hook_event_name":"Stop","session_id":"c","last_assistant_message":{}}"#,
                "last_assistant_message",
            ),
        ] {
            let err = record(input).unwrap_err();
            assert!(err.contains(needle), "{input:?}: {err}");
        }
    }

    #[test]
    fn a_failed_turn_and_an_ended_session_are_completions() {
        let r = record(
            br#"{"session_id":"c1","hook_event_name":"StopFailure","error":"rate_limit",
                 "last_assistant_message":"API Error: 429","prompt_id":"p9"}"#,
        )
        .unwrap();
        assert!(!r.only_if_nothing_pending);
        let r = r.record;
        assert_eq!(
            (r.child_session_id.as_str(), r.done_status.as_str()),
            ("c1", "error")
        );
        assert_eq!(
            r.done_summary,
            "the turn failed: rate_limit\nAPI Error: 429"
        );
        assert_eq!(r.last_output_hash, "stop-failure:p9");
        let r = record(
            br#"{"session_id":"c1","hook_event_name":"StopFailure","error_details":{"code":1}}"#,
        )
        .unwrap()
        .record;
        assert_eq!(r.done_summary, "the turn failed: unknown ({\"code\":1})");
        let r = record(br#"{"session_id":"c1","hook_event_name":"SessionEnd","reason":"logout"}"#)
            .unwrap();
        assert!(r.only_if_nothing_pending);
        assert_eq!(r.record.done_status, "ended");
        assert!(r.record.done_summary.contains("(logout)"), "{:?}", r.record);
    }
}
