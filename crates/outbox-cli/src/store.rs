//! Which store the commands use: `--store URL` or `--store-file FILE`,
//! else `--root DIR`, else `OUTBOX_STORE` or `OUTBOX_STORE_FILE`, else the
//! data root of `root.rs` (the file store, the default). A store file
//! holds the store's URL (with its password, kept out of argv and
//! settings): it must be the user's and private (`private::read_store_file`). A `postgres://` (or `postgresql://`) URL is the PostgreSQL
//! store; `file:PATH` or a plain path is the file store on that root.
//! [`AnyStore`] is either, as one [`Store`].
//!
//! The PostgreSQL store is the cargo feature `postgres` (off by default, so
//! an install for one machine compiles no async runtime or database
//! client); without it a `postgres://` URL is refused by [`parse`] with
//! the install line that enables it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use outbox::handover::Handover;
use outbox::{Committed, DrainWithError, Drained, Outbox, Record, Result, Store, SweepReport};
#[cfg(feature = "postgres")]
use outbox_postgres::PgOutbox;

use crate::root::{self, Source};

/// Where the records are. Its `Debug` hides a URL's password.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// The file store on this data root.
    Files(PathBuf),
    /// The PostgreSQL store at this URL.
    #[cfg(feature = "postgres")]
    Postgres(String),
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Files(root) => f.debug_tuple("Files").field(root).finish(),
            #[cfg(feature = "postgres")]
            Location::Postgres(url) => f
                .debug_tuple("Postgres")
                .field(&outbox::redact::redact_url(url))
                .finish(),
        }
    }
}

/// The install line of a build with the PostgreSQL store, for the error a
/// build without it gives.
#[cfg(not(feature = "postgres"))]
pub const POSTGRES_INSTALL: &str = "cargo install --locked --features postgres outbox-cli (from \
     a clone: cargo install --locked --features postgres --path crates/outbox-cli)";

/// Which setting chose the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chooser {
    /// The `--store` flag.
    StoreFlag,
    /// The `OUTBOX_STORE` environment variable.
    StoreEnv,
    /// A store file: `--store-file` (`env` false) or `OUTBOX_STORE_FILE`.
    StoreFile {
        /// The file, as given.
        path: PathBuf,
        /// Named by the environment variable, not the flag.
        env: bool,
    },
    /// A data-root setting (`--root`, `OUTBOX_ROOT`, the XDG or home
    /// default).
    Root(Source),
}

impl Chooser {
    /// How a person would name the setting.
    pub fn describe(&self) -> &'static str {
        match self {
            Chooser::StoreFlag => "--store",
            Chooser::StoreEnv => "$OUTBOX_STORE",
            Chooser::StoreFile { env: false, .. } => "--store-file",
            Chooser::StoreFile { env: true, .. } => "$OUTBOX_STORE_FILE",
            Chooser::Root(source) => source.describe(),
        }
    }
}

/// Reads a `--store` / `OUTBOX_STORE` value.
///
/// Messages about a refused value name its scheme, never the rest of it,
/// which may hold a password.
pub fn parse(value: &str) -> std::result::Result<Location, String> {
    let value = value.trim();
    if let Some(scheme) = ["postgres://", "postgresql://"]
        .into_iter()
        .find(|s| value.starts_with(s))
    {
        return postgres(scheme, value);
    }
    let path = value.strip_prefix("file:").unwrap_or(value);
    if path.is_empty() {
        return Err(format!(
            "store {value:?}: expected postgres://... or a data root path (file:PATH)"
        ));
    }
    if let Some((scheme, _)) = path.split_once("://") {
        return Err(format!(
            "store with unknown scheme {scheme:?}: expected postgres://... or a data root path"
        ));
    }
    Ok(Location::Files(PathBuf::from(path)))
}

/// A `postgres://` URL: the PostgreSQL store.
#[cfg(feature = "postgres")]
fn postgres(_scheme: &str, url: &str) -> std::result::Result<Location, String> {
    Ok(Location::Postgres(url.to_owned()))
}

