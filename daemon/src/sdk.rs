//! Cloud SDKs through the daemon (docs/cloud-sdks.md): a loopback HTTP
//! endpoint per exported credential that speaks a protocol the SDKs
//! already know: Azure App Service managed identity for `azure`
//! credentials (`azure.rs`), the GCE metadata server for `google` ones
//! (`google.rs`). Every token they hand out comes from the engine, so
//! SDK processes share the daemon's cache, single-flight and refresh.
//!
//! Each credential keeps its port across restarts (`state.rs` persists
//! them, with the Azure secret, beside the cache key); an endpoint opens
//! when a client first asks for its variables (`sdk-env`, `exec --sdk`),
//! and at start for every credential that had one. `serve.rs` checks the
//! peer of every connection (`peer_linux.rs`: the kernel's socket table;
//! `peer_windows.rs`: the TCP table's owning process and its token)
//! and the protocol's header, and counts what it served and refused.

mod azure;
mod google;
#[cfg(target_os = "linux")]
mod peer_linux;
#[cfg(windows)]
mod peer_windows;
mod serve;
mod state;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use credcache_shared::Secret;
use credcache_shared::config::{Credential, Source};
use credcache_shared::protocol::{ErrorKind, SdkEndpoint, SdkEndpointStatus, SdkEnv, WireError};

use crate::engine::{Engine, SdkHost};
use crate::providers::BoxFuture;

/// The protocol an endpoint speaks, from its credential's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Azure,
    Google,
}

/// The endpoint's credential as configured now; or, when a reload removed
/// it or changed its kind away from the endpoint's protocol, the message
/// the endpoint answers with in place of a token.
fn current(endpoints: &Endpoints, endpoint: &Endpoint) -> Result<Arc<Credential>, String> {
    let name = &endpoint.name;
    let cred = endpoints.engine.credential(name).map_err(|e| e.message)?;
    match Protocol::of(&cred) {
        Ok(now) if now == endpoint.protocol() => Ok(cred),
        Ok(now) => Err(format!(
            "{name} is now a {} credential: run `credcache sdk-env {name}` again for its variables",
            now.kind()
        )),
        Err(e) => Err(e.message),
    }
}

impl Protocol {
    fn of(cred: &Credential) -> Result<Self, WireError> {
        match &cred.source {
            Source::Azure(_) => Ok(Self::Azure),
            Source::Google(_) => Ok(Self::Google),
            _ => Err(WireError::new(
                ErrorKind::Config,
                format!(
                    "{} is {}: SDK endpoints serve google and azure credentials",
                    cred.name,
                    cred.kind()
                ),
            )),
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Self::Azure => "azure",
            Self::Google => "google",
        }
    }
}

/// The process on the other end of a connection.
#[cfg(unix)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    /// Its socket's inode, to find its process by (for the log).
    pub inode: u64,
}

/// The process on the other end of a connection: Windows names the
/// process (the TCP table's owning pid), and its token's user is compared
/// with ours when it is found (`peer_windows.rs`).
#[cfg(windows)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub pid: u32,
    /// Whether the process runs as the daemon's own user (its token's
    /// SID is ours); false when its token cannot be read.
    pub same_user: bool,
}

impl Peer {
    /// Whether the peer runs as the daemon's user, the one who may ask.
    fn is_ours(self) -> bool {
        #[cfg(unix)]
        return self.uid == our_uid();
        #[cfg(windows)]
        return self.same_user;
    }

    /// Its uid, where users are uids (for the log).
    fn uid(self) -> Option<u32> {
        #[cfg(unix)]
        return Some(self.uid);
        #[cfg(windows)]
        return None;
    }

    /// The process holding the peer's socket, if it is one we may see.
    /// On Linux a walk of `/proc/*/fd`: only for a refusal's log line,
    /// never on the path of a request that is served.
    fn pid(self) -> Option<u32> {
        #[cfg(target_os = "linux")]
        return peer_linux::pid_of(self.inode);
        #[cfg(windows)]
        return Some(self.pid);
        #[cfg(not(any(target_os = "linux", windows)))]
        {
            let _ = self.inode;
            None
        }
    }
}

/// Who is connecting from `peer` to our `local` address, where the
/// platform can tell.
#[cfg(target_os = "linux")]
fn peer_of(peer: SocketAddr, local: SocketAddr) -> Option<Peer> {
    peer_linux::lookup(peer, local)
}

