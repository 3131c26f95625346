//! The GCE metadata server, as far as the Google SDKs use it for
//! credentials: google-auth (Python, Node, Go, Java) and gcloud read
//! `GCE_METADATA_HOST`, ping `/`, then read the default service account's
//! email and scopes and ask for its token (and ID tokens). Every answer
//! carries `Metadata-Flavor: Google`; a request without it is refused,
//! as the real server refuses it. JSON answers are typed
//! `application/json`, text answers not (`serve::respond`).

use chrono::Utc;
use hyper::StatusCode;
use hyper::body::Incoming;
use serde_json::json;

use credcache_shared::config::{Credential, Source};
use credcache_shared::protocol::ErrorKind;

use super::serve::Answer;
use super::{Endpoint, Endpoints};

const ACCOUNTS: &str = "/computeMetadata/v1/instance/service-accounts/";

/// What the metadata server says about the identity behind a credential.
pub struct Identity {
    /// The service account's email, when the credential has one (a key,
    /// impersonation); `default` otherwise.
    pub email: String,
    /// From the key file's `project_id`, else its `quota_project_id`.
    pub project: Option<String>,
    pub scopes: Vec<String>,
}

impl Identity {
    pub async fn of(cred: &Credential) -> Self {
        let Source::Google(settings) = &cred.source else {
            return Self {
                email: "default".into(),
                project: None,
                scopes: Vec::new(),
            };
        };
        let file = settings
            .key_file
            .clone()
            .or_else(crate::providers::google::adc_file);
        let parsed: Option<serde_json::Value> = match &file {
            Some(path) => crate::files::read(path)
                .await
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok()),
            None => None,
        };
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let email = settings
            .impersonate_service_account
            .clone()
            .or_else(|| field("client_email"))
            .unwrap_or_else(|| "default".into());
        Self {
            email,
            project: field("project_id").or_else(|| field("quota_project_id")),
            scopes: settings.scopes.clone(),
        }
    }
}

pub async fn answer(
    endpoints: &Endpoints,
    endpoint: &Endpoint,
    req: &hyper::Request<Incoming>,
) -> Answer {
    let flavored = req
        .headers()
        .get("metadata-flavor")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"Google"));
    if !flavored {
        return Answer::text(
            StatusCode::FORBIDDEN,
            "Missing required header \"Metadata-Flavor\": \"Google\"",
        );
    }
    if req.method() != hyper::Method::GET {
        return Answer::text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served");
    }
    let path = req.uri().path();
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let cred = match super::current(endpoints, endpoint) {
        Ok(c) => c,
        Err(why) => return Answer::text(StatusCode::NOT_FOUND, why),
    };
    let identity = Identity::of(&cred).await;
    match path {
        "/" | "/computeMetadata/v1/instance" | "/computeMetadata/v1/instance/" => {
            Answer::text(StatusCode::OK, "")
        }
        "/computeMetadata/v1/project/project-id" => match identity.project {
            Some(p) => Answer::text(StatusCode::OK, p),
            None => Answer::text(
                StatusCode::NOT_FOUND,
                format!("the project of {} is not known", endpoint.name),
            ),
        },
        "/computeMetadata/v1/universe/universe-domain" => {
            Answer::text(StatusCode::OK, "googleapis.com")
        }
        _ => {
            let Some((account, rest)) = path.strip_prefix(ACCOUNTS).and_then(|p| p.split_once('/'))
            else {
                return not_found(path);
            };
            if account != "default" && account != identity.email {
                return not_found(path);
            }
            account_answer(endpoints, endpoint, &identity, rest, &query).await
        }
    }
}

async fn account_answer(
    endpoints: &Endpoints,
    endpoint: &Endpoint,
    identity: &Identity,
    rest: &str,
    query: &[(String, String)],
) -> Answer {
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let engine = &endpoints.engine;
    match rest {
        "" => Answer::json(
            StatusCode::OK,
            &json!({
                "aliases": ["default"],
                "email": identity.email,
                "scopes": identity.scopes,
            }),
        ),
        "email" => Answer::text(StatusCode::OK, identity.email.clone()),
        "scopes" => Answer::text(StatusCode::OK, identity.scopes.join("\n")),
        "token" => {
            let scopes: Vec<String> = param("scopes")
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            match engine
                .get_scoped(&endpoint.name, &scopes, None, false)
                .await
            {
                Ok(t) => Answer::json(
                    StatusCode::OK,
                    &json!({
                        "access_token": t.token.expose(),
                        "expires_in": (t.expires_at - Utc::now()).num_seconds().max(0),
                        "token_type": "Bearer",
                    }),
                ),
                Err(e) => failed(endpoint, e),
            }
        }
        "identity" => {
            let Some(audience) = param("audience").filter(|a| !a.is_empty()) else {
                return Answer::text(StatusCode::BAD_REQUEST, "audience parameter required");
            };
            match engine.id_token(&endpoint.name, audience).await {
                Ok(t) => Answer::text(StatusCode::OK, t.token.expose()),
                Err(e) if e.kind == ErrorKind::Config => Answer::text(
                    StatusCode::NOT_FOUND,
                    format!("{} cannot make ID tokens: {}", endpoint.name, e.message),
                ),
                Err(e) => failed(endpoint, e),
            }
        }
        _ => not_found(rest),
    }
}

fn failed(endpoint: &Endpoint, e: credcache_shared::protocol::WireError) -> Answer {
    let status = match e.kind {
        ErrorKind::Config | ErrorKind::NoSuchCredential => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Answer::text(status, format!("{}: {}", endpoint.name, e.message))
}

fn not_found(path: &str) -> Answer {
    Answer::text(
        StatusCode::NOT_FOUND,
        format!(
            "{} is not served here",
            path.chars().take(200).collect::<String>()
        ),
    )
}
