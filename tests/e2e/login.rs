//! `credcache login` / `logout` end to end (issue 18): device code
//! (approved, declined, expired, slow_down), the browser flow with a
//! `BROWSER` that follows the redirect with curl (and one that forges
//! `state`), a Google desktop client, refresh-token rotation across a
//! daemon restart, revocation (exit 5, "needs login", `on_reauth` once),
//! and no refresh token anywhere it must not be.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use credcache_tests::emulator::{DeviceOutcome, Emulator, Endpoint, Fault};

use crate::harness::{Sandbox, count, dir_contains, eventually};

/// The Azure SDKs' public client, credcache's default.
const PUBLIC_CLIENT: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

/// A sandbox with `me`, an Entra user signed in by `method`, against the
/// emulator (tenant `organizations`, the default client), polled every
/// second.
fn entra(emu: &Emulator, method: &str, extra: &str) -> Sandbox {
    emu.register_public_client("organizations", PUBLIC_CLIENT);
    emu.set_device_interval(1);
    let sb = Sandbox::new();
    sb.write_config(&format!(
        "{extra}[credentials.me]\nkind = \"azure\"\nmethod = {method:?}\nauthority_host = {:?}\n",
        emu.url()
    ));
    sb
}

/// A `BROWSER` script in the sandbox.
fn browser_script(sb: &Sandbox, body: &str) -> PathBuf {
    let path = sb.dir.path().join("browser.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The refresh tokens the daemon presented to Entra, in order.
fn presented(emu: &Emulator) -> Vec<(u16, String)> {
    emu.calls_to(Endpoint::EntraToken)
        .into_iter()
        .filter(|c| c.grant_type.as_deref() == Some("refresh_token"))
        .map(|c| (c.status, c.bearer.unwrap_or_default()))
        .collect()
}

#[test]
fn device_code_approved_then_the_rotated_refresh_token_survives_a_restart() {
    let emu = Emulator::start();
    let sb = entra(&emu, "device-code", "");
    emu.set_device_outcome(DeviceOutcome::Approve);
    let started = Instant::now();
    let out = sb.run(["login", "me"]);
    let token = sb.get("me");
    eprintln!(
        "login (device code, approved at once, interval 1 s) to first token: {:?}",
        started.elapsed()
    );
    out.ok();
    assert!(
        out.stderr.contains("enter the code") && out.stderr.contains("/devicelogin"),
        "{out:?}"
    );
    assert!(out.stderr.contains("signed in: me"), "{out:?}");
    assert!(token.starts_with("eyJ.emu-user-"), "{token}");
    // The sign-in's own answer carried the first token, for the configured
    // scope: one call to the token endpoint in all, no refresh yet.
    assert_eq!(emu.calls(Endpoint::EntraToken), 1);
    assert_eq!(
        emu.token_info(&token).unwrap().scope.as_deref(),
        Some("https://management.azure.com/.default")
    );
    let dc = emu.calls_to(Endpoint::EntraDeviceCode);
    assert_eq!(dc.len(), 1);
    assert_eq!(dc[0].client_id.as_deref(), Some(PUBLIC_CLIENT));
    assert!(
        dc[0].scope.as_deref().unwrap().contains("offline_access"),
        "{dc:?}"
    );
    // Rotation: each refresh presents the newest, across a restart too.
    sb.run(["refresh", "me"]).ok();
    sb.run(["daemon", "stop"]).ok();
    sb.wait_lock_free();
    sb.run(["refresh", "me"]).ok();
    sb.run(["daemon", "restart"]).ok();
    sb.run(["refresh", "me"]).ok();
    let sent = presented(&emu);
    // Three refreshes: the first token came with the sign-in.
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(sent.iter().all(|(status, _)| *status == 200), "{sent:?}");
    let mut unique: Vec<&String> = sent.iter().map(|(_, t)| t).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3, "a refresh token was sent twice: {sent:?}");
    // `forget` drops tokens, not the sign-in.
    sb.run(["forget", "me"]).ok();
    assert!(sb.get("me").starts_with("eyJ.emu-user-"));
}

#[test]
fn one_sign_in_serves_other_scopes_at_once_without_spending_a_refresh_token_twice() {
    let emu = Emulator::start();
    let sb = entra(&emu, "device-code", "");
    emu.set_device_outcome(DeviceOutcome::Approve);
    sb.run(["login", "me"]).ok();
    // Two resources asked for at the same time: each refresh must start
    // from the refresh token the other one kept (the emulator, like a
    // strict Entra, refuses a spent one with invalid_grant). The first
    // refresh to arrive is held half a second, so without that order the
    // second would spend the same refresh token first.
    emu.push_fault(
        Endpoint::EntraToken,
        Fault::slow(Duration::from_millis(500)),
    );
    // Two resources other than the configured one, whose token came with
    // the sign-in.
    let scopes = [
        "https://vault.azure.net/.default",
        "https://storage.azure.com/.default",
    ];
    let outs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = scopes
            .iter()
            .map(|scope| s.spawn(|| sb.run(["get", "me", "--scope", scope])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in &outs {
        assert!(out.ok().starts_with("eyJ.emu-user-"), "{out:?}");
    }
    let asked: Vec<String> = emu
        .calls_to(Endpoint::EntraToken)
        .into_iter()
        .filter(|c| c.grant_type.as_deref() == Some("refresh_token"))
        .filter_map(|c| c.scope)
        .collect();
    for scope in scopes {
        assert!(
            asked.iter().any(|a| a.starts_with(scope)),
            "{scope} not asked: {asked:?}"
        );
    }
    let sent = presented(&emu);
    assert!(sent.iter().all(|(status, _)| *status == 200), "{sent:?}");
    let mut unique: Vec<&String> = sent.iter().map(|(_, t)| t).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        sent.len(),
        "a refresh token was sent twice: {sent:?}"
    );
    // No new sign-in was needed, and the scoped tokens sit under `me`.
    assert_eq!(emu.calls_to(Endpoint::EntraDeviceCode).len(), 1);
    let list = sb.run(["list"]);
    assert!(
        list.ok()
            .contains("me [https://storage.azure.com/.default]"),
        "{list:?}"
    );
}

#[test]
fn device_code_declined_and_expired_each_say_so_and_leave_it_needing_login() {
    for (outcome, want) in [
        (DeviceOutcome::Decline, "declined"),
        (DeviceOutcome::Expire, "expired"),
    ] {
        let emu = Emulator::start();
        let sb = entra(&emu, "device-code", "");
        emu.set_device_outcome(outcome);
        let out = sb.run(["login", "me"]);
        // The device code message, then the one-line error.
        assert_eq!(out.code, 5, "{out:?}");
        assert!(out.stderr.contains("enter the code"), "{out:?}");
        let last = out.stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("credcache: cannot sign in me: ") && last.contains(want),
            "{out:?}"
        );
        assert!(last.contains("credcache login me"), "{out:?}");
        let get = sb.run(["get", "me"]);
        get.upstream_failure("credcache: cannot get a token for me: ", "not signed in");
        assert!(get.stderr.contains("run `credcache login me`"), "{get:?}");
        let status = sb.run(["status", "--json"]);
        assert!(status.ok().contains("\"needs login\""), "{status:?}");
    }
}

#[test]
fn device_code_slow_down_adds_five_seconds_to_the_interval() {
    let emu = Emulator::start();
    let sb = entra(&emu, "device-code", "");
    emu.set_device_outcome(DeviceOutcome::SlowDown);
    let child = sb
        .command("credcache")
        .args(["login", "me"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let polls = || {
        emu.calls_to(Endpoint::EntraToken)
            .into_iter()
            .filter(|c| {
                c.grant_type.as_deref() == Some("urn:ietf:params:oauth:grant-type:device_code")
            })
            .collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(30), || {
        let p = polls();
        if p.is_empty() { Err(p) } else { Ok(()) }
    });
    emu.set_device_outcome(DeviceOutcome::Approve);
    let out: crate::harness::Out = child.wait_with_output().unwrap().into();
    out.ok();
    let p = polls();
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(p[0].status, 400);
    assert_eq!(p[1].status, 200);
    // Interval 1 s plus slow_down's 5 s before the next poll.
    let gap = p[1].at - p[0].at;
    assert!(
        gap >= chrono::TimeDelta::seconds(6),
        "polled again after {gap}"
    );
}

#[test]
fn browser_sign_in_follows_the_redirect_and_a_forged_state_is_refused() {
    let emu = Emulator::start();
    let mut sb = entra(&emu, "browser", "");
    let follow = browser_script(&sb, r#"exec curl -sS -L -o /dev/null "$1""#);
    sb.env("BROWSER", &follow);
    let out = sb.run(["login", "me"]);
    out.ok();
    assert!(out.stderr.contains("/oauth2/v2.0/authorize?"), "{out:?}");
    let auth = emu.calls_to(Endpoint::Authorize);
    assert_eq!(auth.len(), 1);
    assert!(sb.get("me").starts_with("eyJ.emu-user-"));
    // The redeemed code carried the PKCE verifier the emulator checked.
    let redeemed: Vec<_> = emu
        .calls_to(Endpoint::EntraToken)
        .into_iter()
        .filter(|c| c.grant_type.as_deref() == Some("authorization_code"))
        .collect();
    assert_eq!(redeemed.len(), 1);
    assert_eq!(redeemed[0].status, 200);

    // A redirect whose state is not the one sent: refused before any code
    // is redeemed.
    let forge = browser_script(
        &sb,
        r#"loc=$(curl -sS -o /dev/null -w '%{redirect_url}' "$1")
exec curl -sS -o /dev/null "$(printf '%s' "$loc" | sed 's/state=[^&]*/state=forged/')""#,
    );
    sb.env("BROWSER", &forge);
    let out = sb.run(["logout", "me"]);
    out.ok();
    let out = sb.run(["login", "me"]);
    assert_eq!(out.code, 5, "{out:?}");
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("credcache: cannot sign in me: ") && last.contains("state does not match"),
        "{out:?}"
    );
    let redeemed = emu
        .calls_to(Endpoint::EntraToken)
        .into_iter()
        .filter(|c| c.grant_type.as_deref() == Some("authorization_code"))
        .count();
    assert_eq!(redeemed, 1, "no second code was redeemed");
    sb.run(["get", "me"]).upstream_failure(
        "credcache: cannot get a token for me: ",
        "run `credcache login me`",
    );
}

#[test]
fn a_google_desktop_client_signs_in_in_the_browser() {
    let emu = Emulator::start();
    let mut sb = Sandbox::new();
    let file = sb.dir.path().join("client_secret_desktop.json");
    let client = emu.write_desktop_client(&file);
    sb.write_config(&format!(
        "[credentials.me-google]\nkind = \"google\"\noauth_client_file = {:?}\n",
        file.display().to_string()
    ));
    let follow = browser_script(&sb, r#"exec curl -sS -L -o /dev/null "$1""#);
    sb.env("BROWSER", &follow);
    // Never signed in: `status` says so before any `get`.
    let status = sb.run(["status", "--json"]);
    assert!(status.ok().contains("\"needs login\""), "{status:?}");
    let get = sb.run(["get", "me-google"]);
    get.upstream_failure(
        "credcache: cannot get a token for me-google: ",
        "not signed in",
    );
    let out = sb.run(["login", "me-google"]);
    out.ok();
    assert!(out.stderr.contains("/o/oauth2/auth?"), "{out:?}");
    assert!(out.stderr.contains("access_type=offline"), "{out:?}");
    let token = sb.get("me-google");
    assert!(token.starts_with("ya29.emu-"), "{token}");
    assert_eq!(
        emu.subject_of(&token).as_deref(),
        Some(format!("user:{}", client.client_id).as_str())
    );
    let live = emu.live_refresh_tokens(&client.client_id);
    assert_eq!(live.len(), 1);
    assert!(!dir_contains(&sb.data, live[0].as_bytes()));
    assert!(!dir_contains(&sb.data, client.client_secret.as_bytes()));
    // Revoked at Google: the next fetch needs a person.
    assert_eq!(emu.revoke_sign_ins(&client.client_id), 1);
    sb.run(["forget", "me-google"]).ok();
    let out = sb.run(["get", "me-google"]);
    out.upstream_failure(
        "credcache: cannot get a token for me-google: ",
        "invalid_grant",
    );
    assert!(
        out.stderr.contains("run `credcache login me-google`"),
        "{out:?}"
    );
    // logout drops the refresh token and the tokens minted from it.
    sb.run(["logout", "me-google"]).ok();
    sb.run(["get", "me-google"]).upstream_failure(
        "credcache: cannot get a token for me-google: ",
        "not signed in",
    );
}

#[test]
fn a_revoked_sign_in_needs_login_runs_on_reauth_once_and_leaks_nothing() {
    let emu = Emulator::start();
    let probe = Sandbox::new();
    let (script, runs) = probe.counting_script("reauth");
    let sb = entra(
        &emu,
        "device-code",
        &format!(
            "[daemon]\non_reauth = [{:?}, \"{{name}}\"]\n",
            script.display().to_string()
        ),
    );
    emu.set_device_outcome(DeviceOutcome::Approve);
    sb.run(["login", "me"]).ok();
    sb.get("me");
    sb.run(["refresh", "me"]).ok();
    let live = emu.live_refresh_tokens(PUBLIC_CLIENT);
    assert_eq!(live.len(), 1);
    let spent: Vec<String> = presented(&emu).into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        spent.len(),
        1,
        "the refresh; the first token came with the sign-in"
    );

    // No refresh token in the data directory's plaintext, the debug log,
    // `status --json`, or any process's command line.
    let status = sb.run(["status", "--json"]).ok().to_owned();
    let log = sb.log();
    assert!(log.contains("signed in"), "the debug log is there: {log}");
    let cmdlines: Vec<Vec<u8>> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .collect();
    for secret in live.iter().chain(&spent) {
        assert!(!dir_contains(&sb.data, secret.as_bytes()), "on disk");
        assert!(!log.contains(secret.as_str()), "in the log");
        assert!(!status.contains(secret.as_str()), "in status");
        assert!(
            !cmdlines
                .iter()
                .any(|c| c.windows(secret.len()).any(|w| w == secret.as_bytes())),
            "in a command line"
        );
    }

    // Revoked (a password change): the next fetch needs a person.
    assert_eq!(emu.revoke_sign_ins(PUBLIC_CLIENT), 1);
    sb.run(["forget", "me"]).ok();
    let out = sb.run(["get", "me"]);
    out.upstream_failure("credcache: cannot get a token for me: ", "invalid_grant");
    assert!(out.stderr.contains("run `credcache login me`"), "{out:?}");
    let status = sb.run(["status", "--json"]);
    assert!(status.ok().contains("\"needs login\""), "{status:?}");
    let list = sb.run(["list"]);
    assert!(list.ok().contains("needs login"), "{list:?}");
    eventually(Duration::from_secs(30), || match count(&runs) {
        1 => Ok(()),
        n => Err(n),
    });
    // More gets and a background of refreshes: the same event, no new run.
    let calls_before = emu.calls_to(Endpoint::EntraToken).len();
    for _ in 0..3 {
        assert_eq!(sb.run(["get", "me"]).code, 5);
    }
    assert_eq!(
        emu.calls_to(Endpoint::EntraToken).len(),
        calls_before,
        "a kept needs-login is not asked upstream again"
    );
    // A new event (logged out, so not signed in) runs it once more.
    sb.run(["logout", "me"]).ok();
    assert_eq!(sb.run(["get", "me"]).code, 5);
    eventually(Duration::from_secs(30), || match count(&runs) {
        2 => Ok(()),
        n => Err(n),
    });
    // Signing in again heals it.
    sb.run(["login", "me"]).ok();
    assert!(sb.get("me").starts_with("eyJ.emu-user-"));
    assert_eq!(count(&runs), 2);
}

#[test]
fn login_of_a_credential_that_signs_in_by_itself_is_a_clear_error() {
    let emu = Emulator::start();
    let sb = crate::harness::google_sandbox(&emu);
    let out = sb.run(["login", "gcp"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("not signed in by a person"), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    let out = sb.run(["logout", "gcp"]);
    assert_eq!(out.code, 2, "{out:?}");
}
