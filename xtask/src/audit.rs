//! `cargo xtask perf-audit`: no budget loosens without a log entry.
//!
//! Reads every gate from the source (the working tree, uncommitted changes
//! included) and from a base revision (see [`choose_base`]), and fails when,
//! without a matching entry in `docs/rfc/PERF_BUDGETS.md`:
//!
//! - a walltime or instruction gate's `base` was raised by more than 25%;
//! - a gate's class changed (cold, warm, count, instructions);
//! - a count gate's expectations changed;
//! - a gate disappeared.
//!
//! A *matching entry* is a `### ` heading in the log that names the gate and
//! that the base revision's log did not have: an old entry never excuses a
//! new change.
//!
//! # What it reads
//!
//! A gate is a `fn perf_*` whose body (comments removed) calls
//! `Gate::new("name", Class::X, BASE)`, `InstructionGate::new("name", BASE)`
//! or `CountGate::new("name")`. `BASE` is a literal
//! (`Duration::from_micros(600)`, `700_079`) or the name of a `const`
//! defined in the function or its file. A count gate's *expectations* are
//! the integer literals of its function body, in order: reading the
//! expected numbers themselves (often built by a helper) is not possible in
//! general, and a number that changes inside a count gate is what this rule
//! is for. Renaming a gate counts as removing one and adding another.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::process::Command;

/// The log every loosening needs an entry in.
pub const POLICY_LOG: &str = "docs/rfc/PERF_BUDGETS.md";

/// A raise of a base by more than this fraction needs an entry.
pub const MAX_SILENT_RAISE: f64 = 0.25;

/// What kind of gate, with the numbers the rules compare.
#[derive(Debug, Clone, PartialEq)]
pub enum GateKind {
    /// A walltime gate: its class (`cold`/`warm`) and base in nanoseconds.
    Walltime {
        /// `cold` or `warm`.
        class: String,
        /// The base, in nanoseconds.
        base_ns: u64,
    },
    /// An instruction-count gate and its base.
    Instructions {
        /// The base, in instructions.
        base: u64,
    },
    /// A count gate and the integer literals of its function.
    Count {
        /// The literals, in order.
        literals: Vec<u64>,
    },
}

impl GateKind {
    /// The class name as the records use it.
    pub fn class(&self) -> &str {
        match self {
            GateKind::Walltime { class, .. } => class,
            GateKind::Instructions { .. } => "instructions",
            GateKind::Count { .. } => "count",
        }
    }

    /// The base as a number, for gates that have one.
    pub fn base(&self) -> Option<u64> {
        match self {
            GateKind::Walltime { base_ns, .. } => Some(*base_ns),
            GateKind::Instructions { base } => Some(*base),
            GateKind::Count { .. } => None,
        }
    }
}

/// One gate found in the source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceGate {
    /// The gate's name (the string given to `Gate::new` & co).
    pub name: String,
    /// The file it is in, relative to the workspace root.
    pub file: String,
    /// The test function it is in.
    pub function: String,
    /// Its kind and numbers.
    pub kind: GateKind,
    /// The 1-based line that holds the base (the `const` declaration, or
    /// the constructor call for a literal); `None` for a count gate.
    pub base_line: Option<usize>,
}

/// A rule broken without a log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The gate.
    pub gate: String,
    /// What changed, in words.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.gate, self.what)
    }
}

// --------------------------------------------------------------------------
// Reading the source
// --------------------------------------------------------------------------

