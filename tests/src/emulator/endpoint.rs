//! The emulated endpoints, their stable names, and the call log's entries.

use std::fmt;

use axum::http::{Method, Uri};
use chrono::{DateTime, Utc};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One emulated cloud endpoint. Counters, faults and switches are kept per
/// endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// Google OAuth `POST /token` (JWT bearer and refresh-token grants).
    GoogleToken,
    /// GCE metadata server token: `GET /computeMetadata/v1/.../token`.
    GoogleMetadata,
    /// Microsoft Entra `POST /{tenant}/oauth2/v2.0/token`.
    EntraToken,
    /// Azure IMDS managed identity: `GET /metadata/identity/oauth2/token`.
    Imds,
    /// App Service managed identity: `GET /msi/token`.
    AppServiceMsi,
    /// GKE multi-cloud `:generateAzureAccessToken` / `:generateAwsAccessToken`.
    GkeToken,
    /// Azure Container Apps `getAuthtoken`.
    ContainerAppToken,
    /// API Management user shared access token.
    ApimToken,
    /// IAM Credentials `:generateAccessToken` (impersonation).
    IamAccessToken,
    /// IAM Credentials `:generateIdToken`.
    IamIdToken,
    /// Google STS `POST /v1/token` (token exchange).
    StsToken,
    /// Cloud Shell managed identity: `POST /oauth2/token` (`MSI_ENDPOINT`).
    CloudShellMsi,
    /// App Service's 2017 managed-identity API: `GET /MSI/token/`
    /// (`MSI_ENDPOINT` + `MSI_SECRET`).
    AppService2017Msi,
    /// Azure Arc managed identity, with its challenge:
    /// `GET /arc/metadata/identity/oauth2/token` (`IDENTITY_ENDPOINT`).
    ArcMsi,
    /// Entra `POST /{tenant}/oauth2/v2.0/devicecode` (device code sign-in).
    EntraDeviceCode,
    /// The sign-in pages: Entra `GET /{tenant}/oauth2/v2.0/authorize`,
    /// Google `GET /o/oauth2/auth`; each redirects with a code.
    Authorize,
}

impl Endpoint {
    /// Every endpoint, in a stable order.
    pub const ALL: [Endpoint; 16] = [
        Endpoint::GoogleToken,
        Endpoint::GoogleMetadata,
        Endpoint::EntraToken,
        Endpoint::Imds,
        Endpoint::AppServiceMsi,
        Endpoint::GkeToken,
        Endpoint::ContainerAppToken,
        Endpoint::ApimToken,
        Endpoint::IamAccessToken,
        Endpoint::IamIdToken,
        Endpoint::StsToken,
        Endpoint::CloudShellMsi,
        Endpoint::AppService2017Msi,
        Endpoint::ArcMsi,
        Endpoint::EntraDeviceCode,
        Endpoint::Authorize,
    ];

    /// The stable name used by the control API and in the call log.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::GoogleToken => "google-token",
            Endpoint::GoogleMetadata => "google-metadata",
            Endpoint::EntraToken => "entra-token",
            Endpoint::Imds => "imds",
            Endpoint::AppServiceMsi => "app-service-msi",
            Endpoint::GkeToken => "gke-token",
            Endpoint::ContainerAppToken => "container-app-token",
            Endpoint::ApimToken => "apim-token",
            Endpoint::IamAccessToken => "iam-access-token",
            Endpoint::IamIdToken => "iam-id-token",
            Endpoint::StsToken => "sts-token",
            Endpoint::CloudShellMsi => "cloud-shell-msi",
            Endpoint::AppService2017Msi => "app-service-2017-msi",
            Endpoint::ArcMsi => "arc-msi",
            Endpoint::EntraDeviceCode => "entra-devicecode",
            Endpoint::Authorize => "authorize",
        }
    }

    /// The endpoint with this stable name.
    pub fn from_name(name: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.name() == name)
    }

    /// Position in [`Endpoint::ALL`], for per-endpoint arrays.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Endpoint, D::Error> {
        let name = String::deserialize(deserializer)?;
        Endpoint::from_name(&name).ok_or_else(|| {
            let known: Vec<&str> = Endpoint::ALL.iter().map(|e| e.name()).collect();
            D::Error::custom(format!(
                "unknown endpoint '{name}' (known: {})",
                known.join(", ")
            ))
        })
    }
}

/// One request an endpoint answered, as the call log keeps it.
///
/// Fields that do not apply to an endpoint are `None`. Token values appear
/// here on purpose: this is a test double, and tests check which token a
/// dependent call presented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Call {
    /// When the answer was sent.
    pub at: DateTime<Utc>,
    pub endpoint: Endpoint,
    pub method: String,
    /// The request path, without the query.
    pub path: String,
    /// The HTTP status answered.
    pub status: u16,
    /// Whether a scripted fault produced the answer.
    pub faulted: bool,
    /// OAuth `grant_type` (token endpoints).
    pub grant_type: Option<String>,
    /// OAuth `scope`, metadata `scopes`, or managed-identity `resource`.
    pub scope: Option<String>,
    /// OAuth `client_id` (Entra, refresh-token grant, user-assigned identity).
    pub client_id: Option<String>,
    /// The `x-goog-user-project` header (Google token endpoint).
    pub user_project: Option<String>,
    /// The bearer token presented (GKE, Container Apps, APIM, IAM), or
    /// the subject token exchanged (STS).
    pub bearer: Option<String>,
    /// APIM `properties.keyType`.
    pub key_type: Option<String>,
    /// APIM `properties.expiry`, as sent.
    pub expiry: Option<String>,
    /// A user-assigned managed identity named otherwise than by client id:
    /// `object_id=…`, `principal_id=…`, `msi_res_id=…` or `mi_res_id=…`.
    pub identity: Option<String>,
}

impl Call {
    /// A log entry for a request, to be completed by the handler.
    pub(crate) fn new(endpoint: Endpoint, method: &Method, uri: &Uri) -> Call {
        Call {
            at: Utc::now(),
            endpoint,
            method: method.as_str().to_owned(),
            path: uri.path().to_owned(),
            status: 0,
            faulted: false,
            grant_type: None,
            scope: None,
            client_id: None,
            user_project: None,
            bearer: None,
            key_type: None,
            expiry: None,
            identity: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for endpoint in Endpoint::ALL {
            assert_eq!(Endpoint::from_name(endpoint.name()), Some(endpoint));
            assert_eq!(Endpoint::ALL[endpoint.index()], endpoint);
        }
        assert_eq!(Endpoint::GkeToken.name(), "gke-token");
        assert_eq!(Endpoint::from_name("nope"), None);
    }
}
