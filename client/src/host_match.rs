//! Which `[[git]]` or `[[docker]]` entry a request falls under: the URL a
//! tool asks about, reduced to host, port and path ([`Target`]), and the
//! config's host patterns matched against it.
//!
//! Patterns were validated by the config parser: a host, or a glob whose
//! `*` and `?` stand for characters within one dot-separated label (git's
//! own rule for `credential.https://*.example.com`), with the last two
//! labels literal; then an optional `:PORT`. A pattern without a port
//! matches the scheme's default port only.
//!
//! When several entries match, the most specific wins: an exact host over
//! a glob, then the longer `path_prefix` (in segments), then the one
//! written first. So a `path_prefix` entry for one organization can sit
//! anywhere next to a catch-all entry for the same host.
//!
//! **Invariant:** only `https`, and `http` to a loopback address, ever
//! match: a token is never handed out for a plaintext connection that
//! leaves the machine.

use url::{Host, Url};

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

    /// Whether a validated host pattern (`host` of `[[git]]`, `registry`
    /// of `[[docker]]`) matches this host and port.
    pub fn host_matches(&self, pattern: &str) -> bool {
        let (name, port) = match pattern.split_once(':') {
            Some((name, port)) => (name, port.parse().ok()),
            None => (pattern, Some(self.default_port)),
        };
        if port != Some(self.port) {
            return false;
        }
        let labels: Vec<&str> = name.split('.').collect();
        let host_labels: Vec<&str> = self.host.split('.').collect();
        labels.len() == host_labels.len()
            && labels
                .iter()
                .zip(&host_labels)
                .all(|(p, h)| label_matches(p.as_bytes(), h.as_bytes()))
    }

    /// Whether the path lies under `prefix` (whole segments: `myorg`
    /// covers `myorg/repo`, not `myorg2/repo`). An entry with a prefix
    /// needs the path, so it never matches when the tool did not send one.
    pub fn path_under(&self, prefix: Option<&str>) -> bool {
        let Some(prefix) = prefix.map(|p| p.trim_matches('/')) else {
            return true;
        };
        self.path.as_deref().is_some_and(|path| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }
}

/// How specific an entry is; more is preferred (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity {
    exact_host: bool,
    prefix_segments: usize,
}

