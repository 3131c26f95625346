//! The client's error type and its exit codes.
//!
//! Exit codes are an API (docs/cli.md, exit codes): scripts and `kubectl` branch on them.
//! [`Error::exit_code`] is the one place an error becomes a code, and
//! [`Error::report`] the one place it becomes text on stderr: one line per
//! message, `credcache: <what happened>: <why>`. No variant ever holds a
//! token value; the daemon's messages carry none either (docs/behaviour.md).

use std::io::Write;

use credcache_shared::protocol::{ErrorKind, WireError};

/// Success.
pub const OK: u8 = 0;
/// Any failure without a more specific code.
pub const OTHER: u8 = 1;
/// A bad command line or an invalid config file.
pub const USAGE: u8 = 2;
/// No daemon answers: auto-start is off, or it failed.
pub const UNREACHABLE: u8 = 3;
/// No credential of that name is configured.
pub const NO_SUCH_CREDENTIAL: u8 = 4;
/// The upstream fetch failed and no valid cached token exists.
pub const UPSTREAM: u8 = 5;

/// Why a command failed.
#[derive(Debug)]
pub enum Error {
    /// The command line makes no sense (a bad flag value, a missing name).
    Usage(String),
    /// The config file is invalid: one message per problem.
    Config(Vec<String>),
    /// No daemon answers, it could not be started, it speaks another
    /// protocol, or the connection broke.
    Unreachable(String),
    /// The daemon took a request and did not answer it in time.
    NoAnswer(String),
    /// The daemon answered the request with an error; `context` says what
    /// the client was doing ("cannot get a token for gcp").
    Daemon { context: String, error: WireError },
    /// Anything else.
    Other(String),
    /// Stdout was closed under us (`credcache list | head -1`): not a
    /// failure, and nothing to say about it.
    BrokenPipe,
}

impl Error {
    /// The exit code for this error: the single mapping docs/cli.md documents.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::Config(_) => USAGE,
            Self::Unreachable(_) | Self::NoAnswer(_) => UNREACHABLE,
            Self::Daemon { error, .. } => match error.kind {
                ErrorKind::NoSuchCredential => NO_SUCH_CREDENTIAL,
                ErrorKind::Upstream => UPSTREAM,
                ErrorKind::Config => USAGE,
                ErrorKind::Busy => UNREACHABLE,
                ErrorKind::BadRequest | ErrorKind::ShuttingDown | ErrorKind::Internal => OTHER,
            },
            Self::Other(_) => OTHER,
            Self::BrokenPipe => OK,
        }
    }

    /// The messages to print, without the `credcache: ` prefix.
    pub fn messages(&self) -> Vec<String> {
        match self {
            Self::Usage(m) | Self::Unreachable(m) | Self::NoAnswer(m) | Self::Other(m) => {
                vec![one_line(m)]
            }
            Self::Config(lines) => lines.iter().map(|l| one_line(l)).collect(),
            Self::Daemon { context, error } => {
                vec![one_line(&format!("{context}: {}", error.message))]
            }
            Self::BrokenPipe => Vec::new(),
        }
    }

    /// Prints the messages on stderr, each prefixed with the program name.
    pub fn report(&self) {
        let mut stderr = std::io::stderr().lock();
        for message in self.messages() {
            // Nowhere left to complain to if stderr itself is gone.
            let _ = writeln!(stderr, "credcache: {message}");
        }
    }
}

/// Folds a message onto one line: a stray newline from an upstream body
/// must not break the one-line-per-error rule.
fn one_line(message: &str) -> String {
    if !message.contains(['\n', '\r']) {
        return message.to_owned();
    }
    message
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon(kind: ErrorKind) -> Error {
        Error::Daemon {
            context: "cannot get gcp".into(),
            error: WireError::new(kind, "why"),
        }
    }

    #[test]
    fn every_error_maps_to_its_documented_code() {
        let cases = [
            (Error::Usage("x".into()), 2),
            (Error::Config(vec!["x".into()]), 2),
            (Error::Unreachable("x".into()), 3),
            (Error::NoAnswer("x".into()), 3),
            (Error::Other("x".into()), 1),
            (Error::BrokenPipe, 0),
            (daemon(ErrorKind::NoSuchCredential), 4),
            (daemon(ErrorKind::Upstream), 5),
            (daemon(ErrorKind::Config), 2),
            (daemon(ErrorKind::BadRequest), 1),
            (daemon(ErrorKind::ShuttingDown), 1),
            (daemon(ErrorKind::Internal), 1),
            (daemon(ErrorKind::Busy), 3),
        ];
        for (err, code) in cases {
            assert_eq!(err.exit_code(), code, "{err:?}");
        }
    }

    #[test]
    fn daemon_errors_read_what_then_why() {
        let err = Error::Daemon {
            context: "cannot get corp".into(),
            error: WireError::new(
                ErrorKind::Upstream,
                "token request failed: AADSTS7000215: Invalid client secret",
            ),
        };
        assert_eq!(
            err.messages(),
            ["cannot get corp: token request failed: AADSTS7000215: Invalid client secret"]
        );
    }

    #[test]
    fn messages_are_single_lines() {
        let err = Error::Other("upstream said:\n  bad\r\nthings".into());
        assert_eq!(err.messages(), ["upstream said: bad things"]);
        let err = Error::Config(vec!["a: b: c".into(), "d: e: f".into()]);
        assert_eq!(err.messages().len(), 2);
        assert!(Error::BrokenPipe.messages().is_empty());
    }
}