/// Who is connecting: the TCP table's owning process, and its user.
#[cfg(windows)]
fn peer_of(peer: SocketAddr, local: SocketAddr) -> Option<Peer> {
    peer_windows::lookup(peer, local)
}

/// Elsewhere (macOS) no socket table is read: no peer is known, so the
/// Google endpoint refuses every request and says why; the Azure one
/// still requires its secret.
#[cfg(not(any(target_os = "linux", windows)))]
fn peer_of(_peer: SocketAddr, _local: SocketAddr) -> Option<Peer> {
    None
}

/// The daemon's own uid, which a peer must have.
#[cfg(unix)]
fn our_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Whether this system can name the peer of a loopback connection. On
/// Windows that is found out once, on a connection of our own: Wine's
/// TCP table names no owning process (every pid is 0), and neither may a
/// restricted Windows.
pub fn peer_check() -> bool {
    #[cfg(target_os = "linux")]
    return true;
    #[cfg(windows)]
    return peer_windows::works();
    #[cfg(not(any(target_os = "linux", windows)))]
    return false;
}

/// Why the Google endpoint refuses everything where [`peer_check`] fails:
/// the refusal's body and the note `status` shows.
pub const NO_PEER_CHECK: &str = if cfg!(windows) {
    "this system does not name the process behind a loopback connection \
     (its TCP table gives no owning process), so the metadata endpoint is off"
} else {
    "this platform cannot tell which user is connecting, so the metadata endpoint is off"
};

/// One credential's endpoint: where it listens and what it did.
pub struct Endpoint {
    pub name: String,
    /// `Protocol::Google` or not; switched in place (same port) when the
    /// credential's kind changes and its variables are asked for again.
    google: AtomicBool,
    pub port: u16,
    listening: AtomicBool,
    served: AtomicU64,
    refused: AtomicU64,
    error: Mutex<Option<String>>,
}

impl Endpoint {
    fn new(name: &str, protocol: Protocol, port: u16, error: Option<String>) -> Self {
        Self {
            name: name.to_owned(),
            google: AtomicBool::new(protocol == Protocol::Google),
            port,
            listening: AtomicBool::new(error.is_none()),
            served: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            error: Mutex::new(error),
        }
    }

    pub fn protocol(&self) -> Protocol {
        if self.google.load(Ordering::Relaxed) {
            Protocol::Google
        } else {
            Protocol::Azure
        }
    }

    fn status(&self) -> SdkEndpointStatus {
        SdkEndpointStatus {
            name: self.name.clone(),
            kind: self.protocol().kind().to_owned(),
            port: self.port,
            listening: self.listening.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            error: self
                .error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .or_else(|| {
                    (self.protocol() == Protocol::Google && !peer_check())
                        .then(|| NO_PEER_CHECK.to_owned())
                }),
        }
    }
}

/// Every SDK endpoint of the daemon.
pub struct Endpoints {
    /// Itself, for the servers `open` spawns (the engine holds this as
    /// `Arc<dyn SdkHost>`).
    me: Weak<Endpoints>,
    engine: Engine,
    state: state::State,
    /// The secret `X-IDENTITY-HEADER` must carry; replaced by `--rotate`.
    secret: Mutex<Secret>,
    open: Mutex<HashMap<String, Arc<Endpoint>>>,
    /// Serialises opening, so two clients cannot bind twice.
    opening: tokio::sync::Mutex<()>,
}

