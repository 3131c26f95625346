//! `credcache`: the thin, synchronous client of the `credcached` daemon.
//!
//! It parses the command line, connects to the daemon (starting it when
//! nobody answers), sends one or a few requests, prints the answer in the
//! shape the caller needs, and exits with a code from [`exit`]. It runs on
//! every `kubectl` call, so it does nothing heavy before connecting.
//!
//! **Architecture invariants:** no async runtime and no HTTP stack here
//! (every cloud call is the daemon's job); token values reach stdout or a
//! child's environment only, never stderr, argv or an error message.

mod cli;
mod commands;
mod connect;
#[cfg(test)]
mod docs_check;
mod exit;
mod fast_get;
mod format;
mod output;
mod replace_file;
mod sys;

use std::process::ExitCode;

use crate::cli::{Cli, Command, Parsed};
use crate::connect::Endpoint;
use crate::exit::Error;

fn main() -> ExitCode {
    // `get NAME ...` from a running daemon, without building clap's tree.
    let outcome = match fast_get::run(std::env::args_os()) {
        Some(done) => done.map(|()| exit::OK),
        None => cli::parse().and_then(|parsed| match parsed {
            Parsed::Run(cli) => run(cli),
            Parsed::Exit(code) => Ok(code),
        }),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            err.report();
            ExitCode::from(err.exit_code())
        }
    }
}

/// Runs a command; `Ok` carries the exit code (only `exec` passes on a
/// code other than 0).
fn run(cli: Cli) -> Result<u8, Error> {
    let config_flag = cli.config;
    let endpoint = || Endpoint::from_env(config_flag.clone());
    match cli.command {
        Command::Get(args) => commands::get::run(&endpoint()?, &args).map(|()| exit::OK),
        Command::Exec(args) => commands::exec::run(&endpoint()?, args),
        Command::List(args) => commands::list::run(&endpoint()?, &args).map(|()| exit::OK),
        Command::Status(args) => commands::status::run(&endpoint()?, &args).map(|()| exit::OK),
        Command::Refresh(args) => commands::refresh::run(&endpoint()?, &args).map(|()| exit::OK),
        Command::Watch(args) => commands::watch::run(&endpoint()?, &args).map(|()| exit::OK),
        Command::Forget(args) => commands::forget::run(&endpoint()?, &args).map(|()| exit::OK),
        Command::Config(command) => {
            commands::config::run(&endpoint()?, &command).map(|()| exit::OK)
        }
        Command::Daemon(command) => {
            commands::daemon::run(&endpoint()?, &command).map(|()| exit::OK)
        }
        Command::GitCredential(args) => commands::git_credential::run(&endpoint()?, &args),
        Command::DockerCredential(args) => commands::docker_credential::run(&endpoint()?, &args),
        Command::Completions(args) => commands::completions::run(&args).map(|()| exit::OK),
        Command::Kubeconfig(args) => {
            commands::kubeconfig::run(&endpoint()?.paths, config_flag.as_deref(), &args)
                .map(|()| exit::OK)
        }
        Command::Man(args) => commands::man::run(&args).map(|()| exit::OK),
    }
}
