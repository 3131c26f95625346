//! Azure Resource Manager: routing of `/subscriptions/...` (matched
//! case-insensitively, as ARM does), the checks every ARM call shares
//! (method, bearer, audience, api-version), and ARM's error shape.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use chrono::Utc;
use serde_json::{Value, json};

use super::endpoint::Endpoint;
use super::reply;
use super::state::{BearerProblem, Inner, Shared, random_uuid};
use super::{apim, container_app};

/// A container app, as named in its resource path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppRef {
    pub(crate) subscription: String,
    pub(crate) resource_group: String,
    pub(crate) app: String,
}

/// An API Management user, as named in its resource path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserRef {
    pub(crate) subscription: String,
    pub(crate) resource_group: String,
    pub(crate) service: String,
    pub(crate) user: String,
}

/// A resource action this emulator serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `.../providers/Microsoft.App/containerApps/{app}/getAuthtoken`
    ContainerApp(AppRef),
    /// `.../providers/Microsoft.ApiManagement/service/{svc}/users/{user}/token`
    Apim(UserRef),
}

/// The router's fallback: ARM paths go to their handler, anything else is a
/// plain 404.
pub(crate) async fn fallback(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !uri
        .path()
        .to_ascii_lowercase()
        .starts_with("/subscriptions/")
    {
        return reply::text(
            StatusCode::NOT_FOUND,
            format!("emulator: no route for {}\n", uri.path()),
        );
    }
    match parse_target(uri.path()) {
        Some(Target::ContainerApp(app)) => {
            container_app::handle(shared, method, uri, headers, app).await
        }
        Some(Target::Apim(user)) => apim::handle(shared, method, uri, headers, body, user).await,
        None => error(
            StatusCode::NOT_FOUND,
            "InvalidResourceType",
            &format!(
                "The resource type could not be found for path '{}'.",
                uri.path()
            ),
        ),
    }
}

/// Matches the two ARM actions, comparing fixed segments case-insensitively.
pub(crate) fn parse_target(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .collect();
    let fixed = |index: usize, expected: &str| {
        segments
            .get(index)
            .is_some_and(|s| s.eq_ignore_ascii_case(expected))
    };
    let named = |index: usize| {
        segments
            .get(index)
            .filter(|s| !s.is_empty())
            .map(|s| (*s).to_owned())
    };
    let common = fixed(0, "subscriptions") && fixed(2, "resourceGroups") && fixed(4, "providers");
    if !common {
        return None;
    }
    let (subscription, resource_group) = (named(1)?, named(3)?);
    if segments.len() == 9
        && fixed(5, "Microsoft.App")
        && fixed(6, "containerApps")
        && fixed(8, "getAuthtoken")
    {
        return Some(Target::ContainerApp(AppRef {
            subscription,
            resource_group,
            app: named(7)?,
        }));
    }
    if segments.len() == 11
        && fixed(5, "Microsoft.ApiManagement")
        && fixed(6, "service")
        && fixed(8, "users")
        && fixed(10, "token")
    {
        return Some(Target::Apim(UserRef {
            subscription,
            resource_group,
            service: named(7)?,
            user: named(9)?,
        }));
    }
    None
}

/// The checks every ARM action makes before its own: POST, a genuine
/// unexpired Entra token for the management audience, a well-formed
/// `api-version`. `Some` is the refusal to answer.
pub(crate) fn refusal(
    inner: &Inner,
    method: &Method,
    api_version: Option<&str>,
    token: Option<&str>,
) -> Option<Response> {
    if method != Method::POST {
        return Some(error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("The requested resource does not support http method '{method}'."),
        ));
    }
    let issuers = [
        Endpoint::EntraToken,
        Endpoint::Imds,
        Endpoint::AppServiceMsi,
    ];
    let issued = match inner.check_bearer(token, &issuers) {
        Ok(issued) => issued,
        Err(problem) => return Some(bearer_refusal(problem)),
    };
    let audience = issued.scope.unwrap_or_default();
    if !is_management(&audience) {
        return Some(unauthorized(
            "InvalidAuthenticationTokenAudience",
            &format!(
                "The access token has been obtained for wrong audience or resource '{audience}'. \
                 It should exactly match with one of the allowed audiences \
                 'https://management.core.windows.net/','https://management.core.windows.net',\
                 'https://management.azure.com/','https://management.azure.com'."
            ),
        ));
    }
    match api_version {
        None | Some("") => Some(error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )),
        Some(version) if !is_api_version(version) => Some(error(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersionParameter",
            &format!(
                "The api-version '{version}' is invalid. The supported versions are dated: 'YYYY-MM-DD[-preview]'."
            ),
        )),
        Some(_) => None,
    }
}

