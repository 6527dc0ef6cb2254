//! `outbox hooks`: the Claude Code `settings.json` fragment that installs
//! the parent's hooks, a child's, or the parent's SubagentStop hook
//! ([`entries`], the one list of (event, command) pairs per [`Role`]),
//! with the absolute path of this binary and of the resolved data root, so
//! the hook runs the same binary on the same root whatever the hook's
//! working directory and `PATH`.

use std::path::{Path, PathBuf};

use clap::Args;

/// Print the Claude Code settings.json fragment for a parent's hooks (or,
/// with --child, a child's; with --subagents, the parent's SubagentStop
/// hook for its background subagents).
///
/// The parent's hooks: Stop runs `outbox stop-hook --parent P` (when
/// children of P completed, the parent is told before it may stop);
/// UserPromptSubmit and SessionStart run `outbox context-hook --parent P`
/// (what is pending, or was shown and not acted on, is added to the
/// model's context). A record shown either way stays pending until the
/// session's next move confirms it was acted on (see `stop-hook --help`).
///
/// A child's hooks run `outbox commit --parent P --from-hook` on Stop (the
/// child's last message becomes a completion record in P's inbox),
/// StopFailure (a turn that ended in an API error: a completion with status
/// `error`) and SessionEnd (the session ended: a completion with status
/// `ended`, unless the child's last report is still pending).
///
/// --subagents prints SubagentStop running `outbox commit --parent P
/// --from-hook`, for the parent's settings: each subagent that finishes
/// commits its completion into P's inbox (child = agent_id, title =
/// agent_type). A foreground subagent's result also reaches the parent as
/// its tool result, so install it where subagents run in the background.
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
///
/// `outbox hooks install` and `outbox hooks uninstall` merge the same hooks
/// into a settings file, or take exactly them out again.
#[derive(Debug, Args)]
#[command(
    after_help = "\
Examples:
  outbox hooks --parent conductor                # for the parent's settings.json
  outbox hooks --parent conductor --child        # for each child's
  outbox hooks --parent conductor --subagents    # the parent's background subagents
  claude --settings \"$(outbox hooks --parent conductor --child --title parser)\"
  outbox hooks install --parent conductor --scope local",
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
pub struct HooksArgs {
    /// Install the hooks into a Claude Code settings file, or uninstall
    /// them (see `outbox hooks install --help`).
    #[command(subcommand)]
    pub action: Option<crate::settings::HooksAction>,
    /// The parent session: the inbox the children commit to and the parent
    /// drains.
    #[arg(long, value_name = "ID", required = true)]
    pub parent: Option<String>,
    /// Print a child's hooks (commit --from-hook on Stop, StopFailure and
    /// SessionEnd) instead of the parent's (stop-hook on Stop, context-hook
    /// on UserPromptSubmit and SessionStart).
    #[arg(long, conflicts_with = "subagents")]
    pub child: bool,
    /// Print the parent's SubagentStop hook (commit --from-hook), which
    /// commits each finished subagent into the parent's inbox.
    #[arg(long)]
    pub subagents: bool,
    /// The child's display title, passed to its commit command (--title).
    #[arg(long, value_name = "TEXT", requires = "child")]
    pub title: Option<String>,
}

/// Which side's hooks a fragment installs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The parent: its Stop, UserPromptSubmit and SessionStart hooks.
    Parent,
    /// A child session: its Stop, StopFailure and SessionEnd hooks.
    Child,
    /// The parent's subagents: its SubagentStop hook.
    Subagents,
}

impl HooksArgs {
    /// The role the flags select.
    pub fn role(&self) -> Role {
        match (self.child, self.subagents) {
            (true, _) => Role::Child,
            (false, true) => Role::Subagents,
            (false, false) => Role::Parent,
        }
    }
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
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Store(String),
    /// `--store-file FILE`: the store whose URL this (absolute) file holds.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    StoreFile(PathBuf),
}

/// One hook of a fragment: the Claude Code event it runs on and its
/// command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookEntry {
    /// The event, as Claude Code spells it in settings (`Stop`, ...).
    pub event: &'static str,
    /// The shell command line Claude Code runs (through `sh -c`).
    pub command: String,
}

