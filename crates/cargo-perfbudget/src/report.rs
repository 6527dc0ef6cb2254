//! The summary table and `report.json`.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde_json::{Value, json};

use crate::model::{Count, Detail, GateRecord, MULTIPLIER_ENV, Outcome};

/// Version of the report layout.
///
/// 2: `error` (why the run failed outside its gates) and `record_schema`.
const REPORT_SCHEMA: u32 = 2;

/// One row of the summary.
pub(crate) struct Row {
    pub(crate) test: String,
    pub(crate) class: String,
    pub(crate) mean: String,
    pub(crate) budget: String,
    pub(crate) headroom: String,
    pub(crate) result: String,
}

pub(crate) fn ms(nanos: u64) -> String {
    format!("{:.3} ms", nanos as f64 / 1e6)
}

fn differing(counts: &[Count]) -> impl Iterator<Item = &Count> {
    counts.iter().filter(|c| c.expected != c.observed)
}

/// The table's cells for one record: class, measured, budget, headroom.
fn cells(record: &GateRecord) -> (String, String, String) {
    match &record.detail {
        Detail::Walltime(wall) => {
            let headroom = if wall.budget_ns > 0 {
                format!(
                    "{:.1}%",
                    (1.0 - wall.trimmed_mean_ns as f64 / wall.budget_ns as f64) * 100.0
                )
            } else {
                "n/a".into()
            };
            (ms(wall.trimmed_mean_ns), ms(wall.budget_ns), headroom)
        }
        Detail::Counts(counts) => {
            let differ = differing(counts).count();
            let headroom = if counts.is_empty() {
                "none".into()
            } else if differ == 0 {
                "exact".into()
            } else {
                format!("{differ} differ")
            };
            ("-".into(), format!("{} counts", counts.len()), headroom)
        }
        Detail::Instructions(i) => {
            let change = if i.base > 0 {
                format!("{:+.2}%", (i.observed as f64 / i.base as f64 - 1.0) * 100.0)
            } else {
                "n/a".into()
            };
            (
                format!("{} instr", i.observed),
                format!("{}..={}", i.low, i.high),
                change,
            )
        }
        Detail::Skipped(_) => ("-".into(), "-".into(), "skipped".into()),
    }
}

pub(crate) fn rows(outcomes: &[Outcome]) -> Vec<Row> {
    let mut rows = Vec::new();
    for outcome in outcomes {
        let id = outcome.test.id();
        if outcome.records.is_empty() {
            rows.push(Row {
                test: id.clone(),
                class: "-".into(),
                mean: "-".into(),
                budget: "-".into(),
                headroom: "-".into(),
                result: outcome.status.label().into(),
            });
            continue;
        }
        let last_segment = outcome.test.name.rsplit("::").next().unwrap_or_default();
        for record in &outcome.records {
            let test = if record.gate == last_segment {
                id.clone()
            } else {
                format!("{id} [{}]", record.gate)
            };
            let result = match (&record.detail, record.passed) {
                (Detail::Skipped(_), true) => "SKIPPED",
                (_, true) => "ok",
                (_, false) => "FAILED",
            };
            let (mean, budget, headroom) = cells(record);
            rows.push(Row {
                test,
                class: record.class.clone(),
                mean,
                budget,
                headroom,
                result: result.to_owned(),
            });
        }
    }
    rows
}

/// The summary table, one row per gate record (or per test without one).
pub fn table(outcomes: &[Outcome]) -> String {
    let header = Row {
        test: "test".into(),
        class: "class".into(),
        mean: "measured".into(),
        budget: "budget".into(),
        headroom: "headroom".into(),
        result: "result".into(),
    };
    let rows = rows(outcomes);
    let all: Vec<&Row> = std::iter::once(&header).chain(&rows).collect();
    let width =
        |f: fn(&Row) -> &String| all.iter().map(|r| f(r).chars().count()).max().unwrap_or(0);
    let w = [
        width(|r| &r.test),
        width(|r| &r.class),
        width(|r| &r.mean),
        width(|r| &r.budget),
        width(|r| &r.headroom),
    ];
    let mut out = String::new();
    for row in all {
        // `write!` to a String cannot fail.
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {:>w4$}  {}",
            row.test,
            row.class,
            row.mean,
            row.budget,
            row.headroom,
            row.result,
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4],
        );
    }
    out
}

