//! The results: medians over rounds, ratios, verdicts; the markdown table
//! and the JSON.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::cases::{Case, Op};
use crate::store::Fsync;

/// A ratio within this factor of 1 either way is "on par".
const ON_PAR: f64 = 1.05;

/// The scaling goal of issue 14: within 1.5× of the small case.
const SCALING_GOAL: f64 = 1.5;

/// One round's measurement of one case on one implementation.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The n = 11 trimmed mean: the number the table is made of.
    pub trimmed_mean: Duration,
    /// The median of the 11 runs.
    pub median: Duration,
    /// The fastest run.
    pub min: Duration,
    /// The slowest run.
    pub max: Duration,
    /// The median on-CPU time of a run, where the platform tells.
    pub cpu_median: Option<Duration>,
}

impl From<&perfbudget::Measurement> for Sample {
    fn from(m: &perfbudget::Measurement) -> Self {
        Sample {
            trimmed_mean: m.trimmed_mean(),
            median: m.median(),
            min: m.min(),
            max: m.max(),
            cpu_median: m.thread_usage().map(perfbudget::ThreadUsage::cpu_median),
        }
    }
}

/// Everything measured for one case: per implementation (in
/// [`crate::store::contenders`] order), one [`Sample`] per round.
#[derive(Debug, Clone)]
pub struct Row {
    /// The case.
    pub case: Case,
    /// `samples[implementation][round]`.
    pub samples: Vec<Vec<Sample>>,
}

impl Row {
    /// The median over rounds of implementation `i`'s trimmed means.
    pub fn median(&self, i: usize) -> Duration {
        median(self.samples[i].iter().map(|s| s.trimmed_mean).collect())
    }

    /// ours / implementation `b`, of the medians.
    pub fn ratio(&self, b: usize) -> f64 {
        self.median(0).as_secs_f64() / self.median(b).as_secs_f64()
    }

    /// How many rounds ours was faster than implementation `b`, of how many.
    pub fn rounds_faster(&self, b: usize) -> (usize, usize) {
        let faster = self.samples[0]
            .iter()
            .zip(&self.samples[b])
            .filter(|(o, t)| o.trimmed_mean < t.trimmed_mean)
            .count();
        (faster, self.samples[0].len().min(self.samples[b].len()))
    }

    /// "1.6× slower (9/9 rounds)", "2.0× faster (8/9 rounds)" or
    /// "on par (ours faster in 4/9 rounds)".
    pub fn verdict(&self, b: usize) -> String {
        let ratio = self.ratio(b);
        let (faster, rounds) = self.rounds_faster(b);
        if !ratio.is_finite() {
            "n/a".into()
        } else if ratio >= ON_PAR {
            format!(
                "{} slower ({}/{rounds} rounds)",
                times(ratio),
                rounds - faster
            )
        } else if ratio <= 1.0 / ON_PAR {
            format!("{} faster ({faster}/{rounds} rounds)", times(1.0 / ratio))
        } else {
            format!("on par (ours faster in {faster}/{rounds} rounds)")
        }
    }
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    match values.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2,
    }
}

/// `1.62×` below 10, `12×` above.
fn times(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.2}×")
    } else {
        format!("{x:.0}×")
    }
}

/// `488 µs`, `12.3 ms`, `1.52 s`.
pub fn duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 10_000.0 {
        format!("{us:.0} µs")
    } else if us < 1e6 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// What the run was and where: printed above the table, kept in the JSON.
#[derive(Debug, Clone)]
pub struct Context {
    /// UTC date and time the run started, `2026-11-30 14:02 UTC`.
    pub date: String,
    /// `git rev-parse HEAD` of the repository, `-dirty` when it has changes.
    pub commit: String,
    /// Where the stores lived.
    pub scratch: String,
    /// The scratch directory's file system, when `/proc/self/mountinfo` tells.
    pub fs_type: Option<String>,
    /// Interleaved rounds.
    pub rounds: u32,
    /// CPUs available to the process.
    pub cpus: usize,
    /// Column names, ours first.
    pub names: Vec<&'static str>,
    /// One line per implementation on its configuration.
    pub descriptions: Vec<String>,
}

