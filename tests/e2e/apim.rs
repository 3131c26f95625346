//! `kind = "apim-user-token"` against the emulator: the request body (key
//! type, a .NET-style expiry), the expiry read from inside the token, ARM's
//! errors, Retry-After; and `exec` with all three API kinds. Every `get`
//! format (the SharedAccessSignature header among them) and the retry
//! after a 401 are in `api_kinds.rs`, with the other API kinds.

use chrono::{DurationRound, TimeDelta};
use credcache_shared::time::{format_rfc3339, parse_rfc3339};
use credcache_tests::emulator::{Emulator, Endpoint, Fault};
use serde_json::Value;

use crate::azure::client_secret_sandbox;
use crate::harness::Sandbox;

const FAILED: &str = "credcache: cannot get a token for apim-dev: api management answered";

/// Config text for an apim-user-token credential on `corp`.
fn apim_credential(emu: &Emulator, name: &str, extra: &str) -> String {
    format!(
        "[credentials.{name}]\nkind = \"apim-user-token\"\nauth = \"corp\"\n\
         subscription_id = \"00000000-0000-0000-0000-000000000000\"\nresource_group = \"rg1\"\n\
         service = \"apimService1\"\nuser_id = \"userId1718\"\narm_endpoint = \"{}\"\n{extra}",
        emu.url()
    )
}

pub fn sandbox(emu: &Emulator) -> Sandbox {
    let sb = client_secret_sandbox(emu, "the-right-secret");
    sb.append_config(&apim_credential(
        emu,
        "apim-dev",
        "key_type = \"secondary\"\nlifetime = \"8h\"\n",
    ));
    sb
}

fn get_json(sb: &Sandbox, args: &[&str]) -> Value {
    let out = sb.run(args);
    serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

#[test]
fn asks_for_an_expiry_and_caches_the_one_inside_the_token() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    let json = get_json(&sb, &["get", "apim-dev", "--format", "json"]);
    let issued = emu.last_token(Endpoint::ApimToken).unwrap();
    assert_eq!(json["token"], issued.token.as_str());
    let order: Vec<Endpoint> = emu.call_log().iter().map(|c| c.endpoint).collect();
    assert_eq!(order, [Endpoint::EntraToken, Endpoint::ApimToken]);

    let call = &emu.calls_to(Endpoint::ApimToken)[0];
    assert_eq!(call.method, "POST");
    assert_eq!(
        call.path,
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg1/providers/\
         Microsoft.ApiManagement/service/apimService1/users/userId1718/token"
    );
    assert_eq!(
        call.bearer,
        Some(emu.last_token(Endpoint::EntraToken).unwrap().token)
    );
    assert_eq!(call.key_type.as_deref(), Some("secondary"));
    // `2019-04-21T00:44:24.2845269Z`: 7 fractional digits and Z, as .NET writes.
    let asked = call.expiry.as_deref().unwrap();
    let shape = asked.len() == 28
        && asked.as_bytes()[19] == b'.'
        && asked[20..27].bytes().all(|b| b.is_ascii_digit())
        && asked.ends_with('Z');
    assert!(shape, "{asked}");

    // The token says when it expires, to the minute: that is what is cached.
    let asked = parse_rfc3339("expiry", asked).unwrap();
    let granted = asked.duration_trunc(TimeDelta::minutes(1)).unwrap();
    assert_eq!(issued.expires_at, granted);
    let (_, stamp) = issued.token.split_once('&').unwrap();
    assert!(stamp.starts_with(&granted.format("%Y%m%d%H%M&").to_string()));
    assert_eq!(json["expires_at"], format_rfc3339(granted).as_str());
    // Asked for now + lifetime, at the 100 ns precision .NET writes.
    let fetched = parse_rfc3339("fetched_at", json["fetched_at"].as_str().unwrap()).unwrap();
    let want = (fetched + TimeDelta::hours(8))
        .duration_trunc(TimeDelta::nanoseconds(100))
        .unwrap();
    assert_eq!(asked, want);

    assert_eq!(sb.get("apim-dev"), issued.token, "cached");
    assert_eq!(emu.calls(Endpoint::ApimToken), 1);
}

