//! The stable machine interface (docs/machine-interface.md): every JSON
//! object from `get --format json`, `watch`, `list --json` and
//! `status --json` carries `schema_version: 1` and the documented fields;
//! the other `get` formats are exactly what their consumers parse.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use serde_json::Value;

use crate::harness::Sandbox;

const TOKEN_FIELDS: [&str; 7] = [
    "expires_at",
    "expires_in",
    "fetched_at",
    "kind",
    "name",
    "schema_version",
    "token",
];

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    let (script, _) = sb.counting_script("v");
    sb.write_config(&format!(
        "{}env_var = \"VAULT_TOKEN\"\n",
        Sandbox::command_credential("vault", &script)
    ));
    sb
}

#[test]
fn each_get_format() {
    let sb = sandbox();
    let json: Value =
        serde_json::from_str(sb.run(["get", "vault", "--format", "json"]).ok()).unwrap();
    assert_eq!(keys(&json), TOKEN_FIELDS);
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["token"], "tok-1-v");

    // kubectl's format is kubectl's: its version is `apiVersion`.
    let ec: Value =
        serde_json::from_str(sb.run(["get", "vault", "--format", "exec-credential"]).ok()).unwrap();
    assert_eq!(keys(&ec), ["apiVersion", "kind", "status"]);
    assert_eq!(keys(&ec["status"]), ["expirationTimestamp", "token"]);

    assert_eq!(sb.run(["get", "vault"]).ok(), "tok-1-v\n");
    assert_eq!(
        sb.run(["get", "vault", "--format", "raw"]).ok(),
        "tok-1-v\n"
    );
    assert_eq!(
        sb.run(["get", "vault", "--format", "env"]).ok(),
        "export VAULT_TOKEN='tok-1-v'\n"
    );
    assert_eq!(
        sb.run(["get", "vault", "--format", "header"]).ok(),
        "Authorization: Bearer tok-1-v\n"
    );
}

#[test]
fn watch_lines_have_the_get_json_shape() {
    let sb = sandbox();
    let mut child = sb
        .command("credcache")
        .args(["watch", "vault"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(keys(&first), TOKEN_FIELDS);
    assert_eq!(first["schema_version"], 1);
    assert_eq!(first["token"], "tok-1-v");
    // A new token makes a new line of the same shape.
    sb.run(["refresh", "vault"]).ok();
    let second: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(keys(&second), TOKEN_FIELDS);
    assert_eq!(second["token"], "tok-2-v");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn list_and_status_json_carry_the_schema_version() {
    let sb = sandbox();
    sb.get("vault");
    let list: Value = serde_json::from_str(sb.run(["list", "--json"]).ok()).unwrap();
    for entry in list.as_array().unwrap() {
        assert_eq!(entry["schema_version"], 1, "{entry}");
        for field in ["name", "kind", "state", "expires_at", "last_error"] {
            assert!(entry.get(field).is_some(), "{field} missing: {entry}");
        }
    }
    let status: Value = serde_json::from_str(sb.run(["status", "--json"]).ok()).unwrap();
    assert_eq!(status["schema_version"], 1);
    for field in [
        "daemon_version",
        "protocol_version",
        "pid",
        "uptime_secs",
        "socket",
        "config_error",
        "credentials",
    ] {
        assert!(status.get(field).is_some(), "{field} missing: {status}");
    }
    let vault = status["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "vault")
        .unwrap();
    assert_eq!(vault["state"], "fresh");
    assert!(
        !status.to_string().contains("tok-1-v"),
        "no token in status"
    );
}
