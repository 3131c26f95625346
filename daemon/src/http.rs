//! HTTP to the clouds: one shared client, bounded response bodies, and the
//! translation of every kind of failure (network, status, error body) into
//! a one-line [`FetchError`] that carries the cloud's own words.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::de::DeserializeOwned;

use crate::providers::{ErrorClass, FetchError};

/// Response bodies larger than this are refused without being buffered.
pub const MAX_BODY: usize = 1 << 20;

/// The HTTP clients the providers share.
#[derive(Clone)]
pub struct Http {
    /// For public endpoints: honours HTTPS_PROXY / NO_PROXY.
    client: reqwest::Client,
    /// For metadata servers and IMDS: never through a proxy.
    direct: reqwest::Client,
}

impl Http {
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let build = |proxy: bool| {
            let b = reqwest::Client::builder()
                .user_agent(concat!("credcache/", env!("CARGO_PKG_VERSION")))
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(10)))
                .redirect(reqwest::redirect::Policy::none());
            if proxy { b } else { b.no_proxy() }.build()
        };
        Ok(Self {
            client: build(true)?,
            direct: build(false)?,
        })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn direct(&self) -> &reqwest::Client {
        &self.direct
    }
}

/// A response read in full (up to [`MAX_BODY`]).
#[derive(Debug)]
pub struct Answer {
    /// What was called, for messages: "google token endpoint".
    pub what: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Sends a request and reads the body, bounded.
pub async fn send(what: &str, request: reqwest::RequestBuilder) -> Result<Answer, FetchError> {
    let mut response = request.send().await.map_err(|e| network_error(what, &e))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return Err(FetchError::transient(format!(
            "{what} answered {status} with a body over {MAX_BODY} bytes"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| network_error(what, &e))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(FetchError::transient(format!(
                "{what} answered {status} with a body over {MAX_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        what: what.to_owned(),
        status,
        headers,
        body,
    })
}

fn network_error(what: &str, e: &reqwest::Error) -> FetchError {
    let why = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        format!("cannot connect ({}){}", root_cause(e), proxy_hint())
    } else {
        root_cause(e)
    };
    FetchError::transient(format!("{what}: {why}"))
}

/// Names the proxy variables when set: with a proxy, "connection refused"
/// is about the proxy, not the cloud.
fn proxy_hint() -> String {
    let set: Vec<&str> = [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .into_iter()
    .filter(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
    .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!(" through the proxy in {}", set.join("/"))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    sanitize(&cur.to_string(), 200)
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON of type `T`; a body that is not (HTML, truncated,
    /// wrong types) is an error saying so. A success body may hold a token,
    /// so its content is never quoted: only what kind of body it is and
    /// where parsing stopped (serde's own message can quote values).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, FetchError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            let kind = match e.classify() {
                serde_json::error::Category::Eof => "truncated JSON",
                serde_json::error::Category::Syntax => "not JSON",
                serde_json::error::Category::Data => "JSON of the wrong shape",
                serde_json::error::Category::Io => "unreadable",
            };
            let shown = if self.is_success() {
                format!("{} bytes", self.body.len())
            } else {
                describe_body(&self.body)
            };
            FetchError::transient(format!(
                "{} answered {} with an unreadable body ({kind}, {shown}, at line {} column {})",
                self.what,
                self.status,
                e.line(),
                e.column()
            ))
        })
    }

    /// `Retry-After` as seconds or an HTTP date.
    pub fn retry_after(&self, now: DateTime<Utc>) -> Option<Duration> {
        let value = self.headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
        if let Ok(secs) = value.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        let at = DateTime::parse_from_rfc2822(value)
            .ok()?
            .with_timezone(&Utc);
        Some((at - now).to_std().unwrap_or(Duration::ZERO))
    }

    /// The error for a non-success answer: the cloud's own code and message
    /// when the body has one of the known error shapes, classified so that
    /// permanent failures are not retried as if transient.
    pub fn error(&self, now: DateTime<Utc>) -> FetchError {
        let detail = error_detail(&self.body);
        let code = detail.as_ref().map(|d| d.code.as_str()).unwrap_or("");
        let class = classify(self.status, code);
        let message = match &detail {
            Some(d) if d.message.is_empty() => {
                format!("{} answered {}: {}", self.what, self.status, d.code)
            }
            Some(d) => format!(
                "{} answered {}: {}: {}",
                self.what, self.status, d.code, d.message
            ),
            None if self.body.is_empty() => {
                format!("{} answered {} with an empty body", self.what, self.status)
            }
            None => format!(
                "{} answered {} ({})",
                self.what,
                self.status,
                describe_body(&self.body)
            ),
        };
        FetchError {
            class,
            message,
            retry_after: self.retry_after(now),
            status: Some(self.status),
        }
    }
}

/// `invalid_grant`/`invalid_client` and 401/403/404 will not get better by
/// retrying; 408, 429 and 5xx may.
fn classify(status: u16, code: &str) -> ErrorClass {
    let permanent_codes = [
        "invalid_grant",
        "invalid_client",
        "unauthorized_client",
        "invalid_scope",
    ];
    if permanent_codes.contains(&code) {
        return ErrorClass::Permanent;
    }
    match status {
        408 | 429 | 500..=599 => ErrorClass::Transient,
        401 | 403 => ErrorClass::Unauthorized,
        400..=499 => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    }
}

struct ErrorDetail {
    code: String,
    message: String,
}

/// Reads the three error shapes the clouds use: OAuth
/// (`{"error": "...", "error_description": "..."}`), Google APIs
/// (`{"error": {"code": 403, "status": "...", "message": "..."}}`) and ARM
/// (`{"error": {"code": "...", "message": "..."}}`).
fn error_detail(body: &[u8]) -> Option<ErrorDetail> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let err = v.get("error")?;
    // Entra appends "Trace ID: ..." lines to its description: the first
    // line is the message.
    let text = |v: Option<&serde_json::Value>| {
        v.and_then(|v| v.as_str())
            .map(|s| sanitize(s.lines().next().unwrap_or(""), 300))
            .unwrap_or_default()
    };
    if let Some(code) = err.as_str() {
        let mut message = text(v.get("error_description"));
        if message.is_empty() {
            message = text(v.get("message"));
        }
        return Some(ErrorDetail {
            code: sanitize(code, 80),
            message,
        });
    }
    let obj = err.as_object()?;
    let code = match obj.get("status").and_then(|s| s.as_str()) {
        Some(status) => sanitize(status, 80),
        None => match obj.get("code") {
            Some(serde_json::Value::String(s)) => sanitize(s, 80),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => String::new(),
        },
    };
    let message = text(obj.get("message"));
    if code.is_empty() && message.is_empty() {
        return None;
    }
    Some(ErrorDetail { code, message })
}

/// A few words on a body that is not the expected JSON: its kind and a
/// short, cleaned start.
fn describe_body(body: &[u8]) -> String {
    if body.is_empty() {
        return "empty body".into();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
    let trimmed = text.trim_start();
    if trimmed.starts_with('<') {
        let title = trimmed
            .to_ascii_lowercase()
            .find("<title>")
            .and_then(|i| trimmed.get(i + 7..))
            .and_then(|rest| rest.split('<').next())
            .map(|t| sanitize(t, 80))
            .filter(|t| !t.is_empty());
        return match title {
            Some(t) => format!("an HTML page: {t:?}"),
            None => "an HTML page".into(),
        };
    }
    format!("{} bytes starting {:?}", body.len(), sanitize(trimmed, 40))
}

/// Makes upstream text safe to put in a log line or a terminal: control
/// characters and escape sequences become spaces, runs of space collapse,
/// and it is cut to `max` characters.
pub fn sanitize(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    let mut last_space = false;
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        if out.chars().count() >= max {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            what: "x".into(),
            status,
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn error_shapes_carry_the_clouds_words() {
        let now = Utc::now();
        let e = answer(401, r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#).error(now);
        assert_eq!(
            e.message,
            "x answered 401: invalid_client: AADSTS7000215: Invalid client secret provided."
        );
        assert_eq!(e.class, ErrorClass::Permanent);
        let e = answer(
            403,
            r#"{"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}}"#,
        )
        .error(now);
        assert_eq!(e.message, "x answered 403: PERMISSION_DENIED: denied");
        assert_eq!(e.class, ErrorClass::Unauthorized);
        let e = answer(
            404,
            r#"{"error":{"code":"ResourceNotFound","message":"gone"}}"#,
        )
        .error(now);
        assert_eq!(e.message, "x answered 404: ResourceNotFound: gone");
        assert_eq!(e.class, ErrorClass::Permanent);
        let e = answer(
            502,
            "<html><head><title>502 Bad Gateway</title></head></html>",
        )
        .error(now);
        assert_eq!(
            e.message,
            "x answered 502 (an HTML page: \"502 Bad Gateway\")"
        );
        assert_eq!(e.class, ErrorClass::Transient);
        let e = answer(500, "").error(now);
        assert_eq!(e.message, "x answered 500 with an empty body");
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = Utc::now();
        let mut a = answer(429, "");
        a.headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(a.retry_after(now), Some(Duration::from_secs(7)));
        let later = (now + chrono::Duration::seconds(90)).to_rfc2822();
        a.headers.insert(RETRY_AFTER, later.parse().unwrap());
        let d = a.retry_after(now).unwrap();
        assert!((89..=90).contains(&d.as_secs()), "{d:?}");
        a.headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(a.retry_after(now), None);
    }

    #[test]
    fn an_unreadable_success_body_is_never_quoted() {
        let e = answer(200, r#"{"access_token":"ya29.secret-start"#)
            .json::<serde_json::Value>()
            .unwrap_err();
        assert!(!e.message.contains("ya29"), "{}", e.message);
        assert!(e.message.contains("truncated JSON"), "{}", e.message);
        let e = answer(502, "<html><title>Bad Gateway</title></html>")
            .json::<serde_json::Value>()
            .unwrap_err();
        assert!(e.message.contains("Bad Gateway"), "{}", e.message);
    }

    #[test]
    fn entra_descriptions_keep_their_first_line() {
        let body = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1\r\nCorrelation ID: 2"}"#;
        let e = answer(401, body).error(Utc::now());
        assert!(
            e.message
                .ends_with("AADSTS7000215: Invalid client secret provided."),
            "{}",
            e.message
        );
    }

    #[test]
    fn sanitize_strips_escapes_and_newlines() {
        assert_eq!(
            sanitize("bad\x1b[31mred\x1b[0m\nnext line", 100),
            "bad [31mred [0m next line"
        );
        assert_eq!(sanitize("abcdef", 3), "abc…");
    }
}
