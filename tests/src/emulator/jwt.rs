//! Verification of the RS256 JWT a service account presents to Google's
//! token endpoint (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`),
//! with Google's own rejection messages.

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD_INDIFFERENT;
use serde_json::{Map, Value};

use super::state::Registry;

/// The longest assertion lifetime Google accepts, and the clock skew allowed.
const MAX_LIFETIME_SECS: i64 = 3600;
const SKEW_SECS: i64 = 300;

/// Google's token URL, the audience Google's own libraries sign
/// (`Registry::googles_audience`).
const GOOGLES_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const BAD_SIGNATURE: &str = "Invalid JWT Signature.";
const BAD_TIMES: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a \
                         reasonable timeframe. Check your iat and exp values in the JWT claim.";

/// A verified assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assertion {
    pub(crate) client_email: String,
    /// Space-separated scopes; empty for an ID-token request.
    pub(crate) scope: String,
    /// The `target_audience` of an ID-token request (no `scope`).
    pub(crate) target_audience: Option<String>,
}

/// Why an assertion was refused, as Google answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// 400 `invalid_grant` with this description.
    Grant(String),
    /// 400 `invalid_scope`: no scope claim.
    Scope,
}

fn grant(description: impl Into<String>) -> Rejection {
    Rejection::Grant(description.into())
}

/// Checks signature (by `kid`, else by `iss`), issuer, audience, times and
/// scope. `now` is Unix seconds.
pub(crate) fn verify(
    assertion: &str,
    registry: &Registry,
    token_uri: &str,
    now: i64,
) -> Result<Assertion, Rejection> {
    let mut parts = assertion.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(grant(
            "Invalid JWT: Token must be in JWS compact form (header.payload.signature).",
        ));
    };
    let header =
        decode_object(header_b64).ok_or_else(|| grant("Invalid JWT: Malformed header."))?;
    let claims =
        decode_object(claims_b64).ok_or_else(|| grant("Invalid JWT: Malformed claims."))?;
    let signature = URL_SAFE_NO_PAD_INDIFFERENT
        .decode(signature_b64)
        .map_err(|_| grant(BAD_SIGNATURE))?;

    match header.get("alg").and_then(Value::as_str) {
        Some("RS256") => {}
        other => {
            let alg = other.unwrap_or("none");
            return Err(grant(format!(
                "Invalid JWT: Unsupported signing algorithm '{alg}'."
            )));
        }
    }

    let iss = claims.get("iss").and_then(Value::as_str);
    let record = match header.get("kid").and_then(Value::as_str) {
        Some(kid) => registry.service_accounts.get(kid),
        None => registry
            .service_accounts
            .values()
            .find(|record| Some(record.client_email.as_str()) == iss),
    }
    .ok_or_else(|| grant(BAD_SIGNATURE))?;

    let signed = &assertion[..header_b64.len() + 1 + claims_b64.len()];
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &record.public_key_der)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| grant(BAD_SIGNATURE))?;

    if iss != Some(record.client_email.as_str()) {
        return Err(grant("Invalid JWT: No valid verifier found for issuer."));
    }
    if record.disabled {
        return Err(grant("Invalid grant: account not found"));
    }
    let aud = claims.get("aud").and_then(Value::as_str);
    let googles = registry.googles_audience && aud == Some(GOOGLES_TOKEN_URI);
    if aud != Some(token_uri) && !googles {
        return Err(grant(format!(
            "Invalid JWT: Failed audience check. The right audience is {token_uri}"
        )));
    }
    let iat = claims.get("iat").and_then(Value::as_i64);
    let exp = claims.get("exp").and_then(Value::as_i64);
    let (Some(iat), Some(exp)) = (iat, exp) else {
        return Err(grant(BAD_TIMES));
    };
    let sane = exp > iat
        && exp - iat <= MAX_LIFETIME_SECS
        && iat <= now + SKEW_SECS
        && exp > now - SKEW_SECS;
    if !sane {
        return Err(grant(BAD_TIMES));
    }
    let target_audience = claims
        .get("target_audience")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
        .map(str::to_owned);
    match claims.get("scope").and_then(Value::as_str) {
        Some(scope) if !scope.trim().is_empty() => Ok(Assertion {
            client_email: record.client_email.clone(),
            scope: scope.to_owned(),
            target_audience,
        }),
        _ if target_audience.is_some() => Ok(Assertion {
            client_email: record.client_email.clone(),
            scope: String::new(),
            target_audience,
        }),
        _ => Err(Rejection::Scope),
    }
}

/// The `scope` claim, unverified: for the call log only.
pub(crate) fn peek_scope(assertion: &str) -> Option<String> {
    let claims = decode_object(assertion.split('.').nth(1)?)?;
    claims.get("scope")?.as_str().map(str::to_owned)
}

fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD_INDIFFERENT.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::credentials::write_service_account;
    use crate::emulator::state::Shared;
    use crate::emulator::testing::sign_jwt;
    use serde_json::json;

    const URI: &str = "http://127.0.0.1:9/token";

    fn setup() -> (Shared, crate::emulator::ServiceAccount, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::new("http://127.0.0.1:9".to_owned());
        let sa = write_service_account(&shared, &dir.path().join("sa.json")).unwrap();
        (shared, sa, dir)
    }

    fn claims(sa: &crate::emulator::ServiceAccount, now: i64) -> Value {
        json!({"iss": sa.client_email, "aud": URI, "scope": "s1 s2", "iat": now, "exp": now + 3600})
    }

    fn check(shared: &Shared, jwt: &str, now: i64) -> Result<Assertion, Rejection> {
        verify(jwt, &shared.lock().registry, URI, now)
    }

    #[test]
    fn accepts_a_good_assertion() {
        let (shared, sa, _dir) = setup();
        let now = 1_700_000_000;
        let jwt = sign_jwt(&sa, &claims(&sa, now), true);
        let ok = check(&shared, &jwt, now).unwrap();
        assert_eq!(ok.scope, "s1 s2");
        assert_eq!(peek_scope(&jwt).as_deref(), Some("s1 s2"));
        // Without a kid the key is found by issuer.
        let jwt = sign_jwt(&sa, &claims(&sa, now), false);
        assert!(check(&shared, &jwt, now).is_ok());
    }

    #[test]
    fn googles_audience_only_when_switched_on() {
        let (shared, sa, _dir) = setup();
        let now = 1_700_000_000;
        let mut googles = claims(&sa, now);
        googles["aud"] = json!(GOOGLES_TOKEN_URI);
        let jwt = sign_jwt(&sa, &googles, true);
        assert!(check(&shared, &jwt, now).is_err());
        shared.lock().registry.googles_audience = true;
        assert_eq!(check(&shared, &jwt, now).unwrap().scope, "s1 s2");
        let mut other = claims(&sa, now);
        other["aud"] = json!("https://example.com/token");
        assert!(check(&shared, &sign_jwt(&sa, &other, true), now).is_err());
    }

    #[test]
    fn rejects_with_googles_reasons() {
        let (shared, sa, _dir) = setup();
        let now = 1_700_000_000;
        let reason = |jwt: &str| match check(&shared, jwt, now) {
            Err(Rejection::Grant(text)) => text,
            other => panic!("expected invalid_grant, got {other:?}"),
        };

        let mut bad_aud = claims(&sa, now);
        bad_aud["aud"] = json!("https://oauth2.googleapis.com/token");
        assert!(reason(&sign_jwt(&sa, &bad_aud, true)).contains("Failed audience check"));

        let mut too_long = claims(&sa, now);
        too_long["exp"] = json!(now + 3601);
        assert_eq!(reason(&sign_jwt(&sa, &too_long, true)), BAD_TIMES);

        let mut expired = claims(&sa, now - 7200);
        expired["exp"] = json!(now - 3600);
        assert_eq!(reason(&sign_jwt(&sa, &expired, true)), BAD_TIMES);

        let mut tampered = sign_jwt(&sa, &claims(&sa, now), true);
        tampered.push('A');
        assert_eq!(reason(&tampered), BAD_SIGNATURE);

        let mut wrong_iss = claims(&sa, now);
        wrong_iss["iss"] = json!("someone@else.iam.gserviceaccount.com");
        assert!(reason(&sign_jwt(&sa, &wrong_iss, true)).contains("issuer"));

        assert!(reason("not-a-jwt").starts_with("Invalid JWT"));
        assert!(reason("a.b.c").starts_with("Invalid JWT"));

        let mut no_scope = claims(&sa, now);
        no_scope.as_object_mut().unwrap().remove("scope");
        assert_eq!(
            check(&shared, &sign_jwt(&sa, &no_scope, true), now),
            Err(Rejection::Scope)
        );
    }

    #[test]
    fn another_keys_signature_fails() {
        let (shared, sa, dir) = setup();
        let other = write_service_account(&shared, &dir.path().join("other.json")).unwrap();
        let now = 1_700_000_000;
        // Signed by `other` but claiming `sa`'s kid.
        let mut forged = other.clone();
        forged.private_key_id = sa.private_key_id.clone();
        let jwt = sign_jwt(&forged, &claims(&sa, now), true);
        assert_eq!(
            check(&shared, &jwt, now),
            Err(Rejection::Grant(BAD_SIGNATURE.to_owned()))
        );
    }
}
