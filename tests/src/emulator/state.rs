//! The emulator's shared state: per-endpoint counters, faults and switches,
//! the call log, every token issued, and the credentials it knows.
//!
//! Everything sits behind one `std::sync::Mutex`; handlers take it briefly
//! and never across an `.await` (a fault's delay is slept unlocked).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};

use super::endpoint::{Call, Endpoint};
use super::fault::Fault;
use super::timestamp::TimestampForm;

/// Token lifetime of every endpoint until told otherwise.
pub const DEFAULT_LIFETIME_SECS: u64 = 3600;

/// Lifetimes are capped so expiry arithmetic cannot overflow (ten years).
const MAX_LIFETIME_SECS: u64 = 10 * 365 * 24 * 3600;

/// The call log keeps this many most recent entries; counters stay exact.
const LOG_CAPACITY: usize = 100_000;

/// A token the emulator issued, remembered so that dependent endpoints can
/// check a bearer is genuine and unexpired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    /// The endpoint that issued it.
    pub endpoint: Endpoint,
    pub expires_at: DateTime<Utc>,
    /// The scope(s) or resource it was issued for.
    pub scope: Option<String>,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BearerProblem {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not a token one of the accepted endpoints issued.
    Unknown,
    /// Issued, but expired at this instant.
    Expired(DateTime<Utc>),
}

/// Per-endpoint counters, faults and switches.
#[derive(Debug)]
struct EndpointState {
    calls: u64,
    lifetime_secs: u64,
    faults: VecDeque<Fault>,
    same_token: bool,
    last: Option<IssuedToken>,
    timestamp_form: TimestampForm,
    expiry_strings: bool,
}

impl EndpointState {
    fn new(endpoint: Endpoint) -> EndpointState {
        EndpointState {
            calls: 0,
            lifetime_secs: DEFAULT_LIFETIME_SECS,
            faults: VecDeque::new(),
            same_token: false,
            last: None,
            timestamp_form: TimestampForm::default_for(endpoint),
            expiry_strings: matches!(
                endpoint,
                Endpoint::Imds
                    | Endpoint::AppServiceMsi
                    | Endpoint::CloudShellMsi
                    | Endpoint::AppService2017Msi
                    | Endpoint::ArcMsi
            ),
        }
    }
}

/// A service-account key the emulator generated (its public half).
#[derive(Debug, Clone)]
pub(crate) struct ServiceAccountRecord {
    pub(crate) client_email: String,
    /// RFC 8017 `RSAPublicKey` DER.
    pub(crate) public_key_der: Vec<u8>,
    pub(crate) disabled: bool,
}

/// An OAuth client with the refresh tokens it may still use.
#[derive(Debug, Clone)]
pub(crate) struct AuthorizedUserRecord {
    pub(crate) client_secret: String,
    pub(crate) refresh_tokens: HashSet<String>,
}

