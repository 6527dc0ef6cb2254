//! On-disk compatibility with agent-deck: hand-written golden lines in the
//! shape Go's `encoding/json` writes them, fingerprints checked against
//! digests computed outside Rust (`printf '%s' ... | sha256sum`).

use outbox::format::{decode_line, encode_line};
use outbox::{Outbox, Record, event_fingerprint, turn_fingerprint};

/// A completion line with every field set, fields in Go's order.
const FULL: &str = concat!(
    r#"{"child_session_id":"c1","child_title":"Worker one","profile":"default","#,
    r#""from_status":"running","to_status":"waiting","timestamp":"2026-11-28T11:20:59.123456789Z","#,
    r#""substate":"idle","last_output_hash":"h1","target_session_id":"parent-1","target_kind":"conductor","#,
    r#""delivery_result":"ok","kind":"finished","done_status":"success","done_summary":"all done","#,
    r#""turn_fingerprint":"c1@75ebb101312b1870","attempts":2,"dead_letter_reason":"none","#,
    r#""fp":"84cc7f65353704333e2dae61015454fc793425ef7a0feafb2c305f9a75e895fa"}"#
);

/// A status transition: empty optional fields are omitted, as Go's
/// `omitempty` does.
const MINIMAL: &str = concat!(
    r#"{"child_session_id":"c2","child_title":"","profile":"","from_status":"running","#,
    r#""to_status":"waiting","timestamp":"2026-11-28T13:20:59+02:00"}"#
);

fn reencode(line: &str) -> String {
    let record = decode_line(line.as_bytes()).unwrap();
    let bytes = encode_line(&record).unwrap();
    String::from_utf8(bytes).unwrap().trim_end().to_owned()
}

#[test]
fn golden_lines_round_trip_byte_for_byte() {
    assert_eq!(reencode(FULL), FULL);
    assert_eq!(reencode(MINIMAL), MINIMAL);
}

#[test]
fn fingerprints_match_digests_computed_elsewhere() {
    let full = decode_line(FULL.as_bytes()).unwrap();
    assert_eq!(event_fingerprint(&full), full.fp);
    assert_eq!(turn_fingerprint(&full), full.turn_fingerprint);

    let minimal = decode_line(MINIMAL.as_bytes()).unwrap();
    assert_eq!(
        event_fingerprint(&minimal),
        "6b44b817b37cf645ddc9c5fea2c747bc420eba7a8bbdce680ac5a2ca6333fc0d"
    );
    assert_eq!(turn_fingerprint(&minimal), "c2@7627432c95d354c6");

    let mut turn = Record::default();
    turn.child_session_id = " c3 ".into();
    turn.last_output_hash = "abc123".into();
    assert_eq!(turn_fingerprint(&turn), "c3@02e2d4127d8f6a9e");
}

#[test]
fn timestamps_keep_their_offset_and_fraction_as_written() {
    for ts in [
        "2026-11-28T11:20:59Z",
        "2026-11-28T11:20:59.5Z",
        "2026-11-28T13:20:59.000000001+02:00",
        "2026-11-28T06:50:59-04:30",
        "0001-01-01T00:00:00Z",
    ] {
        let line = format!(
            r#"{{"child_session_id":"c","child_title":"","profile":"","from_status":"","to_status":"","timestamp":"{ts}"}}"#
        );
        assert_eq!(reencode(&line), line);
    }
    // Go writes trailing zeros trimmed and a zero offset as Z.
    let line = r#"{"child_session_id":"c","timestamp":"2026-11-28T11:20:59.120+00:00"}"#;
    assert!(reencode(line).contains(r#""timestamp":"2026-11-28T11:20:59.12Z""#));
}

#[test]
fn unknown_fields_nulls_and_missing_fields_are_tolerated() {
    let line = concat!(
        r#"{"future_field":{"nested":[1,2,3]},"child_session_id":"c1","child_title":null,"#,
        r#""attempts":null,"timestamp":null,"kind":"finished","done_status":"ok","extra":true}"#
    );
    let r = decode_line(line.as_bytes()).unwrap();
    assert_eq!(r.child_session_id, "c1");
    assert_eq!(r.child_title, "");
    assert_eq!(r.attempts, 0);
    assert!(r.timestamp.is_zero());
    assert!(r.is_finished());
    let out = reencode(line);
    assert!(
        out.contains(r#""timestamp":"0001-01-01T00:00:00Z""#),
        "{out}"
    );
    assert!(
        !out.contains("future_field") && !out.contains("attempts"),
        "{out}"
    );
}

#[test]
fn legacy_lines_without_fingerprints_are_deduplicated_by_the_derived_turn() {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(dir.path()).unwrap();
    let paths = ob.paths("p").unwrap();
    // A legacy producer wrote no fp and no turn_fingerprint.
    let legacy = concat!(
        r#"{"child_session_id":"c1","child_title":"","profile":"","from_status":"running","#,
        r#""to_status":"waiting","timestamp":"2026-11-28T11:20:59Z","kind":"finished","#,
        r#""done_status":"success","done_summary":"all done"}"#
    );
    std::fs::write(&paths.inbox, format!("{legacy}\n")).unwrap();
    let first = ob.drain("p").unwrap().records;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].turn_key(), "c1@75ebb101312b1870");

    // The same turn, committed by a new producer (fingerprints stamped),
    // is recognised as consumed.
    let mut again = Record::finished("c1", "success");
    again.done_summary = "all done".into();
    let stamped = ob.commit("p", again).unwrap();
    assert_eq!(stamped.record.turn_fingerprint, "c1@75ebb101312b1870");
    assert!(ob.drain("p").unwrap().records.is_empty());

    // Protocol v2's ledger (append-only lines; agent-deck cannot read it)
    // holds the turn under agent-deck's fingerprint.
    let ledger = std::fs::read_to_string(&paths.consumed).unwrap();
    assert!(ledger.contains("[\"c1@75ebb101312b1870\","), "{ledger}");
}
