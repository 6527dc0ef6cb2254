//! RFC 3339 timestamps with nanoseconds and a UTC offset, as agent-deck
//! writes them (Go's `time.RFC3339Nano`).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const SECS_PER_DAY: i64 = 86_400;
/// Unix seconds of 0001-01-01T00:00:00Z, Go's zero `time.Time`.
const ZERO_UNIX_SECS: i64 = -62_135_596_800;
/// Unix seconds of 10000-01-01T00:00:00Z: RFC 3339 has four-digit years.
const END_UNIX_SECS: i64 = 253_402_300_800;

/// An instant with the UTC offset it was written with.
///
/// Two timestamps are `==` only when both the instant and the offset match;
/// compare instants with [`Timestamp::instant_cmp`]. The default value is
/// Go's zero time, `0001-01-01T00:00:00Z`, which is also what a record
/// without a `timestamp` field decodes to.
///
/// ```
/// use outbox::Timestamp;
/// let t: Timestamp = "2026-05-01T10:00:00.5+02:00".parse().unwrap();
/// assert_eq!(t.to_string(), "2026-05-01T10:00:00.5+02:00");
/// assert_eq!(t.unix_seconds(), 1_777_622_400);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// Seconds since the Unix epoch, UTC.
    secs: i64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    nanos: u32,
    /// Offset from UTC in seconds, a whole number of minutes, |offset| < 24h.
    offset: i32,
}

impl Default for Timestamp {
    fn default() -> Self {
        Self {
            secs: ZERO_UNIX_SECS,
            nanos: 0,
            offset: 0,
        }
    }
}

/// Why a string is not an RFC 3339 timestamp.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp {input:?}: {reason}")]
pub struct TimestampError {
    input: String,
    reason: &'static str,
}

impl Timestamp {
    /// The zero time, `0001-01-01T00:00:00Z`.
    pub const ZERO: Timestamp = Timestamp {
        secs: ZERO_UNIX_SECS,
        nanos: 0,
        offset: 0,
    };

    /// A UTC timestamp for `time`, or `None` when it falls outside years
    /// 0000–9999, which RFC 3339 cannot write.
    pub fn from_system_time(time: SystemTime) -> Option<Self> {
        let (secs, nanos) = match time.duration_since(UNIX_EPOCH) {
            Ok(d) => (i64::try_from(d.as_secs()).ok()?, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                let secs = i64::try_from(d.as_secs()).ok()?;
                if d.subsec_nanos() == 0 {
                    (-secs, 0)
                } else {
                    (-secs - 1, 1_000_000_000 - d.subsec_nanos())
                }
            }
        };
        Self::from_unix(secs, nanos, 0)
    }

