//! API Management user shared access token: `POST .../users/{userId}/token`
//! with `{"properties":{"keyType","expiry"}}`, answered `{"value":
//! "<userId>&<yyyyMMddHHmm>&<signature>"}`: the expiry lives in the token.

use aws_lc_rs::hmac;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Timelike, Utc};
use serde_json::{Value, json};

use super::arm::{self, UserRef};
use super::endpoint::{Call, Endpoint};
use super::google::parse_form;
use super::reply;
use super::state::{Inner, IssuedToken, Shared, bearer};
use super::timestamp::TimestampForm;

/// The longest expiry APIM grants.
const MAX_AHEAD_DAYS: i64 = 30;

/// A validated request body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TokenRequest {
    /// 0 = primary, 1 = secondary.
    key_index: usize,
    key_type: &'static str,
    expiry: DateTime<Utc>,
}

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Invalid {
    /// Not JSON: ARM's `InvalidRequestContent`.
    Content(String),
    /// A field failed validation: APIM's `ValidationError` naming it.
    Field {
        target: &'static str,
        message: String,
    },
}

impl Invalid {
    fn field(target: &'static str, message: impl Into<String>) -> Invalid {
        Invalid::Field {
            target,
            message: message.into(),
        }
    }

    /// ARM's answer: a summary plus one detail naming the field.
    fn to_response(&self) -> Response {
        match self {
            Invalid::Content(reason) => arm::error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContent",
                &format!(
                    "The request content was invalid and could not be deserialized: '{reason}'."
                ),
            ),
            Invalid::Field { target, message } => arm::respond(
                StatusCode::BAD_REQUEST,
                json!({
                    "code": "ValidationError",
                    "message": "One or more fields contain incorrect values:",
                    "details": [{"code": "ValidationError", "target": target, "message": message}],
                }),
            ),
        }
    }
}

/// `POST /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{svc}/users/{userId}/token`.
pub(crate) async fn handle(
    shared: Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    target: UserRef,
) -> Response {
    let query = parse_form(uri.query().unwrap_or("").as_bytes());
    let token = bearer(&headers);
    let parsed = serde_json::from_slice::<Value>(&body);
    let mut call = Call::new(Endpoint::ApimToken, &method, &uri);
    call.bearer = token.clone();
    if let Ok(body) = &parsed {
        let properties = &body["properties"];
        call.key_type = properties["keyType"].as_str().map(str::to_owned);
        call.expiry = properties["expiry"].as_str().map(str::to_owned);
    }
    shared
        .serve(call, |inner| {
            let api_version = query.get("api-version").map(String::as_str);
            if let Some(refused) = arm::refusal(inner, &method, api_version, token.as_deref()) {
                return refused;
            }
            match validate(&parsed, Utc::now()) {
                Ok(request) => answer(inner, &target.user, &request),
                Err(invalid) => invalid.to_response(),
            }
        })
        .await
}

fn validate(
    body: &Result<Value, serde_json::Error>,
    now: DateTime<Utc>,
) -> Result<TokenRequest, Invalid> {
    let body = body.as_ref().map_err(|e| Invalid::Content(e.to_string()))?;
    let Some(properties) = body.get("properties").filter(|p| p.is_object()) else {
        return Err(Invalid::field(
            "properties",
            "The properties field is required.",
        ));
    };
    let key_type = properties
        .get("keyType")
        .and_then(Value::as_str)
        .unwrap_or("");
    let (key_index, key_type) = if key_type.eq_ignore_ascii_case("primary") {
        (0, "primary")
    } else if key_type.eq_ignore_ascii_case("secondary") {
        (1, "secondary")
    } else {
        return Err(Invalid::field(
            "keyType",
            format!(
                "Invalid keyType value '{key_type}'. Allowed values are 'primary' and 'secondary'."
            ),
        ));
    };
    let Some(text) = properties.get("expiry").and_then(Value::as_str) else {
        return Err(Invalid::field("expiry", "The expiry field is required."));
    };
    let Ok(expiry) = DateTime::parse_from_rfc3339(text) else {
        return Err(Invalid::field(
            "expiry",
            format!("Could not convert '{text}' to a date."),
        ));
    };
    let expiry = expiry.with_timezone(&Utc);
    if expiry <= now {
        return Err(Invalid::field(
            "expiry",
            "Expiry date must be in the future.",
        ));
    }
    if expiry > now + Duration::days(MAX_AHEAD_DAYS) {
        return Err(Invalid::field(
            "expiry",
            "Expiry date cannot be more than 30 days in the future.",
        ));
    }
    Ok(TokenRequest {
        key_index,
        key_type,
        expiry,
    })
}

fn answer(inner: &mut Inner, user: &str, request: &TokenRequest) -> Response {
    let value = match inner.reuse(Endpoint::ApimToken) {
        Some(previous) => previous.token,
        None => {
            let issued = sign(inner, user, request);
            let value = issued.token.clone();
            inner.remember(issued);
            value
        }
    };
    reply::json(StatusCode::OK, &json!({ "value": value }))
}

