//! The real cloud SDKs (Python azure-identity and google-auth, Node
//! @azure/identity and google-auth-library, pinned in `tests/sdk/` and set
//! up by `.ci/sdk-setup`) run under `credcache exec --sdk` against the
//! emulator. Without them installed these skip with a message, except
//! under CI, where they fail.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::Stdio;

use credcache_tests::emulator::{Emulator, Endpoint};
use serde_json::Value;

use crate::harness::Sandbox;
use crate::sdk::{AUDIENCE, STORAGE, VAULT, missing, sdk_dir, sdk_env, sdk_sandbox, tool};

fn python() -> Option<PathBuf> {
    let p = sdk_dir().join(".venv/bin/python");
    if p.exists() {
        Some(p)
    } else {
        missing("tests/sdk/.venv")
    }
}

fn node() -> Option<PathBuf> {
    if !sdk_dir().join("node_modules/@azure/identity").exists() {
        return missing("tests/sdk/node_modules");
    }
    tool("node")
}

/// Runs `program args` under `credcache exec --sdk names`; its JSON.
fn run_sdk(sb: &Sandbox, names: &str, program: &PathBuf, args: &[&str]) -> Value {
    let out = sb
        .command("credcache")
        .args(["exec", "--sdk", names, "--"])
        .arg(program)
        .args(args)
        .current_dir(sdk_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{program:?} {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Asserts the Azure tokens of two SDK processes: the emulator's, for the
/// scope asked, and one Entra call per scope in all.
#[track_caller]
fn assert_azure(emu: &Emulator, first: &Value, second: &Value) {
    for resource in [VAULT, STORAGE] {
        let scope = format!("{resource}/.default");
        let mi = first[format!("mi {resource}")].as_str().unwrap();
        assert_eq!(
            emu.token_info(mi).unwrap().scope.as_deref(),
            Some(&*scope),
            "{first}"
        );
        for out in [first, second] {
            assert_eq!(out[format!("mi {resource}")], mi, "{out}");
            assert_eq!(out[format!("dac {resource}")], mi, "{out}");
        }
        let calls = emu
            .calls_to(Endpoint::EntraToken)
            .into_iter()
            .filter(|c| c.scope.as_deref() == Some(&*scope))
            .count();
        assert_eq!(calls, 1, "one upstream call for {scope}");
    }
}

#[test]
fn python_azure_identity_two_resources_one_call_each_across_two_processes() {
    let Some(python) = python() else { return };
    let emu = Emulator::start();
    let sb = sdk_sandbox(&emu);
    let script = "azure_tokens.py";
    let first = run_sdk(&sb, "corp", &python, &[script, VAULT, STORAGE]);
    let second = run_sdk(&sb, "corp", &python, &[script, VAULT, STORAGE]);
    assert_azure(&emu, &first, &second);
    // And `exec`'s own: corp's token in CREDCACHE_CORP_TOKEN.
    assert_eq!(emu.calls(Endpoint::EntraToken), 3);
}

/// MSAL Python's `ManagedIdentityClient` is what the Azure CLI's
/// `az login --identity` asks (azure-cli is not installed here: it is
/// 700 MB): the same App Service protocol, its own client and parser.
#[test]
fn msal_managed_identity_client_as_the_azure_cli_uses_it() {
    let Some(python) = python() else { return };
    let emu = Emulator::start();
    let sb = sdk_sandbox(&emu);
    let first = run_sdk(&sb, "corp", &python, &["msal_tokens.py", VAULT, STORAGE]);
    let second = run_sdk(&sb, "corp", &python, &["msal_tokens.py", VAULT, STORAGE]);
    for resource in [VAULT, STORAGE] {
        let token = first[resource].as_str().unwrap();
        assert_eq!(
            emu.token_info(token).unwrap().scope,
            Some(format!("{resource}/.default")),
            "{first}"
        );
        assert_eq!(second[resource], token, "the daemon's cached token");
    }
    // One call per resource, plus `exec`'s own for corp's default scope.
    assert_eq!(emu.calls(Endpoint::EntraToken), 3);
}

#[test]
fn python_google_auth_default_refresh_project_and_id_token() {
    let Some(python) = python() else { return };
    let emu = Emulator::start();
    let sb = sdk_sandbox(&emu);
    let out = run_sdk(&sb, "gcp", &python, &["google_tokens.py", AUDIENCE]);
    let token = out["token"].as_str().unwrap();
    assert!(emu.token_info(token).is_some(), "{out}");
    assert_eq!(
        out["again"], token,
        "the second refresh is the cached token"
    );
    assert_eq!(out["project"], "emu-project");
    assert!(
        out["email"]
            .as_str()
            .unwrap()
            .ends_with("iam.gserviceaccount.com")
    );
    let id = out["id_token"].as_str().unwrap();
    assert_eq!(id.split('.').count(), 3, "{out}");
    assert_eq!(
        emu.calls(Endpoint::GoogleToken),
        2,
        "the access token and the ID token"
    );
    // A second process is served from the daemon's cache.
    let again = run_sdk(&sb, "gcp", &python, &["google_tokens.py", AUDIENCE]);
    assert_eq!(again["token"], token);
    assert_eq!(again["id_token"], id);
    assert_eq!(emu.calls(Endpoint::GoogleToken), 2);
}

#[test]
fn node_sdks_get_the_same_tokens_from_the_daemon() {
    let Some(node) = node() else { return };
    let emu = Emulator::start();
    let sb = sdk_sandbox(&emu);
    let args = ["node_tokens.mjs", AUDIENCE, VAULT, STORAGE];
    let first = run_sdk(&sb, "corp,gcp", &node, &args);
    let second = run_sdk(&sb, "corp,gcp", &node, &args);
    assert_azure(&emu, &first, &second);
    let token = first["token"].as_str().unwrap();
    assert!(emu.token_info(token).is_some(), "{first}");
    assert_eq!(second["token"], token);
    assert_eq!(first["project"], "emu-project");
    assert_eq!(first["id_token"].as_str().unwrap().split('.').count(), 3);
    assert_eq!(second["id_token"], first["id_token"]);
    assert_eq!(emu.calls(Endpoint::GoogleToken), 2);
}

#[test]
fn the_port_survives_a_restart_and_a_running_sdk_process_keeps_working() {
    let Some(python) = python() else { return };
    let emu = Emulator::start();
    let sb = sdk_sandbox(&emu);
    let before = sdk_env(&sb, "corp,gcp");
    let mut child = sb
        .command("credcache")
        .args(["exec", "--sdk", "corp", "--"])
        .arg(&python)
        .args(["restart.py", VAULT, STORAGE])
        .current_dir(sdk_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert_eq!(
        emu.token_info(&first).unwrap().scope.as_deref(),
        Some("https://vault.azure.net/.default")
    );
    assert_eq!(sb.run(["daemon", "restart"]).code, 0);
    // The restarted daemon listens again before anyone asks: the running
    // process (whose variables came from the first daemon) goes on.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let second = lines.next().unwrap().unwrap();
    assert_eq!(
        emu.token_info(&second).unwrap().scope.as_deref(),
        Some("https://storage.azure.com/.default")
    );
    assert!(child.wait().unwrap().success());
    let after = sdk_env(&sb, "corp,gcp");
    assert_eq!(after, before, "same ports, same secret");
}