/// Every hook `args` asks for, in the order they are printed: the one list
/// that `outbox hooks` prints and that an installer installs (and an
/// uninstaller removes), so the two can never differ. `binary` and a root
/// must be absolute; a path that is not UTF-8 cannot be written into JSON
/// and is an error naming it.
pub fn entries(
    binary: &Path,
    store: &StoreArg,
    args: &HooksArgs,
) -> Result<Vec<HookEntry>, String> {
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
    let prefix = format!("{} {store}", utf8("the binary's path", binary)?);
    let parent = parent_arg(args.parent.as_deref().unwrap_or_default());
    let command = |sub: &str| format!("{prefix} {}", sub.replace("{}", &parent));
    let commit = command("commit {} --from-hook");
    let child_commit = match &args.title {
        Some(title) => format!("{commit} --title {}", shell_quote(title)),
        None => commit.clone(),
    };
    let (stop, context) = (command("stop-hook {}"), command("context-hook {}"));
    let entry = |event, command: &String| HookEntry {
        event,
        command: command.clone(),
    };
    Ok(match args.role() {
        Role::Parent => vec![
            entry("Stop", &stop),
            entry("UserPromptSubmit", &context),
            entry("SessionStart", &context),
        ],
        Role::Child => vec![
            entry("Stop", &child_commit),
            entry("StopFailure", &child_commit),
            entry("SessionEnd", &child_commit),
        ],
        Role::Subagents => vec![entry("SubagentStop", &commit)],
    })
}

/// The fragment for `args` ([`entries`] as a settings.json object): a
/// pretty-printed JSON object and a newline.
pub fn fragment(binary: &Path, store: &StoreArg, args: &HooksArgs) -> Result<String, String> {
    let entries = entries(binary, store, args)?;
    // Written by hand to keep the events in the order of `entries` and the
    // keys in Claude Code's documented order (`type` before `command`).
    let mut events = Vec::new();
    for e in &entries {
        let command = serde_json::to_string(&e.command).map_err(|e| e.to_string())?;
        let event = serde_json::to_string(e.event).map_err(|e| e.to_string())?;
        events.push(format!(
            r#"    {event}: [
      {{
        "hooks": [
          {{
            "type": "command",
            "command": {command}
          }}
        ]
      }}
    ]"#
        ));
    }
    Ok(format!(
        "{{\n  \"hooks\": {{\n{}\n  }}\n}}\n",
        events.join(",\n")
    ))
}

/// The `--parent` argument of a hook's command: `--parent ID`, or
/// `--parent=ID` for an id that starts with `-`, which the parser would
/// otherwise take for an option (`--parent -conductor`).
pub(crate) fn parent_arg(id: &str) -> String {
    if id.starts_with('-') {
        format!("--parent={}", shell_quote(id))
    } else {
        format!("--parent {}", shell_quote(id))
    }
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
            parent: Some("my parent".into()),
            child: false,
            subagents: false,
            title: None,
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

    #[test]
    fn each_role_lists_its_events_and_the_fragment_prints_exactly_them() {
        let store = StoreArg::Store("postgres://u@h/db".into());
        for (child, subagents, events) in [
            (
                false,
                false,
                vec!["Stop", "UserPromptSubmit", "SessionStart"],
            ),
            (true, false, vec!["Stop", "StopFailure", "SessionEnd"]),
            (false, true, vec!["SubagentStop"]),
        ] {
            let args = HooksArgs {
                action: None,
                parent: Some("p".into()),
                child,
                subagents,
                title: None,
            };
            let list = entries(Path::new("/bin/outbox"), &store, &args).unwrap();
            let names: Vec<_> = list.iter().map(|e| e.event).collect();
            assert_eq!(names, events, "{args:?}");
            let text = fragment(Path::new("/bin/outbox"), &store, &args).unwrap();
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            let hooks = json["hooks"].as_object().unwrap();
            assert_eq!(hooks.len(), list.len(), "{text}");
            for e in &list {
                assert_eq!(hooks[e.event][0]["hooks"][0]["command"], e.command.as_str());
                assert!(
                    e.command
                        .starts_with("/bin/outbox --store postgres://u@h/db ")
                );
            }
        }
    }
}
