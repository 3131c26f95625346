//! `method = "client-secret"`: the client-credentials grant with a secret
//! read from an environment variable or a file (never from the config).
//! Under `auto`, the Azure SDK's `EnvironmentCredential`: the secret in
//! `AZURE_CLIENT_SECRET`.

use credcache_shared::config::SecretSource;
use zeroize::Zeroizing;

use crate::providers::{FetchContext, FetchError, Fetched};

pub async fn fetch(
    tenant: &str,
    client_id: &str,
    source: &SecretSource,
    authority: &str,
    scope: &str,
    cx: &FetchContext<'_>,
) -> Result<Fetched, FetchError> {
    let secret = read_secret(source).await?;
    let form = [
        ("client_id", client_id),
        ("client_secret", secret.as_str()),
        ("grant_type", "client_credentials"),
        ("scope", scope),
    ];
    super::entra_token(cx, authority, tenant, &form).await
}

/// Reads the secret afresh on every fetch, so a rotated secret is picked up.
pub async fn read_secret(source: &SecretSource) -> Result<Zeroizing<String>, FetchError> {
    let secret = match source {
        SecretSource::Env(var) => std::env::var(var).map_err(|_| {
            FetchError::config(format!(
                "client_secret_env names {var}, which is not set in the daemon's environment"
            ))
        })?,
        SecretSource::File(path) => {
            let bytes = Zeroizing::new(crate::files::read(path).await.map_err(|e| {
                FetchError::config(format!(
                    "cannot read client_secret_file {}: {e}",
                    path.display()
                ))
            })?);
            String::from_utf8_lossy(&bytes).into_owned()
        }
    };
    let secret = Zeroizing::new(secret.trim().to_owned());
    if secret.is_empty() {
        return Err(FetchError::config("the client secret is empty"));
    }
    Ok(secret)
}
