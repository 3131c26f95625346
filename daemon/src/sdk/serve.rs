//! One endpoint's HTTP server: accept on 127.0.0.1, name the peer of each
//! connection once (`super::peer_of`), then answer its requests with the
//! refusals every request is checked for (another user's process,
//! `X-Forwarded-For`) and the protocol's own answers (`azure.rs`,
//! `google.rs`). Every refusal is logged with the peer's uid and pid,
//! never with a header's value.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::{Endpoint, Endpoints, NO_PEER_CHECK, Peer, Protocol, azure, google, peer_check};

/// Connections served at once, per endpoint; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;
/// A client that sends no complete request head in this long is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// What an endpoint answers: a status, and a JSON or a text body.
pub struct Answer {
    pub status: StatusCode,
    pub json: bool,
    pub body: String,
}

impl Answer {
    pub fn json(status: StatusCode, value: &serde_json::Value) -> Self {
        Self {
            status,
            json: true,
            body: value.to_string(),
        }
    }

    pub fn text(status: StatusCode, body: impl Into<String>) -> Self {
        Self {
            status,
            json: false,
            body: body.into(),
        }
    }

    fn refused(&self) -> bool {
        matches!(
            self.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        )
    }
}

/// Accepts until the daemon stops.
pub async fn run(listener: TcpListener, endpoints: Arc<Endpoints>, endpoint: Arc<Endpoint>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer_addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: let a moment pass
                // rather than spin.
                tracing::warn!(port = endpoint.port, "SDK endpoint accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let endpoints = endpoints.clone();
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(local) = stream.local_addr() else {
                return;
            };
            // Read inline: procfs answers from kernel memory, never from a
            // disk, and a hop to the blocking pool cost more than the read
            // (a few wake-ups per connection, measured in BENCHMARKS.md).
            // Windows' TCP table and process token are in memory likewise.
            let peer = super::peer_of(peer_addr, local);
            let service = service_fn(move |req| {
                let endpoints = endpoints.clone();
                let endpoint = endpoint.clone();
                async move { Ok::<_, Infallible>(handle(&endpoints, &endpoint, peer, req).await) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    endpoints: &Endpoints,
    endpoint: &Endpoint,
    peer: Option<Peer>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let protocol = endpoint.protocol();
    let answer = match refusal(protocol, peer, &req) {
        Some(answer) => answer,
        None => match protocol {
            Protocol::Azure => azure::answer(endpoints, endpoint, &req).await,
            Protocol::Google => google::answer(endpoints, endpoint, &req).await,
        },
    };
    if answer.refused() {
        endpoint.refused.fetch_add(1, Ordering::Relaxed);
        let pid = match peer {
            Some(p) => tokio::task::spawn_blocking(move || p.pid())
                .await
                .ok()
                .flatten(),
            None => None,
        };
        tracing::warn!(
            credential = %endpoint.name,
            port = endpoint.port,
            peer_uid = ?peer.and_then(|p| p.uid()),
            peer_pid = ?pid,
            path = %req.uri().path(),
            status = answer.status.as_u16(),
            "SDK request refused: {}",
            answer.body
        );
    } else {
        endpoint.served.fetch_add(1, Ordering::Relaxed);
        // An SDK at work keeps an `idle_timeout` daemon up, as a client does.
        endpoints.engine.note_request();
    }
    respond(protocol, answer)
}

/// The refusals both protocols share, in the protocol's own shape.
fn refusal(protocol: Protocol, peer: Option<Peer>, req: &Request<Incoming>) -> Option<Answer> {
    let why = if req.headers().contains_key("x-forwarded-for") {
        "a request with X-Forwarded-For is refused"
    } else {
        match peer {
            Some(p) if p.is_ours() => return None,
            Some(_) => "the connecting process belongs to another user",
            // No socket table to read here: the secret still guards Azure.
            None if protocol == Protocol::Azure && !peer_check() => return None,
            None if !peer_check() => NO_PEER_CHECK,
            None if cfg!(windows) => {
                "the connecting process could not be found in the TCP connection table"
            }
            None => "the connecting process could not be found in the kernel's socket table",
        }
    };
    Some(match protocol {
        Protocol::Azure => azure::error(StatusCode::FORBIDDEN, why),
        Protocol::Google => Answer::text(StatusCode::FORBIDDEN, why),
    })
}

fn respond(protocol: Protocol, answer: Answer) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    // The real metadata server types text answers `application/text`, and
    // Python google-auth parses only `application/json` as JSON.
    let content_type = if answer.json {
        "application/json"
    } else {
        "application/text"
    };
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if protocol == Protocol::Google {
        headers.insert("metadata-flavor", HeaderValue::from_static("Google"));
    }
    response
}
