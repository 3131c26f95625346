//! `kind = "google"` against the emulator: service-account keys, an
//! authorized-user file, the metadata server, and the ways each fails.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use credcache_tests::emulator::{Emulator, Endpoint, Fault};

use crate::harness::{Sandbox, eventually};

/// A sandbox with a service-account key from `emu` configured as `gcp`.
fn with_key(emu: &Emulator, extra: &str) -> (Sandbox, std::path::PathBuf) {
    let sb = Sandbox::new();
    let key = sb.dir.path().join("sa.json");
    emu.write_service_account_key(&key);
    sb.write_config(&format!("[daemon]\nhttp_timeout = \"2s\"\n[credentials.gcp]\nkind = \"google\"\nkey_file = {:?}\n{extra}", key.display().to_string()));
    (sb, key)
}

#[test]
fn service_account_key_token_is_fetched_once_and_cached() {
    let emu = Emulator::start();
    let (sb, _) = with_key(&emu, "");
    let token = sb.get("gcp");
    assert_eq!(emu.last_token(Endpoint::GoogleToken).unwrap().token, token);
    assert_eq!(sb.get("gcp"), token);
    assert_eq!(emu.calls(Endpoint::GoogleToken), 1);
    let call = &emu.calls_to(Endpoint::GoogleToken)[0];
    assert_eq!(
        call.grant_type.as_deref(),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    assert_eq!(
        call.scope.as_deref(),
        Some("https://www.googleapis.com/auth/cloud-platform")
    );
    assert_eq!(
        call.status, 200,
        "the emulator verified the JWT's signature, claims and aud"
    );

    let json: serde_json::Value =
        serde_json::from_str(sb.run(["get", "gcp", "--format", "json"]).ok()).unwrap();
    assert_eq!(json["kind"], "google");
    let expires_in = json["expires_in"].as_i64().unwrap();
    assert!((3500..3600).contains(&expires_in), "{expires_in}");
}

#[test]
fn scopes_are_sent() {
    let emu = Emulator::start();
    let (sb, _) = with_key(
        &emu,
        "scopes = [\"https://www.googleapis.com/auth/cloud-platform\", \"openid\"]\n",
    );
    sb.get("gcp");
    let call = &emu.calls_to(Endpoint::GoogleToken)[0];
    assert_eq!(
        call.scope.as_deref(),
        Some("https://www.googleapis.com/auth/cloud-platform openid")
    );
}

#[test]
fn twenty_concurrent_cold_gets_make_one_token_call() {
    let emu = Emulator::start();
    let (sb, _) = with_key(&emu, "");
    // Hold the one call open so every client is queued behind it.
    emu.push_fault(
        Endpoint::GoogleToken,
        Fault::slow(Duration::from_millis(300)),
    );
    let sb = Arc::new(sb);
    let start = Arc::new(Barrier::new(20));
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let (sb, start) = (sb.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                sb.run(["get", "gcp"])
            })
        })
        .collect();
    let tokens: Vec<String> = handles
        .into_iter()
        .map(|h| h.join().unwrap().ok().to_owned())
        .collect();
    assert!(
        tokens.windows(2).all(|w| w[0] == w[1]),
        "everyone got the same token"
    );
    assert_eq!(emu.calls(Endpoint::GoogleToken), 1);
}

#[test]
fn a_rotated_key_file_is_never_served_the_old_token() {
    let emu = Emulator::start();
    let (sb, key) = with_key(&emu, "");
    let first = sb.get("gcp");
    emu.write_service_account_key(&key);
    // Noticed on a request, at most a second after the last check: poll.
    eventually(Duration::from_secs(10), || {
        if sb.get("gcp") != first {
            Ok(())
        } else {
            Err("the old identity's token is still served")
        }
    });
    assert_eq!(emu.calls(Endpoint::GoogleToken), 2);
}

