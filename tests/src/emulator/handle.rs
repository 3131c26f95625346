//! What tests call on a running [`Emulator`]: counters and the call log,
//! faults and switches, and the identities it issues or accepts.

use std::io;
use std::path::Path;

use super::container_app::app_key;
use super::credentials::{self, AuthorizedUser, ServiceAccount};
use super::endpoint::{Call, Endpoint};
use super::fault::Fault;
use super::server::Emulator;
use super::state::{IssuedToken, Msi2017Form, RegisteredCertificate};
use super::timestamp::TimestampForm;

impl Emulator {
    /// Requests this endpoint has received (faulted ones included) since
    /// start or the last [`reset_counts`](Emulator::reset_counts).
    pub fn calls(&self, endpoint: Endpoint) -> u64 {
        self.shared.lock().calls(endpoint)
    }

    /// Every answered request, oldest first.
    pub fn call_log(&self) -> Vec<Call> {
        self.shared.lock().call_log()
    }

    /// The answered requests of one endpoint, oldest first.
    pub fn calls_to(&self, endpoint: Endpoint) -> Vec<Call> {
        let log = self.call_log();
        log.into_iter()
            .filter(|call| call.endpoint == endpoint)
            .collect()
    }

    /// Zeroes every counter and empties the call log.
    pub fn reset_counts(&self) {
        self.shared.lock().reset_counts();
    }

    /// Queues a fault behind any already queued for this endpoint.
    pub fn push_fault(&self, endpoint: Endpoint, fault: Fault) {
        self.shared.lock().push_fault(endpoint, fault);
    }

    pub fn clear_faults(&self, endpoint: Endpoint) {
        self.shared.lock().clear_faults(endpoint);
    }

    /// Lifetime of tokens issued from now on (default 3600 s; 0 issues tokens
    /// that are already expired). APIM ignores it: its expiry is requested.
    pub fn set_lifetime(&self, endpoint: Endpoint, secs: u64) {
        self.shared.lock().set_lifetime(endpoint, secs);
    }

    /// How GKE `expirationTime` / Container Apps `properties.expires` are written.
    pub fn set_timestamp_form(&self, endpoint: Endpoint, form: TimestampForm) {
        self.shared.lock().set_timestamp_form(endpoint, form);
    }

    /// On: answer the previously issued token and expiry again, as upstream
    /// token caches do near expiry.
    pub fn set_same_token(&self, endpoint: Endpoint, on: bool) {
        self.shared.lock().set_same_token(endpoint, on);
    }

    /// On: `expires_in`/`expires_on` as JSON strings (managed identity's
    /// default); off: as numbers (Google's and Entra v2's default).
    pub fn set_expiry_strings(&self, endpoint: Endpoint, on: bool) {
        self.shared.lock().set_expiry_strings(endpoint, on);
    }

    /// What the emulator knows of a token it issued, expired or not.
    pub fn token_info(&self, token: &str) -> Option<IssuedToken> {
        self.shared.lock().token_info(token)
    }

    /// The token this endpoint issued last.
    pub fn last_token(&self, endpoint: Endpoint) -> Option<IssuedToken> {
        self.shared.lock().last_token(endpoint)
    }

    /// Writes a Google `service_account` key file with a fresh RSA key whose
    /// `token_uri` is this emulator's, and accepts JWTs signed by it.
    ///
    /// # Panics
    /// If the file cannot be written; see [`Emulator::try_write_service_account_key`].
    pub fn write_service_account_key(&self, path: impl AsRef<Path>) -> ServiceAccount {
        let path = path.as_ref();
        self.try_write_service_account_key(path)
            .unwrap_or_else(|e| panic!("cannot write service account key {}: {e}", path.display()))
    }

    pub fn try_write_service_account_key(
        &self,
        path: impl AsRef<Path>,
    ) -> io::Result<ServiceAccount> {
        credentials::write_service_account(&self.shared, path.as_ref())
    }

    /// Refuses the service account's JWTs from now on (`invalid_grant`), as
    /// for a deleted or disabled account.
    pub fn disable_service_account(&self, client_email: &str) {
        self.shared
            .lock()
            .registry
            .disable_service_account(client_email);
    }

    /// Writes a Google `authorized_user` file whose client and refresh token
    /// the emulator accepts.
    ///
    /// # Panics
    /// If the file cannot be written; see [`Emulator::try_write_authorized_user`].
    pub fn write_authorized_user(&self, path: impl AsRef<Path>) -> AuthorizedUser {
        let path = path.as_ref();
        self.try_write_authorized_user(path, None)
            .unwrap_or_else(|e| panic!("cannot write authorized user file {}: {e}", path.display()))
    }

