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
    let context = match &name {
        Some(name) => format!("cannot refresh {name}"),
        None => "cannot refresh the cached credentials".to_owned(),
    };
    let mut conn = endpoint.connect(Autostart::IfAllowed)?;
    let affected = match conn.call(&Request::Refresh { name: name.clone() }, &context)? {
        Response::Done { affected } => affected,
        other => return Err(connect::unexpected(&other)),
    };
    // One name: silence is success. `--all`: say what it touched.
    if name.is_none() {
        output::note(summary("refreshed", &affected));
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
