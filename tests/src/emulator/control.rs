//! The HTTP control API under `/__emulator/`, mirroring the in-process API
//! so an out-of-process benchmark or demo can drive the emulator. Requests
//! and answers are JSON; a bad request answers 400 `{"error": "..."}`.
//! Control calls are neither counted nor logged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::container_app::app_key;
use super::credentials;
use super::endpoint::Endpoint;
use super::fault::Fault;
use super::reply;
use super::state::Shared;
use super::timestamp::TimestampForm;

/// The fault presets `POST /__emulator/fault` knows.
pub const FAULT_PRESETS: [&str; 8] = [
    "html",
    "malformed-json",
    "empty",
    "throttled",
    "slow",
    "wrong-types",
    "missing-expiry",
    "cut-off",
];

/// One control endpoint, as `credcache-emulator serve --help` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlEndpoint {
    pub method: &'static str,
    /// The path under the emulator's URL.
    pub path: &'static str,
    /// The JSON body it takes (`?` marks an optional field), or "".
    pub body: &'static str,
    /// What it does, one line.
    pub what: &'static str,
}

const fn control(
    method: &'static str,
    path: &'static str,
    body: &'static str,
    what: &'static str,
) -> ControlEndpoint {
    ControlEndpoint {
        method,
        path,
        body,
        what,
    }
}

/// Every route of [`routes`], in the order `serve --help` lists them. A test
/// checks that each one is routed.
pub const CONTROL_ENDPOINTS: [ControlEndpoint; 23] = [
    control(
        "GET",
        "/__emulator/calls",
        "",
        "call counts per endpoint and the call log",
    ),
    control(
        "POST",
        "/__emulator/reset",
        "",
        "zero the call counts, empty the call log",
    ),
    control(
        "POST",
        "/__emulator/fault",
        r#"{"endpoint","preset"?,"status"?,"body"?,"headers"?,"delay_ms"?,"times"?,"retry_after"?}"#,
        "queue a fault: what the endpoint answers instead (presets below)",
    ),
    control(
        "POST",
        "/__emulator/clear-faults",
        r#"{"endpoint"?}"#,
        "drop queued faults (no endpoint: every endpoint)",
    ),
    control(
        "POST",
        "/__emulator/lifetime",
        r#"{"endpoint","secs"}"#,
        "lifetime of tokens issued from now on (default 3600)",
    ),
    control(
        "POST",
        "/__emulator/same-token",
        r#"{"endpoint","on"}"#,
        "answer the previous token and expiry again",
    ),
    control(
        "POST",
        "/__emulator/timestamp-form",
        r#"{"endpoint","form"}"#,
        "how expiry timestamps are written: digits0|digits3|digits6|digits7|digits9|+HH:MM",
    ),
    control(
        "POST",
        "/__emulator/expiry-strings",
        r#"{"endpoint","on"}"#,
        "expires_in/expires_on as JSON strings instead of numbers",
    ),
    control(
        "POST",
        "/__emulator/service-account",
        r#"{"path"}"#,
        "write a new Google service-account key file there",
    ),
    control(
        "POST",
        "/__emulator/authorized-user",
        r#"{"path","quota_project_id"?}"#,
        "write a new Google authorized-user file there",
    ),
    control(
        "POST",
        "/__emulator/revoke-refresh-token",
        r#"{"refresh_token"}"#,
        "refuse that refresh token from now on (invalid_grant)",
    ),
    control(
        "POST",
        "/__emulator/entra-client",
        r#"{"tenant","client_id","secret"?}"#,
        "register an Entra app (no secret: federated credentials only)",
    ),
    control(
        "POST",
        "/__emulator/entra-certificate",
        r#"{"tenant","client_id","certificate"}"#,
        "register an Entra app with this certificate (PEM text): its client assertions are accepted",
    ),
    control(
        "POST",
        "/__emulator/msi-secret",
        r#"{"value"}"#,
        "the secret header App Service's 2017 identity endpoint requires",
    ),
    control(
        "POST",
        "/__emulator/federated-token",
        r#"{"token"}"#,
        "the only federated assertion Entra accepts (null: any)",
    ),
    control(
        "POST",
        "/__emulator/identity-header",
        r#"{"value"}"#,
        "the X-IDENTITY-HEADER App Service's identity endpoint requires",
    ),
    control(
        "POST",
        "/__emulator/cluster",
        r#"{"name"}"#,
        "register a GKE cluster (once any is, others answer 404)",
    ),
    control(
        "POST",
        "/__emulator/container-app",
        r#"{"subscription_id","resource_group","app"}"#,
        "register a container app (once any is, others answer 404)",
    ),
    control(
        "POST",
        "/__emulator/impersonation",
        r#"{"caller","target"}"#,
        "let caller (an SA email, or user:CLIENT_ID) impersonate target (once any is, others answer 403)",
    ),
    control(
        "POST",
        "/__emulator/lifetime-extension",
        r#"{"service_account"}"#,
        "let that service account's impersonated tokens live over an hour",
    ),
    control(
        "POST",
        "/__emulator/device-code",
        r#"{"outcome"?,"interval"?}"#,
        "play the user of pending device code sign-ins: pending|approve|decline|expire|slow-down; the interval handed out",
    ),
    control(
        "POST",
        "/__emulator/desktop-client",
        r#"{"path"}"#,
        "write a new Google \"Desktop app\" OAuth client file there (for credcache login)",
    ),
    control(
        "POST",
        "/__emulator/revoke-sign-ins",
        r#"{"client_id"}"#,
        "refuse every refresh token issued to that client from now on (invalid_grant)",
    ),
];

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/calls", get(calls))
        .route("/reset", post(reset))
        .route("/fault", post(push_fault))
        .route("/clear-faults", post(clear_faults))
        .route("/lifetime", post(lifetime))
        .route("/same-token", post(same_token))
        .route("/timestamp-form", post(timestamp_form))
        .route("/expiry-strings", post(expiry_strings))
        .route("/service-account", post(service_account))
        .route("/authorized-user", post(authorized_user))
        .route("/revoke-refresh-token", post(revoke_refresh_token))
        .route("/entra-client", post(entra_client))
        .route("/entra-certificate", post(entra_certificate))
        .route("/msi-secret", post(msi_secret))
        .route("/federated-token", post(federated_token))
        .route("/identity-header", post(identity_header))
        .route("/cluster", post(cluster))
        .route("/container-app", post(container_app))
        .route("/impersonation", post(impersonation))
        .route("/lifetime-extension", post(lifetime_extension))
        .route("/device-code", post(device_code))
        .route("/desktop-client", post(desktop_client))
        .route("/revoke-sign-ins", post(revoke_sign_ins))
}

