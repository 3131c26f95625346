//! `credcache refresh NAME | --all`: fetch anew now. Returns when the
//! daemon has done it, so a script can rely on the new token.

use credcache_shared::protocol::{Request, Response};

use crate::connect::{self, Autostart, Endpoint};
use crate::exit::Error;
use crate::output;

#[derive(Debug, clap::Args)]
#[group(id = "target", required = true, multiple = false)]
pub struct Args {
    /// The credential to refresh.
    pub name: Option<String>,

    /// Refresh every cached credential.
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
    let request = Request::Refresh { name: name.clone() };
    act(endpoint, name, request, ("refresh", "refreshed"))
}

/// Sends `refresh` or `forget` (`verbs`: present, past) for one credential
/// or, with `None`, all; returns once the daemon has done it. One name:
/// silence is success. All: one line says what it touched.
pub fn act(
    endpoint: &Endpoint,
    name: Option<String>,
    request: Request,
    (verb, done): (&str, &str),
) -> Result<(), Error> {
    let context = match &name {
        Some(name) => format!("cannot {verb} {name}"),
        None => format!("cannot {verb} the cached credentials"),
    };
    let mut conn = endpoint.connect(Autostart::IfAllowed)?;
    let affected = match conn.call(&request, &context)? {
        Response::Done { affected } => affected,
        other => return Err(connect::unexpected(&other)),
    };
    if name.is_none() {
        output::note(summary(done, &affected));
    }
    Ok(())
}

/// `refreshed 2 credentials: azure, gcp`, or `refreshed nothing`.
pub fn summary(verb: &str, affected: &[String]) -> String {
    match affected {
        [] => format!("{verb} nothing (no cached credentials)"),
        [one] => format!("{verb} 1 credential: {one}"),
        many => format!("{verb} {} credentials: {}", many.len(), many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        assert_eq!(
            summary("forgot", &[]),
            "forgot nothing (no cached credentials)"
        );
        assert_eq!(
            summary("refreshed", &["gcp".into()]),
            "refreshed 1 credential: gcp"
        );
        assert_eq!(
            summary("forgot", &["azure".into(), "gcp".into()]),
            "forgot 2 credentials: azure, gcp"
        );
    }
}
