//! Scripted failures: what an endpoint answers instead of its normal reply,
//! and ready-made ones for the ways real clouds misbehave.

use std::io;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::endpoint::Endpoint;

/// One scripted answer. Faults queue per endpoint; the front one applies to
/// each request until its `times` run out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The status to answer, or [`Fault::PASS_THROUGH`] to answer normally
    /// after `delay`.
    pub status: u16,
    pub body: String,
    pub content_type: String,
    /// Extra response headers, such as `Retry-After`.
    pub headers: Vec<(String, String)>,
    /// How long to wait before answering (the wait holds no lock).
    pub delay: Duration,
    /// How many requests this fault answers; `None` = until cleared.
    pub times: Option<u32>,
    /// Send the status, the headers and the first half of the body, then
    /// drop the connection: a reset in the middle of an answer, as a
    /// crashing proxy or a broken network gives.
    pub cut_off: bool,
}

impl Default for Fault {
    /// A one-shot 500 with an empty JSON body.
    fn default() -> Fault {
        Fault {
            status: 500,
            body: String::new(),
            content_type: "application/json".to_owned(),
            headers: Vec::new(),
            delay: Duration::ZERO,
            times: Some(1),
            cut_off: false,
        }
    }
}

impl Fault {
    /// A `status` of 0 means "not a failure": wait `delay`, then answer as the
    /// endpoint normally would (a slow but healthy upstream).
    pub const PASS_THROUGH: u16 = 0;

    /// A one-shot answer with this status and JSON body.
    pub fn json(status: u16, body: impl Into<String>) -> Fault {
        Fault {
            status,
            body: body.into(),
            ..Fault::default()
        }
    }

    /// A one-shot HTML error page, as a proxy or load balancer sends (use 500
    /// or 502).
    pub fn html(status: u16) -> Fault {
        let reason = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        Fault {
            status,
            body: format!(
                "<html><head><title>{status} {reason}</title></head>\
                 <body><h1>{status} {reason}</h1><p>The server encountered a temporary error.</p></body></html>"
            ),
            content_type: "text/html; charset=UTF-8".to_owned(),
            ..Fault::default()
        }
    }

    /// A one-shot 200 whose JSON body is cut off mid-object.
    pub fn malformed_json() -> Fault {
        Fault::json(200, r#"{"access_token": "#)
    }

    /// A one-shot 200 whose connection drops halfway through the body (see
    /// [`Fault::cut_off`]).
    pub fn cut_off() -> Fault {
        Fault {
            status: 200,
            body: r#"{"access_token":"ya29.emu-cut-off","expires_in":3599,"token_type":"Bearer"}"#
                .to_owned(),
            cut_off: true,
            ..Fault::default()
        }
    }

    /// A one-shot answer with this status and no body at all.
    pub fn empty_body(status: u16) -> Fault {
        Fault::json(status, "")
    }

    /// A one-shot 429 with `Retry-After: secs` (ARM and Google throttling).
    pub fn throttled(retry_after_secs: u64) -> Fault {
        Fault::json(
            429,
            format!(
                r#"{{"error":{{"code":"TooManyRequests","message":"The request is being throttled. Retry after {retry_after_secs} seconds."}}}}"#
            ),
        )
        .with_header("Retry-After", retry_after_secs.to_string())
    }

    /// One normal answer, sent after `delay` (a slow upstream; with a long
    /// delay, a hung one that the client must time out on).
    pub fn slow(delay: Duration) -> Fault {
        Fault {
            status: Fault::PASS_THROUGH,
            delay,
            ..Fault::default()
        }
    }

    /// A one-shot 200 shaped like the endpoint's success whose expiry field
    /// has the wrong JSON type (`"expires_in": "soon"` and the like).
    pub fn wrong_types(endpoint: Endpoint) -> Fault {
        let body = match endpoint {
            Endpoint::GoogleToken | Endpoint::GoogleMetadata | Endpoint::StsToken => {
                r#"{"access_token":"ya29.emu-wrong-types","expires_in":"soon","token_type":"Bearer"}"#
            }
            Endpoint::EntraToken => {
                r#"{"token_type":"Bearer","expires_in":"soon","ext_expires_in":"soon","access_token":"eyJ.emu-wrong-types"}"#
            }
            Endpoint::Imds
            | Endpoint::AppServiceMsi
            | Endpoint::CloudShellMsi
            | Endpoint::AppService2017Msi
            | Endpoint::ArcMsi => {
                r#"{"access_token":"eyJ.emu-wrong-types","expires_in":"soon","expires_on":true,"resource":"https://management.azure.com/","token_type":"Bearer"}"#
            }
            Endpoint::GkeToken => {
                r#"{"accessToken":"gke-emu-wrong-types","expirationTime":1700000000}"#
            }
            Endpoint::ContainerAppToken => {
                r#"{"name":"app","type":"Microsoft.App/containerApps/accesstoken","properties":{"token":"ca-emu-wrong-types","expires":1700000000}}"#
            }
            Endpoint::ApimToken => r#"{"value":1700000000}"#,
            Endpoint::IamAccessToken => {
                r#"{"accessToken":"ya29.emu-wrong-types","expireTime":1700000000}"#
            }
            Endpoint::IamIdToken => r#"{"token":1700000000}"#,
            Endpoint::EntraDeviceCode => {
                r#"{"device_code":"emu-dc","user_code":"EMU","verification_uri":"x","expires_in":"soon","interval":"soon"}"#
            }
            Endpoint::Authorize => r#"{"code":1}"#,
        };
        Fault::json(200, body)
    }

    /// A one-shot 200 shaped like the endpoint's success with no expiry at
    /// all: a client must refuse it rather than cache it forever.
    pub fn missing_expiry(endpoint: Endpoint) -> Fault {
        let body = match endpoint {
            Endpoint::GoogleToken | Endpoint::GoogleMetadata | Endpoint::StsToken => {
                r#"{"access_token":"ya29.emu-no-expiry","token_type":"Bearer"}"#
            }
            Endpoint::EntraToken => r#"{"token_type":"Bearer","access_token":"eyJ.emu-no-expiry"}"#,
            Endpoint::Imds
            | Endpoint::AppServiceMsi
            | Endpoint::CloudShellMsi
            | Endpoint::AppService2017Msi
            | Endpoint::ArcMsi => {
                r#"{"access_token":"eyJ.emu-no-expiry","resource":"https://management.azure.com/","token_type":"Bearer"}"#
            }
            Endpoint::GkeToken => r#"{"accessToken":"gke-emu-no-expiry"}"#,
            Endpoint::ContainerAppToken => {
                r#"{"name":"app","type":"Microsoft.App/containerApps/accesstoken","properties":{"token":"ca-emu-no-expiry"}}"#
            }
            Endpoint::ApimToken => r#"{"value":"emu-no-expiry"}"#,
            Endpoint::IamAccessToken => r#"{"accessToken":"ya29.emu-no-expiry"}"#,
            Endpoint::IamIdToken => r#"{"token":"emu-no-expiry"}"#,
            Endpoint::EntraDeviceCode => {
                r#"{"device_code":"emu-dc","user_code":"EMU","verification_uri":"x","interval":5}"#
            }
            Endpoint::Authorize => r#"{}"#,
        };
        Fault::json(200, body)
    }

    /// This fault for the next `n` requests.
    pub fn times(mut self, n: u32) -> Fault {
        self.times = Some(n);
        self
    }

    /// This fault for every request until cleared.
    pub fn until_cleared(mut self) -> Fault {
        self.times = None;
        self
    }

    /// This fault, answered after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Fault {
        self.delay = delay;
        self
    }

