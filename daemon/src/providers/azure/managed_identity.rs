//! `method = "managed-identity"`: the identity Azure assigns to the machine
//! or app, from whichever local endpoint the host has:
//!
//! | host | detected by | request |
//! |---|---|---|
//! | VM, AKS node, Container Instance | nothing else set (or `identity_endpoint`) | IMDS: `GET {base}/metadata/identity/oauth2/token`, `Metadata: true` |
//! | App Service, Functions | `IDENTITY_ENDPOINT` + `IDENTITY_HEADER` | `GET`, `X-IDENTITY-HEADER` |
//! | App Service (2017 API) | `MSI_ENDPOINT` + `MSI_SECRET` | `GET`, `secret`; `expires_on` as a date |
//! | Cloud Shell | `MSI_ENDPOINT` | `POST` form `resource=`, `Metadata: true` |
//! | Azure Arc | `IDENTITY_ENDPOINT` + `IMDS_ENDPOINT` | `GET`, answered 401 with a challenge file to read and send back |
//!
//! All are local endpoints, always called directly, never through a proxy.
//! A configured `identity_endpoint` (an IMDS base URL) wins over the
//! environment.
//!
//! Arc's challenge names a file for the daemon to read: a hostile process
//! listening on the endpoint could name any file. The file is read only if
//! its path lies, lexically and after resolving links, under the Arc
//! agent's token directory (`arc_token_dir`, default
//! [`DEFAULT_ARC_TOKEN_DIR`]; the config file is the user's own, so no
//! endpoint can move it), ends in `.key`, and is a regular file of at most
//! [`MAX_ARC_KEY`] bytes.
//!
//! While an identity is being assigned, IMDS and App Service answer 404 or
//! 410 for a while; those are asked again a few times, with a short
//! doubling pause, within half of `http_timeout`.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use credcache_shared::config::AzureSettings;
use reqwest::header::HeaderValue;
use serde::Serialize;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::http::{self, Answer};
use crate::providers::{ErrorClass, FetchContext, FetchError, Fetched, token_response};

pub const DEFAULT_IMDS: &str = "http://169.254.169.254";
/// Where the Arc agent writes its challenge files.
#[cfg(not(windows))]
pub const DEFAULT_ARC_TOKEN_DIR: &str = "/var/opt/azcmagent/tokens";
/// Where the Arc agent writes its challenge files (`%ProgramData%` on a
/// standard install).
#[cfg(windows)]
pub const DEFAULT_ARC_TOKEN_DIR: &str = r"C:\ProgramData\AzureConnectedMachineAgent\Tokens";
/// The largest challenge file read, as the Azure SDKs allow.
pub const MAX_ARC_KEY: usize = 4096;
const IMDS_API_VERSION: &str = "2018-02-01";
const APP_SERVICE_API_VERSION: &str = "2019-08-01";
const APP_SERVICE_2017_API_VERSION: &str = "2017-09-01";
const ARC_API_VERSION: &str = "2020-06-01";
/// At most this many extra attempts for 404/410 (0.2 + 0.4 + ... + 3.2 s).
const SETUP_RETRIES: u32 = 5;
const FIRST_SETUP_PAUSE: Duration = Duration::from_millis(200);
/// How long `auto` waits for a TCP connection to IMDS it only guessed at.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the managed identity's token comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum MiEndpoint {
    /// IMDS at this base URL. `guessed`: `auto` chose it for want of
    /// anything else, so a machine that is not on Azure is told so quickly.
    Imds { base: String, guessed: bool },
    /// App Service: `IDENTITY_ENDPOINT`, with `IDENTITY_HEADER` read at fetch.
    AppService { url: String },
    /// App Service's 2017 API: `MSI_ENDPOINT`, with `MSI_SECRET` read at fetch.
    AppService2017 { url: String },
    /// Cloud Shell: `MSI_ENDPOINT` alone.
    CloudShell { url: String },
    /// Azure Arc: `IDENTITY_ENDPOINT` with `IMDS_ENDPOINT`; challenge files
    /// are read only under `token_dir`.
    Arc { url: String, token_dir: PathBuf },
    /// `IDENTITY_ENDPOINT` alone, which no host credcache knows sets.
    Unsupported { url: String },
}

/// A user-assigned identity, named one of three ways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum UserAssigned {
    ClientId(String),
    ObjectId(String),
    ResourceId(String),
}

