//! `credcache login NAME [--device-code | --browser]`: a person signs in,
//! here in their terminal. The daemon makes the identity provider's calls
//! and keeps the refresh token, sealed in its store (it never reaches this
//! process, the command line or the screen); this command shows the device
//! code message and polls at the interval the daemon says, or opens the
//! browser (`$BROWSER`, else the platform's opener; the URL is printed
//! too) and receives the redirect on a one-shot 127.0.0.1 listener.
//!
//! Each request is a connection of its own: a sign-in can take longer than
//! the daemon keeps an idle connection open.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use credcache_shared::Secret;
use credcache_shared::protocol::{LoginMethod, LoginStep, Request, Response};

use crate::connect::{self, Autostart, Endpoint};
use crate::exit::Error;
use crate::output;

/// How long the browser sign-in waits for the redirect.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(300);
/// The most of a redirect request read.
const MAX_REQUEST: usize = 16 * 1024;

#[derive(Debug, PartialEq, Eq, clap::Args)]
pub struct Args {
    /// The credential to sign in (an azure credential with method
    /// device-code or browser, or a google one with oauth_client_file).
    pub name: String,

    /// Sign in with a code entered on another device's browser.
    #[arg(long, conflicts_with = "browser")]
    pub device_code: bool,

    /// Sign in in a browser on this machine (auth code + PKCE).
    #[arg(long)]
    pub browser: bool,
}

pub fn run(endpoint: &Endpoint, args: &Args) -> Result<(), Error> {
    let name = args.name.as_str();
    let method = match (args.device_code, args.browser) {
        (true, _) => Some(LoginMethod::DeviceCode),
        (_, true) => Some(LoginMethod::Browser),
        _ => None,
    };
    // The listener is made first: its port is part of the sign-in URL. A
    // device code sign-in never uses it.
    let listener = if method == Some(LoginMethod::DeviceCode) {
        None
    } else {
        Some(
            TcpListener::bind(("127.0.0.1", 0))
                .map_err(|e| Error::Other(format!("cannot listen on 127.0.0.1: {e}")))?,
        )
    };
    let redirect_port = listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port());
    let context = format!("cannot sign in {name}");
    let step = call(
        endpoint,
        &Request::Login {
            name: name.to_owned(),
            method,
            redirect_port,
        },
        &context,
    )?;
    let done = match step {
        LoginStep::DeviceCode {
            message,
            interval_secs,
            expires_in_secs,
        } => {
            drop(listener);
            output::note(&message);
            device_code(endpoint, name, interval_secs, expires_in_secs, &context)?
        }
        LoginStep::Browser { url } => {
            let listener = listener.ok_or_else(|| {
                Error::Other("the daemon asked for a browser sign-in without a listener".into())
            })?;
            browser(endpoint, name, &url, &listener, &context)?
        }
        other => return Err(unexpected_step(&other)),
    };
    output::note(format_args!(
        "signed in: {name} has a token until {}",
        credcache_shared::time::format_rfc3339(done)
    ));
    Ok(())
}

/// Polls at the daemon's interval until the user has signed in, said no,
/// or the code expired.
fn device_code(
    endpoint: &Endpoint,
    name: &str,
    mut interval_secs: u64,
    expires_in_secs: u64,
    context: &str,
) -> Result<chrono::DateTime<chrono::Utc>, Error> {
    let deadline = Instant::now() + Duration::from_secs(expires_in_secs);
    loop {
        std::thread::sleep(Duration::from_secs(interval_secs));
        if Instant::now() > deadline + Duration::from_secs(interval_secs) {
            return Err(Error::Other(format!(
                "{context}: the code expired before sign-in finished; run `credcache login {name}` again"
            )));
        }
        let poll = Request::LoginPoll {
            name: name.to_owned(),
        };
        match call(endpoint, &poll, context)? {
            LoginStep::Pending {
                interval_secs: next,
            } => interval_secs = next,
            LoginStep::Done { expires_at } => return Ok(expires_at),
            other => return Err(unexpected_step(&other)),
        }
    }
}

/// Opens the browser, waits for the redirect, hands code and state to the
/// daemon, and shows the browser how it went.
fn browser(
    endpoint: &Endpoint,
    name: &str,
    url: &str,
    listener: &TcpListener,
    context: &str,
) -> Result<chrono::DateTime<chrono::Utc>, Error> {
    output::note(format_args!(
        "Opening a browser to sign in {name}. If none opens, visit:\n\n  {url}\n"
    ));
    if let Err(why) = open_browser(url) {
        output::note(format_args!("(could not open a browser: {why})"));
    }
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    loop {
        let Some(mut stream) = accept_until(listener, deadline)? else {
            return Err(Error::Other(format!(
                "{context}: no answer from the browser within {} minutes; run `credcache login {name}` again",
                BROWSER_TIMEOUT.as_secs() / 60
            )));
        };
        let Some(query) = read_redirect(&mut stream) else {
            // A favicon, a probe: not the redirect.
            respond(&mut stream, "404 Not Found", "Not the sign-in redirect.");
            continue;
        };
        let param = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        if let Some(error) = param("error") {
            let why = param("error_description").unwrap_or_default();
            respond(
                &mut stream,
                "200 OK",
                "Sign-in failed. You can close this tab and see the terminal.",
            );
            return Err(Error::Other(one_line(&format!(
                "{context}: the sign-in page answered {error}{}{why}",
                if why.is_empty() { "" } else { ": " }
            ))));
        }
        let (Some(code), Some(state)) = (param("code"), param("state")) else {
            respond(&mut stream, "400 Bad Request", "No code or state.");
            continue;
        };
        let request = Request::LoginCode {
            name: name.to_owned(),
            code: Secret::new(code),
            state,
        };
        return match call(endpoint, &request, context) {
            Ok(LoginStep::Done { expires_at }) => {
                respond(
                    &mut stream,
                    "200 OK",
                    "Signed in to credcache. You can close this tab.",
                );
                Ok(expires_at)
            }
            Ok(other) => Err(unexpected_step(&other)),
            Err(e) => {
                respond(
                    &mut stream,
                    "200 OK",
                    "Sign-in failed. You can close this tab and see the terminal.",
                );
                Err(e)
            }
        };
    }
}

