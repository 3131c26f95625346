//! `client`: what kubectl pays per command. Runs the whole `credcache get
//! NAME` process N times (the token is cached), and next to each run the
//! same for `cat` of a small file: the floor any process that prints a
//! token can reach. The two are interleaved so they see the same machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::report::Line;
use super::run::Bench;
use super::stats::{Samples, per_second, ratio};

/// Unmeasured runs of each first, so both binaries are in the page cache.
const WARM_UP: usize = 5;

pub fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let runs = bench.plan.client_runs;
    let bins = bench.bins.clone();
    bench.target()?;
    let calls_before = bench.lab.as_ref().map(|l| l.upstream_calls());
    let target = bench.target()?;
    let name = target.name.clone();
    let env = target.env(&bins);
    let client = || {
        let mut command = target.client(&bins);
        command.args(["get", &name]);
        command
    };
    let small_file = tempfile::NamedTempFile::new()?;
    std::fs::write(small_file.path(), format!("ya29.{}\n", "x".repeat(200)))?;
    let cat_program = find_on_path("cat").context("no `cat` on PATH")?;
    let cat = || {
        let mut command = Command::new(&cat_program);
        command.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
        command.arg(small_file.path());
        command
    };

    for _ in 0..WARM_UP {
        time(client())?;
        time(cat())?;
    }
    let mut client_samples = Samples::with_capacity(runs);
    let mut cat_samples = Samples::with_capacity(runs);
    let mut client_total = Duration::ZERO;
    let mut errors = 0u64;
    let mut first_error = None;
    for _ in 0..runs {
        match time(client()) {
            Ok(took) => {
                client_total += took;
                client_samples.push(took);
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(format!("{e:#}"));
            }
        }
        cat_samples.push(time(cat())?);
    }
    let rss = target.rss_kb();
    let client_bytes = std::fs::metadata(&bins.client).map(|m| m.len()).ok();
    let client_summary = client_samples.summary();
    let cat_summary = cat_samples.summary();
    let upstream = bench
        .lab
        .as_ref()
        .zip(calls_before)
        .map(|(lab, before)| lab.upstream_calls() - before);

    let mut line = Line::new("client").latency(client_summary);
    line.req_per_s = Some(per_second(
        client_summary.map_or(0, |s| s.count) as u64,
        client_total,
    ));
    line.rss_kb = rss;
    line.upstream_calls = upstream;
    line.errors = errors;
    let mut line = line
        .with("runs", runs)
        .with("credential", name)
        .with("client_bytes", client_bytes);
    if let (Some(c), Some(k)) = (client_summary, cat_summary) {
        line = line
            .with("cat_p50_us", k.p50_us)
            .with("cat_p99_us", k.p99_us)
            .with("cat_max_us", k.max_us)
            .with("ratio", ratio(c.p50_us, k.p50_us))
            .with("ratio_p99", ratio(c.p99_us, k.p99_us));
    }
    if let Some(e) = first_error {
        line = line.with("first_error", e);
    }
    bench.emit(line);
    Ok(())
}

/// Runs a command to completion with its output captured (as kubectl
/// captures a credential plugin's); how long it took, or why it failed.
fn time(mut command: Command) -> anyhow::Result<Duration> {
    command.stdin(Stdio::null());
    let started = Instant::now();
    let out = command.output().context("cannot run")?;
    let took = started.elapsed();
    if !out.status.success() || out.stdout.is_empty() {
        anyhow::bail!(
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

/// The first `program` on PATH, resolved once so that no run pays for the
/// lookup.
pub(super) fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cat_and_times_it() {
        let cat = find_on_path("cat").unwrap();
        assert!(cat.is_absolute());
        assert!(find_on_path("no-such-program-credcache").is_none());
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "tok\n").unwrap();
        let mut command = Command::new(&cat);
        command.arg(file.path());
        assert!(time(command).unwrap() > Duration::ZERO);
        let mut silent = Command::new(&cat);
        silent.arg("/dev/null");
        assert!(time(silent).is_err(), "no output is a failure");
    }
}
