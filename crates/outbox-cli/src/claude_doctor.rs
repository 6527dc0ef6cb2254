//! `outbox doctor`'s look at Claude Code's settings: the outbox hooks in
//! the files Claude Code reads for the current directory (user, project,
//! local; the locations of Claude Code's settings documentation, read
//! 2026-12-07, and /work/shared/docs/claude-code-hooks.md), and what is
//! missing, duplicated or misplaced among them. Sessions started with
//! `claude --settings` are not seen (nothing on disk says which).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::doctor::Report;
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
    /// Which side installs it: `parent`, `child`, `subagent`, or the
    /// subcommand for hooks this check does not classify.
    fn side(&self) -> String {
        match (self.event.as_str(), self.subcommand.as_str()) {
            ("SubagentStop", "commit") => "subagent".into(),
            (_, "commit") => "child".into(),
            (_, "stop-hook") => "parent".into(),
            (_, other) => other.into(),
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
        report.problem(format!(
            "the {} hook of parent {:?} on {} is installed {} times ({}); every copy with a \
             different command runs (identical ones run once), so remove all but one",
            hooks[0].side(),
            hooks[0].parent,
            hooks[0].event,
            hooks.len(),
            places.join(", ")
        ));
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
