//! `kind = "container-app"`: an Azure Container Apps auth token (for log
//! streaming and exec), from ARM's `getAuthtoken` action, authorized by the
//! Entra token of the credential named by `auth`.

use chrono::{DateTime, Utc};
use credcache_shared::Secret;
use credcache_shared::config::ContainerAppSettings;
use credcache_shared::time::parse_rfc3339;
use reqwest::Url;
use reqwest::header::CONTENT_LENGTH;

use super::{
    AuthToken, BoxFuture, FetchContext, FetchError, Fetched, Provider, authorized, within_lifetime,
};
use crate::http::Answer;

const WHAT: &str = "container apps";

pub struct ContainerApp {
    settings: ContainerAppSettings,
}

impl ContainerApp {
    pub fn new(settings: ContainerAppSettings) -> Self {
        Self { settings }
    }
}

impl Provider for ContainerApp {
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

/// `{arm}/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.App/containerApps/{app}/getAuthtoken?api-version={v}`.
fn url(s: &ContainerAppSettings) -> Result<Url, FetchError> {
    authorized::resource_url(
        &s.arm_endpoint,
        &[
            "subscriptions",
            &s.subscription_id,
            "resourceGroups",
            &s.resource_group,
            "providers",
            "Microsoft.App",
            "containerApps",
            &s.app,
            "getAuthtoken",
        ],
        &[("api-version", &s.api_version)],
    )
}

/// The POST has no body; ARM answers 411 to a POST without a length, so
/// `Content-Length: 0` is sent explicitly.
fn request(client: &reqwest::Client, url: Url, auth: &AuthToken) -> reqwest::RequestBuilder {
    client
        .post(url)
        .bearer_auth(auth.token.expose())
        .header(CONTENT_LENGTH, 0)
        .body(Vec::new())
}

/// `{"properties": {"token": "...", "expires": "2022-07-14T19:22:50.3080223Z"}, ...}`;
/// everything else in the resource (`id`, `systemData`, `tags`,
/// `properties.logStreamEndpoint`) is ignored.
pub(crate) fn parse(answer: &Answer, now: DateTime<Utc>) -> Result<Fetched, FetchError> {
    let v = authorized::json(answer)?;
    let token = authorized::string_at(answer, &v, &["properties", "token"])?;
    let expires = authorized::string_at(answer, &v, &["properties", "expires"])?;
    let expires_at = parse_rfc3339("properties.expires", expires)
        .map_err(|e| e.to_string())
        .and_then(|t| within_lifetime("properties.expires", t, now).map_err(|e| e.to_string()))
        .map_err(|why| authorized::bad_answer(answer, why))?;
    Ok(Fetched::new(Secret::new(token), expires_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ContainerAppSettings {
        ContainerAppSettings {
            auth: "corp".into(),
            subscription_id: "651f8027-33e8-4ec4-97b4-f6e9f3dc8744".into(),
            resource_group: "rg".into(),
            app: "testcontainerapp0".into(),
            api_version: "2024-03-01".into(),
            arm_endpoint: "https://management.azure.com".into(),
        }
    }

    #[test]
    fn url_and_request() {
        let url = url(&settings()).unwrap();
        assert_eq!(
            url.as_str(),
            "https://management.azure.com/subscriptions/651f8027-33e8-4ec4-97b4-f6e9f3dc8744/resourceGroups/rg/providers/Microsoft.App/containerApps/testcontainerapp0/getAuthtoken?api-version=2024-03-01"
        );
        let auth = AuthToken {
            token: Secret::new("eyJ.t"),
            quota_project: Some("ignored".into()),
        };
        let built = request(&reqwest::Client::new(), url, &auth)
            .build()
            .unwrap();
        assert_eq!(built.method(), reqwest::Method::POST);
        assert_eq!(built.headers()["authorization"], "Bearer eyJ.t");
        assert_eq!(built.headers()["content-length"], "0");
        assert!(built.headers().get("x-goog-user-project").is_none());
        assert_eq!(built.body().and_then(|b| b.as_bytes()), Some(&b""[..]));
    }

    /// Less than a year before the examples expire.
    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_650_000_000, 0).unwrap()
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
    fn reads_the_resource_and_ignores_the_rest() {
        let body = r#"{"id":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/a",
            "name":"a","type":"Microsoft.App/containerApps/accesstoken","location":"East US",
            "properties":{"token":"ca-t","expires":"2022-07-14T19:22:50.3080223Z","logStreamEndpoint":"https://x"},
            "systemData":{"createdBy":"me"},"tags":{}}"#;
        let f = parse(&answer(body), now()).unwrap();
        assert_eq!(f.token.expose(), "ca-t");
        assert_eq!(
            credcache_shared::time::format_rfc3339(f.expires_at),
            "2022-07-14T19:22:50.308022300Z"
        );
    }

    #[test]
    fn bad_answers_name_the_field() {
        for (body, want) in [
            (
                r#"{"properties":{"token":"t","expires":1700000000}}"#,
                "properties.expires is not a string",
            ),
            (
                r#"{"properties":{"token":"t"}}"#,
                "the answer has no properties.expires",
            ),
            (
                r#"{"properties":{"token":"t","expires":"2022-07-14 19:22:50"}}"#,
                "properties.expires: \"2022-07-14 19:22:50\" is not an RFC 3339 timestamp",
            ),
            (r#"{"name":"a"}"#, "the answer has no properties.token"),
            // Found by the `container_app_answer` fuzz target: an expiry
            // centuries ahead was cached as if the token lived that long.
            (
                r#"{"properties":{"token":"t","expires":"4044-07-14T19:22:50.3080223Z"}}"#,
                "properties.expires 4044-07-14T19:22:50.308022300Z is more than 366 days ahead",
            ),
        ] {
            let e = parse(&answer(body), now()).unwrap_err();
            assert_eq!(e.message, format!("container apps answered 200 but {want}"));
        }
    }

    /// `fetch` against a loopback ARM.
    mod fetch {
        use super::*;
        use crate::fetch_error::ErrorClass;
        use crate::loopback::{Peer, Reply};
        use crate::providers::testing::Harness;

        fn at(peer: &Peer) -> ContainerApp {
            ContainerApp::new(ContainerAppSettings {
                arm_endpoint: peer.url(),
                ..settings()
            })
        }

        #[tokio::test]
        async fn get_authtoken_is_posted_with_the_auth_token() {
            let peer = Peer::start(vec![Reply::json(
                200,
                r#"{"id":"x","properties":{"token":"ca.token","expires":"2030-01-01T06:00:00.3080223Z"}}"#,
            )])
            .await;
            let h = Harness::new();
            let f = at(&peer).fetch(&h.cx()).await.unwrap();
            assert_eq!(f.token.expose(), "ca.token");
            assert_eq!(f.expires_at.timestamp(), 1_893_456_000 + 6 * 3600);
            let r = &peer.requests()[0];
            assert_eq!(r.method, "POST");
            assert!(
                r.path()
                    .ends_with("/containerApps/testcontainerapp0/getAuthtoken")
            );
            assert_eq!(r.query("api-version").as_deref(), Some("2024-03-01"));
            assert_eq!(r.header("content-length"), Some("0"));
            assert_eq!(r.header("authorization"), Some("Bearer corp-token-0"));
        }

        #[tokio::test]
        async fn a_missing_app_is_refused_and_held_off_not_kept() {
            let peer = Peer::start(vec![Reply::json(
                404,
                r#"{"error":{"code":"ResourceNotFound","message":"The Resource 'Microsoft.App/containerApps/testcontainerapp0' was not found."}}"#,
            )])
            .await;
            let h = Harness::new();
            let e = at(&peer).fetch(&h.cx()).await.unwrap_err();
            assert_eq!((e.class, e.status), (ErrorClass::Rejected, Some(404)));
            assert!(e.message.contains("was not found"), "{}", e.message);
        }
    }
}
