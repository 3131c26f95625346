//! Reaching the daemon: connect to its socket, say hello, and start it when
//! nobody answers (docs/cli.md, auto-start).
//!
//! Auto-start follows atuin's and sccache's pattern: probe; if nothing
//! listens, take the start lock (so concurrent clients start one daemon),
//! probe again (another client may have won), then spawn
//! `credcached --detach` and wait for the one line it prints once its
//! socket listens. Nothing sleeps on a guess: the readiness line is the
//! signal, and the only polling is a short, bounded re-connect when the
//! daemon reports that another one already serves the socket.
//!
//! The client trusts nothing it has not checked: before connecting, the
//! socket's directory must be ours, a real directory, and not writable by
//! group or others (one `lstat`); after connecting, the peer must run as
//! our uid (`SO_PEERCRED` on Linux, `LOCAL_PEERCRED`, the call behind
//! `getpeereid`, on macOS, both through `interprocess`). Otherwise another
//! local user who planted `/tmp/credcache-<uid>/` could answer our
//! requests, and choose what `exec` and `get --format env` export.
//!
//! **Invariant:** nothing here runs before a connection attempt except
//! resolving paths and that `lstat`, so a warm `credcache get` costs one
//! connect and two round trips.

mod spawn;

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use credcache_shared::codec::{self, CodecError};
use credcache_shared::paths::{self, Paths};
use credcache_shared::protocol::{CredentialInfo, MAX_NAME_LEN, Request, Response};
use credcache_shared::{PROTOCOL_VERSION, VERSION};
use interprocess::local_socket::{GenericFilePath, Stream, ToFsName, prelude::*};

use crate::exit::Error;
pub use spawn::DAEMON_PROGRAM;
use spawn::Spawned;

/// How long to keep re-connecting after the daemon said `ready`/`running`.
const CONNECT_AFTER_START: Duration = Duration::from_secs(5);
/// How long the daemon has to answer `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the daemon has to answer a request that does no upstream work
/// (and to send the rest of an answer it started).
const QUICK_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// `http_timeout` when the config cannot be read (the daemon's default).
const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Added to twice `http_timeout` for a request that may fetch.
const FETCH_MARGIN: Duration = Duration::from_secs(5);
/// How long an answer may take before the client reads the config to learn
/// how long it may take in all: a warm `get` never reads it.
const FIRST_WAIT: Duration = Duration::from_secs(1);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long a client waits for a free instance of a busy named pipe.
#[cfg(windows)]
const PIPE_BUSY_WAIT: Duration = Duration::from_secs(5);

/// Whether a command may start a daemon when none answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Autostart {
    /// Start one unless `CREDCACHE_NO_AUTOSTART=1`.
    IfAllowed,
    /// Never: the command only observes or stops the daemon.
    Never,
}

/// Where the daemon is and how to start it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub paths: Paths,
    /// The `--config` flag, passed on to a daemon we start.
    config_flag: Option<PathBuf>,
}

/// What a probe of the socket found.
pub enum Probe {
    /// A daemon answered `Hello`; the connection is ready for requests.
    Ready(Connection),
    /// A daemon answered, but speaks another protocol version.
    Mismatch(Mismatch),
    /// Nothing listens (no socket file, or connection refused).
    Down(io::Error),
}

/// How a daemon we asked to be running came to be so.
pub enum Started {
    /// This call started it.
    Now(Connection),
    /// It was already running (maybe started by a concurrent client).
    Already(Connection),
}

/// A daemon that speaks another protocol version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub protocol_version: u32,
    pub daemon_version: String,
    pub pid: u32,
}

impl Mismatch {
    /// The error every command but `daemon stop`/`restart` reports.
    pub fn error(&self) -> Error {
        Error::Unreachable(format!(
            "cannot talk to the daemon: it speaks protocol version {} (credcached {}, pid {}) \
             and this client speaks version {PROTOCOL_VERSION} (credcache {VERSION}); \
             run `credcache daemon restart`",
            self.protocol_version, self.daemon_version, self.pid
        ))
    }
}

/// An open, greeted connection to the daemon.
pub struct Connection {
    stream: Stream,
    pid: u32,
    log_file: PathBuf,
    /// The config file the daemon reads, from its `Hello` (also read for
    /// `http_timeout` when an answer is slow).
    config_path: PathBuf,
}

