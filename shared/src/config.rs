//! The config file (docs/configuration.md): its schema, and validation that reports every
//! problem with the file, the credential and the key before anything runs.
//!
//! Parsing goes through a `toml::Table` and a small field reader
//! ([`parse`]) rather than serde derive, so that unknown keys, wrong types
//! and semantic errors are all collected (not just the first) and each is
//! named precisely. The types here are plain data; they hold no secrets,
//! only where to find them, so they can be printed and fingerprinted freely.

pub mod keys;
mod parse;

pub use parse::service_account_email;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::host_pattern::{HostPattern, PathPrefix};

/// The largest config file read. Larger than the 1 MiB of other files
/// (`files::MAX_FILE`): a config of 10,000 credentials, which the daemon
/// is built to hold (BENCHMARKS.md), is about 1.6 MB.
pub const MAX_CONFIG: usize = 16 << 20;

/// A validated config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub daemon: DaemonSettings,
    /// Every credential by name, the built-in `google` and `azure` included.
    /// Shared: the daemon's engine holds the same `Arc`s rather than copies
    /// (with 10,000 credentials each copy was 5 MB).
    pub credentials: BTreeMap<String, Arc<Credential>>,
    pub git: Vec<GitHelper>,
    pub docker: Vec<DockerHelper>,
}

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonSettings {
    pub refresh_ahead: Duration,
    pub refresh_fraction: f64,
    pub min_valid: Duration,
    /// Zero: never exit for idleness.
    pub idle_timeout: Duration,
    pub http_timeout: Duration,
    /// Run (no shell, `{name}` replaced, killed after 10 s) once each time a
    /// credential comes to need a person: `credcache login NAME`. Empty:
    /// nothing is run.
    pub on_reauth: Vec<String>,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            refresh_ahead: Duration::from_secs(300),
            refresh_fraction: 0.2,
            min_valid: Duration::from_secs(60),
            idle_timeout: Duration::ZERO,
            http_timeout: Duration::from_secs(30),
            on_reauth: Vec::new(),
        }
    }
}

/// `[credentials.NAME]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    pub name: String,
    pub source: Source,
    pub refresh_ahead: Option<Duration>,
    pub min_valid: Option<Duration>,
    pub prefetch: bool,
    /// Always set: the configured one or `CREDCACHE_<NAME>_TOKEN`. Shared,
    /// not copied, with every answer that carries it.
    pub env_var: Arc<str>,
    /// One of the built-in `google` and `azure`, which no file configured.
    pub builtin: bool,
}

impl Credential {
    /// The `kind = "..."` string.
    pub fn kind(&self) -> &'static str {
        self.source.kind()
    }

    /// The credential whose token authorizes this one's fetch.
    pub fn auth(&self) -> Option<&str> {
        self.source.auth()
    }
}

/// What a credential is and where its token comes from: one variant per
/// `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Source {
    Google(GoogleSettings),
    GoogleIdToken(GoogleIdTokenSettings),
    Azure(AzureSettings),
    GkeCluster(GkeClusterSettings),
    ContainerApp(ContainerAppSettings),
    ApimUserToken(ApimUserTokenSettings),
    Command(CommandSettings),
}

impl Source {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Google(_) => "google",
            Self::GoogleIdToken(_) => "google-id-token",
            Self::Azure(_) => "azure",
            Self::GkeCluster(_) => "gke-cluster",
            Self::ContainerApp(_) => "container-app",
            Self::ApimUserToken(_) => "apim-user-token",
            Self::Command(_) => "command",
        }
    }

    pub fn auth(&self) -> Option<&str> {
        match self {
            Self::GkeCluster(s) => Some(&s.auth),
            Self::GoogleIdToken(s) => Some(&s.auth),
            Self::ContainerApp(s) => Some(&s.auth),
            Self::ApimUserToken(s) => Some(&s.auth),
            Self::Google(_) | Self::Azure(_) | Self::Command(_) => None,
        }
    }
}

