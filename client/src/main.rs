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
//!
//! The binary has its own C `main` (`#![no_main]`): std's runtime set-up
//! is a quarter of a cached `get`, and [`start`] does the part of it that
//! the client needs.

// Tests keep the harness's own `main`; Windows keeps std's (its start-up
// is cheap there, and the C runtime's `main` is not the entry point).
#![cfg_attr(all(unix, not(test)), no_main)]

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
mod start;
mod sys;

use crate::cli::{Cli, Command, Parsed};
use crate::connect::Endpoint;
use crate::exit::Error;

/// The process's entry point, called by the C runtime.
#[cfg(all(unix, not(test)))]
#[unsafe(no_mangle)]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    start::init();
    let code = run_main();
    start::finish();
    code.into()
}

/// The test harness brings its own entry point and keeps this one only so
/// that what it calls is not dead code. On Windows it is the entry point.
#[cfg(any(test, windows))]
fn main() {
    start::init();
    let code = run_main();
    start::finish();
    std::process::exit(code.into());
}

fn run_main() -> u8 {
    // `get NAME ...` from a running daemon, without building clap's tree.
    let outcome = match fast_get::run(std::env::args_os()) {
        Some(done) => done.map(|()| exit::OK),
        None => cli::parse().and_then(|parsed| match parsed {
            Parsed::Run(cli) => run(cli),
            Parsed::Exit(code) => Ok(code),
        }),
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            err.report();
            err.exit_code()
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
        Command::SdkEnv(args) => commands::sdk_env::run(&endpoint()?, &args).map(|()| exit::OK),
        Command::List(args) => commands::list::run(&endpoint()?, &args).map(|()| exit::OK),
        Command::Status(args) => commands::status::run(&endpoint()?, &args).map(|()| exit::OK),
        Command::Refresh(args) => commands::refresh::run(&endpoint()?, &args).map(|()| exit::OK),
        Command::Watch(args) => commands::watch::run(&endpoint()?, &args).map(|()| exit::OK),
        Command::Forget(args) => commands::forget::run(&endpoint()?, &args).map(|()| exit::OK),
        Command::Login(args) => commands::login::run(&endpoint()?, &args).map(|()| exit::OK),
        Command::Logout(args) => commands::logout::run(&endpoint()?, &args).map(|()| exit::OK),
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
