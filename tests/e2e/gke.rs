//! `kind = "gke-cluster"` against the emulator: the Google token fetched
//! first and shared, every expiry form gkemulticloud sends, its errors and
//! Retry-After. Every `get` format and the retry after a 401 are in
//! `api_kinds.rs`, with the other API kinds.

use credcache_shared::time::{format_rfc3339, parse_rfc3339};
use credcache_tests::emulator::{Emulator, Endpoint, Fault, TimestampForm};
use serde_json::Value;

use crate::harness::Sandbox;

pub const CLUSTER: &str = "projects/my-proj/locations/us-east4/azureClusters/prod";
const AWS_CLUSTER: &str = "projects/my-proj/locations/us-west1/awsClusters/edge";
const FAILED: &str = "credcache: cannot get a token for prod-gke: gkemulticloud answered";

/// Config text for a Google credential `name` with a fresh emulator key
/// written into `sb`'s directory.
pub fn google_identity(emu: &Emulator, sb: &Sandbox, name: &str, extra: &str) -> String {
    let key = sb.dir.path().join(format!("{name}.json"));
    emu.write_service_account_key(&key);
    format!(
        "[credentials.{name}]\nkind = \"google\"\nkey_file = {:?}\n{extra}",
        key.display().to_string()
    )
}

/// Config text for a gke-cluster credential pointed at the emulator.
pub fn gke_credential(emu: &Emulator, name: &str, auth: &str, cluster: &str) -> String {
    format!(
        "[credentials.{name}]\nkind = \"gke-cluster\"\nauth = \"{auth}\"\ncluster = \"{cluster}\"\nendpoint = \"{}\"\n",
        emu.url()
    )
}

/// A sandbox with `gcp` (a service-account key) and `prod-gke` on it.
pub fn sandbox(emu: &Emulator) -> Sandbox {
    emu.register_cluster(CLUSTER);
    emu.register_cluster(AWS_CLUSTER);
    let sb = Sandbox::new();
    sb.write_config(&google_identity(emu, &sb, "gcp", ""));
    sb.append_config(&gke_credential(emu, "prod-gke", "gcp", CLUSTER));
    sb
}

fn get_json(sb: &Sandbox, args: &[&str]) -> Value {
    let out = sb.run(args);
    serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

#[test]
fn the_google_token_is_fetched_first_and_authorizes_the_cluster_call() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    let token = sb.get("prod-gke");
    assert_eq!(emu.last_token(Endpoint::GkeToken).unwrap().token, token);
    let order: Vec<Endpoint> = emu.call_log().iter().map(|c| c.endpoint).collect();
    assert_eq!(order, [Endpoint::GoogleToken, Endpoint::GkeToken]);
    let call = &emu.calls_to(Endpoint::GkeToken)[0];
    assert_eq!(call.method, "GET");
    assert_eq!(call.path, format!("/v1/{CLUSTER}:generateAzureAccessToken"));
    assert_eq!(
        call.bearer,
        Some(emu.last_token(Endpoint::GoogleToken).unwrap().token),
        "the bearer is the google token just fetched"
    );
    assert_eq!(sb.get("prod-gke"), token, "cached");
    assert_eq!(emu.calls(Endpoint::GkeToken), 1);
}

#[test]
fn a_second_cluster_on_the_same_identity_reuses_the_google_token() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    sb.append_config(&gke_credential(&emu, "edge-gke", "gcp", AWS_CLUSTER));
    let prod = sb.get("prod-gke");
    let edge = sb.get("edge-gke");
    assert_ne!(prod, edge);
    assert_eq!(emu.calls(Endpoint::GoogleToken), 1);
    assert_eq!(emu.calls(Endpoint::GkeToken), 2);
    let calls = emu.calls_to(Endpoint::GkeToken);
    assert_eq!(
        calls[1].path,
        format!("/v1/{AWS_CLUSTER}:generateAwsAccessToken")
    );
    assert_eq!(calls[0].bearer, calls[1].bearer);
    assert_eq!(emu.last_token(Endpoint::GkeToken).unwrap().token, edge);
}

