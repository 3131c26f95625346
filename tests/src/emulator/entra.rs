//! Microsoft Entra's v2.0 token endpoint, client-credentials grant, with a
//! client secret, a federated (workload identity) assertion, or a
//! certificate's client assertion (an RS256 JWT whose `x5t` names a
//! registered certificate and whose signature its public key verifies).

use std::collections::HashMap;

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD, URL_SAFE_NO_PAD_INDIFFERENT};
use chrono::Utc;
use serde_json::{Value, json};

use super::endpoint::{Call, Endpoint};
use super::google::{expires_in, number_or_string, parse_form};
use super::reply;
use super::state::{Inner, RegisteredCertificate, Shared, random_uuid};

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
    if let Some(refused) = authenticate(inner, tenant, client_id, secret.as_deref(), form) {
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
    tenant: &str,
    client_id: &str,
    secret: Option<&str>,
    form: &HashMap<String, String>,
) -> Option<Response> {
    if let Some(assertion) = form.get("client_assertion") {
        if form.get("client_assertion_type").map(String::as_str) != Some(JWT_ASSERTION_TYPE) {
            return Some(missing_parameter("client_assertion_type"));
        }
        if let Some(certificates) = inner.registry.entra_certificates.get(client_id) {
            let audience = format!("{}/{tenant}/oauth2/v2.0/token", inner.base);
            return certificate_assertion(assertion, certificates, client_id, &audience)
                .err()
                .map(|refused| *refused);
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

/// Checks a certificate's client assertion as Entra does: the `x5t` names
/// a registered certificate (or, for subject-name/issuer registration, the
/// leaf of the `x5c` chain has the registered subject), the signature
/// verifies with its key, and the claims are for this app and endpoint.
fn certificate_assertion(
    assertion: &str,
    certificates: &[RegisteredCertificate],
    client_id: &str,
    audience: &str,
) -> Result<(), Box<Response>> {
    let refuse = |code: u32, message: &str| {
        Box::new(error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            code,
            message,
        ))
    };
    let malformed = || refuse(50027, "JWT token is invalid or malformed.");
    let mut parts = assertion.split('.');
    let (Some(h), Some(c), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let header = decode_json(h).ok_or_else(malformed)?;
    let claims = decode_json(c).ok_or_else(malformed)?;
    let signature = URL_SAFE_NO_PAD_INDIFFERENT
        .decode(sig)
        .map_err(|_| malformed())?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(refuse(
            5002738,
            "Invalid JWT token. 'alg' is not supported.",
        ));
    }
    let x5t = header.get("x5t").and_then(Value::as_str).unwrap_or("");
    let x5c_leaf = header
        .get("x5c")
        .and_then(Value::as_array)
        .and_then(|chain| chain.first())
        .and_then(Value::as_str)
        .and_then(|der| STANDARD.decode(der).ok());
    let not_registered = || {
        refuse(
            700027,
            &format!(
                "The certificate with identifier used to sign the client assertion is not \
                 registered on application. [Reason - The key was not found., Thumbprint of key \
                 used by client: '{x5t}', Please visit the Azure Portal, Graph Explorer or \
                 directly use MS Graph to see configured keys for app Id '{client_id}'.]"
            ),
        )
    };
    let key = certificates
        .iter()
        .find_map(|registered| match &registered.subject {
            None => (registered.x5t == x5t).then(|| registered.public_key_der.clone()),
            Some(subject) => {
                let leaf = x5c_leaf.as_ref()?;
                let parsed = certificate_key(leaf)?;
                (parsed.x5t == x5t && parsed.subject.as_deref() == Some(subject.as_str()))
                    .then_some(parsed.public_key_der)
            }
        })
        .ok_or_else(not_registered)?;
    let signed = &assertion[..h.len() + 1 + c.len()];
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &key)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| {
            refuse(
                700027,
                "Client assertion contains an invalid signature. [Reason - The key was not found.]",
            )
        })?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(client_id) || text("sub") != Some(client_id) {
        return Err(refuse(
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        ));
    }
    if text("aud") != Some(audience) {
        return Err(refuse(
            700016,
            &format!(
                "Client assertion audience claim does not match Realm issuer: expected '{audience}'."
            ),
        ));
    }
    if text("jti").is_none_or(str::is_empty) {
        return Err(refuse(700023, "Client assertion has no jti claim."));
    }
    let now = Utc::now().timestamp();
    let number = |name: &str| claims.get(name).and_then(Value::as_i64);
    let in_time = match (number("nbf").or(number("iat")), number("exp")) {
        (Some(nbf), Some(exp)) => nbf <= now + 300 && exp > now - 300 && exp > nbf,
        _ => false,
    };
    if !in_time {
        return Err(refuse(
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    Ok(())
}

fn decode_json(part: &str) -> Option<serde_json::Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD_INDIFFERENT.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A certificate's thumbprint, key and subject CN, for registration and
/// for an assertion's `x5c` leaf; `None` if it is not an RSA certificate.
pub(crate) fn certificate_key(der: &[u8]) -> Option<RegisteredCertificate> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let spki = cert.public_key();
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
        return None;
    }
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    let subject = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    Some(RegisteredCertificate {
        x5t: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
        public_key_der: spki.subject_public_key.data.to_vec(),
        subject,
    })
}

/// The thumbprint and key of a PEM or DER certificate, to register it by
/// thumbprint; `None` if it is neither, or not RSA.
pub(crate) fn registered_certificate(certificate: &[u8]) -> Option<RegisteredCertificate> {
    let der = match x509_parser::pem::Pem::iter_from_buffer(certificate)
        .filter_map(Result::ok)
        .find(|p| p.label == "CERTIFICATE")
    {
        Some(pem) => pem.contents,
        None => certificate.to_vec(),
    };
    let mut registered = certificate_key(&der)?;
    registered.subject = None;
    Some(registered)
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

    /// A key and self-signed certificate with common name `cn`, made by
    /// `openssl`: (key PEM, certificate PEM).
    #[cfg(unix)]
    fn openssl_certificate(dir: &std::path::Path, cn: &str) -> (String, Vec<u8>) {
        let out = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "k.pem", "-out",
                "c.pem", "-days", "2", "-subj",
            ])
            .arg(format!("/CN={cn}"))
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            std::fs::read_to_string(dir.join("k.pem")).unwrap(),
            std::fs::read(dir.join("c.pem")).unwrap(),
        )
    }

    #[cfg(unix)]
    fn der(pem: &[u8]) -> Vec<u8> {
        x509_parser::pem::Pem::iter_from_buffer(pem)
            .next()
            .unwrap()
            .unwrap()
            .contents
    }

    #[cfg(unix)]
    fn assertion(key: &str, header: Value, claims: Value) -> String {
        let head = URL_SAFE_NO_PAD.encode(header.to_string());
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{head}.{body}");
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(key.as_bytes()).unwrap();
        let sig =
            jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::RS256)
                .unwrap();
        format!("{input}.{sig}")
    }

    #[test]
    #[cfg(unix)] // openssl makes the certificates
    fn certificate_assertions_are_checked_by_thumbprint_key_and_claims() {
        let emu = Emulator::start();
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = openssl_certificate(dir.path(), "app");
        emu.register_certificate(TENANT, CLIENT_ID, &cert);
        let x5t = super::certificate_key(&der(&cert)).unwrap().x5t;
        let aud = format!("{}/{TENANT}/oauth2/v2.0/token", emu.url());
        let now = Utc::now().timestamp();
        let claims = json!({"aud": aud, "iss": CLIENT_ID, "sub": CLIENT_ID, "jti": "j-1", "nbf": now, "iat": now, "exp": now + 600});
        let grant = |jwt: &str| {
            entra_grant(
                &emu,
                TENANT,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", CLIENT_ID),
                    ("client_assertion_type", JWT_ASSERTION_TYPE),
                    ("client_assertion", jwt),
                    ("scope", MANAGEMENT),
                ],
            )
        };
        let header = json!({"alg": "RS256", "typ": "JWT", "x5t": x5t});
        let (status, body) = grant(&assertion(&key, header.clone(), claims.clone()));
        assert_eq!(status, 200, "{body}");

        let (_, other_cert) = {
            let other = tempfile::tempdir().unwrap();
            openssl_certificate(other.path(), "other")
        };
        let other_x5t = super::certificate_key(&der(&other_cert)).unwrap().x5t;
        let (status, body) = grant(&assertion(
            &key,
            json!({"alg": "RS256", "x5t": other_x5t}),
            claims.clone(),
        ));
        assert_eq!(
            (status, body["error_codes"].clone()),
            (401, json!([700027])),
            "{body}"
        );

        let other_dir = tempfile::tempdir().unwrap();
        let (other_key, _) = openssl_certificate(other_dir.path(), "x");
        let (status, body) = grant(&assertion(&other_key, header.clone(), claims.clone()));
        assert_eq!(status, 401);
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("invalid signature"),
            "{body}"
        );

        for (field, value, code) in [
            (
                "aud",
                json!("https://login.microsoftonline.com/t/oauth2/v2.0/token"),
                700016,
            ),
            ("iss", json!("someone-else"), 700021),
            ("exp", json!(now - 3600), 700024),
        ] {
            let mut c = claims.clone();
            c[field] = value;
            let (status, body) = grant(&assertion(&key, header.clone(), c));
            assert_eq!(
                (status, body["error_codes"].clone()),
                (401, json!([code])),
                "{field}: {body}"
            );
        }
    }

    #[test]
    #[cfg(unix)] // openssl makes the certificates
    fn subject_name_registration_needs_the_chain() {
        let emu = Emulator::start();
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = openssl_certificate(dir.path(), "sni-app");
        emu.register_certificate_subject(TENANT, CLIENT_ID, "sni-app");
        let leaf = der(&cert);
        let x5t = super::certificate_key(&leaf).unwrap().x5t;
        let now = Utc::now().timestamp();
        let claims = json!({"aud": format!("{}/{TENANT}/oauth2/v2.0/token", emu.url()), "iss": CLIENT_ID, "sub": CLIENT_ID, "jti": "j", "nbf": now, "exp": now + 600});
        let grant = |header: Value| {
            entra_grant(
                &emu,
                TENANT,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", CLIENT_ID),
                    ("client_assertion_type", JWT_ASSERTION_TYPE),
                    ("client_assertion", &assertion(&key, header, claims.clone())),
                    ("scope", MANAGEMENT),
                ],
            )
        };
        assert_eq!(grant(json!({"alg": "RS256", "x5t": x5t})).0, 401);
        let (status, body) =
            grant(json!({"alg": "RS256", "x5t": x5t, "x5c": [STANDARD.encode(&leaf)]}));
        assert_eq!(status, 200, "{body}");
    }
}