/// Every `kind` the config accepts.
pub const KINDS: &[&str] = &[
    "google",
    "google-id-token",
    "azure",
    "gke-cluster",
    "container-app",
    "apim-user-token",
    "command",
];

pub const DEFAULT_GOOGLE_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
pub const DEFAULT_AZURE_SCOPE: &str = "https://management.azure.com/.default";
pub const DEFAULT_ARM_ENDPOINT: &str = "https://management.azure.com";
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// The tenant a user signs in to by default (`credcache login`): any work
/// or school account.
pub const DEFAULT_LOGIN_TENANT: &str = "organizations";
/// The public client the Azure identity SDKs and the Azure CLI sign users in
/// with, used by `credcache login` when no `client_id` is set.
pub const DEFAULT_LOGIN_CLIENT_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

/// `kind = "google"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoogleSettings {
    /// A service_account or authorized_user JSON file; `None` means the ADC
    /// order.
    pub key_file: Option<PathBuf>,
    pub scopes: Vec<String>,
    pub token_uri: Option<String>,
    pub metadata_host: Option<String>,
    /// The service account whose token this credential is, minted by IAM
    /// Credentials `generateAccessToken` with the source's token.
    pub impersonate_service_account: Option<String>,
    /// The chain of service accounts between the source and the target,
    /// each as `projects/-/serviceAccounts/EMAIL`.
    pub delegates: Vec<String>,
    /// The lifetime asked of `generateAccessToken`, with
    /// `impersonate_service_account` or over a key file that impersonates;
    /// `None`: one hour (or an external account's `token_lifetime_seconds`).
    pub lifetime: Option<Duration>,
    /// `https://iamcredentials.googleapis.com` unless set.
    pub iam_endpoint: Option<String>,
    /// A "Desktop app" OAuth client file (`{"installed": {...}}`): the user
    /// signs in with `credcache login NAME` and the daemon refreshes with
    /// the refresh token kept in its store.
    pub oauth_client_file: Option<PathBuf>,
}

/// The longest lifetime `generateAccessToken` grants (with the org policy
/// that allows more than an hour).
pub const GOOGLE_MAX_IMPERSONATION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// `kind = "google-id-token"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoogleIdTokenSettings {
    /// The `google` credential whose identity the ID token is minted for.
    pub auth: String,
    pub audience: String,
    pub include_email: bool,
}

/// `kind = "azure"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AzureSettings {
    pub method: AzureMethod,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretSource>,
    pub authority_host: Option<String>,
    pub scope: String,
    pub identity_endpoint: Option<String>,
    /// `method = "certificate"`: a PEM (key + certificate) or PKCS#12 file.
    pub certificate_file: Option<PathBuf>,
    /// The PKCS#12 file's password; never inline.
    pub certificate_password: Option<SecretSource>,
    /// Send the `x5c` chain (subject-name/issuer authentication); `None`:
    /// `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN` under `auto`, else no.
    pub send_certificate_chain: Option<bool>,
    /// A user-assigned managed identity by its object (principal) id.
    pub object_id: Option<String>,
    /// A user-assigned managed identity by its ARM resource id.
    pub mi_res_id: Option<String>,
    /// Where Azure Arc's challenge files must lie; `None`: the platform's
    /// agent token directory.
    pub arc_token_dir: Option<PathBuf>,
}

impl Default for AzureSettings {
    /// The built-in `azure`: `auto`, every setting left to the environment.
    fn default() -> Self {
        Self {
            method: AzureMethod::Auto,
            tenant_id: None,
            client_id: None,
            client_secret: None,
            authority_host: None,
            scope: DEFAULT_AZURE_SCOPE.to_owned(),
            identity_endpoint: None,
            certificate_file: None,
            certificate_password: None,
            send_certificate_chain: None,
            object_id: None,
            mi_res_id: None,
            arc_token_dir: None,
        }
    }
}

/// How an Entra token is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AzureMethod {
    ClientSecret,
    WorkloadIdentity,
    ManagedIdentity,
    Cli,
    Certificate,
    Azd,
    /// A user signed in with `credcache login` (device code flow).
    DeviceCode,
    /// A user signed in with `credcache login` (auth code + PKCE in a browser).
    Browser,
    Auto,
}

