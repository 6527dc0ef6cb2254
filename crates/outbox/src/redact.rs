//! A store URL's password never reaches a message: the one place that
//! decides what a password looks like in a URL or a `key=value` connection
//! string, and masks it. It lives here, beside the [`Store`](crate::Store)
//! trait, so every store and every front end (a CLI built without a
//! database store included) masks the same way.
//!
//! [`redact_url`] masks one URL (for a message about it); [`redact_text`]
//! masks every URL and `password=` setting inside free text (a driver's
//! error, a usage error that echoes an argument), so an output path can be
//! scrubbed as a whole before it is written; [`has_password`] says whether
//! a URL carries one (`outbox hooks` refuses to write such a URL into a
//! hook's command).

/// The mask written instead of a password.
pub const MASK: &str = "***";

/// Whether a query or `key=value` key names a password: any key with
/// `pass` in it (`password`, `sslpassword`, `passfile` is harmless but
/// masked too), or a percent-encoded key, which could spell one.
fn is_secret_key(key: &str) -> bool {
    key.to_ascii_lowercase().contains("pass") || key.contains('%')
}

/// The byte range of the password in `url`'s user info
/// (`scheme://user:PASSWORD@host`), if it has one.
///
/// An unencoded `@`, `/`, `?` or `#` in a password makes a URL ambiguous,
/// and readers disagree: the driver (`tokio-postgres`) ends the user info
/// at the first `@`, a person at the one before the host. The range covers
/// every reading: a password exists when a `:` precedes the first `@` (as
/// the driver reads it), and it is taken to run to the *last* `@` of the
/// URL. So whatever the driver sends, and whatever the user meant, is
/// masked; the cost is a host masked too when a query value holds an `@`.
fn userinfo_password(url: &str) -> Option<std::ops::Range<usize>> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let first_at = rest.find('@')?;
    let colon = rest[..first_at].find(':')?;
    let last_at = rest.rfind('@')?;
    Some(start + colon + 1..start + last_at)
}

/// `url` with any password replaced by `***`: in its user info, in a
/// query parameter (`?password=`), or anywhere in a `key=value` string
/// (`host=h password=x`). Everything else is kept, so the message still
/// names the host, port, database and user.
pub fn redact_url(url: &str) -> String {
    if !url.contains("://") {
        return redact_key_values(url);
    }
    let mut text = match userinfo_password(url) {
        Some(range) => format!("{}{MASK}{}", &url[..range.start], &url[range.end..]),
        None => url.to_owned(),
    };
    if let Some(q) = text.find('?') {
        let params: Vec<String> = text[q + 1..]
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if is_secret_key(k) => format!("{k}={MASK}"),
                _ => p.to_owned(),
            })
            .collect();
        text = format!("{}?{}", &text[..q], params.join("&"));
    }
    text
}

/// The passwords `url` carries, as written and percent-decoded (each
/// once): its user info's, and the value of every secret query parameter
/// or `key=value` setting. For a caller that knows the URL it was given
/// and masks those exact strings wherever they appear (`outbox`'s scrub),
/// which catches a password that [`redact_text`] cannot see as one (a
/// space in it splits the URL into words).
pub fn passwords(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(range) = userinfo_password(url) {
        found.push(url[range].to_owned());
    }
    let settings = match url.split_once('?') {
        Some((_, query)) if url.contains("://") => query,
        _ if !url.contains("://") => url,
        _ => "",
    };
    for (key, value) in key_values(settings) {
        if is_secret_key(key) {
            found.push(value.trim_matches('\'').to_owned());
        }
    }
    let decoded: Vec<String> = found.iter().map(|p| percent_decode(p)).collect();
    found.extend(decoded);
    found.retain(|p| !p.is_empty());
    found.sort();
    found.dedup();
    found
}

/// `text` with each `%XX` escape decoded (bytes that do not form UTF-8
/// are replaced); anything else kept.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `url` carries a password (in its user info, a query parameter
/// or a `key=value` setting): what [`redact_url`] would mask.
pub fn has_password(url: &str) -> bool {
    redact_url(url) != url
}

/// The `key=value` settings of `text` (separated by whitespace or `&`;
/// a value may be single-quoted, quotes kept), in order.
fn key_values(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let key_start = rest[..eq]
            .rfind(|c: char| c.is_whitespace() || c == '?' || c == '&')
            .map_or(0, |i| i + 1);
        let after = &rest[eq + 1..];
        let len = value_len(after);
        out.push((&rest[key_start..eq], &after[..len]));
        rest = &after[len..];
    }
    out
}

/// A `key=value ...` string with the value of every secret key masked
/// (values in single quotes included).
fn redact_key_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let key_start = rest[..eq]
            .rfind(|c: char| c.is_whitespace() || c == '?' || c == '&')
            .map_or(0, |i| i + 1);
        let key = &rest[key_start..eq];
        out.push_str(&rest[..=eq]);
        let after = &rest[eq + 1..];
        let value_len = value_len(after);
        if !key.is_empty() && is_secret_key(key) {
            out.push_str(MASK);
        } else {
            out.push_str(&after[..value_len]);
        }
        rest = &after[value_len..];
    }
    out.push_str(rest);
    out
}

/// The length of a `key=value` value at the start of `text`: a single-quoted
/// string (with `\'` escapes), else up to whitespace, `&` or a quote.
fn value_len(text: &str) -> usize {
    if let Some(quoted) = text.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '\'' if !escaped => return i + 2,
                _ => escaped = false,
            }
        }
        return text.len();
    }
    text.find(|c: char| c.is_whitespace() || matches!(c, '&' | '"' | '\'' | '`'))
        .unwrap_or(text.len())
}

