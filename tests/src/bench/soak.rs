//! `soak`: minutes of gets against 5-second tokens while the emulator
//! misbehaves at random (500s, 429s with `Retry-After`, answers slower
//! than `http_timeout`, connections cut off mid-body, bodies that are not
//! what they should be). Promises checked: no token handed out is expired
//! at the moment it arrives (by the daemon's expiry and by the emulator's
//! own record), the daemon's memory and descriptors do not grow, and the
//! upstream sees a bounded number of calls per token lifetime.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher as _, RandomState};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::conn::{Conn, Failure, get_frame};
use super::home::Daemon;
use super::lab::{self, Lab};
use super::report::Line;
use super::run::Bench;
use super::stats::{Samples, per_second};
use crate::emulator::{DEFAULT_LIFETIME_SECS, Endpoint, Fault};

/// Token lifetime the emulator issues during the soak.
const LIFETIME_SECS: u64 = 5;
/// The daemon's `http_timeout`: short, so a hung upstream costs seconds.
const HTTP_TIMEOUT_SECS: u64 = 2;
/// A "hung" answer comes this long after the request: past the timeout.
const HUNG_FOR: Duration = Duration::from_secs(HTTP_TIMEOUT_SECS + 1);
/// Each client pauses up to this long between gets (a busy workstation,
/// not a benchmark loop: the soak is about correctness over time).
const MAX_PAUSE_MS: u64 = 20;
/// A fault is queued every 0.5 to 2 seconds (about one upstream call in
/// three meets one).
const FAULT_GAP_MS: std::ops::RangeInclusive<u64> = 500..=2000;
/// How often memory and descriptors are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The credentials asked for: three Google tokens with different scopes
/// (three upstream calls per lifetime) and a GKE token on the first.
const CREDENTIALS: [&str; 4] = ["soak-a", "soak-b", "soak-c", "soak-gke"];

pub fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let duration = bench.plan.soak_duration;
    let clients = bench.plan.soak_clients;
    let lab = bench.lab()?;
    for endpoint in [Endpoint::GoogleToken, Endpoint::GkeToken] {
        lab.emu.set_lifetime(endpoint, LIFETIME_SECS);
    }
    let outcome = soak(lab, clients, duration);
    for endpoint in [Endpoint::GoogleToken, Endpoint::GkeToken] {
        lab.emu.clear_faults(endpoint);
        lab.emu.set_lifetime(endpoint, DEFAULT_LIFETIME_SECS);
    }
    let result = outcome?;
    let expired = result.expired + result.expired_by_upstream;
    let line = result.line(clients, duration);
    bench.emit(line);
    if expired > 0 {
        bench.violation(format!("soak: {expired} expired tokens were served"));
    }
    Ok(())
}

fn config(lab: &Lab) -> String {
    let scope = |s: &str| format!("https://www.googleapis.com/auth/{s}");
    format!(
        "[daemon]\nhttp_timeout = \"{HTTP_TIMEOUT_SECS}s\"\n\n{}\n{}\n{}\n\
         [credentials.soak-gke]\nkind = \"gke-cluster\"\nauth = \"soak-a\"\n\
         cluster = \"projects/emu-project/locations/us-east4/azureClusters/soak\"\n\
         endpoint = \"{}\"\n",
        lab::google("soak-a", &lab.key, Some(&scope("cloud-platform"))),
        lab::google("soak-b", &lab.key, Some(&scope("devstorage.read_only"))),
        lab::google("soak-c", &lab.key, Some(&scope("compute"))),
        lab.emu.url()
    )
}

/// Everything the soak counted.
#[derive(Default)]
struct Soaked {
    samples: Samples,
    served: u64,
    distinct: HashSet<u64>,
    /// Served with `expires_at` at or before the wall clock at receipt.
    expired: u64,
    /// Served although the emulator's record says it had expired.
    expired_by_upstream: u64,
    /// The least validity left on any token served, in milliseconds.
    min_left_ms: Option<i64>,
    errors: BTreeMap<&'static str, u64>,
    upstream_causes: BTreeMap<&'static str, u64>,
    /// The first message seen of each cause (the daemon's messages never
    /// carry a token).
    upstream_examples: BTreeMap<&'static str, String>,
    faults: BTreeMap<&'static str, u64>,
    upstream_calls: BTreeMap<&'static str, u64>,
    faulted_calls: u64,
    elapsed: Duration,
    rss: Gauge,
    fds: Gauge,
}

