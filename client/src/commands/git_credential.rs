//! `credcache git-credential get|store|erase`: git's credential-helper
//! protocol (gitcredentials(7), git-credential(1)), so that git asks
//! credcache for the password of hosts in `[[git]]`:
//!
//! ```text
//! git config --global credential.https://dev.azure.com.helper '!credcache git-credential'
//! ```
//!
//! git writes `key=value` lines on stdin, ended by a blank line or EOF.
//! `get` for a URL under a `[[git]]` entry answers `username`, `password`
//! (the token) and `password_expiry_utc`; for any other URL it answers
//! nothing and exits 0, so git asks its next helper. `erase` (git saying
//! the password was rejected) drops the entry's token from the cache, so
//! the next `get` fetches a new one. `store` is accepted and ignored: the
//! daemon's cache is the store. Other operations are ignored too, as the
//! protocol asks of helpers, so that git can add new ones.
//!
//! The config is read here, by the client: the daemon knows credentials,
//! not hosts. A URL that matches nothing never contacts or starts the
//! daemon. Which entry wins is [`host_pattern`]'s rule (most specific).

use std::io::{self, BufRead};

use credcache_shared::config::{Config, GitHelper};
use credcache_shared::host_pattern::{self, PathPrefix, Specificity, Target};
use credcache_shared::protocol::{Request, Response};

use crate::commands::get;
use crate::connect::{self, Autostart, Endpoint};
use crate::exit::{self, Error};
use crate::output;

/// git writes a handful of short lines; anything this big is not git.
const MAX_INPUT: u64 = 1 << 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What git asks: get, store or erase (others are ignored, as git's
    /// protocol asks of helpers).
    #[arg(value_name = "OPERATION")]
    pub operation: Operation,
}

/// The operation git asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Get,
    Store,
    Erase,
    /// One that git may add in the future; ignored.
    Other(String),
}

/// Every word is an operation: those git may add later are `Other`.
impl From<&str> for Operation {
    fn from(value: &str) -> Self {
        match value {
            "get" => Operation::Get,
            "store" => Operation::Store,
            "erase" => Operation::Erase,
            other => Operation::Other(other.to_owned()),
        }
    }
}

/// The attributes of git's request that say where it connects.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GitRequest {
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
}

impl GitRequest {
    /// Where git connects, when it is somewhere a token may go.
    fn target(&self) -> Option<Target> {
        Target::from_parts(
            self.protocol.as_deref()?,
            self.host.as_deref()?,
            self.path.as_deref(),
        )
    }
}

pub fn run(endpoint: &Endpoint, args: &Args) -> Result<u8, Error> {
    // Read git's request whatever the operation, so git never writes into
    // a closed pipe, and a malformed one is reported for `store` too.
    let request = read_request(io::stdin().lock())?;
    let (Operation::Get | Operation::Erase) = args.operation else {
        return Ok(exit::OK);
    };
    let Some(target) = request.target() else {
        return Ok(exit::OK);
    };
    let config = Config::load(&endpoint.paths.config_file)
        .map_err(|e| Error::Config(e.lines().collect()))?;
    let Some(entry) = select(&config.git, &target) else {
        if args.operation == Operation::Get {
            hint_use_http_path(&config.git, &target);
        }
        return Ok(exit::OK);
    };
    let mut conn = endpoint.connect(Autostart::IfAllowed)?;
    match args.operation {
        Operation::Get => {
            let reply = get::fetch(&mut conn, &entry.credential, None, false)?;
            let answer = answer(
                &entry.username,
                reply.token.expose(),
                reply.expires_at.timestamp(),
                &entry.credential,
            )?;
            output::stdout(&answer)?;
        }
        _ => {
            let name = entry.credential.clone();
            let context = format!("cannot forget {name} for git");
            match conn.call(&Request::Forget { name: Some(name) }, &context)? {
                Response::Done { .. } => {}
                other => return Err(connect::unexpected(&other)),
            }
        }
    }
    Ok(exit::OK)
}

/// The `[[git]]` entry for this target, if any: the most specific.
pub fn select<'a>(entries: &'a [GitHelper], target: &Target) -> Option<&'a GitHelper> {
    host_pattern::best(entries, |e| {
        let path_ok = e.path_prefix.as_ref().is_none_or(|p| p.covers(target));
        (e.host.matches(target) && path_ok)
            .then(|| Specificity::of(&e.host, e.path_prefix.as_ref()))
    })
}

