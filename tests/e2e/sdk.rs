//! Cloud SDKs through the daemon (docs/cloud-sdks.md): `get --scope`, and
//! the SDK endpoints as raw HTTP sees them (answers, content types, every
//! refusal, another uid through `setpriv`). The real SDKs are
//! `sdk_clients.rs`; the fixtures both use are here.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;

use credcache_tests::emulator::{Emulator, Endpoint, Fault};
use serde_json::Value;

use crate::azure::{CLIENT, TENANT};
use crate::harness::Sandbox;

pub const VAULT: &str = "https://vault.azure.net";
pub const STORAGE: &str = "https://storage.azure.com";
const BIGQUERY: &str = "https://www.googleapis.com/auth/bigquery";
pub const AUDIENCE: &str = "https://api-abc123-uc.a.run.app";

/// A sandbox with `corp` (azure, client secret) and `gcp` (google, a
/// service-account key of project `emu-project`).
pub fn sdk_sandbox(emu: &Emulator) -> Sandbox {
    emu.register_client(TENANT, CLIENT, "the-right-secret");
    let mut sb = Sandbox::new();
    sb.env("CORP_SECRET", "the-right-secret");
    let key = sb.dir.path().join("sa.json");
    emu.write_service_account_key(&key);
    sb.write_config(&format!(
        "[credentials.corp]\nkind = \"azure\"\nmethod = \"client-secret\"\ntenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\n\
         client_secret_env = \"CORP_SECRET\"\nauthority_host = \"{}\"\n\n\
         [credentials.gcp]\nkind = \"google\"\nkey_file = {:?}\n",
        emu.url(),
        key.display().to_string()
    ));
    sb
}

/// `credcache ARGS`' token, which must succeed.
pub fn get(sb: &Sandbox, args: &[&str]) -> String {
    sb.run(args).ok().trim_end().to_owned()
}

/// The variables `sdk-env NAMES --shell json` prints.
pub fn sdk_env(sb: &Sandbox, names: &str) -> Value {
    let out = sb.run(["sdk-env", names, "--shell", "json"]);
    serde_json::from_str(out.ok()).unwrap()
}

pub fn port_of(vars: &Value, var: &str) -> u16 {
    let v = vars[var].as_str().unwrap();
    let host = v.trim_start_matches("http://");
    let port = host.split(['/', ':']).nth(1).unwrap();
    port.parse().unwrap()
}

/// An HTTP answer, as read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on 127.0.0.1:`port` with `headers`, over a plain socket.
fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

const FLAVOR: (&str, &str) = ("Metadata-Flavor", "Google");
pub const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

// ---- get --scope ----

