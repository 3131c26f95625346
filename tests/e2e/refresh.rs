//! Refresh ahead of expiry and serving through upstream trouble, with
//! tokens that live seconds. These tests wait for the daemon's own
//! schedule, so they read what it did (a `watch` stream, the emulator's
//! call log, `list --json`) rather than sleeping.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use credcache_tests::emulator::{Emulator, Endpoint, Fault};

use crate::harness::{Sandbox, count, eventually};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn time(v: &serde_json::Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

fn credential(sb: &Sandbox, name: &str) -> serde_json::Value {
    let list = json(sb.run(["list", "--json"]).ok());
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
        .clone()
}

/// Polls `list --json` until `done` holds for `name`, for at most `limit`.
fn wait_for(
    sb: &Sandbox,
    name: &str,
    limit: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    eventually(limit, || {
        let c = credential(sb, name);
        if done(&c) { Ok(c) } else { Err(c) }
    })
}

#[test]
fn a_token_is_refreshed_in_the_background_and_watch_sees_it() {
    let sb = Sandbox::new();
    let (script, calls) = sb.counting_script("v");
    // 12 s tokens: headroom is capped at half the lifetime, so a refresh
    // is due about 6 s after each fetch, paced to 10 s (the least interval
    // between background refreshes), still before expiry, with nobody
    // asking.
    sb.write_config(
        &Sandbox::command_credential("short", &script)
            .replace("lifetime = \"1h\"", "lifetime = \"12s\""),
    );
    let mut watch = sb
        .command("credcache")
        .args(["watch", "short"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = json(&lines.next().unwrap().unwrap());
    let second = json(&lines.next().unwrap().unwrap());
    let third = json(&lines.next().unwrap().unwrap());
    watch.kill().unwrap();
    let _ = watch.wait();

    assert_eq!(first["token"], "tok-1-v");
    assert_eq!(second["token"], "tok-2-v");
    assert_eq!(third["token"], "tok-3-v");
    for (old, new) in [(&first, &second), (&second, &third)] {
        assert!(
            time(&new["fetched_at"]) < time(&old["expires_at"]),
            "refreshed before expiry: {old} then {new}"
        );
        assert!(time(&new["fetched_at"]) > time(&old["fetched_at"]));
    }
    assert!(count(&calls) >= 3);
    // Only the watch asked; the refreshes were the daemon's own.
    let c = credential(&sb, "short");
    assert!(c["next_refresh"].is_string(), "{c}");
}

#[test]
fn upstream_500s_keep_the_cached_token_served_with_backoff() {
    let emu = Emulator::start();
    let sb = Sandbox::new();
    let key = sb.dir.path().join("sa.json");
    emu.write_service_account_key(&key);
    sb.write_config(&format!(
        "[credentials.gcp]\nkind = \"google\"\nkey_file = {:?}\n",
        key.display().to_string()
    ));
    let token = sb.get("gcp");

    emu.push_fault(
        Endpoint::GoogleToken,
        Fault::json(
            500,
            r#"{"error":"internal_failure","error_description":"backend unavailable"}"#,
        )
        .until_cleared(),
    );
    // An explicit refresh fails (exit 5, the cloud's words)...
    let failed = sb.run(["refresh", "gcp"]);
    assert_eq!(failed.code, 5, "{failed:?}");
    assert!(
        failed
            .stderr
            .contains("internal_failure: backend unavailable"),
        "{failed:?}"
    );
    // ...and from then on the daemon retries in the background with
    // exponential backoff, while `get` keeps serving the valid token.
    let c = wait_for(&sb, "gcp", Duration::from_secs(60), |c| {
        c["consecutive_failures"].as_u64().unwrap() >= 5
    });
    assert!(
        c["state"] == "stale-serving" || c["state"] == "refreshing",
        "{c}"
    );
    assert!(
        c["last_error"]
            .as_str()
            .unwrap()
            .contains("backend unavailable")
    );
    assert_eq!(sb.get("gcp"), token, "the cached token is still served");

    // The call log shows the backoff: each gap is within its window
    // (1 s, 2 s, 4 s, ... with full jitter), never a tight loop.
    let log = emu.calls_to(Endpoint::GoogleToken);
    let failures: Vec<_> = log.iter().filter(|c| c.status == 500).collect();
    assert!(failures.len() >= 5, "{failures:?}");
    for (k, pair) in failures.windows(2).enumerate().skip(1) {
        let gap = (pair[1].at - pair[0].at).to_std().unwrap_or_default();
        let window = Duration::from_secs(1 << k.min(8));
        assert!(
            gap <= window + Duration::from_millis(500),
            "gap {k} was {gap:?}, window {window:?}"
        );
    }

    emu.clear_faults(Endpoint::GoogleToken);
    let c = wait_for(&sb, "gcp", Duration::from_secs(60), |c| {
        c["state"] == "fresh"
    });
    assert_eq!(c["consecutive_failures"], 0);
    assert_ne!(sb.get("gcp"), token, "recovered with a new token");
}

#[test]
fn an_expired_token_is_never_served() {
    let emu = Emulator::start();
    emu.set_lifetime(Endpoint::GoogleToken, 3);
    let sb = Sandbox::new();
    let key = sb.dir.path().join("sa.json");
    emu.write_service_account_key(&key);
    sb.write_config(&format!(
        "[credentials.gcp]\nkind = \"google\"\nkey_file = {:?}\n",
        key.display().to_string()
    ));
    sb.get("gcp");
    emu.push_fault(Endpoint::GoogleToken, Fault::html(503).until_cleared());
    // Served while valid, then refused: never served once expired.
    let out = eventually(Duration::from_secs(30), || {
        let out = sb.run(["get", "gcp", "--format", "json"]);
        let now = Utc::now();
        if out.code == 5 {
            return Ok(out);
        }
        let v = json(out.ok());
        assert!(time(&v["expires_at"]) > now, "served an expired token: {v}");
        Err(v)
    });
    assert!(out.stderr.contains("answered 503"), "{out:?}");
}