impl Connection {
    /// The daemon's pid, from its `Hello`.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends one request and reads its answer. An `Error` answer becomes
    /// [`Error::Daemon`] with `context` ("cannot get a token for gcp") in front.
    ///
    /// Every answer has a deadline, so a hung daemon (one blocked on a FIFO
    /// it took for a key file, say) costs an exit 3, not a hang. A request
    /// that may wait on the cloud (`Get`, `Refresh`) gets twice the
    /// daemon's `http_timeout` (a fetch already in flight, then its own;
    /// the daemon bounds each) plus [`FETCH_MARGIN`]; the rest answer from
    /// memory within [`QUICK_REQUEST_TIMEOUT`].
    pub fn call(&mut self, request: &Request, context: &str) -> Result<Response, Error> {
        check_name(request)?;
        codec::write_frame(&mut self.stream, request).map_err(|e| self.transport_error(e))?;
        let may_fetch = matches!(
            request,
            Request::Get { .. }
                | Request::Refresh { .. }
                | Request::Login { .. }
                | Request::LoginPoll { .. }
                | Request::LoginCode { .. }
        );
        // `Some(limit)`: nothing came within it.
        let unanswered = if !may_fetch {
            (!self.readable_within(QUICK_REQUEST_TIMEOUT)?).then_some(QUICK_REQUEST_TIMEOUT)
        } else if self.readable_within(FIRST_WAIT)? {
            None
        } else {
            // Most answers come from memory at once; only a slow one costs
            // reading the config to learn how long it may take.
            let limit = fetch_limit(&self.config_path);
            (!self.readable_within(limit.saturating_sub(FIRST_WAIT))?).then_some(limit)
        };
        if let Some(limit) = unanswered {
            return Err(Error::NoAnswer(format!(
                "the daemon did not answer within {} s: {context} (see {}); \
                 `credcache daemon restart` may help",
                limit.as_secs(),
                self.log_file.display()
            )));
        }
        // The answer has started: the rest of it comes at once.
        crate::sys::set_recv_timeout(&self.stream, Some(QUICK_REQUEST_TIMEOUT))
            .map_err(|e| self.transport_error(CodecError::Io(e)))?;
        match read_answer(&mut self.stream) {
            Ok(Some(Response::Error(error))) => Err(Error::Daemon {
                context: context.to_owned(),
                error,
            }),
            Ok(Some(response)) => Ok(response),
            Ok(None) => Err(Error::Unreachable(format!(
                "{context}: the daemon closed the connection without answering (see {})",
                self.log_file.display()
            ))),
            Err(e) => Err(self.transport_error(e)),
        }
    }

    /// Sends a request whose answers come as a stream (`Watch`), with no
    /// time limit on them.
    pub fn send(&mut self, request: &Request) -> Result<(), Error> {
        check_name(request)?;
        crate::sys::set_recv_timeout(&self.stream, None)
            .map_err(|e| self.transport_error(CodecError::Io(e)))?;
        codec::write_frame(&mut self.stream, request).map_err(|e| self.transport_error(e))
    }

    /// Every credential's state, a page at a time, from `after` on
    /// (`after` is where a `Status` answer's first page ended).
    pub fn list_from(
        &mut self,
        mut after: Option<String>,
        context: &str,
    ) -> Result<Vec<CredentialInfo>, Error> {
        let mut all = Vec::new();
        loop {
            let request = Request::List {
                after: after.take(),
            };
            match self.call(&request, context)? {
                Response::Credentials(page) => {
                    all.extend(page.credentials);
                    match page.next {
                        Some(next) => after = Some(next),
                        None => return Ok(all),
                    }
                }
                other => return Err(unexpected(&other)),
            }
        }
    }

    /// The next answer of a stream; `None` when the daemon closed it.
    pub fn next(&mut self) -> Result<Option<Response>, Error> {
        codec::read_frame(&mut self.stream).map_err(|e| self.transport_error(e))
    }

    fn transport_error(&self, e: CodecError) -> Error {
        transport_error(e, &self.log_file)
    }

    /// Waits until the socket has something to read (or the daemon hung
    /// up, which the read then reports); false if `timeout` passed first.
    fn readable_within(&self, timeout: Duration) -> Result<bool, Error> {
        crate::sys::readable_within(&self.stream, timeout)
            .map_err(|e| self.transport_error(CodecError::Io(e)))
    }
}

