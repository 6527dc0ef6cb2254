//! `outbox hooks install|uninstall`: the hooks `outbox hooks` prints,
//! merged into a Claude Code settings file, and taken out again.
//!
//! The file is edited as text, not re-serialised: install inserts each new
//! entry after the last item of the list (or object) it joins, in the
//! file's own indentation, and uninstall removes exactly the text of an
//! entry (from the end of the item before it to its own end), then the
//! event list or `hooks` object it leaves empty. So install then uninstall
//! gives back the file byte for byte, however it was formatted, whatever
//! other keys, hooks, escapes or number spellings it holds (re-serialising
//! through serde_json would not: `1.0`, `\/`, `\u00e9`, key order and
//! spacing would change). The one exception: an empty object or list
//! written with whitespace inside (`{ }`) comes back as `{}`; and an event
//! list that was already empty before install (`"Stop": []`) is removed.
//!
//! Our entries are found by what their command does, not by position: a
//! command hook whose command runs a binary named `outbox` (any path, any
//! `--root`/`--store`), with the same subcommand and the same `--parent`,
//! under the same event. So uninstall still finds a hook installed by
//! another copy of the binary or for another root, and install replaces
//! such a hook rather than adding a second one.
//!
//! Settings locations follow Claude Code's settings documentation
//! (code.claude.com/docs/en/settings, read 2026-12-07) and
//! /work/shared/docs/claude-code-hooks.md: user `~/.claude/settings.json`
//! (`$CLAUDE_CONFIG_DIR/settings.json` when that is set), project
//! `.claude/settings.json`, local `.claude/settings.local.json`.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::hooks::{self, HookEntry as Entry, HooksArgs, Role, StoreArg};
use crate::jsonspan::{self, Node};
use crate::store::Location;
use crate::{Failure, check_parent, hook_binary_and_store, print};

/// `outbox hooks install` / `outbox hooks uninstall`.
#[derive(Debug, Subcommand)]
pub enum HooksAction {
    /// Merge the hooks `outbox hooks` prints into a Claude Code settings
    /// file (idempotent: installing twice is installing once).
    ///
    /// Other keys, other hooks and their order are kept byte for byte; a
    /// hook of ours already there (same event, subcommand and --parent,
    /// found by its command, whatever binary path or root it names) is
    /// replaced in place. The file is written durably (a temporary file,
    /// fsync, rename; its mode kept; a symlink's target is written). A file
    /// that is not a JSON object is refused and left alone. --scope user
    /// (~/.claude/settings.json, read by every session on this machine,
    /// children and parent alike) is refused without --force.
    #[command(after_help = "\
Examples:
  outbox hooks install --parent conductor --scope local       # the parent's project
  outbox hooks install --parent conductor --child --title parser --scope /work/child/.claude/settings.json
  outbox hooks install --parent conductor --subagents")]
    Install(InstallArgs),
    /// Remove exactly the hooks `install` added with the same flags (found
    /// by their command, not by position); every other byte of the file
    /// stays as it was. An event list or `hooks` object left empty is
    /// removed too.
    #[command(after_help = "\
Examples:
  outbox hooks uninstall --parent conductor --scope local
  outbox hooks uninstall --parent conductor --child --scope /work/child/.claude/settings.json")]
    Uninstall(InstallArgs),
}

/// Which hooks, and where.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The parent session: the inbox the children commit to and the parent
    /// drains.
    #[arg(long, value_name = "ID")]
    pub parent: String,
    /// A child's hooks (commit --from-hook) instead of the parent's.
    #[arg(long, conflicts_with = "subagents")]
    pub child: bool,
    /// The child's display title, passed to its commit command.
    #[arg(long, value_name = "TEXT", requires = "child")]
    pub title: Option<String>,
    /// The SubagentStop hook that commits a background subagent's result
    /// into the parent's inbox (install it in the parent's settings).
    #[arg(long)]
    pub subagents: bool,
    /// Where: `project` (.claude/settings.json), `local`
    /// (.claude/settings.local.json), both under the current directory;
    /// `user` (~/.claude/settings.json, or $CLAUDE_CONFIG_DIR/settings.json);
    /// or the path of any settings file (e.g. one for `claude --settings`).
    #[arg(long, value_name = "SCOPE", default_value = "project")]
    pub scope: String,
    /// Install at user scope even so: every session on this machine would
    /// run these hooks.
    #[arg(long)]
    pub force: bool,
}