impl UserAssigned {
    /// From the settings, `client_id` standing in when the others are unset.
    pub fn from_settings(settings: &AzureSettings, client_id: Option<String>) -> Option<Self> {
        if let Some(id) = &settings.object_id {
            return Some(Self::ObjectId(id.clone()));
        }
        if let Some(id) = &settings.mi_res_id {
            return Some(Self::ResourceId(id.clone()));
        }
        client_id.map(Self::ClientId)
    }

    fn key(&self) -> &'static str {
        match self {
            Self::ClientId(_) => "client_id",
            Self::ObjectId(_) => "object_id",
            Self::ResourceId(_) => "mi_res_id",
        }
    }

    fn value(&self) -> &str {
        match self {
            Self::ClientId(v) | Self::ObjectId(v) | Self::ResourceId(v) => v,
        }
    }
}

/// The endpoint for `settings` in `env`; `auto` marks a default IMDS as
/// guessed. The order is the Azure identity SDKs'.
pub fn endpoint(settings: &AzureSettings, env: super::Env<'_>, auto: bool) -> MiEndpoint {
    if let Some(base) = &settings.identity_endpoint {
        return MiEndpoint::Imds {
            base: base.trim_end_matches('/').to_owned(),
            guessed: false,
        };
    }
    let identity = env("IDENTITY_ENDPOINT");
    let msi = env("MSI_ENDPOINT");
    match (identity, msi) {
        (Some(url), _) if env("IDENTITY_HEADER").is_some() => MiEndpoint::AppService { url },
        (_, Some(url)) if env("MSI_SECRET").is_some() => MiEndpoint::AppService2017 { url },
        (_, Some(url)) => MiEndpoint::CloudShell { url },
        (Some(url), None) if env("IMDS_ENDPOINT").is_some() => MiEndpoint::Arc {
            url,
            token_dir: settings
                .arc_token_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_ARC_TOKEN_DIR)),
        },
        (Some(url), None) => MiEndpoint::Unsupported { url },
        (None, None) => MiEndpoint::Imds {
            base: DEFAULT_IMDS.to_owned(),
            guessed: auto,
        },
    }
}

