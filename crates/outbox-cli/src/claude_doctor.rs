//! `outbox doctor`'s look at Claude Code's settings: the outbox hooks in
//! the files Claude Code reads for the current directory (user, project,
//! local; the locations of Claude Code's settings documentation, read
//! 2026-12-07, and /work/shared/docs/claude-code-hooks.md), and what is
//! missing, duplicated or misplaced among them. Sessions started with
//! `claude --settings` are not seen (nothing on disk says which).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::doctor::Report;
use crate::hooks::{self, HooksArgs, Role, StoreArg};
use crate::jsonspan::{self, Node};
use crate::settings::{self, identity, named_paths};

/// One outbox hook found in a settings file.
struct Found {
    scope: &'static str,
    path: PathBuf,
    event: String,
    command: String,
    subcommand: String,
    parent: String,
}

impl Found {
    /// Which side installs it ([`side_of`]): `parent`, `child`,
    /// `subagent`, or the subcommand for an outbox hook this version does
    /// not install.
    fn side(&self) -> String {
        match side_of(&self.event, &self.subcommand) {
            Some(role) => settings::describe(role).to_owned(),
            None => self.subcommand.clone(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} ({}): the {} hook of parent {:?} on {}",
            self.path.display(),
            self.scope,
            self.side(),
            self.parent,
            self.event
        )
    }
}

/// The roles, in the order `outbox hooks` documents them.
const ROLES: [Role; 3] = [Role::Parent, Role::Child, Role::Subagents];

/// The (event, subcommand) pairs `role` installs, from [`hooks::entries`]
/// (the list `outbox hooks` prints and `hooks install` installs).
fn expected(role: Role) -> Vec<(&'static str, String)> {
    let args = HooksArgs {
        action: None,
        parent: Some("p".to_owned()),
        child: role == Role::Child,
        subagents: role == Role::Subagents,
        title: None,
    };
    let store = StoreArg::Root(PathBuf::from("/r"));
    hooks::entries(Path::new("/outbox"), &store, &args)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| identity(&e.command).map(|(sub, _)| (e.event, sub)))
        .collect()
}

/// The role whose hooks include `subcommand` on `event`, if any.
fn side_of(event: &str, subcommand: &str) -> Option<Role> {
    ROLES.into_iter().find(|role| {
        expected(*role)
            .iter()
            .any(|(e, s)| *e == event && s == subcommand)
    })
}

/// Every command hook whose command runs `outbox`, in `root` (a settings
/// object) of the file `path`.
fn hooks_in(scope: &'static str, path: &Path, root: &Node, out: &mut Vec<Found>) {
    let Some((_, Node::Object(_, events))) = root.get("hooks") else {
        return;
    };
    for event in events {
        let Node::Array(_, groups) = &event.value else {
            continue;
        };
        for group in groups {
            let Some((_, Node::Array(_, hooks))) = group.get("hooks") else {
                continue;
            };
            for hook in hooks {
                let Some(command) = hook.get("command").and_then(|(_, c)| c.as_str()) else {
                    continue;
                };
                if let Some((subcommand, parent)) = identity(command) {
                    out.push(Found {
                        scope,
                        path: path.to_path_buf(),
                        event: event.key.clone(),
                        command: command.to_owned(),
                        subcommand,
                        parent,
                    });
                }
            }
        }
    }
}

/// Adds the findings about Claude Code's settings to `report`, before its
/// closing "nothing needs attention" line (which stays only if it is still
/// true).
pub fn examine(report: &mut Report) {
    let closing = report
        .lines
        .last()
        .is_some_and(|(level, text)| *level == "ok" && text == "nothing needs attention");
    if closing {
        report.lines.pop();
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let (home, config_dir) = settings::env_dirs();
    let files = settings::settings_files(&cwd, home.as_deref(), config_dir.as_deref());
    let mut found = Vec::new();
    for (scope, path) in &files {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                report.problem(format!(
                    "Claude Code settings {}: cannot read it: {e}",
                    path.display()
                ));
                continue;
            }
        };
        match jsonspan::parse(text.trim_start_matches('\u{feff}')) {
            Ok(root @ Node::Object(..)) => hooks_in(scope, path, &root, &mut found),
            Ok(_) | Err(_) => report.problem(format!(
                "Claude Code settings {}: not a JSON object; its hooks cannot be checked (and \
                 Claude Code may ignore the file)",
                path.display()
            )),
        }
    }
    let read: Vec<String> = files
        .iter()
        .map(|(scope, path)| format!("{scope} {}", path.display()))
        .collect();
    if found.is_empty() {
        report.info(format!(
            "no outbox hooks in the Claude Code settings read for this directory ({}); \
             `outbox hooks install` adds them (sessions started with `claude --settings` are \
             not seen here)",
            read.join(", ")
        ));
    }
    for hook in &found {
        report.ok(format!("Claude Code settings {}", hook.describe()));
        check_misplaced(report, hook);
        check_paths(report, hook);
    }
    check_duplicates(report, &found);
    check_both_sides(report, &found);
    check_missing(report, &found, expected);
    if closing && !report.has_problems() {
        report.ok("nothing needs attention".to_owned());
    }
}

fn check_misplaced(report: &mut Report, hook: &Found) {
    let side = hook.side();
    if hook.scope == "user" && matches!(side.as_str(), "parent" | "child" | "subagent") {
        report.problem(format!(
            "{}: at user scope every Claude Code session on this machine runs it, children and \
             parent alike; move it to the project or local settings of the sessions it is for \
             (outbox hooks uninstall --scope user --parent {} ..., then install --scope local)",
            hook.describe(),
            crate::hooks::shell_quote(&hook.parent)
        ));
    }
}

