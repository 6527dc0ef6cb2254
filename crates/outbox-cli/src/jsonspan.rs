//! A JSON reader that keeps byte positions, so a settings file can be edited
//! surgically: `hooks install` inserts text at a position and `hooks
//! uninstall` removes exactly that text, leaving every other byte of the
//! file (its formatting, key order, escapes, number spellings) as it was.
//!
//! The text is first checked by `serde_json` (strict JSON, with its line and
//! column on error); this reader then only locates values, and returns an
//! error rather than panicking on anything it does not expect.

use std::ops::Range;

/// One JSON value and where it is in the text.
#[derive(Debug, Clone)]
pub enum Node {
    /// `{...}`: its span (braces included) and members in file order.
    Object(Range<usize>, Vec<Member>),
    /// `[...]`: its span (brackets included) and items in file order.
    Array(Range<usize>, Vec<Node>),
    /// A string: its span (quotes included) and decoded value.
    Str(Range<usize>, String),
    /// A number, `true`, `false` or `null`.
    Other(Range<usize>),
}

/// One `"key": value` of an object.
#[derive(Debug, Clone)]
pub struct Member {
    /// The span of the key (quotes included).
    pub key_span: Range<usize>,
    /// The decoded key.
    pub key: String,
    /// The value.
    pub value: Node,
}

impl Node {
    /// The value's span in the text.
    pub fn span(&self) -> Range<usize> {
        match self {
            Node::Object(s, _) | Node::Array(s, _) | Node::Str(s, _) | Node::Other(s) => s.clone(),
        }
    }

    /// The value of the last member named `key` (the one JSON.parse and
    /// serde_json keep when a key repeats), and its index.
    pub fn get(&self, key: &str) -> Option<(usize, &Node)> {
        match self {
            Node::Object(_, members) => members
                .iter()
                .enumerate()
                .rev()
                .find(|(_, m)| m.key == key)
                .map(|(i, m)| (i, &m.value)),
            _ => None,
        }
    }

    /// The string value, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(_, s) => Some(s),
            _ => None,
        }
    }

    /// What kind of value this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Object(..) => "an object",
            Node::Array(..) => "a list",
            Node::Str(..) => "a string",
            Node::Other(..) => "a number, boolean or null",
        }
    }
}

/// Parses `text` (valid JSON, checked by serde_json first) into nodes with
/// spans. Leading and trailing whitespace are allowed; a UTF-8 byte-order
/// mark is kept out of the value (the caller decides what to do with it).
pub fn parse(text: &str) -> Result<Node, String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| e.to_string())?;
    let mut p = Parser { text, pos: 0 };
    p.ws();
    let node = p.value(0)?;
    p.ws();
    if p.pos != text.len() {
        return Err(format!("unexpected text at byte {}", p.pos));
    }
    Ok(node)
}

/// The deepest nesting the reader follows (serde_json's own limit is 128).
const MAX_DEPTH: usize = 128;

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at byte {}", byte as char, self.pos))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, String> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply".to_owned());
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => {
                let (span, s) = self.string()?;
                Ok(Node::Str(span, s))
            }
            Some(_) => {
                let start = self.pos;
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.pos += 1;
                }
                if self.pos == start {
                    return Err(format!("expected a value at byte {start}"));
                }
                Ok(Node::Other(start..self.pos))
            }
            None => Err("unexpected end of text".to_owned()),
        }
    }

    fn string(&mut self) -> Result<(Range<usize>, String), String> {
        let start = self.pos;
        self.expect(b'"')?;
        loop {
            match self.peek() {
                Some(b'"') => break,
                Some(b'\\') => self.pos += 2,
                Some(_) => self.pos += 1,
                None => return Err("unterminated string".to_owned()),
            }
        }
        self.pos += 1;
        let raw = self
            .text
            .get(start..self.pos)
            .ok_or_else(|| format!("bad string at byte {start}"))?;
        let value: String = serde_json::from_str(raw).map_err(|e| e.to_string())?;
        Ok((start..self.pos, value))
    }

    fn object(&mut self, depth: usize) -> Result<Node, String> {
        let start = self.pos;
        self.expect(b'{')?;
        let mut members = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Node::Object(start..self.pos, members));
        }
        loop {
            self.ws();
            let (key_span, key) = self.string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            let value = self.value(depth + 1)?;
            members.push(Member {
                key_span,
                key,
                value,
            });
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Node::Object(start..self.pos, members));
                }
                _ => return Err(format!("expected ',' or '}}' at byte {}", self.pos)),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Node, String> {
        let start = self.pos;
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Node::Array(start..self.pos, items));
        }
        loop {
            self.ws();
            items.push(self.value(depth + 1)?);
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Node::Array(start..self.pos, items));
                }
                _ => return Err(format!("expected ',' or ']' at byte {}", self.pos)),
            }
        }
    }
}

/// How a file is indented: one level's whitespace, or `None` for JSON on
/// one line.
pub fn indent_unit(text: &str) -> Option<String> {
    // The first indented line holds a member of the outermost value, one
    // level deep, in every pretty-printed file.
    text.split('\n').skip(1).find_map(|line| {
        let unit: String = line
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .collect();
        (!unit.is_empty() && line.len() > unit.len()).then_some(unit)
    })
}

