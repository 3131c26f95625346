//! `peers`: issue 15's table in one run. Each tool that answers a cached
//! Google token, as a whole process, next to a `cat` of a file holding the
//! token: `credcache get`, `git credential-cache get`,
//! `gke-gcloud-auth-plugin` (from its file cache), `gcloud auth
//! print-access-token` (from its token cache), `gcloud container azure
//! clusters print-access-token` (a GKE call each time), and `kubectl get
//! --raw /version` through each exec plugin against a TLS stand-in API
//! server on 127.0.0.1 that checks the bearer token is one the emulator
//! issued.
//!
//! gcloud runs in a private `CLOUDSDK_CONFIG` whose `auth/token_host` and
//! `api_endpoint_overrides/gkemulticloud` point at the emulator, with usage
//! reporting, update checks, survey prompts and the GCE metadata probe off
//! (the probe's answer is written as gcloud caches it), so nothing leaves
//! 127.0.0.1. A peer that is not installed gets a line saying so.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;

use super::client::find_on_path;
use super::lab::{CACHED, Lab};
use super::report::Line;
use super::run::Bench;
use super::stats::{Samples, ratio};

/// The project, location and cluster gcloud asks the emulator about.
const PROJECT: &str = "emu-project";
const LOCATION: &str = "us-east4";
const CLUSTER: &str = "c0";
/// Unmeasured runs of each first (caches filled, binaries paged in); one
/// for the slow peers.
const WARM_UP: usize = 5;
/// How long one peer process may take before the run counts as failed.
const PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// One measured command.
struct Peer {
    name: &'static str,
    command: Command,
    stdin: Option<Vec<u8>>,
    /// Slow peers (gcloud, kubectl) run fewer times.
    slow: bool,
}

