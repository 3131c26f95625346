//! The messages `credcache` and `credcached` exchange over the local socket.
//!
//! Every connection starts with [`Request::Hello`] answered by
//! [`Response::Hello`] (or [`Response::VersionMismatch`]); after that the
//! client sends any number of requests, each answered by exactly one
//! response, in order. Framing is in [`crate::codec`].
//!
//! Compatibility rule: `Hello` is variant 0 of both enums, and the fields
//! of [`Request::Hello`] and of [`Response::VersionMismatch`] never change,
//! so two builds with different [`PROTOCOL_VERSION`]s can always tell each
//! other so. ([`Response::Hello`] is only sent when the versions match, so
//! it may grow with a bump.) Any other change to these types bumps
//! [`PROTOCOL_VERSION`] by hand.
//!
//! Every frame is at most [`crate::codec::MAX_FRAME`]: answers that grow
//! with the number of credentials (`List`, `Status`) come in pages, and a
//! credential name sent is at most [`MAX_NAME_LEN`] bytes.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Secret;

/// Bumped by hand whenever a message below changes shape.
pub const PROTOCOL_VERSION: u32 = 6;

/// The longest credential name a request may carry, in bytes. Config
/// names are far shorter; this keeps every request well under the frame
/// cap, so a client can refuse a longer one with a clear error.
pub const MAX_NAME_LEN: usize = 1024;

/// The most bytes of credential entries the daemon puts in one `List` or
/// `Status` answer; the rest come in further pages. Half the frame cap,
/// so the other fields of `Status` always fit beside them.
pub const PAGE_BYTES: usize = crate::codec::MAX_FRAME / 2;

/// What a client asks of the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// First message on every connection; the daemon checks the version.
    Hello {
        protocol_version: u32,
        client_version: String,
    },
    /// A token for credential `name`, fetched if the cache has none valid
    /// for at least `min_valid_secs` (default: the credential's `min_valid`).
    /// `refresh` fetches anew even when the cache could answer.
    /// `scopes`, when not empty, asks for a token of these scopes instead
    /// of the configured ones (`google` and `azure` kinds), cached apart.
    Get {
        name: String,
        min_valid_secs: Option<u64>,
        refresh: bool,
        scopes: Vec<String>,
    },
    /// The configured credentials and the state of each, in name order,
    /// starting after `after` (from the start with `None`). Answered by
    /// one page; [`CredentialPage::next`] says where the next one starts.
    List { after: Option<String> },
    /// The daemon's own state plus the first page of credentials; the
    /// rest are asked for with `List { after: status.more_after }`.
    Status,
    /// Fetch anew now: one credential, or every cached one with `None`.
    /// Answered when the fetches are done.
    Refresh { name: Option<String> },
    /// Drop from memory and disk: one credential, or all with `None`.
    Forget { name: Option<String> },
    /// Re-read the config file now (as SIGHUP does).
    Reload,
    /// Finish in-flight requests, flush the cache, remove the socket, exit.
    Shutdown,
    /// The current token of `name` (fetched if need be), then one more
    /// `Token` answer each time a new token is fetched, until the client
    /// closes the connection. The only request answered more than once.
    Watch { name: String },
    /// Open (if need be) the SDK endpoint of each of `names` and say
    /// where it is (contract section 6). `rotate` replaces the Azure
    /// secret first.
    SdkEnv { names: Vec<String>, rotate: bool },
    /// Start signing in credential `name` (a `device-code` or `browser`
    /// Azure credential, or a `google` one with `oauth_client_file`):
    /// `method` overrides the configured flow; `redirect_port` is the
    /// client's loopback listener, for the browser flow. Answered by
    /// `Login(DeviceCode | Browser)`. The daemon makes the upstream calls;
    /// the refresh token never leaves it.
    Login {
        name: String,
        method: Option<LoginMethod>,
        redirect_port: Option<u16>,
    },
    /// Device code flow: has the user finished? `Login(Pending | Done)`.
    LoginPoll { name: String },
    /// Browser flow: the `code` and `state` the redirect brought to the
    /// client's listener; the daemon checks `state` and redeems the code.
    /// `Login(Done)`.
    LoginCode {
        name: String,
        code: Secret,
        state: String,
    },
    /// Drop the refresh token of `name` and the tokens minted from it.
    Logout { name: String },
}

/// [`Request::Get`] read in place, its strings borrowed from the frame:
/// how the daemon reads the request it is sent most, without allocating
/// (issue 15). The fields are `Get`'s, in the same order: on the wire it
/// is the same message ([`crate::codec::decode_request`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GetRef<'a> {
    #[serde(borrow)]
    pub name: &'a str,
    pub min_valid_secs: Option<u64>,
    pub refresh: bool,
    #[serde(borrow)]
    pub scopes: Vec<&'a str>,
}

