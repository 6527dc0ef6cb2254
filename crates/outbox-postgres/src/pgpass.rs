//! Where a connection's password comes from when the URL has none, as
//! libpq does it: `PGPASSWORD`, else the password file (`PGPASSFILE`, else
//! `~/.pgpass`), whose lines are `host:port:database:user:password`, each of
//! the first four a literal or `*`, with `\` escaping `:` and `\`; the first
//! matching line wins; lines starting with `#` are comments. A file that
//! its group or others may read is ignored, as libpq ignores it (its mode
//! must be 0600 or stricter). Over a Unix-domain socket the host field
//! matches `localhost`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio_postgres::config::Host;

/// What a connection attempt is, for the password file's fields.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target<'a> {
    pub host: &'a Host,
    pub port: u16,
    pub dbname: &'a str,
    pub user: &'a str,
}

/// The password for `target` when the URL has none: `PGPASSWORD`, else the
/// password file's first matching line.
pub(crate) fn password(target: Target<'_>) -> Option<String> {
    if let Some(pw) = std::env::var_os("PGPASSWORD") {
        return Some(pw.to_string_lossy().into_owned());
    }
    from_file(&file()?, target)
}

/// The password file: `PGPASSFILE`, else `$HOME/.pgpass`.
pub(crate) fn file() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PGPASSFILE") {
        return Some(PathBuf::from(path));
    }
    Some(Path::new(&std::env::var_os("HOME")?).join(".pgpass"))
}

/// The first line of the password file at `path` that matches `target`;
/// `None` when there is none, or the file cannot be read, or its group or
/// others have any access to it.
pub(crate) fn from_file(path: &Path, target: Target<'_>) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
        return None;
    }
    lookup(&std::fs::read_to_string(path).ok()?, target)
}

/// The first line of `text` (a password file) that matches `target`.
pub(crate) fn lookup(text: &str, target: Target<'_>) -> Option<String> {
    let host = match target.host {
        Host::Tcp(name) => name.as_str(),
        Host::Unix(_) => "localhost",
    };
    let port = target.port.to_string();
    let wanted = [host, port.as_str(), target.dbname, target.user];
    text.lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .find_map(|line| {
            let fields = split(line)?;
            let matches = fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, want)| field.wildcard || field.text == want);
            matches.then(|| fields[4].text.clone())
        })
}

/// One field of a line: its text unescaped, and whether it was written as
/// a bare `*` (a wildcard; `\*` is a literal star, as in libpq).
#[derive(Default)]
struct Field {
    text: String,
    wildcard: bool,
}

/// A line's five fields; `None` for a line with fewer.
fn split(line: &str) -> Option<[Field; 5]> {
    let mut fields: Vec<Field> = Vec::new();
    let mut field = Field::default();
    let mut raw_star = true;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                raw_star = false;
                if let Some(next) = chars.next() {
                    field.text.push(next);
                }
            }
            // The password is the rest of the line, colons included.
            ':' if fields.len() < 4 => {
                field.wildcard = raw_star && field.text == "*";
                fields.push(std::mem::take(&mut field));
                raw_star = true;
            }
            c => field.text.push(c),
        }
    }
    fields.push(field);
    fields.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(h: &str) -> Host {
        Host::Tcp(h.to_owned())
    }

    fn t<'a>(host: &'a Host, port: u16, db: &'a str, user: &'a str) -> Target<'a> {
        Target {
            host,
            port,
            dbname: db,
            user,
        }
    }

    #[test]
    fn the_first_matching_line_wins_with_wildcards() {
        let text = "# comment\n\
                    db.example:5432:app:alice:first\n\
                    *:5432:app:alice:second\n\
                    *:*:*:*:fallback\n";
        let h = tcp("db.example");
        assert_eq!(
            lookup(text, t(&h, 5432, "app", "alice")).as_deref(),
            Some("first")
        );
        let other = tcp("other");
        assert_eq!(
            lookup(text, t(&other, 5432, "app", "alice")).as_deref(),
            Some("second")
        );
        assert_eq!(
            lookup(text, t(&other, 6543, "app", "alice")).as_deref(),
            Some("fallback")
        );
        assert_eq!(lookup("h:1:d:u:pw\n", t(&other, 1, "d", "u")), None);
    }

    #[test]
    fn backslash_escapes_colon_and_backslash() {
        let text = "h\\:x:5432:d\\\\b:u:p\\:w\\\\d:with:colons\n";
        let h = tcp("h:x");
        assert_eq!(
            lookup(text, t(&h, 5432, "d\\b", "u")).as_deref(),
            Some("p:w\\d:with:colons")
        );
        // An escaped star is a literal star, not a wildcard.
        let text = "\\*:5432:d:u:pw\n";
        assert_eq!(lookup(text, t(&tcp("h"), 5432, "d", "u")), None);
        assert_eq!(
            lookup(text, t(&tcp("*"), 5432, "d", "u")).as_deref(),
            Some("pw")
        );
    }

    #[test]
    fn a_unix_socket_matches_localhost_and_short_lines_are_skipped() {
        let sock = Host::Unix("/var/run/postgresql".into());
        let text = "localhost:5432:d\nlocalhost:5432:d:u:pw\r\n";
        assert_eq!(
            lookup(text, t(&sock, 5432, "d", "u")).as_deref(),
            Some("pw")
        );
    }

    #[test]
    fn a_file_others_can_read_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:*:secret\n").unwrap();
        let h = tcp("h");
        let target = t(&h, 5432, "d", "u");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(from_file(&path, target), None, "0644 is ignored");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(from_file(&path, target).as_deref(), Some("secret"));
        assert_eq!(from_file(&dir.path().join("missing"), target), None);
    }
}
