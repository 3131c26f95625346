//! The one line `credcached --detach` writes to the client that started
//! it, then closes its stdout: `ready PID` once its socket listens,
//! `running PID` when another daemon already serves the socket, or
//! `error: MESSAGE`. The daemon writes it with `Display`, the client reads
//! it with `FromStr`; anything else (silence included) is a failure the
//! client reports.

use std::fmt;
use std::str::FromStr;

/// What a detached daemon says about its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// `ready PID`: it started and its socket listens.
    Ready { pid: u32 },
    /// `running PID`: another daemon already serves the socket (pid 0
    /// when its lock file did not say).
    Running { pid: u32 },
    /// `error: MESSAGE`: it could not start.
    Failed { message: String },
}

/// A readiness line that is none of the three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadinessError {
    /// Stdout closed without a line.
    #[error("no readiness line")]
    Silent,
    /// Anything else: a broken or foreign `credcached`. `text` is cut short.
    #[error("{text:?} is not `ready <pid>`")]
    Garbled { text: String },
}

/// The most of a garbled line kept for the message.
const SHOWN: usize = 200;

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ready { pid } => write!(f, "ready {pid}"),
            Self::Running { pid } => write!(f, "running {pid}"),
            // One line whatever the message holds: the reader stops at the
            // first line break.
            Self::Failed { message } => write!(f, "error: {}", message.replace(['\n', '\r'], " ")),
        }
    }
}

impl FromStr for Readiness {
    type Err = ReadinessError;

    /// Reads one line, with or without its line break.
    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            return Err(ReadinessError::Silent);
        }
        if let Some(message) = line.strip_prefix("error:") {
            return Ok(Self::Failed {
                message: message.trim().to_owned(),
            });
        }
        let pid = |rest: &str| rest.trim().parse::<u32>().ok();
        if let Some(pid) = line.strip_prefix("ready ").and_then(pid) {
            return Ok(Self::Ready { pid });
        }
        if let Some(pid) = line.strip_prefix("running ").and_then(pid) {
            return Ok(Self::Running { pid });
        }
        Err(ReadinessError::Garbled {
            text: line.chars().take(SHOWN).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_readiness_line() {
        assert_eq!("ready 4242\n".parse(), Ok(Readiness::Ready { pid: 4242 }));
        assert_eq!("running 17\r\n".parse(), Ok(Readiness::Running { pid: 17 }));
        assert_eq!(
            "error: /tmp/credcache-1000: is writable by group or others\n".parse(),
            Ok(Readiness::Failed {
                message: "/tmp/credcache-1000: is writable by group or others".into()
            })
        );
        assert_eq!("".parse::<Readiness>(), Err(ReadinessError::Silent));
        assert_eq!("\n".parse::<Readiness>(), Err(ReadinessError::Silent));
        for garbled in ["ready soon", "ready -1", "ready", "Listening on /run/x"] {
            assert_eq!(
                garbled.parse::<Readiness>(),
                Err(ReadinessError::Garbled {
                    text: garbled.into()
                })
            );
        }
        let long = "x".repeat(1000);
        let Err(ReadinessError::Garbled { text }) = long.parse::<Readiness>() else {
            panic!("garbled");
        };
        assert_eq!(text.len(), SHOWN);
    }

    #[test]
    fn what_the_daemon_writes_the_client_reads_back() {
        for line in [
            Readiness::Ready { pid: 1 },
            Readiness::Running { pid: 0 },
            Readiness::Running { pid: u32::MAX },
            Readiness::Failed {
                message: "config: c.toml: credentials.x.kind: unknown kind".into(),
            },
        ] {
            let text = line.to_string();
            assert!(!text.contains('\n'), "{text:?}");
            assert_eq!(text.parse(), Ok(line));
        }
        assert_eq!(Readiness::Ready { pid: 7 }.to_string(), "ready 7");
        assert_eq!(Readiness::Running { pid: 8 }.to_string(), "running 8");
    }

    #[test]
    fn a_failure_message_stays_on_one_line() {
        let line = Readiness::Failed {
            message: "first\nsecond\r\nthird".into(),
        }
        .to_string();
        assert_eq!(line, "error: first second  third");
        assert_eq!(
            line.parse(),
            Ok(Readiness::Failed {
                message: "first second  third".into()
            })
        );
    }
}
