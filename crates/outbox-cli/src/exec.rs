//! `drain --exec CMD [ARGS...]`: delivery to a command whose exit status
//! confirms it.
//!
//! A pipe cannot confirm delivery: `outbox drain | head -1` hands every
//! record to the pipe's buffer, and the reader may stop after one line. A
//! command can: it gets the records on its stdin and says "handled" by
//! exiting 0, after which the drain marks them consumed.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::process::{Command, ExitStatus, Stdio};

/// Why a command did not confirm delivery. Every variant means: nothing was
/// marked consumed.
#[derive(Debug)]
pub enum ExecError {
    /// The command could not be started.
    Spawn(io::Error),
    /// The command did not read all its input (it exited early, or closed
    /// stdin), or writing to it failed.
    Write(io::Error, Option<ExitStatus>),
    /// Waiting for the command failed.
    Wait(io::Error),
    /// The command exited non-zero or was killed.
    Status(ExitStatus),
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::Spawn(e) => write!(f, "cannot run it: {e}"),
            ExecError::Write(e, status) => {
                if e.kind() == io::ErrorKind::BrokenPipe {
                    write!(f, "it did not read all the records")?;
                } else {
                    write!(f, "writing the records to its stdin failed: {e}")?;
                }
                match status {
                    Some(status) => write!(f, " ({})", describe(*status)),
                    None => Ok(()),
                }
            }
            ExecError::Wait(e) => write!(f, "waiting for it failed: {e}"),
            ExecError::Status(status) => f.write_str(&describe(*status)),
        }
    }
}

/// "exited with status 3" or "was killed by signal 9".
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended with {status}"),
    }
}

/// The command line as the user wrote it, for messages: `` `sh -c 'exit 3'` ``.
pub fn display(cmd: &[OsString]) -> String {
    let words: Vec<String> = cmd
        .iter()
        .map(|w| crate::hooks::shell_quote(&w.to_string_lossy()))
        .collect();
    format!("`{}`", words.join(" "))
}

/// Runs `cmd` (program and arguments) with `input` on its stdin and its
/// stdout and stderr those of this process (so its messages reach the
/// user unchanged); `Ok` only when it read all of `input` and exited 0.
///
/// `cmd` must not be empty (clap requires at least the program).
pub fn deliver(cmd: &[OsString], input: &[u8]) -> Result<(), ExecError> {
    deliver_env(cmd, input, &[])
}

/// [`deliver`], with `env` added to the command's environment.
pub fn deliver_env(cmd: &[OsString], input: &[u8], env: &[(&str, &str)]) -> Result<(), ExecError> {
    let (program, args) = cmd.split_first().expect("--exec has a program");
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(ExecError::Spawn)?;
    // The command's stdout is not a pipe of ours, so writing all of the
    // input before waiting cannot deadlock. Closing stdin (the drop) is the
    // end of the input.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let written = stdin.write_all(input).and_then(|()| stdin.flush());
    drop(stdin);
    let status = child.wait();
    if let Err(e) = written {
        return Err(ExecError::Write(e, status.ok()));
    }
    let status = status.map_err(ExecError::Wait)?;
    if status.success() {
        Ok(())
    } else {
        Err(ExecError::Status(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn exit_zero_after_reading_everything_is_delivery() {
        assert!(deliver(&cmd(&["sh", "-c", "cat >/dev/null"]), b"x\n").is_ok());
    }

    #[test]
    fn anything_else_is_not_and_says_why() {
        let err = deliver(&cmd(&["sh", "-c", "cat >/dev/null; exit 3"]), b"x").unwrap_err();
        assert_eq!(err.to_string(), "exited with status 3");
        let err = deliver(&cmd(&["sh", "-c", "kill -9 $$"]), b"").unwrap_err();
        assert_eq!(err.to_string(), "was killed by signal 9");
        let err = deliver(&cmd(&["/nonexistent/outbox-test-cmd"]), b"").unwrap_err();
        assert!(err.to_string().starts_with("cannot run it: "), "{err}");
        // More than a pipe buffer, to a command that reads nothing: the
        // write fails, whatever the command's status.
        let big = vec![b'x'; 1 << 20];
        let err = deliver(&cmd(&["true"]), &big).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("it did not read all the records (exited with status 0"),
            "{err}"
        );
    }

    #[test]
    fn the_command_is_shown_quoted() {
        assert_eq!(display(&cmd(&["sh", "-c", "exit 3"])), "`sh -c 'exit 3'`");
    }
}
