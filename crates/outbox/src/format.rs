//! The JSON-lines file format: encoding one record per line, and reading a
//! file of them with bounded memory.
//!
//! Readers skip blank lines and never let one bad line hide the others: a
//! line that does not parse, or that is longer than [`MAX_LINE_BYTES`], is
//! reported as a [`BadLine`] (with its byte range, so it can be set aside)
//! and reading goes on. A reader holds at most one line of up to
//! [`MAX_LINE_BYTES`] in memory; a longer line is skipped over, never
//! buffered.

use std::io::{self, BufRead, BufReader, Read};

use crate::Record;
pub use crate::json_error::JsonError;

/// The longest line, in bytes without its newline, a reader accepts and a
/// commit writes: 16 MiB.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Why a line was not read as a record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BadLineReason {
    /// The line is longer than the reader's limit.
    TooLong,
    /// The line is not a JSON record; the decoder's message.
    Unparsable(String),
}

/// A non-blank line that did not yield a record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BadLine {
    /// 1-based line number.
    pub line_no: u64,
    /// Byte offset of the line's first byte in the file (of the piece's,
    /// when NUL bytes split the line: they separate like newlines).
    pub offset: u64,
    /// Length of the line (or piece) in bytes, without its newline.
    pub len: u64,
    /// Why it was not read.
    pub reason: BadLineReason,
}

impl BadLine {
    /// A bad line at `offset`, `len` bytes long, line number `line_no`
    /// (1-based); for stores and readers outside this crate.
    pub fn new(line_no: u64, offset: u64, len: u64, reason: BadLineReason) -> Self {
        Self {
            line_no,
            offset,
            len,
            reason,
        }
    }
}

/// The content of one file of records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Scan {
    /// The records, in file order.
    pub records: Vec<Record>,
    /// Non-blank lines that did not parse or were too long, in file order.
    pub bad_lines: Vec<BadLine>,
}

/// Decodes one line (without its newline) into a record.
pub fn decode_line(line: &[u8]) -> Result<Record, JsonError> {
    serde_json::from_slice(line).map_err(JsonError::new)
}

/// Encodes `record` as one line, newline included.
pub fn encode_line(record: &Record) -> Result<Vec<u8>, JsonError> {
    let mut line = serde_json::to_vec(record).map_err(JsonError::new)?;
    line.push(b'\n');
    Ok(line)
}

/// One piece of a line of a file, as seen by [`for_each_line`].
#[derive(Debug)]
pub(crate) enum Line<'a> {
    /// A piece of at most the limit, without its newline or NUL.
    Whole {
        bytes: &'a [u8],
        line_no: u64,
        offset: u64,
        /// Whether NULs both precede and follow it in its line.
        between_nuls: bool,
    },
    /// A piece longer than the limit; its bytes were skipped.
    TooLong { line_no: u64, offset: u64, len: u64 },
}

