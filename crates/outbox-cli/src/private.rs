//! Private and safe by default: the data root's policy
//! (`--allow-shared-root`), the store file (`--store-file`,
//! `OUTBOX_STORE_FILE`), the store a hook's command may name (never a
//! password), and the scrub every output line goes through.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use outbox::io::Io;
use outbox::{Outbox, RootPolicy, StdIo};

use crate::hooks::StoreArg;
use crate::store::{Chooser, Location};

/// The setting that chose this process's store, set once in `run` (a
/// store file is named in hooks by its path, not by its URL).
static CHOOSER: OnceLock<Chooser> = OnceLock::new();

/// Remembers which setting chose the store, for [`hook_store_arg`].
pub fn set_chooser(chooser: Chooser) {
    let _ = CHOOSER.set(chooser);
}

/// The store as command-line words, each after a space, for a command
/// this tool prints for someone to run (the show command a delivery names):
/// what a hook carries ([`hook_store_arg`]: a root by absolute path, with
/// `--allow-shared-root` when given; a store file; a URL without a
/// password), each word through `word` (shell quoting). Where a hook would
/// be refused, the location as it is, a URL's password masked (that
/// command cannot connect as printed: its reader gets no password either
/// way); a path that is not UTF-8, as nothing.
pub fn store_words(loc: &Location, word: impl Fn(&str) -> String) -> String {
    let path = |flag: &str, p: &Path| {
        p.to_str()
            .map(|p| format!(" {flag} {}", word(p)))
            .unwrap_or_default()
    };
    match hook_store_arg(loc) {
        Ok(StoreArg::Root(root)) => path("--root", &root),
        Ok(StoreArg::SharedRoot(root)) => {
            format!(" --allow-shared-root{}", path("--root", &root))
        }
        Ok(StoreArg::StoreFile(file)) => path("--store-file", &file),
        Ok(StoreArg::Store(url)) => format!(" --store {}", word(&url)),
        Err(_) => match loc {
            Location::Files(root) => std::path::absolute(root)
                .map(|root| path("--root", &root))
                .unwrap_or_default(),
            #[cfg(feature = "postgres")]
            Location::Postgres(url) => {
                format!(" --store {}", word(&outbox::redact::redact_url(url)))
            }
        },
    }
}

/// The policy of this process's data root: set once from the command
/// line (`--allow-shared-root`) before any store is opened.
static POLICY: OnceLock<RootPolicy> = OnceLock::new();

/// Sets the data root's policy: [`RootPolicy::Shared`] when
/// `--allow-shared-root` was given.
pub fn set_policy(allow_shared_root: bool) {
    let policy = if allow_shared_root {
        RootPolicy::Shared
    } else {
        RootPolicy::Private
    };
    let _ = POLICY.set(policy);
}

/// The data root's policy ([`RootPolicy::Private`] unless set).
pub fn policy() -> RootPolicy {
    POLICY.get().copied().unwrap_or_default()
}

/// Opens the file outbox on `root` under the policy, touching nothing: the
/// first operation checks the root, and the first write creates the
/// layout (as durably as `Outbox::open`).
pub fn open_lazy(root: &Path) -> Outbox {
    Outbox::open_lazy(root).with_root_policy(policy())
}

/// The message of an outbox error for this tool's user: an unsafe root
/// names the flag that accepts the risk.
pub fn message(e: &outbox::Error) -> String {
    match e {
        outbox::Error::UnsafeRoot(facts) => format!(
            "{facts} (or accept the risk: --allow-shared-root; see the README's Security \
             section)"
        ),
        e => e.to_string(),
    }
}

/// The most bytes a store file may hold.
const MAX_STORE_FILE_BYTES: u64 = 64 * 1024;

