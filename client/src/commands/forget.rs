//! `credcache forget NAME | --all`: drop tokens from the daemon's memory and
//! its disk cache. Returns when they are gone.

use credcache_shared::protocol::{Request, Response};

use crate::commands::refresh::summary;
use crate::connect::{self, Autostart, Endpoint};
use crate::exit::Error;
use crate::output;

#[derive(Debug, clap::Args)]
#[group(id = "target", required = true, multiple = false)]
pub struct Args {
    /// The credential to forget.
    pub name: Option<String>,

    /// Forget every cached token.
    #[arg(long)]
    pub all: bool,
}

impl Args {
    /// The credential named, or `None` for `--all`.
    pub fn target(&self) -> Option<String> {
        self.name.clone().filter(|_| !self.all)
    }
}

pub fn run(endpoint: &Endpoint, args: &Args) -> Result<(), Error> {
    let name = args.target();
    let context = match &name {
        Some(name) => format!("cannot forget {name}"),
        None => "cannot forget the cached credentials".to_owned(),
    };
    let mut conn = endpoint.connect(Autostart::IfAllowed)?;
    let affected = match conn.call(&Request::Forget { name: name.clone() }, &context)? {
        Response::Done { affected } => affected,
        other => return Err(connect::unexpected(&other)),
    };
    if name.is_none() {
        output::note(summary("forgot", &affected));
    }
    Ok(())
}
