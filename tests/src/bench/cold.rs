//! `cold`: K distinct credentials nobody has fetched yet, asked for at
//! once from a fresh daemon: K GKE cluster tokens that share one Google
//! identity, so exactly K + 1 upstream calls must be made (the identity
//! once, however many clusters wait for it). The CPU the daemon used
//! against the CPU this process used (the emulator plus the load
//! generator) says which side bounds the wall time.

use super::lab;
use super::procfs;
use super::report::Line;
use super::run::Bench;
use super::stats::{per_second, ratio};

pub fn run(bench: &mut Bench) -> anyhow::Result<()> {
    for k in bench.plan.cold_credentials.clone() {
        let lab = bench.lab()?;
        let (_home, daemon) = lab.daemon(&lab.clusters_config(k))?;
        let calls_before = lab.upstream_calls();
        let daemon_cpu_before = daemon.cpu_time();
        let own_cpu_before = procfs::own_cpu_time();
        let result = lab::get_all(&daemon.socket, &lab::cluster_names(k));
        let daemon_cpu = daemon
            .cpu_time()
            .zip(daemon_cpu_before)
            .map(|(a, b)| a.saturating_sub(b));
        let own_cpu = procfs::own_cpu_time()
            .zip(own_cpu_before)
            .map(|(a, b)| a.saturating_sub(b));
        let calls = lab.upstream_calls() - calls_before;
        let expected = k as u64 + 1;
        let rss = daemon.rss_kb();
        let fds = daemon.open_fds();
        let threads = daemon.threads();
        daemon.stop()?;

        let wall_ms = result.wall.as_secs_f64() * 1e3;
        let summary = result.samples.summary();
        let served = summary.map_or(0, |s| s.count) as u64;
        let mut line = Line::new("cold").latency(summary);
        line.req_per_s = Some(per_second(served, result.wall));
        line.rss_kb = rss;
        line.upstream_calls = Some(calls);
        line.errors = result.errors;
        let ms = |d: std::time::Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
        let mut line = line
            .with("credentials", k)
            .with("served", served)
            .with("wall_ms", (wall_ms * 10.0).round() / 10.0)
            .with("expected_upstream_calls", expected)
            .with("daemon_cpu_ms", daemon_cpu.map(ms))
            .with("emulator_and_bench_cpu_ms", own_cpu.map(ms))
            .with(
                "daemon_cpu_share",
                daemon_cpu
                    .zip(own_cpu)
                    .and_then(|(d, o)| ratio(d.as_secs_f64(), (d + o).as_secs_f64())),
            )
            .with("fds_after", fds)
            .with("threads_after", threads);
        if let Some(e) = &result.first_error {
            line = line.with("first_error", e.clone());
        }
        bench.emit(line);
        if calls != expected {
            bench.violation(format!(
                "cold {k}: {calls} upstream calls made, {expected} expected"
            ));
        }
        if result.errors > 0 {
            bench.violation(format!(
                "cold {k}: {} gets failed: {}",
                result.errors,
                result.first_error.unwrap_or_default()
            ));
        }
    }
    Ok(())
}
