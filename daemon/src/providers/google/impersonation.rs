//! Service-account impersonation: the IAM Credentials API's
//! `generateAccessToken` (and `generateIdToken`, for `google-id-token`),
//! called for the target service account with the token of a source
//! identity as bearer, and the `impersonated_service_account` ADC file
//! (`gcloud auth application-default login --impersonate-service-account`).
//!
//! The source token is cached apart from the credential
//! (`Dependencies::source_token`), keyed by the source, so every
//! credential impersonating through one key file shares it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use credcache_shared::Secret;
use credcache_shared::config::{DEFAULT_GOOGLE_SCOPE, GoogleSettings, service_account_email};
use credcache_shared::time::parse_rfc3339;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Google, KeyFile, parse_key_file, read_key_file};
use crate::http::{self, Answer};
use crate::providers::{
    AuthToken, BoxFuture, FetchContext, FetchError, Fetched, Provider, SourceId, authorized,
    within_lifetime,
};

pub const DEFAULT_IAM_ENDPOINT: &str = "https://iamcredentials.googleapis.com";
const WHAT: &str = "iamcredentials";
const FILE_TYPE: &str = "impersonated_service_account";
const ONE_HOUR: Duration = Duration::from_secs(3600);
const LIFETIME_POLICY: &str = "constraints/iam.allowServiceAccountCredentialLifetimeExtension";