/// A quantity sampled over the run: first (after warm-up), last and peak.
#[derive(Default, Debug, Clone, Copy)]
struct Gauge {
    start: Option<u64>,
    end: Option<u64>,
    max: Option<u64>,
}

impl Gauge {
    fn sample(&mut self, value: Option<u64>) {
        let Some(v) = value else { return };
        self.start.get_or_insert(v);
        self.end = Some(v);
        self.max = Some(self.max.map_or(v, |m| m.max(v)));
    }
}

fn soak(lab: &Lab, clients: usize, duration: Duration) -> anyhow::Result<Soaked> {
    let (_home, daemon) = lab.daemon(&config(lab))?;
    // Warm-up: each credential fetched once, before any fault.
    let mut conn = Conn::open(&daemon.socket).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    for name in CREDENTIALS {
        conn.get(&get_frame(name))
            .map_err(|e| anyhow::anyhow!("{name}: {}", e.message()))?;
    }
    drop(conn);
    let mut soaked = Soaked::default();
    soaked.rss.sample(daemon.rss_kb());
    soaked.fds.sample(daemon.open_fds());
    let before: Vec<u64> = Endpoint::ALL.iter().map(|&e| lab.emu.calls(e)).collect();
    let log_from = Utc::now();
    let stop = AtomicBool::new(false);
    // One hasher for all clients, so that a token has one hash.
    let hasher = RandomState::new();
    let started = Instant::now();
    let deadline = started + duration;

    let (workers, faults) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|i| {
                let (socket, stop, hasher) = (&daemon.socket, &stop, &hasher);
                scope.spawn(move || client(socket, lab, stop, hasher, i as u64))
            })
            .collect();
        let injector = scope.spawn(|| inject(lab, &stop, deadline));
        monitor(&daemon, &mut soaked, &stop, deadline);
        stop.store(true, Ordering::Relaxed);
        let workers: Vec<Client> = workers.into_iter().filter_map(|w| w.join().ok()).collect();
        (workers, injector.join().unwrap_or_default())
    });
    soaked.elapsed = started.elapsed();
    soaked.rss.sample(daemon.rss_kb());
    soaked.fds.sample(daemon.open_fds());
    daemon.stop()?;

    soaked.faults = faults;
    for (i, &endpoint) in Endpoint::ALL.iter().enumerate() {
        let calls = lab.emu.calls(endpoint) - before[i];
        if calls > 0 {
            soaked.upstream_calls.insert(endpoint.name(), calls);
        }
    }
    soaked.faulted_calls = lab
        .emu
        .call_log()
        .iter()
        .filter(|c| c.at >= log_from && c.faulted)
        .count() as u64;
    for w in workers {
        soaked.samples.extend(w.samples);
        soaked.served += w.served;
        soaked.distinct.extend(w.distinct);
        soaked.expired += w.expired;
        soaked.expired_by_upstream += w.expired_by_upstream;
        soaked.min_left_ms = match (soaked.min_left_ms, w.min_left_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for (k, n) in w.errors {
            *soaked.errors.entry(k).or_default() += n;
        }
        for (k, n) in w.upstream_causes {
            *soaked.upstream_causes.entry(k).or_default() += n;
        }
        for (k, example) in w.upstream_examples {
            soaked.upstream_examples.entry(k).or_insert(example);
        }
    }
    Ok(soaked)
}

/// Samples the daemon's memory and descriptors until the deadline.
fn monitor(daemon: &Daemon, soaked: &mut Soaked, stop: &AtomicBool, deadline: Instant) {
    loop {
        let now = Instant::now();
        if now >= deadline || stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(SAMPLE_EVERY.min(deadline - now));
        soaked.rss.sample(daemon.rss_kb());
        soaked.fds.sample(daemon.open_fds());
    }
}

/// One client's tally.
#[derive(Default)]
struct Client {
    samples: Samples,
    served: u64,
    distinct: HashSet<u64>,
    expired: u64,
    expired_by_upstream: u64,
    min_left_ms: Option<i64>,
    errors: BTreeMap<&'static str, u64>,
    upstream_causes: BTreeMap<&'static str, u64>,
    upstream_examples: BTreeMap<&'static str, String>,
}

