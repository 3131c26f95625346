//! The Unix side of [`crate::sys`]: probing and signalling a process by
//! pid, forwarding signals to `exec`'s child, reading a child's exit
//! status, replacing this process with another program, keeping our
//! caller's file descriptors from the daemon, and `poll`/`read` on the
//! daemon's socket.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};

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

/// Whether `terminate` failed because the process is gone already.
pub fn is_no_such_process(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ESRCH)
}

/// Waits until the socket has something to read (or the daemon hung up,
/// which the read then reports); false if `timeout` passed first.
pub fn readable_within(
    stream: &interprocess::local_socket::Stream,
    timeout: std::time::Duration,
) -> io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use std::os::fd::AsFd;

    // The one variant on Unix.
    let interprocess::local_socket::Stream::UdSocket(stream) = stream;
    let fd = stream.as_fd();
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let left = Timespec {
            tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: left.subsec_nanos().into(),
        };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&left)) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads what the socket has into `buf`'s spare capacity (not zeroed
/// first), retrying on EINTR; `Ok(0)` at end of stream.
pub fn read_spare(
    stream: &interprocess::local_socket::Stream,
    buf: &mut Vec<u8>,
) -> io::Result<usize> {
    use std::os::fd::AsFd;
    let interprocess::local_socket::Stream::UdSocket(socket) = stream;
    loop {
        match rustix::io::read(socket.as_fd(), rustix::buffer::spare_capacity(buf)) {
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sets the socket's receive timeout (a read past it fails with
/// `WouldBlock`).
pub fn set_recv_timeout(
    stream: &interprocess::local_socket::Stream,
    timeout: Option<std::time::Duration>,
) -> io::Result<()> {
    use interprocess::local_socket::traits::Stream as _;
    stream.set_recv_timeout(timeout)
}

/// Opens (creating it 0600 if missing) a private file: the start lock.
pub fn open_private(path: &std::path::Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
}

/// Sets a file's permission bits.
pub fn set_mode(file: &std::fs::File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

/// A file's permission bits (`0o7777`).
pub fn mode_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

/// Creates a new file, 0600, that must not exist yet.
pub fn create_new_private(path: &std::path::Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Sends SIGTERM, which the daemon treats as "finish up and exit".
pub fn terminate(raw: u32) -> io::Result<()> {
    let p = pid(raw).ok_or_else(|| io::Error::other(format!("{raw} is not a valid pid")))?;
    rustix::process::kill_process(p, Signal::TERM).map_err(io::Error::from)
}

/// The signals `exec` passes on to its child: the ones a supervisor,
/// `kill`, `timeout` or a service manager sends to stop or poke a program.
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// The child signals are forwarded to; 0 before there is one.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// A forwarded signal that arrived before the child's pid was known.
static PENDING: AtomicI32 = AtomicI32::new(0);

/// Signal forwarding for `exec`, in two steps around the spawn:
/// [`SignalForwarding::install`] before it, so that a signal arriving while
/// the child starts is kept rather than fatal, and [`forward_to`] after it.
/// Dropping it without forwarding (the spawn failed) restores the default
/// dispositions.
///
/// The handlers do not leak into the child: exec(2) resets caught signals
/// to their default, and glibc's posix_spawn runs none of them in the
/// child before that. (Blocking the signals instead would: the child
/// inherits the signal mask.)
///
/// [`forward_to`]: SignalForwarding::forward_to
pub struct SignalForwarding {
    forwarding: bool,
}

impl SignalForwarding {
    /// Installs the handlers; until [`forward_to`](Self::forward_to), a
    /// signal is only remembered.
    pub fn install() -> Self {
        CHILD.store(0, Ordering::SeqCst);
        PENDING.store(0, Ordering::SeqCst);
        for signal in FORWARDED {
            set_disposition(signal, forward as *const () as libc::sighandler_t);
        }
        Self { forwarding: false }
    }

    /// From now on, a forwarded signal that another process sends to this
    /// one is sent on to `child`. Signals the kernel raises itself (Ctrl-C
    /// or a hangup at the terminal) are not: they reach the whole
    /// foreground process group, the child included, and a second copy
    /// would turn one Ctrl-C into two (terraform, for one, takes a second
    /// interrupt as "abort now"). Either way this process does not exit
    /// before the child, whose exit code it reports.
    pub fn forward_to(mut self, child: u32) {
        let child = i32::try_from(child).unwrap_or(0);
        CHILD.store(child, Ordering::SeqCst);
        // A signal that came while the child was being spawned. Exactly
        // one of this swap and the handler's sees it (see `forward`).
        let pending = PENDING.swap(0, Ordering::SeqCst);
        if pending != 0 && child > 0 {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe {
                libc::kill(child, pending);
            }
        }
        self.forwarding = true;
    }
}

impl Drop for SignalForwarding {
    fn drop(&mut self) {
        if !self.forwarding {
            for signal in FORWARDED {
                set_disposition(signal, libc::SIG_DFL);
            }
        }
    }
}

fn set_disposition(signal: libc::c_int, handler: libc::sighandler_t) {
    // SAFETY: the handler only touches atomics and calls kill(2), both
    // async-signal-safe; `action` is fully initialized.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

extern "C" fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    if info.is_null() {
        return;
    }
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t.
    let sender = unsafe { sender_pid(&*info) };
    if sender <= 0 {
        return;
    }
    // Park the signal first, then look for the child: whichever of this
    // handler and `forward_to` takes it from PENDING sends it, once.
    PENDING.store(signal, Ordering::SeqCst);
    let child = CHILD.load(Ordering::SeqCst);
    if child <= 0 || sender == child {
        if sender == child {
            PENDING.store(0, Ordering::SeqCst);
        }
        return;
    }
    let signal = PENDING.swap(0, Ordering::SeqCst);
    if signal != 0 {
        // SAFETY: kill(2) is async-signal-safe; `child` is our own child,
        // not yet reaped (this process reaps it only after it exits), so
        // the pid cannot have been reused.
        unsafe {
            libc::kill(child, signal);
        }
    }
}

/// The pid of the process that sent a signal, or 0 when the kernel raised
/// it (a terminal's Ctrl-C or hangup: `SI_KERNEL` on Linux, with no pid).
///
/// # Safety
/// `info` must be the siginfo_t the kernel passed to the handler.
unsafe fn sender_pid(info: &libc::siginfo_t) -> libc::pid_t {
    // Only kill(2), sigqueue(3) and tgkill(2) (codes <= 0) fill in a pid.
    #[cfg(target_os = "linux")]
    if info.si_code > 0 {
        return 0;
    }
    // SAFETY: see the function's contract.
    unsafe { info.si_pid() }
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

/// A daemon started by [`spawn_detached`], until it reports.
pub struct Daemon(std::process::Child);

impl From<std::process::Child> for Daemon {
    fn from(child: std::process::Child) -> Self {
        Self(child)
    }
}

impl Daemon {
    /// The read end of its readiness pipe (its stdout).
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.0.stdout.take()
    }

    /// Kills and reaps it (it is stuck).
    pub fn kill_and_wait(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// How it exited, if it has; never blocks.
    pub fn try_wait(&mut self) -> Option<String> {
        self.0.try_wait().ok().flatten().map(|s| s.to_string())
    }
}

/// Starts `program args…` as the detached daemon: stdin and stderr on
/// /dev/null, stdout a pipe for its readiness line, and no other
/// descriptor of ours ([`keep_only_stdio`]). It detaches itself (setsid).
pub fn spawn_detached(program: &std::path::Path, args: &[&std::ffi::OsStr]) -> io::Result<Daemon> {
    use std::process::Stdio;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    keep_only_stdio(&mut command);
    command.spawn().map(Daemon)
}

/// Makes `command`'s child start with no file descriptor of ours beyond
/// 0, 1 and 2 (which the `Command` sets up). Descriptors we inherited
/// without close-on-exec (a CI runner's pipe, make's job server) would
/// otherwise stay open in a detached daemon for as long as it runs: the CI
/// step never sees end-of-file, the job server loses its tokens.
///
/// Only the child is changed: `credcache exec` must still pass them on.
/// On Linux one `close_range(3, ~0, CLOSE_RANGE_CLOEXEC)` does it;
/// elsewhere (or on a kernel before 5.11) each descriptor listed in
/// `/dev/fd` before the fork is marked close-on-exec.
fn keep_only_stdio(command: &mut Command) {
    let listed: Vec<libc::c_int> = ["/proc/self/fd", "/dev/fd"]
        .iter()
        .find_map(|dir| std::fs::read_dir(dir).ok())
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|fd: &libc::c_int| *fd > 2)
                .collect()
        })
        .unwrap_or_default();
    // SAFETY: the hook runs between fork and exec, where only
    // async-signal-safe calls are allowed: it calls `syscall` and `fcntl`
    // and reads a vector allocated before the fork.
    unsafe {
        command.pre_exec(move || {
            #[cfg(target_os = "linux")]
            if libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ) == 0
            {
                return Ok(());
            }
            for &fd in &listed {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                }
            }
            Ok(())
        });
    }
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
