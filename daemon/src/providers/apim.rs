//! `kind = "apim-user-token"`: an API Management user's shared access
//! token, from ARM's `users/{userId}/token` action, authorized by the Entra
//! token of the credential named by `auth`. Used as
//! `Authorization: SharedAccessSignature <token>`.
//!
//! The expiry is asked for (`now + lifetime`), and the token carries the
//! one granted (`uid&yyyyMMddHHmm&signature`, UTC, to the minute): that is
//! the one cached, after a check that it is no later than asked and still
//! ahead of now.

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use credcache_shared::Secret;
use credcache_shared::config::ApimUserTokenSettings;
use credcache_shared::time::format_rfc3339;
use reqwest::Url;
use serde_json::json;

use super::{AuthToken, BoxFuture, FetchContext, FetchError, Fetched, Provider, authorized};
use crate::http::Answer;

const WHAT: &str = "api management";

pub struct Apim {
    settings: ApimUserTokenSettings,
}

impl Apim {
    pub fn new(settings: ApimUserTokenSettings) -> Self {
        Self { settings }
    }
}

impl Provider for Apim {
    fn fetch<'a>(&'a self, cx: &'a FetchContext<'a>) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        Box::pin(async move {
            let s = &self.settings;
            let url = url(s)?;
            let lifetime = chrono::Duration::from_std(s.lifetime)
                .map_err(|_| FetchError::config("lifetime is out of range"))?;
            let asked = cx.now + lifetime;
            let body = json!({"properties": {
                "keyType": s.key_type.as_str(),
                "expiry": format_dotnet(asked),
            }});
            let client = cx.http.client()?;
            let answer = authorized::send(cx, &s.auth, WHAT, |auth| {
                request(client, url.clone(), auth, &body)
            })
            .await?;
            parse(&answer, asked, cx.now)
        })
    }
}

/// `{arm}/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{svc}/users/{userId}/token?api-version={v}`.
fn url(s: &ApimUserTokenSettings) -> Result<Url, FetchError> {
    authorized::resource_url(
        &s.arm_endpoint,
        &[
            "subscriptions",
            &s.subscription_id,
            "resourceGroups",
            &s.resource_group,
            "providers",
            "Microsoft.ApiManagement",
            "service",
            &s.service,
            "users",
            &s.user_id,
            "token",
        ],
        &[("api-version", &s.api_version)],
    )
}

fn request(
    client: &reqwest::Client,
    url: Url,
    auth: &AuthToken,
    body: &serde_json::Value,
) -> reqwest::RequestBuilder {
    client.post(url).bearer_auth(auth.token.expose()).json(body)
}

/// RFC 3339 in UTC with 7 fractional digits and `Z`, as .NET's "O" format
/// writes it (`2019-04-21T00:44:24.2845269Z`): what the API's own clients send.
pub fn format_dotnet(t: DateTime<Utc>) -> String {
    // A leap second shows as nanos past 1e9; .NET has no such instant, so
    // it is written as the last tick of the second before.
    let t = t
        .with_nanosecond(t.timestamp_subsec_nanos().min(999_999_999))
        .unwrap_or(t);
    let ticks = t.timestamp_subsec_nanos() / 100;
    format!("{}.{ticks:07}Z", t.format("%Y-%m-%dT%H:%M:%S"))
}

/// `{"value": "uid&yyyyMMddHHmm&signature"}`, checked against the expiry
/// `asked` for at `now`.
pub(crate) fn parse(
    answer: &Answer,
    asked: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Fetched, FetchError> {
    let v = authorized::json(answer)?;
    let value = authorized::string_at(answer, &v, &["value"])?;
    let expires_at = token_expiry(value).map_err(|why| authorized::bad_answer(answer, why))?;
    let shown = || format_rfc3339(expires_at);
    // Truncated to the minute, the granted expiry is at most the one asked
    // for; a minute of slack covers a server that rounds instead.
    if expires_at > asked + chrono::Duration::minutes(1) {
        return Err(authorized::bad_answer(
            answer,
            format!(
                "the expiry in value ({}) is later than the {} asked for",
                shown(),
                format_rfc3339(asked)
            ),
        ));
    }
    if expires_at <= now {
        return Err(authorized::bad_answer(
            answer,
            format!("the expiry in value ({}) has already passed", shown()),
        ));
    }
    Ok(Fetched::new(Secret::new(value), expires_at))
}

/// Why a user token's expiry cannot be read. Neither quotes the token.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UserTokenError {
    #[error("value is not a user token (uid&yyyyMMddHHmm&signature)")]
    NotAUserToken,
    /// `stamp` is sanitized and cut short.
    #[error("the expiry in value ({stamp:?}) is not a yyyyMMddHHmm UTC time")]
    BadStamp { stamp: String },
}