/// Identities and resources the emulator knows.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// By `private_key_id` (the JWT `kid`).
    pub(crate) service_accounts: HashMap<String, ServiceAccountRecord>,
    /// By OAuth `client_id`.
    pub(crate) authorized_users: HashMap<String, AuthorizedUserRecord>,
    /// Lower-cased tenant → client id → client secret (`None`: federated
    /// credentials only).
    pub(crate) entra_tenants: HashMap<String, HashMap<String, Option<String>>>,
    /// `None`: any non-empty federated assertion is accepted; `Some(t)`: only `t`.
    pub(crate) federated_token: Option<String>,
    /// The App Service `X-IDENTITY-HEADER` value; `None` accepts any non-empty one.
    pub(crate) identity_header: Option<String>,
    /// GKE cluster names (`projects/p/locations/l/azureClusters/c`); empty accepts any.
    pub(crate) clusters: HashSet<String>,
    /// Lower-cased `sub/rg/app`; empty accepts any.
    pub(crate) container_apps: HashSet<String>,
    /// APIM signing keys: primary, secondary.
    pub(crate) apim_keys: [Vec<u8>; 2],
    /// `(caller, target)`: who may impersonate whom (a caller is a service
    /// account email, or `user:CLIENT_ID` for an authorized user); empty
    /// lets anyone impersonate anyone.
    pub(crate) impersonation: HashSet<(String, String)>,
    /// Service accounts whose tokens may live over an hour (the org policy
    /// constraints/iam.allowServiceAccountCredentialLifetimeExtension).
    pub(crate) lifetime_extension: HashSet<String>,
    /// The only subject token STS accepts; `None`: any non-empty one.
    pub(crate) sts_subject: Option<String>,
    /// Whether a JWT grant may also name Google's own token URL as its
    /// audience, as Google's libraries sign (gcloud; the bench's peers).
    pub(crate) googles_audience: bool,
    /// Client id → the certificates registered on that Entra app.
    pub(crate) entra_certificates: HashMap<String, Vec<RegisteredCertificate>>,
    /// App Service 2017's `secret` header value; `None` accepts any non-empty one.
    pub(crate) msi_secret: Option<String>,
    /// How App Service 2017 writes `expires_on`.
    pub(crate) msi_2017_form: Msi2017Form,
    /// Azure Arc: the scratch directory challenge files are written in
    /// (made on first use), the keys it wrote and still accepts, and a
    /// path to name in the challenge instead (a hostile endpoint).
    pub(crate) arc_dir: Option<tempfile::TempDir>,
    pub(crate) arc_keys: HashSet<String>,
    pub(crate) arc_realm_override: Option<String>,
}

/// A certificate on an Entra app: by thumbprint, or (subject name and
/// issuer authentication) by subject, when the assertion brings its `x5c`.
#[derive(Debug, Clone)]
pub(crate) struct RegisteredCertificate {
    /// base64url SHA-1 of the DER (the JWT `x5t`).
    pub(crate) x5t: String,
    /// RFC 8017 `RSAPublicKey` DER.
    pub(crate) public_key_der: Vec<u8>,
    /// `Some(CN)`: accepted only with an `x5c` chain whose leaf has this CN.
    pub(crate) subject: Option<String>,
}

/// The forms App Service's 2017 API writes `expires_on` in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Msi2017Form {
    /// `09/14/2017 05:24:12 PM +00:00` (Windows hosts).
    #[default]
    TwelveHour,
    /// `09/14/2017 17:24:12 +00:00` (Linux hosts).
    TwentyFourHour,
    /// `1505409852`.
    Epoch,
}

impl Registry {
    /// Registers an Entra app in a tenant (created on first use); `secret`
    /// `None` allows federated credentials only.
    pub(crate) fn register_client(&mut self, tenant: &str, client_id: &str, secret: Option<&str>) {
        self.entra_tenants
            .entry(tenant.to_ascii_lowercase())
            .or_default()
            .insert(client_id.to_owned(), secret.map(str::to_owned));
    }

    /// Makes a refresh token unusable (`invalid_grant` from then on).
    pub(crate) fn revoke_refresh_token(&mut self, refresh_token: &str) {
        for user in self.authorized_users.values_mut() {
            user.refresh_tokens.remove(refresh_token);
        }
    }