/// Nothing matched, but an entry would have with the repository path:
/// git only sends it with `credential.useHttpPath`, so say so (git shows
/// a helper's stderr) instead of letting git prompt without a clue.
fn hint_use_http_path(entries: &[GitHelper], target: &Target) {
    if target.path.is_some() {
        return;
    }
    if let Some(e) = entries
        .iter()
        .find(|e| e.path_prefix.is_some() && e.host.matches(target))
    {
        let port = if target.port == target.default_port {
            String::new()
        } else {
            format!(":{}", target.port)
        };
        let scheme = if target.default_port == 443 {
            "https"
        } else {
            "http"
        };
        output::warning(format_args!(
            "the [[git]] entry for {} with path_prefix {:?} needs the repository path; \
             run `git config --global credential.{scheme}://{}{port}.useHttpPath true`",
            e.host,
            e.path_prefix.as_ref().map_or("", PathPrefix::as_str),
            target.host
        ));
    }
}

/// Reads git's attributes: `key=value` lines (LF or CRLF) until a blank
/// line or EOF. `url=` stands for its parts and, as in git, replaces
/// whatever came before it. Unknown keys (`wwwauth[]`, `capability[]`,
/// `username`, `password`, …) are ignored.
pub fn read_request(input: impl BufRead) -> Result<GitRequest, Error> {
    let mut input = input.take(MAX_INPUT + 1);
    let mut request = GitRequest::default();
    let mut raw = Vec::new();
    let mut total = 0;
    for number in 1.. {
        raw.clear();
        let n = input
            .read_until(b'\n', &mut raw)
            .map_err(|e| Error::Other(format!("cannot read git's request on stdin: {e}")))?;
        total += n;
        if total as u64 > MAX_INPUT {
            return Err(bad_input(format!("it is over {MAX_INPUT} bytes")));
        }
        if n == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches('\n').trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        // The line may hold a password (`erase`): never echo it.
        let Some((key, value)) = line.split_once('=') else {
            return Err(bad_input(format!(
                "line {number} is not key=value (git's credential-helper protocol)"
            )));
        };
        let value = value.to_owned();
        match key {
            "protocol" => request.protocol = Some(value),
            "host" => request.host = Some(value),
            "path" => request.path = Some(value),
            "url" => request = from_url_attribute(&value),
            _ => {}
        }
    }
    Ok(request)
}

fn bad_input(why: String) -> Error {
    Error::Other(format!("cannot read git's request: {why}"))
}

/// `url=` as git reads it: the URL's scheme, host (with an explicit port)
/// and path; all earlier attributes are forgotten.
fn from_url_attribute(value: &str) -> GitRequest {
    let Ok(url) = url::Url::parse(value) else {
        // Not a URL git would connect to with a password from us.
        return GitRequest::default();
    };
    let host = url.host_str().map(|h| match url.port() {
        Some(port) => format!("{h}:{port}"),
        None => h.to_owned(),
    });
    let path = percent_encoding::percent_decode_str(url.path())
        .decode_utf8_lossy()
        .trim_matches('/')
        .to_owned();
    GitRequest {
        protocol: Some(url.scheme().to_owned()),
        host,
        path: (!path.is_empty()).then_some(path),
    }
}