/// The span of a container's item (a member: from its key to the end of its
/// value).
pub fn item_span(node: &Node, index: usize) -> Option<Range<usize>> {
    match node {
        Node::Object(_, members) => members
            .get(index)
            .map(|m| m.key_span.start..m.value.span().end),
        Node::Array(_, items) => items.get(index).map(Node::span),
        _ => None,
    }
}

fn item_count(node: &Node) -> usize {
    match node {
        Node::Object(_, m) => m.len(),
        Node::Array(_, i) => i.len(),
        _ => 0,
    }
}

/// The text to remove to take item `index` out of `container`: from the
/// end of the item before it (its comma and whitespace) to its own end; for
/// the first item, to the start of the next; for the only item, everything
/// between the brackets. The inverse of [`append_edit`].
pub fn remove_range(container: &Node, index: usize) -> Option<Range<usize>> {
    let n = item_count(container);
    let this = item_span(container, index)?;
    let outer = container.span();
    Some(if n == 1 {
        outer.start + 1..outer.end - 1
    } else if index > 0 {
        item_span(container, index - 1)?.end..this.end
    } else {
        this.start..item_span(container, 1)?.start
    })
}

/// The edit that appends `item` (already formatted for `depth + 1`, the
/// depth of the container's items) to `container` at nesting `depth`:
/// `(range to replace, replacement)`.
pub fn append_edit(
    container: &Node,
    depth: usize,
    unit: Option<&str>,
    item: &str,
) -> (Range<usize>, String) {
    let outer = container.span();
    let n = item_count(container);
    let (nl_inner, nl_outer) = match unit {
        Some(unit) => (
            format!("\n{}", unit.repeat(depth + 1)),
            format!("\n{}", unit.repeat(depth)),
        ),
        None => (String::new(), String::new()),
    };
    if n == 0 {
        (
            outer.start + 1..outer.end - 1,
            format!("{nl_inner}{item}{nl_outer}"),
        )
    } else {
        let end = item_span(container, n - 1).map_or(outer.end - 1, |s| s.end);
        (end..end, format!(",{nl_inner}{item}"))
    }
}

/// `value` as JSON in the file's style, for a position `depth` levels deep:
/// pretty-printed with `unit` (its lines after the first indented to that
/// depth), or on one line.
pub fn format_value(
    value: &impl serde::Serialize,
    depth: usize,
    unit: Option<&str>,
) -> Result<String, String> {
    let Some(unit) = unit else {
        return serde_json::to_string(value).map_err(|e| e.to_string());
    };
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(unit.as_bytes());
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut ser).map_err(|e| e.to_string())?;
    let text = String::from_utf8(out).map_err(|e| e.to_string())?;
    Ok(text.replace('\n', &format!("\n{}", unit.repeat(depth))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_the_values() {
        let text = " {\"a\": [1, \"x\\\"y\"], \"b\": {}, \"a\": true} ";
        let node = parse(text).unwrap();
        let (i, a) = node.get("a").unwrap();
        assert_eq!(i, 2, "the last of a repeated key");
        assert_eq!(&text[a.span()], "true");
        let Node::Object(_, members) = &node else {
            panic!()
        };
        let Node::Array(_, items) = &members[0].value else {
            panic!()
        };
        assert_eq!(items[1].as_str(), Some("x\"y"));
        assert_eq!(&text[items[1].span()], "\"x\\\"y\"");
    }

    #[test]
    fn bad_json_is_an_error_never_a_panic() {
        for bad in [
            "",
            "{",
            "{\"a\":}",
            "[1,]",
            "{} {}",
            "// c\n{}",
            "{\"a\":1,}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn append_then_remove_is_the_identity() {
        for (text, unit) in [
            ("{\n  \"a\": [\n    1\n  ]\n}\n", Some("  ")),
            ("{\"a\":[1]}", None),
            ("{\n\t\"a\": []\n}", Some("\t")),
        ] {
            let node = parse(text).unwrap();
            let (_, a) = node.get("a").unwrap();
            let item = format_value(&serde_json::json!({"k": [2]}), 2, unit).unwrap();
            let (range, with) = append_edit(a, 1, unit, &item);
            let mut edited = text.to_owned();
            edited.replace_range(range, &with);
            let node = parse(&edited).unwrap();
            let (_, a) = node.get("a").unwrap();
            let last = item_count(a) - 1;
            let mut back = edited.clone();
            back.replace_range(remove_range(a, last).unwrap(), "");
            assert_eq!(back, text, "{edited}");
        }
    }

    #[test]
    fn the_indent_is_read_from_the_file() {
        assert_eq!(indent_unit("{\n  \"a\": 1\n}").as_deref(), Some("  "));
        assert_eq!(indent_unit("{\n    \"a\": 1\n}").as_deref(), Some("    "));
        assert_eq!(indent_unit("{\"a\": 1}"), None);
    }
}
