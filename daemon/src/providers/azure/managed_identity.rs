//! `method = "managed-identity"`: the identity Azure assigns to the machine
//! or app. On a VM (and AKS node, Container Instance, ...) that is IMDS:
//! `GET {identity_endpoint}/metadata/identity/oauth2/token` with
//! `Metadata: true`; in App Service and Functions it is `$IDENTITY_ENDPOINT`
//! with `X-IDENTITY-HEADER: $IDENTITY_HEADER`. Both are local endpoints and
//! are always called directly, never through a proxy. A configured
//! `identity_endpoint` (an IMDS base URL) wins over `IDENTITY_ENDPOINT`.
//!
//! While an identity is being assigned these endpoints answer 404 or 410
//! for a while; those are asked again a few times, with a short doubling
//! pause, within half of `http_timeout`.

use std::time::{Duration, Instant};

use credcache_shared::config::AzureSettings;
use reqwest::header::HeaderValue;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::http;
use crate::providers::{ErrorClass, FetchContext, FetchError, Fetched, token_response};

pub const DEFAULT_IMDS: &str = "http://169.254.169.254";
const IMDS_API_VERSION: &str = "2018-02-01";
const APP_SERVICE_API_VERSION: &str = "2019-08-01";
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
    /// `IDENTITY_ENDPOINT` without `IDENTITY_HEADER` (Azure Arc and the
    /// like), which credcache does not speak.
    Unsupported { url: String },
}

/// The endpoint for `settings` in `env`; `auto` marks a default IMDS as
/// guessed.
pub fn endpoint(settings: &AzureSettings, env: super::Env<'_>, auto: bool) -> MiEndpoint {
    if let Some(base) = &settings.identity_endpoint {
        return MiEndpoint::Imds {
            base: base.trim_end_matches('/').to_owned(),
            guessed: false,
        };
    }
    match env("IDENTITY_ENDPOINT") {
        Some(url) if env("IDENTITY_HEADER").is_some() => MiEndpoint::AppService { url },
        Some(url) => MiEndpoint::Unsupported { url },
        None => MiEndpoint::Imds {
            base: DEFAULT_IMDS.to_owned(),
            guessed: auto,
        },
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
    client_id: Option<&str>,
    scope: &str,
    cx: &FetchContext<'_>,
) -> Result<Fetched, FetchError> {
    let started = Instant::now();
    let (what, url, api_version, header) = match endpoint {
        MiEndpoint::Imds { base, guessed } => {
            if *guessed {
                probe(base, cx.timeout).await?;
            }
            let url = format!("{base}/metadata/identity/oauth2/token");
            ("azure IMDS", url, IMDS_API_VERSION, metadata_header())
        }
        MiEndpoint::AppService { url } => {
            let value = identity_header()?;
            (
                "App Service identity endpoint",
                url.clone(),
                APP_SERVICE_API_VERSION,
                ("X-IDENTITY-HEADER", value),
            )
        }
        MiEndpoint::Unsupported { url } => {
            return Err(FetchError::config(format!(
                "IDENTITY_ENDPOINT is set ({}) but IDENTITY_HEADER is not: only App Service's \
                 identity endpoint and IMDS are supported (set identity_endpoint for IMDS)",
                http::sanitize(url, 200)
            )));
        }
    };
    let mut query = vec![("api-version", api_version), ("resource", resource(scope))];
    if let Some(id) = client_id {
        query.push(("client_id", id));
    }
    let mut pause = FIRST_SETUP_PAUSE;
    let mut attempt = 1;
    loop {
        // Each attempt gets what is left of `http_timeout`, so that the
        // retries never stretch a fetch past it.
        let left = cx.timeout.saturating_sub(started.elapsed());
        let request = cx
            .http
            .direct()
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

fn metadata_header() -> (&'static str, HeaderValue) {
    ("Metadata", HeaderValue::from_static("true"))
}

/// `IDENTITY_HEADER`, a secret: marked sensitive so that it is never
/// formatted.
fn identity_header() -> Result<HeaderValue, FetchError> {
    let value = Zeroizing::new(super::process_env("IDENTITY_HEADER").ok_or_else(|| {
        FetchError::config("IDENTITY_HEADER is not set in the daemon's environment")
    })?);
    let mut header = HeaderValue::from_str(value.trim())
        .map_err(|_| FetchError::config("IDENTITY_HEADER is not a valid HTTP header value"))?;
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
            tenant_id: None,
            client_id: None,
            client_secret: None,
            authority_host: None,
            scope: DEFAULT_AZURE_SCOPE.into(),
            identity_endpoint: identity_endpoint.map(str::to_owned),
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
}
