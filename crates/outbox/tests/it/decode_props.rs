//! Bad input never panics, never hides good records, never allocates past
//! the line cap: property tests over the line decoder and the file reader.
//!
//! The default case count keeps the file fast in debug builds; set
//! `PROPTEST_CASES` for a longer run.

use std::io::Read;

use outbox::format::{
    BETWEEN_NULS, BadLineReason, MAX_LINE_BYTES, Scan, decode_line, encode_line, scan,
};
use outbox::{Outbox, ParentPaths, Record, Timestamp};
use outbox_sim::CrashIo;
use proptest::prelude::*;

/// Held by the tests that allocate tens of MiB, so the peak-RSS check of
/// [`a_line_over_16_mib_is_reported_and_never_buffered_whole`] measures the
/// reader alone.
static BIG_ALLOCATIONS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn big_allocations() -> std::sync::MutexGuard<'static, ()> {
    BIG_ALLOCATIONS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Unix seconds of 0001-01-01 and of 9999-12-31, kept a day inside so any
/// offset stays in range.
const MIN_SECS: i64 = -62_135_596_800 + 86_400;
const MAX_SECS: i64 = 253_402_300_800 - 2 * 86_400;

fn timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        Just(Timestamp::ZERO),
        (MIN_SECS..MAX_SECS, 0u32..1_000_000_000, -1439i32..=1439).prop_map(
            |(secs, nanos, minutes)| {
                Timestamp::from_unix(secs, nanos, minutes * 60).expect("in range")
            }
        ),
    ]
}

/// Any string, biased towards the awkward: empty, whitespace, quotes,
/// control characters, non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[ \t\r\n\"\\\\\u{0}-\u{1f}a-zé€😀]{0,12}",
        any::<String>(),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    (
        (text(), text(), text(), text(), text(), timestamp()),
        (text(), text(), text(), text(), text(), text()),
        (text(), text(), text(), any::<i64>(), text(), text(), text()),
    )
        .prop_map(|(a, b, c)| {
            let mut r = Record::default();
            r.child_session_id = a.0;
            r.child_title = a.1;
            r.profile = a.2;
            r.from_status = a.3;
            r.to_status = a.4;
            r.timestamp = a.5;
            r.substate = b.0;
            r.last_output_hash = b.1;
            r.target_session_id = b.2;
            r.target_kind = b.3;
            r.delivery_result = b.4;
            r.kind = b.5;
            r.done_status = c.0;
            r.done_summary = c.1;
            r.turn_fingerprint = c.2;
            r.attempts = c.3;
            r.dead_letter_reason = c.4;
            r.fp = c.5;
            r.turn_id = c.6;
            r
        })
}

fn encode_all(records: &[Record]) -> Vec<u8> {
    records
        .iter()
        .flat_map(|r| encode_line(r).expect("a record always encodes"))
        .collect()
}

/// What a reader must report for `bytes`, computed the obvious way: split
/// on `\n`, split each line on NUL bytes, skip blank pieces, flag pieces
/// over `cap` and pieces with NULs on both sides, decode the others.
fn reference_scan(bytes: &[u8], cap: usize) -> Scan {
    let mut expected = Scan::default();
    let mut offset = 0u64;
    let mut segments: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if segments.last().is_some_and(|s| s.is_empty()) {
        segments.pop();
    }
    for (i, seg) in segments.iter().enumerate() {
        let line_no = i as u64 + 1;
        // NUL bytes are what a crash leaves where a file's size reached
        // the disk before its data: never part of a record, so they
        // separate pieces like newlines (the cap applies to each piece),
        // and a piece of them is blank.
        let mut at = 0u64;
        let pieces: Vec<&[u8]> = seg.split(|&b| b == 0).collect();
        for (j, piece) in pieces.iter().enumerate() {
            let piece_at = offset + at;
            at += piece.len() as u64 + 1;
            if piece.len() > cap {
                expected.bad_lines.push(outbox::format::BadLine::new(
                    line_no,
                    piece_at,
                    piece.len() as u64,
                    BadLineReason::TooLong,
                ));
                continue;
            }
            if piece.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // Between NULs: a fragment of a lost write, never a record.
            let between = j > 0 && j + 1 < pieces.len();
            let decoded = if between {
                Err(BETWEEN_NULS.to_owned())
            } else {
                decode_line(piece).map_err(|e| e.to_string())
            };
            match decoded {
                Ok(r) => expected.records.push(r),
                Err(reason) => expected.bad_lines.push(outbox::format::BadLine::new(
                    line_no,
                    piece_at,
                    piece.len() as u64,
                    BadLineReason::Unparsable(reason),
                )),
            }
        }
        offset += seg.len() as u64 + 1;
    }
    expected
}