    /// As [`Emulator::write_authorized_user`], optionally with a `quota_project_id`.
    pub fn try_write_authorized_user(
        &self,
        path: impl AsRef<Path>,
        quota_project_id: Option<&str>,
    ) -> io::Result<AuthorizedUser> {
        credentials::write_authorized_user(&self.shared, path.as_ref(), quota_project_id)
    }

    /// Writes an `external_account_authorized_user` file (workforce
    /// identity federation) whose `token_url` is this emulator's
    /// `/v1/oauthtoken`, which checks HTTP Basic client auth and rotates the
    /// refresh token on every use (the old one is then `invalid_grant`).
    ///
    /// # Panics
    /// If the file cannot be written.
    pub fn write_workforce_user(&self, path: impl AsRef<Path>) -> AuthorizedUser {
        let path = path.as_ref();
        credentials::write_workforce_user(&self.shared, path)
            .unwrap_or_else(|e| panic!("cannot write workforce user file {}: {e}", path.display()))
    }

    /// Makes a refresh token answer `invalid_grant` from now on.
    pub fn revoke_refresh_token(&self, refresh_token: &str) {
        self.shared.lock().revoke_refresh_token(refresh_token);
    }

    /// Revokes every refresh token issued to `client_id` (signed-in Entra
    /// users and Google users alike); how many there were.
    pub fn revoke_sign_ins(&self, client_id: &str) -> usize {
        self.shared.lock().revoke_sign_ins(client_id)
    }

    /// The refresh tokens issued to `client_id` that still work (Entra
    /// signed-in users and Google users alike).
    pub fn live_refresh_tokens(&self, client_id: &str) -> Vec<String> {
        let inner = self.shared.lock();
        let mut out: Vec<String> = inner
            .signins
            .entra_refresh_tokens
            .iter()
            .filter(|(_, (_, c))| c == client_id)
            .map(|(t, _)| t.clone())
            .collect();
        if let Some(user) = inner.registry.authorized_users.get(client_id) {
            out.extend(user.refresh_tokens.iter().cloned());
        }
        out
    }

    /// Plays the user of pending device code sign-ins: what their next
    /// poll answers.
    pub fn set_device_outcome(&self, outcome: crate::emulator::DeviceOutcome) {
        self.shared.lock().signins.outcome = outcome;
    }

    /// The polling `interval` the device code endpoint hands out (5 s by
    /// default, as Entra's).
    pub fn set_device_interval(&self, secs: u64) {
        self.shared.lock().signins.interval = secs;
    }

    /// Registers a public client (no secret: users sign in to it) in an
    /// Entra tenant, as `organizations` holds the Azure SDKs' client.
    pub fn register_public_client(&self, tenant: &str, client_id: &str) {
        self.shared
            .lock()
            .registry
            .register_client(tenant, client_id, None);
    }

    /// Writes a Google "Desktop app" OAuth client file (`{"installed":
    /// {...}}`) whose `auth_uri` and `token_uri` are this emulator's, and
    /// registers the client. `refresh_token` in the answer is empty: users
    /// get theirs by signing in.
    ///
    /// # Panics
    /// If the file cannot be written.
    pub fn write_desktop_client(&self, path: impl AsRef<Path>) -> AuthorizedUser {
        let path = path.as_ref();
        credentials::write_desktop_client(&self.shared, path)
            .unwrap_or_else(|e| panic!("cannot write desktop client file {}: {e}", path.display()))
    }

    /// Registers an Entra app with a client secret in a tenant (the tenant is
    /// created on first use). Federated assertions are accepted for it too.
    pub fn register_client(&self, tenant: &str, client_id: &str, secret: &str) {
        self.shared
            .lock()
            .registry
            .register_client(tenant, client_id, Some(secret));
    }

    /// Registers an Entra app that has no secret, for workload identity.
    pub fn register_federated_client(&self, tenant: &str, client_id: &str) {
        self.shared
            .lock()
            .registry
            .register_client(tenant, client_id, None);
    }

    /// Registers an Entra app (no secret) with a certificate, given as PEM
    /// or DER: client assertions whose `x5t` is its thumbprint and whose
    /// signature its key verifies are accepted.
    pub fn register_certificate(&self, tenant: &str, client_id: &str, certificate: &[u8]) {
        let registered = super::entra::registered_certificate(certificate)
            .expect("an RSA certificate, PEM or DER, to register");
        let mut inner = self.shared.lock();
        inner.registry.register_client(tenant, client_id, None);
        inner
            .registry
            .entra_certificates
            .entry(client_id.to_owned())
            .or_default()
            .push(registered);
    }

