//! The few operating-system calls std does not offer: probing and
//! signalling a process by pid, ignoring terminal interrupts, reading a
//! child's exit status, and replacing this process with another program.
//!
//! Kept in one place so the rest of the client reads as plain Rust, and so
//! a Windows port has one file to fill in.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};

use rustix::process::{Pid, Signal};

/// A pid as the kernel wants it; `None` for values that are no process
/// (0, or too large), so a bogus pid from the wire can never become
/// `kill(0, …)` or `kill(-1, …)`.
fn pid(raw: u32) -> Option<Pid> {
    i32::try_from(raw)
        .ok()
        .filter(|p| *p > 0)
        .and_then(Pid::from_raw)
}

/// Whether a process of ours with this pid exists. A pid that now belongs
/// to another user (`EPERM`) is not our daemon any more, so it counts as
/// gone, and so does a zombie.
pub fn process_alive(raw: u32) -> bool {
    pid(raw).is_some_and(|p| rustix::process::test_kill_process(p).is_ok()) && !is_zombie(raw)
}

/// Whether the process has exited and waits to be reaped. A daemon that
/// was our child's child ends up under an init that may never reap it
/// (some containers), and such a zombie holds no socket and no lock.
#[cfg(target_os = "linux")]
fn is_zombie(raw: u32) -> bool {
    // The state is the first field after the parenthesized command name,
    // which may itself contain spaces and parentheses.
    std::fs::read_to_string(format!("/proc/{raw}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X")
    })
}

/// Elsewhere the caller's socket check covers zombies.
#[cfg(not(target_os = "linux"))]
fn is_zombie(_raw: u32) -> bool {
    false
}

/// Sends SIGTERM, which the daemon treats as "finish up and exit".
pub fn terminate(raw: u32) -> io::Result<()> {
    let p = pid(raw).ok_or_else(|| io::Error::other(format!("{raw} is not a valid pid")))?;
    rustix::process::kill_process(p, Signal::TERM).map_err(io::Error::from)
}

/// Makes SIGINT and SIGQUIT harmless to this process, so that Ctrl-C at the
/// terminal (which reaches the whole foreground process group, the child
/// included) does not kill the client before the child it waits for.
///
/// Call it only after the child is spawned: an ignored disposition is
/// inherited across exec, and the child must keep the default.
pub fn ignore_terminal_interrupts() {
    for signal in [libc::SIGINT, libc::SIGQUIT] {
        // SAFETY: `signal(2)` with `SIG_IGN` installs no handler code, so no
        // async-signal-safety question arises; the previous disposition is
        // not needed (the process exits after the child does).
        unsafe {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
}

/// The exit code a shell would report for a finished child: its own code,
/// or 128 + the signal number if a signal killed it.
pub fn exit_code_of(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code).unwrap_or(1);
    }
    match status.signal() {
        Some(signal) => u8::try_from(128 + signal).unwrap_or(1),
        None => 1,
    }
}

/// Replaces this process with `command`; returns only on failure.
pub fn exec(command: &mut Command) -> io::Error {
    command.exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bogus_pids_are_never_signalled() {
        assert!(pid(0).is_none());
        assert!(pid(u32::MAX).is_none()); // would be -1 as i32
        assert!(!process_alive(0));
        assert!(terminate(0).is_err());
    }

    #[test]
    fn this_process_is_alive() {
        assert!(process_alive(std::process::id()));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_unreaped_child_is_not_alive() {
        use rustix::process::{WaitId, WaitIdOptions, waitid};
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Wait for it to exit, leaving it unreaped (WNOWAIT): a zombie.
        waitid(
            WaitId::Pid(super::pid(pid).unwrap()),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        )
        .unwrap();
        assert!(is_zombie(pid));
        assert!(!process_alive(pid));
        child.wait().unwrap();
    }

    #[test]
    fn exit_codes_pass_through_and_signals_add_128() {
        assert_eq!(exit_code_of(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code_of(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code_of(ExitStatus::from_raw(libc::SIGTERM)), 143);
        assert_eq!(exit_code_of(ExitStatus::from_raw(libc::SIGKILL)), 137);
    }
}
