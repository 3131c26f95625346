//! The run: what the scenarios share (the emulator, the daemon the cached
//! gets go to, the home with many cached tokens), each set up once and only
//! when a scenario needs it, and the scenarios taken in order.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};
use credcache_shared::protocol::{CredentialState, Request, Response};

use super::args::{Plan, Scenario};
use super::conn::{Conn, get_frame};
use super::home::{self, Bins, Daemon};
use super::lab::{self, Lab};
use super::report::Line;
use super::{client, cold, memory, peers, procfs, soak, startup, throughput};
use crate::sandbox::Sandbox;

/// Everything the scenarios share.
pub struct Bench {
    pub plan: Plan,
    pub bins: Bins,
    /// The emulator and key; `None` when measuring a foreign daemon.
    pub lab: Option<Lab>,
    target: Option<Target>,
    /// The home with `plan.tokens` cached tokens, made on first use.
    loaded: Option<Loaded>,
    /// The target daemon's RSS after the last throughput level.
    pub rss_after_throughput: Option<u64>,
    /// Broken promises (an expired token served, a wrong upstream count,
    /// a scenario that could not run): the run exits 1 if there are any.
    violations: Vec<String>,
}

/// The daemon the cached-get scenarios measure.
pub struct Target {
    pub socket: PathBuf,
    pub pid: u32,
    /// The credential to ask for; it is cached.
    pub name: String,
    /// RSS right after start, before any token (own daemon only).
    pub rss_at_start: Option<u64>,
    /// Ours, when we started it (kept alive with the target). The daemon
    /// comes first so it stops before its home is deleted.
    own: Option<(Daemon, Sandbox)>,
}

impl Target {
    /// A `credcache` command that talks to this daemon, and never starts one.
    pub fn client(&self, bins: &Bins) -> Command {
        match &self.own {
            Some((_, home)) => home.command_for(&bins.client),
            None => {
                let mut command = Command::new(&bins.client);
                command
                    .env("CREDCACHE_SOCKET", &self.socket)
                    .env("CREDCACHE_NO_AUTOSTART", "1");
                command
            }
        }
    }

    pub fn rss_kb(&self) -> Option<u64> {
        procfs::rss_kb(self.pid)
    }

    /// The environment the client gets, for the `cat` run to match.
    pub fn env(&self, bins: &Bins) -> Vec<(OsString, OsString)> {
        let command = self.client(bins);
        command
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
            .collect()
    }
}

/// A home whose cache holds `tokens` tokens, its daemon stopped.
pub struct Loaded {
    pub home: Sandbox,
    pub tokens: usize,
    /// Fetching them all through one daemon.
    pub fetch: lab::PoolResult,
    pub rss_with_tokens_kb: Option<u64>,
    pub anon_with_tokens_kb: Option<u64>,
    pub threads_with_tokens: Option<u64>,
    pub rss_restarted_kb: Option<u64>,
    pub anon_restarted_kb: Option<u64>,
    pub cache_bytes: u64,
}

impl Bench {
    pub fn new(plan: Plan) -> anyhow::Result<Bench> {
        let mut bins = Bins::find()?;
        if let Some(client) = &plan.client {
            // Absolute: kubeconfigs name it, and kubectl resolves a
            // relative command against the kubeconfig's directory.
            bins.client = std::path::absolute(client)
                .with_context(|| format!("--client {}", client.display()))?;
            if !bins.client.is_file() {
                bail!("--client {}: no such file", client.display());
            }
        }
        let lab = match plan.socket {
            Some(_) => None,
            None => Some(Lab::start(bins.clone())?),
        };
        Ok(Bench {
            plan,
            bins,
            lab,
            target: None,
            loaded: None,
            rss_after_throughput: None,
            violations: Vec::new(),
        })
    }

