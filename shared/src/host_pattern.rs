//! Which `[[git]]` or `[[docker]]` entry a request falls under: the
//! config's host patterns ([`HostPattern`]) and path prefixes
//! ([`PathPrefix`]), parsed once when the config is loaded, and the URL a
//! tool asks about, reduced to host, port and path ([`Target`]).
//!
//! A host pattern is a host, or a glob whose `*` and `?` stand for
//! characters within one dot-separated label (git's own rule for
//! `credential.https://*.example.com`), with the last two labels literal;
//! then an optional `:PORT`. A pattern without a port matches the scheme's
//! default port only.
//!
//! When several entries match, the most specific wins: an exact host over
//! a glob, then the longer `path_prefix` (in segments), then the one
//! written first ([`best`]). So a `path_prefix` entry for one organization
//! can sit anywhere next to a catch-all entry for the same host.
//!
//! **Invariant:** only `https`, and `http` to a loopback address, ever
//! match: a token is never handed out for a plaintext connection that
//! leaves the machine. [`is_loopback`] is the one judge of loopback, for
//! these targets and for the config's URLs alike.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::{Host, Url};

/// `host` of `[[git]]`, `registry` of `[[docker]]`: a host or a glob of
/// one, with an optional port; lower-cased, as hosts compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// As written, lower-cased: what `Display` and `Serialize` show.
    text: String,
    /// The dot-separated labels, globs among them.
    labels: Vec<String>,
    /// `None`: the scheme's default port.
    port: Option<u16>,
}

/// Why a host pattern was refused; each names the pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPatternError {
    #[error(
        "{pattern:?} is not a host name or a glob of one (letters, digits, '.', '-', ':', '*', '?')"
    )]
    Characters { pattern: String },
    #[error(
        "{pattern:?} has a bad port {port:?}: write HOST or HOST:PORT, the port a number from 1 to 65535"
    )]
    Port { pattern: String, port: String },
    #[error("{pattern:?} has an empty label: no leading, trailing or doubled '.'")]
    EmptyLabel { pattern: String },
    #[error(
        "{pattern:?} is too broad: a glob keeps its last two labels literal (e.g. \"*.pkg.dev\"), so a token never goes to a host you do not control"
    )]
    TooBroad { pattern: String },
}

impl HostPattern {
    /// Checks a pattern as written in the config. A glob must keep its
    /// last two labels literal, so a token never goes to a host the user
    /// does not control (`*.com`, `dev.azure.*`).
    pub fn parse(text: &str) -> Result<Self, HostPatternError> {
        let pattern = || text.to_owned();
        let ok = text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*' | '?' | ':'));
        if !ok {
            return Err(HostPatternError::Characters { pattern: pattern() });
        }
        let (name, port) = match text.split_once(':') {
            Some((name, port)) => match port.parse::<u16>() {
                Ok(p) if p != 0 => (name, Some(p)),
                _ => {
                    return Err(HostPatternError::Port {
                        pattern: pattern(),
                        port: port.to_owned(),
                    });
                }
            },
            None => (text, None),
        };
        let labels: Vec<String> = name.split('.').map(str::to_ascii_lowercase).collect();
        if labels.iter().any(String::is_empty) {
            return Err(HostPatternError::EmptyLabel { pattern: pattern() });
        }
        let wild = |l: &String| l.contains(['*', '?']);
        if labels.iter().any(wild)
            && (labels.len() < 3 || labels[labels.len() - 2..].iter().any(wild))
        {
            return Err(HostPatternError::TooBroad { pattern: pattern() });
        }
        Ok(Self {
            text: text.to_ascii_lowercase(),
            labels,
            port,
        })
    }

    /// The pattern, lower-cased.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether it is a glob rather than one exact host.
    pub fn is_glob(&self) -> bool {
        self.text.contains(['*', '?'])
    }

    /// Whether `target`'s host and port fall under this pattern.
    pub fn matches(&self, target: &Target) -> bool {
        if self.port.unwrap_or(target.default_port) != target.port {
            return false;
        }
        let host_labels: Vec<&str> = target.host.split('.').collect();
        self.labels.len() == host_labels.len()
            && self
                .labels
                .iter()
                .zip(&host_labels)
                .all(|(p, h)| label_matches(p.as_bytes(), h.as_bytes()))
    }
}

impl FromStr for HostPattern {
    type Err = HostPatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for HostPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Checked again as the config checks it: a pattern read back is never
/// one the config would refuse.
impl<'de> Deserialize<'de> for HostPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `path_prefix` of `[[git]]`: whole path segments, kept without leading
/// or trailing `/` (`"/myorg/"` is `myorg`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPrefix(String);

/// Why a path prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathPrefixError {
    #[error("must name a path, e.g. \"myorg\" (leave it out to match every path)")]
    Empty,
    #[error("{prefix:?} has an empty path segment ('//')")]
    EmptySegment { prefix: String },
    #[error("{prefix:?} contains {bad:?}: a path prefix is the path only, no query or fragment")]
    NotAPath { prefix: String, bad: char },
}

