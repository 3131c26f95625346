//! Config errors named precisely, and reloads that never take the daemon
//! down.

use std::time::Duration;

use crate::harness::{Sandbox, count, eventually, signal};

const BAD: &str = r#"
[daemon]
min_valid = "sixty"
[credentials.a]
kind = "nope"
[credentials.g]
kind = "gke-cluster"
auth = "missing"
cluster = "projects/p/zones/z/azureClusters/c"
[credentials.ca]
kind = "container-app"
auth = "azure"
subscription_id = "not-a-uuid"
resource_group = "rg"
app = "x"
arm_endpoint = "http://management.example.com"
[credentials.apim]
kind = "apim-user-token"
auth = "azure"
subscription_id = "00000000-0000-0000-0000-000000000000"
resource_group = "rg"
service = "svc"
user_id = "u"
lifetime = "31d"
[credentials.corp]
kind = "azure"
client_secret = "hunter2"
typo_key = 1
[credentials.loop1]
kind = "gke-cluster"
auth = "gcp"
cluster = "projects/p/locations/l/awsClusters/c"
"#;

#[test]
fn config_check_names_file_credential_and_key_for_every_problem() {
    let sb = Sandbox::new();
    sb.write_config(BAD);
    let out = sb.run(["config", "check"]);
    assert_eq!(out.code, 2, "{out:?}");
    let file = sb.config.display().to_string();
    for want in [
        "daemon.min_valid: \"sixty\" is not a duration",
        "credentials.a.kind: unknown kind \"nope\"",
        "credentials.g.auth: names \"missing\", which is not a configured credential",
        "credentials.g.cluster: \"projects/p/zones/z/azureClusters/c\" is not a cluster path",
        "credentials.ca.subscription_id: \"not-a-uuid\" is not a UUID",
        "credentials.ca.arm_endpoint: \"http://management.example.com\" uses http://",
        "credentials.apim.lifetime: is over the 30 days",
        "credentials.corp.client_secret: inline secrets are not allowed",
        "credentials.corp.typo_key: unknown key",
        "credentials.loop1.auth: names \"gcp\", which is not a configured credential",
    ] {
        assert!(
            out.stderr.contains(&format!("credcache: {file}: {want}")),
            "missing {want:?} in:\n{}",
            out.stderr
        );
    }
    assert!(
        !out.stderr.contains("hunter2"),
        "a secret never reaches an error"
    );
    assert!(
        sb.daemon_pid().is_none(),
        "config check never starts a daemon"
    );

    sb.write_config("[credentials.x]\nkind = \"command\"\ncommand = [\"true\"]\n");
    sb.run(["config", "check"]).ok();
}

