//! `credcache daemon start | stop | restart | reload | status | run`: the
//! daemon's lifecycle, by hand.
//!
//! `stop` and `restart` must work on a daemon of another protocol version
//! (that is what the version-mismatch message tells the user to run), so
//! they signal such a daemon with SIGTERM by the pid its mismatch reply
//! carries, instead of sending it a `Shutdown` it might not understand.
//! Only `start`, `restart` and `run` ever start a daemon.
//! `install-service` and `uninstall-service` ([`service`]) hand it to
//! systemd or launchd instead.

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use credcache_shared::protocol::{ErrorKind, Request, Response};

use crate::commands::{service, status};
use crate::connect::{self, Autostart, DAEMON_PROGRAM, Endpoint, Probe, Started};
use crate::exit::Error;
use crate::format;
use crate::output;
use crate::sys;

/// How long a stopping daemon has to exit: it finishes in-flight requests
/// first, and those are bounded by its `http_timeout` (30 s by default).
const STOP_TIMEOUT: Duration = Duration::from_secs(40);
/// How long the socket must have refused connections before a daemon pid
/// that still exists is taken as exited. On Linux a zombie is recognized
/// directly ([`sys::process_alive`]); elsewhere this is what notices one
/// (an exited daemon nobody reaped holds no lock and serves nothing).
const ZOMBIE_GRACE: Duration = Duration::from_secs(1);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Check the socket on every Nth poll only: each check is a connection
/// the daemon has to accept and drop.
const SOCKET_CHECK_EVERY: u32 = 5;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Start the daemon in the background, unless it is running.
    Start,
    /// Stop the daemon and wait until it has exited.
    Stop,
    /// Stop the daemon (whatever its version) and start this one's.
    Restart,
    /// Make the daemon re-read its config file now.
    Reload,
    /// Say whether the daemon is running (exit 3 if not).
    Status,
    /// Run the daemon in the foreground, logging to stderr.
    Run,
    /// Have the service manager run the daemon: systemd user units with
    /// socket activation on Linux, a launchd agent on macOS.
    InstallService(service::InstallArgs),
    /// Stop the service and remove what install-service wrote.
    UninstallService(service::UninstallArgs),
}

pub fn run(endpoint: &Endpoint, command: &Command) -> Result<(), Error> {
    match command {
        Command::Start => {
            match endpoint.start()? {
                Started::Now(conn) => output::note(format!("daemon started (pid {})", conn.pid())),
                Started::Already(conn) => {
                    // One reading another config file is not "started".
                    endpoint.check_config(&conn)?;
                    output::note(format!("daemon already running (pid {})", conn.pid()));
                }
            }
            Ok(())
        }
        Command::Stop => {
            match stop(endpoint)? {
                Some(pid) => output::note(format!("daemon stopped (pid {pid})")),
                None => output::note("daemon not running"),
            }
            Ok(())
        }
        Command::Restart => {
            let old = stop(endpoint)?;
            let (Started::Now(conn) | Started::Already(conn)) = endpoint.start()?;
            let verb = if old.is_some() {
                "restarted"
            } else {
                "started"
            };
            output::note(format!("daemon {verb} (pid {})", conn.pid()));
            Ok(())
        }
        Command::Reload => reload(endpoint),
        Command::InstallService(args) => service::install(endpoint, endpoint.config_flag(), args),
        Command::UninstallService(args) => service::uninstall(args),
        Command::Status => daemon_status(endpoint),
        Command::Run => {
            let err = sys::exec(&mut endpoint.foreground_command());
            Err(Error::Unreachable(match err.kind() {
                io::ErrorKind::NotFound => format!(
                    "cannot run the daemon: {DAEMON_PROGRAM} is neither next to this executable nor on PATH"
                ),
                _ => format!("cannot run the daemon: {DAEMON_PROGRAM}: {err}"),
            }))
        }
    }
}

