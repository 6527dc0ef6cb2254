//! `--older-than` durations: the compact forms `7d`, `36h`, `90m`, `45s`,
//! `1d12h`, and everything [`humantime`] reads (`1d 12h`, `1w`, `90min`,
//! `2 days`).

use std::time::Duration;

/// What an error message offers as examples.
const EXAMPLES: &str = "e.g. 7d, 36h, 90m, 45s, 1d12h, 1d 12h, 1w, 90min";

/// Parses a duration: first as one or more `<whole number><unit>` terms,
/// unit `d`, `h`, `m` or `s`, added (`7d`, `36h`, `1d12h`; the original
/// forms, which keep their meaning), else with [`humantime::parse_duration`]
/// (units from `ns` to `y`, terms separated by spaces or not: `1d 12h`,
/// `1w`, `90min`; a month is 30.44 days, a year 365.25). The error names
/// the text, says what humantime found wrong, and gives examples.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match parse_compact(text) {
        Some(duration) => Ok(duration),
        None => humantime::parse_duration(text)
            .map_err(|e| format!("invalid duration {text:?}: {e} ({EXAMPLES})")),
    }
}

/// The compact form only: `None` when `text` is not one.
fn parse_compact(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let (number, tail) = rest.split_at(digits);
        let unit = tail.chars().next()?;
        let seconds_per_unit: u64 = match unit {
            'd' => 24 * 3600,
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(seconds_per_unit))
            .and_then(|s| total.checked_add(s))?;
        rest = &tail[unit.len_utf8()..];
    }
    Some(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_unit_and_sums() {
        for (text, secs) in [
            ("7d", 7 * 86_400),
            ("36h", 36 * 3600),
            ("90m", 5400),
            ("45s", 45),
            ("0s", 0),
            ("1d12h", 86_400 + 12 * 3600),
            ("1h1h", 7200),
            ("007m", 420),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
    }

    #[test]
    fn accepts_humantime_forms() {
        for (text, secs) in [
            ("1d 12h", 86_400 + 12 * 3600),
            ("1w", 7 * 86_400),
            ("2w", 14 * 86_400),
            ("90min", 5400),
            ("2days", 2 * 86_400),
            ("7 d", 7 * 86_400),
            (" 7d ", 7 * 86_400),
            ("1.5h", 5400),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_junk_with_a_clear_error() {
        for text in [
            "",
            "7",
            "d",
            "7x",
            "-7d",
            "+7d",
            "7D",
            "7dd",
            "99999999999999999999s",
            "213503982334602d",
            "7d\u{e9}",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(
                err.starts_with(&format!("invalid duration {text:?}: ")),
                "{text}: {err}"
            );
            assert!(err.contains("e.g. 7d"), "{text}: {err}");
        }
        assert!(parse_duration("7x").unwrap_err().contains("unit"));
        assert!(
            parse_duration("99999999999999999999s")
                .unwrap_err()
                .contains("too large")
        );
    }
}
