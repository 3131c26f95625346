//! `kind = "google-id-token"`: a Google-signed OpenID Connect ID token for
//! an audience (Cloud Run, IAP, Cloud Functions), minted for the identity
//! of the `google` credential named by `auth`:
//!
//! - a service-account key signs a JWT with `target_audience` (and no
//!   `scope`), which the token endpoint exchanges for an `id_token`;
//! - an impersonation (settings or ADC file) calls IAM Credentials
//!   `generateIdToken` for the target, with the source token as bearer
//!   (the same cached source as the access token's);
//! - the metadata server answers `identity?audience=A&format=full`.
//!
//! An authorized user cannot mint one; `Config::load` already refuses that,
//! and a file that changed since is refused here in the same words.
//! The expiry is the JWT's `exp`; the payload is read for nothing else and
//! never logged or quoted.

use std::path::Path;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use credcache_shared::Secret;
use credcache_shared::config::{GoogleIdTokenSettings, GoogleSettings};
use serde::Serialize;
use serde_json::{Value, json};

use super::impersonation::{self, Plan};
use super::{DEFAULT_METADATA_HOST, Google, JWT_BEARER, KeyFile, parse_key_file, read_key_file};
use crate::http::{self, Answer};
use crate::providers::{
    BoxFuture, FetchContext, FetchError, Fetched, Provider, authorized, within_lifetime,
};

pub struct GoogleIdToken {
    settings: GoogleIdTokenSettings,
    /// The settings of the `auth` credential; `None` if it is no `google`
    /// credential (validation refuses that).
    identity: Option<Google>,
}

impl GoogleIdToken {
    pub fn new(settings: GoogleIdTokenSettings, identity: Option<GoogleSettings>) -> Self {
        Self {
            settings,
            identity: identity.map(Google::new),
        }
    }
}

impl Provider for GoogleIdToken {
    fn fetch<'a>(&'a self, cx: &'a FetchContext<'a>) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        Box::pin(async move {
            let google = self.identity.as_ref().ok_or_else(|| {
                FetchError::config(format!(
                    "auth names {:?}, which is not a google credential",
                    self.settings.auth
                ))
            })?;
            let token = match &google.settings.impersonate_service_account {
                Some(target) => {
                    self.through(cx, &Plan::from_settings(&google.settings, target))
                        .await?
                }
                None => match google.identity_file()? {
                    Some(path) => self.minted_by_key_file(cx, google, &path).await?,
                    None => self.minted_by_metadata(cx, google).await?,
                },
            };
            let expires_at = expiry(&token, cx.now)?;
            Ok(Fetched::new(Secret::new(token), expires_at))
        })
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    target_audience: &'a str,
}

impl GoogleIdToken {
    async fn through(&self, cx: &FetchContext<'_>, plan: &Plan) -> Result<String, FetchError> {
        let body = json!({
            "delegates": plan.delegates(),
            "audience": self.settings.audience,
            "includeEmail": self.settings.include_email,
        });
        let answer = plan.call(cx, "generateIdToken", &body).await?;
        let v = authorized::json(&answer)?;
        Ok(authorized::string_at(&answer, &v, &["token"])?.to_owned())
    }

    async fn minted_by_key_file(
        &self,
        cx: &FetchContext<'_>,
        google: &Google,
        path: &Path,
    ) -> Result<String, FetchError> {
        let text = read_key_file(path).await?;
        if impersonation::is_impersonated(&text) {
            return self
                .through(cx, &Plan::from_file(&google.settings, path).await?)
                .await;
        }
        if super::external::is_external(&text) {
            let file = super::external::ExternalFile::parse(&text, path)?;
            if file.service_account_impersonation_url.is_none() {
                return Err(FetchError::config(format!(
                    "auth names {:?}, whose identity file {} is an external account without service_account_impersonation_url, whose STS token cannot mint an ID token",
                    self.settings.auth,
                    path.display()
                )));
            }
            return self
                .through(cx, &Plan::from_external(&google.settings, path).await?)
                .await;
        }
        let key: KeyFile = parse_key_file(&text, path)?;
        match key.kind.as_deref() {
            Some("service_account") => {}
            Some("authorized_user") => {
                return Err(FetchError::config(format!(
                    "auth names {:?}, whose identity file {} is an authorized user (gcloud auth application-default login), which cannot mint an ID token for an audience: use a service account key, impersonate_service_account, or the metadata server",
                    self.settings.auth,
                    path.display()
                )));
            }
            other => {
                return Err(FetchError::config(format!(
                    "key file {} has type {:?}, which credcache cannot mint an ID token from",
                    path.display(),
                    http::sanitize(other.unwrap_or(""), 40)
                )));
            }
        }
        let (email, pem) = key.signer(path)?;
        let token_uri = google.token_uri(key.token_uri.as_deref());
        let iat = cx.now.timestamp();
        let claims = Claims {
            iss: email,
            sub: email,
            aud: token_uri,
            iat,
            exp: iat + 3600,
            target_audience: &self.settings.audience,
        };
        let assertion = super::sign(&claims, pem, key.private_key_id.as_deref(), path)?;
        let request = cx.http.client()?.post(token_uri).form(&[
            ("grant_type", JWT_BEARER),
            ("assertion", assertion.as_str()),
        ]);
        let answer = http::send("google token endpoint", request).await?;
        if !answer.is_success() {
            return Err(answer.error(cx.now));
        }
        let v = authorized::json(&answer)?;
        Ok(authorized::string_at(&answer, &v, &["id_token"])?.to_owned())
    }

