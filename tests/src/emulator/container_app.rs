//! Azure Container Apps `getAuthtoken`: a short-lived token for log
//! streaming and exec, answered in the .NET "O" timestamp form by default.

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::arm::{self, AppRef};
use super::endpoint::{Call, Endpoint};
use super::google::parse_form;
use super::reply;
use super::state::{Inner, Shared, bearer};

/// Who the emulated resource says created it.
const CREATOR: &str = "emulator@credcache.test";

/// `POST /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.App/containerApps/{app}/getAuthtoken`.
pub(crate) async fn handle(
    shared: Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    target: AppRef,
) -> Response {
    let query = parse_form(uri.query().unwrap_or("").as_bytes());
    let token = bearer(&headers);
    let mut call = Call::new(Endpoint::ContainerAppToken, &method, &uri);
    call.bearer = token.clone();
    shared
        .serve(call, |inner| {
            let api_version = query.get("api-version").map(String::as_str);
            if let Some(refused) = arm::refusal(inner, &method, api_version, token.as_deref()) {
                return refused;
            }
            answer(inner, &target)
        })
        .await
}

fn answer(inner: &mut Inner, target: &AppRef) -> Response {
    let AppRef {
        subscription,
        resource_group,
        app,
    } = target;
    let apps = &inner.registry.container_apps;
    if !apps.is_empty() && !apps.contains(&app_key(subscription, resource_group, app)) {
        return arm::respond(
            StatusCode::NOT_FOUND,
            json!({
                "code": "ResourceNotFound",
                "message": format!(
                    "The Resource 'Microsoft.App/containerApps/{app}' under resource group \
                     '{resource_group}' was not found. For more details please go to \
                     https://aka.ms/ARMResourceNotFoundFix"
                ),
                "target": Value::Null,
                "details": [],
                "innererror": Value::Null,
            }),
        );
    }
    let issued = inner.issue(Endpoint::ContainerAppToken, "ca-emu-", None);
    let form = inner.timestamp_form(Endpoint::ContainerAppToken);
    let now = form.format(chrono::Utc::now());
    let body = json!({
        "id": format!(
            "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.App/containerApps/{app}"
        ),
        "name": app,
        "type": "Microsoft.App/containerApps/accesstoken",
        "location": "East US",
        "properties": {
            "token": issued.token,
            "expires": form.format(issued.expires_at),
        },
        "systemData": {
            "createdBy": CREATOR,
            "createdByType": "User",
            "createdAt": now,
            "lastModifiedBy": CREATOR,
            "lastModifiedByType": "User",
            "lastModifiedAt": now,
        },
        "tags": {},
    });
    reply::json(StatusCode::OK, &body)
}

/// The registry key of a container app; ARM names compare case-insensitively.
pub(crate) fn app_key(subscription: &str, resource_group: &str, app: &str) -> String {
    format!("{subscription}/{resource_group}/{app}").to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::testing::{MANAGEMENT, client, entra_token, google_token, status_json};
    use crate::emulator::{Emulator, TimestampForm};

    const SUB: &str = "651f8027-33e8-4ec4-97b4-f6e9f3dc8744";

    fn url(emu: &Emulator, app: &str, query: &str) -> String {
        format!(
            "{}/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.App/containerApps/{app}/getAuthtoken{query}",
            emu.url()
        )
    }

    fn post(url: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = client().post(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        status_json(request.send().unwrap())
    }

    #[test]
    fn answers_upstreams_shape() {
        let emu = Emulator::start();
        let token = entra_token(&emu, MANAGEMENT);
        let (status, body) = post(
            &url(&emu, "testcontainerapp0", "?api-version=2024-03-01"),
            Some(&token),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["id"],
            format!(
                "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.App/containerApps/testcontainerapp0"
            )
        );
        assert_eq!(body["name"], "testcontainerapp0");
        assert_eq!(body["type"], "Microsoft.App/containerApps/accesstoken");
        assert_eq!(body["location"], "East US");
        assert!(body["systemData"].is_object());
        assert!(body["tags"].is_object());
        assert!(
            body["properties"]["token"]
                .as_str()
                .unwrap()
                .starts_with("ca-emu-")
        );
        let expires = body["properties"]["expires"].as_str().unwrap();
        // 2022-07-14T19:22:50.3080223Z
        assert_eq!(expires.len(), 28, "{expires}");
        assert_eq!(&expires[19..20], ".");
        assert!(expires.ends_with('Z'));

        emu.set_timestamp_form(Endpoint::ContainerAppToken, TimestampForm::Digits3);
        let lower = format!(
            "{}/subscriptions/{SUB}/resourcegroups/rg/providers/microsoft.app/containerapps/a/getauthtoken?api-version=2024-03-01",
            emu.url()
        );
        let (status, body) = post(&lower, Some(&token));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["properties"]["expires"].as_str().unwrap().len(), 24);
        assert_eq!(emu.calls(Endpoint::ContainerAppToken), 2);
    }

    #[test]
    fn refuses_with_arm_errors() {
        let emu = Emulator::start();
        let good = url(&emu, "app", "?api-version=2024-03-01");

        let (status, body) = post(&good, None);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("AuthenticationFailed"))
        );
        let google = google_token(&emu, "https://www.googleapis.com/auth/cloud-platform");
        let (status, body) = post(&good, Some(&google));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("InvalidAuthenticationToken"))
        );
        let vault = entra_token(&emu, "https://vault.azure.net/.default");
        let (status, body) = post(&good, Some(&vault));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("InvalidAuthenticationTokenAudience"))
        );

        let token = entra_token(&emu, MANAGEMENT);
        let (status, body) = post(&url(&emu, "app", ""), Some(&token));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("MissingApiVersionParameter"))
        );

        emu.register_container_app(SUB, "RG", "known");
        assert_eq!(
            post(&url(&emu, "KNOWN", "?api-version=2024-03-01"), Some(&token)).0,
            200
        );
        let (status, body) = post(&good, Some(&token));
        assert_eq!(status, 404);
        assert_eq!(
            body,
            json!({"error": {
                "code": "ResourceNotFound",
                "message": body["error"]["message"],
                "target": null,
                "details": [],
                "innererror": null,
            }})
        );

        let response = client().get(&good).bearer_auth(&token).send().unwrap();
        assert_eq!(response.status(), 405);
    }
}
