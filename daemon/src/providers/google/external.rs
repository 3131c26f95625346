//! Workload and workforce identity federation: an `external_account` file
//! (`gcloud iam workload-identity-pools create-cred-config`). A subject
//! token read from its `credential_source` (a `file`, re-read every fetch,
//! or a `url`) is exchanged at STS for a Google access token; with
//! `service_account_impersonation_url` that token is the source of
//! `generateAccessToken` (`impersonation.rs`). An `executable` source is
//! run by `executable.rs`; AWS (`environment_id`) sources are refused,
//! naming them.

use std::path::Path;

use credcache_shared::config::{DEFAULT_GOOGLE_SCOPE, GoogleSettings};
use serde::Deserialize;
use serde_json::Value;

use super::executable::{self, Executable};
use super::{parse_key_file, read_key_file};
use crate::http;
use crate::providers::{FetchContext, FetchError, Fetched, token_response};

const FILE_TYPE: &str = "external_account";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const DEFAULT_STS: &str = "https://sts.googleapis.com/v1/token";

/// Whether a key file's `type` is `external_account`.
pub(super) fn is_external(text: &[u8]) -> bool {
    serde_json::from_slice::<Value>(text)
        .is_ok_and(|v| v.get("type").and_then(Value::as_str) == Some(FILE_TYPE))
}

/// An `external_account` file.
#[derive(Debug, Deserialize)]
pub(crate) struct ExternalFile {
    pub audience: String,
    pub subject_token_type: String,
    pub token_url: Option<String>,
    pub service_account_impersonation_url: Option<String>,
    pub service_account_impersonation: Option<ImpersonationOptions>,
    pub credential_source: Value,
    pub workforce_pool_user_project: Option<String>,
    pub quota_project_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ImpersonationOptions {
    pub token_lifetime_seconds: Option<u64>,
}

/// Where the subject token comes from.
#[derive(Debug, PartialEq)]
pub(crate) enum SubjectSource {
    File {
        path: String,
        field: Option<String>,
    },
    Url {
        url: String,
        headers: Vec<(String, String)>,
        field: Option<String>,
    },
    Executable(Executable),
}

impl ExternalFile {
    /// The account `service_account_impersonation_url` names
    /// (`…/serviceAccounts/EMAIL:generateAccessToken`).
    pub fn impersonated_email(&self) -> Option<&str> {
        let url = self.service_account_impersonation_url.as_deref()?;
        let tail = url.rsplit_once("/serviceAccounts/")?.1;
        Some(tail.split_once(':').map_or(tail, |(email, _)| email))
            .filter(|e| !e.is_empty() && !e.contains('/'))
    }

    pub fn parse(text: &[u8], path: &Path) -> Result<Self, FetchError> {
        parse_key_file(text, path)
    }

    /// The `credential_source`, or an error naming the kinds credcache
    /// does not read.
    pub fn subject_source(&self, path: &Path) -> Result<SubjectSource, FetchError> {
        let bad = |why: &str| FetchError::config(format!("key file {}: {why}", path.display()));
        let cs = &self.credential_source;
        let field = match cs.get("format") {
            None => None,
            Some(f) => match f.get("type").and_then(Value::as_str) {
                None | Some("text") => None,
                Some("json") => Some(
                    f.get("subject_token_field_name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad("credential_source.format has type json but no subject_token_field_name"))?
                        .to_owned(),
                ),
                Some(other) => {
                    return Err(bad(&format!(
                        "credential_source.format.type {:?} is neither text nor json",
                        http::sanitize(other, 40)
                    )));
                }
            },
        };
        if let Some(file) = cs.get("file").and_then(Value::as_str) {
            return Ok(SubjectSource::File {
                path: file.to_owned(),
                field,
            });
        }
        if let Some(url) = cs.get("url").and_then(Value::as_str) {
            let headers = cs
                .get("headers")
                .and_then(Value::as_object)
                .map(|h| {
                    h.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                        .collect()
                })
                .unwrap_or_default();
            return Ok(SubjectSource::Url {
                url: url.to_owned(),
                headers,
                field,
            });
        }
        if let Some(exe) = cs.get("executable") {
            return Executable::parse(exe)
                .map(SubjectSource::Executable)
                .map_err(|e| bad(&e));
        }
        if cs.get("environment_id").is_some() {
            return Err(bad(
                "credential_source is AWS (environment_id), which credcache does not support: use a file or url source",
            ));
        }
        Err(bad("credential_source has no file or url"))
    }
}

/// The subject token: the source's text, or the named field of its JSON.
async fn subject_token(
    cx: &FetchContext<'_>,
    file: &ExternalFile,
    source: &SubjectSource,
    path: &Path,
) -> Result<String, FetchError> {
    let (bytes, field, what) = match source {
        SubjectSource::Executable(exe) => {
            let call = executable::Call {
                audience: &file.audience,
                token_type: &file.subject_token_type,
                impersonated_email: file.impersonated_email(),
            };
            return executable::subject_token(exe, &call, cx.now.timestamp(), cx.timeout, path)
                .await;
        }
        SubjectSource::File { path: file, field } => {
            let bytes = crate::files::read(Path::new(file)).await.map_err(|e| {
                FetchError::config(format!(
                    "key file {}: cannot read the subject token file {file}: {e}",
                    path.display()
                ))
            })?;
            (bytes, field, "the subject token file")
        }
        SubjectSource::Url {
            url,
            headers,
            field,
        } => {
            let client = if url.starts_with("https://") {
                cx.http.client()?
            } else {
                cx.http.direct()?
            };
            let mut request = client.get(url);
            for (k, v) in headers {
                request = request.header(k, v);
            }
            let answer = http::send("the subject token URL", request).await?;
            if !answer.is_success() {
                return Err(answer.error(cx.now));
            }
            (answer.body, field, "the subject token URL's answer")
        }
    };
    let token = match field {
        None => String::from_utf8(bytes)
            .map_err(|_| FetchError::config(format!("{what} is not text")))?
            .trim()
            .to_owned(),
        Some(name) => serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get(name)?.as_str().map(str::to_owned))
            .ok_or_else(|| {
                FetchError::config(format!("{what} is not JSON with a string {name}"))
            })?,
    };
    if token.is_empty() {
        return Err(FetchError::config(format!("{what} is empty")));
    }
    Ok(token)
}

/// The STS token for the file at `path`, with `scopes`.
pub(super) async fn sts_token(
    cx: &FetchContext<'_>,
    settings: &GoogleSettings,
    path: &Path,
    scopes: &[String],
) -> Result<Fetched, FetchError> {
    let file = ExternalFile::parse(&read_key_file(path).await?, path)?;
    let source = file.subject_source(path)?;
    let subject = subject_token(cx, &file, &source, path).await?;
    let token_url = settings
        .token_uri
        .as_deref()
        .or(file.token_url.as_deref())
        .unwrap_or(DEFAULT_STS);
    let scope = scopes.join(" ");
    let options = file
        .workforce_pool_user_project
        .as_ref()
        .map(|p| serde_json::json!({"userProject": p}).to_string());
    let mut form = vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("audience", file.audience.as_str()),
        ("scope", scope.as_str()),
        ("requested_token_type", ACCESS_TOKEN_TYPE),
        ("subject_token", subject.as_str()),
        ("subject_token_type", file.subject_token_type.as_str()),
    ];
    if let Some(o) = &options {
        form.push(("options", o.as_str()));
    }
    let answer = http::send("google sts", cx.http.client()?.post(token_url).form(&form)).await?;
    if !answer.is_success() {
        return Err(answer.error(cx.now));
    }
    let mut fetched = token_response::parse(&answer, cx.now)?;
    fetched.quota_project = file.quota_project_id.filter(|q| !q.is_empty());
    Ok(fetched)
}

