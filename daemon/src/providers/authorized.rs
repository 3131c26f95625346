//! What the kinds that call a cloud API with another credential's token
//! (`gke-cluster`, `container-app`, `apim-user-token`) share: building the
//! resource URL, the call itself with its one retry after a 401, and
//! reading the success body without ever quoting it in an error.

use reqwest::Url;
use serde_json::Value;

use super::{AuthToken, FetchContext, FetchError};
use crate::http::{self, Answer};

/// `base` with `segments` appended as path segments (each percent-encoded
/// as a path segment needs) and `query` as query pairs. `base` may carry a
/// path of its own (a proxy prefix); a trailing slash on it is harmless.
pub fn resource_url(
    base: &str,
    segments: &[&str],
    query: &[(&str, &str)],
) -> Result<Url, FetchError> {
    let bad =
        |why: &str| FetchError::config(format!("{base:?} cannot be used as a base URL: {why}"));
    let mut url = Url::parse(base).map_err(|e| bad(&e.to_string()))?;
    url.path_segments_mut()
        .map_err(|()| bad("it has no path"))?
        .pop_if_empty()
        .extend(segments);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url)
}

/// Calls `what` with the token of the credential named by `auth`.
///
/// A 401 means the API no longer takes that token (revoked, or expired
/// early): it is dropped from the cache, a new one is fetched, and the call
/// is made once more. Any other non-success answer, or a second 401, is the
/// API's own error, `Retry-After` included, so the engine holds off.
pub async fn send(
    cx: &FetchContext<'_>,
    auth: &str,
    what: &str,
    request: impl Fn(&AuthToken) -> reqwest::RequestBuilder,
) -> Result<Answer, FetchError> {
    let token = cx.auth_token(auth).await?;
    let answer = http::send(what, request(&token)).await?;
    if answer.status != 401 {
        return success(answer, cx);
    }
    tracing::info!(
        credential = cx.name,
        auth,
        "{what} answered 401 to the {auth} token: fetching a new one and trying once more"
    );
    cx.reject_auth_token(auth, &token.token);
    let token = cx.auth_token(auth).await?;
    let answer = http::send(what, request(&token)).await?;
    success(answer, cx)
}

fn success(answer: Answer, cx: &FetchContext<'_>) -> Result<Answer, FetchError> {
    if answer.is_success() {
        Ok(answer)
    } else {
        Err(answer.error(cx.now))
    }
}

/// A successful answer that says something other than what it should:
/// "gkemulticloud answered 200 but ...".
pub fn bad_answer(answer: &Answer, why: impl std::fmt::Display) -> FetchError {
    FetchError::transient(format!(
        "{} answered {} but {why}",
        answer.what, answer.status
    ))
}

/// The success body as JSON. Unlike [`Answer::json`] this never quotes the
/// body in its error: a success body holds a token, and a truncated one
/// would leak its start into the message.
pub fn json(answer: &Answer) -> Result<Value, FetchError> {
    serde_json::from_slice(&answer.body).map_err(|e| {
        let what = if answer.body.trim_ascii_start().starts_with(b"<") {
            "an HTML page".to_owned()
        } else {
            // serde_json's syntax errors give a position, never the text.
            format!("not JSON ({e})")
        };
        bad_answer(answer, format!("the body is {what}"))
    })
}

