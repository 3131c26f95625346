//! Azure managed identity: the VM's IMDS endpoint and App Service's
//! identity endpoint. Both answer expiries as strings unless switched.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::json;

use super::endpoint::{Call, Endpoint};
use super::google::{expires_in, number_or_string, parse_form};
use super::reply;
use super::state::{Inner, Shared, header_text};

/// The client id reported for the system-assigned identity.
const SYSTEM_CLIENT_ID: &str = "5e29463d-71da-4fe0-8e69-999b57db23b0";

/// `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=…`
/// with `Metadata: true`.
pub(crate) async fn imds(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let query = parse_form(uri.query().unwrap_or("").as_bytes());
    let call = call(Endpoint::Imds, &method, &uri, &query);
    shared
        .serve(call, |inner| {
            let metadata = header_text(&headers, "metadata");
            if !metadata.is_some_and(|v| v.eq_ignore_ascii_case("true")) {
                return bad_request("Required metadata header not specified");
            }
            if headers.contains_key("x-forwarded-for") {
                return bad_request("Request contains X-Forwarded-For header");
            }
            answer(inner, Endpoint::Imds, &query)
        })
        .await
}

/// `GET /msi/token?api-version=2019-08-01&resource=…` with
/// `X-IDENTITY-HEADER: $IDENTITY_HEADER`.
pub(crate) async fn app_service(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let query = parse_form(uri.query().unwrap_or("").as_bytes());
    let call = call(Endpoint::AppServiceMsi, &method, &uri, &query);
    shared
        .serve(call, |inner| {
            let presented = header_text(&headers, "x-identity-header").filter(|v| !v.is_empty());
            let Some(presented) = presented else {
                return bad_request("Required header X-IDENTITY-HEADER not specified");
            };
            if let Some(expected) = &inner.registry.identity_header
                && &presented != expected
            {
                return reply::json(
                    StatusCode::UNAUTHORIZED,
                    &json!({
                        "error": "unauthorized_client",
                        "error_description": "X-IDENTITY-HEADER does not match the expected value",
                    }),
                );
            }
            answer(inner, Endpoint::AppServiceMsi, &query)
        })
        .await
}

fn call(endpoint: Endpoint, method: &Method, uri: &Uri, query: &HashMap<String, String>) -> Call {
    let mut call = Call::new(endpoint, method, uri);
    call.scope = query.get("resource").cloned();
    call.client_id = query.get("client_id").cloned();
    call
}

/// The token answer. IMDS includes `expires_in`; App Service sends only
/// `expires_on`, so a client must be able to work from either.
fn answer(inner: &mut Inner, endpoint: Endpoint, query: &HashMap<String, String>) -> Response {
    if query.get("api-version").is_none_or(|v| v.is_empty()) {
        return bad_request("Required query variable 'api-version' is missing");
    }
    let Some(resource) = query.get("resource").filter(|r| !r.is_empty()) else {
        return bad_request("Required audience parameter not specified");
    };
    let client_id = query
        .get("client_id")
        .cloned()
        .unwrap_or_else(|| SYSTEM_CLIENT_ID.to_owned());
    let issued = inner.issue(endpoint, "eyJ.emu-", Some(resource.clone()));
    let strings = inner.expiry_strings(endpoint);
    let expires_on = number_or_string(issued.expires_at.timestamp(), strings);
    let mut body = json!({
        "access_token": issued.token,
        "client_id": client_id,
        "expires_on": expires_on,
        "resource": resource,
        "token_type": "Bearer",
    });
    if endpoint == Endpoint::Imds {
        let seconds = number_or_string(expires_in(&issued), strings);
        let not_before =
            issued.expires_at.timestamp() - inner.lifetime_secs(endpoint).cast_signed();
        body["expires_in"] = seconds.clone();
        body["ext_expires_in"] = seconds;
        body["not_before"] = number_or_string(not_before, strings);
    }
    reply::json(StatusCode::OK, &body)
}

fn bad_request(description: &str) -> Response {
    reply::json(
        StatusCode::BAD_REQUEST,
        &json!({"error": "invalid_request", "error_description": description}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::Emulator;
    use crate::emulator::testing::{client, status_json};

    const RESOURCE: &str = "https://management.azure.com/";

    fn imds_url(emu: &Emulator) -> String {
        format!(
            "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={}",
            emu.url(),
            RESOURCE
        )
    }

    #[test]
    fn imds_requires_metadata_header() {
        let emu = Emulator::start();
        let (status, body) = status_json(client().get(imds_url(&emu)).send().unwrap());
        assert_eq!(status, 400);
        assert_eq!(
            body,
            json!({"error": "invalid_request", "error_description": "Required metadata header not specified"})
        );
    }

    #[test]
    fn imds_answers_strings_then_numbers() {
        let emu = Emulator::start();
        emu.set_lifetime(Endpoint::Imds, 86400);
        let get = || {
            status_json(
                client()
                    .get(imds_url(&emu))
                    .header("Metadata", "true")
                    .send()
                    .unwrap(),
            )
        };

        let (status, body) = get();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["expires_in"], "86399");
        assert_eq!(body["resource"], RESOURCE);
        assert_eq!(body["token_type"], "Bearer");
        let token = body["access_token"].as_str().unwrap();
        let issued = emu.token_info(token).unwrap();
        assert_eq!(
            body["expires_on"],
            issued.expires_at.timestamp().to_string()
        );
        assert_eq!(issued.scope.as_deref(), Some(RESOURCE));

        emu.set_expiry_strings(Endpoint::Imds, false);
        let (_, body) = get();
        assert_eq!(body["expires_in"], 86399);
        assert!(body["expires_on"].is_i64());
        assert_eq!(
            emu.calls_to(Endpoint::Imds)[0].scope.as_deref(),
            Some(RESOURCE)
        );
    }

    #[test]
    fn imds_needs_resource() {
        let emu = Emulator::start();
        let url = format!(
            "{}/metadata/identity/oauth2/token?api-version=2018-02-01",
            emu.url()
        );
        let (status, body) =
            status_json(client().get(url).header("Metadata", "true").send().unwrap());
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request"))
        );
    }

    #[test]
    fn app_service_checks_identity_header() {
        let emu = Emulator::start();
        emu.set_identity_header("expected-secret");
        let url = format!(
            "{}/msi/token?api-version=2019-08-01&resource={RESOURCE}",
            emu.url()
        );
        let get = |header: Option<&str>| {
            let mut request = client().get(&url);
            if let Some(value) = header {
                request = request.header("X-IDENTITY-HEADER", value);
            }
            status_json(request.send().unwrap())
        };
        assert_eq!(get(None).0, 400);
        assert_eq!(get(Some("wrong")).0, 401);
        let (status, body) = get(Some("expected-secret"));
        assert_eq!(status, 200, "{body}");
        assert!(body["expires_on"].is_string());
        assert!(
            body.get("expires_in").is_none(),
            "App Service sends only expires_on"
        );
        assert_eq!(emu.calls(Endpoint::AppServiceMsi), 3);
    }
}
