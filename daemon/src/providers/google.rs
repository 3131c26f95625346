//! `kind = "google"`: a Google OAuth access token from a service-account
//! key (RS256 JWT-bearer grant), an authorized-user file (refresh-token
//! grant), or the metadata server; with no `key_file`, in the ADC order:
//! `GOOGLE_APPLICATION_CREDENTIALS`, the gcloud ADC file, the metadata
//! server. With `impersonate_service_account`, or an ADC file of type
//! `impersonated_service_account`, that token is only the source of the
//! target service account's (`impersonation.rs`).

pub(crate) mod executable;
pub(crate) mod external;
mod id_token;
pub(crate) mod impersonation;
mod workforce;

pub use id_token::GoogleIdToken;

use std::path::{Path, PathBuf};

use credcache_shared::config::{GoogleIdTokenSettings, GoogleSettings};
use serde::{Deserialize, Serialize};

use super::{BoxFuture, FetchContext, FetchError, Fetched, Provider, token_response};
use crate::http;

const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

pub struct Google {
    settings: GoogleSettings,
    /// A workforce user's rotated refresh token (`workforce.rs`), shared
    /// with the scoped fetches of the same credential.
    rotated: std::sync::Arc<workforce::Rotated>,
}

impl Google {
    pub fn new(settings: GoogleSettings) -> Self {
        Self {
            settings,
            rotated: Default::default(),
        }
    }
}

impl Provider for Google {
    fn fetch<'a>(&'a self, cx: &'a FetchContext<'a>) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        Box::pin(async move {
            if let Some(audience) = cx.audience() {
                // The SDK endpoint's `identity`: an ID token of this
                // credential's identity, as a `google-id-token` makes it.
                let settings = GoogleIdTokenSettings {
                    auth: cx.name.to_owned(),
                    audience: audience.to_owned(),
                    include_email: false,
                };
                let id = GoogleIdToken::new(settings, Some(self.settings.clone()));
                return id.fetch(cx).await;
            }
            if let Some(scopes) = cx.scopes() {
                let scoped = Google {
                    settings: GoogleSettings {
                        scopes: scopes.to_vec(),
                        ..self.settings.clone()
                    },
                    rotated: self.rotated.clone(),
                };
                return scoped.fetch_configured(cx).await;
            }
            self.fetch_configured(cx).await
        })
    }
}

impl Google {
    /// A token for `self.settings.scopes`.
    async fn fetch_configured(&self, cx: &FetchContext<'_>) -> Result<Fetched, FetchError> {
        if let Some(client_file) = &self.settings.oauth_client_file {
            let sign_in = super::signed_in::SignIn::Google {
                client_file: client_file.clone(),
                scopes: self.settings.scopes.clone(),
            };
            return super::signed_in::mint(cx, &sign_in, None).await;
        }
        if self.settings.impersonate_service_account.is_some() {
            return impersonation::access_token(cx, &self.settings).await;
        }
        match self.identity_file()? {
            Some(path) => self.fetch_with_file(cx, &path).await,
            None => self.fetch_from_metadata(cx).await,
        }
    }
}

/// The ADC file to use when no `key_file` is set: `GOOGLE_APPLICATION_CREDENTIALS`
/// if set (even if missing: that is an error, reported at fetch), else the
/// gcloud ADC file if it exists.
pub fn adc_file() -> Option<PathBuf> {
    credcache_shared::paths::google_adc_file()
}

/// The parts of a Google credentials JSON file we use; `type` decides which.
#[derive(Deserialize)]
pub(crate) struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    quota_project_id: Option<String>,
}