impl InstallArgs {
    /// The same selection as `outbox hooks` flags for `role`, so
    /// [`hooks::entries`] gives the one list both print and install.
    fn hooks_args(&self, role: Role) -> HooksArgs {
        HooksArgs {
            action: None,
            parent: Some(self.parent.clone()),
            child: role == Role::Child,
            subagents: role == Role::Subagents,
            title: self.title.clone().filter(|_| role == Role::Child),
        }
    }

    /// The role these flags select, by `outbox hooks`' rule.
    fn role(&self) -> Role {
        HooksArgs {
            action: None,
            parent: None,
            child: self.child,
            subagents: self.subagents,
            title: None,
        }
        .role()
    }
}

/// How a person names a role.
pub fn describe(role: Role) -> &'static str {
    match role {
        Role::Parent => "parent",
        Role::Child => "child",
        Role::Subagents => "subagent",
    }
}

/// The settings files Claude Code reads for the current directory, in
/// increasing precedence: (scope name, path). `home` is `$HOME`,
/// `config_dir` `$CLAUDE_CONFIG_DIR`.
pub fn settings_files(
    cwd: &Path,
    home: Option<&Path>,
    config_dir: Option<&Path>,
) -> Vec<(&'static str, PathBuf)> {
    let mut files = Vec::new();
    if let Some(user) = user_file(home, config_dir) {
        files.push(("user", user));
    }
    files.push(("project", cwd.join(".claude/settings.json")));
    files.push(("local", cwd.join(".claude/settings.local.json")));
    files
}

fn user_file(home: Option<&Path>, config_dir: Option<&Path>) -> Option<PathBuf> {
    match (config_dir, home) {
        (Some(dir), _) if !dir.as_os_str().is_empty() => Some(dir.join("settings.json")),
        (_, Some(home)) if !home.as_os_str().is_empty() => Some(home.join(".claude/settings.json")),
        _ => None,
    }
}

/// The process's `$HOME` and `$CLAUDE_CONFIG_DIR`.
pub fn env_dirs() -> (Option<PathBuf>, Option<PathBuf>) {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    (var("HOME"), var("CLAUDE_CONFIG_DIR"))
}

/// The file a `--scope` names, and whether it is the user settings file.
fn scope_file(scope: &str) -> Result<(PathBuf, bool), Failure> {
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::error(format!("cannot read the current directory: {e}")))?;
    let (home, config_dir) = env_dirs();
    let user = user_file(home.as_deref(), config_dir.as_deref());
    let path = match scope {
        "project" => cwd.join(".claude/settings.json"),
        "local" => cwd.join(".claude/settings.local.json"),
        "user" => user.clone().ok_or_else(|| {
            Failure::error("--scope user: neither HOME nor CLAUDE_CONFIG_DIR is set")
        })?,
        path => cwd.join(path),
    };
    // A path that is the user file by another name is the user scope.
    let same = |a: &Path, b: &Path| match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    let is_user = user.as_deref().is_some_and(|u| same(&path, u));
    Ok((path, is_user))
}

/// What an installed hook command does: its subcommand and `--parent`,
/// when it runs a binary named `outbox`; `None` for any other command.
pub fn identity(command: &str) -> Option<(String, String)> {
    let words = shell_words(command)?;
    let program = Path::new(words.first()?).file_name()?.to_str()?;
    if program != "outbox" {
        return None;
    }
    let mut rest = words[1..].iter();
    let subcommand = loop {
        let word = rest.next()?;
        // The global flags that take a value (`--allow-shared-root` takes
        // none, and is skipped as any other flag is).
        if word == "--root" || word == "--store" || word == "--store-file" {
            rest.next()?;
        } else if !word.starts_with("--") {
            break word.clone();
        }
    };
    let mut parent = None;
    while let Some(word) = rest.next() {
        if word == "--parent" {
            parent = rest.next().cloned();
        } else if let Some(p) = word.strip_prefix("--parent=") {
            parent = Some(p.to_owned());
        }
    }
    Some((subcommand, parent?))
}

