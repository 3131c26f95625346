//! Users signed in with `credcache login`: an Entra user (`method =
//! "device-code"` or `"browser"`) or a Google user (`oauth_client_file`).
//! The refresh token the sign-in got lives only in the store, sealed
//! (`Dependencies::refresh_token`); every fetch redeems it for an access
//! token, for any scope asked (`mint`), and keeps the rotated one it gets
//! back, on disk before the access token is used, so the spent one is
//! never sent again. A refresh token that is refused (`invalid_grant`:
//! expired, revoked, password changed, Conditional Access) or absent makes
//! the credential need a person ([`FetchError::needs_login`]): nothing here
//! ever prompts or opens a browser. The sign-in flows themselves are in
//! `signed_in/flow.rs`, driven by `credcache login` through the engine.

pub mod flow;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use credcache_shared::Secret;
use credcache_shared::config::{
    AzureMethod, AzureSettings, Credential, DEFAULT_LOGIN_CLIENT_ID, DEFAULT_LOGIN_TENANT, Source,
};
use credcache_shared::protocol::LoginMethod;
use serde::Deserialize;
use serde_json::Value;

use super::{FetchContext, FetchError, Fetched, token_response};
use crate::http;

/// The Google OAuth token endpoint, when the client file names none.
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Google's consent page, when the client file names none.
const GOOGLE_AUTH_URI: &str = "https://accounts.google.com/o/oauth2/auth";

/// Who a login credential signs in with: everything but the secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignIn {
    Entra {
        /// `authority_host`, without a trailing slash.
        authority: String,
        tenant: String,
        client_id: String,
        /// The configured scope (`…/.default`).
        scope: String,
        method: LoginMethod,
    },
    Google {
        /// The downloaded "Desktop app" client file.
        client_file: PathBuf,
        scopes: Vec<String>,
    },
}

/// A Google desktop OAuth client, read from its file when it is used.
#[derive(Debug)]
pub struct GoogleClient {
    pub client_id: String,
    pub client_secret: Secret,
    pub auth_uri: String,
    pub token_uri: String,
}

impl SignIn {
    /// The sign-in of `cred`, or `None` if it is not signed in by a person.
    pub fn of(cred: &Credential) -> Option<SignIn> {
        match &cred.source {
            Source::Azure(a) => SignIn::entra(a),
            Source::Google(g) => Some(SignIn::Google {
                client_file: g.oauth_client_file.clone()?,
                scopes: g.scopes.clone(),
            }),
            _ => None,
        }
    }

    /// The Entra sign-in of an `azure` credential whose method is
    /// `device-code` or `browser`: tenant `organizations` and the Azure
    /// SDKs' public client unless configured.
    pub fn entra(a: &AzureSettings) -> Option<SignIn> {
        let method = match a.method {
            AzureMethod::DeviceCode => LoginMethod::DeviceCode,
            AzureMethod::Browser => LoginMethod::Browser,
            _ => return None,
        };
        Some(SignIn::Entra {
            authority: super::azure::authority_host(a, &super::azure::process_env),
            tenant: a
                .tenant_id
                .clone()
                .unwrap_or_else(|| DEFAULT_LOGIN_TENANT.to_owned()),
            client_id: a
                .client_id
                .clone()
                .unwrap_or_else(|| DEFAULT_LOGIN_CLIENT_ID.to_owned()),
            scope: a.scope.clone(),
            method,
        })
    }

    /// The flow `credcache login` runs when not told which.
    pub fn default_method(&self) -> LoginMethod {
        match self {
            SignIn::Entra { method, .. } => *method,
            SignIn::Google { .. } => LoginMethod::Browser,
        }
    }

    /// What a kept refresh token is filed under: which authority, tenant
    /// and client issued it (a hash, no secret). Changing any of them needs
    /// a new sign-in; changing the scope does not (one Entra refresh token
    /// serves every resource of the tenant).
    pub fn identity(&self, google: Option<&GoogleClient>) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        match self {
            SignIn::Entra {
                authority,
                tenant,
                client_id,
                ..
            } => {
                for part in ["entra", authority, tenant, client_id] {
                    h.update(part.as_bytes());
                    h.update(b"\0");
                }
            }
            SignIn::Google { .. } => {
                let (id, uri) = google
                    .map(|c| (c.client_id.as_str(), c.token_uri.as_str()))
                    .unwrap_or_default();
                for part in ["google", uri, id] {
                    h.update(part.as_bytes());
                    h.update(b"\0");
                }
            }
        }
        h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The `{"installed": {...}}` file the Google console downloads for a
/// "Desktop app" client.
#[derive(Deserialize)]
struct ClientFile {
    installed: Option<Installed>,
}

#[derive(Deserialize)]
struct Installed {
    client_id: Option<String>,
    client_secret: Option<String>,
    auth_uri: Option<String>,
    token_uri: Option<String>,
}

/// Reads the Google desktop client at `path`; a file that is not one is a
/// config error naming what is wrong.
pub async fn google_client(path: &Path) -> Result<GoogleClient, FetchError> {
    let text = crate::files::read(path).await.map_err(|e| {
        FetchError::config(format!(
            "cannot read oauth_client_file {}: {e}",
            path.display()
        ))
    })?;
    parse_google_client(&text, path)
}

fn parse_google_client(text: &[u8], path: &Path) -> Result<GoogleClient, FetchError> {
    let bad = |why: &str| {
        FetchError::config(format!(
            "oauth_client_file {} {why} (download a \"Desktop app\" OAuth client's JSON from the Google Cloud console)",
            path.display()
        ))
    };
    let file: ClientFile = serde_json::from_slice(text).map_err(|_| bad("is not JSON"))?;
    let installed = file
        .installed
        .ok_or_else(|| bad("has no \"installed\" object"))?;
    let client_id = installed
        .client_id
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad("has no installed.client_id"))?;
    let client_secret = installed
        .client_secret
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad("has no installed.client_secret"))?;
    Ok(GoogleClient {
        client_id,
        client_secret: Secret::new(client_secret),
        auth_uri: installed
            .auth_uri
            .unwrap_or_else(|| GOOGLE_AUTH_URI.to_owned()),
        token_uri: installed
            .token_uri
            .unwrap_or_else(|| GOOGLE_TOKEN_URI.to_owned()),
    })
}