#[test]
fn every_expiration_time_form_is_read_exactly() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    for form in [
        TimestampForm::Digits9,
        TimestampForm::Digits6,
        TimestampForm::Digits3,
        TimestampForm::Digits0,
        TimestampForm::Digits7,
        TimestampForm::Offset(330),
        TimestampForm::Offset(-480),
    ] {
        emu.set_timestamp_form(Endpoint::GkeToken, form);
        let json = get_json(&sb, &["get", "prod-gke", "--format", "json", "--refresh"]);
        let issued = emu.last_token(Endpoint::GkeToken).unwrap();
        assert_eq!(json["token"], issued.token.as_str(), "{form}");
        // What the emulator wrote, read back and Z-normalized.
        let sent = form.format(issued.expires_at);
        let want = format_rfc3339(parse_rfc3339("expirationTime", &sent).unwrap());
        assert_eq!(json["expires_at"], want.as_str(), "{form}: sent {sent}");
    }
    assert_eq!(emu.calls(Endpoint::GoogleToken), 1);
}

#[test]
fn errors_carry_the_clouds_words_and_exit_5() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    let denied = r#"{"error":{"code":403,"message":"Permission 'gkemulticloud.azureClusters.generateAccessToken' denied on 'projects/my-proj/locations/us-east4/azureClusters/prod'","status":"PERMISSION_DENIED","details":[]}}"#;
    let cases: Vec<(Fault, &str)> = vec![
        (
            Fault::json(403, denied),
            " 403: PERMISSION_DENIED: Permission 'gkemulticloud.azureClusters.generateAccessToken' denied",
        ),
        (Fault::html(502), " 502 (an HTML page: \"502 Bad Gateway\")"),
        (Fault::malformed_json(), " 200 but the body is not JSON"),
        (
            Fault::wrong_types(Endpoint::GkeToken),
            " 200 but expirationTime is not a string",
        ),
        (
            Fault::missing_expiry(Endpoint::GkeToken),
            " 200 but the answer has no expirationTime",
        ),
        (
            Fault::json(
                200,
                r#"{"accessToken":"gke-x","expirationTime":"2030-01-02 03:04:05"}"#,
            ),
            " 200 but expirationTime: \"2030-01-02 03:04:05\" is not an RFC 3339 timestamp",
        ),
    ];
    for (fault, want) in cases {
        // Until cleared: a background retry of the last failure must not
        // take this fault away from the `get` below.
        emu.push_fault(Endpoint::GkeToken, fault.until_cleared());
        let out = sb.run(["get", "prod-gke", "--refresh"]);
        emu.clear_faults(Endpoint::GkeToken);
        out.upstream_failure(FAILED, want);
    }
    // The daemon survived all of it, and the google token was never dropped.
    sb.get("prod-gke");
    assert_eq!(emu.calls(Endpoint::GoogleToken), 1);
}

#[test]
fn real_refusals_a_narrow_scope_and_an_unknown_cluster() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    sb.append_config(&google_identity(
        &emu,
        &sb,
        "gcs-only",
        "scopes = [\"https://www.googleapis.com/auth/devstorage.read_only\"]\n",
    ));
    sb.append_config(&gke_credential(&emu, "narrow", "gcs-only", CLUSTER));
    sb.append_config(&gke_credential(
        &emu,
        "other",
        "gcp",
        "projects/my-proj/locations/us-east4/azureClusters/other",
    ));
    sb.run(["get", "narrow"]).upstream_failure(
        "credcache: cannot get a token for narrow: gkemulticloud answered",
        " 403: PERMISSION_DENIED: Request had insufficient authentication scopes.",
    );
    sb.run(["get", "other"]).upstream_failure(
        "credcache: cannot get a token for other: gkemulticloud answered",
        " 404: NOT_FOUND: Resource 'projects/my-proj/locations/us-east4/azureClusters/other' was not found",
    );
}

#[test]
fn retry_after_holds_further_gets_off() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    emu.push_fault(Endpoint::GkeToken, Fault::throttled(600));
    sb.run(["get", "prod-gke"]).upstream_failure(
        FAILED,
        " 429: TooManyRequests: The request is being throttled.",
    );
    let out = sb.run(["get", "prod-gke"]);
    out.upstream_failure(FAILED, "as Retry-After said");
    assert_eq!(
        emu.calls(Endpoint::GkeToken),
        1,
        "no call within Retry-After"
    );
    assert_eq!(emu.calls(Endpoint::GoogleToken), 1);
    // An explicit refresh is the user overriding the hold.
    sb.run(["get", "prod-gke", "--refresh"]).ok();
    assert_eq!(emu.calls(Endpoint::GkeToken), 2);
}