/// The store an installed hook command names: (`--root`, `--store` or
/// `--store-file`, its value), and the program.
pub fn named_paths(command: &str) -> Option<(String, Option<(String, String)>)> {
    let words = shell_words(command)?;
    let program = words.first()?.clone();
    let store = words
        .windows(2)
        .find(|w| w[0] == "--root" || w[0] == "--store" || w[0] == "--store-file")
        .map(|w| (w[0].clone(), w[1].clone()));
    Some((program, store))
}

/// Splits a command line into words as a POSIX shell would for the quoting
/// `outbox hooks` writes (single and double quotes, backslashes); `None`
/// for an unterminated quote.
pub fn shell_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => {
                            let c = chars.next()?;
                            if !"$`\"\\\n".contains(c) {
                                w.push('\\');
                            }
                            w.push(c);
                        }
                        c => w.push(c),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).push(chars.next()?),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Some(words)
}

/// A matcher group as Claude Code reads it, keys in its documented order.
#[derive(Serialize)]
struct Group<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    matcher: Option<&'a str>,
    hooks: [Hook<'a>; 1],
}

#[derive(Serialize)]
struct Hook<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    command: &'a str,
}

fn group(entry: &Entry) -> Group<'_> {
    Group {
        matcher: None,
        hooks: [Hook {
            kind: "command",
            command: &entry.command,
        }],
    }
}

/// What install or uninstall did to one entry.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Added.
    Added,
    /// Already there, unchanged.
    Present,
    /// There with another command (another binary path or root): replaced.
    Updated(String),
    /// Removed this many times.
    Removed(usize),
}

/// Where one installed hook of ours is: the event list, the group's index
/// in it, the hook's index in the group, and its command node.
struct Found {
    group: usize,
    hook: usize,
    group_len: usize,
    command: Node,
}

fn parse_settings(text: &str) -> Result<Node, String> {
    let node = jsonspan::parse(text).map_err(|e| format!("not valid JSON: {e}"))?;
    match node {
        Node::Object(..) => Ok(node),
        other => Err(format!(
            "not a JSON object (it is {}); Claude Code's settings are one object",
            other.kind()
        )),
    }
}

/// `hooks` (`None` when absent) and `hooks.<event>` with its index (`None`
/// when absent).
type EventList<'a> = (Option<&'a Node>, Option<(usize, &'a Node)>);

/// `hooks` and `hooks.<event>` of a settings object, each checked to be of
/// the kind Claude Code expects; `None` where absent.
fn event_list<'a>(root: &'a Node, event: &str) -> Result<EventList<'a>, String> {
    let Some((_, hooks)) = root.get("hooks") else {
        return Ok((None, None));
    };
    if !matches!(hooks, Node::Object(..)) {
        return Err(format!("\"hooks\" is {}, expected an object", hooks.kind()));
    }
    let Some((i, list)) = hooks.get(event) else {
        return Ok((Some(hooks), None));
    };
    if !matches!(list, Node::Array(..)) {
        return Err(format!(
            "\"hooks\".{event:?} is {}, expected a list",
            list.kind()
        ));
    }
    Ok((Some(hooks), Some((i, list))))
}

/// The hooks of ours in `list` with `entry`'s identity.
fn find(list: &Node, entry: &Entry) -> Vec<Found> {
    let want = identity(&entry.command);
    let Node::Array(_, groups) = list else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        let Some((_, Node::Array(_, hooks))) = group.get("hooks") else {
            continue;
        };
        for (h, hook) in hooks.iter().enumerate() {
            if let Some((_, command)) = hook.get("command")
                && let Some(text) = command.as_str()
                && want.is_some()
                && identity(text) == want
            {
                found.push(Found {
                    group: g,
                    hook: h,
                    group_len: hooks.len(),
                    command: command.clone(),
                });
            }
        }
    }
    found
}

