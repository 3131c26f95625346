//! Token providers: one module per credential kind, each turning a
//! credential's settings into a fetched token. Adding a kind is one new
//! module here plus one arm in [`build`].

pub mod apim;
pub(crate) mod authorized;
pub mod azure;
pub mod command;
pub mod container_app;
pub mod gke;
pub mod google;
pub(crate) mod process;
pub mod signed_in;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod token_response;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use credcache_shared::Secret;
use credcache_shared::config::{Config, Credential, Source};

pub use crate::fetch_error::{ErrorClass, FetchError};
use crate::http::Http;

/// The furthest ahead a fetched token's expiry may lie: a year and a day.
/// The clouds' tokens live an hour or a day (an APIM token at most 30
/// days): an answer that says "until 9999" is wrong, and believing it would
/// keep a dead token cached and never refreshed.
pub const MAX_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::days(366);

/// An expiry an upstream stated that lies more than [`MAX_LIFETIME`] ahead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{field} {} is more than {} days ahead",
    credcache_shared::time::format_rfc3339(*expires_at),
    MAX_LIFETIME.num_days()
)]
pub struct TooFarAhead {
    /// The field that stated it (`expires_on`).
    pub field: String,
    pub expires_at: DateTime<Utc>,
}

/// An expiry an upstream stated, refused (with why, naming `field`) if it
/// lies more than [`MAX_LIFETIME`] after `now`.
pub fn within_lifetime(
    field: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, TooFarAhead> {
    if expires_at - now > MAX_LIFETIME {
        return Err(TooFarAhead {
            field: field.to_owned(),
            expires_at,
        });
    }
    Ok(expires_at)
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Fetches tokens of one credential.
pub trait Provider: Send + Sync {
    fn fetch<'a>(&'a self, cx: &'a FetchContext<'a>) -> BoxFuture<'a, Result<Fetched, FetchError>>;
}

/// A freshly fetched token.
#[derive(Debug)]
pub struct Fetched {
    pub token: Secret,
    pub expires_at: DateTime<Utc>,
    /// Google's `quota_project_id` of the identity that fetched it: calls
    /// made with the token send it as `x-goog-user-project`.
    pub quota_project: Option<String>,
}

impl Fetched {
    pub fn new(token: Secret, expires_at: DateTime<Utc>) -> Self {
        Self {
            token,
            expires_at,
            quota_project: None,
        }
    }
}

/// The token of a credential named by `auth`, as a provider uses it.
#[derive(Debug, Clone)]
pub struct AuthToken {
    pub token: Secret,
    pub quota_project: Option<String>,
}

/// What a provider needs from whoever runs it (the engine): other
/// credentials' tokens. Providers see only this, never the engine itself,
/// so the dependency runs one way (`engine` → `providers`).
pub trait Dependencies: Send + Sync {
    /// The current token of credential `name`, fetched first if need be
    /// (and cached in its own right).
    fn auth_token<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<AuthToken, FetchError>>;

    /// An API answered 401 to `token` of `name`: drop it if it is still the
    /// current one, so the next [`auth_token`](Self::auth_token) fetches anew.
    /// `name` may also be a [`source_token`](Self::source_token) key.
    fn reject(&self, name: &str, token: &Secret);

    /// The token of a source no credential names (the identity a Google
    /// credential impersonates from): `key` says which source it is, the
    /// same for every credential over that source, and `source` fetches
    /// it. Cached in memory in its own right, single-flight, so N
    /// credentials over one source make one source call per source
    /// lifetime. `user` is the credential asking (`status` counts them).
    fn source_token<'a>(
        &'a self,
        id: SourceId<'a>,
        user: &'a str,
        source: &'a dyn Provider,
    ) -> BoxFuture<'a, Result<AuthToken, FetchError>>;

    /// The refresh token kept (sealed, on disk) for credential `name`
    /// signed in as `identity`, if any.
    fn refresh_token<'a>(
        &'a self,
        name: &'a str,
        identity: &'a str,
    ) -> BoxFuture<'a, Option<Secret>>;

    /// Keeps `token` as the refresh token of `name` under `identity`, on
    /// disk before this returns, replacing the one it rotated.
    fn keep_refresh_token<'a>(
        &'a self,
        name: &'a str,
        identity: &'a str,
        token: Secret,
    ) -> BoxFuture<'a, Result<(), FetchError>>;
}