/// The scopes the STS token is asked for: the credential's, or
/// `cloud-platform` when it is only the source of an impersonation.
pub(super) fn sts_scopes(settings: &GoogleSettings, impersonating: bool) -> Vec<String> {
    if impersonating {
        vec![DEFAULT_GOOGLE_SCOPE.to_owned()]
    } else {
        settings.scopes.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(source: Value) -> ExternalFile {
        let text = serde_json::json!({
            "type": "external_account",
            "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": "https://sts.googleapis.com/v1/token",
            "credential_source": source,
        })
        .to_string();
        assert!(is_external(text.as_bytes()));
        ExternalFile::parse(text.as_bytes(), Path::new("wif.json")).unwrap()
    }

    #[test]
    fn credential_sources_are_read_or_refused_by_name() {
        let p = Path::new("wif.json");
        assert_eq!(
            file(serde_json::json!({"file": "/var/run/oidc", "format": {"type": "text"}}))
                .subject_source(p)
                .unwrap(),
            SubjectSource::File {
                path: "/var/run/oidc".into(),
                field: None
            }
        );
        assert_eq!(
            file(serde_json::json!({"url": "http://127.0.0.1:9/t", "headers": {"Metadata": "True"}, "format": {"type": "json", "subject_token_field_name": "access_token"}}))
                .subject_source(p)
                .unwrap(),
            SubjectSource::Url {
                url: "http://127.0.0.1:9/t".into(),
                headers: vec![("Metadata".into(), "True".into())],
                field: Some("access_token".into())
            }
        );
        assert!(matches!(
            file(serde_json::json!({"executable": {"command": "x"}})).subject_source(p),
            Ok(SubjectSource::Executable(_))
        ));
        let m = file(serde_json::json!({"executable": {"command": "x", "timeout_millis": 1}}))
            .subject_source(p)
            .unwrap_err()
            .message;
        assert!(m.contains("timeout_millis"), "{m}");
        let m = file(serde_json::json!({"environment_id": "aws1"}))
            .subject_source(p)
            .unwrap_err()
            .message;
        assert!(m.contains("AWS (environment_id)"), "{m}");
        let m = file(serde_json::json!({"file": "/x", "format": {"type": "json"}}))
            .subject_source(p)
            .unwrap_err()
            .message;
        assert!(m.contains("subject_token_field_name"), "{m}");
    }

    #[test]
    fn the_impersonated_email_is_read_from_the_impersonation_url() {
        let mut f = file(serde_json::json!({"file": "/x"}));
        assert_eq!(f.impersonated_email(), None);
        f.service_account_impersonation_url = Some(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/ci@p.iam.gserviceaccount.com:generateAccessToken".into(),
        );
        assert_eq!(f.impersonated_email(), Some("ci@p.iam.gserviceaccount.com"));
        f.service_account_impersonation_url =
            Some("https://x/serviceAccounts/a/b:generateAccessToken".into());
        assert_eq!(f.impersonated_email(), None);
    }
}
