//! Microsoft Entra's v2.0 token endpoint, client-credentials grant, with a
//! client secret or a federated (workload identity) assertion.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use chrono::Utc;
use serde_json::json;

use super::endpoint::{Call, Endpoint};
use super::google::{expires_in, number_or_string, parse_form};
use super::reply;
use super::state::{Inner, Shared, random_uuid};

pub(crate) const JWT_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `POST /{tenant}/oauth2/v2.0/token`.
pub(crate) async fn token(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let tenant = uri.path().split('/').nth(1).unwrap_or("").to_owned();
    let form = parse_form(&body);
    let mut call = Call::new(Endpoint::EntraToken, &method, &uri);
    call.grant_type = form.get("grant_type").cloned();
    call.scope = form.get("scope").cloned();
    call.client_id = form.get("client_id").cloned();
    // The refresh token a signed-in user's client presented.
    call.bearer = form.get("refresh_token").cloned();
    shared
        .serve(call, |inner| answer(inner, &tenant, &form))
        .await
}

fn answer(inner: &mut Inner, tenant: &str, form: &HashMap<String, String>) -> Response {
    // Users' grants (device code, authorization code, refresh token).
    if let Some(answer) = super::signin::entra_grant(inner, tenant, form) {
        return answer;
    }
    let Some(clients) = inner
        .registry
        .entra_tenants
        .get(&tenant.to_ascii_lowercase())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID \
                 and are signing into the correct cloud. Check with your subscription \
                 administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        );
    };
    let Some(grant_type) = form.get("grant_type") else {
        return missing_parameter("grant_type");
    };
    if grant_type != "client_credentials" {
        return error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{grant_type}'."),
        );
    }
    let Some(client_id) = form.get("client_id") else {
        return missing_parameter("client_id");
    };
    let Some(secret) = clients.get(client_id) else {
        return error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory \
                 '{tenant}'. This can happen if the application has not been installed by the \
                 administrator of the tenant or consented to by any user in the tenant. You may \
                 have sent your authentication request to the wrong tenant."
            ),
        );
    };
    let Some(scope) = form.get("scope") else {
        return missing_parameter("scope");
    };
    if !scope.trim_end().ends_with("/.default") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must \
                 have a scope value with /.default suffixed to the resource identifier \
                 (application ID URI)."
            ),
        );
    }
    if let Some(refused) = authenticate(inner, client_id, secret.as_deref(), form) {
        return refused;
    }
    let issued = inner.issue(Endpoint::EntraToken, "eyJ.emu-", Some(scope.clone()));
    let seconds = number_or_string(
        expires_in(&issued),
        inner.expiry_strings(Endpoint::EntraToken),
    );
    reply::json(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "expires_in": seconds,
            "ext_expires_in": seconds,
            "access_token": issued.token,
        }),
    )
}

/// Checks the client's secret or federated assertion; `Some` is the refusal.
fn authenticate(
    inner: &Inner,
    client_id: &str,
    secret: Option<&str>,
    form: &HashMap<String, String>,
) -> Option<Response> {
    if let Some(assertion) = form.get("client_assertion") {
        if form.get("client_assertion_type").map(String::as_str) != Some(JWT_ASSERTION_TYPE) {
            return Some(missing_parameter("client_assertion_type"));
        }
        let accepted = match &inner.registry.federated_token {
            None => !assertion.trim().is_empty(),
            Some(expected) => assertion == expected,
        };
        return (!accepted).then(|| {
            error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                70021,
                "No matching federated identity record found for presented assertion.",
            )
        });
    }
    let Some(presented) = form.get("client_secret") else {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the \
             'client_credentials' grant type.",
        ));
    };
    (secret != Some(presented.as_str())).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is \
                 the client secret value, not the client secret ID, for a secret added to app \
                 '{client_id}'."
            ),
        )
    })
}

fn missing_parameter(name: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        &format!("The request body must contain the following parameter: '{name}'."),
    )
}

