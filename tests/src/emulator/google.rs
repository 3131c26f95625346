//! Google: the OAuth token endpoint (`POST /token`, JWT-bearer and
//! refresh-token grants) and the GCE metadata server's token endpoint.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use chrono::Utc;
use serde_json::{Value, json};

use super::credentials::PROJECT_ID;
use super::endpoint::{Call, Endpoint};
use super::jwt::{self, Rejection};
use super::reply;
use super::state::{Inner, IssuedToken, Shared, header_text};

pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// What the metadata server grants when no `scopes` are asked for.
pub(crate) const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Scopes granted on a refresh-token grant that names none (gcloud ADC's).
const USER_SCOPES: &str = "https://www.googleapis.com/auth/userinfo.email \
                           https://www.googleapis.com/auth/cloud-platform openid";

/// The metadata server's default service account.
pub(crate) const DEFAULT_EMAIL: &str = "emu-default@emu-project.iam.gserviceaccount.com";

/// `POST /token`.
pub(crate) async fn token(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let mut call = Call::new(Endpoint::GoogleToken, &method, &uri);
    call.grant_type = form.get("grant_type").cloned();
    call.client_id = form.get("client_id").cloned();
    call.user_project = header_text(&headers, "x-goog-user-project");
    call.scope = match form.get("assertion") {
        Some(assertion) => jwt::peek_scope(assertion),
        None => form.get("scope").cloned(),
    };
    shared.serve(call, |inner| answer_token(inner, &form)).await
}

fn answer_token(inner: &mut Inner, form: &HashMap<String, String>) -> Response {
    match form.get("grant_type").map(String::as_str) {
        Some(JWT_BEARER) => jwt_bearer(inner, form),
        Some("refresh_token") => refresh(inner, form),
        Some("authorization_code") => super::signin::google_code(inner, form),
        other => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("Invalid grant_type: {}", other.unwrap_or("")),
        ),
    }
}

fn jwt_bearer(inner: &mut Inner, form: &HashMap<String, String>) -> Response {
    let Some(assertion) = form.get("assertion") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: assertion",
        );
    };
    let token_uri = format!("{}/token", inner.base);
    let now = Utc::now().timestamp();
    match jwt::verify(assertion, &inner.registry, &token_uri, now) {
        Ok(verified) if verified.target_audience.is_some() => {
            let audience = verified.target_audience.unwrap_or_default();
            let token = super::iam::sign_id_token(
                inner,
                Endpoint::GoogleToken,
                &verified.client_email,
                &audience,
                true,
            );
            reply::json(StatusCode::OK, &json!({"id_token": token}))
        }
        Ok(verified) => {
            let issued = inner.issue(Endpoint::GoogleToken, "ya29.emu-", Some(verified.scope));
            inner.attribute(&issued.token, &verified.client_email);
            success(inner, Endpoint::GoogleToken, &issued, None)
        }
        Err(Rejection::Grant(description)) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &description)
        }
        Err(Rejection::Scope) => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        ),
    }
}

fn refresh(inner: &mut Inner, form: &HashMap<String, String>) -> Response {
    let client_id = form.get("client_id").map(String::as_str).unwrap_or("");
    let Some(client) = inner.registry.authorized_users.get(client_id) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.",
        );
    };
    if form.get("client_secret") != Some(&client.client_secret) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized");
    }
    let known = form
        .get("refresh_token")
        .is_some_and(|token| client.refresh_tokens.contains(token));
    if !known {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Token has been expired or revoked.",
        );
    }
    let scope = form
        .get("scope")
        .cloned()
        .unwrap_or_else(|| USER_SCOPES.to_owned());
    let issued = inner.issue(Endpoint::GoogleToken, "ya29.emu-", Some(scope.clone()));
    inner.attribute(&issued.token, &format!("user:{client_id}"));
    success(inner, Endpoint::GoogleToken, &issued, Some(&scope))
}