/// How long a request that may fetch can take: twice the `http_timeout`
/// of the config (a fetch in flight, then its own) plus a margin. An
/// unreadable or invalid config means the default.
fn fetch_limit(config_file: &Path) -> Duration {
    let http_timeout = credcache_shared::config::Config::load(config_file)
        .map(|c| c.daemon.http_timeout)
        .unwrap_or(DEFAULT_HTTP_TIMEOUT);
    http_timeout * 2 + FETCH_MARGIN
}

/// Reads the one answer to a request: its header and (most often) all of
/// its body in one `read`, into a buffer that is not zeroed first. Only
/// for requests with exactly one answer, since the daemon sends nothing
/// else until asked (`Watch`'s stream is read frame by frame in
/// [`Connection::next`]). Same results as `codec::read_frame`: `Ok(None)`
/// on a clean end of stream, `Truncated` on one inside the frame, and the
/// socket's receive timeout as an `Io` error.
fn read_answer(stream: &mut Stream) -> Result<Option<Response>, CodecError> {
    use std::io::Read;

    let mut buf = Vec::with_capacity(ANSWER_BUFFER);
    while buf.len() < 4 {
        match crate::sys::read_spare(stream, &mut buf) {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err(CodecError::Truncated),
            Ok(_) => {}
            Err(e) => return Err(CodecError::Io(e)),
        }
    }
    let len = codec::body_len(buf[..4].try_into().expect("4 bytes"))?;
    let have = buf.len();
    if have < 4 + len {
        buf.resize(4 + len, 0);
        stream
            .read_exact(&mut buf[have..])
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => CodecError::Truncated,
                _ => CodecError::Io(e),
            })?;
    }
    // Anything past the frame would be a second answer nobody asked for.
    codec::from_slice(&buf[4..4 + len]).map(Some)
}

/// Enough for a `Hello` and a token of a few kilobytes in one `read`; a
/// longer answer takes more.
const ANSWER_BUFFER: usize = 8 * 1024;

fn transport_error(e: CodecError, log_file: &Path) -> Error {
    let log = log_file.display();
    match e {
        CodecError::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Error::Unreachable(format!(
                "the daemon did not answer in time (see {log}); `credcache daemon restart` may help"
            ))
        }
        CodecError::Io(e) => Error::Unreachable(format!("lost the connection to the daemon: {e}")),
        other => Error::Unreachable(format!(
            "cannot understand the daemon: {other}; run `credcache daemon restart`"
        )),
    }
}

/// A credential name longer than the protocol carries is refused here,
/// with a clear error, instead of a frame the daemon would drop.
fn check_name(request: &Request) -> Result<(), Error> {
    let name = match request {
        Request::Get { name, .. }
        | Request::Watch { name }
        | Request::Login { name, .. }
        | Request::LoginPoll { name }
        | Request::LoginCode { name, .. }
        | Request::Logout { name } => Some(name),
        Request::Refresh { name } | Request::Forget { name } => name.as_ref(),
        _ => None,
    };
    match name {
        Some(n) if n.len() > MAX_NAME_LEN => Err(Error::Usage(format!(
            "a credential name of {} bytes is too long: names are at most {MAX_NAME_LEN} bytes \
             (`credcache list` shows them)",
            n.len()
        ))),
        _ => Ok(()),
    }
}

/// The error for an unexpected kind of answer (a daemon bug, or a
/// protocol change that forgot to bump the version).
pub fn unexpected(response: &Response) -> Error {
    let what = match response {
        Response::Hello { .. } => "Hello",
        Response::VersionMismatch { .. } => "VersionMismatch",
        Response::Token(_) => "Token",
        Response::Credentials(_) => "Credentials",
        Response::Status(_) => "Status",
        Response::Done { .. } => "Done",
        Response::Error(_) => "Error",
        Response::SdkEnv(_) => "SdkEnv",
        Response::Login(_) => "Login",
    };
    Error::Other(format!(
        "unexpected answer from the daemon: {what}; run `credcache daemon restart`"
    ))
}

impl Endpoint {
    /// Resolves paths from the environment; `config_flag` is `--config`.
    pub fn from_env(config_flag: Option<PathBuf>) -> Result<Self, Error> {
        let paths = Paths::from_env(config_flag.clone())
            .map_err(|e| Error::Usage(format!("cannot work out credcache's paths: {e}")))?;
        Ok(Self { paths, config_flag })
    }