/// Entra's error shape. The description ends with trace lines separated by
/// CRLF, exactly as Entra sends it; a client showing one line must cut there.
fn error(status: StatusCode, error: &str, code: u32, message: &str) -> Response {
    let timestamp = Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    let trace_id = random_uuid();
    let correlation_id = random_uuid();
    let description = format!(
        "AADSTS{code}: {message} Trace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}"
    );
    let body = json!({
        "error": error,
        "error_description": description,
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    reply::json(status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::Emulator;
    use crate::emulator::testing::{CLIENT_ID, MANAGEMENT, SECRET, TENANT, entra_grant};

    fn secret_form<'a>(secret: &'a str, scope: &'a str) -> [(&'static str, &'a str); 4] {
        [
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", secret),
            ("scope", scope),
        ]
    }

    #[test]
    fn client_secret_good_and_bad() {
        let emu = Emulator::start();
        emu.register_client(TENANT, CLIENT_ID, SECRET);

        let (status, body) = entra_grant(&emu, TENANT, &secret_form(SECRET, MANAGEMENT));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3599);
        assert_eq!(body["ext_expires_in"], 3599);
        assert!(
            body["access_token"]
                .as_str()
                .unwrap()
                .starts_with("eyJ.emu-")
        );

        let (status, body) = entra_grant(&emu, TENANT, &secret_form("wrong", MANAGEMENT));
        assert_eq!(status, 401);
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(body["error_codes"], json!([7000215]));
        let description = body["error_description"].as_str().unwrap();
        assert!(description.starts_with("AADSTS7000215: Invalid client secret provided."));
        let timestamp = body["timestamp"].as_str().unwrap();
        assert!(chrono::NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%d %H:%M:%SZ").is_ok());
        assert_eq!(body["trace_id"].as_str().unwrap().len(), 36);
        assert_eq!(body["correlation_id"].as_str().unwrap().len(), 36);

        let log = emu.calls_to(Endpoint::EntraToken);
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].scope.as_deref(), Some(MANAGEMENT));
        assert_eq!(log[1].status, 401);
    }

    #[test]
    fn unknown_tenant_client_and_bad_scope() {
        let emu = Emulator::start();
        emu.register_client(TENANT, CLIENT_ID, SECRET);

        let (status, body) = entra_grant(&emu, "no-such-tenant", &secret_form(SECRET, MANAGEMENT));
        assert_eq!((status, body["error_codes"].clone()), (400, json!([90002])));

        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", "unknown-app"),
            ("client_secret", SECRET),
            ("scope", MANAGEMENT),
        ];
        let (status, body) = entra_grant(&emu, TENANT, &form);
        assert_eq!(status, 400);
        assert_eq!(body["error"], "unauthorized_client");
        assert_eq!(body["error_codes"], json!([700016]));

        let (status, body) = entra_grant(
            &emu,
            TENANT,
            &secret_form(SECRET, "https://management.azure.com/"),
        );
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_scope"))
        );

        let (status, body) = entra_grant(&emu, TENANT, &[("client_id", CLIENT_ID)]);
        assert_eq!(
            (status, body["error_codes"].clone()),
            (400, json!([900144]))
        );
    }

    #[test]
    fn federated_assertion() {
        let emu = Emulator::start();
        emu.register_federated_client(TENANT, CLIENT_ID);
        let assertion = |token: &'static str| {
            [
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_assertion_type", JWT_ASSERTION_TYPE),
                ("client_assertion", token),
                ("scope", MANAGEMENT),
            ]
        };
        let (status, body) = entra_grant(&emu, TENANT, &assertion("projected-token-1"));
        assert_eq!(status, 200, "{body}");

        emu.set_federated_token(Some("projected-token-2"));
        let (status, body) = entra_grant(&emu, TENANT, &assertion("projected-token-1"));
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_client"))
        );
        let (status, _) = entra_grant(&emu, TENANT, &assertion("projected-token-2"));
        assert_eq!(status, 200);

        // A federated-only app has no secret to match.
        let (status, body) = entra_grant(&emu, TENANT, &secret_form(SECRET, MANAGEMENT));
        assert_eq!(
            (status, body["error_codes"].clone()),
            (401, json!([7000215]))
        );
    }
}
