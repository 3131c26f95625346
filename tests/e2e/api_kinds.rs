//! What the three API kinds (`gke-cluster`, `container-app`,
//! `apim-user-token`) share, as one table: every `get` format, and the
//! retry after a 401 (the identity token dropped and fetched again, once).
//! Each kind's own behaviour (its request, its expiry forms, its errors)
//! is tested in its own file.

use chrono::{DateTime, Utc};
use credcache_shared::time::{format_rfc3339, parse_rfc3339};
use credcache_tests::emulator::{Emulator, Endpoint, Fault, TimestampForm};
use serde_json::Value;

use crate::harness::Sandbox;

/// One API kind, set up the way its own tests set it up.
struct Kind {
    /// The credential under test.
    name: &'static str,
    kind: &'static str,
    /// A sandbox with `name` and its `auth` credential configured.
    sandbox: fn(&Emulator) -> Sandbox,
    /// The `auth` credential, and the emulator endpoint issuing its tokens.
    auth: &'static str,
    identity: Endpoint,
    /// The emulator endpoint issuing this kind's tokens.
    endpoint: Endpoint,
    /// How the cloud writes the expiry of a token it issues.
    sends_expiry: fn(DateTime<Utc>) -> String,
    /// What every token of this kind starts with.
    token_prefix: &'static str,
    /// `--format env`'s variable and `--format header`'s scheme.
    env_var: &'static str,
    scheme: &'static str,
    /// The API's own 401 body, and the words of it a failure repeats.
    unauthorized: &'static str,
    unauthorized_says: &'static str,
    /// How a failed `get` of `name` starts.
    failed: &'static str,
}

const KINDS: [Kind; 3] = [
    Kind {
        name: "prod-gke",
        kind: "gke-cluster",
        sandbox: crate::gke::sandbox,
        auth: "gcp",
        identity: Endpoint::GoogleToken,
        endpoint: Endpoint::GkeToken,
        sends_expiry: |t| TimestampForm::Digits9.format(t),
        token_prefix: "",
        env_var: "CREDCACHE_PROD_GKE_TOKEN",
        scheme: "Bearer",
        unauthorized: r#"{"error":{"code":401,"message":"Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.","status":"UNAUTHENTICATED"}}"#,
        unauthorized_says: " 401: UNAUTHENTICATED: Request had invalid authentication credentials.",
        failed: "credcache: cannot get a token for prod-gke: gkemulticloud answered",
    },
    Kind {
        name: "app-logs",
        kind: "container-app",
        sandbox: crate::container_app::sandbox,
        auth: "corp",
        identity: Endpoint::EntraToken,
        endpoint: Endpoint::ContainerAppToken,
        // What Container Apps sends (.NET "O").
        sends_expiry: |t| TimestampForm::Digits7.format(t),
        token_prefix: "",
        env_var: "CREDCACHE_APP_LOGS_TOKEN",
        scheme: "Bearer",
        unauthorized: r#"{"error":{"code":"ExpiredAuthenticationToken","message":"The access token expiry UTC time '1/1/2025 1:00:00 AM' is earlier than current UTC time '1/1/2025 2:00:00 AM'."}}"#,
        unauthorized_says: " 401: ExpiredAuthenticationToken: The access token expiry UTC time",
        failed: "credcache: cannot get a token for app-logs: container apps answered",
    },
    Kind {
        name: "apim-dev",
        kind: "apim-user-token",
        sandbox: crate::apim::sandbox,
        auth: "corp",
        identity: Endpoint::EntraToken,
        endpoint: Endpoint::ApimToken,
        // The expiry is the one inside the token, to the minute.
        sends_expiry: format_rfc3339,
        token_prefix: "userId1718&",
        env_var: "CREDCACHE_APIM_DEV_TOKEN",
        scheme: "SharedAccessSignature",
        unauthorized: r#"{"error":{"code":"InvalidAuthenticationToken","message":"The access token is invalid."}}"#,
        unauthorized_says: " 401: InvalidAuthenticationToken: The access token is invalid.",
        failed: "credcache: cannot get a token for apim-dev: api management answered",
    },
];