/// Raw bytes built from pieces that tend to make interesting files: record
/// lines, fragments of them, newlines, junk and invalid UTF-8.
fn messy_file() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        record().prop_map(|r| encode_line(&r).unwrap()),
        record().prop_flat_map(|r| {
            let line = encode_line(&r).unwrap();
            let n = line.len();
            (Just(line), 0..n).prop_map(|(l, cut)| l[..cut].to_vec())
        }),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"   \t\n".to_vec()),
        Just(vec![0xff, 0xfe, b'{']),
        // What a crash leaves: a run of NULs where data never reached disk.
        Just(vec![0u8; 3]),
        Just(b"{\"child_session_id\":\"\xc3(\"}\n".to_vec()),
        Just(b"null\n[]\n\"x\"\n{}\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..40),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|ps| ps.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_record_round_trips_through_one_line(r in record()) {
        let line = encode_line(&r).unwrap();
        prop_assert_eq!(line.last(), Some(&b'\n'));
        prop_assert!(!line[..line.len() - 1].contains(&b'\n'), "one record, one line");
        prop_assert_eq!(decode_line(&line[..line.len() - 1]).unwrap(), r);
    }

    #[test]
    fn a_file_of_records_reads_back_exactly(records in prop::collection::vec(record(), 0..8)) {
        let bytes = encode_all(&records);
        let got = scan(&bytes[..], MAX_LINE_BYTES).unwrap();
        prop_assert_eq!(got.records, records);
        prop_assert!(got.bad_lines.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_match_the_reference(
        bytes in messy_file(),
        cap in prop_oneof![1usize..8, 8usize..400, Just(MAX_LINE_BYTES)],
    ) {
        let got = scan(&bytes[..], cap).unwrap();
        let expected = reference_scan(&bytes, cap);
        for bad in &got.bad_lines {
            prop_assert!(bad.offset + bad.len <= bytes.len() as u64);
            let range = &bytes[bad.offset as usize..(bad.offset + bad.len) as usize];
            prop_assert!(!range.contains(&b'\n'));
        }
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn pure_noise_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048), cap in 1usize..300) {
        let got = scan(&bytes[..], cap).unwrap();
        prop_assert_eq!(got, reference_scan(&bytes, cap));
    }

    #[test]
    fn a_torn_tail_costs_at_most_the_torn_line(
        records in prop::collection::vec(record(), 1..6),
        cut_seed in any::<prop::sample::Index>(),
    ) {
        let bytes = encode_all(&records);
        let cut = cut_seed.index(bytes.len() + 1);
        let torn = &bytes[..cut];
        let got = scan(torn, MAX_LINE_BYTES).unwrap();
        // Complete lines survive; the line the cut falls in is either whole
        // (the cut is right before its newline) or one bad line.
        let complete = torn.iter().filter(|&&b| b == b'\n').count();
        let tail_start = torn.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let tail = &torn[tail_start..];
        // The tail is a prefix of the next line: whole when only its newline
        // is missing.
        let tail_whole = complete < records.len()
            && tail.len() + 1 == encode_line(&records[complete]).unwrap().len();
        let mut expected: Vec<Record> = records[..complete].to_vec();
        if tail_whole {
            expected.push(records[complete].clone());
        }
        prop_assert_eq!(&got.records, &expected);
        let expected_bad = usize::from(!tail.is_empty() && !tail_whole);
        prop_assert_eq!(got.bad_lines.len(), expected_bad);
        if let Some(bad) = got.bad_lines.first() {
            prop_assert_eq!(bad.offset, tail_start as u64);
            prop_assert_eq!(bad.line_no, complete as u64 + 1);
        }
    }

    #[test]
    fn invalid_utf8_spoils_only_its_own_line(
        records in prop::collection::vec(record(), 3..6),
        victim_seed in any::<prop::sample::Index>(),
        junk in prop::sample::select(vec![
            vec![0x80u8], vec![0xbf], vec![0xc0, 0x80], vec![0xc3, b'('],
            vec![0xed, 0xa0, 0x80], vec![0xf5, 0x80, 0x80, 0x80], vec![0xff],
        ]),
    ) {
        let victim = victim_seed.index(records.len());
        let mut bytes = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let mut line = encode_line(r).unwrap();
            if i == victim {
                // Inside the first string value: right after `{"child_session_id":"`.
                let at = b"{\"child_session_id\":\"".len();
                line.splice(at..at, junk.iter().copied());
            }
            bytes.extend(line);
        }
        let got = scan(&bytes[..], MAX_LINE_BYTES).unwrap();
        let mut expected = records.clone();
        expected.remove(victim);
        prop_assert_eq!(got.records, expected);
        prop_assert_eq!(got.bad_lines.len(), 1);
        prop_assert_eq!(got.bad_lines[0].line_no, victim as u64 + 1);
    }

    #[test]
    fn lines_around_the_cap_are_flagged_exactly_when_over_it(
        before in record(),
        after in record(),
        cap in 64usize..2048,
        delta in -3i64..=3,
        times in prop_oneof![Just(1usize), Just(10)],
    ) {
        let len = ((cap as i64 + delta).max(1) as usize) * times;
        let long = vec![b'x'; len];
        let mut bytes = encode_line(&before).unwrap();
        let long_at = bytes.len() as u64;
        bytes.extend(&long);
        bytes.push(b'\n');
        bytes.extend(encode_line(&after).unwrap());
        // Only the records this cap admits are expected back.
        let fits = |r: &Record| encode_line(r).unwrap().len() - 1 <= cap;
        let got = scan(&bytes[..], cap).unwrap();
        let expected: Vec<Record> = [&before, &after].into_iter().filter(|r| fits(r)).cloned().collect();
        prop_assert_eq!(got.records, expected);
        let long_bad = got.bad_lines.iter().find(|b| b.offset == long_at).expect("junk line is bad");
        prop_assert_eq!(long_bad.len, len as u64);
        if len > cap {
            prop_assert_eq!(&long_bad.reason, &BadLineReason::TooLong);
        } else {
            prop_assert!(matches!(long_bad.reason, BadLineReason::Unparsable(_)));
        }
    }
}

