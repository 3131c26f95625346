//! The fast path of `credcache get`: the command line of a plain `get`
//! recognised without building clap's command tree, and the token fetched
//! from a running daemon.
//!
//! `credcache get NAME --format exec-credential` is what kubectl runs on
//! every call, so its start-up is the client's cost. clap builds the whole
//! tree of fifteen commands (with their help texts) before it parses a
//! word; for the forms [`parse`] knows, this module parses them itself and
//! then runs exactly what `commands::get` runs: the same directory check,
//! peer uid check, `Hello`, config-file check, deadlines, formats and
//! errors (it calls the same functions).
//!
//! Anything it does not know gives `None` and the normal path runs, with
//! clap's parsing and messages: help, `--version`, an unknown flag, a
//! repeated one, a bad value, a missing or second name, an argument that is
//! not UTF-8; and a daemon that does not answer (auto-start) or speaks
//! another protocol. Nothing but `Hello` has been sent to a daemon when it
//! falls back, so the normal path starts from scratch. A socket or daemon
//! that is refused (another user's) is reported here, with the error
//! `Endpoint::connect` gives, so it is connected to once. `fast_and_clap_agree` below
//! checks the parser against clap on every form of `get`.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::commands::get::{self, Args};
use crate::connect::{Endpoint, Probe};
use crate::exit::Error;
use crate::format::Format;

/// A `get` command line: the global `--config` and `get`'s own arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct Invocation {
    pub config: Option<PathBuf>,
    pub args: Args,
}

/// Runs `get` if the command line is one [`parse`] knows and a daemon of
/// this protocol answers; `None` when the normal path must run instead.
pub fn run(argv: impl IntoIterator<Item = OsString>) -> Option<Result<(), Error>> {
    let Invocation { config, args } = parse(argv)?;
    // A path that cannot be worked out is reported by the normal path.
    let endpoint = Endpoint::from_env(config).ok()?;
    match endpoint.probe() {
        Ok(Probe::Ready(mut conn)) => Some(
            endpoint
                .check_config(&conn)
                .and_then(|()| get::print(&mut conn, &args)),
        ),
        // An untrusted socket or daemon, a refused connection: the error
        // `Endpoint::connect` would report, without connecting again.
        Err(e) => Some(Err(e)),
        // Nobody answers (auto-start) or another protocol: the normal path
        // starts the daemon or says what to run.
        Ok(Probe::Down(_) | Probe::Mismatch(_)) => None,
    }
}

/// What a flag of `get` is, and whether it takes a value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flag {
    Config,
    Format,
    Json,
    MinValid,
    Refresh,
    Scope,
}

impl Flag {
    fn from_long(name: &str) -> Option<Self> {
        Some(match name {
            "config" => Self::Config,
            "format" => Self::Format,
            "json" => Self::Json,
            "min-valid" => Self::MinValid,
            "refresh" => Self::Refresh,
            "scope" => Self::Scope,
            _ => return None,
        })
    }

    fn takes_value(self) -> bool {
        matches!(
            self,
            Self::Config | Self::Format | Self::MinValid | Self::Scope
        )
    }
}

/// Recognises `credcache [--config P] get NAME [--format F | --json]
/// [--min-valid D] [--refresh] [--scope S]... [--config P] [--] ...` in
/// any order, each flag but `--scope` at most once, `--flag VALUE` or `--flag=VALUE`. `None` for
/// anything else, including everything clap would refuse.
pub fn parse(argv: impl IntoIterator<Item = OsString>) -> Option<Invocation> {
    let mut argv = argv.into_iter();
    let argv0 = argv.next()?;
    // `docker-credential-credcache` is another command (docker_credential::argv).
    if std::path::Path::new(&argv0).file_stem() == Some(docker_program()) {
        return None;
    }
    let mut config = None;
    let mut seen_get = false;
    let mut after_dashes = false;
    let mut name: Option<String> = None;
    let mut format: Option<Format> = None;
    let mut json = false;
    let mut min_valid = None;
    let mut refresh = false;
    let mut scopes = Vec::new();
    let mut seen: Vec<Flag> = Vec::new();

    while let Some(arg) = argv.next() {
        // clap refuses a non-UTF-8 NAME; a non-UTF-8 --config is left to it too.
        let arg = arg.into_string().ok()?;
        if !seen_get {
            // Before the command only the global `--config` is known here.
            match arg.as_str() {
                "get" => seen_get = true,
                // Once only; a `--config` after `get` overrides it, as in clap.
                _ if config.is_none() => {
                    config = Some(PathBuf::from(flag_value(&arg, Flag::Config, &mut argv)?));
                }
                _ => return None,
            }
            continue;
        }
        if after_dashes || !arg.starts_with('-') {
            // `-` alone is a value to clap; `--` after `--` a second NAME.
            if name.is_some() || arg.is_empty() {
                return None;
            }
            name = Some(arg);
            continue;
        }
        if arg == "--" {
            after_dashes = true;
            continue;
        }
        let long = arg.strip_prefix("--")?;
        let flag = Flag::from_long(long.split_once('=').map_or(long, |(n, _)| n))?;
        // `--scope` may repeat; every other flag is refused twice by clap.
        if seen.contains(&flag) && flag != Flag::Scope {
            return None;
        }
        seen.push(flag);
        match flag {
            Flag::Json | Flag::Refresh => {
                // `--json=true` and the like: clap's to judge.
                if long.contains('=') {
                    return None;
                }
                if flag == Flag::Json {
                    json = true;
                } else {
                    refresh = true;
                }
            }
            Flag::Config => config = Some(PathBuf::from(flag_value(&arg, flag, &mut argv)?)),
            Flag::Format => format = Some(parse_format(&flag_value(&arg, flag, &mut argv)?)?),
            Flag::Scope => scopes.push(flag_value(&arg, flag, &mut argv)?),
            Flag::MinValid => {
                min_valid = Some(get::parse_duration(&flag_value(&arg, flag, &mut argv)?).ok()?);
            }
        }
    }
    // `--format` and `--json` conflict, even `--format json --json`.
    if json && format.is_some() {
        return None;
    }
    Some(Invocation {
        config,
        args: Args {
            name: name?,
            format: format.unwrap_or(Format::Raw),
            json,
            min_valid,
            refresh,
            scopes,
        },
    })
}

/// The value of `arg` if it is `--NAME=VALUE`, or `--NAME` followed by a
/// VALUE; `None` if `arg` is another flag or the value is missing, empty or
/// looks like a flag (clap reports those).
fn flag_value(arg: &str, flag: Flag, rest: &mut impl Iterator<Item = OsString>) -> Option<String> {
    debug_assert!(flag.takes_value());
    let long = arg.strip_prefix("--")?;
    let value = match long.split_once('=') {
        Some((name, value)) => {
            (Flag::from_long(name)? == flag).then_some(())?;
            value.to_owned()
        }
        None => {
            (Flag::from_long(long)? == flag).then_some(())?;
            rest.next()?.into_string().ok()?
        }
    };
    (!value.is_empty() && !value.starts_with('-')).then_some(value)
}

/// `--format`'s values, spelled exactly as clap's `ValueEnum` spells them.
fn parse_format(value: &str) -> Option<Format> {
    Some(match value {
        "raw" => Format::Raw,
        "json" => Format::Json,
        "exec-credential" => Format::ExecCredential,
        "env" => Format::Env,
        "header" => Format::Header,
        _ => return None,
    })
}

fn docker_program() -> &'static std::ffi::OsStr {
    crate::commands::docker_credential::PROGRAM.as_ref()
}

#[cfg(test)]
mod tests;
