//! What provider unit tests share: a fake [`Dependencies`] that hands out
//! numbered tokens and records rejections, and a [`FetchContext`] to fetch
//! with. Pair it with `crate::loopback::Peer` for the upstream.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use credcache_shared::Secret;

use super::{AuthToken, BoxFuture, Dependencies, FetchContext, FetchError, Provider, SourceId};
use crate::http::Http;

/// 2030-01-01T00:00:00Z: the `now` of every fetch in these tests.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_893_456_000, 0).unwrap()
}

/// Hands out `{name}-token-{n}`, n counting from 0, or `fail` if set.
#[derive(Default)]
pub struct FakeDeps {
    quota_project: Option<String>,
    fail: Option<FetchError>,
    issued: Mutex<u32>,
    rejected: Mutex<Vec<(String, String)>>,
    /// Refresh tokens kept, by `(name, identity)`.
    pub refresh_tokens: Mutex<std::collections::HashMap<(String, String), String>>,
}

impl FakeDeps {
    /// Tokens that carry `project` as their quota project.
    pub fn with_quota_project(project: &str) -> Self {
        Self {
            quota_project: Some(project.to_owned()),
            ..Self::default()
        }
    }

    /// Every `auth_token` fails with `e`.
    pub fn failing(e: FetchError) -> Self {
        Self {
            fail: Some(e),
            ..Self::default()
        }
    }

    /// `(name, token)` of each `reject`, in order.
    pub fn rejected(&self) -> Vec<(String, String)> {
        self.rejected.lock().unwrap().clone()
    }
}

impl Dependencies for FakeDeps {
    fn auth_token<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<AuthToken, FetchError>> {
        Box::pin(async move {
            if let Some(e) = &self.fail {
                return Err(e.clone());
            }
            let mut issued = self.issued.lock().unwrap();
            let token = Secret::new(format!("{name}-token-{issued}"));
            *issued += 1;
            Ok(AuthToken {
                token,
                quota_project: self.quota_project.clone(),
            })
        })
    }

    /// Like `auth_token`: the source is named by its key, never fetched.
    fn source_token<'a>(
        &'a self,
        id: SourceId<'a>,
        _user: &'a str,
        _source: &'a dyn Provider,
    ) -> BoxFuture<'a, Result<AuthToken, FetchError>> {
        self.auth_token(id.key)
    }

    fn refresh_token<'a>(
        &'a self,
        name: &'a str,
        identity: &'a str,
    ) -> BoxFuture<'a, Option<Secret>> {
        Box::pin(async move {
            let kept = self.refresh_tokens.lock().unwrap();
            kept.get(&(name.to_owned(), identity.to_owned()))
                .map(Secret::new)
        })
    }

    fn keep_refresh_token<'a>(
        &'a self,
        name: &'a str,
        identity: &'a str,
        token: Secret,
    ) -> BoxFuture<'a, Result<(), FetchError>> {
        Box::pin(async move {
            let mut kept = self.refresh_tokens.lock().unwrap();
            kept.retain(|(n, _), _| n != name);
            kept.insert(
                (name.to_owned(), identity.to_owned()),
                token.expose().to_owned(),
            );
            Ok(())
        })
    }

    fn reject(&self, name: &str, token: &Secret) {
        self.rejected
            .lock()
            .unwrap()
            .push((name.to_owned(), token.expose().to_owned()));
    }
}

/// Fake dependencies and a real HTTP client (which only ever reaches a
/// loopback peer in these tests).
pub struct Harness {
    pub deps: FakeDeps,
    pub http: Http,
}

impl Harness {
    pub fn new() -> Self {
        Self::with(FakeDeps::default())
    }

    pub fn with(deps: FakeDeps) -> Self {
        Self {
            deps,
            http: Http::new(Duration::from_secs(5)),
        }
    }

    /// A context fetching credential `test` at [`now`].
    pub fn cx(&self) -> FetchContext<'_> {
        FetchContext {
            name: "test",
            want: None,
            deps: &self.deps,
            http: &self.http,
            now: now(),
            timeout: Duration::from_secs(5),
        }
    }
}
