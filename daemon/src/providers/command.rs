//! `kind = "command"`: the escape hatch. Runs a program (never through a
//! shell) whose stdout is a raw token, or JSON `{"token", "expires_at"}`.
//! The output is read from a pipe and never logged; only the first line of
//! stderr, cleaned, reaches an error message.

use std::process::Stdio;

use chrono::Duration;
use credcache_shared::Secret;
use credcache_shared::config::CommandSettings;
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use super::{BoxFuture, FetchContext, FetchError, Fetched, MAX_LIFETIME, Provider};
use crate::http::{MAX_BODY, sanitize};

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
            let (status, out, err) = run(program, &self.settings.command[1..], cx.timeout).await?;
            if !status.success() {
                let first = String::from_utf8_lossy(&err)
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .map(|l| sanitize(l, 200))
                    .unwrap_or_default();
                let how = match status.code() {
                    Some(code) => format!("exited with status {code}"),
                    None => "was killed by a signal".to_owned(),
                };
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

/// How long output is still read once the program has exited: what it
/// wrote is in the pipe already, so this only matters when something it
/// left running still holds its stdout.
const DRAIN: std::time::Duration = std::time::Duration::from_millis(200);

/// The most stderr kept (only its first line is ever shown).
const MAX_STDERR: usize = 64 * 1024;

/// Runs `program` in a process group of its own, with `timeout`. Returns
/// once the program has exited and its output is read: at EOF, or after
/// [`DRAIN`] if a child it left holds the pipe. On timeout, more than
/// [`MAX_BODY`] bytes of output, a pipe still held after the drain, or the
/// fetch being dropped, the whole group is killed, so nothing is left
/// behind.
pub(crate) async fn run(
    program: &str,
    args: &[String],
    timeout: std::time::Duration,
) -> Result<(std::process::ExitStatus, Vec<u8>, Vec<u8>), FetchError> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| FetchError::config(format!("cannot run {program:?}: {e}")))?;
    let mut group = GroupGuard(child.id());
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(FetchError::transient(format!(
            "cannot read the output of {program:?}"
        )));
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let timed_out = || {
        FetchError::transient(format!(
            "command {program:?} did not finish within {} s; killed it and its process group",
            timeout.as_secs()
        ))
    };
    let read_error = |e: std::io::Error| {
        FetchError::transient(format!("reading the output of {program:?}: {e}"))
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut held = false;
    let exited = {
        // Read while waiting, so a program printing more than a pipe holds
        // is not stuck. `read_to_end` keeps what it read if dropped.
        let reading = async {
            let mut o = (&mut stdout).take(MAX_BODY as u64 + 1);
            let mut e = (&mut stderr).take(MAX_STDERR as u64);
            // Too much on stdout ends the wait at once (`try_join!` stops
            // at the first error), whatever stderr is doing.
            let out_read = async {
                match o.read_to_end(&mut out).await? {
                    n if n > MAX_BODY => Err(std::io::Error::other("too much output")),
                    n => Ok(n),
                }
            };
            tokio::try_join!(out_read, e.read_to_end(&mut err))
        };
        tokio::pin!(reading);
        tokio::select! {
            read = &mut reading => Err(read.err()),
            status = child.wait() => Ok(status),
            () = tokio::time::sleep_until(deadline) => return Err(timed_out()),
        }
    };
    if out.len() > MAX_BODY {
        return Err(FetchError::transient(format!(
            "command {program:?} printed more than {MAX_BODY} bytes (1 MiB); killed it"
        )));
    }
    // Both pipes at end of file, or a read error: either way no exit yet.
    let exited = match exited {
        Ok(status) => Some(status),
        Err(Some(e)) => return Err(read_error(e)),
        Err(None) => None,
    };
    let status = match exited {
        Some(status) => {
            // Exited: take what is buffered, but do not wait for whatever
            // it left behind to close the pipe.
            let (out_room, err_room) = (MAX_BODY + 1 - out.len(), MAX_STDERR.saturating_sub(err.len()));
            let rest = async {
                let mut o = (&mut stdout).take(out_room as u64);
                let mut e = (&mut stderr).take(err_room as u64);
                tokio::try_join!(o.read_to_end(&mut out), e.read_to_end(&mut err))
            };
            match tokio::time::timeout(DRAIN, rest).await {
                Ok(read) => {
                    read.map_err(read_error)?;
                }
                // Something it started still holds the pipe: end it (and
                // the rest of the group) once the status is taken.
                Err(_) => {
                    tracing::info!(
                        "command {program:?} exited but left a process holding its output; killing its process group"
                    );
                    held = true;
                }
            }
            if out.len() > MAX_BODY {
                return Err(FetchError::transient(format!(
                    "command {program:?} printed more than {MAX_BODY} bytes (1 MiB)"
                )));
            }
            status
        }
        None => match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(status) => status,
            Err(_) => return Err(timed_out()),
        },
    }
    .map_err(|e| FetchError::transient(format!("waiting for {program:?}: {e}")))?;
    // A process the program left holding the pipe is ended with its
    // group; one that let go of the pipe (a daemon it started, which
    // detached properly) is left alone.
    if held {
        group.kill();
    }
    group.0 = None;
    Ok((status, out, err))
}

/// Kills the program's process group when dropped, unless disarmed
/// (`.0 = None`): on timeout, overflow, an error, or a cancelled fetch.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pid) = self.0.take()
            && let Some(pid) = rustix::process::Pid::from_raw(pid as i32)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
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
        use crate::providers::testing::{Harness, now};

        fn provider(script: &str) -> CommandProvider {
            CommandProvider::new(CommandSettings {
                command: vec!["sh".into(), "-c".into(), script.into()],
                lifetime: std::time::Duration::from_secs(3600),
            })
        }

        #[tokio::test]
        async fn a_printed_token_lives_the_configured_lifetime() {
            let h = Harness::new();
            let f = provider("echo ' tok3n '").fetch(&h.cx()).await.unwrap();
            assert_eq!(f.token.expose(), "tok3n");
            assert_eq!(f.expires_at, now() + Duration::hours(1));
        }

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