/// The markdown report: context, the comparison table, the scaling table.
pub fn markdown(ctx: &Context, rows: &[Row]) -> String {
    let mut out = String::new();
    let fs = ctx.fs_type.as_deref().unwrap_or("unknown file system");
    let _ = writeln!(
        out,
        "{}, commit {}, {} CPUs, scratch {} ({fs}); {} interleaved rounds (order \
         alternating), each a per-implementation n = 11 trimmed mean; the table shows the \
         median over rounds.\n",
        ctx.date, ctx.commit, ctx.cpus, ctx.scratch, ctx.rounds
    );
    for d in &ctx.descriptions {
        let _ = writeln!(out, "- {d}");
    }
    out.push('\n');

    // Baselines first, then ours, then a ratio and verdict per baseline.
    let baselines: Vec<usize> = (1..ctx.names.len()).collect();
    let mut header = String::from("| operation |");
    let mut rule = String::from("|---|");
    for &b in &baselines {
        let _ = write!(header, " {} |", ctx.names[b]);
        rule.push_str("---:|");
    }
    let _ = write!(header, " {} |", ctx.names[0]);
    rule.push_str("---:|");
    for &b in &baselines {
        let _ = write!(header, " ours / {} | verdict |", short(ctx.names[b]));
        rule.push_str("---:|---|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for row in rows {
        let mut line = format!("| {} |", row.case.label());
        for &b in &baselines {
            let _ = write!(line, " {} |", duration(row.median(b)));
        }
        let _ = write!(line, " {} |", duration(row.median(0)));
        for &b in &baselines {
            let _ = write!(line, " {:.2} | {} |", row.ratio(b), row.verdict(b));
        }
        let _ = writeln!(out, "{line}");
    }

    let scaling = scaling_rows(rows);
    if !scaling.is_empty() {
        let _ = write!(
            out,
            "\nScaling (issue 14's goal: at most {SCALING_GOAL}×), ratio of the medians:\n\n\
             | ratio |"
        );
        for name in &ctx.names {
            let _ = write!(out, " {name} |");
        }
        let _ = write!(out, "\n|---|{}\n", "---:|".repeat(ctx.names.len()));
        for s in &scaling {
            let _ = write!(out, "| {} |", s.label);
            for i in 0..ctx.names.len() {
                let r = s.ratio(rows, i);
                let mark = if r <= SCALING_GOAL { "" } else { " (over)" };
                let _ = write!(out, " {r:.2}×{mark} |");
            }
            out.push('\n');
        }
    }
    out
}

/// `SQLite outbox` → `SQLite`.
fn short(name: &str) -> &str {
    name.split_whitespace().next().unwrap_or(name)
}

/// A scaling ratio: one case's median over another's.
struct Scaling {
    label: String,
    big: usize,
    small: usize,
}

impl Scaling {
    fn ratio(&self, rows: &[Row], i: usize) -> f64 {
        rows[self.big].median(i).as_secs_f64() / rows[self.small].median(i).as_secs_f64()
    }
}

/// The scaling goals whose two cases both ran: commit into 1000 pending
/// over into an empty inbox; drain of 25 with history over without.
fn scaling_rows(rows: &[Row]) -> Vec<Scaling> {
    let find = |op: Op, fsync: Fsync| rows.iter().position(|r| r.case == Case { op, fsync });
    let mut out = Vec::new();
    for fsync in [Fsync::Stubbed, Fsync::Real] {
        let mode = if fsync == Fsync::Stubbed {
            "fsync stubbed"
        } else {
            "real fsync"
        };
        if let (Some(big), Some(small)) = (
            find(Op::Commit { k: 1000 }, fsync),
            find(Op::Commit { k: 0 }, fsync),
        ) {
            out.push(Scaling {
                label: format!("commit into 1 000 pending ÷ into an empty inbox, {mode}"),
                big,
                small,
            });
        }
        for h in [10_000, 100_000] {
            let drain = |history| Op::Drain {
                n: 25,
                history: Some(history),
            };
            if let (Some(big), Some(small)) = (find(drain(h), fsync), find(drain(0), fsync)) {
                out.push(Scaling {
                    label: format!(
                        "drain of 25, history {} ÷ history 0, {mode}",
                        crate::cases::thousands(h)
                    ),
                    big,
                    small,
                });
            }
        }
    }
    out
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The JSON report: the context and, per case, per implementation, the
/// median and every round's figures (microseconds).
pub fn json(ctx: &Context, rows: &[Row], setup: &[(String, &'static str, Duration)]) -> Value {
    let cases: Vec<Value> = rows
        .iter()
        .map(|row| {
            let implementations: Vec<Value> = ctx
                .names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let rounds: Vec<Value> = row.samples[i]
                        .iter()
                        .map(|s| {
                            json!({
                                "trimmed_mean_us": micros(s.trimmed_mean),
                                "median_us": micros(s.median),
                                "min_us": micros(s.min),
                                "max_us": micros(s.max),
                                "cpu_median_us": s.cpu_median.map(micros),
                            })
                        })
                        .collect();
                    json!({
                        "name": name,
                        "median_of_trimmed_means_us": micros(row.median(i)),
                        "rounds": rounds,
                    })
                })
                .collect();
            let versus: Vec<Value> = (1..ctx.names.len())
                .map(|b| {
                    let (faster, rounds) = row.rounds_faster(b);
                    json!({
                        "baseline": ctx.names[b],
                        "ratio_ours_over_baseline": row.ratio(b),
                        "rounds_ours_faster": faster,
                        "rounds": rounds,
                        "verdict": row.verdict(b),
                    })
                })
                .collect();
            json!({
                "id": row.case.id(),
                "label": row.case.label(),
                "implementations": implementations,
                "versus": versus,
            })
        })
        .collect();
    let setup: Vec<Value> = setup
        .iter()
        .map(|(case, name, took)| {
            json!({ "case": case, "implementation": name, "seconds": took.as_secs_f64() })
        })
        .collect();
    json!({
        "schema": "outbox-compare/1",
        "date": ctx.date,
        "commit": ctx.commit,
        "cpus": ctx.cpus,
        "scratch": ctx.scratch,
        "fs_type": ctx.fs_type,
        "rounds": ctx.rounds,
        "implementations": ctx.descriptions,
        "cases": cases,
        "untimed_setup": setup,
    })
}

/// `2026-11-30 14:02 UTC` for `t`.
pub fn utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (y, m, d) = civil_from_days(days);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(us: u64) -> Sample {
        let d = Duration::from_micros(us);
        Sample {
            trimmed_mean: d,
            median: d,
            min: d,
            max: d,
            cpu_median: None,
        }
    }

    fn row(ours: &[u64], theirs: &[u64]) -> Row {
        Row {
            case: crate::cases::all()[0],
            samples: vec![
                ours.iter().copied().map(sample).collect(),
                theirs.iter().copied().map(sample).collect(),
            ],
        }
    }

    #[test]
    fn medians_ratios_and_verdicts() {
        let r = row(&[800, 810, 790], &[500, 480, 490]);
        assert_eq!(r.median(0), Duration::from_micros(800));
        assert!((r.ratio(1) - 800.0 / 490.0).abs() < 1e-9);
        assert_eq!(r.verdict(1), "1.63× slower (3/3 rounds)");
        let r = row(&[100, 300], &[200, 200]);
        assert_eq!(r.median(0), Duration::from_micros(200));
        assert_eq!(r.verdict(1), "on par (ours faster in 1/2 rounds)");
        let r = row(&[100, 100, 300], &[400, 400, 200]);
        assert_eq!(r.verdict(1), "4.00× faster (2/3 rounds)");
    }

    #[test]
    fn durations_and_dates_print() {
        assert_eq!(duration(Duration::from_micros(488)), "488 µs");
        assert_eq!(duration(Duration::from_micros(12_345)), "12.3 ms");
        assert_eq!(duration(Duration::from_millis(1520)), "1.52 s");
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56
        assert_eq!(utc(t), "2024-02-29 12:34 UTC");
    }
}
