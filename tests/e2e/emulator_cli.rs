//! `credcache-emulator` used by hand, as README's "Try it against the
//! emulator" has it: the real `serve` binary, the config it prints pasted
//! as it is, and the real `credcache get` for every credential in it.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, Stdio};

use credcache_tests::emulator::CONTROL_ENDPOINTS;
use credcache_tests::emulator::snippet::END_MARKER;

use crate::harness::{Out, Sandbox};

const CLIENT: &str = "11111111-1111-1111-1111-111111111111";
const SECRET: &str = "emu-secret-not-on-argv";

/// A running `credcache-emulator serve` and what it printed.
struct Served {
    child: Child,
    url: String,
    /// Everything after the `listening on` line, through the end marker.
    config: String,
}

impl Served {
    /// Starts `credcache-emulator serve ARGS` in the sandbox's environment
    /// and reads its stdout up to the end of the config (the process goes on
    /// serving, so there is no EOF to wait for).
    fn start(sb: &Sandbox, args: &[&str]) -> Served {
        let mut child = sb
            .command("credcache-emulator")
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run credcache-emulator");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let Some(url) = first.strip_prefix("listening on ") else {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .ok();
            let _ = child.wait();
            panic!("serve printed {first:?} first; stderr: {stderr}");
        };
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let mut config = String::new();
        for line in lines {
            let line = line.expect("read serve's stdout");
            config.push_str(&line);
            config.push('\n');
            if line == END_MARKER {
                return Served {
                    child,
                    url: url.to_owned(),
                    config,
                };
            }
        }
        panic!("serve's stdout ended before {END_MARKER:?}: {config}");
    }

    /// SIGTERM, then the exit status, which must be a clean exit.
    fn stop(mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "serve exited with {status}");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // After a clean `stop` the child is reaped already and this fails.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn emulator(sb: &Sandbox, args: &[&str]) -> Out {
    sb.command("credcache-emulator")
        .args(args)
        .output()
        .expect("run credcache-emulator")
        .into()
}

/// The printed config's credentials, name → kind.
fn credentials(config: &str) -> Vec<(String, String)> {
    let table: toml::Table = config.parse().expect("the printed config is TOML");
    table["credentials"]
        .as_table()
        .expect("[credentials.*] tables")
        .iter()
        .map(|(name, cred)| (name.clone(), cred["kind"].as_str().unwrap().to_owned()))
        .collect()
}

fn calls(url: &str) -> serde_json::Value {
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    http.get(format!("{url}/__emulator/calls"))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

#[test]
fn the_printed_config_gets_a_token_of_every_kind() {
    let mut sb = Sandbox::new();
    sb.env("EMU_SECRET", SECRET);
    let dir = sb.dir.path().join("emu");
    let cluster = "projects/p1/locations/us-east4/azureClusters/c1";
    let entra = format!("emu-tenant:{CLIENT}:EMU_SECRET");
    let served = Served::start(
        &sb,
        &[
            "--dir",
            dir.to_str().unwrap(),
            "--entra-client",
            &entra,
            "--cluster",
            cluster,
            "--container-app",
            "651f8027-33e8-4ec4-97b4-f6e9f3dc8744/rg7/app7",
        ],
    );
    assert!(!served.config.contains(SECRET), "{}", served.config);
    assert!(served.config.contains(cluster), "{}", served.config);
    assert!(
        served.config.contains("app = \"app7\""),
        "{}",
        served.config
    );
    let user: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("authorized-user.json")).unwrap()).unwrap();
    assert_eq!(user["token_uri"], format!("{}/token", served.url));

    sb.write_config(&served.config);
    sb.run(["config", "check"]).ok();
    let credentials = credentials(&served.config);
    let kinds: BTreeSet<&str> = credentials.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "apim-user-token",
            "azure",
            "command",
            "container-app",
            "gke-cluster",
            "google"
        ])
    );
    for (name, _) in &credentials {
        assert!(!sb.get(name).is_empty(), "{name}");
    }

    let counts = &calls(&served.url)["counts"];
    // Two Google identities; emu-gke reuses emu-gcp's token, and emu-app
    // and emu-apim share emu-corp's.
    assert_eq!(counts["google-token"], 2, "{counts}");
    assert_eq!(counts["entra-token"], 1, "{counts}");
    for endpoint in ["gke-token", "container-app-token", "apim-token"] {
        assert_eq!(counts[endpoint], 1, "{endpoint}: {counts}");
    }
    let list: serde_json::Value = serde_json::from_str(sb.run(["list", "--json"]).ok()).unwrap();
    for (name, _) in &credentials {
        let entry = list
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} not in {list}"));
        assert_eq!(entry["state"], "fresh", "{entry}");
    }
    served.stop();
    assert!(dir.join("service-account.json").is_file(), "--dir is kept");
}

#[test]
fn serve_without_a_dir_removes_its_files_at_exit() {
    let sb = Sandbox::new();
    let served = Served::start(&sb, &[]);
    let credentials = credentials(&served.config);
    // No Entra client named: the Azure-based kinds are left out, and the
    // config says how to get them.
    let mut names: Vec<&str> = credentials.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["emu-command", "emu-gcp", "emu-gcp-user", "emu-gke"],
        "{}",
        served.config
    );
    assert!(
        served.config.contains("--entra-client"),
        "{}",
        served.config
    );
    let table: toml::Table = served.config.parse().unwrap();
    let key_file = table["credentials"]["emu-gcp"]["key_file"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(Path::new(&key_file).is_file(), "{key_file}");
    sb.write_config(&served.config);
    assert!(!sb.get("emu-gke").is_empty());
    served.stop();
    assert!(!Path::new(&key_file).exists(), "{key_file} was left behind");
}

#[test]
fn serve_refuses_a_missing_secret_and_a_bad_flag() {
    let sb = Sandbox::new();
    let unset = format!("emu-tenant:{CLIENT}:EMU_UNSET_SECRET");
    let out = emulator(&sb, &["serve", "--entra-client", &unset]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stdout, "", "{out:?}");
    assert_eq!(
        out.stderr.trim_end(),
        "credcache-emulator: --entra-client: EMU_UNSET_SECRET is not set: export the client secret as EMU_UNSET_SECRET first"
    );

    // A secret typed where its variable's name belongs is not repeated.
    let inline = format!("emu-tenant:{CLIENT}:{SECRET}");
    let out = emulator(&sb, &["serve", "--entra-client", &inline]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(!out.stderr.contains(SECRET), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");

    let out = emulator(&sb, &["serve", "--cluster", "prod"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("is not a cluster path"), "{out:?}");
}

#[test]
fn help_lists_the_control_endpoints() {
    let sb = Sandbox::new();
    let serve = emulator(&sb, &["serve", "--help"]);
    let help = serve.ok();
    for endpoint in CONTROL_ENDPOINTS {
        let line = format!("{:<4} {}", endpoint.method, endpoint.path);
        assert!(help.contains(&line), "{line} missing from:\n{help}");
    }
    for flag in [
        "--port",
        "--dir",
        "--entra-client",
        "--cluster",
        "--container-app",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    let demo = emulator(&sb, &["demo", "--help"]);
    assert!(
        demo.ok().contains("Usage: credcache-emulator demo"),
        "{demo:?}"
    );
    let top = emulator(&sb, &["--help"]);
    assert!(
        top.ok().contains("serve") && top.stdout.contains("demo"),
        "{top:?}"
    );
    let wrong = emulator(&sb, &["serve", "--bogus"]);
    assert_eq!(wrong.code, 2, "{wrong:?}");
}
