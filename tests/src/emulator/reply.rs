//! Small builders for HTTP answers in the clouds' content types.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

/// A JSON answer, typed as the clouds type it (`application/json; charset=utf-8`).
pub(crate) fn json(status: StatusCode, value: &Value) -> Response {
    with_type(status, value.to_string(), "application/json; charset=utf-8")
}

/// A plain-text answer.
pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response {
    with_type(status, body.into(), "text/plain; charset=utf-8")
}

/// An answer with this body and content type.
pub(crate) fn with_type(status: StatusCode, body: String, content_type: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Adds a header whose value is known to be valid ASCII.
pub(crate) fn add_header(mut response: Response, name: &'static str, value: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
    response
}
