//! The `executable` credential source of an `external_account` file: a
//! program run (no shell) for the subject token, only when
//! `GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1` is in the daemon's
//! environment, with the protocol's variables, bounded by
//! `timeout_millis`; its JSON answer (or a still-valid `output_file`) is
//! read by [`parse_response`].

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::http;
use crate::providers::{FetchError, process};

/// The variable that must be `1` for an executable source to run.
pub(crate) const ALLOW: &str = "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const MIN_TIMEOUT_MS: u64 = 5_000;
const MAX_TIMEOUT_MS: u64 = 120_000;

/// An `executable` credential source.
#[derive(Debug, PartialEq)]
pub(crate) struct Executable {
    pub command: String,
    pub timeout: Duration,
    pub output_file: Option<String>,
}

impl Executable {
    /// Reads `credential_source.executable`; `Err` is the message.
    pub fn parse(v: &Value) -> Result<Self, String> {
        let command = v
            .get("command")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or("credential_source.executable has no command")?
            .to_owned();
        let timeout = match v.get("timeout_millis") {
            None | Some(Value::Null) => DEFAULT_TIMEOUT,
            Some(t) => match t.as_u64() {
                Some(ms) if (MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&ms) => {
                    Duration::from_millis(ms)
                }
                _ => {
                    return Err(format!(
                        "credential_source.executable.timeout_millis must be a number from {MIN_TIMEOUT_MS} to {MAX_TIMEOUT_MS}"
                    ));
                }
            },
        };
        let output_file = match v.get("output_file") {
            None | Some(Value::Null) => None,
            Some(f) => Some(
                f.as_str()
                    .filter(|f| !f.is_empty())
                    .ok_or("credential_source.executable.output_file is not a path")?
                    .to_owned(),
            ),
        };
        Ok(Self {
            command,
            timeout,
            output_file,
        })
    }
}

/// A successful answer: the subject token and when it expires (Unix
/// seconds), if said.
#[derive(Debug)]
pub(crate) struct Subject {
    pub token: String,
    pub expires: Option<i64>,
}

/// Reads the executable's JSON answer at `now` (Unix seconds). A failure
/// answer is an error quoting its code and message; `need_expiry` (an
/// `output_file` is set) makes `expiration_time` required. The error never
/// quotes a token.
pub(crate) fn parse_response(bytes: &[u8], now: i64, need_expiry: bool) -> Result<Subject, String> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|_| "its output is not JSON".to_owned())?;
    if !v.is_object() {
        return Err("its output is not a JSON object".into());
    }
    match v.get("version").and_then(Value::as_u64) {
        Some(1) => {}
        Some(n) => return Err(format!("its output has version {n}; only 1 is known")),
        None => return Err("its output has no version".into()),
    }
    let text = |k: &str| v.get(k).and_then(Value::as_str);
    match v.get("success").and_then(Value::as_bool) {
        Some(true) => {}
        Some(false) => {
            let code = text("code").map_or_else(|| "?".to_owned(), |c| http::sanitize(c, 40));
            let message = text("message")
                .map_or_else(|| "(no message)".to_owned(), |m| http::sanitize(m, 300));
            return Err(format!("it failed: code {code}: {message}"));
        }
        None => return Err("its output has no success".into()),
    }
    let field = match text("token_type") {
        Some(
            "urn:ietf:params:oauth:token-type:jwt" | "urn:ietf:params:oauth:token-type:id_token",
        ) => "id_token",
        Some("urn:ietf:params:oauth:token-type:saml2") => "saml_response",
        Some(other) => {
            return Err(format!(
                "its output has token_type {:?}, not a jwt, id_token or saml2 token type",
                http::sanitize(other, 80)
            ));
        }
        None => return Err("its output has no token_type".into()),
    };
    let token = text(field)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("its output has no {field}"))?
        .to_owned();
    let expires = match v.get("expiration_time") {
        None | Some(Value::Null) => None,
        Some(e) => Some(
            e.as_i64()
                .ok_or("its output's expiration_time is not a number of seconds")?,
        ),
    };
    match expires {
        None if need_expiry => {
            Err("its output has no expiration_time, which an output_file requires".into())
        }
        Some(e) if e <= now => Err("its token has expired".into()),
        _ => Ok(Subject { token, expires }),
    }
}

/// What the program is told: the file's audience and token type, the
/// impersonated account if any, the output file if any.
pub(crate) struct Call<'a> {
    pub audience: &'a str,
    pub token_type: &'a str,
    pub impersonated_email: Option<&'a str>,
}