fn get_json(sb: &Sandbox, args: &[&str]) -> Value {
    let out = sb.run(args);
    serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

#[test]
fn every_get_format_of_every_api_kind() {
    for k in &KINDS {
        let emu = Emulator::start();
        let sb = (k.sandbox)(&emu);
        let name = k.name;
        let token = sb.get(name);
        assert!(token.starts_with(k.token_prefix), "{name}: {token}");
        let issued = emu.last_token(k.endpoint).unwrap();
        assert_eq!(issued.token, token, "{name}");
        let sent = (k.sends_expiry)(issued.expires_at);
        let expires = format_rfc3339(parse_rfc3339("expiry", &sent).unwrap());

        assert_eq!(
            sb.run(["get", name, "--format", "raw"]).ok(),
            format!("{token}\n"),
            "{name}"
        );

        let before = Utc::now();
        let json = get_json(&sb, &["get", name, "--format", "json"]);
        let after = Utc::now();
        assert_eq!(json["name"], name);
        assert_eq!(json["kind"], k.kind, "{name}");
        assert_eq!(json["token"], token.as_str(), "{name}");
        assert_eq!(json["expires_at"], expires.as_str(), "{name}");
        // Seconds left when it was printed: between the two readings of the
        // clock around the run (a second either way for rounding).
        let expires_at = parse_rfc3339("expires_at", &expires).unwrap();
        let expires_in = json["expires_in"].as_i64().unwrap();
        assert!(
            (expires_at - after).num_seconds() - 1 <= expires_in
                && expires_in <= (expires_at - before).num_seconds() + 1
                && expires_in > 0,
            "{name}: {expires_in}"
        );

        let ec = get_json(&sb, &["get", name, "--format", "exec-credential"]);
        assert_eq!(
            ec,
            serde_json::json!({
                "apiVersion": "client.authentication.k8s.io/v1",
                "kind": "ExecCredential",
                "status": {"token": token, "expirationTimestamp": expires},
            }),
            "{name}"
        );
        let beta = sb
            .command("credcache")
            .args(["get", name, "--format", "exec-credential"])
            .env(
                "KUBERNETES_EXEC_INFO",
                r#"{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","spec":{"interactive":false}}"#,
            )
            .output()
            .unwrap();
        let beta: Value = serde_json::from_slice(&beta.stdout).unwrap();
        assert_eq!(
            beta["apiVersion"], "client.authentication.k8s.io/v1beta1",
            "{name}"
        );
        assert_eq!(beta["status"]["token"], token.as_str(), "{name}");

        // `&` (in APIM tokens) is nothing special inside single quotes.
        assert_eq!(
            sb.run(["get", name, "--format", "env"]).ok(),
            format!("export {}='{token}'\n", k.env_var),
            "{name}"
        );
        assert_eq!(
            sb.run(["get", name, "--format", "header"]).ok(),
            format!("Authorization: {} {token}\n", k.scheme),
            "{name}"
        );
        assert_eq!(
            emu.calls(k.endpoint),
            1,
            "{name}: every format from the cache"
        );
    }
}

#[test]
fn a_401_drops_the_identity_token_and_retries_once_for_every_api_kind() {
    for k in &KINDS {
        let emu = Emulator::start();
        let sb = (k.sandbox)(&emu);
        let name = k.name;
        emu.push_fault(k.endpoint, Fault::json(401, k.unauthorized));
        let token = sb.get(name);
        assert_eq!(emu.last_token(k.endpoint).unwrap().token, token, "{name}");
        assert_eq!(emu.calls(k.identity), 2, "{name}: re-fetched once");
        let calls = emu.calls_to(k.endpoint);
        assert_eq!(
            calls.iter().map(|c| c.status).collect::<Vec<_>>(),
            [401, 200],
            "{name}"
        );
        let second = emu.last_token(k.identity).unwrap().token;
        assert_eq!(calls[1].bearer.as_deref(), Some(second.as_str()), "{name}");
        assert_ne!(calls[0].bearer, calls[1].bearer, "{name}");
        // The `auth` credential itself now serves the new token, and the
        // next fetch of this kind reuses it.
        assert_eq!(sb.get(k.auth), second, "{name}");
        sb.run(["get", name, "--refresh"]).ok();
        assert_eq!(emu.calls(k.identity), 2, "{name}");
    }
}

#[test]
fn a_second_401_fails_with_the_apis_own_error_for_every_api_kind() {
    for k in &KINDS {
        let emu = Emulator::start();
        let sb = (k.sandbox)(&emu);
        emu.push_fault(k.endpoint, Fault::json(401, k.unauthorized).times(2));
        sb.run(["get", k.name])
            .upstream_failure(k.failed, k.unauthorized_says);
        assert_eq!(emu.calls(k.endpoint), 2, "{}: one retry, no more", k.name);
        assert_eq!(emu.calls(k.identity), 2, "{}", k.name);
    }
}
