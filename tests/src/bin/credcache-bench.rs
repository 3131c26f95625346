//! `credcache-bench`: benchmarks of credcache against the bundled cloud
//! emulator; see `credcache_tests::bench` and BENCHMARKS.md.
//!
//! ```text
//! cargo build --release -p credcache-tests -p credcache -p credcache-daemon
//! target/release/credcache-bench [--quick] [--only SCENARIO,...] [--clients N,...]
//!     [--duration SECS] [--credentials K,...] [--tokens N] [--runs N] [--socket PATH [--name NAME]]
//! ```
//!
//! Exit status: 0 when every scenario ran and every promise held (no
//! expired token served, the expected number of upstream calls), 1
//! otherwise, 2 for a usage error. Timings never fail a run.

use std::process::ExitCode;

/// The benchmark drives the daemon over Unix sockets with epoll and reads
/// /proc.
#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    eprintln!("credcache-bench: runs on Linux only (epoll on the daemon's Unix socket, /proc)");
    ExitCode::from(2)
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    use clap::Parser as _;
    use credcache_tests::bench::Bench;
    use credcache_tests::bench::args::Cli;

    let plan = match Cli::parse().plan() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("credcache-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let mut bench = match Bench::new(plan) {
        Ok(bench) => bench,
        Err(e) => {
            eprintln!("credcache-bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if bench.run_all() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