fn client(socket: &Path, lab: &Lab, stop: &AtomicBool, hasher: &RandomState, seed: u64) -> Client {
    let mut me = Client::default();
    let mut rng = fastrand::Rng::with_seed(seed);
    let frames: Vec<Vec<u8>> = CREDENTIALS.iter().map(|n| get_frame(n)).collect();
    let mut last_seen = [(0u64, None); CREDENTIALS.len()];
    let mut conn = None;
    while !stop.load(Ordering::Relaxed) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(socket) {
                Ok(c) => conn.insert(c),
                Err(failure) => {
                    *me.errors.entry(failure.kind()).or_default() += 1;
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            },
        };
        let which = rng.usize(..CREDENTIALS.len());
        let asked = Instant::now();
        let answer = c.get(&frames[which]);
        me.samples.push(asked.elapsed());
        let now = Utc::now();
        match answer {
            Ok(reply) => {
                me.served += 1;
                let left = (reply.expires_at - now).num_milliseconds();
                me.min_left_ms = Some(me.min_left_ms.map_or(left, |m| m.min(left)));
                if reply.expires_at <= now {
                    me.expired += 1;
                }
                let token = reply.token.expose();
                let hash = hasher.hash_one(token);
                let (seen, upstream_expiry) = &mut last_seen[which];
                if *seen != hash {
                    // A token new to this client: ask the emulator once
                    // when it really expires.
                    *seen = hash;
                    *upstream_expiry = lab.emu.token_info(token).map(|t| t.expires_at);
                    me.distinct.insert(hash);
                }
                if upstream_expiry.is_some_and(|at| at <= now) {
                    me.expired_by_upstream += 1;
                }
            }
            Err(failure) => {
                *me.errors.entry(failure.kind()).or_default() += 1;
                if let Failure::Daemon(_) = failure {
                    let cause = cause(failure.message());
                    *me.upstream_causes.entry(cause).or_default() += 1;
                    me.upstream_examples
                        .entry(cause)
                        .or_insert_with(|| failure.message().to_owned());
                } else {
                    conn = None;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.u64(0..=MAX_PAUSE_MS)));
    }
    me
}

/// The kinds of upstream misbehaviour injected.
const FAULTS: [&str; 9] = [
    "http_500",
    "http_429_retry_after",
    "hung_past_timeout",
    "cut_off_mid_body",
    "truncated_json",
    "html_502",
    "wrong_types",
    "missing_expiry",
    "empty_200",
];

fn fault(kind: &str, endpoint: Endpoint, rng: &mut fastrand::Rng) -> Fault {
    match kind {
        "http_500" => Fault::json(
            500,
            r#"{"error":{"code":500,"message":"Internal error encountered.","status":"INTERNAL"}}"#,
        ),
        "http_429_retry_after" => Fault::throttled(rng.u64(1..=3)),
        "hung_past_timeout" => Fault::html(504).delayed(HUNG_FOR),
        "cut_off_mid_body" => Fault::cut_off(),
        "truncated_json" => Fault::malformed_json(),
        "html_502" => Fault::html(502),
        "wrong_types" => Fault::wrong_types(endpoint),
        "missing_expiry" => Fault::missing_expiry(endpoint),
        _ => Fault::empty_body(200),
    }
}

/// Queues one random fault at a random endpoint every so often, until the
/// deadline; how many of each kind.
fn inject(lab: &Lab, stop: &AtomicBool, deadline: Instant) -> BTreeMap<&'static str, u64> {
    let mut rng = fastrand::Rng::new();
    let mut injected = BTreeMap::new();
    let mut next = Instant::now() + Duration::from_millis(rng.u64(FAULT_GAP_MS));
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if now < next {
            // Short naps, so that the end of the run is noticed soon.
            std::thread::sleep((next - now).min(Duration::from_millis(100)));
            continue;
        }
        let endpoint = if rng.bool() {
            Endpoint::GoogleToken
        } else {
            Endpoint::GkeToken
        };
        let kind = FAULTS[rng.usize(..FAULTS.len())];
        lab.emu
            .push_fault(endpoint, fault(kind, endpoint, &mut rng));
        *injected.entry(kind).or_default() += 1;
        next = now + Duration::from_millis(rng.u64(FAULT_GAP_MS));
    }
    injected
}

/// A coarse cause for an upstream error, from the daemon's message.
fn cause(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("retry-after") {
        "held_off_by_retry_after"
    } else if m.contains("http_timeout") || m.contains("timed out") {
        "timeout"
    } else if m.contains("answered 429") {
        "http_429"
    } else if m.contains("answered 5") {
        "http_5xx"
    } else if m.contains("unreadable body")
        || m.contains("no access_token")
        || m.contains("not a whole number")
        || m.contains("neither expires")
        || m.contains("no accesstoken")
        || m.contains("expir")
    {
        "bad_body"
    } else if m.contains("connect")
        || m.contains("closed")
        || m.contains("reset")
        || m.contains("eof")
    {
        "connection"
    } else {
        "other"
    }
}