impl GetRef<'_> {
    /// The owned request.
    pub fn to_request(&self) -> Request {
        Request::Get {
            name: self.name.to_owned(),
            min_valid_secs: self.min_valid_secs,
            refresh: self.refresh,
            scopes: self.scopes.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// The two sign-in flows of `credcache login`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginMethod {
    DeviceCode,
    Browser,
}

/// One step of a sign-in, as the daemon answers `Login*` requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LoginStep {
    /// Show `message` (the identity provider's own words: the page to open
    /// and the code to enter), then send `LoginPoll` every `interval_secs`
    /// until `expires_in_secs` have passed.
    DeviceCode {
        message: String,
        interval_secs: u64,
        expires_in_secs: u64,
    },
    /// Open `url` in a browser; the redirect comes to the client's
    /// listener, which answers with `LoginCode`.
    Browser { url: String },
    /// Not signed in yet: poll again after `interval_secs` (raised by a
    /// `slow_down`).
    Pending { interval_secs: u64 },
    /// Signed in, and the first token fetched.
    Done {
        #[serde(with = "crate::time::compact")]
        expires_at: DateTime<Utc>,
    },
}

/// What the daemon answers; one per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The versions match; the connection is ready for requests.
    Hello {
        protocol_version: u32,
        daemon_version: String,
        pid: u32,
        /// The config file the daemon reads (absolute), so a client told
        /// to use another can say so instead of using this one silently.
        config_path: String,
    },
    /// The client speaks another protocol version; the daemon closes the
    /// connection after this.
    VersionMismatch {
        daemon_protocol_version: u32,
        daemon_version: String,
        pid: u32,
    },
    /// The answer to `Get`.
    Token(TokenReply),
    /// The answer to `List`: one page.
    Credentials(CredentialPage),
    /// The answer to `Status`.
    Status(Box<DaemonStatus>),
    /// `Refresh`, `Forget`, `Reload` or `Shutdown` done; names what it touched.
    Done { affected: Vec<String> },
    /// The request failed.
    Error(WireError),
    /// The answer to `Login`, `LoginPoll` and `LoginCode`.
    Login(LoginStep),
    /// The answer to `SdkEnv`.
    SdkEnv(SdkEnv),
}

/// Where the SDK endpoints of the credentials asked for listen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SdkEnv {
    pub endpoints: Vec<SdkEndpoint>,
    /// The per-user secret the Azure endpoint wants in `X-IDENTITY-HEADER`.
    pub identity_header: Secret,
}

/// One credential's SDK endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SdkEndpoint {
    pub name: String,
    /// `azure` or `google`: which protocol it speaks.
    pub kind: String,
    /// The port on 127.0.0.1, the same across daemon restarts.
    pub port: u16,
    /// A `google` credential's project, when known (`GOOGLE_CLOUD_PROJECT`).
    pub project: Option<String>,
}

/// What `status` shows of an SDK endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SdkEndpointStatus {
    pub name: String,
    pub kind: String,
    pub port: u16,
    /// Whether it is listening now (false: the port is taken, see `error`).
    pub listening: bool,
    pub served: u64,
    pub refused: u64,
    pub error: Option<String>,
}

/// A token of a credential for scopes other than its configured ones
/// (`get --scope`), as `list` and `status` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopedInfo {
    pub scopes: Vec<String>,
    pub state: CredentialState,
    #[serde(with = "crate::time::compact::option")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::compact::option")]
    pub fetched_at: Option<DateTime<Utc>>,
    pub fetches: u64,
}

/// A token as handed to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
///
/// The name, kind and variable are shared with the daemon's config rather
/// than copied for each answer: three allocations fewer per cached `get`
/// (BENCHMARKS.md, issue 15). On the wire they are plain strings.
pub struct TokenReply {
    pub name: Arc<str>,
    pub kind: Cow<'static, str>,
    pub token: Secret,
    #[serde(with = "crate::time::compact")]
    pub expires_at: DateTime<Utc>,
    #[serde(with = "crate::time::compact")]
    pub fetched_at: DateTime<Utc>,
    /// The variable `get --format env` and `exec` put the token in.
    pub env_var: Arc<str>,
    /// Something the user should know although the request succeeded, e.g.
    /// that the config file on disk is invalid and the previous one is in
    /// force. The client prints it on stderr as `credcache: warning: ...`.
    pub warning: Option<String>,
}

/// Where a credential stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialState {
    /// A token valid for longer than its refresh headroom is cached.
    Fresh,
    /// A fetch is in flight.
    Refreshing,
    /// The last refresh failed but the cached token is still valid.
    StaleServing,
    /// The last fetch failed and no valid token is cached.
    Failing,
    /// A token was cached but has expired.
    Expired,
    /// Not fetched since the daemon started and nothing in the cache.
    NeverFetched,
    /// Its refresh token was refused (expired, revoked) or it was never
    /// signed in: a person must run `credcache login NAME`.
    NeedsLogin,
}

