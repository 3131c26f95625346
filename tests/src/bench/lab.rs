//! The benchmark's own cloud: the emulator, one service-account key that
//! every home shares, the configs the scenarios need, and a pool of
//! connections that asks for many credentials at once.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tempfile::TempDir;

use super::conn::{Conn, get_frame};
use super::home::{self, Bins, Daemon};
use super::stats::Samples;
use crate::emulator::{Emulator, Endpoint};
use crate::sandbox::Sandbox;

/// The credential the cached-get scenarios ask for.
pub const CACHED: &str = "bench";
/// The Google identity the GKE credentials of `cold` and `memory` share.
pub const IDENTITY: &str = "id";

/// Connections the pool opens at most: below the daemon's cap of 256, so
/// that a pool never meets a refusal.
const POOL_CONNECTIONS: usize = 128;

pub struct Lab {
    pub emu: Emulator,
    pub bins: Bins,
    /// Holds the key file.
    dir: TempDir,
    pub key: PathBuf,
}

impl Lab {
    pub fn start(bins: Bins) -> anyhow::Result<Lab> {
        let emu = Emulator::start();
        let dir = tempfile::Builder::new()
            .prefix("ccbench-lab")
            .tempdir_in("/tmp")?;
        let key = dir.path().join("sa.json");
        emu.try_write_service_account_key(&key)
            .context("cannot write the service-account key")?;
        Ok(Lab {
            emu,
            bins,
            dir,
            key,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new home with `config`, and its daemon started.
    pub fn daemon(&self, config: &str) -> anyhow::Result<(Sandbox, Daemon)> {
        let home = home::new_home(&self.emu, config)?;
        let daemon = home::start_daemon(&home, &self.bins)?;
        Ok((home, daemon))
    }

    /// One Google credential, [`CACHED`].
    pub fn cached_config(&self) -> String {
        google(CACHED, &self.key, None)
    }

    /// A Google identity and `n` GKE cluster credentials `c0..` that use
    /// it: `n + 1` upstream calls to fetch them all.
    pub fn clusters_config(&self, n: usize) -> String {
        let mut config = google(IDENTITY, &self.key, None);
        let endpoint = self.emu.url();
        for i in 0..n {
            config.push_str(&format!(
                "\n[credentials.c{i}]\nkind = \"gke-cluster\"\nauth = \"{IDENTITY}\"\n\
                 cluster = \"projects/emu-project/locations/us-east4/azureClusters/c{i}\"\n\
                 endpoint = \"{endpoint}\"\n"
            ));
        }
        config
    }

    /// Upstream calls so far, every endpoint together.
    pub fn upstream_calls(&self) -> u64 {
        Endpoint::ALL.iter().map(|&e| self.emu.calls(e)).sum()
    }
}

/// The names of [`Lab::clusters_config`]'s clusters.
pub fn cluster_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c{i}")).collect()
}

/// A `google` credential on the key file, with its own scope if given.
pub fn google(name: &str, key: &Path, scope: Option<&str>) -> String {
    let mut text = format!(
        "[credentials.{name}]\nkind = \"google\"\nkey_file = {:?}\n",
        key.display().to_string()
    );
    if let Some(scope) = scope {
        text.push_str(&format!("scopes = [{scope:?}]\n"));
    }
    text
}

/// What a pool of gets measured.
#[derive(Debug, Default)]
pub struct PoolResult {
    pub samples: Samples,
    pub errors: u64,
    pub first_error: Option<String>,
    /// From the first request to the last answer.
    pub wall: Duration,
}

/// Asks for every credential in `names` once, over up to
/// [`POOL_CONNECTIONS`] connections at once.
pub fn get_all(socket: &Path, names: &[String]) -> PoolResult {
    let next = AtomicUsize::new(0);
    let errors = Mutex::new((0u64, None::<String>));
    let connections = names.len().clamp(1, POOL_CONNECTIONS);
    let started = Instant::now();
    let samples = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..connections)
            .map(|_| {
                scope.spawn(|| {
                    let mut samples = Samples::with_capacity(names.len() / connections + 1);
                    let fail = |why: String| {
                        let mut e = errors.lock().unwrap_or_else(|p| p.into_inner());
                        e.0 += 1;
                        e.1.get_or_insert(why);
                    };
                    let mut conn = match Conn::open(socket) {
                        Ok(c) => c,
                        Err(e) => {
                            fail(e.message().to_owned());
                            return samples;
                        }
                    };
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(name) = names.get(i) else { break };
                        let frame = get_frame(name);
                        let asked = Instant::now();
                        match conn.get(&frame) {
                            Ok(_) => samples.push(asked.elapsed()),
                            Err(e) => fail(format!("{name}: {}", e.message())),
                        }
                    }
                    samples
                })
            })
            .collect();
        let mut all = Samples::with_capacity(names.len());
        for worker in workers {
            if let Ok(s) = worker.join() {
                all.extend(s);
            }
        }
        all
    });
    let wall = started.elapsed();
    let (errors, first_error) = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    PoolResult {
        samples,
        errors,
        first_error,
        wall,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_pass_the_daemons_validator() {
        use credcache_shared::config::Config;
        let bins = Bins {
            client: PathBuf::from("credcache"),
            daemon: PathBuf::from("credcached"),
        };
        let lab = Lab::start(bins).unwrap();
        let path = Path::new("config.toml");
        let cached = Config::parse(&lab.cached_config(), path).unwrap();
        assert!(cached.credential(CACHED).is_some());
        let clusters = Config::parse(&lab.clusters_config(3), path).unwrap();
        for name in cluster_names(3) {
            assert_eq!(clusters.credential(&name).unwrap().auth(), Some(IDENTITY));
        }
        let scoped = google(
            "g",
            &lab.key,
            Some("https://www.googleapis.com/auth/compute"),
        );
        assert!(Config::parse(&scoped, path).is_ok(), "{scoped}");
        assert!(lab.clusters_config(1).contains(&lab.emu.url()));
    }
}
