//! `method = "client-secret"`: the client-credentials grant with a secret
//! read from an environment variable or a file (never from the config).

use credcache_shared::config::{AzureSettings, SecretSource};
use zeroize::Zeroizing;

use crate::http;
use crate::providers::{FetchContext, FetchError, Fetched, token_response};

pub async fn fetch(
    settings: &AzureSettings,
    authority: &str,
    cx: &FetchContext<'_>,
) -> Result<Fetched, FetchError> {
    let tenant = settings
        .tenant_id
        .as_deref()
        .ok_or_else(|| FetchError::config("tenant_id is not set"))?;
    let client_id = settings
        .client_id
        .as_deref()
        .ok_or_else(|| FetchError::config("client_id is not set"))?;
    let source = settings
        .client_secret
        .as_ref()
        .ok_or_else(|| FetchError::config("client_secret_env or client_secret_file is not set"))?;
    let secret = read_secret(source)?;
    let url = format!("{authority}/{tenant}/oauth2/v2.0/token");
    let request = cx.http.client().post(url).form(&[
        ("client_id", client_id),
        ("client_secret", secret.as_str()),
        ("grant_type", "client_credentials"),
        ("scope", settings.scope.as_str()),
    ]);
    let answer = http::send("entra token endpoint", request).await?;
    if !answer.is_success() {
        return Err(answer.error(cx.now));
    }
    token_response::parse(&answer, cx.now)
}

/// Reads the secret afresh on every fetch, so a rotated secret is picked up.
pub fn read_secret(source: &SecretSource) -> Result<Zeroizing<String>, FetchError> {
    let secret = match source {
        SecretSource::Env(var) => std::env::var(var).map_err(|_| {
            FetchError::config(format!(
                "client_secret_env names {var}, which is not set in the daemon's environment"
            ))
        })?,
        SecretSource::File(path) => std::fs::read_to_string(path).map_err(|e| {
            FetchError::config(format!(
                "cannot read client_secret_file {}: {e}",
                path.display()
            ))
        })?,
    };
    let secret = Zeroizing::new(secret.trim().to_owned());
    if secret.is_empty() {
        return Err(FetchError::config("the client secret is empty"));
    }
    Ok(secret)
}