impl PathPrefix {
    pub fn parse(text: &str) -> Result<Self, PathPrefixError> {
        let trimmed = text.trim_matches('/');
        if trimmed.is_empty() {
            return Err(PathPrefixError::Empty);
        }
        if trimmed.split('/').any(str::is_empty) {
            return Err(PathPrefixError::EmptySegment {
                prefix: text.to_owned(),
            });
        }
        if let Some(bad) = trimmed
            .chars()
            .find(|c| matches!(c, '?' | '#') || c.is_control())
        {
            return Err(PathPrefixError::NotAPath {
                prefix: text.to_owned(),
                bad,
            });
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The prefix, without leading or trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// How many path segments it has.
    pub fn segments(&self) -> usize {
        self.0.split('/').count()
    }

    /// Whether `target`'s path lies under this prefix (whole segments:
    /// `myorg` covers `myorg/repo`, not `myorg2/repo`). It needs the path,
    /// so it never covers a target whose tool did not send one.
    pub fn covers(&self, target: &Target) -> bool {
        target.path.as_deref().is_some_and(|path| {
            path.strip_prefix(self.0.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }
}

impl FromStr for PathPrefix {
    type Err = PathPrefixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for PathPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for PathPrefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PathPrefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The place a tool wants a credential for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Lower-cased host name or IP address, without the port.
    pub host: String,
    /// The port the tool connects to.
    pub port: u16,
    /// The scheme's default port (443 or 80).
    pub default_port: u16,
    /// The path without leading or trailing `/`, percent-decoded; `None`
    /// when the tool did not say (git without `credential.useHttpPath`).
    pub path: Option<String>,
}

impl Target {
    /// From a URL; `None` unless it is `https://HOST…` or
    /// `http://LOOPBACK…`.
    pub fn from_url(text: &str) -> Option<Target> {
        let url = Url::parse(text).ok()?;
        let default_port = match url.scheme() {
            "https" => 443,
            "http" => 80,
            _ => return None,
        };
        let host = url.host()?;
        if default_port == 80 && !is_loopback(&host) {
            return None;
        }
        let host = match host {
            Host::Domain(d) if !d.is_empty() => d.to_ascii_lowercase(),
            Host::Domain(_) => return None,
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => format!("[{ip}]"),
        };
        let path = percent_encoding::percent_decode_str(url.path()).decode_utf8_lossy();
        Some(Target {
            host,
            port: url.port().unwrap_or(default_port),
            default_port,
            path: normalize_path(&path),
        })
    }

    /// From git's `protocol`, `host` (`NAME` or `NAME:PORT`) and `path`
    /// attributes; git has already percent-decoded the path.
    pub fn from_parts(protocol: &str, host: &str, path: Option<&str>) -> Option<Target> {
        let protocol = protocol.to_ascii_lowercase();
        // Only a bare host may go into the URL built below: anything that
        // would make the URL parser see another host is refused.
        let bare = !host.is_empty()
            && !host.contains(['/', '\\', '@', '?', '#', '%'])
            && !host.chars().any(|c| c.is_whitespace() || c.is_control());
        if !matches!(protocol.as_str(), "https" | "http") || !bare {
            return None;
        }
        let mut target = Target::from_url(&format!("{protocol}://{host}/"))?;
        target.path = path.and_then(normalize_path);
        Some(target)
    }
}

/// How specific an entry is; more is preferred (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity {
    exact_host: bool,
    prefix_segments: usize,
}

impl Specificity {
    pub fn of(pattern: &HostPattern, prefix: Option<&PathPrefix>) -> Self {
        Self {
            exact_host: !pattern.is_glob(),
            prefix_segments: prefix.map_or(0, PathPrefix::segments),
        }
    }
}

/// The most specific of the entries `rank` says match; the first written
/// among equals.
pub fn best<T>(entries: &[T], rank: impl Fn(&T) -> Option<Specificity>) -> Option<&T> {
    let mut best: Option<(Specificity, &T)> = None;
    for entry in entries {
        if let Some(score) = rank(entry)
            && best.as_ref().is_none_or(|(top, _)| score > *top)
        {
            best = Some((score, entry));
        }
    }
    best.map(|(_, entry)| entry)
}

/// Whether a URL's host is this machine: `localhost` or a loopback
/// address. Plain `http` is allowed there and nowhere else.
pub fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

fn normalize_path(path: &str) -> Option<String> {
    let path = path.trim_matches('/');
    (!path.is_empty()).then(|| path.to_owned())
}

/// One label against one glob label: `*` is any run of characters, `?`
/// exactly one. The classic linear matcher that backtracks to the last `*`.
fn label_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests;