fn check_paths(report: &mut Report, hook: &Found) {
    let Some((program, store)) = named_paths(&hook.command) else {
        return;
    };
    let program = Path::new(&program);
    if program.is_absolute() && !program.is_file() {
        report.problem(format!(
            "{}: its binary {} does not exist; the hook fails in every session (reinstall: \
             outbox hooks install ...)",
            hook.describe(),
            program.display()
        ));
    }
    if let Some((flag, value)) = &store
        && flag == "--store-file"
        && !Path::new(value).is_file()
    {
        report.problem(format!(
            "{}: its store file {value} does not exist; the hook fails in every session \
             (write the store URL there, chmod 600)",
            hook.describe()
        ));
    }
    if let Some((flag, value)) = store
        && flag == "--root"
        && !Path::new(&value).exists()
    {
        report.problem(format!(
            "{}: its data root {value} does not exist: nothing was committed there yet, or it \
             names another root than the other side's hooks",
            hook.describe()
        ));
    }
}

fn check_duplicates(report: &mut Report, found: &[Found]) {
    let mut seen: BTreeMap<(&str, &str, &str), Vec<&Found>> = BTreeMap::new();
    for hook in found {
        seen.entry((&hook.event, &hook.subcommand, &hook.parent))
            .or_default()
            .push(hook);
    }
    for hooks in seen.values().filter(|h| h.len() > 1) {
        let places: Vec<String> = hooks
            .iter()
            .map(|h| format!("{} ({})", h.path.display(), h.scope))
            .collect();
        let what = format!(
            "the {} hook of parent {:?} on {} is installed {} times ({})",
            hooks[0].side(),
            hooks[0].parent,
            hooks[0].event,
            hooks.len(),
            places.join(", ")
        );
        // Seen with the real client (Claude Code 2.1.337, -p): the same
        // command in two settings files runs once, two commands that
        // differ at all (a space) both run.
        if hooks.iter().all(|h| h.command == hooks[0].command) {
            report.info(format!(
                "{what}, with the same command, which Claude Code runs once; uninstalling it \
                 from one file leaves it running from the other"
            ));
        } else {
            report.problem(format!(
                "{what} with different commands, which all run (each drains or commits on \
                 its own, perhaps to another root); remove all but one"
            ));
        }
    }
}

fn check_both_sides(report: &mut Report, found: &[Found]) {
    for parent_hook in found.iter().filter(|h| h.side() == "parent") {
        if let Some(child) = found.iter().find(|h| {
            h.side() == "child" && h.parent == parent_hook.parent && h.path == parent_hook.path
        }) {
            report.problem(format!(
                "{} holds both the parent and a child hook of parent {:?}: a session reading it \
                 commits to its own inbox and drains it; give each side its own settings (on {} \
                 and {})",
                parent_hook.path.display(),
                parent_hook.parent,
                parent_hook.event,
                child.event
            ));
        }
    }
}

/// A role whose hooks of one parent are partly in one file: the events it
/// should also have there.
/// `expected` is [`expected`], or a stand-in in tests.
fn check_missing(
    report: &mut Report,
    found: &[Found],
    expected: impl Fn(Role) -> Vec<(&'static str, String)>,
) {
    let side_of = |event: &str, subcommand: &str| {
        ROLES.into_iter().find(|role| {
            expected(*role)
                .iter()
                .any(|(e, s)| *e == event && s == subcommand)
        })
    };
    let mut sets: BTreeMap<(&Path, &str, &str), Vec<&Found>> = BTreeMap::new();
    for hook in found {
        if let Some(role) = side_of(&hook.event, &hook.subcommand) {
            sets.entry((&hook.path, &hook.parent, settings::describe(role)))
                .or_default()
                .push(hook);
        }
    }
    for ((path, parent, side), hooks) in sets {
        let Some(role) = ROLES.into_iter().find(|r| settings::describe(*r) == side) else {
            continue;
        };
        let missing: Vec<&str> = expected(role)
            .into_iter()
            .filter(|(event, sub)| {
                !hooks
                    .iter()
                    .any(|h| h.event == *event && h.subcommand == *sub)
            })
            .map(|(event, _)| event)
            .collect();
        if !missing.is_empty() {
            report.problem(format!(
                "{}: the {side} hooks of parent {parent:?} lack {} (outbox hooks install \
                 --parent {} ... adds them)",
                path.display(),
                missing.join(", "),
                hooks::shell_quote(parent)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(event: &str, subcommand: &str) -> Found {
        Found {
            scope: "project",
            path: PathBuf::from("/p/.claude/settings.json"),
            event: event.to_owned(),
            command: String::new(),
            subcommand: subcommand.to_owned(),
            parent: "c".to_owned(),
        }
    }

    #[test]
    fn a_role_with_some_of_its_events_is_missing_the_others() {
        // A child role of three events, as the confirmed-delivery work
        // makes it; this file has two of them.
        let expected = |role| match role {
            Role::Child => vec![
                ("Stop", "commit".to_owned()),
                ("StopFailure", "commit".to_owned()),
                ("SessionEnd", "commit".to_owned()),
            ],
            _ => vec![("Stop", "stop-hook".to_owned())],
        };
        let mut report = Report::default();
        let hooks = [found("Stop", "commit"), found("SessionEnd", "commit")];
        check_missing(&mut report, &hooks, expected);
        let text = report.render();
        assert!(
            text.contains("the child hooks of parent \"c\" lack StopFailure"),
            "{text}"
        );
        let mut report = Report::default();
        check_missing(&mut report, &[found("Stop", "stop-hook")], expected);
        assert!(!report.has_problems(), "{}", report.render());
    }
}
