//! A git smart-HTTP server on 127.0.0.1 behind HTTP Basic auth: the real
//! `git http-backend` (CGI) for the repositories under a root directory,
//! reached only with a password the test accepts. The end-to-end tests run
//! real `git` against it with `credcache git-credential` as its helper.
//!
//! Every request is logged with the password it carried and whether it was
//! let in, so a test can tell which token git used and when it was turned
//! away.

use std::future::IntoFuture as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::oneshot;

/// Decides whether a user name and password may in.
pub type Check = dyn Fn(&str, &str) -> bool + Send + Sync;

/// One request the server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Path and query, e.g. `/myorg/repo.git/info/refs?service=git-upload-pack`.
    pub uri: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub let_in: bool,
}

#[derive(Clone)]
struct Shared {
    root: PathBuf,
    check: Arc<Check>,
    log: Arc<Mutex<Vec<Attempt>>>,
}

/// A running server; dropping it stops it.
pub struct GitServer {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Attempt>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl GitServer {
    /// Serves the repositories under `root` (`GIT_PROJECT_ROOT`) to
    /// requests whose Basic credentials `check` accepts; answers the others
    /// 401 with `WWW-Authenticate: Basic`.
    ///
    /// # Panics
    /// If no loopback port can be bound or no thread spawned.
    pub fn start(
        root: impl Into<PathBuf>,
        check: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
    ) -> GitServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            root: root.into(),
            check: Arc::new(check),
            log: log.clone(),
        };
        let app = Router::new().fallback(handle).with_state(shared);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("git-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    let _ = ready_tx.send(());
                    tokio::select! {
                        _ = axum::serve(listener, app).into_future() => {}
                        _ = stop_rx => {}
                    }
                });
            })
            .expect("spawn git server thread");
        ready_rx.recv().expect("git server started");
        GitServer {
            addr,
            log,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`, as git's `host` attribute has it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every request so far, oldest first.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let (username, password) = basic_credentials(&parts.headers).unzip();
    let let_in = match (&username, &password) {
        (Some(u), Some(p)) => (shared.check)(u, p),
        _ => false,
    };
    shared.log.lock().unwrap().push(Attempt {
        uri,
        username: username.clone(),
        password,
        let_in,
    });
    if !let_in {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"credcache-test\"")],
            "authentication required\n",
        )
            .into_response();
    }
    let Ok(body) = axum::body::to_bytes(body, 16 << 20).await else {
        return (StatusCode::BAD_REQUEST, "body too large\n").into_response();
    };
    match http_backend(&shared, &parts, username.unwrap_or_default(), body).await {
        Ok(response) => response,
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Runs `git http-backend` for one request, as a web server runs a CGI.
async fn http_backend(
    shared: &Shared,
    parts: &axum::http::request::Parts,
    user: String,
    body: Bytes,
) -> std::io::Result<Response> {
    let header = |name: HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &shared.root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &shared.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header(header::CONTENT_ENCODING))
        .env(
            "HTTP_GIT_PROTOCOL",
            header(HeaderName::from_static("git-protocol")),
        )
        .env("REMOTE_USER", user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Write the body while the backend writes its answer, so neither side
    // blocks on a full pipe.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let output = child.wait_with_output().await?;
    let _ = writer.await;
    cgi_response(&output.stdout).ok_or_else(|| {
        std::io::Error::other(format!(
            "git http-backend answered no CGI headers: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    })
}

/// A CGI answer (`Header: value` lines, a blank line, the body) as an HTTP
/// response; `Status:` sets the status.
fn cgi_response(output: &[u8]) -> Option<Response> {
    let (head, body) = ["\r\n\r\n", "\n\n"].iter().find_map(|sep| {
        let at = output
            .windows(sep.len())
            .position(|w| w == sep.as_bytes())?;
        Some((&output[..at], &output[at + sep.len()..]))
    })?;
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    for line in String::from_utf8_lossy(head).lines() {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            status = value.split(' ').next()?.parse().ok()?;
        } else if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.trim()),
            HeaderValue::try_from(value),
        ) {
            headers.append(name, value);
        }
    }
    let mut response = Response::new(Body::from(body.to_vec()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Some(response)
}
