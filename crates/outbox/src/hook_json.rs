//! The one parser of hook input JSON: what Claude Code (a Node program)
//! writes on a hook's stdin, read by every hook command.
//!
//! Node's `JSON.stringify` escapes a lone UTF-16 surrogate (a string cut
//! in the middle of an emoji) as `\ud83d`; RFC 8259's grammar allows it,
//! but such a string has no Unicode text, and `serde_json` rejects it. A
//! hook that refuses the input swallows the child's completion, so
//! [`parse`] first replaces every lone surrogate escape with `\ufffd`
//! (U+FFFD REPLACEMENT CHARACTER), as a lossy UTF-16 decoder would; a
//! surrogate pair is kept.

use std::borrow::Cow;

/// Parses hook input `bytes` as one JSON value, lone surrogate escapes
/// read as U+FFFD (see the module docs).
///
/// ```
/// let v = outbox::hook_json::parse(br#"{"m":"cut \ud83d"}"#).unwrap();
/// assert_eq!(v["m"], "cut \u{fffd}");
/// ```
pub fn parse(bytes: &[u8]) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::from_slice(&repair_surrogates(bytes))
}

/// `bytes` with each `\uXXXX` escape of a lone surrogate replaced by
/// `\ufffd`; borrowed when there is none. Escapes are read in order, so
/// the `u` of an escaped backslash (`\\u`) starts no escape.
pub fn repair_surrogates(bytes: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = unit_at(bytes, i) else {
            // Any other escape: skip the escaped byte too.
            i += 2;
            continue;
        };
        let next = unit_at(bytes, i + 6);
        let lone = match unit {
            0xD800..=0xDBFF => match next {
                Some(0xDC00..=0xDFFF) => {
                    i += 12;
                    continue;
                }
                _ => true,
            },
            0xDC00..=0xDFFF => true,
            _ => false,
        };
        if lone {
            let fixed = out.get_or_insert_with(|| bytes.to_vec());
            fixed[i..i + 6].copy_from_slice(br"\ufffd");
        }
        i += 6;
    }
    match out {
        Some(fixed) => Cow::Owned(fixed),
        None => Cow::Borrowed(bytes),
    }
}

/// The code unit of a `\uXXXX` escape at `at`, if there is one.
fn unit_at(bytes: &[u8], at: usize) -> Option<u16> {
    let escape = bytes.get(at..at + 6)?;
    if escape[0] != b'\\' || escape[1] != b'u' {
        return None;
    }
    let hex = std::str::from_utf8(&escape[2..]).ok()?;
    u16::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(json: &str) -> String {
        let v = parse(format!("\"{json}\"").as_bytes()).unwrap();
        v.as_str().unwrap().to_owned()
    }

    #[test]
    fn lone_surrogates_read_as_replacement_characters_and_pairs_stay() {
        assert_eq!(text(r"a\ud83d"), "a\u{fffd}");
        assert_eq!(text(r"\ude00b"), "\u{fffd}b");
        assert_eq!(text(r"\ud83d\ude00"), "\u{1f600}");
        assert_eq!(text(r"\ud83d\ud83d\ude00"), "\u{fffd}\u{1f600}");
        assert_eq!(text(r"\ud83d\u0041"), "\u{fffd}A");
        assert_eq!(text(r"\\ud83d"), "\\ud83d");
        assert_eq!(text(r"\\\ud83d"), "\\\u{fffd}");
        assert_eq!(text(r"\uD83D"), "\u{fffd}");
        assert!(matches!(
            repair_surrogates(br#"{"a":"\u0041"}"#),
            Cow::Borrowed(_)
        ));
        // Still not JSON: the parser says so.
        assert!(parse(br#"{"a":"\ud83"}"#).is_err());
        assert!(parse(br"\ud83d").is_err());
    }
}
