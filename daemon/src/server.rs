//! The socket server: accepts connections, checks who is calling, caps how
//! many are open, and turns each request frame into an [`Engine`] call.
//!
//! A misbehaving client (garbage, oversized or truncated frames, silence)
//! costs only its own connection; the accept loop never stops for one.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use credcache_shared::codec::{self, CodecError, Incoming};
use credcache_shared::protocol::{ErrorKind, GetRef, LoginStep, Request, Response, WireError};
use credcache_shared::{PROTOCOL_VERSION, VERSION};
use std::path::{Path, PathBuf};

use interprocess::local_socket::tokio::{Listener, Stream};
use interprocess::local_socket::traits::tokio::Listener as _;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tokio::sync::oneshot::{self, error::TryRecvError};
use tokio::sync::{Semaphore, broadcast};
use tokio::task::JoinSet;

use crate::engine::{Answer, Engine};
use crate::wire::{FrameReader, KEEP_BUFFER, write_frame};

/// Limits on clients.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at most; more are closed at once.
    pub max_connections: usize,
    /// A connection with no request for this long is closed.
    pub idle: Duration,
    /// How long shutdown waits for requests in flight.
    pub grace: Duration,
    /// A reply frame not taken by the client within this long closes the
    /// connection: a client that never reads must not hold a slot.
    pub write_timeout: Duration,
    /// Connections kept for short requests: `watch` may hold at most
    /// `max_connections - reserved`, so a `get` is never turned away
    /// because of watchers.
    pub reserved: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            idle: Duration::from_secs(30),
            grace: Duration::from_secs(35),
            write_timeout: Duration::from_secs(10),
            reserved: 16,
        }
    }
}

/// Why the daemon cannot listen.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {}: {source}", path.display())]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} exists and is not a socket; refusing to replace it", path.display())]
    NotASocket { path: PathBuf },
    #[error("cannot serve on the socket systemd passed: {source}")]
    Adopt { source: std::io::Error },
}

/// Binds the socket, 0600. The caller must hold the daemon lock, so that
/// anything already at the path is a stale socket left by a daemon that
/// died: it is removed first.
#[cfg(unix)]
pub fn bind(path: &Path) -> Result<Listener, ListenError> {
    use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
    use interprocess::os::unix::local_socket::ListenerOptionsExt;
    use std::os::unix::fs::FileTypeExt;

    let fail = |source| ListenError::Listen {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            tracing::info!("removing a stale socket left by a daemon that did not exit cleanly");
            std::fs::remove_file(path).map_err(fail)?;
        }
        Ok(_) => {
            return Err(ListenError::NotASocket {
                path: path.to_owned(),
            });
        }
        Err(_) => {}
    }
    let name = path.to_fs_name::<GenericFilePath>().map_err(fail)?;
    ListenerOptions::new()
        .name(name)
        .mode(0o600)
        .create_tokio()
        .map_err(fail)
}

/// Creates the named pipe (`sys::bind`: this user's SID only, remote
/// clients rejected, first instance exclusive). The caller holds the
/// daemon lock; a pipe that exists already is someone else's: refused.
#[cfg(windows)]
pub fn bind(path: &Path) -> Result<Listener, ListenError> {
    crate::sys::bind(path).map_err(|source| ListenError::Listen {
        path: path.to_owned(),
        source,
    })
}

/// Serves on a socket someone else bound (systemd socket activation). The
/// listener owns no name: dropping it closes our descriptor and leaves the
/// socket file to its owner. Must run inside the tokio runtime.
#[cfg(unix)]
pub fn adopt(listener: std::os::unix::net::UnixListener) -> Result<Listener, ListenError> {
    use interprocess::os::unix::uds_local_socket::tokio::Listener as UdsListener;
    let fd = std::os::fd::OwnedFd::from(listener);
    UdsListener::try_from(fd)
        .map(Listener::from)
        .map_err(|source| ListenError::Adopt { source })
}