/// Distinct multiplier warnings the gates reported.
pub fn multiplier_warnings(outcomes: &[Outcome]) -> Vec<String> {
    let mut warnings: Vec<String> = outcomes
        .iter()
        .flat_map(|o| &o.records)
        .filter_map(|r| match &r.detail {
            Detail::Walltime(wall) => wall.multiplier_warning.clone(),
            _ => None,
        })
        .collect();
    warnings.sort();
    warnings.dedup();
    warnings
}

/// One line per skipped gate, saying why: a skip is never silent.
pub fn skip_lines(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .flat_map(|o| o.records.iter().map(move |r| (o, r)))
        .filter_map(|(o, r)| match &r.detail {
            Detail::Skipped(why) => Some(format!("SKIPPED {} [{}]: {why}", o.test.id(), r.gate)),
            _ => None,
        })
        .collect()
}

/// One line naming a failed test and why.
pub fn failure_line(outcome: &Outcome) -> String {
    let id = outcome.test.id();
    let failed: Vec<String> = outcome
        .records
        .iter()
        .filter(|r| !r.passed || matches!(r.detail, Detail::Skipped(_)))
        .map(|r| match &r.detail {
            Detail::Walltime(wall) => format!(
                "gate `{}`: trimmed mean {} > budget {}",
                r.gate,
                ms(wall.trimmed_mean_ns),
                ms(wall.budget_ns)
            ),
            Detail::Counts(counts) if counts.is_empty() => {
                format!("{} gate `{}`: no expectation", r.class, r.gate)
            }
            Detail::Counts(counts) => {
                let differ: Vec<String> = differing(counts)
                    .map(|c| format!("{} expected {} observed {}", c.what, c.expected, c.observed))
                    .collect();
                format!("{} gate `{}`: {}", r.class, r.gate, differ.join("; "))
            }
            Detail::Instructions(i) => format!(
                "instruction gate `{}`: {} instructions outside {}..={} (base {})",
                r.gate, i.observed, i.low, i.high, i.base
            ),
            Detail::Skipped(why) => format!("gate `{}` skipped: {why}", r.gate),
        })
        .collect();
    if failed.is_empty() {
        format!("{id}: {} ({})", outcome.status.label(), outcome.exit)
    } else {
        format!("{id}: {}", failed.join(", "))
    }
}

/// Writes every report of a run into `dir` (creating it): `report.json`,
/// `junit.xml`, `bmf.json` and `summary.md`, and appends the summary to
/// `$GITHUB_STEP_SUMMARY` when that is set. `error` says why a run failed
/// before or beside its gates (a build failure, a filter matching
/// nothing, a stale budgets file); each report states it.
pub fn write_all(
    dir: &Path,
    outcomes: &[Outcome],
    passed: bool,
    error: Option<&str>,
) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write_json(&dir.join("report.json"), outcomes, passed, error)?;
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write("junit.xml", crate::ci::junit(outcomes, error))?;
    write("bmf.json", crate::ci::bmf(outcomes))?;
    let summary = crate::ci::summary(outcomes, passed, error);
    write("summary.md", summary.clone())?;
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        use std::io::Write as _;
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(summary.as_bytes()))
            .map_err(|e| {
                format!(
                    "cannot append to $GITHUB_STEP_SUMMARY ({}): {e}",
                    Path::new(&path).display()
                )
            })?;
    }
    Ok(())
}

