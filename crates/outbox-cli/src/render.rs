//! How records are printed: one text line each, or a JSON array.

use outbox::Record;

/// One record as a text line (newline included):
/// `<child id> TAB <status> TAB <summary or title>`.
///
/// The status is `done_status` for a completion and `to_status` otherwise;
/// the last column is the summary of a completion that has one, else the
/// child's title. Empty columns at the end of a line are left out with
/// their tab, so a line never ends in a tab (`cut -f3` still reads an empty
/// third column). Backslashes, control characters (tabs, newlines, ...) and
/// the other characters [`outbox::delivery::is_hidden`] names (bidi
/// overrides, zero-width and tag characters, line separators) inside a
/// field are escaped as in Rust string literals (`\\`, `\t`, `\n`,
/// `\u{1b}`, `\u{202e}`; [`outbox::delivery::escape_line`]), so a line is
/// always one record and at most three columns, and shows all it holds.
pub fn text_line(r: &Record) -> String {
    let (status, detail) = if r.is_finished() {
        let detail = if r.done_summary.is_empty() {
            &r.child_title
        } else {
            &r.done_summary
        };
        (&r.done_status, detail)
    } else {
        (&r.to_status, &r.child_title)
    };
    let mut fields = vec![&r.child_session_id, status, detail];
    while fields.len() > 1 && fields.last().is_some_and(|f| f.is_empty()) {
        fields.pop();
    }
    let mut line = String::new();
    for (i, field) in fields.into_iter().enumerate() {
        if i > 0 {
            line.push('\t');
        }
        line.push_str(&outbox::delivery::escape_line(field));
    }
    line.push('\n');
    line
}

/// `records` as JSON lines: one record per line in the on-disk field
/// format (what `drain --exec` gives its command without `--json`).
pub fn json_lines(records: &[Record]) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    for r in records {
        serde_json::to_writer(&mut out, r)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// `records` as text lines ([`text_line`]) or, with `json`, as a JSON array
/// of records in the on-disk field format, one record per line
/// (`[]` when empty).
pub fn records(records: &[Record], json: bool) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    if json {
        out.push(b'[');
        for (i, r) in records.iter().enumerate() {
            out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
            serde_json::to_writer(&mut out, r)?;
        }
        out.extend_from_slice(if records.is_empty() { b"]\n" } else { b"\n]\n" });
    } else {
        for r in records {
            out.extend_from_slice(text_line(r).as_bytes());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_columns_pick_status_and_detail_by_kind() {
        let mut done = Record::finished("c1", "success");
        done.child_title = "parser".into();
        assert_eq!(text_line(&done), "c1\tsuccess\tparser\n");
        done.done_summary = "all\tgood\nnow \\o/".into();
        assert_eq!(text_line(&done), "c1\tsuccess\tall\\tgood\\nnow \\\\o/\n");
        let mut moved = Record::transition("c2", "running", "waiting");
        moved.done_summary = "not shown".into();
        assert_eq!(text_line(&moved), "c2\twaiting\n");
        moved.to_status.clear();
        assert_eq!(text_line(&moved), "c2\n");
        moved.child_title = "é\u{1b}".into();
        moved.to_status = "waiting".into();
        assert_eq!(text_line(&moved), "c2\twaiting\té\\u{1b}\n");
        moved.to_status.clear();
        assert_eq!(text_line(&moved), "c2\t\té\\u{1b}\n");
    }

    #[test]
    fn json_is_an_array_that_parses_back() {
        assert_eq!(records(&[], true).unwrap(), b"[]\n");
        let rs = vec![
            Record::finished("a", "ok"),
            Record::transition("b", "x", "y"),
        ];
        let out = records(&rs, true).unwrap();
        let back: Vec<Record> = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, rs);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 4);
        let lines = json_lines(&rs).unwrap();
        let back: Vec<Record> = lines
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(back, rs);
        assert!(json_lines(&[]).unwrap().is_empty());
    }
}
