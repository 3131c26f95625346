//! `external_account` files (workload identity federation) against the
//! emulator's STS: a file and a url credential source, STS then
//! impersonation, an ID token through it, and the sources credcache
//! refuses by name.

use credcache_tests::emulator::{Emulator, Endpoint};

use crate::harness::Sandbox;

const AUDIENCE: &str =
    "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/prov";
const TARGET: &str = "ci@emu-project.iam.gserviceaccount.com";
const ID_TOKEN: &str = "[credentials.run]\nkind = \"google-id-token\"\nauth = \"wif\"\naudience = \"https://run.example\"\n";

/// Writes an `external_account` file with this `credential_source` (and
/// impersonation of `TARGET` if asked) and a config naming it as `wif`.
fn setup(emu: &Emulator, sb: &Sandbox, source: serde_json::Value, impersonate: bool) {
    let mut file = serde_json::json!({
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{}/v1/token", emu.url()),
        "credential_source": source,
    });
    if impersonate {
        file["service_account_impersonation_url"] = serde_json::json!(format!(
            "{}/v1/projects/-/serviceAccounts/{TARGET}:generateAccessToken",
            emu.url()
        ));
    }
    let path = sb.dir.path().join("wif.json");
    std::fs::write(&path, file.to_string()).unwrap();
    sb.write_config(&format!(
        "[credentials.wif]\nkind = \"google\"\nkey_file = {:?}\n",
        path.display().to_string()
    ));
    if impersonate {
        sb.append_config(ID_TOKEN);
    }
}

#[test]
fn a_file_source_is_exchanged_at_sts_and_reread_every_fetch() {
    let emu = Emulator::start();
    let sb = Sandbox::new();
    let subject = sb.dir.path().join("oidc-token");
    std::fs::write(&subject, "subject-1\n").unwrap();
    setup(
        &emu,
        &sb,
        serde_json::json!({"file": subject.display().to_string(), "format": {"type": "text"}}),
        false,
    );
    let token = sb.get("wif");
    assert_eq!(emu.last_token(Endpoint::StsToken).unwrap().token, token);
    let call = &emu.calls_to(Endpoint::StsToken)[0];
    assert_eq!(call.status, 200);
    assert_eq!(
        call.grant_type.as_deref(),
        Some("urn:ietf:params:oauth:grant-type:token-exchange")
    );
    assert_eq!(call.bearer.as_deref(), Some("subject-1"));
    assert_eq!(call.client_id.as_deref(), Some(AUDIENCE));
    std::fs::write(&subject, "subject-2").unwrap();
    sb.run(["refresh", "wif"]).ok();
    assert_eq!(
        emu.calls_to(Endpoint::StsToken)[1].bearer.as_deref(),
        Some("subject-2")
    );
    // A plain STS token cannot mint an ID token: said at load.
    sb.append_config(ID_TOKEN);
    let out = sb.run(["config", "check"]);
    assert!(
        out.stderr
            .contains("is an external account without service_account_impersonation_url"),
        "{out:?}"
    );
}

#[test]
fn a_url_source_then_impersonation_and_an_id_token_through_it() {
    let emu = Emulator::start();
    let sb = Sandbox::new();
    emu.set_sts_subject(Some("from-the-url"));
    emu.grant_impersonation(&format!("principal:{AUDIENCE}"), TARGET);
    setup(
        &emu,
        &sb,
        serde_json::json!({"url": format!("{}/oidc/token", emu.url()), "headers": {"Metadata": "True"},
                           "format": {"type": "json", "subject_token_field_name": "id_token"}}),
        true,
    );
    let token = sb.get("wif");
    assert_eq!(emu.subject_of(&token).as_deref(), Some(TARGET));
    let sts = emu.last_token(Endpoint::StsToken).unwrap().token;
    let iam = &emu.calls_to(Endpoint::IamAccessToken)[0];
    assert_eq!(iam.bearer.as_deref(), Some(sts.as_str()));
    assert_eq!(
        emu.calls_to(Endpoint::StsToken)[0].scope.as_deref(),
        Some("https://www.googleapis.com/auth/cloud-platform")
    );
    sb.get("run");
    assert_eq!(emu.calls(Endpoint::StsToken), 1, "one STS source for both");
    assert_eq!(emu.calls(Endpoint::IamIdToken), 1);
}

#[test]
fn executable_and_aws_sources_are_refused_by_name() {
    let emu = Emulator::start();
    for (source, want) in [
        (
            serde_json::json!({"executable": {"command": "/bin/true"}}),
            "credential_source is an executable, which credcache does not run",
        ),
        (
            serde_json::json!({"environment_id": "aws1", "region_url": "http://127.0.0.1:9"}),
            "credential_source is AWS (environment_id), which credcache does not support",
        ),
    ] {
        let sb = Sandbox::new();
        setup(&emu, &sb, source, false);
        let out = sb.run(["get", "wif"]);
        assert_ne!(out.code, 0, "{out:?}");
        assert!(out.stderr.contains(want), "{out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    }
    assert_eq!(emu.calls(Endpoint::StsToken), 0);
}
