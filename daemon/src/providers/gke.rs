//! `kind = "gke-cluster"`: a GKE multi-cloud cluster access token
//! (`:generateAzureAccessToken` / `:generateAwsAccessToken`), authorized by
//! the Google token of the credential named by `auth`. This is what
//! `gcloud container azure clusters print-access-token` prints.

use chrono::{DateTime, Utc};
use credcache_shared::Secret;
use credcache_shared::config::{ClusterPlatform, GkeClusterSettings};
use credcache_shared::time::parse_rfc3339;
use reqwest::Url;

use super::{
    AuthToken, BoxFuture, FetchContext, FetchError, Fetched, Provider, authorized, within_lifetime,
};
use crate::http::Answer;

const WHAT: &str = "gkemulticloud";

pub struct Gke {
    settings: GkeClusterSettings,
}

impl Gke {
    pub fn new(settings: GkeClusterSettings) -> Self {
        Self { settings }
    }
}

impl Provider for Gke {
    fn fetch<'a>(&'a self, cx: &'a FetchContext<'a>) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        Box::pin(async move {
            let url = url(&self.settings)?;
            let client = cx.http.client()?;
            let answer = authorized::send(cx, &self.settings.auth, WHAT, |auth| {
                request(client, url.clone(), auth)
            })
            .await?;
            parse(&answer, cx.now)
        })
    }
}

/// `{endpoint}/v1/projects/{p}/locations/{l}/azureClusters/{c}:generateAzureAccessToken`
/// (or `awsClusters/...:generateAwsAccessToken`).
fn url(settings: &GkeClusterSettings) -> Result<Url, FetchError> {
    let c = &settings.cluster;
    let (collection, verb) = match c.platform {
        ClusterPlatform::Azure => ("azureClusters", "generateAzureAccessToken"),
        ClusterPlatform::Aws => ("awsClusters", "generateAwsAccessToken"),
    };
    let last = format!("{}:{verb}", c.cluster);
    authorized::resource_url(
        &settings.endpoint,
        &[
            "v1",
            "projects",
            &c.project,
            "locations",
            &c.location,
            collection,
            &last,
        ],
        &[],
    )
}

/// The GET, with the quota project of the identity (an authorized-user
/// file's `quota_project_id`) as `x-goog-user-project`, as gcloud sends it.
fn request(client: &reqwest::Client, url: Url, auth: &AuthToken) -> reqwest::RequestBuilder {
    let request = client.get(url).bearer_auth(auth.token.expose());
    match &auth.quota_project {
        Some(project) => request.header("x-goog-user-project", project),
        None => request,
    }
}

/// `{"accessToken": "...", "expirationTime": "<RFC 3339, any digits, Z or offset>"}`.
pub(crate) fn parse(answer: &Answer, now: DateTime<Utc>) -> Result<Fetched, FetchError> {
    let v = authorized::json(answer)?;
    let token = authorized::string_at(answer, &v, &["accessToken"])?;
    let expiry = authorized::string_at(answer, &v, &["expirationTime"])?;
    let expires_at = parse_rfc3339("expirationTime", expiry)
        .map_err(|e| e.to_string())
        .and_then(|t| within_lifetime("expirationTime", t, now).map_err(|e| e.to_string()))
        .map_err(|why| authorized::bad_answer(answer, why))?;
    Ok(Fetched::new(Secret::new(token), expires_at))
}

#[cfg(test)]
mod tests {
    use credcache_shared::config::ClusterPath;

    use super::*;

    fn settings(platform: ClusterPlatform, endpoint: &str) -> GkeClusterSettings {
        GkeClusterSettings {
            auth: "gcp".into(),
            cluster: ClusterPath {
                project: "my-proj".into(),
                location: "us-east4".into(),
                platform,
                cluster: "prod".into(),
            },
            endpoint: endpoint.into(),
        }
    }

    #[test]
    fn urls_for_azure_and_aws_clusters() {
        let azure = url(&settings(
            ClusterPlatform::Azure,
            "https://us-east4-gkemulticloud.googleapis.com",
        ))
        .unwrap();
        assert_eq!(
            azure.as_str(),
            "https://us-east4-gkemulticloud.googleapis.com/v1/projects/my-proj/locations/us-east4/azureClusters/prod:generateAzureAccessToken"
        );
        let aws = url(&settings(ClusterPlatform::Aws, "http://127.0.0.1:9/")).unwrap();
        assert_eq!(
            aws.as_str(),
            "http://127.0.0.1:9/v1/projects/my-proj/locations/us-east4/awsClusters/prod:generateAwsAccessToken"
        );
    }

    #[test]
    fn quota_project_goes_in_x_goog_user_project() {
        let client = reqwest::Client::new();
        let url = url(&settings(ClusterPlatform::Azure, "https://gke.test")).unwrap();
        let mut auth = AuthToken {
            token: Secret::new("ya29.t"),
            quota_project: None,
        };
        let built = request(&client, url.clone(), &auth).build().unwrap();
        assert_eq!(built.method(), reqwest::Method::GET);
        assert_eq!(built.headers()["authorization"], "Bearer ya29.t");
        assert!(built.headers().get("x-goog-user-project").is_none());
        auth.quota_project = Some("billing-proj".into());
        let built = request(&client, url, &auth).build().unwrap();
        assert_eq!(built.headers()["x-goog-user-project"], "billing-proj");
    }

