//! `credcache git-credential`: git's credential-helper exchange on the real
//! binary (the exact lines git writes and reads), and real `git` against a
//! smart-HTTP server with Basic auth on 127.0.0.1 that takes the token as
//! the password. The `[[git]]` hosts other than 127.0.0.1 are only ever
//! matched, never contacted.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use credcache_tests::emulator::{Emulator, Endpoint};
use credcache_tests::git_server::GitServer;

use crate::harness::{Out, Sandbox, bin_dir};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "22222222-2222-2222-2222-222222222222";
/// Azure DevOps' resource, as its Entra scope.
const ADO_SCOPE: &str = "499b84ac-1321-427f-aa17-267ca6975798/.default";

/// `ado`: an Entra client-secret credential for Azure DevOps; `gcp`: a
/// Google one; and `[[git]]` entries: an exact host, a path prefix on the
/// same host, a glob, and a host that only has a path-prefixed entry.
fn sandbox(emu: &Emulator, extra: &str) -> Sandbox {
    emu.register_client(TENANT, CLIENT, "ado-secret");
    let mut sb = Sandbox::new();
    sb.env("ADO_SECRET", "ado-secret");
    let key = sb.dir.path().join("sa.json");
    emu.write_service_account_key(&key);
    sb.write_config(&format!(
        r#"[daemon]
http_timeout = "5s"

[credentials.ado]
kind = "azure"
method = "client-secret"
tenant_id = "{TENANT}"
client_id = "{CLIENT}"
client_secret_env = "ADO_SECRET"
authority_host = "{url}"
scope = "{ADO_SCOPE}"

[credentials.gcp]
kind = "google"
key_file = {key:?}

[[git]]
host = "dev.azure.com"
credential = "ado"

[[git]]
host = "dev.azure.com"
path_prefix = "otherorg"
credential = "gcp"
username = "other-user"

[[git]]
host = "*.visualstudio.com"
credential = "ado"
username = "vs-user"

[[git]]
host = "team.example.com"
path_prefix = "/team/"
credential = "ado"
{extra}"#,
        url = emu.url(),
        key = key.display().to_string(),
    ));
    sb
}

/// Runs `credcache git-credential OPERATION` with `input` on stdin, as
/// git does (stdin closed after the request).
fn helper(sb: &Sandbox, operation: &str, input: &str) -> Out {
    let mut child = sb
        .command("credcache")
        .args(["git-credential", operation])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The helper may answer before reading everything; that is its right.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap().into()
}

/// What git 2.46+ writes for `get` before the URL's attributes.
const CAPS: &str = "capability[]=authtype\ncapability[]=state\n";

fn attributes(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').expect("key=value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn get_answers_username_token_and_expiry_for_a_configured_host() {
    let emu = Emulator::start();
    let sb = sandbox(&emu, "");
    let out = helper(
        &sb,
        "get",
        &format!("{CAPS}protocol=https\nhost=dev.azure.com\nwwwauth[]=Basic realm=\"x\"\n\n"),
    );
    let issued = emu.last_token(Endpoint::EntraToken).unwrap();
    let answer = attributes(out.ok());
    assert_eq!(
        answer.keys().collect::<Vec<_>>(),
        ["password", "password_expiry_utc", "username"]
    );
    assert_eq!(
        out.stdout,
        format!(
            "username=credcache\npassword={}\npassword_expiry_utc={}\n",
            issued.token, answer["password_expiry_utc"]
        ),
        "git's order, one attribute a line"
    );
    // Entra says `expires_in`; the daemon dates it by its own clock.
    let expiry: i64 = answer["password_expiry_utc"].parse().unwrap();
    assert!(
        (expiry - issued.expires_at.timestamp()).abs() <= 2,
        "{expiry} vs {}",
        issued.expires_at
    );
    assert_eq!(out.stderr, "");
    assert_eq!(issued.scope.as_deref(), Some(ADO_SCOPE));
    // A second `get` is answered from the cache.
    let again = helper(&sb, "get", "protocol=https\nhost=dev.azure.com\n");
    assert_eq!(again.ok(), out.stdout);
    assert_eq!(emu.calls(Endpoint::EntraToken), 1);
}

