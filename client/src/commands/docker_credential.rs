//! `docker-credential-credcache get|store|erase|list` (the `credcache`
//! binary under that name, usually a symlink) and
//! `credcache docker-credential …`: Docker's credential-helper protocol,
//! as docker-credential-helpers implements it, for the registries in
//! `[[docker]]`:
//!
//! ```json
//! { "credHelpers": { "us-docker.pkg.dev": "credcache" } }
//! ```
//!
//! - `get`: the server URL on stdin (`us-docker.pkg.dev`, or
//!   `https://us-docker.pkg.dev/v2/`); answers
//!   `{"ServerURL":…,"Username":…,"Secret":<token>}`.
//! - `erase`: the server URL on stdin; drops the entry's token from the
//!   cache, so the next `get` fetches a new one.
//! - `list`: `{"<registry>":"<username>"}` for every entry, globs as written.
//! - `store`: refused. These registries' credentials come from credcache,
//!   so `docker login` has nothing to store.
//! - `version`: the helper convention's version line.
//!
//! Docker reads only the helper's stdout (it runs it with `Output()`), so
//! every failure is written there, not on stderr: exactly
//! `credentials not found in native keychain` for a registry that matches
//! no entry (Docker tests for that string) and `no credentials server URL`
//! for empty input, each with exit 1; otherwise one line
//! `credcache: what happened: why` and the usual exit code.

use std::ffi::OsString;
use std::io::{self, Read};
use std::path::Path;

use credcache_shared::config::{Config, DockerHelper};
use credcache_shared::host_pattern::{self, Specificity, Target};
use credcache_shared::protocol::{Request, Response};
use serde::Serialize;

use crate::commands::get;
use crate::connect::{self, Autostart, Endpoint};
use crate::exit::{self, Error};
use crate::output;

/// The program name that selects this protocol.
pub const PROGRAM: &str = "docker-credential-credcache";
/// Docker's own words for "not mine"; it compares the helper's output to them.
pub const NOT_FOUND: &str = "credentials not found in native keychain";
/// The helpers' words for empty input.
pub const NO_SERVER_URL: &str = "no credentials server URL";
/// A server URL, or `store`'s small JSON object.
const MAX_INPUT: u64 = 64 * 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_enum, value_name = "ACTION")]
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    /// The credentials for the server URL on stdin.
    Get,
    /// Refused: these registries' credentials come from credcache.
    Store,
    /// Drop the cached token for the server URL on stdin.
    Erase,
    /// The configured registries and their user names.
    List,
    /// The helper's version.
    Version,
}

/// argv as `credcache` parses it: `docker-credential-credcache ARGS…`
/// becomes `credcache docker-credential ARGS…`.
pub fn argv(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let invoked_as_helper = args.first().is_some_and(|argv0| {
        let name = Path::new(argv0).file_stem().unwrap_or_default();
        name == PROGRAM
    });
    if invoked_as_helper {
        args.splice(0..1, ["credcache".into(), "docker-credential".into()]);
    }
    args
}

pub fn run(endpoint: &Endpoint, args: &Args) -> Result<u8, Error> {
    match serve(endpoint, args.action) {
        Ok(code) => Ok(code),
        Err(Error::BrokenPipe) => Ok(exit::OK),
        Err(err) => {
            let text: String = err
                .messages()
                .iter()
                .map(|m| format!("credcache: {m}\n"))
                .collect();
            // Docker shows the helper's stdout and nothing else.
            output::stdout(&text)?;
            Ok(err.exit_code())
        }
    }
}

/// A failure in Docker's own words, printed as it is.
fn refuse(message: &str) -> Result<u8, Error> {
    output::stdout(&format!("{message}\n"))?;
    Ok(exit::OTHER)
}