    /// Less than a year before the examples expire.
    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_400_000_000, 0).unwrap()
    }

    fn answer(body: &str) -> Answer {
        Answer {
            what: WHAT.into(),
            status: 200,
            headers: Default::default(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn reads_every_timestamp_form() {
        for (sent, want) in [
            (
                "2014-10-02T15:01:23.045123456Z",
                "2014-10-02T15:01:23.045123456Z",
            ),
            ("2014-10-02T15:01:23.045123Z", "2014-10-02T15:01:23.045123Z"),
            ("2014-10-02T15:01:23.045Z", "2014-10-02T15:01:23.045Z"),
            ("2014-10-02T15:01:23Z", "2014-10-02T15:01:23Z"),
            (
                "2014-10-02T15:01:23.0451234Z",
                "2014-10-02T15:01:23.045123400Z",
            ),
            (
                "2014-10-02T20:31:23.045123456+05:30",
                "2014-10-02T15:01:23.045123456Z",
            ),
        ] {
            let body = format!(r#"{{"accessToken":"gke-t","expirationTime":"{sent}"}}"#);
            let f = parse(&answer(&body), now()).unwrap();
            assert_eq!(f.token.expose(), "gke-t");
            assert_eq!(credcache_shared::time::format_rfc3339(f.expires_at), want);
        }
    }

    #[test]
    fn bad_answers_name_the_field() {
        for (body, want) in [
            (r#"{"accessToken":"t"}"#, "the answer has no expirationTime"),
            (
                r#"{"accessToken":"t","expirationTime":1700000000}"#,
                "expirationTime is not a string",
            ),
            (
                r#"{"accessToken":"t","expirationTime":"tomorrow"}"#,
                "expirationTime: \"tomorrow\" is not an RFC 3339 timestamp",
            ),
            // Found by the `gke_answer` fuzz target: an expiry centuries
            // ahead was cached as if the token lived that long.
            (
                r#"{"accessToken":"t","expirationTime":"4050-06-01T01:00:00Z"}"#,
                "expirationTime 4050-06-01T01:00:00Z is more than 366 days ahead",
            ),
            (
                r#"{"expirationTime":"2014-10-02T15:01:23Z"}"#,
                "the answer has no accessToken",
            ),
        ] {
            let e = parse(&answer(body), now()).unwrap_err();
            assert_eq!(e.message, format!("gkemulticloud answered 200 but {want}"));
        }
    }

    /// `fetch` against a loopback gkemulticloud.
    mod fetch {
        use super::*;
        use crate::fetch_error::ErrorClass;
        use crate::loopback::{Peer, Reply};
        use crate::providers::testing::{FakeDeps, Harness};

        #[tokio::test]
        async fn the_cluster_token_is_asked_with_the_auth_token_and_quota_project() {
            let peer = Peer::start(vec![Reply::json(
                200,
                r#"{"accessToken":"gke.cluster","expirationTime":"2030-01-01T01:00:00.123456789Z"}"#,
            )])
            .await;
            let h = Harness::with(FakeDeps::with_quota_project("billing"));
            let gke = Gke::new(settings(ClusterPlatform::Azure, &peer.url()));
            let f = gke.fetch(&h.cx()).await.unwrap();
            assert_eq!(f.token.expose(), "gke.cluster");
            assert_eq!(
                f.expires_at,
                parse_rfc3339("t", "2030-01-01T01:00:00.123456789Z").unwrap()
            );
            let r = &peer.requests()[0];
            assert_eq!(r.method, "GET");
            assert_eq!(
                r.path(),
                "/v1/projects/my-proj/locations/us-east4/azureClusters/prod:generateAzureAccessToken"
            );
            assert_eq!(r.header("authorization"), Some("Bearer gcp-token-0"));
            assert_eq!(r.header("x-goog-user-project"), Some("billing"));
        }

        #[tokio::test]
        async fn a_403_is_unauthorized_in_googles_words() {
            let peer = Peer::start(vec![Reply::json(
                403,
                r#"{"error":{"code":403,"message":"Permission 'gkemulticloud.azureClusters.generateAccessToken' denied","status":"PERMISSION_DENIED"}}"#,
            )])
            .await;
            let h = Harness::new();
            let gke = Gke::new(settings(ClusterPlatform::Aws, &peer.url()));
            let e = gke.fetch(&h.cx()).await.unwrap_err();
            assert_eq!((e.class, e.status), (ErrorClass::Unauthorized, Some(403)));
            assert!(e.message.contains("Permission"), "{}", e.message);
            assert!(h.deps.rejected().is_empty(), "only a 401 drops the token");
        }
    }
}
