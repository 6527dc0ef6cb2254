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
/// A store URL with a password is refused (the settings, every hook's argv
/// and Claude Code's messages to the model would carry it): keep the
/// password in ~/.pgpass, or the URL in a private file named by
/// --store-file, which the commands then name instead.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  outbox hooks --parent conductor                # for the parent's settings.json
  outbox hooks --parent conductor --child        # for each child's
  claude --settings \"$(outbox hooks --parent conductor --child)\"")]
pub struct HooksArgs {
    /// The parent session: the inbox the children commit to and the parent
    /// drains.
    #[arg(long, value_name = "ID")]
    pub parent: String,
    /// Print a child's hook (commit --from-hook) instead of the parent's
    /// (stop-hook).
    #[arg(long)]
    pub child: bool,
}

/// The store a hook's command names.
#[derive(Clone, Debug)]
pub enum StoreArg {
    /// `--root DIR`: the file store on this (absolute) data root.
    Root(PathBuf),
    /// `--allow-shared-root --root DIR`: the same, on a root other users
    /// can write (the user accepted the risk).
    SharedRoot(PathBuf),
    /// `--store URL`: the PostgreSQL store (a URL without a password; see
    /// `private::hook_store_arg`).
    Store(String),
    /// `--store-file FILE`: the store whose URL this (absolute) file holds.
    StoreFile(PathBuf),
}

/// The fragment for `args`: a pretty-printed JSON object and a newline.
/// `binary` and a root must be absolute; a path that is not UTF-8 cannot be
/// written into JSON and is an error naming it.
pub fn fragment(binary: &Path, store: &StoreArg, args: &HooksArgs) -> Result<String, String> {
    let utf8 = |what: &str, path: &Path| {
        path.to_str()
            .map(shell_quote)
            .ok_or_else(|| format!("{what} {} is not UTF-8", path.display()))
    };
    let store = match store {
        StoreArg::Root(root) => format!("--root {}", utf8("the data root", root)?),
        StoreArg::SharedRoot(root) => {
            format!(
                "--allow-shared-root --root {}",
                utf8("the data root", root)?
            )
        }
        StoreArg::Store(url) => format!("--store {}", shell_quote(url)),
        StoreArg::StoreFile(path) => format!("--store-file {}", utf8("the store file", path)?),
    };
    let subcommand = if args.child {
        "commit --parent {} --from-hook"
    } else {
        "stop-hook --parent {}"
    };
    let command = format!(
        "{} {store} {}",
        utf8("the binary's path", binary)?,
        subcommand.replace("{}", &shell_quote(&args.parent))
    );
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
            parent: "my parent".into(),
            child: false,
        };
        let text = fragment(
            Path::new("/bin/outbox"),
            &StoreArg::Root("/data/ob".into()),
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
            &args,
        )
        .unwrap();
        assert!(
            text.contains("commit --parent 'my parent' --from-hook"),
            "{text}"
        );
    }
}
