//! The OAuth token response shared by Google and Entra endpoints, with the
//! quirks they really send: `expires_in` as a number or a string, and
//! managed identity's `expires_on` in epoch seconds.

use chrono::{DateTime, Utc};
use credcache_shared::Secret;
use serde_json::Value;

use super::{FetchError, Fetched};
use crate::http::Answer;

/// Reads `{"access_token": ..., "expires_in": ...}` (or `expires_on`).
pub fn parse(answer: &Answer, now: DateTime<Utc>) -> Result<Fetched, FetchError> {
    let v: Value = answer.json()?;
    let bad = |why: String| {
        FetchError::transient(format!(
            "{} answered {} but {why}",
            answer.what, answer.status
        ))
    };
    let token = match v.get("access_token") {
        Some(Value::String(t)) if !t.is_empty() => Secret::new(t.clone()),
        Some(_) => return Err(bad("access_token is not a non-empty string".into())),
        None => return Err(bad("the answer has no access_token".into())),
    };
    let expires_at = if let Some(on) = v.get("expires_on") {
        let secs = integer("expires_on", on).map_err(|e| bad(e.to_string()))?;
        let at = DateTime::from_timestamp(secs, 0)
            .ok_or_else(|| bad(format!("expires_on {secs} is out of range")))?;
        super::within_lifetime("expires_on", at, now).map_err(|e| bad(e.to_string()))?
    } else if let Some(within) = v.get("expires_in") {
        let secs = integer("expires_in", within).map_err(|e| bad(e.to_string()))?;
        if !(0..=super::MAX_LIFETIME.num_seconds()).contains(&secs) {
            return Err(bad(format!("expires_in {secs} is out of range")));
        }
        now + chrono::Duration::seconds(secs)
    } else {
        return Err(bad(
            "the answer has neither expires_in nor expires_on".into()
        ));
    };
    Ok(Fetched::new(token, expires_at))
}

/// A field that should hold a whole number and does not; `shown` is the
/// value, sanitized and cut short.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field} is not a whole number ({shown})")]
pub struct NotWholeNumber {
    pub field: String,
    pub shown: String,
}

/// A whole number sent as a JSON number or a string of digits.
pub fn integer(field: &str, v: &Value) -> Result<i64, NotWholeNumber> {
    let parsed = match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| NotWholeNumber {
        field: field.to_owned(),
        shown: crate::http::sanitize(&v.to_string(), 40),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &str) -> Answer {
        Answer {
            what: "t".into(),
            status: 200,
            headers: Default::default(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn numbers_strings_and_expires_on() {
        let now = DateTime::from_timestamp(1_506_000_000, 0).unwrap();
        let f = parse(&answer(r#"{"access_token":"a","expires_in":3599}"#), now).unwrap();
        assert_eq!(f.expires_at.timestamp(), 1_506_003_599);
        let f = parse(&answer(r#"{"access_token":"a","expires_in":"86399"}"#), now).unwrap();
        assert_eq!(f.expires_at.timestamp(), 1_506_086_399);
        let f = parse(
            &answer(r#"{"access_token":"a","expires_in":"86399","expires_on":"1506484173"}"#),
            now,
        )
        .unwrap();
        assert_eq!(f.expires_at.timestamp(), 1_506_484_173);
    }

    #[test]
    fn bad_answers_name_the_field() {
        let now = Utc::now();
        for (body, want) in [
            (r#"{"expires_in":1}"#, "no access_token"),
            (r#"{"access_token":"a"}"#, "neither expires_in"),
            (
                r#"{"access_token":"a","expires_in":"soon"}"#,
                "expires_in is not a whole number",
            ),
            (
                r#"{"access_token":"a","expires_in":1e300}"#,
                "expires_in is not a whole number",
            ),
            (r#"{"access_token":"a","expires_in":-5}"#, "out of range"),
            // Found by the `token_response` fuzz target: an `expires_on`
            // decades ahead was cached as if the token lived that long.
            (
                r#"{"access_token":"a","expires_on":"4102444800"}"#,
                "expires_on 2100-01-01T00:00:00Z is more than 366 days ahead",
            ),
            (
                r#"{"access_token":7,"expires_in":1}"#,
                "access_token is not",
            ),
            ("<html>", "unreadable body"),
        ] {
            let e = parse(&answer(body), now).unwrap_err();
            assert!(e.message.contains(want), "{body}: {}", e.message);
        }
    }
}