/// `$BROWSER URL`, else the platform's opener, run without a shell and
/// not waited for.
fn open_browser(url: &str) -> Result<(), String> {
    let program = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| {
            if cfg!(target_os = "macos") {
                "open".to_owned()
            } else {
                "xdg-open".to_owned()
            }
        });
    std::process::Command::new(&program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("{program}: {e}"))
}

/// The next connection to the listener, or `None` once `deadline` passes.
#[cfg(unix)]
fn accept_until(listener: &TcpListener, deadline: Instant) -> Result<Option<TcpStream>, Error> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use std::os::fd::AsFd;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let timeout = Timespec {
            tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: left.subsec_nanos().into(),
        };
        let fd = listener.as_fd();
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::Other(format!("waiting for the browser: {e}"))),
        }
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
                return Ok(Some(stream));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Other(format!("waiting for the browser: {e}"))),
        }
    }
}

/// The next connection to the listener, or `None` once `deadline` passes.
/// std has no accept with a timeout here: a thread accepts one connection
/// and hands it over. Every call but the last takes its connection, so at
/// most the last thread is left waiting, and only when the sign-in is being
/// given up on and the process is about to exit.
#[cfg(not(unix))]
fn accept_until(listener: &TcpListener, deadline: Instant) -> Result<Option<TcpStream>, Error> {
    let mine = listener
        .try_clone()
        .map_err(|e| Error::Other(format!("waiting for the browser: {e}")))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(mine.accept());
    });
    let left = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(left) {
        Ok(Ok((stream, _))) => {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
            Ok(Some(stream))
        }
        Ok(Err(e)) => Err(Error::Other(format!("waiting for the browser: {e}"))),
        Err(_) => Ok(None),
    }
}

/// The query of a `GET /?…` redirect that carries `code` or `error`.
fn read_redirect(stream: &mut TcpStream) -> Option<Vec<(String, String)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    parse_redirect(&buf)
}

fn parse_redirect(request: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(request).ok()?;
    let line = text.lines().next()?;
    let mut parts = line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    if method != "GET" {
        return None;
    }
    let url = url::Url::parse(&format!("http://127.0.0.1{target}")).ok()?;
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    query
        .iter()
        .any(|(k, _)| k == "code" || k == "error")
        .then_some(query)
}

/// A small page for the browser tab.
fn respond(stream: &mut TcpStream, status: &str, text: &str) {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>credcache</title></head>\
         <body style=\"font-family:sans-serif;margin:3em\"><p>{text}</p></body></html>"
    );
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\nCache-Control: no-store\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
    let _ = stream.flush();
}

/// One request on a connection of its own; the answer's step.
fn call(endpoint: &Endpoint, request: &Request, context: &str) -> Result<LoginStep, Error> {
    let mut conn = endpoint.connect(Autostart::IfAllowed)?;
    match conn.call(request, context)? {
        Response::Login(step) => Ok(step),
        other => Err(connect::unexpected(&other)),
    }
}

fn unexpected_step(step: &LoginStep) -> Error {
    let what = match step {
        LoginStep::DeviceCode { .. } => "DeviceCode",
        LoginStep::Browser { .. } => "Browser",
        LoginStep::Pending { .. } => "Pending",
        LoginStep::Done { .. } => "Done",
    };
    Error::Other(format!(
        "unexpected sign-in step from the daemon: {what}; run `credcache daemon restart`"
    ))
}

/// Text from the sign-in page, on one line and cut short.
fn one_line(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_get_with_code_or_error_is_the_redirect() {
        let q = parse_redirect(b"GET /?code=abc&state=s%2B1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(q.contains(&("code".into(), "abc".into())));
        assert!(q.contains(&("state".into(), "s+1".into())));
        let e = parse_redirect(b"GET /?error=access_denied HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(e[0], ("error".into(), "access_denied".into()));
        assert!(parse_redirect(b"GET /favicon.ico HTTP/1.1\r\n\r\n").is_none());
        assert!(parse_redirect(b"POST /?code=a HTTP/1.1\r\n\r\n").is_none());
        assert!(parse_redirect(b"\xff\xfe").is_none());
    }
}