/// The store URL in the store file at `path`: its first line, trimmed. The
/// file must be owned by this user and readable by nobody else (mode 0600
/// or stricter), since it may hold a password; refused otherwise, with the
/// fix. Errors never show the file's content.
pub fn read_store_file(path: &Path) -> Result<String, String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat it: {e}"))?;
    let user = StdIo::new().user_id().unwrap_or(meta.uid());
    let mode = meta.mode() & 0o7777;
    if meta.uid() != user {
        return Err(format!(
            "it is owned by uid {}, not by you (uid {user}), and may hold a password: use a \
             file of your own (chown {user} {}; chmod 600 {})",
            meta.uid(),
            path.display(),
            path.display()
        ));
    }
    if mode & 0o077 != 0 {
        return Err(format!(
            "group or others can use it (mode {mode:04o}) and it may hold a password: chmod \
             600 {}",
            path.display()
        ));
    }
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    let mut bytes = Vec::new();
    file.by_ref()
        .take(MAX_STORE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_STORE_FILE_BYTES {
        return Err(format!(
            "more than {MAX_STORE_FILE_BYTES} bytes; it should hold one store URL"
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    let url = text.lines().next().unwrap_or_default().trim();
    remember_secrets(url);
    if url.is_empty() {
        return Err("empty; it should hold one store URL (postgres://...)".to_owned());
    }
    Ok(url.to_owned())
}

/// The store a hook's command (or any command this tool prints for
/// someone to run) names for `loc`, chosen by the setting [`set_chooser`]
/// remembered: a data
/// root by absolute path (with `--allow-shared-root` when it was given; a
/// root the hooks would refuse is refused here), a
/// store file by absolute path, or a URL without a password. A URL with a
/// password is refused: the command would carry it into settings.json,
/// every hook's argv (`/proc/PID/cmdline`) and, through Claude Code's
/// "Stop hook blocking error from command" line, the model's context.
pub fn hook_store_arg(loc: &Location) -> Result<StoreArg, String> {
    let chooser = CHOOSER.get().cloned().unwrap_or(Chooser::StoreFlag);
    let absolute = |path: &Path| -> Result<PathBuf, String> {
        std::path::absolute(path)
            .map_err(|e| format!("{}: cannot make it absolute: {e}", path.display()))
    };
    match (loc, &chooser) {
        (Location::Files(root), _) => {
            let root = absolute(root)?;
            // A root every hook would refuse (exit 1, blocking nothing, so
            // no record would ever reach the parent) is refused now.
            open_lazy(&root).check_root().map_err(|e| message(&e))?;
            Ok(match policy() {
                RootPolicy::Shared => StoreArg::SharedRoot(root),
                _ => StoreArg::Root(root),
            })
        }
        #[cfg(feature = "postgres")]
        (Location::Postgres(_), Chooser::StoreFile { path, .. }) => {
            Ok(StoreArg::StoreFile(absolute(path)?))
        }
        #[cfg(feature = "postgres")]
        (Location::Postgres(url), _) if outbox::redact::has_password(url) => Err(format!(
            "the store URL {} has a password, which the hook's command would carry into \
             settings.json, every hook's argv and the model's context: take it out of the \
             URL and put it in ~/.pgpass (or $PGPASSFILE, $PGPASSWORD), or write the whole URL into a \
             file only you can read (chmod 600 FILE) and pass --store-file FILE (or set \
             $OUTBOX_STORE_FILE); nothing printed or installed",
            outbox::redact::redact_url(url)
        )),
        #[cfg(feature = "postgres")]
        (Location::Postgres(url), _) => Ok(StoreArg::Store(url.clone())),
    }
}

/// The passwords of the store URLs this process was given (its arguments,
/// `OUTBOX_STORE`, a store file), as written and percent-decoded.
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The shortest remembered password masked wherever it appears: masking
/// every "a" of the output would garble it, and a password that short
/// guards nothing. Shorter ones are still masked inside URLs.
const MIN_SECRET_CHARS: usize = 4;

/// Remembers the passwords `text` (an argument, a variable, a store file's
/// URL) carries, so that [`scrub`] masks them wherever they appear, even
/// where the text around them no longer reads as a URL.
pub fn remember_secrets(text: &str) {
    let found = outbox::redact::passwords(text);
    if found.is_empty() {
        return;
    }
    let mut secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    secrets.extend(found);
    // Longest first, so a password that contains another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
}

/// `text` as it may be shown: every password of a URL or connection string
/// in it masked (`outbox::redact::redact_text`), and every password this
/// process was given ([`remember_secrets`]) masked wherever it appears.
/// Every line this tool writes to stderr, and `doctor`'s report, goes
/// through it.
pub fn scrub(text: &str) -> String {
    let mut text = outbox::redact::redact_text(text);
    let secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    for secret in secrets.iter() {
        if secret.chars().count() >= MIN_SECRET_CHARS {
            text = text.replace(secret.as_str(), outbox::redact::MASK);
        }
    }
    text
}
