//! `kind = "google-id-token"` against the emulator: ID tokens minted from a
//! service-account key, through impersonation and from the metadata
//! server, in every output format; an authorized user refused at load.

use base64::Engine as _;
use credcache_tests::emulator::{Emulator, Endpoint};

use crate::harness::Sandbox;

const AUDIENCE: &str = "https://api-abc123-uc.a.run.app";
const TARGET: &str = "invoker@emu-project.iam.gserviceaccount.com";

/// The claims of a JWT (the emulator signs them RS256).
fn claims(jwt: &str) -> serde_json::Value {
    let mut parts = jwt.split('.');
    let header = parts.next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RS256", "{header}");
    let payload = parts.next().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// Asserts the ID token is for `AUDIENCE`, issued to `subject`, and that
/// credcache's expiry is its `exp`.
fn assert_id_token(sb: &Sandbox, name: &str, subject: &str) -> String {
    let json: serde_json::Value =
        serde_json::from_str(sb.run(["get", name, "--format", "json"]).ok()).unwrap();
    let token = json["token"].as_str().unwrap().to_owned();
    let c = claims(&token);
    assert_eq!(c["aud"], AUDIENCE);
    assert_eq!(c["sub"], subject);
    let exp = chrono::DateTime::from_timestamp(c["exp"].as_i64().unwrap(), 0).unwrap();
    let expires_at = chrono::DateTime::parse_from_rfc3339(json["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(expires_at, exp, "the expiry is the JWT's exp");
    assert_eq!(json["kind"], "google-id-token");
    token
}

fn id_token_config(auth: &str, extra: &str) -> String {
    format!(
        "[credentials.run]\nkind = \"google-id-token\"\nauth = {auth:?}\naudience = {AUDIENCE:?}\n{extra}"
    )
}

#[test]
fn an_id_token_from_a_service_account_key_in_every_format() {
    let emu = Emulator::start();
    let sb = Sandbox::new();
    let key = sb.dir.path().join("sa.json");
    let sa = emu.write_service_account_key(&key);
    sb.write_config(&format!(
        "[credentials.gcp]\nkind = \"google\"\nkey_file = {:?}\n{}",
        key.display().to_string(),
        id_token_config("gcp", "")
    ));
    let token = assert_id_token(&sb, "run", &sa.client_email);
    let call = &emu.calls_to(Endpoint::GoogleToken)[0];
    assert_eq!(
        (call.status, call.scope.as_deref()),
        (200, None),
        "a target_audience grant, no scope"
    );
    assert_eq!(
        sb.run(["get", "run", "--format", "header"]).ok(),
        format!("Authorization: Bearer {token}\n")
    );
    assert_eq!(sb.get("run"), token);
    let env = sb.run(["get", "run", "--format", "env"]).ok().to_owned();
    assert_eq!(env, format!("export CREDCACHE_RUN_TOKEN='{token}'\n"));
    let exec: serde_json::Value =
        serde_json::from_str(sb.run(["get", "run", "--format", "exec-credential"]).ok()).unwrap();
    assert_eq!(exec["status"]["token"], token.as_str());
    assert_eq!(emu.calls(Endpoint::GoogleToken), 1, "cached");
}

#[test]
fn an_id_token_through_impersonation_shares_the_source() {
    let emu = Emulator::start();
    let sb = Sandbox::new();
    let key = sb.dir.path().join("sa.json");
    let sa = emu.write_service_account_key(&key);
    emu.grant_impersonation(&sa.client_email, TARGET);
    sb.write_config(&format!(
        "[credentials.invoker]\nkind = \"google\"\nkey_file = {:?}\nimpersonate_service_account = {TARGET:?}\niam_endpoint = {:?}\n{}",
        key.display().to_string(),
        emu.url(),
        id_token_config("invoker", "include_email = true\n")
    ));
    let token = assert_id_token(&sb, "run", TARGET);
    assert_eq!(claims(&token)["email"], TARGET);
    sb.get("invoker");
    assert_eq!(emu.calls(Endpoint::GoogleToken), 1, "one source for both");
    let source = emu.last_token(Endpoint::GoogleToken).unwrap().token;
    let call = &emu.calls_to(Endpoint::IamIdToken)[0];
    assert_eq!(call.bearer.as_deref(), Some(source.as_str()));
    assert_eq!(call.scope.as_deref(), Some(AUDIENCE));
    assert_eq!(
        call.path,
        format!("/v1/projects/-/serviceAccounts/{TARGET}:generateIdToken")
    );
}

#[test]
fn an_id_token_from_the_metadata_server() {
    let emu = Emulator::start();
    let sb = Sandbox::new();
    sb.write_config(&format!(
        "[credentials.gce]\nkind = \"google\"\nmetadata_host = \"127.0.0.1:{}\"\n{}",
        emu.port(),
        id_token_config("gce", "")
    ));
    let default = "emu-default@emu-project.iam.gserviceaccount.com";
    let token = assert_id_token(&sb, "run", default);
    assert_eq!(
        claims(&token)["email"],
        default,
        "format=full carries the email"
    );
    let call = &emu.calls_to(Endpoint::GoogleMetadata)[0];
    assert_eq!(
        call.path,
        "/computeMetadata/v1/instance/service-accounts/default/identity"
    );
    assert_eq!(call.scope.as_deref(), Some(AUDIENCE));
}

#[test]
fn an_authorized_user_cannot_mint_an_id_token_and_config_check_says_why() {
    let emu = Emulator::start();
    let sb = Sandbox::new();
    let file = sb.dir.path().join("adc.json");
    emu.write_authorized_user(&file);
    sb.write_config(&format!(
        "[credentials.me]\nkind = \"google\"\nkey_file = {:?}\n{}",
        file.display().to_string(),
        id_token_config("me", "")
    ));
    let out = sb.run(["config", "check"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "credentials.run.auth: names \"me\", whose identity file {} is an authorized user (gcloud auth application-default login), which cannot mint an ID token for an audience",
            file.display()
        )),
        "{out:?}"
    );
    let out = sb.run(["get", "run"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("cannot mint an ID token"), "{out:?}");
    assert_eq!(emu.calls(Endpoint::GoogleToken), 0, "nobody was asked");
}