/// `text` with comments blanked (same length, newlines kept) and, in the
/// second string, the contents of string and char literals blanked too, so
/// braces and numbers inside them are not seen.
pub fn strip(text: &str) -> (String, String) {
    let chars: Vec<char> = text.chars().collect();
    let mut code = String::with_capacity(text.len());
    let mut bare = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                code.push(' ');
                bare.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    code.push_str("  ");
                    bare.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    code.push_str("  ");
                    bare.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    code.push(blank(chars[i]));
                    bare.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                code.push(c);
                bare.push(c);
                i += 1;
                continue;
            }
            let start = i;
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for (k, ch) in chars[start..j.min(chars.len())].iter().enumerate() {
                code.push(*ch);
                bare.push(if k < 2 + hashes { *ch } else { blank(*ch) });
            }
            i = j;
        } else if c == '"' {
            code.push('"');
            bare.push('"');
            i += 1;
            while i < chars.len() {
                let ch = chars[i];
                code.push(ch);
                if ch == '\\' && i + 1 < chars.len() {
                    bare.push(' ');
                    code.push(chars[i + 1]);
                    bare.push(blank(chars[i + 1]));
                    i += 2;
                    continue;
                }
                if ch == '"' {
                    bare.push('"');
                    i += 1;
                    break;
                }
                bare.push(blank(ch));
                i += 1;
            }
        } else if c == '\'' && is_char_literal(&chars[i..]) {
            let len = if chars[i + 1] == '\\' {
                chars[i + 2..]
                    .iter()
                    .position(|ch| *ch == '\'')
                    .map_or(2, |p| p + 3)
            } else {
                3
            };
            for ch in &chars[i..(i + len).min(chars.len())] {
                code.push(*ch);
                bare.push(' ');
            }
            i += len;
        } else {
            code.push(c);
            bare.push(c);
            i += 1;
        }
    }
    (code, bare)
}

/// Whether `rest` (starting at a `'`) is a char literal rather than a
/// lifetime.
fn is_char_literal(rest: &[char]) -> bool {
    matches!(rest, [_, '\\', ..] | [_, _, '\'', ..])
}