    async fn minted_by_metadata(
        &self,
        cx: &FetchContext<'_>,
        google: &Google,
    ) -> Result<String, FetchError> {
        let host = google.metadata_host();
        let url =
            format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/identity");
        let request = cx
            .http
            .direct()?
            .get(url)
            .query(&[
                ("audience", self.settings.audience.as_str()),
                ("format", "full"),
            ])
            .header("Metadata-Flavor", "Google");
        let answer = http::send("google metadata server", request).await?;
        if !answer.is_success() {
            return Err(answer.error(cx.now));
        }
        text_token(&answer)
    }
}

/// The metadata server's plain-text answer, trimmed.
fn text_token(answer: &Answer) -> Result<String, FetchError> {
    let text = std::str::from_utf8(&answer.body)
        .map_err(|_| authorized::bad_answer(answer, "the body is not text"))?
        .trim();
    if text.is_empty() {
        return Err(authorized::bad_answer(answer, "the body is empty"));
    }
    Ok(text.to_owned())
}

/// The `exp` claim of a JWT, as the token's expiry. Only the payload is
/// decoded (the signature is the audience's to check); an error never
/// quotes the token.
pub(crate) fn expiry(jwt: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, FetchError> {
    let bad = |why: &str| FetchError::transient(format!("the ID token {why}"));
    let mut parts = jwt.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("is not a JWT (header.payload.signature)"));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| bad("payload is not base64url"))?;
    let claims: Value = serde_json::from_slice(&bytes).map_err(|_| bad("payload is not JSON"))?;
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("has no numeric exp claim"))?;
    let at = DateTime::from_timestamp(exp, 0).ok_or_else(|| bad("exp is out of range"))?;
    within_lifetime("the ID token's exp", at, now).map_err(|e| bad(&e.to_string()))
}

impl Google {
    pub(super) fn metadata_host(&self) -> String {
        match &self.settings.metadata_host {
            Some(h) => h.clone(),
            None => std::env::var("GCE_METADATA_HOST")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::now;

    fn jwt(payload: &Value) -> String {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"RS256"}"#),
            b64(payload.to_string().as_bytes()),
            b64(b"sig")
        )
    }

    #[test]
    fn the_expiry_is_the_payloads_exp() {
        let exp = now().timestamp() + 3600;
        let t = jwt(&json!({"aud": "https://a", "exp": exp, "email": "x@y"}));
        assert_eq!(expiry(&t, now()).unwrap().timestamp(), exp);
    }

    #[test]
    fn a_bad_id_token_is_an_error_that_never_quotes_it() {
        let far = now().timestamp() + 400 * 24 * 3600;
        for (token, why) in [
            ("eyJsecret".to_owned(), "is not a JWT"),
            ("a.b.c.d".to_owned(), "is not a JWT"),
            ("a.!!!.c".to_owned(), "not base64url"),
            (jwt(&json!({"aud": "x"})), "no numeric exp"),
            (jwt(&json!({"exp": "soon"})), "no numeric exp"),
            (jwt(&json!({"exp": far})), "more than 366 days ahead"),
        ] {
            let e = expiry(&token, now()).unwrap_err();
            assert!(e.message.contains(why), "{why}: {}", e.message);
            assert!(!e.message.contains(&token), "{}", e.message);
        }
    }
}
