//! The Azure App Service managed-identity protocol (api-version
//! 2019-08-01), which `ManagedIdentityCredential`, `DefaultAzureCredential`,
//! MSAL and `az login --identity` speak when `IDENTITY_ENDPOINT` and
//! `IDENTITY_HEADER` are set: `GET {endpoint}?resource=R&api-version=…`
//! with `X-IDENTITY-HEADER`. `R` is fetched as `R/.default` through the
//! credential and cached per scope by the engine.

use hyper::StatusCode;
use hyper::body::Incoming;
use serde_json::json;

use credcache_shared::protocol::ErrorKind;

use super::serve::Answer;
use super::{Endpoint, Endpoints};

/// An error in the protocol's shape.
pub fn error(status: StatusCode, message: &str) -> Answer {
    Answer::json(
        status,
        &json!({"statusCode": status.as_u16(), "message": message}),
    )
}

pub async fn answer(
    endpoints: &Endpoints,
    endpoint: &Endpoint,
    req: &hyper::Request<Incoming>,
) -> Answer {
    let secret = endpoints.secret();
    let header = req.headers().get("x-identity-header").map(|v| v.as_bytes());
    let good = header.is_some_and(|h| {
        aws_lc_rs::constant_time::verify_slices_are_equal(h, secret.expose().as_bytes()).is_ok()
    });
    if !good {
        let why = if header.is_some() {
            "X-IDENTITY-HEADER is wrong (run `credcache sdk-env` again for the current one)"
        } else {
            "X-IDENTITY-HEADER is missing"
        };
        return error(StatusCode::UNAUTHORIZED, why);
    }
    if req.method() != hyper::Method::GET {
        return error(StatusCode::METHOD_NOT_ALLOWED, "only GET is served");
    }
    if let Err(why) = super::current(endpoints, endpoint) {
        return error(StatusCode::NOT_FOUND, &why);
    }
    let query = req.uri().query().unwrap_or("");
    let mut resource = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k == "resource" {
            resource = Some(v.into_owned());
        }
    }
    let Some(resource) = resource.filter(|r| !r.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "the resource parameter is missing");
    };
    // A v1 resource as a v2 scope: `https://vault.azure.net` (with or
    // without its trailing slash) is `https://vault.azure.net/.default`.
    let scope = format!("{}/.default", resource.trim_end_matches('/'));
    match endpoints
        .engine
        .get_scoped(&endpoint.name, &[scope], None, false)
        .await
    {
        Ok(token) => Answer::json(
            StatusCode::OK,
            &json!({
                "access_token": token.token.expose(),
                "expires_on": token.expires_at.timestamp().to_string(),
                "resource": resource,
                "token_type": "Bearer",
            }),
        ),
        Err(e) => {
            let status = match e.kind {
                ErrorKind::Config | ErrorKind::NoSuchCredential => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(status, &format!("{}: {}", endpoint.name, e.message))
        }
    }
}