/// The index of the bracket closing the one opening at `open`.
fn matching(bare: &[char], open: usize) -> Option<usize> {
    let (o, c) = match bare[open] {
        '(' => ('(', ')'),
        '{' => ('{', '}'),
        '[' => ('[', ']'),
        _ => return None,
    };
    let mut depth = 0usize;
    for (i, ch) in bare.iter().enumerate().skip(open) {
        if *ch == o {
            depth += 1;
        } else if *ch == c {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// Splits the text between parentheses at top-level commas.
fn split_args(code: &[char], bare: &[char], open: usize, close: usize) -> Vec<String> {
    let mut args = Vec::new();
    let mut depth = 0i32;
    let mut start = open + 1;
    for i in open + 1..close {
        match bare[i] {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                args.push(code[start..i].iter().collect::<String>().trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last: String = code[start..close]
        .iter()
        .collect::<String>()
        .trim()
        .to_owned();
    if !last.is_empty() {
        args.push(last);
    }
    args
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every occurrence of the identifier `word` (not part of a longer one).
fn find_word(bare: &[char], word: &str, from: usize, to: usize) -> Vec<usize> {
    let w: Vec<char> = word.chars().collect();
    let mut found = Vec::new();
    let mut i = from;
    while i + w.len() <= to {
        if bare[i..i + w.len()] == w[..]
            && (i == 0 || !is_ident_char(bare[i - 1]))
            && !bare.get(i + w.len()).copied().is_some_and(is_ident_char)
        {
            found.push(i);
            i += w.len();
        } else {
            i += 1;
        }
    }
    found
}

/// An integer literal (`700_079`, `25u64`), if `text` is one.
fn int_literal(text: &str) -> Option<u64> {
    let t = text.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(t.len());
    let (number, suffix) = t.split_at(end);
    if !number.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let suffixes = ["", "u8", "u16", "u32", "u64", "u128", "usize", "i32", "i64"];
    if !suffixes.contains(&suffix) {
        return None;
    }
    number.replace('_', "").parse().ok()
}

/// Nanoseconds of a `Duration::from_*(N)` expression or an integer.
fn value_of(expr: &str) -> Option<u64> {
    let expr: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
    for (unit, scale) in [
        ("from_nanos(", 1u64),
        ("from_micros(", 1_000),
        ("from_millis(", 1_000_000),
        ("from_secs(", 1_000_000_000),
    ] {
        if let Some(at) = expr.find(unit) {
            let inner = &expr[at + unit.len()..];
            let inner = inner.strip_suffix(')')?;
            return int_literal(inner)?.checked_mul(scale);
        }
    }
    int_literal(&expr)
}

/// Resolves `expr` (a literal or a const's name) to a number, looking for
/// the const in `scopes` in order (the function's body, then the file).
/// Returns the value and, for a const, the position of its declaration.
fn resolve(
    expr: &str,
    code: &[char],
    bare: &[char],
    scopes: &[(usize, usize)],
) -> Option<(u64, Option<usize>)> {
    if let Some(v) = value_of(expr) {
        return Some((v, None));
    }
    if !expr.chars().all(is_ident_char) {
        return None;
    }
    for &(from, to) in scopes {
        for at in find_word(bare, "const", from, to) {
            let after: String = bare[at + 5..to].iter().collect();
            let after = after.trim_start();
            if !after.starts_with(expr)
                || after[expr.len()..]
                    .chars()
                    .next()
                    .is_some_and(is_ident_char)
            {
                continue;
            }
            let start = at + 5;
            let end = (start..to).find(|i| bare[*i] == ';')?;
            let decl: String = code[start..end].iter().collect();
            let value = decl.split_once('=')?.1;
            return value_of(value).map(|v| (v, Some(at)));
        }
    }
    None
}

/// The first string literal in `arg`.
fn string_literal(arg: &str) -> Option<String> {
    let start = arg.find('"')?;
    let end = arg[start + 1..].find('"')?;
    Some(arg[start + 1..start + 1 + end].to_owned())
}

/// Every gate in one file's source. Errors name the gate whose base cannot
/// be read (so a gate cannot escape the audit by an unreadable base).
pub fn gates_in(file: &str, text: &str) -> Result<Vec<SourceGate>, String> {
    let (code, bare) = strip(text);
    let code: Vec<char> = code.chars().collect();
    let bare: Vec<char> = bare.chars().collect();
    let whole = (0, bare.len());
    let mut gates = Vec::new();
    for at in find_word(&bare, "fn", 0, bare.len()) {
        let name_start = at
            + 2
            + bare[at + 2..]
                .iter()
                .take_while(|c| c.is_whitespace())
                .count();
        let function: String = bare[name_start..]
            .iter()
            .take_while(|c| is_ident_char(**c))
            .collect();
        if !function.starts_with("perf_") {
            continue;
        }
        let Some(open) = (name_start..bare.len()).find(|i| bare[*i] == '{' || bare[*i] == ';')
        else {
            continue;
        };
        if bare[open] == ';' {
            continue;
        }
        let Some(close) = matching(&bare, open) else {
            return Err(format!("{file}: unbalanced braces in `fn {function}`"));
        };
        let body = (open, close);
        for (ctor, kind) in [
            ("Gate", "walltime"),
            ("InstructionGate", "instructions"),
            ("CountGate", "count"),
        ] {
            for pos in find_word(&bare, ctor, open, close) {
                let rest: String = bare[pos + ctor.len()..close].iter().collect();
                let trimmed = rest.trim_start();
                if !trimmed.starts_with("::") || !trimmed[2..].trim_start().starts_with("new") {
                    continue;
                }
                let Some(paren) = (pos..close).find(|i| bare[*i] == '(') else {
                    continue;
                };
                let Some(end) = matching(&bare, paren) else {
                    continue;
                };
                let args = split_args(&code, &bare, paren, end);
                let name = args
                    .first()
                    .and_then(|a| string_literal(a))
                    .ok_or_else(|| {
                        format!("{file}: `fn {function}`: {ctor}::new without a literal gate name")
                    })?;
                let unreadable = |what: &str| {
                    format!(
                        "{file}: gate `{name}` in `fn {function}`: cannot read its {what} \
                         (use a literal or a `const` in the function or its file)"
                    )
                };
                let mut site = None;
                let mut base_of = |arg: Option<&String>| {
                    let (value, at) = resolve(arg?, &code, &bare, &[body, whole])?;
                    site = Some(at.unwrap_or(pos));
                    Some(value)
                };
                let kind = match kind {
                    "walltime" => {
                        let class = match args.get(1).map(|a| a.replace(' ', "")) {
                            Some(a) if a.ends_with("Class::Warm") => "warm",
                            Some(a) if a.ends_with("Class::Cold") => "cold",
                            _ => return Err(unreadable("class")),
                        };
                        let base = base_of(args.get(2)).ok_or_else(|| unreadable("base"))?;
                        GateKind::Walltime {
                            class: class.into(),
                            base_ns: base,
                        }
                    }
                    "instructions" => GateKind::Instructions {
                        base: base_of(args.get(1)).ok_or_else(|| unreadable("base"))?,
                    },
                    _ => GateKind::Count {
                        literals: literals(&bare[open..close]),
                    },
                };
                let base_line =
                    site.map(|at: usize| code[..at].iter().filter(|c| **c == '\n').count() + 1);
                gates.push(SourceGate {
                    name,
                    file: file.to_owned(),
                    function: function.clone(),
                    kind,
                    base_line,
                });
            }
        }
    }
    Ok(gates)
}

/// The integer literals of a stretch of code (comments and strings already
/// blanked), in order; digits inside identifiers do not count.
fn literals(bare: &[char]) -> Vec<u64> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bare.len() {
        if bare[i].is_ascii_digit()
            && (i == 0 || !(is_ident_char(bare[i - 1]) || bare[i - 1] == '.'))
        {
            let text: String = bare[i..]
                .iter()
                .take_while(|c| is_ident_char(**c))
                .collect();
            i += text.chars().count();
            let float =
                bare.get(i) == Some(&'.') && bare.get(i + 1).is_some_and(char::is_ascii_digit);
            if let Some(v) = int_literal(&text).filter(|_| !float) {
                out.push(v);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// All gates of a set of files, by gate name. Two gates of one name are
/// an error: the audit could not tell them apart.
pub fn gates_of(files: &[(String, String)]) -> Result<BTreeMap<String, SourceGate>, String> {
    let mut all = BTreeMap::new();
    for (path, text) in files {
        for gate in gates_in(path, text)? {
            if let Some(other) = all.get(&gate.name) {
                let other: &SourceGate = other;
                return Err(format!(
                    "gate name `{}` is used twice ({} `fn {}` and {} `fn {}`); gate names must \
                     be unique",
                    gate.name, other.file, other.function, gate.file, gate.function
                ));
            }
            all.insert(gate.name.clone(), gate);
        }
    }
    Ok(all)
}

// --------------------------------------------------------------------------
// The rules
// --------------------------------------------------------------------------

/// The `### ` headings of the log section of the policy file.
pub fn log_entries(policy: &str) -> Vec<String> {
    policy
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(str::to_owned)
        .collect()
}

/// Whether `heading` names `gate` as a whole word.
fn names(heading: &str, gate: &str) -> bool {
    heading.match_indices(gate).any(|(at, _)| {
        let before = heading[..at].chars().next_back();
        let after = heading[at + gate.len()..].chars().next();
        !before.is_some_and(is_ident_char) && !after.is_some_and(is_ident_char)
    })
}

/// Checks `new` against `old`; `new_entries` are the log headings added
/// since the base revision.
pub fn audit(
    old: &BTreeMap<String, SourceGate>,
    new: &BTreeMap<String, SourceGate>,
    new_entries: &[String],
) -> Vec<Violation> {
    let excused = |gate: &str| new_entries.iter().any(|h| names(h, gate));
    let mut violations = Vec::new();
    for (name, before) in old {
        let Some(after) = new.get(name) else {
            if !excused(name) {
                violations.push(Violation {
                    gate: name.clone(),
                    what: format!(
                        "disappeared (was in {} `fn {}`)",
                        before.file, before.function
                    ),
                });
            }
            continue;
        };
        if before.kind.class() != after.kind.class() {
            if !excused(name) {
                violations.push(Violation {
                    gate: name.clone(),
                    what: format!(
                        "class changed from {} to {}",
                        before.kind.class(),
                        after.kind.class()
                    ),
                });
            }
            continue;
        }
        match (&before.kind, &after.kind) {
            (GateKind::Count { literals: a }, GateKind::Count { literals: b })
                if a != b && !excused(name) =>
            {
                violations.push(Violation {
                    gate: name.clone(),
                    what: format!(
                        "count expectations changed: the numbers in `fn {}` went from {a:?} to \
                         {b:?}",
                        after.function
                    ),
                });
            }
            _ => {}
        }
        if let (Some(a), Some(b)) = (before.kind.base(), after.kind.base())
            && b as f64 > a as f64 * (1.0 + MAX_SILENT_RAISE)
            && !excused(name)
        {
            let unit = |v: u64| match &after.kind {
                GateKind::Walltime { .. } => format!("{:.3} ms", v as f64 / 1e6),
                _ => format!("{v} instructions"),
            };
            violations.push(Violation {
                gate: name.clone(),
                what: format!(
                    "base raised from {} to {} (+{:.0}%, more than {:.0}%)",
                    unit(a),
                    unit(b),
                    (b as f64 / a as f64 - 1.0) * 100.0,
                    MAX_SILENT_RAISE * 100.0
                ),
            });
        }
    }
    violations
}

// --------------------------------------------------------------------------
// Git and the command
// --------------------------------------------------------------------------

fn git(args: &[&str]) -> Result<String, String> {
    let output = Command::new("git")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`git {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn rev_exists(rev: &str) -> bool {
    git(&[
        "rev-parse",
        "--verify",
        "--quiet",
        &format!("{rev}^{{commit}}"),
    ])
    .is_ok()
}

/// The revision to compare with, and why it was chosen:
///
/// 1. `--against REV` when given;
/// 2. the merge base of `HEAD` and `origin/main` when that ref exists and
///    the merge base is not `HEAD` itself (a branch: every change since it
///    left main);
/// 3. the same with a local `main`;
/// 4. otherwise `HEAD~1` (CI on a clean clone of main, or on main itself:
///    the last commit's changes);
/// 5. none when `HEAD` has no parent (a first commit, or a shallow clone
///    with depth 1): the audit says so and has nothing to check.
pub fn choose_base(against: Option<&str>) -> Result<Option<(String, String)>, String> {
    if let Some(rev) = against {
        if !rev_exists(rev) {
            return Err(format!("`--against {rev}`: no such revision"));
        }
        return Ok(Some((rev.to_owned(), format!("{rev} (--against)"))));
    }
    let head = git(&["rev-parse", "HEAD"])?.trim().to_owned();
    for main in ["origin/main", "main"] {
        if rev_exists(main)
            && let Ok(base) = git(&["merge-base", "HEAD", main])
        {
            let base = base.trim().to_owned();
            if base != head {
                return Ok(Some((
                    base.clone(),
                    format!("merge base of HEAD and {main}"),
                )));
            }
        }
    }
    if rev_exists("HEAD~1") {
        return Ok(Some((
            "HEAD~1".into(),
            "HEAD~1 (no branch point found: the last commit)".into(),
        )));
    }
    Ok(None)
}

/// The `.rs` files of the working tree (tracked and untracked, not ignored).
pub fn working_files() -> Result<Vec<(String, String)>, String> {
    let list = git(&[
        "ls-files",
        "--cached",
        "--others",
        "--exclude-standard",
        "--",
        "*.rs",
    ])?;
    let mut files = Vec::new();
    for path in list.lines() {
        if !Path::new(path).exists() {
            continue; // deleted in the working tree
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        files.push((path.to_owned(), text));
    }
    Ok(files)
}

/// The `.rs` files at `rev` that mention a gate constructor.
fn files_at(rev: &str) -> Result<Vec<(String, String)>, String> {
    let list = git(&["ls-tree", "-r", "--name-only", rev])?;
    let mut files = Vec::new();
    for path in list.lines().filter(|p| p.ends_with(".rs")) {
        let text = git(&["show", &format!("{rev}:{path}")])?;
        if text.contains("Gate::new") {
            files.push((path.to_owned(), text));
        }
    }
    Ok(files)
}

/// Entry point; the working directory is already the workspace root.
pub fn run(args: &[String]) -> std::process::ExitCode {
    use std::process::ExitCode;
    let mut against = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--against" => match iter.next() {
                Some(rev) => against = Some(rev.clone()),
                None => {
                    eprintln!("perf-audit: error: `--against` needs a revision");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("perf-audit: error: unknown argument `{other}`\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    match try_run(against.as_deref()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("perf-audit: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The usage text of `cargo xtask perf-audit`.
pub const USAGE: &str = "\
usage: cargo xtask perf-audit [--against REV]

Compare every perf gate in the working tree with the same gate at a base
revision, and fail when a base was raised by more than 25%, a class changed,
a count gate's expectations changed, or a gate disappeared, unless
docs/rfc/PERF_BUDGETS.md gained a `### ` entry naming the gate since then.

The base revision: REV if given; else the merge base with origin/main (or
main) when HEAD is on a branch; else HEAD~1. With no parent commit (a
shallow clone), nothing can be compared: it says so and passes.
";

fn try_run(against: Option<&str>) -> Result<bool, String> {
    let Some((rev, why)) = choose_base(against)? else {
        println!(
            "perf-audit: HEAD has no parent commit and no main branch to compare with (a first \
             commit, or a shallow clone: fetch with depth 2 or more); nothing checked"
        );
        return Ok(true);
    };
    let new = gates_of(&working_files()?)?;
    let old = gates_of(&files_at(&rev)?)?;
    let old_log = git(&["show", &format!("{rev}:{POLICY_LOG}")]).unwrap_or_default();
    let new_log = std::fs::read_to_string(POLICY_LOG)
        .map_err(|e| format!("cannot read {POLICY_LOG}: {e}"))?;
    let before = log_entries(&old_log);
    let added: Vec<String> = log_entries(&new_log)
        .into_iter()
        .filter(|h| !before.contains(h))
        .collect();
    let violations = audit(&old, &new, &added);
    println!(
        "perf-audit: {} gate(s) in the working tree, {} at {why}",
        new.len(),
        old.len()
    );
    if violations.is_empty() {
        println!("perf-audit: ok, no gate loosened without an entry in {POLICY_LOG}");
        return Ok(true);
    }
    eprintln!(
        "perf-audit: {} change(s) need an entry in {POLICY_LOG} (a `### ` heading naming the \
         gate, see its template):",
        violations.len()
    );
    for v in &violations {
        eprintln!("  {v}");
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = r#"
//! Gates. `fn perf_in_doc() { Gate::new("perf_doc", Class::Cold, X) }` is a comment.
use std::time::Duration;
/// Observed 0.6 ms.
const DRAIN_BASE: Duration = Duration::from_micros(600);

#[test]
fn perf_drain() {
    let s = "a { brace in a string";
    let c = '{';
    Gate::new("perf_drain", Class::Warm, DRAIN_BASE).check(&m);
}

#[test]
fn perf_sort() {
    const BASE: Duration = Duration::from_millis(4);
    Gate::new("perf_sort", Class::Cold, BASE).check(&m);
}

#[test]
fn perf_instr() {
    InstructionGate::new("perf_instr", 700_079).check_with_setup(|| (), |()| ());
}

#[test]
fn perf_counts() {
    for n in [1, FAN_OUT] {
        gate = gate.expect(format!("file fsyncs {n}"), 2, c.file); // 99 in a comment
    }
    CountGate::new("perf_counts").check();
}

fn helper() { Gate::new("not_a_gate", Class::Warm, Duration::from_millis(1)); }
"#;

    fn gates(text: &str) -> BTreeMap<String, SourceGate> {
        gates_of(&[("a.rs".to_owned(), text.to_owned())]).expect("parses")
    }

    #[test]
    fn reads_every_kind_of_gate_from_source() {
        let g = gates(SOURCE);
        assert_eq!(
            g.keys().collect::<Vec<_>>(),
            ["perf_counts", "perf_drain", "perf_instr", "perf_sort"]
        );
        assert_eq!(
            g["perf_drain"].kind,
            GateKind::Walltime {
                class: "warm".into(),
                base_ns: 600_000
            }
        );
        assert_eq!(
            g["perf_sort"].kind,
            GateKind::Walltime {
                class: "cold".into(),
                base_ns: 4_000_000
            }
        );
        assert_eq!(
            g["perf_instr"].kind,
            GateKind::Instructions { base: 700_079 }
        );
        assert_eq!(
            g["perf_counts"].kind,
            GateKind::Count {
                literals: vec![1, 2]
            }
        );
        assert_eq!(g["perf_drain"].function, "perf_drain");
        let line = |n: &str| SOURCE.lines().nth(g[n].base_line.expect("a base line") - 1);
        assert_eq!(
            line("perf_drain"),
            Some("const DRAIN_BASE: Duration = Duration::from_micros(600);")
        );
        assert!(line("perf_sort").is_some_and(|l| l.contains("from_millis(4)")));
        assert!(line("perf_instr").is_some_and(|l| l.contains("700_079")));
        assert_eq!(g["perf_counts"].base_line, None);
    }

    #[test]
    fn an_unreadable_base_is_an_error_naming_the_gate() {
        let text = "fn perf_x() { Gate::new(\"perf_x\", Class::Warm, base()).check(&m); }";
        let e = gates_of(&[("x.rs".into(), text.into())]).expect_err("unreadable");
        assert!(
            e.contains("perf_x") && e.contains("base") && e.contains("x.rs"),
            "{e}"
        );
    }

    #[test]
    fn a_duplicate_gate_name_is_an_error() {
        let text = "fn perf_a() { CountGate::new(\"g\"); }\nfn perf_b() { CountGate::new(\"g\"); }";
        let e = gates_of(&[("x.rs".into(), text.into())]).expect_err("duplicate");
        assert!(e.contains("`g`") && e.contains("twice"), "{e}");
    }

    fn changed(from: &str, to: &str) -> String {
        SOURCE.replacen(from, to, 1)
    }

    #[test]
    fn unchanged_source_and_small_raises_pass() {
        assert!(audit(&gates(SOURCE), &gates(SOURCE), &[]).is_empty());
        // +25% exactly is allowed without an entry; lowering always is.
        let up = changed("from_micros(600)", "from_micros(750)");
        assert!(audit(&gates(SOURCE), &gates(&up), &[]).is_empty());
        let down = changed("from_micros(600)", "from_micros(100)");
        assert!(audit(&gates(SOURCE), &gates(&down), &[]).is_empty());
        // A new gate needs no entry.
        let added = format!("{SOURCE}\nfn perf_new() {{ CountGate::new(\"perf_new\"); }}");
        assert!(audit(&gates(SOURCE), &gates(&added), &[]).is_empty());
    }

    #[test]
    fn rule_a_base_raised_over_25_percent() {
        let up = changed("from_micros(600)", "from_micros(751)");
        let v = audit(&gates(SOURCE), &gates(&up), &[]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].gate, "perf_drain");
        assert!(v[0].what.contains("0.600 ms to 0.751 ms (+25%"), "{}", v[0]);
        let up = changed("700_079", "900_000");
        let v = audit(&gates(SOURCE), &gates(&up), &[]);
        assert!(
            v[0].what.contains("700079 instructions to 900000"),
            "{}",
            v[0]
        );
        // A const inside the function counts too.
        let up = changed("from_millis(4)", "from_millis(6)");
        assert_eq!(audit(&gates(SOURCE), &gates(&up), &[])[0].gate, "perf_sort");
    }

    #[test]
    fn rule_a_class_changed() {
        let cold = changed("Class::Warm, DRAIN_BASE", "Class::Cold, DRAIN_BASE");
        let v = audit(&gates(SOURCE), &gates(&cold), &[]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            v[0].what.contains("class changed from warm to cold"),
            "{}",
            v[0]
        );
    }

    #[test]
    fn rule_a_count_expectation_changed() {
        let more = changed(", 2, c.file", ", 3, c.file");
        let v = audit(&gates(SOURCE), &gates(&more), &[]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].what.contains("[1, 2] to [1, 3]"), "{}", v[0]);
        // Comments and strings are not expectations.
        let comment = changed("99 in a comment", "98 in a comment");
        assert!(audit(&gates(SOURCE), &gates(&comment), &[]).is_empty());
    }

    #[test]
    fn rule_a_gate_disappeared() {
        let gone = changed("CountGate::new(\"perf_counts\")", "drop(gate)");
        let v = audit(&gates(SOURCE), &gates(&gone), &[]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            v[0].what
                .contains("disappeared (was in a.rs `fn perf_counts`)"),
            "{}",
            v[0]
        );
        // Renaming is removing one gate and adding another.
        let renamed = changed("\"perf_counts\"", "\"perf_counts_2\"");
        assert_eq!(audit(&gates(SOURCE), &gates(&renamed), &[]).len(), 1);
    }

    #[test]
    fn a_new_log_entry_naming_the_gate_excuses_the_change() {
        let up = changed("from_micros(600)", "from_micros(900)");
        let entry = vec!["2026-11-29 — perf_drain: 0.6 ms → 0.9 ms (+50%)".to_owned()];
        assert!(audit(&gates(SOURCE), &gates(&up), &entry).is_empty());
        // Naming another gate, or a gate whose name merely contains it, does not.
        let other = vec!["2026-11-29 — perf_drain_25: 0.6 ms → 0.9 ms".to_owned()];
        assert_eq!(audit(&gates(SOURCE), &gates(&up), &other).len(), 1);
    }

    #[test]
    fn log_entries_are_the_level_3_headings() {
        let log = "# RFC\n## Log\n### 2026-11-28 — perf_a: 1 → 2\n- x\n### second\n";
        assert_eq!(log_entries(log), ["2026-11-28 — perf_a: 1 → 2", "second"]);
    }

    #[test]
    fn literals_and_durations_parse() {
        assert_eq!(value_of("Duration::from_micros(4_200)"), Some(4_200_000));
        assert_eq!(
            value_of(" Duration :: from_secs ( 2 ) "),
            Some(2_000_000_000)
        );
        assert_eq!(value_of("700_079"), Some(700_079));
        assert_eq!(value_of("25u64"), Some(25));
        assert_eq!(value_of("BASE"), None);
        assert_eq!(value_of("2 * MS"), None);
    }

    #[test]
    fn strip_blanks_comments_and_string_contents_keeping_positions() {
        let text = "a // b \"c\"\n\"d // e\" /* q */ r#\"g}\"# 'h' 'life";
        let (code, bare) = strip(text);
        assert_eq!(code.len(), text.len());
        assert_eq!(bare.len(), text.len());
        assert!(!code.contains('b') && code.contains("d // e") && !code.contains('q'));
        assert!(!bare.contains('d') && !bare.contains('}') && !bare.contains('h'));
        assert!(bare.contains("'life"), "a lifetime is code: {bare}");
    }

    /// The real workspace: every gate's base is readable, and the audit of
    /// the tree against itself is clean.
    #[test]
    fn the_workspace_gates_all_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("root");
        let mut files = Vec::new();
        let mut stack = vec![root.join("crates")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("read");
                    files.push((path.display().to_string(), text));
                }
            }
        }
        let gates = gates_of(&files).expect("every gate parses");
        for name in [
            "perf_outbox_drain_25",
            "perf_sort_200k_u64",
            "perf_outbox_drain_op_counts",
        ] {
            assert!(
                gates.contains_key(name),
                "{name} not found in {:?}",
                gates.keys()
            );
        }
        assert!(audit(&gates, &gates, &[]).is_empty());
    }
}