fn serve(endpoint: &Endpoint, action: Action) -> Result<u8, Error> {
    let load = || {
        Config::load(&endpoint.paths.config_file).map_err(|e| Error::Config(e.lines().collect()))
    };
    match action {
        Action::Version => {
            output::stdout(&format!(
                "{PROGRAM} (credcache) {}\n",
                env!("CARGO_PKG_VERSION")
            ))?;
            Ok(exit::OK)
        }
        Action::List => {
            output::stdout(&list(&load()?.docker)?)?;
            Ok(exit::OK)
        }
        Action::Store => {
            let input = read_stdin()?;
            let server = serde_json::from_str::<StoreInput>(&input)
                .ok()
                .map(|s| s.server_url)
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| "this registry".to_owned());
            Err(Error::Other(format!(
                "cannot store credentials for {server}: they come from credcache \
                 ([[docker]] in {}), so `docker login` is not needed",
                endpoint.paths.config_file.display()
            )))
        }
        Action::Get | Action::Erase => {
            let server_url = read_stdin()?;
            let server_url = server_url.trim();
            if server_url.is_empty() {
                return refuse(NO_SERVER_URL);
            }
            let config = load()?;
            let Some(entry) = server_target(server_url).and_then(|t| select(&config.docker, &t))
            else {
                return refuse(NOT_FOUND);
            };
            let mut conn = endpoint.connect(Autostart::IfAllowed)?;
            if action == Action::Get {
                let reply = get::fetch(&mut conn, &entry.credential, None, false)?;
                output::stdout(&get_answer(
                    server_url,
                    &entry.username,
                    reply.token.expose(),
                )?)?;
            } else {
                let name = entry.credential.clone();
                let context = format!("cannot forget {name} for docker");
                match conn.call(&Request::Forget { name: Some(name) }, &context)? {
                    Response::Done { .. } => {}
                    other => return Err(connect::unexpected(&other)),
                }
            }
            Ok(exit::OK)
        }
    }
}

fn read_stdin() -> Result<String, Error> {
    let mut input = Vec::new();
    io::stdin()
        .lock()
        .take(MAX_INPUT + 1)
        .read_to_end(&mut input)
        .map_err(|e| Error::Other(format!("cannot read Docker's request on stdin: {e}")))?;
    if input.len() as u64 > MAX_INPUT {
        return Err(Error::Other(format!(
            "cannot read Docker's request: it is over {MAX_INPUT} bytes"
        )));
    }
    Ok(String::from_utf8_lossy(&input).into_owned())
}

/// Where Docker connects: a server URL with or without scheme and path
/// (`us-docker.pkg.dev`, `https://us-docker.pkg.dev/v2/`). Without a
/// scheme it is https, as Docker assumes.
pub fn server_target(server_url: &str) -> Option<Target> {
    if server_url.contains("://") {
        Target::from_url(server_url)
    } else {
        Target::from_url(&format!("https://{server_url}"))
    }
}

/// The `[[docker]]` entry for this registry: an exact host over a glob,
/// then the first written.
pub fn select<'a>(entries: &'a [DockerHelper], target: &Target) -> Option<&'a DockerHelper> {
    host_pattern::best(entries, |e| {
        e.registry
            .matches(target)
            .then(|| Specificity::of(&e.registry, None))
    })
}

#[derive(serde::Deserialize)]
struct StoreInput {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Credentials<'a> {
    #[serde(rename = "ServerURL")]
    server_url: &'a str,
    username: &'a str,
    secret: &'a str,
}

/// `get`'s answer; the server URL as Docker sent it, as the reference
/// helpers do.
fn get_answer(server_url: &str, username: &str, secret: &str) -> Result<String, Error> {
    json_line(&Credentials {
        server_url,
        username,
        secret,
    })
}

/// `list`'s answer: each registry once, with the user name of the entry
/// that would answer for it.
fn list(entries: &[DockerHelper]) -> Result<String, Error> {
    let mut map = serde_json::Map::new();
    for entry in entries {
        map.entry(entry.registry.to_string())
            .or_insert_with(|| entry.username.clone().into());
    }
    json_line(&map)
}

