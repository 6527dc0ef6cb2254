//! `cargo xtask compare`: build and run the comparison benchmark
//! (`bench/`, a Cargo workspace of its own) in release.
//!
//! xtask does not link the benchmark (it compiles the bundled SQLite); it
//! checks the arguments, then runs `cargo run --release --manifest-path
//! bench/Cargo.toml -- ...` with them, plus `--json <target dir>/compare.json`.
//! See `docs/compare.md`.

use std::env;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use crate::discover::cargo;

/// The `compare` entry of `cargo xtask help`.
pub const USAGE: &str = "  compare [--rounds R] [--quick] [--filter WORD]... [--scratch DIR]
      Build bench/ in release and run our outbox against a SQLite outbox
      side by side: R interleaved rounds (default 9, --quick 3) of n = 11
      trimmed means per case; prints the markdown table (medians, ratio
      ours / SQLite, verdict) and writes <target dir>/compare.json. The first
      build compiles SQLite (minutes on 2 cores). See docs/compare.md.
";

/// What `compare` was asked, checked before anything is built.
#[derive(Debug, Default, PartialEq, Eq)]
struct Args {
    rounds: Option<u32>,
    quick: bool,
    filters: Vec<String>,
    scratch: Option<String>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut out = Args::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<String, String> {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
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
                out.rounds = Some(r);
            }
            "--quick" => out.quick = true,
            "--filter" => out.filters.push(value("--filter")?),
            "--scratch" => out.scratch = Some(value("--scratch")?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(out)
}

/// The benchmark's own arguments for `args`, writing its JSON to `json`.
fn bench_args(args: &Args, json: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(r) = args.rounds {
        out.extend(["--rounds".into(), r.to_string()]);
    }
    if args.quick {
        out.push("--quick".into());
    }
    for f in &args.filters {
        out.extend(["--filter".into(), f.clone()]);
    }
    if let Some(s) = &args.scratch {
        out.extend(["--scratch".into(), s.clone()]);
    }
    out.extend(["--json".into(), json.into()]);
    out
}

/// Runs `cargo xtask compare` with `args` (after the `compare` word).
pub fn run(args: &[String]) -> ExitCode {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("xtask compare: {e}\n\nusage:\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let target =
        env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let json = target.join("compare.json");
    let status = Command::new(cargo())
        .args([
            "run",
            "--release",
            "--manifest-path",
            "bench/Cargo.toml",
            "--bin",
            "compare",
            "--",
        ])
        .args(bench_args(&args, &json.to_string_lossy()))
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("xtask compare: the benchmark failed ({s})");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("xtask compare: cannot run cargo: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_parse_and_are_forwarded() {
        let a = parse_args(&strings(&[
            "--rounds",
            "5",
            "--quick",
            "--filter",
            "drain",
            "--scratch",
            "/d",
        ]))
        .unwrap();
        assert_eq!(a.rounds, Some(5));
        assert_eq!(
            bench_args(&a, "t/compare.json"),
            strings(&[
                "--rounds",
                "5",
                "--quick",
                "--filter",
                "drain",
                "--scratch",
                "/d",
                "--json",
                "t/compare.json"
            ])
        );
        assert_eq!(
            bench_args(&parse_args(&[]).unwrap(), "j"),
            strings(&["--json", "j"])
        );
    }

    #[test]
    fn bad_arguments_are_named() {
        let e = parse_args(&strings(&["--rounds", "many"])).unwrap_err();
        assert!(e.contains("--rounds") && e.contains("many"), "{e}");
        assert!(parse_args(&strings(&["--rounds", "0"])).is_err());
        assert!(
            parse_args(&strings(&["--filter"]))
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            parse_args(&strings(&["--bogus"]))
                .unwrap_err()
                .contains("--bogus")
        );
    }
}