/// The expiry inside a user token `uid&yyyyMMddHHmm&signature`. The user id
/// may itself hold `&`, the base64 signature cannot, so the stamp is the
/// second field from the end. Errors never quote the token, only the stamp
/// (which is no secret).
pub fn token_expiry(value: &str) -> Result<DateTime<Utc>, UserTokenError> {
    let mut fields = value.rsplitn(3, '&');
    let (Some(signature), Some(stamp), Some(user)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(UserTokenError::NotAUserToken);
    };
    if signature.is_empty() || user.is_empty() {
        return Err(UserTokenError::NotAUserToken);
    }
    let bad = || UserTokenError::BadStamp {
        stamp: crate::http::sanitize(stamp, 20),
    };
    if stamp.len() != 12 || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // All ASCII digits, so every slice is on a char boundary and parses.
    let n = |range: std::ops::Range<usize>| stamp[range].parse::<u32>().unwrap_or(u32::MAX);
    NaiveDate::from_ymd_opt(n(0..4) as i32, n(4..6), n(6..8))
        .and_then(|d| d.and_hms_opt(n(8..10), n(10..12), 0))
        .map(|t| t.and_utc())
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;
    use credcache_shared::config::ApimKeyType;

    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn reads_the_expiry_inside_the_token() {
        let sig = "9A1GR1f5WIhFvFmzQG+xxxxxxxxxxx/kBeu87DWad3tkasUXuvPL+MgzlwUHyg==";
        let t = token_expiry(&format!("userId1718&201904210044&{sig}")).unwrap();
        assert_eq!(t, at(2019, 4, 21, 0, 44, 0));
        // A user id with '&' in it still finds the stamp.
        let t = token_expiry(&format!("a&b&203012312359&{sig}")).unwrap();
        assert_eq!(t, at(2030, 12, 31, 23, 59, 0));
    }

    #[test]
    fn malformed_and_out_of_range_expiries_are_errors_naming_the_field() {
        for value in [
            "",
            "no-ampersands",
            "uid&sig",
            "&201904210044&sig",
            "uid&201904210044&",
        ] {
            let e = token_expiry(value).unwrap_err().to_string();
            assert_eq!(
                e, "value is not a user token (uid&yyyyMMddHHmm&signature)",
                "{value}"
            );
        }
        for stamp in [
            "2019042100",
            "20190421004400",
            "2019-04-2100:",
            "20190421004x",
            "201913210044",
            "201904310044",
            "201904212444",
            "201904210060",
            "000000000000",
            "２０１９０４２１００",
        ] {
            let e = token_expiry(&format!("uid&{stamp}&c2ln"))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("the expiry in value (")
                    && e.ends_with(") is not a yyyyMMddHHmm UTC time"),
                "{stamp}: {e}"
            );
        }
    }

    #[test]
    fn formats_seven_fractional_digits_like_dotnet() {
        let t = at(2019, 4, 21, 0, 44, 24) + chrono::Duration::nanoseconds(284_526_987);
        assert_eq!(format_dotnet(t), "2019-04-21T00:44:24.2845269Z");
        assert_eq!(
            format_dotnet(at(2019, 4, 21, 0, 44, 24)),
            "2019-04-21T00:44:24.0000000Z"
        );
        // Found by the `timestamp` fuzz target: a leap second was written
        // as 23:59:60.9999999, a second later than the instant itself.
        let leap = credcache_shared::time::parse_rfc3339("t", "2016-12-31T23:59:60Z").unwrap();
        assert_eq!(format_dotnet(leap), "2016-12-31T23:59:59.9999999Z");
        let back = credcache_shared::time::parse_rfc3339("expiry", &format_dotnet(t)).unwrap();
        assert_eq!(
            back,
            at(2019, 4, 21, 0, 44, 24) + chrono::Duration::nanoseconds(284_526_900)
        );
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
    fn the_granted_expiry_is_cross_checked_with_the_one_asked() {
        let now = at(2019, 4, 20, 16, 44, 24);
        let asked = now + chrono::Duration::hours(8);
        let ok = parse(&answer(r#"{"value":"u&201904210044&c2ln"}"#), asked, now).unwrap();
        assert_eq!(ok.expires_at, at(2019, 4, 21, 0, 44, 0));
        assert_eq!(ok.token.expose(), "u&201904210044&c2ln");
        // Granted shorter than asked (a policy cap) is fine.
        assert!(parse(&answer(r#"{"value":"u&201904201800&c2ln"}"#), asked, now).is_ok());
        for (value, want) in [
            (
                "u&201904210046&c2ln",
                "the expiry in value (2019-04-21T00:46:00Z) is later than the 2019-04-21T00:44:24Z asked for",
            ),
            (
                "u&201904201644&c2ln",
                "the expiry in value (2019-04-20T16:44:00Z) has already passed",
            ),
        ] {
            let body = format!(r#"{{"value":"{value}"}}"#);
            let e = parse(&answer(&body), asked, now).unwrap_err();
            assert_eq!(e.message, format!("api management answered 200 but {want}"));
        }
        let e = parse(&answer(r#"{"value":1700000000}"#), asked, now).unwrap_err();
        assert_eq!(
            e.message,
            "api management answered 200 but value is not a string"
        );
    }

    #[test]
    fn url_and_body() {
        let s = ApimUserTokenSettings {
            auth: "corp".into(),
            subscription_id: "00000000-0000-0000-0000-000000000000".into(),
            resource_group: "rg1".into(),
            service: "apimService1".into(),
            user_id: "userId1718".into(),
            key_type: ApimKeyType::Secondary,
            lifetime: Duration::from_secs(8 * 3600),
            api_version: "2024-05-01".into(),
            arm_endpoint: "https://management.azure.com".into(),
        };
        let url = url(&s).unwrap();
        assert_eq!(
            url.as_str(),
            "https://management.azure.com/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg1/providers/Microsoft.ApiManagement/service/apimService1/users/userId1718/token?api-version=2024-05-01"
        );
        let auth = AuthToken {
            token: Secret::new("eyJ.t"),
            quota_project: None,
        };
        let body = json!({"properties": {"keyType": "secondary", "expiry": "2019-04-21T00:44:24.2845269Z"}});
        let built = request(&reqwest::Client::new(), url, &auth, &body)
            .build()
            .unwrap();
        assert_eq!(built.method(), reqwest::Method::POST);
        assert_eq!(built.headers()["authorization"], "Bearer eyJ.t");
        assert_eq!(built.headers()["content-type"], "application/json");
        let sent: serde_json::Value =
            serde_json::from_slice(built.body().and_then(|b| b.as_bytes()).unwrap()).unwrap();
        assert_eq!(sent, body);
    }

    /// `fetch` against a loopback ARM.
    mod fetch {
        use super::*;
        use crate::loopback::{Peer, Reply};
        use crate::providers::testing::Harness;

        fn apim(peer: &Peer) -> Apim {
            Apim::new(ApimUserTokenSettings {
                auth: "corp".into(),
                subscription_id: "sub".into(),
                resource_group: "rg1".into(),
                service: "apimService1".into(),
                user_id: "userId1718".into(),
                key_type: ApimKeyType::Primary,
                lifetime: Duration::from_secs(8 * 3600),
                api_version: "2024-05-01".into(),
                arm_endpoint: peer.url(),
            })
        }

        #[tokio::test]
        async fn the_token_asked_for_carries_its_expiry() {
            let peer = Peer::start(vec![Reply::json(
                200,
                r#"{"value":"userId1718&203001010800&c2lnbmF0dXJl"}"#,
            )])
            .await;
            let h = Harness::new();
            let f = apim(&peer).fetch(&h.cx()).await.unwrap();
            assert_eq!(f.token.expose(), "userId1718&203001010800&c2lnbmF0dXJl");
            assert_eq!(f.expires_at, at(2030, 1, 1, 8, 0, 0));
            let r = &peer.requests()[0];
            assert_eq!(r.method, "POST");
            assert!(
                r.path()
                    .ends_with("/service/apimService1/users/userId1718/token")
            );
            assert_eq!(
                r.json(),
                serde_json::json!({"properties": {
                    "keyType": "primary",
                    "expiry": "2030-01-01T08:00:00.0000000Z",
                }})
            );
            assert_eq!(r.header("authorization"), Some("Bearer corp-token-0"));
        }

        #[tokio::test]
        async fn an_answer_that_is_no_user_token_is_refused_unquoted() {
            let peer = Peer::start(vec![Reply::json(200, r#"{"value":"sekrit-no-fields"}"#)]).await;
            let h = Harness::new();
            let e = apim(&peer).fetch(&h.cx()).await.unwrap_err();
            assert_eq!(
                e.message,
                "api management answered 200 but value is not a user token (uid&yyyyMMddHHmm&signature)"
            );
        }
    }
}