/// A `postgres://` URL in a build without the PostgreSQL store: refused,
/// with the install line of a build that has it.
#[cfg(not(feature = "postgres"))]
fn postgres(scheme: &str, _url: &str) -> std::result::Result<Location, String> {
    Err(format!(
        "store {scheme}...: this outbox was built without the PostgreSQL store (cargo \
         feature \"postgres\"); install one with it: {POSTGRES_INSTALL}"
    ))
}

/// Resolves the store: `--store` or `--store-file`, else `--root`, else
/// `OUTBOX_STORE` or `OUTBOX_STORE_FILE` (both set is an error), else
/// `OUTBOX_ROOT` and the data-root defaults (flags before variables).
pub fn resolve(
    store_flag: Option<String>,
    store_file_flag: Option<PathBuf>,
    root_flag: Option<PathBuf>,
    env: impl Fn(&str) -> Option<OsString>,
) -> std::result::Result<(Location, Chooser), String> {
    if let Some(value) = store_flag {
        return Ok((
            parse(&value).map_err(|e| format!("--store: {e}"))?,
            Chooser::StoreFlag,
        ));
    }
    let from_file = |path: PathBuf, env: bool| {
        let what = if env {
            format!("$OUTBOX_STORE_FILE ({})", path.display())
        } else {
            format!("--store-file {}", path.display())
        };
        let value = crate::private::read_store_file(&path).map_err(|e| format!("{what}: {e}"))?;
        let location = parse(&value).map_err(|e| format!("{what}: {e}"))?;
        Ok((location, Chooser::StoreFile { path, env }))
    };
    if let Some(path) = store_file_flag {
        return from_file(path, false);
    }
    let store_file_env = env("OUTBOX_STORE_FILE").filter(|v| !v.is_empty());
    if root_flag.is_none() && store_file_env.is_some() {
        if env("OUTBOX_STORE").is_some_and(|v| !v.is_empty()) {
            return Err("both $OUTBOX_STORE and $OUTBOX_STORE_FILE are set: unset one".to_owned());
        }
        return from_file(PathBuf::from(store_file_env.unwrap_or_default()), true);
    }
    if root_flag.is_none()
        && let Some(value) = env("OUTBOX_STORE").filter(|v| !v.is_empty())
    {
        let value = value
            .into_string()
            .map_err(|_| "$OUTBOX_STORE is not UTF-8".to_owned())?;
        return Ok((
            parse(&value).map_err(|e| format!("$OUTBOX_STORE: {e}"))?,
            Chooser::StoreEnv,
        ));
    }
    let (root, source) = root::resolve(root_flag, env)?;
    Ok((Location::Files(root), Chooser::Root(source)))
}

/// The file outbox or the PostgreSQL store.
#[derive(Debug)]
pub enum AnyStore {
    /// The file outbox.
    Files(Outbox),
    /// The PostgreSQL store.
    #[cfg(feature = "postgres")]
    Postgres(PgOutbox),
}

#[cfg(feature = "postgres")]
impl AnyStore {
    /// Connects to the PostgreSQL store at `url` (creating or migrating its
    /// schema).
    pub fn postgres(url: &str) -> Result<Self> {
        PgOutbox::connect(url).map(AnyStore::Postgres)
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Files($s) => $e,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres($s) => $e,
        }
    };
}

impl Store for AnyStore {
    fn describe(&self) -> String {
        each!(self, s => Store::describe(s))
    }

    fn commit(&self, parent: &str, record: Record) -> Result<Committed> {
        each!(self, s => Store::commit(s, parent, record))
    }

    fn drain(&self, parent: &str) -> Result<Drained> {
        each!(self, s => Store::drain(s, parent))
    }

    fn drain_with_max<E>(
        &self,
        parent: &str,
        max: usize,
        deliver: impl FnOnce(&[Record]) -> std::result::Result<(), E>,
    ) -> Result<Drained, DrainWithError<E>> {
        each!(self, s => Store::drain_with_max(s, parent, max, deliver))
    }

    fn has_pending(&self, parent: &str) -> Result<bool> {
        each!(self, s => Store::has_pending(s, parent))
    }

    fn peek(&self, parent: &str) -> Result<Vec<Record>> {
        each!(self, s => Store::peek(s, parent))
    }

