//! `startup`: from spawning `credcached --detach` to its `ready PID` line
//! (printed once the socket listens), with an empty cache and with many
//! cached tokens, each started several times.

use anyhow::Context as _;

use super::home;
use super::lab::{self, Lab};
use super::report::Line;
use super::run::Bench;
use super::stats::Samples;
use crate::sandbox::Sandbox;

pub fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let runs = bench.plan.startup_runs;
    let line = {
        let lab = bench.lab()?;
        let empty = home::new_home(&lab.emu, &lab.clusters_config(0))?;
        measure(lab, &empty, 0, runs)?
    };
    bench.emit(line);
    bench.make_loaded()?;
    let (line, tokens) = {
        let loaded = bench.loaded().context("no home with cached tokens")?;
        let line = measure(bench.lab()?, &loaded.home, loaded.tokens, runs)?;
        (line, loaded.tokens)
    };
    let from_cache = line.extra.get("served_from_cache_after_start").cloned();
    bench.emit(line);
    if from_cache != Some(tokens.into()) {
        bench.violation(format!(
            "startup: of {tokens} cached tokens, {} were served from the cache after a restart",
            from_cache.unwrap_or_default()
        ));
    }
    Ok(())
}

/// Starts the daemon of `home` `runs` times, each timed to its `ready`
/// line and to its having read its cache back (`Daemon::cache_read_after`:
/// the daemon says ready first). After the last start, every
/// one of the `tokens` credentials is asked for, and must be answered
/// from the cache (no upstream call): the start really loaded them.
fn measure(lab: &Lab, home: &Sandbox, tokens: usize, runs: usize) -> anyhow::Result<Line> {
    let mut samples = Samples::with_capacity(runs);
    let mut cache_read = Samples::with_capacity(runs);
    let mut rss = None;
    let mut from_cache = None;
    for run in 1..=runs {
        let daemon = home::start_daemon(home, &lab.bins)?;
        samples.push(daemon.ready_after);
        cache_read.push(daemon.cache_read_after()?);
        rss = daemon.rss_kb();
        if run == runs && tokens > 0 {
            let before = lab.upstream_calls();
            let asked = lab::get_all(&daemon.socket, &lab::cluster_names(tokens));
            let served = asked.samples.len() as u64;
            if lab.upstream_calls() == before {
                from_cache = Some(served);
            } else {
                from_cache = Some(0);
            }
        }
        daemon.stop()?;
    }
    let mut line = Line::new("startup").latency(samples.summary());
    line.rss_kb = rss;
    let cache_read_p50_us = cache_read.summary().map(|s| s.p50_us.round() as u64);
    Ok(line
        .with("cache_read_p50_us", cache_read_p50_us)
        .with("tokens", tokens)
        .with("runs", runs)
        .with("served_from_cache_after_start", from_cache))
}