/// `GET /computeMetadata/v1/instance/service-accounts/default/token`.
pub(crate) async fn metadata_token(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let query = parse_form(uri.query().unwrap_or("").as_bytes());
    let mut call = Call::new(Endpoint::GoogleMetadata, &method, &uri);
    call.scope = query.get("scopes").cloned();
    shared
        .serve(call, |inner| {
            if let Some(refused) = refuse_metadata(&headers) {
                return refused;
            }
            let scope = match query.get("scopes") {
                Some(scopes) => scopes.replace(',', " "),
                None => CLOUD_PLATFORM.to_owned(),
            };
            let issued = inner.issue(Endpoint::GoogleMetadata, "ya29.emu-", Some(scope));
            inner.attribute(&issued.token, DEFAULT_EMAIL);
            let response = success(inner, Endpoint::GoogleMetadata, &issued, None);
            reply::add_header(response, "metadata-flavor", "Google")
        })
        .await
}

/// `GET /computeMetadata/v1/instance/service-accounts/default/identity?audience=A[&format=full]`:
/// an ID token for the default account, as plain text.
pub(crate) async fn metadata_identity(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let query = parse_form(uri.query().unwrap_or("").as_bytes());
    let mut call = Call::new(Endpoint::GoogleMetadata, &method, &uri);
    call.scope = query.get("audience").cloned();
    shared
        .serve(call, |inner| {
            if let Some(refused) = refuse_metadata(&headers) {
                return refused;
            }
            let Some(audience) = query.get("audience").filter(|a| !a.is_empty()) else {
                return reply::text(
                    StatusCode::BAD_REQUEST,
                    "non-empty audience parameter required\n",
                );
            };
            let full = query.get("format").map(String::as_str) == Some("full");
            let token = super::iam::sign_id_token(
                inner,
                Endpoint::GoogleMetadata,
                DEFAULT_EMAIL,
                audience,
                full,
            );
            reply::add_header(
                reply::text(StatusCode::OK, token),
                "metadata-flavor",
                "Google",
            )
        })
        .await
}

/// The metadata server's other paths a client may probe (root, project id,
/// default account email). Not counted: they issue nothing.
pub(crate) async fn metadata_probe(uri: Uri, headers: HeaderMap) -> Response {
    if let Some(refused) = refuse_metadata(&headers) {
        return refused;
    }
    let body = match uri.path() {
        "/computeMetadata/v1/project/project-id" => PROJECT_ID,
        "/computeMetadata/v1/instance/service-accounts/default/email" => DEFAULT_EMAIL,
        _ => "computeMetadata/\n",
    };
    reply::add_header(
        reply::text(StatusCode::OK, body),
        "metadata-flavor",
        "Google",
    )
}

/// The root, which Google's libraries ping without the request header and
/// recognise by the response header.
pub(crate) async fn metadata_root() -> Response {
    reply::add_header(
        reply::text(StatusCode::OK, "computeMetadata/\n"),
        "metadata-flavor",
        "Google",
    )
}

/// The metadata server answers only direct requests carrying
/// `Metadata-Flavor: Google`.
fn refuse_metadata(headers: &HeaderMap) -> Option<Response> {
    if headers.contains_key("x-forwarded-for") {
        return Some(reply::text(
            StatusCode::FORBIDDEN,
            "Request contained X-Forwarded-For header; proxied requests are refused.\n",
        ));
    }
    let flavor = header_text(headers, "metadata-flavor");
    if flavor.as_deref() != Some("Google") {
        return Some(reply::text(
            StatusCode::FORBIDDEN,
            "Missing required header \"Metadata-Flavor: Google\".\n",
        ));
    }
    None
}

/// `{"access_token","expires_in","token_type"[,"scope"]}`; `expires_in` is
/// the whole seconds left less one, as Google rounds.
fn success(
    inner: &Inner,
    endpoint: Endpoint,
    issued: &IssuedToken,
    scope: Option<&str>,
) -> Response {
    let expires_in = expires_in(issued);
    let mut body = json!({
        "access_token": issued.token,
        "expires_in": number_or_string(expires_in, inner.expiry_strings(endpoint)),
        "token_type": "Bearer",
    });
    if let Some(scope) = scope {
        body["scope"] = json!(scope);
    }
    reply::json(StatusCode::OK, &body)
}