impl Endpoints {
    /// Loads (or makes) the Azure secret and the ports beside `config_file`,
    /// hands the engine this, and opens the endpoint of every credential
    /// that had one. A failure to open one is in its `status`.
    pub async fn start(engine: Engine, config_file: &Path) -> Arc<Self> {
        let (state, secret, warnings) = state::State::load(config_file);
        engine.add_warnings(warnings);
        let this = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            engine: engine.clone(),
            state,
            secret: Mutex::new(secret),
            open: Mutex::new(HashMap::new()),
            opening: tokio::sync::Mutex::new(()),
        });
        engine.set_sdk(this.clone());
        for (name, port) in this.state.ports() {
            let Ok(cred) = engine.credential(&name) else {
                continue;
            };
            let Ok(protocol) = Protocol::of(&cred) else {
                continue;
            };
            if let Err(e) = this.open(&name, protocol, Some(port)).await {
                tracing::warn!(credential = %name, "SDK endpoint not reopened: {}", e.message);
            }
        }
        this
    }

    fn secret(&self) -> Secret {
        self.secret
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The endpoint of `name`, opened on its port (`want`, or a new one).
    async fn open(
        self: &Arc<Self>,
        name: &str,
        protocol: Protocol,
        want: Option<u16>,
    ) -> Result<Arc<Endpoint>, WireError> {
        let _one = self.opening.lock().await;
        if let Some(e) = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            && e.listening.load(Ordering::Relaxed)
        {
            // A reload changed the credential's kind: the same port now
            // speaks the other protocol (the old variables are stale
            // anyway, and IDE launch configs keep their port).
            if e.protocol() != protocol {
                e.google
                    .store(protocol == Protocol::Google, Ordering::Relaxed);
                tracing::info!(
                    credential = name,
                    port = e.port,
                    kind = protocol.kind(),
                    "SDK endpoint switched protocol"
                );
            }
            return Ok(e.clone());
        }
        let port = want.unwrap_or(0);
        let bound =
            tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await;
        let listener = match bound {
            Ok(l) => l,
            Err(e) => {
                let message = if e.kind() == std::io::ErrorKind::AddrInUse {
                    format!(
                        "the SDK endpoint of {name} cannot listen on 127.0.0.1:{port}: another process holds it; stop it, or remove {name} from {} to get a new port",
                        self.state.ports_file().display()
                    )
                } else {
                    format!("the SDK endpoint of {name} cannot listen on 127.0.0.1:{port}: {e}")
                };
                let failed = Arc::new(Endpoint::new(name, protocol, port, Some(message.clone())));
                self.open
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.to_owned(), failed);
                tracing::warn!("{message}");
                return Err(WireError::new(ErrorKind::Internal, message));
            }
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
        if want != Some(port)
            && let Err(e) = self.state.set_port(name, port)
        {
            tracing::warn!("could not record the SDK port of {name}: {e}");
        }
        let endpoint = Arc::new(Endpoint::new(name, protocol, port, None));
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), endpoint.clone());
        tracing::info!(
            credential = name,
            port,
            kind = protocol.kind(),
            "SDK endpoint open"
        );
        tokio::spawn(serve::run(listener, self.clone(), endpoint.clone()));
        Ok(endpoint)
    }

    async fn env_for(
        self: &Arc<Self>,
        names: &[String],
        rotate: bool,
    ) -> Result<SdkEnv, WireError> {
        if rotate {
            let new = self.state.rotate_secret().map_err(|e| {
                WireError::new(
                    ErrorKind::Internal,
                    format!("cannot write a new SDK secret: {e}"),
                )
            })?;
            *self.secret.lock().unwrap_or_else(|p| p.into_inner()) = new;
            tracing::info!("SDK secret rotated");
        }
        // Every name is checked before any endpoint opens.
        let mut chosen: Vec<(Arc<Credential>, Protocol)> = Vec::new();
        for name in names {
            let cred = self.engine.credential(name)?;
            let protocol = Protocol::of(&cred)?;
            if let Some((other, _)) = chosen.iter().find(|(_, p)| *p == protocol) {
                return Err(WireError::new(
                    ErrorKind::Config,
                    format!(
                        "{} and {name} are both {} credentials: an environment points the SDKs at one of each kind",
                        other.name,
                        protocol.kind()
                    ),
                ));
            }
            chosen.push((cred, protocol));
        }
        let mut endpoints = Vec::new();
        for (cred, protocol) in chosen {
            let name = &cred.name;
            let endpoint = self.open(name, protocol, self.state.port(name)).await?;
            let project = match protocol {
                Protocol::Google => google::Identity::of(&cred).await.project,
                Protocol::Azure => None,
            };
            endpoints.push(SdkEndpoint {
                name: name.clone(),
                kind: protocol.kind().to_owned(),
                port: endpoint.port,
                project,
            });
        }
        Ok(SdkEnv {
            endpoints,
            identity_header: self.secret(),
        })
    }
}

impl SdkHost for Endpoints {
    fn env<'a>(
        &'a self,
        names: &'a [String],
        rotate: bool,
    ) -> BoxFuture<'a, Result<SdkEnv, WireError>> {
        Box::pin(async move {
            let this = self.me.upgrade().ok_or_else(|| {
                WireError::new(ErrorKind::ShuttingDown, "the SDK endpoints are stopping")
            })?;
            this.env_for(names, rotate).await
        })
    }

    fn status(&self) -> Vec<SdkEndpointStatus> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<SdkEndpointStatus> = open.values().map(|e| e.status()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}