/// Writes the machine-readable report (creating its directory).
pub fn write_json(
    path: &Path,
    outcomes: &[Outcome],
    passed: bool,
    error: Option<&str>,
) -> Result<(), String> {
    let tests: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            json!({
                "id": o.test.id(),
                "package": o.test.binary.package,
                "target": o.test.binary.target,
                "kind": o.test.binary.kind,
                "name": o.test.name,
                "status": o.status.label(),
                "exit": o.exit,
                "elapsed_ms": o.elapsed.as_secs_f64() * 1e3,
                "records": o.records.iter().map(|r| &r.raw).collect::<Vec<&Value>>(),
            })
        })
        .collect();
    let report = json!({
        "schema": REPORT_SCHEMA,
        "passed": passed,
        "error": error,
        "record_schema": perfbudget::RECORD_SCHEMA,
        "multiplier_env": std::env::var(MULTIPLIER_ENV).ok(),
        "tests": tests,
    });
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&report)
        .map_err(|e| format!("cannot serialise the report: {e}"))?;
    fs::write(path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::{PerfTest, TestBinary};
    use crate::model::{Status, parse_records};
    use std::time::Duration;

    fn outcome(status: Status, records: Vec<Value>) -> Outcome {
        Outcome {
            test: PerfTest {
                binary: TestBinary {
                    package: "p".into(),
                    target: "p".into(),
                    kind: "lib".into(),
                    executable: "/x".into(),
                    manifest_dir: "/".into(),
                },
                name: "tests::perf_a".into(),
            },
            status,
            exit: "exit status: 101".into(),
            elapsed: Duration::from_millis(5),
            records: records.into_iter().map(crate::model::tests::rec).collect(),
        }
    }

    fn walltime(passed: bool, mean: u64, budget: u64) -> Value {
        json!({"gate": "perf_a", "class": "warm", "passed": passed,
               "walltime": {"trimmed_mean_ns": mean, "budget_ns": budget, "base_ns": 1,
                            "median_ns": mean, "multiplier": 1.0}})
    }

    #[test]
    fn table_shows_walltime_and_count_gates() {
        let count = json!({"gate": "perf_counts", "class": "count", "passed": false,
            "counts": [{"what": "file fsyncs", "expected": 2, "observed": 3},
                       {"what": "dir fsyncs", "expected": 2, "observed": 2}]});
        let text = table(&[
            outcome(Status::Passed, vec![walltime(true, 2_000_000, 8_000_000)]),
            outcome(Status::GateFailed, vec![count]),
            outcome(Status::NoRecord, vec![]),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("test"));
        assert!(lines[1].contains("p::tests::perf_a"), "{text}");
        assert!(lines[1].contains("2.000 ms") && lines[1].contains("8.000 ms"));
        assert!(
            lines[1].contains("75.0%") && lines[1].ends_with("ok"),
            "{text}"
        );
        assert!(lines[2].contains("[perf_counts]") && lines[2].contains("count"));
        assert!(lines[2].contains("1 differ") && lines[2].ends_with("FAILED"));
        assert!(lines[3].ends_with("NO RECORD"), "{text}");
    }

    #[test]
    fn failure_line_names_the_gate_and_numbers() {
        let line = failure_line(&outcome(
            Status::GateFailed,
            vec![walltime(false, 9_000_000, 6_000_000)],
        ));
        assert_eq!(
            line,
            "p::tests::perf_a: gate `perf_a`: trimmed mean 9.000 ms > budget 6.000 ms"
        );
        let line = failure_line(&outcome(Status::Crashed, vec![]));
        assert_eq!(line, "p::tests::perf_a: CRASHED (exit status: 101)");
    }

    #[test]
    fn a_skipped_gate_is_shown_and_explained() {
        let skip = json!({"gate": "perf_a", "class": "instructions", "passed": true,
                          "skipped": "valgrind was not found on PATH"});
        let outcomes = [outcome(Status::Skipped, vec![skip])];
        let text = table(&outcomes);
        assert!(
            text.lines().nth(1).is_some_and(|l| l.ends_with("SKIPPED")),
            "{text}"
        );
        assert_eq!(
            skip_lines(&outcomes),
            ["SKIPPED p::tests::perf_a [perf_a]: valgrind was not found on PATH"]
        );
    }

    /// Issue 9 item 5: real records from `perfbudget`, one of each kind,
    /// through the same parser and table the runner uses; every column of
    /// every row must be filled with a value, never `?` or a placeholder.
    /// Renaming a field of `perfbudget::Record` fails here.
    #[test]
    fn real_perfbudget_records_fill_every_column() {
        use perfbudget::{Class, CountGate, Gate, Measurement};
        let ms = Duration::from_millis(1);
        let wall = Gate::new("perf_a", Class::Warm, 2 * ms)
            .with_multiplier(1.0)
            .evaluate(&Measurement::from_samples([3 * ms; 11]))
            .record()
            .to_json_line();
        let count = CountGate::new("perf_counts")
            .expect("file fsyncs", 2, 2)
            .expect("dir fsyncs", 2, 3)
            .evaluate()
            .record()
            .to_json_line();
        let instructions = perfbudget::InstructionGate::new("perf_instr", 1_000)
            .evaluate(1_010)
            .record()
            .to_json_line();
        let skipped = perfbudget::InstructionGate::new("perf_skip", 1_000)
            .skipped("valgrind not found")
            .record()
            .to_json_line();
        let text = format!("{wall}\n{count}\n{instructions}\n{skipped}\n");
        let (records, malformed) = parse_records(&text);
        assert!(malformed.is_empty(), "{malformed:?}");
        assert_eq!(records.len(), 4);
        let Detail::Walltime(w) = &records[0].detail else {
            panic!("not a walltime record: {:?}", records[0]);
        };
        assert_eq!(
            (w.trimmed_mean_ns, w.budget_ns, w.base_ns, w.median_ns),
            (3_000_000, 6_000_000, 2_000_000, 3_000_000)
        );
        assert_eq!(w.multiplier, 1.0);
        let table = table(&[outcome(
            Status::GateFailed,
            records.iter().map(|r| r.raw.clone()).collect(),
        )]);
        let rows: Vec<Vec<&str>> = table
            .lines()
            .skip(1)
            .map(|l| {
                l.split("  ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .collect();
        assert_eq!(
            rows,
            [
                vec![
                    "p::tests::perf_a",
                    "warm",
                    "3.000 ms",
                    "6.000 ms",
                    "50.0%",
                    "ok"
                ],
                vec![
                    "p::tests::perf_a [perf_counts]",
                    "count",
                    "-",
                    "2 counts",
                    "1 differ",
                    "FAILED"
                ],
                vec![
                    "p::tests::perf_a [perf_instr]",
                    "instructions",
                    "1010 instr",
                    "980..=1020",
                    "+1.00%",
                    "ok"
                ],
                vec![
                    "p::tests::perf_a [perf_skip]",
                    "instructions",
                    "-",
                    "-",
                    "skipped",
                    "SKIPPED"
                ],
            ],
            "{table}"
        );
        assert!(!table.contains('?'), "{table}");
        let line = failure_line(&outcome(
            Status::GateFailed,
            records.iter().map(|r| r.raw.clone()).collect(),
        ));
        assert_eq!(
            line,
            "p::tests::perf_a: count gate `perf_counts`: dir fsyncs expected 2 observed 3, \
             gate `perf_skip` skipped: valgrind not found"
        );
    }

    #[test]
    fn a_record_missing_a_key_is_malformed_and_says_which() {
        let mut value = crate::model::tests::rec(walltime(true, 1, 2)).raw;
        value["walltime"]
            .as_object_mut()
            .expect("object")
            .remove("budget_ns");
        let (records, malformed) = parse_records(&value.to_string());
        assert!(records.is_empty());
        assert_eq!(malformed.len(), 1);
        assert!(malformed[0].contains("`budget_ns`"), "{malformed:?}");
        let (_, malformed) = parse_records("noise\n\n{}\n");
        assert_eq!(malformed.len(), 2, "{malformed:?}");
        assert!(
            malformed[0].starts_with("line 1: not JSON"),
            "{malformed:?}"
        );
        assert!(
            malformed[1].starts_with("line 3: `schema` is missing"),
            "{malformed:?}"
        );
    }

    #[test]
    fn report_json_is_written_with_its_directory() {
        let dir =
            std::env::temp_dir().join(format!("perfbudget-report-test-{}", std::process::id()));
        let perf = dir.join("perf");
        write_all(
            &perf,
            &[outcome(Status::Passed, vec![walltime(true, 1, 2)])],
            true,
            None,
        )
        .expect("written");
        let read = |name: &str| fs::read_to_string(perf.join(name)).expect(name);
        let value: Value = serde_json::from_str(&read("report.json")).expect("json");
        assert_eq!(value["passed"], true);
        assert_eq!(value["error"], Value::Null);
        assert_eq!(value["tests"][0]["status"], "ok");
        assert_eq!(value["tests"][0]["records"][0]["gate"], "perf_a");
        assert!(read("junit.xml").contains("<testsuites"));
        assert!(read("bmf.json").contains("\"perf_a\""));
        assert!(read("summary.md").starts_with("## perfbudget: passed"));
        // A later run that fails before any gate replaces every report.
        write_all(&perf, &[], false, Some("building the tests failed")).expect("written");
        let value: Value = serde_json::from_str(&read("report.json")).expect("json");
        assert_eq!(value["passed"], false);
        assert_eq!(value["error"], "building the tests failed");
        assert_eq!(value["tests"], json!([]));
        assert!(read("junit.xml").contains("<error message=\"building the tests failed\">"));
        assert_eq!(read("bmf.json"), "{}\n");
        fs::remove_dir_all(dir).expect("cleanup");
    }
}
