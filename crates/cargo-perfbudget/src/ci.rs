//! Reports CI systems read: JUnit XML (test result viewers of GitHub,
//! GitLab, Jenkins), Bencher Metric Format JSON (`bencher run --adapter
//! json`), and a Markdown summary (GitHub's `$GITHUB_STEP_SUMMARY`).

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::model::{Detail, Outcome, Status};
use crate::report::{failure_line, rows};

/// `text` escaped for an XML attribute or element.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 allows no other control characters.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The run as JUnit XML: one `<testcase>` per perf test (`classname` the
/// package and target, `name` the test's path), `<failure>` for a failed
/// one, `<skipped>` for a skip, and an `<error>` test case for a run that
/// failed outside its tests (`error`).
pub fn junit(outcomes: &[Outcome], error: Option<&str>) -> String {
    let failures = outcomes.iter().filter(|o| o.status.is_failure()).count();
    let skipped = outcomes
        .iter()
        .filter(|o| o.status == Status::Skipped)
        .count();
    let errors = usize::from(error.is_some());
    let tests = outcomes.len() + errors;
    let time: f64 = outcomes.iter().map(|o| o.elapsed.as_secs_f64()).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"perfbudget\" tests=\"{tests}\" failures=\"{failures}\" \
         errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\">"
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"perfbudget\" tests=\"{tests}\" failures=\"{failures}\" \
         errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\">"
    );
    if let Some(error) = error {
        let _ = writeln!(
            out,
            "    <testcase classname=\"perfbudget\" name=\"run\" time=\"0\">\n      <error \
             message=\"{}\">{}</error>\n    </testcase>",
            xml_escape(error.lines().next().unwrap_or(error)),
            xml_escape(error)
        );
    }
    for o in outcomes {
        let b = &o.test.binary;
        let _ = write!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
            xml_escape(&format!("{}/{}", b.package, b.target)),
            xml_escape(&o.test.name),
            o.elapsed.as_secs_f64()
        );
        let line = failure_line(o);
        if o.status.is_failure() {
            let _ = write!(
                out,
                "\n      <failure message=\"{}\" type=\"{}\">{}</failure>",
                xml_escape(&line),
                xml_escape(o.status.label()),
                xml_escape(&format!("{line}\nexit: {}", o.exit))
            );
        } else if o.status == Status::Skipped {
            let why: Vec<&str> = o
                .records
                .iter()
                .filter_map(|r| match &r.detail {
                    Detail::Skipped(why) => Some(why.as_str()),
                    _ => None,
                })
                .collect();
            let _ = write!(
                out,
                "\n      <skipped message=\"{}\"/>",
                xml_escape(&why.join("; "))
            );
        }
        let gates: Vec<String> = o
            .records
            .iter()
            .map(|r| {
                format!(
                    "{} ({}): {}",
                    r.gate,
                    r.class,
                    if r.passed { "ok" } else { "FAILED" }
                )
            })
            .collect();
        if !gates.is_empty() {
            let _ = write!(
                out,
                "\n      <system-out>{}</system-out>\n    ",
                xml_escape(&gates.join("\n"))
            );
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// The run in Bencher Metric Format: per gate, a `latency` measure in
/// nanoseconds (trimmed mean, upper value the budget), an `instructions`
/// measure (bounds the allowed range), or one measure per count (bounds
/// the expectation). Skipped gates measured nothing and are left out.
pub fn bmf(outcomes: &[Outcome]) -> String {
    let mut all = Map::new();
    for record in outcomes.iter().flat_map(|o| &o.records) {
        let mut measures = Map::new();
        match &record.detail {
            Detail::Walltime(w) => {
                measures.insert(
                    "latency".into(),
                    json!({"value": w.trimmed_mean_ns as f64, "upper_value": w.budget_ns as f64}),
                );
            }
            Detail::Instructions(i) => {
                measures.insert(
                    "instructions".into(),
                    json!({"value": i.observed as f64, "lower_value": i.low as f64,
                           "upper_value": i.high as f64}),
                );
            }
            Detail::Counts(counts) => {
                for c in counts {
                    measures.insert(
                        c.what.clone(),
                        json!({"value": c.observed as f64, "lower_value": c.expected as f64,
                               "upper_value": c.expected as f64}),
                    );
                }
            }
            Detail::Skipped(_) => continue,
        }
        all.insert(record.gate.clone(), Value::Object(measures));
    }
    serde_json::to_string_pretty(&Value::Object(all)).unwrap_or_default() + "\n"
}

/// `|` and newlines would break a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The run as Markdown: a verdict line, the table, failures and skips.
pub fn summary(outcomes: &[Outcome], passed: bool, error: Option<&str>) -> String {
    let mut out = format!(
        "## perfbudget: {}\n\n",
        if passed { "passed" } else { "FAILED" }
    );
    if let Some(error) = error {
        let _ = writeln!(out, "**The run failed:** {}\n", cell(error));
    }
    if !outcomes.is_empty() {
        out.push_str("| test | class | measured | budget | headroom | result |\n");
        out.push_str("|---|---|---:|---:|---:|---|\n");
        for r in rows(outcomes) {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} |",
                cell(&r.test),
                r.class,
                r.mean,
                r.budget,
                r.headroom,
                r.result
            );
        }
        out.push('\n');
    }
    for o in outcomes.iter().filter(|o| o.status.is_failure()) {
        let _ = writeln!(out, "- **{}**", cell(&failure_line(o)));
    }
    for line in crate::report::skip_lines(outcomes) {
        let _ = writeln!(out, "- {}", cell(&line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::{PerfTest, TestBinary};
    use crate::model::tests::rec;
    use std::time::Duration;

    fn outcome(name: &str, status: Status, records: Vec<Value>) -> Outcome {
        Outcome {
            test: PerfTest {
                binary: TestBinary {
                    package: "p".into(),
                    target: "it".into(),
                    kind: "test".into(),
                    executable: "/x".into(),
                    manifest_dir: "/".into(),
                },
                name: name.into(),
            },
            status,
            exit: "exit status: 101".into(),
            elapsed: Duration::from_millis(1500),
            records: records.into_iter().map(rec).collect(),
        }
    }

    fn sample() -> Vec<Outcome> {
        let wall = json!({"gate": "perf_a", "class": "warm", "passed": false,
            "walltime": {"trimmed_mean_ns": 9_000_000u64, "budget_ns": 6_000_000u64,
                         "base_ns": 2_000_000u64, "median_ns": 9_000_000u64, "multiplier": 1.0}});
        let instr = json!({"gate": "perf_i", "class": "instructions", "passed": true,
            "instructions": {"observed": 1010, "base": 1000, "tolerance": 0.02,
                             "low": 980, "high": 1020}});
        let skip = json!({"gate": "perf_s", "class": "instructions", "passed": true,
                          "skipped": "valgrind <missing> & \"gone\""});
        let counts = json!({"gate": "perf_c", "class": "count", "passed": true,
            "counts": [{"what": "file fsyncs", "expected": 2, "observed": 2}]});
        vec![
            outcome("perf_a", Status::GateFailed, vec![wall]),
            outcome("perf_i", Status::Passed, vec![instr, counts]),
            outcome("perf_s", Status::Skipped, vec![skip]),
        ]
    }

    #[test]
    fn junit_counts_failures_and_skips_and_escapes_text() {
        let xml = junit(&sample(), None);
        assert!(
            xml.contains(r#"tests="3" failures="1" errors="0" skipped="1""#),
            "{xml}"
        );
        assert!(xml.contains(r#"<testcase classname="p/it" name="perf_a" time="1.500">"#));
        assert!(xml.contains("<failure message=\"p/it::perf_a: gate `perf_a`: trimmed mean"));
        assert!(
            xml.contains("<skipped message=\"valgrind &lt;missing&gt; &amp; &quot;gone&quot;\"/>"),
            "{xml}"
        );
        assert_eq!(
            xml.matches("<testcase ").count(),
            xml.matches("</testcase>").count()
        );
        let failed_run = junit(&[], Some("building the tests failed <exit 101>"));
        assert!(
            failed_run.contains(r#"tests="1" failures="0" errors="1""#),
            "{failed_run}"
        );
        assert!(
            failed_run.contains("<error message=\"building the tests failed &lt;exit 101&gt;\">")
        );
    }

    #[test]
    fn bmf_has_one_entry_per_measured_gate() {
        let v: Value = serde_json::from_str(&bmf(&sample())).expect("json");
        assert_eq!(v["perf_a"]["latency"]["value"], 9_000_000.0);
        assert_eq!(v["perf_a"]["latency"]["upper_value"], 6_000_000.0);
        assert_eq!(v["perf_i"]["instructions"]["lower_value"], 980.0);
        assert_eq!(v["perf_c"]["file fsyncs"]["value"], 2.0);
        assert!(v.get("perf_s").is_none(), "a skipped gate measured nothing");
    }

    #[test]
    fn summary_has_the_verdict_table_and_reasons() {
        let md = summary(&sample(), false, None);
        assert!(md.starts_with("## perfbudget: FAILED\n"), "{md}");
        assert!(
            md.contains("| `p/it::perf_a` | warm | 9.000 ms | 6.000 ms | -50.0% | FAILED |"),
            "{md}"
        );
        assert!(md.contains("- SKIPPED p/it::perf_s [perf_s]"), "{md}");
        let md = summary(&[], false, Some("none of the 3 perf tests matches [\"x\"]"));
        assert!(md.contains("**The run failed:** none of the 3"), "{md}");
    }
}