fn json_line(value: &impl Serialize) -> Result<String, Error> {
    let mut text = serde_json::to_string(value)
        .map_err(|e| Error::Other(format!("cannot write JSON: {e}")))?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(registry: &str, credential: &str, username: &str) -> DockerHelper {
        DockerHelper {
            registry: registry.parse().unwrap(),
            credential: credential.into(),
            username: username.into(),
        }
    }

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn argv0_selects_the_docker_protocol() {
        assert_eq!(
            argv(os(&["/usr/local/bin/docker-credential-credcache", "get"])),
            os(&["credcache", "docker-credential", "get"])
        );
        assert_eq!(
            argv(os(&["docker-credential-credcache.exe", "list"])),
            os(&["credcache", "docker-credential", "list"])
        );
        assert_eq!(
            argv(os(&["credcache", "get", "gcp"])),
            os(&["credcache", "get", "gcp"])
        );
        assert_eq!(
            argv(os(&["docker-credential-gcloud", "get"])),
            os(&["docker-credential-gcloud", "get"])
        );
        assert_eq!(argv(Vec::new()), Vec::<OsString>::new());
    }

    #[test]
    fn server_urls_with_and_without_scheme_and_path() {
        for text in [
            "us-docker.pkg.dev",
            "US-Docker.pkg.dev",
            "https://us-docker.pkg.dev",
            "https://us-docker.pkg.dev/v2/",
            "us-docker.pkg.dev/my-project/repo",
            "us-docker.pkg.dev:443",
        ] {
            let t = server_target(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(
                (t.host.as_str(), t.port),
                ("us-docker.pkg.dev", 443),
                "{text}"
            );
        }
        assert_eq!(server_target("localhost:5000").unwrap().port, 5000);
        assert_eq!(server_target("http://127.0.0.1:5000").unwrap().port, 5000);
        assert_eq!(server_target("http://us-docker.pkg.dev"), None);
        assert_eq!(server_target("ftp://us-docker.pkg.dev"), None);
        assert_eq!(server_target("https://"), None);
        assert_eq!(server_target("a b"), None);
    }

    #[test]
    fn selects_an_exact_registry_over_a_glob() {
        let entries = [
            entry("*.pkg.dev", "gcp", "glob"),
            entry("us-docker.pkg.dev", "gcp", "exact"),
            entry("us-docker.pkg.dev", "other", "second"),
        ];
        let pick = |s: &str| select(&entries, &server_target(s)?).map(|e| e.username.clone());
        assert_eq!(
            pick("https://us-docker.pkg.dev/v2/").as_deref(),
            Some("exact")
        );
        assert_eq!(pick("europe-docker.pkg.dev").as_deref(), Some("glob"));
        assert_eq!(pick("a.b.pkg.dev"), None);
        assert_eq!(pick("index.docker.io"), None);
        assert_eq!(pick("us-docker.pkg.dev:5000"), None);
    }

    #[test]
    fn answers_in_dockers_field_names() {
        assert_eq!(
            get_answer("us-docker.pkg.dev", "oauth2accesstoken", "ya29.\"x\"").unwrap(),
            "{\"ServerURL\":\"us-docker.pkg.dev\",\"Username\":\"oauth2accesstoken\",\"Secret\":\"ya29.\\\"x\\\"\"}\n"
        );
        let entries = [
            entry("us-docker.pkg.dev", "gcp", "oauth2accesstoken"),
            entry("*.pkg.dev", "gcp", "glob"),
            entry("us-docker.pkg.dev", "other", "second"),
        ];
        assert_eq!(
            list(&entries).unwrap(),
            "{\"*.pkg.dev\":\"glob\",\"us-docker.pkg.dev\":\"oauth2accesstoken\"}\n"
        );
        assert_eq!(list(&[]).unwrap(), "{}\n");
    }
}
