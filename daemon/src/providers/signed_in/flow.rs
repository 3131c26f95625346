//! The sign-in flows of `credcache login`, upstream half: the device code
//! flow (Entra) and the authorization code flow with PKCE (S256) and
//! `state` on a loopback redirect (Entra and Google). The client shows
//! the message, opens the browser and runs the loopback listener; the
//! daemon makes these calls, so the refresh token they yield never leaves
//! it. A [`Session`] lives between the client's requests, in the engine.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use credcache_shared::Secret;
use credcache_shared::protocol::LoginMethod;
use credcache_shared::protocol::LoginStep;
use serde_json::Value;

use super::{GoogleClient, SignIn, google_client, oauth_error_code};
use crate::fetch_error::FetchError;
use crate::http::{self, Http};
use crate::providers::Fetched;

/// The device code grant's `grant_type`.
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// How long a browser sign-in may take before its session is dropped.
const BROWSER_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(10);
/// What `slow_down` adds to the polling interval (RFC 8628).
const SLOW_DOWN_SECS: u64 = 5;

/// A sign-in under way.
pub struct Session {
    pub sign_in: SignIn,
    /// What the refresh token will be filed under.
    pub identity: String,
    google: Option<GoogleClient>,
    pending: Pending,
    pub expires_at: DateTime<Utc>,
}

enum Pending {
    DeviceCode {
        device_code: Secret,
        interval_secs: u64,
    },
    Browser {
        verifier: Secret,
        state: String,
        redirect_uri: String,
    },
}

/// Where a device code sign-in stands.
pub enum Polled {
    /// Not yet: ask again after this many seconds.
    Pending(u64),
    /// Signed in.
    SignedIn(SignedIn),
}

/// What a finished sign-in yields.
pub struct SignedIn {
    /// The refresh token to keep.
    pub refresh_token: Secret,
    /// The access token the same answer carried, for the credential's
    /// configured scopes (the sign-in asked for them): its first token,
    /// so that signing in costs no second call. `None` when the answer's
    /// token is unusable; the first token is then minted as any other.
    pub first: Option<Fetched>,
}

/// Starts a sign-in by `method`. For the browser flow `redirect_port` is
/// the client's loopback listener.
pub async fn start(
    http: &Http,
    name: &str,
    sign_in: &SignIn,
    method: LoginMethod,
    redirect_port: Option<u16>,
    now: DateTime<Utc>,
) -> Result<(LoginStep, Session), FetchError> {
    let google = match sign_in {
        SignIn::Google { client_file, .. } => Some(google_client(client_file).await?),
        SignIn::Entra { .. } => None,
    };
    let identity = sign_in.identity(google.as_ref());
    let session = |pending, expires_at| Session {
        sign_in: sign_in.clone(),
        identity: identity.clone(),
        google: None,
        pending,
        expires_at,
    };
    match method {
        LoginMethod::DeviceCode => {
            let SignIn::Entra {
                authority,
                tenant,
                client_id,
                scope,
                ..
            } = sign_in
            else {
                return Err(FetchError::config(format!(
                    "{name} signs in to Google, which has no device code flow for desktop clients: run `credcache login {name}` without --device-code"
                )));
            };
            let request = http
                .client()?
                .post(format!("{authority}/{tenant}/oauth2/v2.0/devicecode"))
                .form(&[
                    ("client_id", client_id.as_str()),
                    ("scope", &format!("{scope} offline_access openid profile")),
                ]);
            let answer = http::send("entra device code endpoint", request).await?;
            if !answer.is_success() {
                return Err(answer.error(now));
            }
            let v: Value = answer.json()?;
            let field = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
            let number = |key: &str| {
                v.get(key)
                    .and_then(|n| super::token_response::integer(key, n).ok())
                    .and_then(|n| u64::try_from(n).ok())
            };
            let bad = |what: &str| {
                FetchError::transient(format!(
                    "entra device code endpoint answered {} without {what}",
                    answer.status
                ))
            };
            let device_code = field("device_code").ok_or_else(|| bad("device_code"))?;
            let message = match field("message") {
                Some(m) => http::sanitize(&m, 500),
                None => {
                    let uri = field("verification_uri").ok_or_else(|| bad("verification_uri"))?;
                    let code = field("user_code").ok_or_else(|| bad("user_code"))?;
                    format!(
                        "To sign in, use a web browser to open the page {} and enter the code {} to authenticate.",
                        http::sanitize(&uri, 200),
                        http::sanitize(&code, 40)
                    )
                }
            };
            let interval_secs = number("interval").unwrap_or(5).clamp(1, 60);
            let expires_in_secs = number("expires_in").unwrap_or(900).clamp(1, 3600);
            let step = LoginStep::DeviceCode {
                message,
                interval_secs,
                expires_in_secs,
            };
            let pending = Pending::DeviceCode {
                device_code: Secret::new(device_code),
                interval_secs,
            };
            let expires_at = now + chrono::TimeDelta::seconds(expires_in_secs as i64);
            Ok((step, session(pending, expires_at)))
        }
        LoginMethod::Browser => {
            let port = redirect_port.ok_or_else(|| {
                FetchError::config("the browser sign-in needs the client's loopback port")
            })?;
            let verifier = Secret::new(random_text(32));
            let state = random_text(16);
            let challenge = {
                use sha2::{Digest, Sha256};
                URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose().as_bytes()))
            };
            let (base, redirect_uri, mut params) = match (sign_in, &google) {
                (
                    SignIn::Entra {
                        authority,
                        tenant,
                        client_id,
                        scope,
                        ..
                    },
                    _,
                ) => (
                    format!("{authority}/{tenant}/oauth2/v2.0/authorize"),
                    // Entra's public clients register http://localhost.
                    format!("http://localhost:{port}"),
                    vec![
                        ("client_id", client_id.clone()),
                        ("scope", format!("{scope} offline_access openid profile")),
                        ("prompt", "select_account".to_owned()),
                    ],
                ),
                (SignIn::Google { scopes, .. }, Some(client)) => (
                    client.auth_uri.clone(),
                    format!("http://127.0.0.1:{port}/"),
                    vec![
                        ("client_id", client.client_id.clone()),
                        ("scope", scopes.join(" ")),
                        ("access_type", "offline".to_owned()),
                        ("prompt", "consent".to_owned()),
                    ],
                ),
                (SignIn::Google { .. }, None) => unreachable!("read above"),
            };
            params.extend([
                ("redirect_uri", redirect_uri.clone()),
                ("response_type", "code".to_owned()),
                ("code_challenge", challenge),
                ("code_challenge_method", "S256".to_owned()),
                ("state", state.clone()),
            ]);
            let url = reqwest::Url::parse_with_params(&base, &params).map_err(|e| {
                FetchError::config(format!("the authorize address {base} is not a URL: {e}"))
            })?;
            let step = LoginStep::Browser {
                url: url.to_string(),
            };
            let pending = Pending::Browser {
                verifier,
                state,
                redirect_uri,
            };
            let mut session = session(pending, now + BROWSER_WINDOW);
            session.google = google;
            Ok((step, session))
        }
    }
}

