//! `kind = "container-app"` against the emulator: the Entra token fetched
//! first, the POST ARM expects, every expiry form, ARM's errors and
//! Retry-After. Every `get` format and the retry after a 401 are in
//! `api_kinds.rs`, with the other API kinds.

use credcache_shared::time::{format_rfc3339, parse_rfc3339};
use credcache_tests::emulator::{Emulator, Endpoint, Fault, TimestampForm};
use serde_json::Value;

use crate::azure::client_secret_sandbox;
use crate::harness::Sandbox;

pub const SUBSCRIPTION: &str = "651f8027-33e8-4ec4-97b4-f6e9f3dc8744";
const APP: &str = "testcontainerapp0";
const FAILED: &str = "credcache: cannot get a token for app-logs: container apps answered";

/// Config text for a container-app credential on `corp`, pointed at the
/// emulator.
pub fn container_app_credential(emu: &Emulator, name: &str, app: &str, extra: &str) -> String {
    format!(
        "[credentials.{name}]\nkind = \"container-app\"\nauth = \"corp\"\nsubscription_id = \"{SUBSCRIPTION}\"\n\
         resource_group = \"rg\"\napp = \"{app}\"\narm_endpoint = \"{}\"\n{extra}",
        emu.url()
    )
}

/// The azure `corp` credential and `app-logs` on it; the app is registered,
/// so any other answers 404.
pub fn sandbox(emu: &Emulator) -> Sandbox {
    emu.register_container_app(SUBSCRIPTION, "rg", APP);
    let sb = client_secret_sandbox(emu, "the-right-secret");
    sb.append_config(&container_app_credential(emu, "app-logs", APP, ""));
    sb
}

fn get_json(sb: &Sandbox, args: &[&str]) -> Value {
    let out = sb.run(args);
    serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

#[test]
fn the_entra_token_authorizes_a_post_to_get_authtoken() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    let token = sb.get("app-logs");
    assert_eq!(
        emu.last_token(Endpoint::ContainerAppToken).unwrap().token,
        token
    );
    let order: Vec<Endpoint> = emu.call_log().iter().map(|c| c.endpoint).collect();
    assert_eq!(order, [Endpoint::EntraToken, Endpoint::ContainerAppToken]);
    let call = &emu.calls_to(Endpoint::ContainerAppToken)[0];
    assert_eq!(call.method, "POST");
    assert_eq!(
        call.path,
        format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.App/containerApps/{APP}/getAuthtoken"
        )
    );
    assert_eq!(
        call.bearer,
        Some(emu.last_token(Endpoint::EntraToken).unwrap().token)
    );
    assert_eq!(sb.get("app-logs"), token, "cached");
    assert_eq!(emu.calls(Endpoint::ContainerAppToken), 1);
}

#[test]
fn every_expires_form_is_read_exactly() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    // Digits7 first: what Container Apps sends (.NET "O").
    for form in [
        TimestampForm::Digits7,
        TimestampForm::Digits9,
        TimestampForm::Digits6,
        TimestampForm::Digits3,
        TimestampForm::Digits0,
        TimestampForm::Offset(330),
    ] {
        emu.set_timestamp_form(Endpoint::ContainerAppToken, form);
        let json = get_json(&sb, &["get", "app-logs", "--format", "json", "--refresh"]);
        let issued = emu.last_token(Endpoint::ContainerAppToken).unwrap();
        assert_eq!(json["token"], issued.token.as_str(), "{form}");
        let sent = form.format(issued.expires_at);
        let want = format_rfc3339(parse_rfc3339("properties.expires", &sent).unwrap());
        assert_eq!(json["expires_at"], want.as_str(), "{form}: sent {sent}");
    }
    assert_eq!(emu.calls(Endpoint::EntraToken), 1);
}

#[test]
fn errors_carry_the_clouds_words_and_exit_5() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    let forbidden = r#"{"error":{"code":"AuthorizationFailed","message":"The client '11111111-1111-1111-1111-111111111111' does not have authorization to perform action 'Microsoft.App/containerApps/getAuthtoken/action'.","target":null,"details":[],"innererror":null}}"#;
    let cases: Vec<(Fault, &str)> = vec![
        (
            Fault::json(403, forbidden),
            " 403: AuthorizationFailed: The client '11111111-1111-1111-1111-111111111111' does not have authorization",
        ),
        (Fault::html(502), " 502 (an HTML page: \"502 Bad Gateway\")"),
        (Fault::malformed_json(), " 200 but the body is not JSON"),
        (
            Fault::wrong_types(Endpoint::ContainerAppToken),
            " 200 but properties.expires is not a string",
        ),
        (
            Fault::missing_expiry(Endpoint::ContainerAppToken),
            " 200 but the answer has no properties.expires",
        ),
    ];
    for (fault, want) in cases {
        // Until cleared: a background retry of the last failure must not
        // take this fault away from the `get` below.
        emu.push_fault(Endpoint::ContainerAppToken, fault.until_cleared());
        let out = sb.run(["get", "app-logs", "--refresh"]);
        emu.clear_faults(Endpoint::ContainerAppToken);
        out.upstream_failure(FAILED, want);
    }
    sb.get("app-logs");
    assert_eq!(emu.calls(Endpoint::EntraToken), 1);
}

#[test]
fn an_unknown_app_is_arms_resource_not_found() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    sb.append_config(&container_app_credential(&emu, "gone", "no-such-app", ""));
    sb.run(["get", "gone"]).upstream_failure(
        "credcache: cannot get a token for gone: container apps answered 404: ResourceNotFound: ",
        "The Resource 'Microsoft.App/containerApps/no-such-app' under resource group 'rg' was not found.",
    );
}

#[test]
fn arm_throttling_holds_further_gets_off_for_retry_after() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    emu.push_fault(Endpoint::ContainerAppToken, Fault::throttled(600));
    sb.run(["get", "app-logs"]).upstream_failure(
        FAILED,
        " 429: TooManyRequests: The request is being throttled. Retry after 600 seconds.",
    );
    sb.run(["get", "app-logs"])
        .upstream_failure(FAILED, "(not asking again for ");
    assert_eq!(
        emu.calls(Endpoint::ContainerAppToken),
        1,
        "no call within Retry-After"
    );
    assert_eq!(emu.calls(Endpoint::EntraToken), 1);
    sb.run(["get", "app-logs", "--refresh"]).ok();
    assert_eq!(emu.calls(Endpoint::ContainerAppToken), 2);
}
