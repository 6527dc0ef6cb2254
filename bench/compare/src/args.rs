//! Command-line arguments.

use std::path::{Path, PathBuf};

/// Rounds of a full run: each round measures every case once per
/// implementation (n = 11 trimmed mean), alternating which goes first.
pub const DEFAULT_ROUNDS: u32 = 9;

/// Rounds of a `--quick` run.
pub const QUICK_ROUNDS: u32 = 3;

/// The usage text.
pub const USAGE: &str = "\
usage: compare [--rounds R] [--quick] [--filter WORD]... [--scratch DIR] [--json FILE] [--list]

Runs our outbox and a SQLite outbox side by side in one process: R rounds
(default 9), each measuring every case once per implementation (n = 11
trimmed mean) with the order alternating from round to round; prints the
median over rounds, the ratio ours / SQLite and a verdict, as markdown, and
writes the details as JSON.

  --rounds R      rounds (at least 1; default 9, or 3 with --quick)
  --quick         3 rounds unless --rounds says otherwise
  --filter WORD   only cases whose id contains WORD (repeatable; any match);
                  --list shows the ids
  --scratch DIR   where the stores live (default: bench/target/compare-scratch);
                  must be a real disk for the real-fsync cases to mean anything
  --json FILE     where to write the JSON (default: bench/target/compare.json)
  --list          print the case ids and exit
";

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Interleaved rounds.
    pub rounds: u32,
    /// Case-id substrings; empty means every case.
    pub filters: Vec<String>,
    /// Where the stores are created.
    pub scratch: PathBuf,
    /// Where the JSON goes.
    pub json: PathBuf,
    /// Only list the cases.
    pub list: bool,
    /// Only print the usage.
    pub help: bool,
}

/// `bench/target`, where the defaults live.
fn bench_target() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).join("target")
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Args, String> {
    let mut rounds = None;
    let mut quick = false;
    let mut out = Args {
        rounds: DEFAULT_ROUNDS,
        filters: Vec::new(),
        scratch: bench_target().join("compare-scratch"),
        json: bench_target().join("compare.json"),
        list: false,
        help: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<&String, String> {
            it.next().ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--rounds" => {
                let v = value("--rounds")?;
                let r: u32 = v
                    .parse()
                    .map_err(|_| format!("--rounds takes a whole number, got {v:?}"))?;
                if r == 0 {
                    return Err("--rounds must be at least 1".into());
                }
                rounds = Some(r);
            }
            "--quick" => quick = true,
            "--filter" => out.filters.push(value("--filter")?.clone()),
            "--scratch" => out.scratch = PathBuf::from(value("--scratch")?),
            "--json" => out.json = PathBuf::from(value("--json")?),
            "--list" => out.list = true,
            "-h" | "--help" => out.help = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    out.rounds = rounds.unwrap_or(if quick { QUICK_ROUNDS } else { DEFAULT_ROUNDS });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(a: &[&str]) -> Result<Args, String> {
        parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_quick_and_explicit_rounds() {
        assert_eq!(parse_strs(&[]).unwrap().rounds, DEFAULT_ROUNDS);
        assert_eq!(parse_strs(&["--quick"]).unwrap().rounds, QUICK_ROUNDS);
        assert_eq!(parse_strs(&["--quick", "--rounds", "5"]).unwrap().rounds, 5);
        let a = parse_strs(&["--filter", "drain", "--filter", "k0", "--json", "x.json"]).unwrap();
        assert_eq!(a.filters, ["drain", "k0"]);
        assert_eq!(a.json, PathBuf::from("x.json"));
    }

    #[test]
    fn bad_arguments_are_named() {
        let e = parse_strs(&["--rounds", "many"]).unwrap_err();
        assert!(e.contains("--rounds") && e.contains("many"), "{e}");
        assert!(parse_strs(&["--rounds", "0"]).is_err());
        assert!(
            parse_strs(&["--rounds"])
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(parse_strs(&["--bogus"]).unwrap_err().contains("--bogus"));
    }
}