impl Specificity {
    pub fn of(pattern: &str, prefix: Option<&str>) -> Self {
        Self {
            exact_host: !pattern.contains(['*', '?']),
            prefix_segments: prefix.map_or(0, |p| {
                p.split('/').filter(|segment| !segment.is_empty()).count()
            }),
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

fn normalize_path(path: &str) -> Option<String> {
    let path = path.trim_matches('/');
    (!path.is_empty()).then(|| path.to_owned())
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
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
mod tests {
    use super::*;

    fn url(text: &str) -> Target {
        Target::from_url(text).unwrap_or_else(|| panic!("{text} should be a target"))
    }

    #[test]
    fn urls_reduce_to_host_port_and_decoded_path() {
        let t = url("https://MyOrg@Dev.Azure.com/myorg/My%20Project/_git/repo/");
        assert_eq!(t.host, "dev.azure.com");
        assert_eq!((t.port, t.default_port), (443, 443));
        assert_eq!(t.path.as_deref(), Some("myorg/My Project/_git/repo"));
        assert_eq!(url("https://dev.azure.com:443").port, 443);
        assert_eq!(url("https://dev.azure.com:8443/").port, 8443);
        assert_eq!(url("https://dev.azure.com/").path, None);
        assert_eq!(url("http://127.0.0.1:8080/x").port, 8080);
        assert_eq!(url("http://localhost/").port, 80);
        assert_eq!(url("http://[::1]:99/").host, "[::1]");
    }

    #[test]
    fn only_https_and_loopback_http_are_targets() {
        for text in [
            "http://dev.azure.com/",
            "http://10.0.0.1/",
            "ssh://dev.azure.com/",
            "git://dev.azure.com/x",
            "file:///tmp/repo",
            "cert:///etc/cert.pem",
            "https://",
            "not a url",
        ] {
            assert_eq!(Target::from_url(text), None, "{text}");
        }
    }

    #[test]
    fn git_parts_are_a_bare_host_or_nothing() {
        let t = Target::from_parts("https", "dev.azure.com:443", Some("/myorg/r/")).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("dev.azure.com", 443));
        assert_eq!(t.path.as_deref(), Some("myorg/r"));
        assert!(Target::from_parts("HTTPS", "DEV.azure.com", None).is_some());
        for host in [
            "",
            "evil.com/@dev.azure.com",
            "evil.com#@dev.azure.com",
            "evil.com?@dev.azure.com",
            "user@dev.azure.com",
            "dev.azure.com\\x",
            "dev azure.com",
            "dev.azure.com%2fx",
        ] {
            assert_eq!(Target::from_parts("https", host, None), None, "{host:?}");
        }
        assert_eq!(Target::from_parts("ftp", "dev.azure.com", None), None);
        assert_eq!(Target::from_parts("https://x", "y", None), None);
        assert_eq!(Target::from_parts("http", "dev.azure.com", None), None);
        assert!(Target::from_parts("http", "127.0.0.1:5000", None).is_some());
    }

    #[test]
    fn exact_hosts_and_ports() {
        let t = url("https://dev.azure.com/");
        assert!(t.host_matches("dev.azure.com"));
        assert!(t.host_matches("dev.azure.com:443"));
        assert!(!t.host_matches("azure.com"));
        assert!(!t.host_matches("dev.azure.com:8443"));
        assert!(!url("https://dev.azure.com:8443/").host_matches("dev.azure.com"));
        assert!(url("http://127.0.0.1:5000/").host_matches("127.0.0.1:5000"));
        assert!(!url("http://127.0.0.1:5000/").host_matches("127.0.0.1"));
    }

    #[test]
    fn globs_stay_within_one_label() {
        let glob = "*.visualstudio.com";
        assert!(url("https://myorg.visualstudio.com/").host_matches(glob));
        assert!(!url("https://a.b.visualstudio.com/").host_matches(glob));
        assert!(!url("https://visualstudio.com/").host_matches(glob));
        assert!(!url("https://myorg.visualstudio.com.evil.io/").host_matches(glob));
        assert!(url("https://us-docker.pkg.dev/").host_matches("*-docker.pkg.dev"));
        assert!(url("https://us-docker.pkg.dev/").host_matches("us-d?cker.pkg.dev"));
        assert!(!url("https://us-dcker.pkg.dev/").host_matches("us-d?cker.pkg.dev"));
        assert!(url("https://europe-west1-docker.pkg.dev/").host_matches("*-*.pkg.dev"));
        assert!(url("https://a.pkg.dev/").host_matches("**.pkg.dev"));
    }

    #[test]
    fn label_glob_matcher() {
        let m = |p: &str, t: &str| label_matches(p.as_bytes(), t.as_bytes());
        assert!(m("*", ""));
        assert!(m("*", "abc"));
        assert!(m("a*c", "abbbc"));
        assert!(m("a*c", "ac"));
        assert!(!m("a*c", "acb"));
        assert!(m("*ab", "aab"));
        assert!(m("a*b*c", "axbxbxc"));
        assert!(!m("?", ""));
        assert!(m("??", "ab"));
        assert!(!m("abc", "ab"));
        assert!(m("ABC", "abc"));
    }

    #[test]
    fn path_prefixes_match_whole_segments() {
        let t = url("https://dev.azure.com/myorg/proj/_git/repo");
        assert!(t.path_under(None));
        assert!(t.path_under(Some("myorg")));
        assert!(t.path_under(Some("myorg/proj")));
        assert!(t.path_under(Some("/myorg/")));
        assert!(t.path_under(Some("myorg/proj/_git/repo")));
        assert!(!t.path_under(Some("myor")));
        assert!(!t.path_under(Some("MyOrg")), "paths compare exactly");
        assert!(!url("https://dev.azure.com/myorg2/x").path_under(Some("myorg")));
        assert!(
            !url("https://dev.azure.com/").path_under(Some("myorg")),
            "a prefix needs the path"
        );
    }

    #[test]
    fn the_most_specific_entry_wins_then_the_first() {
        let entries = [
            ("a", "*.azure.com", None),
            ("b", "dev.azure.com", None),
            ("c", "dev.azure.com", Some("myorg")),
            ("d", "dev.azure.com", Some("myorg/proj")),
            ("e", "dev.azure.com", None),
        ];
        let pick = |text: &str| {
            let t = url(text);
            best(&entries, |(_, host, prefix)| {
                (t.host_matches(host) && t.path_under(*prefix))
                    .then(|| Specificity::of(host, *prefix))
            })
            .map(|(name, _, _)| *name)
        };
        assert_eq!(pick("https://dev.azure.com/"), Some("b"));
        assert_eq!(pick("https://dev.azure.com/other/x"), Some("b"));
        assert_eq!(pick("https://dev.azure.com/myorg/x"), Some("c"));
        assert_eq!(pick("https://dev.azure.com/myorg/proj/_git/r"), Some("d"));
        assert_eq!(pick("https://ssh.azure.com/"), Some("a"));
        assert_eq!(pick("https://github.com/"), None);
    }
}