impl Soaked {
    fn line(self, clients: usize, duration: Duration) -> Line {
        let lifetimes = self.elapsed.as_secs_f64() / LIFETIME_SECS as f64;
        let calls: u64 = self.upstream_calls.values().sum();
        let per_lifetime = if lifetimes > 0.0 {
            let per = calls as f64 / (lifetimes * CREDENTIALS.len() as f64);
            Some((per * 100.0).round() / 100.0)
        } else {
            None
        };
        let summary = self.samples.summary();
        let mut line = Line::new("soak").latency(summary);
        line.req_per_s = Some(per_second(
            summary.map_or(0, |s| s.count) as u64,
            self.elapsed,
        ));
        line.rss_kb = self.rss.end;
        line.upstream_calls = Some(calls);
        line.errors = self.errors.values().sum();
        let json = |v: &BTreeMap<&str, u64>| serde_json::to_value(v).unwrap_or_default();
        line.with("duration_s", duration.as_secs_f64())
            .with("clients", clients)
            .with("credentials", CREDENTIALS.len())
            .with("token_lifetime_s", LIFETIME_SECS)
            .with("tokens_served", self.served)
            .with("distinct_tokens_served", self.distinct.len())
            .with("expired_served", self.expired)
            .with("expired_served_by_upstream_clock", self.expired_by_upstream)
            .with("min_left_ms", self.min_left_ms)
            .with("longest_wait_ms", summary.map(|s| s.max_us / 1e3))
            .with("errors_by_kind", json(&self.errors))
            .with("upstream_errors_by_cause", json(&self.upstream_causes))
            .with(
                "upstream_error_examples",
                serde_json::to_value(&self.upstream_examples).unwrap_or_default(),
            )
            .with("faults_injected", json(&self.faults))
            .with("upstream_calls_by_endpoint", json(&self.upstream_calls))
            .with("upstream_calls_faulted", self.faulted_calls)
            .with("upstream_calls_per_token_lifetime", per_lifetime)
            .with("rss_start_kb", self.rss.start)
            .with("rss_end_kb", self.rss.end)
            .with("rss_max_kb", self.rss.max)
            .with("fds_start", self.fds.start)
            .with("fds_end", self.fds.end)
            .with("fds_max", self.fds.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_keep_first_last_and_peak() {
        let mut g = Gauge::default();
        g.sample(None);
        assert!(g.start.is_none());
        for v in [5, 9, 7] {
            g.sample(Some(v));
        }
        assert_eq!((g.start, g.end, g.max), (Some(5), Some(7), Some(9)));
    }

    #[test]
    fn every_fault_kind_builds() {
        let mut rng = fastrand::Rng::with_seed(1);
        for kind in FAULTS {
            let f = fault(kind, Endpoint::GkeToken, &mut rng);
            assert_eq!(f.times, Some(1), "{kind}");
        }
        assert!(fault("hung_past_timeout", Endpoint::GoogleToken, &mut rng).delay > Duration::ZERO);
        assert!(fault("cut_off_mid_body", Endpoint::GoogleToken, &mut rng).cut_off);
    }

    #[test]
    fn causes_from_messages() {
        assert_eq!(
            cause(
                "google token endpoint answered 429: TooManyRequests (not asking again for 2s, as Retry-After said)"
            ),
            "held_off_by_retry_after"
        );
        assert_eq!(cause("no answer within http_timeout (2s)"), "timeout");
        assert_eq!(
            cause("google token endpoint answered 500: INTERNAL"),
            "http_5xx"
        );
        assert_eq!(
            cause(
                "google token endpoint answered 200 with an unreadable body (truncated JSON, 17 bytes, at line 1 column 17)"
            ),
            "bad_body"
        );
        assert_eq!(
            cause("google token endpoint: unexpected EOF during chunk size line"),
            "connection"
        );
        assert_eq!(cause("something new"), "other");
    }

    #[test]
    fn the_config_passes_the_daemons_validator() {
        let bins = super::super::home::Bins {
            client: "credcache".into(),
            daemon: "credcached".into(),
        };
        let lab = Lab::start(bins).unwrap();
        let text = config(&lab);
        let parsed = credcache_shared::config::Config::parse(&text, Path::new("c.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        for name in CREDENTIALS {
            assert!(parsed.credential(name).is_some(), "{name}");
        }
    }
}