/// The subject token: from a valid `output_file`, else by running the
/// program for `timeout_millis`, but never past `limit` (the fetch's own
/// bound, `http_timeout`). `path` is the key file (for messages).
pub(crate) async fn subject_token(
    exe: &Executable,
    call: &Call<'_>,
    now: i64,
    limit: Duration,
    path: &Path,
) -> Result<String, FetchError> {
    if std::env::var(ALLOW).as_deref() != Ok("1") {
        return Err(FetchError::config(format!(
            "key file {}: credential_source is an executable, which runs only when {ALLOW}=1 is in credcached's environment",
            path.display()
        )));
    }
    if let Some(out) = &exe.output_file
        && let Ok(bytes) = crate::files::read(Path::new(out)).await
        && let Ok(subject) = parse_response(&bytes, now, true)
    {
        return Ok(subject.token);
    }
    let mut words = exe.command.split_whitespace().map(str::to_owned);
    let program = words.next().unwrap_or_default();
    let args: Vec<String> = words.collect();
    let what = format!("the executable {:?}", http::sanitize(&program, 100));
    let mut env = vec![
        ("GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE", call.audience.to_owned()),
        (
            "GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE",
            call.token_type.to_owned(),
        ),
        ("GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE", "0".to_owned()),
    ];
    if let Some(email) = call.impersonated_email {
        env.push((
            "GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL",
            email.to_owned(),
        ));
    }
    if let Some(out) = &exe.output_file {
        env.push(("GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE", out.clone()));
    }
    let (status, out, err) =
        process::run_with_env(&program, &args, &env, &what, exe.timeout.min(limit), |e| {
            FetchError::config(format!("cannot run {what}: {e}"))
        })
        .await?;
    let parsed = parse_response(&out, now, exe.output_file.is_some());
    if let Err(why) = &parsed
        && why.starts_with("it failed")
    {
        return Err(FetchError::transient(format!("{what}: {why}")));
    }
    if !status.success() {
        let first = String::from_utf8_lossy(&err);
        let first = first.lines().next().unwrap_or("").trim();
        return Err(FetchError::transient(format!(
            "{what} exited with {status}{}{}",
            if first.is_empty() { "" } else { ": " },
            http::sanitize(first, 200)
        )));
    }
    parsed
        .map(|s| s.token)
        .map_err(|why| FetchError::transient(format!("{what}: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn parse(v: Value, need: bool) -> Result<Subject, String> {
        parse_response(v.to_string().as_bytes(), NOW, need)
    }

    #[test]
    fn a_success_gives_the_token_and_its_expiry() {
        let s = parse(
            serde_json::json!({"version": 1, "success": true,
                "token_type": "urn:ietf:params:oauth:token-type:id_token",
                "id_token": "eyJ.x.y", "expiration_time": NOW + 60}),
            true,
        )
        .unwrap();
        assert_eq!((s.token.as_str(), s.expires), ("eyJ.x.y", Some(NOW + 60)));
        let s = parse(
            serde_json::json!({"version": 1, "success": true,
                "token_type": "urn:ietf:params:oauth:token-type:saml2",
                "saml_response": "PHNhbWw+"}),
            false,
        )
        .unwrap();
        assert_eq!((s.token.as_str(), s.expires), ("PHNhbWw+", None));
    }

    #[test]
    fn failures_and_bad_answers_are_one_line_without_the_token() {
        let m = parse(
            serde_json::json!({"version": 1, "success": false, "code": "401", "message": "no\nsession"}),
            false,
        )
        .unwrap_err();
        assert!(
            m.contains("code 401") && m.contains("no") && !m.contains('\n'),
            "{m}"
        );
        for (v, want) in [
            (serde_json::json!({"success": true}), "no version"),
            (
                serde_json::json!({"version": 2, "success": true}),
                "version 2",
            ),
            (
                serde_json::json!({"version": 1, "success": true, "token_type": "urn:ietf:params:oauth:token-type:jwt"}),
                "no id_token",
            ),
            (
                serde_json::json!({"version": 1, "success": true, "token_type": "x", "id_token": "SECRET"}),
                "token_type",
            ),
            (
                serde_json::json!({"version": 1, "success": true, "token_type": "urn:ietf:params:oauth:token-type:jwt", "id_token": "SECRET"}),
                "requires",
            ),
            (
                serde_json::json!({"version": 1, "success": true, "token_type": "urn:ietf:params:oauth:token-type:jwt", "id_token": "SECRET", "expiration_time": NOW}),
                "expired",
            ),
        ] {
            let m = parse(v, true).unwrap_err();
            assert!(m.contains(want), "{m}");
            assert!(!m.contains("SECRET"), "{m}");
        }
        assert!(parse_response(b"not json", NOW, false).is_err());
    }

    #[test]
    fn the_source_is_read_with_the_protocol_bounds() {
        let e = Executable::parse(&serde_json::json!({"command": "/bin/t --x 1"})).unwrap();
        assert_eq!(e.timeout, Duration::from_secs(30));
        assert_eq!(e.output_file, None);
        let e = Executable::parse(
            &serde_json::json!({"command": "t", "timeout_millis": 5000, "output_file": "/tmp/o"}),
        )
        .unwrap();
        assert_eq!(
            (e.timeout, e.output_file.as_deref()),
            (Duration::from_secs(5), Some("/tmp/o"))
        );
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"command": " "}),
            serde_json::json!({"command": "t", "timeout_millis": 4999}),
            serde_json::json!({"command": "t", "timeout_millis": 120001}),
        ] {
            assert!(Executable::parse(&bad).is_err(), "{bad}");
        }
    }
}
