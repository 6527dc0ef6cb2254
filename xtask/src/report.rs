//! The summary table and `report.json`.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde_json::{Value, json};

use crate::test_perf::{MULTIPLIER_ENV, Outcome};

/// Version of the report layout.
const REPORT_SCHEMA: u32 = 1;

/// One row of the summary.
struct Row {
    test: String,
    class: String,
    mean: String,
    budget: String,
    headroom: String,
    result: String,
}

fn ms(nanos: &Value) -> String {
    nanos
        .as_u64()
        .map_or_else(|| "?".to_owned(), |n| format!("{:.3} ms", n as f64 / 1e6))
}

fn rows(outcomes: &[Outcome]) -> Vec<Row> {
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
            let gate = record["gate"].as_str().unwrap_or("?");
            let test = if gate == last_segment {
                id.clone()
            } else {
                format!("{id} [{gate}]")
            };
            let passed = record["passed"] == true;
            let result = if passed { "ok" } else { "FAILED" }.to_owned();
            let class = record["class"].as_str().unwrap_or("?").to_owned();
            let row = if let Some(wall) = record.get("walltime") {
                let headroom = match (wall["trimmed_mean_ns"].as_u64(), wall["budget_ns"].as_u64())
                {
                    (Some(mean), Some(budget)) if budget > 0 => {
                        format!("{:.1}%", (1.0 - mean as f64 / budget as f64) * 100.0)
                    }
                    _ => "?".into(),
                };
                Row {
                    test,
                    class,
                    mean: ms(&wall["trimmed_mean_ns"]),
                    budget: ms(&wall["budget_ns"]),
                    headroom,
                    result,
                }
            } else {
                let counts = record["counts"].as_array().map_or(&[][..], Vec::as_slice);
                let differ = counts
                    .iter()
                    .filter(|c| c["expected"] != c["observed"])
                    .count();
                Row {
                    test,
                    class,
                    mean: "-".into(),
                    budget: format!("{} counts", counts.len()),
                    headroom: if differ == 0 {
                        "exact".into()
                    } else {
                        format!("{differ} differ")
                    },
                    result,
                }
            };
            rows.push(row);
        }
    }
    rows
}

/// The summary table, one row per gate record (or per test without one).
pub fn table(outcomes: &[Outcome]) -> String {
    let header = Row {
        test: "test".into(),
        class: "class".into(),
        mean: "trimmed mean".into(),
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
        .filter_map(|r| r["walltime"]["multiplier_warning"].as_str())
        .map(str::to_owned)
        .collect();
    warnings.sort();
    warnings.dedup();
    warnings
}

/// One line naming a failed test and why.
pub fn failure_line(outcome: &Outcome) -> String {
    let id = outcome.test.id();
    let failed: Vec<String> = outcome
        .records
        .iter()
        .filter(|r| r["passed"] != true)
        .map(|r| {
            let gate = r["gate"].as_str().unwrap_or("?");
            if let Some(wall) = r.get("walltime") {
                format!(
                    "gate `{gate}`: trimmed mean {} > budget {}",
                    ms(&wall["trimmed_mean_ns"]),
                    ms(&wall["budget_ns"])
                )
            } else {
                let differ: Vec<String> = r["counts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| c["expected"] != c["observed"])
                    .map(|c| {
                        format!(
                            "{} expected {} observed {}",
                            c["what"].as_str().unwrap_or("?"),
                            c["expected"],
                            c["observed"]
                        )
                    })
                    .collect();
                format!("count gate `{gate}`: {}", differ.join("; "))
            }
        })
        .collect();
    if failed.is_empty() {
        format!("{id}: {} ({})", outcome.status.label(), outcome.exit)
    } else {
        format!("{id}: {}", failed.join(", "))
    }
}

/// Writes the machine-readable report (creating its directory).
pub fn write_json(path: &Path, outcomes: &[Outcome], passed: bool) -> Result<(), String> {
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
                "records": o.records,
            })
        })
        .collect();
    let report = json!({
        "schema": REPORT_SCHEMA,
        "passed": passed,
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
    use crate::test_perf::Status;
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
            records,
        }
    }

    fn walltime(passed: bool, mean: u64, budget: u64) -> Value {
        json!({"gate": "perf_a", "class": "warm", "passed": passed,
               "walltime": {"trimmed_mean_ns": mean, "budget_ns": budget}})
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
    fn report_json_is_written_with_its_directory() {
        let dir = std::env::temp_dir().join(format!("xtask-report-test-{}", std::process::id()));
        let path = dir.join("perf").join("report.json");
        write_json(
            &path,
            &[outcome(Status::Passed, vec![walltime(true, 1, 2)])],
            true,
        )
        .expect("written");
        let value: Value =
            serde_json::from_str(&fs::read_to_string(&path).expect("read")).expect("json");
        assert_eq!(value["passed"], true);
        assert_eq!(value["tests"][0]["status"], "ok");
        assert_eq!(value["tests"][0]["records"][0]["gate"], "perf_a");
        fs::remove_dir_all(dir).expect("cleanup");
    }
}