/// `text` with `entries` installed, and what happened to each.
pub fn install_text(text: &str, entries: &[Entry]) -> Result<(String, Vec<Change>), String> {
    let mut text = text.to_owned();
    let mut changes = Vec::new();
    for entry in entries {
        let root = parse_settings(&text)?;
        // An empty object says nothing of its style: Claude Code's own
        // (`JSON.stringify(x, null, 2)`).
        let unit = jsonspan::indent_unit(&text)
            .or_else(|| matches!(&root, Node::Object(_, m) if m.is_empty()).then(|| "  ".into()));
        let unit = unit.as_deref();
        let (hooks, list) = event_list(&root, entry.event)?;
        let (range, with, change) = match (hooks, list) {
            (None, _) => {
                let value = std::collections::BTreeMap::from([(entry.event, [group(entry)])]);
                let member = format!(
                    "\"hooks\":{}{}",
                    if unit.is_some() { " " } else { "" },
                    jsonspan::format_value(&value, 1, unit)?
                );
                let (r, w) = jsonspan::append_edit(&root, 0, unit, &member);
                (r, w, Change::Added)
            }
            (Some(hooks), None) => {
                let member = format!(
                    "{}:{}{}",
                    serde_json::to_string(entry.event).map_err(|e| e.to_string())?,
                    if unit.is_some() { " " } else { "" },
                    jsonspan::format_value(&[group(entry)], 2, unit)?
                );
                let (r, w) = jsonspan::append_edit(hooks, 1, unit, &member);
                (r, w, Change::Added)
            }
            (Some(_), Some((_, list))) => match find(list, entry).into_iter().next() {
                Some(found) if found.command.as_str() == Some(entry.command.as_str()) => {
                    changes.push(Change::Present);
                    continue;
                }
                Some(found) => {
                    let old = found.command.as_str().unwrap_or_default().to_owned();
                    let json = serde_json::to_string(&entry.command).map_err(|e| e.to_string())?;
                    (found.command.span(), json, Change::Updated(old))
                }
                None => {
                    let item = jsonspan::format_value(&group(entry), 3, unit)?;
                    let (r, w) = jsonspan::append_edit(list, 2, unit, &item);
                    (r, w, Change::Added)
                }
            },
        };
        // A file with CRLF line ends gets CRLF in what is added too.
        let with = if text.contains("\r\n") {
            with.replace('\n', "\r\n")
        } else {
            with
        };
        text.replace_range(range, &with);
        changes.push(change);
    }
    Ok((text, changes))
}

/// `text` with every hook of ours matching `entries` removed, and how many
/// were removed per entry.
pub fn uninstall_text(text: &str, entries: &[Entry]) -> Result<(String, Vec<Change>), String> {
    let mut text = text.to_owned();
    let mut changes = Vec::new();
    for entry in entries {
        let mut removed = 0;
        loop {
            let root = parse_settings(&text)?;
            let (Some(hooks), Some((event_index, list))) = event_list(&root, entry.event)? else {
                break;
            };
            let Some(found) = find(list, entry).into_iter().next() else {
                break;
            };
            let Node::Array(_, groups) = list else { break };
            let range = if found.group_len > 1 {
                let Some((_, inner)) = groups[found.group].get("hooks") else {
                    break;
                };
                jsonspan::remove_range(inner, found.hook)
            } else if groups.len() > 1 {
                jsonspan::remove_range(list, found.group)
            } else if let Node::Object(_, members) = hooks
                && members.len() > 1
            {
                jsonspan::remove_range(hooks, event_index)
            } else {
                let (hooks_index, _) = root.get("hooks").expect("found above");
                jsonspan::remove_range(&root, hooks_index)
            };
            let Some(range) = range else { break };
            text.replace_range(range, "");
            removed += 1;
        }
        changes.push(Change::Removed(removed));
    }
    Ok((text, changes))
}

/// The side (`parent` or `child`) opposite to `role` whose hooks of
/// `parent` the settings `text` already holds, if any.
fn other_side(
    text: &str,
    binary: &Path,
    store: &StoreArg,
    args: &InstallArgs,
    role: Role,
) -> Option<&'static str> {
    let other = match role {
        Role::Parent => Role::Child,
        Role::Child => Role::Parent,
        Role::Subagents => return None,
    };
    let root = parse_settings(text).ok()?;
    let entries = hooks::entries(binary, store, &args.hooks_args(other)).ok()?;
    entries.iter().find_map(|entry| {
        let (_, list) = event_list(&root, entry.event).ok()?;
        let (_, list) = list?;
        (!find(list, entry).is_empty()).then(|| describe(other))
    })
}

