//! `credcache status [--json]`: the daemon's version, pid, uptime, paths
//! and config error, then every credential's state, last refresh and last
//! error.

use chrono::Utc;
use credcache_shared::protocol::{DaemonStatus, Request, Response};

use crate::connect::{self, Autostart, Connection, Endpoint};
use crate::exit::Error;
use crate::format;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(endpoint: &Endpoint, args: &Args) -> Result<(), Error> {
    let mut conn = endpoint.connect(Autostart::IfAllowed)?;
    let status = fetch(&mut conn)?;
    let text = if args.json {
        format::report::status_json(&status)?
    } else {
        format::report::status_text(&status, Utc::now())
    };
    output::stdout(&text)
}

/// Asks the daemon for its status (also used by `daemon status`).
pub fn fetch(conn: &mut Connection) -> Result<DaemonStatus, Error> {
    let context = "cannot get the daemon's status";
    let mut status = match conn.call(&Request::Status, context)? {
        Response::Status(status) => *status,
        other => return Err(connect::unexpected(&other)),
    };
    if let Some(after) = status.more_after.take() {
        let rest = conn.list_from(Some(after), context)?;
        status.credentials.extend(rest);
    }
    Ok(status)
}