#[test]
fn upstream_errors_carry_the_clouds_words_and_exit_5() {
    let emu = Emulator::start();
    let (sb, _) = with_key(&emu, "");
    let cases: Vec<(Fault, &str)> = vec![
        (
            Fault::json(
                400,
                r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
            ),
            "answered 400: invalid_grant: Invalid JWT Signature.",
        ),
        (Fault::html(502), "answered 502 (an HTML page"),
        (Fault::malformed_json(), "unreadable body"),
        (Fault::empty_body(500), "answered 500 with an empty body"),
        (
            Fault::wrong_types(Endpoint::GoogleToken),
            "answered 200 but",
        ),
        (Fault::throttled(30), "answered 429"),
        (Fault::slow(Duration::from_secs(5)), "timed out"),
    ];
    for (fault, want) in cases {
        // Until cleared: a background retry of the last failure must not
        // take this fault away from the `get` below.
        emu.push_fault(Endpoint::GoogleToken, fault.until_cleared());
        let out = sb.run(["get", "gcp", "--refresh"]);
        assert_eq!(out.code, 5, "{want}: {out:?}");
        assert!(
            out.stderr
                .starts_with("credcache: cannot get a token for gcp: google token endpoint"),
            "{out:?}"
        );
        assert!(out.stderr.contains(want), "wanted {want:?} in {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
        emu.clear_faults(Endpoint::GoogleToken);
    }
    // The daemon survived all of it.
    sb.get("gcp");
}

#[test]
fn a_disabled_service_account_is_invalid_grant() {
    let emu = Emulator::start();
    let (sb, key) = with_key(&emu, "");
    let email: serde_json::Value = serde_json::from_slice(&std::fs::read(&key).unwrap()).unwrap();
    emu.disable_service_account(email["client_email"].as_str().unwrap());
    let out = sb.run(["get", "gcp"]);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(out.stderr.contains("invalid_grant"), "{out:?}");
}

#[test]
fn authorized_user_file_and_a_revoked_refresh_token() {
    let emu = Emulator::start();
    let sb = Sandbox::new();
    let file = sb.dir.path().join("adc.json");
    let user = emu.write_authorized_user(&file);
    // gcloud writes no token_uri into these files: the config names one.
    sb.write_config(&format!(
        "[credentials.me]\nkind = \"google\"\nkey_file = {:?}\ntoken_uri = {:?}\n",
        file.display().to_string(),
        emu.token_uri()
    ));
    let token = sb.get("me");
    assert_eq!(emu.last_token(Endpoint::GoogleToken).unwrap().token, token);
    assert_eq!(
        emu.calls_to(Endpoint::GoogleToken)[0].grant_type.as_deref(),
        Some("refresh_token")
    );

    emu.revoke_refresh_token(&user.refresh_token);
    let out = sb.run(["get", "me", "--refresh"]);
    assert_eq!(out.code, 5, "{out:?}");
    assert!(
        out.stderr
            .contains("invalid_grant: Token has been expired or revoked."),
        "{out:?}"
    );
}

#[test]
fn the_builtin_google_credential_uses_the_metadata_server() {
    let emu = Emulator::start();
    let mut sb = Sandbox::new();
    sb.env("GCE_METADATA_HOST", format!("127.0.0.1:{}", emu.port()));
    // No config file at all: the built-in `google` credential, ADC order,
    // and neither GOOGLE_APPLICATION_CREDENTIALS nor a gcloud file here.
    let token = sb.get("google");
    assert_eq!(
        emu.last_token(Endpoint::GoogleMetadata).unwrap().token,
        token
    );
    assert_eq!(emu.calls(Endpoint::GoogleMetadata), 1);
}

#[test]
fn adc_file_and_a_missing_google_application_credentials() {
    let emu = Emulator::start();
    let mut sb = Sandbox::new();
    let gcloud = sb.gcloud_dir();
    emu.write_authorized_user(gcloud.join("application_default_credentials.json"));
    // The built-in credential's settings, but with the emulator as token URI.
    sb.write_config(&format!(
        "[credentials.google]\nkind = \"google\"\ntoken_uri = {:?}\n",
        emu.token_uri()
    ));
    let token = sb.get("google");
    assert_eq!(
        emu.last_token(Endpoint::GoogleToken).unwrap().token,
        token,
        "the gcloud ADC file was used"
    );
    let missing = sb.dir.path().join("nope.json");
    sb.env(
        "GOOGLE_APPLICATION_CREDENTIALS",
        missing.display().to_string(),
    );
    // A daemon started anew, with the variable.
    sb.run(["daemon", "restart"]).ok();
    let out = sb.run(["get", "google"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "GOOGLE_APPLICATION_CREDENTIALS names {}, which does not exist",
            missing.display()
        )),
        "{out:?}"
    );
}

#[test]
fn no_token_or_key_material_in_the_debug_log() {
    let emu = Emulator::start();
    let (sb, key) = with_key(&emu, "");
    let token = sb.get("gcp");
    sb.run(["refresh", "gcp"]).ok();
    let second = emu.last_token(Endpoint::GoogleToken).unwrap().token;
    emu.push_fault(
        Endpoint::GoogleToken,
        Fault::json(
            400,
            r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
        ),
    );
    assert_eq!(sb.run(["get", "gcp", "--refresh"]).code, 5);
    let log = sb.log();
    assert!(log.contains("DEBUG"), "{log}");
    let key: serde_json::Value = serde_json::from_slice(&std::fs::read(&key).unwrap()).unwrap();
    let pem = key["private_key"].as_str().unwrap();
    let pem_body = pem.lines().nth(1).unwrap();
    for secret in [token.as_str(), second.as_str(), pem_body, "eyJ"] {
        assert!(!log.contains(secret), "the log contains {secret:?}:\n{log}");
    }
    let status = sb.run(["status", "--json"]).ok().to_owned();
    assert!(!status.contains(&second) && !status.contains(&token));
}
