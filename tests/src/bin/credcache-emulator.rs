//! `credcache-emulator`: the cloud emulator as a process, for benchmarks and
//! demos that cannot link it in.
//!
//! ```text
//! credcache-emulator serve [--port N] [--service-account PATH]... [--authorized-user PATH]...
//! credcache-emulator demo
//! ```
//!
//! `demo` runs the product against the emulator (see `credcache_tests::demo`).
//! `serve` writes the requested credential files, prints exactly one line
//! `listening on http://127.0.0.1:PORT` to stdout, then serves until SIGINT
//! or SIGTERM. Everything else is driven over `/__emulator/`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use credcache_tests::emulator::Emulator;

const USAGE: &str = "usage: credcache-emulator serve [--port N] [--service-account PATH]... [--authorized-user PATH]...\n       credcache-emulator demo";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => ServeArgs::parse(&args[1..]).and_then(serve),
        Some("demo") => credcache_tests::demo::run(),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(anyhow::anyhow!("unknown command '{other}'; {USAGE}")),
        None => Err(anyhow::anyhow!("a command is required; {USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("credcache-emulator: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The options of `serve`.
#[derive(Debug, Default)]
struct ServeArgs {
    port: u16,
    service_accounts: Vec<PathBuf>,
    authorized_users: Vec<PathBuf>,
}

impl ServeArgs {
    fn parse(args: &[String]) -> anyhow::Result<ServeArgs> {
        let mut parsed = ServeArgs::default();
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let mut value = || {
                args.next()
                    .with_context(|| format!("{flag} needs a value; {USAGE}"))
            };
            match flag.as_str() {
                "--port" => {
                    let text = value()?;
                    parsed.port = text
                        .parse()
                        .with_context(|| format!("--port: '{text}' is not a port number"))?;
                }
                "--service-account" => parsed.service_accounts.push(value()?.into()),
                "--authorized-user" => parsed.authorized_users.push(value()?.into()),
                other => bail!("unknown option '{other}'; {USAGE}"),
            }
        }
        Ok(parsed)
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let emulator = Emulator::start_on_port(args.port)
        .with_context(|| format!("failed to listen on 127.0.0.1:{}", args.port))?;
    for path in &args.service_accounts {
        emulator
            .try_write_service_account_key(path)
            .with_context(|| format!("failed to write service account key {}", path.display()))?;
    }
    for path in &args.authorized_users {
        emulator
            .try_write_authorized_user(path, None)
            .with_context(|| format!("failed to write authorized user file {}", path.display()))?;
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", emulator.url()).context("failed to write to stdout")?;
    stdout.flush().context("failed to flush stdout")?;
    drop(stdout);
    wait_for_shutdown_signal()?;
    drop(emulator);
    Ok(())
}

/// Blocks until SIGINT or (on Unix) SIGTERM.
fn wait_for_shutdown_signal() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start a signal runtime")?;
    runtime.block_on(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).context("failed to watch SIGTERM")?;
            tokio::select! {
                result = tokio::signal::ctrl_c() => result.context("failed to watch SIGINT"),
                _ = term.recv() => Ok(()),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c()
                .await
                .context("failed to watch Ctrl-C")
        }
    })
}