    /// The `--config` flag, if given.
    pub fn config_flag(&self) -> Option<&Path> {
        self.config_flag.as_deref()
    }

    /// Connects to a running daemon, starting one if none answers and
    /// `autostart` allows it.
    /// The daemon must read the config file this client was told to use
    /// (`--config`, `CREDCACHE_CONFIG` or the default): one that reads
    /// another is named, never used silently.
    pub fn connect(&self, autostart: Autostart) -> Result<Connection, Error> {
        let conn = match self.probe()? {
            Probe::Ready(conn) => conn,
            Probe::Mismatch(m) => return Err(m.error()),
            Probe::Down(why) => {
                let allowed = autostart == Autostart::IfAllowed
                    && autostart_enabled(std::env::var_os("CREDCACHE_NO_AUTOSTART"));
                if !allowed {
                    return Err(self.not_running(&why, autostart));
                }
                match self.start_under_lock()? {
                    Started::Now(conn) | Started::Already(conn) => conn,
                }
            }
        };
        self.check_config(&conn)?;
        Ok(conn)
    }

    /// Refuses a daemon that reads another config file than ours.
    pub fn check_config(&self, conn: &Connection) -> Result<(), Error> {
        let ours = &self.paths.config_file;
        if same_file(&conn.config_path, ours) {
            return Ok(());
        }
        let source = if self.config_flag.is_some() {
            "--config"
        } else if std::env::var_os("CREDCACHE_CONFIG").is_some() {
            "CREDCACHE_CONFIG"
        } else {
            "the default"
        };
        let undo = match source {
            "--config" => "drop --config to use the running one",
            "CREDCACHE_CONFIG" => "unset CREDCACHE_CONFIG to use the running one",
            _ => "set CREDCACHE_CONFIG to its file to use the running one",
        };
        // Absolute as the daemon names its own (on Windows that also
        // makes `Z:/tmp\x` one path with one kind of separator).
        let ours = std::path::absolute(ours).unwrap_or_else(|_| ours.clone());
        Err(Error::Usage(format!(
            "the running daemon (pid {}) reads {}, not {} ({source}): \
             run `credcache daemon restart --config {}` to switch it, or {undo}",
            conn.pid,
            conn.config_path.display(),
            ours.display(),
            ours.display()
        )))
    }

    /// The error for "nobody answers" when no daemon may be started.
    pub fn not_running(&self, why: &io::Error, autostart: Autostart) -> Error {
        let socket = self.paths.socket.display();
        let off = if autostart == Autostart::IfAllowed {
            " and auto-start is off (CREDCACHE_NO_AUTOSTART=1)"
        } else {
            ""
        };
        let why = match why.kind() {
            io::ErrorKind::NotFound => format!("no socket at {socket}"),
            io::ErrorKind::ConnectionRefused => format!("nothing listens on {socket}"),
            _ => format!("cannot connect to {socket}: {why}"),
        };
        Error::Unreachable(format!(
            "daemon not running: {why}{off}; start it with `credcache daemon start`"
        ))
    }

    /// Connects and says hello, without starting anything. The socket's
    /// directory is checked first and the daemon's uid right after the
    /// connect, so nothing is sent to (or read from) another user's socket.
    pub fn probe(&self) -> Result<Probe, Error> {
        let socket = self.paths.socket.display();
        match paths::check_private_dir(self.paths.socket_dir()) {
            Ok(true) => {}
            Ok(false) => {
                return Ok(Probe::Down(io::Error::new(
                    io::ErrorKind::NotFound,
                    "no socket directory",
                )));
            }
            // Nothing to connect to: say so (and auto-start, which makes
            // the directory private or refuses it, says the rest).
            Err(_) if is_missing(&self.paths.socket) => {
                return Ok(Probe::Down(io::Error::new(
                    io::ErrorKind::NotFound,
                    "no socket",
                )));
            }
            Err(e) => {
                return Err(Error::Unreachable(format!(
                    "refusing to connect to {socket}: its directory {e}"
                )));
            }
        }
        let stream = match self.connect_socket() {
            Ok(stream) => stream,
            Err(e) if is_down(&e) => return Ok(Probe::Down(e)),
            Err(e) => {
                return Err(Error::Unreachable(format!(
                    "cannot connect to the daemon at {socket}: {e}"
                )));
            }
        };
        self.check_peer(&stream)?;
        self.hello(stream)
    }

