//! `credcache get NAME`: one token, printed in the shape the caller needs
//! (raw, json, exec-credential for kubectl, env for `eval`, header for
//! curl). The hot path: one connect, `Hello`, `Get`, print.

use std::time::Duration;

use chrono::Utc;
use credcache_shared::protocol::{Request, Response, TokenReply};
use credcache_shared::time::DurationError;

use crate::connect::{self, Autostart, Connection, Endpoint};
use crate::exit::Error;
use crate::format::{self, Format};
use crate::output;

#[derive(Debug, PartialEq, Eq, clap::Args)]
pub struct Args {
    /// The credential, as named in the config (`credcache list` shows them).
    pub name: String,

    /// How to print the token.
    #[arg(long, value_enum, default_value_t = Format::Raw)]
    pub format: Format,

    /// The same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,

    /// Fail unless the token stays valid at least this long, e.g. `5m`
    /// (default: the credential's min_valid).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub min_valid: Option<Duration>,

    /// Fetch a new token even if the cached one is good.
    #[arg(long)]
    pub refresh: bool,

    /// A token for this scope instead of the configured ones (google and
    /// azure credentials; repeat for several). Cached apart.
    #[arg(
        long = "scope",
        value_name = "SCOPE",
        value_parser = clap::builder::NonEmptyStringValueParser::new()
    )]
    pub scopes: Vec<String>,
}

/// Durations as the config writes them (`90s`, `5m`); a bad one is a usage
/// error (exit 2), reported by clap naming the flag.
pub fn parse_duration(value: &str) -> Result<Duration, DurationError> {
    credcache_shared::time::parse_duration(value)
}

pub fn run(endpoint: &Endpoint, args: &Args) -> Result<(), Error> {
    let mut conn = endpoint.connect(Autostart::IfAllowed)?;
    print(&mut conn, args)
}

/// Asks for the token on a connection whose daemon has been checked
/// (`Endpoint::connect`, or the fast path) and prints it.
pub fn print(conn: &mut Connection, args: &Args) -> Result<(), Error> {
    let reply = fetch_scoped(conn, &args.name, &args.scopes, args.min_valid, args.refresh)?;
    let exec_info = std::env::var("KUBERNETES_EXEC_INFO").ok();
    let shape = if args.json { Format::Json } else { args.format };
    let text = format::token(&reply, shape, Utc::now(), exec_info.as_deref())?;
    output::stdout(&text)
}

/// Asks the daemon for one token; prints its warning (if any) on stderr.
pub fn fetch(
    conn: &mut Connection,
    name: &str,
    min_valid: Option<Duration>,
    refresh: bool,
) -> Result<TokenReply, Error> {
    fetch_scoped(conn, name, &[], min_valid, refresh)
}

/// [`fetch`] for `scopes` instead of the credential's own (none: its own).
pub fn fetch_scoped(
    conn: &mut Connection,
    name: &str,
    scopes: &[String],
    min_valid: Option<Duration>,
    refresh: bool,
) -> Result<TokenReply, Error> {
    let request = Request::Get {
        name: name.to_owned(),
        min_valid_secs: min_valid.map(whole_secs_up),
        refresh,
        scopes: scopes.to_vec(),
    };
    match conn.call(&request, &format!("cannot get a token for {name}"))? {
        Response::Token(reply) => {
            if let Some(warning) = &reply.warning {
                output::warning(warning);
            }
            Ok(reply)
        }
        other => Err(connect::unexpected(&other)),
    }
}

/// Rounds up, so `--min-valid 500ms` asks for at least that, not zero.
fn whole_secs_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_valid_rounds_up_to_whole_seconds() {
        assert_eq!(whole_secs_up(Duration::from_secs(300)), 300);
        assert_eq!(whole_secs_up(Duration::from_millis(500)), 1);
        assert_eq!(whole_secs_up(Duration::ZERO), 0);
    }
}
