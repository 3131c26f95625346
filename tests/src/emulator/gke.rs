//! GKE multi-cloud: `:generateAzureAccessToken` / `:generateAwsAccessToken`
//! on `/v1/projects/{p}/locations/{l}/{azure|aws}Clusters/{c}`, authorized
//! by a Google token this emulator issued.

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::endpoint::{Call, Endpoint};
use super::google::CLOUD_PLATFORM;
use super::reply;
use super::state::{BearerProblem, Inner, Shared, bearer};

const CREDENTIALS_HELP: &str = "Expected OAuth 2 access token, login cookie or other valid \
                                authentication credential. See \
                                https://developers.google.com/identity/sign-in/web/devconsole-project.";

/// `/v1/{*rest}`: the `:verb` sits inside the last path segment, so the
/// path is parsed here rather than by the router.
pub(crate) async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let token = bearer(&headers);
    let mut call = Call::new(Endpoint::GkeToken, &method, &uri);
    call.bearer = token.clone();
    shared
        .serve(call, |inner| {
            if method != Method::GET {
                return not_found(&format!(
                    "Method {method} is not allowed on {}.",
                    uri.path()
                ));
            }
            let Some(cluster) = cluster_name(uri.path()) else {
                return not_found(&format!("Method not found: {}.", uri.path()));
            };
            answer(inner, &cluster, token.as_deref())
        })
        .await
}

fn answer(inner: &mut Inner, cluster: &str, token: Option<&str>) -> Response {
    let issuers = [Endpoint::GoogleToken, Endpoint::GoogleMetadata];
    let issued = match inner.check_bearer(token, &issuers) {
        Ok(issued) => issued,
        Err(BearerProblem::Missing) => {
            return unauthenticated(
                &format!(
                    "Request is missing required authentication credential. {CREDENTIALS_HELP}"
                ),
                "CREDENTIALS_MISSING",
            );
        }
        Err(BearerProblem::Unknown) => {
            return unauthenticated(
                &format!("Request had invalid authentication credentials. {CREDENTIALS_HELP}"),
                "ACCESS_TOKEN_TYPE_UNSUPPORTED",
            );
        }
        Err(BearerProblem::Expired(_)) => {
            return unauthenticated(
                &format!("Request had invalid authentication credentials. {CREDENTIALS_HELP}"),
                "ACCESS_TOKEN_EXPIRED",
            );
        }
    };
    let scopes = issued.scope.as_deref().unwrap_or("");
    if !scopes.split([' ', ',']).any(|s| s == CLOUD_PLATFORM) {
        return error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "Request had insufficient authentication scopes.",
            Some("ACCESS_TOKEN_SCOPE_INSUFFICIENT"),
        );
    }
    let known = &inner.registry.clusters;
    if !known.is_empty() && !known.contains(cluster) {
        return not_found(&format!("Resource '{cluster}' was not found"));
    }
    let issued = inner.issue(Endpoint::GkeToken, "gke-emu-", None);
    let form = inner.timestamp_form(Endpoint::GkeToken);
    reply::json(
        StatusCode::OK,
        &json!({
            "accessToken": issued.token,
            "expirationTime": form.format(issued.expires_at),
        }),
    )
}

/// `projects/p/locations/l/azureClusters/c` from
/// `/v1/projects/p/locations/l/azureClusters/c:generateAzureAccessToken`
/// (the colon may arrive percent-encoded); `None` unless kind and verb match.
pub(crate) fn cluster_name(path: &str) -> Option<String> {
    let rest = path
        .strip_prefix("/v1/")?
        .replace("%3A", ":")
        .replace("%3a", ":");
    let (resource, verb) = rest.rsplit_once(':')?;
    let segments: Vec<&str> = resource.split('/').collect();
    let [projects, _, locations, _, kind, _] = segments.as_slice() else {
        return None;
    };
    let expected_verb = match *kind {
        "azureClusters" => "generateAzureAccessToken",
        "awsClusters" => "generateAwsAccessToken",
        _ => return None,
    };
    let shaped = *projects == "projects"
        && *locations == "locations"
        && verb == expected_verb
        && segments.iter().all(|s| !s.is_empty());
    shaped.then(|| resource.to_owned())
}