/// Calls `visit` for each non-empty piece of each line of `reader`, holding
/// at most `max_line` bytes of a piece in memory. The last line needs no
/// trailing newline.
///
/// A line's pieces are its runs of bytes between NUL bytes, each reported
/// at its own offset under the line's number (a line without NULs is one
/// piece). NULs are what a crash leaves where a file's new size reached the
/// disk and its data did not: at the end of a line whose append was torn,
/// or, after a failed fdatasync whose pages were never written, in the
/// middle of a line, right before the next writer's record. They are never
/// part of a record (JSON escapes a NUL inside a string), so they separate
/// like newlines: a record written after them still reads, whatever the
/// number of NULs before it (the limit applies to each piece), and a line
/// of NULs is blank.
///
/// A record is never between NULs in its line: the bytes a lost write
/// leaves before a record are a failed commit's, after which the next
/// commit's line is written and synced with its newline; the one newline
/// written unsynced (and so possibly lost) ends a line a newline synced
/// before it starts. A piece between NULs is a fragment of a lost write
/// (pages of it that reached the disk), which may happen to parse (`{}`
/// does): [`Line::Whole`] says so, and it is read as a bad line.
pub(crate) fn for_each_line<R: Read>(
    reader: R,
    max_line: usize,
    mut visit: impl FnMut(Line<'_>) -> io::Result<()>,
) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(8 * 1024, reader);
    let mut piece = Vec::new();
    let mut piece_len: u64 = 0;
    let mut offset: u64 = 0;
    let mut line_no: u64 = 1;
    let mut after_nul = false;
    // The newline search's answer for the current buffer, when known.
    let mut next_newline: Option<Option<usize>> = None;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let at_eof = buf.is_empty();
        let buf_len = buf.len();
        // Where the next newline of this buffer is, searched for once per
        // buffer and line, not once per piece: a run of NULs is consumed a
        // byte at a time, and searching the rest of the buffer for each of
        // them made reading quadratic (2 MiB of NULs: seconds per read).
        let newline = match next_newline {
            Some(known) => known,
            None => {
                let found = buf.iter().position(|&b| b == b'\n');
                examined(found.map_or(buf_len, |i| i + 1));
                found
            }
        };
        let (chunk, end) = match newline {
            Some(i) => (&buf[..i], Some(b'\n')),
            None => (buf, None),
        };
        // NULs are rare: `contains` (memchr) rules them out cheaply, so
        // the common line costs one scan for its newline, as before NULs
        // separated pieces. Either search stops at the first NUL.
        let nul = if chunk.contains(&0) {
            chunk.iter().position(|&b| b == 0)
        } else {
            None
        };
        examined(nul.map_or(chunk.len(), |z| 2 * (z + 1)));
        let (chunk, end) = match nul {
            Some(z) => (&chunk[..z], Some(0)),
            None => (chunk, end),
        };
        let consumed = chunk.len() + usize::from(end.is_some());
        // The search's answer stays valid for the rest of this buffer,
        // until its newline is consumed or the buffer is refilled.
        next_newline = match newline {
            _ if consumed >= buf_len => None,
            Some(i) if i >= consumed => Some(Some(i - consumed)),
            Some(_) => None,
            None => Some(None),
        };
        if piece_len + chunk.len() as u64 <= max_line as u64 {
            piece.extend_from_slice(chunk);
        } else {
            piece.clear();
        }
        piece_len += chunk.len() as u64;
        reader.consume(consumed);
        if end.is_some() || at_eof {
            if piece_len > max_line as u64 {
                visit(Line::TooLong {
                    line_no,
                    offset,
                    len: piece_len,
                })?;
            } else if piece_len > 0 {
                visit(Line::Whole {
                    bytes: &piece,
                    line_no,
                    offset,
                    between_nuls: after_nul && end == Some(0),
                })?;
            }
            after_nul = end == Some(0);
            offset += piece_len + u64::from(end.is_some());
            line_no += u64::from(end == Some(b'\n'));
            piece.clear();
            piece_len = 0;
        }
        if at_eof {
            return Ok(());
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Bytes the line scanner examined on this thread, for the tests that
    /// bound its work.
    static EXAMINED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts `n` bytes examined by a search of the line scanner (tests only).
#[inline(always)]
fn examined(n: usize) {
    #[cfg(test)]
    EXAMINED.with(|c| c.set(c.get() + n as u64));
    #[cfg(not(test))]
    let _ = n;
}

/// The reason reported for a piece of a line between two runs of NUL bytes:
/// a fragment of a write that was lost (its pages never reached the disk),
/// never read as a record even when it parses. See [`BadLine`].
pub const BETWEEN_NULS: &str = "between NUL bytes: a fragment of a lost write";

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// Calls `visit` for each non-blank piece of a line of `reader` (see
/// [`for_each_line`]: NULs separate like newlines): the record with its
/// raw bytes (without the newline), or the reason it is a bad line. Holds at
/// most `max_line` bytes of a piece in memory.
pub(crate) fn for_each_record<R: Read>(
    reader: R,
    max_line: usize,
    mut visit: impl FnMut(Result<(Record, &[u8]), BadLine>),
) -> io::Result<()> {
    for_each_line(reader, max_line, |line| {
        match line {
            Line::Whole {
                bytes,
                line_no,
                offset,
                between_nuls,
            } if !is_blank(bytes) => {
                let decoded = if between_nuls {
                    Err(BETWEEN_NULS.to_owned())
                } else {
                    decode_line(bytes).map_err(|e| e.to_string())
                };
                visit(match decoded {
                    Ok(record) => Ok((record, bytes)),
                    Err(reason) => Err(BadLine {
                        line_no,
                        offset,
                        len: bytes.len() as u64,
                        reason: BadLineReason::Unparsable(reason),
                    }),
                });
            }
            Line::Whole { .. } => {}
            Line::TooLong {
                line_no,
                offset,
                len,
            } => visit(Err(BadLine {
                line_no,
                offset,
                len,
                reason: BadLineReason::TooLong,
            })),
        }
        Ok(())
    })
}

/// Reads every record of `reader`, skipping blank lines and reporting bad
/// ones; a line longer than `max_line` bytes is reported, not buffered.
pub fn scan<R: Read>(reader: R, max_line: usize) -> io::Result<Scan> {
    let mut scan = Scan::default();
    for_each_record(reader, max_line, |line| match line {
        Ok((record, _)) => scan.records.push(record),
        Err(bad) => scan.bad_lines.push(bad),
    })?;
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(child: &str) -> String {
        format!("{{\"child_session_id\":\"{child}\",\"timestamp\":\"2026-01-01T00:00:00Z\"}}")
    }

    #[test]
    fn skips_blank_and_reports_bad_lines_with_their_ranges() {
        let text = format!("{}\n\n   \nnot json\n{}\n{{\"trunc", line("a"), line("b"));
        let scan = scan(text.as_bytes(), MAX_LINE_BYTES).unwrap();
        let kids: Vec<_> = scan
            .records
            .iter()
            .map(|r| r.child_session_id.as_str())
            .collect();
        assert_eq!(kids, ["a", "b"]);
        assert_eq!(scan.bad_lines.len(), 2);
        let first = &scan.bad_lines[0];
        assert_eq!((first.line_no, first.len), (4, 8));
        let off = first.offset as usize;
        assert_eq!(&text[off..off + 8], "not json");
        let torn = &scan.bad_lines[1];
        assert_eq!(torn.line_no, 6);
        assert_eq!(&text[torn.offset as usize..], "{\"trunc");
    }

    #[test]
    fn a_line_over_the_limit_is_reported_and_the_rest_read() {
        let long = format!("{{\"child_session_id\":\"{}\"}}", "x".repeat(300));
        let text = format!("{}\n{long}\n{}\n", line("a"), line("b"));
        let scan = scan(text.as_bytes(), 100).unwrap();
        assert_eq!(scan.records.len(), 2);
        assert_eq!(scan.bad_lines.len(), 1);
        let bad = &scan.bad_lines[0];
        assert_eq!(bad.reason, BadLineReason::TooLong);
        assert_eq!(bad.len, long.len() as u64);
        assert_eq!(&text[bad.offset as usize..][..bad.len as usize], long);
    }

    #[test]
    fn line_exactly_at_the_limit_is_read() {
        let l = line("a");
        let scan = scan(format!("{l}\n").as_bytes(), l.len()).unwrap();
        assert_eq!(scan.records.len(), 1);
        let scan2 = super::scan(format!("{l}\n").as_bytes(), l.len() - 1).unwrap();
        assert_eq!(scan2.bad_lines.len(), 1);
    }

    #[test]
    fn a_crash_s_zeroed_tail_is_not_part_of_a_line() {
        let text = format!("{}\0\0\n{}\n\0\0\0", line("a"), line("b"));
        let scan = scan(text.as_bytes(), MAX_LINE_BYTES).unwrap();
        assert_eq!(scan.records.len(), 2);
        assert!(scan.bad_lines.is_empty());
    }

    #[test]
    fn a_record_after_a_run_of_nuls_longer_than_the_limit_is_read() {
        // Lost appends (NULs, newlines included) may add up to more than
        // the line limit before the next commit's line: the limit applies
        // to the record, not to the NULs before it.
        let l = line("b");
        let text = [vec![0; 3 * l.len()], format!("{l}\n").into_bytes()].concat();
        let scan = scan(&text[..], l.len() + 10).unwrap();
        assert!(scan.bad_lines.is_empty(), "{:?}", scan.bad_lines);
        assert_eq!(scan.records.len(), 1);
    }

    #[test]
    fn a_fragment_between_runs_of_nuls_is_never_a_record() {
        // A record whose fdatasync failed, spanning pages of which only one
        // in the middle reached the disk: what survives between the NULs
        // is a fragment of its summary. `{}` parses (every field has a
        // default), but no commit wrote it: it is a bad line, not a record.
        let text = format!(
            "{{\"child_session_id\":\"a\",\"done_summary\":\"x{}  {{}}  {}y\"}}\n{}\n",
            "\0".repeat(5),
            "\0".repeat(5),
            line("b")
        );
        let scan = scan(text.as_bytes(), MAX_LINE_BYTES).unwrap();
        let kids: Vec<_> = scan
            .records
            .iter()
            .map(|r| r.child_session_id.as_str())
            .collect();
        assert_eq!(kids, ["b"]);
        assert_eq!(scan.bad_lines.len(), 3, "{:?}", scan.bad_lines);
        assert!(scan.bad_lines.iter().all(|b| b.line_no == 1));
        let middle = &scan.bad_lines[1];
        let at = middle.offset as usize;
        assert_eq!(&text[at..at + middle.len as usize], "  {}  ");
    }

    /// Bytes examined reading `text`.
    fn work(text: &[u8]) -> u64 {
        EXAMINED.with(|c| c.set(0));
        let scan = scan(text, MAX_LINE_BYTES).unwrap();
        assert_eq!(scan.records.len(), 1, "{:?}", scan.bad_lines);
        EXAMINED.with(std::cell::Cell::get)
    }

    #[test]
    fn reading_runs_of_nuls_is_linear() {
        // 2 MiB of NULs (what a crash can leave after failed fdatasyncs)
        // before a record: each byte is examined a bounded number of times,
        // not once per NUL for the whole read buffer.
        let l = line("b");
        for nuls in [64 * 1024, 2 * 1024 * 1024] {
            let text = [vec![0; nuls], format!("{l}\n").into_bytes()].concat();
            let n = work(&text);
            assert!(
                n <= 3 * text.len() as u64,
                "{n} bytes examined for a {}-byte file",
                text.len()
            );
        }
        // Short pieces between NULs on one long line, too.
        let mut text = b"x\0".repeat(512 * 1024);
        text.extend_from_slice(format!("\n{l}\n").as_bytes());
        EXAMINED.with(|c| c.set(0));
        let scan = scan(&text[..], MAX_LINE_BYTES).unwrap();
        assert_eq!(scan.records.len(), 1);
        let n = EXAMINED.with(std::cell::Cell::get);
        assert!(
            n <= 3 * text.len() as u64,
            "{n} bytes examined for {}",
            text.len()
        );
    }

    #[test]
    fn crlf_and_missing_final_newline_are_fine() {
        let text = format!("{}\r\n{}", line("a"), line("b"));
        let scan = scan(text.as_bytes(), MAX_LINE_BYTES).unwrap();
        assert_eq!(scan.records.len(), 2);
        assert!(scan.bad_lines.is_empty());
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let r = Record::finished("c1", "success");
        let bytes = encode_line(&r).unwrap();
        assert_eq!(bytes.last(), Some(&b'\n'));
        assert_eq!(decode_line(&bytes[..bytes.len() - 1]).unwrap(), r);
    }
}
