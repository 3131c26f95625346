//! The everyday path: auto-start, get, cache, formats, exit codes.

use crate::harness::{Sandbox, count};

#[test]
fn autostart_then_get_then_cached() {
    let sb = Sandbox::new();
    let (script, calls) = sb.counting_script("v");
    sb.write_config(&Sandbox::command_credential("vault", &script));
    assert!(sb.daemon_pid().is_none());

    assert_eq!(sb.get("vault"), "tok-1-v");
    assert!(sb.daemon_pid().is_some(), "the client started a daemon");
    assert_eq!(sb.get("vault"), "tok-1-v");
    assert_eq!(
        count(&calls),
        1,
        "the second get is answered from the cache"
    );

    let status = sb.run(["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(status.ok()).unwrap();
    assert_eq!(v["pid"].as_i64().unwrap() as i32, sb.daemon_pid().unwrap());
    assert!(v["requests_served"].as_u64().unwrap() >= 2);
    let vault = v["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "vault")
        .unwrap();
    assert_eq!(vault["state"], "fresh");
}

#[test]
fn refresh_fetches_anew_and_forget_drops() {
    let sb = Sandbox::new();
    let (script, calls) = sb.counting_script("v");
    sb.write_config(&Sandbox::command_credential("vault", &script));
    assert_eq!(sb.get("vault"), "tok-1-v");
    sb.run(["refresh", "vault"]).ok();
    assert_eq!(count(&calls), 2, "refresh returns once the fetch is done");
    assert_eq!(sb.get("vault"), "tok-2-v");
    assert_eq!(sb.run(["get", "vault", "--refresh"]).ok().trim(), "tok-3-v");
    sb.run(["forget", "vault"]).ok();
    assert_eq!(sb.get("vault"), "tok-4-v");
    sb.run(["forget", "--all"]).ok();
    assert_eq!(sb.get("vault"), "tok-5-v");
}

#[test]
fn formats() {
    let sb = Sandbox::new();
    let (script, _) = sb.counting_script("v");
    sb.write_config(&format!(
        "{}env_var = \"VAULT_TOKEN\"\n",
        Sandbox::command_credential("vault", &script)
    ));

    let json: serde_json::Value =
        serde_json::from_str(sb.run(["get", "vault", "--format", "json"]).ok()).unwrap();
    assert_eq!(json["name"], "vault");
    assert_eq!(json["kind"], "command");
    assert_eq!(json["token"], "tok-1-v");
    let expires = json["expires_at"].as_str().unwrap();
    assert!(expires.ends_with('Z'), "{expires}");
    let expires_in = json["expires_in"].as_i64().unwrap();
    assert!((3500..=3600).contains(&expires_in), "{expires_in}");

    assert_eq!(
        sb.run(["get", "vault", "--format", "env"]).ok(),
        "export VAULT_TOKEN='tok-1-v'\n"
    );
    assert_eq!(
        sb.run(["get", "vault", "--format", "header"]).ok(),
        "Authorization: Bearer tok-1-v\n"
    );

    let ec: serde_json::Value =
        serde_json::from_str(sb.run(["get", "vault", "--format", "exec-credential"]).ok()).unwrap();
    assert_eq!(ec["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(ec["kind"], "ExecCredential");
    assert_eq!(ec["status"]["token"], "tok-1-v");
    assert_eq!(ec["status"]["expirationTimestamp"], expires);
}

#[test]
fn exit_codes() {
    let mut sb = Sandbox::new();
    let (script, _) = sb.counting_script("v");
    sb.write_config(&format!(
        "{}[credentials.broken]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"echo 'vault: permission denied' >&2; exit 3\"]\n",
        Sandbox::command_credential("vault", &script)
    ));
    let missing = sb.run(["get", "nope"]);
    assert_eq!(missing.code, 4, "{missing:?}");
    assert!(missing.stderr.starts_with("credcache: "), "{missing:?}");
    assert!(
        missing.stderr.contains("no credential named \"nope\""),
        "{missing:?}"
    );

    let upstream = sb.run(["get", "broken"]);
    assert_eq!(upstream.code, 5, "{upstream:?}");
    assert!(
        upstream
            .stderr
            .contains("exited with status 3: vault: permission denied"),
        "{upstream:?}"
    );
    assert_eq!(upstream.stderr.lines().count(), 1, "one line: {upstream:?}");
    assert!(upstream.stdout.is_empty());

    let usage = sb.run(["get", "vault", "--format", "yaml"]);
    assert_eq!(usage.code, 2, "{usage:?}");

    sb.kill_daemon();
    sb.env("CREDCACHE_NO_AUTOSTART", "1");
    let unreachable = sb.run(["get", "vault"]);
    assert_eq!(unreachable.code, 3, "{unreachable:?}");
    assert!(sb.daemon_pid_alive().is_none());
}

#[test]
fn daemon_start_status_stop() {
    let sb = Sandbox::new();
    let stopped = sb.run(["daemon", "status"]);
    assert_eq!(stopped.code, 3, "{stopped:?}");
    assert!(sb.daemon_pid().is_none(), "daemon status never starts one");

    sb.run(["daemon", "start"]).ok();
    let pid = sb.daemon_pid().unwrap();
    let status = sb.run(["daemon", "status"]);
    assert!(
        status.ok().contains(&format!("pid {pid}"))
            || status.stderr.contains(&format!("pid {pid}")),
        "{status:?}"
    );

    sb.run(["daemon", "stop"]).ok();
    assert!(!sb.socket.exists(), "the socket is removed on stop");
    sb.wait_lock_free();
    let again = sb.run(["daemon", "status"]);
    assert_eq!(again.code, 3);
}
