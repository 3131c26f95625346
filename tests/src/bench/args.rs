//! The command line, and the plan it resolves to: which scenarios run, and
//! with how many clients, seconds, credentials and runs. `--quick` shrinks
//! every default so the whole run takes seconds (what CI runs); explicit
//! options still win over it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Benchmarks of credcache against the bundled cloud emulator. Prints one
/// JSON line per measurement on stdout; progress goes to stderr.
#[derive(Debug, Parser)]
#[command(name = "credcache-bench", version)]
pub struct Cli {
    /// Concurrent connections for `throughput` (comma-separated levels);
    /// the first level is also the number of `soak` clients.
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    pub clients: Option<Vec<usize>>,

    /// Seconds each `throughput` level measures, and the length of `soak`.
    /// Default: 5 for throughput, 600 for soak.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,

    /// Distinct credentials fetched at once by `cold` (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "K,...")]
    pub credentials: Option<Vec<usize>>,

    /// Cached tokens for the loaded `memory` and `startup` measurements.
    #[arg(long, value_name = "N")]
    pub tokens: Option<usize>,

    /// Sequential `credcache get` (and `cat`) processes in `client`.
    #[arg(long, value_name = "N")]
    pub runs: Option<usize>,

    /// Small numbers everywhere: a few seconds in total (for CI).
    #[arg(long)]
    pub quick: bool,

    /// Measure a daemon that is already running on this socket instead of
    /// starting the emulator and a daemon (only `client`, `throughput` and
    /// `memory` can run this way).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// The credential to ask for with `--socket` (default: the first one
    /// the daemon lists as fresh).
    #[arg(long, value_name = "NAME", requires = "socket")]
    pub name: Option<String>,

    /// The `credcache` client the `client` and `peers` scenarios time
    /// (default: the one beside the benchmark), e.g. the one
    /// `packaging/install.sh` installs.
    #[arg(long, value_name = "PATH")]
    pub client: Option<PathBuf>,

    /// Let the scheduler place `throughput`'s load generator and server
    /// (default: the server alone on one CPU, the generator on the others;
    /// a daemon given by `--socket` is never pinned).
    #[arg(long)]
    pub no_pin: bool,

    /// Run only these scenarios (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "SCENARIO,...")]
    pub only: Option<Vec<Scenario>>,
}

/// One benchmark scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Scenario {
    /// Whole-process `credcache get` against `cat` of a small file.
    Client,
    /// `credcache get` next to the tools it replaces (git, gcloud,
    /// gke-gcloud-auth-plugin, kubectl through each), where installed.
    Peers,
    /// Cached gets over C concurrent connections.
    Throughput,
    /// K distinct credentials fetched from the emulator at once.
    Cold,
    /// Daemon RSS: idle, after throughput, with many tokens; cache on disk.
    Memory,
    /// Daemon start to ready, empty and with many cached tokens.
    Startup,
    /// Minutes of gets with 5-second tokens and random upstream faults.
    Soak,
}

impl Scenario {
    /// Every scenario, in the order a full run takes them.
    pub const ALL: [Scenario; 7] = [
        Scenario::Client,
        Scenario::Peers,
        Scenario::Throughput,
        Scenario::Cold,
        Scenario::Memory,
        Scenario::Startup,
        Scenario::Soak,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Client => "client",
            Scenario::Throughput => "throughput",
            Scenario::Cold => "cold",
            Scenario::Memory => "memory",
            Scenario::Startup => "startup",
            Scenario::Soak => "soak",
            Scenario::Peers => "peers",
        }
    }

    /// Whether it can measure a daemon someone else started (`--socket`):
    /// the others need their own daemon and the emulator's controls.
    pub fn works_on_foreign_daemon(self) -> bool {
        matches!(
            self,
            Scenario::Client | Scenario::Throughput | Scenario::Memory
        )
    }
}