fn nested(open: &str, close: &str, depth: usize) -> String {
    let mut s = String::with_capacity((open.len() + close.len()) * depth);
    for _ in 0..depth {
        s.push_str(open);
    }
    for _ in 0..depth {
        s.push_str(close);
    }
    s
}

#[test]
fn deeply_nested_json_never_overflows_the_stack() {
    let good = |c: &str| format!("{{\"child_session_id\":\"{c}\"}}\n");
    for depth in [129, 10_000, 1_000_000] {
        // (line, the child it decodes to when it is a valid record)
        let cases = [
            // Balanced junk in an unknown field is valid JSON: serde_json
            // skips it without recursing, and the record is read.
            (
                format!(
                    "{{\"child_session_id\":\"x\",\"junk\":{}}}",
                    nested("[", "]", depth)
                ),
                Some("x"),
            ),
            (
                format!(
                    "{{\"child_session_id\":\"y\",\"junk\":{}1{}}}",
                    "{\"a\":".repeat(depth),
                    "}".repeat(depth)
                ),
                Some("y"),
            ),
            // Nesting where a string is expected, unbalanced nesting, nesting
            // at the top: bad lines.
            (
                format!("{{\"child_session_id\":{}}}", nested("[", "]", depth)),
                None,
            ),
            (format!("{{\"junk\":{}", "[".repeat(depth)), None),
            (format!("{{\"junk\":{}", "{\"a\":".repeat(depth)), None),
            (nested("[", "]", depth), None),
        ];
        for (line, valid) in cases {
            let decoded = decode_line(line.as_bytes());
            assert_eq!(
                decoded.as_ref().ok().map(|r| r.child_session_id.as_str()),
                valid,
                "depth {depth}: {decoded:?}"
            );
            let file = format!("{}{line}\n{}", good("a"), good("b"));
            let got = scan(file.as_bytes(), MAX_LINE_BYTES).unwrap();
            let kids: Vec<_> = got
                .records
                .iter()
                .map(|r| r.child_session_id.as_str())
                .collect();
            let expected: Vec<&str> = ["a"].into_iter().chain(valid).chain(["b"]).collect();
            assert_eq!(kids, expected, "depth {depth}");
            assert_eq!(got.bad_lines.len(), usize::from(valid.is_none()));
            if let Some(bad) = got.bad_lines.first() {
                assert_eq!(bad.line_no, 2);
            }
        }
    }
}

/// A reader that produces one line of `len` bytes of `x` (never holding it),
/// then the bytes of `rest`.
struct LongLine {
    left: u64,
    rest: std::io::Cursor<Vec<u8>>,
}

impl Read for LongLine {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left > 0 {
            let n = (buf.len() as u64).min(self.left) as usize;
            buf[..n].fill(b'x');
            self.left -= n as u64;
            return Ok(n);
        }
        self.rest.read(buf)
    }
}

