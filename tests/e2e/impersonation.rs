//! Google service-account impersonation against the emulator's IAM
//! Credentials: over a key, an authorized user and the metadata server,
//! with delegates, refused, many credentials over one source, a lifetime
//! over an hour, and gcloud's `impersonated_service_account` ADC file.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use credcache_tests::emulator::{Emulator, Endpoint, Fault};

use crate::harness::Sandbox;

const TARGET: &str = "deployer@emu-project.iam.gserviceaccount.com";
const HOP: &str = "hop@emu-project.iam.gserviceaccount.com";
const OTHER: &str = "other@emu-project.iam.gserviceaccount.com";

/// A sandbox with a service-account key from `emu`; its path and email.
fn with_key(emu: &Emulator) -> (Sandbox, String, String) {
    let sb = Sandbox::new();
    let key = sb.dir.path().join("sa.json");
    let sa = emu.write_service_account_key(&key);
    (sb, key.display().to_string(), sa.client_email)
}

/// `[credentials.NAME]` impersonating `target` over `key` through `emu`.
fn impersonating(emu: &Emulator, name: &str, key: &str, target: &str, extra: &str) -> String {
    format!(
        "[credentials.{name}]\nkind = \"google\"\nkey_file = {key:?}\nimpersonate_service_account = {target:?}\niam_endpoint = {:?}\n{extra}",
        emu.url()
    )
}

#[test]
fn impersonation_over_a_key_with_and_without_delegates() {
    let emu = Emulator::start();
    let (sb, key, email) = with_key(&emu);
    emu.grant_impersonation(&email, TARGET);
    emu.grant_impersonation(&email, HOP);
    emu.grant_impersonation(HOP, OTHER);
    sb.write_config(&format!(
        "{}{}",
        impersonating(&emu, "deploy", &key, TARGET, ""),
        impersonating(
            &emu,
            "chained",
            &key,
            OTHER,
            &format!("delegates = [{HOP:?}]\n")
        ),
    ));
    let deploy = sb.get("deploy");
    let chained = sb.get("chained");
    assert_eq!(emu.subject_of(&deploy).as_deref(), Some(TARGET));
    assert_eq!(emu.subject_of(&chained).as_deref(), Some(OTHER));
    assert_eq!(
        emu.calls(Endpoint::GoogleToken),
        1,
        "one source token for both"
    );
    let calls = emu.calls_to(Endpoint::IamAccessToken);
    assert_eq!(calls.len(), 2);
    let source = emu.last_token(Endpoint::GoogleToken).unwrap().token;
    for call in &calls {
        assert_eq!(call.status, 200);
        assert_eq!(call.bearer.as_deref(), Some(source.as_str()));
        assert_eq!(call.scope.as_deref(), Some("3600s"), "the lifetime asked");
    }
    assert_eq!(
        calls[1].path,
        format!("/v1/projects/-/serviceAccounts/{OTHER}:generateAccessToken")
    );
    // Cached like any token.
    assert_eq!(sb.get("deploy"), deploy);
    assert_eq!(emu.calls(Endpoint::IamAccessToken), 2);
}

#[test]
fn impersonation_over_an_authorized_user() {
    let emu = Emulator::start();
    let sb = Sandbox::new();
    let file = sb.dir.path().join("adc.json");
    let user = emu.write_authorized_user(&file);
    emu.grant_impersonation(&format!("user:{}", user.client_id), TARGET);
    sb.write_config(&impersonating(
        &emu,
        "deploy",
        &file.display().to_string(),
        TARGET,
        "",
    ));
    let token = sb.get("deploy");
    assert_eq!(emu.subject_of(&token).as_deref(), Some(TARGET));
    let grant = &emu.calls_to(Endpoint::GoogleToken)[0];
    assert_eq!(grant.grant_type.as_deref(), Some("refresh_token"));
}

#[test]
fn impersonation_over_the_metadata_server() {
    let emu = Emulator::start();
    let sb = Sandbox::new();
    sb.write_config(&format!(
        "[credentials.deploy]\nkind = \"google\"\nmetadata_host = \"127.0.0.1:{}\"\nimpersonate_service_account = {TARGET:?}\niam_endpoint = {:?}\n",
        emu.port(),
        emu.url()
    ));
    let token = sb.get("deploy");
    assert_eq!(emu.subject_of(&token).as_deref(), Some(TARGET));
    assert_eq!(emu.calls(Endpoint::GoogleMetadata), 1);
    let source = emu.last_token(Endpoint::GoogleMetadata).unwrap().token;
    let call = &emu.calls_to(Endpoint::IamAccessToken)[0];
    assert_eq!(call.bearer.as_deref(), Some(source.as_str()));
}