/// Runs `hooks install` or `hooks uninstall`.
pub fn run(loc: &Location, action: &HooksAction) -> Result<u8, Failure> {
    let (args, install) = match action {
        HooksAction::Install(args) => (args, true),
        HooksAction::Uninstall(args) => (args, false),
    };
    check_parent(&args.parent)?;
    let role = args.role();
    let (path, is_user) = scope_file(&args.scope)?;
    if install && is_user && !args.force {
        return Err(Failure::error(format!(
            "--scope user: {} is read by every Claude Code session on this machine, so the \
             {} hooks of {:?} would run in all of them (children would drain or commit as the \
             wrong side); install them at project or local scope of the sessions that need \
             them, or pass --force",
            path.display(),
            describe(role),
            args.parent
        )));
    }
    let (binary, store) = hook_binary_and_store(loc)?;
    let entries =
        hooks::entries(&binary, &store, &args.hooks_args(role)).map_err(Failure::error)?;
    let shown = path.display().to_string();
    let original = match fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Failure::error(format!("read {shown}: {e}"))),
    };
    let (bom, text) = match &original {
        None => ("", String::from("{}\n")),
        Some(bytes) => {
            let text = std::str::from_utf8(bytes).map_err(|e| {
                Failure::error(format!("{shown}: not UTF-8 ({e}); nothing changed"))
            })?;
            match text.strip_prefix('\u{feff}') {
                Some(rest) => ("\u{feff}", rest.to_owned()),
                None => ("", text.to_owned()),
            }
        }
    };
    if original.is_none() && !install {
        return print(format!("{shown}: no such file; nothing to uninstall\n").as_bytes());
    }
    if install
        && !args.force
        && let Some(other) = other_side(&text, &binary, &store, args, role)
    {
        return Err(Failure::error(format!(
            "{shown} already holds the {other} hooks of {:?}: a session reading it would \
             both commit to and drain that inbox; give each side its own settings file, or \
             pass --force",
            args.parent
        )));
    }
    let edit = if install {
        install_text(&text, &entries)
    } else {
        uninstall_text(&text, &entries)
    };
    let (new_text, changes) =
        edit.map_err(|e| Failure::error(format!("{shown}: {e}; nothing changed")))?;
    let mut report = String::new();
    for (entry, change) in entries.iter().zip(&changes) {
        let what = format!("{} hook ({})", entry.event, describe(role));
        report.push_str(&match change {
            Change::Added => format!("installed the {what} in {shown}\n"),
            Change::Present => format!("the {what} is already in {shown}\n"),
            Change::Updated(old) => {
                format!("updated the {what} in {shown} (it ran: {old})\n")
            }
            Change::Removed(0) => format!("no {what} of {:?} in {shown}\n", args.parent),
            Change::Removed(n) => format!("removed {n} {what} from {shown}\n"),
        });
    }
    if new_text != text {
        let bytes = format!("{bom}{new_text}");
        write_durable(&path, original.as_deref(), bytes.as_bytes())
            .map_err(|e| Failure::error(format!("{e}; {shown} is unchanged")))?;
    }
    print(report.as_bytes())
}

