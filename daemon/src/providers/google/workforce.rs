//! Workforce identity federation sign-in: an
//! `external_account_authorized_user` file (`gcloud auth
//! application-default login --login-config=...`). Its refresh token is
//! sent to `token_url` with the client in HTTP Basic auth; an answer that
//! carries a new refresh token rotates it: the new one is kept sealed in
//! the store (`Dependencies::keep_refresh_token`), on disk before the
//! access token is used, so a daemon restart sends the newest and never the
//! spent one. The file is the user's and is not rewritten. The kept one is
//! filed under the file's own refresh token (its hash): a re-signed file is
//! a new identity, and its token wins.

use std::path::Path;
use std::sync::Mutex;

use credcache_shared::secret::Secret;
use serde::Deserialize;
use serde_json::Value;

use super::parse_key_file;
use crate::http;
use crate::providers::{FetchContext, FetchError, Fetched, token_response};

pub(crate) const FILE_TYPE: &str = "external_account_authorized_user";
const DEFAULT_TOKEN_URL: &str = "https://sts.googleapis.com/v1/oauthtoken";

/// Whether a key file's `type` is `external_account_authorized_user`.
pub(super) fn is_workforce_user(text: &[u8]) -> bool {
    serde_json::from_slice::<Value>(text)
        .is_ok_and(|v| v.get("type").and_then(Value::as_str) == Some(FILE_TYPE))
}

/// An `external_account_authorized_user` file: the fields a refresh
/// uses (`audience`, `token_info_url` and `revoke_url` are not needed).
#[derive(Deserialize)]
pub(crate) struct WorkforceUser {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub refresh_token: Option<String>,
    pub token_url: Option<String>,
    pub quota_project_id: Option<String>,
}

/// The refresh token a rotation left: `(the file's, the current one)`.
/// The current one is used as long as the file still holds the one it
/// replaced.
pub(crate) type Rotated = Mutex<Option<(Secret, Secret)>>;

/// The identity a kept refresh token is filed under: a hash of the
/// file's client and refresh token, so it changes when the file is signed
/// in anew. Never the token itself.
fn identity(client_id: &str, refresh_token: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"workforce\0");
    h.update(client_id.as_bytes());
    h.update(b"\0");
    h.update(refresh_token.as_bytes());
    let digest = h.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// An access token for the file at `path`, read as `text`.
pub(super) async fn access_token(
    cx: &FetchContext<'_>,
    text: &[u8],
    path: &Path,
    token_uri: Option<&str>,
    rotated: &Rotated,
) -> Result<Fetched, FetchError> {
    let file: WorkforceUser = parse_key_file(text, path)?;
    let missing =
        |field: &str| FetchError::config(format!("key file {} has no {field}", path.display()));
    let client_id = file
        .client_id
        .as_deref()
        .ok_or_else(|| missing("client_id"))?;
    let client_secret = file
        .client_secret
        .as_deref()
        .ok_or_else(|| missing("client_secret"))?;
    let from_file = file
        .refresh_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| missing("refresh_token"))?;
    let identity = identity(client_id, from_file);
    let kept = cx.deps.refresh_token(cx.name, &identity).await;
    let refresh_token = match (kept, &*rotated.lock().unwrap_or_else(|e| e.into_inner())) {
        (Some(kept), _) => kept.expose().to_owned(),
        // The store could not keep it (a full disk): memory is next best.
        (None, Some((original, current))) if original.expose() == from_file => {
            current.expose().to_owned()
        }
        _ => from_file.to_owned(),
    };
    let token_url = token_uri
        .or(file.token_url.as_deref())
        .unwrap_or(DEFAULT_TOKEN_URL);
    let request = cx
        .http
        .client()?
        .post(token_url)
        .basic_auth(client_id, Some(client_secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
        ]);
    let answer = http::send("google sts (workforce sign-in)", request).await?;
    if !answer.is_success() {
        return Err(answer.error(cx.now));
    }
    let mut fetched = token_response::parse(&answer, cx.now)?;
    let new = serde_json::from_slice::<Value>(&answer.body)
        .ok()
        .and_then(|v| v.get("refresh_token")?.as_str().map(str::to_owned))
        .filter(|t| !t.is_empty() && *t != refresh_token);
    if let Some(new) = new {
        *rotated.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Secret::new(from_file), Secret::new(new.as_str())));
        match cx
            .deps
            .keep_refresh_token(cx.name, &identity, Secret::new(new))
            .await
        {
            Ok(()) => tracing::info!(
                "credential {}: the workforce refresh token was rotated; kept the new one",
                cx.name
            ),
            Err(e) => tracing::warn!(
                "credential {}: the workforce refresh token was rotated but could not be \
                 stored ({e}); keeping it in memory only",
                cx.name
            ),
        }
    }
    fetched.quota_project = file.quota_project_id.filter(|q| !q.is_empty());
    Ok(fetched)
}