#[test]
fn other_urls_get_no_answer_and_no_daemon() {
    let emu = Emulator::start();
    let sb = sandbox(&emu, "");
    for input in [
        "protocol=https\nhost=github.com\n\n",
        "protocol=http\nhost=dev.azure.com\n\n",
        "protocol=https\nhost=dev.azure.com:8443\n\n",
        "protocol=https\nhost=a.b.visualstudio.com\n\n",
        "protocol=https\nhost=visualstudio.com\n\n",
        "protocol=https\nhost=myorg.visualstudio.com.evil.io\n\n",
        "url=ssh://dev.azure.com/myorg/repo\n\n",
        "host=dev.azure.com\n\n",
        "protocol=https\n\n",
        "",
    ] {
        let out = helper(&sb, "get", input);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, ""),
            "{input:?}: {out:?}"
        );
        assert_eq!(out.stderr, "", "{input:?}");
    }
    assert_eq!(sb.daemon_pid_alive(), None, "nothing matched: no daemon");
    assert_eq!(emu.calls(Endpoint::EntraToken), 0);
}

#[test]
fn globs_and_path_prefixes_choose_the_entry() {
    let emu = Emulator::start();
    let sb = sandbox(&emu, "");
    let get = |input: &str| attributes(helper(&sb, "get", input).ok());

    let a = get("protocol=https\nhost=myorg.visualstudio.com\n\n");
    assert_eq!(a["username"], "vs-user");
    assert_eq!(
        a["password"],
        emu.last_token(Endpoint::EntraToken).unwrap().token
    );

    // With credential.useHttpPath git sends the path; the prefixed entry
    // is more specific than the host-only one, wherever it is written.
    let a = get("protocol=https\nhost=dev.azure.com\npath=otherorg/proj/_git/repo\n\n");
    assert_eq!(a["username"], "other-user");
    assert_eq!(
        a["password"],
        emu.last_token(Endpoint::GoogleToken).unwrap().token
    );
    let a = get("url=https://dev.azure.com/otherorg/proj/_git/repo\n\n");
    assert_eq!(a["username"], "other-user");
    // Whole segments: otherorg2 is not under otherorg.
    let a = get("protocol=https\nhost=dev.azure.com\npath=otherorg2/repo\n\n");
    assert_eq!(a["username"], "credcache");
    let a = get("protocol=https\nhost=team.example.com\npath=team/repo.git\n\n");
    assert_eq!(a["username"], "credcache");
}

#[test]
fn a_path_prefix_without_the_path_says_to_set_use_http_path() {
    let emu = Emulator::start();
    let sb = sandbox(&emu, "");
    let out = helper(&sb, "get", "protocol=https\nhost=team.example.com\n\n");
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr.starts_with("credcache: warning: ")
            && out.stderr.contains(
                "git config --global credential.https://team.example.com.useHttpPath true"
            ),
        "{out:?}"
    );
    assert_eq!(sb.daemon_pid_alive(), None);
}

#[test]
fn erase_drops_the_token_so_the_next_get_fetches_a_new_one() {
    let emu = Emulator::start();
    let sb = sandbox(&emu, "");
    let request = "protocol=https\nhost=dev.azure.com\n";
    let first = attributes(helper(&sb, "get", request).ok())["password"].clone();

    // git's erase carries the rejected credential.
    let out = helper(
        &sb,
        "erase",
        &format!("{request}username=credcache\npassword={first}\npassword_expiry_utc=1\n\n"),
    );
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, "", "")
    );
    assert_eq!(emu.calls(Endpoint::EntraToken), 1, "erase fetches nothing");

    let second = attributes(helper(&sb, "get", request).ok())["password"].clone();
    assert_ne!(second, first);
    assert_eq!(emu.calls(Endpoint::EntraToken), 2);

    // Erasing a URL that is not ours touches nothing.
    let out = helper(
        &sb,
        "erase",
        "protocol=https\nhost=github.com\npassword=x\n\n",
    );
    assert_eq!((out.code, out.stdout.as_str()), (0, ""));
    assert_eq!(
        attributes(helper(&sb, "get", request).ok())["password"],
        second
    );
    assert_eq!(emu.calls(Endpoint::EntraToken), 2);
}

