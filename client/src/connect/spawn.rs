//! Starting `credcached --detach` and reading the one line it answers.
//!
//! The contract with the daemon: it detaches itself (setsid, log file),
//! then writes exactly one [`Readiness`] line to stdout and closes it.
//! Silence, anything else, or no line within [`START_TIMEOUT`] is a
//! failure. The caller holds the start lock.

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use credcache_shared::config::Config;
use credcache_shared::paths::Paths;
use credcache_shared::readiness::{Readiness, ReadinessError};

use crate::exit::Error;

/// The daemon's executable name, looked up next to ours, then on PATH.
pub const DAEMON_PROGRAM: &str = "credcached";

/// How long a spawned daemon has to print its readiness line.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest readiness line read; a runaway child cannot fill memory.
const MAX_LINE: u64 = 4096;

/// A daemon serves the socket now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spawned {
    /// The one we spawned.
    Ready,
    /// Another one, which won a race we could not see.
    AlreadyRunning,
}

/// Why no readiness line was read.
#[derive(Debug, thiserror::Error)]
enum ReadLineError {
    #[error("no pipe to read its readiness line from")]
    NoPipe,
    #[error("cannot read its readiness line: {source}")]
    Read { source: io::Error },
    #[error("{DAEMON_PROGRAM} did not report ready within {}s", .timeout.as_secs())]
    TimedOut { timeout: Duration },
}

/// Spawns `credcached --detach [--config PATH]` and waits for its verdict.
/// Every failure is [`Error::Unreachable`] pointing at the daemon's log.
/// A daemon that refuses to start over an invalid config file is reported
/// as the config error it is (exit 2).
pub fn start_detached(config_flag: Option<&Path>, paths: &Paths) -> Result<Spawned, Error> {
    let cannot = |why: String| {
        Error::Unreachable(format!(
            "cannot start the daemon: {why} (see {})",
            paths.log_file.display()
        ))
    };

    let program = daemon_program();
    let mut args: Vec<&std::ffi::OsStr> = vec!["--detach".as_ref()];
    if let Some(config) = config_flag {
        args.extend(["--config".as_ref(), config.as_os_str()]);
    }
    // The daemon outlives us: it must not hold our caller's descriptors or
    // handles (stdin and stderr are the null device, stdout the readiness
    // pipe, nothing else).
    let mut child = crate::sys::spawn_detached(&program, &args).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::Unreachable(format!(
            "cannot start the daemon: {DAEMON_PROGRAM} is neither next to this executable \
             nor on PATH; install it beside credcache"
        )),
        _ => Error::Unreachable(format!(
            "cannot start the daemon: cannot run {}: {e}",
            program.display()
        )),
    })?;

    let line = read_ready_line(&mut child, START_TIMEOUT).map_err(|e| cannot(e.to_string()))?;
    // On `ready` the child is the daemon itself and keeps running: it is
    // not waited for. In every other case it has exited or is about to.
    match line.parse::<Readiness>() {
        Ok(Readiness::Ready { .. }) => Ok(Spawned::Ready),
        Ok(Readiness::Running { .. }) => {
            reap(&mut child);
            Ok(Spawned::AlreadyRunning)
        }
        Ok(Readiness::Failed { message }) => {
            reap(&mut child);
            // The line is free text; the config file is ours to check, and
            // only on this failure path, so the hot path never parses it.
            if let Err(e) = Config::load(&paths.config_file) {
                return Err(Error::Config(vec![format!("cannot start the daemon: {e}")]));
            }
            Err(cannot(message))
        }
        Err(ReadinessError::Silent) => {
            let status = match child.try_wait() {
                Some(status) => format!(" ({status})"),
                None => String::new(),
            };
            Err(cannot(format!(
                "{DAEMON_PROGRAM} stopped without saying whether it started{status}"
            )))
        }
        Err(ReadinessError::Garbled { text }) => {
            reap(&mut child);
            Err(cannot(format!(
                "{DAEMON_PROGRAM} said {text:?} instead of `ready <pid>`"
            )))
        }
    }
}

/// Reads the daemon's one readiness line, giving up after `timeout` (and
/// then killing the child, which is ours and is stuck). A thread does the
/// blocking read so the wait can have a deadline.
fn read_ready_line(
    child: &mut crate::sys::Daemon,
    timeout: Duration,
) -> Result<String, ReadLineError> {
    let Some(stdout) = child.take_stdout() else {
        return Err(ReadLineError::NoPipe);
    };
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let result = BufReader::new(stdout.take(MAX_LINE))
            .read_line(&mut line)
            .map(|_| line);
        let _ = tx.send(result);
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(line)) => Ok(line),
        Ok(Err(source)) => Err(ReadLineError::Read { source }),
        Err(_) => {
            child.kill_and_wait();
            Err(ReadLineError::TimedOut { timeout })
        }
    }
}

/// Collects the exit status of a `credcached --detach` that said it is
/// done, if it has exited already; never blocks.
fn reap(child: &mut crate::sys::Daemon) {
    let _ = child.try_wait();
}

/// `credcached` next to our own executable, else the bare name for a PATH
/// search.
pub fn daemon_program() -> PathBuf {
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let beside = dir
            .join(DAEMON_PROGRAM)
            .with_extension(std::env::consts::EXE_EXTENSION);
        if beside.is_file() {
            return beside;
        }
    }
    PathBuf::from(DAEMON_PROGRAM)
}

#[cfg(all(test, unix))] // `true` and `sleep`
mod tests {
    use super::*;
    use crate::sys::Daemon;
    use std::process::{Command, Stdio};

    #[test]
    fn a_silent_child_is_a_failure_not_a_hang() {
        let child = Command::new("true").stdout(Stdio::piped()).spawn().unwrap();
        let mut child = Daemon::from(child);
        let line = read_ready_line(&mut child, Duration::from_secs(10)).unwrap();
        assert_eq!(line.parse::<Readiness>(), Err(ReadinessError::Silent));
        child.kill_and_wait();
    }

    #[test]
    fn a_stuck_child_times_out_and_is_killed() {
        let child = Command::new("sleep")
            .arg("30")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = Daemon::from(child);
        let err = read_ready_line(&mut child, Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, ReadLineError::TimedOut { .. }), "{err}");
        assert_eq!(err.to_string(), "credcached did not report ready within 0s");
        assert!(child.try_wait().is_some(), "the child was not reaped");
    }
}