pub fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let bins = bench.bins.clone();
    let fast_runs = bench.plan.client_runs;
    let slow_runs = (fast_runs / 20).max(2);
    bench.lab()?.emu.accept_googles_audience();
    let (lab, target) = bench.lab_and_target()?;
    let token = fetch_token(target, &bins)?;
    let dir = tempfile::Builder::new()
        .prefix("ccbench-peers")
        .tempdir_in("/tmp")?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n"))?;

    let mut lines = Vec::new();
    let mut peers = Vec::new();
    let cat = find_on_path("cat").context("no `cat` on PATH")?;
    let env = target.env(&bins);
    let cat_command = || {
        let mut command = Command::new(&cat);
        command.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
        command.arg(&token_file);
        command
    };
    let mut credcache = target.client(&bins);
    credcache.args(["get", CACHED]);
    peers.push(Peer {
        name: "credcache get",
        command: credcache,
        stdin: None,
        slow: false,
    });

    let git = find_on_path("git");
    let _git_cache = match &git {
        Some(git) => {
            let cache = GitCache::start(git, dir.path(), &token)?;
            peers.push(Peer {
                name: "git credential-cache get",
                command: cache.get(),
                stdin: Some(b"protocol=https\nhost=bench.example\n\n".to_vec()),
                slow: false,
            });
            Some(cache)
        }
        None => {
            lines.push(skipped("git credential-cache get", "git is not installed"));
            None
        }
    };

    let gcloud = find_on_path("gcloud");
    let plugin = find_on_path("gke-gcloud-auth-plugin");
    let kubectl = find_on_path("kubectl");
    let openssl = find_on_path("openssl");
    let google = match &gcloud {
        Some(gcloud) => Some(GcloudHome::make(gcloud, dir.path(), lab)?),
        None => {
            let mut names = vec![
                "gke-gcloud-auth-plugin",
                "gcloud auth print-access-token",
                "gcloud container azure clusters print-access-token",
            ];
            // Without kubectl those get their own line below.
            if kubectl.is_some() {
                names.extend(["kubectl via gke-gcloud-auth-plugin", "kubectl via gcloud"]);
            }
            for name in names {
                lines.push(skipped(name, "gcloud is not installed"));
            }
            None
        }
    };
    let api = match (&kubectl, &openssl) {
        (Some(_), Some(openssl)) => Some(StandIn::start(openssl, dir.path(), lab)?),
        (None, _) => {
            for name in [
                "kubectl via credcache",
                "kubectl via gke-gcloud-auth-plugin",
                "kubectl via gcloud",
            ] {
                lines.push(skipped(name, "kubectl is not installed"));
            }
            None
        }
        (Some(_), None) => {
            for name in [
                "kubectl via credcache",
                "kubectl via gke-gcloud-auth-plugin",
                "kubectl via gcloud",
            ] {
                lines.push(skipped(
                    name,
                    "openssl is not installed (it makes the stand-in API server's certificate)",
                ));
            }
            None
        }
    };

    if let Some(google) = &google {
        match &plugin {
            Some(plugin) => {
                let kubeconfig = google.kubeconfig_for_plugin(api.as_ref(), plugin)?;
                let mut command = google.command(plugin);
                command.env("KUBECONFIG", &kubeconfig);
                peers.push(Peer {
                    name: "gke-gcloud-auth-plugin",
                    command,
                    stdin: None,
                    slow: false,
                });
            }
            None => lines.push(skipped(
                "gke-gcloud-auth-plugin",
                "gke-gcloud-auth-plugin is not installed",
            )),
        }
        let mut command = google.gcloud();
        command.args(["auth", "print-access-token"]);
        peers.push(Peer {
            name: "gcloud auth print-access-token",
            command,
            stdin: None,
            slow: true,
        });
        let mut command = google.gcloud();
        command.args(azure_token_args(false));
        peers.push(Peer {
            name: "gcloud container azure clusters print-access-token",
            command,
            stdin: None,
            slow: true,
        });
    }

    if let (Some(api), Some(kubectl)) = (&api, &kubectl) {
        let exec = Exec {
            command: bins.client.display().to_string(),
            args: vec![
                "get".into(),
                CACHED.into(),
                "--format".into(),
                "exec-credential".into(),
            ],
            api_version: V1,
        };
        let mut command = Command::new(kubectl);
        command
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env(
                "KUBECONFIG",
                api.kubeconfig(dir.path(), "credcache", &exec)?,
            );
        command.args(["get", "--raw", "/version"]);
        peers.push(Peer {
            name: "kubectl via credcache",
            command,
            stdin: None,
            slow: true,
        });
        if let Some(google) = &google {
            match &plugin {
                Some(plugin) => {
                    let exec = Exec {
                        command: plugin.display().to_string(),
                        args: Vec::new(),
                        api_version: V1BETA1,
                    };
                    let mut command = google.command(kubectl);
                    command.env("KUBECONFIG", api.kubeconfig(dir.path(), "plugin", &exec)?);
                    command.args(["get", "--raw", "/version"]);
                    peers.push(Peer {
                        name: "kubectl via gke-gcloud-auth-plugin",
                        command,
                        stdin: None,
                        slow: true,
                    });
                }
                None => lines.push(skipped(
                    "kubectl via gke-gcloud-auth-plugin",
                    "gke-gcloud-auth-plugin is not installed",
                )),
            }
            let exec = Exec {
                command: google.gcloud.display().to_string(),
                args: azure_token_args(true),
                api_version: V1,
            };
            let mut command = google.command(kubectl);
            command.env("KUBECONFIG", api.kubeconfig(dir.path(), "gcloud", &exec)?);
            command.args(["get", "--raw", "/version"]);
            peers.push(Peer {
                name: "kubectl via gcloud",
                command,
                stdin: None,
                slow: true,
            });
        }
    }

    for line in lines {
        bench.emit(line);
    }
    let mut cat_emitted = false;
    for mut peer in peers {
        eprintln!("credcache-bench: peers: {}", peer.name);
        let runs = if peer.slow { slow_runs } else { fast_runs };
        let calls_before = bench.lab()?.upstream_calls();
        let measured = measure(&mut peer, &mut cat_command(), runs);
        let calls = bench.lab()?.upstream_calls() - calls_before;
        match measured {
            Ok(m) => {
                let paired = m.paired_ratio();
                let (p, k) = (m.peer.summary(), m.cat.summary());
                if !cat_emitted {
                    cat_emitted = true;
                    bench.emit(
                        Line::new("peers")
                            .latency(k)
                            .with("peer", "cat")
                            .with("runs", runs)
                            .with("ratio", 1.0),
                    );
                }
                let mut line = Line::new("peers")
                    .latency(p)
                    .with("peer", peer.name)
                    .with("runs", runs);
                line.upstream_calls = Some(calls);
                if let (Some(p), Some(k)) = (p, k) {
                    line = line
                        .with("cat_p50_us", k.p50_us)
                        .with("ratio", ratio(p.p50_us, k.p50_us))
                        .with("ratio_paired_median", paired);
                }
                bench.emit(line);
            }
            Err(e) => {
                let why = format!("{e:#}");
                let mut line = Line::new("peers")
                    .with("peer", peer.name)
                    .with("failed", why.clone());
                line.errors = 1;
                bench.emit(line);
                bench.violation(format!("peers: {}: {why}", peer.name));
            }
        }
    }
    if let Some(api) = &api {
        let refused = api.refused.load(Ordering::Relaxed);
        if refused > 0 {
            bench.violation(format!(
                "peers: the stand-in API server refused {refused} requests (a token it did not know)"
            ));
        }
    }
    Ok(())
}

