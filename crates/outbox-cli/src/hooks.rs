//! `outbox hooks`: the Claude Code `settings.json` fragment that installs
//! the parent's Stop hook (`stop-hook`) or a child's (`commit --from-hook`),
//! with the absolute path of this binary and of the resolved data root, so
//! the hook runs the same binary on the same root whatever the hook's
//! working directory and `PATH`.

use std::path::{Path, PathBuf};

use clap::Args;

/// Print the Claude Code settings.json fragment for a parent's Stop hook
/// (or, with --child, for a child's).
///
/// The parent's hook runs `outbox stop-hook --parent P`: when children of P
/// completed, the parent is told before it may stop. A child's hook runs
/// `outbox commit --parent P --from-hook`: each time the child ends a turn,
/// its last message becomes a completion record in P's inbox.
///
/// The commands name this binary and the data root by absolute path, so
/// they work whatever directory and PATH Claude Code runs them with. Claude
/// Code runs the hooks of every settings source it reads, so give each
/// side its own: start the session with `claude --settings "$(outbox hooks
/// ...)"` (needed when parent and children share a project directory), or
/// merge the fragment into .claude/settings.json or
/// .claude/settings.local.json of a project only that side runs in. Not
/// ~/.claude/settings.json, which every session reads.
///
/// `outbox hooks install` and `outbox hooks uninstall` merge the same hooks
/// into a settings file, or take them out again (see their --help).
#[derive(Debug, Args)]
#[command(
    after_help = "\
Examples:
  outbox hooks --parent conductor                # for the parent's settings.json
  outbox hooks --parent conductor --child        # for each child's
  claude --settings \"$(outbox hooks --parent conductor --child --title parser)\"
  outbox hooks install --parent conductor --scope local",
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
pub struct HooksArgs {
    /// Install the hooks into a Claude Code settings file, or uninstall
    /// them.
    #[command(subcommand)]
    pub action: Option<crate::settings::HooksAction>,
    /// The parent session: the inbox the children commit to and the parent
    /// drains.
    #[arg(long, value_name = "ID", required = true)]
    pub parent: Option<String>,
    /// Print a child's hook (commit --from-hook) instead of the parent's
    /// (stop-hook).
    #[arg(long)]
    pub child: bool,
    /// The child's display title, passed to its commit command (--title).
    #[arg(long, value_name = "TEXT", requires = "child")]
    pub title: Option<String>,
}

/// The store a hook's command names.
#[derive(Clone, Debug)]
pub enum StoreArg {
    /// `--root DIR`: the file store on this (absolute) data root.
    Root(PathBuf),
    /// `--store URL`: the PostgreSQL store.
    Store(String),
}

/// The fragment for `args`: a pretty-printed JSON object and a newline.
/// `binary` and a root must be absolute; a path that is not UTF-8 cannot be
/// written into JSON and is an error naming it.
pub fn fragment(
    binary: &Path,
    store: &StoreArg,
    parent: &str,
    args: &HooksArgs,
) -> Result<String, String> {
    let subcommand = if args.child {
        child_words(parent, args.title.as_deref())
    } else {
        format!("stop-hook --parent {}", shell_quote(parent))
    };
    let command = command_line(binary, store, &subcommand)?;
    // Written by hand to keep the keys in Claude Code's documented order
    // (`type` before `command`); the command is a JSON string literal.
    let command = serde_json::to_string(&command).map_err(|e| e.to_string())?;
    Ok(format!(
        r#"{{
  "hooks": {{
    "Stop": [
      {{
        "hooks": [
          {{
            "type": "command",
            "command": {command}
          }}
        ]
      }}
    ]
  }}
}}
"#
    ))
}

/// A child's commit command after the store: `commit --parent P
/// --from-hook [--title T]`, each word quoted for the shell.
pub fn child_words(parent: &str, title: Option<&str>) -> String {
    let mut words = format!("commit --parent {} --from-hook", shell_quote(parent));
    if let Some(title) = title {
        words.push_str(" --title ");
        words.push_str(&shell_quote(title));
    }
    words
}

/// A hook's command line: this binary and the store by absolute path, then
/// `subcommand` (already quoted). `binary` and a root must be absolute; a
/// path that is not UTF-8 cannot be written into JSON and is an error
/// naming it.
pub fn command_line(binary: &Path, store: &StoreArg, subcommand: &str) -> Result<String, String> {
    let utf8 = |what: &str, path: &Path| {
        path.to_str()
            .map(shell_quote)
            .ok_or_else(|| format!("{what} {} is not UTF-8", path.display()))
    };
    let store = match store {
        StoreArg::Root(root) => format!("--root {}", utf8("the data root", root)?),
        StoreArg::Store(url) => format!("--store {}", shell_quote(url)),
    };
    Ok(format!(
        "{} {store} {subcommand}",
        utf8("the binary's path", binary)?
    ))
}

/// `word` as one POSIX shell word: unchanged when it holds only characters
/// no shell treats specially, else in single quotes (a `'` inside becomes
/// `'\''`).
pub fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-+=%@:,./".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(shell_quote("/usr/bin/outbox"), "/usr/bin/outbox");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME;rm"), "'$HOME;rm'");
    }

    #[test]
    fn the_fragment_names_the_binary_root_and_parent() {
        let args = HooksArgs {
            action: None,
            parent: None,
            child: false,
            title: None,
        };
        let text = fragment(
            Path::new("/bin/outbox"),
            &StoreArg::Root("/data/ob".into()),
            "my parent",
            &args,
        )
        .unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json["hooks"]["Stop"][0]["hooks"][0]["command"],
            "/bin/outbox --root /data/ob stop-hook --parent 'my parent'"
        );
        let args = HooksArgs {
            child: true,
            ..args
        };
        let text = fragment(
            Path::new("/bin/outbox"),
            &StoreArg::Root("/data/ob".into()),
            "my parent",
            &args,
        )
        .unwrap();
        assert!(
            text.contains("commit --parent 'my parent' --from-hook"),
            "{text}"
        );
    }
}