impl AzureMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecret => "client-secret",
            Self::WorkloadIdentity => "workload-identity",
            Self::ManagedIdentity => "managed-identity",
            Self::Cli => "cli",
            Self::Certificate => "certificate",
            Self::Azd => "azd",
            Self::DeviceCode => "device-code",
            Self::Browser => "browser",
            Self::Auto => "auto",
        }
    }
}

/// Where a client secret is read from; never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

/// `kind = "gke-cluster"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GkeClusterSettings {
    pub auth: String,
    pub cluster: ClusterPath,
    /// `https://{location}-gkemulticloud.googleapis.com` unless set.
    pub endpoint: String,
}

/// `projects/{project}/locations/{location}/{azureClusters|awsClusters}/{cluster}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterPath {
    pub project: String,
    pub location: String,
    pub platform: ClusterPlatform,
    pub cluster: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterPlatform {
    Azure,
    Aws,
}

impl fmt::Display for ClusterPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let collection = match self.platform {
            ClusterPlatform::Azure => "azureClusters",
            ClusterPlatform::Aws => "awsClusters",
        };
        write!(
            f,
            "projects/{}/locations/{}/{collection}/{}",
            self.project, self.location, self.cluster
        )
    }
}

/// `kind = "container-app"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerAppSettings {
    pub auth: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub app: String,
    pub api_version: String,
    pub arm_endpoint: String,
}

/// `kind = "apim-user-token"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApimUserTokenSettings {
    pub auth: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub service: String,
    pub user_id: String,
    pub key_type: ApimKeyType,
    pub lifetime: Duration,
    pub api_version: String,
    pub arm_endpoint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApimKeyType {
    Primary,
    Secondary,
}

impl ApimKeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Secondary => "secondary",
        }
    }
}

/// The longest APIM token lifetime the API accepts.
pub const APIM_MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// `kind = "command"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandSettings {
    /// Program and arguments; run directly, never through a shell.
    pub command: Vec<String>,
    /// Used when the output carries no expiry.
    pub lifetime: Duration,
}

/// `[[git]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitHelper {
    pub host: HostPattern,
    pub path_prefix: Option<PathPrefix>,
    pub credential: String,
    pub username: String,
}

/// `[[docker]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerHelper {
    pub registry: HostPattern,
    pub credential: String,
    pub username: String,
}

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the key, e.g. `credentials.gcp.key_file`; or
    /// `line 3, column 7` for a TOML syntax error.
    pub at: String,
    pub message: String,
}

/// Everything wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// One line per problem: `FILE: KEY: MESSAGE`.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.problems
            .iter()
            .map(|p| format!("{}: {}: {}", self.file.display(), p.at, p.message))
    }
}

