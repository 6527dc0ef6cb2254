//! Budget classes, the floor, the CI multiplier and the budget formula.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

/// The smallest budget any walltime gate gets, before the multiplier.
///
/// Below a millisecond, clock resolution and scheduler noise dominate what is
/// measured; work that cheap belongs in an advisory benchmark (`cargo bench`),
/// not in a gate.
pub const FLOOR: Duration = Duration::from_millis(1);

/// Name of the environment variable that scales every walltime budget.
///
/// Unset means 1.0; CI sets 2.0. See [`multiplier`].
pub const MULTIPLIER_ENV: &str = "PERF_BUDGET_MULTIPLIER";

/// The largest multiplier a budget takes: 10.
///
/// A gate's budget is already 3 or 5 times its base; at 10 times that, a
/// walltime gate still catches a hang or a pathological slowdown, while a
/// larger value (`1e300`) would switch every gate off without a word. A
/// larger value is capped here, with a warning ([`parse_multiplier`]).
pub const MAX_MULTIPLIER: f64 = 10.0;

/// Which kind of work a walltime gate times; the class picks the factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Class {
    /// Crosses a boundary whose variance the test cannot control: spawning a
    /// process, fsync on a real disk, the network. Budget factor 5.
    Cold,
    /// Pure in-process work with the disk factored out (tmpfs, or fsync
    /// stubbed through an I/O seam), run after an untimed warm-up. Budget
    /// factor 3.
    Warm,
}

impl Class {
    /// The factor applied to `base`: 5 for [`Class::Cold`], 3 for
    /// [`Class::Warm`].
    #[must_use]
    pub const fn factor(self) -> u32 {
        match self {
            Class::Cold => 5,
            Class::Warm => 3,
        }
    }

    /// Lower-case name used in messages and JSON records: `"cold"` or
    /// `"warm"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Class::Cold => "cold",
            Class::Warm => "warm",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Interprets a raw `PERF_BUDGET_MULTIPLIER` value without touching the
/// environment.
///
/// Returns the multiplier to use and, when the raw value was rejected, a
/// warning that names it. `None` (unset) gives `(1.0, None)`. A value that
/// does not parse as a number, or that is zero, negative, NaN or infinite,
/// gives `1.0` and a warning; one above [`MAX_MULTIPLIER`] gives the cap
/// and a warning. Surrounding whitespace is ignored.
///
/// ```
/// use perfbudget::parse_multiplier;
///
/// assert_eq!(parse_multiplier(None), (1.0, None));
/// assert_eq!(parse_multiplier(Some("2.0")), (2.0, None));
/// let (value, warning) = parse_multiplier(Some("fast"));
/// assert_eq!(value, 1.0);
/// assert!(warning.unwrap().contains("\"fast\""));
/// ```
#[must_use]
pub fn parse_multiplier(raw: Option<&str>) -> (f64, Option<String>) {
    let Some(raw) = raw else {
        return (1.0, None);
    };
    let reason = match raw.trim().parse::<f64>() {
        Ok(value) if value.is_nan() => "is NaN",
        Ok(value) if value.is_infinite() => "is infinite",
        Ok(0.0) => "is zero", // also matches -0.0
        Ok(value) if value < 0.0 => "is negative",
        Ok(value) if value > MAX_MULTIPLIER => {
            let warning = format!(
                "perfbudget: warning: {MULTIPLIER_ENV}={raw:?} is above the cap; capped at \
                 {MAX_MULTIPLIER} (a larger multiplier switches every walltime gate off)"
            );
            return (MAX_MULTIPLIER, Some(warning));
        }
        Ok(value) => return (value, None),
        Err(_) => "is not a number",
    };
    let warning = format!(
        "perfbudget: warning: {MULTIPLIER_ENV}={raw:?} {reason}; using 1.0 (expected a finite number > 0, e.g. 2.0)"
    );
    (1.0, Some(warning))
}

/// The multiplier read from the environment once per process, with the
/// warning (if any) that [`parse_multiplier`] produced for it.
pub(crate) fn env_multiplier() -> &'static (f64, Option<String>) {
    static SETTING: OnceLock<(f64, Option<String>)> = OnceLock::new();
    SETTING.get_or_init(|| {
        let setting = match std::env::var_os(MULTIPLIER_ENV) {
            None => parse_multiplier(None),
            Some(raw) => match raw.into_string() {
                Ok(text) => parse_multiplier(Some(&text)),
                Err(raw) => {
                    // Not UTF-8: certainly not a number. Name it lossily.
                    let lossy = raw.to_string_lossy().into_owned();
                    let (_, warning) = parse_multiplier(Some(&format!("{lossy} (not UTF-8)")));
                    (1.0, warning)
                }
            },
        };
        if let Some(warning) = &setting.1 {
            eprintln!("{warning}");
        }
        setting
    })
}

