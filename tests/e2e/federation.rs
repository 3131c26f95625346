//! `external_account` files (workload identity federation) against the
//! emulator's STS: a file and a url credential source, STS then
//! impersonation, an ID token through it, an executable source (allowed
//! or not, its failure, its timeout, its output file), the sources
//! credcache refuses by name, and `external_account_authorized_user`
//! (workforce sign-in) with its refresh-token rotation.

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
fn an_executable_without_the_allow_variable_and_aws_are_refused_by_name() {
    let emu = Emulator::start();
    for (source, want) in [
        (
            serde_json::json!({"executable": {"command": "/bin/true"}}),
            "credential_source is an executable, which runs only when GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1 is in credcached's environment",
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

const ALLOW: &str = "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES";

/// A sandbox whose daemon may run executables, and an executable script
/// in it with this body (after `#!/bin/sh`). `SUCCESS` in the body is
/// replaced by a success answer for `exe-subject`, valid for an hour.
fn allowed_with_script(body: &str) -> (Sandbox, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let mut sb = Sandbox::new();
    sb.env(ALLOW, "1");
    let script = sb.dir.path().join("token-exe");
    let success = r#"printf '{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:id_token","id_token":"exe-subject","expiration_time":%s}' $(( $(date +%s) + 3600 ))"#;
    std::fs::write(
        &script,
        format!("#!/bin/sh\n{}\n", body.replace("SUCCESS", success)),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (sb, script)
}

#[test]
fn an_allowed_executable_gets_the_protocol_environment_and_its_token_is_exchanged() {
    let emu = Emulator::start();
    emu.grant_impersonation(&format!("principal:{AUDIENCE}"), TARGET);
    let (sb, script) = allowed_with_script(
        "dir=$(dirname \"$0\")\necho \"$@\" > \"$dir/args\"\nenv | grep ^GOOGLE_EXTERNAL_ACCOUNT_ | sort > \"$dir/env\"\nSUCCESS",
    );
    let command = format!("{} --flag  two words", script.display());
    setup(
        &emu,
        &sb,
        serde_json::json!({"executable": {"command": command}}),
        true,
    );
    let token = sb.get("wif");
    assert_eq!(emu.subject_of(&token).as_deref(), Some(TARGET));
    assert_eq!(
        emu.calls_to(Endpoint::StsToken)[0].bearer.as_deref(),
        Some("exe-subject")
    );
    let dir = sb.dir.path();
    assert_eq!(
        std::fs::read_to_string(dir.join("args")).unwrap(),
        "--flag two words\n"
    );
    let env = std::fs::read_to_string(dir.join("env")).unwrap();
    for want in [
        format!("{ALLOW}=1"),
        format!("GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE={AUDIENCE}"),
        format!("GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL={TARGET}"),
        "GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE=0".to_owned(),
        "GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE=urn:ietf:params:oauth:token-type:jwt".to_owned(),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in {env}");
    }
    assert!(!env.contains("OUTPUT_FILE"), "{env}");
}

#[test]
fn the_executables_own_failure_is_the_one_line_error() {
    let emu = Emulator::start();
    let (sb, script) = allowed_with_script(
        r#"printf '{"version":1,"success":false,"code":"401","message":"Caller not authorized."}'
exit 1"#,
    );
    setup(
        &emu,
        &sb,
        serde_json::json!({"executable": {"command": script.display().to_string()}}),
        false,
    );
    let out = sb.run(["get", "wif"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("it failed: code 401: Caller not authorized."),
        "{out:?}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert_eq!(emu.calls(Endpoint::StsToken), 0);
}

#[test]
fn a_hung_executable_is_killed_at_timeout_millis() {
    let emu = Emulator::start();
    let (sb, script) = allowed_with_script("echo $$ > \"$(dirname \"$0\")/pid\"\nexec sleep 300");
    setup(
        &emu,
        &sb,
        serde_json::json!({"executable": {"command": script.display().to_string(), "timeout_millis": 5000}}),
        false,
    );
    let out = sb.run(["get", "wif"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("did not finish within 5 s; killed it"),
        "{out:?}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    let pid = std::fs::read_to_string(sb.dir.path().join("pid")).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    credcache_tests::eventually::eventually(std::time::Duration::from_secs(10), || {
        match std::fs::read_to_string(&stat) {
            Err(_) => Ok(()),
            Ok(s)
                if s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')) =>
            {
                Ok(())
            }
            Ok(s) => Err(s),
        }
    });
    assert_eq!(emu.calls(Endpoint::StsToken), 0);
}

#[test]
fn a_valid_output_file_is_used_without_running_the_executable_again() {
    let emu = Emulator::start();
    let (sb, script) = allowed_with_script(
        "dir=$(dirname \"$0\")\nn=$(cat \"$dir/count\" 2>/dev/null || echo 0)\necho $((n + 1)) > \"$dir/count\"\nSUCCESS > \"$GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE\"\ncat \"$GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE\"",
    );
    let output = sb.dir.path().join("exe-output.json");
    setup(
        &emu,
        &sb,
        serde_json::json!({"executable": {"command": script.display().to_string(),
                                          "output_file": output.display().to_string()}}),
        false,
    );
    sb.get("wif");
    sb.run(["refresh", "wif"]).ok();
    let sts = emu.calls_to(Endpoint::StsToken);
    assert_eq!(sts.len(), 2);
    assert!(
        sts.iter()
            .all(|c| c.bearer.as_deref() == Some("exe-subject"))
    );
    assert_eq!(
        std::fs::read_to_string(sb.dir.path().join("count"))
            .unwrap()
            .trim(),
        "1",
        "the program ran once"
    );
}

/// A config naming a workforce user file the emulator wrote, as `wf`.
fn workforce(emu: &Emulator, sb: &Sandbox) -> credcache_tests::emulator::AuthorizedUser {
    let path = sb.dir.path().join("workforce.json");
    let user = emu.write_workforce_user(&path);
    sb.write_config(&format!(
        "[credentials.wf]\nkind = \"google\"\nkey_file = {:?}\n",
        path.display().to_string()
    ));
    user
}

#[test]
fn a_workforce_user_refreshes_with_basic_auth_and_keeps_the_rotated_refresh_token() {
    let emu = Emulator::start();
    let sb = Sandbox::new();
    let user = workforce(&emu, &sb);
    let file_before = std::fs::read(&user.path).unwrap();
    let first = sb.get("wf");
    assert_eq!(emu.last_token(Endpoint::StsToken).unwrap().token, first);
    sb.run(["refresh", "wf"]).ok();
    let second = sb.get("wf");
    assert_ne!(first, second);
    let calls = emu.calls_to(Endpoint::StsToken);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls.iter().all(|c| c.status == 200), "{calls:?}");
    assert!(
        calls
            .iter()
            .all(|c| c.grant_type.as_deref() == Some("refresh_token"))
    );
    assert!(
        calls
            .iter()
            .all(|c| c.client_id.as_deref() == Some(user.client_id.as_str()))
    );
    // The first refresh sent the file's token, the second the rotated one.
    assert_eq!(
        calls[0].bearer.as_deref(),
        Some(user.refresh_token.as_str())
    );
    let rotated = calls[1].bearer.clone().unwrap();
    assert_ne!(rotated, user.refresh_token);
    // The file is the user's: not rewritten.
    assert_eq!(std::fs::read(&user.path).unwrap(), file_before);
    // The old token is refused by the emulator now.
    let old = refresh_at_emulator(&emu, &user, &user.refresh_token);
    assert!(old.contains("invalid_grant"), "{old}");
    // A reload (same file, same fingerprint) keeps the rotated token: the
    // spent ones are not sent again.
    sb.run(["daemon", "reload"]).ok();
    sb.run(["refresh", "wf"]).ok();
    // (calls[2] is this test's own refusal above.)
    let calls = emu.calls_to(Endpoint::StsToken);
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert_eq!(calls[3].status, 200, "{calls:?}");
    assert_ne!(calls[3].bearer.as_deref(), Some(rotated.as_str()));
    assert_ne!(
        calls[3].bearer.as_deref(),
        Some(user.refresh_token.as_str())
    );
}

/// The emulator's answer to a workforce refresh with `refresh_token`.
fn refresh_at_emulator(
    emu: &Emulator,
    user: &credcache_tests::emulator::AuthorizedUser,
    refresh_token: &str,
) -> String {
    reqwest::blocking::Client::new()
        .post(format!("{}/v1/oauthtoken", emu.url()))
        .basic_auth(&user.client_id, Some(&user.client_secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .send()
        .and_then(|r| r.text())
        .expect("the emulator answers")
}

#[test]
fn a_workforce_user_with_a_wrong_client_secret_is_a_one_line_error() {
    let emu = Emulator::start();
    let sb = Sandbox::new();
    let user = workforce(&emu, &sb);
    let text = std::fs::read_to_string(&user.path)
        .unwrap()
        .replace(&user.client_secret, "not-the-secret");
    std::fs::write(&user.path, text).unwrap();
    let out = sb.run(["get", "wf"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("invalid_client"), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(!out.stderr.contains(&user.refresh_token), "{out:?}");
    assert_eq!(emu.calls_to(Endpoint::StsToken)[0].status, 401);
}

/// Issue 17: the rotated refresh token is sealed in the store, so a
/// restarted daemon sends the newest one, never a spent one (the
/// emulator refuses those, and the call log shows what was sent).
#[test]
fn a_workforce_users_rotated_refresh_token_survives_a_daemon_restart() {
    let emu = Emulator::start();
    let sb = Sandbox::new();
    let user = workforce(&emu, &sb);
    sb.get("wf");
    sb.run(["refresh", "wf"]).ok();
    sb.run(["daemon", "stop"]).ok();
    sb.wait_lock_free();
    sb.run(["forget", "wf"]).ok();
    sb.run(["refresh", "wf"]).ok();
    sb.run(["daemon", "restart"]).ok();
    sb.run(["refresh", "wf"]).ok();
    let calls = emu.calls_to(Endpoint::StsToken);
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(calls.iter().all(|c| c.status == 200), "{calls:?}");
    let sent: Vec<String> = calls.iter().map(|c| c.bearer.clone().unwrap()).collect();
    assert_eq!(sent[0], user.refresh_token);
    let mut unique = sent.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        sent.len(),
        "a refresh token was sent twice: {sent:?}"
    );
    // Nothing of it in the data directory's plaintext.
    for token in &sent {
        assert!(!crate::harness::dir_contains(&sb.data, token.as_bytes()));
    }
}