/// `GET /__emulator/calls` → `{"counts": {"google-token": 3, ...}, "log": [Call, ...]}`.
async fn calls(State(shared): State<Shared>) -> Response {
    let inner = shared.lock();
    let counts: BTreeMap<&str, u64> = Endpoint::ALL
        .into_iter()
        .map(|endpoint| (endpoint.name(), inner.calls(endpoint)))
        .collect();
    reply::json(
        StatusCode::OK,
        &json!({"counts": counts, "log": inner.call_log()}),
    )
}

/// `POST /__emulator/reset`: zero the counters, empty the log.
async fn reset(State(shared): State<Shared>) -> Response {
    shared.lock().reset_counts();
    ok()
}

/// `POST /__emulator/fault`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    endpoint: Endpoint,
    /// One of [`FAULT_PRESETS`]; the fields below override the preset's.
    preset: Option<String>,
    status: Option<u16>,
    body: Option<String>,
    content_type: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    delay_ms: Option<u64>,
    /// Absent: once; `null`: until cleared.
    #[serde(default = "once")]
    times: Option<u32>,
    /// For `throttled`: the `Retry-After` seconds (default 1).
    retry_after: Option<u64>,
}

fn once() -> Option<u32> {
    Some(1)
}

impl FaultRequest {
    fn into_fault(self) -> Result<Fault, ControlError> {
        let status = self.status;
        let mut fault = match self.preset.as_deref() {
            None => Fault::json(status.unwrap_or(500), ""),
            Some("html") => Fault::html(status.unwrap_or(502)),
            Some("malformed-json") => Fault::malformed_json(),
            Some("empty") => Fault::empty_body(status.unwrap_or(200)),
            Some("throttled") => Fault::throttled(self.retry_after.unwrap_or(1)),
            Some("slow") => Fault::slow(Duration::ZERO),
            Some("wrong-types") => Fault::wrong_types(self.endpoint),
            Some("missing-expiry") => Fault::missing_expiry(self.endpoint),
            Some("cut-off") => Fault::cut_off(),
            Some(other) => {
                return Err(ControlError::UnknownPreset {
                    preset: other.to_owned(),
                });
            }
        };
        if let Some(status) = status {
            fault.status = status;
        }
        if let Some(body) = self.body {
            fault.body = body;
        }
        if let Some(content_type) = self.content_type {
            fault.content_type = content_type;
        }
        fault.headers.extend(self.headers);
        if let Some(ms) = self.delay_ms {
            fault.delay = Duration::from_millis(ms);
        }
        fault.times = self.times;
        Ok(fault)
    }
}

