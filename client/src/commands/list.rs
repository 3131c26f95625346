//! `credcache list [--json]`: the configured credentials with their kind,
//! state and time left; never a token.

use crate::connect::{Autostart, Endpoint};
use crate::exit::Error;
use crate::format;
use crate::output;
use chrono::Utc;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(endpoint: &Endpoint, args: &Args) -> Result<(), Error> {
    let mut conn = endpoint.connect(Autostart::IfAllowed)?;
    let credentials = conn.list_from(None, "cannot list credentials")?;
    let text = if args.json {
        format::report::credentials_json(&credentials)?
    } else {
        format::report::credentials_table(&credentials, Utc::now())
    };
    output::stdout(&text)
}
