//! The invariants the targets assert, each written once.

use std::time::Duration;

use credcache_shared::config::{APIM_MAX_LIFETIME, Config, Source};
use serde_json::Value;

/// Token-like: at least this many characters in a row from a token's
/// alphabet (base64, base64url, JWT, hex). Longer than any word of the
/// messages themselves (`properties.expires` is 18) and than the 20
/// characters of an APIM stamp an error may quote; a real token is
/// hundreds long, so its start is still caught.
pub const TOKEN_RUN: usize = 24;

/// Characters that are not `char::is_control` but still move text around on
/// a terminal or in a log viewer: line and paragraph separators, and the
/// bidirectional overrides and isolates of "Trojan Source"
/// (CVE-2021-42574), which make a line read differently from what it holds.
pub fn is_layout_control(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` fits on one line of a terminal or a log: no control character
/// (newline, escape, C1 included), nothing that reorders or breaks the
/// line, and at most `max` characters.
pub fn assert_one_line(what: &str, text: &str, max: usize) {
    if let Some(c) = text
        .chars()
        .find(|&c| c.is_control() || is_layout_control(c))
    {
        panic!("{what} holds {c:?}: {text:?}");
    }
    let n = text.chars().count();
    assert!(n <= max, "{what} is {n} characters, over {max}: {text:?}");
}

/// What kind of body an error message came from: a success body holds a
/// token wherever it is, an error body only under a token-like key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Success,
    Error,
}

/// `message` quotes no token-like run of a token in `input`. The tokens are
/// the values under token-like keys (found in the JSON, and in text that
/// looks like JSON cut short by a scan); a success body that is not JSON is
/// a token as a whole. A run that also appears outside the tokens (say the
/// fuzzer copied a token into an expiry field, which errors may quote) is
/// allowed, also as it reads once escaped (`"a\nb"` quotes `nb`).
pub fn assert_no_token(message: &str, input: &[u8], body: Body) {
    let text = String::from_utf8_lossy(input);
    let mut secrets = Vec::new();
    let mut public = Vec::new();
    if text.trim_start().starts_with(['{', '[']) {
        secrets = scan_secret_values(&text);
        // Every other quoted string is public, in JSON cut short too.
        let quotes: Vec<usize> = text.match_indices('"').map(|(i, _)| i).collect();
        public.extend(
            quotes
                .windows(2)
                .map(|p| &text[p[0] + 1..p[1]])
                .filter(|q| !secrets.iter().any(|s| s == q))
                .map(str::to_owned),
        );
    }
    // Read lossily as well: serde skips the fields it ignores without
    // checking their UTF-8, so a parser may take what `Value` refuses.
    let parsed = serde_json::from_slice::<Value>(input).or_else(|_| serde_json::from_str(&text));
    match parsed {
        Ok(v) => walk(&v, false, &mut secrets, &mut public),
        Err(_) if body == Body::Success => secrets.push(text.to_string()),
        Err(_) => {}
    }
    if secrets.is_empty() {
        return;
    }
    for run in message
        .split(|c: char| !is_token_char(c))
        .filter(|r| r.len() >= TOKEN_RUN)
    {
        // Token characters are ASCII, so every index is a char boundary.
        for start in 0..=run.len() - TOKEN_RUN {
            let window = &run[start..start + TOKEN_RUN];
            let leaked = secrets.iter().any(|s| s.contains(window))
                && !public.iter().any(|p| p.contains(window));
            assert!(
                !leaked,
                "the message quotes a token ({window:?}): {message:?}"
            );
        }
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '=')
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    // `token_type`, `subject_token_type`: a URN naming the kind;
    // `token_uri`, `token_url`: an endpoint. No secrets.
    if k.ends_with("_type") || k.ends_with("_uri") || k.ends_with("_url") {
        return false;
    }
    k == "value"
        || k == "authorization"
        || [
            "token",
            "secret",
            "password",
            "signature",
            "assertion",
            "private_key",
        ]
        .iter()
        .any(|w| k.contains(w))
}

/// Every string under a secret key is a secret; every other string, key and
/// number is public.
fn walk(v: &Value, secret: bool, secrets: &mut Vec<String>, public: &mut Vec<String>) {
    match v {
        Value::String(s) if secret => secrets.push(s.clone()),
        Value::String(s) => {
            public.push(s.clone());
            public.push(format!("{s:?}"));
            public.push(Value::String(s.clone()).to_string());
        }
        Value::Number(n) => public.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|i| walk(i, secret, secrets, public)),
        Value::Object(map) => {
            for (k, item) in map {
                public.push(k.clone());
                walk(item, secret || is_secret_key(k), secrets, public);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// `"KEY" : "VALUE` with a secret KEY, anywhere in the text, the value
/// running to the next quote or the end: reads JSON cut short too.
fn scan_secret_values(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let quotes: Vec<usize> = text.match_indices('"').map(|(i, _)| i).collect();
    for pair in quotes.windows(2) {
        let key = &text[pair[0] + 1..pair[1]];
        if !is_secret_key(key) {
            continue;
        }
        let after = text[pair[1] + 1..].trim_start();
        let Some(after) = after.strip_prefix(':') else {
            continue;
        };
        let Some(value) = after.trim_start().strip_prefix('"') else {
            continue;
        };
        let end = value.find('"').unwrap_or(value.len());
        found.push(value[..end].to_owned());
    }
    found
}

/// What a config that parsed promises the daemon.
pub fn valid_config(c: &Config) {
    for builtin in ["google", "azure"] {
        assert!(c.credentials.contains_key(builtin), "no {builtin}");
    }
    let d = &c.daemon;
    assert!((0.0..1.0).contains(&d.refresh_fraction), "{d:?}");
    assert!(!d.http_timeout.is_zero(), "{d:?}");
    for (name, cred) in &c.credentials {
        assert_eq!(&cred.name, name);
        let mut chars = name.chars();
        assert!(
            name.len() <= 64
                && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
            "credential name {name:?}"
        );
        let mut chars = cred.env_var.chars();
        assert!(
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "env_var {:?}",
            cred.env_var
        );
        // Every `auth` chain ends, at a configured credential.
        let mut chain = vec![name.as_str()];
        let mut next = cred.auth();
        while let Some(auth) = next {
            assert!(!chain.contains(&auth), "auth cycle {chain:?} -> {auth}");
            let target = c.credentials.get(auth);
            assert!(
                target.is_some(),
                "{name}: auth names {auth:?}, not configured"
            );
            chain.push(auth);
            next = target.and_then(|t| t.auth());
        }
        match &cred.source {
            Source::ApimUserToken(s) => assert!(
                (Duration::from_secs(120)..=APIM_MAX_LIFETIME).contains(&s.lifetime),
                "{s:?}"
            ),
            Source::Command(s) => assert!(
                s.command.first().is_some_and(|p| !p.trim().is_empty()) && !s.lifetime.is_zero(),
                "{s:?}"
            ),
            Source::Google(s) => assert!(!s.scopes.is_empty(), "{s:?}"),
            Source::Azure(_)
            | Source::GkeCluster(_)
            | Source::ContainerApp(_)
            | Source::GoogleIdToken(_) => {}
        }
    }
    for git in &c.git {
        assert!(c.credentials.contains_key(&git.credential), "{git:?}");
    }
    for docker in &c.docker {
        assert!(c.credentials.contains_key(&docker.credential), "{docker:?}");
    }
}
