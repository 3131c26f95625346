//! `method = "workload-identity"`: the client-credentials grant with a
//! federated assertion, as on AKS with workload identity. The assertion is
//! the file `AZURE_FEDERATED_TOKEN_FILE` names, which the platform rotates
//! (hourly on AKS): it is read afresh on every fetch.

use std::path::Path;

use zeroize::Zeroizing;

use crate::http;
use crate::providers::{FetchContext, FetchError, Fetched};

const JWT_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub async fn fetch(
    tenant: &str,
    client_id: &str,
    authority: &str,
    scope: &str,
    env: super::Env<'_>,
    cx: &FetchContext<'_>,
) -> Result<Fetched, FetchError> {
    let assertion = read_assertion(env).await?;
    let form = [
        ("client_id", client_id),
        ("client_assertion_type", JWT_ASSERTION),
        ("client_assertion", assertion.as_str()),
        ("grant_type", "client_credentials"),
        ("scope", scope),
    ];
    super::entra_token(cx, authority, tenant, &form).await
}

/// The current content of `AZURE_FEDERATED_TOKEN_FILE`, trimmed.
/// The variable is looked up before the returned future, which holds no
/// reference to `env` and so is `Send`.
fn read_assertion(
    env: super::Env<'_>,
) -> impl std::future::Future<Output = Result<Zeroizing<String>, FetchError>> + Send + 'static {
    let path = env("AZURE_FEDERATED_TOKEN_FILE");
    async move { read_assertion_at(path).await }
}

async fn read_assertion_at(path: Option<String>) -> Result<Zeroizing<String>, FetchError> {
    let path = path.ok_or_else(|| {
        FetchError::config(
            "AZURE_FEDERATED_TOKEN_FILE is not set in the daemon's environment \
             (set it, then run `credcache daemon restart` from that shell)",
        )
    })?;
    let bytes = crate::files::read(Path::new(&path)).await.map_err(|e| {
        FetchError::config(format!(
            "cannot read AZURE_FEDERATED_TOKEN_FILE {}: {}",
            http::sanitize(&path, 200),
            e
        ))
    })?;
    let text = Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
    drop(Zeroizing::new(bytes));
    let assertion = Zeroizing::new(text.trim().to_owned());
    if assertion.is_empty() {
        return Err(FetchError::config(format!(
            "AZURE_FEDERATED_TOKEN_FILE {} is empty",
            http::sanitize(&path, 200)
        )));
    }
    Ok(assertion)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_file_is_trimmed_and_its_absence_named() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("token");
        let path = file.display().to_string();
        let env = |name: &str| (name == "AZURE_FEDERATED_TOKEN_FILE").then(|| path.clone());
        std::fs::write(&file, "  eyJ.assertion\n").unwrap();
        assert_eq!(
            read_assertion(&env).await.unwrap().as_str(),
            "eyJ.assertion"
        );

        std::fs::write(&file, "\n").unwrap();
        let e = read_assertion(&env).await.unwrap_err();
        assert!(e.message.ends_with("is empty"), "{}", e.message);

        std::fs::remove_file(&file).unwrap();
        let e = read_assertion(&env).await.unwrap_err();
        assert!(
            e.message
                .starts_with(&format!("cannot read AZURE_FEDERATED_TOKEN_FILE {path}: ")),
            "{}",
            e.message
        );

        let e = read_assertion(&|_: &str| None).await.unwrap_err();
        assert!(
            e.message
                .starts_with("AZURE_FEDERATED_TOKEN_FILE is not set")
        );
    }
}