/// `text` with every password masked: each URL in it (a word holding
/// `://`) through [`redact_url`], and every `key=value` setting whose key
/// names a password. For a whole message or output line, when it may echo
/// a URL or connection string it did not format itself.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        // A word: up to whitespace. Quotes stay in the word (a password may
        // hold one); the scheme is found inside it wherever it starts.
        let boundary = |c: char| c.is_whitespace();
        let start = rest.find(|c: char| !boundary(c)).unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(boundary).unwrap_or(rest.len());
        let word = &rest[..end];
        if word.contains("://") {
            out.push_str(&redact_url(word));
        } else {
            out.push_str(word);
        }
        rest = &rest[end..];
    }
    redact_key_values_in_text(&out)
}

/// The `key=value` pass of [`redact_text`]: only settings whose key names a
/// password, so other `=` in a message (`count=3`) are left alone.
fn redact_key_values_in_text(text: &str) -> String {
    if !text.to_ascii_lowercase().contains("pass") {
        return text.to_owned();
    }
    redact_key_values(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t";

    #[test]
    fn the_password_of_a_url_is_masked_and_the_rest_kept() {
        assert_eq!(
            redact_url("postgres://u:s3cr3t@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://u@h/db?password=s3cr3t&port=5"),
            "postgres://u@h/db?password=***&port=5"
        );
        // '@' in the password, unencoded; '@' in the query only.
        assert_eq!(
            redact_url("postgres://u:s3@cr3t@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            redact_url("postgres://u@h/db?application_name=a@b"),
            "postgres://u@h/db?application_name=a@b"
        );
        assert_eq!(
            redact_url("postgresql://:s3cr3t@h/db"),
            "postgresql://:***@h/db"
        );
    }

    #[test]
    fn nothing_that_spells_a_password_survives() {
        for url in [
            "postgres://u:s3cr3t@h:5432/db",
            "postgres://u:s3cr3t@h1,h2:5433/db?sslmode=require",
            "postgres://h/db?user=u&password=s3cr3t",
            "postgres://h/db?PASSWORD=s3cr3t",
            "postgres://h/db?pass%77ord=s3cr3t",
            "postgres://u:s3cr3t@/db?host=/run/postgresql",
            "host=h password=s3cr3t dbname=db",
            "host=h password='s3 cr3t' dbname=db",
            "host=h PASSWORD=s3cr3t",
            "postgres://u:s3cr3t@h:x/db",
        ] {
            let shown = redact_url(url);
            assert!(
                !shown.contains(SECRET) && !shown.contains("cr3t"),
                "{url} -> {shown}"
            );
            assert!(has_password(url), "{url}");
        }
        assert!(!has_password("postgres://u@h:5432/db?sslmode=require"));
        assert!(!has_password("host=h user=u dbname=db"));
    }

    #[test]
    fn the_passwords_of_a_url_are_found_as_written_and_decoded() {
        assert_eq!(passwords("postgres://u:p%40ss@h/db"), ["p%40ss", "p@ss"]);
        assert_eq!(
            passwords("postgres://h/db?password=x%20y&port=1"),
            ["x y", "x%20y"]
        );
        assert_eq!(passwords("host=h password='a b' user=u"), ["a b"]);
        assert!(passwords("postgres://u@h:5432/db").is_empty());
    }

    #[test]
    fn an_ambiguous_password_is_masked_as_every_reader_would_split_it() {
        for (url, shown) in [
            // The driver sends "Qa"; the user meant "Qa@b/cZ".
            (
                "postgres://u:Qa@b/cZ@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("postgres://u:Qa?bZ@h/db", "postgres://u:***@h/db"),
            ("postgres://u:Qa#bZ@h/db", "postgres://u:***@h/db"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    proptest::proptest! {
        /// A password of any characters a person might type, unencoded,
        /// in the user info: neither end of it survives (its first and
        /// last characters are letters found nowhere else in the URL).
        #[test]
        fn no_typed_password_survives_in_the_user_info(
            middle in "[a-z0-9@:/?#&=%' !.+-]{0,24}",
            query in proptest::option::of("[a-z_]{1,8}=[a-z0-9@:/.]{0,8}"),
        ) {
            let password = format!("Q{middle}Z");
            let mut url = format!("postgres://agent:{password}@db.internal:5432/agents");
            if let Some(q) = &query {
                url = format!("{url}?{q}");
            }
            let shown = redact_url(&url);
            proptest::prop_assert!(!shown.contains('Q') && !shown.contains('Z'), "{url} -> {shown}");
            proptest::prop_assert!(has_password(&url));
            let text = redact_text(&format!("error: cannot use '{url}' here"));
            proptest::prop_assert!(!text.contains('Q') && !text.contains('Z') || middle.contains(' '), "{text}");
        }
    }

    #[test]
    fn a_quote_in_a_password_does_not_split_it() {
        let shown = redact_text("found 'postgres://u:ab'cd@h/db' here");
        assert!(
            !shown.contains("ab'cd") && !shown.contains("cd@"),
            "{shown}"
        );
    }

    #[test]
    fn urls_inside_text_are_masked_wherever_they_stand() {
        let text = "error: unexpected argument 'postgres://u:s3cr3t@h/db' found; \
                    see \"postgres://v:s3cr3t@h/db\" and (postgres://w:s3cr3t@h/db), \
                    host=h password=s3cr3t, count=3";
        let shown = redact_text(text);
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("postgres://u:***@h/db"), "{shown}");
        assert!(shown.contains("count=3"), "{shown}");
        assert_eq!(
            redact_text("nothing to hide = here"),
            "nothing to hide = here"
        );
    }
}
