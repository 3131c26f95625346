//! The daemon's protocol spoken directly, as the load generator needs it:
//! a blocking Unix socket, `Hello` once, then requests one at a time. The
//! `Get` frame is encoded once and re-sent, and answers are read through a
//! buffer, so the generator spends its time waiting on the daemon rather
//! than on itself.
//!
//! Answers are awaited with `poll(2)` before reading. A thread blocked in
//! `read` on a Unix stream socket is woken each time the daemon *consumes*
//! its request (the kernel signals write space, `unix_write_space`, to
//! every sleeper on the socket); `poll` for input filters that wake-up out.
//! Without this the daemon's CPU profile is a third spurious wake-ups of
//! the load generator (see BENCHMARKS.md).

use std::io::{self, BufReader};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use credcache_shared::codec::{self, CodecError};
use credcache_shared::protocol::{ErrorKind, Request, Response, TokenReply, WireError};
use credcache_shared::{PROTOCOL_VERSION, VERSION};

/// No answer within this long is an error, so a hung daemon cannot hang
/// the benchmark.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// An open, greeted connection.
pub struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// The daemon's pid, from its `Hello`.
    pub pid: u32,
}

/// Why a request got no token.
#[derive(Debug)]
pub enum Failure {
    /// The daemon answered with an error.
    Daemon(WireError),
    /// The connection broke, timed out, or carried something unreadable.
    Transport(String),
}

impl Failure {
    /// A short stable name for counting failures by kind; the names of
    /// daemon errors are the exit codes the client would give them.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Daemon(e) => match e.kind {
                ErrorKind::Upstream => "upstream_exit5",
                ErrorKind::NoSuchCredential => "no_such_credential_exit4",
                ErrorKind::Config => "config_exit2",
                ErrorKind::BadRequest => "bad_request_exit1",
                _ => "internal_exit1",
            },
            Failure::Transport(_) => "transport_exit3",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Daemon(e) => &e.message,
            Failure::Transport(why) => why,
        }
    }
}

impl Conn {
    /// Connects and says hello.
    pub fn open(socket: &Path) -> Result<Conn, Failure> {
        let stream = UnixStream::connect(socket).map_err(|e| {
            Failure::Transport(format!("cannot connect to {}: {e}", socket.display()))
        })?;
        let transport = |e: io::Error| Failure::Transport(e.to_string());
        stream
            .set_read_timeout(Some(ANSWER_TIMEOUT))
            .map_err(transport)?;
        let writer = stream.try_clone().map_err(transport)?;
        let mut conn = Conn {
            reader: BufReader::new(stream),
            writer,
            pid: 0,
        };
        let hello = codec::encode_frame(&Request::Hello {
            protocol_version: PROTOCOL_VERSION,
            client_version: VERSION.to_owned(),
        })
        .map_err(|e| Failure::Transport(e.to_string()))?;
        match conn.send(&hello)? {
            Response::Hello {
                protocol_version,
                pid,
                ..
            } if protocol_version == PROTOCOL_VERSION => {
                conn.pid = pid;
                Ok(conn)
            }
            other => Err(Failure::Transport(format!(
                "the daemon did not greet us: {}",
                describe(&other)
            ))),
        }
    }

    /// Sends one encoded request frame and reads its answer; an `Error`
    /// answer is a [`Failure::Daemon`].
    pub fn send(&mut self, frame: &[u8]) -> Result<Response, Failure> {
        use std::io::Write as _;
        self.writer
            .write_all(frame)
            .map_err(|e| Failure::Transport(format!("cannot send: {e}")))?;
        if self.reader.buffer().is_empty() {
            wait_readable(&self.writer)?;
        }
        match codec::read_frame::<_, Response>(&mut self.reader) {
            Ok(Some(Response::Error(e))) => Err(Failure::Daemon(e)),
            Ok(Some(response)) => Ok(response),
            Ok(None) => Err(Failure::Transport(
                "the daemon closed the connection".into(),
            )),
            Err(CodecError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(Failure::Transport(format!(
                    "no answer within {}s",
                    ANSWER_TIMEOUT.as_secs()
                )))
            }
            Err(e) => Err(Failure::Transport(e.to_string())),
        }
    }

    /// Sends a pre-encoded `Get` frame (see [`get_frame`]); the token.
    pub fn get(&mut self, frame: &[u8]) -> Result<TokenReply, Failure> {
        match self.send(frame)? {
            Response::Token(reply) => Ok(reply),
            other => Err(Failure::Transport(format!(
                "unexpected answer to Get: {}",
                describe(&other)
            ))),
        }
    }

    /// The socket, for a caller that drives it itself (non-blocking, many
    /// at once). Nothing may be buffered: it is called between requests.
    pub fn into_stream(self) -> UnixStream {
        debug_assert!(self.reader.buffer().is_empty());
        self.reader.into_inner()
    }

    /// Any other request, encoded here.
    pub fn request(&mut self, request: &Request) -> Result<Response, Failure> {
        let frame = codec::encode_frame(request).map_err(|e| Failure::Transport(e.to_string()))?;
        self.send(&frame)
    }
}

/// Blocks until `stream` has input (or an error or hang-up to report),
/// for at most [`ANSWER_TIMEOUT`].
fn wait_readable(stream: &UnixStream) -> Result<(), Failure> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let timeout = Timespec {
        tv_sec: ANSWER_TIMEOUT.as_secs() as i64,
        tv_nsec: 0,
    };
    loop {
        let mut fds = [PollFd::new(stream, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => {
                return Err(Failure::Transport(format!(
                    "no answer within {}s",
                    ANSWER_TIMEOUT.as_secs()
                )));
            }
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                return Err(Failure::Transport(format!(
                    "cannot wait for an answer: {e}"
                )));
            }
        }
    }
}

/// The frame of `Get NAME` with the credential's own `min_valid`.
pub fn get_frame(name: &str) -> Vec<u8> {
    let request = Request::Get {
        name: name.to_owned(),
        min_valid_secs: None,
        refresh: false,
        scopes: Vec::new(),
    };
    // A short name and two small fields: far below the frame limit.
    codec::encode_frame(&request).unwrap_or_default()
}

fn describe(response: &Response) -> &'static str {
    match response {
        Response::Hello { .. } => "Hello",
        Response::VersionMismatch { .. } => {
            "VersionMismatch (rebuild the daemon and the bench together)"
        }
        Response::Token(_) => "Token",
        Response::Credentials(_) => "Credentials",
        Response::Status(_) => "Status",
        Response::Done { .. } => "Done",
        Response::Error(_) => "Error",
        Response::SdkEnv(_) => "SdkEnv",
        Response::Login(_) => "Login",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_frames_decode_to_a_get() {
        let frame = get_frame("bench");
        let back: Request = codec::read_frame(&mut &frame[..]).unwrap().unwrap();
        assert_eq!(
            back,
            Request::Get {
                name: "bench".into(),
                min_valid_secs: None,
                refresh: false,
                scopes: Vec::new(),
            }
        );
    }

    #[test]
    fn failure_kinds_follow_the_clients_exit_codes() {
        let upstream = Failure::Daemon(WireError::new(ErrorKind::Upstream, "500"));
        assert_eq!(upstream.kind(), "upstream_exit5");
        assert_eq!(upstream.message(), "500");
        assert_eq!(Failure::Transport("gone".into()).kind(), "transport_exit3");
    }
}
