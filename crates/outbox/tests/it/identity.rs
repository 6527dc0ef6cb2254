//! Child identity on the file store beyond what every store shares
//! (`outbox_conformance::identity`): lines that agent-deck (or this crate
//! before the rule) wrote for one child spelled with and without
//! surrounding whitespace are one child, so one drain never returns the
//! same turn twice.

use outbox::{Outbox, Record};

use crate::util::PARENT;

fn line(child: &str, summary: &str) -> String {
    let mut r = Record::finished(child, "success");
    r.done_summary = summary.into();
    r.timestamp = "2026-11-28T11:20:59Z".parse().unwrap();
    // agent-deck's fingerprint: it trims the child id.
    r.turn_fingerprint = outbox::turn_fingerprint(&r);
    let mut bytes = outbox::format::encode_line(&r).unwrap();
    bytes.pop();
    String::from_utf8(bytes).unwrap()
}

fn inbox_of(root: &std::path::Path, lines: &[String]) -> Outbox {
    let ob = Outbox::open(root).unwrap();
    let inbox = ob.paths(PARENT).unwrap().inbox;
    std::fs::write(&inbox, lines.join("\n") + "\n").unwrap();
    ob
}

#[test]
fn lines_of_one_child_spelled_with_surrounding_whitespace_are_one_child() {
    let dir = tempfile::tempdir().unwrap();
    // The same turn, as agent-deck would have written it twice.
    let ob = inbox_of(
        dir.path(),
        &[line("w1", "done"), line("w1 ", "done"), line("w2", "x")],
    );
    let peeked = ob.peek(PARENT).unwrap();
    assert_eq!(peeked.len(), 2, "{peeked:?}");
    let drained = ob.drain(PARENT).unwrap();
    let kids: Vec<&str> = drained
        .records
        .iter()
        .map(|r| r.child_session_id.trim())
        .collect();
    assert_eq!(kids, ["w1", "w2"], "one turn, delivered once");
    assert!(ob.drain(PARENT).unwrap().records.is_empty());

    // A later turn of " w1" supersedes w1's pending one (last wins), and
    // sweep_transition names the child trimmed or not.
    let ob = inbox_of(dir.path(), &[line("w1", "first"), line(" w1", "second")]);
    let drained = ob.drain(PARENT).unwrap();
    assert_eq!(drained.records.len(), 1);
    assert_eq!(drained.records[0].done_summary, "second");
    let mut flip = Record::transition("w3 ", "running", "waiting");
    flip.timestamp = "2026-11-28T11:20:59Z".parse().unwrap();
    let mut bytes = outbox::format::encode_line(&flip).unwrap();
    bytes.pop();
    let ob = inbox_of(dir.path(), &[String::from_utf8(bytes).unwrap()]);
    assert_eq!(
        ob.sweep_transition(PARENT, "w3", "running", "waiting")
            .unwrap(),
        1
    );
    assert!(ob.peek(PARENT).unwrap().is_empty());
}