/// Whether a key file's `type` is `impersonated_service_account`.
pub(super) fn is_impersonated(text: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct TypeOnly {
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    serde_json::from_slice::<TypeOnly>(text).is_ok_and(|t| t.kind.as_deref() == Some(FILE_TYPE))
}

/// An `impersonated_service_account` ADC file.
#[derive(Debug)]
pub(crate) struct ImpersonatedFile {
    /// The IAM Credentials endpoint of `service_account_impersonation_url`.
    pub base: String,
    pub target: String,
    /// Each as `projects/-/serviceAccounts/EMAIL`.
    pub delegates: Vec<String>,
    /// `source_credentials`: a `service_account` or `authorized_user` key.
    pub source: Value,
    pub quota_project: Option<String>,
}

#[derive(Deserialize)]
struct RawFile {
    service_account_impersonation_url: Option<String>,
    #[serde(default)]
    delegates: Vec<String>,
    source_credentials: Option<Value>,
    quota_project_id: Option<String>,
}

impl ImpersonatedFile {
    /// Reads the file's fields; the error names the file and the field,
    /// never a value from `source_credentials`.
    pub fn parse(text: &[u8], path: &Path) -> Result<Self, FetchError> {
        let bad = |why: String| FetchError::config(format!("key file {}: {why}", path.display()));
        let raw: RawFile = parse_key_file(text, path)?;
        let url = raw
            .service_account_impersonation_url
            .ok_or_else(|| bad("has no service_account_impersonation_url".into()))?;
        let (base, target) = split_impersonation_url(&url).ok_or_else(|| {
            bad(format!(
                "service_account_impersonation_url {:?} is not https://HOST/v1/projects/-/serviceAccounts/EMAIL:generateAccessToken",
                http::sanitize(&url, 200)
            ))
        })?;
        let delegates = raw
            .delegates
            .iter()
            .map(|d| {
                service_account_email(d)
                    .map(|e| format!("projects/-/serviceAccounts/{e}"))
                    .ok_or_else(|| {
                        bad(format!(
                            "delegate {:?} is not a service account",
                            http::sanitize(d, 100)
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        let source = raw
            .source_credentials
            .filter(Value::is_object)
            .ok_or_else(|| bad("has no source_credentials object".into()))?;
        match source.get("type").and_then(Value::as_str) {
            Some("service_account" | "authorized_user") => {}
            other => {
                return Err(bad(format!(
                    "source_credentials has type {:?}; credcache reads \"service_account\" and \"authorized_user\" there",
                    http::sanitize(other.unwrap_or(""), 40)
                )));
            }
        }
        Ok(Self {
            base,
            target,
            delegates,
            source,
            quota_project: raw.quota_project_id.filter(|q| !q.is_empty()),
        })
    }
}

/// `(https://HOST[/prefix], EMAIL)` from
/// `https://HOST[/prefix]/v1/projects/-/serviceAccounts/EMAIL:generateAccessToken`;
/// `None` for any other shape, or plain `http` to a host not loopback.
pub(crate) fn split_impersonation_url(url: &str) -> Option<(String, String)> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let secure = parsed.scheme() == "https"
        || (parsed.scheme() == "http"
            && parsed
                .host()
                .is_some_and(|h| credcache_shared::host_pattern::is_loopback(&h)));
    if !secure || parsed.query().is_some() {
        return None;
    }
    let (base, rest) = url.split_once("/v1/projects/-/serviceAccounts/")?;
    let email = rest.strip_suffix(":generateAccessToken")?;
    let email = service_account_email(email)?;
    Some((base.trim_end_matches('/').to_owned(), email.to_owned()))
}

/// Whom to impersonate, where, and through which source.
pub(crate) struct Plan {
    base: String,
    target: String,
    delegates: Vec<String>,
    lifetime: Duration,
    scopes: Vec<String>,
    quota_project: Option<String>,
    source_key: String,
    /// What the source is, for `status`.
    source_label: String,
    source: Source,
}

/// What fetches the source token.
enum Source {
    /// The credential's own settings without impersonation: a key file,
    /// authorized user, metadata server or ADC order.
    Settings(Google),
    /// The `source_credentials` of the impersonated ADC file at this path.
    File { path: PathBuf, google: Google },
    /// The STS token of the `external_account` file at this path.
    External {
        path: PathBuf,
        settings: GoogleSettings,
    },
}

impl Provider for Source {
    fn fetch<'a>(&'a self, cx: &'a FetchContext<'a>) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        Box::pin(async move {
            match self {
                Self::Settings(google) => google.fetch(cx).await,
                Self::File { path, google } => {
                    let file = ImpersonatedFile::parse(&read_key_file(path).await?, path)?;
                    let key: KeyFile = serde_json::from_value(file.source).map_err(|_| {
                        FetchError::config(format!(
                            "key file {}: source_credentials is not a key",
                            path.display()
                        ))
                    })?;
                    google.fetch_with_key(cx, key, path).await
                }
                Self::External { path, settings } => {
                    let scopes = super::external::sts_scopes(settings, true);
                    super::external::sts_token(cx, settings, path, &scopes).await
                }
            }
        })
    }
}

/// The settings a source is fetched with: no impersonation, and the
/// `cloud-platform` scope that IAM Credentials requires.
fn source_settings(settings: &GoogleSettings) -> GoogleSettings {
    GoogleSettings {
        scopes: vec![DEFAULT_GOOGLE_SCOPE.to_owned()],
        impersonate_service_account: None,
        delegates: Vec::new(),
        lifetime: None,
        iam_endpoint: None,
        oauth_client_file: None,
        ..settings.clone()
    }
}

impl Plan {
    /// The plan of a credential with `impersonate_service_account`.
    pub fn from_settings(settings: &GoogleSettings, target: &str) -> Self {
        let source = source_settings(settings);
        let source_key = format!(
            "google-source:{}",
            serde_json::to_string(&source).unwrap_or_default()
        );
        Self {
            base: settings
                .iam_endpoint
                .clone()
                .unwrap_or_else(|| DEFAULT_IAM_ENDPOINT.to_owned()),
            target: target.to_owned(),
            delegates: settings.delegates.clone(),
            lifetime: settings.lifetime.unwrap_or(ONE_HOUR),
            scopes: settings.scopes.clone(),
            quota_project: None,
            source_key,
            source_label: match &source.key_file {
                Some(path) => format!("key file {}", path.display()),
                None => "application default credentials".to_owned(),
            },
            source: Source::Settings(Google::new(source)),
        }
    }

    /// The plan of an impersonated ADC file at `path`.
    pub async fn from_file(settings: &GoogleSettings, path: &Path) -> Result<Self, FetchError> {
        let file = ImpersonatedFile::parse(&read_key_file(path).await?, path)?;
        let source = source_settings(settings);
        let source_key = format!(
            "google-source:file:{}:{}",
            path.display(),
            source.token_uri.as_deref().unwrap_or("")
        );
        Ok(Self {
            base: settings.iam_endpoint.clone().unwrap_or(file.base),
            target: file.target,
            delegates: file.delegates,
            lifetime: settings.lifetime.unwrap_or(ONE_HOUR),
            scopes: settings.scopes.clone(),
            quota_project: file.quota_project,
            source_key,
            source_label: format!("source_credentials of {}", path.display()),
            source: Source::File {
                path: path.to_owned(),
                google: Google::new(source),
            },
        })
    }

    /// The plan of an `external_account` file at `path` that names a
    /// `service_account_impersonation_url`.
    pub async fn from_external(settings: &GoogleSettings, path: &Path) -> Result<Self, FetchError> {
        let file = super::external::ExternalFile::parse(&read_key_file(path).await?, path)?;
        let url = file
            .service_account_impersonation_url
            .as_deref()
            .unwrap_or("");
        let (base, target) = split_impersonation_url(url).ok_or_else(|| {
            FetchError::config(format!(
                "key file {}: service_account_impersonation_url {:?} is not https://HOST/v1/projects/-/serviceAccounts/EMAIL:generateAccessToken",
                path.display(),
                http::sanitize(url, 200)
            ))
        })?;
        let lifetime = file
            .service_account_impersonation
            .and_then(|o| o.token_lifetime_seconds)
            .map(Duration::from_secs);
        let source = source_settings(settings);
        Ok(Self {
            base: settings.iam_endpoint.clone().unwrap_or(base),
            target,
            delegates: Vec::new(),
            lifetime: settings.lifetime.or(lifetime).unwrap_or(ONE_HOUR),
            scopes: settings.scopes.clone(),
            quota_project: file.quota_project_id.filter(|q| !q.is_empty()),
            source_key: format!(
                "google-source:external:{}:{}",
                path.display(),
                source.token_uri.as_deref().unwrap_or("")
            ),
            source_label: format!("external account {} (STS token)", path.display()),
            source: Source::External {
                path: path.to_owned(),
                settings: source,
            },
        })
    }

    /// `POST {base}/v1/projects/-/serviceAccounts/{target}:{verb}` with the
    /// source token as bearer; after a 401 the source token is dropped
    /// and the call made once more.
    pub async fn call(
        &self,
        cx: &FetchContext<'_>,
        verb: &str,
        body: &Value,
    ) -> Result<Answer, FetchError> {
        let last = format!("{}:{verb}", self.target);
        let url = authorized::resource_url(
            &self.base,
            &["v1", "projects", "-", "serviceAccounts", &last],
            &[],
        )?;
        let client = cx.http.client()?;
        let send = |token: &AuthToken| {
            let request = client
                .post(url.clone())
                .bearer_auth(token.token.expose())
                .json(body);
            http::send(WHAT, request)
        };
        let source = self.source_token(cx).await?;
        let mut answer = send(&source).await?;
        if answer.status == 401 {
            tracing::info!(
                credential = cx.name,
                "{WHAT} answered 401 to the source token: fetching a new one and trying once more"
            );
            cx.reject_auth_token(&self.source_key, &source.token);
            answer = send(&self.source_token(cx).await?).await?;
        }
        if answer.is_success() {
            return Ok(answer);
        }
        let mut e = answer.error(cx.now);
        if answer.status == 400 && self.lifetime > ONE_HOUR {
            e.message = format!(
                "{} (a lifetime over 1h needs the organization policy {LIFETIME_POLICY} to list {})",
                e.message, self.target
            );
        }
        Err(e)
    }

    /// The delegates, each as `projects/-/serviceAccounts/EMAIL`.
    pub fn delegates(&self) -> &[String] {
        &self.delegates
    }

    async fn source_token(&self, cx: &FetchContext<'_>) -> Result<AuthToken, FetchError> {
        let id = SourceId {
            key: &self.source_key,
            label: &self.source_label,
        };
        cx.source_token(id, &self.source).await.map_err(|e| {
            e.context(format!(
                "getting the source token to impersonate {}",
                self.target
            ))
        })
    }
}

/// The access token of a credential with `impersonate_service_account`.
pub(super) async fn access_token(
    cx: &FetchContext<'_>,
    settings: &GoogleSettings,
) -> Result<Fetched, FetchError> {
    let target = settings
        .impersonate_service_account
        .as_deref()
        .unwrap_or("");
    generate_access_token(cx, &Plan::from_settings(settings, target)).await
}

/// The access token of an impersonated ADC file.
pub(super) async fn access_token_from_file(
    cx: &FetchContext<'_>,
    settings: &GoogleSettings,
    path: &Path,
) -> Result<Fetched, FetchError> {
    generate_access_token(cx, &Plan::from_file(settings, path).await?).await
}

/// The access token of an `external_account` file that impersonates.
pub(super) async fn access_token_from_external(
    cx: &FetchContext<'_>,
    settings: &GoogleSettings,
    path: &Path,
) -> Result<Fetched, FetchError> {
    generate_access_token(cx, &Plan::from_external(settings, path).await?).await
}

async fn generate_access_token(cx: &FetchContext<'_>, plan: &Plan) -> Result<Fetched, FetchError> {
    let body = json!({
        "delegates": plan.delegates,
        "scope": plan.scopes,
        "lifetime": format!("{}s", plan.lifetime.as_secs()),
    });
    let answer = plan.call(cx, "generateAccessToken", &body).await?;
    let mut fetched = parse_access_token(&answer, cx.now)?;
    fetched.quota_project = plan.quota_project.clone();
    Ok(fetched)
}

/// `{"accessToken": "...", "expireTime": "<RFC 3339>"}`.
fn parse_access_token(answer: &Answer, now: DateTime<Utc>) -> Result<Fetched, FetchError> {
    let v = authorized::json(answer)?;
    let token = authorized::string_at(answer, &v, &["accessToken"])?;
    let expiry = authorized::string_at(answer, &v, &["expireTime"])?;
    let expires_at = parse_rfc3339("expireTime", expiry)
        .map_err(|e| e.to_string())
        .and_then(|t| within_lifetime("expireTime", t, now).map_err(|e| e.to_string()))
        .map_err(|why| authorized::bad_answer(answer, why))?;
    Ok(Fetched::new(Secret::new(token), expires_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch_error::ErrorClass;
    use crate::loopback::{Peer, Reply};
    use crate::providers::testing::Harness;

    const SA: &str = "deployer@my-proj.iam.gserviceaccount.com";

    fn file(url: &str, source_type: &str) -> Vec<u8> {
        json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": url,
            "delegates": ["hop@my-proj.iam.gserviceaccount.com", "projects/-/serviceAccounts/hop2@p.iam.gserviceaccount.com"],
            "source_credentials": {"type": source_type, "client_id": "c", "client_secret": "s", "refresh_token": "1//r"},
            "quota_project_id": "billing",
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn an_impersonated_adc_file_is_read() {
        let url = format!(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{SA}:generateAccessToken"
        );
        let text = file(&url, "authorized_user");
        assert!(is_impersonated(&text));
        assert!(!is_impersonated(br#"{"type":"authorized_user"}"#));
        let f = ImpersonatedFile::parse(&text, Path::new("adc.json")).unwrap();
        assert_eq!(f.base, "https://iamcredentials.googleapis.com");
        assert_eq!(f.target, SA);
        assert_eq!(
            f.delegates,
            [
                "projects/-/serviceAccounts/hop@my-proj.iam.gserviceaccount.com",
                "projects/-/serviceAccounts/hop2@p.iam.gserviceaccount.com"
            ]
        );
        assert_eq!(f.source["refresh_token"], "1//r");
        assert_eq!(f.quota_project.as_deref(), Some("billing"));
    }

    #[test]
    fn a_bad_impersonated_adc_file_says_which_field() {
        let parse = |text: Vec<u8>| {
            ImpersonatedFile::parse(&text, Path::new("adc.json"))
                .unwrap_err()
                .message
        };
        let m = parse(file(
            "http://iam.example.com/v1/projects/-/serviceAccounts/a@b.c:generateAccessToken",
            "authorized_user",
        ));
        assert!(m.contains("service_account_impersonation_url"), "{m}");
        let m = parse(file(
            "https://iam.example.com/v1/projects/-/serviceAccounts/a@b.c:signBlob",
            "authorized_user",
        ));
        assert!(m.contains("is not https://HOST"), "{m}");
        let ok =
            format!("http://127.0.0.1:9/v1/projects/-/serviceAccounts/{SA}:generateAccessToken");
        let m = parse(file(&ok, "external_account"));
        assert!(
            m.contains("source_credentials has type \"external_account\""),
            "{m}"
        );
        assert!(!m.contains("1//r"), "{m}");
        let m = parse(br#"{"type":"impersonated_service_account"}"#.to_vec());
        assert!(
            m.ends_with("has no service_account_impersonation_url"),
            "{m}"
        );
    }

    fn settings(iam: &str) -> GoogleSettings {
        GoogleSettings {
            key_file: Some("/nonexistent/sa.json".into()),
            scopes: vec!["s1".into()],
            token_uri: None,
            metadata_host: None,
            impersonate_service_account: Some(SA.into()),
            delegates: vec![format!(
                "projects/-/serviceAccounts/hop@p.iam.gserviceaccount.com"
            )],
            lifetime: Some(Duration::from_secs(7200)),
            iam_endpoint: Some(iam.into()),
            oauth_client_file: None,
        }
    }

    #[tokio::test]
    async fn generate_access_token_sends_delegates_scope_and_lifetime() {
        let peer = Peer::start(vec![Reply::json(
            200,
            r#"{"accessToken":"ya29.target","expireTime":"2030-01-01T02:00:00Z"}"#,
        )])
        .await;
        let h = Harness::new();
        let f = access_token(&h.cx(), &settings(&peer.url())).await.unwrap();
        assert_eq!(f.token.expose(), "ya29.target");
        assert_eq!(f.expires_at, h.cx().now + chrono::Duration::hours(2));
        let r = &peer.requests()[0];
        assert_eq!(
            r.path(),
            format!("/v1/projects/-/serviceAccounts/{SA}:generateAccessToken")
        );
        let key = Plan::from_settings(&settings(""), SA).source_key;
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {key}-token-0").as_str())
        );
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            body,
            json!({"delegates": ["projects/-/serviceAccounts/hop@p.iam.gserviceaccount.com"], "scope": ["s1"], "lifetime": "7200s"})
        );
    }

    #[tokio::test]
    async fn a_refused_long_lifetime_names_the_org_policy() {
        let peer = Peer::start(vec![Reply::json(
            400,
            r#"{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT"}}"#,
        )])
        .await;
        let h = Harness::new();
        let e = access_token(&h.cx(), &settings(&peer.url()))
            .await
            .unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "iamcredentials answered 400: INVALID_ARGUMENT: Request contains an invalid argument. (a lifetime over 1h needs the organization policy {LIFETIME_POLICY} to list {SA})"
            )
        );
    }

    #[tokio::test]
    async fn a_401_drops_the_source_token_and_tries_once_more() {
        let peer = Peer::start(vec![
            Reply::json(401, r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#),
            Reply::json(403, r#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).","status":"PERMISSION_DENIED"}}"#),
        ])
        .await;
        let h = Harness::new();
        let e = access_token(&h.cx(), &settings(&peer.url()))
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::Unauthorized);
        assert!(e.message.starts_with("iamcredentials answered 403: PERMISSION_DENIED: Permission 'iam.serviceAccounts.getAccessToken' denied"), "{}", e.message);
        assert_eq!(h.deps.rejected().len(), 1);
        let tokens: Vec<_> = peer
            .requests()
            .iter()
            .map(|r| r.header("authorization").unwrap().to_owned())
            .collect();
        assert_ne!(
            tokens[0], tokens[1],
            "the second call has a new source token"
        );
    }
}