    fn sweep_transition(&self, parent: &str, child: &str, from: &str, to: &str) -> Result<usize> {
        each!(self, s => Store::sweep_transition(s, parent, child, from, to))
    }

    fn sweep_stale(&self, parent: &str, max_age: Duration) -> Result<usize> {
        each!(self, s => Store::sweep_stale(s, parent, max_age))
    }

    fn sweep_stale_all(&self, max_age: Duration) -> Result<SweepReport> {
        each!(self, s => Store::sweep_stale_all(s, max_age))
    }

    fn forget_child(&self, parent: &str, child: &str) -> Result<usize> {
        each!(self, s => Store::forget_child(s, parent, child))
    }

    fn handover(&self, parent: &str) -> Result<Handover> {
        each!(self, s => Store::handover(s, parent))
    }

    fn set_handover(&self, parent: &str, state: &Handover) -> Result<()> {
        each!(self, s => Store::set_handover(s, parent, state))
    }

    fn consume_turns(&self, parent: &str, keys: &[String]) -> Result<Drained> {
        each!(self, s => Store::consume_turns(s, parent, keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    #[cfg(feature = "postgres")]
    fn postgres_urls_choose_the_postgres_store() {
        assert_eq!(
            parse("postgres://u@h/db").unwrap(),
            Location::Postgres("postgres://u@h/db".into())
        );
        assert_eq!(
            parse("postgresql://h/db").unwrap(),
            Location::Postgres("postgresql://h/db".into())
        );
    }

    #[test]
    #[cfg(not(feature = "postgres"))]
    fn postgres_urls_without_the_feature_name_it_and_hide_the_url() {
        for url in [
            "postgres://u:secret@h/db",
            " postgresql://h/db?password=secret",
        ] {
            let e = parse(url).unwrap_err();
            assert!(e.contains("cargo feature \"postgres\""), "{e}");
            assert!(e.contains(POSTGRES_INSTALL), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn urls_and_paths_choose_the_store() {
        assert_eq!(
            parse("file:/srv/ob").unwrap(),
            Location::Files("/srv/ob".into())
        );
        assert_eq!(parse("/srv/ob").unwrap(), Location::Files("/srv/ob".into()));
        assert!(
            parse("mysql://h/db")
                .unwrap_err()
                .contains("unknown scheme")
        );
        assert!(parse("file:").is_err());
    }

    #[test]
    fn a_refused_store_url_never_shows_its_password() {
        for value in [
            "pg://u:secret@h/db",
            "POSTGRES://u:secret@h/db",
            "postgres+tls://u:secret@h/db",
            "mysql://h/db?password=secret",
        ] {
            let e = parse(value).unwrap_err();
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn flags_come_before_variables() {
        let vars = [
            ("OUTBOX_STORE", "postgres://h/db"),
            ("OUTBOX_ROOT", "/env/root"),
        ];
        assert_eq!(
            resolve(Some("/flag".into()), None, None, env(&vars)).unwrap(),
            (Location::Files("/flag".into()), Chooser::StoreFlag)
        );
        assert_eq!(
            resolve(None, None, Some("/root".into()), env(&vars)).unwrap(),
            (Location::Files("/root".into()), Chooser::Root(Source::Flag))
        );
        #[cfg(feature = "postgres")]
        assert_eq!(
            resolve(None, None, None, env(&vars)).unwrap(),
            (
                Location::Postgres("postgres://h/db".into()),
                Chooser::StoreEnv
            )
        );
        #[cfg(not(feature = "postgres"))]
        assert!(
            resolve(None, None, None, env(&vars))
                .unwrap_err()
                .starts_with("$OUTBOX_STORE: store postgres://...: ")
        );
        assert_eq!(
            resolve(None, None, None, env(&vars[1..])).unwrap(),
            (
                Location::Files("/env/root".into()),
                Chooser::Root(Source::OutboxRoot)
            )
        );
        assert!(
            resolve(Some("ftp://x".into()), None, None, env(&[]))
                .unwrap_err()
                .starts_with("--store: ")
        );
    }
}