    /// Refuses a socket served by another user: whatever it would answer
    /// (a token, an `env_var`) is theirs to choose.
    #[cfg(unix)]
    fn check_peer(&self, stream: &Stream) -> Result<(), Error> {
        let socket = self.paths.socket.display();
        let mine = rustix::process::getuid().as_raw();
        match stream.peer_creds().map(|c| c.euid()) {
            Ok(Some(uid)) if uid == mine => Ok(()),
            Ok(Some(uid)) => Err(Error::Unreachable(format!(
                "refusing the daemon on {socket}: it runs as uid {uid}, not as this user (uid {mine}); \
                 another user may have planted it: remove {} if you can, or set CREDCACHE_SOCKET",
                self.paths.socket_dir().display()
            ))),
            Ok(None) => Err(Error::Unreachable(format!(
                "refusing the daemon on {socket}: the system does not say which user runs it"
            ))),
            Err(e) => Err(Error::Unreachable(format!(
                "refusing the daemon on {socket}: cannot tell which user runs it: {e}"
            ))),
        }
    }

    /// Windows: the pipe's server process (`GetNamedPipeServerProcessId`)
    /// must run as this user's SID; a pipe another user created first is
    /// refused before a byte is sent.
    #[cfg(windows)]
    fn check_peer(&self, stream: &Stream) -> Result<(), Error> {
        use credcache_shared::windows::{current_user_sid, process_user_sid};
        let socket = self.paths.socket.display();
        let refuse =
            |why: String| Error::Unreachable(format!("refusing the daemon on {socket}: {why}"));
        let pid = match stream.peer_creds().map(|c| c.pid()) {
            Ok(Some(pid)) => pid,
            Ok(None) => {
                return Err(refuse(
                    "the system does not say which process serves it".into(),
                ));
            }
            Err(e) => return Err(refuse(format!("cannot tell which process serves it: {e}"))),
        };
        let mine =
            current_user_sid().map_err(|e| refuse(format!("cannot read this user's SID: {e}")))?;
        match process_user_sid(pid) {
            Ok(sid) if sid == mine => Ok(()),
            Ok(sid) => Err(refuse(format!(
                "it is served by pid {pid} as {sid}, not as this user ({mine}); \
                 another user may have created the pipe first: set CREDCACHE_SOCKET to another name"
            ))),
            Err(e) => Err(refuse(format!(
                "cannot tell which user serves it (pid {pid}): {e}"
            ))),
        }
    }

    /// Whether anything accepts connections on the socket, without a
    /// `Hello` (used while waiting for a stopping daemon to go away).
    pub fn socket_refuses(&self) -> bool {
        matches!(self.connect_socket(), Err(e) if is_down(&e))
    }