    /// Disables the service account with this email: its JWTs are refused.
    pub(crate) fn disable_service_account(&mut self, client_email: &str) {
        for account in self.service_accounts.values_mut() {
            if account.client_email == client_email {
                account.disabled = true;
            }
        }
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct Inner {
    /// `http://127.0.0.1:PORT`, as advertised in the credential files.
    pub(crate) base: String,
    endpoints: Vec<EndpointState>,
    log: VecDeque<Call>,
    tokens: HashMap<String, IssuedToken>,
    /// Who each Google access token was issued to.
    subjects: HashMap<String, String>,
    /// `(kid, PKCS#8 PEM)` of the key ID tokens are signed with, made on
    /// first use.
    id_token_key: Option<(String, String)>,
    pub(crate) registry: Registry,
    /// User sign-ins: device codes, authorization codes, Entra refresh tokens.
    pub(crate) signins: super::signin::SignIns,
}

impl Inner {
    /// Makes a refresh token `invalid_grant` from now on, Google's or a
    /// signed-in Entra user's.
    pub(crate) fn revoke_refresh_token(&mut self, refresh_token: &str) {
        self.registry.revoke_refresh_token(refresh_token);
        self.signins.entra_refresh_tokens.remove(refresh_token);
    }

    /// Revokes every refresh token of `client_id` (a password change, an
    /// admin's "revoke sessions"); how many there were.
    pub(crate) fn revoke_sign_ins(&mut self, client_id: &str) -> usize {
        let before = self.signins.entra_refresh_tokens.len();
        self.signins
            .entra_refresh_tokens
            .retain(|_, (_, c)| c != client_id);
        let mut revoked = before - self.signins.entra_refresh_tokens.len();
        if let Some(user) = self.registry.authorized_users.get_mut(client_id) {
            revoked += user.refresh_tokens.len();
            user.refresh_tokens.clear();
        }
        revoked
    }

    fn new(base: String) -> Inner {
        let registry = Registry {
            apim_keys: [random_bytes(64), random_bytes(64)],
            ..Registry::default()
        };
        Inner {
            base,
            endpoints: Endpoint::ALL.into_iter().map(EndpointState::new).collect(),
            log: VecDeque::new(),
            tokens: HashMap::new(),
            subjects: HashMap::new(),
            id_token_key: None,
            registry,
            signins: Default::default(),
        }
    }

    /// A fresh state for unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Inner {
        Inner::new("http://127.0.0.1:9".to_owned())
    }

    fn endpoint(&self, endpoint: Endpoint) -> &EndpointState {
        &self.endpoints[endpoint.index()]
    }

    fn endpoint_mut(&mut self, endpoint: Endpoint) -> &mut EndpointState {
        &mut self.endpoints[endpoint.index()]
    }

    /// Counts a request and takes the fault that answers it, if any.
    fn begin(&mut self, endpoint: Endpoint) -> Option<Fault> {
        let state = self.endpoint_mut(endpoint);
        state.calls += 1;
        let front = state.faults.front_mut()?;
        let fault = front.clone();
        if let Some(times) = front.times.as_mut() {
            *times = times.saturating_sub(1);
            if *times == 0 {
                state.faults.pop_front();
            }
        }
        Some(fault)
    }

    fn record(&mut self, call: Call) {
        if self.log.len() >= LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(call);
    }

    pub(crate) fn calls(&self, endpoint: Endpoint) -> u64 {
        self.endpoint(endpoint).calls
    }

    pub(crate) fn call_log(&self) -> Vec<Call> {
        self.log.iter().cloned().collect()
    }

    /// Zeroes every counter and empties the call log.
    pub(crate) fn reset_counts(&mut self) {
        for state in &mut self.endpoints {
            state.calls = 0;
        }
        self.log.clear();
    }

    pub(crate) fn push_fault(&mut self, endpoint: Endpoint, fault: Fault) {
        // A fault for zero requests would never be popped; drop it instead.
        if fault.times != Some(0) {
            self.endpoint_mut(endpoint).faults.push_back(fault);
        }
    }

    pub(crate) fn clear_faults(&mut self, endpoint: Endpoint) {
        self.endpoint_mut(endpoint).faults.clear();
    }

    pub(crate) fn set_lifetime(&mut self, endpoint: Endpoint, secs: u64) {
        self.endpoint_mut(endpoint).lifetime_secs = secs.min(MAX_LIFETIME_SECS);
    }

    pub(crate) fn lifetime_secs(&self, endpoint: Endpoint) -> u64 {
        self.endpoint(endpoint).lifetime_secs
    }

    pub(crate) fn set_same_token(&mut self, endpoint: Endpoint, on: bool) {
        self.endpoint_mut(endpoint).same_token = on;
    }

    pub(crate) fn set_timestamp_form(&mut self, endpoint: Endpoint, form: TimestampForm) {
        self.endpoint_mut(endpoint).timestamp_form = form;
    }

    pub(crate) fn timestamp_form(&self, endpoint: Endpoint) -> TimestampForm {
        self.endpoint(endpoint).timestamp_form
    }

    pub(crate) fn set_expiry_strings(&mut self, endpoint: Endpoint, on: bool) {
        self.endpoint_mut(endpoint).expiry_strings = on;
    }

    pub(crate) fn expiry_strings(&self, endpoint: Endpoint) -> bool {
        self.endpoint(endpoint).expiry_strings
    }

    /// With the same-token switch on, the token this endpoint issued last.
    pub(crate) fn reuse(&self, endpoint: Endpoint) -> Option<IssuedToken> {
        let state = self.endpoint(endpoint);
        if state.same_token {
            state.last.clone()
        } else {
            None
        }
    }

    /// Remembers a token as issued now by its endpoint.
    pub(crate) fn remember(&mut self, token: IssuedToken) {
        self.endpoint_mut(token.endpoint).last = Some(token.clone());
        self.tokens.insert(token.token.clone(), token);
    }

    /// A fresh random token `prefix<random>` living the endpoint's lifetime,
    /// or the previous one when the same-token switch is on.
    pub(crate) fn issue(
        &mut self,
        endpoint: Endpoint,
        prefix: &str,
        scope: Option<String>,
    ) -> IssuedToken {
        if let Some(token) = self.reuse(endpoint) {
            return token;
        }
        let token = IssuedToken {
            token: format!("{prefix}{}", random_token(24)),
            endpoint,
            expires_at: expiry_after(self.lifetime_secs(endpoint)),
            scope,
        };
        self.remember(token.clone());
        token
    }

    /// The token, if one of `issuers` issued it and it has not expired.
    pub(crate) fn check_bearer(
        &self,
        token: Option<&str>,
        issuers: &[Endpoint],
    ) -> Result<IssuedToken, BearerProblem> {
        let token = token.ok_or(BearerProblem::Missing)?;
        let issued = self
            .tokens
            .get(token)
            .filter(|issued| issuers.contains(&issued.endpoint))
            .ok_or(BearerProblem::Unknown)?;
        if issued.expires_at <= Utc::now() {
            return Err(BearerProblem::Expired(issued.expires_at));
        }
        Ok(issued.clone())
    }

    /// Records who `token` was issued to.
    pub(crate) fn attribute(&mut self, token: &str, subject: &str) {
        self.subjects.insert(token.to_owned(), subject.to_owned());
    }

    /// `(kid, PEM)` of the ID-token signing key, generated on first use.
    pub(crate) fn id_token_key(&mut self) -> (String, String) {
        self.id_token_key
            .get_or_insert_with(|| {
                use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
                let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .expect("RSA key generation works");
                let der: Pkcs8V1Der<'static> = key.as_der().expect("PKCS#8 export works");
                (
                    random_hex(20),
                    super::credentials::pem("PRIVATE KEY", der.as_ref()),
                )
            })
            .clone()
    }

    /// Who `token` was issued to, if recorded.
    pub(crate) fn subject_of(&self, token: &str) -> Option<&str> {
        self.subjects.get(token).map(String::as_str)
    }

    pub(crate) fn token_info(&self, token: &str) -> Option<IssuedToken> {
        self.tokens.get(token).cloned()
    }

    pub(crate) fn last_token(&self, endpoint: Endpoint) -> Option<IssuedToken> {
        self.endpoint(endpoint).last.clone()
    }
}

/// The handle every handler and the [`Emulator`](super::Emulator) hold.
#[derive(Debug, Clone)]
pub(crate) struct Shared(Arc<Mutex<Inner>>);

impl Shared {
    pub(crate) fn new(base: String) -> Shared {
        Shared(Arc::new(Mutex::new(Inner::new(base))))
    }

