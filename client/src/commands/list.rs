//! `credcache list [--json]`: the configured credentials with their kind,
//! state and time left; never a token.

use chrono::Utc;
use credcache_shared::protocol::{Request, Response};

use crate::connect::{self, Autostart, Endpoint};
use crate::exit::Error;
use crate::format;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(endpoint: &Endpoint, args: &Args) -> Result<(), Error> {
    let mut conn = endpoint.connect(Autostart::IfAllowed)?;
    let credentials = match conn.call(&Request::List, "cannot list credentials")? {
        Response::Credentials(credentials) => credentials,
        other => return Err(connect::unexpected(&other)),
    };
    let text = if args.json {
        format::report::credentials_json(&credentials)?
    } else {
        format::report::credentials_table(&credentials, Utc::now())
    };
    output::stdout(&text)
}