/// A non-empty string at `path` (`["properties", "token"]`), or an error
/// naming it (`properties.token`) that never shows the value.
pub fn string_at<'v>(answer: &Answer, v: &'v Value, path: &[&str]) -> Result<&'v str, FetchError> {
    let field = path.join(".");
    let found = path.iter().try_fold(v, |v, key| v.get(key));
    match found {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(bad_answer(answer, format!("{field} is empty"))),
        Some(_) => Err(bad_answer(answer, format!("{field} is not a string"))),
        None => Err(bad_answer(answer, format!("the answer has no {field}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &str) -> Answer {
        Answer {
            what: "api".into(),
            status: 200,
            headers: Default::default(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn urls_are_built_segment_by_segment() {
        let url = resource_url(
            "https://management.azure.com",
            &["subscriptions", "s", "resourceGroups", "my rg(1)"],
            &[("api-version", "2024-03-01")],
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "https://management.azure.com/subscriptions/s/resourceGroups/my%20rg(1)?api-version=2024-03-01"
        );
        let url = resource_url("http://127.0.0.1:8080/prefix/", &["v1", "a:verb"], &[]).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/prefix/v1/a:verb");
        assert!(resource_url("not a url", &["x"], &[]).is_err());
    }

    #[test]
    fn bodies_are_never_quoted() {
        let e = json(&answer(r#"{"accessToken": "secret-start"#)).unwrap_err();
        assert!(
            e.message
                .starts_with("api answered 200 but the body is not JSON"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("secret"), "{}", e.message);
        let e = json(&answer("<html><title>x</title>")).unwrap_err();
        assert_eq!(e.message, "api answered 200 but the body is an HTML page");
    }

    #[test]
    fn fields_are_named_not_shown() {
        let v: Value =
            serde_json::from_str(r#"{"properties":{"token":"t","n":7,"e":""}}"#).unwrap();
        let a = answer("");
        assert_eq!(string_at(&a, &v, &["properties", "token"]).unwrap(), "t");
        for (path, want) in [
            (&["properties", "n"][..], "properties.n is not a string"),
            (&["properties", "e"][..], "properties.e is empty"),
            (&["properties", "x"][..], "the answer has no properties.x"),
            (&["value"][..], "the answer has no value"),
        ] {
            let e = string_at(&a, &v, path).unwrap_err();
            assert_eq!(e.message, format!("api answered 200 but {want}"));
        }
    }

    mod send {
        use super::super::*;
        use crate::fetch_error::ErrorClass;
        use crate::loopback::{Peer, Reply};
        use crate::providers::testing::{FakeDeps, Harness};

        /// `send` to `peer` with the token of `id`, as a bearer token.
        async fn call(h: &Harness, peer: &Peer) -> Result<Answer, FetchError> {
            let cx = h.cx();
            let url = format!("{}/resource", peer.url());
            let client = cx.http.client()?;
            send(&cx, "id", "the api", |auth| {
                client.get(&url).bearer_auth(auth.token.expose())
            })
            .await
        }

        fn bearers(peer: &Peer) -> Vec<String> {
            peer.requests()
                .iter()
                .map(|r| r.header("authorization").unwrap_or_default().to_owned())
                .collect()
        }

        #[tokio::test]
        async fn a_success_is_the_answer() {
            let peer = Peer::start(vec![Reply::json(200, r#"{"ok":true}"#)]).await;
            let h = Harness::new();
            let answer = call(&h, &peer).await.unwrap();
            assert_eq!(
                (answer.status, answer.body.as_slice()),
                (200, &br#"{"ok":true}"#[..])
            );
            assert_eq!(bearers(&peer), ["Bearer id-token-0"]);
            assert!(h.deps.rejected().is_empty());
        }

        #[tokio::test]
        async fn a_401_rejects_the_token_and_retries_once_with_a_new_one() {
            let peer = Peer::start(vec![Reply::json(401, "{}"), Reply::json(200, "{}")]).await;
            let h = Harness::new();
            assert_eq!(call(&h, &peer).await.unwrap().status, 200);
            assert_eq!(
                h.deps.rejected(),
                [("id".to_owned(), "id-token-0".to_owned())]
            );
            assert_eq!(bearers(&peer), ["Bearer id-token-0", "Bearer id-token-1"]);
        }

        #[tokio::test]
        async fn a_second_401_is_the_apis_error() {
            let denied = r#"{"error":{"code":"InvalidAuthenticationToken","message":"the token is revoked"}}"#;
            let peer = Peer::start(vec![Reply::json(401, denied), Reply::json(401, denied)]).await;
            let h = Harness::new();
            let e = call(&h, &peer).await.unwrap_err();
            assert_eq!((e.class, e.status), (ErrorClass::Unauthorized, Some(401)));
            assert!(e.message.contains("the token is revoked"), "{}", e.message);
            assert_eq!(h.deps.rejected().len(), 1);
            assert_eq!(peer.requests().len(), 2);
        }

        #[tokio::test]
        async fn a_500_is_an_error_with_its_status_and_retry_after() {
            let peer = Peer::start(vec![Reply::json(500, "{}").header("Retry-After", "7")]).await;
            let h = Harness::new();
            let e = call(&h, &peer).await.unwrap_err();
            assert_eq!((e.class, e.status), (ErrorClass::Transient, Some(500)));
            assert_eq!(e.retry_after, Some(std::time::Duration::from_secs(7)));
            assert!(h.deps.rejected().is_empty());
            assert_eq!(peer.requests().len(), 1);
        }

        #[tokio::test]
        async fn a_failing_auth_credential_is_never_called_with() {
            let peer = Peer::start(vec![]).await;
            let h = Harness::with(FakeDeps::failing(FetchError::permanent(
                "getting id: invalid_grant",
            )));
            let e = call(&h, &peer).await.unwrap_err();
            assert_eq!(e.message, "getting id: invalid_grant");
            assert!(peer.requests().is_empty());
        }
    }
}