/// Asks whether the user finished the device code sign-in.
pub async fn poll(
    http: &Http,
    name: &str,
    session: &mut Session,
    now: DateTime<Utc>,
) -> Result<Polled, FetchError> {
    let Pending::DeviceCode {
        device_code,
        interval_secs,
    } = &mut session.pending
    else {
        return Err(FetchError::config(format!(
            "no device code sign-in of {name} is under way: run `credcache login {name}`"
        )));
    };
    let SignIn::Entra {
        authority,
        tenant,
        client_id,
        ..
    } = &session.sign_in
    else {
        unreachable!("only Entra starts a device code sign-in");
    };
    let request = http
        .client()?
        .post(format!("{authority}/{tenant}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", DEVICE_CODE_GRANT),
            ("client_id", client_id.as_str()),
            ("device_code", device_code.expose()),
        ]);
    let answer = http::send("entra token endpoint (device code)", request).await?;
    if answer.is_success() {
        return signed_in(&answer, now).map(Polled::SignedIn);
    }
    match oauth_error_code(&answer.body).as_deref() {
        Some("authorization_pending") => Ok(Polled::Pending(*interval_secs)),
        Some("slow_down") => {
            *interval_secs += SLOW_DOWN_SECS;
            Ok(Polled::Pending(*interval_secs))
        }
        Some("authorization_declined") => Err(FetchError::permanent(format!(
            "sign-in declined: the user said no at the sign-in page; run `credcache login {name}` to try again"
        ))),
        Some("expired_token") => Err(FetchError::permanent(format!(
            "the sign-in code expired before it was used: run `credcache login {name}` again"
        ))),
        _ => Err(answer.error(now)),
    }
}

/// Redeems the code the browser brought back, after checking `state`.
pub async fn redeem(
    http: &Http,
    name: &str,
    session: &Session,
    code: &Secret,
    state: &str,
    now: DateTime<Utc>,
) -> Result<SignedIn, FetchError> {
    let Pending::Browser {
        verifier,
        state: expected,
        redirect_uri,
    } = &session.pending
    else {
        return Err(FetchError::config(format!(
            "no browser sign-in of {name} is under way: run `credcache login {name}`"
        )));
    };
    if state != expected {
        return Err(FetchError::permanent(
            "the sign-in answer's state does not match the one sent: refused (a stale or forged redirect)",
        ));
    }
    let request = match (&session.sign_in, &session.google) {
        (
            SignIn::Entra {
                authority,
                tenant,
                client_id,
                scope,
                ..
            },
            _,
        ) => http
            .client()?
            .post(format!("{authority}/{tenant}/oauth2/v2.0/token"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", client_id.as_str()),
                ("code", code.expose()),
                ("redirect_uri", redirect_uri.as_str()),
                ("code_verifier", verifier.expose()),
                ("scope", &format!("{scope} offline_access openid profile")),
            ]),
        (SignIn::Google { .. }, Some(client)) => http.client()?.post(&client.token_uri).form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client.client_id.as_str()),
            ("client_secret", client.client_secret.expose()),
            ("code", code.expose()),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_verifier", verifier.expose()),
        ]),
        (SignIn::Google { .. }, None) => unreachable!("a browser session keeps its client"),
    };
    let answer = http::send("token endpoint (authorization code)", request).await?;
    if !answer.is_success() {
        return Err(answer.error(now));
    }
    signed_in(&answer, now)
}

/// The refresh token of a successful sign-in answer, and its access token.
fn signed_in(answer: &http::Answer, now: DateTime<Utc>) -> Result<SignedIn, FetchError> {
    let v: Value = answer.json()?;
    let refresh_token = match v.get("refresh_token").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => Secret::new(t),
        _ => {
            return Err(FetchError::permanent(format!(
                "{} answered {} without a refresh token (offline access not granted?)",
                answer.what, answer.status
            )));
        }
    };
    let first = super::token_response::parse(answer, now)
        .and_then(|f| http::check_token(&f.token).map(|()| f))
        .ok()
        .filter(|f| f.expires_at > now);
    Ok(SignedIn {
        refresh_token,
        first,
    })
}

/// `n` random bytes, base64url: PKCE verifiers and `state`.
fn random_text(n: usize) -> String {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    URL_SAFE_NO_PAD.encode(bytes)
}