    /// The state; a panic elsewhere while holding it does not poison the
    /// emulator for the rest of a test run.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts the request, applies a scripted fault if one is queued
    /// (sleeping its delay unlocked), otherwise lets `answer` build the
    /// normal reply; then logs the call with the status answered.
    pub(crate) async fn serve(
        &self,
        mut call: Call,
        answer: impl FnOnce(&mut Inner) -> Response,
    ) -> Response {
        let fault = self.lock().begin(call.endpoint);
        let mut scripted = None;
        if let Some(fault) = fault {
            if !fault.delay.is_zero() {
                tokio::time::sleep(fault.delay).await;
            }
            if !fault.passes_through() {
                call.faulted = true;
                scripted = Some(fault.to_response());
            }
        }
        let mut inner = self.lock();
        let response = match scripted {
            Some(response) => response,
            None => answer(&mut inner),
        };
        call.status = response.status().as_u16();
        call.at = Utc::now();
        inner.record(call);
        response
    }
}

/// Now plus `secs`, saturating at chrono's maximum.
pub(crate) fn expiry_after(secs: u64) -> DateTime<Utc> {
    let delta =
        TimeDelta::try_seconds(i64::try_from(secs).unwrap_or(i64::MAX)).unwrap_or(TimeDelta::MAX);
    Utc::now()
        .checked_add_signed(delta)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The token of an `Authorization: Bearer <token>` header (scheme matched
/// case-insensitively, as servers do).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// A header's value as text, if present and valid.
pub(crate) fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}

/// `n` bytes from the system's secure random source.
pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    // Failure here means the OS has no entropy source: nothing a test can do.
    aws_lc_rs::rand::fill(&mut bytes).expect("system random source is available");
    bytes
}

/// `n` random bytes, base64url without padding: safe in headers and URLs.
pub(crate) fn random_token(n: usize) -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(n))
}