#[test]
fn store_and_unknown_operations_are_accepted_and_ignored() {
    let emu = Emulator::start();
    let sb = sandbox(&emu, "");
    let request = "protocol=https\nhost=dev.azure.com\n";
    let token = attributes(helper(&sb, "get", request).ok())["password"].clone();
    for operation in ["store", "some-future-operation"] {
        let out = helper(
            &sb,
            operation,
            &format!("{request}username=credcache\npassword={token}\n\n"),
        );
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (0, "", ""),
            "{operation}"
        );
    }
    assert_eq!(
        attributes(helper(&sb, "get", request).ok())["password"],
        token
    );
    assert_eq!(emu.calls(Endpoint::EntraToken), 1);
}

#[test]
fn crlf_input_is_read_like_lf() {
    let emu = Emulator::start();
    let sb = sandbox(&emu, "");
    let out = helper(&sb, "get", "protocol=https\r\nhost=dev.azure.com\r\n\r\n");
    assert_eq!(attributes(out.ok())["username"], "credcache");
}

#[test]
fn a_malformed_line_is_one_error_line_and_never_a_hang() {
    let emu = Emulator::start();
    let sb = sandbox(&emu, "");
    let mut child = sb
        .command("credcache")
        .args(["git-credential", "get"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Keep stdin open: the helper must stop at the bad line, not wait for EOF.
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"protocol=https\nhost=dev.azure.com\nsecret-looking-junk\n")
        .unwrap();
    stdin.flush().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out: Out = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the helper hung on a malformed line")
        .unwrap()
        .into();
    drop(stdin);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr,
        "credcache: cannot read git's request: line 3 is not key=value (git's credential-helper protocol)\n"
    );
    assert_eq!(emu.calls(Endpoint::EntraToken), 0);
}

#[test]
fn an_upstream_failure_is_one_line_on_stderr_and_nothing_for_git() {
    let emu = Emulator::start();
    let mut sb = sandbox(&emu, "");
    sb.env("ADO_SECRET", "wrong-secret");
    let out = helper(&sb, "get", "protocol=https\nhost=dev.azure.com\n\n");
    out.upstream_failure("credcache: cannot get a token for ado: ", "AADSTS7000215");
}

// Real git against a smart-HTTP server on 127.0.0.1.

