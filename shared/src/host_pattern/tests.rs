use super::*;

fn url(text: &str) -> Target {
    Target::from_url(text).unwrap_or_else(|| panic!("{text} should be a target"))
}

fn host(pattern: &str) -> HostPattern {
    HostPattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"))
}

fn prefix(text: &str) -> PathPrefix {
    PathPrefix::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
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
fn loopback_is_localhost_and_loopback_addresses() {
    for (text, want) in [
        ("http://localhost/", true),
        ("http://LocalHost:8080/", true),
        ("http://127.0.0.1/", true),
        ("http://127.9.9.9/", true),
        ("http://[::1]/", true),
        ("http://localhost.evil.io/", false),
        ("http://10.0.0.1/", false),
        ("http://[::2]/", false),
    ] {
        let parsed = Url::parse(text).unwrap();
        assert_eq!(is_loopback(&parsed.host().unwrap()), want, "{text}");
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
fn host_patterns_are_hosts_and_not_too_broad() {
    for (text, want) in [
        ("*", "is too broad"),
        ("*.com", "is too broad"),
        ("dev.azure.*", "is too broad"),
        ("dev.*.com", "is too broad"),
        ("a.?om", "is too broad"),
        ("dev..azure.com", "has an empty label"),
        (".dev.azure.com", "has an empty label"),
        ("dev.azure.com.", "has an empty label"),
        ("localhost:http", "has a bad port"),
        ("localhost:0", "has a bad port"),
        ("localhost:70000", "has a bad port"),
        ("a:1:2", "has a bad port"),
        ("dev.azure.com/org", "is not a host name"),
        ("https://dev.azure.com", "is not a host name"),
    ] {
        let err = HostPattern::parse(text).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{text:?} {want}")),
            "{text}: {err}"
        );
    }
    assert_eq!(host("*.PKG.dev").to_string(), "*.pkg.dev", "lower-cased");
    assert_eq!(host("127.0.0.1:5000").as_str(), "127.0.0.1:5000");
    assert!(host("?.visualstudio.com").is_glob());
    assert!(!host("localhost").is_glob());
    assert_eq!(
        serde_json::to_string(&host("Dev.Azure.com")).unwrap(),
        "\"dev.azure.com\""
    );
}

#[test]
fn exact_hosts_and_ports() {
    let t = url("https://dev.azure.com/");
    assert!(host("dev.azure.com").matches(&t));
    assert!(host("DEV.azure.com").matches(&t));
    assert!(host("dev.azure.com:443").matches(&t));
    assert!(!host("azure.com").matches(&t));
    assert!(!host("dev.azure.com:8443").matches(&t));
    assert!(!host("dev.azure.com").matches(&url("https://dev.azure.com:8443/")));
    assert!(host("127.0.0.1:5000").matches(&url("http://127.0.0.1:5000/")));
    assert!(!host("127.0.0.1").matches(&url("http://127.0.0.1:5000/")));
}

#[test]
fn globs_stay_within_one_label() {
    let glob = host("*.visualstudio.com");
    assert!(glob.matches(&url("https://myorg.visualstudio.com/")));
    assert!(!glob.matches(&url("https://a.b.visualstudio.com/")));
    assert!(!glob.matches(&url("https://visualstudio.com/")));
    assert!(!glob.matches(&url("https://myorg.visualstudio.com.evil.io/")));
    let us = url("https://us-docker.pkg.dev/");
    assert!(host("*-docker.pkg.dev").matches(&us));
    assert!(host("us-d?cker.pkg.dev").matches(&us));
    assert!(!host("us-d?cker.pkg.dev").matches(&url("https://us-dcker.pkg.dev/")));
    assert!(host("*-*.pkg.dev").matches(&url("https://europe-west1-docker.pkg.dev/")));
    assert!(host("**.pkg.dev").matches(&url("https://a.pkg.dev/")));
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
fn path_prefixes_are_whole_segments_without_slashes() {
    assert_eq!(prefix("/myorg/proj/").as_str(), "myorg/proj");
    assert_eq!(prefix("/myorg/proj/").segments(), 2);
    for (text, want) in [
        ("/", "must name a path"),
        ("", "must name a path"),
        ("a//b", "has an empty path segment"),
        ("org?x=1", "no query or fragment"),
        ("org#frag", "no query or fragment"),
    ] {
        let err = PathPrefix::parse(text).unwrap_err().to_string();
        assert!(err.contains(want), "{text}: {err}");
    }
}

#[test]
fn path_prefixes_match_whole_segments() {
    let t = url("https://dev.azure.com/myorg/proj/_git/repo");
    assert!(prefix("myorg").covers(&t));
    assert!(prefix("myorg/proj").covers(&t));
    assert!(prefix("/myorg/").covers(&t));
    assert!(prefix("myorg/proj/_git/repo").covers(&t));
    assert!(!prefix("myor").covers(&t));
    assert!(!prefix("MyOrg").covers(&t), "paths compare exactly");
    assert!(!prefix("myorg").covers(&url("https://dev.azure.com/myorg2/x")));
    assert!(
        !prefix("myorg").covers(&url("https://dev.azure.com/")),
        "a prefix needs the path"
    );
}

#[test]
fn the_most_specific_entry_wins_then_the_first() {
    let entries = [
        ("a", host("*.azure.com"), None),
        ("b", host("dev.azure.com"), None),
        ("c", host("dev.azure.com"), Some(prefix("myorg"))),
        ("d", host("dev.azure.com"), Some(prefix("myorg/proj"))),
        ("e", host("dev.azure.com"), None),
    ];
    let pick = |text: &str| {
        let t = url(text);
        best(&entries, |(_, host, prefix)| {
            (host.matches(&t) && prefix.as_ref().is_none_or(|p| p.covers(&t)))
                .then(|| Specificity::of(host, prefix.as_ref()))
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