/// `n` random bytes as lower-case hex.
pub(crate) fn random_hex(n: usize) -> String {
    random_bytes(n).iter().map(|b| format!("{b:02x}")).collect()
}

/// A random version-4 UUID, as Entra and ARM put in trace and request ids.
pub(crate) fn random_uuid() -> String {
    let mut b = random_bytes(16);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_times_run_out_then_recover() {
        let mut inner = Inner::new("http://127.0.0.1:1".to_owned());
        inner.push_fault(Endpoint::GkeToken, Fault::html(502).times(2));
        assert!(inner.begin(Endpoint::GkeToken).is_some());
        assert!(inner.begin(Endpoint::GkeToken).is_some());
        assert!(inner.begin(Endpoint::GkeToken).is_none());
        assert_eq!(inner.calls(Endpoint::GkeToken), 3);
        inner.push_fault(Endpoint::GkeToken, Fault::html(502).times(0));
        assert!(inner.begin(Endpoint::GkeToken).is_none());
    }

    #[test]
    fn same_token_switch_reissues_last() {
        let mut inner = Inner::new("http://127.0.0.1:1".to_owned());
        let first = inner.issue(Endpoint::GoogleToken, "ya29.emu-", None);
        let second = inner.issue(Endpoint::GoogleToken, "ya29.emu-", None);
        assert_ne!(first.token, second.token);
        inner.set_same_token(Endpoint::GoogleToken, true);
        let third = inner.issue(Endpoint::GoogleToken, "ya29.emu-", None);
        assert_eq!(third, second);
    }

    #[test]
    fn bearer_checks_issuer_and_expiry() {
        let mut inner = Inner::new("http://127.0.0.1:1".to_owned());
        let google = inner.issue(Endpoint::GoogleToken, "ya29.emu-", None);
        let ok = inner.check_bearer(Some(&google.token), &[Endpoint::GoogleToken]);
        assert_eq!(ok, Ok(google.clone()));
        let wrong = inner.check_bearer(Some(&google.token), &[Endpoint::EntraToken]);
        assert_eq!(wrong, Err(BearerProblem::Unknown));
        assert_eq!(
            inner.check_bearer(None, &[Endpoint::GoogleToken]),
            Err(BearerProblem::Missing)
        );
        inner.set_lifetime(Endpoint::GoogleToken, 0);
        let dead = inner.issue(Endpoint::GoogleToken, "ya29.emu-", None);
        let expired = inner.check_bearer(Some(&dead.token), &[Endpoint::GoogleToken]);
        assert_eq!(expired, Err(BearerProblem::Expired(dead.expires_at)));
    }

    #[test]
    fn bearer_header_parsing() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert("authorization", "bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc".to_owned()));
        headers.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        headers.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn uuid_shape() {
        let id = random_uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }

    #[test]
    fn huge_lifetime_saturates() {
        assert!(expiry_after(u64::MAX) > Utc::now());
    }
}
