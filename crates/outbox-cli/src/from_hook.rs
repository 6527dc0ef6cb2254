//! `commit --from-hook`: a child's Claude Code Stop (or SubagentStop) hook
//! input turned into a completion record.
//!
//! The input is the JSON object Claude Code writes on the hook's stdin.
//! Read: `hook_event_name` (required, `Stop` or `SubagentStop`),
//! `session_id` (required: the child's id), `last_assistant_message` (the
//! summary, when present), and for `SubagentStop` `agent_id` (the
//! subagent's id, which then is the child's id: a subagent shares its
//! parent's `session_id`) and `agent_type` (its title). Everything else
//! (`transcript_path`, `stop_hook_active`, `cwd`, ...) is ignored.

use outbox::Record;
use outbox::stop_hook::STOP_EVENTS;
use serde_json::{Map, Value};

/// The status of a record committed from a hook: the child ended a turn.
pub const STATUS: &str = "success";

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

/// The completion record for a Stop-hook input: child id from `agent_id`
/// (SubagentStop) or `session_id`, status [`STATUS`], summary
/// `last_assistant_message` (not yet capped), title `agent_type`
/// (SubagentStop). Errors name the field and say what was expected.
pub fn record(bytes: &[u8]) -> Result<Record, String> {
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
                STOP_EVENTS.join(" or ")
            ));
        }
        Some(event) if !STOP_EVENTS.contains(&event) => {
            return Err(format!(
                "stdin: hook_event_name is {event:?}, expected {}: install this command \
                 under hooks.Stop",
                STOP_EVENTS.join(" or ")
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
    let mut record = Record::finished(child, STATUS);
    record.done_summary = field(&input, "last_assistant_message")?.unwrap_or_default();
    if event == "SubagentStop" {
        record.child_title = field(&input, "agent_type")?.unwrap_or_default();
    }
    Ok(record)
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
        .unwrap();
        assert_eq!(
            (r.child_session_id.as_str(), r.done_status.as_str()),
            ("c1", "success")
        );
        assert_eq!(r.done_summary, "done: parser");
        assert!(r.is_finished());
        // No message (an older Claude Code): an empty summary.
        let r = record(br#"{"session_id":"c1","hook_event_name":"Stop"}"#).unwrap();
        assert_eq!(r.done_summary, "");
    }

    #[test]
    fn a_subagent_is_named_by_its_agent_id() {
        let r = record(
            br#"{"session_id":"main","hook_event_name":"SubagentStop","agent_id":"a7",
                 "agent_type":"reviewer","last_assistant_message":"ok"}"#,
        )
        .unwrap();
        assert_eq!(
            (r.child_session_id.as_str(), r.child_title.as_str()),
            ("a7", "reviewer")
        );
        // agent_id counts only for SubagentStop.
        let r = record(br#"{"session_id":"s","hook_event_name":"Stop","agent_id":"a"}"#).unwrap();
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
}