/// The budget multiplier from `PERF_BUDGET_MULTIPLIER`.
///
/// Read once per process. Unset gives 1.0. An invalid value (see
/// [`parse_multiplier`]) prints a warning naming it to stderr, once, and
/// gives 1.0: a typo in CI must be visible but must not turn every gate off.
#[must_use]
pub fn multiplier() -> f64 {
    env_multiplier().0
}

/// A walltime budget: `max(base × factor, FLOOR) × multiplier`.
///
/// All arithmetic saturates: a huge `base` or multiplier yields
/// [`Duration::MAX`] instead of an overflow panic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    class: Class,
    base: Duration,
    multiplier: f64,
    limit: Duration,
}

impl Budget {
    /// Computes the budget for `class` and `base` with an explicit
    /// multiplier.
    ///
    /// A multiplier that is not finite or not positive is replaced by 1.0,
    /// and one above [`MAX_MULTIPLIER`] by the cap: the rules
    /// [`parse_multiplier`] applies to the environment.
    ///
    /// ```
    /// use std::time::Duration;
    /// use perfbudget::{Budget, Class};
    ///
    /// let budget = Budget::new(Class::Warm, Duration::from_millis(2), 2.0);
    /// assert_eq!(budget.limit(), Duration::from_millis(12));
    /// ```
    #[must_use]
    pub fn new(class: Class, base: Duration, multiplier: f64) -> Budget {
        let multiplier = if multiplier.is_finite() && multiplier > 0.0 {
            multiplier.min(MAX_MULTIPLIER)
        } else {
            1.0
        };
        let unscaled = base.saturating_mul(class.factor()).max(FLOOR);
        Budget {
            class,
            base,
            multiplier,
            limit: scale(unscaled, multiplier),
        }
    }

    /// The class the budget was computed for.
    #[must_use]
    pub fn class(&self) -> Class {
        self.class
    }

    /// The base: the observed median the gate's author cited.
    #[must_use]
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The class factor (5 or 3).
    #[must_use]
    pub fn factor(&self) -> u32 {
        self.class.factor()
    }

    /// The multiplier that was applied.
    #[must_use]
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// The budget itself: the largest trimmed mean that passes.
    #[must_use]
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Whether `elapsed` fits: a value equal to the limit passes.
    #[must_use]
    pub fn allows(&self, elapsed: Duration) -> bool {
        elapsed <= self.limit
    }
}

