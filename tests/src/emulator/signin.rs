//! User sign-in as `credcache login` meets it: Entra's device code
//! endpoint and its polling (the user's answer played through
//! [`DeviceOutcome`]), the authorize pages of Entra and Google, which
//! redirect at once with a code for a registered client, and the token
//! grants that redeem them: `device_code`, `authorization_code` (PKCE S256
//! checked), and Entra's `refresh_token`, which rotates on every use and
//! refuses a spent or revoked one with `invalid_grant`. Google's refresh
//! grant is `google.rs`'s, over the desktop client registered here.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use base64::Engine as _;
use serde_json::json;

use super::endpoint::{Call, Endpoint};
use super::google::{expires_in, number_or_string, parse_form};
use super::reply;
use super::state::{Inner, Shared, random_token};

/// The device code grant's `grant_type`.
pub(crate) const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// How a pending device code sign-in answers its next poll: the user's
/// move, played by a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceOutcome {
    /// `authorization_pending` (the default: the user has not acted).
    #[default]
    Pending,
    /// The user signed in: the next poll gets the tokens.
    Approve,
    /// `authorization_declined`.
    Decline,
    /// `expired_token`.
    Expire,
    /// `slow_down` once, then pending again.
    SlowDown,
}

impl DeviceOutcome {
    /// The names the control API takes.
    pub fn from_name(name: &str) -> Option<DeviceOutcome> {
        Some(match name {
            "pending" => DeviceOutcome::Pending,
            "approve" => DeviceOutcome::Approve,
            "decline" => DeviceOutcome::Decline,
            "expire" => DeviceOutcome::Expire,
            "slow-down" => DeviceOutcome::SlowDown,
            _ => return None,
        })
    }
}

/// Sign-in state: codes handed out and the Entra user refresh tokens.
#[derive(Debug)]
pub(crate) struct SignIns {
    /// What pending device codes answer next.
    pub(crate) outcome: DeviceOutcome,
    /// The `interval` the device code endpoint tells clients.
    pub(crate) interval: u64,
    /// device code → (tenant, client id, scope).
    device_codes: HashMap<String, (String, String, String)>,
    /// authorization code → the request it answers.
    codes: HashMap<String, CodeGrant>,
    /// Entra refresh tokens → (tenant, client id). Rotated on every use.
    pub(crate) entra_refresh_tokens: HashMap<String, (String, String)>,
}

impl Default for SignIns {
    fn default() -> Self {
        SignIns {
            outcome: DeviceOutcome::Pending,
            interval: 5,
            device_codes: HashMap::new(),
            codes: HashMap::new(),
            entra_refresh_tokens: HashMap::new(),
        }
    }
}

#[derive(Debug, Clone)]
struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    scope: String,
    tenant: Option<String>,
}

/// `POST /{tenant}/oauth2/v2.0/devicecode`.
pub(crate) async fn device_code(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    body: axum::body::Bytes,
) -> Response {
    let tenant = uri
        .path()
        .split('/')
        .nth(1)
        .unwrap_or("")
        .to_ascii_lowercase();
    let form = parse_form(&body);
    let mut call = Call::new(Endpoint::EntraDeviceCode, &method, &uri);
    call.client_id = form.get("client_id").cloned();
    call.scope = form.get("scope").cloned();
    shared
        .serve(call, |inner| {
            let client_id = form.get("client_id").cloned().unwrap_or_default();
            if let Some(refused) = unknown_client(inner, &tenant, &client_id) {
                return refused;
            }
            let Some(scope) = form.get("scope").cloned() else {
                return entra_error("invalid_request", 900144, "The request body must contain the following parameter: 'scope'.");
            };
            let device_code = format!("emu-dc-{}", random_token(32));
            let user_code = random_token(8).to_ascii_uppercase();
            let verification_uri = format!("{}/devicelogin", inner.base);
            inner
                .signins
                .device_codes
                .insert(device_code.clone(), (tenant.clone(), client_id, scope));
            reply::json(
                StatusCode::OK,
                &json!({
                    "device_code": device_code,
                    "user_code": user_code,
                    "verification_uri": verification_uri,
                    "expires_in": 900,
                    "interval": inner.signins.interval,
                    "message": format!(
                        "To sign in, use a web browser to open the page {verification_uri} and enter the code {user_code} to authenticate."
                    ),
                }),
            )
        })
        .await
}

