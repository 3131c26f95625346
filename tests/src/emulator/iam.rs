//! IAM Credentials: `:generateAccessToken` and `:generateIdToken` on
//! `/v1/projects/-/serviceAccounts/{EMAIL}`, authorized by a Google token
//! this emulator issued. The caller is who that token was issued to; it
//! must be allowed to impersonate the first delegate, each delegate the
//! next, and the last the target (`/__emulator/impersonation`; with no
//! grant registered, anyone may impersonate anyone). ID tokens are real
//! RS256 JWTs signed by a key of the emulator's own.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use chrono::Utc;
use serde_json::{Value, json};

use super::endpoint::{Call, Endpoint};
use super::google::CLOUD_PLATFORM;
use super::reply;
use super::state::{BearerProblem, DEFAULT_LIFETIME_SECS, Inner, IssuedToken, Shared, bearer};

const SA_PREFIX: &str = "/v1/projects/-/serviceAccounts/";
/// The `iss` of Google's ID tokens.
pub(crate) const ID_TOKEN_ISSUER: &str = "https://accounts.google.com";

/// `/v1/{*rest}`: IAM Credentials paths here, GKE multi-cloud's otherwise.
pub(crate) async fn dispatch(
    state: State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path().starts_with(SA_PREFIX) {
        handle(state, method, uri, headers, body).await
    } else if uri.path() == "/v1/token" && method == Method::POST {
        sts(state, method, uri, body).await
    } else if uri.path() == "/v1/oauthtoken" && method == Method::POST {
        workforce_refresh(state, method, uri, headers, body).await
    } else {
        super::gke::handle(state, method, uri, headers).await
    }
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rest = uri.path()[SA_PREFIX.len()..]
        .replace("%3A", ":")
        .replace("%3a", ":")
        .replace("%40", "@");
    let (target, verb) = rest.rsplit_once(':').unwrap_or((&rest, ""));
    let endpoint = match verb {
        "generateIdToken" => Endpoint::IamIdToken,
        _ => Endpoint::IamAccessToken,
    };
    let token = bearer(&headers);
    let mut call = Call::new(endpoint, &method, &uri);
    call.bearer = token.clone();
    let request: Option<Value> = serde_json::from_slice(&body).ok();
    call.scope = request
        .as_ref()
        .and_then(|r| r.get("audience").or_else(|| r.get("lifetime")))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let target = target.to_owned();
    let verb = verb.to_owned();
    shared
        .serve(call, move |inner| {
            if method != Method::POST
                || !matches!(verb.as_str(), "generateAccessToken" | "generateIdToken")
            {
                return error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    &format!("Method not found: {}.", uri.path()),
                );
            }
            let Some(request) = request.filter(Value::is_object) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    "Invalid JSON payload received.",
                );
            };
            answer(inner, endpoint, &target, token.as_deref(), &request)
        })
        .await
}

fn answer(
    inner: &mut Inner,
    endpoint: Endpoint,
    target: &str,
    token: Option<&str>,
    request: &Value,
) -> Response {
    let issuers = [
        Endpoint::GoogleToken,
        Endpoint::GoogleMetadata,
        Endpoint::IamAccessToken,
        Endpoint::StsToken,
    ];
    let issued = match inner.check_bearer(token, &issuers) {
        Ok(issued) => issued,
        Err(BearerProblem::Missing) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Request is missing required authentication credential.",
            );
        }
        Err(BearerProblem::Unknown | BearerProblem::Expired(_)) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            );
        }
    };
    let scopes = issued.scope.as_deref().unwrap_or("");
    if !scopes.split([' ', ',']).any(|s| s == CLOUD_PLATFORM) {
        return error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "Request had insufficient authentication scopes.",
        );
    }
    let caller = inner.subject_of(&issued.token).unwrap_or("").to_owned();
    let mut chain = vec![caller];
    for d in request
        .get("delegates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match d
            .as_str()
            .and_then(|d| d.strip_prefix("projects/-/serviceAccounts/"))
        {
            Some(email) if email.contains('@') => chain.push(email.to_owned()),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    &format!(
                        "Invalid form of delegate: {d}. Must be projects/-/serviceAccounts/EMAIL."
                    ),
                );
            }
        }
    }
    chain.push(target.to_owned());
    let grants = &inner.registry.impersonation;
    if !grants.is_empty() {
        for hop in chain.windows(2) {
            if !grants.contains(&(hop[0].clone(), hop[1].clone())) {
                let permission = match endpoint {
                    Endpoint::IamIdToken => "iam.serviceAccounts.getOpenIdToken",
                    _ => "iam.serviceAccounts.getAccessToken",
                };
                return error(
                    StatusCode::FORBIDDEN,
                    "PERMISSION_DENIED",
                    &format!("Permission '{permission}' denied on resource (or it may not exist)."),
                );
            }
        }
    }
    match endpoint {
        Endpoint::IamIdToken => id_token(inner, target, request),
        _ => access_token(inner, target, request),
    }
}