#[test]
fn an_invalid_config_at_start_is_a_config_error() {
    let sb = Sandbox::new();
    sb.write_config("[credentials.a]\nkind = \"nope\"\n");
    let out = sb.run(["get", "a"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("credentials.a.kind: unknown kind"),
        "{out:?}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
}

#[test]
fn an_invalid_edit_keeps_the_previous_config_and_is_reported() {
    let sb = Sandbox::new();
    let (script, calls) = sb.counting_script("v");
    let good = Sandbox::command_credential("vault", &script);
    sb.write_config(&good);
    assert_eq!(sb.get("vault"), "tok-1-v");

    sb.write_config(&format!("{good}bogus = 1\n"));
    let reload = sb.run(["daemon", "reload"]);
    assert_eq!(reload.code, 2, "{reload:?}");
    assert!(reload.stderr.contains("bogus: unknown key"), "{reload:?}");

    let get = sb.run(["get", "vault"]);
    assert_eq!(
        get.stdout, "tok-1-v\n",
        "the previous config stays in force: {get:?}"
    );
    assert!(
        get.stderr.contains("warning") && get.stderr.contains("bogus: unknown key"),
        "{get:?}"
    );
    let status = sb.run(["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(status.ok()).unwrap();
    assert!(v["config_error"].as_str().unwrap().contains("bogus"), "{v}");
    assert!(sb.log().contains("previous one stays in force"));
    assert_eq!(count(&calls), 1);
}

#[test]
fn a_renamed_variable_is_in_the_next_answer_with_the_token_kept() {
    // The daemon keeps each token's answer ready-encoded (issue 15). Renaming
    // the variable keeps the token (the source did not change), so the
    // answer kept for it must not be written again as it was.
    let sb = Sandbox::new();
    let (script, calls) = sb.counting_script("v");
    let cred = Sandbox::command_credential("vault", &script);
    sb.write_config(&format!("{cred}env_var = \"OLD_TOKEN\"\n"));
    for _ in 0..3 {
        let out = sb.run(["get", "vault", "--format", "env"]);
        assert_eq!(out.ok(), "export OLD_TOKEN='tok-1-v'\n");
    }

    sb.write_config(&format!("{cred}env_var = \"NEW_TOKEN\"\n"));
    sb.run(["daemon", "reload"]).ok();
    for _ in 0..3 {
        let out = sb.run(["get", "vault", "--format", "env"]);
        assert_eq!(out.ok(), "export NEW_TOKEN='tok-1-v'\n");
    }
    assert_eq!(count(&calls), 1, "the token was kept");

    // An invalid edit: the answer carries the warning, then stops carrying it
    // once the file is fixed.
    sb.write_config(&format!("{cred}env_var = \"NEW_TOKEN\"\nbogus = 1\n"));
    assert_eq!(sb.run(["daemon", "reload"]).code, 2);
    let warned = sb.run(["get", "vault", "--format", "env"]);
    assert_eq!(warned.stdout, "export NEW_TOKEN='tok-1-v'\n");
    assert!(warned.stderr.contains("bogus: unknown key"), "{warned:?}");
    sb.write_config(&format!("{cred}env_var = \"NEW_TOKEN\"\n"));
    sb.run(["daemon", "reload"]).ok();
    let fixed = sb.run(["get", "vault", "--format", "env"]);
    assert_eq!(fixed.stdout, "export NEW_TOKEN='tok-1-v'\n");
    assert_eq!(fixed.stderr, "", "{fixed:?}");
    assert_eq!(count(&calls), 1);
}

#[test]
fn sighup_and_a_changed_file_reload_the_config() {
    let sb = Sandbox::new();
    let (a, _) = sb.counting_script("a");
    let (b, _) = sb.counting_script("b");
    sb.write_config(&Sandbox::command_credential("one", &a));
    assert_eq!(sb.get("one"), "tok-1-a");

    sb.write_config(&format!(
        "{}{}",
        Sandbox::command_credential("one", &a),
        Sandbox::command_credential("two", &b)
    ));
    signal(sb.daemon_pid().unwrap(), rustix::process::Signal::HUP);
    // SIGHUP is asynchronous; without it, the file's new mtime is noticed
    // within a second anyway. Either way `two` appears: poll, with a deadline.
    let out = eventually(Duration::from_secs(10), || {
        let out = sb.run(["get", "two"]);
        if out.code == 0 {
            return Ok(out);
        }
        assert_eq!(out.code, 4, "not yet reloaded is unknown: {out:?}");
        Err(out)
    });
    assert_eq!(out.stdout, "tok-1-b\n");

    // Editing the file alone (no signal, no reload command) is noticed too.
    let (c, _) = sb.counting_script("c");
    sb.write_config(&Sandbox::command_credential("three", &c));
    let out = eventually(Duration::from_secs(10), || {
        let out = sb.run(["get", "three"]);
        if out.code == 0 { Ok(out) } else { Err(out) }
    });
    assert_eq!(out.stdout, "tok-1-c\n");
    assert_eq!(
        sb.run(["get", "two"]).code,
        4,
        "removed credentials are gone"
    );
}