/// `GET /{tenant}/oauth2/v2.0/authorize` (Entra) and `GET /o/oauth2/auth`
/// (Google): the user is signed in at once; the answer is a redirect to
/// `redirect_uri` with a code and the `state` sent.
pub(crate) async fn authorize(State(shared): State<Shared>, method: Method, uri: Uri) -> Response {
    let query = parse_form(uri.query().unwrap_or("").as_bytes());
    let google = uri.path().starts_with("/o/");
    let tenant = (!google).then(|| {
        uri.path()
            .split('/')
            .nth(1)
            .unwrap_or("")
            .to_ascii_lowercase()
    });
    let mut call = Call::new(Endpoint::Authorize, &method, &uri);
    call.client_id = query.get("client_id").cloned();
    call.scope = query.get("scope").cloned();
    shared
        .serve(call, |inner| {
            let get = |k: &str| query.get(k).cloned().unwrap_or_default();
            let client_id = get("client_id");
            let known = match &tenant {
                Some(t) => unknown_client(inner, t, &client_id).is_none(),
                None => inner.registry.authorized_users.contains_key(&client_id),
            };
            if !known {
                return reply::text(StatusCode::BAD_REQUEST, "unknown client_id");
            }
            let redirect_uri = get("redirect_uri");
            let loopback = ["http://localhost:", "http://127.0.0.1:"]
                .iter()
                .any(|p| redirect_uri.starts_with(p));
            if !loopback || get("response_type") != "code" || get("code_challenge_method") != "S256"
            {
                return reply::text(
                    StatusCode::BAD_REQUEST,
                    "redirect_uri must be a loopback address, response_type code, code_challenge_method S256",
                );
            }
            let code = format!("emu-code-{}", random_token(32));
            inner.signins.codes.insert(
                code.clone(),
                CodeGrant {
                    client_id,
                    redirect_uri: redirect_uri.clone(),
                    challenge: get("code_challenge"),
                    scope: get("scope"),
                    tenant: tenant.clone(),
                },
            );
            let mut location = url::Url::parse(&redirect_uri).expect("checked above");
            location
                .query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", &get("state"));
            let mut response = reply::text(StatusCode::FOUND, "");
            response.headers_mut().insert(
                header::LOCATION,
                HeaderValue::from_str(location.as_str()).expect("a URL is a header value"),
            );
            response
        })
        .await
}

/// Entra's token endpoint for the user grants; `None` if `grant_type` is
/// not one of them.
pub(crate) fn entra_grant(
    inner: &mut Inner,
    tenant: &str,
    form: &HashMap<String, String>,
) -> Option<Response> {
    let tenant = tenant.to_ascii_lowercase();
    let client_id = form.get("client_id").cloned().unwrap_or_default();
    let grant = form.get("grant_type").map(String::as_str)?;
    if !matches!(
        grant,
        DEVICE_CODE_GRANT | "authorization_code" | "refresh_token"
    ) {
        return None;
    }
    if let Some(refused) = unknown_client(inner, &tenant, &client_id) {
        return Some(refused);
    }
    let scope = match grant {
        DEVICE_CODE_GRANT => {
            let code = form.get("device_code").cloned().unwrap_or_default();
            let Some((t, c, scope)) = inner.signins.device_codes.get(&code).cloned() else {
                return Some(entra_error(
                    "invalid_grant",
                    70000,
                    "The provided value for the input parameter 'device_code' is not valid.",
                ));
            };
            if t != tenant || c != client_id {
                return Some(entra_error(
                    "invalid_grant",
                    70000,
                    "The device code was issued to another client.",
                ));
            }
            match inner.signins.outcome {
                DeviceOutcome::Pending => {
                    return Some(entra_error(
                        "authorization_pending",
                        70016,
                        "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                    ));
                }
                DeviceOutcome::SlowDown => {
                    inner.signins.outcome = DeviceOutcome::Pending;
                    return Some(entra_error(
                        "slow_down",
                        70016,
                        "OAuth 2.0 device flow error. Slow down.",
                    ));
                }
                DeviceOutcome::Decline => {
                    inner.signins.device_codes.remove(&code);
                    return Some(entra_error(
                        "authorization_declined",
                        70000,
                        "The user declined the sign-in request.",
                    ));
                }
                DeviceOutcome::Expire => {
                    inner.signins.device_codes.remove(&code);
                    return Some(entra_error(
                        "expired_token",
                        70020,
                        "The provided authorization code or refresh token has expired due to it being shown to the user too long. Start a new sign-in.",
                    ));
                }
                DeviceOutcome::Approve => {
                    inner.signins.device_codes.remove(&code);
                    scope
                }
            }
        }
        "authorization_code" => match redeem(inner, form, Some(&tenant)) {
            Ok(grant) => grant.scope,
            Err(why) => return Some(invalid_grant(why)),
        },
        _ => {
            let sent = form.get("refresh_token").cloned().unwrap_or_default();
            let owner = inner.signins.entra_refresh_tokens.get(&sent).cloned();
            if owner != Some((tenant.clone(), client_id.clone())) {
                return Some(entra_error(
                    "invalid_grant",
                    700082,
                    "The refresh token has expired due to inactivity or was revoked.",
                ));
            }
            inner.signins.entra_refresh_tokens.remove(&sent);
            form.get("scope").cloned().unwrap_or_default()
        }
    };
    let refresh_token = format!("emu-ert-{}", random_token(36));
    inner
        .signins
        .entra_refresh_tokens
        .insert(refresh_token.clone(), (tenant, client_id));
    let resource_scope = scope
        .split(' ')
        .find(|s| s.ends_with("/.default"))
        .unwrap_or("https://management.azure.com/.default")
        .to_owned();
    let issued = inner.issue(
        Endpoint::EntraToken,
        "eyJ.emu-user-",
        Some(resource_scope.clone()),
    );
    let seconds = number_or_string(
        expires_in(&issued),
        inner.expiry_strings(Endpoint::EntraToken),
    );
    Some(reply::json(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "scope": resource_scope,
            "expires_in": seconds,
            "ext_expires_in": seconds,
            "access_token": issued.token,
            "refresh_token": refresh_token,
            "id_token": "eyJ.emu-id-token",
        }),
    ))
}