#[test]
fn each_scope_is_one_upstream_call_listed_under_its_credential() {
    let emu = Emulator::start();
    let sb = sdk_sandbox(&emu);
    let vault = get(
        &sb,
        &["get", "corp", "--scope", &format!("{VAULT}/.default")],
    );
    assert_eq!(
        emu.token_info(&vault).unwrap().scope.as_deref(),
        Some("https://vault.azure.net/.default")
    );
    let again = get(
        &sb,
        &["get", "corp", "--scope", &format!("{VAULT}/.default")],
    );
    assert_eq!(again, vault);
    assert_eq!(emu.calls(Endpoint::EntraToken), 1);
    let own = sb.get("corp");
    assert_ne!(own, vault);
    assert_eq!(emu.calls(Endpoint::EntraToken), 2);
    // The configured scope asked for by name is the credential's own token.
    let same = get(
        &sb,
        &[
            "get",
            "corp",
            "--scope",
            "https://management.azure.com/.default",
        ],
    );
    assert_eq!(same, own);
    // Google scopes: order does not matter, each set is one call.
    let bq = get(
        &sb,
        &["get", "gcp", "--scope", BIGQUERY, "--scope", "openid"],
    );
    let bq2 = get(&sb, &["get", "gcp", "--scope=openid", "--scope", BIGQUERY]);
    assert_eq!(bq, bq2);
    assert_eq!(emu.calls(Endpoint::GoogleToken), 1);
    assert_eq!(
        emu.token_info(&bq).unwrap().scope.as_deref(),
        Some(&*format!("{BIGQUERY} openid"))
    );

    let list: Value = serde_json::from_str(sb.run(["list", "--json"]).ok()).unwrap();
    let corp = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "corp")
        .unwrap();
    let scoped = corp["scoped"].as_array().unwrap();
    assert_eq!(scoped.len(), 1, "{corp}");
    assert_eq!(scoped[0]["scopes"][0], "https://vault.azure.net/.default");
    assert_eq!(scoped[0]["state"], "fresh");
    let table = sb.run(["status"]);
    assert!(
        table
            .ok()
            .contains("corp [https://vault.azure.net/.default]"),
        "{table:?}"
    );
    assert!(!table.stdout.contains(&vault), "no token in status");

    // A restart serves them from disk.
    assert_eq!(sb.run(["daemon", "restart"]).code, 0);
    let after = get(
        &sb,
        &["get", "corp", "--scope", &format!("{VAULT}/.default")],
    );
    assert_eq!(after, vault);
    assert_eq!(emu.calls(Endpoint::EntraToken), 2);

    // `forget corp` drops them all.
    sb.run(["forget", "corp"]).ok();
    let list: Value = serde_json::from_str(sb.run(["list", "--json"]).ok()).unwrap();
    let corp = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "corp")
        .unwrap();
    assert_eq!(corp["scoped"].as_array().unwrap().len(), 0, "{corp}");
    get(
        &sb,
        &["get", "corp", "--scope", &format!("{VAULT}/.default")],
    );
    assert_eq!(emu.calls(Endpoint::EntraToken), 3);
    assert_eq!(sb.run(["daemon", "restart"]).code, 0);
    get(
        &sb,
        &["get", "corp", "--scope", &format!("{VAULT}/.default")],
    );
    assert_eq!(
        emu.calls(Endpoint::EntraToken),
        3,
        "the new one was kept on disk"
    );
}