    fn connect_socket(&self) -> io::Result<Stream> {
        let name = self
            .paths
            .socket
            .as_path()
            .to_fs_name::<GenericFilePath>()?;
        // A named pipe whose instances are all busy (or held by a squatter)
        // would be waited on forever: bounded, then an error.
        #[cfg(windows)]
        {
            use interprocess::ConnectWaitMode;
            use interprocess::local_socket::ConnectOptions;
            ConnectOptions::new()
                .name(name)
                .wait_mode(ConnectWaitMode::Timeout(PIPE_BUSY_WAIT))
                .connect_sync()
                .map_err(|e| match e.kind() {
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the pipe stayed busy for {} s (a hung daemon, or another program holding the name)",
                            PIPE_BUSY_WAIT.as_secs()
                        ),
                    ),
                    _ => e,
                })
        }
        #[cfg(unix)]
        Stream::connect(name)
    }

    fn hello(&self, mut stream: Stream) -> Result<Probe, Error> {
        let log = &self.paths.log_file;
        crate::sys::set_recv_timeout(&stream, Some(HELLO_TIMEOUT))
            .map_err(|e| transport_error(CodecError::Io(e), log))?;
        let hello = Request::Hello {
            protocol_version: PROTOCOL_VERSION,
            client_version: VERSION.to_owned(),
        };
        // A daemon at its connection cap answers before reading anything
        // and hangs up, so its answer may be waiting even when our Hello
        // could not be sent: read it before reporting the send.
        let sent = codec::write_frame(&mut stream, &hello).map_err(|e| transport_error(e, log));
        // A pipe has no receive timeout: wait for the answer with a deadline.
        #[cfg(windows)]
        if !crate::sys::readable_within(&stream, HELLO_TIMEOUT)
            .map_err(|e| transport_error(CodecError::Io(e), log))?
        {
            return Err(transport_error(
                CodecError::Io(io::ErrorKind::TimedOut.into()),
                log,
            ));
        }
        let response = match read_answer(&mut stream) {
            Ok(response) => response,
            Err(e) => {
                sent?;
                return Err(transport_error(e, log));
            }
        };
        match response {
            Some(Response::Hello {
                protocol_version,
                pid,
                config_path,
                ..
            }) if protocol_version == PROTOCOL_VERSION => Ok(Probe::Ready(Connection {
                stream,
                pid,
                log_file: log.clone(),
                config_path: PathBuf::from(config_path),
            })),
            Some(Response::Hello {
                protocol_version,
                daemon_version,
                pid,
                ..
            })
            | Some(Response::VersionMismatch {
                daemon_protocol_version: protocol_version,
                daemon_version,
                pid,
            }) => Ok(Probe::Mismatch(Mismatch {
                protocol_version,
                daemon_version,
                pid,
            })),
            // Whatever the kind ("too many open connections", shutting
            // down), a daemon that turns the connection away is unreachable
            // for this command: exit 3, as when none runs.
            Some(Response::Error(error)) => Err(Error::Unreachable(format!(
                "the daemon refused the connection: {}",
                error.message
            ))),
            Some(other) => Err(unexpected(&other)),
            None => Err(Error::Unreachable(format!(
                "the daemon closed the connection before answering (see {})",
                log.display()
            ))),
        }
    }

    /// Makes sure a daemon runs: probes, and if nothing answers, starts
    /// one under the start lock. Ignores `CREDCACHE_NO_AUTOSTART`: callers
    /// decide whether starting is allowed.
    pub fn start(&self) -> Result<Started, Error> {
        match self.probe()? {
            Probe::Ready(conn) => Ok(Started::Already(conn)),
            Probe::Mismatch(m) => Err(m.error()),
            Probe::Down(_) => self.start_under_lock(),
        }
    }

    /// Takes the start lock, and starts a daemon unless one answers by then.
    fn start_under_lock(&self) -> Result<Started, Error> {
        let cannot = |why: String| Error::Unreachable(format!("cannot start the daemon: {why}"));
        paths::ensure_private_dir(self.paths.socket_dir()).map_err(|e| cannot(e.to_string()))?;
        let lock_path = self.paths.start_lock_file();
        // Beside the socket on Unix (made just above); in the data
        // directory on Windows, where a pipe has no directory.
        if let Some(dir) = lock_path.parent()
            && dir != self.paths.socket_dir()
        {
            paths::ensure_private_dir(dir).map_err(|e| cannot(e.to_string()))?;
        }
        let lock = crate::sys::open_private(&lock_path)
            .map_err(|e| cannot(format!("{}: {e}", lock_path.display())))?;
        lock.lock()
            .map_err(|e| cannot(format!("cannot lock {}: {e}", lock_path.display())))?;
        let started = self.start_locked();
        // Closing the file would release the lock too; say it explicitly.
        let _ = File::unlock(&lock);
        started
    }

    fn start_locked(&self) -> Result<Started, Error> {
        // Another client may have started it while we waited for the lock.
        match self.probe()? {
            Probe::Ready(conn) => return Ok(Started::Already(conn)),
            Probe::Mismatch(m) => return Err(m.error()),
            Probe::Down(_) => {}
        }
        let spawned = spawn::start_detached(self.config_flag.as_deref(), &self.paths)?;
        // After `ready` the socket listens; after `running` the other
        // daemon may still be between taking its lock and listening.
        let conn = self.connect_until(Instant::now() + CONNECT_AFTER_START)?;
        Ok(match spawned {
            Spawned::Ready => Started::Now(conn),
            Spawned::AlreadyRunning => Started::Already(conn),
        })
    }

    /// Re-connects until a daemon answers or `deadline` passes.
    fn connect_until(&self, deadline: Instant) -> Result<Connection, Error> {
        loop {
            match self.probe()? {
                Probe::Ready(conn) => return Ok(conn),
                Probe::Mismatch(m) => return Err(m.error()),
                Probe::Down(why) if Instant::now() >= deadline => {
                    return Err(Error::Unreachable(format!(
                        "cannot start the daemon: it reported that it runs, but {} does not answer ({why}) (see {})",
                        self.paths.socket.display(),
                        self.paths.log_file.display()
                    )));
                }
                Probe::Down(_) => thread::sleep(POLL_INTERVAL),
            }
        }
    }

    /// The `credcached` command line `daemon run` executes.
    pub fn foreground_command(&self) -> Command {
        let mut command = Command::new(spawn::daemon_program());
        if let Some(config) = &self.config_flag {
            command.arg("--config").arg(config);
        }
        command
    }
}