/// The answer to `get`. A value with a line break would inject attributes
/// into git's side of the protocol, so such a token is refused.
fn answer(username: &str, token: &str, expires_at: i64, name: &str) -> Result<String, Error> {
    if token.contains(['\n', '\r', '\0']) {
        return Err(Error::Other(format!(
            "cannot give git the token of {name}: it contains a line break or NUL"
        )));
    }
    Ok(format!(
        "username={username}\npassword={token}\npassword_expiry_utc={expires_at}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<GitRequest, Error> {
        read_request(text.as_bytes())
    }

    fn request(protocol: &str, host: &str, path: Option<&str>) -> GitRequest {
        GitRequest {
            protocol: Some(protocol.into()),
            host: Some(host.into()),
            path: path.map(str::to_owned),
        }
    }

    #[test]
    fn reads_attributes_until_a_blank_line() {
        let r = read("protocol=https\nhost=dev.azure.com\npath=myorg/r\n\nhost=ignored\n").unwrap();
        assert_eq!(r, request("https", "dev.azure.com", Some("myorg/r")));
    }

    #[test]
    fn reads_until_eof_with_or_without_a_final_newline() {
        assert_eq!(
            read("protocol=https\nhost=dev.azure.com").unwrap(),
            request("https", "dev.azure.com", None)
        );
        assert_eq!(read("").unwrap(), GitRequest::default());
    }

    #[test]
    fn crlf_lines_are_read_like_lf() {
        let r = read("protocol=https\r\nhost=dev.azure.com\r\n\r\nx\r\n").unwrap();
        assert_eq!(r, request("https", "dev.azure.com", None));
    }

    #[test]
    fn unknown_attributes_are_ignored_and_values_keep_their_equals_signs() {
        let r = read(
            "capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=dev.azure.com\n\
             wwwauth[]=Basic realm=\"x\"\nusername=me\npassword=a=b\nfuture=1\n=odd\n\n",
        )
        .unwrap();
        assert_eq!(r, request("https", "dev.azure.com", None));
        let r = read("path=a=b\n").unwrap();
        assert_eq!(r.path.as_deref(), Some("a=b"));
    }

    #[test]
    fn url_stands_for_its_parts_and_replaces_earlier_ones() {
        let r = read("path=old\nurl=https://me@dev.azure.com/myorg/My%20Proj/_git/r\n").unwrap();
        assert_eq!(
            r,
            request("https", "dev.azure.com", Some("myorg/My Proj/_git/r"))
        );
        let r = read("url=https://dev.azure.com:8443\n").unwrap();
        assert_eq!(r, request("https", "dev.azure.com:8443", None));
        let r = read("url=https://dev.azure.com/\nprotocol=http\n").unwrap();
        assert_eq!(r.protocol.as_deref(), Some("http"), "later attributes win");
        assert_eq!(read("url=not a url\n").unwrap(), GitRequest::default());
    }

    #[test]
    fn a_line_without_equals_is_an_error_that_does_not_echo_it() {
        let err = read("protocol=https\nhunter2\nhost=x\n").unwrap_err();
        assert_eq!(err.exit_code(), exit::OTHER);
        let lines = err.messages();
        assert_eq!(
            lines,
            [
                "cannot read git's request: line 2 is not key=value (git's credential-helper protocol)"
            ]
        );
        assert!(!lines[0].contains("hunter2"));
    }

    #[test]
    fn oversized_input_is_refused() {
        let big = format!("path={}", "x".repeat(MAX_INPUT as usize));
        let err = read(&big).unwrap_err();
        assert!(err.messages()[0].contains("over"), "{:?}", err.messages());
    }

    #[test]
    fn operations_beyond_the_three_are_kept_to_be_ignored() {
        assert_eq!(Operation::from("get"), Operation::Get);
        assert_eq!(Operation::from("store"), Operation::Store);
        assert_eq!(Operation::from("erase"), Operation::Erase);
        assert_eq!(
            Operation::from("capability"),
            Operation::Other("capability".into())
        );
    }

    fn entry(host: &str, prefix: Option<&str>, credential: &str) -> GitHelper {
        GitHelper {
            host: host.parse().unwrap(),
            path_prefix: prefix.map(|p| p.parse().unwrap()),
            credential: credential.into(),
            username: "credcache".into(),
        }
    }

    #[test]
    fn selects_by_host_glob_and_path_prefix() {
        let entries = [
            entry("dev.azure.com", None, "ado"),
            entry("dev.azure.com", Some("otherorg"), "other"),
            entry("*.visualstudio.com", None, "vs"),
        ];
        let pick = |r: GitRequest| select(&entries, &r.target()?).map(|e| e.credential.clone());
        assert_eq!(
            pick(request("https", "dev.azure.com", None)).as_deref(),
            Some("ado")
        );
        assert_eq!(
            pick(request("https", "dev.azure.com", Some("otherorg/p/_git/r"))).as_deref(),
            Some("other")
        );
        assert_eq!(
            pick(request("https", "DEV.AZURE.COM", Some("otherorg2/r"))).as_deref(),
            Some("ado")
        );
        assert_eq!(
            pick(request("https", "myorg.visualstudio.com", None)).as_deref(),
            Some("vs")
        );
        assert_eq!(pick(request("https", "github.com", None)), None);
        assert_eq!(pick(request("http", "dev.azure.com", None)), None);
        assert_eq!(pick(request("https", "dev.azure.com:8443", None)), None);
        assert_eq!(pick(GitRequest::default()), None);
    }

    #[test]
    fn the_answer_is_three_lines_and_refuses_line_breaks() {
        assert_eq!(
            answer("credcache", "tok", 1_700_000_000, "ado").unwrap(),
            "username=credcache\npassword=tok\npassword_expiry_utc=1700000000\n"
        );
        let err = answer("u", "tok\nusername=evil", 1, "ado").unwrap_err();
        assert!(!err.messages()[0].contains("evil"));
    }
}