/// Serves until `shutdown` resolves, then stops accepting, lets requests in
/// flight finish (up to `limits.grace`) and returns.
pub async fn serve(
    listener: Listener,
    engine: Engine,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let watchers = Arc::new(Semaphore::new(
        limits.max_connections.saturating_sub(limits.reserved),
    ));
    // One stop signal per connection: sent to close it for idleness,
    // dropped at shutdown. Polling a oneshot is a few atomic operations,
    // where a shared `watch` took a lock on each poll (BENCHMARKS.md,
    // issue 15). Those of closed connections are pruned as the list grows
    // and at each sweep.
    let mut open: Vec<Open> = Vec::new();
    // Idle connections are found by one sweep of them all, four times per
    // `idle`, rather than by a timer each connection polls after every
    // request (3% of a cached `get`'s instructions).
    let every = (limits.idle / 4).max(Duration::from_millis(1));
    let mut sweep = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = sweep.tick() => {
                let now = engine.uptime_nanos(Instant::now());
                for c in &mut open {
                    if c.stop.is_some()
                        && c.activity.claim_if_idle(now, limits.idle)
                        && let Some(stop) = c.stop.take()
                    {
                        let _ = stop.send(Stop::Idle);
                    }
                }
                open.retain(Open::is_open);
                continue;
            }
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly
                // rather than spin, and keep serving the connections we have.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(why) = crate::sys::check_peer(&stream) {
            tracing::warn!("{why}");
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(
                max = limits.max_connections,
                "connection limit reached; closing a new connection"
            );
            let mut stream = stream;
            let busy = Response::Error(WireError::new(
                ErrorKind::Busy,
                "the daemon has too many open connections; try again",
            ));
            let _ =
                tokio::time::timeout(Duration::from_millis(100), write_frame(&mut stream, &busy))
                    .await;
            continue;
        };
        tracing::debug!(
            open = limits.max_connections - permits.available_permits(),
            "accepted a connection"
        );
        if open.len() >= limits.max_connections {
            open.retain(Open::is_open);
        }
        let (stopper, stop) = oneshot::channel();
        let activity = Arc::new(Activity::default());
        activity.idle_since(engine.uptime_nanos(Instant::now()));
        open.push(Open {
            stop: Some(stopper),
            activity: activity.clone(),
        });
        let conn = Conn {
            engine: engine.clone(),
            stop,
            activity,
            limits: limits.clone(),
            watchers: watchers.clone(),
        };
        connections.spawn(async move {
            connection(stream, conn).await;
            drop(permit);
        });
    }
    drop(open);
    let drained = tokio::time::timeout(limits.grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("shutting down with requests still in flight");
    }
}

/// Why the accept loop stops a connection. It also stops them all by
/// dropping their senders, when the daemon stops.
#[derive(Debug)]
enum Stop {
    Idle,
}

/// A connection as the accept loop sees it.
struct Open {
    /// `None` once `Stop::Idle` has been sent.
    stop: Option<oneshot::Sender<Stop>>,
    activity: Arc<Activity>,
}

impl Open {
    fn is_open(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| !s.is_closed())
    }
}

/// Since when a connection has been waiting for a request, in the engine's
/// uptime nanoseconds; [`Activity::BUSY`] while it handles one (a fetch may
/// outlast `idle`) or holds a `watch`; [`Activity::STOPPING`] once a sweep
/// has claimed it as idle.
#[derive(Debug, Default)]
struct Activity(AtomicU64);

impl Activity {
    const BUSY: u64 = u64::MAX;
    const STOPPING: u64 = u64::MAX - 1;

    fn busy(&self) {
        self.0.store(Self::BUSY, Ordering::Relaxed);
    }

    fn idle_since(&self, uptime_nanos: u64) {
        self.0.store(uptime_nanos, Ordering::Relaxed);
    }

    /// The sweep's claim: true if the connection has waited `idle` at
    /// `now` and has not become busy since that was read. A request that
    /// arrives as the sweep looks either makes the claim fail or, if it
    /// came after, is answered before the connection closes.
    fn claim_if_idle(&self, now: u64, idle: Duration) -> bool {
        self.claim(self.0.load(Ordering::Relaxed), now, idle)
    }

