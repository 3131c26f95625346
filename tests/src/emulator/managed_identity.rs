//! Azure managed identity: the VM's IMDS endpoint, App Service's identity
//! endpoint (2019 and 2017 APIs), Cloud Shell's, and Azure Arc's with its
//! challenge file. All answer expiries as strings unless switched.

use std::collections::HashMap;

use std::path::PathBuf;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::json;

use super::endpoint::{Call, Endpoint};
use super::google::{expires_in, number_or_string, parse_form};
use super::reply;
use super::state::{Inner, Msi2017Form, Shared, header_text, random_token};

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

/// Cloud Shell: `POST /oauth2/token` with `Metadata: true` and the form
/// `resource=…`; no user-assigned identities.
pub(crate) async fn cloud_shell(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let call = call(Endpoint::CloudShellMsi, &method, &uri, &form);
    shared
        .serve(call, |inner| {
            let metadata = header_text(&headers, "metadata");
            if !metadata.is_some_and(|v| v.eq_ignore_ascii_case("true")) {
                return bad_request("Required metadata header not specified");
            }
            let mut form = form.clone();
            // Cloud Shell takes no api-version; the answer is IMDS's shape.
            form.insert("api-version".into(), "cloud-shell".into());
            answer(inner, Endpoint::CloudShellMsi, &form)
        })
        .await
}

/// App Service's 2017 API: `GET /MSI/token/?resource=…&api-version=2017-09-01`
/// with `secret: $MSI_SECRET`; `clientid` names a user-assigned identity;
/// `expires_on` is a date.
pub(crate) async fn app_service_2017(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut query = parse_form(uri.query().unwrap_or("").as_bytes());
    let mut call = call(Endpoint::AppService2017Msi, &method, &uri, &query);
    call.client_id = query.get("clientid").cloned();
    shared
        .serve(call, |inner| {
            let presented = header_text(&headers, "secret").filter(|v| !v.is_empty());
            let Some(presented) = presented else {
                return bad_request("Required header secret not specified");
            };
            if inner.registry.msi_secret.as_ref().is_some_and(|s| *s != presented) {
                return reply::json(
                    StatusCode::UNAUTHORIZED,
                    &json!({"error": "unauthorized_client", "error_description": "secret does not match"}),
                );
            }
            if query.get("api-version").map(String::as_str) != Some("2017-09-01") {
                return bad_request("api-version must be 2017-09-01");
            }
            if let Some(id) = query.remove("clientid") {
                query.insert("client_id".into(), id);
            }
            answer(inner, Endpoint::AppService2017Msi, &query)
        })
        .await
}

/// Azure Arc: `GET …?api-version=2020-06-01&resource=…` with `Metadata:
/// true`. Without `Authorization`, a fresh key is written to a `.key` file
/// in the scratch token directory and named in a 401 `WWW-Authenticate:
/// Basic realm=PATH`; with `Authorization: Basic KEY` for a key it wrote,
/// the token.
pub(crate) async fn arc(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let query = parse_form(uri.query().unwrap_or("").as_bytes());
    let call = call(Endpoint::ArcMsi, &method, &uri, &query);
    shared
        .serve(call, |inner| {
            let metadata = header_text(&headers, "metadata");
            if !metadata.is_some_and(|v| v.eq_ignore_ascii_case("true")) {
                return bad_request("Required metadata header not specified");
            }
            if query.contains_key("client_id") || query.contains_key("object_id") || query.contains_key("msi_res_id") {
                return bad_request("User-assigned managed identities are not supported on Azure Arc");
            }
            let presented = header_text(&headers, "authorization")
                .and_then(|v| v.strip_prefix("Basic ").map(str::to_owned));
            match presented {
                Some(key) if inner.registry.arc_keys.contains(&key) => {
                    answer(inner, Endpoint::ArcMsi, &query)
                }
                Some(_) => reply::json(
                    StatusCode::UNAUTHORIZED,
                    &json!({"error": "unauthorized_client", "error_description": "The secret key is not valid"}),
                ),
                None => challenge(inner),
            }
        })
        .await
}

/// Writes a new key file and answers the 401 that names it (or the
/// overriding path, without writing anything).
fn challenge(inner: &mut Inner) -> Response {
    let realm = match inner.registry.arc_realm_override.clone() {
        Some(path) => path,
        None => {
            let dir = arc_dir(inner);
            let key = random_token(32);
            let path = dir.join(format!("{}.key", random_token(12)));
            if std::fs::write(&path, &key).is_err() {
                return reply::json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"error": "cannot write the key file"}),
                );
            }
            inner.registry.arc_keys.insert(key);
            path.display().to_string()
        }
    };
    let mut response = reply::json(
        StatusCode::UNAUTHORIZED,
        &json!({"error": "unauthorized_client", "error_description": "Authorization header is missing"}),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("Basic realm={realm}")) {
        response.headers_mut().insert("www-authenticate", value);
    }
    response
}

