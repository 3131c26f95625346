//! `docker-credential-credcache` / `credcache docker-credential`: Docker's
//! credential-helper exchange on the real binary, exactly as Docker runs a
//! `credHelpers` entry (the server URL on stdin, without a newline; only
//! stdout is read). The registries are only matched, never contacted.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use credcache_tests::emulator::{Emulator, Endpoint, Fault};

use crate::harness::{Out, Sandbox, bin_dir};

const NOT_FOUND: &str = "credentials not found in native keychain\n";

/// `gcp`, a Google credential from the emulator, behind an exact registry,
/// a glob, and a loopback registry with a port.
fn sandbox(emu: &Emulator) -> Sandbox {
    let sb = Sandbox::new();
    let key = sb.dir.path().join("sa.json");
    emu.write_service_account_key(&key);
    sb.write_config(&format!(
        r#"[daemon]
http_timeout = "5s"

[credentials.gcp]
kind = "google"
key_file = {key:?}

[[docker]]
registry = "*.pkg.dev"
credential = "gcp"
username = "glob-user"

[[docker]]
registry = "us-docker.pkg.dev"
credential = "gcp"

[[docker]]
registry = "127.0.0.1:5000"
credential = "gcp"
username = "local"
"#,
        key = key.display().to_string()
    ));
    sb
}

/// Runs `program ARGS` with the sandbox's environment and `input` on stdin.
fn run_as(sb: &Sandbox, program: &PathBuf, args: &[&str], input: &str) -> Out {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    for (key, value) in sb.command("credcache").get_envs() {
        if let Some(value) = value {
            cmd.env(key, value);
        }
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap().into()
}

/// `credcache docker-credential ACTION` with `input` on stdin.
fn helper(sb: &Sandbox, action: &str, input: &str) -> Out {
    run_as(
        sb,
        &bin_dir().join("credcache"),
        &["docker-credential", action],
        input,
    )
}

fn credentials(server_url: &str, username: &str, secret: &str) -> String {
    format!(
        "{{\"ServerURL\":\"{server_url}\",\"Username\":\"{username}\",\"Secret\":\"{secret}\"}}\n"
    )
}

#[test]
fn get_answers_the_token_for_a_configured_registry() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    let out = helper(&sb, "get", "us-docker.pkg.dev");
    let token = emu.last_token(Endpoint::GoogleToken).unwrap().token;
    assert_eq!(
        out.ok(),
        credentials("us-docker.pkg.dev", "oauth2accesstoken", &token)
    );
    assert_eq!(out.stderr, "");

    // With scheme and path, and a newline: the same token, the URL as sent.
    let out = helper(&sb, "get", "https://us-docker.pkg.dev/v2/\n");
    assert_eq!(
        out.ok(),
        credentials("https://us-docker.pkg.dev/v2/", "oauth2accesstoken", &token)
    );
    assert_eq!(emu.calls(Endpoint::GoogleToken), 1, "cached");
}

#[test]
fn globs_and_ports_choose_the_entry() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    let json = |input: &str| -> serde_json::Value {
        serde_json::from_str(helper(&sb, "get", input).ok()).unwrap()
    };
    assert_eq!(json("europe-docker.pkg.dev")["Username"], "glob-user");
    assert_eq!(
        json("us-docker.pkg.dev")["Username"],
        "oauth2accesstoken",
        "an exact registry wins over a glob written before it"
    );
    assert_eq!(json("http://127.0.0.1:5000")["Username"], "local");
    assert_eq!(json("127.0.0.1:5000/v2/")["Username"], "local");
}