/// `<userId>&<yyyyMMddHHmm>&<base64 HMAC-SHA512>`, the expiry truncated to
/// the minute, signed with the key the request named.
fn sign(inner: &Inner, user: &str, request: &TokenRequest) -> IssuedToken {
    let expires_at = request
        .expiry
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(request.expiry);
    let stamp = expires_at.format("%Y%m%d%H%M");
    let key = hmac::Key::new(
        hmac::HMAC_SHA512,
        &inner.registry.apim_keys[request.key_index],
    );
    let message = format!("{user}\n{}", TimestampForm::Digits7.format(expires_at));
    let signature = STANDARD.encode(hmac::sign(&key, message.as_bytes()).as_ref());
    IssuedToken {
        token: format!("{user}&{stamp}&{signature}"),
        endpoint: Endpoint::ApimToken,
        expires_at,
        scope: Some(request.key_type.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2019, 4, 1, 0, 0, 0).unwrap()
    }

    fn body(key_type: &str, expiry: &str) -> Result<Value, serde_json::Error> {
        Ok(json!({"properties": {"keyType": key_type, "expiry": expiry}}))
    }

    #[test]
    fn validates_key_type_and_expiry() {
        let ok = validate(&body("Primary", "2019-04-21T00:44:24.2845269Z"), now()).unwrap();
        assert_eq!(ok.key_index, 0);
        assert_eq!(
            ok.expiry.to_rfc3339(),
            "2019-04-21T00:44:24.284526900+00:00"
        );
        assert!(validate(&body("secondary", "2019-04-02T05:30:00+05:30"), now()).is_ok());
        for (key_type, expiry, field) in [
            ("tertiary", "2019-04-21T00:44:24Z", "keyType"),
            ("primary", "2019-03-31T00:00:00Z", "expiry"),
            ("primary", "2019-05-02T00:00:00Z", "expiry"),
            ("primary", "tomorrow", "expiry"),
        ] {
            match validate(&body(key_type, expiry), now()) {
                Err(Invalid::Field { target, .. }) => {
                    assert_eq!(target, field, "{key_type} {expiry}")
                }
                other => panic!("{key_type} {expiry}: {other:?}"),
            }
        }
        let not_json = validate(&serde_json::from_str("{"), now());
        assert!(matches!(not_json, Err(Invalid::Content(_))));
        let no_properties = validate(&Ok(json!({})), now());
        assert!(matches!(
            no_properties,
            Err(Invalid::Field {
                target: "properties",
                ..
            })
        ));
    }

    #[test]
    fn token_carries_expiry_to_the_minute() {
        let inner = Inner::for_tests();
        let request = validate(&body("primary", "2019-04-21T00:44:24.2845269Z"), now()).unwrap();
        let issued = sign(&inner, "userId1718", &request);
        let parts: Vec<&str> = issued.token.split('&').collect();
        assert_eq!(parts[..2], ["userId1718", "201904210044"]);
        assert!(STANDARD.decode(parts[2]).is_ok_and(|sig| sig.len() == 64));
        assert_eq!(
            issued.expires_at,
            Utc.with_ymd_and_hms(2019, 4, 21, 0, 44, 0).unwrap()
        );
        let secondary = TokenRequest {
            key_index: 1,
            ..request
        };
        assert_ne!(sign(&inner, "userId1718", &secondary).token, issued.token);
    }
}

#[cfg(test)]
mod http_tests {
    use super::*;
    use crate::emulator::Emulator;
    use crate::emulator::testing::{MANAGEMENT, client, entra_token, status_json};

    fn request(emu: &Emulator, token: &str, body: &Value) -> (u16, Value) {
        let url = format!(
            "{}/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg1/providers/\
             Microsoft.ApiManagement/service/apimService1/users/userId1718/token?api-version=2024-05-01",
            emu.url()
        );
        status_json(
            client()
                .post(url)
                .bearer_auth(token)
                .json(body)
                .send()
                .unwrap(),
        )
    }

    #[test]
    fn encodes_the_expiry_in_the_token() {
        let emu = Emulator::start();
        let token = entra_token(&emu, MANAGEMENT);
        let expiry = Utc::now() + Duration::hours(8);
        let requested = TimestampForm::Digits7.format(expiry);
        let body = json!({"properties": {"keyType": "primary", "expiry": requested}});
        let (status, answer) = request(&emu, &token, &body);
        assert_eq!(status, 200, "{answer}");
        let value = answer["value"].as_str().unwrap();
        let parts: Vec<&str> = value.splitn(3, '&').collect();
        assert_eq!(parts[0], "userId1718");
        assert_eq!(parts[1], expiry.format("%Y%m%d%H%M").to_string());
        assert!(STANDARD.decode(parts[2]).is_ok());
        let issued = emu.token_info(value).unwrap();
        assert_eq!(issued.expires_at.timestamp() % 60, 0);
        let call = &emu.calls_to(Endpoint::ApimToken)[0];
        assert_eq!(call.key_type.as_deref(), Some("primary"));
        assert_eq!(call.expiry.as_deref(), Some(requested.as_str()));
    }

    #[test]
    fn validates_the_request() {
        let emu = Emulator::start();
        let token = entra_token(&emu, MANAGEMENT);
        let in_days = |days: i64| TimestampForm::Digits0.format(Utc::now() + Duration::days(days));
        for body in [
            json!({"properties": {"keyType": "primary", "expiry": in_days(31)}}),
            json!({"properties": {"keyType": "primary", "expiry": in_days(-1)}}),
            json!({"properties": {"keyType": "tertiary", "expiry": in_days(1)}}),
            json!({"properties": {"keyType": "primary"}}),
        ] {
            let (status, answer) = request(&emu, &token, &body);
            assert_eq!(status, 400, "{body}");
            assert_eq!(answer["error"]["code"], "ValidationError", "{body}");
            assert_eq!(answer["error"]["details"][0]["code"], "ValidationError");
        }
        let secondary = json!({"properties": {"keyType": "secondary", "expiry": in_days(30)}});
        assert_eq!(request(&emu, &token, &secondary).0, 200);
    }
}
