//! `credcache logout NAME`: the daemon forgets the refresh token of a
//! signed-in credential and every token minted from it. The credential
//! then answers `get` with exit 5 until `credcache login NAME`.

use credcache_shared::protocol::{Request, Response};

use crate::connect::{self, Autostart, Endpoint};
use crate::exit::Error;
use crate::output;

#[derive(Debug, PartialEq, Eq, clap::Args)]
pub struct Args {
    /// The signed-in credential to log out.
    pub name: String,
}

pub fn run(endpoint: &Endpoint, args: &Args) -> Result<(), Error> {
    let mut conn = endpoint.connect(Autostart::IfAllowed)?;
    let request = Request::Logout {
        name: args.name.clone(),
    };
    match conn.call(&request, &format!("cannot log out {}", args.name))? {
        Response::Done { .. } => {
            output::note(format_args!("logged out: {}", args.name));
            Ok(())
        }
        other => Err(connect::unexpected(&other)),
    }
}