/// Stops a running daemon and waits for it to exit; `None` if none ran.
pub fn stop(endpoint: &Endpoint) -> Result<Option<u32>, Error> {
    let pid = match endpoint.probe()? {
        Probe::Down(_) => return Ok(None),
        Probe::Ready(mut conn) => {
            let pid = conn.pid();
            match conn.call(&Request::Shutdown, "cannot stop the daemon") {
                Ok(Response::Done { .. }) => {}
                Ok(other) => return Err(connect::unexpected(&other)),
                // Already on its way out, or it hung up as it went: either
                // way, watching the pid tells when it is gone.
                Err(Error::Daemon { error, .. }) if error.kind == ErrorKind::ShuttingDown => {}
                Err(Error::Unreachable(_)) => {}
                Err(e) => return Err(e),
            }
            pid
        }
        Probe::Mismatch(m) => {
            match sys::terminate(m.pid) {
                Ok(()) => {}
                Err(e) if sys::is_no_such_process(&e) => {}
                Err(e) => {
                    return Err(Error::Other(format!(
                        "cannot stop the daemon (pid {}, protocol version {}): {e}",
                        m.pid, m.protocol_version
                    )));
                }
            }
            m.pid
        }
    };
    wait_gone(endpoint, pid)?;
    Ok(Some(pid))
}

/// Waits until the daemon's process is gone, or its socket has refused
/// connections for [`ZOMBIE_GRACE`].
fn wait_gone(endpoint: &Endpoint, pid: u32) -> Result<(), Error> {
    let deadline = Instant::now() + STOP_TIMEOUT;
    let mut refusing_since: Option<Instant> = None;
    for round in 0u32.. {
        if !sys::process_alive(pid) {
            return Ok(());
        }
        if round % SOCKET_CHECK_EVERY == 0 {
            if endpoint.socket_refuses() {
                let since = *refusing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= ZOMBIE_GRACE {
                    return Ok(());
                }
            } else {
                refusing_since = None;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        thread::sleep(POLL_INTERVAL);
    }
    Err(Error::Other(format!(
        "cannot stop the daemon: pid {pid} is still running after {}s (see {}); `kill {pid}` ends it",
        STOP_TIMEOUT.as_secs(),
        endpoint.paths.log_file.display()
    )))
}

fn reload(endpoint: &Endpoint) -> Result<(), Error> {
    let mut conn = match endpoint.probe()? {
        Probe::Ready(conn) => conn,
        Probe::Mismatch(m) => return Err(m.error()),
        Probe::Down(_) => {
            output::note("daemon not running; it reads the config file when it starts");
            return Ok(());
        }
    };
    // Reloading another file than the one asked for would say "reloaded"
    // about a file nobody edited.
    endpoint.check_config(&conn)?;
    match conn.call(&Request::Reload, "cannot reload the config")? {
        Response::Done { affected } if affected.is_empty() => output::note("config reloaded"),
        Response::Done { affected } => output::note(format!(
            "config reloaded; changed credentials dropped from the cache: {}",
            affected.join(", ")
        )),
        other => return Err(connect::unexpected(&other)),
    }
    Ok(())
}

fn daemon_status(endpoint: &Endpoint) -> Result<(), Error> {
    let mut conn = match endpoint.probe()? {
        Probe::Ready(conn) => conn,
        Probe::Mismatch(m) => return Err(m.error()),
        Probe::Down(why) => return Err(endpoint.not_running(&why, Autostart::Never)),
    };
    let status = status::fetch(&mut conn)?;
    if let Some(error) = &status.config_error {
        output::warning(format!(
            "the config file is invalid and the previous one stays in force: {error}"
        ));
    }
    output::stdout(&format!(
        "running (pid {}, version {}, up {}, socket {})\n",
        status.pid,
        status.daemon_version,
        format::report::uptime(status.uptime_secs),
        status.socket
    ))
}