/// An Entra access token for `scope` from the kept refresh token.
pub async fn entra(
    cx: &FetchContext<'_>,
    sign_in: &SignIn,
    scope: &str,
) -> Result<Fetched, FetchError> {
    mint(cx, sign_in, Some(scope)).await
}

/// An access token for the signed-in user of `sign_in`: for `scope` if
/// given (any resource of the tenant, for Entra), else the configured one.
/// No refresh token kept, or one refused, is [`FetchError::needs_login`].
pub async fn mint(
    cx: &FetchContext<'_>,
    sign_in: &SignIn,
    scope: Option<&str>,
) -> Result<Fetched, FetchError> {
    let google = match sign_in {
        SignIn::Google { client_file, .. } => Some(google_client(client_file).await?),
        SignIn::Entra { .. } => None,
    };
    let identity = sign_in.identity(google.as_ref());
    // One refresh at a time per credential: its token and its tokens for
    // other scopes share one refresh token, which a refresh may rotate (and
    // the old one then be refused), so the next must start from the kept one.
    let one_at_a_time = refresh_lock(cx.name);
    let _turn = one_at_a_time.lock().await;
    let Some(refresh_token) = cx.deps.refresh_token(cx.name, &identity).await else {
        return Err(FetchError::needs_login(cx.name, "not signed in"));
    };
    let (what, request) = match (sign_in, &google) {
        (
            SignIn::Entra {
                authority,
                tenant,
                client_id,
                scope: configured,
                ..
            },
            _,
        ) => {
            let scope = format!("{} offline_access", scope.unwrap_or(configured));
            let request = cx
                .http
                .client()?
                .post(format!("{authority}/{tenant}/oauth2/v2.0/token"))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id.as_str()),
                    ("refresh_token", refresh_token.expose()),
                    ("scope", scope.as_str()),
                ]);
            ("entra token endpoint (signed-in user)", request)
        }
        (SignIn::Google { scopes, .. }, Some(client)) => {
            let scope = scope.map_or_else(|| scopes.join(" "), str::to_owned);
            let request = cx.http.client()?.post(&client.token_uri).form(&[
                ("grant_type", "refresh_token"),
                ("client_id", client.client_id.as_str()),
                ("client_secret", client.client_secret.expose()),
                ("refresh_token", refresh_token.expose()),
                ("scope", scope.as_str()),
            ]);
            ("google token endpoint (signed-in user)", request)
        }
        (SignIn::Google { .. }, None) => unreachable!("read above"),
    };
    let answer = http::send(what, request).await?;
    if !answer.is_success() {
        let e = answer.error(cx.now);
        if oauth_error_code(&answer.body).as_deref() == Some("invalid_grant") {
            return Err(FetchError::needs_login(cx.name, e.message));
        }
        return Err(e);
    }
    let fetched = token_response::parse(&answer, cx.now)?;
    if let Some(new) = rotated(&answer.body, &refresh_token) {
        // On disk before the new access token is handed out: if the
        // daemon stops after this, it restarts with the newest.
        if let Err(e) = cx.deps.keep_refresh_token(cx.name, &identity, new).await {
            tracing::warn!(
                credential = cx.name,
                "the refresh token was rotated but the new one could not be kept: {e}"
            );
        }
    }
    Ok(fetched)
}

/// The lock [`mint`] holds while it uses `name`'s refresh token. One per
/// signed-in credential name, for the daemon's life: a handful of entries.
fn refresh_lock(name: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
        LazyLock::new(Mutex::default);
    let mut locks = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    Arc::clone(locks.entry(name.to_owned()).or_default())
}

/// The OAuth `error` code of an error body.
pub(crate) fn oauth_error_code(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("error")?.as_str().map(str::to_owned)
}