/// Creates a bare repository `<root>/<name>` with one commit on `main`.
fn bare_repo(sb: &Sandbox, root: &Path, name: &str) {
    let work = sb
        .dir
        .path()
        .join(format!("work-{}", name.replace('/', "-")));
    let bare = root.join(name);
    let steps: [Vec<&str>; 3] = [
        vec!["init", "-q", "-b", "main", work.to_str().unwrap()],
        vec![
            "-C",
            work.to_str().unwrap(),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "first",
        ],
        vec![
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    ];
    for args in steps {
        let out: Out = git(sb).args(&args).output().unwrap().into();
        out.ok();
    }
}

/// `git` with only the sandbox's environment (so credcache finds its
/// daemon) and no user or system config; never prompts.
fn git(sb: &Sandbox) -> Command {
    let mut cmd = Command::new("git");
    cmd.env_clear();
    for (key, value) in sb.command("credcache").get_envs() {
        if let Some(value) = value {
            cmd.env(key, value);
        }
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    cmd
}

/// `git` with credcache as its only credential helper, as the README
/// configures it, plus `useHttpPath` for `path_prefix`.
fn git_with_helper(sb: &Sandbox) -> Command {
    let mut cmd = git(sb);
    let helper = format!(
        "!'{}' git-credential",
        bin_dir().join("credcache").display()
    );
    cmd.args(["-c", "credential.helper="])
        .args(["-c", &format!("credential.helper={helper}")])
        .args(["-c", "credential.useHttpPath=true"]);
    cmd
}

#[test]
fn real_git_authenticates_with_the_token_and_refetches_after_a_rejection() {
    let emu = Arc::new(Emulator::start());
    let root = tempfile::tempdir().unwrap();
    let revoked = Arc::new(Mutex::new(HashSet::<String>::new()));
    let server = {
        let (emu, revoked) = (emu.clone(), revoked.clone());
        GitServer::start(root.path(), move |user, password| {
            user == "credcache"
                && emu
                    .token_info(password)
                    .is_some_and(|t| t.scope.as_deref() == Some(ADO_SCOPE))
                && !revoked.lock().unwrap().contains(password)
        })
    };
    let sb = sandbox(
        &emu,
        &format!(
            "\n[[git]]\nhost = \"{}\"\npath_prefix = \"myorg\"\ncredential = \"ado\"\n",
            server.host()
        ),
    );
    bare_repo(&sb, root.path(), "myorg/repo.git");
    bare_repo(&sb, root.path(), "elsewhere/repo.git");
    let url = format!("{}/myorg/repo.git", server.url());

    // git asks, is turned away, asks its helper, and gets in with the token.
    let out: Out = git_with_helper(&sb)
        .args(["ls-remote", &url])
        .output()
        .unwrap()
        .into();
    assert!(out.ok().contains("\trefs/heads/main\n"), "{out:?}");
    let first = emu.last_token(Endpoint::EntraToken).unwrap().token;
    let attempts = server.attempts();
    assert!(!attempts[0].let_in && attempts[0].password.is_none());
    assert!(
        attempts
            .iter()
            .any(|a| a.let_in && a.password.as_deref() == Some(first.as_str()))
    );
    assert!(
        !out.stderr.contains(&first),
        "the token never reaches stderr"
    );

    // The server stops taking that token: git tells its helpers to erase
    // it and fails; the next run gets a fresh token from upstream.
    revoked.lock().unwrap().insert(first.clone());
    let out: Out = git_with_helper(&sb)
        .args(["ls-remote", &url])
        .output()
        .unwrap()
        .into();
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("Authentication failed"), "{out:?}");
    assert_eq!(emu.calls(Endpoint::EntraToken), 1);

    let clone = sb.dir.path().join("clone");
    let out: Out = git_with_helper(&sb)
        .args(["clone", "-q", &url, clone.to_str().unwrap()])
        .output()
        .unwrap()
        .into();
    out.ok();
    assert_eq!(emu.calls(Endpoint::EntraToken), 2, "erase made a refetch");
    let second = emu.last_token(Endpoint::EntraToken).unwrap().token;
    assert_ne!(second, first);
    assert!(
        server
            .attempts()
            .iter()
            .any(|a| a.let_in && a.password.as_deref() == Some(second.as_str()))
    );
    let log: Out = git(&sb)
        .args(["-C", clone.to_str().unwrap(), "log", "--format=%s"])
        .output()
        .unwrap()
        .into();
    assert_eq!(log.ok(), "first\n");

    // A repository outside the path prefix gets no password from credcache.
    let out: Out = git_with_helper(&sb)
        .args(["ls-remote", &format!("{}/elsewhere/repo.git", server.url())])
        .output()
        .unwrap()
        .into();
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        server
            .attempts()
            .iter()
            .filter(|a| a.uri.starts_with("/elsewhere/"))
            .all(|a| a.password.is_none()),
        "{:?}",
        server.attempts()
    );
    assert_eq!(emu.calls(Endpoint::EntraToken), 2);
}
