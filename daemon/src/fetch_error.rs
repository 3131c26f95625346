//! The error every upstream call ends in: [`FetchError`], one line with the
//! cloud's own words, and its retry class. It sits below both [`crate::http`]
//! (which turns statuses and error bodies into it) and [`crate::providers`]
//! (which return it), so neither has to import the other for it.

use std::time::Duration;

/// How a failure should be treated by retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Network trouble, 5xx, 429, unreadable answers: try again later.
    Transient,
    /// The identity provider or API said no for good (`invalid_grant`,
    /// `invalid_client`, ...): retrying will not help until something
    /// changes.
    Permanent,
    /// Any other 4xx (400, 404, 409, 423, ...) without a known permanent
    /// code: the request was refused, but what upstream objected to may
    /// change (a lock released, a conflict resolved). Not kept forever:
    /// held off with a backoff starting at
    /// [`crate::schedule::REJECTED_BACKOFF_BASE`], then asked again.
    Rejected,
    /// 401/403 from an API: the identity token may be stale or lack rights.
    Unauthorized,
    /// The credential's settings or local files are unusable.
    Config,
    /// A signed-in user's refresh token was refused (`invalid_grant`:
    /// expired, revoked, password changed) or there is none: only a person
    /// running `credcache login NAME` helps. Kept like a permanent error.
    NeedsLogin,
}

/// A failed fetch: one line, no secrets, the cloud's own words.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    pub class: ErrorClass,
    pub message: String,
    pub retry_after: Option<Duration>,
    pub status: Option<u16>,
}

impl FetchError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Transient,
            message: message.into(),
            retry_after: None,
            status: None,
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Config,
            message: message.into(),
            retry_after: None,
            status: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Permanent,
            message: message.into(),
            retry_after: None,
            status: None,
        }
    }

    /// A credential that needs a person to sign in: `why`, then what to run.
    pub fn needs_login(name: &str, why: impl std::fmt::Display) -> Self {
        Self {
            class: ErrorClass::NeedsLogin,
            message: format!("{why}: run `credcache login {name}`"),
            retry_after: None,
            status: None,
        }
    }

    /// Whether retrying cannot help until something changes: the identity
    /// provider or API said no for good.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.class,
            ErrorClass::Permanent | ErrorClass::Unauthorized | ErrorClass::NeedsLogin
        )
    }

    /// Prefixes the message with context: "fetching gcp: ...".
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}
