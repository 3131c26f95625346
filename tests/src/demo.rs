//! `credcache-emulator demo`: the product doing its job, offline. It starts
//! the emulator, writes a throwaway config pointing at it, and runs the real
//! `credcache` client (which starts the real `credcached`) the way a user
//! would, printing each command, what it printed, and what it cost. It
//! ends with a background refresh seen through `credcache watch`, and
//! `status` as a table.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::emulator::{Emulator, Endpoint};
use crate::sandbox::Sandbox;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "11111111-1111-1111-1111-111111111111";
const SUBSCRIPTION: &str = "651f8027-33e8-4ec4-97b4-f6e9f3dc8744";

/// Runs the demo, printing a transcript to stdout.
pub fn run() -> anyhow::Result<()> {
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("no parent dir")?
        .to_path_buf();
    let client = bin_dir.join(crate::sandbox::exe("credcache"));
    for bin in [&client, &bin_dir.join(crate::sandbox::exe("credcached"))] {
        if !bin.is_file() {
            bail!(
                "{} is missing: build the workspace first (cargo build --workspace)",
                bin.display()
            );
        }
    }
    let emu = Emulator::start();
    let demo = Demo::new(&emu, client)?;
    let home = &demo.home.dir;

    println!(
        "credcache demo: emulated Google and Azure clouds at {}",
        emu.url()
    );
    println!(
        "throwaway config, cache and socket under {}\n",
        home.path().display()
    );
    println!("{}", demo.config_text.trim_end());
    println!();

    demo.step(
        "credcache get gcp",
        &["get", "gcp"],
        "the client started the daemon, which fetched a Google token",
    );
    println!(
        "    google token endpoint calls so far: {}",
        emu.calls(Endpoint::GoogleToken)
    );
    demo.step(
        "credcache get gcp",
        &["get", "gcp"],
        "answered from the daemon's memory",
    );
    println!(
        "    google token endpoint calls so far: {}",
        emu.calls(Endpoint::GoogleToken)
    );
    for name in ["prod-gke", "app-logs", "apim-dev", "corp"] {
        demo.step(
            &format!("credcache get {name}"),
            &["get", name],
            "fetched (with its identity, if not cached yet)",
        );
    }
    demo.step(
        "credcache get prod-gke --format exec-credential",
        &["get", "prod-gke", "--format", "exec-credential"],
        "what kubectl reads",
    );
    demo.step(
        "credcache get apim-dev --format header",
        &["get", "apim-dev", "--format", "header"],
        "for curl -H @-",
    );
    demo.step(
        "credcache refresh --all",
        &["refresh", "--all"],
        "every cached token fetched anew",
    );
    background_refresh(&emu, &demo);
    demo.step("credcache status", &["status"], "");
    println!(
        "\nupstream calls made: google token {}, entra token {}, gke {}, container apps {}, api management {}",
        emu.calls(Endpoint::GoogleToken),
        emu.calls(Endpoint::EntraToken),
        emu.calls(Endpoint::GkeToken),
        emu.calls(Endpoint::ContainerAppToken),
        emu.calls(Endpoint::ApimToken),
    );
    demo.step("credcache daemon stop", &["daemon", "stop"], "");
    Ok(())
}