#[test]
fn other_registries_are_not_found_in_dockers_words() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    for input in [
        "index.docker.io",
        "https://index.docker.io/v1/",
        "a.b.pkg.dev",
        "pkg.dev",
        "http://us-docker.pkg.dev",
        "us-docker.pkg.dev:5000",
        "127.0.0.1",
        "not a url",
    ] {
        let out = helper(&sb, "get", input);
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (1, NOT_FOUND, ""),
            "{input:?}"
        );
    }
    let out = helper(&sb, "get", "  \n");
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (1, "no credentials server URL\n")
    );
    assert_eq!(sb.daemon_pid_alive(), None, "nothing matched: no daemon");
    assert_eq!(emu.calls(Endpoint::GoogleToken), 0);
}

#[test]
fn list_names_every_registry_with_its_username() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    let out = helper(&sb, "list", "");
    assert_eq!(
        out.ok(),
        "{\"*.pkg.dev\":\"glob-user\",\"127.0.0.1:5000\":\"local\",\"us-docker.pkg.dev\":\"oauth2accesstoken\"}\n"
    );
    assert_eq!(sb.daemon_pid_alive(), None);
}

#[test]
fn erase_drops_the_token_so_the_next_get_fetches_a_new_one() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    let secret = |out: Out| -> String {
        let v: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
        v["Secret"].as_str().unwrap().to_owned()
    };
    let first = secret(helper(&sb, "get", "us-docker.pkg.dev"));
    let out = helper(&sb, "erase", "https://us-docker.pkg.dev");
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, "", "")
    );
    assert_eq!(emu.calls(Endpoint::GoogleToken), 1);
    let second = secret(helper(&sb, "get", "us-docker.pkg.dev"));
    assert_ne!(second, first);
    assert_eq!(emu.calls(Endpoint::GoogleToken), 2);

    let out = helper(&sb, "erase", "index.docker.io");
    assert_eq!((out.code, out.stdout.as_str()), (1, NOT_FOUND));
}

#[test]
fn store_is_refused_on_stdout_without_echoing_the_secret() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    let out = helper(
        &sb,
        "store",
        r#"{"ServerURL":"us-docker.pkg.dev","Username":"oauth2accesstoken","Secret":"hunter2"}"#,
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stderr, "");
    assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
    assert!(
        out.stdout
            .starts_with("credcache: cannot store credentials for us-docker.pkg.dev: ")
            && out.stdout.contains("[[docker]]"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("hunter2"));
    assert_eq!(sb.daemon_pid_alive(), None);
}

#[test]
fn an_upstream_failure_reaches_docker_on_stdout() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    emu.push_fault(
        Endpoint::GoogleToken,
        Fault::json(
            400,
            r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
        ),
    );
    let out = helper(&sb, "get", "us-docker.pkg.dev");
    assert_eq!(out.code, 5, "{out:?}");
    assert_eq!(out.stderr, "");
    assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
    assert!(
        out.stdout
            .starts_with("credcache: cannot get a token for gcp: ")
            && out.stdout.contains("Invalid JWT Signature"),
        "{out:?}"
    );
}

#[cfg(unix)]
#[test]
fn the_binary_named_docker_credential_credcache_speaks_the_protocol() {
    let emu = Emulator::start();
    let sb = sandbox(&emu);
    let link = sb.dir.path().join("docker-credential-credcache");
    std::os::unix::fs::symlink(bin_dir().join("credcache"), &link).unwrap();

    let out = run_as(&sb, &link, &["get"], "us-docker.pkg.dev");
    let token = emu.last_token(Endpoint::GoogleToken).unwrap().token;
    assert_eq!(
        out.ok(),
        credentials("us-docker.pkg.dev", "oauth2accesstoken", &token)
    );
    assert!(
        run_as(&sb, &link, &["list"], "")
            .ok()
            .contains("\"us-docker.pkg.dev\":\"oauth2accesstoken\"")
    );
    let out = run_as(&sb, &link, &["get"], "index.docker.io");
    assert_eq!((out.code, out.stdout.as_str()), (1, NOT_FOUND));
    assert_eq!(
        run_as(&sb, &link, &["version"], "").ok(),
        format!(
            "docker-credential-credcache (credcache) {}\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}