#[test]
fn a_refused_impersonation_is_one_line_in_googles_words() {
    let emu = Emulator::start();
    let (sb, key, email) = with_key(&emu);
    emu.grant_impersonation(&email, HOP);
    sb.write_config(&format!(
        "{}{}",
        impersonating(&emu, "deploy", &key, TARGET, ""),
        impersonating(
            &emu,
            "via-hop",
            &key,
            TARGET,
            &format!("delegates = [{HOP:?}]\n")
        ),
    ));
    for name in ["deploy", "via-hop"] {
        sb.run(["get", name]).upstream_failure(
            &format!("credcache: cannot get a token for {name}: iamcredentials answered 403: PERMISSION_DENIED: "),
            "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
        );
    }
    let source = emu.last_token(Endpoint::GoogleToken).unwrap().token;
    let status = sb.run(["status", "--json"]).ok().to_owned();
    assert!(!status.contains(&source), "no source token in status");
    assert!(!sb.log().contains(&source), "no source token in the log");
}

#[test]
fn ten_impersonated_credentials_over_one_key_make_one_key_grant() {
    let emu = Emulator::start();
    let (sb, key, _) = with_key(&emu);
    let names: Vec<String> = (0..10).map(|i| format!("sa{i}")).collect();
    let config: String = names
        .iter()
        .map(|n| {
            let target = format!("{n}@emu-project.iam.gserviceaccount.com");
            impersonating(&emu, n, &key, &target, "")
        })
        .collect();
    sb.write_config(&config);
    // Hold the key grant open so every credential's fetch queues behind it.
    emu.push_fault(
        Endpoint::GoogleToken,
        Fault::slow(Duration::from_millis(300)),
    );
    let sb = Arc::new(sb);
    let start = Arc::new(Barrier::new(names.len()));
    let handles: Vec<_> = names
        .iter()
        .map(|n| {
            let (sb, start, n) = (sb.clone(), start.clone(), n.clone());
            std::thread::spawn(move || {
                start.wait();
                sb.run(["get", &n]).ok().trim_end().to_owned()
            })
        })
        .collect();
    let tokens: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (name, token) in names.iter().zip(&tokens) {
        let want = format!("{name}@emu-project.iam.gserviceaccount.com");
        assert_eq!(emu.subject_of(token), Some(want));
    }
    assert_eq!(emu.calls(Endpoint::GoogleToken), 1, "one key grant");
    assert_eq!(emu.calls(Endpoint::IamAccessToken), 10, "one IAM call each");
    // Each a credential in its own right: a forced refresh of one asks IAM
    // again, over the cached source.
    sb.run(["refresh", "sa3"]).ok();
    assert_eq!(emu.calls(Endpoint::GoogleToken), 1);
    assert_eq!(emu.calls(Endpoint::IamAccessToken), 11);
}

#[test]
fn a_two_hour_lifetime_is_passed_on_and_refused_without_the_org_policy() {
    let emu = Emulator::start();
    let (sb, key, _) = with_key(&emu);
    sb.write_config(&impersonating(
        &emu,
        "deploy",
        &key,
        TARGET,
        "lifetime = \"2h\"\n",
    ));
    sb.run(["get", "deploy"]).upstream_failure(
        "credcache: cannot get a token for deploy: iamcredentials answered 400: INVALID_ARGUMENT: ",
        "needs the organization policy constraints/iam.allowServiceAccountCredentialLifetimeExtension",
    );
    emu.allow_lifetime_extension(TARGET);
    let json: serde_json::Value = serde_json::from_str(
        sb.run(["get", "deploy", "--refresh", "--format", "json"])
            .ok(),
    )
    .unwrap();
    let expires_in = json["expires_in"].as_i64().unwrap();
    assert!((7000..=7200).contains(&expires_in), "{expires_in}");
    let calls = emu.calls_to(Endpoint::IamAccessToken);
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.scope.as_deref() == Some("7200s")));
}

#[test]
fn an_impersonated_service_account_adc_file() {
    let emu = Emulator::start();
    let sb = Sandbox::new();
    let user_file = sb.dir.path().join("user.json");
    let user = emu.write_authorized_user(&user_file);
    let source: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&user_file).unwrap()).unwrap();
    emu.grant_impersonation(&format!("user:{}", user.client_id), HOP);
    emu.grant_impersonation(HOP, TARGET);
    // What `gcloud auth application-default login
    // --impersonate-service-account` writes, pointed at the emulator.
    let gcloud = sb.gcloud_dir();
    let adc = serde_json::json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url": format!("{}/v1/projects/-/serviceAccounts/{TARGET}:generateAccessToken", emu.url()),
        "delegates": [format!("projects/-/serviceAccounts/{HOP}")],
        "source_credentials": source,
        "quota_project_id": "billing-proj",
    });
    std::fs::write(
        gcloud.join("application_default_credentials.json"),
        adc.to_string(),
    )
    .unwrap();
    // No config file: the built-in `google`, in the ADC order.
    let token = sb.get("google");
    assert_eq!(emu.subject_of(&token).as_deref(), Some(TARGET));
    let grant = &emu.calls_to(Endpoint::GoogleToken)[0];
    assert_eq!(grant.grant_type.as_deref(), Some("refresh_token"));
    assert_eq!(
        grant.scope.as_deref(),
        None,
        "the source asks for the user's own scopes"
    );
    assert_eq!(emu.calls(Endpoint::IamAccessToken), 1);
}