/// The scratch directory Arc challenge files go in, made on first use.
pub(crate) fn arc_dir(inner: &mut Inner) -> PathBuf {
    if inner.registry.arc_dir.is_none() {
        inner.registry.arc_dir = tempfile::Builder::new()
            .prefix("emu-arc-tokens-")
            .tempdir()
            .ok();
    }
    inner
        .registry
        .arc_dir
        .as_ref()
        .map(|d| d.path().to_path_buf())
        .unwrap_or_else(std::env::temp_dir)
}

fn call(endpoint: Endpoint, method: &Method, uri: &Uri, query: &HashMap<String, String>) -> Call {
    let mut call = Call::new(endpoint, method, uri);
    call.scope = query.get("resource").cloned();
    call.client_id = query.get("client_id").cloned();
    call.identity = ["object_id", "principal_id", "msi_res_id", "mi_res_id"]
        .into_iter()
        .find_map(|key| query.get(key).map(|v| format!("{key}={v}")));
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
    let expires_on = if endpoint == Endpoint::AppService2017Msi {
        let at = issued.expires_at;
        match inner.registry.msi_2017_form {
            Msi2017Form::TwelveHour => json!(at.format("%m/%d/%Y %I:%M:%S %p +00:00").to_string()),
            Msi2017Form::TwentyFourHour => json!(at.format("%m/%d/%Y %H:%M:%S +00:00").to_string()),
            Msi2017Form::Epoch => expires_on,
        }
    } else {
        expires_on
    };
    let mut body = json!({
        "access_token": issued.token,
        "client_id": client_id,
        "expires_on": expires_on,
        "resource": resource,
        "token_type": "Bearer",
    });
    if matches!(
        endpoint,
        Endpoint::Imds | Endpoint::CloudShellMsi | Endpoint::ArcMsi
    ) {
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

    #[test]
    fn arc_challenges_with_a_key_file_and_takes_it_back() {
        let emu = Emulator::start();
        let url = format!(
            "{}/arc/metadata/identity/oauth2/token?api-version=2020-06-01&resource={RESOURCE}",
            emu.url()
        );
        let response = client()
            .get(&url)
            .header("Metadata", "true")
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 401);
        let realm = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        let path = realm.strip_prefix("Basic realm=").unwrap();
        assert!(
            path.starts_with(&emu.arc_token_dir().display().to_string()),
            "{path}"
        );
        assert!(path.ends_with(".key"));
        let key = std::fs::read_to_string(path).unwrap();
        let ask = |auth: &str| {
            status_json(
                client()
                    .get(&url)
                    .header("Metadata", "true")
                    .header("Authorization", auth)
                    .send()
                    .unwrap(),
            )
        };
        assert_eq!(ask("Basic wrong").0, 401);
        let (status, body) = ask(&format!("Basic {key}"));
        assert_eq!(status, 200, "{body}");
        assert!(body["expires_on"].is_string());

        emu.set_arc_challenge_path(Some("/etc/passwd"));
        let response = client()
            .get(&url)
            .header("Metadata", "true")
            .send()
            .unwrap();
        assert_eq!(
            response.headers()["www-authenticate"],
            "Basic realm=/etc/passwd"
        );
    }

    #[test]
    fn cloud_shell_and_app_service_2017() {
        let emu = Emulator::start();
        let (status, body) = status_json(
            client()
                .post(format!("{}/oauth2/token", emu.url()))
                .header("Metadata", "true")
                .form(&[("resource", RESOURCE)])
                .send()
                .unwrap(),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["resource"], RESOURCE);
        assert!(body["expires_in"].is_string());

        emu.set_msi_secret("s");
        let url = format!(
            "{}/MSI/token/?api-version=2017-09-01&resource={RESOURCE}&clientid=c-1",
            emu.url()
        );
        let (status, body) = status_json(client().get(&url).header("secret", "s").send().unwrap());
        assert_eq!(status, 200, "{body}");
        let on = body["expires_on"].as_str().unwrap();
        let parsed =
            chrono::NaiveDateTime::parse_from_str(on, "%m/%d/%Y %I:%M:%S %p +00:00").unwrap();
        let issued = emu.last_token(Endpoint::AppService2017Msi).unwrap();
        assert_eq!(parsed.and_utc().timestamp(), issued.expires_at.timestamp());
        assert_eq!(body["client_id"], "c-1");
        assert_eq!(
            client()
                .get(&url)
                .header("secret", "t")
                .send()
                .unwrap()
                .status()
                .as_u16(),
            401
        );
        emu.set_msi_2017_form(Msi2017Form::TwentyFourHour);
        let (_, body) = status_json(client().get(&url).header("secret", "s").send().unwrap());
        assert!(
            !body["expires_on"].as_str().unwrap().contains('M'),
            "{body}"
        );
    }
}