    /// [`Activity::claim_if_idle`] once the sweep has read `since`.
    fn claim(&self, since: u64, now: u64, idle: Duration) -> bool {
        since < Self::STOPPING
            && u128::from(now.saturating_sub(since)) >= idle.as_nanos()
            && self
                .0
                .compare_exchange(since, Self::STOPPING, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// What a connection needs besides its stream.
struct Conn {
    engine: Engine,
    /// Says `Idle`, or is closed when the daemon stops.
    stop: oneshot::Receiver<Stop>,
    /// Read by the accept loop's sweep for idle connections.
    activity: Arc<Activity>,
    limits: Limits,
    /// Permits for `watch`, which holds its connection for good.
    watchers: Arc<Semaphore>,
}

/// What a request is answered with.
enum Reply {
    Response(Response),
    /// A token, whose frame its slot may keep ready (`engine/answer.rs`).
    Token(Answer),
}

impl From<Response> for Reply {
    fn from(response: Response) -> Self {
        Self::Response(response)
    }
}

/// Writes `reply`, giving up after `limit`: a client that does not read
/// its replies is dropped, not waited for. A token goes out in the frame
/// its slot keeps; anything else is encoded into `frame`, the
/// connection's buffer, reused. What the socket does not take at once is
/// written by [`write_rest`].
async fn send<W: AsyncWrite + WriteNow + Unpin>(
    writer: &mut W,
    frame: &mut Vec<u8>,
    reply: impl Into<Reply>,
    limit: Duration,
) -> Result<(), CodecError> {
    let framed = match reply.into() {
        Reply::Token(answer) => answer.into_frame().map_err(Response::Token),
        Reply::Response(response) => Err(response),
    };
    let bytes = match &framed {
        Ok(framed) => framed.bytes(),
        Err(response) => {
            codec::encode_frame_into(response, frame)?;
            &frame[..]
        }
    };
    let written = match writer.write_now(bytes) {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    };
    let written = match written {
        Ok(n) if n == bytes.len() => Ok(()),
        Ok(n) => write_rest(writer, &bytes[n..], limit).await,
        Err(e) => Err(e),
    };
    if frame.capacity() > KEEP_BUFFER {
        *frame = Vec::new();
    }
    written.map_err(CodecError::Io)
}

/// Writes what the socket takes at once, without a future: a reply almost
/// always fits the socket's buffer, and the plain call skips the write
/// future and its readiness bookkeeping (BENCHMARKS.md, issue 15). `Ok(0)`
/// where the stream has no such call: the write future does it all.
trait WriteNow {
    fn write_now(&self, bytes: &[u8]) -> std::io::Result<usize>;
}

impl WriteNow for Stream {
    #[cfg(unix)]
    fn write_now(&self, bytes: &[u8]) -> std::io::Result<usize> {
        let Stream::UdSocket(stream) = self;
        stream.inner().try_write(bytes)
    }

    #[cfg(not(unix))]
    fn write_now(&self, _: &[u8]) -> std::io::Result<usize> {
        Ok(0)
    }
}

/// Writes `bytes`, giving up after `limit`. The timer is armed only when
/// the socket does not take them at once (on Windows, where there is no
/// [`WriteNow`], it almost always does): arming and cancelling a timer for
/// each reply was a visible share of a busy daemon's work (BENCHMARKS.md,
/// issue 15).
async fn write_rest<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    limit: Duration,
) -> std::io::Result<()> {
    let mut write = std::pin::pin!(async move {
        writer.write_all(bytes).await?;
        writer.flush().await
    });
    let at_once = std::future::poll_fn(|cx| {
        Poll::Ready(match write.as_mut().poll(cx) {
            Poll::Ready(written) => Some(written),
            Poll::Pending => None,
        })
    })
    .await;
    match at_once {
        Some(written) => written,
        None => tokio::time::timeout(limit, write)
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client did not take its reply in time",
                ))
            }),
    }
}

