//! `--older-than` durations: `7d`, `36h`, `90m`, `45s`, or a sum such as
//! `1d12h`.

use std::time::Duration;

/// Parses a duration written as one or more `<whole number><unit>` terms,
/// unit `d` (days), `h` (hours), `m` (minutes) or `s` (seconds), with no
/// spaces or signs: `7d`, `36h`, `1d12h`. The terms are added.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid duration {text:?}: {why} (e.g. 7d, 36h, 90m, 45s)"
        ))
    };
    if text.is_empty() {
        return bad("empty");
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return bad("expected a whole number");
        }
        let (number, tail) = rest.split_at(digits);
        let Some(unit) = tail.chars().next() else {
            return bad("missing unit after the number: d, h, m or s");
        };
        let seconds_per_unit: u64 = match unit {
            'd' => 24 * 3600,
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return bad("unknown unit: use d, h, m or s"),
        };
        let Some(seconds) = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(seconds_per_unit))
            .and_then(|s| total.checked_add(s))
        else {
            return bad("too large");
        };
        total = seconds;
        rest = &tail[unit.len_utf8()..];
    }
    Ok(Duration::from_secs(total))
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
    fn rejects_junk_with_a_clear_error() {
        for text in [
            "",
            "7",
            "d",
            "7x",
            "7 d",
            " 7d",
            "7d ",
            "-7d",
            "+7d",
            "1.5h",
            "7D",
            "7dd",
            "99999999999999999999s",
            "213503982334602d",
            "7d\u{e9}",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.starts_with("invalid duration"), "{text}: {err}");
            assert!(err.contains("e.g. 7d"), "{text}: {err}");
        }
        assert!(parse_duration("7").unwrap_err().contains("missing unit"));
        assert!(parse_duration("7w").unwrap_err().contains("unknown unit"));
        assert!(
            parse_duration("99999999999999999999s")
                .unwrap_err()
                .contains("too large")
        );
    }
}
