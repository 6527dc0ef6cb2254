//! `--older-than` durations, read by [`humantime`]: `7d`, `36h`, `90m`,
//! `45s`, `1d12h`, `1d 12h`, `1w`, `90min`, `2 days`.

use std::time::Duration;

/// What an error message offers as examples.
const EXAMPLES: &str = "e.g. 7d, 36h, 90m, 45s, 1d12h, 1d 12h, 1w, 90min";

/// Parses a duration with [`humantime::parse_duration`]: one or more
/// `<number><unit>` terms, added, with or without spaces between them;
/// units from `ns` to `y` (`s`, `m` or `min`, `h`, `d`, `w`, ...; a month is
/// 30.44 days, a year 365.25). The compact forms of earlier versions (`7d`,
/// `36h`, `90m`, `45s`, `1d12h`) read as they always did. The error names
/// the text, says what humantime found wrong, and gives examples.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration {text:?}: {e} ({EXAMPLES})"))
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