/// Whole seconds until expiry, rounded up, less one (a fresh token of
/// lifetime 3600 says 3599); never negative.
pub(crate) fn expires_in(issued: &IssuedToken) -> i64 {
    let millis = (issued.expires_at - Utc::now()).num_milliseconds();
    if millis <= 0 {
        return 0;
    }
    (millis + 999) / 1000 - 1
}

/// A JSON number, or the same digits as a string (managed identity's way).
pub(crate) fn number_or_string(n: i64, as_string: bool) -> Value {
    if as_string {
        json!(n.to_string())
    } else {
        json!(n)
    }
}

/// Google's OAuth error shape.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    reply::json(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

/// An `application/x-www-form-urlencoded` body or query; the first value of
/// a repeated key wins. Anything undecodable is simply absent.
pub(crate) fn parse_form(bytes: &[u8]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (key, value) in url::form_urlencoded::parse(bytes) {
        map.entry(key.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::Emulator;
    use crate::emulator::testing::{claims, client, jwt_grant, sign_jwt, status_json};

    #[test]
    fn jwt_grant_issues_a_token_and_logs_the_call() {
        let emu = Emulator::start();
        let dir = tempfile::tempdir().unwrap();
        let sa = emu.write_service_account_key(dir.path().join("sa.json"));
        let assertion = sign_jwt(&sa, &claims(&emu, &sa, CLOUD_PLATFORM), true);
        let form = [
            ("grant_type", JWT_BEARER),
            ("assertion", assertion.as_str()),
        ];
        let response = client()
            .post(emu.token_uri())
            .header("x-goog-user-project", "billing-proj")
            .form(&form)
            .send()
            .unwrap();
        let (status, body) = status_json(response);
        assert_eq!(status, 200, "{body}");
        assert!(
            body["access_token"]
                .as_str()
                .unwrap()
                .starts_with("ya29.emu-")
        );
        assert_eq!(body["expires_in"], 3599);
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(emu.calls(Endpoint::GoogleToken), 1);
        let call = &emu.calls_to(Endpoint::GoogleToken)[0];
        assert_eq!(call.status, 200);
        assert_eq!(call.grant_type.as_deref(), Some(JWT_BEARER));
        assert_eq!(call.scope.as_deref(), Some(CLOUD_PLATFORM));
        assert_eq!(call.user_project.as_deref(), Some("billing-proj"));
        let issued = emu
            .token_info(body["access_token"].as_str().unwrap())
            .unwrap();
        assert_eq!(issued.scope.as_deref(), Some(CLOUD_PLATFORM));
    }

    #[test]
    fn jwt_grant_refuses_bad_signature_and_audience() {
        let emu = Emulator::start();
        let dir = tempfile::tempdir().unwrap();
        let sa = emu.write_service_account_key(dir.path().join("sa.json"));

        let mut wrong_aud = claims(&emu, &sa, CLOUD_PLATFORM);
        wrong_aud["aud"] = json!("https://oauth2.googleapis.com/token");
        let (status, body) = jwt_grant(&emu, &sign_jwt(&sa, &wrong_aud, true));
        assert_eq!(status, 400);
        assert_eq!(body["error"], "invalid_grant");
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.starts_with("Invalid JWT: Failed audience check"),
            "{description}"
        );

        let good = sign_jwt(&sa, &claims(&emu, &sa, CLOUD_PLATFORM), true);
        let (header, rest) = good.split_once('.').unwrap();
        let (_, signature) = rest.rsplit_once('.').unwrap();
        let other_claims = sign_jwt(&sa, &claims(&emu, &sa, "other-scope"), true);
        let other_payload = other_claims.split('.').nth(1).unwrap();
        let spliced = format!("{header}.{other_payload}.{signature}");
        let (status, body) = jwt_grant(&emu, &spliced);
        assert_eq!(status, 400);
        assert_eq!(body["error_description"], "Invalid JWT Signature.");

        let (status, body) = jwt_grant(&emu, "garbage");
        assert_eq!(status, 400);
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .starts_with("Invalid JWT")
        );

        emu.disable_service_account(&sa.client_email);
        let (status, body) = jwt_grant(&emu, &good);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        assert_eq!(emu.calls(Endpoint::GoogleToken), 4);
    }

    #[test]
    fn refresh_grant_accepts_until_revoked() {
        let emu = Emulator::start();
        let dir = tempfile::tempdir().unwrap();
        let user = emu
            .try_write_authorized_user(dir.path().join("adc.json"), Some("quota"))
            .unwrap();
        let grant = |client_id: &str, secret: &str| {
            let form = [
                ("grant_type", "refresh_token"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("refresh_token", user.refresh_token.as_str()),
            ];
            status_json(client().post(emu.token_uri()).form(&form).send().unwrap())
        };

        let (status, body) = grant(&user.client_id, &user.client_secret);
        assert_eq!(status, 200, "{body}");
        assert!(body["scope"].as_str().unwrap().contains(CLOUD_PLATFORM));
        assert_eq!(body["expires_in"], 3599);

        let (status, body) = grant("nobody.apps.googleusercontent.com", &user.client_secret);
        assert_eq!(status, 401);
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(body["error_description"], "The OAuth client was not found.");
        let (status, body) = grant(&user.client_id, "wrong");
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );

        emu.revoke_refresh_token(&user.refresh_token);
        let (status, body) = grant(&user.client_id, &user.client_secret);
        assert_eq!(status, 400);
        assert_eq!(
            body,
            json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
        );
    }

    #[test]
    fn unknown_grant_and_lifetime_and_string_expiry() {
        let emu = Emulator::start();
        let form = [("grant_type", "password")];
        let (status, body) =
            status_json(client().post(emu.token_uri()).form(&form).send().unwrap());
        assert_eq!(status, 400);
        assert_eq!(body["error"], "unsupported_grant_type");

        emu.set_lifetime(Endpoint::GoogleToken, 120);
        emu.set_expiry_strings(Endpoint::GoogleToken, true);
        let dir = tempfile::tempdir().unwrap();
        let sa = emu.write_service_account_key(dir.path().join("sa.json"));
        let (status, body) = jwt_grant(
            &emu,
            &sign_jwt(&sa, &claims(&emu, &sa, CLOUD_PLATFORM), true),
        );
        assert_eq!(status, 200);
        assert_eq!(body["expires_in"], "119");
    }

    #[test]
    fn metadata_requires_its_header() {
        let emu = Emulator::start();
        let url = format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/token?scopes=a,b",
            emu.url()
        );
        let response = client().get(&url).send().unwrap();
        assert_eq!(response.status(), 403);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );

        let forwarded = client()
            .get(&url)
            .header("Metadata-Flavor", "Google")
            .header("X-Forwarded-For", "10.0.0.1")
            .send()
            .unwrap();
        assert_eq!(forwarded.status(), 403);

        let response = client()
            .get(&url)
            .header("Metadata-Flavor", "Google")
            .send()
            .unwrap();
        assert_eq!(response.headers()["metadata-flavor"], "Google");
        let (status, body) = status_json(response);
        assert_eq!(status, 200);
        assert_eq!(body["expires_in"], 3599);
        assert_eq!(body["token_type"], "Bearer");
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(emu.token_info(token).unwrap().scope.as_deref(), Some("a b"));
        assert_eq!(emu.calls(Endpoint::GoogleMetadata), 3);
        let log = emu.calls_to(Endpoint::GoogleMetadata);
        assert_eq!(
            log.iter().map(|c| c.status).collect::<Vec<_>>(),
            [403, 403, 200]
        );
        assert_eq!(log[2].scope.as_deref(), Some("a,b"));

        let root = client().get(emu.url()).send().unwrap();
        assert_eq!(root.headers()["metadata-flavor"], "Google");
        let project = client()
            .get(format!(
                "{}/computeMetadata/v1/project/project-id",
                emu.url()
            ))
            .header("Metadata-Flavor", "Google")
            .send()
            .unwrap();
        assert_eq!(project.text().unwrap(), PROJECT_ID);
    }
}