/// The refresh token an answer carries, if it is a new one.
pub(crate) fn rotated(body: &[u8], old: &Secret) -> Option<Secret> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let new = v.get("refresh_token")?.as_str()?;
    (!new.is_empty() && new != old.expose()).then(|| Secret::new(new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Dependencies as _;

    #[test]
    fn a_desktop_client_file_is_read_and_a_wrong_one_named() {
        let path = Path::new("client.json");
        let ok = br#"{"installed":{"client_id":"c.apps","client_secret":"s3","token_uri":"http://127.0.0.1:1/token","redirect_uris":["http://localhost"]}}"#;
        let client = parse_google_client(ok, path).unwrap();
        assert_eq!(client.client_id, "c.apps");
        assert_eq!(client.token_uri, "http://127.0.0.1:1/token");
        assert_eq!(client.auth_uri, GOOGLE_AUTH_URI);
        let web = br#"{"web":{"client_id":"c","client_secret":"s"}}"#;
        let e = parse_google_client(web, path).unwrap_err();
        assert!(e.message.contains("no \"installed\" object"), "{e}");
        let e = parse_google_client(b"not json", path).unwrap_err();
        assert!(e.message.contains("is not JSON"), "{e}");
        let e = parse_google_client(br#"{"installed":{"client_id":"c"}}"#, path).unwrap_err();
        assert!(e.message.contains("client_secret"), "{e}");
    }

    #[test]
    fn only_a_new_refresh_token_is_a_rotation() {
        let old = Secret::new("rt-1");
        assert!(rotated(br#"{"refresh_token":"rt-1"}"#, &old).is_none());
        assert!(rotated(br#"{"refresh_token":""}"#, &old).is_none());
        assert!(rotated(br#"{"access_token":"a"}"#, &old).is_none());
        assert_eq!(
            rotated(br#"{"refresh_token":"rt-2"}"#, &old)
                .unwrap()
                .expose(),
            "rt-2"
        );
    }

    #[tokio::test]
    async fn a_refresh_keeps_the_rotated_token_and_invalid_grant_needs_login() {
        use crate::fetch_error::ErrorClass;
        use crate::loopback::{Peer, Reply};
        use crate::providers::testing::Harness;
        let peer = Peer::start(vec![
            Reply::json(
                200,
                r#"{"token_type":"Bearer","expires_in":3600,"access_token":"eyJ.a","refresh_token":"rt-2"}"#,
            ),
            Reply::json(
                400,
                r#"{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to inactivity."}"#,
            ),
        ])
        .await;
        let sign_in = SignIn::Entra {
            authority: peer.url(),
            tenant: "organizations".into(),
            client_id: DEFAULT_LOGIN_CLIENT_ID.into(),
            scope: "https://management.azure.com/.default".into(),
            method: LoginMethod::DeviceCode,
        };
        let h = Harness::new();
        // Never signed in: needs login, nothing sent.
        let e = mint(&h.cx(), &sign_in, None).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::NeedsLogin);
        assert_eq!(e.message, "not signed in: run `credcache login test`");
        assert!(peer.requests().is_empty());
        let identity = sign_in.identity(None);
        h.deps
            .keep_refresh_token("test", &identity, Secret::new("rt-1"))
            .await
            .unwrap();
        // Another scope, as `get --scope` will ask.
        let got = mint(&h.cx(), &sign_in, Some("https://vault.azure.net/.default"))
            .await
            .unwrap();
        assert_eq!(got.token.expose(), "eyJ.a");
        let sent = &peer.requests()[0];
        assert_eq!(sent.path(), "/organizations/oauth2/v2.0/token");
        assert_eq!(sent.form("refresh_token").as_deref(), Some("rt-1"));
        assert_eq!(
            sent.form("scope").as_deref(),
            Some("https://vault.azure.net/.default offline_access")
        );
        // The rotated one is kept, and sent next.
        let kept = h.deps.refresh_token("test", &identity).await.unwrap();
        assert_eq!(kept.expose(), "rt-2");
        let e = mint(&h.cx(), &sign_in, None).await.unwrap_err();
        assert_eq!(
            peer.requests()[1].form("refresh_token").as_deref(),
            Some("rt-2")
        );
        assert_eq!(e.class, ErrorClass::NeedsLogin);
        assert!(e.message.contains("AADSTS700082"), "{e}");
        assert!(e.message.ends_with("run `credcache login test`"), "{e}");
        assert!(!e.message.contains("rt-2"), "{e}");
    }

    #[test]
    fn the_identity_depends_on_tenant_and_client_not_scope() {
        let entra = |tenant: &str, scope: &str| SignIn::Entra {
            authority: "https://login.microsoftonline.com".into(),
            tenant: tenant.into(),
            client_id: DEFAULT_LOGIN_CLIENT_ID.into(),
            scope: scope.into(),
            method: LoginMethod::DeviceCode,
        };
        assert_eq!(
            entra("organizations", "a/.default").identity(None),
            entra("organizations", "b/.default").identity(None)
        );
        assert_ne!(
            entra("organizations", "a/.default").identity(None),
            entra("contoso.com", "a/.default").identity(None)
        );
    }
}
