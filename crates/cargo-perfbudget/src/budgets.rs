//! The budgets file: every gate's declared budget, committed beside the
//! code, so `audit` compares two revisions by reading two JSON files.
//!
//! Each gate's record carries its budget as the gate's code declares it
//! (`perfbudget::Declared`: class, base, factor, tolerance, a multiplier set
//! in code, expected counts). After a run, `cargo perfbudget test` writes
//! what the gates declared into the budgets file (`perf-budgets.json` at
//! the workspace root unless `[workspace.metadata.perfbudget] budgets`
//! says otherwise), and prints what changed; with `--locked` (CI) a
//! difference fails the run instead, so the committed file always says
//! what the committed code enforces. Nothing here reads Rust source.

use std::collections::BTreeMap;
use std::path::Path;

use perfbudget::Declared;
use serde::{Deserialize, Serialize};

use crate::model::Outcome;

/// Version of the budgets file's layout.
pub const BUDGETS_SCHEMA: u32 = 1;

/// The budgets file's contents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    /// [`BUDGETS_SCHEMA`].
    pub schema: u32,
    /// Gate name → declared budget, sorted by name.
    pub gates: BTreeMap<String, Declared>,
}

impl Budgets {
    /// Parses a budgets file's text; `what` names it in errors.
    pub fn parse(text: &str, what: &str) -> Result<Budgets, String> {
        let budgets: Budgets =
            serde_json::from_str(text).map_err(|e| format!("{what}: not a budgets file: {e}"))?;
        if budgets.schema != BUDGETS_SCHEMA {
            return Err(format!(
                "{what}: budgets schema {}, this runner reads {BUDGETS_SCHEMA}",
                budgets.schema
            ));
        }
        Ok(budgets)
    }

    /// Reads `path`; a missing file is an empty set of budgets.
    pub fn load(path: &Path) -> Result<Budgets, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Budgets::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Budgets {
                schema: BUDGETS_SCHEMA,
                gates: BTreeMap::new(),
            }),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// The file's text: pretty JSON with a trailing newline, stable order.
    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// The budgets after a run: every gate that ran replaces its entry;
    /// when the run was `complete` (no filter), gates that no longer exist
    /// are dropped. Returns the new budgets and one line per change; an
    /// error when two gates of one run share a name but not a budget.
    pub fn updated(
        &self,
        outcomes: &[Outcome],
        complete: bool,
    ) -> Result<(Budgets, Vec<String>), String> {
        let mut seen: BTreeMap<String, Declared> = BTreeMap::new();
        for outcome in outcomes {
            for record in &outcome.records {
                if let Some(other) = seen.get(&record.gate)
                    && other != &record.declared
                {
                    return Err(format!(
                        "two gates are named `{}` with different budgets (one in {}); gate \
                         names must be unique in the workspace",
                        record.gate,
                        outcome.test.id()
                    ));
                }
                seen.insert(record.gate.clone(), record.declared.clone());
            }
        }
        let mut gates = self.gates.clone();
        let mut changes = Vec::new();
        for (name, declared) in &seen {
            match gates.insert(name.clone(), declared.clone()) {
                None => changes.push(format!("added `{name}`: {}", describe(declared))),
                Some(old) if &old != declared => changes.push(format!(
                    "changed `{name}`: {} -> {}",
                    describe(&old),
                    describe(declared)
                )),
                Some(_) => {}
            }
        }
        if complete {
            gates.retain(|name, declared| {
                let keep = seen.contains_key(name);
                if !keep {
                    changes.push(format!("removed `{name}`: {}", describe(declared)));
                }
                keep
            });
        }
        Ok((
            Budgets {
                schema: BUDGETS_SCHEMA,
                gates,
            },
            changes,
        ))
    }
}

/// A declared budget in a few words.
pub fn describe(d: &Declared) -> String {
    let mut parts = vec![d.class.clone()];
    if let Some(base) = d.base {
        parts.push(match d.class.as_str() {
            "instructions" => format!("base {base} instructions"),
            _ => format!("base {:.3} ms", base as f64 / 1e6),
        });
    }
    if let Some(f) = d.factor {
        parts.push(format!("factor {f}"));
    }
    if let Some(t) = d.tolerance {
        parts.push(format!("tolerance {:.1}%", t * 100.0));
    }
    if let Some(m) = d.multiplier_in_code {
        parts.push(format!("multiplier {m} set in code"));
    }
    match d.expected.len() {
        0 => {}
        1..=3 => {
            let e: Vec<String> = d
                .expected
                .iter()
                .map(|e| format!("{} {}", e.expected, e.what))
                .collect();
            parts.push(format!("expects {}", e.join(", ")));
        }
        n => parts.push(format!("{n} expected counts")),
    }
    parts.join(", ")
}