async fn push_fault(State(shared): State<Shared>, body: Bytes) -> Response {
    let request: FaultRequest = match parse(&body) {
        Ok(request) => request,
        Err(message) => return bad_request(&message),
    };
    let endpoint = request.endpoint;
    match request.into_fault() {
        Ok(fault) => {
            shared.lock().push_fault(endpoint, fault);
            ok()
        }
        Err(message) => bad_request(&message),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointOnly {
    /// Absent: every endpoint.
    endpoint: Option<Endpoint>,
}

/// `POST /__emulator/clear-faults {"endpoint"?}`.
async fn clear_faults(State(shared): State<Shared>, body: Bytes) -> Response {
    let request: EndpointOnly = match parse_or_empty(&body) {
        Ok(request) => request,
        Err(message) => return bad_request(&message),
    };
    let mut inner = shared.lock();
    match request.endpoint {
        Some(endpoint) => inner.clear_faults(endpoint),
        None => Endpoint::ALL
            .into_iter()
            .for_each(|e| inner.clear_faults(e)),
    }
    ok()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Lifetime {
    endpoint: Endpoint,
    secs: u64,
}

async fn lifetime(State(shared): State<Shared>, body: Bytes) -> Response {
    with(&body, |r: Lifetime| {
        shared.lock().set_lifetime(r.endpoint, r.secs)
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Switch {
    endpoint: Endpoint,
    on: bool,
}

async fn same_token(State(shared): State<Shared>, body: Bytes) -> Response {
    with(&body, |r: Switch| {
        shared.lock().set_same_token(r.endpoint, r.on)
    })
}

async fn expiry_strings(State(shared): State<Shared>, body: Bytes) -> Response {
    with(&body, |r: Switch| {
        shared.lock().set_expiry_strings(r.endpoint, r.on)
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Form {
    endpoint: Endpoint,
    /// `digits0|3|6|7|9` or an offset such as `+05:30`.
    form: String,
}

async fn timestamp_form(State(shared): State<Shared>, body: Bytes) -> Response {
    let request: Form = match parse(&body) {
        Ok(request) => request,
        Err(message) => return bad_request(&message),
    };
    match TimestampForm::parse(&request.form) {
        Some(form) => {
            shared.lock().set_timestamp_form(request.endpoint, form);
            ok()
        }
        None => bad_request(format!(
            "unknown timestamp form '{}' (digits0, digits3, digits6, digits7, digits9, +HH:MM)",
            request.form
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRequest {
    path: PathBuf,
    quota_project_id: Option<String>,
}

/// `POST /__emulator/service-account {"path"}` → the account's identifiers.
async fn service_account(State(shared): State<Shared>, body: Bytes) -> Response {
    let request: FileRequest = match parse(&body) {
        Ok(request) => request,
        Err(message) => return bad_request(&message),
    };
    // RSA key generation takes ~100 ms: keep it off the async workers.
    let written = tokio::task::spawn_blocking(move || {
        credentials::write_service_account(&shared, &request.path)
    })
    .await;
    match written {
        Ok(Ok(sa)) => reply::json(
            StatusCode::OK,
            &json!({
                "path": sa.path,
                "client_email": sa.client_email,
                "client_id": sa.client_id,
                "private_key_id": sa.private_key_id,
                "project_id": sa.project_id,
            }),
        ),
        Ok(Err(e)) => bad_request(format!("cannot write service account key: {e}")),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("key generation failed: {e}"),
        ),
    }
}

/// `POST /__emulator/authorized-user {"path", "quota_project_id"?}` → its secrets.
async fn authorized_user(State(shared): State<Shared>, body: Bytes) -> Response {
    let request: FileRequest = match parse(&body) {
        Ok(request) => request,
        Err(message) => return bad_request(&message),
    };
    let quota = request.quota_project_id.as_deref();
    match credentials::write_authorized_user(&shared, &request.path, quota) {
        Ok(user) => reply::json(
            StatusCode::OK,
            &json!({
                "path": user.path,
                "client_id": user.client_id,
                "client_secret": user.client_secret,
                "refresh_token": user.refresh_token,
                "quota_project_id": user.quota_project_id,
            }),
        ),
        Err(e) => bad_request(format!("cannot write authorized user file: {e}")),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshToken {
    refresh_token: String,
}

async fn revoke_refresh_token(State(shared): State<Shared>, body: Bytes) -> Response {
    with(&body, |r: RefreshToken| {
        shared.lock().revoke_refresh_token(&r.refresh_token);
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceCode {
    outcome: Option<String>,
    interval: Option<u64>,
}

/// `POST /__emulator/device-code {"outcome"?, "interval"?}`.
async fn device_code(State(shared): State<Shared>, body: Bytes) -> Response {
    let request: DeviceCode = match parse(&body) {
        Ok(request) => request,
        Err(message) => return bad_request(&message),
    };
    let outcome = match request
        .outcome
        .as_deref()
        .map(super::signin::DeviceOutcome::from_name)
    {
        Some(None) => {
            return bad_request(
                "unknown outcome: expected pending, approve, decline, expire or slow-down",
            );
        }
        Some(Some(o)) => Some(o),
        None => None,
    };
    let mut inner = shared.lock();
    if let Some(o) = outcome {
        inner.signins.outcome = o;
    }
    if let Some(secs) = request.interval {
        inner.signins.interval = secs;
    }
    ok()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DesktopClient {
    path: PathBuf,
}

/// `POST /__emulator/desktop-client {"path"}` → its client id and secret.
async fn desktop_client(State(shared): State<Shared>, body: Bytes) -> Response {
    let request: DesktopClient = match parse(&body) {
        Ok(request) => request,
        Err(message) => return bad_request(&message),
    };
    match credentials::write_desktop_client(&shared, &request.path) {
        Ok(client) => reply::json(
            StatusCode::OK,
            &json!({
                "path": client.path,
                "client_id": client.client_id,
                "client_secret": client.client_secret,
            }),
        ),
        Err(e) => bad_request(format!("cannot write desktop client file: {e}")),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientId {
    client_id: String,
}

/// `POST /__emulator/revoke-sign-ins {"client_id"}` → `{"revoked": N}`.
async fn revoke_sign_ins(State(shared): State<Shared>, body: Bytes) -> Response {
    let request: ClientId = match parse(&body) {
        Ok(request) => request,
        Err(message) => return bad_request(&message),
    };
    let revoked = shared.lock().revoke_sign_ins(&request.client_id);
    reply::json(StatusCode::OK, &json!({"revoked": revoked}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntraClient {
    tenant: String,
    client_id: String,
    /// Absent: federated credentials only.
    secret: Option<String>,
}

async fn entra_client(State(shared): State<Shared>, body: Bytes) -> Response {
    with(&body, |r: EntraClient| {
        let registry = &mut shared.lock().registry;
        registry.register_client(&r.tenant, &r.client_id, r.secret.as_deref());
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntraCertificate {
    tenant: String,
    client_id: String,
    /// PEM text.
    certificate: String,
}

async fn entra_certificate(State(shared): State<Shared>, body: Bytes) -> Response {
    let request: EntraCertificate = match parse(&body) {
        Ok(request) => request,
        Err(message) => return bad_request(&message),
    };
    let Some(registered) = super::entra::registered_certificate(request.certificate.as_bytes())
    else {
        return bad_request("certificate is not an RSA certificate in PEM");
    };
    let registry = &mut shared.lock().registry;
    registry.register_client(&request.tenant, &request.client_id, None);
    registry
        .entra_certificates
        .entry(request.client_id)
        .or_default()
        .push(registered);
    ok()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MsiSecret {
    value: String,
}

async fn msi_secret(State(shared): State<Shared>, body: Bytes) -> Response {
    with(&body, |r: MsiSecret| {
        shared.lock().registry.msi_secret = Some(r.value);
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FederatedToken {
    /// `null`: any non-empty assertion.
    token: Option<String>,
}

async fn federated_token(State(shared): State<Shared>, body: Bytes) -> Response {
    with(&body, |r: FederatedToken| {
        shared.lock().registry.federated_token = r.token
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityHeader {
    value: String,
}

async fn identity_header(State(shared): State<Shared>, body: Bytes) -> Response {
    with(&body, |r: IdentityHeader| {
        shared.lock().registry.identity_header = Some(r.value);
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cluster {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Impersonation {
    caller: String,
    target: String,
}

async fn impersonation(State(shared): State<Shared>, body: Bytes) -> Response {
    with(&body, |r: Impersonation| {
        shared
            .lock()
            .registry
            .impersonation
            .insert((r.caller, r.target));
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LifetimeExtension {
    service_account: String,
}

async fn lifetime_extension(State(shared): State<Shared>, body: Bytes) -> Response {
    with(&body, |r: LifetimeExtension| {
        shared
            .lock()
            .registry
            .lifetime_extension
            .insert(r.service_account);
    })
}

async fn cluster(State(shared): State<Shared>, body: Bytes) -> Response {
    with(&body, |r: Cluster| {
        shared.lock().registry.clusters.insert(r.name);
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainerApp {
    subscription_id: String,
    resource_group: String,
    app: String,
}

async fn container_app(State(shared): State<Shared>, body: Bytes) -> Response {
    with(&body, |r: ContainerApp| {
        let key = app_key(&r.subscription_id, &r.resource_group, &r.app);
        shared.lock().registry.container_apps.insert(key);
    })
}

/// Parses the body as `T`, applies `action`, answers `{"ok": true}`.
fn with<T: DeserializeOwned>(body: &Bytes, action: impl FnOnce(T)) -> Response {
    match parse(body) {
        Ok(request) => {
            action(request);
            ok()
        }
        Err(message) => bad_request(&message),
    }
}

/// Why a control request is answered 400.
#[derive(Debug, thiserror::Error)]
enum ControlError {
    #[error("bad request body: {0}")]
    Body(#[from] serde_json::Error),
    #[error("unknown preset '{preset}' (known: {})", FAULT_PRESETS.join(", "))]
    UnknownPreset { preset: String },
}

/// The body as `T`, or why not (a 400).
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ControlError> {
    Ok(serde_json::from_slice(body)?)
}

/// As [`parse`], an empty body meaning `{}`.
fn parse_or_empty<T: DeserializeOwned>(body: &Bytes) -> Result<T, ControlError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return parse(&Bytes::from_static(b"{}"));
    }
    parse(body)
}

fn ok() -> Response {
    reply::json(StatusCode::OK, &json!({"ok": true}))
}

fn bad_request(message: impl std::fmt::Display) -> Response {
    error(StatusCode::BAD_REQUEST, &message.to_string())
}

fn error(status: StatusCode, message: &str) -> Response {
    reply::json(status, &json!({"error": message}))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::emulator::testing::{client, status_json};
    use crate::emulator::{Emulator, Endpoint, TimestampForm};

    fn control(emu: &Emulator, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}/__emulator/{path}", emu.url());
        status_json(client().post(url).json(&body).send().unwrap())
    }

    fn metadata(emu: &Emulator) -> (u16, Value) {
        let url = format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/token",
            emu.url()
        );
        status_json(
            client()
                .get(url)
                .header("Metadata-Flavor", "Google")
                .send()
                .unwrap(),
        )
    }

    #[test]
    fn every_listed_control_endpoint_is_routed() {
        let emu = Emulator::start();
        for endpoint in super::CONTROL_ENDPOINTS {
            let url = format!("{}{}", emu.url(), endpoint.path);
            let request = match endpoint.method {
                "GET" => client().get(url),
                "POST" => client().post(url),
                other => panic!("{other} is not a method the list uses"),
            };
            let status = request.send().unwrap().status().as_u16();
            // An empty body is a bad request for most, but never unrouted.
            assert!(
                matches!(status, 200 | 400),
                "{} {}: {status}",
                endpoint.method,
                endpoint.path
            );
        }
        for preset in super::FAULT_PRESETS {
            let fault = serde_json::json!({"endpoint": "imds", "preset": preset});
            assert_eq!(control(&emu, "fault", fault).0, 200, "{preset}");
        }
        let (status, body) = control(
            &emu,
            "fault",
            serde_json::json!({"endpoint": "imds", "preset": "nope"}),
        );
        assert_eq!(status, 400);
        assert!(
            body["error"].as_str().unwrap().contains("cut-off"),
            "{body}"
        );
        let unlisted = format!("{}/__emulator/nope", emu.url());
        assert_eq!(client().post(unlisted).send().unwrap().status(), 404);
    }

    #[test]
    fn calls_report_counts_and_log() {
        let emu = Emulator::start();
        metadata(&emu);
        let url = format!("{}/__emulator/calls", emu.url());
        let (status, body) = status_json(client().get(&url).send().unwrap());
        assert_eq!(status, 200);
        assert_eq!(body["counts"]["google-metadata"], 1);
        assert_eq!(body["counts"]["gke-token"], 0);
        assert_eq!(body["log"][0]["endpoint"], "google-metadata");
        assert_eq!(body["log"][0]["status"], 200);

        assert_eq!(control(&emu, "reset", Value::Null).0, 200);
        let (_, body) = status_json(client().get(&url).send().unwrap());
        assert_eq!(body["counts"]["google-metadata"], 0);
        assert_eq!(body["log"], serde_json::json!([]));
    }

    #[test]
    fn faults_over_http() {
        let emu = Emulator::start();
        let fault = serde_json::json!({
            "endpoint": "google-metadata",
            "status": 503,
            "body": "{\"error\":\"busy\"}",
            "headers": [["Retry-After", "3"]],
            "times": 2,
        });
        assert_eq!(control(&emu, "fault", fault).0, 200);
        for _ in 0..2 {
            assert_eq!(metadata(&emu), (503, serde_json::json!({"error": "busy"})));
        }
        assert_eq!(metadata(&emu).0, 200);

        let forever = serde_json::json!({"endpoint": "google-metadata", "preset": "throttled", "retry_after": 9, "times": null});
        assert_eq!(control(&emu, "fault", forever).0, 200);
        assert_eq!(metadata(&emu).0, 429);
        assert_eq!(metadata(&emu).0, 429);
        let clear = serde_json::json!({"endpoint": "google-metadata"});
        assert_eq!(control(&emu, "clear-faults", clear).0, 200);
        assert_eq!(metadata(&emu).0, 200);

        let cut = serde_json::json!({"endpoint": "google-metadata", "preset": "cut-off"});
        assert_eq!(control(&emu, "fault", cut).0, 200);
        let url = format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/token",
            emu.url()
        );
        let response = client()
            .get(url)
            .header("Metadata-Flavor", "Google")
            .send()
            .unwrap();
        assert!(response.text().is_err(), "a cut-off body never completes");
        assert_eq!(metadata(&emu).0, 200);

        let (status, body) = control(&emu, "fault", serde_json::json!({"endpoint": "nope"}));
        assert_eq!(status, 400);
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("unknown endpoint 'nope'")
        );
        let (status, _) = control(
            &emu,
            "fault",
            serde_json::json!({"endpoint": "imds", "preset": "odd"}),
        );
        assert_eq!(status, 400);
    }

    #[test]
    fn switches_over_http() {
        let emu = Emulator::start();
        let lifetime = serde_json::json!({"endpoint": "google-metadata", "secs": 60});
        assert_eq!(control(&emu, "lifetime", lifetime).0, 200);
        assert_eq!(metadata(&emu).1["expires_in"], 59);
        let strings = serde_json::json!({"endpoint": "google-metadata", "on": true});
        assert_eq!(control(&emu, "expiry-strings", strings).0, 200);
        assert_eq!(metadata(&emu).1["expires_in"], "59");
        let same = serde_json::json!({"endpoint": "google-metadata", "on": true});
        assert_eq!(control(&emu, "same-token", same).0, 200);
        assert_eq!(
            metadata(&emu).1["access_token"],
            metadata(&emu).1["access_token"]
        );

        let form = serde_json::json!({"endpoint": "gke-token", "form": "+05:30"});
        assert_eq!(control(&emu, "timestamp-form", form).0, 200);
        let inner = emu.shared.lock();
        assert_eq!(
            inner.timestamp_form(Endpoint::GkeToken),
            TimestampForm::Offset(330)
        );
        drop(inner);
        let bad = serde_json::json!({"endpoint": "gke-token", "form": "soon"});
        assert_eq!(control(&emu, "timestamp-form", bad).0, 400);
        assert_eq!(
            control(&emu, "lifetime", serde_json::json!({"secs": "x"})).0,
            400
        );
    }

    #[test]
    fn writes_credential_files() {
        let emu = Emulator::start();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sa.json");
        let (status, body) = control(&emu, "service-account", serde_json::json!({"path": path}));
        assert_eq!(status, 200, "{body}");
        let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(file["client_email"], body["client_email"]);
        assert_eq!(file["token_uri"], emu.token_uri());

        let path = dir.path().join("adc.json");
        let request = serde_json::json!({"path": path, "quota_project_id": "q"});
        let (status, body) = control(&emu, "authorized-user", request);
        assert_eq!(status, 200, "{body}");
        let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(file["refresh_token"], body["refresh_token"]);
        assert_eq!(file["quota_project_id"], "q");

        let missing = dir.path().join("no/such/dir/sa.json");
        let (status, _) = control(
            &emu,
            "service-account",
            serde_json::json!({"path": missing}),
        );
        assert_eq!(status, 400);
    }

    #[test]
    fn registers_identities() {
        let emu = Emulator::start();
        let client_request = serde_json::json!({"tenant": "t", "client_id": "c", "secret": "s"});
        assert_eq!(control(&emu, "entra-client", client_request).0, 200);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", "c"),
            ("client_secret", "s"),
            ("scope", "https://management.azure.com/.default"),
        ];
        let url = format!("{}/t/oauth2/v2.0/token", emu.url());
        assert_eq!(client().post(url).form(&form).send().unwrap().status(), 200);
        for (path, body) in [
            ("identity-header", serde_json::json!({"value": "h"})),
            ("federated-token", serde_json::json!({"token": null})),
            (
                "cluster",
                serde_json::json!({"name": "projects/p/locations/l/azureClusters/c"}),
            ),
            (
                "container-app",
                serde_json::json!({"subscription_id": "s", "resource_group": "r", "app": "a"}),
            ),
            (
                "revoke-refresh-token",
                serde_json::json!({"refresh_token": "1//x"}),
            ),
        ] {
            assert_eq!(control(&emu, path, body).0, 200, "{path}");
        }
        let inner = emu.shared.lock();
        assert_eq!(inner.registry.identity_header.as_deref(), Some("h"));
        assert!(inner.registry.container_apps.contains("s/r/a"));
    }

    #[test]
    #[cfg(unix)] // openssl makes the certificate
    fn registers_certificates_and_the_msi_secret() {
        let emu = Emulator::start();
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "k.pem",
            ])
            .args(["-out", "c.pem", "-days", "1", "-subj", "/CN=c"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        let pem = std::fs::read_to_string(dir.path().join("c.pem")).unwrap();
        let body = serde_json::json!({"tenant": "t", "client_id": "c", "certificate": pem});
        assert_eq!(control(&emu, "entra-certificate", body).0, 200);
        let body = serde_json::json!({"tenant": "t", "client_id": "d", "certificate": "nope"});
        assert_eq!(control(&emu, "entra-certificate", body).0, 400);
        assert_eq!(
            control(&emu, "msi-secret", serde_json::json!({"value": "m"})).0,
            200
        );
        let inner = emu.shared.lock();
        assert_eq!(inner.registry.entra_certificates["c"].len(), 1);
        assert!(!inner.registry.entra_certificates.contains_key("d"));
        assert_eq!(inner.registry.msi_secret.as_deref(), Some("m"));
    }
}
