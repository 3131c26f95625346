//! A Redis server for `throughput` to compare with: started on a Unix
//! socket in a temp directory (no TCP port, no persistence), holding one
//! key with a value as long as the token credcache serves, and stopped on
//! drop. The generator speaks RESP to it: `GET name`, a bulk string back.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::conn::Failure;

/// How long `redis-server` has to accept a connection.
const START_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_PAUSE: Duration = Duration::from_millis(10);

pub struct Redis {
    child: Child,
    pub socket: PathBuf,
    /// `redis-server --version`'s `v=` field, for the line.
    pub version: String,
    _dir: TempDir,
}

impl Redis {
    /// Starts `redis-server` with `key` set to `value_len` bytes; why not,
    /// as one line (`redis-server is not installed`).
    pub fn start(key: &str, value_len: usize) -> Result<Redis, String> {
        let Some(program) = find_in_path("redis-server") else {
            return Err("redis-server is not installed".into());
        };
        let version = Command::new(&program)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("v=").map(str::to_owned))
            })
            .unwrap_or_default();
        let dir = tempfile::Builder::new()
            .prefix("ccbench-redis")
            .tempdir_in("/tmp")
            .map_err(|e| format!("cannot create a temp directory: {e}"))?;
        let socket = dir.path().join("redis.sock");
        let child = Command::new(&program)
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        let mut redis = Redis {
            child,
            socket,
            version,
            _dir: dir,
        };
        let value = "t".repeat(value_len);
        let reply = redis.call(&["SET", key, &value])?;
        if reply != "+OK" {
            return Err(format!("redis answered SET with {reply:?}"));
        }
        Ok(redis)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One command on a new connection (waiting for the server to listen);
    /// the first line of the answer.
    fn call(&mut self, args: &[&str]) -> Result<String, String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let stream = loop {
            match UnixStream::connect(&self.socket) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("redis-server did not listen: {e}"));
                }
                Err(_) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        return Err(format!("redis-server exited: {status}"));
                    }
                    std::thread::sleep(CONNECT_PAUSE);
                }
            }
        };
        let _ = stream.set_read_timeout(Some(START_TIMEOUT));
        (&stream)
            .write_all(&command(args))
            .map_err(|e| format!("cannot talk to redis-server: {e}"))?;
        let mut line = String::new();
        BufReader::new(&stream)
            .read_line(&mut line)
            .map_err(|e| format!("no answer from redis-server: {e}"))?;
        Ok(line.trim_end().to_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A RESP command: an array of bulk strings.
pub fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    out
}

/// The length of the first whole answer to a `GET` in `buf`, and whether
/// it was a value (a bulk string); `None` until all of it has arrived.
pub fn bulk_answer(buf: &[u8]) -> Option<(usize, Result<(), Failure>)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let Some(len) = head.strip_prefix('$') else {
        // `-ERR ...` or anything else: one line.
        return Some((
            end + 2,
            Err(Failure::Transport(format!("redis answered {head}"))),
        ));
    };
    match len.parse::<i64>() {
        Ok(n) if n >= 0 => {
            let total = end + 2 + n as usize + 2;
            (buf.len() >= total).then_some((total, Ok(())))
        }
        Ok(_) => Some((
            end + 2,
            Err(Failure::Transport("redis has no such key".into())),
        )),
        Err(_) => Some((
            end + 2,
            Err(Failure::Transport(format!("redis answered {head}"))),
        )),
    }
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_resp_arrays_of_bulk_strings() {
        assert_eq!(
            command(&["GET", "bench"]),
            b"*2\r\n$3\r\nGET\r\n$5\r\nbench\r\n"
        );
    }

    #[test]
    fn bulk_answers_are_whole_only_once_all_bytes_arrived() {
        let answer = b"$5\r\nhello\r\n";
        assert!(matches!(bulk_answer(answer), Some((11, Ok(())))));
        assert!(bulk_answer(&answer[..10]).is_none());
        assert!(bulk_answer(b"$5").is_none());
        assert!(matches!(bulk_answer(b"$-1\r\n"), Some((5, Err(_)))));
        let Some((8, Err(e))) = bulk_answer(b"-ERR x\r\n$1") else {
            panic!("an error line is one answer");
        };
        assert_eq!(e.message(), "redis answered -ERR x");
    }
}