/// What to run, resolved from the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub scenarios: Vec<Scenario>,
    pub client_runs: usize,
    pub throughput_clients: Vec<usize>,
    pub throughput_duration: Duration,
    pub cold_credentials: Vec<usize>,
    pub tokens: usize,
    pub startup_runs: usize,
    pub soak_clients: usize,
    pub soak_duration: Duration,
    pub socket: Option<PathBuf>,
    pub name: Option<String>,
    pub client: Option<PathBuf>,
    /// Whether `throughput` pins the server and the generator (`--no-pin`).
    pub pin: bool,
    pub quick: bool,
}

/// The daemon's connection cap (`server::Limits::default`); more clients
/// than this would measure refusals, not gets.
pub const MAX_CLIENTS: usize = 256;

/// A command line whose numbers or combination make no run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("--clients {count}: must be 1 to {MAX_CLIENTS} (the daemon's connection cap)")]
    Clients { count: usize },
    #[error("--credentials: each count must be at least 1")]
    NoCredentials,
    #[error("--runs must be at least 1")]
    NoRuns,
    #[error("--duration must be more than 0")]
    NoDuration,
    #[error(
        "--only {scenario}: needs its own daemon and the emulator, so it cannot run with --socket"
    )]
    NeedsOwnDaemon { scenario: &'static str },
}

/// `--duration` that is not a usable number of seconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecsError {
    #[error("'{value}' is not a number of seconds")]
    NotANumber { value: String },
    #[error("'{value}' is not a usable duration")]
    Unusable { value: String },
}

impl Cli {
    /// Resolves defaults (full or `--quick`) and checks the numbers.
    pub fn plan(self) -> Result<Plan, PlanError> {
        let quick = self.quick;
        let only_given = self.only.is_some();
        let mut scenarios = self.only.unwrap_or_else(|| Scenario::ALL.to_vec());
        scenarios.sort();
        scenarios.dedup();
        let throughput_clients = self
            .clients
            .clone()
            .unwrap_or_else(|| pick(quick, vec![1, 16, 64, 256], vec![1, 16, 64]));
        for &c in &throughput_clients {
            if c == 0 || c > MAX_CLIENTS {
                return Err(PlanError::Clients { count: c });
            }
        }
        let cold_credentials = self
            .credentials
            .unwrap_or_else(|| pick(quick, vec![1, 100, 1000], vec![1, 10, 50]));
        if cold_credentials.contains(&0) {
            return Err(PlanError::NoCredentials);
        }
        let tokens = self.tokens.unwrap_or(pick(quick, 10_000, 200));
        let runs = self.runs.unwrap_or(pick(quick, 1000, 30));
        if runs == 0 {
            return Err(PlanError::NoRuns);
        }
        if let Some(d) = self.duration
            && d.is_zero()
        {
            return Err(PlanError::NoDuration);
        }
        if self.socket.is_some()
            && let Some(s) = scenarios.iter().find(|s| !s.works_on_foreign_daemon())
            && only_given
        {
            return Err(PlanError::NeedsOwnDaemon { scenario: s.name() });
        }
        // Never someone else's daemon (`pin.rs`).
        let pin = !self.no_pin && self.socket.is_none();
        Ok(Plan {
            scenarios,
            client_runs: runs,
            soak_clients: self
                .clients
                .as_ref()
                .and_then(|c| c.first().copied())
                .unwrap_or(pick(quick, 64, 16)),
            throughput_clients,
            throughput_duration: self.duration.unwrap_or(pick(
                quick,
                Duration::from_secs(5),
                Duration::from_millis(500),
            )),
            cold_credentials,
            tokens,
            startup_runs: pick(quick, 5, 2),
            soak_duration: self.duration.unwrap_or(pick(
                quick,
                Duration::from_secs(600),
                Duration::from_secs(4),
            )),
            socket: self.socket,
            name: self.name,
            client: self.client,
            pin,
            quick,
        })
    }
}

/// The full-run value, or the `--quick` one.
fn pick<T>(quick: bool, full: T, small: T) -> T {
    if quick { small } else { full }
}

