//! `method = "azd"`: the token of the account the Azure Developer CLI is
//! signed in with, from `azd auth token --output json --scope S
//! [--tenant-id T]`. The program is `azd` from the daemon's `PATH`, or the
//! one `CREDCACHE_AZD` names; it runs like the Azure CLI does
//! (`providers/process.rs`: no shell, stdin closed, its own process group,
//! killed at `http_timeout`).
//!
//! It prints `{"token": "...", "expiresOn": "2024-01-01T00:00:00Z"}`; when
//! nobody is signed in it says to run `azd auth login`.

use chrono::{DateTime, Utc};
use credcache_shared::Secret;
use serde_json::Value;

use crate::http::sanitize;
use crate::providers::{FetchContext, FetchError, Fetched, within_lifetime};

const WHAT: &str = "`azd auth token`";

/// The program to run: `CREDCACHE_AZD`, else `azd`.
pub fn program(env: super::Env<'_>) -> String {
    env("CREDCACHE_AZD").unwrap_or_else(|| "azd".to_owned())
}

pub async fn fetch(
    program: &str,
    tenant: Option<&str>,
    scope: &str,
    cx: &FetchContext<'_>,
) -> Result<Fetched, FetchError> {
    let _permit = crate::http::upstream_permit().await;
    let mut args: Vec<String> = ["auth", "token", "--output", "json", "--scope", scope]
        .map(str::to_owned)
        .to_vec();
    if let Some(tenant) = tenant {
        args.extend(["--tenant-id".to_owned(), tenant.to_owned()]);
    }
    let (status, out, err) =
        crate::providers::process::run(program, &args, WHAT, cx.timeout, |e| {
            cannot_run(program, e)
        })
        .await?;
    if !status.success() {
        return Err(failure(status.code(), &out, &err));
    }
    parse_output(&out, cx.now)
}

fn cannot_run(program: &str, e: &std::io::Error) -> FetchError {
    let overridden = program != "azd";
    if e.kind() == std::io::ErrorKind::NotFound && !overridden {
        return FetchError::config(
            "the Azure Developer CLI (azd) is not installed or not on the daemon's PATH: install \
             it, or set CREDCACHE_AZD to its path and run `credcache daemon restart`",
        );
    }
    let what = if overridden {
        format!("CREDCACHE_AZD names {:?}, which", sanitize(program, 200))
    } else {
        "the Azure Developer CLI (azd)".to_owned()
    };
    FetchError::config(format!("{what} cannot be run: {e}"))
}

/// A non-zero exit: "not logged in" said plainly, else azd's first line.
/// With `--output json` azd may put its error on stdout, as JSON; neither
/// stream can hold a token when it failed.
fn failure(code: Option<i32>, stdout: &[u8], stderr: &[u8]) -> FetchError {
    let err = String::from_utf8_lossy(stderr);
    let out = String::from_utf8_lossy(stdout);
    let said = err
        .lines()
        .chain(out.lines())
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| format!(" ({})", sanitize(l, 200)))
        .unwrap_or_default();
    let both = format!("{err}\n{out}").to_ascii_lowercase();
    if both.contains("azd auth login") || both.contains("not logged in") {
        return FetchError::permanent(format!("azd is not logged in: run `azd auth login`{said}"));
    }
    let how = crate::providers::process::how_it_ended(code);
    FetchError::transient(format!("{WHAT} {how}{said}"))
}

/// Reads `{"token": ..., "expiresOn": RFC 3339}`. Nothing of the output
/// goes into an error: it holds the token.
pub(crate) fn parse_output(out: &[u8], now: DateTime<Utc>) -> Result<Fetched, FetchError> {
    let bad = |why: String| FetchError::transient(format!("{WHAT} printed {why}"));
    let v: Value = crate::providers::process::json_output(out).map_err(bad)?;
    let token = match v.get("token") {
        Some(Value::String(t)) if !t.is_empty() => Secret::new(t.clone()),
        Some(_) => return Err(bad("a token that is not a non-empty string".into())),
        None => return Err(bad("no token".into())),
    };
    let expires_on = match v.get("expiresOn") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(bad("an expiresOn that is not a string".into())),
        None => return Err(bad("no expiresOn".into())),
    };
    let expires_at = credcache_shared::time::parse_rfc3339("expiresOn", expires_on)
        .map_err(|e| bad(e.to_string()))?;
    let expires_at = within_lifetime("expiresOn", expires_at, now)
        .map_err(|why| FetchError::transient(format!("{WHAT}: {why}")))?;
    Ok(Fetched::new(token, expires_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ErrorClass;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_880_000_000, 0).unwrap()
    }

    #[test]
    fn reads_token_and_expires_on_in_any_rfc3339_form() {
        for on in [
            "2029-07-29T09:00:00Z",
            "2029-07-29T09:00:00.0000000Z",
            "2029-07-29T11:00:00+02:00",
        ] {
            let out = format!(r#"{{"token":"eyJ.azd","expiresOn":"{on}"}}"#);
            let f = parse_output(out.as_bytes(), now()).unwrap();
            assert_eq!(f.token.expose(), "eyJ.azd");
            assert_eq!(f.expires_at.timestamp(), 1_880_010_000, "{on}");
        }
    }

    #[test]
    fn bad_output_names_the_field_and_never_echoes_it() {
        for (out, want) in [
            (r#"{"token":"eyJ.secret"}"#, "no expiresOn"),
            (
                r#"{"token":"eyJ.secret","expiresOn":"tomorrow"}"#,
                "expiresOn",
            ),
            (
                r#"{"token":"eyJ.secret","expiresOn":1893459600}"#,
                "expiresOn that is not a string",
            ),
            (r#"{"expiresOn":"2029-07-29T09:00:00Z"}"#, "no token"),
            (r#"{"token":"eyJ.secret""#, "not JSON"),
            (
                r#"{"token":"eyJ.secret","expiresOn":"2099-01-01T00:00:00Z"}"#,
                "more than 366 days ahead",
            ),
        ] {
            let e = parse_output(out.as_bytes(), now()).unwrap_err();
            assert!(e.message.contains(want), "{out}: {}", e.message);
            assert!(!e.message.contains("eyJ"), "{}", e.message);
        }
    }

    #[test]
    fn not_logged_in_is_said_plainly_from_either_stream() {
        let e = failure(
            Some(1),
            b"",
            b"ERROR: fetching token: not logged in, run `azd auth login` to login\n",
        );
        assert_eq!(e.class, ErrorClass::Permanent);
        assert!(
            e.message
                .starts_with("azd is not logged in: run `azd auth login` (ERROR: fetching token"),
            "{}",
            e.message
        );
        let e = failure(
            Some(1),
            br#"{"type":"consoleMessage","data":{"message":"ERROR: not logged in, run `azd auth login` to login"}}"#,
            b"",
        );
        assert_eq!(e.class, ErrorClass::Permanent);
        let e = failure(Some(3), b"", b"ERROR: the network is down\n");
        assert_eq!(e.class, ErrorClass::Transient);
        assert_eq!(
            e.message,
            "`azd auth token` exited with status 3 (ERROR: the network is down)"
        );
    }
}
