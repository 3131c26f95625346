//! `credcache exec NAME[,NAME...] -- COMMAND [ARGS...]`: runs a command
//! with each token in its credential's `env_var`, and exits as it does.
//!
//! Tokens go in the environment only, never in argv (which any local user
//! can read from `ps`). The client waits for the child rather than exec'ing
//! it so the exit code can be reported the way shells do (128 + signal).
//! While it waits, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2
//! sent to the client are forwarded to the child (a supervisor that stops
//! `credcache exec` stops the program); Ctrl-C at a terminal reaches the
//! child directly and is not sent twice ([`sys::SignalForwarding`]).

use std::ffi::OsString;
use std::process::Command;

use credcache_shared::Secret;

use crate::commands::{get, sdk_env};
use crate::connect::{Autostart, Endpoint};
use crate::exit::Error;
use crate::format;
use crate::sys;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Credentials whose tokens to pass, comma-separated.
    #[arg(
        value_name = "NAME[,NAME...]",
        value_delimiter = ',',
        action = clap::ArgAction::Set,
        num_args = 1,
        required = true
    )]
    pub names: Vec<String>,

    /// Also set the variables that point cloud SDKs at the daemon
    /// (`credcache sdk-env`), for the google and azure credentials named.
    #[arg(long)]
    pub sdk: bool,

    /// The command to run, after `--`.
    #[arg(value_name = "COMMAND", last = true, required = true, num_args = 1..)]
    pub command: Vec<OsString>,
}

pub fn run(endpoint: &Endpoint, args: Args) -> Result<u8, Error> {
    sdk_env::check_names(&args.names)?;
    let mut env: Vec<(String, Secret)> = Vec::with_capacity(args.names.len());
    let mut sdk_vars = Vec::new();
    {
        let mut conn = endpoint.connect(Autostart::IfAllowed)?;
        if args.sdk {
            sdk_vars = sdk_env::variables(&mut conn, &args.names, false)?;
        }
        for name in &args.names {
            let reply = get::fetch(&mut conn, name, None, false)?;
            format::check_env_var(name, &reply.env_var)?;
            env.push((reply.env_var.to_string(), reply.token.clone()));
        }
        // The connection closes here: the daemon need not keep it open for
        // as long as the child runs.
    }

    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| Error::Usage("no command to run after `--`".into()))?;
    let mut command = Command::new(program);
    command.args(rest);
    for (var, value) in &sdk_vars {
        command.env(var, value);
    }
    for (var, token) in &env {
        command.env(var, token.expose());
    }
    let signals = sys::SignalForwarding::install();
    let mut child = command
        .spawn()
        .map_err(|e| Error::Other(format!("cannot run {}: {e}", program.to_string_lossy())))?;
    signals.forward_to(child.id());
    drop(env);
    let status = child.wait().map_err(|e| {
        Error::Other(format!(
            "cannot wait for {}: {e}",
            program.to_string_lossy()
        ))
    })?;
    Ok(sys::exit_code_of(status))
}