/// Seconds as a decimal number (`0.5`, `600`).
fn parse_secs(value: &str) -> Result<Duration, SecsError> {
    let secs: f64 = value.parse().map_err(|_| SecsError::NotANumber {
        value: value.to_owned(),
    })?;
    Duration::try_from_secs_f64(secs).map_err(|_| SecsError::Unusable {
        value: value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A usage error from clap or a refused plan, as its message.
    fn plan(args: &[&str]) -> Result<Plan, Box<dyn std::error::Error>> {
        let argv = std::iter::once("credcache-bench").chain(args.iter().copied());
        Ok(Cli::try_parse_from(argv)?.plan()?)
    }

    #[test]
    fn full_defaults_are_the_issues_numbers() {
        let p = plan(&[]).unwrap();
        assert_eq!(p.scenarios, Scenario::ALL);
        assert_eq!(p.throughput_clients, [1, 16, 64, 256]);
        assert_eq!(p.throughput_duration, Duration::from_secs(5));
        assert_eq!(p.cold_credentials, [1, 100, 1000]);
        assert_eq!(p.tokens, 10_000);
        assert_eq!(p.client_runs, 1000);
        assert_eq!(p.soak_clients, 64);
        assert_eq!(p.soak_duration, Duration::from_secs(600));
        assert!(p.socket.is_none() && !p.quick);
        assert!(p.pin);
        assert!(!plan(&["--no-pin"]).unwrap().pin);
        assert!(!plan(&["--socket", "/tmp/s"]).unwrap().pin);
    }

    #[test]
    fn quick_shrinks_defaults_but_explicit_options_win() {
        let p = plan(&["--quick"]).unwrap();
        assert!(p.quick);
        assert_eq!(p.throughput_clients, [1, 16, 64]);
        assert_eq!(p.cold_credentials, [1, 10, 50]);
        assert!(p.soak_duration <= Duration::from_secs(5));
        let p = plan(&["--quick", "--duration", "2.5", "--credentials", "7"]).unwrap();
        assert_eq!(p.throughput_duration, Duration::from_millis(2500));
        assert_eq!(p.soak_duration, Duration::from_millis(2500));
        assert_eq!(p.cold_credentials, [7]);
    }

    #[test]
    fn lists_and_only() {
        let p = plan(&["--clients", "8,32", "--only", "soak,client,soak"]).unwrap();
        assert_eq!(p.throughput_clients, [8, 32]);
        assert_eq!(p.soak_clients, 8);
        assert_eq!(p.scenarios, [Scenario::Client, Scenario::Soak]);
        let p = plan(&["--tokens", "50", "--runs", "3"]).unwrap();
        assert_eq!((p.tokens, p.client_runs), (50, 3));
    }

    #[test]
    fn bad_numbers_are_refused() {
        for args in [
            &["--clients", "0"][..],
            &["--clients", "257"],
            &["--clients", "x"],
            &["--credentials", "0"],
            &["--runs", "0"],
            &["--duration", "0"],
            &["--duration", "-1"],
            &["--duration", "soon"],
            &["--only", "nope"],
            &["--name", "gcp"],
        ] {
            assert!(plan(args).is_err(), "{args:?} was accepted");
        }
    }

    #[test]
    fn a_foreign_daemon_runs_only_what_it_can() {
        let p = plan(&["--socket", "/tmp/s.sock", "--name", "gcp"]).unwrap();
        assert_eq!(
            p.socket.as_deref(),
            Some(std::path::Path::new("/tmp/s.sock"))
        );
        assert_eq!(p.name.as_deref(), Some("gcp"));
        let err = plan(&["--socket", "/tmp/s.sock", "--only", "cold"]).unwrap_err();
        assert!(
            err.to_string().contains("cannot run with --socket"),
            "{err}"
        );
        assert!(plan(&["--socket", "/tmp/s.sock", "--only", "memory"]).is_ok());
    }

    #[test]
    fn seconds_parse() {
        assert_eq!(parse_secs("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_secs("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_secs("1e400").is_err());
        assert!(parse_secs("NaN").is_err());
    }
}