#[test]
fn refresh_renews_a_credentials_tokens_for_other_scopes_too() {
    let emu = Emulator::start();
    let sb = sdk_sandbox(&emu);
    let vault_scope = format!("{VAULT}/.default");
    let own = sb.get("corp");
    let vault = get(&sb, &["get", "corp", "--scope", &vault_scope]);
    let bq = get(&sb, &["get", "gcp", "--scope", BIGQUERY]);
    assert_eq!(emu.calls(Endpoint::EntraToken), 2);
    assert_eq!(emu.calls(Endpoint::GoogleToken), 1);

    // One credential: its own token and its scoped one, nothing of gcp's.
    let out = sb.run(["refresh", "corp"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(emu.calls(Endpoint::EntraToken), 4);
    assert_eq!(emu.calls(Endpoint::GoogleToken), 1);
    let vault2 = get(&sb, &["get", "corp", "--scope", &vault_scope]);
    assert_ne!(vault2, vault, "the scoped token was fetched anew");
    assert_eq!(
        emu.token_info(&vault2).unwrap().scope.as_deref(),
        Some("https://vault.azure.net/.default")
    );
    assert_ne!(sb.get("corp"), own);
    assert_eq!(emu.calls(Endpoint::EntraToken), 4, "both served from cache");

    // All: gcp has only a scoped token, and is renewed and named too.
    let out = sb.run(["refresh", "--all"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("gcp"), "{out:?}");
    assert_eq!(emu.calls(Endpoint::EntraToken), 6);
    assert_eq!(emu.calls(Endpoint::GoogleToken), 2);
    assert_ne!(get(&sb, &["get", "gcp", "--scope", BIGQUERY]), bq);

    // Entra refusing both: one line says so, and the tokens in hand stay.
    let vault3 = get(&sb, &["get", "corp", "--scope", &vault_scope]);
    emu.push_fault(
        Endpoint::EntraToken,
        Fault::json(
            400,
            r#"{"error":"invalid_scope","error_description":"AADSTS70011: the scope is not valid"}"#,
        )
        .times(2),
    );
    let out = sb.run(["refresh", "corp"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("2 of 2 refreshes failed"), "{out:?}");
    assert!(out.stderr.contains("AADSTS70011"), "{out:?}");
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out:?}");
    assert_eq!(get(&sb, &["get", "corp", "--scope", &vault_scope]), vault3);
}

#[test]
fn scope_on_another_kind_or_a_bad_scope_is_a_usage_error() {
    let emu = Emulator::start();
    let sb = sdk_sandbox(&emu);
    sb.append_config("[credentials.cmd]\nkind = \"command\"\ncommand = [\"echo\", \"tok\"]\n");
    let out = sb.run(["get", "cmd", "--scope", "x"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("--scope is for google and azure credentials"),
        "{out:?}"
    );
    let out = sb.run(["get", "corp", "--scope", "a b"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("without spaces"), "{out:?}");
    assert_eq!(emu.calls(Endpoint::EntraToken), 0);
}

// ---- the endpoints over raw HTTP ----

#[test]
fn the_metadata_endpoint_answers_what_the_sdks_read() {
    let emu = Emulator::start();
    let sb = sdk_sandbox(&emu);
    let vars = sdk_env(&sb, "gcp");
    assert_eq!(vars["GOOGLE_CLOUD_PROJECT"], "emu-project");
    assert_eq!(vars["GCE_METADATA_HOST"], vars["GCE_METADATA_IP"]);
    let port = port_of(&vars, "GCE_METADATA_HOST");

    let ping = http_get(port, "/", &[FLAVOR]);
    assert_eq!((ping.status, ping.body.as_str()), (200, ""));
    assert_eq!(ping.header("metadata-flavor"), Some("Google"));
    assert_eq!(
        http_get(port, "/computeMetadata/v1/instance", &[FLAVOR]).status,
        200
    );

    let token = http_get(port, TOKEN_PATH, &[FLAVOR]);
    assert_eq!(token.status, 200, "{token:?}");
    assert_eq!(token.header("content-type"), Some("application/json"));
    let json: Value = serde_json::from_str(&token.body).unwrap();
    assert!(json["expires_in"].is_u64(), "{json}");
    assert_eq!(json["token_type"], "Bearer");
    let own = json["access_token"].as_str().unwrap().to_owned();
    assert_eq!(emu.calls(Endpoint::GoogleToken), 1);
    // google-auth asks with the credential's own scopes: the same token.
    let scoped = http_get(
        port,
        &format!("{TOKEN_PATH}?scopes=https://www.googleapis.com/auth/cloud-platform"),
        &[FLAVOR],
    );
    let json: Value = serde_json::from_str(&scoped.body).unwrap();
    assert_eq!(json["access_token"], own.as_str());
    let bq = http_get(port, &format!("{TOKEN_PATH}?scopes={BIGQUERY}"), &[FLAVOR]);
    let json: Value = serde_json::from_str(&bq.body).unwrap();
    let bq_token = json["access_token"].as_str().unwrap();
    assert_eq!(
        emu.token_info(bq_token).unwrap().scope.as_deref(),
        Some(BIGQUERY)
    );
    assert_eq!(emu.calls(Endpoint::GoogleToken), 2);

    let email = http_get(
        port,
        "/computeMetadata/v1/instance/service-accounts/default/email",
        &[FLAVOR],
    );
    assert_eq!(email.status, 200);
    assert_eq!(email.header("content-type"), Some("application/text"));
    assert!(
        email.body.ends_with("@emu-project.iam.gserviceaccount.com"),
        "{email:?}"
    );
    let info = http_get(
        port,
        &format!(
            "/computeMetadata/v1/instance/service-accounts/{}/?recursive=true",
            email.body
        ),
        &[FLAVOR],
    );
    assert_eq!(info.header("content-type"), Some("application/json"));
    let json: Value = serde_json::from_str(&info.body).unwrap();
    assert_eq!(json["email"], email.body.as_str());
    assert_eq!(json["aliases"][0], "default");
    let project = http_get(port, "/computeMetadata/v1/project/project-id", &[FLAVOR]);
    assert_eq!(
        (project.status, project.body.as_str()),
        (200, "emu-project")
    );
    let universe = http_get(
        port,
        "/computeMetadata/v1/universe/universe-domain",
        &[FLAVOR],
    );
    assert_eq!(universe.body, "googleapis.com");
    let id = http_get(
        port,
        &format!(
            "/computeMetadata/v1/instance/service-accounts/default/identity?audience={AUDIENCE}&format=full"
        ),
        &[FLAVOR],
    );
    assert_eq!(id.status, 200, "{id:?}");
    assert_eq!(id.header("content-type"), Some("application/text"));
    assert_eq!(id.body.split('.').count(), 3, "a JWT: {id:?}");
    let other = http_get(
        port,
        "/computeMetadata/v1/instance/service-accounts/someone@else.com/token",
        &[FLAVOR],
    );
    assert_eq!(other.status, 404);
    let nothing = http_get(port, "/computeMetadata/v1/instance/zone", &[FLAVOR]);
    assert_eq!(nothing.status, 404);
    assert_eq!(nothing.header("metadata-flavor"), Some("Google"));

    // Refusals: no Metadata-Flavor, X-Forwarded-For.
    let bare = http_get(port, TOKEN_PATH, &[]);
    assert_eq!(bare.status, 403, "{bare:?}");
    assert!(!bare.body.contains(&own));
    let forwarded = http_get(port, TOKEN_PATH, &[FLAVOR, ("X-Forwarded-For", "10.0.0.1")]);
    assert_eq!(forwarded.status, 403);
    assert!(!forwarded.body.contains(&own));

    let status: Value = serde_json::from_str(sb.run(["status", "--json"]).ok()).unwrap();
    let sdk = &status["sdk"][0];
    assert_eq!(sdk["name"], "gcp");
    assert_eq!(sdk["port"], port);
    assert_eq!(sdk["refused"], 2);
    assert!(sdk["served"].as_u64().unwrap() >= 10, "{sdk}");
    assert!(sb.log().contains("SDK request refused"));
}

#[test]
fn the_azure_endpoint_wants_its_secret_and_caches_per_resource() {
    let emu = Emulator::start();
    let sb = sdk_sandbox(&emu);
    let vars = sdk_env(&sb, "corp");
    let port = port_of(&vars, "IDENTITY_ENDPOINT");
    let secret = vars["IDENTITY_HEADER"].as_str().unwrap().to_owned();
    let path = format!("/msi/token?api-version=2019-08-01&resource={VAULT}");

    let ok = http_get(port, &path, &[("X-IDENTITY-HEADER", &secret)]);
    assert_eq!(ok.status, 200, "{ok:?}");
    let json: Value = serde_json::from_str(&ok.body).unwrap();
    let token = json["access_token"].as_str().unwrap();
    assert_eq!(
        emu.token_info(token).unwrap().scope.as_deref(),
        Some("https://vault.azure.net/.default")
    );
    assert_eq!(json["resource"], VAULT);
    assert!(json["expires_on"].as_str().unwrap().parse::<i64>().is_ok());
    http_get(port, &format!("{path}/"), &[("X-IDENTITY-HEADER", &secret)]);
    assert_eq!(
        emu.calls(Endpoint::EntraToken),
        1,
        "a trailing slash is the same"
    );

    let missing = http_get(port, &path, &[]);
    assert_eq!(missing.status, 401, "{missing:?}");
    let wrong = http_get(port, &path, &[("X-IDENTITY-HEADER", "nope")]);
    assert_eq!(wrong.status, 401);
    assert!(!wrong.body.contains(token));
    let forwarded = http_get(
        port,
        &path,
        &[
            ("X-IDENTITY-HEADER", &secret),
            ("X-Forwarded-For", "1.2.3.4"),
        ],
    );
    assert_eq!(forwarded.status, 403);
    let no_resource = http_get(
        port,
        "/msi/token?api-version=2019-08-01",
        &[("X-IDENTITY-HEADER", &secret)],
    );
    assert_eq!(no_resource.status, 400);

    // --rotate: the old secret is refused from now on; the port stays.
    let rotated = sb.run(["sdk-env", "corp", "--rotate", "--shell", "json"]);
    let rotated: Value = serde_json::from_str(rotated.ok()).unwrap();
    assert_ne!(rotated["IDENTITY_HEADER"], secret.as_str());
    assert_eq!(port_of(&rotated, "IDENTITY_ENDPOINT"), port);
    assert_eq!(
        http_get(port, &path, &[("X-IDENTITY-HEADER", &secret)]).status,
        401
    );
    let new = rotated["IDENTITY_HEADER"].as_str().unwrap();
    assert_eq!(
        http_get(port, &path, &[("X-IDENTITY-HEADER", new)]).status,
        200
    );
    let log = sb.log();
    assert!(
        !log.contains(&secret) && !log.contains(new),
        "no secret in the log"
    );
    assert!(!log.contains(token), "no token in the log");
}

#[test]
fn a_credential_whose_kind_changes_keeps_its_port_and_speaks_the_new_protocol() {
    let emu = Emulator::start();
    let sb = sdk_sandbox(&emu);
    let vars = sdk_env(&sb, "corp");
    let port = port_of(&vars, "IDENTITY_ENDPOINT");
    let secret = vars["IDENTITY_HEADER"].as_str().unwrap().to_owned();
    let azure_path = format!("/msi/token?api-version=2019-08-01&resource={VAULT}");
    let azure = [("X-IDENTITY-HEADER", secret.as_str())];
    assert_eq!(http_get(port, &azure_path, &azure).status, 200);

    // corp becomes a Google credential (the same key as gcp).
    let key = sb.dir.path().join("sa.json");
    sb.write_config(&format!(
        "[credentials.corp]\nkind = \"google\"\nkey_file = {:?}\n",
        key.display().to_string()
    ));
    sb.run(["daemon", "reload"]).ok();
    // Until its variables are asked for again, the old protocol's clients
    // are told why, and get no token.
    let stale = http_get(port, &azure_path, &azure);
    assert_eq!(stale.status, 404, "{stale:?}");
    assert!(
        stale
            .body
            .contains("corp is now a google credential: run `credcache sdk-env corp` again"),
        "{stale:?}"
    );
    assert_eq!(emu.calls(Endpoint::GoogleToken), 0);

    let vars = sdk_env(&sb, "corp");
    assert_eq!(port_of(&vars, "GCE_METADATA_HOST"), port, "{vars}");
    assert!(vars.get("IDENTITY_ENDPOINT").is_none(), "{vars}");
    let token = http_get(port, TOKEN_PATH, &[FLAVOR]);
    assert_eq!(token.status, 200, "{token:?}");
    let json: Value = serde_json::from_str(&token.body).unwrap();
    assert!(
        emu.token_info(json["access_token"].as_str().unwrap())
            .is_some()
    );
    assert_eq!(emu.calls(Endpoint::GoogleToken), 1);
    let status: Value = serde_json::from_str(sb.run(["status", "--json"]).ok()).unwrap();
    assert_eq!(status["sdk"][0]["kind"], "google", "{status}");
    assert_eq!(status["sdk"][0]["port"], port);

    // Gone from the config: a clear answer, still no token.
    sb.write_config("[credentials.other]\nkind = \"command\"\ncommand = [\"echo\", \"t\"]\n");
    sb.run(["daemon", "reload"]).ok();
    let gone = http_get(port, TOKEN_PATH, &[FLAVOR]);
    assert_eq!(gone.status, 404, "{gone:?}");
    assert!(gone.body.contains("corp"), "{gone:?}");
    assert!(!gone.body.contains("access_token"));
}

#[test]
fn sdk_env_refuses_other_kinds_two_of_a_kind_and_a_taken_port() {
    let emu = Emulator::start();
    let sb = sdk_sandbox(&emu);
    sb.append_config("[credentials.cmd]\nkind = \"command\"\ncommand = [\"echo\", \"tok\"]\n");
    // gcp's recorded port is held by someone else when the daemon starts.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    std::fs::write(sb.dir.path().join("sdk-ports"), format!("gcp {port}\n")).unwrap();
    let out = sb.run(["sdk-env", "cmd"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("google and azure"), "{out:?}");
    let out = sb.run(["sdk-env", "gcp,google"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("both google credentials"), "{out:?}");
    let out = sb.run(["sdk-env", "nope"]);
    assert_eq!(out.code, 4, "{out:?}");

    let out = sb.run(["sdk-env", "gcp"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{port}"))
            && out.stderr.contains("another process holds it"),
        "{out:?}"
    );
    let status = sb.run(["status"]);
    assert!(status.ok().contains("not listening"), "{status:?}");
}

#[test]
fn another_users_process_is_refused_by_both_endpoints() {
    if !rustix::process::getuid().is_root() {
        eprintln!("skipped: only root can run a process as another user (setpriv)");
        return;
    }
    let (Some(setpriv), Some(curl)) = (tool("setpriv"), tool("curl")) else {
        return;
    };
    let emu = Emulator::start();
    let sb = sdk_sandbox(&emu);
    let vars = sdk_env(&sb, "corp,gcp");
    let azure = vars["IDENTITY_ENDPOINT"].as_str().unwrap();
    let secret = vars["IDENTITY_HEADER"].as_str().unwrap();
    let google = vars["GCE_METADATA_HOST"].as_str().unwrap();
    let as_nobody = |url: &str, header: &str| {
        let out = Command::new(&setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&curl)
            .args(["-sS", "-w", "\n%{http_code}", "-H", header, url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let a = as_nobody(
        &format!("{azure}?api-version=2019-08-01&resource={VAULT}"),
        &format!("X-IDENTITY-HEADER: {secret}"),
    );
    assert!(a.ends_with("\n403"), "{a}");
    assert!(!a.contains("access_token"), "{a}");
    let g = as_nobody(
        &format!("http://{google}{TOKEN_PATH}"),
        "Metadata-Flavor: Google",
    );
    assert!(g.ends_with("\n403"), "{g}");
    assert!(!g.contains("access_token"), "{g}");
    assert_eq!(emu.calls(Endpoint::EntraToken), 0);
    assert_eq!(emu.calls(Endpoint::GoogleToken), 0);
    let log = sb.log();
    assert!(
        log.contains("SDK request refused") && log.contains("peer_uid=Some(65534)"),
        "{log}"
    );
}

#[test]
fn an_identity_that_cannot_make_id_tokens_gets_a_clear_404() {
    let emu = Emulator::start();
    let sb = Sandbox::new();
    let file = sb.dir.path().join("user.json");
    emu.write_authorized_user(&file);
    sb.write_config(&format!(
        "[credentials.me]\nkind = \"google\"\nkey_file = {:?}\n",
        file.display().to_string()
    ));
    let vars = sdk_env(&sb, "me");
    assert!(vars.get("GOOGLE_CLOUD_PROJECT").is_none(), "{vars}");
    let port = port_of(&vars, "GCE_METADATA_HOST");
    let id = http_get(
        port,
        &format!(
            "/computeMetadata/v1/instance/service-accounts/default/identity?audience={AUDIENCE}"
        ),
        &[FLAVOR],
    );
    assert_eq!(id.status, 404, "{id:?}");
    assert!(id.body.contains("me cannot make ID tokens"), "{id:?}");
    assert_eq!(id.header("metadata-flavor"), Some("Google"));
    // Its access token is served all the same, and its email is `default`.
    assert_eq!(http_get(port, TOKEN_PATH, &[FLAVOR]).status, 200);
    let email = http_get(
        port,
        "/computeMetadata/v1/instance/service-accounts/default/email",
        &[FLAVOR],
    );
    assert_eq!(email.body, "default");
    let project = http_get(port, "/computeMetadata/v1/project/project-id", &[FLAVOR]);
    assert_eq!(project.status, 404);
}

/// `tests/sdk/`: the scripts, the venv and node_modules.
pub fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sdk")
}

/// Skips (a message, `None`) without CI; fails under CI.
pub fn missing<T>(what: &str) -> Option<T> {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is missing: CI must run .ci/sdk-setup first");
    }
    eprintln!("skipped: {what} is missing (run .ci/sdk-setup)");
    None
}

pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    found.or_else(|| missing(name))
}