/// One client connection: `Hello` first, then requests until the client
/// closes, goes idle, or the daemon stops.
async fn connection(mut stream: Stream, conn: Conn) {
    let Conn {
        engine,
        mut stop,
        activity,
        limits,
        watchers,
    } = conn;
    // Buffered, so a request costs one `recvfrom`, and none is tried
    // before the next request arrives (`FrameReader`). Both buffers are
    // kept from one request to the next.
    let mut reader = FrameReader::new();
    let mut frame = Vec::new();
    let mut greeted = false;
    loop {
        // The read first: a request that has arrived is served without
        // polling the stop (3% of a cached `get`'s instructions). The stop
        // is also checked after each answer, so a client whose next request
        // is always there still sees it.
        let next = tokio::select! {
            biased;
            read = reader.next_body(&mut stream) => read,
            stopped = &mut stop => {
                if let Ok(Stop::Idle) = stopped {
                    tracing::debug!("closing an idle connection");
                }
                return;
            }
        };
        activity.busy();
        // A `Get` is read in place, its name not copied (issue 15).
        let next = next.and_then(|body| body.map(codec::decode_request).transpose());
        let incoming = match next {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!("closing a connection: {e}");
                if matches!(e, CodecError::Malformed(_) | CodecError::TooLarge { .. }) {
                    let reply = Response::Error(WireError::new(
                        ErrorKind::BadRequest,
                        format!("bad frame: {e}"),
                    ));
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        write_frame(&mut stream, &reply),
                    )
                    .await;
                }
                return;
            }
        };
        // A request (not an end of stream, not a bad frame): one reading of
        // the clock for the config check, the daemon's idle timeout and, if
        // the answer is at once, the connection's.
        let arrived = engine.note_request_at(Instant::now());
        let (response, close, shutdown) = match incoming {
            Incoming::Get(get) if greeted => {
                tracing::debug!(request = "get", "request");
                (answer_get(&engine, arrived, &get).await, false, false)
            }
            incoming => match incoming.into_request() {
                Request::Hello {
                    protocol_version, ..
                } if protocol_version != PROTOCOL_VERSION => {
                    let r = Response::VersionMismatch {
                        daemon_protocol_version: PROTOCOL_VERSION,
                        daemon_version: VERSION.to_owned(),
                        pid: std::process::id(),
                    };
                    (r.into(), true, false)
                }
                Request::Hello { .. } => {
                    greeted = true;
                    let r = Response::Hello {
                        protocol_version: PROTOCOL_VERSION,
                        daemon_version: VERSION.to_owned(),
                        pid: std::process::id(),
                        config_path: engine.config_path().display().to_string(),
                    };
                    (r.into(), false, false)
                }
                _ if !greeted => {
                    let r = Response::Error(WireError::new(
                        ErrorKind::BadRequest,
                        "the first message must be Hello",
                    ));
                    (r.into(), true, false)
                }
                Request::Shutdown => (
                    Response::Done {
                        affected: Vec::new(),
                    }
                    .into(),
                    true,
                    true,
                ),
                Request::Watch { name } => {
                    let Ok(_watching) = watchers.clone().try_acquire_owned() else {
                        tracing::warn!(
                            max = limits.max_connections.saturating_sub(limits.reserved),
                            "watch limit reached; refusing a watch"
                        );
                        let busy = Response::Error(WireError::new(
                            ErrorKind::Busy,
                            "the daemon has too many watch connections; try again later",
                        ));
                        let _ = send(&mut stream, &mut frame, busy, limits.write_timeout).await;
                        return;
                    };
                    let w = Watcher {
                        engine: &engine,
                        name: &name,
                        write_timeout: limits.write_timeout,
                    };
                    w.run(&mut reader, &mut stream, &mut stop).await;
                    return;
                }
                other => {
                    tracing::debug!(request = request_name(&other), "request");
                    (dispatch(&engine, other).await, false, false)
                }
            },
        };
        let at_once = matches!(&response, Reply::Token(answer) if answer.from_memory());
        if let Err(e) = send(&mut stream, &mut frame, response, limits.write_timeout).await {
            tracing::debug!("could not answer a client: {e}");
            return;
        }
        // Idle from the answer: a fetch may have taken longer than `idle`.
        activity.idle_since(if at_once {
            arrived
        } else {
            engine.uptime_nanos(Instant::now())
        });
        if shutdown {
            tracing::info!("shutdown requested by a client");
            engine.request_shutdown();
        }
        if close || !matches!(stop.try_recv(), Err(TryRecvError::Empty)) {
            return;
        }
    }
}

/// One `Watch`.
struct Watcher<'a> {
    engine: &'a Engine,
    name: &'a str,
    write_timeout: Duration,
}