    /// Prints a result line at once (a long run shows progress).
    pub fn emit(&mut self, line: Line) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", line.to_json());
        let _ = out.flush();
    }

    pub fn violation(&mut self, what: String) {
        eprintln!("credcache-bench: {what}");
        self.violations.push(what);
    }

    pub fn lab(&self) -> anyhow::Result<&Lab> {
        self.lab
            .as_ref()
            .context("this scenario needs its own emulator (not --socket)")
    }

    /// The daemon the cached gets go to, set up on first use: ours (one
    /// Google credential, fetched once) or the one at `--socket`.
    pub fn target(&mut self) -> anyhow::Result<&Target> {
        if self.target.is_none() {
            let target = match &self.lab {
                Some(lab) => own_target(lab)?,
                None => foreign_target(&self.plan)?,
            };
            self.target = Some(target);
        }
        self.target.as_ref().context("no target")
    }

    /// The emulator and the target daemon together (ours: set up on first
    /// use).
    pub fn lab_and_target(&mut self) -> anyhow::Result<(&Lab, &Target)> {
        self.target()?;
        let target = self.target.as_ref().context("no target")?;
        Ok((self.lab()?, target))
    }

    /// Makes the home with many cached tokens, unless made already.
    pub fn make_loaded(&mut self) -> anyhow::Result<()> {
        if self.loaded.is_none() {
            let loaded = make_loaded(self.lab()?, self.plan.tokens)?;
            if loaded.fetch.errors > 0 {
                let why = loaded.fetch.first_error.clone().unwrap_or_default();
                self.violation(format!(
                    "{} of {} tokens could not be fetched: {why}",
                    loaded.fetch.errors, loaded.tokens
                ));
            }
            self.loaded = Some(loaded);
        }
        Ok(())
    }

    /// The home with many cached tokens, once made.
    pub fn loaded(&self) -> Option<&Loaded> {
        self.loaded.as_ref()
    }

    /// Runs the plan's scenarios; whether every promise held.
    pub fn run_all(&mut self) -> bool {
        for scenario in self.plan.scenarios.clone() {
            if self.plan.socket.is_some() && !scenario.works_on_foreign_daemon() {
                self.emit(Line::skipped(
                    scenario.name(),
                    "needs its own daemon and the emulator (run without --socket)",
                ));
                continue;
            }
            eprintln!("credcache-bench: {}", scenario.name());
            let outcome = match scenario {
                Scenario::Client => client::run(self),
                Scenario::Throughput => throughput::run(self),
                Scenario::Cold => cold::run(self),
                Scenario::Memory => memory::run(self),
                Scenario::Startup => startup::run(self),
                Scenario::Soak => soak::run(self),
                Scenario::Peers => peers::run(self),
            };
            if let Err(e) = outcome {
                let why = format!("{e:#}");
                let mut line = Line::new(scenario.name()).with("failed", why.clone());
                line.errors = 1;
                self.emit(line);
                self.violation(format!("{} failed: {why}", scenario.name()));
            }
        }
        // Stop our daemons before the emulator goes.
        self.target = None;
        self.violations.is_empty()
    }
}

fn own_target(lab: &Lab) -> anyhow::Result<Target> {
    let (home, daemon) = lab.daemon(&lab.cached_config())?;
    let rss_at_start = daemon.rss_kb();
    let mut conn = Conn::open(&daemon.socket).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    conn.get(&get_frame(lab::CACHED))
        .map_err(|e| anyhow::anyhow!("cannot fetch the first token: {}", e.message()))?;
    Ok(Target {
        socket: daemon.socket.clone(),
        pid: daemon.pid,
        name: lab::CACHED.to_owned(),
        rss_at_start,
        own: Some((daemon, home)),
    })
}

/// The daemon at `--socket`, and the credential to ask it for: `--name`,
/// or the first one it lists as fresh.
fn foreign_target(plan: &Plan) -> anyhow::Result<Target> {
    let socket = plan.socket.clone().context("no --socket")?;
    let mut conn = Conn::open(&socket).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    let name = match &plan.name {
        Some(name) => name.clone(),
        None => match conn.request(&Request::List { after: None }) {
            Ok(Response::Credentials(page)) => page
                .credentials
                .into_iter()
                .find(|c| c.state == CredentialState::Fresh)
                .map(|c| c.name)
                .context("the daemon has no fresh token: name one with --name")?,
            Ok(_) => bail!("unexpected answer to List"),
            Err(e) => bail!("cannot list credentials: {}", e.message()),
        },
    };
    conn.get(&get_frame(&name))
        .map_err(|e| anyhow::anyhow!("cannot get {name}: {}", e.message()))?;
    Ok(Target {
        socket,
        pid: conn.pid,
        name,
        rss_at_start: None,
        own: None,
    })
}

fn make_loaded(lab: &Lab, tokens: usize) -> anyhow::Result<Loaded> {
    eprintln!("credcache-bench: caching {tokens} tokens");
    let (home, daemon) = lab.daemon(&lab.clusters_config(tokens))?;
    let fetch = lab::get_all(&daemon.socket, &lab::cluster_names(tokens));
    let rss_with_tokens_kb = daemon.rss_kb();
    let anon_with_tokens_kb = daemon.rss_anon_kb();
    let threads_with_tokens = daemon.threads();
    daemon.stop()?;
    let cache_bytes = procfs::tree_bytes(&home.data.join("cache"));
    let again = home::start_daemon(&home, &lab.bins)?;
    // The tokens in memory: the daemon reads its cache after `ready`.
    again.cache_read_after()?;
    let rss_restarted_kb = again.rss_kb();
    let anon_restarted_kb = again.rss_anon_kb();
    again.stop()?;
    Ok(Loaded {
        home,
        tokens,
        fetch,
        rss_with_tokens_kb,
        anon_with_tokens_kb,
        threads_with_tokens,
        rss_restarted_kb,
        anon_restarted_kb,
        cache_bytes,
    })
}
