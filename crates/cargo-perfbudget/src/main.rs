//! `cargo-perfbudget`: run as `cargo perfbudget <command>` (cargo passes
//! `perfbudget` as the first argument) or directly as
//! `cargo-perfbudget <command>`. See the library's docs.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("perfbudget") {
        args.remove(0);
    }
    cargo_perfbudget::main_with(&args)
}