/// A token of a credential other than its configured one (`get --scope`,
/// the SDK endpoint). Kinds that cannot make it say so with a config error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// An access token for these scopes instead of the configured ones
    /// (sorted, deduplicated, never the configured set itself).
    Scopes(Vec<String>),
    /// A Google ID token for this audience.
    IdToken { audience: String },
}

/// An unnamed source, as a provider names it to the engine.
#[derive(Debug, Clone, Copy)]
pub struct SourceId<'a> {
    /// Which source: equal keys share one token.
    pub key: &'a str,
    /// What it is, for `status`: a file path or "application default
    /// credentials", never a secret.
    pub label: &'a str,
}

/// What a provider may use while fetching.
pub struct FetchContext<'a> {
    /// The credential being fetched.
    pub name: &'a str,
    /// What is wanted instead of the credential's configured token, if
    /// anything. Every provider that honours it reads it through
    /// [`FetchContext::scopes`] or [`FetchContext::audience`].
    pub want: Option<&'a Want>,
    pub deps: &'a dyn Dependencies,
    pub http: &'a Http,
    pub now: DateTime<Utc>,
    pub timeout: Duration,
}

impl FetchContext<'_> {
    /// The scopes asked for instead of the configured ones, if any.
    pub fn scopes(&self) -> Option<&[String]> {
        match self.want {
            Some(Want::Scopes(s)) => Some(s),
            _ => None,
        }
    }

    /// The audience of the ID token asked for, if one is.
    pub fn audience(&self) -> Option<&str> {
        match self.want {
            Some(Want::IdToken { audience }) => Some(audience),
            _ => None,
        }
    }

    /// The current token of the credential this one's `auth` names, fetched
    /// first if need be (and cached in its own right).
    pub async fn auth_token(&self, auth: &str) -> Result<AuthToken, FetchError> {
        self.deps.auth_token(auth).await
    }

    /// Tells the engine an API answered 401 to `token` of `auth`: it is
    /// dropped, so the next [`auth_token`](Self::auth_token) fetches anew.
    pub fn reject_auth_token(&self, auth: &str, token: &Secret) {
        self.deps.reject(auth, token);
    }

    /// The token of the unnamed source `id`, fetched by `source` if need
    /// be (see [`Dependencies::source_token`]).
    pub async fn source_token(
        &self,
        id: SourceId<'_>,
        source: &dyn Provider,
    ) -> Result<AuthToken, FetchError> {
        self.deps.source_token(id, self.name, source).await
    }
}

/// The provider for a credential.
pub fn build(cred: &Credential, config: &Config) -> Arc<dyn Provider> {
    match &cred.source {
        Source::Google(s) => Arc::new(google::Google::new(s.clone())),
        Source::GoogleIdToken(s) => {
            let identity = match config.credential(&s.auth).map(|c| &c.source) {
                Some(Source::Google(g)) => Some(g.clone()),
                _ => None,
            };
            Arc::new(google::GoogleIdToken::new(s.clone(), identity))
        }
        Source::Command(s) => Arc::new(command::CommandProvider::new(s.clone())),
        Source::Azure(s) => Arc::new(azure::Azure::new(s.clone())),
        Source::GkeCluster(s) => Arc::new(gke::Gke::new(s.clone())),
        Source::ContainerApp(s) => Arc::new(container_app::ContainerApp::new(s.clone())),
        Source::ApimUserToken(s) => Arc::new(apim::Apim::new(s.clone())),
    }
}
