//! Living under a service manager: socket activation (`LISTEN_FDS`) and
//! readiness notification (`sd_notify`), as systemd does them.
//!
//! With `credcached.socket` enabled, systemd owns the socket file: it binds
//! it, starts the daemon on the first connection and hands over the
//! listening socket as fd 3. The daemon then must not remove or re-bind the
//! socket, not even when it exits after `idle_timeout`: systemd keeps
//! listening and starts it again on the next connection.
//!
//! Outside systemd every function here does nothing: `LISTEN_FDS` and
//! `NOTIFY_SOCKET` are unset, so `credcached` run by hand or started by a
//! client behaves as before.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use sd_notify::NotifyState;

/// Why the socket systemd passed cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("cannot read the sockets systemd passed: {source}")]
    ReadFds { source: std::io::Error },
    #[error("systemd passed {count} sockets; credcached.socket must have exactly one ListenStream")]
    SocketCount { count: usize },
    #[error(
        "the file descriptor systemd passed is not {what}; use ListenStream= in credcached.socket"
    )]
    NotListeningStream { what: &'static str },
    #[error("the socket systemd passed (fd {fd}) is not a Unix socket: {source}")]
    NotUnix { fd: i32, source: std::io::Error },
}

/// The listening socket a service manager passed to us.
#[derive(Debug)]
pub struct Activated {
    pub listener: UnixListener,
    /// Where the socket lives, as its address says.
    pub path: Option<PathBuf>,
}

/// Takes the socket systemd passed (`LISTEN_PID` equal to our pid,
/// `LISTEN_FDS=1`, the socket at fd 3), or `None` if there is none.
///
/// It also removes `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` from the
/// environment, so the programs the daemon runs (`command` credentials,
/// `az`) do not inherit them. Changing the environment is only sound while
/// the process has one thread: call this first thing in `main`'s path,
/// before the runtime or logging start any.
pub fn take_activated_socket() -> Result<Option<Activated>, ActivationError> {
    // SAFETY: called while the process is single-threaded (see above), so
    // nothing can read the environment while it changes.
    let fds = unsafe {
        let fds = sd_notify::listen_fds_and_unset_env();
        std::env::remove_var("LISTEN_FDNAMES");
        fds
    };
    let mut fds = fds.map_err(|source| ActivationError::ReadFds { source })?;
    let count = fds.len();
    let Some(fd) = fds.next() else {
        return Ok(None);
    };
    if count != 1 {
        return Err(ActivationError::SocketCount { count });
    }
    // SAFETY: `listen_fds` only yields descriptors systemd passed to this
    // process (its pid checked) and marked close-on-exec; nothing else in
    // the process has opened or wrapped them, so this is the only owner.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    check_listening_unix_stream(&owned)?;
    let listener = UnixListener::from(owned);
    let path = listener
        .local_addr()
        .map_err(|source| ActivationError::NotUnix { fd, source })?
        .as_pathname()
        .map(Path::to_path_buf);
    Ok(Some(Activated { listener, path }))
}

/// Refuses anything but a listening Unix stream socket (the address family
/// is checked by `UnixListener::local_addr`).
fn check_listening_unix_stream(fd: &OwnedFd) -> Result<(), ActivationError> {
    use rustix::net::SocketType;
    use rustix::net::sockopt;

    let not = |what| ActivationError::NotListeningStream { what };
    let kind = sockopt::socket_type(fd.as_fd()).map_err(|_| not("a socket"))?;
    if kind != SocketType::STREAM {
        return Err(not("a stream socket"));
    }
    // Apple declares SO_ACCEPTCONN but does not implement it; systemd is
    // Linux-only anyway.
    #[cfg(not(target_vendor = "apple"))]
    if !sockopt::socket_acceptconn(fd.as_fd()).unwrap_or(false) {
        return Err(not("a listening socket (Accept=no)"));
    }
    Ok(())
}

/// Tells systemd (`Type=notify`) that the daemon serves now.
pub fn notify_ready(socket: &Path) {
    let status = format!("listening on {}", socket.display());
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Tells systemd that the daemon is shutting down.
pub fn notify_stopping() {
    notify(&[NotifyState::Stopping]);
}

fn notify(states: &[NotifyState<'_>]) {
    // A no-op without NOTIFY_SOCKET. A failure costs systemd's view of our
    // state, never the daemon: log it and go on.
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}
