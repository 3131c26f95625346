//! Running a program for a token (`command` credentials, the Azure CLI):
//! in a process group of its own, stdin closed, output read from pipes
//! while it runs, bounded in time and size, and nothing it started left
//! behind holding its output.

use std::process::Stdio;

use tokio::io::AsyncReadExt;

use super::FetchError;
use crate::http::MAX_BODY;

/// How long output is still read once the program has exited: what it
/// wrote is in the pipe already, so this only matters when something it
/// left running still holds its stdout.
const DRAIN: std::time::Duration = std::time::Duration::from_millis(200);

/// The most stderr kept (only its first line is ever shown).
const MAX_STDERR: usize = 64 * 1024;

/// How a program that failed ended, for its error: "exited with status
/// 3", or "was killed by a signal" when it has no exit code.
pub(crate) fn how_it_ended(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("exited with status {code}"),
        None => "was killed by a signal".to_owned(),
    }
}

/// A program's output read as JSON, or why not by position only: the
/// output may hold a token, so none of it goes into the error.
pub(crate) fn json_output(out: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(out).map_err(|e| {
        format!(
            "something that is not JSON (at line {}, column {})",
            e.line(),
            e.column()
        )
    })
}

/// Runs `program` (called `what` in messages: "command \"vault\"",
/// "`az account get-access-token`") in a process group of its own, with
/// `timeout`; a program that cannot be started is `cannot_start`'s error.
/// Returns
/// once the program has exited and its output is read: at EOF, or after
/// [`DRAIN`] if a child it left holds the pipe. On timeout, more than
/// [`MAX_BODY`] bytes of output, a pipe still held after the drain, or the
/// fetch being dropped, the whole group is killed, so nothing is left
/// behind.
pub(crate) async fn run(
    program: &str,
    args: &[String],
    what: &str,
    timeout: std::time::Duration,
    cannot_start: impl FnOnce(&std::io::Error) -> FetchError,
) -> Result<(std::process::ExitStatus, Vec<u8>, Vec<u8>), FetchError> {
    run_with_env(program, args, &[], what, timeout, cannot_start).await
}

/// [`run`], with `env` added to the environment the program inherits.
pub(crate) async fn run_with_env(
    program: &str,
    args: &[String],
    env: &[(&str, String)],
    what: &str,
    timeout: std::time::Duration,
    cannot_start: impl FnOnce(&std::io::Error) -> FetchError,
) -> Result<(std::process::ExitStatus, Vec<u8>, Vec<u8>), FetchError> {
    let mut command = tokio::process::Command::new(crate::sys::program_path(program));
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    crate::sys::isolate_child(&mut command);
    let mut child = command.spawn().map_err(|e| cannot_start(&e))?;
    let mut group = GroupGuard(crate::sys::ChildGroup::of(&child));
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(FetchError::transient(format!(
            "cannot read the output of {what}"
        )));
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let timed_out = || {
        FetchError::transient(format!(
            "{what} did not finish within {} s; killed it and its process group",
            timeout.as_secs()
        ))
    };
    let read_error =
        |e: std::io::Error| FetchError::transient(format!("reading the output of {what}: {e}"));
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut held = false;
    let exited = {
        // Read while waiting, so a program printing more than a pipe holds
        // is not stuck. `read_to_end` keeps what it read if dropped.
        let reading = async {
            let mut o = (&mut stdout).take(MAX_BODY as u64 + 1);
            let mut e = (&mut stderr).take(MAX_STDERR as u64);
            // Too much on stdout ends the wait at once (`try_join!` stops
            // at the first error), whatever stderr is doing.
            let out_read = async {
                match o.read_to_end(&mut out).await? {
                    n if n > MAX_BODY => Err(std::io::Error::other("too much output")),
                    n => Ok(n),
                }
            };
            tokio::try_join!(out_read, e.read_to_end(&mut err))
        };
        tokio::pin!(reading);
        tokio::select! {
            read = &mut reading => Err(read.err()),
            status = child.wait() => Ok(status),
            () = tokio::time::sleep_until(deadline) => return Err(timed_out()),
        }
    };
    if out.len() > MAX_BODY {
        return Err(FetchError::transient(format!(
            "{what} printed more than {MAX_BODY} bytes (1 MiB); killed it"
        )));
    }
    // Both pipes at end of file, or a read error: either way no exit yet.
    let exited = match exited {
        Ok(status) => Some(status),
        Err(Some(e)) => return Err(read_error(e)),
        Err(None) => None,
    };
    let status = match exited {
        Some(status) => {
            // Exited: take what is buffered, but do not wait for whatever
            // it left behind to close the pipe.
            let (out_room, err_room) = (MAX_BODY + 1 - out.len(), MAX_STDERR.saturating_sub(err.len()));
            let rest = async {
                let mut o = (&mut stdout).take(out_room as u64);
                let mut e = (&mut stderr).take(err_room as u64);
                tokio::try_join!(o.read_to_end(&mut out), e.read_to_end(&mut err))
            };
            match tokio::time::timeout(DRAIN, rest).await {
                Ok(read) => {
                    read.map_err(read_error)?;
                }
                // Something it started still holds the pipe: end it (and
                // the rest of the group) once the status is taken.
                Err(_) => {
                    tracing::info!(
                        "{what} exited but left a process holding its output; killing its process group"
                    );
                    held = true;
                }
            }
            if out.len() > MAX_BODY {
                return Err(FetchError::transient(format!(
                    "{what} printed more than {MAX_BODY} bytes (1 MiB)"
                )));
            }
            status
        }
        None => match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(status) => status,
            Err(_) => return Err(timed_out()),
        },
    }
    .map_err(|e| FetchError::transient(format!("waiting for {what}: {e}")))?;
    // A process the program left holding the pipe is ended with its
    // group; one that let go of the pipe (a daemon it started, which
    // detached properly) is left alone.
    if held {
        group.kill();
    }
    if let Some(rest) = group.0.take() {
        rest.release();
    }
    Ok((status, out, err))
}

/// Kills the program's process group (a Job Object on Windows) when
/// dropped, unless disarmed (`.0` taken): on timeout, overflow, an error,
/// or a cancelled fetch.
struct GroupGuard(Option<crate::sys::ChildGroup>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(group) = self.0.take() {
            group.kill();
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