impl CredentialState {
    /// The word `list` and `status` print.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fresh => "fresh",
            Self::Refreshing => "refreshing",
            Self::StaleServing => "stale-serving",
            Self::Failing => "failing",
            Self::Expired => "expired",
            Self::NeverFetched => "never fetched",
            Self::NeedsLogin => "needs login",
        }
    }
}

/// One page of a `List` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialPage {
    pub credentials: Vec<CredentialInfo>,
    /// Set when more credentials follow: ask `List { after: next }`.
    pub next: Option<String>,
}

/// One credential's state, without its token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialInfo {
    pub name: String,
    pub kind: String,
    /// The credential whose token authorizes this one's fetch, if any.
    pub auth: Option<String>,
    pub state: CredentialState,
    #[serde(with = "crate::time::compact::option")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::compact::option")]
    pub fetched_at: Option<DateTime<Utc>>,
    /// When the daemon plans to fetch it anew in the background.
    #[serde(with = "crate::time::compact::option")]
    pub next_refresh: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    /// The last fetch error, with the cloud's own code and message.
    pub last_error: Option<String>,
    /// Upstream fetches made since the daemon started.
    pub fetches: u64,
    /// Tokens for other scopes (`get --scope`, the SDK endpoint), by scope.
    pub scoped: Vec<ScopedInfo>,
}

/// The daemon's own state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub daemon_version: String,
    pub protocol_version: u32,
    pub pid: u32,
    #[serde(with = "crate::time::compact")]
    pub started_at: DateTime<Utc>,
    pub uptime_secs: u64,
    pub socket: String,
    pub cache_path: String,
    pub config_path: String,
    /// Set when the config file on disk is invalid and the previous one
    /// stays in force.
    pub config_error: Option<String>,
    /// Requests answered since start, all connections together.
    pub requests_served: u64,
    /// Where the key that encrypts the cache lives (never the key).
    pub cache_key: String,
    /// Whether the daemon process may be ptraced or dump core (it marks
    /// itself non-dumpable so other processes of the user cannot read its
    /// memory; `true` means that failed).
    pub dumpable: bool,
    /// Things the user should fix: files holding secrets that others can
    /// read, a cache key that had to be replaced, and the like.
    pub warnings: Vec<String>,
    /// The SDK endpoints opened (contract section 6).
    pub sdk: Vec<SdkEndpointStatus>,
    /// The first page of credentials.
    pub credentials: Vec<CredentialInfo>,
    /// Set when more credentials follow: ask `List { after: more_after }`.
    pub more_after: Option<String>,
    /// The source tokens held in memory for impersonating and federated
    /// credentials, by source description.
    pub sources: Vec<SourceInfo>,
    /// How many more sources there are than fit in this answer.
    pub sources_not_shown: u32,
}

/// A source token the daemon holds (the identity an impersonating or
/// federated credential starts from), without the token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// What the source is: a key file, an ADC file's `source_credentials`,
    /// an external account's STS token, or application default
    /// credentials.
    pub source: String,
    pub state: CredentialState,
    #[serde(with = "crate::time::compact::option")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::compact::option")]
    pub fetched_at: Option<DateTime<Utc>>,
    /// How many configured credentials have fetched through it.
    pub shared_by: u32,
    /// Upstream fetches of this source since the daemon (or the config in
    /// force) started.
    pub fetches: u64,
    pub last_error: Option<String>,
}

/// An error that crossed the socket. The client maps `kind` to its exit code
/// in one place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    pub kind: ErrorKind,
    /// One line, no secrets: "what happened: why".
    pub message: String,
}

impl WireError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The classes of failure a client tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The request made no sense (e.g. a message before `Hello`).
    BadRequest,
    /// No credential of that name is configured.
    NoSuchCredential,
    /// The config file is invalid, or a credential's settings are unusable.
    Config,
    /// The upstream fetch failed and no valid cached token exists.
    Upstream,
    /// The daemon is shutting down and takes no new work.
    ShuttingDown,
    /// Anything else.
    Internal,
    /// The daemon is at a limit (connections, watchers): try again later.
    /// The client reports it as "daemon unreachable" (exit 3).
    Busy,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changing this number is a deliberate act: the messages changed shape.
    #[test]
    fn protocol_version_is_pinned() {
        assert_eq!(PROTOCOL_VERSION, 6);
    }

    /// Hello must stay decodable across protocol versions: variant 0 of both
    /// enums, fields unchanged.
    #[test]
    fn hello_is_variant_zero() {
        let req = crate::codec::to_vec(&Request::Hello {
            protocol_version: 7,
            client_version: "x".into(),
        })
        .unwrap();
        assert_eq!(req[0], 0);
        let resp = crate::codec::to_vec(&Response::Hello {
            protocol_version: 7,
            daemon_version: "x".into(),
            pid: 1,
            config_path: "/c".into(),
        })
        .unwrap();
        assert_eq!(resp[0], 0);
    }
}
