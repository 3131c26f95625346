//! `credcache forget NAME | --all`: drop tokens from the daemon's memory and
//! its disk cache. Returns when they are gone.

use credcache_shared::protocol::Request;

use crate::commands::refresh;
use crate::connect::Endpoint;
use crate::exit::Error;

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
    let request = Request::Forget { name: name.clone() };
    refresh::act(endpoint, name, request, ("forget", "forgot"))
}
