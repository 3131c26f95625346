//! Helpers for the emulator's own tests: an HTTP client that never goes
//! through a proxy, and ready-made tokens from the Google and Entra
//! endpoints for the endpoints that depend on them.

use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

use super::{Emulator, ServiceAccount};

pub(crate) const TENANT: &str = "11111111-2222-3333-4444-555555555555";
pub(crate) const CLIENT_ID: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
pub(crate) const SECRET: &str = "s3cret";
pub(crate) const MANAGEMENT: &str = "https://management.azure.com/.default";

/// A blocking client that ignores proxy variables (the emulator is on loopback).
pub(crate) fn client() -> Client {
    Client::builder()
        .no_proxy()
        .build()
        .expect("building an HTTP client")
}

/// Status and JSON body (`Value::Null` when the body is not JSON).
pub(crate) fn status_json(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Signs `claims` with the account's key, as Google's client libraries do.
pub(crate) fn sign_jwt(sa: &ServiceAccount, claims: &Value, with_kid: bool) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    if with_kid {
        header.kid = Some(sa.private_key_id.clone());
    }
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(sa.private_key_pem.as_bytes())
        .expect("the emulator's PEM parses");
    jsonwebtoken::encode(&header, claims, &key).expect("signing works")
}

/// Claims a well-behaved client sends for this account now.
pub(crate) fn claims(emu: &Emulator, sa: &ServiceAccount, scope: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"iss": sa.client_email, "aud": emu.token_uri(), "scope": scope, "iat": now, "exp": now + 3600})
}

/// Posts a JWT-bearer grant with this assertion.
pub(crate) fn jwt_grant(emu: &Emulator, assertion: &str) -> (u16, Value) {
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", assertion),
    ];
    status_json(
        client()
            .post(emu.token_uri())
            .form(&form)
            .send()
            .expect("emulator answers"),
    )
}

/// A Google access token for `scope` from a fresh service account.
pub(crate) fn google_token(emu: &Emulator, scope: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let sa = emu.write_service_account_key(dir.path().join("sa.json"));
    let (status, body) = jwt_grant(emu, &sign_jwt(&sa, &claims(emu, &sa, scope), true));
    assert_eq!(status, 200, "{body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// Posts a client-secret grant to the tenant.
pub(crate) fn entra_grant(emu: &Emulator, tenant: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let url = format!("{}/{tenant}/oauth2/v2.0/token", emu.url());
    status_json(
        client()
            .post(url)
            .form(form)
            .send()
            .expect("emulator answers"),
    )
}

/// An Entra token for `scope`, registering the standard test client.
pub(crate) fn entra_token(emu: &Emulator, scope: &str) -> String {
    emu.register_client(TENANT, CLIENT_ID, SECRET);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("client_secret", SECRET),
        ("scope", scope),
    ];
    let (status, body) = entra_grant(emu, TENANT, &form);
    assert_eq!(status, 200, "{body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}