    /// The current time, in UTC.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now()).unwrap_or(Self::ZERO)
    }

    /// A timestamp from Unix seconds, nanoseconds and a UTC offset in
    /// seconds; `None` when out of range (years 0000–9999, `nanos` below one
    /// second, offset a whole number of minutes under 24 hours).
    pub fn from_unix(secs: i64, nanos: u32, offset_secs: i32) -> Option<Self> {
        let local = secs.checked_add(i64::from(offset_secs))?;
        let in_range = (ZERO_UNIX_SECS - 366 * SECS_PER_DAY..END_UNIX_SECS).contains(&local);
        let valid_offset = offset_secs % 60 == 0 && offset_secs.unsigned_abs() < 86_400;
        (in_range && nanos < 1_000_000_000 && valid_offset).then_some(Self {
            secs,
            nanos,
            offset: offset_secs,
        })
    }

    /// Seconds since the Unix epoch (UTC), rounded down.
    pub fn unix_seconds(&self) -> i64 {
        self.secs
    }

    /// Nanoseconds within the second.
    pub fn subsec_nanos(&self) -> u32 {
        self.nanos
    }

    /// The UTC offset this timestamp was written with, in seconds.
    pub fn offset_seconds(&self) -> i32 {
        self.offset
    }

    /// Whether this is the zero time (a record with no timestamp).
    pub fn is_zero(&self) -> bool {
        self.secs == ZERO_UNIX_SECS && self.nanos == 0
    }

    /// Compares the instants, ignoring the offsets.
    pub fn instant_cmp(&self, other: &Timestamp) -> std::cmp::Ordering {
        (self.secs, self.nanos).cmp(&(other.secs, other.nanos))
    }

    /// How long before `now` this instant lies; zero when it is not earlier.
    pub fn age_at(&self, now: SystemTime) -> Duration {
        match Self::from_system_time(now) {
            Some(now) if now.instant_cmp(self).is_gt() => {
                let secs = now.secs - self.secs;
                let nanos = i64::from(now.nanos) - i64::from(self.nanos);
                let total = i128::from(secs) * 1_000_000_000 + i128::from(nanos);
                Duration::from_nanos(u64::try_from(total).unwrap_or(u64::MAX))
            }
            _ => Duration::ZERO,
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of `days_from_civil`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl fmt::Display for Timestamp {
    /// Writes RFC 3339 with the fraction's trailing zeros trimmed (none when
    /// zero) and `Z` for a zero offset, as Go's `time.RFC3339Nano` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = self.secs + i64::from(self.offset);
        let (year, month, day) = civil_from_days(local.div_euclid(SECS_PER_DAY));
        let sod = local.rem_euclid(SECS_PER_DAY);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            sod / 3600,
            sod % 3600 / 60,
            sod % 60
        )?;
        if self.nanos != 0 {
            let digits = format!("{:09}", self.nanos);
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        if self.offset == 0 {
            f.write_str("Z")
        } else {
            let sign = if self.offset < 0 { '-' } else { '+' };
            let abs = self.offset.unsigned_abs();
            write!(f, "{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60)
        }
    }
}

/// A cursor over the ASCII bytes of a timestamp being parsed.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize) -> Option<u32> {
        let end = self.pos.checked_add(n)?;
        let slice = self.bytes.get(self.pos..end)?;
        let mut value = 0u32;
        for &b in slice {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(b - b'0');
        }
        self.pos = end;
        Some(value)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.bytes.get(self.pos) == Some(&byte)).then(|| self.pos += 1)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±hh:mm)`. Fraction digits
    /// beyond nanoseconds are dropped.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| TimestampError {
            input: input.to_owned(),
            reason,
        };
        let mut c = Cursor {
            bytes: input.as_bytes(),
            pos: 0,
        };
        let year = c.digits(4).ok_or_else(|| fail("expected a 4-digit year"))?;
        c.expect(b'-')
            .ok_or_else(|| fail("expected '-' after the year"))?;
        let month = c
            .digits(2)
            .ok_or_else(|| fail("expected a 2-digit month"))?;
        c.expect(b'-')
            .ok_or_else(|| fail("expected '-' after the month"))?;
        let day = c.digits(2).ok_or_else(|| fail("expected a 2-digit day"))?;
        c.expect(b'T')
            .ok_or_else(|| fail("expected 'T' after the date"))?;
        let hour = c.digits(2).ok_or_else(|| fail("expected a 2-digit hour"))?;
        c.expect(b':')
            .ok_or_else(|| fail("expected ':' after the hour"))?;
        let minute = c
            .digits(2)
            .ok_or_else(|| fail("expected 2-digit minutes"))?;
        c.expect(b':')
            .ok_or_else(|| fail("expected ':' after the minutes"))?;
        let second = c
            .digits(2)
            .ok_or_else(|| fail("expected 2-digit seconds"))?;

        let year = i64::from(year);
        if !(1..=12).contains(&month) {
            return Err(fail("month out of range"));
        }
        if day == 0 || day > days_in_month(year, month) {
            return Err(fail("day out of range"));
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(fail("time of day out of range"));
        }

        let mut nanos = 0u32;
        if matches!(c.peek(), Some(b'.' | b',')) {
            c.pos += 1;
            let start = c.pos;
            while let Some(b) = c.peek().filter(u8::is_ascii_digit) {
                if c.pos - start < 9 {
                    nanos = nanos * 10 + u32::from(b - b'0');
                }
                c.pos += 1;
            }
            let n = c.pos - start;
            if n == 0 {
                return Err(fail("expected digits after the decimal point"));
            }
            for _ in n..9 {
                nanos *= 10;
            }
        }

        let offset = match c.peek() {
            Some(b'Z') => {
                c.pos += 1;
                0
            }
            Some(sign @ (b'+' | b'-')) => {
                c.pos += 1;
                let hh = c.digits(2).ok_or_else(|| fail("expected offset hours"))?;
                c.expect(b':')
                    .ok_or_else(|| fail("expected ':' in the offset"))?;
                let mm = c.digits(2).ok_or_else(|| fail("expected offset minutes"))?;
                if hh > 23 || mm > 59 {
                    return Err(fail("offset out of range"));
                }
                let abs = (hh * 3600 + mm * 60) as i32;
                if sign == b'-' { -abs } else { abs }
            }
            _ => return Err(fail("expected 'Z' or a ±hh:mm offset")),
        };
        if c.pos != input.len() {
            return Err(fail("unexpected text after the offset"));
        }

        let local = days_from_civil(year, month, day) * SECS_PER_DAY
            + i64::from(hour * 3600 + minute * 60 + second);
        Ok(Self {
            secs: local - i64::from(offset),
            nanos,
            offset,
        })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    /// Accepts an RFC 3339 string, or `null` for the zero time (as Go does).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text: Option<std::borrow::Cow<'de, str>> = Option::deserialize(deserializer)?;
        match text {
            None => Ok(Self::ZERO),
            Some(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(s: &str) -> String {
        s.parse::<Timestamp>().unwrap().to_string()
    }

    #[test]
    fn formats_like_go_rfc3339_nano() {
        assert_eq!(round_trip("2026-11-28T11:20:59Z"), "2026-11-28T11:20:59Z");
        assert_eq!(
            round_trip("2026-11-28T11:20:59.123456789Z"),
            "2026-11-28T11:20:59.123456789Z"
        );
        assert_eq!(
            round_trip("2026-11-28T11:20:59.120000000+02:00"),
            "2026-11-28T11:20:59.12+02:00"
        );
        assert_eq!(
            round_trip("2026-11-28T11:20:59.000-05:30"),
            "2026-11-28T11:20:59-05:30"
        );
        assert_eq!(
            round_trip("2026-11-28T11:20:59+00:00"),
            "2026-11-28T11:20:59Z"
        );
        assert_eq!(Timestamp::default().to_string(), "0001-01-01T00:00:00Z");
        assert_eq!(round_trip("0001-01-01T00:00:00Z"), "0001-01-01T00:00:00Z");
        assert_eq!(round_trip("9999-12-31T23:59:59Z"), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn offsets_change_the_instant_not_the_text() {
        let a: Timestamp = "2026-01-01T12:00:00+02:00".parse().unwrap();
        let b: Timestamp = "2026-01-01T10:00:00Z".parse().unwrap();
        assert_eq!(a.instant_cmp(&b), std::cmp::Ordering::Equal);
        assert_ne!(a, b);
        assert_eq!(a.unix_seconds(), 1_767_261_600);
        let c: Timestamp = "2026-01-01T10:00:00.000000001Z".parse().unwrap();
        assert!(c.instant_cmp(&b).is_gt());
    }

    #[test]
    fn fraction_beyond_nanoseconds_is_truncated() {
        assert_eq!(
            round_trip("2026-11-28T11:20:59.1234567891Z"),
            "2026-11-28T11:20:59.123456789Z"
        );
    }

    #[test]
    fn rejects_malformed_text_with_a_reason() {
        for bad in [
            "",
            "2026-11-28",
            "2026-11-28 11:20:59Z",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-28T24:00:00Z",
            "2026-11-28T11:20:60Z",
            "2026-11-28T11:20:59",
            "2026-11-28T11:20:59.Z",
            "2026-11-28T11:20:59+0200",
            "2026-11-28T11:20:59Zjunk",
            "٢٠٢٦-11-28T11:20:59Z",
        ] {
            let err = bad.parse::<Timestamp>().unwrap_err();
            assert!(err.to_string().contains("invalid RFC 3339"), "{bad}: {err}");
        }
        assert!("2024-02-29T00:00:00Z".parse::<Timestamp>().is_ok());
    }

    #[test]
    fn civil_conversion_round_trips_over_the_whole_range() {
        for days in (days_from_civil(0, 1, 1)..days_from_civil(10_000, 1, 1)).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1, 1, 1) * SECS_PER_DAY, ZERO_UNIX_SECS);
    }

    #[test]
    fn system_time_conversion_and_age() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 250);
        let ts = Timestamp::from_system_time(t).unwrap();
        assert_eq!(ts.unix_seconds(), 1_700_000_000);
        assert_eq!(ts.subsec_nanos(), 250);
        let later = t + Duration::from_secs(90);
        assert_eq!(ts.age_at(later), Duration::from_secs(90));
        assert_eq!(ts.age_at(t - Duration::from_secs(1)), Duration::ZERO);
        let before_epoch = UNIX_EPOCH - Duration::new(1, 500);
        let ts = Timestamp::from_system_time(before_epoch).unwrap();
        assert_eq!((ts.unix_seconds(), ts.subsec_nanos()), (-2, 999_999_500));
        assert_eq!(ts.to_string(), "1969-12-31T23:59:58.9999995Z");
    }

    #[test]
    fn null_decodes_to_the_zero_time() {
        let t: Timestamp = serde_json::from_str("null").unwrap();
        assert!(t.is_zero());
        let t: Timestamp = serde_json::from_str("\"2026-11-28T11:20:59Z\"").unwrap();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-11-28T11:20:59Z\""
        );
    }
}