/// Replaces the file at `path` (a symlink's target) with `bytes`: a
/// temporary file beside it, written and fsynced, renamed over it, the
/// directory fsynced. The old file's mode is kept. `before` is what was
/// read; if the file changed since (another writer), nothing is written.
fn write_durable(path: &Path, before: Option<&[u8]>, bytes: &[u8]) -> Result<(), String> {
    let target = match fs::canonicalize(path) {
        Ok(real) => real,
        Err(e) if e.kind() == io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(format!("resolve {}: {e}", path.display())),
    };
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        // Each directory created is made durable in its parent, from the
        // first that existed down.
        let mut missing = vec![dir];
        while let Some(up) = missing.last().and_then(|d| d.parent()) {
            if up.as_os_str().is_empty() || up.exists() {
                break;
            }
            missing.push(up);
        }
        fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        for created in missing.iter().rev() {
            if let Some(up) = created.parent().filter(|u| !u.as_os_str().is_empty()) {
                sync_dir(up)?;
            }
        }
    }
    let mode = fs::metadata(&target).ok().map(|m| m.permissions().mode());
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.outbox-tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| format!("create {}: {e}", tmp.display()))?;
        if let Some(mode) = mode {
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(|e| format!("chmod {}: {e}", tmp.display()))?;
        }
        file.write_all(bytes)
            .map_err(|e| format!("write {}: {e}", tmp.display()))?;
        file.sync_all()
            .map_err(|e| format!("fsync {}: {e}", tmp.display()))?;
        let now = match fs::read(&target) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("read {}: {e}", target.display())),
        };
        if now.as_deref() != before {
            return Err(format!(
                "{} changed while it was being edited (another program wrote it); run the \
                 command again",
                target.display()
            ));
        }
        fs::rename(&tmp, &target).map_err(|e| format!("rename {}: {e}", tmp.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("fsync {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(event: &'static str, words: &str) -> Entry {
        Entry {
            event,
            command: format!("/bin/outbox --root /data {words}"),
        }
    }

    #[test]
    fn commands_are_recognised_by_what_they_do() {
        let id = |c: &str| identity(c);
        assert_eq!(
            id("/x/outbox --root '/a b' stop-hook --parent 'my p'"),
            Some(("stop-hook".into(), "my p".into()))
        );
        assert_eq!(
            id("outbox --store \"postgres://h/db\" commit --parent=p --from-hook"),
            Some(("commit".into(), "p".into()))
        );
        // The private forms `outbox hooks` prints: a store file, a shared root.
        assert_eq!(
            id("/x/outbox --store-file /home/u/.config/outbox/store stop-hook --parent p"),
            Some(("stop-hook".into(), "p".into()))
        );
        assert_eq!(
            id("/x/outbox --allow-shared-root --root /srv/t commit --parent p --from-hook"),
            Some(("commit".into(), "p".into()))
        );
        assert_eq!(id("/x/not-outbox stop-hook --parent p"), None);
        assert_eq!(id("echo outbox stop-hook --parent p"), None);
        assert_eq!(id("/x/outbox stop-hook"), None);
        assert_eq!(id("/x/outbox 'unterminated"), None);
    }

    #[test]
    fn shell_words_undo_shell_quote() {
        for word in [
            "plain",
            "a b",
            "it's",
            "$HOME;rm -rf /",
            "\"q\"",
            "back\\slash",
            "",
        ] {
            let line = format!("x {} y", hooks::shell_quote(word));
            assert_eq!(shell_words(&line).unwrap(), ["x", word, "y"], "{line}");
        }
    }

    #[test]
    fn a_non_object_is_refused() {
        let e = [entry("Stop", "stop-hook --parent p")];
        for (text, want) in [
            ("[]", "not a JSON object"),
            ("{\"hooks\": []}", "\"hooks\" is a list"),
            (
                "{\"hooks\": {\"Stop\": {}}}",
                "\"hooks\".\"Stop\" is an object",
            ),
            ("{\"a\": 1,}", "not valid JSON"),
        ] {
            let err = install_text(text, &e).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn install_replaces_our_hook_for_another_root() {
        let old = entry("Stop", "stop-hook --parent p");
        let (text, _) = install_text("{}", std::slice::from_ref(&old)).unwrap();
        let mut new = old.clone();
        new.command = "/usr/bin/outbox --root /elsewhere stop-hook --parent p".into();
        let (text, changes) = install_text(&text, std::slice::from_ref(&new)).unwrap();
        assert_eq!(changes, [Change::Updated(old.command.clone())]);
        assert!(
            text.contains("/elsewhere") && !text.contains("/data"),
            "{text}"
        );
        let (text, changes) = uninstall_text(&text, &[old]).unwrap();
        assert_eq!(changes, [Change::Removed(1)]);
        assert_eq!(text, "{}");
    }

    #[test]
    fn ours_sharing_a_group_with_another_hook_is_removed_alone() {
        let ours = entry("Stop", "stop-hook --parent p");
        let text = format!(
            "{{\n  \"hooks\": {{\n    \"Stop\": [\n      {{\n        \"hooks\": [\n          \
             {{\"type\": \"command\", \"command\": \"theirs\"}},\n          \
             {{\"type\": \"command\", \"command\": {:?}}}\n        ]\n      }}\n    ]\n  }}\n}}\n",
            ours.command
        );
        let (after, changes) = uninstall_text(&text, &[ours]).unwrap();
        assert_eq!(changes, [Change::Removed(1)]);
        let json: serde_json::Value = serde_json::from_str(&after).unwrap();
        assert_eq!(
            json["hooks"]["Stop"][0]["hooks"],
            serde_json::json!([{"type": "command", "command": "theirs"}]),
            "{after}"
        );
    }
}