/// `duration × factor` for a finite positive factor, saturating at
/// [`Duration::MAX`].
fn scale(duration: Duration, factor: f64) -> Duration {
    if factor == 1.0 {
        // Exact: no round trip through floating point.
        return duration;
    }
    Duration::try_from_secs_f64(duration.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn cold_budget_is_five_times_base() {
        let budget = Budget::new(Class::Cold, 8 * MS, 1.0);
        assert_eq!(budget.limit(), 40 * MS);
        assert_eq!(budget.factor(), 5);
    }

    #[test]
    fn warm_budget_is_three_times_base() {
        let budget = Budget::new(Class::Warm, Duration::from_micros(2100), 1.0);
        assert_eq!(budget.limit(), Duration::from_micros(6300));
        assert_eq!(budget.factor(), 3);
    }

    #[test]
    fn tiny_base_is_lifted_to_the_floor_for_both_classes() {
        for class in [Class::Cold, Class::Warm] {
            let budget = Budget::new(class, Duration::from_micros(10), 1.0);
            assert_eq!(budget.limit(), FLOOR, "{class}");
        }
        assert_eq!(Budget::new(Class::Warm, Duration::ZERO, 1.0).limit(), FLOOR);
    }

    #[test]
    fn base_times_factor_equal_to_the_floor_gives_exactly_the_floor() {
        // 200 µs × 5 = 1 ms: the tie resolves to the same value either way.
        let budget = Budget::new(Class::Cold, Duration::from_micros(200), 1.0);
        assert_eq!(budget.limit(), FLOOR);
        // Just above the tie, the formula takes over.
        let budget = Budget::new(Class::Cold, Duration::from_nanos(200_001), 1.0);
        assert_eq!(budget.limit(), Duration::from_nanos(1_000_005));
    }

    #[test]
    fn a_time_equal_to_the_limit_passes_and_one_nanosecond_more_fails() {
        let budget = Budget::new(Class::Warm, Duration::from_micros(100), 1.0);
        assert!(budget.allows(FLOOR));
        assert!(!budget.allows(FLOOR + Duration::from_nanos(1)));
    }

    #[test]
    fn multiplier_scales_after_the_floor() {
        assert_eq!(Budget::new(Class::Warm, 2 * MS, 2.0).limit(), 12 * MS);
        assert_eq!(Budget::new(Class::Cold, 8 * MS, 0.5).limit(), 20 * MS);
        // The floor is applied before the multiplier, so it scales too.
        assert_eq!(
            Budget::new(Class::Warm, Duration::from_micros(1), 2.0).limit(),
            2 * MS
        );
        assert_eq!(
            Budget::new(Class::Warm, Duration::from_micros(1), 0.001).limit(),
            Duration::from_micros(1)
        );
    }

    #[test]
    fn invalid_explicit_multiplier_means_one() {
        for bad in [0.0, -2.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let budget = Budget::new(Class::Warm, 2 * MS, bad);
            assert_eq!(budget.multiplier(), 1.0, "{bad}");
            assert_eq!(budget.limit(), 6 * MS, "{bad}");
        }
    }

    #[test]
    fn huge_base_or_multiplier_saturates_instead_of_panicking() {
        assert_eq!(
            Budget::new(Class::Cold, Duration::MAX, 1.0).limit(),
            Duration::MAX
        );
        assert_eq!(
            Budget::new(Class::Warm, Duration::MAX, f64::MAX).limit(),
            Duration::MAX
        );
        let half = Duration::MAX / 2;
        assert_eq!(Budget::new(Class::Warm, half, 1.0).limit(), Duration::MAX);
    }

    #[test]
    fn unset_multiplier_is_one_without_warning() {
        assert_eq!(parse_multiplier(None), (1.0, None));
    }

    #[test]
    fn valid_multiplier_is_honoured() {
        assert_eq!(parse_multiplier(Some("2.0")), (2.0, None));
        assert_eq!(parse_multiplier(Some("0.001")), (0.001, None));
        assert_eq!(parse_multiplier(Some(" 3 ")), (3.0, None));
        assert_eq!(parse_multiplier(Some("1e1")), (10.0, None));
    }

    #[test]
    fn every_invalid_multiplier_warns_naming_the_value_and_means_one() {
        let cases = [
            ("", "is not a number"),
            ("fast", "is not a number"),
            ("2,0", "is not a number"),
            ("0", "is zero"),
            ("-0.0", "is zero"),
            ("-1.5", "is negative"),
            ("NaN", "is NaN"),
            ("inf", "is infinite"),
            ("-infinity", "is infinite"),
        ];
        for (raw, reason) in cases {
            let (value, warning) = parse_multiplier(Some(raw));
            assert_eq!(value, 1.0, "{raw:?}");
            let warning = warning.unwrap_or_else(|| panic!("no warning for {raw:?}"));
            assert!(warning.contains(MULTIPLIER_ENV), "{warning}");
            assert!(warning.contains(&format!("{raw:?}")), "{warning}");
            assert!(warning.contains(reason), "{warning}");
            assert!(warning.contains("using 1.0"), "{warning}");
        }
    }

    /// Defect 6 of issue 23: `1e300` was accepted and switched every gate
    /// off. A multiplier above [`MAX_MULTIPLIER`] is capped, with a warning
    /// that names the value and the cap.
    #[test]
    fn a_huge_multiplier_is_capped_with_a_warning() {
        for raw in ["1e300", "11", "1000"] {
            let (value, warning) = parse_multiplier(Some(raw));
            assert_eq!(value, MAX_MULTIPLIER, "{raw}");
            let warning = warning.unwrap_or_else(|| panic!("no warning for {raw:?}"));
            assert!(warning.contains(&format!("{raw:?}")), "{warning}");
            assert!(warning.contains("capped at 10"), "{warning}");
        }
        assert_eq!(parse_multiplier(Some("10")), (MAX_MULTIPLIER, None));
        // An explicit multiplier in code is capped the same way.
        assert_eq!(Budget::new(Class::Warm, MS, 1e300).limit(), 30 * MS);
    }

    #[test]
    fn class_names_and_factors() {
        assert_eq!(Class::Cold.to_string(), "cold");
        assert_eq!(Class::Warm.to_string(), "warm");
        assert_eq!(Class::Cold.factor(), 5);
        assert_eq!(Class::Warm.factor(), 3);
    }
}
