//! Where the data root is: `--root`, else `OUTBOX_ROOT`, else the user's
//! data directory.

use std::ffi::OsString;
use std::path::PathBuf;

/// Which setting chose the data root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The `--root` flag.
    Flag,
    /// The `OUTBOX_ROOT` environment variable.
    OutboxRoot,
    /// `$XDG_DATA_HOME/outbox`.
    XdgDataHome,
    /// `$HOME/.local/share/outbox`.
    Home,
}

impl Source {
    /// How a person would name the setting: `--root`, `$OUTBOX_ROOT`, ...
    pub fn describe(self) -> &'static str {
        match self {
            Source::Flag => "--root",
            Source::OutboxRoot => "$OUTBOX_ROOT",
            Source::XdgDataHome => "$XDG_DATA_HOME/outbox",
            Source::Home => "$HOME/.local/share/outbox",
        }
    }
}

/// Resolves the data root: the `--root` flag when given; else the
/// `OUTBOX_ROOT` environment variable when set and non-empty; else
/// `$XDG_DATA_HOME/outbox` when `XDG_DATA_HOME` is an absolute path (the
/// XDG rule: a relative value is ignored); else `$HOME/.local/share/outbox`.
/// Returns the root and the setting that chose it.
///
/// `env` looks a variable up (the process environment in `main`, a table in
/// tests).
pub fn resolve(
    flag: Option<PathBuf>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<(PathBuf, Source), String> {
    if let Some(root) = flag {
        return Ok((root, Source::Flag));
    }
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(root) = var("OUTBOX_ROOT") {
        return Ok((root, Source::OutboxRoot));
    }
    if let Some(data) = var("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
        return Ok((data.join("outbox"), Source::XdgDataHome));
    }
    if let Some(home) = var("HOME").filter(|p| p.is_absolute()) {
        return Ok((home.join(".local/share/outbox"), Source::Home));
    }
    Err("no data root: pass --root DIR or set OUTBOX_ROOT (HOME is not set)".to_owned())
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
    fn precedence_is_flag_env_xdg_home() {
        let all = [
            ("OUTBOX_ROOT", "/from/env"),
            ("XDG_DATA_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(
            resolve(Some("/flag".into()), env(&all)),
            Ok((PathBuf::from("/flag"), Source::Flag))
        );
        assert_eq!(
            resolve(None, env(&all)),
            Ok((PathBuf::from("/from/env"), Source::OutboxRoot))
        );
        assert_eq!(
            resolve(None, env(&all[1..])),
            Ok((PathBuf::from("/xdg/outbox"), Source::XdgDataHome))
        );
        assert_eq!(
            resolve(None, env(&all[2..])),
            Ok((PathBuf::from("/home/u/.local/share/outbox"), Source::Home))
        );
    }

    #[test]
    fn empty_and_relative_values_are_skipped() {
        let vars = [
            ("OUTBOX_ROOT", ""),
            ("XDG_DATA_HOME", "relative/dir"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(
            resolve(None, env(&vars)),
            Ok((PathBuf::from("/home/u/.local/share/outbox"), Source::Home))
        );
        let err = resolve(None, env(&[("HOME", "")])).unwrap_err();
        assert!(err.contains("--root"), "{err}");
    }
}
