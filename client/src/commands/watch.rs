//! `credcache watch NAME`: the current token as one JSON line (the shape of
//! `get --format json`), then one more line each time the daemon fetches a
//! new token, until interrupted. An IDE or a long-running tool subscribes
//! here instead of polling.

use chrono::Utc;
use credcache_shared::protocol::{Request, Response};

use crate::connect::{self, Autostart, Endpoint};
use crate::exit::Error;
use crate::format::{self, Format};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The credential to watch.
    pub name: String,
}

pub fn run(endpoint: &Endpoint, args: &Args) -> Result<(), Error> {
    let mut conn = endpoint.connect(Autostart::IfAllowed)?;
    conn.send(&Request::Watch {
        name: args.name.clone(),
    })?;
    loop {
        match conn.next()? {
            Some(Response::Token(reply)) => {
                let line = format::token(&reply, Format::Json, Utc::now(), None)?;
                output::stdout(&line)?;
            }
            Some(Response::Error(error)) => {
                return Err(Error::Daemon {
                    context: format!("cannot watch {}", args.name),
                    error,
                });
            }
            Some(other) => return Err(connect::unexpected(&other)),
            None => {
                return Err(Error::Unreachable(format!(
                    "the daemon stopped while watching {} (see `credcache daemon status`)",
                    args.name
                )));
            }
        }
    }
}
