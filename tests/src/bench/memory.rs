//! `memory`: the daemon's resident memory idle (started, nothing fetched),
//! with one token, after the throughput run, and with many tokens cached
//! (live after fetching them, and after a restart that loaded them from
//! disk); and the cache's size on disk.

use anyhow::Context as _;

use super::procfs;
use super::report::Line;
use super::run::Bench;
use super::throughput;

/// Without a throughput run before it, memory makes a short one itself.
const BURST_CLIENTS: usize = 64;

pub fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let own = bench.lab.is_some();
    let burst = bench
        .plan
        .throughput_duration
        .min(std::time::Duration::from_secs(1));
    let target = bench.target()?;
    let idle = target.rss_at_start;
    let now = target.rss_kb();
    let (socket, name, pid) = (target.socket.clone(), target.name.clone(), target.pid);
    let after_throughput = match bench.rss_after_throughput {
        Some(rss) => Some(rss),
        None => {
            throughput::measure(
                &socket,
                &name,
                pid,
                BURST_CLIENTS,
                burst,
                throughput::Wire::Credcache,
                false,
            );
            procfs::rss_kb(pid)
        }
    };
    let mut line = Line::new("memory");
    if !own {
        // Someone else's daemon: only what it uses now is known.
        line.rss_kb = now;
        bench.emit(line.with("rss_after_throughput_kb", after_throughput));
        return Ok(());
    }
    line.rss_kb = idle;
    bench.make_loaded()?;
    let loaded = bench.loaded().context("no home with cached tokens")?;
    let per_token = loaded
        .rss_with_tokens_kb
        .zip(idle)
        .map(|(with, idle)| (with.saturating_sub(idle) * 1024) / loaded.tokens.max(1) as u64);
    line.errors = loaded.fetch.errors;
    let line = line
        .with("rss_one_token_kb", now)
        .with("rss_after_throughput_kb", after_throughput)
        .with("tokens", loaded.tokens)
        .with("rss_tokens_kb", loaded.rss_with_tokens_kb)
        .with("threads_with_tokens", loaded.threads_with_tokens)
        .with("rss_tokens_restarted_kb", loaded.rss_restarted_kb)
        .with("rss_anon_tokens_kb", loaded.anon_with_tokens_kb)
        .with("rss_anon_tokens_restarted_kb", loaded.anon_restarted_kb)
        .with("bytes_per_token", per_token)
        .with("cache_bytes", loaded.cache_bytes)
        .with("fetch_all_ms", loaded.fetch.wall.as_millis() as u64);
    bench.emit(line);
    Ok(())
}