/// Whether two config paths name one file: the same file if both exist
/// (links and `..` resolved), else the same absolute path.
fn same_file(a: &Path, b: &Path) -> bool {
    // The usual case, without a syscall on `get`'s path.
    if a == b {
        return true;
    }
    let resolve = |p: &Path| {
        std::fs::canonicalize(p)
            .or_else(|_| std::path::absolute(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    resolve(a) == resolve(b)
}

/// Connecting failed because nobody listens, as opposed to a permission
/// problem or a bad path, which starting a daemon would not fix.
fn is_down(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

/// Whether nothing at all is at `path` (not even a dangling link).
fn is_missing(path: &Path) -> bool {
    matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// `CREDCACHE_NO_AUTOSTART=1` turns auto-start off; anything else leaves it on.
fn autostart_enabled(value: Option<OsString>) -> bool {
    value.is_none_or(|v| v != "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn config_paths_compare_by_file() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a.toml");
        std::fs::write(&a, "").unwrap();
        std::os::unix::fs::symlink(&a, tmp.path().join("link.toml")).unwrap();
        assert!(same_file(&a, &tmp.path().join("link.toml")));
        std::fs::create_dir(tmp.path().join("x")).unwrap();
        assert!(same_file(&a, &tmp.path().join("x/../a.toml")));
        assert!(!same_file(&a, &tmp.path().join("b.toml")));
        assert!(same_file(
            &tmp.path().join("missing.toml"),
            &tmp.path().join("missing.toml")
        ));
    }

    #[test]
    fn an_overlong_name_is_a_usage_error_before_sending() {
        let long = "g".repeat(1 << 20);
        let err = check_name(&Request::Get {
            name: long,
            min_valid_secs: None,
            refresh: false,
            scopes: Vec::new(),
        })
        .unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::USAGE);
        assert!(err.messages()[0].contains("1048576 bytes is too long"));
        assert!(check_name(&Request::Refresh { name: None }).is_ok());
    }

    #[test]
    fn autostart_is_off_only_for_exactly_1() {
        assert!(autostart_enabled(None));
        assert!(autostart_enabled(Some("0".into())));
        assert!(autostart_enabled(Some("".into())));
        assert!(!autostart_enabled(Some("1".into())));
    }

    #[test]
    fn mismatch_names_both_versions_and_the_fix() {
        let m = Mismatch {
            protocol_version: 9,
            daemon_version: "9.0.0".into(),
            pid: 77,
        };
        let err = m.error();
        assert_eq!(err.exit_code(), crate::exit::UNREACHABLE);
        let text = &err.messages()[0];
        assert!(text.contains("protocol version 9"), "{text}");
        assert!(
            text.contains(&format!("version {PROTOCOL_VERSION}")),
            "{text}"
        );
        assert!(text.contains("credcache daemon restart"), "{text}");
    }

    fn endpoint(dir: &Path) -> Endpoint {
        let env = |k: &str| match k {
            "CREDCACHE_SOCKET" => Some(dir.join("s.sock").into_os_string()),
            "CREDCACHE_DATA_DIR" => Some(dir.join("data").into_os_string()),
            "CREDCACHE_CONFIG" => Some(dir.join("config.toml").into_os_string()),
            _ => None,
        };
        Endpoint {
            paths: Paths::resolve(None, env).unwrap(),
            config_flag: None,
        }
    }

    #[test]
    fn a_missing_socket_is_down_and_never_started_when_not_allowed() {
        let tmp = tempfile::tempdir().unwrap();
        let ep = endpoint(tmp.path());
        assert!(matches!(ep.probe().unwrap(), Probe::Down(_)));
        assert!(ep.socket_refuses());
        let err = ep.connect(Autostart::Never).err().unwrap();
        assert_eq!(err.exit_code(), crate::exit::UNREACHABLE);
        assert!(err.messages()[0].contains("credcache daemon start"));
    }
}