/// ARM's 401 for each way a bearer fails.
fn bearer_refusal(problem: BearerProblem) -> Response {
    match problem {
        BearerProblem::Missing => unauthorized(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        ),
        BearerProblem::Unknown => {
            unauthorized("InvalidAuthenticationToken", "The access token is invalid.")
        }
        BearerProblem::Expired(at) => unauthorized(
            "ExpiredAuthenticationToken",
            &format!(
                "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                at.format("%-m/%-d/%Y %-I:%M:%S %p"),
                Utc::now().format("%-m/%-d/%Y %-I:%M:%S %p"),
            ),
        ),
    }
}

/// Whether a scope or resource names Azure Resource Manager.
fn is_management(audience: &str) -> bool {
    let trimmed = audience.trim();
    let resource = trimmed
        .strip_suffix("/.default")
        .unwrap_or(trimmed)
        .trim_end_matches('/');
    resource.eq_ignore_ascii_case("https://management.azure.com")
        || resource.eq_ignore_ascii_case("https://management.core.windows.net")
}

/// `YYYY-MM-DD` with an optional `-preview` (or other) suffix.
fn is_api_version(version: &str) -> bool {
    let bytes = version.as_bytes();
    let date_shaped = bytes.len() >= 10
        && bytes[..10].iter().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                *b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    date_shaped && (bytes.len() == 10 || bytes[10] == b'-')
}

fn unauthorized(code: &str, message: &str) -> Response {
    let response = error(StatusCode::UNAUTHORIZED, code, message);
    reply::add_header(
        response,
        "www-authenticate",
        &format!(
            "Bearer authorization_uri=\"https://login.microsoftonline.com/common\", \
             error=\"invalid_token\", error_description=\"{message}\""
        ),
    )
}

/// ARM's error shape `{"error":{"code","message"}}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    respond(status, json!({"code": code, "message": message}))
}

/// Any ARM error object, with ARM's request-id headers.
pub(crate) fn respond(status: StatusCode, error: Value) -> Response {
    let response = reply::json(status, &json!({"error": error}));
    let response = reply::add_header(response, "x-ms-request-id", &random_uuid());
    reply::add_header(response, "x-ms-correlation-request-id", &random_uuid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets_case_insensitively() {
        let app = "/SUBSCRIPTIONS/s/resourcegroups/rg/providers/microsoft.app/CONTAINERAPPS/a/getauthtoken";
        assert_eq!(
            parse_target(app),
            Some(Target::ContainerApp(AppRef {
                subscription: "s".into(),
                resource_group: "rg".into(),
                app: "a".into()
            }))
        );
        let apim = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ApiManagement/service/svc/users/u1/token";
        assert_eq!(
            parse_target(apim),
            Some(Target::Apim(UserRef {
                subscription: "s".into(),
                resource_group: "rg".into(),
                service: "svc".into(),
                user: "u1".into()
            }))
        );
        assert_eq!(parse_target("/subscriptions/s/resourceGroups/rg"), None);
        assert_eq!(
            parse_target(
                "/subscriptions/s/resourceGroups//providers/Microsoft.App/containerApps/a/getAuthtoken"
            ),
            None
        );
    }

    #[test]
    fn recognises_api_versions_and_audiences() {
        assert!(is_api_version("2024-03-01"));
        assert!(is_api_version("2023-08-01-preview"));
        assert!(!is_api_version("latest"));
        assert!(!is_api_version("2024-03-0"));
        assert!(is_management("https://management.azure.com/.default"));
        assert!(is_management("https://management.azure.com/"));
        assert!(is_management(
            "https://management.core.windows.net//.default"
        ));
        assert!(!is_management("https://vault.azure.net/.default"));
    }
}