fn skipped(peer: &str, why: &str) -> Line {
    Line::skipped("peers", why).with("peer", peer)
}

/// `gcloud container azure clusters print-access-token`'s arguments.
fn azure_token_args(exec_credential: bool) -> Vec<String> {
    let mut args: Vec<String> = [
        "container",
        "azure",
        "clusters",
        "print-access-token",
        CLUSTER,
        "--location",
        LOCATION,
        "--project",
        PROJECT,
    ]
    .map(str::to_owned)
    .to_vec();
    if exec_credential {
        args.push("--exec-credential".into());
    }
    args
}

/// The token `credcache get` prints (the file `cat` reads holds the same).
fn fetch_token(target: &super::run::Target, bins: &super::home::Bins) -> anyhow::Result<String> {
    let out = target
        .client(bins)
        .args(["get", CACHED])
        .stdin(Stdio::null())
        .output()
        .context("cannot run credcache")?;
    if !out.status.success() {
        bail!(
            "credcache get: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

struct Measured {
    peer: Samples,
    cat: Samples,
    /// `peer / cat` of each pair.
    pairs: Vec<f64>,
}

impl Measured {
    fn paired_ratio(&self) -> Option<f64> {
        let mut pairs = self.pairs.clone();
        pairs.sort_by(f64::total_cmp);
        let median = pairs.get(pairs.len() / 2)?;
        Some((median * 100.0).round() / 100.0)
    }
}

/// `runs` runs of the peer, each next to a `cat`, after a warm-up.
fn measure(peer: &mut Peer, cat: &mut Command, runs: usize) -> anyhow::Result<Measured> {
    let warm_up = if peer.slow { 1 } else { WARM_UP };
    for _ in 0..warm_up {
        time(&mut peer.command, peer.stdin.as_deref())?;
        time(cat, None)?;
    }
    let mut measured = Measured {
        peer: Samples::with_capacity(runs),
        cat: Samples::with_capacity(runs),
        pairs: Vec::with_capacity(runs),
    };
    for _ in 0..runs {
        let p = time(&mut peer.command, peer.stdin.as_deref())?;
        let k = time(cat, None)?;
        measured.peer.push(p);
        measured.cat.push(k);
        measured.pairs.push(p.as_secs_f64() / k.as_secs_f64());
    }
    Ok(measured)
}

/// Runs a command to completion, its output captured and `stdin` written
/// to it; how long it took, or why it failed (an exit other than 0, or
/// nothing printed).
fn time(command: &mut Command, stdin: Option<&[u8]>) -> anyhow::Result<Duration> {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command.spawn().context("cannot run")?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).context("cannot write its input")?;
    }
    let out = child.wait_with_output().context("cannot wait for it")?;
    let took = started.elapsed();
    if took > PEER_TIMEOUT {
        bail!("took {took:?}");
    }
    if !out.status.success() || out.stdout.is_empty() {
        bail!(
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

/// A `git credential-cache` daemon on its own socket holding the token as
/// the password of `https://bench.example`; told to exit on drop.
struct GitCache {
    git: PathBuf,
    home: PathBuf,
    socket: PathBuf,
}

impl GitCache {
    fn start(git: &Path, dir: &Path, token: &str) -> anyhow::Result<GitCache> {
        use std::os::unix::fs::DirBuilderExt as _;
        let home = dir.join("git-home");
        // git refuses a socket directory others could read.
        std::fs::DirBuilder::new().mode(0o700).create(&home)?;
        let cache = GitCache {
            git: git.to_owned(),
            socket: home.join("git-credential-cache.sock"),
            home,
        };
        let mut store = cache.command();
        // The daemon git starts inherits stderr: not a pipe we wait on.
        store
            .args(["store"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = store.spawn().context("cannot run git credential-cache")?;
        if let Some(mut pipe) = child.stdin.take() {
            write!(
                pipe,
                "protocol=https\nhost=bench.example\nusername=bench\npassword={token}\n\n"
            )?;
        }
        let status = child.wait()?;
        if !status.success() {
            bail!("git credential-cache store: {status}");
        }
        Ok(cache)
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.git);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .args(["credential-cache", "--timeout", "3600", "--socket"])
            .arg(&self.socket);
        command
    }

    fn get(&self) -> Command {
        let mut command = self.command();
        command.arg("get");
        command
    }
}

impl Drop for GitCache {
    fn drop(&mut self) {
        let _ = self
            .command()
            .arg("exit")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// gcloud's private configuration directory, pointed at the emulator and
/// signed in with the bench's service-account key.
struct GcloudHome {
    gcloud: PathBuf,
    config: PathBuf,
    home: PathBuf,
}

impl GcloudHome {
    fn make(gcloud: &Path, dir: &Path, lab: &Lab) -> anyhow::Result<GcloudHome> {
        let config = dir.join("gcloud");
        let home = dir.join("gcloud-home");
        std::fs::create_dir_all(config.join("configurations"))?;
        std::fs::create_dir_all(home.join(".kube"))?;
        let base = lab.emu.url();
        std::fs::write(config.join("active_config"), "default")?;
        std::fs::write(
            config.join("configurations/config_default"),
            format!(
                "[core]\nproject = {PROJECT}\ndisable_usage_reporting = true\n\
                 check_gce_metadata = false\ndisable_prompts = true\n\
                 [component_manager]\ndisable_update_check = true\n\
                 [survey]\ndisable_prompts = true\n\
                 [auth]\ntoken_host = {base}/token\n\
                 [api_endpoint_overrides]\ngkemulticloud = {base}/\n"
            ),
        )?;
        // gcloud probes metadata.google.internal once to learn whether it
        // runs on GCE, and caches the answer in this file: answered here.
        std::fs::write(config.join("gce"), "False")?;
        let home = GcloudHome {
            gcloud: gcloud.to_owned(),
            config,
            home,
        };
        let out = home
            .gcloud()
            .args(["auth", "activate-service-account", "--key-file"])
            .arg(&lab.key)
            .stdin(Stdio::null())
            .output()
            .context("cannot run gcloud")?;
        if !out.status.success() {
            bail!(
                "gcloud auth activate-service-account: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(home)
    }

    /// `program` in gcloud's environment: the private config, an empty
    /// home, and every address gcloud could probe on its own on loopback.
    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("CLOUDSDK_CONFIG", &self.config)
            .env("GCE_METADATA_ROOT", "127.0.0.1:9")
            .env("GCE_METADATA_IP", "127.0.0.1:9")
            .env("GCE_METADATA_HOST", "127.0.0.1:9")
            .env("NO_GCE_CHECK", "True");
        command
    }

    fn gcloud(&self) -> Command {
        self.command(&self.gcloud)
    }

    /// The kubeconfig `gke-gcloud-auth-plugin` reads its current context
    /// from (its cache is keyed by it): the stand-in's, or a bare one.
    fn kubeconfig_for_plugin(
        &self,
        api: Option<&StandIn>,
        plugin: &Path,
    ) -> anyhow::Result<PathBuf> {
        let exec = Exec {
            command: plugin.display().to_string(),
            args: Vec::new(),
            api_version: V1BETA1,
        };
        match api {
            Some(api) => api.kubeconfig(&self.home, "plugin-alone", &exec),
            None => {
                let path = self.home.join(".kube/config");
                std::fs::write(
                    &path,
                    kubeconfig("https://127.0.0.1:9", None, "plugin-alone", &exec),
                )?;
                Ok(path)
            }
        }
    }
}

/// A kubeconfig user's exec plugin.
struct Exec {
    command: String,
    args: Vec<String>,
    /// The ExecCredential version the plugin answers with.
    api_version: &'static str,
}

/// What `gke-gcloud-auth-plugin` answers (its kubeconfigs say so too).
const V1BETA1: &str = "client.authentication.k8s.io/v1beta1";
/// What `gcloud ... print-access-token --exec-credential` answers;
/// `credcache` answers in the version kubectl asks for.
const V1: &str = "client.authentication.k8s.io/v1";

fn kubeconfig(server: &str, ca_pem: Option<&str>, name: &str, exec: &Exec) -> String {
    let ca = ca_pem
        .map(|pem| {
            format!(
                "    certificate-authority-data: {}\n",
                base64::engine::general_purpose::STANDARD.encode(pem)
            )
        })
        .unwrap_or_default();
    let args: String = exec
        .args
        .iter()
        .map(|a| format!("      - {}\n", json_string(a)))
        .collect();
    let args = if args.is_empty() {
        String::new()
    } else {
        format!("      args:\n{args}")
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n{ca}    server: {server}\n\
         contexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n\
         current-context: {name}\nusers:\n- name: {name}\n  user:\n    exec:\n\
         \x20     apiVersion: {}\n\
         \x20     command: {}\n{args}\x20     interactiveMode: Never\n      provideClusterInfo: true\n",
        exec.api_version,
        json_string(&exec.command)
    )
}

/// A YAML-safe scalar (YAML reads JSON strings).
fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The stand-in Kubernetes API server: TLS on 127.0.0.1 with a throwaway
/// self-signed certificate, `GET /version` answered when the bearer token
/// is one the emulator issued and has not expired, 401 otherwise. One
/// thread; connections are served one at a time (kubectl runs one by one).
struct StandIn {
    url: String,
    ca_pem: String,
    refused: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StandIn {
    fn start(openssl: &Path, dir: &Path, lab: &Lab) -> anyhow::Result<StandIn> {
        let (cert_der, key_der, ca_pem) = self_signed(openssl, dir)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(cert_der)],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into()),
            )?;
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let url = format!("https://{}", listener.local_addr()?);
        let refused = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let emu = lab.emu.shared.clone();
        let thread = {
            let (refused, stop) = (refused.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if serve_one(stream, &config, &emu) == Some(false) {
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        // Non-blocking: poll for the stop flag.
                        Err(_) => std::thread::sleep(Duration::from_millis(1)),
                    }
                }
            })
        };
        Ok(StandIn {
            url,
            ca_pem,
            refused,
            stop,
            thread: Some(thread),
        })
    }

    /// Writes a kubeconfig for this server whose user runs `exec`.
    fn kubeconfig(&self, dir: &Path, name: &str, exec: &Exec) -> anyhow::Result<PathBuf> {
        let path = dir.join(format!("kubeconfig-{name}"));
        std::fs::write(&path, kubeconfig(&self.url, Some(&self.ca_pem), name, exec))?;
        Ok(path)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One request on one connection: whether its token was accepted (`None`
/// when no request arrived).
fn serve_one(
    stream: TcpStream,
    config: &Arc<rustls::ServerConfig>,
    emu: &crate::emulator::state::Shared,
) -> Option<bool> {
    stream.set_nonblocking(false).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let connection = rustls::ServerConnection::new(config.clone()).ok()?;
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tls.read(&mut buf).ok()?;
        if n == 0 || head.len() > 64 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let bearer = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.eq_ignore_ascii_case("authorization") {
            return None;
        }
        value.trim().strip_prefix("Bearer ").map(str::to_owned)
    });
    let known = bearer
        .as_deref()
        .and_then(|t| emu.lock().token_info(t))
        .is_some_and(|issued| issued.expires_at > chrono::Utc::now());
    let (status, body) = if known {
        (
            "200 OK",
            r#"{"major":"1","minor":"32","gitVersion":"v1.32.0-credcache-bench","platform":"linux/amd64"}"#,
        )
    } else {
        (
            "401 Unauthorized",
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#,
        )
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(reply.as_bytes()).ok()?;
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Some(known)
}

/// A throwaway self-signed certificate for 127.0.0.1, made by `openssl`:
/// the certificate and PKCS#8 key in DER, and the certificate in PEM.
fn self_signed(openssl: &Path, dir: &Path) -> anyhow::Result<(Vec<u8>, Vec<u8>, String)> {
    let pem = dir.join("api.pem");
    let key = dir.join("api-key.pem");
    let der = dir.join("api.der");
    let key_der = dir.join("api-key.der");
    let run = |args: &[&std::ffi::OsStr]| -> anyhow::Result<()> {
        let out = Command::new(openssl)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("cannot run openssl")?;
        if !out.status.success() {
            bail!("openssl: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    run(&[
        os("req"),
        os("-x509"),
        os("-newkey"),
        os("ec"),
        os("-pkeyopt"),
        os("ec_paramgen_curve:prime256v1"),
        os("-nodes"),
        os("-days"),
        os("1"),
        os("-subj"),
        os("/CN=127.0.0.1"),
        os("-addext"),
        os("subjectAltName=IP:127.0.0.1"),
        os("-keyout"),
        key.as_os_str(),
        os("-out"),
        pem.as_os_str(),
    ])?;
    run(&[
        os("x509"),
        os("-in"),
        pem.as_os_str(),
        os("-outform"),
        os("DER"),
        os("-out"),
        der.as_os_str(),
    ])?;
    run(&[
        os("pkcs8"),
        os("-topk8"),
        os("-nocrypt"),
        os("-in"),
        key.as_os_str(),
        os("-outform"),
        os("DER"),
        os("-out"),
        key_der.as_os_str(),
    ])?;
    Ok((
        std::fs::read(&der)?,
        std::fs::read(&key_der)?,
        std::fs::read_to_string(&pem)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_quotes_the_plugin_and_its_arguments() {
        let exec = Exec {
            command: "/opt/my tools/credcache".into(),
            args: vec!["get".into(), "a: b".into()],
            api_version: V1,
        };
        let text = kubeconfig("https://127.0.0.1:1", Some("PEM"), "n", &exec);
        assert!(
            text.contains("command: \"/opt/my tools/credcache\""),
            "{text}"
        );
        assert!(text.contains("- \"a: b\""), "{text}");
        assert!(text.contains("certificate-authority-data: UEVN"), "{text}");
        assert!(text.contains("current-context: n"), "{text}");
        assert!(text.contains(&format!("apiVersion: {V1}\n")), "{text}");
    }

    #[test]
    fn paired_ratio_is_the_median_pair() {
        let m = Measured {
            peer: Samples::with_capacity(0),
            cat: Samples::with_capacity(0),
            pairs: vec![3.0, 1.0, 2.0],
        };
        assert_eq!(m.paired_ratio(), Some(2.0));
        let empty = Measured {
            peer: Samples::with_capacity(0),
            cat: Samples::with_capacity(0),
            pairs: vec![],
        };
        assert_eq!(empty.paired_ratio(), None);
    }
}
