//! Tokens of a credential other than its configured one: an access token
//! for other scopes (`get --scope`, the SDK endpoint's `resource` and
//! `?scopes=`), or an ID token for an audience (the SDK endpoint's
//! `identity`).
//!
//! Each lives in a slot of its own, in the same map as the credential's
//! own token, under the key `NAME<space>scopes:S1 S2` or
//! `NAME<space>audience:A` (a credential name has no space, so the key
//! splits back unambiguously). That gives it everything a token has: one
//! upstream call for concurrent callers, background refresh while warm,
//! and a record in the store (whose keys are these same strings), so it
//! survives a restart. A reload that changes the credential drops them
//! with it; `forget NAME` drops them all.

use std::borrow::Cow;

use credcache_shared::config::{Credential, Source};
use credcache_shared::protocol::{ErrorKind, WireError};

pub use crate::providers::Want;

/// The longest scope (or audience) accepted, in bytes.
const MAX_SCOPE_LEN: usize = 2048;
/// The most scopes one request may name.
const MAX_SCOPES: usize = 32;
/// The most tokens one credential may hold for other scopes and
/// audiences at once: a program asking for ever new resources costs an
/// upstream call each, and memory, so past this it is told to `forget`.
pub const MAX_VARIANTS: usize = 64;

/// The slot key of `name`'s token for `want` (`None`: the configured one,
/// whose key is the name itself, borrowed: the cached `get` allocates none).
pub fn key<'a>(name: &'a str, want: Option<&Want>) -> Cow<'a, str> {
    match want {
        None => Cow::Borrowed(name),
        Some(Want::Scopes(scopes)) => format!("{name} scopes:{}", scopes.join(" ")).into(),
        Some(Want::IdToken { audience }) => format!("{name} audience:{audience}").into(),
    }
}

/// The credential a slot key belongs to.
pub fn name_of(key: &str) -> &str {
    key.split_once(' ').map_or(key, |(name, _)| name)
}

/// What a slot key asks for beyond the credential (`None`: its own token).
pub fn want_of(key: &str) -> Option<Want> {
    let (_, rest) = key.split_once(' ')?;
    if let Some(scopes) = rest.strip_prefix("scopes:") {
        return Some(Want::Scopes(scopes.split(' ').map(str::to_owned).collect()));
    }
    rest.strip_prefix("audience:").map(|a| Want::IdToken {
        audience: a.to_owned(),
    })
}

/// How a slot key reads in a message: `corp` for a credential's own token,
/// `corp [https://vault.azure.net/.default]` or `gcp [audience:A]` for
/// another, as `status` lists them.
pub fn label(key: &str) -> Cow<'_, str> {
    match key.split_once(' ') {
        None => Cow::Borrowed(key),
        Some((name, rest)) => {
            let rest = rest.strip_prefix("scopes:").unwrap_or(rest);
            Cow::Owned(format!("{name} [{rest}]"))
        }
    }
}

/// The scopes `cred` asks for by default (a `google` or `azure` credential).
fn configured_scopes(cred: &Credential) -> Option<Vec<String>> {
    match &cred.source {
        Source::Google(g) => Some(g.scopes.clone()),
        Source::Azure(a) => Some(a.scope.split_whitespace().map(str::to_owned).collect()),
        _ => None,
    }
}

/// Checks `scopes` asked of `cred` and puts them in one order (so `a b`
/// and `b a` share a token). `None` when they are the configured scopes:
/// the credential's own token answers (Python google-auth asks
/// `?scopes=` with exactly those on every refresh).
pub fn scopes_for(cred: &Credential, scopes: &[String]) -> Result<Option<Want>, WireError> {
    if scopes.is_empty() {
        return Ok(None);
    }
    let usage = |m: String| WireError::new(ErrorKind::Config, m);
    let Some(configured) = configured_scopes(cred) else {
        return Err(usage(format!(
            "--scope is for google and azure credentials; {} is {}",
            cred.name,
            cred.kind()
        )));
    };
    if scopes.len() > MAX_SCOPES {
        return Err(usage(format!(
            "at most {MAX_SCOPES} scopes may be asked for"
        )));
    }
    let mut asked: Vec<String> = Vec::with_capacity(scopes.len());
    for s in scopes {
        check_text("scope", s)?;
        asked.push(s.clone());
    }
    asked.sort();
    asked.dedup();
    let mut own = configured;
    own.sort();
    own.dedup();
    Ok((asked != own).then_some(Want::Scopes(asked)))
}

/// An ID token of `cred` for `audience` (a `google` credential).
pub fn audience_for(cred: &Credential, audience: &str) -> Result<Want, WireError> {
    if !matches!(cred.source, Source::Google(_)) {
        return Err(WireError::new(
            ErrorKind::Config,
            format!("{} is no google credential: it has no ID tokens", cred.name),
        ));
    }
    check_text("audience", audience)?;
    Ok(Want::IdToken {
        audience: audience.to_owned(),
    })
}

/// A scope or audience: printable ASCII without spaces, not empty, short.
fn check_text(what: &str, s: &str) -> Result<(), WireError> {
    let ok = !s.is_empty() && s.len() <= MAX_SCOPE_LEN && s.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(WireError::new(
            ErrorKind::Config,
            format!("a {what} must be 1 to {MAX_SCOPE_LEN} printable characters without spaces"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_back_into_name_and_want() {
        let scopes = Want::Scopes(vec!["a".into(), "https://x/.default".into()]);
        let k = key("corp", Some(&scopes));
        assert_eq!(k, "corp scopes:a https://x/.default");
        assert_eq!(name_of(&k), "corp");
        assert_eq!(want_of(&k), Some(scopes));
        let id = Want::IdToken {
            audience: "https://run.app".into(),
        };
        let k = key("gcp", Some(&id));
        assert_eq!(name_of(&k), "gcp");
        assert_eq!(want_of(&k), Some(id));
        assert_eq!(key("gcp", None), "gcp");
        assert_eq!(name_of("gcp"), "gcp");
        assert_eq!(want_of("gcp"), None);
    }

    #[test]
    fn labels_read_as_status_lists_them() {
        assert_eq!(label("corp"), "corp");
        assert_eq!(
            label("corp scopes:a https://x/.default"),
            "corp [a https://x/.default]"
        );
        assert_eq!(
            label("gcp audience:https://run.app"),
            "gcp [audience:https://run.app]"
        );
    }
}