fn access_token(inner: &mut Inner, target: &str, request: &Value) -> Response {
    let lifetime = match request.get("lifetime").and_then(Value::as_str) {
        None => DEFAULT_LIFETIME_SECS,
        Some(l) => match l.strip_suffix('s').and_then(|n| n.parse::<u64>().ok()) {
            Some(n) if n > 0 => n,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    &format!("Invalid value at 'lifetime' ({l})"),
                );
            }
        },
    };
    if lifetime > DEFAULT_LIFETIME_SECS && !inner.registry.lifetime_extension.contains(target) {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Request contains an invalid argument.",
        );
    }
    let scope = match request.get("scope").and_then(Value::as_array) {
        Some(s) if !s.is_empty() => s
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                "Scope required.",
            );
        }
    };
    // The emulator-wide lifetime switch wins over the one asked for.
    let secs = match inner.lifetime_secs(Endpoint::IamAccessToken) {
        DEFAULT_LIFETIME_SECS => lifetime,
        set => set,
    };
    let issued = match inner.reuse(Endpoint::IamAccessToken) {
        Some(t) => t,
        None => {
            let t = IssuedToken {
                token: format!("ya29.emu-iam-{}", super::state::random_token(24)),
                endpoint: Endpoint::IamAccessToken,
                expires_at: super::state::expiry_after(secs),
                scope: Some(scope),
            };
            inner.remember(t.clone());
            t
        }
    };
    inner.attribute(&issued.token, target);
    let form = inner.timestamp_form(Endpoint::IamAccessToken);
    reply::json(
        StatusCode::OK,
        &json!({"accessToken": issued.token, "expireTime": form.format(issued.expires_at)}),
    )
}

fn id_token(inner: &mut Inner, target: &str, request: &Value) -> Response {
    let Some(audience) = request
        .get("audience")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Audience required.",
        );
    };
    let include_email = request
        .get("includeEmail")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let token = sign_id_token(inner, Endpoint::IamIdToken, target, audience, include_email);
    reply::json(StatusCode::OK, &json!({"token": token}))
}

/// A Google-shaped ID token for `subject` and `audience`, signed RS256 by
/// the emulator's ID-token key, living the endpoint's lifetime; remembered
/// as issued by `endpoint`.
pub(crate) fn sign_id_token(
    inner: &mut Inner,
    endpoint: Endpoint,
    subject: &str,
    audience: &str,
    include_email: bool,
) -> String {
    let now = Utc::now().timestamp();
    let lifetime = i64::try_from(inner.lifetime_secs(endpoint)).unwrap_or(3600);
    let mut claims = json!({
        "iss": ID_TOKEN_ISSUER,
        "aud": audience,
        "azp": subject,
        "sub": subject,
        "iat": now,
        "exp": now + lifetime,
    });
    if include_email {
        claims["email"] = json!(subject);
        claims["email_verified"] = json!(true);
    }
    let (kid, pem) = inner.id_token_key();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid);
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).expect("the emulator's PEM parses");
    let token = jsonwebtoken::encode(&header, &claims, &key).expect("signing works");
    inner.remember(IssuedToken {
        token: token.clone(),
        endpoint,
        expires_at: chrono::DateTime::from_timestamp(now + lifetime, 0).unwrap_or_else(Utc::now),
        scope: Some(audience.to_owned()),
    });
    token
}