#[test]
fn status_shows_the_source_token_its_credentials_share_never_the_token() {
    let emu = Emulator::start();
    let (sb, key, _) = with_key(&emu);
    let names = ["a", "b", "c"];
    let config: String = names
        .iter()
        .map(|n| {
            let target = format!("{n}@emu-project.iam.gserviceaccount.com");
            impersonating(&emu, n, &key, &target, "")
        })
        .collect();
    sb.write_config(&config);
    let status: serde_json::Value =
        serde_json::from_str(sb.run(["status", "--json"]).ok()).unwrap();
    assert_eq!(status["sources"], serde_json::json!([]), "none fetched yet");
    for n in names {
        sb.get(n);
    }
    let source = emu.last_token(Endpoint::GoogleToken).unwrap().token;
    let text = sb.run(["status", "--json"]).ok().to_owned();
    assert!(!text.contains(&source), "no source token in status --json");
    let status: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status["schema_version"], 1);
    assert_eq!(status["sources_not_shown"], 0);
    let sources = status["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1, "{sources:?}");
    let s = &sources[0];
    assert_eq!(s["source"], format!("key file {key}"));
    assert_eq!(s["state"], "fresh");
    assert_eq!(s["shared_by"], 3);
    assert_eq!(s["fetches"], 1);
    assert_eq!(s["last_error"], serde_json::Value::Null);
    let (Some(fetched), Some(expires)) = (s["fetched_at"].as_str(), s["expires_at"].as_str())
    else {
        panic!("{s}")
    };
    assert!(
        chrono::DateTime::parse_from_rfc3339(expires).unwrap()
            > chrono::DateTime::parse_from_rfc3339(fetched).unwrap(),
        "{s}"
    );

    let text = sb.run(["status"]).ok().to_owned();
    assert!(!text.contains(&source), "no source token in status");
    let header = text
        .lines()
        .position(|l| l.starts_with("SOURCE "))
        .unwrap_or_else(|| panic!("{text}"));
    let row: Vec<&str> = text
        .lines()
        .nth(header + 1)
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(row[0], format!("key file {key}"));
    assert_eq!(row[1], "fresh");
    assert_eq!(row[3], "3", "{row:?}");

    // `forget --all` drops source tokens too.
    sb.run(["forget", "--all"]).ok();
    let status: serde_json::Value =
        serde_json::from_str(sb.run(["status", "--json"]).ok()).unwrap();
    assert_eq!(status["sources"], serde_json::json!([]));
}

#[test]
fn a_lifetime_over_an_impersonated_adc_file_is_passed_on_and_refused_without_the_org_policy() {
    let emu = Emulator::start();
    let sb = Sandbox::new();
    let user_file = sb.dir.path().join("user.json");
    let user = emu.write_authorized_user(&user_file);
    let source: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&user_file).unwrap()).unwrap();
    emu.grant_impersonation(&format!("user:{}", user.client_id), TARGET);
    // gcloud's file carries no lifetime: the credential's `lifetime` is it.
    let adc = sb.dir.path().join("adc.json");
    let file = serde_json::json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url": format!("{}/v1/projects/-/serviceAccounts/{TARGET}:generateAccessToken", emu.url()),
        "delegates": [],
        "source_credentials": source,
    });
    std::fs::write(&adc, file.to_string()).unwrap();
    sb.write_config(&format!(
        "[credentials.deploy]\nkind = \"google\"\nkey_file = {:?}\nlifetime = \"2h\"\n",
        adc.display().to_string()
    ));
    sb.run(["config", "check"]).ok();
    sb.run(["get", "deploy"]).upstream_failure(
        "credcache: cannot get a token for deploy: iamcredentials answered 400: INVALID_ARGUMENT: ",
        &format!("(a lifetime over 1h needs the organization policy constraints/iam.allowServiceAccountCredentialLifetimeExtension to list {TARGET})"),
    );
    emu.allow_lifetime_extension(TARGET);
    let json: serde_json::Value = serde_json::from_str(
        sb.run(["get", "deploy", "--refresh", "--format", "json"])
            .ok(),
    )
    .unwrap();
    assert_eq!(
        emu.subject_of(json["token"].as_str().unwrap()).as_deref(),
        Some(TARGET)
    );
    let expires_in = json["expires_in"].as_i64().unwrap();
    assert!(
        expires_in > 3600,
        "longer than the default hour: {expires_in}"
    );
    let calls = emu.calls_to(Endpoint::IamAccessToken);
    assert_eq!(calls.len(), 2);
    assert!(
        calls.iter().all(|c| c.scope.as_deref() == Some("7200s")),
        "{calls:?}"
    );
    assert_eq!(calls[0].status, 400);
    assert_eq!(calls[1].status, 200);
}