/// One line: the first problem, and how many more there are.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.lines().next() {
            Some(first) => f.write_str(&first)?,
            None => write!(f, "{}: invalid config", self.file.display())?,
        }
        match self.problems.len() {
            0 | 1 => Ok(()),
            2 => f.write_str(" (and 1 more problem; run `credcache config check`)"),
            n => write!(
                f,
                " (and {} more problems; run `credcache config check`)",
                n - 1
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates `path`. A missing file is the built-in config.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, |text| Self::parse(text, path))
    }

    /// [`Config::load`] with its parsing step given: the daemon answers a
    /// text it parsed before from what it kept of that parse. The file is
    /// read, and the checks that read other files run, as in `load`.
    pub fn load_with(
        path: &Path,
        parse: impl FnOnce(&str) -> Result<Self, ConfigError>,
    ) -> Result<Self, ConfigError> {
        // Regular files only, at most `MAX_CONFIG`: a FIFO or `/dev/zero`
        // named as the config is an error, not a hang.
        let read = crate::files::read_regular(path, MAX_CONFIG).and_then(|bytes| {
            String::from_utf8(bytes).map_err(|e| {
                crate::files::ReadError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            })
        });
        match read {
            Ok(text) => {
                let config = parse(&text)?;
                drop(text);
                let mut problems = config.id_token_sources();
                problems.extend(config.lifetime_files());
                if problems.is_empty() {
                    Ok(config)
                } else {
                    Err(ConfigError {
                        file: path.to_path_buf(),
                        problems,
                    })
                }
            }
            Err(e) if e.is_not_found() => Ok(Self::builtin()),
            Err(e) => Err(ConfigError {
                file: path.to_path_buf(),
                problems: vec![Problem {
                    at: "file".into(),
                    message: format!("cannot read: {e}"),
                }],
            }),
        }
    }

    /// Validates config text; `path` is only for messages and relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        parse::parse(text).map_err(|problems| ConfigError {
            file: path.to_path_buf(),
            problems,
        })
    }

    /// The config with no file: the built-in `google` and `azure`.
    pub fn builtin() -> Self {
        Self::parse("", Path::new("(built-in)")).expect("the empty config is valid")
    }

    /// The `google-id-token` credentials whose `auth` cannot mint an ID
    /// token: one whose identity file is an authorized user (or anything
    /// but a service-account key or an impersonation). It reads those
    /// files, so [`Config::load`] asks, not [`Config::parse`]; a file that
    /// cannot be read is left to the fetch to report.
    pub fn id_token_sources(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for cred in self.credentials.values() {
            let Source::GoogleIdToken(s) = &cred.source else {
                continue;
            };
            let Some(Source::Google(g)) = self.credential(&s.auth).map(|c| &c.source) else {
                continue;
            };
            if g.impersonate_service_account.is_some() {
                continue;
            }
            let Some(file) = g.key_file.clone().or_else(crate::paths::google_adc_file) else {
                continue; // the metadata server mints ID tokens
            };
            let Some((kind, impersonates)) = identity_type(&file) else {
                continue;
            };
            let why = match kind.as_deref() {
                Some("service_account" | "impersonated_service_account") | None => continue,
                Some("external_account") if impersonates => continue,
                Some("external_account") => "an external account without service_account_impersonation_url, whose STS token cannot mint an ID token".to_owned(),
                Some("authorized_user") => "an authorized user (gcloud auth application-default login), which cannot mint an ID token for an audience".to_owned(),
                Some(other) => format!("of type {other:?}, which credcache cannot mint an ID token from"),
            };
            problems.push(Problem {
                at: format!("credentials.{}.auth", cred.name),
                message: format!(
                    "names {:?}, whose identity file {} is {why}: use a service account key, impersonate_service_account, or the metadata server",
                    s.auth,
                    file.display()
                ),
            });
        }
        problems
    }

    /// The `google` credentials with `lifetime` but no
    /// `impersonate_service_account` whose `key_file` is not an
    /// `impersonated_service_account` file (nor an `external_account` that
    /// impersonates), so the lifetime would not apply. Without `key_file`
    /// the ADC order decides at fetch time, which checks it again.
    pub fn lifetime_files(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for cred in self.credentials.values() {
            let Source::Google(g) = &cred.source else {
                continue;
            };
            let (Some(_), None, Some(file)) =
                (g.lifetime, &g.impersonate_service_account, &g.key_file)
            else {
                continue;
            };
            let Some((kind, impersonates)) = identity_type(file) else {
                continue;
            };
            let what = match kind.as_deref() {
                Some("impersonated_service_account") | None => continue,
                Some("external_account") if impersonates => continue,
                Some("external_account") => {
                    "an external_account without service_account_impersonation_url".to_owned()
                }
                Some(other) => format!("of type {other:?}"),
            };
            problems.push(Problem {
                at: format!("credentials.{}.lifetime", cred.name),
                message: format!(
                    "applies only with impersonate_service_account or an impersonated_service_account key file, and {} is {what}",
                    file.display()
                ),
            });
        }
        problems
    }

    pub fn credential(&self, name: &str) -> Option<&Credential> {
        self.credentials.get(name).map(|c| &**c)
    }

    /// `min_valid` for a credential: its own, else the daemon's.
    pub fn min_valid(&self, cred: &Credential) -> Duration {
        cred.min_valid.unwrap_or(self.daemon.min_valid)
    }

    /// `refresh_ahead` for a credential: its own, else the daemon's.
    pub fn refresh_ahead(&self, cred: &Credential) -> Duration {
        cred.refresh_ahead.unwrap_or(self.daemon.refresh_ahead)
    }
}

