//! `kind = "command"`: the escape hatch. Runs a program (never through a
//! shell) whose stdout is a raw token, or JSON `{"token", "expires_at"}`.
//! The output is read from a pipe and never logged; only the first line of
//! stderr, cleaned, reaches an error message.

use chrono::Duration;
use credcache_shared::Secret;
use credcache_shared::config::CommandSettings;
use serde::Deserialize;

use super::{BoxFuture, FetchContext, FetchError, Fetched, MAX_LIFETIME, Provider, process};
use crate::http::sanitize;

pub struct CommandProvider {
    settings: CommandSettings,
}

impl CommandProvider {
    pub fn new(settings: CommandSettings) -> Self {
        Self { settings }
    }
}

#[derive(Deserialize)]
struct JsonOutput {
    token: String,
    expires_at: Option<String>,
}

impl Provider for CommandProvider {
    fn fetch<'a>(&'a self, cx: &'a FetchContext<'a>) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        Box::pin(async move {
            let program = &self.settings.command[0];
            let _permit = crate::http::upstream_permit().await;
            let what = format!("command {program:?}");
            let (status, out, err) = process::run(
                program,
                &self.settings.command[1..],
                &what,
                cx.timeout,
                |e| FetchError::config(format!("cannot run {program:?}: {e}")),
            )
            .await?;
            if !status.success() {
                let first = String::from_utf8_lossy(&err)
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .map(|l| sanitize(l, 200))
                    .unwrap_or_default();
                let how = super::process::how_it_ended(status.code());
                let why = if first.is_empty() {
                    String::new()
                } else {
                    format!(": {first}")
                };
                return Err(FetchError::transient(format!(
                    "command {program:?} {how}{why}"
                )));
            }
            parse_output(program, &out, cx.now, self.settings.lifetime)
        })
    }
}