/// The emulator starts issuing 20-second Google tokens; `credcache watch`
/// shows the daemon replacing one before it expires, with nobody asking.
/// (Half the lifetime ahead, and not sooner than the 10 s the daemon
/// leaves between background refreshes of one credential.)
fn background_refresh(emu: &Emulator, demo: &Demo) {
    emu.set_lifetime(Endpoint::GoogleToken, DEMO_LIFETIME_SECS);
    demo.step(
        "credcache refresh gcp",
        &["refresh", "gcp"],
        &format!("the emulator now issues Google tokens that live {DEMO_LIFETIME_SECS} s"),
    );
    println!("$ credcache watch gcp    (what an IDE subscribes to: one JSON line per token)");
    let calls_before = emu.calls(Endpoint::GoogleToken);
    let started = Instant::now();
    let lines = match demo.watch("gcp", 2, WATCH_DEADLINE) {
        Ok(lines) => lines,
        Err(e) => {
            println!("  cannot watch: {e:#}");
            return;
        }
    };
    for line in &lines {
        println!("{line}");
    }
    if lines.len() < 2 {
        println!(
            "    (no new token within {} s: the background refresh did not happen)",
            WATCH_DEADLINE.as_secs()
        );
        return;
    }
    let field = |line: &str, key: &str| {
        serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v[key].as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    // Said from what the daemon reported, not assumed: the new token was
    // fetched before the old one's expiry, or the demo says otherwise.
    let when = match (
        credcache_shared::time::parse_rfc3339("fetched_at", &field(&lines[1], "fetched_at")),
        credcache_shared::time::parse_rfc3339("expires_at", &field(&lines[0], "expires_at")),
    ) {
        (Ok(fetched), Ok(expired)) if fetched < expired => format!(
            "{:.1} s before it expired",
            (expired - fetched).num_milliseconds() as f64 / 1000.0
        ),
        (Ok(_), Ok(_)) => "only after it expired".to_owned(),
        _ => "(unreadable timestamps)".to_owned(),
    };
    println!(
        "    ({:.1} s later, without a client asking, the daemon replaced {} with {} \
         {when}; google token calls: {})",
        started.elapsed().as_secs_f64(),
        abbreviated(&field(&lines[0], "token")),
        abbreviated(&field(&lines[1], "token")),
        emu.calls(Endpoint::GoogleToken) - calls_before,
    );
    // Back to hour-long tokens, so the rest of the demo is not refreshing.
    emu.set_lifetime(Endpoint::GoogleToken, 3600);
}

/// How long the demo waits for a background refresh (a 20 s token is
/// refreshed about 10 s after it was fetched).
const WATCH_DEADLINE: Duration = Duration::from_secs(30);
/// The Google token lifetime while the demo watches a background refresh.
const DEMO_LIFETIME_SECS: u64 = 20;

fn abbreviated(token: &str) -> String {
    let head: String = token.chars().take(14).collect();
    format!("{head}…")
}

struct Demo {
    client: PathBuf,
    /// The throwaway config, cache and socket, as the tests have them; its
    /// daemon is stopped with it, should the demo end early.
    home: Sandbox,
    config_text: String,
}

impl Demo {
    fn new(emu: &Emulator, client: PathBuf) -> anyhow::Result<Self> {
        let mut home = Sandbox::try_new().context("cannot create a temp directory")?;
        let key = home.dir.path().join("sa.json");
        emu.try_write_service_account_key(&key)?;
        emu.register_client(TENANT, CLIENT, "demo-secret");
        let url = emu.url();
        let config_text = format!(
            r#"[credentials.gcp]
kind = "google"
key_file = {key:?}

[credentials.corp]
kind = "azure"
method = "client-secret"
tenant_id = "{TENANT}"
client_id = "{CLIENT}"
client_secret_env = "DEMO_SECRET"
authority_host = "{url}"

[credentials.prod-gke]
kind = "gke-cluster"
auth = "gcp"
cluster = "projects/my-proj/locations/us-east4/azureClusters/prod"
endpoint = "{url}"

[credentials.app-logs]
kind = "container-app"
auth = "corp"
subscription_id = "{SUBSCRIPTION}"
resource_group = "rg"
app = "testcontainerapp0"
arm_endpoint = "{url}"

[credentials.apim-dev]
kind = "apim-user-token"
auth = "corp"
subscription_id = "{SUBSCRIPTION}"
resource_group = "rg1"
service = "apimService1"
user_id = "userId1718"
lifetime = "8h"
arm_endpoint = "{url}"
"#,
            // Debug quoting: a TOML string, backslashes (Windows) escaped.
            key = key.display().to_string()
        );
        home.try_write_config(&config_text)?;
        home.env("DEMO_SECRET", "demo-secret")
            .env("CREDCACHE_LOG", "info")
            // Nothing in the demo may leave this machine.
            .env("GCE_METADATA_HOST", format!("127.0.0.1:{}", emu.port()));
        Ok(Self {
            client,
            home,
            config_text,
        })
    }

    /// Runs `credcache watch NAME` until it printed `count` lines or
    /// `deadline` passed, then stops it.
    fn watch(&self, name: &str, count: usize, deadline: Duration) -> anyhow::Result<Vec<String>> {
        let mut child = self
            .home
            .command_for(&self.client)
            .args(["watch", name])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run credcache watch")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let until = Instant::now() + deadline;
        let mut lines = Vec::new();
        while lines.len() < count {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        Ok(lines)
    }

    fn step(&self, shown: &str, args: &[&str], note: &str) {
        println!("$ {shown}");
        let started = Instant::now();
        let out = self.home.command_for(&self.client).args(args).output();
        let took = started.elapsed();
        match out {
            Ok(out) => {
                print!("{}", String::from_utf8_lossy(&out.stdout));
                for line in String::from_utf8_lossy(&out.stderr).lines() {
                    println!("  [stderr] {line}");
                }
                let how = if out.status.success() {
                    String::new()
                } else {
                    format!(", exit {}", out.status.code().unwrap_or(-1))
                };
                let note = if note.is_empty() {
                    String::new()
                } else {
                    format!(": {note}")
                };
                println!("    ({:.1} ms{how}{note})", took.as_secs_f64() * 1e3);
            }
            Err(e) => println!("  cannot run {}: {e}", self.client.display()),
        }
    }
}