impl KeyFile {
    /// A service-account key's `client_email` and `private_key`, or a
    /// config error naming the field the file at `path` lacks.
    pub(crate) fn signer(&self, path: &Path) -> Result<(&str, &str), FetchError> {
        let missing =
            |field: &str| FetchError::config(format!("key file {} has no {field}", path.display()));
        let email = self
            .client_email
            .as_deref()
            .ok_or_else(|| missing("client_email"))?;
        let pem = self
            .private_key
            .as_deref()
            .ok_or_else(|| missing("private_key"))?;
        Ok((email, pem))
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: String,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

impl Google {
    fn identity_file(&self) -> Result<Option<PathBuf>, FetchError> {
        if let Some(path) = &self.settings.key_file {
            return Ok(Some(path.clone()));
        }
        let adc = adc_file();
        if let Some(p) = &adc
            && !p.exists()
            && std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").is_some()
        {
            return Err(FetchError::config(format!(
                "GOOGLE_APPLICATION_CREDENTIALS names {}, which does not exist",
                p.display()
            )));
        }
        Ok(adc)
    }

    fn token_uri<'a>(&'a self, from_file: Option<&'a str>) -> &'a str {
        self.settings
            .token_uri
            .as_deref()
            .or(from_file)
            .unwrap_or(DEFAULT_TOKEN_URI)
    }

    async fn fetch_with_file(
        &self,
        cx: &FetchContext<'_>,
        path: &Path,
    ) -> Result<Fetched, FetchError> {
        let text = read_key_file(path).await?;
        if impersonation::is_impersonated(&text) {
            return impersonation::access_token_from_file(cx, &self.settings, path).await;
        }
        if workforce::is_workforce_user(&text) {
            self.no_lifetime(&format!(
                "{} is an external_account_authorized_user",
                path.display()
            ))?;
        }
        if workforce::is_workforce_user(&text) {
            return workforce::access_token(
                cx,
                &text,
                path,
                self.settings.token_uri.as_deref(),
                &self.rotated,
            )
            .await;
        }
        if external::is_external(&text) {
            let file = external::ExternalFile::parse(&text, path)?;
            if file.service_account_impersonation_url.is_some() {
                return impersonation::access_token_from_external(cx, &self.settings, path).await;
            }
            self.no_lifetime(&format!(
                "{} is an external_account without service_account_impersonation_url",
                path.display()
            ))?;
            return external::sts_token(cx, &self.settings, path, &self.settings.scopes).await;
        }
        let key: KeyFile = parse_key_file(&text, path)?;
        self.no_lifetime(&format!(
            "{} is of type {:?}",
            path.display(),
            http::sanitize(key.kind.as_deref().unwrap_or(""), 40)
        ))?;
        self.fetch_with_key(cx, key, path).await
    }

    /// A config error if `lifetime` is set where nothing impersonates
    /// (`Config::load` catches a `key_file`; this, the ADC order), `what`
    /// saying what the identity is.
    fn no_lifetime(&self, what: &str) -> Result<(), FetchError> {
        if self.settings.lifetime.is_none() || self.settings.impersonate_service_account.is_some() {
            return Ok(());
        }
        Err(FetchError::config(format!(
            "lifetime applies only with impersonate_service_account or an impersonated_service_account key file, and {what}"
        )))
    }

    /// A token from a `service_account` or `authorized_user` key read from
    /// `path` (or from an impersonated file's `source_credentials`).
    async fn fetch_with_key(
        &self,
        cx: &FetchContext<'_>,
        key: KeyFile,
        path: &Path,
    ) -> Result<Fetched, FetchError> {
        let missing =
            |field: &str| FetchError::config(format!("key file {} has no {field}", path.display()));
        match key.kind.as_deref() {
            Some("service_account") => {
                let (email, pem) = key.signer(path)?;
                let token_uri = self.token_uri(key.token_uri.as_deref());
                let assertion = self.sign_assertion(
                    cx,
                    email,
                    pem,
                    key.private_key_id.as_deref(),
                    token_uri,
                    path,
                )?;
                let request = cx.http.client()?.post(token_uri).form(&[
                    ("grant_type", JWT_BEARER),
                    ("assertion", assertion.as_str()),
                ]);
                token_call(cx, request).await
            }
            Some("authorized_user") => {
                let client_id = key
                    .client_id
                    .as_deref()
                    .ok_or_else(|| missing("client_id"))?;
                let client_secret = key
                    .client_secret
                    .as_deref()
                    .ok_or_else(|| missing("client_secret"))?;
                let refresh_token = key
                    .refresh_token
                    .as_deref()
                    .ok_or_else(|| missing("refresh_token"))?;
                let token_uri = self.token_uri(key.token_uri.as_deref());
                let request = cx.http.client()?.post(token_uri).form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id),
                    ("client_secret", client_secret),
                    ("refresh_token", refresh_token),
                ]);
                let mut fetched = token_call(cx, request).await?;
                fetched.quota_project = key.quota_project_id.filter(|q| !q.is_empty());
                Ok(fetched)
            }
            Some(other) => Err(FetchError::config(format!(
                "key file {} has type {:?}; credcache reads \"service_account\", \"authorized_user\" and \"impersonated_service_account\"",
                path.display(),
                http::sanitize(other, 40)
            ))),
            None => Err(missing("type")),
        }
    }

    fn sign_assertion(
        &self,
        cx: &FetchContext<'_>,
        email: &str,
        pem: &str,
        kid: Option<&str>,
        aud: &str,
        path: &Path,
    ) -> Result<String, FetchError> {
        let iat = cx.now.timestamp();
        let claims = Claims {
            iss: email,
            scope: self.settings.scopes.join(" "),
            aud,
            iat,
            exp: iat + 3600,
        };
        sign(&claims, pem, kid, path)
    }

    async fn fetch_from_metadata(&self, cx: &FetchContext<'_>) -> Result<Fetched, FetchError> {
        self.no_lifetime("the identity is the metadata server's")?;
        let host = self.metadata_host();
        let url =
            format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token");
        let request = cx
            .http
            .direct()?
            .get(url)
            .query(&[("scopes", self.settings.scopes.join(","))])
            .header("Metadata-Flavor", "Google");
        let answer = http::send("google metadata server", request).await.map_err(|e| {
            FetchError { message: format!("{} (no key_file, no GOOGLE_APPLICATION_CREDENTIALS, no gcloud ADC file, so the metadata server was asked)", e.message), ..e }
        })?;
        if !answer.is_success() {
            return Err(answer.error(cx.now));
        }
        token_response::parse(&answer, cx.now)
    }
}