    /// Registers an Entra app for subject-name/issuer authentication: an
    /// assertion is accepted only with an `x5c` chain whose leaf has
    /// common name `subject` (and signed by that leaf's key).
    pub fn register_certificate_subject(&self, tenant: &str, client_id: &str, subject: &str) {
        let mut inner = self.shared.lock();
        inner.registry.register_client(tenant, client_id, None);
        inner
            .registry
            .entra_certificates
            .entry(client_id.to_owned())
            .or_default()
            .push(RegisteredCertificate {
                x5t: String::new(),
                public_key_der: Vec::new(),
                subject: Some(subject.to_owned()),
            });
    }

    /// The `secret` header App Service's 2017 API requires (until set, any
    /// non-empty value is accepted).
    pub fn set_msi_secret(&self, value: &str) {
        self.shared.lock().registry.msi_secret = Some(value.to_owned());
    }

    /// How App Service's 2017 API writes `expires_on`.
    pub fn set_msi_2017_form(&self, form: Msi2017Form) {
        self.shared.lock().registry.msi_2017_form = form;
    }

    /// The scratch directory the Arc endpoint writes its challenge files
    /// in: the `arc_token_dir` to configure.
    pub fn arc_token_dir(&self) -> std::path::PathBuf {
        super::managed_identity::arc_dir(&mut self.shared.lock())
    }

    /// Makes the Arc endpoint name `path` in its challenge instead of a
    /// file of its own, as a hostile local endpoint would; `None` undoes it.
    pub fn set_arc_challenge_path(&self, path: Option<&str>) {
        self.shared.lock().registry.arc_realm_override = path.map(str::to_owned);
    }

    /// Which federated assertions Entra accepts: `None` = any non-empty one
    /// (the default), `Some(t)` = exactly `t` (to check a rotated file is re-read).
    pub fn set_federated_token(&self, expected: Option<&str>) {
        self.shared.lock().registry.federated_token = expected.map(str::to_owned);
    }

    /// The `X-IDENTITY-HEADER` value App Service's identity endpoint requires
    /// (until set, any non-empty value is accepted).
    pub fn set_identity_header(&self, value: &str) {
        self.shared.lock().registry.identity_header = Some(value.to_owned());
    }

    /// Also accepts JWT grants whose audience is Google's own token URL
    /// (`https://oauth2.googleapis.com/token`), not this emulator's: the
    /// Google libraries gcloud runs sign that audience whatever the key's
    /// `token_uri` says. Off by default, so a client that signs for the
    /// wrong audience is still caught.
    pub fn accept_googles_audience(&self) {
        self.shared.lock().registry.googles_audience = true;
    }

    /// Registers a GKE cluster (`projects/p/locations/l/azureClusters/c`).
    /// Once any is registered, unknown clusters answer 404.
    pub fn register_cluster(&self, name: &str) {
        self.shared.lock().registry.clusters.insert(name.to_owned());
    }

    /// Registers a container app. Once any is registered, unknown apps
    /// answer 404 `ResourceNotFound`.
    pub fn register_container_app(&self, subscription: &str, resource_group: &str, app: &str) {
        let key = app_key(subscription, resource_group, app);
        self.shared.lock().registry.container_apps.insert(key);
    }

    /// Lets `caller` (a service account email, or `user:CLIENT_ID`)
    /// impersonate `target`. Once any grant is registered, every other
    /// caller and target pair answers 403 `PERMISSION_DENIED`.
    pub fn grant_impersonation(&self, caller: &str, target: &str) {
        self.shared
            .lock()
            .registry
            .impersonation
            .insert((caller.to_owned(), target.to_owned()));
    }

    /// Lets impersonated tokens of `service_account` live over an hour (the
    /// org policy `constraints/iam.allowServiceAccountCredentialLifetimeExtension`).
    pub fn allow_lifetime_extension(&self, service_account: &str) {
        self.shared
            .lock()
            .registry
            .lifetime_extension
            .insert(service_account.to_owned());
    }

    /// Who a Google access token was issued to (a service account email,
    /// or `user:CLIENT_ID`).
    pub fn subject_of(&self, token: &str) -> Option<String> {
        self.shared.lock().subject_of(token).map(str::to_owned)
    }

    /// The only subject token STS accepts from now on (`None`: any
    /// non-empty one); also what `GET /oidc/token` serves.
    pub fn set_sts_subject(&self, token: Option<&str>) {
        self.shared.lock().registry.sts_subject = token.map(str::to_owned);
    }
}
