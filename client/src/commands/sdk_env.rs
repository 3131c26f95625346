//! `credcache sdk-env NAME[,NAME...] [--shell SHELL] [--rotate]`: the
//! variables that point the cloud SDKs at the daemon's SDK endpoints
//! (docs/cloud-sdks.md), in the shape a shell, an IDE's env file or a
//! plugin reads. `exec --sdk` sets the same ones for its child.

use credcache_shared::protocol::{Request, Response, SdkEnv};

use crate::connect::{self, Autostart, Connection, Endpoint};
use crate::exit::Error;
use crate::format::shell_quote;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Credentials to serve, comma-separated: at most one azure and one
    /// google.
    #[arg(
        value_name = "NAME[,NAME...]",
        value_delimiter = ',',
        action = clap::ArgAction::Set,
        num_args = 1,
        required = true
    )]
    pub names: Vec<String>,

    /// How to print the variables.
    #[arg(long, value_enum, default_value_t = Shell::Sh)]
    pub shell: Shell,

    /// Replace the Azure endpoint's secret (IDENTITY_HEADER) first;
    /// programs holding the old one are refused from now on.
    #[arg(long)]
    pub rotate: bool,
}

/// The shapes `sdk-env` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// `export NAME='value'` (bash, zsh, dash).
    Sh,
    /// `set -gx NAME 'value'`.
    Fish,
    /// `$env:NAME = 'value'`.
    Powershell,
    /// `set "NAME=value"`.
    Cmd,
    /// `NAME=value`: VS Code's `envFile`, direnv's `dotenv`, docker `--env-file`.
    Dotenv,
    /// One JSON object, for IDE plugins.
    Json,
}

pub fn run(endpoint: &Endpoint, args: &Args) -> Result<(), Error> {
    check_names(&args.names)?;
    let mut conn = endpoint.connect(Autostart::IfAllowed)?;
    let vars = variables(&mut conn, &args.names, args.rotate)?;
    output::stdout(&render(&vars, args.shell)?)
}

/// A usage error for an empty name in the list.
pub fn check_names(names: &[String]) -> Result<(), Error> {
    match names.iter().position(String::is_empty) {
        Some(empty) => Err(Error::Usage(format!(
            "credential name {} in the list is empty (write NAME[,NAME...] without spaces or stray commas)",
            empty + 1
        ))),
        None => Ok(()),
    }
}

/// Asks the daemon to open the endpoints of `names`; their variables.
pub fn variables(
    conn: &mut Connection,
    names: &[String],
    rotate: bool,
) -> Result<Vec<(String, String)>, Error> {
    let request = Request::SdkEnv {
        names: names.to_vec(),
        rotate,
    };
    match conn.call(&request, "cannot open the SDK endpoints")? {
        Response::SdkEnv(env) => Ok(of(&env)),
        other => Err(connect::unexpected(&other)),
    }
}

/// The variables of contract section 6, in a fixed order.
fn of(env: &SdkEnv) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for e in &env.endpoints {
        let host = format!("127.0.0.1:{}", e.port);
        match e.kind.as_str() {
            "azure" => {
                vars.push((
                    "IDENTITY_ENDPOINT".into(),
                    format!("http://{host}/msi/token"),
                ));
                vars.push((
                    "IDENTITY_HEADER".into(),
                    env.identity_header.expose().to_owned(),
                ));
            }
            _ => {
                vars.push(("GCE_METADATA_HOST".into(), host.clone()));
                vars.push(("GCE_METADATA_IP".into(), host));
                if let Some(project) = &e.project {
                    vars.push(("GOOGLE_CLOUD_PROJECT".into(), project.clone()));
                }
            }
        }
    }
    vars
}

fn render(vars: &[(String, String)], shell: Shell) -> Result<String, Error> {
    if shell == Shell::Json {
        let map: serde_json::Map<String, serde_json::Value> = vars
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let mut text = serde_json::to_string_pretty(&map)
            .map_err(|e| Error::Other(format!("cannot write JSON: {e}")))?;
        text.push('\n');
        return Ok(text);
    }
    Ok(vars
        .iter()
        .map(|(k, v)| match shell {
            Shell::Sh => format!("export {k}={}\n", shell_quote(v)),
            Shell::Fish => format!("set -gx {k} {}\n", shell_quote(v)),
            Shell::Powershell => format!("$env:{k} = '{}'\n", v.replace('\'', "''")),
            Shell::Cmd => format!("set \"{k}={v}\"\n"),
            Shell::Dotenv | Shell::Json => format!("{k}={v}\n"),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use credcache_shared::Secret;
    use credcache_shared::protocol::SdkEndpoint;

    fn env() -> SdkEnv {
        SdkEnv {
            endpoints: vec![
                SdkEndpoint {
                    name: "corp".into(),
                    kind: "azure".into(),
                    port: 41000,
                    project: None,
                },
                SdkEndpoint {
                    name: "gcp".into(),
                    kind: "google".into(),
                    port: 41001,
                    project: Some("my-proj".into()),
                },
            ],
            identity_header: Secret::new("abc123"),
        }
    }

    #[test]
    fn every_shell_gets_the_same_variables() {
        let vars = of(&env());
        let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "IDENTITY_ENDPOINT",
                "IDENTITY_HEADER",
                "GCE_METADATA_HOST",
                "GCE_METADATA_IP",
                "GOOGLE_CLOUD_PROJECT"
            ]
        );
        let sh = render(&vars, Shell::Sh).unwrap();
        assert!(sh.contains("export IDENTITY_ENDPOINT='http://127.0.0.1:41000/msi/token'\n"));
        assert!(sh.contains("export GCE_METADATA_HOST='127.0.0.1:41001'\n"));
        let dotenv = render(&vars, Shell::Dotenv).unwrap();
        assert!(dotenv.contains("IDENTITY_HEADER=abc123\n"), "{dotenv}");
        let fish = render(&vars, Shell::Fish).unwrap();
        assert!(fish.contains("set -gx GOOGLE_CLOUD_PROJECT 'my-proj'\n"));
        let ps = render(&vars, Shell::Powershell).unwrap();
        assert!(ps.contains("$env:GCE_METADATA_IP = '127.0.0.1:41001'\n"));
        let cmd = render(&vars, Shell::Cmd).unwrap();
        assert!(cmd.contains("set \"IDENTITY_HEADER=abc123\"\n"));
        let json: serde_json::Value =
            serde_json::from_str(&render(&vars, Shell::Json).unwrap()).unwrap();
        assert_eq!(json["GCE_METADATA_HOST"], "127.0.0.1:41001");
        assert_eq!(json.as_object().unwrap().len(), 5);
    }
}