/// Peak resident set size of this process, in bytes, after resetting the
/// peak; `None` where /proc does not offer it.
fn reset_peak_rss() -> Option<()> {
    std::fs::write("/proc/self/clear_refs", "5").ok()
}

fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn a_line_over_16_mib_is_reported_and_never_buffered_whole() {
    let _big = big_allocations();
    // Eight times the cap: buffering it would show in the peak RSS.
    let len = 8 * MAX_LINE_BYTES as u64;
    let tail = b"\n{\"child_session_id\":\"after\"}\n".to_vec();
    let reader = LongLine {
        left: len,
        rest: std::io::Cursor::new(tail),
    };
    let measured = reset_peak_rss().and_then(|()| peak_rss());
    let got = scan(reader, MAX_LINE_BYTES).unwrap();
    assert_eq!(got.records.len(), 1);
    assert_eq!(got.records[0].child_session_id, "after");
    assert_eq!(got.bad_lines.len(), 1);
    assert_eq!(got.bad_lines[0].reason, BadLineReason::TooLong);
    assert_eq!(got.bad_lines[0].len, len);
    match (measured, peak_rss()) {
        (Some(before), Some(after)) => {
            let grew = after.saturating_sub(before);
            eprintln!(
                "streamed a {} MiB line: peak RSS grew {} MiB",
                len >> 20,
                grew >> 20
            );
            // At most one capped line (plus allocator slack and whatever the
            // tests running beside this one hold), far below the line's size.
            assert!(
                grew < 3 * MAX_LINE_BYTES as u64,
                "peak RSS grew by {grew} bytes reading a {len}-byte line"
            );
        }
        _ => eprintln!("no /proc peak RSS here; checked the report only"),
    }
}

#[test]
fn a_line_of_exactly_the_cap_is_decoded() {
    let _big = big_allocations();
    // A real record padded to exactly MAX_LINE_BYTES.
    let base = b"{\"child_session_id\":\"edge\",\"child_title\":\"\"}";
    let pad = MAX_LINE_BYTES - base.len();
    let mut line = b"{\"child_session_id\":\"edge\",\"child_title\":\"".to_vec();
    line.extend(std::iter::repeat_n(b'p', pad));
    line.extend(b"\"}");
    assert_eq!(line.len(), MAX_LINE_BYTES);
    line.push(b'\n');
    let got = scan(&line[..], MAX_LINE_BYTES).unwrap();
    assert_eq!(got.records.len(), 1);
    assert_eq!(got.records[0].child_title.len(), pad);
    // One byte more is too long.
    let mut longer = line.clone();
    longer.insert(1, b' ');
    let got = scan(&longer[..], MAX_LINE_BYTES).unwrap();
    assert!(got.records.is_empty());
    assert_eq!(got.bad_lines[0].reason, BadLineReason::TooLong);
}

// ---------------------------------------------------------------------------
// The outbox's own readers: inbox, WAL and ledger files full of bad input
// ---------------------------------------------------------------------------

use crate::util::SIM_ROOT;

/// The parent the outbox properties commit to.
const SIM_PARENT: &str = "parent";

fn sim_outbox() -> (CrashIo, Outbox<CrashIo>, ParentPaths) {
    let io = CrashIo::new();
    io.install_dir(SIM_ROOT);
    let ob = Outbox::open_with(SIM_ROOT, io.clone()).unwrap();
    let paths = ob.paths(SIM_PARENT).unwrap();
    (io, ob, paths)
}

/// One record per child, the last in commit (file) order whatever its
/// timestamp, in first-seen order: what a drain hands over from a fresh
/// ledger.
fn collapsed(records: Vec<Record>) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    for r in records {
        match out
            .iter_mut()
            .find(|o| o.child_session_id == r.child_session_id)
        {
            Some(o) => *o = r,
            None => out.push(r),
        }
    }
    out
}

/// The bytes a quarantine of `bad` lines of `source` must hold.
fn quarantined_bytes(source: &[u8], bad: &[outbox::format::BadLine]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in bad {
        out.extend_from_slice(&source[b.offset as usize..(b.offset + b.len) as usize]);
        out.push(b'\n');
    }
    out
}

fn outbox_config() -> ProptestConfig {
    ProptestConfig {
        cases: (config().cases / 3).max(8),
        ..config()
    }
}