impl Watcher<'_> {
    /// Serves `Watch`: the current token, then each new one, until the client
    /// hangs up (anything it sends, or its end of stream, ends the watch), does
    /// not take a token within the write timeout, or the daemon stops.
    async fn run(
        &self,
        reader: &mut FrameReader,
        stream: &mut Stream,
        stop: &mut oneshot::Receiver<Stop>,
    ) {
        let (engine, name, limit) = (self.engine, self.name, self.write_timeout);
        let mut frame = Vec::new();
        // Subscribe before the first answer, so no new token can slip between.
        let mut changes = engine.subscribe();
        let first = match engine.get(name, None, false).await {
            Ok(token) => token,
            Err(e) => {
                let _ = send(stream, &mut frame, Response::Error(e), limit).await;
                return;
            }
        };
        let mut last = (first.expires_at, first.fetched_at);
        if send(stream, &mut frame, Response::Token(first), limit)
            .await
            .is_err()
        {
            return;
        }
        loop {
            let changed = tokio::select! {
                changed = changes.recv() => changed,
                _ = reader.next::<_, Request>(stream) => return,
                _ = &mut *stop => return,
            };
            match changed {
                Ok(n) if n != name => continue,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
            let Some(token) = engine.current(name) else {
                continue;
            };
            if (token.expires_at, token.fetched_at) == last {
                continue;
            }
            last = (token.expires_at, token.fetched_at);
            // A watcher keeps its credential warm.
            engine.keep_warm(name);
            if send(stream, &mut frame, Response::Token(token), limit)
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// The request's kind, for the debug log (never its fields' values beyond
/// a credential name).
fn request_name(request: &Request) -> &'static str {
    match request {
        Request::Hello { .. } => "hello",
        Request::Get { .. } => "get",
        Request::List { .. } => "list",
        Request::Status => "status",
        Request::Refresh { .. } => "refresh",
        Request::Forget { .. } => "forget",
        Request::Reload => "reload",
        Request::Shutdown => "shutdown",
        Request::Watch { .. } => "watch",
        Request::SdkEnv { .. } => "sdk-env",
        Request::Login { .. } => "login",
        Request::LoginPoll { .. } => "login-poll",
        Request::LoginCode { .. } => "login-code",
        Request::Logout { .. } => "logout",
    }
}

async fn answer_get(engine: &Engine, arrived: u64, get: &GetRef<'_>) -> Reply {
    let scopes: Vec<String> = get.scopes.iter().map(|s| (*s).to_owned()).collect();
    let min_valid = get.min_valid_secs.map(Duration::from_secs);
    match engine
        .answer(arrived, get.name, &scopes, min_valid, get.refresh)
        .await
    {
        Ok(answer) => Reply::Token(answer),
        Err(e) => Response::Error(e).into(),
    }
}

async fn dispatch(engine: &Engine, request: Request) -> Reply {
    // A `get` reads its own record if the start's read of the store has
    // not reached it yet; every other request looks at the whole cache.
    if !matches!(request, Request::Get { .. }) {
        engine.records_loaded().await;
    }
    let done = |r: Result<Vec<String>, WireError>| match r {
        Ok(affected) => Response::Done { affected },
        Err(e) => Response::Error(e),
    };
    let login = |r: Result<LoginStep, WireError>| match r {
        Ok(step) => Response::Login(step),
        Err(e) => Response::Error(e),
    };
    let response = match request {
        Request::Get {
            name,
            min_valid_secs,
            refresh,
            scopes,
        } => {
            let get = GetRef {
                name: &name,
                min_valid_secs,
                refresh,
                scopes: scopes.iter().map(String::as_str).collect(),
            };
            let arrived = engine.uptime_nanos(Instant::now());
            return answer_get(engine, arrived, &get).await;
        }
        Request::List { after } => Response::Credentials(engine.list_page(after.as_deref())),
        Request::Status => Response::Status(Box::new(engine.status())),
        Request::Refresh { name } => done(engine.refresh(name.as_deref()).await),
        Request::Forget { name } => done(engine.forget(name.as_deref()).await),
        Request::Reload => done(engine.reload()),
        Request::SdkEnv { names, rotate } => match engine.sdk_env(&names, rotate).await {
            Ok(env) => Response::SdkEnv(env),
            Err(e) => Response::Error(e),
        },
        Request::Login {
            name,
            method,
            redirect_port,
        } => login(engine.login(&name, method, redirect_port).await),
        Request::LoginPoll { name } => login(engine.login_poll(&name).await),
        Request::LoginCode { name, code, state } => {
            login(engine.login_code(&name, &code, &state).await)
        }
        Request::Logout { name } => done(engine.logout(&name).await),
        // Handled by the caller; answered here too rather than trusted.
        Request::Hello { .. } | Request::Shutdown | Request::Watch { .. } => {
            Response::Error(WireError::new(ErrorKind::BadRequest, "unexpected request"))
        }
    };
    response.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(30);
    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_sweep_claims_a_connection_idle_that_long_once() {
        let a = Activity::default();
        a.idle_since(10 * SECOND);
        assert!(!a.claim_if_idle(39 * SECOND, IDLE));
        assert!(a.claim_if_idle(40 * SECOND, IDLE));
        // Claimed: the next sweep does not claim it again.
        assert!(!a.claim_if_idle(80 * SECOND, IDLE));
    }

    #[test]
    fn a_busy_connection_is_never_claimed() {
        let a = Activity::default();
        a.busy();
        assert!(!a.claim_if_idle(u64::MAX / 2, IDLE));
        // Its answer starts the wait again.
        a.idle_since(100 * SECOND);
        assert!(!a.claim_if_idle(110 * SECOND, IDLE));
        assert!(a.claim_if_idle(130 * SECOND, IDLE));
    }

    /// The race the claim closes: a sweep that read "idle" just before a
    /// request arrived must not stop the connection that is now busy.
    #[test]
    fn a_request_between_the_sweeps_reading_and_its_claim_wins() {
        let a = Activity::default();
        a.idle_since(0);
        let seen = a.0.load(Ordering::Relaxed);
        a.busy();
        assert!(!a.claim(seen, 60 * SECOND, IDLE));
        assert_eq!(a.0.load(Ordering::Relaxed), Activity::BUSY);
    }
}