pub(crate) fn parse_output(
    program: &str,
    out: &[u8],
    now: chrono::DateTime<chrono::Utc>,
    lifetime: std::time::Duration,
) -> Result<Fetched, FetchError> {
    let text = std::str::from_utf8(out).map_err(|_| {
        FetchError::transient(format!(
            "command {program:?} printed something that is not UTF-8"
        ))
    })?;
    let text = text.trim();
    // The program's expiry, and the configured `lifetime` (unbounded in the
    // config), are capped at MAX_LIFETIME rather than refused: the program
    // may print a long-lived token's real expiry, and taking it as a year
    // only means one more run of the program. Uncapped, a lifetime of
    // "300000 years" overflowed `now + lifetime` and panicked.
    let latest = now + MAX_LIFETIME;
    let default_expiry = Duration::from_std(lifetime)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .map_or(latest, |t| t.min(latest));
    if text.starts_with('{') {
        let parsed: JsonOutput = serde_json::from_str(text).map_err(|e| {
            FetchError::transient(format!(
                "command {program:?} printed JSON without a usable token: {}",
                sanitize(&e.to_string(), 100)
            ))
        })?;
        if parsed.token.trim().is_empty() {
            return Err(FetchError::transient(format!(
                "command {program:?} printed an empty token"
            )));
        }
        let expires_at = match parsed.expires_at {
            Some(t) => credcache_shared::time::parse_rfc3339("expires_at", &t)
                .map_err(|e| FetchError::transient(format!("command {program:?}: {e}")))?
                .min(latest),
            None => default_expiry,
        };
        return Ok(Fetched::new(Secret::new(parsed.token), expires_at));
    }
    if text.is_empty() {
        return Err(FetchError::transient(format!(
            "command {program:?} printed nothing"
        )));
    }
    if text.contains(['\n', '\r']) {
        return Err(FetchError::transient(format!(
            "command {program:?} printed several lines; print just the token, or JSON {{\"token\": ..., \"expires_at\": ...}}"
        )));
    }
    Ok(Fetched::new(Secret::new(text), default_expiry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_json_outputs() {
        // Less than a year before the expiry below.
        let now = chrono::DateTime::from_timestamp(1_880_000_000, 0).unwrap();
        let life = std::time::Duration::from_secs(60);
        let f = parse_output("p", b"  tok-123\n", now, life).unwrap();
        assert_eq!(f.token.expose(), "tok-123");
        assert_eq!(f.expires_at, now + Duration::seconds(60));
        let f = parse_output(
            "p",
            br#"{"token":"t","expires_at":"2030-01-02T03:04:05.1234567Z"}"#,
            now,
            life,
        )
        .unwrap();
        assert_eq!(
            credcache_shared::time::format_rfc3339(f.expires_at),
            "2030-01-02T03:04:05.123456700Z"
        );
        for (bad, why) in [
            (&b""[..], "printed nothing"),
            (b"a\nb", "several lines"),
            (
                br#"{"token":"t","expires_at":"tomorrow"}"#,
                "expires_at: \"tomorrow\"",
            ),
            (br#"{"tok":"t"}"#, "without a usable token"),
            (b"\xff\xfe", "not UTF-8"),
        ] {
            let e = parse_output("p", bad, now, life).unwrap_err();
            assert!(e.message.contains(why), "{}", e.message);
            assert!(!e.message.contains("tok-"), "no token in errors");
        }
    }

    /// Found by the `command_output` fuzz target: a `lifetime` of about
    /// 300,000 years (which the config accepts) overflowed `now + lifetime`
    /// and panicked; an `expires_at` in 6434 was cached as if real.
    #[test]
    fn a_huge_lifetime_or_expiry_is_capped_not_an_overflow() {
        let now = chrono::Utc::now();
        let huge = std::time::Duration::from_secs(9_999_999_999_999);
        let f = parse_output("p", b"tok", now, huge).unwrap();
        assert_eq!(f.expires_at, now + MAX_LIFETIME);
        let f = parse_output("p", b"tok", now, std::time::Duration::MAX).unwrap();
        assert_eq!(f.expires_at, now + MAX_LIFETIME);
        let out = br#"{"token":"t","expires_at":"6434-06-01T01:00:00Z"}"#;
        let f = parse_output("p", out, now, std::time::Duration::from_secs(60)).unwrap();
        assert_eq!(f.expires_at, now + MAX_LIFETIME);
    }

    /// `fetch` running real programs (through `sh -c` here, as a user's
    /// `command` may name a script).
    mod fetch {
        use super::*;
        use crate::fetch_error::ErrorClass;
        use crate::providers::testing::Harness;
        #[cfg(unix)]
        use crate::providers::testing::now;

        #[cfg(unix)]
        fn provider(script: &str) -> CommandProvider {
            CommandProvider::new(CommandSettings {
                command: vec!["sh".into(), "-c".into(), script.into()],
                lifetime: std::time::Duration::from_secs(3600),
            })
        }

        #[cfg(unix)] // `sh -c`
        #[tokio::test]
        async fn a_printed_token_lives_the_configured_lifetime() {
            let h = Harness::new();
            let f = provider("echo ' tok3n '").fetch(&h.cx()).await.unwrap();
            assert_eq!(f.token.expose(), "tok3n");
            assert_eq!(f.expires_at, now() + Duration::hours(1));
        }

        #[cfg(unix)] // `sh -c`
        #[tokio::test]
        async fn a_failure_says_the_status_and_the_first_stderr_line() {
            let h = Harness::new();
            let e = provider("echo >&2; echo 'vault sealed' >&2; echo more >&2; exit 3")
                .fetch(&h.cx())
                .await
                .unwrap_err();
            assert_eq!(e.class, ErrorClass::Transient);
            assert_eq!(
                e.message,
                r#"command "sh" exited with status 3: vault sealed"#
            );
        }

        #[tokio::test]
        async fn a_program_that_cannot_run_is_a_config_error() {
            let h = Harness::new();
            let e = CommandProvider::new(CommandSettings {
                command: vec!["/nonexistent/credcache-helper".into()],
                lifetime: std::time::Duration::from_secs(60),
            })
            .fetch(&h.cx())
            .await
            .unwrap_err();
            assert_eq!(e.class, ErrorClass::Config);
            assert!(
                e.message
                    .starts_with(r#"cannot run "/nonexistent/credcache-helper""#),
                "{}",
                e.message
            );
        }
    }
}