/// The `type` of the Google identity file at `path` and whether it names a
/// `service_account_impersonation_url`; `None` if it cannot be read (the
/// fetch reports that).
fn identity_type(path: &Path) -> Option<(Option<String>, bool)> {
    let bytes = crate::files::read_regular(path, crate::files::MAX_FILE).ok()?;
    let json = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
    let kind = json
        .as_ref()
        .and_then(|v| v.get("type")?.as_str().map(str::to_owned));
    let impersonates = json
        .as_ref()
        .is_some_and(|v| v.get("service_account_impersonation_url").is_some());
    Some((kind, impersonates))
}

/// `CREDCACHE_<NAME>_TOKEN`, upper-cased, `-` and `.` as `_`.
pub fn default_env_var(name: &str) -> String {
    let mut var = String::from("CREDCACHE_");
    var.extend(name.chars().map(|c| match c {
        '-' | '.' => '_',
        c => c.to_ascii_uppercase(),
    }));
    var.push_str("_TOKEN");
    var
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the config shared the 1 MiB cap of key files, so a
    /// config of 10,000 credentials (1.6 MB) could not be loaded at all.
    #[test]
    fn a_config_of_ten_thousand_credentials_loads_and_a_huge_file_does_not() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.toml");
        let mut text = String::new();
        for i in 0..10_000 {
            text.push_str(&format!(
                "[credentials.c{i}]\nkind = \"gke-cluster\"\nauth = \"google\"\n\
                 cluster = \"projects/emu-project/locations/us-east4/azureClusters/c{i}\"\n\
                 endpoint = \"http://127.0.0.1:45678\"\n"
            ));
        }
        assert!(text.len() > crate::files::MAX_FILE, "{}", text.len());
        std::fs::write(&path, &text).unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.credentials.len(), 10_002, "and google, azure");

        std::fs::File::create(&path)
            .unwrap()
            .set_len(MAX_CONFIG as u64 + 1)
            .unwrap();
        let e = Config::load(&path).unwrap_err();
        assert!(e.to_string().contains("over the 16 MiB limit"), "{e}");
    }

    #[test]
    fn lifetime_applies_to_an_impersonated_adc_file_and_is_refused_over_a_key() {
        let tmp = tempfile::tempdir().unwrap();
        let file = |name: &str, kind: &str| {
            let path = tmp.path().join(name);
            std::fs::write(&path, format!(r#"{{"type":"{kind}"}}"#)).unwrap();
            path
        };
        let adc = file("adc.json", "impersonated_service_account");
        let key = file("sa.json", "service_account");
        let config = tmp.path().join("config.toml");
        let cred = |name: &str, key_file: &Path| {
            format!(
                "[credentials.{name}]\nkind = \"google\"\nkey_file = {:?}\nlifetime = \"2h\"\n",
                key_file.display().to_string()
            )
        };
        std::fs::write(&config, cred("adc", &adc)).unwrap();
        let loaded = Config::load(&config).unwrap();
        let Source::Google(g) = &loaded.credential("adc").unwrap().source else {
            panic!()
        };
        assert_eq!(g.lifetime, Some(Duration::from_secs(7200)));

        std::fs::write(&config, cred("adc", &adc) + &cred("plain", &key)).unwrap();
        let e = Config::load(&config).unwrap_err();
        assert_eq!(e.problems.len(), 1, "{e}");
        assert_eq!(e.problems[0].at, "credentials.plain.lifetime");
        assert_eq!(
            e.problems[0].message,
            format!(
                "applies only with impersonate_service_account or an impersonated_service_account key file, and {} is of type \"service_account\"",
                key.display()
            )
        );
    }
}