#[test]
fn errors_carry_the_clouds_words_and_exit_5() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    let not_found = r#"{"error":{"code":"ResourceNotFound","message":"The Resource 'Microsoft.ApiManagement/service/apimService1' under resource group 'rg1' was not found.","target":null,"details":[],"additionalInfo":[]}}"#;
    let cases: Vec<(Fault, &str)> = vec![
        (
            Fault::json(404, not_found),
            " 404: ResourceNotFound: The Resource 'Microsoft.ApiManagement/service/apimService1' under resource group 'rg1' was not found.",
        ),
        (Fault::html(502), " 502 (an HTML page: \"502 Bad Gateway\")"),
        (Fault::malformed_json(), " 200 but the body is not JSON"),
        (
            Fault::wrong_types(Endpoint::ApimToken),
            " 200 but value is not a string",
        ),
        (
            Fault::missing_expiry(Endpoint::ApimToken),
            " 200 but value is not a user token (uid&yyyyMMddHHmm&signature)",
        ),
        (
            Fault::json(200, r#"{"value":"userId1718&201913320000&c2ln"}"#),
            " 200 but the expiry in value (\"201913320000\") is not a yyyyMMddHHmm UTC time",
        ),
        (
            Fault::json(200, r#"{"value":"userId1718&209912312359&c2ln"}"#),
            " 200 but the expiry in value (2099-12-31T23:59:00Z) is later than the ",
        ),
        (
            Fault::json(200, r#"{"value":"userId1718&200001010000&c2ln"}"#),
            " 200 but the expiry in value (2000-01-01T00:00:00Z) has already passed",
        ),
    ];
    for (fault, want) in cases {
        // Until cleared: a background retry of the last failure must not
        // take this fault away from the `get` below.
        emu.push_fault(Endpoint::ApimToken, fault.until_cleared());
        let out = sb.run(["get", "apim-dev", "--refresh"]);
        emu.clear_faults(Endpoint::ApimToken);
        out.upstream_failure(FAILED, want);
        assert!(!out.stderr.contains("c2ln"), "no token text: {out:?}");
    }
    sb.get("apim-dev");
    assert_eq!(emu.calls(Endpoint::EntraToken), 1);
}

#[test]
fn arm_throttling_holds_further_gets_off_for_retry_after() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    emu.push_fault(Endpoint::ApimToken, Fault::throttled(600));
    sb.run(["get", "apim-dev"])
        .upstream_failure(FAILED, " 429: TooManyRequests: ");
    sb.run(["get", "apim-dev"])
        .upstream_failure(FAILED, "as Retry-After said");
    assert_eq!(
        emu.calls(Endpoint::ApimToken),
        1,
        "no call within Retry-After"
    );
    assert_eq!(emu.calls(Endpoint::EntraToken), 1);
}

#[test]
fn exec_passes_each_kinds_token_in_its_env_var_not_argv() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    emu.register_cluster(crate::gke::CLUSTER);
    sb.append_config(&crate::gke::google_identity(&emu, &sb, "gcp", ""));
    sb.append_config(&crate::gke::gke_credential(
        &emu,
        "prod-gke",
        "gcp",
        crate::gke::CLUSTER,
    ));
    sb.append_config(&crate::container_app::container_app_credential(
        &emu,
        "app-logs",
        "testcontainerapp0",
        "env_var = \"APP_TOKEN\"\n",
    ));
    // The child prints each variable, then its own argv as the kernel has it.
    let script = r#"printf '%s\n' "$CREDCACHE_PROD_GKE_TOKEN" "$APP_TOKEN" "$CREDCACHE_APIM_DEV_TOKEN"; if [ -r /proc/$$/cmdline ]; then tr '\000' ' ' < /proc/$$/cmdline; fi"#;
    let out = sb.run([
        "exec",
        "prod-gke,app-logs,apim-dev",
        "--",
        "sh",
        "-c",
        script,
    ]);
    let stdout = out.ok().to_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    let gke = emu.last_token(Endpoint::GkeToken).unwrap().token;
    let app = emu.last_token(Endpoint::ContainerAppToken).unwrap().token;
    let apim = emu.last_token(Endpoint::ApimToken).unwrap().token;
    assert_eq!(lines[..3], [gke.as_str(), app.as_str(), apim.as_str()]);
    if let Some(argv) = lines.get(3) {
        assert!(argv.starts_with("sh -c "), "{argv}");
        for token in [&gke, &app, &apim] {
            assert!(!argv.contains(token.as_str()), "a token in argv: {argv}");
        }
    }
    // Two ARM kinds on one identity: one Entra token.
    assert_eq!(emu.calls(Endpoint::EntraToken), 1);
    assert_eq!(emu.calls(Endpoint::GoogleToken), 1);
    assert_eq!(sb.get("prod-gke"), gke);
}