/// Whether the environment names a managed-identity endpoint (for `auto`).
pub fn known_in(env: super::Env<'_>) -> Option<&'static str> {
    if env("IDENTITY_ENDPOINT").is_some() {
        Some("IDENTITY_ENDPOINT is set")
    } else if env("MSI_ENDPOINT").is_some() {
        Some("MSI_ENDPOINT is set")
    } else {
        None
    }
}

/// The v1 `resource` for a v2 scope: the scope without `/.default`, as the
/// Azure SDKs send it (`https://management.azure.com/.default` →
/// `https://management.azure.com`).
pub fn resource(scope: &str) -> &str {
    scope.strip_suffix("/.default").unwrap_or(scope)
}

pub async fn fetch(
    endpoint: &MiEndpoint,
    identity: Option<&UserAssigned>,
    scope: &str,
    cx: &FetchContext<'_>,
) -> Result<Fetched, FetchError> {
    let resource = resource(scope);
    let (what, url, api_version, header, id_key) = match endpoint {
        MiEndpoint::Imds { base, guessed } => {
            if *guessed {
                probe(base, cx.timeout).await?;
            }
            let url = format!("{base}/metadata/identity/oauth2/token");
            // IMDS spells the resource id `msi_res_id`.
            let key = identity.map(|i| match i {
                UserAssigned::ResourceId(_) => "msi_res_id",
                other => other.key(),
            });
            ("azure IMDS", url, IMDS_API_VERSION, metadata_header(), key)
        }
        MiEndpoint::AppService { url } => {
            let value = secret_header("IDENTITY_HEADER")?;
            // App Service calls the object id `principal_id`.
            let key = identity.map(|i| match i {
                UserAssigned::ObjectId(_) => "principal_id",
                other => other.key(),
            });
            let header = ("X-IDENTITY-HEADER", value);
            (
                "App Service identity endpoint",
                url.clone(),
                APP_SERVICE_API_VERSION,
                header,
                key,
            )
        }
        MiEndpoint::AppService2017 { url } => {
            let key = match identity {
                None => None,
                Some(UserAssigned::ClientId(_)) => Some("clientid"),
                Some(other) => return Err(not_here("App Service's 2017 API", other)),
            };
            let value = secret_header("MSI_SECRET")?;
            let request = cx
                .http
                .direct()?
                .get(url)
                .query(&[
                    ("api-version", APP_SERVICE_2017_API_VERSION),
                    ("resource", resource),
                ])
                .query(
                    &key.zip(identity.map(UserAssigned::value))
                        .into_iter()
                        .collect::<Vec<_>>(),
                )
                .header("secret", value);
            let answer = http::send("App Service (2017) identity endpoint", request).await?;
            if !answer.is_success() {
                return Err(answer.error(cx.now));
            }
            return parse_2017(answer, cx.now);
        }
        MiEndpoint::CloudShell { url } => {
            if let Some(other) = identity {
                return Err(not_here("Cloud Shell", other));
            }
            let request = cx
                .http
                .direct()?
                .post(url)
                .header("Metadata", "true")
                .form(&[("resource", resource)]);
            let answer = http::send("Cloud Shell identity endpoint", request).await?;
            if !answer.is_success() {
                return Err(answer.error(cx.now));
            }
            return token_response::parse(&answer, cx.now);
        }
        MiEndpoint::Arc { url, token_dir } => {
            if let Some(other) = identity {
                return Err(not_here("Azure Arc", other));
            }
            return arc(url, token_dir, resource, cx).await;
        }
        MiEndpoint::Unsupported { url } => {
            return Err(FetchError::config(format!(
                "IDENTITY_ENDPOINT is set ({}) but neither IDENTITY_HEADER (App Service) nor \
                 IMDS_ENDPOINT (Azure Arc) is: no known managed-identity host sets that \
                 (set identity_endpoint for IMDS)",
                http::sanitize(url, 200)
            )));
        }
    };
    let mut query = vec![("api-version", api_version), ("resource", resource)];
    if let (Some(key), Some(id)) = (id_key, identity) {
        query.push((key, id.value()));
    }
    let started = Instant::now();
    let mut pause = FIRST_SETUP_PAUSE;
    let mut attempt = 1;
    loop {
        // Each attempt gets what is left of `http_timeout`, so that the
        // retries never stretch a fetch past it.
        let left = cx.timeout.saturating_sub(started.elapsed());
        let request = cx
            .http
            .direct()?
            .get(&url)
            .query(&query)
            .header(header.0, header.1.clone())
            .timeout(left);
        let answer = http::send(what, request).await?;
        if answer.is_success() {
            return token_response::parse(&answer, cx.now);
        }
        let setting_up = matches!(answer.status, 404 | 410);
        if setting_up && attempt <= SETUP_RETRIES && started.elapsed() + pause <= cx.timeout / 2 {
            tracing::debug!(
                credential = cx.name,
                status = answer.status,
                "{what}: the identity may still be being set up; asking again in {} ms",
                pause.as_millis()
            );
            tokio::time::sleep(pause).await;
            pause *= 2;
            attempt += 1;
            continue;
        }
        let mut e = answer.error(cx.now);
        if setting_up {
            // Not for good: the identity may still appear, so let the
            // engine try again later rather than keep this error.
            e.class = ErrorClass::Transient;
            if attempt > 1 {
                e.message = format!("{} (after {attempt} attempts)", e.message);
            }
        }
        return Err(e);
    }
}

/// A host with no user-assigned identities by this name: a config error
/// before anything is sent.
fn not_here(host: &str, identity: &UserAssigned) -> FetchError {
    FetchError::config(format!(
        "{host} does not take a user-assigned identity by {} (remove it, or use the \
         system-assigned identity)",
        identity.key()
    ))
}

/// Azure Arc: ask, be challenged with a file's path, read the file (if it
/// is where the agent keeps them) and ask again with its content.
async fn arc(
    url: &str,
    token_dir: &Path,
    resource: &str,
    cx: &FetchContext<'_>,
) -> Result<Fetched, FetchError> {
    const WHAT: &str = "Azure Arc identity endpoint";
    let query = [("api-version", ARC_API_VERSION), ("resource", resource)];
    let client = cx.http.direct()?;
    let ask = || client.get(url).query(&query).header("Metadata", "true");
    let challenge = http::send(WHAT, ask()).await?;
    if challenge.is_success() {
        return token_response::parse(&challenge, cx.now);
    }
    if challenge.status != 401 {
        return Err(challenge.error(cx.now));
    }
    let realm = challenge
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .and_then(challenge_path)
        .ok_or_else(|| {
            FetchError::transient(format!(
                "{WHAT} answered 401 without a `WWW-Authenticate: Basic realm=PATH` challenge"
            ))
        })?;
    let key_file = checked_challenge_file(&realm, token_dir)?;
    let key = Zeroizing::new(
        crate::files::read_under(&key_file, token_dir, MAX_ARC_KEY)
            .await
            .map_err(|e| {
                FetchError::permanent(format!(
                    "{WHAT}: refused to use challenge file {}: {e}",
                    http::sanitize(&realm, 200)
                ))
            })?,
    );
    let key = Zeroizing::new(String::from_utf8_lossy(&key).trim().to_owned());
    let mut authorization =
        HeaderValue::from_str(&format!("Basic {}", key.as_str())).map_err(|_| {
            FetchError::permanent(format!(
                "{WHAT}: the challenge file's content is not a header value"
            ))
        })?;
    authorization.set_sensitive(true);
    let answer = http::send(WHAT, ask().header("Authorization", authorization)).await?;
    if !answer.is_success() {
        return Err(answer.error(cx.now));
    }
    token_response::parse(&answer, cx.now)
}

/// The path in `Basic realm=PATH` (quotes allowed).
pub(crate) fn challenge_path(header: &str) -> Option<String> {
    let (scheme, rest) = header.trim().split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let (name, value) = rest.trim().split_once('=')?;
    if !name.trim().eq_ignore_ascii_case("realm") {
        return None;
    }
    let value = value.trim().trim_matches('"');
    (!value.is_empty()).then(|| value.to_owned())
}

/// The challenge file's path if it may be read: absolute, no `..`, a
/// `.key` file directly or deeper under `token_dir`. Checked on the text
/// alone, before anything is opened; `files::read_under` checks again
/// where the opened file really is.
pub(crate) fn checked_challenge_file(realm: &str, token_dir: &Path) -> Result<PathBuf, FetchError> {
    let path = PathBuf::from(realm);
    let refuse = |why: &str| {
        FetchError::permanent(format!(
            "Azure Arc identity endpoint: refused challenge file {}: {why}",
            http::sanitize(realm, 200)
        ))
    };
    if !path.is_absolute() {
        return Err(refuse("not an absolute path"));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(refuse("the path has `.` or `..` in it"));
    }
    if path.extension().is_none_or(|e| e != "key") {
        return Err(refuse("not a .key file"));
    }
    if !path.starts_with(token_dir) || path.parent().is_none_or(|p| !p.starts_with(token_dir)) {
        return Err(refuse(&format!(
            "not under the Arc agent's token directory {}",
            token_dir.display()
        )));
    }
    Ok(path)
}

/// App Service's 2017 answer: `expires_on` is a date
/// ("09/14/2017 05:24:12 PM +00:00" on Windows hosts, 24-hour on Linux
/// hosts) or epoch seconds; it is rewritten as epoch seconds for
/// [`token_response::parse`].
pub(crate) fn parse_2017(mut answer: Answer, now: DateTime<Utc>) -> Result<Fetched, FetchError> {
    let mut v: Value = answer.json()?;
    if let Some(Value::String(on)) = v.get("expires_on")
        && let Some(at) = app_service_2017_time(on)
    {
        v["expires_on"] = Value::from(at.timestamp());
        answer.body = serde_json::to_vec(&v).unwrap_or_default();
    }
    token_response::parse(&answer, now)
}

/// "MM/dd/yyyy hh:mm:ss AM|PM +00:00" or "MM/dd/yyyy HH:mm:ss +00:00";
/// `None` for anything else (epoch seconds are read as they are).
pub fn app_service_2017_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    for format in ["%m/%d/%Y %I:%M:%S %p %:z", "%m/%d/%Y %H:%M:%S %:z"] {
        if let Ok(t) = DateTime::parse_from_str(s, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    // Without an offset: UTC, as the hosts mean it.
    for format in ["%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Some(t.and_utc());
        }
    }
    None
}

fn metadata_header() -> (&'static str, HeaderValue) {
    ("Metadata", HeaderValue::from_static("true"))
}

/// `IDENTITY_HEADER` or `MSI_SECRET`, a secret: marked sensitive so that
/// it is never formatted.
fn secret_header(var: &str) -> Result<HeaderValue, FetchError> {
    let value = Zeroizing::new(super::process_env(var).ok_or_else(|| {
        FetchError::config(format!("{var} is not set in the daemon's environment"))
    })?);
    let mut header = HeaderValue::from_str(value.trim())
        .map_err(|_| FetchError::config(format!("{var} is not a valid HTTP header value")))?;
    header.set_sensitive(true);
    Ok(header)
}

/// A quick TCP connect to IMDS, so that `auto` on a machine outside Azure
/// fails in a second (saying why) rather than after `http_timeout`: there,
/// 169.254.169.254 is usually routed nowhere and a connect just hangs.
async fn probe(base: &str, timeout: Duration) -> Result<(), FetchError> {
    let unreachable = |why: String| {
        FetchError::transient(format!(
            "azure IMDS at {base} is unreachable (not an Azure VM?): {why}"
        ))
    };
    let url = reqwest::Url::parse(base).map_err(|e| unreachable(e.to_string()))?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let connect = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(PROBE_TIMEOUT.min(timeout), connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable("no connection within 1s".into())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use credcache_shared::config::{AzureMethod, DEFAULT_AZURE_SCOPE};

    use super::*;

    #[test]
    fn resource_is_the_scope_without_default() {
        assert_eq!(
            resource(DEFAULT_AZURE_SCOPE),
            "https://management.azure.com"
        );
        assert_eq!(
            resource("499b84ac-1321-427f-aa17-267ca6975798/.default"),
            "499b84ac-1321-427f-aa17-267ca6975798"
        );
        assert_eq!(
            resource("https://vault.azure.net"),
            "https://vault.azure.net"
        );
    }

    fn settings(identity_endpoint: Option<&str>) -> AzureSettings {
        AzureSettings {
            method: AzureMethod::ManagedIdentity,
            identity_endpoint: identity_endpoint.map(str::to_owned),
            ..AzureSettings::default()
        }
    }

    #[test]
    fn config_then_app_service_then_imds() {
        let app_service: HashMap<&str, &str> = [
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:41741/msi/token"),
            ("IDENTITY_HEADER", "h"),
        ]
        .into();
        let env = |n: &str| app_service.get(n).map(|v| v.to_string());
        assert_eq!(
            endpoint(&settings(Some("http://127.0.0.1:8080/")), &env, false),
            MiEndpoint::Imds {
                base: "http://127.0.0.1:8080".into(),
                guessed: false
            }
        );
        assert_eq!(
            endpoint(&settings(None), &env, true),
            MiEndpoint::AppService {
                url: "http://127.0.0.1:41741/msi/token".into()
            }
        );
        let arc = |n: &str| (n == "IDENTITY_ENDPOINT").then(|| "http://localhost:40342".to_owned());
        assert!(matches!(
            endpoint(&settings(None), &arc, false),
            MiEndpoint::Unsupported { .. }
        ));
        let none = |_: &str| None;
        assert_eq!(
            endpoint(&settings(None), &none, true),
            MiEndpoint::Imds {
                base: DEFAULT_IMDS.into(),
                guessed: true
            }
        );
        assert_eq!(
            endpoint(&settings(None), &none, false),
            MiEndpoint::Imds {
                base: DEFAULT_IMDS.into(),
                guessed: false
            }
        );
    }

    #[tokio::test]
    async fn probe_tells_a_closed_port_from_an_open_one() {
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", open.local_addr().unwrap());
        probe(&base, Duration::from_secs(5)).await.unwrap();
        drop(open);
        let e = probe(&base, Duration::from_secs(5)).await.unwrap_err();
        assert!(
            e.message
                .starts_with(&format!("azure IMDS at {base} is unreachable")),
            "{}",
            e.message
        );
    }

    #[test]
    fn every_host_is_told_by_its_variables_in_the_sdk_order() {
        let host = |vars: &[(&str, &str)]| {
            let vars: HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            endpoint(&settings(None), &|n: &str| vars.get(n).cloned(), false)
        };
        let url = "http://127.0.0.1:1/x";
        assert_eq!(
            host(&[("MSI_ENDPOINT", url), ("MSI_SECRET", "s")]),
            MiEndpoint::AppService2017 { url: url.into() }
        );
        assert_eq!(
            host(&[("MSI_ENDPOINT", url)]),
            MiEndpoint::CloudShell { url: url.into() }
        );
        assert_eq!(
            host(&[
                ("IDENTITY_ENDPOINT", url),
                ("IMDS_ENDPOINT", "http://127.0.0.1:2")
            ]),
            MiEndpoint::Arc {
                url: url.into(),
                token_dir: DEFAULT_ARC_TOKEN_DIR.into()
            }
        );
        // App Service's 2019 API wins over the 2017 one, as in the SDKs.
        assert_eq!(
            host(&[
                ("IDENTITY_ENDPOINT", url),
                ("IDENTITY_HEADER", "h"),
                ("MSI_ENDPOINT", "http://o"),
                ("MSI_SECRET", "s")
            ]),
            MiEndpoint::AppService { url: url.into() }
        );
        let mut s = settings(None);
        s.arc_token_dir = Some("/tmp/arc".into());
        let arc: HashMap<&str, &str> = [("IDENTITY_ENDPOINT", url), ("IMDS_ENDPOINT", url)].into();
        assert_eq!(
            endpoint(&s, &|n: &str| arc.get(n).map(|v| v.to_string()), false),
            MiEndpoint::Arc {
                url: url.into(),
                token_dir: "/tmp/arc".into()
            }
        );
    }

    #[test]
    fn app_service_2017_dates_in_each_form() {
        let want = DateTime::parse_from_rfc3339("2017-09-14T17:24:12Z").unwrap();
        for s in [
            "09/14/2017 05:24:12 PM +00:00",
            "09/14/2017 17:24:12 +00:00",
            "09/14/2017 07:24:12 PM +02:00",
            "09/14/2017 17:24:12",
        ] {
            assert_eq!(app_service_2017_time(s), Some(want.to_utc()), "{s}");
        }
        for s in [
            "1506484173",
            "",
            "14/09/2017 17:24:12 +00:00",
            "09/14/2017 25:00:00 +00:00",
        ] {
            assert_eq!(app_service_2017_time(s), None, "{s}");
        }
    }

    #[test]
    #[cfg(unix)] // Unix paths
    fn the_arc_challenge_is_read_only_from_the_token_dir() {
        assert_eq!(
            challenge_path("Basic realm=/var/opt/azcmagent/tokens/a.key").as_deref(),
            Some("/var/opt/azcmagent/tokens/a.key")
        );
        assert_eq!(
            challenge_path("basic  realm=\"/t/a.key\"").as_deref(),
            Some("/t/a.key")
        );
        assert_eq!(challenge_path("Bearer realm=/t/a.key"), None);
        assert_eq!(challenge_path("Basic realm="), None);
        assert_eq!(challenge_path("Basic"), None);
        let dir = Path::new("/var/opt/azcmagent/tokens");
        assert!(checked_challenge_file("/var/opt/azcmagent/tokens/abc.key", dir).is_ok());
        for (bad, why) in [
            (
                "/home/u/.ssh/id_rsa.key",
                "not under the Arc agent's token directory",
            ),
            ("/var/opt/azcmagent/tokens/../../../../etc/x.key", "`..`"),
            ("/var/opt/azcmagent/tokens/abc.txt", "not a .key file"),
            ("/var/opt/azcmagent/tokens", "not a .key file"),
            ("/var/opt/azcmagent/tokens2/a.key", "not under"),
            ("tokens/a.key", "not an absolute path"),
        ] {
            let e = checked_challenge_file(bad, dir).unwrap_err();
            assert!(e.message.contains(why), "{bad}: {}", e.message);
            assert_eq!(e.class, ErrorClass::Permanent);
        }
    }

    mod fetch {
        use super::*;
        use crate::loopback::{Peer, Reply};
        use crate::providers::testing::Harness;

        const TOKEN: &str = r#"{"access_token":"eyJ.mi","expires_in":"3600","expires_on":"1893459600","resource":"https://management.azure.com","token_type":"Bearer"}"#;

        #[tokio::test]
        async fn cloud_shell_posts_the_resource_as_a_form() {
            let peer = Peer::start(vec![Reply::json(200, TOKEN)]).await;
            let h = Harness::new();
            let url = format!("{}/oauth2/token", peer.url());
            let f = fetch(
                &MiEndpoint::CloudShell { url },
                None,
                DEFAULT_AZURE_SCOPE,
                &h.cx(),
            )
            .await
            .unwrap();
            assert_eq!(f.token.expose(), "eyJ.mi");
            let r = &peer.requests()[0];
            assert_eq!((r.method.as_str(), r.path()), ("POST", "/oauth2/token"));
            assert_eq!(r.header("metadata"), Some("true"));
            assert_eq!(
                r.form("resource").as_deref(),
                Some("https://management.azure.com")
            );
            let e = fetch(
                &MiEndpoint::CloudShell { url: peer.url() },
                Some(&UserAssigned::ClientId("c".into())),
                DEFAULT_AZURE_SCOPE,
                &h.cx(),
            )
            .await
            .unwrap_err();
            assert_eq!(e.class, ErrorClass::Config);
            assert_eq!(
                peer.requests().len(),
                1,
                "nothing sent for a user-assigned identity"
            );
        }

        #[tokio::test]
        async fn imds_and_app_service_name_user_assigned_identities_their_way() {
            let peer = Peer::start(vec![Reply::json(200, TOKEN), Reply::json(200, TOKEN)]).await;
            let h = Harness::new();
            let imds = MiEndpoint::Imds {
                base: peer.url(),
                guessed: false,
            };
            let res = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id";
            fetch(
                &imds,
                Some(&UserAssigned::ResourceId(res.into())),
                DEFAULT_AZURE_SCOPE,
                &h.cx(),
            )
            .await
            .unwrap();
            fetch(
                &imds,
                Some(&UserAssigned::ObjectId("o-1".into())),
                DEFAULT_AZURE_SCOPE,
                &h.cx(),
            )
            .await
            .unwrap();
            let r = peer.requests();
            assert_eq!(r[0].query("msi_res_id").as_deref(), Some(res));
            assert_eq!(r[1].query("object_id").as_deref(), Some("o-1"));
            assert_eq!(r[1].query("client_id"), None);
        }

        #[tokio::test]
        async fn arc_answers_its_challenge_with_the_key_file() {
            let dir = tempfile::tempdir().unwrap();
            let tokens = dir.path().join("tokens");
            std::fs::create_dir(&tokens).unwrap();
            let key = tokens.join("challenge.key");
            std::fs::write(&key, "arc-secret-key").unwrap();
            let realm = format!("Basic realm={}", key.display());
            let peer = Peer::start(vec![
                Reply::json(401, "{}").header("WWW-Authenticate", &realm),
                Reply::json(200, TOKEN),
            ])
            .await;
            let h = Harness::new();
            let arc = MiEndpoint::Arc {
                url: format!("{}/metadata/identity/oauth2/token", peer.url()),
                token_dir: tokens.clone(),
            };
            let f = fetch(&arc, None, DEFAULT_AZURE_SCOPE, &h.cx())
                .await
                .unwrap();
            assert_eq!(f.token.expose(), "eyJ.mi");
            let r = peer.requests();
            assert_eq!(r[0].query("api-version").as_deref(), Some("2020-06-01"));
            assert_eq!(r[0].header("authorization"), None);
            assert_eq!(r[1].header("authorization"), Some("Basic arc-secret-key"));
            assert_eq!(r[1].header("metadata"), Some("true"));
        }

        #[tokio::test]
        #[cfg(unix)] // a symlink out of the token directory
        async fn arc_refuses_a_challenge_outside_the_token_dir_or_too_big() {
            let dir = tempfile::tempdir().unwrap();
            let tokens = dir.path().join("tokens");
            std::fs::create_dir(&tokens).unwrap();
            let outside = dir.path().join("private.key");
            std::fs::write(&outside, "not-for-the-endpoint").unwrap();
            let link = tokens.join("link.key");
            std::os::unix::fs::symlink(&outside, &link).unwrap();
            let big = tokens.join("big.key");
            std::fs::write(&big, vec![b'k'; MAX_ARC_KEY + 1]).unwrap();
            for (file, why) in [
                (&outside, "not under the Arc agent's token directory"),
                (&link, "it is not under"),
                (&big, ""),
            ] {
                let peer = Peer::start(vec![
                    Reply::json(401, "{}").header(
                        "WWW-Authenticate",
                        &format!("Basic realm={}", file.display()),
                    ),
                    Reply::json(200, TOKEN),
                ])
                .await;
                let h = Harness::new();
                let arc = MiEndpoint::Arc {
                    url: peer.url(),
                    token_dir: tokens.clone(),
                };
                let e = fetch(&arc, None, DEFAULT_AZURE_SCOPE, &h.cx())
                    .await
                    .unwrap_err();
                assert!(e.message.contains("challenge file"), "{}", e.message);
                assert!(e.message.contains(why), "{why}: {}", e.message);
                assert_eq!(
                    peer.requests().len(),
                    1,
                    "{}: never answered",
                    file.display()
                );
            }
        }
    }
}