proptest! {
    #![proptest_config(outbox_config())]

    #[test]
    fn a_drain_reads_any_inbox_and_wal_and_sets_bad_lines_aside(
        inbox in messy_file(),
        wal in messy_file(),
    ) {
        let (io, ob, p) = sim_outbox();
        io.install_file(&p.inbox, &inbox);
        io.install_file(&p.wal, &wal);
        let d = ob.drain(SIM_PARENT).unwrap();

        let wal_scan = reference_scan(&wal, MAX_LINE_BYTES);
        let inbox_scan = reference_scan(&inbox, MAX_LINE_BYTES);
        let mut all = wal_scan.records.clone();
        all.extend(inbox_scan.records.clone());
        prop_assert_eq!(&d.records, &collapsed(all));
        prop_assert_eq!(d.recovered, wal_scan.records.len());
        prop_assert_eq!(d.bad_lines.len(), wal_scan.bad_lines.len() + inbox_scan.bad_lines.len());

        // Every bad line is in a quarantine file, byte for byte.
        let image = io.current_image();
        let mut expected_quarantines = Vec::new();
        if !wal_scan.bad_lines.is_empty() {
            expected_quarantines.push(quarantined_bytes(&wal, &wal_scan.bad_lines));
        }
        if !inbox_scan.bad_lines.is_empty() {
            expected_quarantines.push(quarantined_bytes(&inbox, &inbox_scan.bad_lines));
        }
        let got: Vec<Vec<u8>> = d
            .quarantined
            .iter()
            .map(|q| image.file(q).expect("quarantine file exists").to_vec())
            .collect();
        prop_assert_eq!(got, expected_quarantines);

        // Nothing is left, and nothing comes back.
        prop_assert!(ob.drain(SIM_PARENT).unwrap().records.is_empty());
        prop_assert!(!ob.has_pending(SIM_PARENT).unwrap());
    }

    #[test]
    fn a_corrupt_ledger_never_fails_a_drain_or_hides_a_record(
        ledger in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            Just(b"{\"a\": 1,".to_vec()),
            Just(b"[]".to_vec()),
            Just(b"{\"x@1\": \"not a number\"}".to_vec()),
            Just(b"{\"x@1\": 1e400}".to_vec()),
            Just(format!("{{\"k\":{}}}", "[".repeat(100_000)).into_bytes()),
        ],
    ) {
        let (io, ob, p) = sim_outbox();
        io.install_file(&p.ledger, &ledger);
        ob.commit(SIM_PARENT, Record::finished("child", "ok")).unwrap();
        let d = ob.drain(SIM_PARENT).unwrap();
        prop_assert_eq!(d.records.len(), 1);
        prop_assert!(ob.drain(SIM_PARENT).unwrap().records.is_empty());
    }
}

#[test]
fn a_drain_sets_a_line_over_16_mib_aside_and_delivers_the_rest() {
    let _big = big_allocations();
    let (io, ob, p) = sim_outbox();
    let a = encode_line(&Record::finished("a", "ok")).unwrap();
    let b = encode_line(&Record::finished("b", "ok")).unwrap();
    let mut inbox = a.clone();
    let huge_at = inbox.len();
    inbox.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 1));
    inbox.push(b'\n');
    inbox.extend(&b);
    io.install_file(&p.inbox, &inbox);
    let d = ob.drain(SIM_PARENT).unwrap();
    let kids: Vec<_> = d
        .records
        .iter()
        .map(|r| r.child_session_id.as_str())
        .collect();
    assert_eq!(kids, ["a", "b"]);
    assert_eq!(d.bad_lines.len(), 1);
    assert_eq!(d.bad_lines[0].reason, BadLineReason::TooLong);
    assert_eq!(d.bad_lines[0].offset, huge_at as u64);
    let image = io.current_image();
    let q = image.file(&d.quarantined[0]).unwrap();
    assert_eq!(q.len(), MAX_LINE_BYTES + 2);
    assert!(q[..MAX_LINE_BYTES + 1].iter().all(|&c| c == b'x'));
}

#[test]
fn a_commit_that_would_write_a_line_over_16_mib_is_refused() {
    let _big = big_allocations();
    let (io, ob, p) = sim_outbox();
    ob.commit(SIM_PARENT, Record::finished("a", "ok")).unwrap();
    let before = io.current_image().file(&p.inbox).unwrap().to_vec();
    let mut huge = Record::finished("b", "ok");
    huge.child_title = "t".repeat(MAX_LINE_BYTES);
    let err = ob.commit(SIM_PARENT, huge).unwrap_err().to_string();
    assert!(err.contains("limit"), "{err}");
    assert_eq!(io.current_image().file(&p.inbox).unwrap(), &before[..]);
}