fn unauthenticated(message: &str, reason: &str) -> Response {
    let response = error(
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        message,
        Some(reason),
    );
    reply::add_header(
        response,
        "www-authenticate",
        "Bearer realm=\"https://accounts.google.com/\"",
    )
}

fn not_found(message: &str) -> Response {
    error(StatusCode::NOT_FOUND, "NOT_FOUND", message, None)
}

/// Google's API error shape, with an `ErrorInfo` detail when there is a reason.
fn error(status: StatusCode, name: &str, message: &str, reason: Option<&str>) -> Response {
    let details: Vec<Value> = reason
        .map(|reason| {
            json!({
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": {"service": "gkemulticloud.googleapis.com"},
            })
        })
        .into_iter()
        .collect();
    let mut body = json!({"error": {"code": status.as_u16(), "message": message, "status": name}});
    if !details.is_empty() {
        body["error"]["details"] = Value::Array(details);
    }
    reply::json(status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_paths() {
        assert_eq!(
            cluster_name(
                "/v1/projects/p/locations/us-east4/azureClusters/prod:generateAzureAccessToken"
            )
            .as_deref(),
            Some("projects/p/locations/us-east4/azureClusters/prod")
        );
        assert_eq!(
            cluster_name("/v1/projects/p/locations/l/awsClusters/c%3AgenerateAwsAccessToken")
                .as_deref(),
            Some("projects/p/locations/l/awsClusters/c")
        );
        for bad in [
            "/v1/projects/p/locations/l/azureClusters/c:generateAwsAccessToken",
            "/v1/projects/p/locations/l/azureClusters/c",
            "/v1/projects/p/locations/l/gkeClusters/c:generateAzureAccessToken",
            "/v1/projects//locations/l/azureClusters/c:generateAzureAccessToken",
            "/v1/projects/p/azureClusters/c:generateAzureAccessToken",
            "/v1/",
        ] {
            assert_eq!(cluster_name(bad), None, "{bad}");
        }
    }
}

#[cfg(test)]
mod http_tests {
    use super::*;
    use crate::emulator::testing::{client, google_token, status_json};
    use crate::emulator::{Emulator, TimestampForm};

    const CLUSTER: &str = "projects/my-proj/locations/us-east4/azureClusters/prod";

    fn generate(emu: &Emulator, cluster: &str, token: Option<&str>) -> (u16, Value) {
        let verb = if cluster.contains("/awsClusters/") {
            "generateAwsAccessToken"
        } else {
            "generateAzureAccessToken"
        };
        let mut request = client().get(format!("{}/v1/{cluster}:{verb}", emu.url()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        status_json(request.send().unwrap())
    }

    #[test]
    fn requires_a_genuine_unexpired_google_token() {
        let emu = Emulator::start();
        let (status, body) = generate(&emu, CLUSTER, None);
        assert_eq!(status, 401);
        assert_eq!(body["error"]["code"], 401);
        assert_eq!(body["error"]["status"], "UNAUTHENTICATED");

        let (status, body) = generate(&emu, CLUSTER, Some("ya29.forged"));
        assert_eq!(status, 401);
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("Request had invalid authentication credentials"));

        emu.set_lifetime(Endpoint::GoogleToken, 0);
        let expired = google_token(&emu, CLOUD_PLATFORM);
        assert_eq!(generate(&emu, CLUSTER, Some(&expired)).0, 401);

        emu.set_lifetime(Endpoint::GoogleToken, 3600);
        let narrow = google_token(&emu, "https://www.googleapis.com/auth/devstorage.read_only");
        let (status, body) = generate(&emu, CLUSTER, Some(&narrow));
        assert_eq!(
            (status, body["error"]["status"].as_str()),
            (403, Some("PERMISSION_DENIED"))
        );

        let token = google_token(&emu, CLOUD_PLATFORM);
        let (status, body) = generate(&emu, CLUSTER, Some(&token));
        assert_eq!(status, 200, "{body}");
        assert!(
            body["accessToken"]
                .as_str()
                .unwrap()
                .starts_with("gke-emu-")
        );
        assert_eq!(emu.calls(Endpoint::GkeToken), 5);
        assert_eq!(
            emu.calls_to(Endpoint::GkeToken)[4].bearer.as_deref(),
            Some(token.as_str())
        );
    }

    #[test]
    fn accepts_metadata_tokens_and_aws_clusters() {
        let emu = Emulator::start();
        let metadata = client()
            .get(format!(
                "{}/computeMetadata/v1/instance/service-accounts/default/token",
                emu.url()
            ))
            .header("Metadata-Flavor", "Google")
            .send()
            .unwrap();
        let token = status_json(metadata).1["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let aws = "projects/p/locations/us-west1/awsClusters/c1";
        assert_eq!(generate(&emu, aws, Some(&token)).0, 200);
    }

    #[test]
    fn unknown_cluster_is_not_found_once_any_is_registered() {
        let emu = Emulator::start();
        let token = google_token(&emu, CLOUD_PLATFORM);
        emu.register_cluster(CLUSTER);
        assert_eq!(generate(&emu, CLUSTER, Some(&token)).0, 200);
        let other = "projects/my-proj/locations/us-east4/azureClusters/other";
        let (status, body) = generate(&emu, other, Some(&token));
        assert_eq!(status, 404);
        assert_eq!(body["error"]["status"], "NOT_FOUND");
        let (status, _) = status_json(
            client()
                .get(format!("{}/v1/nonsense", emu.url()))
                .send()
                .unwrap(),
        );
        assert_eq!(status, 404);
    }

    #[test]
    fn each_timestamp_form() {
        let emu = Emulator::start();
        let token = google_token(&emu, CLOUD_PLATFORM);
        let expiry = |form: Option<TimestampForm>| {
            if let Some(form) = form {
                emu.set_timestamp_form(Endpoint::GkeToken, form);
            }
            let (status, body) = generate(&emu, CLUSTER, Some(&token));
            assert_eq!(status, 200, "{body}");
            let text = body["expirationTime"].as_str().unwrap().to_owned();
            let issued = emu.last_token(Endpoint::GkeToken).unwrap();
            let parsed = chrono::DateTime::parse_from_rfc3339(&text)
                .unwrap()
                .to_utc();
            assert!(
                parsed <= issued.expires_at,
                "{text} is later than the real expiry"
            );
            assert!(
                issued.expires_at - parsed < chrono::Duration::seconds(1),
                "{text}"
            );
            text
        };
        let fraction = |text: &str| {
            let seconds_on = &text[19..];
            seconds_on
                .strip_prefix('.')
                .map_or(0, |f| f.bytes().take_while(u8::is_ascii_digit).count())
        };
        let default = expiry(None);
        assert!(default.ends_with('Z'));
        assert_eq!(fraction(&default), 9);
        for (form, digits) in [
            (TimestampForm::Digits0, 0),
            (TimestampForm::Digits3, 3),
            (TimestampForm::Digits6, 6),
            (TimestampForm::Digits7, 7),
            (TimestampForm::Digits9, 9),
        ] {
            let text = expiry(Some(form));
            assert!(text.ends_with('Z'), "{text}");
            assert_eq!(fraction(&text), digits, "{text}");
        }
        let offset = expiry(Some(TimestampForm::Offset(330)));
        assert!(offset.ends_with("+05:30"), "{offset}");
    }
}