/// Google's `authorization_code` grant for a registered desktop client.
pub(crate) fn google_code(inner: &mut Inner, form: &HashMap<String, String>) -> Response {
    let client_id = form.get("client_id").cloned().unwrap_or_default();
    let secret_ok = inner
        .registry
        .authorized_users
        .get(&client_id)
        .is_some_and(|c| form.get("client_secret") == Some(&c.client_secret));
    if !secret_ok {
        return reply::json(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "invalid_client", "error_description": "Unauthorized"}),
        );
    }
    let grant = match redeem(inner, form, None) {
        Ok(grant) => grant,
        Err(why) => return invalid_grant(why),
    };
    let refresh_token = format!("1//emu-user-{}", random_token(36));
    if let Some(client) = inner.registry.authorized_users.get_mut(&client_id) {
        client.refresh_tokens.insert(refresh_token.clone());
    }
    let issued = inner.issue(
        Endpoint::GoogleToken,
        "ya29.emu-",
        Some(grant.scope.clone()),
    );
    inner.attribute(&issued.token, &format!("user:{client_id}"));
    reply::json(
        StatusCode::OK,
        &json!({
            "access_token": issued.token,
            "expires_in": expires_in(&issued),
            "refresh_token": refresh_token,
            "scope": grant.scope,
            "token_type": "Bearer",
        }),
    )
}

/// Takes the code of `form` (once), checking client, redirect URI and
/// the PKCE verifier against what the authorize page was sent.
fn redeem(
    inner: &mut Inner,
    form: &HashMap<String, String>,
    tenant: Option<&str>,
) -> Result<CodeGrant, &'static str> {
    let invalid = |description: &'static str| description;
    let code = form.get("code").cloned().unwrap_or_default();
    let Some(grant) = inner.signins.codes.remove(&code) else {
        return Err(invalid(
            "The authorization code is invalid or has been used.",
        ));
    };
    if Some(&grant.client_id) != form.get("client_id") || grant.tenant.as_deref() != tenant {
        return Err(invalid("The code was issued to another client."));
    }
    if Some(&grant.redirect_uri) != form.get("redirect_uri") {
        return Err(invalid(
            "redirect_uri does not match the one the code was issued for.",
        ));
    }
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    if challenge != grant.challenge {
        return Err(invalid(
            "The code_verifier does not match the code_challenge.",
        ));
    }
    Ok(grant)
}

/// The OAuth `invalid_grant` answer.
fn invalid_grant(description: &str) -> Response {
    reply::json(
        StatusCode::BAD_REQUEST,
        &json!({"error": "invalid_grant", "error_description": description}),
    )
}

/// `Some(refusal)` unless `client_id` is registered in `tenant`.
fn unknown_client(inner: &Inner, tenant: &str, client_id: &str) -> Option<Response> {
    let known = inner
        .registry
        .entra_tenants
        .get(tenant)
        .is_some_and(|clients| clients.contains_key(client_id));
    (!known).then(|| {
        entra_error(
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'."),
        )
    })
}

fn entra_error(error: &str, code: u32, description: &str) -> Response {
    reply::json(
        StatusCode::BAD_REQUEST,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}"),
            "error_codes": [code],
        }),
    )
}