    /// This fault with one more response header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Fault {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Whether this fault answers normally (after its delay).
    pub(crate) fn passes_through(&self) -> bool {
        self.status == Fault::PASS_THROUGH
    }

    /// The HTTP answer. Headers that are not valid HTTP are skipped rather
    /// than failing the request.
    pub(crate) fn to_response(&self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = if self.cut_off {
            // A body of unknown length whose stream fails after its first
            // half went out: hyper then drops the connection mid-answer.
            // The pause lets the head and the first half reach the client.
            use futures_util::StreamExt as _;
            let half = self.body.as_bytes()[..self.body.len() / 2].to_vec();
            let first = futures_util::stream::iter([Ok(Bytes::from(half))]);
            let reset = futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "cut off by a fault",
                ))
            });
            Body::from_stream(first.chain(reset))
        } else {
            Body::from(self.body.clone())
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        if !self.body.is_empty()
            && let Ok(value) = HeaderValue::from_str(&self.content_type)
        {
            headers.insert(header::CONTENT_TYPE, value);
        }
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(name, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_carries_retry_after() {
        let fault = Fault::throttled(7);
        assert_eq!(fault.status, 429);
        assert_eq!(
            fault.headers,
            vec![("Retry-After".to_owned(), "7".to_owned())]
        );
        let response = fault.to_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "7");
    }

    #[test]
    fn builders_chain() {
        let fault = Fault::html(502).times(3).delayed(Duration::from_millis(5));
        assert_eq!(fault.times, Some(3));
        assert!(fault.body.starts_with("<html>"));
        assert!(fault.content_type.starts_with("text/html"));
        assert_eq!(Fault::malformed_json().until_cleared().times, None);
        assert!(Fault::slow(Duration::from_secs(1)).passes_through());
    }

    #[test]
    fn bad_header_is_skipped_not_fatal() {
        let response = Fault::json(503, "{}")
            .with_header("bad header", "x")
            .to_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().get("bad header").is_none());
    }

    #[test]
    fn wrong_types_and_missing_expiry_are_json() {
        for endpoint in Endpoint::ALL {
            for fault in [
                Fault::wrong_types(endpoint),
                Fault::missing_expiry(endpoint),
            ] {
                assert!(serde_json::from_str::<serde_json::Value>(&fault.body).is_ok());
            }
        }
    }
}