/// Google STS `POST /v1/token`: a token exchange of a subject token for a
/// Google access token, issued to `principal:AUDIENCE`.
async fn sts(State(shared): State<Shared>, method: Method, uri: Uri, body: Bytes) -> Response {
    let form = super::google::parse_form(&body);
    let mut call = Call::new(Endpoint::StsToken, &method, &uri);
    call.grant_type = form.get("grant_type").cloned();
    call.scope = form.get("scope").cloned();
    call.bearer = form.get("subject_token").cloned();
    call.client_id = form.get("audience").cloned();
    shared
        .serve(call, |inner| {
            let oauth = |status, error: &str, description: &str| {
                reply::json(status, &json!({"error": error, "error_description": description}))
            };
            if form.get("grant_type").map(String::as_str)
                != Some("urn:ietf:params:oauth:grant-type:token-exchange")
            {
                return oauth(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Invalid grant_type.");
            }
            let audience = form.get("audience").map(String::as_str).unwrap_or("");
            if !audience.starts_with("//iam.googleapis.com/") {
                return oauth(StatusCode::BAD_REQUEST, "invalid_request", "Invalid value for \"audience\".");
            }
            let subject = form.get("subject_token").map(String::as_str).unwrap_or("");
            let accepted = match &inner.registry.sts_subject {
                Some(want) => subject == want,
                None => !subject.is_empty(),
            };
            if !accepted || !form.contains_key("subject_token_type") {
                return oauth(StatusCode::BAD_REQUEST, "invalid_grant", &format!("The audience in ID Token [{audience}] does not match the expected audience."));
            }
            let scope = form.get("scope").cloned().unwrap_or_else(|| CLOUD_PLATFORM.to_owned());
            let issued = inner.issue(Endpoint::StsToken, "ya29.emu-sts-", Some(scope));
            inner.attribute(&issued.token, &format!("principal:{audience}"));
            reply::json(StatusCode::OK, &json!({
                "access_token": issued.token,
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer",
                "expires_in": super::google::expires_in(&issued),
            }))
        })
        .await
}

/// Google STS `POST /v1/oauthtoken`: a workforce user's refresh-token
/// grant, the client in HTTP Basic auth. Every use rotates the refresh
/// token: the answer carries a new one and the old one is refused with
/// `invalid_grant`. Logged as an STS call: `bearer` is the refresh token
/// sent, `client_id` the Basic user.
async fn workforce_refresh(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use base64::Engine as _;
    let form = super::google::parse_form(&body);
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|b| b.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())));
    let mut call = Call::new(Endpoint::StsToken, &method, &uri);
    call.grant_type = form.get("grant_type").cloned();
    call.bearer = form.get("refresh_token").cloned();
    call.client_id = basic.as_ref().map(|(u, _)| u.clone());
    shared
        .serve(call, move |inner| {
            let oauth = |status, error: &str, description: &str| {
                reply::json(
                    status,
                    &json!({"error": error, "error_description": description}),
                )
            };
            if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
                return oauth(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "Invalid grant_type.",
                );
            }
            let Some((client_id, secret)) = basic else {
                return oauth(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "Client authentication is required.",
                );
            };
            let Some(client) = inner.registry.authorized_users.get_mut(&client_id) else {
                return oauth(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "The OAuth client was not found.",
                );
            };
            if client.client_secret != secret {
                return oauth(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "The client secret is invalid.",
                );
            }
            let sent = form.get("refresh_token").cloned().unwrap_or_default();
            if !client.refresh_tokens.remove(&sent) {
                return oauth(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The refresh token is invalid or has been used.",
                );
            }
            let rotated = format!("emu-wf-rt-{}", super::state::random_token(36));
            client.refresh_tokens.insert(rotated.clone());
            let issued = inner.issue(
                Endpoint::StsToken,
                "ya29.emu-wf-",
                Some(CLOUD_PLATFORM.to_owned()),
            );
            inner.attribute(&issued.token, &format!("principal:workforce:{client_id}"));
            reply::json(
                StatusCode::OK,
                &json!({
                    "access_token": issued.token,
                    "token_type": "Bearer",
                    "expires_in": super::google::expires_in(&issued),
                    "refresh_token": rotated,
                }),
            )
        })
        .await
}

/// A subject token served at `GET /oidc/token` (for an `external_account`
/// `url` credential source): `{"id_token": …}`, the one STS accepts.
pub(crate) async fn oidc_subject(State(shared): State<Shared>) -> Response {
    let subject = shared
        .lock()
        .registry
        .sts_subject
        .clone()
        .unwrap_or_else(|| "emu-oidc-subject".to_owned());
    reply::json(StatusCode::OK, &json!({"id_token": subject}))
}

/// Google's API error shape.
fn error(status: StatusCode, name: &str, message: &str) -> Response {
    reply::json(
        status,
        &json!({"error": {"code": status.as_u16(), "message": message, "status": name}}),
    )
}