/// `claims` as an RS256 JWT signed with a key file's `private_key`.
fn sign(
    claims: &impl Serialize,
    pem: &str,
    kid: Option<&str>,
    path: &Path,
) -> Result<String, FetchError> {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
        FetchError::config(format!(
            "key file {}: private_key is not a PEM RSA key ({e})",
            path.display()
        ))
    })?;
    jsonwebtoken::encode(&header, claims, &key).map_err(|e| {
        FetchError::config(format!(
            "key file {}: cannot sign with private_key ({e})",
            path.display()
        ))
    })
}

/// A key file's bytes, or a config error naming it.
async fn read_key_file(path: &Path) -> Result<Vec<u8>, FetchError> {
    crate::files::read(path)
        .await
        .map_err(|e| FetchError::config(format!("cannot read key file {}: {e}", path.display())))
}

fn parse_key_file<T: serde::de::DeserializeOwned>(
    text: &[u8],
    path: &Path,
) -> Result<T, FetchError> {
    serde_json::from_slice(text).map_err(|e| {
        FetchError::config(format!(
            "key file {} is not valid JSON: {}",
            path.display(),
            http::sanitize(&e.to_string(), 100)
        ))
    })
}

async fn token_call(
    cx: &FetchContext<'_>,
    request: reqwest::RequestBuilder,
) -> Result<Fetched, FetchError> {
    let answer = http::send("google token endpoint", request).await?;
    if !answer.is_success() {
        return Err(answer.error(cx.now));
    }
    token_response::parse(&answer, cx.now)
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use base64::Engine as _;
    use credcache_shared::config::GoogleSettings;

    use super::*;
    use crate::fetch_error::ErrorClass;
    use crate::loopback::{Peer, Reply};
    use crate::providers::testing::Harness;

    const TOKEN: &str = r#"{"access_token":"ya29.fresh","expires_in":3599,"token_type":"Bearer"}"#;

    fn settings(key_file: Option<PathBuf>, metadata_host: Option<String>) -> GoogleSettings {
        GoogleSettings {
            key_file,
            scopes: vec!["https://www.googleapis.com/auth/cloud-platform".into()],
            token_uri: None,
            metadata_host,
            impersonate_service_account: None,
            delegates: Vec::new(),
            lifetime: None,
            iam_endpoint: None,
            oauth_client_file: None,
        }
    }

    /// Writes `file` as a key file into `dir`.
    fn key_file(dir: &tempfile::TempDir, file: serde_json::Value) -> PathBuf {
        let path = dir.path().join("key.json");
        std::fs::write(&path, file.to_string()).unwrap();
        path
    }

    fn rsa_pem() -> String {
        let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let der = base64::engine::general_purpose::STANDARD.encode(key.as_der().unwrap().as_ref());
        let lines: Vec<&str> = der
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }

    #[tokio::test]
    async fn a_service_account_key_signs_a_jwt_bearer_grant() {
        let peer = Peer::start(vec![Reply::json(200, TOKEN)]).await;
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(
            &dir,
            serde_json::json!({
                "type": "service_account",
                "client_email": "sa@p.iam.gserviceaccount.com",
                "private_key": rsa_pem(),
                "private_key_id": "kid1",
                "token_uri": format!("{}/token", peer.url()),
            }),
        );
        let h = Harness::new();
        let f = Google::new(settings(Some(path), None))
            .fetch(&h.cx())
            .await
            .unwrap();
        assert_eq!(f.token.expose(), "ya29.fresh");
        assert_eq!(f.expires_at, h.cx().now + chrono::Duration::seconds(3599));
        let r = &peer.requests()[0];
        assert_eq!((r.method.as_str(), r.path()), ("POST", "/token"));
        assert_eq!(r.form("grant_type").as_deref(), Some(JWT_BEARER));
        let assertion = r.form("assertion").unwrap();
        assert_eq!(assertion.split('.').count(), 3, "a JWT: {assertion}");
    }

    #[tokio::test]
    async fn a_refused_grant_is_a_permanent_error() {
        let peer = Peer::start(vec![Reply::json(
            400,
            r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
        )])
        .await;
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(
            &dir,
            serde_json::json!({
                "type": "service_account",
                "client_email": "sa@p.iam.gserviceaccount.com",
                "private_key": rsa_pem(),
            }),
        );
        let mut s = settings(Some(path), None);
        s.token_uri = Some(format!("{}/token", peer.url()));
        let h = Harness::new();
        let e = Google::new(s).fetch(&h.cx()).await.unwrap_err();
        assert_eq!((e.class, e.status), (ErrorClass::Permanent, Some(400)));
        assert!(
            e.message.contains("Invalid JWT Signature."),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn an_authorized_user_file_refreshes_and_keeps_its_quota_project() {
        let peer = Peer::start(vec![Reply::json(200, TOKEN)]).await;
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(
            &dir,
            serde_json::json!({
                "type": "authorized_user",
                "client_id": "cid",
                "client_secret": "csecret",
                "refresh_token": "1//refresh",
                "quota_project_id": "billing-project",
            }),
        );
        let mut s = settings(Some(path), None);
        s.token_uri = Some(format!("{}/token", peer.url()));
        let h = Harness::new();
        let f = Google::new(s).fetch(&h.cx()).await.unwrap();
        assert_eq!(f.token.expose(), "ya29.fresh");
        assert_eq!(f.quota_project.as_deref(), Some("billing-project"));
        let r = &peer.requests()[0];
        assert_eq!(r.form("grant_type").as_deref(), Some("refresh_token"));
        assert_eq!(r.form("refresh_token").as_deref(), Some("1//refresh"));
    }

    #[tokio::test]
    async fn a_workforce_user_sends_basic_auth_and_the_rotated_refresh_token_until_the_file_changes()
     {
        let rotating = |rt: &str| {
            Reply::json(
                200,
                format!(r#"{{"access_token":"ya29.wf","expires_in":3600,"refresh_token":"{rt}"}}"#),
            )
        };
        let peer = Peer::start(vec![rotating("rt-2"), rotating("rt-3"), rotating("rt-x")]).await;
        let dir = tempfile::tempdir().unwrap();
        let user = |rt: &str| {
            serde_json::json!({
                "type": "external_account_authorized_user",
                "audience": "//iam.googleapis.com/locations/global/workforcePools/p/providers/q",
                "client_id": "cid", "client_secret": "csecret", "refresh_token": rt,
                "token_url": format!("{}/v1/oauthtoken", peer.url()),
            })
        };
        let path = key_file(&dir, user("rt-1"));
        let google = Google::new(settings(Some(path.clone()), None));
        let h = Harness::new();
        for _ in 0..2 {
            assert_eq!(
                google.fetch(&h.cx()).await.unwrap().token.expose(),
                "ya29.wf"
            );
        }
        // The user signs in again: the file's new token is used.
        std::fs::write(&path, user("rt-new").to_string()).unwrap();
        google.fetch(&h.cx()).await.unwrap();
        let sent: Vec<_> = peer
            .requests()
            .iter()
            .map(|r| r.form("refresh_token"))
            .collect();
        assert_eq!(
            sent,
            [
                Some("rt-1".into()),
                Some("rt-2".into()),
                Some("rt-new".into())
            ]
        );
        let r = &peer.requests()[0];
        assert_eq!(r.path(), "/v1/oauthtoken");
        assert_eq!(r.form("grant_type").as_deref(), Some("refresh_token"));
        assert_eq!(
            r.form("client_secret"),
            None,
            "the secret goes in Basic auth only"
        );
        assert_eq!(r.header("authorization"), Some("Basic Y2lkOmNzZWNyZXQ="));
    }

    #[tokio::test]
    async fn an_authorized_user_file_without_a_refresh_token_asks_nobody() {
        let peer = Peer::start(vec![]).await;
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(
            &dir,
            serde_json::json!({"type": "authorized_user", "client_id": "c", "client_secret": "s"}),
        );
        let mut s = settings(Some(path.clone()), None);
        s.token_uri = Some(format!("{}/token", peer.url()));
        let h = Harness::new();
        let e = Google::new(s).fetch(&h.cx()).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Config);
        assert_eq!(
            e.message,
            format!("key file {} has no refresh_token", path.display())
        );
        assert!(peer.requests().is_empty());
    }

    #[tokio::test]
    async fn the_metadata_server_is_asked_with_its_header_and_scopes() {
        let peer = Peer::start(vec![Reply::json(200, TOKEN)]).await;
        let h = Harness::new();
        let google = Google::new(settings(None, Some(peer.host())));
        let f = google.fetch_from_metadata(&h.cx()).await.unwrap();
        assert_eq!(f.token.expose(), "ya29.fresh");
        let r = &peer.requests()[0];
        assert_eq!(
            r.path(),
            "/computeMetadata/v1/instance/service-accounts/default/token"
        );
        assert_eq!(r.header("metadata-flavor"), Some("Google"));
        assert_eq!(
            r.query("scopes").as_deref(),
            Some("https://www.googleapis.com/auth/cloud-platform")
        );
    }

    #[tokio::test]
    async fn a_metadata_server_error_keeps_its_status() {
        let peer = Peer::start(vec![Reply::json(503, "{}")]).await;
        let h = Harness::new();
        let google = Google::new(settings(None, Some(peer.host())));
        let e = google.fetch_from_metadata(&h.cx()).await.unwrap_err();
        assert_eq!((e.class, e.status), (ErrorClass::Transient, Some(503)));
    }

    /// `lifetime` without impersonation is refused before anything is
    /// sent, wherever the ADC order lands.
    #[tokio::test]
    async fn a_lifetime_with_nothing_to_impersonate_is_a_config_error() {
        let peer = Peer::start(vec![Reply::json(200, TOKEN)]).await;
        let h = Harness::new();
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(None, Some(peer.host()));
        s.lifetime = Some(std::time::Duration::from_secs(7200));
        let e = Google::new(s.clone())
            .fetch_from_metadata(&h.cx())
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::Config);
        assert_eq!(
            e.message,
            "lifetime applies only with impersonate_service_account or an impersonated_service_account key file, and the identity is the metadata server's"
        );
        let path = key_file(
            &dir,
            serde_json::json!({"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r"}),
        );
        let e = Google::new(s)
            .fetch_with_file(&h.cx(), &path)
            .await
            .unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "lifetime applies only with impersonate_service_account or an impersonated_service_account key file, and {} is of type \"authorized_user\"",
                path.display()
            )
        );
        assert!(peer.requests().is_empty());
    }
}
